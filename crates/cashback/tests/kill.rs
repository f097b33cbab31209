//! Crash safety of file ingestion on the real binary: `cashback ingest` is killed with SIGKILL
//! in the middle of a large file, run again, and the stored result (file counters, rejected
//! lines, every stored transaction of every card) must equal a clean run's on a copy of the
//! same database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cashback_domain::enrollment::Channel;
use cashback_domain::{AwardPeriod, Money};
use cashback_store::testkit::{fiscal_code, hpan};
use cashback_store::{FileCounts, FileStatus, Store};
use cashback_store_sqlite::{SqliteOptions, SqliteStore};
use time::OffsetDateTime;

const BIN: &str = env!("CARGO_BIN_EXE_cashback");
const CITIZENS: u32 = 300;
const CARDS_PER_CITIZEN: u64 = 3;
const ROWS: u64 = 150_000;
const CHUNK_ROWS: &str = "2000";
const NAME: &str = "CSTAR.12345.TRNLOG.20261120.101010.001.csv";

fn open(path: &Path) -> Arc<dyn Store> {
    SqliteStore::open(path, SqliteOptions::default()).expect("opening the database")
}

/// Citizens with cards enrolled a day ago, and a period around today.
async fn seed(path: &Path, now: OffsetDateTime) {
    let store = open(path);
    let today = now.date();
    store
        .upsert_award_period(&AwardPeriod {
            id: 90,
            start: today - time::Duration::days(30),
            end: today + time::Duration::days(30),
            grace_period_days: 10,
            min_transaction_number: 10,
            max_amount: Money::from_cents(150_000),
            min_position: 100,
            max_transaction_cashback: Money::from_cents(1_500),
            max_period_cashback: Money::from_cents(15_000),
            cashback_percentage: 10,
            max_transaction_evaluated: Money::from_cents(15_000),
            scoring: cashback_domain::scoring::ScoringRules::default(),
        })
        .await
        .unwrap();
    let since = now - time::Duration::days(1);
    for c in 0..CITIZENS {
        let cf = fiscal_code(c);
        store.enroll_citizen(&cf, None, &Channel::io(), since).await.unwrap();
        for k in 0..CARDS_PER_CITIZEN {
            store.enroll_instrument(&hpan(u64::from(c) * 10 + k), &cf, &Channel::io(), since).await.unwrap();
        }
    }
    store.close().await;
}

/// Every 5th row on a card nobody enrolled, every 97th malformed, every 50th a repeat of an
/// earlier row, every 7th a reversal.
fn write_file(path: &Path, now: OffsetDateTime) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let base = now - time::Duration::hours(2);
    for i in 0..ROWS {
        let id = if i % 50 == 49 { i - 25 } else { i };
        let card = if id % 5 == 4 { 9_000_000 + id } else { (id % u64::from(CITIZENS)) * 10 + id % CARDS_PER_CITIZEN };
        let at = base + time::Duration::milliseconds(id as i64);
        let at = at.format(&time::format_description::well_known::Rfc3339).unwrap();
        let op = if id % 7 == 6 { "01" } else { "00" };
        let amount = 100 + id % 10_000;
        let currency = if i % 97 == 96 { "EUR" } else { "978" };
        writeln!(
            f,
            "12345;{op};01;{};{at};ID{id};;;{amount};{currency};ACQ1;MERCH{};TERM1;40236010;5411",
            hpan(card),
            id % 100
        )
        .unwrap();
    }
    f.flush().unwrap();
}

fn ingest(db: &Path, file: &Path) -> std::process::Child {
    Command::new(BIN)
        .arg("ingest")
        .arg("--database")
        .arg(format!("sqlite://{}", db.display()))
        .arg("--chunk-rows")
        .arg(CHUNK_ROWS)
        .arg("--quiet")
        .arg(file)
        .env_remove("CASHBACK_DATABASE_URL")
        .env_remove("CASHBACK_CONFIG")
        .env("RUST_LOG", "warn")
        .current_dir(db.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning cashback ingest")
}

fn run_to_end(db: &Path, file: &Path) {
    let status = ingest(db, file).wait().unwrap();
    assert!(status.success(), "cashback ingest failed: {status}");
}

/// Lines committed so far, read from another connection while the ingestion runs.
fn progress(db: &Path) -> Option<(u64, String)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    c.busy_timeout(Duration::from_millis(100)).ok()?;
    c.query_row("SELECT last_line, status FROM acquirer_file WHERE name = ?1", [NAME], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
    })
    .ok()
}

/// Everything stored about the file, through the store's own reads.
async fn outcome(db: &Path) -> (FileCounts, FileStatus, u64, Vec<String>, Vec<String>) {
    let store = open(db);
    let f = store.get_acquirer_file(NAME).await.unwrap().expect("file recorded");
    let rejections = store.file_rejections(f.id, 1_000_000).await.unwrap();
    let rejections = rejections.iter().map(|r| format!("{}:{}:{}", r.line, r.field, r.reason)).collect();
    let mut rows = Vec::new();
    for c in 0..CITIZENS {
        for k in 0..CARDS_PER_CITIZEN {
            for t in store.instrument_transactions(&hpan(u64::from(c) * 10 + k)).await.unwrap() {
                rows.push(format!("{t:?}"));
            }
        }
    }
    for id in (4..ROWS).step_by(5) {
        for t in store.instrument_transactions(&hpan(9_000_000 + id)).await.unwrap() {
            rows.push(format!("{t:?}"));
        }
    }
    rows.sort();
    store.close().await;
    (f.counts, f.status, f.last_line, rejections, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_file_resumes_to_the_clean_result() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let (clean, victim): (PathBuf, PathBuf) = (dir.path().join("clean.db"), dir.path().join("victim.db"));
    seed(&clean, now).await;
    std::fs::copy(&clean, &victim).unwrap();
    let file = dir.path().join(NAME);
    write_file(&file, now);

    run_to_end(&clean, &file);

    let mut child = ingest(&victim, &file);
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        if let Some((line, status)) = progress(&victim)
            && line >= ROWS / 5
        {
            assert_eq!(status, "PROCESSING", "the file finished before it could be killed");
            break line;
        }
        assert!(child.try_wait().unwrap().is_none(), "ingest ended before it could be killed");
        assert!(Instant::now() < deadline, "no progress within 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (line, status) = progress(&victim).expect("file row after the kill");
    assert_eq!(status, "PROCESSING");
    assert!(line >= at_kill && line < ROWS, "killed at line {line} of {ROWS}");

    run_to_end(&victim, &file);
    // Once more: a file already done is not counted again.
    run_to_end(&victim, &file);

    let want = outcome(&clean).await;
    let got = outcome(&victim).await;
    assert_eq!(want.1, FileStatus::Done);
    assert_eq!(want.2, ROWS);
    assert!(
        want.0.accepted > 0 && want.0.ineligible > 0 && want.0.rejected > 0 && want.0.duplicates > 0,
        "{:?}",
        want.0
    );
    assert_eq!(got.0, want.0, "counters");
    assert_eq!((got.1, got.2), (want.1, want.2));
    assert_eq!(got.3, want.3, "rejected lines");
    assert_eq!(got.4.len(), want.4.len(), "stored rows");
    assert!(got.4 == want.4, "stored rows differ");
}
