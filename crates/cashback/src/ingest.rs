//! `cashback ingest FILE…`: ingest acquirer transaction files from the command line, with a
//! progress bar and the same report the acquirer API gives.
//!
//! Plain `.csv` files are read as they are; `.csv.pgp` files are decrypted with the platform's
//! key (acquirer.pgp_secret_key_file; the dev key with `--dev`) to a spool file first. The whole
//! pipeline is streaming. Several files share one enrollment snapshot. Exit status: 0 when every file was ingested (rows may still have been
//! rejected: see the report), 1 when a file was refused as a whole or could not be read.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use cashback_ingest::{Decryption, IngestContext, IngestError, IngestOptions, ingest_path};
use clap::Args;
use time::OffsetDateTime;

use crate::DbArgs;
use crate::serve::{database_url, init_cli_tracing, open_store};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_oldest_first() {
        let files: Vec<PathBuf> = [
            "in/CSTAR.12345.TRNLOG.20210117.090000.001.csv",
            "CSTAR.12345.TRNLOG.20210116.100000.002.csv.pgp",
            "notes.txt",
            "CSTAR.54321.TRNLOG.20210116.100000.001.csv",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        let got: Vec<_> = in_delivery_order(&files).into_iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            got,
            [
                "notes.txt",
                "CSTAR.54321.TRNLOG.20210116.100000.001.csv",
                "CSTAR.12345.TRNLOG.20210116.100000.002.csv.pgp",
                "in/CSTAR.12345.TRNLOG.20210117.090000.001.csv"
            ]
        );
    }
}

#[derive(Args)]
pub struct IngestArgs {
    /// Files named CSTAR.<ABI>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>.csv
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Rows per database transaction.
    #[arg(long, default_value_t = 50_000)]
    pub chunk_rows: usize,
    /// Rejected rows printed per file (all are stored and served by the API).
    #[arg(long, default_value_t = 20)]
    pub show_rejections: u32,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Use the development OpenPGP key (cashback-dev-pgp.asc) when none is configured.
    #[arg(long, env = "CASHBACK_DEV")]
    pub dev: bool,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    init_cli_tracing();
    let cfg = crate::config::load(args.db.config.as_deref())?;
    let key = crate::config::platform_key(&cfg.acquirer, args.dev || cfg.dev.unwrap_or(false))?.map(Arc::new);
    let decryption = Decryption::new(key, cfg.acquirer.spool_dir.clone());
    let store = open_store(&database_url(&args.db, &cfg), &cfg).await?;
    let result = run_files(&store, &args, &decryption).await;
    store.close().await;
    result
}

async fn run_files(
    store: &Arc<dyn cashback_store::Store>,
    args: &IngestArgs,
    decryption: &Decryption,
) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    let ctx = IngestContext::load(store.clone(), now).await.context("loading the enrollment snapshot")?;
    eprintln!(
        "enrollment snapshot: {} citizens, {} activation windows ({:.1} s)",
        ctx.index.citizens(),
        ctx.index.instruments_windows(),
        started.elapsed().as_secs_f64()
    );
    let opts = IngestOptions { chunk_rows: args.chunk_rows, ..Default::default() };
    let mut failures = 0;
    for path in in_delivery_order(&args.files) {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let received = cashback_ingest::hash_file(path).with_context(|| format!("reading {}", path.display()))?;
        let bar = progress_bar(path, args.quiet)?;
        let t = std::time::Instant::now();
        let pb = bar.clone();
        let res =
            ingest_path(&ctx, &name, path, received, decryption, &opts, move |lines| pb.set_position(lines)).await;
        bar.finish_and_clear();
        match res {
            Ok(done) => {
                let f = &done.file;
                let lines = f.counts.accepted + f.counts.ineligible + f.counts.duplicates + f.counts.rejected;
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "{}",
                    serde_json::json!({
                        "file": f.name, "status": f.status.as_str(), "already_done": done.already_done,
                        "accepted": f.counts.accepted, "ineligible": f.counts.ineligible,
                        "duplicates": f.counts.duplicates, "rejected": f.counts.rejected,
                        "seconds": (secs * 1000.0).round() / 1000.0,
                        "rows_per_second": if done.already_done { 0.0 } else { (lines as f64 / secs).round() },
                    })
                );
                for r in store.file_rejections(f.id, args.show_rejections).await? {
                    eprintln!("  line {}: {}: {}", r.line, r.field, r.reason);
                }
                if f.counts.rejected > u64::from(args.show_rejections) {
                    eprintln!("  … {} more rejected rows", f.counts.rejected - u64::from(args.show_rejections));
                }
            }
            Err(e @ (IngestError::FileName(_) | IngestError::Refused(_))) => {
                failures += 1;
                eprintln!("{}: {e}", path.display());
            }
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }
    if failures > 0 {
        anyhow::bail!("{failures} file(s) refused");
    }
    Ok(())
}

/// Files oldest first (date, time, progressive and chunk of their names), as the acquirers'
/// batch sends them; names that do not parse come first (they are refused at once).
fn in_delivery_order(files: &[PathBuf]) -> Vec<&PathBuf> {
    use cashback_domain::acquirer::FileName;
    let mut v: Vec<_> = files
        .iter()
        .map(|p| {
            let key = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| FileName::parse(n).ok())
                .map(|f| (f.created, f.progressive, f.chunk));
            (key, p)
        })
        .collect();
    v.sort_by_key(|(key, _)| *key); // stable: equal keys keep the command line's order
    v.into_iter().map(|(_, p)| p).collect()
}

fn progress_bar(path: &std::path::Path, quiet: bool) -> anyhow::Result<indicatif::ProgressBar> {
    if quiet {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg} {human_pos} lines ({per_sec}) {elapsed}")?);
    bar.set_message(path.display().to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Ok(bar)
}
