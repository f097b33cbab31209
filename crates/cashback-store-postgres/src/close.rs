//! Period close on PostgreSQL, the twin of the SQLite backend's `close` module (see
//! `cashback_store::close`). Bulk writes go in batches of [`CLOSE_BATCH`] rows through `UNNEST`,
//! each batch its own idempotent transaction (unique indexes + `ON CONFLICT DO NOTHING`). Steps
//! that must not run twice at once on different nodes take the advisory lock `close`.

use async_trait::async_trait;
use cashback_domain::scoring::Standing;
use cashback_domain::{AwardPeriod, FiscalCode, Money};
use cashback_store::*;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::{Date, OffsetDateTime};

use crate::ops::{self, Step, decode_err, pg_time, utc};
use crate::{PgStore, store_err};

/// Advisory lock of the close steps ("close" in ASCII).
const CLOSE_LOCK: i64 = 0x0063_6c6f_7365;

const AWARD_COLS: &str = "award_id, award_period_id, fiscal_code, kind, related_id, complaint_id, agent_id, amount_cents, \
    cashback_cents, jackpot_cents, typology, transactions, rank, score_total_cents, period_cap_applied, status, \
    payoff_instr, payoff_instr_type, account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, \
    technical_account_holder, issuer_card_id, payout_file_id, outcome_result, outcome_executed, outcome_reason, outcome_cro, \
    outcome_execution_date, created_at, updated_at";

const COMPLAINT_COLS: &str = "complaint_id, fiscal_code, award_period_id, kind, description, status, correction_cents, \
    correction_award_id, operator_note, created_at, decided_at";

const FILE_COLS: &str = "payout_file_id, run_id, name, chunk, total_chunks, rows, amount_cents, created_at, sha256";

const PAYABLE: &str = "status = 'NEW' AND amount_cents > 0 AND payoff_instr IS NOT NULL";

/// A statement assembled from this module's constant column lists (no outside input).
fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(s)
}

fn payoff_at(r: &PgRow, i: usize) -> sqlx::Result<Option<Payoff>> {
    let iban: Option<String> = r.try_get(i)?;
    Ok(match iban {
        Some(iban) => Some(Payoff {
            iban,
            instr_type: r.try_get::<Option<String>, _>(i + 1)?.unwrap_or_else(|| "IBAN".into()),
            account_holder_cf: r.try_get(i + 2)?,
            account_holder_name: r.try_get(i + 3)?,
            account_holder_surname: r.try_get(i + 4)?,
            check_status: r.try_get::<Option<String>, _>(i + 5)?.unwrap_or_default(),
            technical_account_holder: r.try_get(i + 6)?,
            issuer_card_id: r.try_get(i + 7)?,
        }),
        None => None,
    })
}

fn award_from_row(r: &PgRow) -> sqlx::Result<Award> {
    let kind: String = r.try_get(3)?;
    let status: String = r.try_get(15)?;
    let result: Option<String> = r.try_get(25)?;
    let outcome = match result {
        Some(result) => Some(TransferOutcome {
            result,
            executed: r.try_get::<Option<bool>, _>(26)?.unwrap_or(false),
            reason: r.try_get(27)?,
            cro: r.try_get(28)?,
            execution_date: r.try_get::<Option<Date>, _>(29)?,
        }),
        None => None,
    };
    let transactions: i32 = r.try_get(11)?;
    let rank: Option<i64> = r.try_get(12)?;
    Ok(Award {
        award_id: r.try_get(0)?,
        award_period_id: r.try_get(1)?,
        fiscal_code: r.try_get(2)?,
        kind: AwardKind::parse(&kind).ok_or_else(|| decode_err(format!("award kind {kind}")))?,
        related_id: r.try_get(4)?,
        complaint_id: r.try_get(5)?,
        agent_id: r.try_get(6)?,
        amount: Money::from_cents(r.try_get(7)?),
        cashback: Money::from_cents(r.try_get(8)?),
        jackpot: Money::from_cents(r.try_get(9)?),
        typology: r.try_get(10)?,
        transactions: u32::try_from(transactions).map_err(|_| decode_err("negative transactions"))?,
        rank: rank.map(|v| u32::try_from(v).map_err(|_| decode_err("rank beyond u32"))).transpose()?,
        score_total: Money::from_cents(r.try_get(13)?),
        period_cap_applied: r.try_get(14)?,
        status: AwardStatus::parse(&status).ok_or_else(|| decode_err(format!("award status {status}")))?,
        payoff: payoff_at(r, 16)?,
        payout_file_id: r.try_get(24)?,
        outcome,
        created_at: utc(r.try_get(30)?),
        updated_at: utc(r.try_get(31)?),
    })
}

fn complaint_from_row(r: &PgRow) -> sqlx::Result<Complaint> {
    let kind: String = r.try_get(3)?;
    let status: String = r.try_get(5)?;
    Ok(Complaint {
        complaint_id: r.try_get(0)?,
        fiscal_code: r.try_get(1)?,
        award_period_id: r.try_get(2)?,
        kind: ComplaintKind::parse(&kind).ok_or_else(|| decode_err(format!("complaint kind {kind}")))?,
        description: r.try_get(4)?,
        status: ComplaintStatus::parse(&status).ok_or_else(|| decode_err(format!("complaint status {status}")))?,
        correction: r.try_get::<Option<i64>, _>(6)?.map(Money::from_cents),
        correction_award_id: r.try_get(7)?,
        operator_note: r.try_get(8)?,
        created_at: utc(r.try_get(9)?),
        decided_at: r.try_get::<Option<OffsetDateTime>, _>(10)?.map(utc),
    })
}

fn file_from_row(r: &PgRow) -> sqlx::Result<PayoutFile> {
    let chunk: i32 = r.try_get(3)?;
    let total: i32 = r.try_get(4)?;
    let rows: i64 = r.try_get(5)?;
    Ok(PayoutFile {
        payout_file_id: r.try_get(0)?,
        run_id: r.try_get(1)?,
        name: r.try_get(2)?,
        chunk: chunk as u32,
        total_chunks: total as u32,
        rows: rows as u64,
        amount: Money::from_cents(r.try_get(6)?),
        created_at: utc(r.try_get(7)?),
        sha256: r.try_get(8)?,
    })
}

