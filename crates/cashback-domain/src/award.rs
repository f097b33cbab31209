//! Period close: who is owed what, and until when a citizen may complain.
//!
//! The original computed awards in a SQL function (`update_bpd_award_winner`, see
//! `bpd-domain.md` §3.11) that was not idempotent (§8.8). Here the decision for one citizen is a
//! pure function of the period's rules, the citizen's engine totals and their rank; the store
//! keeps at most one award per (citizen, period), so running the close again changes nothing.
//!
//! Rules (`docs/rules.md`, "Period close"):
//! - eligible = enabled citizen with at least `min_transaction_number` counted payments;
//! - cashback = min(accrued cashback, `max_period_cashback`) (the engine already caps it: the
//!   min is applied again so that the rule holds whatever the input);
//! - Super Cashback = `max_amount` when the rank is within `min_position` (and the count meets
//!   the minimum, [`crate::ranking::is_awarded`]), else 0;
//! - amount = cashback + Super Cashback;
//! - typology: `02` when the cashback is ≤ 0, else `03` with the Super Cashback, else `01`
//!   (the original's codes).

use crate::money::Money;
use crate::period::AwardPeriod;
use crate::ranking::is_awarded;
use crate::scoring::Standing;
use time::{Date, Duration};

/// Days after the period end within which the payout is due (the legal 60-day deadline).
pub const PAYMENT_DUE_DAYS: i64 = 60;
/// Days, after the end of the month in which the payout was due, during which a complaint may
/// be filed.
pub const COMPLAINT_WINDOW_DAYS: i64 = 120;

/// The payout agent's award typology (column 8 of the payment-order file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Typology {
    /// `01`: cashback only.
    Cashback,
    /// `02`: no cashback (≤ 0); a Super Cashback prize may still be due.
    NoCashback,
    /// `03`: cashback plus Super Cashback.
    CashbackAndSuper,
}

impl Typology {
    pub const fn code(self) -> &'static str {
        match self {
            Typology::Cashback => "01",
            Typology::NoCashback => "02",
            Typology::CashbackAndSuper => "03",
        }
    }

    pub fn parse(code: &str) -> Option<Typology> {
        match code {
            "01" => Some(Typology::Cashback),
            "02" => Some(Typology::NoCashback),
            "03" => Some(Typology::CashbackAndSuper),
            _ => None,
        }
    }
}

/// What the close needs of one citizen in the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwardInput {
    /// The citizen is enrolled (not withdrawn) at the close.
    pub enabled: bool,
    /// Accrued cashback (the engine's capped total).
    pub cashback: Money,
    /// Sum of the counted payments' scores before the period cap.
    pub score_total: Money,
    /// Counted payments and latest counted instant.
    pub standing: Standing,
    /// Position in the period's ranking (1 = first), `None` when not ranked.
    pub rank: Option<u32>,
}

/// The award of one eligible citizen, with how it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwardDecision {
    pub cashback: Money,
    pub jackpot: Money,
    pub amount: Money,
    pub typology: Typology,
    /// Counted payments (≥ the period minimum).
    pub transactions: u32,
    pub rank: Option<u32>,
    /// The period cap cut the cashback (score_total > cap).
    pub period_cap_applied: bool,
}

/// Why a citizen gets no award.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAwarded {
    /// Withdrawn before the close.
    NotEnabled,
    /// Fewer counted payments than the period minimum.
    BelowMinimum { transactions: u32, minimum: u32 },
}

