//! The SQL of each store operation, run on one PostgreSQL connection: inside the caller's
//! transaction for the multi-statement operations, in autocommit for single statements.
//! Decisions come from `cashback_domain::enrollment`, exactly as in the SQLite backend.
//!
//! Isolation is READ COMMITTED; races are settled by row locks, always taken in the order
//! citizen → payment instrument → history rows, so two operations never wait on each other in
//! a cycle:
//! * instrument enrollment holds the citizen row `FOR SHARE` (a concurrent withdrawal of that
//!   citizen waits, and vice versa) and the instrument row `FOR UPDATE`;
//! * a brand-new hpan has no row to lock yet, so it is inserted with `ON CONFLICT DO NOTHING`:
//!   the loser of the race waits for the winner's commit, inserts nothing, and the whole
//!   transaction is retried ([`Step::Retry`]), now seeing the winner's row.

use cashback_domain::eligibility::{
    CitizenState as EligibilityCitizen, EnrollmentIndex, EnrollmentIndexBuilder, Ineligible,
};
use cashback_domain::enrollment::{
    self, Channel, CitizenEnrollDecision, CitizenState, InstrumentDeleteDecision, InstrumentDeleteRefusal,
    InstrumentEnrollDecision, InstrumentEnrollRefusal, InstrumentState, InstrumentStatus, OptInStatus,
};
use cashback_domain::scoring::{ScoringRules, Standing, TrxInput};
use cashback_domain::{AwardPeriod, FiscalCode, Hpan, Money, OperationType};
use cashback_store::*;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::{OffsetDateTime, UtcOffset};

/// What one attempt of a transactional operation came to.
#[derive(Debug)]
pub enum Step<T> {
    /// Commit and return this.
    Done(T),
    /// Lost an insert race: roll back and run the whole transaction again.
    Retry,
}

/// The instant as stored: whole microseconds (Postgres' precision), UTC.
pub fn pg_time(t: OffsetDateTime) -> OffsetDateTime {
    to_micros(t).to_offset(UtcOffset::UTC)
}

pub(crate) fn decode_err(msg: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(msg.into().into())
}

pub(crate) fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

fn get_time(r: &PgRow, i: usize) -> sqlx::Result<OffsetDateTime> {
    r.try_get::<OffsetDateTime, _>(i).map(utc)
}

fn get_opt_time(r: &PgRow, i: usize) -> sqlx::Result<Option<OffsetDateTime>> {
    r.try_get::<Option<OffsetDateTime>, _>(i).map(|t| t.map(utc))
}

pub(crate) fn get_u32(r: &PgRow, i: usize) -> sqlx::Result<u32> {
    let v: i64 = r.try_get(i)?;
    u32::try_from(v).map_err(|_| decode_err(format!("column {i}: {v} does not fit in u32")))
}

fn fiscal_code(s: &str) -> sqlx::Result<FiscalCode> {
    FiscalCode::parse(s).map_err(|e| decode_err(format!("bad fiscal code {s:?}: {e}")))
}

// ---- citizens ----

/// Columns of a citizen, in the order `citizen_from_row` reads them.
macro_rules! citizen_cols {
    () => {
        "fiscal_code, enabled, timestamp_tc, opt_in_status, payoff_instr, payoff_instr_type, \
         account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, \
         technical_account_holder, issuer_card_id, cancellation, channel, updated_at"
    };
}

fn citizen_from_row(r: &PgRow) -> sqlx::Result<Citizen> {
    let cf: String = r.try_get(0)?;
    let opt: String = r.try_get(3)?;
    let iban: Option<String> = r.try_get(4)?;
    let payoff = match iban {
        Some(iban) => Some(Payoff {
            iban,
            instr_type: r.try_get::<Option<String>, _>(5)?.unwrap_or_else(|| "IBAN".into()),
            account_holder_cf: r.try_get(6)?,
            account_holder_name: r.try_get(7)?,
            account_holder_surname: r.try_get(8)?,
            check_status: r.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
            technical_account_holder: r.try_get(10)?,
            issuer_card_id: r.try_get(11)?,
        }),
        None => None,
    };
    Ok(Citizen {
        fiscal_code: fiscal_code(&cf)?,
        enabled: r.try_get(1)?,
        timestamp_tc: get_time(r, 2)?,
        opt_in_status: OptInStatus::parse(&opt).map_err(|e| decode_err(e.to_string()))?,
        payoff,
        cancellation: get_opt_time(r, 12)?,
        channel: r.try_get(13)?,
        updated_at: get_time(r, 14)?,
    })
}

pub async fn get_citizen(c: &mut PgConnection, cf: &FiscalCode) -> sqlx::Result<Option<Citizen>> {
    sqlx::query(concat!("SELECT ", citizen_cols!(), " FROM citizen WHERE fiscal_code = $1"))
        .bind(cf.as_str())
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(citizen_from_row)
        .transpose()
}

async fn lock_citizen(c: &mut PgConnection, cf: &FiscalCode) -> sqlx::Result<Option<Citizen>> {
    sqlx::query(concat!("SELECT ", citizen_cols!(), " FROM citizen WHERE fiscal_code = $1 FOR UPDATE"))
        .bind(cf.as_str())
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(citizen_from_row)
        .transpose()
}

pub async fn enroll_citizen(
    c: &mut PgConnection,
    cf: &FiscalCode,
    requested: Option<OptInStatus>,
    channel: &Channel,
    now: OffsetDateTime,
    actor: &str,
) -> sqlx::Result<Step<Citizen>> {
    let existing = lock_citizen(c, cf).await?;
    let state = existing.as_ref().map(|e| CitizenState { enabled: e.enabled, opt_in: e.opt_in_status });
    let now = pg_time(now);
    let decision = enrollment::decide_citizen_enroll(state, requested);
    let change = match decision {
        CitizenEnrollDecision::Create { .. } => "created",
        CitizenEnrollDecision::Reenable => "re-enabled",
        CitizenEnrollDecision::SetOptIn(_) => "opt-in",
        CitizenEnrollDecision::Unchanged => "",
    };
    let row = match decision {
        CitizenEnrollDecision::Create { opt_in } => {
            // A concurrent first enrollment may insert the same citizen: retry to see it.
            let row = sqlx::query(concat!(
                "INSERT INTO citizen (fiscal_code, enabled, timestamp_tc, opt_in_status, channel, created_at, updated_at) \
                 VALUES ($1, true, $2, $3, $4, $2, $2) ON CONFLICT (fiscal_code) DO NOTHING RETURNING ",
                citizen_cols!()
            ))
            .bind(cf.as_str())
            .bind(now)
            .bind(opt_in.as_str())
            .bind(channel.as_str())
            .fetch_optional(&mut *c)
            .await?;
            match row {
                Some(row) => row,
                None => return Ok(Step::Retry),
            }
        }
        CitizenEnrollDecision::Reenable => {
            sqlx::query(concat!(
                "UPDATE citizen SET enabled = true, timestamp_tc = $2, channel = $3, updated_at = $2 \
                 WHERE fiscal_code = $1 RETURNING ",
                citizen_cols!()
            ))
            .bind(cf.as_str())
            .bind(now)
            .bind(channel.as_str())
            .fetch_one(&mut *c)
            .await?
        }
        CitizenEnrollDecision::SetOptIn(o) => {
            sqlx::query(concat!(
                "UPDATE citizen SET opt_in_status = $2, updated_at = $3 WHERE fiscal_code = $1 RETURNING ",
                citizen_cols!()
            ))
            .bind(cf.as_str())
            .bind(o.as_str())
            .bind(now)
            .fetch_one(&mut *c)
            .await?
        }
        CitizenEnrollDecision::Unchanged => {
            return Ok(Step::Done(existing.expect("unchanged implies existing")));
        }
    };
    let after = citizen_from_row(&row)?;
    let ev = audit::events::citizen_enrolled(cf, change, channel.as_str(), after.opt_in_status.as_str());
    record_audit(c, actor, now, &ev).await?;
    Ok(Step::Done(after))
}

/// Append an event to the audit trail (in the caller's transaction).
pub async fn record_audit(
    c: &mut PgConnection,
    actor: &str,
    now: OffsetDateTime,
    ev: &NewAuditEvent,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO audit_event (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5::jsonb)")
        .bind(pg_time(now))
        .bind(actor)
        .bind(ev.action.as_str())
        .bind(&ev.subject)
        .bind(&ev.detail)
        .execute(c)
        .await?;
    Ok(())
}

/// `step`, then its audit event (when `event` gives one) in the same transaction.
pub async fn then_audit<T>(
    c: &mut PgConnection,
    actor: &str,
    now: OffsetDateTime,
    step: sqlx::Result<Step<T>>,
    event: impl FnOnce(&T) -> Option<NewAuditEvent>,
) -> sqlx::Result<Step<T>> {
    let step = step?;
    if let Step::Done(v) = &step
        && let Some(ev) = event(v)
    {
        record_audit(c, actor, now, &ev).await?;
    }
    Ok(step)
}

pub async fn audit_events(c: &mut PgConnection, q: &AuditQuery) -> sqlx::Result<Vec<AuditEvent>> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, subject, detail::text FROM audit_event \
         WHERE ($1::text IS NULL OR subject = $1) AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR action = $3) \
         AND ($4::timestamptz IS NULL OR at >= $4) AND ($5::timestamptz IS NULL OR at < $5) AND ($6::bigint IS NULL OR id < $6) \
         ORDER BY id DESC LIMIT $7",
    )
    .bind(q.subject.as_deref())
    .bind(q.actor.as_deref())
    .bind(q.action.as_deref())
    .bind(q.since.map(pg_time))
    .bind(q.until.map(pg_time))
    .bind(q.before_id)
    .bind(i64::from(q.limit.min(audit::AUDIT_QUERY_MAX)))
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEvent {
                id: r.try_get(0)?,
                at: get_time(r, 1)?,
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                subject: r.try_get(4)?,
                detail: r.try_get(5)?,
            })
        })
        .collect()
}

