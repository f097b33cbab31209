//! TLS of `cashback serve` (issue 9): certificates made here with rcgen; the server started with
//! `--tls-cert/--tls-key` answers over HTTPS, refuses plain HTTP on the same port, is refused
//! by a client that does not trust its CA, and still shuts down gracefully.
//!
//! Run: `cargo test -p cashback --test tls`

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::pki::{Pki, https_client};
use common::{Opts, Server, TestDb, adult};
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
