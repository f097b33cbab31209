//! The citizen's cashback: the period totals, the Super Cashback ranking with its milestones and
//! the transaction list (contract §4.2/§4.3 for the IO app, §4.5 for the issuers).
//!
//! * Totals come from the store's per-period totals (`Store::citizen_period_totals`), written
//!   when an acquirer file is finished; the cashback is capped at the period maximum.
//! * Ranks come from the in-memory [`crate::ranking::RankingBoard`]. When the totals just read
//!   are newer than the board, the handler waits (bounded) for a catch-up, so a citizen sees the
//!   rank of the totals shown next to it.
//! * Transactions are the rows that count for the citizen in the period
//!   (`Store::citizen_period_rows`), evaluated once by the engine; each row shows
//!   `scoring::shown_cashback` (a reversal: minus what it took away) and reversals a negative
//!   amount. Order: transaction instant, then reception, then row key, newest first; offset
//!   pages (`nextCursor` = page index) grouped by the civil day in Italy.
//!
//! IO calls read the caller's own data only (the fiscal code comes from the token). An unknown
//! or withdrawn citizen gets zeros, `[]` or an empty page from IO (the gateway turned the
//! backend's 404 into `[]`); issuers get the backend's 404 on rankings.

use std::ops::Range;
use std::str::FromStr;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use cashback_domain::scoring::shown_cashback;
use cashback_domain::{AwardPeriod, AwardPeriodStatus, FiscalCode, Hpan, Money, calendar};
use cashback_store::PeriodRow;
use cashback_store::scoring::{PeriodTotals, evaluate_rows};
use time::{Date, OffsetDateTime};

use crate::auth::{Citizen, Issuer};
use crate::core;
use crate::dto::*;
use crate::error::{ApiError, ApiResult, Problem};
use crate::hb::header_str;
use crate::state::SharedState;

/// Transactions per page when `limit` is not given.
pub const PAGE_DEFAULT: u32 = 20;
/// Largest `limit`.
pub const PAGE_MAX: u32 = 100;

// ---------------------------------------------------------------------------------------------
// Query parameters
// ---------------------------------------------------------------------------------------------

/// The query string as name/value pairs: parameters are parsed one by one so that an error names
/// its parameter (problem+json), and unknown ones are ignored.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("query string: {}", e.body_text())))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// Parameters from `(name, value)` pairs, as the query string would give them.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params(pairs)
    }

    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }

    /// `limit`: `default` when absent, else an integer from 1 to `max` (400 naming `limit`).
    pub fn limit(&self, default: u32, max: u32) -> ApiResult<u32> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                ApiError::field(StatusCode::BAD_REQUEST, "limit", format!("must be an integer from 1 to {max}"))
            }),
        }
    }

    fn parse<T: FromStr>(&self, name: &'static str, what: &str) -> ApiResult<Option<T>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, name, what)),
        }
    }

    /// `awardPeriodId`, if given.
    pub fn award_period_id(&self) -> ApiResult<Option<i64>> {
        self.parse("awardPeriodId", "must be an integer")
    }

    fn required_period(&self, st: &SharedState) -> ApiResult<AwardPeriod> {
        let id = self
            .award_period_id()?
            .ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "awardPeriodId", "is required"))?;
        period_of(st, id)
    }

    fn hpan(&self) -> ApiResult<Option<Hpan>> {
        self.get("hpan").map(|h| Hpan::parse(h).map_err(|e| ApiError::from(e.for_field("hpan")))).transpose()
    }

    /// `nextCursor` (the page index, default 0) and `limit` (default 20, 1–100).
    fn page(&self) -> ApiResult<(u32, u32)> {
        let page = self.parse::<u32>("nextCursor", "must be a page index: an integer from 0")?.unwrap_or(0);
        let limit = match self.parse::<i64>("limit", "must be an integer")? {
            None => PAGE_DEFAULT,
            Some(l) if (1..=i64::from(PAGE_MAX)).contains(&l) => l as u32,
            Some(_) => {
                return Err(ApiError::field(StatusCode::BAD_REQUEST, "limit", format!("must be from 1 to {PAGE_MAX}")));
            }
        };
        Ok((page, limit))
    }
}