pub async fn set_payoff(
    c: &mut PgConnection,
    cf: &FiscalCode,
    p: &Payoff,
    now: OffsetDateTime,
) -> sqlx::Result<Step<SetPayoffOutcome>> {
    let Some(existing) = lock_citizen(c, cf).await? else {
        return Ok(Step::Done(SetPayoffOutcome::CitizenNotFound));
    };
    if !existing.enabled {
        return Ok(Step::Done(SetPayoffOutcome::CitizenNotEnabled));
    }
    let row = sqlx::query(concat!(
        "UPDATE citizen SET payoff_instr = $2, payoff_instr_type = $3, account_holder_cf = $4, account_holder_name = $5, \
         account_holder_surname = $6, check_instr_status = $7, technical_account_holder = $8, issuer_card_id = $9, \
         updated_at = $10 WHERE fiscal_code = $1 RETURNING ",
        citizen_cols!()
    ))
    .bind(cf.as_str())
    .bind(&p.iban)
    .bind(&p.instr_type)
    .bind(&p.account_holder_cf)
    .bind(&p.account_holder_name)
    .bind(&p.account_holder_surname)
    .bind(&p.check_status)
    .bind(&p.technical_account_holder)
    .bind(&p.issuer_card_id)
    .bind(pg_time(now))
    .fetch_one(&mut *c)
    .await?;
    Ok(Step::Done(SetPayoffOutcome::Updated(Box::new(citizen_from_row(&row)?))))
}

/// Delete at most `batch` notifications created before the cutoff (the outbox is transient).
pub async fn purge_notifications(c: &mut PgConnection, cutoff: OffsetDateTime, batch: u32) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM notification WHERE notification_id IN \
         (SELECT notification_id FROM notification WHERE created_at < $1 ORDER BY notification_id LIMIT $2)",
    )
    .bind(pg_time(cutoff))
    .bind(i64::from(batch))
    .execute(c)
    .await?
    .rows_affected())
}

/// No payment still open, no open complaint (`c` is the citizen row).
const ERASABLE: &str = "NOT EXISTS (SELECT 1 FROM award a WHERE a.fiscal_code = c.fiscal_code AND a.status IN ('NEW', 'SENT', 'FAILED')) \
     AND NOT EXISTS (SELECT 1 FROM complaint k WHERE k.fiscal_code = c.fiscal_code AND k.status = 'OPEN')";

/// Citizens whose retention is over (see `Store::erase_expired_citizens`).
pub async fn erasable_citizens(
    c: &mut PgConnection,
    cutoff: OffsetDateTime,
    include_enabled: bool,
    limit: u32,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT fiscal_code FROM citizen c WHERE ((NOT enabled AND cancellation < $1) OR ($2 AND updated_at < $1)) AND {ERASABLE} \
         ORDER BY fiscal_code LIMIT $3"
    )))
    .bind(pg_time(cutoff))
    .bind(include_enabled)
    .bind(i64::from(limit))
    .fetch_all(c)
    .await
}

/// Erase one citizen (see `cashback_store::ERASURE`) if still erasable; returns the audit event.
pub async fn erase_citizen(
    c: &mut PgConnection,
    cf: &str,
    cutoff: OffsetDateTime,
    include_enabled: bool,
) -> sqlx::Result<Step<Option<NewAuditEvent>>> {
    let still: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT fiscal_code FROM citizen c WHERE fiscal_code = $1 \
         AND ((NOT enabled AND cancellation < $2) OR ($3 AND updated_at < $2)) AND {ERASABLE} FOR UPDATE"
    )))
    .bind(cf)
    .bind(pg_time(cutoff))
    .bind(include_enabled)
    .fetch_optional(&mut *c)
    .await?;
    if still.is_none() {
        return Ok(Step::Done(None));
    }
    let mut n = [0u64; 4];
    for (i, sql) in [
        "DELETE FROM payment_instrument WHERE fiscal_code = $1",
        "UPDATE acquirer_transaction SET fiscal_code = NULL, ineligible = 'CITIZEN_NOT_ENABLED' \
         WHERE fiscal_code = $1 AND ineligible IS NULL",
        "DELETE FROM award WHERE fiscal_code = $1",
        "DELETE FROM complaint WHERE fiscal_code = $1",
        "DELETE FROM payment_instrument_history WHERE fiscal_code = $1",
        "DELETE FROM citizen_period WHERE fiscal_code = $1",
        "DELETE FROM citizen WHERE fiscal_code = $1",
    ]
    .into_iter()
    .enumerate()
    {
        let done = sqlx::query(sql).bind(cf).execute(&mut *c).await?.rows_affected();
        if let Some(slot) = n.get_mut(i) {
            *slot = done;
        }
    }
    Ok(Step::Done(Some(audit::events::citizen_erased(cf, n[0], n[1], n[2], n[3]))))
}

