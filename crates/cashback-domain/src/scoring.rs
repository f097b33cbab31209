//! Scoring: a citizen's cashback, transaction count and milestones in one award period.
//!
//! Rules (with worked examples) in `docs/rules.md`, "Scoring, reversals and ranking".
//!
//! The engine is a pure function of the **set** of a citizen's rows for a period
//! ([`evaluate`]): the rows are put in a canonical order first (transaction instant, then the
//! row's deduplication key), so the result never depends on the order in which files arrive.
//! A citizen has at most a few hundred rows per period, so the storage layer re-evaluates the
//! citizen whenever rows arrive (see [`CitizenPeriodState`] for an in-memory holder).
//!
//! 1. **Score of a payment**: `min(round_half_down(min(net, max_transaction_evaluated) × p / 100),
//!    max_transaction_cashback)` in cents, where `net` is the payment's amount minus the refunds
//!    matched to it and `p` the period's `cashback_percentage`. Round half down on the exact
//!    decimal (x.5 cents → x) is the original's rounding, so a payment scores the same cent here
//!    and there. Integer arithmetic only.
//! 2. **Reversals** are matched to one payment of the same card and acquirer id: by correlation id
//!    when a payment carries it (any instant, the earliest with enough balance), otherwise by
//!    (merchant id, terminal id, amount) to an untouched payment dated at or before the reversal
//!    (the latest such). Matching is done in canonical order, correlation-id reversals first. A
//!    payment's balance never goes below zero, so it cannot be reversed twice. A reversal whose
//!    payment is not there (yet) is held: it is matched as soon as the payment is in the set, as
//!    long as that payment was received within [`ScoringRules::reversal_retention_us`] of the
//!    reversal; after that it is final and reported unmatched.
//! 3. **Counting**: a payment counts (+1) unless its amount is zero, it is fully reversed, or an
//!    anti-abuse rule of the period excludes it ([`Exclusion`]).
//! 4. **Period cap**: counted payments in canonical order receive their score until the period
//!    maximum is reached; the payment that reaches it (the *pivot*) receives the remainder, later
//!    payments 0 — and still count.
//! 5. **Milestones**: the counted payment that brought the count to `min_transaction_number`,
//!    and the pivot with the part of its cashback that counted.

use std::collections::HashMap;

use time::{Date, OffsetDateTime, UtcOffset};

use crate::Money;
use crate::acquirer::OperationType;
use crate::calendar::rome_date;
use crate::period::AwardPeriod;

/// A row's identity and the last tie-break of the canonical order: its deduplication key
/// ([`crate::AcquirerRecord::dedup_key`]), unique among stored rows.
pub type TrxKey = [u8; 16];

/// Default retention of a reversal waiting for its payment: 30 days (the original's `P1M`).
pub const DEFAULT_REVERSAL_RETENTION_US: i64 = 30 * 24 * 3600 * 1_000_000;

/// Per-period options of the engine. The default is the historical programme: no anti-abuse
/// rule, reversals held 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoringRules {
    /// A payment counts only if its net amount (after partial refunds) is at least this much.
    pub min_amount: Option<Money>,
    /// At most this many counted payments per citizen, merchant (acquirer id + merchant id) and
    /// civil day in Italy; later ones (canonical order) are excluded.
    pub max_payments_per_merchant_day: Option<u32>,
    /// How long a reversal waits for its payment, in microseconds of reception time: a payment
    /// received more than this after the reversal is never matched to it.
    pub reversal_retention_us: i64,
}

impl Default for ScoringRules {
    fn default() -> Self {
        ScoringRules {
            min_amount: None,
            max_payments_per_merchant_day: None,
            reversal_retention_us: DEFAULT_REVERSAL_RETENTION_US,
        }
    }
}

/// What the engine needs of one eligible row attributed to the citizen and the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrxInput {
    /// Deduplication key: identity and last tie-break of the canonical order.
    pub key: TrxKey,
    /// Transaction instant, UTC Unix microseconds.
    pub at_us: i64,
    /// When the platform received the row (the ingestion instant), UTC Unix microseconds.
    pub received_us: i64,
    pub operation: OperationType,
    /// Absolute amount in cents (never negative; a reversal's sign comes from `operation`).
    pub amount: Money,
    pub hpan: [u8; 32],
    pub acquirer_id: String,
    pub merchant_id: String,
    pub terminal_id: String,
    pub correlation_id: Option<String>,
}

