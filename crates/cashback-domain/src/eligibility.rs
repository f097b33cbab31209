//! Eligibility of an acquirer transaction (rules in `docs/rules.md`, "Eligibility").
//!
//! The decision is a pure function of the transaction, a snapshot of the enrollment state
//! ([`EnrollmentIndex`]: every activation window of every instrument and every citizen), the award
//! periods and the processing instant. The ingestion pipeline builds the index once per run, so
//! classifying a row costs a couple of memory lookups instead of database queries.
//!
//! Rules (where they differ from the original, ours win; see `docs/rules.md`):
//! 1. An e-commerce transaction (E2 `pos_type` `01`) never counts.
//! 2. The instrument must have an activation window `[from, to)` containing the transaction's
//!    instant; the window's owner is the citizen the transaction is attributed to. (The original
//!    compared calendar days in two different time zones and excluded the activation day.)
//! 3. That citizen must be enabled and must have accepted the terms at or before the instant.
//! 4. The transaction's civil date in Italy (Europe/Rome) must fall inside an award period
//!    (`start ≤ date ≤ end`) that still accepts data on the processing date (`≤ end + grace`).
//! 5. A transaction dated more than [`FUTURE_TOLERANCE_SECONDS`] after the processing instant is
//!    refused (a clock or data error, not a purchase).

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::calendar::rome_date;
use crate::period::AwardPeriod;

/// How far in the future a transaction may be dated (clock skew between acquirers and us).
pub const FUTURE_TOLERANCE_SECONDS: i64 = 24 * 3600;

/// Why a well-formed row does not count. The codes are stable: they are stored and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ineligible {
    Ecommerce,
    InstrumentNotEnrolled,
    InstrumentNotActive,
    CitizenNotEnabled,
    BeforeTermsAccepted,
    OutsideAwardPeriods,
    AwardPeriodClosed,
    FutureDated,
}

impl Ineligible {
    pub const ALL: [Ineligible; 8] = [
        Ineligible::Ecommerce,
        Ineligible::InstrumentNotEnrolled,
        Ineligible::InstrumentNotActive,
        Ineligible::CitizenNotEnabled,
        Ineligible::BeforeTermsAccepted,
        Ineligible::OutsideAwardPeriods,
        Ineligible::AwardPeriodClosed,
        Ineligible::FutureDated,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Ineligible::Ecommerce => "ECOMMERCE",
            Ineligible::InstrumentNotEnrolled => "INSTRUMENT_NOT_ENROLLED",
            Ineligible::InstrumentNotActive => "INSTRUMENT_NOT_ACTIVE_AT_TRANSACTION_TIME",
            Ineligible::CitizenNotEnabled => "CITIZEN_NOT_ENABLED",
            Ineligible::BeforeTermsAccepted => "BEFORE_TERMS_ACCEPTED",
            Ineligible::OutsideAwardPeriods => "OUTSIDE_AWARD_PERIODS",
            Ineligible::AwardPeriodClosed => "AWARD_PERIOD_CLOSED",
            Ineligible::FutureDated => "FUTURE_DATED",
        }
    }

    pub fn parse(code: &str) -> Option<Ineligible> {
        Ineligible::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn description(self) -> &'static str {
        match self {
            Ineligible::Ecommerce => "online (e-commerce) purchases do not count",
            Ineligible::InstrumentNotEnrolled => "the card is not enrolled in the programme",
            Ineligible::InstrumentNotActive => "the card was not active in the programme at the time of the purchase",
            Ineligible::CitizenNotEnabled => "the card holder is not (or no longer) enrolled in the programme",
            Ineligible::BeforeTermsAccepted => "the purchase precedes the holder's acceptance of the terms",
            Ineligible::OutsideAwardPeriods => "the purchase date is outside every award period",
            Ineligible::AwardPeriodClosed => "the award period no longer accepts transactions (grace period over)",
            Ineligible::FutureDated => "the transaction is dated in the future",
        }
    }
}

/// A citizen as seen by eligibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CitizenState {
    pub enabled: bool,
    /// When the terms were accepted (Unix µs).
    pub terms_accepted_us: i64,
}

/// One activation window of an instrument, `[from_us, to_us)`, owned by `citizen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    hpan: [u8; 32],
    citizen: u32,
    from_us: i64,
    /// `i64::MAX` while open.
    to_us: i64,
}

