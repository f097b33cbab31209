//! Configuration: built-in defaults → optional TOML file (`--config`) → environment variables
//! and flags (clap, `CASHBACK_*`). Secrets may be given inline, by file, or by environment.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cashback_api::state::Secret;
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database: Option<String>,
    /// A PostgreSQL read replica for the reads that tolerate lag (`--database-replica`).
    pub database_replica: Option<String>,
    pub dev: Option<bool>,
    /// The PAN hashing salt, or `salt_file`.
    pub salt: Option<Secret>,
    pub salt_file: Option<PathBuf>,
    #[serde(default)]
    pub identity: IdentityConfig,
    pub iban_check: Option<IbanCheckConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    #[serde(default)]
    pub sqlite: SqliteConfig,
    #[serde(default)]
    pub postgres: PostgresConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub acquirer: AcquirerConfig,
    #[serde(default)]
    pub ranking: RankingConfig,
    #[serde(default)]
    pub payout: PayoutConfig,
    /// Citizen notifications (default: the log sender).
    pub notifications: Option<cashback_notify::NotifyConfig>,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub privacy: PrivacyConfig,
}

/// Personal data retention (`docs/security.md`, "Privacy").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Days a withdrawn citizen's data is kept (and everyone's after the last period's complaint
    /// window); the scheduler erases it once a day after that. Default 3650 (10 years).
    pub retention_days: u32,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { retention_days: cashback_domain::award::RETENTION_DAYS_DEFAULT }
    }
}

impl FileConfig {
    /// The notification settings: the configured ones, or the log sender with defaults.
    pub fn notifications(&self) -> cashback_notify::NotifyConfig {
        self.notifications
            .clone()
            .unwrap_or_else(|| cashback_notify::NotifyConfig::new(cashback_notify::SenderKind::Log))
    }
}

/// Payout files to the payout agent (Consap).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutConfig {
    /// Where payout files are written (a transfer agent picks them up from there).
    pub out_dir: PathBuf,
    /// The agent's ASCII-armoured OpenPGP public key: files are written as `<name>.pgp`. Without
    /// one the plain CSV is written (development).
    pub agent_public_key_file: Option<PathBuf>,
    /// Most rows per file (at most 1,000,000).
    pub max_rows: usize,
    /// Also write each file as a SEPA credit transfer (pain.001.001.03) from this account.
    pub sepa: Option<SepaConfig>,
}

impl Default for PayoutConfig {
    fn default() -> Self {
        Self { out_dir: PathBuf::from("payout"), agent_public_key_file: None, max_rows: 1_000_000, sepa: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SepaConfig {
    pub debtor_name: String,
    pub debtor_iban: String,
    pub debtor_bic: Option<String>,
}

/// The period-close scheduler and the notification dispatcher of `serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    pub enabled: bool,
    /// Seconds between scheduler ticks.
    pub tick_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { enabled: true, tick_secs: 60 }
    }
}

/// TLS of the listener (`[tls]`; flags `--tls-*` and `CASHBACK_TLS_*` win). Without `cert`
/// and `key` the listener speaks plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM: the server certificate and its intermediates.
    pub cert: Option<PathBuf>,
    /// PEM: the server's private key.
    pub key: Option<PathBuf>,
    /// PEM: the CA that issuers' and acquirers' client certificates chain to (mutual TLS).
    /// Client certificates are then asked for but optional at the TLS layer.
    pub client_ca: Option<PathBuf>,
    /// Issuer and acquirer API keys are accepted only with the client certificate bound to
    /// their credential (`cashback admin credential-bind-cert`).
    pub require_client_cert: bool,
    /// A TLS handshake not finished within this is dropped.
    pub handshake_timeout_ms: u64,
    /// Handshakes in progress at once.
    pub handshakes_max: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        let d = cashback_api::tls::HandshakeLimits::default();
        Self {
            cert: None,
            key: None,
            client_ca: None,
            require_client_cert: false,
            handshake_timeout_ms: d.timeout.as_millis() as u64,
            handshakes_max: d.concurrent,
        }
    }
}

/// The web console's background work in `serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Seconds between snapshots of the open periods' rankings (the ranking history; the last
    /// snapshot of a day stays). One is also taken as soon as the rankings are loaded.
    pub snapshot_interval_secs: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { snapshot_interval_secs: 300 }
    }
}

