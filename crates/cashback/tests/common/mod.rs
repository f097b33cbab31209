//! End-to-end test harness: runs the real `cashback` binary as a child process on a free
//! loopback port, against a fresh SQLite file or a fresh PostgreSQL database, and talks HTTP to it.
//!
//! PostgreSQL: set `CASHBACK_TEST_PG_URL` to a URL whose user may `CREATE DATABASE`, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`. Each test creates `cb_e2e_<…>` next to that
//! database and drops it when it passes; databases left by failed runs older than an hour are
//! dropped by the next run. Without the variable, the PostgreSQL tests panic (never skip).

#![allow(dead_code)]

pub mod pki;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cashback_domain::{FiscalCode, Iban};
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

pub const BIN: &str = env!("CARGO_BIN_EXE_cashback");
/// The fixed PAN hashing salt of `--dev`.
pub const DEV_SALT: &str = "cashback-dev-salt";
pub const PG_URL_VAR: &str = "CASHBACK_TEST_PG_URL";
const PG_PREFIX: &str = "cb_e2e_";
/// Environment variables of the binary that must not leak from the caller's environment.
const CASHBACK_VARS: &[&str] = &[
    "CASHBACK_DATABASE_URL",
    "CASHBACK_CONFIG",
    "CASHBACK_LISTEN",
    "CASHBACK_DEV",
    "CASHBACK_SALT",
    "CASHBACK_JWT_SECRET",
    "CASHBACK_INTROSPECTION_URL",
    "CASHBACK_IBAN_CHECK_URL",
    "CASHBACK_PGP_PASSPHRASE",
];

// ---------------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database (and a temporary directory for it and the server logs).
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// PostgreSQL: the database, dropped by `cleanup`.
    pg: Option<cashback_store_postgres::testing::TestDatabase>,
}

async fn pg_connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {PG_URL_VAR}={url}: {e}"))
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        TestDb { backend: Backend::Sqlite, url, dir, pg: None }
    }

    /// A new empty PostgreSQL database; panics when `CASHBACK_TEST_PG_URL` is unset.
    pub async fn postgres() -> TestDb {
        let db = cashback_store_postgres::testing::TestDatabase::create(PG_PREFIX).await;
        let dir = tempfile::tempdir().expect("temporary directory");
        TestDb { backend: Backend::Postgres, url: db.url.clone(), dir, pg: Some(db) }
    }

    /// SQLite: the database file and its WAL/SHM companions (those that exist).
    pub fn sqlite_files(&self) -> Vec<PathBuf> {
        let base = self.dir.path().join("t.db");
        ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|s| PathBuf::from(format!("{}{s}", base.display())))
            .filter(|p| p.exists())
            .collect()
    }

    /// Everything the database holds, as bytes: SQLite — the raw files; PostgreSQL — every row of
    /// every table of the public schema as JSON text.
    pub async fn raw_contents(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => {
                let mut out = Vec::new();
                for f in self.sqlite_files() {
                    out.extend(std::fs::read(&f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display())));
                    out.push(b'\n');
                }
                out
            }
            Backend::Postgres => {
                let mut conn = pg_connect(&self.url).await;
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
                )
                .fetch_all(&mut conn)
                .await
                .expect("listing tables");
                assert!(tables.iter().any(|t| t == "payment_instrument"), "unexpected schema: {tables:?}");
                let mut out = Vec::new();
                for t in tables {
                    let rows: Vec<String> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT row_to_json(x)::text FROM \"{t}\" x")))
                            .fetch_all(&mut conn)
                            .await
                            .unwrap_or_else(|e| panic!("dumping {t}: {e}"));
                    for r in rows {
                        out.extend_from_slice(t.as_bytes());
                        out.extend_from_slice(b": ");
                        out.extend_from_slice(r.as_bytes());
                        out.push(b'\n');
                    }
                }
                conn.close().await.ok();
                out
            }
        }
    }

    /// Run `cashback admin --database URL ARGS…` and return its stdout.
    pub async fn admin(&self, args: &[&str]) -> String {
        let url = self.url.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(BIN);
            for v in CASHBACK_VARS {
                cmd.env_remove(v);
            }
            let out = cmd
                .arg("admin")
                .arg("--database")
                .arg(&url)
                .args(&args)
                .env("RUST_LOG", "warn")
                .output()
                .expect("running cashback admin");
            assert!(
                out.status.success(),
                "cashback admin {args:?} failed ({}):\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).expect("utf-8 output")
        })
        .await
        .expect("admin task")
    }

    /// Create a credential; returns (id, API key). Fresh keys have never been looked up, so the
    /// server's credential cache (negative results included) cannot hide them.
    pub async fn credential(&self, kind: &str, scope: &str) -> ApiKey {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!("{kind}-{scope}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let out = self.admin(&["credential-create", "--kind", kind, "--scope", scope, "--id", &id]).await;
        let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("admin output {out:?}: {e}"));
        assert_eq!(v["id"], id.as_str(), "admin output: {v}");
        assert_eq!(v["kind"], kind, "admin output: {v}");
        assert_eq!(v["scope"], scope, "admin output: {v}");
        let key = v["apiKey"].as_str().unwrap_or_else(|| panic!("no apiKey in {v}")).to_owned();
        assert!(key.len() >= 32, "short API key {key:?}");
        ApiKey { id, key }
    }

    pub async fn revoke(&self, key: &ApiKey) {
        let out = self.admin(&["credential-revoke", &key.id]).await;
        assert!(out.contains("revoked"), "revoke output: {out}");
    }

    /// PostgreSQL: drop the database (servers must be stopped). SQLite: nothing (the temporary
    /// directory goes with `self`).
    pub async fn cleanup(&self) {
        if let Some(db) = &self.pg {
            db.drop_now().await;
        }
    }
}

