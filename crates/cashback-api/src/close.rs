//! Period close over HTTP (issue 7): a citizen's awards and complaints in the citizen app, and
//! the operators' complaint desk, close summaries and notification outbox. New paths (the
//! original left complaints to the payout agent's portal); same problem format and auth as the
//! rest of the API.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cashback_domain::Money;
use cashback_domain::calendar::rome_date;
use cashback_store::{
    Award, Complaint, ComplaintDecision, ComplaintStatus, DecideComplaintOutcome, FileComplaintOutcome,
    validate_complaint,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Citizen, Operator};
use crate::console_api::{StatusCountView, awards_by_status};
use crate::dto::JsonBody;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::SharedState;
use crate::winning::Params;

/// The payout agent's outcome of a transfer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeView {
    pub result: String,
    pub executed: bool,
    pub reason: Option<String>,
    pub cro: Option<String>,
    /// YYYY-MM-DD
    pub execution_date: Option<String>,
}

/// An award as the citizen and the operators see it (the IBAN masked).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwardView {
    pub award_id: i64,
    pub award_period_id: i64,
    /// AWARD, REISSUE, CORRECTION or INTEGRATION.
    pub kind: String,
    /// NEW, NOTHING_DUE, SENT, EXECUTED, FAILED or INTEGRATION.
    pub status: String,
    pub amount_cents: i64,
    pub cashback_cents: i64,
    pub jackpot_cents: i64,
    pub typology: String,
    pub transactions: u32,
    pub rank: Option<u32>,
    pub period_cap_applied: bool,
    pub iban_masked: Option<String>,
    pub payout_file_id: Option<i64>,
    pub related_id: Option<i64>,
    pub complaint_id: Option<i64>,
    pub outcome: Option<OutcomeView>,
}

