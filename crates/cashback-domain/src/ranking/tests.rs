//! Worked example of `docs/rules.md` ("Scoring, reversals and ranking") and property tests
//! against the naive full sort.

use super::*;
use crate::period::default_programme;
use crate::test_rng::Rng;

fn s(count: u32, last_us: Option<i64>) -> Standing {
    Standing { count, last_us }
}

fn order_of(r: &Ranking) -> Vec<CitizenId> {
    r.top(usize::MAX).map(|x| x.citizen).collect()
}

#[test]
fn example_ranking_order_and_awards() {
    let period = AwardPeriod { min_position: 3, ..default_programme()[1].clone() }; // min 50 trx
    // A: 60 trx, last at 10:00; B: 60, last at 09:00; C: 70; D: 60, last at 09:00 but a later
    // citizen id than B; E: 10; F: nothing counted yet.
    let h = 3_600_000_000i64;
    let (a, b, c, d, e, f) = (4, 2, 9, 7, 1, 0);
    let mut r = Ranking::build([
        (a, s(60, Some(10 * h))),
        (b, s(60, Some(9 * h))),
        (c, s(70, Some(12 * h))),
        (d, s(60, Some(9 * h))),
        (e, s(10, Some(h))),
        (f, s(0, None)),
    ]);
    assert_eq!(order_of(&r), vec![c, b, d, a, e, f]);
    assert_eq!([c, b, d, a, e, f].map(|x| r.rank(x).unwrap()), [1, 2, 3, 4, 5, 6]);
    assert_eq!(r.summary(period.min_position), RankingSummary { participants: 6, top_count: 70, count_at_n: 60 });
    assert!(is_awarded(&period, 3, r.standing(d).unwrap()));
    assert!(!is_awarded(&period, 4, r.standing(a).unwrap()));
    // With 1,000 positions, E is in the first 1,000 but under 50 transactions: ranked, not awarded.
    let wide = AwardPeriod { min_position: 1_000, ..period.clone() };
    assert!(!is_awarded(&wide, 5, r.standing(e).unwrap()));
    assert!(is_awarded(&wide, 4, r.standing(a).unwrap()));
    assert!(!is_awarded(&AwardPeriod { min_position: 0, ..period.clone() }, 1, r.standing(c).unwrap()));
    // A's latest payment is refunded: A's last counted payment is now earlier (08:00), 59 trx.
    assert_eq!(r.update(a, s(59, Some(8 * h))), Some(s(60, Some(10 * h))));
    assert_eq!(order_of(&r), vec![c, b, d, a, e, f]);
    // A pays twice more: 61, ahead of B and D.
    r.update(a, s(61, Some(13 * h)));
    assert_eq!(order_of(&r), vec![c, a, b, d, e, f]);
    assert_eq!(r.rank(b), Some(3));
    assert_eq!(r.at(2).map(|x| x.citizen), Some(a));
    assert_eq!(r.summary(10), RankingSummary { participants: 6, top_count: 70, count_at_n: 0 });
    assert_eq!(r.summary(0).count_at_n, 0);
    assert_eq!(r.remove(c), Some(s(70, Some(12 * h))));
    assert_eq!(r.rank(c), None);
    assert_eq!(r.rank(a), Some(1));
    assert_eq!(r.rank(1_000), None);
    assert_eq!(r.at(0), None);
    assert_eq!(r.at(6), None);
    r.check_invariants();
    assert_eq!(Ranking::new().summary(10), RankingSummary::default());
}

#[test]
fn key_encoding_round_trips_and_orders() {
    let cases = [
        (0, s(0, None)),
        (1, s(1, Some(i64::MIN))),
        (2, s(1, Some(-1))),
        (3, s(1, Some(0))),
        (4, s(u32::MAX, Some(1_600_000_000_000_000))),
        (u32::MAX - 1, s(7, Some(i64::MAX - 1))),
    ];
    for (c, st) in cases {
        let k = RankKey::new(c, st);
        assert_eq!((k.citizen(), k.standing()), (c, st));
    }
    let mut keys: Vec<(u32, Standing)> = cases.to_vec();
    keys.sort_by_key(|&(c, st)| RankKey::new(c, st));
    assert_eq!(keys.iter().map(|x| x.0).collect::<Vec<_>>(), naive_order(&cases));
}

