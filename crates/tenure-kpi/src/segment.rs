//! Cuts: which segment an account belongs to for a period.

use tenure_core::time::{DAY, Period};
use tenure_ledger::AccountLedger;

/// What to cut by: any account attribute, or a derived dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum By {
    /// A user-defined attribute (segment, region, csm, ...), as set before the period end.
    Attribute(String),
    /// The plan of the account's largest line at the period start (at the end for accounts
    /// that were not customers at the start).
    Plan,
    /// Months since the account first paid, at the period start.
    TenureBand,
    /// Each account on its own (per-account upsell, cross-sell, churn...).
    Account,
}

impl By {
    pub fn parse(s: &str) -> By {
        match s {
            "plan" => By::Plan,
            "tenure_band" | "tenure" => By::TenureBand,
            "account" | "account_id" => By::Account,
            other => By::Attribute(other.strip_prefix("attributes.").unwrap_or(other).to_string()),
        }
    }

    /// The account's segment for the period: fixed for the whole period so that segment
    /// values always sum to the total.
    pub fn segment(&self, a: &AccountLedger, p: Period) -> Option<String> {
        match self {
            By::Attribute(k) => a.attribute_at(k, p.end).map(|v| v.label()),
            By::Plan => {
                let s = a
                    .state_before(p.start)
                    .filter(|s| s.customer)
                    .or_else(|| a.state_before(p.end));
                s.and_then(|s| s.plan.as_deref().map(str::to_string))
            }
            By::Account => Some(a.id.clone()),
            By::TenureBand => {
                let first = a.first_paid()?;
                if first >= p.start {
                    return Some("new".to_string());
                }
                let months = (p.start.0 - first.0) as f64 / (DAY as f64 * 365.25 / 12.0);
                Some(
                    match months {
                        m if m < 3.0 => "0-3m",
                        m if m < 6.0 => "3-6m",
                        m if m < 12.0 => "6-12m",
                        m if m < 24.0 => "12-24m",
                        _ => "24m+",
                    }
                    .to_string(),
                )
            }
        }
    }
}
