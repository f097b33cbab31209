//! The audit trail over HTTP: every request runs in an audit scope whose actor the
//! authentication extractors name (`cashback_store::audit`), and operators read the trail.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use cashback_store::audit::{AUDIT_QUERY_MAX, AuditAction, AuditEvent, AuditQuery};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::auth::Operator;
use crate::dto::timestamp;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::SharedState;
use crate::winning::Params;

/// Run the request in its own audit scope (the store records changes on behalf of its actor).
pub async fn scope(req: Request, next: Next) -> Response {
    cashback_store::audit::request_scope(next.run(req)).await
}

/// One recorded change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventView {
    /// Increasing; pass the last one as `beforeId` for the next page.
    pub id: i64,
    /// When the change was made (UTC).
    pub at: String,
    /// Who: `citizen:<fiscal code>`, `issuer:<credential>`, `acquirer:<credential>`,
    /// `payment-manager:<credential>`, `operator:<credential>`, `cli:<user>` or `system`.
    pub actor: String,
    /// What kind of change, e.g. `instrument.enrolled`.
    pub action: String,
    /// What it is about: a fiscal code, an hpan, `period:<id>`, `credential:<id>`, …
    pub subject: String,
    /// The change (never a clear PAN or a full IBAN).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: timestamp(e.at),
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail)),
        }
    }
}

const AUDIT_DEFAULT: u32 = 100;

fn time_param(params: &Params, name: &'static str) -> ApiResult<Option<OffsetDateTime>> {
    params
        .get(name)
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::field(StatusCode::BAD_REQUEST, name, "must be an RFC 3339 time, e.g. 2021-01-31T23:00:00Z")
            })
        })
        .transpose()
}

fn text_param(params: &Params, name: &'static str) -> ApiResult<Option<String>> {
    match params.get(name) {
        Some(v) if v.len() > 200 => {
            Err(ApiError::field(StatusCode::BAD_REQUEST, name, "must be at most 200 characters"))
        }
        v => Ok(v.map(str::to_owned)),
    }
}

/// The audit trail, newest first, filtered by subject, actor, action and time (all optional,
/// combined). Page backwards with `beforeId`.
#[utoipa::path(get, path = "/bpd/ops/audit", tag = "ops", security(("apiKey" = [])),
    params(("subject" = Option<String>, Query, max_length = 200, description = "e.g. a fiscal code, an hpan, period:1"),
        ("actor" = Option<String>, Query, max_length = 200, description = "e.g. issuer:bank-1, citizen:RSSMRA85T10A562S, system"),
        ("action" = Option<crate::openapi::AuditActionSchema>, Query, description = "e.g. instrument.enrolled"),
        ("since" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("until" = Option<String>, Query, format = DateTime, description = "RFC 3339, exclusive"),
        ("beforeId" = Option<i64>, Query, minimum = 1, description = "only events with a smaller id"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "events returned, default 100, at most 1000")),
    responses((status = 200, body = Vec<AuditEventView>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn ops_audit(
    State(st): State<SharedState>,
    _op: Operator,
    params: Params,
) -> ApiResult<Json<Vec<AuditEventView>>> {
    let action = text_param(&params, "action")?;
    if let Some(a) = &action {
        AuditAction::parse_filter(a).map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "action", e))?;
    }
    let before_id = match params.get("beforeId") {
        None => None,
        Some(v) => Some(
            v.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::field(StatusCode::BAD_REQUEST, "beforeId", "must be a positive integer"))?,
        ),
    };
    let q = AuditQuery {
        subject: text_param(&params, "subject")?,
        actor: text_param(&params, "actor")?,
        action,
        since: time_param(&params, "since")?,
        until: time_param(&params, "until")?,
        before_id,
        limit: params.limit(AUDIT_DEFAULT, AUDIT_QUERY_MAX)?,
    };
    let events = st.reads.audit_events(&q).await?;
    Ok(Json(events.into_iter().map(AuditEventView::from).collect()))
}
