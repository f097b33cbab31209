//! The citizen app's API (contract §4.2–§4.4). The fiscal code always comes from the token.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cashback_domain::enrollment::{Channel, InstrumentState, InstrumentVisibility, instrument_visibility};
use cashback_domain::{Hpan, calendar};

use crate::auth::Citizen;
use crate::core;
use crate::dto::*;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::SharedState;

fn hpan_param(raw: &str) -> ApiResult<Hpan> {
    Ok(Hpan::parse(raw)?)
}

/// Citizen (v1).
#[utoipa::path(get, path = "/bpd/io/citizen", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = CitizenResource), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_citizen_v1(State(st): State<SharedState>, Citizen(cf): Citizen) -> ApiResult<Json<CitizenResource>> {
    Ok(Json(CitizenResource::from(&core::get_citizen(&st, &cf).await?)))
}

/// Citizen (v2) with opt-in and technical account.
#[utoipa::path(get, path = "/bpd/io/citizen/v2", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = CitizenResourceV2), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_citizen_v2(State(st): State<SharedState>, Citizen(cf): Citizen) -> ApiResult<Json<CitizenResourceV2>> {
    Ok(Json(CitizenResourceV2::from(&core::get_citizen(&st, &cf).await?, Audience::Io)))
}

/// Enroll (v1, no body).
#[utoipa::path(put, path = "/bpd/io/citizen", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = CitizenResource), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn put_citizen_v1(State(st): State<SharedState>, Citizen(cf): Citizen) -> ApiResult<Json<CitizenResource>> {
    let c = core::enroll_citizen(&st, &cf, None, &Channel::io()).await?;
    Ok(Json(CitizenResource::from(&c)))
}

