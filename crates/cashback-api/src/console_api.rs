//! The read endpoints of the web console: the citizen's own payment instruments (Bearer token)
//! and the operators' views (an `operator` API key): programme figures per day and in total,
//! every acquirer's files, a file's rejected lines, the history of a period's Super Cashback
//! ranking and the payout files. The console's pages (HTML, JS) are served elsewhere.
//!
//! The programme figures scan whole tables (see `cashback_store::console`): they are computed at
//! most once a minute per range and kept in [`ConsoleCache`], so a console polling them never
//! rescans millions of rows more often than that.

use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cashback_domain::AwardPeriod;
use cashback_store::console::{MAX_STATS_DAYS, fill_days};
use cashback_store::{AcquirerFile, AwardStatusCount, DayStats, ProgrammeTotals, StoreError, StoreResult};
use serde::Serialize;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;

use crate::auth::{Citizen, Operator};
use crate::dto::{date, timestamp};
use crate::error::{ApiError, ApiResult, Problem};
use crate::rtd::RejectedLine;
use crate::state::SharedState;
use crate::winning::{Params, period_of};

/// How long the whole-table figures (`/bpd/ops/stats`, the close view's `byStatus`) are reused.
pub const CONSOLE_CACHE_TTL: Duration = Duration::from_secs(60);
/// Answers kept per cached view (distinct ranges or periods asked within a minute).
pub const CONSOLE_CACHE_ENTRIES: usize = 16;
/// Days of `/bpd/ops/stats` when no range is given (ending today, UTC).
pub const STATS_DEFAULT_DAYS: i64 = 30;
/// Files listed when `limit` is not given, and at most.
pub const FILES_DEFAULT: u32 = 50;
pub const FILES_MAX: u32 = 500;
/// Rejected lines listed with one file.
pub const FILE_REJECTIONS_MAX: u32 = 1_000;
/// Ranking snapshots listed (days).
pub const RANKING_HISTORY_MAX: u32 = 400;
/// Payout files listed when `limit` is not given, and at most.
pub const PAYOUT_FILES_DEFAULT: u32 = 50;
pub const PAYOUT_FILES_MAX: u32 = 500;

// ---------------------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------------------

/// A few answers kept for a while, computed one at a time.
///
/// A miss computes the value in a task of its own: a request that gives up (the router's
/// timeout) does not cut a long scan short, and its result serves the next request. Computations
/// are serialised, and a computation re-checks the cache first, so requests arriving together
/// scan once.
pub struct Memo<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<Vec<(K, Instant, V)>>,
    flight: tokio::sync::Mutex<()>,
}

impl<K, V> Memo<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), entries: Mutex::new(Vec::new()), flight: tokio::sync::Mutex::new(()) }
    }

    /// The value of `key` if it was computed less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().find(|(k, at, _)| k == key && at.elapsed() < self.ttl).map(|(_, _, v)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, at, _)| *k != key && at.elapsed() < self.ttl);
        if entries.len() >= self.capacity {
            // The oldest answer goes.
            entries.remove(0);
        }
        entries.push((key, Instant::now(), value));
    }

    /// The cached value of `key`, or `compute()`'s (then cached).
    pub async fn get_or_compute<F, Fut>(self: &Arc<Self>, key: K, compute: F) -> StoreResult<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<V>> + Send + 'static,
    {
        if let Some(v) = self.get(&key) {
            return Ok(v);
        }
        let memo = self.clone();
        tokio::spawn(async move {
            let _one_at_a_time = memo.flight.lock().await;
            if let Some(v) = memo.get(&key) {
                return Ok(v);
            }
            let v = compute().await?;
            memo.put(key, v.clone());
            Ok(v)
        })
        .await
        .map_err(|e| StoreError::Other(format!("console figures task failed: {e}")))?
    }
}

/// The store's answers behind `/bpd/ops/stats` for one range.
#[derive(Debug, Clone)]
pub struct StatsAnswer {
    pub totals: ProgrammeTotals,
    /// The stored days (days without anything are missing).
    pub days: Vec<DayStats>,
}

/// The cached store answers of the console's whole-table views (in [`crate::AppState`]).
pub struct ConsoleCache {
    /// `(from, to)` → the store's answers.
    pub stats: Arc<Memo<(Date, Date), Arc<StatsAnswer>>>,
    /// Award period → its awards by status.
    pub by_status: Arc<Memo<i64, Arc<Vec<AwardStatusCount>>>>,
}

