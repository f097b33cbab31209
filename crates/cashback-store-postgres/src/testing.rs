//! Test support (feature `testkit`): a fresh, empty PostgreSQL database per test, shared by this
//! crate's tests, the ingestion tests and the end-to-end tests of the binary.
//!
//! Needs a server: `CASHBACK_TEST_PG_URL` is a URL whose user may `CREATE DATABASE`, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`. Each database is created next to that one, named
//! `<prefix><creation time, hex seconds>_…`; databases of the same prefix left by runs older than
//! an hour are dropped by the next run. Without the variable the tests panic (they never skip).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

use crate::{PgOptions, PgStore};

/// The environment variable naming the test server.
pub const URL_VAR: &str = "CASHBACK_TEST_PG_URL";

/// `url` with its database replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// The server URL from `CASHBACK_TEST_PG_URL`; panics with instructions when unset.
pub fn admin_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{URL_VAR} is not set: the PostgreSQL tests need a server whose user may CREATE DATABASE, \
             e.g. {URL_VAR}=postgres://postgres@127.0.0.1:5432/test cargo test --workspace"
        )
    })
}

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {URL_VAR}={url}: {e}"))
}

/// A test database; [`TestDatabase::drop_now`] removes it (tests call it when they pass).
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub url: String,
    pub admin_url: String,
    pub name: String,
}

impl TestDatabase {
    /// Create a new empty database named `<prefix>…` (prefix: lower-case letters, digits, `_`).
    pub async fn create(prefix: &str) -> TestDatabase {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        assert!(prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{prefix}");
        let admin_url = admin_url();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
        let name = format!(
            "{prefix}{:x}_{:x}_{:x}_{:x}",
            now.as_secs(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            now.subsec_nanos()
        );
        let mut admin = connect(&admin_url).await;
        drop_stale(&mut admin, prefix, now.as_secs()).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        admin.close().await.ok();
        TestDatabase { url: with_database(&admin_url, &name), admin_url, name }
    }

    /// Drop the database (its connections are terminated).
    pub async fn drop_now(&self) {
        let mut admin = connect(&self.admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("DROP DATABASE {}: {e}", self.name));
        admin.close().await.ok();
    }
}

/// Drop databases of `prefix` created more than an hour ago. Best effort, once per process and
/// prefix.
async fn drop_stale(admin: &mut PgConnection, prefix: &str, now_secs: u64) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    {
        let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
        if done.iter().any(|p| p == prefix) {
            return;
        }
        done.push(prefix.to_owned());
    }
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind(pattern)
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
    for name in names {
        let created = name[prefix.len()..].split('_').next().and_then(|s| u64::from_str_radix(s, 16).ok());
        if created.is_some_and(|t| t + 3600 < now_secs) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// A migrated store on a new empty database named `<prefix>…`.
pub async fn fresh_store(prefix: &str) -> Arc<PgStore> {
    let db = TestDatabase::create(prefix).await;
    let opts = PgOptions { acquire_timeout: Duration::from_secs(30), ..Default::default() };
    PgStore::connect(&db.url, opts).await.expect("connect to the test database")
}
