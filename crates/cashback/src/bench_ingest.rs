//! `cashback bench-ingest`: data for the acquirer-ingest benchmark (issue 3), reproducible from
//! a handful of numbers.
//!
//! * `seed`: creates `--citizens` enabled citizens and `--instruments` active cards (card `k` is
//!   owned by citizen `k mod citizens`) through the operator bulk import
//!   (`Store::import_enrollments`), the programme's award periods, and the benchmark's own award
//!   period (the real programme's periods are closed by now, so rows dated in them could never
//!   count). Optionally writes the enrollments as CSV for the DuckDB reference run.
//! * `generate`: writes a synthetic E1 (15-column) file of `--rows` rows: 1 % malformed rows of
//!   varied kinds, and of the rest 20 % on cards that were never enrolled and the others on
//!   enrolled cards, dated inside the benchmark's award period. Row `r` depends only on `r` and
//!   `--seed`, so the file is identical on every run.
//!
//! Cards are SHA-256 digests of a label and a number ("enrolled"/"unknown"); no PAN exists.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use cashback_domain::enrollment::Channel;
use cashback_domain::{AwardPeriod, FiscalCode, Hpan, Money};
use cashback_store::{EnrollmentImport, ImportOutcome, ImportedCitizen, ImportedInstrument, Store};
use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::{Date, Month, OffsetDateTime};

use crate::DbArgs;
use crate::serve::{database_url, init_cli_tracing, open_store};

/// Id of the benchmark's award period.
pub const BENCH_PERIOD_ID: i64 = 100;
/// ABI of the generated files.
pub const BENCH_ABI: &str = "BENCH";
/// Upper bounds, so a typo cannot fill the disk.
const MAX_ROWS: u64 = 100_000_000;
const MAX_INSTRUMENTS: u64 = 50_000_000;
/// Items per import call (one transaction each).
const IMPORT_BATCH: usize = 50_000;

#[derive(Args)]
pub struct BenchIngestArgs {
    #[command(subcommand)]
    pub command: BenchIngestCommand,
}