fn summary_from_row(r: &PgRow) -> sqlx::Result<CloseSummary> {
    let n = |i: usize| -> sqlx::Result<u64> { Ok(r.try_get::<i64, _>(i)? as u64) };
    Ok(CloseSummary {
        award_period_id: r.try_get(0)?,
        citizens: n(1)?,
        awards: n(2)?,
        not_eligible: n(3)?,
        super_cashback_winners: n(4)?,
        cashback: Money::from_cents(r.try_get(5)?),
        jackpot: Money::from_cents(r.try_get(6)?),
        amount: Money::from_cents(r.try_get(7)?),
        without_iban: n(8)?,
    })
}

async fn close_summary(c: &mut PgConnection, period: i64) -> sqlx::Result<Option<CloseSummary>> {
    sqlx::query(
        "SELECT award_period_id, citizens, awards, not_eligible, winners, cashback_cents, jackpot_cents, amount_cents, \
         without_iban FROM award_close WHERE award_period_id = $1",
    )
    .bind(period)
    .fetch_optional(c)
    .await?
    .as_ref()
    .map(summary_from_row)
    .transpose()
}

async fn get_award(c: &mut PgConnection, id: i64) -> sqlx::Result<Option<Award>> {
    sqlx::query(sql(format!("SELECT {AWARD_COLS} FROM award WHERE award_id = $1")))
        .bind(id)
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(award_from_row)
        .transpose()
}

async fn get_complaint(c: &mut PgConnection, id: i64) -> sqlx::Result<Option<Complaint>> {
    sqlx::query(sql(format!("SELECT {COMPLAINT_COLS} FROM complaint WHERE complaint_id = $1")))
        .bind(id)
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(complaint_from_row)
        .transpose()
}

/// Queue notifications (keys already present are skipped); returns how many were new.
async fn enqueue_many(c: &mut PgConnection, items: &[NewNotification], now: OffsetDateTime) -> sqlx::Result<u64> {
    if items.is_empty() {
        return Ok(0);
    }
    let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
    let cfs: Vec<&str> = items.iter().map(|i| i.fiscal_code.as_str()).collect();
    let payloads: Vec<&str> = items.iter().map(|i| i.payload.as_str()).collect();
    let done = sqlx::query(
        "INSERT INTO notification (dedup_key, fiscal_code, payload, status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT k, f, p, 'PENDING', 0, $4, $4, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u (k, f, p) \
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(&keys)
    .bind(&cfs)
    .bind(&payloads)
    .bind(pg_time(now))
    .execute(c)
    .await?;
    Ok(done.rows_affected())
}

async fn insert_awards(
    c: &mut PgConnection,
    period: &AwardPeriod,
    awards: &[NewAward],
    notices: RenderNotice,
    now: OffsetDateTime,
) -> sqlx::Result<Step<()>> {
    let col = |f: &dyn Fn(&NewAward) -> Option<String>| -> Vec<Option<String>> { awards.iter().map(f).collect() };
    let cfs: Vec<&str> = awards.iter().map(|a| a.fiscal_code.as_str()).collect();
    let amount: Vec<i64> = awards.iter().map(|a| a.decision.amount.cents()).collect();
    let cashback: Vec<i64> = awards.iter().map(|a| a.decision.cashback.cents()).collect();
    let jackpot: Vec<i64> = awards.iter().map(|a| a.decision.jackpot.cents()).collect();
    let typology: Vec<&str> = awards.iter().map(|a| a.decision.typology.code()).collect();
    let trx: Vec<i32> = awards.iter().map(|a| a.decision.transactions as i32).collect();
    let rank: Vec<Option<i64>> = awards.iter().map(|a| a.decision.rank.map(i64::from)).collect();
    let score: Vec<i64> = awards.iter().map(|a| a.score_total.cents()).collect();
    let capped: Vec<bool> = awards.iter().map(|a| a.decision.period_cap_applied).collect();
    let status: Vec<&str> = awards.iter().map(|a| a.status().as_str()).collect();
    let iban = col(&|a| a.payoff.as_ref().map(|p| p.iban.clone()));
    let itype = col(&|a| a.payoff.as_ref().map(|p| p.instr_type.clone()));
    let hcf = col(&|a| a.payoff.as_ref().and_then(|p| p.account_holder_cf.clone()));
    let hname = col(&|a| a.payoff.as_ref().and_then(|p| p.account_holder_name.clone()));
    let hsur = col(&|a| a.payoff.as_ref().and_then(|p| p.account_holder_surname.clone()));
    let check = col(&|a| a.payoff.as_ref().map(|p| p.check_status.clone()));
    let tech = col(&|a| a.payoff.as_ref().and_then(|p| p.technical_account_holder.clone()));
    let card = col(&|a| a.payoff.as_ref().and_then(|p| p.issuer_card_id.clone()));
    let inserted: Vec<(i64, String)> = sqlx::query_as(
        "INSERT INTO award (award_period_id, fiscal_code, kind, amount_cents, cashback_cents, jackpot_cents, typology, \
         transactions, rank, score_total_cents, period_cap_applied, status, payoff_instr, payoff_instr_type, account_holder_cf, \
         account_holder_name, account_holder_surname, check_instr_status, technical_account_holder, issuer_card_id, \
         created_at, updated_at) \
         SELECT $1, u.* , $21, $21 FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[], \
         $8::int[], $9::bigint[], $10::bigint[], $11::bool[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], \
         $17::text[], $18::text[], $19::text[], $20::text[]) AS u \
         ON CONFLICT DO NOTHING RETURNING award_id, fiscal_code",
    )
    .bind(period.id)
    .bind(&cfs)
    .bind(vec!["AWARD"; awards.len()])
    .bind(&amount)
    .bind(&cashback)
    .bind(&jackpot)
    .bind(&typology)
    .bind(&trx)
    .bind(&rank)
    .bind(&score)
    .bind(&capped)
    .bind(&status)
    .bind(&iban)
    .bind(&itype)
    .bind(&hcf)
    .bind(&hname)
    .bind(&hsur)
    .bind(&check)
    .bind(&tech)
    .bind(&card)
    .bind(pg_time(now))
    .fetch_all(&mut *c)
    .await?;
    let ids: std::collections::HashMap<&str, i64> = inserted.iter().map(|(id, cf)| (cf.as_str(), *id)).collect();
    let items: Vec<NewNotification> = awards
        .iter()
        .filter_map(|a| {
            let award_id = *ids.get(a.fiscal_code.as_str())?;
            Some(NewNotification {
                key: format!("award:{}:{}", period.id, a.fiscal_code),
                fiscal_code: a.fiscal_code.clone(),
                payload: notices(NoticeFor::AwardComputed { period, award_id, award: a }),
            })
        })
        .collect();
    enqueue_many(c, &items, now).await?;
    Ok(Step::Done(()))
}

async fn close_rows(c: &mut PgConnection, period: i64) -> sqlx::Result<Vec<CloseRow>> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *c).await?;
    sqlx::query("SET LOCAL statement_timeout = '10min'").execute(&mut *c).await?;
    let rows = sqlx::query(
        "SELECT cp.fiscal_code, cp.citizen_id, cp.enabled AND c.enabled, cp.cashback_cents, cp.score_total_cents, \
         cp.transactions, cp.last_counted_at, c.payoff_instr, c.payoff_instr_type, c.account_holder_cf, \
         c.account_holder_name, c.account_holder_surname, c.check_instr_status, c.technical_account_holder, c.issuer_card_id \
         FROM citizen_period cp JOIN citizen c ON c.fiscal_code = cp.fiscal_code WHERE cp.award_period_id = $1",
    )
    .bind(period)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            let citizen_id: i64 = r.try_get(1)?;
            let count: i32 = r.try_get(5)?;
            let last: Option<OffsetDateTime> = r.try_get(6)?;
            Ok(CloseRow {
                fiscal_code: r.try_get(0)?,
                citizen_id: u32::try_from(citizen_id).map_err(|_| decode_err("citizen id beyond u32"))?,
                enabled: r.try_get(2)?,
                cashback: Money::from_cents(r.try_get(3)?),
                score_total: Money::from_cents(r.try_get(4)?),
                standing: Standing { count: count as u32, last_us: last.map(cashback_store::scoring::unix_us) },
                payoff: payoff_at(r, 7)?,
            })
        })
        .collect()
}