pub async fn withdraw_citizen(
    c: &mut PgConnection,
    cf: &FiscalCode,
    channel: &Channel,
    now: OffsetDateTime,
) -> sqlx::Result<Step<WithdrawOutcome>> {
    // Citizen first: no instrument can be enrolled for it until we commit.
    let enabled: Option<bool> = sqlx::query_scalar("SELECT enabled FROM citizen WHERE fiscal_code = $1 FOR UPDATE")
        .bind(cf.as_str())
        .fetch_optional(&mut *c)
        .await?;
    match enabled {
        None => return Ok(Step::Done(WithdrawOutcome::NotFound)),
        Some(false) => return Ok(Step::Done(WithdrawOutcome::AlreadyWithdrawn)),
        Some(true) => {}
    }
    // Then its active instruments, locked so the channel check and the updates see the same set.
    let channels: Vec<String> = sqlx::query_scalar(
        "SELECT channel FROM payment_instrument WHERE fiscal_code = $1 AND status = 'ACTIVE' ORDER BY hpan FOR UPDATE",
    )
    .bind(cf.as_str())
    .fetch_all(&mut *c)
    .await?;
    if enrollment::check_withdrawal_channels(channel, channels.iter().map(String::as_str)).is_err() {
        return Ok(Step::Done(WithdrawOutcome::TooManyChannels));
    }
    let now = pg_time(now);
    let hpans: Vec<String> = sqlx::query_scalar(
        "UPDATE payment_instrument SET status = 'INACTIVE', deactivation_date = $2, updated_at = $2 \
         WHERE fiscal_code = $1 AND status = 'ACTIVE' RETURNING hpan",
    )
    .bind(cf.as_str())
    .bind(now)
    .fetch_all(&mut *c)
    .await?;
    if !hpans.is_empty() {
        sqlx::query(
            "UPDATE payment_instrument_history SET deactivated_at = $2 WHERE hpan = ANY($1) AND deactivated_at IS NULL",
        )
        .bind(&hpans)
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    sqlx::query(
        "UPDATE citizen SET enabled = false, cancellation = $2, opt_in_status = 'NOREQ', payoff_instr = NULL, \
         payoff_instr_type = NULL, account_holder_cf = NULL, account_holder_name = NULL, account_holder_surname = NULL, \
         check_instr_status = NULL, technical_account_holder = NULL, issuer_card_id = NULL, updated_at = $2 \
         WHERE fiscal_code = $1",
    )
    .bind(cf.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?;
    // The citizen leaves every period's ranking (totals kept, disabled), in `seq` order.
    scoring_lock(&mut *c).await?;
    sqlx::query(
        "UPDATE citizen_period SET enabled = false, seq = nextval('citizen_period_seq'), updated_at = $2 \
         WHERE fiscal_code = $1 AND enabled",
    )
    .bind(cf.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(Step::Done(WithdrawOutcome::Withdrawn { instruments: hpans.len() as u64 }))
}

// ---- instruments ----

macro_rules! instrument_cols {
    () => {
        "hpan, fiscal_code, channel, status, activation_date, deactivation_date"
    };
}
pub(crate) use instrument_cols;

pub(crate) fn instrument_from_row(r: &PgRow) -> sqlx::Result<Instrument> {
    let hpan: String = r.try_get(0)?;
    let cf: String = r.try_get(1)?;
    let status: String = r.try_get(3)?;
    Ok(Instrument {
        hpan: Hpan::parse(&hpan).map_err(|e| decode_err(format!("bad hpan: {e}")))?,
        fiscal_code: fiscal_code(&cf)?,
        channel: r.try_get(2)?,
        status: InstrumentStatus::parse(&status).ok_or_else(|| decode_err(format!("bad status {status}")))?,
        activation_date: get_time(r, 4)?,
        deactivation_date: get_opt_time(r, 5)?,
    })
}

pub async fn get_instrument(c: &mut PgConnection, hpan: &Hpan) -> sqlx::Result<Option<Instrument>> {
    sqlx::query(concat!("SELECT ", instrument_cols!(), " FROM payment_instrument WHERE hpan = $1"))
        .bind(hpan.as_str())
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(instrument_from_row)
        .transpose()
}

async fn lock_instrument(c: &mut PgConnection, hpan: &Hpan) -> sqlx::Result<Option<Instrument>> {
    sqlx::query(concat!("SELECT ", instrument_cols!(), " FROM payment_instrument WHERE hpan = $1 FOR UPDATE"))
        .bind(hpan.as_str())
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(instrument_from_row)
        .transpose()
}

pub async fn enroll_instrument(
    c: &mut PgConnection,
    hpan: &Hpan,
    cf: &FiscalCode,
    channel: &Channel,
    now: OffsetDateTime,
) -> sqlx::Result<Step<EnrollInstrumentOutcome>> {
    // FOR SHARE: concurrent enrollments of one citizen proceed together; a withdrawal waits.
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM citizen WHERE fiscal_code = $1 FOR SHARE")
        .bind(cf.as_str())
        .fetch_optional(&mut *c)
        .await?
        .unwrap_or(false);
    let existing = lock_instrument(c, hpan).await?;
    let state = existing.as_ref().map(|i| InstrumentState { owner: i.fiscal_code.as_str(), status: i.status });
    let now = pg_time(now);
    let decision = match enrollment::decide_instrument_enroll(enabled, state, cf.as_str()) {
        Err(InstrumentEnrollRefusal::CitizenNotEnabled) => {
            return Ok(Step::Done(EnrollInstrumentOutcome::CitizenNotEnabled));
        }
        Err(InstrumentEnrollRefusal::OwnedByOther) => {
            return Ok(Step::Done(EnrollInstrumentOutcome::OwnedByOther));
        }
        Ok(InstrumentEnrollDecision::AlreadyActive) => {
            let i = existing.expect("already active implies existing");
            return Ok(Step::Done(EnrollInstrumentOutcome::AlreadyActive(i)));
        }
        Ok(d) => d,
    };
    if decision == InstrumentEnrollDecision::Insert {
        let inserted = sqlx::query(
            "INSERT INTO payment_instrument (hpan, fiscal_code, channel, status, activation_date, deactivation_date, updated_at) \
             VALUES ($1, $2, $3, 'ACTIVE', $4, NULL, $4) ON CONFLICT (hpan) DO NOTHING",
        )
        .bind(hpan.as_str())
        .bind(cf.as_str())
        .bind(channel.as_str())
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Someone enrolled this new hpan first (and has committed): decide again.
            return Ok(Step::Retry);
        }
    } else {
        sqlx::query(
            "UPDATE payment_instrument SET fiscal_code = $2, channel = $3, status = 'ACTIVE', activation_date = $4, \
             deactivation_date = NULL, updated_at = $4 WHERE hpan = $1",
        )
        .bind(hpan.as_str())
        .bind(cf.as_str())
        .bind(channel.as_str())
        .bind(now)
        .execute(&mut *c)
        .await?;
    }
    sqlx::query(
        "INSERT INTO payment_instrument_history (hpan, fiscal_code, channel, activated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(hpan.as_str())
    .bind(cf.as_str())
    .bind(channel.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(Step::Done(EnrollInstrumentOutcome::Activated(Instrument {
        hpan: hpan.clone(),
        fiscal_code: cf.clone(),
        channel: channel.as_str().to_owned(),
        status: InstrumentStatus::Active,
        activation_date: now,
        deactivation_date: None,
    })))
}

pub async fn delete_instrument(
    c: &mut PgConnection,
    hpan: &Hpan,
    cf: Option<&FiscalCode>,
    now: OffsetDateTime,
) -> sqlx::Result<Step<DeleteInstrumentOutcome>> {
    let existing = lock_instrument(c, hpan).await?;
    let state = existing.as_ref().map(|i| InstrumentState { owner: i.fiscal_code.as_str(), status: i.status });
    let outcome = match enrollment::decide_instrument_delete(state, cf.map(FiscalCode::as_str)) {
        Err(InstrumentDeleteRefusal::NotFound) => DeleteInstrumentOutcome::NotFound,
        Err(InstrumentDeleteRefusal::OwnedByOther) => DeleteInstrumentOutcome::OwnedByOther,
        Ok(InstrumentDeleteDecision::AlreadyInactive) => DeleteInstrumentOutcome::AlreadyInactive,
        Ok(InstrumentDeleteDecision::Deactivate) => {
            let now = pg_time(now);
            sqlx::query(
                "UPDATE payment_instrument SET status = 'INACTIVE', deactivation_date = $2, updated_at = $2 WHERE hpan = $1",
            )
            .bind(hpan.as_str())
            .bind(now)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "UPDATE payment_instrument_history SET deactivated_at = $2 WHERE hpan = $1 AND deactivated_at IS NULL",
            )
            .bind(hpan.as_str())
            .bind(now)
            .execute(&mut *c)
            .await?;
            DeleteInstrumentOutcome::Deactivated
        }
    };
    Ok(Step::Done(outcome))
}

pub async fn count_active_instruments(c: &mut PgConnection, cf: &FiscalCode) -> sqlx::Result<Vec<ChannelCount>> {
    // COLLATE "C": byte order, as SQLite sorts, whatever the database's default collation.
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT channel, COUNT(*) FROM payment_instrument WHERE fiscal_code = $1 AND status = 'ACTIVE' \
         GROUP BY channel ORDER BY channel COLLATE \"C\"",
    )
    .bind(cf.as_str())
    .fetch_all(c)
    .await?;
    Ok(rows.into_iter().map(|(channel, n)| ChannelCount { channel, count: n as u64 }).collect())
}

pub async fn instrument_history(c: &mut PgConnection, hpan: &Hpan) -> sqlx::Result<Vec<ActivationWindow>> {
    let rows = sqlx::query(
        "SELECT fiscal_code, channel, activated_at, deactivated_at FROM payment_instrument_history \
         WHERE hpan = $1 ORDER BY activated_at, id",
    )
    .bind(hpan.as_str())
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            let cf: String = r.try_get(0)?;
            Ok(ActivationWindow {
                hpan: hpan.clone(),
                fiscal_code: fiscal_code(&cf)?,
                channel: r.try_get(1)?,
                from: get_time(r, 2)?,
                to: get_opt_time(r, 3)?,
            })
        })
        .collect()
}

// ---- award periods ----

pub async fn list_award_periods(c: &mut PgConnection) -> sqlx::Result<Vec<AwardPeriod>> {
    let rows = sqlx::query(
        "SELECT award_period_id, start_date, end_date, grace_period_days, min_transaction_number, max_amount_cents, \
         min_position, max_transaction_cashback_cents, max_period_cashback_cents, cashback_percentage, \
         max_transaction_evaluated_cents, min_amount_cents, max_payments_per_merchant_day, reversal_retention_us \
         FROM award_period ORDER BY award_period_id",
    )
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AwardPeriod {
                id: r.try_get(0)?,
                start: r.try_get(1)?,
                end: r.try_get(2)?,
                grace_period_days: get_u32(r, 3)?,
                min_transaction_number: get_u32(r, 4)?,
                max_amount: Money::from_cents(r.try_get(5)?),
                min_position: get_u32(r, 6)?,
                max_transaction_cashback: Money::from_cents(r.try_get(7)?),
                max_period_cashback: Money::from_cents(r.try_get(8)?),
                cashback_percentage: get_u32(r, 9)?,
                max_transaction_evaluated: Money::from_cents(r.try_get(10)?),
                scoring: ScoringRules {
                    min_amount: r.try_get::<Option<i64>, _>(11)?.map(Money::from_cents),
                    max_payments_per_merchant_day: r
                        .try_get::<Option<i32>, _>(12)?
                        .map(|v| {
                            u32::try_from(v).map_err(|_| decode_err(format!("bad max_payments_per_merchant_day {v}")))
                        })
                        .transpose()?,
                    reversal_retention_us: r.try_get(13)?,
                },
            })
        })
        .collect()
}

macro_rules! insert_award_period {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO award_period (award_period_id, start_date, end_date, grace_period_days, min_transaction_number, \
             max_amount_cents, min_position, max_transaction_cashback_cents, max_period_cashback_cents, \
             cashback_percentage, max_transaction_evaluated_cents, min_amount_cents, \
             max_payments_per_merchant_day, reversal_retention_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ",
            $on_conflict
        )
    };
}

/// Insert a period; with `replace`, overwrite an existing one. Returns rows written.
pub async fn upsert_award_period(c: &mut PgConnection, p: &AwardPeriod, replace: bool) -> sqlx::Result<u64> {
    let sql = if replace {
        insert_award_period!(
            "ON CONFLICT (award_period_id) DO UPDATE SET start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date, \
             grace_period_days = EXCLUDED.grace_period_days, min_transaction_number = EXCLUDED.min_transaction_number, \
             max_amount_cents = EXCLUDED.max_amount_cents, min_position = EXCLUDED.min_position, \
             max_transaction_cashback_cents = EXCLUDED.max_transaction_cashback_cents, \
             max_period_cashback_cents = EXCLUDED.max_period_cashback_cents, \
             cashback_percentage = EXCLUDED.cashback_percentage, \
             max_transaction_evaluated_cents = EXCLUDED.max_transaction_evaluated_cents, \
             min_amount_cents = EXCLUDED.min_amount_cents, \
             max_payments_per_merchant_day = EXCLUDED.max_payments_per_merchant_day, \
             reversal_retention_us = EXCLUDED.reversal_retention_us"
        )
    } else {
        insert_award_period!("ON CONFLICT (award_period_id) DO NOTHING")
    };
    Ok(sqlx::query(sql)
        .bind(p.id)
        .bind(p.start)
        .bind(p.end)
        .bind(i64::from(p.grace_period_days))
        .bind(i64::from(p.min_transaction_number))
        .bind(p.max_amount.cents())
        .bind(i64::from(p.min_position))
        .bind(p.max_transaction_cashback.cents())
        .bind(p.max_period_cashback.cents())
        .bind(i64::from(p.cashback_percentage))
        .bind(p.max_transaction_evaluated.cents())
        .bind(p.scoring.min_amount.map(|m| m.cents()))
        .bind(p.scoring.max_payments_per_merchant_day.map(|v| i32::try_from(v).unwrap_or(i32::MAX)))
        .bind(p.scoring.reversal_retention_us)
        .execute(c)
        .await?
        .rows_affected())
}

pub async fn seed_award_periods(c: &mut PgConnection, periods: &[AwardPeriod]) -> sqlx::Result<Step<u64>> {
    let mut n = 0;
    for p in periods {
        n += upsert_award_period(&mut *c, p, false).await?;
    }
    Ok(Step::Done(n))
}

// ---- credentials ----

macro_rules! credential_cols {
    () => {
        "id, kind, scope, key_sha256, created_at, revoked_at, client_cert_sha256"
    };
}

