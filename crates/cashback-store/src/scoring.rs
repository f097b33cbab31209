//! Stored results of the cashback engine: a citizen's totals per award period (the original's
//! `bpd_citizen_ranking` row), the change feed the in-memory rankings follow, and the glue
//! between stored rows and `cashback_domain::scoring` that both backends share.
//!
//! When a file is finished, the backend re-evaluates every (citizen, period) the file touched
//! from **all** of that citizen's stored rows of the period ([`evaluate_rows`]), so the stored
//! totals never depend on the order in which files arrived, and writes [`PeriodTotals`] with a
//! new change sequence number. Rows count for a citizen only from the citizen's current T&C
//! acceptance (`timestamp_tc`) on: a withdrawal forfeits what came before it.

use cashback_domain::ranking::CitizenId;
use cashback_domain::scoring::{self, CitizenPeriodResult, Standing, TrxInput};
use cashback_domain::{AwardPeriod, Money, OperationType};
use time::OffsetDateTime;

use crate::acquirer::StoredTransaction;

/// A citizen's totals in one award period, as stored after the last file that touched them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodTotals {
    pub award_period_id: i64,
    /// The citizen's number in the rankings (dense, assigned at first enrollment).
    pub citizen_id: CitizenId,
    /// False once the citizen withdrew (then out of the ranking until rows count again).
    pub enabled: bool,
    /// Cashback, capped at the period maximum.
    pub cashback: Money,
    /// Sum of the counted payments' scores, before the period cap.
    pub score_total: Money,
    /// Counted payments.
    pub transactions: u32,
    /// Instant of the latest counted payment, UTC µs.
    pub last_counted_us: Option<i64>,
    /// `idTrx` of the payment that reached the period's minimum count.
    pub id_trx_min_transaction: Option<String>,
    /// `idTrx` of the payment at which the period cap was reached, and its part that counted.
    pub id_trx_pivot: Option<String>,
    pub pivot_cashback: Option<Money>,
    /// Change sequence number: increases with every write of any totals row.
    pub seq: i64,
    pub updated_at: OffsetDateTime,
}

impl PeriodTotals {
    pub fn standing(&self) -> Standing {
        Standing { count: self.transactions, last_us: self.last_counted_us }
    }
}

/// One entry of the change feed: the latest state of a (citizen, period) standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandingUpdate {
    pub seq: i64,
    pub award_period_id: i64,
    pub citizen_id: CitizenId,
    /// False: remove the citizen from the period's ranking.
    pub enabled: bool,
    pub standing: Standing,
}

/// An eligible stored row with the instant its file was received (reversal retention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodRow {
    pub trx: StoredTransaction,
    /// When the row's file was received, UTC µs.
    pub received_us: i64,
}

impl PeriodRow {
    /// What scoring reads of the row.
    pub fn scoring_row(&self) -> ScoringRow {
        let t = &self.trx;
        ScoringRow {
            input: TrxInput {
                key: t.dedup_key,
                at_us: unix_us(t.at),
                received_us: self.received_us,
                operation: if t.reversal { OperationType::Reversal } else { OperationType::Payment },
                amount: Money::from_cents(t.amount_cents),
                hpan: t.hpan.to_bytes(),
                acquirer_id: t.acquirer_id.clone(),
                merchant_id: t.merchant_id.clone(),
                terminal_id: t.terminal_id.clone(),
                correlation_id: t.correlation_id.clone(),
            },
            id_trx_acquirer: t.id_trx_acquirer.clone(),
            acquirer_code: t.sender_code.clone(),
        }
    }
}

/// The part of a stored row that scoring and the milestones read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoringRow {
    pub input: TrxInput,
    pub id_trx_acquirer: String,
    /// The file's sender (acquirer) code.
    pub acquirer_code: String,
}

impl ScoringRow {
    /// `idTrx` (contract §4.4 item 10).
    pub fn id_trx(&self) -> String {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.input.at_us) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        scoring::id_trx(&self.id_trx_acquirer, at, &self.acquirer_code, &self.input.acquirer_id, self.input.operation)
    }
}

/// UTC Unix microseconds of an instant.
pub fn unix_us(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The totals of one citizen's period computed from its rows, before they get a sequence
/// number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComputedTotals {
    pub cashback: Money,
    pub score_total: Money,
    pub transactions: u32,
    pub last_counted_us: Option<i64>,
    pub id_trx_min_transaction: Option<String>,
    pub id_trx_pivot: Option<String>,
    pub pivot_cashback: Option<Money>,
}

/// Runs the engine over a citizen's rows of `period` (any order): the engine's result, with
/// per-row outcomes at the same index as `rows`.
pub fn evaluate_rows(period: &AwardPeriod, rows: &[ScoringRow]) -> CitizenPeriodResult {
    let inputs: Vec<TrxInput> = rows.iter().map(|r| r.input.clone()).collect();
    scoring::evaluate(period, &period.scoring, &inputs)
}

/// The totals to store for a citizen's rows of `period`.
pub fn compute_totals(period: &AwardPeriod, rows: &[ScoringRow]) -> ComputedTotals {
    let r = evaluate_rows(period, rows);
    let id_of = |key: &[u8; 16]| rows.iter().find(|row| &row.input.key == key).map(ScoringRow::id_trx);
    ComputedTotals {
        cashback: r.cashback,
        score_total: r.score_total,
        transactions: r.transactions,
        last_counted_us: r.last_counted_us,
        id_trx_min_transaction: r.min_count_milestone.as_ref().and_then(id_of),
        id_trx_pivot: r.pivot.as_ref().and_then(|p| id_of(&p.key)),
        pivot_cashback: r.pivot.map(|p| p.cashback_norm),
    }
}
