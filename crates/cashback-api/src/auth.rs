//! Who is calling.
//!
//! * Citizens (IO app): `Authorization: Bearer <token>`, resolved to a fiscal code by a pluggable
//!   [`IdentityResolver`]: a JWT verifier, or introspection against an io-backend-like service
//!   (cached with a TTL), as the original gateway did.
//! * Issuers, acquirers, the Payment Manager: an API key in `Ocp-Apim-Subscription-Key` (a
//!   `;product=…` suffix, as the original test suites append, is ignored). Keys are stored as
//!   SHA-256; lookups are cached for a short TTL, which bounds how long a revoked key still works.
//! * Mutual TLS, as the original's gateway: a credential may be bound to a client certificate
//!   (its SHA-256); such a key is accepted only on a TLS connection that presented that
//!   certificate (`crate::tls::TlsPeer`). With `AppState::client_cert_required`, every issuer and
//!   acquirer key must be bound and come with its certificate. No certificate → 401; another
//!   certificate, or an unbound key where one is required → 403.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use cashback_domain::FiscalCode;
use cashback_store::{Credential, CredentialKind, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::{Secret, SharedState};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Unknown, expired or malformed token (401).
    #[error("invalid or expired token")]
    Unauthorized,
    /// The identity service did not answer in time (504).
    #[error("identity service timed out")]
    Timeout,
    /// The identity service failed (503).
    #[error("identity service unavailable")]
    Unavailable,
}

#[async_trait]
pub trait IdentityResolver: Send + Sync + 'static {
    async fn resolve(&self, token: &str) -> Result<FiscalCode, IdentityError>;
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The fiscal code.
    pub sub: String,
    pub exp: u64,
    #[serde(default)]
    pub iat: u64,
}

/// Verifies HS256 JWTs whose subject is the fiscal code (the dev/UAT mock of the original).
pub struct JwtResolver {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl JwtResolver {
    pub fn hs256(secret: &Secret) -> Self {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 30;
        validation.validate_aud = false;
        Self { key: jsonwebtoken::DecodingKey::from_secret(secret.expose().as_bytes()), validation }
    }
}

#[async_trait]
impl IdentityResolver for JwtResolver {
    async fn resolve(&self, token: &str) -> Result<FiscalCode, IdentityError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| IdentityError::Unauthorized)?;
        FiscalCode::parse(&data.claims.sub).map_err(|_| IdentityError::Unauthorized)
    }
}

/// Mint a token for the dev mock login (`sub` = fiscal code, valid one hour).
pub fn mint_dev_token(secret: &Secret, cf: &FiscalCode, now_unix: u64) -> String {
    let claims = Claims { sub: cf.as_str().to_owned(), exp: now_unix + 3600, iat: now_unix };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .expect("HS256 encoding cannot fail")
}

/// A bounded map with per-entry expiry. When full, expired entries are swept; if still full,
/// the map is cleared (a cache miss costs one lookup, never correctness).
pub struct TtlCache<V> {
    inner: Mutex<HashMap<String, (V, Instant)>>,
    ttl: Duration,
    capacity: usize,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { inner: Mutex::new(HashMap::new()), ttl, capacity: capacity.max(1) }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.inner.lock().ok()?;
        match map.get(key) {
            Some((v, exp)) if *exp > Instant::now() => Some(v.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, key: String, value: V) {
        let Ok(mut map) = self.inner.lock() else { return };
        let now = Instant::now();
        if map.len() >= self.capacity {
            map.retain(|_, (_, exp)| *exp > now);
            if map.len() >= self.capacity {
                map.clear();
            }
        }
        map.insert(key, (value, now + self.ttl));
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Token introspection like the original gateway's call to io-backend `GET /bpd/api/v1/user`:
/// the bearer token is forwarded, a 200 body's `fiscal_code` is the identity, cached for `ttl`.
pub struct IntrospectionResolver {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
    cache: TtlCache<FiscalCode>,
}

#[derive(Deserialize)]
struct UserInfo {
    fiscal_code: String,
}

impl IntrospectionResolver {
    pub fn new(url: impl Into<String>, timeout: Duration, ttl: Duration, capacity: usize) -> Self {
        Self {
            url: url.into(),
            client: crate::tls::build_client(|| reqwest::Client::builder().timeout(timeout)).expect("http client"),
            timeout,
            cache: TtlCache::new(ttl, capacity),
        }
    }
}

/// Cache key: a digest of the token, so tokens are not kept in clear in memory dumps.
fn token_key(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[async_trait]
impl IdentityResolver for IntrospectionResolver {
    async fn resolve(&self, token: &str) -> Result<FiscalCode, IdentityError> {
        let key = token_key(token);
        if let Some(cf) = self.cache.get(&key) {
            metrics::counter!("cashback_identity_cache_total", "result" => "hit").increment(1);
            return Ok(cf);
        }
        metrics::counter!("cashback_identity_cache_total", "result" => "miss").increment(1);
        let resp = tokio::time::timeout(self.timeout, self.client.get(&self.url).bearer_auth(token).send())
            .await
            .map_err(|_| IdentityError::Timeout)?
            .map_err(|e| if e.is_timeout() { IdentityError::Timeout } else { IdentityError::Unavailable })?;
        let status = resp.status();
        if status.is_success() {
            let info: UserInfo = resp.json().await.map_err(|_| IdentityError::Unauthorized)?;
            let cf = FiscalCode::parse(&info.fiscal_code).map_err(|_| IdentityError::Unauthorized)?;
            self.cache.insert(key, cf.clone());
            Ok(cf)
        } else if status.is_server_error() {
            Err(IdentityError::Unavailable)
        } else {
            Err(IdentityError::Unauthorized)
        }
    }
}

/// The authenticated citizen of an IO request.
pub struct Citizen(pub FiscalCode);

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= 8192).then_some(token)
}

impl FromRequestParts<SharedState> for Citizen {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(parts) else {
            let mut e = ApiError::unauthorized("Authorization: a Bearer token is required");
            e.field = Some("Authorization".into());
            return Err(e);
        };
        match state.identity.resolve(token).await {
            Ok(cf) => {
                state.rate.check(crate::rate::Who::Citizen, cf.as_str())?;
                cashback_store::audit::set_actor(format!("citizen:{}", cf.as_str()));
                Ok(Citizen(cf))
            }
            Err(IdentityError::Unauthorized) => Err(ApiError::unauthorized("Authorization: invalid or expired token")),
            Err(IdentityError::Timeout) => {
                Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "identity service timed out"))
            }
            Err(IdentityError::Unavailable) => Err(ApiError::unavailable("identity service unavailable", 2)),
        }
    }
}