fn credential_from_row(r: &PgRow) -> sqlx::Result<Credential> {
    let kind: String = r.try_get(1)?;
    Ok(Credential {
        id: r.try_get(0)?,
        kind: CredentialKind::parse(&kind).ok_or_else(|| decode_err(format!("bad kind {kind}")))?,
        scope: r.try_get(2)?,
        key_sha256: r.try_get(3)?,
        created_at: get_time(r, 4)?,
        revoked_at: get_opt_time(r, 5)?,
        client_cert_sha256: r.try_get(6)?,
    })
}

pub async fn insert_credential(c: &mut PgConnection, cr: &Credential) -> sqlx::Result<()> {
    sqlx::query(concat!("INSERT INTO credential (", credential_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"))
        .bind(&cr.id)
        .bind(cr.kind.as_str())
        .bind(&cr.scope)
        .bind(&cr.key_sha256)
        .bind(pg_time(cr.created_at))
        .bind(cr.revoked_at.map(pg_time))
        .bind(&cr.client_cert_sha256)
        .execute(c)
        .await?;
    Ok(())
}

pub async fn find_credential(c: &mut PgConnection, key_sha256: &str) -> sqlx::Result<Option<Credential>> {
    sqlx::query(concat!("SELECT ", credential_cols!(), " FROM credential WHERE key_sha256 = $1"))
        .bind(key_sha256)
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(credential_from_row)
        .transpose()
}

pub async fn list_credentials(c: &mut PgConnection) -> sqlx::Result<Vec<Credential>> {
    sqlx::query(concat!("SELECT ", credential_cols!(), " FROM credential ORDER BY created_at, id COLLATE \"C\""))
        .fetch_all(c)
        .await?
        .iter()
        .map(credential_from_row)
        .collect()
}

pub async fn bind_client_cert(c: &mut PgConnection, id: &str, cert_sha256: Option<&str>) -> sqlx::Result<bool> {
    Ok(sqlx::query("UPDATE credential SET client_cert_sha256 = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(cert_sha256)
        .execute(c)
        .await?
        .rows_affected()
        > 0)
}

pub async fn revoke_credential(c: &mut PgConnection, id: &str, now: OffsetDateTime) -> sqlx::Result<bool> {
    Ok(sqlx::query("UPDATE credential SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(pg_time(now))
        .execute(c)
        .await?
        .rows_affected()
        > 0)
}

// ---- acquirer files and transactions ----
//
// Lock order: the file row (`FOR UPDATE`), then transaction rows in `dedup_key` order. A chunk
// holds its file's row for the whole transaction, so chunks of one file, its restart and its
// finish are serialised; rows are inserted sorted by key, so two chunks with overlapping keys
// (the same data in two files, ingested by two nodes) wait on each other without deadlocking.

macro_rules! file_cols {
    () => {
        "id, name, abi, size, sha256, checksum, status, received_at, finished_at, last_line, \
         accepted, ineligible, duplicates, rejected, error"
    };
}

/// How many columns `file_cols!` lists (extra columns of a query follow them).
const FILE_COLS: usize = 15;

pub(crate) fn get_u64(r: &PgRow, i: usize) -> sqlx::Result<u64> {
    let v: i64 = r.try_get(i)?;
    u64::try_from(v).map_err(|_| decode_err(format!("column {i}: {v} is negative")))
}

fn file_from_row(r: &PgRow) -> sqlx::Result<AcquirerFile> {
    let status: String = r.try_get(6)?;
    Ok(AcquirerFile {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        abi: r.try_get(2)?,
        size: get_u64(r, 3)?,
        sha256: r.try_get(4)?,
        checksum: r.try_get(5)?,
        status: FileStatus::parse(&status).ok_or_else(|| decode_err(format!("bad file status {status}")))?,
        received_at: get_time(r, 7)?,
        finished_at: get_opt_time(r, 8)?,
        last_line: get_u64(r, 9)?,
        counts: FileCounts {
            accepted: get_u64(r, 10)?,
            ineligible: get_u64(r, 11)?,
            duplicates: get_u64(r, 12)?,
            rejected: get_u64(r, 13)?,
        },
        error: r.try_get(14)?,
    })
}

fn unknown_file(id: i64) -> sqlx::Error {
    sqlx::Error::InvalidArgument(format!("unknown acquirer file id {id}"))
}

fn db_u64(v: u64) -> sqlx::Result<i64> {
    i64::try_from(v).map_err(|_| sqlx::Error::InvalidArgument(format!("{v} does not fit in bigint")))
}

pub async fn get_acquirer_file(c: &mut PgConnection, name: &str) -> sqlx::Result<Option<AcquirerFile>> {
    sqlx::query(concat!("SELECT ", file_cols!(), " FROM acquirer_file WHERE name = $1"))
        .bind(name)
        .fetch_optional(c)
        .await?
        .as_ref()
        .map(file_from_row)
        .transpose()
}

/// Files of one acquirer (`Some(abi)`) or of all of them, most recently received first.
pub async fn list_acquirer_files(
    c: &mut PgConnection,
    abi: Option<&str>,
    limit: u32,
) -> sqlx::Result<Vec<AcquirerFile>> {
    let query = match abi {
        Some(abi) => sqlx::query(concat!(
            "SELECT ",
            file_cols!(),
            " FROM acquirer_file WHERE abi = $1 ORDER BY received_at DESC, id DESC LIMIT $2"
        ))
        .bind(abi),
        None => sqlx::query(concat!(
            "SELECT ",
            file_cols!(),
            " FROM acquirer_file ORDER BY received_at DESC, id DESC LIMIT $1"
        )),
    };
    // The limit is the last parameter of both statements.
    query.bind(i64::from(limit)).fetch_all(c).await?.iter().map(file_from_row).collect()
}

pub async fn active_hpans(c: &mut PgConnection, after: Option<&Hpan>, limit: u32) -> sqlx::Result<Vec<Hpan>> {
    sqlx::query_scalar::<_, String>(
        "SELECT hpan FROM payment_instrument WHERE hpan > $1 AND status = 'ACTIVE' ORDER BY hpan LIMIT $2",
    )
    .bind(after.map(|h| h.as_str()).unwrap_or(""))
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?
    .iter()
    .map(|h| Hpan::parse(h).map_err(|e| decode_err(format!("stored hpan: {e}"))))
    .collect()
}

/// This node's claims on the acquirer files it ingests (migration 0007).
#[derive(Debug, Clone)]
pub struct Claim {
    /// Who claims: unique per process.
    pub node: String,
    /// How long a claim lasts without being renewed, in milliseconds.
    pub lease_ms: i64,
}

/// A file claimed by another node whose lease has not run out.
#[derive(Debug)]
pub struct HeldElsewhere {
    pub node: String,
    pub remaining_ms: i64,
}

/// This node's claim on a file was taken over by another node (its lease had run out).
#[derive(Debug)]
pub struct ClaimLost {
    pub node: Option<String>,
}

/// Register a file by name and claim it for this node. Two nodes beginning the same new file
/// race on the unique name: the loser's insert waits for the winner's commit, inserts nothing,
/// and then reads (and locks) the winner's row, which is PROCESSING and claimed by the winner: it
/// is told to retry once the lease has run out ([`HeldElsewhere`]). A PROCESSING file whose claim
/// is this node's, has no claim, or whose lease has run out (its node died) is taken over and
/// resumed after its last committed line. A FAILED file is restarted under its row lock, so only
/// one of several concurrent callers sees it FAILED. Leases are measured on the database's clock.
pub async fn begin_acquirer_file(
    c: &mut PgConnection,
    f: &NewAcquirerFile,
    now: OffsetDateTime,
    claim: &Claim,
) -> sqlx::Result<Step<Result<BeginFile, HeldElsewhere>>> {
    let now = pg_time(now);
    let size = db_u64(f.size)?;
    let inserted = sqlx::query(concat!(
        "INSERT INTO acquirer_file (name, abi, size, sha256, status, received_at, claimed_by, lease_until) \
         VALUES ($1, $2, $3, $4, 'PROCESSING', $5, $6, clock_timestamp() + $7 * interval '1 millisecond') \
         ON CONFLICT (name) DO NOTHING RETURNING ",
        file_cols!()
    ))
    .bind(&f.name)
    .bind(&f.abi)
    .bind(size)
    .bind(&f.sha256)
    .bind(now)
    .bind(&claim.node)
    .bind(claim.lease_ms)
    .fetch_optional(&mut *c)
    .await?;
    if let Some(row) = inserted {
        return Ok(Step::Done(Ok(BeginFile::Started(file_from_row(&row)?))));
    }
    let existing = sqlx::query(concat!(
        "SELECT ",
        file_cols!(),
        ", claimed_by, (extract(epoch FROM lease_until - clock_timestamp()) * 1000)::bigint \
         FROM acquirer_file WHERE name = $1 FOR UPDATE"
    ))
    .bind(&f.name)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = existing else {
        // Files are never deleted; should one vanish in between, decide again.
        return Ok(Step::Retry);
    };
    let existing = file_from_row(&row)?;
    let holder: Option<String> = row.try_get(FILE_COLS)?;
    let remaining_ms: Option<i64> = row.try_get(FILE_COLS + 1)?;
    match existing.status {
        FileStatus::Done => Ok(Step::Done(Ok(BeginFile::AlreadyDone(existing)))),
        FileStatus::Processing => {
            if let (Some(node), Some(remaining_ms)) = (holder, remaining_ms)
                && node != claim.node
                && remaining_ms > 0
            {
                return Ok(Step::Done(Err(HeldElsewhere { node, remaining_ms })));
            }
            // Ours, unclaimed, or its node stopped renewing: take it over and resume.
            renew_claim(&mut *c, existing.id, claim).await?;
            Ok(Step::Done(Ok(BeginFile::Resume(existing))))
        }
        FileStatus::Failed => {
            // Failed at file level: nothing of it was stored; start afresh.
            sqlx::query("DELETE FROM file_rejection WHERE file_id = $1").bind(existing.id).execute(&mut *c).await?;
            let row = sqlx::query(concat!(
                "UPDATE acquirer_file SET abi = $2, size = $3, sha256 = $4, checksum = NULL, status = 'PROCESSING', \
                 received_at = $5, finished_at = NULL, last_line = 0, accepted = 0, ineligible = 0, duplicates = 0, \
                 rejected = 0, error = NULL, claimed_by = $6, lease_until = clock_timestamp() + $7 * interval '1 millisecond' \
                 WHERE id = $1 RETURNING ",
                file_cols!()
            ))
            .bind(existing.id)
            .bind(&f.abi)
            .bind(size)
            .bind(&f.sha256)
            .bind(now)
            .bind(&claim.node)
            .bind(claim.lease_ms)
            .fetch_one(&mut *c)
            .await?;
            Ok(Step::Done(Ok(BeginFile::Started(file_from_row(&row)?))))
        }
    }
}

/// Claim (or renew this node's claim on) a file whose row the caller has locked.
async fn renew_claim(c: &mut PgConnection, file_id: i64, claim: &Claim) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE acquirer_file SET claimed_by = $2, lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
         WHERE id = $1",
    )
    .bind(file_id)
    .bind(&claim.node)
    .bind(claim.lease_ms)
    .execute(c)
    .await?;
    Ok(())
}

/// Lock a file's row and check that this node still holds its claim (another node takes a
/// file over only once the lease has run out). `None`: no such file.
async fn lock_claimed_file(
    c: &mut PgConnection,
    file_id: i64,
    claim: &Claim,
) -> sqlx::Result<Option<Result<(), ClaimLost>>> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT status, claimed_by FROM acquirer_file WHERE id = $1 FOR UPDATE")
            .bind(file_id)
            .fetch_optional(&mut *c)
            .await?;
    Ok(row.map(|(status, holder)| match holder {
        Some(node) if node != claim.node && status == FileStatus::Processing.as_str() => {
            Err(ClaimLost { node: Some(node) })
        }
        _ => Ok(()),
    }))
}

/// The rows of a chunk as column arrays (one bind per column, whatever the number of rows),
/// built once before the transaction so a retried attempt reuses them.
///
/// Rows repeating a key seen earlier in the same chunk are left out here and counted as
/// duplicates: the first occurrence wins, as when rows are inserted one by one.
pub struct ChunkArrays<'a> {
    in_chunk_duplicates: u64,
    dedup_key: Vec<[u8; 16]>,
    line: Vec<i64>,
    hpan: Vec<[u8; 32]>,
    fiscal_code: Vec<Option<&'a str>>,
    award_period_id: Vec<Option<i64>>,
    ineligible: Vec<Option<&'static str>>,
    trx_at: Vec<OffsetDateTime>,
    trx_offset: Vec<i32>,
    reversal: Vec<bool>,
    amount_cents: Vec<i64>,
    circuit_type: Vec<i16>,
    sender_code: Vec<&'a str>,
    acquirer_id: Vec<&'a str>,
    merchant_id: Vec<&'a str>,
    terminal_id: Vec<&'a str>,
    id_trx_acquirer: Vec<&'a str>,
    id_trx_issuer: Vec<Option<&'a str>>,
    correlation_id: Vec<Option<&'a str>>,
    bin: Vec<&'a str>,
    mcc: Vec<Option<&'a str>>,
    pos_type: Vec<Option<i16>>,
    par: Vec<Option<&'a str>>,
    rejection_line: Vec<i64>,
    rejection_field: Vec<&'a str>,
    rejection_reason: Vec<&'a str>,
}

