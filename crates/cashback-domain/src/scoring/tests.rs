//! Worked examples of `docs/rules.md` ("Scoring, reversals and ranking") and property tests.

use super::*;
use crate::period::default_programme;
use crate::test_rng::Rng;
use time::macros::datetime;

fn semester() -> AwardPeriod {
    default_programme().into_iter().find(|p| p.id == 1).unwrap()
}

fn us(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

const MINUTE: i64 = 60_000_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// 2021-02-01T09:00:00Z.
fn t0() -> i64 {
    us(datetime!(2021-02-01 09:00 UTC))
}

fn key(id: u64) -> TrxKey {
    let mut k = [0u8; 16];
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// A payment `id` at `t0 + minutes`, received at the same instant, on card 1, merchant M1,
/// terminal T1.
fn pay(id: u64, minutes: i64, cents: i64) -> TrxInput {
    TrxInput {
        key: key(id),
        at_us: t0() + minutes * MINUTE,
        received_us: t0() + minutes * MINUTE,
        operation: OperationType::Payment,
        amount: Money::from_cents(cents),
        hpan: [1; 32],
        acquirer_id: "ACQ".into(),
        merchant_id: "M1".into(),
        terminal_id: "T1".into(),
        correlation_id: None,
    }
}

fn rev(id: u64, minutes: i64, cents: i64) -> TrxInput {
    TrxInput { operation: OperationType::Reversal, ..pay(id, minutes, cents) }
}

fn corr(mut t: TrxInput, c: &str) -> TrxInput {
    t.correlation_id = Some(c.into());
    t
}

fn eur(cents: i64) -> Money {
    Money::from_cents(cents)
}

fn run(rows: &[TrxInput]) -> CitizenPeriodResult {
    evaluate(&semester(), &ScoringRules::default(), rows)
}

fn payment_of(r: &CitizenPeriodResult, i: usize) -> PaymentOutcome {
    match r.rows[i] {
        RowOutcome::Payment(p) => p,
        RowOutcome::Reversal(_) => panic!("row {i} is a reversal"),
    }
}

fn reversal_of(r: &CitizenPeriodResult, i: usize) -> ReversalOutcome {
    match r.rows[i] {
        RowOutcome::Reversal(o) => o,
        RowOutcome::Payment(_) => panic!("row {i} is a payment"),
    }
}

// ---------------------------------------------------------------- worked examples

#[test]
fn example_scores_and_rounding() {
    let p = semester();
    let cases = [
        (10_000, 1_000), // €100.00 → €10.00
        (20_000, 1_500), // €200.00 counts €150 → €15.00
        (15_000, 1_500),
        (1_005, 100), // €10.05 → 100.5 cents → half down → €1.00 (as the original)
        (1_006, 101), // €10.06 → 100.6 cents → €1.01
        (1_004, 100),
        (1, 0), // €0.01 → 0.1 cents → €0.00 (still counts as a transaction)
        (5, 0), // 0.5 cents → half down → 0
        (6, 1), // 0.6 cents → 1 cent
        (0, 0),
        (-500, 0),
    ];
    for (amount, expected) in cases {
        assert_eq!(score(&p, eur(amount)), eur(expected), "amount {amount}");
    }
    // The period's own percentage and caps are used (the original used a static 0.1).
    let p5 = AwardPeriod { cashback_percentage: 5, max_transaction_cashback: eur(500), ..semester() };
    assert_eq!(score(&p5, eur(10_000)), eur(500));
    assert_eq!(score(&p5, eur(1_010)), eur(50)); // 50.5 → 50
    assert_eq!(score(&p5, eur(20_000)), eur(500)); // counts €150 → 7.50, capped at 5.00

    let r = run(&[pay(1, 0, 1)]);
    assert_eq!((r.transactions, r.cashback), (1, Money::ZERO));
}

#[test]
fn example_partial_refunds() {
    // €200 payment: €15.00. Refund €20 → net €180, still counts €150: €15.00.
    let p = corr(pay(1, 0, 20_000), "C1");
    let r1 = corr(rev(2, 60, 2_000), "C1");
    let r2 = corr(rev(3, 120, 5_000), "C1");
    let r3 = corr(rev(4, 180, 13_000), "C1");
    let r = run(std::slice::from_ref(&p));
    assert_eq!((r.cashback, r.transactions), (eur(1_500), 1));
    let r = run(&[p.clone(), r1.clone()]);
    assert_eq!((r.cashback, r.transactions), (eur(1_500), 1));
    assert_eq!(payment_of(&r, 0).net_amount, eur(18_000));
    assert_eq!(payment_of(&r, 0).counted_amount, eur(15_000));
    assert!(matches!(reversal_of(&r, 1), ReversalOutcome::Applied { payment, total: false, .. } if payment == key(1)));
    // Refund €50 more → net €130: €13.00.
    let r = run(&[p.clone(), r1.clone(), r2.clone()]);
    assert_eq!((r.cashback, r.transactions), (eur(1_300), 1));
    // Refund the remaining €130 → nothing left: €0.00 and no transaction.
    let r = run(&[p.clone(), r1, r2, r3.clone()]);
    assert_eq!((r.cashback, r.transactions, r.last_counted_us), (Money::ZERO, 0, None));
    assert_eq!(payment_of(&r, 0).excluded, Some(Exclusion::FullyReversed));
    assert!(matches!(reversal_of(&r, 3), ReversalOutcome::Applied { payment, total: true, .. } if payment == key(1)));

    // The original's counter-example: refund €40 (still €15.00), then €160: 0.00 and 0
    // transactions here, −1.00 there.
    let a = corr(rev(5, 60, 4_000), "C1");
    let b = corr(rev(6, 120, 16_000), "C1");
    let r = run(&[p.clone(), a.clone()]);
    assert_eq!((r.cashback, r.transactions), (eur(1_500), 1));
    assert_eq!(payment_of(&r, 0).counted_amount, eur(15_000));
    let r = run(&[p, a, b]);
    assert_eq!((r.cashback, r.transactions), (Money::ZERO, 0));
}

#[test]
fn example_total_reversal_without_correlation_id() {
    // Matched by card, acquirer, merchant, terminal and amount.
    let r = run(&[pay(1, 0, 4_250), rev(2, 30, 4_250)]);
    assert_eq!((r.cashback, r.transactions), (Money::ZERO, 0));
    assert!(matches!(reversal_of(&r, 1), ReversalOutcome::Applied { payment, total: true, .. } if payment == key(1)));
    // Another terminal, or another amount, does not match.
    let mut other = rev(2, 30, 4_250);
    other.terminal_id = "T2".into();
    let r = run(&[pay(1, 0, 4_250), other]);
    assert_eq!((r.cashback, r.transactions), (eur(425), 1));
    assert_eq!(reversal_of(&r, 1), ReversalOutcome::Unmatched(Unmatched::NoPayment));
    let r = run(&[pay(1, 0, 4_250), rev(2, 30, 4_000)]);
    assert_eq!(reversal_of(&r, 1), ReversalOutcome::Unmatched(Unmatched::NoPayment));
    // A reversal dated before every matching payment does not match.
    let r = run(&[pay(1, 10, 4_250), rev(2, 5, 4_250)]);
    assert_eq!(reversal_of(&r, 1), ReversalOutcome::Unmatched(Unmatched::NoPayment));
    // Two equal coffees then one refund: the latest coffee before the refund is refunded.
    let r = run(&[pay(1, 0, 120), pay(2, 60, 120), rev(3, 90, 120), pay(4, 120, 120)]);
    assert!(matches!(reversal_of(&r, 2), ReversalOutcome::Applied { payment, total: true, .. } if payment == key(2)));
    assert_eq!(r.transactions, 2);
}

#[test]
fn example_never_reversed_twice() {
    let r = run(&[corr(pay(1, 0, 5_000), "X"), corr(rev(2, 10, 5_000), "X"), corr(rev(3, 20, 5_000), "X")]);
    assert_eq!((r.cashback, r.transactions), (Money::ZERO, 0));
    assert!(matches!(reversal_of(&r, 1), ReversalOutcome::Applied { payment, total: true, .. } if payment == key(1)));
    assert_eq!(reversal_of(&r, 2), ReversalOutcome::Unmatched(Unmatched::ExceedsBalance));
    let r = run(&[pay(1, 0, 3_000), rev(2, 10, 3_000), rev(3, 20, 3_000)]);
    assert_eq!(reversal_of(&r, 2), ReversalOutcome::Unmatched(Unmatched::NoPayment));
    // More than the payment: not applied, the payment keeps its cashback.
    let r = run(&[corr(pay(1, 0, 5_000), "X"), corr(rev(2, 10, 6_000), "X")]);
    assert_eq!((r.cashback, r.transactions), (eur(500), 1));
    assert_eq!(reversal_of(&r, 1), ReversalOutcome::Unmatched(Unmatched::ExceedsBalance));
    let r = run(&[pay(1, 0, 5_000), rev(2, 10, 0)]);
    assert_eq!(reversal_of(&r, 1), ReversalOutcome::Unmatched(Unmatched::ZeroAmount));
}

#[test]
fn example_reversal_before_its_payment() {
    let p = semester();
    let rules = ScoringRules::default();
    let payment = corr(pay(1, 0, 8_000), "R");
    let mut refund = corr(rev(2, 60, 8_000), "R");
    // The refund's file arrives first (received a day before the payment's file).
    refund.received_us = payment.received_us - DAY;
    let mut s = CitizenPeriodState::new();
    let change = s.apply(&p, &rules, [refund.clone()]);
    assert_eq!(change.after, Standing::default());
    assert_eq!(reversal_of(s.result(), 0), ReversalOutcome::Unmatched(Unmatched::NoPayment));
    assert!(!unmatched_is_final(refund.received_us, refund.received_us + DAY, &rules));
    // The payment arrives: the held refund is applied.
    let change = s.apply(&p, &rules, [payment.clone()]);
    assert_eq!(change.after, Standing::default());
    assert_eq!(s.result().transactions, 0);
    assert_eq!(s.result(), &evaluate(&p, &rules, &[refund.clone(), payment.clone()]));
    // Same totals in the other order.
    let mut other = CitizenPeriodState::new();
    other.apply(&p, &rules, [payment.clone()]);
    assert_eq!(other.result().standing(), Standing { count: 1, last_us: Some(payment.at_us) });
    other.apply(&p, &rules, [refund.clone()]);
    assert_eq!(other.result().standing(), s.result().standing());
    assert_eq!(other.result().cashback, s.result().cashback);

    // Retention: a payment received more than 30 days after the refund is never matched.
    let mut late = payment.clone();
    late.received_us = refund.received_us + DEFAULT_REVERSAL_RETENTION_US + 1;
    let r = evaluate(&p, &rules, &[refund.clone(), late.clone()]);
    assert_eq!((r.transactions, r.cashback), (1, eur(800)));
    assert_eq!(reversal_of(&r, 0), ReversalOutcome::Unmatched(Unmatched::NoPayment));
    // ... and once the retention is over the held refund is dropped and reported.
    let mut s = CitizenPeriodState::new();
    s.apply(&p, &rules, [refund.clone()]);
    assert!(s.expire(&p, &rules, refund.received_us + DEFAULT_REVERSAL_RETENTION_US).is_empty());
    let expired = s.expire(&p, &rules, refund.received_us + DEFAULT_REVERSAL_RETENTION_US + 1);
    assert_eq!(expired, vec![refund]);
    assert!(s.rows().is_empty());
    s.apply(&p, &rules, [late]);
    assert_eq!((s.result().transactions, s.result().cashback), (1, eur(800)));
}

#[test]
fn example_period_cap_and_pivot() {
    // 14 payments of €100 (€10.00 each → €140.00), then €150 (€15.00: only €10.00 fits, the
    // pivot), then €50 (€5.00 → €0.00, still a transaction).
    let mut rows: Vec<TrxInput> = (1..=14).map(|i| pay(i, i as i64, 10_000)).collect();
    rows.push(pay(15, 15, 15_000));
    rows.push(pay(16, 16, 5_000));
    let r = run(&rows);
    assert_eq!((r.cashback, r.score_total, r.transactions), (eur(15_000), eur(16_000), 16));
    assert_eq!(r.pivot, Some(Pivot { key: key(15), cashback_norm: eur(1_000) }));
    assert_eq!(payment_of(&r, 14).awarded, eur(1_000));
    assert_eq!(payment_of(&r, 15).awarded, Money::ZERO);
    assert_eq!(r.last_counted_us, Some(rows[15].at_us));
    // The first €100 is refunded in full: one transaction less, and the cap now falls on the
    // €50 payment, which brings its €5.00.
    rows.push(rev(17, 20, 10_000));
    // (without a correlation id the latest €100 before the refund is the one refunded: #14)
    let r = run(&rows);
    assert!(matches!(reversal_of(&r, 16), ReversalOutcome::Applied { payment, total: true, .. } if payment == key(14)));
    assert_eq!((r.cashback, r.score_total, r.transactions), (eur(15_000), eur(15_000), 15));
    assert_eq!(r.pivot, Some(Pivot { key: key(16), cashback_norm: eur(500) }));
    // Exactly reaching the cap: the payment that reaches it is the pivot with its whole score.
    let rows: Vec<TrxInput> = (1..=11).map(|i| pay(i, i as i64, 15_000)).collect();
    let r = run(&rows);
    assert_eq!(r.pivot, Some(Pivot { key: key(10), cashback_norm: eur(1_500) }));
    assert_eq!((r.cashback, r.transactions), (eur(15_000), 11));
    // Under the cap: no pivot.
    assert_eq!(run(&rows[..9]).pivot, None);
}

#[test]
fn example_cap_is_allocated_in_time_order() {
    // Two files: the later payment's file arrives first. The cap goes by transaction time.
    let mut rows: Vec<TrxInput> = (1..=9).map(|i| pay(i, i as i64, 15_000)).collect(); // €135.00
    let early = pay(100, 100, 10_000); // €10.00 at minute 100
    let late = pay(200, 200, 15_000); // €15.00 at minute 200
    rows.push(late.clone());
    rows.push(early.clone());
    let r = run(&rows);
    assert_eq!(payment_of(&r, 10).awarded, eur(1_000)); // the earlier one, whole
    assert_eq!(payment_of(&r, 9).awarded, eur(500)); // the later one, the remainder
    assert_eq!(r.pivot, Some(Pivot { key: late.key, cashback_norm: eur(500) }));
}

#[test]
fn example_minimum_count_milestone() {
    let p = AwardPeriod { min_transaction_number: 3, ..semester() };
    let rules = ScoringRules::default();
    let rows = vec![pay(1, 1, 1_000), pay(2, 2, 1_000), pay(3, 3, 1_000), pay(4, 4, 1_000)];
    assert_eq!(evaluate(&p, &rules, &rows).min_count_milestone, Some(key(3)));
    // The second payment is refunded: as if it never happened, the 3rd counted one is #4.
    let mut with_refund = rows.clone();
    with_refund.push(corr(rev(5, 10, 1_000), "Z"));
    with_refund[1].correlation_id = Some("Z".into());
    assert_eq!(evaluate(&p, &rules, &with_refund).min_count_milestone, Some(key(4)));
    assert_eq!(evaluate(&p, &rules, &rows[..2]).min_count_milestone, None);
}

#[test]
fn example_anti_abuse() {
    let p = semester();
    let rules =
        ScoringRules { min_amount: Some(eur(100)), max_payments_per_merchant_day: Some(5), ..ScoringRules::default() };
    // Off by default: a €0.50 payment counts, 6 payments at one shop in one day count.
    let small = pay(1, 0, 50);
    assert_eq!(run(std::slice::from_ref(&small)).transactions, 1);
    let r = evaluate(&p, &rules, std::slice::from_ref(&small));
    assert_eq!((r.transactions, payment_of(&r, 0).excluded), (0, Some(Exclusion::BelowMinAmount)));
    // The minimum applies to the net amount: €1.50 refunded €0.60 is €0.90.
    let r = evaluate(&p, &rules, &[corr(pay(1, 0, 150), "K"), corr(rev(2, 5, 60), "K")]);
    assert_eq!(payment_of(&r, 0).excluded, Some(Exclusion::BelowMinAmount));

    // Six payments at M1 on 1 February (Rome): the sixth does not count.
    let six: Vec<TrxInput> = (1..=6).map(|i| pay(i, i as i64 * 10, 1_000)).collect();
    assert_eq!(run(&six).transactions, 6);
    let r = evaluate(&p, &rules, &six);
    assert_eq!((r.transactions, r.cashback), (5, eur(500)));
    assert_eq!(payment_of(&r, 5).excluded, Some(Exclusion::MerchantDailyLimit));
    // Another merchant, or another day in Rome, has its own limit: 2021-02-01T23:30Z is
    // 2 February in Rome.
    let mut other_shop = pay(7, 30, 1_000);
    other_shop.merchant_id = "M2".into();
    let mut next_day = pay(8, 0, 1_000);
    next_day.at_us = us(datetime!(2021-02-01 23:30 UTC));
    let mut rows = six.clone();
    rows.push(other_shop);
    rows.push(next_day);
    assert_eq!(evaluate(&p, &rules, &rows).transactions, 7);
    // A payment refunded in full frees its place: the sixth now counts.
    let mut rows = six.clone();
    rows.push(rev(9, 15, 1_000));
    let r = evaluate(&p, &rules, &rows);
    assert_eq!(r.transactions, 5);
    assert_eq!(payment_of(&r, 0).excluded, Some(Exclusion::FullyReversed));
    assert_eq!(payment_of(&r, 5).excluded, None);

    for e in Exclusion::ALL {
        assert_eq!(Exclusion::parse(e.code()), Some(e));
        assert!(!e.description().is_empty());
    }
}

#[test]
fn example_id_trx() {
    let at = datetime!(2021-01-15 10:20:30.123456 +01:00);
    assert_eq!(
        id_trx("123456789", at, "32875", "1234", OperationType::Payment),
        "1234567892021-01-15T09:20:30.123Z32875123400"
    );
    assert_eq!(
        id_trx("A", datetime!(2020-12-31 23:30 UTC), "ABCDE", "9", OperationType::Reversal),
        "A2020-12-31T23:30:00.000ZABCDE901"
    );
}

#[test]
fn zero_payment_does_not_count() {
    let r = run(&[pay(1, 0, 0)]);
    assert_eq!((r.transactions, payment_of(&r, 0).excluded), (0, Some(Exclusion::ZeroAmount)));
}

// ---------------------------------------------------------------- property tests

/// A random citizen: payments of varied amounts on 2 cards, 3 merchants, over a few days, with
/// total, partial, duplicate-looking and orphan reversals. Every row is received within a day
/// of its transaction, so the retention never bites.
fn population(rng: &mut Rng) -> Vec<TrxInput> {
    let mut rows = Vec::new();
    let n = 1 + rng.below(40);
    for _ in 0..n {
        let amount = match rng.below(4) {
            0 => rng.below(300) as i64,            // micro
            1 => 1_000 + rng.below(10_000) as i64, // €10–110
            2 => 15_000,                           // exactly the per-trx cap
            _ => 10_000 + rng.below(40_000) as i64,
        };
        let at = t0() + rng.below(4 * DAY as u64 / MINUTE as u64) as i64 * MINUTE;
        let mut p = TrxInput {
            key: key(rng.next()),
            at_us: at,
            received_us: at + rng.below(DAY as u64) as i64,
            operation: OperationType::Payment,
            amount: eur(amount),
            hpan: [1 + rng.below(2) as u8; 32],
            acquirer_id: "ACQ".into(),
            merchant_id: format!("M{}", rng.below(3)),
            terminal_id: format!("T{}", rng.below(2)),
            correlation_id: None,
        };
        if rng.chance(60) {
            p.correlation_id = Some(format!("C{}", rng.below(n)));
        }
        // Refunds of this payment.
        let refunds = match rng.below(10) {
            0..=5 => 0,
            6 | 7 => 1,
            _ => 1 + rng.below(3),
        };
        for _ in 0..refunds {
            let r_amount = if rng.chance(50) { amount } else { rng.below(amount as u64 + 2) as i64 };
            let r_at = at + rng.below(2 * DAY as u64 / MINUTE as u64) as i64 * MINUTE - 10 * MINUTE;
            let mut r = TrxInput {
                key: key(rng.next()),
                at_us: r_at,
                received_us: r_at + rng.below(DAY as u64) as i64,
                operation: OperationType::Reversal,
                amount: eur(r_amount),
                ..p.clone()
            };
            if rng.chance(30) {
                r.correlation_id = None;
            }
            rows.push(r);
        }
        rows.push(p);
    }
    // Orphan reversals.
    for _ in 0..rng.below(3) {
        let mut r = rows[rng.below(rows.len() as u64) as usize].clone();
        r.key = key(rng.next());
        r.operation = OperationType::Reversal;
        r.amount = eur(rng.below(20_000) as i64);
        rows.push(r);
    }
    rows
}

fn random_period(rng: &mut Rng) -> AwardPeriod {
    let mut p = semester();
    p.min_transaction_number = 1 + rng.below(20) as u32;
    p.cashback_percentage = [10, 5, 7, 100, 0][rng.below(5) as usize];
    p.max_period_cashback = eur([15_000, 3_000, 0, 1_234][rng.below(4) as usize]);
    p
}

fn random_rules(rng: &mut Rng) -> ScoringRules {
    ScoringRules {
        min_amount: rng.chance(30).then(|| eur(rng.below(2_000) as i64)),
        max_payments_per_merchant_day: rng.chance(30).then(|| rng.below(4) as u32),
        ..ScoringRules::default()
    }
}

/// The result with its per-row outcomes keyed by row key (independent of the input order).
fn canonical_result(rows: &[TrxInput], r: &CitizenPeriodResult) -> (CitizenPeriodResult, Vec<(TrxKey, RowOutcome)>) {
    let mut by_key: Vec<(TrxKey, RowOutcome)> = rows.iter().map(|t| t.key).zip(r.rows.iter().copied()).collect();
    by_key.sort_by_key(|(k, _)| *k);
    (CitizenPeriodResult { rows: Vec::new(), ..r.clone() }, by_key)
}

fn check_invariants(period: &AwardPeriod, rows: &[TrxInput], r: &CitizenPeriodResult) {
    let cap = period.max_period_cashback;
    assert!(!r.cashback.is_negative() && r.cashback <= cap, "cashback {:?} cap {cap:?}", r.cashback);
    assert_eq!(r.cashback, r.score_total.min(cap));
    let mut counted = 0;
    let mut awarded = 0;
    let mut refunded: HashMap<TrxKey, i64> = HashMap::new();
    for (t, o) in rows.iter().zip(&r.rows) {
        match o {
            RowOutcome::Payment(p) => {
                assert!(t.is_payment());
                assert!(!p.net_amount.is_negative() && p.net_amount <= t.amount);
                assert!(!p.awarded.is_negative() && p.awarded <= p.score);
                assert!(p.score <= period.max_transaction_cashback);
                if p.excluded.is_none() {
                    counted += 1;
                    assert_eq!(p.score, score(period, p.net_amount));
                } else {
                    assert_eq!((p.score, p.awarded), (Money::ZERO, Money::ZERO));
                }
                awarded += p.awarded.cents();
            }
            RowOutcome::Reversal(ReversalOutcome::Applied { payment, .. }) => {
                assert!(!t.is_payment());
                *refunded.entry(*payment).or_default() += t.amount.cents();
            }
            RowOutcome::Reversal(ReversalOutcome::Unmatched(_)) => assert!(!t.is_payment()),
        }
    }
    assert_eq!(counted, r.transactions);
    assert_eq!(awarded, r.cashback.cents());
    // What the transaction list shows adds up to the uncapped score.
    let shown: i64 = shown_cashback(period, rows, r).iter().map(|m| m.cents()).sum();
    assert_eq!(shown, r.score_total.cents(), "shown cashback must add up to the score total");
    // Each payment's refunds add up to amount − net: never more than the payment.
    for (t, o) in rows.iter().zip(&r.rows) {
        if let RowOutcome::Payment(p) = o {
            let back = refunded.get(&t.key).copied().unwrap_or(0);
            assert_eq!(back, t.amount.cents() - p.net_amount.cents());
        }
    }
    if let Some(pivot) = r.pivot {
        assert_eq!(r.cashback, cap);
        assert!(pivot.cashback_norm.cents() > 0);
    } else {
        assert!(r.cashback < cap || cap == Money::ZERO);
    }
    assert_eq!(r.min_count_milestone.is_some(), r.transactions >= period.min_transaction_number);
}

#[test]
fn any_arrival_order_gives_the_same_result() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // What the random populations exercised: every kind of outcome must occur.
    let mut seen: HashMap<&'static str, u32> = HashMap::new();
    for case in 0..400 {
        let period = random_period(&mut rng);
        let rules = random_rules(&mut rng);
        let rows = population(&mut rng);
        let reference = evaluate(&period, &rules, &rows);
        check_invariants(&period, &rows, &reference);
        for o in &reference.rows {
            let kind = match o {
                RowOutcome::Payment(p) => p.excluded.map_or("COUNTED", Exclusion::code),
                RowOutcome::Reversal(ReversalOutcome::Applied { total: true, .. }) => "TOTAL",
                RowOutcome::Reversal(ReversalOutcome::Applied { total: false, .. }) => "PARTIAL",
                RowOutcome::Reversal(ReversalOutcome::Unmatched(u)) => u.code(),
            };
            *seen.entry(kind).or_default() += 1;
        }
        if reference.pivot.is_some() {
            *seen.entry("PIVOT").or_default() += 1;
        }
        let expected = canonical_result(&rows, &reference);
        for _ in 0..4 {
            // A shuffled evaluation.
            let mut shuffled = rows.clone();
            rng.shuffle(&mut shuffled);
            let got = evaluate(&period, &rules, &shuffled);
            assert_eq!(canonical_result(&shuffled, &got), expected, "case {case}");
            // Incremental application in random batches (with repeats, ignored).
            let mut state = CitizenPeriodState::new();
            let mut i = 0;
            let mut standing = Standing::default();
            while i < shuffled.len() {
                let n = 1 + rng.below(5) as usize;
                let end = (i + n).min(shuffled.len());
                let mut batch = shuffled[i..end].to_vec();
                if rng.chance(20) {
                    batch.push(shuffled[rng.below(end as u64) as usize].clone());
                }
                let change = state.apply(&period, &rules, batch);
                assert_eq!(change.before, standing);
                standing = change.after;
                let r = state.result();
                check_invariants(&period, state.rows(), r);
                i = end;
            }
            assert_eq!(state.rows().len(), rows.len());
            assert_eq!(canonical_result(state.rows(), state.result()), expected, "case {case}");
        }
    }
    for kind in [
        "COUNTED",
        "ZERO_AMOUNT",
        "FULLY_REVERSED",
        "BELOW_MIN_AMOUNT",
        "MERCHANT_DAILY_LIMIT",
        "TOTAL",
        "PARTIAL",
        "REVERSAL_UNMATCHED",
        "REVERSAL_EXCEEDS_PAYMENT",
        "REVERSAL_ZERO_AMOUNT",
        "PIVOT",
    ] {
        assert!(seen.get(kind).copied().unwrap_or(0) >= 5, "{kind} seen {:?} times: {seen:?}", seen.get(kind));
    }
}

#[test]
fn a_total_reversal_is_as_if_the_payment_never_happened() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for case in 0..300 {
        let period = random_period(&mut rng);
        let rules = random_rules(&mut rng);
        // Payments only, each with its own correlation id.
        let mut rows: Vec<TrxInput> =
            population(&mut rng).into_iter().filter(TrxInput::is_payment).filter(|p| p.amount.cents() > 0).collect();
        for (i, p) in rows.iter_mut().enumerate() {
            p.correlation_id = Some(format!("U{i}"));
        }
        let victim = rng.below(rows.len() as u64) as usize;
        let before = evaluate(&period, &rules, &rows);
        // Refund it in one or several parts.
        let mut refunded = rows.clone();
        let total = rows[victim].amount.cents();
        let part = if rng.chance(50) { total } else { rng.below(total as u64) as i64 };
        for (j, amount) in [part, total - part].into_iter().enumerate() {
            if amount > 0 {
                let mut r = rows[victim].clone();
                r.operation = OperationType::Reversal;
                r.key = key(u64::MAX - j as u64);
                r.amount = eur(amount);
                r.at_us += (j as i64 + 1) * MINUTE;
                refunded.push(r);
            }
        }
        let without: Vec<TrxInput> =
            rows.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, t)| t.clone()).collect();
        let after = evaluate(&period, &rules, &refunded);
        let expected = evaluate(&period, &rules, &without);
        assert_eq!(
            (
                after.cashback,
                after.score_total,
                after.transactions,
                after.last_counted_us,
                after.pivot,
                after.min_count_milestone
            ),
            (
                expected.cashback,
                expected.score_total,
                expected.transactions,
                expected.last_counted_us,
                expected.pivot,
                expected.min_count_milestone
            ),
            "case {case}"
        );
        // ... and it removed exactly what the payment earned (when the payment counted).
        if let RowOutcome::Payment(p) = before.rows[victim]
            && p.excluded.is_none()
            && rules.max_payments_per_merchant_day.is_none()
        {
            assert_eq!(after.score_total.cents(), before.score_total.cents() - p.score.cents(), "case {case}");
            assert_eq!(after.transactions, before.transactions - 1, "case {case}");
        }
    }
}

