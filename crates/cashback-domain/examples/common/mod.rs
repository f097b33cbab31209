//! The synthetic Super Cashback population shared by `ranking_bench` and `ranking_redis_bench`
//! (same seed → same citizens, so the two benches compare like with like).

use std::time::Duration;

use cashback_domain::scoring::Standing;

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 2021-01-01T00:00:00Z in µs, and the semester's length.
pub const START_US: i64 = 1_609_459_200_000_000;
pub const SEMESTER_US: u64 = 181 * 24 * 3_600 * 1_000_000;

/// One citizen's standing. Skewed: most citizens have a few payments, a long tail reaches a few
/// hundred.
pub fn standing(rng: &mut Rng) -> Standing {
    let count = match rng.below(10) {
        0..=3 => rng.below(10),
        4..=7 => rng.below(60),
        8 => rng.below(150),
        _ => rng.below(400),
    } as u32;
    let last_us = (count > 0).then(|| START_US + rng.below(SEMESTER_US) as i64);
    Standing { count, last_us }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}
