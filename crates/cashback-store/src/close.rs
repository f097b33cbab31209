//! Period close: awards, payout files, the payout agent's outcomes, complaints, the notification
//! outbox and the once-only job claims of the scheduler (issue 7).
//!
//! Life of an award (`award.status`):
//! - `NEW`: owed, waiting for the next payout file (and for an IBAN, when it has none);
//! - `NOTHING_DUE`: eligible but the amount is 0 (typology `02` without a prize): never paid;
//! - `SENT`: assigned to a payout file (one transaction creates the file record and moves its
//!   rows); the file's bytes are a pure function of those rows, so it can be regenerated;
//! - `EXECUTED` / `FAILED`: the payout agent's outcome. A `FAILED` award is re-issued (a new
//!   `REISSUE` award related to it) at the next payout run once the citizen's IBAN differs from
//!   the one that failed;
//! - `INTEGRATION`: a payment the agent made itself after a complaint (inbound file), recorded.
//!
//! Idempotency: at most one `AWARD` per (citizen, period), one `REISSUE` per failed award, one
//! `CORRECTION` per complaint, one `INTEGRATION` per agent id; inbound files are recorded by name
//! and digest; notifications carry a unique key. Running any step twice changes nothing.

use async_trait::async_trait;
use cashback_domain::award::{self, AwardInput, NotAwarded};
use cashback_domain::ranking::{CitizenId, Ranking};
use cashback_domain::scoring::Standing;
use cashback_domain::{AwardPeriod, FiscalCode, Money};
use time::{Date, OffsetDateTime};

use crate::{Payoff, StoreResult};

/// Most awards or notifications written in one store transaction of the close (the writer is
/// shared with the API: the close yields between batches).
pub const CLOSE_BATCH: usize = 20_000;
/// Most rows in one payout file (the original used 1,000,000 in production).
pub const MAX_PAYOUT_FILE_ROWS: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwardKind {
    /// The period's award of a citizen.
    Award,
    /// A failed transfer paid again to a new IBAN.
    Reissue,
    /// An accepted complaint's correction.
    Correction,
    /// A payment made by the payout agent itself (inbound "integration" file).
    Integration,
}

impl AwardKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            AwardKind::Award => "AWARD",
            AwardKind::Reissue => "REISSUE",
            AwardKind::Correction => "CORRECTION",
            AwardKind::Integration => "INTEGRATION",
        }
    }

    pub fn parse(s: &str) -> Option<AwardKind> {
        [AwardKind::Award, AwardKind::Reissue, AwardKind::Correction, AwardKind::Integration]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwardStatus {
    New,
    NothingDue,
    Sent,
    Executed,
    Failed,
    Integration,
}

impl AwardStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AwardStatus::New => "NEW",
            AwardStatus::NothingDue => "NOTHING_DUE",
            AwardStatus::Sent => "SENT",
            AwardStatus::Executed => "EXECUTED",
            AwardStatus::Failed => "FAILED",
            AwardStatus::Integration => "INTEGRATION",
        }
    }

    pub fn parse(s: &str) -> Option<AwardStatus> {
        [
            AwardStatus::New,
            AwardStatus::NothingDue,
            AwardStatus::Sent,
            AwardStatus::Executed,
            AwardStatus::Failed,
            AwardStatus::Integration,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// The payout agent's outcome of one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The agent's result text (`ORDINE ESEGUITO`, `KO`, `PRESA IN CARICO RIGETTATO`, …).
    pub result: String,
    pub executed: bool,
    pub reason: Option<String>,
    /// Bank reference of the transfer.
    pub cro: Option<String>,
    pub execution_date: Option<Date>,
}

/// One award row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Award {
    /// The "uniqueID" exchanged with the payout agent.
    pub award_id: i64,
    pub award_period_id: i64,
    pub fiscal_code: String,
    pub kind: AwardKind,
    /// The award this one re-issues or corrects.
    pub related_id: Option<i64>,
    pub complaint_id: Option<i64>,
    /// The agent's id of an `INTEGRATION` payment.
    pub agent_id: Option<i64>,
    pub amount: Money,
    pub cashback: Money,
    pub jackpot: Money,
    pub typology: String,
    /// How it was reached: counted payments, rank, uncapped score, whether the cap cut it.
    pub transactions: u32,
    pub rank: Option<u32>,
    pub score_total: Money,
    pub period_cap_applied: bool,
    pub status: AwardStatus,
    /// The IBAN and holder the award is (or was) paid to.
    pub payoff: Option<Payoff>,
    pub payout_file_id: Option<i64>,
    pub outcome: Option<TransferOutcome>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Totals of a close run (stored with the close, returned again when it is re-run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseSummary {
    pub award_period_id: i64,
    /// Citizens with totals in the period.
    pub citizens: u64,
    /// Awards (including `NOTHING_DUE` ones).
    pub awards: u64,
    pub not_eligible: u64,
    pub super_cashback_winners: u64,
    pub cashback: Money,
    pub jackpot: Money,
    pub amount: Money,
    /// Awards without an IBAN at the close.
    pub without_iban: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// This run computed the awards.
    Closed(CloseSummary),
    /// The period was closed before: nothing changed.
    AlreadyClosed(CloseSummary),
}

impl CloseOutcome {
    pub fn summary(&self) -> &CloseSummary {
        match self {
            CloseOutcome::Closed(s) | CloseOutcome::AlreadyClosed(s) => s,
        }
    }
}

/// What the close reads of one citizen in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRow {
    pub fiscal_code: String,
    pub citizen_id: CitizenId,
    /// Enabled in the period totals and as a citizen.
    pub enabled: bool,
    pub cashback: Money,
    pub score_total: Money,
    pub standing: Standing,
    /// The citizen's IBAN and holder now.
    pub payoff: Option<Payoff>,
}

/// An award to insert, decided by [`decide_awards`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAward {
    pub fiscal_code: String,
    pub decision: award::AwardDecision,
    pub score_total: Money,
    pub payoff: Option<Payoff>,
}