#[test]
fn a_partial_refund_is_as_if_the_payment_were_smaller() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for case in 0..300 {
        let period = random_period(&mut rng);
        let rules = ScoringRules::default();
        let mut rows: Vec<TrxInput> =
            population(&mut rng).into_iter().filter(TrxInput::is_payment).filter(|p| p.amount.cents() > 1).collect();
        if rows.is_empty() {
            continue;
        }
        for (i, p) in rows.iter_mut().enumerate() {
            p.correlation_id = Some(format!("U{i}"));
        }
        let victim = rng.below(rows.len() as u64) as usize;
        let refund = 1 + rng.below(rows[victim].amount.cents() as u64 - 1) as i64;
        let mut with_refund = rows.clone();
        let mut r = rows[victim].clone();
        r.operation = OperationType::Reversal;
        r.key = key(u64::MAX);
        r.amount = eur(refund);
        with_refund.push(r);
        let mut smaller = rows.clone();
        smaller[victim].amount = eur(rows[victim].amount.cents() - refund);
        let a = evaluate(&period, &rules, &with_refund);
        let b = evaluate(&period, &rules, &smaller);
        assert_eq!(
            (a.cashback, a.score_total, a.transactions, a.pivot, a.min_count_milestone),
            (b.cashback, b.score_total, b.transactions, b.pivot, b.min_count_milestone),
            "case {case}"
        );
    }
}

