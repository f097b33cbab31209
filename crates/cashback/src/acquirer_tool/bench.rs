//! `cashback acquirer bench`: hashing + filtering throughput and peak memory on synthetic data,
//! without any network or disk input: `--hashes` enrolled cards (digests built in memory), a
//! generated E1 input of `--rows` rows (half of them enrolled cards), kept rows written to
//! `--output` (default: discarded). Prints one JSON line. Use a release build.

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Instant;

use cashback_domain::Pan;
use clap::Args;

use super::{Filter, HpanSet};

#[derive(Args)]
pub struct BenchArgs {
    /// Enrolled hpans in the set.
    #[arg(long, default_value_t = 20_000_000)]
    pub hashes: u64,
    /// Rows of the generated input.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Where kept rows go (default: discarded).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const SALT: &str = "bench-salt";

/// The i-th synthetic card number: 16 digits, Luhn valid.
fn pan(i: u64) -> String {
    let body = format!("4{:014}", i);
    let mut sum = 0;
    for (k, c) in body.bytes().rev().enumerate() {
        let mut d = u32::from(c - b'0');
        if k % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// Generated E1 rows; row j uses card (j × 7919) mod 2·hashes: half enrolled, half not.
struct Rows {
    next: u64,
    rows: u64,
    cards: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Rows {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.next == self.rows {
                return Ok(0);
            }
            self.buf.clear();
            self.pos = 0;
            for _ in 0..1024.min(self.rows - self.next) {
                let j = self.next;
                let card = pan(j.wrapping_mul(7919) % self.cards);
                use std::io::Write;
                writeln!(
                    self.buf,
                    "12345;00;01;{card};2026-11-20T10:10:10.000+01:00;T{j};I{j};;{};978;ACQ1;MERCH1;TERM1;40236010;5411",
                    100 + j % 10_000
                )?;
                self.next += 1;
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.hashes > 0 && args.rows > 0, "--hashes and --rows must be positive");
    let t = Instant::now();
    let mut digests = Vec::with_capacity(args.hashes as usize);
    for i in 0..args.hashes {
        digests.push(Pan::parse(&pan(i), "pan")?.hash(SALT).to_bytes());
    }
    let set = HpanSet::from_digests(digests);
    let set_secs = t.elapsed().as_secs_f64();
    eprintln!("{} enrolled hpans ready in {set_secs:.1} s", set.len());

    let input = Rows { next: 0, rows: args.rows, cards: args.hashes * 2, buf: Vec::new(), pos: 0 };
    let filter = Filter { salt: SALT, abi: "12345", enrolled: &set };
    let t = Instant::now();
    let stats = match &args.output {
        Some(p) => filter.run(input, io::BufWriter::new(std::fs::File::create(p)?), io::sink(), |_| {})?,
        None => filter.run(input, io::sink(), io::sink(), |_| {})?,
    };
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "hashes": set.len(), "rows": stats.rows, "kept": stats.kept, "not_enrolled": stats.not_enrolled,
            "rejected": stats.rejected, "set_build_seconds": (set_secs * 10.0).round() / 10.0,
            "filter_seconds": (secs * 100.0).round() / 100.0,
            "rows_per_second": (stats.rows as f64 / secs).round(), "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