/// Run `cashback ARGS…` as a one-shot command (the caller's `CASHBACK_*` variables removed, `env`
/// added, `cwd` as working directory), killed after `max`. Returns (status, stdout, stderr).
pub async fn run_bin(
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    max: Duration,
) -> (ExitStatus, String, String) {
    tokio::task::spawn_blocking(move || {
        // Output through files: no pipe to drain while polling for the exit.
        let out = tempfile::tempfile().expect("stdout file");
        let err = tempfile::tempfile().expect("stderr file");
        let mut cmd = Command::new(BIN);
        for v in CASHBACK_VARS {
            cmd.env_remove(v);
        }
        let mut child = cmd
            .args(&args)
            .envs(env)
            .env("NO_COLOR", "1")
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("stdout handle"))
            .stderr(err.try_clone().expect("stderr handle"))
            .spawn()
            .expect("spawning cashback");
        let deadline = Instant::now() + max;
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cashback {args:?} did not finish within {max:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut s = String::new();
            f.seek(std::io::SeekFrom::Start(0)).expect("seek");
            f.read_to_string(&mut s).expect("utf-8 output");
            s
        };
        (status, read(out), read(err))
    })
    .await
    .expect("command task")
}

#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: String,
    pub key: String,
}

// ---------------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------------

/// How to run `cashback serve`.
#[derive(Clone, Debug)]
pub struct Opts {
    pub dev: bool,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// HTTPS: the CA (PEM) the harness's client trusts; `None` = plain HTTP.
    pub tls_ca: Option<String>,
}

impl Opts {
    /// `--dev`, `RUST_LOG=info`.
    pub fn dev() -> Self {
        Opts { dev: true, args: Vec::new(), env: vec![("RUST_LOG".into(), "info".into())], tls_ca: None }
    }
    /// Without `--dev` (identity and salt must then be given).
    pub fn prod() -> Self {
        Opts { dev: false, ..Self::dev() }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    /// Serve HTTPS with the server certificate of `pki` (the harness's client trusts its CA).
    pub fn https(mut self, pki: &pki::Pki) -> Self {
        self.args.extend(["--tls-cert".into(), pki.server_cert.display().to_string()]);
        self.args.extend(["--tls-key".into(), pki.server_key.display().to_string()]);
        self.tls_ca = Some(pki.ca_pem.clone());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }
}

/// A response, with what was asked, for informative assertion messages.
pub struct Resp {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl fmt::Display for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} → {}", self.method, self.path, self.status)?;
        if let Some(ct) = self.header("content-type") {
            write!(f, " ({ct})")?;
        }
        write!(f, "\n  body: {}", if self.body.is_empty() { "<empty>" } else { &self.body })
    }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert the status code.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status:\n{self}");
        self
    }

    /// Assert the status code and return the JSON body.
    #[track_caller]
    pub fn json_with(&self, status: u16) -> Value {
        self.expect(status);
        self.json()
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}):\n{self}"))
    }

    /// Assert a problem+json error with this status whose `detail` contains `needle`.
    #[track_caller]
    pub fn problem(&self, status: u16, needle: &str) -> Value {
        self.expect(status);
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.starts_with("application/problem+json"), "expected application/problem+json:\n{self}");
        let v = self.json();
        assert_eq!(v["status"], status, "problem.status:\n{self}");
        let detail = v["detail"].as_str().unwrap_or_else(|| panic!("problem without detail:\n{self}"));
        assert!(detail.contains(needle), "problem detail should mention {needle:?}:\n{self}");
        v
    }
}