pub const API_KEY_HEADER: &str = "ocp-apim-subscription-key";

/// Cached credential lookups by key digest (negative results cached too).
pub struct CredentialCache {
    cache: TtlCache<Option<Credential>>,
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> Self {
        Self { cache: TtlCache::new(ttl, 100_000) }
    }

    pub async fn lookup(&self, store: &Arc<dyn Store>, key: &str) -> Result<Option<Credential>, ApiError> {
        let digest = sha256_hex(key.as_bytes());
        if let Some(c) = self.cache.get(&digest) {
            return Ok(c);
        }
        let found = store.find_credential_by_key_hash(&digest).await?;
        self.cache.insert(digest, found.clone());
        Ok(found)
    }
}

async fn credential_of_kind(parts: &Parts, state: &SharedState, kind: CredentialKind) -> Result<Credential, ApiError> {
    let raw = parts.headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = raw.split(';').next().unwrap_or("").trim();
    if key.is_empty() || key.len() > 256 {
        let mut e = ApiError::unauthorized("Ocp-Apim-Subscription-Key: an API key is required");
        e.field = Some("Ocp-Apim-Subscription-Key".into());
        return Err(e);
    }
    match state.credentials.lookup(&state.store, key).await? {
        Some(c) if c.revoked_at.is_none() && c.kind == kind => {
            check_client_cert(parts, state, &c)?;
            let who = match kind {
                CredentialKind::Issuer => crate::rate::Who::Issuer,
                CredentialKind::Acquirer => crate::rate::Who::Acquirer,
                CredentialKind::PaymentManager => crate::rate::Who::PaymentManager,
                CredentialKind::Operator => crate::rate::Who::Operator,
            };
            state.rate.check(who, &c.id)?;
            cashback_store::audit::set_actor(format!("{}:{}", c.kind.as_str(), c.id));
            Ok(c)
        }
        Some(c) if c.revoked_at.is_none() => {
            Err(ApiError::forbidden(format!("this API key is for the {} API", c.kind.as_str())))
        }
        _ => Err(ApiError::unauthorized("Ocp-Apim-Subscription-Key: unknown or revoked API key")),
    }
}

/// The client certificate rule of a credential (see the module documentation).
fn check_client_cert(parts: &Parts, state: &SharedState, c: &Credential) -> Result<(), ApiError> {
    let required = state.client_cert_required && matches!(c.kind, CredentialKind::Issuer | CredentialKind::Acquirer);
    if c.client_cert_sha256.is_none() && !required {
        return Ok(());
    }
    let presented = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::tls::TlsPeer>>()
        .and_then(|ci| ci.0.client_cert_sha256.clone());
    let Some(presented) = presented else {
        return Err(ApiError::unauthorized(format!(
            "a client certificate is required with this {} API key (mutual TLS)",
            c.kind.as_str()
        )));
    };
    match &c.client_cert_sha256 {
        Some(bound) if bound.eq_ignore_ascii_case(&presented) => Ok(()),
        Some(_) => Err(ApiError::forbidden("the client certificate is not the one bound to this API key")),
        None => Err(ApiError::forbidden("this API key has no client certificate bound; mutual TLS is required")),
    }
}

/// An authenticated issuer (bank app); `scope` is its enrollment channel.
pub struct Issuer(pub Credential);

impl FromRequestParts<SharedState> for Issuer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        credential_of_kind(parts, state, CredentialKind::Issuer).await.map(Issuer)
    }
}

/// The authenticated Payment Manager.
pub struct PaymentManager(pub Credential);

impl FromRequestParts<SharedState> for PaymentManager {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        credential_of_kind(parts, state, CredentialKind::PaymentManager).await.map(PaymentManager)
    }
}

/// An authenticated acquirer; `scope` is its ABI code.
pub struct Acquirer(pub Credential);

impl FromRequestParts<SharedState> for Acquirer {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        credential_of_kind(parts, state, CredentialKind::Acquirer).await.map(Acquirer)
    }
}

/// An authenticated operator of the programme (rankings and other operations views).
pub struct Operator(pub Credential);

impl FromRequestParts<SharedState> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, Self::Rejection> {
        credential_of_kind(parts, state, CredentialKind::Operator).await.map(Operator)
    }
}