/// A period by id, or 404.
pub fn period_of(st: &SharedState, id: i64) -> ApiResult<AwardPeriod> {
    st.periods()
        .iter()
        .find(|p| p.id == id)
        .cloned()
        .ok_or_else(|| ApiError::field(StatusCode::NOT_FOUND, "awardPeriodId", "no such award period"))
}

async fn enabled(st: &SharedState, cf: &FiscalCode) -> ApiResult<bool> {
    Ok(st.store.get_citizen(cf).await?.is_some_and(|c| c.enabled))
}

// ---------------------------------------------------------------------------------------------
// Total cashback
// ---------------------------------------------------------------------------------------------

fn totals_resource(period: &AwardPeriod, totals: Option<&PeriodTotals>) -> TotalCashbackResource {
    match totals {
        Some(t) => TotalCashbackResource {
            total_cashback: euros(capped(period, t.cashback)),
            transaction_number: t.transactions,
        },
        None => TotalCashbackResource { total_cashback: euros(Money::ZERO), transaction_number: 0 },
    }
}

fn capped(period: &AwardPeriod, cashback: Money) -> Money {
    cashback.min(Ord::max(period.max_period_cashback, Money::ZERO))
}

/// A citizen's totals in `period`: zeros when unknown, withdrawn or without totals.
pub async fn total_cashback(
    st: &SharedState,
    cf: &FiscalCode,
    period: &AwardPeriod,
) -> ApiResult<TotalCashbackResource> {
    let totals = st.store.enabled_citizen_totals(cf).await?.unwrap_or_default();
    Ok(totals_resource(period, totals.iter().find(|t| t.award_period_id == period.id && t.enabled)))
}

// ---------------------------------------------------------------------------------------------
// Ranking
// ---------------------------------------------------------------------------------------------

/// One period of a citizen's ranking answer.
struct RankingEntry {
    base: CitizenRankingResource,
    period: AwardPeriod,
    totals: Option<PeriodTotals>,
}

impl RankingEntry {
    fn v1(self) -> CitizenRankingResource {
        self.base
    }

    fn v2(self) -> CitizenRankingMilestoneResource {
        let b = self.base;
        let t = self.totals.as_ref();
        CitizenRankingMilestoneResource {
            award_period_id: b.award_period_id,
            ranking: b.ranking,
            total_participants: b.total_participants,
            max_transaction_number: b.max_transaction_number,
            min_transaction_number: b.min_transaction_number,
            transaction_number: b.transaction_number,
            milestone_resource: MilestoneResource {
                id_trx_pivot: t.and_then(|t| t.id_trx_pivot.clone()),
                cashback_norm: t.and_then(|t| t.id_trx_pivot.as_ref().and(t.pivot_cashback)).map(euros),
                id_trx_min_transaction_number: t.and_then(|t| t.id_trx_min_transaction.clone()),
                max_cashback: euros(self.period.max_period_cashback),
                total_cashback: euros(t.map_or(Money::ZERO, |t| capped(&self.period, t.cashback))),
            },
        }
    }
}

/// The periods a ranking answer covers: the one asked (none if unknown), or every period that
/// has started (not INACTIVE today), by id.
fn ranking_periods(st: &SharedState, asked: Option<i64>) -> Vec<AwardPeriod> {
    let today = calendar::rome_date(st.now());
    let mut v: Vec<AwardPeriod> = st
        .periods()
        .iter()
        .filter(|p| match asked {
            Some(id) => p.id == id,
            None => p.status_on(today, true) != AwardPeriodStatus::Inactive,
        })
        .cloned()
        .collect();
    v.sort_by_key(|p| p.id);
    v
}

