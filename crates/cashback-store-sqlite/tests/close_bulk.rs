//! The SQLite close's bulk paths: the citizen rows matched by rowid (with the fiscal-code
//! fallback), the multi-row inserts across statement and batch boundaries, and a close resumed
//! after a crash that lost part of its writes.

use std::collections::HashMap;

use cashback_domain::{AwardPeriod, Money};
use cashback_store::testkit::{fiscal_code, io};
use cashback_store::*;
use cashback_store_sqlite::{SqliteOptions, SqliteStore};
use time::macros::datetime;

const PERIOD: i64 = 77;
/// More than one multi-row statement (500 rows) and uneven.
const CITIZENS: u32 = 1_234;

fn notice(n: NoticeFor<'_>) -> String {
    match n {
        NoticeFor::AwardComputed { award_id, award, .. } => format!("award {award_id} {}", award.fiscal_code),
        NoticeFor::NotEligible { row, .. } => format!("not eligible {}", row.fiscal_code),
        _ => String::new(),
    }
}

fn iban(i: u32) -> Option<String> {
    (!i.is_multiple_of(10)).then(|| format!("IT60X0542811101{i:012}"))
}

fn eligible(i: u32) -> bool {
    !i.is_multiple_of(3)
}

/// The stored awards (fiscal code → (award id, IBAN)) and notices (key → payload).
type Stored = (HashMap<String, (i64, Option<String>)>, HashMap<String, String>);

fn stored(c: &rusqlite::Connection) -> Stored {
    let mut awards = HashMap::new();
    let mut st = c.prepare("SELECT fiscal_code, award_id, payoff_instr FROM award WHERE kind = 'AWARD'").unwrap();
    for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?))).unwrap() {
        let (cf, id, iban) = r.unwrap();
        assert!(awards.insert(cf, (id, iban)).is_none(), "one award per citizen");
    }
    let notices = c
        .prepare("SELECT dedup_key, payload FROM notification")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    (awards, notices)
}

fn check(awards: &HashMap<String, (i64, Option<String>)>, notices: &HashMap<String, String>) {
    assert_eq!(awards.len(), (0..CITIZENS).filter(|i| eligible(*i)).count());
    assert_eq!(notices.len(), CITIZENS as usize, "one notice per citizen");
    for i in 0..CITIZENS {
        let cf = fiscal_code(i).as_str().to_string();
        if eligible(i) {
            let (id, paid_to) = &awards[&cf];
            assert_eq!(paid_to, &iban(i), "{cf}: the citizen's own IBAN");
            assert_eq!(
                notices[&format!("award:{PERIOD}:{cf}")],
                format!("award {id} {cf}"),
                "{cf}: notice of its award"
            );
        } else {
            assert!(!awards.contains_key(&cf));
            assert_eq!(notices[&format!("not-eligible:{PERIOD}:{cf}")], format!("not eligible {cf}"));
        }
    }
}

#[tokio::test]
async fn bulk_close_matches_citizens_and_resumes_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("close.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let period = AwardPeriod { id: PERIOD, ..cashback_domain::period::default_programme().remove(2) };
    store.upsert_award_period(&period).await.unwrap();
    let at = datetime!(2020-12-08 09:00 UTC);
    let citizens = (0..CITIZENS)
        .map(|i| ImportedCitizen { fiscal_code: fiscal_code(i), terms_accepted_at: at, channel: io(), iban: iban(i) })
        .collect();
    store.import_enrollments(EnrollmentImport { citizens, instruments: vec![] }).await.unwrap();
    let totals = (0..CITIZENS)
        .map(|i| {
            let count = if eligible(i) { 50 + i % 7 } else { 1 + i % 40 };
            ImportedTotals {
                fiscal_code: fiscal_code(i),
                cashback: Money::from_cents(i64::from(count) * 100),
                score_total: Money::from_cents(i64::from(count) * 100),
                transactions: count,
                last_counted_us: Some(1_610_000_000_000_000 + i64::from(i)),
            }
        })
        .collect();
    store.import_period_totals(PERIOD, totals, at).await.unwrap();
    store.close().await;

    // Two citizens' ranking numbers swapped: their rows must still get their own IBAN (looked up
    // by fiscal code).
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let (a, b) = (fiscal_code(1).as_str().to_string(), fiscal_code(2).as_str().to_string());
        let id = |cf: &str| {
            c.query_row("SELECT citizen_id FROM citizen_period WHERE fiscal_code = ?1", [cf], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let (ia, ib) = (id(&a), id(&b));
        c.execute("UPDATE citizen_period SET citizen_id = ?2 WHERE fiscal_code = ?1", rusqlite::params![a, ib])
            .unwrap();
        c.execute("UPDATE citizen_period SET citizen_id = ?2 WHERE fiscal_code = ?1", rusqlite::params![b, ia])
            .unwrap();
    }

    let now = datetime!(2021-07-11 06:00 UTC);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let CloseOutcome::Closed(first) = store.close_period(&period, notice, now).await.unwrap() else {
        panic!("first close")
    };
    assert_eq!(first.citizens, u64::from(CITIZENS));
    store.close().await;
    let c = rusqlite::Connection::open(&path).unwrap();
    let (awards, notices) = stored(&c);
    check(&awards, &notices);

    // A crash in the middle of the close: no summary, some awards and notices never written.
    c.execute("DELETE FROM award_close", []).unwrap();
    let lost: Vec<String> =
        (0..CITIZENS).filter(|i| i.is_multiple_of(7)).map(|i| fiscal_code(i).as_str().to_string()).collect();
    for cf in &lost {
        c.execute("DELETE FROM award WHERE fiscal_code = ?1", [cf]).unwrap();
        c.execute("DELETE FROM notification WHERE fiscal_code = ?1", [cf]).unwrap();
    }
    drop(c);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let resumed = store.close_period(&period, notice, now).await.unwrap();
    assert_eq!(resumed, CloseOutcome::Closed(first), "the same decisions");
    assert_eq!(store.close_period(&period, notice, now).await.unwrap(), CloseOutcome::AlreadyClosed(first));
    store.close().await;
    let (again, notices_again) = stored(&rusqlite::Connection::open(&path).unwrap());
    check(&again, &notices_again);
    for (cf, kept) in &awards {
        if !lost.contains(cf) {
            assert_eq!(&again[cf], kept, "{cf}: an award written before the crash is kept");
            assert_eq!(notices_again[&format!("award:{PERIOD}:{cf}")], notices[&format!("award:{PERIOD}:{cf}")]);
        }
    }
}
