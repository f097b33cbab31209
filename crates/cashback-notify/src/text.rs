//! Text helpers for the templates: Italian amounts, dates and period names, masking of personal
//! data, markdown-safe inline fields and the IO length limits.

use cashback_domain::Money;
use time::Date;

const ORDINALS: [&str; 10] =
    ["primo", "secondo", "terzo", "quarto", "quinto", "sesto", "settimo", "ottavo", "nono", "decimo"];

/// Italian amount from cents, integer maths only: `"1.540,00 €"`, `"0,05 €"`, `"-12,30 €"`.
pub fn format_euro(amount: Money) -> String {
    let cents = amount.cents();
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let euros = (abs / 100).to_string();
    let mut grouped = String::with_capacity(euros.len() + euros.len() / 3);
    for (i, digit) in euros.chars().enumerate() {
        if i > 0 && (euros.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped},{:02} €", abs % 100)
}

/// Italian date: `"30/06/2021"`.
pub fn format_date(date: Date) -> String {
    format!("{:02}/{:02}/{}", date.day(), u8::from(date.month()), date.year())
}

/// The Italian ordinal of award periods 1–10 (`"primo"` … `"decimo"`).
pub fn period_ordinal(award_period_id: i64) -> Option<&'static str> {
    let index = usize::try_from(award_period_id).ok()?.checked_sub(1)?;
    ORDINALS.get(index).copied()
}

/// How a period is named in a sentence: `"primo periodo"`, or `"periodo n. 11"` past the tenth.
pub fn period_name(award_period_id: i64) -> String {
    match period_ordinal(award_period_id) {
        Some(ordinal) => format!("{ordinal} periodo"),
        None => format!("periodo n. {award_period_id}"),
    }
}

/// Masks an IBAN, keeping the country code, the check digits and the last 4 characters:
/// `IT60X0542811101000000123456` → `IT60*******************3456`. Whitespace is dropped;
/// anything shorter than the shortest IBAN (15) is masked entirely. Idempotent.
pub fn mask_iban(iban: &str) -> String {
    let chars: Vec<char> = iban.chars().filter(|c| !c.is_whitespace()).collect();
    let n = chars.len();
    if n < 15 {
        return "*".repeat(n);
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[n - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(n - 8))
}

/// Masks a fiscal code for logs: the first 6 characters (surname and name letters) and
/// `**********`.
pub fn mask_fiscal_code(fiscal_code: &str) -> String {
    let head: String = fiscal_code.trim().chars().take(6).collect();
    format!("{head}**********")
}

/// Whether `token` (ASCII alphanumerics) looks like a compact IBAN: 2 letters, 2 digits, 15–34
/// characters.
fn looks_like_iban(token: &str) -> bool {
    let b = token.as_bytes();
    (15..=34).contains(&b.len()) && b[..2].iter().all(u8::is_ascii_alphabetic) && b[2..4].iter().all(u8::is_ascii_digit)
}

/// Masks every compact IBAN-looking token of a free text (a payment-failure reason or a note
/// may quote one), so that a full IBAN is never rendered.
fn scrub_ibans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphanumeric()) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        let token = &rest[..end];
        out.push_str(&if looks_like_iban(token) { mask_iban(token) } else { token.to_owned() });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Markdown characters escaped in inline fields, so that external text (a Consap reason, an
/// operator's note) cannot inject links, images, HTML or emphasis.
const MARKDOWN_SPECIAL: &[char] = &['\\', '`', '*', '_', '[', ']', '<', '>', '#', '|', '~', '&', '!'];

/// An external text as one markdown-safe line: IBANs masked, control characters and runs of
/// whitespace collapsed to one space, markdown escaped, at most `max_chars` source characters
/// (then `…`).
pub(crate) fn inline(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut taken = 0;
    let mut pending_space = false;
    for c in scrub_ibans(text).chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if taken == max_chars {
            out.push('…');
            break;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
            taken += 1;
        }
        if MARKDOWN_SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
        taken += 1;
    }
    out
}

