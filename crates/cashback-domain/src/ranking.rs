//! The Super Cashback ranking of one award period, live.
//!
//! Order (rules in `docs/rules.md`, "Scoring, reversals and ranking"):
//! 1. transaction count, descending;
//! 2. instant of the latest counted payment, ascending (who got there first wins); a citizen
//!    with no counted payment comes after everyone with the same count (0);
//! 3. citizen id ascending: the store's numeric citizen id, assigned once at first enrollment in
//!    increasing order, so a tie that survives 1–2 goes to the earlier registrant.
//!
//! Ranks are consecutive: 1, 2, 3, … with no gaps and no shared ranks. Every citizen inserted is
//! ranked, including those under the period's minimum count; [`is_awarded`] says who wins.
//!
//! # Structure
//!
//! Each citizen's position is a 16-byte key ([`RankKey`]): `!count` (32 bits), the latest
//! instant (64 bits, order-preserving), the citizen id (32 bits), so the rank order is the
//! integer order of the keys. The keys live in a sorted list of chunks (at most
//! [`MAX_CHUNK`] keys each) indexed by each chunk's last key, with a Fenwick tree over the chunk
//! sizes. A lookup is a binary search over the chunk index, one inside the chunk and a Fenwick
//! prefix sum: O(log n). An update removes and inserts one key: a memmove inside one chunk
//! plus O(log n). A full rebuild is one `sort_unstable` of the keys. A table indexed by
//! citizen id holds each citizen's current key.

use crate::period::AwardPeriod;
use crate::scoring::Standing;

/// The store's numeric citizen id (dense, assigned in increasing order at first enrollment).
/// `u32::MAX` is reserved.
pub type CitizenId = u32;

/// Most keys in one chunk; a chunk that grows beyond it is split in two.
pub const MAX_CHUNK: usize = 2048;
const ABSENT: u128 = u128::MAX;

/// A citizen's position as one integer: smaller is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RankKey(pub u128);

impl RankKey {
    /// The key of a citizen with this standing. An instant of `i64::MAX` reads as "none".
    pub fn new(citizen: CitizenId, s: Standing) -> RankKey {
        let last = match s.last_us {
            Some(t) => ((t as u64) ^ (1 << 63)).min(u64::MAX - 1),
            None => u64::MAX,
        };
        RankKey((u128::from(!s.count) << 96) | (u128::from(last) << 32) | u128::from(citizen))
    }

    pub fn citizen(self) -> CitizenId {
        self.0 as u32
    }

    pub fn standing(self) -> Standing {
        let last = (self.0 >> 32) as u64;
        Standing {
            count: !((self.0 >> 96) as u32),
            last_us: if last == u64::MAX { None } else { Some((last ^ (1 << 63)) as i64) },
        }
    }
}

/// One ranked citizen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranked {
    pub rank: u32,
    pub citizen: CitizenId,
    pub standing: Standing,
}

/// Figures of a period's ranking (the original's `bpd_ranking_ext`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RankingSummary {
    /// Citizens ranked.
    pub participants: u32,
    /// Count of rank 1 (0 when nobody is ranked).
    pub top_count: u32,
    /// Count at position N, or at the last position when fewer are ranked (0 when nobody is
    /// ranked or N = 0).
    pub count_at_n: u32,
}

/// Fenwick (binary indexed) tree over chunk sizes.
#[derive(Debug, Clone, Default)]
struct Fenwick(Vec<u32>);

impl Fenwick {
    fn build(sizes: impl Iterator<Item = u32>) -> Fenwick {
        let mut t: Vec<u32> = sizes.collect();
        for i in 0..t.len() {
            let j = i | (i + 1);
            if j < t.len() {
                t[j] += t[i];
            }
        }
        Fenwick(t)
    }

    /// Sum of the sizes of chunks `0..i`.
    fn prefix(&self, i: usize) -> u32 {
        let mut sum = 0;
        let mut i = i;
        while i > 0 {
            sum += self.0[i - 1];
            i &= i - 1;
        }
        sum
    }

    fn add(&mut self, i: usize, delta: i32) {
        let mut i = i;
        while i < self.0.len() {
            self.0[i] = self.0[i].wrapping_add_signed(delta);
            i |= i + 1;
        }
    }

