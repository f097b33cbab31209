//! The contract test suite every `Store` backend must pass.
//!
//! A backend crate calls [`contract_tests!`](crate::contract_tests) with an async expression that
//! yields a fresh, empty, migrated `Arc<dyn Store>`; the macro expands to one `#[tokio::test]`
//! per story, so each failure is reported by name.

use std::sync::Arc;

use cashback_domain::eligibility::Ineligible;
use cashback_domain::enrollment::{Channel, InstrumentStatus, OptInStatus};
use cashback_domain::{AwardPeriod, FiscalCode, Hpan};
use time::macros::datetime;
use time::{Date, OffsetDateTime};

use crate::*;

/// A valid fiscal code derived from `n` (the check character is found by trial).
pub fn fiscal_code(n: u32) -> FiscalCode {
    const L: &[u8; 26] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let a = L[(n % 26) as usize] as char;
    let b = L[((n / 26) % 26) as usize] as char;
    let c = L[((n / 676) % 26) as usize] as char;
    let d = L[((n / 17576) % 26) as usize] as char;
    let body = format!("{a}{b}{c}{d}XX80A01H501");
    for check in L {
        if let Ok(cf) = FiscalCode::parse(&format!("{body}{}", *check as char)) {
            return cf;
        }
    }
    panic!("no check character found for {body}");
}

/// A distinct hpan derived from `n`.
pub fn hpan(n: u64) -> Hpan {
    Hpan::parse(&format!("{n:064x}")).expect("valid hpan")
}

pub fn t0() -> OffsetDateTime {
    datetime!(2020-12-08 09:00:00.123456 UTC)
}

fn secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

pub fn io() -> Channel {
    Channel::io()
}

pub fn bank(name: &str) -> Channel {
    Channel::parse(name).expect("valid channel")
}

pub fn payoff(iban: &str) -> Payoff {
    Payoff {
        iban: iban.to_owned(),
        instr_type: "IBAN".to_owned(),
        account_holder_cf: Some("RSSMRA85T10A562S".to_owned()),
        account_holder_name: Some("Mario".to_owned()),
        account_holder_surname: Some("Rossi".to_owned()),
        check_status: "OK".to_owned(),
        technical_account_holder: None,
        issuer_card_id: None,
    }
}

pub async fn citizen_enroll_is_idempotent(store: Arc<dyn Store>) {
    let cf = fiscal_code(1);
    assert_eq!(store.get_citizen(&cf).await.unwrap(), None);
    let c = store.enroll_citizen(&cf, None, &io(), t0()).await.unwrap();
    assert!(c.enabled);
    assert_eq!(c.fiscal_code, cf);
    assert_eq!(c.timestamp_tc, t0());
    assert_eq!(c.opt_in_status, OptInStatus::NoReq);
    assert_eq!(c.payoff, None);
    assert_eq!(c.channel, "app-io-channel");
    // Again later: T&C timestamp unchanged.
    let again = store.enroll_citizen(&cf, None, &io(), t0() + secs(60)).await.unwrap();
    assert_eq!(again.timestamp_tc, t0());
    assert_eq!(store.get_citizen(&cf).await.unwrap(), Some(again));
}

pub async fn opt_in_moves_one_way(store: Arc<dyn Store>) {
    let cf = fiscal_code(2);
    let c = store.enroll_citizen(&cf, Some(OptInStatus::NoReq), &io(), t0()).await.unwrap();
    assert_eq!(c.opt_in_status, OptInStatus::NoReq);
    let c = store.enroll_citizen(&cf, Some(OptInStatus::Accepted), &io(), t0()).await.unwrap();
    assert_eq!(c.opt_in_status, OptInStatus::Accepted);
    let c = store.enroll_citizen(&cf, Some(OptInStatus::Denied), &io(), t0()).await.unwrap();
    assert_eq!(c.opt_in_status, OptInStatus::Accepted, "opt-in must not change once set");
    let cf2 = fiscal_code(3);
    let c2 = store.enroll_citizen(&cf2, Some(OptInStatus::Denied), &io(), t0()).await.unwrap();
    assert_eq!(c2.opt_in_status, OptInStatus::Denied);
}

pub async fn instrument_lifecycle_and_history(store: Arc<dyn Store>) {
    let a = fiscal_code(10);
    let b = fiscal_code(11);
    let h = hpan(1);
    // Not enrolled → refused.
    assert_eq!(store.enroll_instrument(&h, &a, &io(), t0()).await.unwrap(), EnrollInstrumentOutcome::CitizenNotEnabled);
    assert_eq!(store.get_instrument(&h).await.unwrap(), None);
    store.enroll_citizen(&a, None, &io(), t0()).await.unwrap();
    store.enroll_citizen(&b, None, &bank("bank-b"), t0()).await.unwrap();

    let t1 = t0() + secs(10);
    let EnrollInstrumentOutcome::Activated(i) = store.enroll_instrument(&h, &a, &io(), t1).await.unwrap() else {
        panic!("expected activation")
    };
    assert_eq!(i.status, InstrumentStatus::Active);
    assert_eq!(i.fiscal_code, a);
    assert_eq!(i.activation_date, t1);
    assert_eq!(i.deactivation_date, None);
    assert_eq!(i.channel, "app-io-channel");
    // Idempotent for the owner; activation date unchanged.
    let EnrollInstrumentOutcome::AlreadyActive(same) =
        store.enroll_instrument(&h, &a, &io(), t1 + secs(5)).await.unwrap()
    else {
        panic!("expected already active")
    };
    assert_eq!(same.activation_date, t1);
    // Someone else → 409.
    assert_eq!(
        store.enroll_instrument(&h, &b, &bank("bank-b"), t1).await.unwrap(),
        EnrollInstrumentOutcome::OwnedByOther
    );
    assert_eq!(store.delete_instrument(&h, Some(&b), t1).await.unwrap(), DeleteInstrumentOutcome::OwnedByOther);
    // Owner deletes.
    let t2 = t1 + secs(100);
    assert_eq!(store.delete_instrument(&h, Some(&a), t2).await.unwrap(), DeleteInstrumentOutcome::Deactivated);
    assert_eq!(store.delete_instrument(&h, Some(&a), t2).await.unwrap(), DeleteInstrumentOutcome::AlreadyInactive);
    let i = store.get_instrument(&h).await.unwrap().unwrap();
    assert_eq!(i.status, InstrumentStatus::Inactive);
    assert_eq!(i.deactivation_date, Some(t2));
    // Another citizen takes it over.
    let t3 = t2 + secs(100);
    let EnrollInstrumentOutcome::Activated(i) = store.enroll_instrument(&h, &b, &bank("bank-b"), t3).await.unwrap()
    else {
        panic!("expected reactivation")
    };
    assert_eq!(i.fiscal_code, b);
    assert_eq!(i.channel, "bank-b");
    assert_eq!(i.deactivation_date, None);
    // The history keeps both windows with their owners.
    let hist = store.instrument_history(&h).await.unwrap();
    assert_eq!(
        hist,
        vec![
            ActivationWindow {
                hpan: h.clone(),
                fiscal_code: a.clone(),
                channel: "app-io-channel".into(),
                from: t1,
                to: Some(t2)
            },
            ActivationWindow { hpan: h.clone(), fiscal_code: b.clone(), channel: "bank-b".into(), from: t3, to: None },
        ]
    );
    // Unknown instrument.
    assert_eq!(store.delete_instrument(&hpan(999), Some(&a), t3).await.unwrap(), DeleteInstrumentOutcome::NotFound);
    // Delete by hpan only (trusted caller).
    assert_eq!(store.delete_instrument(&h, None, t3 + secs(1)).await.unwrap(), DeleteInstrumentOutcome::Deactivated);
}

/// Windows opened and closed within one instant (a fixed clock, or a fast client) are all kept,
/// in the order they happened, each with its owner.
pub async fn history_keeps_same_instant_windows(store: Arc<dyn Store>) {
    let a = fiscal_code(12);
    let b = fiscal_code(13);
    let h = hpan(2);
    store.enroll_citizen(&a, None, &io(), t0()).await.unwrap();
    store.enroll_citizen(&b, None, &bank("bank-b"), t0()).await.unwrap();
    let t = t0() + secs(1);
    for owner in [&a, &b, &a] {
        let ch = if owner == &a { io() } else { bank("bank-b") };
        assert!(matches!(
            store.enroll_instrument(&h, owner, &ch, t).await.unwrap(),
            EnrollInstrumentOutcome::Activated(_)
        ));
        assert_eq!(store.delete_instrument(&h, Some(owner), t).await.unwrap(), DeleteInstrumentOutcome::Deactivated);
    }
    store.enroll_instrument(&h, &b, &bank("bank-b"), t).await.unwrap();
    let hist = store.instrument_history(&h).await.unwrap();
    let owners: Vec<_> = hist.iter().map(|w| (w.fiscal_code.clone(), w.to)).collect();
    assert_eq!(owners, vec![(a.clone(), Some(t)), (b.clone(), Some(t)), (a.clone(), Some(t)), (b.clone(), None)]);
    assert!(hist.iter().all(|w| w.from == t && w.hpan == h));
    // Withdrawal closes the open window too.
    store.withdraw_citizen(&b, &bank("bank-b"), t + secs(1)).await.unwrap();
    let hist = store.instrument_history(&h).await.unwrap();
    assert_eq!(hist.len(), 4);
    assert_eq!(hist[3].to, Some(t + secs(1)));
}

pub async fn concurrent_enrollment_has_one_winner(store: Arc<dyn Store>) {
    let a = fiscal_code(20);
    let b = fiscal_code(21);
    store.enroll_citizen(&a, None, &io(), t0()).await.unwrap();
    store.enroll_citizen(&b, None, &io(), t0()).await.unwrap();
    for round in 0..50u64 {
        let h = hpan(10_000 + round);
        let (s1, s2) = (store.clone(), store.clone());
        let (h1, h2) = (h.clone(), h.clone());
        let (a1, b1) = (a.clone(), b.clone());
        let j1 = tokio::spawn(async move { s1.enroll_instrument(&h1, &a1, &io(), t0()).await.unwrap() });
        let j2 = tokio::spawn(async move { s2.enroll_instrument(&h2, &b1, &io(), t0()).await.unwrap() });
        let (r1, r2) = (j1.await.unwrap(), j2.await.unwrap());
        let wins = [&r1, &r2].iter().filter(|r| matches!(r, EnrollInstrumentOutcome::Activated(_))).count();
        let conflicts = [&r1, &r2].iter().filter(|r| matches!(r, EnrollInstrumentOutcome::OwnedByOther)).count();
        assert_eq!((wins, conflicts), (1, 1), "round {round}: {r1:?} / {r2:?}");
        let owner = store.get_instrument(&h).await.unwrap().unwrap().fiscal_code;
        let winner = if matches!(r1, EnrollInstrumentOutcome::Activated(_)) { &a } else { &b };
        assert_eq!(&owner, winner);
        assert_eq!(store.instrument_history(&h).await.unwrap().len(), 1);
    }
}

