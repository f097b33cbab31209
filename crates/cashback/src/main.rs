//! `cashback`: the composition root. Only this crate names concrete storage backends.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod acquirer_tool;
mod bench;
mod bench_close;
mod bench_ingest;
mod config;
mod demo;
mod ingest;
mod loadtest;
mod period;
mod rawhttp;
mod serve;
mod simulate;

use cashback_store::audit::with_actor;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cashback", version, about = "National card-linked cashback platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long = "database", env = "CASHBACK_DATABASE_URL")]
    pub database: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "CASHBACK_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CASHBACK_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Read replica (PostgreSQL streaming standby) for the reads that tolerate lag.
    #[arg(long = "database-replica", env = "CASHBACK_DATABASE_REPLICA_URL")]
    pub database_replica: Option<String>,
    /// Development mode: mock identity login, a fixed test salt and JWT secret, verbose errors.
    #[arg(long, env = "CASHBACK_DEV")]
    pub dev: bool,
    /// PAN hashing salt (secret; prefer the config file's salt_file in production).
    #[arg(long, env = "CASHBACK_SALT", hide_env_values = true)]
    pub salt: Option<String>,
    /// HS256 secret for citizens' bearer tokens.
    #[arg(long, env = "CASHBACK_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Token introspection URL (io-backend `GET /bpd/api/v1/user`-like).
    #[arg(long, env = "CASHBACK_INTROSPECTION_URL")]
    pub introspection_url: Option<String>,
    /// Account-holder check service URL (validate-account-holder).
    #[arg(long, env = "CASHBACK_IBAN_CHECK_URL")]
    pub iban_check_url: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// TLS of `serve` (each overrides `[tls]` of the config file).
#[derive(Args, Default)]
pub struct TlsArgs {
    /// PEM certificate chain: serve HTTPS instead of plain HTTP (with --tls-key).
    #[arg(long, env = "CASHBACK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CASHBACK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA of the issuers' and acquirers' client certificates (mutual TLS; optional per connection).
    #[arg(long, env = "CASHBACK_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Issuer and acquirer API keys work only with the client certificate bound to them.
    #[arg(long, env = "CASHBACK_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrations run first).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Operator tasks: credentials and award periods.
    Admin {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: serve::AdminCommand,
    },
    /// Load generator for the enrollment benchmark (loopback only).
    Bench(bench::BenchArgs),
    /// Open-loop launch-day load profile with overload and recovery phases (loopback only).
    Loadtest(loadtest::LoadtestArgs),
    /// Ingest acquirer transaction files (CSTAR.<ABI>.TRNLOG.….csv) and print their reports.
    Ingest(ingest::IngestArgs),
    /// Data for the acquirer-ingest benchmark: seed enrollments, generate a synthetic file.
    BenchIngest(bench_ingest::BenchIngestArgs),
    /// The acquirer's batch tool: hash, filter, validate, encrypt and send a transaction file.
    Acquirer(acquirer_tool::AcquirerArgs),
    /// The period-close benchmark: seed N citizens' totals, then close and write payout files.
    BenchClose(bench_close::BenchCloseArgs),
    /// Period close: awards, payout files, the payout agent's outcomes, complaints, notifications.
    Period(period::PeriodArgs),
    /// A small programme on a fresh SQLite file, served with the web console: the newcomer's demo.
    Demo(demo::DemoArgs),
    /// A deterministic synthetic programme through the API, checked against a reference model.
    Simulate(simulate::SimulateArgs),
}

/// The audit trail's actor for changes made from the command line: `cli:<login>`.
fn cli_actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_default();
    let user: String = user.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(64).collect();
    if user.is_empty() { "cli".to_owned() } else { format!("cli:{user}") }
}

fn single_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cashback_api::tls::install_default_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::serve(args)),
        Command::Migrate(db) => runtime.block_on(serve::migrate(db)),
        Command::Admin { db, command } => runtime.block_on(with_actor(cli_actor(), serve::admin(db, command))),
        // The load generators run on one thread: on this project's 2-core benchmark machine the
        // server gets the other core, and no wakeup crosses threads (docs/benchmarks.md).
        Command::Bench(args) => single_thread()?.block_on(bench::run(args)),
        Command::Loadtest(args) => single_thread()?.block_on(loadtest::run(args)),
        Command::Ingest(args) => runtime.block_on(with_actor(cli_actor(), ingest::run(args))),
        Command::BenchIngest(args) => runtime.block_on(bench_ingest::run(args)),
        Command::Acquirer(args) => runtime.block_on(acquirer_tool::run(args)),
        Command::Period(args) => runtime.block_on(with_actor(cli_actor(), period::run(args))),
        Command::BenchClose(args) => runtime.block_on(bench_close::run(args)),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
        Command::Simulate(args) => runtime.block_on(simulate::run(args)),
    }
}