/// Few distinct values, so ties on count and on instant are frequent.
fn standing(rng: &mut Rng) -> Standing {
    let count = rng.below(12) as u32;
    let last_us = if count == 0 || rng.below(10) == 0 { None } else { Some(rng.below(8) as i64 - 3) };
    Standing { count, last_us }
}

fn assert_matches_naive(r: &Ranking, truth: &std::collections::BTreeMap<CitizenId, Standing>) {
    r.check_invariants();
    let entries: Vec<(CitizenId, Standing)> = truth.iter().map(|(&c, &s)| (c, s)).collect();
    let naive = naive_order(&entries);
    assert_eq!(r.len(), naive.len());
    assert_eq!(order_of(r), naive);
    for (i, &c) in naive.iter().enumerate() {
        assert_eq!(r.rank(c), Some(i as u32 + 1));
        let at = r.at(i as u32 + 1).unwrap();
        assert_eq!((at.citizen, at.standing), (c, truth[&c]));
    }
    for n in [0u32, 1, 5, 100, 10_000] {
        let sum = r.summary(n);
        assert_eq!(sum.participants as usize, naive.len());
        let pos = (n as usize).min(naive.len());
        assert_eq!(sum.count_at_n, if pos == 0 { 0 } else { truth[&naive[pos - 1]].count });
        assert_eq!(sum.top_count, naive.first().map_or(0, |c| truth[c].count));
    }
}

#[test]
fn random_updates_agree_with_the_naive_sort() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (case, max_chunk) in [2usize, 3, 4, 8, 64, MAX_CHUNK].into_iter().enumerate() {
        let citizens = 40 + rng.below(400) as u32;
        let mut truth = std::collections::BTreeMap::new();
        for c in 0..citizens {
            if rng.below(3) > 0 {
                truth.insert(c, standing(&mut rng));
            }
        }
        let mut r = Ranking::build_with_max_chunk(truth.iter().map(|(&c, &s)| (c, s)), max_chunk);
        assert_matches_naive(&r, &truth);
        for step in 0..3_000 {
            let c = rng.below(u64::from(citizens) + 20) as u32;
            if rng.below(8) == 0 {
                assert_eq!(r.remove(c), truth.remove(&c), "case {case} step {step}");
            } else {
                let st = standing(&mut rng);
                assert_eq!(r.update(c, st), truth.insert(c, st), "case {case} step {step}");
            }
            if step % 97 == 0 {
                assert_matches_naive(&r, &truth);
            }
        }
        assert_matches_naive(&r, &truth);
        // Empty it completely, then refill.
        for c in 0..citizens + 20 {
            assert_eq!(r.remove(c), truth.remove(&c));
        }
        assert!(r.is_empty());
        assert_matches_naive(&r, &truth);
        for c in (0..50).rev() {
            let st = standing(&mut rng);
            r.update(c, st);
            truth.insert(c, st);
        }
        assert_matches_naive(&r, &truth);
        // A rebuild from the same standings gives the same ranking.
        let rebuilt = Ranking::build(truth.iter().map(|(&c, &s)| (c, s)));
        assert_eq!(order_of(&rebuilt), order_of(&r));
    }
}

#[test]
fn build_keeps_the_last_standing_of_a_citizen_given_twice() {
    let r = Ranking::build([(1, s(5, Some(1))), (2, s(3, Some(1))), (1, s(1, Some(1)))]);
    assert_eq!(order_of(&r), vec![2, 1]);
    assert_eq!(r.len(), 2);
    r.check_invariants();
}
