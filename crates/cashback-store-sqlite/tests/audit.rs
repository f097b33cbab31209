//! The audit trail is append-only in the database itself.

use cashback_store::Store;
use cashback_store::testkit::{fiscal_code, io, t0};
use cashback_store_sqlite::{SqliteOptions, SqliteStore};

#[tokio::test]
async fn audit_trail_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.enroll_citizen(&fiscal_code(1), None, &io(), t0()).await.unwrap();
    store.close().await;
    let c = rusqlite::Connection::open(&path).unwrap();
    let count = |c: &rusqlite::Connection| c.query_row("SELECT count(*) FROM audit_event", [], |r| r.get::<_, i64>(0));
    assert_eq!(count(&c).unwrap(), 1);
    for sql in ["UPDATE audit_event SET actor = 'someone-else'", "DELETE FROM audit_event"] {
        let err = c.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(count(&c).unwrap(), 1);
}
