//! Period close jobs (issue 7): awards, payout files, the payout agent's inbound files,
//! complaints and the notification outbox, as `cashback period …` commands and as the `serve`
//! scheduler. The rules live in `cashback_domain::award`, the storage in
//! `cashback_store::close`, the file formats in `cashback-payout`, the texts and senders in
//! `cashback-notify`; this module wires them together and does the file I/O.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cashback_domain::award::close_day;
use cashback_domain::calendar::{rome_date, rome_offset};
use cashback_domain::{AwardPeriod, FiscalCode, Money};
use cashback_notify::{Notice, Sender, next_attempt};
use cashback_payout::{PaymentResult, PayoutRow};
use cashback_store::*;
use clap::{Args, Subcommand};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::DbArgs;
use crate::config::{self, FileConfig, PayoutConfig};
use crate::serve::{database_url, init_cli_tracing, open_store};

// ---- notices and file names (plain functions: the store calls them in its transactions) ----

pub use cashback_notify::outbox_payload as render_notice;

/// `CSTAR.CONSAP.BANKT.<ddMMyyyy.HHmmss>.<NN>_<TT>.<rows>.csv`, in Italian civil time.
pub fn name_payout_file(now: OffsetDateTime, chunk: u32, total: u32, rows: usize) -> String {
    let local = now.to_offset(rome_offset(now));
    cashback_payout::consap_file_name(PrimitiveDateTime::new(local.date(), local.time()), chunk, total, rows)
}

// ---- payout files ----

/// The payout agent's rows of a file, from its awards.
pub fn payout_rows(awards: &[Award], periods: &[AwardPeriod]) -> anyhow::Result<Vec<PayoutRow>> {
    awards
        .iter()
        .map(|a| {
            let p = periods
                .iter()
                .find(|p| p.id == a.award_period_id)
                .with_context(|| format!("award {}: unknown award period {}", a.award_id, a.award_period_id))?;
            let payoff = a.payoff.as_ref().with_context(|| format!("award {}: no IBAN", a.award_id))?;
            Ok(PayoutRow {
                award_id: a.award_id,
                citizen_fiscal_code: a.fiscal_code.clone(),
                holder_fiscal_code: payoff.account_holder_cf.clone(),
                iban: payoff.iban.clone(),
                holder_name: payoff.account_holder_name.clone(),
                holder_surname: payoff.account_holder_surname.clone(),
                amount_cents: a.amount.cents(),
                cashback_cents: a.cashback.cents(),
                jackpot_cents: a.jackpot.cents(),
                typology: a.typology.clone(),
                award_period_id: a.award_period_id,
                period_start: p.start,
                period_end: p.end,
                check_instr_status: Some(payoff.check_status.clone()).filter(|s| !s.is_empty()),
                technical_account_holder: payoff.technical_account_holder.clone(),
                issuer_card_id: payoff.issuer_card_id.clone(),
                ticket_id: a.complaint_id,
                related_id: a.related_id,
            })
        })
        .collect()
}

/// What was written for one payout file (camelCase in the CLI's JSON, like every other field).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WrittenFile {
    pub payout_file_id: i64,
    pub name: String,
    pub rows: u64,
    pub amount_cents: i64,
    pub sha256: String,
    pub paths: Vec<PathBuf>,
}

/// Write `bytes` to `dir/name` atomically (temporary file, fsync, rename).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

