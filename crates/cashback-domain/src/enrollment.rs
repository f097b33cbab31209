//! Enrollment rules: citizens, opt-in, payment instruments, withdrawal.
//!
//! Storage backends call these pure decision functions inside their own transaction, so both
//! backends apply exactly the same rules and the rules are tested without a database.

use crate::ValidationError;

/// The channel IO (the citizen app) enrolls through.
pub const IO_CHANNEL: &str = "app-io-channel";

/// Consent to keep instruments after the programme (contract §4.3 `optInStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OptInStatus {
    #[default]
    NoReq,
    Accepted,
    Denied,
}

impl OptInStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoReq => "NOREQ",
            Self::Accepted => "ACCEPTED",
            Self::Denied => "DENIED",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "NOREQ" => Ok(Self::NoReq),
            "ACCEPTED" => Ok(Self::Accepted),
            "DENIED" => Ok(Self::Denied),
            _ => Err(ValidationError::new("optInStatus", "must be NOREQ, ACCEPTED or DENIED")),
        }
    }
}

/// Status of a payment instrument (the app reads it as `Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstrumentStatus {
    Active,
    Inactive,
}

impl InstrumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "INACTIVE" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// An enrollment channel: `app-io-channel` or an issuer's channel code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(String);

impl Channel {
    /// 1–20 characters of `[A-Za-z0-9_-]` (the original column was `varchar(20)`).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        if s.is_empty() || s.len() > 20 {
            return Err(ValidationError::new("channel", "must be 1 to 20 characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(ValidationError::new("channel", "may contain only letters, digits, '-' and '_'"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn io() -> Self {
        Self(IO_CHANNEL.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_io(&self) -> bool {
        self.0 == IO_CHANNEL
    }
}

/// What we know of a citizen when deciding an enrollment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CitizenState {
    pub enabled: bool,
    pub opt_in: OptInStatus,
}

/// What a citizen PUT does (contract §4.4 rule 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CitizenEnrollDecision {
    /// New citizen: enabled, T&C timestamp = now, opt-in as requested (NOREQ if absent).
    Create { opt_in: OptInStatus },
    /// Withdrawn citizen comes back: enabled, new T&C timestamp; opt-in is not taken from the call.
    Reenable,
    /// Enabled citizen, opt-in moves one way from NOREQ to ACCEPTED/DENIED.
    SetOptIn(OptInStatus),
    /// Nothing changes; the stored record is returned.
    Unchanged,
}

pub fn decide_citizen_enroll(
    existing: Option<CitizenState>,
    requested_opt_in: Option<OptInStatus>,
) -> CitizenEnrollDecision {
    match existing {
        None => CitizenEnrollDecision::Create { opt_in: requested_opt_in.unwrap_or_default() },
        Some(c) if !c.enabled => CitizenEnrollDecision::Reenable,
        Some(c) => match requested_opt_in {
            Some(req) if c.opt_in == OptInStatus::NoReq && req != OptInStatus::NoReq => {
                CitizenEnrollDecision::SetOptIn(req)
            }
            _ => CitizenEnrollDecision::Unchanged,
        },
    }
}

/// What we know of an instrument when deciding an enrollment or deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstrumentState<'a> {
    pub owner: &'a str,
    pub status: InstrumentStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrumentEnrollDecision {
    /// Unknown hpan: insert ACTIVE, open an activation window.
    Insert,
    /// Known but inactive: (re)assign to the caller, reactivate, open a new window.
    Reactivate,
    /// Already active for the caller: no-op, idempotent 200.
    AlreadyActive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentEnrollRefusal {
    /// The citizen is unknown or withdrawn (HTTP 403).
    #[error("citizen is not enrolled")]
    CitizenNotEnabled,
    /// The instrument is active for another citizen (HTTP 409).
    #[error("instrument is active for another citizen")]
    OwnedByOther,
}

pub fn decide_instrument_enroll(
    citizen_enabled: bool,
    existing: Option<InstrumentState<'_>>,
    caller: &str,
) -> Result<InstrumentEnrollDecision, InstrumentEnrollRefusal> {
    if !citizen_enabled {
        return Err(InstrumentEnrollRefusal::CitizenNotEnabled);
    }
    match existing {
        None => Ok(InstrumentEnrollDecision::Insert),
        Some(i) if i.status == InstrumentStatus::Inactive => Ok(InstrumentEnrollDecision::Reactivate),
        Some(i) if i.owner == caller => Ok(InstrumentEnrollDecision::AlreadyActive),
        Some(_) => Err(InstrumentEnrollRefusal::OwnedByOther),
    }
}

/// How a reader may see an instrument (contract §4.4 rule 4, without the original's leak).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrumentVisibility {
    /// The caller owns it (active or not): full resource.
    Owner,
    /// Active for someone else: 409, nothing disclosed.
    ActiveForOther,
    /// Inactive, last owned by someone else: status only, no previous owner's fiscal code.
    InactiveForOther,
}

pub fn instrument_visibility(state: InstrumentState<'_>, caller: &str) -> InstrumentVisibility {
    if state.owner == caller {
        InstrumentVisibility::Owner
    } else if state.status == InstrumentStatus::Active {
        InstrumentVisibility::ActiveForOther
    } else {
        InstrumentVisibility::InactiveForOther
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrumentDeleteDecision {
    /// Close the open activation window.
    Deactivate,
    /// Already inactive and the caller was its last owner: idempotent 204.
    AlreadyInactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InstrumentDeleteRefusal {
    #[error("instrument not found")]
    NotFound,
    #[error("instrument belongs to another citizen")]
    OwnedByOther,
}

/// `caller`: the fiscal code the delete is made for; `None` for trusted callers that address
/// the instrument by hpan only (e.g. an issuer that proved possession of the PAN).
pub fn decide_instrument_delete(
    existing: Option<InstrumentState<'_>>,
    caller: Option<&str>,
) -> Result<InstrumentDeleteDecision, InstrumentDeleteRefusal> {
    let Some(state) = existing else {
        return Err(InstrumentDeleteRefusal::NotFound);
    };
    if let Some(cf) = caller
        && state.owner != cf
    {
        return Err(if state.status == InstrumentStatus::Active {
            InstrumentDeleteRefusal::OwnedByOther
        } else {
            InstrumentDeleteRefusal::NotFound
        });
    }
    Ok(match state.status {
        InstrumentStatus::Active => InstrumentDeleteDecision::Deactivate,
        InstrumentStatus::Inactive => InstrumentDeleteDecision::AlreadyInactive,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WithdrawalRefusal {
    /// An issuer may withdraw a citizen only when every active instrument came through it
    /// (the original's intended 400 "too many channels", which it never actually returned).
    #[error("the citizen has active instruments enrolled through other channels")]
    TooManyChannels,
}

/// Withdrawal channel rule (bpd-domain §2.2): IO may withdraw whatever the channels; an issuer
/// only if all the citizen's active instruments were enrolled through its own channel.
pub fn check_withdrawal_channels<'a>(
    caller: &Channel,
    active_instrument_channels: impl IntoIterator<Item = &'a str>,
) -> Result<(), WithdrawalRefusal> {
    if caller.is_io() {
        return Ok(());
    }
    for ch in active_instrument_channels {
        if ch != caller.as_str() {
            return Err(WithdrawalRefusal::TooManyChannels);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "RSSMRA85T10A562S";
    const B: &str = "VRDGPP80A01H501U";

    fn st(enabled: bool, opt_in: OptInStatus) -> Option<CitizenState> {
        Some(CitizenState { enabled, opt_in })
    }

    #[test]
    fn citizen_enroll_rules() {
        use CitizenEnrollDecision::*;
        assert_eq!(decide_citizen_enroll(None, None), Create { opt_in: OptInStatus::NoReq });
        assert_eq!(decide_citizen_enroll(None, Some(OptInStatus::Accepted)), Create { opt_in: OptInStatus::Accepted });
        assert_eq!(decide_citizen_enroll(st(false, OptInStatus::NoReq), Some(OptInStatus::Denied)), Reenable);
        assert_eq!(
            decide_citizen_enroll(st(true, OptInStatus::NoReq), Some(OptInStatus::Denied)),
            SetOptIn(OptInStatus::Denied)
        );
        // One way only.
        assert_eq!(decide_citizen_enroll(st(true, OptInStatus::Denied), Some(OptInStatus::Accepted)), Unchanged);
        assert_eq!(decide_citizen_enroll(st(true, OptInStatus::Accepted), Some(OptInStatus::NoReq)), Unchanged);
        assert_eq!(decide_citizen_enroll(st(true, OptInStatus::NoReq), Some(OptInStatus::NoReq)), Unchanged);
        assert_eq!(decide_citizen_enroll(st(true, OptInStatus::NoReq), None), Unchanged);
    }

    #[test]
    fn instrument_enroll_rules() {
        use InstrumentEnrollDecision::*;
        let active_a = Some(InstrumentState { owner: A, status: InstrumentStatus::Active });
        let inactive_a = Some(InstrumentState { owner: A, status: InstrumentStatus::Inactive });
        assert_eq!(decide_instrument_enroll(false, None, A), Err(InstrumentEnrollRefusal::CitizenNotEnabled));
        assert_eq!(decide_instrument_enroll(true, None, A), Ok(Insert));
        assert_eq!(decide_instrument_enroll(true, active_a, A), Ok(AlreadyActive));
        assert_eq!(decide_instrument_enroll(true, active_a, B), Err(InstrumentEnrollRefusal::OwnedByOther));
        assert_eq!(decide_instrument_enroll(true, inactive_a, B), Ok(Reactivate));
        assert_eq!(decide_instrument_enroll(true, inactive_a, A), Ok(Reactivate));
    }

    #[test]
    fn visibility_never_leaks_previous_owner() {
        let inactive_a = InstrumentState { owner: A, status: InstrumentStatus::Inactive };
        let active_a = InstrumentState { owner: A, status: InstrumentStatus::Active };
        assert_eq!(instrument_visibility(inactive_a, A), InstrumentVisibility::Owner);
        assert_eq!(instrument_visibility(inactive_a, B), InstrumentVisibility::InactiveForOther);
        assert_eq!(instrument_visibility(active_a, B), InstrumentVisibility::ActiveForOther);
    }

    #[test]
    fn instrument_delete_rules() {
        use InstrumentDeleteDecision::*;
        let active_a = Some(InstrumentState { owner: A, status: InstrumentStatus::Active });
        let inactive_a = Some(InstrumentState { owner: A, status: InstrumentStatus::Inactive });
        assert_eq!(decide_instrument_delete(None, Some(A)), Err(InstrumentDeleteRefusal::NotFound));
        assert_eq!(decide_instrument_delete(active_a, Some(A)), Ok(Deactivate));
        assert_eq!(decide_instrument_delete(active_a, None), Ok(Deactivate));
        assert_eq!(decide_instrument_delete(active_a, Some(B)), Err(InstrumentDeleteRefusal::OwnedByOther));
        assert_eq!(decide_instrument_delete(inactive_a, Some(A)), Ok(AlreadyInactive));
        assert_eq!(decide_instrument_delete(inactive_a, Some(B)), Err(InstrumentDeleteRefusal::NotFound));
    }

    #[test]
    fn withdrawal_channel_rule() {
        let bank = Channel::parse("bank-x").unwrap();
        assert_eq!(check_withdrawal_channels(&Channel::io(), ["bank-x", "bank-y"]), Ok(()));
        assert_eq!(check_withdrawal_channels(&bank, ["bank-x", "bank-x"]), Ok(()));
        assert_eq!(check_withdrawal_channels(&bank, std::iter::empty()), Ok(()));
        assert_eq!(check_withdrawal_channels(&bank, ["bank-x", IO_CHANNEL]), Err(WithdrawalRefusal::TooManyChannels));
    }

    #[test]
    fn channel_and_opt_in_parsing() {
        assert!(Channel::parse("").is_err());
        assert!(Channel::parse("a".repeat(21).as_str()).is_err());
        assert!(Channel::parse("bad channel").is_err());
        assert!(Channel::io().is_io());
        assert_eq!(OptInStatus::parse("ACCEPTED"), Ok(OptInStatus::Accepted));
        assert!(OptInStatus::parse("accepted").is_err());
    }
}
