//! Acquirer (RTD) API: what the acquirers' batch tool already calls.
//!
//! * `GET /rtd/payment-instrument-manager/salt`: the PAN hashing salt, plain text.
//! * `GET /rtd/payment-instrument-manager/hashed-pans`: a zip (entry `hashedPans.csv`) of every
//!   active hpan, one per line, with its SHA-256 in `x-ms-meta-sha256` and `Last-Modified`. It is
//!   built from the store in keyset pages into a spool file (never in memory), rebuilt when
//!   older than `hashed_pans_max_age` (stale copies are served while a rebuild runs), and
//!   streamed from disk.
//! * `GET /rtd/csv-transaction/publickey`: the platform's OpenPGP public key (armoured).
//! * `POST /rtd/csv-transaction/rtd/sas` → 201 `{sas, authorizedContainer}`, then
//!   `PUT /pagopastorage/{container}/{file}?{sas}`: the upload of a transaction file. The
//!   container is derived from the caller's API key as in the original; the SAS is signed and
//!   expires. The file is spooled to disk (size-limited), decrypted when `.pgp`, and ingested
//!   before the answer: **201 means every row is stored**.
//! * `GET /rtd/file-reporter/v2/file-report`: the acquirer's recent files with their counters;
//!   `GET /rtd/file-reporter/files/{name}`: one file's report with its rejected lines.
//!
//! Every call needs an acquirer API key (`Ocp-Apim-Subscription-Key`), bound to one ABI code: an
//! acquirer sees and sends only files whose name carries its own code.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cashback_domain::Hpan;
use cashback_domain::acquirer::FileName;
use cashback_domain::eligibility::EnrollmentIndex;
use cashback_ingest::{Decryption, IngestContext, IngestError, IngestOptions, Received, ingest_path};
use cashback_pgp::PlatformKey;
use cashback_store::{AcquirerFile, FileStatus, Store};
use hmac::Mac;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use crate::auth::{API_KEY_HEADER, Acquirer, sha256_hex};
use crate::dto::timestamp;
use crate::error::{ApiError, ApiResult};
use crate::state::{Secret, SharedState};

/// Knobs of the acquirer API.
#[derive(Debug, Clone)]
pub struct RtdConfig {
    /// Uploaded files and decrypted copies are spooled here while they are ingested.
    pub spool_dir: PathBuf,
    /// Largest accepted upload (the original's limit: 500 MB).
    pub upload_bytes_max: u64,
    /// Files ingested at once by this node; more uploads get 503 with `Retry-After`.
    pub ingest_concurrency: usize,
    /// Time allowed for one upload, from the first byte to the stored result.
    pub upload_timeout: Duration,
    /// An enrollment snapshot older than this is reloaded before a file is ingested.
    pub snapshot_max_age: Duration,
    /// The hashed-PAN list is rebuilt when older than this.
    pub hashed_pans_max_age: Duration,
    /// Lifetime of an upload SAS.
    pub sas_lifetime: Duration,
    /// Rows per stored chunk.
    pub chunk_rows: usize,
}

impl Default for RtdConfig {
    fn default() -> Self {
        Self {
            spool_dir: PathBuf::from("cashback-spool"),
            upload_bytes_max: 500 * 1024 * 1024,
            ingest_concurrency: 2,
            upload_timeout: Duration::from_secs(30 * 60),
            snapshot_max_age: Duration::from_secs(60),
            hashed_pans_max_age: Duration::from_secs(3600),
            sas_lifetime: Duration::from_secs(3600),
            chunk_rows: 50_000,
        }
    }
}

/// State of the acquirer API (part of [`crate::AppState`]).
pub struct RtdState {
    pub config: RtdConfig,
    key: Option<Arc<PlatformKey>>,
    public_key: Option<String>,
    sas_key: [u8; 32],
    ingest_slots: Arc<tokio::sync::Semaphore>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    snapshot: tokio::sync::Mutex<Option<Snapshot>>,
    hashed_pans: RwLock<Option<Arc<HpanList>>>,
    building: Arc<tokio::sync::Mutex<()>>,
}

