//! Storage port of the cashback platform.
//!
//! The [`Store`] trait is what the API and jobs see; `cashback-store-sqlite` and
//! `cashback-store-postgres` implement it with their own SQL and migrations. Methods are coarse
//! and atomic: each one is a single database transaction that applies the pure decision
//! functions of `cashback_domain::enrollment`, so both backends obey the same rules and races
//! are settled by the database, not by the caller.

use async_trait::async_trait;
use cashback_domain::eligibility::EnrollmentIndex;
use cashback_domain::enrollment::{Channel, InstrumentStatus, OptInStatus};
use cashback_domain::{AwardPeriod, FiscalCode, Hpan};
use time::OffsetDateTime;

pub mod acquirer;
pub use acquirer::*;
pub mod audit;
pub use audit::{AuditEvent, AuditQuery, NewAuditEvent};
pub mod close;
pub use close::*;
pub mod console;
pub use console::{AwardStatusCount, ConsoleStore, DayStats, ProgrammeTotals, RankingSnapshot};
pub mod import;
pub use import::*;
pub mod scoring;
pub use scoring::{ComputedTotals, PeriodRow, PeriodTotals, ScoringRow, StandingUpdate};

#[cfg(feature = "testkit")]
pub mod testkit;

/// What erasing a citizen does (both backends): the citizen row (fiscal code, IBAN, holder
/// names), the instruments and their activation windows, the period totals, the awards, the
/// complaints and the notifications are deleted; the citizen's acquirer transactions stay (they
/// are the acquirers' files' rows) but lose the fiscal code and are marked
/// `CITIZEN_NOT_ENABLED`, so nothing links them to a person any more (the hpan's owner is gone
/// with the instruments). The audit trail keeps its events and gains `citizen.erased`.
pub const ERASURE: &str = "citizen, instruments, windows, period totals, awards, complaints, notifications deleted; \
transactions unlinked";

/// A storage failure. Business outcomes (409, 403, …) are *not* errors: they are variants of
/// each method's outcome type.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is overloaded (writer queue full); retry later (HTTP 503 + Retry-After).
    #[error("store busy: {0}")]
    Busy(String),
    /// The database cannot be reached or timed out (HTTP 503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or corrupt data (HTTP 500, logged).
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A citizen as stored. IBAN and holder fields are `None` until set and after withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citizen {
    pub fiscal_code: FiscalCode,
    pub enabled: bool,
    /// When the T&C were accepted (enrollment time, set server-side).
    pub timestamp_tc: OffsetDateTime,
    pub opt_in_status: OptInStatus,
    pub payoff: Option<Payoff>,
    pub cancellation: Option<OffsetDateTime>,
    /// Channel of the last enrollment (`app-io-channel` or an issuer channel).
    pub channel: String,
    pub updated_at: OffsetDateTime,
}

/// Where the citizen's cashback is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payoff {
    /// Normalised IBAN (validated by the caller).
    pub iban: String,
    pub instr_type: String,
    pub account_holder_cf: Option<String>,
    pub account_holder_name: Option<String>,
    pub account_holder_surname: Option<String>,
    /// Outcome of the account-holder check: `OK`, `UNKNOWN_PSP`, or `NOT_CHECKED`.
    pub check_status: String,
    pub technical_account_holder: Option<String>,
    pub issuer_card_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instrument {
    pub hpan: Hpan,
    /// Current (or last) owner.
    pub fiscal_code: FiscalCode,
    pub channel: String,
    pub status: InstrumentStatus,
    /// Start of the current (or last) activation window.
    pub activation_date: OffsetDateTime,
    pub deactivation_date: Option<OffsetDateTime>,
}

