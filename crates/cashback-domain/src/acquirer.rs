//! Acquirer transaction files ("TRNLOG"): file names, rows and the checksum header line.
//!
//! Pure parsing and validation, no I/O: the caller reads the file, splits it into lines and each
//! line on `;`, and hands the raw fields to [`AcquirerRecord::parse`].
//!
//! # File name
//!
//! `CSTAR.<ABI>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>[.<nn>].csv[.pgp]` — see [`FileName::parse`].
//!
//! # Rows
//!
//! No header, no trailer, one record per line, fields separated by `;`, exact column count:
//! 15 columns in the Cashback layout ([`RecordLayout::E1`]) and 19 in the current one
//! ([`RecordLayout::E2`]). Surrounding ASCII whitespace (space, tab, CR, LF, form feed) of every
//! field is trimmed before validation, so a `\r` left by a CRLF line ending is harmless.
//! Skipping comment lines (starting with `#`, such as the `#sha256sum:` header) and blank lines is
//! the line reader's job: such a line given to [`AcquirerRecord::parse`] is rejected (wrong field
//! count, or an invalid sender code), never silently accepted.
//!
//! Every error is a [`ValidationError`] whose `field` is the public column name (`sender_code`,
//! `operation_type`, ..., `par`, or `record` for a wrong field count) and whose reason says what
//! was expected. A reason never echoes more than 64 characters of the offending value, and never
//! echoes column 4 at all (a misconfigured sender could put a clear card number there).
//!
//! # Timestamp rule (column 5, `date_time`)
//!
//! `YYYY-MM-DDTHH:MM:SS`, then an optional fraction (`.` and 1 to 9 digits), then a mandatory
//! offset: `Z`, `±HH:MM` or `±HHMM`, of magnitude at most 18:00 (minutes 00–59). The calendar is
//! strict: no February 30 (never clamped to the month's last day), no hour 24, no minute or second
//! 60. Only upper-case `T` and `Z`, no spaces, nothing after the offset. The parsed value keeps
//! the offset the acquirer sent (`-00:00` reads as UTC).
//!
//! Compared with PagoPA's own parsers: both `+01:00` and `+0100` offsets are accepted (the batch
//! default pattern took only the first, the central one both); the fraction may be missing or
//! shorter than 3 digits (both PagoPA patterns wanted exactly 3); February 30 and `T24:00`, which
//! PagoPA's lenient resolver clamped or rolled over, are rejected, and so are `+01`, `+01:00:00`
//! and a lower-case `z`.

use crate::{Hpan, Money, ValidationError};
use sha2::{Digest, Sha256};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Largest accepted `total_amount`, in cents.
pub const MAX_AMOUNT_CENTS: i64 = 99_999_999_999;

/// Longest part of a bad value quoted in an error reason, in bytes.
const ECHO_LIMIT: usize = 64;

const FILE_NAME: &str = "fileName";

/// A validated acquirer transaction file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// The sender's ABI (or PagoPA-assigned) code: 5 ASCII letters or digits, as written.
    pub abi: String,
    /// The file creation date and time written in the name (no zone).
    pub created: PrimitiveDateTime,
    /// The 3-digit progressive (`000`–`999`).
    pub progressive: u16,
    /// The 2-digit chunk number of a split file, if present.
    pub chunk: Option<u8>,
    /// Whether the name ends in `.csv.pgp`.
    pub encrypted: bool,
}

/// An acquirer's ABI code as the file names and credentials carry it: 5 ASCII letters or digits.
pub fn is_abi(s: &str) -> bool {
    s.len() == 5 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl FileName {
    /// Parses `CSTAR.<ABI: 5 ASCII alphanumerics>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>[.<nn> chunk].csv[.pgp]`.
    ///
    /// `CSTAR`, `TRNLOG`, `csv` and `pgp` must be written in exactly this case; the date and time
    /// must exist on the calendar (`20220230` and `250000` are rejected). The name is a bare file
    /// name: no directory part. Errors use field `fileName`.
    pub fn parse(name: &str) -> Result<FileName, ValidationError> {
        let mut parts = name.split('.');
        let mut next = || parts.next();

        if next() != Some("CSTAR") {
            return Err(name_err(format!("must start with \"CSTAR.\", got \"{}\"", echo(name.as_bytes()))));
        }
        let abi = next().unwrap_or("");
        if !is_abi(abi) {
            return Err(name_err(format!("ABI must be 5 ASCII letters or digits, got \"{}\"", echo(abi.as_bytes()))));
        }
        let file_type = next().unwrap_or("");
        if file_type != "TRNLOG" {
            return Err(name_err(format!("file type must be \"TRNLOG\", got \"{}\"", echo(file_type.as_bytes()))));
        }

        let date = next().unwrap_or("");
        let date = digits::<8>(date.as_bytes())
            .ok_or_else(|| name_err(format!("date must be 8 digits yyyymmdd, got \"{}\"", echo(date.as_bytes()))))?;
        let year = num(&date[..4]) as i32;
        let date = Month::try_from(num(&date[4..6]) as u8)
            .and_then(|month| Date::from_calendar_date(year, month, num(&date[6..]) as u8))
            .map_err(|_| name_err(format!("date {} is not a valid calendar date", ascii(date))))?;

        let time = next().unwrap_or("");
        let time = digits::<6>(time.as_bytes())
            .ok_or_else(|| name_err(format!("time must be 6 digits hhmmss, got \"{}\"", echo(time.as_bytes()))))?;
        let time = Time::from_hms(num(&time[..2]) as u8, num(&time[2..4]) as u8, num(&time[4..]) as u8)
            .map_err(|_| name_err(format!("time {} is not a valid time of day", ascii(time))))?;

        let progressive = next().unwrap_or("");
        let progressive = digits::<3>(progressive.as_bytes()).ok_or_else(|| {
            name_err(format!("progressive must be 3 digits, got \"{}\"", echo(progressive.as_bytes())))
        })?;

        let mut token = next();
        let mut chunk = None;
        if let Some(t) = token
            && t != "csv"
        {
            let c = digits::<2>(t.as_bytes()).ok_or_else(|| {
                name_err(format!("expected \".csv\" or a 2-digit chunk number, got \"{}\"", echo(t.as_bytes())))
            })?;
            chunk = Some(num(c) as u8);
            token = next();
        }
        if token != Some("csv") {
            return Err(name_err("must end with \".csv\" or \".csv.pgp\""));
        }
        let encrypted = match next() {
            None => false,
            Some("pgp") => true,
            Some(_) => return Err(name_err("must end with \".csv\" or \".csv.pgp\"")),
        };
        if next().is_some() {
            return Err(name_err("must end with \".csv\" or \".csv.pgp\""));
        }

        Ok(FileName {
            abi: abi.to_owned(),
            created: PrimitiveDateTime::new(date, time),
            progressive: num(progressive) as u16,
            chunk,
            encrypted,
        })
    }
}

fn name_err(reason: impl Into<std::borrow::Cow<'static, str>>) -> ValidationError {
    ValidationError::new(FILE_NAME, reason)
}

/// The column layout of a transaction file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordLayout {
    /// Cashback era (2020–2021): 15 columns.
    E1,
    /// Current layout (2022+): 19 columns, adding fiscal code, VAT, POS type and PAR.
    E2,
}

impl RecordLayout {
    /// Number of `;`-separated fields of a row.
    pub fn columns(self) -> usize {
        match self {
            RecordLayout::E1 => 15,
            RecordLayout::E2 => 19,
        }
    }

    /// The layout with `n` columns, if any.
    pub fn from_columns(n: usize) -> Option<RecordLayout> {
        match n {
            15 => Some(RecordLayout::E1),
            19 => Some(RecordLayout::E2),
            _ => None,
        }
    }
}

/// Column 2: payment or reversal (refund).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationType {
    Payment,
    Reversal,
}

impl OperationType {
    /// The canonical code: `"00"` payment, `"01"` reversal.
    pub fn code(self) -> &'static str {
        match self {
            OperationType::Payment => "00",
            OperationType::Reversal => "01",
        }
    }
}

/// Column 18 (E2): physical POS (`"00"`) or e-commerce / virtual POS (`"01"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosType {
    Physical,
    Ecommerce,
}

impl PosType {
    /// The code as written in the file.
    pub fn code(self) -> &'static str {
        match self {
            PosType::Physical => "00",
            PosType::Ecommerce => "01",
        }
    }
}

