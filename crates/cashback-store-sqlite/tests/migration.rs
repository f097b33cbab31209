//! Upgrading a database created by an older version keeps every instrument and window.

use cashback_domain::Hpan;
use cashback_domain::enrollment::InstrumentStatus;
use cashback_store::Store;
use cashback_store::testkit::fiscal_code;
use cashback_store_sqlite::{SqliteOptions, SqliteStore};

const V1: &str = include_str!("../migrations/0001_init.sql");

#[tokio::test]
async fn version_1_database_is_upgraded_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let h1 = "a".repeat(64);
    let h2 = "0123456789abcdef".repeat(4);
    let (a, b) = (fiscal_code(1), fiscal_code(2));
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT;",
        )
        .unwrap();
        c.execute_batch(V1).unwrap();
        c.execute_batch(&format!(
            "INSERT INTO schema_migrations VALUES (1, 'init', 0);
             INSERT INTO payment_instrument VALUES ('{h1}', '{a}', 'app-io-channel', 'ACTIVE', 3000000, NULL, 3000000);
             INSERT INTO payment_instrument VALUES ('{h2}', '{b}', 'bank-x', 'INACTIVE', 1000000, 2000000, 2000000);
             INSERT INTO payment_instrument_history VALUES ('{h1}', 1000000, 0, '{b}', 'bank-x', 2000000);
             INSERT INTO payment_instrument_history VALUES ('{h1}', 3000000, 0, '{a}', 'app-io-channel', NULL);
             INSERT INTO payment_instrument_history VALUES ('{h2}', 1000000, 0, '{b}', 'bank-x', 2000000);"
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let hpan1 = Hpan::parse(&h1).unwrap();
    let i = store.get_instrument(&hpan1).await.unwrap().unwrap();
    assert_eq!(i.fiscal_code, a);
    assert_eq!(i.status, InstrumentStatus::Active);
    let hist = store.instrument_history(&hpan1).await.unwrap();
    let summary: Vec<_> = hist
        .iter()
        .map(|w| (w.fiscal_code.as_str().to_owned(), w.from.unix_timestamp(), w.to.map(|t| t.unix_timestamp())))
        .collect();
    assert_eq!(summary, vec![(b.as_str().to_owned(), 1, Some(2)), (a.as_str().to_owned(), 3, None)]);
    let hpan2 = Hpan::parse(&h2).unwrap();
    assert_eq!(store.get_instrument(&hpan2).await.unwrap().unwrap().status, InstrumentStatus::Inactive);
    assert_eq!(store.instrument_history(&hpan2).await.unwrap().len(), 1);
    store.close().await;
}
