//! The shared Store contract suite, on PostgreSQL: a fresh database per test (see `common`).
//! Needs `CASHBACK_TEST_PG_URL`, e.g. `postgres://postgres@127.0.0.1:5432/test`.

mod common;

use std::sync::Arc;

use cashback_store::Store;

async fn fresh() -> Arc<dyn Store> {
    common::fresh().await
}

cashback_store::contract_tests!(fresh());
