//! Ingestion end to end on SQLite: reports, refusals, idempotency, any split of the same rows
//! (also on PostgreSQL: `CASHBACK_TEST_PG_URL`), and resuming an interrupted file.

use std::io::Read;
use std::sync::Arc;

use cashback_domain::eligibility::Ineligible;
use cashback_ingest::{IngestContext, IngestError, IngestOptions, Received, ingest_file};
use cashback_store::testkit::{fiscal_code, hpan, io};
use cashback_store::{FileCounts, FileStatus, Store};
use cashback_store_sqlite::{SqliteOptions, SqliteStore};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2021-02-10 12:00 UTC);

async fn store() -> Arc<dyn Store> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    std::mem::forget(dir);
    let s = SqliteStore::open(path, SqliteOptions { synchronous_full: false, ..Default::default() }).unwrap();
    seed(s).await
}

async fn pg_store() -> Arc<dyn Store> {
    seed(cashback_store_postgres::testing::fresh_store("cashback_ingest_").await).await
}

async fn store_on(pg: bool) -> Arc<dyn Store> {
    if pg { pg_store().await } else { store().await }
}

async fn seed(s: Arc<dyn Store>) -> Arc<dyn Store> {
    s.seed_award_periods(&cashback_domain::period::default_programme()).await.unwrap();
    // Citizens 1..=3 with cards 1..=3 (card n belongs to citizen n) from 1 Jan 2021.
    for n in 1..=3u32 {
        let cf = fiscal_code(n);
        s.enroll_citizen(&cf, None, &io(), datetime!(2021-01-01 00:00 UTC)).await.unwrap();
        s.enroll_instrument(&hpan(n as u64), &cf, &io(), datetime!(2021-01-01 00:00 UTC)).await.unwrap();
    }
    s
}

/// An E1 row: payment of `cents` on card `card` at `day` January 2021, transaction id `id`.
fn row(id: u32, card: u64, day: u8, cents: u64) -> String {
    format!(
        "12345;00;01;{};2021-01-{day:02}T10:20:30.000+01:00;ID{id};ISS{id};;{cents};978;ACQ1;MERCH1;TERM1;40236010;5411",
        hpan(card)
    )
}

fn received(data: &str) -> Received {
    Received { size: data.len() as u64, sha256: "00".repeat(32) }
}

async fn ingest(
    store: &Arc<dyn Store>,
    name: &str,
    data: String,
    chunk_rows: usize,
) -> Result<cashback_ingest::Ingested, IngestError> {
    let ctx = IngestContext::load(store.clone(), NOW).await.unwrap();
    let r = received(&data);
    let opts = IngestOptions { chunk_rows, ..Default::default() };
    ingest_file(&ctx, name, r, std::io::Cursor::new(data.into_bytes()), &opts, |_| {}).await
}

fn name(n: u32) -> String {
    format!("CSTAR.12345.TRNLOG.20210201.101010.{n:03}.csv")
}

