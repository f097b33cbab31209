//! Money: an amount in euro cents, held as `i64`.
//!
//! All arithmetic is integer arithmetic on cents, checked for overflow; floats are never used
//! to compute amounts. [`Money::to_euros_f64`] exists only to write JSON numbers at the API
//! edge.

/// An amount in euro cents (may be negative, e.g. for refunds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Money(i64);

impl Money {
    /// Zero euros.
    pub const ZERO: Money = Money(0);

    /// An amount of `cents` euro cents.
    pub const fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    /// The amount in euro cents.
    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Whole euros; `None` on overflow.
    pub const fn from_euros(euros: i64) -> Option<Money> {
        match euros.checked_mul(100) {
            Some(cents) => Some(Money(cents)),
            None => None,
        }
    }

    /// `self + other`; `None` on overflow.
    pub const fn checked_add(self, other: Money) -> Option<Money> {
        match self.0.checked_add(other.0) {
            Some(cents) => Some(Money(cents)),
            None => None,
        }
    }

    /// `self - other`; `None` on overflow.
    pub const fn checked_sub(self, other: Money) -> Option<Money> {
        match self.0.checked_sub(other.0) {
            Some(cents) => Some(Money(cents)),
            None => None,
        }
    }

    /// The smaller of the two amounts.
    pub const fn min(self, other: Money) -> Money {
        if self.0 <= other.0 { self } else { other }
    }

    /// Whether the amount is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Exact decimal form with two decimals and a `.` separator: `"12.34"`, `"-0.50"`,
    /// `"0.00"`.
    pub fn to_euro_string(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    /// The amount in euros as a float, for JSON output only: never compute with it.
    pub fn to_euros_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors() {
        assert_eq!(Money::from_cents(1234).cents(), 1234);
        assert_eq!(Money::from_euros(15), Some(Money::from_cents(1500)));
        assert_eq!(Money::from_euros(-2), Some(Money::from_cents(-200)));
        assert_eq!(Money::from_euros(i64::MAX), None);
        assert_eq!(Money::from_euros(i64::MIN / 100 - 1), None);
        assert_eq!(Money::from_euros(i64::MAX / 100).map(Money::cents), Some(i64::MAX / 100 * 100));
        assert_eq!(Money::default(), Money::ZERO);
        assert_eq!(Money::ZERO.cents(), 0);
    }

    #[test]
    fn checked_arithmetic() {
        let a = Money::from_cents(1050);
        let b = Money::from_cents(250);
        assert_eq!(a.checked_add(b), Some(Money::from_cents(1300)));
        assert_eq!(a.checked_sub(b), Some(Money::from_cents(800)));
        assert_eq!(b.checked_sub(a), Some(Money::from_cents(-800)));
        assert_eq!(Money::from_cents(i64::MAX).checked_add(Money::from_cents(1)), None);
        assert_eq!(Money::from_cents(i64::MIN).checked_sub(Money::from_cents(1)), None);
        assert_eq!(Money::from_cents(i64::MAX).checked_add(Money::ZERO), Some(Money::from_cents(i64::MAX)));
    }

    #[test]
    fn min_and_ordering() {
        let a = Money::from_cents(1500);
        let b = Money::from_cents(999);
        assert_eq!(a.min(b), b);
        assert_eq!(b.min(a), b);
        assert_eq!(a.min(a), a);
        assert_eq!(Money::from_cents(-1).min(Money::ZERO), Money::from_cents(-1));
        assert!(b < a);
        assert!(Money::from_cents(-1).is_negative());
        assert!(!Money::ZERO.is_negative());
    }

    #[test]
    fn euro_string() {
        assert_eq!(Money::from_cents(1234).to_euro_string(), "12.34");
        assert_eq!(Money::from_cents(-50).to_euro_string(), "-0.50");
        assert_eq!(Money::ZERO.to_euro_string(), "0.00");
        assert_eq!(Money::from_cents(5).to_euro_string(), "0.05");
        assert_eq!(Money::from_cents(100).to_euro_string(), "1.00");
        assert_eq!(Money::from_cents(-150_000).to_euro_string(), "-1500.00");
        assert_eq!(Money::from_cents(i64::MAX).to_euro_string(), "92233720368547758.07");
        assert_eq!(Money::from_cents(i64::MIN).to_euro_string(), "-92233720368547758.08");
    }

    #[test]
    fn euros_f64() {
        assert_eq!(Money::from_cents(1234).to_euros_f64(), 12.34);
        assert_eq!(Money::from_cents(-50).to_euros_f64(), -0.5);
        assert_eq!(Money::ZERO.to_euros_f64(), 0.0);
    }
}
