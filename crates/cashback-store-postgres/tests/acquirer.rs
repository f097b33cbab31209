//! PostgreSQL-specific behaviour of the acquirer pipeline beyond the shared contract: races
//! between nodes on one file, large chunks bound as arrays, duplicates inside a chunk, the
//! acquirer's offset. Needs `CASHBACK_TEST_PG_URL` (see `common`).

mod common;

use std::sync::Arc;
use std::time::Instant;

use cashback_store::testkit::{fiscal_code, stored_trx, t0};
use cashback_store::*;
use cashback_store_postgres::PgStore;
use time::OffsetDateTime;
use time::macros::datetime;

fn file(name: &str) -> NewAcquirerFile {
    NewAcquirerFile { name: name.into(), abi: "12345".into(), size: 10, sha256: "cd".repeat(32) }
}

fn key_of(n: u64) -> [u8; 16] {
    stored_trx(n, 0, None, t0()).dedup_key
}

/// Six nodes call `begin_acquirer_file` on the same name at once.
fn race_begin(store: &Arc<PgStore>, name: &str) -> Vec<tokio::task::JoinHandle<BeginFile>> {
    (0..6)
        .map(|_| {
            let (s, name) = (store.clone(), name.to_owned());
            tokio::spawn(async move { s.begin_acquirer_file(file(&name), t0()).await.unwrap() })
        })
        .collect()
}

/// Several nodes begin the same new file at once: one starts it, the others resume it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_begin_starts_once() {
    let store: Arc<PgStore> = common::fresh().await;
    for round in 0..10 {
        let name = format!("CSTAR.12345.TRNLOG.20210116.0100{round:02}.001.csv");
        let joins = race_begin(&store, &name);
        let mut started = 0;
        let mut ids = Vec::new();
        for j in joins {
            match j.await.unwrap() {
                BeginFile::Started(f) => {
                    started += 1;
                    ids.push(f.id);
                }
                BeginFile::Resume(f) => ids.push(f.id),
                BeginFile::AlreadyDone(f) => panic!("not done yet: {f:?}"),
            }
        }
        assert_eq!(started, 1, "round {round}");
        assert!(ids.iter().all(|&id| id == ids[0]));
        // Failed: again exactly one restarts it.
        store.finish_acquirer_file(ids[0], Some("bad signature".into()), t0()).await.unwrap();
        let joins = race_begin(&store, &name);
        let mut started = 0;
        for j in joins {
            if let BeginFile::Started(f) = j.await.unwrap() {
                started += 1;
                assert_eq!(f.id, ids[0]);
            }
        }
        assert_eq!(started, 1, "round {round} after failure");
    }
}

