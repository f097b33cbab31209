//! `cashback acquirer run`: the acquirer's batch tool (issue 8), run on the acquirer's premises.
//!
//! 1. Uploads left in `<workdir>/pending/` by an earlier run are sent again (409 = already there
//!    = done).
//! 2. Fetches the salt, the platform's OpenPGP public key and the hashed-PAN list (zip, checked
//!    against `x-ms-meta-sha256`) from the acquirer API, with timeouts and retries; the list
//!    becomes an exact sorted set of 32-byte digests.
//! 3. Reads the raw export (E1 15 / E2 19 columns, clear PAN in column 4), validates every row
//!    with the platform's rules, hashes PANs (`sha256_hex(PAN + salt)`), keeps enrolled cards,
//!    and writes `<workdir>/output/CSTAR.<ABI>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>.csv`
//!    (`#sha256sum:` of the raw input on line 1, hpans only) and
//!    `<workdir>/reports/<name>.rejected.csv` (line, field, reason, masked PAN).
//! 4. Encrypts it to `<name>.pgp` and uploads it (SAS + PUT). A file that could not be sent
//!    waits in `pending/`; one the platform refused (4xx) goes to `failed/`. A directory input
//!    moves to `<input dir>/processed/` once sent.
//!
//! The whole file fails (nothing sent) when it is empty, when no row is valid, or when a row's
//! sender code differs from the file's ABI. A JSON summary is printed on stdout; the exit status
//! is non-zero when anything failed or is still pending.

mod bench;
mod client;
mod filter;
mod hpans;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cashback_domain::acquirer::FileName;
use clap::{Args, Subcommand};
use serde::Deserialize;

pub use client::{Api, ClientOptions, Uploaded};
pub use filter::{Filter, FilterStats};
pub use hpans::HpanSet;

#[derive(Args)]
pub struct AcquirerArgs {
    #[command(subcommand)]
    pub command: AcquirerCommand,
}

#[derive(Subcommand)]
pub enum AcquirerCommand {
    /// Hash, filter, validate, encrypt and send one transaction file (and retry pending uploads).
    Run(Box<RunArgs>),
    /// Throughput of hashing + filtering on synthetic data (20 M hashes, 10 M rows by default).
    Bench(bench::BenchArgs),
}

