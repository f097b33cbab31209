//! Period close on SQLite (see `cashback_store::close`). Bulk reads run on a fresh read-only
//! connection off the writer; writes go through the writer in batches of at most
//! [`WRITE_BATCH`] rows, each idempotent on its own (unique indexes + `INSERT OR IGNORE`), so the
//! API keeps being served while a period closes and a crash in between is repaired by a re-run.

use std::sync::Arc;

use async_trait::async_trait;
use cashback_domain::scoring::Standing;
use cashback_domain::{AwardPeriod, FiscalCode, Money};
use cashback_store::*;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use time::OffsetDateTime;

use crate::ops::{conv_err, fmt_date, from_micros, micros, parse_date};
use crate::{SqliteStore, audited, sql_err};

const AWARD_COLS: &str = "award_id, award_period_id, fiscal_code, kind, related_id, complaint_id, agent_id, amount_cents, \
    cashback_cents, jackpot_cents, typology, transactions, rank, score_total_cents, period_cap_applied, status, \
    payoff_instr, payoff_instr_type, account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, \
    technical_account_holder, issuer_card_id, payout_file_id, outcome_result, outcome_executed, outcome_reason, outcome_cro, \
    outcome_execution_date, created_at, updated_at";

/// Rows per writer job of the bulk steps (the API's requests are served between jobs).
const WRITE_BATCH: usize = 20_000;
/// Writer jobs of a bulk step queued at once.
const JOBS_IN_FLIGHT: usize = 2;
/// The writer's page cache while a close writes its awards (KiB).
const BULK_CACHE_KIB: i64 = 512 * 1024;

const COMPLAINT_COLS: &str = "complaint_id, fiscal_code, award_period_id, kind, description, status, correction_cents, \
    correction_award_id, operator_note, created_at, decided_at";

fn payoff_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Payoff>> {
    let iban: Option<String> = r.get(i)?;
    Ok(match iban {
        Some(iban) => Some(Payoff {
            iban,
            instr_type: r.get::<_, Option<String>>(i + 1)?.unwrap_or_else(|| "IBAN".into()),
            account_holder_cf: r.get(i + 2)?,
            account_holder_name: r.get(i + 3)?,
            account_holder_surname: r.get(i + 4)?,
            check_status: r.get::<_, Option<String>>(i + 5)?.unwrap_or_default(),
            technical_account_holder: r.get(i + 6)?,
            issuer_card_id: r.get(i + 7)?,
        }),
        None => None,
    })
}

fn award_from_row(r: &Row<'_>) -> rusqlite::Result<Award> {
    let kind: String = r.get(3)?;
    let status: String = r.get(15)?;
    let result: Option<String> = r.get(25)?;
    let outcome = match result {
        Some(result) => Some(TransferOutcome {
            result,
            executed: r.get::<_, Option<bool>>(26)?.unwrap_or(false),
            reason: r.get(27)?,
            cro: r.get(28)?,
            execution_date: r.get::<_, Option<String>>(29)?.map(|s| parse_date(&s)).transpose()?,
        }),
        None => None,
    };
    Ok(Award {
        award_id: r.get(0)?,
        award_period_id: r.get(1)?,
        fiscal_code: r.get(2)?,
        kind: AwardKind::parse(&kind).ok_or_else(|| conv_err(format!("award kind {kind}")))?,
        related_id: r.get(4)?,
        complaint_id: r.get(5)?,
        agent_id: r.get(6)?,
        amount: Money::from_cents(r.get(7)?),
        cashback: Money::from_cents(r.get(8)?),
        jackpot: Money::from_cents(r.get(9)?),
        typology: r.get(10)?,
        transactions: r.get(11)?,
        rank: r.get(12)?,
        score_total: Money::from_cents(r.get(13)?),
        period_cap_applied: r.get(14)?,
        status: AwardStatus::parse(&status).ok_or_else(|| conv_err(format!("award status {status}")))?,
        payoff: payoff_at(r, 16)?,
        payout_file_id: r.get(24)?,
        outcome,
        created_at: from_micros(r.get(30)?)?,
        updated_at: from_micros(r.get(31)?)?,
    })
}

fn complaint_from_row(r: &Row<'_>) -> rusqlite::Result<Complaint> {
    let kind: String = r.get(3)?;
    let status: String = r.get(5)?;
    Ok(Complaint {
        complaint_id: r.get(0)?,
        fiscal_code: r.get(1)?,
        award_period_id: r.get(2)?,
        kind: ComplaintKind::parse(&kind).ok_or_else(|| conv_err(format!("complaint kind {kind}")))?,
        description: r.get(4)?,
        status: ComplaintStatus::parse(&status).ok_or_else(|| conv_err(format!("complaint status {status}")))?,
        correction: r.get::<_, Option<i64>>(6)?.map(Money::from_cents),
        correction_award_id: r.get(7)?,
        operator_note: r.get(8)?,
        created_at: from_micros(r.get(9)?)?,
        decided_at: r.get::<_, Option<i64>>(10)?.map(from_micros).transpose()?,
    })
}

fn get_award(c: &Connection, id: i64) -> rusqlite::Result<Option<Award>> {
    c.prepare_cached(&format!("SELECT {AWARD_COLS} FROM award WHERE award_id = ?1"))?
        .query_row([id], award_from_row)
        .optional()
}

fn get_complaint(c: &Connection, id: i64) -> rusqlite::Result<Option<Complaint>> {
    c.prepare_cached(&format!("SELECT {COMPLAINT_COLS} FROM complaint WHERE complaint_id = ?1"))?
        .query_row([id], complaint_from_row)
        .optional()
}

fn enqueue(c: &Connection, key: &str, cf: &str, payload: &str, now_us: i64) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO notification (dedup_key, fiscal_code, payload, status, attempts, next_attempt_at, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'PENDING', 0, ?4, ?4, ?4)",
        )?
        .execute(params![key, cf, payload, now_us])?;
    Ok(n == 1)
}

fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<CloseSummary> {
    Ok(CloseSummary {
        award_period_id: r.get(0)?,
        citizens: r.get::<_, i64>(1)? as u64,
        awards: r.get::<_, i64>(2)? as u64,
        not_eligible: r.get::<_, i64>(3)? as u64,
        super_cashback_winners: r.get::<_, i64>(4)? as u64,
        cashback: Money::from_cents(r.get(5)?),
        jackpot: Money::from_cents(r.get(6)?),
        amount: Money::from_cents(r.get(7)?),
        without_iban: r.get::<_, i64>(8)? as u64,
    })
}

