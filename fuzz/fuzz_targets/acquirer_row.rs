//! One acquirer file row: `;`-separated fields in either layout. Never panics; an accepted row
//! has a sane amount and dedup key; a rejection names a field.
#![no_main]

use cashback_domain::{AcquirerRecord, RecordLayout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fields: Vec<&[u8]> = data.split(|&b| b == b';').collect();
    // Fuzz both layouts on every input: the field count decides only which one can succeed.
    for layout in [RecordLayout::E1, RecordLayout::E2] {
        match AcquirerRecord::parse(&fields, layout) {
            Ok(rec) => {
                assert_eq!(fields.len(), layout.columns());
                assert!(rec.amount.cents() >= 0);
                assert!(rec.signed_amount().cents().abs() == rec.amount.cents());
                let _ = rec.dedup_key();
                // The same row parsed again gives the same record (no hidden state).
                assert_eq!(AcquirerRecord::parse(&fields, layout).ok(), Some(rec));
            }
            Err(e) => assert!(!e.field.is_empty() && !e.reason.is_empty(), "unnamed error {e:?}"),
        }
    }
});