/// A citizen's ranking in the selected periods; `None` for an unknown or withdrawn citizen.
async fn rankings(st: &SharedState, cf: &FiscalCode, asked: Option<i64>) -> ApiResult<Option<Vec<RankingEntry>>> {
    let Some(totals) = st.store.enabled_citizen_totals(cf).await? else { return Ok(None) };
    let board = &st.ranking;
    if !board.ready() {
        return Err(ApiError::unavailable("the rankings are being loaded, retry shortly", 2));
    }
    let periods = ranking_periods(st, asked);
    let totals: Vec<PeriodTotals> =
        totals.into_iter().filter(|t| t.enabled && periods.iter().any(|p| p.id == t.award_period_id)).collect();
    // Read-your-writes: the rank must be at least as fresh as the totals shown with it.
    if let Some(seq) = totals.iter().map(|t| t.seq).max()
        && seq > board.applied_seq()
    {
        board.catch_up_to(&st.store, seq).await;
    }
    let rankings = board.read();
    let entries = periods
        .into_iter()
        .map(|p| {
            let r = rankings.get(&p.id);
            let summary = r.map(|r| r.summary(p.min_position)).unwrap_or_default();
            let t = totals.iter().find(|t| t.award_period_id == p.id).cloned();
            let rank = t.as_ref().and_then(|t| r?.rank(t.citizen_id)).unwrap_or(summary.participants + 1);
            RankingEntry {
                base: CitizenRankingResource {
                    award_period_id: p.id,
                    ranking: rank,
                    total_participants: summary.participants,
                    max_transaction_number: summary.top_count,
                    min_transaction_number: summary.count_at_n,
                    transaction_number: t.as_ref().map_or(0, |t| t.transactions),
                },
                period: p,
                totals: t,
            }
        })
        .collect();
    Ok(Some(entries))
}

// ---------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------

/// A row of the citizen's transaction list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownRow {
    pub at: OffsetDateTime,
    pub received_us: i64,
    pub key: [u8; 16],
    pub id_trx: String,
    pub id_trx_acquirer: String,
    pub id_trx_issuer: Option<String>,
    pub hpan: Hpan,
    /// Negative for a reversal.
    pub amount: Money,
    pub cashback: Money,
    pub circuit_type: u8,
}

impl ShownRow {
    pub fn day(&self) -> Date {
        calendar::rome_date(self.at)
    }
}

/// The rows as listed: evaluated once, each with its shown cashback, newest first.
pub fn shown_rows(period: &AwardPeriod, rows: &[PeriodRow]) -> Vec<ShownRow> {
    let scoring: Vec<_> = rows.iter().map(PeriodRow::scoring_row).collect();
    let result = evaluate_rows(period, &scoring);
    let inputs: Vec<_> = scoring.iter().map(|r| r.input.clone()).collect();
    let shown = shown_cashback(period, &inputs, &result);
    let mut out: Vec<ShownRow> = rows
        .iter()
        .zip(&scoring)
        .zip(shown)
        .map(|((row, s), cashback)| {
            let t = &row.trx;
            ShownRow {
                at: t.at,
                received_us: row.received_us,
                key: t.dedup_key,
                id_trx: s.id_trx(),
                id_trx_acquirer: t.id_trx_acquirer.clone(),
                id_trx_issuer: t.id_trx_issuer.clone(),
                hpan: t.hpan.clone(),
                amount: Money::from_cents(if t.reversal { -t.amount_cents } else { t.amount_cents }),
                cashback,
                circuit_type: t.circuit_type,
            }
        })
        .collect();
    sort_newest_first(&mut out);
    out
}

/// Transaction instant, then reception, then row key, all descending.
pub fn sort_newest_first(rows: &mut [ShownRow]) {
    rows.sort_by_key(|r| std::cmp::Reverse((r.at, r.received_us, r.key)));
}

