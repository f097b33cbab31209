//! The SQL of each store operation, run on a rusqlite connection (inside the writer's batch
//! transaction for writes). Decisions come from `cashback_domain::enrollment`.

use std::sync::LazyLock;

use cashback_domain::eligibility::{CitizenState, EnrollmentIndex, EnrollmentIndexBuilder, Ineligible};
use cashback_domain::enrollment::{
    self, Channel, InstrumentDeleteDecision, InstrumentDeleteRefusal, InstrumentEnrollDecision,
    InstrumentEnrollRefusal, InstrumentState, InstrumentStatus, OptInStatus,
};
use cashback_domain::scoring::{ScoringRules, Standing, TrxInput};
use cashback_domain::{AwardPeriod, FiscalCode, Hpan, Money, OperationType};
use cashback_store::*;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::pending::{KeySet, PendingKeys};
use time::{Date, OffsetDateTime};

pub fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(v: i64) -> rusqlite::Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(v as i128 * 1_000)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Integer, Box::new(e)))
}

pub(crate) fn conv_err(msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, msg.into())
}

const CITIZEN_COLS: &str = "fiscal_code, enabled, timestamp_tc, opt_in_status, payoff_instr, payoff_instr_type, \
    account_holder_cf, account_holder_name, account_holder_surname, check_instr_status, \
    technical_account_holder, issuer_card_id, cancellation, channel, updated_at";

fn citizen_from_row(r: &Row<'_>) -> rusqlite::Result<Citizen> {
    let cf: String = r.get(0)?;
    let opt: String = r.get(3)?;
    let iban: Option<String> = r.get(4)?;
    let payoff = match iban {
        Some(iban) => Some(Payoff {
            iban,
            instr_type: r.get::<_, Option<String>>(5)?.unwrap_or_else(|| "IBAN".into()),
            account_holder_cf: r.get(6)?,
            account_holder_name: r.get(7)?,
            account_holder_surname: r.get(8)?,
            check_status: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
            technical_account_holder: r.get(10)?,
            issuer_card_id: r.get(11)?,
        }),
        None => None,
    };
    Ok(Citizen {
        fiscal_code: FiscalCode::parse(&cf).map_err(|e| conv_err(e.to_string()))?,
        enabled: r.get(1)?,
        timestamp_tc: from_micros(r.get(2)?)?,
        opt_in_status: OptInStatus::parse(&opt).map_err(|e| conv_err(e.to_string()))?,
        payoff,
        cancellation: r.get::<_, Option<i64>>(12)?.map(from_micros).transpose()?,
        channel: r.get(13)?,
        updated_at: from_micros(r.get(14)?)?,
    })
}

pub fn get_citizen(c: &Connection, cf: &FiscalCode) -> rusqlite::Result<Option<Citizen>> {
    let mut st = c.prepare_cached(&format!("SELECT {CITIZEN_COLS} FROM citizen WHERE fiscal_code = ?1"))?;
    st.query_row([cf.as_str()], citizen_from_row).optional()
}

pub fn enroll_citizen(
    c: &Connection,
    cf: &FiscalCode,
    requested: Option<OptInStatus>,
    channel: &Channel,
    now: OffsetDateTime,
    actor: &str,
) -> rusqlite::Result<Citizen> {
    let existing = get_citizen(c, cf)?;
    let state = existing.as_ref().map(|e| enrollment::CitizenState { enabled: e.enabled, opt_in: e.opt_in_status });
    let now_us = micros(now);
    let decision = enrollment::decide_citizen_enroll(state, requested);
    let change = match decision {
        enrollment::CitizenEnrollDecision::Create { .. } => "created",
        enrollment::CitizenEnrollDecision::Reenable => "re-enabled",
        enrollment::CitizenEnrollDecision::SetOptIn(_) => "opt-in",
        enrollment::CitizenEnrollDecision::Unchanged => "",
    };
    match decision {
        enrollment::CitizenEnrollDecision::Create { opt_in } => {
            c.prepare_cached(
                "INSERT INTO citizen (fiscal_code, enabled, timestamp_tc, opt_in_status, channel, created_at, updated_at) \
                 VALUES (?1, 1, ?2, ?3, ?4, ?2, ?2)",
            )?
            .execute(params![cf.as_str(), now_us, opt_in.as_str(), channel.as_str()])?;
        }
        enrollment::CitizenEnrollDecision::Reenable => {
            c.prepare_cached(
                "UPDATE citizen SET enabled = 1, timestamp_tc = ?2, channel = ?3, updated_at = ?2 WHERE fiscal_code = ?1",
            )?
            .execute(params![cf.as_str(), now_us, channel.as_str()])?;
        }
        enrollment::CitizenEnrollDecision::SetOptIn(o) => {
            c.prepare_cached("UPDATE citizen SET opt_in_status = ?2, updated_at = ?3 WHERE fiscal_code = ?1")?
                .execute(params![cf.as_str(), o.as_str(), now_us])?;
        }
        enrollment::CitizenEnrollDecision::Unchanged => return Ok(existing.expect("unchanged implies existing")),
    }
    let after = get_citizen(c, cf)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    let ev = audit::events::citizen_enrolled(cf, change, channel.as_str(), after.opt_in_status.as_str());
    record_audit(c, actor, now_us, &ev)?;
    Ok(after)
}

/// Append an event to the audit trail (in the caller's transaction).
pub fn record_audit(c: &Connection, actor: &str, now_us: i64, ev: &NewAuditEvent) -> rusqlite::Result<()> {
    c.prepare_cached("INSERT INTO audit_event (at, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![now_us, actor, ev.action.as_str(), ev.subject, ev.detail])?;
    Ok(())
}

pub fn audit_events(c: &Connection, q: &AuditQuery) -> rusqlite::Result<Vec<AuditEvent>> {
    let mut sql = String::from("SELECT id, at, actor, action, subject, detail FROM audit_event WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut push = |cond: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&format!(" AND {cond} ?{}", args.len()));
    };
    if let Some(v) = &q.subject {
        push("subject =", v.clone().into());
    }
    if let Some(v) = &q.actor {
        push("actor =", v.clone().into());
    }
    if let Some(v) = &q.action {
        push("action =", v.clone().into());
    }
    if let Some(v) = q.since {
        push("at >=", micros(v).into());
    }
    if let Some(v) = q.until {
        push("at <", micros(v).into());
    }
    if let Some(v) = q.before_id {
        push("id <", v.into());
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", q.limit.min(audit::AUDIT_QUERY_MAX)));
    let mut st = c.prepare(&sql)?;
    st.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(AuditEvent {
            id: r.get(0)?,
            at: from_micros(r.get(1)?)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            subject: r.get(4)?,
            detail: r.get(5)?,
        })
    })?
    .collect()
}

pub fn set_payoff(
    c: &Connection,
    cf: &FiscalCode,
    p: Payoff,
    now: OffsetDateTime,
) -> rusqlite::Result<SetPayoffOutcome> {
    let Some(existing) = get_citizen(c, cf)? else {
        return Ok(SetPayoffOutcome::CitizenNotFound);
    };
    if !existing.enabled {
        return Ok(SetPayoffOutcome::CitizenNotEnabled);
    }
    c.prepare_cached(
        "UPDATE citizen SET payoff_instr = ?2, payoff_instr_type = ?3, account_holder_cf = ?4, account_holder_name = ?5, \
         account_holder_surname = ?6, check_instr_status = ?7, technical_account_holder = ?8, issuer_card_id = ?9, updated_at = ?10 \
         WHERE fiscal_code = ?1",
    )?
    .execute(params![
        cf.as_str(),
        p.iban,
        p.instr_type,
        p.account_holder_cf,
        p.account_holder_name,
        p.account_holder_surname,
        p.check_status,
        p.technical_account_holder,
        p.issuer_card_id,
        micros(now)
    ])?;
    Ok(SetPayoffOutcome::Updated(Box::new(get_citizen(c, cf)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?)))
}