/// The close's decision for one citizen.
pub fn decide(period: &AwardPeriod, input: &AwardInput) -> Result<AwardDecision, NotAwarded> {
    if !input.enabled {
        return Err(NotAwarded::NotEnabled);
    }
    let count = input.standing.count;
    if count < period.min_transaction_number {
        return Err(NotAwarded::BelowMinimum { transactions: count, minimum: period.min_transaction_number });
    }
    let cashback = input.cashback.min(period.max_period_cashback).max(Money::ZERO);
    let super_cashback = input.rank.is_some_and(|r| is_awarded(period, r, input.standing));
    let jackpot = if super_cashback { period.max_amount } else { Money::ZERO };
    let typology = if cashback <= Money::ZERO {
        Typology::NoCashback
    } else if super_cashback {
        Typology::CashbackAndSuper
    } else {
        Typology::Cashback
    };
    Ok(AwardDecision {
        cashback,
        jackpot,
        // Both terms are bounded by the period's validated amounts: no overflow.
        amount: cashback.checked_add(jackpot).unwrap_or(Money::from_cents(i64::MAX)),
        typology,
        transactions: count,
        rank: input.rank,
        period_cap_applied: input.score_total > period.max_period_cashback,
    })
}

/// Day on which the close runs: the day after the grace period (`end + grace + 1`).
pub fn close_day(period: &AwardPeriod) -> Date {
    period.grace_end().next_day().unwrap_or(Date::MAX)
}

/// Last day by which the payout is due: period end + [`PAYMENT_DUE_DAYS`].
pub fn payment_due(period: &AwardPeriod) -> Date {
    period.end.checked_add(Duration::days(PAYMENT_DUE_DAYS)).unwrap_or(Date::MAX)
}

/// First day a complaint about the period may be filed: the day after the period end.
pub fn complaint_opens(period: &AwardPeriod) -> Date {
    period.end.next_day().unwrap_or(Date::MAX)
}

/// Last day a complaint about the period may be filed: [`COMPLAINT_WINDOW_DAYS`] after the end
/// of the month in which the payout was due.
pub fn complaint_deadline(period: &AwardPeriod) -> Date {
    let due = payment_due(period);
    let month_end = due.replace_day(due.month().length(due.year())).unwrap_or(due);
    month_end.checked_add(Duration::days(COMPLAINT_WINDOW_DAYS)).unwrap_or(Date::MAX)
}

/// Whether a complaint about the period may be filed on `today` (Europe/Rome civil date).
pub fn complaint_open_on(period: &AwardPeriod, today: Date) -> bool {
    today >= complaint_opens(period) && today <= complaint_deadline(period)
}

/// Default retention of a citizen's personal data: 10 years, the time Italian law keeps
/// accounting records (art. 2220 of the civil code); an award is a payment.
pub const RETENTION_DAYS_DEFAULT: u32 = 3650;

