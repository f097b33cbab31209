//! The console's read views on PostgreSQL, the twin of the SQLite backend's `console` module
//! (see `cashback_store::console`). The whole-table figures run in a read-only transaction with
//! the long statement timeout of the snapshot queries, each as one statement; days are UTC dates
//! (`AT TIME ZONE 'UTC'`).

use async_trait::async_trait;
use cashback_domain::{FiscalCode, Money};
use cashback_store::console::MAX_CITIZEN_INSTRUMENTS;
use cashback_store::*;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::{Date, OffsetDateTime, Time};

use crate::ops::{
    SNAPSHOT_STATEMENT_TIMEOUT, Step, get_u32, get_u64, instrument_cols, instrument_from_row, pg_time, utc,
};
use crate::{PgStore, ops, store_err};

/// Start of a read-only transaction that may scan whole tables.
async fn long_read(c: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *c).await?;
    sqlx::query(SNAPSHOT_STATEMENT_TIMEOUT).execute(&mut *c).await?;
    Ok(())
}

async fn citizen_instruments(c: &mut PgConnection, cf: &FiscalCode) -> sqlx::Result<Vec<Instrument>> {
    sqlx::query(concat!(
        "SELECT ",
        instrument_cols!(),
        " FROM payment_instrument WHERE fiscal_code = $1 ORDER BY activation_date DESC, hpan LIMIT $2"
    ))
    .bind(cf.as_str())
    .bind(i64::from(MAX_CITIZEN_INSTRUMENTS))
    .fetch_all(c)
    .await?
    .iter()
    .map(instrument_from_row)
    .collect()
}

fn midnight_utc(d: Date) -> OffsetDateTime {
    d.with_time(Time::MIDNIGHT).assume_utc()
}

/// Per-day figures of `[from, to]`; every activation window (open or closed) is a row of
/// `payment_instrument_history`.
async fn daily_stats(c: &mut PgConnection, from: Date, to: Date) -> sqlx::Result<Step<Vec<DayStats>>> {
    long_read(c).await?;
    let end = to.next_day().map_or(OffsetDateTime::new_utc(Date::MAX, Time::MAX), midnight_utc);
    let rows = sqlx::query(
        "SELECT day, sum(citizens)::bigint, sum(instruments)::bigint, sum(files)::bigint, sum(accepted)::bigint, \
                sum(rejected)::bigint FROM ( \
           SELECT (timestamp_tc AT TIME ZONE 'UTC')::date AS day, count(*) AS citizens, 0::bigint AS instruments, \
                  0::bigint AS files, 0::bigint AS accepted, 0::bigint AS rejected \
             FROM citizen WHERE timestamp_tc >= $1 AND timestamp_tc < $2 GROUP BY 1 \
           UNION ALL \
           SELECT (activated_at AT TIME ZONE 'UTC')::date, 0, count(*), 0, 0, 0 \
             FROM payment_instrument_history WHERE activated_at >= $1 AND activated_at < $2 GROUP BY 1 \
           UNION ALL \
           SELECT (received_at AT TIME ZONE 'UTC')::date, 0, 0, count(*), sum(accepted + ineligible)::bigint, \
                  sum(rejected)::bigint \
             FROM acquirer_file WHERE received_at >= $1 AND received_at < $2 GROUP BY 1 \
         ) s GROUP BY day ORDER BY day",
    )
    .bind(midnight_utc(from))
    .bind(end)
    .fetch_all(&mut *c)
    .await?;
    let days = rows
        .iter()
        .map(|r| {
            Ok(DayStats {
                day: r.try_get(0)?,
                citizens_enrolled: get_u64(r, 1)?,
                instruments_activated: get_u64(r, 2)?,
                files: get_u64(r, 3)?,
                rows_accepted: get_u64(r, 4)?,
                rows_rejected: get_u64(r, 5)?,
            })
        })
        .collect::<sqlx::Result<_>>()?;
    Ok(Step::Done(days))
}

async fn programme_totals(c: &mut PgConnection) -> sqlx::Result<Step<ProgrammeTotals>> {
    long_read(c).await?;
    let r = sqlx::query(
        "SELECT (SELECT count(*) FROM citizen), (SELECT count(*) FROM citizen WHERE enabled), \
                (SELECT count(*) FROM payment_instrument WHERE status = 'ACTIVE'), (SELECT count(*) FROM payment_instrument), \
                (SELECT count(*) FROM acquirer_file), (SELECT count(*) FROM acquirer_transaction)",
    )
    .fetch_one(&mut *c)
    .await?;
    Ok(Step::Done(ProgrammeTotals {
        citizens: get_u64(&r, 0)?,
        citizens_enabled: get_u64(&r, 1)?,
        instruments_active: get_u64(&r, 2)?,
        instruments: get_u64(&r, 3)?,
        files: get_u64(&r, 4)?,
        transactions: get_u64(&r, 5)?,
    }))
}

