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

use cashback_domain::enrollment::{
    self, Channel, CitizenEnrollDecision, CitizenState, InstrumentDeleteDecision, InstrumentDeleteRefusal,
    InstrumentEnrollDecision, InstrumentEnrollRefusal, InstrumentState, InstrumentStatus, OptInStatus,
};
use cashback_domain::{AwardPeriod, FiscalCode, Hpan, Money};
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

fn decode_err(msg: impl Into<String>) -> sqlx::Error {
    sqlx::Error::Decode(msg.into().into())
}

fn utc(t: OffsetDateTime) -> OffsetDateTime {
    t.to_offset(UtcOffset::UTC)
}

fn get_time(r: &PgRow, i: usize) -> sqlx::Result<OffsetDateTime> {
    r.try_get::<OffsetDateTime, _>(i).map(utc)
}

fn get_opt_time(r: &PgRow, i: usize) -> sqlx::Result<Option<OffsetDateTime>> {
    r.try_get::<Option<OffsetDateTime>, _>(i).map(|t| t.map(utc))
}

fn get_u32(r: &PgRow, i: usize) -> sqlx::Result<u32> {
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
) -> sqlx::Result<Step<Citizen>> {
    let existing = lock_citizen(c, cf).await?;
    let state = existing.as_ref().map(|e| CitizenState { enabled: e.enabled, opt_in: e.opt_in_status });
    let now = pg_time(now);
    let row = match enrollment::decide_citizen_enroll(state, requested) {
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
    Ok(Step::Done(citizen_from_row(&row)?))
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
    Ok(Step::Done(WithdrawOutcome::Withdrawn { instruments: hpans.len() as u64 }))
}

// ---- instruments ----

macro_rules! instrument_cols {
    () => {
        "hpan, fiscal_code, channel, status, activation_date, deactivation_date"
    };
}

fn instrument_from_row(r: &PgRow) -> sqlx::Result<Instrument> {
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
         max_transaction_evaluated_cents FROM award_period ORDER BY award_period_id",
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
            })
        })
        .collect()
}

macro_rules! insert_award_period {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO award_period (award_period_id, start_date, end_date, grace_period_days, min_transaction_number, \
             max_amount_cents, min_position, max_transaction_cashback_cents, max_period_cashback_cents, \
             cashback_percentage, max_transaction_evaluated_cents) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ",
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
             max_transaction_evaluated_cents = EXCLUDED.max_transaction_evaluated_cents"
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
        "id, kind, scope, key_sha256, created_at, revoked_at"
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
    })
}

pub async fn insert_credential(c: &mut PgConnection, cr: &Credential) -> sqlx::Result<()> {
    sqlx::query(concat!("INSERT INTO credential (", credential_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6)"))
        .bind(&cr.id)
        .bind(cr.kind.as_str())
        .bind(&cr.scope)
        .bind(&cr.key_sha256)
        .bind(pg_time(cr.created_at))
        .bind(cr.revoked_at.map(pg_time))
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

pub async fn revoke_credential(c: &mut PgConnection, id: &str, now: OffsetDateTime) -> sqlx::Result<bool> {
    Ok(sqlx::query("UPDATE credential SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id)
        .bind(pg_time(now))
        .execute(c)
        .await?
        .rows_affected()
        > 0)
}