/// Writes one payout file: the Consap CSV (PGP-encrypted to the agent's key when configured,
/// as `<name>.pgp`) with its `.sha256sum` sidecar of the plain bytes, and, when configured, the
/// SEPA pain.001 twin (`<name>.xml`). The plain bytes are a pure function of the file's rows:
/// a regeneration must reproduce the recorded digest (checked before anything is overwritten);
/// the digest is recorded once every output is on disk, so a file whose write failed has none
/// and the next payout run writes it.
pub async fn write_payout_file(
    store: &Arc<dyn Store>,
    cfg: &PayoutConfig,
    file: &PayoutFile,
    periods: &[AwardPeriod],
) -> anyhow::Result<WrittenFile> {
    let started = std::time::Instant::now();
    let awards = store.payout_file_awards(file.payout_file_id).await?;
    let rows = payout_rows(&awards, periods)?;
    let read_s = started.elapsed().as_secs_f64();
    let totals = cashback_payout::ControlTotals::of(&rows);
    if totals.rows != file.rows || totals.amount_cents != file.amount.cents() {
        bail!("payout file {}: rows do not match the file's control totals", file.name);
    }
    // The pain.001 twin is rendered on a thread of its own while the CSV is built, digested and
    // encrypted; it is written only after the digest check, like every other output.
    let (paths, sha) = std::thread::scope(|s| -> anyhow::Result<(Vec<PathBuf>, String)> {
        let sepa = cfg.sepa.as_ref().map(|sepa| {
            let rows = &rows;
            s.spawn(move || {
                let batch = cashback_payout::SepaBatch {
                    message_id: format!("CASHBACK-{}-{}", file.run_id, file.payout_file_id),
                    created: file.created_at,
                    execution_date: rome_date(file.created_at).next_day().unwrap_or(rome_date(file.created_at)),
                    debtor: cashback_payout::SepaDebtor {
                        name: sepa.debtor_name.clone(),
                        iban: sepa.debtor_iban.clone(),
                        bic: sepa.debtor_bic.clone(),
                    },
                };
                cashback_payout::pain001(&batch, rows).map_err(|e| anyhow::anyhow!("{}: {e}", file.name))
            })
        });
        let csv = cashback_payout::consap_file(&rows);
        let sha = hex::encode(Sha256::digest(&csv));
        if let Some(recorded) = file.sha256.as_deref().filter(|r| *r != sha) {
            bail!("payout file {}: regenerated digest {sha} differs from the recorded {recorded}", file.name);
        }
        std::fs::create_dir_all(&cfg.out_dir).with_context(|| format!("payout.out_dir {}", cfg.out_dir.display()))?;
        let mut paths = Vec::new();
        let (sidecar_name, sidecar) = cashback_payout::sha256_sidecar(&file.name, &csv);
        match &cfg.agent_public_key_file {
            Some(key_path) => {
                let armored = std::fs::read_to_string(key_path)
                    .with_context(|| format!("payout.agent_public_key_file {}", key_path.display()))?;
                let key = cashback_pgp::RecipientKey::from_armored(&armored)
                    .with_context(|| format!("payout.agent_public_key_file {}", key_path.display()))?;
                let mut out = Vec::with_capacity(csv.len() / 2);
                key.encrypt(&csv[..], &mut out)?;
                paths.push(write_atomic(&cfg.out_dir, &format!("{}.pgp", file.name), &out)?);
            }
            None => paths.push(write_atomic(&cfg.out_dir, &file.name, &csv)?),
        }
        paths.push(write_atomic(&cfg.out_dir, &sidecar_name, &sidecar)?);
        if let Some(xml) = sepa {
            let xml = xml.join().map_err(|_| anyhow::anyhow!("{}: the pain.001 thread panicked", file.name))??;
            let xml_name = format!("{}.xml", file.name.trim_end_matches(".csv"));
            paths.push(write_atomic(&cfg.out_dir, &xml_name, &xml)?);
        }
        Ok((paths, sha))
    })?;
    store.payout_file_written(file.payout_file_id, &sha).await?;
    tracing::info!(file = %file.name, rows = file.rows, read_s, total_s = started.elapsed().as_secs_f64(), "payout file written");
    Ok(WrittenFile {
        payout_file_id: file.payout_file_id,
        name: file.name.clone(),
        rows: file.rows,
        amount_cents: file.amount.cents(),
        sha256: sha,
        paths,
    })
}

/// Fails early on a payout configuration that could not write files (unreadable agent key,
/// unusable SEPA debtor), before any award is assigned to a file.
fn check_payout_config(cfg: &PayoutConfig) -> anyhow::Result<()> {
    if let Some(key_path) = &cfg.agent_public_key_file {
        let armored = std::fs::read_to_string(key_path)
            .with_context(|| format!("payout.agent_public_key_file {}", key_path.display()))?;
        cashback_pgp::RecipientKey::from_armored(&armored)
            .with_context(|| format!("payout.agent_public_key_file {}", key_path.display()))?;
    }
    if let Some(sepa) = &cfg.sepa {
        let probe = cashback_payout::SepaBatch {
            message_id: "CHECK".into(),
            created: OffsetDateTime::UNIX_EPOCH,
            execution_date: OffsetDateTime::UNIX_EPOCH.date(),
            debtor: cashback_payout::SepaDebtor {
                name: sepa.debtor_name.clone(),
                iban: sepa.debtor_iban.clone(),
                bic: sepa.debtor_bic.clone(),
            },
        };
        let row = PayoutRow {
            award_id: 1,
            citizen_fiscal_code: "RSSMRA85T10A562S".into(),
            holder_fiscal_code: None,
            iban: "IT60X0542811101000000123456".into(),
            holder_name: None,
            holder_surname: None,
            amount_cents: 1,
            cashback_cents: 1,
            jackpot_cents: 0,
            typology: "01".into(),
            award_period_id: 1,
            period_start: OffsetDateTime::UNIX_EPOCH.date(),
            period_end: OffsetDateTime::UNIX_EPOCH.date(),
            check_instr_status: None,
            technical_account_holder: None,
            issuer_card_id: None,
            ticket_id: None,
            related_id: None,
        };
        cashback_payout::pain001(&probe, &[row]).map_err(|e| anyhow::anyhow!("payout.sepa: {e}"))?;
    }
    Ok(())
}

