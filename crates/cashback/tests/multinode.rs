//! Several `cashback serve` nodes on one PostgreSQL database (issue 6), on the real binary.
//!
//! Three nodes share a fresh database. Citizens and their cards are enrolled through all three
//! at once, small acquirer files are uploaded to two of them at once, and a large file to the
//! third, which is killed with SIGKILL in the middle of ingesting it. The acquirer uploads that
//! file again to a surviving node: it is refused (503) while the dead node's claim on it lasts
//! (`[postgres] file_lease_secs`), then taken over and resumed after its last committed line.
//! The final state — every citizen and card, each citizen's totals, rank and transaction list,
//! the operators' ranking page and the files' reports, read from EACH surviving node, and the
//! stored rows — must equal a single-node run of the same inputs on another fresh database.
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test multinode`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ApiKey, Opts, Server, TestDb, adult, sha256_hex};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

const ABI: &str = "12345";
const PERIOD: i64 = 90;
const CITIZENS: usize = 40;
const CARDS: usize = 2;
const BIG_ROWS: usize = 60_000;
const SMALL_FILES: usize = 6;
const SMALL_ROWS: usize = 400;
/// The dead node's claim on the big file outlives it by at most this.
const LEASE_SECS: u64 = 4;

fn cf(i: usize) -> String {
    let l = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    adult(&format!("MN{}{}", l[i / 26] as char, l[i % 26] as char))
}

/// Cards are fixed per test run (both runs enroll the same ones).
fn hpans(seed: &str) -> Vec<String> {
    (0..CITIZENS * CARDS).map(|k| sha256_hex(&format!("multinode-{seed}-card-{k}"))).collect()
}

fn name(n: usize) -> String {
    format!("CSTAR.{ABI}.TRNLOG.20261120.101010.{n:03}.csv")
}

/// File `n`: rows on the enrolled cards (every 11th on a card nobody enrolled, every 13th a
/// reversal, every 37th a repeat of an earlier row, every 101st malformed), each at its own
/// millisecond after `base`, so no two citizens tie in the ranking.
fn file(n: usize, rows: usize, cards: &[String], base: OffsetDateTime) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 200);
    for i in 0..rows {
        let id = if i % 37 == 36 { i - 20 } else { i };
        let card = if id % 11 == 10 {
            sha256_hex(&format!("not-enrolled-{n}-{id}"))
        } else {
            cards[(id * 7 + n) % cards.len()].clone()
        };
        let at = base + time::Duration::milliseconds((n * 100_000 + id) as i64);
        let at = at.format(&time::format_description::well_known::Rfc3339).unwrap();
        let op = if id % 13 == 12 { "01" } else { "00" };
        let cents = 100 + (id * 37 + n) % 9_000;
        let currency = if i % 101 == 100 { "EUR" } else { "978" };
        let merchant = id % 17;
        out.push_str(&format!(
            "{ABI};{op};01;{card};{at};F{n}-{id};ISS{id};;{cents};{currency};ACQ1;M{merchant};T{merchant};40236010;5411\n"
        ));
    }
    out.into_bytes()
}

struct Inputs {
    base: OffsetDateTime,
    cards: Vec<String>,
    big: Vec<u8>,
    small: Vec<Vec<u8>>,
}

fn config(db: &TestDb) -> String {
    let path = db.dir.path().join("cashback.toml");
    std::fs::write(
        &path,
        format!(
            "[postgres]\nfile_lease_secs = {LEASE_SECS}\n[acquirer]\nchunk_rows = 1000\n\
             [ranking]\nrefresh_ms = 200\nread_wait_ms = 5000\n[scheduler]\nenabled = true\ntick_secs = 1\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn start(db: &Arc<TestDb>, cfg: &str) -> Server {
    Server::start(db.clone(), Opts::dev().arg("--config").arg(cfg)).await
}

async fn setup(db: &Arc<TestDb>) {
    let today = OffsetDateTime::now_utc().date();
    let days = |n: i64| (today + time::Duration::days(n)).to_string();
    db.admin(&[
        "period-set",
        "--id",
        &PERIOD.to_string(),
        "--start",
        &days(-30),
        "--end",
        &days(30),
        "--min-transactions",
        "5",
        "--super-cashback-positions",
        "10",
    ])
    .await;
}

/// Enroll citizen `i` and its cards on `srv`.
async fn enroll(srv: &Server, i: usize, cards: &[String]) {
    let token = srv.login(&cf(i)).await;
    srv.io(Method::PUT, "/bpd/io/citizen/v2", &token, Some(json!({}))).await.expect(200);
    for h in &cards[i * CARDS..(i + 1) * CARDS] {
        srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{h}"), &token, None).await.expect(200);
    }
}

/// Upload through the RTD API with a client of our own (the upload may be cut by a kill):
/// the status and the body, or the transport error.
async fn try_upload(base: &str, key: &ApiKey, name: &str, body: Vec<u8>) -> Result<(u16, Value), String> {
    cashback_api::tls::install_default_provider();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().unwrap();
    let sas: Value = http
        .post(format!("{base}/rtd/csv-transaction/rtd/sas"))
        .header("Ocp-Apim-Subscription-Key", &key.key)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "{base}/pagopastorage/{}/{name}?{}",
        sas["authorizedContainer"].as_str().unwrap(),
        sas["sas"].as_str().unwrap()
    );
    let r = http
        .put(url)
        .header("Ocp-Apim-Subscription-Key", &key.key)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// Upload until the answer is not a 503 (ingestion slots full, or the file held by another
/// node): what an acquirer does. Returns the answer and how many 503s of each kind came first.
async fn upload_retrying(base: &str, key: &ApiKey, name: &str, body: &[u8]) -> (u16, Value, u32, u32) {
    let (mut held, mut full) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECS + 40);
    loop {
        let (status, answer) = try_upload(base, key, name, body.to_vec()).await.expect("upload");
        if status != 503 {
            return (status, answer, held, full);
        }
        if answer["detail"].as_str().unwrap_or_default().contains("capacity") {
            full += 1;
        } else {
            held += 1;
        }
        assert!(Instant::now() < deadline, "{name}: still 503 after {held} + {full} attempts: {answer}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a node shows of the programme: each citizen (timestamps left out: the runs enroll at
/// different instants), their cards, totals, rank and transaction list, the operators' ranking
/// page and the acquirer's file reports.
async fn state(srv: &Server, op: &ApiKey, acq: &ApiKey) -> Value {
    let mut citizens = Vec::new();
    for i in 0..CITIZENS {
        let t = srv.login(&cf(i)).await;
        let mut c = srv.io(Method::GET, "/bpd/io/citizen/v2", &t, None).await.json_with(200);
        c.as_object_mut().unwrap().retain(|k, _| !k.contains("timestamp") && !k.contains("Date"));
        let mut cards: Vec<Value> = srv
            .io(Method::GET, "/bpd/io/payment-instruments", &t, None)
            .await
            .json_with(200)
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(cards.len(), CARDS);
        for card in &mut cards {
            card.as_object_mut().unwrap().retain(|k, _| !k.contains("Date") && !k.contains("At"));
        }
        cards.sort_by_key(|c| c.to_string());
        let q = format!("awardPeriodId={PERIOD}");
        let total = srv
            .io(Method::GET, &format!("/bpd/io/winning-transactions/total-cashback?{q}"), &t, None)
            .await
            .json_with(200);
        let rank = srv.io(Method::GET, &format!("/bpd/io/citizen/v2/ranking?{q}"), &t, None).await.json_with(200);
        let list = srv.io(Method::GET, &format!("/bpd/io/winning-transactions?{q}"), &t, None).await.json_with(200);
        citizens.push(json!({"citizen": c, "cards": cards, "total": total, "rank": rank, "transactions": list}));
    }
    let mut ranking = srv
        .hb(Method::GET, &format!("/bpd/ops/award-periods/{PERIOD}/ranking?top=1000"), op, None)
        .await
        .json_with(200);
    // Citizen numbers follow the order of first enrollment, which concurrent enrollments on
    // three nodes do not keep: everything else must match.
    for t in ranking["top"].as_array_mut().unwrap() {
        t.as_object_mut().unwrap().remove("citizenId");
    }
    let mut files: Vec<Value> = srv
        .hb(Method::GET, "/rtd/file-reporter/v2/file-report", acq, None)
        .await
        .json_with(200)["filesRecentlyUploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| json!([f["name"], f["status"], f["accepted"], f["ineligible"], f["duplicates"], f["rejected"]]))
        .collect();
    files.sort_by_key(|f| f.to_string());
    json!({"citizens": citizens, "ranking": ranking, "files": files})
}

/// Rows stored, by kind, straight from the database.
async fn stored(db: &TestDb) -> (i64, i64, i64, i64) {
    let mut c = PgConnection::connect(&db.url).await.unwrap();
    let row = sqlx::query_as(
        "SELECT (SELECT count(*) FROM acquirer_transaction), \
                (SELECT count(*) FROM acquirer_transaction WHERE ineligible IS NULL), \
                (SELECT count(*) FROM file_rejection), \
                (SELECT count(*) FROM citizen_period WHERE enabled)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    c.close().await.ok();
    row
}

/// The reference: one node, everything in turn.
async fn single_node(inputs: &Inputs) -> (Value, (i64, i64, i64, i64)) {
    let db = Arc::new(TestDb::postgres().await);
    setup(&db).await;
    let cfg = config(&db);
    let srv = start(&db, &cfg).await;
    let (acq, op) = (srv.credential("acquirer", ABI).await, srv.credential("operator", "ops").await);
    for i in 0..CITIZENS {
        enroll(&srv, i, &inputs.cards).await;
    }
    srv.upload_acquirer_file(&acq, &name(1), inputs.big.clone()).await;
    for (k, body) in inputs.small.iter().enumerate() {
        srv.upload_acquirer_file(&acq, &name(k + 2), body.clone()).await;
    }
    let out = (state(&srv, &op, &acq).await, stored(&db).await);
    drop(srv);
    db.cleanup().await;
    out
}

/// Progress of the big file, read from the database while a node ingests it.
async fn big_file_progress(c: &mut PgConnection) -> Option<(i64, String, Option<String>)> {
    sqlx::query_as("SELECT last_line, status, claimed_by FROM acquirer_file WHERE name = $1")
        .bind(name(1))
        .fetch_optional(c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_one_killed_mid_file_end_like_one_node() {
    let started = Instant::now();
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::minutes(10);
    let cards = hpans(&format!("{}", base.unix_timestamp()));
    let inputs = Inputs {
        base,
        big: file(1, BIG_ROWS, &cards, base),
        small: (0..SMALL_FILES).map(|k| file(k + 2, SMALL_ROWS, &cards, base)).collect(),
        cards,
    };
    assert!(inputs.base > OffsetDateTime::now_utc());
    let (want, want_rows) = single_node(&inputs).await;
    let reference_secs = started.elapsed().as_secs_f64();

    // ---- three nodes on one database ----
    let db = Arc::new(TestDb::postgres().await);
    setup(&db).await;
    let cfg = config(&db);
    let nodes = Arc::new([start(&db, &cfg).await, start(&db, &cfg).await, start(&db, &cfg).await]);
    let (acq, op) = (nodes[0].credential("acquirer", ABI).await, nodes[0].credential("operator", "ops").await);

    // Enrollments through all three nodes at once (citizen i on node i % 3).
    let mut joins = Vec::new();
    for n in 0..3 {
        let (nodes, cards) = (nodes.clone(), inputs.cards.clone());
        joins.push(tokio::spawn(async move {
            for i in (n..CITIZENS).step_by(3) {
                enroll(&nodes[n], i, &cards).await;
            }
        }));
    }
    for j in joins {
        j.await.unwrap();
    }

    // The big file goes to node 2; the small ones to nodes 0 and 1 meanwhile.
    let victim_base = nodes[2].base.clone();
    let (key, big) = (acq.clone(), inputs.big.clone());
    let cut = tokio::spawn(async move { try_upload(&victim_base, &key, &name(1), big).await });
    let mut joins = Vec::new();
    for (k, body) in inputs.small.iter().enumerate() {
        let (base, key, body) = (nodes[k % 2].base.clone(), acq.clone(), body.clone());
        joins.push(tokio::spawn(async move { upload_retrying(&base, &key, &name(k + 2), &body).await }));
    }
    // Kill node 2 (SIGKILL) once a fifth of the big file is stored.
    let mut pg = PgConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        if let Some((line, status, _)) = big_file_progress(&mut pg).await
            && line >= (BIG_ROWS / 5) as i64
        {
            assert_eq!(status, "PROCESSING", "the big file finished before the kill");
            break line;
        }
        assert!(!cut.is_finished(), "the big upload ended before the kill: {:?}", cut.await);
        assert!(Instant::now() < deadline, "no progress on the big file within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let st = std::process::Command::new("kill").arg("-KILL").arg(nodes[2].pid().to_string()).status().unwrap();
    assert!(st.success());
    let cut = cut.await.unwrap();
    assert!(cut.is_err(), "the upload to the killed node must fail: {cut:?}");
    for j in joins {
        let (status, report, _, _) = j.await.unwrap();
        assert_eq!(status, 201, "{report}");
    }
    let (line, status, holder) = big_file_progress(&mut pg).await.expect("the big file is recorded");
    assert_eq!(status, "PROCESSING");
    assert!(line >= at_kill && line < BIG_ROWS as i64, "killed at line {line}");
    assert!(holder.is_some(), "the file is claimed by the dead node");

    // The acquirer uploads the big file again, to node 0: refused while the dead node's lease
    // lasts, then taken over and resumed.
    let (status, report, refused, _) = upload_retrying(&nodes[0].base, &acq, &name(1), &inputs.big).await;
    assert_eq!(status, 201, "{report}");
    assert!(refused > 0, "the retry came within the dead node's lease: it must have been refused first");
    let (_, status, holder) = big_file_progress(&mut pg).await.unwrap();
    assert_eq!(status, "DONE");
    assert_ne!(holder, None);
    pg.close().await.ok();
    assert!(report["accepted"].as_u64().unwrap() > 0, "{report}");

    // Each surviving node shows the single node's programme (its ranking board follows the
    // change feed: give it a few refreshes).
    let got_rows = stored(&db).await;
    assert_eq!(got_rows, want_rows, "stored rows (all, eligible, rejected lines, standings)");
    for n in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = state(&nodes[n], &op, &acq).await;
            if got == want {
                break;
            }
            if Instant::now() > deadline {
                for (g, w) in got["citizens"].as_array().unwrap().iter().zip(want["citizens"].as_array().unwrap()) {
                    assert_eq!(g, w, "node {n}: a citizen differs");
                }
                assert_eq!(got["files"], want["files"], "node {n}: file reports");
                assert_eq!(got["ranking"], want["ranking"], "node {n}: ranking");
                panic!("node {n} differs");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // The reference is not trivial.
    let files = want["files"].as_array().unwrap();
    assert_eq!(files.len(), 1 + SMALL_FILES);
    assert!(files.iter().all(|f| f[1] == "DONE" && f[2].as_u64() > Some(0) && f[5].as_u64() > Some(0)), "{files:?}");
    assert!(want_rows.3 as usize >= CITIZENS * 9 / 10, "{want_rows:?}");
    eprintln!(
        "multinode: reference {reference_secs:.1} s, total {:.1} s, killed at line {at_kill}, {refused} refusals",
        started.elapsed().as_secs_f64()
    );
    drop(nodes);
    db.cleanup().await;
}