pub async fn payoff_rules(store: Arc<dyn Store>) {
    let cf = fiscal_code(30);
    assert_eq!(
        store.set_payoff(&cf, payoff("IT60X0542811101000000123456"), t0()).await.unwrap(),
        SetPayoffOutcome::CitizenNotFound
    );
    store.enroll_citizen(&cf, None, &io(), t0()).await.unwrap();
    let mut p = payoff("IT60X0542811101000000123456");
    p.technical_account_holder = Some("Banca X".into());
    p.issuer_card_id = Some("card-1".into());
    let SetPayoffOutcome::Updated(c) = store.set_payoff(&cf, p.clone(), t0()).await.unwrap() else {
        panic!("expected update")
    };
    assert_eq!(c.payoff, Some(p.clone()), "returned citizen");
    assert_eq!(store.get_citizen(&cf).await.unwrap().unwrap().payoff, Some(p));
    store.withdraw_citizen(&cf, &io(), t0()).await.unwrap();
    assert_eq!(
        store.set_payoff(&cf, payoff("IT60X0542811101000000123456"), t0()).await.unwrap(),
        SetPayoffOutcome::CitizenNotEnabled
    );
}

pub async fn withdrawal_is_all_or_nothing(store: Arc<dyn Store>) {
    let cf = fiscal_code(40);
    store.enroll_citizen(&cf, Some(OptInStatus::Accepted), &io(), t0()).await.unwrap();
    store.set_payoff(&cf, payoff("IT60X0542811101000000123456"), t0()).await.unwrap();
    let (h1, h2, h3) = (hpan(401), hpan(402), hpan(403));
    store.enroll_instrument(&h1, &cf, &io(), t0()).await.unwrap();
    store.enroll_instrument(&h2, &cf, &bank("bank-x"), t0()).await.unwrap();
    store.enroll_instrument(&h3, &cf, &bank("bank-x"), t0()).await.unwrap();
    store.delete_instrument(&h3, Some(&cf), t0() + secs(1)).await.unwrap();
    let counts = store.count_active_instruments(&cf).await.unwrap();
    assert_eq!(
        counts,
        vec![
            ChannelCount { channel: "app-io-channel".into(), count: 1 },
            ChannelCount { channel: "bank-x".into(), count: 1 }
        ]
    );
    // An issuer cannot withdraw a citizen with IO instruments: nothing changes.
    let t1 = t0() + secs(60);
    assert_eq!(store.withdraw_citizen(&cf, &bank("bank-x"), t1).await.unwrap(), WithdrawOutcome::TooManyChannels);
    let c = store.get_citizen(&cf).await.unwrap().unwrap();
    assert!(c.enabled);
    assert!(c.payoff.is_some());
    assert_eq!(store.get_instrument(&h1).await.unwrap().unwrap().status, InstrumentStatus::Active);
    // IO can.
    assert_eq!(store.withdraw_citizen(&cf, &io(), t1).await.unwrap(), WithdrawOutcome::Withdrawn { instruments: 2 });
    let c = store.get_citizen(&cf).await.unwrap().unwrap();
    assert!(!c.enabled);
    assert_eq!(c.payoff, None);
    assert_eq!(c.opt_in_status, OptInStatus::NoReq);
    assert_eq!(c.cancellation, Some(t1));
    for h in [&h1, &h2] {
        let i = store.get_instrument(h).await.unwrap().unwrap();
        assert_eq!(i.status, InstrumentStatus::Inactive);
        assert_eq!(i.deactivation_date, Some(t1));
        let hist = store.instrument_history(h).await.unwrap();
        assert_eq!(hist.last().unwrap().to, Some(t1));
    }
    assert!(store.count_active_instruments(&cf).await.unwrap().is_empty());
    // Idempotent.
    assert_eq!(store.withdraw_citizen(&cf, &io(), t1).await.unwrap(), WithdrawOutcome::AlreadyWithdrawn);
    assert_eq!(store.withdraw_citizen(&fiscal_code(41), &io(), t1).await.unwrap(), WithdrawOutcome::NotFound);
    // Instruments refused while withdrawn; re-enrollment gives a new T&C timestamp, opt-in NOREQ.
    assert_eq!(
        store.enroll_instrument(&hpan(404), &cf, &io(), t1).await.unwrap(),
        EnrollInstrumentOutcome::CitizenNotEnabled
    );
    let t2 = t1 + secs(60);
    let c = store.enroll_citizen(&cf, Some(OptInStatus::Accepted), &io(), t2).await.unwrap();
    assert!(c.enabled);
    assert_eq!(c.timestamp_tc, t2);
    assert_eq!(c.opt_in_status, OptInStatus::NoReq);
    // An issuer whose channel owns every active instrument may withdraw.
    let cf2 = fiscal_code(42);
    store.enroll_citizen(&cf2, None, &bank("bank-y"), t0()).await.unwrap();
    store.enroll_instrument(&hpan(405), &cf2, &bank("bank-y"), t0()).await.unwrap();
    assert_eq!(
        store.withdraw_citizen(&cf2, &bank("bank-y"), t1).await.unwrap(),
        WithdrawOutcome::Withdrawn { instruments: 1 }
    );
}

pub async fn award_periods(store: Arc<dyn Store>) {
    let defaults = cashback_domain::period::default_programme();
    assert_eq!(store.seed_award_periods(&defaults).await.unwrap(), defaults.len() as u64);
    assert_eq!(store.seed_award_periods(&defaults).await.unwrap(), 0, "seeding is idempotent");
    assert_eq!(store.list_award_periods().await.unwrap(), defaults);
    let mut p: AwardPeriod = defaults[1].clone();
    p.grace_period_days = 20;
    p.min_transaction_number = 55;
    store.upsert_award_period(&p).await.unwrap();
    let listed = store.list_award_periods().await.unwrap();
    assert_eq!(listed[1], p);
    assert_eq!(listed.len(), defaults.len());
}

pub async fn credentials(store: Arc<dyn Store>) {
    let c = Credential {
        id: "issuer-1".into(),
        kind: CredentialKind::Issuer,
        scope: "bank-x".into(),
        key_sha256: "a".repeat(64),
        created_at: t0(),
        revoked_at: None,
        client_cert_sha256: None,
    };
    store.insert_credential(&c).await.unwrap();
    assert!(store.insert_credential(&c).await.is_err(), "duplicate credential id must fail");
    assert_eq!(store.find_credential_by_key_hash(&"a".repeat(64)).await.unwrap(), Some(c.clone()));
    assert_eq!(store.find_credential_by_key_hash(&"b".repeat(64)).await.unwrap(), None);
    assert_eq!(store.list_credentials().await.unwrap(), vec![c.clone()]);
    // Client-certificate binding: set, replaced, cleared; stored with the credential.
    let bound = Credential {
        id: "acquirer-1".into(),
        kind: CredentialKind::Acquirer,
        scope: "12345".into(),
        key_sha256: "d".repeat(64),
        created_at: t0(),
        revoked_at: None,
        client_cert_sha256: Some("e".repeat(64)),
    };
    store.insert_credential(&bound).await.unwrap();
    assert_eq!(store.find_credential_by_key_hash(&"d".repeat(64)).await.unwrap(), Some(bound.clone()));
    let fp = "f".repeat(64);
    assert!(store.bind_client_cert("issuer-1", Some(&fp)).await.unwrap());
    let got = store.find_credential_by_key_hash(&"a".repeat(64)).await.unwrap().unwrap();
    assert_eq!(got.client_cert_sha256.as_deref(), Some(fp.as_str()));
    assert!(store.bind_client_cert("acquirer-1", None).await.unwrap());
    assert_eq!(store.find_credential_by_key_hash(&"d".repeat(64)).await.unwrap().unwrap().client_cert_sha256, None);
    assert!(!store.bind_client_cert("nobody", Some(&fp)).await.unwrap(), "unknown credential");
    assert!(store.bind_client_cert("issuer-1", Some("short")).await.is_err(), "a fingerprint is 64 hex digits");
    assert_eq!(store.list_credentials().await.unwrap().len(), 2);
    assert!(store.bind_client_cert("acquirer-1", Some(&fp)).await.unwrap(), "one certificate, two credentials");
    assert!(store.revoke_credential("acquirer-1", t0()).await.unwrap());
    assert!(!store.bind_client_cert("acquirer-1", None).await.unwrap(), "revoked credentials are not changed");
    assert!(store.revoke_credential("issuer-1", t0()).await.unwrap());
    assert!(!store.revoke_credential("issuer-1", t0()).await.unwrap());
    assert_eq!(store.find_credential_by_key_hash(&"a".repeat(64)).await.unwrap().unwrap().revoked_at, Some(t0()));
}

pub async fn many_writers_all_durable(store: Arc<dyn Store>) {
    let cf = fiscal_code(50);
    store.enroll_citizen(&cf, None, &io(), t0()).await.unwrap();
    let mut joins = Vec::new();
    for n in 0..400u64 {
        let s = store.clone();
        let cf = cf.clone();
        joins.push(tokio::spawn(async move { s.enroll_instrument(&hpan(50_000 + n), &cf, &io(), t0()).await }));
    }
    for j in joins {
        assert!(matches!(j.await.unwrap().unwrap(), EnrollInstrumentOutcome::Activated(_)));
    }
    let counts = store.count_active_instruments(&cf).await.unwrap();
    assert_eq!(counts, vec![ChannelCount { channel: "app-io-channel".into(), count: 400 }]);
}

// ---- acquirer pipeline ----

/// A stored row for tests: `n` distinguishes the dedup key and the acquirer's transaction id.
pub fn stored_trx(n: u64, hpan_n: u64, owner: Option<(&FiscalCode, i64)>, at: OffsetDateTime) -> StoredTransaction {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&n.to_be_bytes());
    StoredTransaction {
        dedup_key: key,
        line: n,
        hpan: hpan(hpan_n),
        fiscal_code: owner.map(|o| o.0.clone()),
        award_period_id: owner.map(|o| o.1),
        ineligible: if owner.is_some() { None } else { Some(Ineligible::InstrumentNotEnrolled) },
        at,
        reversal: n % 5 == 4,
        amount_cents: 1_000 + n as i64,
        circuit_type: 1,
        sender_code: "12345".into(),
        acquirer_id: "ACQ1".into(),
        merchant_id: format!("M{n}"),
        terminal_id: "T1".into(),
        id_trx_acquirer: format!("ID{n}"),
        id_trx_issuer: if n.is_multiple_of(2) { Some(format!("ISS{n}")) } else { None },
        correlation_id: if n.is_multiple_of(3) { Some(format!("C{n}")) } else { None },
        bin: "40236010".into(),
        mcc: Some("5411".into()),
        pos_type: if n.is_multiple_of(2) { Some(0) } else { None },
        par: None,
    }
}

