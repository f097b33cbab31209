//! Wire types: field names and casing exactly as the IO app and issuers' clients expect
//! (contract §4.3). Absent optional values are omitted, not `null`.

use axum::extract::FromRequest;
use axum::http::Request;
use cashback_domain::{AwardPeriod, Money};
use cashback_store::{Citizen, Instrument};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::ApiError;

/// RFC 3339 / ISO-8601 with offset, UTC, millisecond precision: `2020-12-08T09:00:00.123Z`.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

pub fn date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// Euro amount as a JSON number: an integer when whole (the spec's integers), else decimals.
pub fn euros(m: Money) -> serde_json::Number {
    if m.cents() % 100 == 0 {
        serde_json::Number::from(m.cents() / 100)
    } else {
        serde_json::Number::from_f64(m.to_euros_f64()).unwrap_or_else(|| serde_json::Number::from(0))
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CitizenResource {
    pub enabled: bool,
    pub fiscal_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payoff_instr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payoff_instr_type: Option<String>,
    #[serde(rename = "timestampTC")]
    pub timestamp_tc: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CitizenResourceV2 {
    pub enabled: bool,
    pub fiscal_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payoff_instr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payoff_instr_type: Option<String>,
    #[serde(rename = "timestampTC")]
    pub timestamp_tc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub technical_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub technical_account_holder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_card_id: Option<String>,
    /// NOREQ, ACCEPTED or DENIED.
    pub opt_in_status: String,
}

impl CitizenResource {
    pub fn from(c: &Citizen) -> Self {
        Self {
            enabled: c.enabled,
            fiscal_code: c.fiscal_code.as_str().to_owned(),
            payoff_instr: c.payoff.as_ref().map(|p| p.iban.clone()),
            payoff_instr_type: c.payoff.as_ref().map(|p| p.instr_type.clone()),
            timestamp_tc: timestamp(c.timestamp_tc),
        }
    }
}

/// How a v2 citizen is presented (bpd-domain §3.2 "technical account presentation").
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The citizen app: `technicalAccount` = "Conto gestito da " + holder.
    Io,
    /// An issuer without `flagTechnicalAccount`: holder and card id hidden.
    Issuer,
    /// An issuer with `flagTechnicalAccount=true`: IBAN masked as "CONTO TECNICO".
    IssuerTechnical,
}

impl CitizenResourceV2 {
    pub fn from(c: &Citizen, audience: Audience) -> Self {
        let p = c.payoff.as_ref();
        let holder = p.and_then(|p| p.technical_account_holder.clone());
        let (payoff_instr, technical_account, technical_account_holder, issuer_card_id) = match audience {
            Audience::Io => (
                p.map(|p| p.iban.clone()),
                holder.as_ref().map(|h| format!("Conto gestito da {h}")),
                holder.clone(),
                p.and_then(|p| p.issuer_card_id.clone()),
            ),
            Audience::Issuer => (p.map(|p| p.iban.clone()), None, None, None),
            Audience::IssuerTechnical => (
                p.map(|p| if holder.is_some() { "CONTO TECNICO".to_owned() } else { p.iban.clone() }),
                None,
                holder.clone(),
                p.and_then(|p| p.issuer_card_id.clone()),
            ),
        };
        Self {
            enabled: c.enabled,
            fiscal_code: c.fiscal_code.as_str().to_owned(),
            payoff_instr,
            payoff_instr_type: p.map(|p| p.instr_type.clone()),
            timestamp_tc: timestamp(c.timestamp_tc),
            technical_account,
            technical_account_holder,
            issuer_card_id,
            opt_in_status: c.opt_in_status.as_str().to_owned(),
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CitizenPutV2 {
    /// NOREQ, ACCEPTED or DENIED.
    #[schema(schema_with = crate::openapi::OptInSchema::or_null)]
    pub opt_in_status: Option<String>,
}

/// The IBAN `PATCH` body (documented per audience by `crate::openapi::CitizenPatchIoSchema`,
/// `CitizenPatchHbSchema` and `CitizenPatchHbV2Schema`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CitizenPatch {
    pub payoff_instr: String,
    pub payoff_instr_type: String,
    #[serde(rename = "accountHolderCF")]
    pub account_holder_cf: String,
    pub account_holder_name: String,
    pub account_holder_surname: String,
    /// Issuers only: the refund goes to an account the issuer manages; skips the holder check.
    #[serde(default)]
    pub technical_account_holder: Option<String>,
    /// Issuers only, at most 20 characters.
    #[serde(default)]
    pub issuer_card_id: Option<String>,
    /// HB v2 only: the citizen's fiscal code (ignored by HB v1, refused by IO).
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CitizenPatchResource {
    /// OK, KO or UNKNOWN_PSP.
    pub validation_status: String,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentInstrumentResource {
    pub hpan: String,
    #[serde(rename = "fiscalCode")]
    pub fiscal_code: String,
    #[serde(rename = "activationDate")]
    pub activation_date: String,
    #[serde(rename = "deactivationDate", skip_serializing_if = "Option::is_none")]
    pub deactivation_date: Option<String>,
    /// ACTIVE or INACTIVE (the app reads the capitalised `Status`).
    #[serde(rename = "Status")]
    pub status_capital: String,
    /// Same as `Status`, for clients of the lower-case form.
    pub status: String,
    #[serde(rename = "tokenizedInstruments")]
    pub tokenized_instruments: Vec<String>,
}

impl PaymentInstrumentResource {
    pub fn from(i: &Instrument) -> Self {
        Self {
            hpan: i.hpan.as_str().to_owned(),
            fiscal_code: i.fiscal_code.as_str().to_owned(),
            activation_date: timestamp(i.activation_date),
            deactivation_date: i.deactivation_date.map(timestamp),
            status_capital: i.status.as_str().to_owned(),
            status: i.status.as_str().to_owned(),
            tokenized_instruments: Vec::new(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollPaymentInstrumentResource {
    pub activation_date: String,
}

#[derive(Serialize, ToSchema)]
pub struct ChannelCountResource {
    pub channel: String,
    pub count: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwardPeriodResource {
    pub award_period_id: i64,
    pub start_date: String,
    pub end_date: String,
    pub min_transaction_number: u32,
    /// Super Cashback prize, euros.
    #[schema(value_type = f64)]
    pub max_amount: serde_json::Number,
    pub min_position: u32,
    #[schema(value_type = f64)]
    pub max_transaction_cashback: serde_json::Number,
    #[schema(value_type = f64)]
    pub max_period_cashback: serde_json::Number,
    pub cashback_percentage: u32,
    pub grace_period: u32,
    /// INACTIVE, ACTIVE, CLOSED, and WAITING (v2 only) during the grace period.
    pub status: String,
    #[schema(value_type = f64)]
    pub max_transaction_evaluated: serde_json::Number,
}

impl AwardPeriodResource {
    pub fn from(p: &AwardPeriod, today: time::Date, with_waiting: bool) -> Self {
        Self {
            award_period_id: p.id,
            start_date: date(p.start),
            end_date: date(p.end),
            min_transaction_number: p.min_transaction_number,
            max_amount: euros(p.max_amount),
            min_position: p.min_position,
            max_transaction_cashback: euros(p.max_transaction_cashback),
            max_period_cashback: euros(p.max_period_cashback),
            cashback_percentage: p.cashback_percentage,
            grace_period: p.grace_period_days,
            status: p.status_on(today, with_waiting).as_str().to_owned(),
            max_transaction_evaluated: euros(p.max_transaction_evaluated),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HbCitizenV2Body {
    /// The citizen's fiscal code.
    #[schema(schema_with = crate::openapi::FiscalCodeSchema::schema)]
    pub id: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ChannelBody {
    pub channel: Option<String>,
}

/// Card enrollment by an issuer (contract §4.5). The PAN is hashed on arrival and never stored.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HbCardEnroll {
    /// The clear PAN.
    #[schema(schema_with = crate::openapi::PanSchema::schema)]
    pub id: String,
    #[schema(schema_with = crate::openapi::FiscalCodeSchema::schema)]
    pub fiscal_code: String,
    #[serde(default)]
    pub expire_year: Option<String>,
    /// Sic: the original API's spelling.
    #[serde(default)]
    pub exprire_month: Option<String>,
    #[serde(default)]
    pub issuer_abi_code: Option<String>,
    /// VISA, MASTERCARD, MAESTRO, VISA_ELECTRON, AMEX, OTHER or PAGOBANCOMAT.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::CardBrandSchema::or_null)]
    pub brand: Option<String>,
    #[serde(default)]
    pub holder: Option<String>,
    /// PP, DEB or CRD.
    #[serde(default, rename = "type")]
    #[schema(schema_with = crate::openapi::CardTypeSchema::or_null)]
    pub kind: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub token_pan_list: Option<Vec<serde_json::Value>>,
    #[serde(default, rename = "PAR")]
    pub par: Option<String>,
}

impl std::fmt::Debug for HbCardEnroll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HbCardEnroll").field("id", &"<redacted>").finish_non_exhaustive()
    }
}

/// The dev identity mock's user record (io-backend `GET /bpd/api/v1/user` shape).
#[derive(Serialize, ToSchema)]
pub struct UserInfo {
    pub fiscal_code: String,
    pub name: String,
    pub family_name: String,
}

/// A citizen's cashback in one period (capped at the period maximum), euros.
#[derive(Serialize, ToSchema, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TotalCashbackResource {
    #[schema(value_type = f64)]
    pub total_cashback: serde_json::Number,
    pub transaction_number: u32,
}

/// A citizen's position in one period's Super Cashback ranking (v1).
#[derive(Serialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CitizenRankingResource {
    pub award_period_id: i64,
    /// 1 = best; `totalParticipants + 1` when the citizen is not ranked.
    pub ranking: u32,
    pub total_participants: u32,
    /// Counted payments of rank 1.
    pub max_transaction_number: u32,
    /// Counted payments at the period's `minPosition` (the Super Cashback threshold).
    pub min_transaction_number: u32,
    /// The citizen's counted payments.
    pub transaction_number: u32,
}

/// The v2 ranking with the citizen's milestones.
#[derive(Serialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CitizenRankingMilestoneResource {
    pub award_period_id: i64,
    pub ranking: u32,
    pub total_participants: u32,
    pub max_transaction_number: u32,
    pub min_transaction_number: u32,
    pub transaction_number: u32,
    pub milestone_resource: MilestoneResource,
}

#[derive(Serialize, ToSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MilestoneResource {
    /// `idTrx` of the payment at which the period cap was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_trx_pivot: Option<String>,
    /// The part of the pivot's cashback that counted, euros.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub cashback_norm: Option<serde_json::Number>,
    /// `idTrx` of the payment that reached the period's minimum count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_trx_min_transaction_number: Option<String>,
    /// The period's cashback cap, euros.
    #[schema(value_type = f64)]
    pub max_cashback: serde_json::Number,
    /// The citizen's cashback (capped), euros.
    #[schema(value_type = f64)]
    pub total_cashback: serde_json::Number,
}

/// One page of the citizen's transactions, grouped by day (Europe/Rome), newest first.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct WinningTransactionPageResource {
    pub transactions: Vec<WinningTransactionsOfTheDay>,
    /// Index of the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<u32>,
    /// Index of the previous page, when this page is not the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_cursor: Option<u32>,
}

#[derive(Serialize, ToSchema, Debug)]
pub struct WinningTransactionsOfTheDay {
    /// YYYY-MM-DD (Europe/Rome).
    pub date: String,
    pub transactions: Vec<WinningTransactionMilestoneResource>,
}

#[derive(Serialize, ToSchema, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct WinningTransactionMilestoneResource {
    /// The id the ranking's milestones refer to (contract §4.4 item 10).
    pub id_trx: String,
    pub id_trx_acquirer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_trx_issuer: Option<String>,
    pub hash_pan: String,
    /// Euros; negative for a reversal.
    #[schema(value_type = f64)]
    pub amount: serde_json::Number,
    /// Euros: a payment's cashback, minus what a reversal took away.
    #[schema(value_type = f64)]
    pub cashback: serde_json::Number,
    /// Two digits, e.g. "01".
    pub circuit_type: String,
    pub award_period_id: i64,
    pub trx_date: String,
}

/// Transactions listed per day (Europe/Rome).
#[derive(Serialize, ToSchema, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrxCountByDayResource {
    /// YYYY-MM-DD.
    pub trx_date: String,
    pub count: u32,
}

/// A transaction of the launch-era (v1, non-paginated) list.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct WinningTransactionResource {
    pub hash_pan: String,
    pub id_trx_acquirer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_trx_issuer: Option<String>,
    #[schema(value_type = f64)]
    pub amount: serde_json::Number,
    pub trx_date: String,
    #[schema(value_type = f64)]
    pub cashback: serde_json::Number,
    pub circuit_type: String,
    pub award_period_id: i64,
}

/// An integer field that also takes an integral JSON number written with a fraction or an
/// exponent (`1575.0`, `1e3`): JSON Schema's `integer` admits them.
pub fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        // Within ±2^53 a float is an exact integer; beyond it would round silently.
        Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!("invalid value: {n}, expected an integer"))),
    }
}

