//! Italian fiscal code (codice fiscale) of a natural person.
//!
//! Format: `LLLLLL DD L DD L DDD L` (16 characters) — surname and name letters, birth year,
//! birth month letter, birth day (+40 for women), birthplace code, check character. Any digit
//! may be replaced by an omocodia letter (`L M N P Q R S T U V` for `0`–`9`) when two people
//! would otherwise share a code.
//!
//! # Century rule
//!
//! The code stores only the last two digits of the birth year. [`FiscalCode::birth_date`]
//! takes the most recent year ending in those digits that is not after `today`'s year, and if
//! the resulting date is still after `today` (birthday later in the current year), it goes back
//! 100 years. Known limitation: a person older than 100 years is taken to be a century younger
//! (e.g. a person born in 1915 is read as born in 2015 and therefore as a minor).

use crate::ValidationError;
use std::fmt;
use time::{Date, Month};

const FIELD: &str = "fiscalCode";

/// 0-based positions that hold digits (or their omocodia letters).
const DIGIT_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];

/// Omocodia substitution letters, indexed by the digit they replace.
const OMOCODIA: &[u8; 10] = b"LMNPQRSTUV";

/// Month letters, indexed by month number - 1.
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";

/// Values of the characters in odd (1-based) positions, for `0`–`9` / `A`–`Z` alike.
const ODD_VALUES: [u32; 26] =
    [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];

/// A validated, normalized (upper-case) Italian fiscal code of a natural person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FiscalCode(String);

impl FiscalCode {
    /// Parses a fiscal code: trims surrounding whitespace, upper-cases, then checks the
    /// format, the birth month and day and the check character.
    pub fn parse(s: &str) -> Result<FiscalCode, ValidationError> {
        let s = s.trim();
        let len = s.chars().count();
        if len != 16 {
            return Err(err(format!("must be 16 characters, got {len}")));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(err("must contain only letters A-Z and digits"));
        }
        let code = s.to_ascii_uppercase();
        let b = code.as_bytes();

        for (i, &c) in b.iter().enumerate() {
            if DIGIT_POSITIONS.contains(&i) {
                if !c.is_ascii_digit() && !OMOCODIA.contains(&c) {
                    return Err(err(format!("character {} must be a digit or an omocodia letter (LMNPQRSTUV)", i + 1)));
                }
            } else if !c.is_ascii_uppercase() {
                return Err(err(format!("character {} must be a letter", i + 1)));
            }
        }

        let month = month_of(b[8])
            .ok_or_else(|| err(format!("invalid month letter {} (expected one of ABCDEHLMPRST)", b[8] as char)))?;
        let raw_day = digit(b[9]) * 10 + digit(b[10]);
        let day = match raw_day {
            1..=31 => raw_day,
            41..=71 => raw_day - 40,
            _ => {
                return Err(err(format!("invalid birth day {raw_day:02} (expected 01-31 or 41-71)")));
            }
        };
        let max_day = match month {
            Month::February => 29,
            Month::April | Month::June | Month::September | Month::November => 30,
            _ => 31,
        };
        if day > max_day {
            return Err(err(format!("day {day} does not exist in {month}")));
        }

        let expected = check_char(&b[..15]);
        if b[15] != expected {
            return Err(err(format!("check character mismatch: expected {}", expected as char)));
        }
        Ok(FiscalCode(code))
    }

    /// The normalized code (16 upper-case ASCII characters).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Birth date, resolving the century as described in the module docs.
    ///
    /// Returns `None` only if the date does not exist (29 February in a non-leap year).
    pub fn birth_date(&self, today: Date) -> Option<Date> {
        let b = self.0.as_bytes();
        let yy = i32::from(digit(b[6]) * 10 + digit(b[7]));
        let month = month_of(b[8])?;
        let raw_day = digit(b[9]) * 10 + digit(b[10]);
        let day = if raw_day > 40 { raw_day - 40 } else { raw_day };

        let this_year = today.year();
        let mut year = this_year - this_year.rem_euclid(100) + yy;
        if year > this_year {
            year -= 100;
        }
        if year == this_year && (month as u8, day) > (today.month() as u8, today.day()) {
            year -= 100;
        }
        Date::from_calendar_date(year, month, day).ok()
    }

    /// Age in full years on `today`; `None` if the birth date does not exist.
    ///
    /// Someone born on 29 February turns a year older on 1 March in non-leap years.
    pub fn age_on(&self, today: Date) -> Option<u32> {
        let birth = self.birth_date(today)?;
        let mut age = today.year() - birth.year();
        if (today.month() as u8, today.day()) < (birth.month() as u8, birth.day()) {
            age -= 1;
        }
        u32::try_from(age).ok()
    }

    /// Whether the holder is at least 18 on `today` (`false` if the birth date does not exist).
    pub fn is_adult_on(&self, today: Date) -> bool {
        self.age_on(today).is_some_and(|age| age >= 18)
    }
}