fn new_file(name: &str) -> NewAcquirerFile {
    NewAcquirerFile { name: name.into(), abi: "12345".into(), size: 1234, sha256: "ab".repeat(32) }
}

fn started(b: BeginFile) -> AcquirerFile {
    match b {
        BeginFile::Started(f) => f,
        other => panic!("expected Started, got {other:?}"),
    }
}

pub async fn acquirer_file_lifecycle(store: Arc<dyn Store>) {
    let a = fiscal_code(60);
    let at = datetime!(2021-01-15 10:30:00.250 +01:00);
    let f =
        started(store.begin_acquirer_file(new_file("CSTAR.12345.TRNLOG.20210116.010000.001.csv"), t0()).await.unwrap());
    assert_eq!((f.status, f.last_line, f.counts), (FileStatus::Processing, 0, FileCounts::default()));
    let rows = vec![
        stored_trx(1, 1, Some((&a, 1)), at),
        stored_trx(2, 2, None, at),
        stored_trx(3, 1, Some((&a, 1)), at + secs(60)),
    ];
    let chunk = IngestChunk {
        rows: rows.clone(),
        rejections: vec![Rejection { line: 4, field: "bin".into(), reason: "must be 6 or 8 digits".into() }],
        last_line: 4,
        checksum: Some("#sha256sum:".to_owned() + &"0".repeat(64)),
    };
    let out = store.ingest_chunk(f.id, chunk).await.unwrap();
    assert_eq!(out, ChunkOutcome { accepted: 2, ineligible: 1, duplicates: 0 });
    // Interrupted here: beginning again resumes after line 4 with the counters so far.
    let BeginFile::Resume(r) =
        store.begin_acquirer_file(new_file("CSTAR.12345.TRNLOG.20210116.010000.001.csv"), t0()).await.unwrap()
    else {
        panic!("expected Resume")
    };
    assert_eq!(r.id, f.id);
    assert_eq!(r.last_line, 4);
    assert_eq!(r.counts, FileCounts { accepted: 2, ineligible: 1, duplicates: 0, rejected: 1 });
    assert!(r.checksum.as_deref().unwrap().starts_with("#sha256sum:"));
    // A later chunk repeating rows: duplicates, counted once.
    let chunk = IngestChunk {
        rows: vec![rows[0].clone(), stored_trx(5, 1, Some((&a, 1)), at + secs(120))],
        rejections: vec![],
        last_line: 6,
        checksum: None,
    };
    assert_eq!(
        store.ingest_chunk(f.id, chunk).await.unwrap(),
        ChunkOutcome { accepted: 1, ineligible: 0, duplicates: 1 }
    );
    let done = store.finish_acquirer_file(f.id, None, t0() + secs(5)).await.unwrap();
    assert_eq!(done.status, FileStatus::Done);
    assert_eq!(done.finished_at, Some(t0() + secs(5)));
    assert_eq!(done.counts, FileCounts { accepted: 3, ineligible: 1, duplicates: 1, rejected: 1 });
    assert_eq!(done.last_line, 6);
    let BeginFile::AlreadyDone(again) =
        store.begin_acquirer_file(new_file("CSTAR.12345.TRNLOG.20210116.010000.001.csv"), t0()).await.unwrap()
    else {
        panic!("expected AlreadyDone")
    };
    assert_eq!(again, done);
    assert_eq!(store.get_acquirer_file(&done.name).await.unwrap(), Some(done.clone()));
    assert_eq!(store.get_acquirer_file("CSTAR.99999.TRNLOG.20210116.010000.001.csv").await.unwrap(), None);
    let rej = store.file_rejections(f.id, 10).await.unwrap();
    assert_eq!(rej, vec![Rejection { line: 4, field: "bin".into(), reason: "must be 6 or 8 digits".into() }]);
    // The citizen's eligible transactions, every field round-tripped, oldest first.
    let mine = store.citizen_transactions(&a).await.unwrap();
    assert_eq!(mine, vec![rows[0].clone(), rows[2].clone(), stored_trx(5, 1, Some((&a, 1)), at + secs(120))]);
    assert_eq!(mine[0].at.offset(), at.offset(), "the acquirer's offset is kept");
    // Support view of an instrument includes ineligible rows with their reason.
    let card2 = store.instrument_transactions(&hpan(2)).await.unwrap();
    assert_eq!(card2, vec![rows[1].clone()]);
    assert_eq!(card2[0].ineligible, Some(Ineligible::InstrumentNotEnrolled));
}

pub async fn failed_file_can_be_sent_again(store: Arc<dyn Store>) {
    let name = "CSTAR.12345.TRNLOG.20210117.010000.001.csv.pgp";
    let f = started(store.begin_acquirer_file(new_file(name), t0()).await.unwrap());
    let failed = store.finish_acquirer_file(f.id, Some("encrypted to another key".into()), t0()).await.unwrap();
    assert_eq!(failed.status, FileStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("encrypted to another key"));
    let again = started(
        store.begin_acquirer_file(NewAcquirerFile { size: 99, ..new_file(name) }, t0() + secs(1)).await.unwrap(),
    );
    assert_eq!(again.status, FileStatus::Processing);
    assert_eq!(again.size, 99);
    assert_eq!(again.error, None);
    assert_eq!(again.counts, FileCounts::default());
}

pub async fn enrollment_index_reflects_windows(store: Arc<dyn Store>) {
    use cashback_domain::eligibility::{TransactionFacts, classify};
    let a = fiscal_code(70);
    let b = fiscal_code(71);
    let gone = fiscal_code(72);
    let t = datetime!(2021-01-10 10:00 UTC);
    store.enroll_citizen(&a, None, &io(), t).await.unwrap();
    store.enroll_citizen(&b, None, &io(), t).await.unwrap();
    store.enroll_citizen(&gone, None, &io(), t).await.unwrap();
    store.enroll_instrument(&hpan(1), &a, &io(), t + secs(3600)).await.unwrap();
    store.delete_instrument(&hpan(1), Some(&a), t + secs(7200)).await.unwrap();
    store.enroll_instrument(&hpan(1), &b, &io(), t + secs(10_800)).await.unwrap();
    store.enroll_instrument(&hpan(2), &gone, &io(), t).await.unwrap();
    store.withdraw_citizen(&gone, &io(), t + secs(86_400)).await.unwrap();
    let idx = store.load_enrollment_index().await.unwrap();
    assert_eq!(idx.citizens(), 3);
    assert_eq!(idx.instruments_windows(), 3);
    let periods = cashback_domain::period::default_programme();
    let now = datetime!(2021-02-01 00:00 UTC);
    let who = |h: u64, at: OffsetDateTime| {
        let key = hpan(h).to_bytes();
        classify(&TransactionFacts { hpan: &key, at, ecommerce: false }, &idx, &periods, now)
            .map(|x| idx.fiscal_code(x.citizen).to_owned())
    };
    assert_eq!(who(1, t + secs(3600)), Ok(a.as_str().to_owned()));
    assert_eq!(who(1, t + secs(9000)), Err(Ineligible::InstrumentNotActive));
    assert_eq!(who(1, t + secs(20_000)), Ok(b.as_str().to_owned()));
    assert_eq!(who(2, t + secs(60)), Err(Ineligible::CitizenNotEnabled));
    assert_eq!(who(3, t), Err(Ineligible::InstrumentNotEnrolled));
}

pub async fn acquirer_views(store: Arc<dyn Store>) {
    let a = fiscal_code(80);
    let t = datetime!(2021-01-10 10:00 UTC);
    store.enroll_citizen(&a, None, &io(), t).await.unwrap();
    // hpans 0x..05 .. 0x..1c, one of them later deactivated: pages skip it and stay in order.
    let mut want = Vec::new();
    for n in (5..29).rev() {
        store.enroll_instrument(&hpan(n), &a, &io(), t).await.unwrap();
        want.push(hpan(n));
    }
    store.delete_instrument(&hpan(7), Some(&a), t + secs(1)).await.unwrap();
    want.retain(|h| *h != hpan(7));
    want.sort();
    let mut got = Vec::new();
    let mut after: Option<Hpan> = None;
    loop {
        let page = store.active_hpans(after.as_ref(), 5).await.unwrap();
        assert!(page.len() <= 5);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        got.extend(page);
    }
    assert_eq!(got, want);
    // Files listed per ABI, newest first; other acquirers' files are not listed.
    for (i, abi) in ["12345", "54321", "12345"].into_iter().enumerate() {
        let name = format!("CSTAR.{abi}.TRNLOG.20210116.01000{i}.001.csv");
        let nf = NewAcquirerFile { abi: abi.into(), ..new_file(&name) };
        started(store.begin_acquirer_file(nf, t + secs(i as i64)).await.unwrap());
    }
    let mine = store.list_acquirer_files("12345", 10).await.unwrap();
    let names: Vec<_> = mine.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["CSTAR.12345.TRNLOG.20210116.010002.001.csv", "CSTAR.12345.TRNLOG.20210116.010000.001.csv"]);
    assert_eq!(store.list_acquirer_files("12345", 1).await.unwrap().len(), 1);
    assert!(store.list_acquirer_files("99999", 10).await.unwrap().is_empty());
}