/// The citizen's listed rows of `period` (only `hpan`'s when given); none for an unknown or
/// withdrawn citizen.
async fn listed_rows(
    st: &SharedState,
    cf: &FiscalCode,
    period: &AwardPeriod,
    hpan: Option<&Hpan>,
) -> ApiResult<Vec<ShownRow>> {
    if !enabled(st, cf).await? {
        return Ok(Vec::new());
    }
    // Lag-tolerant: the replica, when there is one.
    let rows = st.reads.citizen_period_rows(cf, period.id).await?;
    let mut shown = shown_rows(period, &rows);
    if let Some(h) = hpan {
        shown.retain(|r| &r.hpan == h);
    }
    Ok(shown)
}

/// Which rows a page holds, and its neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageBounds {
    pub range: Range<usize>,
    pub next: Option<u32>,
    pub prev: Option<u32>,
}

/// Offset paging: page `page` (0-based) of `limit` rows out of `total`. `next` when a later
/// page has rows; `prev` when `0 < page < pages` (as the original).
pub fn page_bounds(total: usize, page: u32, limit: u32) -> PageBounds {
    let limit = limit.max(1) as usize;
    let pages = total.div_ceil(limit);
    let start = (page as usize).saturating_mul(limit).min(total);
    let end = start.saturating_add(limit).min(total);
    PageBounds {
        range: start..end,
        next: ((page as usize).saturating_add(1) < pages).then(|| page + 1),
        prev: (page > 0 && (page as usize) < pages).then(|| page - 1),
    }
}

/// Consecutive items with the same day, in order (items sorted newest first → days newest first).
pub fn group_by_day<T>(items: impl IntoIterator<Item = T>, day: impl Fn(&T) -> Date) -> Vec<(Date, Vec<T>)> {
    let mut out: Vec<(Date, Vec<T>)> = Vec::new();
    for item in items {
        let d = day(&item);
        match out.last_mut() {
            Some((last, group)) if *last == d => group.push(item),
            _ => out.push((d, vec![item])),
        }
    }
    out
}

pub fn count_by_day(rows: &[ShownRow]) -> Vec<TrxCountByDayResource> {
    group_by_day(rows, |r| r.day())
        .into_iter()
        .map(|(d, g)| TrxCountByDayResource { trx_date: date(d), count: g.len() as u32 })
        .collect()
}

fn milestone_item(r: &ShownRow, period_id: i64) -> WinningTransactionMilestoneResource {
    WinningTransactionMilestoneResource {
        id_trx: r.id_trx.clone(),
        id_trx_acquirer: r.id_trx_acquirer.clone(),
        id_trx_issuer: r.id_trx_issuer.clone(),
        hash_pan: r.hpan.as_str().to_owned(),
        amount: euros(r.amount),
        cashback: euros(r.cashback),
        circuit_type: format!("{:02}", r.circuit_type),
        award_period_id: period_id,
        trx_date: timestamp(r.at),
    }
}

fn v1_item(r: &ShownRow, period_id: i64) -> WinningTransactionResource {
    WinningTransactionResource {
        hash_pan: r.hpan.as_str().to_owned(),
        id_trx_acquirer: r.id_trx_acquirer.clone(),
        id_trx_issuer: r.id_trx_issuer.clone(),
        amount: euros(r.amount),
        trx_date: timestamp(r.at),
        cashback: euros(r.cashback),
        circuit_type: format!("{:02}", r.circuit_type),
        award_period_id: period_id,
    }
}

/// One page of listed rows, grouped by day.
pub fn page_resource(rows: &[ShownRow], period_id: i64, page: u32, limit: u32) -> WinningTransactionPageResource {
    let b = page_bounds(rows.len(), page, limit);
    let days = group_by_day(&rows[b.range], |r| r.day());
    WinningTransactionPageResource {
        transactions: days
            .into_iter()
            .map(|(d, g)| WinningTransactionsOfTheDay {
                date: date(d),
                transactions: g.into_iter().map(|r| milestone_item(r, period_id)).collect(),
            })
            .collect(),
        next_cursor: b.next,
        prev_cursor: b.prev,
    }
}