/// Delete at most `batch` notifications created before the cutoff (the outbox is transient:
/// delivered or not, a notice older than the retention period is gone). Returns how many.
pub fn purge_notifications(c: &Connection, cutoff_us: i64, batch: u32) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "DELETE FROM notification WHERE notification_id IN \
         (SELECT notification_id FROM notification WHERE created_at < ?1 ORDER BY notification_id LIMIT ?2)",
    )?
    .execute(params![cutoff_us, batch])
}

/// Citizens whose retention is over (see `Store::erase_expired_citizens`).
pub fn erasable_citizens(
    c: &Connection,
    cutoff_us: i64,
    include_enabled: bool,
    limit: u32,
) -> rusqlite::Result<Vec<String>> {
    c.prepare_cached(&format!(
        "SELECT fiscal_code FROM citizen c WHERE ((enabled = 0 AND cancellation < ?1) OR (?2 AND updated_at < ?1)) AND {ERASABLE} \
         ORDER BY fiscal_code LIMIT ?3"
    ))?
    .query_map(params![cutoff_us, include_enabled, limit], |r| r.get(0))?
    .collect()
}

/// No payment still open, no open complaint (`c` is the citizen row).
const ERASABLE: &str = "NOT EXISTS (SELECT 1 FROM award a WHERE a.fiscal_code = c.fiscal_code AND a.status IN ('NEW', 'SENT', 'FAILED')) \
     AND NOT EXISTS (SELECT 1 FROM complaint k WHERE k.fiscal_code = c.fiscal_code AND k.status = 'OPEN')";

/// Erase one citizen (see `cashback_store::ERASURE`) if still erasable; returns the audit event.
pub fn erase_citizen(
    c: &Connection,
    cf: &str,
    cutoff_us: i64,
    include_enabled: bool,
) -> rusqlite::Result<Option<NewAuditEvent>> {
    let still: bool = c.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM citizen c WHERE fiscal_code = ?1 \
             AND ((enabled = 0 AND cancellation < ?2) OR (?3 AND updated_at < ?2)) AND {ERASABLE})"
        ),
        params![cf, cutoff_us, include_enabled],
        |r| r.get(0),
    )?;
    if !still {
        return Ok(None);
    }
    let del = |sql: &str| c.prepare_cached(sql)?.execute([cf]);
    let instruments = del("DELETE FROM payment_instrument WHERE fiscal_code = ?1")?;
    del("DELETE FROM instrument_window WHERE fiscal_code = ?1")?; // index from migration 0008
    del("DELETE FROM acquirer_transaction_citizen WHERE fiscal_code = ?1")?;
    let transactions = c
        .prepare_cached(
            "UPDATE acquirer_transaction SET fiscal_code = NULL, ineligible = 'CITIZEN_NOT_ENABLED' \
             WHERE fiscal_code = ?1 AND ineligible IS NULL",
        )?
        .execute([cf])?;
    del("DELETE FROM citizen_period WHERE fiscal_code = ?1")?;
    let awards = del("DELETE FROM award WHERE fiscal_code = ?1")?;
    let complaints = del("DELETE FROM complaint WHERE fiscal_code = ?1")?;
    del("DELETE FROM citizen WHERE fiscal_code = ?1")?;
    Ok(Some(audit::events::citizen_erased(
        cf,
        instruments as u64,
        transactions as u64,
        awards as u64,
        complaints as u64,
    )))
}

