//! PostgreSQL-specific behaviour beyond the shared contract: start-up migrations across nodes,
//! connection settings, time normalisation, error mapping and lock ordering under races.
//! Needs `CASHBACK_TEST_PG_URL` (see `common`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use cashback_domain::enrollment::InstrumentStatus;
use cashback_store::testkit::{bank, fiscal_code, hpan, io, t0};
use cashback_store::*;
use cashback_store_postgres::{PgOptions, PgStore};
use time::macros::{datetime, offset};

#[test]
fn database_is_replaced_in_url() {
    use cashback_store_postgres::testing::with_database;
    assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
    assert_eq!(with_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let url = common::fresh_database_url().await;
    let joins: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, PgOptions::default()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for j in joins {
        stores.push(j.await.unwrap().expect("every node starts"));
    }
    let (n, last): (i64, i64) = sqlx::query_as("SELECT COUNT(*), MAX(version) FROM schema_migrations")
        .fetch_one(stores[0].pool())
        .await
        .unwrap();
    let migrations = cashback_store_postgres::MIGRATION_COUNT;
    let latest = cashback_store_postgres::MIGRATION_LATEST;
    assert_eq!((n, last), (migrations, latest), "each migration applied once");
    assert_eq!(PgStore::migrate_only(&url).await.unwrap(), 0, "nothing left to apply");
    for s in &stores {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_settings() {
    let store = common::fresh().await;
    assert_eq!(store.backend(), "postgres");
    store.ping().await.unwrap();
    let (timeout,): (String,) = sqlx::query_as("SHOW statement_timeout").fetch_one(store.pool()).await.unwrap();
    assert_eq!(timeout, "10s");
    // Through the trait, as the server does when it shuts down.
    let dyn_store: Arc<dyn Store> = store.clone();
    dyn_store.close().await;
    assert!(store.pool().is_closed());
    assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))), "closed pool is unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_unavailable() {
    let opts = PgOptions { acquire_timeout: Duration::from_secs(1), ..Default::default() };
    match PgStore::connect("postgres://postgres@127.0.0.1:1/nowhere", opts).await {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("expected Unavailable, got a store"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_come_back_in_utc_with_microseconds() {
    let store = common::fresh().await;
    let cf = fiscal_code(1);
    // Nanoseconds and a non-UTC offset in; the same instant, truncated to µs, in UTC out.
    let t = datetime!(2021-03-01 10:00:00.123456789 +02:00);
    let c = store.enroll_citizen(&cf, None, &io(), t).await.unwrap();
    let expected = datetime!(2021-03-01 08:00:00.123456 UTC);
    assert_eq!(c.timestamp_tc, expected);
    assert_eq!(c.timestamp_tc.offset(), offset!(UTC));
    let EnrollInstrumentOutcome::Activated(i) = store.enroll_instrument(&hpan(1), &cf, &io(), t).await.unwrap() else {
        panic!("expected activation")
    };
    assert_eq!(store.get_instrument(&hpan(1)).await.unwrap(), Some(i.clone()));
    assert_eq!(i.activation_date, expected);
    assert_eq!(i.activation_date.offset(), offset!(UTC));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_credential_is_other() {
    let store = common::fresh().await;
    let c = Credential {
        id: "acq-1".into(),
        kind: CredentialKind::Acquirer,
        scope: "32875".into(),
        key_sha256: "c".repeat(64),
        created_at: t0(),
        revoked_at: None,
        client_cert_sha256: None,
    };
    store.insert_credential(&c).await.unwrap();
    assert!(matches!(store.insert_credential(&c).await, Err(StoreError::Other(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_enrollment_of_a_citizen() {
    let store = common::fresh().await;
    for n in 0..20 {
        let cf = fiscal_code(100 + n);
        let joins: Vec<_> = (0..4)
            .map(|_| {
                let (s, cf) = (store.clone(), cf.clone());
                tokio::spawn(async move { s.enroll_citizen(&cf, None, &io(), t0()).await.unwrap() })
            })
            .collect();
        for j in joins {
            let c = j.await.unwrap();
            assert!(c.enabled);
            assert_eq!(c.timestamp_tc, t0());
        }
    }
}

/// Withdrawal racing with instrument enrollments of the same citizen: whatever the interleaving,
/// a withdrawn citizen keeps no active instrument and no open activation window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_racing_enrollments_leaves_nothing_active() {
    let store: Arc<PgStore> = common::fresh().await;
    let cf = fiscal_code(200);
    for round in 0..10u64 {
        store.enroll_citizen(&cf, None, &io(), t0()).await.unwrap();
        let mut joins = Vec::new();
        for k in 0..8u64 {
            let (s, cf) = (store.clone(), cf.clone());
            let h = hpan(1_000 * (round + 1) + k);
            joins.push(tokio::spawn(async move {
                s.enroll_instrument(&h, &cf, &bank("bank-z"), t0()).await.unwrap();
                h
            }));
        }
        let (s, c2) = (store.clone(), cf.clone());
        let withdraw = tokio::spawn(async move { s.withdraw_citizen(&c2, &io(), t0()).await.unwrap() });
        let hpans: Vec<_> = futures_join(joins).await;
        assert!(matches!(withdraw.await.unwrap(), WithdrawOutcome::Withdrawn { .. }));
        assert!(store.count_active_instruments(&cf).await.unwrap().is_empty(), "round {round}");
        for h in &hpans {
            if let Some(i) = store.get_instrument(h).await.unwrap() {
                assert_eq!(i.status, InstrumentStatus::Inactive);
                assert!(store.instrument_history(h).await.unwrap().iter().all(|w| w.to.is_some()));
            }
        }
    }
}

async fn futures_join<T>(joins: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(joins.len());
    for j in joins {
        out.push(j.await.unwrap());
    }
    out
}

/// The audit trail is append-only in the database itself: no UPDATE, DELETE or TRUNCATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_is_append_only() {
    let store = common::fresh().await;
    store.enroll_citizen(&fiscal_code(1), None, &io(), t0()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_event").fetch_one(store.pool()).await.unwrap();
    assert_eq!(n, 1);
    for sql in ["UPDATE audit_event SET actor = 'someone-else'", "DELETE FROM audit_event", "TRUNCATE audit_event"] {
        let err = sqlx::query(sql).execute(store.pool()).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_event").fetch_one(store.pool()).await.unwrap();
    assert_eq!(n, 1);
}
