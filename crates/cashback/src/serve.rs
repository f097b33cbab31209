//! `serve`, `migrate` and `admin`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use cashback_api::auth::{CredentialCache, IdentityResolver, IntrospectionResolver, JwtResolver, sha256_hex};
use cashback_api::iban_check::{HttpIbanChecker, IbanChecker};
use cashback_api::ranking::RankingBoard;
use cashback_api::state::{AppState, Clock, HttpLimits, Secret, system_clock};
use cashback_domain::AwardPeriod;
use cashback_store::{Credential, CredentialKind, Store};
use clap::Subcommand;
use time::OffsetDateTime;

use crate::config::{self, DatabaseUrl, FileConfig};
use crate::{DbArgs, ServeArgs};

/// The fixed salt of `--dev` (public: never use it for real cards).
pub const DEV_SALT: &str = "cashback-dev-salt";
/// The fixed JWT secret of `--dev` (public).
pub const DEV_JWT_SECRET: &str = "cashback-dev-jwt-secret";
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_DATABASE: &str = "sqlite://cashback.db";

pub(crate) fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// Logs of the one-shot commands go to stderr: their stdout is the JSON result.
pub(crate) fn init_cli_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr).try_init();
}

pub(crate) async fn open_store(url: &str, cfg: &FileConfig) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config::parse_database_url(url)? {
        DatabaseUrl::Sqlite(path) => {
            let opts = cashback_store_sqlite::SqliteOptions {
                queue_capacity: cfg.sqlite.queue_capacity,
                batch_max: cfg.sqlite.batch_max,
                readers: cfg.sqlite.readers,
                synchronous_full: cfg.sqlite.synchronous_full,
                busy_timeout: Duration::from_millis(cfg.sqlite.busy_timeout_ms),
                ..Default::default()
            };
            cashback_store_sqlite::SqliteStore::open(&path, opts)
                .with_context(|| format!("opening {}", path.display()))?
        }
        DatabaseUrl::Postgres(url) => {
            let opts = cashback_store_postgres::PgOptions {
                max_connections: cfg.postgres.max_connections,
                acquire_timeout: Duration::from_millis(cfg.postgres.acquire_timeout_ms),
                file_lease: Duration::from_secs(cfg.postgres.file_lease_secs.max(1)),
                ..Default::default()
            };
            cashback_store_postgres::PgStore::connect(&url, opts).await.context("connecting to PostgreSQL")?
        }
    })
}

/// The read replica of `serve` (`--database-replica`, `CASHBACK_DATABASE_REPLICA_URL` or
/// `database_replica`): PostgreSQL only, next to a PostgreSQL primary.
async fn open_replica(
    args: &ServeArgs,
    cfg: &FileConfig,
    primary: &Arc<dyn Store>,
) -> anyhow::Result<Option<Arc<dyn Store>>> {
    let Some(url) = args.database_replica.clone().or_else(|| cfg.database_replica.clone()) else {
        return Ok(None);
    };
    let DatabaseUrl::Postgres(url) = config::parse_database_url(&url).context("database_replica")? else {
        bail!("database_replica: must be a postgres:// URL");
    };
    if primary.backend() != "postgres" {
        bail!("database_replica: needs a PostgreSQL primary (--database postgres://…)");
    }
    let opts = cashback_store_postgres::PgOptions {
        max_connections: cfg.postgres.max_connections,
        acquire_timeout: Duration::from_millis(cfg.postgres.acquire_timeout_ms),
        ..Default::default()
    };
    let replica = cashback_store_postgres::PgStore::connect_replica(&url, opts)
        .await
        .context("connecting to the PostgreSQL read replica")?;
    tracing::info!("read replica connected: lag-tolerant reads go to it");
    Ok(Some(replica))
}

pub(crate) fn database_url(db: &DbArgs, cfg: &FileConfig) -> String {
    db.database.clone().or_else(|| cfg.database.clone()).unwrap_or_else(|| DEFAULT_DATABASE.to_owned())
}

