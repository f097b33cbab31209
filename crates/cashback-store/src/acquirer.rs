//! Records of the acquirer pipeline: files, their progress and report, stored transactions.

use cashback_domain::eligibility::Ineligible;
use cashback_domain::{FiscalCode, Hpan};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Processing,
    Done,
    Failed,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Processing => "PROCESSING",
            FileStatus::Done => "DONE",
            FileStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<FileStatus> {
        [FileStatus::Processing, FileStatus::Done, FileStatus::Failed].into_iter().find(|f| f.as_str() == s)
    }
}

/// Row counters of a file. `accepted + ineligible + duplicates + rejected` = data lines read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// New eligible transactions.
    pub accepted: u64,
    /// New well-formed rows that do not count (stored with their reason).
    pub ineligible: u64,
    /// Rows already stored (from this or an earlier file).
    pub duplicates: u64,
    /// Malformed rows (reported with line, field and reason; nothing stored).
    pub rejected: u64,
}

impl FileCounts {
    pub fn add(&mut self, o: ChunkOutcome, rejected: u64) {
        self.accepted += o.accepted;
        self.ineligible += o.ineligible;
        self.duplicates += o.duplicates;
        self.rejected += rejected;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAcquirerFile {
    pub name: String,
    pub abi: String,
    pub size: u64,
    /// SHA-256 (hex) of the file as received.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquirerFile {
    pub id: i64,
    pub name: String,
    pub abi: String,
    pub size: u64,
    pub sha256: String,
    /// The `#sha256sum:` line of the decrypted file, when present.
    pub checksum: Option<String>,
    pub status: FileStatus,
    pub received_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// Last line committed (progress; a resumed ingestion skips lines up to here).
    pub last_line: u64,
    pub counts: FileCounts,
    /// Why the whole file was refused (status FAILED).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginFile {
    Started(AcquirerFile),
    Resume(AcquirerFile),
    AlreadyDone(AcquirerFile),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

/// A well-formed acquirer row as stored: eligible (attributed to a citizen and a period) or not
/// (with its reason). Amounts are unsigned cents; `reversal` gives the sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransaction {
    pub dedup_key: [u8; 16],
    pub line: u64,
    pub hpan: Hpan,
    pub fiscal_code: Option<FiscalCode>,
    pub award_period_id: Option<i64>,
    pub ineligible: Option<Ineligible>,
    /// The instant, in the offset the acquirer sent.
    pub at: OffsetDateTime,
    pub reversal: bool,
    pub amount_cents: i64,
    pub circuit_type: u8,
    pub sender_code: String,
    pub acquirer_id: String,
    pub merchant_id: String,
    pub terminal_id: String,
    pub id_trx_acquirer: String,
    pub id_trx_issuer: Option<String>,
    pub correlation_id: Option<String>,
    pub bin: String,
    pub mcc: Option<String>,
    /// E2 only: 0 physical POS, 1 e-commerce.
    pub pos_type: Option<u8>,
    pub par: Option<String>,
}

/// One chunk of a file, stored atomically with the file's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestChunk {
    pub rows: Vec<StoredTransaction>,
    pub rejections: Vec<Rejection>,
    /// The last line of the file this chunk covers.
    pub last_line: u64,
    /// The decrypted file's `#sha256sum:` line, recorded with the first chunk.
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    pub accepted: u64,
    pub ineligible: u64,
    pub duplicates: u64,
}