/// The erasure rule (`docs/security.md`, "Privacy"): the data of a citizen who withdrew before
/// the returned day is erased; when the flag is true (the complaint window of every award period
/// closed before that day: the programme is over for everyone), so is the data of every citizen
/// not changed since. `today`: the civil date of the run.
pub fn erasure_cutoff(periods: &[AwardPeriod], today: Date, retention_days: u32) -> (Date, bool) {
    let cutoff = today.checked_sub(Duration::days(i64::from(retention_days))).unwrap_or(Date::MIN);
    let over = !periods.is_empty() && periods.iter().all(|p| complaint_deadline(p) < cutoff);
    (cutoff, over)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::default_programme;
    use time::macros::date;

    fn semester() -> AwardPeriod {
        default_programme().into_iter().find(|p| p.id == 1).unwrap()
    }

    fn input(count: u32, cashback_eur: i64, rank: Option<u32>) -> AwardInput {
        AwardInput {
            enabled: true,
            cashback: Money::from_cents(cashback_eur * 100).min(Money::from_cents(15_000)),
            score_total: Money::from_cents(cashback_eur * 100),
            standing: Standing { count, last_us: Some(1) },
            rank,
        }
    }

    #[test]
    fn examples_of_the_original_suite() {
        let p = semester();
        // 49 transactions: no award.
        assert_eq!(
            decide(&p, &input(49, 180, Some(200_000))),
            Err(NotAwarded::BelowMinimum { transactions: 49, minimum: 50 })
        );
        // 50 transactions, €180 accrued: €150, typology 01, cap applied.
        let a = decide(&p, &input(50, 180, Some(200_000))).unwrap();
        assert_eq!((a.cashback.cents(), a.jackpot.cents(), a.amount.cents()), (15_000, 0, 15_000));
        assert_eq!(a.typology.code(), "01");
        assert!(a.period_cap_applied);
        // Within the first 100,000 with €40: €1,540, typology 03.
        let a = decide(&p, &input(60, 40, Some(100_000))).unwrap();
        assert_eq!((a.cashback.cents(), a.jackpot.cents(), a.amount.cents()), (4_000, 150_000, 154_000));
        assert_eq!(a.typology.code(), "03");
        assert!(!a.period_cap_applied);
        // Position 100,001: no prize.
        assert_eq!(decide(&p, &input(60, 40, Some(100_001))).unwrap().jackpot, Money::ZERO);
        // Cashback 0: typology 02 (a prize still counts when ranked).
        let a = decide(&p, &input(60, 0, Some(5))).unwrap();
        assert_eq!((a.typology.code(), a.amount.cents()), ("02", 150_000));
        let a = decide(&p, &input(60, 0, None)).unwrap();
        assert_eq!((a.typology.code(), a.amount.cents()), ("02", 0));
        // Withdrawn: nothing.
        let mut w = input(80, 100, Some(1));
        w.enabled = false;
        assert_eq!(decide(&p, &w), Err(NotAwarded::NotEnabled));
    }

    #[test]
    fn cap_is_applied_whatever_the_input() {
        let p = semester();
        let mut i = input(50, 0, None);
        i.cashback = Money::from_cents(999_999);
        assert_eq!(decide(&p, &i).unwrap().cashback, p.max_period_cashback);
        i.cashback = Money::from_cents(-5);
        assert_eq!(decide(&p, &i).unwrap().cashback, Money::ZERO);
    }

    #[test]
    fn no_super_cashback_period_gives_no_prize() {
        let christmas = default_programme().into_iter().find(|p| p.id == 0).unwrap();
        let a = decide(&christmas, &input(10, 20, Some(1))).unwrap();
        assert_eq!((a.jackpot, a.typology), (Money::ZERO, Typology::Cashback));
    }

    #[test]
    fn calendar_of_the_close_and_complaints() {
        let p = semester(); // 2021-01-01 .. 2021-06-30, 10 grace days
        assert_eq!(close_day(&p), date!(2021 - 07 - 11));
        assert_eq!(payment_due(&p), date!(2021 - 08 - 29));
        // End of August + 120 days.
        assert_eq!(complaint_deadline(&p), date!(2021 - 12 - 29));
        assert!(!complaint_open_on(&p, date!(2021 - 06 - 30)));
        assert!(complaint_open_on(&p, date!(2021 - 07 - 01)));
        assert!(complaint_open_on(&p, date!(2021 - 12 - 29)));
        assert!(!complaint_open_on(&p, date!(2021 - 12 - 30)));
        for t in ["01", "02", "03"] {
            assert_eq!(Typology::parse(t).unwrap().code(), t);
        }
        assert_eq!(Typology::parse("04"), None);
    }

    #[test]
    fn erasure_waits_for_the_retention_and_the_last_complaint_window() {
        let periods = default_programme();
        let last_deadline = periods.iter().map(complaint_deadline).max().unwrap();
        let day = |d: Date, n: i64| d.checked_add(Duration::days(n)).unwrap();
        // Ten years after the last complaint deadline (plus one day): everyone.
        let (cutoff, over) = erasure_cutoff(&periods, day(last_deadline, 3651), 3650);
        assert_eq!((cutoff, over), (day(last_deadline, 1), true));
        // On the last day of the retention: withdrawn citizens only.
        let (cutoff, over) = erasure_cutoff(&periods, day(last_deadline, 3650), 3650);
        assert_eq!((cutoff, over), (last_deadline, false));
        assert!(!erasure_cutoff(&[], day(last_deadline, 9999), 1).1, "no periods: the programme never ran");
    }
}
