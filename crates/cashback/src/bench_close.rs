//! `cashback bench-close`: the period-close benchmark (issue 7).
//!
//! Workload: `--citizens` enrolled citizens (IBAN on file for `--iban-percent` of them) with
//! engine totals in one closed award period (H1 2021 rules: 50 transactions minimum, €150 cap,
//! Super Cashback for the first 100,000); `--eligible-percent` of them reach the minimum, the
//! others have 1–49 transactions. Counts, cashback and last-payment instants are drawn from a
//! fixed-seed generator. Seeding goes through the store's bulk imports (`import_enrollments`,
//! `import_period_totals`) and is not timed. Timed: the close (read every total, rank, decide,
//! store the awards and queue a notice per citizen) and the payout run (assign files of at most
//! 1,000,000 rows, write each CSV with its SHA-256 sidecar, PGP-encrypted to a generated agent
//! key, and its pain.001 twin unless `--no-sepa`).
//!
//! `cashback bench-close --database sqlite:///tmp/close.db --citizens 9000000`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cashback_domain::{AwardPeriod, Money};
use cashback_store::*;
use clap::Args;
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::DbArgs;
use crate::bench_ingest::{Rng, citizen_code};
use crate::config::{self, PayoutConfig, SepaConfig};
use crate::period::{render_notice, run_payout};
use crate::serve::{database_url, init_cli_tracing, open_store};

#[derive(Args)]
pub struct BenchCloseArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[arg(long, default_value_t = 9_000_000)]
    pub citizens: u32,
    #[arg(long, default_value_t = 67)]
    pub eligible_percent: u64,
    #[arg(long, default_value_t = 95)]
    pub iban_percent: u64,
    /// Where the payout files go (default: a directory next to the database).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Skip the pain.001 twin of each file.
    #[arg(long)]
    pub no_sepa: bool,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// The benchmark's award period: H1 2021 rules under an id of its own.
const PERIOD_ID: i64 = 77;

fn period() -> AwardPeriod {
    AwardPeriod { id: PERIOD_ID, ..cashback_domain::period::default_programme().remove(2) }
}

async fn seed(store: &Arc<dyn Store>, args: &BenchCloseArgs) -> anyhow::Result<()> {
    let p = period();
    store.upsert_award_period(&p).await?;
    let at = datetime!(2020-12-08 09:00 UTC);
    let io = cashback_domain::enrollment::Channel::io();
    let mut rng = Rng(args.seed);
    let mut done = 0u32;
    let started = Instant::now();
    while done < args.citizens {
        let n = (args.citizens - done).min(MAX_IMPORT_BATCH as u32);
        let mut citizens = Vec::with_capacity(n as usize);
        let mut totals = Vec::with_capacity(n as usize);
        for i in done..done + n {
            let cf = citizen_code(i)?;
            let iban = (rng.below(100) < args.iban_percent).then(|| format!("IT60X0542811101{:012}", i));
            let count = if rng.below(100) < args.eligible_percent {
                50 + rng.below(400) as u32
            } else {
                1 + rng.below(49) as u32
            };
            let score = Money::from_cents((count as i64) * (50 + rng.below(400) as i64));
            let last_us =
                (p.start.midnight().assume_utc().unix_timestamp() + rng.below(180 * 86_400) as i64) * 1_000_000;
            totals.push(ImportedTotals {
                fiscal_code: cf.clone(),
                cashback: score.min(p.max_period_cashback),
                score_total: score,
                transactions: count,
                last_counted_us: Some(last_us),
            });
            citizens.push(ImportedCitizen { fiscal_code: cf, terms_accepted_at: at, channel: io.clone(), iban });
        }
        store.import_enrollments(EnrollmentImport { citizens, instruments: vec![] }).await?;
        store.import_period_totals(PERIOD_ID, totals, at).await?;
        done += n;
        eprintln!("seeded {done}/{} citizens ({:.0} s)", args.citizens, started.elapsed().as_secs_f64());
    }
    Ok(())
}

pub async fn run(args: BenchCloseArgs) -> anyhow::Result<()> {
    init_cli_tracing();
    let cfg = config::load(args.db.config.as_deref())?;
    let url = database_url(&args.db, &cfg);
    let store = open_store(&url, &cfg).await?;
    if store.close_summary(PERIOD_ID).await?.is_some() {
        anyhow::bail!("period {PERIOD_ID} of this database is closed already: use a fresh database");
    }
    let seed_started = Instant::now();
    seed(&store, &args).await?;
    let seed_secs = seed_started.elapsed().as_secs_f64();

    let dir = tempfile_dir(&args)?;
    let agent = cashback_pgp::PlatformKey::generate("payout agent <agent@bench.invalid>")?;
    let key_path = dir.join("agent.pub.asc");
    std::fs::write(&key_path, agent.public_key_armored())?;
    let payout = PayoutConfig {
        out_dir: dir.join("out"),
        agent_public_key_file: Some(key_path),
        max_rows: MAX_PAYOUT_FILE_ROWS,
        sepa: (!args.no_sepa).then(|| SepaConfig {
            debtor_name: "Ministero Economia Finanze".into(),
            debtor_iban: "IT60X0542811101000000123456".into(),
            debtor_bic: None,
        }),
    };
    let now = OffsetDateTime::now_utc();
    let t0 = Instant::now();
    let outcome = store.close_period(&period(), render_notice, now).await?;
    let close_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (prep, written) = run_payout(&store, &payout, now).await?;
    let payout_secs = t1.elapsed().as_secs_f64();
    let s = outcome.summary();
    let paid_rows: u64 = written.iter().map(|w| w.rows).sum();
    let report = json!({
        "backend": store.backend(),
        "citizens": args.citizens,
        "seedSeconds": seed_secs,
        "closeSeconds": close_secs,
        "payoutSeconds": payout_secs,
        "totalSeconds": close_secs + payout_secs,
        "awards": s.awards,
        "notEligible": s.not_eligible,
        "superCashbackWinners": s.super_cashback_winners,
        "amountCents": s.amount.cents(),
        "withoutIban": s.without_iban,
        "payoutFiles": written.len(),
        "payoutRows": paid_rows,
        "waitingForIban": prep.waiting_for_iban,
        "outbox": store.outbox_counts().await?.pending,
        "sepa": !args.no_sepa,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    store.close().await;
    Ok(())
}

fn tempfile_dir(args: &BenchCloseArgs) -> anyhow::Result<PathBuf> {
    let dir = match &args.out_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("cashback-bench-close-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
