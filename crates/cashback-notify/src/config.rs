//! `[notify]` configuration and the sender it selects.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::sender::{DEFAULT_TTL_SECONDS, IoSender, LogSender, Sender};

/// IO's accepted `time_to_live` range, in seconds (1 hour to 7 days).
const TTL_RANGE: std::ops::RangeInclusive<u32> = 3600..=604_800;

/// Which [`Sender`] delivers the messages.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SenderKind {
    /// [`LogSender`]: nothing leaves the process (development, tests).
    Log,
    /// [`IoSender`]: the IO backend.
    Io,
}

/// A secret of the platform (salt, JWT secret, passphrases, subscription keys): its `Debug`
/// never shows the value, and the one copy (shared by clones) is zeroed when the last clone is
/// dropped. `cashback_api::state::Secret` is this type.
#[derive(Deserialize, Clone)]
#[serde(from = "String")]
pub struct Secret(Arc<zeroize::Zeroizing<String>>);

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret::new(value)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl Secret {
    /// Takes the string over (no copy is left behind).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(Arc::new(zeroize::Zeroizing::new(value.into())))
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The notification settings.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub sender: SenderKind,
    /// IO backend base URL (`sender = "io"`): `http://` on a loopback address, i.e. a
    /// TLS-terminating egress proxy, since this build has no TLS client.
    #[serde(default)]
    pub io_base_url: Option<String>,
    /// APIM subscription key (`sender = "io"`).
    #[serde(default)]
    pub io_subscription_key: Option<Secret>,
    /// Message time to live, 3 600–604 800 s.
    #[serde(default = "default_ttl_seconds")]
    pub ttl_seconds: u32,
    /// Timeout of one IO request.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Outbox rows sent per poll.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Outbox poll interval.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_ttl_seconds() -> u32 {
    DEFAULT_TTL_SECONDS
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_batch_size() -> u32 {
    500
}
fn default_poll_ms() -> u64 {
    5_000
}

impl NotifyConfig {
    /// Settings for `sender` with every other field at its default.
    pub fn new(sender: SenderKind) -> NotifyConfig {
        NotifyConfig {
            sender,
            io_base_url: None,
            io_subscription_key: None,
            ttl_seconds: default_ttl_seconds(),
            timeout_ms: default_timeout_ms(),
            batch_size: default_batch_size(),
            poll_ms: default_poll_ms(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

/// Checks the IO base URL: `http://` on a loopback address (as `cashback acquirer run` does).
fn check_io_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("io_base_url: {url:?} is not a URL ({e})"))?;
    match parsed.scheme() {
        "https" => Err(format!(
            "io_base_url: {url}: this build has no TLS client; reach IO through a TLS-terminating proxy on a \
             loopback address (http://127.0.0.1:PORT)"
        )),
        "http" => {
            let host = parsed.host_str().unwrap_or("");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(())
            } else {
                Err(format!("io_base_url: {url}: plain http is allowed only on a loopback address"))
            }
        }
        other => Err(format!("io_base_url: {url}: unsupported scheme {other:?}")),
    }
}

/// Validates `config` and builds its sender. Errors name the offending field.
pub fn build_sender(config: &NotifyConfig) -> Result<Arc<dyn Sender>, String> {
    if !TTL_RANGE.contains(&config.ttl_seconds) {
        return Err(format!(
            "ttl_seconds: {} is outside IO's range {}..={}",
            config.ttl_seconds,
            TTL_RANGE.start(),
            TTL_RANGE.end()
        ));
    }
    for (field, value) in
        [("timeout_ms", config.timeout_ms), ("batch_size", config.batch_size.into()), ("poll_ms", config.poll_ms)]
    {
        if value == 0 {
            return Err(format!("{field}: must be greater than 0"));
        }
    }
    match config.sender {
        SenderKind::Log => Ok(Arc::new(LogSender::new())),
        SenderKind::Io => {
            let url = config.io_base_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
            let url = url.ok_or("io_base_url: required when sender = \"io\"")?;
            check_io_url(url)?;
            let key = config.io_subscription_key.as_ref().map(|k| k.expose().trim()).filter(|k| !k.is_empty());
            let key = key.ok_or("io_subscription_key: required when sender = \"io\"")?;
            Ok(Arc::new(IoSender::new(url, key, config.timeout())?.with_ttl_seconds(config.ttl_seconds)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<NotifyConfig, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    fn io(url: &str, key: &str) -> NotifyConfig {
        NotifyConfig {
            io_base_url: Some(url.into()),
            io_subscription_key: Some(Secret::new(key)),
            ..NotifyConfig::new(SenderKind::Io)
        }
    }

    fn build_err(config: &NotifyConfig) -> String {
        build_sender(config).err().expect("invalid config accepted")
    }

    #[test]
    fn defaults() {
        let config = parse(serde_json::json!({"sender": "log"})).unwrap();
        assert_eq!(config, NotifyConfig::new(SenderKind::Log));
        assert_eq!(
            (config.ttl_seconds, config.timeout_ms, config.batch_size, config.poll_ms),
            (3600, 10_000, 500, 5_000)
        );
        assert_eq!(config.poll_interval(), Duration::from_secs(5));
        assert!(build_sender(&config).is_ok());
    }

    #[test]
    fn strict_parsing() {
        let err = parse(serde_json::json!({"sender": "log", "batchsize": 1})).unwrap_err();
        assert!(err.contains("unknown field `batchsize`"), "{err}");
        let err = parse(serde_json::json!({"sender": "sms"})).unwrap_err();
        assert!(err.contains("unknown variant `sms`"), "{err}");
        assert!(parse(serde_json::json!({})).unwrap_err().contains("missing field `sender`"));
        let config = parse(serde_json::json!({
            "sender": "io", "io_base_url": "http://127.0.0.1:8080", "io_subscription_key": "k",
            "ttl_seconds": 7200, "timeout_ms": 500, "batch_size": 10, "poll_ms": 100
        }))
        .unwrap();
        assert_eq!(
            config,
            NotifyConfig {
                ttl_seconds: 7200,
                timeout_ms: 500,
                batch_size: 10,
                poll_ms: 100,
                ..io("http://127.0.0.1:8080", "k")
            }
        );
    }

    #[test]
    fn secrets() {
        let s: Secret = serde_json::from_str("\"s3cr3t\"").unwrap();
        assert_eq!(s.expose(), "s3cr3t");
        let c = s.clone();
        assert_eq!(c, Secret::new("s3cr3t"));
        assert_ne!(c, Secret::new("other"));
        assert!(std::ptr::eq(s.expose(), c.expose()), "clones share the one copy");
        assert_eq!(format!("{c:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn debug_redacts_the_subscription_key() {
        let dbg = format!("{:?}", io("http://127.0.0.1:8080", "s3cr3t-key"));
        assert!(!dbg.contains("s3cr3t-key") && dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn io_requires_url_and_key() {
        assert!(build_sender(&io("http://127.0.0.1:8080/", "key")).is_ok());
        assert!(build_sender(&io("http://localhost:8080", "key")).is_ok());
        assert!(build_sender(&io("http://[::1]:8080", "key")).is_ok());
        assert!(build_err(&NotifyConfig::new(SenderKind::Io)).starts_with("io_base_url: required"));
        assert!(build_err(&io(" ", "key")).starts_with("io_base_url: required"));
        assert!(build_err(&io("http://127.0.0.1:8080", " ")).starts_with("io_subscription_key: required"));
        let no_key = NotifyConfig { io_subscription_key: None, ..io("http://127.0.0.1:8080", "") };
        assert!(build_err(&no_key).starts_with("io_subscription_key: required"));
        assert!(build_err(&io("http://127.0.0.1:8080", "bad\nkey")).starts_with("io_subscription_key:"));
    }

    #[test]
    fn io_url_checks() {
        for (url, expected) in [
            ("not a url", "is not a URL"),
            ("https://api.io.italia.it", "no TLS client"),
            ("http://api.io.italia.it", "only on a loopback"),
            ("ftp://127.0.0.1", "unsupported scheme"),
        ] {
            let err = build_err(&io(url, "key"));
            assert!(err.starts_with("io_base_url: ") && err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn numeric_fields_are_checked() {
        let log = NotifyConfig::new(SenderKind::Log);
        assert!(build_err(&NotifyConfig { ttl_seconds: 3599, ..log.clone() }).starts_with("ttl_seconds:"));
        assert!(build_err(&NotifyConfig { ttl_seconds: 604_801, ..log.clone() }).starts_with("ttl_seconds:"));
        assert!(build_sender(&NotifyConfig { ttl_seconds: 604_800, ..log.clone() }).is_ok());
        assert!(build_err(&NotifyConfig { timeout_ms: 0, ..log.clone() }).starts_with("timeout_ms:"));
        assert!(build_err(&NotifyConfig { batch_size: 0, ..log.clone() }).starts_with("batch_size:"));
        assert!(build_err(&NotifyConfig { poll_ms: 0, ..log }).starts_with("poll_ms:"));
    }
}