/// A payout run: repairs and new files, then every file not written yet (this run's, and any
/// an earlier run assigned but failed to write).
pub async fn run_payout(
    store: &Arc<dyn Store>,
    cfg: &PayoutConfig,
    now: OffsetDateTime,
) -> anyhow::Result<(PayoutPreparation, Vec<WrittenFile>)> {
    check_payout_config(cfg)?;
    let started = std::time::Instant::now();
    let prep = store.prepare_payout(cfg.max_rows, name_payout_file, render_notice, now).await?;
    tracing::info!(files = prep.files.len(), prepare_s = started.elapsed().as_secs_f64(), "payout run prepared");
    let periods = store.list_award_periods().await?;
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for f in store.payout_files(None).await?.iter().filter(|f| f.sha256.is_none() && f.rows > 0) {
        match write_payout_file(store, cfg, f, &periods).await {
            Ok(w) => written.push(w),
            Err(e) => {
                tracing::error!(file = %f.name, error = %e, "payout file not written; the next run tries again");
                failed.push(format!("{}: {e:#}", f.name));
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} payout file(s) not written ({} written): {}", failed.len(), written.len(), failed.join("; "));
    }
    Ok((prep, written))
}

// ---- close ----

/// Close a period: refuses before its close day (`end + grace + 1`, Italian date) unless
/// `force`; then a payout run.
pub async fn close(
    store: &Arc<dyn Store>,
    cfg: &PayoutConfig,
    period_id: i64,
    force: bool,
    now: OffsetDateTime,
) -> anyhow::Result<serde_json::Value> {
    let period = store
        .list_award_periods()
        .await?
        .into_iter()
        .find(|p| p.id == period_id)
        .with_context(|| format!("period: no award period {period_id}"))?;
    let today = rome_date(now);
    if today < close_day(&period) && !force {
        bail!(
            "period: award period {period_id} can be closed from {} (today is {today}); --force to close early",
            close_day(&period)
        );
    }
    let outcome = store.close_period(&period, render_notice, now).await?;
    let (prep, written) = run_payout(store, cfg, now).await?;
    Ok(json!({
        "awardPeriodId": period_id,
        "alreadyClosed": matches!(outcome, CloseOutcome::AlreadyClosed(_)),
        "summary": summary_json(outcome.summary()),
        "payout": payout_json(&prep, &written),
    }))
}

fn summary_json(s: &CloseSummary) -> serde_json::Value {
    json!({
        "citizens": s.citizens,
        "awards": s.awards,
        "notEligible": s.not_eligible,
        "superCashbackWinners": s.super_cashback_winners,
        "cashbackCents": s.cashback.cents(),
        "jackpotCents": s.jackpot.cents(),
        "amountCents": s.amount.cents(),
        "withoutIban": s.without_iban,
    })
}

fn payout_json(p: &PayoutPreparation, written: &[WrittenFile]) -> serde_json::Value {
    json!({
        "ibanFilled": p.iban_filled,
        "reissued": p.reissued,
        "waitingForIban": p.waiting_for_iban,
        "files": written,
    })
}

// ---- inbound files ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InboundFileKind {
    /// `uniqueID;result;resultReason;cro;executionDate`
    Outcomes,
    /// The complaint "integration" payments (16 columns).
    Integrations,
}

/// The parser's rejected lines go to the report; a file in which no line could be read is refused
/// as a whole (e.g. applied with the wrong `--kind`), so it is not recorded as seen.
fn take_parse_errors<T>(
    name: &str,
    what: &str,
    parsed: &cashback_payout::Parsed<T>,
    rejected: &mut Vec<InboundRejection>,
) -> anyhow::Result<()> {
    if let (true, Some(first)) = (parsed.lines.is_empty(), parsed.rejected.first()) {
        bail!(
            "file: no line of {name} is an {what} line (first error: line {}, {}: {})",
            first.line,
            first.field,
            first.reason
        );
    }
    rejected.extend(parsed.rejected.iter().map(|e| InboundRejection {
        line: e.line,
        field: e.field.to_string(),
        reason: e.reason.clone(),
    }));
    Ok(())
}

/// The agent's result as stored on an award.
fn transfer_outcome(
    result: &PaymentResult,
    reason: Option<String>,
    cro: Option<String>,
    execution_date: Option<time::Date>,
) -> TransferOutcome {
    TransferOutcome {
        executed: *result == PaymentResult::Executed,
        result: result.as_str().to_string(),
        reason,
        cro,
        execution_date,
    }
}

