//! PostgreSQL backend of the cashback [`Store`], the twin of `cashback-store-sqlite`.
//!
//! * A sqlx [`PgPool`]; every trait method is **one transaction**: multi-statement operations
//!   run between `BEGIN` and `COMMIT` (READ COMMITTED), single-statement reads and writes run in
//!   autocommit, which is a transaction of its own.
//! * Races between nodes are settled by row locks (see the `ops` module for the lock order). A
//!   transaction that lost an insert race, or hit a serialization failure or deadlock, is rolled
//!   back and run again from the start, at most [`MAX_ATTEMPTS`] times; then the caller gets
//!   [`StoreError::Busy`].
//! * Migrations run at start-up in one transaction under a transaction-scoped advisory lock, so
//!   several nodes starting together apply each migration exactly once.
//! * Pool exhaustion (acquire timeout), connection failures and statement timeouts are
//!   [`StoreError::Unavailable`].

mod ops;
#[cfg(feature = "testkit")]
pub mod testing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cashback_domain::eligibility::EnrollmentIndex;
use cashback_domain::enrollment::{Channel, OptInStatus};
use cashback_domain::{AwardPeriod, FiscalCode, Hpan};
use cashback_store::*;
use ops::Step;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;

/// Tunables of the PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Pool size (connections to the server).
    pub max_connections: u32,
    /// How long an operation waits for a pooled connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// Server-side `statement_timeout` of every connection.
    pub statement_timeout: Duration,
    /// How long this node's claim on an acquirer file it ingests lasts without a chunk renewing
    /// it; past it, another node may take the file over (see migration 0007). Must exceed the
    /// time to parse and store one chunk.
    pub file_lease: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(10),
            file_lease: Duration::from_secs(60),
        }
    }
}

/// Attempts of one transactional operation before giving up with [`StoreError::Busy`].
pub const MAX_ATTEMPTS: u32 = 5;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "acquirer", include_str!("../migrations/0002_acquirer.sql")),
    (3, "scoring", include_str!("../migrations/0003_scoring.sql")),
    (4, "close", include_str!("../migrations/0004_close.sql")),
    (5, "console", include_str!("../migrations/0005_console.sql")),
    (6, "audit", include_str!("../migrations/0006_audit.sql")),
    (7, "claims", include_str!("../migrations/0007_claims.sql")),
    (9, "client_cert", include_str!("../migrations/0009_client_cert.sql")),
];

/// How many migrations this build knows (the latest version).
pub const MIGRATION_COUNT: i64 = MIGRATIONS.len() as i64;

/// The highest migration version this build knows (numbers are reserved per feature, so the
/// list may have gaps while features land).
pub const MIGRATION_LATEST: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Key of the advisory lock serialising migrations across nodes ("cashback" in ASCII).
const MIGRATION_LOCK: i64 = 0x6361_7368_6261_636b;

pub struct PgStore {
    pool: PgPool,
    /// This node's claims on the acquirer files it ingests.
    claim: ops::Claim,
}

/// A name for this process's claims, unique across nodes and restarts: host, pid and a random
/// number (from the standard library's randomly keyed hasher).
fn node_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}:{:016x}", host.trim(), std::process::id(), h.finish())
}

// SQLSTATEs worth retrying: the transaction was rolled back by the server and may simply be
// run again.
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn retryable(e: &sqlx::Error) -> Option<&'static str> {
    match sqlstate(e).as_deref() {
        Some(SERIALIZATION_FAILURE) => Some("serialization_failure"),
        Some(DEADLOCK_DETECTED) => Some("deadlock"),
        _ => None,
    }
}