async fn payout_repairs(
    c: &mut PgConnection,
    notices: RenderNotice,
    now: OffsetDateTime,
) -> sqlx::Result<Step<(u64, u64, u64)>> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLOSE_LOCK).execute(&mut *c).await?;
    let now = pg_time(now);
    let filled = sqlx::query(
        "UPDATE award a SET payoff_instr = c.payoff_instr, payoff_instr_type = c.payoff_instr_type, \
         account_holder_cf = c.account_holder_cf, account_holder_name = c.account_holder_name, \
         account_holder_surname = c.account_holder_surname, check_instr_status = c.check_instr_status, \
         technical_account_holder = c.technical_account_holder, issuer_card_id = c.issuer_card_id, updated_at = $1 \
         FROM citizen c WHERE a.status = 'NEW' AND a.payoff_instr IS NULL AND c.fiscal_code = a.fiscal_code \
         AND c.enabled AND c.payoff_instr IS NOT NULL",
    )
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected();
    let reissued = sqlx::query(
        "INSERT INTO award (award_period_id, fiscal_code, kind, related_id, complaint_id, amount_cents, cashback_cents, \
         jackpot_cents, typology, transactions, rank, score_total_cents, period_cap_applied, status, payoff_instr, \
         payoff_instr_type, account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, \
         technical_account_holder, issuer_card_id, created_at, updated_at) \
         SELECT a.award_period_id, a.fiscal_code, 'REISSUE', a.award_id, a.complaint_id, a.amount_cents, a.cashback_cents, \
         a.jackpot_cents, a.typology, a.transactions, a.rank, a.score_total_cents, a.period_cap_applied, 'NEW', c.payoff_instr, \
         c.payoff_instr_type, c.account_holder_cf, c.account_holder_name, c.account_holder_surname, c.check_instr_status, \
         c.technical_account_holder, c.issuer_card_id, $1, $1 \
         FROM award a JOIN citizen c ON c.fiscal_code = a.fiscal_code \
         WHERE a.status = 'FAILED' AND c.enabled AND c.payoff_instr IS NOT NULL AND c.payoff_instr <> a.payoff_instr \
         AND NOT EXISTS (SELECT 1 FROM award x WHERE x.related_id = a.award_id AND x.kind IN ('INTEGRATION', 'CORRECTION')) \
         ORDER BY a.award_id ON CONFLICT DO NOTHING",
    )
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected();
    let waiting: Vec<Award> = sqlx::query(sql(format!(
        "SELECT {AWARD_COLS} FROM award WHERE status = 'NEW' AND amount_cents > 0 AND payoff_instr IS NULL ORDER BY award_id"
    )))
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(award_from_row)
    .collect::<sqlx::Result<_>>()?;
    let items: Vec<NewNotification> = waiting
        .iter()
        .map(|a| NewNotification {
            key: format!("iban-missing:{}", a.award_id),
            fiscal_code: a.fiscal_code.clone(),
            payload: notices(NoticeFor::IbanMissing { award: a }),
        })
        .collect();
    for batch in items.chunks(CLOSE_BATCH) {
        enqueue_many(&mut *c, batch, now).await?;
    }
    Ok(Step::Done((filled, reissued, waiting.len() as u64)))
}