pub async fn bulk_import_of_enrollments(store: Arc<dyn Store>) {
    let a = fiscal_code(80);
    let b = fiscal_code(81);
    let withdrawn = fiscal_code(82);
    let t = datetime!(2020-11-30 08:00:00.5 UTC);
    // An existing citizen with a card, and a withdrawn one.
    store.enroll_citizen(&a, None, &io(), t0()).await.unwrap();
    store.enroll_instrument(&hpan(900), &a, &io(), t0()).await.unwrap();
    store.enroll_citizen(&withdrawn, None, &io(), t0()).await.unwrap();
    store.withdraw_citizen(&withdrawn, &io(), t0()).await.unwrap();
    let citizen =
        |cf: &FiscalCode| ImportedCitizen { fiscal_code: cf.clone(), terms_accepted_at: t, channel: io(), iban: None };
    let card = |n: u64, cf: &FiscalCode| ImportedInstrument {
        hpan: hpan(n),
        fiscal_code: cf.clone(),
        channel: bank("BANK1"),
        activated_at: t + secs(n as i64),
    };
    let batch = EnrollmentImport {
        citizens: vec![citizen(&a), citizen(&b)],
        instruments: vec![
            card(903, &b),
            card(901, &b),
            card(900, &b),               // already enrolled by a: untouched
            card(902, &withdrawn),       // owner not enabled
            card(904, &fiscal_code(83)), // owner unknown
            card(905, &a),
        ],
    };
    let out = store.import_enrollments(batch.clone()).await.unwrap();
    assert_eq!(
        out,
        ImportOutcome {
            citizens_created: 1,
            citizens_existing: 1,
            instruments_created: 3,
            instruments_existing: 1,
            instruments_without_enabled_owner: 2,
        }
    );
    // Imported citizens are enabled with the given acceptance instant; existing ones unchanged.
    let got_b = store.get_citizen(&b).await.unwrap().unwrap();
    assert!(got_b.enabled);
    assert_eq!(got_b.timestamp_tc, t);
    assert_eq!(got_b.opt_in_status, OptInStatus::NoReq);
    assert_eq!(store.get_citizen(&a).await.unwrap().unwrap().timestamp_tc, t0());
    let i901 = store.get_instrument(&hpan(901)).await.unwrap().unwrap();
    assert_eq!(
        (i901.fiscal_code.clone(), i901.status, i901.activation_date),
        (b.clone(), InstrumentStatus::Active, t + secs(901))
    );
    assert_eq!(i901.channel, "BANK1");
    assert_eq!(store.get_instrument(&hpan(900)).await.unwrap().unwrap().fiscal_code, a);
    assert_eq!(store.get_instrument(&hpan(902)).await.unwrap(), None);
    assert_eq!(store.get_instrument(&hpan(904)).await.unwrap(), None);
    // The open window is in the history, and in the eligibility snapshot.
    let h = store.instrument_history(&hpan(903)).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].fiscal_code.clone(), h[0].from, h[0].to), (b.clone(), t + secs(903), None));
    let idx = store.load_enrollment_index().await.unwrap();
    assert_eq!(idx.instruments_windows(), 4);
    assert_eq!(idx.citizens(), 3);
    // An imported card behaves like an enrolled one: it can be deleted and re-enrolled.
    assert!(matches!(
        store.delete_instrument(&hpan(905), Some(&a), t0()).await.unwrap(),
        DeleteInstrumentOutcome::Deactivated
    ));
    // Importing the same batch again changes nothing.
    let again = store.import_enrollments(batch).await.unwrap();
    assert_eq!(
        again,
        ImportOutcome {
            citizens_created: 0,
            citizens_existing: 2,
            instruments_created: 0,
            instruments_existing: 4,
            instruments_without_enabled_owner: 2,
        }
    );
    assert_eq!(store.get_instrument(&hpan(905)).await.unwrap().unwrap().status, InstrumentStatus::Inactive);
    // A batch over the limit is refused with a message naming it.
    let big = EnrollmentImport { citizens: vec![citizen(&b); MAX_IMPORT_BATCH + 1], instruments: vec![] };
    match store.import_enrollments(big).await {
        Err(StoreError::Other(msg)) => assert!(msg.contains("limit"), "{msg}"),
        other => panic!("expected a size error, got {other:?}"),
    }
}

/// Ingests one file of `rows` and finishes it.
async fn ingest_file(store: &Arc<dyn Store>, name: &str, rows: Vec<StoredTransaction>, now: OffsetDateTime) {
    let f = started(store.begin_acquirer_file(new_file(name), now).await.unwrap());
    let last_line = rows.len() as u64;
    store.ingest_chunk(f.id, IngestChunk { rows, rejections: vec![], last_line, checksum: None }).await.unwrap();
    assert_eq!(store.finish_acquirer_file(f.id, None, now).await.unwrap().status, FileStatus::Done);
}

/// Finishing a file re-evaluates the citizens it touched from all their rows (reversal before
/// its payment included), with change sequence numbers the rankings follow; a withdrawal takes
/// the citizen out; rows of unfinished files do not count.
pub async fn scoring_follows_files(store: Arc<dyn Store>) {
    use cashback_domain::Money;
    let period = AwardPeriod { min_transaction_number: 2, ..cashback_domain::period::default_programme()[1].clone() };
    store.upsert_award_period(&period).await.unwrap();
    let (a, b) = (fiscal_code(90), fiscal_code(91));
    let t = datetime!(2021-01-10 10:00 UTC);
    store.enroll_citizen(&a, None, &io(), t).await.unwrap();
    store.enroll_citizen(&b, None, &io(), t).await.unwrap();
    let row =
        |n: u64, owner: &FiscalCode, hours: i64, reversal: bool, cents: i64, merchant: &str, corr: Option<&str>| {
            StoredTransaction {
                reversal,
                amount_cents: cents,
                merchant_id: merchant.into(),
                correlation_id: corr.map(str::to_owned),
                ..stored_trx(n, 1, Some((owner, 1)), t + secs(hours * 3600))
            }
        };
    let p1 = row(1, &a, 1, false, 2_000, "M1", None);
    let p2 = row(2, &a, 2, false, 20_000, "M2", Some("C2"));
    let r_early = row(3, &a, 4, true, 5_000, "M3", None); // its payment comes in the next file
    let pb = row(4, &b, 1, false, 1_000, "M9", None);
    ingest_file(
        &store,
        "CSTAR.12345.TRNLOG.20210111.010000.001.csv",
        vec![p1, p2.clone(), r_early, pb],
        t + secs(86_400),
    )
    .await;
    let ta = store.citizen_period_totals(&a).await.unwrap();
    assert_eq!(ta.len(), 1);
    let ta = &ta[0];
    assert_eq!((ta.award_period_id, ta.enabled, ta.transactions), (1, true, 2));
    assert_eq!(ta.cashback, Money::from_cents(200 + 1_500));
    assert_eq!(ta.last_counted_us, Some(scoring::unix_us(t + secs(2 * 3600))));
    let p2_id = PeriodRow { trx: p2.clone(), received_us: 0 }.scoring_row().id_trx();
    assert_eq!(ta.id_trx_min_transaction.as_deref(), Some(p2_id.as_str()), "the 2nd payment reached the minimum");
    assert_eq!(ta.id_trx_pivot, None);
    let tb = store.citizen_period_totals(&b).await.unwrap();
    assert_eq!((tb[0].transactions, tb[0].cashback), (1, Money::from_cents(100)));
    // The one-read view: the same totals for an enabled citizen, [] without totals, None unknown.
    assert_eq!(store.enabled_citizen_totals(&a).await.unwrap(), Some(vec![ta.clone()]));
    assert_eq!(store.enabled_citizen_totals(&b).await.unwrap(), Some(tb.clone()));
    let idle = fiscal_code(92);
    store.enroll_citizen(&idle, None, &io(), t).await.unwrap();
    assert_eq!(store.enabled_citizen_totals(&idle).await.unwrap(), Some(vec![]));
    assert_eq!(store.enabled_citizen_totals(&fiscal_code(93)).await.unwrap(), None);
    assert_ne!(ta.citizen_id, tb[0].citizen_id);
    let all = store.standing_changes(0, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].seq < all[1].seq);
    let mark = all[1].seq;
    assert_eq!(store.standing_changes(0, 1).await.unwrap(), all[..1].to_vec(), "pages follow seq");

    // The late payment meets the held reversal (fully reversed: no count); a partial refund of
    // the €200 payment by correlation id leaves its €15; one more payment counts.
    let p3 = row(5, &a, 3, false, 5_000, "M3", None);
    let refund = row(6, &a, 5, true, 4_000, "M2", Some("C2"));
    let p5 = row(7, &a, 6, false, 3_000, "M5", None);
    ingest_file(&store, "CSTAR.12345.TRNLOG.20210112.010000.001.csv", vec![p3, refund, p5], t + secs(2 * 86_400)).await;
    let ta2 = store.citizen_period_totals(&a).await.unwrap().remove(0);
    assert_eq!(ta2.transactions, 3);
    assert_eq!(ta2.cashback, Money::from_cents(200 + 1_500 + 300));
    assert!(ta2.seq > mark);
    let changed = store.standing_changes(mark, 100).await.unwrap();
    assert_eq!(changed.len(), 1, "only the citizen the file touched: {changed:?}");
    assert_eq!((changed[0].citizen_id, changed[0].standing.count), (ta2.citizen_id, 3));
    let rows = store.citizen_period_rows(&a, 1).await.unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.windows(2).all(|w| w[0].trx.at <= w[1].trx.at), "oldest first");
    assert!(rows.iter().all(|r| r.received_us > 0));
    assert_eq!(store.citizen_period_rows(&a, 2).await.unwrap(), vec![]);

    // Rows of a file still being ingested count for nobody yet.
    let f =
        started(store.begin_acquirer_file(new_file("CSTAR.12345.TRNLOG.20210113.010000.001.csv"), t).await.unwrap());
    let pending = IngestChunk {
        rows: vec![row(8, &a, 7, false, 900, "M8", None)],
        rejections: vec![],
        last_line: 1,
        checksum: None,
    };
    store.ingest_chunk(f.id, pending).await.unwrap();
    assert_eq!(store.citizen_period_rows(&a, 1).await.unwrap().len(), 6);
    assert_eq!(store.citizen_period_totals(&a).await.unwrap()[0].transactions, 3);

    // Withdrawal: out of the ranking, in the feed.
    store.withdraw_citizen(&b, &io(), t + secs(3 * 86_400)).await.unwrap();
    let gone = store.standing_changes(ta2.seq, 100).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!((gone[0].citizen_id, gone[0].enabled), (tb[0].citizen_id, false));
    assert!(!store.citizen_period_totals(&b).await.unwrap()[0].enabled);
    assert_eq!(store.enabled_citizen_totals(&b).await.unwrap(), None, "withdrawn");
    store.withdraw_citizen(&idle, &io(), t + secs(3 * 86_400)).await.unwrap();
    assert_eq!(store.enabled_citizen_totals(&idle).await.unwrap(), None, "withdrawn, no totals");
}

fn render_notice(n: NoticeFor<'_>) -> String {
    match n {
        NoticeFor::AwardComputed { award_id, award, .. } => {
            format!("award {award_id} {}", award.decision.amount.cents())
        }
        NoticeFor::NotEligible { row, .. } => format!("not eligible {}", row.transactions),
        NoticeFor::Payment { award } => format!("payment {} {}", award.award_id, award.status.as_str()),
        NoticeFor::IbanMissing { award } => format!("iban missing {}", award.award_id),
        NoticeFor::ComplaintDecided { complaint } => format!("complaint {}", complaint.status.as_str()),
    }
}

fn name_payout(now: OffsetDateTime, chunk: u32, total: u32, rows: usize) -> String {
    format!("PAYOUT.{}.{chunk:02}_{total:02}.{rows}.csv", now.unix_timestamp())
}

fn executed(yes: bool) -> TransferOutcome {
    TransferOutcome {
        result: if yes { "ORDINE ESEGUITO" } else { "KO" }.into(),
        executed: yes,
        reason: (!yes).then(|| "IBAN non valido".into()),
        cro: yes.then(|| "CRO123".into()),
        execution_date: Some(time::macros::date!(2021 - 08 - 20)),
    }
}

