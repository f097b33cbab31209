//! The console's read views on SQLite (see `cashback_store::console`). Point reads use the reader
//! pool; the whole-table figures run on a read-only connection of their own off the async
//! runtime (`SqliteStore::scan`), each as one statement, so one snapshot. Ranking snapshots go
//! through the writer.

use async_trait::async_trait;
use cashback_domain::{FiscalCode, Money};
use cashback_store::console::{MAX_CITIZEN_INSTRUMENTS, date_of_unix_day, unix_day};
use cashback_store::*;
use rusqlite::{Connection, Row, params};
use time::Date;

use crate::ops::{INSTRUMENT_COLS, conv_err, fmt_date, from_micros, instrument_from_row, micros, parse_date};
use crate::{SqliteStore, ops};

const DAY_US: i64 = 86_400_000_000;

fn citizen_instruments(c: &Connection, cf: &FiscalCode) -> rusqlite::Result<Vec<Instrument>> {
    c.prepare_cached(&format!(
        "SELECT {INSTRUMENT_COLS} FROM payment_instrument WHERE fiscal_code = ?1 \
         ORDER BY activation_date DESC, hpan LIMIT ?2"
    ))?
    .query_map(params![cf.as_str(), MAX_CITIZEN_INSTRUMENTS], instrument_from_row)?
    .collect()
}

fn count(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    u64::try_from(v).map_err(|_| conv_err(format!("column {i}: negative count {v}")))
}

/// Per-day figures in `[from_us, to_us)`. Day numbers are computed relative to `from_us` (never
/// negative, so integer division is the floor) plus the Unix day of `from`. Open activation
/// windows are the active instrument rows, closed ones `instrument_window` (migration 0002).
fn daily_stats(c: &Connection, from: Date, to: Date) -> rusqlite::Result<Vec<DayStats>> {
    let from_us = unix_day(from) * DAY_US;
    let to_us = (unix_day(to) + 1) * DAY_US;
    let mut st = c.prepare(
        "SELECT day, SUM(citizens), SUM(instruments), SUM(files), SUM(accepted), SUM(rejected) FROM ( \
           SELECT (timestamp_tc - ?1) / 86400000000 AS day, COUNT(*) AS citizens, 0 AS instruments, 0 AS files, \
                  0 AS accepted, 0 AS rejected \
             FROM citizen WHERE timestamp_tc >= ?1 AND timestamp_tc < ?2 GROUP BY 1 \
           UNION ALL \
           SELECT (activated_at - ?1) / 86400000000, 0, COUNT(*), 0, 0, 0 \
             FROM instrument_window WHERE activated_at >= ?1 AND activated_at < ?2 GROUP BY 1 \
           UNION ALL \
           SELECT (activation_date - ?1) / 86400000000, 0, COUNT(*), 0, 0, 0 \
             FROM payment_instrument WHERE status = 'ACTIVE' AND activation_date >= ?1 AND activation_date < ?2 GROUP BY 1 \
           UNION ALL \
           SELECT (received_at - ?1) / 86400000000, 0, 0, COUNT(*), SUM(accepted + ineligible), SUM(rejected) \
             FROM acquirer_file WHERE received_at >= ?1 AND received_at < ?2 GROUP BY 1 \
         ) GROUP BY day ORDER BY day",
    )?;
    let first = unix_day(from);
    st.query_map(params![from_us, to_us], |r| {
        let n: i64 = r.get(0)?;
        Ok(DayStats {
            day: date_of_unix_day(first + n).ok_or_else(|| conv_err(format!("day {n} out of range")))?,
            citizens_enrolled: count(r, 1)?,
            instruments_activated: count(r, 2)?,
            files: count(r, 3)?,
            rows_accepted: count(r, 4)?,
            rows_rejected: count(r, 5)?,
        })
    })?
    .collect()
}