#[tokio::test]
async fn report_counts_every_row_and_names_each_rejection() {
    let s = store().await;
    let lines = [
        format!("#sha256sum:{}", "a".repeat(64)),
        row(1, 1, 15, 2_500),                                         // 2: accepted
        row(2, 9, 15, 1_000),                                         // 3: card not enrolled
        row(3, 2, 15, 1_000).replace("40236010", "4023601"),          // 4: bad BIN
        String::new(),                                                // 5: blank line
        row(4, 3, 15, 1_000).replace(";978;", ";EUR;"),               // 6: bad currency
        row(5, 3, 15, 700).replacen("12345;", "54321;", 1),           // 7: other sender
        row(6, 2, 16, 990) + ";extra",                                // 8: 16 fields
        row(7, 2, 16, 990).replace("T10:20:30.000", "T24:00:00.000"), // 9: hour 24
        row(8, 1, 15, 2_500) + "\r",                                  // 10: CRLF, accepted
        row(1, 1, 15, 2_500),                                         // 11: duplicate of line 2
        row(9, 2, 16, 100).replace("2021-01-16", "2020-11-16"),       // 12: before the card was enrolled
    ];
    let data = lines.join("\n") + "\n";
    let got = ingest(&s, &name(1), data, 3).await.unwrap();
    assert!(!got.already_done);
    let f = got.file;
    assert_eq!(f.status, FileStatus::Done);
    assert_eq!(f.counts, FileCounts { accepted: 2, ineligible: 2, duplicates: 1, rejected: 6 });
    assert_eq!(f.last_line, 12);
    assert_eq!(f.checksum.as_deref(), Some(lines[0].as_str()));
    let rej = s.file_rejections(f.id, 100).await.unwrap();
    let summary: Vec<(u64, &str)> = rej.iter().map(|r| (r.line, r.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![(4, "bin"), (5, "record"), (6, "currency"), (7, "sender_code"), (8, "record"), (9, "date_time")]
    );
    assert!(rej.iter().all(|r| !r.reason.is_empty()));
    let mine = s.citizen_transactions(&fiscal_code(1)).await.unwrap();
    assert_eq!(mine.iter().map(|t| t.line).collect::<Vec<_>>(), vec![2, 10]);
    assert_eq!(mine[0].amount_cents, 2_500);
    assert_eq!(mine[0].award_period_id, Some(1));
    let card9 = s.instrument_transactions(&hpan(9)).await.unwrap();
    assert_eq!(card9[0].ineligible, Some(Ineligible::InstrumentNotEnrolled));
    let card2 = s.instrument_transactions(&hpan(2)).await.unwrap();
    assert_eq!(card2.iter().map(|t| t.ineligible).collect::<Vec<_>>(), vec![Some(Ineligible::InstrumentNotActive)]);

    // The same file again: already done, nothing changes.
    let again = ingest(&s, &name(1), lines.join("\n"), 3).await.unwrap();
    assert!(again.already_done);
    assert_eq!(again.file, f);
}

#[tokio::test]
async fn whole_file_refusals() {
    let s = store().await;
    assert!(
        matches!(ingest(&s, "CSTAR.12345.TRNLOG.20220230.101010.001.csv", row(1, 1, 15, 1), 10).await, Err(IngestError::FileName(e)) if e.field == "fileName")
    );
    let bad_checksum = format!("#sha256sum:{}\n{}\n", "Z".repeat(64), row(1, 1, 15, 100));
    assert!(matches!(ingest(&s, &name(2), bad_checksum, 10).await, Err(IngestError::Refused(_))));
    let f = s.get_acquirer_file(&name(2)).await.unwrap().unwrap();
    assert_eq!(f.status, FileStatus::Failed);
    assert!(f.error.unwrap().contains("checksum"));
    assert!(s.citizen_transactions(&fiscal_code(1)).await.unwrap().is_empty(), "a refused file stores nothing");
    assert!(
        matches!(ingest(&s, &name(3), String::new(), 10).await, Err(IngestError::Refused(r)) if r.contains("no transaction"))
    );
    // A refused file may be sent again under the same name once fixed.
    let fixed = ingest(&s, &name(2), row(1, 1, 15, 100) + "\n", 10).await.unwrap();
    assert_eq!(fixed.file.counts.accepted, 1);
}

/// Tiny deterministic generator (no external crate): xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test]
async fn any_split_order_and_repetition_gives_the_same_result() {
    split_property(false).await;
}

#[tokio::test]
async fn any_split_order_and_repetition_gives_the_same_result_on_postgres() {
    split_property(true).await;
}

/// A reversal (`01`) of `cents` on card `card` at 11:00 on `day` January 2021, with an optional
/// correlation id (else it matches a payment by merchant, terminal and amount).
fn reversal(id: u32, card: u64, day: u8, cents: u64, corr: Option<&str>) -> String {
    format!(
        "12345;01;01;{};2021-01-{day:02}T11:00:00.000+01:00;RID{id};;{};{cents};978;ACQ1;MERCH1;TERM1;40236010;5411",
        hpan(card),
        corr.unwrap_or("")
    )
}

/// Each citizen's totals as the engine stored them (without the change sequence and time).
async fn totals(
    s: &Arc<dyn Store>,
) -> Vec<Vec<(i64, bool, i64, i64, u32, Option<i64>, Option<String>, Option<String>)>> {
    let mut out = Vec::new();
    for cf in (1..=3).map(fiscal_code) {
        let t = s.citizen_period_totals(&cf).await.unwrap();
        out.push(
            t.into_iter()
                .map(|t| {
                    (
                        t.award_period_id,
                        t.enabled,
                        t.cashback.cents(),
                        t.score_total.cents(),
                        t.transactions,
                        t.last_counted_us,
                        t.id_trx_min_transaction,
                        t.id_trx_pivot,
                    )
                })
                .collect(),
        );
    }
    out
}

/// Every citizen's eligible rows and the unenrolled card's ineligible rows.
async fn stored(s: &Arc<dyn Store>) -> Vec<Vec<([u8; 16], i64, OffsetDateTime, Option<Ineligible>)>> {
    let mut out = Vec::new();
    for cf in (1..=3).map(fiscal_code) {
        let rows = s.citizen_transactions(&cf).await.unwrap();
        out.push(rows.into_iter().map(|t| (t.dedup_key, t.amount_cents, t.at, t.ineligible)).collect());
    }
    let mut stranger: Vec<_> = s
        .instrument_transactions(&hpan(4))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.dedup_key, t.amount_cents, t.at, t.ineligible))
        .collect();
    stranger.sort_by_key(|t| t.0);
    out.push(stranger);
    out
}

