//! End-to-end test of the period close (issue 7) on the real binary, on SQLite and PostgreSQL:
//! citizens enrolled and paid through the IO and RTD APIs of a running server, then the
//! `cashback period …` commands run at chosen instants (`--now`): the close (refused before the
//! close day, then awards, summary and the payout file: PGP-encrypted Consap CSV, SHA-256 sidecar,
//! pain.001 twin checked against the XSD), its idempotence, the regeneration of a file, the payout
//! agent's outcome file (applied once, bad lines reported by number), a late IBAN paid by the
//! next payout run, a complaint accepted with a correction paid in its own file, the citizen's
//! awards and the notification outbox drained by the log sender.
//!
//! Needs `xmllint` (libxml2-utils). Run:
//! `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test period_close`

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cashback_domain::calendar::rome_date;
use common::{ApiKey, Backend, Opts, Server, TestDb, adult, it_iban, new_hpan};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime};

const ABI: &str = "12345";
const PERIOD: i64 = 77;
const SUPER_CASHBACK: i64 = 150_000;
const XSD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cashback-payout/tests/xsd/pain.001.001.03.xsd");

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn dmy(d: Date) -> String {
    format!("{:02}/{:02}/{}", d.day(), u8::from(d.month()), d.year())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---- the server side: enrollment, IBAN, acquirer file ----

/// A citizen enrolled through the IO API with one card.
struct Citizen {
    cf: String,
    token: String,
    hpan: String,
}

async fn enroll(srv: &Server, tag: &str) -> Citizen {
    let cf = adult(tag);
    let token = srv.login(&cf).await;
    srv.io(Method::PUT, "/bpd/io/citizen/v2", &token, Some(json!({}))).await.expect(200);
    let hpan = new_hpan(tag);
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{hpan}"), &token, None).await.expect(200);
    Citizen { cf, token, hpan }
}

/// The citizen's payout IBAN (`PATCH /bpd/io/citizen`), holder Mario Rossi. No IBAN checker is
/// configured: the API answers OK and the award records `NOT_CHECKED` (column 14 of the file).
async fn set_iban(srv: &Server, c: &Citizen, iban: &str) {
    let body = json!({"payoffInstr": iban, "payoffInstrType": "IBAN", "accountHolderCF": c.cf,
        "accountHolderName": "Mario", "accountHolderSurname": "Rossi"});
    let r = srv.io(Method::PATCH, "/bpd/io/citizen", &c.token, Some(body)).await.json_with(200);
    assert_eq!(r["validationStatus"], "OK", "{r}");
}

/// One acquirer row (E1 layout): a payment of `cents` on `hpan` at `at`.
fn payment(id: &str, hpan: &str, at: OffsetDateTime, cents: i64) -> String {
    format!("{ABI};00;01;{hpan};{};{id};ISS{id};;{cents};978;ACQ1;M1;T-{id};40236010;5411", rfc3339(at))
}

async fn upload(srv: &Server, key: &ApiKey, name: &str, body: Vec<u8>) -> Value {
    srv.upload_acquirer_file(key, name, body).await
}

async fn stop(mut srv: Server) {
    srv.terminate();
    let st = srv.wait_exit(Duration::from_secs(20)).await;
    assert!(st.success(), "cashback serve exited with {st}");
}

// ---- the `cashback period …` commands ----

struct PeriodCli {
    db: Arc<TestDb>,
    config: PathBuf,
}

impl PeriodCli {
    async fn run(&self, now: OffsetDateTime, args: &[&str]) -> (std::process::ExitStatus, String, String) {
        let mut all: Vec<String> = ["period", "--database", &self.db.url, "--config"].map(String::from).into();
        all.push(self.config.display().to_string());
        all.extend(["--now".to_owned(), rfc3339(now)]);
        all.extend(args.iter().map(|s| s.to_string()));
        // Info logs on: they must never reach stdout, which carries the JSON answer.
        let env = vec![("RUST_LOG".to_owned(), "info".to_owned())];
        common::run_bin(all, env, self.db.dir.path().to_owned(), Duration::from_secs(60)).await
    }

    /// Run `cashback period … ARGS` at `now`; it must succeed and print one JSON document.
    async fn ok(&self, now: OffsetDateTime, args: &[&str]) -> Value {
        let (st, out, err) = self.run(now, args).await;
        assert!(st.success(), "cashback period {args:?} failed ({st}):\nstdout: {out}\nstderr: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("period {args:?}: stdout is not one JSON value ({e}):\n{out}"))
    }

    /// Run it expecting a failure; returns stderr.
    async fn fails(&self, now: OffsetDateTime, args: &[&str]) -> String {
        let (st, out, err) = self.run(now, args).await;
        assert!(!st.success(), "cashback period {args:?} should fail:\nstdout: {out}\nstderr: {err}");
        err
    }

    /// The citizen's awards, in award id order.
    async fn awards(&self, now: OffsetDateTime, cf: &str) -> Vec<Value> {
        self.ok(now, &["awards", "--fiscal-code", cf]).await.as_array().expect("awards: an array").clone()
    }
}

// ---- the payout files ----

/// Check the files written for one payout file (the `files` entry of a payout answer): the
/// encrypted CSV, its sidecar and the pain.001 twin. Returns the CSV's rows, split in columns.
fn check_written(out_dir: &Path, agent: &cashback_pgp::PlatformKey, w: &Value) -> Vec<Vec<String>> {
    let name = w["name"].as_str().unwrap_or_else(|| panic!("no name: {w}"));
    assert!(name.starts_with("CSTAR.CONSAP.BANKT.") && name.ends_with(".csv"), "{name}");
    let xml_name = format!("{}.xml", name.trim_end_matches(".csv"));
    let want: Vec<PathBuf> = [format!("{name}.pgp"), format!("{name}.sha256sum"), xml_name.clone()]
        .iter()
        .map(|n| out_dir.join(n))
        .collect();
    let got: Vec<PathBuf> = w["paths"].as_array().unwrap().iter().map(|p| PathBuf::from(p.as_str().unwrap())).collect();
    assert_eq!(got, want, "{w}");
    assert!(!out_dir.join(name).exists(), "the plain CSV must not be written next to the .pgp");

    // The CSV, decrypted with the agent's secret key.
    let encrypted = std::fs::read(&want[0]).unwrap();
    let mut csv = Vec::new();
    agent.decrypt(&encrypted[..]).expect("decrypting with the agent key").read_to_end(&mut csv).unwrap();
    let sha = sha256_hex(&csv);
    assert_eq!(w["sha256"], sha.as_str(), "{w}");
    let sidecar = std::fs::read_to_string(&want[1]).unwrap();
    assert_eq!(sidecar, format!("{sha}  {name}\n"), "sidecar of {name}");
    let text = String::from_utf8(csv).expect("UTF-8 CSV");
    assert!(text.ends_with('\n'), "{text:?}");
    let rows: Vec<Vec<String>> = text.lines().map(|l| l.split(';').map(str::to_owned).collect::<Vec<_>>()).collect();
    assert_eq!(rows.len() as u64, w["rows"].as_u64().unwrap(), "{text}");
    let mut total = 0;
    for r in &rows {
        assert_eq!(r.len(), 17, "17 columns: {r:?}");
        assert!(r[0].len() == 9 && r[0].bytes().all(|b| b.is_ascii_digit()), "9-digit award id: {r:?}");
        assert!(!common::contains_bytes(&encrypted, r[2].as_bytes()), "{name}.pgp shows an IBAN in clear");
        total += r[5].parse::<i64>().unwrap();
    }
    assert_eq!(json!(total), w["amountCents"], "{w}");

    // The SEPA twin: valid against the pain.001.001.03 schema, one transaction per row.
    let xml = std::fs::read_to_string(&want[2]).unwrap();
    let lint = std::process::Command::new("xmllint")
        .args(["--noout", "--schema", XSD])
        .arg(&want[2])
        .output()
        .expect("xmllint is required (apt-get install libxml2-utils)");
    assert!(
        lint.status.success(),
        "{xml_name} is not valid pain.001.001.03:\n{}\n{xml}",
        String::from_utf8_lossy(&lint.stderr)
    );
    assert_eq!(xml.matches("<CdtTrfTxInf>").count(), rows.len(), "{xml}");
    for r in &rows {
        assert!(xml.contains(&format!("<EndToEndId>{}</EndToEndId>", r[0])), "{xml}");
        assert!(xml.contains(&format!("<IBAN>{}</IBAN>", r[2])), "{xml}");
    }
    rows
}

/// The names in the payout directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// The one file of a payout answer.
#[track_caller]
fn only_file(payout: &Value) -> &Value {
    let files = payout["files"].as_array().unwrap_or_else(|| panic!("no files: {payout}"));
    assert_eq!(files.len(), 1, "one file: {payout}");
    &files[0]
}

// ---- the scenario ----

async fn scenario(backend: Backend) {
    let started = Instant::now();
    let db = Arc::new(TestDb::new(backend).await);
    let dir = db.dir.path().to_owned();
    // "Today" in Italy, a little ahead so that the payments below (a few minutes from now) all
    // fall within the period, even just before midnight.
    let today = rome_date(OffsetDateTime::now_utc() + time::Duration::minutes(15));
    let day = |n: i64| today + time::Duration::days(n);
    // The CLI's clock: `day(n)` at 08:00 UTC plus `m` minutes (still `day(n)` in Rome).
    let at = |n: i64, m: i64| day(n).midnight().assume_utc() + time::Duration::hours(8) + time::Duration::minutes(m);

    // ---- set-up: the period, the agent's key, the configuration ----
    let p = PERIOD.to_string();
    db.admin(&[
        "period-set",
        "--id",
        &p,
        "--start",
        &day(-30).to_string(),
        "--end",
        &today.to_string(),
        "--grace-days",
        "1",
        "--min-transactions",
        "2",
        "--super-cashback-positions",
        "1",
    ])
    .await;
    let agent_secret = dir.join("agent.asc");
    let agent_public = db.admin(&["pgp-keygen", "--out", agent_secret.to_str().unwrap()]).await;
    assert!(agent_public.contains("BEGIN PGP PUBLIC KEY BLOCK"), "{agent_public}");
    let agent_public_file = dir.join("agent-public.asc");
    std::fs::write(&agent_public_file, &agent_public).unwrap();
    let agent =
        cashback_pgp::PlatformKey::from_armored(&std::fs::read_to_string(&agent_secret).unwrap(), None).unwrap();
    let out_dir = dir.join("payout");
    let debtor_iban = it_iban(900_000_001);
    let config = dir.join("cashback.toml");
    std::fs::write(
        &config,
        format!(
            "[scheduler]\nenabled = false\n\n[payout]\nout_dir = {:?}\nagent_public_key_file = {:?}\n\n\
             [payout.sepa]\ndebtor_name = \"Ministero dell'Economia e delle Finanze\"\ndebtor_iban = {debtor_iban:?}\n\
             debtor_bic = \"BITAITRRXXX\"\n",
            out_dir.display().to_string(),
            agent_public_file.display().to_string(),
        ),
    )
    .unwrap();
    let serve_opts = Opts::dev().arg("--config").arg(config.display().to_string());
    let cli = PeriodCli { db: db.clone(), config: config.clone() };

    // ---- citizens and payments through the APIs ----
    let srv = Server::start(db.clone(), serve_opts.clone()).await;
    let acq = srv.credential("acquirer", ABI).await;
    let a = enroll(&srv, "CLOSEA").await;
    let b = enroll(&srv, "CLOSEB").await;
    let c = enroll(&srv, "CLOSEC").await;
    let (iban_a, iban_b) = (it_iban(700_000_001), it_iban(700_000_002));
    set_iban(&srv, &a, &iban_a).await;
    // 10 %, round half down: A 20 € + 30 € + 12.34 € → 6.23 €; B 10 € + 5 € → 1.50 €; C 8 €.
    let (cashback_a, cashback_b) = (2_000 / 10 + 3_000 / 10 + 123, 1_000 / 10 + 500 / 10);
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::seconds(5);
    let s = |n: i64| base + time::Duration::seconds(n);
    let rows = [
        payment("A-1", &a.hpan, s(0), 2_000),
        payment("A-2", &a.hpan, s(1), 3_000),
        payment("A-3", &a.hpan, s(2), 1_234),
        payment("B-1", &b.hpan, s(3), 1_000),
        payment("B-2", &b.hpan, s(4), 500),
        payment("C-1", &c.hpan, s(5), 800),
    ];
    let body = (rows.join("\n") + "\n").into_bytes();
    let report = upload(&srv, &acq, &format!("CSTAR.{ABI}.TRNLOG.20261120.101010.001.csv"), body).await;
    assert_eq!((&report["accepted"], &report["rejected"]), (&json!(6), &json!(0)), "{report}");
    stop(srv).await;

    // ---- close: refused before the close day (end + grace + 1) ----
    let err = cli.fails(at(1, 0), &["close", "--period", &p]).await;
    assert!(err.contains("period") && err.contains(&day(2).to_string()), "{err}");
    assert!(listing(&out_dir).is_empty(), "nothing written: {:?}", listing(&out_dir));

    // ---- close on the close day: awards, summary, one payout file (A; B has no IBAN) ----
    let closed = cli.ok(at(2, 0), &["close", "--period", &p]).await;
    let summary = json!({"citizens": 3, "awards": 2, "notEligible": 1, "superCashbackWinners": 1,
        "cashbackCents": cashback_a + cashback_b, "jackpotCents": SUPER_CASHBACK,
        "amountCents": cashback_a + SUPER_CASHBACK + cashback_b, "withoutIban": 1});
    assert_eq!((&closed["awardPeriodId"], &closed["alreadyClosed"]), (&json!(PERIOD), &json!(false)), "{closed}");
    assert_eq!(closed["summary"], summary, "{closed}");
    let payout = &closed["payout"];
    assert_eq!(
        (&payout["ibanFilled"], &payout["reissued"], &payout["waitingForIban"]),
        (&json!(0), &json!(0), &json!(1))
    );
    let first = only_file(payout).clone();
    assert_eq!((&first["rows"], &first["amountCents"]), (&json!(1), &json!(cashback_a + SUPER_CASHBACK)), "{first}");

    let awards_a = cli.awards(at(2, 0), &a.cf).await;
    assert_eq!(awards_a.len(), 1, "{awards_a:?}");
    let award_a = awards_a[0]["awardId"].as_i64().unwrap();
    assert_eq!(
        (&awards_a[0]["kind"], &awards_a[0]["status"], &awards_a[0]["rank"], &awards_a[0]["payoutFileId"]),
        (&json!("AWARD"), &json!("SENT"), &json!(1), &first["payoutFileId"]),
        "{awards_a:?}"
    );
    let awards_b = cli.awards(at(2, 0), &b.cf).await;
    assert_eq!(awards_b.len(), 1, "{awards_b:?}");
    let award_b = awards_b[0]["awardId"].as_i64().unwrap();
    assert_eq!(
        (&awards_b[0]["status"], &awards_b[0]["amountCents"], &awards_b[0]["jackpotCents"], &awards_b[0]["ibanMasked"]),
        (&json!("NEW"), &json!(cashback_b), &json!(0), &Value::Null),
        "{awards_b:?}"
    );
    assert_eq!(cli.awards(at(2, 0), &c.cf).await, Vec::<Value>::new(), "C is not eligible");

    // The file's one row, column by column (7, the payment reason, is free text).
    let csv = check_written(&out_dir, &agent, &first);
    let r = &csv[0];
    assert_eq!(r[0], format!("{award_a:09}"));
    assert_eq!((&r[1], &r[2], &r[3], &r[4]), (&a.cf, &iban_a, &"Mario".to_owned(), &"Rossi".to_owned()));
    assert_eq!(r[5], format!("{:06}", cashback_a + SUPER_CASHBACK));
    assert_eq!(
        (r[7].as_str(), r[8].as_str()),
        ("03", "77"),
        "typology 03 (cashback + Super Cashback), period 77: {r:?}"
    );
    assert_eq!((&r[9], &r[10]), (&dmy(day(-30)), &dmy(today)));
    assert_eq!((&r[11], &r[12]), (&format!("{cashback_a:06}"), &format!("{SUPER_CASHBACK:06}")));
    assert_eq!((r[13].as_str(), r[14].as_str(), r[15].as_str(), r[16].as_str()), ("NOT_CHECKED", "", "", ""));
    let xml_first = std::fs::read_to_string(
        out_dir.join(format!("{}.xml", first["name"].as_str().unwrap().trim_end_matches(".csv"))),
    )
    .unwrap();
    assert!(xml_first.contains(&format!("<IBAN>{debtor_iban}</IBAN>")), "debtor account: {xml_first}");
    assert!(
        xml_first.contains(&format!(
            "<InstdAmt Ccy=\"EUR\">{}.{:02}</InstdAmt>",
            (cashback_a + SUPER_CASHBACK) / 100,
            (cashback_a + SUPER_CASHBACK) % 100
        )),
        "{xml_first}"
    );

    // ---- closing again changes nothing; a regenerated file has the same plain bytes ----
    let files_before = listing(&out_dir);
    assert_eq!(files_before.len(), 3, "{files_before:?}");
    let again = cli.ok(at(2, 1), &["close", "--period", &p]).await;
    assert_eq!((&again["alreadyClosed"], &again["summary"]), (&json!(true), &summary), "{again}");
    assert_eq!(again["payout"]["files"], json!([]), "{again}");
    assert_eq!(listing(&out_dir), files_before);
    let file_id = first["payoutFileId"].as_i64().unwrap().to_string();
    let regen = cli.ok(at(2, 2), &["regenerate", "--file-id", &file_id]).await;
    assert_eq!(
        (&regen["sha256"], &regen["name"], &regen["rows"]),
        (&first["sha256"], &first["name"], &json!(1)),
        "{regen}"
    );
    assert_eq!(check_written(&out_dir, &agent, &regen), csv);
    assert_eq!(listing(&out_dir), files_before);
    let err = cli.fails(at(2, 2), &["regenerate", "--file-id", "999999"]).await;
    assert!(err.contains("file-id: no payout file 999999"), "{err}");
    let files = cli.ok(at(2, 2), &["files"]).await;
    assert_eq!(
        files,
        json!([{"payoutFileId": first["payoutFileId"], "runId": files[0]["runId"], "name": first["name"], "rows": 1,
            "amountCents": cashback_a + SUPER_CASHBACK, "sha256": first["sha256"]}])
    );

    // ---- the payout agent's outcome file: A paid; an unknown id and a short line rejected ----
    let executed = day(3);
    let outcomes = format!(
        "{award_a};ORDINE ESEGUITO;;CRO1;{}\n999999999;ORDINE ESEGUITO;;CRO2;{}\n{award_b};KO;;CRO3\n",
        dmy(executed),
        dmy(executed)
    );
    let outcome_file = dir.join("ESITI.001.csv");
    std::fs::write(&outcome_file, &outcomes).unwrap();
    let outcome_path = outcome_file.display().to_string();
    let applied = cli.ok(at(2, 3), &["inbound", &outcome_path]).await;
    assert_eq!(
        (&applied["file"], &applied["sha256"], &applied["status"], &applied["applied"], &applied["unchanged"]),
        (&json!("ESITI.001.csv"), &json!(sha256_hex(outcomes.as_bytes())), &json!("APPLIED"), &json!(1), &json!(0)),
        "{applied}"
    );
    let rejected = applied["rejected"].as_array().unwrap();
    let lines: Vec<(&Value, &Value)> = rejected.iter().map(|r| (&r["line"], &r["field"])).collect();
    assert_eq!(lines, vec![(&json!(2), &json!("uniqueID")), (&json!(3), &json!("line"))], "{applied}");
    assert!(rejected[0]["reason"].as_str().unwrap().contains("999999999"), "{applied}");
    let twice = cli.ok(at(2, 4), &["inbound", &outcome_path]).await;
    assert_eq!((&twice["status"], &twice["applied"]), (&json!("ALREADY_APPLIED"), &json!(0)), "{twice}");
    let awards_a = cli.awards(at(2, 4), &a.cf).await;
    assert_eq!(awards_a[0]["status"], "EXECUTED", "{awards_a:?}");
    let o = &awards_a[0]["outcome"];
    assert_eq!(
        (&o["result"], &o["reason"], &o["cro"], &o["executionDate"]),
        (&json!("ORDINE ESEGUITO"), &Value::Null, &json!("CRO1"), &json!(executed.to_string())),
        "{o}"
    );
    assert_eq!(cli.awards(at(2, 4), &b.cf).await[0]["status"], "NEW", "B's award was not touched");

    // ---- B sets an IBAN late: the next payout run pays B's award in a new file ----
    let srv = Server::start(db.clone(), serve_opts.clone()).await;
    let b = Citizen { token: srv.login(&b.cf).await, ..b };
    set_iban(&srv, &b, &iban_b).await;
    stop(srv).await;
    let payout = cli.ok(at(2, 5), &["payout"]).await;
    assert_eq!(
        (&payout["ibanFilled"], &payout["reissued"], &payout["waitingForIban"]),
        (&json!(1), &json!(0), &json!(0))
    );
    let second = only_file(&payout).clone();
    assert_ne!(second["name"], first["name"]);
    let csv = check_written(&out_dir, &agent, &second);
    assert_eq!(csv[0][0], format!("{award_b:09}"));
    assert_eq!(
        (&csv[0][1], &csv[0][2], &csv[0][5], &csv[0][7]),
        (&b.cf, &iban_b, &format!("{cashback_b:06}"), &"01".to_owned())
    );
    assert_eq!(cli.awards(at(2, 5), &b.cf).await[0]["status"], "SENT");
    assert_eq!(cli.ok(at(2, 5), &["payout"]).await["files"], json!([]), "nothing left to pay");

    // ---- a complaint: filed once, accepted with a correction paid in the next file ----
    let file_args = [
        "complaints",
        "file",
        "--fiscal-code",
        &a.cf,
        "--period",
        &p,
        "--kind",
        "WRONG_AMOUNT",
        "--description",
        "Manca un acquisto di 12 euro",
    ];
    let filed = cli.ok(at(2, 6), &file_args).await;
    assert_eq!((&filed["created"], &filed["complaint"]["status"]), (&json!(true), &json!("OPEN")), "{filed}");
    let complaint = filed["complaint"]["complaintId"].as_i64().unwrap();
    let refiled = cli.ok(at(2, 7), &file_args).await;
    assert_eq!(
        (&refiled["created"], &refiled["complaint"]["complaintId"]),
        (&json!(false), &json!(complaint)),
        "{refiled}"
    );
    let id = complaint.to_string();
    let decided = cli.ok(at(2, 8), &["complaints", "decide", "--id", &id, "--accept-cents", "500"]).await;
    assert_eq!(decided["changed"], true, "{decided}");
    assert_eq!(
        (&decided["complaint"]["status"], &decided["complaint"]["correctionCents"]),
        (&json!("ACCEPTED"), &json!(500))
    );
    let correction = decided["complaint"]["correctionAwardId"].as_i64().unwrap_or_else(|| panic!("{decided}"));
    let same = cli.ok(at(2, 8), &["complaints", "decide", "--id", &id, "--accept-cents", "500"]).await;
    assert_eq!(same["changed"], false, "{same}");
    let payout = cli.ok(at(2, 9), &["payout"]).await;
    let third = only_file(&payout).clone();
    assert_eq!((&third["rows"], &third["amountCents"]), (&json!(1), &json!(500)), "{third}");
    let csv = check_written(&out_dir, &agent, &third);
    let r = &csv[0];
    assert_eq!(
        (r[0].clone(), r[2].clone(), r[5].clone()),
        (format!("{correction:09}"), iban_a.clone(), "000500".to_owned())
    );
    assert_eq!(
        (r[15].clone(), r[16].clone()),
        (complaint.to_string(), award_a.to_string()),
        "ticket and related ids: {r:?}"
    );
    let err = cli.fails(at(2, 10), &["complaints", "decide", "--id", &id, "--reject"]).await;
    assert!(err.contains("already decided"), "{err}");

    // ---- the citizen's awards, the files, the outbox ----
    let awards_a = cli.awards(at(2, 11), &a.cf).await;
    let kinds: Vec<(&Value, &Value, &Value)> =
        awards_a.iter().map(|a| (&a["kind"], &a["status"], &a["amountCents"])).collect();
    assert_eq!(
        kinds,
        vec![
            (&json!("AWARD"), &json!("EXECUTED"), &json!(cashback_a + SUPER_CASHBACK)),
            (&json!("CORRECTION"), &json!("SENT"), &json!(500))
        ],
        "{awards_a:?}"
    );
    assert_eq!((&awards_a[1]["relatedId"], &awards_a[1]["complaintId"]), (&json!(award_a), &json!(complaint)));
    let files = cli.ok(at(2, 11), &["files"]).await;
    let names: Vec<&Value> = files.as_array().unwrap().iter().map(|f| &f["name"]).collect();
    assert_eq!(names, vec![&first["name"], &second["name"], &third["name"]]);
    assert_eq!(listing(&out_dir).len(), 9, "3 files per payout file, nothing else: {:?}", listing(&out_dir));
    // Notices: A and B awarded, C not eligible, B's missing IBAN, A's payment, A's complaint.
    let sent = cli.ok(at(2, 12), &["notify", "--rounds", "10"]).await;
    assert_eq!(sent, json!({"dispatched": {"sent": 6, "retried": 0, "failed": 0}, "outbox": {"pending": 0}}));
    let none = cli.ok(at(2, 13), &["notify", "--rounds", "10"]).await;
    assert_eq!(none, json!({"dispatched": {"sent": 0, "retried": 0, "failed": 0}, "outbox": {"pending": 0}}));

    // ---- the same over HTTP: the citizen's awards and complaints, the operators' desk ----
    let srv = Server::start(db.clone(), serve_opts.clone()).await;
    let a = Citizen { token: srv.login(&a.cf).await, ..a };
    let op = srv.credential("operator", "desk").await;
    let awards = srv.io(Method::GET, "/bpd/io/awards", &a.token, None).await.json_with(200);
    let kinds: Vec<_> = awards.as_array().unwrap().iter().map(|x| (x["kind"].clone(), x["status"].clone())).collect();
    assert_eq!(kinds, vec![(json!("AWARD"), json!("EXECUTED")), (json!("CORRECTION"), json!("SENT"))], "{awards}");
    let masked = awards[0]["ibanMasked"].as_str().unwrap();
    assert!(masked.contains('*') && !masked.contains(&iban_a[6..20]), "IBAN masked: {masked}");
    let mine = srv.io(Method::GET, "/bpd/io/complaints", &a.token, None).await.json_with(200);
    assert_eq!((mine.as_array().unwrap().len(), &mine[0]["status"]), (1, &json!("ACCEPTED")), "{mine}");
    assert!(mine[0].get("fiscalCode").is_none(), "a citizen's own view carries no fiscal code: {mine}");
    // Today (the server's clock) is the period's last day: the complaint window opens tomorrow.
    let early = srv
        .io(
            Method::POST,
            "/bpd/io/complaints",
            &a.token,
            Some(json!({"awardPeriodId": PERIOD, "kind": "MISSING_TRANSACTION", "description": "x"})),
        )
        .await;
    early.problem(400, "awardPeriodId");
    let bad = srv
        .io(
            Method::POST,
            "/bpd/io/complaints",
            &a.token,
            Some(json!({"awardPeriodId": PERIOD, "kind": "LOST", "description": "x"})),
        )
        .await;
    bad.problem(400, "kind");
    let ops = |m: Method, path: &str| srv.req(m, path).header("Ocp-Apim-Subscription-Key", &op.key);
    let desk = srv.send(ops(Method::GET, "/bpd/ops/complaints?status=ACCEPTED")).await.json_with(200);
    assert_eq!((desk.as_array().unwrap().len(), &desk[0]["fiscalCode"]), (1, &json!(a.cf)), "{desk}");
    let id = desk[0]["complaintId"].as_i64().unwrap();
    let again = srv
        .send(ops(Method::POST, &format!("/bpd/ops/complaints/{id}/decision")).json(&json!({"decision": "REJECT"})))
        .await;
    again.problem(409, "already decided");
    let same = srv
        .send(
            ops(Method::POST, &format!("/bpd/ops/complaints/{id}/decision"))
                .json(&json!({"decision": "ACCEPT", "correctionCents": 500})),
        )
        .await
        .json_with(200);
    assert_eq!(same["status"], "ACCEPTED");
    let summary = srv.send(ops(Method::GET, &format!("/bpd/ops/award-periods/{PERIOD}/close"))).await.json_with(200);
    assert_eq!((&summary["awards"], &summary["notEligible"]), (&json!(2), &json!(1)), "{summary}");
    // The awards now by status (every kind): A's award executed; B's award and A's correction sent.
    assert_eq!(
        summary["byStatus"],
        json!([{"status": "EXECUTED", "awards": 1, "amountCents": cashback_a + SUPER_CASHBACK},
            {"status": "SENT", "awards": 2, "amountCents": cashback_b + 500}]),
        "{summary}"
    );
    // The payout files, newest first.
    let files = srv.send(ops(Method::GET, "/bpd/ops/payout-files")).await.json_with(200);
    let names: Vec<&Value> = files.as_array().unwrap().iter().map(|f| &f["name"]).collect();
    assert_eq!(names, vec![&third["name"], &second["name"], &first["name"]], "{files}");
    let newest = &files[0];
    assert_eq!(
        (&newest["payoutFileId"], &newest["rows"], &newest["amountCents"], &newest["sha256"]),
        (&third["payoutFileId"], &json!(1), &json!(500), &third["sha256"]),
        "{newest}"
    );
    assert!(newest["runId"].as_i64().unwrap() > files[1]["runId"].as_i64().unwrap(), "one run per payout: {files}");
    assert_eq!((&newest["chunk"], &newest["totalChunks"]), (&json!(1), &json!(1)));
    common::assert_utc_timestamp(&newest["createdAt"], "createdAt");
    let one = srv.send(ops(Method::GET, "/bpd/ops/payout-files?limit=1")).await.json_with(200);
    assert_eq!(one, json!([newest]));
    srv.send(ops(Method::GET, "/bpd/ops/award-periods/4242/close")).await.problem(404, "not closed");
    let outbox = srv.send(ops(Method::GET, "/bpd/ops/notifications")).await.json_with(200);
    assert_eq!(outbox, json!({"pending": 0, "sent": 6, "failed": 0}));
    // A citizen's token is no operator key, and an operator key is not a citizen's.
    srv.send(srv.req(Method::GET, "/bpd/ops/complaints")).await.expect(401);
    srv.io(Method::GET, "/bpd/io/awards", "not-a-token", None).await.expect(401);
    stop(srv).await;

    db.cleanup().await;
    eprintln!("period close scenario on {backend:?}: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn period_close_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn period_close_on_postgres() {
    scenario(Backend::Postgres).await;
}
