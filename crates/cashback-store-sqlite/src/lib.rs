//! SQLite backend of the cashback [`Store`].
//!
//! * **One writer thread** owns the only write connection. Requests reach it through a bounded
//!   queue (`try_send`: a full queue is an immediate [`StoreError::Busy`], never a wait). The
//!   thread drains whatever is queued (up to `batch_max`), runs it in one `BEGIN IMMEDIATE`
//!   transaction with a savepoint per request (one request's failure never spoils the others),
//!   commits once (group commit) and hands the batch's replies to the **syncer** thread.
//! * **Syncer**: calls `fdatasync` on the WAL and only then answers every caller of every batch
//!   committed before that sync began. The writer runs the next batch while the previous one is
//!   being synced, so the disk flush and the SQL work overlap instead of alternating. (The writer
//!   connection itself runs `synchronous=NORMAL`: SQLite writes the WAL frames without syncing and
//!   the syncer's explicit sync provides the durability `FULL` would.)
//! * **Readers**: a small pool of read-only connections used inline for point reads, which take
//!   microseconds in WAL mode; the pool is larger than the number of runtime threads so a reader
//!   never waits for another.
//! * Durability: by default no write is acknowledged before the WAL frames holding it are on
//!   stable storage, so an acknowledged write survives a power loss, not only a process crash.
//!   Recovery replays the WAL frame by frame along its checksum chain, so a later batch is never
//!   recovered without the earlier ones. Other connections may read a committed batch a few
//!   milliseconds before it is synced (and acknowledged); on a power loss in that window the
//!   batch is lost as a whole, never half-applied.

mod close;
mod console;
mod ops;
mod pending;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cashback_domain::eligibility::EnrollmentIndex;
use cashback_domain::enrollment::{Channel, OptInStatus};
use cashback_domain::{AwardPeriod, FiscalCode, Hpan};
use cashback_store::*;
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// Tunables of the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Requests waiting for the writer before new ones are refused with `Busy`.
    pub queue_capacity: usize,
    /// Requests committed together at most.
    pub batch_max: usize,
    /// Read-only connections.
    pub readers: usize,
    /// Acknowledge writes only once synced to stable storage (true, default), or as soon as they
    /// are committed to the WAL (false: survives a process crash, not a power loss).
    pub synchronous_full: bool,
    /// Writer page cache in KiB. Kept small on purpose: SQLite walks the writer's whole page-cache
    /// hash table at every commit that followed a b-tree page split while the database is under
    /// 1 GiB (`balance_nonroot` parks pages at the pending-byte page number), so a large cache
    /// makes every commit slower; pages not cached are read from the OS page cache.
    pub writer_cache_kib: i64,
    /// How long a connection waits on a lock before failing.
    pub busy_timeout: Duration,
    /// Page size of a newly created database.
    pub page_size: i64,
    /// WAL size above which the checkpointer rewinds it (RESTART checkpoint).
    pub wal_restart_kib: i64,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 8192,
            batch_max: 1024,
            readers: 16,
            synchronous_full: true,
            busy_timeout: Duration::from_secs(5),
            page_size: 1024,
            writer_cache_kib: 2048,
            wal_restart_kib: 32 * 1024,
        }
    }
}

/// Work for the writer: runs inside the batch transaction, returns whether it succeeded (else
/// its savepoint is rolled back) and the reply to send once the batch outcome is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

enum Msg {
    Job(Job),
    Stop,
}