impl<'a> ChunkArrays<'a> {
    pub fn new(chunk: &'a IngestChunk) -> sqlx::Result<Self> {
        let n = chunk.rows.len();
        let mut a = ChunkArrays {
            in_chunk_duplicates: 0,
            dedup_key: Vec::with_capacity(n),
            line: Vec::with_capacity(n),
            hpan: Vec::with_capacity(n),
            fiscal_code: Vec::with_capacity(n),
            award_period_id: Vec::with_capacity(n),
            ineligible: Vec::with_capacity(n),
            trx_at: Vec::with_capacity(n),
            trx_offset: Vec::with_capacity(n),
            reversal: Vec::with_capacity(n),
            amount_cents: Vec::with_capacity(n),
            circuit_type: Vec::with_capacity(n),
            sender_code: Vec::with_capacity(n),
            acquirer_id: Vec::with_capacity(n),
            merchant_id: Vec::with_capacity(n),
            terminal_id: Vec::with_capacity(n),
            id_trx_acquirer: Vec::with_capacity(n),
            id_trx_issuer: Vec::with_capacity(n),
            correlation_id: Vec::with_capacity(n),
            bin: Vec::with_capacity(n),
            mcc: Vec::with_capacity(n),
            pos_type: Vec::with_capacity(n),
            par: Vec::with_capacity(n),
            rejection_line: Vec::with_capacity(chunk.rejections.len()),
            rejection_field: Vec::with_capacity(chunk.rejections.len()),
            rejection_reason: Vec::with_capacity(chunk.rejections.len()),
        };
        let mut seen = std::collections::HashSet::with_capacity(n);
        for t in &chunk.rows {
            if !seen.insert(t.dedup_key) {
                a.in_chunk_duplicates += 1;
                continue;
            }
            a.dedup_key.push(t.dedup_key);
            a.line.push(db_u64(t.line)?);
            a.hpan.push(t.hpan.to_bytes());
            a.fiscal_code.push(t.fiscal_code.as_ref().map(FiscalCode::as_str));
            a.award_period_id.push(t.award_period_id);
            a.ineligible.push(t.ineligible.map(|r| r.code()));
            a.trx_at.push(pg_time(t.at));
            a.trx_offset.push(t.at.offset().whole_seconds());
            a.reversal.push(t.reversal);
            a.amount_cents.push(t.amount_cents);
            a.circuit_type.push(i16::from(t.circuit_type));
            a.sender_code.push(&t.sender_code);
            a.acquirer_id.push(&t.acquirer_id);
            a.merchant_id.push(&t.merchant_id);
            a.terminal_id.push(&t.terminal_id);
            a.id_trx_acquirer.push(&t.id_trx_acquirer);
            a.id_trx_issuer.push(t.id_trx_issuer.as_deref());
            a.correlation_id.push(t.correlation_id.as_deref());
            a.bin.push(&t.bin);
            a.mcc.push(t.mcc.as_deref());
            a.pos_type.push(t.pos_type.map(i16::from));
            a.par.push(t.par.as_deref());
        }
        for r in &chunk.rejections {
            a.rejection_line.push(db_u64(r.line)?);
            a.rejection_field.push(&r.field);
            a.rejection_reason.push(&r.reason);
        }
        Ok(a)
    }
}

/// Store one chunk: rows, rejections and the file's progress, in the caller's transaction.
///
/// Rows go in with one statement: the columns are bound as arrays and unnested; ids are drawn in
/// chunk order (so "oldest first" breaks ties by ingestion order, as in SQLite), then rows are
/// inserted in key order with `ON CONFLICT (dedup_key) DO NOTHING`, and only the inserted rows
/// are counted, split by eligibility. Whatever was not inserted is a duplicate.
pub async fn ingest_chunk(
    c: &mut PgConnection,
    file_id: i64,
    chunk: &IngestChunk,
    a: &ChunkArrays<'_>,
    claim: &Claim,
) -> sqlx::Result<Step<Result<ChunkOutcome, ClaimLost>>> {
    match lock_claimed_file(&mut *c, file_id, claim).await? {
        None => return Err(unknown_file(file_id)),
        Some(Err(lost)) => return Ok(Step::Done(Err(lost))),
        Some(Ok(())) => {}
    }
    let mut out = ChunkOutcome { duplicates: a.in_chunk_duplicates, ..Default::default() };
    if !a.dedup_key.is_empty() {
        let (eligible, ineligible): (i64, i64) = sqlx::query_as(
            "WITH src AS MATERIALIZED ( \
                 SELECT nextval('acquirer_transaction_id_seq') AS id, u.* \
                 FROM UNNEST($2::bytea[], $3::int8[], $4::bytea[], $5::text[], $6::int8[], $7::text[], \
                             $8::timestamptz[], $9::int4[], $10::bool[], $11::int8[], $12::int2[], $13::text[], \
                             $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], \
                             $20::text[], $21::text[], $22::int2[], $23::text[]) \
                   AS u(dedup_key, line, hpan, fiscal_code, award_period_id, ineligible, trx_at, trx_offset, \
                        reversal, amount_cents, circuit_type, sender_code, acquirer_id, merchant_id, terminal_id, \
                        id_trx_acquirer, id_trx_issuer, correlation_id, bin, mcc, pos_type, par) \
             ), ins AS ( \
                 INSERT INTO acquirer_transaction (id, dedup_key, file_id, line, hpan, fiscal_code, award_period_id, \
                     ineligible, trx_at, trx_offset, reversal, amount_cents, circuit_type, sender_code, acquirer_id, \
                     merchant_id, terminal_id, id_trx_acquirer, id_trx_issuer, correlation_id, bin, mcc, pos_type, par) \
                 SELECT id, dedup_key, $1, line, hpan, fiscal_code, award_period_id, ineligible, trx_at, trx_offset, \
                     reversal, amount_cents, circuit_type, sender_code, acquirer_id, merchant_id, terminal_id, \
                     id_trx_acquirer, id_trx_issuer, correlation_id, bin, mcc, pos_type, par \
                 FROM src ORDER BY dedup_key \
                 ON CONFLICT (dedup_key) DO NOTHING \
                 RETURNING ineligible IS NULL AS eligible \
             ) \
             SELECT count(*) FILTER (WHERE eligible), count(*) FILTER (WHERE NOT eligible) FROM ins",
        )
        .bind(file_id)
        .bind(&a.dedup_key)
        .bind(&a.line)
        .bind(&a.hpan)
        .bind(&a.fiscal_code)
        .bind(&a.award_period_id)
        .bind(&a.ineligible)
        .bind(&a.trx_at)
        .bind(&a.trx_offset)
        .bind(&a.reversal)
        .bind(&a.amount_cents)
        .bind(&a.circuit_type)
        .bind(&a.sender_code)
        .bind(&a.acquirer_id)
        .bind(&a.merchant_id)
        .bind(&a.terminal_id)
        .bind(&a.id_trx_acquirer)
        .bind(&a.id_trx_issuer)
        .bind(&a.correlation_id)
        .bind(&a.bin)
        .bind(&a.mcc)
        .bind(&a.pos_type)
        .bind(&a.par)
        .fetch_one(&mut *c)
        .await?;
        out.accepted = eligible as u64;
        out.ineligible = ineligible as u64;
        out.duplicates += a.dedup_key.len() as u64 - out.accepted - out.ineligible;
    }
    let rejected = if a.rejection_line.is_empty() {
        0
    } else {
        // A line already reported (or repeated in this chunk) is not counted again.
        sqlx::query(
            "INSERT INTO file_rejection (file_id, line, field, reason) \
             SELECT $1, u.line, u.field, u.reason FROM UNNEST($2::int8[], $3::text[], $4::text[]) \
               WITH ORDINALITY AS u(line, field, reason, ord) ORDER BY u.ord \
             ON CONFLICT DO NOTHING",
        )
        .bind(file_id)
        .bind(&a.rejection_line)
        .bind(&a.rejection_field)
        .bind(&a.rejection_reason)
        .execute(&mut *c)
        .await?
        .rows_affected()
    };
    sqlx::query(
        "UPDATE acquirer_file SET last_line = greatest(last_line, $2), accepted = accepted + $3, \
         ineligible = ineligible + $4, duplicates = duplicates + $5, rejected = rejected + $6, \
         checksum = coalesce(checksum, $7), claimed_by = $8, \
         lease_until = clock_timestamp() + $9 * interval '1 millisecond' WHERE id = $1",
    )
    .bind(file_id)
    .bind(db_u64(chunk.last_line)?)
    .bind(db_u64(out.accepted)?)
    .bind(db_u64(out.ineligible)?)
    .bind(db_u64(out.duplicates)?)
    .bind(db_u64(rejected)?)
    .bind(&chunk.checksum)
    .bind(&claim.node)
    .bind(claim.lease_ms)
    .execute(&mut *c)
    .await?;
    Ok(Step::Done(Ok(out)))
}

