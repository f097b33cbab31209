//! Test helpers: a fresh, empty PostgreSQL database per test (see
//! `cashback_store_postgres::testing`; needs `CASHBACK_TEST_PG_URL`).

#![allow(dead_code)]

use std::sync::Arc;

use cashback_store_postgres::PgStore;
use cashback_store_postgres::testing::TestDatabase;

const PREFIX: &str = "cashback_test_";

/// Create a new empty database and return its URL.
pub async fn fresh_database_url() -> String {
    TestDatabase::create(PREFIX).await.url
}

/// A migrated store on a new empty database.
pub async fn fresh() -> Arc<PgStore> {
    cashback_store_postgres::testing::fresh_store(PREFIX).await
}