pub fn withdraw_citizen(
    c: &Connection,
    cf: &FiscalCode,
    channel: &Channel,
    now: OffsetDateTime,
) -> rusqlite::Result<WithdrawOutcome> {
    let Some(existing) = get_citizen(c, cf)? else {
        return Ok(WithdrawOutcome::NotFound);
    };
    if !existing.enabled {
        return Ok(WithdrawOutcome::AlreadyWithdrawn);
    }
    let channels: Vec<String> = {
        let mut st = c.prepare_cached(
            "SELECT DISTINCT channel FROM payment_instrument WHERE fiscal_code = ?1 AND status = 'ACTIVE'",
        )?;
        st.query_map([cf.as_str()], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    if enrollment::check_withdrawal_channels(channel, channels.iter().map(String::as_str)).is_err() {
        return Ok(WithdrawOutcome::TooManyChannels);
    }
    let now_us = micros(now);
    c.prepare_cached(&format!(
        "INSERT INTO instrument_window (hpan, activated_at, seq, fiscal_code, channel, deactivated_at) \
         SELECT p.hpan, p.activation_date, {NEXT_SEQ}, p.fiscal_code, p.channel, ?2 \
         FROM payment_instrument p WHERE p.fiscal_code = ?1 AND p.status = 'ACTIVE'"
    ))?
    .execute(params![cf.as_str(), now_us])?;
    let n = c
        .prepare_cached(
            "UPDATE payment_instrument SET status = 'INACTIVE', deactivation_date = ?2, updated_at = ?2 \
             WHERE fiscal_code = ?1 AND status = 'ACTIVE'",
        )?
        .execute(params![cf.as_str(), now_us])?;
    c.prepare_cached(
        "UPDATE citizen SET enabled = 0, cancellation = ?2, opt_in_status = 'NOREQ', payoff_instr = NULL, payoff_instr_type = NULL, \
         account_holder_cf = NULL, account_holder_name = NULL, account_holder_surname = NULL, check_instr_status = NULL, \
         technical_account_holder = NULL, issuer_card_id = NULL, updated_at = ?2 WHERE fiscal_code = ?1",
    )?
    .execute(params![cf.as_str(), now_us])?;
    disable_citizen_periods(c, cf.as_str(), now_us)?;
    Ok(WithdrawOutcome::Withdrawn { instruments: n as u64 })
}

/// Sequence number of a window being closed among the closed windows of the same hpan that
/// opened in the same microsecond (`p` is the instrument row).
const NEXT_SEQ: &str =
    "(SELECT COUNT(*) FROM instrument_window w WHERE w.hpan = p.hpan AND w.activated_at = p.activation_date)";

fn hpan_from_blob(v: &[u8]) -> rusqlite::Result<Hpan> {
    let bytes: &[u8; 32] = v.try_into().map_err(|_| conv_err(format!("hpan blob of {} bytes", v.len())))?;
    Ok(Hpan::from_bytes(bytes))
}

/// Columns of an instrument, in the order `instrument_from_row` reads them.
pub(crate) const INSTRUMENT_COLS: &str = "hpan, fiscal_code, channel, status, activation_date, deactivation_date";

pub(crate) fn instrument_from_row(r: &Row<'_>) -> rusqlite::Result<Instrument> {
    let hpan = hpan_from_blob(r.get_ref(0)?.as_blob()?)?;
    let cf: String = r.get(1)?;
    let status: String = r.get(3)?;
    Ok(Instrument {
        hpan,
        fiscal_code: FiscalCode::parse(&cf).map_err(|e| conv_err(e.to_string()))?,
        channel: r.get(2)?,
        status: InstrumentStatus::parse(&status).ok_or_else(|| conv_err(format!("bad status {status}")))?,
        activation_date: from_micros(r.get(4)?)?,
        deactivation_date: r.get::<_, Option<i64>>(5)?.map(from_micros).transpose()?,
    })
}

pub fn get_instrument(c: &Connection, hpan: &Hpan) -> rusqlite::Result<Option<Instrument>> {
    c.prepare_cached(&format!("SELECT {INSTRUMENT_COLS} FROM payment_instrument WHERE hpan = ?1"))?
        .query_row([&hpan.to_bytes()[..]], instrument_from_row)
        .optional()
}

fn citizen_enabled(c: &Connection, cf: &FiscalCode) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("SELECT enabled FROM citizen WHERE fiscal_code = ?1")?
        .query_row([cf.as_str()], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

fn activated(
    hpan: &Hpan,
    cf: &FiscalCode,
    channel: &Channel,
    now_us: i64,
) -> rusqlite::Result<EnrollInstrumentOutcome> {
    Ok(EnrollInstrumentOutcome::Activated(Instrument {
        hpan: hpan.clone(),
        fiscal_code: cf.clone(),
        channel: channel.as_str().to_owned(),
        status: InstrumentStatus::Active,
        activation_date: from_micros(now_us)?,
        deactivation_date: None,
    }))
}

pub fn enroll_instrument(
    c: &Connection,
    hpan: &Hpan,
    cf: &FiscalCode,
    channel: &Channel,
    now: OffsetDateTime,
) -> rusqlite::Result<EnrollInstrumentOutcome> {
    let enabled = citizen_enabled(c, cf)?;
    let now_us = micros(now);
    // Fast path for a card never seen before (most of launch day): when the domain says an
    // absent instrument is inserted, try the insert directly; one b-tree descent instead of a
    // lookup followed by an insert. A present row leaves the insert a no-op and falls through.
    if enrollment::decide_instrument_enroll(enabled, None, cf.as_str()) == Ok(InstrumentEnrollDecision::Insert) {
        let inserted = c
            .prepare_cached(
                "INSERT INTO payment_instrument (hpan, fiscal_code, channel, status, activation_date, deactivation_date, updated_at) \
                 VALUES (?1, ?2, ?3, 'ACTIVE', ?4, NULL, ?4) ON CONFLICT (hpan) DO NOTHING",
            )?
            .execute(params![&hpan.to_bytes()[..], cf.as_str(), channel.as_str(), now_us])?;
        if inserted == 1 {
            return activated(hpan, cf, channel, now_us);
        }
    }
    let existing = get_instrument(c, hpan)?;
    let state = existing.as_ref().map(|i| InstrumentState { owner: i.fiscal_code.as_str(), status: i.status });
    match enrollment::decide_instrument_enroll(enabled, state, cf.as_str()) {
        Err(InstrumentEnrollRefusal::CitizenNotEnabled) => Ok(EnrollInstrumentOutcome::CitizenNotEnabled),
        Err(InstrumentEnrollRefusal::OwnedByOther) => Ok(EnrollInstrumentOutcome::OwnedByOther),
        Ok(InstrumentEnrollDecision::AlreadyActive) => {
            Ok(EnrollInstrumentOutcome::AlreadyActive(existing.expect("already active implies existing")))
        }
        Ok(d) => {
            let sql = if d == InstrumentEnrollDecision::Insert {
                "INSERT INTO payment_instrument (hpan, fiscal_code, channel, status, activation_date, deactivation_date, updated_at) \
                 VALUES (?1, ?2, ?3, 'ACTIVE', ?4, NULL, ?4)"
            } else {
                "UPDATE payment_instrument SET fiscal_code = ?2, channel = ?3, status = 'ACTIVE', activation_date = ?4, \
                 deactivation_date = NULL, updated_at = ?4 WHERE hpan = ?1"
            };
            // The instrument row is the open window; closed windows are in `instrument_window`.
            c.prepare_cached(sql)?.execute(params![&hpan.to_bytes()[..], cf.as_str(), channel.as_str(), now_us])?;
            activated(hpan, cf, channel, now_us)
        }
    }
}

pub fn delete_instrument(
    c: &Connection,
    hpan: &Hpan,
    cf: Option<&FiscalCode>,
    now: OffsetDateTime,
) -> rusqlite::Result<DeleteInstrumentOutcome> {
    let existing = get_instrument(c, hpan)?;
    let state = existing.as_ref().map(|i| InstrumentState { owner: i.fiscal_code.as_str(), status: i.status });
    match enrollment::decide_instrument_delete(state, cf.map(FiscalCode::as_str)) {
        Err(InstrumentDeleteRefusal::NotFound) => Ok(DeleteInstrumentOutcome::NotFound),
        Err(InstrumentDeleteRefusal::OwnedByOther) => Ok(DeleteInstrumentOutcome::OwnedByOther),
        Ok(InstrumentDeleteDecision::AlreadyInactive) => Ok(DeleteInstrumentOutcome::AlreadyInactive),
        Ok(InstrumentDeleteDecision::Deactivate) => {
            let now_us = micros(now);
            let key = hpan.to_bytes();
            c.prepare_cached(&format!(
                "INSERT INTO instrument_window (hpan, activated_at, seq, fiscal_code, channel, deactivated_at) \
                 SELECT p.hpan, p.activation_date, {NEXT_SEQ}, p.fiscal_code, p.channel, ?2 \
                 FROM payment_instrument p WHERE p.hpan = ?1 AND p.status = 'ACTIVE'"
            ))?
            .execute(params![&key[..], now_us])?;
            c.prepare_cached(
                "UPDATE payment_instrument SET status = 'INACTIVE', deactivation_date = ?2, updated_at = ?2 WHERE hpan = ?1",
            )?
            .execute(params![&key[..], now_us])?;
            Ok(DeleteInstrumentOutcome::Deactivated)
        }
    }
}

pub fn count_active_instruments(c: &Connection, cf: &FiscalCode) -> rusqlite::Result<Vec<ChannelCount>> {
    let mut st = c.prepare_cached(
        "SELECT channel, COUNT(*) FROM payment_instrument WHERE fiscal_code = ?1 AND status = 'ACTIVE' GROUP BY channel ORDER BY channel",
    )?;
    st.query_map([cf.as_str()], |r| Ok(ChannelCount { channel: r.get(0)?, count: r.get::<_, i64>(1)? as u64 }))?
        .collect()
}

pub fn instrument_history(c: &Connection, hpan: &Hpan) -> rusqlite::Result<Vec<ActivationWindow>> {
    // Closed windows, then the open one (the active instrument row), oldest first.
    let mut st = c.prepare_cached(
        "SELECT fiscal_code, channel, activated_at, deactivated_at, 0 AS open, seq FROM instrument_window WHERE hpan = ?1 \
         UNION ALL \
         SELECT fiscal_code, channel, activation_date, NULL, 1, 0 FROM payment_instrument WHERE hpan = ?1 AND status = 'ACTIVE' \
         ORDER BY 3, 5, 6",
    )?;
    st.query_map([&hpan.to_bytes()[..]], |r| {
        let cf: String = r.get(0)?;
        Ok(ActivationWindow {
            hpan: hpan.clone(),
            fiscal_code: FiscalCode::parse(&cf).map_err(|e| conv_err(e.to_string()))?,
            channel: r.get(1)?,
            from: from_micros(r.get(2)?)?,
            to: r.get::<_, Option<i64>>(3)?.map(from_micros).transpose()?,
        })
    })?
    .collect()
}

pub(crate) fn parse_date(s: &str) -> rusqlite::Result<Date> {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).map_err(|e| conv_err(e.to_string()))
}

pub(crate) fn fmt_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

pub fn list_award_periods(c: &Connection) -> rusqlite::Result<Vec<AwardPeriod>> {
    let mut st = c.prepare_cached(
        "SELECT award_period_id, start_date, end_date, grace_period_days, min_transaction_number, max_amount_cents, min_position, \
         max_transaction_cashback_cents, max_period_cashback_cents, cashback_percentage, max_transaction_evaluated_cents, \
         min_amount_cents, max_payments_per_merchant_day, reversal_retention_us \
         FROM award_period ORDER BY award_period_id",
    )?;
    st.query_map([], |r| {
        Ok(AwardPeriod {
            id: r.get(0)?,
            start: parse_date(&r.get::<_, String>(1)?)?,
            end: parse_date(&r.get::<_, String>(2)?)?,
            grace_period_days: r.get(3)?,
            min_transaction_number: r.get(4)?,
            max_amount: Money::from_cents(r.get(5)?),
            min_position: r.get(6)?,
            max_transaction_cashback: Money::from_cents(r.get(7)?),
            max_period_cashback: Money::from_cents(r.get(8)?),
            cashback_percentage: r.get(9)?,
            max_transaction_evaluated: Money::from_cents(r.get(10)?),
            scoring: ScoringRules {
                min_amount: r.get::<_, Option<i64>>(11)?.map(Money::from_cents),
                max_payments_per_merchant_day: r.get(12)?,
                reversal_retention_us: r.get(13)?,
            },
        })
    })?
    .collect()
}

/// Insert a period; with `replace`, overwrite an existing one. Returns rows written.
pub fn upsert_award_period(c: &Connection, p: &AwardPeriod, replace: bool) -> rusqlite::Result<usize> {
    let verb = if replace { "INSERT OR REPLACE" } else { "INSERT OR IGNORE" };
    c.prepare_cached(&format!(
        "{verb} INTO award_period (award_period_id, start_date, end_date, grace_period_days, min_transaction_number, \
         max_amount_cents, min_position, max_transaction_cashback_cents, max_period_cashback_cents, cashback_percentage, \
         max_transaction_evaluated_cents, min_amount_cents, max_payments_per_merchant_day, reversal_retention_us) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        p.id,
        fmt_date(p.start),
        fmt_date(p.end),
        p.grace_period_days,
        p.min_transaction_number,
        p.max_amount.cents(),
        p.min_position,
        p.max_transaction_cashback.cents(),
        p.max_period_cashback.cents(),
        p.cashback_percentage,
        p.max_transaction_evaluated.cents(),
        p.scoring.min_amount.map(|m| m.cents()),
        p.scoring.max_payments_per_merchant_day,
        p.scoring.reversal_retention_us
    ])
}

fn credential_from_row(r: &Row<'_>) -> rusqlite::Result<Credential> {
    let kind: String = r.get(1)?;
    Ok(Credential {
        id: r.get(0)?,
        kind: CredentialKind::parse(&kind).ok_or_else(|| conv_err(format!("bad kind {kind}")))?,
        scope: r.get(2)?,
        key_sha256: r.get(3)?,
        created_at: from_micros(r.get(4)?)?,
        revoked_at: r.get::<_, Option<i64>>(5)?.map(from_micros).transpose()?,
        client_cert_sha256: r.get(6)?,
    })
}

pub fn insert_credential(c: &Connection, cr: &Credential) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO credential (id, kind, scope, key_sha256, created_at, revoked_at, client_cert_sha256) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        cr.id,
        cr.kind.as_str(),
        cr.scope,
        cr.key_sha256,
        micros(cr.created_at),
        cr.revoked_at.map(micros),
        cr.client_cert_sha256
    ])?;
    Ok(())
}

