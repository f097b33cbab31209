//! The issuers' ("HB", home banking) API of contract §4.5, the Payment Manager delete of §4.7
//! and, in `--dev` only, the identity mock of the original test harness.
//!
//! Issuers authenticate with `Ocp-Apim-Subscription-Key`; each key is bound to one enrollment
//! channel, which is the channel of every enrollment and withdrawal the issuer makes. Clear PANs
//! are hashed on arrival (`sha256_hex(PAN + salt)`) and never stored, logged or echoed.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use cashback_domain::enrollment::Channel;
use cashback_domain::{FiscalCode, Hpan, Pan};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::{Issuer, PaymentManager, mint_dev_token};
use crate::core;
use crate::dto::*;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::SharedState;

fn issuer_channel(issuer: &Issuer) -> ApiResult<Channel> {
    Channel::parse(&issuer.0.scope).map_err(|_| ApiError::internal("issuer credential has an invalid channel"))
}

/// A channel in the body, if sent, must be the credential's own.
fn check_body_channel(issuer: &Issuer, body: Option<&str>) -> ApiResult<Channel> {
    let own = issuer_channel(issuer)?;
    if let Some(ch) = body
        && ch != own.as_str()
    {
        return Err(ApiError::field(StatusCode::FORBIDDEN, "channel", "does not match the issuer's credential"));
    }
    Ok(own)
}

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &'static str) -> ApiResult<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .map(str::trim)
        .ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, name, "header is required"))
}

fn hpan_of_pan(st: &SharedState, raw: &str, field: &'static str) -> ApiResult<Hpan> {
    let pan = Pan::parse(raw, field)?;
    Ok(pan.hash(st.salt.expose()))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct TechnicalFlag {
    /// Show the technical account (IBAN masked as "CONTO TECNICO").
    #[serde(default)]
    pub flag_technical_account: Option<bool>,
}

fn audience(flag: &TechnicalFlag) -> Audience {
    if flag.flag_technical_account == Some(true) { Audience::IssuerTechnical } else { Audience::Issuer }
}

/// What an enrolment answers to an issuer: a citizen already enrolled elsewhere, whom this
/// issuer does not see, comes back without the payout IBAN another channel set.
async fn enrolled_view(
    st: &SharedState,
    issuer: &Issuer,
    mut c: cashback_store::Citizen,
) -> ApiResult<cashback_store::Citizen> {
    if c.channel != issuer.0.scope && !core::issuer_sees(st, &issuer.0.scope, &c.fiscal_code).await? {
        c.payoff = None;
    }
    Ok(c)
}

/// Enroll a citizen through the issuer's channel.
#[utoipa::path(put, path = "/bpd/hb/citizens/{fiscalCode}", tag = "hb", security(("apiKey" = [])),
    params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Path)),
    responses((status = 200, body = CitizenResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn put_citizen_v1(
    State(st): State<SharedState>,
    issuer: Issuer,
    Path(cf): Path<String>,
) -> ApiResult<Json<CitizenResource>> {
    let cf = core::parse_cf(&cf, "fiscalCode")?;
    let c = enrolled_view(&st, &issuer, core::enroll_citizen(&st, &cf, None, &issuer_channel(&issuer)?).await?).await?;
    Ok(Json(CitizenResource::from(&c)))
}

/// Enroll a citizen (v2): body `{id}`.
#[utoipa::path(put, path = "/bpd/hb/citizens/v2", tag = "hb", security(("apiKey" = [])), request_body = HbCitizenV2Body,
    responses((status = 200, body = CitizenResourceV2), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn put_citizen_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    body: JsonBody<HbCitizenV2Body>,
) -> ApiResult<Json<CitizenResourceV2>> {
    let body = body.0.ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "id", "missing"))?;
    let cf = core::parse_cf(&body.id, "id")?;
    let c = enrolled_view(&st, &issuer, core::enroll_citizen(&st, &cf, None, &issuer_channel(&issuer)?).await?).await?;
    Ok(Json(CitizenResourceV2::from(&c, Audience::Issuer)))
}