impl TrxInput {
    fn is_payment(&self) -> bool {
        self.operation == OperationType::Payment
    }
}

/// Why a payment does not count (no transaction, no cashback). Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exclusion {
    /// The payment's amount is zero.
    ZeroAmount,
    /// Refunds matched to the payment add up to its whole amount.
    FullyReversed,
    /// Net amount below the period's minimum (anti-abuse).
    BelowMinAmount,
    /// Beyond the period's limit of counted payments per merchant per day (anti-abuse).
    MerchantDailyLimit,
}

impl Exclusion {
    pub const ALL: [Exclusion; 4] =
        [Exclusion::ZeroAmount, Exclusion::FullyReversed, Exclusion::BelowMinAmount, Exclusion::MerchantDailyLimit];

    /// Stable code, stored and shown to the citizen.
    pub fn code(self) -> &'static str {
        match self {
            Exclusion::ZeroAmount => "ZERO_AMOUNT",
            Exclusion::FullyReversed => "FULLY_REVERSED",
            Exclusion::BelowMinAmount => "BELOW_MIN_AMOUNT",
            Exclusion::MerchantDailyLimit => "MERCHANT_DAILY_LIMIT",
        }
    }

    pub fn parse(code: &str) -> Option<Exclusion> {
        Exclusion::ALL.into_iter().find(|e| e.code() == code)
    }

    /// Text for the citizen.
    pub fn description(self) -> &'static str {
        match self {
            Exclusion::ZeroAmount => "the payment's amount is zero",
            Exclusion::FullyReversed => "the payment was refunded in full",
            Exclusion::BelowMinAmount => "the payment is below the period's minimum amount",
            Exclusion::MerchantDailyLimit => "too many payments at the same merchant on the same day",
        }
    }
}

/// Why a reversal is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unmatched {
    /// No payment matches (yet): held until its retention ends, then final.
    NoPayment,
    /// Payments with its correlation id exist, but none has that much left to refund.
    ExceedsBalance,
    /// A reversal of zero: nothing to apply.
    ZeroAmount,
}

impl Unmatched {
    pub fn code(self) -> &'static str {
        match self {
            Unmatched::NoPayment => "REVERSAL_UNMATCHED",
            Unmatched::ExceedsBalance => "REVERSAL_EXCEEDS_PAYMENT",
            Unmatched::ZeroAmount => "REVERSAL_ZERO_AMOUNT",
        }
    }
}

/// The outcome of one payment row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentOutcome {
    /// Amount minus the refunds matched to it.
    pub net_amount: Money,
    /// The part of the net amount that is scored (`min(net, max_transaction_evaluated)`), 0 if
    /// excluded.
    pub counted_amount: Money,
    /// The payment's own cashback (before the period cap), 0 if excluded.
    pub score: Money,
    /// The cashback it actually brings after the period cap.
    pub awarded: Money,
    /// Why it does not count, if it does not.
    pub excluded: Option<Exclusion>,
}

/// The outcome of one reversal row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalOutcome {
    /// Applied to the payment with this key; `total` when it brought the balance to zero;
    /// `refunded_from` is the payment's balance just before this reversal.
    Applied { payment: TrxKey, total: bool, refunded_from: Money },
    /// Not applied.
    Unmatched(Unmatched),
}

/// The outcome of one input row, at the same index as the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    Payment(PaymentOutcome),
    Reversal(ReversalOutcome),
}

/// The pivot milestone: the payment at which the period cap was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pivot {
    pub key: TrxKey,
    /// The part of the pivot's cashback that counted (cap − cashback before it).
    pub cashback_norm: Money,
}

/// What the ranking needs of a citizen in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Standing {
    /// Counted payments.
    pub count: u32,
    /// Instant of the latest counted payment (UTC µs); `None` when nothing counts.
    pub last_us: Option<i64>,
}

