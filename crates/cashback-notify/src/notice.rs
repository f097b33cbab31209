//! What to tell a citizen ([`Notice`], stored as JSON in the caller's outbox) and its Italian
//! IO message ([`render`]), bpd-domain §3.14.

use std::fmt;

use cashback_domain::Money;
use serde::{Deserialize, Serialize};
use time::{Date, Duration};

use crate::text::{fit, format_date, format_euro, inline, mask_fiscal_code, mask_iban, period_name};

/// IO limits on the subject, in characters.
pub const SUBJECT_CHARS: std::ops::RangeInclusive<usize> = 10..=120;
/// IO limits on the markdown body (front matter included), in characters.
pub const MARKDOWN_CHARS: std::ops::RangeInclusive<usize> = 80..=10_000;
/// The IO app's deep link to the IBAN edit screen of the cashback section.
pub const IBAN_EDIT_CTA: &str = "ioit://CTA_BPD_IBAN_EDIT";

/// IO front matter adding an "edit IBAN" button to the message.
const IBAN_CTA_FRONT_MATTER: &str = "---\nit:\n    cta_1:\n        text: \"Modifica IBAN\"\n        action: \"ioit://CTA_BPD_IBAN_EDIT\"\nen:\n    cta_1:\n        text: \"Edit IBAN\"\n        action: \"ioit://CTA_BPD_IBAN_EDIT\"\n---\n";
const SUBJECT_PAD: &str = " - Cashback";
const MARKDOWN_PAD: &str = "\n\nPer maggiori informazioni apri la sezione Cashback dell'app IO.";
const COMPLAINT_HINT: &str =
    "Se ritieni che ci sia un errore, puoi presentare un reclamo a Consap, che gestisce i pagamenti del Cashback.";

/// Character budgets of the external text fields (before markdown escaping).
const REASON_CHARS: usize = 300;
const NOTE_CHARS: usize = 2_000;
const STATUS_CHARS: usize = 60;
const CRO_CHARS: usize = 40;
const IBAN_CHARS: usize = 40;

/// A notification to a citizen. Amounts are euro cents.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The period is over; transactions may still arrive during the grace days.
    PeriodEnded {
        award_period_id: i64,
        #[serde(with = "iso_date")]
        end: Date,
        grace_days: u32,
    },
    /// The citizen is eligible: award computed at the end of the grace period.
    AwardComputed {
        award_period_id: i64,
        award_id: i64,
        cashback_cents: i64,
        jackpot_cents: i64,
        amount_cents: i64,
        transactions: u32,
        rank: Option<u32>,
        has_iban: bool,
    },
    /// Too few transactions: the accumulated cashback is not paid.
    NotEligible { award_period_id: i64, transactions: u32, min_transactions: u32, cashback_cents: i64 },
    /// Consap executed the transfer ("ORDINE ESEGUITO"). `iban_masked` is `None` for a
    /// technical account.
    PaymentExecuted {
        award_period_id: i64,
        award_id: i64,
        amount_cents: i64,
        #[serde(default, with = "iso_date_opt")]
        execution_date: Option<Date>,
        cro: Option<String>,
        iban_masked: Option<String>,
    },
    /// Any other Consap outcome: the transfer failed.
    PaymentFailed {
        award_period_id: i64,
        award_id: i64,
        amount_cents: i64,
        reason: Option<String>,
        iban_masked: Option<String>,
    },
    /// Reminder: an award is waiting for an IBAN.
    IbanMissing { award_period_id: i64, amount_cents: i64 },
    /// A complaint changed status.
    ComplaintUpdated { complaint_id: i64, status: String, note: Option<String> },
}

/// An IO message, within the IO limits.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub fiscal_code: String,
    pub subject: String,
    pub markdown: String,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("fiscal_code", &mask_fiscal_code(&self.fiscal_code))
            .field("subject", &self.subject)
            .field("markdown_chars", &self.markdown.chars().count())
            .finish()
    }
}

fn euro(cents: i64) -> String {
    format_euro(Money::from_cents(cents))
}

