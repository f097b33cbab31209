//! The acquirer's raw export (clear PANs in column 4) → the platform's file (hpans in column 4),
//! enrolled cards only. Streaming: one line in memory at a time.
//!
//! Every row is validated with the platform's own rules (`cashback_domain::acquirer`), so a row
//! the tool keeps is a row the platform accepts. Column 4 must be a card number as the issuers
//! enrol it (`cashback_domain::pan::Pan`: 12–19 digits after removing spaces and dashes, **Luhn
//! checked** — a PAN failing Luhn can never have been enrolled, so it is reported, not silently
//! dropped). The hpan is `sha256_hex(PAN + salt)` (`Pan::hash`), looked up in the enrolled set.
//!
//! Rejected rows go to a report `line;field;reason;pan` where `pan` is masked (first 6 / last 4);
//! the domain's reasons never echo column 4. Nothing here ever writes or logs a clear PAN.

use std::io::{self, BufRead, Read, Write};

use cashback_domain::acquirer::{AcquirerRecord, RecordLayout};
use cashback_domain::{Pan, ValidationError};
use sha2::{Digest, Sha256};

use super::hpans::HpanSet;

/// Longest accepted line, in bytes (same order as the platform's limit).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Counters of one pass over an input file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterStats {
    /// Physical lines read (including a skipped checksum header).
    pub lines: u64,
    /// Data rows read (lines that are not the first-line checksum header).
    pub rows: u64,
    /// Valid rows of an enrolled card, written to the output.
    pub kept: u64,
    /// Valid rows of a card not in the list (dropped, not an error).
    pub not_enrolled: u64,
    /// Rows that failed validation (reported).
    pub rejected: u64,
    /// Rejected rows whose sender code differs from the file's ABI (the whole file then fails).
    pub sender_mismatch: u64,
    /// SHA-256 of the raw input file.
    pub input_sha256: [u8; 32],
}

/// What the filter needs: the salt, the ABI every row's sender code must equal, the enrolled set.
pub struct Filter<'a> {
    pub salt: &'a str,
    pub abi: &'a str,
    pub enrolled: &'a HpanSet,
}

/// A rejected row, as written to the report.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    pub field: String,
    pub reason: String,
    /// Column 4 masked (first 6 / last 4), empty when the row has no column 4.
    pub masked_pan: String,
}