/// Map a sqlx error: unreachable, overloaded or timed-out database → `Unavailable`; anything
/// else (constraint violations included) → `Other`.
fn store_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(_) => {
            let code = sqlstate(&e).unwrap_or_default();
            // 08: connection exception; 53: insufficient resources (e.g. too many connections);
            // 57014: query_canceled (statement_timeout); 57P0x: server shutting down / starting;
            // and, when opening a connection: 55000 (the database does not allow connections),
            // 55P03 (lock not available), 3D000 (no such database), 28xxx (login refused).
            if code.starts_with("08")
                || code.starts_with("53")
                || code == "57014"
                || code.starts_with("57P")
                || code.starts_with("55")
                || code == "3D000"
                || code.starts_with("28")
            {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Other(e.to_string())
            }
        }
        _ => StoreError::Other(e.to_string()),
    }
}

/// Apply pending migrations in one transaction; returns how many were applied.
async fn migrate(pool: &PgPool) -> sqlx::Result<usize> {
    let mut tx = pool.begin().await?;
    // Migrations may be long, and waiting for another node's migration is what we want.
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let mut applied = 0;
    for &(version, name, sql) in MIGRATIONS {
        let done: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)")
            .bind(version)
            .fetch_one(&mut *tx)
            .await?;
        if !done {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())")
                .bind(version)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            applied += 1;
        }
    }
    tx.commit().await?;
    Ok(applied)
}

fn connect_options(url: &str, statement_timeout: Option<Duration>) -> StoreResult<PgConnectOptions> {
    connect_options_named(url, statement_timeout, "cashback")
}

fn connect_options_named(
    url: &str,
    statement_timeout: Option<Duration>,
    application_name: &str,
) -> StoreResult<PgConnectOptions> {
    let mut opts: PgConnectOptions =
        url.parse().map_err(|e: sqlx::Error| StoreError::Other(format!("bad PostgreSQL URL: {e}")))?;
    if opts.get_application_name().is_none() {
        opts = opts.application_name(application_name);
    }
    if let Some(t) = statement_timeout {
        opts = opts.options([("statement_timeout", format!("{}ms", t.as_millis().max(1)))]);
    }
    Ok(opts)
}

impl PgStore {
    /// Connect a pool to `url` and apply pending migrations.
    pub async fn connect(url: &str, opts: PgOptions) -> StoreResult<Arc<Self>> {
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect_options(url, Some(opts.statement_timeout))?)
            .await
            .map_err(store_err)?;
        let applied = migrate(&pool).await.map_err(store_err)?;
        if applied > 0 {
            tracing::info!(applied, "postgres migrations applied");
        }
        metrics::gauge!("cashback_pg_pool_max_connections").set(f64::from(opts.max_connections.max(1)));
        let claim =
            ops::Claim { node: node_name(), lease_ms: opts.file_lease.as_millis().clamp(1, i64::MAX as u128) as i64 };
        tracing::info!(node = %claim.node, "postgres store ready");
        Ok(Arc::new(Self { pool, claim }))
    }

    /// Connect a pool to a read replica (a hot standby streaming from the primary), for the
    /// reads that tolerate its lag. No migrations (the primary's arrive by replication); its
    /// sessions are named `cashback-reads` (`pg_stat_activity.application_name`). Only read
    /// methods may be called on it: a write fails (the server refuses it).
    pub async fn connect_replica(url: &str, opts: PgOptions) -> StoreResult<Arc<Self>> {
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect_options_named(url, Some(opts.statement_timeout), "cashback-reads")?)
            .await
            .map_err(store_err)?;
        let standby: bool =
            sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&pool).await.map_err(store_err)?;
        if !standby {
            tracing::warn!("the read replica is not a standby: reads go to a primary");
        }
        let claim = ops::Claim { node: node_name(), lease_ms: 1 };
        Ok(Arc::new(Self { pool, claim }))
    }

    /// Only run migrations (the `migrate` subcommand); returns how many were applied.
    pub async fn migrate_only(url: &str) -> StoreResult<usize> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(url, None)?)
            .await
            .map_err(store_err)?;
        let applied = migrate(&pool).await.map_err(store_err);
        pool.close().await;
        applied
    }

    /// The underlying pool (for jobs that need their own queries).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Wait for in-flight operations to return their connections, then close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A pooled connection for a single autocommit statement.
    async fn conn(&self) -> StoreResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(store_err)
    }

    fn tx(&self, op: &'static str) -> TxRun<'_> {
        TxRun { pool: &self.pool, op, attempt: 0, started: Instant::now() }
    }
}

