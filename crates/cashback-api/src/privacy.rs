//! A citizen's data export (GDPR art. 15 and 20): everything the platform holds about one
//! citizen, as one JSON document. The citizen gets their own (`GET /bpd/io/citizen/export`);
//! operators answer a request made through support (`GET /bpd/ops/citizens/{fiscalCode}/export`,
//! `cashback admin citizen-export`). Erasure after the retention period: `docs/security.md`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cashback_domain::FiscalCode;
use cashback_store::audit::AuditQuery;
use cashback_store::{Store, StoreResult};
use serde_json::{Value, json};

use crate::audit::AuditEventView;
use crate::auth::{Citizen, Operator};
use crate::close::{AwardView, ComplaintView};
use crate::dto::timestamp;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::SharedState;

/// Audit events included in an export (the newest).
const EXPORT_AUDIT_MAX: u32 = 1000;

/// Everything stored about `cf`, or `None` if the platform holds no citizen with that code.
/// Amounts are euro-cents. Instruments are hashed PANs: no clear PAN is ever stored.
pub async fn citizen_export(store: &dyn Store, cf: &FiscalCode) -> StoreResult<Option<Value>> {
    let Some(c) = store.get_citizen(cf).await? else { return Ok(None) };
    let instruments = store.citizen_instruments(cf).await?;
    let mut windows = Vec::new();
    for i in &instruments {
        for w in store.instrument_history(&i.hpan).await? {
            if w.fiscal_code == *cf {
                windows.push(json!({
                    "hpan": w.hpan.as_str(), "channel": w.channel, "from": timestamp(w.from), "to": w.to.map(timestamp),
                }));
            }
        }
    }
    let transactions: Vec<Value> = store
        .citizen_transactions(cf)
        .await?
        .iter()
        .map(|t| {
            json!({
                "hpan": t.hpan.as_str(), "awardPeriodId": t.award_period_id, "at": timestamp(t.at),
                "operationType": if t.reversal { "01" } else { "00" }, "amountCents": t.amount_cents,
                "acquirerId": t.acquirer_id, "merchantId": t.merchant_id, "terminalId": t.terminal_id,
                "idTrxAcquirer": t.id_trx_acquirer, "idTrxIssuer": t.id_trx_issuer, "correlationId": t.correlation_id,
                "circuitType": t.circuit_type, "mcc": t.mcc,
                "ineligible": t.ineligible.map(|r| r.code()),
            })
        })
        .collect();
    let totals: Vec<Value> = store
        .citizen_period_totals(cf)
        .await?
        .iter()
        .map(|p| {
            json!({
                "awardPeriodId": p.award_period_id, "enabled": p.enabled, "cashbackCents": p.cashback.cents(),
                "scoreTotalCents": p.score_total.cents(), "transactions": p.transactions,
            })
        })
        .collect();
    let awards: Vec<AwardView> = store.citizen_awards(cf).await?.iter().map(AwardView::from).collect();
    let complaints: Vec<ComplaintView> =
        store.citizen_complaints(cf).await?.iter().map(|k| ComplaintView::new(k, false)).collect();
    let q = AuditQuery { subject: Some(cf.as_str().to_owned()), limit: EXPORT_AUDIT_MAX, ..Default::default() };
    let audit: Vec<AuditEventView> = store.audit_events(&q).await?.into_iter().map(AuditEventView::from).collect();
    let payoff = c.payoff.as_ref().map(|p| {
        json!({
            "iban": p.iban, "instrType": p.instr_type, "accountHolderCF": p.account_holder_cf,
            "accountHolderName": p.account_holder_name, "accountHolderSurname": p.account_holder_surname,
            "checkInstrStatus": p.check_status, "technicalAccountHolder": p.technical_account_holder,
            "issuerCardId": p.issuer_card_id,
        })
    });
    Ok(Some(json!({
        "citizen": {
            "fiscalCode": c.fiscal_code.as_str(), "enabled": c.enabled, "timestampTC": timestamp(c.timestamp_tc),
            "optInStatus": c.opt_in_status.as_str(), "channel": c.channel, "cancellation": c.cancellation.map(timestamp),
            "updatedAt": timestamp(c.updated_at), "payoff": payoff,
        },
        "instruments": instruments.iter().map(|i| json!({
            "hpan": i.hpan.as_str(), "status": i.status.as_str(), "channel": i.channel,
            "activationDate": timestamp(i.activation_date), "deactivationDate": i.deactivation_date.map(timestamp),
        })).collect::<Vec<_>>(),
        "activationWindows": windows,
        "transactions": transactions,
        "periodTotals": totals,
        "awards": awards,
        "complaints": complaints,
        "auditTrail": audit,
    })))
}

/// Everything the platform holds about the caller (citizen, IBAN, instruments and their
/// activation windows, transactions, period totals, awards, complaints, the audit trail of
/// their changes), as one JSON document.
#[utoipa::path(get, path = "/bpd/io/citizen/export", tag = "io", security(("bearer" = [])),
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn io_export(State(st): State<SharedState>, Citizen(cf): Citizen) -> ApiResult<Json<Value>> {
    let doc = citizen_export(st.store.as_ref(), &cf).await?.ok_or_else(|| ApiError::not_found("citizen not found"))?;
    Ok(Json(doc))
}

/// A citizen's data export for an operator answering a request made through support.
#[utoipa::path(get, path = "/bpd/ops/citizens/{fiscalCode}/export", tag = "ops", security(("apiKey" = [])),
    params(("fiscalCode" = inline(crate::openapi::FiscalCodeSchema), Path)),
    responses((status = 200, body = Object), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn ops_export(
    State(st): State<SharedState>,
    _op: Operator,
    Path(fiscal_code): Path<String>,
) -> ApiResult<Json<Value>> {
    let cf = FiscalCode::parse(&fiscal_code)
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "fiscalCode", e.to_string()))?;
    let doc = citizen_export(st.store.as_ref(), &cf).await?.ok_or_else(|| ApiError::not_found("citizen not found"))?;
    Ok(Json(doc))
}
