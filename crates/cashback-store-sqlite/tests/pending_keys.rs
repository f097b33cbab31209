//! SQLite keeps the dedup keys of files still being ingested in the writer's memory (migration
//! 0004): they must survive a restart, catch duplicates across files in flight, and leave no trace
//! of a refused file.

use cashback_store::testkit::{stored_trx, t0};
use cashback_store::{BeginFile, ChunkOutcome, IngestChunk, NewAcquirerFile, Store};
use cashback_store_sqlite::{SqliteOptions, SqliteStore};

fn file(name: &str) -> NewAcquirerFile {
    NewAcquirerFile { name: name.into(), abi: "12345".into(), size: 1, sha256: "ab".repeat(32) }
}

fn chunk(ns: &[u64], last_line: u64) -> IngestChunk {
    IngestChunk {
        rows: ns.iter().map(|&n| stored_trx(n, n, None, t0())).collect(),
        rejections: vec![],
        last_line,
        checksum: None,
    }
}

fn id(b: BeginFile) -> i64 {
    match b {
        BeginFile::Started(f) | BeginFile::Resume(f) | BeginFile::AlreadyDone(f) => f.id,
    }
}

fn opts() -> SqliteOptions {
    SqliteOptions { synchronous_full: false, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_files_in_flight_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let a_name = "CSTAR.12345.TRNLOG.20210116.010000.001.csv";
    let b_name = "CSTAR.12345.TRNLOG.20210116.010000.002.csv";
    {
        let s = SqliteStore::open(&path, opts()).unwrap();
        let a = id(s.begin_acquirer_file(file(a_name), t0()).await.unwrap());
        let out = s.ingest_chunk(a, chunk(&[1, 2, 3, 2], 4)).await.unwrap();
        assert_eq!(out, ChunkOutcome { accepted: 0, ineligible: 3, duplicates: 1 });
        let b = id(s.begin_acquirer_file(file(b_name), t0()).await.unwrap());
        // Rows of file A (still PROCESSING) count once, from another file too.
        let out = s.ingest_chunk(b, chunk(&[3, 4], 2)).await.unwrap();
        assert_eq!(out, ChunkOutcome { accepted: 0, ineligible: 1, duplicates: 1 });
        s.close().await;
    }
    // Restart: both files are still PROCESSING; their keys are rebuilt from the stored rows.
    let s = SqliteStore::open(&path, opts()).unwrap();
    let BeginFile::Resume(a) = s.begin_acquirer_file(file(a_name), t0()).await.unwrap() else { panic!("resume") };
    let out = s.ingest_chunk(a.id, chunk(&[1, 4, 5], 7)).await.unwrap();
    assert_eq!(out, ChunkOutcome { accepted: 0, ineligible: 1, duplicates: 2 });
    let done = s.finish_acquirer_file(a.id, None, t0()).await.unwrap();
    assert_eq!((done.counts.ineligible, done.counts.duplicates), (4, 3));
    // A's rows are visible by card once A is done; B's not yet.
    assert_eq!(s.instrument_transactions(&cashback_store::testkit::hpan(5)).await.unwrap().len(), 1);
    assert!(s.instrument_transactions(&cashback_store::testkit::hpan(4)).await.unwrap().is_empty());
    // Finished keys still count: a third file repeating rows of A and B.
    let c = id(s.begin_acquirer_file(file("CSTAR.12345.TRNLOG.20210116.010000.003.csv"), t0()).await.unwrap());
    let out = s.ingest_chunk(c, chunk(&[1, 4, 6], 3)).await.unwrap();
    assert_eq!(out, ChunkOutcome { accepted: 0, ineligible: 1, duplicates: 2 });
    // Refusing B removes its rows and keys: its row 4 may come again.
    let b = s.get_acquirer_file(b_name).await.unwrap().unwrap();
    s.finish_acquirer_file(b.id, Some("bad".into()), t0()).await.unwrap();
    let b = id(s.begin_acquirer_file(file(b_name), t0()).await.unwrap());
    let out = s.ingest_chunk(b, chunk(&[4], 1)).await.unwrap();
    assert_eq!(out, ChunkOutcome { accepted: 0, ineligible: 1, duplicates: 0 });
    s.close().await;
}