/// Read an inbound file (decrypting `.pgp` with the platform key), parse it and apply it.
/// Bad lines are reported with their line numbers and never stop the others.
pub async fn apply_inbound(
    store: &Arc<dyn Store>,
    path: &Path,
    kind: InboundFileKind,
    key: Option<&cashback_pgp::PlatformKey>,
    now: OffsetDateTime,
) -> anyhow::Result<serde_json::Value> {
    const MAX_INBOUND_BYTES: u64 = 512 * 1024 * 1024;
    let name = path.file_name().and_then(|n| n.to_str()).context("file: no file name")?.to_string();
    let raw = std::fs::read(path).with_context(|| format!("file: reading {}", path.display()))?;
    let content = if name.ends_with(".pgp") {
        let key = key.context("file: a .pgp file needs the platform key (acquirer.pgp_secret_key_file)")?;
        let mut plain = Vec::new();
        key.decrypt(&raw[..])
            .context("file: cannot decrypt with the platform key")?
            .take(MAX_INBOUND_BYTES + 1)
            .read_to_end(&mut plain)
            .context("file: decrypting")?;
        plain
    } else {
        raw
    };
    if content.len() as u64 > MAX_INBOUND_BYTES {
        bail!("file: larger than {MAX_INBOUND_BYTES} bytes");
    }
    let sha = hex::encode(Sha256::digest(&content));
    let mut rejected: Vec<InboundRejection> = Vec::new();
    let outcome = match kind {
        InboundFileKind::Outcomes => {
            let parsed = cashback_payout::parse_outcomes(&content);
            take_parse_errors(&name, "outcome", &parsed, &mut rejected)?;
            // An award listed twice in one file: the first line counts, the others are rejected.
            let mut first_line = std::collections::HashMap::new();
            let lines = parsed
                .lines
                .into_iter()
                .filter(|(line, l)| match first_line.entry(l.award_id) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(*line);
                        true
                    }
                    std::collections::hash_map::Entry::Occupied(o) => {
                        rejected.push(InboundRejection {
                            line: *line,
                            field: "uniqueID".into(),
                            reason: format!("award {} is already on line {}", l.award_id, o.get()),
                        });
                        false
                    }
                })
                .map(|(line, l)| OutcomeUpdate {
                    line,
                    award_id: l.award_id,
                    outcome: transfer_outcome(&l.result, l.reason, l.cro, l.execution_date),
                })
                .collect();
            store.apply_outcomes(&name, &sha, lines, render_notice, now).await?
        }
        InboundFileKind::Integrations => {
            let parsed = cashback_payout::parse_integrations(&content);
            take_parse_errors(&name, "integration", &parsed, &mut rejected)?;
            let mut lines = Vec::new();
            for (line, l) in parsed.lines {
                let Some(iban) = l.iban.filter(|s| !s.is_empty()) else {
                    rejected.push(InboundRejection { line, field: "iban".into(), reason: "must not be empty".into() });
                    continue;
                };
                lines.push(IntegrationPayment {
                    line,
                    agent_id: l.consap_id,
                    related_id: l.related_award_id,
                    fiscal_code: l.fiscal_code,
                    iban,
                    holder_name: l.name,
                    holder_surname: l.surname,
                    amount: Money::from_cents(l.amount_cents),
                    cashback: Money::from_cents(l.cashback_cents),
                    jackpot: Money::from_cents(l.jackpot_cents),
                    period_start: l.period_start,
                    period_end: l.period_end,
                    complaint_id: Some(l.ticket_id),
                    outcome: transfer_outcome(&l.result, l.reason, l.cro, l.execution_date),
                });
            }
            store.apply_integrations(&name, &sha, lines, now).await?
        }
    };
    let (status, applied, unchanged) = match outcome {
        InboundOutcome::Applied { applied, unchanged, rejected: r } => {
            rejected.extend(r);
            ("APPLIED", applied, unchanged)
        }
        InboundOutcome::AlreadyApplied => ("ALREADY_APPLIED", 0, 0),
        InboundOutcome::NameConflict => bail!("file: {name} was applied before with different content"),
    };
    rejected.sort_by_key(|r| r.line);
    Ok(json!({
        "file": name,
        "sha256": sha,
        "status": status,
        "applied": applied,
        "unchanged": unchanged,
        "rejected": rejected.iter().map(|r| json!({"line": r.line, "field": r.field, "reason": r.reason})).collect::<Vec<_>>(),
    }))
}

// ---- notifications ----

/// Counts of one dispatch round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Dispatched {
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
}

