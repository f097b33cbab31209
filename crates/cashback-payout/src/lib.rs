//! Formats of the payout agent's files.
//!
//! - [`consap`]: the payment-order CSV sent to Consap (§3.12 of the domain reference), its
//!   SHA-256 sidecar, its file name and the split into chunks;
//! - [`sepa`]: the same payments as a SEPA credit transfer initiation (ISO 20022
//!   `pain.001.001.03`), byte-deterministic;
//! - [`inbound`]: the files Consap sends back (§3.13): payment outcomes and complaint
//!   "integrations", parsed line by line without ever stopping at a bad line.
//!
//! Invariants: pure functions on bytes. No I/O, no clock (every date and time is a parameter),
//! no floats for amounts (all amounts are `i64` euro cents).

pub mod consap;
pub mod inbound;
pub mod sepa;

pub use consap::{ControlTotals, chunk_plan, consap_file, consap_file_name, consap_row, sha256_sidecar};
pub use inbound::{IntegrationLine, LineError, OutcomeLine, Parsed, PaymentResult, parse_integrations, parse_outcomes};
pub use sepa::{SepaBatch, SepaDebtor, pain001};

use time::Date;

/// One award to pay: a row of `bpd_award_winner` (§2.7) with the citizen's payout data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRow {
    /// `id_n`, the "uniqueID" exchanged with Consap; written as 9 zero-padded digits.
    pub award_id: i64,
    /// `fiscal_code_s`: the citizen who won the award.
    pub citizen_fiscal_code: String,
    /// `account_holder_cf_s`: fiscal code of the account holder; `None` = the citizen.
    pub holder_fiscal_code: Option<String>,
    /// `payoff_instr_s`: the IBAN to credit.
    pub iban: String,
    /// `account_holder_name_s`.
    pub holder_name: Option<String>,
    /// `account_holder_surname_s`.
    pub holder_surname: Option<String>,
    /// `amount_n` in cents: cashback + jackpot.
    pub amount_cents: i64,
    /// `cashback_n` in cents.
    pub cashback_cents: i64,
    /// `jackpot_n` in cents (Super Cashback prize, or 0).
    pub jackpot_cents: i64,
    /// `typology_s`: `"01"` cashback, `"02"` cashback ≤ 0, `"03"` cashback + Super Cashback.
    pub typology: String,
    /// `award_period_id_n`.
    pub award_period_id: i64,
    /// `aw_period_start_d`.
    pub period_start: Date,
    /// `aw_period_end_d`.
    pub period_end: Date,
    /// `check_instr_status_s`: outcome of the IBAN ownership check.
    pub check_instr_status: Option<String>,
    /// `technical_account_holder_s`: set when the IBAN is an issuer's technical account.
    pub technical_account_holder: Option<String>,
    /// `issuer_card_id_s`: the card the issuer credits on its technical account.
    pub issuer_card_id: Option<String>,
    /// `ticket_id_n`: complaint id.
    pub ticket_id: Option<i64>,
    /// `related_id_n`: the award row this one corrects.
    pub related_id: Option<i64>,
}

impl PayoutRow {
    /// The account holder's fiscal code: [`PayoutRow::holder_fiscal_code`], or the citizen's.
    pub fn holder_cf(&self) -> &str {
        self.holder_fiscal_code.as_deref().unwrap_or(&self.citizen_fiscal_code)
    }

    /// Whether the IBAN is an issuer's technical account (`technical_account_holder` present and
    /// not blank).
    pub fn is_technical_account(&self) -> bool {
        self.technical_account_holder.as_deref().is_some_and(|h| !h.trim().is_empty())
    }
}

/// The payment reason ("causale") of a row, as in column 7 of the Consap CSV:
/// `"<id9> - Cashback di Stato - dal <dd/MM/yyyy> al <dd/MM/yyyy>"`, then
/// - `" - <citizen CF>"` when the holder's fiscal code differs from the citizen's (ASCII case
///   ignored) or the account is technical;
/// - `" - <issuerCardId>"` when the account is technical and has a (non-blank) card id.
pub fn payment_reason(row: &PayoutRow) -> String {
    let mut reason = format!(
        "{} - Cashback di Stato - dal {} al {}",
        padded(row.award_id, 9),
        dmy(row.period_start),
        dmy(row.period_end)
    );
    let technical = row.is_technical_account();
    if technical || !row.holder_cf().trim().eq_ignore_ascii_case(row.citizen_fiscal_code.trim()) {
        reason.push_str(" - ");
        reason.push_str(&row.citizen_fiscal_code);
    }
    if let Some(card) = row.issuer_card_id.as_deref().filter(|c| technical && !c.trim().is_empty()) {
        reason.push_str(" - ");
        reason.push_str(card);
    }
    reason
}

/// A payout file that cannot be written as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutFormatError {
    /// One row cannot be paid as it is; `field` is the [`PayoutRow`] field name.
    #[error("award {award_id}: {field}: {reason}")]
    Row { award_id: i64, field: &'static str, reason: String },
    /// The batch itself (header, debtor, set of rows) is invalid; `field` names it.
    #[error("{field}: {reason}")]
    Batch { field: &'static str, reason: String },
}

/// `n` zero-padded to at least `width` digits, sign first (`-0042` for -42 at width 4), never
/// truncated. Same output as Java's `DecimalFormat("0000")`.
pub(crate) fn padded(n: i64, width: usize) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{:0width$}", n.unsigned_abs())
}

/// `dd/MM/yyyy`.
pub(crate) fn dmy(d: Date) -> String {
    format!("{:02}/{:02}/{:04}", d.day(), u8::from(d.month()), d.year())
}

/// Exact decimal euros from cents: `"12.34"`, `"0.05"` (no floats).
pub(crate) fn euros(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(padded(42, 9), "000000042");
        assert_eq!(padded(1_234_567, 6), "1234567");
        assert_eq!(padded(0, 6), "000000");
        assert_eq!(padded(-42, 6), "-000042");
        assert_eq!(padded(i64::MIN, 2), "-9223372036854775808");
        assert_eq!(euros(5), "0.05");
        assert_eq!(euros(180_005), "1800.05");
        assert_eq!(euros(-150), "-1.50");
        assert_eq!(euros(0), "0.00");
        assert_eq!(dmy(time::macros::date!(2021 - 02 - 03)), "03/02/2021");
    }
}