#[derive(Subcommand)]
pub enum BenchIngestCommand {
    /// Seed a database with citizens, enrolled cards and award periods.
    Seed(SeedArgs),
    /// Write a deterministic synthetic E1 acquirer file.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Citizens to create.
    #[arg(long, default_value_t = 2_000_000)]
    pub citizens: u32,
    /// Enrolled cards to create (must match `generate --instruments`).
    #[arg(long, default_value_t = 5_000_000)]
    pub instruments: u64,
    /// Year of the benchmark award period (1 Jan – 31 Dec, 365 days of grace).
    #[arg(long, default_value_t = 2026)]
    pub year: i32,
    /// Also write the enrollments as CSV (`hpan,fiscal_code,activated_at_us`) for DuckDB.
    #[arg(long)]
    pub enrollments_csv: Option<PathBuf>,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Directory to write the file into.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Rows to write.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Enrolled cards (as seeded).
    #[arg(long, default_value_t = 5_000_000)]
    pub instruments: u64,
    /// Distinct never-enrolled cards the rows on unknown cards are spread over.
    #[arg(long, default_value_t = 2_000_000)]
    pub unknown_cards: u64,
    /// Percentage of rows on never-enrolled cards (of all rows).
    #[arg(long, default_value_t = 20)]
    pub unknown_percent: u64,
    /// Malformed rows per 10,000.
    #[arg(long, default_value_t = 100)]
    pub malformed_per_10k: u64,
    /// Year of the benchmark award period (transactions are dated 1 Jan – 27 Oct of it).
    #[arg(long, default_value_t = 2026)]
    pub year: i32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub async fn run(args: BenchIngestArgs) -> anyhow::Result<()> {
    match args.command {
        BenchIngestCommand::Seed(a) => seed(a).await,
        BenchIngestCommand::Generate(a) => tokio::task::spawn_blocking(move || generate(&a)).await?,
    }
}

/// The benchmark's award period: the whole `year`, open for another year.
pub fn bench_period(year: i32) -> anyhow::Result<AwardPeriod> {
    let p = AwardPeriod {
        id: BENCH_PERIOD_ID,
        start: Date::from_calendar_date(year, Month::January, 1)?,
        end: Date::from_calendar_date(year, Month::December, 31)?,
        grace_period_days: 365,
        min_transaction_number: 10,
        max_amount: Money::ZERO,
        min_position: 0,
        max_transaction_cashback: Money::from_cents(1_500),
        max_period_cashback: Money::from_cents(15_000),
        cashback_percentage: 10,
        max_transaction_evaluated: Money::from_cents(15_000),
        scoring: cashback_domain::scoring::ScoringRules::default(),
    };
    p.validate().map_err(|e| anyhow::anyhow!("bench period: {e}"))?;
    Ok(p)
}

/// Cards are enrolled at this instant, and citizens accepted the terms then (before any row).
fn enrolled_at(year: i32) -> anyhow::Result<OffsetDateTime> {
    Ok(datetime!(2000-12-01 00:00 UTC).replace_year(year - 1)?)
}

/// Fiscal code of benchmark citizen `n`: six letters from `n`, born 1980-01-01 in Rome.
pub fn citizen_code(n: u32) -> anyhow::Result<FiscalCode> {
    const L: &[u8; 26] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut s = [0u8; 16];
    let mut m = n;
    for b in s.iter_mut().take(6) {
        *b = L[(m % 26) as usize];
        m /= 26;
    }
    s[6..15].copy_from_slice(b"80A01H501");
    s[15] = check_char(&s[..15]);
    let text = std::str::from_utf8(&s).expect("ASCII");
    FiscalCode::parse(text).map_err(|e| anyhow::anyhow!("fiscal code of citizen {n}: {e}"))
}

/// The fiscal code's control character (odd/even position tables of the Italian algorithm).
fn check_char(first15: &[u8]) -> u8 {
    const ODD: [u32; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    let value = |c: u8| if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') };
    let sum: u32 =
        first15.iter().enumerate().map(|(i, &c)| if i % 2 == 0 { ODD[value(c) as usize] } else { value(c) }).sum();
    b'A' + (sum % 26) as u8
}

/// The 32-byte digest of enrolled card `k` (or of never-enrolled card `k`).
pub fn card_digest(enrolled: bool, k: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(if enrolled { b"cashback-bench-enrolled" as &[u8] } else { b"cashback-bench-unknown" });
    h.update(k.to_le_bytes());
    h.finalize().into()
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    init_cli_tracing();
    if args.citizens == 0 || u64::from(args.citizens) > MAX_INSTRUMENTS {
        bail!("--citizens must be between 1 and {MAX_INSTRUMENTS}");
    }
    if args.instruments > MAX_INSTRUMENTS {
        bail!("--instruments must be at most {MAX_INSTRUMENTS}");
    }
    let cfg = crate::config::load(args.db.config.as_deref())?;
    let store = open_store(&database_url(&args.db, &cfg), &cfg).await?;
    let res = seed_store(&store, &args).await;
    store.close().await;
    res
}

async fn seed_store(store: &Arc<dyn Store>, args: &SeedArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    store.seed_award_periods(&cashback_domain::period::default_programme()).await?;
    store.upsert_award_period(&bench_period(args.year)?).await?;
    let at = enrolled_at(args.year)?;
    let io = Channel::io();

    // Citizens, in batches.
    let mut total = ImportOutcome::default();
    let mut n = 0u32;
    while n < args.citizens {
        let end = (n + IMPORT_BATCH as u32).min(args.citizens);
        let citizens = (n..end)
            .map(|i| {
                Ok(ImportedCitizen {
                    fiscal_code: citizen_code(i)?,
                    terms_accepted_at: at,
                    channel: io.clone(),
                    iban: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        total.add(store.import_enrollments(EnrollmentImport { citizens, instruments: vec![] }).await?);
        n = end;
    }
    eprintln!(
        "citizens: {} created, {} existing ({:.1} s)",
        total.citizens_created,
        total.citizens_existing,
        started.elapsed().as_secs_f64()
    );

    // Cards, sorted by hpan so the store appends to its b-tree.
    let mut cards: Vec<([u8; 32], u64)> = (0..args.instruments).map(|k| (card_digest(true, k), k)).collect();
    cards.sort_unstable();
    let mut csv = match &args.enrollments_csv {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            writeln!(w, "hpan,fiscal_code,activated_at_us")?;
            Some(w)
        }
        None => None,
    };
    let at_us = (at.unix_timestamp_nanos() / 1_000) as i64;
    let bank = Channel::parse("BENCHBANK").map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut pending: Option<tokio::task::JoinHandle<cashback_store::StoreResult<ImportOutcome>>> = None;
    for batch in cards.chunks(IMPORT_BATCH) {
        let mut instruments = Vec::with_capacity(batch.len());
        for (digest, k) in batch {
            let owner = citizen_code((k % u64::from(args.citizens)) as u32)?;
            let hpan = Hpan::from_bytes(digest);
            if let Some(w) = csv.as_mut() {
                writeln!(w, "{},{},{}", hpan.as_str(), owner.as_str(), at_us)?;
            }
            instruments.push(ImportedInstrument { hpan, fiscal_code: owner, channel: bank.clone(), activated_at: at });
        }
        // Prepare the next batch while the store writes this one.
        if let Some(p) = pending.take() {
            total.add(p.await??);
        }
        let s = store.clone();
        pending = Some(tokio::spawn(async move {
            s.import_enrollments(EnrollmentImport { citizens: vec![], instruments }).await
        }));
    }
    if let Some(p) = pending.take() {
        total.add(p.await??);
    }
    if let Some(mut w) = csv {
        w.flush()?;
    }
    println!(
        "{}",
        serde_json::json!({
            "citizens_created": total.citizens_created, "citizens_existing": total.citizens_existing,
            "instruments_created": total.instruments_created, "instruments_existing": total.instruments_existing,
            "instruments_without_enabled_owner": total.instruments_without_enabled_owner,
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

fn encode_hex(bytes: &[u8; 32], out: &mut [u8; 64]) {
    const H: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = H[usize::from(b >> 4)];
        out[2 * i + 1] = H[usize::from(b & 15)];
    }
}

/// splitmix64: a fast, well-mixed deterministic generator (one state per row).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The kinds of malformed rows written (each breaks one rule of `docs/rules.md`).
const MALFORMED_KINDS: u64 = 12;

fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    if args.rows == 0 || args.rows > MAX_ROWS {
        bail!("--rows must be between 1 and {MAX_ROWS}");
    }
    if args.instruments == 0 || args.instruments > MAX_INSTRUMENTS || args.unknown_cards == 0 {
        bail!("--instruments must be between 1 and {MAX_INSTRUMENTS}, --unknown-cards at least 1");
    }
    if args.unknown_percent > 100 || args.malformed_per_10k > 10_000 {
        bail!("--unknown-percent must be at most 100 and --malformed-per-10k at most 10000");
    }
    let started = Instant::now();
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let name = format!("CSTAR.{BENCH_ABI}.TRNLOG.{}1101.120000.001.csv", args.year);
    let path = args.out_dir.join(&name);
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(4 << 20, file);
    let start = bench_period(args.year)?.start.midnight().assume_utc().unix_timestamp();
    // 300 days: inside the period whatever the offset.
    let span = 300 * 86_400;
    let malformed_rows = args.rows * args.malformed_per_10k / 10_000;
    let unknown_rows = args.rows * args.unknown_percent / 100;
    let mut counts = [0u64; 3]; // malformed, unknown card, enrolled card
    let mut line = Vec::with_capacity(512);
    let mut hex = [0u8; 64];
    for r in 0..args.rows {
        let mut rng = Rng(args.seed.wrapping_mul(0x1000_0000_01B3) ^ r.wrapping_mul(0xA24B_AED4_963E_E407));
        // Spread the exact counts evenly: row r is malformed when the running quota says so.
        let malformed = (r + 1) * malformed_rows / args.rows > r * malformed_rows / args.rows;
        // (Shifted by two rows so the two quotas never pick the same row.)
        let u = (r + 2) % args.rows;
        let unknown = !malformed && ((u + 1) * unknown_rows / args.rows > u * unknown_rows / args.rows);
        let digest = if unknown {
            card_digest(false, rng.below(args.unknown_cards))
        } else {
            card_digest(true, rng.below(args.instruments))
        };
        encode_hex(&digest, &mut hex);
        let secs = start + rng.below(span) as i64;
        let t = OffsetDateTime::from_unix_timestamp(secs)?;
        let plus_one = rng.below(2) == 0;
        let t = if plus_one { t.to_offset(time::macros::offset!(+01:00)) } else { t };
        let millis = rng.below(1000);
        let op = match rng.below(100) {
            0..=94 => "00",
            95..=98 => "01",
            _ => "02",
        };
        let amount = 100 + rng.below(20_000);
        let merchant = rng.below(200_000);
        let bin8 = rng.below(2) == 0;
        let kind = if malformed { r / (args.rows / malformed_rows.max(1)).max(1) % MALFORMED_KINDS } else { u64::MAX };
        line.clear();
        let sender = if kind == 0 { "ZZZZZ" } else { BENCH_ABI };
        let opc = if kind == 1 { "07" } else { op };
        write!(line, "{sender};{opc};0{};", 1 + rng.below(8))?;
        match kind {
            2 => line.extend(hex.iter().map(u8::to_ascii_uppercase)),
            _ => line.extend_from_slice(&hex),
        }
        let (y, mo, d) = (t.year(), t.month() as u8, t.day());
        let (h, mi, s) = (t.hour(), t.minute(), t.second());
        let off = if plus_one { "+01:00" } else { "Z" };
        match kind {
            3 => write!(line, ";{y:04}-02-30T{h:02}:{mi:02}:{s:02}.{millis:03}{off}")?,
            4 => write!(line, ";{y:04}-{mo:02}-{d:02}T24:{mi:02}:{s:02}.{millis:03}{off}")?,
            5 => write!(line, ";{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}")?,
            _ => write!(line, ";{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}{off}")?,
        }
        let id = if kind == 6 { String::new() } else { format!("{r:012}") };
        write!(line, ";{id};AUTH{:06};", rng.below(1_000_000))?;
        match kind {
            7 => write!(line, ";{}.{:02}", amount / 100, amount % 100)?,
            8 => write!(line, ";-{amount}")?,
            _ => write!(line, ";{amount}")?,
        }
        let currency = if kind == 9 { "840" } else { "978" };
        let bin = if kind == 10 {
            "4023601"
        } else if bin8 {
            "40236010"
        } else {
            "402360"
        };
        write!(line, ";{currency};ACQ{:02};MERCH{merchant:07};TERM{:03};{bin};5411", rng.below(20), rng.below(1000))?;
        if kind == 11 {
            line.extend_from_slice(b";EXTRA");
        }
        line.push(b'\n');
        w.write_all(&line)?;
        counts[if malformed {
            0
        } else if unknown {
            1
        } else {
            2
        }] += 1;
    }
    w.flush()?;
    drop(w);
    let size = std::fs::metadata(&path)?.len();
    println!(
        "{}",
        serde_json::json!({
            "file": path.display().to_string(), "rows": args.rows, "bytes": size,
            "malformed": counts[0], "unknown_card": counts[1], "enrolled_card": counts[2],
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citizen_codes_are_valid_and_distinct() {
        let a = citizen_code(0).unwrap();
        let b = citizen_code(1).unwrap();
        assert_ne!(a, b);
        assert_eq!(citizen_code(1_999_999).unwrap().as_str().len(), 16);
    }

    #[test]
    fn generated_rows_parse_as_intended() {
        let dir = std::env::temp_dir().join(format!("cashback-bench-ingest-{}", std::process::id()));
        let args = GenerateArgs {
            out_dir: dir.clone(),
            rows: 2_000,
            instruments: 100,
            unknown_cards: 10,
            unknown_percent: 20,
            malformed_per_10k: 100,
            year: 2026,
            seed: 1,
        };
        generate(&args).unwrap();
        let path = dir.join("CSTAR.BENCH.TRNLOG.20261101.120000.001.csv");
        let text = std::fs::read_to_string(&path).unwrap();
        let period = bench_period(2026).unwrap();
        let (mut ok, mut bad) = (0, 0);
        for l in text.lines() {
            let fields: Vec<&[u8]> = l.as_bytes().split(|&b| b == b';').collect();
            match cashback_domain::AcquirerRecord::parse(&fields, cashback_domain::RecordLayout::E1) {
                Ok(r) if r.sender_code == BENCH_ABI => {
                    ok += 1;
                    let d = cashback_domain::calendar::rome_date(r.timestamp);
                    assert!(period.start <= d && d <= period.end);
                }
                _ => bad += 1,
            }
        }
        assert_eq!((ok, bad), (1_980, 20));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