/// A 50,000-row chunk in one go, with repeats inside the chunk (the first occurrence is kept)
/// and across chunks; rejections repeated inside a chunk count once; restarting a failed file
/// clears its rejections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_chunk_counts_exactly() {
    let store = common::fresh().await;
    let a = fiscal_code(1);
    let at = datetime!(2021-01-15 10:30:00 +01:00);
    let f = match store.begin_acquirer_file(file("big.csv"), t0()).await.unwrap() {
        BeginFile::Started(f) => f,
        other => panic!("{other:?}"),
    };
    let mut rows: Vec<StoredTransaction> = (0..50_000u64)
        .map(|n| {
            if n.is_multiple_of(3) {
                stored_trx(n, n % 100, None, at)
            } else {
                stored_trx(n, n % 100, Some((&a, 1)), at)
            }
        })
        .collect();
    // Rows 10 and 11 repeat the keys of rows 0 and 1 (later lines, other contents).
    for (dup, of) in [(10usize, 0u64), (11, 1)] {
        rows[dup].dedup_key = key_of(of);
    }
    let chunk = IngestChunk {
        rows: rows.clone(),
        rejections: vec![
            Rejection { line: 50_001, field: "bin".into(), reason: "first".into() },
            Rejection { line: 50_001, field: "mcc".into(), reason: "second".into() },
            Rejection { line: 50_002, field: "pan".into(), reason: "bad".into() },
        ],
        last_line: 50_002,
        checksum: None,
    };
    let started = Instant::now();
    let out = store.ingest_chunk(f.id, chunk).await.unwrap();
    eprintln!("50,000-row chunk stored in {:?}", started.elapsed());
    // Rows 10 and 11 (the repeats) are eligible ones: every multiple of 3 is a new ineligible row.
    let ineligible = (0..50_000u64).filter(|n| n.is_multiple_of(3)).count() as u64;
    assert_eq!(out, ChunkOutcome { accepted: 49_998 - ineligible, ineligible, duplicates: 2 });
    // The first of two identical keys won: line 0, not line 10.
    let card0 = store.instrument_transactions(&rows[0].hpan).await.unwrap();
    assert_eq!(card0.iter().find(|t| t.dedup_key == key_of(0)).unwrap().line, 0);
    assert!(!card0.iter().any(|t| t.line == 10));
    // Again, overlapping: everything already stored is a duplicate, the new row is not.
    let again = IngestChunk {
        rows: vec![rows[5].clone(), rows[6].clone(), stored_trx(60_000, 1, Some((&a, 1)), at)],
        rejections: vec![Rejection { line: 50_002, field: "pan".into(), reason: "bad".into() }],
        last_line: 10,
        checksum: Some("#sha256sum:x".into()),
    };
    assert_eq!(
        store.ingest_chunk(f.id, again).await.unwrap(),
        ChunkOutcome { accepted: 1, ineligible: 0, duplicates: 2 }
    );
    let now = store.get_acquirer_file("big.csv").await.unwrap().unwrap();
    assert_eq!(now.last_line, 50_002, "progress never goes back");
    assert_eq!(now.checksum.as_deref(), Some("#sha256sum:x"));
    assert_eq!(now.counts, FileCounts { accepted: 49_998 - ineligible + 1, ineligible, duplicates: 4, rejected: 2 });
    let rej = store.file_rejections(f.id, 10).await.unwrap();
    assert_eq!(rej.len(), 2);
    assert_eq!(rej[0].reason, "first", "the first report of a line is kept");
    assert_eq!(store.file_rejections(f.id, 1).await.unwrap().len(), 1);
    // Oldest first, ties in ingestion order.
    let mine = store.citizen_transactions(&a).await.unwrap();
    assert_eq!(mine.len() as u64, 49_998 - ineligible + 1);
    assert!(mine.windows(2).all(|w| (w[0].at, w[0].line) <= (w[1].at, w[1].line)));
    // Restarting after a failure clears the report.
    store.finish_acquirer_file(f.id, Some("late failure".into()), t0()).await.unwrap();
    assert!(matches!(store.begin_acquirer_file(file("big.csv"), t0()).await.unwrap(), BeginFile::Started(_)));
    assert!(store.file_rejections(f.id, 10).await.unwrap().is_empty());
}

