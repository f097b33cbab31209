//! Card numbers. Never panics; an accepted PAN is digits only and parses again to itself; its
//! mask and Debug never show the middle digits; its hash is a valid HPAN; a rejection uses the
//! field it was given.
#![no_main]

use cashback_domain::{Hpan, Pan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match Pan::parse(s, "pan") {
        Ok(pan) => {
            let digits = pan.as_str();
            assert!((12..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(Pan::parse(digits, "pan").as_ref(), Ok(&pan));
            let masked = pan.masked();
            assert_eq!(masked.len(), digits.len());
            assert_eq!(&masked[6..digits.len() - 4], "*".repeat(digits.len() - 10));
            assert_eq!(format!("{pan:?}"), masked);
            let h = pan.hash("salt");
            assert_eq!(Hpan::parse(h.as_str()).as_ref(), Ok(&h));
        }
        Err(e) => assert_eq!(e.field, "pan"),
    }
    // The HPAN parser on the same input.
    if let Ok(h) = Hpan::parse(s) {
        assert_eq!(Hpan::from_bytes(&h.to_bytes()), h);
    }
});