/// [`integral`] for an optional field (`null` or absent: `None`).
pub fn integral_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "integral")] i64);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// A JSON body that may be empty (`None`), parsed with errors that name the field.
/// Any `Content-Type` is accepted when the body is JSON: the original clients are not uniform.
pub struct JsonBody<T>(pub Option<T>);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request<axum::body::Body>, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            ApiError::new(status, format!("request body: {}", e.body_text()))
        })?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(JsonBody(None));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(v) => Ok(JsonBody(Some(v))),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path.is_empty() || path == "." || path == "?" {
                    Err(ApiError::bad_request(format!("request body: {inner}")))
                } else {
                    Err(ApiError::field(axum::http::StatusCode::BAD_REQUEST, path, inner))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct B {
        #[serde(deserialize_with = "integral")]
        a: i64,
        #[serde(default, deserialize_with = "integral_opt")]
        b: Option<i64>,
    }

    #[test]
    fn integral_numbers_are_integers() {
        let b = |s: &str| serde_json::from_str::<B>(s);
        assert_eq!(b(r#"{"a": 1575.0, "b": 1e3}"#).unwrap(), B { a: 1575, b: Some(1000) });
        assert_eq!(b(r#"{"a": -3, "b": null}"#).unwrap(), B { a: -3, b: None });
        assert_eq!(b(r#"{"a": 9223372036854775807}"#).unwrap(), B { a: i64::MAX, b: None });
        assert!(b(r#"{"a": 1.5}"#).is_err());
        assert!(b(r#"{"a": 1e300}"#).is_err());
        assert!(b(r#"{"a": "1"}"#).is_err());
        assert!(b(r#"{"a": 1, "b": 0.25}"#).is_err());
    }
}
