//! Operators' views (an `operator` API key): the award periods and the live Super Cashback
//! ranking of a period, without fiscal codes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::auth::Operator;
use crate::dto::AwardPeriodResource;
use crate::error::{ApiError, ApiResult, Problem};
use crate::ranking::{OperatorRankingView, operator_view};
use crate::state::SharedState;
use crate::winning::{Params, period_of};

/// Citizens listed in `top` when not asked.
pub const TOP_DEFAULT: usize = 10;
/// Most citizens listed in `top`.
pub const TOP_MAX: usize = 1000;

/// `top` of the operator view: default 10, at most 1000.
pub fn top_param(params: &Params) -> ApiResult<usize> {
    match params.get("top") {
        None => Ok(TOP_DEFAULT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= TOP_MAX => Ok(n),
            _ => {
                Err(ApiError::field(StatusCode::BAD_REQUEST, "top", format!("must be an integer from 0 to {TOP_MAX}")))
            }
        },
    }
}

/// A period's ranking: participants, thresholds, who would win now, the distribution of counts
/// and the first `top` citizens (by number, never by fiscal code).
#[utoipa::path(get, path = "/bpd/ops/award-periods/{awardPeriodId}/ranking", tag = "ops", security(("apiKey" = [])),
    params(("awardPeriodId" = i64, Path), ("top" = Option<u32>, Query, maximum = 1000, description = "citizens listed, default 10, at most 1000")),
    responses((status = 200, body = OperatorRankingView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem, description = "rankings still loading")))]
pub async fn period_ranking(
    State(st): State<SharedState>,
    _op: Operator,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<OperatorRankingView>> {
    let id: i64 = id
        .trim()
        .parse()
        .map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "awardPeriodId", "must be an integer"))?;
    let top = top_param(&params)?;
    let period = period_of(&st, id)?;
    if !st.ranking.ready() {
        return Err(ApiError::unavailable("the rankings are being loaded, retry shortly", 2));
    }
    Ok(Json(operator_view(&st.ranking, &period, top)))
}

/// Award periods, as the citizen app's v2 list (the operators' console picks a period from it).
#[utoipa::path(get, path = "/bpd/ops/award-periods", tag = "ops", security(("apiKey" = [])),
    responses((status = 200, body = Vec<AwardPeriodResource>), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn award_periods(State(st): State<SharedState>, _op: Operator) -> Response {
    crate::io::periods_response(&st, true)
}