struct Snapshot {
    index: Arc<EnrollmentIndex>,
    loaded: Instant,
}

/// A built hashed-PAN list on disk.
struct HpanList {
    path: tempfile::TempPath,
    sha256: String,
    size: u64,
    count: u64,
    built_at: OffsetDateTime,
    built: Instant,
}

impl RtdState {
    /// `salt` keys the SAS signatures (so every node of a deployment agrees on them).
    pub fn new(config: RtdConfig, key: Option<Arc<PlatformKey>>, salt: &Secret) -> Self {
        let sas_key: [u8; 32] =
            Sha256::new_with_prefix(b"cashback-sas-v1\0").chain_update(salt.expose()).finalize().into();
        Self {
            public_key: key.as_ref().map(|k| k.public_key_armored()),
            key,
            sas_key,
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(config.ingest_concurrency.max(1))),
            in_flight: Arc::default(),
            snapshot: tokio::sync::Mutex::new(None),
            hashed_pans: RwLock::new(None),
            building: Arc::default(),
            config,
        }
    }

    /// The enrollment snapshot, reloaded when older than `snapshot_max_age`.
    async fn index(&self, store: &Arc<dyn Store>) -> ApiResult<Arc<EnrollmentIndex>> {
        let mut snap = self.snapshot.lock().await;
        if let Some(s) = snap.as_ref().filter(|s| s.loaded.elapsed() < self.config.snapshot_max_age) {
            return Ok(s.index.clone());
        }
        let started = Instant::now();
        let index = Arc::new(store.load_enrollment_index().await?);
        tracing::info!(
            citizens = index.citizens(),
            windows = index.instruments_windows(),
            ms = started.elapsed().as_millis() as u64,
            "enrollment snapshot loaded"
        );
        *snap = Some(Snapshot { index: index.clone(), loaded: Instant::now() });
        Ok(index)
    }
}

/// The container an API key may upload to: `rtd-transactions-` + 44 hex of SHA-256(key).
fn container_of(api_key: &str) -> String {
    format!("rtd-transactions-{}", &sha256_hex(api_key.as_bytes())[..44])
}

fn api_key(headers: &HeaderMap) -> &str {
    headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim()
}

type HmacSha256 = hmac::Hmac<Sha256>;

fn sas_mac(key: &[u8; 32], container: &str, expiry: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(container.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    mac
}

fn sas_signature(key: &[u8; 32], container: &str, expiry: &str) -> String {
    hex::encode(sas_mac(key, container, expiry).finalize().into_bytes())
}

/// Whether `sig` (hex) signs `container` and `expiry`; compared in constant time by `hmac`.
fn sas_signature_valid(key: &[u8; 32], container: &str, expiry: &str, sig: &str) -> bool {
    hex::decode(sig).is_ok_and(|sig| sas_mac(key, container, expiry).verify_slice(&sig).is_ok())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// HTTP date (RFC 9110 IMF-fixdate), for `Last-Modified`.
fn http_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    ))
    .unwrap_or_default()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

// ---------------------------------------------------------------------------------------------
// Salt, public key, SAS
// ---------------------------------------------------------------------------------------------

/// The PAN hashing salt (hpan = sha256_hex(PAN + salt)).
#[utoipa::path(get, path = "/rtd/payment-instrument-manager/salt", tag = "rtd", security(("apiKey" = [])),
    responses((status = 200, description = "the salt, plain text", content_type = "text/plain"), (status = 401), (status = 403)))]
pub async fn salt(State(st): State<SharedState>, _a: Acquirer) -> Response {
    text(st.salt.expose().to_owned())
}

/// The platform's OpenPGP public key: acquirers encrypt their files to it.
#[utoipa::path(get, path = "/rtd/csv-transaction/publickey", tag = "rtd", security(("apiKey" = [])),
    responses((status = 200, description = "ASCII-armoured OpenPGP public key", content_type = "text/plain"), (status = 404, description = "no key configured")))]