/// One validated row of an acquirer transaction file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquirerRecord {
    /// Column 1: exactly 5 ASCII letters or digits (the ABI of the file name).
    pub sender_code: String,
    /// Column 2.
    pub operation: OperationType,
    /// Column 3: two ASCII digits; not checked against the circuit code list.
    pub circuit_type: u8,
    /// Column 4: 64 lower-case hex characters.
    pub hpan: Hpan,
    /// Column 5, with the offset the acquirer sent.
    pub timestamp: OffsetDateTime,
    /// Column 6: 1–255 visible ASCII characters.
    pub id_trx_acquirer: String,
    /// Column 7: 1–255 visible ASCII characters; optional in E1, mandatory in E2.
    pub id_trx_issuer: Option<String>,
    /// Column 8: up to 255 visible ASCII characters; empty → `None`.
    pub correlation_id: Option<String>,
    /// Column 9: absolute amount in cents, `0..=99_999_999_999`; see [`AcquirerRecord::signed_amount`].
    pub amount: Money,
    /// Column 11: 1–255 visible ASCII characters.
    pub acquirer_id: String,
    /// Column 12: 1–255 visible ASCII characters.
    pub merchant_id: String,
    /// Column 13: 1–255 visible ASCII characters.
    pub terminal_id: String,
    /// Column 14: exactly 6 or 8 ASCII digits.
    pub bin: String,
    /// Column 15: 1–5 ASCII letters or digits; optional in E1, mandatory in E2.
    pub mcc: Option<String>,
    /// Column 16 (E2 only, mandatory): merchant fiscal code, 11 or 16 ASCII letters or digits, as written.
    pub merchant_fiscal_code: Option<String>,
    /// Column 17 (E2 only): up to 50 ASCII letters or digits; empty → `None`.
    pub vat: Option<String>,
    /// Column 18 (E2 only, mandatory).
    pub pos_type: Option<PosType>,
    /// Column 19 (E2 only): empty → `None`, else exactly 29 ASCII upper-case letters or digits.
    pub par: Option<String>,
}

/// One row's columns validated in place, borrowed from the line: the same rules as
/// [`AcquirerRecord::parse`] (which goes through it), without allocating. Text columns are the
/// trimmed bytes of the line, checked to be ASCII (so `std::str::from_utf8` on them cannot
/// fail). Column 4 is whatever the caller's column-4 rule makes of it: an [`Hpan`] on the
/// platform, a card number ([`crate::PanDigits`]) in the acquirer's tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a, C> {
    pub sender_code: &'a [u8],
    pub operation: OperationType,
    pub circuit_type: u8,
    pub column4: C,
    pub timestamp: OffsetDateTime,
    pub id_trx_acquirer: &'a [u8],
    pub id_trx_issuer: Option<&'a [u8]>,
    pub correlation_id: Option<&'a [u8]>,
    pub amount: Money,
    pub acquirer_id: &'a [u8],
    pub merchant_id: &'a [u8],
    pub terminal_id: &'a [u8],
    pub bin: &'a [u8],
    pub mcc: Option<&'a [u8]>,
    pub merchant_fiscal_code: Option<&'a [u8]>,
    pub vat: Option<&'a [u8]>,
    pub pos_type: Option<PosType>,
    pub par: Option<&'a [u8]>,
}

impl<'a, C> RecordView<'a, C> {
    /// Validates the raw `;`-separated fields of one line (see [`AcquirerRecord::parse`] for the
    /// rules); column 4, trimmed, goes through `column4` in its left-to-right turn.
    pub fn parse_with(
        fields: &[&'a [u8]],
        layout: RecordLayout,
        column4: impl FnOnce(&'a [u8]) -> Result<C, ValidationError>,
    ) -> Result<RecordView<'a, C>, ValidationError> {
        let expected = layout.columns();
        if fields.len() != expected {
            return Err(ValidationError::new("record", format!("expected {expected} fields, found {}", fields.len())));
        }
        let f = |i: usize| fields[i].trim_ascii();
        let e2 = layout == RecordLayout::E2;

        let sender_code = alnum("sender_code", f(0), 5, 5, "must be exactly 5 ASCII letters or digits")?;
        let operation = match (f(1), layout) {
            (b"00", _) => OperationType::Payment,
            (b"01", _) => OperationType::Reversal,
            (b"02" | b"03", RecordLayout::E1) => OperationType::Payment,
            (v, RecordLayout::E1) => {
                return Err(code_err(
                    "operation_type",
                    "must be \"00\" (payment), \"01\" (reversal), \"02\" or \"03\" (wallet payment)",
                    v,
                ));
            }
            (v, RecordLayout::E2) => {
                return Err(code_err("operation_type", "must be \"00\" (payment) or \"01\" (reversal)", v));
            }
        };
        let circuit_type = match digits::<2>(f(2)) {
            Some(d) => num(d) as u8,
            None => return Err(code_err("circuit_type", "must be exactly 2 ASCII digits", f(2))),
        };
        let column4 = column4(f(3))?;
        let timestamp = timestamp_bytes(f(4))?;
        let id_trx_acquirer = visible("id_trx_acquirer", f(5), 1)?;
        let id_trx_issuer = if !e2 && f(6).is_empty() { None } else { Some(visible("id_trx_issuer", f(6), 1)?) };
        let correlation_id = optional(visible("correlation_id", f(7), 0)?);
        let amount = parse_amount(f(8))?;
        match f(9) {
            b"978" => {}
            b"" if !e2 => {}
            v => {
                let expected = if e2 { "must be \"978\" (EUR)" } else { "must be \"978\" (EUR) or empty" };
                return Err(code_err("currency", expected, v));
            }
        }
        let acquirer_id = visible("acquirer_id", f(10), 1)?;
        let merchant_id = visible("merchant_id", f(11), 1)?;
        let terminal_id = visible("terminal_id", f(12), 1)?;
        let bin = match f(13) {
            v if matches!(v.len(), 6 | 8) && v.iter().all(u8::is_ascii_digit) => v,
            v => return Err(code_err("bin", "must be exactly 6 or 8 ASCII digits", v)),
        };
        let mcc = if !e2 && f(14).is_empty() {
            None
        } else {
            Some(alnum("mcc", f(14), 1, 5, "must be 1 to 5 ASCII letters or digits")?)
        };

        let (merchant_fiscal_code, vat, pos_type, par) = if e2 {
            let fiscal = f(15);
            if !matches!(fiscal.len(), 11 | 16) || !fiscal.iter().all(u8::is_ascii_alphanumeric) {
                return Err(code_err("fiscal_code", "must be 11 or 16 ASCII letters or digits", fiscal));
            }
            let vat = optional(alnum("vat", f(16), 0, 50, "must be at most 50 ASCII letters or digits")?);
            let pos_type = match f(17) {
                b"00" => PosType::Physical,
                b"01" => PosType::Ecommerce,
                v => return Err(code_err("pos_type", "must be \"00\" (physical POS) or \"01\" (e-commerce)", v)),
            };
            let par = match f(18) {
                b"" => None,
                v if v.len() == 29 && v.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) => Some(v),
                v => return Err(code_err("par", "must be empty or exactly 29 ASCII upper-case letters or digits", v)),
            };
            (Some(fiscal), vat, Some(pos_type), par)
        } else {
            (None, None, None, None)
        };

        Ok(RecordView {
            sender_code,
            operation,
            circuit_type,
            column4,
            timestamp,
            id_trx_acquirer,
            id_trx_issuer,
            correlation_id,
            amount,
            acquirer_id,
            merchant_id,
            terminal_id,
            bin,
            mcc,
            merchant_fiscal_code,
            vat,
            pos_type,
            par,
        })
    }
}

impl AcquirerRecord {
    /// Parses the raw `;`-separated fields of one line (bytes, not yet UTF-8 checked).
    ///
    /// Each field is trimmed of surrounding ASCII whitespace first. The field count must equal
    /// `layout.columns()` (else field `record`). Currency (column 10) must be `978`; in E1 an empty
    /// currency is accepted too (it meant EUR). Operation types `02`/`03` (E1 ApplePay/GooglePay
    /// payments) are read as payments in E1 only. The first invalid column, left to right, is reported.
    /// The validation is [`RecordView::parse_with`]'s, with column 4 an [`Hpan`].
    pub fn parse(fields: &[&[u8]], layout: RecordLayout) -> Result<AcquirerRecord, ValidationError> {
        let v = RecordView::parse_with(fields, layout, parse_hpan)?;
        let own = |s: &[u8]| ascii(s).to_owned();
        Ok(AcquirerRecord {
            sender_code: own(v.sender_code),
            operation: v.operation,
            circuit_type: v.circuit_type,
            hpan: v.column4,
            timestamp: v.timestamp,
            id_trx_acquirer: own(v.id_trx_acquirer),
            id_trx_issuer: v.id_trx_issuer.map(own),
            correlation_id: v.correlation_id.map(own),
            amount: v.amount,
            acquirer_id: own(v.acquirer_id),
            merchant_id: own(v.merchant_id),
            terminal_id: own(v.terminal_id),
            bin: own(v.bin),
            mcc: v.mcc.map(own),
            merchant_fiscal_code: v.merchant_fiscal_code.map(own),
            vat: v.vat.map(own),
            pos_type: v.pos_type,
            par: v.par.map(own),
        })
    }

