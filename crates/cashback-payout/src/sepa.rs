//! SEPA credit transfer initiation, ISO 20022 `pain.001.001.03`, written by hand and
//! byte-deterministic (same input, same bytes; two-space indentation, `\n` line ends).
//!
//! Layout: `GrpHdr` (MsgId, CreDtTm, NbOfTxs, CtrlSum, InitgPty/Nm = debtor name), one `PmtInf`
//! (PmtInfId = MsgId, PmtMtd TRF, BtchBookg false, NbOfTxs, CtrlSum, service level SEPA,
//! ReqdExctnDt, Dbtr, DbtrAcct, DbtrAgt = BIC or `Othr/Id NOTPROVIDED`, ChrgBr SLEV) and one
//! `CdtTrfTxInf` per row (EndToEndId = 9-digit award id, InstdAmt in EUR with 2 decimals,
//! Cdtr/Nm, CdtrAcct IBAN, RmtInf/Ustrd = the [payment reason](crate::payment_reason)).
//!
//! Text (names, remittance information) is mapped to the EPC basic Latin character set —
//! letters `a-z A-Z`, digits, `/ - ? : ( ) . , ' +` and space — before XML escaping:
//! - common accented and special Latin letters are transliterated (`à`→`a`, `Ç`→`C`, `ß`→`ss`,
//!   `æ`→`ae`, …), typographic apostrophes become `'` and dashes `-`;
//! - whitespace and control characters (tab, CR, LF, …) become a space;
//! - any other character becomes `.`;
//! - runs of spaces are collapsed, the ends trimmed, then the text is cut to its maximum length
//!   (70 characters for names, 140 for the remittance information).
//!
//! Amounts are exact decimal euros computed from integer cents; `CreDtTm` is the wall-clock
//! time of `created` in its own offset, without the offset (`YYYY-MM-DDThh:mm:ss`).

use crate::{PayoutFormatError, PayoutRow, euros, padded, payment_reason};
use time::{Date, OffsetDateTime};

/// Largest amount of one SEPA credit transfer, in cents (999 999 999.99 EUR).
const MAX_AMOUNT_CENTS: i64 = 99_999_999_999;
/// Largest control sum the schema allows (18 digits), in cents.
const MAX_CTRL_SUM_CENTS: i64 = 999_999_999_999_999_999;

/// The payer: the account the transfers are debited from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepaDebtor {
    /// Name of the debtor (also the initiating party); mapped to the SEPA set, ≤ 70 chars.
    pub name: String,
    /// IBAN of the debited account (spaces removed, upper-cased).
    pub iban: String,
    /// BIC of the debtor's bank; `None` writes `Othr/Id NOTPROVIDED`.
    pub bic: Option<String>,
}

/// One payment file: its identity, times and payer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SepaBatch {
    /// `MsgId` (also `PmtInfId`): 1 to 35 characters of the SEPA set without spaces, not
    /// starting or ending with `/` and without `//`; unique per file for the bank.
    pub message_id: String,
    /// `CreDtTm`: when the file was created.
    pub created: OffsetDateTime,
    /// `ReqdExctnDt`: the day the bank should execute the transfers.
    pub execution_date: Date,
    /// The payer.
    pub debtor: SepaDebtor,
}