async fn assign_file(
    c: &mut PgConnection,
    run_id: i64,
    name: &str,
    chunk: u32,
    total: u32,
    rows: usize,
    now: OffsetDateTime,
) -> sqlx::Result<Step<PayoutFile>> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLOSE_LOCK).execute(&mut *c).await?;
    sqlx::query("SET LOCAL statement_timeout = '10min'").execute(&mut *c).await?;
    let now = pg_time(now);
    let file_id: i64 = sqlx::query_scalar(
        "INSERT INTO payout_file (run_id, name, chunk, total_chunks, rows, amount_cents, created_at) \
         VALUES ($1, $2, $3, $4, 0, 0, $5) RETURNING payout_file_id",
    )
    .bind(run_id)
    .bind(name)
    .bind(chunk as i32)
    .bind(total as i32)
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    sqlx::query(sql(format!(
        "UPDATE award SET status = 'SENT', payout_file_id = $1, updated_at = $2 WHERE award_id IN \
         (SELECT award_id FROM award WHERE {PAYABLE} ORDER BY award_id LIMIT $3)"
    )))
    .bind(file_id)
    .bind(now)
    .bind(rows as i64)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE payout_file f SET rows = s.n, amount_cents = s.amount FROM \
         (SELECT count(*) AS n, coalesce(sum(amount_cents), 0)::bigint AS amount FROM award WHERE payout_file_id = $1) s \
         WHERE f.payout_file_id = $1",
    )
    .bind(file_id)
    .execute(&mut *c)
    .await?;
    let f = sqlx::query(sql(format!("SELECT {FILE_COLS} FROM payout_file WHERE payout_file_id = $1")))
        .bind(file_id)
        .fetch_one(&mut *c)
        .await?;
    Ok(Step::Done(file_from_row(&f)?))
}

async fn inbound_seen(
    c: &mut PgConnection,
    name: &str,
    kind: InboundKind,
    sha256: &str,
) -> sqlx::Result<Option<InboundOutcome>> {
    let seen: Option<(String, String)> =
        sqlx::query_as("SELECT sha256, kind FROM inbound_file WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *c)
            .await?;
    Ok(seen.map(|(s, k)| {
        if s == sha256 && k == kind.as_str() { InboundOutcome::AlreadyApplied } else { InboundOutcome::NameConflict }
    }))
}

#[allow(clippy::too_many_arguments)]
async fn record_inbound(
    c: &mut PgConnection,
    name: &str,
    kind: InboundKind,
    sha256: &str,
    applied: u64,
    unchanged: u64,
    rejected: usize,
    now: OffsetDateTime,
) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "INSERT INTO inbound_file (name, kind, sha256, applied, unchanged, rejected, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(kind.as_str())
    .bind(sha256)
    .bind(applied as i64)
    .bind(unchanged as i64)
    .bind(rejected as i64)
    .bind(pg_time(now))
    .execute(c)
    .await?
    .rows_affected();
    Ok(n == 1)
}

fn rejection(line: u64, field: &str, reason: impl Into<String>) -> InboundRejection {
    InboundRejection { line, field: field.into(), reason: reason.into() }
}

async fn apply_outcomes(
    c: &mut PgConnection,
    name: &str,
    sha256: &str,
    lines: &[OutcomeUpdate],
    notices: RenderNotice,
    now: OffsetDateTime,
) -> sqlx::Result<Step<InboundOutcome>> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLOSE_LOCK).execute(&mut *c).await?;
    if let Some(seen) = inbound_seen(&mut *c, name, InboundKind::Outcomes, sha256).await? {
        return Ok(Step::Done(seen));
    }
    let (mut applied, mut unchanged, mut rejected) = (0u64, 0u64, Vec::new());
    let mut items = Vec::new();
    for l in lines {
        let Some(award) = get_award(&mut *c, l.award_id).await? else {
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
        if award.outcome.is_some() {
            let by: Option<i64> =
                sqlx::query_scalar("SELECT award_id FROM award WHERE related_id = $1 AND kind <> 'CORRECTION' LIMIT 1")
                    .bind(l.award_id)
                    .fetch_optional(&mut *c)
                    .await?;
            if let Some(by) = by {
                rejected.push(rejection(
                    l.line,
                    "result",
                    format!("award {} was settled by award {by}: outcome not changed", l.award_id),
                ));
                continue;
            }
        }
        let o = &l.outcome;
        let row = sqlx::query(sql(format!(
            "UPDATE award SET status = $2, outcome_result = $3, outcome_executed = $4, outcome_reason = $5, outcome_cro = $6, \
             outcome_execution_date = $7, updated_at = $8 WHERE award_id = $1 RETURNING {AWARD_COLS}"
        )))
        .bind(l.award_id)
        .bind(if o.executed { "EXECUTED" } else { "FAILED" })
        .bind(&o.result)
        .bind(o.executed)
        .bind(&o.reason)
        .bind(&o.cro)
        .bind(o.execution_date)
        .bind(pg_time(now))
        .fetch_one(&mut *c)
        .await?;
        let updated = award_from_row(&row)?;
        applied += 1;
        items.push(NewNotification {
            key: format!("payment:{}:{}", l.award_id, name),
            fiscal_code: updated.fiscal_code.clone(),
            payload: notices(NoticeFor::Payment { award: &updated }),
        });
    }
    for batch in items.chunks(CLOSE_BATCH) {
        enqueue_many(&mut *c, batch, now).await?;
    }
    if !record_inbound(&mut *c, name, InboundKind::Outcomes, sha256, applied, unchanged, rejected.len(), now).await? {
        return Ok(Step::Retry);
    }
    Ok(Step::Done(InboundOutcome::Applied { applied, unchanged, rejected }))
}