    /// The amount with the sign of the operation: negative for a reversal.
    pub fn signed_amount(&self) -> Money {
        match self.operation {
            OperationType::Payment => self.amount,
            OperationType::Reversal => Money::from_cents(-self.amount.cents()),
        }
    }

    /// Deduplication key of a row: the first 16 bytes of SHA-256 over, in this order,
    /// `id_trx_acquirer`, the timestamp as UTC unix microseconds (floor; `i64` big-endian, 8
    /// bytes), `sender_code`, `acquirer_id` and the canonical operation code (`"00"`/`"01"`),
    /// each preceded by its byte length as a `u32` big-endian.
    ///
    /// Rows that differ only in other columns, or in the offset notation of the same instant,
    /// share the key; E1 `02`/`03` wallet payments share it with `00` payments.
    pub fn dedup_key(&self) -> [u8; 16] {
        fn put(h: &mut Sha256, bytes: &[u8]) {
            h.update((bytes.len() as u32).to_be_bytes());
            h.update(bytes);
        }
        let micros = self.timestamp.unix_timestamp_nanos().div_euclid(1_000) as i64;
        let mut h = Sha256::new();
        put(&mut h, self.id_trx_acquirer.as_bytes());
        put(&mut h, &micros.to_be_bytes());
        put(&mut h, self.sender_code.as_bytes());
        put(&mut h, self.acquirer_id.as_bytes());
        put(&mut h, self.operation.code().as_bytes());
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }
}

/// Parses a row timestamp (field `date_time`); the rule is in the module documentation.
pub fn parse_timestamp(s: &str) -> Result<OffsetDateTime, ValidationError> {
    timestamp_bytes(s.as_bytes())
}

/// Whether a line is meant as a checksum header (starts with `#sha256`); such a line must then
/// pass [`parse_checksum_line`].
pub fn is_checksum_line(line: &str) -> bool {
    line.starts_with("#sha256")
}

/// Parses a file's checksum header line `#sha256sum:<64 lower-case hex>` into the SHA-256 digest
/// (field `checksum`). A trailing `\n` or `\r\n` is tolerated; anything else — another prefix,
/// upper-case hex, spaces, a wrong length — is an error.
pub fn parse_checksum_line(line: &str) -> Result<[u8; 32], ValidationError> {
    const PREFIX: &str = "#sha256sum:";
    let line = line.strip_suffix('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).unwrap_or(line);
    let Some(hex_part) = line.strip_prefix(PREFIX) else {
        return Err(ValidationError::new("checksum", "must be \"#sha256sum:\" followed by 64 lower-case hex digits"));
    };
    if hex_part.len() != 64 || !hex_part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ValidationError::new(
            "checksum",
            format!("digest must be exactly 64 lower-case hex digits, got \"{}\"", echo(hex_part.as_bytes())),
        ));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).expect("checked: 64 hex digits");
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Field helpers. All work on trimmed bytes and allocate only for the returned value.

const DATE_TIME: &str = "date_time";

fn timestamp_bytes(s: &[u8]) -> Result<OffsetDateTime, ValidationError> {
    let shape = || {
        ValidationError::new(
            DATE_TIME,
            format!("must be YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z, ±HH:MM or ±HHMM, got \"{}\"", echo(s)),
        )
    };
    if s.is_empty() {
        return Err(ValidationError::new(DATE_TIME, "must not be empty"));
    }
    if s.len() < 20 {
        return Err(shape());
    }
    let (head, rest) = s.split_at(19);
    let digit_at = |i: usize| head[i].is_ascii_digit();
    let head_ok = (0..4).all(digit_at)
        && head[4] == b'-'
        && (5..7).all(digit_at)
        && head[7] == b'-'
        && (8..10).all(digit_at)
        && head[10] == b'T'
        && (11..13).all(digit_at)
        && head[13] == b':'
        && (14..16).all(digit_at)
        && head[16] == b':'
        && (17..19).all(digit_at);
    if !head_ok {
        return Err(shape());
    }

    // Optional fraction.
    let (nanos, offset) = match rest.split_first() {
        Some((b'.', after)) => {
            let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return Err(ValidationError::new(DATE_TIME, "fraction of second must be 1 to 9 digits"));
            }
            let mut nanos = num(&after[..n]);
            for _ in n..9 {
                nanos *= 10;
            }
            (nanos, &after[n..])
        }
        _ => (0, rest),
    };

    let offset = match offset {
        b"Z" => UtcOffset::UTC,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = num(&[*h1, *h2]) as i8;
            let minutes = num(&[*m1, *m2]) as i8;
            if minutes > 59 || hours > 18 || (hours == 18 && minutes > 0) {
                return Err(ValidationError::new(
                    DATE_TIME,
                    format!("offset must be between -18:00 and +18:00, got \"{}\"", echo(offset)),
                ));
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).expect("checked: |offset| <= 18:00")
        }
        _ => {
            return Err(ValidationError::new(
                DATE_TIME,
                format!("must end with an offset Z, ±HH:MM or ±HHMM, got \"{}\"", echo(s)),
            ));
        }
    };

    let year = num(&head[0..4]) as i32;
    let date = Month::try_from(num(&head[5..7]) as u8)
        .and_then(|month| Date::from_calendar_date(year, month, num(&head[8..10]) as u8))
        .map_err(|_| ValidationError::new(DATE_TIME, format!("{} is not a valid calendar date", ascii(&head[..10]))))?;
    let time = Time::from_hms_nano(num(&head[11..13]) as u8, num(&head[14..16]) as u8, num(&head[17..19]) as u8, nanos)
        .map_err(|_| {
            ValidationError::new(
                DATE_TIME,
                format!("{} is not a valid time of day (00:00:00 to 23:59:59)", ascii(&head[11..19])),
            )
        })?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

fn parse_hpan(v: &[u8]) -> Result<Hpan, ValidationError> {
    // Never echo the value: a misconfigured sender could put a clear card number here.
    match std::str::from_utf8(v) {
        Ok(s) => Hpan::parse(s),
        Err(_) => Err(ValidationError::new("hpan", "must contain only hex digits 0-9 and a-f")),
    }
}

fn parse_amount(v: &[u8]) -> Result<Money, ValidationError> {
    const FIELD: &str = "total_amount";
    if v.is_empty() {
        return Err(ValidationError::new(FIELD, "must not be empty"));
    }
    if !v.iter().all(u8::is_ascii_digit) {
        return Err(ValidationError::new(
            FIELD,
            format!("must be a whole number of cents, digits 0-9 only (no sign, no decimals), got \"{}\"", echo(v)),
        ));
    }
    let mut cents: i64 = 0;
    for &b in v {
        cents = cents * 10 + i64::from(b - b'0');
        if cents > MAX_AMOUNT_CENTS {
            return Err(ValidationError::new(
                FIELD,
                format!("must be at most {MAX_AMOUNT_CENTS} cents, got \"{}\"", echo(v)),
            ));
        }
    }
    Ok(Money::from_cents(cents))
}

/// A field of visible ASCII characters (0x21–0x7E), `min..=255` long.
fn visible<'a>(field: &'static str, v: &'a [u8], min: usize) -> Result<&'a [u8], ValidationError> {
    const MAX: usize = 255;
    if v.len() < min {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if let Some(pos) = v.iter().position(|b| !b.is_ascii_graphic()) {
        return Err(ValidationError::new(
            field,
            format!(
                "must contain only visible ASCII characters (0x21-0x7E), found byte 0x{:02X} at position {}",
                v[pos],
                pos + 1
            ),
        ));
    }
    if v.len() > MAX {
        return Err(ValidationError::new(field, format!("must be at most {MAX} characters, got {}", v.len())));
    }
    Ok(v)
}

/// A field of ASCII letters and digits, `min..=max` long; `expected` is the reason on failure.
fn alnum<'a>(
    field: &'static str,
    v: &'a [u8],
    min: usize,
    max: usize,
    expected: &str,
) -> Result<&'a [u8], ValidationError> {
    if v.is_empty() && min > 0 {
        return Err(ValidationError::new(field, format!("{expected}, got an empty value")));
    }
    if v.len() < min || v.len() > max || !v.iter().all(u8::is_ascii_alphanumeric) {
        return Err(code_err(field, expected, v));
    }
    Ok(v)
}

