//! SEPA credit transfer (pain.001.001.03): golden bytes, escaping, validation, XSD.

mod common;

use cashback_payout::{PayoutFormatError, SepaBatch, SepaDebtor, pain001};
use common::{golden_rows, row_a, row_b};
use std::path::{Path, PathBuf};
use std::process::Command;
use time::macros::{date, datetime};

fn batch() -> SepaBatch {
    SepaBatch {
        message_id: "CSTAR-20210715-0001".into(),
        created: datetime!(2021-07-15 06:00:00 +02:00),
        execution_date: date!(2021 - 07 - 16),
        debtor: SepaDebtor {
            name: "Consap S.p.A. – Cashback".into(),
            iban: "IT12 A030 6909 6061 0000 0000 001".into(),
            bic: Some("bcititmmxxx".into()),
        },
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn golden_file_is_byte_exact() {
    let expected = include_bytes!("golden/pain001.xml");
    let actual = pain001(&batch(), &golden_rows()).unwrap();
    assert_eq!(text(&actual), text(expected));
    assert_eq!(actual, expected);
}

#[test]
fn output_is_deterministic() {
    assert_eq!(pain001(&batch(), &golden_rows()).unwrap(), pain001(&batch(), &golden_rows()).unwrap());
}

#[test]
fn names_are_escaped_and_mapped_to_the_sepa_set() {
    let mut row = row_a();
    row.holder_name = Some("Zoë & <Ann>".into());
    row.holder_surname = Some("\"O'Neil\" Gÿrðß".into());
    let xml = text(&pain001(&batch(), &[row]).unwrap());
    assert!(xml.contains("<Nm>Zoe . .Ann. .O&apos;Neil. Gyr.ss</Nm>"), "{xml}");
    let body = xml.split_once("?>").unwrap().1;
    for raw in ["&<", "<Ann", "\"O", "'N", "ë", "ß"] {
        assert!(!body.contains(raw), "{raw} leaked into {xml}");
    }
}

#[test]
fn names_fall_back_to_fiscal_codes_and_are_cut_to_70() {
    let mut row = row_a();
    row.holder_name = Some("  ".into());
    row.holder_surname = None;
    let xml = text(&pain001(&batch(), &[row.clone()]).unwrap());
    assert!(xml.contains("<Nm>RSSMRA80A01H501U</Nm>"), "{xml}");
    row.holder_name = Some("A".repeat(50));
    row.holder_surname = Some("B".repeat(50));
    let xml = text(&pain001(&batch(), &[row]).unwrap());
    assert!(xml.contains(&format!("<Nm>{} {}</Nm>", "A".repeat(50), "B".repeat(19))), "{xml}");
}

#[test]
fn remittance_is_cut_to_140() {
    let mut row = row_a();
    row.technical_account_holder = Some("Banca".into());
    row.issuer_card_id = Some("C".repeat(200));
    let xml = text(&pain001(&batch(), &[row]).unwrap());
    let ustrd = xml.split("<Ustrd>").nth(1).unwrap().split("</Ustrd>").next().unwrap();
    assert_eq!(ustrd.len(), 140);
    assert!(ustrd.starts_with("000001234 - Cashback di Stato - dal 01/01/2021 al 30/06/2021 - RSSMRA80A01H501U - CCC"));
}

#[test]
fn amounts_are_exact_decimals() {
    let mut rows = vec![row_a(), row_b()];
    rows[0].amount_cents = 1;
    rows[1].amount_cents = 99_999_999_999;
    let xml = text(&pain001(&batch(), &rows).unwrap());
    assert!(xml.contains("<InstdAmt Ccy=\"EUR\">0.01</InstdAmt>"));
    assert!(xml.contains("<InstdAmt Ccy=\"EUR\">999999999.99</InstdAmt>"));
    assert_eq!(xml.matches("<CtrlSum>1000000000.00</CtrlSum>").count(), 2);
    assert_eq!(xml.matches("<NbOfTxs>2</NbOfTxs>").count(), 2);
}

fn row_error(err: PayoutFormatError) -> (i64, &'static str) {
    match err {
        PayoutFormatError::Row { award_id, field, .. } => (award_id, field),
        other => panic!("not a row error: {other:?}"),
    }
}

#[test]
fn rejects_unpayable_rows_naming_award_and_field() {
    for cents in [0, -1, 100_000_000_000] {
        let mut bad = row_b();
        bad.amount_cents = cents;
        let err = pain001(&batch(), &[row_a(), bad]).unwrap_err();
        assert_eq!(row_error(err.clone()), (42, "amount_cents"), "{cents}");
        assert!(err.to_string().starts_with("award 42: amount_cents: "), "{err}");
    }
    for iban in ["", "   ", "IT60-X054", "X"] {
        let mut bad = row_b();
        bad.iban = iban.into();
        assert_eq!(row_error(pain001(&batch(), &[bad]).unwrap_err()), (42, "iban"), "{iban:?}");
    }
    let mut bad = row_b();
    bad.citizen_fiscal_code = String::new();
    bad.holder_fiscal_code = None;
    assert_eq!(row_error(pain001(&batch(), &[bad]).unwrap_err()), (42, "holder_fiscal_code"));
}

#[test]
fn rejects_invalid_batches() {
    let field = |b: &SepaBatch, rows: &[cashback_payout::PayoutRow]| match pain001(b, rows).unwrap_err() {
        PayoutFormatError::Batch { field, .. } => field,
        other => panic!("not a batch error: {other:?}"),
    };
    assert_eq!(field(&batch(), &[]), "rows");
    let mut b = batch();
    b.message_id = "x".repeat(36);
    assert_eq!(field(&b, &golden_rows()), "message_id");
    let mut b = batch();
    b.debtor.name = "\t".into();
    assert_eq!(field(&b, &golden_rows()), "debtor.name");
    let mut b = batch();
    b.debtor.iban = String::new();
    assert_eq!(field(&b, &golden_rows()), "debtor.iban");
    let mut b = batch();
    b.debtor.bic = Some("NOT A BIC".into());
    assert_eq!(field(&b, &golden_rows()), "debtor.bic");
}

/// Runs `xmllint --noout --schema` on `xml`; `Ok` when valid, `Err(stderr)` when not.
fn xmllint(name: &str, xml: &[u8]) -> Result<(), String> {
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xsd/pain.001.001.03.xsd");
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.xml", std::process::id()));
    std::fs::write(&file, xml).unwrap();
    let output = match Command::new("xmllint").arg("--noout").arg("--schema").arg(&xsd).arg(&file).output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run xmllint ({e}): install Debian's libxml2-utils (apt-get install libxml2-utils)"),
    };
    std::fs::remove_file(&file).unwrap();
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
}

#[test]
fn generated_files_validate_against_the_xsd() {
    xmllint("golden", &pain001(&batch(), &golden_rows()).unwrap()).unwrap();
    let mut b = batch();
    b.debtor.bic = None;
    let xml = pain001(&b, &golden_rows()).unwrap();
    assert!(text(&xml).contains("<Othr>\n            <Id>NOTPROVIDED</Id>\n          </Othr>"));
    xmllint("no-bic", &xml).unwrap();
    let mut row = row_a();
    row.holder_name = Some("Zoë & <Ann> \"O'Neil\" 王".into());
    row.amount_cents = 99_999_999_999;
    xmllint("escaped", &pain001(&batch(), &[row]).unwrap()).unwrap();
}

#[test]
fn xsd_check_can_fail() {
    let xml =
        text(&pain001(&batch(), &golden_rows()).unwrap()).replace("<ChrgBr>SLEV</ChrgBr>", "<ChrgBr>XXXX</ChrgBr>");
    let err = xmllint("invalid", xml.as_bytes()).unwrap_err();
    assert!(err.contains("ChrgBr"), "{err}");
}