// ---------------------------------------------------------------------------------------------
// IO handlers
// ---------------------------------------------------------------------------------------------

/// The caller's cashback in a period (capped) and counted payments; zeros when none.
#[utoipa::path(get, path = "/bpd/io/winning-transactions/total-cashback", tag = "io", security(("bearer" = [])),
    params(("awardPeriodId" = i64, Query)),
    responses((status = 200, body = TotalCashbackResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem, description = "no such award period")))]
pub async fn io_total_cashback(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    params: Params,
) -> ApiResult<Json<TotalCashbackResource>> {
    let period = params.required_period(&st)?;
    Ok(Json(total_cashback(&st, &cf, &period).await?))
}

async fn io_rankings_v2(
    st: &SharedState,
    cf: &FiscalCode,
    params: &Params,
) -> ApiResult<Json<Vec<CitizenRankingMilestoneResource>>> {
    let entries = rankings(st, cf, params.award_period_id()?).await?.unwrap_or_default();
    Ok(Json(entries.into_iter().map(RankingEntry::v2).collect()))
}

/// The caller's Super Cashback ranking with milestones, per started period (or the one asked).
/// An unknown or withdrawn citizen gets `[]`.
#[utoipa::path(get, path = "/bpd/io/citizen/v2/ranking", tag = "io", security(("bearer" = [])),
    params(("awardPeriodId" = Option<i64>, Query)),
    responses((status = 200, body = Vec<CitizenRankingMilestoneResource>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 503, body = Problem, description = "rankings still loading")))]
pub async fn io_ranking_v2(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    params: Params,
) -> ApiResult<Json<Vec<CitizenRankingMilestoneResource>>> {
    io_rankings_v2(&st, &cf, &params).await
}

/// Same as `/bpd/io/citizen/v2/ranking` (the backend's path).
#[utoipa::path(get, path = "/bpd/io/citizen/v2/ranking/milestone", tag = "io", security(("bearer" = [])),
    params(("awardPeriodId" = Option<i64>, Query)),
    responses((status = 200, body = Vec<CitizenRankingMilestoneResource>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 503, body = Problem)))]
pub async fn io_ranking_milestone(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    params: Params,
) -> ApiResult<Json<Vec<CitizenRankingMilestoneResource>>> {
    io_rankings_v2(&st, &cf, &params).await
}

/// The caller's ranking (v1, without milestones).
#[utoipa::path(get, path = "/bpd/io/citizen/ranking", tag = "io", security(("bearer" = [])),
    params(("awardPeriodId" = Option<i64>, Query)),
    responses((status = 200, body = Vec<CitizenRankingResource>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 503, body = Problem)))]
pub async fn io_ranking_v1(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    params: Params,
) -> ApiResult<Json<Vec<CitizenRankingResource>>> {
    let entries = rankings(&st, &cf, params.award_period_id()?).await?.unwrap_or_default();
    Ok(Json(entries.into_iter().map(RankingEntry::v1).collect()))
}

/// A page of the caller's transactions in a period, grouped by day, newest first.
#[utoipa::path(get, path = "/bpd/io/winning-transactions/v2", tag = "io", security(("bearer" = [])),
    params(("awardPeriodId" = i64, Query), ("nextCursor" = Option<u32>, Query, format = Int64, minimum = 0, maximum = 4294967295_u64, description = "page index, default 0"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "rows per page, default 20, at most 100"),
        ("hpan" = Option<String>, Query, pattern = "^[0-9a-f]{64}$", description = "only this card's transactions")),
    responses((status = 200, body = WinningTransactionPageResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem, description = "no such award period")))]