#[test]
fn expiring_held_reversals_does_not_change_totals() {
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    for _ in 0..100 {
        let period = random_period(&mut rng);
        let rules = random_rules(&mut rng);
        let rows = population(&mut rng);
        let mut s = CitizenPeriodState::new();
        s.apply(&period, &rules, rows.clone());
        let before = s.result().clone();
        let now = rows.iter().map(|r| r.received_us).max().unwrap() + rules.reversal_retention_us + 1;
        let expired = s.expire(&period, &rules, now);
        let unmatched =
            before.rows.iter().filter(|o| matches!(o, RowOutcome::Reversal(ReversalOutcome::Unmatched(_)))).count();
        assert_eq!(expired.len(), unmatched);
        let after = s.result();
        assert_eq!(
            (after.cashback, after.transactions, after.last_counted_us, after.pivot, after.min_count_milestone),
            (before.cashback, before.transactions, before.last_counted_us, before.pivot, before.min_count_milestone)
        );
    }
}

#[test]
fn shown_cashback_of_partial_then_total_refund() {
    // docs/rules.md, "Cashback shown per row": €200 (+€15), refund €40 (€0), refund €160 (−€15).
    let rows = vec![
        corr(rev(3, 2 * DAY / MINUTE, 16_000), "C"),
        corr(pay(1, 0, 20_000), "C"),
        corr(rev(2, DAY / MINUTE, 4_000), "C"),
    ];
    let r = run(&rows);
    assert_eq!((r.cashback, r.transactions), (Money::ZERO, 0));
    assert_eq!(shown_cashback(&semester(), &rows, &r), vec![eur(-1_500), eur(1_500), Money::ZERO]);
    // An anti-abuse exclusion shows 0 on the payment and on its refunds.
    let rules = ScoringRules { min_amount: Some(eur(50_000)), ..ScoringRules::default() };
    let r = evaluate(&semester(), &rules, &rows[1..]);
    assert_eq!(shown_cashback(&semester(), &rows[1..], &r), vec![Money::ZERO, Money::ZERO]);
}
