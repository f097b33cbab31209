//! The acquirer API client (paths of `cashback_api::rtd`): salt, hashed-PAN list, public key,
//! SAS + upload. Connect and read timeouts; transport errors, 5xx and 429 are retried with
//! exponential backoff; other statuses are answered at once. HTTPS with rustls (ring): the
//! platform's certificate is checked against `--ca-cert` (else the system's roots), and a client
//! certificate is presented for mutual TLS when one is configured.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest, Sha256};
use std::io::Write;

const API_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";
const USER_AGENT: &str = concat!("cashback-acquirer/", env!("CARGO_PKG_VERSION"));

/// Client knobs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Longest wait for any read (a large upload is answered once the platform stored it).
    pub read_timeout: Duration,
    /// Attempts after the first one.
    pub retries: u32,
    /// First backoff; doubled per attempt.
    pub backoff: Duration,
    pub tls: TlsOptions,
}

/// TLS of the client (PEM files).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The CA certificate(s) the platform's certificate must chain to; `None` = the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// Mutual TLS: the client certificate (chain) and its private key.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    /// Applies the options to `b`; a client certificate needs its key and vice versa.
    fn apply(&self, mut b: reqwest::ClientBuilder) -> anyhow::Result<reqwest::ClientBuilder> {
        if let Some(ca) = &self.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("--ca-cert: reading {}", ca.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-cert {}: not PEM certificates", ca.display()))?;
            if roots.is_empty() {
                bail!("--ca-cert {}: no certificate in the file", ca.display());
            }
            b = b.tls_certs_only(roots);
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                // Certificate and key in one PEM buffer, wiped when dropped.
                let mut pem = zeroize::Zeroizing::new(
                    std::fs::read(cert).with_context(|| format!("--client-cert: reading {}", cert.display()))?,
                );
                pem.push(b'\n');
                let key_pem = zeroize::Zeroizing::new(
                    std::fs::read(key).with_context(|| format!("--client-key: reading {}", key.display()))?,
                );
                pem.extend_from_slice(&key_pem);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| anyhow!("--client-cert {} / --client-key {}: {e}", cert.display(), key.display()))?;
                b = b.identity(identity);
            }
            (None, None) => {}
            _ => bail!("mutual TLS needs both --client-cert and --client-key"),
        }
        Ok(b)
    }

    fn any(&self) -> bool {
        self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

pub struct Api {
    http: reqwest::Client,
    base: Url,
    /// The API key, zeroed when the client is dropped.
    key: zeroize::Zeroizing<String>,
    opts: ClientOptions,
}

/// Metadata of the downloaded hashed-PAN list.
#[derive(Debug)]
pub struct HpanListMeta {
    pub sha256: String,
    pub count: Option<u64>,
    pub last_modified: Option<String>,
    pub bytes: u64,
}

/// How an upload ended.
#[derive(Debug)]
pub enum Uploaded {
    /// 201 with the platform's report.
    Created(serde_json::Value),
    /// 409: a file with this name was already uploaded.
    AlreadyThere,
}

/// An upload failure: `permanent` when the platform refused the file (4xx other than 409/429),
/// so retrying the same bytes cannot help.
#[derive(Debug)]
pub struct UploadError {
    pub permanent: bool,
    pub error: anyhow::Error,
}

/// Checks the API URL: `https://…`, or `http://` on a loopback address only.
pub fn parse_base(url: &str) -> anyhow::Result<Url> {
    let u = Url::parse(url).with_context(|| format!("--api {url:?} is not a URL"))?;
    match u.scheme() {
        "https" => {}
        "http" => {
            let host = u.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                bail!("--api {url}: plain http is allowed only on a loopback address");
            }
        }
        other => bail!("--api {url}: unsupported scheme {other:?}"),
    }
    Ok(u)
}

impl Api {
    pub fn new(base: Url, key: zeroize::Zeroizing<String>, opts: ClientOptions) -> anyhow::Result<Api> {
        if base.scheme() != "https" && opts.tls.any() {
            bail!("--ca-cert, --client-cert and --client-key need an https:// --api");
        }
        cashback_api::tls::install_default_provider();
        let builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .user_agent(USER_AGENT);
        let http = opts.tls.apply(builder)?.build()?;
        Ok(Api { http, base, key, opts })
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        Ok(self.base.join(path)?)
    }

