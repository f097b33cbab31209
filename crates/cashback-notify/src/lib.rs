//! Citizen notifications of the period-close flow (bpd-domain §3.14).
//!
//! - [`Notice`]: what happened (period over, award computed, not eligible, payment executed or
//!   failed, IBAN missing, complaint updated), serde-tagged for the caller's outbox table.
//! - [`render`]: its Italian IO [`Message`], always within IO's limits (subject 10–120,
//!   markdown 80–10 000 characters); IBANs appear masked only.
//! - [`Sender`]: [`LogSender`] or [`IoSender`] (`POST /api/v1/messages`), chosen by
//!   [`NotifyConfig`] through [`build_sender`]. A [`SendError::Retryable`] carries the
//!   server's `Retry-After` (429/503), which the released service ignored (§8.15);
//!   [`next_attempt`] turns it into the outbox's next try.

mod config;
mod notice;
mod outbox;
mod sender;
mod text;

pub use config::{NotifyConfig, Secret, SenderKind, build_sender};
pub use notice::{IBAN_EDIT_CTA, MARKDOWN_CHARS, Message, Notice, SUBJECT_CHARS, render};
pub use outbox::outbox_payload;
pub use sender::{DEFAULT_TTL_SECONDS, IoSender, LogSender, MAX_ATTEMPTS, SendError, Sender, next_attempt};
pub use text::{format_date, format_euro, mask_fiscal_code, mask_iban, period_name, period_ordinal};
