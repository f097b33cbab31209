//! TLS of `cashback serve` (issue 9): certificates made here with rcgen; the server started with
//! `--tls-cert/--tls-key` answers over HTTPS, refuses plain HTTP on the same port, is refused
//! by a client that does not trust its CA, and still shuts down gracefully.
//!
//!
//! Mutual TLS: with `--tls-client-ca` and `--tls-require-client-cert`, issuer and acquirer API
//! keys work only with the client certificate bound to their credential (`admin
//! credential-create --client-cert`, `credential-bind-cert`), the citizen API needs none; the
//! binding is stored with the credential, so this part runs on SQLite and PostgreSQL
//! (`CASHBACK_TEST_PG_URL`, never skipped).
//!
//! Run: `CASHBACK_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback --test tls`

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::pki::{ClientCert, Pki, https_client};
use common::{ApiKey, Backend, Opts, Server, TestDb, adult};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener() {
    let db = Arc::new(TestDb::sqlite());
    let pki = Pki::new(&db.dir.path().join("pki"), "platform");
    let mut srv = Server::start(db.clone(), Opts::dev().https(&pki)).await;
    assert!(srv.base.starts_with("https://"), "{}", srv.base);

    // HTTPS works, API calls included (health was probed over HTTPS by the harness).
    let cf = adult("TLSAA");
    let token = srv.login(&cf).await;
    srv.io(Method::PUT, "/bpd/io/citizen", &token, None).await.expect(200);
    srv.io(Method::GET, "/bpd/io/citizen", &token, None).await.expect(200);
    assert!(srv.log().contains("scheme=\"https\"") || srv.log().contains("scheme=https"), "{}", srv.log());

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = common::http_client();
    let r = plain.get(format!("http://{}/health", srv.addr)).send().await;
    assert!(r.is_err(), "plain HTTP on the TLS listener must fail, got {:?}", r.map(|r| r.status()));
    let addr = srv.addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    assert!(!raw.starts_with(b"HTTP/"), "plain HTTP answered: {:?}", String::from_utf8_lossy(&raw));

    // A client that does not trust the platform's CA refuses the connection.
    let other = Pki::new(&db.dir.path().join("other"), "other");
    let r = https_client(&other.ca_pem, None).get(srv.url("/health")).send().await;
    assert!(r.is_err(), "a server certificate from an untrusted CA was accepted");

    // The listener keeps working after failed handshakes, and SIGTERM still drains and exits 0.
    srv.send(srv.req(Method::GET, "/health")).await.expect(200);
    srv.terminate();
    let st = srv.wait_exit(Duration::from_secs(20)).await;
    assert!(st.success(), "exit status {st}; log:\n{}", srv.log());
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_are_checked() {
    let db = Arc::new(TestDb::sqlite());
    let pki = Pki::new(&db.dir.path().join("pki"), "platform");
    let cert = pki.server_cert.display().to_string();
    let key = pki.server_key.display().to_string();
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--tls-cert", &cert], "both the certificate chain and the private key"),
        (vec!["--tls-client-ca", &cert], "need TLS"),
        (vec!["--tls-cert", &cert, "--tls-key", &key, "--tls-require-client-cert"], "needs their CA"),
        (vec!["--tls-cert", &key, "--tls-key", &key], "no CERTIFICATE"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["serve", "--dev", "--listen", "127.0.0.1:0", "--database", &db.url];
        all.extend(args.iter().copied());
        let (st, _out, err) = common::run_bin(
            all.iter().map(|s| s.to_string()).collect(),
            vec![],
            db.dir.path().to_owned(),
            Duration::from_secs(30),
        )
        .await;
        assert!(!st.success(), "{args:?} should be refused");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in:\n{err}");
    }
}

/// `GET path` with `key` over a connection presenting `cert` (or none): the status, or `None`
/// when the TLS handshake itself failed.
async fn call(srv: &Server, ca: &str, cert: Option<&ClientCert>, key: &ApiKey, path: &str) -> Option<u16> {
    let client = https_client(ca, cert);
    match client.get(srv.url(path)).header("Ocp-Apim-Subscription-Key", &key.key).send().await {
        Ok(r) => Some(r.status().as_u16()),
        Err(_) => None,
    }
}

/// Creates a credential bound to `cert` through the admin command; checks the printed fingerprint.
async fn bound_credential(db: &TestDb, kind: &str, scope: &str, id: &str, cert: &ClientCert) -> ApiKey {
    let path = cert.cert_path.display().to_string();
    let out =
        db.admin(&["credential-create", "--kind", kind, "--scope", scope, "--id", id, "--client-cert", &path]).await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["clientCertSha256"], cert.sha256.as_str(), "{v}");
    ApiKey { id: id.to_owned(), key: v["apiKey"].as_str().unwrap().to_owned() }
}

