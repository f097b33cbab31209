//! The authorization matrix (issue 9): every endpoint × every role → the expected allow / deny,
//! on the real binary, on SQLite and PostgreSQL.
//!
//! Roles: anonymous, citizen A, citizen B (Bearer tokens of the dev login), issuer X (channel
//! that enrolled a card of A), issuer Y, acquirer of ABI 1 (which sent a file), acquirer of
//! ABI 2, the Payment Manager and an operator (API keys). The data belong to A, X and ABI 1, so
//! B, Y and ABI 2 are the "other" principal of their kind: a citizen sees only their own data,
//! an issuer only what its channel enrolled (others: 404, as if unknown), an acquirer only its
//! own files and reports, the salt and the hashed-PAN list only acquirers.
//!
//! The matrix is complete by construction: the test fails if the served OpenAPI document has an
//! operation, or the API crate's routers a path, that the matrix does not list.
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test authz_matrix`

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{ApiKey, Backend, Opts, Resp, Server, TestDb, adult, luhn_complete, new_hpan};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

const PERIOD: i64 = 97;
const ABI1: &str = "11111";
const ABI2: &str = "22222";
const CHANNEL_X: &str = "BANCAX";
const CHANNEL_Y: &str = "BANCAY";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Anonymous,
    CitizenA,
    CitizenB,
    IssuerX,
    IssuerY,
    Acquirer1,
    Acquirer2,
    PaymentManager,
    Operator,
}

const ROLES: [Role; 9] = [
    Role::Anonymous,
    Role::CitizenA,
    Role::CitizenB,
    Role::IssuerX,
    Role::IssuerY,
    Role::Acquirer1,
    Role::Acquirer2,
    Role::PaymentManager,
    Role::Operator,
];

/// The expected answer of one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Served: 2xx.
    Ok,
    /// Let through authorization; the request itself may be refused (4xx other than 401 and
    /// 403), e.g. a period not closed yet or an unknown complaint. Never 5xx.
    Through,
    /// Denied: 401 (no or wrong kind of credential) or 403 (another principal's resource).
    Deny,
    /// Hidden: 404, the answer for something that does not exist.
    Hidden,
    /// Refused, whatever the reason (4xx): e.g. another citizen's card.
    Refused,
}

/// A matrix row: one operation, the request sent by every role, and the nine expectations in
/// the order of `ROLES`: anonymous, A, B, X, Y, ABI 1, ABI 2, PM, operator.
struct Row {
    method: Method,
    /// The route template, as in the router and the OpenAPI document.
    template: &'static str,
    /// The concrete path (and query) sent.
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Value>,
    /// A raw body instead of JSON (acquirer files).
    bytes: Option<Vec<u8>>,
    expect: [Expect; 9],
}

use Expect::{Deny as D, Hidden as N, Ok as A, Refused as R, Through as T};

/// Rows for routes the matrix test cannot send meaningfully as a (METHOD, path) pair but lists:
/// public routes outside the OpenAPI document.
const PUBLIC_UNDOCUMENTED: &[&str] = &["/", "/console", "/console/{*path}", "/metrics", "/openapi.json"];

struct Ctx {
    cf_a: String,
    cf_b: String,
    hpan_a: String,
    hpan_b: String,
    pan_x: String,
    file1: String,
    token_b: String,
    /// ABI 1's upload path (from its SAS) for a second file, and that file.
    upload2: String,
    file2_body: Vec<u8>,
}

fn row(
    method: Method,
    template: &'static str,
    path: impl Into<String>,
    headers: &[(&'static str, &str)],
    body: Option<Value>,
    expect: [Expect; 9],
) -> Row {
    Row {
        method,
        template,
        path: path.into(),
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body,
        bytes: None,
        expect,
    }
}

/// The matrix. Rows with side effects come after the reads that need the state they change.
fn matrix(c: &Ctx) -> Vec<Row> {
    use Method as M;
    let (cf_a, hpan_a, hpan_b, pan_x, file1) = (&c.cf_a, &c.hpan_a, &c.hpan_b, &c.pan_x, &c.file1);
    let iban = "IT60X0542811101000000123456";
    let patch = json!({"payoffInstr": iban, "payoffInstrType": "IBAN", "accountHolderCF": cf_a,
        "accountHolderName": "Mario", "accountHolderSurname": "Rossi"});
    let patch_v2 = {
        let mut p = patch.clone();
        p["id"] = json!(cf_a);
        p
    };
    // The IO API: the Bearer token's citizen only. A's card is hidden from B.
    let io = [D, A, A, D, D, D, D, D, D];
    let io_t = [D, T, T, D, D, D, D, D, D];
    // A's card to B: 409 "active for another citizen" (the contract's answer: whoever holds the
    // card's hash learns only that it is taken, nothing of the owner).
    let io_a_only = [D, A, R, D, D, D, D, D, D];
    // The issuers' API: X enrolled a card of A, Y nothing of A's.
    let hb = [D, D, D, A, A, D, D, D, D];
    let hb_x = [D, D, D, A, N, D, D, D, D];
    // Acquirers only; ABI 1's own file.
    let rtd = [D, D, D, D, D, A, A, D, D];
    let rtd_1 = [D, D, D, D, D, A, D, D, D];
    // Operators only.
    let ops = [D, D, D, D, D, D, D, D, A];
    let ops_t = [D, D, D, D, D, D, D, D, T];
    let public = [A; 9];
    let period = format!("awardPeriodId={PERIOD}");
    vec![
        row(M::GET, "/health", "/health", &[], None, public),
        row(
            M::POST,
            "/bpd/pagopa/api/v1/login",
            format!("/bpd/pagopa/api/v1/login?fiscalCode={}", c.cf_b),
            &[],
            None,
            public,
        ),
        row(
            M::GET,
            "/bpd/pagopa/api/v1/user",
            format!("/bpd/pagopa/api/v1/user?token={}", c.token_b),
            &[],
            None,
            public,
        ),
        // ---- IO: citizen ----
        row(M::GET, "/bpd/io/citizen", "/bpd/io/citizen", &[], None, io),
        row(M::GET, "/bpd/io/citizen/v2", "/bpd/io/citizen/v2", &[], None, io),
        row(M::PUT, "/bpd/io/citizen", "/bpd/io/citizen", &[], None, io),
        row(M::PUT, "/bpd/io/citizen/v2", "/bpd/io/citizen/v2", &[], Some(json!({})), io),
        row(M::PATCH, "/bpd/io/citizen", "/bpd/io/citizen", &[], Some(patch.clone()), io_t),
        row(M::PATCH, "/bpd/io/citizen/v2", "/bpd/io/citizen/v2", &[], Some(patch.clone()), io_t),
        row(M::GET, "/bpd/io/payment-instruments", "/bpd/io/payment-instruments", &[], None, io),
        row(M::GET, "/bpd/io/payment-instruments/number", "/bpd/io/payment-instruments/number", &[], None, io),
        row(M::GET, "/bpd/io/payment-instruments/number/", "/bpd/io/payment-instruments/number/", &[], None, io),
        row(
            M::GET,
            "/bpd/io/payment-instruments/{id}",
            format!("/bpd/io/payment-instruments/{hpan_a}"),
            &[],
            None,
            io_a_only,
        ),
        row(M::GET, "/bpd/io/award-periods", "/bpd/io/award-periods", &[], None, io),
        row(M::GET, "/bpd/io/award-periods/v2", "/bpd/io/award-periods/v2", &[], None, io),
        row(M::GET, "/bpd/io/citizen/ranking", format!("/bpd/io/citizen/ranking?{period}"), &[], None, io),
        row(M::GET, "/bpd/io/citizen/v2/ranking", format!("/bpd/io/citizen/v2/ranking?{period}"), &[], None, io),
        row(
            M::GET,
            "/bpd/io/citizen/v2/ranking/milestone",
            format!("/bpd/io/citizen/v2/ranking/milestone?{period}"),
            &[],
            None,
            io_t,
        ),
        row(M::GET, "/bpd/io/winning-transactions", format!("/bpd/io/winning-transactions?{period}"), &[], None, io),
        row(
            M::GET,
            "/bpd/io/winning-transactions/total-cashback",
            format!("/bpd/io/winning-transactions/total-cashback?{period}"),
            &[],
            None,
            io,
        ),
        row(
            M::GET,
            "/bpd/io/winning-transactions/v2",
            format!("/bpd/io/winning-transactions/v2?{period}"),
            &[],
            None,
            io,
        ),
        row(
            M::GET,
            "/bpd/io/winning-transactions/v2/countbyday",
            format!("/bpd/io/winning-transactions/v2/countbyday?{period}"),
            &[],
            None,
            io,
        ),
        row(M::GET, "/bpd/io/awards", "/bpd/io/awards", &[], None, io),
        row(M::GET, "/bpd/io/citizen/export", "/bpd/io/citizen/export", &[], None, io),
        row(M::GET, "/bpd/io/complaints", "/bpd/io/complaints", &[], None, io),
        row(
            M::POST,
            "/bpd/io/complaints",
            "/bpd/io/complaints",
            &[],
            Some(json!({"awardPeriodId": PERIOD, "kind": "WRONG_AMOUNT", "description": "matrix"})),
            io_t,
        ),
        // ---- HB: issuers ----
        row(M::GET, "/bpd/hb/citizens/{fiscalCode}", format!("/bpd/hb/citizens/{cf_a}"), &[], None, hb_x),
        row(M::GET, "/bpd/hb/citizens/v2", "/bpd/hb/citizens/v2", &[("id", cf_a)], None, hb_x),
        row(
            M::PATCH,
            "/bpd/hb/citizens/{fiscalCode}",
            format!("/bpd/hb/citizens/{cf_a}"),
            &[],
            Some(patch.clone()),
            hb_x,
        ),
        row(M::PATCH, "/bpd/hb/citizens/v2", "/bpd/hb/citizens/v2", &[], Some(patch_v2), hb_x),
        row(
            M::GET,
            "/bpd/hb/payment-instruments/{pan}",
            format!("/bpd/hb/payment-instruments/{pan_x}"),
            &[],
            None,
            hb_x,
        ),
        row(M::GET, "/bpd/hb/payment-instruments/v2", "/bpd/hb/payment-instruments/v2", &[("id", pan_x)], None, hb_x),
        row(M::GET, "/bpd/hb/award-periods", "/bpd/hb/award-periods", &[], None, hb),
        row(M::GET, "/bpd/hb/award-periods/v2", "/bpd/hb/award-periods/v2", &[], None, hb),
        row(
            M::GET,
            "/bpd/hb/citizens/{fiscalCode}/ranking",
            format!("/bpd/hb/citizens/{cf_a}/ranking?{period}"),
            &[],
            None,
            hb_x,
        ),
        row(
            M::GET,
            "/bpd/hb/citizens/v2/ranking",
            format!("/bpd/hb/citizens/v2/ranking?{period}"),
            &[("id", cf_a)],
            None,
            hb_x,
        ),
        // Y gets the zeros of an unknown citizen: nothing of A's leaks (checked below).
        row(
            M::GET,
            "/bpd/hb/winning-transactions/total-cashback",
            format!("/bpd/hb/winning-transactions/total-cashback?{period}&fiscalCode={cf_a}"),
            &[],
            None,
            hb,
        ),
        row(
            M::GET,
            "/bpd/hb/winning-transactions/v2/total-cashback",
            format!("/bpd/hb/winning-transactions/v2/total-cashback?{period}"),
            &[("fiscalCode", cf_a)],
            None,
            hb,
        ),
        // Enrolments by an issuer are its own: both may enrol (Y's answer hides A's IBAN).
        row(M::PUT, "/bpd/hb/citizens/{fiscalCode}", format!("/bpd/hb/citizens/{cf_a}"), &[], None, hb),
        row(M::PUT, "/bpd/hb/citizens/v2", "/bpd/hb/citizens/v2", &[], Some(json!({"id": cf_a})), hb),
        // ---- acquirers ----
        row(M::GET, "/rtd/payment-instrument-manager/salt", "/rtd/payment-instrument-manager/salt", &[], None, rtd),
        row(
            M::GET,
            "/rtd/payment-instrument-manager/hashed-pans",
            "/rtd/payment-instrument-manager/hashed-pans",
            &[],
            None,
            rtd,
        ),
        row(M::GET, "/rtd/csv-transaction/publickey", "/rtd/csv-transaction/publickey", &[], None, rtd),
        row(
            M::POST,
            "/rtd/csv-transaction/{scope}/sas",
            "/rtd/csv-transaction/rtd/sas",
            &[],
            None,
            [D, D, D, D, D, A, A, D, D],
        ),
        row(M::GET, "/rtd/file-reporter/v2/file-report", "/rtd/file-reporter/v2/file-report", &[], None, rtd),
        row(M::GET, "/rtd/file-reporter/files/{name}", format!("/rtd/file-reporter/files/{file1}"), &[], None, rtd_1),
        Row {
            bytes: Some(c.file2_body.clone()),
            ..row(M::PUT, "/pagopastorage/{container}/{file}", c.upload2.clone(), &[], None, rtd_1)
        },
        // ---- operators ----
        row(M::GET, "/bpd/ops/award-periods", "/bpd/ops/award-periods", &[], None, ops),
        row(
            M::GET,
            "/bpd/ops/award-periods/{awardPeriodId}/ranking",
            format!("/bpd/ops/award-periods/{PERIOD}/ranking"),
            &[],
            None,
            ops,
        ),
        row(
            M::GET,
            "/bpd/ops/award-periods/{awardPeriodId}/ranking/history",
            format!("/bpd/ops/award-periods/{PERIOD}/ranking/history"),
            &[],
            None,
            ops,
        ),
        row(
            M::GET,
            "/bpd/ops/award-periods/{awardPeriodId}/close",
            format!("/bpd/ops/award-periods/{PERIOD}/close"),
            &[],
            None,
            ops_t,
        ),
        row(M::GET, "/bpd/ops/complaints", "/bpd/ops/complaints", &[], None, ops),
        row(
            M::POST,
            "/bpd/ops/complaints/{complaintId}/decision",
            "/bpd/ops/complaints/999999/decision",
            &[],
            Some(json!({"decision": "REJECT"})),
            ops_t,
        ),
        row(M::GET, "/bpd/ops/notifications", "/bpd/ops/notifications", &[], None, ops),
        row(M::GET, "/bpd/ops/stats", "/bpd/ops/stats", &[], None, ops),
        row(M::GET, "/bpd/ops/files", "/bpd/ops/files", &[], None, ops),
        row(M::GET, "/bpd/ops/files/{name}", format!("/bpd/ops/files/{file1}"), &[], None, ops),
        row(M::GET, "/bpd/ops/payout-files", "/bpd/ops/payout-files", &[], None, ops),
        row(M::GET, "/bpd/ops/audit", "/bpd/ops/audit", &[], None, ops),
        row(
            M::GET,
            "/bpd/ops/citizens/{fiscalCode}/export",
            format!("/bpd/ops/citizens/{cf_a}/export"),
            &[],
            None,
            ops,
        ),
        // An issuer enrols the cards of its own customers (here B's, so that A stays X's only).
        row(
            M::PUT,
            "/bpd/hb/payment-instruments/card",
            "/bpd/hb/payment-instruments/card",
            &[],
            Some(json!({"id": luhn_complete("411111111111400"), "fiscalCode": c.cf_b})),
            [D, D, D, T, T, D, D, D, D],
        ),
        // ---- destructive, last: card removals, then withdrawals ----
        // Y may not deactivate X's card (404); X may (204, then 204 again: idempotent).
        row(
            M::DELETE,
            "/bpd/hb/payment-instruments/{pan}",
            format!("/bpd/hb/payment-instruments/{pan_x}"),
            &[],
            None,
            hb_x,
        ),
        row(
            M::DELETE,
            "/bpd/hb/payment-instruments/v2",
            "/bpd/hb/payment-instruments/v2",
            &[("id", pan_x)],
            None,
            hb_x,
        ),
        // B may neither take nor deactivate A's card.
        row(
            M::PUT,
            "/bpd/io/payment-instruments/{id}",
            format!("/bpd/io/payment-instruments/{hpan_a}"),
            &[],
            None,
            [D, A, R, D, D, D, D, D, D],
        ),
        row(
            M::DELETE,
            "/bpd/io/payment-instruments/{id}",
            format!("/bpd/io/payment-instruments/{hpan_a}"),
            &[],
            None,
            [D, A, R, D, D, D, D, D, D],
        ),
        row(
            M::DELETE,
            "/bpd/pm/payment-instrument/{hpan}",
            format!("/bpd/pm/payment-instrument/{hpan_b}?fiscalCode={}", c.cf_b),
            &[],
            None,
            [D, D, D, D, D, D, D, A, D],
        ),
        // Y may not withdraw a citizen it does not see; X may.
        row(M::DELETE, "/bpd/hb/citizens/{fiscalCode}", format!("/bpd/hb/citizens/{cf_a}"), &[], None, hb_x),
        row(M::DELETE, "/bpd/hb/citizens/v2", "/bpd/hb/citizens/v2", &[("id", cf_a)], None, hb_x),
        row(M::DELETE, "/bpd/io/citizen", "/bpd/io/citizen", &[], None, io),
        row(M::DELETE, "/bpd/io/citizen/v2", "/bpd/io/citizen/v2", &[], None, io),
    ]
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn acquirer_file(abi: &str, hpan: &str, seq: u32) -> (String, Vec<u8>) {
    let now = OffsetDateTime::now_utc();
    let at = now;
    let name = format!("CSTAR.{abi}.TRNLOG.{}.103000.{seq:03}.csv", now.date().to_string().replace('-', ""));
    let body = format!("{abi};00;01;{hpan};{};T{seq};ISS{seq};;1500;978;ACQ1;M1;T-{seq};411111;5411\n", rfc3339(at));
    (name, body.into_bytes())
}

struct Principals {
    ta: String,
    tb: String,
    x: ApiKey,
    y: ApiKey,
    a1: ApiKey,
    a2: ApiKey,
    pm: ApiKey,
    op: ApiKey,
}

async fn send_as(srv: &Server, who: &Principals, role: Role, r: &Row) -> Resp {
    let mut rb = srv.req(r.method.clone(), &r.path);
    rb = match role {
        Role::Anonymous => rb,
        Role::CitizenA => rb.bearer_auth(&who.ta),
        Role::CitizenB => rb.bearer_auth(&who.tb),
        Role::IssuerX => rb.header("Ocp-Apim-Subscription-Key", &who.x.key),
        Role::IssuerY => rb.header("Ocp-Apim-Subscription-Key", &who.y.key),
        Role::Acquirer1 => rb.header("Ocp-Apim-Subscription-Key", &who.a1.key),
        Role::Acquirer2 => rb.header("Ocp-Apim-Subscription-Key", &who.a2.key),
        Role::PaymentManager => rb.header("Ocp-Apim-Subscription-Key", &who.pm.key),
        Role::Operator => rb.header("Ocp-Apim-Subscription-Key", &who.op.key),
    };
    for (k, v) in &r.headers {
        rb = rb.header(*k, v);
    }
    if let Some(b) = &r.body {
        rb = rb.json(b);
    }
    if let Some(b) = &r.bytes {
        rb = rb.body(b.clone());
    }
    srv.send(rb).await
}

fn matches(e: Expect, status: u16) -> bool {
    match e {
        Expect::Ok => (200..300).contains(&status),
        Expect::Through => status < 500 && !matches!(status, 401 | 403),
        Expect::Deny => matches!(status, 401 | 403),
        Expect::Hidden => status == 404,
        Expect::Refused => (400..500).contains(&status),
    }
}

/// Every path of a `.route("…")` in the API crate's routers.
fn source_routes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for src in [include_str!("../../cashback-api/src/lib.rs"), include_str!("../../cashback-api/src/console.rs")] {
        let mut rest = src;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let t = rest.trim_start();
            if let Some(lit) = t.strip_prefix('"') {
                out.insert(lit[..lit.find('"').unwrap()].to_owned());
            }
        }
    }
    out
}

async fn scenario(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let today = OffsetDateTime::now_utc().date();
    let days = |n: i64| (today + time::Duration::days(n)).to_string();
    db.admin(&["period-set", "--id", &PERIOD.to_string(), "--start", &days(-10), "--end", &days(30)]).await;
    let srv = Server::start(db.clone(), Opts::dev()).await;
    let who = Principals {
        ta: String::new(),
        tb: String::new(),
        x: srv.credential("issuer", CHANNEL_X).await,
        y: srv.credential("issuer", CHANNEL_Y).await,
        a1: srv.credential("acquirer", ABI1).await,
        a2: srv.credential("acquirer", ABI2).await,
        pm: srv.credential("payment-manager", "pm").await,
        op: srv.credential("operator", "matrix").await,
    };
    let (cf_a, cf_b) = (adult("MATRXA"), adult("MATRXB"));
    let who = Principals { ta: srv.login(&cf_a).await, tb: srv.login(&cf_b).await, ..who };
    for t in [&who.ta, &who.tb] {
        srv.io(Method::PUT, "/bpd/io/citizen/v2", t, Some(json!({}))).await.expect(200);
    }
    let (hpan_a, hpan_b) = (new_hpan("matrix-a"), new_hpan("matrix-b"));
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{hpan_a}"), &who.ta, None).await.expect(200);
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{hpan_b}"), &who.tb, None).await.expect(200);
    let pan_x = luhn_complete("411111111111300");
    srv.hb(Method::PUT, "/bpd/hb/payment-instruments/card", &who.x, Some(json!({"id": pan_x, "fiscalCode": cf_a})))
        .await
        .expect(200);
    // The row must come after the card's activation (to the microsecond; the row has seconds).
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (file1, body) = acquirer_file(ABI1, &hpan_a, 1);
    srv.upload_acquirer_file(&who.a1, &file1, body).await;
    // B can neither deactivate nor take A's card.
    srv.io(Method::DELETE, &format!("/bpd/io/payment-instruments/{hpan_a}"), &who.tb, None).await.problem(409, "");
    srv.io(Method::PUT, &format!("/bpd/io/payment-instruments/{hpan_a}"), &who.tb, None).await.problem(409, "");
    let i = srv.io(Method::GET, &format!("/bpd/io/payment-instruments/{hpan_a}"), &who.ta, None).await.json_with(200);
    assert_eq!(i["Status"], "ACTIVE", "{i}");
    // Y's total-cashback of A: the zeros of an unknown citizen; X's: A's real figures.
    let total = format!("/bpd/hb/winning-transactions/total-cashback?awardPeriodId={PERIOD}&fiscalCode={cf_a}");
    let x_view = srv.hb(Method::GET, &total, &who.x, None).await.json_with(200);
    assert_eq!(x_view["transactionNumber"], 1, "{x_view}");
    let y_view = srv.hb(Method::GET, &total, &who.y, None).await.json_with(200);
    assert_eq!(y_view, json!({"totalCashback": 0, "transactionNumber": 0}));
    // Y enrolling A (allowed: its own act) does not get A's IBAN back, nor see A afterwards.
    let iban = "IT60X0542811101000000123456";
    let patch = json!({"payoffInstr": iban, "payoffInstrType": "IBAN", "accountHolderCF": cf_a,
        "accountHolderName": "Mario", "accountHolderSurname": "Rossi"});
    srv.io(Method::PATCH, "/bpd/io/citizen", &who.ta, Some(patch)).await.expect(200);
    let c = srv.hb(Method::PUT, &format!("/bpd/hb/citizens/{cf_a}"), &who.y, None).await.json_with(200);
    assert!(c.get("payoffInstr").is_none(), "another issuer's enrolment echoes the IBAN: {c}");
    let c = srv.hb(Method::GET, &format!("/bpd/hb/citizens/{cf_a}"), &who.x, None).await.json_with(200);
    assert_eq!(c["payoffInstr"], iban, "{c}");
    srv.hb(Method::GET, &format!("/bpd/hb/citizens/{cf_a}"), &who.y, None).await.problem(404, "citizen");
    let sas = srv.hb(Method::POST, "/rtd/csv-transaction/rtd/sas", &who.a1, None).await.json_with(201);
    let (file2, file2_body) = acquirer_file(ABI1, &hpan_a, 2);
    let upload2 = format!(
        "/pagopastorage/{}/{file2}?{}",
        sas["authorizedContainer"].as_str().unwrap(),
        sas["sas"].as_str().unwrap()
    );
    let ctx = Ctx {
        cf_a: cf_a.clone(),
        cf_b: cf_b.clone(),
        hpan_a: hpan_a.clone(),
        hpan_b,
        pan_x,
        file1,
        upload2,
        file2_body,
        token_b: who.tb.clone(),
    };
    let rows = matrix(&ctx);

    // ---- completeness: the matrix lists every documented operation and every routed path ----
    let listed: BTreeSet<(String, String)> =
        rows.iter().map(|r| (r.method.as_str().to_owned(), r.template.to_owned())).collect();
    assert_eq!(listed.len(), rows.len(), "a (method, route) is listed twice");
    let doc = srv.send(srv.req(Method::GET, "/openapi.json")).await.json_with(200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "patch", "delete"].contains(&m.as_str()) {
                documented.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    let missing: Vec<_> = documented.difference(&listed).collect();
    assert!(missing.is_empty(), "operations of the OpenAPI document missing from the matrix: {missing:?}");
    let listed_paths: BTreeSet<&str> =
        rows.iter().map(|r| r.template).chain(PUBLIC_UNDOCUMENTED.iter().copied()).collect();
    let unlisted: Vec<_> = source_routes().into_iter().filter(|p| !listed_paths.contains(p.as_str())).collect();
    assert!(unlisted.is_empty(), "routed paths missing from the matrix: {unlisted:?}");
    let undocumented: Vec<_> = listed.difference(&documented).map(|(m, p)| format!("{m} {p}")).collect();
    // Operations served but not in the OpenAPI document: an alias (the trailing-slash IO count).
    assert_eq!(undocumented, ["GET /bpd/io/payment-instruments/number/"], "undocumented operations");

    // ---- the matrix ----
    let mut failures = Vec::new();
    let mut table = String::new();
    for r in &rows {
        // Denied and hidden cells first, so that an allowed write cannot change what they see.
        let mut order: Vec<usize> = (0..ROLES.len()).collect();
        order.sort_by_key(|&i| matches!(r.expect[i], Expect::Ok | Expect::Through));
        let mut got = [0u16; 9];
        for i in order {
            let resp = send_as(&srv, &who, ROLES[i], r).await;
            got[i] = resp.status;
            if !matches(r.expect[i], resp.status) {
                failures.push(format!(
                    "{} {} as {:?}: expected {:?}, got {}",
                    r.method, r.path, ROLES[i], r.expect[i], resp
                ));
            }
        }
        table.push_str(&format!("{:<7}{:<60}{:?}\n", r.method.as_str(), r.template, got));
    }
    println!("{table}");
    assert!(failures.is_empty(), "{} cells wrong:\n{}\n\nmatrix:\n{table}", failures.len(), failures.join("\n"));

    // ---- what the cells cannot show by status alone ----
    // The salt and the hashed-PAN list went to acquirers only (the cells above), and the salt is
    // the dev salt.
    let salt = srv.hb(Method::GET, "/rtd/payment-instrument-manager/salt", &who.a2, None).await;
    assert_eq!(salt.status, 200);
    assert_eq!(salt.body.trim(), common::DEV_SALT);

    // The audit trail names the authenticated principal of each change: the issuers' writes are
    // theirs, a citizen's writes are about that citizen only.
    let audit = srv.hb(Method::GET, "/bpd/ops/audit?limit=1000", &who.op, None).await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    let events: Vec<serde_json::Value> = serde_json::from_str(&audit.body).unwrap();
    let actors: BTreeSet<&str> = events.iter().filter_map(|e| e["actor"].as_str()).collect();
    let x = format!("issuer:{}", who.x.id);
    assert!(actors.contains(x.as_str()), "{x} missing from {actors:?}");
    let citizen_events: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["actor"].as_str().is_some_and(|a| a.starts_with("citizen:"))).collect();
    assert!(!citizen_events.is_empty(), "no change made by a citizen in {actors:?}");
    for e in citizen_events {
        let cf = &e["actor"].as_str().unwrap()["citizen:".len()..];
        let about = e["subject"].as_str() == Some(cf) || e["detail"]["fiscalCode"].as_str() == Some(cf);
        assert!(about, "a citizen's change about someone else: {e}");
    }

    // A citizen's export holds that citizen's data only.
    let export =
        send_as(&srv, &who, Role::CitizenA, &row(Method::GET, "", "/bpd/io/citizen/export", &[], None, [A; 9])).await;
    assert_eq!(export.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(doc["citizen"]["fiscalCode"].as_str(), Some(ctx.cf_a.as_str()));
    assert!(doc["instruments"].as_array().unwrap().iter().all(|i| i["hpan"].as_str() != Some(ctx.hpan_b.as_str())));
    assert!(!export.body.contains(&ctx.cf_b), "another citizen's fiscal code in A's export");
    drop(srv);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_matrix_on_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_matrix_on_postgres() {
    scenario(Backend::Postgres).await;
}