/// A citizen's totals in one period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CitizenPeriodResult {
    /// Cashback, capped at the period maximum; never negative.
    pub cashback: Money,
    /// Sum of the counted payments' scores, uncapped.
    pub score_total: Money,
    /// Counted payments.
    pub transactions: u32,
    /// Instant of the latest counted payment.
    pub last_counted_us: Option<i64>,
    /// The counted payment that brought the count to the period's minimum.
    pub min_count_milestone: Option<TrxKey>,
    /// The payment at which the period cap was reached.
    pub pivot: Option<Pivot>,
    /// One outcome per input row, same index.
    pub rows: Vec<RowOutcome>,
}

impl CitizenPeriodResult {
    pub fn standing(&self) -> Standing {
        Standing { count: self.transactions, last_us: self.last_counted_us }
    }
}

/// Cashback of a net amount under the period's percentage and caps, round half down
/// (`x.5` cents → `x`). Amounts ≤ 0 score 0.
pub fn score(period: &AwardPeriod, net: Money) -> Money {
    let counted = net.min(period.max_transaction_evaluated).cents().max(0) as i128;
    let exact_hundredths = counted * i128::from(period.cashback_percentage);
    // Round half down: up only when the remainder is more than half (≥ 51 hundredths).
    let cents = (exact_hundredths + 49) / 100;
    Money::from_cents(cents as i64).min(Ord::max(period.max_transaction_cashback, Money::ZERO))
}

/// The civil day in Italy of a UTC µs instant.
fn rome_day(at_us: i64) -> Date {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH.to_offset(UtcOffset::UTC));
    rome_date(t)
}

/// Canonical order of rows: instant, then key.
fn canonical(rows: &[TrxInput]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_unstable_by(|&a, &b| (rows[a].at_us, rows[a].key).cmp(&(rows[b].at_us, rows[b].key)));
    order
}

fn within_retention(payment: &TrxInput, reversal: &TrxInput, rules: &ScoringRules) -> bool {
    payment.received_us <= reversal.received_us.saturating_add(rules.reversal_retention_us)
}