fn transactions(n: u32) -> String {
    if n == 1 { "1 transazione valida".to_owned() } else { format!("{n} transazioni valide") }
}

/// `` sull'IBAN `IT60***3456` `` (a code span: no markdown escaping needed), or nothing for a
/// technical account.
fn on_iban(iban_masked: Option<&str>) -> String {
    let kept: String =
        iban_masked.unwrap_or_default().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '*').collect();
    let masked: String = mask_iban(&kept).chars().take(IBAN_CHARS).collect();
    if masked.is_empty() { String::new() } else { format!(" sull'IBAN `{masked}`") }
}

fn complaint_status(status: &str) -> String {
    let label = match status.trim().to_ascii_lowercase().as_str() {
        "new" | "received" | "open" | "opened" => "ricevuto",
        "wip" | "in_progress" | "processing" => "in lavorazione",
        "accepted" | "approved" => "accolto",
        "rejected" | "refused" => "respinto",
        "closed" | "resolved" => "chiuso",
        _ => return inline(status, STATUS_CHARS),
    };
    label.to_owned()
}

/// The Italian IO message for `notice`, always within [`SUBJECT_CHARS`] and [`MARKDOWN_CHARS`]
/// (padded with a fixed footer or cut with `…` on a character boundary). IBANs are rendered
/// masked only, even if a full one is passed in `iban_masked` or quoted in a free text.
pub fn render(fiscal_code: &str, notice: &Notice) -> Message {
    let (subject, markdown) = match notice {
        Notice::PeriodEnded { award_period_id, end, grace_days } => {
            let name = period_name(*award_period_id);
            let until = end
                .checked_add(Duration::days(i64::from(*grace_days)))
                .map_or_else(String::new, |d| format!(", cioè fino al {}", format_date(d)));
            (
                format!("Il {name} del Cashback è terminato"),
                format!(
                    "Il {name} del Cashback si è concluso il {end}.\n\n\
                     Le transazioni effettuate entro quella data possono ancora essere comunicate da banche e \
                     operatori nei {grace_days} giorni successivi{until}. Al termine calcoleremo la classifica \
                     e l'eventuale rimborso, e ti scriveremo di nuovo.",
                    end = format_date(*end),
                ),
            )
        }
        Notice::AwardComputed {
            award_period_id,
            award_id: _,
            cashback_cents,
            jackpot_cents,
            amount_cents,
            transactions: count,
            rank,
            has_iban,
        } => {
            let name = period_name(*award_period_id);
            let mut md = String::new();
            if !has_iban {
                md.push_str(IBAN_CTA_FRONT_MATTER);
            }
            md.push_str(&format!(
                "Il {name} del Cashback si è chiuso con {}: hai diritto a un rimborso di **{}**.\n\n- Cashback: {}\n",
                transactions(*count),
                euro(*amount_cents),
                euro(*cashback_cents),
            ));
            if *jackpot_cents != 0 {
                md.push_str(&format!("- Super Cashback: {}\n", euro(*jackpot_cents)));
            }
            if let Some(rank) = rank {
                md.push_str(&format!("- Posizione in classifica: {rank}\n"));
            }
            md.push_str(if *has_iban {
                "\nIl rimborso sarà accreditato sull'IBAN che hai indicato: ti scriveremo quando il bonifico \
                 sarà eseguito."
            } else {
                "\nNon hai ancora indicato l'IBAN su cui ricevere il rimborso: inseriscilo dalla sezione Cashback \
                 dell'app IO."
            });
            (format!("Il tuo rimborso Cashback per il {name}"), md)
        }
        Notice::NotEligible { award_period_id, transactions: count, min_transactions, cashback_cents } => {
            let name = period_name(*award_period_id);
            (
                format!("Esito del {name} del Cashback"),
                format!(
                    "Nel {name} del Cashback hai effettuato {}, ma per ottenere il rimborso ne servivano almeno \
                     {min_transactions}.\n\nPer questo non ti spetta il cashback di {} che avevi accumulato.",
                    transactions(*count),
                    euro(*cashback_cents),
                ),
            )
        }
        Notice::PaymentExecuted { award_period_id, award_id: _, amount_cents, execution_date, cro, iban_masked } => {
            let name = period_name(*award_period_id);
            let mut md = format!(
                "Abbiamo disposto il bonifico di **{}** per il rimborso del {name} del Cashback{}.\n\n",
                euro(*amount_cents),
                on_iban(iban_masked.as_deref()),
            );
            if let Some(date) = execution_date {
                md.push_str(&format!("- Data di esecuzione: {}\n", format_date(*date)));
            }
            if let Some(cro) = cro {
                md.push_str(&format!("- CRO: {}\n", inline(cro, CRO_CHARS)));
            }
            md.push_str("\nL'accredito può richiedere alcuni giorni lavorativi, secondo i tempi della tua banca.");
            (format!("Rimborso Cashback del {name}: bonifico eseguito"), md)
        }
        Notice::PaymentFailed { award_period_id, award_id: _, amount_cents, reason, iban_masked } => {
            let name = period_name(*award_period_id);
            let mut md = format!(
                "{IBAN_CTA_FRONT_MATTER}Il bonifico di **{}** per il rimborso del {name} del Cashback{} non è andato \
                 a buon fine.",
                euro(*amount_cents),
                on_iban(iban_masked.as_deref()),
            );
            if let Some(reason) = reason.as_deref().map(|r| inline(r, REASON_CHARS)).filter(|r| !r.is_empty()) {
                md.push_str(&format!("\n\nMotivo: {reason}"));
            }
            md.push_str(&format!(
                "\n\nVerifica l'IBAN e, se necessario, modificalo dalla sezione Cashback dell'app IO \
                 ([Modifica IBAN]({IBAN_EDIT_CTA})): il pagamento sarà ripetuto sull'IBAN aggiornato.\n\n\
                 {COMPLAINT_HINT}"
            ));
            (format!("Rimborso Cashback del {name}: bonifico non riuscito"), md)
        }
        Notice::IbanMissing { award_period_id, amount_cents } => {
            let name = period_name(*award_period_id);
            (
                "Inserisci l'IBAN per ricevere il rimborso Cashback".to_owned(),
                format!(
                    "{IBAN_CTA_FRONT_MATTER}Hai diritto a un rimborso di **{}** per il {name} del Cashback, ma non \
                     hai ancora indicato l'IBAN su cui riceverlo.\n\nInseriscilo dalla sezione Cashback dell'app \
                     IO: lo useremo per il pagamento.",
                    euro(*amount_cents),
                ),
            )
        }
        Notice::ComplaintUpdated { complaint_id, status, note } => {
            let mut md = format!(
                "Il tuo reclamo n. {complaint_id} relativo al Cashback è stato aggiornato.\n\nStato: **{}**",
                complaint_status(status),
            );
            if let Some(note) = note.as_deref().map(|n| inline(n, NOTE_CHARS)).filter(|n| !n.is_empty()) {
                md.push_str(&format!("\n\nNota: {note}"));
            }
            ("Aggiornamento sul tuo reclamo Cashback".to_owned(), md)
        }
    };
    Message {
        fiscal_code: fiscal_code.to_owned(),
        subject: fit(subject, *SUBJECT_CHARS.start(), *SUBJECT_CHARS.end(), SUBJECT_PAD),
        markdown: fit(markdown, *MARKDOWN_CHARS.start(), *MARKDOWN_CHARS.end(), MARKDOWN_PAD),
    }
}