impl ConsoleConfig {
    pub fn snapshot_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.snapshot_interval_secs.max(1))
    }
}

/// The in-memory Super Cashback rankings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankingConfig {
    /// How often the change feed of standings is read, in milliseconds.
    pub refresh_ms: u64,
    /// Changes read per store call.
    pub page_rows: u32,
    /// How long a ranking request waits for the rankings to catch up with the totals it read.
    pub read_wait_ms: u64,
}

impl Default for RankingConfig {
    fn default() -> Self {
        let d = cashback_api::ranking::RankingConfig::default();
        Self {
            refresh_ms: d.refresh.as_millis() as u64,
            page_rows: d.page_rows,
            read_wait_ms: d.read_wait.as_millis() as u64,
        }
    }
}

impl RankingConfig {
    pub fn board(&self) -> cashback_api::ranking::RankingConfig {
        cashback_api::ranking::RankingConfig {
            refresh: std::time::Duration::from_millis(self.refresh_ms.max(1)),
            page_rows: self.page_rows.max(1),
            read_wait: std::time::Duration::from_millis(self.read_wait_ms),
        }
    }
}

/// The acquirer API and file ingestion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcquirerConfig {
    /// ASCII-armoured OpenPGP secret key of the platform (`cashback admin pgp-keygen`). In
    /// `--dev` without one, `cashback-dev-pgp.asc` is used, generated on first start.
    pub pgp_secret_key_file: Option<PathBuf>,
    /// Passphrase of that key, or `CASHBACK_PGP_PASSPHRASE`.
    pub pgp_passphrase_file: Option<PathBuf>,
    /// Uploads and decrypted copies are spooled here while ingested.
    pub spool_dir: PathBuf,
    pub upload_bytes_max: u64,
    pub ingest_concurrency: usize,
    pub upload_timeout_secs: u64,
    pub snapshot_max_age_secs: u64,
    pub hashed_pans_max_age_secs: u64,
    pub chunk_rows: usize,
}

impl Default for AcquirerConfig {
    fn default() -> Self {
        let d = cashback_api::rtd::RtdConfig::default();
        Self {
            pgp_secret_key_file: None,
            pgp_passphrase_file: None,
            spool_dir: d.spool_dir,
            upload_bytes_max: d.upload_bytes_max,
            ingest_concurrency: d.ingest_concurrency,
            upload_timeout_secs: d.upload_timeout.as_secs(),
            snapshot_max_age_secs: d.snapshot_max_age.as_secs(),
            hashed_pans_max_age_secs: d.hashed_pans_max_age.as_secs(),
            chunk_rows: d.chunk_rows,
        }
    }
}

impl AcquirerConfig {
    pub fn rtd(&self) -> cashback_api::rtd::RtdConfig {
        cashback_api::rtd::RtdConfig {
            spool_dir: self.spool_dir.clone(),
            upload_bytes_max: self.upload_bytes_max,
            ingest_concurrency: self.ingest_concurrency.max(1),
            upload_timeout: std::time::Duration::from_secs(self.upload_timeout_secs),
            snapshot_max_age: std::time::Duration::from_secs(self.snapshot_max_age_secs),
            hashed_pans_max_age: std::time::Duration::from_secs(self.hashed_pans_max_age_secs),
            chunk_rows: self.chunk_rows.max(1),
            ..Default::default()
        }
    }
}

/// The dev-mode key file, generated on first use.
pub const DEV_PGP_KEY_FILE: &str = "cashback-dev-pgp.asc";

/// The platform's OpenPGP key: the configured file, or in dev mode the generated dev key.
pub fn platform_key(cfg: &AcquirerConfig, dev: bool) -> anyhow::Result<Option<cashback_pgp::PlatformKey>> {
    let passphrase = match std::env::var("CASHBACK_PGP_PASSPHRASE").ok() {
        Some(p) => Some(Secret::new(p)),
        None => secret("acquirer.pgp_passphrase", None, cfg.pgp_passphrase_file.as_deref())?,
    };
    let path = match (&cfg.pgp_secret_key_file, dev) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let p = PathBuf::from(DEV_PGP_KEY_FILE);
            if !p.exists() {
                let key = cashback_pgp::PlatformKey::generate("cashback dev <dev@cashback.invalid>")?;
                write_private(&p, &Zeroizing::new(key.to_armored()))?;
                tracing::warn!(path = %p.display(), "generated a development OpenPGP key");
            }
            p
        }
        (None, false) => return Ok(None),
    };
    // The armoured key is wiped once parsed (rPGP zeroes its own copy of the secret material).
    let text = Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("acquirer.pgp_secret_key_file: reading {}", path.display()))?,
    );
    let key = cashback_pgp::PlatformKey::from_armored(&text, passphrase.as_ref().map(Secret::expose))
        .with_context(|| format!("acquirer.pgp_secret_key_file: {}", path.display()))?;
    Ok(Some(key))
}