/// The attempts of one transactional operation (the `transaction!` macro drives it):
///
/// ```text
/// loop {
///     let mut tx = run.begin().await?;
///     let res = ops::something(&mut tx, ..).await;
///     if let Some(v) = run.end(tx, res).await? { break v }
/// }
/// ```
struct TxRun<'p> {
    pool: &'p PgPool,
    op: &'static str,
    attempt: u32,
    started: Instant,
}

impl TxRun<'_> {
    async fn begin(&mut self) -> StoreResult<Transaction<'static, Postgres>> {
        self.attempt += 1;
        self.pool.begin().await.map_err(store_err)
    }

    /// Commit a finished attempt (`Some`), or roll back and decide whether to run it again
    /// (`None`: call `begin` again).
    async fn end<T>(
        &mut self,
        tx: Transaction<'static, Postgres>,
        res: sqlx::Result<Step<T>>,
    ) -> StoreResult<Option<T>> {
        let reason = match res {
            Ok(Step::Done(v)) => match tx.commit().await {
                Ok(()) => {
                    metrics::histogram!("cashback_pg_transaction_seconds", "op" => self.op)
                        .record(self.started.elapsed().as_secs_f64());
                    return Ok(Some(v));
                }
                // Only a server-side rollback is safe to retry; after any other commit failure
                // the outcome is unknown.
                Err(e) => match retryable(&e) {
                    Some(reason) => reason,
                    None => return Err(store_err(e)),
                },
            },
            Ok(Step::Retry) => {
                let _ = tx.rollback().await;
                "insert_conflict"
            }
            Err(e) => {
                let _ = tx.rollback().await;
                match retryable(&e) {
                    Some(reason) => reason,
                    None => return Err(store_err(e)),
                }
            }
        };
        metrics::counter!("cashback_pg_retries_total", "op" => self.op, "reason" => reason).increment(1);
        if self.attempt >= MAX_ATTEMPTS {
            tracing::warn!(op = self.op, attempts = self.attempt, reason, "postgres transaction gave up");
            return Err(StoreError::Busy(format!("{}: gave up after {} attempts ({reason})", self.op, self.attempt)));
        }
        tracing::debug!(op = self.op, attempt = self.attempt, reason, "retrying postgres transaction");
        if reason != "insert_conflict" {
            // The other transaction is still running: give it a moment (1, 2, 4, 8 ms).
            tokio::time::sleep(Duration::from_millis(1 << (self.attempt - 1).min(4))).await;
        }
        Ok(None)
    }
}

/// Run `$call` (an `ops` function whose first argument is the transaction) with retries.
macro_rules! transaction {
    ($self:ident, $op:literal, |$c:ident| $call:expr) => {{
        let mut run = $self.tx($op);
        loop {
            let mut tx = run.begin().await?;
            let res = {
                let $c: &mut sqlx::PgConnection = &mut tx;
                $call.await
            };
            if let Some(v) = run.end(tx, res).await? {
                break Ok(v);
            }
        }
    }};
}

mod close;
mod console;