pub async fn migrate(db: DbArgs) -> anyhow::Result<()> {
    init_cli_tracing();
    let cfg = config::load(db.config.as_deref())?;
    let url = database_url(&db, &cfg);
    let applied = match config::parse_database_url(&url)? {
        DatabaseUrl::Sqlite(path) => cashback_store_sqlite::SqliteStore::migrate_only(&path)?,
        DatabaseUrl::Postgres(url) => cashback_store_postgres::PgStore::migrate_only(&url).await?,
    };
    println!("migrations applied: {applied}");
    Ok(())
}

fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)?
        .set_buckets_for_metric(Matcher::Full("cashback_writer_batch_size".into()), &batch)?
        .install_recorder()
        .context("installing the metrics recorder")
}

/// The application state of a node: identity, credentials, limits, the acquirer API's key and
/// the (empty) rankings, on `store` with `clock` as "now". `serve` and `simulate` share it.
pub(crate) fn build_state(
    args: &ServeArgs,
    cfg: &FileConfig,
    dev: bool,
    store: Arc<dyn Store>,
    reads: Arc<dyn Store>,
    clock: Clock,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> anyhow::Result<(Arc<AppState>, Arc<RankingBoard>)> {
    let salt = match args.salt.clone().map(Secret::new).or(config::secret(
        "salt",
        cfg.salt.clone(),
        cfg.salt_file.as_deref(),
    )?) {
        Some(s) if !s.expose().is_empty() => s,
        _ if dev => Secret::new(DEV_SALT),
        _ => bail!("salt: required outside --dev (CASHBACK_SALT, --salt, or salt/salt_file in the config file)"),
    };
    let jwt_secret = args.jwt_secret.clone().map(Secret::new).or(config::secret(
        "identity.jwt_secret",
        cfg.identity.jwt_secret.clone(),
        cfg.identity.jwt_secret_file.as_deref(),
    )?);
    let introspection = args.introspection_url.clone().or(cfg.identity.introspection_url.clone());
    let identity: Arc<dyn IdentityResolver> = match (introspection, jwt_secret) {
        (Some(url), _) => Arc::new(IntrospectionResolver::new(
            url,
            Duration::from_millis(cfg.identity.introspection_timeout_ms),
            Duration::from_secs(cfg.identity.cache_ttl_secs),
            cfg.identity.cache_entries,
        )),
        (None, Some(secret)) => Arc::new(JwtResolver::hs256(&secret)),
        (None, None) if dev => Arc::new(JwtResolver::hs256(&Secret::new(DEV_JWT_SECRET))),
        (None, None) => bail!("identity: configure introspection_url or jwt_secret (or run with --dev)"),
    };
    let iban_url = args.iban_check_url.clone().or(cfg.iban_check.as_ref().map(|c| c.url.clone()));
    let iban_checker: Option<Arc<dyn IbanChecker>> = iban_url.map(|u| {
        let t = cfg.iban_check.as_ref().map(|c| c.timeout_ms).unwrap_or(5000);
        Arc::new(HttpIbanChecker::new(u, Duration::from_millis(t))) as Arc<dyn IbanChecker>
    });

    let pgp_key = config::platform_key(&cfg.acquirer, dev)?.map(Arc::new);
    match &pgp_key {
        Some(k) => tracing::info!(fingerprint = %k.fingerprint_hex(), "OpenPGP key loaded"),
        None => tracing::warn!("no OpenPGP key configured (acquirer.pgp_secret_key_file): .pgp uploads are refused"),
    }
    let salt_secret = salt;
    let ranking = Arc::new(RankingBoard::new(cfg.ranking.board()));
    let state = Arc::new(AppState {
        store,
        reads,
        identity,
        credentials: CredentialCache::new(Duration::from_secs(cfg.limits.credential_cache_ttl_secs)),
        iban_checker,
        salt: salt_secret.clone(),
        clock,
        dev,
        dev_jwt_secret: dev.then(|| Secret::new(DEV_JWT_SECRET)),
        limits: HttpLimits {
            body_bytes_max: cfg.limits.body_bytes_max,
            concurrency_max: cfg.limits.concurrency_max,
            request_timeout: Duration::from_millis(cfg.limits.request_timeout_ms),
        },
        periods: RwLock::new(Arc::new(Vec::new())),
        metrics,
        rtd: cashback_api::rtd::RtdState::new(cfg.acquirer.rtd(), pgp_key, &salt_secret),
        rate: cashback_api::rate::RateLimits::new(cfg.rate_limits.rates()),
        ranking: ranking.clone(),
        console: Default::default(),
        client_cert_required: require_client_cert(args, cfg),
    });
    Ok((state, ranking))
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = config::load(args.db.config.as_deref())?;
    init_tracing(cfg.log.format.as_deref() == Some("json"));
    let dev = args.dev || cfg.dev.unwrap_or(false);
    let listen = match args.listen {
        Some(a) => a,
        None => cfg.listen.as_deref().unwrap_or(DEFAULT_LISTEN).parse().context("listen: not a socket address")?,
    };
    let url = database_url(&args.db, &cfg);

    let metrics = install_metrics()?;
    let store = open_store(&url, &cfg).await?;
    let seeded = store.seed_award_periods(&cashback_domain::period::default_programme()).await?;
    if seeded > 0 {
        tracing::info!(seeded, "default award periods seeded");
    }
    let reads = open_replica(&args, &cfg, &store).await?.unwrap_or_else(|| store.clone());
    let (state, ranking) = build_state(&args, &cfg, dev, store.clone(), reads.clone(), system_clock(), Some(metrics))?;
    {
        // Buckets of idle clients are dropped, so memory follows the recently active ones.
        let st = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                st.rate.prune();
            }
        });
    }
    state.refresh_periods().await?;
    {
        // Award periods change only by operator action (possibly from another process).
        let st = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                if let Err(e) = st.refresh_periods().await {
                    tracing::warn!(error = %e, "refreshing award periods failed");
                }
            }
        });
    }
    // The rankings: first load in the background (ranking endpoints answer 503 until it is
    // done), then the change feed every `ranking.refresh_ms`.
    // With a replica, the feed is read there: a node's board lags the primary by the replica's
    // lag plus one refresh (uploads and citizens' own reads still catch up on the primary).
    tokio::spawn(ranking.run_refresher(reads.clone()));
    // The ranking history of the console: a snapshot of every open period once the rankings are
    // loaded, then every `console.snapshot_interval_secs`.
    tokio::spawn(run_ranking_snapshots(state.clone(), cfg.console.snapshot_interval()));
    // Period close: the scheduler (each step once across all nodes) and the outbox dispatcher.
    if cfg.scheduler.enabled {
        let ncfg = cfg.notifications();
        let sender = cashback_notify::build_sender(&ncfg).map_err(|e| anyhow::anyhow!("notifications.{e}"))?;
        tokio::spawn(crate::period::run_dispatcher(store.clone(), sender, ncfg));
        let tick = Duration::from_secs(cfg.scheduler.tick_secs.max(1));
        tokio::spawn(crate::period::run_scheduler(store.clone(), cfg.payout.clone(), cfg.privacy.retention_days, tick));
    }
    let app = cashback_api::router(state.clone());
    let tls = tls_setup(&args, &cfg)?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%listen, scheme, backend = store.backend(), dev, openapi = cashback_api::OPENAPI_PATH, "cashback serving");
    match tls {
        Some((config, limits)) => {
            use cashback_api::tls::{TlsListener, TlsPeer};
            let listener = TlsListener::new(listener, config, limits)?;
            axum::serve(listener, app.into_make_service_with_connect_info::<TlsPeer>())
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?,
    }
    tracing::info!("draining writes");
    store.close().await;
    reads.close().await;
    tracing::info!("stopped");
    Ok(())
}

