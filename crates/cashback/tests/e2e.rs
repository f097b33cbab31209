//! End-to-end HTTP tests of the real `cashback` binary (IO, HB and PM APIs, contract §4.2–§4.5,
//! §4.7). Every scenario in `both_backends!` runs once on SQLite and once on PostgreSQL
//! (`CASHBACK_TEST_PG_URL`, see `common`). Scenarios that need mock services or process control
//! run on SQLite only.
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test e2e`

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    ApiKey, Backend, Opts, Server, TestDb, adult, assert_absent, assert_utc_timestamp, contains_bytes, hpan_of,
    it_iban, luhn_complete, minor, new_hpan, wrong_check_char,
};
use reqwest::Method;
use serde_json::{Value, json};

const GET: Method = Method::GET;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

const IBAN: &str = "IT60X0542811101000000123456";
const VISA: &str = "4111111111111111";

/// Instantiate each `async fn scenario(srv: &Server)` twice: on SQLite and on PostgreSQL.
/// `scenario => opts` runs the server with other options than `Opts::dev()`.
macro_rules! both_backends {
    (@opts) => { crate::common::Opts::dev() };
    (@opts $opts:expr) => { $opts };
    ($($scenario:ident $(=> $opts:expr)?),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::run(crate::common::Backend::Sqlite, both_backends!(@opts $($opts)?), super::$scenario).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::run(crate::common::Backend::Postgres, both_backends!(@opts $($opts)?), super::$scenario).await;
                }
            )*
        }
    };
}

async fn run<F>(backend: Backend, opts: Opts, scenario: F)
where
    F: AsyncFnOnce(&Server),
{
    let db = Arc::new(TestDb::new(backend).await);
    let srv = Server::start(db.clone(), opts).await;
    scenario(&srv).await;
    drop(srv);
    db.cleanup().await;
}

both_backends!(
    io_citizen_lifecycle,
    bad_input_is_rejected,
    io_payment_instruments,
    instrument_enrollment_race,
    award_periods,
    hb_issuer_flow,
    payment_manager_delete,
    no_clear_pan_anywhere => crate::common::Opts::dev().env("RUST_LOG", "debug"),
);

fn payoff(iban: &str, holder_cf: &str) -> Value {
    json!({
        "payoffInstr": iban,
        "payoffInstrType": "IBAN",
        "accountHolderCF": holder_cf,
        "accountHolderName": "Mario",
        "accountHolderSurname": "Rossi"
    })
}

fn card(pan: &str, cf: &str, channel: &str) -> Value {
    json!({
        "id": pan,
        "fiscalCode": cf,
        "expireYear": "2030",
        "exprireMonth": "12",
        "issuerAbiCode": "03069",
        "brand": "VISA",
        "holder": "Mario Rossi",
        "type": "DEB",
        "channel": channel
    })
}

fn instrument_path(hpan: &str) -> String {
    format!("/bpd/io/payment-instruments/{hpan}")
}

// ---------------------------------------------------------------------------------------------
// 1. IO citizen
// ---------------------------------------------------------------------------------------------

async fn io_citizen_lifecycle(srv: &Server) {
    let cf = adult("IOCITA");
    let tok = srv.login(&cf).await;

    srv.io(GET, "/bpd/io/citizen", &tok, None).await.problem(404, "citizen");
    srv.io(GET, "/bpd/io/citizen/v2", &tok, None).await.problem(404, "citizen");

    let before = time::OffsetDateTime::now_utc();
    let c = srv.io(PUT, "/bpd/io/citizen", &tok, None).await.json_with(200);
    assert_eq!(c["enabled"], true, "{c}");
    assert_eq!(c["fiscalCode"], cf.as_str(), "{c}");
    let tc1_raw = c["timestampTC"].clone();
    let tc1 = assert_utc_timestamp(&tc1_raw, "timestampTC");
    assert!((tc1 - before).abs() < time::Duration::minutes(1), "timestampTC {tc1} should be about now ({before})");
    assert_absent(&c, "payoffInstr");
    assert_absent(&c, "payoffInstrType");

    // Already enabled: `{}` leaves the opt-in at NOREQ and the T&C timestamp as it was.
    let c = srv.io(PUT, "/bpd/io/citizen/v2", &tok, Some(json!({}))).await.json_with(200);
    assert_eq!(c["optInStatus"], "NOREQ", "{c}");
    assert_eq!(c["enabled"], true, "{c}");
    assert_eq!(c["timestampTC"], tc1_raw, "PUT on an enabled citizen must not move timestampTC: {c}");

    let c = srv.io(PUT, "/bpd/io/citizen/v2", &tok, Some(json!({"optInStatus": "ACCEPTED"}))).await.json_with(200);
    assert_eq!(c["optInStatus"], "ACCEPTED", "{c}");
    // The opt-in moves only once, from NOREQ.
    let c = srv.io(PUT, "/bpd/io/citizen/v2", &tok, Some(json!({"optInStatus": "DENIED"}))).await.json_with(200);
    assert_eq!(c["optInStatus"], "ACCEPTED", "opt-in must stay ACCEPTED: {c}");
    let c = srv.io(GET, "/bpd/io/citizen/v2", &tok, None).await.json_with(200);
    assert_eq!(c["optInStatus"], "ACCEPTED", "{c}");
    assert_eq!(c["enabled"], true, "{c}");
    assert_eq!(c["fiscalCode"], cf.as_str(), "{c}");

    let r = srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(IBAN, &cf))).await.json_with(200);
    assert_eq!(r, json!({"validationStatus": "OK"}));
    let c = srv.io(GET, "/bpd/io/citizen", &tok, None).await.json_with(200);
    assert_eq!(c["payoffInstr"], IBAN, "{c}");
    assert_eq!(c["payoffInstrType"], "IBAN", "{c}");
    let c = srv.io(GET, "/bpd/io/citizen/v2", &tok, None).await.json_with(200);
    assert_eq!(c["payoffInstr"], IBAN, "{c}");
    assert_absent(&c, "technicalAccount");

    let r = srv.io(DELETE, "/bpd/io/citizen", &tok, None).await;
    r.expect(204);
    assert!(r.body.is_empty(), "204 with a body:\n{r}");
    let c = srv.io(GET, "/bpd/io/citizen/v2", &tok, None).await.json_with(200);
    assert_eq!(c["enabled"], false, "{c}");
    assert_eq!(c["fiscalCode"], cf.as_str(), "{c}");
    assert_absent(&c, "payoffInstr");
    assert_absent(&c, "payoffInstrType");
    assert_eq!(c["optInStatus"], "NOREQ", "withdrawal resets the opt-in: {c}");
    let c = srv.io(GET, "/bpd/io/citizen", &tok, None).await.json_with(200);
    assert_eq!(c["enabled"], false, "{c}");

    // Idempotent, on both paths.
    srv.io(DELETE, "/bpd/io/citizen", &tok, None).await.expect(204);
    srv.io(DELETE, "/bpd/io/citizen/v2", &tok, None).await.expect(204);

    tokio::time::sleep(Duration::from_millis(20)).await;
    let c = srv.io(PUT, "/bpd/io/citizen", &tok, None).await.json_with(200);
    assert_eq!(c["enabled"], true, "{c}");
    let tc2 = assert_utc_timestamp(&c["timestampTC"], "timestampTC");
    assert!(tc2 > tc1, "re-enrollment must set a new timestampTC: {tc1} then {tc2}");
    assert_absent(&c, "payoffInstr");
    let c = srv.io(GET, "/bpd/io/citizen/v2", &tok, None).await.json_with(200);
    assert_eq!(c["enabled"], true, "{c}");
    assert_eq!(c["optInStatus"], "NOREQ", "{c}");

    // A new citizen may enroll with an opt-in directly.
    let cf2 = adult("IOCITB");
    let tok2 = srv.login(&cf2).await;
    let c = srv.io(PUT, "/bpd/io/citizen/v2", &tok2, Some(json!({"optInStatus": "DENIED"}))).await.json_with(200);
    assert_eq!(c["optInStatus"], "DENIED", "{c}");
    assert_eq!(c["fiscalCode"], cf2.as_str(), "{c}");
    assert_eq!(c["enabled"], true, "{c}");
}

// ---------------------------------------------------------------------------------------------
// 2. Bad input
// ---------------------------------------------------------------------------------------------

async fn bad_input_is_rejected(srv: &Server) {
    let cf = adult("BADINA");
    let tok = srv.login(&cf).await;

    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(IBAN, &cf))).await.problem(404, "citizen");
    srv.io(PUT, "/bpd/io/citizen", &tok, None).await.expect(200);

    // IT60… is valid; IT61… fails the mod-97 check.
    let bad_iban = IBAN.replacen("IT60", "IT61", 1);
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(&bad_iban, &cf))).await.problem(400, "payoffInstr");
    let mut body = payoff(IBAN, &cf);
    body["payoffInstrType"] = json!("CARD");
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(body)).await.problem(400, "payoffInstrType");
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(IBAN, &wrong_check_char(&cf))))
        .await
        .problem(400, "accountHolderCF");
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(IBAN, "RSSMRA80A01"))).await.problem(400, "accountHolderCF");
    let mut body = payoff(IBAN, &cf);
    body["nickname"] = json!("x");
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(body)).await.problem(400, "nickname");
    let mut body = payoff(IBAN, &cf);
    body["technicalAccountHolder"] = json!("Banca X");
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(body)).await.problem(400, "technicalAccountHolder");
    let mut body = payoff(IBAN, &cf);
    body["payoffInstr"] = json!(123);
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(body)).await.problem(400, "payoffInstr");
    let mut body = payoff(IBAN, &cf);
    body["accountHolderName"] = json!(["Mario"]);
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(body)).await.problem(400, "accountHolderName");
    let mut body = payoff(IBAN, &cf);
    body.as_object_mut().expect("object").remove("accountHolderSurname");
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(body)).await.problem(400, "accountHolderSurname");

    // Over 16 KiB.
    let mut big = payoff(IBAN, &cf);
    big["accountHolderName"] = json!("M".repeat(17 * 1024));
    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(big)).await.problem(413, "body");

    // Nothing above was stored.
    let c = srv.io(GET, "/bpd/io/citizen", &tok, None).await.json_with(200);
    assert_absent(&c, "payoffInstr");

    srv.io(PUT, "/bpd/io/citizen/v2", &tok, Some(json!({"optInStatus": "MAYBE"}))).await.problem(400, "optInStatus");
    srv.io(PUT, "/bpd/io/citizen/v2", &tok, Some(json!({"optInStatus": 1}))).await.problem(400, "optInStatus");
    srv.io(PUT, "/bpd/io/citizen/v2", &tok, Some(json!({"bogus": true}))).await.problem(400, "bogus");
    let c = srv.io(GET, "/bpd/io/citizen/v2", &tok, None).await.json_with(200);
    assert_eq!(c["optInStatus"], "NOREQ", "{c}");

    // Minors may not enroll.
    let kid = minor("BADKID");
    let kid_tok = srv.login(&kid).await;
    srv.io(PUT, "/bpd/io/citizen", &kid_tok, None).await.problem(403, "18");
    srv.io(PUT, "/bpd/io/citizen/v2", &kid_tok, Some(json!({}))).await.problem(403, "18");
    srv.io(GET, "/bpd/io/citizen", &kid_tok, None).await.problem(404, "citizen");

    // Authentication.
    let r = srv.send(srv.req(GET, "/bpd/io/citizen")).await;
    r.problem(401, "Authorization");
    srv.io(GET, "/bpd/io/citizen", "garbage", None).await.problem(401, "token");
    srv.io(PUT, "/bpd/io/citizen", "garbage", None).await.expect(401);
    srv.send(srv.req(GET, "/bpd/io/citizen").header("authorization", format!("Basic {tok}"))).await.expect(401);
    srv.send(srv.req(GET, "/bpd/io/citizen").header("authorization", "Bearer ")).await.expect(401);

    // hpan: 64 lower-case hex.
    for bad in ["ABC".to_owned(), new_hpan("upper").to_uppercase(), format!("{}g", &new_hpan("g")[..63])] {
        let p = instrument_path(&bad);
        srv.io(GET, &p, &tok, None).await.problem(400, "hpan");
        srv.io(PUT, &p, &tok, None).await.problem(400, "hpan");
        srv.io(DELETE, &p, &tok, None).await.problem(400, "hpan");
    }

    srv.io(GET, "/bpd/io/no-such-endpoint", &tok, None).await.problem(404, "endpoint");
    let r = srv.send(srv.req(GET, "/definitely/not/here")).await;
    r.expect(404);

    // Malformed JSON: 400, reported against the request body (not a made-up field).
    let raw = |b: &'static str| {
        srv.req(PATCH, "/bpd/io/citizen")
            .bearer_auth(&tok)
            .header("content-type", "application/json; charset=utf-8")
            .body(b)
    };
    for body in ["not json at all", "{\"payoffInstr\": \"IT60X0542811101000000123456\", ", "{\"payoffInstr\" 1}"] {
        let r = srv.send(raw(body)).await;
        let p = r.problem(400, "");
        assert!(
            p.get("field").is_none_or(|f| f != "?")
                && p["detail"].as_str().is_some_and(|d| d.starts_with("request body")),
            "a JSON syntax error should be reported as `request body: …`, without a bogus field \"?\":\n{r}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. IO payment instruments
// ---------------------------------------------------------------------------------------------

async fn io_payment_instruments(srv: &Server) {
    let a = adult("INSTRA");
    let b = adult("INSTRB");
    let ta = srv.login(&a).await;
    let tb = srv.login(&b).await;
    let h = new_hpan("io-instruments");
    let p = instrument_path(&h);

    srv.io(PUT, &p, &ta, None).await.problem(403, "enrolled");
    srv.io(PUT, "/bpd/io/citizen", &ta, None).await.expect(200);
    srv.io(PUT, "/bpd/io/citizen", &tb, None).await.expect(200);

    let r = srv.io(PUT, &p, &ta, None).await.json_with(200);
    let act = r["activationDate"].clone();
    assert_utc_timestamp(&act, "activationDate");
    assert_eq!(r.as_object().map(|o| o.len()), Some(1), "only activationDate expected: {r}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let r = srv.io(PUT, &p, &ta, None).await.json_with(200);
    assert_eq!(r["activationDate"], act, "re-activation by the owner is a no-op");

    let i = srv.io(GET, &p, &ta, None).await.json_with(200);
    assert_eq!(i["hpan"], h.as_str(), "{i}");
    assert_eq!(i["fiscalCode"], a.as_str(), "{i}");
    assert_eq!(i["activationDate"], act, "{i}");
    assert_eq!(i["Status"], "ACTIVE", "{i}");
    assert_absent(&i, "deactivationDate");

    // Somebody else's active card.
    let r = srv.io(GET, &p, &tb, None).await;
    r.problem(409, "");
    assert!(!r.body.contains(&a), "409 leaks the owner's fiscal code:\n{r}");
    srv.io(PUT, &p, &tb, None).await.problem(409, "");
    srv.io(DELETE, &p, &tb, None).await.problem(409, "");
    assert_eq!(srv.io(GET, &p, &ta, None).await.json_with(200)["Status"], "ACTIVE");

    srv.io(GET, &instrument_path(&new_hpan("unknown")), &ta, None).await.problem(404, "");
    srv.io(DELETE, &instrument_path(&new_hpan("unknown")), &ta, None).await.problem(404, "");

    let r = srv.io(DELETE, &p, &ta, None).await;
    r.expect(204);
    assert!(r.body.is_empty(), "{r}");
    srv.io(DELETE, &p, &ta, None).await.expect(204);
    let i = srv.io(GET, &p, &ta, None).await.json_with(200);
    assert_eq!(i["Status"], "INACTIVE", "{i}");
    assert_eq!(i["fiscalCode"], a.as_str(), "{i}");
    let deact = assert_utc_timestamp(&i["deactivationDate"], "deactivationDate");
    assert!(deact >= assert_utc_timestamp(&act, "activationDate"), "{i}");

    // An inactive card of someone else is, to B, simply not enrolled.
    let r = srv.io(GET, &p, &tb, None).await;
    r.problem(404, "");
    assert!(!r.body.contains(&a), "the previous owner's fiscal code leaks to another citizen:\n{r}");

    // B takes it over.
    let r = srv.io(PUT, &p, &tb, None).await.json_with(200);
    let act_b = assert_utc_timestamp(&r["activationDate"], "activationDate");
    assert!(act_b >= deact, "{r}");
    let i = srv.io(GET, &p, &tb, None).await.json_with(200);
    assert_eq!(i["Status"], "ACTIVE", "{i}");
    assert_eq!(i["fiscalCode"], b.as_str(), "{i}");
    assert_absent(&i, "deactivationDate");
    let r = srv.io(GET, &p, &ta, None).await;
    r.problem(409, "");
    assert!(!r.body.contains(&b), "{r}");

    let p2 = instrument_path(&new_hpan("second"));
    srv.io(PUT, &p2, &tb, None).await.expect(200);
    let n = srv.io(GET, "/bpd/io/payment-instruments/number", &tb, None).await.json_with(200);
    assert_eq!(n, json!([{"channel": "app-io-channel", "count": 2}]));
    let n = srv.io(GET, "/bpd/io/payment-instruments/number", &ta, None).await.json_with(200);
    let arr = n.as_array().unwrap_or_else(|| panic!("array expected: {n}"));
    assert!(arr.iter().all(|c| c["count"] == 0), "A has no active instrument: {n}");
    srv.send(srv.req(GET, "/bpd/io/payment-instruments/number")).await.expect(401);

    // Withdrawal deactivates every instrument; a withdrawn citizen cannot activate cards.
    srv.io(DELETE, "/bpd/io/citizen", &tb, None).await.expect(204);
    for path in [&p, &p2] {
        let i = srv.io(GET, path, &tb, None).await.json_with(200);
        assert_eq!(i["Status"], "INACTIVE", "{i}");
        assert_utc_timestamp(&i["deactivationDate"], "deactivationDate");
    }
    let n = srv.io(GET, "/bpd/io/payment-instruments/number", &tb, None).await.json_with(200);
    let arr = n.as_array().unwrap_or_else(|| panic!("array expected: {n}"));
    assert!(arr.iter().all(|c| c["count"] == 0), "B withdrew: {n}");
    srv.io(PUT, &p2, &tb, None).await.problem(403, "enrolled");
    // A may now take the first card back.
    srv.io(PUT, &p, &ta, None).await.expect(200);
}

// ---------------------------------------------------------------------------------------------
// 4. Race on one new hpan
// ---------------------------------------------------------------------------------------------

async fn instrument_enrollment_race(srv: &Server) {
    let a = adult("RACEAA");
    let b = adult("RACEBB");
    let ta = srv.login(&a).await;
    let tb = srv.login(&b).await;
    srv.io(PUT, "/bpd/io/citizen", &ta, None).await.expect(200);
    srv.io(PUT, "/bpd/io/citizen", &tb, None).await.expect(200);
    let mut wins = [0u32; 2];
    for round in 0..30 {
        let p = instrument_path(&new_hpan(&format!("race-{round}")));
        let (ra, rb) = tokio::join!(srv.io(PUT, &p, &ta, None), srv.io(PUT, &p, &tb, None));
        let (winner, tok) = match (ra.status, rb.status) {
            (200, 409) => {
                wins[0] += 1;
                (&a, &ta)
            }
            (409, 200) => {
                wins[1] += 1;
                (&b, &tb)
            }
            _ => panic!("round {round}: expected exactly one 200 and one 409:\nA: {ra}\nB: {rb}"),
        };
        let i = srv.io(GET, &p, tok, None).await.json_with(200);
        assert_eq!(i["Status"], "ACTIVE", "round {round}: {i}");
        assert_eq!(i["fiscalCode"], winner.as_str(), "round {round}: {i}");
    }
    eprintln!("race wins: A {} B {}", wins[0], wins[1]);
}

// ---------------------------------------------------------------------------------------------
// 5. Award periods
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_periods(v: &Value, what: &str) {
    let arr = v.as_array().unwrap_or_else(|| panic!("{what}: array expected, got {v}"));
    assert_eq!(arr.len(), 4, "{what}: 4 periods expected: {v}");
    // id, start, end, min transactions, super cashback (€), min position
    let expected = [
        (0, "2020-12-08", "2020-12-31", 10, 0, 0),
        (1, "2021-01-01", "2021-06-30", 50, 1500, 100_000),
        (2, "2021-07-01", "2021-12-31", 50, 1500, 100_000),
        (3, "2022-01-01", "2022-06-30", 50, 1500, 100_000),
    ];
    let mut keys: Vec<&str> = vec![
        "awardPeriodId",
        "startDate",
        "endDate",
        "minTransactionNumber",
        "maxAmount",
        "minPosition",
        "maxTransactionCashback",
        "maxPeriodCashback",
        "cashbackPercentage",
        "gracePeriod",
        "status",
        "maxTransactionEvaluated",
    ];
    keys.sort_unstable();
    for (id, start, end, min_trx, max_amount, min_pos) in expected {
        let p =
            arr.iter().find(|p| p["awardPeriodId"] == id).unwrap_or_else(|| panic!("{what}: no period {id} in {v}"));
        let mut got: Vec<&str> = p.as_object().expect("object").keys().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, keys, "{what}: fields of period {id}: {p}");
        assert_eq!(p["startDate"], start, "{what}: {p}");
        assert_eq!(p["endDate"], end, "{what}: {p}");
        assert_eq!(p["minTransactionNumber"], min_trx, "{what}: {p}");
        assert_eq!(p["maxAmount"], max_amount, "{what}: {p}");
        assert_eq!(p["minPosition"], min_pos, "{what}: {p}");
        assert_eq!(p["maxTransactionCashback"], 15, "{what}: {p}");
        assert_eq!(p["maxPeriodCashback"], 150, "{what}: {p}");
        assert_eq!(p["cashbackPercentage"], 10, "{what}: {p}");
        assert_eq!(p["gracePeriod"], 10, "{what}: {p}");
        assert_eq!(p["status"], "CLOSED", "{what}: {p}");
        assert_eq!(p["maxTransactionEvaluated"], 150, "{what}: {p}");
        for k in ["maxAmount", "maxTransactionCashback", "maxPeriodCashback", "maxTransactionEvaluated"] {
            assert!(p[k].is_u64(), "{what}: {k} should be an integer: {p}");
        }
    }
}

async fn award_periods(srv: &Server) {
    // Any authenticated citizen may read them, enrolled or not.
    let tok = srv.login(&adult("PERIOD")).await;
    let v1 = srv.io(GET, "/bpd/io/award-periods", &tok, None).await.json_with(200);
    assert_periods(&v1, "IO v1");
    let v2 = srv.io(GET, "/bpd/io/award-periods/v2", &tok, None).await.json_with(200);
    assert_periods(&v2, "IO v2");
    srv.send(srv.req(GET, "/bpd/io/award-periods")).await.problem(401, "Authorization");

    let key = srv.credential("issuer", "bank-x").await;
    let hb1 = srv.hb(GET, "/bpd/hb/award-periods", &key, None).await.json_with(200);
    assert_periods(&hb1, "HB v1");
    let hb2 = srv.hb(GET, "/bpd/hb/award-periods/v2", &key, None).await.json_with(200);
    assert_periods(&hb2, "HB v2");
    assert_eq!(hb1, v1, "HB and IO serve the same periods");
    srv.send(srv.req(GET, "/bpd/hb/award-periods")).await.problem(401, "Ocp-Apim-Subscription-Key");
    srv.send(srv.req(GET, "/bpd/hb/award-periods/v2")).await.expect(401);
}

// ---------------------------------------------------------------------------------------------
// 6. Issuer (HB) flow
// ---------------------------------------------------------------------------------------------

async fn hb_issuer_flow(srv: &Server) {
    let kx = srv.credential("issuer", "bank-x").await;
    let ky = srv.credential("issuer", "bank-y").await;
    let pm = srv.credential("payment-manager", "pm").await;
    let revoked = srv.credential("issuer", "bank-x").await;
    srv.db.revoke(&revoked).await;
    let unknown = ApiKey { id: "none".into(), key: new_hpan("unknown-key") };

    let cf = adult("HBFLOW");
    let cf2 = adult("HBFLWB");
    let citizen = format!("/bpd/hb/citizens/{cf}");

    let c = srv.hb(PUT, &citizen, &kx, None).await.json_with(200);
    assert_eq!(c["enabled"], true, "{c}");
    assert_eq!(c["fiscalCode"], cf.as_str(), "{c}");
    assert_utc_timestamp(&c["timestampTC"], "timestampTC");
    let c = srv.hb(PUT, "/bpd/hb/citizens/v2", &kx, Some(json!({"id": cf2}))).await.json_with(200);
    assert_eq!(c["optInStatus"], "NOREQ", "{c}");
    assert_eq!(c["fiscalCode"], cf2.as_str(), "{c}");
    assert_eq!(c["enabled"], true, "{c}");
    srv.hb(PUT, "/bpd/hb/citizens/v2", &kx, Some(json!({"id": "XYZ"}))).await.problem(400, "id");
    srv.hb(PUT, &format!("/bpd/hb/citizens/{}", minor("HBKIDS")), &kx, None).await.problem(403, "18");

    let c = srv.hb(GET, &citizen, &kx, None).await.json_with(200);
    assert_eq!(c["fiscalCode"], cf.as_str(), "{c}");
    assert_eq!(c["enabled"], true, "{c}");
    let c = srv.hb_h(GET, "/bpd/hb/citizens/v2", &kx, &[("id", &cf)], None).await.json_with(200);
    assert_eq!(c["fiscalCode"], cf.as_str(), "{c}");
    assert_eq!(c["optInStatus"], "NOREQ", "{c}");
    srv.hb(GET, "/bpd/hb/citizens/v2", &kx, None).await.problem(400, "id");
    srv.hb(GET, &format!("/bpd/hb/citizens/{}", wrong_check_char(&cf)), &kx, None).await.problem(400, "fiscalCode");
    srv.hb(GET, "/bpd/hb/citizens/NOTAFISCALCODE", &kx, None).await.problem(400, "fiscalCode");
    srv.hb(GET, &format!("/bpd/hb/citizens/{}", adult("HBNONE")), &kx, None).await.problem(404, "citizen");

    // Technical account.
    let mut body = payoff(IBAN, &cf);
    body["technicalAccountHolder"] = json!("Banca X");
    body["issuerCardId"] = json!("CARD-0001");
    let r = srv.hb(PATCH, &citizen, &kx, Some(body)).await.json_with(200);
    assert_eq!(r, json!({"validationStatus": "OK"}));
    let c =
        srv.hb_h(GET, "/bpd/hb/citizens/v2?flagTechnicalAccount=true", &kx, &[("id", &cf)], None).await.json_with(200);
    assert_eq!(c["payoffInstr"], "CONTO TECNICO", "{c}");
    assert_eq!(c["technicalAccountHolder"], "Banca X", "{c}");
    assert_eq!(c["issuerCardId"], "CARD-0001", "{c}");
    let c = srv.hb_h(GET, "/bpd/hb/citizens/v2", &kx, &[("id", &cf)], None).await.json_with(200);
    assert_absent(&c, "technicalAccountHolder");
    assert_absent(&c, "technicalAccount");
    assert_eq!(c["payoffInstr"], IBAN, "{c}");
    let tok = srv.login(&cf).await;
    let c = srv.io(GET, "/bpd/io/citizen/v2", &tok, None).await.json_with(200);
    assert_eq!(c["technicalAccount"], "Conto gestito da Banca X", "{c}");
    let mut body = payoff(IBAN, &cf);
    body["issuerCardId"] = json!("X".repeat(21));
    srv.hb(PATCH, &citizen, &kx, Some(body)).await.problem(400, "issuerCardId");

    // PATCH v2: fiscal code in the body.
    let mut body = payoff(&it_iban(42), &cf2);
    body["id"] = json!(cf2);
    let r = srv.hb(PATCH, "/bpd/hb/citizens/v2", &kx, Some(body)).await.json_with(200);
    assert_eq!(r["validationStatus"], "OK", "{r}");
    let c = srv.hb(GET, &format!("/bpd/hb/citizens/{cf2}"), &kx, None).await.json_with(200);
    assert_eq!(c["payoffInstr"], it_iban(42), "{c}");

    // Cards.
    let hpan = hpan_of(VISA, common::DEV_SALT);
    let r = srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(card(VISA, &cf, "bank-x"))).await.json_with(200);
    assert_utc_timestamp(&r["activationDate"], "activationDate");
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(card("4111111111111112", &cf, "bank-x")))
        .await
        .problem(400, "id");
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(card(VISA, &cf, "bank-y"))).await.problem(403, "channel");
    let mut bad = card(VISA, &cf, "bank-x");
    bad["type"] = json!("XXX");
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(bad)).await.problem(400, "type");
    let mut bad = card(VISA, &cf, "bank-x");
    bad["fiscalCode"] = json!(wrong_check_char(&cf));
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(bad)).await.problem(400, "fiscalCode");
    // Another citizen may not take an active card.
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(card(VISA, &cf2, "bank-x"))).await.problem(409, "");

    let i = srv.hb(GET, &format!("/bpd/hb/payment-instruments/{VISA}"), &kx, None).await.json_with(200);
    assert_eq!(i["hpan"], hpan.as_str(), "hpan must be sha256(PAN + salt): {i}");
    assert_eq!(i["Status"], "ACTIVE", "{i}");
    assert_eq!(i["fiscalCode"], cf.as_str(), "{i}");
    let i = srv.io(GET, &instrument_path(&hpan), &tok, None).await.json_with(200);
    assert_eq!(i["Status"], "ACTIVE", "{i}");
    assert_eq!(i["hpan"], hpan.as_str(), "{i}");
    let i = srv.hb_h(GET, "/bpd/hb/payment-instruments/v2", &kx, &[("id", VISA)], None).await.json_with(200);
    assert_eq!(i["hpan"], hpan.as_str(), "{i}");
    srv.hb(GET, "/bpd/hb/payment-instruments/4111111111111112", &kx, None).await.problem(400, "pan");
    srv.hb(GET, &format!("/bpd/hb/payment-instruments/{}", luhn_complete("41111111111112")), &kx, None)
        .await
        .problem(404, "");
    let n = srv.io(GET, "/bpd/io/payment-instruments/number", &tok, None).await.json_with(200);
    assert_eq!(n, json!([{"channel": "bank-x", "count": 1}]));

    // Another issuer does not see a citizen only bank-x enrolled: 404, as if unknown.
    srv.hb(DELETE, &citizen, &ky, None).await.problem(404, "citizen");
    srv.hb(GET, &citizen, &ky, None).await.problem(404, "citizen");
    srv.hb(GET, &format!("/bpd/hb/payment-instruments/{VISA}"), &ky, None).await.problem(404, "instrument");
    srv.hb(DELETE, &format!("/bpd/hb/payment-instruments/{VISA}"), &ky, None).await.problem(404, "instrument");
    assert_eq!(srv.hb(GET, &citizen, &kx, None).await.json_with(200)["enabled"], true);
    srv.hb(DELETE, &citizen, &kx, Some(json!({"channel": "bank-y"}))).await.problem(403, "channel");
    srv.hb(DELETE, &citizen, &kx, None).await.expect(204);
    let c = srv.hb(GET, &citizen, &kx, None).await.json_with(200);
    assert_eq!(c["enabled"], false, "{c}");
    assert_absent(&c, "payoffInstr");
    let i = srv.hb(GET, &format!("/bpd/hb/payment-instruments/{VISA}"), &kx, None).await.json_with(200);
    assert_eq!(i["Status"], "INACTIVE", "withdrawal deactivates the cards: {i}");

    // Re-enroll, then delete the card by PAN.
    srv.hb(PUT, &citizen, &kx, None).await.expect(200);
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(card(VISA, &cf, "bank-x"))).await.expect(200);
    assert_eq!(
        srv.hb(GET, &format!("/bpd/hb/payment-instruments/{VISA}"), &kx, None).await.json_with(200)["Status"],
        "ACTIVE"
    );
    let r = srv.hb(DELETE, &format!("/bpd/hb/payment-instruments/{VISA}"), &kx, None).await;
    r.expect(204);
    assert!(r.body.is_empty(), "{r}");
    let i = srv.hb(GET, &format!("/bpd/hb/payment-instruments/{VISA}"), &kx, None).await.json_with(200);
    assert_eq!(i["Status"], "INACTIVE", "{i}");
    assert_utc_timestamp(&i["deactivationDate"], "deactivationDate");
    srv.hb(DELETE, &format!("/bpd/hb/payment-instruments/{}", luhn_complete("41111111111113")), &kx, None)
        .await
        .problem(404, "");
    // The citizen app may withdraw whatever channel enrolled the cards.
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &kx, Some(card(VISA, &cf, "bank-x"))).await.expect(200);
    srv.io(DELETE, "/bpd/io/citizen", &tok, None).await.expect(204);
    let i = srv.hb(GET, &format!("/bpd/hb/payment-instruments/{VISA}"), &kx, None).await.json_with(200);
    assert_eq!(i["Status"], "INACTIVE", "an IO withdrawal deactivates issuer-enrolled cards: {i}");
    assert_eq!(srv.hb(GET, &citizen, &kx, None).await.json_with(200)["enabled"], false);
    // The v2 citizen delete (header id).
    srv.hb_h(DELETE, "/bpd/hb/citizens/v2", &kx, &[("id", &cf2)], None).await.expect(204);
    assert_eq!(srv.hb(GET, &format!("/bpd/hb/citizens/{cf2}"), &kx, None).await.json_with(200)["enabled"], false);

    // Keys.
    srv.hb(GET, &citizen, &pm, None).await.problem(403, "payment-manager");
    srv.hb(PUT, &citizen, &pm, None).await.expect(403);
    srv.hb(GET, &citizen, &revoked, None).await.problem(401, "Ocp-Apim-Subscription-Key");
    srv.hb(GET, &citizen, &unknown, None).await.problem(401, "Ocp-Apim-Subscription-Key");
    srv.send(srv.req(GET, &citizen)).await.problem(401, "Ocp-Apim-Subscription-Key");
    // A bearer token is no issuer credential.
    srv.io(GET, &citizen, &tok, None).await.expect(401);
    // The `;product=…` suffix some clients append is ignored.
    let with_product = ApiKey { id: kx.id.clone(), key: format!("{};product=bpd-hb", kx.key) };
    srv.hb(GET, &citizen, &with_product, None).await.expect(200);
}

// ---------------------------------------------------------------------------------------------
// 7. Payment Manager
// ---------------------------------------------------------------------------------------------

async fn payment_manager_delete(srv: &Server) {
    let pm = srv.credential("payment-manager", "pm").await;
    let issuer = srv.credential("issuer", "bank-x").await;
    let a = adult("PMDELA");
    let b = adult("PMDELB");
    let ta = srv.login(&a).await;
    srv.io(PUT, "/bpd/io/citizen", &ta, None).await.expect(200);
    let h1 = new_hpan("pm-1");
    let h2 = new_hpan("pm-2");
    srv.io(PUT, &instrument_path(&h1), &ta, None).await.expect(200);
    srv.io(PUT, &instrument_path(&h2), &ta, None).await.expect(200);

    let r = srv.hb(DELETE, &format!("/bpd/pm/payment-instrument/{h1}?fiscalCode={a}"), &pm, None).await;
    r.expect(204);
    assert!(r.body.is_empty(), "{r}");
    let i = srv.io(GET, &instrument_path(&h1), &ta, None).await.json_with(200);
    assert_eq!(i["Status"], "INACTIVE", "{i}");

    srv.hb(DELETE, &format!("/bpd/pm/payment-instrument/{}?fiscalCode={a}", new_hpan("pm-unknown")), &pm, None)
        .await
        .problem(404, "");
    srv.hb(DELETE, &format!("/bpd/pm/payment-instrument/{h2}?fiscalCode={b}"), &pm, None).await.problem(409, "");
    assert_eq!(srv.io(GET, &instrument_path(&h2), &ta, None).await.json_with(200)["Status"], "ACTIVE");
    srv.hb(DELETE, &format!("/bpd/pm/payment-instrument/{h2}?fiscalCode={a}"), &issuer, None).await.problem(403, "");
    srv.send(srv.req(DELETE, &format!("/bpd/pm/payment-instrument/{h2}?fiscalCode={a}"))).await.expect(401);
    srv.hb(DELETE, "/bpd/pm/payment-instrument/ABC?fiscalCode=x", &pm, None).await.problem(400, "hpan");
    srv.hb(DELETE, &format!("/bpd/pm/payment-instrument/{h2}?fiscalCode=XYZ"), &pm, None)
        .await
        .problem(400, "fiscalCode");
    assert_eq!(srv.io(GET, &instrument_path(&h2), &ta, None).await.json_with(200)["Status"], "ACTIVE");
}

// ---------------------------------------------------------------------------------------------
// 8. No clear PAN in responses, logs or the database
// ---------------------------------------------------------------------------------------------

async fn no_clear_pan_anywhere(srv: &Server) {
    let key = srv.credential("issuer", "bank-x").await;
    let cf = adult("NOPANS");
    let tok = srv.login(&cf).await;
    srv.hb(PUT, &format!("/bpd/hb/citizens/{cf}"), &key, None).await.expect(200);

    let pans = [
        VISA.to_owned(),
        "5555555555554444".to_owned(),
        luhn_complete("453201511283036"),
        luhn_complete("627180000000000000"), // 19 digits
    ];
    assert_eq!(pans[3].len(), 19);
    let invalid = "4111111111111112";

    for pan in &pans {
        let hpan = hpan_of(pan, common::DEV_SALT);
        srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(card(pan, &cf, "bank-x"))).await.expect(200);
        let i = srv.hb(GET, &format!("/bpd/hb/payment-instruments/{pan}"), &key, None).await.json_with(200);
        assert_eq!(i["hpan"], hpan.as_str(), "{i}");
        let i = srv.hb_h(GET, "/bpd/hb/payment-instruments/v2", &key, &[("id", pan)], None).await.json_with(200);
        assert_eq!(i["Status"], "ACTIVE", "{i}");
        srv.io(GET, &instrument_path(&hpan), &tok, None).await.expect(200);
        srv.hb(DELETE, &format!("/bpd/hb/payment-instruments/{pan}"), &key, None).await.expect(204);
        srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(card(pan, &cf, "bank-x"))).await.expect(200);
        srv.hb_h(DELETE, "/bpd/hb/payment-instruments/v2", &key, &[("id", pan)], None).await.expect(204);
        srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(card(pan, &cf, "bank-x"))).await.expect(200);
        // Somebody else's attempt: 409, which must not echo the PAN either.
        let other = adult("NOPANO");
        srv.hb(PUT, &format!("/bpd/hb/citizens/{other}"), &key, None).await.expect(200);
        srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(card(pan, &other, "bank-x"))).await.expect(409);
    }
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(card(invalid, &cf, "bank-x"))).await.problem(400, "id");
    srv.hb(GET, &format!("/bpd/hb/payment-instruments/{invalid}"), &key, None).await.problem(400, "pan");
    srv.hb_h(GET, "/bpd/hb/payment-instruments/v2", &key, &[("id", invalid)], None).await.problem(400, "id");
    srv.hb(DELETE, &format!("/bpd/hb/payment-instruments/{invalid}"), &key, None).await.problem(400, "pan");
    // Errors on other fields of a body that carries a PAN.
    let mut bad = card(&pans[1], &cf, "bank-x");
    bad["brand"] = json!("NOPE");
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(bad)).await.problem(400, "brand");
    let mut bad = card(&pans[1], &cf, "bank-x");
    bad["unexpected"] = json!(pans[1]);
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(bad)).await.expect(400);

    // Let the log writer and the database settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut all_pans: Vec<&str> = pans.iter().map(String::as_str).collect();
    all_pans.push(invalid);
    let transcript = srv.transcript();
    assert!(transcript.len() > 30, "transcript too short: {}", transcript.len());
    for (n, r) in transcript.iter().enumerate() {
        for pan in &all_pans {
            assert!(!r.contains(pan), "response #{n} contains the clear PAN {pan}:\n{r}");
        }
    }

    let log = srv.log();
    assert!(log.contains("DEBUG"), "the server should log at debug level for this test; log:\n{log}");
    eprintln!("scanned {} responses and {} server log lines", transcript.len(), log.lines().count());
    for pan in &all_pans {
        if let Some(pos) = log.find(pan) {
            let from = log[..pos].rfind('\n').map_or(0, |i| i + 1);
            let to = log[pos..].find('\n').map_or(log.len(), |i| pos + i);
            panic!("the server log ({}) contains the clear PAN {pan}:\n{}", srv.log_path.display(), &log[from..to]);
        }
    }

    let raw = srv.db.raw_contents().await;
    let first_hpan = hpan_of(&pans[0], common::DEV_SALT);
    // SQLite keeps hpans as 32-byte digests, PostgreSQL as hex text.
    let digest = cashback_domain::Hpan::parse(&first_hpan).unwrap().to_bytes();
    assert!(
        contains_bytes(&raw, first_hpan.as_bytes()) || contains_bytes(&raw, &digest),
        "sanity: the database dump ({} bytes) should contain the hpan {first_hpan}",
        raw.len()
    );
    for pan in &all_pans {
        assert!(
            !contains_bytes(&raw, pan.as_bytes()),
            "the database ({:?}) contains the clear PAN {pan}",
            srv.db.backend
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Account-holder (IBAN) check service (SQLite only)
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct IbanMock {
    answers: Arc<HashMap<String, (u16, Value)>>,
    calls: Arc<Mutex<Vec<Value>>>,
}

async fn iban_mock_handler(
    axum::extract::State(m): axum::extract::State<IbanMock>,
    axum::Json(body): axum::Json<Value>,
) -> (axum::http::StatusCode, axum::Json<Value>) {
    m.calls.lock().expect("calls").push(body.clone());
    let iban = body.pointer("/account/value").and_then(Value::as_str).unwrap_or("");
    match m.answers.get(iban) {
        Some((s, v)) => (axum::http::StatusCode::from_u16(*s).expect("status"), axum::Json(v.clone())),
        None => (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({"error": "unknown IBAN"}))),
    }
}

async fn spawn_mock(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
    let addr = listener.local_addr().expect("mock address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("mock server");
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iban_check_service_sqlite() {
    let ok = it_iban(1001);
    let ko = it_iban(1002);
    let psp = it_iban(1003);
    let invalid = it_iban(1004);
    let broken = it_iban(1005);
    let answers: HashMap<String, (u16, Value)> = [
        (ok.clone(), (200, json!({"payload": {"validationStatus": "OK"}}))),
        (ko.clone(), (200, json!({"payload": {"validationStatus": "KO"}}))),
        (psp.clone(), (501, json!({"errors": ["PSP not supported"]}))),
        (invalid.clone(), (400, json!({"errors": ["invalid IBAN"]}))),
        (broken.clone(), (500, json!({"errors": ["boom"]}))),
    ]
    .into_iter()
    .collect();
    let mock = IbanMock { answers: Arc::new(answers), calls: Arc::new(Mutex::new(Vec::new())) };
    let app = axum::Router::new().route("/check", axum::routing::post(iban_mock_handler)).with_state(mock.clone());
    let addr = spawn_mock(app).await;

    let db = Arc::new(TestDb::sqlite());
    let srv = Server::start(db.clone(), Opts::dev().arg("--iban-check-url").arg(format!("http://{addr}/check"))).await;
    let cf = adult("IBANCK");
    let tok = srv.login(&cf).await;
    srv.io(PUT, "/bpd/io/citizen", &tok, None).await.expect(200);
    let stored = async || srv.io(GET, "/bpd/io/citizen", &tok, None).await.json_with(200)["payoffInstr"].clone();

    let r = srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(&ko, &cf))).await.json_with(200);
    assert_eq!(r, json!({"validationStatus": "KO"}));
    assert_eq!(stored().await, Value::Null, "a KO IBAN must not be stored");

    let r = srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(&ok, &cf))).await.json_with(200);
    assert_eq!(r, json!({"validationStatus": "OK"}));
    assert_eq!(stored().await, ok.as_str());

    let r = srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(&ko, &cf))).await.json_with(200);
    assert_eq!(r, json!({"validationStatus": "KO"}));
    assert_eq!(stored().await, ok.as_str(), "a KO IBAN must not replace the previous one");

    let r = srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(&psp, &cf))).await.json_with(200);
    assert_eq!(r, json!({"validationStatus": "UNKNOWN_PSP"}));
    assert_eq!(stored().await, psp.as_str(), "UNKNOWN_PSP is stored");

    srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(&invalid, &cf))).await.problem(400, "payoffInstr");
    assert_eq!(stored().await, psp.as_str());

    let r = srv.io(PATCH, "/bpd/io/citizen", &tok, Some(payoff(&broken, &cf))).await;
    r.problem(503, "");
    let retry = r.header("retry-after").unwrap_or_else(|| panic!("503 without Retry-After:\n{r}"));
    assert!(retry.parse::<u32>().is_ok_and(|s| s > 0), "Retry-After {retry:?}");
    assert_eq!(stored().await, psp.as_str());

    let calls = mock.calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 6, "one check per PATCH: {calls:?}");
    for c in &calls {
        assert_eq!(c.pointer("/account/valueType"), Some(&json!("IBAN")), "{c}");
        assert_eq!(c.pointer("/accountHolder/fiscalCode"), Some(&json!(cf)), "checked against the citizen: {c}");
        assert_eq!(c.pointer("/accountHolder/type"), Some(&json!("PERSON_NATURAL")), "{c}");
    }

    // An issuer's technical account skips the check (the issuer sees the citizen once it has
    // enrolled one of their cards).
    let key = srv.credential("issuer", "bank-x").await;
    srv.hb(PATCH, &format!("/bpd/hb/citizens/{cf}"), &key, Some(payoff(&ko, &cf))).await.problem(404, "citizen");
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(card(VISA, &cf, "bank-x"))).await.expect(200);
    let mut body = payoff(&ko, &cf);
    body["technicalAccountHolder"] = json!("Banca X");
    let r = srv.hb(PATCH, &format!("/bpd/hb/citizens/{cf}"), &key, Some(body)).await.json_with(200);
    assert_eq!(r, json!({"validationStatus": "OK"}));
    assert_eq!(mock.calls.lock().expect("calls").len(), 6, "a technical account is not checked");
    assert_eq!(stored().await, ko.as_str());
}

// ---------------------------------------------------------------------------------------------
// 10. Token introspection (no --dev; SQLite only)
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct IdentityMock {
    cf: String,
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

async fn identity_mock_handler(
    axum::extract::State(m): axum::extract::State<IdentityMock>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = auth.strip_prefix("Bearer ").unwrap_or("").to_owned();
    *m.hits.lock().expect("hits").entry(token.clone()).or_default() += 1;
    let user = json!({"fiscal_code": m.cf, "name": "x", "family_name": "y"});
    match token.as_str() {
        "good" => axum::Json(user).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(7)).await;
            axum::Json(user).into_response()
        }
        _ => (axum::http::StatusCode::UNAUTHORIZED, "unknown token").into_response(),
    }
}

/// Introspection configured by flags only (`--introspection-url`): the defaults of the
/// introspection timeout (5 s) and token cache must apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_introspection_flags_sqlite() {
    introspection_scenario(false).await;
}

/// The same, configured through a config file's `[identity]` section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_introspection_config_file_sqlite() {
    introspection_scenario(true).await;
}

async fn introspection_scenario(config_file: bool) {
    let cf = adult("INTROS");
    let mock = IdentityMock { cf: cf.clone(), hits: Arc::new(Mutex::new(HashMap::new())) };
    let app = axum::Router::new().route("/user", axum::routing::get(identity_mock_handler)).with_state(mock.clone());
    let addr = spawn_mock(app).await;
    let hits = |t: &str| mock.hits.lock().expect("hits").get(t).copied().unwrap_or(0);

    let db = Arc::new(TestDb::sqlite());
    let url = format!("http://{addr}/user");
    let opts = if config_file {
        let path = db.dir.path().join("cashback.toml");
        std::fs::write(&path, format!("[identity]\nintrospection_url = \"{url}\"\n")).expect("config file");
        Opts::prod().arg("--salt").arg("s").arg("--config").arg(path.display().to_string())
    } else {
        Opts::prod().arg("--salt").arg("s").arg("--introspection-url").arg(url)
    };
    let srv = Server::start(db.clone(), opts).await;

    let t0 = Instant::now();
    let r = srv.io(PUT, "/bpd/io/citizen", "good", None).await;
    assert_eq!(
        r.status,
        200,
        "first call with a good token, answered after {:?} (the introspection timeout defaults to 5 s):\n{r}",
        t0.elapsed()
    );
    let c = r.json();
    assert_eq!(c["fiscalCode"], cf.as_str(), "{c}");
    assert_eq!(hits("good"), 1);
    let c = srv.io(GET, "/bpd/io/citizen", "good", None).await.json_with(200);
    assert_eq!(c["enabled"], true, "{c}");
    assert_eq!(hits("good"), 1, "the second request must be served from the token cache (default TTL 1 h)");

    srv.io(GET, "/bpd/io/citizen", "bad", None).await.problem(401, "");
    assert_eq!(hits("bad"), 1);

    let t0 = Instant::now();
    let r = srv.io(GET, "/bpd/io/citizen", "slow", None).await;
    let took = t0.elapsed();
    r.problem(504, "");
    assert!(
        took >= Duration::from_millis(4500) && took < Duration::from_millis(6900),
        "the introspection timeout is 5 s; the request took {took:?}"
    );

    // No dev endpoints outside --dev.
    srv.send(srv.req(Method::POST, &format!("/bpd/pagopa/api/v1/login?fiscalCode={cf}"))).await.problem(404, "");
    srv.send(srv.req(GET, "/bpd/pagopa/api/v1/user?token=good")).await.expect(404);

    // The configured salt is the one used.
    let key = srv.credential("issuer", "bank-x").await;
    srv.hb(PUT, "/bpd/hb/payment-instruments/card", &key, Some(card(VISA, &cf, "bank-x"))).await.expect(200);
    let i = srv.hb(GET, &format!("/bpd/hb/payment-instruments/{VISA}"), &key, None).await.json_with(200);
    assert_eq!(i["hpan"], hpan_of(VISA, "s").as_str(), "{i}");
}

// ---------------------------------------------------------------------------------------------
// 11. Graceful shutdown keeps every acknowledged write (SQLite)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_acknowledged_writes_sqlite() {
    let db = Arc::new(TestDb::sqlite());
    let mut srv = Server::start(db.clone(), Opts::dev()).await;
    let mut tokens = Vec::new();
    for n in 0..4 {
        let cf = adult(&format!("SHUT{}", ['A', 'B', 'C', 'D'][n]));
        let tok = srv.login(&cf).await;
        srv.io(PUT, "/bpd/io/citizen", &tok, None).await.expect(200);
        tokens.push((cf, tok));
    }

    let first_done = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for n in 0..200 {
        let (cf, tok) = tokens[n % tokens.len()].clone();
        let hpan = new_hpan(&format!("shutdown-{n}"));
        let url = srv.url(&instrument_path(&hpan));
        let client = common::http_client();
        let first_done = first_done.clone();
        tasks.push(tokio::spawn(async move {
            let res = client.put(url).bearer_auth(&tok).send().await;
            first_done.notify_one();
            let outcome = match res {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    Ok((status, body))
                }
                Err(e) => Err(e.to_string()),
            };
            (hpan, cf, tok, outcome)
        }));
    }
    // Terminate as soon as the first answer is in, with the rest still in flight.
    let _ = tokio::time::timeout(Duration::from_secs(10), first_done.notified()).await;
    srv.terminate();

    let mut acked = Vec::new();
    let mut statuses: HashMap<String, u32> = HashMap::new();
    for t in tasks {
        let (hpan, cf, tok, outcome) = t.await.expect("request task");
        match outcome {
            Ok((200, _)) => {
                *statuses.entry("200".into()).or_default() += 1;
                acked.push((hpan, cf, tok));
            }
            Ok((s, body)) => {
                assert!(s == 503, "unexpected answer during shutdown: {s} {body}");
                *statuses.entry(s.to_string()).or_default() += 1;
            }
            Err(_) => *statuses.entry("transport error".into()).or_default() += 1,
        }
    }
    let exit = srv.wait_exit(Duration::from_secs(20)).await;
    let log = srv.log();
    eprintln!("shutdown outcome: {statuses:?}, exit {exit}");
    assert!(exit.success(), "the server should exit cleanly on SIGTERM ({exit}); log:\n{log}");
    assert!(log.contains("shutdown requested"), "log:\n{log}");
    assert!(!acked.is_empty(), "no request was acknowledged before the shutdown: {statuses:?}");
    drop(srv);

    let srv = Server::start(db.clone(), Opts::dev()).await;
    for (hpan, cf, tok) in &acked {
        let i = srv.io(GET, &instrument_path(hpan), tok, None).await.json_with(200);
        assert_eq!(i["Status"], "ACTIVE", "acknowledged before shutdown but lost: {i}");
        assert_eq!(i["fiscalCode"], cf.as_str(), "{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_identity_rate_limits_answer_429_sqlite() {
    let db = Arc::new(TestDb::sqlite());
    let config = db.dir.path().join("rates.toml");
    std::fs::write(
        &config,
        "[rate_limits.citizen]\nper_second = 1\nburst = 3\n[rate_limits.issuer]\nper_second = 1\nburst = 2\n",
    )
    .unwrap();
    let srv = Server::start(db.clone(), Opts::dev().arg("--config").arg(config.display().to_string())).await;
    let (a, b) = (adult("RATEA"), adult("RATEB"));
    let (ta, tb) = (srv.login(&a).await, srv.login(&b).await);
    srv.io(PUT, "/bpd/io/citizen", &ta, None).await.expect(200);
    srv.io(GET, "/bpd/io/citizen", &ta, None).await.expect(200);
    srv.io(GET, "/bpd/io/citizen", &ta, None).await.expect(200);
    // The 4th request within the second: 429 with Retry-After, nothing done.
    let limited = srv.io(GET, "/bpd/io/citizen", &ta, None).await;
    limited.problem(429, "too many requests");
    assert_eq!(limited.header("retry-after"), Some("1"), "{limited}");
    // Another citizen has their own budget.
    srv.io(PUT, "/bpd/io/citizen", &tb, None).await.expect(200);
    // After the wait, the first citizen is served again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    srv.io(GET, "/bpd/io/citizen", &ta, None).await.expect(200);
    // Issuer keys are limited per key.
    let issuer = srv.credential("issuer", "BANCA1").await;
    let hb =
        |cf: &str| srv.req(GET, &format!("/bpd/hb/citizens/{cf}")).header("Ocp-Apim-Subscription-Key", &issuer.key);
    // (404: these citizens enrolled through the app, which the issuer does not see.)
    srv.send(hb(&a)).await.expect(404);
    srv.send(hb(&b)).await.expect(404);
    let limited = srv.send(hb(&a)).await;
    limited.problem(429, "issuer");
    assert!(limited.header("retry-after").is_some());
    drop(srv);
    db.cleanup().await;
}
