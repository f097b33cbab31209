//! Senders of [`Message`]s and the retry schedule of the outbox.

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::notice::Message;
use crate::text::mask_fiscal_code;

/// Attempts per message, the first one included; then the outbox gives up.
pub const MAX_ATTEMPTS: u32 = 5;
/// Delay after the 1st, 2nd, … failed attempt.
const BACKOFF: [Duration; MAX_ATTEMPTS as usize - 1] =
    [Duration::from_secs(60), Duration::from_secs(5 * 60), Duration::from_secs(30 * 60), Duration::from_secs(2 * 3600)];
/// IO's default message time to live.
pub const DEFAULT_TTL_SECONDS: u32 = 3600;
const SUBSCRIPTION_KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// How much of an error answer is kept in [`SendError::Permanent`].
const EXCERPT_CHARS: usize = 200;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later ([`next_attempt`]); `retry_after` is the server's own hint.
    #[error("temporary failure: {reason}")]
    Retryable { reason: String, retry_after: Option<Duration> },
    /// Retrying would not help (rejected message, bad key, …).
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable { .. })
    }
}

/// Delivers a message to the citizen.
#[async_trait]
pub trait Sender: Send + Sync {
    /// Sends `msg`; returns the message id given by the channel.
    async fn send(&self, msg: &Message) -> Result<String, SendError>;
}

/// When to try again after `attempts` failed attempts (0: none yet, so now): 1 min, 5 min,
/// 30 min, 2 h, then `None` (give up) once [`MAX_ATTEMPTS`] attempts were made. The server's
/// `retry_after` wins when longer. `None` as well if the date would overflow.
pub fn next_attempt(attempts: u32, now: OffsetDateTime, retry_after: Option<Duration>) -> Option<OffsetDateTime> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let backoff = attempts.checked_sub(1).map_or(Duration::ZERO, |i| BACKOFF[i as usize]);
    let delay = retry_after.map_or(backoff, |hint| hint.max(backoff));
    now.checked_add(time::Duration::try_from(delay).ok()?)
}

/// Writes each message to the log (fiscal code masked, subject only) instead of sending it.
#[derive(Debug, Default)]
pub struct LogSender {
    sent: AtomicU64,
}

impl LogSender {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Sender for LogSender {
    async fn send(&self, msg: &Message) -> Result<String, SendError> {
        let id = format!("log-{}", self.sent.fetch_add(1, Ordering::Relaxed) + 1);
        tracing::info!(
            message_id = %id,
            fiscal_code = %mask_fiscal_code(&msg.fiscal_code),
            subject = %msg.subject,
            "notification (log sender, not sent)"
        );
        Ok(id)
    }
}

/// Client of the IO backend: `POST {base_url}/api/v1/messages`.
pub struct IoSender {
    client: reqwest::Client,
    url: String,
    subscription_key: HeaderValue,
    ttl_seconds: u32,
    timeout: Duration,
}

impl fmt::Debug for IoSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoSender")
            .field("url", &self.url)
            .field("subscription_key", &"<redacted>")
            .field("ttl_seconds", &self.ttl_seconds)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

impl IoSender {
    /// A sender with the default TTL ([`DEFAULT_TTL_SECONDS`]); `timeout` bounds each request
    /// (connection, sending and the whole answer). The URL is not checked here (see
    /// [`crate::build_sender`]).
    pub fn new(base_url: &str, subscription_key: &str, timeout: Duration) -> Result<IoSender, String> {
        let mut subscription_key = HeaderValue::from_str(subscription_key)
            .map_err(|_| "io_subscription_key: not a valid HTTP header value".to_owned())?;
        subscription_key.set_sensitive(true);
        // reqwest's TLS needs a process default provider: ring (as `cashback_api::tls`). The IO
        // URL is plain http to a loopback egress proxy (`build_sender` checks it), so no root is
        // trusted and the system's are not loaded.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .tls_certs_only(Vec::new())
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| format!("IO http client: {e}"))?;
        let url = format!("{}/api/v1/messages", base_url.trim_end_matches('/'));
        Ok(IoSender { client, url, subscription_key, ttl_seconds: DEFAULT_TTL_SECONDS, timeout })
    }

    /// Sets the messages' `time_to_live`.
    pub fn with_ttl_seconds(mut self, ttl_seconds: u32) -> IoSender {
        self.ttl_seconds = ttl_seconds;
        self
    }

    fn transport_error(&self, e: &reqwest::Error) -> SendError {
        if e.is_builder() {
            return SendError::Permanent { reason: format!("IO request could not be built: {}", chain(e)) };
        }
        let reason = if e.is_timeout() {
            format!("IO did not answer within {} ms", self.timeout.as_millis())
        } else {
            format!("IO request failed: {}", chain(e))
        };
        SendError::Retryable { reason, retry_after: None }
    }
}

