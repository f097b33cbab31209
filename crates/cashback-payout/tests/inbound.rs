//! Parsers of the Consap inbound files: accepted lines, rejected lines with numbers and fields.

use cashback_payout::inbound::MAX_LINE_BYTES;
use cashback_payout::{LineError, OutcomeLine, PaymentResult, parse_integrations, parse_outcomes};
use time::macros::date;

fn rejected(errors: &[LineError]) -> Vec<(u64, &'static str)> {
    errors.iter().map(|e| (e.line, e.field)).collect()
}

#[test]
fn outcomes_accepted_with_bom_crlf_blank_lines_and_odd_ids() {
    let content = "\u{FEFF}000000042;ORDINE ESEGUITO;;CRO123;05/08/2021\r\n\
                   \r\n\
                   \u{200B} 1234\u{FEFF} ;presa in carico rigettato;IBAN non valido;;\r\n\
                   \"987654321\";Ko; ; ;\n\
                   7;BONIFICO STORNATO;motivo;;01/01/2022\n";
    let parsed = parse_outcomes(content.as_bytes());
    assert_eq!(parsed.rejected, vec![]);
    assert_eq!(
        parsed.lines,
        vec![
            (
                1,
                OutcomeLine {
                    award_id: 42,
                    result: PaymentResult::Executed,
                    reason: None,
                    cro: Some("CRO123".into()),
                    execution_date: Some(date!(2021 - 08 - 05)),
                }
            ),
            (
                3,
                OutcomeLine {
                    award_id: 1234,
                    result: PaymentResult::Rejected,
                    reason: Some("IBAN non valido".into()),
                    cro: None,
                    execution_date: None,
                }
            ),
            (
                4,
                OutcomeLine {
                    award_id: 987_654_321,
                    result: PaymentResult::Failed,
                    reason: None,
                    cro: None,
                    execution_date: None
                }
            ),
            (
                5,
                OutcomeLine {
                    award_id: 7,
                    result: PaymentResult::Other("BONIFICO STORNATO".into()),
                    reason: Some("motivo".into()),
                    cro: None,
                    execution_date: Some(date!(2022 - 01 - 01)),
                }
            ),
        ]
    );
}