impl fmt::Display for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FiscalCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn err(reason: impl Into<std::borrow::Cow<'static, str>>) -> ValidationError {
    ValidationError::new(FIELD, reason)
}

/// Value of a digit position: a digit or its omocodia letter (already validated).
fn digit(c: u8) -> u8 {
    if c.is_ascii_digit() { c - b'0' } else { OMOCODIA.iter().position(|&l| l == c).map_or(0, |p| p as u8) }
}

fn month_of(c: u8) -> Option<Month> {
    let idx = MONTHS.iter().position(|&m| m == c)?;
    Month::try_from(idx as u8 + 1).ok()
}

/// Check character of the first 15 (upper-case alphanumeric) characters.
fn check_char(first15: &[u8]) -> u8 {
    let sum: u32 = first15
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let idx = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') };
            // 1-based odd positions are 0-based even indices.
            if i % 2 == 0 { ODD_VALUES[idx as usize] } else { idx }
        })
        .sum();
    b'A' + (sum % 26) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u8, day: u8) -> Date {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), day).unwrap()
    }

    fn reason(s: &str) -> String {
        let e = FiscalCode::parse(s).unwrap_err();
        assert_eq!(e.field, "fiscalCode");
        e.reason.into_owned()
    }

    #[test]
    fn classic_example_is_valid() {
        let cf = FiscalCode::parse("RSSMRA85T10A562S").unwrap();
        assert_eq!(cf.as_str(), "RSSMRA85T10A562S");
        assert_eq!(cf.to_string(), "RSSMRA85T10A562S");
        assert_eq!(cf.as_ref(), "RSSMRA85T10A562S");
    }

    #[test]
    fn check_char_algorithm() {
        assert_eq!(check_char(b"RSSMRA85T10A562"), b'S');
        assert_eq!(check_char(b"VRDLCU90A41H501"), b'M');
        assert_eq!(check_char(b"RSSMRA85T10A56N"), b'H');
    }

    #[test]
    fn lowercase_and_whitespace_are_normalized() {
        let cf = FiscalCode::parse("  rssmra85t10a562s\n").unwrap();
        assert_eq!(cf.as_str(), "RSSMRA85T10A562S");
        assert_eq!(cf, FiscalCode::parse("RSSMRA85T10A562S").unwrap());
    }

    #[test]
    fn omocodia_variants_are_valid() {
        // last birthplace digit 2 -> N
        let cf = FiscalCode::parse("RSSMRA85T10A56NH").unwrap();
        assert_eq!(cf.birth_date(d(2024, 1, 1)), Some(d(1985, 12, 10)));
        // birthplace 562 -> 5SN
        assert!(FiscalCode::parse("RSSMRA85T10A5SNT").is_ok());
        // omocodic variant with the original (non-recomputed) check char is rejected
        assert!(FiscalCode::parse("RSSMRA85T10A56NS").is_err());
    }

    #[test]
    fn fully_omocodic_code_decodes() {
        let s15 = "RSSMRAURTMLARSN";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.birth_date(d(2024, 1, 1)), Some(d(1985, 12, 10)));
    }

    #[test]
    fn omocodia_letter_not_allowed_outside_digit_positions_rules() {
        // 'A' is not an omocodia letter
        assert!(reason("RSSMRA8AT10A562S").contains("character 8"));
        // digit in a letter position
        assert!(reason("RSSMR185T10A562S").contains("character 6 must be a letter"));
        assert!(reason("RSSMRA85T10A562S".replace("S", "1").as_str()).contains("must be a letter"));
    }

    #[test]
    fn wrong_check_char() {
        assert_eq!(reason("RSSMRA85T10A562X"), "check character mismatch: expected S");
        assert_eq!(
            reason("RSSMRA85T10A563S"),
            format!("check character mismatch: expected {}", check_char(b"RSSMRA85T10A563") as char)
        );
    }

    #[test]
    fn bad_month() {
        let s15 = "RSSMRA85F10A562";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        assert!(reason(&code).contains("invalid month letter F"));
    }

    #[test]
    fn bad_days() {
        for day in ["32", "00", "40", "72", "99"] {
            let s15 = format!("RSSMRA85T{day}A562");
            let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
            assert!(reason(&code).contains("invalid birth day"), "{code}");
        }
    }

    #[test]
    fn female_day_is_valid() {
        let cf = FiscalCode::parse("VRDLCU90A41H501M").unwrap();
        assert_eq!(cf.birth_date(d(2024, 6, 1)), Some(d(1990, 1, 1)));
        let s15 = "BNCGNN80E55L219";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.birth_date(d(2024, 6, 1)), Some(d(1980, 5, 15)));
    }

    #[test]
    fn nonexistent_days_rejected() {
        for (m, day) in [("B", "30"), ("B", "70"), ("D", "31"), ("S", "71"), ("B", "31")] {
            let s15 = format!("RSSMRA85{m}{day}A562");
            let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
            assert!(reason(&code).contains("does not exist"), "{code}");
        }
        // 31 in a 31-day month is fine, 29 Feb is accepted at parse time
        for (m, day) in [("A", "31"), ("B", "29"), ("B", "69"), ("D", "30")] {
            let s15 = format!("RSSMRA85{m}{day}A562");
            let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
            assert!(FiscalCode::parse(&code).is_ok(), "{code}");
        }
    }

    #[test]
    fn wrong_length() {
        assert_eq!(reason("RSSMRA85T10A562"), "must be 16 characters, got 15");
        assert_eq!(reason("RSSMRA85T10A562SS"), "must be 16 characters, got 17");
        assert_eq!(reason(""), "must be 16 characters, got 0");
        assert_eq!(reason("   "), "must be 16 characters, got 0");
    }

    #[test]
    fn non_ascii_does_not_panic() {
        // 16 chars but multi-byte
        assert_eq!(reason("RSSMRÀ85T10A562S"), "must contain only letters A-Z and digits");
        assert_eq!(reason("ééééééééééééééééé".get(..32).unwrap()), "must contain only letters A-Z and digits");
        // multi-byte making byte length 16 but char count lower
        assert!(reason("€€€€€AAA").starts_with("must be 16 characters"));
        assert!(FiscalCode::parse("RSSMRA85T10A56😀").is_err());
        assert!(FiscalCode::parse("RSSMRA85 10A562S").is_err());
        // upper-casing of ß must not change the length check
        assert!(FiscalCode::parse("RSSMRA85T10A562ß").is_err());
    }

    #[test]
    fn birth_date_century_rule() {
        // 1985 code, today 2024
        let cf = FiscalCode::parse("RSSMRA85T10A562S").unwrap();
        assert_eq!(cf.birth_date(d(2024, 3, 1)), Some(d(1985, 12, 10)));

        // 05 -> 2005 when today is 2024
        let s15 = "RSSMRA05C15F205";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.birth_date(d(2024, 1, 1)), Some(d(2005, 3, 15)));
        // today 2004 -> 1905
        assert_eq!(cf.birth_date(d(2004, 1, 1)), Some(d(1905, 3, 15)));
        // today 2005 before birthday -> 1905; on birthday -> 2005
        assert_eq!(cf.birth_date(d(2005, 3, 14)), Some(d(1905, 3, 15)));
        assert_eq!(cf.birth_date(d(2005, 3, 15)), Some(d(2005, 3, 15)));
        assert_eq!(cf.birth_date(d(2005, 3, 16)), Some(d(2005, 3, 15)));
    }

    #[test]
    fn feb_29() {
        let s15 = "BNCMRA00B29F205";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.birth_date(d(2021, 1, 1)), Some(d(2000, 2, 29)));
        // 29 Feb 2001 doesn't exist
        let s15 = "BNCMRA01B29F205";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.birth_date(d(2021, 1, 1)), None);
        assert_eq!(cf.age_on(d(2021, 1, 1)), None);
        assert!(!cf.is_adult_on(d(2021, 1, 1)));
        // but 1901 is not leap either, and 2000-based year 00 is leap; 1900 is not
        let s15 = "BNCMRA00B69F205";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        // today 2000-02-28: born "later this year" -> 1900, which is not leap
        assert_eq!(cf.birth_date(d(2000, 2, 28)), None);
        assert_eq!(cf.birth_date(d(2000, 2, 29)), Some(d(2000, 2, 29)));
    }

    #[test]
    fn age_and_adulthood() {
        // born 2003-12-10
        let s15 = "RSSMRA03T10A562";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.age_on(d(2021, 12, 9)), Some(17));
        assert!(!cf.is_adult_on(d(2021, 12, 9)));
        assert_eq!(cf.age_on(d(2021, 12, 10)), Some(18));
        assert!(cf.is_adult_on(d(2021, 12, 10)));
        assert_eq!(cf.age_on(d(2022, 1, 1)), Some(18));

        let cf = FiscalCode::parse("RSSMRA85T10A562S").unwrap();
        assert_eq!(cf.age_on(d(2020, 12, 8)), Some(34));
        assert_eq!(cf.age_on(d(2020, 12, 10)), Some(35));
        assert!(cf.is_adult_on(d(2020, 12, 8)));
    }

    #[test]
    fn over_100_is_known_limitation() {
        // born 1915-01-01 but read as 2015 when today is 2021
        let s15 = "RSSMRA15A01A562";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.birth_date(d(2021, 6, 1)), Some(d(2015, 1, 1)));
        assert!(!cf.is_adult_on(d(2021, 6, 1)));
    }

    #[test]
    fn age_on_feb_29_birthday() {
        let s15 = "BNCMRA00B29F205";
        let code = format!("{s15}{}", check_char(s15.as_bytes()) as char);
        let cf = FiscalCode::parse(&code).unwrap();
        assert_eq!(cf.age_on(d(2018, 2, 28)), Some(17));
        assert_eq!(cf.age_on(d(2018, 3, 1)), Some(18));
        assert_eq!(cf.age_on(d(2020, 2, 29)), Some(20));
    }
}
