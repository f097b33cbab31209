//! End-to-end tests of the web console's read endpoints on the real binary, on SQLite and
//! PostgreSQL: the citizen's own instruments (`GET /bpd/io/payment-instruments`), and the
//! operators' programme figures (gap-filled days, parameter errors), acquirer files and a file's
//! rejected lines, and the ranking history the server records by itself (a snapshot as soon as
//! the rankings are loaded, then every `console.snapshot_interval_secs`); operator endpoints
//! refuse citizens' tokens (401) and other kinds of API key (403).
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test console`

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ApiKey, Backend, Opts, Resp, Server, TestDb, adult, new_hpan};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

const ABI: &str = "12345";
const PERIOD: i64 = 95;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// One acquirer row (E1 layout): a payment of `cents` on `hpan` at `at`, with this BIN.
fn row(id: &str, hpan: &str, at: OffsetDateTime, cents: i64, bin: &str) -> String {
    format!("{ABI};00;01;{hpan};{};{id};ISS{id};;{cents};978;ACQ1;M1;T-{id};{bin};5411", rfc3339(at))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn ops(srv: &Server, key: &ApiKey, path: &str) -> Resp {
    srv.hb(Method::GET, path, key, None).await
}

async fn scenario(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let today = OffsetDateTime::now_utc().date();
    let days = |n: i64| (today + time::Duration::days(n)).to_string();
    db.admin(&[
        "period-set",
        "--id",
        &PERIOD.to_string(),
        "--start",
        &days(-10),
        "--end",
        &days(30),
        "--min-transactions",
        "1",
        "--super-cashback-positions",
        "2",
    ])
    .await;
    let config = db.dir.path().join("cashback.toml");
    std::fs::write(&config, "[console]\nsnapshot_interval_secs = 1\n[ranking]\nrefresh_ms = 100\n").unwrap();
    let srv = Server::start(db.clone(), Opts::dev().arg("--config").arg(config.display().to_string())).await;
    let acq = srv.credential("acquirer", ABI).await;
    let issuer = srv.credential("issuer", "BANCA1").await;
    let op = srv.credential("operator", "console").await;

    // ---- citizens and their instruments: A two cards (one deactivated), B one, C none ----
    let (cf_a, cf_b, cf_c) = (adult("CONSA"), adult("CONSB"), adult("CONSC"));
    let (ta, tb, tc) = (srv.login(&cf_a).await, srv.login(&cf_b).await, srv.login(&cf_c).await);
    for t in [&ta, &tb, &tc] {
        srv.io(Method::PUT, "/bpd/io/citizen/v2", t, Some(json!({}))).await.expect(200);
    }
    let (ha1, ha2, hb) = (new_hpan("cons-a1"), new_hpan("cons-a2"), new_hpan("cons-b"));
    for (t, h) in [(&ta, &ha1), (&ta, &ha2), (&tb, &hb)] {
        srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{h}"), t, None).await.expect(200);
    }
    srv.io(Method::DELETE, &format!("/bpd/io/payment-instruments/{ha1}"), &ta, None).await.expect(204);

    let mine = srv.io(Method::GET, "/bpd/io/payment-instruments", &ta, None).await.json_with(200);
    let list = mine.as_array().unwrap();
    assert_eq!(list.len(), 2, "{mine}");
    assert_eq!((&list[0]["hpan"], &list[0]["status"]), (&json!(ha2), &json!("ACTIVE")), "newest activation first");
    assert_eq!(keys(&list[0]), set(&["hpan", "status", "channel", "activationDate"]), "{mine}");
    assert_eq!(list[0]["channel"], "app-io-channel");
    common::assert_utc_timestamp(&list[0]["activationDate"], "activationDate");
    assert_eq!((&list[1]["hpan"], &list[1]["status"]), (&json!(ha1), &json!("INACTIVE")));
    assert_eq!(keys(&list[1]), set(&["hpan", "status", "channel", "activationDate", "deactivationDate"]));
    common::assert_utc_timestamp(&list[1]["deactivationDate"], "deactivationDate");
    // The same format as the single-instrument resource.
    let one = srv.io(Method::GET, &format!("/bpd/io/payment-instruments/{ha1}"), &ta, None).await.json_with(200);
    assert_eq!(
        (&one["activationDate"], &one["deactivationDate"]),
        (&list[1]["activationDate"], &list[1]["deactivationDate"])
    );
    // Each citizen sees only their own.
    let theirs = srv.io(Method::GET, "/bpd/io/payment-instruments", &tb, None).await.json_with(200);
    assert_eq!(theirs.as_array().unwrap().iter().map(|i| &i["hpan"]).collect::<Vec<_>>(), vec![&json!(hb)]);
    assert_eq!(srv.io(Method::GET, "/bpd/io/payment-instruments", &tc, None).await.json_with(200), json!([]));
    srv.send(srv.req(Method::GET, "/bpd/io/payment-instruments")).await.expect(401);
    srv.io(Method::GET, "/bpd/io/payment-instruments", "not-a-token", None).await.expect(401);

    // ---- an acquirer file: two payments on A's active card, one malformed line ----
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::seconds(5);
    let body = [
        row("C-P1", &ha2, base + time::Duration::minutes(1), 2_000, "40236010"),
        row("C-P2", &ha2, base + time::Duration::minutes(2), 3_000, "40236010"),
        row("C-P3", &ha2, base + time::Duration::minutes(3), 3_000, "12"),
    ]
    .join("\n")
        + "\n";
    let name = "CSTAR.12345.TRNLOG.20261120.101010.001.csv";
    let report = srv.upload_acquirer_file(&acq, name, body.into_bytes()).await;
    assert_eq!((&report["accepted"], &report["rejected"]), (&json!(2), &json!(1)), "{report}");

    let files = ops(&srv, &op, "/bpd/ops/files").await.json_with(200);
    assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
    let f = &files[0];
    assert_eq!(keys(f), set(&["name", "abi", "status", "size", "sha256", "receivedAt", "finishedAt", "counts"]), "{f}");
    assert_eq!((&f["name"], &f["abi"], &f["status"]), (&json!(name), &json!(ABI), &json!("DONE")));
    assert_eq!(f["counts"], json!({"accepted": 2, "ineligible": 0, "duplicates": 0, "rejected": 1}));
    common::assert_utc_timestamp(&f["receivedAt"], "receivedAt");
    assert_eq!(ops(&srv, &op, "/bpd/ops/files?abi=12345&limit=1").await.json_with(200), files);
    assert_eq!(ops(&srv, &op, "/bpd/ops/files?abi=99999").await.json_with(200), json!([]));
    ops(&srv, &op, "/bpd/ops/files?abi=1").await.problem(400, "abi");
    ops(&srv, &op, "/bpd/ops/files?limit=501").await.problem(400, "limit");
    let detail = ops(&srv, &op, &format!("/bpd/ops/files/{name}")).await.json_with(200);
    let rejections = detail["rejections"].as_array().unwrap_or_else(|| panic!("{detail}"));
    assert_eq!(rejections.len(), 1, "{detail}");
    assert_eq!(keys(&rejections[0]), set(&["line", "field", "reason"]));
    assert_eq!((&rejections[0]["line"], &rejections[0]["field"]), (&json!(3), &json!("bin")), "{detail}");
    assert_eq!(detail["counts"], f["counts"]);
    ops(&srv, &op, "/bpd/ops/files/CSTAR.12345.TRNLOG.20261120.101010.999.csv").await.problem(404, "no file");

    // ---- programme figures: every day of the range, zeros filled ----
    let stats = ops(&srv, &op, "/bpd/ops/stats").await.json_with(200);
    assert_eq!(
        stats["totals"],
        json!({"citizens": 3, "citizensEnabled": 3, "instrumentsActive": 2, "instruments": 3, "files": 1,
            "transactions": 2})
    );
    let all_days = stats["days"].as_array().unwrap();
    assert_eq!(all_days.len(), 30, "{stats}");
    let end = time::Date::parse(
        all_days[29]["date"].as_str().unwrap(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    assert!(end == today || end == today + time::Duration::days(1), "the range ends today (UTC): {end}");
    for (i, d) in all_days.iter().enumerate() {
        assert_eq!(d["date"], json!((end - time::Duration::days(29 - i as i64)).to_string()), "consecutive days");
        assert_eq!(
            keys(d),
            set(&["date", "citizensEnrolled", "instrumentsActivated", "files", "rowsAccepted", "rowsRejected"])
        );
    }
    let sum = |k: &str| all_days.iter().map(|d| d[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        [sum("citizensEnrolled"), sum("instrumentsActivated"), sum("files"), sum("rowsAccepted"), sum("rowsRejected")],
        [3, 3, 1, 2, 1]
    );
    assert!(all_days.iter().filter(|d| d["citizensEnrolled"] == 0).count() >= 28, "gaps are zeros: {stats}");
    let three = ops(&srv, &op, &format!("/bpd/ops/stats?from={}&to={}", days(-2), days(0))).await.json_with(200);
    let dates: Vec<&Value> = three["days"].as_array().unwrap().iter().map(|d| &d["date"]).collect();
    assert_eq!(dates, vec![&json!(days(-2)), &json!(days(-1)), &json!(days(0))]);
    let past = ops(&srv, &op, "/bpd/ops/stats?from=2020-01-01&to=2020-01-03").await.json_with(200);
    assert_eq!(
        past["days"][1],
        json!({"date": "2020-01-02", "citizensEnrolled": 0, "instrumentsActivated": 0,
        "files": 0, "rowsAccepted": 0, "rowsRejected": 0})
    );
    assert_eq!(
        ops(&srv, &op, "/bpd/ops/stats?from=2020-01-01&to=2020-12-31").await.json_with(200)["days"]
            .as_array()
            .unwrap()
            .len(),
        366
    );
    let bad = ops(&srv, &op, "/bpd/ops/stats?from=2021-13-01").await.problem(400, "from");
    assert_eq!(bad["field"], "from");
    assert_eq!(ops(&srv, &op, "/bpd/ops/stats?to=tomorrow").await.problem(400, "to")["field"], "to");
    assert_eq!(
        ops(&srv, &op, "/bpd/ops/stats?from=2021-01-02&to=2021-01-01").await.problem(400, "from")["field"],
        "from"
    );
    assert_eq!(ops(&srv, &op, "/bpd/ops/stats?from=2020-01-01&to=2021-01-01").await.problem(400, "366")["field"], "to");

    // ---- the ranking history: recorded by the server itself, today's snapshot kept current ----
    let history_path = format!("/bpd/ops/award-periods/{PERIOD}/ranking/history");
    let started = Instant::now();
    let history = loop {
        let h = ops(&srv, &op, &history_path).await.json_with(200);
        if h.as_array().is_some_and(|a| a.last().is_some_and(|d| d["participants"] == 1)) {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no snapshot with A ranked: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let snaps = history.as_array().unwrap();
    assert_eq!(snaps.len(), 1, "one snapshot per day: {history}");
    assert_eq!(
        snaps[0],
        json!({"date": snaps[0]["date"].as_str().unwrap(), "participants": 1, "countAtN": 2, "topCount": 2, "awarded": 1})
    );
    assert!([days(0), days(1)].contains(&snaps[0]["date"].as_str().unwrap().to_owned()), "{history}");
    ops(&srv, &op, "/bpd/ops/award-periods/4242/ranking/history").await.problem(404, "awardPeriodId");
    ops(&srv, &op, "/bpd/ops/award-periods/x/ranking/history").await.problem(400, "awardPeriodId");

    // ---- payout files: none before a close ----
    assert_eq!(ops(&srv, &op, "/bpd/ops/payout-files").await.json_with(200), json!([]));
    ops(&srv, &op, "/bpd/ops/payout-files?limit=0").await.problem(400, "limit");

    // ---- only operators: a citizen's token is no API key (401), an issuer's key is not an
    // operator's (403) ----
    // The award periods, as the IO v2 list (the console's period picker).
    let periods = ops(&srv, &op, "/bpd/ops/award-periods").await.json_with(200);
    let listed: Vec<i64> = periods.as_array().unwrap().iter().map(|p| p["awardPeriodId"].as_i64().unwrap()).collect();
    assert!(listed.contains(&0) && listed.len() >= 4, "{periods}");

    for path in [
        "/bpd/ops/award-periods",
        "/bpd/ops/stats",
        "/bpd/ops/files",
        &format!("/bpd/ops/files/{name}"),
        &history_path,
        "/bpd/ops/payout-files",
    ] {
        srv.io(Method::GET, path, &ta, None).await.problem(401, "Ocp-Apim-Subscription-Key");
        ops(&srv, &issuer, path).await.problem(403, "issuer");
        ops(&srv, &acq, path).await.problem(403, "acquirer");
    }

    let doc = srv.send(srv.req(Method::GET, "/openapi.json")).await.json_with(200);
    for p in [
        "/bpd/io/payment-instruments",
        "/bpd/ops/award-periods",
        "/bpd/ops/stats",
        "/bpd/ops/files",
        "/bpd/ops/files/{name}",
        "/bpd/ops/award-periods/{awardPeriodId}/ranking/history",
        "/bpd/ops/payout-files",
    ] {
        assert!(doc["paths"].get(p).is_some(), "OpenAPI: {p} missing");
    }
    drop(srv);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_postgres() {
    scenario(Backend::Postgres).await;
}