/// Enroll or set the opt-in (v2): body `{}` or `{"optInStatus": …}`.
#[utoipa::path(put, path = "/bpd/io/citizen/v2", tag = "io", security(("bearer" = [])), request_body(content = Option<CitizenPutV2>, description = "optional"),
    responses((status = 200, body = CitizenResourceV2), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn put_citizen_v2(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    body: JsonBody<CitizenPutV2>,
) -> ApiResult<Json<CitizenResourceV2>> {
    let opt_in = core::parse_opt_in(body)?;
    let c = core::enroll_citizen(&st, &cf, opt_in, &Channel::io()).await?;
    Ok(Json(CitizenResourceV2::from(&c, Audience::Io)))
}

/// Withdraw from the programme: every instrument deactivated, IBAN cleared, in one transaction.
#[utoipa::path(delete, path = "/bpd/io/citizen", tag = "io", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn delete_citizen(State(st): State<SharedState>, Citizen(cf): Citizen) -> ApiResult<StatusCode> {
    core::withdraw(&st, &cf, &Channel::io()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Withdraw (v2 path, same as `DELETE /bpd/io/citizen`).
#[utoipa::path(delete, path = "/bpd/io/citizen/v2", tag = "io", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn delete_citizen_v2(st: State<SharedState>, c: Citizen) -> ApiResult<StatusCode> {
    delete_citizen(st, c).await
}

/// Set the payout IBAN (v2 path, same as `PATCH /bpd/io/citizen`).
#[utoipa::path(patch, path = "/bpd/io/citizen/v2", tag = "io", security(("bearer" = [])), request_body = inline(crate::openapi::CitizenPatchIoSchema),
    responses((status = 200, body = CitizenPatchResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_citizen_v2(
    st: State<SharedState>,
    c: Citizen,
    body: JsonBody<CitizenPatch>,
) -> ApiResult<Json<CitizenPatchResource>> {
    patch_citizen(st, c, body).await
}

/// Set the payout IBAN.
#[utoipa::path(patch, path = "/bpd/io/citizen", tag = "io", security(("bearer" = [])), request_body = inline(crate::openapi::CitizenPatchIoSchema),
    responses((status = 200, body = CitizenPatchResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_citizen(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    body: JsonBody<CitizenPatch>,
) -> ApiResult<Json<CitizenPatchResource>> {
    let body = body.0.ok_or_else(|| ApiError::bad_request("request body: a JSON object is required"))?;
    if body.id.is_some() {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "id", "unknown field"));
    }
    let status = core::patch_payoff(&st, &cf, body, false).await?;
    Ok(Json(CitizenPatchResource { validation_status: status.to_owned() }))
}

/// Status of one payment instrument by hpan.
#[utoipa::path(get, path = "/bpd/io/payment-instruments/{id}", tag = "io", security(("bearer" = [])),
    params(("id" = inline(crate::openapi::HpanSchema), Path)),
    responses((status = 200, body = PaymentInstrumentResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn get_instrument(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    Path(id): Path<String>,
) -> ApiResult<Json<PaymentInstrumentResource>> {
    let hpan = hpan_param(&id)?;
    let i = st.store.get_instrument(&hpan).await?.ok_or_else(|| ApiError::not_found("payment instrument not found"))?;
    match instrument_visibility(InstrumentState { owner: i.fiscal_code.as_str(), status: i.status }, cf.as_str()) {
        InstrumentVisibility::Owner => Ok(Json(PaymentInstrumentResource::from(&i))),
        InstrumentVisibility::ActiveForOther => {
            Err(ApiError::conflict("the payment instrument is active for another citizen"))
        }
        // Never disclose a previous owner: to the caller it is simply not enrolled.
        InstrumentVisibility::InactiveForOther => Err(ApiError::not_found("payment instrument not found")),
    }
}

/// Activate a payment instrument for the caller (idempotent).
#[utoipa::path(put, path = "/bpd/io/payment-instruments/{id}", tag = "io", security(("bearer" = [])),
    params(("id" = inline(crate::openapi::HpanSchema), Path)),
    responses((status = 200, body = EnrollPaymentInstrumentResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn put_instrument(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    Path(id): Path<String>,
) -> ApiResult<Json<EnrollPaymentInstrumentResource>> {
    let hpan = hpan_param(&id)?;
    let i = core::enroll_instrument(&st, &hpan, &cf, &Channel::io()).await?;
    Ok(Json(EnrollPaymentInstrumentResource { activation_date: timestamp(i.activation_date) }))
}

/// Deactivate a payment instrument of the caller.
#[utoipa::path(delete, path = "/bpd/io/payment-instruments/{id}", tag = "io", security(("bearer" = [])),
    params(("id" = inline(crate::openapi::HpanSchema), Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_instrument(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let hpan = hpan_param(&id)?;
    core::delete_instrument(&st, &hpan, Some(&cf)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's active instruments, counted per enrollment channel.
#[utoipa::path(get, path = "/bpd/io/payment-instruments/number", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = Vec<ChannelCountResource>), (status = 401, body = Problem)))]
pub async fn count_instruments(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
) -> ApiResult<Json<Vec<ChannelCountResource>>> {
    let counts = st.store.count_active_instruments(&cf).await?;
    Ok(Json(counts.into_iter().map(|c| ChannelCountResource { channel: c.channel, count: c.count }).collect()))
}

pub fn periods_response(st: &SharedState, with_waiting: bool) -> Response {
    let today = calendar::rome_date(st.now());
    let body: Vec<AwardPeriodResource> =
        st.periods().iter().map(|p| AwardPeriodResource::from(p, today, with_waiting)).collect();
    Json(body).into_response()
}

/// Award periods (v1: ACTIVE / INACTIVE / CLOSED).
#[utoipa::path(get, path = "/bpd/io/award-periods", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = Vec<AwardPeriodResource>), (status = 401, body = Problem)))]
pub async fn award_periods_v1(State(st): State<SharedState>, _c: Citizen) -> Response {
    periods_response(&st, false)
}

/// Award periods (v2: adds WAITING during the grace period).
#[utoipa::path(get, path = "/bpd/io/award-periods/v2", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = Vec<AwardPeriodResource>), (status = 401, body = Problem)))]
pub async fn award_periods_v2(State(st): State<SharedState>, _c: Citizen) -> Response {
    periods_response(&st, true)
}