pub struct SqliteStore {
    /// Dedup keys of files being ingested; used on the writer thread only (see `pending`).
    pending: Arc<Mutex<pending::PendingKeys>>,
    stop_checkpoints: Arc<AtomicBool>,
    queue: mpsc::Sender<Msg>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    closed: AtomicBool,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
    /// One file finishes (merge, scoring, DONE) at a time, so the totals written for a citizen
    /// always include every merged row (see `finish_acquirer_file`).
    finish_lock: tokio::sync::Mutex<()>,
    /// The writer's normal page cache (KiB); bulk steps raise it for their duration.
    writer_cache_kib: i64,
}

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "compact_instruments", include_str!("../migrations/0002_compact_instruments.sql")),
    (3, "acquirer", include_str!("../migrations/0003_acquirer.sql")),
    (4, "transaction_indexes", include_str!("../migrations/0004_transaction_indexes.sql")),
    (5, "scoring", include_str!("../migrations/0005_scoring.sql")),
    (6, "close", include_str!("../migrations/0006_close.sql")),
    (7, "console", include_str!("../migrations/0007_console.sql")),
    (8, "audit", include_str!("../migrations/0008_audit.sql")),
    (9, "client_cert", include_str!("../migrations/0009_client_cert.sql")),
];

/// A writer job that also appends `event(outcome)` to the audit trail, in the same transaction,
/// on behalf of the calling task's actor (read here, on the caller's task).
pub(crate) fn audited<T>(
    now: OffsetDateTime,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    event: impl FnOnce(&T) -> Option<NewAuditEvent> + Send + 'static,
) -> impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static {
    let actor = audit::current_actor();
    move |c| {
        let out = f(c)?;
        if let Some(ev) = event(&out) {
            ops::record_audit(c, &actor, ops::micros(now), &ev)?;
        }
        Ok(out)
    }
}

/// [`audited`] for changes whose method takes no `now` (award periods): stamped with the clock.
fn audited_now<T>(
    f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    event: impl FnOnce(&T) -> Option<NewAuditEvent> + Send + 'static,
) -> impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static {
    audited(OffsetDateTime::now_utc(), f, event)
}

/// Rows deleted per writer job when purging old notifications.
const PURGE_BATCH: u32 = 10_000;

fn poisoned() -> rusqlite::Error {
    rusqlite::Error::InvalidParameterName("the writer's pending-keys lock is poisoned".into())
}

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Other(e.to_string())
}

fn configure(conn: &Connection, opts: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(opts.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Read pages through a shared memory map instead of copying them with pread.
    conn.pragma_update(None, "mmap_size", 1_i64 << 30)?;
    Ok(())
}

/// Apply pending migrations in one transaction; returns how many were applied.
fn migrate(conn: &mut Connection) -> rusqlite::Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT;",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS {
        let done: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |r| {
                r.get(0)
            })?;
        if !done {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![version, name, ops::micros(OffsetDateTime::now_utc())],
            )?;
            applied += 1;
        }
    }
    tx.commit()?;
    Ok(applied)
}