type TlsListenerConfig = (Arc<rustls::ServerConfig>, cashback_api::tls::HandshakeLimits);

/// The listener's TLS from the flags over `[tls]`; `None` = plain HTTP.
fn tls_setup(args: &ServeArgs, cfg: &FileConfig) -> anyhow::Result<Option<TlsListenerConfig>> {
    let (a, c) = (&args.tls, &cfg.tls);
    let cert = a.tls_cert.as_ref().or(c.cert.as_ref());
    let key = a.tls_key.as_ref().or(c.key.as_ref());
    let client_ca = a.tls_client_ca.as_ref().or(c.client_ca.as_ref());
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if client_ca.is_some() || require_client_cert(args, cfg) {
                bail!("tls: a client CA or required client certificates need TLS (--tls-cert and --tls-key)");
            }
            return Ok(None);
        }
        _ => bail!("tls: give both the certificate chain and the private key (--tls-cert, --tls-key)"),
    };
    if require_client_cert(args, cfg) && client_ca.is_none() {
        bail!("tls: requiring client certificates needs their CA (--tls-client-ca or [tls] client_ca)");
    }
    let files = cashback_api::tls::TlsFiles { cert, key, client_ca: client_ca.map(|p| p.as_path()) };
    let config = cashback_api::tls::server_config(&files).map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    let limits = cashback_api::tls::HandshakeLimits {
        timeout: Duration::from_millis(c.handshake_timeout_ms.max(1)),
        concurrent: c.handshakes_max.max(1),
    };
    tracing::info!(client_ca = client_ca.is_some(), require_client_cert = require_client_cert(args, cfg), "TLS on");
    Ok(Some((config, limits)))
}