async fn mutual_tls(backend: Backend) {
    let db = Arc::new(TestDb::new(backend).await);
    let pki = Pki::new(&db.dir.path().join("pki"), "platform");
    let (cert_x, cert_y, cert_a, cert_free) =
        (pki.client("issuer-x"), pki.client("issuer-y"), pki.client("acquirer-a"), pki.client("nobody"));
    let stranger = Pki::new(&db.dir.path().join("stranger"), "stranger").client("issuer-x");
    let key_x = bound_credential(&db, "issuer", "BANKX", "issuer-x", &cert_x).await;
    let _key_y = bound_credential(&db, "issuer", "BANKY", "issuer-y", &cert_y).await;
    let key_a = bound_credential(&db, "acquirer", "12345", "acquirer-a", &cert_a).await;
    let key_z = db.credential("issuer", "BANKZ").await; // not bound
    let listed = db.admin(&["credential-list"]).await;
    assert!(listed.contains(&cert_x.sha256) && listed.contains(&cert_a.sha256), "{listed}");

    let ca_path = pki.ca_path.display().to_string();
    let required = Opts::dev().https(&pki).arg("--tls-client-ca").arg(&ca_path).arg("--tls-require-client-cert");
    let srv = Server::start(db.clone(), required).await;
    let ca = pki.ca_pem.as_str();
    let periods = "/bpd/hb/award-periods";
    let salt = "/rtd/payment-instrument-manager/salt";

    // The bound certificate with its key: allowed, on the issuer and the acquirer API.
    assert_eq!(call(&srv, ca, Some(&cert_x), &key_x, periods).await, Some(200));
    assert_eq!(call(&srv, ca, Some(&cert_a), &key_a, salt).await, Some(200));
    // No certificate: 401. Another credential's certificate, an unbound one: 403.
    assert_eq!(call(&srv, ca, None, &key_x, periods).await, Some(401));
    assert_eq!(call(&srv, ca, None, &key_a, salt).await, Some(401));
    assert_eq!(call(&srv, ca, Some(&cert_y), &key_x, periods).await, Some(403));
    assert_eq!(call(&srv, ca, Some(&cert_free), &key_x, periods).await, Some(403));
    assert_eq!(call(&srv, ca, Some(&cert_x), &key_a, salt).await, Some(403));
    // A key without a binding is refused while mutual TLS is required, whatever the certificate.
    assert_eq!(call(&srv, ca, Some(&cert_x), &key_z, periods).await, Some(403));
    assert_eq!(call(&srv, ca, None, &key_z, periods).await, Some(401));
    // A certificate from another CA does not get through the handshake.
    assert_eq!(call(&srv, ca, Some(&stranger), &key_x, periods).await, None);
    // The problem body says why, and never echoes a fingerprint.
    let r = https_client(ca, Some(&cert_y))
        .get(srv.url(periods))
        .header("Ocp-Apim-Subscription-Key", &key_x.key)
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("not the one bound") && !body.contains(&cert_x.sha256), "{body}");
    // The citizen API needs no client certificate.
    let token = srv.login(&adult("MTLSA")).await;
    srv.io(Method::PUT, "/bpd/io/citizen", &token, None).await.expect(200);
    let log = srv.log();
    for fp in [&cert_x.sha256, &cert_y.sha256, &cert_a.sha256] {
        assert!(!log.contains(fp.as_str()), "a certificate fingerprint was logged");
    }
    drop(srv);

    // Bind Z by fingerprint (openssl's notation); without the requirement, only bound keys
    // need their certificate.
    let openssl_style = cert_free
        .sha256
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let out = db.admin(&["credential-bind-cert", &key_z.id, "--sha256", &openssl_style]).await;
    assert!(out.contains(&cert_free.sha256), "{out}");
    let key_w = db.credential("issuer", "BANKW").await;
    let optional = Opts::dev().https(&pki).arg("--tls-client-ca").arg(&ca_path);
    let srv = Server::start(db.clone(), optional).await;
    assert_eq!(call(&srv, ca, None, &key_w, periods).await, Some(200), "unbound key, mutual TLS not required");
    assert_eq!(call(&srv, ca, Some(&cert_free), &key_z, periods).await, Some(200));
    assert_eq!(call(&srv, ca, None, &key_z, periods).await, Some(401), "a bound key always needs its certificate");
    assert_eq!(call(&srv, ca, Some(&cert_x), &key_z, periods).await, Some(403));
    drop(srv);
    // Unbinding gives the key back its plain use.
    db.admin(&["credential-bind-cert", &key_z.id, "--unbind"]).await;
    let srv = Server::start(db.clone(), Opts::dev().https(&pki).arg("--tls-client-ca").arg(&ca_path)).await;
    assert_eq!(call(&srv, ca, None, &key_z, periods).await, Some(200));
    drop(srv);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_sqlite() {
    mutual_tls(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_postgres() {
    mutual_tls(Backend::Postgres).await;
}

/// Outbound clients (token introspection here) on a host without system CA certificates: the
/// server still starts, warns, and plain-http services keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_system_ca_certificates() {
    let db = Arc::new(TestDb::sqlite());
    let empty = db.dir.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("empty.pem"), "").unwrap();
    let opts = Opts::dev()
        .arg("--introspection-url")
        .arg("http://127.0.0.1:9/bpd/api/v1/user")
        .env("SSL_CERT_FILE", &empty.join("empty.pem").display().to_string())
        .env("SSL_CERT_DIR", &empty.display().to_string());
    let srv = Server::start(db.clone(), opts).await;
    srv.send(srv.req(Method::GET, "/health")).await.expect(200);
    assert!(srv.log().contains("no system CA certificates"), "{}", srv.log());
    db.cleanup().await;
}
