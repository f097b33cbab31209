//! `cashback demo`: a small programme on a fresh SQLite file, to look at in the web console.
//!
//! 1. Deletes and recreates the demo file; adds an award period around today, an operator and an
//!    acquirer credential, and N citizens with 1–3 cards each (bulk import, active since the
//!    period's start, a third of the cards enrolled through a bank).
//! 2. Starts `cashback serve --dev` on it (a child process; its log goes next to the file).
//! 3. Sends one acquirer file per day for the last few days through the acquirer API (SAS, then
//!    PUT), with a realistic spend (mean ticket ≈ €35, ~16% under €5, a few heavy users),
//!    reversals, partial refunds and a few malformed rows.
//! 4. Prints where the console is and how to sign in, then waits for Ctrl-C.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cashback_domain::enrollment::Channel;
use cashback_domain::{AwardPeriod, Hpan, Money, calendar};
use cashback_store::{CredentialKind, EnrollmentImport, ImportedCitizen, ImportedInstrument, Store};
use clap::Args;
use time::{Date, Duration as TimeDuration, OffsetDateTime};

use crate::bench_ingest::{Rng, card_digest, citizen_code};
use crate::serve::{create_credential, init_cli_tracing, open_store};

/// The demo's award period.
pub const DEMO_PERIOD_ID: i64 = 100;
/// ABI of the demo acquirer.
pub const DEMO_ABI: &str = "12345";
/// Bounds, so a typo cannot fill the disk.
const MAX_CITIZENS: u32 = 100_000;
const MAX_DAYS: u32 = 30;
/// Import batch size.
const BATCH: usize = 5_000;

#[derive(Args)]
pub struct DemoArgs {
    /// The demo's SQLite file: deleted and created afresh.
    #[arg(long, default_value = "cashback-demo.db")]
    pub file: PathBuf,
    /// Address the server listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Citizens to enrol (1–100000).
    #[arg(long, default_value_t = 2_000)]
    pub citizens: u32,
    /// Days of acquirer files, ending yesterday (1–30).
    #[arg(long, default_value_t = 5)]
    pub days: u32,
    /// Seed of the synthetic programme (same seed, same programme).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Load the programme, print the summary, stop the server and exit (scripts and tests).
    #[arg(long)]
    pub no_wait: bool,
}

/// The demo period: from `days + 10` days ago to 60 days ahead, 10 transactions minimum, the
/// first 5% of the citizens win the Super Cashback.
pub fn demo_period(today: Date, days: u32, citizens: u32) -> anyhow::Result<AwardPeriod> {
    let p = AwardPeriod {
        id: DEMO_PERIOD_ID,
        start: today - TimeDuration::days(i64::from(days) + 10),
        end: today + TimeDuration::days(60),
        grace_period_days: 10,
        min_transaction_number: 10,
        max_amount: Money::from_cents(150_000),
        min_position: (citizens / 20).max(1),
        max_transaction_cashback: Money::from_cents(1_500),
        max_period_cashback: Money::from_cents(15_000),
        cashback_percentage: 10,
        max_transaction_evaluated: Money::from_cents(15_000),
        scoring: cashback_domain::scoring::ScoringRules::default(),
    };
    p.validate().map_err(|e| anyhow::anyhow!("demo period: {e}"))?;
    Ok(p)
}

/// Cards of citizen `n`: 1 to 3, numbered `3n`, `3n+1`, `3n+2`.
pub fn cards_of(n: u32, seed: u64) -> impl Iterator<Item = u64> {
    let count = 1 + Rng(seed ^ (u64::from(n) << 20) ^ 0x5eed).below(3);
    (0..count).map(move |j| 3 * u64::from(n) + j)
}

/// How often citizen `n` pays, in payments per 10 days: most rarely, a few every day (the heavy
/// users who reached ~800 transactions a semester).
pub(crate) fn payments_per_ten_days(n: u32, seed: u64) -> u64 {
    match Rng(seed ^ u64::from(n).wrapping_mul(0x9e37_79b9)).below(100) {
        0..=2 => 45,
        3..=29 => 12,
        _ => 3,
    }
}

/// A payment amount in cents: 16% under €5, the rest with a long tail; mean ≈ €35.
pub fn ticket_cents(rng: &mut Rng) -> u64 {
    if rng.below(100) < 16 {
        100 + rng.below(400)
    } else {
        // Exponential with mean €35 above €5, capped at €2,000.
        let u = (rng.below(1 << 30) + 1) as f64 / (1u64 << 30) as f64;
        let tail = -u.ln() * 3_500.0;
        (500 + tail as u64).min(200_000)
    }
}

/// The rows of one day's acquirer file (E1, 15 columns) and how many of each kind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DayFile {
    pub rows: Vec<String>,
    pub payments: u64,
    pub reversals: u64,
    pub malformed: u64,
}

