//! IBANs. Never panics; an accepted IBAN is normalized and parses again to itself; its mask
//! hides the account; a rejection names a field.
#![no_main]

use cashback_domain::Iban;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match Iban::parse(s) {
        Ok(iban) => {
            let norm = iban.as_str();
            assert!(norm.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            assert_eq!(Iban::parse(norm).as_ref(), Ok(&iban));
            assert_eq!(&norm[..2], iban.country());
            let masked = iban.masked();
            assert_ne!(masked, norm, "mask shows the whole IBAN");
            assert!(!format!("{iban:?}").contains(norm), "Debug shows the whole IBAN");
        }
        Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty()),
    }
});
