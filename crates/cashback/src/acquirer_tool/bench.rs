//! `cashback acquirer bench`: hashing + filtering throughput and peak memory, no network.
//!
//! Untimed preparation, in a scratch directory (`--dir`, default the system temp dir): the
//! hashed-PAN list of `--hashes` enrolled cards as the acquirer API serves it (a zip with one
//! `.csv` entry of 64-hex lines), and a raw E1 export of `--rows` rows (clear 16-digit PANs, half
//! of the rows enrolled cards). Then, timed separately:
//!
//! 1. loading the set from the zip (`HpanSet::load_zip`, as `acquirer run` does);
//! 2. `filter_file` — the very code `acquirer run` calls: read the raw file, validate every row,
//!    hash, look up, write the output file (with its `#sha256sum:` line) and the rejection report
//!    — with `--threads` workers (0: one per core), then with one worker; the output's final
//!    `fsync` is timed apart;
//! 3. a baseline on one thread: SHA-256 of `--rows` 16-digit PANs + salt, nothing else.
//!
//! Prints one JSON line (with the process's CPU seconds over each filter run, from
//! `/proc/self/stat`, a figure the other load of a shared machine does not change much); the
//! scratch files are removed. Use a release build, and
//! `/usr/bin/time -v` for the peak RSS of the whole process (also printed, from `VmHWM`).

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use cashback_domain::PanDigits;
use clap::Args;
use sha2::{Digest, Sha256};

use super::{Filter, HpanSet, filter_file_unsynced};

#[derive(Args)]
pub struct BenchArgs {
    /// Enrolled hpans in the set.
    #[arg(long, default_value_t = 20_000_000)]
    pub hashes: u64,
    /// Rows of the generated input.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Worker threads of the filter (0: one per available core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Scratch directory for the generated list, input and output files (default: temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Skip the one-worker run (the baseline hash loop still runs).
    #[arg(long)]
    pub no_single: bool,
}

const SALT: &str = "bench-salt";

/// The i-th synthetic card number: 16 digits, Luhn valid.
fn pan(i: u64) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[0] = b'4';
    let mut v = i;
    for k in (1..15).rev() {
        d[k] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let mut sum = 0;
    for (k, &c) in d[..15].iter().rev().enumerate() {
        let mut x = u32::from(c - b'0');
        if k % 2 == 0 {
            x *= 2;
            if x > 9 {
                x -= 9;
            }
        }
        sum += x;
    }
    d[15] = b'0' + ((10 - sum % 10) % 10) as u8;
    d
}

fn hpan(i: u64) -> [u8; 32] {
    PanDigits::parse(&pan(i), "pan").expect("a generated PAN is valid").hash_bytes(SALT.as_bytes())
}

/// The hashed-PAN zip: one `hashedPans.csv` entry, a 64-hex line per card.
fn write_list(path: &std::path::Path, hashes: u64) -> anyhow::Result<()> {
    let mut z = zip::ZipWriter::new(BufWriter::new(std::fs::File::create(path)?));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    z.start_file("hashedPans.csv", opts)?;
    let mut w = BufWriter::with_capacity(1 << 20, &mut z);
    let mut line = [b'\n'; 65];
    for i in 0..hashes {
        hex::encode_to_slice(hpan(i), &mut line[..64]).expect("64 bytes for 32");
        w.write_all(&line)?;
    }
    w.flush()?;
    drop(w);
    z.finish()?.flush()?;
    Ok(())
}

/// The raw E1 export: row j uses card (j × 7919) mod 2·hashes (half enrolled, half not).
fn write_input(path: &std::path::Path, rows: u64, hashes: u64) -> anyhow::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let cards = 2 * hashes;
    for j in 0..rows {
        let card = pan(j.wrapping_mul(7919) % cards);
        w.write_all(b"12345;00;01;")?;
        w.write_all(&card)?;
        writeln!(
            w,
            ";2026-11-20T10:10:10.000+01:00;T{j};I{j};;{};978;ACQ1;MERCH1;TERM1;40236010;5411",
            100 + j % 10_000
        )?;
    }
    w.flush()?;
    Ok(w.get_ref().metadata()?.len())
}

/// CPU time of the whole process so far (user + system, every thread), seconds: fields 14 and 15
/// of `/proc/self/stat`, in USER_HZ ticks (100 per second on Linux).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    // After the command name in parentheses: state is field 3, utime field 14, stime field 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(14) + tick(15)) / 100.0
}

fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? / 1024)
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Removes the scratch files, also on an early return.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.hashes > 0 && args.rows > 0, "--hashes and --rows must be positive");
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tag = format!("cashback-acquirer-bench-{}", std::process::id());
    let [list, input, output, rejects] =
        ["hashed-pans.zip", "input.csv", "output.csv", "rejected.csv"].map(|n| dir.join(format!("{tag}-{n}")));
    let _scratch = Scratch(vec![list.clone(), input.clone(), output.clone(), rejects.clone()]);

    let t = Instant::now();
    write_list(&list, args.hashes)?;
    let input_bytes = write_input(&input, args.rows, args.hashes)?;
    eprintln!(
        "generated the list ({} bytes) and the input ({input_bytes} bytes) in {:.1} s (not timed)",
        std::fs::metadata(&list)?.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let set = HpanSet::load_zip(&list, Some(args.hashes))?;
    let load_secs = t.elapsed().as_secs_f64();
    eprintln!("{} enrolled hpans loaded in {load_secs:.1} s ({} MiB)", set.len(), set.heap_bytes() >> 20);

    // The filter to the page cache, then the output's fsync, timed apart.
    // CPU seconds of the process over the filter (not the fsync) are kept too: on a shared
    // machine they tell what the filter costs whatever the other load.
    let timed = |threads: usize| -> anyhow::Result<(super::FilterStats, f64, f64, f64)> {
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let filter = Filter { salt: SALT, abi: "12345", enrolled: &set, threads };
        let (stats, out) = filter_file_unsynced(&filter, &input, &output, &rejects, |_| {})?;
        let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        let t = Instant::now();
        out.sync_all()?;
        Ok((stats, secs, t.elapsed().as_secs_f64(), cpu))
    };
    let (stats, secs, sync_secs, cpu_secs) = timed(args.threads)?;
    anyhow::ensure!(stats.rows == args.rows && stats.rejected == 0, "unexpected figures: {stats:?}");
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    eprintln!("filter, {threads} worker(s): {secs:.2} s, {:.0} rows/s, {cpu_secs:.2} CPU s", stats.rows as f64 / secs);
    let single = if args.no_single {
        None
    } else {
        let (s1, secs1, _, cpu1) = timed(1)?;
        anyhow::ensure!(s1 == stats, "one worker gave other figures: {s1:?}");
        eprintln!("filter, 1 worker: {secs1:.2} s, {:.0} rows/s, {cpu1:.2} CPU s", s1.rows as f64 / secs1);
        Some((secs1, cpu1))
    };
    let output_bytes = std::fs::metadata(&output)?.len();

    // Baseline: SHA-256 of 16 digits + salt alone (digits counted up in place), one thread.
    let t = Instant::now();
    let mut acc = 0u8;
    let mut digits = *b"4000000000000000";
    for _ in 0..args.rows {
        let d = Sha256::new().chain_update(digits).chain_update(SALT).finalize();
        acc ^= d[0];
        for c in digits.iter_mut().rev() {
            if *c == b'9' {
                *c = b'0';
            } else {
                *c += 1;
                break;
            }
        }
    }
    std::hint::black_box(acc);
    let base_secs = t.elapsed().as_secs_f64();

    let rps = stats.rows as f64 / secs;
    let base_rps = args.rows as f64 / base_secs;
    println!(
        "{}",
        serde_json::json!({
            "hashes": set.len(), "rows": stats.rows, "kept": stats.kept, "not_enrolled": stats.not_enrolled,
            "rejected": stats.rejected, "input_bytes": input_bytes, "output_bytes": output_bytes,
            "set_load_seconds": round(load_secs, 2), "set_mib": set.heap_bytes() >> 20,
            "threads": threads, "filter_seconds": round(secs, 3), "rows_per_second": rps.round(),
            "output_fsync_seconds": round(sync_secs, 3),
            "rows_per_second_with_fsync": (stats.rows as f64 / (secs + sync_secs)).round(),
            "filter_cpu_seconds": round(cpu_secs, 2),
            "rows_per_cpu_second": (stats.rows as f64 / cpu_secs).round(),
            "one_worker_filter_seconds": single.map(|(s, _)| round(s, 3)),
            "one_worker_rows_per_second": single.map(|(s, _)| (stats.rows as f64 / s).round()),
            "one_worker_filter_cpu_seconds": single.map(|(_, c)| round(c, 2)),
            "baseline_sha256_one_thread_rows_per_second": base_rps.round(),
            "ratio_to_baseline": round(rps / base_rps, 2),
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    io::stdout().flush()?;
    Ok(())
}