impl NewAward {
    pub fn status(&self) -> AwardStatus {
        if self.decision.amount > Money::ZERO { AwardStatus::New } else { AwardStatus::NothingDue }
    }
}

/// A citizen with totals but no award (for the "not eligible" notice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotEligible {
    pub fiscal_code: String,
    pub transactions: u32,
    pub cashback: Money,
}

/// The close's decisions for a whole period: ranks from the same ordering as the live ranking
/// (enabled citizens only), then [`award::decide`] per citizen. Withdrawn citizens get neither an
/// award nor a notice. Output in input order.
pub fn decide_awards(period: &AwardPeriod, rows: Vec<CloseRow>) -> (Vec<NewAward>, Vec<NotEligible>, CloseSummary) {
    let ranking = Ranking::build(rows.iter().filter(|r| r.enabled).map(|r| (r.citizen_id, r.standing)));
    let mut summary = CloseSummary { award_period_id: period.id, citizens: rows.len() as u64, ..Default::default() };
    let mut awards = Vec::new();
    let mut not_eligible = Vec::new();
    for r in rows {
        let input = AwardInput {
            enabled: r.enabled,
            cashback: r.cashback,
            score_total: r.score_total,
            standing: r.standing,
            rank: if r.enabled { ranking.rank(r.citizen_id) } else { None },
        };
        match award::decide(period, &input) {
            Ok(d) => {
                summary.awards += 1;
                summary.super_cashback_winners += u64::from(d.jackpot > Money::ZERO);
                summary.cashback = summary.cashback.checked_add(d.cashback).unwrap_or(summary.cashback);
                summary.jackpot = summary.jackpot.checked_add(d.jackpot).unwrap_or(summary.jackpot);
                summary.amount = summary.amount.checked_add(d.amount).unwrap_or(summary.amount);
                summary.without_iban += u64::from(r.payoff.is_none() && d.amount > Money::ZERO);
                awards.push(NewAward {
                    fiscal_code: r.fiscal_code,
                    decision: d,
                    score_total: r.score_total,
                    payoff: r.payoff,
                });
            }
            Err(NotAwarded::BelowMinimum { transactions, .. }) => {
                summary.not_eligible += 1;
                not_eligible.push(NotEligible { fiscal_code: r.fiscal_code, transactions, cashback: r.cashback });
            }
            Err(NotAwarded::NotEnabled) => {}
        }
    }
    (awards, not_eligible, summary)
}