    /// Sends the request built by `make` until it gets an answer that is not worth retrying.
    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> anyhow::Result<reqwest::RequestBuilder>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut attempt = 0;
        loop {
            let res = make()?.header(API_KEY_HEADER, self.key.as_str()).send().await;
            let retry_reason = match res {
                Ok(r) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => {
                    format!("HTTP {}", r.status())
                }
                Ok(r) => return Ok(r),
                Err(e) => format!("{e}"),
            };
            if attempt >= self.opts.retries {
                bail!("{what}: {retry_reason} (after {} attempts)", attempt + 1);
            }
            let wait = self.opts.backoff * 2u32.saturating_pow(attempt);
            eprintln!("{what}: {retry_reason}; retrying in {:.1} s", wait.as_secs_f64());
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn text(&self, what: &str, path: &str) -> anyhow::Result<String> {
        let r = self.send(what, || Ok(self.http.get(self.url(path)?))).await?;
        let status = r.status();
        let body = r.text().await.with_context(|| format!("{what}: reading the answer"))?;
        if status != StatusCode::OK {
            bail!("{what}: HTTP {status}: {}", body.chars().take(300).collect::<String>());
        }
        Ok(body)
    }

    /// `GET /rtd/payment-instrument-manager/salt`.
    pub async fn salt(&self) -> anyhow::Result<String> {
        self.text("salt", "/rtd/payment-instrument-manager/salt").await
    }

    /// `GET /rtd/csv-transaction/publickey`.
    pub async fn public_key(&self) -> anyhow::Result<String> {
        self.text("public key", "/rtd/csv-transaction/publickey").await
    }

    /// `GET /rtd/payment-instrument-manager/hashed-pans` streamed to `dest`; the SHA-256 of what
    /// was received must equal `x-ms-meta-sha256` (a mismatch is retried like a transport error).
    pub async fn hashed_pans(&self, dest: &Path) -> anyhow::Result<HpanListMeta> {
        let what = "hashed-PAN list";
        let mut attempt = 0;
        loop {
            match self.hashed_pans_once(dest).await {
                Ok(meta) => return Ok(meta),
                Err((retry, e)) if retry && attempt < self.opts.retries => {
                    let wait = self.opts.backoff * 2u32.saturating_pow(attempt);
                    eprintln!("{what}: {e:#}; retrying in {:.1} s", wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err((_, e)) => return Err(e),
            }
        }
    }

    async fn hashed_pans_once(&self, dest: &Path) -> Result<HpanListMeta, (bool, anyhow::Error)> {
        let path = "/rtd/payment-instrument-manager/hashed-pans";
        let mut r =
            self.send("hashed-PAN list", || Ok(self.http.get(self.url(path)?))).await.map_err(|e| (false, e))?;
        if r.status() != StatusCode::OK {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            return Err((
                false,
                anyhow!("hashed-PAN list: HTTP {status}: {}", body.chars().take(300).collect::<String>()),
            ));
        }
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let Some(expected) = header("x-ms-meta-sha256") else {
            return Err((false, anyhow!("hashed-PAN list: no x-ms-meta-sha256 header")));
        };
        let count = header("x-ms-meta-count").and_then(|c| c.parse().ok());
        let last_modified = header("last-modified");
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(dest).map_err(|e| (false, anyhow!("creating {}: {e}", dest.display())))?,
        );
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        loop {
            match r.chunk().await {
                Ok(Some(c)) => {
                    hasher.update(&c);
                    bytes += c.len() as u64;
                    file.write_all(&c).map_err(|e| (false, anyhow!("writing {}: {e}", dest.display())))?;
                }
                Ok(None) => break,
                Err(e) => return Err((true, anyhow!("downloading the hashed-PAN list: {e}"))),
            }
        }
        file.flush().map_err(|e| (false, anyhow!("writing {}: {e}", dest.display())))?;
        let got: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if !got.eq_ignore_ascii_case(expected.trim()) {
            return Err((true, anyhow!("hashed-PAN list: SHA-256 {got} does not match x-ms-meta-sha256 {expected}")));
        }
        Ok(HpanListMeta { sha256: got, count, last_modified, bytes })
    }

    /// `POST /rtd/csv-transaction/rtd/sas` then `PUT /pagopastorage/{container}/{name}?{sas}`
    /// with the file streamed from disk; a new SAS per attempt. 409 counts as success.
    pub async fn upload(&self, file: &Path, name: &str) -> Result<Uploaded, UploadError> {
        let transient = |error: anyhow::Error| UploadError { permanent: false, error };
        let mut attempt = 0;
        loop {
            let outcome = self.upload_once(file, name).await;
            match outcome {
                Ok(u) => return Ok(u),
                Err(e) if !e.permanent && attempt < self.opts.retries => {
                    let wait = self.opts.backoff * 2u32.saturating_pow(attempt);
                    eprintln!("upload {name}: {:#}; retrying in {:.1} s", e.error, wait.as_secs_f64());
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) if e.permanent => return Err(e),
                Err(e) => return Err(transient(e.error.context(format!("after {} attempts", attempt + 1)))),
            }
        }
    }

    async fn upload_once(&self, file: &Path, name: &str) -> Result<Uploaded, UploadError> {
        let transient = |error: anyhow::Error| UploadError { permanent: false, error };
        let sas_url = self.url("/rtd/csv-transaction/rtd/sas").map_err(transient)?;
        let r = self
            .http
            .request(Method::POST, sas_url)
            .header(API_KEY_HEADER, self.key.as_str())
            .send()
            .await
            .map_err(|e| transient(anyhow!("asking a SAS: {e}")))?;
        let status = r.status();
        let body = r.text().await.map_err(|e| transient(anyhow!("asking a SAS: {e}")))?;
        if status != StatusCode::CREATED {
            let error = anyhow!("asking a SAS: HTTP {status}: {}", body.chars().take(300).collect::<String>());
            return Err(UploadError {
                permanent: status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS,
                error,
            });
        }
        let sas: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| transient(anyhow!("asking a SAS: bad JSON: {e}")))?;
        let (Some(container), Some(token)) = (sas["authorizedContainer"].as_str(), sas["sas"].as_str()) else {
            return Err(transient(anyhow!("asking a SAS: no sas/authorizedContainer in the answer")));
        };
        let mut url = self.url(&format!("/pagopastorage/{container}/{name}")).map_err(transient)?;
        url.set_query(Some(token));
        let len = std::fs::metadata(file).map_err(|e| transient(anyhow!("{}: {e}", file.display())))?.len();
        let body = FileBody::open(file, len).map_err(|e| transient(anyhow!("{}: {e}", file.display())))?;
        let r = self
            .http
            .request(Method::PUT, url)
            .header(API_KEY_HEADER, self.key.as_str())
            .header("x-ms-blob-type", "BlockBlob")
            .header("x-ms-version", "2021-08-06")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap(body))
            .send()
            .await
            .map_err(|e| transient(anyhow!("uploading: {e}")))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                Ok(Uploaded::Created(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
            }
            StatusCode::CONFLICT => Ok(Uploaded::AlreadyThere),
            s => Err(UploadError {
                permanent: s.is_client_error() && s != StatusCode::TOO_MANY_REQUESTS,
                error: anyhow!("uploading: HTTP {s}: {}", text.chars().take(300).collect::<String>()),
            }),
        }
    }
}

/// A request body read from a file by a blocking thread, 256 KiB at a time (bounded channel).
struct FileBody {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    remaining: u64,
}

impl FileBody {
    fn open(path: &Path, len: u64) -> std::io::Result<FileBody> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        std::thread::spawn(move || {
            loop {
                let mut buf = vec![0u8; 256 * 1024];
                match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(FileBody { rx, remaining: len })
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => {
                self.remaining = self.remaining.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
