//! The payout agent's inbound files (payment outcomes and complaint integrations). Never panics;
//! every input line is either accepted or rejected with a named column, in file order, with
//! 1-based line numbers that exist in the input.
#![no_main]

use cashback_payout::{Parsed, parse_integrations, parse_outcomes};
use libfuzzer_sys::fuzz_target;

fn check<T>(data: &[u8], parsed: &Parsed<T>) {
    let max_line = data.split(|&b| b == b'\n').count() as u64;
    let mut numbers: Vec<u64> = parsed.lines.iter().map(|(n, _)| *n).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "accepted lines out of order");
    for e in &parsed.rejected {
        assert!(!e.field.is_empty() && !e.reason.is_empty(), "unnamed rejection {e:?}");
        numbers.push(e.line);
    }
    for n in &numbers {
        assert!((1..=max_line).contains(n), "line {n} of {max_line}");
    }
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), parsed.lines.len() + parsed.rejected.len(), "a line both accepted and rejected");
}

fuzz_target!(|data: &[u8]| {
    check(data, &parse_outcomes(data));
    check(data, &parse_integrations(data));
});
