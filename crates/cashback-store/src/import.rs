//! Bulk import of enrollments: an operator task for migrating citizens and their active
//! instruments from the original system (and for seeding benchmarks), far faster than one
//! enrollment call per row.

use cashback_domain::enrollment::Channel;
use cashback_domain::{FiscalCode, Hpan};
use time::OffsetDateTime;

/// Most citizens plus instruments accepted by one [`crate::Store::import_enrollments`] call (one
/// database transaction); callers split larger imports.
pub const MAX_IMPORT_BATCH: usize = 200_000;

/// A citizen to create, enabled, with the instant the terms were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedCitizen {
    pub fiscal_code: FiscalCode,
    pub terms_accepted_at: OffsetDateTime,
    pub channel: Channel,
    /// The citizen's IBAN for payouts, when the original system had one (holder: the citizen).
    pub iban: Option<String>,
}

/// An active instrument to create, with its open activation window starting at `activated_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedInstrument {
    pub hpan: Hpan,
    pub fiscal_code: FiscalCode,
    pub channel: Channel,
    pub activated_at: OffsetDateTime,
}

/// One batch of an import. Citizens are applied before instruments, so a batch may carry both a
/// citizen and its cards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentImport {
    pub citizens: Vec<ImportedCitizen>,
    pub instruments: Vec<ImportedInstrument>,
}

impl EnrollmentImport {
    pub fn len(&self) -> usize {
        self.citizens.len() + self.instruments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The error message for a batch over [`MAX_IMPORT_BATCH`], if it is.
    pub fn check_size(&self) -> Result<(), String> {
        if self.len() > MAX_IMPORT_BATCH {
            return Err(format!(
                "import batch of {} citizens and instruments exceeds the limit of {MAX_IMPORT_BATCH}; split it",
                self.len()
            ));
        }
        Ok(())
    }
}

/// What an import batch did. Nothing that already exists is changed: an existing citizen or
/// hpan is skipped (whatever its state), and a card whose owner is not an enabled citizen is
/// skipped too, exactly as an enrollment of it would be refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub citizens_created: u64,
    pub citizens_existing: u64,
    pub instruments_created: u64,
    pub instruments_existing: u64,
    pub instruments_without_enabled_owner: u64,
}

impl ImportOutcome {
    pub fn add(&mut self, o: ImportOutcome) {
        self.citizens_created += o.citizens_created;
        self.citizens_existing += o.citizens_existing;
        self.instruments_created += o.instruments_created;
        self.instruments_existing += o.instruments_existing;
        self.instruments_without_enabled_owner += o.instruments_without_enabled_owner;
    }
}

/// A citizen's engine totals of one period migrated from the original system (its
/// `bpd_citizen_ranking` row), for [`crate::Store::import_period_totals`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTotals {
    pub fiscal_code: FiscalCode,
    /// Cashback, capped at the period maximum.
    pub cashback: cashback_domain::Money,
    /// Sum of the counted payments' scores, before the cap.
    pub score_total: cashback_domain::Money,
    pub transactions: u32,
    /// Latest counted payment, UTC µs.
    pub last_counted_us: Option<i64>,
}

/// The error message for a totals batch over [`MAX_IMPORT_BATCH`] rows, if it is.
pub fn check_totals_batch(rows: &[ImportedTotals]) -> Result<(), String> {
    if rows.len() > MAX_IMPORT_BATCH {
        return Err(format!("import batch of {} rows exceeds the limit of {MAX_IMPORT_BATCH}; split it", rows.len()));
    }
    Ok(())
}

/// What a totals import did: rows created, and rows skipped because the (citizen, period) row
/// exists already or the citizen is unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsImportOutcome {
    pub created: u64,
    pub skipped: u64,
}