/// Claim one batch of due notifications and send them. The batch is leased for long enough to
/// send every item ([`lease_for`]) and the round stops at half the lease, so another node takes
/// an item over only if this one died.
pub async fn dispatch_once(
    store: &Arc<dyn Store>,
    sender: &Arc<dyn Sender>,
    batch: u32,
    lease: time::Duration,
    now: OffsetDateTime,
) -> anyhow::Result<Dispatched> {
    let items = store.claim_notifications(batch, lease, now).await?;
    let mut d = Dispatched::default();
    // Never send past the lease (another node may have claimed the rest by then): the items not
    // sent go back to the pool when their lease ends.
    let deadline = std::time::Instant::now() + std::time::Duration::try_from(lease).unwrap_or_default() / 2;
    for item in items {
        if std::time::Instant::now() > deadline {
            break;
        }
        let result = match serde_json::from_str::<Notice>(&item.payload) {
            Err(e) => DeliveryResult::Failed { error: format!("unreadable notice: {e}") },
            Ok(notice) => {
                let msg = cashback_notify::render(&item.fiscal_code, &notice);
                match sender.send(&msg).await {
                    Ok(id) => DeliveryResult::Sent { message_id: id },
                    Err(cashback_notify::SendError::Permanent { reason }) => DeliveryResult::Failed { error: reason },
                    Err(cashback_notify::SendError::Retryable { reason, retry_after }) => {
                        match next_attempt(item.attempts + 1, OffsetDateTime::now_utc().max(now), retry_after) {
                            Some(at) => DeliveryResult::Retry { error: reason, next_attempt: at },
                            None => DeliveryResult::Failed { error: format!("gave up: {reason}") },
                        }
                    }
                }
            }
        };
        match &result {
            DeliveryResult::Sent { .. } => d.sent += 1,
            DeliveryResult::Retry { .. } => d.retried += 1,
            DeliveryResult::Failed { .. } => d.failed += 1,
        }
        store.notification_result(item.notification_id, result, now).await?;
    }
    metrics::counter!("cashback_notifications_sent_total").increment(d.sent);
    metrics::counter!("cashback_notifications_retried_total").increment(d.retried);
    metrics::counter!("cashback_notifications_failed_total").increment(d.failed);
    Ok(d)
}

/// The `serve` dispatcher: a round every `poll_ms`, back to back while batches come full.
/// The lease of a claimed batch: every send may take the sender's whole timeout.
pub fn lease_for(cfg: &cashback_notify::NotifyConfig) -> time::Duration {
    time::Duration::try_from(cfg.timeout() * (cfg.batch_size.max(1) + 1) * 2).unwrap_or(time::Duration::hours(1))
}

pub async fn run_dispatcher(store: Arc<dyn Store>, sender: Arc<dyn Sender>, cfg: cashback_notify::NotifyConfig) {
    let lease = lease_for(&cfg);
    let batch = cfg.batch_size;
    loop {
        match dispatch_once(&store, &sender, batch, lease, OffsetDateTime::now_utc()).await {
            Ok(d) if d.sent + d.retried + d.failed >= u64::from(batch) => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "notification dispatch failed"),
        }
        tokio::time::sleep(cfg.poll_interval()).await;
    }
}

// ---- scheduler ----

/// The lease of a claimed job: a node that stops renewing it (it died, or the job failed) loses
/// the job to the next tick of any node once this long has passed since the last renewal.
const JOB_LEASE: time::Duration = time::Duration::minutes(2);

/// How often a running job renews its lease (well within [`JOB_LEASE`]).
const JOB_HEARTBEAT: Duration = Duration::from_secs(20);

async fn once<F, Fut>(store: &Arc<dyn Store>, job: &str, now: OffsetDateTime, f: F) -> anyhow::Result<bool>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    once_leased(store, job, now, JOB_LEASE, JOB_HEARTBEAT, f).await
}

/// Run `f` if this node claims `job`, renewing the claim every `heartbeat` while it runs.
/// Renewing is claiming again with no staleness allowed: only this job's unfinished claim is
/// moved forward (to `now` plus the time elapsed since, so a drill's simulated clock stays
/// consistent); a finished job is left alone. A job that fails stays unfinished and is taken
/// over `lease` after its last renewal.
async fn once_leased<F, Fut>(
    store: &Arc<dyn Store>,
    job: &str,
    now: OffsetDateTime,
    lease: time::Duration,
    heartbeat: Duration,
    f: F,
) -> anyhow::Result<bool>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    if !store.claim_job(job, lease, now).await? {
        return Ok(false);
    }
    tracing::info!(job, "scheduled job started");
    let started = tokio::time::Instant::now();
    let renew = {
        let (store, job) = (store.clone(), job.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(heartbeat).await;
                if let Err(e) = store.claim_job(&job, time::Duration::ZERO, now + started.elapsed()).await {
                    tracing::warn!(job, error = %e, "renewing a scheduled job's lease failed");
                }
            }
        })
    };
    let outcome = f().await;
    renew.abort();
    let outcome = outcome?;
    store.finish_job(job, &outcome, now + started.elapsed()).await?;
    tracing::info!(job, outcome, "scheduled job done");
    Ok(true)
}