/// Write a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// HS256 secret for bearer JWTs (sub = fiscal code), or `jwt_secret_file`.
    pub jwt_secret: Option<Secret>,
    pub jwt_secret_file: Option<PathBuf>,
    /// io-backend-like introspection endpoint (`GET` with the bearer token → `{fiscal_code}`).
    pub introspection_url: Option<String>,
    #[serde(default = "default_5000")]
    pub introspection_timeout_ms: u64,
    #[serde(default = "default_3600")]
    pub cache_ttl_secs: u64,
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_secret_file: None,
            introspection_url: None,
            introspection_timeout_ms: default_5000(),
            cache_ttl_secs: default_3600(),
            cache_entries: default_cache_entries(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IbanCheckConfig {
    pub url: String,
    #[serde(default = "default_5000")]
    pub timeout_ms: u64,
}

/// `[rate_limits.<who>]`: `per_second` (0 = off) and `burst`, per citizen / issuer key /
/// acquirer key / Payment Manager / operator key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    pub citizen: RateCfg,
    pub issuer: RateCfg,
    pub acquirer: RateCfg,
    pub payment_manager: RateCfg,
    pub operator: RateCfg,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RateCfg {
    pub per_second: u32,
    pub burst: u32,
}

impl From<cashback_api::rate::Rate> for RateCfg {
    fn from(r: cashback_api::rate::Rate) -> Self {
        RateCfg { per_second: r.per_second, burst: r.burst }
    }
}

impl From<RateCfg> for cashback_api::rate::Rate {
    fn from(r: RateCfg) -> Self {
        cashback_api::rate::Rate { per_second: r.per_second, burst: r.burst }
    }
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        let d = cashback_api::rate::RateConfig::default();
        RateLimitsConfig {
            citizen: d.citizen.into(),
            issuer: d.issuer.into(),
            acquirer: d.acquirer.into(),
            payment_manager: d.payment_manager.into(),
            operator: d.operator.into(),
        }
    }
}