/// One activation window of an instrument: who owned it, through which channel, and when.
/// `to == None` means still active. Windows are half-open `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationWindow {
    pub hpan: Hpan,
    pub fiscal_code: FiscalCode,
    pub channel: String,
    pub from: OffsetDateTime,
    pub to: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollInstrumentOutcome {
    /// Newly active (inserted or reactivated); a new activation window was opened.
    Activated(Instrument),
    /// It was already active for this citizen; nothing changed.
    AlreadyActive(Instrument),
    /// The citizen is unknown or withdrawn (HTTP 403).
    CitizenNotEnabled,
    /// Active for another citizen (HTTP 409).
    OwnedByOther,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteInstrumentOutcome {
    Deactivated,
    AlreadyInactive,
    NotFound,
    OwnedByOther,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetPayoffOutcome {
    Updated(Box<Citizen>),
    CitizenNotFound,
    CitizenNotEnabled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WithdrawOutcome {
    /// The citizen was enabled and is now withdrawn; `instruments` were deactivated.
    Withdrawn {
        instruments: u64,
    },
    /// Already withdrawn: nothing to do (idempotent).
    AlreadyWithdrawn,
    NotFound,
    /// An issuer tried to withdraw a citizen with instruments from other channels; nothing changed.
    TooManyChannels,
}

/// What kind of client a credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// A bank's app (HB API), bound to one enrollment channel.
    Issuer,
    /// An acquirer sending transaction files, bound to one ABI code.
    Acquirer,
    /// The Payment Manager (wallet), allowed to deactivate instruments.
    PaymentManager,
    /// The programme's operators (rankings, files, periods); scope is free text.
    Operator,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuer => "issuer",
            Self::Acquirer => "acquirer",
            Self::PaymentManager => "payment-manager",
            Self::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "issuer" => Some(Self::Issuer),
            "acquirer" => Some(Self::Acquirer),
            "payment-manager" => Some(Self::PaymentManager),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// A client credential. Only the SHA-256 of the API key is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub kind: CredentialKind,
    /// Issuer: its enrollment channel; acquirer: its ABI code; PM: a label.
    pub scope: String,
    pub key_sha256: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    /// Mutual TLS: SHA-256 (lower-case hex) of the client certificate this key must come with.
    pub client_cert_sha256: Option<String>,
}

/// Count of a citizen's active instruments per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCount {
    pub channel: String,
    pub count: u64,
}

/// The storage port. Every method is one atomic database transaction; write methods return only
/// after their transaction is durably committed.
#[async_trait]
pub trait Store: CloseStore + ConsoleStore + Send + Sync + 'static {
    /// Backend name for logs and metrics ("sqlite" / "postgres").
    fn backend(&self) -> &'static str;

    /// Cheap liveness probe of the database.
    async fn ping(&self) -> StoreResult<()>;

    /// Stop accepting writes, finish and acknowledge everything in flight, release connections.
    async fn close(&self) {}

    // ---- citizens ----
    /// Enroll or re-enroll (contract §4.4 rule 1). Returns the stored citizen after the change.
    async fn enroll_citizen(
        &self,
        fiscal_code: &FiscalCode,
        requested_opt_in: Option<OptInStatus>,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<Citizen>;

    async fn get_citizen(&self, fiscal_code: &FiscalCode) -> StoreResult<Option<Citizen>>;

    /// Store the payout IBAN and holder (the check is the caller's job).
    async fn set_payoff(
        &self,
        fiscal_code: &FiscalCode,
        payoff: Payoff,
        now: OffsetDateTime,
    ) -> StoreResult<SetPayoffOutcome>;

    /// All-or-nothing withdrawal: instruments deactivated, payoff cleared, opt-in reset,
    /// citizen disabled, in one transaction.
    async fn withdraw_citizen(
        &self,
        fiscal_code: &FiscalCode,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<WithdrawOutcome>;

    /// Erase the personal data of at most `limit` citizens whose retention period is over:
    /// withdrawn before `cutoff` or, with `include_enabled` (the programme is over), last
    /// changed before `cutoff`; never one with a payment still open (an award `NEW`, `SENT` or
    /// `FAILED`) or an open complaint. See [`ERASURE`] for what is erased. One transaction per
    /// citizen, recorded as `citizen.erased`. Returns how many were erased.
    async fn erase_expired_citizens(
        &self,
        cutoff: OffsetDateTime,
        include_enabled: bool,
        limit: u32,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;

    // ---- instruments ----
    async fn enroll_instrument(
        &self,
        hpan: &Hpan,
        fiscal_code: &FiscalCode,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<EnrollInstrumentOutcome>;

    async fn get_instrument(&self, hpan: &Hpan) -> StoreResult<Option<Instrument>>;

    /// Deactivate. `fiscal_code`: the citizen the delete is made for, `None` for a caller that
    /// addresses the instrument by hpan alone.
    async fn delete_instrument(
        &self,
        hpan: &Hpan,
        fiscal_code: Option<&FiscalCode>,
        now: OffsetDateTime,
    ) -> StoreResult<DeleteInstrumentOutcome>;

    async fn count_active_instruments(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<ChannelCount>>;

    /// Every activation window of an instrument, oldest first.
    async fn instrument_history(&self, hpan: &Hpan) -> StoreResult<Vec<ActivationWindow>>;

    // ---- award periods ----
    async fn list_award_periods(&self) -> StoreResult<Vec<AwardPeriod>>;
    /// Insert or replace a period by id.
    async fn upsert_award_period(&self, period: &AwardPeriod) -> StoreResult<()>;
    /// Insert periods whose id is not yet present (used to seed the default programme).
    async fn seed_award_periods(&self, periods: &[AwardPeriod]) -> StoreResult<u64>;

    // ---- credentials ----
    async fn insert_credential(&self, credential: &Credential) -> StoreResult<()>;
    async fn find_credential_by_key_hash(&self, key_sha256: &str) -> StoreResult<Option<Credential>>;
    async fn list_credentials(&self) -> StoreResult<Vec<Credential>>;
    /// Returns false if no such active credential.
    async fn revoke_credential(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;
    /// Bind an active credential to a client certificate (its SHA-256), or unbind it (`None`).
    /// Returns false if no such active credential.
    async fn bind_client_cert(&self, id: &str, cert_sha256: Option<&str>) -> StoreResult<bool>;

    // ---- audit trail (see [`audit`]) ----
    /// Recorded events matching `q`, newest first, at most `q.limit` (capped at
    /// [`audit::AUDIT_QUERY_MAX`]).
    async fn audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;

    // ---- acquirer files and transactions ----
    /// Register a file before ingesting it (idempotency by name). A file that failed at file
    /// level (nothing of it was stored) starts again; one interrupted mid-way resumes after its
    /// last committed line; one already done is returned as is.
    async fn begin_acquirer_file(&self, file: NewAcquirerFile, now: OffsetDateTime) -> StoreResult<BeginFile>;
    /// Store one chunk of a file atomically: its rows (each deduplicated by `dedup_key` against
    /// everything stored so far), its rejected lines, and the file's progress and counters.
    async fn ingest_chunk(&self, file_id: i64, chunk: IngestChunk) -> StoreResult<ChunkOutcome>;
    /// Mark a file done (`error == None`) or failed at file level.
    async fn finish_acquirer_file(
        &self,
        file_id: i64,
        error: Option<String>,
        now: OffsetDateTime,
    ) -> StoreResult<AcquirerFile>;
    async fn get_acquirer_file(&self, name: &str) -> StoreResult<Option<AcquirerFile>>;
    /// An acquirer's files (by ABI code), most recently received first, at most `limit`.
    async fn list_acquirer_files(&self, abi: &str, limit: u32) -> StoreResult<Vec<AcquirerFile>>;
    /// Rejected lines of a file, by line number, at most `limit`.
    async fn file_rejections(&self, file_id: i64, limit: u32) -> StoreResult<Vec<Rejection>>;
    /// Active instruments' hpans in ascending order, after `after` (exclusive), at most `limit`:
    /// keyset pages for the acquirers' hashed-PAN list.
    async fn active_hpans(&self, after: Option<&Hpan>, limit: u32) -> StoreResult<Vec<Hpan>>;
    /// A consistent snapshot of citizens and activation windows for eligibility.
    async fn load_enrollment_index(&self) -> StoreResult<EnrollmentIndex>;
    /// A citizen's eligible transactions, oldest first.
    async fn citizen_transactions(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<StoredTransaction>>;
    /// Every stored row (eligible or not) of an instrument, oldest first (support: "why didn't
    /// my payment count?").
    async fn instrument_transactions(&self, hpan: &Hpan) -> StoreResult<Vec<StoredTransaction>>;

    // ---- cashback engine results (scoring happens in `finish_acquirer_file`) ----
    /// A citizen's totals in every award period they have rows in, by period id.
    async fn citizen_period_totals(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<PeriodTotals>>;
    /// The citizen's own cashback views in one consistent read: `None` when the citizen is
    /// unknown or withdrawn, otherwise [`Store::citizen_period_totals`] (one statement on both
    /// backends: this is the ranking endpoint's only store read).
    async fn enabled_citizen_totals(&self, fiscal_code: &FiscalCode) -> StoreResult<Option<Vec<PeriodTotals>>>;
    /// The rows that count for a citizen in one period (eligible, of finished files, at or after
    /// the citizen's current T&C acceptance), with their files' reception instants, oldest
    /// transaction first.
    async fn citizen_period_rows(&self, fiscal_code: &FiscalCode, award_period_id: i64) -> StoreResult<Vec<PeriodRow>>;
    /// The change feed of standings: the latest state of every (citizen, period) written after
    /// `after_seq`, by ascending `seq`, at most `limit`. From 0 it lists everything (rebuild).
    /// A row with a given `seq` is never committed after one with a larger `seq` is visible.
    async fn standing_changes(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<StandingUpdate>>;

    // ---- operator bulk import ----
    /// Create citizens and active instruments in bulk (migration from the original system), in
    /// one transaction of at most [`MAX_IMPORT_BATCH`] items (more is an `Other` error naming the
    /// limit). Citizens go in first, enabled. Existing citizens and hpans are left untouched and
    /// counted; a card whose owner is not an enabled citizen is skipped and counted.
    async fn import_enrollments(&self, batch: EnrollmentImport) -> StoreResult<ImportOutcome>;
    /// Create a period's totals in bulk (migration of the original system's rankings; benchmark
    /// seeding): at most [`MAX_IMPORT_BATCH`] rows in one transaction, each with a new change
    /// sequence number so the rankings pick them up. Existing (citizen, period) rows and unknown
    /// citizens are skipped and counted.
    async fn import_period_totals(
        &self,
        award_period_id: i64,
        rows: Vec<ImportedTotals>,
        now: OffsetDateTime,
    ) -> StoreResult<TotalsImportOutcome>;
}

/// Truncate an instant to whole microseconds, the precision both backends store.
pub fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000).expect("valid nanosecond")
}
