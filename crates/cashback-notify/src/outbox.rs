//! The outbox payload of each notice the store queues (see `cashback_store::close`).

use cashback_store::NoticeFor;

use crate::{Notice, mask_iban};

/// The outbox payload of a notice: [`Notice`] as JSON. A plain function, as the store wants
/// ([`cashback_store::RenderNotice`]).
pub fn outbox_payload(n: NoticeFor<'_>) -> String {
    let notice = match n {
        NoticeFor::AwardComputed { period, award_id, award } => Notice::AwardComputed {
            award_period_id: period.id,
            award_id,
            cashback_cents: award.decision.cashback.cents(),
            jackpot_cents: award.decision.jackpot.cents(),
            amount_cents: award.decision.amount.cents(),
            transactions: award.decision.transactions,
            rank: award.decision.rank,
            has_iban: award.payoff.is_some(),
        },
        NoticeFor::NotEligible { period, row } => Notice::NotEligible {
            award_period_id: period.id,
            transactions: row.transactions,
            min_transactions: period.min_transaction_number,
            cashback_cents: row.cashback.cents(),
        },
        NoticeFor::Payment { award } => {
            let iban_masked =
                award.payoff.as_ref().filter(|p| p.technical_account_holder.is_none()).map(|p| mask_iban(&p.iban));
            match &award.outcome {
                Some(o) if o.executed => Notice::PaymentExecuted {
                    award_period_id: award.award_period_id,
                    award_id: award.award_id,
                    amount_cents: award.amount.cents(),
                    execution_date: o.execution_date,
                    cro: o.cro.clone(),
                    iban_masked,
                },
                o => Notice::PaymentFailed {
                    award_period_id: award.award_period_id,
                    award_id: award.award_id,
                    amount_cents: award.amount.cents(),
                    reason: o.as_ref().map(|o| o.reason.clone().unwrap_or_else(|| o.result.clone())),
                    iban_masked,
                },
            }
        }
        NoticeFor::IbanMissing { award } => {
            Notice::IbanMissing { award_period_id: award.award_period_id, amount_cents: award.amount.cents() }
        }
        NoticeFor::ComplaintDecided { complaint } => Notice::ComplaintUpdated {
            complaint_id: complaint.complaint_id,
            status: complaint.status.as_str().to_lowercase(),
            note: complaint.operator_note.clone(),
        },
    };
    serde_json::to_string(&notice).expect("a notice always serializes")
}