    /// The chunk holding the 0-based position `pos` and the position inside it.
    fn select(&self, mut pos: u32) -> (usize, usize) {
        let n = self.0.len();
        let mut idx = 0; // number of chunks entirely before pos
        let mut step = if n == 0 { 0 } else { 1usize << (usize::BITS - 1 - n.leading_zeros()) };
        while step > 0 {
            let next = idx + step;
            if next <= n && self.0[next - 1] <= pos {
                pos -= self.0[next - 1];
                idx = next;
            }
            step >>= 1;
        }
        (idx, pos as usize)
    }
}

/// The live ranking of one period (module docs).
#[derive(Debug, Clone)]
pub struct Ranking {
    by_citizen: Vec<u128>,
    chunks: Vec<Vec<u128>>,
    /// Last key of each chunk.
    lasts: Vec<u128>,
    sizes: Fenwick,
    len: usize,
    max_chunk: usize,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking::new()
    }
}

impl Ranking {
    pub fn new() -> Ranking {
        Ranking::with_max_chunk(MAX_CHUNK)
    }

    fn with_max_chunk(max_chunk: usize) -> Ranking {
        Ranking {
            by_citizen: Vec::new(),
            chunks: Vec::new(),
            lasts: Vec::new(),
            sizes: Fenwick::default(),
            len: 0,
            max_chunk: max_chunk.max(2),
        }
    }

    /// Full rebuild from every citizen's standing (a citizen given twice keeps the last one).
    pub fn build(entries: impl IntoIterator<Item = (CitizenId, Standing)>) -> Ranking {
        Ranking::build_with_max_chunk(entries, MAX_CHUNK)
    }

    fn build_with_max_chunk(entries: impl IntoIterator<Item = (CitizenId, Standing)>, max_chunk: usize) -> Ranking {
        let mut by_citizen: Vec<u128> = Vec::new();
        for (c, s) in entries {
            assert!(c != u32::MAX, "citizen id u32::MAX is reserved");
            let i = c as usize;
            if i >= by_citizen.len() {
                by_citizen.resize(i + 1, ABSENT);
            }
            by_citizen[i] = RankKey::new(c, s).0;
        }
        let mut keys: Vec<u128> = by_citizen.iter().copied().filter(|&k| k != ABSENT).collect();
        keys.sort_unstable();
        let mut r = Ranking::with_max_chunk(max_chunk);
        // Half-full chunks leave room for inserts before a split.
        r.chunks = keys.chunks(r.max_chunk / 2).map(<[u128]>::to_vec).collect();
        drop(keys);
        r.by_citizen = by_citizen;
        r.reindex();
        r
    }

    fn reindex(&mut self) {
        self.lasts = self.chunks.iter().map(|c| *c.last().expect("chunks are never empty")).collect();
        self.sizes = Fenwick::build(self.chunks.iter().map(|c| c.len() as u32));
        self.len = self.chunks.iter().map(Vec::len).sum();
    }

    /// Citizens ranked.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A citizen's current standing, if ranked.
    pub fn standing(&self, citizen: CitizenId) -> Option<Standing> {
        match self.by_citizen.get(citizen as usize) {
            Some(&k) if k != ABSENT => Some(RankKey(k).standing()),
            _ => None,
        }
    }

    /// Index of the chunk that holds (or should receive) `key`; the ranking is not empty.
    fn chunk_of(&self, key: u128) -> usize {
        self.lasts.partition_point(|&m| m < key).min(self.chunks.len() - 1)
    }

    /// A citizen's rank (1 = best), if ranked. O(log n).
    pub fn rank(&self, citizen: CitizenId) -> Option<u32> {
        let key = *self.by_citizen.get(citizen as usize)?;
        if key == ABSENT {
            return None;
        }
        let ci = self.chunk_of(key);
        let pos = self.chunks[ci].binary_search(&key).expect("a ranked citizen's key is in its chunk");
        Some(self.sizes.prefix(ci) + pos as u32 + 1)
    }

    /// The citizen at a rank (1-based), if any. O(log n).
    pub fn at(&self, rank: u32) -> Option<Ranked> {
        if rank == 0 || rank as usize > self.len {
            return None;
        }
        let (ci, pos) = self.sizes.select(rank - 1);
        let key = RankKey(self.chunks[ci][pos]);
        Some(Ranked { rank, citizen: key.citizen(), standing: key.standing() })
    }

