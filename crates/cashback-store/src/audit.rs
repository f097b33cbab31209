//! Audit trail: who changed what, when.
//!
//! Every state change of a citizen, an instrument, an IBAN, a withdrawal, a credential, an award
//! period, a period close, a payout run or file, an outcome file and a complaint is recorded by
//! the backend **in the same database transaction as the change** (no change without its event,
//! no event without its change), in an append-only table (updates and deletes are refused by
//! the database itself). Operators query it with `cashback admin audit` or
//! `GET /console/api/audit`.
//!
//! *Who* is the authenticated principal of the request being served: the API layer wraps every
//! request in [`request_scope`] and the authentication extractors call [`set_actor`]; the CLI
//! wraps its commands in [`with_actor`]. A change made outside any scope (the scheduler's jobs)
//! is recorded as [`SYSTEM`]. The backend reads [`current_actor`] when the store method is
//! called, on the caller's task.
//!
//! Privacy: an event never carries a clear PAN (instruments are named by their hpan) nor a full
//! IBAN (only [`mask_iban`]'s country, check digits and last four characters).

use std::cell::RefCell;
use std::future::Future;

use time::OffsetDateTime;

/// The actor of changes made outside any request or CLI scope (scheduled jobs).
pub const SYSTEM: &str = "system";

tokio::task_local! {
    static ACTOR: RefCell<Option<String>>;
}

/// Run `f` with an empty actor slot that [`set_actor`] fills (one per HTTP request).
pub async fn request_scope<F: Future>(f: F) -> F::Output {
    ACTOR.scope(RefCell::new(None), f).await
}

/// Run `f` acting as `actor` (the CLI: `cli:<user>`).
pub async fn with_actor<F: Future>(actor: String, f: F) -> F::Output {
    ACTOR.scope(RefCell::new(Some(actor)), f).await
}

/// Name the authenticated principal of the current request (`citizen:<cf>`, `issuer:<id>`, …).
/// Outside a scope this does nothing.
pub fn set_actor(actor: String) {
    let _ = ACTOR.try_with(|slot| *slot.borrow_mut() = Some(actor));
}

/// The actor of the current task: the principal set for this request or CLI command, else
/// [`SYSTEM`].
pub fn current_actor() -> String {
    ACTOR.try_with(|slot| slot.borrow().clone()).ok().flatten().unwrap_or_else(|| SYSTEM.to_owned())
}

/// `IT60X0542811101000000123456` → `IT60…3456`: enough to tell two IBANs apart in an audit,
/// not enough to pay into one.
pub fn mask_iban(iban: &str) -> String {
    let chars: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    if chars.len() <= 8 {
        return "…".to_owned();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// What changed: one of a closed set of actions (the `action` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    CitizenEnrolled,
    CitizenPayoffSet,
    CitizenWithdrawn,
    CitizenErased,
    InstrumentEnrolled,
    InstrumentDeleted,
    EnrollmentsImported,
    CredentialCreated,
    CredentialRevoked,
    CredentialCertBound,
    AwardPeriodSet,
    PeriodClosed,
    PayoutPrepared,
    PayoutFileWritten,
    OutcomesApplied,
    IntegrationsApplied,
    ComplaintFiled,
    ComplaintDecided,
    AcquirerFileAccepted,
}

impl AuditAction {
    pub const ALL: [AuditAction; 19] = [
        Self::CitizenEnrolled,
        Self::CitizenPayoffSet,
        Self::CitizenWithdrawn,
        Self::CitizenErased,
        Self::InstrumentEnrolled,
        Self::InstrumentDeleted,
        Self::EnrollmentsImported,
        Self::CredentialCreated,
        Self::CredentialRevoked,
        Self::CredentialCertBound,
        Self::AwardPeriodSet,
        Self::PeriodClosed,
        Self::PayoutPrepared,
        Self::PayoutFileWritten,
        Self::OutcomesApplied,
        Self::IntegrationsApplied,
        Self::ComplaintFiled,
        Self::ComplaintDecided,
        Self::AcquirerFileAccepted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CitizenEnrolled => "citizen.enrolled",
            Self::CitizenPayoffSet => "citizen.payoff_set",
            Self::CitizenWithdrawn => "citizen.withdrawn",
            Self::CitizenErased => "citizen.erased",
            Self::InstrumentEnrolled => "instrument.enrolled",
            Self::InstrumentDeleted => "instrument.deleted",
            Self::EnrollmentsImported => "enrollments.imported",
            Self::CredentialCreated => "credential.created",
            Self::CredentialRevoked => "credential.revoked",
            Self::CredentialCertBound => "credential.cert_bound",
            Self::AwardPeriodSet => "award_period.set",
            Self::PeriodClosed => "period.closed",
            Self::PayoutPrepared => "payout.prepared",
            Self::PayoutFileWritten => "payout.file_written",
            Self::OutcomesApplied => "payout.outcomes_applied",
            Self::IntegrationsApplied => "payout.integrations_applied",
            Self::ComplaintFiled => "complaint.filed",
            Self::ComplaintDecided => "complaint.decided",
            Self::AcquirerFileAccepted => "acquirer_file.accepted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// [`Self::parse`], or the reason naming every known action (API and CLI filters).
    pub fn parse_filter(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
            format!("must be one of {}", known.join(", "))
        })
    }
}