pub fn find_credential(c: &Connection, key_sha256: &str) -> rusqlite::Result<Option<Credential>> {
    c.prepare_cached(
        "SELECT id, kind, scope, key_sha256, created_at, revoked_at, client_cert_sha256 FROM credential WHERE key_sha256 = ?1",
    )?
    .query_row([key_sha256], credential_from_row)
    .optional()
}

pub fn list_credentials(c: &Connection) -> rusqlite::Result<Vec<Credential>> {
    c.prepare_cached(
        "SELECT id, kind, scope, key_sha256, created_at, revoked_at, client_cert_sha256 FROM credential ORDER BY created_at, id",
    )?
    .query_map([], credential_from_row)?
    .collect()
}

pub fn revoke_credential(c: &Connection, id: &str, now: OffsetDateTime) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("UPDATE credential SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, micros(now)])?
        > 0)
}

pub fn bind_client_cert(c: &Connection, id: &str, cert_sha256: Option<&str>) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("UPDATE credential SET client_cert_sha256 = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
        .execute(params![id, cert_sha256])?
        > 0)
}

// ---- acquirer files and transactions ----

const FILE_COLS: &str = "id, name, abi, size, sha256, checksum, status, received_at, finished_at, last_line, \
    accepted, ineligible, duplicates, rejected, error";

fn file_from_row(r: &Row<'_>) -> rusqlite::Result<AcquirerFile> {
    let status: String = r.get(6)?;
    Ok(AcquirerFile {
        id: r.get(0)?,
        name: r.get(1)?,
        abi: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        checksum: r.get(5)?,
        status: FileStatus::parse(&status).ok_or_else(|| conv_err(format!("bad file status {status}")))?,
        received_at: from_micros(r.get(7)?)?,
        finished_at: r.get::<_, Option<i64>>(8)?.map(from_micros).transpose()?,
        last_line: r.get::<_, i64>(9)? as u64,
        counts: FileCounts {
            accepted: r.get::<_, i64>(10)? as u64,
            ineligible: r.get::<_, i64>(11)? as u64,
            duplicates: r.get::<_, i64>(12)? as u64,
            rejected: r.get::<_, i64>(13)? as u64,
        },
        error: r.get(14)?,
    })
}

pub fn get_acquirer_file(c: &Connection, name: &str) -> rusqlite::Result<Option<AcquirerFile>> {
    c.prepare_cached(&format!("SELECT {FILE_COLS} FROM acquirer_file WHERE name = ?1"))?
        .query_row([name], file_from_row)
        .optional()
}

/// Files of one acquirer (`Some(abi)`) or of all of them, most recently received first.
pub fn list_acquirer_files(c: &Connection, abi: Option<&str>, limit: u32) -> rusqlite::Result<Vec<AcquirerFile>> {
    const NEWEST: &str = "ORDER BY received_at DESC, id DESC LIMIT";
    match abi {
        Some(abi) => c
            .prepare_cached(&format!("SELECT {FILE_COLS} FROM acquirer_file WHERE abi = ?1 {NEWEST} ?2"))?
            .query_map(params![abi, limit], file_from_row)?
            .collect(),
        None => c
            .prepare_cached(&format!("SELECT {FILE_COLS} FROM acquirer_file {NEWEST} ?1"))?
            .query_map(params![limit], file_from_row)?
            .collect(),
    }
}

pub fn active_hpans(c: &Connection, after: Option<&Hpan>, limit: u32) -> rusqlite::Result<Vec<Hpan>> {
    let after = after.map(|h| h.to_bytes().to_vec()).unwrap_or_default();
    c.prepare_cached(
        "SELECT hpan FROM payment_instrument WHERE hpan > ?1 AND status = 'ACTIVE' ORDER BY hpan LIMIT ?2",
    )?
    .query_map(params![after, limit], |r| {
        let b = r.get_ref(0)?.as_blob()?;
        let key: [u8; 32] = b.try_into().map_err(|_| conv_err("hpan length".into()))?;
        Ok(Hpan::from_bytes(&key))
    })?
    .collect()
}

fn get_acquirer_file_by_id(c: &Connection, id: i64) -> rusqlite::Result<AcquirerFile> {
    c.prepare_cached(&format!("SELECT {FILE_COLS} FROM acquirer_file WHERE id = ?1"))?.query_row([id], file_from_row)
}

