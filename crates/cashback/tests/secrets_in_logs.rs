//! Secrets and personal data never reach the server log (issue 9): after a session of requests
//! at `RUST_LOG=debug` that uses every kind of secret — a salt of our own, issuer, acquirer and
//! operator API keys, citizens' tokens — and sends clear PANs (in bodies, paths and headers, valid
//! and malformed) and full IBANs, none of them appears in the log.
//!
//! Run: `cargo test -p cashback --test secrets_in_logs`

mod common;

use std::sync::Arc;

use common::{Opts, Server, TestDb, adult, luhn_complete};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_pan_or_iban_in_the_server_log() {
    let db = Arc::new(TestDb::sqlite());
    let salt = format!("salt-{}-only-in-env", std::process::id());
    let srv = Server::start(db.clone(), Opts::dev().env("CASHBACK_SALT", &salt).env("RUST_LOG", "debug")).await;
    let issuer = srv.credential("issuer", "BANCALOG").await;
    let acquirer = srv.credential("acquirer", "33333").await;
    let operator = srv.credential("operator", "logs").await;
    let cf = adult("LOGSEC");
    let token = srv.login(&cf).await;
    srv.io(Method::PUT, "/bpd/io/citizen/v2", &token, Some(json!({}))).await.expect(200);

    // Clear PANs: enrolled, read by path and by header, deleted; a malformed one (bad Luhn).
    let pan = luhn_complete("527010000000012");
    let bad_pan = format!("{}{}", &pan[..15], (pan.as_bytes()[15] - b'0' + 1) % 10);
    srv.hb(Method::PUT, "/bpd/hb/payment-instruments/card", &issuer, Some(json!({"id": pan, "fiscalCode": cf})))
        .await
        .expect(200);
    srv.hb(Method::GET, &format!("/bpd/hb/payment-instruments/{pan}"), &issuer, None).await.expect(200);
    srv.hb_h(Method::GET, "/bpd/hb/payment-instruments/v2", &issuer, &[("id", &pan)], None).await.expect(200);
    srv.hb(Method::GET, &format!("/bpd/hb/payment-instruments/{bad_pan}"), &issuer, None).await.problem(400, "pan");
    srv.hb(Method::PUT, "/bpd/hb/payment-instruments/card", &issuer, Some(json!({"id": bad_pan, "fiscalCode": cf})))
        .await
        .problem(400, "id");

    // Full IBANs: a valid one set by the citizen and by the issuer, an invalid one refused.
    let iban = "IT60X0542811101000000123456";
    let bad_iban = "IT61X0542811101000000123456";
    let patch = |i: &str| {
        json!({"payoffInstr": i, "payoffInstrType": "IBAN", "accountHolderCF": cf,
            "accountHolderName": "Mario", "accountHolderSurname": "Rossi"})
    };
    srv.io(Method::PATCH, "/bpd/io/citizen", &token, Some(patch(iban))).await.expect(200);
    srv.hb(Method::PATCH, &format!("/bpd/hb/citizens/{cf}"), &issuer, Some(patch(iban))).await.expect(200);
    let r = srv.io(Method::PATCH, "/bpd/io/citizen", &token, Some(patch(bad_iban))).await;
    assert_eq!(r.status, 400, "{r}");

    // The salt and the hashed-PAN list, fetched by the acquirer; the operator's views.
    let got = srv.hb(Method::GET, "/rtd/payment-instrument-manager/salt", &acquirer, None).await;
    assert_eq!(got.body.trim(), salt, "the acquirer gets the configured salt");
    srv.hb(Method::GET, "/rtd/payment-instrument-manager/hashed-pans", &acquirer, None).await.expect(200);
    srv.hb(Method::GET, "/bpd/ops/files", &operator, None).await.expect(200);
    // A revoked key and a wrong one.
    srv.db.revoke(&operator).await;
    srv.hb(Method::GET, "/bpd/io/citizen", &issuer, None).await.expect(401);
    let mut wrong = issuer.clone();
    wrong.key.push('x');
    srv.hb(Method::GET, "/bpd/hb/award-periods", &wrong, None).await.expect(401);
    srv.hb(Method::DELETE, &format!("/bpd/hb/payment-instruments/{pan}"), &issuer, None).await.expect(204);

    // Give the log a moment to be flushed, then look for every secret.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = srv.log();
    assert!(log.contains("/bpd/hb/payment-instruments"), "the log should record the requests (route templates)");
    for (what, secret) in [
        ("the salt", salt.as_str()),
        ("the issuer's API key", issuer.key.as_str()),
        ("the acquirer's API key", acquirer.key.as_str()),
        ("the operator's API key", operator.key.as_str()),
        ("a citizen's token", token.as_str()),
        ("a clear PAN", pan.as_str()),
        ("a malformed clear PAN", bad_pan.as_str()),
        ("a full IBAN", iban),
        ("an invalid full IBAN", bad_iban),
    ] {
        if let Some(at) = log.find(secret) {
            let line = log[..at].rsplit('\n').next().unwrap_or("");
            panic!("{what} is in the server log, line starting: {line:?}…");
        }
    }
    drop(srv);
}
