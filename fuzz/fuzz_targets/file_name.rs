//! Acquirer file names. Never panics; an accepted name is written back the same way from its
//! parts (round trip); a rejection uses field `fileName`.
#![no_main]

use cashback_domain::FileName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else { return };
    match FileName::parse(name) {
        Ok(f) => {
            let (d, t) = (f.created.date(), f.created.time());
            let mut back = format!(
                "CSTAR.{}.TRNLOG.{:04}{:02}{:02}.{:02}{:02}{:02}.{:03}",
                f.abi,
                d.year(),
                d.month() as u8,
                d.day(),
                t.hour(),
                t.minute(),
                t.second(),
                f.progressive
            );
            if let Some(c) = f.chunk {
                back.push_str(&format!(".{c:02}"));
            }
            back.push_str(if f.encrypted { ".csv.pgp" } else { ".csv" });
            assert_eq!(back, name, "accepted name does not round-trip");
        }
        Err(e) => assert_eq!(e.field, "fileName"),
    }
});