#[derive(Args, Default)]
pub struct RunArgs {
    /// TOML file with any of: api, api_key, abi, workdir, input, timeout_secs, retries, backoff_ms,
    /// max_list_age_hours, ca_cert, client_cert, client_key.
    #[arg(long, env = "CASHBACK_ACQUIRER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Acquirer API base URL: https://…, or http:// on a loopback address only.
    #[arg(long)]
    pub api: Option<String>,
    /// PEM CA certificate(s) the platform's certificate must chain to (default: the system's roots).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --client-key): the one bound to the API key.
    #[arg(long)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long)]
    pub client_key: Option<PathBuf>,
    /// Acquirer API key (Ocp-Apim-Subscription-Key).
    #[arg(long, env = "CASHBACK_ACQUIRER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The raw export (clear PANs), or a directory: its oldest CSTAR.<ABI>.TRNLOG.….csv file is
    /// processed (one per run) and moved to <input dir>/processed/ when sent. Without it, only
    /// pending uploads are retried.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The sender's 5-character ABI code; required when the input is not named
    /// CSTAR.<ABI>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>.csv.
    #[arg(long)]
    pub abi: Option<String>,
    /// Working directory (output/, reports/, pending/, failed/, sent/); never a clear PAN in it.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Read timeout of every HTTP call, seconds (default 300).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Retries after a failed HTTP call (default 3).
    #[arg(long)]
    pub retries: Option<u32>,
    /// First retry delay, milliseconds, doubled each time (default 2000).
    #[arg(long)]
    pub backoff_ms: Option<u64>,
    /// Oldest accepted hashed-PAN list (its Last-Modified), hours (default 48; 0 = no check).
    #[arg(long)]
    pub max_list_age_hours: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    api: Option<String>,
    api_key: Option<String>,
    abi: Option<String>,
    workdir: Option<PathBuf>,
    input: Option<PathBuf>,
    timeout_secs: Option<u64>,
    retries: Option<u32>,
    backoff_ms: Option<u64>,
    max_list_age_hours: Option<u64>,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// Flags, then the config file, then defaults.
struct Settings {
    api: String,
    api_key: zeroize::Zeroizing<String>,
    abi: Option<String>,
    workdir: PathBuf,
    input: Option<PathBuf>,
    client: ClientOptions,
    max_list_age: Option<Duration>,
    quiet: bool,
}

fn settings(args: RunArgs) -> anyhow::Result<Settings> {
    let file: FileConfig = match &args.config {
        Some(p) => toml::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
            .with_context(|| format!("parsing {}", p.display()))?,
        None => FileConfig::default(),
    };
    let api = args.api.or(file.api).context("--api is required (or `api` in the config file)")?;
    let api_key = args
        .api_key
        .or(file.api_key)
        .map(zeroize::Zeroizing::new)
        .context("--api-key is required (or CASHBACK_ACQUIRER_API_KEY, or `api_key` in the config file)")?;
    let age = args.max_list_age_hours.or(file.max_list_age_hours).unwrap_or(48);
    Ok(Settings {
        api,
        api_key,
        abi: args.abi.or(file.abi),
        workdir: args.workdir.or(file.workdir).context("--workdir is required (or `workdir` in the config file)")?,
        input: args.input.or(file.input),
        client: ClientOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(args.timeout_secs.or(file.timeout_secs).unwrap_or(300)),
            retries: args.retries.or(file.retries).unwrap_or(3),
            backoff: Duration::from_millis(args.backoff_ms.or(file.backoff_ms).unwrap_or(2000)),
            tls: client::TlsOptions {
                ca_cert: args.ca_cert.or(file.ca_cert),
                client_cert: args.client_cert.or(file.client_cert),
                client_key: args.client_key.or(file.client_key),
            },
        },
        max_list_age: (age > 0).then(|| Duration::from_secs(age * 3600)),
        quiet: args.quiet,
    })
}

pub async fn run(args: AcquirerArgs) -> anyhow::Result<()> {
    match args.command {
        AcquirerCommand::Run(a) => run_once(*a).await,
        AcquirerCommand::Bench(a) => tokio::task::spawn_blocking(move || bench::run(a)).await?,
    }
}

#[derive(Default, serde::Serialize)]
struct Summary {
    file: Option<String>,
    status: &'static str,
    rows_read: u64,
    kept: u64,
    not_enrolled: u64,
    rejected: u64,
    enrolled_hpans: usize,
    rows_per_second: f64,
    seconds: f64,
    pending_sent: u32,
    pending_left: u32,
    error: Option<String>,
    report: Option<serde_json::Value>,
}

async fn run_once(args: RunArgs) -> anyhow::Result<()> {
    let s = settings(args)?;
    let base = client::parse_base(&s.api)?;
    if let Some(abi) = &s.abi
        && !cashback_domain::acquirer::is_abi(abi)
    {
        bail!("--abi {abi:?}: must be 5 ASCII letters or digits");
    }
    for d in ["output", "reports", "pending", "failed", "sent", "cache"] {
        std::fs::create_dir_all(s.workdir.join(d)).with_context(|| format!("creating {}", s.workdir.display()))?;
    }
    let api = Api::new(base, s.api_key.clone(), s.client.clone())?;
    let mut summary = Summary { status: "NOTHING_TO_DO", ..Default::default() };

    let (sent, left) = retry_pending(&api, &s.workdir).await?;
    summary.pending_sent = sent;
    summary.pending_left = left;

    let result = match &s.input {
        Some(input) => process_input(&api, &s, input, &mut summary).await,
        None => Ok(()),
    };
    if let Err(e) = &result {
        summary.status = "FAILED";
        summary.error = Some(format!("{e:#}"));
    }
    eprintln!(
        "{}: {} rows read, {} kept, {} not enrolled, {} rejected ({:.0} rows/s){}",
        summary.file.as_deref().unwrap_or("-"),
        summary.rows_read,
        summary.kept,
        summary.not_enrolled,
        summary.rejected,
        summary.rows_per_second,
        if left > 0 { format!("; {left} upload(s) still pending") } else { String::new() },
    );
    println!("{}", serde_json::to_string(&summary)?);
    result?;
    if left > 0 {
        bail!("{left} pending upload(s) could not be sent; they will be retried on the next run");
    }
    Ok(())
}