/// `"<expected>, got \"<value>\""`, or `"<expected>, got an empty value"`.
fn code_err(field: &'static str, expected: &str, v: &[u8]) -> ValidationError {
    if v.is_empty() {
        ValidationError::new(field, format!("{expected}, got an empty value"))
    } else {
        ValidationError::new(field, format!("{expected}, got \"{}\"", echo(v)))
    }
}

fn optional(s: &[u8]) -> Option<&[u8]> {
    if s.is_empty() { None } else { Some(s) }
}

/// At most [`ECHO_LIMIT`] bytes of a bad value, non-printable bytes escaped, `...` if cut.
fn echo(v: &[u8]) -> String {
    let cut = v.len() > ECHO_LIMIT;
    let mut s = v[..v.len().min(ECHO_LIMIT)].escape_ascii().to_string();
    if cut {
        s.push_str("...");
    }
    s
}

/// The string of bytes already checked to be ASCII.
fn ascii(v: &[u8]) -> &str {
    debug_assert!(v.is_ascii());
    std::str::from_utf8(v).expect("checked: ASCII")
}

/// `v` if it is exactly `N` ASCII digits.
fn digits<const N: usize>(v: &[u8]) -> Option<&[u8]> {
    (v.len() == N && v.iter().all(u8::is_ascii_digit)).then_some(v)
}