/// One scheduler tick: each step runs on its day, once across every node (job claims in the
/// store). The day after a period ends: "period over" to enrolled citizens. On the close day:
/// awards. Every day from the first close on: a payout run (late IBANs, re-issues,
/// corrections). A running step renews its claim; a failed step, or the step of a node that
/// died, is left unfinished and taken over once its lease ([`JOB_LEASE`]) has run out.
pub async fn scheduler_tick(
    store: &Arc<dyn Store>,
    cfg: &PayoutConfig,
    retention_days: u32,
    now: OffsetDateTime,
) -> anyhow::Result<()> {
    let today = rome_date(now);
    let periods = store.list_award_periods().await?;
    once(store, &format!("erase:{today}"), now, || async {
        let n = erase_expired(store, &periods, retention_days, now).await?;
        Ok(format!("{n} citizens erased"))
    })
    .await?;
    let mut any_closed = false;
    for p in &periods {
        if today > p.end {
            let payload = serde_json::to_string(&Notice::PeriodEnded {
                award_period_id: p.id,
                end: p.end,
                grace_days: p.grace_period_days,
            })?;
            let cutoff = p.end.next_day().unwrap_or(p.end).midnight().assume_offset(rome_offset(now));
            once(store, &format!("period-ended:{}", p.id), now, || async {
                let n = store.enqueue_for_enrolled(&format!("period-ended:{}:", p.id), &payload, cutoff, now).await?;
                Ok(format!("{n} notices"))
            })
            .await?;
        }
        if today >= close_day(p) {
            any_closed = true;
            once(store, &format!("close:{}", p.id), now, || async {
                let o = store.close_period(p, render_notice, now).await?;
                Ok(format!("{} awards", o.summary().awards))
            })
            .await?;
        }
    }
    if any_closed {
        once(store, &format!("payout:{today}"), now, || async {
            let (prep, written) = run_payout(store, cfg, now).await?;
            Ok(format!(
                "{} files, {} re-issued, {} waiting for an IBAN",
                written.len(),
                prep.reissued,
                prep.waiting_for_iban
            ))
        })
        .await?;
    }
    Ok(())
}

/// Erase the personal data whose retention is over (`cashback_domain::award::erasure_cutoff`),
/// in batches; returns how many citizens were erased.
pub async fn erase_expired(
    store: &Arc<dyn Store>,
    periods: &[AwardPeriod],
    retention_days: u32,
    now: OffsetDateTime,
) -> anyhow::Result<u64> {
    const BATCH: u32 = 1_000;
    let (cutoff, programme_over) = cashback_domain::award::erasure_cutoff(periods, rome_date(now), retention_days);
    let cutoff = cutoff.midnight().assume_offset(rome_offset(now));
    let mut total = 0;
    loop {
        let n = store.erase_expired_citizens(cutoff, programme_over, BATCH, now).await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
    }
}

/// The `serve` scheduler loop.
pub async fn run_scheduler(store: Arc<dyn Store>, cfg: PayoutConfig, retention_days: u32, tick: Duration) {
    loop {
        if let Err(e) = scheduler_tick(&store, &cfg, retention_days, OffsetDateTime::now_utc()).await {
            tracing::warn!(error = %e, "scheduler tick failed");
        }
        tokio::time::sleep(tick).await;
    }
}

// ---- CLI ----

#[derive(Args)]
pub struct PeriodArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The instant to act as (RFC 3339; default: now). For drills and tests.
    #[arg(long, global = true)]
    pub now: Option<String>,
    #[command(subcommand)]
    pub command: PeriodCommand,
}

#[derive(Subcommand)]
pub enum PeriodCommand {
    /// Compute a period's awards (once) and write the payout files.
    Close {
        #[arg(long)]
        period: i64,
        /// Close before the period's close day (end + grace + 1).
        #[arg(long)]
        force: bool,
    },
    /// A payout run: fill IBANs, re-issue failed transfers, write files for every payable award.
    Payout,
    /// Write a payout file again from the database (the plain bytes must match the first time).
    Regenerate {
        #[arg(long)]
        file_id: i64,
    },
    /// List payout files.
    Files,
    /// Apply an inbound file of the payout agent (plain or .pgp).
    Inbound {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "outcomes")]
        kind: InboundFileKind,
    },
    /// A citizen's awards.
    Awards {
        #[arg(long)]
        fiscal_code: String,
    },
    /// Complaints: list, file on a citizen's behalf, decide.
    Complaints {
        #[command(subcommand)]
        command: ComplaintCommand,
    },
    /// Send due notifications once (the server does it continuously).
    Notify {
        /// Rounds at most.
        #[arg(long, default_value_t = 1)]
        rounds: u32,
    },
}