    /// The first `n` citizens, best first.
    pub fn top(&self, n: usize) -> impl Iterator<Item = Ranked> + '_ {
        self.chunks.iter().flatten().take(n).enumerate().map(|(i, &k)| {
            let key = RankKey(k);
            Ranked { rank: i as u32 + 1, citizen: key.citizen(), standing: key.standing() }
        })
    }

    /// Participants, the top count and the count at position `n` (the period's `min_position`).
    pub fn summary(&self, n: u32) -> RankingSummary {
        if self.len == 0 {
            return RankingSummary::default();
        }
        let last = (self.len as u32).min(n);
        RankingSummary {
            participants: self.len as u32,
            top_count: self.at(1).map_or(0, |r| r.standing.count),
            count_at_n: self.at(last).map_or(0, |r| r.standing.count),
        }
    }

    /// Sets a citizen's standing (inserting the citizen if new); returns the previous one.
    pub fn update(&mut self, citizen: CitizenId, standing: Standing) -> Option<Standing> {
        assert!(citizen != u32::MAX, "citizen id u32::MAX is reserved");
        let key = RankKey::new(citizen, standing).0;
        let i = citizen as usize;
        if i >= self.by_citizen.len() {
            self.by_citizen.resize(i + 1, ABSENT);
        }
        let old = self.by_citizen[i];
        if old == key {
            return Some(standing);
        }
        if old != ABSENT {
            self.remove_key(old);
        }
        self.insert_key(key);
        self.by_citizen[i] = key;
        (old != ABSENT).then(|| RankKey(old).standing())
    }

    /// Removes a citizen from the ranking; returns the standing it had.
    pub fn remove(&mut self, citizen: CitizenId) -> Option<Standing> {
        let old = *self.by_citizen.get(citizen as usize)?;
        if old == ABSENT {
            return None;
        }
        self.remove_key(old);
        self.by_citizen[citizen as usize] = ABSENT;
        Some(RankKey(old).standing())
    }

    fn insert_key(&mut self, key: u128) {
        self.len += 1;
        if self.chunks.is_empty() {
            self.chunks.push(vec![key]);
            self.reindex();
            return;
        }
        let ci = self.chunk_of(key);
        let chunk = &mut self.chunks[ci];
        let pos = chunk.partition_point(|&k| k < key);
        chunk.insert(pos, key);
        if pos + 1 == chunk.len() {
            self.lasts[ci] = key;
        }
        if chunk.len() > self.max_chunk {
            let tail = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(ci + 1, tail);
            self.reindex();
        } else {
            self.sizes.add(ci, 1);
        }
    }

    fn remove_key(&mut self, key: u128) {
        let ci = self.chunk_of(key);
        let chunk = &mut self.chunks[ci];
        let pos = chunk.binary_search(&key).expect("a ranked citizen's key is in its chunk");
        chunk.remove(pos);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(ci);
            self.reindex();
        } else {
            if pos == chunk.len() {
                self.lasts[ci] = chunk[pos - 1];
            }
            self.sizes.add(ci, -1);
        }
    }

    /// Checks the structure's invariants (tests and debugging): O(n).
    pub fn check_invariants(&self) {
        let mut prev: Option<u128> = None;
        let mut n = 0;
        for (ci, chunk) in self.chunks.iter().enumerate() {
            assert!(!chunk.is_empty() && chunk.len() <= self.max_chunk, "chunk {ci} has {} keys", chunk.len());
            assert_eq!(self.lasts[ci], *chunk.last().unwrap());
            assert_eq!(self.sizes.prefix(ci) as usize, n);
            for &k in chunk {
                assert!(prev.is_none_or(|p| p < k), "keys out of order");
                assert_eq!(self.by_citizen[RankKey(k).citizen() as usize], k);
                prev = Some(k);
                n += 1;
            }
        }
        assert_eq!(n, self.len);
        assert_eq!(self.by_citizen.iter().filter(|&&k| k != ABSENT).count(), n);
    }
}

/// Whether a citizen at `rank` with `standing` wins the period's Super Cashback: among the first
/// `min_position` and with at least `min_transaction_number` counted payments.
pub fn is_awarded(period: &AwardPeriod, rank: u32, standing: Standing) -> bool {
    period.min_position > 0
        && rank >= 1
        && rank <= period.min_position
        && standing.count >= period.min_transaction_number
}

/// The reference order, by a plain comparison sort (for tests): citizen ids best first.
pub fn naive_order(entries: &[(CitizenId, Standing)]) -> Vec<CitizenId> {
    let mut v = entries.to_vec();
    v.sort_by(|(ca, a), (cb, b)| {
        b.count
            .cmp(&a.count)
            .then_with(|| match (a.last_us, b.last_us) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| ca.cmp(cb))
    });
    v.into_iter().map(|(c, _)| c).collect()
}

#[cfg(test)]
mod tests;