/// A payout file: its record, created together with the assignment of its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutFile {
    pub payout_file_id: i64,
    /// The payout run that created it (files of one run share it).
    pub run_id: i64,
    pub name: String,
    /// 1-based chunk number and number of chunks of the run.
    pub chunk: u32,
    pub total_chunks: u32,
    pub rows: u64,
    pub amount: Money,
    pub created_at: OffsetDateTime,
    /// SHA-256 of the plain file, once written.
    pub sha256: Option<String>,
}

/// What a payout run did before creating files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayoutPreparation {
    /// `NEW` awards that got the citizen's IBAN (they had none).
    pub iban_filled: u64,
    /// Failed awards re-issued to a new IBAN.
    pub reissued: u64,
    /// `NEW` awards still without an IBAN (a reminder is queued for each, once).
    pub waiting_for_iban: u64,
    /// The files created (empty when nothing was due).
    pub files: Vec<PayoutFile>,
}

/// One line of an inbound outcome file, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeUpdate {
    pub line: u64,
    pub award_id: i64,
    pub outcome: TransferOutcome,
}

/// One line of the complaint "integration" file: a payment the agent made itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationPayment {
    pub line: u64,
    pub agent_id: i64,
    pub related_id: Option<i64>,
    pub fiscal_code: String,
    pub iban: String,
    pub holder_name: Option<String>,
    pub holder_surname: Option<String>,
    pub amount: Money,
    pub cashback: Money,
    pub jackpot: Money,
    pub period_start: Date,
    pub period_end: Date,
    pub complaint_id: Option<i64>,
    pub outcome: TransferOutcome,
}

/// A rejected line of an inbound file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRejection {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// Applied now.
    Applied { applied: u64, unchanged: u64, rejected: Vec<InboundRejection> },
    /// The same file (name and digest) was applied before: nothing changed.
    AlreadyApplied,
    /// A different file with the same name was applied before: refused.
    NameConflict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboundKind {
    Outcomes,
    Integrations,
}

impl InboundKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            InboundKind::Outcomes => "OUTCOMES",
            InboundKind::Integrations => "INTEGRATIONS",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComplaintKind {
    MissingTransaction,
    WrongAmount,
    PaymentNotReceived,
}

