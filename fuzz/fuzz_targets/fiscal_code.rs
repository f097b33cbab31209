//! Fiscal codes. Never panics; an accepted code is normalized (16 upper-case ASCII letters or
//! digits) and parses again to itself; the birth date never panics; a rejection names a field.
#![no_main]

use cashback_domain::FiscalCode;
use libfuzzer_sys::fuzz_target;
use time::{Date, Month};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match FiscalCode::parse(s) {
        Ok(cf) => {
            let norm = cf.as_str();
            assert_eq!(norm.len(), 16);
            assert!(norm.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
            assert_eq!(FiscalCode::parse(norm).as_ref(), Ok(&cf));
            assert_eq!(FiscalCode::parse(&norm.to_ascii_lowercase()).as_ref(), Ok(&cf));
            for today in [Date::MIN, Date::from_calendar_date(2021, Month::June, 30).unwrap(), Date::MAX] {
                let _ = cf.birth_date(today);
                let _ = cf.age_on(today);
                let _ = cf.is_adult_on(today);
            }
        }
        Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty()),
    }
});