/// The `cashback serve` child process; killed (and reaped) on drop.
pub struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub db: Arc<TestDb>,
    pub http: reqwest::Client,
    pub log_path: PathBuf,
    child: Child,
    transcript: Mutex<Vec<String>>,
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

pub fn http_client() -> reqwest::Client {
    cashback_api::tls::install_default_provider();
    // Plain HTTP only: no root trusted (the system's are not loaded).
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .tls_certs_only(Vec::new())
        .build()
        .expect("http client")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Server {
    /// Start `cashback serve` on a free loopback port and wait until `/health` answers 200.
    pub async fn start(db: Arc<TestDb>, opts: Opts) -> Server {
        static N: AtomicU32 = AtomicU32::new(0);
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let log_path = db.dir.path().join(format!("server-{}.log", N.fetch_add(1, Ordering::Relaxed)));
            let log = std::fs::File::create(&log_path).expect("log file");
            let mut cmd = Command::new(BIN);
            for v in CASHBACK_VARS {
                cmd.env_remove(v);
            }
            cmd.arg("serve").arg("--listen").arg(addr.to_string()).arg("--database").arg(&db.url);
            // Files the server writes next to itself (spool, dev OpenPGP key) stay in the test dir.
            cmd.current_dir(db.dir.path());
            if opts.dev {
                cmd.arg("--dev");
            }
            cmd.args(&opts.args);
            for (k, v) in &opts.env {
                cmd.env(k, v);
            }
            cmd.env("NO_PROXY", "127.0.0.1,localhost")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file handle"))
                .stderr(log);
            let child = cmd.spawn().expect("spawning cashback serve");
            let (base, http) = match &opts.tls_ca {
                Some(ca) => (format!("https://{addr}"), pki::https_client(ca, None)),
                None => (format!("http://{addr}"), http_client()),
            };
            let mut srv =
                Server { base, addr, db: db.clone(), http, log_path, child, transcript: Mutex::new(Vec::new()) };
            match srv.wait_healthy(Duration::from_secs(15)).await {
                Ok(()) => return srv,
                Err(e) => {
                    last_err = e;
                    // Port taken between probing and binding: try another one.
                    if last_err.contains("binding") || last_err.contains("Address already in use") {
                        continue;
                    }
                    break;
                }
            }
        }
        panic!("cashback serve did not become healthy:\n{last_err}");
    }

    async fn wait_healthy(&mut self, max: Duration) -> Result<(), String> {
        let deadline = Instant::now() + max;
        let probe = self.http.clone();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the server exited early ({status}); log:\n{}", self.log()));
            }
            if let Ok(r) = probe.get(format!("{}/health", self.base)).timeout(Duration::from_secs(1)).send().await
                && r.status().as_u16() == 200
            {
                let body: Value = r.json().await.map_err(|e| e.to_string())?;
                assert_eq!(body["status"], "UP", "health: {body}");
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no 200 from /health within {max:?}; log:\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's stdout + stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Every response (status, headers and body) this harness received from the server.
    pub fn transcript(&self) -> Vec<String> {
        self.transcript.lock().expect("transcript").clone()
    }

    /// SIGKILL: no shutdown of any kind; waits until the process is gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the killed server");
    }

    /// The server's resident set size, KiB (Linux /proc).
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc/PID/status");
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("VmRSS")
    }

    /// Send SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let st = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().expect("running kill");
        assert!(st.success(), "kill -TERM {} failed: {st}", self.pid());
    }

    /// Wait for the process to exit by itself.
    pub async fn wait_exit(&mut self, max: Duration) -> ExitStatus {
        let deadline = Instant::now() + max;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {max:?}; log:\n{}",
                tail(&self.log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Send a request and record the response in the transcript.
    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let req = rb.build().expect("building the request");
        let method = req.method().clone();
        let path = match req.url().query() {
            Some(q) => format!("{}?{q}", req.url().path()),
            None => req.url().path().to_owned(),
        };
        let resp = self.http.execute(req).await.unwrap_or_else(|e| panic!("{method} {path}: transport error: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        let mut record = format!("{status}\n");
        for (k, v) in &headers {
            record.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        record.push_str(&body);
        self.transcript.lock().expect("transcript").push(record);
        Resp { method, path, status, headers, body }
    }

    /// The dev mock login: a bearer token for `cf`.
    /// An acquirer file through the RTD API (SAS, then PUT); the 201 report.
    pub async fn upload_acquirer_file(&self, key: &ApiKey, name: &str, body: Vec<u8>) -> Value {
        let rtd = |m, p: &str| self.req(m, p).header("Ocp-Apim-Subscription-Key", &key.key);
        let sas = self.send(rtd(Method::POST, "/rtd/csv-transaction/rtd/sas")).await.json_with(201);
        let path = format!(
            "/pagopastorage/{}/{name}?{}",
            sas["authorizedContainer"].as_str().unwrap(),
            sas["sas"].as_str().unwrap()
        );
        self.send(rtd(Method::PUT, &path).body(body)).await.json_with(201)
    }

    pub async fn login(&self, cf: &str) -> String {
        let r = self.send(self.req(Method::POST, &format!("/bpd/pagopa/api/v1/login?fiscalCode={cf}"))).await;
        r.expect(200);
        let token = r.body.trim().to_owned();
        assert!(!token.is_empty() && !token.starts_with('{'), "login should answer a plain-text token:\n{r}");
        token
    }

    /// A citizen-app call (`Authorization: Bearer`).
    pub async fn io(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Resp {
        let mut rb = self.req(method, path).bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    /// An issuer / Payment Manager call (`Ocp-Apim-Subscription-Key`).
    pub async fn hb(&self, method: Method, path: &str, key: &ApiKey, body: Option<Value>) -> Resp {
        self.hb_h(method, path, key, &[], body).await
    }

    /// Same, with extra headers.
    pub async fn hb_h(
        &self,
        method: Method,
        path: &str,
        key: &ApiKey,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Resp {
        let mut rb = self.req(method, path).header("Ocp-Apim-Subscription-Key", &key.key);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    pub async fn credential(&self, kind: &str, scope: &str) -> ApiKey {
        self.db.credential(kind, scope).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- server log ({}), last lines ----\n{}\n----",
                self.log_path.display(),
                tail(&self.log(), 60)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------

const LETTERS: &[u8; 26] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A valid fiscal code: six letters from `tag` (padded with X), born 1 January of `yy`.
pub fn fiscal_code(tag: &str, yy: i32) -> String {
    assert!(tag.len() <= 6 && tag.chars().all(|c| c.is_ascii_alphabetic()), "tag {tag:?}: at most 6 letters");
    let mut name = tag.to_ascii_uppercase();
    while name.len() < 6 {
        name.push('X');
    }
    let body = format!("{name}{:02}A01H501", yy.rem_euclid(100));
    for c in LETTERS {
        let cf = format!("{body}{}", *c as char);
        if FiscalCode::parse(&cf).is_ok() {
            return cf;
        }
    }
    unreachable!("a check character always exists for {body}")
}

/// An adult born in 1980.
pub fn adult(tag: &str) -> String {
    fiscal_code(tag, 80)
}

/// A ten-year-old.
pub fn minor(tag: &str) -> String {
    fiscal_code(tag, time::OffsetDateTime::now_utc().year() - 10)
}

/// `cf` with a wrong check character.
pub fn wrong_check_char(cf: &str) -> String {
    let body = &cf[..15];
    for c in LETTERS {
        let s = format!("{body}{}", *c as char);
        if s != cf {
            assert!(FiscalCode::parse(&s).is_err());
            return s;
        }
    }
    unreachable!()
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// hpan = lower-case hex SHA-256(PAN + salt).
pub fn hpan_of(pan: &str, salt: &str) -> String {
    sha256_hex(&format!("{pan}{salt}"))
}

/// A fresh random-looking hpan (64 lower-case hex).
pub fn new_hpan(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
    sha256_hex(&format!("{tag}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// `prefix` + the Luhn check digit.
pub fn luhn_complete(prefix: &str) -> String {
    let mut sum = 0;
    for (i, c) in prefix.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    format!("{prefix}{}", (10 - sum % 10) % 10)
}

/// A valid Italian IBAN (CIN and check digits found by trial) with this account number.
pub fn it_iban(account: u64) -> String {
    for cin in LETTERS {
        for check in 2..=98 {
            let s = format!("IT{check:02}{}0542811101{account:012}", *cin as char);
            if Iban::parse(&s).is_ok() {
                return s;
            }
        }
    }
    unreachable!("no valid IBAN for account {account}")
}

/// Assert an ISO-8601 UTC timestamp ending in `Z`; returns it parsed.
#[track_caller]
pub fn assert_utc_timestamp(v: &Value, what: &str) -> time::OffsetDateTime {
    let s = v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {v}"));
    assert!(s.ends_with('Z'), "{what}: {s:?} should end in Z");
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{what}: {s:?} is not RFC 3339: {e}"))
}

/// Assert that `key` is absent from the JSON object.
#[track_caller]
pub fn assert_absent(v: &Value, key: &str) {
    assert!(v.get(key).is_none(), "{key:?} should be absent from {v}");
}

pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
