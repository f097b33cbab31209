//! End to end: the acquirer's batch tool (`cashback acquirer run`) against a running
//! `cashback serve --dev`: a raw export with clear PANs → hashed, filtered, validated, encrypted,
//! uploaded → ingested by the platform → counted for the right citizens. Also: 409 on a second
//! run counts as sent, a failed upload waits in pending/ and goes out on the next run, a file
//! with another sender code is not sent, and no clear PAN appears in any output or log.
//! Over HTTPS with mutual TLS too: the tool checks the platform's certificate against
//! `--ca-cert` and presents the client certificate bound to its API key.
//! On SQLite and PostgreSQL (`CASHBACK_TEST_PG_URL`, never skipped: the PostgreSQL test panics
//! without it).
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test acquirer_tool`

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::pki::Pki;
use common::{ApiKey, BIN, Backend, DEV_SALT, Opts, Server, TestDb, adult, hpan_of, luhn_complete};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

const ABI: &str = "12345";

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// An E1 row with a clear PAN in column 4.
fn row(sender: &str, id: &str, pan: &str, at: OffsetDateTime, cents: u64) -> String {
    format!("{sender};00;01;{pan};{};{id};ISS{id};;{cents};978;ACQ1;MERCH1;TERM1;40236010;5411", rfc3339(at))
}

struct Run {
    ok: bool,
    summary: Value,
    stdout: String,
    stderr: String,
}

async fn run_tool(api: &str, key: &ApiKey, input: Option<&Path>, workdir: &Path) -> Run {
    run_tool_with(api, key, input, workdir, &[]).await
}

async fn run_tool_with(api: &str, key: &ApiKey, input: Option<&Path>, workdir: &Path, extra: &[String]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("CASHBACK_ACQUIRER_API_KEY").env_remove("CASHBACK_ACQUIRER_CONFIG");
    cmd.args(["acquirer", "run", "--api", api, "--workdir"])
        .arg(workdir)
        .args(["--retries", "1", "--backoff-ms", "50", "--timeout-secs", "30", "--quiet"])
        .args(extra)
        .env("CASHBACK_ACQUIRER_API_KEY", &key.key);
    if let Some(i) = input {
        cmd.arg("--input").arg(i);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("running cashback acquirer run")).await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let summary = serde_json::from_str(stdout.lines().last().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("summary JSON: {e}\nstdout: {stdout}\nstderr: {stderr}"));
    Run { ok: out.status.success(), summary, stdout, stderr }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

async fn scenario(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let today = OffsetDateTime::now_utc().date();
    let (start, end) = (today - time::Duration::days(30), today + time::Duration::days(30));
    db.admin(&["period-set", "--id", "90", "--start", &start.to_string(), "--end", &end.to_string()]).await;
    let srv = Server::start(db.clone(), common::Opts::dev()).await;
    let acq = srv.credential("acquirer", ABI).await;

    // Citizens A (two cards) and B (one card); a card never enrolled.
    let (pan_a1, pan_a2, pan_b, stranger) = (
        luhn_complete("411111000000123"),
        luhn_complete("550000000000456"),
        luhn_complete("401288000000188"),
        luhn_complete("601100000000999"),
    );
    let (cf_a, cf_b) = (adult("TOOLA"), adult("TOOLB"));
    let (ta, tb) = (srv.login(&cf_a).await, srv.login(&cf_b).await);
    for t in [&ta, &tb] {
        srv.io(Method::PUT, "/bpd/io/citizen", t, None).await.expect(200);
    }
    for (t, pan) in [(&ta, &pan_a1), (&ta, &pan_a2), (&tb, &pan_b)] {
        let h = hpan_of(pan, DEV_SALT);
        srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{h}"), t, None).await.expect(200);
    }

    let at = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let s = |n: i64| at + time::Duration::seconds(n);
    let mut bad_luhn = pan_a1.clone();
    let last = bad_luhn.pop().unwrap();
    bad_luhn.push(if last == '0' { '1' } else { '0' });
    let rows = [
        row(ABI, "T1", &pan_a1, s(0), 2_500),                           // A: 2.50 €
        row(ABI, "T2", &pan_b, s(1), 1_000),                            // B: 1.00 €
        row(ABI, "T3", &format!(" {pan_a2} "), s(2), 990),              // A: 0.99 €
        row(ABI, "T4", &stranger, s(3), 5_000),                         // not enrolled
        row(ABI, "T5", &pan_a1, s(4), 1_000).replace(";978;", ";EUR;"), // bad currency
        row(ABI, "T6", &bad_luhn, s(5), 1_000),                         // PAN fails Luhn
        String::new(),                                                  // blank line
        format!("X;{}", row(ABI, "T7", &pan_b, s(6), 1_000)),           // 16 columns
    ];
    let raw = rows.join("\n") + "\n";
    let work = db.dir.path().join("acq-work");
    let inbox = db.dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let name1 = format!("CSTAR.{ABI}.TRNLOG.20261120.101010.001.csv");
    std::fs::write(inbox.join(&name1), &raw).unwrap();

    // ---- run 1: the directory's file is filtered, encrypted, sent and ingested ----
    let r = run_tool(&srv.base, &acq, Some(&inbox), &work).await;
    assert!(r.ok, "run 1 failed:\n{}\n{}", r.stdout, r.stderr);
    let sm = &r.summary;
    assert_eq!(sm["status"], "SENT", "{sm}");
    assert_eq!(sm["file"], name1.as_str());
    assert_eq!(
        (&sm["rows_read"], &sm["kept"], &sm["not_enrolled"], &sm["rejected"]),
        (&json!(8), &json!(3), &json!(1), &json!(4)),
        "{sm}"
    );
    assert_eq!(sm["enrolled_hpans"], 3);
    assert_eq!((&sm["report"]["accepted"], &sm["report"]["rejected"]), (&json!(3), &json!(0)), "{sm}");
    assert_eq!(names_in(&work.join("sent")), [format!("{name1}.pgp")]);
    assert_eq!(names_in(&inbox.join("processed")), [name1.as_str()]);
    assert_eq!(names_in(&inbox), ["processed"]);
    // The rejected-row report: line, field, reason, masked PAN.
    let report = std::fs::read_to_string(work.join("reports").join(format!("{name1}.rejected.csv"))).unwrap();
    let masked_a1 = format!("{}******{}", &pan_a1[..6], &pan_a1[12..]);
    assert!(report.contains("5;currency;") && report.contains(&masked_a1), "{report}");
    assert!(report.contains("6;pan;fails the Luhn check;"), "{report}");
    assert!(report.contains("7;record;blank line;") && report.contains("8;record;expected 15 fields"), "{report}");
    // The platform's view: the file and the citizens' totals.
    let file = srv
        .send(
            srv.req(Method::GET, &format!("/rtd/file-reporter/files/{name1}.pgp"))
                .header("Ocp-Apim-Subscription-Key", &acq.key),
        )
        .await
        .json_with(200);
    assert_eq!(
        (&file["status"], &file["accepted"], &file["ineligible"]),
        (&json!("DONE"), &json!(3), &json!(0)),
        "{file}"
    );
    let total = "/bpd/io/winning-transactions/total-cashback?awardPeriodId=90";
    let tot_a = srv.send(srv.req(Method::GET, total).bearer_auth(&ta)).await.json_with(200);
    assert_eq!(tot_a, json!({"totalCashback": 3.49, "transactionNumber": 2}));
    let tot_b = srv.send(srv.req(Method::GET, total).bearer_auth(&tb)).await.json_with(200);
    assert_eq!(tot_b, json!({"totalCashback": 1, "transactionNumber": 1}));

    // ---- run 2: the same file again → 409 from the platform, counted as sent ----
    std::fs::write(inbox.join(&name1), &raw).unwrap();
    let r2 = run_tool(&srv.base, &acq, Some(&inbox.join(&name1)), &work).await;
    assert!(r2.ok, "run 2 failed:\n{}\n{}", r2.stdout, r2.stderr);
    assert!(r2.stderr.contains("already uploaded (409)"), "{}", r2.stderr);
    std::fs::remove_file(inbox.join(&name1)).unwrap();

    // ---- run 3: the platform is unreachable → the encrypted file waits in pending/ ----
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let name2 = format!("CSTAR.{ABI}.TRNLOG.20261120.111111.002.csv");
    std::fs::write(inbox.join(&name2), row(ABI, "T8", &pan_b, s(10), 3_000) + "\n").unwrap();
    let r3 = run_tool(&dead, &acq, Some(&inbox), &work).await;
    assert!(!r3.ok, "an unreachable platform must fail the run:\n{}", r3.stderr);
    assert_eq!(r3.summary["status"], "FAILED");
    assert!(names_in(&inbox).contains(&name2), "the input stays in place");
    // An encrypted file as a failed upload leaves it in pending/: retried (and still failing)
    // while the platform is down.
    let armored = srv
        .send(srv.req(Method::GET, "/rtd/csv-transaction/publickey").header("Ocp-Apim-Subscription-Key", &acq.key))
        .await
        .expect(200)
        .body
        .clone();
    let recipient = cashback_pgp::RecipientKey::from_armored(&armored).unwrap();
    let plain = row(ABI, "T9", &hpan_of(&pan_b, DEV_SALT), s(11), 2_000) + "\n";
    let mut enc = Vec::new();
    recipient.encrypt(plain.as_bytes(), &mut enc).unwrap();
    let pending_name = format!("CSTAR.{ABI}.TRNLOG.20261120.121212.003.csv.pgp");
    std::fs::write(work.join("pending").join(&pending_name), enc).unwrap();
    let r4 = run_tool(&dead, &acq, None, &work).await;
    assert!(!r4.ok && r4.summary["pending_left"] == 1, "{}\n{}", r4.stdout, r4.stderr);
    assert_eq!(names_in(&work.join("pending")), [pending_name.as_str()]);

    // ---- run 5: the platform is back: the pending file goes out first, then the new input ----
    let r5 = run_tool(&srv.base, &acq, Some(&inbox), &work).await;
    assert!(r5.ok, "run 5 failed:\n{}\n{}", r5.stdout, r5.stderr);
    assert_eq!((&r5.summary["pending_sent"], &r5.summary["pending_left"]), (&json!(1), &json!(0)));
    assert_eq!(r5.summary["file"], name2.as_str());
    assert_eq!(r5.summary["report"]["accepted"], 1, "{}", r5.summary);
    assert!(names_in(&work.join("pending")).is_empty());
    let tot_b = srv.send(srv.req(Method::GET, total).bearer_auth(&tb)).await.json_with(200);
    assert_eq!(tot_b, json!({"totalCashback": 6, "transactionNumber": 3}));

    // ---- a row with another sender code: the whole file fails, nothing sent ----
    let name4 = format!("CSTAR.{ABI}.TRNLOG.20261120.131313.004.csv");
    let mixed = [row(ABI, "U1", &pan_a1, s(20), 100), row("54321", "U2", &pan_a1, s(21), 100)].join("\n");
    std::fs::write(inbox.join(&name4), mixed).unwrap();
    let r6 = run_tool(&srv.base, &acq, Some(&inbox.join(&name4)), &work).await;
    assert!(!r6.ok, "{}", r6.stderr);
    assert!(r6.summary["error"].as_str().unwrap().contains("sender code"), "{}", r6.summary);
    // An empty file fails too.
    let name5 = format!("CSTAR.{ABI}.TRNLOG.20261120.141414.005.csv");
    std::fs::write(inbox.join(&name5), "").unwrap();
    let r7 = run_tool(&srv.base, &acq, Some(&inbox.join(&name5)), &work).await;
    assert!(!r7.ok && r7.summary["error"].as_str().unwrap().contains("empty"), "{}", r7.summary);
    let listed = srv
        .send(srv.req(Method::GET, "/rtd/file-reporter/v2/file-report").header("Ocp-Apim-Subscription-Key", &acq.key))
        .await
        .json_with(200);
    let names: Vec<&str> =
        listed["filesRecentlyUploaded"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(!names.iter().any(|n| n.contains(".004.") || n.contains(".005.")), "{listed}");

    // ---- never a clear PAN: work files, tool output, server log ----
    let pans = [&pan_a1, &pan_a2, &pan_b, &stranger, &bad_luhn];
    let mut texts: Vec<(String, Vec<u8>)> =
        files_under(&work).into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect();
    for r in [&r, &r2, &r3, &r4, &r5, &r6, &r7] {
        texts.push(("tool stdout".into(), r.stdout.clone().into_bytes()));
        texts.push(("tool stderr".into(), r.stderr.clone().into_bytes()));
    }
    texts.push(("server log".into(), srv.log().into_bytes()));
    for (what, bytes) in &texts {
        for pan in pans {
            assert!(!common::contains_bytes(bytes, pan.as_bytes()), "a clear PAN in {what}");
        }
    }
    // The plain output has hpans in column 4.
    let out = std::fs::read_to_string(work.join("output").join(&name1)).unwrap();
    assert!(out.starts_with("#sha256sum:"), "{out}");
    assert!(out.contains(&hpan_of(&pan_a1, DEV_SALT)) && out.contains(&hpan_of(&pan_a2, DEV_SALT)));
    drop(srv);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirer_tool_end_to_end_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirer_tool_end_to_end_on_postgres() {
    scenario(Backend::Postgres).await;
}

/// The tool over HTTPS against a server that requires mutual TLS for acquirer keys.
async fn over_mutual_tls(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let today = OffsetDateTime::now_utc().date();
    let (start, end) = (today - time::Duration::days(30), today + time::Duration::days(30));
    db.admin(&["period-set", "--id", "90", "--start", &start.to_string(), "--end", &end.to_string()]).await;
    let pki = Pki::new(&db.dir.path().join("pki"), "platform");
    let cert = pki.client("acquirer-12345");
    let other = pki.client("someone-else");
    let out = db
        .admin(&[
            "credential-create",
            "--kind",
            "acquirer",
            "--scope",
            ABI,
            "--id",
            "acq-mtls",
            "--client-cert",
            &cert.cert_path.display().to_string(),
        ])
        .await;
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let acq = ApiKey { id: "acq-mtls".into(), key: v["apiKey"].as_str().unwrap().to_owned() };
    let ca = pki.ca_path.display().to_string();
    let opts = Opts::dev().https(&pki).arg("--tls-client-ca").arg(&ca).arg("--tls-require-client-cert");
    let srv = Server::start(db.clone(), opts).await;
    assert!(srv.base.starts_with("https://"));

    let pan = luhn_complete("411111000000777");
    let cf = adult("TLSTO");
    let token = srv.login(&cf).await;
    srv.io(Method::PUT, "/bpd/io/citizen", &token, None).await.expect(200);
    let h = hpan_of(&pan, DEV_SALT);
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{h}"), &token, None).await.expect(200);

    let at = OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let inbox = db.dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let name = format!("CSTAR.{ABI}.TRNLOG.20261121.101010.001.csv");
    std::fs::write(inbox.join(&name), row(ABI, "M1", &pan, at, 4_000) + "\n").unwrap();
    let arg = |s: &str| s.to_owned();
    let path = |p: &Path| p.display().to_string();
    let mtls = |c: &common::pki::ClientCert| {
        vec![
            arg("--ca-cert"),
            arg(&ca),
            arg("--client-cert"),
            path(&c.cert_path),
            arg("--client-key"),
            path(&c.key_path),
        ]
    };

    // Without a client certificate: the platform answers 401, nothing is sent.
    let work = db.dir.path().join("work");
    let r = run_tool_with(&srv.base, &acq, Some(&inbox), &work, &[arg("--ca-cert"), arg(&ca)]).await;
    assert!(!r.ok && r.summary["status"] == "FAILED", "{}\n{}", r.stdout, r.stderr);
    assert!(r.summary["error"].as_str().unwrap().contains("401"), "{}", r.summary);
    // Another certificate of the same CA: 403.
    let r = run_tool_with(&srv.base, &acq, Some(&inbox), &work, &mtls(&other)).await;
    assert!(!r.ok && r.summary["error"].as_str().unwrap().contains("403"), "{}", r.summary);
    // The system's roots do not know the platform's CA: the TLS connection fails.
    let no_ca = [arg("--client-cert"), path(&cert.cert_path), arg("--client-key"), path(&cert.key_path)].to_vec();
    let r = run_tool_with(&srv.base, &acq, Some(&inbox), &work, &no_ca).await;
    assert!(!r.ok && r.summary["status"] == "FAILED", "{}", r.summary);
    assert_eq!(names_in(&inbox), [name.as_str()], "the input waits for a successful run");

    // The bound certificate: the file is hashed, encrypted, uploaded and ingested over mTLS.
    let r = run_tool_with(&srv.base, &acq, Some(&inbox), &work, &mtls(&cert)).await;
    assert!(r.ok, "the mTLS run failed:\n{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.summary["status"], "SENT", "{}", r.summary);
    assert_eq!(r.summary["report"]["accepted"], 1, "{}", r.summary);
    let total = "/bpd/io/winning-transactions/total-cashback?awardPeriodId=90";
    let tot = srv.send(srv.req(Method::GET, total).bearer_auth(&token)).await.json_with(200);
    assert_eq!(tot, json!({"totalCashback": 4, "transactionNumber": 1}));
    // Client certificate files with an http:// URL are refused before anything is sent.
    let r = run_tool_with("http://127.0.0.1:9", &acq, None, &work, &mtls(&cert)).await;
    assert!(!r.ok && r.stderr.contains("need an https://"), "{}", r.stderr);
    drop(srv);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirer_tool_over_mutual_tls_on_sqlite() {
    over_mutual_tls(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquirer_tool_over_mutual_tls_on_postgres() {
    over_mutual_tls(Backend::Postgres).await;
}
