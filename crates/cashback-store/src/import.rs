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