/// Finish a file in one transaction: when it is done, re-evaluate every (citizen, period) it
/// touched from all their rows (under the scoring lock, so totals rows commit in `seq` order),
/// then mark it. A file that is no longer PROCESSING is returned as is.
pub async fn finish_acquirer_file(
    c: &mut PgConnection,
    file_id: i64,
    error: Option<&str>,
    now: OffsetDateTime,
    claim: &Claim,
) -> sqlx::Result<Step<Result<AcquirerFile, ClaimLost>>> {
    if let Some(Err(lost)) = lock_claimed_file(&mut *c, file_id, claim).await? {
        return Ok(Step::Done(Err(lost)));
    }
    let current = sqlx::query(concat!("SELECT ", file_cols!(), " FROM acquirer_file WHERE id = $1 FOR UPDATE"))
        .bind(file_id)
        .fetch_optional(&mut *c)
        .await?
        .ok_or_else(|| unknown_file(file_id))?;
    let current = file_from_row(&current)?;
    if current.status != FileStatus::Processing {
        return Ok(Step::Done(Ok(current)));
    }
    if error.is_none() {
        score_file(&mut *c, file_id, now).await?;
    }
    let status = if error.is_some() { FileStatus::Failed } else { FileStatus::Done };
    let row = sqlx::query(concat!(
        "UPDATE acquirer_file SET status = $2, error = $3, finished_at = $4, lease_until = NULL WHERE id = $1 RETURNING ",
        file_cols!()
    ))
    .bind(file_id)
    .bind(status.as_str())
    .bind(error)
    .bind(pg_time(now))
    .fetch_optional(c)
    .await?
    .ok_or_else(|| unknown_file(file_id))?;
    Ok(Step::Done(Ok(file_from_row(&row)?)))
}

pub async fn file_rejections(c: &mut PgConnection, file_id: i64, limit: u32) -> sqlx::Result<Vec<Rejection>> {
    sqlx::query("SELECT line, field, reason FROM file_rejection WHERE file_id = $1 ORDER BY line LIMIT $2")
        .bind(file_id)
        .bind(i64::from(limit))
        .fetch_all(c)
        .await?
        .iter()
        .map(|r| Ok(Rejection { line: get_u64(r, 0)?, field: r.try_get(1)?, reason: r.try_get(2)? }))
        .collect()
}

macro_rules! trx_cols {
    () => {
        "dedup_key, line, hpan, fiscal_code, award_period_id, ineligible, trx_at, trx_offset, reversal, \
         amount_cents, circuit_type, sender_code, acquirer_id, merchant_id, terminal_id, id_trx_acquirer, \
         id_trx_issuer, correlation_id, bin, mcc, pos_type, par"
    };
}

fn get_u8(r: &PgRow, i: usize) -> sqlx::Result<u8> {
    let v: i16 = r.try_get(i)?;
    u8::try_from(v).map_err(|_| decode_err(format!("column {i}: {v} does not fit in u8")))
}

fn trx_from_row(r: &PgRow) -> sqlx::Result<StoredTransaction> {
    let key: &[u8] = r.try_get(0)?;
    let hpan: &[u8] = r.try_get(2)?;
    let hpan: &[u8; 32] = hpan.try_into().map_err(|_| decode_err(format!("hpan of {} bytes", hpan.len())))?;
    let cf: Option<&str> = r.try_get(3)?;
    let reason: Option<&str> = r.try_get(5)?;
    let offset_secs: i32 = r.try_get(7)?;
    let offset = UtcOffset::from_whole_seconds(offset_secs).map_err(|e| decode_err(e.to_string()))?;
    let pos_type: Option<i16> = r.try_get(20)?;
    Ok(StoredTransaction {
        dedup_key: key.try_into().map_err(|_| decode_err(format!("dedup key of {} bytes", key.len())))?,
        line: get_u64(r, 1)?,
        hpan: Hpan::from_bytes(hpan),
        fiscal_code: cf.map(fiscal_code).transpose()?,
        award_period_id: r.try_get(4)?,
        ineligible: reason
            .map(|s| Ineligible::parse(s).ok_or_else(|| decode_err(format!("bad ineligibility reason {s}"))))
            .transpose()?,
        at: r.try_get::<OffsetDateTime, _>(6)?.to_offset(offset),
        reversal: r.try_get(8)?,
        amount_cents: r.try_get(9)?,
        circuit_type: get_u8(r, 10)?,
        sender_code: r.try_get(11)?,
        acquirer_id: r.try_get(12)?,
        merchant_id: r.try_get(13)?,
        terminal_id: r.try_get(14)?,
        id_trx_acquirer: r.try_get(15)?,
        id_trx_issuer: r.try_get(16)?,
        correlation_id: r.try_get(17)?,
        bin: r.try_get(18)?,
        mcc: r.try_get(19)?,
        pos_type: pos_type
            .map(|v| u8::try_from(v).map_err(|_| decode_err(format!("pos_type {v} does not fit in u8"))))
            .transpose()?,
        par: r.try_get(21)?,
    })
}

pub async fn citizen_transactions(c: &mut PgConnection, cf: &FiscalCode) -> sqlx::Result<Vec<StoredTransaction>> {
    sqlx::query(concat!(
        "SELECT ",
        trx_cols!(),
        " FROM acquirer_transaction WHERE fiscal_code = $1 AND ineligible IS NULL ORDER BY trx_at, id"
    ))
    .bind(cf.as_str())
    .fetch_all(c)
    .await?
    .iter()
    .map(trx_from_row)
    .collect()
}

pub async fn instrument_transactions(c: &mut PgConnection, hpan: &Hpan) -> sqlx::Result<Vec<StoredTransaction>> {
    sqlx::query(concat!("SELECT ", trx_cols!(), " FROM acquirer_transaction WHERE hpan = $1 ORDER BY trx_at, id"))
        .bind(hpan.to_bytes())
        .fetch_all(c)
        .await?
        .iter()
        .map(trx_from_row)
        .collect()
}

/// Statement timeout of the snapshot queries: they stream every citizen and window, which takes
/// longer than the connection's default allows for operations.
pub(crate) const SNAPSHOT_STATEMENT_TIMEOUT: &str = "SET LOCAL statement_timeout = '10min'";

fn unix_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// Stream the rows of `query` into `each`, one at a time (nothing is collected first).
async fn for_each_row(
    c: &mut PgConnection,
    query: &'static str,
    mut each: impl FnMut(&PgRow) -> sqlx::Result<()>,
) -> sqlx::Result<()> {
    let mut rows = sqlx::query(query).fetch(c);
    // `BoxStream` is `Pin<Box<dyn Stream>>`: its `poll_next` is callable on the trait object.
    while let Some(row) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
        each(&row?)?;
    }
    Ok(())
}

/// Citizens and every activation window (closed ones and the open one of each active
/// instrument, each with its owner), read from one REPEATABLE READ snapshot and streamed into
/// the builder. Must be the first statements of the caller's transaction.
pub async fn load_enrollment_index(c: &mut PgConnection) -> sqlx::Result<Step<EnrollmentIndex>> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *c).await?;
    sqlx::query(SNAPSHOT_STATEMENT_TIMEOUT).execute(&mut *c).await?;
    let mut b = EnrollmentIndexBuilder::new();
    for_each_row(&mut *c, "SELECT fiscal_code, enabled, timestamp_tc FROM citizen", |r| {
        let cf: &str = r.try_get(0)?;
        let timestamp_tc: OffsetDateTime = r.try_get(2)?;
        b.citizen(cf, EligibilityCitizen { enabled: r.try_get(1)?, terms_accepted_us: unix_micros(timestamp_tc) });
        Ok(())
    })
    .await?;
    for_each_row(
        &mut *c,
        "SELECT decode(hpan, 'hex'), fiscal_code, activated_at, deactivated_at FROM payment_instrument_history",
        |r| {
            let key: &[u8] = r.try_get(0)?;
            let key: [u8; 32] = key.try_into().map_err(|_| decode_err(format!("hpan of {} bytes", key.len())))?;
            let from: OffsetDateTime = r.try_get(2)?;
            let to: Option<OffsetDateTime> = r.try_get(3)?;
            b.window(key, r.try_get(1)?, unix_micros(from), to.map(unix_micros));
            Ok(())
        },
    )
    .await?;
    if b.windows_without_owner() > 0 {
        tracing::warn!(
            count = b.windows_without_owner(),
            "activation windows whose owner is not a citizen were ignored"
        );
    }
    Ok(Step::Done(b.build()))
}