impl SqliteStore {
    /// Open (creating if needed) and migrate the database at `path`, and start the writer.
    pub fn open(path: impl AsRef<Path>, opts: SqliteOptions) -> StoreResult<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        let mut writer = Connection::open(&path).map_err(sql_err)?;
        configure(&writer, &opts).map_err(sql_err)?;
        // Small pages: enrollments insert random keys, so every row dirties whole pages in each
        // b-tree and every dirty page is written to the WAL; 1 KiB pages cut that volume 4×.
        // (Takes effect only when the database is created.)
        writer.pragma_update(None, "page_size", opts.page_size).map_err(sql_err)?;
        let mode: String = writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(sql_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Other(format!("could not enable WAL (journal_mode={mode})")));
        }
        // The syncer makes commits durable (see the module docs), so the writer never waits on
        // the disk itself.
        writer.pragma_update(None, "synchronous", "NORMAL").map_err(sql_err)?;
        writer.pragma_update(None, "cache_size", -opts.writer_cache_kib.max(64)).map_err(sql_err)?;
        // Savepoint sub-journals in memory, never in temporary files.
        writer.pragma_update(None, "temp_store", "MEMORY").map_err(sql_err)?;
        let applied = migrate(&mut writer).map_err(sql_err)?;
        if applied > 0 {
            tracing::info!(applied, path = %path.display(), "sqlite migrations applied");
        }
        let mut readers = Vec::with_capacity(opts.readers.max(1));
        for _ in 0..opts.readers.max(1) {
            let r = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(sql_err)?;
            configure(&r, &opts).map_err(sql_err)?;
            readers.push(Mutex::new(r));
        }
        // Checkpoints run on their own connection and thread (PASSIVE: they never block the
        // writer), so the writer's commits are not stalled copying the WAL into the database.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(sql_err)?;
        let checkpointer = Connection::open(&path).map_err(sql_err)?;
        configure(&checkpointer, &opts).map_err(sql_err)?;
        let stop_checkpoints = Arc::new(AtomicBool::new(false));
        let restart_frames = (opts.wal_restart_kib * 1024 / opts.page_size.max(512)).max(1024);
        {
            let stop = stop_checkpoints.clone();
            std::thread::Builder::new()
                .name("sqlite-checkpoint".into())
                .spawn(move || checkpoint_loop(checkpointer, stop, restart_frames))
                .map_err(|e| StoreError::Other(e.to_string()))?;
        }
        let (tx, rx) = mpsc::channel(opts.queue_capacity.max(1));
        let batch_max = opts.batch_max.max(1);
        let wal_path = wal_path(&path);
        let sync = opts.synchronous_full;
        let pending = Arc::new(Mutex::new(pending::PendingKeys::default()));
        let writer_pending = pending.clone();
        let handle = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx, batch_max, sync.then_some(wal_path), writer_pending))
            .map_err(|e| StoreError::Other(e.to_string()))?;
        metrics::gauge!("cashback_writer_queue_capacity").set(opts.queue_capacity as f64);
        Ok(Arc::new(Self {
            pending,
            stop_checkpoints,
            queue: tx,
            readers,
            next_reader: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            writer: Mutex::new(Some(handle)),
            path,
            finish_lock: tokio::sync::Mutex::new(()),
            writer_cache_kib: opts.writer_cache_kib.max(64),
        }))
    }

    /// Only run migrations (the `migrate` subcommand).
    pub fn migrate_only(path: impl AsRef<Path>) -> StoreResult<usize> {
        let mut conn = Connection::open(path.as_ref()).map_err(sql_err)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)).map_err(sql_err)?;
        migrate(&mut conn).map_err(sql_err)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run a read on a pooled read-only connection, inline (point reads only).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(conn) = self.readers[(start + i) % n].try_lock() {
                return f(&conn).map_err(sql_err);
            }
        }
        let conn = self.readers[start % n].lock().map_err(|_| StoreError::Other("reader poisoned".into()))?;
        f(&conn).map_err(sql_err)
    }

    /// Queue a write for the writer thread and wait for its durable commit.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let rx = self.submit(f)?;
        rx.await.map_err(|_| StoreError::Unavailable("writer stopped before answering".into()))?
    }

    /// Queue a write for the writer thread now; the receiver answers once it is durably
    /// committed. Lets a bulk step queue its next job while the previous one commits.
    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<oneshot::Receiver<StoreResult<T>>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("store is shutting down".into()));
        }
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn| {
            let res = f(conn);
            let ok = res.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let out = match (res, commit) {
                    (Ok(v), Ok(())) => Ok(v),
                    (Err(e), _) => Err(sql_err(e)),
                    (Ok(_), Err(e)) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
                };
                let _ = tx.send(out);
            });
            (ok, reply)
        });
        match self.queue.try_send(Msg::Job(job)) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("cashback_writer_rejected_total").increment(1);
                Err(StoreError::Busy("writer queue full".into()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StoreError::Unavailable("writer stopped".into())),
        }
    }

    /// Add a file's rows to the lookup tables (migration 0004) before it is marked DONE, one
    /// table at a time: read and sorted on a read-only connection without a memory map (a 2 GB
    /// scan would otherwise count in the process's resident memory), then written in key order,
    /// `MERGE_BATCH` rows per transaction, so each b-tree page is written about once and no
    /// transaction outgrows the writer's cache. Idempotent, so a crash in between redoes it.
    async fn merge_file_lookups(&self, file_id: i64) -> StoreResult<Vec<(String, i64)>> {
        const MERGE_BATCH: usize = 250_000;
        let mut pairs: Vec<(String, i64)> = Vec::new();
        for which in [ops::Lookup::Keys, ops::Lookup::ByCard, ops::Lookup::ByCitizen] {
            let path = self.path.clone();
            let lookup = tokio::task::spawn_blocking(move || {
                let c = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql_err)?;
                ops::read_file_lookup(&c, file_id, which).map_err(sql_err)
            })
            .await
            .map_err(|e| StoreError::Other(format!("reading the file's rows failed: {e}")))??;
            match lookup {
                None => return Ok(pairs),
                Some(ops::FileLookup::Keys(v)) => {
                    for b in v.chunks(MERGE_BATCH) {
                        let b = b.to_vec();
                        self.write(move |c| ops::merge_keys(c, &b)).await?;
                    }
                }
                Some(ops::FileLookup::ByCard(v)) => {
                    for b in v.chunks(MERGE_BATCH) {
                        let b = b.to_vec();
                        self.write(move |c| ops::merge_by_card(c, &b)).await?;
                    }
                }
                Some(ops::FileLookup::ByCitizen(v)) => {
                    for b in v.chunks(MERGE_BATCH) {
                        let b = b.to_vec();
                        self.write(move |c| ops::merge_by_citizen(c, &b)).await?;
                    }
                    // The (citizen, period) pairs the file touched, in key order.
                    for (cf, period, _) in &v {
                        let cf = String::from_utf8_lossy(cf);
                        if pairs.last().is_none_or(|(c, p)| c.as_str() != cf || p != period) {
                            pairs.push((cf.into_owned(), *period));
                        }
                    }
                }
            }
        }
        Ok(pairs)
    }

    /// Re-evaluates the (citizen, period) pairs a file touched, `SCORE_BATCH` citizens at a
    /// time: read and computed on a read-only connection off the writer, then written by the
    /// writer (which re-checks each citizen's enrollment, see `ops::write_scored`).
    async fn score_file(&self, file_id: i64, pairs: Vec<(String, i64)>, now: OffsetDateTime) -> StoreResult<()> {
        const SCORE_BATCH: usize = 20_000;
        if pairs.is_empty() {
            return Ok(());
        }
        let periods = Arc::new(self.read(ops::list_award_periods)?);
        let path = self.path.clone();
        let conn = tokio::task::spawn_blocking(move || {
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        })
        .await
        .map_err(|e| StoreError::Other(format!("scoring task failed: {e}")))?
        .map_err(sql_err)?;
        let conn = Arc::new(Mutex::new(conn));
        for batch in pairs.chunks(SCORE_BATCH) {
            let batch = batch.to_vec();
            let (conn, ps) = (conn.clone(), periods.clone());
            let scored = tokio::task::spawn_blocking(move || {
                let c = conn.lock().map_err(|_| poisoned())?;
                ops::score_citizens(&c, &ps, &batch, file_id)
            })
            .await
            .map_err(|e| StoreError::Other(format!("scoring task failed: {e}")))?
            .map_err(sql_err)?;
            let ps = periods.clone();
            self.write(move |c| ops::write_scored(c, &ps, &scored, file_id, now)).await?;
        }
        Ok(())
    }

    /// Stop taking writes, let the writer commit and answer everything queued, then join it.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.queue.send(Msg::Stop).await;
        self.stop_checkpoints.store(true, Ordering::Release);
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Copy committed WAL frames into the database every 100 ms (PASSIVE: never blocks anyone).
///
/// Under sustained writes a PASSIVE checkpoint never catches up at the instant the writer starts
/// its next transaction, so SQLite would never rewind the WAL and it would grow without bound
/// (and every page read would search an ever larger WAL index). Once the WAL holds more than
/// `restart_frames`, a RESTART checkpoint copies the small remainder while holding the writer
/// lock for a moment and makes the next transaction rewind the WAL to its start.
fn checkpoint_loop(conn: Connection, stop: Arc<AtomicBool>, restart_frames: i64) {
    let frames = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
    };
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        match frames("PASSIVE") {
            Ok((log, done)) => {
                metrics::gauge!("cashback_sqlite_wal_frames").set(log as f64);
                metrics::gauge!("cashback_sqlite_wal_frames_pending").set((log - done).max(0) as f64);
                if log > restart_frames {
                    let started = Instant::now();
                    match frames("RESTART") {
                        Ok(_) => {
                            metrics::counter!("cashback_sqlite_wal_restarts_total").increment(1);
                            metrics::histogram!("cashback_sqlite_wal_restart_seconds")
                                .record(started.elapsed().as_secs_f64());
                        }
                        Err(e) => tracing::warn!(error = %e, "sqlite RESTART checkpoint failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sqlite checkpoint failed"),
        }
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// Where a committed batch's replies go: answered at once, or after the syncer's `fdatasync`.
enum Acks {
    Immediate,
    AfterSync(std::sync::mpsc::SyncSender<Vec<Reply>>),
}

impl Acks {
    fn deliver(&self, replies: Vec<Reply>, outcome: Result<(), String>) {
        match (self, outcome) {
            (Acks::AfterSync(tx), Ok(())) => {
                if let Err(std::sync::mpsc::SendError(replies)) = tx.send(replies) {
                    for r in replies {
                        r(Err("the WAL syncer stopped".into()));
                    }
                }
            }
            (_, outcome) => {
                for r in replies {
                    r(outcome.clone());
                }
            }
        }
    }
}

/// Sync the WAL, then answer every batch committed before the sync began.
fn syncer_loop(wal: PathBuf, rx: std::sync::mpsc::Receiver<Vec<Reply>>) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(more) = rx.try_recv() {
            groups.push(more);
        }
        let started = Instant::now();
        let res = match &file {
            Some(f) => f.sync_data(),
            None => std::fs::OpenOptions::new().read(true).write(true).open(&wal).and_then(|f| {
                let r = f.sync_data();
                file = Some(f);
                r
            }),
        }
        .map_err(|e| {
            metrics::counter!("cashback_writer_sync_failures_total").increment(1);
            tracing::error!(error = %e, wal = %wal.display(), "fdatasync of the SQLite WAL failed");
            format!("could not sync the write-ahead log: {e}")
        });
        metrics::histogram!("cashback_writer_sync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("cashback_writer_sync_batches").record(groups.len() as f64);
        for r in groups.into_iter().flatten() {
            r(res.clone());
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    batch_max: usize,
    sync_wal: Option<PathBuf>,
    pending: Arc<Mutex<pending::PendingKeys>>,
) {
    // Batches committed while the syncer is busy wait here (bounded: the writer blocks when it
    // is this far ahead of the disk).
    let (acks, syncer) = match sync_wal {
        Some(wal) => {
            let (tx, srx) = std::sync::mpsc::sync_channel::<Vec<Reply>>(64);
            match std::thread::Builder::new().name("sqlite-syncer".into()).spawn(move || syncer_loop(wal, srx)) {
                Ok(h) => (Acks::AfterSync(tx), Some(h)),
                Err(e) => {
                    tracing::error!(error = %e, "could not start the WAL syncer; using synchronous=FULL");
                    let _ = conn.pragma_update(None, "synchronous", "FULL");
                    (Acks::Immediate, None)
                }
            }
        }
        None => (Acks::Immediate, None),
    };
    let mut stop = false;
    let mut batch: Vec<Job> = Vec::with_capacity(batch_max);
    while !stop {
        match rx.blocking_recv() {
            Some(Msg::Job(j)) => batch.push(j),
            Some(Msg::Stop) | None => break,
        }
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        metrics::gauge!("cashback_writer_queue_depth").set(rx.len() as f64);
        metrics::histogram!("cashback_writer_batch_size").record(batch.len() as f64);
        let started = Instant::now();
        run_batch(&mut conn, &mut batch, &acks, &pending);
        metrics::histogram!("cashback_writer_batch_seconds").record(started.elapsed().as_secs_f64());
    }
    // Drain anything still queued (the queue is closed to new writers by `closed`).
    rx.close();
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Job(j) = msg {
            batch.push(j);
            if batch.len() >= batch_max {
                run_batch(&mut conn, &mut batch, &acks, &pending);
            }
        }
    }
    if !batch.is_empty() {
        run_batch(&mut conn, &mut batch, &acks, &pending);
    }
    // Let the syncer make the last batches durable and answer them.
    drop(acks);
    if let Some(h) = syncer {
        let _ = h.join();
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    tracing::info!("sqlite writer stopped");
}

fn run_batch(conn: &mut Connection, batch: &mut Vec<Job>, acks: &Acks, pending: &Mutex<pending::PendingKeys>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Jobs are dropped unrun: their callers get `Unavailable` and may retry.
        tracing::error!(error = %e, jobs = batch.len(), "sqlite writer could not begin a transaction");
        batch.clear();
        return;
    }
    for job in batch.drain(..) {
        let sp = conn.prepare_cached("SAVEPOINT job").and_then(|mut s| s.execute([]));
        let (ok, reply) = job(conn);
        if sp.is_ok() {
            if ok {
                let _ = conn.prepare_cached("RELEASE job").and_then(|mut s| s.execute([]));
            } else {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
        }
        replies.push(reply);
    }
    let outcome = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if outcome.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
        if let Ok(mut p) = pending.lock() {
            p.invalidate();
        }
        metrics::counter!("cashback_writer_commit_failures_total").increment(1);
    }
    acks.deliver(replies, outcome);
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    async fn close(&self) {
        SqliteStore::close(self).await
    }

    async fn enroll_citizen(
        &self,
        fiscal_code: &FiscalCode,
        requested_opt_in: Option<OptInStatus>,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<Citizen> {
        let (cf, ch, actor) = (fiscal_code.clone(), channel.clone(), audit::current_actor());
        self.write(move |c| ops::enroll_citizen(c, &cf, requested_opt_in, &ch, now, &actor)).await
    }

    async fn get_citizen(&self, fiscal_code: &FiscalCode) -> StoreResult<Option<Citizen>> {
        self.read(|c| ops::get_citizen(c, fiscal_code))
    }

    async fn set_payoff(
        &self,
        fiscal_code: &FiscalCode,
        payoff: Payoff,
        now: OffsetDateTime,
    ) -> StoreResult<SetPayoffOutcome> {
        let cf = fiscal_code.clone();
        let ev = audit::events::payoff_set(&cf, &payoff);
        self.write(audited(
            now,
            move |c| ops::set_payoff(c, &cf, payoff, now),
            move |o| matches!(o, SetPayoffOutcome::Updated(_)).then_some(ev),
        ))
        .await
    }

    async fn withdraw_citizen(
        &self,
        fiscal_code: &FiscalCode,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> StoreResult<WithdrawOutcome> {
        let (cf, ch) = (fiscal_code.clone(), channel.clone());
        self.write(audited(now, move |c| ops::withdraw_citizen(c, &cf, &ch, now), {
            let (cf, ch) = (fiscal_code.clone(), channel.clone());
            move |o| audit::events::withdrawn(&cf, ch.as_str(), o)
        }))
        .await
    }

    async fn erase_expired_citizens(
        &self,
        cutoff: OffsetDateTime,
        include_enabled: bool,
        limit: u32,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let cutoff_us = ops::micros(cutoff);
        while self.write(move |c| ops::purge_notifications(c, cutoff_us, PURGE_BATCH)).await? > 0 {}
        let candidates = self.read(|c| ops::erasable_citizens(c, cutoff_us, include_enabled, limit))?;
        let mut erased = 0;
        for cf in candidates {
            let ev = self
                .write(audited(now, move |c| ops::erase_citizen(c, &cf, cutoff_us, include_enabled), Option::clone))
                .await?;
            erased += u64::from(ev.is_some());
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
        let (h, cf, ch) = (hpan.clone(), fiscal_code.clone(), channel.clone());
        let h2 = hpan.clone();
        self.write(audited(
            now,
            move |c| ops::enroll_instrument(c, &h, &cf, &ch, now),
            move |o| audit::events::instrument_enrolled(&h2, o),
        ))
        .await
    }

    async fn get_instrument(&self, hpan: &Hpan) -> StoreResult<Option<Instrument>> {
        self.read(|c| ops::get_instrument(c, hpan))
    }

    async fn delete_instrument(
        &self,
        hpan: &Hpan,
        fiscal_code: Option<&FiscalCode>,
        now: OffsetDateTime,
    ) -> StoreResult<DeleteInstrumentOutcome> {
        let (h, cf) = (hpan.clone(), fiscal_code.cloned());
        let (h2, cf2) = (hpan.clone(), fiscal_code.cloned());
        self.write(audited(
            now,
            move |c| ops::delete_instrument(c, &h, cf.as_ref(), now),
            move |o| audit::events::instrument_deleted(&h2, cf2.as_ref(), o),
        ))
        .await
    }

    async fn count_active_instruments(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<ChannelCount>> {
        self.read(|c| ops::count_active_instruments(c, fiscal_code))
    }

    async fn instrument_history(&self, hpan: &Hpan) -> StoreResult<Vec<ActivationWindow>> {
        self.read(|c| ops::instrument_history(c, hpan))
    }

    async fn list_award_periods(&self) -> StoreResult<Vec<AwardPeriod>> {
        self.read(ops::list_award_periods)
    }

    async fn upsert_award_period(&self, period: &AwardPeriod) -> StoreResult<()> {
        let p = period.clone();
        let ev = audit::events::award_period_set(period);
        self.write(audited_now(move |c| ops::upsert_award_period(c, &p, true).map(|_| ()), move |_| Some(ev))).await
    }

    async fn seed_award_periods(&self, periods: &[AwardPeriod]) -> StoreResult<u64> {
        let ps = periods.to_vec();
        self.write(move |c| {
            let mut n = 0;
            for p in &ps {
                n += ops::upsert_award_period(c, p, false)? as u64;
            }
            Ok(n)
        })
        .await
    }

    async fn insert_credential(&self, credential: &Credential) -> StoreResult<()> {
        let cr = credential.clone();
        let ev = audit::events::credential_created(credential);
        self.write(audited(credential.created_at, move |c| ops::insert_credential(c, &cr), move |_| Some(ev))).await
    }

    async fn find_credential_by_key_hash(&self, key_sha256: &str) -> StoreResult<Option<Credential>> {
        self.read(|c| ops::find_credential(c, key_sha256))
    }

    async fn list_credentials(&self) -> StoreResult<Vec<Credential>> {
        self.read(ops::list_credentials)
    }

    async fn revoke_credential(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        let (id, id2) = (id.to_owned(), id.to_owned());
        self.write(audited(
            now,
            move |c| ops::revoke_credential(c, &id, now),
            move |r| audit::events::credential_revoked(&id2, *r),
        ))
        .await
    }

    async fn audit_events(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.read(|c| ops::audit_events(c, q))
    }

    async fn bind_client_cert(&self, id: &str, cert_sha256: Option<&str>) -> StoreResult<bool> {
        let (id, fp) = (id.to_owned(), cert_sha256.map(str::to_owned));
        let ev_fp = fp.clone();
        let ev_id = id.clone();
        self.write(audited(
            OffsetDateTime::now_utc(),
            move |c| ops::bind_client_cert(c, &id, fp.as_deref()),
            move |changed| audit::events::credential_cert_bound(&ev_id, ev_fp.as_deref(), *changed),
        ))
        .await
    }

    async fn begin_acquirer_file(&self, file: NewAcquirerFile, now: OffsetDateTime) -> StoreResult<BeginFile> {
        let f2 = file.clone();
        self.write(audited(
            now,
            move |c| ops::begin_acquirer_file(c, &file, now),
            move |o| audit::events::acquirer_file_accepted(&f2, o),
        ))
        .await
    }

    async fn ingest_chunk(&self, file_id: i64, chunk: IngestChunk) -> StoreResult<ChunkOutcome> {
        let pending = self.pending.clone();
        self.write(move |c| {
            let mut p = pending.lock().map_err(|_| poisoned())?;
            ops::ingest_chunk(c, &mut p, file_id, &chunk)
        })
        .await
    }

    async fn finish_acquirer_file(
        &self,
        file_id: i64,
        error: Option<String>,
        now: OffsetDateTime,
    ) -> StoreResult<AcquirerFile> {
        let _one_at_a_time = self.finish_lock.lock().await;
        if error.is_none() {
            let pairs = self.merge_file_lookups(file_id).await?;
            self.score_file(file_id, pairs, now).await?;
        }
        let pending = self.pending.clone();
        self.write(move |c| {
            let mut p = pending.lock().map_err(|_| poisoned())?;
            ops::finish_acquirer_file(c, &mut p, file_id, error.as_deref(), now)
        })
        .await
    }

    async fn get_acquirer_file(&self, name: &str) -> StoreResult<Option<AcquirerFile>> {
        self.read(|c| ops::get_acquirer_file(c, name))
    }

    async fn file_rejections(&self, file_id: i64, limit: u32) -> StoreResult<Vec<Rejection>> {
        self.read(|c| ops::file_rejections(c, file_id, limit))
    }

    async fn list_acquirer_files(&self, abi: &str, limit: u32) -> StoreResult<Vec<AcquirerFile>> {
        self.read(|c| ops::list_acquirer_files(c, Some(abi), limit))
    }

    async fn active_hpans(&self, after: Option<&Hpan>, limit: u32) -> StoreResult<Vec<Hpan>> {
        self.read(|c| ops::active_hpans(c, after, limit))
    }

    async fn load_enrollment_index(&self) -> StoreResult<EnrollmentIndex> {
        // Millions of rows: read on a dedicated connection off the async runtime.
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c =
                Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(sql_err)?;
            // No memory map: the scan reads every instrument once, and mapped pages would count
            // in the process's resident memory on top of the index being built.
            ops::load_enrollment_index(&mut c).map_err(sql_err)
        })
        .await
        .map_err(|e| StoreError::Other(format!("snapshot task failed: {e}")))?
    }

    async fn citizen_transactions(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<StoredTransaction>> {
        self.read(|c| ops::citizen_transactions(c, fiscal_code))
    }

    async fn instrument_transactions(&self, hpan: &Hpan) -> StoreResult<Vec<StoredTransaction>> {
        self.read(|c| ops::instrument_transactions(c, hpan))
    }

    async fn citizen_period_totals(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<PeriodTotals>> {
        self.read(|c| ops::citizen_period_totals(c, fiscal_code))
    }

    async fn enabled_citizen_totals(&self, fiscal_code: &FiscalCode) -> StoreResult<Option<Vec<PeriodTotals>>> {
        self.read(|c| ops::enabled_citizen_totals(c, fiscal_code))
    }

    async fn citizen_period_rows(&self, fiscal_code: &FiscalCode, award_period_id: i64) -> StoreResult<Vec<PeriodRow>> {
        self.read(|c| ops::citizen_period_rows(c, fiscal_code, award_period_id))
    }

    async fn standing_changes(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<StandingUpdate>> {
        self.read(|c| ops::standing_changes(c, after_seq, limit))
    }

    async fn import_enrollments(&self, batch: EnrollmentImport) -> StoreResult<ImportOutcome> {
        batch.check_size().map_err(StoreError::Other)?;
        self.write(audited_now(move |c| ops::import_enrollments(c, &batch), audit::events::enrollments_imported)).await
    }

    async fn import_period_totals(
        &self,
        award_period_id: i64,
        rows: Vec<ImportedTotals>,
        now: OffsetDateTime,
    ) -> StoreResult<TotalsImportOutcome> {
        check_totals_batch(&rows).map_err(StoreError::Other)?;
        self.write(move |c| ops::import_period_totals(c, award_period_id, &rows, now)).await
    }
}