#[derive(Subcommand)]
pub enum ComplaintCommand {
    List {
        /// OPEN, ACCEPTED or REJECTED.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    File {
        #[arg(long)]
        fiscal_code: String,
        #[arg(long)]
        period: i64,
        /// MISSING_TRANSACTION, WRONG_AMOUNT or PAYMENT_NOT_RECEIVED.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        description: String,
    },
    /// Accept (with a correction in euro-cents, paid in the next payout file) or reject.
    Decide {
        #[arg(long)]
        id: i64,
        #[arg(long, conflicts_with = "reject")]
        accept_cents: Option<i64>,
        #[arg(long)]
        reject: bool,
        #[arg(long)]
        note: Option<String>,
    },
}

/// File a complaint for a citizen, checking the period and its legal window.
pub async fn file_complaint(
    store: &Arc<dyn Store>,
    cf: &FiscalCode,
    period_id: i64,
    kind: &str,
    description: &str,
    now: OffsetDateTime,
) -> anyhow::Result<FileComplaintOutcome> {
    let periods = store.list_award_periods().await?;
    let kind = validate_complaint(&periods, period_id, kind, description, rome_date(now))
        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))?;
    Ok(store.file_complaint(cf, period_id, kind, description.trim(), now).await?)
}

fn complaint_json(c: &Complaint) -> serde_json::Value {
    json!(cashback_api::close::ComplaintView::new(c, true))
}

fn award_json(a: &Award) -> serde_json::Value {
    json!(cashback_api::close::AwardView::from(a))
}

fn parse_now(s: Option<&str>) -> anyhow::Result<OffsetDateTime> {
    match s {
        None => Ok(OffsetDateTime::now_utc()),
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .with_context(|| format!("now: {s:?} is not an RFC 3339 instant")),
    }
}