/// Operator bulk import (see `Store::import_enrollments`), in the caller's transaction: citizens
/// with one unnested `INSERT … ON CONFLICT DO NOTHING`, then instruments whose owner is an
/// enabled citizen (locked `FOR SHARE`, as an enrollment does, so a concurrent withdrawal waits),
/// inserted in hpan order with their open history window.
pub async fn import_enrollments(c: &mut PgConnection, batch: &EnrollmentImport) -> sqlx::Result<Step<ImportOutcome>> {
    // An operator task on up to MAX_IMPORT_BATCH rows: longer than the per-call default allows.
    sqlx::query("SET LOCAL statement_timeout = '5min'").execute(&mut *c).await?;
    let mut out = ImportOutcome::default();
    if !batch.citizens.is_empty() {
        let cf: Vec<&str> = batch.citizens.iter().map(|x| x.fiscal_code.as_str()).collect();
        let tc: Vec<OffsetDateTime> = batch.citizens.iter().map(|x| pg_time(x.terms_accepted_at)).collect();
        let ch: Vec<&str> = batch.citizens.iter().map(|x| x.channel.as_str()).collect();
        let iban: Vec<Option<&str>> = batch.citizens.iter().map(|x| x.iban.as_deref()).collect();
        let created: i64 = sqlx::query_scalar(
            "WITH ins AS ( \
                 INSERT INTO citizen (fiscal_code, enabled, timestamp_tc, opt_in_status, channel, payoff_instr, \
                 payoff_instr_type, created_at, updated_at) \
                 SELECT u.cf, true, u.tc, 'NOREQ', u.ch, u.iban, CASE WHEN u.iban IS NULL THEN NULL ELSE 'IBAN' END, u.tc, u.tc \
                 FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[]) AS u(cf, tc, ch, iban) \
                 ON CONFLICT (fiscal_code) DO NOTHING RETURNING 1 \
             ) SELECT count(*) FROM ins",
        )
        .bind(&cf)
        .bind(&tc)
        .bind(&ch)
        .bind(&iban)
        .fetch_one(&mut *c)
        .await?;
        out.citizens_created = created as u64;
        out.citizens_existing = batch.citizens.len() as u64 - out.citizens_created;
    }
    if !batch.instruments.is_empty() {
        let hpan: Vec<&str> = batch.instruments.iter().map(|x| x.hpan.as_str()).collect();
        let cf: Vec<&str> = batch.instruments.iter().map(|x| x.fiscal_code.as_str()).collect();
        let ch: Vec<&str> = batch.instruments.iter().map(|x| x.channel.as_str()).collect();
        let at: Vec<OffsetDateTime> = batch.instruments.iter().map(|x| pg_time(x.activated_at)).collect();
        let (owned, created): (i64, i64) = sqlx::query_as(
            "WITH src AS ( \
                 SELECT u.hpan, u.cf, u.ch, u.at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[]) \
                   AS u(hpan, cf, ch, at) \
             ), owners AS ( \
                 SELECT c.fiscal_code FROM citizen c \
                 WHERE c.fiscal_code IN (SELECT DISTINCT cf FROM src) AND c.enabled \
                 ORDER BY c.fiscal_code FOR SHARE \
             ), ok AS MATERIALIZED ( \
                 SELECT s.* FROM src s JOIN owners o ON o.fiscal_code = s.cf \
             ), ins AS ( \
                 INSERT INTO payment_instrument (hpan, fiscal_code, channel, status, activation_date, deactivation_date, updated_at) \
                 SELECT hpan, cf, ch, 'ACTIVE', at, NULL, at FROM ok ORDER BY hpan \
                 ON CONFLICT (hpan) DO NOTHING \
                 RETURNING hpan, fiscal_code, channel, activation_date \
             ), hist AS ( \
                 INSERT INTO payment_instrument_history (hpan, fiscal_code, channel, activated_at) \
                 SELECT hpan, fiscal_code, channel, activation_date FROM ins RETURNING 1 \
             ) SELECT (SELECT count(*) FROM ok), (SELECT count(*) FROM hist)",
        )
        .bind(&hpan)
        .bind(&cf)
        .bind(&ch)
        .bind(&at)
        .fetch_one(&mut *c)
        .await?;
        out.instruments_created = created as u64;
        out.instruments_existing = (owned - created) as u64;
        out.instruments_without_enabled_owner = batch.instruments.len() as u64 - owned as u64;
    }
    Ok(Step::Done(out))
}

// ---- cashback engine results (migration 0003) ----

/// Key of the advisory lock taken (to commit) by every transaction that writes `citizen_period`
/// ("scor" in ASCII): their `seq` values then become visible in increasing order.
const SCORING_LOCK: i64 = 0x7363_6f72;

async fn scoring_lock(c: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(SCORING_LOCK).execute(c).await?;
    Ok(())
}

/// Citizens re-evaluated per round trip when a file is finished.
const SCORE_BATCH: usize = 5_000;

async fn score_file(c: &mut PgConnection, file_id: i64, now: OffsetDateTime) -> sqlx::Result<()> {
    scoring_lock(&mut *c).await?;
    let periods = list_award_periods(&mut *c).await?;
    let pairs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT DISTINCT fiscal_code, award_period_id FROM acquirer_transaction \
         WHERE file_id = $1 AND ineligible IS NULL ORDER BY 1, 2",
    )
    .bind(file_id)
    .fetch_all(&mut *c)
    .await?;
    for batch in pairs.chunks(SCORE_BATCH) {
        let cfs: Vec<&str> = batch.iter().map(|(cf, _)| cf.as_str()).collect();
        let ps: Vec<i64> = batch.iter().map(|(_, p)| *p).collect();
        // Citizen number and enrollment.
        let citizens: std::collections::HashMap<String, (i64, bool)> =
            sqlx::query_as("SELECT fiscal_code, citizen_id, enabled FROM citizen WHERE fiscal_code = ANY($1)")
                .bind(&cfs)
                .fetch_all(&mut *c)
                .await?
                .into_iter()
                .map(|(cf, id, en): (String, i64, bool)| (cf, (id, en)))
                .collect();
        let rows = sqlx::query(
            "SELECT t.fiscal_code, t.award_period_id, t.dedup_key, t.trx_at, f.received_at, t.reversal, t.amount_cents, \
             t.hpan, t.acquirer_id, t.merchant_id, t.terminal_id, t.correlation_id, t.id_trx_acquirer, t.sender_code \
             FROM UNNEST($1::text[], $2::bigint[]) AS k (fiscal_code, award_period_id) \
             JOIN acquirer_transaction t ON t.fiscal_code = k.fiscal_code AND t.award_period_id = k.award_period_id \
               AND t.ineligible IS NULL \
             JOIN acquirer_file f ON f.id = t.file_id AND (f.status = 'DONE' OR f.id = $3) \
             JOIN citizen z ON z.fiscal_code = t.fiscal_code AND t.trx_at >= z.timestamp_tc",
        )
        .bind(&cfs)
        .bind(&ps)
        .bind(file_id)
        .fetch_all(&mut *c)
        .await?;
        let mut by_pair: std::collections::HashMap<(String, i64), Vec<ScoringRow>> = std::collections::HashMap::new();
        for r in &rows {
            let key: &[u8] = r.try_get(2)?;
            let hpan: &[u8] = r.try_get(7)?;
            let row = ScoringRow {
                input: TrxInput {
                    key: key.try_into().map_err(|_| decode_err("dedup key length"))?,
                    at_us: scoring::unix_us(r.try_get(3)?),
                    received_us: scoring::unix_us(r.try_get(4)?),
                    operation: if r.try_get(5)? { OperationType::Reversal } else { OperationType::Payment },
                    amount: Money::from_cents(r.try_get(6)?),
                    hpan: hpan.try_into().map_err(|_| decode_err("hpan length"))?,
                    acquirer_id: r.try_get(8)?,
                    merchant_id: r.try_get(9)?,
                    terminal_id: r.try_get(10)?,
                    correlation_id: r.try_get(11)?,
                },
                id_trx_acquirer: r.try_get(12)?,
                acquirer_code: r.try_get(13)?,
            };
            by_pair.entry((r.try_get(0)?, r.try_get(1)?)).or_default().push(row);
        }
        let mut out_cf = Vec::with_capacity(batch.len());
        let mut out_period = Vec::with_capacity(batch.len());
        let mut out_id = Vec::with_capacity(batch.len());
        let mut out_enabled = Vec::with_capacity(batch.len());
        let mut out_cashback = Vec::with_capacity(batch.len());
        let mut out_score = Vec::with_capacity(batch.len());
        let mut out_trx = Vec::with_capacity(batch.len());
        let mut out_last: Vec<Option<OffsetDateTime>> = Vec::with_capacity(batch.len());
        let mut out_min: Vec<Option<String>> = Vec::with_capacity(batch.len());
        let mut out_pivot: Vec<Option<String>> = Vec::with_capacity(batch.len());
        let mut out_pivot_cb: Vec<Option<i64>> = Vec::with_capacity(batch.len());
        for (cf, period_id) in batch {
            let Some(period) = periods.iter().find(|p| p.id == *period_id) else { continue };
            let Some(&(citizen_id, enabled)) = citizens.get(cf.as_str()) else { continue };
            let rows = by_pair.remove(&(cf.clone(), *period_id)).unwrap_or_default();
            let t = scoring::compute_totals(period, &rows);
            out_cf.push(cf.clone());
            out_period.push(*period_id);
            out_id.push(citizen_id);
            out_enabled.push(enabled);
            out_cashback.push(t.cashback.cents());
            out_score.push(t.score_total.cents());
            out_trx.push(i32::try_from(t.transactions).unwrap_or(i32::MAX));
            out_last.push(
                t.last_counted_us
                    .map(|us| OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000))
                    .transpose()
                    .map_err(|e| decode_err(e.to_string()))?,
            );
            out_min.push(t.id_trx_min_transaction);
            out_pivot.push(t.id_trx_pivot);
            out_pivot_cb.push(t.pivot_cashback.map(|m| m.cents()));
        }
        sqlx::query(
            "INSERT INTO citizen_period (fiscal_code, award_period_id, citizen_id, enabled, cashback_cents, \
             score_total_cents, transactions, last_counted_at, id_trx_min_transaction, id_trx_pivot, \
             pivot_cashback_cents, seq, updated_at) \
             SELECT cf, p, id, en, cb, sc, n, last, mn, pv, pvc, nextval('citizen_period_seq'), $12 \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::boolean[], $5::bigint[], $6::bigint[], \
                         $7::int[], $8::timestamptz[], $9::text[], $10::text[], $11::bigint[]) \
                  WITH ORDINALITY AS u (cf, p, id, en, cb, sc, n, last, mn, pv, pvc, ord) ORDER BY ord \
             ON CONFLICT (fiscal_code, award_period_id) DO UPDATE SET citizen_id = EXCLUDED.citizen_id, \
             enabled = EXCLUDED.enabled, cashback_cents = EXCLUDED.cashback_cents, \
             score_total_cents = EXCLUDED.score_total_cents, transactions = EXCLUDED.transactions, \
             last_counted_at = EXCLUDED.last_counted_at, id_trx_min_transaction = EXCLUDED.id_trx_min_transaction, \
             id_trx_pivot = EXCLUDED.id_trx_pivot, pivot_cashback_cents = EXCLUDED.pivot_cashback_cents, \
             seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at",
        )
        .bind(&out_cf)
        .bind(&out_period)
        .bind(&out_id)
        .bind(&out_enabled)
        .bind(&out_cashback)
        .bind(&out_score)
        .bind(&out_trx)
        .bind(&out_last)
        .bind(&out_min)
        .bind(&out_pivot)
        .bind(&out_pivot_cb)
        .bind(pg_time(now))
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