/// One day's transactions of every citizen's cards.
pub fn day_file(day: Date, citizens: u32, seed: u64) -> DayFile {
    let mut out = DayFile::default();
    let mut rng = Rng(seed ^ (day.to_julian_day() as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut seq = 0u64;
    for n in 0..citizens {
        let rate = payments_per_ten_days(n, seed);
        let cards: Vec<u64> = cards_of(n, seed).collect();
        // Ten trials of probability rate/100: a binomial count of mean rate/10 a day.
        let count = (0..10).filter(|_| rng.below(100) < rate).count();
        for _ in 0..count {
            seq += 1;
            let card = cards[rng.below(cards.len() as u64) as usize];
            let hpan = Hpan::from_bytes(&card_digest(true, card));
            let (h, m, sec) = (7 + rng.below(13), rng.below(60), rng.below(60));
            let cents = ticket_cents(&mut rng);
            let merchant = rng.below(400);
            let id = format!("D{}N{seq}", day.to_julian_day());
            let row = |op: &str, amount: u64, suffix: &str| {
                format!(
                    "{DEMO_ABI};{op};01;{};{day}T{h:02}:{m:02}:{sec:02}+00:00;{id}{suffix};ISS{id}{suffix};C{id};{amount};978;ACQ1;M{merchant};T{merchant}-1;40236010;5411",
                    hpan.as_str()
                )
            };
            out.rows.push(row("00", cents, ""));
            out.payments += 1;
            match rng.below(1000) {
                // A full reversal, or a partial refund of a third.
                0..=14 => {
                    out.rows.push(row("01", cents, "R"));
                    out.reversals += 1;
                }
                15..=24 if cents >= 300 => {
                    out.rows.push(row("01", cents / 3, "R"));
                    out.reversals += 1;
                }
                _ => {}
            }
        }
    }
    // Malformed rows, reported by line and field: an impossible date, a card that is not a hash.
    out.rows.push(format!(
        "{DEMO_ABI};00;01;{};{}-02-30T10:00:00+01:00;BAD1{seq};ISSB1;;1000;978;ACQ1;M1;T1;40236010;5411",
        Hpan::from_bytes(&card_digest(true, 0)).as_str(),
        day.year()
    ));
    out.rows.push(format!(
        "{DEMO_ABI};00;01;not-a-hash;{day}T10:00:00+01:00;BAD2{seq};ISSB2;;1000;978;ACQ1;M1;T1;40236010;5411"
    ));
    out.malformed += 2;
    out
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    init_cli_tracing();
    if args.citizens == 0 || args.citizens > MAX_CITIZENS {
        bail!("--citizens must be from 1 to {MAX_CITIZENS}");
    }
    if args.days == 0 || args.days > MAX_DAYS {
        bail!("--days must be from 1 to {MAX_DAYS}");
    }
    let started = Instant::now();
    let url = fresh_sqlite(&args.file)?;
    let now = OffsetDateTime::now_utc();
    let today = calendar::rome_date(now);
    let period = demo_period(today, args.days, args.citizens)?;

    // 1. The programme, straight into the store.
    let cfg = crate::config::load(None)?;
    let store = open_store(&url, &cfg).await?;
    let seeded = seed(&store, &period, &args, now).await;
    store.close().await;
    let (operator_key, acquirer_key) = seeded?;

    // 2. The server.
    let log_path = log_path(&args.file);
    let mut server = ServerProcess::start(&args, &url, &log_path)?;
    let base = format!("http://{}", args.listen);
    let http =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().context("HTTP client")?;
    server.wait_healthy(&http, &base, &log_path).await?;

    // 3. The acquirer files, oldest day first.
    let mut files = Vec::new();
    for back in (1..=args.days).rev() {
        let day = today - TimeDuration::days(i64::from(back));
        let f = day_file(day, args.citizens, args.seed);
        let name = format!("CSTAR.{DEMO_ABI}.TRNLOG.{}.220000.001.csv", day_stamp(day));
        let report = upload(&http, &base, &acquirer_key, &name, f.rows.join("\n") + "\n").await?;
        files.push(serde_json::json!({ "name": name, "payments": f.payments, "reversals": f.reversals,
            "malformed": f.malformed, "report": report }));
    }

    // 4. Where to look.
    let cf = citizen_code(0)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "cashback demo: {} citizens, {} days of acquirer files, ready in {:.1} s",
        args.citizens,
        args.days,
        started.elapsed().as_secs_f64()
    )?;
    writeln!(out, "  console    {base}/console/")?;
    writeln!(out, "  citizen    sign in with the fiscal code {} (any of the demo's citizens works)", cf.as_str())?;
    writeln!(out, "  operator   API key {operator_key}")?;
    writeln!(out, "  acquirer   ABI {DEMO_ABI}, API key {acquirer_key}")?;
    writeln!(out, "  API docs   {base}/openapi.json")?;
    writeln!(out, "  database   {}   server log {}", args.file.display(), log_path.display())?;
    writeln!(out, "{}", serde_json::json!({ "periodId": DEMO_PERIOD_ID, "files": files }))?;
    drop(out);
    if args.no_wait {
        server.stop();
        return Ok(());
    }
    println!("Ctrl-C stops the server.");
    let _ = tokio::signal::ctrl_c().await;
    server.stop();
    Ok(())
}

/// Delete a SQLite file and its WAL companions (a fresh start); its URL.
pub(crate) fn fresh_sqlite(file: &Path) -> anyhow::Result<String> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", PathBuf::from(p).display())),
        }
    }
    Ok(format!("sqlite://{}", file.display()))
}