/// Evaluates a citizen's rows for one period (rules in the module docs). `rows` in any order;
/// rows with the same key must not be passed twice (the store deduplicates them).
pub fn evaluate(period: &AwardPeriod, rules: &ScoringRules, rows: &[TrxInput]) -> CitizenPeriodResult {
    let order = canonical(rows);
    // Remaining balance of each payment (index into rows); reversals keep 0.
    let mut balance: Vec<i64> = rows.iter().map(|r| if r.is_payment() { r.amount.cents().max(0) } else { 0 }).collect();
    let mut reversal: Vec<Option<ReversalOutcome>> = vec![None; rows.len()];

    let apply = |balance: &mut Vec<i64>, p: usize, r: usize| -> ReversalOutcome {
        let refunded_from = Money::from_cents(balance[p]);
        balance[p] -= rows[r].amount.cents();
        ReversalOutcome::Applied { payment: rows[p].key, total: balance[p] == 0, refunded_from }
    };

    // Pass 1: reversals carrying a correlation id, matched to a payment carrying the same one.
    for &r in &order {
        let rev = &rows[r];
        if rev.is_payment() {
            continue;
        }
        if rev.amount.cents() <= 0 {
            reversal[r] = Some(ReversalOutcome::Unmatched(Unmatched::ZeroAmount));
            continue;
        }
        let Some(corr) = rev.correlation_id.as_deref() else { continue };
        let mut seen = false;
        let mut chosen = None;
        for &p in &order {
            let pay = &rows[p];
            if pay.is_payment()
                && pay.correlation_id.as_deref() == Some(corr)
                && pay.hpan == rev.hpan
                && pay.acquirer_id == rev.acquirer_id
                && within_retention(pay, rev, rules)
            {
                seen = true;
                if balance[p] >= rev.amount.cents() {
                    chosen = Some(p);
                    break;
                }
            }
        }
        match chosen {
            Some(p) => reversal[r] = Some(apply(&mut balance, p, r)),
            None if seen => reversal[r] = Some(ReversalOutcome::Unmatched(Unmatched::ExceedsBalance)),
            None => {}
        }
    }
    // Pass 2: the others, by merchant, terminal and amount, to the latest untouched payment
    // dated at or before the reversal.
    for &r in &order {
        let rev = &rows[r];
        if rev.is_payment() || reversal[r].is_some() {
            continue;
        }
        let mut chosen = None;
        for &p in &order {
            let pay = &rows[p];
            if pay.at_us > rev.at_us {
                break;
            }
            if pay.is_payment()
                && pay.amount == rev.amount
                && balance[p] == pay.amount.cents()
                && pay.hpan == rev.hpan
                && pay.acquirer_id == rev.acquirer_id
                && pay.merchant_id == rev.merchant_id
                && pay.terminal_id == rev.terminal_id
                && within_retention(pay, rev, rules)
            {
                chosen = Some(p);
            }
        }
        reversal[r] = Some(match chosen {
            Some(p) => apply(&mut balance, p, r),
            None => ReversalOutcome::Unmatched(Unmatched::NoPayment),
        });
    }

    // Payments in canonical order: exclusions, scores, the cap and the milestones.
    let cap = period.max_period_cashback.cents().max(0);
    let mut per_merchant_day: HashMap<(&str, &str, Date), u32> = HashMap::new();
    let mut out = CitizenPeriodResult { rows: Vec::with_capacity(rows.len()), ..Default::default() };
    let mut payment: Vec<Option<PaymentOutcome>> = vec![None; rows.len()];
    let mut running: i64 = 0;
    let mut score_total: i64 = 0;
    for &p in &order {
        let pay = &rows[p];
        if !pay.is_payment() {
            continue;
        }
        let net = Money::from_cents(balance[p]);
        let excluded = if pay.amount.cents() <= 0 {
            Some(Exclusion::ZeroAmount)
        } else if net.cents() == 0 {
            Some(Exclusion::FullyReversed)
        } else if rules.min_amount.is_some_and(|min| net < min) {
            Some(Exclusion::BelowMinAmount)
        } else if let Some(k) = rules.max_payments_per_merchant_day {
            let n = per_merchant_day.entry((&pay.acquirer_id, &pay.merchant_id, rome_day(pay.at_us))).or_insert(0);
            if *n >= k {
                Some(Exclusion::MerchantDailyLimit)
            } else {
                *n += 1;
                None
            }
        } else {
            None
        };
        let mut o = PaymentOutcome {
            net_amount: net,
            counted_amount: Money::ZERO,
            score: Money::ZERO,
            awarded: Money::ZERO,
            excluded,
        };
        if excluded.is_none() {
            o.counted_amount = net.min(Ord::max(period.max_transaction_evaluated, Money::ZERO));
            o.score = score(period, net);
            let before = running;
            let awarded = o.score.cents().min(cap - before);
            running += awarded;
            score_total += o.score.cents();
            o.awarded = Money::from_cents(awarded);
            out.transactions += 1;
            out.last_counted_us = Some(pay.at_us);
            if out.transactions == period.min_transaction_number {
                out.min_count_milestone = Some(pay.key);
            }
            if cap > 0 && before < cap && running == cap {
                out.pivot = Some(Pivot { key: pay.key, cashback_norm: Money::from_cents(awarded) });
            }
        }
        payment[p] = Some(o);
    }
    out.cashback = Money::from_cents(running);
    out.score_total = Money::from_cents(score_total);
    for i in 0..rows.len() {
        out.rows.push(match (payment[i], reversal[i]) {
            (Some(p), _) => RowOutcome::Payment(p),
            (None, Some(r)) => RowOutcome::Reversal(r),
            (None, None) => unreachable!("every row has an outcome"),
        });
    }
    out
}

/// The cashback shown next to each row in the citizen's transaction list, same index as the
/// input. A payment shows its own score on its full amount, or 0 when it is excluded for any
/// reason but a refund (zero amount, anti-abuse); an applied reversal shows minus what it took
/// away (score of its payment's balance before it − score after it), 0 when unmatched or when
/// its payment shows 0. A payment and its reversals therefore add up to the payment's score,
/// and all rows to [`CitizenPeriodResult::score_total`] (before the period cap, which the pivot
/// marks).
pub fn shown_cashback(period: &AwardPeriod, rows: &[TrxInput], result: &CitizenPeriodResult) -> Vec<Money> {
    let mut shows_score: HashMap<TrxKey, bool> = HashMap::new();
    for (row, outcome) in rows.iter().zip(&result.rows) {
        if let RowOutcome::Payment(p) = outcome {
            shows_score.insert(row.key, matches!(p.excluded, None | Some(Exclusion::FullyReversed)));
        }
    }
    rows.iter()
        .zip(&result.rows)
        .map(|(row, outcome)| match *outcome {
            RowOutcome::Payment(p) if matches!(p.excluded, None | Some(Exclusion::FullyReversed)) => {
                score(period, row.amount)
            }
            RowOutcome::Payment(_) => Money::ZERO,
            RowOutcome::Reversal(ReversalOutcome::Applied { payment, refunded_from, .. })
                if shows_score.get(&payment).copied().unwrap_or(false) =>
            {
                let after = Money::from_cents(refunded_from.cents() - row.amount.cents());
                Money::from_cents(score(period, after).cents() - score(period, refunded_from).cents())
            }
            RowOutcome::Reversal(_) => Money::ZERO,
        })
        .collect()
}