/// This node stopped renewing its claim on a file for longer than the lease and another node
/// took the file over: this node stores nothing more of it (the other node finishes it).
fn claim_lost(file_id: i64, lost: ops::ClaimLost) -> StoreError {
    StoreError::Unavailable(format!(
        "acquirer file {file_id}: taken over by node {} after this node's lease ran out",
        lost.node.as_deref().unwrap_or("?")
    ))
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&mut *self.conn().await?).await.map_err(store_err)?;
        Ok(())
    }

    async fn close(&self) {
        PgStore::close(self).await
    }

    async fn enroll_citizen(
        &self,
        fiscal_code: &FiscalCode,
        requested_opt_in: Option<OptInStatus>,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<Citizen> {
        let actor = audit::current_actor();
        transaction!(self, "enroll_citizen", |c| ops::enroll_citizen(
            c,
            fiscal_code,
            requested_opt_in,
            channel,
            now,
            &actor
        ))
    }

    async fn get_citizen(&self, fiscal_code: &FiscalCode) -> StoreResult<Option<Citizen>> {
        ops::get_citizen(&mut *self.conn().await?, fiscal_code).await.map_err(store_err)
    }

    async fn set_payoff(
        &self,
        fiscal_code: &FiscalCode,
        payoff: Payoff,
        now: OffsetDateTime,
    ) -> StoreResult<SetPayoffOutcome> {
        let actor = audit::current_actor();
        transaction!(self, "set_payoff", |c| async {
            let step = ops::set_payoff(c, fiscal_code, &payoff, now).await;
            ops::then_audit(c, &actor, now, step, |o| {
                matches!(o, SetPayoffOutcome::Updated(_)).then(|| audit::events::payoff_set(fiscal_code, &payoff))
            })
            .await
        })
    }

    async fn withdraw_citizen(
        &self,
        fiscal_code: &FiscalCode,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<WithdrawOutcome> {
        let actor = audit::current_actor();
        transaction!(self, "withdraw_citizen", |c| async {
            let step = ops::withdraw_citizen(c, fiscal_code, channel, now).await;
            ops::then_audit(c, &actor, now, step, |o| audit::events::withdrawn(fiscal_code, channel.as_str(), o)).await
        })
    }

    async fn erase_expired_citizens(
        &self,
        cutoff: OffsetDateTime,
        include_enabled: bool,
        limit: u32,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        while ops::purge_notifications(&mut *self.conn().await?, cutoff, 10_000).await.map_err(store_err)? > 0 {}
        let candidates = ops::erasable_citizens(&mut *self.conn().await?, cutoff, include_enabled, limit)
            .await
            .map_err(store_err)?;
        let actor = audit::current_actor();
        let mut erased = 0;
        for cf in &candidates {
            let done = transaction!(self, "erase_citizen", |c| async {
                let step = ops::erase_citizen(c, cf, cutoff, include_enabled).await;
                ops::then_audit(c, &actor, now, step, |ev| ev.clone()).await
            })?;
            erased += u64::from(done.is_some());
        }
        Ok(erased)
    }

    async fn enroll_instrument(
        &self,
        hpan: &Hpan,
        fiscal_code: &FiscalCode,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<EnrollInstrumentOutcome> {
        let actor = audit::current_actor();
        transaction!(self, "enroll_instrument", |c| async {
            let step = ops::enroll_instrument(c, hpan, fiscal_code, channel, now).await;
            ops::then_audit(c, &actor, now, step, |o| audit::events::instrument_enrolled(hpan, o)).await
        })
    }

    async fn get_instrument(&self, hpan: &Hpan) -> StoreResult<Option<Instrument>> {
        ops::get_instrument(&mut *self.conn().await?, hpan).await.map_err(store_err)
    }

    async fn delete_instrument(
        &self,
        hpan: &Hpan,
        fiscal_code: Option<&FiscalCode>,
        now: OffsetDateTime,
    ) -> StoreResult<DeleteInstrumentOutcome> {
        let actor = audit::current_actor();
        transaction!(self, "delete_instrument", |c| async {
            let step = ops::delete_instrument(c, hpan, fiscal_code, now).await;
            ops::then_audit(c, &actor, now, step, |o| audit::events::instrument_deleted(hpan, fiscal_code, o)).await
        })
    }

    async fn count_active_instruments(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<ChannelCount>> {
        ops::count_active_instruments(&mut *self.conn().await?, fiscal_code).await.map_err(store_err)
    }

    async fn instrument_history(&self, hpan: &Hpan) -> StoreResult<Vec<ActivationWindow>> {
        ops::instrument_history(&mut *self.conn().await?, hpan).await.map_err(store_err)
    }

    async fn list_award_periods(&self) -> StoreResult<Vec<AwardPeriod>> {
        ops::list_award_periods(&mut *self.conn().await?).await.map_err(store_err)
    }

    async fn upsert_award_period(&self, period: &AwardPeriod) -> StoreResult<()> {
        let actor = audit::current_actor();
        let now = OffsetDateTime::now_utc();
        transaction!(self, "upsert_award_period", |c| async {
            ops::upsert_award_period(c, period, true).await?;
            ops::then_audit(c, &actor, now, Ok(Step::Done(())), |_| Some(audit::events::award_period_set(period))).await
        })
    }

    async fn seed_award_periods(&self, periods: &[AwardPeriod]) -> StoreResult<u64> {
        transaction!(self, "seed_award_periods", |c| ops::seed_award_periods(c, periods))
    }

    async fn insert_credential(&self, credential: &Credential) -> StoreResult<()> {
        // A duplicate id or key hash is a unique violation: `Other`, like any constraint error.
        let actor = audit::current_actor();
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        ops::insert_credential(&mut tx, credential).await.map_err(store_err)?;
        let ev = audit::events::credential_created(credential);
        ops::record_audit(&mut tx, &actor, credential.created_at, &ev).await.map_err(store_err)?;
        tx.commit().await.map_err(store_err)
    }

    async fn find_credential_by_key_hash(&self, key_sha256: &str) -> StoreResult<Option<Credential>> {
        ops::find_credential(&mut *self.conn().await?, key_sha256).await.map_err(store_err)
    }

    async fn list_credentials(&self) -> StoreResult<Vec<Credential>> {
        ops::list_credentials(&mut *self.conn().await?).await.map_err(store_err)
    }

    async fn revoke_credential(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let actor = audit::current_actor();
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        let revoked = ops::revoke_credential(&mut tx, id, now).await.map_err(store_err)?;
        if let Some(ev) = audit::events::credential_revoked(id, revoked) {
            ops::record_audit(&mut tx, &actor, now, &ev).await.map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)?;
        Ok(revoked)
    }

    async fn audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        ops::audit_events(&mut *self.conn().await?, q).await.map_err(store_err)
    }

    async fn bind_client_cert(&self, id: &str, cert_sha256: Option<&str>) -> StoreResult<bool> {
        let actor = audit::current_actor();
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        let changed = ops::bind_client_cert(&mut tx, id, cert_sha256).await.map_err(store_err)?;
        if let Some(ev) = audit::events::credential_cert_bound(id, cert_sha256, changed) {
            ops::record_audit(&mut tx, &actor, OffsetDateTime::now_utc(), &ev).await.map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)?;
        Ok(changed)
    }

    async fn begin_acquirer_file(&self, file: NewAcquirerFile, now: OffsetDateTime) -> StoreResult<BeginFile> {
        let claim = &self.claim;
        let actor = audit::current_actor();
        match transaction!(self, "begin_acquirer_file", |c| async {
            let step = ops::begin_acquirer_file(c, &file, now, claim).await;
            ops::then_audit(c, &actor, now, step, |o| {
                o.as_ref().ok().and_then(|b| audit::events::acquirer_file_accepted(&file, b))
            })
            .await
        })? {
            Ok(begun) => Ok(begun),
            Err(held) => Err(StoreError::Busy(format!(
                "acquirer file {}: being ingested by another node ({}) for at most {} ms more; retry then",
                file.name, held.node, held.remaining_ms
            ))),
        }
    }

    async fn ingest_chunk(&self, file_id: i64, chunk: IngestChunk) -> StoreResult<ChunkOutcome> {
        let arrays = ops::ChunkArrays::new(&chunk).map_err(store_err)?;
        let claim = &self.claim;
        transaction!(self, "ingest_chunk", |c| ops::ingest_chunk(c, file_id, &chunk, &arrays, claim))?
            .map_err(|lost| claim_lost(file_id, lost))
    }

    async fn finish_acquirer_file(
        &self,
        file_id: i64,
        error: Option<String>,
        now: OffsetDateTime,
    ) -> StoreResult<AcquirerFile> {
        let claim = &self.claim;
        transaction!(self, "finish_acquirer_file", |c| ops::finish_acquirer_file(
            c,
            file_id,
            error.as_deref(),
            now,
            claim
        ))?
        .map_err(|lost| claim_lost(file_id, lost))
    }

    async fn get_acquirer_file(&self, name: &str) -> StoreResult<Option<AcquirerFile>> {
        ops::get_acquirer_file(&mut *self.conn().await?, name).await.map_err(store_err)
    }

    async fn file_rejections(&self, file_id: i64, limit: u32) -> StoreResult<Vec<Rejection>> {
        ops::file_rejections(&mut *self.conn().await?, file_id, limit).await.map_err(store_err)
    }

    async fn list_acquirer_files(&self, abi: &str, limit: u32) -> StoreResult<Vec<AcquirerFile>> {
        ops::list_acquirer_files(&mut *self.conn().await?, Some(abi), limit).await.map_err(store_err)
    }

    async fn active_hpans(&self, after: Option<&Hpan>, limit: u32) -> StoreResult<Vec<Hpan>> {
        ops::active_hpans(&mut *self.conn().await?, after, limit).await.map_err(store_err)
    }

    async fn load_enrollment_index(&self) -> StoreResult<EnrollmentIndex> {
        transaction!(self, "load_enrollment_index", |c| ops::load_enrollment_index(c))
    }

    async fn citizen_transactions(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<StoredTransaction>> {
        ops::citizen_transactions(&mut *self.conn().await?, fiscal_code).await.map_err(store_err)
    }

    async fn instrument_transactions(&self, hpan: &Hpan) -> StoreResult<Vec<StoredTransaction>> {
        ops::instrument_transactions(&mut *self.conn().await?, hpan).await.map_err(store_err)
    }

    async fn citizen_period_totals(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<PeriodTotals>> {
        ops::citizen_period_totals(&mut *self.conn().await?, fiscal_code).await.map_err(store_err)
    }

    async fn enabled_citizen_totals(&self, fiscal_code: &FiscalCode) -> StoreResult<Option<Vec<PeriodTotals>>> {
        ops::enabled_citizen_totals(&mut *self.conn().await?, fiscal_code).await.map_err(store_err)
    }

    async fn citizen_period_rows(&self, fiscal_code: &FiscalCode, award_period_id: i64) -> StoreResult<Vec<PeriodRow>> {
        ops::citizen_period_rows(&mut *self.conn().await?, fiscal_code, award_period_id).await.map_err(store_err)
    }

    async fn standing_changes(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<StandingUpdate>> {
        ops::standing_changes(&mut *self.conn().await?, after_seq, limit).await.map_err(store_err)
    }

    async fn import_enrollments(&self, batch: EnrollmentImport) -> StoreResult<ImportOutcome> {
        batch.check_size().map_err(StoreError::Other)?;
        let actor = audit::current_actor();
        let now = OffsetDateTime::now_utc();
        transaction!(self, "import_enrollments", |c| async {
            let step = ops::import_enrollments(c, &batch).await;
            ops::then_audit(c, &actor, now, step, audit::events::enrollments_imported).await
        })
    }

    async fn import_period_totals(
        &self,
        award_period_id: i64,
        rows: Vec<ImportedTotals>,
        now: OffsetDateTime,
    ) -> StoreResult<TotalsImportOutcome> {
        check_totals_batch(&rows).map_err(StoreError::Other)?;
        transaction!(self, "import_period_totals", |c| ops::import_period_totals(c, award_period_id, &rows, now))
    }
}
