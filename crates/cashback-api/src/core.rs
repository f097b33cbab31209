//! Use cases shared by the IO and issuer APIs: validate, apply the rules through the store,
//! and map outcomes to the contract's status codes.

use axum::http::StatusCode;
use cashback_domain::enrollment::{Channel, OptInStatus};
use cashback_domain::{FiscalCode, Hpan, Iban, calendar};
use cashback_store::{
    Citizen, DeleteInstrumentOutcome, EnrollInstrumentOutcome, Instrument, Payoff, SetPayoffOutcome, WithdrawOutcome,
};

use crate::dto::{CitizenPatch, JsonBody};
use crate::error::{ApiError, ApiResult};
use crate::iban_check::IbanCheck;
use crate::state::SharedState;

pub fn parse_cf(raw: &str, field: &'static str) -> ApiResult<FiscalCode> {
    FiscalCode::parse(raw).map_err(|e| ApiError::from(e.for_field(field)))
}

/// Enroll (or re-enroll) a citizen: adults only, judged on the Italian date of the request.
pub async fn enroll_citizen(
    st: &SharedState,
    cf: &FiscalCode,
    opt_in: Option<OptInStatus>,
    channel: &Channel,
) -> ApiResult<Citizen> {
    let now = st.now();
    if !cf.is_adult_on(calendar::rome_date(now)) {
        return Err(ApiError::field(StatusCode::FORBIDDEN, "fiscalCode", "the citizen must be at least 18 years old"));
    }
    let c = st.store.enroll_citizen(cf, opt_in, channel, now).await?;
    metrics::counter!("cashback_citizen_enrollments_total", "channel" => if channel.is_io() { "io" } else { "issuer" })
        .increment(1);
    Ok(c)
}

pub async fn get_citizen(st: &SharedState, cf: &FiscalCode) -> ApiResult<Citizen> {
    st.store.get_citizen(cf).await?.ok_or_else(|| ApiError::not_found("citizen not found"))
}

/// An issuer sees (and changes) a citizen only if its channel made the citizen's last enrolment
/// or enrolled one of the citizen's instruments (active or not). Unknown citizens are not seen.
pub async fn issuer_sees(st: &SharedState, channel: &str, cf: &FiscalCode) -> ApiResult<bool> {
    let Some(citizen) = st.store.get_citizen(cf).await? else { return Ok(false) };
    if citizen.channel == channel {
        return Ok(true);
    }
    Ok(st.store.citizen_instruments(cf).await?.iter().any(|i| i.channel == channel))
}

/// [`issuer_sees`], or 404: the same answer as for an unknown citizen, so an issuer cannot even
/// learn who is enrolled through other channels.
pub async fn issuer_sees_citizen(st: &SharedState, channel: &str, cf: &FiscalCode) -> ApiResult<()> {
    if issuer_sees(st, channel, cf).await? { Ok(()) } else { Err(ApiError::not_found("citizen not found")) }
}

/// An issuer sees (and deactivates) only the instruments its channel enrolled; otherwise 404.
pub async fn issuer_instrument(st: &SharedState, channel: &str, hpan: &Hpan) -> ApiResult<Instrument> {
    match st.store.get_instrument(hpan).await? {
        Some(i) if i.channel == channel => Ok(i),
        _ => Err(ApiError::not_found("payment instrument not found")),
    }
}

pub fn parse_opt_in(body: JsonBody<crate::dto::CitizenPutV2>) -> ApiResult<Option<OptInStatus>> {
    match body.0.and_then(|b| b.opt_in_status) {
        None => Ok(None),
        Some(s) => Ok(Some(OptInStatus::parse(&s)?)),
    }
}

fn bounded_text(field: &'static str, v: &str, max: usize) -> ApiResult<String> {
    let t = v.trim();
    if t.is_empty() {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, field, format!("must be at most {max} characters")));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, field, "must not contain control characters"));
    }
    Ok(t.to_owned())
}

/// The account holder: a natural person's fiscal code or a company's 11-digit VAT number.
fn holder_code(raw: &str) -> ApiResult<String> {
    let t = raw.trim();
    if t.len() == 11 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(t.to_owned());
    }
    Ok(parse_cf(t, "accountHolderCF")?.as_str().to_owned())
}