fn require_client_cert(args: &ServeArgs, cfg: &FileConfig) -> bool {
    args.tls.tls_require_client_cert || cfg.tls.require_client_cert
}

/// Record the open periods' ranking snapshots (`cashback_api::ranking::record_ranking_snapshots`)
/// as soon as the board is loaded, then every `every`. Failures are logged and retried at the
/// next tick.
async fn run_ranking_snapshots(st: Arc<AppState>, every: Duration) {
    while !st.ranking.ready() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match cashback_api::ranking::record_ranking_snapshots(&st.ranking, st.store.as_ref(), &st.periods(), st.now())
            .await
        {
            Ok(n) => tracing::debug!(periods = n, "ranking snapshots recorded"),
            Err(e) => tracing::warn!(error = %e, "recording the ranking snapshots failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested");
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a credential; prints the API key once (only its SHA-256 is stored).
    CredentialCreate {
        /// issuer, acquirer, payment-manager or operator.
        #[arg(long)]
        kind: String,
        /// Issuer: enrollment channel; acquirer: ABI code; payment-manager, operator: a label.
        #[arg(long)]
        scope: String,
        /// Identifier (default: KIND-SCOPE).
        #[arg(long)]
        id: Option<String>,
        /// Bind the key to this client certificate (PEM; mutual TLS): see credential-bind-cert.
        #[arg(long)]
        client_cert: Option<std::path::PathBuf>,
    },
    /// Bind a credential's API key to a client certificate (mutual TLS): the key is then accepted
    /// only on TLS connections that present that certificate. Give the certificate (PEM) or its
    /// SHA-256 fingerprint; --unbind removes the binding. Running servers apply it within the
    /// credential cache TTL.
    CredentialBindCert {
        id: String,
        /// The client certificate, PEM (its first certificate is bound).
        #[arg(long, conflicts_with_all = ["sha256", "unbind"])]
        cert: Option<std::path::PathBuf>,
        /// Its SHA-256 (64 hex digits; colons allowed, as `openssl x509 -fingerprint -sha256` prints).
        #[arg(long, conflicts_with = "unbind")]
        sha256: Option<String>,
        #[arg(long)]
        unbind: bool,
    },
    /// List credentials (never the keys).
    CredentialList,
    /// Revoke a credential by id.
    CredentialRevoke { id: String },
    /// Generate the platform's OpenPGP key pair: the secret key goes to OUT (mode 0600; point
    /// acquirer.pgp_secret_key_file at it), the public key is printed.
    PgpKeygen {
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value = "cashback platform")]
        user_id: String,
    },
    /// List award periods.
    PeriodList,
    /// Create or replace an award period.
    PeriodSet {
        #[arg(long)]
        id: i64,
        /// YYYY-MM-DD
        #[arg(long)]
        start: String,
        /// YYYY-MM-DD
        #[arg(long)]
        end: String,
        #[arg(long, default_value_t = 10)]
        grace_days: u32,
        #[arg(long, default_value_t = 50)]
        min_transactions: u32,
        /// Ranking positions awarded the Super Cashback (0 = none).
        #[arg(long, default_value_t = 100_000)]
        super_cashback_positions: u32,
        /// Super Cashback prize, euro-cents.
        #[arg(long, default_value_t = 150_000)]
        super_cashback_cents: i64,
        #[arg(long, default_value_t = 10)]
        percentage: u32,
        #[arg(long, default_value_t = 15_000)]
        max_evaluated_cents: i64,
        #[arg(long, default_value_t = 1_500)]
        max_transaction_cashback_cents: i64,
        #[arg(long, default_value_t = 15_000)]
        max_period_cashback_cents: i64,
        /// Anti-abuse: a payment counts only if its net amount is at least this (euro-cents).
        #[arg(long)]
        min_amount_cents: Option<i64>,
        /// Anti-abuse: at most this many counted payments per citizen, merchant and day.
        #[arg(long)]
        max_payments_per_merchant_day: Option<u32>,
        /// How long a reversal waits for its payment, in days of reception time.
        #[arg(long, default_value_t = 30)]
        reversal_retention_days: u32,
    },
    /// Print a period's Super Cashback ranking as the operators' API shows it (JSON), from a
    /// full load of the stored standings.
    Ranking {
        #[arg(long)]
        period: i64,
        /// Citizens listed (at most 1000).
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Print the audit trail (JSON lines, newest first), filtered by subject, actor, action and
    /// time.
    Audit {
        /// A fiscal code, an hpan, period:ID, credential:ID, complaint:ID, …
        #[arg(long)]
        subject: Option<String>,
        /// citizen:CF, issuer:ID, operator:ID, cli:USER, system, …
        #[arg(long)]
        actor: Option<String>,
        /// e.g. instrument.enrolled
        #[arg(long)]
        action: Option<String>,
        /// RFC 3339, inclusive.
        #[arg(long)]
        since: Option<String>,
        /// RFC 3339, exclusive.
        #[arg(long)]
        until: Option<String>,
        /// Events printed (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print everything the platform holds about a citizen (JSON), to answer a data access
    /// request.
    CitizenExport {
        #[arg(long)]
        fiscal_code: String,
    },
    /// Erase the personal data whose retention period is over (`docs/security.md`, "Privacy");
    /// `serve` does it once a day.
    EraseExpired {
        /// Days of retention (default: `privacy.retention_days` of the config, 3650).
        #[arg(long)]
        retention_days: Option<u32>,
        /// The instant to act as (RFC 3339; default now).
        #[arg(long)]
        now: Option<String>,
    },
}

fn parse_time(field: &str, s: Option<&str>) -> anyhow::Result<Option<OffsetDateTime>> {
    s.map(|v| {
        OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("{field}: expected an RFC 3339 time, e.g. 2021-01-31T23:00:00Z"))
    })
    .transpose()
}