#[utoipa::path(get, path = "/bpd/hb/citizens/{fiscalCode}", tag = "hb", security(("apiKey" = [])),
    params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Path)),
    responses((status = 200, body = CitizenResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_citizen_v1(
    State(st): State<SharedState>,
    issuer: Issuer,
    Path(cf): Path<String>,
) -> ApiResult<Json<CitizenResource>> {
    let cf = core::parse_cf(&cf, "fiscalCode")?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    Ok(Json(CitizenResource::from(&core::get_citizen(&st, &cf).await?)))
}

/// Citizen (v2): fiscal code in header `id`.
#[utoipa::path(get, path = "/bpd/hb/citizens/v2", tag = "hb", security(("apiKey" = [])),
    params(("id" = inline(crate::openapi::FiscalCodeSchema), Header, description = "fiscal code"), TechnicalFlag),
    responses((status = 200, body = CitizenResourceV2), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_citizen_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    headers: HeaderMap,
    Query(flag): Query<TechnicalFlag>,
) -> ApiResult<Json<CitizenResourceV2>> {
    let cf = core::parse_cf(header_str(&headers, "id")?, "id")?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    Ok(Json(CitizenResourceV2::from(&core::get_citizen(&st, &cf).await?, audience(&flag))))
}

#[utoipa::path(patch, path = "/bpd/hb/citizens/{fiscalCode}", tag = "hb", security(("apiKey" = [])),
    params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Path)), request_body = inline(crate::openapi::CitizenPatchHbSchema),
    responses((status = 200, body = CitizenPatchResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_citizen_v1(
    State(st): State<SharedState>,
    issuer: Issuer,
    Path(cf): Path<String>,
    body: JsonBody<CitizenPatch>,
) -> ApiResult<Json<CitizenPatchResource>> {
    let cf = core::parse_cf(&cf, "fiscalCode")?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    let body = body.0.ok_or_else(|| ApiError::bad_request("request body: a JSON object is required"))?;
    let status = core::patch_payoff(&st, &cf, body, true).await?;
    Ok(Json(CitizenPatchResource { validation_status: status.to_owned() }))
}

/// Set the payout IBAN (v2): fiscal code in the body's `id`.
#[utoipa::path(patch, path = "/bpd/hb/citizens/v2", tag = "hb", security(("apiKey" = [])), request_body = inline(crate::openapi::CitizenPatchHbV2Schema),
    responses((status = 200, body = CitizenPatchResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn patch_citizen_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    body: JsonBody<CitizenPatch>,
) -> ApiResult<Json<CitizenPatchResource>> {
    let body = body.0.ok_or_else(|| ApiError::bad_request("request body: a JSON object is required"))?;
    let cf = core::parse_cf(body.id.as_deref().unwrap_or(""), "id")?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    let status = core::patch_payoff(&st, &cf, body, true).await?;
    Ok(Json(CitizenPatchResource { validation_status: status.to_owned() }))
}

/// Withdraw a citizen: allowed only if every active instrument came through this issuer.
#[utoipa::path(delete, path = "/bpd/hb/citizens/{fiscalCode}", tag = "hb", security(("apiKey" = [])),
    params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Path)), request_body(content = Option<ChannelBody>, description = "optional"),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_citizen_v1(
    State(st): State<SharedState>,
    issuer: Issuer,
    Path(cf): Path<String>,
    body: JsonBody<ChannelBody>,
) -> ApiResult<StatusCode> {
    let cf = core::parse_cf(&cf, "fiscalCode")?;
    let channel = check_body_channel(&issuer, body.0.as_ref().and_then(|b| b.channel.as_deref()))?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    core::withdraw(&st, &cf, &channel).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/bpd/hb/citizens/v2", tag = "hb", security(("apiKey" = [])),
    params(("id" = inline(crate::openapi::FiscalCodeSchema), Header, description = "fiscal code")), request_body(content = Option<ChannelBody>, description = "optional"),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_citizen_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    headers: HeaderMap,
    body: JsonBody<ChannelBody>,
) -> ApiResult<StatusCode> {
    let cf = core::parse_cf(header_str(&headers, "id")?, "id")?;
    let channel = check_body_channel(&issuer, body.0.as_ref().and_then(|b| b.channel.as_deref()))?;
    core::issuer_sees_citizen(&st, &issuer.0.scope, &cf).await?;
    core::withdraw(&st, &cf, &channel).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enroll a card by clear PAN; it is hashed with the salt and never stored.
#[utoipa::path(put, path = "/bpd/hb/payment-instruments/card", tag = "hb", security(("apiKey" = [])), request_body = HbCardEnroll,
    responses((status = 200, body = EnrollPaymentInstrumentResource), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn put_card(
    State(st): State<SharedState>,
    issuer: Issuer,
    body: JsonBody<HbCardEnroll>,
) -> ApiResult<Json<EnrollPaymentInstrumentResource>> {
    let body = body.0.ok_or_else(|| ApiError::bad_request("request body: a JSON object is required"))?;
    let channel = check_body_channel(&issuer, body.channel.as_deref())?;
    let hpan = hpan_of_pan(&st, &body.id, "id")?;
    let cf = core::parse_cf(&body.fiscal_code, "fiscalCode")?;
    if let Some(kind) = body.kind.as_deref()
        && !matches!(kind, "PP" | "DEB" | "CRD")
    {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "type", "must be PP, DEB or CRD"));
    }
    if let Some(brand) = body.brand.as_deref()
        && !matches!(brand, "VISA" | "MASTERCARD" | "MAESTRO" | "VISA_ELECTRON" | "AMEX" | "OTHER" | "PAGOBANCOMAT")
    {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "brand",
            "must be VISA, MASTERCARD, MAESTRO, VISA_ELECTRON, AMEX, OTHER or PAGOBANCOMAT",
        ));
    }
    let i = core::enroll_instrument(&st, &hpan, &cf, &channel).await?;
    Ok(Json(EnrollPaymentInstrumentResource { activation_date: timestamp(i.activation_date) }))
}

