//! Award periods of the programme and their status on a given day.

use crate::scoring::ScoringRules;
use crate::{Money, ValidationError};
use std::fmt;
use time::{Date, Duration, Month};

/// One award period: the dates, the thresholds and the caps of the cashback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardPeriod {
    /// `awardPeriodId`.
    pub id: i64,
    /// `startDate` (first day, inclusive).
    pub start: Date,
    /// `endDate` (last day, inclusive).
    pub end: Date,
    /// `gracePeriod`: days after `end` during which late transactions may still arrive.
    pub grace_period_days: u32,
    /// `minTransactionNumber` needed to earn the cashback.
    pub min_transaction_number: u32,
    /// `maxAmount`: the Super Cashback prize.
    pub max_amount: Money,
    /// `minPosition`: ranking positions awarded the Super Cashback (0 = no Super Cashback).
    pub min_position: u32,
    /// `maxTransactionCashback`: cap of the cashback on one transaction.
    pub max_transaction_cashback: Money,
    /// `maxPeriodCashback`: cap of the cashback over the whole period.
    pub max_period_cashback: Money,
    /// `cashbackPercentage`, in percent (e.g. 10).
    pub cashback_percentage: u32,
    /// `maxTransactionEvaluated`: the part of one transaction's amount that counts.
    pub max_transaction_evaluated: Money,
    /// Engine options of the period: anti-abuse rules (off for the historical periods) and how
    /// long a reversal waits for its payment.
    pub scoring: ScoringRules,
}

/// Status of an award period on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AwardPeriodStatus {
    /// Not started yet.
    Inactive,
    /// Running.
    Active,
    /// Ended, within the grace period.
    Waiting,
    /// Ended (and, where distinguished, past the grace period).
    Closed,
}

impl AwardPeriodStatus {
    /// API name: `"INACTIVE"`, `"ACTIVE"`, `"WAITING"`, `"CLOSED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AwardPeriodStatus::Inactive => "INACTIVE",
            AwardPeriodStatus::Active => "ACTIVE",
            AwardPeriodStatus::Waiting => "WAITING",
            AwardPeriodStatus::Closed => "CLOSED",
        }
    }
}

impl fmt::Display for AwardPeriodStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AwardPeriod {
    /// Checks the invariants, naming the offending field by its JSON name.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.id < 0 {
            return Err(ValidationError::new("awardPeriodId", "must not be negative"));
        }
        if self.start > self.end {
            return Err(ValidationError::new("endDate", "must not be before startDate"));
        }
        if self.grace_period_days > 365 {
            return Err(ValidationError::new("gracePeriod", "must be at most 365 days"));
        }
        if self.end.checked_add(Duration::days(i64::from(self.grace_period_days))).is_none() {
            return Err(ValidationError::new("gracePeriod", "grace end is out of the date range"));
        }
        if self.cashback_percentage > 100 {
            return Err(ValidationError::new("cashbackPercentage", "must be at most 100"));
        }
        for (field, amount) in [
            ("maxAmount", self.max_amount),
            ("maxTransactionCashback", self.max_transaction_cashback),
            ("maxPeriodCashback", self.max_period_cashback),
            ("maxTransactionEvaluated", self.max_transaction_evaluated),
        ] {
            if amount.is_negative() {
                return Err(ValidationError::new(field, "must not be negative"));
            }
        }
        if self.scoring.min_amount.is_some_and(|m| m.is_negative()) {
            return Err(ValidationError::new("minAmount", "must not be negative"));
        }
        if self.scoring.max_payments_per_merchant_day == Some(0) {
            return Err(ValidationError::new("maxPaymentsPerMerchantDay", "must be at least 1"));
        }
        if self.scoring.reversal_retention_us < 0 {
            return Err(ValidationError::new("reversalRetention", "must not be negative"));
        }
        Ok(())
    }

    /// Last day of the grace period (`end` + grace days; saturates at the maximum date).
    pub fn grace_end(&self) -> Date {
        self.end.checked_add(Duration::days(i64::from(self.grace_period_days))).unwrap_or(Date::MAX)
    }

    /// Status on `today`. With `with_waiting = false` (v1 API) the grace period reads as
    /// `Closed`.
    pub fn status_on(&self, today: Date, with_waiting: bool) -> AwardPeriodStatus {
        if today < self.start {
            AwardPeriodStatus::Inactive
        } else if today <= self.end {
            AwardPeriodStatus::Active
        } else if with_waiting && today <= self.grace_end() {
            AwardPeriodStatus::Waiting
        } else {
            AwardPeriodStatus::Closed
        }
    }
}