/// The SHA-256 of the first certificate of a PEM file.
fn cert_fingerprint(path: &std::path::Path) -> anyhow::Result<String> {
    let certs = cashback_api::tls::read_certs(path).map_err(|e| anyhow::anyhow!("client certificate: {e}"))?;
    Ok(cashback_api::tls::cert_sha256(&certs[0]))
}

fn parse_date(field: &str, s: &str) -> anyhow::Result<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .with_context(|| format!("{field}: expected YYYY-MM-DD"))
}

/// Create a credential with a fresh random API key; only the key's SHA-256 is stored. Returns the
/// credential and the key (shown once).
pub(crate) async fn create_credential(
    store: &Arc<dyn Store>,
    kind: CredentialKind,
    scope: String,
    id: Option<String>,
    now: OffsetDateTime,
) -> anyhow::Result<(Credential, zeroize::Zeroizing<String>)> {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| anyhow::anyhow!("random key: {e}"))?;
    let key = zeroize::Zeroizing::new(hex::encode(raw.as_ref()));
    let cred = Credential {
        id: id.unwrap_or_else(|| format!("{}-{scope}", kind.as_str())),
        kind,
        scope,
        key_sha256: sha256_hex(key.as_bytes()),
        created_at: now,
        revoked_at: None,
        client_cert_sha256: None,
    };
    store.insert_credential(&cred).await.context("creating the credential (is the id already used?)")?;
    Ok((cred, key))
}

