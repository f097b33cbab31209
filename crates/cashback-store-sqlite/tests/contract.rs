//! The shared Store contract suite, on SQLite (a fresh temporary database per test).

use std::sync::Arc;

use cashback_store::Store;
use cashback_store_sqlite::{SqliteOptions, SqliteStore};

async fn fresh() -> Arc<dyn Store> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("test.db");
    // Keep the directory for the life of the test process.
    std::mem::forget(dir);
    SqliteStore::open(path, SqliteOptions { synchronous_full: false, ..Default::default() }).expect("open")
}

cashback_store::contract_tests!(fresh());
