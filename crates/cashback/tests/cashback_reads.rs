//! End-to-end tests of the cashback reads on the real binary, on SQLite and PostgreSQL: total
//! cashback, the Super Cashback ranking (v1, v2 with milestones, HB, operators' view and the
//! `admin ranking` command) and the transaction list (pages, cursors, days, reversals, count by
//! day, v1), after acquirer files with payments, partial and total reversals, a reversal whose
//! payment arrives in a later file, and enough payments to reach the period cap.
//!
//! The server runs with a 60 s ranking refresh, so the ranks seen right after an upload come from
//! the catch-up the upload triggers and from the read-your-writes wait of the ranking handlers.
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test cashback_reads`

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cashback_domain::calendar::rome_date;
use common::{ApiKey, Backend, Opts, Resp, Server, TestDb, adult, new_hpan};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

const ABI: &str = "12345";
const PERIOD: i64 = 90;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The wire form of an instant (UTC, milliseconds, `Z`); instants here are whole seconds.
fn wire_ts(t: OffsetDateTime) -> String {
    format!("{}.000Z", rfc3339(t).trim_end_matches('Z'))
}

/// Euros as the API writes them: an integer when whole.
fn eur(cents: i64) -> Value {
    if cents % 100 == 0 { json!(cents / 100) } else { json!(cents as f64 / 100.0) }
}

/// One acquirer row (E1 layout) and what the list must show for it.
#[derive(Clone, Debug)]
struct Trx {
    id: String,
    hpan: String,
    at: OffsetDateTime,
    cents: i64,
    reversal: bool,
    corr: Option<&'static str>,
    merchant: &'static str,
    /// The cashback the list shows once every file is in (cents, signed).
    shown: i64,
}

impl Trx {
    fn pay(id: &str, hpan: &str, at: OffsetDateTime, cents: i64, shown: i64) -> Trx {
        Trx { id: id.into(), hpan: hpan.into(), at, cents, reversal: false, corr: None, merchant: "M1", shown }
    }
    fn rev(id: &str, hpan: &str, at: OffsetDateTime, cents: i64, shown: i64) -> Trx {
        Trx { reversal: true, ..Trx::pay(id, hpan, at, cents, shown) }
    }
    fn corr(mut self, c: &'static str) -> Trx {
        self.corr = Some(c);
        self
    }
    fn merchant(mut self, m: &'static str) -> Trx {
        self.merchant = m;
        self
    }
    fn line(&self) -> String {
        format!(
            "{ABI};{};01;{};{};{};ISS{};{};{};978;ACQ1;{};T-{};40236010;5411",
            if self.reversal { "01" } else { "00" },
            self.hpan,
            rfc3339(self.at),
            self.id,
            self.id,
            self.corr.unwrap_or(""),
            self.cents,
            self.merchant,
            self.merchant,
        )
    }
    /// idTrx: idTrxAcquirer + instant (UTC, ms, Z) + acquirer code + acquirer id + operation.
    fn id_trx(&self) -> String {
        format!("{}{}{ABI}ACQ1{}", self.id, wire_ts(self.at), if self.reversal { "01" } else { "00" })
    }
    fn signed(&self) -> i64 {
        if self.reversal { -self.cents } else { self.cents }
    }
}

fn file(rows: &[&Trx]) -> Vec<u8> {
    (rows.iter().map(|t| t.line()).collect::<Vec<_>>().join("\n") + "\n").into_bytes()
}

fn file_name(n: u32) -> String {
    format!("CSTAR.{ABI}.TRNLOG.20261120.101010.{n:03}.csv")
}

async fn upload(srv: &Server, key: &ApiKey, name: &str, body: Vec<u8>) -> Value {
    srv.upload_acquirer_file(key, name, body).await
}

async fn get(srv: &Server, token: &str, path: &str) -> Resp {
    srv.io(Method::GET, path, token, None).await
}

/// Every transaction of the v2 list, page after page (`limit` rows each), checking the cursors
/// and the grouping by Rome day on the way.
async fn all_pages(srv: &Server, token: &str, query: &str, limit: usize, total: usize) -> Vec<Value> {
    let pages = total.div_ceil(limit).max(1);
    let mut out = Vec::new();
    for page in 0..pages {
        let path =
            format!("/bpd/io/winning-transactions/v2?awardPeriodId={PERIOD}{query}&limit={limit}&nextCursor={page}");
        let body = get(srv, token, &path).await.json_with(200);
        if page + 1 < pages {
            assert_eq!(body["nextCursor"], json!(page + 1), "{path}: {body}");
        } else {
            assert!(body.get("nextCursor").is_none(), "{path}: {body}");
        }
        if page > 0 {
            assert_eq!(body["prevCursor"], json!(page - 1), "{path}: {body}");
        } else {
            assert!(body.get("prevCursor").is_none(), "{path}: {body}");
        }
        let days = body["transactions"].as_array().unwrap();
        let mut last_day: Option<String> = None;
        let mut in_page = 0;
        for day in days {
            let d = day["date"].as_str().unwrap().to_owned();
            assert!(last_day.as_ref().is_none_or(|l| *l > d), "days must be distinct and newest first: {body}");
            for t in day["transactions"].as_array().unwrap() {
                let at = common::assert_utc_timestamp(&t["trxDate"], "trxDate");
                assert_eq!(rome_date(at).to_string(), d, "grouped by the Rome day: {t}");
                out.push(t.clone());
                in_page += 1;
            }
            last_day = Some(d);
        }
        assert_eq!(in_page, limit.min(total - page * limit), "{path}: {body}");
    }
    out
}

async fn scenario(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let today = OffsetDateTime::now_utc().date();
    let days = |n: i64| (today + time::Duration::days(n)).to_string();
    // The period under test: around today, 3 payments for the milestone, 2 Super Cashback places.
    db.admin(&[
        "period-set",
        "--id",
        "90",
        "--start",
        &days(-30),
        "--end",
        &days(30),
        "--min-transactions",
        "3",
        "--super-cashback-positions",
        "2",
        "--reversal-retention-days",
        "30",
    ])
    .await;
    // A period that has not started: never in the unfiltered ranking answer.
    db.admin(&["period-set", "--id", "91", "--start", &days(60), "--end", &days(90)]).await;
    let config = db.dir.path().join("cashback.toml");
    std::fs::write(&config, "[ranking]\nrefresh_ms = 60000\nread_wait_ms = 10000\n").unwrap();
    let srv = Server::start(db.clone(), Opts::dev().arg("--config").arg(config.display().to_string())).await;
    let acq = srv.credential("acquirer", ABI).await;
    let issuer = srv.credential("issuer", "BANCA1").await;
    let operator = srv.credential("operator", "ops-team").await;

    // Citizens: A (the main one, two cards), B (a few payments), C (none), E (withdraws), D never
    // enrolled.
    let (cf_a, cf_b, cf_c, cf_d, cf_e) =
        (adult("READA"), adult("READB"), adult("READC"), adult("READD"), adult("READE"));
    let mut tokens = Vec::new();
    for cf in [&cf_a, &cf_b, &cf_c, &cf_d, &cf_e] {
        tokens.push(srv.login(cf).await);
    }
    let (ta, tb, tc, td, te) = (&tokens[0], &tokens[1], &tokens[2], &tokens[3], &tokens[4]);
    for t in [ta, tb, tc, te] {
        srv.io(Method::PUT, "/bpd/io/citizen/v2", t, Some(json!({}))).await.expect(200);
    }
    let (ha, ha2, hb, he) = (new_hpan("read-a"), new_hpan("read-a2"), new_hpan("read-b"), new_hpan("read-e"));
    for (t, h) in [(ta, &ha), (ta, &ha2), (tb, &hb), (te, &he)] {
        srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{h}"), t, None).await.expect(200);
    }

    // Transactions: whole seconds, a little after the enrollments (10 %, at most 15 € each, 150 €
    // per period).
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::seconds(5);
    let m = |n: i64| base + time::Duration::minutes(n);
    let p1 = Trx::pay("A-P1", &ha, m(1), 10_000, 1_000).corr("C1"); // 100 €, partly refunded
    let r1 = Trx::rev("A-R1", &ha, m(2), 4_000, -400).corr("C1"); // −40 €: −4 € of cashback
    let p2 = Trx::pay("A-P2", &ha, m(3), 5_000, 500).merchant("M2"); // refunded in full
    let r2 = Trx::rev("A-R2", &ha, m(4), 5_000, -500).merchant("M2");
    let p3 = Trx::pay("A-P3", &ha, m(5), 3_000, 300).merchant("M3"); // arrives in file 2
    let r3 = Trx::rev("A-R3", &ha, m(6), 3_000, -300).merchant("M3"); // arrives in file 1
    // Ten payments of 150 € (15 € each): 6 + 9 × 15 = 141, the tenth brings 9 € (the pivot).
    let big: Vec<Trx> = (0..10).map(|i| Trx::pay(&format!("A-B{i}"), &ha, m(10 + i), 15_000, 1_500)).collect();
    // Late payments on the second card, past the cap (they count, shown with their own cashback).
    let late = base + time::Duration::hours(20);
    let l1 = Trx::pay("A-L1", &ha2, late, 2_000, 200);
    let l2 = Trx::pay("A-L2", &ha2, late + time::Duration::minutes(1), 1_234, 123);
    // B: 12.34 € → 1.23 €, 10.05 € → 1.00 € (round half down).
    let b1 = Trx::pay("B-P1", &hb, m(7), 1_234, 123);
    let b2 = Trx::pay("B-P2", &hb, m(8), 1_005, 100);
    let e1 = Trx::pay("E-P1", &he, m(9), 1_000, 100);

    let mut file1: Vec<&Trx> = vec![&p1, &r1, &p2, &r2, &r3, &b1, &b2, &e1];
    file1.extend(big.iter());
    let report = upload(&srv, &acq, &file_name(1), file(&file1)).await;
    assert_eq!((&report["accepted"], &report["rejected"]), (&json!(file1.len()), &json!(0)), "{report}");

    // ---- after file 1: totals, ranking (read-your-writes), the reversal still unmatched ----
    let total = |t: &'static str| format!("/bpd/io/winning-transactions/total-cashback?awardPeriodId={PERIOD}{t}");
    let tot = get(&srv, ta, &total("")).await.json_with(200);
    assert_eq!(tot, json!({"totalCashback": 150, "transactionNumber": 11}));
    let tot = get(&srv, tb, &total("")).await.json_with(200);
    assert_eq!(tot, json!({"totalCashback": 2.23, "transactionNumber": 2}));
    let rank = get(&srv, ta, &format!("/bpd/io/citizen/v2/ranking?awardPeriodId={PERIOD}")).await.json_with(200);
    assert_eq!(rank[0]["ranking"], 1, "{rank}");
    assert_eq!(rank[0]["totalParticipants"], 3, "{rank}");
    assert_eq!(rank[0]["transactionNumber"], 11, "{rank}");
    let rank = get(&srv, te, &format!("/bpd/io/citizen/ranking?awardPeriodId={PERIOD}")).await.json_with(200);
    assert_eq!(
        rank,
        json!([{"awardPeriodId": PERIOD, "ranking": 3, "totalParticipants": 3, "maxTransactionNumber": 11,
            "minTransactionNumber": 2, "transactionNumber": 1}])
    );
    let list = get(&srv, ta, &format!("/bpd/io/winning-transactions?awardPeriodId={PERIOD}")).await.json_with(200);
    let r3_row = list.as_array().unwrap().iter().find(|t| t["idTrxAcquirer"] == "A-R3").unwrap();
    assert_eq!((&r3_row["amount"], &r3_row["cashback"]), (&json!(-30), &json!(0)), "unmatched yet: {r3_row}");

    // E withdraws: out of the ranking, nothing to show.
    srv.io(Method::DELETE, "/bpd/io/citizen", te, None).await.expect(204);
    assert_eq!(get(&srv, te, "/bpd/io/citizen/v2/ranking").await.json_with(200), json!([]));
    assert_eq!(get(&srv, te, &total("")).await.json_with(200), json!({"totalCashback": 0, "transactionNumber": 0}));

    // ---- file 2: the payment of the held reversal, and the late payments ----
    let report = upload(&srv, &acq, &file_name(2), file(&[&l1, &p3, &l2])).await;
    assert_eq!(report["accepted"], 3, "{report}");

    // Expected list, newest first.
    let mut expected: Vec<&Trx> = vec![&p1, &r1, &p2, &r2, &p3, &r3, &l1, &l2];
    expected.extend(big.iter());
    expected.sort_by_key(|t| std::cmp::Reverse(t.at));
    let pivot = &big[9];
    let min_milestone = &big[1]; // counted: P1, B0, B1 → the third

    // Total cashback: capped; P2 and P3 fully refunded do not count.
    assert_eq!(get(&srv, ta, &total("")).await.json_with(200), json!({"totalCashback": 150, "transactionNumber": 13}));
    for bad in ["", "&awardPeriodId=x"] {
        let path = format!("/bpd/io/winning-transactions/total-cashback?{bad}");
        get(&srv, ta, &path).await.problem(400, "awardPeriodId");
    }
    get(&srv, ta, "/bpd/io/winning-transactions/total-cashback?awardPeriodId=999").await.problem(404, "award period");
    srv.send(srv.req(Method::GET, &total(""))).await.expect(401);

    // Ranking v2 with milestones.
    let v2 = get(&srv, ta, &format!("/bpd/io/citizen/v2/ranking?awardPeriodId={PERIOD}")).await.json_with(200);
    assert_eq!(
        v2,
        json!([{"awardPeriodId": PERIOD, "ranking": 1, "totalParticipants": 2, "maxTransactionNumber": 13,
            "minTransactionNumber": 2, "transactionNumber": 13,
            "milestoneResource": {"idTrxPivot": pivot.id_trx(), "cashbackNorm": 9,
                "idTrxMinTransactionNumber": min_milestone.id_trx(), "maxCashback": 150, "totalCashback": 150}}])
    );
    let milestone =
        get(&srv, ta, &format!("/bpd/io/citizen/v2/ranking/milestone?awardPeriodId={PERIOD}")).await.json_with(200);
    assert_eq!(milestone, v2);
    // Unfiltered: every period that has started (the seeded programme's and 90), by id; not 91.
    let all = get(&srv, ta, "/bpd/io/citizen/v2/ranking").await.json_with(200);
    let ids: Vec<i64> = all.as_array().unwrap().iter().map(|e| e["awardPeriodId"].as_i64().unwrap()).collect();
    assert!(ids.contains(&PERIOD) && !ids.contains(&91), "{all}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{all}");
    let other = all.as_array().unwrap().iter().find(|e| e["awardPeriodId"] != PERIOD).unwrap();
    assert_eq!(
        (&other["ranking"], &other["transactionNumber"], &other["totalParticipants"]),
        (&json!(1), &json!(0), &json!(0))
    );
    assert_eq!(other["milestoneResource"], json!({"maxCashback": 150, "totalCashback": 0}), "{other}");
    // v1, B and C (not ranked: participants + 1).
    let v1 = get(&srv, ta, &format!("/bpd/io/citizen/ranking?awardPeriodId={PERIOD}")).await.json_with(200);
    assert_eq!(
        v1,
        json!([{"awardPeriodId": PERIOD, "ranking": 1, "totalParticipants": 2, "maxTransactionNumber": 13,
            "minTransactionNumber": 2, "transactionNumber": 13}])
    );
    let vb = get(&srv, tb, &format!("/bpd/io/citizen/v2/ranking?awardPeriodId={PERIOD}")).await.json_with(200);
    assert_eq!((&vb[0]["ranking"], &vb[0]["transactionNumber"]), (&json!(2), &json!(2)), "{vb}");
    assert_eq!(vb[0]["milestoneResource"], json!({"maxCashback": 150, "totalCashback": 2.23}), "{vb}");
    let vc = get(&srv, tc, &format!("/bpd/io/citizen/v2/ranking?awardPeriodId={PERIOD}")).await.json_with(200);
    assert_eq!((&vc[0]["ranking"], &vc[0]["transactionNumber"]), (&json!(3), &json!(0)), "{vc}");
    get(&srv, ta, "/bpd/io/citizen/v2/ranking?awardPeriodId=x").await.problem(400, "awardPeriodId");
    assert_eq!(get(&srv, ta, "/bpd/io/citizen/v2/ranking?awardPeriodId=999").await.json_with(200), json!([]));

    // Transactions v2: pages of 5, cursors, days, signs; the same as one page of 100.
    let rows = all_pages(&srv, ta, "", 5, expected.len()).await;
    let whole = all_pages(&srv, ta, "", 100, expected.len()).await;
    assert_eq!(rows, whole);
    assert_eq!(rows.len(), 18);
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(
            got,
            &json!({"idTrx": want.id_trx(), "idTrxAcquirer": want.id, "idTrxIssuer": format!("ISS{}", want.id),
                "hashPan": want.hpan, "amount": eur(want.signed()), "cashback": eur(want.shown), "circuitType": "01",
                "awardPeriodId": PERIOD, "trxDate": wire_ts(want.at)}),
        );
    }
    // The app finds the milestones in the list.
    assert!(rows.iter().any(|r| r["idTrx"] == v2[0]["milestoneResource"]["idTrxPivot"]));
    assert!(rows.iter().any(|r| r["idTrx"] == v2[0]["milestoneResource"]["idTrxMinTransactionNumber"]));
    // The shown cashback adds up to the scores before the cap: 6 + 10 × 15 + 2 + 1.23.
    assert_eq!(expected.iter().map(|t| t.shown).sum::<i64>(), 600 + 15_000 + 200 + 123);
    // The default page is 20 rows, page 0.
    let first = get(&srv, ta, &format!("/bpd/io/winning-transactions/v2?awardPeriodId={PERIOD}")).await.json_with(200);
    assert!(first.get("nextCursor").is_none() && first.get("prevCursor").is_none(), "{first}");
    // Past the end: empty, no cursors.
    let past = get(&srv, ta, &format!("/bpd/io/winning-transactions/v2?awardPeriodId={PERIOD}&limit=5&nextCursor=4"))
        .await
        .json_with(200);
    assert_eq!(past, json!({"transactions": []}));
    for (q, field) in [
        ("&limit=0", "limit"),
        ("&limit=101", "limit"),
        ("&limit=x", "limit"),
        ("&nextCursor=-1", "nextCursor"),
        ("&hpan=XYZ", "hpan"),
    ] {
        let path = format!("/bpd/io/winning-transactions/v2?awardPeriodId={PERIOD}{q}");
        get(&srv, ta, &path).await.problem(400, field);
    }
    get(&srv, ta, "/bpd/io/winning-transactions/v2").await.problem(400, "awardPeriodId");
    get(&srv, ta, "/bpd/io/winning-transactions/v2?awardPeriodId=999").await.problem(404, "award period");
    // One card only.
    let card2 = all_pages(&srv, ta, &format!("&hpan={ha2}"), 20, 2).await;
    let ids: Vec<&str> = card2.iter().map(|r| r["idTrxAcquirer"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["A-L2", "A-L1"]);

    // Count by day: the list's rows per Rome day, newest first.
    let mut want_days: Vec<(String, u32)> = Vec::new();
    for t in &expected {
        let d = rome_date(t.at).to_string();
        match want_days.last_mut() {
            Some((last, n)) if *last == d => *n += 1,
            _ => want_days.push((d, 1)),
        }
    }
    let want: Vec<Value> = want_days.iter().map(|(d, n)| json!({"trxDate": d, "count": n})).collect();
    let counts = get(&srv, ta, &format!("/bpd/io/winning-transactions/v2/countbyday?awardPeriodId={PERIOD}"))
        .await
        .json_with(200);
    assert_eq!(counts, json!(want));
    let counts =
        get(&srv, ta, &format!("/bpd/io/winning-transactions/v2/countbyday?awardPeriodId={PERIOD}&hpan={ha2}"))
            .await
            .json_with(200);
    assert_eq!(counts.as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum::<u64>(), 2);

    // v1 list: the same rows, without idTrx.
    let v1_list = get(&srv, ta, &format!("/bpd/io/winning-transactions?awardPeriodId={PERIOD}")).await.json_with(200);
    let v1_list = v1_list.as_array().unwrap();
    assert_eq!(v1_list.len(), expected.len());
    for (got, want) in v1_list.iter().zip(&expected) {
        assert_eq!(
            got,
            &json!({"hashPan": want.hpan, "idTrxAcquirer": want.id, "idTrxIssuer": format!("ISS{}", want.id),
                "amount": eur(want.signed()), "trxDate": wire_ts(want.at), "cashback": eur(want.shown),
                "circuitType": "01", "awardPeriodId": PERIOD}),
        );
    }
    let v1_card =
        get(&srv, ta, &format!("/bpd/io/winning-transactions?awardPeriodId={PERIOD}&hpan={ha2}")).await.json_with(200);
    assert_eq!(v1_card.as_array().unwrap().len(), 2);

    // Another citizen's token never sees A's data, not even by naming A's card.
    let b_rows = all_pages(&srv, tb, "", 20, 2).await;
    assert!(b_rows.iter().all(|r| r["hashPan"] == hb.as_str()), "{b_rows:?}");
    assert_eq!(
        get(&srv, tb, &format!("/bpd/io/winning-transactions/v2?awardPeriodId={PERIOD}&hpan={ha}"))
            .await
            .json_with(200),
        json!({"transactions": []})
    );
    let b_v1 =
        get(&srv, tb, &format!("/bpd/io/winning-transactions?awardPeriodId={PERIOD}&hpan={ha}")).await.json_with(200);
    assert_eq!(b_v1, json!([]));
    // Unknown (D) and withdrawn (E) citizens: zeros and empty answers from IO.
    for t in [td, te] {
        assert_eq!(get(&srv, t, &total("")).await.json_with(200), json!({"totalCashback": 0, "transactionNumber": 0}));
        assert_eq!(get(&srv, t, "/bpd/io/citizen/v2/ranking").await.json_with(200), json!([]));
        assert_eq!(get(&srv, t, "/bpd/io/citizen/ranking").await.json_with(200), json!([]));
        let page = get(&srv, t, &format!("/bpd/io/winning-transactions/v2?awardPeriodId={PERIOD}")).await;
        assert_eq!(page.json_with(200), json!({"transactions": []}));
        let counts = get(&srv, t, &format!("/bpd/io/winning-transactions/v2/countbyday?awardPeriodId={PERIOD}")).await;
        assert_eq!(counts.json_with(200), json!([]));
    }

    // ---- HB: a citizen its channel enrolled, by fiscal code; 404 for unknown or withdrawn ----
    // A enrolled through the app: hidden from the issuer until its channel enrols A too.
    srv.hb(Method::GET, &format!("/bpd/hb/citizens/{cf_a}/ranking?awardPeriodId={PERIOD}"), &issuer, None)
        .await
        .problem(404, "citizen");
    let card = json!({"id": common::luhn_complete("411111111111100"), "fiscalCode": cf_a});
    srv.hb(Method::PUT, "/bpd/hb/payment-instruments/card", &issuer, Some(card)).await.expect(200);
    let card = json!({"id": common::luhn_complete("411111111111200"), "fiscalCode": cf_b});
    srv.hb(Method::PUT, "/bpd/hb/payment-instruments/card", &issuer, Some(card)).await.expect(200);
    let hb_v1 =
        srv.hb(Method::GET, &format!("/bpd/hb/citizens/{cf_a}/ranking?awardPeriodId={PERIOD}"), &issuer, None).await;
    assert_eq!(hb_v1.json_with(200), v1);
    let hb_v2 = srv
        .hb_h(
            Method::GET,
            &format!("/bpd/hb/citizens/v2/ranking?awardPeriodId={PERIOD}"),
            &issuer,
            &[("id", &cf_a)],
            None,
        )
        .await;
    assert_eq!(hb_v2.json_with(200), v1);
    for cf in [&cf_d, &cf_e] {
        srv.hb(Method::GET, &format!("/bpd/hb/citizens/{cf}/ranking"), &issuer, None).await.problem(404, "citizen");
        srv.hb_h(Method::GET, "/bpd/hb/citizens/v2/ranking", &issuer, &[("id", cf)], None)
            .await
            .problem(404, "citizen");
    }
    srv.hb(Method::GET, "/bpd/hb/citizens/NOTAFISCALCODE/ranking", &issuer, None).await.problem(400, "fiscalCode");
    srv.hb(Method::GET, "/bpd/hb/citizens/v2/ranking", &issuer, None).await.problem(400, "id");
    srv.io(Method::GET, &format!("/bpd/hb/citizens/{cf_a}/ranking"), ta, None).await.expect(401);
    let hb_total = srv
        .hb(
            Method::GET,
            &format!("/bpd/hb/winning-transactions/total-cashback?awardPeriodId={PERIOD}&fiscalCode={cf_b}"),
            &issuer,
            None,
        )
        .await;
    assert_eq!(hb_total.json_with(200), json!({"totalCashback": 2.23, "transactionNumber": 2}));
    let hb_total = srv
        .hb_h(
            Method::GET,
            &format!("/bpd/hb/winning-transactions/v2/total-cashback?awardPeriodId={PERIOD}"),
            &issuer,
            &[("fiscalCode", &cf_a)],
            None,
        )
        .await;
    assert_eq!(hb_total.json_with(200), json!({"totalCashback": 150, "transactionNumber": 13}));
    let hb_total = srv
        .hb(
            Method::GET,
            &format!("/bpd/hb/winning-transactions/total-cashback?awardPeriodId={PERIOD}&fiscalCode={cf_d}"),
            &issuer,
            None,
        )
        .await;
    assert_eq!(hb_total.json_with(200), json!({"totalCashback": 0, "transactionNumber": 0}));
    srv.hb(Method::GET, &format!("/bpd/hb/winning-transactions/total-cashback?awardPeriodId={PERIOD}"), &issuer, None)
        .await
        .problem(400, "fiscalCode");
    srv.hb(
        Method::GET,
        &format!("/bpd/hb/winning-transactions/total-cashback?awardPeriodId={PERIOD}&fiscalCode=BAD"),
        &issuer,
        None,
    )
    .await
    .problem(400, "fiscalCode");
    srv.hb(
        Method::GET,
        &format!("/bpd/hb/winning-transactions/v2/total-cashback?awardPeriodId={PERIOD}"),
        &issuer,
        None,
    )
    .await
    .problem(400, "fiscalCode");

    // ---- operators: the live ranking without fiscal codes, and the same from the CLI ----
    let ops_path = format!("/bpd/ops/award-periods/{PERIOD}/ranking?top=5");
    // E's withdrawal reached the board with the catch-up file 2 triggered (at the latest).
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        let v = srv.hb(Method::GET, &ops_path, &operator, None).await.json_with(200);
        if v["participants"] == 2 || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (&view["awardPeriodId"], &view["participants"], &view["topCount"], &view["countAtN"], &view["minPosition"]),
        (&json!(PERIOD), &json!(2), &json!(13), &json!(2), &json!(2)),
        "{view}"
    );
    // A wins (rank 1, 13 ≥ 3); B is second but has 2 < 3.
    assert_eq!((&view["minTransactionNumber"], &view["awarded"]), (&json!(3), &json!(1)), "{view}");
    assert_eq!(
        view["distribution"],
        json!([{"from": 0, "to": 0, "citizens": 0}, {"from": 1, "to": 9, "citizens": 1}, {"from": 10, "to": 49, "citizens": 1},
            {"from": 50, "to": 99, "citizens": 0}, {"from": 100, "to": 199, "citizens": 0}, {"from": 200, "to": 499, "citizens": 0},
            {"from": 500, "citizens": 0}])
    );
    let top = view["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "{view}");
    assert_eq!((&top[0]["rank"], &top[0]["transactionNumber"]), (&json!(1), &json!(13)));
    assert_eq!(top[0]["lastTransaction"], wire_ts(l2.at));
    assert_eq!((&top[1]["rank"], &top[1]["transactionNumber"]), (&json!(2), &json!(2)));
    assert_eq!(top[1]["lastTransaction"], wire_ts(b2.at));
    assert!(top[0]["citizenId"].is_u64() && top[0]["citizenId"] != top[1]["citizenId"]);
    for cf in [&cf_a, &cf_b] {
        assert!(!view.to_string().contains(cf.as_str()), "no fiscal codes: {view}");
    }
    srv.hb(Method::GET, &ops_path, &issuer, None).await.problem(403, "issuer API");
    srv.send(srv.req(Method::GET, &ops_path)).await.expect(401);
    srv.hb(Method::GET, "/bpd/ops/award-periods/999/ranking", &operator, None).await.problem(404, "award period");
    srv.hb(Method::GET, "/bpd/ops/award-periods/x/ranking", &operator, None).await.problem(400, "awardPeriodId");
    srv.hb(Method::GET, &format!("/bpd/ops/award-periods/{PERIOD}/ranking?top=1001"), &operator, None)
        .await
        .problem(400, "top");
    let cli: Value = serde_json::from_str(&db.admin(&["ranking", "--period", "90", "--top", "5"]).await).unwrap();
    assert_eq!(cli, view);

    // The OpenAPI document lists the new operations.
    let doc = srv.send(srv.req(Method::GET, "/openapi.json")).await.json_with(200);
    for p in [
        "/bpd/io/winning-transactions/total-cashback",
        "/bpd/io/citizen/v2/ranking",
        "/bpd/io/citizen/v2/ranking/milestone",
        "/bpd/io/citizen/ranking",
        "/bpd/io/winning-transactions/v2",
        "/bpd/io/winning-transactions/v2/countbyday",
        "/bpd/io/winning-transactions",
        "/bpd/hb/citizens/{fiscalCode}/ranking",
        "/bpd/hb/citizens/v2/ranking",
        "/bpd/hb/winning-transactions/total-cashback",
        "/bpd/hb/winning-transactions/v2/total-cashback",
        "/bpd/ops/award-periods/{awardPeriodId}/ranking",
    ] {
        assert!(doc["paths"].get(p).is_some(), "OpenAPI: {p} missing");
    }
    drop(srv);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cashback_reads_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cashback_reads_on_postgres() {
    scenario(Backend::Postgres).await;
}