pub fn begin_acquirer_file(c: &Connection, f: &NewAcquirerFile, now: OffsetDateTime) -> rusqlite::Result<BeginFile> {
    match get_acquirer_file(c, &f.name)? {
        Some(existing) if existing.status == FileStatus::Done => Ok(BeginFile::AlreadyDone(existing)),
        Some(existing) if existing.status == FileStatus::Processing => Ok(BeginFile::Resume(existing)),
        Some(existing) => {
            // Failed at file level: nothing of it was stored; start afresh.
            c.prepare_cached(
                "UPDATE acquirer_file SET abi = ?2, size = ?3, sha256 = ?4, checksum = NULL, status = 'PROCESSING', \
                 received_at = ?5, finished_at = NULL, last_line = 0, accepted = 0, ineligible = 0, duplicates = 0, \
                 rejected = 0, error = NULL WHERE id = ?1",
            )?
            .execute(params![existing.id, f.abi, f.size as i64, f.sha256, micros(now)])?;
            c.prepare_cached("DELETE FROM file_rejection WHERE file_id = ?1")?.execute([existing.id])?;
            Ok(BeginFile::Started(get_acquirer_file_by_id(c, existing.id)?))
        }
        None => {
            c.prepare_cached(
                "INSERT INTO acquirer_file (name, abi, size, sha256, status, received_at) VALUES (?1, ?2, ?3, ?4, 'PROCESSING', ?5)",
            )?
            .execute(params![f.name, f.abi, f.size as i64, f.sha256, micros(now)])?;
            Ok(BeginFile::Started(get_acquirer_file_by_id(c, c.last_insert_rowid())?))
        }
    }
}

/// Store a chunk: rows not seen before (in any file, see [`PendingKeys`]) are appended, the
/// rejected lines recorded, the file's progress and counters updated. The chunk's new keys join
/// the file's pending set only once everything succeeded (the writer rolls a failed job back).
pub fn ingest_chunk(
    c: &Connection,
    pending: &mut PendingKeys,
    file_id: i64,
    chunk: &IngestChunk,
) -> rusqlite::Result<ChunkOutcome> {
    pending.ensure_loaded(c)?;
    let mut out = ChunkOutcome::default();
    let mut seen = c.prepare_cached("SELECT 1 FROM acquirer_transaction_key WHERE dedup_key = ?1")?;
    let mut ins = c.prepare_cached(
        "INSERT INTO acquirer_transaction (dedup_key, file_id, line, hpan, fiscal_code, award_period_id, ineligible, trx_at, \
         trx_offset, reversal, amount_cents, circuit_type, sender_code, acquirer_id, merchant_id, terminal_id, \
         id_trx_acquirer, id_trx_issuer, correlation_id, bin, mcc, pos_type, par) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
    )?;
    let mut fresh = KeySet::with_capacity_and_hasher(chunk.rows.len(), Default::default());
    for t in &chunk.rows {
        if fresh.contains(&t.dedup_key) || pending.contains(&t.dedup_key) || seen.exists([&t.dedup_key[..]])? {
            out.duplicates += 1;
            continue;
        }
        ins.execute(params![
            &t.dedup_key[..],
            file_id,
            t.line as i64,
            &t.hpan.to_bytes()[..],
            t.fiscal_code.as_ref().map(FiscalCode::as_str),
            t.award_period_id,
            t.ineligible.map(|r| r.code()),
            micros(t.at),
            t.at.offset().whole_seconds(),
            t.reversal,
            t.amount_cents,
            t.circuit_type,
            t.sender_code,
            t.acquirer_id,
            t.merchant_id,
            t.terminal_id,
            t.id_trx_acquirer,
            t.id_trx_issuer,
            t.correlation_id,
            t.bin,
            t.mcc,
            t.pos_type,
            t.par,
        ])?;
        fresh.insert(t.dedup_key);
        match t.ineligible {
            None => out.accepted += 1,
            Some(_) => out.ineligible += 1,
        }
    }
    let mut rej = c.prepare_cached(
        "INSERT OR IGNORE INTO file_rejection (file_id, line, field, reason) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut rejected = 0i64;
    for r in &chunk.rejections {
        rejected += rej.execute(params![file_id, r.line as i64, r.field, r.reason])? as i64;
    }
    c.prepare_cached(
        "UPDATE acquirer_file SET last_line = max(last_line, ?2), accepted = accepted + ?3, ineligible = ineligible + ?4, \
         duplicates = duplicates + ?5, rejected = rejected + ?6, checksum = coalesce(checksum, ?7) WHERE id = ?1",
    )?
    .execute(params![
        file_id,
        chunk.last_line as i64,
        out.accepted as i64,
        out.ineligible as i64,
        out.duplicates as i64,
        rejected,
        chunk.checksum
    ])?;
    pending.file(file_id).extend(fresh);
    Ok(out)
}

/// Which lookup table a scan of a file's rows feeds (see migration 0004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Keys,
    ByCard,
    ByCitizen,
}

/// A PROCESSING file's rows for one lookup table, sorted in that table's key order.
#[derive(Debug)]
pub enum FileLookup {
    Keys(Vec<[u8; 16]>),
    ByCard(Vec<([u8; 32], i64)>),
    /// Fiscal code (16 ASCII bytes), award period, row id of each eligible row.
    ByCitizen(Vec<([u8; 16], i64, i64)>),
}

/// Read a PROCESSING file's rows for one lookup table (on a read-only connection, off the
/// writer) and sort them; one table at a time keeps the memory to one sorted vector. `None` when
/// the file is not PROCESSING (nothing to merge).
pub fn read_file_lookup(c: &Connection, file_id: i64, which: Lookup) -> rusqlite::Result<Option<FileLookup>> {
    if get_acquirer_file_by_id(c, file_id)?.status != FileStatus::Processing {
        return Ok(None);
    }
    let blob = |i: usize| rusqlite::Error::InvalidColumnType(i, "blob length".into(), rusqlite::types::Type::Blob);
    Ok(Some(match which {
        Lookup::Keys => {
            let mut st = c.prepare("SELECT dedup_key FROM acquirer_transaction WHERE file_id = ?1")?;
            let mut rows = st.query([file_id])?;
            let mut v: Vec<[u8; 16]> = Vec::new();
            while let Some(r) = rows.next()? {
                v.push(r.get_ref(0)?.as_blob()?.try_into().map_err(|_| blob(0))?);
            }
            v.sort_unstable();
            FileLookup::Keys(v)
        }
        Lookup::ByCard => {
            let mut st = c.prepare("SELECT hpan, id FROM acquirer_transaction WHERE file_id = ?1")?;
            let mut rows = st.query([file_id])?;
            let mut v: Vec<([u8; 32], i64)> = Vec::new();
            while let Some(r) = rows.next()? {
                v.push((r.get_ref(0)?.as_blob()?.try_into().map_err(|_| blob(0))?, r.get(1)?));
            }
            v.sort_unstable();
            FileLookup::ByCard(v)
        }
        Lookup::ByCitizen => {
            let mut st = c.prepare(
                "SELECT fiscal_code, award_period_id, id FROM acquirer_transaction \
                 WHERE file_id = ?1 AND ineligible IS NULL",
            )?;
            let mut rows = st.query([file_id])?;
            let mut v: Vec<([u8; 16], i64, i64)> = Vec::new();
            while let Some(r) = rows.next()? {
                v.push((r.get_ref(0)?.as_str()?.as_bytes().try_into().map_err(|_| blob(0))?, r.get(1)?, r.get(2)?));
            }
            v.sort_unstable();
            FileLookup::ByCitizen(v)
        }
    }))
}

/// Add a slice of sorted keys to `acquirer_transaction_key` (insert-or-ignore: idempotent).
pub fn merge_keys(c: &Connection, keys: &[[u8; 16]]) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached("INSERT OR IGNORE INTO acquirer_transaction_key (dedup_key) VALUES (?1)")?;
    for k in keys {
        st.execute([&k[..]])?;
    }
    Ok(())
}

/// Add a slice of sorted (hpan, id) pairs to `acquirer_transaction_hpan`.
pub fn merge_by_card(c: &Connection, rows: &[([u8; 32], i64)]) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached("INSERT OR IGNORE INTO acquirer_transaction_hpan (hpan, id) VALUES (?1, ?2)")?;
    for (h, id) in rows {
        st.execute(params![&h[..], id])?;
    }
    Ok(())
}