fn programme_totals(c: &Connection) -> rusqlite::Result<ProgrammeTotals> {
    c.query_row(
        "SELECT (SELECT COUNT(*) FROM citizen), (SELECT COUNT(*) FROM citizen WHERE enabled), \
                (SELECT COUNT(*) FROM payment_instrument WHERE status = 'ACTIVE'), (SELECT COUNT(*) FROM payment_instrument), \
                (SELECT COUNT(*) FROM acquirer_file), (SELECT COUNT(*) FROM acquirer_transaction)",
        [],
        |r| {
            Ok(ProgrammeTotals {
                citizens: count(r, 0)?,
                citizens_enabled: count(r, 1)?,
                instruments_active: count(r, 2)?,
                instruments: count(r, 3)?,
                files: count(r, 4)?,
                transactions: count(r, 5)?,
            })
        },
    )
}

fn record_ranking_snapshot(c: &Connection, s: &RankingSnapshot) -> rusqlite::Result<()> {
    let participants =
        i64::try_from(s.participants).map_err(|_| conv_err(format!("participants {} too large", s.participants)))?;
    c.prepare_cached(
        "INSERT INTO ranking_snapshot (award_period_id, day, participants, count_at_n, top_count, awarded, recorded_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (award_period_id, day) DO UPDATE SET participants = excluded.participants, \
           count_at_n = excluded.count_at_n, top_count = excluded.top_count, awarded = excluded.awarded, \
           recorded_at = excluded.recorded_at",
    )?
    .execute(params![
        s.award_period_id,
        fmt_date(s.day),
        participants,
        s.count_at_n,
        s.top_count,
        s.awarded,
        micros(s.recorded_at)
    ])?;
    Ok(())
}

fn ranking_history(c: &Connection, period: i64, limit: u32) -> rusqlite::Result<Vec<RankingSnapshot>> {
    let mut out: Vec<RankingSnapshot> = c
        .prepare_cached(
            "SELECT award_period_id, day, participants, count_at_n, top_count, awarded, recorded_at \
             FROM ranking_snapshot WHERE award_period_id = ?1 ORDER BY day DESC LIMIT ?2",
        )?
        .query_map(params![period, limit], |r| {
            Ok(RankingSnapshot {
                award_period_id: r.get(0)?,
                day: parse_date(&r.get::<_, String>(1)?)?,
                participants: count(r, 2)?,
                count_at_n: r.get(3)?,
                top_count: r.get(4)?,
                awarded: r.get(5)?,
                recorded_at: from_micros(r.get(6)?)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    out.reverse();
    Ok(out)
}

fn award_status_counts(c: &Connection, period: i64) -> rusqlite::Result<Vec<AwardStatusCount>> {
    c.prepare(
        "SELECT status, COUNT(*), SUM(amount_cents) FROM award WHERE award_period_id = ?1 GROUP BY status ORDER BY status",
    )?
    .query_map([period], |r| {
        Ok(AwardStatusCount { status: r.get(0)?, awards: count(r, 1)?, amount: Money::from_cents(r.get(2)?) })
    })?
    .collect()
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn citizen_instruments(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Instrument>> {
        self.read(|c| citizen_instruments(c, fiscal_code))
    }

    async fn daily_stats(&self, from: Date, to: Date) -> StoreResult<Vec<DayStats>> {
        if from > to {
            return Ok(Vec::new());
        }
        self.scan(move |c| daily_stats(c, from, to)).await
    }

    async fn programme_totals(&self) -> StoreResult<ProgrammeTotals> {
        self.scan(programme_totals).await
    }

    async fn record_ranking_snapshot(&self, snapshot: &RankingSnapshot) -> StoreResult<()> {
        let s = RankingSnapshot { recorded_at: to_micros(snapshot.recorded_at), ..snapshot.clone() };
        self.write(move |c| record_ranking_snapshot(c, &s)).await
    }

    async fn ranking_history(&self, award_period_id: i64, limit: u32) -> StoreResult<Vec<RankingSnapshot>> {
        self.read(|c| ranking_history(c, award_period_id, limit))
    }

    async fn all_acquirer_files(&self, abi: Option<&str>, limit: u32) -> StoreResult<Vec<AcquirerFile>> {
        self.read(|c| ops::list_acquirer_files(c, abi, limit))
    }

    async fn award_status_counts(&self, award_period_id: i64) -> StoreResult<Vec<AwardStatusCount>> {
        self.scan(move |c| award_status_counts(c, award_period_id)).await
    }
}