/// Brings `text` within `min..=max` characters (Unicode scalar values, as the IO API counts):
/// appends `pad` until long enough, then cuts on a character boundary, ending with `…`.
pub(crate) fn fit(mut text: String, min: usize, max: usize, pad: &str) -> String {
    debug_assert!(!pad.is_empty() && 0 < min && min < max);
    let mut n = text.chars().count();
    while n < min {
        text.push_str(pad);
        n += pad.chars().count();
    }
    if n > max {
        let cut = text.char_indices().nth(max - 1).map_or(text.len(), |(i, _)| i);
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn euro(cents: i64) -> String {
        format_euro(Money::from_cents(cents))
    }

    #[test]
    fn italian_amounts() {
        assert_eq!(euro(0), "0,00 €");
        assert_eq!(euro(5), "0,05 €");
        assert_eq!(euro(154_000), "1.540,00 €");
        assert_eq!(euro(123_456_789), "1.234.567,89 €");
        assert_eq!(euro(100_000), "1.000,00 €");
        assert_eq!(euro(99_999), "999,99 €");
        assert_eq!(euro(-1_230), "-12,30 €");
        assert_eq!(euro(i64::MIN), "-92.233.720.368.547.758,08 €");
        assert_eq!(euro(i64::MAX), "92.233.720.368.547.758,07 €");
    }

    #[test]
    fn italian_dates() {
        assert_eq!(format_date(date!(2021 - 06 - 30)), "30/06/2021");
        assert_eq!(format_date(date!(2020 - 12 - 01)), "01/12/2020");
    }

    #[test]
    fn period_ordinals() {
        let expected =
            ["primo", "secondo", "terzo", "quarto", "quinto", "sesto", "settimo", "ottavo", "nono", "decimo"];
        for (id, ordinal) in (1..).zip(expected) {
            assert_eq!(period_ordinal(id), Some(ordinal));
        }
        assert_eq!(period_ordinal(0), None);
        assert_eq!(period_ordinal(11), None);
        assert_eq!(period_ordinal(-1), None);
        assert_eq!(period_ordinal(i64::MIN), None);
        assert_eq!(period_name(1), "primo periodo");
        assert_eq!(period_name(7), "settimo periodo");
        assert_eq!(period_name(11), "periodo n. 11");
        assert_eq!(period_name(0), "periodo n. 0");
    }

    #[test]
    fn iban_masking() {
        assert_eq!(mask_iban("IT60X0542811101000000123456"), "IT60*******************3456");
        assert_eq!(mask_iban("IT60 X054 2811 1010 0000 0123 456"), "IT60*******************3456");
        assert_eq!(mask_iban("NO9386011117947"), "NO93*******7947");
        assert_eq!(mask_iban("IT60*******************3456"), "IT60*******************3456");
        assert_eq!(mask_iban("IT60X05"), "*******");
        assert_eq!(mask_iban(""), "");
        let masked = mask_iban("IT60X0542811101000000123456");
        assert!(!masked.contains("0542811101"));
    }

    #[test]
    fn fiscal_code_masking() {
        assert_eq!(mask_fiscal_code("RSSMRA85T10A562S"), "RSSMRA**********");
        assert_eq!(mask_fiscal_code(" RSSMRA85T10A562S "), "RSSMRA**********");
        assert_eq!(mask_fiscal_code("AB"), "AB**********");
    }

    #[test]
    fn inline_fields_are_safe() {
        assert_eq!(inline("  conto\n\tchiuso  ", 100), "conto chiuso");
        assert_eq!(inline("[clic](http://x) <b>*", 100), "\\[clic\\](http://x) \\<b\\>\\*");
        let stars = "\\*".repeat(19);
        assert_eq!(inline("IBAN IT60X0542811101000000123456 errato", 100), format!("IBAN IT60{stars}3456 errato"));
        assert_eq!(inline("abcdef", 3), "abc…");
        assert_eq!(inline("abc", 3), "abc");
        assert_eq!(inline("àèìòù€", 4), "àèìò…");
        assert_eq!(inline("\u{0}\u{7}", 10), "");
    }

    #[test]
    fn fit_pads_and_cuts_on_char_boundaries() {
        assert_eq!(fit("abc".into(), 7, 10, "+-"), "abc+-+-");
        assert_eq!(fit("abcdefghij".into(), 2, 10, "."), "abcdefghij");
        assert_eq!(fit("abcdefghijk".into(), 2, 10, "."), "abcdefghi…");
        let cut = fit("€".repeat(20), 2, 10, ".");
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with("€€…"));
    }
}