pub async fn io_transactions_v2(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    params: Params,
) -> ApiResult<Json<WinningTransactionPageResource>> {
    let period = params.required_period(&st)?;
    let (page, limit) = params.page()?;
    let hpan = params.hpan()?;
    let rows = listed_rows(&st, &cf, &period, hpan.as_ref()).await?;
    Ok(Json(page_resource(&rows, period.id, page, limit)))
}

/// How many of the caller's transactions each day lists, newest day first.
#[utoipa::path(get, path = "/bpd/io/winning-transactions/v2/countbyday", tag = "io", security(("bearer" = [])),
    params(("awardPeriodId" = i64, Query), ("hpan" = Option<String>, Query, pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, body = Vec<TrxCountByDayResource>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn io_count_by_day(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    params: Params,
) -> ApiResult<Json<Vec<TrxCountByDayResource>>> {
    let period = params.required_period(&st)?;
    let hpan = params.hpan()?;
    let rows = listed_rows(&st, &cf, &period, hpan.as_ref()).await?;
    Ok(Json(count_by_day(&rows)))
}

/// The caller's transactions in a period (v1, not paginated), newest first.
#[utoipa::path(get, path = "/bpd/io/winning-transactions", tag = "io", security(("bearer" = [])),
    params(("awardPeriodId" = i64, Query), ("hpan" = Option<String>, Query, pattern = "^[0-9a-f]{64}$")),
    responses((status = 200, body = Vec<WinningTransactionResource>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn io_transactions_v1(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    params: Params,
) -> ApiResult<Json<Vec<WinningTransactionResource>>> {
    let period = params.required_period(&st)?;
    let hpan = params.hpan()?;
    let rows = listed_rows(&st, &cf, &period, hpan.as_ref()).await?;
    Ok(Json(rows.iter().map(|r| v1_item(r, period.id)).collect()))
}

// ---------------------------------------------------------------------------------------------
// HB handlers (issuers may read any citizen)
// ---------------------------------------------------------------------------------------------

async fn hb_rankings(
    st: &SharedState,
    cf: &FiscalCode,
    params: &Params,
) -> ApiResult<Json<Vec<CitizenRankingResource>>> {
    let entries =
        rankings(st, cf, params.award_period_id()?).await?.ok_or_else(|| ApiError::not_found("citizen not found"))?;
    Ok(Json(entries.into_iter().map(RankingEntry::v1).collect()))
}

/// A citizen's ranking; 404 for an unknown or withdrawn citizen.
#[utoipa::path(get, path = "/bpd/hb/citizens/{fiscalCode}/ranking", tag = "hb", security(("apiKey" = [])),
    params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Path), ("awardPeriodId" = Option<i64>, Query)),
    responses((status = 200, body = Vec<CitizenRankingResource>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn hb_ranking_v1(
    State(st): State<SharedState>,
    issuer: Issuer,
    Path(cf): Path<String>,
    params: Params,
) -> ApiResult<Json<Vec<CitizenRankingResource>>> {
    let cf = core::parse_cf(&cf, "fiscalCode")?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    hb_rankings(&st, &cf, &params).await
}

/// A citizen's ranking (v2): fiscal code in header `id`.
#[utoipa::path(get, path = "/bpd/hb/citizens/v2/ranking", tag = "hb", security(("apiKey" = [])),
    params(("id" = inline(crate::openapi::FiscalCodeSchema), Header, description = "fiscal code"), ("awardPeriodId" = Option<i64>, Query)),
    responses((status = 200, body = Vec<CitizenRankingResource>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn hb_ranking_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Json<Vec<CitizenRankingResource>>> {
    let cf = core::parse_cf(header_str(&headers, "id")?, "id")?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    hb_rankings(&st, &cf, &params).await
}

/// A citizen's cashback in a period; zeros when none.
#[utoipa::path(get, path = "/bpd/hb/winning-transactions/total-cashback", tag = "hb", security(("apiKey" = [])),
    params(("awardPeriodId" = i64, Query), ("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Query)),
    responses((status = 200, body = TotalCashbackResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem, description = "no such award period")))]
pub async fn hb_total_cashback(
    State(st): State<SharedState>,
    issuer: Issuer,
    params: Params,
) -> ApiResult<Json<TotalCashbackResource>> {
    let raw = params
        .get("fiscalCode")
        .ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "fiscalCode", "is required"))?;
    let cf = core::parse_cf(raw, "fiscalCode")?;
    hb_total(&st, &issuer, &cf, &params).await
}

/// A citizen's cashback in a period (v2): fiscal code in header `fiscalCode`.
#[utoipa::path(get, path = "/bpd/hb/winning-transactions/v2/total-cashback", tag = "hb", security(("apiKey" = [])),
    params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Header), ("awardPeriodId" = i64, Query)),
    responses((status = 200, body = TotalCashbackResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn hb_total_cashback_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    headers: HeaderMap,
    params: Params,
) -> ApiResult<Json<TotalCashbackResource>> {
    let cf = core::parse_cf(header_str(&headers, "fiscalCode")?, "fiscalCode")?;
    hb_total(&st, &issuer, &cf, &params).await
}

/// A citizen the issuer does not see gets the zeros of an unknown citizen (nothing leaks).
async fn hb_total(
    st: &SharedState,
    issuer: &Issuer,
    cf: &FiscalCode,
    params: &Params,
) -> ApiResult<Json<TotalCashbackResource>> {
    let period = params.required_period(st)?;
    if !core::issuer_sees(st, &issuer.0.scope, cf).await? {
        return Ok(Json(totals_resource(&period, None)));
    }
    Ok(Json(total_cashback(st, cf, &period).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn row(at: OffsetDateTime, received_us: i64, key: u8, cents: i64) -> ShownRow {
        ShownRow {
            at,
            received_us,
            key: [key; 16],
            id_trx: format!("T{key}"),
            id_trx_acquirer: format!("A{key}"),
            id_trx_issuer: None,
            hpan: Hpan::parse(&"ab".repeat(32)).unwrap(),
            amount: Money::from_cents(cents),
            cashback: Money::from_cents(cents / 10),
            circuit_type: 1,
        }
    }

    fn stored(key: u8, at: OffsetDateTime, reversal: bool, cents: i64, corr: Option<&str>) -> PeriodRow {
        PeriodRow {
            trx: cashback_store::StoredTransaction {
                dedup_key: [key; 16],
                line: u64::from(key),
                hpan: Hpan::parse(&"ab".repeat(32)).unwrap(),
                fiscal_code: None,
                award_period_id: Some(1),
                ineligible: None,
                at,
                reversal,
                amount_cents: cents,
                circuit_type: 3,
                sender_code: "12345".into(),
                acquirer_id: "ACQ".into(),
                merchant_id: "M".into(),
                terminal_id: "T".into(),
                id_trx_acquirer: format!("X{key}"),
                id_trx_issuer: Some("I".into()),
                correlation_id: corr.map(str::to_owned),
                bin: "123456".into(),
                mcc: None,
                pos_type: None,
                par: None,
            },
            received_us: 0,
        }
    }

    #[test]
    fn shown_rows_sign_reversals_and_their_cashback() {
        let period = cashback_domain::period::default_programme().remove(1);
        let t = datetime!(2021-03-01 10:00 UTC);
        let rows = [
            stored(1, t, false, 10_000, Some("C1")),
            stored(2, t + time::Duration::HOUR, true, 4_000, Some("C1")),
            stored(3, t + time::Duration::HOUR * 2, true, 777, None),
        ];
        let shown = shown_rows(&period, &rows);
        let view: Vec<(u8, i64, i64)> =
            shown.iter().map(|r| (r.key[0], r.amount.cents(), r.cashback.cents())).collect();
        // Newest first; the partial reversal takes away 4 € of cashback; the unmatched one nothing.
        assert_eq!(view, vec![(3, -777, 0), (2, -4_000, -400), (1, 10_000, 1_000)]);
        assert_eq!(shown[2].id_trx, "X12021-03-01T10:00:00.000Z12345ACQ00");
        assert_eq!(shown[1].id_trx, "X22021-03-01T11:00:00.000Z12345ACQ01");
        let item = milestone_item(&shown[1], 1);
        assert_eq!((item.circuit_type.as_str(), item.id_trx_issuer.as_deref()), ("03", Some("I")));
    }

    #[test]
    fn pages_and_cursors() {
        let b = page_bounds(45, 0, 20);
        assert_eq!((b.range, b.next, b.prev), (0..20, Some(1), None));
        let b = page_bounds(45, 1, 20);
        assert_eq!((b.range, b.next, b.prev), (20..40, Some(2), Some(0)));
        let b = page_bounds(45, 2, 20);
        assert_eq!((b.range, b.next, b.prev), (40..45, None, Some(1)));
        // Past the end: empty, no neighbours.
        let b = page_bounds(45, 3, 20);
        assert_eq!((b.range, b.next, b.prev), (45..45, None, None));
        let b = page_bounds(40, 1, 20);
        assert_eq!((b.range, b.next, b.prev), (20..40, None, Some(0)));
        let b = page_bounds(0, 0, 20);
        assert_eq!((b.range, b.next, b.prev), (0..0, None, None));
        let b = page_bounds(10, u32::MAX, 100);
        assert_eq!((b.range, b.next, b.prev), (10..10, None, None));
    }

    #[test]
    fn newest_first_then_reception_then_key() {
        let t = datetime!(2021-03-01 10:00 UTC);
        let mut rows =
            vec![row(t, 1, 1, 100), row(t, 2, 2, 100), row(t, 2, 3, 100), row(t + time::Duration::SECOND, 0, 0, 100)];
        sort_newest_first(&mut rows);
        let keys: Vec<u8> = rows.iter().map(|r| r.key[0]).collect();
        assert_eq!(keys, vec![0, 3, 2, 1]);
    }

    #[test]
    fn grouped_by_rome_day() {
        // 23:30 UTC on 1 March is 00:30 on 2 March in Rome (UTC+1).
        let mut rows = vec![
            row(datetime!(2021-03-01 23:30 UTC), 0, 1, 100),
            row(datetime!(2021-03-01 22:30 UTC), 0, 2, 100),
            row(datetime!(2021-03-01 08:00 UTC), 0, 3, -100),
            row(datetime!(2021-02-27 08:00 UTC), 0, 4, 100),
        ];
        sort_newest_first(&mut rows);
        let counts = count_by_day(&rows);
        assert_eq!(
            counts,
            vec![
                TrxCountByDayResource { trx_date: "2021-03-02".into(), count: 1 },
                TrxCountByDayResource { trx_date: "2021-03-01".into(), count: 2 },
                TrxCountByDayResource { trx_date: "2021-02-27".into(), count: 1 },
            ]
        );
        let page = page_resource(&rows, 7, 0, 3);
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(json["nextCursor"], 1);
        assert!(json.get("prevCursor").is_none());
        let days: Vec<&str> = page.transactions.iter().map(|d| d.date.as_str()).collect();
        assert_eq!(days, vec!["2021-03-02", "2021-03-01"]);
        let second = &json["transactions"][1]["transactions"];
        assert_eq!(second[1]["amount"], serde_json::json!(-1));
        assert_eq!(second[1]["cashback"], serde_json::json!(-0.1));
        assert_eq!(second[1]["circuitType"], "01");
        assert_eq!(second[1]["trxDate"], "2021-03-01T08:00:00.000Z");
        assert_eq!(second[1]["awardPeriodId"], 7);
        assert!(second[1].get("idTrxIssuer").is_none());
        let page = page_resource(&rows, 7, 1, 3);
        assert_eq!(page.transactions.len(), 1);
        assert_eq!((page.next_cursor, page.prev_cursor), (None, Some(0)));
    }
}
