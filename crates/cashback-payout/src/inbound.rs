//! Files Consap sends back (§3.13), already decrypted: payment outcomes and complaint
//! "integrations". Both are `;`-separated, without header.
//!
//! The parsers never stop at a bad line: every line is either accepted (with its 1-based line
//! number) or rejected with a [`LineError`] naming the column. Common rules:
//! - a UTF-8 BOM at the start of the content is skipped; CRLF and LF line ends are accepted;
//!   blank lines are skipped (their numbers still count);
//! - a line longer than [`MAX_LINE_BYTES`] (without its line end), not valid UTF-8, or without
//!   exactly the expected number of columns is rejected with field `"line"`;
//! - ids: surrounding whitespace, control characters, BOMs, zero-width characters and quotes
//!   are stripped, then only 1 to 18 ASCII digits are accepted;
//! - text fields are trimmed; an empty optional field is `None`;
//! - dates are exactly `dd/MM/yyyy` and must exist (`31/02/2021` is rejected);
//! - amounts are integer cents: 1 to 15 ASCII digits, no sign, no separator (`12.5` and
//!   `12,50` are rejected). The original layout allowed 6 characters; wider is accepted.

use std::fmt;
use time::{Date, Month};

/// Longest accepted line, in bytes, without its line end.
pub const MAX_LINE_BYTES: usize = 4096;

/// The outcome of parsing a whole file: accepted lines and rejected lines, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    /// Accepted lines with their 1-based line number.
    pub lines: Vec<(u64, T)>,
    /// Rejected lines.
    pub rejected: Vec<LineError>,
}

/// A rejected line: its 1-based number, the column (or `"line"`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {reason}")]
pub struct LineError {
    pub line: u64,
    pub field: &'static str,
    pub reason: String,
}

/// Result of a transfer as Consap writes it (`esito_bonifico_s`). Parsed ignoring ASCII case
/// and surrounding whitespace; unknown texts are kept as [`PaymentResult::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PaymentResult {
    /// `ORDINE ESEGUITO`: the transfer was executed.
    Executed,
    /// `PRESA IN CARICO RIGETTATO`: the order was taken in charge, then rejected.
    Rejected,
    /// `KO`.
    Failed,
    /// Any other text, trimmed, as written.
    Other(String),
}

impl PaymentResult {
    /// The result for Consap's text `s`.
    pub fn parse(s: &str) -> PaymentResult {
        let s = s.trim();
        [PaymentResult::Executed, PaymentResult::Rejected, PaymentResult::Failed]
            .into_iter()
            .find(|known| known.as_str().eq_ignore_ascii_case(s))
            .unwrap_or_else(|| PaymentResult::Other(s.to_owned()))
    }

    /// Canonical text: `"ORDINE ESEGUITO"`, `"PRESA IN CARICO RIGETTATO"`, `"KO"`, or the kept
    /// text of [`PaymentResult::Other`].
    pub fn as_str(&self) -> &str {
        match self {
            PaymentResult::Executed => "ORDINE ESEGUITO",
            PaymentResult::Rejected => "PRESA IN CARICO RIGETTATO",
            PaymentResult::Failed => "KO",
            PaymentResult::Other(s) => s,
        }
    }
}

impl fmt::Display for PaymentResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the payment outcome file:
/// `uniqueID;result;resultReason;cro;executionDate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeLine {
    /// `uniqueID`: the award id of the paid row.
    pub award_id: i64,
    /// `result` (required).
    pub result: PaymentResult,
    /// `resultReason`.
    pub reason: Option<String>,
    /// `cro`: the bank reference of the transfer.
    pub cro: Option<String>,
    /// `executionDate`.
    pub execution_date: Option<Date>,
}

const OUTCOME_COLUMNS: [&str; 5] = ["uniqueID", "result", "resultReason", "cro", "executionDate"];

/// Parses a payment outcome file; see the [module](self) doc for the rules.
pub fn parse_outcomes(content: &[u8]) -> Parsed<OutcomeLine> {
    parse_lines(content, &OUTCOME_COLUMNS, |f| {
        Ok(OutcomeLine {
            award_id: f.id(0)?,
            result: f.result(1)?,
            reason: f.text(2),
            cro: f.text(3),
            execution_date: f.opt_date(4)?,
        })
    })
}

/// One line of the complaint "integration" file: a payment Consap made itself after a
/// complaint. Columns: `idConsap;idPagoPa;fiscalCode;iban;name;surname;amount;cashbackAmount;
/// jackpotAmount;resultReason;periodStart;periodEnd;result;cro;executionDate;idComplaint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationLine {
    /// `idConsap` (required).
    pub consap_id: i64,
    /// `idPagoPa`: the award id (uniqueID) the complaint is about, when there is one.
    pub related_award_id: Option<i64>,
    /// `fiscalCode` of the citizen (required).
    pub fiscal_code: String,
    /// `iban` credited.
    pub iban: Option<String>,
    /// `name` of the holder.
    pub name: Option<String>,
    /// `surname` of the holder.
    pub surname: Option<String>,
    /// `amount` in cents (required).
    pub amount_cents: i64,
    /// `cashbackAmount` in cents (required).
    pub cashback_cents: i64,
    /// `jackpotAmount` in cents (required).
    pub jackpot_cents: i64,
    /// `resultReason`.
    pub reason: Option<String>,
    /// `periodStart` of the award period (required).
    pub period_start: Date,
    /// `periodEnd` of the award period (required, not before `periodStart`).
    pub period_end: Date,
    /// `result` (required).
    pub result: PaymentResult,
    /// `cro`.
    pub cro: Option<String>,
    /// `executionDate`.
    pub execution_date: Option<Date>,
    /// `idComplaint`: the ticket id (required).
    pub ticket_id: i64,
}