fn close_summary(c: &Connection, period: i64) -> rusqlite::Result<Option<CloseSummary>> {
    c.prepare_cached(
        "SELECT award_period_id, citizens, awards, not_eligible, winners, cashback_cents, jackpot_cents, amount_cents, \
         without_iban FROM award_close WHERE award_period_id = ?1",
    )?
    .query_row([period], summary_from_row)
    .optional()
}

/// Every citizen with totals in the period, with their enrollment and IBAN now, in
/// `citizen_period` key order (the same rows as the join `citizen_period ⋈ citizen` on the fiscal
/// code). Two sequential scans instead of a join: `citizen_period` in key order, then `citizen`
/// in rowid order, matched on `citizen_id` (the citizen's rowid, see migration 0005). Probing
/// `citizen` by fiscal code from `citizen_period` order costs a random page read per citizen,
/// because citizen rows are stored in enrollment order. A row whose `citizen_id` does not name
/// its citizen (never expected) is looked up by fiscal code instead.
fn close_rows(c: &Connection, period: i64) -> rusqlite::Result<Vec<CloseRow>> {
    let mut rows: Vec<CloseRow> = c
        .prepare(
            "SELECT fiscal_code, citizen_id, enabled, cashback_cents, score_total_cents, transactions, last_counted_at \
             FROM citizen_period WHERE award_period_id = ?1",
        )?
        .query_map([period], |r| {
            Ok(CloseRow {
                fiscal_code: r.get(0)?,
                citizen_id: r.get(1)?,
                enabled: r.get(2)?,
                cashback: Money::from_cents(r.get(3)?),
                score_total: Money::from_cents(r.get(4)?),
                standing: Standing { count: r.get(5)?, last_us: r.get(6)? },
                payoff: None,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    // (citizen id, row index) in citizen id order, matched against the citizens in rowid order.
    let mut order: Vec<(u32, u32)> = rows.iter().enumerate().map(|(i, r)| (r.citizen_id, i as u32)).collect();
    order.sort_unstable();
    let mut found = vec![false; rows.len()];
    let mut next = 0usize;
    if let (Some(&(lo, _)), Some(&(hi, _))) = (order.first(), order.last()) {
        let mut st = c.prepare(
            "SELECT rowid, fiscal_code, enabled, payoff_instr, payoff_instr_type, account_holder_cf, account_holder_name, \
             account_holder_surname, check_instr_status, technical_account_holder, issuer_card_id \
             FROM citizen WHERE rowid BETWEEN ?1 AND ?2 ORDER BY rowid",
        )?;
        let mut q = st.query(params![lo, hi])?;
        while let Some(r) = q.next()? {
            let rowid: i64 = r.get(0)?;
            while next < order.len() && i64::from(order[next].0) < rowid {
                next += 1;
            }
            while next < order.len() && i64::from(order[next].0) == rowid {
                let i = order[next].1 as usize;
                let cf = r.get_ref(1)?.as_str()?;
                if rows[i].fiscal_code == cf {
                    let enabled: bool = r.get(2)?;
                    rows[i].enabled &= enabled;
                    rows[i].payoff = payoff_at(r, 3)?;
                    found[i] = true;
                }
                next += 1;
            }
        }
    }
    // Rows whose citizen id did not match: the join on the fiscal code decides (no citizen: no row).
    let mut by_code = c.prepare(
        "SELECT enabled, payoff_instr, payoff_instr_type, account_holder_cf, account_holder_name, account_holder_surname, \
         check_instr_status, technical_account_holder, issuer_card_id FROM citizen WHERE fiscal_code = ?1",
    )?;
    let mut keep = Vec::with_capacity(rows.len());
    for (mut row, hit) in rows.into_iter().zip(found) {
        if !hit {
            let citizen =
                by_code.query_row([&row.fiscal_code], |r| Ok((r.get::<_, bool>(0)?, payoff_at(r, 1)?))).optional()?;
            let Some((enabled, payoff)) = citizen else { continue };
            row.enabled &= enabled;
            row.payoff = payoff;
        }
        keep.push(row);
    }
    Ok(keep)
}

/// Rows per multi-row `INSERT` of the close (one statement's overhead spread over many rows).
const ROWS_PER_STATEMENT: usize = 500;

/// `rows` rows of a multi-row `VALUES`, `per_row` parameters each, numbered from `first` (the
/// parameters below it are shared by every row): `row(n)` renders a row whose own parameters are
/// `?n` onwards.
fn values_list(rows: usize, first: usize, per_row: usize, row: impl Fn(usize) -> String) -> String {
    (0..rows).map(|i| row(first + per_row * i)).collect::<Vec<_>>().join(", ")
}

/// Queues notifications (key, fiscal code, payload) with multi-row inserts; keys already present
/// are skipped. Returns how many were queued.
fn enqueue_many(c: &Connection, items: &[(String, String, String)], now_us: i64) -> rusqlite::Result<u64> {
    let mut queued = 0u64;
    for chunk in items.chunks(ROWS_PER_STATEMENT) {
        let values =
            values_list(chunk.len(), 2, 3, |n| format!("(?{n}, ?{}, ?{}, 'PENDING', 0, ?1, ?1, ?1)", n + 1, n + 2));
        let mut st = c.prepare_cached(&format!(
            "INSERT OR IGNORE INTO notification (dedup_key, fiscal_code, payload, status, attempts, next_attempt_at, \
             created_at, updated_at) VALUES {values}"
        ))?;
        st.raw_bind_parameter(1, now_us)?;
        for (i, (key, cf, payload)) in chunk.iter().enumerate() {
            let at = 2 + 3 * i;
            st.raw_bind_parameter(at, key)?;
            st.raw_bind_parameter(at + 1, cf)?;
            st.raw_bind_parameter(at + 2, payload)?;
        }
        queued += st.raw_execute()? as u64;
    }
    Ok(queued)
}

/// Columns bound per award row by [`insert_awards`].
const AWARD_INSERT_COLS: usize = 18;

/// Inserts a batch of the close's awards (multi-row `INSERT OR IGNORE`: an award already stored
/// by an interrupted run is kept) and queues the "award computed" notice of each new one.
#[allow(clippy::ptr_arg)] // an `insert` of `write_in_batches`: `&U` with `U = Vec<_>`
fn insert_awards(
    c: &Connection,
    period: &AwardPeriod,
    awards: &Vec<NewAward>,
    notices: RenderNotice,
    now_us: i64,
) -> rusqlite::Result<()> {
    for chunk in awards.chunks(ROWS_PER_STATEMENT) {
        let values = values_list(chunk.len(), 3, AWARD_INSERT_COLS, |n| {
            let own: Vec<String> = (n..n + AWARD_INSERT_COLS).map(|k| format!("?{k}")).collect();
            format!("(?1, {}, 'AWARD', {}, ?2, ?2)", own[0], own[1..].join(", "))
        });
        let mut st = c.prepare_cached(&format!(
            "INSERT OR IGNORE INTO award (award_period_id, fiscal_code, kind, amount_cents, cashback_cents, jackpot_cents, \
             typology, transactions, rank, score_total_cents, period_cap_applied, status, payoff_instr, payoff_instr_type, \
             account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, technical_account_holder, \
             issuer_card_id, created_at, updated_at) VALUES {values} RETURNING award_id, fiscal_code"
        ))?;
        st.raw_bind_parameter(1, period.id)?;
        st.raw_bind_parameter(2, now_us)?;
        for (i, a) in chunk.iter().enumerate() {
            let d = &a.decision;
            let p = a.payoff.as_ref();
            let at = 3 + AWARD_INSERT_COLS * i;
            st.raw_bind_parameter(at, &a.fiscal_code)?;
            st.raw_bind_parameter(at + 1, d.amount.cents())?;
            st.raw_bind_parameter(at + 2, d.cashback.cents())?;
            st.raw_bind_parameter(at + 3, d.jackpot.cents())?;
            st.raw_bind_parameter(at + 4, d.typology.code())?;
            st.raw_bind_parameter(at + 5, d.transactions)?;
            st.raw_bind_parameter(at + 6, d.rank)?;
            st.raw_bind_parameter(at + 7, a.score_total.cents())?;
            st.raw_bind_parameter(at + 8, d.period_cap_applied)?;
            st.raw_bind_parameter(at + 9, a.status().as_str())?;
            st.raw_bind_parameter(at + 10, p.map(|p| &p.iban))?;
            st.raw_bind_parameter(at + 11, p.map(|p| &p.instr_type))?;
            st.raw_bind_parameter(at + 12, p.and_then(|p| p.account_holder_cf.as_ref()))?;
            st.raw_bind_parameter(at + 13, p.and_then(|p| p.account_holder_name.as_ref()))?;
            st.raw_bind_parameter(at + 14, p.and_then(|p| p.account_holder_surname.as_ref()))?;
            st.raw_bind_parameter(at + 15, p.map(|p| &p.check_status))?;
            st.raw_bind_parameter(at + 16, p.and_then(|p| p.technical_account_holder.as_ref()))?;
            st.raw_bind_parameter(at + 17, p.and_then(|p| p.issuer_card_id.as_ref()))?;
        }
        let mut inserted: Vec<(i64, String)> = Vec::with_capacity(chunk.len());
        let mut rows = st.raw_query();
        while let Some(r) = rows.next()? {
            inserted.push((r.get(0)?, r.get(1)?));
        }
        drop(rows);
        // RETURNING's order is unspecified: the notices follow the batch's order.
        let ids: std::collections::HashMap<&str, i64> = inserted.iter().map(|(id, cf)| (cf.as_str(), *id)).collect();
        let items: Vec<(String, String, String)> = chunk
            .iter()
            .filter_map(|a| {
                let &award_id = ids.get(a.fiscal_code.as_str())?;
                let payload = notices(NoticeFor::AwardComputed { period, award_id, award: a });
                Some((format!("award:{}:{}", period.id, a.fiscal_code), a.fiscal_code.clone(), payload))
            })
            .collect();
        enqueue_many(c, &items, now_us)?;
    }
    Ok(())
}

/// The "not eligible" notices of a batch (key, fiscal code, payload), rendered before the batch
/// reaches the writer (they do not depend on anything the writer assigns).
fn render_not_eligible(
    period: &AwardPeriod,
    rows: Vec<NotEligible>,
    notices: RenderNotice,
) -> Vec<(String, String, String)> {
    rows.into_iter()
        .map(|r| {
            let payload = notices(NoticeFor::NotEligible { period, row: &r });
            (format!("not-eligible:{}:{}", period.id, r.fiscal_code), r.fiscal_code, payload)
        })
        .collect()
}

#[allow(clippy::ptr_arg)] // an `insert` of `write_in_batches`: `&U` with `U = Vec<_>`
fn insert_not_eligible(
    c: &Connection,
    _: &AwardPeriod,
    items: &Vec<(String, String, String)>,
    _: RenderNotice,
    now_us: i64,
) -> rusqlite::Result<()> {
    enqueue_many(c, items, now_us)?;
    Ok(())
}

fn record_close(c: &Connection, s: &CloseSummary, now_us: i64) -> rusqlite::Result<()> {
    c.execute(
        "INSERT OR IGNORE INTO award_close (award_period_id, citizens, awards, not_eligible, winners, cashback_cents, \
         jackpot_cents, amount_cents, without_iban, closed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.award_period_id,
            s.citizens as i64,
            s.awards as i64,
            s.not_eligible as i64,
            s.super_cashback_winners as i64,
            s.cashback.cents(),
            s.jackpot.cents(),
            s.amount.cents(),
            s.without_iban as i64,
            now_us
        ],
    )?;
    Ok(())
}

const PAYABLE: &str = "status = 'NEW' AND amount_cents > 0 AND payoff_instr IS NOT NULL";

/// Steps 1–3 of a payout run: fill IBANs, re-issue failed awards, queue IBAN reminders.
fn payout_repairs(c: &Connection, notices: RenderNotice, now_us: i64) -> rusqlite::Result<(u64, u64, u64)> {
    let filled = c.execute(
        "UPDATE award SET payoff_instr = c.payoff_instr, payoff_instr_type = c.payoff_instr_type, \
         account_holder_cf = c.account_holder_cf, account_holder_name = c.account_holder_name, \
         account_holder_surname = c.account_holder_surname, check_instr_status = c.check_instr_status, \
         technical_account_holder = c.technical_account_holder, issuer_card_id = c.issuer_card_id, updated_at = ?1 \
         FROM citizen c WHERE award.status = 'NEW' AND award.payoff_instr IS NULL AND c.fiscal_code = award.fiscal_code \
         AND c.enabled = 1 AND c.payoff_instr IS NOT NULL",
        [now_us],
    )?;
    let reissued = c.execute(
        "INSERT OR IGNORE INTO award (award_period_id, fiscal_code, kind, related_id, complaint_id, amount_cents, cashback_cents, \
         jackpot_cents, typology, transactions, rank, score_total_cents, period_cap_applied, status, payoff_instr, \
         payoff_instr_type, account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, \
         technical_account_holder, issuer_card_id, created_at, updated_at) \
         SELECT a.award_period_id, a.fiscal_code, 'REISSUE', a.award_id, a.complaint_id, a.amount_cents, a.cashback_cents, \
         a.jackpot_cents, a.typology, a.transactions, a.rank, a.score_total_cents, a.period_cap_applied, 'NEW', c.payoff_instr, \
         c.payoff_instr_type, c.account_holder_cf, c.account_holder_name, c.account_holder_surname, c.check_instr_status, \
         c.technical_account_holder, c.issuer_card_id, ?1, ?1 \
         FROM award a JOIN citizen c ON c.fiscal_code = a.fiscal_code \
         WHERE a.status = 'FAILED' AND c.enabled = 1 AND c.payoff_instr IS NOT NULL AND c.payoff_instr <> a.payoff_instr \
         AND NOT EXISTS (SELECT 1 FROM award x WHERE x.related_id = a.award_id AND (x.kind = 'INTEGRATION' OR x.kind = 'CORRECTION')) \
         ORDER BY a.award_id",
        [now_us],
    )?;
    let waiting: Vec<Award> = c
        .prepare_cached(&format!(
            "SELECT {AWARD_COLS} FROM award WHERE status = 'NEW' AND amount_cents > 0 AND payoff_instr IS NULL ORDER BY award_id"
        ))?
        .query_map([], award_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    for a in &waiting {
        let payload = notices(NoticeFor::IbanMissing { award: a });
        enqueue(c, &format!("iban-missing:{}", a.award_id), &a.fiscal_code, &payload, now_us)?;
    }
    Ok((filled as u64, reissued as u64, waiting.len() as u64))
}

/// One payout file: the record and the assignment of its rows, in one transaction.
fn assign_file(
    c: &Connection,
    run_id: i64,
    name: &str,
    chunk: u32,
    total: u32,
    rows: usize,
    now_us: i64,
) -> rusqlite::Result<PayoutFile> {
    c.execute(
        "INSERT INTO payout_file (run_id, name, chunk, total_chunks, rows, amount_cents, created_at) VALUES (?1, ?2, ?3, ?4, 0, 0, ?5)",
        params![run_id, name, chunk, total, now_us],
    )?;
    let file_id = c.last_insert_rowid();
    if rows > 0 {
        // The first `rows` payable awards by id: everything payable up to the last of them (a range
        // on the status index, instead of an `IN` list of every id).
        let last: Option<i64> = c
            .query_row(
                &format!("SELECT award_id FROM award WHERE {PAYABLE} ORDER BY award_id LIMIT 1 OFFSET ?1"),
                [rows.saturating_sub(1) as i64],
                |r| r.get(0),
            )
            .optional()?;
        c.execute(
            &format!(
                "UPDATE award SET status = 'SENT', payout_file_id = ?1, updated_at = ?2 WHERE {PAYABLE} AND award_id <= ?3"
            ),
            params![file_id, now_us, last.unwrap_or(i64::MAX)],
        )?;
    }
    let (n, amount): (i64, i64) = c.query_row(
        "SELECT count(*), coalesce(sum(amount_cents), 0) FROM award WHERE payout_file_id = ?1",
        [file_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    c.execute(
        "UPDATE payout_file SET rows = ?2, amount_cents = ?3 WHERE payout_file_id = ?1",
        params![file_id, n, amount],
    )?;
    get_payout_file(c, file_id)
}

fn payout_file_from_row(r: &Row<'_>) -> rusqlite::Result<PayoutFile> {
    Ok(PayoutFile {
        payout_file_id: r.get(0)?,
        run_id: r.get(1)?,
        name: r.get(2)?,
        chunk: r.get(3)?,
        total_chunks: r.get(4)?,
        rows: r.get::<_, i64>(5)? as u64,
        amount: Money::from_cents(r.get(6)?),
        created_at: from_micros(r.get(7)?)?,
        sha256: r.get(8)?,
    })
}

const FILE_COLS: &str = "payout_file_id, run_id, name, chunk, total_chunks, rows, amount_cents, created_at, sha256";

fn get_payout_file(c: &Connection, id: i64) -> rusqlite::Result<PayoutFile> {
    c.query_row(&format!("SELECT {FILE_COLS} FROM payout_file WHERE payout_file_id = ?1"), [id], payout_file_from_row)
}

/// Whether an inbound file was seen: `Some(outcome)` ends the call.
/// Whether an inbound file was seen: the same name, kind and digest is `AlreadyApplied`; the
/// same name with another kind or digest is a `NameConflict`.
fn inbound_seen(
    c: &Connection,
    name: &str,
    kind: InboundKind,
    sha256: &str,
) -> rusqlite::Result<Option<InboundOutcome>> {
    let seen: Option<(String, String)> = c
        .query_row("SELECT sha256, kind FROM inbound_file WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(seen.map(|(s, k)| {
        if s == sha256 && k == kind.as_str() { InboundOutcome::AlreadyApplied } else { InboundOutcome::NameConflict }
    }))
}

/// Why an outcome may not change an award that has one already: the transfer was re-issued (or
/// paid another way) on the strength of the first outcome.
fn outcome_locked(c: &Connection, award_id: i64) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT award_id FROM award WHERE related_id = ?1 AND kind <> 'CORRECTION' LIMIT 1")?
        .query_row([award_id], |r| r.get(0))
        .optional()
}

#[allow(clippy::too_many_arguments)]
fn record_inbound(
    c: &Connection,
    name: &str,
    kind: InboundKind,
    sha256: &str,
    applied: u64,
    unchanged: u64,
    rejected: usize,
    now_us: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO inbound_file (name, kind, sha256, applied, unchanged, rejected, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![name, kind.as_str(), sha256, applied as i64, unchanged as i64, rejected as i64, now_us],
    )?;
    Ok(())
}

fn rejection(line: u64, field: &str, reason: impl Into<String>) -> InboundRejection {
    InboundRejection { line, field: field.into(), reason: reason.into() }
}

fn apply_outcomes(
    c: &Connection,
    name: &str,
    sha256: &str,
    lines: &[OutcomeUpdate],
    notices: RenderNotice,
    now_us: i64,
) -> rusqlite::Result<InboundOutcome> {
    if let Some(seen) = inbound_seen(c, name, InboundKind::Outcomes, sha256)? {
        return Ok(seen);
    }
    let (mut applied, mut unchanged, mut rejected) = (0u64, 0u64, Vec::new());
    for l in lines {
        let Some(award) = get_award(c, l.award_id)? else {
            rejected.push(rejection(l.line, "uniqueID", format!("no award {}", l.award_id)));
            continue;
        };
        if !matches!(award.status, AwardStatus::Sent | AwardStatus::Executed | AwardStatus::Failed) {
            rejected.push(rejection(
                l.line,
                "uniqueID",
                format!("award {} was never sent (status {})", l.award_id, award.status.as_str()),
            ));
            continue;
        }
        if award.outcome.as_ref() == Some(&l.outcome) {
            unchanged += 1;
            continue;
        }
        if award.outcome.is_some()
            && let Some(by) = outcome_locked(c, l.award_id)?
        {
            rejected.push(rejection(
                l.line,
                "result",
                format!("award {} was settled by award {by}: outcome not changed", l.award_id),
            ));
            continue;
        }
        let o = &l.outcome;
        c.prepare_cached(
            "UPDATE award SET status = ?2, outcome_result = ?3, outcome_executed = ?4, outcome_reason = ?5, outcome_cro = ?6, \
             outcome_execution_date = ?7, updated_at = ?8 WHERE award_id = ?1",
        )?
        .execute(params![
            l.award_id,
            if o.executed { "EXECUTED" } else { "FAILED" },
            o.result,
            o.executed,
            o.reason,
            o.cro,
            o.execution_date.map(fmt_date),
            now_us
        ])?;
        applied += 1;
        if let Some(updated) = get_award(c, l.award_id)? {
            let payload = notices(NoticeFor::Payment { award: &updated });
            enqueue(c, &format!("payment:{}:{}", l.award_id, name), &updated.fiscal_code, &payload, now_us)?;
        }
    }
    record_inbound(c, name, InboundKind::Outcomes, sha256, applied, unchanged, rejected.len(), now_us)?;
    Ok(InboundOutcome::Applied { applied, unchanged, rejected })
}

fn apply_integrations(
    c: &Connection,
    name: &str,
    sha256: &str,
    lines: &[IntegrationPayment],
    periods: &[AwardPeriod],
    now_us: i64,
) -> rusqlite::Result<InboundOutcome> {
    if let Some(seen) = inbound_seen(c, name, InboundKind::Integrations, sha256)? {
        return Ok(seen);
    }
    let (mut applied, mut unchanged, mut rejected) = (0u64, 0u64, Vec::new());
    for l in lines {
        if l.amount.is_negative() || l.cashback.is_negative() || l.jackpot.is_negative() {
            rejected.push(rejection(l.line, "amount", "amounts must not be negative"));
            continue;
        }
        let exists: bool =
            c.query_row("SELECT EXISTS (SELECT 1 FROM citizen WHERE fiscal_code = ?1)", [&l.fiscal_code], |r| {
                r.get(0)
            })?;
        if !exists {
            rejected.push(rejection(l.line, "fiscalCode", "no such citizen"));
            continue;
        }
        let Some(period) = periods.iter().find(|p| p.start == l.period_start && p.end == l.period_end) else {
            rejected.push(rejection(l.line, "periodStart", "no award period with these start and end dates"));
            continue;
        };
        let o = &l.outcome;
        let n = c
            .prepare_cached(
                "INSERT OR IGNORE INTO award (award_period_id, fiscal_code, kind, related_id, complaint_id, agent_id, amount_cents, \
                 cashback_cents, jackpot_cents, typology, transactions, score_total_cents, period_cap_applied, status, payoff_instr, \
                 payoff_instr_type, account_holder_name, account_holder_surname, outcome_result, outcome_executed, outcome_reason, \
                 outcome_cro, outcome_execution_date, created_at, updated_at) \
                 VALUES (?1, ?2, 'INTEGRATION', ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, 0, 'INTEGRATION', ?10, 'IBAN', ?11, ?12, ?13, ?14, ?15, \
                 ?16, ?17, ?18, ?18)",
            )?
            .execute(params![
                period.id,
                l.fiscal_code,
                l.related_id,
                l.complaint_id,
                l.agent_id,
                l.amount.cents(),
                l.cashback.cents(),
                l.jackpot.cents(),
                if l.jackpot > Money::ZERO { "03" } else if l.cashback > Money::ZERO { "01" } else { "02" },
                l.iban,
                l.holder_name,
                l.holder_surname,
                o.result,
                o.executed,
                o.reason,
                o.cro,
                o.execution_date.map(fmt_date),
                now_us
            ]);
        if n? == 1 {
            applied += 1;
        } else {
            unchanged += 1;
        }
    }
    record_inbound(c, name, InboundKind::Integrations, sha256, applied, unchanged, rejected.len(), now_us)?;
    Ok(InboundOutcome::Applied { applied, unchanged, rejected })
}

fn decide_complaint(
    c: &Connection,
    id: i64,
    decision: &ComplaintDecision,
    notices: RenderNotice,
    now_us: i64,
) -> rusqlite::Result<DecideComplaintOutcome> {
    let Some(cur) = get_complaint(c, id)? else { return Ok(DecideComplaintOutcome::NotFound) };
    let same = match (&decision, cur.status) {
        (ComplaintDecision::Accept { correction, .. }, ComplaintStatus::Accepted) => {
            cur.correction == Some(*correction)
        }
        (ComplaintDecision::Reject { .. }, ComplaintStatus::Rejected) => true,
        _ => false,
    };
    if cur.status != ComplaintStatus::Open {
        return Ok(if same { DecideComplaintOutcome::Unchanged(cur) } else { DecideComplaintOutcome::Conflict(cur) });
    }
    match decision {
        ComplaintDecision::Accept { correction, note } => {
            let related: Option<i64> = c
                .query_row(
                    "SELECT award_id FROM award WHERE award_period_id = ?1 AND fiscal_code = ?2 AND kind = 'AWARD'",
                    params![cur.award_period_id, cur.fiscal_code],
                    |r| r.get(0),
                )
                .optional()?;
            c.execute(
                "INSERT INTO award (award_period_id, fiscal_code, kind, related_id, complaint_id, amount_cents, cashback_cents, \
                 jackpot_cents, typology, transactions, score_total_cents, period_cap_applied, status, payoff_instr, payoff_instr_type, \
                 account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, technical_account_holder, \
                 issuer_card_id, created_at, updated_at) \
                 SELECT ?1, ?2, 'CORRECTION', ?3, ?4, ?5, ?5, 0, '01', 0, 0, 0, 'NEW', payoff_instr, payoff_instr_type, \
                 account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, technical_account_holder, \
                 issuer_card_id, ?6, ?6 FROM citizen WHERE fiscal_code = ?2",
                params![cur.award_period_id, cur.fiscal_code, related, id, correction.cents(), now_us],
            )?;
            let award_id = c.last_insert_rowid();
            c.execute(
                "UPDATE complaint SET status = 'ACCEPTED', correction_cents = ?2, correction_award_id = ?3, operator_note = ?4, \
                 decided_at = ?5 WHERE complaint_id = ?1",
                params![id, correction.cents(), award_id, note, now_us],
            )?;
        }
        ComplaintDecision::Reject { note } => {
            c.execute(
                "UPDATE complaint SET status = 'REJECTED', operator_note = ?2, decided_at = ?3 WHERE complaint_id = ?1",
                params![id, note, now_us],
            )?;
        }
    }
    let done = get_complaint(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let payload = notices(NoticeFor::ComplaintDecided { complaint: &done });
    enqueue(c, &format!("complaint:{id}"), &done.fiscal_code, &payload, now_us)?;
    Ok(DecideComplaintOutcome::Decided(done))
}

/// The answer of a job queued with `SqliteStore::submit`.
async fn wait_job(job: Option<tokio::sync::oneshot::Receiver<StoreResult<()>>>) -> StoreResult<()> {
    match job {
        Some(rx) => rx.await.map_err(|_| StoreError::Unavailable("writer stopped before answering".into()))?,
        None => Ok(()),
    }
}

impl SqliteStore {
    /// The close's inserts: awards (with their notices), then the not-eligible notices, in
    /// writer jobs of [`WRITE_BATCH`] rows.
    async fn write_awards(
        &self,
        period: &AwardPeriod,
        awards: Vec<NewAward>,
        not_eligible: Vec<NotEligible>,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let period = Arc::new(period.clone());
        self.write_in_batches(&period, awards, notices, now, |_, batch, _| batch, insert_awards).await?;
        self.write_in_batches(&period, not_eligible, notices, now, render_not_eligible, insert_not_eligible).await
    }

    /// `insert` over `items`, one writer job per [`WRITE_BATCH`] items, each batch first turned
    /// into what the job writes by `prepare` off the writer (while the writer runs the previous
    /// jobs).
    async fn write_in_batches<T: Send + 'static, U: Send + Sync + 'static>(
        &self,
        period: &Arc<AwardPeriod>,
        items: Vec<T>,
        notices: RenderNotice,
        now: OffsetDateTime,
        prepare: fn(&AwardPeriod, Vec<T>, RenderNotice) -> U,
        insert: fn(&Connection, &AwardPeriod, &U, RenderNotice, i64) -> rusqlite::Result<()>,
    ) -> StoreResult<()> {
        let now_us = micros(now);
        let mut items = items.into_iter();
        // The next job is queued while the previous one commits and syncs, so the writer never
        // idles between two batches; at most [`JOBS_IN_FLIGHT`] are queued (the API's requests
        // still get their turn between jobs).
        let mut in_flight = std::collections::VecDeque::new();
        loop {
            let batch: Vec<T> = items.by_ref().take(WRITE_BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let p = period.clone();
            let batch = tokio::task::spawn_blocking(move || prepare(&p, batch, notices))
                .await
                .map_err(|e| StoreError::Other(format!("close task failed: {e}")))?;
            if in_flight.len() >= JOBS_IN_FLIGHT {
                wait_job(in_flight.pop_front()).await?;
            }
            let p = period.clone();
            in_flight.push_back(self.submit(move |c| insert(c, &p, &batch, notices, now_us))?);
        }
        while let Some(job) = in_flight.pop_front() {
            wait_job(Some(job)).await?;
        }
        Ok(())
    }

    /// A read-only connection of its own for a long scan (kept off the shared reader pool).
    pub(crate) async fn scan<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let c =
                Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            f(&c)
        })
        .await
        .map_err(|e| StoreError::Other(format!("scan task failed: {e}")))?
        .map_err(sql_err)
    }
}

#[async_trait]
impl CloseStore for SqliteStore {
    async fn close_period(
        &self,
        period: &AwardPeriod,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<CloseOutcome> {
        let id = period.id;
        if let Some(s) = self.read(|c| close_summary(c, id))? {
            return Ok(CloseOutcome::AlreadyClosed(s));
        }
        let started = std::time::Instant::now();
        let rows = self.scan(move |c| close_rows(c, id)).await?;
        let read_s = started.elapsed().as_secs_f64();
        let p = period.clone();
        let (awards, not_eligible, summary) = tokio::task::spawn_blocking(move || decide_awards(&p, rows))
            .await
            .map_err(|e| StoreError::Other(format!("close task failed: {e}")))?;
        let decided_s = started.elapsed().as_secs_f64();
        // The writer's page cache is small on purpose (see `SqliteOptions::writer_cache_kib`);
        // with it, every insert of the bulk re-reads its b-tree path from the WAL. Raised for the
        // close, restored whatever happens.
        self.write(|c| c.pragma_update(None, "cache_size", -BULK_CACHE_KIB)).await?;
        let written = self.write_awards(period, awards, not_eligible, notices, now).await;
        let normal = self.writer_cache_kib;
        let restored = self.write(move |c| c.pragma_update(None, "cache_size", -normal)).await;
        written?;
        restored?;
        let now_us = micros(now);
        let closed = CloseOutcome::Closed(summary);
        self.write(audited(
            now,
            move |c| record_close(c, &summary, now_us),
            move |_| audit::events::period_closed(&closed),
        ))
        .await?;
        tracing::info!(
            period = id,
            awards = summary.awards,
            read_s,
            decided_s,
            total_s = started.elapsed().as_secs_f64(),
            "period closed"
        );
        Ok(CloseOutcome::Closed(summary))
    }

    async fn close_summary(&self, award_period_id: i64) -> StoreResult<Option<CloseSummary>> {
        self.read(|c| close_summary(c, award_period_id))
    }

    async fn prepare_payout(
        &self,
        max_rows: usize,
        name: NamePayoutFile,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<PayoutPreparation> {
        let now_us = micros(now);
        let max_rows = max_rows.clamp(1, MAX_PAYOUT_FILE_ROWS);
        let (iban_filled, reissued, waiting_for_iban) = self.write(move |c| payout_repairs(c, notices, now_us)).await?;
        let (payable, run_id): (i64, i64) = self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT (SELECT count(*) FROM award WHERE {PAYABLE}), (SELECT coalesce(max(run_id), 0) + 1 FROM payout_file)"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        let payable = payable as usize;
        let total = payable.div_ceil(max_rows) as u32;
        let mut files = Vec::new();
        for chunk in 1..=total {
            let rows = (payable - (chunk as usize - 1) * max_rows).min(max_rows);
            let file_name = name(now, chunk, total, rows);
            let f = self.write(move |c| assign_file(c, run_id, &file_name, chunk, total, rows, now_us)).await?;
            if f.rows > 0 {
                files.push(f);
            }
        }
        let prep = PayoutPreparation { iban_filled, reissued, waiting_for_iban, files };
        let event = audit::events::payout_prepared(&prep);
        if event.is_some() {
            self.write(audited(now, |_| Ok(()), move |_| event)).await?;
        }
        Ok(prep)
    }

    async fn payout_files(&self, run_id: Option<i64>) -> StoreResult<Vec<PayoutFile>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {FILE_COLS} FROM payout_file WHERE ?1 IS NULL OR run_id = ?1 ORDER BY payout_file_id"
            ))?
            .query_map([run_id], payout_file_from_row)?
            .collect()
        })
    }

    async fn payout_file_awards(&self, payout_file_id: i64) -> StoreResult<Vec<Award>> {
        self.scan(move |c| {
            c.prepare(&format!("SELECT {AWARD_COLS} FROM award WHERE payout_file_id = ?1 ORDER BY award_id"))?
                .query_map([payout_file_id], award_from_row)?
                .collect()
        })
        .await
    }

    async fn payout_file_written(&self, payout_file_id: i64, sha256: &str) -> StoreResult<()> {
        let sha = sha256.to_string();
        let event = audit::events::payout_file_written(payout_file_id, sha256);
        let (_, stored) = self
            .write(audited(
                OffsetDateTime::now_utc(),
                move |c| {
                    let n = c.execute(
                        "UPDATE payout_file SET sha256 = ?2 WHERE payout_file_id = ?1 AND sha256 IS NULL",
                        params![payout_file_id, sha],
                    )?;
                    let stored = c
                        .query_row("SELECT sha256 FROM payout_file WHERE payout_file_id = ?1", [payout_file_id], |r| {
                            r.get::<_, Option<String>>(0)
                        })
                        .optional()?;
                    Ok((n, stored))
                },
                move |(n, _)| (*n == 1).then_some(event),
            ))
            .await?;
        match stored {
            None => Err(StoreError::Other(format!("no payout file {payout_file_id}"))),
            Some(Some(s)) if s == sha256 => Ok(()),
            Some(s) => Err(StoreError::Other(format!(
                "payout file {payout_file_id} was written with digest {} before, not {sha256}",
                s.unwrap_or_default()
            ))),
        }
    }

    async fn apply_outcomes(
        &self,
        file_name: &str,
        sha256: &str,
        lines: Vec<OutcomeUpdate>,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<InboundOutcome> {
        let (name, sha, now_us) = (file_name.to_string(), sha256.to_string(), micros(now));
        let (name2, sha2) = (name.clone(), sha.clone());
        self.write(audited(
            now,
            move |c| apply_outcomes(c, &name, &sha, &lines, notices, now_us),
            move |o| audit::events::inbound_applied(InboundKind::Outcomes, &name2, &sha2, o),
        ))
        .await
    }

    async fn apply_integrations(
        &self,
        file_name: &str,
        sha256: &str,
        lines: Vec<IntegrationPayment>,
        now: OffsetDateTime,
    ) -> StoreResult<InboundOutcome> {
        let periods = self.read(crate::ops::list_award_periods)?;
        let (name, sha, now_us) = (file_name.to_string(), sha256.to_string(), micros(now));
        let (name2, sha2) = (name.clone(), sha.clone());
        self.write(audited(
            now,
            move |c| apply_integrations(c, &name, &sha, &lines, &periods, now_us),
            move |o| audit::events::inbound_applied(InboundKind::Integrations, &name2, &sha2, o),
        ))
        .await
    }

    async fn citizen_awards(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Award>> {
        let cf = fiscal_code.as_str().to_string();
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {AWARD_COLS} FROM award WHERE fiscal_code = ?1 ORDER BY award_id"))?
                .query_map([cf], award_from_row)?
                .collect()
        })
    }

    async fn get_award(&self, award_id: i64) -> StoreResult<Option<Award>> {
        self.read(|c| get_award(c, award_id))
    }

    async fn file_complaint(
        &self,
        fiscal_code: &FiscalCode,
        award_period_id: i64,
        kind: ComplaintKind,
        description: &str,
        now: OffsetDateTime,
    ) -> StoreResult<FileComplaintOutcome> {
        let (cf, text, now_us) = (fiscal_code.as_str().to_string(), description.to_string(), micros(now));
        self.write(audited(now, move |c| {
            let exists: bool =
                c.query_row("SELECT EXISTS (SELECT 1 FROM citizen WHERE fiscal_code = ?1)", [&cf], |r| r.get(0))?;
            if !exists {
                return Ok(FileComplaintOutcome::CitizenNotFound);
            }
            let open: Option<i64> = c
                .query_row(
                    "SELECT complaint_id FROM complaint WHERE fiscal_code = ?1 AND award_period_id = ?2 AND kind = ?3 AND status = 'OPEN'",
                    params![cf, award_period_id, kind.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = open {
                return Ok(FileComplaintOutcome::AlreadyOpen(get_complaint(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?));
            }
            c.execute(
                "INSERT INTO complaint (fiscal_code, award_period_id, kind, description, status, created_at) VALUES (?1, ?2, ?3, ?4, 'OPEN', ?5)",
                params![cf, award_period_id, kind.as_str(), text, now_us],
            )?;
            Ok(FileComplaintOutcome::Created(
                get_complaint(c, c.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)?,
            ))
        }, audit::events::complaint_filed))
        .await
    }

    async fn citizen_complaints(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Complaint>> {
        let cf = fiscal_code.as_str().to_string();
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {COMPLAINT_COLS} FROM complaint WHERE fiscal_code = ?1 ORDER BY complaint_id"
            ))?
            .query_map([cf], complaint_from_row)?
            .collect()
        })
    }

    async fn list_complaints(&self, status: Option<ComplaintStatus>, limit: u32) -> StoreResult<Vec<Complaint>> {
        let status = status.map(|s| s.as_str());
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {COMPLAINT_COLS} FROM complaint WHERE ?1 IS NULL OR status = ?1 ORDER BY complaint_id LIMIT ?2"
            ))?
            .query_map(params![status, limit], complaint_from_row)?
            .collect()
        })
    }

    async fn decide_complaint(
        &self,
        complaint_id: i64,
        decision: ComplaintDecision,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<DecideComplaintOutcome> {
        let now_us = micros(now);
        let d2 = decision.clone();
        self.write(audited(
            now,
            move |c| decide_complaint(c, complaint_id, &decision, notices, now_us),
            move |o| audit::events::complaint_decided(&d2, o),
        ))
        .await
    }

    async fn enqueue_notifications(&self, items: Vec<NewNotification>, now: OffsetDateTime) -> StoreResult<u64> {
        let now_us = micros(now);
        let mut queued = 0;
        for batch in items.chunks(WRITE_BATCH) {
            let batch = batch.to_vec();
            queued += self
                .write(move |c| {
                    let mut n = 0u64;
                    for i in &batch {
                        n += u64::from(enqueue(c, &i.key, &i.fiscal_code, &i.payload, now_us)?);
                    }
                    Ok(n)
                })
                .await?;
        }
        Ok(queued)
    }

    async fn enqueue_for_enrolled(
        &self,
        key_prefix: &str,
        payload: &str,
        accepted_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let (now_us, before_us) = (micros(now), micros(accepted_before));
        let mut after = String::new();
        let mut queued = 0u64;
        loop {
            let (prefix, payload, from) = (key_prefix.to_string(), payload.to_string(), after.clone());
            let step: Option<(String, u64)> = self
                .write(move |c| {
                    let last: Option<String> = c.query_row(
                        "SELECT max(fiscal_code) FROM (SELECT fiscal_code FROM citizen WHERE fiscal_code > ?1 \
                         ORDER BY fiscal_code LIMIT ?2)",
                        params![from, WRITE_BATCH as i64],
                        |r| r.get(0),
                    )?;
                    let Some(last) = last else { return Ok(None) };
                    let n = c.execute(
                        "INSERT OR IGNORE INTO notification (dedup_key, fiscal_code, payload, status, attempts, next_attempt_at, \
                         created_at, updated_at) SELECT ?1 || fiscal_code, fiscal_code, ?2, 'PENDING', 0, ?3, ?3, ?3 FROM citizen \
                         WHERE fiscal_code > ?4 AND fiscal_code <= ?5 AND enabled = 1 AND timestamp_tc < ?6",
                        params![prefix, payload, now_us, from, last, before_us],
                    )?;
                    Ok(Some((last, n as u64)))
                })
                .await?;
            match step {
                Some((last, n)) => {
                    queued += n;
                    after = last;
                }
                None => return Ok(queued),
            }
        }
    }

    async fn claim_notifications(
        &self,
        limit: u32,
        lease: time::Duration,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<OutboxItem>> {
        let (now_us, until) = (micros(now), micros(now + lease));
        self.write(move |c| {
            let mut items: Vec<OutboxItem> = c
                .prepare_cached(
                    "SELECT notification_id, fiscal_code, payload, attempts FROM notification \
                     WHERE status = 'PENDING' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, notification_id LIMIT ?2",
                )?
                .query_map(params![now_us, limit], |r| {
                    Ok(OutboxItem { notification_id: r.get(0)?, fiscal_code: r.get(1)?, payload: r.get(2)?, attempts: r.get(3)? })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut st = c.prepare_cached("UPDATE notification SET next_attempt_at = ?2 WHERE notification_id = ?1")?;
            for i in &items {
                st.execute(params![i.notification_id, until])?;
            }
            items.sort_by_key(|i| i.notification_id);
            Ok(items)
        })
        .await
    }

    async fn notification_result(
        &self,
        notification_id: i64,
        result: DeliveryResult,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let now_us = micros(now);
        self.write(move |c| {
            let (status, next, error, message_id) = match &result {
                DeliveryResult::Sent { message_id } => ("SENT", now_us, None, Some(message_id.as_str())),
                DeliveryResult::Retry { error, next_attempt } => {
                    ("PENDING", micros(*next_attempt), Some(error.as_str()), None)
                }
                DeliveryResult::Failed { error } => ("FAILED", now_us, Some(error.as_str()), None),
            };
            c.prepare_cached(
                "UPDATE notification SET status = ?2, attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4, \
                 message_id = ?5, updated_at = ?6 WHERE notification_id = ?1 AND status = 'PENDING'",
            )?
            .execute(params![notification_id, status, next, error, message_id, now_us])?;
            Ok(())
        })
        .await
    }

    async fn outbox_counts(&self) -> StoreResult<OutboxCounts> {
        self.read(|c| {
            let mut counts = OutboxCounts::default();
            let mut st = c.prepare_cached("SELECT status, count(*) FROM notification GROUP BY status")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            for row in rows {
                let (s, n) = row?;
                match s.as_str() {
                    "PENDING" => counts.pending = n,
                    "SENT" => counts.sent = n,
                    _ => counts.failed = n,
                }
            }
            Ok(counts)
        })
    }

    async fn claim_job(&self, job: &str, stale_after: time::Duration, now: OffsetDateTime) -> StoreResult<bool> {
        let (job, now_us, stale_us) = (job.to_string(), micros(now), micros(now - stale_after));
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO job_run (job, claimed_at) VALUES (?1, ?2) \
                 ON CONFLICT (job) DO UPDATE SET claimed_at = excluded.claimed_at \
                 WHERE job_run.finished_at IS NULL AND job_run.claimed_at < ?3",
                params![job, now_us, stale_us],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn finish_job(&self, job: &str, outcome: &str, now: OffsetDateTime) -> StoreResult<()> {
        let (job, outcome, now_us) = (job.to_string(), outcome.to_string(), micros(now));
        self.write(move |c| {
            c.execute(
                "UPDATE job_run SET finished_at = ?2, outcome = ?3 WHERE job = ?1",
                params![job, now_us, outcome],
            )?;
            Ok(())
        })
        .await
    }

    async fn job_done(&self, job: &str) -> StoreResult<bool> {
        let job = job.to_string();
        self.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM job_run WHERE job = ?1 AND finished_at IS NOT NULL)",
                [job],
                |r| r.get(0),
            )
        })
    }
}