pub async fn public_key(State(st): State<SharedState>, _a: Acquirer) -> ApiResult<Response> {
    match &st.rtd.public_key {
        Some(k) => Ok(text(k.clone())),
        None => Err(ApiError::not_found("this platform has no OpenPGP key configured")),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SasResponse {
    /// Query string to append to the upload URL.
    pub sas: String,
    /// Where this API key may upload: `PUT /pagopastorage/{authorizedContainer}/{file}?{sas}`.
    pub authorized_container: String,
}

/// A short-lived upload authorisation for this API key's container.
#[utoipa::path(post, path = "/rtd/csv-transaction/{scope}/sas", tag = "rtd", security(("apiKey" = [])),
    params(("scope" = inline(crate::openapi::RtdScopeSchema), Path, description = "`rtd` (transaction files); any other: 404")),
    responses((status = 201, body = SasResponse), (status = 401), (status = 404, description = "scope other than rtd")))]
pub async fn sas(
    State(st): State<SharedState>,
    Path(scope): Path<String>,
    headers: HeaderMap,
    _a: Acquirer,
) -> ApiResult<Response> {
    if scope != "rtd" {
        return Err(ApiError::not_found("only the `rtd` scope (transaction files) is served by this platform"));
    }
    let container = container_of(api_key(&headers));
    let now = st.now();
    let expiry = rfc3339(now + st.rtd.config.sas_lifetime);
    let sig = sas_signature(&st.rtd.sas_key, &container, &expiry);
    let sas = format!("sv=2020-12-06&sr=c&sp=rcw&st={}&se={expiry}&spr=https&sig={sig}", rfc3339(now));
    Ok((StatusCode::CREATED, axum::Json(SasResponse { sas, authorized_container: container })).into_response())
}

#[derive(Deserialize)]
pub struct SasQuery {
    se: Option<String>,
    sig: Option<String>,
}

fn check_sas(st: &SharedState, container: &str, q: &SasQuery) -> ApiResult<()> {
    let (Some(se), Some(sig)) = (q.se.as_deref(), q.sig.as_deref()) else {
        return Err(ApiError::field(
            StatusCode::FORBIDDEN,
            "sas",
            "missing; ask one with POST /rtd/csv-transaction/rtd/sas and append it to the URL",
        ));
    };
    if !sas_signature_valid(&st.rtd.sas_key, container, se, sig) {
        return Err(ApiError::field(StatusCode::FORBIDDEN, "sas", "signature does not match this container"));
    }
    let expiry = OffsetDateTime::parse(se, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::field(StatusCode::FORBIDDEN, "sas", "bad expiry"))?;
    if expiry <= st.now() {
        return Err(ApiError::field(StatusCode::FORBIDDEN, "sas", "expired; ask a new one"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Upload
// ---------------------------------------------------------------------------------------------

/// The report of one file.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileReport {
    pub name: String,
    /// PROCESSING, DONE or FAILED.
    pub status: &'static str,
    pub size: u64,
    /// SHA-256 (hex) of the file as received.
    pub sha256: String,
    /// The decrypted file's `#sha256sum:` line, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    pub transmission_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_date: Option<String>,
    /// New eligible transactions.
    pub accepted: u64,
    /// New well-formed rows that do not count (kept with their reason).
    pub ineligible: u64,
    /// Rows already received before (in this or an earlier file).
    pub duplicates: u64,
    /// Malformed rows (see `rejections`).
    pub rejected: u64,
    /// Why the whole file was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rejected lines (detailed report only), by line number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejections: Option<Vec<RejectedLine>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedLine {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

impl FileReport {
    fn from(f: &AcquirerFile) -> Self {
        FileReport {
            name: f.name.clone(),
            status: f.status.as_str(),
            size: f.size,
            sha256: f.sha256.clone(),
            checksum: f.checksum.clone(),
            transmission_date: timestamp(f.received_at),
            processed_date: f.finished_at.map(timestamp),
            accepted: f.counts.accepted,
            ineligible: f.counts.ineligible,
            duplicates: f.counts.duplicates,
            rejected: f.counts.rejected,
            error: f.error.clone(),
            rejections: None,
        }
    }
}

/// Removes a name from the in-flight set when the upload ends, however it ends.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    name: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.name);
        }
    }
}

/// Upload a transaction file (`CSTAR.<ABI>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>.csv[.pgp]`). The
/// answer comes once the file is ingested: 201 with its report.
#[utoipa::path(put, path = "/pagopastorage/{container}/{file}", tag = "rtd", security(("apiKey" = [])),
    params(("container" = String, Path, description = "authorizedContainer of the SAS"), ("file" = inline(crate::openapi::FileNameSchema), Path, description = "file name"),
        ("se" = String, Query, description = "SAS expiry (RFC 3339), from the `sas` answer; missing, expired or not signed: 403"),
        ("sig" = String, Query, description = "SAS signature (hex), from the `sas` answer; missing or wrong: 403")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = FileReport), (status = 400, description = "bad name or empty file"),
        (status = 401), (status = 403, description = "another acquirer's ABI, container or bad SAS"),
        (status = 409, description = "a file with this name was already received"), (status = 413, description = "over the size limit"),
        (status = 422, description = "file refused as a whole (e.g. encrypted to another key)"), (status = 503, description = "busy, retry")))]