/// Period close end to end: awards once (rank, caps, typology, withdrawn and below-minimum
/// citizens), payout files (IBAN waiting, filled, re-issue after a failure), outcomes once per
/// file with line-level rejections, complaints with corrections, integrations, the outbox with
/// leases and retries, and once-only job claims.
pub async fn period_close_lifecycle(store: Arc<dyn Store>) {
    use cashback_domain::Money;
    let period = AwardPeriod {
        min_transaction_number: 2,
        min_position: 1,
        ..cashback_domain::period::default_programme()[1].clone()
    };
    store.upsert_award_period(&period).await.unwrap();
    let t = datetime!(2021-01-10 10:00 UTC);
    let (a, b, c, d) = (fiscal_code(100), fiscal_code(101), fiscal_code(102), fiscal_code(103));
    for cf in [&a, &b, &c, &d] {
        store.enroll_citizen(cf, None, &io(), t).await.unwrap();
    }
    store.set_payoff(&a, payoff("IT60X0542811101000000123456"), t).await.unwrap();
    let mut rows = Vec::new();
    let mut n = 0;
    for (cf, count, cents) in [(&a, 3, 2_000), (&b, 2, 1_000), (&c, 1, 1_000), (&d, 2, 1_000)] {
        for _ in 0..count {
            n += 1;
            rows.push(StoredTransaction {
                amount_cents: cents,
                reversal: false,
                ..stored_trx(n, n, Some((cf, 1)), t + secs(n as i64 * 60))
            });
        }
    }
    ingest_file(&store, "CSTAR.12345.TRNLOG.20210111.010000.001.csv", rows, t + secs(86_400)).await;
    store.withdraw_citizen(&d, &io(), t + secs(2 * 86_400)).await.unwrap();

    let now = datetime!(2021-07-11 06:00 UTC);
    assert_eq!(store.close_summary(1).await.unwrap(), None);
    let closed = store.close_period(&period, render_notice, now).await.unwrap();
    let CloseOutcome::Closed(summary) = closed else { panic!("first close: {closed:?}") };
    assert_eq!((summary.citizens, summary.awards, summary.not_eligible, summary.super_cashback_winners), (4, 2, 1, 1));
    assert_eq!(summary.amount, Money::from_cents(150_600 + 200));
    assert_eq!(
        (summary.cashback, summary.jackpot, summary.without_iban),
        (Money::from_cents(800), Money::from_cents(150_000), 1)
    );
    let again = store.close_period(&period, render_notice, now + secs(60)).await.unwrap();
    assert_eq!(again, CloseOutcome::AlreadyClosed(summary), "closing twice changes nothing");
    assert_eq!(store.close_summary(1).await.unwrap(), Some(summary));

    let aw_a = store.citizen_awards(&a).await.unwrap();
    assert_eq!(aw_a.len(), 1);
    let aw_a = aw_a[0].clone();
    assert_eq!((aw_a.kind, aw_a.status, aw_a.typology.as_str()), (AwardKind::Award, AwardStatus::New, "03"));
    assert_eq!(
        (aw_a.amount, aw_a.cashback, aw_a.jackpot),
        (Money::from_cents(150_600), Money::from_cents(600), Money::from_cents(150_000))
    );
    assert_eq!((aw_a.transactions, aw_a.rank, aw_a.period_cap_applied), (3, Some(1), false));
    assert_eq!(aw_a.payoff.as_ref().map(|p| p.iban.as_str()), Some("IT60X0542811101000000123456"));
    let aw_b = store.citizen_awards(&b).await.unwrap().remove(0);
    assert_eq!(
        (aw_b.typology.as_str(), aw_b.amount, aw_b.rank, aw_b.payoff.is_none()),
        ("01", Money::from_cents(200), Some(2), true)
    );
    assert!(store.citizen_awards(&c).await.unwrap().is_empty(), "below the minimum");
    assert!(store.citizen_awards(&d).await.unwrap().is_empty(), "withdrawn");
    assert_eq!(store.get_award(aw_a.award_id).await.unwrap(), Some(aw_a.clone()));
    assert_eq!(store.get_award(999_999).await.unwrap(), None);
    assert_eq!(store.outbox_counts().await.unwrap(), OutboxCounts { pending: 3, sent: 0, failed: 0 });

    // Payout: A is paid, B waits for an IBAN (one reminder, however many runs).
    let p1 = store.prepare_payout(10, name_payout, render_notice, now).await.unwrap();
    assert_eq!((p1.iban_filled, p1.reissued, p1.waiting_for_iban, p1.files.len()), (0, 0, 1, 1));
    let f1 = p1.files[0].clone();
    assert_eq!((f1.rows, f1.amount, f1.chunk, f1.total_chunks, f1.sha256.clone()), (1, aw_a.amount, 1, 1, None));
    let in_file = store.payout_file_awards(f1.payout_file_id).await.unwrap();
    assert_eq!(in_file.len(), 1);
    assert_eq!(
        (in_file[0].award_id, in_file[0].status, in_file[0].payout_file_id),
        (aw_a.award_id, AwardStatus::Sent, Some(f1.payout_file_id))
    );
    store.payout_file_written(f1.payout_file_id, "abc").await.unwrap();
    store.payout_file_written(f1.payout_file_id, "abc").await.unwrap();
    assert!(store.payout_file_written(f1.payout_file_id, "def").await.is_err(), "a regenerated file must be identical");
    let p2 = store.prepare_payout(10, name_payout, render_notice, now + secs(1)).await.unwrap();
    assert_eq!((p2.waiting_for_iban, p2.files.len()), (1, 0));
    assert_eq!(store.outbox_counts().await.unwrap().pending, 4, "one IBAN reminder");
    store.set_payoff(&b, payoff("IT02L1234512345123456789012"), now).await.unwrap();
    let p3 = store.prepare_payout(1, name_payout, render_notice, now + secs(2)).await.unwrap();
    assert_eq!((p3.iban_filled, p3.waiting_for_iban, p3.files.len()), (1, 0, 1));
    let f3 = p3.files[0].clone();
    assert_eq!(store.payout_file_awards(f3.payout_file_id).await.unwrap()[0].award_id, aw_b.award_id);
    assert_eq!(store.payout_files(None).await.unwrap().len(), 2);
    assert_eq!(store.payout_files(Some(f3.run_id)).await.unwrap(), vec![f3.clone()]);

    // Outcomes: A executed, B failed, an unknown id and a never-sent award rejected by line.
    let lines = vec![
        OutcomeUpdate { line: 1, award_id: aw_a.award_id, outcome: executed(true) },
        OutcomeUpdate { line: 2, award_id: aw_b.award_id, outcome: executed(false) },
        OutcomeUpdate { line: 3, award_id: 999_999, outcome: executed(true) },
    ];
    let o = store.apply_outcomes("OUT.1.csv", "sha1", lines.clone(), render_notice, now + secs(3)).await.unwrap();
    let InboundOutcome::Applied { applied, unchanged, rejected } = o else { panic!("{o:?}") };
    assert_eq!((applied, unchanged), (2, 0));
    assert_eq!(rejected.len(), 1);
    assert_eq!((rejected[0].line, rejected[0].field.as_str()), (3, "uniqueID"));
    assert_eq!(
        store.apply_outcomes("OUT.1.csv", "sha1", lines.clone(), render_notice, now).await.unwrap(),
        InboundOutcome::AlreadyApplied
    );
    assert_eq!(
        store.apply_outcomes("OUT.1.csv", "other", lines.clone(), render_notice, now).await.unwrap(),
        InboundOutcome::NameConflict
    );
    let same = store.apply_outcomes("OUT.2.csv", "sha2", lines[..2].to_vec(), render_notice, now).await.unwrap();
    assert_eq!(same, InboundOutcome::Applied { applied: 0, unchanged: 2, rejected: vec![] });
    let a_paid = store.get_award(aw_a.award_id).await.unwrap().unwrap();
    assert_eq!((a_paid.status, a_paid.outcome.clone()), (AwardStatus::Executed, Some(executed(true))));
    assert_eq!(store.get_award(aw_b.award_id).await.unwrap().unwrap().status, AwardStatus::Failed);
    assert_eq!(store.outbox_counts().await.unwrap().pending, 6, "two payment notices");

    // The failed transfer is re-issued once the IBAN differs from the one that failed.
    let p4 = store.prepare_payout(10, name_payout, render_notice, now + secs(4)).await.unwrap();
    assert_eq!((p4.reissued, p4.files.len()), (0, 0), "same IBAN: nothing to re-issue");
    store.set_payoff(&b, payoff("IT60X0542811101000000999999"), now).await.unwrap();
    let p5 = store.prepare_payout(10, name_payout, render_notice, now + secs(5)).await.unwrap();
    assert_eq!((p5.reissued, p5.files.len()), (1, 1));
    let re = store.payout_file_awards(p5.files[0].payout_file_id).await.unwrap().remove(0);
    assert_eq!((re.kind, re.related_id, re.amount), (AwardKind::Reissue, Some(aw_b.award_id), aw_b.amount));
    assert_eq!(re.payoff.as_ref().map(|p| p.iban.as_str()), Some("IT60X0542811101000000999999"));
    let p6 = store.prepare_payout(10, name_payout, render_notice, now + secs(6)).await.unwrap();
    assert_eq!((p6.reissued, p6.files.len()), (0, 0), "re-issued once");
    // Once re-issued, the failed award's outcome is settled: a later "executed" is refused.
    let late = vec![OutcomeUpdate { line: 1, award_id: aw_b.award_id, outcome: executed(true) }];
    let o = store.apply_outcomes("OUT.3.csv", "sha3", late, render_notice, now).await.unwrap();
    let InboundOutcome::Applied { applied, rejected, .. } = o else { panic!("{o:?}") };
    assert_eq!((applied, rejected.len(), rejected[0].field.as_str()), (0, 1, "result"));
    assert_eq!(store.get_award(aw_b.award_id).await.unwrap().unwrap().status, AwardStatus::Failed);
    // A file name counts once whatever its kind.
    assert_eq!(store.apply_integrations("OUT.1.csv", "sha1", vec![], now).await.unwrap(), InboundOutcome::NameConflict);

    // Complaints: one open per kind, decided once, an accepted one paid as a correction.
    let filed = store.file_complaint(&a, 1, ComplaintKind::WrongAmount, "missing €5", now).await.unwrap();
    let FileComplaintOutcome::Created(cmp) = filed else { panic!("{filed:?}") };
    assert_eq!((cmp.status, cmp.kind, cmp.award_period_id), (ComplaintStatus::Open, ComplaintKind::WrongAmount, 1));
    let dup = store.file_complaint(&a, 1, ComplaintKind::WrongAmount, "again", now).await.unwrap();
    assert_eq!(dup, FileComplaintOutcome::AlreadyOpen(cmp.clone()));
    assert_eq!(
        store.file_complaint(&fiscal_code(999), 1, ComplaintKind::WrongAmount, "x", now).await.unwrap(),
        FileComplaintOutcome::CitizenNotFound
    );
    let other = store.file_complaint(&b, 1, ComplaintKind::PaymentNotReceived, "nothing came", now).await.unwrap();
    let FileComplaintOutcome::Created(other) = other else { panic!() };
    assert_eq!(store.list_complaints(Some(ComplaintStatus::Open), 10).await.unwrap().len(), 2);
    let accept = ComplaintDecision::Accept { correction: Money::from_cents(500), note: Some("receipt checked".into()) };
    let decided = store.decide_complaint(cmp.complaint_id, accept.clone(), render_notice, now).await.unwrap();
    let DecideComplaintOutcome::Decided(done) = decided else { panic!("{decided:?}") };
    assert_eq!((done.status, done.correction), (ComplaintStatus::Accepted, Some(Money::from_cents(500))));
    let corr = store.get_award(done.correction_award_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(
        (corr.kind, corr.status, corr.amount, corr.related_id, corr.complaint_id),
        (AwardKind::Correction, AwardStatus::New, Money::from_cents(500), Some(aw_a.award_id), Some(cmp.complaint_id))
    );
    assert!(matches!(
        store.decide_complaint(cmp.complaint_id, accept, render_notice, now).await.unwrap(),
        DecideComplaintOutcome::Unchanged(_)
    ));
    assert!(matches!(
        store
            .decide_complaint(cmp.complaint_id, ComplaintDecision::Reject { note: None }, render_notice, now)
            .await
            .unwrap(),
        DecideComplaintOutcome::Conflict(_)
    ));
    let rej = store
        .decide_complaint(
            other.complaint_id,
            ComplaintDecision::Reject { note: Some("paid".into()) },
            render_notice,
            now,
        )
        .await
        .unwrap();
    assert!(
        matches!(rej, DecideComplaintOutcome::Decided(ref c) if c.status == ComplaintStatus::Rejected && c.correction_award_id.is_none())
    );
    assert_eq!(
        store.decide_complaint(424_242, ComplaintDecision::Reject { note: None }, render_notice, now).await.unwrap(),
        DecideComplaintOutcome::NotFound
    );
    assert_eq!(store.citizen_complaints(&a).await.unwrap().len(), 1);
    let p7 = store.prepare_payout(10, name_payout, render_notice, now + secs(7)).await.unwrap();
    assert_eq!(p7.files.len(), 1);
    assert_eq!(store.payout_file_awards(p7.files[0].payout_file_id).await.unwrap()[0].award_id, corr.award_id);

    // Integration payments made by the agent: once per agent id; unknown citizen rejected.
    let integration = |line: u64, agent_id: i64, cf: &FiscalCode| IntegrationPayment {
        line,
        agent_id,
        related_id: Some(aw_a.award_id),
        fiscal_code: cf.as_str().into(),
        iban: "IT60X0542811101000000123456".into(),
        holder_name: Some("Mario".into()),
        holder_surname: Some("Rossi".into()),
        amount: Money::from_cents(300),
        cashback: Money::from_cents(300),
        jackpot: Money::ZERO,
        period_start: period.start,
        period_end: period.end,
        complaint_id: Some(77),
        outcome: executed(true),
    };
    let i1 = store
        .apply_integrations(
            "INT.1.csv",
            "i1",
            vec![integration(1, 5001, &a), integration(2, 5002, &fiscal_code(999))],
            now,
        )
        .await
        .unwrap();
    let InboundOutcome::Applied { applied, rejected, .. } = i1 else { panic!("{i1:?}") };
    assert_eq!((applied, rejected.len(), rejected[0].line, rejected[0].field.as_str()), (1, 1, 2, "fiscalCode"));
    let i2 = store.apply_integrations("INT.2.csv", "i2", vec![integration(1, 5001, &a)], now).await.unwrap();
    assert_eq!(i2, InboundOutcome::Applied { applied: 0, unchanged: 1, rejected: vec![] });
    let all_a = store.citizen_awards(&a).await.unwrap();
    assert_eq!(
        all_a.iter().map(|x| x.kind).collect::<Vec<_>>(),
        vec![AwardKind::Award, AwardKind::Correction, AwardKind::Integration]
    );
    assert_eq!(all_a[2].status, AwardStatus::Integration);
    // Conservation: the period's awards add up to the summary.
    let mut period_awards = store.citizen_awards(&a).await.unwrap();
    period_awards.extend(store.citizen_awards(&b).await.unwrap());
    let originals: Vec<&Award> = period_awards.iter().filter(|x| x.kind == AwardKind::Award).collect();
    assert_eq!(sum_amounts(originals.iter().copied()), summary.amount);

    // Outbox: leased items are hidden, results are kept, retries come back when due.
    let pending = store.outbox_counts().await.unwrap().pending;
    let now = now + secs(10); // every notice above is due
    assert_eq!(pending, 8, "3 from the close, 1 reminder, 2 payments, 2 complaint decisions");
    let claimed = store.claim_notifications(100, time::Duration::seconds(60), now).await.unwrap();
    assert_eq!(claimed.len() as u64, pending);
    assert!(claimed.windows(2).all(|w| w[0].notification_id < w[1].notification_id));
    assert!(
        claimed.iter().any(|i| i.payload == format!("award {} 150600", aw_a.award_id) && i.fiscal_code == a.as_str())
    );
    assert!(store.claim_notifications(100, time::Duration::seconds(60), now).await.unwrap().is_empty(), "leased");
    store
        .notification_result(claimed[0].notification_id, DeliveryResult::Sent { message_id: "m1".into() }, now)
        .await
        .unwrap();
    store
        .notification_result(
            claimed[1].notification_id,
            DeliveryResult::Retry { error: "429".into(), next_attempt: now + secs(10) },
            now,
        )
        .await
        .unwrap();
    store
        .notification_result(claimed[2].notification_id, DeliveryResult::Failed { error: "400".into() }, now)
        .await
        .unwrap();
    assert_eq!(store.outbox_counts().await.unwrap(), OutboxCounts { pending: pending - 2, sent: 1, failed: 1 });
    let retry = store.claim_notifications(100, time::Duration::seconds(60), now + secs(11)).await.unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].notification_id, retry[0].attempts), (claimed[1].notification_id, 1));
    let later = store.claim_notifications(100, time::Duration::seconds(60), now + secs(61)).await.unwrap();
    assert_eq!(later.len() as u64, pending - 3);
    let queued = store
        .enqueue_notifications(
            vec![NewNotification { key: "k1".into(), fiscal_code: a.as_str().into(), payload: "x".into() }; 2],
            now,
        )
        .await
        .unwrap();
    assert_eq!(queued, 1, "a key is queued once");
    // "Period over" to every enrolled citizen who accepted the T&C before the cut-off (D withdrew).
    let ended = store.enqueue_for_enrolled("period-ended:1:", "over", t + secs(1), now).await.unwrap();
    assert_eq!(ended, 3);
    assert_eq!(store.enqueue_for_enrolled("period-ended:1:", "over", t + secs(1), now).await.unwrap(), 0, "once");
    assert_eq!(
        store.enqueue_for_enrolled("period-ended:9:", "over", t, now).await.unwrap(),
        0,
        "accepted after the cut-off"
    );

    // Jobs: one claim wins; a stale unfinished claim is taken over; a finished one never.
    let stale = time::Duration::minutes(30);
    assert!(store.claim_job("awards:1", stale, now).await.unwrap());
    assert!(!store.claim_job("awards:1", stale, now + secs(5)).await.unwrap());
    assert!(!store.job_done("awards:1").await.unwrap());
    assert!(store.claim_job("awards:1", stale, now + secs(31 * 60)).await.unwrap(), "taken over");
    store.finish_job("awards:1", "ok", now + secs(32 * 60)).await.unwrap();
    assert!(store.job_done("awards:1").await.unwrap());
    assert!(!store.claim_job("awards:1", stale, now + secs(999 * 60)).await.unwrap());

    // The audit trail holds one event per change of the close, payouts, outcome files and
    // complaints, none for the repeats.
    let count = |action: &'static str| {
        let store = store.clone();
        async move {
            let q = AuditQuery { action: Some(action.to_owned()), limit: 1000, ..Default::default() };
            store.audit_events(&q).await.unwrap().len()
        }
    };
    assert_eq!(count("period.closed").await, 1);
    assert_eq!(count("payout.file_written").await, 1);
    assert_eq!(count("payout.outcomes_applied").await, 3, "OUT.1, OUT.2, OUT.3; not the repeat nor the conflict");
    assert_eq!(count("payout.integrations_applied").await, 2);
    assert_eq!(count("complaint.filed").await, 2);
    assert!(count("payout.prepared").await >= 1);
    let closed = store
        .audit_events(&AuditQuery { subject: Some("period:1".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let closed: Vec<_> = closed.iter().filter(|e| e.action == "period.closed").collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].actor, audit::SYSTEM, "no request scope: a job");
    let detail: serde_json::Value = serde_json::from_str(&closed[0].detail).unwrap();
    assert_eq!(detail["awards"], 2, "{detail}");
}