/// Set the payout IBAN (contract §4.4 rule 6). `issuer`: true for HB calls, which may set a
/// technical account (no holder check). Returns the `validationStatus`.
pub async fn patch_payoff(
    st: &SharedState,
    cf: &FiscalCode,
    body: CitizenPatch,
    issuer: bool,
) -> ApiResult<&'static str> {
    let iban = Iban::parse(&body.payoff_instr)?;
    if body.payoff_instr_type != "IBAN" {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "payoffInstrType", "must be IBAN"));
    }
    let holder_cf = holder_code(&body.account_holder_cf)?;
    let name = bounded_text("accountHolderName", &body.account_holder_name, 100)?;
    let surname = bounded_text("accountHolderSurname", &body.account_holder_surname, 100)?;
    let technical = match (&body.technical_account_holder, issuer) {
        (Some(_), false) => {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "technicalAccountHolder", "only issuers may set it"));
        }
        (Some(h), true) => Some(bounded_text("technicalAccountHolder", h, 100)?),
        (None, _) => None,
    };
    let card_id = match (&body.issuer_card_id, issuer) {
        (Some(_), false) => {
            return Err(ApiError::field(StatusCode::BAD_REQUEST, "issuerCardId", "only issuers may set it"));
        }
        (Some(id), true) => Some(bounded_text("issuerCardId", id, 20)?),
        (None, _) => None,
    };
    // Preconditions first, so a missing citizen is 404 whatever the checker says.
    let existing = get_citizen(st, cf).await?;
    if !existing.enabled {
        return Err(ApiError::bad_request("citizen is not enabled"));
    }
    let check_status = if technical.is_some() {
        "OK"
    } else if let Some(checker) = &st.iban_checker {
        match checker.check(&iban, cf).await {
            Ok(IbanCheck::Ok) => "OK",
            Ok(IbanCheck::UnknownPsp) => "UNKNOWN_PSP",
            Ok(IbanCheck::Ko) => {
                metrics::counter!("cashback_iban_checks_total", "result" => "KO").increment(1);
                return Ok("KO");
            }
            Ok(IbanCheck::InvalidIban) => {
                return Err(ApiError::field(StatusCode::BAD_REQUEST, "payoffInstr", "rejected by the account check"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "iban check failed");
                return Err(ApiError::unavailable("the IBAN check service is unavailable", 5));
            }
        }
    } else {
        // No checker configured: offline ISO validation only, recorded as such.
        "NOT_CHECKED"
    };
    metrics::counter!("cashback_iban_checks_total", "result" => check_status).increment(1);
    let payoff = Payoff {
        iban: iban.as_str().to_owned(),
        instr_type: "IBAN".to_owned(),
        account_holder_cf: Some(holder_cf),
        account_holder_name: Some(name),
        account_holder_surname: Some(surname),
        check_status: check_status.to_owned(),
        technical_account_holder: technical,
        issuer_card_id: card_id,
    };
    match st.store.set_payoff(cf, payoff, st.now()).await? {
        SetPayoffOutcome::Updated(_) => Ok(if check_status == "UNKNOWN_PSP" { "UNKNOWN_PSP" } else { "OK" }),
        SetPayoffOutcome::CitizenNotFound => Err(ApiError::not_found("citizen not found")),
        SetPayoffOutcome::CitizenNotEnabled => Err(ApiError::bad_request("citizen is not enabled")),
    }
}

pub async fn withdraw(st: &SharedState, cf: &FiscalCode, channel: &Channel) -> ApiResult<()> {
    match st.store.withdraw_citizen(cf, channel, st.now()).await? {
        WithdrawOutcome::Withdrawn { .. } | WithdrawOutcome::AlreadyWithdrawn | WithdrawOutcome::NotFound => Ok(()),
        WithdrawOutcome::TooManyChannels => {
            Err(ApiError::bad_request("the citizen has active payment instruments enrolled through other channels"))
        }
    }
}

pub async fn enroll_instrument(
    st: &SharedState,
    hpan: &Hpan,
    cf: &FiscalCode,
    channel: &Channel,
) -> ApiResult<Instrument> {
    let out = st.store.enroll_instrument(hpan, cf, channel, st.now()).await?;
    match out {
        EnrollInstrumentOutcome::Activated(i) => {
            metrics::counter!("cashback_instrument_enrollments_total", "result" => "activated").increment(1);
            Ok(i)
        }
        EnrollInstrumentOutcome::AlreadyActive(i) => Ok(i),
        EnrollInstrumentOutcome::CitizenNotEnabled => {
            Err(ApiError::forbidden("the citizen is not enrolled in the programme"))
        }
        EnrollInstrumentOutcome::OwnedByOther => {
            metrics::counter!("cashback_instrument_enrollments_total", "result" => "conflict").increment(1);
            Err(ApiError::conflict("the payment instrument is active for another citizen"))
        }
    }
}

pub async fn delete_instrument(st: &SharedState, hpan: &Hpan, cf: Option<&FiscalCode>) -> ApiResult<()> {
    match st.store.delete_instrument(hpan, cf, st.now()).await? {
        DeleteInstrumentOutcome::Deactivated | DeleteInstrumentOutcome::AlreadyInactive => Ok(()),
        DeleteInstrumentOutcome::NotFound => Err(ApiError::not_found("payment instrument not found")),
        DeleteInstrumentOutcome::OwnedByOther => {
            Err(ApiError::conflict("the payment instrument belongs to another citizen"))
        }
    }
}
