//! The acquirer's raw export (clear PANs in column 4) → the platform's file (hpans in column 4),
//! enrolled cards only.
//!
//! Every row is validated with the platform's own rules (`cashback_domain::acquirer::RecordView`,
//! the validation `AcquirerRecord::parse` itself goes through), so a row the tool keeps is a row
//! the platform accepts. Column 4 must be a card number as the issuers enrol it
//! (`cashback_domain::PanDigits`, the rules of `Pan::parse`: 12–19 digits after removing spaces
//! and dashes, **Luhn checked** — a PAN failing Luhn can never have been enrolled, so it is
//! reported, not silently dropped). The hpan is `SHA-256(PAN + salt)`, looked up as 32 bytes in
//! the enrolled set and spelled in hex only for the rows written out.
//!
//! Rejected rows go to a report `line;field;reason;pan` where `pan` is masked (first 6 / last 4);
//! the domain's reasons never echo column 4. Nothing here ever writes or logs a clear PAN.
//!
//! # Pipeline
//!
//! One reader thread reads the input in blocks of whole lines (about 1 MiB), hashes the raw bytes
//! for the `#sha256sum:` line and numbers the lines; `threads` workers validate, hash and look up
//! the rows of a block (borrowed fields, no allocation per row, lookups batched so their memory
//! loads overlap); the calling thread writes each block's kept rows and rejections in input
//! order. Memory: a bounded number of blocks in flight (a few MiB), whatever the input size.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use cashback_domain::acquirer::{RecordLayout, RecordView};
use cashback_domain::{PanDigits, ValidationError};
use sha2::{Digest, Sha256};

use super::hpans::{BATCH, HpanSet};

/// Longest accepted line, in bytes (same order as the platform's limit).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Bytes of input per block (whole lines; a line longer than this is rejected as oversize).
const BLOCK_BYTES: usize = 1 << 20;
/// Most fields of a row kept (E2 has 19; a longer row is rejected on its count).
const MAX_FIELDS: usize = 19;

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

impl FilterStats {
    fn add(&mut self, o: &FilterStats) {
        self.lines += o.lines;
        self.rows += o.rows;
        self.kept += o.kept;
        self.not_enrolled += o.not_enrolled;
        self.rejected += o.rejected;
        self.sender_mismatch += o.sender_mismatch;
    }
}

/// What the filter needs: the salt, the ABI every row's sender code must equal, the enrolled set,
/// and the number of worker threads (0: one per available core).
pub struct Filter<'a> {
    pub salt: &'a str,
    pub abi: &'a str,
    pub enrolled: &'a HpanSet,
    pub threads: usize,
}

/// A rejected row, as written to the report.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    pub field: String,
    pub reason: String,
    /// Column 4 masked (first 6 / last 4), empty when the row has no column 4.
    pub masked_pan: String,
}

/// Whole lines of the input, numbered from `first_line`.
struct Block {
    seq: u64,
    first_line: u64,
    /// The layout set by an earlier block's first well-formed row, if any.
    layout: Option<RecordLayout>,
    data: Vec<u8>,
    len: usize,
}

/// A block's kept rows and rejections, written in `seq` order.
struct Done {
    seq: u64,
    stats: FilterStats,
    out: Vec<u8>,
    rej: Vec<u8>,
    data: Vec<u8>,
}

/// A valid row: its hpan, and where column 4 is in the line when no field needs trimming.
struct Valid {
    digest: [u8; 32],
    c4: Option<(usize, usize)>,
}

/// A valid row waiting for its lookup: where its line is in the block.
struct Pending {
    start: usize,
    end: usize,
    row: Valid,
}