impl Default for ConsoleCache {
    fn default() -> Self {
        Self {
            stats: Arc::new(Memo::new(CONSOLE_CACHE_TTL, CONSOLE_CACHE_ENTRIES)),
            by_status: Arc::new(Memo::new(CONSOLE_CACHE_TTL, CONSOLE_CACHE_ENTRIES)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

/// `limit`: `default` when absent, else an integer from 1 to `max`.
fn date_param(params: &Params, name: &'static str) -> ApiResult<Option<Date>> {
    params
        .get(name)
        .map(|v| {
            Date::parse(v, time::macros::format_description!("[year]-[month]-[day]"))
                .map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, name, "must be a date, YYYY-MM-DD"))
        })
        .transpose()
}

/// The range of `/bpd/ops/stats`: `from` and `to` (inclusive, UTC days), by default the
/// [`STATS_DEFAULT_DAYS`] days ending today; `from` ≤ `to`, at most [`MAX_STATS_DAYS`] days.
pub fn stats_range(params: &Params, now: OffsetDateTime) -> ApiResult<(Date, Date)> {
    let today = now.to_offset(time::UtcOffset::UTC).date();
    let from = date_param(params, "from")?;
    let to = date_param(params, "to")?;
    let default_span = time::Duration::days(STATS_DEFAULT_DAYS - 1);
    let (from, to) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, today),
        (None, Some(t)) => (t.checked_sub(default_span).unwrap_or(Date::MIN), t),
        (None, None) => (today.checked_sub(default_span).unwrap_or(Date::MIN), today),
    };
    if from > to {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "from", format!("must not be after to ({})", date(to))));
    }
    if (to - from).whole_days() >= MAX_STATS_DAYS {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "to",
            format!("the range from {} is at most {MAX_STATS_DAYS} days", date(from)),
        ));
    }
    Ok((from, to))
}

fn award_period_param(raw: &str) -> ApiResult<i64> {
    raw.trim().parse().map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "awardPeriodId", "must be an integer"))
}

// ---------------------------------------------------------------------------------------------
// Citizen: own instruments
// ---------------------------------------------------------------------------------------------

/// One of the citizen's payment instruments.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CitizenInstrumentView {
    pub hpan: String,
    /// ACTIVE or INACTIVE.
    pub status: &'static str,
    /// Enrollment channel (`app-io-channel` or an issuer's channel).
    pub channel: String,
    /// Start of the current (or last) activation, UTC with milliseconds.
    pub activation_date: String,
    /// When it was deactivated (inactive instruments only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivation_date: Option<String>,
}