/// Value of a short run of ASCII digits (at most 9, so no overflow).
fn num(d: &[u8]) -> u32 {
    d.iter().fold(0, |acc, &b| acc * 10 + u32::from(b - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset};

    const HPAN: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const PAR: &str = "E197169A09GQNYI34PN3QPA1SDM07";

    fn e2_row() -> Vec<String> {
        [
            "99999",
            "00",
            "01",
            HPAN,
            "2020-08-06T12:19:16.000+01:00",
            "0123456789ARN",
            "AUTH01",
            "",
            "1000",
            "978",
            "4444",
            "MERCH-0001",
            "T_0001",
            "40236010",
            "5411",
            "12345678901",
            "12345678901",
            "00",
            PAR,
        ]
        .map(String::from)
        .to_vec()
    }

    fn e1_row() -> Vec<String> {
        let mut row = e2_row();
        row.truncate(15);
        row
    }

    fn row(layout: RecordLayout) -> Vec<String> {
        match layout {
            RecordLayout::E1 => e1_row(),
            RecordLayout::E2 => e2_row(),
        }
    }

    fn parse(row: &[String], layout: RecordLayout) -> Result<AcquirerRecord, ValidationError> {
        let fields: Vec<&[u8]> = row.iter().map(|s| s.as_bytes()).collect();
        AcquirerRecord::parse(&fields, layout)
    }

    fn parse_line(line: &str, layout: RecordLayout) -> Result<AcquirerRecord, ValidationError> {
        let fields: Vec<&[u8]> = line.as_bytes().split(|&b| b == b';').collect();
        AcquirerRecord::parse(&fields, layout)
    }

    /// The row of `layout` with 1-based column `col` set to `value`.
    fn with(layout: RecordLayout, col: usize, value: &str) -> Result<AcquirerRecord, ValidationError> {
        let mut r = row(layout);
        r[col - 1] = value.to_owned();
        parse(&r, layout)
    }

    /// Asserts that `value` in column `col` is rejected under `field`, with a reason containing
    /// `hint` and echoing at most 64 characters; returns the reason.
    fn rejected(layout: RecordLayout, col: usize, value: &str, field: &str, hint: &str) -> String {
        let e = with(layout, col, value).expect_err(&format!("{layout:?} column {col} = {value:?} must be rejected"));
        assert_eq!(e.field, field, "value {value:?}: {e}");
        assert!(e.reason.contains(hint), "value {value:?}: reason {:?} lacks {hint:?}", e.reason);
        assert!(e.reason.len() <= 220, "reason too long: {:?}", e.reason);
        e.reason.into_owned()
    }

    fn both(f: impl Fn(RecordLayout)) {
        f(RecordLayout::E1);
        f(RecordLayout::E2);
    }

    // ---- valid rows ------------------------------------------------------------------------

    #[test]
    fn valid_e2_row() {
        let r = parse(&e2_row(), RecordLayout::E2).unwrap();
        assert_eq!(r.sender_code, "99999");
        assert_eq!(r.operation, OperationType::Payment);
        assert_eq!(r.circuit_type, 1);
        assert_eq!(r.hpan.as_str(), HPAN);
        assert_eq!(r.timestamp, datetime!(2020-08-06 12:19:16 +01:00));
        assert_eq!(r.timestamp.offset(), offset!(+01:00));
        assert_eq!(r.id_trx_acquirer, "0123456789ARN");
        assert_eq!(r.id_trx_issuer.as_deref(), Some("AUTH01"));
        assert_eq!(r.correlation_id, None);
        assert_eq!(r.amount, Money::from_cents(1000));
        assert_eq!(r.signed_amount(), Money::from_cents(1000));
        assert_eq!(r.acquirer_id, "4444");
        assert_eq!(r.merchant_id, "MERCH-0001");
        assert_eq!(r.terminal_id, "T_0001");
        assert_eq!(r.bin, "40236010");
        assert_eq!(r.mcc.as_deref(), Some("5411"));
        assert_eq!(r.merchant_fiscal_code.as_deref(), Some("12345678901"));
        assert_eq!(r.vat.as_deref(), Some("12345678901"));
        assert_eq!(r.pos_type, Some(PosType::Physical));
        assert_eq!(r.par.as_deref(), Some(PAR));
    }

    #[test]
    fn valid_e2_reversal_line_with_optional_columns_empty() {
        let line = format!(
            "99999;01;08;{HPAN};2022-04-19T12:10:45.123456789Z;ARN1;ISS1;PAY-42;250;978;4444;M1;T1;402360;203;\
             RSSMRA80A01H501U;;01;"
        );
        let r = parse_line(&line, RecordLayout::E2).unwrap();
        assert_eq!(r.operation, OperationType::Reversal);
        assert_eq!(r.circuit_type, 8);
        assert_eq!(r.timestamp, datetime!(2022-04-19 12:10:45.123456789 UTC));
        assert_eq!(r.correlation_id.as_deref(), Some("PAY-42"));
        assert_eq!(r.amount, Money::from_cents(250));
        assert_eq!(r.signed_amount(), Money::from_cents(-250));
        assert_eq!(r.bin, "402360");
        assert_eq!(r.mcc.as_deref(), Some("203"));
        assert_eq!(r.merchant_fiscal_code.as_deref(), Some("RSSMRA80A01H501U"));
        assert_eq!(r.vat, None);
        assert_eq!(r.pos_type, Some(PosType::Ecommerce));
        assert_eq!(r.par, None);
    }

    #[test]
    fn valid_e1_row() {
        let r = parse(&e1_row(), RecordLayout::E1).unwrap();
        assert_eq!(r.sender_code, "99999");
        assert_eq!(r.id_trx_issuer.as_deref(), Some("AUTH01"));
        assert_eq!(r.mcc.as_deref(), Some("5411"));
        assert_eq!((r.merchant_fiscal_code, r.vat, r.pos_type, r.par), (None, None, None, None));

        // E1 optional columns: issuer id, currency and MCC may be empty.
        let line = format!("12345;00;01;{HPAN};2020-08-06T12:19:16.000+01:00;ARN;;;1;;A1;M1;T1;40236010;");
        let r = parse_line(&line, RecordLayout::E1).unwrap();
        assert_eq!(r.id_trx_issuer, None);
        assert_eq!(r.correlation_id, None);
        assert_eq!(r.mcc, None);
        assert_eq!(r.amount, Money::from_cents(1));
    }

    #[test]
    fn fields_are_trimmed() {
        let mut r = e2_row();
        for f in &mut r {
            *f = format!("  {f} ");
        }
        r[18] = format!("{PAR}\r"); // CRLF line ending left on the last field
        let rec = parse(&r, RecordLayout::E2).unwrap();
        assert_eq!(rec, parse(&e2_row(), RecordLayout::E2).unwrap());
        // a field made only of spaces is empty
        rejected(RecordLayout::E2, 6, "   ", "id_trx_acquirer", "must not be empty");
    }

    #[test]
    fn layout_columns() {
        assert_eq!(RecordLayout::E1.columns(), 15);
        assert_eq!(RecordLayout::E2.columns(), 19);
        assert_eq!(RecordLayout::from_columns(15), Some(RecordLayout::E1));
        assert_eq!(RecordLayout::from_columns(19), Some(RecordLayout::E2));
        for n in [0, 1, 13, 14, 16, 18, 20] {
            assert_eq!(RecordLayout::from_columns(n), None);
        }
    }

    // ---- row structure ---------------------------------------------------------------------

    #[test]
    fn wrong_field_count() {
        both(|layout| {
            let n = layout.columns();
            // missing trailing field
            let mut r = row(layout);
            r.pop();
            let e = parse(&r, layout).unwrap_err();
            assert_eq!(
                (e.field.as_ref(), e.reason.as_ref()),
                ("record", format!("expected {n} fields, found {}", n - 1).as_str())
            );
            // extra leading field
            let mut r = row(layout);
            r.insert(0, "99999".into());
            let e = parse(&r, layout).unwrap_err();
            assert_eq!(e.field, "record");
            assert_eq!(e.reason, format!("expected {n} fields, found {}", n + 1));
            // extra trailing `;`
            let line = format!("{};", row(layout).join(";"));
            assert_eq!(parse_line(&line, layout).unwrap_err().field, "record");
            // the other layout
            let other = if layout == RecordLayout::E1 { e2_row() } else { e1_row() };
            assert_eq!(parse(&other, layout).unwrap_err().field, "record");
            // no fields at all
            assert_eq!(AcquirerRecord::parse(&[], layout).unwrap_err().reason, format!("expected {n} fields, found 0"));
        });
    }

    #[test]
    fn blank_and_comment_lines_are_rejected_not_skipped() {
        both(|layout| {
            for blank in ["", "   ", "\r"] {
                let e = parse_line(blank, layout).unwrap_err();
                assert_eq!(e.field, "record");
                assert!(e.reason.ends_with("found 1"), "{e}");
            }
            // the checksum header line and a comment
            assert_eq!(parse_line(&format!("#sha256sum:{HPAN}"), layout).unwrap_err().field, "record");
            // a comment line that happens to have the right shape
            let mut r = row(layout);
            r[0] = "#9999".into();
            let e = parse(&r, layout).unwrap_err();
            assert_eq!(e.field, "sender_code");
        });
    }

    // ---- field level -----------------------------------------------------------------------

    #[test]
    fn sender_code() {
        both(|layout| {
            assert_eq!(with(layout, 1, "AB12c").unwrap().sender_code, "AB12c");
            rejected(layout, 1, "", "sender_code", "empty");
            rejected(layout, 1, "     ", "sender_code", "empty");
            rejected(layout, 1, "1234", "sender_code", "exactly 5");
            rejected(layout, 1, "131331", "sender_code", "exactly 5");
            rejected(layout, 1, "123456789012345678901", "sender_code", "exactly 5");
            rejected(layout, 1, "12 34", "sender_code", "letters or digits");
            rejected(layout, 1, "1234-", "sender_code", "letters or digits");
            rejected(layout, 1, "+1234", "sender_code", "letters or digits");
            rejected(layout, 1, "1234è", "sender_code", "letters or digits");
        });
    }

    #[test]
    fn operation_type() {
        both(|layout| {
            assert_eq!(with(layout, 2, "00").unwrap().operation, OperationType::Payment);
            assert_eq!(with(layout, 2, "01").unwrap().operation, OperationType::Reversal);
            for bad in ["", "  ", "010", "AA", "1", "0", "001", "+1", "04", "99", "xx", "0 1"] {
                let reason = rejected(layout, 2, bad, "operation_type", "\"00\" (payment)");
                assert!(reason.contains("\"01\" (reversal)"));
            }
        });
        // E1 wallet payments
        assert_eq!(with(RecordLayout::E1, 2, "02").unwrap().operation, OperationType::Payment);
        assert_eq!(with(RecordLayout::E1, 2, "03").unwrap().operation, OperationType::Payment);
        assert!(rejected(RecordLayout::E2, 2, "02", "operation_type", "got \"02\"").contains("or \"01\""));
        rejected(RecordLayout::E2, 2, "03", "operation_type", "got \"03\"");
    }

    #[test]
    fn circuit_type() {
        both(|layout| {
            assert_eq!(with(layout, 3, "00").unwrap().circuit_type, 0);
            assert_eq!(with(layout, 3, "17").unwrap().circuit_type, 17);
            assert_eq!(with(layout, 3, "11").unwrap().circuit_type, 11); // not in the code list: accepted
            assert_eq!(with(layout, 3, "99").unwrap().circuit_type, 99);
            for bad in ["", "0", "010", "001", "AA", "+1", "1a", "٠١"] {
                rejected(layout, 3, bad, "circuit_type", "exactly 2 ASCII digits");
            }
        });
    }

    #[test]
    fn hpan() {
        both(|layout| {
            assert_eq!(rejected(layout, 4, "", "hpan", "64 characters"), "must be 64 characters, got 0");
            rejected(layout, 4, "   ", "hpan", "got 0");
            rejected(layout, 4, &HPAN[..63], "hpan", "got 63");
            rejected(layout, 4, &format!("{HPAN}0"), "hpan", "got 65");
            rejected(layout, 4, &"a".repeat(300), "hpan", "got 300");
            rejected(layout, 4, &format!("+{}", &HPAN[1..]), "hpan", "hex");
            rejected(layout, 4, &HPAN.to_uppercase(), "hpan", "lower-case");
            rejected(layout, 4, &format!("{} {}", &HPAN[..31], &HPAN[32..]), "hpan", "hex");
            // a clear PAN is never echoed back
            let reason = rejected(layout, 4, "4111111111111111", "hpan", "64 characters");
            assert!(!reason.contains("4111"));
        });
        // not UTF-8
        let mut r: Vec<Vec<u8>> = e2_row().into_iter().map(String::into_bytes).collect();
        r[3] = vec![0xff; 64];
        let fields: Vec<&[u8]> = r.iter().map(Vec::as_slice).collect();
        assert_eq!(AcquirerRecord::parse(&fields, RecordLayout::E2).unwrap_err().field, "hpan");
    }

    #[test]
    fn timestamp_table_of_section_1_5() {
        let ok = |s: &str| parse_timestamp(s).unwrap_or_else(|e| panic!("{s:?} must be accepted: {e}"));
        let ts = datetime!(2020-08-06 12:19:16 +01:00);
        assert_eq!(ok("2020-08-06T12:19:16.000+01:00"), ts);
        assert_eq!(ok("2020-08-06T12:19:16.000+00:00").offset(), UtcOffset::UTC);
        assert_eq!(ok("2020-08-06T12:19:16.000-00:00").offset(), UtcOffset::UTC);
        assert_eq!(ok("2020-08-06T12:19:16.000Z"), datetime!(2020-08-06 12:19:16 UTC));
        assert_eq!(ok("2020-08-06T12:19:16.000+0100"), ts);
        assert_eq!(ok("2020-08-06T12:19:16.000-0000").offset(), UtcOffset::UTC);
        assert_eq!(ok("2020-08-06T12:19:16+01:00"), ts); // no fraction
        assert_eq!(ok("2020-08-06T12:19:16.5+01:00"), datetime!(2020-08-06 12:19:16.5 +01:00));
        assert_eq!(ok("2020-08-06T12:19:16.000+18:00").offset(), offset!(+18:00));
        assert_eq!(ok("2020-08-06T12:19:16.000-18:00").offset(), offset!(-18:00));
        assert_eq!(ok("1981-04-05T23:59:59.999-0830").offset(), offset!(-08:30));
        assert_eq!(ok("2020-08-06T12:19:16.123456789Z").nanosecond(), 123_456_789);
        assert_eq!(ok("2020-08-06T12:19:16.12Z").nanosecond(), 120_000_000);
        assert_eq!(ok("2024-02-29T00:00:00Z").day(), 29);
        assert_eq!(ok("2020-08-06T12:19:16-03:30").offset(), offset!(-03:30));

        let bad = |s: &str, hint: &str| {
            let e = parse_timestamp(s).expect_err(&format!("{s:?} must be rejected"));
            assert_eq!(e.field, "date_time", "{s:?}");
            assert!(e.reason.contains(hint), "{s:?}: reason {:?} lacks {hint:?}", e.reason);
        };
        bad("", "must not be empty");
        bad("2020-08-06T12:19:16.000z", "offset"); // lower-case z
        bad("2020-08-06t12:19:16.000Z", "YYYY-MM-DDTHH:MM:SS"); // lower-case t
        bad("2020-08-06T12:19:16.000+01", "offset");
        bad("2020-08-06T12:19:16.000+01:00:00", "offset");
        bad("2020-08-06T12:19:16.000+1:00", "offset");
        bad("2020-08-06T12:19:16.000", "offset"); // no offset
        bad("2020-08-06T12:19:16", "YYYY-MM-DDTHH:MM:SS");
        bad("2020-08-06 12:19:16.000+01:00", "YYYY-MM-DDTHH:MM:SS"); // space
        bad("2020-08-06T12:19:16.000 +01:00", "offset");
        bad("1981-04-05T24:00:00.000-0830", "not a valid time of day"); // T24:00
        bad("2020-08-06T25:19:16.000+01:00", "not a valid time of day");
        bad("2020-08-06T12:60:16.000+01:00", "not a valid time of day");
        bad("2020-08-06T12:19:60.000+01:00", "not a valid time of day"); // no leap second
        bad("2020-08-06T12:19:16.000+24:00", "between -18:00 and +18:00");
        bad("2020-08-06T12:19:16.000+19:00", "between -18:00 and +18:00");
        bad("2020-08-06T12:19:16.000+18:01", "between -18:00 and +18:00");
        bad("2020-08-06T12:19:16.000+01:60", "between -18:00 and +18:00");
        bad("2020-02-30T12:19:16.000+01:00", "2020-02-30 is not a valid calendar date");
        bad("2021-02-29T12:19:16.000+01:00", "not a valid calendar date");
        bad("2020-13-06T12:19:16.000+01:00", "not a valid calendar date");
        bad("2020-00-06T12:19:16.000+01:00", "not a valid calendar date");
        bad("2020-08-00T12:19:16.000+01:00", "not a valid calendar date");
        bad("03/20/2020T10:50:33", "YYYY-MM-DDTHH:MM:SS"); // wrong pattern (E1 unit-test pattern)
        bad("08/06/2020 12:19:16", "YYYY-MM-DDTHH:MM:SS");
        bad("2020-08-06'T'12:19:16.000+01:00", "YYYY-MM-DDTHH:MM:SS"); // 'T' quoted literally
        bad("2020-08-06T12:19:16.+01:00", "fraction");
        bad("2020-08-06T12:19:16.0000000000Z", "fraction"); // 10 digits
        bad("2020-08-06T12:19:16,000Z", "offset");
        bad("20-08-06T12:19:16.000+01:00", "YYYY-MM-DDTHH:MM:SS");
        bad("+2020-08-06T12:19:16Z", "YYYY-MM-DDTHH:MM:SS");
        bad("2020-08-06T12:19:16.000+01:00Z", "offset");
        bad("２020-08-06T12:19:16.000+01:00", "YYYY-MM-DDTHH:MM:SS");
        // the value echoed in a reason is cut at 64 characters
        let long = format!("2020-08-06T12:19:16.000+01:00{}", "0".repeat(200));
        let e = parse_timestamp(&long).unwrap_err();
        assert!(e.reason.len() < 64 + 80, "{}", e.reason);
        assert!(e.reason.contains("..."));
    }

    #[test]
    fn timestamp_column() {
        both(|layout| {
            let r = with(layout, 5, "2020-08-06T12:19:16.000-0830").unwrap();
            assert_eq!(r.timestamp, datetime!(2020-08-06 12:19:16 -08:30));
            rejected(layout, 5, "", "date_time", "must not be empty");
            rejected(layout, 5, "   ", "date_time", "must not be empty");
            rejected(layout, 5, "03/20/2020T10:50:33", "date_time", "YYYY-MM-DDTHH:MM:SS");
            rejected(layout, 5, "2020-02-30T12:19:16.000+01:00", "date_time", "calendar");
        });
    }

    #[test]
    fn transaction_ids() {
        both(|layout| {
            let r = with(layout, 6, &"x".repeat(255)).unwrap();
            assert_eq!(r.id_trx_acquirer.len(), 255);
            assert_eq!(with(layout, 6, "+123").unwrap().id_trx_acquirer, "+123"); // visible ASCII, not alnum-only
            assert_eq!(with(layout, 7, "+AUTH").unwrap().id_trx_issuer.as_deref(), Some("+AUTH"));
            assert_eq!(with(layout, 7, &"9".repeat(255)).unwrap().id_trx_issuer.unwrap().len(), 255);
            for (col, field) in [(6, "id_trx_acquirer"), (7, "id_trx_issuer")] {
                if col == 6 || layout == RecordLayout::E2 {
                    rejected(layout, col, "", field, "must not be empty");
                    rejected(layout, col, "  ", field, "must not be empty");
                }
                rejected(layout, col, &"x".repeat(256), field, "at most 255 characters, got 256");
                rejected(layout, col, "AB 12", field, "byte 0x20 at position 3");
                rejected(layout, col, "AB\t12", field, "byte 0x09");
                rejected(layout, col, "caffè", field, "visible ASCII");
                rejected(layout, col, "A\u{7f}", field, "byte 0x7F");
            }
        });
        assert_eq!(with(RecordLayout::E1, 7, "").unwrap().id_trx_issuer, None);
        assert_eq!(with(RecordLayout::E1, 7, "   ").unwrap().id_trx_issuer, None);
    }

    #[test]
    fn correlation_id() {
        both(|layout| {
            assert_eq!(with(layout, 8, "").unwrap().correlation_id, None);
            assert_eq!(with(layout, 8, "  ").unwrap().correlation_id, None);
            assert_eq!(with(layout, 8, "+1").unwrap().correlation_id.as_deref(), Some("+1"));
            assert_eq!(with(layout, 8, &"c".repeat(255)).unwrap().correlation_id.unwrap().len(), 255);
            rejected(layout, 8, &"c".repeat(256), "correlation_id", "at most 255 characters");
            rejected(layout, 8, "a b", "correlation_id", "visible ASCII");
        });
    }

    #[test]
    fn amount() {
        both(|layout| {
            let cents = |v: &str| with(layout, 9, v).unwrap().amount.cents();
            assert_eq!(cents("0"), 0);
            assert_eq!(cents("2147483648"), 2_147_483_648);
            assert_eq!(cents("99999999999"), 99_999_999_999);
            assert_eq!(cents("0012"), 12);
            assert_eq!(cents("00000000000000000000000000099999999999"), 99_999_999_999);
            rejected(layout, 9, "", "total_amount", "must not be empty");
            rejected(layout, 9, " ", "total_amount", "must not be empty");
            for bad in ["a", "-1", "-100", "+12", "12.50", "12,50", "1 000", "1e3", "١٢"] {
                rejected(layout, 9, bad, "total_amount", "digits 0-9 only");
            }
            rejected(layout, 9, "100000000000", "total_amount", "at most 99999999999 cents");
            rejected(layout, 9, &"9".repeat(40), "total_amount", "at most 99999999999 cents");
        });
    }

    #[test]
    fn signed_amount_of_max_reversal() {
        let mut r = e2_row();
        r[1] = "01".into();
        r[8] = "99999999999".into();
        let rec = parse(&r, RecordLayout::E2).unwrap();
        assert_eq!(rec.amount.cents(), MAX_AMOUNT_CENTS);
        assert_eq!(rec.signed_amount().cents(), -MAX_AMOUNT_CENTS);
        let zero = with(RecordLayout::E2, 9, "0").unwrap();
        assert_eq!(zero.signed_amount(), Money::ZERO);
    }

    #[test]
    fn currency() {
        both(|layout| {
            assert!(with(layout, 10, "978").is_ok());
            assert!(with(layout, 10, " 978 ").is_ok());
            for bad in ["97", "412", "15", "1234", "9781", "EUR", "896", "eur", "+978"] {
                rejected(layout, 10, bad, "currency", "\"978\" (EUR)");
            }
        });
        assert!(with(RecordLayout::E1, 10, "").is_ok());
        assert!(with(RecordLayout::E1, 10, "  ").is_ok());
        rejected(RecordLayout::E2, 10, "", "currency", "got an empty value");
    }

    #[test]
    fn acquirer_merchant_terminal_ids() {
        both(|layout| {
            for (col, field) in [(11, "acquirer_id"), (12, "merchant_id"), (13, "terminal_id")] {
                assert!(with(layout, col, &"1".repeat(255)).is_ok());
                assert!(with(layout, col, "+4444").is_ok()); // visible ASCII, not alnum-only
                rejected(layout, col, "", field, "must not be empty");
                rejected(layout, col, "   ", field, "must not be empty");
                rejected(layout, col, &"1".repeat(256), field, "at most 255 characters, got 256");
                rejected(layout, col, "44 44", field, "visible ASCII");
            }
        });
    }

    #[test]
    fn bin() {
        both(|layout| {
            assert_eq!(with(layout, 14, "402360").unwrap().bin, "402360");
            assert_eq!(with(layout, 14, "40236010").unwrap().bin, "40236010");
            assert_eq!(with(layout, 14, "00000123").unwrap().bin, "00000123");
            for bad in ["", "   ", "12345A", "1234567", "40236", "402360100", "+4023601", "4023 6010"] {
                rejected(layout, 14, bad, "bin", "exactly 6 or 8 ASCII digits");
            }
        });
    }

    #[test]
    fn mcc() {
        both(|layout| {
            for ok in ["203", "3000", "12345", "0", "ab1"] {
                assert_eq!(with(layout, 15, ok).unwrap().mcc.as_deref(), Some(ok));
            }
            for bad in ["123456", "490000", "+4900", "49 0", "49-0"] {
                rejected(layout, 15, bad, "mcc", "1 to 5 ASCII letters or digits");
            }
        });
        rejected(RecordLayout::E2, 15, "", "mcc", "empty");
        rejected(RecordLayout::E2, 15, "  ", "mcc", "empty");
        assert_eq!(with(RecordLayout::E1, 15, "").unwrap().mcc, None);
        assert_eq!(with(RecordLayout::E1, 15, "  ").unwrap().mcc, None);
    }

    #[test]
    fn fiscal_code() {
        let e2 = RecordLayout::E2;
        assert_eq!(with(e2, 16, "RSSMRA80A01H501U").unwrap().merchant_fiscal_code.as_deref(), Some("RSSMRA80A01H501U"));
        assert_eq!(with(e2, 16, "rssmra80a01h501u").unwrap().merchant_fiscal_code.as_deref(), Some("rssmra80a01h501u"));
        assert_eq!(with(e2, 16, "01234567890").unwrap().merchant_fiscal_code.as_deref(), Some("01234567890"));
        rejected(e2, 16, "", "fiscal_code", "got an empty value");
        rejected(e2, 16, "   ", "fiscal_code", "got an empty value");
        rejected(e2, 16, &"1".repeat(51), "fiscal_code", "11 or 16");
        rejected(e2, 16, "RSSMRA80A01H501V0", "fiscal_code", "11 or 16"); // 17
        rejected(e2, 16, "0123456789", "fiscal_code", "11 or 16");
        rejected(e2, 16, "012345678901", "fiscal_code", "11 or 16");
        rejected(e2, 16, "+1234567890", "fiscal_code", "letters or digits");
        rejected(e2, 16, "RSSMRA80A01H501-", "fiscal_code", "letters or digits");
    }

    #[test]
    fn vat() {
        let e2 = RecordLayout::E2;
        assert_eq!(with(e2, 17, "").unwrap().vat, None);
        assert_eq!(with(e2, 17, " ").unwrap().vat, None);
        assert_eq!(with(e2, 17, &"1".repeat(50)).unwrap().vat.unwrap().len(), 50);
        assert_eq!(with(e2, 17, "IT12345678901").unwrap().vat.as_deref(), Some("IT12345678901"));
        rejected(e2, 17, &"1".repeat(51), "vat", "at most 50 ASCII letters or digits");
        rejected(e2, 17, "+12345678901", "vat", "at most 50 ASCII letters or digits");
        rejected(e2, 17, "IT 123", "vat", "letters or digits");
    }

    #[test]
    fn pos_type() {
        let e2 = RecordLayout::E2;
        assert_eq!(with(e2, 18, "00").unwrap().pos_type, Some(PosType::Physical));
        assert_eq!(with(e2, 18, "01").unwrap().pos_type, Some(PosType::Ecommerce));
        assert_eq!(PosType::Ecommerce.code(), "01");
        for bad in ["", "  ", "0", "02", "08", "001", "010", "AA", "a", "+1"] {
            rejected(e2, 18, bad, "pos_type", "\"00\" (physical POS) or \"01\" (e-commerce)");
        }
    }

    #[test]
    fn par() {
        let e2 = RecordLayout::E2;
        assert_eq!(with(e2, 19, "").unwrap().par, None);
        assert_eq!(
            with(e2, 19, "VE685LTU0V9PKDND1T3PCR0Q01B2K").unwrap().par.as_deref(),
            Some("VE685LTU0V9PKDND1T3PCR0Q01B2K")
        );
        rejected(e2, 19, &"A".repeat(256), "par", "exactly 29");
        rejected(e2, 19, &PAR.to_lowercase(), "par", "upper-case");
        rejected(e2, 19, "E1971", "par", "exactly 29");
        rejected(e2, 19, &"A".repeat(32), "par", "exactly 29");
        rejected(e2, 19, &"A".repeat(28), "par", "exactly 29");
        rejected(e2, 19, &format!("+{}", &PAR[1..]), "par", "upper-case letters or digits");
        let reason = rejected(e2, 19, &"A".repeat(256), "par", "exactly 29");
        assert!(reason.contains(&format!("\"{}...\"", "A".repeat(64))), "{reason}");
        assert!(!reason.contains(&"A".repeat(65)));
    }

    #[test]
    fn record_view_is_the_records_validation() {
        let r = e2_row();
        let fields: Vec<&[u8]> = r.iter().map(|s| s.as_bytes()).collect();
        let v = RecordView::parse_with(&fields, RecordLayout::E2, |c| Ok(c.len())).unwrap();
        let rec = parse(&r, RecordLayout::E2).unwrap();
        assert_eq!(v.column4, 64);
        assert_eq!(
            (v.sender_code, v.id_trx_acquirer, v.bin, v.par),
            (&b"99999"[..], &b"0123456789ARN"[..], &b"40236010"[..], Some(PAR.as_bytes()))
        );
        assert_eq!((v.timestamp, v.amount, v.pos_type), (rec.timestamp, rec.amount, rec.pos_type));
        assert_eq!((v.correlation_id, v.vat), (None, Some(&b"12345678901"[..])));
        // Column 4 is checked in its left-to-right turn, with the caller's rule.
        let col4_err = |_: &[u8]| -> Result<(), ValidationError> { Err(ValidationError::new("pan", "x")) };
        let mut bad = e2_row();
        bad[4] = "nope".into();
        let fields: Vec<&[u8]> = bad.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(RecordView::parse_with(&fields, RecordLayout::E2, col4_err).unwrap_err().field, "pan");
        bad[2] = "X".into();
        let fields: Vec<&[u8]> = bad.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(RecordView::parse_with(&fields, RecordLayout::E2, col4_err).unwrap_err().field, "circuit_type");
        bad[2] = "01".into();
        let fields: Vec<&[u8]> = bad.iter().map(|s| s.as_bytes()).collect();
        assert_eq!(RecordView::parse_with(&fields, RecordLayout::E2, |_| Ok(())).unwrap_err().field, "date_time");
    }

    #[test]
    fn first_bad_column_is_reported() {
        let mut r = e2_row();
        r[2] = "X".into();
        r[8] = "-1".into();
        assert_eq!(parse(&r, RecordLayout::E2).unwrap_err().field, "circuit_type");
    }

    // ---- dedup key -------------------------------------------------------------------------

    #[test]
    fn dedup_key() {
        let key = |changes: &[(usize, &str)]| {
            let mut r = e2_row();
            for &(col, v) in changes {
                r[col - 1] = v.to_owned();
            }
            parse(&r, RecordLayout::E2).unwrap().dedup_key()
        };
        let base = key(&[]);
        // the same instant in other notations
        assert_eq!(key(&[(5, "2020-08-06T11:19:16Z")]), base);
        assert_eq!(key(&[(5, "2020-08-06T13:19:16.000000+0200")]), base);
        assert_eq!(key(&[(5, "2020-08-06T02:49:16.000-08:30")]), base);
        // other columns do not matter
        assert_eq!(
            key(&[
                (3, "02"),
                (4, &"0".repeat(64)),
                (7, "X"),
                (8, "C"),
                (9, "1"),
                (12, "M9"),
                (13, "T9"),
                (14, "402360")
            ]),
            base
        );
        assert_eq!(key(&[(15, "1"), (16, "01234567890"), (17, ""), (18, "01"), (19, "")]), base);
        // the key columns do
        let others = [
            key(&[(6, "0123456789ARM")]),
            key(&[(2, "01")]),
            key(&[(11, "4445")]),
            key(&[(1, "99998")]),
            key(&[(5, "2020-08-06T12:19:16.001+01:00")]),
            key(&[(5, "2020-08-06T12:19:16.000001+01:00")]),
        ];
        for (i, k) in others.iter().enumerate() {
            assert_ne!(*k, base, "variant {i}");
            for (j, l) in others.iter().enumerate().skip(i + 1) {
                assert_ne!(k, l, "variants {i} and {j}");
            }
        }
        // length prefixes keep shifted boundaries apart
        let a = key(&[(6, "AB"), (1, "CDEFG")]);
        let b = key(&[(6, "ABC"), (1, "DEFGH")]);
        assert_ne!(a, b);
        // E1 wallet payments are payments
        let mut e1 = e1_row();
        let k00 = parse(&e1, RecordLayout::E1).unwrap().dedup_key();
        e1[1] = "03".into();
        assert_eq!(parse(&e1, RecordLayout::E1).unwrap().dedup_key(), k00);
        assert_eq!(k00, base, "the layout does not matter");
    }

    #[test]
    fn dedup_key_encoding_is_stable() {
        let r = parse(&e2_row(), RecordLayout::E2).unwrap();
        let mut expected = Vec::new();
        for part in [b"0123456789ARN".as_slice(), &1_596_712_756_000_000i64.to_be_bytes(), b"99999", b"4444", b"00"] {
            expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
            expected.extend_from_slice(part);
        }
        let digest = Sha256::digest(&expected);
        assert_eq!(r.dedup_key(), digest[..16]);
    }

    #[test]
    fn dedup_key_before_1970_floors_microseconds() {
        let mut r = parse(&e2_row(), RecordLayout::E2).unwrap();
        r.timestamp = parse_timestamp("1969-12-31T23:59:59.9999995Z").unwrap();
        let floor = r.dedup_key();
        r.timestamp = parse_timestamp("1969-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(r.dedup_key(), floor);
    }

    // ---- file names ------------------------------------------------------------------------

    #[test]
    fn valid_file_names() {
        let f = FileName::parse("CSTAR.99999.TRNLOG.20220204.094652.001.csv").unwrap();
        assert_eq!(
            f,
            FileName {
                abi: "99999".into(),
                created: datetime!(2022-02-04 09:46:52),
                progressive: 1,
                chunk: None,
                encrypted: false
            }
        );
        let f = FileName::parse("CSTAR.99999.TRNLOG.20220419.121045.001.01.csv").unwrap();
        assert_eq!((f.chunk, f.encrypted, f.progressive), (Some(1), false, 1));
        let f = FileName::parse("CSTAR.a1B2c.TRNLOG.20240229.235959.999.csv.pgp").unwrap();
        assert_eq!((f.abi.as_str(), f.chunk, f.encrypted, f.progressive), ("a1B2c", None, true, 999));
        assert_eq!(f.created, datetime!(2024-02-29 23:59:59));
        let f = FileName::parse("CSTAR.00000.TRNLOG.20220101.000000.000.42.csv.pgp").unwrap();
        assert_eq!((f.chunk, f.encrypted, f.progressive), (Some(42), true, 0));
    }

    #[test]
    fn invalid_file_names() {
        let bad = |name: &str, hint: &str| {
            let e = FileName::parse(name).expect_err(&format!("{name:?} must be rejected"));
            assert_eq!(e.field, "fileName", "{name:?}");
            assert!(e.reason.contains(hint), "{name:?}: reason {:?} lacks {hint:?}", e.reason);
        };
        bad("", "must start with \"CSTAR.\"");
        bad("trx.csv", "must start with \"CSTAR.\"");
        bad("CSTR.99999.TRNLOG.20220204.094652.001.csv", "must start with \"CSTAR.\"");
        bad("ADE.99999.TRNLOG.20220204.094652.001.csv", "must start with \"CSTAR.\"");
        bad("cstar.99999.TRNLOG.20220204.094652.001.csv", "must start with \"CSTAR.\"");
        bad("Cstar.99999.TRNLOG.20220204.094652.001.csv", "must start with \"CSTAR.\"");
        bad("CSTAR.99999.trnlog.20220204.094652.001.csv", "\"TRNLOG\"");
        bad("CSTAR.99999.TrnLog.20220204.094652.001.csv", "\"TRNLOG\"");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.CSV", "\".csv\"");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.csv.PGP", "\".csv.pgp\"");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.csv.gpg", "\".csv.pgp\"");
        bad("CSTAR.99999.TRNLOG.2022FEB04.094652.001.csv", "date must be 8 digits");
        bad("CSTAR.11111.TRNLOG.202220815.151000.001.csv.pgp", "date must be 8 digits");
        bad("CSTAR.99999.TRNLOG.20220204.094652.AAA.csv", "progressive must be 3 digits");
        bad("CSTAR.99999.TRNLOG.20220204.094652.0001.csv", "progressive must be 3 digits");
        bad("CSTAR.99999.TRNLOG.20220204.094652.01.csv", "progressive must be 3 digits");
        bad("CSTAR.111111.TRNLOG.20220204.094652.001.csv", "ABI must be 5");
        bad("CSTAR.1111.TRNLOG.20220204.094652.001.csv", "ABI must be 5");
        bad("CSTAR.99_99.TRNLOG.20220204.094652.001.csv", "ABI must be 5");
        bad("CSTAR..TRNLOG.20220204.094652.001.csv", "ABI must be 5");
        bad("CSTAR.99999.TRNLOG.20220230.101010.001.csv", "20220230 is not a valid calendar date");
        bad("CSTAR.99999.TRNLOG.20221301.101010.001.csv", "not a valid calendar date");
        bad("CSTAR.99999.TRNLOG.20220204.250000.001.csv", "250000 is not a valid time of day");
        bad("CSTAR.99999.TRNLOG.20220204.236000.001.csv", "not a valid time of day");
        bad("CSTAR.99999.TRNLOG.20220204.235960.001.csv", "not a valid time of day");
        bad("CSTAR.99999.TRNLOG.20220204.0946.001.csv", "time must be 6 digits");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001", "must end with");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.", "2-digit chunk");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.1.csv", "2-digit chunk");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.001.csv", "2-digit chunk");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.01", "must end with");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.01.02.csv", "must end with");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.csv.pgp.csv", "must end with");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.csv ", "got \"csv \"");
        bad(" CSTAR.99999.TRNLOG.20220204.094652.001.csv", "must start with");
        bad("CSTAR.99999.TRNLOG.20220204.094652.001.csv.pgp.", "must end with");
        bad("dir/CSTAR.99999.TRNLOG.20220204.094652.001.csv", "must start with");
        // long names are not echoed in full
        let e = FileName::parse(&"X".repeat(500)).unwrap_err();
        assert!(e.reason.len() < 140, "{}", e.reason);
    }

    // ---- checksum line ---------------------------------------------------------------------

    #[test]
    fn checksum_line() {
        let digest = parse_checksum_line(&format!("#sha256sum:{HPAN}")).unwrap();
        assert_eq!(hex::encode(digest), HPAN);
        assert_eq!(parse_checksum_line(&format!("#sha256sum:{HPAN}\n")).unwrap(), digest);
        assert_eq!(parse_checksum_line(&format!("#sha256sum:{HPAN}\r\n")).unwrap(), digest);
        assert_eq!(parse_checksum_line(&format!("#sha256sum:{}", "0".repeat(64))).unwrap(), [0u8; 32]);
        assert!(is_checksum_line("#sha256sum:abc"));
        assert!(is_checksum_line("#sha256"));
        assert!(!is_checksum_line("# comment"));
        assert!(!is_checksum_line("99999;00"));

        for bad in [
            String::new(),
            "#sha256sum:".into(),
            format!("#sha256sum:{}", HPAN.to_uppercase()),
            format!("#sha256sum:{}", &HPAN[..63]),
            format!("#sha256sum:{HPAN}0"),
            format!("#sha256sum: {HPAN}"),
            format!("#sha256sum:{HPAN} "),
            format!("#sha256sum {HPAN}"),
            format!("#sha256:{HPAN}"),
            format!("#SHA256SUM:{HPAN}"),
            format!(" #sha256sum:{HPAN}"),
            format!("#sha256sum:{}g", &HPAN[..63]),
            format!("sha256sum:{HPAN}"),
        ] {
            let e = parse_checksum_line(&bad).expect_err(&format!("{bad:?} must be rejected"));
            assert_eq!(e.field, "checksum", "{bad:?}");
            assert!(e.reason.contains("64 lower-case hex"), "{bad:?}: {}", e.reason);
        }
    }
}
