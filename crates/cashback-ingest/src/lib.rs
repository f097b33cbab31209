//! Ingestion of one acquirer transaction file (plaintext CSV; decryption happens before).
//!
//! Pipeline: a blocking thread reads the file line by line (never the whole file), parses and
//! validates each row with `cashback_domain::acquirer`, classifies it against an
//! [`EnrollmentIndex`] snapshot, and hands chunks of rows to the async side through a bounded
//! channel; the async side stores each chunk atomically together with the file's progress
//! (`Store::ingest_chunk`). Parsing and storing run in parallel, on different cores.
//!
//! * **Nothing is lost**: a malformed row is reported with its line number, field and reason,
//!   and every other row is still processed. An ineligible row is stored with its reason.
//! * **Idempotent**: a file is registered by name (done → returned as is); every row carries a
//!   deduplication key, so a row seen in any earlier file counts once.
//! * **Crash safe**: a file interrupted mid-way resumes after its last committed line; the
//!   chunks before it were committed with their counters, so the final result equals a clean run.
//!
//! Lines are split by hand rather than with the `csv` crate: the format has no quoting, and the
//! `csv` reader silently skips blank lines, which must be reported as malformed rows here.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::time::Duration;

use cashback_domain::acquirer::{AcquirerRecord, FileName, OperationType, PosType, RecordLayout};
use cashback_domain::eligibility::{EnrollmentIndex, TransactionFacts, classify};
use cashback_domain::{AwardPeriod, FiscalCode, ValidationError};
use cashback_store::{
    AcquirerFile, BeginFile, IngestChunk, NewAcquirerFile, Rejection, Store, StoreError, StoredTransaction,
};
use time::OffsetDateTime;
use tokio::sync::mpsc;

mod received;
pub use received::{Decryption, ingest_path};

/// Longest accepted line (bytes); a longer one is rejected and skipped.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Rows per stored chunk (one database transaction each).
    pub chunk_rows: usize,
    /// Chunks parsed ahead of the store.
    pub chunks_ahead: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { chunk_rows: 50_000, chunks_ahead: 2 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file name is not a valid acquirer file name (nothing registered).
    #[error("{0}")]
    FileName(ValidationError),
    /// The file was refused as a whole (recorded as FAILED with this reason).
    #[error("file refused: {0}")]
    Refused(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
}

/// What eligibility needs, loaded once per ingestion run.
pub struct IngestContext {
    pub store: Arc<dyn Store>,
    pub index: Arc<EnrollmentIndex>,
    pub periods: Arc<Vec<AwardPeriod>>,
    pub now: OffsetDateTime,
}

impl IngestContext {
    pub async fn load(store: Arc<dyn Store>, now: OffsetDateTime) -> Result<IngestContext, StoreError> {
        let index = Arc::new(store.load_enrollment_index().await?);
        let periods = Arc::new(store.list_award_periods().await?);
        Ok(IngestContext { store, index, periods, now })
    }
}

/// The outcome of one file: its record (status, counters) and whether this run did the work.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub file: AcquirerFile,
    pub already_done: bool,
}

/// Identity of the bytes received, recorded with the file.
#[derive(Debug, Clone)]
pub struct Received {
    pub size: u64,
    pub sha256: String,
}