/// Add a slice of sorted (fiscal code, period, id) triples to `acquirer_transaction_citizen`.
pub fn merge_by_citizen(c: &Connection, rows: &[([u8; 16], i64, i64)]) -> rusqlite::Result<()> {
    let mut st = c.prepare_cached(
        "INSERT OR IGNORE INTO acquirer_transaction_citizen (fiscal_code, award_period_id, id) VALUES (?1, ?2, ?3)",
    )?;
    for (cf, period, id) in rows {
        let cf = std::str::from_utf8(cf).map_err(|e| conv_err(e.to_string()))?;
        st.execute(params![cf, period, id])?;
    }
    Ok(())
}

/// Finish a file after its merge steps. Done: marked so (its rows become visible by citizen and
/// card). Refused: its rows, if any, are removed, so the file can be sent again. Either way its
/// pending keys are dropped. A file not PROCESSING is left as is.
pub fn finish_acquirer_file(
    c: &Connection,
    pending: &mut PendingKeys,
    file_id: i64,
    error: Option<&str>,
    now: OffsetDateTime,
) -> rusqlite::Result<AcquirerFile> {
    let current = get_acquirer_file_by_id(c, file_id)?;
    if current.status != FileStatus::Processing {
        return Ok(current);
    }
    if error.is_some() {
        // Also whatever an interrupted earlier finish had merged already.
        for sql in [
            "DELETE FROM acquirer_transaction_key WHERE dedup_key IN \
             (SELECT dedup_key FROM acquirer_transaction WHERE file_id = ?1)",
            "DELETE FROM acquirer_transaction_hpan WHERE (hpan, id) IN \
             (SELECT hpan, id FROM acquirer_transaction WHERE file_id = ?1)",
            "DELETE FROM acquirer_transaction_citizen WHERE (fiscal_code, award_period_id, id) IN \
             (SELECT fiscal_code, award_period_id, id FROM acquirer_transaction WHERE file_id = ?1 AND ineligible IS NULL)",
            "DELETE FROM acquirer_transaction WHERE file_id = ?1",
        ] {
            c.prepare_cached(sql)?.execute([file_id])?;
        }
    }
    c.prepare_cached("UPDATE acquirer_file SET status = ?2, error = ?3, finished_at = ?4 WHERE id = ?1")?.execute(
        params![
            file_id,
            if error.is_some() { FileStatus::Failed } else { FileStatus::Done }.as_str(),
            error,
            micros(now)
        ],
    )?;
    pending.take(file_id);
    get_acquirer_file_by_id(c, file_id)
}

pub fn file_rejections(c: &Connection, file_id: i64, limit: u32) -> rusqlite::Result<Vec<Rejection>> {
    c.prepare_cached("SELECT line, field, reason FROM file_rejection WHERE file_id = ?1 ORDER BY line LIMIT ?2")?
        .query_map(params![file_id, limit], |r| {
            Ok(Rejection { line: r.get::<_, i64>(0)? as u64, field: r.get(1)?, reason: r.get(2)? })
        })?
        .collect()
}

const TRX_COLS: &str = "t.dedup_key, t.line, t.hpan, t.fiscal_code, t.award_period_id, t.ineligible, t.trx_at, \
    t.trx_offset, t.reversal, t.amount_cents, t.circuit_type, t.sender_code, t.acquirer_id, t.merchant_id, t.terminal_id, \
    t.id_trx_acquirer, t.id_trx_issuer, t.correlation_id, t.bin, t.mcc, t.pos_type, t.par";

fn trx_from_row(r: &Row<'_>) -> rusqlite::Result<StoredTransaction> {
    let key: [u8; 16] = r.get_ref(0)?.as_blob()?.try_into().map_err(|_| conv_err("dedup key length".into()))?;
    let cf: Option<String> = r.get(3)?;
    let reason: Option<String> = r.get(5)?;
    let offset = time::UtcOffset::from_whole_seconds(r.get(7)?).map_err(|e| conv_err(e.to_string()))?;
    Ok(StoredTransaction {
        dedup_key: key,
        line: r.get::<_, i64>(1)? as u64,
        hpan: hpan_from_blob(r.get_ref(2)?.as_blob()?)?,
        fiscal_code: cf.map(|s| FiscalCode::parse(&s).map_err(|e| conv_err(e.to_string()))).transpose()?,
        award_period_id: r.get(4)?,
        ineligible: reason
            .map(|s| Ineligible::parse(&s).ok_or_else(|| conv_err(format!("bad reason {s}"))))
            .transpose()?,
        at: from_micros(r.get(6)?)?.to_offset(offset),
        reversal: r.get(8)?,
        amount_cents: r.get(9)?,
        circuit_type: r.get(10)?,
        sender_code: r.get(11)?,
        acquirer_id: r.get(12)?,
        merchant_id: r.get(13)?,
        terminal_id: r.get(14)?,
        id_trx_acquirer: r.get(15)?,
        id_trx_issuer: r.get(16)?,
        correlation_id: r.get(17)?,
        bin: r.get(18)?,
        mcc: r.get(19)?,
        pos_type: r.get(20)?,
        par: r.get(21)?,
    })
}

pub fn citizen_transactions(c: &Connection, cf: &FiscalCode) -> rusqlite::Result<Vec<StoredTransaction>> {
    c.prepare_cached(&format!(
        "SELECT {TRX_COLS} FROM acquirer_transaction_citizen c JOIN acquirer_transaction t ON t.id = c.id \
         JOIN acquirer_file f ON f.id = t.file_id AND f.status = 'DONE' \
         WHERE c.fiscal_code = ?1 ORDER BY t.trx_at, t.id"
    ))?
    .query_map([cf.as_str()], trx_from_row)?
    .collect()
}

pub fn instrument_transactions(c: &Connection, hpan: &Hpan) -> rusqlite::Result<Vec<StoredTransaction>> {
    c.prepare_cached(&format!(
        "SELECT {TRX_COLS} FROM acquirer_transaction_hpan h JOIN acquirer_transaction t ON t.id = h.id \
         JOIN acquirer_file f ON f.id = t.file_id AND f.status = 'DONE' \
         WHERE h.hpan = ?1 ORDER BY t.trx_at, t.id"
    ))?
    .query_map([&hpan.to_bytes()[..]], trx_from_row)?
    .collect()
}

/// Citizens and every activation window (closed ones and the open one of each active
/// instrument), read in one transaction so the snapshot is consistent.
pub fn load_enrollment_index(c: &mut Connection) -> rusqlite::Result<EnrollmentIndex> {
    let tx = c.transaction()?;
    let mut b = EnrollmentIndexBuilder::new();
    {
        let mut st = tx.prepare("SELECT fiscal_code, enabled, timestamp_tc FROM citizen")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let cf: &str = r.get_ref(0)?.as_str()?;
            b.citizen(cf, CitizenState { enabled: r.get(1)?, terms_accepted_us: r.get(2)? });
        }
    }
    let mut add = |sql: &str| -> rusqlite::Result<()> {
        let mut st = tx.prepare(sql)?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let key: [u8; 32] = r.get_ref(0)?.as_blob()?.try_into().map_err(|_| conv_err("hpan length".into()))?;
            b.window(key, r.get_ref(1)?.as_str()?, r.get(2)?, r.get(3)?);
        }
        Ok(())
    };
    add("SELECT hpan, fiscal_code, activation_date, NULL FROM payment_instrument WHERE status = 'ACTIVE'")?;
    add("SELECT hpan, fiscal_code, activated_at, deactivated_at FROM instrument_window")?;
    tx.commit()?;
    if b.windows_without_owner() > 0 {
        tracing::warn!(
            count = b.windows_without_owner(),
            "activation windows whose owner is not a citizen were ignored"
        );
    }
    Ok(b.build())
}

