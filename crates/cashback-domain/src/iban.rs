//! IBAN (ISO 13616) of a SEPA account, where the cashback is paid.
//!
//! The full IBAN is personal data: [`Iban`] has no `Display`, and its `Debug` prints only the
//! masked form, so it never lands in logs by accident. Use [`Iban::as_str`] explicitly where the
//! full value is needed (storage, payment files).

use crate::ValidationError;
use std::borrow::Cow;
use std::fmt;

const FIELD: &str = "payoffInstr";

/// IBAN length per country of the SEPA schemes' geographical scope (as of the 2020-21
/// programme: EU/EEA plus AD, CH, GB, GI, MC, SM, VA). Overseas territories and crown
/// dependencies that use another country's IBAN (e.g. French DOM, Åland, Jersey) are covered
/// by that country's code.
const SEPA_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("VA", 22),
];

/// A validated, normalized IBAN (no spaces, upper-case) of a SEPA country.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Iban(String);

impl Iban {
    /// Parses an IBAN: removes whitespace, upper-cases, then checks characters, length,
    /// country (SEPA only, with its exact length), check digits (mod 97) and, for IT/SM, the
    /// BBAN layout (CIN, ABI, CAB, account number).
    pub fn parse(s: &str) -> Result<Iban, ValidationError> {
        let iban: String = s.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
        if iban.is_empty() {
            return Err(err("must not be empty"));
        }
        if !iban.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            return Err(err("must contain only letters A-Z and digits"));
        }
        let len = iban.len();
        if !(15..=34).contains(&len) {
            return Err(err(format!("must be 15 to 34 characters, got {len}")));
        }
        let b = iban.as_bytes();
        if !b[0].is_ascii_uppercase() || !b[1].is_ascii_uppercase() {
            return Err(err("must start with a 2-letter country code"));
        }
        if !b[2].is_ascii_digit() || !b[3].is_ascii_digit() {
            return Err(err("characters 3-4 must be the 2 check digits"));
        }
        let country = &iban[..2];
        let expected_len = SEPA_LENGTHS
            .iter()
            .find(|(c, _)| *c == country)
            .map(|&(_, l)| l)
            .ok_or_else(|| err(format!("country {country} is not a SEPA country")))?;
        if len != expected_len {
            return Err(err(format!("must be {expected_len} characters for country {country}, got {len}")));
        }
        let check_digits = &iban[2..4];
        if check_digits == "00" || check_digits == "01" || check_digits == "99" {
            return Err(err(format!("invalid check digits {check_digits}")));
        }
        if country == "IT" || country == "SM" {
            check_italian_bban(&b[4..])?;
        }
        if mod97(b) != 1 {
            return Err(err("check digits mismatch (mod 97)"));
        }
        Ok(Iban(iban))
    }

    /// The full normalized IBAN. Personal data: do not log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// ISO 3166 country code (first two letters).
    pub fn country(&self) -> &str {
        &self.0[..2]
    }

    /// First 4 and last 4 characters, the rest replaced by `*`.
    pub fn masked(&self) -> String {
        let len = self.0.len();
        format!("{}{}{}", &self.0[..4], "*".repeat(len - 8), &self.0[len - 4..])
    }
}

impl fmt::Debug for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iban({})", self.masked())
    }
}

fn err(reason: impl Into<Cow<'static, str>>) -> ValidationError {
    ValidationError::new(FIELD, reason)
}

/// Italian / San Marino BBAN: CIN (1 letter), ABI (5 digits), CAB (5 digits), account (12
/// alphanumeric). The caller has already checked the length and the alphabet.
fn check_italian_bban(bban: &[u8]) -> Result<(), ValidationError> {
    if !bban[0].is_ascii_uppercase() {
        return Err(err("CIN (character 5) must be a letter"));
    }
    if !bban[1..6].iter().all(u8::is_ascii_digit) {
        return Err(err("ABI (characters 6-10) must be 5 digits"));
    }
    if !bban[6..11].iter().all(u8::is_ascii_digit) {
        return Err(err("CAB (characters 11-15) must be 5 digits"));
    }
    if bban[11..].len() != 12 || !bban[11..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(err("account number (characters 16-27) must be 12 letters or digits"));
    }
    Ok(())
}