fn totals_from_row(r: &PgRow) -> sqlx::Result<PeriodTotals> {
    let citizen_id: i64 = r.try_get(1)?;
    let last: Option<OffsetDateTime> = r.try_get(6)?;
    Ok(PeriodTotals {
        award_period_id: r.try_get(0)?,
        citizen_id: u32::try_from(citizen_id).map_err(|_| decode_err(format!("citizen id {citizen_id} beyond u32")))?,
        enabled: r.try_get(2)?,
        cashback: Money::from_cents(r.try_get(3)?),
        score_total: Money::from_cents(r.try_get(4)?),
        transactions: u32::try_from(r.try_get::<i32, _>(5)?).map_err(|_| decode_err("negative transactions"))?,
        last_counted_us: last.map(scoring::unix_us),
        id_trx_min_transaction: r.try_get(7)?,
        id_trx_pivot: r.try_get(8)?,
        pivot_cashback: r.try_get::<Option<i64>, _>(9)?.map(Money::from_cents),
        seq: r.try_get(10)?,
        updated_at: get_time(r, 11)?,
    })
}

/// `None` for an unknown or withdrawn citizen, else the totals: one statement (the citizen row
/// joined with its totals).
pub async fn enabled_citizen_totals(c: &mut PgConnection, cf: &FiscalCode) -> sqlx::Result<Option<Vec<PeriodTotals>>> {
    let rows = sqlx::query(
        "SELECT p.award_period_id, p.citizen_id, p.enabled, p.cashback_cents, p.score_total_cents, p.transactions, \
         p.last_counted_at, p.id_trx_min_transaction, p.id_trx_pivot, p.pivot_cashback_cents, p.seq, p.updated_at, \
         z.enabled FROM citizen z LEFT JOIN citizen_period p ON p.fiscal_code = z.fiscal_code \
         WHERE z.fiscal_code = $1 ORDER BY p.award_period_id",
    )
    .bind(cf.as_str())
    .fetch_all(c)
    .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    if !first.try_get::<bool, _>(12)? {
        return Ok(None);
    }
    // A citizen without totals: one row of the LEFT JOIN's NULLs.
    rows.iter()
        .filter(|r| matches!(r.try_get::<Option<i64>, _>(0), Ok(Some(_))))
        .map(totals_from_row)
        .collect::<sqlx::Result<_>>()
        .map(Some)
}

pub async fn citizen_period_totals(c: &mut PgConnection, cf: &FiscalCode) -> sqlx::Result<Vec<PeriodTotals>> {
    sqlx::query(
        "SELECT award_period_id, citizen_id, enabled, cashback_cents, score_total_cents, transactions, last_counted_at, \
         id_trx_min_transaction, id_trx_pivot, pivot_cashback_cents, seq, updated_at \
         FROM citizen_period WHERE fiscal_code = $1 ORDER BY award_period_id",
    )
    .bind(cf.as_str())
    .fetch_all(c)
    .await?
    .iter()
    .map(totals_from_row)
    .collect()
}

pub async fn citizen_period_rows(c: &mut PgConnection, cf: &FiscalCode, period: i64) -> sqlx::Result<Vec<PeriodRow>> {
    sqlx::query(
        "SELECT t.dedup_key, t.line, t.hpan, t.fiscal_code, t.award_period_id, t.ineligible, t.trx_at, t.trx_offset, \
         t.reversal, t.amount_cents, t.circuit_type, t.sender_code, t.acquirer_id, t.merchant_id, t.terminal_id, \
         t.id_trx_acquirer, t.id_trx_issuer, t.correlation_id, t.bin, t.mcc, t.pos_type, t.par, f.received_at \
         FROM acquirer_transaction t JOIN acquirer_file f ON f.id = t.file_id AND f.status = 'DONE' \
         JOIN citizen z ON z.fiscal_code = t.fiscal_code \
         WHERE t.fiscal_code = $1 AND t.award_period_id = $2 AND t.ineligible IS NULL AND t.trx_at >= z.timestamp_tc \
         ORDER BY t.trx_at, t.id",
    )
    .bind(cf.as_str())
    .bind(period)
    .fetch_all(c)
    .await?
    .iter()
    .map(|r| Ok(PeriodRow { trx: trx_from_row(r)?, received_us: scoring::unix_us(r.try_get(22)?) }))
    .collect()
}

pub async fn standing_changes(c: &mut PgConnection, after: i64, limit: u32) -> sqlx::Result<Vec<StandingUpdate>> {
    sqlx::query(
        "SELECT seq, award_period_id, citizen_id, enabled, transactions, last_counted_at FROM citizen_period \
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(c)
    .await?
    .iter()
    .map(|r| {
        let citizen_id: i64 = r.try_get(2)?;
        let last: Option<OffsetDateTime> = r.try_get(5)?;
        Ok(StandingUpdate {
            seq: r.try_get(0)?,
            award_period_id: r.try_get(1)?,
            citizen_id: u32::try_from(citizen_id)
                .map_err(|_| decode_err(format!("citizen id {citizen_id} beyond u32")))?,
            enabled: r.try_get(3)?,
            standing: Standing {
                count: u32::try_from(r.try_get::<i32, _>(4)?).map_err(|_| decode_err("negative transactions"))?,
                last_us: last.map(scoring::unix_us),
            },
        })
    })
    .collect()
}

pub async fn import_period_totals(
    c: &mut PgConnection,
    period: i64,
    rows: &[ImportedTotals],
    now: OffsetDateTime,
) -> sqlx::Result<Step<TotalsImportOutcome>> {
    sqlx::query("SET LOCAL statement_timeout = '5min'").execute(&mut *c).await?;
    // Sequence numbers must become visible in order (see `scoring_lock`).
    scoring_lock(&mut *c).await?;
    let cf: Vec<&str> = rows.iter().map(|r| r.fiscal_code.as_str()).collect();
    let cb: Vec<i64> = rows.iter().map(|r| r.cashback.cents()).collect();
    let sc: Vec<i64> = rows.iter().map(|r| r.score_total.cents()).collect();
    let n: Vec<i32> = rows.iter().map(|r| r.transactions.min(i32::MAX as u32) as i32).collect();
    let last: Vec<Option<OffsetDateTime>> = rows
        .iter()
        .map(|r| {
            r.last_counted_us.and_then(|us| OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).ok())
        })
        .collect();
    let created = sqlx::query(
        "INSERT INTO citizen_period (fiscal_code, award_period_id, citizen_id, enabled, cashback_cents, score_total_cents, \
         transactions, last_counted_at, seq, updated_at) \
         SELECT z.fiscal_code, $1, z.citizen_id, z.enabled, u.cb, u.sc, u.n, u.last, nextval('citizen_period_seq'), $7 \
         FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::int[], $6::timestamptz[]) AS u(cf, cb, sc, n, last) \
         JOIN citizen z ON z.fiscal_code = u.cf ORDER BY u.cf \
         ON CONFLICT (fiscal_code, award_period_id) DO NOTHING",
    )
    .bind(period)
    .bind(&cf)
    .bind(&cb)
    .bind(&sc)
    .bind(&n)
    .bind(&last)
    .bind(pg_time(now))
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(Step::Done(TotalsImportOutcome { created, skipped: rows.len() as u64 - created }))
}