#[test]
fn outcomes_rejected_lines_name_line_and_field() {
    let mut content = String::new();
    content.push_str("1;KO;;;\n"); // 1 ok
    content.push_str("2;KO;;\n"); // 2: 4 columns
    content.push_str("3;KO;;;;\n"); // 3: 6 columns
    content.push_str("x3;KO;;;\n"); // 4: id not a number
    content.push_str("-4;KO;;;\n"); // 5: signed id
    content.push_str(";KO;;;\n"); // 6: empty id
    content.push_str("6;;;;\n"); // 7: empty result
    content.push_str("7;KO;;;31/02/2021\n"); // 8: no such date
    content.push_str("8;KO;;;2021-02-01\n"); // 9: wrong date format
    content.push_str("9;KO;;;1/2/2021\n"); // 10: wrong date format
    content.push_str(&format!("10;KO;{};;\n", "r".repeat(MAX_LINE_BYTES))); // 11: too long
    content.push_str("1234567890123456789;KO;;;\n"); // 12: id too large
    content.push_str("13;KO;;;01/01/2021"); // 13 ok, no final line end
    let mut bytes = content.into_bytes();
    bytes.extend_from_slice(b"\n14;K\xffO;;;\n15;KO;;;\n"); // 14: invalid UTF-8, 15 ok
    let parsed = parse_outcomes(&bytes);
    assert_eq!(
        parsed.lines.iter().map(|(n, l)| (*n, l.award_id)).collect::<Vec<_>>(),
        vec![(1, 1), (13, 13), (15, 15)]
    );
    assert_eq!(
        rejected(&parsed.rejected),
        vec![
            (2, "line"),
            (3, "line"),
            (4, "uniqueID"),
            (5, "uniqueID"),
            (6, "uniqueID"),
            (7, "result"),
            (8, "executionDate"),
            (9, "executionDate"),
            (10, "executionDate"),
            (11, "line"),
            (12, "uniqueID"),
            (14, "line"),
        ]
    );
    assert_eq!(parsed.rejected[0].reason, "expected 5 columns separated by ';', found 4");
    assert!(parsed.rejected[6].reason.contains("no such date"), "{}", parsed.rejected[6]);
    assert!(parsed.rejected[9].reason.contains("longer than 4096 bytes"), "{}", parsed.rejected[9]);
    assert!(parsed.rejected[11].reason.contains("UTF-8"), "{}", parsed.rejected[11]);
    assert_eq!(parsed.rejected[0].to_string(), "line 2: line: expected 5 columns separated by ';', found 4");
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted() {
    let prefix = "1;KO;";
    let line = format!("{prefix}{};;\r\n", "r".repeat(MAX_LINE_BYTES - prefix.len() - 2));
    let parsed = parse_outcomes(line.as_bytes());
    assert_eq!(parsed.rejected, vec![]);
    assert_eq!(parsed.lines.len(), 1);
}

#[test]
fn empty_input() {
    let parsed = parse_outcomes(b"");
    assert!(parsed.lines.is_empty() && parsed.rejected.is_empty());
    let parsed = parse_integrations(b"\xEF\xBB\xBF\r\n\n  \n");
    assert!(parsed.lines.is_empty() && parsed.rejected.is_empty());
}

#[test]
fn payment_result_texts() {
    assert_eq!(PaymentResult::parse(" Ordine Eseguito "), PaymentResult::Executed);
    assert_eq!(PaymentResult::parse("PRESA IN CARICO RIGETTATO"), PaymentResult::Rejected);
    assert_eq!(PaymentResult::parse("ko"), PaymentResult::Failed);
    assert_eq!(PaymentResult::parse("Altro"), PaymentResult::Other("Altro".into()));
    assert_eq!(PaymentResult::Executed.as_str(), "ORDINE ESEGUITO");
    assert_eq!(PaymentResult::Rejected.as_str(), "PRESA IN CARICO RIGETTATO");
    assert_eq!(PaymentResult::Failed.to_string(), "KO");
    assert_eq!(PaymentResult::Other("Altro".into()).as_str(), "Altro");
}

const GOOD_INTEGRATION: &str = "555;000000042;BNCLRA85M41F205X;IT02L1234512345123456789012;Laura;Bianchi;\
                                165000;15000;150000;;01/07/2021;31/12/2021;ORDINE ESEGUITO;CRO9;20/01/2022;77";

#[test]
fn integrations_accepted() {
    let content = format!(
        "\u{FEFF}{GOOD_INTEGRATION}\r\n \u{FEFF}556 ;;BNCLRA85M41F205X;;;;1234567;1234567;0;reclamo;01/01/2022;30/06/2022;ko;;;78\n"
    );
    let parsed = parse_integrations(content.as_bytes());
    assert_eq!(parsed.rejected, vec![]);
    assert_eq!(parsed.lines.len(), 2);
    let (n, l) = &parsed.lines[0];
    assert_eq!(*n, 1);
    assert_eq!(l.consap_id, 555);
    assert_eq!(l.related_award_id, Some(42));
    assert_eq!(l.fiscal_code, "BNCLRA85M41F205X");
    assert_eq!(l.iban.as_deref(), Some("IT02L1234512345123456789012"));
    assert_eq!((l.name.as_deref(), l.surname.as_deref()), (Some("Laura"), Some("Bianchi")));
    assert_eq!((l.amount_cents, l.cashback_cents, l.jackpot_cents), (165_000, 15_000, 150_000));
    assert_eq!(l.reason, None);
    assert_eq!((l.period_start, l.period_end), (date!(2021 - 07 - 01), date!(2021 - 12 - 31)));
    assert_eq!(l.result, PaymentResult::Executed);
    assert_eq!(l.cro.as_deref(), Some("CRO9"));
    assert_eq!(l.execution_date, Some(date!(2022 - 01 - 20)));
    assert_eq!(l.ticket_id, 77);
    let (n, l) = &parsed.lines[1];
    assert_eq!((*n, l.consap_id, l.related_award_id, l.iban.clone()), (2, 556, None, None));
    assert_eq!((l.amount_cents, l.result.clone(), l.ticket_id), (1_234_567, PaymentResult::Failed, 78));
}

#[test]
fn integrations_rejected_lines_name_line_and_field() {
    let cols: Vec<&str> = GOOD_INTEGRATION.split(';').collect();
    let with = |i: usize, v: &str| {
        let mut c = cols.clone();
        c[i] = v;
        c.join(";")
    };
    let lines = [
        GOOD_INTEGRATION.to_owned(),   // 1 ok
        with(6, "12.5"),               // 2
        with(7, "12,50"),              // 3
        with(8, "-1"),                 // 4
        with(6, ""),                   // 5
        with(10, "31/02/2021"),        // 6
        with(11, "30/06/2021"),        // 7: end before start
        with(0, "abc"),                // 8
        with(1, "4x2"),                // 9
        with(2, " "),                  // 10
        with(12, ""),                  // 11
        with(14, "32/01/2022"),        // 12
        with(15, ""),                  // 13
        cols[..15].join(";"),          // 14: 15 columns
        "1;2;3;4".to_owned(),          // 15: 4 columns
        with(6, "1234567890123456"),   // 16: too many digits
        with(12, "ESITO SCONOSCIUTO"), // 17 ok, kept as Other
    ];
    let parsed = parse_integrations(lines.join("\n").as_bytes());
    assert_eq!(parsed.lines.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 17]);
    assert_eq!(parsed.lines[1].1.result, PaymentResult::Other("ESITO SCONOSCIUTO".into()));
    assert_eq!(
        rejected(&parsed.rejected),
        vec![
            (2, "amount"),
            (3, "cashbackAmount"),
            (4, "jackpotAmount"),
            (5, "amount"),
            (6, "periodStart"),
            (7, "periodEnd"),
            (8, "idConsap"),
            (9, "idPagoPa"),
            (10, "fiscalCode"),
            (11, "result"),
            (12, "executionDate"),
            (13, "idComplaint"),
            (14, "line"),
            (15, "line"),
            (16, "amount"),
        ]
    );
    assert_eq!(parsed.rejected[0].reason, "not an amount in integer cents: \"12.5\"");
    assert_eq!(parsed.rejected[12].reason, "expected 16 columns separated by ';', found 15");
}