impl RateLimitsConfig {
    pub fn rates(&self) -> cashback_api::rate::RateConfig {
        cashback_api::rate::RateConfig {
            citizen: self.citizen.into(),
            issuer: self.issuer.into(),
            acquirer: self.acquirer.into(),
            payment_manager: self.payment_manager.into(),
            operator: self.operator.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub body_bytes_max: usize,
    pub concurrency_max: usize,
    pub request_timeout_ms: u64,
    pub credential_cache_ttl_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = cashback_api::state::HttpLimits::default();
        Self {
            body_bytes_max: d.body_bytes_max,
            concurrency_max: d.concurrency_max,
            request_timeout_ms: d.request_timeout.as_millis() as u64,
            credential_cache_ttl_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    pub queue_capacity: usize,
    pub batch_max: usize,
    pub readers: usize,
    pub synchronous_full: bool,
    /// How long the writer waits for a lock held by another process before its batch fails
    /// (503 + Retry-After to the waiting requests).
    pub busy_timeout_ms: u64,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        let d = cashback_store_sqlite::SqliteOptions::default();
        Self {
            queue_capacity: d.queue_capacity,
            batch_max: d.batch_max,
            readers: d.readers,
            synchronous_full: d.synchronous_full,
            busy_timeout_ms: d.busy_timeout.as_millis() as u64,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    /// A node's claim on an acquirer file it ingests lasts this long unless a chunk renews it;
    /// then another node may take the file over (when the acquirer uploads it again).
    pub file_lease_secs: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self { max_connections: 16, acquire_timeout_ms: 3000, file_lease_secs: 60 }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// "text" (default) or "json".
    pub format: Option<String>,
}

fn default_5000() -> u64 {
    5000
}
fn default_3600() -> u64 {
    3600
}
fn default_cache_entries() -> usize {
    1_000_000
}

pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// A secret from an inline value or a file (trailing newline trimmed in place, so no copy of the
/// value is left behind); both set is an error.
pub fn secret(name: &str, inline: Option<Secret>, file: Option<&Path>) -> anyhow::Result<Option<Secret>> {
    match (inline, file) {
        (Some(_), Some(_)) => bail!("{name}: set either the value or the file, not both"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(f)) => {
            let mut v = std::fs::read_to_string(f).with_context(|| format!("{name}: reading {}", f.display()))?;
            let len = v.trim_end_matches(['\n', '\r']).len();
            v.truncate(len);
            Ok(Some(Secret::new(v)))
        }
        (None, None) => Ok(None),
    }
}

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

pub fn parse_database_url(url: &str) -> anyhow::Result<DatabaseUrl> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        if rest.is_empty() {
            bail!("database: sqlite URL needs a path, e.g. sqlite://cashback.db");
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)))
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        Ok(DatabaseUrl::Sqlite(PathBuf::from(rest)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseUrl::Postgres(url.to_owned()))
    } else {
        bail!("database: unsupported URL (use sqlite://PATH or postgres://…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(parse_database_url("sqlite://cashback.db").unwrap(), DatabaseUrl::Sqlite("cashback.db".into()));
        assert_eq!(parse_database_url("sqlite:///tmp/x.db").unwrap(), DatabaseUrl::Sqlite("/tmp/x.db".into()));
        assert!(matches!(parse_database_url("postgres://u@h/db").unwrap(), DatabaseUrl::Postgres(_)));
        assert!(parse_database_url("mysql://x").is_err());
        assert!(parse_database_url("sqlite://").is_err());
    }

    #[test]
    fn config_rejects_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nbogus = 1\n").is_err());
        let c: FileConfig = toml::from_str("[identity]\njwt_secret = \"s\"\n[limits]\nconcurrency_max = 10\n").unwrap();
        assert_eq!(c.limits.concurrency_max, 10);
        assert_eq!(c.identity.jwt_secret.as_ref().map(Secret::expose), Some("s"));
        assert!(!format!("{c:?}").contains("jwt_secret: Some(\"s\")"), "secrets are redacted in Debug");
        assert_eq!(c.identity.introspection_timeout_ms, 5000);
        let none = FileConfig::default();
        assert_eq!(none.identity.introspection_timeout_ms, 5000);
        assert_eq!(none.identity.cache_ttl_secs, 3600);
        assert!(none.identity.cache_entries > 0);
        assert_eq!((none.ranking.refresh_ms, none.ranking.page_rows), (250, 100_000));
        let r: FileConfig = toml::from_str("[ranking]\nrefresh_ms = 50\npage_rows = 10\n").unwrap();
        assert_eq!(r.ranking.board().refresh, std::time::Duration::from_millis(50));
        assert_eq!(r.ranking.board().page_rows, 10);
        assert!(toml::from_str::<FileConfig>("[ranking]\nbogus = 1\n").is_err());
        assert_eq!(none.console.snapshot_interval(), std::time::Duration::from_secs(300));
        let c: FileConfig = toml::from_str("[console]\nsnapshot_interval_secs = 60\n").unwrap();
        assert_eq!(c.console.snapshot_interval(), std::time::Duration::from_secs(60));
        assert!(toml::from_str::<FileConfig>("[console]\nbogus = 1\n").is_err());
        assert_eq!(none.rate_limits.rates(), cashback_api::rate::RateConfig::default());
        let r: FileConfig = toml::from_str("[rate_limits.citizen]\nper_second = 0\nburst = 0\n").unwrap();
        assert_eq!(r.rate_limits.rates().citizen, cashback_api::rate::Rate::OFF);
        assert!(toml::from_str::<FileConfig>("[rate_limits.citizen]\nper_second = 1\n").is_err(), "burst is required");
        assert!(none.tls.cert.is_none() && !none.tls.require_client_cert, "plain HTTP by default");
        let t: FileConfig =
            toml::from_str("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nrequire_client_cert = true\n").unwrap();
        assert_eq!(t.tls.cert.as_deref(), Some(Path::new("c.pem")));
        assert!(t.tls.require_client_cert);
        assert_eq!(t.tls.handshake_timeout_ms, 10_000);
        assert!(toml::from_str::<FileConfig>("[tls]\ncertificate = \"c.pem\"\n").is_err());
    }
}