/// Operator bulk import (see `Store::import_enrollments`): citizens first, then instruments in
/// hpan order, so a sorted import appends to the instrument b-tree instead of splitting pages
/// at random.
pub fn import_enrollments(c: &Connection, batch: &EnrollmentImport) -> rusqlite::Result<ImportOutcome> {
    let mut out = ImportOutcome::default();
    let mut cit = c.prepare_cached(
        "INSERT INTO citizen (fiscal_code, enabled, timestamp_tc, opt_in_status, channel, payoff_instr, payoff_instr_type, \
         created_at, updated_at) VALUES (?1, 1, ?2, 'NOREQ', ?3, ?4, CASE WHEN ?4 IS NULL THEN NULL ELSE 'IBAN' END, ?2, ?2) \
         ON CONFLICT (fiscal_code) DO NOTHING",
    )?;
    for ct in &batch.citizens {
        if cit.execute(params![ct.fiscal_code.as_str(), micros(ct.terms_accepted_at), ct.channel.as_str(), ct.iban])?
            > 0
        {
            out.citizens_created += 1;
        } else {
            out.citizens_existing += 1;
        }
    }
    let mut owner = c.prepare_cached("SELECT enabled FROM citizen WHERE fiscal_code = ?1")?;
    let mut ins = c.prepare_cached(
        "INSERT INTO payment_instrument (hpan, fiscal_code, channel, status, activation_date, deactivation_date, updated_at) \
         VALUES (?1, ?2, ?3, 'ACTIVE', ?4, NULL, ?4) ON CONFLICT (hpan) DO NOTHING",
    )?;
    let mut keyed: Vec<([u8; 32], usize)> =
        batch.instruments.iter().enumerate().map(|(i, x)| (x.hpan.to_bytes(), i)).collect();
    keyed.sort_unstable();
    let mut last_owner: Option<(usize, bool)> = None;
    for (key, i) in keyed {
        let x = &batch.instruments[i];
        let enabled = match last_owner {
            Some((j, e)) if batch.instruments[j].fiscal_code == x.fiscal_code => e,
            _ => owner.query_row([x.fiscal_code.as_str()], |r| r.get::<_, bool>(0)).optional()?.unwrap_or(false),
        };
        last_owner = Some((i, enabled));
        if !enabled {
            out.instruments_without_enabled_owner += 1;
            continue;
        }
        if ins.execute(params![&key[..], x.fiscal_code.as_str(), x.channel.as_str(), micros(x.activated_at)])? > 0 {
            out.instruments_created += 1;
        } else {
            out.instruments_existing += 1;
        }
    }
    Ok(out)
}

// ---- cashback engine results (migration 0005) ----

const TOTALS_COLS: &str = "award_period_id, citizen_id, enabled, cashback_cents, score_total_cents, transactions, \
    last_counted_at, id_trx_min_transaction, id_trx_pivot, pivot_cashback_cents, seq, updated_at";

fn totals_from_row(r: &Row<'_>) -> rusqlite::Result<PeriodTotals> {
    Ok(PeriodTotals {
        award_period_id: r.get(0)?,
        citizen_id: r.get(1)?,
        enabled: r.get(2)?,
        cashback: Money::from_cents(r.get(3)?),
        score_total: Money::from_cents(r.get(4)?),
        transactions: r.get(5)?,
        last_counted_us: r.get(6)?,
        id_trx_min_transaction: r.get(7)?,
        id_trx_pivot: r.get(8)?,
        pivot_cashback: r.get::<_, Option<i64>>(9)?.map(Money::from_cents),
        seq: r.get(10)?,
        updated_at: from_micros(r.get(11)?)?,
    })
}

pub fn citizen_period_totals(c: &Connection, cf: &FiscalCode) -> rusqlite::Result<Vec<PeriodTotals>> {
    c.prepare_cached(&format!(
        "SELECT {TOTALS_COLS} FROM citizen_period WHERE fiscal_code = ?1 ORDER BY award_period_id"
    ))?
    .query_map([cf.as_str()], totals_from_row)?
    .collect()
}

/// `None` for an unknown or withdrawn citizen, else the totals: one statement (the citizen
/// row joined with its totals), so one read transaction.
pub fn enabled_citizen_totals(c: &Connection, cf: &FiscalCode) -> rusqlite::Result<Option<Vec<PeriodTotals>>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let cols: Vec<String> = TOTALS_COLS.split(',').map(|col| format!("p.{}", col.trim())).collect();
        format!(
            "SELECT {}, z.enabled FROM citizen z LEFT JOIN citizen_period p ON p.fiscal_code = z.fiscal_code \
             WHERE z.fiscal_code = ?1 ORDER BY p.award_period_id",
            cols.join(", ")
        )
    });
    let mut stmt = c.prepare_cached(&SQL)?;
    let mut rows = stmt.query([cf.as_str()])?;
    let (mut seen, mut totals) = (false, Vec::new());
    while let Some(r) = rows.next()? {
        seen = true;
        if !r.get::<_, bool>(12)? {
            return Ok(None);
        }
        // A citizen without totals: one row of the LEFT JOIN's NULLs.
        if r.get::<_, Option<i64>>(0)?.is_some() {
            totals.push(totals_from_row(r)?);
        }
    }
    Ok(seen.then_some(totals))
}

pub fn citizen_period_rows(c: &Connection, cf: &FiscalCode, period: i64) -> rusqlite::Result<Vec<PeriodRow>> {
    c.prepare_cached(&format!(
        "SELECT {TRX_COLS}, f.received_at FROM acquirer_transaction_citizen x \
         JOIN acquirer_transaction t ON t.id = x.id \
         JOIN acquirer_file f ON f.id = t.file_id AND f.status = 'DONE' \
         JOIN citizen z ON z.fiscal_code = x.fiscal_code \
         WHERE x.fiscal_code = ?1 AND x.award_period_id = ?2 AND t.trx_at >= z.timestamp_tc ORDER BY t.trx_at, t.id"
    ))?
    .query_map(params![cf.as_str(), period], |r| Ok(PeriodRow { trx: trx_from_row(r)?, received_us: r.get(22)? }))?
    .collect()
}

