//! The simulation's reference model: the programme's rules written the plain way, apart from
//! the engine (`cashback_domain::scoring`, `ranking`, `award` are not used here), for the rows
//! the simulation generates. What it assumes of them, and checks:
//!
//! * every instant is distinct (so no tie needs the engine's deduplication key or citizen number,
//!   except between citizens with nothing counted, whose rank the checker does not compare);
//! * every reversal carries its payment's correlation id and comes after it.
//!
//! Rules (docs/rules.md): a reversal is applied when what is left of its payment covers it; a
//! payment counts when its net amount is > 0 and at least the period's minimum amount; its score
//! is 10% of min(net, €150) rounded half down, at most €15; scores fill the period cap in time
//! order; ranking by count descending, then the earlier latest counted payment; the award is the
//! capped cashback when the count reaches the minimum, plus the prize within the first N.

use std::collections::HashMap;

/// The period's rules, in cents and counts.
#[derive(Debug, Clone)]
pub struct Rules {
    pub percent: i64,
    pub max_evaluated: i64,
    pub max_transaction_cashback: i64,
    pub max_period_cashback: i64,
    pub min_amount: i64,
    pub min_count: u32,
    pub positions: u32,
    pub prize: i64,
}

/// One eligible row as the simulation sent it.
#[derive(Debug, Clone)]
pub struct Row {
    pub citizen: u32,
    /// Milliseconds since the epoch; distinct across all rows.
    pub at_ms: i64,
    pub reversal: bool,
    pub cents: i64,
    pub correlation: u64,
}

/// What a citizen should see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    pub cashback: i64,
    pub count: u32,
    pub last_ms: Option<i64>,
    /// 1-based; `None` when the citizen has no row.
    pub rank: Option<u32>,
    /// What the close owes: 0 when not eligible.
    pub award: i64,
}

fn score(rules: &Rules, net: i64) -> i64 {
    let x = net.min(rules.max_evaluated) * rules.percent;
    let (q, r) = (x / 100, x % 100);
    let rounded = if r > 50 { q + 1 } else { q };
    rounded.min(rules.max_transaction_cashback)
}

/// Every citizen's expected totals, rank and award.
pub fn expect(rules: &Rules, rows: &[Row]) -> HashMap<u32, Expected> {
    let mut by_citizen: HashMap<u32, Vec<&Row>> = HashMap::new();
    for r in rows {
        by_citizen.entry(r.citizen).or_default().push(r);
    }
    let mut out: HashMap<u32, Expected> = HashMap::new();
    for (citizen, mut rows) in by_citizen {
        rows.sort_by_key(|r| r.at_ms);
        // Net amount of each payment, by correlation id, in time order.
        let mut payments: Vec<(i64, i64)> = Vec::new(); // (at_ms, net)
        let mut by_corr: HashMap<u64, usize> = HashMap::new();
        for r in &rows {
            if r.reversal {
                if let Some(&i) = by_corr.get(&r.correlation)
                    && payments[i].1 >= r.cents
                {
                    payments[i].1 -= r.cents;
                }
            } else {
                by_corr.insert(r.correlation, payments.len());
                payments.push((r.at_ms, r.cents));
            }
        }
        let mut e = Expected::default();
        for (at, net) in payments {
            if net <= 0 || net < rules.min_amount {
                continue;
            }
            e.count += 1;
            e.last_ms = Some(at);
            e.cashback = (e.cashback + score(rules, net)).min(rules.max_period_cashback);
        }
        out.insert(citizen, e);
    }
    // Ranking: count descending, earlier latest counted payment first; nothing counted last.
    let mut order: Vec<(u32, u32, i64)> =
        out.iter().map(|(&c, e)| (c, e.count, e.last_ms.unwrap_or(i64::MAX))).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    for (i, (c, _, _)) in order.iter().enumerate() {
        let e = out.get_mut(c).expect("ranked citizen");
        let rank = i as u32 + 1;
        e.rank = Some(rank);
        if e.count >= rules.min_count {
            e.award = e.cashback + if rank <= rules.positions { rules.prize } else { 0 };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            percent: 10,
            max_evaluated: 15_000,
            max_transaction_cashback: 1_500,
            max_period_cashback: 15_000,
            min_amount: 0,
            min_count: 2,
            positions: 1,
            prize: 150_000,
        }
    }

    fn pay(citizen: u32, at_ms: i64, cents: i64, correlation: u64) -> Row {
        Row { citizen, at_ms, reversal: false, cents, correlation }
    }

    fn refund(citizen: u32, at_ms: i64, cents: i64, correlation: u64) -> Row {
        Row { citizen, at_ms, reversal: true, cents, correlation }
    }

    #[test]
    fn the_worked_examples_of_the_rules() {
        // €200 refunded €40 still counts €150; refunded the rest it is gone.
        let e = expect(&rules(), &[pay(1, 1, 20_000, 9), refund(1, 2, 4_000, 9)]);
        assert_eq!((e[&1].cashback, e[&1].count), (1_500, 1));
        let e = expect(&rules(), &[pay(1, 1, 20_000, 9), refund(1, 2, 4_000, 9), refund(1, 3, 16_000, 9)]);
        assert_eq!((e[&1].cashback, e[&1].count, e[&1].last_ms), (0, 0, None));
        // A second reversal larger than what is left is not applied.
        let e = expect(&rules(), &[pay(1, 1, 5_000, 9), refund(1, 2, 5_000, 9), refund(1, 3, 5_000, 9)]);
        assert_eq!(e[&1].count, 0);
        // Round half down: 100.5 cents → 100, 100.6 → 101.
        assert_eq!(score(&rules(), 1_005), 100);
        assert_eq!(score(&rules(), 1_006), 101);
        // The cap fills in time order.
        let rows: Vec<Row> = (0..12).map(|i| pay(2, i, 15_000, i as u64)).collect();
        let e = expect(&rules(), &rows);
        assert_eq!((e[&2].cashback, e[&2].count), (15_000, 12));
    }

    #[test]
    fn ranking_and_awards() {
        let rows = vec![
            pay(1, 10, 1_000, 1),
            pay(1, 20, 1_000, 2),
            pay(2, 11, 1_000, 3),
            pay(2, 15, 1_000, 4),
            pay(3, 5, 1_000, 5),
        ];
        let e = expect(&rules(), &rows);
        // 1 and 2 both have 2; 2's latest (15) is earlier than 1's (20).
        assert_eq!((e[&2].rank, e[&1].rank, e[&3].rank), (Some(1), Some(2), Some(3)));
        assert_eq!(e[&2].award, 200 + 150_000, "first: cashback and prize");
        assert_eq!(e[&1].award, 200, "second: cashback only");
        assert_eq!(e[&3].award, 0, "under the minimum");
    }
}