pub async fn upload(
    state: State<SharedState>,
    path: Path<(String, String)>,
    query: Query<SasQuery>,
    headers: HeaderMap,
    acquirer: Acquirer,
    body: Body,
) -> Response {
    match upload_file(state, path, query, headers, acquirer, body).await {
        Ok(r) => r,
        Err(e) => {
            // The body may be unread: the connection must not carry another request.
            let mut r = e.into_response();
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

async fn upload_file(
    State(st): State<SharedState>,
    Path((container, file)): Path<(String, String)>,
    Query(q): Query<SasQuery>,
    headers: HeaderMap,
    Acquirer(cred): Acquirer,
    body: Body,
) -> ApiResult<Response> {
    if container != container_of(api_key(&headers)) {
        return Err(ApiError::forbidden("container: not the authorizedContainer of this API key"));
    }
    check_sas(&st, &container, &q)?;
    let fname = FileName::parse(&file).map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "file name", e.reason))?;
    if fname.abi != cred.scope {
        return Err(ApiError::forbidden(format!(
            "file name: carries ABI {} but this API key belongs to {}",
            fname.abi, cred.scope
        )));
    }
    let limit = st.rtd.config.upload_bytes_max;
    match headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()) {
        Some(0) => return Err(ApiError::field(StatusCode::BAD_REQUEST, "body", "the file is empty")),
        Some(n) if n > limit => return Err(too_large(limit)),
        _ => {}
    }
    if let Some(f) = st.store.get_acquirer_file(&file).await?
        && f.status == FileStatus::Done
    {
        return Err(ApiError::conflict("File with same name has already been uploaded"));
    }
    let guard = {
        let mut set = st.rtd.in_flight.lock().map_err(|_| ApiError::internal("internal error"))?;
        if !set.insert(file.clone()) {
            return Err(ApiError::conflict("a file with this name is being processed"));
        }
        InFlight { set: st.rtd.in_flight.clone(), name: file.clone() }
    };
    let Ok(slot) = st.rtd.ingest_slots.clone().try_acquire_owned() else {
        return Err(ApiError::unavailable("files are being ingested at capacity, retry shortly", 30));
    };
    let started = Instant::now();
    let (spool, received) = spool_body(&st, body, limit).await?;
    let index = st.rtd.index(&st.store).await?;
    let ctx = IngestContext { store: st.store.clone(), index, periods: st.periods(), now: st.now() };
    let decryption = Decryption::new(st.rtd.key.clone(), st.rtd.config.spool_dir.clone());
    let opts = IngestOptions { chunk_rows: st.rtd.config.chunk_rows, ..Default::default() };
    // Ingest in a task of its own: a client that hangs up does not cut the file off half-way.
    let name = file.clone();
    let task = tokio::spawn(async move {
        let out = ingest_path(&ctx, &name, &spool, received, &decryption, &opts, |_| {}).await;
        drop((spool, slot, guard));
        out
    });
    let out = task.await.map_err(|e| ApiError::internal(format!("ingestion task: {e}")))?;
    match out {
        Ok(done) if done.already_done => Err(ApiError::conflict("File with same name has already been uploaded")),
        Ok(done) => {
            let f = &done.file;
            tracing::info!(file = %f.name, accepted = f.counts.accepted, ineligible = f.counts.ineligible,
                rejected = f.counts.rejected, ms = started.elapsed().as_millis() as u64, "upload ingested");
            // The file's totals are stored: bring the rankings up to date now, not at the next tick.
            st.ranking.trigger(st.store.clone());
            Ok((StatusCode::CREATED, axum::Json(FileReport::from(f))).into_response())
        }
        Err(IngestError::FileName(e)) => Err(ApiError::field(StatusCode::BAD_REQUEST, "file name", e.reason)),
        Err(IngestError::Refused(reason)) => Err(ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "file", reason)),
        Err(IngestError::Store(e)) => Err(e.into()),
        Err(IngestError::Io(e)) => {
            tracing::error!(error = %e, file = %file, "ingestion I/O error");
            Err(ApiError::unavailable("the file could not be processed now, retry shortly", 30))
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::field(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body",
        format!("the file is larger than the limit of {limit} bytes"),
    )
}

/// Write the request body to a spool file, hashing it and enforcing the size limit.
async fn spool_body(st: &SharedState, body: Body, limit: u64) -> ApiResult<(tempfile::TempPath, Received)> {
    let io_err = |e: std::io::Error| {
        tracing::error!(error = %e, "spooling an upload");
        ApiError::unavailable("the file could not be stored now, retry shortly", 30)
    };
    tokio::fs::create_dir_all(&st.rtd.config.spool_dir).await.map_err(io_err)?;
    let dir = st.rtd.config.spool_dir.clone();
    let tmp = tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix("upload-").tempfile_in(dir))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(io_err)?;
    let (std_file, path) = tmp.into_parts();
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(std_file));
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("body: reading the upload failed: {e}")))?;
        let Ok(chunk) = frame.into_data() else { continue };
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(io_err)?;
    }
    out.flush().await.map_err(io_err)?;
    if size == 0 {
        return Err(ApiError::field(StatusCode::BAD_REQUEST, "body", "the file is empty"));
    }
    Ok((path, Received { size, sha256: hex::encode(hasher.finalize()) }))
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileReportList {
    /// The most recent files of this acquirer (at most 100), newest first.
    pub files_recently_uploaded: Vec<FileReport>,
}