/// Erasure after the retention period: only citizens past it, with nothing open; everything
/// personal goes, the transactions stay unlinked, the trail records it; running again does nothing.
pub async fn erasure_after_retention(store: Arc<dyn Store>) {
    let period = cashback_domain::period::default_programme()[1].clone();
    store.upsert_award_period(&period).await.unwrap();
    let t = datetime!(2021-01-10 10:00 UTC);
    let (a, b, c) = (fiscal_code(400), fiscal_code(401), fiscal_code(402));
    for (i, cf) in [&a, &b, &c].into_iter().enumerate() {
        store.enroll_citizen(cf, None, &io(), t).await.unwrap();
        store.set_payoff(cf, payoff("IT60X0542811101000000123456"), t).await.unwrap();
        store.enroll_instrument(&hpan(400 + i as u64), cf, &io(), t).await.unwrap();
    }
    let owners = [a.clone(), b.clone(), c.clone()];
    let rows = (0..3u64).map(|i| stored_trx(400 + i, 400 + i, Some((&owners[i as usize], 1)), t + secs(60))).collect();
    ingest_file(&store, "CSTAR.12345.TRNLOG.20210111.010000.001.csv", rows, t + secs(3600)).await;
    let filed =
        store.file_complaint(&b, 1, ComplaintKind::MissingTransaction, "where is it", t + secs(7200)).await.unwrap();
    assert!(matches!(filed, FileComplaintOutcome::Created(_)));
    store
        .enqueue_notifications(
            vec![NewNotification { key: "k:a".into(), fiscal_code: a.as_str().into(), payload: "hi".into() }],
            t,
        )
        .await
        .unwrap();
    let withdrawn = t + secs(86_400);
    store.withdraw_citizen(&a, &io(), withdrawn).await.unwrap();
    store.withdraw_citizen(&b, &io(), withdrawn).await.unwrap();
    let now = datetime!(2031-06-01 00:00 UTC);

    // Before the cutoff: nothing.
    assert_eq!(store.erase_expired_citizens(withdrawn, false, 100, now).await.unwrap(), 0);
    // After: A only (B has an open complaint, C is enabled).
    let cutoff = withdrawn + secs(1);
    assert_eq!(store.erase_expired_citizens(cutoff, false, 100, now).await.unwrap(), 1);
    assert_eq!(store.get_citizen(&a).await.unwrap(), None);
    assert_eq!(store.get_instrument(&hpan(400)).await.unwrap(), None);
    assert!(store.instrument_history(&hpan(400)).await.unwrap().is_empty());
    assert!(store.citizen_transactions(&a).await.unwrap().is_empty());
    assert!(store.citizen_period_totals(&a).await.unwrap().is_empty());
    assert!(store.citizen_awards(&a).await.unwrap().is_empty());
    let unlinked = store.instrument_transactions(&hpan(400)).await.unwrap();
    assert_eq!(unlinked.len(), 1, "the acquirer's row stays");
    assert_eq!(unlinked[0].fiscal_code, None, "but names no one");
    assert_eq!(unlinked[0].ineligible, Some(Ineligible::CitizenNotEnabled));
    assert_eq!(store.outbox_counts().await.unwrap().pending, 0, "old notices purged");
    assert!(store.get_citizen(&b).await.unwrap().is_some(), "open complaint: kept");
    assert_eq!(store.citizen_transactions(&c).await.unwrap().len(), 1, "others untouched");
    let ev = store
        .audit_events(&AuditQuery { subject: Some(a.as_str().into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ev[0].action, "citizen.erased");
    assert_eq!(store.erase_expired_citizens(cutoff, false, 100, now).await.unwrap(), 0, "once");
    // The programme is over: enabled citizens too (C), still not B.
    assert_eq!(store.erase_expired_citizens(now, true, 100, now).await.unwrap(), 1);
    assert_eq!(store.get_citizen(&c).await.unwrap(), None);
    assert!(store.get_citizen(&b).await.unwrap().is_some());
}

/// Every change is in the audit trail with who, when and what, once; repeats add nothing;
/// queries filter and page; no full IBAN is recorded.
pub async fn audit_trail(store: Arc<dyn Store>) {
    let (a, b) = (fiscal_code(300), fiscal_code(301));
    let (h1, h2) = (hpan(300), hpan(301));
    let t = t0();
    let bank_x = bank("bank-x");
    audit::with_actor("issuer:bank-x".into(), async {
        store.enroll_citizen(&a, None, &bank_x, t).await.unwrap();
        store.enroll_citizen(&a, None, &bank_x, t + secs(1)).await.unwrap();
        store.set_payoff(&a, payoff("IT60X0542811101000000123456"), t + secs(2)).await.unwrap();
        store.enroll_instrument(&h1, &a, &bank_x, t + secs(3)).await.unwrap();
        store.enroll_instrument(&h1, &a, &bank_x, t + secs(4)).await.unwrap();
        store.delete_instrument(&h1, Some(&a), t + secs(5)).await.unwrap();
        store.delete_instrument(&h1, Some(&a), t + secs(6)).await.unwrap();
    })
    .await;
    audit::with_actor(format!("citizen:{}", b.as_str()), async {
        store.enroll_citizen(&b, None, &io(), t + secs(7)).await.unwrap();
        store.enroll_instrument(&h2, &b, &io(), t + secs(8)).await.unwrap();
        assert_eq!(
            store.enroll_instrument(&h2, &a, &io(), t + secs(9)).await.unwrap(),
            EnrollInstrumentOutcome::OwnedByOther
        );
        store.withdraw_citizen(&b, &io(), t + secs(10)).await.unwrap();
        store.withdraw_citizen(&b, &io(), t + secs(11)).await.unwrap();
    })
    .await;
    // Outside any scope: the system.
    let cred = Credential {
        id: "op-1".into(),
        kind: CredentialKind::Operator,
        scope: "ops".into(),
        key_sha256: "ab".repeat(32),
        created_at: t + secs(12),
        revoked_at: None,
        client_cert_sha256: None,
    };
    store.insert_credential(&cred).await.unwrap();
    assert!(store.bind_client_cert("op-1", Some(&"cd".repeat(32))).await.unwrap());
    assert!(store.revoke_credential("op-1", t + secs(13)).await.unwrap());
    assert!(!store.revoke_credential("op-1", t + secs(14)).await.unwrap());

    let all = store.audit_events(&AuditQuery { limit: 1000, ..Default::default() }).await.unwrap();
    let seen: Vec<(&str, &str, &str)> =
        all.iter().rev().map(|e| (e.actor.as_str(), e.action.as_str(), e.subject.as_str())).collect();
    let (h1s, h2s) = (h1.to_string(), h2.to_string());
    let ca = format!("citizen:{}", b.as_str());
    assert_eq!(
        seen,
        vec![
            ("issuer:bank-x", "citizen.enrolled", a.as_str()),
            ("issuer:bank-x", "citizen.payoff_set", a.as_str()),
            ("issuer:bank-x", "instrument.enrolled", h1s.as_str()),
            ("issuer:bank-x", "instrument.deleted", h1s.as_str()),
            (ca.as_str(), "citizen.enrolled", b.as_str()),
            (ca.as_str(), "instrument.enrolled", h2s.as_str()),
            (ca.as_str(), "citizen.withdrawn", b.as_str()),
            ("system", "credential.created", "credential:op-1"),
            ("system", "credential.cert_bound", "credential:op-1"),
            ("system", "credential.revoked", "credential:op-1"),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    // When: the change's time; what: its detail.
    let payoff_ev = all.iter().find(|e| e.action == "citizen.payoff_set").unwrap();
    assert_eq!(payoff_ev.at, t + secs(2));
    assert!(payoff_ev.detail.contains("IT60…3456"), "{}", payoff_ev.detail);
    assert!(all.iter().all(|e| !e.detail.contains("0542811101000000123456")), "no full IBAN");
    let enrolled = all.iter().find(|e| e.subject == a.as_str() && e.action == "citizen.enrolled").unwrap();
    let detail: serde_json::Value = serde_json::from_str(&enrolled.detail).unwrap();
    assert_eq!((detail["change"].as_str(), detail["channel"].as_str()), (Some("created"), Some("bank-x")));

    // Filters, combined; paging backwards; time window.
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery { limit: 1000, ..Default::default() };
        f(&mut q);
        q
    };
    let by_subject = store.audit_events(&q(|q| q.subject = Some(fiscal_code(300).as_str().into()))).await.unwrap();
    assert_eq!(
        by_subject.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["citizen.payoff_set", "citizen.enrolled"]
    );
    let by_actor = store.audit_events(&q(|q| q.actor = Some("issuer:bank-x".into()))).await.unwrap();
    assert_eq!(by_actor.len(), 4);
    let both = store
        .audit_events(&q(|q| {
            q.actor = Some("issuer:bank-x".into());
            q.action = Some("instrument.deleted".into());
        }))
        .await
        .unwrap();
    assert_eq!(both.len(), 1);
    let page1 = store.audit_events(&AuditQuery { limit: 4, ..Default::default() }).await.unwrap();
    let page2 = store
        .audit_events(&AuditQuery { limit: 100, before_id: Some(page1[3].id), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(page1.len() + page2.len(), all.len());
    assert_eq!(page2[0].id, all[4].id);
    let window = store
        .audit_events(&AuditQuery {
            since: Some(t + secs(3)),
            until: Some(t + secs(8)),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 3, "instrument enrolled and deleted at +3 s and +5 s, citizen at +7 s");
    let capped = store.audit_events(&AuditQuery { limit: 1_000_000, ..Default::default() }).await.unwrap();
    assert_eq!(capped.len(), all.len());
}

/// Period totals imported in bulk (migration, benchmark seeding): created for known citizens
/// with the enrollment's IBAN, in the change feed, never over an existing row.
pub async fn period_totals_import(store: Arc<dyn Store>) {
    use cashback_domain::Money;
    let t = datetime!(2021-01-10 10:00 UTC);
    let (a, b, unknown) = (fiscal_code(200), fiscal_code(201), fiscal_code(202));
    let citizen = |cf: &FiscalCode, iban: Option<&str>| ImportedCitizen {
        fiscal_code: cf.clone(),
        terms_accepted_at: t,
        channel: io(),
        iban: iban.map(str::to_owned),
    };
    let batch = EnrollmentImport {
        citizens: vec![citizen(&a, Some("IT60X0542811101000000123456")), citizen(&b, None)],
        instruments: vec![],
    };
    store.import_enrollments(batch).await.unwrap();
    assert_eq!(
        store.get_citizen(&a).await.unwrap().unwrap().payoff.map(|p| p.iban),
        Some("IT60X0542811101000000123456".into())
    );
    assert_eq!(store.get_citizen(&b).await.unwrap().unwrap().payoff, None);
    let totals = |cf: &FiscalCode, n: u32| ImportedTotals {
        fiscal_code: cf.clone(),
        cashback: Money::from_cents(i64::from(n) * 100),
        score_total: Money::from_cents(i64::from(n) * 100),
        transactions: n,
        last_counted_us: Some(1_600_000_000_000_000 + i64::from(n)),
    };
    let out = store.import_period_totals(1, vec![totals(&a, 60), totals(&b, 3), totals(&unknown, 9)], t).await.unwrap();
    assert_eq!(out, TotalsImportOutcome { created: 2, skipped: 1 });
    let ta = store.citizen_period_totals(&a).await.unwrap();
    assert_eq!((ta[0].transactions, ta[0].cashback, ta[0].enabled), (60, Money::from_cents(6_000), true));
    let feed = store.standing_changes(0, 10).await.unwrap();
    assert_eq!(feed.len(), 2);
    assert!(feed[0].seq < feed[1].seq);
    let again = store.import_period_totals(1, vec![totals(&a, 1)], t).await.unwrap();
    assert_eq!(again, TotalsImportOutcome { created: 0, skipped: 1 });
    assert_eq!(store.citizen_period_totals(&a).await.unwrap()[0].transactions, 60, "never over an existing row");
}

/// The console's views on real data: a citizen's instruments (current owner only, inactive ones
/// included, newest activation first), figures per UTC day (citizens by enrollment, every
/// activation window on its own day, files and their rows by reception) and in total, every
/// acquirer's files, ranking snapshots (one per period and day, the last one wins) and a closed
/// period's awards by status.
pub async fn console_views(store: Arc<dyn Store>) {
    use cashback_domain::Money;
    use time::macros::date;
    let t10 = datetime!(2021-01-10 10:00 UTC);
    let h = |hours: i64| t10 + secs(hours * 3600);
    let (a, b, c) = (fiscal_code(300), fiscal_code(301), fiscal_code(302));
    store.enroll_citizen(&a, None, &io(), t10).await.unwrap();
    store.enroll_citizen(&b, None, &io(), t10).await.unwrap();
    // One second before midnight UTC: the 11th in UTC (already the 12th in Rome).
    let late = datetime!(2021-01-11 23:59:59 UTC);
    store.enroll_citizen(&c, None, &io(), late).await.unwrap();
    let activate = |n: u64, cf: &FiscalCode, at: OffsetDateTime| {
        let (store, cf) = (store.clone(), cf.clone());
        async move {
            let out = store.enroll_instrument(&hpan(n), &cf, &io(), at).await.unwrap();
            assert!(matches!(out, EnrollInstrumentOutcome::Activated(_)), "{n}: {out:?}");
        }
    };
    let deactivate = |n: u64, cf: &FiscalCode, at: OffsetDateTime| {
        let (store, cf) = (store.clone(), cf.clone());
        async move {
            let out = store.delete_instrument(&hpan(n), Some(&cf), at).await.unwrap();
            assert_eq!(out, DeleteInstrumentOutcome::Deactivated, "{n}");
        }
    };
    activate(3001, &a, t10).await;
    activate(3003, &b, t10).await;
    activate(3005, &a, h(2)).await;
    deactivate(3005, &a, h(3)).await;
    activate(3006, &b, h(4)).await;
    deactivate(3006, &b, h(5)).await;
    activate(3002, &a, h(22)).await; // 2021-01-11 08:00
    deactivate(3002, &a, h(23)).await;
    activate(3004, &c, late).await;
    activate(3002, &a, h(46)).await; // re-activated 2021-01-12 08:00
    activate(3006, &a, h(47)).await; // taken over from b, 2021-01-12 09:00
    assert_eq!(store.withdraw_citizen(&c, &io(), h(70)).await.unwrap(), WithdrawOutcome::Withdrawn { instruments: 1 });

    // A citizen's instruments: the current (or last) owner's, active and inactive, newest first.
    let card = |n: u64, owner: &FiscalCode, from: OffsetDateTime, until: Option<OffsetDateTime>| Instrument {
        hpan: hpan(n),
        fiscal_code: owner.clone(),
        channel: "app-io-channel".into(),
        status: if until.is_some() { InstrumentStatus::Inactive } else { InstrumentStatus::Active },
        activation_date: from,
        deactivation_date: until,
    };
    assert_eq!(
        store.citizen_instruments(&a).await.unwrap(),
        vec![
            card(3006, &a, h(47), None),
            card(3002, &a, h(46), None),
            card(3005, &a, h(2), Some(h(3))),
            card(3001, &a, t10, None)
        ]
    );
    assert_eq!(store.citizen_instruments(&b).await.unwrap(), vec![card(3003, &b, t10, None)], "3006 is a's now");
    assert_eq!(store.citizen_instruments(&c).await.unwrap(), vec![card(3004, &c, late, Some(h(70)))]);
    assert!(store.citizen_instruments(&fiscal_code(303)).await.unwrap().is_empty());

    // Acquirer files: one with eligible, ineligible, duplicate and malformed rows, received on
    // the 12th; one of another acquirer refused as a whole on the 13th.
    let period = AwardPeriod {
        min_transaction_number: 2,
        min_position: 1,
        ..cashback_domain::period::default_programme()[1].clone()
    };
    store.upsert_award_period(&period).await.unwrap();
    store.set_payoff(&a, payoff("IT60X0542811101000000123456"), h(48)).await.unwrap();
    let paid = |n: u64, card: u64, cf: &FiscalCode, cents: i64| StoredTransaction {
        amount_cents: cents,
        reversal: false,
        ..stored_trx(n, card, Some((cf, 1)), h(48) + secs(n as i64))
    };
    let rows = vec![
        paid(1, 3001, &a, 2_000),
        paid(2, 3001, &a, 2_000),
        paid(3, 3002, &a, 2_000),
        paid(4, 3003, &b, 1_000),
        paid(5, 3003, &b, 1_000),
        stored_trx(6, 9999, None, h(48)),
    ];
    let name = "CSTAR.12345.TRNLOG.20210112.230000.001.csv";
    let f = started(store.begin_acquirer_file(new_file(name), datetime!(2021-01-12 23:00 UTC)).await.unwrap());
    let rejections = vec![
        Rejection { line: 7, field: "bin".into(), reason: "must be 6 or 8 digits".into() },
        Rejection { line: 8, field: "amount".into(), reason: "must be a number".into() },
    ];
    let chunk = IngestChunk { rows: rows.clone(), rejections, last_line: 8, checksum: None };
    assert_eq!(
        store.ingest_chunk(f.id, chunk).await.unwrap(),
        ChunkOutcome { accepted: 5, ineligible: 1, duplicates: 0 }
    );
    let again = IngestChunk { rows: vec![rows[0].clone()], rejections: vec![], last_line: 9, checksum: None };
    assert_eq!(store.ingest_chunk(f.id, again).await.unwrap().duplicates, 1);
    let done = store.finish_acquirer_file(f.id, None, datetime!(2021-01-12 23:05 UTC)).await.unwrap();
    assert_eq!(done.counts, FileCounts { accepted: 5, ineligible: 1, duplicates: 1, rejected: 2 });
    let other = NewAcquirerFile { abi: "54321".into(), ..new_file("CSTAR.54321.TRNLOG.20210113.003000.001.csv") };
    let g = started(store.begin_acquirer_file(other, datetime!(2021-01-13 00:30 UTC)).await.unwrap());
    let refused = store.finish_acquirer_file(g.id, Some("not encrypted to our key".into()), h(63)).await.unwrap();
    assert_eq!(refused.status, FileStatus::Failed);

    let names = |files: Vec<AcquirerFile>| files.into_iter().map(|f| f.name).collect::<Vec<_>>();
    assert_eq!(names(store.all_acquirer_files(None, 10).await.unwrap()), vec![refused.name.clone(), done.name.clone()]);
    assert_eq!(store.all_acquirer_files(None, 1).await.unwrap(), vec![refused.clone()]);
    assert_eq!(store.all_acquirer_files(Some("12345"), 10).await.unwrap(), vec![done.clone()]);
    assert!(store.all_acquirer_files(Some("99999"), 10).await.unwrap().is_empty());

    // Figures per UTC day: only days with something, in order.
    let day = |d: Date, citizens, instruments, files, accepted, rejected| DayStats {
        day: d,
        citizens_enrolled: citizens,
        instruments_activated: instruments,
        files,
        rows_accepted: accepted,
        rows_rejected: rejected,
    };
    let all = store.daily_stats(date!(2021 - 01 - 01), date!(2021 - 01 - 31)).await.unwrap();
    assert_eq!(
        all,
        vec![
            day(date!(2021 - 01 - 10), 2, 4, 0, 0, 0),
            day(date!(2021 - 01 - 11), 1, 2, 0, 0, 0),
            day(date!(2021 - 01 - 12), 0, 2, 1, 6, 2),
            day(date!(2021 - 01 - 13), 0, 0, 1, 0, 0),
        ]
    );
    assert_eq!(
        store.daily_stats(date!(2021 - 01 - 11), date!(2021 - 01 - 11)).await.unwrap(),
        vec![day(date!(2021 - 01 - 11), 1, 2, 0, 0, 0)],
        "both ends of the range are included"
    );
    assert!(store.daily_stats(date!(2021 - 01 - 14), date!(2021 - 12 - 31)).await.unwrap().is_empty());
    assert!(store.daily_stats(date!(2021 - 01 - 12), date!(2021 - 01 - 11)).await.unwrap().is_empty());
    assert_eq!(
        store.programme_totals().await.unwrap(),
        ProgrammeTotals {
            citizens: 3,
            citizens_enabled: 2,
            instruments_active: 4,
            instruments: 6,
            files: 2,
            transactions: 6
        }
    );

    // Ranking snapshots: one per period and day, the last one of the day wins; oldest first.
    let snap = |period: i64, d: Date, participants: u64, at: OffsetDateTime| RankingSnapshot {
        award_period_id: period,
        day: d,
        participants,
        count_at_n: 3,
        top_count: 7,
        awarded: 1,
        recorded_at: at,
    };
    let s12 = snap(1, date!(2021 - 01 - 12), 10, datetime!(2021-01-12 10:00 UTC));
    let s12_later = RankingSnapshot {
        count_at_n: 4,
        top_count: 9,
        awarded: 2,
        ..snap(1, date!(2021 - 01 - 12), 12, datetime!(2021-01-12 10:05 UTC))
    };
    let s11 = snap(1, date!(2021 - 01 - 11), 8, datetime!(2021-01-11 23:55:00.123456 UTC));
    store.record_ranking_snapshot(&s12).await.unwrap();
    store.record_ranking_snapshot(&s12_later).await.unwrap();
    store.record_ranking_snapshot(&s11).await.unwrap();
    store.record_ranking_snapshot(&snap(2, date!(2021 - 01 - 12), 99, t10)).await.unwrap();
    assert_eq!(store.ranking_history(1, 400).await.unwrap(), vec![s11.clone(), s12_later.clone()]);
    assert_eq!(store.ranking_history(1, 1).await.unwrap(), vec![s12_later], "the most recent days");
    assert_eq!(store.ranking_history(2, 400).await.unwrap().len(), 1);
    assert!(store.ranking_history(3, 400).await.unwrap().is_empty());

    // A closed period's awards by status: A's award is in a payout file (SENT), B's waits for
    // an IBAN (NEW).
    assert!(store.award_status_counts(1).await.unwrap().is_empty());
    let now = datetime!(2021-07-11 06:00 UTC);
    let closed = store.close_period(&period, render_notice, now).await.unwrap();
    assert_eq!(closed.summary().awards, 2);
    let payout = store.prepare_payout(10, name_payout, render_notice, now).await.unwrap();
    assert_eq!((payout.files.len(), payout.waiting_for_iban), (1, 1));
    assert_eq!(
        store.award_status_counts(1).await.unwrap(),
        vec![
            AwardStatusCount { status: "NEW".into(), awards: 1, amount: Money::from_cents(200) },
            AwardStatusCount { status: "SENT".into(), awards: 1, amount: Money::from_cents(150_600) },
        ]
    );
    assert!(store.award_status_counts(2).await.unwrap().is_empty());
}

/// Expands to one `#[tokio::test]` per contract story. `$make` is an async expression that
/// returns a fresh `Arc<dyn Store>`.
#[macro_export]
macro_rules! contract_tests {
    ($make:expr) => {
        $crate::contract_tests!(@each $make;
            citizen_enroll_is_idempotent,
            opt_in_moves_one_way,
            instrument_lifecycle_and_history,
            history_keeps_same_instant_windows,
            concurrent_enrollment_has_one_winner,
            payoff_rules,
            withdrawal_is_all_or_nothing,
            award_periods,
            credentials,
            many_writers_all_durable,
            acquirer_file_lifecycle,
            failed_file_can_be_sent_again,
            enrollment_index_reflects_windows,
            acquirer_views,
            bulk_import_of_enrollments,
            scoring_follows_files,
            period_close_lifecycle,
            period_totals_import,
            console_views,
            audit_trail,
            erasure_after_retention
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $make.await;
                $crate::testkit::$name(store).await;
            }
        )*
    };
}
