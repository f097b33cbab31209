//! The Super Cashback rankings, live in memory.
//!
//! The store keeps each citizen's totals per award period and a change feed of standings
//! (`Store::standing_changes`, by increasing `seq`). A [`RankingBoard`] holds one
//! [`Ranking`] per period and the last `seq` it applied:
//!
//! * the first load reads the whole feed in pages and builds each period with one sort
//!   ([`Ranking::build`], on a blocking thread); until it is done [`RankingBoard::ready`] is
//!   false and the ranking endpoints answer 503 + `Retry-After`;
//! * later catch-ups read the feed after the applied `seq` and apply each change (enabled →
//!   `update`, disabled → `remove`), one page under one short write lock;
//! * catch-ups are serialised (a tokio mutex); readers take a std `RwLock` and never hold it
//!   across an `await`.
//!
//! `cashback serve` runs [`RankingBoard::run_refresher`] (every `refresh`), and the acquirer
//! upload triggers a catch-up as soon as a file is stored. A handler that read totals newer than
//! the board ([`RankingBoard::catch_up_to`]) waits for a catch-up, at most `read_wait`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use cashback_domain::AwardPeriod;
use cashback_domain::ranking::{CitizenId, Ranking, is_awarded};
use cashback_domain::scoring::Standing;
use cashback_store::{RankingSnapshot, StandingUpdate, Store, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::dto::timestamp;

/// Knobs of the in-memory rankings (`[ranking]` in the configuration file).
#[derive(Debug, Clone)]
pub struct RankingConfig {
    /// How often the background task reads the change feed.
    pub refresh: Duration,
    /// Changes read per store call.
    pub page_rows: u32,
    /// How long a request waits for the board to catch up with totals it has just read.
    pub read_wait: Duration,
}

impl Default for RankingConfig {
    fn default() -> Self {
        Self { refresh: Duration::from_millis(250), page_rows: 100_000, read_wait: Duration::from_secs(2) }
    }
}

/// Per-period rankings plus the last applied change (module docs).
pub struct RankingBoard {
    config: RankingConfig,
    periods: RwLock<HashMap<i64, Ranking>>,
    applied_seq: AtomicI64,
    ready: AtomicBool,
    catching_up: tokio::sync::Mutex<()>,
}

/// One entry of a first load: a citizen's latest state in a period.
#[derive(Clone, Copy)]
struct Entry {
    citizen: CitizenId,
    standing: Standing,
    enabled: bool,
}

impl RankingBoard {
    pub fn new(config: RankingConfig) -> Self {
        Self {
            config: RankingConfig { page_rows: config.page_rows.max(1), ..config },
            periods: RwLock::new(HashMap::new()),
            applied_seq: AtomicI64::new(0),
            ready: AtomicBool::new(false),
            catching_up: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &RankingConfig {
        &self.config
    }

    /// Whether the first full load is done.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The `seq` of the last change applied.
    pub fn applied_seq(&self) -> i64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Read access to every period's ranking. Do not hold it across an `await`.
    pub fn read(&self) -> RwLockReadGuard<'_, HashMap<i64, Ranking>> {
        self.periods.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the change feed after the applied `seq` until it is exhausted and applies it (the
    /// first call loads everything). Returns the number of changes read.
    pub async fn catch_up(&self, store: &dyn Store) -> Result<u64, StoreError> {
        self.catch_up_with(|after, limit| store.standing_changes(after, limit)).await
    }

    /// [`RankingBoard::catch_up`] with the feed read by `fetch(after_seq, limit)`.
    pub async fn catch_up_with<F, Fut>(&self, fetch: F) -> Result<u64, StoreError>
    where
        F: FnMut(i64, u32) -> Fut,
        Fut: Future<Output = Result<Vec<StandingUpdate>, StoreError>>,
    {
        self.catch_up_until(fetch, None).await
    }

    /// A catch-up; with `target`, none when a catch-up that ran meanwhile already reached it
    /// (requests waiting for the same file do not each read the feed again).
    async fn catch_up_until<F, Fut>(&self, mut fetch: F, target: Option<i64>) -> Result<u64, StoreError>
    where
        F: FnMut(i64, u32) -> Fut,
        Fut: Future<Output = Result<Vec<StandingUpdate>, StoreError>>,
    {
        let _serial = self.catching_up.lock().await;
        if !self.ready() {
            return self.full_load(fetch).await;
        }
        if target.is_some_and(|t| self.applied_seq() >= t) {
            return Ok(0);
        }
        let started = Instant::now();
        let limit = self.config.page_rows;
        let mut read = 0u64;
        loop {
            let page = fetch(self.applied_seq(), limit).await?;
            let Some(last) = page.last().map(|u| u.seq) else { break };
            {
                let mut periods = self.periods.write().unwrap_or_else(|e| e.into_inner());
                for u in &page {
                    let ranking = periods.entry(u.award_period_id).or_default();
                    if u.enabled {
                        ranking.update(u.citizen_id, u.standing);
                    } else {
                        ranking.remove(u.citizen_id);
                    }
                }
                self.applied_seq.store(last, Ordering::Release);
            }
            read += page.len() as u64;
            if page.len() < limit as usize {
                break;
            }
        }
        if read > 0 {
            metrics::counter!("cashback_ranking_changes_total").increment(read);
            metrics::histogram!("cashback_ranking_catch_up_seconds").record(started.elapsed().as_secs_f64());
            metrics::gauge!("cashback_ranking_applied_seq").set(self.applied_seq() as f64);
        }
        Ok(read)
    }

    /// The first load: the whole feed, then one `Ranking::build` per period.
    async fn full_load<F, Fut>(&self, mut fetch: F) -> Result<u64, StoreError>
    where
        F: FnMut(i64, u32) -> Fut,
        Fut: Future<Output = Result<Vec<StandingUpdate>, StoreError>>,
    {
        let started = Instant::now();
        let limit = self.config.page_rows;
        let mut per_period: HashMap<i64, Vec<Entry>> = HashMap::new();
        let mut after = self.applied_seq();
        let mut read = 0u64;
        loop {
            let page = fetch(after, limit).await?;
            let Some(last) = page.last().map(|u| u.seq) else { break };
            for u in &page {
                per_period.entry(u.award_period_id).or_default().push(Entry {
                    citizen: u.citizen_id,
                    standing: u.standing,
                    enabled: u.enabled,
                });
            }
            after = last;
            read += page.len() as u64;
            if page.len() < limit as usize {
                break;
            }
        }
        let built = tokio::task::spawn_blocking(move || {
            per_period.into_iter().map(|(id, entries)| (id, build_period(&entries))).collect::<HashMap<_, _>>()
        })
        .await
        .map_err(|e| StoreError::Other(format!("building the rankings: {e}")))?;
        let participants: usize = built.values().map(Ranking::len).sum();
        {
            let mut periods = self.periods.write().unwrap_or_else(|e| e.into_inner());
            *periods = built;
            self.applied_seq.store(after, Ordering::Release);
            self.ready.store(true, Ordering::Release);
        }
        metrics::gauge!("cashback_ranking_applied_seq").set(after as f64);
        tracing::info!(
            changes = read,
            participants,
            seq = after,
            ms = started.elapsed().as_millis() as u64,
            "rankings loaded"
        );
        Ok(read)
    }

    /// Make sure changes up to `seq` are applied: a catch-up (in a task of its own, so a
    /// request that gives up does not cut it short) awaited at most `read_wait`. Returns whether
    /// the board reached `seq`.
    pub async fn catch_up_to(self: &Arc<Self>, store: &Arc<dyn Store>, seq: i64) -> bool {
        if self.applied_seq() >= seq {
            return true;
        }
        let board = self.clone();
        let store = store.clone();
        let task = tokio::spawn(async move {
            board.catch_up_until(|after, limit| store.standing_changes(after, limit), Some(seq)).await
        });
        match tokio::time::timeout(self.config.read_wait, task).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "ranking catch-up failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "ranking catch-up task failed"),
            Err(_) => tracing::warn!(
                seq,
                applied = self.applied_seq(),
                "ranking catch-up still running; answering with the current board"
            ),
        }
        self.applied_seq() >= seq
    }

    /// Start a catch-up now without waiting for it (after an acquirer file is stored).
    pub fn trigger(self: &Arc<Self>, store: Arc<dyn Store>) {
        let board = self.clone();
        tokio::spawn(async move {
            if let Err(e) = board.catch_up(&*store).await {
                tracing::warn!(error = %e, "ranking catch-up failed");
            }
        });
    }

    /// The background loop of `cashback serve`: a catch-up every `refresh` (failures are logged,
    /// at most one warning every 30 s, and retried at the next tick).
    pub async fn run_refresher(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut tick = tokio::time::interval(self.config.refresh.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_warning: Option<Instant> = None;
        loop {
            tick.tick().await;
            if let Err(e) = self.catch_up(&*store).await
                && last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(30))
            {
                tracing::warn!(error = %e, ready = self.ready(), "refreshing the rankings failed");
                last_warning = Some(Instant::now());
            }
        }
    }
}

/// A period's ranking from its entries in feed order: the last entry of a citizen wins.
fn build_period(entries: &[Entry]) -> Ranking {
    let mut ranking = Ranking::build(entries.iter().filter(|e| e.enabled).map(|e| (e.citizen, e.standing)));
    if entries.iter().any(|e| !e.enabled) {
        // A citizen whose last entry is disabled is out.
        let max = entries.iter().map(|e| e.citizen as usize).max().unwrap_or(0);
        let mut seen = vec![0u64; max / 64 + 1];
        for e in entries.iter().rev() {
            let (word, bit) = (e.citizen as usize / 64, 1u64 << (e.citizen % 64));
            if seen[word] & bit == 0 {
                seen[word] |= bit;
                if !e.enabled {
                    ranking.remove(e.citizen);
                }
            }
        }
    }
    ranking
}

/// How many ranked citizens have at least `count` counted payments (ranks are by count first).
pub fn count_at_least(r: &Ranking, count: u32) -> u32 {
    let (mut lo, mut hi) = (0u32, r.len() as u32);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if r.at(mid).is_some_and(|x| x.standing.count >= count) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// How many ranked citizens would win the period's Super Cashback ([`is_awarded`]).
pub fn awarded(r: &Ranking, period: &AwardPeriod) -> u32 {
    // Awarded ranks form a prefix: rank ≤ minPosition and count ≥ minimum, counts decreasing.
    let (mut lo, mut hi) = (0u32, (r.len() as u32).min(period.min_position));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if r.at(mid).is_some_and(|x| is_awarded(period, mid, x.standing)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Buckets of the operator's distribution of counted payments.
pub const DISTRIBUTION: [(u32, Option<u32>); 7] =
    [(0, Some(0)), (1, Some(9)), (10, Some(49)), (50, Some(99)), (100, Some(199)), (200, Some(499)), (500, None)];

/// The operators' view of one period's ranking. No fiscal codes: citizens by number.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRankingView {
    pub award_period_id: i64,
    /// Citizens ranked.
    pub participants: u32,
    /// Counted payments of rank 1.
    pub top_count: u32,
    /// Counted payments at position `minPosition` (or the last one when fewer are ranked).
    pub count_at_n: u32,
    pub min_position: u32,
    /// The period's minimum count for the Super Cashback.
    pub min_transaction_number: u32,
    /// Ranked citizens who would win the Super Cashback now (rank ≤ minPosition and count ≥
    /// minTransactionNumber).
    pub awarded: u32,
    /// Citizens by counted payments.
    pub distribution: Vec<DistributionBucket>,
    pub top: Vec<TopEntry>,
}

#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct DistributionBucket {
    pub from: u32,
    /// Inclusive; absent for the open last bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    pub citizens: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopEntry {
    pub rank: u32,
    /// The store's citizen number (not the fiscal code).
    pub citizen_id: u32,
    pub transaction_number: u32,
    /// Instant of the latest counted payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transaction: Option<String>,
}

/// The view of `period` from a ranking (`None`: nobody ranked yet).
pub fn operator_view_of(ranking: Option<&Ranking>, period: &AwardPeriod, top: usize) -> OperatorRankingView {
    let empty = Ranking::new();
    let r = ranking.unwrap_or(&empty);
    let summary = r.summary(period.min_position);
    let distribution = DISTRIBUTION
        .iter()
        .map(|&(from, to)| {
            let upto = to.map_or(0, |t| count_at_least(r, t + 1));
            DistributionBucket { from, to, citizens: count_at_least(r, from) - upto }
        })
        .collect();
    let top = r
        .top(top)
        .map(|x| TopEntry {
            rank: x.rank,
            citizen_id: x.citizen,
            transaction_number: x.standing.count,
            last_transaction: x.standing.last_us.and_then(instant_of_us).map(timestamp),
        })
        .collect();
    OperatorRankingView {
        award_period_id: period.id,
        participants: summary.participants,
        top_count: summary.top_count,
        count_at_n: summary.count_at_n,
        min_position: period.min_position,
        min_transaction_number: period.min_transaction_number,
        awarded: awarded(r, period),
        distribution,
        top,
    }
}

/// The view of `period` from the board.
pub fn operator_view(board: &RankingBoard, period: &AwardPeriod, top: usize) -> OperatorRankingView {
    let periods = board.read();
    operator_view_of(periods.get(&period.id), period, top)
}

/// Whether a period's ranking gets a daily snapshot on `today` (the civil date in Italy, the
/// award periods' "today"): from its first day to the last day of its grace period.
pub fn snapshot_due(period: &AwardPeriod, today: time::Date) -> bool {
    period.start <= today && today <= period.grace_end()
}

/// The snapshots of every period open at `now` ([`snapshot_due`] on the Italian date), dated
/// the UTC day of `now` (the console's days are UTC), from the board's operator view. Empty
/// while the board is not loaded.
pub fn ranking_snapshots(
    board: &RankingBoard,
    periods: &[AwardPeriod],
    now: time::OffsetDateTime,
) -> Vec<RankingSnapshot> {
    if !board.ready() {
        return Vec::new();
    }
    let today = cashback_domain::calendar::rome_date(now);
    let day = now.to_offset(time::UtcOffset::UTC).date();
    let rankings = board.read();
    periods
        .iter()
        .filter(|p| snapshot_due(p, today))
        .map(|p| {
            let v = operator_view_of(rankings.get(&p.id), p, 0);
            RankingSnapshot {
                award_period_id: p.id,
                day,
                participants: u64::from(v.participants),
                count_at_n: v.count_at_n,
                top_count: v.top_count,
                awarded: v.awarded,
                recorded_at: now,
            }
        })
        .collect()
}

/// Record [`ranking_snapshots`] (one per open period and UTC day: a later one of the same day
/// replaces it). Returns how many were recorded.
pub async fn record_ranking_snapshots(
    board: &RankingBoard,
    store: &dyn Store,
    periods: &[AwardPeriod],
    now: time::OffsetDateTime,
) -> Result<usize, StoreError> {
    let snapshots = ranking_snapshots(board, periods, now);
    for s in &snapshots {
        store.record_ranking_snapshot(s).await?;
    }
    Ok(snapshots.len())
}

pub(crate) fn instant_of_us(us: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(count: u32, last: i64) -> Standing {
        Standing { count, last_us: Some(last) }
    }

    fn period(min_position: u32, min_trx: u32) -> AwardPeriod {
        let mut p = cashback_domain::period::default_programme().remove(1);
        p.min_position = min_position;
        p.min_transaction_number = min_trx;
        p
    }

    #[test]
    fn first_load_keeps_each_citizens_last_entry() {
        let e = |citizen, count, enabled| Entry { citizen, standing: s(count, 1), enabled };
        let r =
            build_period(&[e(1, 5, true), e(2, 3, true), e(1, 7, true), e(2, 3, false), e(3, 1, false), e(3, 2, true)]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.standing(1), Some(s(7, 1)));
        assert_eq!(r.standing(2), None);
        assert_eq!(r.standing(3), Some(s(2, 1)));
        r.check_invariants();
    }

    fn upd(seq: i64, period: i64, citizen: CitizenId, count: u32, enabled: bool) -> StandingUpdate {
        StandingUpdate { seq, award_period_id: period, citizen_id: citizen, enabled, standing: s(count, seq) }
    }

    /// Reads pages of `feed` like `Store::standing_changes`, counting the calls.
    fn reader(
        feed: &std::sync::Mutex<Vec<StandingUpdate>>,
        calls: &std::sync::atomic::AtomicUsize,
    ) -> impl FnMut(i64, u32) -> std::future::Ready<Result<Vec<StandingUpdate>, StoreError>> {
        move |after, limit| {
            calls.fetch_add(1, Ordering::Relaxed);
            let page = feed.lock().unwrap().iter().filter(|u| u.seq > after).take(limit as usize).copied().collect();
            std::future::ready(Ok(page))
        }
    }

    #[tokio::test]
    async fn first_load_then_incremental_catch_ups() {
        let board = RankingBoard::new(RankingConfig { page_rows: 2, ..Default::default() });
        let feed = std::sync::Mutex::new(vec![
            upd(1, 1, 10, 5, true),
            upd(2, 1, 11, 7, true),
            upd(4, 1, 12, 1, false),
            upd(5, 2, 10, 3, true),
            upd(6, 1, 13, 2, true),
        ]);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        assert!(!board.ready());
        assert_eq!(board.catch_up_with(reader(&feed, &calls)).await.unwrap(), 5);
        assert!(board.ready());
        assert_eq!(board.applied_seq(), 6);
        // Pages of 2: 2 + 2 + 1 (a short page ends the loop).
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        {
            let r = board.read();
            assert_eq!(r[&1].len(), 3);
            assert_eq!((r[&1].rank(11), r[&1].rank(10), r[&1].rank(13)), (Some(1), Some(2), Some(3)));
            assert_eq!(r[&2].rank(10), Some(1));
        }
        // Nothing new: one call, nothing applied; a target already reached: no call at all.
        assert_eq!(board.catch_up_with(reader(&feed, &calls)).await.unwrap(), 0);
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        assert_eq!(board.catch_up_until(reader(&feed, &calls), Some(6)).await.unwrap(), 0);
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        feed.lock().unwrap().extend([upd(7, 1, 11, 0, false), upd(8, 1, 13, 9, true), upd(9, 3, 1, 1, true)]);
        assert_eq!(board.catch_up_with(reader(&feed, &calls)).await.unwrap(), 3);
        assert_eq!(board.applied_seq(), 9);
        let r = board.read();
        assert_eq!(r[&1].len(), 2);
        assert_eq!((r[&1].rank(13), r[&1].rank(10), r[&1].rank(11)), (Some(1), Some(2), None));
        assert_eq!(r[&3].len(), 1);
        r[&1].check_invariants();
    }

    #[tokio::test]
    async fn a_failed_first_load_leaves_the_board_not_ready() {
        let board = RankingBoard::new(RankingConfig::default());
        let err = board.catch_up_with(|_, _| std::future::ready(Err(StoreError::Unavailable("down".into())))).await;
        assert!(err.is_err());
        assert!(!board.ready());
        assert_eq!(board.applied_seq(), 0);
    }

    #[test]
    fn counts_and_awards() {
        let r = Ranking::build([(1, s(60, 1)), (2, s(50, 2)), (3, s(49, 3)), (4, s(10, 4)), (5, s(0, 5))]);
        assert_eq!(count_at_least(&r, 0), 5);
        assert_eq!(count_at_least(&r, 50), 2);
        assert_eq!(count_at_least(&r, 51), 1);
        assert_eq!(count_at_least(&r, 61), 0);
        assert_eq!(awarded(&r, &period(3, 50)), 2);
        assert_eq!(awarded(&r, &period(1, 50)), 1);
        assert_eq!(awarded(&r, &period(0, 50)), 0);
        assert_eq!(awarded(&r, &period(10, 0)), 5);
        assert_eq!(awarded(&Ranking::new(), &period(10, 0)), 0);
    }

    #[tokio::test]
    async fn snapshots_of_open_periods_only() {
        use time::macros::{date, datetime};
        let board = RankingBoard::new(RankingConfig::default());
        let mut running = period(2, 50);
        (running.id, running.start, running.end, running.grace_period_days) =
            (7, date!(2021 - 01 - 01), date!(2021 - 06 - 30), 10);
        let grace = AwardPeriod { id: 8, start: date!(2020 - 12 - 01), end: date!(2021 - 06 - 20), ..running.clone() };
        let over = AwardPeriod { id: 9, end: date!(2021 - 06 - 19), ..grace.clone() };
        let future =
            AwardPeriod { id: 10, start: date!(2021 - 07 - 01), end: date!(2021 - 12 - 31), ..running.clone() };
        let periods = [running.clone(), grace, over, future];
        // 22:30 UTC on 29 June is already 30 June in Italy (the grace of period 8 ends on 30 June;
        // period 9's ended on 29 June); the snapshot is dated by the UTC day.
        let now = datetime!(2021-06-29 22:30 UTC);
        assert!(ranking_snapshots(&board, &periods, now).is_empty(), "board not loaded yet");
        let feed = std::sync::Mutex::new(vec![
            upd(1, 7, 1, 60, true),
            upd(2, 7, 2, 50, true),
            upd(3, 7, 3, 40, true),
            upd(4, 8, 1, 5, true),
        ]);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        board.catch_up_with(reader(&feed, &calls)).await.unwrap();
        let snaps = ranking_snapshots(&board, &periods, now);
        let snap = |id, participants, count_at_n, top_count, awarded| RankingSnapshot {
            award_period_id: id,
            day: date!(2021 - 06 - 29),
            participants,
            count_at_n,
            top_count,
            awarded,
            recorded_at: now,
        };
        assert_eq!(snaps, vec![snap(7, 3, 50, 60, 2), snap(8, 1, 5, 5, 0)]);
        let view = operator_view(&board, &running, 0);
        assert_eq!((u64::from(view.participants), view.count_at_n, view.top_count, view.awarded), (3, 50, 60, 2));
    }

    #[test]
    fn operator_view_buckets_and_top() {
        let r = Ranking::build([(1, s(600, 1)), (2, s(50, 2)), (3, s(49, 3)), (4, s(1, 4)), (5, Standing::default())]);
        let v = operator_view_of(Some(&r), &period(2, 50), 3);
        assert_eq!((v.participants, v.top_count, v.count_at_n, v.awarded), (5, 600, 50, 2));
        let buckets: Vec<(u32, u32)> = v.distribution.iter().map(|b| (b.from, b.citizens)).collect();
        assert_eq!(buckets, vec![(0, 1), (1, 1), (10, 1), (50, 1), (100, 0), (200, 0), (500, 1)]);
        assert_eq!(v.distribution.iter().map(|b| b.citizens).sum::<u32>(), 5);
        assert_eq!(v.top.iter().map(|t| t.citizen_id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(v.top[0].last_transaction.as_deref(), Some("1970-01-01T00:00:00.000Z"));
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["distribution"][6], serde_json::json!({"from": 500, "citizens": 1}));
        assert_eq!(json["countAtN"], 50);
        let none = operator_view_of(None, &period(2, 50), 3);
        assert_eq!((none.participants, none.top.len()), (0, 0));
    }
}