async fn apply_integrations(
    c: &mut PgConnection,
    name: &str,
    sha256: &str,
    lines: &[IntegrationPayment],
    periods: &[AwardPeriod],
    now: OffsetDateTime,
) -> sqlx::Result<Step<InboundOutcome>> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLOSE_LOCK).execute(&mut *c).await?;
    if let Some(seen) = inbound_seen(&mut *c, name, InboundKind::Integrations, sha256).await? {
        return Ok(Step::Done(seen));
    }
    let (mut applied, mut unchanged, mut rejected) = (0u64, 0u64, Vec::new());
    for l in lines {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM citizen WHERE fiscal_code = $1)")
            .bind(&l.fiscal_code)
            .fetch_one(&mut *c)
            .await?;
        if !exists {
            rejected.push(rejection(l.line, "fiscalCode", "no such citizen"));
            continue;
        }
        let Some(period) = periods.iter().find(|p| p.start == l.period_start && p.end == l.period_end) else {
            rejected.push(rejection(l.line, "periodStart", "no award period with these start and end dates"));
            continue;
        };
        if l.amount.is_negative() || l.cashback.is_negative() || l.jackpot.is_negative() {
            rejected.push(rejection(l.line, "amount", "amounts must not be negative"));
            continue;
        }
        let o = &l.outcome;
        let n = sqlx::query(
            "INSERT INTO award (award_period_id, fiscal_code, kind, related_id, complaint_id, agent_id, amount_cents, \
             cashback_cents, jackpot_cents, typology, transactions, score_total_cents, period_cap_applied, status, payoff_instr, \
             payoff_instr_type, account_holder_name, account_holder_surname, outcome_result, outcome_executed, outcome_reason, \
             outcome_cro, outcome_execution_date, created_at, updated_at) \
             VALUES ($1, $2, 'INTEGRATION', $3, $4, $5, $6, $7, $8, $9, 0, 0, false, 'INTEGRATION', $10, 'IBAN', $11, $12, $13, \
             $14, $15, $16, $17, $18, $18) ON CONFLICT DO NOTHING",
        )
        .bind(period.id)
        .bind(&l.fiscal_code)
        .bind(l.related_id)
        .bind(l.complaint_id)
        .bind(l.agent_id)
        .bind(l.amount.cents())
        .bind(l.cashback.cents())
        .bind(l.jackpot.cents())
        .bind(if l.jackpot > Money::ZERO { "03" } else if l.cashback > Money::ZERO { "01" } else { "02" })
        .bind(&l.iban)
        .bind(&l.holder_name)
        .bind(&l.holder_surname)
        .bind(&o.result)
        .bind(o.executed)
        .bind(&o.reason)
        .bind(&o.cro)
        .bind(o.execution_date)
        .bind(pg_time(now))
        .execute(&mut *c)
        .await?
        .rows_affected();
        if n == 1 {
            applied += 1;
        } else {
            unchanged += 1;
        }
    }
    if !record_inbound(&mut *c, name, InboundKind::Integrations, sha256, applied, unchanged, rejected.len(), now)
        .await?
    {
        return Ok(Step::Retry);
    }
    Ok(Step::Done(InboundOutcome::Applied { applied, unchanged, rejected }))
}

async fn decide_complaint(
    c: &mut PgConnection,
    id: i64,
    decision: &ComplaintDecision,
    notices: RenderNotice,
    now: OffsetDateTime,
) -> sqlx::Result<Step<DecideComplaintOutcome>> {
    let now = pg_time(now);
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT complaint_id FROM complaint WHERE complaint_id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
    if locked.is_none() {
        return Ok(Step::Done(DecideComplaintOutcome::NotFound));
    }
    let cur = get_complaint(&mut *c, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let same = match (decision, cur.status) {
        (ComplaintDecision::Accept { correction, .. }, ComplaintStatus::Accepted) => {
            cur.correction == Some(*correction)
        }
        (ComplaintDecision::Reject { .. }, ComplaintStatus::Rejected) => true,
        _ => false,
    };
    if cur.status != ComplaintStatus::Open {
        return Ok(Step::Done(if same {
            DecideComplaintOutcome::Unchanged(cur)
        } else {
            DecideComplaintOutcome::Conflict(cur)
        }));
    }
    match decision {
        ComplaintDecision::Accept { correction, note } => {
            let related: Option<i64> = sqlx::query_scalar(
                "SELECT award_id FROM award WHERE award_period_id = $1 AND fiscal_code = $2 AND kind = 'AWARD'",
            )
            .bind(cur.award_period_id)
            .bind(&cur.fiscal_code)
            .fetch_optional(&mut *c)
            .await?;
            let award_id: i64 = sqlx::query_scalar(
                "INSERT INTO award (award_period_id, fiscal_code, kind, related_id, complaint_id, amount_cents, cashback_cents, \
                 jackpot_cents, typology, transactions, score_total_cents, period_cap_applied, status, payoff_instr, payoff_instr_type, \
                 account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, technical_account_holder, \
                 issuer_card_id, created_at, updated_at) \
                 SELECT $1, $2, 'CORRECTION', $3, $4, $5, $5, 0, '01', 0, 0, false, 'NEW', payoff_instr, payoff_instr_type, \
                 account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, technical_account_holder, \
                 issuer_card_id, $6, $6 FROM citizen WHERE fiscal_code = $2 RETURNING award_id",
            )
            .bind(cur.award_period_id)
            .bind(&cur.fiscal_code)
            .bind(related)
            .bind(id)
            .bind(correction.cents())
            .bind(now)
            .fetch_one(&mut *c)
            .await?;
            sqlx::query(
                "UPDATE complaint SET status = 'ACCEPTED', correction_cents = $2, correction_award_id = $3, operator_note = $4, \
                 decided_at = $5 WHERE complaint_id = $1",
            )
            .bind(id)
            .bind(correction.cents())
            .bind(award_id)
            .bind(note)
            .bind(now)
            .execute(&mut *c)
            .await?;
        }
        ComplaintDecision::Reject { note } => {
            sqlx::query(
                "UPDATE complaint SET status = 'REJECTED', operator_note = $2, decided_at = $3 WHERE complaint_id = $1",
            )
            .bind(id)
            .bind(note)
            .bind(now)
            .execute(&mut *c)
            .await?;
        }
    }
    let done = get_complaint(&mut *c, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    let item = NewNotification {
        key: format!("complaint:{id}"),
        fiscal_code: done.fiscal_code.clone(),
        payload: notices(NoticeFor::ComplaintDecided { complaint: &done }),
    };
    enqueue_many(&mut *c, &[item], now).await?;
    Ok(Step::Done(DecideComplaintOutcome::Decided(done)))
}

async fn file_complaint(
    c: &mut PgConnection,
    cf: &str,
    period: i64,
    kind: ComplaintKind,
    text: &str,
    now: OffsetDateTime,
) -> sqlx::Result<Step<FileComplaintOutcome>> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM citizen WHERE fiscal_code = $1)")
        .bind(cf)
        .fetch_one(&mut *c)
        .await?;
    if !exists {
        return Ok(Step::Done(FileComplaintOutcome::CitizenNotFound));
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO complaint (fiscal_code, award_period_id, kind, description, status, created_at) \
         VALUES ($1, $2, $3, $4, 'OPEN', $5) ON CONFLICT DO NOTHING RETURNING complaint_id",
    )
    .bind(cf)
    .bind(period)
    .bind(kind.as_str())
    .bind(text)
    .bind(pg_time(now))
    .fetch_optional(&mut *c)
    .await?;
    if let Some(id) = id {
        return Ok(Step::Done(FileComplaintOutcome::Created(
            get_complaint(&mut *c, id).await?.ok_or(sqlx::Error::RowNotFound)?,
        )));
    }
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT complaint_id FROM complaint WHERE fiscal_code = $1 AND award_period_id = $2 AND kind = $3 AND status = 'OPEN'",
    )
    .bind(cf)
    .bind(period)
    .bind(kind.as_str())
    .fetch_optional(&mut *c)
    .await?;
    match open {
        Some(id) => Ok(Step::Done(FileComplaintOutcome::AlreadyOpen(
            get_complaint(&mut *c, id).await?.ok_or(sqlx::Error::RowNotFound)?,
        ))),
        // Decided between the insert and the read: try again.
        None => Ok(Step::Retry),
    }
}