impl Filter<'_> {
    /// Reads `input` to its end; kept rows (hpan in column 4, fields trimmed, `;`-joined) go to
    /// `output`, rejected rows to `rejects` as `line;field;reason;masked pan`, both in input
    /// order. `progress` gets the number of lines done now and then.
    pub fn run<R: Read + Send, W: Write, J: Write>(
        &self,
        input: R,
        mut output: W,
        mut rejects: J,
        mut progress: impl FnMut(u64),
    ) -> io::Result<FilterStats> {
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        writeln!(rejects, "line;field;reason;pan")?;
        let (work_tx, work_rx) = mpsc::sync_channel::<Block>(2 * threads);
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
        let (spare_out_tx, spare_out_rx) = mpsc::channel::<(Vec<u8>, Vec<u8>)>();
        let spare_out_rx = Mutex::new(spare_out_rx);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let stop = &stop;
            let reader = scope.spawn(move || read_blocks(input, work_tx, spare_rx, stop));
            for _ in 0..threads {
                let done_tx = done_tx.clone();
                let (work_rx, spare_out_rx) = (&work_rx, &spare_out_rx);
                scope.spawn(move || {
                    loop {
                        let next = work_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(block)) = next else { return };
                        let (mut out, mut rej) = spare_out_rx
                            .lock()
                            .ok()
                            .and_then(|rx| rx.try_recv().ok())
                            .unwrap_or_else(|| (Vec::with_capacity(BLOCK_BYTES * 3 / 2), Vec::new()));
                        let stats = self.block(&block, &mut out, &mut rej);
                        // After a write error nobody listens: keep draining so the reader
                        // never blocks, it stops at its next block.
                        let _ = done_tx.send(Done { seq: block.seq, stats, out, rej, data: block.data });
                    }
                });
            }
            drop(done_tx);
            // Write in input order.
            let mut total = FilterStats::default();
            let mut waiting = BTreeMap::new();
            let mut next = 0u64;
            let written = (|| -> io::Result<()> {
                for done in &done_rx {
                    waiting.insert(done.seq, done);
                    while let Some(mut d) = waiting.remove(&next) {
                        output.write_all(&d.out)?;
                        rejects.write_all(&d.rej)?;
                        total.add(&d.stats);
                        progress(total.lines);
                        next += 1;
                        let _ = spare_tx.send(std::mem::take(&mut d.data));
                        d.out.clear();
                        d.rej.clear();
                        let _ = spare_out_tx.send((d.out, d.rej));
                    }
                }
                Ok(())
            })();
            // On a write error, stop the reader (the workers then run out of blocks).
            stop.store(true, Ordering::Relaxed);
            drop(done_rx);
            drop(spare_tx);
            let read = reader.join().map_err(|_| io::Error::other("the input reader panicked"))?;
            written?;
            total.input_sha256 = read?;
            output.flush()?;
            rejects.flush()?;
            Ok(total)
        })
    }

    /// Validates, hashes and looks up the rows of one block.
    fn block(&self, b: &Block, out: &mut Vec<u8>, rej: &mut Vec<u8>) -> FilterStats {
        let data = &b.data[..b.len];
        let mut stats = FilterStats::default();
        let mut layout = b.layout;
        let mut pending: Vec<Pending> = Vec::with_capacity(BATCH);
        let mut found = [false; BATCH];
        let mut pos = 0;
        let mut line_no = b.first_line;
        while pos < data.len() {
            let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
            let (start, line) = (pos, &data[pos..end]);
            pos = end + 1;
            stats.lines += 1;
            let body = line.strip_suffix(b"\r").unwrap_or(line);
            if line_no == 1 && body.starts_with(b"#sha256") {
                line_no += 1;
                continue;
            }
            stats.rows += 1;
            let result = if body.len() > MAX_LINE_BYTES {
                Err(Rejected {
                    field: "record".into(),
                    reason: format!("line longer than {MAX_LINE_BYTES} bytes"),
                    masked_pan: String::new(),
                })
            } else {
                self.check(body, &mut layout)
            };
            match result {
                Ok(row) => {
                    pending.push(Pending { start, end: start + body.len(), row });
                    if pending.len() == BATCH {
                        self.flush(data, &mut pending, &mut found, out, &mut stats);
                    }
                }
                Err(r) => {
                    stats.rejected += 1;
                    if r.field == "sender_code" {
                        stats.sender_mismatch += 1;
                    }
                    let _ =
                        writeln!(rej, "{line_no};{};{};{}", r.field, r.reason.replace([';', '\n'], ","), r.masked_pan);
                }
            }
            line_no += 1;
        }
        self.flush(data, &mut pending, &mut found, out, &mut stats);
        stats
    }

    /// Looks up the pending rows together and writes the enrolled ones.
    fn flush(
        &self,
        data: &[u8],
        pending: &mut Vec<Pending>,
        found: &mut [bool; BATCH],
        out: &mut Vec<u8>,
        stats: &mut FilterStats,
    ) {
        let n = pending.len();
        let mut digests = [[0u8; 32]; BATCH];
        for (d, p) in digests.iter_mut().zip(pending.iter()) {
            *d = p.row.digest;
        }
        self.enrolled.contains_batch(&digests[..n], &mut found[..n]);
        for (p, &hit) in pending.iter().zip(found.iter()) {
            if hit {
                stats.kept += 1;
                emit(&data[p.start..p.end], &p.row, out);
            } else {
                stats.not_enrolled += 1;
            }
        }
        pending.clear();
    }

    /// One data line (no line end): its hpan when valid, else the rejection.
    fn check(&self, body: &[u8], layout: &mut Option<RecordLayout>) -> Result<Valid, Rejected> {
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
        let mut fields: [&[u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
        let count = split(body, &mut fields);
        // Masked only when a row is rejected (no allocation on the hot path).
        let masked = || if count > 3 { mask(fields[3].trim_ascii()) } else { String::new() };
        let lay = match *layout {
            Some(l) => l,
            None => {
                let l = RecordLayout::from_columns(count).ok_or_else(|| {
                    reject(
                        ValidationError::new(
                            "record",
                            format!("expected 15 fields (E1) or 19 fields (E2) separated by ';', found {count}"),
                        ),
                        masked(),
                    )
                })?;
                *layout = Some(l);
                l
            }
        };
        if count != lay.columns() {
            return Err(reject(
                ValidationError::new("record", format!("expected {} fields, found {count}", lay.columns())),
                masked(),
            ));
        }
        let row = RecordView::parse_with(&fields[..count], lay, |c| PanDigits::parse(c, "pan"))
            .map_err(|e| reject(e, masked()))?;
        if row.sender_code != self.abi.as_bytes() {
            return Err(reject(
                ValidationError::new(
                    "sender_code",
                    format!("is {} but the file's ABI is {}", row.sender_code.escape_ascii(), self.abi),
                ),
                masked(),
            ));
        }
        // Column 4's place in the line, when no field needs trimming (the output is then the
        // line with the hpan in that place).
        let clean = fields[..count]
            .iter()
            .all(|f| !f.first().is_some_and(u8::is_ascii_whitespace) && !f.last().is_some_and(u8::is_ascii_whitespace));
        let c4_start = fields[3].as_ptr() as usize - body.as_ptr() as usize;
        let c4 = clean.then_some((c4_start, c4_start + fields[3].len()));
        Ok(Valid { digest: row.column4.hash_bytes(self.salt.as_bytes()), c4 })
    }

    /// One data line on its own: `Ok(true)` kept (written to `out` with its newline),
    /// `Ok(false)` valid but not enrolled, `Err` rejected.
    #[cfg(test)]
    pub fn row(&self, body: &[u8], layout: &mut Option<RecordLayout>, out: &mut Vec<u8>) -> Result<bool, Rejected> {
        let v = self.check(body, layout)?;
        let hit = self.enrolled.contains(&v.digest);
        if hit {
            emit(body, &v, out);
        }
        Ok(hit)
    }
}

/// The layout a line sets when it is the first to have one: what [`Filter::check`] decides for a
/// line read while the layout is unknown (blank, comment and oversize lines set none).
fn layout_set_by(line_no: u64, line: &[u8]) -> Option<RecordLayout> {
    let body = line.strip_suffix(b"\r").unwrap_or(line);
    if (line_no == 1 && body.starts_with(b"#sha256"))
        || body.len() > MAX_LINE_BYTES
        || body.trim_ascii().is_empty()
        || body.starts_with(b"#")
    {
        return None;
    }
    RecordLayout::from_columns(memchr::memchr_iter(b';', body).count() + 1)
}

/// Splits a line on `;` into `fields` (the first [`MAX_FIELDS`]); returns the field count. The
/// separators are found 32 bytes at a time, as a bit mask (vectorised compares).
fn split<'l>(body: &'l [u8], fields: &mut [&'l [u8]; MAX_FIELDS]) -> usize {
    let mut count = 0;
    let mut start = 0;
    let mut put = |i: usize| {
        if count < MAX_FIELDS {
            fields[count] = &body[start..i];
        }
        count += 1;
        start = i + 1;
    };
    let mut chunks = body.chunks_exact(32);
    let mut base = 0;
    for c in &mut chunks {
        let mut mask = 0u32;
        for (i, &b) in c.iter().enumerate() {
            mask |= u32::from(b == b';') << i;
        }
        while mask != 0 {
            put(base + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
        base += 32;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b';' {
            put(base + i);
        }
    }
    if count < MAX_FIELDS {
        fields[count] = &body[start..];
    }
    count + 1
}

/// A kept row: its fields trimmed and `;`-joined, the hpan in hex in column 4, then `\n`.
fn emit(body: &[u8], row: &Valid, out: &mut Vec<u8>) {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(row.digest, &mut hex).expect("64 bytes for 32");
    if let Some((start, end)) = row.c4 {
        out.extend_from_slice(&body[..start]);
        out.extend_from_slice(&hex);
        out.extend_from_slice(&body[end..]);
    } else {
        for (i, f) in body.split(|&b| b == b';').enumerate() {
            if i > 0 {
                out.push(b';');
            }
            out.extend_from_slice(if i == 3 { &hex } else { f.trim_ascii() });
        }
    }
    out.push(b'\n');
}

/// Number of `\n` bytes (memchr's vectorised count).
fn count_newlines(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64
}

/// The reader: blocks of whole lines to the workers, the SHA-256 of every byte read.
fn read_blocks<R: Read>(
    mut input: R,
    work: mpsc::SyncSender<Block>,
    spare: mpsc::Receiver<Vec<u8>>,
    stop: &AtomicBool,
) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let fresh = |spare: &mpsc::Receiver<Vec<u8>>| spare.try_recv().unwrap_or_else(|_| vec![0u8; BLOCK_BYTES]);
    let (mut seq, mut next_line, mut layout) = (0u64, 1u64, None);
    // Sends `data[..len]` (whole lines, the last one possibly without its `\n`); false when
    // the workers are gone (the writer failed).
    let mut send = |data: Vec<u8>, len: usize| -> bool {
        let first_line = next_line;
        let block_layout = layout;
        let mut pos = 0;
        while pos < len {
            let end = memchr::memchr(b'\n', &data[pos..len]).map_or(len, |i| pos + i);
            if layout.is_none() {
                layout = layout_set_by(next_line, &data[pos..end]);
            } else if pos == 0 {
                // The layout is known: count the lines without looking at them.
                next_line += count_newlines(&data[..len]) + u64::from(data[len - 1] != b'\n');
                break;
            }
            next_line += 1;
            pos = end + 1;
        }
        let ok = !stop.load(Ordering::Relaxed)
            && work.send(Block { seq, first_line, layout: block_layout, data, len }).is_ok();
        seq += 1;
        ok
    };
    let mut buf = fresh(&spare);
    let mut filled = 0;
    loop {
        let n = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[filled..filled + n]);
        filled += n;
        if n == 0 {
            if filled > 0 {
                send(buf, filled);
            }
            break;
        }
        if filled < BLOCK_BYTES {
            continue;
        }
        match memchr::memrchr(b'\n', &buf) {
            Some(i) => {
                let mut next = fresh(&spare);
                let tail = BLOCK_BYTES - (i + 1);
                next[..tail].copy_from_slice(&buf[i + 1..]);
                if !send(buf, i + 1) {
                    break;
                }
                (buf, filled) = (next, tail);
            }
            None => {
                // A line longer than a block: its first MAX_LINE_BYTES + 2 bytes stand for it
                // (rejected as oversize), the rest is read (and hashed) up to its end.
                let mut next = fresh(&spare);
                buf[MAX_LINE_BYTES + 2] = b'\n';
                if !send(buf, MAX_LINE_BYTES + 3) {
                    break;
                }
                filled = 0;
                loop {
                    let n = match input.read(&mut next) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    hasher.update(&next[..n]);
                    if n == 0 {
                        break;
                    }
                    if let Some(j) = memchr::memchr(b'\n', &next[..n]) {
                        next.copy_within(j + 1..n, 0);
                        filled = n - (j + 1);
                        break;
                    }
                }
                buf = next;
            }
        }
    }
    Ok(hasher.finalize().into())
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

#[cfg(test)]
mod tests {
    //! The bad-input checklist of rtd-acquirer.md §4.2 ("Row structure" and "Field level"),
    //! applied on the acquirer side.
    use super::*;
    use cashback_domain::Pan;

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
        let f = Filter { salt: SALT, abi: ABI, enrolled: &s, threads: 2 };
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
        let f = Filter { salt: SALT, abi: ABI, enrolled: &s, threads: 2 };
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
        let f = Filter { salt: SALT, abi: ABI, enrolled: &s, threads: 2 };
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

    /// Many blocks, several workers: outputs and rejections keep the input order and the line
    /// numbers, whatever the number of threads; a line longer than a block is rejected and
    /// skipped; the checksum covers every byte.
    #[test]
    fn parallel_blocks_keep_the_order() {
        let enrolled: Vec<String> = (0..50u64).map(|i| luhn_pan(4_000_000_000 + i)).collect();
        let digests = enrolled.iter().map(|p| Pan::parse(p, "pan").unwrap().hash(SALT).to_bytes()).collect();
        let s = HpanSet::from_digests(digests);
        let mut input = String::new();
        let (mut want_out, mut want_rej) = (String::new(), String::from("line;field;reason;pan\n"));
        let mut line = 0u64;
        for i in 0..30_000u64 {
            line += 1;
            let pan = if i % 3 == 0 { enrolled[(i % 50) as usize].clone() } else { luhn_pan(5_000_000_000 + i) };
            let row = with(&e1(&pan), 5, &format!("T{i}"));
            if i % 997 == 0 {
                let bad = with(&row, 8, "-1");
                input.push_str(&bad);
                want_rej.push_str(&format!(
                    "{line};total_amount;must be a whole number of cents, digits 0-9 only (no sign, no decimals), \
                     got \"-1\";{}\n",
                    mask(pan.as_bytes())
                ));
            } else {
                input.push_str(&row);
                if i % 3 == 0 {
                    let hpan = Pan::parse(&pan, "pan").unwrap().hash(SALT);
                    want_out.push_str(&with(&row, 3, hpan.as_str()));
                    want_out.push('\n');
                }
            }
            input.push('\n');
            if i == 12_345 {
                line += 1;
                input.push_str(&"9".repeat(BLOCK_BYTES + 10));
                input.push('\n');
                want_rej.push_str(&format!("{line};record;line longer than {MAX_LINE_BYTES} bytes;\n"));
            }
        }
        for threads in [1, 2, 3] {
            let f = Filter { salt: SALT, abi: ABI, enrolled: &s, threads };
            let (mut out, mut rej) = (Vec::new(), Vec::new());
            let stats = f.run(input.as_bytes(), &mut out, &mut rej, |_| {}).unwrap();
            assert_eq!(stats.lines, 30_001);
            assert_eq!((stats.rows, stats.kept + stats.not_enrolled + stats.rejected), (30_001, 30_001));
            assert_eq!(stats.rejected, 32);
            assert_eq!(String::from_utf8(rej).unwrap(), want_rej, "{threads} threads");
            assert!(String::from_utf8(out).unwrap() == want_out, "{threads} threads: output differs");
            let expected: [u8; 32] = Sha256::digest(input.as_bytes()).into();
            assert_eq!(stats.input_sha256, expected);
        }
        // The layout is set by the first well-formed row even when it comes after a whole block
        // of malformed lines.
        let mut input = format!("{}\n", "x;".repeat(10_000)).repeat(120);
        input.push_str(&format!("{}\n{}\n", e2(&enrolled[0]), e1(&enrolled[0])));
        let f = Filter { salt: SALT, abi: ABI, enrolled: &s, threads: 2 };
        let mut rej = Vec::new();
        let stats = f.run(input.as_bytes(), Vec::new(), &mut rej, |_| {}).unwrap();
        assert_eq!((stats.rows, stats.kept, stats.rejected), (122, 1, 121));
        let rej = String::from_utf8(rej).unwrap();
        assert!(
            rej.contains("\n120;record;expected 15 fields (E1) or 19 fields (E2) separated by ',', found 10001;*\n")
        );
        let tail = format!("\n122;record;expected 19 fields, found 15;{}\n", mask(enrolled[0].as_bytes()));
        assert!(rej.ends_with(&tail), "{}", &rej[rej.len() - 200..]);
    }

    #[test]
    fn split_and_count_match_the_plain_versions() {
        let mut lines: Vec<Vec<u8>> = vec![b"".to_vec(), b";".to_vec(), b";;;".to_vec(), e1(ENROLLED).into_bytes()];
        lines.push(e2(" 4111 1111 1111 1111 ").into_bytes());
        lines.push(";".repeat(40).into_bytes());
        for n in [31, 32, 33, 63, 64, 65, 200] {
            lines.push((0..n).map(|i| if i % 7 == 3 { b';' } else { b'a' }).collect());
        }
        for line in &lines {
            let plain: Vec<&[u8]> = line.split(|&b| b == b';').collect();
            let mut fields: [&[u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
            let n = split(line, &mut fields);
            assert_eq!(n, plain.len());
            assert_eq!(&fields[..n.min(MAX_FIELDS)], &plain[..n.min(MAX_FIELDS)]);
        }
        let text: Vec<u8> = (0..100_000u32).map(|i| if i % 13 == 0 || i % 97 == 5 { b'\n' } else { b'x' }).collect();
        for len in [0, 1, 31, 32, 33, 8159, 8160, 8161, 100_000] {
            let plain = text[..len].iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count_newlines(&text[..len]), plain, "{len}");
        }
    }

    /// A Luhn-valid 16-digit PAN from a 15-digit body.
    fn luhn_pan(body: u64) -> String {
        let body = format!("4{body:014}");
        (0..10).map(|c| format!("{body}{c}")).find(|p| Pan::parse(p, "pan").is_ok()).unwrap()
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