/// Ingest one plaintext file. `progress` is called with the number of lines read so far.
pub async fn ingest_file<R: Read + Send + 'static>(
    ctx: &IngestContext,
    name: &str,
    received: Received,
    plaintext: R,
    opts: &IngestOptions,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<Ingested, IngestError> {
    let fname = FileName::parse(name).map_err(IngestError::FileName)?;
    let new =
        NewAcquirerFile { name: name.to_owned(), abi: fname.abi.clone(), size: received.size, sha256: received.sha256 };
    let file = match ctx.store.begin_acquirer_file(new, ctx.now).await? {
        BeginFile::AlreadyDone(file) => return Ok(Ingested { file, already_done: true }),
        BeginFile::Started(f) | BeginFile::Resume(f) => f,
    };
    let file_id = file.id;
    let (tx, mut rx) = mpsc::channel::<Parsed>(opts.chunks_ahead.max(1));
    let parser = Parser {
        abi: fname.abi,
        skip_until: file.last_line,
        index: ctx.index.clone(),
        periods: ctx.periods.clone(),
        now: ctx.now,
        chunk_rows: opts.chunk_rows.max(1),
    };
    let reading = tokio::task::spawn_blocking(move || parser.run(plaintext, tx, progress));
    let mut refused: Option<String> = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Parsed::Chunk(chunk) => store_chunk(ctx.store.as_ref(), file_id, chunk).await?,
            Parsed::Refuse(reason) => refused = Some(reason),
        }
    }
    let summary = reading.await.map_err(|e| IngestError::Io(std::io::Error::other(e.to_string())))??;
    if refused.is_none() && summary.data_lines == 0 {
        refused = Some("the file holds no transaction records".into());
    }
    if let Some(reason) = refused {
        let file = ctx.store.finish_acquirer_file(file_id, Some(reason.clone()), ctx.now).await?;
        tracing::warn!(file = %file.name, %reason, "acquirer file refused");
        return Err(IngestError::Refused(reason));
    }
    let file = ctx.store.finish_acquirer_file(file_id, None, ctx.now).await?;
    tracing::info!(file = %file.name, accepted = file.counts.accepted, ineligible = file.counts.ineligible,
        duplicates = file.counts.duplicates, rejected = file.counts.rejected, "acquirer file ingested");
    Ok(Ingested { file, already_done: false })
}

