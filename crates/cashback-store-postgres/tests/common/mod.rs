//! Test helpers: a fresh, empty PostgreSQL database per test.
//!
//! Needs a server: set `CASHBACK_TEST_PG_URL` to a URL whose user may `CREATE DATABASE`, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`. Each test creates `cashback_test_<…>` next to
//! that database; databases left by runs older than an hour are dropped by the next run.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cashback_store_postgres::{PgOptions, PgStore};
use sqlx::{Connection, PgConnection};

const URL_VAR: &str = "CASHBACK_TEST_PG_URL";
const PREFIX: &str = "cashback_test_";

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

/// Drop test databases created more than an hour ago (their name starts with the creation
/// time in hex seconds). Best effort, once per process.
async fn drop_stale(admin: &mut PgConnection, now_secs: u64) {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'cashback\\_test\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name[PREFIX.len()..].split('_').next().and_then(|s| u64::from_str_radix(s, 16).ok());
        if created.is_some_and(|t| t + 3600 < now_secs) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                .execute(&mut *admin)
                .await;
        }
    }
}

/// Create a new empty database and return its URL.
pub async fn fresh_database_url() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{URL_VAR} is not set: the PostgreSQL contract tests need a server, e.g. \
             {URL_VAR}=postgres://postgres@127.0.0.1:5432/test cargo test -p cashback-store-postgres"
        )
    });
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    let name = format!(
        "{PREFIX}{:x}_{:x}_{:x}_{:x}",
        now.as_secs(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        now.subsec_nanos()
    );
    let mut admin = PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("connect to {URL_VAR}={url}: {e}"));
    drop_stale(&mut admin, now.as_secs()).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    admin.close().await.ok();
    with_database(&url, &name)
}

/// A migrated store on a new empty database.
pub async fn fresh() -> Arc<PgStore> {
    let opts = PgOptions { acquire_timeout: Duration::from_secs(30), ..Default::default() };
    PgStore::connect(&fresh_database_url().await, opts).await.expect("connect to the test database")
}
