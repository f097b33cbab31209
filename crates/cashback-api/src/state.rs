//! Shared application state, built once by the composition root (`cashback serve`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cashback_domain::AwardPeriod;
use cashback_store::Store;
use time::OffsetDateTime;

use crate::auth::{CredentialCache, IdentityResolver};
use crate::iban_check::IbanChecker;

/// Where "now" comes from. Tests pass a fixed clock.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// A secret string (salt, keys): never printed by `Debug`, zeroed when dropped. One type for the
/// whole platform (the notification sender's configuration uses it too).
pub use cashback_notify::Secret;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest accepted request body.
    pub body_bytes_max: usize,
    /// Requests in flight across the whole router before new ones get 503.
    pub concurrency_max: usize,
    /// A request that takes longer is answered 503.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { body_bytes_max: 16 * 1024, concurrency_max: 4096, request_timeout: Duration::from_secs(10) }
    }
}

pub struct AppState {
    /// The primary: every write, and the reads that must see them (read-your-writes).
    pub store: Arc<dyn Store>,
    /// Reads that tolerate replication lag (transaction lists, the ranking feed, the console's
    /// figures, the acquirers' file reports and hashed-PAN list): a read replica when one is
    /// configured, else the same store as `store`.
    pub reads: Arc<dyn Store>,
    pub identity: Arc<dyn IdentityResolver>,
    pub credentials: CredentialCache,
    pub iban_checker: Option<Arc<dyn IbanChecker>>,
    /// The PAN hashing salt: hpan = sha256_hex(PAN + salt).
    pub salt: Secret,
    pub clock: Clock,
    /// Development mode: mock login endpoints, verbose errors.
    pub dev: bool,
    /// HS256 secret used by the dev mock login to mint tokens.
    pub dev_jwt_secret: Option<Secret>,
    pub limits: HttpLimits,
    /// Award periods, served from memory; refreshed by [`AppState::refresh_periods`].
    pub periods: RwLock<Arc<Vec<AwardPeriod>>>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The acquirer API: OpenPGP key, spool, snapshots, hashed-PAN list.
    pub rtd: crate::rtd::RtdState,
    /// Per-identity rate limits (429 + Retry-After).
    pub rate: crate::rate::RateLimits,
    /// The live Super Cashback rankings (kept up to date by `cashback serve`).
    pub ranking: Arc<crate::ranking::RankingBoard>,
    /// The console's cached whole-table figures.
    pub console: crate::console_api::ConsoleCache,
    /// Mutual TLS required: issuer and acquirer API keys are accepted only with the client
    /// certificate bound to their credential (`crate::auth`).
    pub client_cert_required: bool,
}

impl AppState {
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    pub fn periods(&self) -> Arc<Vec<AwardPeriod>> {
        self.periods.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Reload award periods from the store (they change only by operator action).
    pub async fn refresh_periods(&self) -> Result<(), cashback_store::StoreError> {
        let fresh = Arc::new(self.store.list_award_periods().await?);
        if let Ok(mut p) = self.periods.write() {
            *p = fresh;
        }
        Ok(())
    }
}

pub type SharedState = Arc<AppState>;