/// Store a chunk, waiting out short overloads of the store (its queue is bounded).
async fn store_chunk(store: &dyn Store, file_id: i64, chunk: IngestChunk) -> Result<(), StoreError> {
    let mut delay = Duration::from_millis(20);
    for attempt in 0.. {
        match store.ingest_chunk(file_id, chunk.clone()).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Busy(e)) if attempt < 50 => {
                tracing::debug!(error = %e, "store busy, retrying chunk");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

enum Parsed {
    Chunk(IngestChunk),
    /// The whole file is refused (e.g. a malformed checksum line); nothing more is sent.
    Refuse(String),
}

struct Summary {
    data_lines: u64,
}

struct Parser {
    abi: String,
    skip_until: u64,
    index: Arc<EnrollmentIndex>,
    periods: Arc<Vec<AwardPeriod>>,
    now: OffsetDateTime,
    chunk_rows: usize,
}

impl Parser {
    fn run<R: Read>(
        self,
        input: R,
        tx: mpsc::Sender<Parsed>,
        progress: impl Fn(u64),
    ) -> Result<Summary, std::io::Error> {
        let mut reader = std::io::BufReader::with_capacity(1 << 20, input);
        let mut line = Vec::with_capacity(512);
        let mut line_no: u64 = 0;
        let mut data_lines: u64 = 0;
        let mut layout: Option<RecordLayout> = None;
        let mut chunk = IngestChunk::default();
        let send = |c: IngestChunk| tx.blocking_send(Parsed::Chunk(c)).is_ok();
        loop {
            line.clear();
            let n = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let oversize = line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n');
            if oversize {
                // Skip the rest of the line.
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
            if line_no == 1 && body.starts_with(b"#sha256") {
                let text = String::from_utf8_lossy(body);
                match cashback_domain::acquirer::parse_checksum_line(&text) {
                    Ok(_) => chunk.checksum = Some(text.into_owned()),
                    Err(e) => {
                        let _ = tx.blocking_send(Parsed::Refuse(format!("{}: {}", e.field, e.reason)));
                        return Ok(Summary { data_lines });
                    }
                }
                continue;
            }
            data_lines += 1;
            if line_no <= self.skip_until {
                continue;
            }
            if oversize {
                chunk.rejections.push(reject(line_no, "record", format!("line longer than {MAX_LINE_BYTES} bytes")));
            } else {
                match self.row(body, line_no, &mut layout) {
                    Ok(row) => chunk.rows.push(row),
                    Err(e) => chunk.rejections.push(reject(line_no, &e.field, e.reason.into_owned())),
                }
            }
            if chunk.rows.len() + chunk.rejections.len() >= self.chunk_rows {
                chunk.last_line = line_no;
                progress(line_no);
                if !send(std::mem::take(&mut chunk)) {
                    return Ok(Summary { data_lines });
                }
            }
        }
        if !chunk.rows.is_empty() || !chunk.rejections.is_empty() || chunk.checksum.is_some() {
            chunk.last_line = line_no;
            send(chunk);
        }
        progress(line_no);
        Ok(Summary { data_lines })
    }

    fn row(
        &self,
        body: &[u8],
        line: u64,
        layout: &mut Option<RecordLayout>,
    ) -> Result<StoredTransaction, ValidationError> {
        let fields: Vec<&[u8]> = body.split(|&b| b == b';').collect();
        let lay = match *layout {
            Some(l) => l,
            None => {
                let l = RecordLayout::from_columns(fields.len()).ok_or_else(|| {
                    ValidationError::new(
                        "record",
                        format!("expected 15 fields (E1) or 19 fields (E2) separated by ';', found {}", fields.len()),
                    )
                })?;
                *layout = Some(l);
                l
            }
        };
        let r = AcquirerRecord::parse(&fields, lay)?;
        if r.sender_code != self.abi {
            return Err(ValidationError::new(
                "sender_code",
                format!("is {} but the file name's ABI is {}", r.sender_code, self.abi),
            ));
        }
        let key = r.hpan.to_bytes();
        let facts = TransactionFacts { hpan: &key, at: r.timestamp, ecommerce: r.pos_type == Some(PosType::Ecommerce) };
        let (fiscal_code, award_period_id, ineligible) = match classify(&facts, &self.index, &self.periods, self.now) {
            Ok(a) => (
                Some(FiscalCode::parse(self.index.fiscal_code(a.citizen)).map_err(|e| {
                    ValidationError::new("hpan", format!("enrolled to an invalid fiscal code: {}", e.reason))
                })?),
                Some(a.award_period_id),
                None,
            ),
            Err(reason) => (None, None, Some(reason)),
        };
        Ok(StoredTransaction {
            dedup_key: r.dedup_key(),
            line,
            hpan: r.hpan,
            fiscal_code,
            award_period_id,
            ineligible,
            at: r.timestamp,
            reversal: r.operation == OperationType::Reversal,
            amount_cents: r.amount.cents(),
            circuit_type: r.circuit_type,
            sender_code: r.sender_code,
            acquirer_id: r.acquirer_id,
            merchant_id: r.merchant_id,
            terminal_id: r.terminal_id,
            id_trx_acquirer: r.id_trx_acquirer,
            id_trx_issuer: r.id_trx_issuer,
            correlation_id: r.correlation_id,
            bin: r.bin,
            mcc: r.mcc,
            pos_type: r.pos_type.map(|p| if p == PosType::Ecommerce { 1 } else { 0 }),
            par: r.par,
        })
    }
}

fn reject(line: u64, field: &str, reason: String) -> Rejection {
    Rejection { line, field: field.to_owned(), reason }
}

/// SHA-256 (hex) of everything read through it; for recording what was received.
pub struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        use sha2::Digest;
        Self { inner, hasher: sha2::Sha256::new(), bytes: 0 }
    }

    pub fn finish(self) -> Received {
        use sha2::Digest;
        Received { size: self.bytes, sha256: hex::encode(self.hasher.finalize()) }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// SHA-256 and size of a file on disk (streamed).
pub fn hash_file(path: &std::path::Path) -> std::io::Result<Received> {
    let mut r = HashingReader::new(std::fs::File::open(path)?);
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok(r.finish())
}
