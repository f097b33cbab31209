//! Privacy end to end (issue 9), on SQLite and PostgreSQL: a citizen's data export through the
//! IO API and the operator CLI, the audit trail of their changes, and the erasure of a withdrawn
//! citizen once the retention period is over (`cashback admin erase-expired`), which leaves the
//! others untouched.

mod common;

use std::sync::Arc;

use common::{Backend, Opts, Server, TestDb, adult, it_iban, new_hpan};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

async fn scenario(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let srv = Server::start(db.clone(), Opts::dev()).await;
    // A period that runs now: the programme is not over, so enabled citizens are kept (the
    // historical periods seeded in dev mode ended years ago).
    let today = OffsetDateTime::now_utc().date();
    let (start, end) = ((today - time::Duration::days(10)).to_string(), (today + time::Duration::days(60)).to_string());
    db.admin(&["period-set", "--id", "90", "--start", &start, "--end", &end]).await;
    let (cf_a, cf_b) = (adult("PRIVA"), adult("PRIVB"));
    let (hpan_a, hpan_b) = (new_hpan("pa"), new_hpan("pb"));
    let (ta, tb) = (srv.login(&cf_a).await, srv.login(&cf_b).await);
    for (cf, t, h) in [(&cf_a, &ta, &hpan_a), (&cf_b, &tb, &hpan_b)] {
        srv.io(Method::PUT, "/bpd/io/citizen/v2", t, Some(json!({}))).await.expect(200);
        srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{h}"), t, None).await.expect(200);
        let body = json!({"payoffInstr": it_iban(7), "payoffInstrType": "IBAN", "accountHolderCF": cf,
            "accountHolderName": "Mario", "accountHolderSurname": "Rossi"});
        srv.io(Method::PATCH, "/bpd/io/citizen", t, Some(body)).await.expect(200);
    }

    // The citizen's own export: their data, their changes, nobody else's.
    let doc = srv.io(Method::GET, "/bpd/io/citizen/export", &ta, None).await.json_with(200);
    assert_eq!(doc["citizen"]["fiscalCode"], cf_a.as_str());
    assert_eq!(doc["citizen"]["payoff"]["iban"], it_iban(7).as_str(), "the citizen's own IBAN, in full");
    assert_eq!(doc["instruments"].as_array().unwrap().len(), 1);
    assert_eq!(doc["instruments"][0]["hpan"], hpan_a.as_str());
    let actions: Vec<&str> =
        doc["auditTrail"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["citizen.payoff_set", "citizen.enrolled"], "{doc}");
    let actor = format!("citizen:{cf_a}");
    assert!(doc["auditTrail"].as_array().unwrap().iter().all(|e| e["actor"] == actor.as_str()));
    let text = doc.to_string();
    assert!(!text.contains(&cf_b) && !text.contains(&hpan_b), "B's data in A's export");
    // The operator's CLI export is the same document.
    let cli: Value = serde_json::from_str(&db.admin(&["citizen-export", "--fiscal-code", &cf_a]).await).unwrap();
    assert_eq!(cli["citizen"], doc["citizen"]);
    assert_eq!(cli["instruments"], doc["instruments"]);

    // A withdraws; within the retention nothing is erased, after it A is (B is enrolled: kept).
    srv.io(Method::DELETE, "/bpd/io/citizen", &ta, None).await.expect(204);
    let now = OffsetDateTime::now_utc();
    let at =
        |days: i64| (now + time::Duration::days(days)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let early: Value =
        serde_json::from_str(&db.admin(&["erase-expired", "--retention-days", "30", "--now", &at(2)]).await).unwrap();
    assert_eq!(early["erased"], 0, "{early}");
    let late: Value =
        serde_json::from_str(&db.admin(&["erase-expired", "--retention-days", "30", "--now", &at(32)]).await).unwrap();
    assert_eq!(late["erased"], 1, "{late}");
    srv.io(Method::GET, "/bpd/io/citizen/export", &ta, None).await.expect(404);
    srv.io(Method::GET, &format!("/bpd/io/payment-instruments/{hpan_a}"), &ta, None).await.expect(404);
    srv.io(Method::GET, "/bpd/io/citizen/export", &tb, None).await.expect(200);
    // The trail keeps the erasure, made from the CLI.
    let trail = db.admin(&["audit", "--subject", &cf_a, "--action", "citizen.erased"]).await;
    let ev: Value = serde_json::from_str(trail.lines().next().expect("an erasure event")).unwrap();
    assert!(ev["actor"].as_str().unwrap().starts_with("cli"), "{ev}");
    assert_eq!(ev["detail"]["instruments"], 1, "{ev}");
    drop(srv);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_on_postgres() {
    scenario(Backend::Postgres).await;
}