impl Filter<'_> {
    /// Reads `input` to its end; kept rows (hpan in column 4, fields trimmed, `;`-joined) go to
    /// `output`, rejected rows to `rejects` as `line;field;reason;masked pan`. `progress` gets
    /// the number of lines read now and then.
    pub fn run<R: Read, W: Write, J: Write>(
        &self,
        input: R,
        mut output: W,
        mut rejects: J,
        mut progress: impl FnMut(u64),
    ) -> io::Result<FilterStats> {
        let mut hashing = HashingReader { inner: input, hasher: Sha256::new() };
        let mut reader = io::BufReader::with_capacity(1 << 20, &mut hashing);
        let mut stats = FilterStats::default();
        let mut line = Vec::with_capacity(512);
        let mut out = Vec::with_capacity(512);
        let mut layout: Option<RecordLayout> = None;
        writeln!(rejects, "line;field;reason;pan")?;
        loop {
            line.clear();
            let n = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            stats.lines += 1;
            let oversize = line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n');
            if oversize {
                let mut sink = Vec::new();
                while {
                    sink.clear();
                    (&mut reader).take(1 << 16).read_until(b'\n', &mut sink)? > 0 && sink.last() != Some(&b'\n')
                } {}
            }
            let mut body: &[u8] = &line;
            if let Some(b) = body.strip_suffix(b"\n") {
                body = b.strip_suffix(b"\r").unwrap_or(b);
            }
            if stats.lines == 1 && body.starts_with(b"#sha256") {
                continue;
            }
            stats.rows += 1;
            let result = if oversize {
                Err(Rejected {
                    field: "record".into(),
                    reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
                    masked_pan: String::new(),
                })
            } else {
                out.clear();
                self.row(body, &mut layout, &mut out)
            };
            match result {
                Ok(true) => {
                    stats.kept += 1;
                    output.write_all(&out)?;
                }
                Ok(false) => stats.not_enrolled += 1,
                Err(r) => {
                    stats.rejected += 1;
                    if r.field == "sender_code" {
                        stats.sender_mismatch += 1;
                    }
                    writeln!(
                        rejects,
                        "{};{};{};{}",
                        stats.lines,
                        r.field,
                        r.reason.replace([';', '\n'], ","),
                        r.masked_pan
                    )?;
                }
            }
            if stats.lines % 65_536 == 0 {
                progress(stats.lines);
            }
        }
        progress(stats.lines);
        drop(reader); // read to its end: the hasher saw every byte
        stats.input_sha256 = hashing.hasher.finalize().into();
        output.flush()?;
        rejects.flush()?;
        Ok(stats)
    }

    /// One data line: `Ok(true)` kept (written to `out` with its newline), `Ok(false)` valid but
    /// not enrolled, `Err` rejected.
    pub fn row(&self, body: &[u8], layout: &mut Option<RecordLayout>, out: &mut Vec<u8>) -> Result<bool, Rejected> {
        let reject = |e: ValidationError, masked_pan: String| Rejected {
            field: e.field.into_owned(),
            reason: e.reason.into_owned(),
            masked_pan,
        };
        if body.trim_ascii().is_empty() {
            return Err(reject(ValidationError::new("record", "blank line"), String::new()));
        }
        if body.starts_with(b"#") {
            return Err(reject(ValidationError::new("record", "comment line (starts with '#')"), String::new()));
        }
        let mut fields: Vec<&[u8]> = body.split(|&b| b == b';').collect();
        // Masked only when a row is rejected (no allocation on the hot path).
        let pan_field: &[u8] = fields.get(3).copied().map(<[u8]>::trim_ascii).unwrap_or_default();
        let masked = || mask(pan_field);
        let lay = match *layout {
            Some(l) => l,
            None => {
                let l = RecordLayout::from_columns(fields.len()).ok_or_else(|| {
                    reject(
                        ValidationError::new(
                            "record",
                            format!(
                                "expected 15 fields (E1) or 19 fields (E2) separated by ';', found {}",
                                fields.len()
                            ),
                        ),
                        masked(),
                    )
                })?;
                *layout = Some(l);
                l
            }
        };
        if fields.len() != lay.columns() {
            return Err(reject(
                ValidationError::new("record", format!("expected {} fields, found {}", lay.columns(), fields.len())),
                masked(),
            ));
        }
        let pan = std::str::from_utf8(fields[3].trim_ascii())
            .map_err(|_| ValidationError::new("pan", "must contain only digits"))
            .and_then(|s| Pan::parse(s, "pan"))
            .map_err(|e| reject(e, masked()))?;
        let hpan = pan.hash(self.salt);
        fields[3] = hpan.as_str().as_bytes();
        let record = AcquirerRecord::parse(&fields, lay).map_err(|e| reject(e, masked()))?;
        if record.sender_code != self.abi {
            return Err(reject(
                ValidationError::new(
                    "sender_code",
                    format!("is {} but the file's ABI is {}", record.sender_code, self.abi),
                ),
                masked(),
            ));
        }
        if !self.enrolled.contains(&record.hpan.to_bytes()) {
            return Ok(false);
        }
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b';');
            }
            out.extend_from_slice(f.trim_ascii());
        }
        out.push(b'\n');
        Ok(true)
    }
}