pub async fn run(args: PeriodArgs) -> anyhow::Result<()> {
    init_cli_tracing();
    let cfg = config::load(args.db.config.as_deref())?;
    let now = parse_now(args.now.as_deref())?;
    let store = open_store(&database_url(&args.db, &cfg), &cfg).await?;
    let result = run_command(&store, &cfg, args.command, now).await;
    store.close().await;
    let value = result?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

async fn run_command(
    store: &Arc<dyn Store>,
    cfg: &FileConfig,
    cmd: PeriodCommand,
    now: OffsetDateTime,
) -> anyhow::Result<serde_json::Value> {
    let payout = &cfg.payout;
    Ok(match cmd {
        PeriodCommand::Close { period, force } => close(store, payout, period, force, now).await?,
        PeriodCommand::Payout => {
            let (prep, written) = run_payout(store, payout, now).await?;
            payout_json(&prep, &written)
        }
        PeriodCommand::Regenerate { file_id } => {
            let file = store
                .payout_files(None)
                .await?
                .into_iter()
                .find(|f| f.payout_file_id == file_id)
                .with_context(|| format!("file-id: no payout file {file_id}"))?;
            let periods = store.list_award_periods().await?;
            json!(write_payout_file(store, payout, &file, &periods).await?)
        }
        PeriodCommand::Files => json!(
            store
                .payout_files(None)
                .await?
                .iter()
                .map(|f| json!({"payoutFileId": f.payout_file_id, "runId": f.run_id, "name": f.name, "rows": f.rows,
                    "amountCents": f.amount.cents(), "sha256": f.sha256}))
                .collect::<Vec<_>>()
        ),
        PeriodCommand::Inbound { file, kind } => {
            let key = config::platform_key(&cfg.acquirer, cfg.dev.unwrap_or(false))?;
            apply_inbound(store, &file, kind, key.as_ref(), now).await?
        }
        PeriodCommand::Awards { fiscal_code } => {
            let cf = FiscalCode::parse(&fiscal_code).map_err(|e| anyhow::anyhow!("fiscal-code: {e}"))?;
            json!(store.citizen_awards(&cf).await?.iter().map(award_json).collect::<Vec<_>>())
        }
        PeriodCommand::Complaints { command } => match command {
            ComplaintCommand::List { status, limit } => {
                let status = status
                    .map(|s| ComplaintStatus::parse(&s).context("status: must be OPEN, ACCEPTED or REJECTED"))
                    .transpose()?;
                json!(
                    store
                        .list_complaints(status, limit.min(10_000))
                        .await?
                        .iter()
                        .map(complaint_json)
                        .collect::<Vec<_>>()
                )
            }
            ComplaintCommand::File { fiscal_code, period, kind, description } => {
                let cf = FiscalCode::parse(&fiscal_code).map_err(|e| anyhow::anyhow!("fiscal-code: {e}"))?;
                match file_complaint(store, &cf, period, &kind, &description, now).await? {
                    FileComplaintOutcome::Created(c) => json!({"created": true, "complaint": complaint_json(&c)}),
                    FileComplaintOutcome::AlreadyOpen(c) => json!({"created": false, "complaint": complaint_json(&c)}),
                    FileComplaintOutcome::CitizenNotFound => bail!("fiscal-code: no such citizen"),
                }
            }
            ComplaintCommand::Decide { id, accept_cents, reject, note } => {
                let decision = match (accept_cents, reject) {
                    (Some(c), false) if c > 0 => ComplaintDecision::Accept { correction: Money::from_cents(c), note },
                    (Some(_), false) => bail!("accept-cents: must be positive"),
                    (None, true) => ComplaintDecision::Reject { note },
                    _ => bail!("decide: give --accept-cents N or --reject"),
                };
                match store.decide_complaint(id, decision, render_notice, now).await? {
                    DecideComplaintOutcome::Decided(c) => json!({"changed": true, "complaint": complaint_json(&c)}),
                    DecideComplaintOutcome::Unchanged(c) => json!({"changed": false, "complaint": complaint_json(&c)}),
                    DecideComplaintOutcome::Conflict(c) => {
                        bail!("id: complaint {id} was already decided ({})", c.status.as_str())
                    }
                    DecideComplaintOutcome::NotFound => bail!("id: no complaint {id}"),
                }
            }
        },
        PeriodCommand::Notify { rounds } => {
            let ncfg = cfg.notifications();
            let sender = cashback_notify::build_sender(&ncfg).map_err(|e| anyhow::anyhow!("notifications.{e}"))?;
            let lease = lease_for(&ncfg);
            let mut total = Dispatched::default();
            for _ in 0..rounds.max(1) {
                let d = dispatch_once(store, &sender, ncfg.batch_size, lease, now).await?;
                total.sent += d.sent;
                total.retried += d.retried;
                total.failed += d.failed;
                if d.sent + d.retried + d.failed == 0 {
                    break;
                }
            }
            json!({"dispatched": total, "outbox": {
                "pending": store.outbox_counts().await?.pending,
            }})
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_through_the_outbox_payload() {
        let period = cashback_domain::period::default_programme().remove(1);
        let ne =
            NotEligible { fiscal_code: "RSSMRA85T10A562S".into(), transactions: 12, cashback: Money::from_cents(340) };
        let payload = render_notice(NoticeFor::NotEligible { period: &period, row: &ne });
        let notice: Notice = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            notice,
            Notice::NotEligible { award_period_id: 1, transactions: 12, min_transactions: 50, cashback_cents: 340 }
        );
        let msg = cashback_notify::render("RSSMRA85T10A562S", &notice);
        assert!(msg.markdown.contains("3,40"), "{}", msg.markdown);
    }

    /// A running job's claim is renewed, so no other node takes it over however long it runs;
    /// a claim nobody renews (its node died) is taken over once the lease has run out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn job_leases_are_renewed_while_the_job_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            cashback_store_sqlite::SqliteStore::open(dir.path().join("db.sqlite"), Default::default()).unwrap();
        let now = time::macros::datetime!(2021-07-11 04:30:00 UTC);
        let lease = time::Duration::milliseconds(600);
        let started = tokio::time::Instant::now();
        let running = {
            let store = store.clone();
            tokio::spawn(async move {
                once_leased(&store, "close:1", now, lease, Duration::from_millis(100), || async {
                    tokio::time::sleep(Duration::from_millis(1_800)).await;
                    Ok("done".to_owned())
                })
                .await
                .unwrap()
            })
        };
        // Three leases later, the job still runs and its claim is live.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(!store.claim_job("close:1", lease, now + started.elapsed()).await.unwrap(), "renewed");
        assert!(running.await.unwrap());
        assert!(store.job_done("close:1").await.unwrap());
        assert!(!store.claim_job("close:1", lease, now + time::Duration::hours(9)).await.unwrap(), "finished");
        // A node that claimed a job and died: taken over once the lease has run out, not before.
        assert!(store.claim_job("close:2", lease, now).await.unwrap());
        assert!(!store.claim_job("close:2", lease, now + time::Duration::milliseconds(500)).await.unwrap());
        assert!(store.claim_job("close:2", lease, now + time::Duration::milliseconds(700)).await.unwrap());
    }

    #[test]
    fn payout_file_names_use_italian_time() {
        let t = time::macros::datetime!(2021-07-11 04:30:05 UTC); // 06:30:05 in Rome (summer)
        assert_eq!(name_payout_file(t, 1, 2, 5), "CSTAR.CONSAP.BANKT.11072021.063005.01_02.5.csv");
    }
}