/// Whether an unmatched reversal received at `received_us` is final at `now_us`: its retention
/// is over, so no payment received from now on can match it.
pub fn unmatched_is_final(received_us: i64, now_us: i64, rules: &ScoringRules) -> bool {
    now_us > received_us.saturating_add(rules.reversal_retention_us)
}

/// The transaction id of contract §4.4 item 10 (`idTrx`): `idTrxAcquirer` + the instant in UTC,
/// ISO-8601 with milliseconds (truncated) and `Z` + `acquirerCode` + `acquirerId` +
/// `operationType` (`00`/`01`). Milestones and transaction pages use the same id.
pub fn id_trx(
    id_trx_acquirer: &str,
    at: OffsetDateTime,
    acquirer_code: &str,
    acquirer_id: &str,
    operation: OperationType,
) -> String {
    let u = at.to_offset(UtcOffset::UTC);
    format!(
        "{id_trx_acquirer}{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z{acquirer_code}{acquirer_id}{}",
        u.year(),
        u8::from(u.month()),
        u.day(),
        u.hour(),
        u.minute(),
        u.second(),
        u.millisecond(),
        operation.code()
    )
}

/// A citizen's rows for one period held in memory, with the result kept up to date: rows are
/// applied one by one or in batches, in any order, and the result is always that of
/// [`evaluate`] over the rows held. Unmatched reversals past their retention are dropped by
/// [`CitizenPeriodState::expire`] (bounded retention).
#[derive(Debug, Clone, Default)]
pub struct CitizenPeriodState {
    rows: Vec<TrxInput>,
    result: CitizenPeriodResult,
}

/// The standing before and after an update, for the ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandingChange {
    pub before: Standing,
    pub after: Standing,
}

impl CitizenPeriodState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The rows held, in the order they were applied.
    pub fn rows(&self) -> &[TrxInput] {
        &self.rows
    }

    pub fn result(&self) -> &CitizenPeriodResult {
        &self.result
    }

    /// Applies rows (a row whose key is already held is ignored) and re-evaluates once.
    pub fn apply(
        &mut self,
        period: &AwardPeriod,
        rules: &ScoringRules,
        rows: impl IntoIterator<Item = TrxInput>,
    ) -> StandingChange {
        let before = self.result.standing();
        for row in rows {
            if !self.rows.iter().any(|r| r.key == row.key) {
                self.rows.push(row);
            }
        }
        self.result = evaluate(period, rules, &self.rows);
        StandingChange { before, after: self.result.standing() }
    }

    /// Drops the reversals still unmatched whose retention is over at `now_us` and returns them
    /// (to be reported as unmatched). Totals do not change.
    pub fn expire(&mut self, period: &AwardPeriod, rules: &ScoringRules, now_us: i64) -> Vec<TrxInput> {
        let mut expired = Vec::new();
        let mut kept = Vec::with_capacity(self.rows.len());
        for (row, outcome) in self.rows.drain(..).zip(&self.result.rows) {
            let unmatched = matches!(outcome, RowOutcome::Reversal(ReversalOutcome::Unmatched(_)));
            if unmatched && unmatched_is_final(row.received_us, now_us, rules) {
                expired.push(row);
            } else {
                kept.push(row);
            }
        }
        self.rows = kept;
        if !expired.is_empty() {
            self.result = evaluate(period, rules, &self.rows);
        }
        expired
    }
}

#[cfg(test)]
mod tests;
