//! Read views of the operators' web console: a citizen's instruments, programme figures per
//! day and in total, the history of each period's Super Cashback ranking, every acquirer's files
//! and a period's awards by status.
//!
//! Days are calendar days in **UTC** (an instant belongs to the UTC date it falls on), unlike the
//! award periods' "today", which is the civil date in Europe/Rome: these are operational counters
//! (what arrived when), not programme rules.
//!
//! [`ConsoleStore::daily_stats`] and [`ConsoleStore::programme_totals`] scan whole tables
//! (citizens, instruments, activation windows, stored transactions): at national scale they take
//! seconds, so callers cache their answers (the API keeps them for a minute). They use the
//! indexes that exist and add none to the enrollment or ingestion paths.

use async_trait::async_trait;
use cashback_domain::{FiscalCode, Money};
use time::{Date, OffsetDateTime};

use crate::{AcquirerFile, Instrument, StoreResult};

/// Most instruments listed for one citizen.
pub const MAX_CITIZEN_INSTRUMENTS: u32 = 100;
/// Longest range of [`ConsoleStore::daily_stats`], in days (callers enforce it).
pub const MAX_STATS_DAYS: i64 = 366;

/// What happened on one day (UTC). Days where nothing happened are not stored or returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayStats {
    pub day: Date,
    /// Citizens whose current T&C acceptance (`timestamp_tc`, the enrollment instant) fell on
    /// the day, withdrawn ones included.
    pub citizens_enrolled: u64,
    /// Activation windows opened on the day: a card activated, deactivated and activated again
    /// counts on each activation's day.
    pub instruments_activated: u64,
    /// Acquirer files received on the day (any status).
    pub files: u64,
    /// New well-formed rows of those files: eligible (`FileCounts::accepted`) plus not eligible
    /// (`FileCounts::ineligible`). Duplicates are in neither figure.
    pub rows_accepted: u64,
    /// Malformed rows of those files (`FileCounts::rejected`).
    pub rows_rejected: u64,
}

impl DayStats {
    /// A day with nothing.
    pub fn empty(day: Date) -> Self {
        DayStats { day, citizens_enrolled: 0, instruments_activated: 0, files: 0, rows_accepted: 0, rows_rejected: 0 }
    }

    pub fn is_empty(&self) -> bool {
        *self == DayStats::empty(self.day)
    }
}

/// The programme's figures now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgrammeTotals {
    /// Citizens ever enrolled (withdrawn ones included).
    pub citizens: u64,
    /// Citizens enrolled now.
    pub citizens_enabled: u64,
    pub instruments_active: u64,
    /// Instruments ever enrolled (active and inactive).
    pub instruments: u64,
    /// Acquirer files received (any status).
    pub files: u64,
    /// Acquirer transactions stored (eligible or not, every file including those still being
    /// ingested).
    pub transactions: u64,
}

/// One day's figures of a period's live Super Cashback ranking (see
/// `cashback_api::ranking::OperatorRankingView`); one per (period, day), the last recorded wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankingSnapshot {
    pub award_period_id: i64,
    /// UTC date of the snapshot.
    pub day: Date,
    /// Citizens ranked.
    pub participants: u64,
    /// Counted payments at position `minPosition` (or of the last ranked citizen).
    pub count_at_n: u32,
    /// Counted payments of rank 1.
    pub top_count: u32,
    /// Citizens who would win the Super Cashback that day.
    pub awarded: u32,
    pub recorded_at: OffsetDateTime,
}

/// A period's awards with one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwardStatusCount {
    /// As stored: `NEW`, `NOTHING_DUE`, `SENT`, `EXECUTED`, `FAILED`, `INTEGRATION`
    /// ([`crate::AwardStatus`]).
    pub status: String,
    /// Awards of every kind (awards, re-issues, corrections, integrations).
    pub awards: u64,
    /// Their amounts added up (a re-issue repeats the amount of the failed award it pays again).
    pub amount: Money,
}

