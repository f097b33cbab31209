//! Payment card numbers (PAN) and their salted hashes (HPAN).
//!
//! The platform never stores a PAN: it is hashed as `SHA-256(pan digits + salt)` into an
//! [`Hpan`] as soon as it is received. [`Pan`] therefore has no `Display`, and its `Debug`
//! prints only the first 6 and last 4 digits.

use crate::ValidationError;
use sha2::{Digest, Sha256};
use std::fmt;

/// A validated card number: 12–19 digits, Luhn valid.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan(String);

impl Pan {
    /// Parses a card number, reporting errors under `field`. Spaces and dashes are removed
    /// first; the rest must be 12–19 digits passing the Luhn check.
    pub fn parse(s: &str, field: &'static str) -> Result<Pan, ValidationError> {
        let digits = PanDigits::parse(s.as_bytes(), field)?;
        Ok(Pan(String::from_utf8(digits.as_bytes().to_vec()).expect("checked: ASCII digits")))
    }

    /// The full card number (digits only). Sensitive: hash it, never log or store it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// First 6 and last 4 digits, the rest replaced by `*`.
    pub fn masked(&self) -> String {
        let len = self.0.len();
        format!("{}{}{}", &self.0[..6], "*".repeat(len - 10), &self.0[len - 4..])
    }

    /// Salted hash: lower-case hex of `SHA-256(digits + salt)`.
    pub fn hash(&self, salt: &str) -> Hpan {
        Hpan(sha256_hex(&self.0, salt))
    }
}

/// A validated card number held on the stack: the same rules as [`Pan::parse`] (which goes
/// through it), without allocating — for the acquirer tool's per-row hot path. Its `Debug`
/// prints only the first 6 and last 4 digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PanDigits {
    buf: [u8; 19],
    len: u8,
}

impl PanDigits {
    /// Parses a card number from raw bytes, reporting errors under `field`: spaces and dashes
    /// are removed; the rest must be 12–19 ASCII digits passing the Luhn check. The reasons are
    /// those of [`Pan::parse`] and never echo the value.
    pub fn parse(s: &[u8], field: &'static str) -> Result<PanDigits, ValidationError> {
        let mut buf = [0u8; 19];
        let (mut len, mut other) = (0usize, false);
        for &b in s {
            if b == b' ' || b == b'-' {
                continue;
            }
            if b.is_ascii_digit() {
                if len < buf.len() {
                    buf[len] = b;
                }
            } else {
                other = true;
            }
            len += 1;
        }
        if len == 0 {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if other {
            return Err(ValidationError::new(field, "must contain only digits"));
        }
        if !(12..=19).contains(&len) {
            return Err(ValidationError::new(field, format!("must be 12 to 19 digits, got {len}")));
        }
        if !luhn_valid(&buf[..len]) {
            return Err(ValidationError::new(field, "fails the Luhn check"));
        }
        Ok(PanDigits { buf, len: len as u8 })
    }

    /// The digits. Sensitive: hash them, never log or store them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The salted hash as the 32-byte digest `SHA-256(digits + salt)` (what [`Pan::hash`]
    /// spells in hex).
    pub fn hash_bytes(&self, salt: &[u8]) -> [u8; 32] {
        salted_sha256(self.as_bytes(), salt)
    }
}

impl fmt::Debug for PanDigits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.as_bytes();
        let stars = "*".repeat(d.len() - 10);
        write!(f, "{}{stars}{}", d[..6].escape_ascii(), d[d.len() - 4..].escape_ascii())
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Salted hash of an opaque app-based instrument id (BPay, Satispay, ...): lower-case hex of
/// `SHA-256(id + salt)`, with no Luhn check. The id (field `id`) must be 1–64 printable ASCII
/// characters without whitespace.
pub fn hpan_of_instrument_id(id: &str, salt: &str) -> Result<Hpan, ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new("id", "must not be empty"));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ValidationError::new("id", "must contain only printable ASCII characters without whitespace"));
    }
    if id.len() > 64 {
        return Err(ValidationError::new("id", "must be at most 64 characters"));
    }
    Ok(Hpan(sha256_hex(id, salt)))
}

/// A hashed PAN: 64 lower-case hex characters (SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hpan(String);