/// The acquirer's recent files and their counters.
#[utoipa::path(get, path = "/rtd/file-reporter/v2/file-report", tag = "rtd", security(("apiKey" = [])),
    responses((status = 200, body = FileReportList), (status = 401)))]
pub async fn file_report_list(State(st): State<SharedState>, Acquirer(cred): Acquirer) -> ApiResult<Response> {
    let files = st.reads.list_acquirer_files(&cred.scope, 100).await?;
    Ok(axum::Json(FileReportList { files_recently_uploaded: files.iter().map(FileReport::from).collect() })
        .into_response())
}

#[derive(Deserialize)]
pub struct ReportQuery {
    limit: Option<u32>,
}

/// Most rejected lines listed in one report.
pub const REJECTIONS_MAX: u32 = 10_000;

/// One file's report with its rejected lines (`limit`, default 1000, at most 10000).
#[utoipa::path(get, path = "/rtd/file-reporter/files/{name}", tag = "rtd", security(("apiKey" = [])),
    params(("name" = inline(crate::openapi::FileNameSchema), Path, description = "file name"), ("limit" = Option<u32>, Query, format = Int64, minimum = 0, maximum = 4294967295_u64, description = "rejected lines listed (default 1000, more than 10000 counts as 10000)")),
    responses((status = 200, body = FileReport), (status = 403, description = "another acquirer's file"), (status = 404)))]