/// Column 4 for a report: first 6 and last 4 characters, `*` between; a value of 10 characters
/// or fewer, or with anything but visible ASCII, is masked entirely.
pub fn mask(pan: &[u8]) -> String {
    let len = pan.len();
    if len <= 10 || !pan.iter().all(u8::is_ascii_graphic) {
        return "*".repeat(len.min(19));
    }
    let mut s = String::with_capacity(len);
    s.push_str(std::str::from_utf8(&pan[..6]).unwrap_or("******"));
    s.push_str(&"*".repeat(len - 10));
    s.push_str(std::str::from_utf8(&pan[len - 4..]).unwrap_or("****"));
    s
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    //! The bad-input checklist of rtd-acquirer.md §4.2 ("Row structure" and "Field level"),
    //! applied on the acquirer side.
    use super::*;

    const SALT: &str = "test-salt";
    const ABI: &str = "12345";
    /// Luhn-valid test PANs.
    const ENROLLED: &str = "4111111111111111";
    const STRANGER: &str = "5500000000000004";

    fn set() -> HpanSet {
        HpanSet::from_digests(vec![Pan::parse(ENROLLED, "pan").unwrap().hash(SALT).to_bytes()])
    }

    fn e1(pan: &str) -> String {
        format!("{ABI};00;01;{pan};2026-11-20T10:10:10.000+01:00;ID1;ISS1;;2500;978;ACQ1;MERCH1;TERM1;41111111;5411")
    }

    fn e2(pan: &str) -> String {
        format!(
            "{ABI};00;01;{pan};2026-11-20T10:10:10.000+01:00;ID1;ISS1;;2500;978;ACQ1;MERCH1;TERM1;41111111;5411;\
             12345678901;;00;"
        )
    }

    /// Replace field `i` (0-based) of a row.
    fn with(row: &str, i: usize, v: &str) -> String {
        let mut f: Vec<&str> = row.split(';').collect();
        f[i] = v;
        f.join(";")
    }

    fn one(row: &str) -> Result<bool, Rejected> {
        let s = set();
        let f = Filter { salt: SALT, abi: ABI, enrolled: &s };
        let mut layout = None;
        f.row(row.as_bytes(), &mut layout, &mut Vec::new())
    }

    fn rejected_on(row: &str, field: &str) {
        match one(row) {
            Err(r) => assert_eq!(r.field, field, "{row}: {r:?}"),
            Ok(k) => panic!("{row}: accepted (kept: {k}), expected a rejection on {field}"),
        }
    }

    #[test]
    fn kept_rows_carry_the_hpan_and_never_the_pan() {
        let s = set();
        let f = Filter { salt: SALT, abi: ABI, enrolled: &s };
        let input = format!("{}\n{}\n{}\r\n", e1(ENROLLED), e1(STRANGER), e1(" 4111-1111-1111-1111 "));
        let (mut out, mut rej) = (Vec::new(), Vec::new());
        let stats = f.run(input.as_bytes(), &mut out, &mut rej, |_| {}).unwrap();
        assert_eq!((stats.rows, stats.kept, stats.not_enrolled, stats.rejected), (3, 2, 1, 0));
        let out = String::from_utf8(out).unwrap();
        let hpan = Pan::parse(ENROLLED, "pan").unwrap().hash(SALT);
        assert_eq!(out, format!("{}\n{}\n", e1(hpan.as_str()), e1(hpan.as_str())));
        assert!(!out.contains(ENROLLED) && !out.contains(STRANGER));
        let expected: [u8; 32] = Sha256::digest(input.as_bytes()).into();
        assert_eq!(stats.input_sha256, expected);
        // E2 too.
        assert_eq!(one(&e2(ENROLLED)), Ok(true));
        assert_eq!(one(&e2(STRANGER)), Ok(false));
    }

    #[test]
    fn row_structure() {
        rejected_on(&format!("X;{}", e1(ENROLLED)), "record"); // an extra leading field
        rejected_on(e1(ENROLLED).rsplit_once(';').unwrap().0, "record"); // a missing last field
        rejected_on("", "record");
        rejected_on("   ", "record");
        rejected_on(&format!("#{}", e1(ENROLLED)), "record");
        // The layout is set by the first row: an E2 row in an E1 file is rejected.
        let s = set();
        let f = Filter { salt: SALT, abi: ABI, enrolled: &s };
        let input = format!("{}\n{}\n\n#comment\n", e1(ENROLLED), e2(ENROLLED));
        let (mut out, mut rej) = (Vec::new(), Vec::new());
        let stats = f.run(input.as_bytes(), &mut out, &mut rej, |_| {}).unwrap();
        assert_eq!((stats.kept, stats.rejected), (1, 3));
        let rej = String::from_utf8(rej).unwrap();
        assert!(
            rej.starts_with("line;field;reason;pan\n2;record;expected 15 fields, found 19;411111******1111\n"),
            "{rej}"
        );
        assert!(rej.contains("3;record;blank line;") && rej.contains("4;record;comment line"), "{rej}");
        // A checksum header on line 1 is skipped, not counted.
        let input = format!("#sha256sum:{}\n{}\n", "0".repeat(64), e1(ENROLLED));
        let stats = f.run(input.as_bytes(), Vec::new(), Vec::new(), |_| {}).unwrap();
        assert_eq!((stats.lines, stats.rows, stats.kept), (2, 1, 1));
        // An oversize line is rejected and skipped to its end.
        let input = format!("{}\n{}\n", "9".repeat(MAX_LINE_BYTES + 10), e1(ENROLLED));
        let stats = f.run(input.as_bytes(), Vec::new(), Vec::new(), |_| {}).unwrap();
        assert_eq!((stats.rows, stats.kept, stats.rejected), (2, 1, 1));
    }

    #[test]
    fn pan_column() {
        for bad in [
            "",
            "   ",
            "41111111111111A1",
            "4111111111111112",
            "41111111111",
            "41111111111111111111",
            "+4111111111111111",
        ] {
            rejected_on(&e1(bad), "pan");
        }
        rejected_on(&e1(&"4".repeat(65)), "pan");
        // Never the clear PAN in a rejection, masked first 6 / last 4.
        let r = one(&with(&e1(ENROLLED), 9, "EUR")).unwrap_err();
        assert_eq!((r.field.as_str(), r.masked_pan.as_str()), ("currency", "411111******1111"));
        let r = one(&e1("4111111111111112")).unwrap_err();
        assert_eq!(r.masked_pan, "411111******1112");
        assert!(!r.reason.contains("4111111111111112"));
        assert_eq!(mask(b"1234567890"), "**********");
    }

    #[test]
    fn field_level_checklist() {
        let row = e1(ENROLLED);
        let row2 = e2(ENROLLED);
        for v in ["", " ", "1234", "123456", "12-45", "54321", &"1".repeat(21)] {
            rejected_on(&with(&row, 0, v), "sender_code");
        }
        for v in ["", " ", "010", "AA", "1", "001", "+1", "04"] {
            rejected_on(&with(&row, 1, v), "operation_type");
        }
        for v in ["02", "03"] {
            rejected_on(&with(&row2, 1, v), "operation_type");
        }
        for v in ["", "0", "010", "001", "AA", "+1"] {
            rejected_on(&with(&row, 2, v), "circuit_type");
        }
        for v in [
            "",
            "03/20/2020T10:50:33",
            "2020-08-06T12:19:16.000",
            "2020-08-06T12:19:16.000+01",
            "2020-08-06T12:19:16.000z",
            "2020-08-06'T'12:19:16.000Z",
            "2020-08-06T25:19:16.000+01:00",
            "2020-08-06T12:19:16.000+24:00",
            "2020-08-06T24:00:00.000+01:00",
            "2020-02-30T10:00:00.000+01:00",
        ] {
            rejected_on(&with(&row, 4, v), "date_time");
        }
        for (i, field) in [(5, "id_trx_acquirer"), (10, "acquirer_id"), (11, "merchant_id"), (12, "terminal_id")] {
            for v in ["", " ", &"a".repeat(256)] {
                rejected_on(&with(&row, i, v), field);
            }
        }
        for v in ["", " ", &"a".repeat(256)] {
            rejected_on(&with(&row2, 6, v), "id_trx_issuer");
        }
        rejected_on(&with(&row, 7, &"a".repeat(256)), "correlation_id");
        for v in ["", "a", "-1", "-100", "100000000000"] {
            rejected_on(&with(&row, 8, v), "total_amount");
        }
        assert_eq!(one(&with(&row, 8, "0")), Ok(true));
        assert_eq!(one(&with(&row, 8, "2147483648")), Ok(true));
        for v in ["97", "412", "15", "1234", "9781", "EUR"] {
            rejected_on(&with(&row, 9, v), "currency");
        }
        rejected_on(&with(&row2, 9, ""), "currency");
        for v in ["", " ", "12345A", "1234567", "40236", "402360100", "+4023601"] {
            rejected_on(&with(&row, 13, v), "bin");
        }
        for v in ["123456", "490000", "+4900"] {
            rejected_on(&with(&row, 14, v), "mcc");
        }
        for v in ["203", "3000", "12345"] {
            assert_eq!(one(&with(&row, 14, v)), Ok(true), "mcc {v}");
        }
        rejected_on(&with(&row2, 14, ""), "mcc");
        for v in ["", " ", &"A".repeat(51), "RSSMRA80A01H501V0", "+2345678901"] {
            rejected_on(&with(&row2, 15, v), "fiscal_code");
        }
        for v in [&"1".repeat(51), "+123"] {
            rejected_on(&with(&row2, 16, v), "vat");
        }
        for v in ["", " ", "0", "02", "08", "001", "010", "AA", "a", "+1"] {
            rejected_on(&with(&row2, 17, v), "pos_type");
        }
        assert_eq!(one(&with(&row2, 17, "01")), Ok(true));
        for v in [&"A".repeat(256), &"a".repeat(29), "ABCDE", &"A".repeat(32)] {
            rejected_on(&with(&row2, 18, v), "par");
        }
        assert_eq!(one(&with(&row2, 18, &"A".repeat(29))), Ok(true));
    }
}