async fn claim_notifications(
    c: &mut PgConnection,
    limit: u32,
    lease: time::Duration,
    now: OffsetDateTime,
) -> sqlx::Result<Step<Vec<OutboxItem>>> {
    let rows = sqlx::query(
        "UPDATE notification n SET next_attempt_at = $3 FROM \
         (SELECT notification_id FROM notification WHERE status = 'PENDING' AND next_attempt_at <= $1 \
          ORDER BY next_attempt_at, notification_id LIMIT $2 FOR UPDATE SKIP LOCKED) d \
         WHERE n.notification_id = d.notification_id RETURNING n.notification_id, n.fiscal_code, n.payload, n.attempts",
    )
    .bind(pg_time(now))
    .bind(i64::from(limit))
    .bind(pg_time(now + lease))
    .fetch_all(&mut *c)
    .await?;
    let mut items: Vec<OutboxItem> = rows
        .iter()
        .map(|r| {
            let attempts: i32 = r.try_get(3)?;
            Ok(OutboxItem {
                notification_id: r.try_get(0)?,
                fiscal_code: r.try_get(1)?,
                payload: r.try_get(2)?,
                attempts: attempts as u32,
            })
        })
        .collect::<sqlx::Result<_>>()?;
    items.sort_by_key(|i| i.notification_id);
    Ok(Step::Done(items))
}

