//! The external "validate account holder" check of the payout IBAN (bpd-domain §3.2).
//!
//! Offline ISO 13616 validation always runs first (in the domain). When a checker is configured,
//! the IBAN is verified against the citizen's fiscal code: `OK` is stored, `KO` stores nothing,
//! an unknown PSP (HTTP 501/502 from the service) is stored as `UNKNOWN_PSP`, HTTP 400 means the
//! IBAN is invalid. Any other failure is a 503: nothing is stored and the app retries.

use std::time::Duration;

use async_trait::async_trait;
use cashback_domain::{FiscalCode, Iban};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IbanCheck {
    Ok,
    Ko,
    UnknownPsp,
    InvalidIban,
}

#[derive(Debug, thiserror::Error)]
#[error("account-holder check unavailable: {0}")]
pub struct IbanCheckUnavailable(pub String);

#[async_trait]
pub trait IbanChecker: Send + Sync + 'static {
    async fn check(&self, iban: &Iban, holder: &FiscalCode) -> Result<IbanCheck, IbanCheckUnavailable>;
}

/// HTTP client of a PagoPA-banking-like `validate-account-holder` service.
pub struct HttpIbanChecker {
    url: String,
    client: reqwest::Client,
}

impl HttpIbanChecker {
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        let client = crate::tls::build_client(|| reqwest::Client::builder().timeout(timeout)).expect("http client");
        Self { url: url.into(), client }
    }
}

#[async_trait]
impl IbanChecker for HttpIbanChecker {
    async fn check(&self, iban: &Iban, holder: &FiscalCode) -> Result<IbanCheck, IbanCheckUnavailable> {
        let body = json!({
            "account": { "value": iban.as_str(), "valueType": "IBAN" },
            "accountHolder": { "type": "PERSON_NATURAL", "fiscalCode": holder.as_str() }
        });
        let resp = self.client.post(&self.url).json(&body).send().await.map_err(|e| {
            IbanCheckUnavailable(if e.is_timeout() { "timeout".into() } else { "connection failed".into() })
        })?;
        match resp.status().as_u16() {
            200 => {
                let v: serde_json::Value =
                    resp.json().await.map_err(|_| IbanCheckUnavailable("unreadable answer".into()))?;
                let status = v
                    .pointer("/payload/validationStatus")
                    .or_else(|| v.get("validationStatus"))
                    .and_then(|s| s.as_str())
                    .unwrap_or("KO");
                Ok(if status == "OK" { IbanCheck::Ok } else { IbanCheck::Ko })
            }
            400 => Ok(IbanCheck::InvalidIban),
            501 | 502 => Ok(IbanCheck::UnknownPsp),
            s => Err(IbanCheckUnavailable(format!("HTTP {s}"))),
        }
    }
}