/// Sends every `pending/*.pgp` again; returns (sent, still pending).
async fn retry_pending(api: &Api, workdir: &Path) -> anyhow::Result<(u32, u32)> {
    let dir = workdir.join("pending");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pgp"))
        .collect();
    files.sort();
    let (mut sent, mut left) = (0, 0);
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        match api.upload(&path, &name).await {
            Ok(u) => {
                eprintln!("pending {name}: {}", describe(&u));
                std::fs::rename(&path, workdir.join("sent").join(&name))?;
                sent += 1;
            }
            Err(e) if e.permanent => {
                eprintln!("pending {name}: refused by the platform, moved to failed/: {:#}", e.error);
                std::fs::rename(&path, workdir.join("failed").join(&name))?;
                left += 1;
            }
            Err(e) => {
                eprintln!("pending {name}: still not sent: {:#}", e.error);
                left += 1;
            }
        }
    }
    Ok((sent, left))
}

fn describe(u: &Uploaded) -> String {
    match u {
        Uploaded::Created(report) => format!("uploaded (status {})", report["status"]),
        Uploaded::AlreadyThere => "already uploaded (409), counted as sent".to_owned(),
    }
}

/// The input file of this run: the file itself, or the oldest validly named `.csv` of a directory.
fn pick_input(input: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !input.is_dir() {
        return Ok(Some(input.to_owned()));
    }
    let mut best: Option<(FileName, PathBuf)> = None;
    for e in std::fs::read_dir(input).with_context(|| format!("listing {}", input.display()))? {
        let p = e?.path();
        let Some(n) = p.file_name().and_then(|n| n.to_str()).and_then(|n| FileName::parse(n).ok()) else {
            continue;
        };
        if n.encrypted || n.chunk.is_some() || !p.is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|(b, _)| (n.created, n.progressive) < (b.created, b.progressive)) {
            best = Some((n, p));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// The output name and ABI: the input's own name when it follows the rule, else a fresh one.
fn output_name(input: &Path, abi: Option<&str>) -> anyhow::Result<(String, String)> {
    let given = input.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if let Ok(n) = FileName::parse(given)
        && !n.encrypted
        && n.chunk.is_none()
    {
        if let Some(a) = abi
            && a != n.abi
        {
            bail!("the input is named for ABI {} but --abi is {a}", n.abi);
        }
        return Ok((given.to_owned(), n.abi));
    }
    let abi =
        abi.context("--abi is required when the input is not named CSTAR.<ABI>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>.csv")?;
    let now = time::OffsetDateTime::now_utc();
    let name = now
        .format(time::macros::format_description!("[year][month][day].[hour][minute][second]"))
        .map(|dt| format!("CSTAR.{abi}.TRNLOG.{dt}.001.csv"))?;
    FileName::parse(&name).map_err(|e| anyhow::anyhow!("output name {name}: {}", e.reason))?;
    Ok((name, abi.to_owned()))
}

async fn process_input(api: &Api, s: &Settings, input: &Path, summary: &mut Summary) -> anyhow::Result<()> {
    let Some(input) = pick_input(input)? else {
        eprintln!("no CSTAR.<ABI>.TRNLOG.….csv file in {}", input.display());
        return Ok(());
    };
    let (name, abi) = output_name(&input, s.abi.as_deref())?;
    summary.file = Some(name.clone());
    let meta = std::fs::metadata(&input).with_context(|| format!("reading {}", input.display()))?;
    if meta.len() == 0 {
        bail!("{}: the input file is empty; nothing sent", input.display());
    }

    let salt = api.salt().await?;
    let public_key = api.public_key().await?;
    let recipient = cashback_pgp::RecipientKey::from_armored(&public_key).context("the platform's public key")?;

    let list_path = s.workdir.join("cache").join("hashed-pans.zip");
    let t = Instant::now();
    let list = api.hashed_pans(&list_path).await?;
    if let (Some(max), Some(lm)) = (s.max_list_age, &list.last_modified) {
        check_list_age(lm, max)?;
    }
    let count = list.count;
    let lp = list_path.clone();
    let set = tokio::task::spawn_blocking(move || HpanSet::load_zip(&lp, count)).await??;
    let _ = std::fs::remove_file(&list_path);
    summary.enrolled_hpans = set.len();
    eprintln!(
        "hashed-PAN list: {} hpans ({} bytes, sha256 {}) loaded in {:.1} s",
        set.len(),
        list.bytes,
        list.sha256,
        t.elapsed().as_secs_f64()
    );

    // Filter, in a blocking thread.
    let out_path = s.workdir.join("output").join(&name);
    let rej_path = s.workdir.join("reports").join(format!("{name}.rejected.csv"));
    let bar = progress_bar(&input, s.quiet)?;
    let pb = bar.clone();
    let (inp, outp, rejp) = (input.clone(), out_path.clone(), rej_path.clone());
    let t = Instant::now();
    let stats = tokio::task::spawn_blocking(move || -> anyhow::Result<FilterStats> {
        let filter = Filter { salt: &salt, abi: &abi, enrolled: &set, threads: 0 };
        filter_file(&filter, &inp, &outp, &rejp, |n| pb.set_position(n))
    })
    .await??;
    bar.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    summary.rows_read = stats.rows;
    summary.kept = stats.kept;
    summary.not_enrolled = stats.not_enrolled;
    summary.rejected = stats.rejected;
    summary.seconds = (secs * 1000.0).round() / 1000.0;
    summary.rows_per_second = (stats.rows as f64 / secs.max(1e-9)).round();
    if stats.rejected > 0 {
        eprintln!("{} rejected rows: see {}", stats.rejected, rej_path.display());
    }
    if stats.rows == 0 {
        bail!("the input file has no rows; nothing sent");
    }
    if stats.rejected == stats.rows {
        bail!("every row of the input is invalid; nothing sent");
    }
    if stats.sender_mismatch > 0 {
        bail!("{} row(s) have a sender code other than the file's ABI; nothing sent", stats.sender_mismatch);
    }
    if stats.kept == 0 {
        summary.status = "NOTHING_TO_SEND";
        eprintln!("no row of an enrolled card: nothing to send");
        finish_input(s, &input)?;
        return Ok(());
    }

    // Encrypt, then send.
    let pgp_name = format!("{name}.pgp");
    let staged = s.workdir.join("output").join(&pgp_name);
    let (src, dst) = (out_path.clone(), staged.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let input = std::io::BufReader::new(std::fs::File::open(&src)?);
        let mut output = std::io::BufWriter::new(std::fs::File::create(&dst)?);
        recipient.encrypt(input, &mut output)?;
        std::io::Write::flush(&mut output)?;
        output.get_ref().sync_all()?;
        Ok(())
    })
    .await?
    .context("encrypting the output")?;
    match api.upload(&staged, &pgp_name).await {
        Ok(u) => {
            eprintln!("{pgp_name}: {}", describe(&u));
            if let Uploaded::Created(report) = &u {
                summary.report = Some(report.clone());
            }
            summary.status = "SENT";
            std::fs::rename(&staged, s.workdir.join("sent").join(&pgp_name))?;
            finish_input(s, &input)?;
            Ok(())
        }
        Err(e) if e.permanent => {
            std::fs::rename(&staged, s.workdir.join("failed").join(&pgp_name))?;
            Err(e.error.context(format!("the platform refused {pgp_name} (kept in failed/)")))
        }
        Err(e) => {
            std::fs::rename(&staged, s.workdir.join("pending").join(&pgp_name))?;
            summary.pending_left += 1;
            summary.status = "PENDING";
            Err(e.error.context(format!("{pgp_name} not sent; kept in pending/ for the next run")))
        }
    }
}

/// A processed input of a directory run moves to `<input dir>/processed/` so the next run takes
/// the next one (the raw export stays out of the working directory).
fn finish_input(s: &Settings, input: &Path) -> anyhow::Result<()> {
    if let Some(dir) = s.input.as_deref().filter(|d| d.is_dir()) {
        std::fs::create_dir_all(dir.join("processed"))?;
        let to = dir.join("processed").join(input.file_name().unwrap_or_default());
        std::fs::rename(input, &to).or_else(|_| std::fs::copy(input, &to).and_then(|_| std::fs::remove_file(input)))?;
    }
    Ok(())
}

/// Streams `input` through `filter` into `output` (with a `#sha256sum:` line of the raw input
/// first, fsynced) and the rejected-row report.
pub fn filter_file(
    filter: &Filter,
    input: &Path,
    output: &Path,
    rejects: &Path,
    progress: impl FnMut(u64),
) -> anyhow::Result<FilterStats> {
    let (stats, out) = filter_file_unsynced(filter, input, output, rejects, progress)?;
    out.sync_all().with_context(|| format!("writing {}", output.display()))?;
    Ok(stats)
}

/// [`filter_file`] up to its final `fsync` of the output, which is left to the caller (the
/// benchmark times it apart).
pub(crate) fn filter_file_unsynced(
    filter: &Filter,
    input: &Path,
    output: &Path,
    rejects: &Path,
    progress: impl FnMut(u64),
) -> anyhow::Result<(FilterStats, std::fs::File)> {
    use std::io::{Seek, SeekFrom, Write};
    const HEADER_LEN: usize = "#sha256sum:".len() + 64 + 1;
    let inp = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut out = std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?;
    out.write_all(&[b'#'; HEADER_LEN])?; // placeholder, rewritten below
    let rej = std::fs::File::create(rejects).with_context(|| format!("creating {}", rejects.display()))?;
    let stats =
        filter.run(inp, std::io::BufWriter::with_capacity(1 << 20, &out), std::io::BufWriter::new(rej), progress)?;
    out.seek(SeekFrom::Start(0))?;
    out.write_all(format!("#sha256sum:{}\n", hex::encode(stats.input_sha256)).as_bytes())?;
    Ok((stats, out))
}

fn check_list_age(last_modified: &str, max: Duration) -> anyhow::Result<()> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let Ok(at) = time::PrimitiveDateTime::parse(last_modified, fmt) else {
        eprintln!("hashed-PAN list: unreadable Last-Modified {last_modified:?}; age not checked");
        return Ok(());
    };
    let age = time::OffsetDateTime::now_utc() - at.assume_utc();
    if age > max {
        bail!(
            "the hashed-PAN list is {} h old (Last-Modified {last_modified}); at most {} h accepted",
            age.whole_hours(),
            max.as_secs() / 3600
        );
    }
    Ok(())
}