async fn instrument_by_hpan(
    st: &SharedState,
    issuer: &Issuer,
    hpan: &Hpan,
) -> ApiResult<Json<PaymentInstrumentResource>> {
    let i = core::issuer_instrument(st, &issuer.0.scope, hpan).await?;
    Ok(Json(PaymentInstrumentResource::from(&i)))
}

/// Deactivate a card the issuer's channel enrolled (404 for any other card).
async fn issuer_delete_card(st: &SharedState, issuer: &Issuer, hpan: &Hpan) -> ApiResult<StatusCode> {
    core::issuer_instrument(st, &issuer.0.scope, hpan).await?;
    core::delete_instrument(st, hpan, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Status of a card by clear PAN.
#[utoipa::path(get, path = "/bpd/hb/payment-instruments/{pan}", tag = "hb", security(("apiKey" = [])),
    params(("pan" = inline(crate::openapi::PanSchema), Path, description = "clear PAN")),
    responses((status = 200, body = PaymentInstrumentResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_card_v1(
    State(st): State<SharedState>,
    issuer: Issuer,
    Path(pan): Path<String>,
) -> ApiResult<Json<PaymentInstrumentResource>> {
    instrument_by_hpan(&st, &issuer, &hpan_of_pan(&st, &pan, "pan")?).await
}

/// Status of a card (v2): PAN in header `id`.
#[utoipa::path(get, path = "/bpd/hb/payment-instruments/v2", tag = "hb", security(("apiKey" = [])),
    params(("id" = inline(crate::openapi::PanSchema), Header, description = "clear PAN")),
    responses((status = 200, body = PaymentInstrumentResource), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_card_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    headers: HeaderMap,
) -> ApiResult<Json<PaymentInstrumentResource>> {
    instrument_by_hpan(&st, &issuer, &hpan_of_pan(&st, header_str(&headers, "id")?, "id")?).await
}

/// Deactivate a card by clear PAN.
#[utoipa::path(delete, path = "/bpd/hb/payment-instruments/{pan}", tag = "hb", security(("apiKey" = [])),
    params(("pan" = inline(crate::openapi::PanSchema), Path, description = "clear PAN")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_card_v1(
    State(st): State<SharedState>,
    issuer: Issuer,
    Path(pan): Path<String>,
) -> ApiResult<StatusCode> {
    issuer_delete_card(&st, &issuer, &hpan_of_pan(&st, &pan, "pan")?).await
}

#[utoipa::path(delete, path = "/bpd/hb/payment-instruments/v2", tag = "hb", security(("apiKey" = [])),
    params(("id" = inline(crate::openapi::PanSchema), Header, description = "clear PAN")),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_card_v2(
    State(st): State<SharedState>,
    issuer: Issuer,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    issuer_delete_card(&st, &issuer, &hpan_of_pan(&st, header_str(&headers, "id")?, "id")?).await
}

#[utoipa::path(get, path = "/bpd/hb/award-periods", tag = "hb", security(("apiKey" = [])),
    responses((status = 200, body = Vec<AwardPeriodResource>), (status = 401, body = Problem)))]
pub async fn award_periods_v1(State(st): State<SharedState>, _i: Issuer) -> Response {
    crate::io::periods_response(&st, false)
}

#[utoipa::path(get, path = "/bpd/hb/award-periods/v2", tag = "hb", security(("apiKey" = [])),
    responses((status = 200, body = Vec<AwardPeriodResource>), (status = 401, body = Problem)))]
pub async fn award_periods_v2(State(st): State<SharedState>, _i: Issuer) -> Response {
    crate::io::periods_response(&st, true)
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PmDeleteQuery {
    /// The owner: a card of another citizen is not deleted (409).
    #[param(schema_with = crate::openapi::FiscalCodeSchema::schema)]
    pub fiscal_code: Option<String>,
}

/// The Payment Manager removes a card from the IO wallet.
#[utoipa::path(delete, path = "/bpd/pm/payment-instrument/{hpan}", tag = "pm", security(("apiKey" = [])),
    params(("hpan" = inline(crate::openapi::HpanSchema), Path), PmDeleteQuery),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn pm_delete_instrument(
    State(st): State<SharedState>,
    _pm: PaymentManager,
    Path(hpan): Path<String>,
    Query(q): Query<PmDeleteQuery>,
) -> ApiResult<StatusCode> {
    let hpan = Hpan::parse(&hpan)?;
    let cf: Option<FiscalCode> = q.fiscal_code.as_deref().map(|c| core::parse_cf(c, "fiscalCode")).transpose()?;
    core::delete_instrument(&st, &hpan, cf.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginQuery {
    pub fiscal_code: String,
}

/// Dev only: mint a token for a fiscal code (the original harness's mock login), plain text.
#[utoipa::path(post, path = "/bpd/pagopa/api/v1/login", tag = "dev", params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Query)),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 400, body = Problem)))]
pub async fn dev_login(State(st): State<SharedState>, Query(q): Query<LoginQuery>) -> ApiResult<String> {
    let secret = st.dev_jwt_secret.as_ref().ok_or_else(|| ApiError::not_found("not found"))?;
    let cf = core::parse_cf(&q.fiscal_code, "fiscalCode")?;
    Ok(mint_dev_token(secret, &cf, st.now().unix_timestamp().max(0) as u64))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    pub token: String,
}

/// Dev only: resolve a mock token (the harness's `user?token=`).
#[utoipa::path(get, path = "/bpd/pagopa/api/v1/user", tag = "dev", params(UserQuery),
    responses((status = 200, body = UserInfo), (status = 401, body = Problem)))]
pub async fn dev_user(State(st): State<SharedState>, Query(q): Query<UserQuery>) -> ApiResult<Json<UserInfo>> {
    let cf = st.identity.resolve(&q.token).await.map_err(|_| ApiError::unauthorized("invalid or expired token"))?;
    Ok(Json(UserInfo { fiscal_code: cf.as_str().to_owned(), name: "Test".into(), family_name: "Citizen".into() }))
}