/// Snapshot of the enrollment state, compact enough for millions of instruments
/// (56 bytes per window plus a 4 MiB bucket table).
///
/// Windows are kept sorted by hpan in one vector; because hpans are SHA-256 digests (uniform),
/// the first [`BUCKET_BITS`] bits of an hpan index a table of bucket starts, so a lookup is one
/// table read plus a scan of a handful of windows.
pub struct EnrollmentIndex {
    citizens: Vec<(String, CitizenState)>,
    windows: Vec<Window>,
    buckets: Vec<u32>,
}

const BUCKET_BITS: u32 = 20;

fn bucket_of(hpan: &[u8; 32]) -> usize {
    (u32::from_be_bytes([hpan[0], hpan[1], hpan[2], hpan[3]]) >> (32 - BUCKET_BITS)) as usize
}

/// Builds an [`EnrollmentIndex`] from citizens and windows in any order.
#[derive(Default)]
pub struct EnrollmentIndexBuilder {
    citizens: Vec<(String, CitizenState)>,
    by_cf: HashMap<String, u32>,
    windows: Vec<Window>,
    unknown_owner: u64,
}

impl EnrollmentIndexBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn citizen(&mut self, fiscal_code: &str, state: CitizenState) {
        if let Some(&i) = self.by_cf.get(fiscal_code) {
            self.citizens[i as usize].1 = state;
            return;
        }
        self.by_cf.insert(fiscal_code.to_owned(), self.citizens.len() as u32);
        self.citizens.push((fiscal_code.to_owned(), state));
    }

    /// An activation window; `to_us == None` while the instrument is active. Windows whose owner
    /// was not added with [`Self::citizen`] are dropped and counted (a store inconsistency).
    pub fn window(&mut self, hpan: [u8; 32], owner: &str, from_us: i64, to_us: Option<i64>) {
        let Some(&citizen) = self.by_cf.get(owner) else {
            self.unknown_owner += 1;
            return;
        };
        self.windows.push(Window { hpan, citizen, from_us, to_us: to_us.unwrap_or(i64::MAX) });
    }

    pub fn build(mut self) -> EnrollmentIndex {
        self.windows.sort_unstable_by(|a, b| a.hpan.cmp(&b.hpan).then(a.from_us.cmp(&b.from_us)));
        self.windows.shrink_to_fit();
        let mut buckets = vec![0u32; (1 << BUCKET_BITS) + 1];
        // Counting sort of bucket starts.
        for w in &self.windows {
            buckets[bucket_of(&w.hpan) + 1] += 1;
        }
        for i in 1..buckets.len() {
            buckets[i] += buckets[i - 1];
        }
        EnrollmentIndex { citizens: self.citizens, windows: self.windows, buckets }
    }

    pub fn windows_without_owner(&self) -> u64 {
        self.unknown_owner
    }
}

impl EnrollmentIndex {
    pub fn instruments_windows(&self) -> usize {
        self.windows.len()
    }

    pub fn citizens(&self) -> usize {
        self.citizens.len()
    }

    fn windows_of(&self, hpan: &[u8; 32]) -> &[Window] {
        let b = bucket_of(hpan);
        let bucket = &self.windows[self.buckets[b] as usize..self.buckets[b + 1] as usize];
        let start = bucket.partition_point(|w| w.hpan < *hpan);
        let end = start + bucket[start..].partition_point(|w| w.hpan == *hpan);
        &bucket[start..end]
    }

    /// The citizen (index, fiscal code) who owned `hpan` at `at_us`, or why nobody did.
    fn owner_at(&self, hpan: &[u8; 32], at_us: i64) -> Result<u32, Ineligible> {
        let ws = self.windows_of(hpan);
        if ws.is_empty() {
            return Err(Ineligible::InstrumentNotEnrolled);
        }
        ws.iter()
            .find(|w| w.from_us <= at_us && at_us < w.to_us)
            .map(|w| w.citizen)
            .ok_or(Ineligible::InstrumentNotActive)
    }

    pub fn fiscal_code(&self, citizen: u32) -> &str {
        &self.citizens[citizen as usize].0
    }
}

/// What eligibility needs to know about a transaction.
#[derive(Debug, Clone, Copy)]
pub struct TransactionFacts<'a> {
    pub hpan: &'a [u8; 32],
    pub at: OffsetDateTime,
    pub ecommerce: bool,
}

