//! `cashback simulate` on the real binary: a programme of 100,000 citizens over 30 days, enrolled
//! and paid through the API, closed, and every citizen's cashback, count, rank and award compared
//! with the reference model (the command fails on any mismatch). `CASHBACK_SIM_CITIZENS` makes it
//! smaller for a quick local run.

mod common;

use std::time::Duration;

use common::{TestDb, run_bin};
use serde_json::Value;

#[tokio::test]
async fn a_simulated_programme_matches_the_reference_model() {
    let citizens = std::env::var("CASHBACK_SIM_CITIZENS").unwrap_or_else(|_| "100000".into());
    let db = TestDb::sqlite();
    let file = db.dir.path().join("sim.db");
    let args = ["simulate", "--file", file.to_str().unwrap(), "--citizens", &citizens, "--days", "30", "--seed", "7"];
    let (status, out, err) = run_bin(
        args.iter().map(|s| s.to_string()).collect(),
        vec![("RUST_LOG".into(), "warn,cashback::simulate=info".into())],
        db.dir.path().to_path_buf(),
        Duration::from_secs(1800),
    )
    .await;
    let tail: String = err.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(status.success(), "simulate failed:\n{out}\n{tail}");
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).expect("a JSON report");
    assert_eq!(report["mismatches"], 0, "{report}");
    assert_eq!(report["citizens"].as_u64().unwrap().to_string(), citizens);
    assert_eq!(report["owedCents"], report["expectedOwedCents"], "{report}");
    assert!(report["eligibleRows"].as_u64().unwrap() > 10 * report["citizens"].as_u64().unwrap(), "{report}");
    assert!(report["superCashbackWinners"].as_u64().unwrap() > 0, "{report}");
    assert!(report["byIssuer"].as_u64().unwrap() > 0, "{report}");
}