const INTEGRATION_COLUMNS: [&str; 16] = [
    "idConsap",
    "idPagoPa",
    "fiscalCode",
    "iban",
    "name",
    "surname",
    "amount",
    "cashbackAmount",
    "jackpotAmount",
    "resultReason",
    "periodStart",
    "periodEnd",
    "result",
    "cro",
    "executionDate",
    "idComplaint",
];

/// Parses a complaint "integration" file; see the [module](self) doc for the rules.
pub fn parse_integrations(content: &[u8]) -> Parsed<IntegrationLine> {
    parse_lines(content, &INTEGRATION_COLUMNS, |f| {
        let line = IntegrationLine {
            consap_id: f.id(0)?,
            related_award_id: f.opt_id(1)?,
            fiscal_code: f.text(2).ok_or((f.names[2], "is empty".to_owned()))?,
            iban: f.text(3),
            name: f.text(4),
            surname: f.text(5),
            amount_cents: f.cents(6)?,
            cashback_cents: f.cents(7)?,
            jackpot_cents: f.cents(8)?,
            reason: f.text(9),
            period_start: f.date(10)?,
            period_end: f.date(11)?,
            result: f.result(12)?,
            cro: f.text(13),
            execution_date: f.opt_date(14)?,
            ticket_id: f.id(15)?,
        };
        if line.period_end < line.period_start {
            return Err((f.names[11], "is before periodStart".to_owned()));
        }
        Ok(line)
    })
}

/// A column error: the column name and the reason.
type FieldError = (&'static str, String);

/// The columns of one line, with accessors that name the column on error.
struct Fields<'a> {
    names: &'static [&'static str],
    values: Vec<&'a str>,
}

impl Fields<'_> {
    fn err<T>(&self, i: usize, reason: impl Into<String>) -> Result<T, FieldError> {
        Err((self.names[i], reason.into()))
    }

    fn text(&self, i: usize) -> Option<String> {
        Some(self.values[i].trim()).filter(|s| !s.is_empty()).map(str::to_owned)
    }

    fn opt_id(&self, i: usize) -> Result<Option<i64>, FieldError> {
        let s = self.values[i].trim_matches(|c: char| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '\u{FEFF}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '"' | '\'')
        });
        if s.is_empty() {
            return Ok(None);
        }
        if s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return self.err(i, format!("not a number: {s:?}"));
        }
        Ok(s.parse().ok())
    }

    fn id(&self, i: usize) -> Result<i64, FieldError> {
        self.opt_id(i)?.map_or_else(|| self.err(i, "is empty"), Ok)
    }

    fn cents(&self, i: usize) -> Result<i64, FieldError> {
        let s = self.values[i].trim();
        if s.is_empty() {
            return self.err(i, "is empty");
        }
        if s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return self.err(i, format!("not an amount in integer cents: {s:?}"));
        }
        s.parse().map_or_else(|_| self.err(i, "not an amount in integer cents"), Ok)
    }

    fn opt_date(&self, i: usize) -> Result<Option<Date>, FieldError> {
        let s = self.values[i].trim();
        if s.is_empty() {
            return Ok(None);
        }
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
        };
        let parts = (b.len() == 10 && b[2] == b'/' && b[5] == b'/')
            .then(|| Some((digits(0..2)?, digits(3..5)?, digits(6..10)?)))
            .flatten();
        let Some((day, month, year)) = parts else {
            return self.err(i, format!("not a dd/MM/yyyy date: {s:?}"));
        };
        let date = u8::try_from(month)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .and_then(|m| Date::from_calendar_date(year as i32, m, day as u8).ok());
        date.map_or_else(|| self.err(i, format!("no such date: {s:?}")), |d| Ok(Some(d)))
    }

    fn date(&self, i: usize) -> Result<Date, FieldError> {
        self.opt_date(i)?.map_or_else(|| self.err(i, "is empty"), Ok)
    }

    fn result(&self, i: usize) -> Result<PaymentResult, FieldError> {
        let s = self.values[i].trim();
        if s.is_empty() { self.err(i, "is empty") } else { Ok(PaymentResult::parse(s)) }
    }
}

/// Splits `content` into lines and columns, applies the common rules and `parse` to each.
fn parse_lines<T>(
    content: &[u8],
    names: &'static [&'static str],
    parse: impl Fn(&Fields<'_>) -> Result<T, FieldError>,
) -> Parsed<T> {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    let mut parsed = Parsed { lines: Vec::new(), rejected: Vec::new() };
    for (index, raw) in content.split(|b| *b == b'\n').enumerate() {
        let line = index as u64 + 1;
        let reject = |field, reason: String| LineError { line, field, reason };
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > MAX_LINE_BYTES {
            parsed.rejected.push(reject("line", format!("longer than {MAX_LINE_BYTES} bytes ({} bytes)", raw.len())));
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                parsed.rejected.push(reject("line", format!("invalid UTF-8 at byte {}", e.valid_up_to())));
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        let values: Vec<&str> = text.split(';').collect();
        if values.len() != names.len() {
            let reason = format!("expected {} columns separated by ';', found {}", names.len(), values.len());
            parsed.rejected.push(reject("line", reason));
            continue;
        }
        match parse(&Fields { names, values }) {
            Ok(value) => parsed.lines.push((line, value)),
            Err((field, reason)) => parsed.rejected.push(reject(field, reason)),
        }
    }
    parsed
}