/// An eligible transaction: attributed to a citizen, in an award period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribution {
    pub citizen: u32,
    pub award_period_id: i64,
}

/// Classify one transaction (rules in the module docs). `periods` in any order.
pub fn classify(
    facts: &TransactionFacts<'_>,
    index: &EnrollmentIndex,
    periods: &[AwardPeriod],
    now: OffsetDateTime,
) -> Result<Attribution, Ineligible> {
    if facts.ecommerce {
        return Err(Ineligible::Ecommerce);
    }
    if facts.at - now > time::Duration::seconds(FUTURE_TOLERANCE_SECONDS) {
        return Err(Ineligible::FutureDated);
    }
    let at_us = (facts.at.unix_timestamp_nanos() / 1_000) as i64;
    let citizen = index.owner_at(facts.hpan, at_us)?;
    let state = index.citizens[citizen as usize].1;
    if !state.enabled {
        return Err(Ineligible::CitizenNotEnabled);
    }
    if state.terms_accepted_us > at_us {
        return Err(Ineligible::BeforeTermsAccepted);
    }
    let date = rome_date(facts.at);
    let today = rome_date(now);
    let mut closed = false;
    for p in periods {
        if p.start <= date && date <= p.end {
            if today <= p.grace_end() {
                return Ok(Attribution { citizen, award_period_id: p.id });
            }
            closed = true;
        }
    }
    Err(if closed { Ineligible::AwardPeriodClosed } else { Ineligible::OutsideAwardPeriods })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::default_programme;
    use time::macros::datetime;

    fn h(n: u8) -> [u8; 32] {
        let mut x = [0u8; 32];
        x[0] = n.wrapping_mul(37);
        x[31] = n;
        x
    }

    fn us(t: OffsetDateTime) -> i64 {
        (t.unix_timestamp_nanos() / 1000) as i64
    }

    fn index() -> EnrollmentIndex {
        let mut b = EnrollmentIndexBuilder::new();
        let tc = us(datetime!(2021-01-01 00:00 UTC));
        b.citizen("AAAAAAAAAAAAAAAA", CitizenState { enabled: true, terms_accepted_us: tc });
        b.citizen("BBBBBBBBBBBBBBBB", CitizenState { enabled: true, terms_accepted_us: tc });
        b.citizen("CCCCCCCCCCCCCCCC", CitizenState { enabled: false, terms_accepted_us: tc });
        b.citizen(
            "DDDDDDDDDDDDDDDD",
            CitizenState { enabled: true, terms_accepted_us: us(datetime!(2021-03-01 00:00 UTC)) },
        );
        // Card 1: A from Jan 10 to Feb 1 (exclusive), then B from Feb 1 on.
        b.window(
            h(1),
            "AAAAAAAAAAAAAAAA",
            us(datetime!(2021-01-10 10:00 UTC)),
            Some(us(datetime!(2021-02-01 00:00 UTC))),
        );
        b.window(h(1), "BBBBBBBBBBBBBBBB", us(datetime!(2021-02-01 00:00 UTC)), None);
        b.window(h(2), "CCCCCCCCCCCCCCCC", us(datetime!(2021-01-01 00:00 UTC)), None);
        b.window(h(3), "DDDDDDDDDDDDDDDD", us(datetime!(2021-01-01 00:00 UTC)), None);
        b.window(h(4), "NOT-A-CITIZEN", 0, None);
        assert_eq!(b.windows_without_owner(), 1);
        b.build()
    }

    fn run(hpan: u8, at: OffsetDateTime, ecommerce: bool, now: OffsetDateTime) -> Result<(String, i64), Ineligible> {
        let idx = index();
        let key = h(hpan);
        classify(&TransactionFacts { hpan: &key, at, ecommerce }, &idx, &default_programme(), now)
            .map(|a| (idx.fiscal_code(a.citizen).to_owned(), a.award_period_id))
    }

    const NOW: OffsetDateTime = datetime!(2021-03-15 12:00 UTC);

    #[test]
    fn attributed_to_the_owner_of_the_window() {
        assert_eq!(run(1, datetime!(2021-01-20 12:00 +01:00), false, NOW), Ok(("AAAAAAAAAAAAAAAA".into(), 1)));
        assert_eq!(run(1, datetime!(2021-02-20 12:00 +01:00), false, NOW), Ok(("BBBBBBBBBBBBBBBB".into(), 1)));
        // Window bounds are instants, half-open: the activation instant counts, the end does not.
        assert_eq!(run(1, datetime!(2021-01-10 10:00 UTC), false, NOW).unwrap().0, "AAAAAAAAAAAAAAAA");
        assert_eq!(run(1, datetime!(2021-01-10 09:59:59.999 UTC), false, NOW), Err(Ineligible::InstrumentNotActive));
        assert_eq!(run(1, datetime!(2021-02-01 00:00 UTC), false, NOW).unwrap().0, "BBBBBBBBBBBBBBBB");
        assert_eq!(run(1, datetime!(2021-01-31 23:59:59.999999 UTC), false, NOW).unwrap().0, "AAAAAAAAAAAAAAAA");
    }

    #[test]
    fn every_ineligibility_reason() {
        assert_eq!(run(1, datetime!(2021-01-20 12:00 UTC), true, NOW), Err(Ineligible::Ecommerce));
        assert_eq!(run(9, datetime!(2021-01-20 12:00 UTC), false, NOW), Err(Ineligible::InstrumentNotEnrolled));
        assert_eq!(run(4, datetime!(2021-01-20 12:00 UTC), false, NOW), Err(Ineligible::InstrumentNotEnrolled));
        assert_eq!(run(2, datetime!(2021-01-20 12:00 UTC), false, NOW), Err(Ineligible::CitizenNotEnabled));
        assert_eq!(run(3, datetime!(2021-02-20 12:00 UTC), false, NOW), Err(Ineligible::BeforeTermsAccepted));
        assert_eq!(run(3, datetime!(2021-03-02 12:00 UTC), false, NOW), Ok(("DDDDDDDDDDDDDDDD".into(), 1)));
        assert_eq!(
            run(1, datetime!(2021-01-16 10:00 UTC), false, datetime!(2021-07-11 12:00 UTC)),
            Err(Ineligible::AwardPeriodClosed),
            "H1 2021 ends 30 June, grace 10 days"
        );
        assert_eq!(run(1, datetime!(2021-01-16 10:00 UTC), false, datetime!(2021-07-10 12:00 UTC)).unwrap().1, 1);
        assert_eq!(
            run(3, datetime!(2021-03-17 12:00 UTC), false, datetime!(2021-03-15 12:00 UTC)),
            Err(Ineligible::FutureDated)
        );
    }

    #[test]
    fn the_civil_date_in_italy_decides_the_period() {
        // 31 Dec 2020 23:30 UTC is 1 Jan 2021 00:30 in Rome: first semester, not Christmas.
        let mut b = EnrollmentIndexBuilder::new();
        b.citizen("AAAAAAAAAAAAAAAA", CitizenState { enabled: true, terms_accepted_us: 0 });
        b.window(h(7), "AAAAAAAAAAAAAAAA", 0, None);
        let idx = b.build();
        let key = h(7);
        let at = datetime!(2020-12-31 23:30 UTC);
        let now = datetime!(2021-01-02 00:00 UTC);
        let got = classify(&TransactionFacts { hpan: &key, at, ecommerce: false }, &idx, &default_programme(), now);
        assert_eq!(got.unwrap().award_period_id, 1);
        let at = datetime!(2020-12-31 22:30 UTC);
        let got = classify(&TransactionFacts { hpan: &key, at, ecommerce: false }, &idx, &default_programme(), now);
        assert_eq!(got.unwrap().award_period_id, 0);
    }

    #[test]
    fn index_finds_every_window_among_many() {
        let mut b = EnrollmentIndexBuilder::new();
        b.citizen("AAAAAAAAAAAAAAAA", CitizenState { enabled: true, terms_accepted_us: 0 });
        let mut keys = Vec::new();
        for i in 0..20_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            k[4..8].copy_from_slice(&i.to_be_bytes());
            keys.push(k);
            b.window(k, "AAAAAAAAAAAAAAAA", i as i64, None);
        }
        let idx = b.build();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(idx.windows_of(k).len(), 1);
            assert_eq!(idx.windows_of(k)[0].from_us, i as i64);
        }
        assert!(idx.windows_of(&[0xff; 32]).is_empty());
    }

    #[test]
    fn reason_codes_round_trip() {
        for r in Ineligible::ALL {
            assert_eq!(Ineligible::parse(r.code()), Some(r));
            assert!(!r.description().is_empty());
        }
    }
}
