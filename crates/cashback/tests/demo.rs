//! `cashback demo` on the real binary: it builds a fresh programme, serves it, sends its acquirer
//! files through the acquirer API, and the result is in the database: every well-formed row
//! accepted, the malformed ones reported, the Super Cashback ranking populated.

mod common;

use std::time::Duration;

use common::{TestDb, free_port, run_bin};
use serde_json::Value;

#[tokio::test]
async fn demo_loads_a_programme_and_stops() {
    let db = TestDb::sqlite();
    let file = db.dir.path().join("t.db");
    std::fs::write(&file, b"not a database: the demo must start afresh").unwrap();
    let port = free_port();
    let args = [
        "demo",
        "--file",
        file.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--citizens",
        "300",
        "--days",
        "3",
        "--no-wait",
    ];
    let (status, out, err) = run_bin(
        args.iter().map(|s| s.to_string()).collect(),
        vec![],
        db.dir.path().to_path_buf(),
        Duration::from_secs(120),
    )
    .await;
    assert!(status.success(), "demo failed:\n{out}\n{err}");
    assert!(out.contains(&format!("http://127.0.0.1:{port}/console/")), "{out}");
    assert!(out.contains("operator   API key "), "{out}");
    let summary: Value = serde_json::from_str(out.lines().last().unwrap()).expect("last line is JSON");
    let files = summary["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    let mut rows = 0;
    for f in files {
        let r = &f["report"];
        assert_eq!(r["status"], "DONE", "{f}");
        assert_eq!(r["rejected"], f["malformed"], "{f}");
        let sent = f["payments"].as_u64().unwrap() + f["reversals"].as_u64().unwrap();
        assert_eq!(r["accepted"].as_u64().unwrap() + r["ineligible"].as_u64().unwrap(), sent, "{f}");
        rows += sent;
    }
    assert!(rows > 100, "{rows} rows");

    // The server stopped; the programme is on disk.
    let ranking: Value = serde_json::from_str(&db.admin(&["ranking", "--period", "100", "--top", "3"]).await).unwrap();
    let participants = ranking["participants"].as_u64().unwrap();
    assert!((100..=300).contains(&participants), "{ranking}");
    assert_eq!(ranking["minPosition"], 15, "5% of 300 citizens win");
}