async fn split_property(pg: bool) {
    let card = |i: u32| 1 + (i as u64 % 4);
    let day = |i: u32| 10 + (i % 15) as u8;
    let cents = |i: u32| 100 + i as u64 * 700;
    let mut rows: Vec<String> = (0..60)
        .map(|i| {
            let r = row(i, card(i), day(i), cents(i));
            // Every 6th payment carries a correlation id (E1 column 8).
            if i % 6 == 0 { r.replacen(";;", &format!(";CORR{i};"), 1) } else { r }
        })
        .collect();
    // Total reversals by merchant/terminal/amount, partial refunds by correlation id, and an
    // orphan; across files they may arrive before their payments.
    for i in (5..60).step_by(10) {
        rows.push(reversal(i, card(i), day(i), cents(i), None));
    }
    for i in (0..60).step_by(12) {
        rows.push(reversal(100 + i, card(i), day(i), cents(i) / 2, Some(&format!("CORR{i}"))));
    }
    rows.push(reversal(999, 1, 20, 12_345, None));
    // Reference: all rows in one file.
    let reference = store_on(pg).await;
    ingest(&reference, &name(1), rows.join("\n"), 1000).await.unwrap();
    let want = stored(&reference).await;
    let want_totals = totals(&reference).await;
    assert!(want[..3].iter().all(|rows| !rows.is_empty()) && !want[3].is_empty());
    assert!(want_totals.iter().all(|t| t.len() == 1 && t[0].4 > 0), "{want_totals:?}");
    // The stored totals are the engine's result over the citizen's rows.
    for cf in (1..=3).map(fiscal_code) {
        let period = cashback_domain::period::default_programme()[1].clone();
        let rows: Vec<_> =
            reference.citizen_period_rows(&cf, 1).await.unwrap().iter().map(|r| r.scoring_row()).collect();
        let t = &reference.citizen_period_totals(&cf).await.unwrap()[0];
        let c = cashback_store::scoring::compute_totals(&period, &rows);
        assert_eq!((t.cashback, t.transactions, &t.id_trx_pivot), (c.cashback, c.transactions, &c.id_trx_pivot));
    }
    for seed in 1..=8u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let s = store_on(pg).await;
        // Shuffle, repeat a few rows, split into 1–5 files of random sizes.
        let mut all: Vec<String> = rows.clone();
        for _ in 0..10 {
            let i = rng.below(rows.len() as u64) as usize;
            all.push(rows[i].clone());
        }
        for i in (1..all.len()).rev() {
            all.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let files = 1 + rng.below(5) as usize;
        let mut start = 0;
        for f in 0..files {
            let end =
                if f + 1 == files { all.len() } else { start + rng.below((all.len() - start) as u64 + 1) as usize };
            if end > start {
                let chunk = 1 + rng.below(7) as usize;
                ingest(&s, &name(f as u32 + 1), all[start..end].join("\n"), chunk).await.unwrap();
            }
            start = end;
        }
        assert_eq!(stored(&s).await, want, "seed {seed}");
        assert_eq!(totals(&s).await, want_totals, "seed {seed}: totals depend on the files' split and order");
    }
}

/// A reader that fails after `limit` bytes, like a process dying mid-file.
struct FailAfter<R> {
    inner: R,
    left: usize,
}

impl<R: Read> Read for FailAfter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("connection lost"));
        }
        let n = buf.len().min(self.left);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

#[tokio::test]
async fn an_interrupted_file_resumes_to_the_clean_result() {
    let rows: Vec<String> = (0..500).map(|i| row(i, 1 + (i as u64 % 3), 10 + (i % 15) as u8, 100 + i as u64)).collect();
    let mut data = rows.join("\n");
    data.push_str("\nbroken;row\n");
    let clean = store().await;
    let clean_file = ingest(&clean, &name(1), data.clone(), 64).await.unwrap().file;

    let s = store().await;
    let ctx = IngestContext::load(s.clone(), NOW).await.unwrap();
    let opts = IngestOptions { chunk_rows: 64, chunks_ahead: 1 };
    let cut = FailAfter { inner: std::io::Cursor::new(data.clone().into_bytes()), left: data.len() / 2 };
    let err = ingest_file(&ctx, &name(1), received(&data), cut, &opts, |_| {}).await.unwrap_err();
    assert!(matches!(err, IngestError::Io(_)), "{err:?}");
    let partial = s.get_acquirer_file(&name(1)).await.unwrap().unwrap();
    assert_eq!(partial.status, FileStatus::Processing);
    assert!(partial.last_line > 0 && partial.last_line < 500, "some chunks were committed: {}", partial.last_line);
    let resumed = ingest(&s, &name(1), data, 64).await.unwrap().file;
    assert_eq!(resumed.counts, clean_file.counts);
    assert_eq!(resumed.counts.duplicates, 0, "resuming does not re-read committed lines");
    for n in 1..=3 {
        let a = clean.citizen_transactions(&fiscal_code(n)).await.unwrap();
        let b = s.citizen_transactions(&fiscal_code(n)).await.unwrap();
        assert_eq!(a, b);
    }
}