/// The caller's payment instruments, active and inactive (a card now enrolled by someone else is
/// not listed), most recent activation first, at most 100.
#[utoipa::path(get, path = "/bpd/io/payment-instruments", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = Vec<CitizenInstrumentView>), (status = 401, body = Problem)))]
pub async fn io_instruments(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
) -> ApiResult<Json<Vec<CitizenInstrumentView>>> {
    let list = st.store.citizen_instruments(&cf).await?;
    Ok(Json(
        list.iter()
            .map(|i| CitizenInstrumentView {
                hpan: i.hpan.as_str().to_owned(),
                status: i.status.as_str(),
                channel: i.channel.clone(),
                activation_date: timestamp(i.activation_date),
                deactivation_date: i.deactivation_date.map(timestamp),
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Operators: programme figures
// ---------------------------------------------------------------------------------------------

/// The programme's figures now.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotalsView {
    /// Citizens ever enrolled (withdrawn ones included).
    pub citizens: u64,
    /// Citizens enrolled now.
    pub citizens_enabled: u64,
    pub instruments_active: u64,
    /// Instruments ever enrolled.
    pub instruments: u64,
    /// Acquirer files received.
    pub files: u64,
    /// Acquirer transactions stored (eligible or not).
    pub transactions: u64,
}

/// One UTC day.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayView {
    /// YYYY-MM-DD (UTC).
    pub date: String,
    /// Citizens whose enrollment (T&C acceptance) fell on the day.
    pub citizens_enrolled: u64,
    /// Activations on the day (a re-activation counts again).
    pub instruments_activated: u64,
    /// Acquirer files received on the day.
    pub files: u64,
    /// New well-formed rows of those files (eligible and not eligible; duplicates excluded).
    pub rows_accepted: u64,
    /// Malformed rows of those files.
    pub rows_rejected: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsView {
    pub totals: TotalsView,
    /// Every day of the range, oldest first (days without anything have zeros).
    pub days: Vec<DayView>,
}

fn stats_view(totals: &ProgrammeTotals, from: Date, to: Date, stored: &[DayStats]) -> StatsView {
    StatsView {
        totals: TotalsView {
            citizens: totals.citizens,
            citizens_enabled: totals.citizens_enabled,
            instruments_active: totals.instruments_active,
            instruments: totals.instruments,
            files: totals.files,
            transactions: totals.transactions,
        },
        days: fill_days(from, to, stored)
            .into_iter()
            .map(|d| DayView {
                date: date(d.day),
                citizens_enrolled: d.citizens_enrolled,
                instruments_activated: d.instruments_activated,
                files: d.files,
                rows_accepted: d.rows_accepted,
                rows_rejected: d.rows_rejected,
            })
            .collect(),
    }
}

/// Programme totals and figures per UTC day from `from` to `to` (inclusive; default the 30 days
/// ending today, at most 366 days). Computed from whole-table scans and cached for 60 s per
/// range: figures may be up to a minute old. A first computation slower than the request timeout
/// answers 503 but goes on, and a later request gets its result.
#[utoipa::path(get, path = "/bpd/ops/stats", tag = "ops", security(("apiKey" = [])),
    params(("from" = Option<String>, Query, format = Date, description = "YYYY-MM-DD, first day (UTC); at most 366 days before `to`"),
        ("to" = Option<String>, Query, format = Date, description = "YYYY-MM-DD, last day (UTC), default today")),
    responses((status = 200, body = StatsView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn ops_stats(State(st): State<SharedState>, _op: Operator, params: Params) -> ApiResult<Json<StatsView>> {
    let (from, to) = stats_range(&params, st.now())?;
    let store = st.reads.clone();
    let cached = st
        .console
        .stats
        .get_or_compute((from, to), move || async move {
            let totals = store.programme_totals().await?;
            let days = store.daily_stats(from, to).await?;
            Ok(Arc::new(StatsAnswer { totals, days }))
        })
        .await?;
    Ok(Json(stats_view(&cached.totals, from, to, &cached.days)))
}

// ---------------------------------------------------------------------------------------------
// Operators: acquirer files
// ---------------------------------------------------------------------------------------------

/// Row counters of an acquirer file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileCountsView {
    /// New eligible transactions.
    pub accepted: u64,
    /// New well-formed rows that do not count (kept with their reason).
    pub ineligible: u64,
    /// Rows received before (in this or an earlier file).
    pub duplicates: u64,
    /// Malformed rows.
    pub rejected: u64,
}

/// An acquirer file as the operators see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpsFileView {
    pub name: String,
    /// The acquirer's ABI code.
    pub abi: String,
    /// PROCESSING, DONE or FAILED.
    pub status: &'static str,
    pub size: u64,
    /// SHA-256 (hex) of the file as received.
    pub sha256: String,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub counts: FileCountsView,
    /// Why the whole file was refused (FAILED).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rejected lines by line number (one file's view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejections: Option<Vec<RejectedLine>>,
}

impl From<&AcquirerFile> for OpsFileView {
    fn from(f: &AcquirerFile) -> Self {
        OpsFileView {
            name: f.name.clone(),
            abi: f.abi.clone(),
            status: f.status.as_str(),
            size: f.size,
            sha256: f.sha256.clone(),
            received_at: timestamp(f.received_at),
            finished_at: f.finished_at.map(timestamp),
            counts: FileCountsView {
                accepted: f.counts.accepted,
                ineligible: f.counts.ineligible,
                duplicates: f.counts.duplicates,
                rejected: f.counts.rejected,
            },
            error: f.error.clone(),
            rejections: None,
        }
    }
}

/// Every acquirer's files (or one acquirer's, `abi`), most recently received first (`limit`,
/// default 50, at most 500).
#[utoipa::path(get, path = "/bpd/ops/files", tag = "ops", security(("apiKey" = [])),
    params(("abi" = Option<String>, Query, pattern = "^[A-Za-z0-9]{5}$", description = "one acquirer's ABI code (5 letters or digits)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "files listed, default 50, at most 500")),
    responses((status = 200, body = Vec<OpsFileView>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn ops_files(
    State(st): State<SharedState>,
    _op: Operator,
    params: Params,
) -> ApiResult<Json<Vec<OpsFileView>>> {
    let abi = params.get("abi");
    if let Some(abi) = abi
        && !cashback_domain::acquirer::is_abi(abi)
    {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "abi", "must be 5 ASCII letters or digits"));
    }
    let limit = params.limit(FILES_DEFAULT, FILES_MAX)?;
    let files = st.reads.all_acquirer_files(abi, limit).await?;
    Ok(Json(files.iter().map(OpsFileView::from).collect()))
}

/// One acquirer file with its rejected lines (line, field, reason; at most 1000).
#[utoipa::path(get, path = "/bpd/ops/files/{name}", tag = "ops", security(("apiKey" = [])),
    params(("name" = inline(crate::openapi::FileNameSchema), Path, description = "file name")),
    responses((status = 200, body = OpsFileView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn ops_file(
    State(st): State<SharedState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<OpsFileView>> {
    if name.is_empty() || name.len() > 255 {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "name", "must be 1 to 255 characters"));
    }
    let f = st.reads.get_acquirer_file(&name).await?.ok_or_else(|| ApiError::not_found("no file with this name"))?;
    let rejections = st.reads.file_rejections(f.id, FILE_REJECTIONS_MAX).await?;
    let mut view = OpsFileView::from(&f);
    view.rejections =
        Some(rejections.into_iter().map(|r| RejectedLine { line: r.line, field: r.field, reason: r.reason }).collect());
    Ok(Json(view))
}

// ---------------------------------------------------------------------------------------------
// Operators: ranking history, payout files, awards by status
// ---------------------------------------------------------------------------------------------

/// One day's snapshot of a period's live Super Cashback ranking.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RankingDayView {
    /// YYYY-MM-DD (UTC day of the snapshot).
    pub date: String,
    /// Citizens ranked.
    pub participants: u64,
    /// Counted payments at position `minPosition` (or of the last ranked citizen).
    pub count_at_n: u32,
    /// Counted payments of rank 1.
    pub top_count: u32,
    /// Citizens who would have won the Super Cashback that day.
    pub awarded: u32,
}

/// The daily snapshots of a period's ranking (`cashback serve` records one every few minutes
/// while the period runs or is in its grace period; the last one of a day stays), oldest first,
/// the most recent 400 days.
#[utoipa::path(get, path = "/bpd/ops/award-periods/{awardPeriodId}/ranking/history", tag = "ops", security(("apiKey" = [])),
    params(("awardPeriodId" = i64, Path)),
    responses((status = 200, body = Vec<RankingDayView>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn ops_ranking_history(
    State(st): State<SharedState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<RankingDayView>>> {
    let period: AwardPeriod = period_of(&st, award_period_param(&id)?)?;
    let history = st.reads.ranking_history(period.id, RANKING_HISTORY_MAX).await?;
    Ok(Json(
        history
            .iter()
            .map(|s| RankingDayView {
                date: date(s.day),
                participants: s.participants,
                count_at_n: s.count_at_n,
                top_count: s.top_count,
                awarded: s.awarded,
            })
            .collect(),
    ))
}

/// A payout file to the payout agent.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutFileView {
    pub payout_file_id: i64,
    /// The payout run that created it (files of one run share it).
    pub run_id: i64,
    pub name: String,
    /// 1-based chunk number of the run, and the run's number of chunks.
    pub chunk: u32,
    pub total_chunks: u32,
    pub rows: u64,
    pub amount_cents: i64,
    pub created_at: String,
    /// SHA-256 of the plain file, once written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Payout files, newest first (`limit`, default 50, at most 500).
#[utoipa::path(get, path = "/bpd/ops/payout-files", tag = "ops", security(("apiKey" = [])),
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "files listed, default 50, at most 500")),
    responses((status = 200, body = Vec<PayoutFileView>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn ops_payout_files(
    State(st): State<SharedState>,
    _op: Operator,
    params: Params,
) -> ApiResult<Json<Vec<PayoutFileView>>> {
    let limit = params.limit(PAYOUT_FILES_DEFAULT, PAYOUT_FILES_MAX)?;
    let files = st.reads.payout_files(None).await?;
    Ok(Json(
        files
            .iter()
            .rev()
            .take(limit as usize)
            .map(|f| PayoutFileView {
                payout_file_id: f.payout_file_id,
                run_id: f.run_id,
                name: f.name.clone(),
                chunk: f.chunk,
                total_chunks: f.total_chunks,
                rows: f.rows,
                amount_cents: f.amount.cents(),
                created_at: timestamp(f.created_at),
                sha256: f.sha256.clone(),
            })
            .collect(),
    ))
}

/// A period's awards with one status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCountView {
    /// NEW, NOTHING_DUE, SENT, EXECUTED, FAILED or INTEGRATION.
    pub status: String,
    /// Awards of every kind (awards, re-issues, corrections, integrations).
    pub awards: u64,
    pub amount_cents: i64,
}

/// A period's awards by status, by status name, cached for 60 s (see [`ConsoleCache`]).
pub async fn awards_by_status(st: &SharedState, award_period_id: i64) -> ApiResult<Vec<StatusCountView>> {
    let store = st.reads.clone();
    let counts = st
        .console
        .by_status
        .get_or_compute(award_period_id, move || async move {
            Ok(Arc::new(store.award_status_counts(award_period_id).await?))
        })
        .await?;
    Ok(counts
        .iter()
        .map(|c| StatusCountView { status: c.status.clone(), awards: c.awards, amount_cents: c.amount.cents() })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn stats_ranges() {
        let now = datetime!(2021-03-01 23:30 UTC);
        assert_eq!(stats_range(&params(&[]), now).unwrap(), (date!(2021 - 01 - 31), date!(2021 - 03 - 01)));
        // Today is the UTC date, whatever the hour.
        assert_eq!(stats_range(&params(&[]), datetime!(2021-03-01 23:30 -02:00)).unwrap().1, date!(2021 - 03 - 02));
        assert_eq!(
            stats_range(&params(&[("from", "2021-02-27")]), now).unwrap(),
            (date!(2021 - 02 - 27), date!(2021 - 03 - 01))
        );
        assert_eq!(
            stats_range(&params(&[("to", "2020-12-31")]), now).unwrap(),
            (date!(2020 - 12 - 02), date!(2020 - 12 - 31))
        );
        let full = [("from", "2020-01-01"), ("to", "2020-12-31")];
        assert_eq!(stats_range(&params(&full), now).unwrap(), (date!(2020 - 01 - 01), date!(2020 - 12 - 31)));
        let field = |p: &[(&str, &str)]| stats_range(&params(p), now).unwrap_err().field;
        assert_eq!(field(&[("from", "2020-01-01"), ("to", "2021-01-01")]).as_deref(), Some("to"), "367 days");
        assert_eq!(field(&[("from", "2021-01-02"), ("to", "2021-01-01")]).as_deref(), Some("from"));
        assert_eq!(field(&[("from", "yesterday")]).as_deref(), Some("from"));
        assert_eq!(field(&[("to", "2021-02-30")]).as_deref(), Some("to"));
    }

    #[test]
    fn limits() {
        assert_eq!(params(&[]).limit(50, 500).unwrap(), 50);
        assert_eq!(params(&[("limit", "500")]).limit(50, 500).unwrap(), 500);
        for bad in ["0", "501", "-1", "x"] {
            assert_eq!(params(&[("limit", bad)]).limit(50, 500).unwrap_err().field.as_deref(), Some("limit"));
        }
    }

    #[test]
    fn stats_days_are_gap_filled() {
        let stored = [DayStats { files: 2, ..DayStats::empty(date!(2021 - 01 - 02)) }];
        let v = stats_view(&ProgrammeTotals::default(), date!(2021 - 01 - 01), date!(2021 - 01 - 03), &stored);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["days"].as_array().unwrap().len(), 3);
        assert_eq!(
            json["days"][1],
            serde_json::json!({"date": "2021-01-02", "citizensEnrolled": 0, "instrumentsActivated": 0, "files": 2,
                "rowsAccepted": 0, "rowsRejected": 0})
        );
        assert_eq!(json["days"][0]["date"], "2021-01-01");
        assert_eq!(json["totals"]["citizensEnabled"], 0);
    }

    #[tokio::test]
    async fn memo_computes_once_per_key_and_expires() {
        let memo = Arc::new(Memo::<u32, u32>::new(Duration::from_millis(200), 2));
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let compute = |v: u32| {
            let calls = calls.clone();
            move || async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(v)
            }
        };
        assert_eq!(memo.get_or_compute(1, compute(10)).await.unwrap(), 10);
        assert_eq!(memo.get_or_compute(1, compute(11)).await.unwrap(), 10, "cached");
        assert_eq!(memo.get_or_compute(2, compute(20)).await.unwrap(), 20);
        assert_eq!(memo.get_or_compute(3, compute(30)).await.unwrap(), 30);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(memo.get(&1), None, "bounded: the oldest answer went");
        assert_eq!(memo.get(&3), Some(30));
        let err = memo.get_or_compute(4, || async { Err(StoreError::Busy("x".into())) }).await;
        assert!(err.is_err());
        assert_eq!(memo.get(&4), None, "failures are not cached");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(memo.get(&3), None, "expired");
        assert_eq!(memo.get_or_compute(3, compute(31)).await.unwrap(), 31);
    }
}