#[async_trait]
impl Sender for IoSender {
    async fn send(&self, msg: &Message) -> Result<String, SendError> {
        let body = serde_json::json!({
            "time_to_live": self.ttl_seconds,
            "content": { "subject": msg.subject, "markdown": msg.markdown },
            "fiscal_code": msg.fiscal_code,
        });
        let request = self.client.post(&self.url).header(SUBSCRIPTION_KEY_HEADER, self.subscription_key.clone());
        let response = request.json(&body).send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            // IO has accepted the message: a retry would send it twice, so an unreadable
            // answer is not retried.
            return response.json::<Created>().await.map(|c| c.id).map_err(|e| SendError::Permanent {
                reason: format!(
                    "IO accepted the message (HTTP {}) but its answer has no readable id: {}",
                    status.as_u16(),
                    chain(&e)
                ),
            });
        }
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry_after_seconds(response.headers()),
            _ => None,
        };
        let reason = format!("IO answered HTTP {}: {}", status.as_u16(), excerpt(response).await);
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(SendError::Retryable { reason, retry_after })
        } else {
            Err(SendError::Permanent { reason })
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after_seconds(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(seconds))
}

/// The start of an error answer, on one line, at most [`EXCERPT_CHARS`] characters; reads at
/// most a few KiB of it.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < 4 * EXCERPT_CHARS {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut out: String = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(EXCERPT_CHARS).collect();
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

/// An error and its sources, `": "`-separated (reqwest's own message is terse).
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2021-07-01 00:00 UTC);

    fn mins(m: u64) -> Duration {
        Duration::from_secs(60 * m)
    }

    #[test]
    fn backoff_schedule() {
        assert_eq!(next_attempt(0, NOW, None), Some(NOW));
        assert_eq!(next_attempt(1, NOW, None), Some(datetime!(2021-07-01 00:01 UTC)));
        assert_eq!(next_attempt(2, NOW, None), Some(datetime!(2021-07-01 00:05 UTC)));
        assert_eq!(next_attempt(3, NOW, None), Some(datetime!(2021-07-01 00:30 UTC)));
        assert_eq!(next_attempt(4, NOW, None), Some(datetime!(2021-07-01 02:00 UTC)));
        assert_eq!(next_attempt(MAX_ATTEMPTS, NOW, None), None);
        assert_eq!(next_attempt(u32::MAX, NOW, Some(mins(1))), None);
    }

    #[test]
    fn retry_after_wins_only_when_longer() {
        assert_eq!(next_attempt(1, NOW, Some(Duration::from_secs(7))), Some(datetime!(2021-07-01 00:01 UTC)));
        assert_eq!(next_attempt(1, NOW, Some(mins(10))), Some(datetime!(2021-07-01 00:10 UTC)));
        assert_eq!(next_attempt(0, NOW, Some(Duration::from_secs(7))), Some(datetime!(2021-07-01 00:00:07 UTC)));
        assert_eq!(next_attempt(4, NOW, Some(mins(60))), Some(datetime!(2021-07-01 02:00 UTC)));
        assert_eq!(next_attempt(4, NOW, Some(mins(180))), Some(datetime!(2021-07-01 03:00 UTC)));
        assert_eq!(next_attempt(1, NOW, Some(Duration::MAX)), None, "overflow gives up instead of panicking");
    }

    #[test]
    fn retry_after_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_seconds(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after_seconds(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after_seconds(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("-1"));
        assert_eq!(retry_after_seconds(&headers), None);
    }

    #[tokio::test]
    async fn log_sender_counts() {
        let sender = LogSender::new();
        let msg = Message { fiscal_code: "RSSMRA85T10A562S".into(), subject: "s".into(), markdown: "m".into() };
        assert_eq!(sender.send(&msg).await.unwrap(), "log-1");
        assert_eq!(sender.send(&msg).await.unwrap(), "log-2");
    }

    #[test]
    fn io_sender_debug_redacts_the_key() {
        let sender = IoSender::new("http://127.0.0.1:1/", "top-secret-key", Duration::from_secs(1)).unwrap();
        let dbg = format!("{sender:?}");
        assert!(!dbg.contains("top-secret-key") && dbg.contains("http://127.0.0.1:1/api/v1/messages"), "{dbg}");
        assert!(IoSender::new("http://127.0.0.1:1", "bad\nkey", Duration::from_secs(1)).is_err());
    }
}
