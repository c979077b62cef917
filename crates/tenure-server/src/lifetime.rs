//! Each account's lifetime value from its paid invoices (BG/NBD + Gamma-Gamma, as `tenure
//! clv --model bgnbd` computes it), remade by the forecaster thread on its schedule and
//! kept in memory for the account API and page.

use std::collections::HashMap;
use tenure_core::time::Timestamp;
use tenure_health::bgnbd::{Options, Periods, Scored, Summary};

/// Months the values look ahead, and the annual discount rate (monthly, compounded).
pub const HORIZON_MONTHS: u32 = 12;
pub const ANNUAL_DISCOUNT: f64 = 0.10;

/// The latest values: when they were made and each account's.
#[derive(Debug)]
pub struct Values {
    pub made_at: Timestamp,
    pub horizon_months: u32,
    pub accounts: HashMap<String, (u64, f64, f64, Scored)>,
}

/// The options of the service's values.
pub fn options() -> Options {
    Options {
        periods: Periods::Day,
        horizon_months: HORIZON_MONTHS,
        monthly_discount: tenure_health::bgnbd::monthly_discount(ANNUAL_DISCOUNT),
    }
}

/// Every account's values from their summaries (made under the live state's read lock:
/// a copy of the ledger would double the service's memory) as of `end`.
pub fn compute(sums: Vec<Summary>, end: Timestamp) -> Result<Values, String> {
    let r = tenure_health::bgnbd::value_of(sums, end, &options()).map_err(|e| e.to_string())?;
    let accounts = r
        .accounts
        .into_iter()
        .map(|a| {
            let f = a.summary.rfm();
            (a.summary.account, (f.frequency as u64, f.recency, f.t, a.scored))
        })
        .collect();
    Ok(Values { made_at: r.end, horizon_months: HORIZON_MONTHS, accounts })
}

/// An account's values as the API shows them (`null` without any); money in the base
/// currency's major units (`exponent` decimals).
pub fn json(v: Option<&Values>, account: &str, exponent: u32) -> serde_json::Value {
    let Some((v, (frequency, recency, age, s))) =
        v.and_then(|v| v.accounts.get(account).map(|a| (v, a)))
    else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "model": "bgnbd",
        "as_of": v.made_at.to_string(),
        "horizon_months": v.horizon_months,
        "repeat_payments": frequency,
        "recency_days": recency,
        "age_days": age,
        "p_alive": s.p_alive,
        "expected_payments": s.expected_transactions,
        "expected_payment_value": s.expected_value.map(|x| x / 10f64.powi(exponent as i32)),
        "clv": s.clv.map(|x| x / 10f64.powi(exponent as i32)),
    })
}