/// ISO 7064 mod 97-10 of the rearranged IBAN (first 4 characters moved to the end, letters
/// as 10..35), computed incrementally so no big integer is needed.
fn mod97(iban: &[u8]) -> u32 {
    iban[4..].iter().chain(&iban[..4]).fold(0u32, |acc, &c| {
        if c.is_ascii_digit() {
            (acc * 10 + u32::from(c - b'0')) % 97
        } else {
            (acc * 100 + u32::from(c - b'A') + 10) % 97
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> String {
        let e = Iban::parse(s).unwrap_err();
        assert_eq!(e.field, "payoffInstr");
        e.reason.into_owned()
    }

    #[test]
    fn valid_italian() {
        let iban = Iban::parse("IT60X0542811101000000123456").unwrap();
        assert_eq!(iban.as_str(), "IT60X0542811101000000123456");
        assert_eq!(iban.country(), "IT");
    }

    #[test]
    fn valid_other_sepa() {
        for s in [
            "DE89370400440532013000",
            "SM86U0322509800000000270100",
            "VA59001123000012345678",
            "GB29NWBK60161331926819",
            "NO9386011117947",
            "MT84MALT011000012345MTLCAST001S",
            "FR1420041010050500013M02606",
        ] {
            let iban = Iban::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(iban.as_str(), s);
        }
        assert_eq!(Iban::parse("DE89370400440532013000").unwrap().country(), "DE");
    }

    #[test]
    fn spaces_and_lowercase_accepted() {
        let iban = Iban::parse("  it60 x054 2811 1010 0000 0123 456 ").unwrap();
        assert_eq!(iban.as_str(), "IT60X0542811101000000123456");
        let iban = Iban::parse("de89 3704 0044 0532 0130 00").unwrap();
        assert_eq!(iban.as_str(), "DE89370400440532013000");
    }

    #[test]
    fn bad_check_digits() {
        assert_eq!(reason("IT61X0542811101000000123456"), "check digits mismatch (mod 97)");
        assert_eq!(reason("DE88370400440532013000"), "check digits mismatch (mod 97)");
        // one transposed digit in the account
        assert_eq!(reason("IT60X0542811101000000123465"), "check digits mismatch (mod 97)");
        assert_eq!(reason("IT00X0542811101000000123456"), "invalid check digits 00");
        assert_eq!(reason("IT99X0542811101000000123456"), "invalid check digits 99");
        assert_eq!(reason("ITXXX0542811101000000123456"), "characters 3-4 must be the 2 check digits");
    }

    #[test]
    fn bad_length_for_country() {
        // valid mod 97, but 28 characters for IT
        assert_eq!(reason("IT24X05428111010000001234567"), "must be 27 characters for country IT, got 28");
        assert_eq!(reason("IT60X054281110100000012345"), "must be 27 characters for country IT, got 26");
        assert_eq!(reason("DE8937040044053201300"), "must be 22 characters for country DE, got 21");
        assert_eq!(reason("IT60X0542811"), "must be 15 to 34 characters, got 12");
        assert_eq!(reason(&format!("IT60{}", "1".repeat(31))), "must be 15 to 34 characters, got 35");
        assert_eq!(reason(""), "must not be empty");
        assert_eq!(reason("   "), "must not be empty");
    }

    #[test]
    fn bad_italian_bban() {
        // all three have valid mod-97 check digits
        assert_eq!(reason("IT2910542811101000000123456"), "CIN (character 5) must be a letter");
        assert_eq!(reason("IT88XA542811101000000123456"), "ABI (characters 6-10) must be 5 digits");
        assert_eq!(reason("IT07X0542811B01000000123456"), "CAB (characters 11-15) must be 5 digits");
        assert_eq!(reason("SM8810542811101000000123456"), "CIN (character 5) must be a letter");
        // alphanumeric account is fine
        assert!(Iban::parse("IT11X054281110100000012345A").is_ok());
    }

    #[test]
    fn unknown_country() {
        assert_eq!(reason("US42123456789012345678"), "country US is not a SEPA country");
        assert_eq!(reason("XX4212345678901234"), "country XX is not a SEPA country");
        assert_eq!(reason("1260X0542811101000000123456"), "must start with a 2-letter country code");
    }

    #[test]
    fn non_ascii_and_symbols_rejected() {
        assert_eq!(reason("IT60X054281110100000012345é"), "must contain only letters A-Z and digits");
        assert_eq!(reason("IT60-X054-2811-1010-0000-0123-456"), "must contain only letters A-Z and digits");
        assert_eq!(reason("ÍT60X0542811101000000123456"), "must contain only letters A-Z and digits");
        assert!(Iban::parse("😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀").is_err());
    }

    #[test]
    fn masked_and_debug_hide_the_iban() {
        let iban = Iban::parse("IT60X0542811101000000123456").unwrap();
        assert_eq!(iban.masked(), "IT60*******************3456");
        assert_eq!(iban.masked().len(), 27);
        let dbg = format!("{iban:?}");
        assert_eq!(dbg, "Iban(IT60*******************3456)");
        assert!(!dbg.contains("0542811101"));
        let no = Iban::parse("NO9386011117947").unwrap();
        assert_eq!(no.masked(), "NO93*******7947");
    }

    #[test]
    fn mod97_known_values() {
        assert_eq!(mod97(b"IT60X0542811101000000123456"), 1);
        // with check digits 00 the remainder r gives the right check digits as 98 - r
        assert_eq!(mod97(b"IT00X0542811101000000123456"), 98 - 60);
        assert_eq!(mod97(b"DE00370400440532013000"), 98 - 89);
    }
}