pub async fn file_report(
    State(st): State<SharedState>,
    Path(name): Path<String>,
    Query(q): Query<ReportQuery>,
    Acquirer(cred): Acquirer,
) -> ApiResult<Response> {
    let fname = FileName::parse(&name).map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "name", e.reason))?;
    if fname.abi != cred.scope {
        return Err(ApiError::forbidden(format!("name: a file of ABI {}, not of {}", fname.abi, cred.scope)));
    }
    let f = st.store.get_acquirer_file(&name).await?.ok_or_else(|| ApiError::not_found("no file with this name"))?;
    let limit = q.limit.unwrap_or(1000).min(REJECTIONS_MAX);
    let rejections = st.store.file_rejections(f.id, limit).await?;
    let mut report = FileReport::from(&f);
    report.rejections =
        Some(rejections.into_iter().map(|r| RejectedLine { line: r.line, field: r.field, reason: r.reason }).collect());
    Ok(axum::Json(report).into_response())
}

// ---------------------------------------------------------------------------------------------
// Hashed-PAN list
// ---------------------------------------------------------------------------------------------

/// Hpans read from the store per page while building the list.
const HPAN_PAGE: u32 = 100_000;

/// Every active hpan, zipped (entry `hashedPans.csv`), with `x-ms-meta-sha256` = SHA-256 of the zip.
#[utoipa::path(get, path = "/rtd/payment-instrument-manager/hashed-pans", tag = "rtd", security(("apiKey" = [])),
    responses((status = 200, description = "zip of active hpans", content_type = "application/zip"), (status = 401), (status = 503)))]
pub async fn hashed_pans(State(st): State<SharedState>, _a: Acquirer) -> ApiResult<Response> {
    let list = current_hpan_list(&st).await?;
    let file = tokio::fs::File::open(&list.path).await.map_err(|e| {
        tracing::error!(error = %e, "opening the hashed-PAN list");
        ApiError::unavailable("the list is being rebuilt, retry shortly", 5)
    })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 16));
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(list.size));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"hashedPans.zip\""));
    h.insert("x-ms-meta-sha256", HeaderValue::from_str(&list.sha256).map_err(|e| ApiError::internal(e.to_string()))?);
    h.insert("x-ms-meta-count", HeaderValue::from(list.count));
    if let Ok(v) = HeaderValue::from_str(&http_date(list.built_at)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    Ok(resp)
}

/// The current list: fresh → as is; stale → as is while a rebuild runs in the background; none
/// yet → built now (one build at a time; concurrent callers wait for it).
async fn current_hpan_list(st: &SharedState) -> ApiResult<Arc<HpanList>> {
    let current = st.rtd.hashed_pans.read().ok().and_then(|g| g.clone());
    let max_age = st.rtd.config.hashed_pans_max_age;
    match current {
        Some(list) if list.built.elapsed() < max_age => Ok(list),
        Some(stale) => {
            if let Ok(guard) = st.rtd.building.clone().try_lock_owned() {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Err(e) = rebuild_hpan_list(&st).await {
                        tracing::warn!(error = %e.detail, "rebuilding the hashed-PAN list failed");
                    }
                    drop(guard);
                });
            }
            Ok(stale)
        }
        None => {
            let _guard = st.rtd.building.lock().await;
            if let Some(list) = st.rtd.hashed_pans.read().ok().and_then(|g| g.clone()) {
                return Ok(list);
            }
            rebuild_hpan_list(st).await
        }
    }
}