/// The `pain.001.001.03` document paying `rows` from `batch.debtor`.
///
/// Errors, naming the field (and the award id for a row): empty `rows`; invalid `message_id`,
/// debtor name, IBAN or BIC; a row whose amount is not in 0.01..=999 999 999.99 EUR, whose IBAN
/// is empty or not shaped like an IBAN, or whose creditor name is empty; a control sum above
/// 18 digits.
pub fn pain001(batch: &SepaBatch, rows: &[PayoutRow]) -> Result<Vec<u8>, PayoutFormatError> {
    check_message_id(&batch.message_id)?;
    let debtor_name = sepa_text(&batch.debtor.name, 70);
    if debtor_name.is_empty() {
        return Err(batch_error("debtor.name", "is empty"));
    }
    let debtor_iban = normalized_iban(&batch.debtor.iban).map_err(|reason| batch_error("debtor.iban", reason))?;
    let debtor_bic = match &batch.debtor.bic {
        Some(bic) => Some(checked_bic(bic).map_err(|reason| batch_error("debtor.bic", reason))?),
        None => None,
    };
    if rows.is_empty() {
        return Err(batch_error("rows", "no rows to pay"));
    }

    let mut txs = Vec::with_capacity(rows.len());
    let mut total: i64 = 0;
    for row in rows {
        let tx = transaction(row)?;
        total = total
            .checked_add(row.amount_cents)
            .filter(|t| *t <= MAX_CTRL_SUM_CENTS)
            .ok_or_else(|| batch_error("rows", "control sum exceeds 18 digits"))?;
        txs.push(tx);
    }
    let count = rows.len().to_string();
    let ctrl_sum = euros(total);
    let c = batch.created;
    let created = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.year(),
        u8::from(c.month()),
        c.day(),
        c.hour(),
        c.minute(),
        c.second()
    );
    let e = batch.execution_date;
    let execution = format!("{:04}-{:02}-{:02}", e.year(), u8::from(e.month()), e.day());

    let mut x = Xml::default();
    x.line("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    x.open_raw("<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.001.001.03\">", "Document");
    x.open("CstmrCdtTrfInitn");
    x.open("GrpHdr");
    x.leaf("MsgId", &batch.message_id);
    x.leaf("CreDtTm", &created);
    x.leaf("NbOfTxs", &count);
    x.leaf("CtrlSum", &ctrl_sum);
    x.open("InitgPty");
    x.leaf("Nm", &debtor_name);
    x.close(); // InitgPty
    x.close(); // GrpHdr
    x.open("PmtInf");
    x.leaf("PmtInfId", &batch.message_id);
    x.leaf("PmtMtd", "TRF");
    x.leaf("BtchBookg", "false");
    x.leaf("NbOfTxs", &count);
    x.leaf("CtrlSum", &ctrl_sum);
    x.open("PmtTpInf");
    x.open("SvcLvl");
    x.leaf("Cd", "SEPA");
    x.close(); // SvcLvl
    x.close(); // PmtTpInf
    x.leaf("ReqdExctnDt", &execution);
    x.open("Dbtr");
    x.leaf("Nm", &debtor_name);
    x.close(); // Dbtr
    x.account("DbtrAcct", &debtor_iban);
    x.open("DbtrAgt");
    x.open("FinInstnId");
    match &debtor_bic {
        Some(bic) => x.leaf("BIC", bic),
        None => {
            x.open("Othr");
            x.leaf("Id", "NOTPROVIDED");
            x.close(); // Othr
        }
    }
    x.close(); // FinInstnId
    x.close(); // DbtrAgt
    x.leaf("ChrgBr", "SLEV");
    for tx in &txs {
        x.open("CdtTrfTxInf");
        x.open("PmtId");
        x.leaf("EndToEndId", &tx.end_to_end_id);
        x.close(); // PmtId
        x.open("Amt");
        x.line(&format!("<InstdAmt Ccy=\"EUR\">{}</InstdAmt>", tx.amount));
        x.close(); // Amt
        x.open("Cdtr");
        x.leaf("Nm", &tx.name);
        x.close(); // Cdtr
        x.account("CdtrAcct", &tx.iban);
        x.open("RmtInf");
        x.leaf("Ustrd", &tx.remittance);
        x.close(); // RmtInf
        x.close(); // CdtTrfTxInf
    }
    x.close(); // PmtInf
    x.close(); // CstmrCdtTrfInitn
    x.close(); // Document
    Ok(x.out.into_bytes())
}

/// One credit transfer, validated and mapped to the SEPA set.
struct Transaction {
    end_to_end_id: String,
    amount: String,
    name: String,
    iban: String,
    remittance: String,
}

