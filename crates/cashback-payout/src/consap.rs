//! The payment-order CSV sent to Consap (§3.12), its file name, SHA-256 sidecar and chunks.
//!
//! One line per award, 17 `;`-separated columns, no header, `\n` line ends:
//!
//! | # | Content |
//! |---|---|
//! | 1 | award id, 9 zero-padded digits |
//! | 2 | account holder fiscal code (the citizen's when `holder_fiscal_code` is `None`) |
//! | 3 | IBAN |
//! | 4, 5 | holder name, holder surname (empty when `None`) |
//! | 6 | amount in cents, zero-padded to at least 6 digits |
//! | 7 | payment reason, see [`payment_reason`] |
//! | 8 | typology |
//! | 9 | award period id, 2 zero-padded digits |
//! | 10, 11 | period start and end, `dd/MM/yyyy` |
//! | 12, 13 | cashback and jackpot in cents, zero-padded to at least 6 digits |
//! | 14 | check-IBAN status (empty when `None`) |
//! | 15 | technical account holder (empty when `None`) |
//! | 16, 17 | ticket id, related id (empty when `None`) |
//!
//! Deliberate differences from the original service (§8 item 14):
//! - amounts are zero-padded to *at least* 6 digits and never truncated: €10 000 or more is
//!   written with as many digits as needed (`1234567` for €12 345.67), where the original
//!   layout assumed amounts below €10 000 (to be confirmed with Consap before such a file);
//! - a missing value is an empty field, never the literal `null` that Java's string
//!   concatenation wrote (notably for the technical account holder);
//! - text fields cannot break the layout: every `;` and every control character (CR, LF, tab,
//!   …) in a text field is replaced by one space, so a row is always exactly one line of 17
//!   columns;
//! - the sidecar is in `sha256sum` format (`<hex>  <file name>`) and named
//!   `<file name>.sha256sum` (the original wrote only the hex digest, in `<name>.sha256sum`
//!   without `.csv`), so `sha256sum -c` can check it.

use crate::{PayoutRow, dmy, padded, payment_reason};
use sha2::{Digest, Sha256};
use std::ops::Range;
use time::PrimitiveDateTime;

/// Appends one CSV line (17 columns and `\n`) for `row` to `out`. See the [module](self) doc.
pub fn consap_row(row: &PayoutRow, out: &mut Vec<u8>) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    let fields: [String; 17] = [
        padded(row.award_id, 9),
        row.holder_cf().to_owned(),
        row.iban.clone(),
        opt(&row.holder_name),
        opt(&row.holder_surname),
        padded(row.amount_cents, 6),
        payment_reason(row),
        row.typology.clone(),
        padded(row.award_period_id, 2),
        dmy(row.period_start),
        dmy(row.period_end),
        padded(row.cashback_cents, 6),
        padded(row.jackpot_cents, 6),
        opt(&row.check_instr_status),
        opt(&row.technical_account_holder),
        num(row.ticket_id),
        num(row.related_id),
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        for c in field.chars() {
            let c = if c == ';' || c.is_control() { ' ' } else { c };
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out.push(b'\n');
}

/// The whole CSV of `rows`, one [`consap_row`] line each, in order.
pub fn consap_file(rows: &[PayoutRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 200);
    for row in rows {
        consap_row(row, &mut out);
    }
    out
}

/// `CSTAR.CONSAP.BANKT.<ddMMyyyy.HHmmss>.<NN>_<TT>.<rows>.csv`: `created` is the local time of
/// the run, `chunk` the 1-based chunk number, `total_chunks` the number of chunks (both at
/// least 2 digits), `rows` the number of lines in this chunk.
pub fn consap_file_name(created: PrimitiveDateTime, chunk: u32, total_chunks: u32, rows: usize) -> String {
    format!(
        "CSTAR.CONSAP.BANKT.{:02}{:02}{:04}.{:02}{:02}{:02}.{chunk:02}_{total_chunks:02}.{rows}.csv",
        created.day(),
        u8::from(created.month()),
        created.year(),
        created.hour(),
        created.minute(),
        created.second(),
    )
}

/// The SHA-256 sidecar of a file: its name (`<file_name>.sha256sum`) and its content in
/// `sha256sum` format, `"<lower-case hex>  <file_name>\n"`.
pub fn sha256_sidecar(file_name: &str, content: &[u8]) -> (String, Vec<u8>) {
    let digest = hex::encode(Sha256::digest(content));
    (format!("{file_name}.sha256sum"), format!("{digest}  {file_name}\n").into_bytes())
}

/// Splits `total_rows` rows into consecutive chunks of at most `max_rows` rows (the last one
/// may be shorter). No rows → no chunks.
///
/// # Panics
///
/// If `max_rows` is 0 (a configuration error the caller must reject first).
pub fn chunk_plan(total_rows: usize, max_rows: usize) -> Vec<Range<usize>> {
    assert!(max_rows >= 1, "chunk_plan: max_rows must be at least 1");
    (0..total_rows).step_by(max_rows).map(|start| start..total_rows.min(start.saturating_add(max_rows))).collect()
}

/// Control totals of a set of rows, to log and to compare with the outcome files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControlTotals {
    /// Number of rows.
    pub rows: u64,
    /// Sum of `amount_cents`.
    pub amount_cents: i64,
    /// Sum of `cashback_cents`.
    pub cashback_cents: i64,
    /// Sum of `jackpot_cents`.
    pub jackpot_cents: i64,
}

impl ControlTotals {
    /// The totals of `rows`. Sums saturate at the `i64` bounds (±9.2·10^16 €, far beyond any
    /// real file) instead of wrapping.
    pub fn of(rows: &[PayoutRow]) -> ControlTotals {
        rows.iter().fold(ControlTotals::default(), |t, r| ControlTotals {
            rows: t.rows + 1,
            amount_cents: t.amount_cents.saturating_add(r.amount_cents),
            cashback_cents: t.cashback_cents.saturating_add(r.cashback_cents),
            jackpot_cents: t.jackpot_cents.saturating_add(r.jackpot_cents),
        })
    }
}