pub fn standing_changes(c: &Connection, after: i64, limit: u32) -> rusqlite::Result<Vec<StandingUpdate>> {
    c.prepare_cached(
        "SELECT seq, award_period_id, citizen_id, enabled, transactions, last_counted_at FROM citizen_period \
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?
    .query_map(params![after, limit], |r| {
        Ok(StandingUpdate {
            seq: r.get(0)?,
            award_period_id: r.get(1)?,
            citizen_id: r.get(2)?,
            enabled: r.get(3)?,
            standing: Standing { count: r.get(4)?, last_us: r.get(5)? },
        })
    })?
    .collect()
}

/// The next change sequence number (the single writer makes it unique and ordered).
fn next_seq(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT coalesce(max(seq), 0) + 1 FROM citizen_period")?.query_row([], |r| r.get(0))
}

/// A withdrawn citizen leaves every period's ranking (their totals are kept, disabled).
fn disable_citizen_periods(c: &Connection, cf: &str, now_us: i64) -> rusqlite::Result<()> {
    let periods: Vec<i64> = c
        .prepare_cached("SELECT award_period_id FROM citizen_period WHERE fiscal_code = ?1 AND enabled = 1")?
        .query_map([cf], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for period in periods {
        let seq = next_seq(c)?;
        c.prepare_cached(
            "UPDATE citizen_period SET enabled = 0, seq = ?3, updated_at = ?4 WHERE fiscal_code = ?1 AND award_period_id = ?2",
        )?
        .execute(params![cf, period, seq, now_us])?;
    }
    Ok(())
}

/// What scoring knows of a citizen: their ranking number and whether (and since when) they are
/// enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CitizenScoringState {
    pub citizen_id: u32,
    pub enabled: bool,
    pub timestamp_tc_us: i64,
}

fn citizen_scoring_state(c: &Connection, cf: &str) -> rusqlite::Result<Option<CitizenScoringState>> {
    c.prepare_cached("SELECT rowid, enabled, timestamp_tc FROM citizen WHERE fiscal_code = ?1")?
        .query_row([cf], |r| {
            let id: i64 = r.get(0)?;
            Ok(CitizenScoringState {
                citizen_id: u32::try_from(id).map_err(|_| conv_err(format!("citizen rowid {id} beyond u32")))?,
                enabled: r.get(1)?,
                timestamp_tc_us: r.get(2)?,
            })
        })
        .optional()
}

/// The rows of a citizen's period that count: eligible, from finished files or the file being
/// finished, at or after the citizen's T&C acceptance.
fn scoring_rows(
    c: &Connection,
    cf: &str,
    period: i64,
    since_us: i64,
    file_id: i64,
) -> rusqlite::Result<Vec<ScoringRow>> {
    let mut st = c.prepare_cached(
        "SELECT t.dedup_key, t.trx_at, f.received_at, t.reversal, t.amount_cents, t.hpan, t.acquirer_id, t.merchant_id, \
         t.terminal_id, t.correlation_id, t.id_trx_acquirer, t.sender_code \
         FROM acquirer_transaction_citizen x JOIN acquirer_transaction t ON t.id = x.id \
         JOIN acquirer_file f ON f.id = t.file_id \
         WHERE x.fiscal_code = ?1 AND x.award_period_id = ?2 AND t.trx_at >= ?3 AND (f.status = 'DONE' OR f.id = ?4)",
    )?;
    let rows = st.query_map(params![cf, period, since_us, file_id], |r| {
        Ok(ScoringRow {
            input: TrxInput {
                key: r.get_ref(0)?.as_blob()?.try_into().map_err(|_| conv_err("dedup key length".into()))?,
                at_us: r.get(1)?,
                received_us: r.get(2)?,
                operation: if r.get(3)? { OperationType::Reversal } else { OperationType::Payment },
                amount: Money::from_cents(r.get(4)?),
                hpan: r.get_ref(5)?.as_blob()?.try_into().map_err(|_| conv_err("hpan length".into()))?,
                acquirer_id: r.get(6)?,
                merchant_id: r.get(7)?,
                terminal_id: r.get(8)?,
                correlation_id: r.get(9)?,
            },
            id_trx_acquirer: r.get(10)?,
            acquirer_code: r.get(11)?,
        })
    })?;
    rows.collect()
}

/// One (citizen, period) re-evaluated, ready to be written.
#[derive(Debug, Clone)]
pub struct ScoredCitizen {
    pub fiscal_code: String,
    pub award_period_id: i64,
    /// The citizen state the totals were computed under (re-checked by the writer).
    pub state: CitizenScoringState,
    pub totals: ComputedTotals,
}

/// Re-evaluates (citizen, period) pairs touched by `file_id` from all their rows. Pairs whose
/// period or citizen is unknown are skipped.
pub fn score_citizens(
    c: &Connection,
    periods: &[AwardPeriod],
    pairs: &[(String, i64)],
    file_id: i64,
) -> rusqlite::Result<Vec<ScoredCitizen>> {
    let mut out = Vec::with_capacity(pairs.len());
    for (cf, period_id) in pairs {
        let Some(period) = periods.iter().find(|p| p.id == *period_id) else { continue };
        let Some(state) = citizen_scoring_state(c, cf)? else { continue };
        out.push(score_one(c, period, cf, state, file_id)?);
    }
    Ok(out)
}

fn score_one(
    c: &Connection,
    period: &AwardPeriod,
    cf: &str,
    state: CitizenScoringState,
    file_id: i64,
) -> rusqlite::Result<ScoredCitizen> {
    let rows = scoring_rows(c, cf, period.id, state.timestamp_tc_us, file_id)?;
    Ok(ScoredCitizen {
        fiscal_code: cf.to_owned(),
        award_period_id: period.id,
        state,
        totals: cashback_store::scoring::compute_totals(period, &rows),
    })
}

/// Writes re-evaluated totals, each with a new sequence number. A citizen whose enrollment
/// changed since the evaluation (withdrawn or re-enrolled meanwhile) is evaluated again here,
/// inside the writer's transaction.
pub fn write_scored(
    c: &Connection,
    periods: &[AwardPeriod],
    scored: &[ScoredCitizen],
    file_id: i64,
    now: OffsetDateTime,
) -> rusqlite::Result<()> {
    let now_us = micros(now);
    let mut seq = next_seq(c)?;
    let mut st = c.prepare_cached(
        "INSERT INTO citizen_period (fiscal_code, award_period_id, citizen_id, enabled, cashback_cents, score_total_cents, \
         transactions, last_counted_at, id_trx_min_transaction, id_trx_pivot, pivot_cashback_cents, seq, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (fiscal_code, award_period_id) DO UPDATE SET citizen_id = excluded.citizen_id, enabled = excluded.enabled, \
         cashback_cents = excluded.cashback_cents, score_total_cents = excluded.score_total_cents, \
         transactions = excluded.transactions, last_counted_at = excluded.last_counted_at, \
         id_trx_min_transaction = excluded.id_trx_min_transaction, id_trx_pivot = excluded.id_trx_pivot, \
         pivot_cashback_cents = excluded.pivot_cashback_cents, seq = excluded.seq, updated_at = excluded.updated_at",
    )?;
    for s in scored {
        let Some(now_state) = citizen_scoring_state(c, &s.fiscal_code)? else { continue };
        let fresh;
        let s = if now_state == s.state {
            s
        } else {
            let Some(period) = periods.iter().find(|p| p.id == s.award_period_id) else { continue };
            fresh = score_one(c, period, &s.fiscal_code, now_state, file_id)?;
            &fresh
        };
        let t = &s.totals;
        st.execute(params![
            s.fiscal_code,
            s.award_period_id,
            s.state.citizen_id,
            s.state.enabled,
            t.cashback.cents(),
            t.score_total.cents(),
            t.transactions,
            t.last_counted_us,
            t.id_trx_min_transaction,
            t.id_trx_pivot,
            t.pivot_cashback.map(|m| m.cents()),
            seq,
            now_us
        ])?;
        seq += 1;
    }
    Ok(())
}

pub fn import_period_totals(
    c: &Connection,
    period: i64,
    rows: &[ImportedTotals],
    now: OffsetDateTime,
) -> rusqlite::Result<TotalsImportOutcome> {
    let now_us = micros(now);
    let mut seq = next_seq(c)?;
    let mut out = TotalsImportOutcome::default();
    // One-row statements: an INSERT … SELECT would open a statement journal per row, whose
    // cost grows with the transaction's dirty pages.
    let mut who = c.prepare_cached("SELECT rowid, enabled FROM citizen WHERE fiscal_code = ?1")?;
    let mut st = c.prepare_cached(
        "INSERT INTO citizen_period (fiscal_code, award_period_id, citizen_id, enabled, cashback_cents, score_total_cents, \
         transactions, last_counted_at, seq, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (fiscal_code, award_period_id) DO NOTHING",
    )?;
    for r in rows {
        let Some((id, enabled)) =
            who.query_row([r.fiscal_code.as_str()], |x| Ok((x.get::<_, i64>(0)?, x.get::<_, bool>(1)?))).optional()?
        else {
            out.skipped += 1;
            continue;
        };
        let n = st.execute(params![
            r.fiscal_code.as_str(),
            period,
            id,
            enabled,
            r.cashback.cents(),
            r.score_total.cents(),
            r.transactions,
            r.last_counted_us,
            seq,
            now_us
        ])?;
        if n == 1 {
            out.created += 1;
            seq += 1;
        } else {
            out.skipped += 1;
        }
    }
    Ok(out)
}