fn transaction(row: &PayoutRow) -> Result<Transaction, PayoutFormatError> {
    let err = |field, reason: &str| PayoutFormatError::Row { award_id: row.award_id, field, reason: reason.to_owned() };
    if row.amount_cents <= 0 {
        return Err(err("amount_cents", "must be positive"));
    }
    if row.amount_cents > MAX_AMOUNT_CENTS {
        return Err(err("amount_cents", "exceeds 999999999.99 EUR, the SEPA maximum"));
    }
    let iban = normalized_iban(&row.iban).map_err(|reason| err("iban", reason))?;
    let parts: Vec<&str> = [&row.holder_name, &row.holder_surname]
        .into_iter()
        .flatten()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect();
    let name = if parts.is_empty() { sepa_text(row.holder_cf(), 70) } else { sepa_text(&parts.join(" "), 70) };
    if name.is_empty() {
        return Err(err("holder_fiscal_code", "no holder name nor fiscal code for the creditor name"));
    }
    Ok(Transaction {
        end_to_end_id: padded(row.award_id, 9),
        amount: euros(row.amount_cents),
        name,
        iban,
        remittance: sepa_text(&payment_reason(row), 140),
    })
}

fn batch_error(field: &'static str, reason: &str) -> PayoutFormatError {
    PayoutFormatError::Batch { field, reason: reason.to_owned() }
}

fn check_message_id(id: &str) -> Result<(), PayoutFormatError> {
    let reason = if id.is_empty() || id.len() > 35 {
        "must be 1 to 35 characters"
    } else if !id.chars().all(|c| c != ' ' && is_sepa_char(c)) {
        "must use only letters, digits and / - ? : ( ) . , ' +"
    } else if id.starts_with('/') || id.ends_with('/') || id.contains("//") {
        "must not start or end with '/' nor contain '//'"
    } else {
        return Ok(());
    };
    Err(batch_error("message_id", reason))
}

/// The IBAN without spaces, upper-cased, if it has the shape the schema accepts: 2 letters,
/// 2 digits, 1 to 30 letters or digits. (The check digits are the domain's `Iban`'s job.)
fn normalized_iban(iban: &str) -> Result<String, &'static str> {
    let iban: String = iban.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    let b = iban.as_bytes();
    if b.is_empty() {
        return Err("is empty");
    }
    let shaped = (5..=34).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric);
    if shaped { Ok(iban) } else { Err("is not an IBAN (2 letters, 2 digits, 1 to 30 letters or digits)") }
}

/// The BIC, trimmed and upper-cased, if it matches ISO 9362 (8 or 11 characters).
fn checked_bic(bic: &str) -> Result<String, &'static str> {
    let bic = bic.trim().to_ascii_uppercase();
    let b = bic.as_bytes();
    let shaped = (b.len() == 8 || b.len() == 11)
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && (b[6].is_ascii_uppercase() || (b'2'..=b'9').contains(&b[6]))
        && b[7] != b'O'
        && b[7..].iter().all(u8::is_ascii_alphanumeric);
    if shaped { Ok(bic) } else { Err("is not a BIC (8 or 11 letters and digits, ISO 9362)") }
}

fn is_sepa_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '?' | ':' | '(' | ')' | '.' | ',' | '\'' | '+' | ' ')
}

/// `s` mapped to the SEPA character set and cut to `max` characters; see the [module](self)
/// doc. The result is ASCII.
pub(crate) fn sepa_text(s: &str, max: usize) -> String {
    let mut mapped = String::with_capacity(s.len());
    for c in s.chars() {
        if is_sepa_char(c) {
            mapped.push(c);
        } else if c.is_whitespace() || c.is_control() {
            mapped.push(' ');
        } else {
            mapped.push_str(transliterate(c).unwrap_or("."));
        }
    }
    let mut out = String::with_capacity(mapped.len());
    for word in mapped.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.truncate(max); // ASCII: bytes are characters
    let len = out.trim_end().len();
    out.truncate(len);
    out
}