pub async fn admin(db: DbArgs, cmd: AdminCommand) -> anyhow::Result<()> {
    init_cli_tracing();
    if let AdminCommand::PgpKeygen { out, user_id } = &cmd {
        let key = cashback_pgp::PlatformKey::generate(user_id)?;
        config::write_private(out, &zeroize::Zeroizing::new(key.to_armored()))?;
        eprintln!("secret key written to {} (fingerprint {})", out.display(), key.fingerprint_hex());
        print!("{}", key.public_key_armored());
        return Ok(());
    }
    let cfg = config::load(db.config.as_deref())?;
    let store = open_store(&database_url(&db, &cfg), &cfg).await?;
    let now = OffsetDateTime::now_utc();
    let result = run_admin(&store, &cfg, cmd, now).await;
    store.close().await;
    result
}

async fn run_admin(
    store: &Arc<dyn Store>,
    cfg: &FileConfig,
    cmd: AdminCommand,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::CredentialCreate { kind, scope, id, client_cert } => {
            let kind =
                CredentialKind::parse(&kind).context("kind: must be issuer, acquirer, payment-manager or operator")?;
            if kind == CredentialKind::Issuer {
                cashback_domain::enrollment::Channel::parse(&scope).map_err(|e| anyhow::anyhow!("scope: {e}"))?;
            }
            let fingerprint = client_cert.as_deref().map(cert_fingerprint).transpose()?;
            let (cred, key) = create_credential(store, kind, scope, id, now).await?;
            if let Some(fp) = &fingerprint {
                store.bind_client_cert(&cred.id, Some(fp)).await?;
            }
            println!(
                "{}",
                serde_json::json!({ "id": cred.id, "kind": kind.as_str(), "scope": cred.scope, "apiKey": key.as_str(),
                    "clientCertSha256": fingerprint })
            );
        }
        AdminCommand::CredentialList => {
            for c in store.list_credentials().await? {
                println!(
                    "{}",
                    serde_json::json!({ "id": c.id, "kind": c.kind.as_str(), "scope": c.scope,
                        "createdAt": cashback_api::dto::timestamp(c.created_at),
                        "revokedAt": c.revoked_at.map(cashback_api::dto::timestamp),
                        "clientCertSha256": c.client_cert_sha256 })
                );
            }
        }
        AdminCommand::CredentialBindCert { id, cert, sha256, unbind } => {
            let fingerprint = match (cert, sha256, unbind) {
                (Some(path), None, false) => Some(cert_fingerprint(&path)?),
                (None, Some(hex), false) => Some(
                    cashback_api::tls::parse_fingerprint(&hex).context("--sha256: expected 64 hexadecimal digits")?,
                ),
                (None, None, true) => None,
                _ => bail!("give one of --cert FILE, --sha256 HEX or --unbind"),
            };
            if !store.bind_client_cert(&id, fingerprint.as_deref()).await? {
                bail!("no active credential with id {id}");
            }
            println!("{}", serde_json::json!({ "id": id, "clientCertSha256": fingerprint }));
        }
        AdminCommand::CredentialRevoke { id } => {
            if !store.revoke_credential(&id, now).await? {
                bail!("no active credential with id {id}");
            }
            println!("revoked {id}");
        }
        AdminCommand::PgpKeygen { .. } => unreachable!("handled before opening the store"),
        AdminCommand::PeriodList => {
            let today = cashback_domain::calendar::rome_date(now);
            for p in store.list_award_periods().await? {
                println!("{}", serde_json::to_string(&cashback_api::dto::AwardPeriodResource::from(&p, today, true))?);
            }
        }
        AdminCommand::PeriodSet {
            id,
            start,
            end,
            grace_days,
            min_transactions,
            super_cashback_positions,
            super_cashback_cents,
            percentage,
            max_evaluated_cents,
            max_transaction_cashback_cents,
            max_period_cashback_cents,
            min_amount_cents,
            max_payments_per_merchant_day,
            reversal_retention_days,
        } => {
            use cashback_domain::Money;
            let p = AwardPeriod {
                id,
                start: parse_date("start", &start)?,
                end: parse_date("end", &end)?,
                grace_period_days: grace_days,
                min_transaction_number: min_transactions,
                max_amount: Money::from_cents(super_cashback_cents),
                min_position: super_cashback_positions,
                max_transaction_cashback: Money::from_cents(max_transaction_cashback_cents),
                max_period_cashback: Money::from_cents(max_period_cashback_cents),
                cashback_percentage: percentage,
                max_transaction_evaluated: Money::from_cents(max_evaluated_cents),
                scoring: cashback_domain::scoring::ScoringRules {
                    min_amount: min_amount_cents.map(Money::from_cents),
                    max_payments_per_merchant_day,
                    reversal_retention_us: i64::from(reversal_retention_days) * 86_400 * 1_000_000,
                },
            };
            p.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
            store.upsert_award_period(&p).await?;
            println!("award period {id} saved (running servers pick it up within 30 s)");
        }
        AdminCommand::Ranking { period, top } => {
            if top > cashback_api::ops::TOP_MAX {
                bail!("top: at most {}", cashback_api::ops::TOP_MAX);
            }
            let p = store
                .list_award_periods()
                .await?
                .into_iter()
                .find(|p| p.id == period)
                .with_context(|| format!("period: no award period {period}"))?;
            let board = RankingBoard::new(cfg.ranking.board());
            board.catch_up(store.as_ref()).await?;
            let view = cashback_api::ranking::operator_view(&board, &p, top);
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        AdminCommand::CitizenExport { fiscal_code } => {
            let cf =
                cashback_domain::FiscalCode::parse(&fiscal_code).map_err(|e| anyhow::anyhow!("fiscal-code: {e}"))?;
            let doc = cashback_api::privacy::citizen_export(store.as_ref(), &cf)
                .await?
                .with_context(|| format!("no citizen {}", cf.as_str()))?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        AdminCommand::EraseExpired { retention_days, now: at } => {
            let now = parse_time("now", at.as_deref())?.unwrap_or(now);
            let days = retention_days.unwrap_or(cfg.privacy.retention_days);
            let periods = store.list_award_periods().await?;
            let n = crate::period::erase_expired(store, &periods, days, now).await?;
            println!("{}", serde_json::json!({ "erased": n, "retentionDays": days }));
        }
        AdminCommand::Audit { subject, actor, action, since, until, limit } => {
            use cashback_store::audit::{AUDIT_QUERY_MAX, AuditAction, AuditQuery};
            if let Some(a) = &action {
                AuditAction::parse_filter(a).map_err(|e| anyhow::anyhow!("action: {e}"))?;
            }
            if !(1..=AUDIT_QUERY_MAX).contains(&limit) {
                bail!("limit: from 1 to {AUDIT_QUERY_MAX}");
            }
            let q = AuditQuery {
                since: parse_time("since", since.as_deref())?,
                until: parse_time("until", until.as_deref())?,
                subject,
                actor,
                action,
                before_id: None,
                limit,
            };
            for e in store.audit_events(&q).await? {
                println!("{}", serde_json::to_string(&cashback_api::audit::AuditEventView::from(e))?);
            }
        }
    }
    Ok(())
}