async fn rebuild_hpan_list(st: &SharedState) -> ApiResult<Arc<HpanList>> {
    let started = Instant::now();
    let built_at = st.now();
    let io_err = |e: std::io::Error| {
        tracing::error!(error = %e, "building the hashed-PAN list");
        ApiError::unavailable("the list could not be built now, retry shortly", 30)
    };
    tokio::fs::create_dir_all(&st.rtd.config.spool_dir).await.map_err(io_err)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Hpan>>(2);
    let dir = st.rtd.config.spool_dir.clone();
    let writer = tokio::task::spawn_blocking(move || write_zip(&dir, rx));
    let mut after: Option<Hpan> = None;
    let mut fetch_error = None;
    loop {
        match st.reads.active_hpans(after.as_ref(), HPAN_PAGE).await {
            Ok(page) if page.is_empty() => break,
            Ok(page) => {
                after = page.last().cloned();
                if tx.send(page).is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Err(e) => {
                fetch_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(e) = fetch_error {
        return Err(e.into());
    }
    let (path, size, count, sha256) = written.map_err(io_err)?;
    let list = Arc::new(HpanList { path, sha256, size, count, built_at, built: Instant::now() });
    if let Ok(mut g) = st.rtd.hashed_pans.write() {
        *g = Some(list.clone());
    }
    tracing::info!(count, bytes = size, ms = started.elapsed().as_millis() as u64, "hashed-PAN list built");
    Ok(list)
}

fn write_zip(
    dir: &std::path::Path,
    pages: std::sync::mpsc::Receiver<Vec<Hpan>>,
) -> std::io::Result<(tempfile::TempPath, u64, u64, String)> {
    let tmp = tempfile::Builder::new().prefix("hashed-pans-").suffix(".zip").tempfile_in(dir)?;
    let (file, path) = tmp.into_parts();
    let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated).large_file(true);
    zip.start_file("hashedPans.csv", opts).map_err(std::io::Error::other)?;
    let mut count = 0u64;
    let mut line = [b'\n'; 65];
    for page in pages {
        for h in page {
            line[..64].copy_from_slice(h.as_str().as_bytes());
            zip.write_all(&line)?;
            count += 1;
        }
    }
    let out = zip.finish().map_err(std::io::Error::other)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    // Hash what is on disk: that is what is served.
    let mut hasher = Sha256::new();
    let mut f = std::fs::File::open(&path)?;
    let size = std::io::copy(&mut f, &mut hasher)?;
    Ok((path, size, count, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_follow_the_original_rule() {
        let c = container_of("my-key");
        assert!(c.starts_with("rtd-transactions-"));
        assert_eq!(c.len(), "rtd-transactions-".len() + 44);
        assert_ne!(c, container_of("other-key"));
    }

    #[test]
    fn sas_signatures_bind_container_and_expiry() {
        let k = [7u8; 32];
        let s = sas_signature(&k, "c1", "2021-01-01T00:00:00Z");
        assert_eq!(s, sas_signature(&k, "c1", "2021-01-01T00:00:00Z"));
        assert_ne!(s, sas_signature(&k, "c2", "2021-01-01T00:00:00Z"));
        assert_ne!(s, sas_signature(&k, "c1", "2031-01-01T00:00:00Z"));
        assert_ne!(s, sas_signature(&[8u8; 32], "c1", "2021-01-01T00:00:00Z"));
        assert!(sas_signature_valid(&k, "c1", "2021-01-01T00:00:00Z", &s));
        assert!(!sas_signature_valid(&k, "c2", "2021-01-01T00:00:00Z", &s));
        assert!(!sas_signature_valid(&k, "c1", "2021-01-01T00:00:00Z", &s.replacen('0', "1", 1).replacen('a', "b", 1)));
        assert!(!sas_signature_valid(&k, "c1", "2021-01-01T00:00:00Z", &s[..62]));
        assert!(!sas_signature_valid(&k, "c1", "2021-01-01T00:00:00Z", "not hex"));
    }

    #[test]
    fn http_dates() {
        let t = time::macros::datetime!(2021-01-16 09:05:03 +01:00);
        assert_eq!(http_date(t), "Sat, 16 Jan 2021 08:05:03 GMT");
    }
}