async fn record_ranking_snapshot(c: &mut PgConnection, s: &RankingSnapshot) -> sqlx::Result<()> {
    let participants = i64::try_from(s.participants)
        .map_err(|_| sqlx::Error::InvalidArgument(format!("participants {} too large", s.participants)))?;
    sqlx::query(
        "INSERT INTO ranking_snapshot (award_period_id, day, participants, count_at_n, top_count, awarded, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (award_period_id, day) DO UPDATE SET participants = excluded.participants, \
           count_at_n = excluded.count_at_n, top_count = excluded.top_count, awarded = excluded.awarded, \
           recorded_at = excluded.recorded_at",
    )
    .bind(s.award_period_id)
    .bind(s.day)
    .bind(participants)
    .bind(i64::from(s.count_at_n))
    .bind(i64::from(s.top_count))
    .bind(i64::from(s.awarded))
    .bind(pg_time(s.recorded_at))
    .execute(c)
    .await?;
    Ok(())
}

fn snapshot_from_row(r: &PgRow) -> sqlx::Result<RankingSnapshot> {
    Ok(RankingSnapshot {
        award_period_id: r.try_get(0)?,
        day: r.try_get(1)?,
        participants: get_u64(r, 2)?,
        count_at_n: get_u32(r, 3)?,
        top_count: get_u32(r, 4)?,
        awarded: get_u32(r, 5)?,
        recorded_at: utc(r.try_get(6)?),
    })
}

async fn ranking_history(c: &mut PgConnection, period: i64, limit: u32) -> sqlx::Result<Vec<RankingSnapshot>> {
    let mut out = sqlx::query(
        "SELECT award_period_id, day, participants, count_at_n, top_count, awarded, recorded_at \
         FROM ranking_snapshot WHERE award_period_id = $1 ORDER BY day DESC LIMIT $2",
    )
    .bind(period)
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?
    .iter()
    .map(snapshot_from_row)
    .collect::<sqlx::Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

async fn award_status_counts(c: &mut PgConnection, period: i64) -> sqlx::Result<Step<Vec<AwardStatusCount>>> {
    long_read(c).await?;
    let rows = sqlx::query(
        "SELECT status, count(*), sum(amount_cents)::bigint FROM award WHERE award_period_id = $1 \
         GROUP BY status ORDER BY status",
    )
    .bind(period)
    .fetch_all(&mut *c)
    .await?;
    let counts = rows
        .iter()
        .map(|r| {
            Ok(AwardStatusCount {
                status: r.try_get(0)?,
                awards: get_u64(r, 1)?,
                amount: Money::from_cents(r.try_get(2)?),
            })
        })
        .collect::<sqlx::Result<_>>()?;
    Ok(Step::Done(counts))
}

#[async_trait]
impl ConsoleStore for PgStore {
    async fn citizen_instruments(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Instrument>> {
        citizen_instruments(&mut *self.conn().await?, fiscal_code).await.map_err(store_err)
    }

    async fn daily_stats(&self, from: Date, to: Date) -> StoreResult<Vec<DayStats>> {
        if from > to {
            return Ok(Vec::new());
        }
        transaction!(self, "daily_stats", |c| daily_stats(c, from, to))
    }

    async fn programme_totals(&self) -> StoreResult<ProgrammeTotals> {
        transaction!(self, "programme_totals", |c| programme_totals(c))
    }

    async fn record_ranking_snapshot(&self, snapshot: &RankingSnapshot) -> StoreResult<()> {
        record_ranking_snapshot(&mut *self.conn().await?, snapshot).await.map_err(store_err)
    }

    async fn ranking_history(&self, award_period_id: i64, limit: u32) -> StoreResult<Vec<RankingSnapshot>> {
        ranking_history(&mut *self.conn().await?, award_period_id, limit).await.map_err(store_err)
    }

    async fn all_acquirer_files(&self, abi: Option<&str>, limit: u32) -> StoreResult<Vec<AcquirerFile>> {
        ops::list_acquirer_files(&mut *self.conn().await?, abi, limit).await.map_err(store_err)
    }

    async fn award_status_counts(&self, award_period_id: i64) -> StoreResult<Vec<AwardStatusCount>> {
        transaction!(self, "award_status_counts", |c| award_status_counts(c, award_period_id))
    }
}