fn progress_bar(path: &Path, quiet: bool) -> anyhow::Result<indicatif::ProgressBar> {
    if quiet {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {human_pos} lines ({per_sec}) {elapsed}")?);
    bar.set_message(path.display().to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    Ok(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls() {
        assert!(client::parse_base("http://127.0.0.1:8080").is_ok());
        assert!(client::parse_base("http://localhost:8080/").is_ok());
        assert!(client::parse_base("http://[::1]:8080/").is_ok());
        assert!(client::parse_base("http://example.com").is_err());
        assert!(client::parse_base("http://10.0.0.1").is_err());
        assert!(client::parse_base("ftp://127.0.0.1").is_err());
        assert!(client::parse_base("not a url").is_err());
        assert!(client::parse_base("https://rtd.example.com/").is_ok());
        let opts = |tls| ClientOptions {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retries: 0,
            backoff: Duration::from_millis(1),
            tls,
        };
        let base = client::parse_base("http://127.0.0.1:1").unwrap();
        let ca = client::TlsOptions { ca_cert: Some("ca.pem".into()), ..Default::default() };
        assert!(Api::new(base.clone(), String::from("k").into(), opts(ca)).is_err(), "TLS files need https");
        let https = client::parse_base("https://127.0.0.1:1").unwrap();
        let half = client::TlsOptions { client_cert: Some("c.pem".into()), ..Default::default() };
        let err = Api::new(https, String::from("k").into(), opts(half)).err().unwrap().to_string();
        assert!(err.contains("both --client-cert and --client-key"), "{err}");
    }

    #[test]
    fn output_names() {
        let (n, abi) = output_name(Path::new("in/CSTAR.12345.TRNLOG.20261120.101010.001.csv"), None).unwrap();
        assert_eq!((n.as_str(), abi.as_str()), ("CSTAR.12345.TRNLOG.20261120.101010.001.csv", "12345"));
        assert!(output_name(Path::new("CSTAR.12345.TRNLOG.20261120.101010.001.csv"), Some("54321")).is_err());
        assert!(output_name(Path::new("export.csv"), None).is_err());
        let (n, _) = output_name(Path::new("export.csv"), Some("ABCDE")).unwrap();
        let parsed = FileName::parse(&n).unwrap();
        assert_eq!((parsed.abi.as_str(), parsed.progressive), ("ABCDE", 1));
        // Impossible dates or a bad progressive are not the rule's names: a fresh name is made.
        assert!(output_name(Path::new("CSTAR.12345.TRNLOG.20220230.101010.001.csv"), None).is_err());
        assert!(output_name(Path::new("CSTAR.12345.TRNLOG.20220204.094652.AAA.csv"), None).is_err());
    }

    #[test]
    fn oldest_input_first() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "CSTAR.12345.TRNLOG.20261121.000000.001.csv",
            "CSTAR.12345.TRNLOG.20261120.101010.002.csv",
            "CSTAR.12345.TRNLOG.20261120.101010.003.csv",
            "CSTAR.12345.TRNLOG.2022FEB04.094652.001.csv",
            "notes.csv",
        ] {
            std::fs::write(dir.path().join(n), "x").unwrap();
        }
        let p = pick_input(dir.path()).unwrap().unwrap();
        assert_eq!(p.file_name().unwrap(), "CSTAR.12345.TRNLOG.20261120.101010.002.csv");
        let empty = tempfile::tempdir().unwrap();
        assert!(pick_input(empty.path()).unwrap().is_none());
    }

    #[test]
    fn list_age() {
        let now = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        );
        let fresh = now.format(fmt).unwrap();
        let old = (now - time::Duration::hours(50)).format(fmt).unwrap();
        let day = Duration::from_secs(24 * 3600);
        assert!(check_list_age(&fresh, day).is_ok());
        assert!(check_list_age(&old, day).is_err());
    }

    #[test]
    fn output_file_has_the_checksum_line() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        let pan = "4111111111111111";
        let row = format!(
            "12345;00;01;{pan};2026-11-20T10:10:10.000+01:00;ID1;ISS1;;2500;978;ACQ1;MERCH1;TERM1;41111111;5411\n"
        );
        std::fs::write(&input, &row).unwrap();
        let set = HpanSet::from_digests(vec![cashback_domain::Pan::parse(pan, "pan").unwrap().hash("s").to_bytes()]);
        let (out, rej) = (dir.path().join("out.csv"), dir.path().join("rej.csv"));
        let filter = Filter { salt: "s", abi: "12345", enrolled: &set, threads: 2 };
        let stats = filter_file(&filter, &input, &out, &rej, |_| {}).unwrap();
        assert_eq!(stats.kept, 1);
        let text = std::fs::read_to_string(&out).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        assert!(cashback_domain::acquirer::parse_checksum_line(first).is_ok(), "{first}");
        assert!(!rest.contains(pan) && rest.starts_with("12345;00;01;"), "{rest}");
    }
}