/// The real programme: the December 2020 "Extra Cashback di Natale" (id 0) and the three
/// semesters (ids 1–3). All: 10 %, at most €150 evaluated and €15 cashback per transaction,
/// at most €150 per period, 10 grace days. Semesters: 50 transactions minimum and a €1,500
/// Super Cashback for the first 100,000 positions.
pub fn default_programme() -> Vec<AwardPeriod> {
    fn date(year: i32, month: Month, day: u8) -> Date {
        Date::from_calendar_date(year, month, day).expect("programme dates are valid")
    }
    fn period(id: i64, start: Date, end: Date, min_trx: u32, super_cashback: bool) -> AwardPeriod {
        AwardPeriod {
            id,
            start,
            end,
            grace_period_days: 10,
            min_transaction_number: min_trx,
            max_amount: if super_cashback { Money::from_cents(150_000) } else { Money::ZERO },
            min_position: if super_cashback { 100_000 } else { 0 },
            max_transaction_cashback: Money::from_cents(1_500),
            max_period_cashback: Money::from_cents(15_000),
            cashback_percentage: 10,
            max_transaction_evaluated: Money::from_cents(15_000),
            scoring: ScoringRules::default(),
        }
    }
    vec![
        period(0, date(2020, Month::December, 8), date(2020, Month::December, 31), 10, false),
        period(1, date(2021, Month::January, 1), date(2021, Month::June, 30), 50, true),
        period(2, date(2021, Month::July, 1), date(2021, Month::December, 31), 50, true),
        period(3, date(2022, Month::January, 1), date(2022, Month::June, 30), 50, true),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use AwardPeriodStatus::*;

    fn d(y: i32, m: u8, day: u8) -> Date {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), day).unwrap()
    }

    fn semester() -> AwardPeriod {
        default_programme().into_iter().find(|p| p.id == 1).unwrap()
    }

    fn field_of(p: &AwardPeriod) -> String {
        p.validate().unwrap_err().field.into_owned()
    }

    #[test]
    fn status_strings() {
        assert_eq!(Inactive.as_str(), "INACTIVE");
        assert_eq!(Active.as_str(), "ACTIVE");
        assert_eq!(Waiting.as_str(), "WAITING");
        assert_eq!(Closed.as_str(), "CLOSED");
        assert_eq!(Waiting.to_string(), "WAITING");
    }

    #[test]
    fn status_boundaries() {
        let p = semester(); // 2021-01-01 ..= 2021-06-30, grace 10 -> 2021-07-10
        assert_eq!(p.grace_end(), d(2021, 7, 10));
        let cases = [
            (d(2020, 12, 31), Inactive, Inactive),
            (d(2021, 1, 1), Active, Active),
            (d(2021, 3, 15), Active, Active),
            (d(2021, 6, 30), Active, Active),
            (d(2021, 7, 1), Waiting, Closed),
            (d(2021, 7, 10), Waiting, Closed),
            (d(2021, 7, 11), Closed, Closed),
            (d(2022, 1, 1), Closed, Closed),
        ];
        for (today, with, without) in cases {
            assert_eq!(p.status_on(today, true), with, "{today} with waiting");
            assert_eq!(p.status_on(today, false), without, "{today} without waiting");
        }
    }

    #[test]
    fn zero_grace_has_no_waiting() {
        let p = AwardPeriod { grace_period_days: 0, ..semester() };
        assert_eq!(p.grace_end(), p.end);
        assert_eq!(p.status_on(d(2021, 6, 30), true), Active);
        assert_eq!(p.status_on(d(2021, 7, 1), true), Closed);
    }

    #[test]
    fn single_day_period() {
        let p = AwardPeriod { start: d(2021, 1, 1), end: d(2021, 1, 1), ..semester() };
        assert!(p.validate().is_ok());
        assert_eq!(p.status_on(d(2020, 12, 31), true), Inactive);
        assert_eq!(p.status_on(d(2021, 1, 1), true), Active);
        assert_eq!(p.status_on(d(2021, 1, 2), true), Waiting);
    }

    #[test]
    fn grace_end_saturates() {
        let p = AwardPeriod { start: Date::MAX, end: Date::MAX, ..semester() };
        assert_eq!(p.grace_end(), Date::MAX);
        assert_eq!(field_of(&p), "gracePeriod");
    }

    #[test]
    fn default_programme_matches_the_real_one() {
        let prog = default_programme();
        assert_eq!(prog.len(), 4);
        for (i, p) in prog.iter().enumerate() {
            assert_eq!(p.id, i as i64);
            assert!(p.validate().is_ok(), "period {i}");
            assert_eq!(p.cashback_percentage, 10);
            assert_eq!(p.max_transaction_evaluated, Money::from_cents(15_000));
            assert_eq!(p.max_transaction_cashback, Money::from_cents(1_500));
            assert_eq!(p.max_period_cashback, Money::from_cents(15_000));
            assert_eq!(p.grace_period_days, 10);
        }
        assert_eq!((prog[0].start, prog[0].end), (d(2020, 12, 8), d(2020, 12, 31)));
        assert_eq!(prog[0].min_transaction_number, 10);
        assert_eq!((prog[0].min_position, prog[0].max_amount), (0, Money::ZERO));
        assert_eq!((prog[1].start, prog[1].end), (d(2021, 1, 1), d(2021, 6, 30)));
        assert_eq!((prog[2].start, prog[2].end), (d(2021, 7, 1), d(2021, 12, 31)));
        assert_eq!((prog[3].start, prog[3].end), (d(2022, 1, 1), d(2022, 6, 30)));
        for p in &prog[1..] {
            assert_eq!(p.min_transaction_number, 50);
            assert_eq!(p.min_position, 100_000);
            assert_eq!(p.max_amount, Money::from_euros(1_500).unwrap());
        }
        // periods are contiguous and do not overlap
        for w in prog.windows(2) {
            assert_eq!(w[0].end.next_day(), Some(w[1].start));
        }
    }

    #[test]
    fn validation_failures() {
        let ok = semester();
        assert!(ok.validate().is_ok());

        assert_eq!(field_of(&AwardPeriod { id: -1, ..ok.clone() }), "awardPeriodId");
        let e = AwardPeriod { start: d(2021, 7, 1), end: d(2021, 6, 30), ..ok.clone() }.validate().unwrap_err();
        assert_eq!((e.field.as_ref(), e.reason.as_ref()), ("endDate", "must not be before startDate"));
        assert_eq!(field_of(&AwardPeriod { grace_period_days: 366, ..ok.clone() }), "gracePeriod");
        assert!(AwardPeriod { grace_period_days: 365, ..ok.clone() }.validate().is_ok());
        assert_eq!(field_of(&AwardPeriod { cashback_percentage: 101, ..ok.clone() }), "cashbackPercentage");
        assert!(AwardPeriod { cashback_percentage: 100, ..ok.clone() }.validate().is_ok());
        assert!(AwardPeriod { cashback_percentage: 0, ..ok.clone() }.validate().is_ok());
        let neg = Money::from_cents(-1);
        assert_eq!(field_of(&AwardPeriod { max_amount: neg, ..ok.clone() }), "maxAmount");
        assert_eq!(field_of(&AwardPeriod { max_transaction_cashback: neg, ..ok.clone() }), "maxTransactionCashback");
        assert_eq!(field_of(&AwardPeriod { max_period_cashback: neg, ..ok.clone() }), "maxPeriodCashback");
        assert_eq!(field_of(&AwardPeriod { max_transaction_evaluated: neg, ..ok.clone() }), "maxTransactionEvaluated");
        assert!(AwardPeriod { max_amount: Money::ZERO, id: 0, ..ok }.validate().is_ok());
    }
}