impl Hpan {
    /// Parses an HPAN (field `hpan`): exactly 64 lower-case hex characters.
    pub fn parse(s: &str) -> Result<Hpan, ValidationError> {
        let len = s.chars().count();
        if len != 64 {
            return Err(ValidationError::new("hpan", format!("must be 64 characters, got {len}")));
        }
        if s.bytes().any(|b| matches!(b, b'A'..=b'F')) {
            return Err(ValidationError::new("hpan", "must be lower-case hex"));
        }
        if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ValidationError::new("hpan", "must contain only hex digits 0-9 and a-f"));
        }
        Ok(Hpan(s.to_owned()))
    }

    /// The 64 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32-byte SHA-256 digest the hex spells (compact storage and membership sets).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.0, &mut out).expect("a parsed hpan is 64 hex characters");
        out
    }

    /// The hpan of a 32-byte digest.
    pub fn from_bytes(bytes: &[u8; 32]) -> Hpan {
        Hpan(hex::encode(bytes))
    }
}

impl fmt::Display for Hpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Hpan {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn sha256_hex(value: &str, salt: &str) -> String {
    hex::encode(salted_sha256(value.as_bytes(), salt.as_bytes()))
}

fn salted_sha256(value: &[u8], salt: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(value).chain_update(salt).finalize().into()
}

/// Luhn (mod 10) check over ASCII digits.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn hpan_bytes_round_trip() {
        let h = Hpan::parse(ABC_SHA256).unwrap();
        let b = h.to_bytes();
        assert_eq!(b[0], 0xba);
        assert_eq!(b[31], 0xad);
        assert_eq!(Hpan::from_bytes(&b), h);
    }

    fn reason(s: &str) -> String {
        let e = Pan::parse(s, "pan").unwrap_err();
        assert_eq!(e.field, "pan");
        e.reason.into_owned()
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(sha256_hex("abc", ""), ABC_SHA256);
        assert_eq!(sha256_hex("a", "bc"), ABC_SHA256);
        assert_eq!(hpan_of_instrument_id("ab", "c").unwrap().as_str(), ABC_SHA256);
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(luhn_valid(b"5555555555554444"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"378282246310006"));
        assert!(luhn_valid(b"4222222222222"));
    }

    #[test]
    fn parse_valid_pans() {
        assert_eq!(Pan::parse("4111111111111111", "pan").unwrap().as_str(), "4111111111111111");
        assert_eq!(Pan::parse("4111 1111 1111 1111", "pan").unwrap().as_str(), "4111111111111111");
        assert_eq!(Pan::parse("4111-1111-1111-1111", "pan").unwrap().as_str(), "4111111111111111");
        // length bounds
        assert!(Pan::parse("123456789015", "pan").is_ok());
        assert!(Pan::parse("1234567890123456785", "pan").is_ok());
    }

    #[test]
    fn parse_invalid_pans() {
        assert_eq!(reason("4111111111111112"), "fails the Luhn check");
        assert_eq!(reason("12345678903"), "must be 12 to 19 digits, got 11");
        assert_eq!(reason("12345678901234567894"), "must be 12 to 19 digits, got 20");
        assert_eq!(reason("4111x11111111111"), "must contain only digits");
        assert_eq!(reason("4111.1111.1111.1111"), "must contain only digits");
        assert_eq!(reason("４１１１１１１１１１１１１１１１"), "must contain only digits");
        assert_eq!(reason(""), "must not be empty");
        assert_eq!(reason(" - "), "must not be empty");
        let e = Pan::parse("1", "panCode").unwrap_err();
        assert_eq!(e.field, "panCode");
    }

    #[test]
    fn pan_digits_follow_the_pan_rules() {
        for s in [
            "4111111111111111",
            "4111 1111-1111 1111",
            "123456789015",
            "1234567890123456785",
            "4111111111111112",
            "12345678903",
            "12345678901234567894",
            "123456789012345678901234567890",
            "4111x11111111111",
            "41111111111111111111111x",
            "４１１１",
            "",
            " - ",
        ] {
            let d = PanDigits::parse(s.as_bytes(), "pan");
            match Pan::parse(s, "pan") {
                Ok(p) => {
                    let d = d.unwrap();
                    assert_eq!(d.as_bytes(), p.as_str().as_bytes());
                    assert_eq!(Hpan::from_bytes(&d.hash_bytes(b"salt")), p.hash("salt"));
                    assert_eq!(format!("{d:?}"), p.masked());
                }
                Err(e) => assert_eq!(d.unwrap_err(), e, "{s:?}"),
            }
        }
        assert_eq!(reason("123456789012345678901234567890"), "must be 12 to 19 digits, got 30");
        assert_eq!(reason("41111111111111111111111x"), "must contain only digits");
        assert!(PanDigits::parse(b"4111\xff11111111111", "pan").is_err());
    }

    #[test]
    fn masked_and_debug_never_show_full_pan() {
        let pan = Pan::parse("4111111111111111", "pan").unwrap();
        assert_eq!(pan.masked(), "411111******1111");
        let dbg = format!("{pan:?}");
        assert_eq!(dbg, "411111******1111");
        assert!(!dbg.contains("4111111111111111"));
        let dbg_alt = format!("{pan:#?}");
        assert!(!dbg_alt.contains("4111111111111111"));
        let short = Pan::parse("123456789015", "pan").unwrap();
        assert_eq!(short.masked(), "123456**9015");
        let long = Pan::parse("1234567890123456785", "pan").unwrap();
        assert_eq!(format!("{long:?}"), "123456*********6785");
        // inside a container too
        let v = vec![pan];
        assert!(!format!("{v:?}").contains("4111111111111111"));
    }

    #[test]
    fn hash_pan() {
        let pan = Pan::parse("4111 1111 1111 1111", "pan").unwrap();
        assert_eq!(pan.hash("").as_str(), "9bbef19476623ca56c17da75fd57734dbf82530686043a6e491c6d71befe8f6e");
        assert_eq!(pan.hash("mysalt").as_str(), "e529098a6a46ba63f2f9db0c98ad44fdb493267c49bc69778863bef95a609f96");
        assert_ne!(pan.hash("a"), pan.hash("b"));
        // a hash is always a valid Hpan
        assert_eq!(Hpan::parse(pan.hash("x").as_str()).unwrap(), pan.hash("x"));
    }

    #[test]
    fn instrument_id_hash() {
        assert_eq!(
            hpan_of_instrument_id("satispay-123", "SALT").unwrap().as_str(),
            "3f7dae1c45f9ee7035f955af27acf829f1f9851a2026d061d0267f8a529479b8"
        );
        assert!(hpan_of_instrument_id(&"x".repeat(64), "s").is_ok());
        let e = hpan_of_instrument_id(&"x".repeat(65), "s").unwrap_err();
        assert_eq!((e.field.as_ref(), e.reason.as_ref()), ("id", "must be at most 64 characters"));
        assert_eq!(hpan_of_instrument_id("", "s").unwrap_err().reason, "must not be empty");
        for bad in ["a b", "a\tb", "ab\n", "caffè", "\u{7f}", "id\0"] {
            let e = hpan_of_instrument_id(bad, "s").unwrap_err();
            assert_eq!(e.field, "id");
            assert_eq!(e.reason, "must contain only printable ASCII characters without whitespace");
        }
    }

    #[test]
    fn hpan_parse() {
        let h = Hpan::parse(ABC_SHA256).unwrap();
        assert_eq!(h.as_str(), ABC_SHA256);
        assert_eq!(h.to_string(), ABC_SHA256);
        assert_eq!(h.as_ref(), ABC_SHA256);

        let e = Hpan::parse(&ABC_SHA256.to_uppercase()).unwrap_err();
        assert_eq!((e.field.as_ref(), e.reason.as_ref()), ("hpan", "must be lower-case hex"));
        assert_eq!(Hpan::parse(&ABC_SHA256[..63]).unwrap_err().reason, "must be 64 characters, got 63");
        assert_eq!(Hpan::parse(&format!("{ABC_SHA256}0")).unwrap_err().reason, "must be 64 characters, got 65");
        assert_eq!(Hpan::parse("").unwrap_err().reason, "must be 64 characters, got 0");
        let g = format!("g{}", &ABC_SHA256[1..]);
        assert_eq!(Hpan::parse(&g).unwrap_err().reason, "must contain only hex digits 0-9 and a-f");
        // 64 chars, multi-byte: no panic
        let multi = format!("é{}", &ABC_SHA256[1..]);
        assert!(Hpan::parse(&multi).is_err());
        let spaced = format!(" {}", &ABC_SHA256[1..]);
        assert!(Hpan::parse(&spaced).is_err());
    }

    #[test]
    fn hpan_ordering_and_equality() {
        let a = Hpan::parse(&"0".repeat(64)).unwrap();
        let b = Hpan::parse(&"f".repeat(64)).unwrap();
        assert!(a < b);
        assert_ne!(a, b);
        assert_eq!(a.clone(), a);
    }
}