impl ComplaintKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ComplaintKind::MissingTransaction => "MISSING_TRANSACTION",
            ComplaintKind::WrongAmount => "WRONG_AMOUNT",
            ComplaintKind::PaymentNotReceived => "PAYMENT_NOT_RECEIVED",
        }
    }

    pub fn parse(s: &str) -> Option<ComplaintKind> {
        [ComplaintKind::MissingTransaction, ComplaintKind::WrongAmount, ComplaintKind::PaymentNotReceived]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComplaintStatus {
    Open,
    Accepted,
    Rejected,
}

impl ComplaintStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            ComplaintStatus::Open => "OPEN",
            ComplaintStatus::Accepted => "ACCEPTED",
            ComplaintStatus::Rejected => "REJECTED",
        }
    }

    pub fn parse(s: &str) -> Option<ComplaintStatus> {
        [ComplaintStatus::Open, ComplaintStatus::Accepted, ComplaintStatus::Rejected]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Longest complaint description, in characters.
pub const MAX_COMPLAINT_TEXT: usize = 2_000;

/// Checks a complaint before it is filed: a known kind, a description of 1 to
/// [`MAX_COMPLAINT_TEXT`] characters, an existing period, and `today` (Italian civil date) within
/// the period's complaint window ([`award::complaint_open_on`]). Errors name the field.
pub fn validate_complaint(
    periods: &[AwardPeriod],
    award_period_id: i64,
    kind: &str,
    description: &str,
    today: Date,
) -> Result<ComplaintKind, cashback_domain::ValidationError> {
    use cashback_domain::ValidationError;
    let kind = ComplaintKind::parse(kind).ok_or_else(|| {
        ValidationError::new("kind", "must be MISSING_TRANSACTION, WRONG_AMOUNT or PAYMENT_NOT_RECEIVED")
    })?;
    let len = description.trim().chars().count();
    if len == 0 || len > MAX_COMPLAINT_TEXT {
        return Err(ValidationError::new("description", format!("must be 1 to {MAX_COMPLAINT_TEXT} characters")));
    }
    let period = periods
        .iter()
        .find(|p| p.id == award_period_id)
        .ok_or_else(|| ValidationError::new("awardPeriodId", format!("no award period {award_period_id}")))?;
    if !award::complaint_open_on(period, today) {
        return Err(ValidationError::new(
            "awardPeriodId",
            format!(
                "complaints about period {award_period_id} are accepted from {} to {}",
                award::complaint_opens(period),
                award::complaint_deadline(period)
            ),
        ));
    }
    Ok(kind)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    pub complaint_id: i64,
    pub fiscal_code: String,
    pub award_period_id: i64,
    pub kind: ComplaintKind,
    pub description: String,
    pub status: ComplaintStatus,
    /// Correction granted (accepted complaints).
    pub correction: Option<Money>,
    /// The correction award created on acceptance.
    pub correction_award_id: Option<i64>,
    pub operator_note: Option<String>,
    pub created_at: OffsetDateTime,
    pub decided_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileComplaintOutcome {
    Created(Complaint),
    /// An open complaint of the same kind for the period exists: returned unchanged.
    AlreadyOpen(Complaint),
    CitizenNotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComplaintDecision {
    Accept { correction: Money, note: Option<String> },
    Reject { note: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecideComplaintOutcome {
    Decided(Complaint),
    /// Already decided the same way: unchanged.
    Unchanged(Complaint),
    /// Already decided differently: refused.
    Conflict(Complaint),
    NotFound,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub notification_id: i64,
    pub fiscal_code: String,
    /// The notice, as JSON (`cashback-notify`'s `Notice`).
    pub payload: String,
    pub attempts: u32,
}

/// A notification to queue: `key` makes it once-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub key: String,
    pub fiscal_code: String,
    pub payload: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Sent {
        message_id: String,
    },
    /// Try again at `next_attempt`.
    Retry {
        error: String,
        next_attempt: OffsetDateTime,
    },
    /// Give up.
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxCounts {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
}

/// Storage of the period close. Implemented by both backends next to [`crate::Store`].
#[async_trait]
pub trait CloseStore: Send + Sync + 'static {
    /// Compute and store the period's awards (and queue the award / not-eligible notices), once.
    /// Re-running returns [`CloseOutcome::AlreadyClosed`] with the first run's summary.
    /// `notices` renders the JSON payload of a notice for an award or a not-eligible citizen.
    async fn close_period(
        &self,
        period: &AwardPeriod,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<CloseOutcome>;

    /// The stored close summary of a period, if closed.
    async fn close_summary(&self, award_period_id: i64) -> StoreResult<Option<CloseSummary>>;

    /// A payout run over every closed period: fill missing IBANs of `NEW` awards from the
    /// citizens, re-issue failed awards whose citizen has a different IBAN now, queue an IBAN
    /// reminder (once per award) for those still without one, then assign every payable `NEW`
    /// award (amount > 0, IBAN present) to files of at most `max_rows` rows, named by
    /// `name(now, chunk, total_chunks, rows)`, in award id order, atomically.
    async fn prepare_payout(
        &self,
        max_rows: usize,
        name: NamePayoutFile,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<PayoutPreparation>;

    async fn payout_files(&self, run_id: Option<i64>) -> StoreResult<Vec<PayoutFile>>;
    /// The rows of a payout file, by award id.
    async fn payout_file_awards(&self, payout_file_id: i64) -> StoreResult<Vec<Award>>;
    /// Record the digest of the written plain file (first write wins; a different digest later
    /// is an error: the file must be regenerated byte-identical).
    async fn payout_file_written(&self, payout_file_id: i64, sha256: &str) -> StoreResult<()>;

    /// Apply an outcome file (once per name and digest). Unknown or never-sent awards are
    /// rejected by line; each changed award queues a payment notice.
    async fn apply_outcomes(
        &self,
        file_name: &str,
        sha256: &str,
        lines: Vec<OutcomeUpdate>,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<InboundOutcome>;

    /// Apply an integration file (once per name and digest): one `INTEGRATION` award per agent
    /// id; the citizen must exist and the period must match the dates exactly.
    async fn apply_integrations(
        &self,
        file_name: &str,
        sha256: &str,
        lines: Vec<IntegrationPayment>,
        now: OffsetDateTime,
    ) -> StoreResult<InboundOutcome>;

    async fn citizen_awards(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Award>>;
    async fn get_award(&self, award_id: i64) -> StoreResult<Option<Award>>;

    // ---- complaints ----
    async fn file_complaint(
        &self,
        fiscal_code: &FiscalCode,
        award_period_id: i64,
        kind: ComplaintKind,
        description: &str,
        now: OffsetDateTime,
    ) -> StoreResult<FileComplaintOutcome>;
    async fn citizen_complaints(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Complaint>>;
    async fn list_complaints(&self, status: Option<ComplaintStatus>, limit: u32) -> StoreResult<Vec<Complaint>>;
    /// Accept (creating a `CORRECTION` award, paid in the next payout file) or reject, and queue
    /// the citizen's notice.
    async fn decide_complaint(
        &self,
        complaint_id: i64,
        decision: ComplaintDecision,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<DecideComplaintOutcome>;

    // ---- notification outbox ----
    /// Queue notifications; keys already present are skipped. Returns how many were queued.
    async fn enqueue_notifications(&self, items: Vec<NewNotification>, now: OffsetDateTime) -> StoreResult<u64>;
    /// Queue the same notice for every enrolled citizen who accepted the T&C before
    /// `accepted_before` (e.g. "the period is over"), with keys `{key_prefix}{fiscal_code}`, in
    /// batches of [`CLOSE_BATCH`]. Returns how many were new.
    async fn enqueue_for_enrolled(
        &self,
        key_prefix: &str,
        payload: &str,
        accepted_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64>;
    /// Claim up to `limit` due notifications (the longest-waiting first; returned by id): they are
    /// hidden from other claims for `lease`.
    async fn claim_notifications(
        &self,
        limit: u32,
        lease: time::Duration,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<OutboxItem>>;
    async fn notification_result(
        &self,
        notification_id: i64,
        result: DeliveryResult,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    async fn outbox_counts(&self) -> StoreResult<OutboxCounts>;

    // ---- scheduler ----
    /// Claim a job for a key (e.g. `awards:1`): true for exactly one caller, unless the previous
    /// claim is older than `stale_after` and not finished (a crashed node), when it is taken over.
    async fn claim_job(&self, job: &str, stale_after: time::Duration, now: OffsetDateTime) -> StoreResult<bool>;
    async fn finish_job(&self, job: &str, outcome: &str, now: OffsetDateTime) -> StoreResult<()>;
    /// Whether a job finished.
    async fn job_done(&self, job: &str) -> StoreResult<bool>;
}

/// Renders the JSON payload of a notice (a plain function: the store may call it on its own
/// writer thread, inside the transaction that changes the state the notice is about).
pub type RenderNotice = fn(NoticeFor<'_>) -> String;
/// Names a payout file: `(created, chunk, total_chunks, rows)`.
pub type NamePayoutFile = fn(OffsetDateTime, u32, u32, usize) -> String;

/// What a notice is about, for the payload renderer passed to the store.
#[derive(Debug, Clone, Copy)]
pub enum NoticeFor<'a> {
    AwardComputed { period: &'a AwardPeriod, award_id: i64, award: &'a NewAward },
    NotEligible { period: &'a AwardPeriod, row: &'a NotEligible },
    Payment { award: &'a Award },
    IbanMissing { award: &'a Award },
    ComplaintDecided { complaint: &'a Complaint },
}

/// Sum of every stored award of the period by kind, for conservation checks.
pub fn sum_amounts<'a>(awards: impl IntoIterator<Item = &'a Award>) -> Money {
    awards.into_iter().fold(Money::ZERO, |acc, a| acc.checked_add(a.amount).unwrap_or(acc))
}
