//! The renewal forecast the service shows: the forecasts `tenure forecast --save` wrote to
//! DATA/models/forecast.json (read again when the file changes), with the calls CSMs have
//! made since (`forecast_override` events) applied from the live ledger; and the calls
//! themselves, recorded under the name of the key that makes them.

use crate::api::{bad, live_read};
use crate::{ApiError, AppState, store};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::SystemTime;
use tenure_health::forecast::Forecast;

/// What the saved file holds, parsed.
pub struct Saved {
    pub made_at: String,
    /// This quarter's and the next one's forecasts, as made at `made_at`.
    pub quarters: Vec<Forecast>,
    /// The backtest's JSON (`null` when there was no past quarter to test).
    pub backtest: Value,
}

/// The parsed file, by its modification time.
pub type Cache = std::sync::Mutex<Option<(SystemTime, Arc<Saved>)>>;

/// The saved forecasts; `None` when `tenure forecast --save` has not run.
pub fn saved(s: &AppState) -> Result<Option<Arc<Saved>>, ApiError> {
    let path = s.0.data.join("models").join("forecast.json");
    let Ok(mtime) = std::fs::metadata(&path).and_then(|m| m.modified()) else {
        return Ok(None);
    };
    let cache = &s.0.core.forecast_cache;
    if let Ok(c) = cache.lock()
        && let Some((t, saved)) = c.as_ref()
        && *t == mtime
    {
        return Ok(Some(saved.clone()));
    }
    let broken = |why: String| {
        ApiError::new(
            "internal",
            format!("{}: {why}; run `tenure forecast --save` again", path.display()),
        )
    };
    let text = std::fs::read_to_string(&path).map_err(|e| broken(e.to_string()))?;
    let j: Value = serde_json::from_str(&text).map_err(|e| broken(e.to_string()))?;
    let cur = live_read(s)?.cfg.revenue.fx.base;
    let quarters = j["quarters"]
        .as_array()
        .ok_or_else(|| broken("no quarters".into()))?
        .iter()
        .map(|q| tenure_report::forecast::forecast_from_json(q, cur))
        .collect::<Option<Vec<Forecast>>>()
        .ok_or_else(|| broken("a forecast could not be read".into()))?;
    let saved = Arc::new(Saved {
        made_at: j["made_at"].as_str().unwrap_or_default().to_string(),
        quarters,
        backtest: j["backtest"].clone(),
    });
    if let Ok(mut c) = cache.lock() {
        *c = Some((mtime, saved.clone()));
    }
    Ok(Some(saved))
}

/// The part of a forecast (with its calls applied) in a caller's book: its renewals, and
/// totals of those alone (the interval of a book is not a share of the whole's).
pub fn in_book(
    s: &AppState,
    who: &crate::users::Principal,
    live: &crate::live::Live,
    mut f: Forecast,
) -> Forecast {
    if who.is_all() {
        return f;
    }
    f.items.retain(|i| live.ledger.account(&i.account).is_some_and(|a| s.sees(who, a, live.t)));
    let refs: Vec<&tenure_health::forecast::Item> = f.items.iter().collect();
    f.model = tenure_health::forecast::totals(&refs, f.level, false, &f.spread);
    f.called = tenure_health::forecast::totals(&refs, f.level, true, &f.spread);
    f
}

/// The saved forecast of the quarter labelled `period` (e.g. `2027-Q1`; `None`: the first
/// saved) with the calls known now applied. `Err` names the quarters there are.
pub fn quarter(s: &AppState, period: Option<&str>) -> Result<Forecast, ApiError> {
    let Some(saved) = saved(s)? else {
        return Err(ApiError::new(
            "not_found",
            "no forecast saved: run `tenure forecast --save` (daily, say) on the data directory",
        ));
    };
    let label = |f: &Forecast| tenure_core::time::PeriodUnit::Quarter.label(f.period.start);
    let f = match period {
        None => saved.quarters.first(),
        Some(p) => saved.quarters.iter().find(|f| label(f) == p),
    }
    .ok_or_else(|| {
        let have: Vec<String> = saved.quarters.iter().map(label).collect();
        ApiError::new(
            "not_found",
            format!(
                "no forecast saved for {}: the saved ones are {} (the CLI forecasts any period)",
                period.unwrap_or("this quarter"),
                have.join(", ")
            ),
        )
    })?;
    let live = live_read(s)?;
    Ok(f.clone().with_overrides(&live.ledger))
}

/// Records a CSM's call on an account's renewal: category (commit | probable | at_risk),
/// optional `amount` (ARR expected back, in the base currency), `subscription_id` (else
/// every contract of the account) and `reason`. The author is the key's name.
pub async fn record_call(
    s: &AppState,
    account: &str,
    fields: &Map<String, Value>,
    author: &str,
    who: &crate::users::Principal,
) -> Result<Value, ApiError> {
    const FIELDS: &[&str] = &["category", "amount", "subscription_id", "reason"];
    if fields.contains_key("author") {
        return Err(bad(
            "author: a call is recorded under the name of the API key that makes it; the field cannot be set",
        ));
    }
    if let Some(k) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(format!("{k}: unknown field ({})", FIELDS.join(", "))));
    }
    // An amount is a decimal string: a JSON number cannot carry every amount exactly.
    if fields.get("amount").is_some_and(|a| !a.is_string() && !a.is_null()) {
        return Err(bad(
            "amount: send the ARR expected back as a decimal string, e.g. \"12000.00\"",
        ));
    }
    // An account outside the caller's book is as unknown as one that does not exist.
    let known = {
        let live = live_read(s)?;
        live.ledger.account(account).is_some_and(|a| s.sees(who, a, live.t))
    };
    if !known {
        return Err(ApiError::new("not_found", format!("no account {account:?}")));
    }
    let now = (s.0.clock)();
    let mut line =
        json!({"type": "forecast_override", "timestamp": now.to_string(), "account_id": account});
    for (k, v) in fields.iter().filter(|(_, v)| !v.is_null()) {
        line[k] = v.clone();
    }
    line["author"] = json!(author);
    let e = tenure_ingest::parse_json_line(&line.to_string(), None, &s.0.ingest)
        .map_err(|e| bad(format!("{}: {}", e.field.unwrap_or_default(), e.reason)))?;
    store(s, vec![e]).await?;
    Ok(line)
}
