//! Read routing to a REAL streaming replica (issue 6), on the real binary.
//!
//! `scripts/pg-replica.sh start` makes (once) and starts a second local PostgreSQL cluster with
//! `pg_basebackup -R` from the local primary, on 127.0.0.1:5433 (`CASHBACK_TEST_PG_REPLICA_PORT`).
//! A node runs with `--database-replica` on it. Replay is then PAUSED on the replica, and a new
//! acquirer file and a new card are stored: the transaction list (a lag-tolerant read) still
//! shows the replica's older state — so it is served there — while the card, the citizen's total
//! and rank (read-your-writes paths) are already the new ones, from the primary. Once replay
//! resumes, the list catches up. The replica's `pg_stat_activity` shows the node's sessions.
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test replica`
//! (as root or postgres: the script starts the replica with pg_ctl as the postgres user).

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Opts, Server, TestDb, adult, new_hpan};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

const ABI: &str = "12345";
const PERIOD: i64 = 90;

fn replica_port() -> u16 {
    std::env::var("CASHBACK_TEST_PG_REPLICA_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5433)
}

/// Start the replica (idempotent); panics with the script's output when it cannot.
fn start_replica() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-replica.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("start")
        .env("REPLICA_PORT", replica_port().to_string())
        .output()
        .expect("running scripts/pg-replica.sh");
    assert!(
        out.status.success(),
        "scripts/pg-replica.sh start failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `url` (on the primary) moved to the replica's port.
fn on_replica(url: &str) -> String {
    let u = url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", replica_port()), 1);
    assert_ne!(u, url, "the test database URL must be on 127.0.0.1:5432: {url}");
    u
}

/// Resumes replay when dropped, whatever happened: a replica left paused would keep every later
/// run's reads in the past.
struct ResumeReplay(u16);

impl Drop for ResumeReplay {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &self.0.to_string(), "-U", "postgres", "-d", "postgres", "-Atqc"])
            .arg("select pg_wal_replay_resume()")
            .output();
    }
}

/// Wait until the replica has replayed everything the primary has written so far.
async fn wait_replayed(primary: &mut PgConnection, replica: &mut PgConnection) {
    let target: String =
        sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&mut *primary).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(&target)
            .fetch_one(&mut *replica)
            .await
            .unwrap();
        if caught_up {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not replay up to {target} within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn line(hpan: &str, id: &str, at: OffsetDateTime, cents: u32) -> String {
    let at = at.format(&time::format_description::well_known::Rfc3339).unwrap();
    format!("{ABI};00;01;{hpan};{at};{id};ISS{id};;{cents};978;ACQ1;M1;T1;40236010;5411\n")
}

fn ids(list: &Value) -> Vec<String> {
    let mut v: Vec<String> =
        list.as_array().unwrap().iter().map(|t| t["idTrxAcquirer"].as_str().unwrap().to_owned()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_tolerant_reads_go_to_the_replica_and_own_writes_stay_on_the_primary() {
    start_replica();
    let db = Arc::new(TestDb::postgres().await);
    let replica_url = on_replica(&db.url);
    // The new database reaches the replica by replication.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut replica = loop {
        match PgConnection::connect(&replica_url).await {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "the test database never reached the replica: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut primary = PgConnection::connect(&db.url).await.unwrap();
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(&mut replica).await.unwrap();
    assert!(in_recovery, "{replica_url} must be a standby");

    let today = OffsetDateTime::now_utc().date();
    let days = |n: i64| (today + time::Duration::days(n)).to_string();
    db.admin(&["period-set", "--id", "90", "--start", &days(-30), "--end", &days(30), "--min-transactions", "2"]).await;
    let srv = Server::start(db.clone(), Opts::dev().arg("--database-replica").arg(&replica_url)).await;
    assert!(srv.log().contains("read replica connected"), "{}", srv.log());
    let acq = srv.credential("acquirer", ABI).await;

    let cf = adult("REPLIC");
    let token = srv.login(&cf).await;
    srv.io(Method::PUT, "/bpd/io/citizen/v2", &token, Some(json!({}))).await.expect(200);
    let card = new_hpan("replica-1");
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{card}"), &token, None).await.expect(200);
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::seconds(5);
    let m = |n: i64| base + time::Duration::minutes(n);
    let file1: String = (0..3).map(|i| line(&card, &format!("R1-{i}"), m(i), 1_000)).collect();
    let report = srv.upload_acquirer_file(&acq, "CSTAR.12345.TRNLOG.20261120.101010.001.csv", file1.into()).await;
    assert_eq!(report["accepted"], 3, "{report}");
    wait_replayed(&mut primary, &mut replica).await;
    let list_path = format!("/bpd/io/winning-transactions?awardPeriodId={PERIOD}");
    let list = srv.io(Method::GET, &list_path, &token, None).await.json_with(200);
    assert_eq!(ids(&list), ["R1-0", "R1-1", "R1-2"]);

    // The node's lag-tolerant reads run on the replica.
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cashback-reads'",
    )
    .fetch_one(&mut replica)
    .await
    .unwrap();
    assert!(sessions > 0, "no cashback-reads session on the replica");
    let on_primary: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'cashback-reads'",
    )
    .fetch_one(&mut primary)
    .await
    .unwrap();
    assert_eq!(on_primary, 0, "the replica pool must not connect to the primary");

    // ---- the replica stops replaying: it lags ----
    let _resume = ResumeReplay(replica_port());
    sqlx::query("SELECT pg_wal_replay_pause()").execute(&mut replica).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, String>("SELECT pg_get_wal_replay_pause_state()")
        .fetch_one(&mut replica)
        .await
        .unwrap()
        != "paused"
    {
        assert!(Instant::now() < deadline, "replay did not pause");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let file2: String = (3..5).map(|i| line(&card, &format!("R1-{i}"), m(i), 2_000)).collect();
    let report = srv.upload_acquirer_file(&acq, "CSTAR.12345.TRNLOG.20261120.101010.002.csv", file2.into()).await;
    assert_eq!(report["accepted"], 2, "{report}");
    let card2 = new_hpan("replica-2");
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{card2}"), &token, None).await.expect(200);

    // Read-your-writes paths: the primary's state at once.
    let cards = srv.io(Method::GET, "/bpd/io/payment-instruments", &token, None).await.json_with(200);
    let mut listed: Vec<&str> = cards.as_array().unwrap().iter().map(|c| c["hpan"].as_str().unwrap()).collect();
    listed.sort();
    let mut want = vec![card.as_str(), card2.as_str()];
    want.sort();
    assert_eq!(listed, want, "the new card is listed at once");
    srv.io(Method::GET, &format!("/bpd/io/payment-instruments/{card2}"), &token, None).await.expect(200);
    let total = srv
        .io(Method::GET, &format!("/bpd/io/winning-transactions/total-cashback?awardPeriodId={PERIOD}"), &token, None)
        .await
        .json_with(200);
    assert_eq!(total, json!({"totalCashback": 7, "transactionNumber": 5}), "totals come from the primary");
    let rank = srv
        .io(Method::GET, &format!("/bpd/io/citizen/v2/ranking?awardPeriodId={PERIOD}"), &token, None)
        .await
        .json_with(200);
    assert_eq!(rank[0]["transactionNumber"], 5, "the rank catches up on the primary: {rank}");

    // The lag-tolerant read: still the replica's state (proof that it is served there).
    let list = srv.io(Method::GET, &list_path, &token, None).await.json_with(200);
    assert_eq!(ids(&list), ["R1-0", "R1-1", "R1-2"], "the list is read on the paused replica");

    // ---- replay resumes: the list catches up ----
    sqlx::query("SELECT pg_wal_replay_resume()").execute(&mut replica).await.unwrap();
    wait_replayed(&mut primary, &mut replica).await;
    let list = srv.io(Method::GET, &list_path, &token, None).await.json_with(200);
    assert_eq!(ids(&list), ["R1-0", "R1-1", "R1-2", "R1-3", "R1-4"]);

    drop(srv);
    replica.close().await.ok();
    primary.close().await.ok();
    db.cleanup().await;
}