/// ASCII spelling of common non-ASCII Latin letters and punctuation.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'æ' => "ae",
        'Æ' => "AE",
        'ç' | 'ć' | 'č' => "c",
        'Ç' | 'Ć' | 'Č' => "C",
        'ď' | 'đ' => "d",
        'Ď' | 'Đ' => "D",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ė' | 'Ę' | 'Ě' => "E",
        'ğ' => "g",
        'Ğ' => "G",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'Į' | 'İ' => "I",
        'ł' => "l",
        'Ł' => "L",
        'ñ' | 'ń' | 'ň' => "n",
        'Ñ' | 'Ń' | 'Ň' => "N",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ő' => "O",
        'œ' => "oe",
        'Œ' => "OE",
        'ř' => "r",
        'Ř' => "R",
        'ś' | 'š' | 'ş' => "s",
        'Ś' | 'Š' | 'Ş' => "S",
        'ß' => "ss",
        'ť' | 'ţ' => "t",
        'Ť' | 'Ţ' => "T",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'ź' | 'ż' | 'ž' => "z",
        'Ź' | 'Ż' | 'Ž' => "Z",
        '‘' | '’' | '`' | '´' => "'",
        '‐' | '‑' | '‒' | '–' | '—' => "-",
        _ => return None,
    })
}

/// `&`, `<`, `>`, `"` and `'` as XML entities; everything else unchanged.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A minimal indenting XML writer: elements on their own line, text escaped.
#[derive(Default)]
struct Xml {
    out: String,
    open: Vec<&'static str>,
}

impl Xml {
    fn line(&mut self, raw: &str) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
        self.out.push_str(raw);
        self.out.push('\n');
    }

    fn open_raw(&mut self, raw: &str, tag: &'static str) {
        self.line(raw);
        self.open.push(tag);
    }

    fn open(&mut self, tag: &'static str) {
        self.open_raw(&format!("<{tag}>"), tag);
    }

    fn close(&mut self) {
        let tag = self.open.pop().expect("close without open");
        self.line(&format!("</{tag}>"));
    }

    fn leaf(&mut self, tag: &str, text: &str) {
        self.line(&format!("<{tag}>{}</{tag}>", xml_escape(text)));
    }

    fn account(&mut self, tag: &'static str, iban: &str) {
        self.open(tag);
        self.open("Id");
        self.leaf("IBAN", iban);
        self.close();
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_xml_specials() {
        assert_eq!(xml_escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(xml_escape("plain"), "plain");
    }

    #[test]
    fn maps_text_to_the_sepa_set() {
        assert_eq!(sepa_text("Niccolò Façade-Müller", 70), "Niccolo Facade-Muller");
        assert_eq!(sepa_text("D’Amico  &\t<Co>\r\n", 70), "D'Amico . .Co.");
        assert_eq!(sepa_text("Straße Œuvre", 70), "Strasse OEuvre");
        assert_eq!(sepa_text("王 x", 70), ". x");
        assert_eq!(sepa_text("abc def", 4), "abc");
        assert_eq!(sepa_text("  \n ", 70), "");
    }

    #[test]
    fn iban_and_bic_shapes() {
        assert_eq!(normalized_iban("it60 x054 2811 1010 0000 0123 456").as_deref(), Ok("IT60X0542811101000000123456"));
        assert_eq!(normalized_iban(" "), Err("is empty"));
        assert!(normalized_iban("IT6").is_err());
        assert!(normalized_iban("1T60X0542811101000000123456").is_err());
        assert!(normalized_iban("IT60X05428111010000001234-6").is_err());
        assert_eq!(checked_bic("bppiitrrxxx").as_deref(), Ok("BPPIITRRXXX"));
        assert!(checked_bic("BPPIITRR").is_ok());
        assert!(checked_bic("BPPIITRO").is_err());
        assert!(checked_bic("BPPIIT1R").is_err());
        assert!(checked_bic("BPPIITRRXX").is_err());
    }

    #[test]
    fn message_id_rules() {
        assert!(check_message_id("CSTAR-20210715-0001").is_ok());
        for bad in ["", "a b", "/x", "x/", "a//b", "é", &"x".repeat(36)] {
            assert!(
                matches!(check_message_id(bad), Err(PayoutFormatError::Batch { field: "message_id", .. })),
                "{bad}"
            );
        }
    }
}