/// Storage of the console's views. Implemented by both backends next to [`crate::Store`].
#[async_trait]
pub trait ConsoleStore: Send + Sync + 'static {
    /// Every instrument whose current (or last) owner is the citizen, active and inactive, most
    /// recent activation first, at most [`MAX_CITIZEN_INSTRUMENTS`].
    async fn citizen_instruments(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Instrument>>;

    /// Figures per UTC day from `from` to `to` inclusive, by day, only days with something (the
    /// caller fills the gaps and bounds the range to [`MAX_STATS_DAYS`]). A full scan: see the
    /// module docs.
    async fn daily_stats(&self, from: Date, to: Date) -> StoreResult<Vec<DayStats>>;

    /// The programme's figures now. A full scan: see the module docs.
    async fn programme_totals(&self) -> StoreResult<ProgrammeTotals>;

    /// Insert or replace the snapshot of `(award_period_id, day)`.
    async fn record_ranking_snapshot(&self, snapshot: &RankingSnapshot) -> StoreResult<()>;

    /// A period's snapshots by day, oldest first: the most recent `limit` days.
    async fn ranking_history(&self, award_period_id: i64, limit: u32) -> StoreResult<Vec<RankingSnapshot>>;

    /// Acquirer files of one ABI code (`Some`) or of every acquirer (`None`), most recently
    /// received first, at most `limit` (the query of `Store::list_acquirer_files`).
    async fn all_acquirer_files(&self, abi: Option<&str>, limit: u32) -> StoreResult<Vec<AcquirerFile>>;

    /// A period's awards (every kind) grouped by status, by status name.
    async fn award_status_counts(&self, award_period_id: i64) -> StoreResult<Vec<AwardStatusCount>>;
}

/// Every day from `from` to `to` inclusive: the stored days, and empty ones in between (the
/// stored list must be sorted by day; days outside the range are dropped). Empty when
/// `from > to`.
pub fn fill_days(from: Date, to: Date, stored: &[DayStats]) -> Vec<DayStats> {
    let mut out = Vec::new();
    let mut stored = stored.iter().filter(|d| d.day >= from && d.day <= to).peekable();
    let mut day = from;
    while day <= to {
        match stored.peek() {
            Some(s) if s.day == day => {
                out.push(**s);
                stored.next();
            }
            _ => out.push(DayStats::empty(day)),
        }
        match day.next_day() {
            Some(d) => day = d,
            None => break,
        }
    }
    out
}

/// The UTC date of the Unix day number `n` (days since 1970-01-01).
pub fn date_of_unix_day(n: i64) -> Option<Date> {
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    i32::try_from(UNIX_EPOCH_JULIAN_DAY + n).ok().and_then(|jd| Date::from_julian_day(jd).ok())
}

/// The Unix day number of a date (days since 1970-01-01).
pub fn unix_day(d: Date) -> i64 {
    i64::from(d.to_julian_day()) - 2_440_588
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn unix_days_round_trip() {
        assert_eq!(unix_day(date!(1970 - 01 - 01)), 0);
        assert_eq!(unix_day(date!(2021 - 01 - 10)), 18_637);
        assert_eq!(date_of_unix_day(18_637), Some(date!(2021 - 01 - 10)));
        assert_eq!(date_of_unix_day(-1), Some(date!(1969 - 12 - 31)));
    }

    #[test]
    fn gaps_are_filled() {
        let d = |day: Date, files| DayStats { files, ..DayStats::empty(day) };
        let stored = [d(date!(2021 - 01 - 01), 9), d(date!(2021 - 01 - 03), 2), d(date!(2021 - 01 - 05), 7)];
        let all = fill_days(date!(2021 - 01 - 02), date!(2021 - 01 - 04), &stored);
        assert_eq!(
            all,
            vec![
                DayStats::empty(date!(2021 - 01 - 02)),
                d(date!(2021 - 01 - 03), 2),
                DayStats::empty(date!(2021 - 01 - 04))
            ]
        );
        assert!(fill_days(date!(2021 - 01 - 04), date!(2021 - 01 - 02), &stored).is_empty());
        assert_eq!(fill_days(date!(2021 - 01 - 05), date!(2021 - 01 - 05), &stored), vec![d(date!(2021 - 01 - 05), 7)]);
    }
}
