//! The Consap payment-order CSV, its name, sidecar and chunks.

mod common;

use cashback_payout::{
    ControlTotals, chunk_plan, consap_file, consap_file_name, consap_row, payment_reason, sha256_sidecar,
};
use common::{golden_rows, row_a, row_b, row_c};
use time::macros::datetime;

fn line(row: &cashback_payout::PayoutRow) -> String {
    let mut out = Vec::new();
    consap_row(row, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn golden_file_is_byte_exact() {
    let expected = include_bytes!("golden/consap.csv");
    let actual = consap_file(&golden_rows());
    assert_eq!(String::from_utf8_lossy(&actual), String::from_utf8_lossy(expected));
    assert_eq!(actual, expected);
}

#[test]
fn every_row_is_one_line_of_17_columns() {
    let mut row = row_c();
    row.holder_name = Some("a;b\r\nc\td".into());
    row.technical_account_holder = Some("x;y".into());
    row.issuer_card_id = Some("card;\n1".into());
    let l = line(&row);
    assert_eq!(l.matches('\n').count(), 1);
    assert!(l.ends_with('\n') && !l.contains('\r'));
    let cols: Vec<&str> = l.trim_end_matches('\n').split(';').collect();
    assert_eq!(cols.len(), 17);
    assert_eq!(cols[3], "a b  c d");
    assert_eq!(cols[14], "x y");
    assert!(cols[6].ends_with(" - NRELCU90C03L219Y - card  1"), "{}", cols[6]);
}

#[test]
fn reason_suffixes() {
    let base = "000001234 - Cashback di Stato - dal 01/01/2021 al 30/06/2021";
    // The citizen holds the account: no suffix, whether the holder CF is absent or equal.
    let mut row = row_a();
    assert_eq!(payment_reason(&row), base);
    row.holder_fiscal_code = Some("rssmra80a01h501u".into());
    assert_eq!(payment_reason(&row), base);
    // Another holder: the citizen's CF is appended.
    row.holder_fiscal_code = Some("VRDGPP60B02F205Z".into());
    assert_eq!(payment_reason(&row), format!("{base} - RSSMRA80A01H501U"));
    // A card id alone (no technical account) adds nothing.
    row.issuer_card_id = Some("CARD-9".into());
    assert_eq!(payment_reason(&row), format!("{base} - RSSMRA80A01H501U"));
    // Technical account: the citizen's CF even when they are the holder, then the card id.
    row.holder_fiscal_code = None;
    row.technical_account_holder = Some("Banca".into());
    assert_eq!(payment_reason(&row), format!("{base} - RSSMRA80A01H501U - CARD-9"));
    row.issuer_card_id = None;
    assert_eq!(payment_reason(&row), format!("{base} - RSSMRA80A01H501U"));
    // A blank technical holder is no technical account.
    row.technical_account_holder = Some("  ".into());
    row.issuer_card_id = Some("CARD-9".into());
    assert_eq!(payment_reason(&row), base);
    assert_eq!(
        payment_reason(&row_b()),
        "000000042 - Cashback di Stato - dal 01/07/2021 al 31/12/2021 - BNCLRA85M41F205X"
    );
}

#[test]
fn amounts_have_at_least_six_digits_and_widen() {
    let mut row = row_a();
    row.amount_cents = 7;
    row.cashback_cents = 999_999;
    row.jackpot_cents = 0;
    let cols: Vec<String> = line(&row).trim_end().split(';').map(str::to_owned).collect();
    assert_eq!((cols[5].as_str(), cols[11].as_str(), cols[12].as_str()), ("000007", "999999", "000000"));

    row.amount_cents = 1_234_567; // €12 345.67: 7 digits, not truncated
    row.cashback_cents = 1_000_000;
    row.jackpot_cents = 150_000_000_000;
    row.award_period_id = 123;
    row.award_id = 1_234_567_890;
    let cols: Vec<String> = line(&row).trim_end().split(';').map(str::to_owned).collect();
    assert_eq!(cols[0], "1234567890");
    assert_eq!(cols[5], "1234567");
    assert_eq!(cols[8], "123");
    assert_eq!(cols[11], "1000000");
    assert_eq!(cols[12], "150000000000");
}

#[test]
fn missing_values_are_empty_never_null() {
    let mut row = row_a();
    row.holder_name = None;
    row.holder_surname = None;
    row.check_instr_status = None;
    let l = line(&row);
    assert!(!l.to_ascii_lowercase().contains("null"), "{l}");
    assert_eq!(
        l,
        "000001234;RSSMRA80A01H501U;IT60X0542811101000000123456;;;015000;\
         000001234 - Cashback di Stato - dal 01/01/2021 al 30/06/2021;01;01;01/01/2021;30/06/2021;015000;000000;;;;\n"
    );
}

#[test]
fn empty_file_is_empty() {
    assert!(consap_file(&[]).is_empty());
}

#[test]
fn file_name() {
    assert_eq!(
        consap_file_name(datetime!(2021-07-05 06:03:09), 1, 3, 1000),
        "CSTAR.CONSAP.BANKT.05072021.060309.01_03.1000.csv"
    );
    assert_eq!(
        consap_file_name(datetime!(2021-12-31 23:59:59), 12, 120, 7),
        "CSTAR.CONSAP.BANKT.31122021.235959.12_120.7.csv"
    );
}

#[test]
fn sidecar_is_sha256sum_format() {
    let (name, content) = sha256_sidecar("CSTAR.CONSAP.BANKT.05072021.060309.01_01.3.csv", b"abc");
    assert_eq!(name, "CSTAR.CONSAP.BANKT.05072021.060309.01_01.3.csv.sha256sum");
    assert_eq!(
        String::from_utf8(content).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  \
         CSTAR.CONSAP.BANKT.05072021.060309.01_01.3.csv\n"
    );
    let (_, empty) = sha256_sidecar("e.csv", b"");
    assert_eq!(empty, b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  e.csv\n");
}

#[test]
fn chunk_plan_edges() {
    assert!(chunk_plan(0, 1).is_empty());
    assert!(chunk_plan(0, 1000).is_empty());
    assert_eq!(chunk_plan(1, 1), vec![0..1]);
    assert_eq!(chunk_plan(3, 1), vec![0..1, 1..2, 2..3]);
    assert_eq!(chunk_plan(5, 1000), vec![0..5]);
    assert_eq!(chunk_plan(6, 3), vec![0..3, 3..6]);
    assert_eq!(chunk_plan(7, 3), vec![0..3, 3..6, 6..7]);
    assert_eq!(chunk_plan(usize::MAX, usize::MAX), vec![0..usize::MAX]);
    let plan = chunk_plan(2_500_001, 1_000_000);
    assert_eq!(plan, vec![0..1_000_000, 1_000_000..2_000_000, 2_000_000..2_500_001]);
}

#[test]
#[should_panic(expected = "max_rows must be at least 1")]
fn chunk_plan_rejects_zero_max() {
    chunk_plan(10, 0);
}

#[test]
fn control_totals() {
    assert_eq!(ControlTotals::of(&[]), ControlTotals::default());
    assert_eq!(
        ControlTotals::of(&golden_rows()),
        ControlTotals { rows: 3, amount_cents: 180_005, cashback_cents: 30_005, jackpot_cents: 150_000 }
    );
}
