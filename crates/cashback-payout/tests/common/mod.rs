//! The rows of the golden files (`tests/golden/`), shared by the test files.

use cashback_payout::PayoutRow;
use time::macros::date;

/// A plain row: the citizen is the holder, no technical account.
pub fn row_a() -> PayoutRow {
    PayoutRow {
        award_id: 1234,
        citizen_fiscal_code: "RSSMRA80A01H501U".into(),
        holder_fiscal_code: None,
        iban: "IT60X0542811101000000123456".into(),
        holder_name: Some("Mario".into()),
        holder_surname: Some("D'Angelo".into()),
        amount_cents: 15_000,
        cashback_cents: 15_000,
        jackpot_cents: 0,
        typology: "01".into(),
        award_period_id: 1,
        period_start: date!(2021 - 01 - 01),
        period_end: date!(2021 - 06 - 30),
        check_instr_status: Some("OK".into()),
        technical_account_holder: None,
        issuer_card_id: None,
        ticket_id: None,
        related_id: None,
    }
}

/// Another holder, no names, Super Cashback, a card id without technical account, complaint ids.
pub fn row_b() -> PayoutRow {
    PayoutRow {
        award_id: 42,
        citizen_fiscal_code: "BNCLRA85M41F205X".into(),
        holder_fiscal_code: Some("VRDGPP60B02F205Z".into()),
        iban: "IT02L1234512345123456789012".into(),
        holder_name: None,
        holder_surname: None,
        amount_cents: 165_000,
        cashback_cents: 15_000,
        jackpot_cents: 150_000,
        typology: "03".into(),
        award_period_id: 2,
        period_start: date!(2021 - 07 - 01),
        period_end: date!(2021 - 12 - 31),
        check_instr_status: Some("KO".into()),
        technical_account_holder: None,
        issuer_card_id: Some("IGNORED-NOT-TECHNICAL".into()),
        ticket_id: Some(77),
        related_id: Some(1234),
    }
}

/// Technical account with a card id, same holder CF as the citizen, accented name and a surname
/// with `;` and a line feed.
pub fn row_c() -> PayoutRow {
    PayoutRow {
        award_id: 987_654_321,
        citizen_fiscal_code: "NRELCU90C03L219Y".into(),
        holder_fiscal_code: Some("NRELCU90C03L219Y".into()),
        iban: "IT40S0542811101000000654321".into(),
        holder_name: Some("Niccolò".into()),
        holder_surname: Some("De Luca;\nBianchi".into()),
        amount_cents: 5,
        cashback_cents: 5,
        jackpot_cents: 0,
        typology: "01".into(),
        award_period_id: 3,
        period_start: date!(2022 - 01 - 01),
        period_end: date!(2022 - 06 - 30),
        check_instr_status: None,
        technical_account_holder: Some("Banca Tecnica S.p.A.".into()),
        issuer_card_id: Some("CARD-001".into()),
        ticket_id: None,
        related_id: Some(42),
    }
}

pub fn golden_rows() -> Vec<PayoutRow> {
    vec![row_a(), row_b(), row_c()]
}