impl From<&Award> for AwardView {
    fn from(a: &Award) -> Self {
        AwardView {
            award_id: a.award_id,
            award_period_id: a.award_period_id,
            kind: a.kind.as_str().into(),
            status: a.status.as_str().into(),
            amount_cents: a.amount.cents(),
            cashback_cents: a.cashback.cents(),
            jackpot_cents: a.jackpot.cents(),
            typology: a.typology.clone(),
            transactions: a.transactions,
            rank: a.rank,
            period_cap_applied: a.period_cap_applied,
            iban_masked: a.payoff.as_ref().map(|p| cashback_notify::mask_iban(&p.iban)),
            payout_file_id: a.payout_file_id,
            related_id: a.related_id,
            complaint_id: a.complaint_id,
            outcome: a.outcome.as_ref().map(|o| OutcomeView {
                result: o.result.clone(),
                executed: o.executed,
                reason: o.reason.clone(),
                cro: o.cro.clone(),
                execution_date: o.execution_date.map(|d| d.to_string()),
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComplaintView {
    pub complaint_id: i64,
    pub award_period_id: i64,
    /// MISSING_TRANSACTION, WRONG_AMOUNT or PAYMENT_NOT_RECEIVED.
    pub kind: String,
    pub description: String,
    /// OPEN, ACCEPTED or REJECTED.
    pub status: String,
    pub correction_cents: Option<i64>,
    pub correction_award_id: Option<i64>,
    pub operator_note: Option<String>,
    /// RFC 3339
    pub created_at: String,
    pub decided_at: Option<String>,
    /// Operators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fiscal_code: Option<String>,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl ComplaintView {
    pub fn new(c: &Complaint, with_fiscal_code: bool) -> Self {
        ComplaintView {
            complaint_id: c.complaint_id,
            award_period_id: c.award_period_id,
            kind: c.kind.as_str().into(),
            description: c.description.clone(),
            status: c.status.as_str().into(),
            correction_cents: c.correction.map(|m| m.cents()),
            correction_award_id: c.correction_award_id,
            operator_note: c.operator_note.clone(),
            created_at: rfc3339(c.created_at),
            decided_at: c.decided_at.map(rfc3339),
            fiscal_code: with_fiscal_code.then(|| c.fiscal_code.clone()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewComplaint {
    /// A period whose complaint window is open.
    #[serde(deserialize_with = "crate::dto::integral")]
    pub award_period_id: i64,
    #[schema(schema_with = crate::openapi::ComplaintKindSchema::schema)]
    pub kind: String,
    #[schema(schema_with = crate::openapi::Text2000Schema::schema)]
    pub description: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionBody {
    /// ACCEPT or REJECT.
    pub decision: String,
    /// ACCEPT (required): the correction paid in the next payout file, euro-cents; REJECT: absent.
    #[serde(default, deserialize_with = "crate::dto::integral_opt")]
    pub correction_cents: Option<i64>,
    pub note: Option<String>,
}

use crate::openapi::NOTE_MAX as MAX_NOTE;

/// The citizen's awards, all periods, oldest first.
#[utoipa::path(get, path = "/bpd/io/awards", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = Vec<AwardView>), (status = 401, body = Problem)))]
pub async fn io_awards(State(st): State<SharedState>, Citizen(cf): Citizen) -> ApiResult<Json<Vec<AwardView>>> {
    Ok(Json(st.store.citizen_awards(&cf).await?.iter().map(AwardView::from).collect()))
}

/// The citizen's complaints.
#[utoipa::path(get, path = "/bpd/io/complaints", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = Vec<ComplaintView>), (status = 401, body = Problem)))]
pub async fn io_complaints(State(st): State<SharedState>, Citizen(cf): Citizen) -> ApiResult<Json<Vec<ComplaintView>>> {
    Ok(Json(st.store.citizen_complaints(&cf).await?.iter().map(|c| ComplaintView::new(c, false)).collect()))
}

/// File a complaint (transaction missing, wrong amount, payment not received) within the legal
/// window: from the day after the period end to 120 days after the end of the month in which the
/// payout was due. 201 when filed; 200 with the open one when a complaint of that kind about the
/// period is already open.
#[utoipa::path(post, path = "/bpd/io/complaints", tag = "io", security(("bearer" = [])), request_body = NewComplaint,
    responses((status = 201, body = ComplaintView), (status = 200, body = ComplaintView, description = "already open"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 404, body = Problem, description = "not enrolled")))]
pub async fn io_file_complaint(
    State(st): State<SharedState>,
    Citizen(cf): Citizen,
    body: JsonBody<NewComplaint>,
) -> ApiResult<Response> {
    let body = body.0.ok_or_else(|| ApiError::bad_request("a JSON body is required"))?;
    let now = st.now();
    let periods = st.store.list_award_periods().await?;
    let kind = validate_complaint(&periods, body.award_period_id, &body.kind, &body.description, rome_date(now))?;
    match st.store.file_complaint(&cf, body.award_period_id, kind, body.description.trim(), now).await? {
        FileComplaintOutcome::Created(c) => {
            Ok((StatusCode::CREATED, Json(ComplaintView::new(&c, false))).into_response())
        }
        FileComplaintOutcome::AlreadyOpen(c) => Ok(Json(ComplaintView::new(&c, false)).into_response()),
        FileComplaintOutcome::CitizenNotFound => Err(ApiError::not_found("citizen not enrolled")),
    }
}

/// Complaints for the operators' desk, oldest first (`status`: OPEN, ACCEPTED or REJECTED;
/// `limit` at most 1000, default 100).
#[utoipa::path(get, path = "/bpd/ops/complaints", tag = "ops", security(("apiKey" = [])),
    params(("status" = Option<crate::openapi::ComplaintStatusSchema>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000)),
    responses((status = 200, body = Vec<ComplaintView>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn ops_complaints(
    State(st): State<SharedState>,
    _op: Operator,
    params: Params,
) -> ApiResult<Json<Vec<ComplaintView>>> {
    let status =
        match params.get("status") {
            None => None,
            Some(s) => Some(ComplaintStatus::parse(s).ok_or_else(|| {
                ApiError::field(StatusCode::BAD_REQUEST, "status", "must be OPEN, ACCEPTED or REJECTED")
            })?),
        };
    let limit = params.limit(100, 1000)?;
    Ok(Json(st.store.list_complaints(status, limit).await?.iter().map(|c| ComplaintView::new(c, true)).collect()))
}

/// Decide a complaint: ACCEPT with a correction (paid in the next payout file) or REJECT. The
/// same decision again answers 200 unchanged; a different one 409.
#[utoipa::path(post, path = "/bpd/ops/complaints/{complaintId}/decision", tag = "ops", security(("apiKey" = [])),
    params(("complaintId" = i64, Path)), request_body = inline(crate::openapi::DecisionBodySchema),
    responses((status = 200, body = ComplaintView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn ops_decide_complaint(
    State(st): State<SharedState>,
    _op: Operator,
    Path(id): Path<String>,
    body: JsonBody<DecisionBody>,
) -> ApiResult<Json<ComplaintView>> {
    let id: i64 =
        id.trim().parse().map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "complaintId", "must be an integer"))?;
    let body = body.0.ok_or_else(|| ApiError::bad_request("a JSON body is required"))?;
    if body.note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE) {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "note", format!("must be at most {MAX_NOTE} characters")));
    }
    let decision = match (body.decision.as_str(), body.correction_cents) {
        ("ACCEPT", Some(c)) if c > 0 && c <= 1_000_000 => {
            ComplaintDecision::Accept { correction: Money::from_cents(c), note: body.note }
        }
        ("ACCEPT", _) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "correctionCents",
                "ACCEPT needs a correction from 1 to 1000000 cents",
            ));
        }
        ("REJECT", None) => ComplaintDecision::Reject { note: body.note },
        ("REJECT", Some(_)) => {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "correctionCents", "not allowed with REJECT"));
        }
        _ => return Err(ApiError::field(StatusCode::BAD_REQUEST, "decision", "must be ACCEPT or REJECT")),
    };
    match st.store.decide_complaint(id, decision, cashback_notify::outbox_payload, st.now()).await? {
        DecideComplaintOutcome::Decided(c) | DecideComplaintOutcome::Unchanged(c) => {
            Ok(Json(ComplaintView::new(&c, true)))
        }
        DecideComplaintOutcome::Conflict(c) => {
            Err(ApiError::conflict(format!("complaint {id} was already decided: {}", c.status.as_str())))
        }
        DecideComplaintOutcome::NotFound => Err(ApiError::not_found(format!("no complaint {id}"))),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloseSummaryView {
    pub award_period_id: i64,
    pub citizens: u64,
    pub awards: u64,
    pub not_eligible: u64,
    pub super_cashback_winners: u64,
    pub cashback_cents: i64,
    pub jackpot_cents: i64,
    pub amount_cents: i64,
    pub without_iban: u64,
    /// The period's awards now (every kind: awards, re-issues, corrections, integrations) by
    /// status; up to a minute old.
    pub by_status: Vec<StatusCountView>,
}

impl CloseSummaryView {
    pub fn new(s: &cashback_store::CloseSummary, by_status: Vec<StatusCountView>) -> Self {
        CloseSummaryView {
            award_period_id: s.award_period_id,
            citizens: s.citizens,
            awards: s.awards,
            not_eligible: s.not_eligible,
            super_cashback_winners: s.super_cashback_winners,
            cashback_cents: s.cashback.cents(),
            jackpot_cents: s.jackpot.cents(),
            amount_cents: s.amount.cents(),
            without_iban: s.without_iban,
            by_status,
        }
    }
}

/// A closed period's award totals as computed by the close, and its awards by status now
/// (`byStatus`, cached for 60 s). 404 until the period is closed.
#[utoipa::path(get, path = "/bpd/ops/award-periods/{awardPeriodId}/close", tag = "ops", security(("apiKey" = [])),
    params(("awardPeriodId" = i64, Path)),
    responses((status = 200, body = CloseSummaryView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn ops_close_summary(
    State(st): State<SharedState>,
    _op: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<CloseSummaryView>> {
    let id: i64 = id
        .trim()
        .parse()
        .map_err(|_| ApiError::field(StatusCode::BAD_REQUEST, "awardPeriodId", "must be an integer"))?;
    match st.store.close_summary(id).await? {
        Some(s) => Ok(Json(CloseSummaryView::new(&s, awards_by_status(&st, id).await?))),
        None => Err(ApiError::not_found(format!("award period {id} is not closed"))),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OutboxView {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
}

/// The notification outbox: how many notices wait, were sent, or failed for good.
#[utoipa::path(get, path = "/bpd/ops/notifications", tag = "ops", security(("apiKey" = [])),
    responses((status = 200, body = OutboxView), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn ops_outbox(State(st): State<SharedState>, _op: Operator) -> ApiResult<Json<OutboxView>> {
    let c = st.store.outbox_counts().await?;
    Ok(Json(OutboxView { pending: c.pending, sent: c.sent, failed: c.failed }))
}