#[async_trait]
impl CloseStore for PgStore {
    async fn close_period(
        &self,
        period: &AwardPeriod,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<CloseOutcome> {
        let mut conn = self.conn().await?;
        if let Some(s) = close_summary(&mut conn, period.id).await.map_err(store_err)? {
            return Ok(CloseOutcome::AlreadyClosed(s));
        }
        drop(conn);
        let id = period.id;
        let rows = transaction!(self, "close_rows", |c| async { close_rows(c, id).await.map(Step::Done) })?;
        let p = period.clone();
        let (awards, not_eligible, summary) = tokio::task::spawn_blocking(move || decide_awards(&p, rows))
            .await
            .map_err(|e| StoreError::Other(format!("close task failed: {e}")))?;
        for batch in awards.chunks(CLOSE_BATCH) {
            transaction!(self, "close_awards", |c| insert_awards(c, period, batch, notices, now))?;
        }
        let items: Vec<NewNotification> = not_eligible
            .iter()
            .map(|r| NewNotification {
                key: format!("not-eligible:{}:{}", period.id, r.fiscal_code),
                fiscal_code: r.fiscal_code.clone(),
                payload: notices(NoticeFor::NotEligible { period, row: r }),
            })
            .collect();
        for batch in items.chunks(CLOSE_BATCH) {
            transaction!(self, "close_notices", |c| async { enqueue_many(c, batch, now).await.map(Step::Done) })?;
        }
        let s = &summary;
        let close = sqlx::query(
            "INSERT INTO award_close (award_period_id, citizens, awards, not_eligible, winners, cashback_cents, jackpot_cents, \
             amount_cents, without_iban, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(s.award_period_id)
        .bind(s.citizens as i64)
        .bind(s.awards as i64)
        .bind(s.not_eligible as i64)
        .bind(s.super_cashback_winners as i64)
        .bind(s.cashback.cents())
        .bind(s.jackpot.cents())
        .bind(s.amount.cents())
        .bind(s.without_iban as i64)
        .bind(pg_time(now));
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        let inserted = close.execute(&mut *tx).await.map_err(store_err)?.rows_affected();
        let outcome = CloseOutcome::Closed(summary);
        if inserted == 1
            && let Some(ev) = audit::events::period_closed(&outcome)
        {
            ops::record_audit(&mut tx, &audit::current_actor(), now, &ev).await.map_err(store_err)?;
        }
        tx.commit().await.map_err(store_err)?;
        Ok(outcome)
    }

    async fn close_summary(&self, award_period_id: i64) -> StoreResult<Option<CloseSummary>> {
        close_summary(&mut *self.conn().await?, award_period_id).await.map_err(store_err)
    }

    async fn prepare_payout(
        &self,
        max_rows: usize,
        name: NamePayoutFile,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<PayoutPreparation> {
        let max_rows = max_rows.clamp(1, MAX_PAYOUT_FILE_ROWS);
        let (iban_filled, reissued, waiting_for_iban) =
            transaction!(self, "payout_repairs", |c| payout_repairs(c, notices, now))?;
        let (payable, run_id): (i64, i64) = sqlx::query_as(sql(format!(
            "SELECT (SELECT count(*) FROM award WHERE {PAYABLE}), (SELECT coalesce(max(run_id), 0) + 1 FROM payout_file)"
        )))
        .fetch_one(&mut *self.conn().await?)
        .await
        .map_err(store_err)?;
        let payable = payable as usize;
        let total = payable.div_ceil(max_rows) as u32;
        let mut files = Vec::new();
        for chunk in 1..=total {
            let rows = (payable - (chunk as usize - 1) * max_rows).min(max_rows);
            let file_name = name(now, chunk, total, rows);
            let f = transaction!(self, "payout_file", |c| assign_file(c, run_id, &file_name, chunk, total, rows, now))?;
            if f.rows > 0 {
                files.push(f);
            }
        }
        let prep = PayoutPreparation { iban_filled, reissued, waiting_for_iban, files };
        if let Some(ev) = audit::events::payout_prepared(&prep) {
            let mut c = self.conn().await?;
            ops::record_audit(&mut c, &audit::current_actor(), now, &ev).await.map_err(store_err)?;
        }
        Ok(prep)
    }

    async fn payout_files(&self, run_id: Option<i64>) -> StoreResult<Vec<PayoutFile>> {
        sqlx::query(sql(format!(
            "SELECT {FILE_COLS} FROM payout_file WHERE $1::bigint IS NULL OR run_id = $1 ORDER BY payout_file_id"
        )))
        .bind(run_id)
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(store_err)?
        .iter()
        .map(file_from_row)
        .collect::<sqlx::Result<_>>()
        .map_err(store_err)
    }

    async fn payout_file_awards(&self, payout_file_id: i64) -> StoreResult<Vec<Award>> {
        let mut conn = self.conn().await?;
        sqlx::query("SET statement_timeout = '10min'").execute(&mut *conn).await.map_err(store_err)?;
        let rows =
            sqlx::query(sql(format!("SELECT {AWARD_COLS} FROM award WHERE payout_file_id = $1 ORDER BY award_id")))
                .bind(payout_file_id)
                .fetch_all(&mut *conn)
                .await;
        let _ = sqlx::query("RESET statement_timeout").execute(&mut *conn).await;
        rows.map_err(store_err)?.iter().map(award_from_row).collect::<sqlx::Result<_>>().map_err(store_err)
    }

    async fn payout_file_written(&self, payout_file_id: i64, sha256: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(store_err)?;
        let mut stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT sha256 FROM payout_file WHERE payout_file_id = $1 FOR UPDATE")
                .bind(payout_file_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_err)?;
        if stored == Some(None) {
            sqlx::query("UPDATE payout_file SET sha256 = $2 WHERE payout_file_id = $1")
                .bind(payout_file_id)
                .bind(sha256)
                .execute(&mut *tx)
                .await
                .map_err(store_err)?;
            let ev = audit::events::payout_file_written(payout_file_id, sha256);
            ops::record_audit(&mut tx, &audit::current_actor(), OffsetDateTime::now_utc(), &ev)
                .await
                .map_err(store_err)?;
            stored = Some(Some(sha256.to_owned()));
        }
        tx.commit().await.map_err(store_err)?;
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
        let actor = audit::current_actor();
        transaction!(self, "apply_outcomes", |c| async {
            let step = apply_outcomes(c, file_name, sha256, &lines, notices, now).await;
            ops::then_audit(c, &actor, now, step, |o| {
                audit::events::inbound_applied(InboundKind::Outcomes, file_name, sha256, o)
            })
            .await
        })
    }

    async fn apply_integrations(
        &self,
        file_name: &str,
        sha256: &str,
        lines: Vec<IntegrationPayment>,
        now: OffsetDateTime,
    ) -> StoreResult<InboundOutcome> {
        let periods = crate::ops::list_award_periods(&mut *self.conn().await?).await.map_err(store_err)?;
        let actor = audit::current_actor();
        transaction!(self, "apply_integrations", |c| async {
            let step = apply_integrations(c, file_name, sha256, &lines, &periods, now).await;
            ops::then_audit(c, &actor, now, step, |o| {
                audit::events::inbound_applied(InboundKind::Integrations, file_name, sha256, o)
            })
            .await
        })
    }

    async fn citizen_awards(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Award>> {
        sqlx::query(sql(format!("SELECT {AWARD_COLS} FROM award WHERE fiscal_code = $1 ORDER BY award_id")))
            .bind(fiscal_code.as_str())
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(store_err)?
            .iter()
            .map(award_from_row)
            .collect::<sqlx::Result<_>>()
            .map_err(store_err)
    }

    async fn get_award(&self, award_id: i64) -> StoreResult<Option<Award>> {
        get_award(&mut *self.conn().await?, award_id).await.map_err(store_err)
    }

    async fn file_complaint(
        &self,
        fiscal_code: &FiscalCode,
        award_period_id: i64,
        kind: ComplaintKind,
        description: &str,
        now: OffsetDateTime,
    ) -> StoreResult<FileComplaintOutcome> {
        let cf = fiscal_code.as_str();
        let actor = audit::current_actor();
        transaction!(self, "file_complaint", |c| async {
            let step = file_complaint(c, cf, award_period_id, kind, description, now).await;
            ops::then_audit(c, &actor, now, step, audit::events::complaint_filed).await
        })
    }

    async fn citizen_complaints(&self, fiscal_code: &FiscalCode) -> StoreResult<Vec<Complaint>> {
        sqlx::query(sql(format!("SELECT {COMPLAINT_COLS} FROM complaint WHERE fiscal_code = $1 ORDER BY complaint_id")))
            .bind(fiscal_code.as_str())
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(store_err)?
            .iter()
            .map(complaint_from_row)
            .collect::<sqlx::Result<_>>()
            .map_err(store_err)
    }

    async fn list_complaints(&self, status: Option<ComplaintStatus>, limit: u32) -> StoreResult<Vec<Complaint>> {
        sqlx::query(sql(format!(
            "SELECT {COMPLAINT_COLS} FROM complaint WHERE $1::text IS NULL OR status = $1 ORDER BY complaint_id LIMIT $2"
        )))
        .bind(status.map(|s| s.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(store_err)?
        .iter()
        .map(complaint_from_row)
        .collect::<sqlx::Result<_>>()
        .map_err(store_err)
    }

    async fn decide_complaint(
        &self,
        complaint_id: i64,
        decision: ComplaintDecision,
        notices: RenderNotice,
        now: OffsetDateTime,
    ) -> StoreResult<DecideComplaintOutcome> {
        let actor = audit::current_actor();
        transaction!(self, "decide_complaint", |c| async {
            let step = decide_complaint(c, complaint_id, &decision, notices, now).await;
            ops::then_audit(c, &actor, now, step, |o| audit::events::complaint_decided(&decision, o)).await
        })
    }

    async fn enqueue_notifications(&self, items: Vec<NewNotification>, now: OffsetDateTime) -> StoreResult<u64> {
        let mut queued = 0;
        for batch in items.chunks(CLOSE_BATCH) {
            queued += enqueue_many(&mut *self.conn().await?, batch, now).await.map_err(store_err)?;
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
        let mut after = String::new();
        let mut queued = 0u64;
        loop {
            let last: Option<String> = sqlx::query_scalar(
                "SELECT max(fiscal_code) FROM (SELECT fiscal_code FROM citizen WHERE fiscal_code > $1 \
                 ORDER BY fiscal_code LIMIT $2) s",
            )
            .bind(&after)
            .bind(CLOSE_BATCH as i64)
            .fetch_one(&mut *self.conn().await?)
            .await
            .map_err(store_err)?;
            let Some(last) = last else { return Ok(queued) };
            queued += sqlx::query(
                "INSERT INTO notification (dedup_key, fiscal_code, payload, status, attempts, next_attempt_at, created_at, \
                 updated_at) SELECT $1 || fiscal_code, fiscal_code, $2, 'PENDING', 0, $3, $3, $3 FROM citizen \
                 WHERE fiscal_code > $4 AND fiscal_code <= $5 AND enabled AND timestamp_tc < $6 ON CONFLICT (dedup_key) DO NOTHING",
            )
            .bind(key_prefix)
            .bind(payload)
            .bind(pg_time(now))
            .bind(&after)
            .bind(&last)
            .bind(pg_time(accepted_before))
            .execute(&mut *self.conn().await?)
            .await
            .map_err(store_err)?
            .rows_affected();
            after = last;
        }
    }

    async fn claim_notifications(
        &self,
        limit: u32,
        lease: time::Duration,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<OutboxItem>> {
        transaction!(self, "claim_notifications", |c| claim_notifications(c, limit, lease, now))
    }

    async fn notification_result(
        &self,
        notification_id: i64,
        result: DeliveryResult,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let now = pg_time(now);
        let (status, next, error, message_id) = match &result {
            DeliveryResult::Sent { message_id } => ("SENT", now, None, Some(message_id.as_str())),
            DeliveryResult::Retry { error, next_attempt } => {
                ("PENDING", pg_time(*next_attempt), Some(error.as_str()), None)
            }
            DeliveryResult::Failed { error } => ("FAILED", now, Some(error.as_str()), None),
        };
        sqlx::query(
            "UPDATE notification SET status = $2, attempts = attempts + 1, next_attempt_at = $3, last_error = $4, \
             message_id = $5, updated_at = $6 WHERE notification_id = $1 AND status = 'PENDING'",
        )
        .bind(notification_id)
        .bind(status)
        .bind(next)
        .bind(error)
        .bind(message_id)
        .bind(now)
        .execute(&mut *self.conn().await?)
        .await
        .map_err(store_err)?;
        Ok(())
    }

    async fn outbox_counts(&self) -> StoreResult<OutboxCounts> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT status, count(*) FROM notification GROUP BY status")
            .fetch_all(&mut *self.conn().await?)
            .await
            .map_err(store_err)?;
        let mut counts = OutboxCounts::default();
        for (s, n) in rows {
            match s.as_str() {
                "PENDING" => counts.pending = n as u64,
                "SENT" => counts.sent = n as u64,
                _ => counts.failed = n as u64,
            }
        }
        Ok(counts)
    }

    async fn claim_job(&self, job: &str, stale_after: time::Duration, now: OffsetDateTime) -> StoreResult<bool> {
        let n = sqlx::query(
            "INSERT INTO job_run (job, claimed_at) VALUES ($1, $2) \
             ON CONFLICT (job) DO UPDATE SET claimed_at = excluded.claimed_at \
             WHERE job_run.finished_at IS NULL AND job_run.claimed_at < $3",
        )
        .bind(job)
        .bind(pg_time(now))
        .bind(pg_time(now - stale_after))
        .execute(&mut *self.conn().await?)
        .await
        .map_err(store_err)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn finish_job(&self, job: &str, outcome: &str, now: OffsetDateTime) -> StoreResult<()> {
        sqlx::query("UPDATE job_run SET finished_at = $2, outcome = $3 WHERE job = $1")
            .bind(job)
            .bind(pg_time(now))
            .bind(outcome)
            .execute(&mut *self.conn().await?)
            .await
            .map_err(store_err)?;
        Ok(())
    }

    async fn job_done(&self, job: &str) -> StoreResult<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_run WHERE job = $1 AND finished_at IS NOT NULL)")
            .bind(job)
            .fetch_one(&mut *self.conn().await?)
            .await
            .map_err(store_err)
    }
}
