//! Pure domain of the cashback platform.
//!
//! Invariants: no I/O, no clock (every "now" / "today" is a parameter), no SQL, no serde.
//! Every value type here can only be built valid, through its `parse`/`new` constructor.

pub mod acquirer;
pub mod award;
pub mod calendar;
pub mod eligibility;
pub mod enrollment;
pub mod error;
pub mod fiscal_code;
pub mod iban;
pub mod money;
pub mod pan;
pub mod period;
pub mod ranking;
pub mod scoring;
#[cfg(test)]
mod test_rng;

pub use acquirer::{AcquirerRecord, FileName, OperationType, PosType, RecordLayout};
pub use error::ValidationError;
pub use fiscal_code::FiscalCode;
pub use iban::Iban;
pub use money::Money;
pub use pan::{Hpan, Pan, PanDigits};
pub use period::{AwardPeriod, AwardPeriodStatus};
