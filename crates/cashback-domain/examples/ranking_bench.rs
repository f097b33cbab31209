//! Micro-benchmark of the Super Cashback ranking (`cashback_domain::ranking`), in process.
//!
//! ```text
//! CARGO_TARGET_DIR=... cargo run --release -p cashback-domain --example ranking_bench [CITIZENS]
//! ```
//!
//! Builds a ranking of CITIZENS (default 9,000,000) synthetic citizens — counts 0–400 skewed
//! towards small values, latest payment instants spread over a semester, so ties on the count
//! are massive, as in the real programme — then measures:
//!
//! * the full rebuild (`Ranking::build`: citizen table, one `sort_unstable` of the 16-byte keys,
//!   chunking, Fenwick tree); target ≤ 3 s for 9 M on the 2-core machine;
//! * 1,000,000 "my rank" lookups of random citizens (mean, and p50/p99/max of individually timed
//!   lookups); target ≤ 5 µs;
//! * 1,000,000 incremental updates (a random citizen gets one more payment);
//! * the period summary (participants, top count, count at position 100,000) and the top 100,000;
//! * for the ingest budget: `scoring::evaluate` of one citizen with 300 payments and 30 refunds
//!   (what re-scoring a heavy citizen costs when one of their rows arrives).

use std::hint::black_box;
use std::time::{Duration, Instant};

use cashback_domain::Money;
use cashback_domain::OperationType;
use cashback_domain::period::default_programme;
use cashback_domain::ranking::{CitizenId, Ranking};
use cashback_domain::scoring::{ScoringRules, Standing, TrxInput, evaluate};

mod common;
use common::{Rng, SEMESTER_US, START_US, percentile, standing};

fn main() {
    let citizens: u32 = std::env::args().nth(1).map_or(9_000_000, |a| a.parse().expect("CITIZENS is a number"));
    let mut rng = Rng(42);
    let entries: Vec<(CitizenId, Standing)> = (0..citizens).map(|c| (c, standing(&mut rng))).collect();

    let t = Instant::now();
    let mut ranking = Ranking::build(entries.iter().copied());
    let build = t.elapsed();
    drop(entries);
    println!("rebuild of {citizens} citizens: {:.3} s", build.as_secs_f64());

    const LOOKUPS: usize = 1_000_000;
    let probes: Vec<CitizenId> = (0..LOOKUPS).map(|_| rng.below(u64::from(citizens)) as u32).collect();
    let t = Instant::now();
    let mut sum = 0u64;
    for &c in &probes {
        sum += u64::from(ranking.rank(black_box(c)).expect("every citizen is ranked"));
    }
    let batch = t.elapsed();
    black_box(sum);
    let mut each: Vec<Duration> = Vec::with_capacity(LOOKUPS);
    for &c in &probes {
        let t = Instant::now();
        black_box(ranking.rank(black_box(c)));
        each.push(t.elapsed());
    }
    each.sort_unstable();
    println!(
        "{LOOKUPS} rank lookups: {:.3} s, mean {:.2} µs; timed one by one: p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        batch.as_secs_f64(),
        batch.as_secs_f64() * 1e6 / LOOKUPS as f64,
        percentile(&each, 0.50).as_secs_f64() * 1e6,
        percentile(&each, 0.99).as_secs_f64() * 1e6,
        each.last().unwrap().as_secs_f64() * 1e6,
    );

    const UPDATES: usize = 1_000_000;
    let t = Instant::now();
    for i in 0..UPDATES {
        let c = probes[i % probes.len()];
        let s = ranking.standing(c).unwrap();
        let next = Standing { count: s.count + 1, last_us: Some(START_US + SEMESTER_US as i64 + i as i64) };
        ranking.update(c, next);
    }
    let updates = t.elapsed();
    println!(
        "{UPDATES} incremental updates (one more payment): {:.3} s, mean {:.2} µs",
        updates.as_secs_f64(),
        updates.as_secs_f64() * 1e6 / UPDATES as f64
    );

    let t = Instant::now();
    let summary = ranking.summary(100_000);
    let top: u64 = ranking.top(100_000).map(|r| u64::from(r.standing.count)).sum();
    println!("summary {:?} and top 100,000 (Σ counts {top}): {:.2} ms", summary, t.elapsed().as_secs_f64() * 1e3);

    // One heavy citizen: 300 payments over the semester, 30 of them refunded (half with a
    // correlation id, half by merchant/terminal/amount).
    let period = default_programme().remove(1);
    let mut rows: Vec<TrxInput> = Vec::new();
    for i in 0..300u64 {
        let at = START_US + rng.below(SEMESTER_US) as i64;
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&rng.next().to_be_bytes());
        let p = TrxInput {
            key,
            at_us: at,
            received_us: at,
            operation: OperationType::Payment,
            amount: Money::from_cents(100 + rng.below(20_000) as i64),
            hpan: [(i % 3) as u8; 32],
            acquirer_id: "12345".into(),
            merchant_id: format!("M{}", rng.below(40)),
            terminal_id: format!("T{}", rng.below(3)),
            correlation_id: (i % 2 == 0).then(|| format!("C{i}")),
        };
        if i % 10 == 0 {
            let mut r = p.clone();
            r.operation = OperationType::Reversal;
            r.key[15] ^= 0xff;
            r.at_us += 3_600_000_000;
            r.received_us = r.at_us;
            rows.push(r);
        }
        rows.push(p);
    }
    const EVALS: u32 = 2_000;
    let rules = ScoringRules::default();
    let t = Instant::now();
    for _ in 0..EVALS {
        black_box(evaluate(&period, &rules, black_box(&rows)));
    }
    let per = t.elapsed() / EVALS;
    let r = evaluate(&period, &rules, &rows);
    println!(
        "evaluate of one citizen with {} rows ({} counted, cashback {}): {:.1} µs",
        rows.len(),
        r.transactions,
        r.cashback.to_euro_string(),
        per.as_secs_f64() * 1e6
    );
}