/// An event about to be recorded (the backend adds the id and the actor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub action: AuditAction,
    /// What the change is about: a fiscal code, an hpan (hex), `period:<id>`, `credential:<id>`, …
    pub subject: String,
    /// The change, as a small JSON object (never a clear PAN or a full IBAN).
    pub detail: String,
}

impl NewAuditEvent {
    pub fn new(action: AuditAction, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { action, subject: subject.into(), detail: detail.into() }
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Increasing in commit order within one database.
    pub id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

/// Filters of an audit query; all optional, combined with AND; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub subject: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Only events with an id below this one (paging backwards).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// The most events one query returns.
pub const AUDIT_QUERY_MAX: u32 = 1000;

/// The events of each change, built here so both backends record exactly the same ones. Each
/// returns `None` when the outcome says nothing changed (a repeated request is not a change).
pub mod events {
    use super::{AuditAction as A, NewAuditEvent, mask_iban};
    use crate::{
        BeginFile, CloseOutcome, ComplaintDecision, Credential, DecideComplaintOutcome, DeleteInstrumentOutcome,
        EnrollInstrumentOutcome, FileComplaintOutcome, ImportOutcome, InboundKind, InboundOutcome, NewAcquirerFile,
        Payoff, PayoutPreparation, WithdrawOutcome,
    };
    use cashback_domain::{AwardPeriod, FiscalCode, Hpan};
    use serde_json::json;

    fn ev(action: A, subject: impl Into<String>, detail: serde_json::Value) -> NewAuditEvent {
        NewAuditEvent::new(action, subject, detail.to_string())
    }

    /// `change`: `created`, `re-enabled` or `opt-in`.
    pub fn citizen_enrolled(cf: &FiscalCode, change: &str, channel: &str, opt_in: &str) -> NewAuditEvent {
        ev(A::CitizenEnrolled, cf.as_str(), json!({ "change": change, "channel": channel, "optInStatus": opt_in }))
    }

    pub fn payoff_set(cf: &FiscalCode, p: &Payoff) -> NewAuditEvent {
        ev(
            A::CitizenPayoffSet,
            cf.as_str(),
            json!({ "iban": mask_iban(&p.iban), "instrType": p.instr_type, "checkStatus": p.check_status }),
        )
    }

    pub fn withdrawn(cf: &FiscalCode, channel: &str, out: &WithdrawOutcome) -> Option<NewAuditEvent> {
        match out {
            WithdrawOutcome::Withdrawn { instruments } => Some(ev(
                A::CitizenWithdrawn,
                cf.as_str(),
                json!({ "channel": channel, "instrumentsDeactivated": instruments }),
            )),
            _ => None,
        }
    }

    pub fn instrument_enrolled(hpan: &Hpan, out: &EnrollInstrumentOutcome) -> Option<NewAuditEvent> {
        match out {
            EnrollInstrumentOutcome::Activated(i) => Some(ev(
                A::InstrumentEnrolled,
                hpan.to_string(),
                json!({ "fiscalCode": i.fiscal_code.as_str(), "channel": i.channel }),
            )),
            _ => None,
        }
    }

    pub fn instrument_deleted(
        hpan: &Hpan,
        owner: Option<&FiscalCode>,
        out: &DeleteInstrumentOutcome,
    ) -> Option<NewAuditEvent> {
        match out {
            DeleteInstrumentOutcome::Deactivated => {
                Some(ev(A::InstrumentDeleted, hpan.to_string(), json!({ "fiscalCode": owner.map(FiscalCode::as_str) })))
            }
            _ => None,
        }
    }

    pub fn enrollments_imported(out: &ImportOutcome) -> Option<NewAuditEvent> {
        (out.citizens_created + out.instruments_created > 0).then(|| {
            ev(
                A::EnrollmentsImported,
                "import",
                json!({
                    "citizensCreated": out.citizens_created,
                    "instrumentsCreated": out.instruments_created,
                    "instrumentsWithoutEnabledOwner": out.instruments_without_enabled_owner,
                }),
            )
        })
    }

    pub fn credential_created(c: &Credential) -> NewAuditEvent {
        ev(
            A::CredentialCreated,
            format!("credential:{}", c.id),
            json!({ "kind": c.kind.as_str(), "scope": c.scope, "clientCertSha256": c.client_cert_sha256 }),
        )
    }

    pub fn credential_revoked(id: &str, revoked: bool) -> Option<NewAuditEvent> {
        revoked.then(|| ev(A::CredentialRevoked, format!("credential:{id}"), json!({})))
    }

    /// A client certificate bound to a credential (`Some` fingerprint) or unbound (`None`).
    pub fn credential_cert_bound(id: &str, cert_sha256: Option<&str>, changed: bool) -> Option<NewAuditEvent> {
        changed
            .then(|| ev(A::CredentialCertBound, format!("credential:{id}"), json!({ "clientCertSha256": cert_sha256 })))
    }

    pub fn award_period_set(p: &AwardPeriod) -> NewAuditEvent {
        ev(
            A::AwardPeriodSet,
            format!("period:{}", p.id),
            json!({ "start": p.start.to_string(), "end": p.end.to_string(), "gracePeriodDays": p.grace_period_days }),
        )
    }

    pub fn acquirer_file_accepted(f: &NewAcquirerFile, out: &BeginFile) -> Option<NewAuditEvent> {
        match out {
            BeginFile::Started(file) => Some(ev(
                A::AcquirerFileAccepted,
                format!("acquirer-file:{}", f.name),
                json!({ "fileId": file.id, "abi": f.abi, "size": f.size, "sha256": f.sha256 }),
            )),
            _ => None,
        }
    }

    pub fn period_closed(out: &CloseOutcome) -> Option<NewAuditEvent> {
        match out {
            CloseOutcome::Closed(s) => Some(ev(
                A::PeriodClosed,
                format!("period:{}", s.award_period_id),
                json!({
                    "citizens": s.citizens,
                    "awards": s.awards,
                    "notEligible": s.not_eligible,
                    "superCashbackWinners": s.super_cashback_winners,
                    "amountCents": s.amount.cents(),
                }),
            )),
            CloseOutcome::AlreadyClosed(_) => None,
        }
    }

    pub fn payout_prepared(p: &PayoutPreparation) -> Option<NewAuditEvent> {
        let run = p.files.first().map(|f| f.run_id);
        (run.is_some() || p.iban_filled + p.reissued > 0).then(|| {
            ev(
                A::PayoutPrepared,
                run.map_or_else(|| "payout".to_owned(), |r| format!("payout-run:{r}")),
                json!({
                    "files": p.files.iter().map(|f| json!({
                        "payoutFileId": f.payout_file_id, "name": f.name, "rows": f.rows, "amountCents": f.amount.cents(),
                    })).collect::<Vec<_>>(),
                    "ibanFilled": p.iban_filled,
                    "reissued": p.reissued,
                    "waitingForIban": p.waiting_for_iban,
                }),
            )
        })
    }

    pub fn payout_file_written(payout_file_id: i64, sha256: &str) -> NewAuditEvent {
        ev(A::PayoutFileWritten, format!("payout-file:{payout_file_id}"), json!({ "sha256": sha256 }))
    }

    pub fn inbound_applied(kind: InboundKind, name: &str, sha256: &str, out: &InboundOutcome) -> Option<NewAuditEvent> {
        let InboundOutcome::Applied { applied, unchanged, rejected } = out else { return None };
        let action = match kind {
            InboundKind::Outcomes => A::OutcomesApplied,
            InboundKind::Integrations => A::IntegrationsApplied,
        };
        Some(ev(
            action,
            format!("inbound-file:{name}"),
            json!({ "sha256": sha256, "applied": applied, "unchanged": unchanged, "rejected": rejected.len() }),
        ))
    }

    pub fn complaint_filed(out: &FileComplaintOutcome) -> Option<NewAuditEvent> {
        let FileComplaintOutcome::Created(c) = out else { return None };
        Some(ev(
            A::ComplaintFiled,
            format!("complaint:{}", c.complaint_id),
            json!({ "fiscalCode": c.fiscal_code, "awardPeriodId": c.award_period_id, "kind": c.kind.as_str() }),
        ))
    }

    pub fn complaint_decided(decision: &ComplaintDecision, out: &DecideComplaintOutcome) -> Option<NewAuditEvent> {
        let DecideComplaintOutcome::Decided(c) = out else { return None };
        let detail = match decision {
            ComplaintDecision::Accept { correction, note } => json!({
                "decision": "ACCEPTED", "correctionCents": correction.cents(),
                "correctionAwardId": c.correction_award_id, "note": note, "fiscalCode": c.fiscal_code,
            }),
            ComplaintDecision::Reject { note } => {
                json!({ "decision": "REJECTED", "note": note, "fiscalCode": c.fiscal_code })
            }
        };
        Some(ev(A::ComplaintDecided, format!("complaint:{}", c.complaint_id), detail))
    }

    /// Counts of what the erasure removed (instruments, transactions unlinked, awards, complaints).
    pub fn citizen_erased(
        cf: &str,
        instruments: u64,
        transactions: u64,
        awards: u64,
        complaints: u64,
    ) -> NewAuditEvent {
        ev(
            A::CitizenErased,
            cf,
            json!({
                "instruments": instruments, "transactionsUnlinked": transactions, "awards": awards, "complaints": complaints,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_ibans() {
        assert_eq!(mask_iban("IT60X0542811101000000123456"), "IT60…3456");
        assert_eq!(mask_iban("IT60 X054 2811 1010 0000 0123 456"), "IT60…3456");
        assert_eq!(mask_iban("short"), "…");
    }

    #[test]
    fn actions_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("nope"), None);
    }

    #[tokio::test]
    async fn actor_scopes() {
        assert_eq!(current_actor(), SYSTEM);
        set_actor("ignored".into());
        assert_eq!(current_actor(), SYSTEM);
        request_scope(async {
            assert_eq!(current_actor(), SYSTEM);
            set_actor("citizen:X".into());
            assert_eq!(current_actor(), "citizen:X");
        })
        .await;
        with_actor("cli:root".into(), async { assert_eq!(current_actor(), "cli:root") }).await;
    }
}