/// Two files carrying the same rows in opposite orders, ingested at the same time: no deadlock,
/// no error, and every key is counted once as new and once as a duplicate overall.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_chunks_in_parallel() {
    let store: Arc<PgStore> = common::fresh().await;
    let at = datetime!(2021-01-15 10:30:00 UTC);
    for round in 0..5u64 {
        let base = round * 10_000;
        let rows: Vec<_> = (base..base + 2_000).map(|n| stored_trx(n, n % 7, None, at)).collect();
        let mut reversed = rows.clone();
        reversed.reverse();
        let mut joins = Vec::new();
        for (i, rows) in [rows, reversed].into_iter().enumerate() {
            let s = store.clone();
            joins.push(tokio::spawn(async move {
                let f = match s.begin_acquirer_file(file(&format!("f{round}.{i}")), t0()).await.unwrap() {
                    BeginFile::Started(f) => f,
                    other => panic!("{other:?}"),
                };
                let chunk = IngestChunk { rows, rejections: vec![], last_line: 2_000, checksum: None };
                s.ingest_chunk(f.id, chunk).await.unwrap()
            }));
        }
        let (x, y) = (joins.remove(0).await.unwrap(), joins.remove(0).await.unwrap());
        assert_eq!(x.ineligible + y.ineligible, 2_000, "round {round}: {x:?} {y:?}");
        assert_eq!(x.duplicates + y.duplicates, 2_000, "round {round}: {x:?} {y:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirer_offset_and_fields_round_trip() {
    let store = common::fresh().await;
    let a = fiscal_code(2);
    let f = match store.begin_acquirer_file(file("tz.csv"), t0()).await.unwrap() {
        BeginFile::Started(f) => f,
        other => panic!("{other:?}"),
    };
    let instants: [OffsetDateTime; 3] = [
        datetime!(2021-01-15 10:30:00.123456 +05:45),
        datetime!(2021-01-15 10:30:00.5 -03:30),
        datetime!(2021-01-15 10:30:00 +00:00:30),
    ];
    let mut rows: Vec<_> =
        instants.iter().enumerate().map(|(i, &at)| stored_trx(i as u64, 7, Some((&a, 0)), at)).collect();
    rows[0].par = Some("PAR123".into());
    rows[0].circuit_type = 255;
    rows[0].pos_type = Some(1);
    rows[1].amount_cents = 0;
    let out = store
        .ingest_chunk(f.id, IngestChunk { rows: rows.clone(), rejections: vec![], last_line: 3, checksum: None })
        .await
        .unwrap();
    assert_eq!(out.accepted, 3);
    let mut mine = store.citizen_transactions(&a).await.unwrap();
    mine.sort_by_key(|t| t.line);
    assert_eq!(mine, rows);
    for (t, at) in mine.iter().zip(instants) {
        assert_eq!(t.at.offset(), at.offset());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_file_is_an_error() {
    let store = common::fresh().await;
    let chunk = IngestChunk { rows: vec![stored_trx(1, 1, None, t0())], ..Default::default() };
    assert!(matches!(store.ingest_chunk(424_242, chunk).await, Err(StoreError::Other(_))));
    assert!(matches!(store.finish_acquirer_file(424_242, None, t0()).await, Err(StoreError::Other(_))));
    assert!(store.instrument_transactions(&stored_trx(1, 1, None, t0()).hpan).await.unwrap().is_empty());
}

/// Rows are inserted in key order (lock order), but their ids follow the chunk: transactions at
/// the same instant come back in the order they were sent, as in SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_instant_keeps_chunk_order() {
    let store = common::fresh().await;
    let a = fiscal_code(3);
    let at = datetime!(2021-01-15 10:30:00 UTC);
    let f = match store.begin_acquirer_file(file("order.csv"), t0()).await.unwrap() {
        BeginFile::Started(f) => f,
        other => panic!("{other:?}"),
    };
    // Keys descend while the chunk goes on: key order is the reverse of chunk order.
    let rows: Vec<_> = (0..200u64).rev().map(|n| stored_trx(n, 9, Some((&a, 1)), at)).collect();
    let chunk = IngestChunk { rows: rows.clone(), rejections: vec![], last_line: 200, checksum: None };
    store.ingest_chunk(f.id, chunk).await.unwrap();
    assert_eq!(store.citizen_transactions(&a).await.unwrap(), rows);
    assert_eq!(store.instrument_transactions(&rows[0].hpan).await.unwrap(), rows);
}

/// Two nodes on one database, each with its own claims (migration 0007): a file being ingested
/// by one is refused to the other (Busy) while the lease runs; once the first stops renewing
/// (it died), the second takes the file over and resumes it after the last committed line, and
/// the first, should it come back, stores nothing more of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_file_is_taken_over_after_its_lease() {
    let db = cashback_store_postgres::testing::TestDatabase::create("cashback_test_").await;
    let lease = std::time::Duration::from_millis(1500);
    let opts = || cashback_store_postgres::PgOptions { file_lease: lease, ..Default::default() };
    let a = PgStore::connect(&db.url, opts()).await.unwrap();
    let b = PgStore::connect(&db.url, opts()).await.unwrap();
    let name = "CSTAR.12345.TRNLOG.20210116.010000.001.csv";
    let BeginFile::Started(f) = a.begin_acquirer_file(file(name), t0()).await.unwrap() else { panic!("started") };
    let chunk = |first: u64, last_line: u64| IngestChunk {
        rows: (first..last_line).map(|n| stored_trx(n, n, None, t0())).collect(),
        rejections: vec![],
        last_line,
        checksum: None,
    };
    a.ingest_chunk(f.id, chunk(1, 10)).await.unwrap();
    // B while A's lease runs: refused, retry later.
    match b.begin_acquirer_file(file(name), t0()).await {
        Err(StoreError::Busy(m)) => assert!(m.contains("another node"), "{m}"),
        other => panic!("expected Busy, got {other:?}"),
    }
    // A renews by storing chunks; then it "dies" (stops) and the lease runs out.
    a.ingest_chunk(f.id, chunk(10, 20)).await.unwrap();
    tokio::time::sleep(lease + std::time::Duration::from_millis(300)).await;
    let BeginFile::Resume(r) = b.begin_acquirer_file(file(name), t0()).await.unwrap() else { panic!("resume") };
    assert_eq!((r.id, r.last_line, r.counts.ineligible), (f.id, 20, 19));
    // A comes back: its chunk and its finish are refused, nothing of them stored.
    match a.ingest_chunk(f.id, chunk(20, 30)).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("taken over"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(a.finish_acquirer_file(f.id, None, t0()).await, Err(StoreError::Unavailable(_))));
    // B finishes the file; A's begin now sees it done.
    b.ingest_chunk(f.id, chunk(19, 25)).await.unwrap();
    let done = b.finish_acquirer_file(f.id, None, t0()).await.unwrap();
    assert_eq!(
        (done.status, done.last_line, done.counts.ineligible, done.counts.duplicates),
        (FileStatus::Done, 25, 24, 1)
    );
    assert!(matches!(a.begin_acquirer_file(file(name), t0()).await.unwrap(), BeginFile::AlreadyDone(_)));
    a.close().await;
    b.close().await;
    db.drop_now().await;
}