fn log_path(file: &Path) -> PathBuf {
    let mut p = file.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

fn day_stamp(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
}

async fn seed(
    store: &Arc<dyn Store>,
    period: &AwardPeriod,
    args: &DemoArgs,
    now: OffsetDateTime,
) -> anyhow::Result<(String, String)> {
    store.seed_award_periods(&cashback_domain::period::default_programme()).await?;
    store.upsert_award_period(period).await?;
    let (_, operator_key) = create_credential(store, CredentialKind::Operator, "demo".into(), None, now).await?;
    let (_, acquirer_key) = create_credential(store, CredentialKind::Acquirer, DEMO_ABI.into(), None, now).await?;
    let at = period.start.midnight().assume_utc();
    let io = Channel::io();
    let bank = Channel::parse("DEMOBANK").map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut n = 0u32;
    while n < args.citizens {
        let end = (n + BATCH as u32).min(args.citizens);
        let mut batch = EnrollmentImport { citizens: Vec::new(), instruments: Vec::new() };
        for i in n..end {
            let cf = citizen_code(i)?;
            batch.citizens.push(ImportedCitizen {
                fiscal_code: cf.clone(),
                terms_accepted_at: at,
                channel: io.clone(),
                iban: None,
            });
            for card in cards_of(i, args.seed) {
                let channel = if card % 3 == 2 { bank.clone() } else { io.clone() };
                batch.instruments.push(ImportedInstrument {
                    hpan: Hpan::from_bytes(&card_digest(true, card)),
                    fiscal_code: cf.clone(),
                    channel,
                    activated_at: at,
                });
            }
        }
        store.import_enrollments(batch).await?;
        n = end;
    }
    Ok((operator_key.to_string(), acquirer_key.to_string()))
}

/// Send one acquirer file through the acquirer API (SAS, then PUT); its report.
pub(crate) async fn upload(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    name: &str,
    body: String,
) -> anyhow::Result<serde_json::Value> {
    let sas: serde_json::Value = http
        .post(format!("{base}/rtd/csv-transaction/rtd/sas"))
        .header("Ocp-Apim-Subscription-Key", key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let container = sas["authorizedContainer"].as_str().context("SAS answer without authorizedContainer")?;
    let token = sas["sas"].as_str().context("SAS answer without sas")?;
    let resp = http
        .put(format!("{base}/pagopastorage/{container}/{name}?{token}"))
        .header("Ocp-Apim-Subscription-Key", key)
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("uploading {name}: {status} {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// The `serve` child process; killed when dropped.
struct ServerProcess(Option<Child>);

impl ServerProcess {
    fn start(args: &DemoArgs, url: &str, log_path: &Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the cashback binary")?;
        let log = std::fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve").arg("--dev").arg("--listen").arg(args.listen.to_string()).arg("--database").arg(url);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().context("starting cashback serve")?;
        Ok(Self(Some(child)))
    }

    async fn wait_healthy(&mut self, http: &reqwest::Client, base: &str, log_path: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.0.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                bail!("the server exited ({status}); its log:\n{log}");
            }
            if let Ok(r) = http.get(format!("{base}/health")).timeout(Duration::from_secs(1)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /health within 30 s (see {})", log_path.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SIGTERM: the server drains its writes and stops.
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cashback_domain::{AcquirerRecord, RecordLayout};

    #[test]
    fn tickets_look_like_the_real_programme() {
        let mut rng = Rng(7);
        let n = 200_000u64;
        let mut sum = 0u64;
        let mut small = 0u64;
        for _ in 0..n {
            let c = ticket_cents(&mut rng);
            sum += c;
            small += u64::from(c < 500);
        }
        let mean = sum as f64 / n as f64 / 100.0;
        let small = small as f64 / n as f64;
        assert!((30.0..40.0).contains(&mean), "mean ticket €{mean:.2}");
        assert!((0.14..0.18).contains(&small), "{:.1}% under €5", small * 100.0);
    }

    #[test]
    fn a_day_file_is_deterministic_and_parses_as_intended() {
        let day = time::macros::date!(2026 - 11 - 20);
        let a = day_file(day, 300, 1);
        assert_eq!(a, day_file(day, 300, 1), "same seed, same file");
        assert_ne!(a.rows, day_file(day, 300, 2).rows);
        assert!(a.payments > 100, "{} payments", a.payments);
        let mut bad = 0;
        for line in &a.rows {
            let fields: Vec<&[u8]> = line.as_bytes().split(|&b| b == b';').collect();
            if AcquirerRecord::parse(&fields, RecordLayout::E1).is_err() {
                bad += 1;
            }
        }
        assert_eq!(bad, a.malformed, "exactly the malformed rows fail");
        assert_eq!(a.rows.len() as u64, a.payments + a.reversals + a.malformed);
    }
}