/// `Date` as `"2021-06-30"` (the workspace builds `time` without its serde feature).
mod iso_date {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::Error as _};
    use time::{Date, format_description::BorrowedFormatItem, macros::format_description};

    pub(super) const FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

    pub(super) fn serialize<S: Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&date.format(FORMAT).map_err(S::Error::custom)?)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = <&str>::deserialize(d)?;
        Date::parse(text, FORMAT).map_err(D::Error::custom)
    }
}

mod iso_date_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub(super) fn serialize<S: Serializer>(date: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => super::iso_date::serialize(date, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::iso_date")] Date);
        Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(date)| date))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const CF: &str = "RSSMRA85T10A562S";
    const FULL_IBAN: &str = "IT60X0542811101000000123456";

    /// Every variant with ordinary values.
    fn ordinary() -> Vec<Notice> {
        vec![
            Notice::PeriodEnded { award_period_id: 2, end: date!(2021 - 06 - 30), grace_days: 60 },
            Notice::AwardComputed {
                award_period_id: 2,
                award_id: 7,
                cashback_cents: 15_000,
                jackpot_cents: 150_000,
                amount_cents: 165_000,
                transactions: 312,
                rank: Some(42),
                has_iban: true,
            },
            Notice::NotEligible { award_period_id: 1, transactions: 1, min_transactions: 10, cashback_cents: 5 },
            Notice::PaymentExecuted {
                award_period_id: 3,
                award_id: 9,
                amount_cents: 154_000,
                execution_date: Some(date!(2021 - 08 - 10)),
                cro: Some("0123456789".into()),
                iban_masked: Some(mask_iban(FULL_IBAN)),
            },
            Notice::PaymentFailed {
                award_period_id: 11,
                award_id: 9,
                amount_cents: 15_000,
                reason: Some("IBAN non valido".into()),
                iban_masked: None,
            },
            Notice::IbanMissing { award_period_id: 2, amount_cents: 15_000 },
            Notice::ComplaintUpdated { complaint_id: 5, status: "ACCEPTED".into(), note: None },
        ]
    }

    /// Every variant at the extremes: tiny or empty texts, huge texts, extreme numbers.
    fn extreme() -> Vec<Notice> {
        let huge = "Ж[x]*".repeat(40_000);
        let mut out = Vec::new();
        for (id, cents, count, text, date) in [
            (i64::MIN, i64::MIN, 0, String::new(), Date::MIN),
            (i64::MAX, i64::MAX, u32::MAX, huge.clone(), Date::MAX),
            (0, 0, 1, " \n\t ".to_owned(), date!(2021 - 01 - 01)),
            (10, -1, u32::MAX, format!("{FULL_IBAN} {huge}"), Date::MAX),
        ] {
            let opt = |t: &str| Some(t.to_owned());
            out.extend([
                Notice::PeriodEnded { award_period_id: id, end: date, grace_days: count },
                Notice::AwardComputed {
                    award_period_id: id,
                    award_id: id,
                    cashback_cents: cents,
                    jackpot_cents: cents,
                    amount_cents: cents,
                    transactions: count,
                    rank: Some(count),
                    has_iban: count % 2 == 0,
                },
                Notice::AwardComputed {
                    award_period_id: id,
                    award_id: id,
                    cashback_cents: 0,
                    jackpot_cents: 0,
                    amount_cents: 0,
                    transactions: 0,
                    rank: None,
                    has_iban: true,
                },
                Notice::NotEligible {
                    award_period_id: id,
                    transactions: count,
                    min_transactions: count,
                    cashback_cents: cents,
                },
                Notice::PaymentExecuted {
                    award_period_id: id,
                    award_id: id,
                    amount_cents: cents,
                    execution_date: Some(date),
                    cro: opt(&text),
                    iban_masked: opt(&text),
                },
                Notice::PaymentExecuted {
                    award_period_id: id,
                    award_id: id,
                    amount_cents: cents,
                    execution_date: None,
                    cro: None,
                    iban_masked: None,
                },
                Notice::PaymentFailed {
                    award_period_id: id,
                    award_id: id,
                    amount_cents: cents,
                    reason: opt(&text),
                    iban_masked: opt(&text),
                },
                Notice::PaymentFailed {
                    award_period_id: id,
                    award_id: id,
                    amount_cents: cents,
                    reason: None,
                    iban_masked: None,
                },
                Notice::IbanMissing { award_period_id: id, amount_cents: cents },
                Notice::ComplaintUpdated { complaint_id: id, status: text.clone(), note: opt(&text) },
                Notice::ComplaintUpdated { complaint_id: id, status: String::new(), note: None },
            ]);
        }
        out
    }

    fn all() -> Vec<Notice> {
        let mut all = ordinary();
        all.extend(extreme());
        all
    }

    #[test]
    fn every_variant_is_covered() {
        let kinds: std::collections::BTreeSet<String> =
            all().iter().map(|n| serde_json::to_value(n).unwrap()["kind"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds.len(), 7, "{kinds:?}");
    }

    #[test]
    fn io_limits_hold_for_every_variant() {
        for notice in all() {
            for cf in [CF, ""] {
                let msg = render(cf, &notice);
                let subject = msg.subject.chars().count();
                let markdown = msg.markdown.chars().count();
                assert!(SUBJECT_CHARS.contains(&subject), "subject {subject} chars for {notice:?}");
                assert!(MARKDOWN_CHARS.contains(&markdown), "markdown {markdown} chars for {notice:?}");
                assert_eq!(msg.fiscal_code, cf);
            }
        }
    }

    #[test]
    fn field_budgets_keep_texts_whole() {
        // The final cut to 10 000 characters is a safety net only: the per-field budgets keep
        // every text (footer, CTA, complaint hint) whole.
        for notice in all() {
            let markdown = render(CF, &notice).markdown.chars().count();
            assert!(markdown < *MARKDOWN_CHARS.end(), "{markdown} chars for {notice:?}");
        }
    }

    #[test]
    fn full_ibans_are_never_rendered() {
        let mut notices = all();
        notices.push(Notice::PaymentFailed {
            award_period_id: 2,
            award_id: 1,
            amount_cents: 1,
            reason: Some(format!("IBAN {FULL_IBAN} chiuso")),
            iban_masked: Some(FULL_IBAN.into()),
        });
        notices.push(Notice::ComplaintUpdated {
            complaint_id: 1,
            status: FULL_IBAN.into(),
            note: Some(FULL_IBAN.into()),
        });
        for notice in notices {
            let msg = render(CF, &notice);
            assert!(!msg.markdown.contains("0542811101") && !msg.subject.contains("0542811101"), "{notice:?}");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        for notice in all() {
            assert_eq!(render(CF, &notice), render(CF, &notice));
        }
    }

    #[test]
    fn texts() {
        let [ended, award, not_eligible, executed, failed, iban_missing, complaint] =
            <[Notice; 7]>::try_from(ordinary()).unwrap();

        let m = render(CF, &ended);
        assert_eq!(m.subject, "Il secondo periodo del Cashback è terminato");
        assert!(m.markdown.contains("si è concluso il 30/06/2021"), "{}", m.markdown);
        assert!(m.markdown.contains("nei 60 giorni successivi, cioè fino al 29/08/2021"), "{}", m.markdown);

        let m = render(CF, &award);
        assert_eq!(m.subject, "Il tuo rimborso Cashback per il secondo periodo");
        assert!(m.markdown.contains("312 transazioni valide: hai diritto a un rimborso di **1.650,00 €**"));
        assert!(m.markdown.contains("- Super Cashback: 1.500,00 €\n- Posizione in classifica: 42\n"));
        assert!(!m.markdown.contains(IBAN_EDIT_CTA));
        let no_iban = Notice::AwardComputed {
            award_period_id: 2,
            award_id: 7,
            cashback_cents: 12_000,
            jackpot_cents: 0,
            amount_cents: 12_000,
            transactions: 80,
            rank: None,
            has_iban: false,
        };
        let m = render(CF, &no_iban);
        assert!(m.markdown.starts_with("---\nit:\n    cta_1:"), "{}", m.markdown);
        assert!(m.markdown.contains(IBAN_EDIT_CTA));
        assert!(!m.markdown.contains("Super Cashback") && !m.markdown.contains("classifica"));

        let m = render(CF, &not_eligible);
        assert_eq!(m.subject, "Esito del primo periodo del Cashback");
        assert!(m.markdown.contains("hai effettuato 1 transazione valida, ma"), "{}", m.markdown);
        assert!(m.markdown.contains("almeno 10.") && m.markdown.contains("cashback di 0,05 €"));

        let m = render(CF, &executed);
        assert_eq!(m.subject, "Rimborso Cashback del terzo periodo: bonifico eseguito");
        assert!(
            m.markdown.contains("**1.540,00 €**") && m.markdown.contains("sull'IBAN `IT60*******************3456`.")
        );
        assert!(m.markdown.contains("- Data di esecuzione: 10/08/2021\n- CRO: 0123456789\n"));

        let odd_iban = Notice::PaymentExecuted {
            award_period_id: 3,
            award_id: 9,
            amount_cents: 1,
            execution_date: None,
            cro: None,
            iban_masked: Some("`IT60 X054 2811 1010 0000 0123 456`".into()),
        };
        let m = render(CF, &odd_iban);
        assert!(m.markdown.contains("sull'IBAN `IT60*******************3456`."), "{}", m.markdown);

        let m = render(CF, &failed);
        assert_eq!(m.subject, "Rimborso Cashback del periodo n. 11: bonifico non riuscito");
        assert!(m.markdown.starts_with(IBAN_CTA_FRONT_MATTER));
        assert!(m.markdown.contains("action: \"ioit://CTA_BPD_IBAN_EDIT\""));
        assert!(m.markdown.contains("del Cashback non è andato a buon fine"), "technical account: no IBAN");
        assert!(m.markdown.contains("Motivo: IBAN non valido") && m.markdown.contains("reclamo a Consap"));

        let m = render(CF, &iban_missing);
        assert!(m.markdown.starts_with(IBAN_CTA_FRONT_MATTER) && m.markdown.contains("**150,00 €**"));

        let m = render(CF, &complaint);
        assert_eq!(m.subject, "Aggiornamento sul tuo reclamo Cashback");
        assert!(m.markdown.contains("reclamo n. 5 ") && m.markdown.contains("Stato: **accolto**"));
        assert!(!m.markdown.contains("Nota:"));
        let m = render(
            CF,
            &Notice::ComplaintUpdated {
                complaint_id: 5,
                status: "Da_integrare".into(),
                note: Some("manca *ricevuta*".into()),
            },
        );
        assert!(m.markdown.contains("Stato: **Da\\_integrare**") && m.markdown.contains("Nota: manca \\*ricevuta\\*"));
    }

    #[test]
    fn short_texts_are_padded_with_the_footer() {
        let m = render(CF, &Notice::ComplaintUpdated { complaint_id: 1, status: "closed".into(), note: None });
        assert!(m.markdown.ends_with(MARKDOWN_PAD), "{}", m.markdown);
    }

    #[test]
    fn message_debug_masks_the_fiscal_code() {
        let m = render(CF, &Notice::IbanMissing { award_period_id: 1, amount_cents: 1 });
        let dbg = format!("{m:?}");
        assert!(dbg.contains("RSSMRA**********") && !dbg.contains(CF), "{dbg}");
    }

    #[test]
    fn json_round_trip_and_shape() {
        for notice in all() {
            let json = serde_json::to_string(&notice).unwrap();
            assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), notice, "{json}");
        }
        let json = serde_json::to_value(Notice::PeriodEnded {
            award_period_id: 2,
            end: date!(2021 - 06 - 30),
            grace_days: 60,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "period_ended", "award_period_id": 2, "end": "2021-06-30", "grace_days": 60})
        );
        let executed: Notice = serde_json::from_str(
            r#"{"kind":"payment_executed","award_period_id":2,"award_id":1,"amount_cents":100,"cro":null,"iban_masked":null}"#,
        )
        .unwrap();
        assert!(matches!(executed, Notice::PaymentExecuted { execution_date: None, .. }));
        let executed: Notice = serde_json::from_str(
            r#"{"kind":"payment_executed","award_period_id":2,"award_id":1,"amount_cents":100,"execution_date":"2021-08-10","cro":null,"iban_masked":null}"#,
        )
        .unwrap();
        assert!(
            matches!(executed, Notice::PaymentExecuted { execution_date: Some(d), .. } if d == date!(2021 - 08 - 10))
        );
        assert!(
            serde_json::from_str::<Notice>(
                r#"{"kind":"period_ended","award_period_id":2,"end":"30/06/2021","grace_days":1}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<Notice>(r#"{"kind":"unknown"}"#).is_err());
    }
}
