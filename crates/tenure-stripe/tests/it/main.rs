//! Stripe in, as a user's export gives it: one fixture per rule of docs/connectors.md
//! ("Stripe"), each with its MRR computed by hand in the test, and the webhook signature
//! checked against headers made by Stripe's official Node library.

mod rules;
mod signature;
mod webhook;

use serde_json::Value;
use tenure_stripe::{Export, Options, convert};

/// Day `d` of 2024-month `m`, 00:00 UTC, in Unix seconds.
pub fn day(m: u32, d: u32) -> i64 {
    let days_before: [i64; 12] = [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335];
    1_704_067_200 + (days_before[(m - 1) as usize] + d as i64 - 1) * 86_400
}

/// Converts objects (each a JSON value, one per line of a file `export.jsonl`). Every row
/// is checked to validate from its fields exactly as its JSON line does.
pub fn run(objects: &[Value], opts: &Options) -> tenure_stripe::Converted {
    let text = lines(objects);
    let mut ex = Export::default();
    ex.add_json("export.jsonl", &text);
    let c = convert(&ex, opts);
    same_from_fields_as_from_text(&c.rows);
    c
}

/// Objects as a file of one JSON object a line.
pub fn lines(objects: &[Value]) -> String {
    objects.iter().map(|o| o.to_string() + "\n").collect()
}

/// Rows are validated from their fields, without text: each must give the event (or the
/// rejection) its JSON line gives, with the default limits and with a line limit that some
/// rows exceed.
pub fn same_from_fields_as_from_text(rows: &[tenure_stripe::Row]) {
    let mut small = tenure_ingest::IngestConfig::defaults(None);
    small.max_line_bytes = 300;
    for cfg in [tenure_ingest::IngestConfig::defaults(None), small] {
        for r in rows {
            let text = tenure_ingest::parse_json_line(&r.json(), None, &cfg);
            if let tenure_stripe::RowEvent::Fields(f) = &r.event {
                let fields = f.validate(&cfg);
                assert_eq!(format!("{fields:?}"), format!("{text:?}"), "{}", r.json());
            }
        }
    }
}

/// The converted export as text: one line per event (subscription states, invoices,
/// accounts), then the problems and what was left out.
pub fn render(c: &tenure_stripe::Converted) -> String {
    let mut out = String::new();
    for r in &c.rows {
        let v: Value = serde_json::from_str(&r.json()).expect("rows are JSON");
        let g = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str().map(str::to_string).or(Some(x.to_string())))
                .filter(|s| s != "null")
        };
        let t = g("timestamp").unwrap_or_default();
        let line = match g("type").as_deref() {
            Some("subscription") => {
                let mut s = format!(
                    "{t} sub {} {} {} {}/{} x{}",
                    g("subscription_id").unwrap_or_default(),
                    g("status").unwrap_or_default(),
                    g("amount").unwrap_or_default(),
                    g("currency").unwrap_or_default(),
                    g("interval").unwrap_or_default(),
                    g("quantity").unwrap_or_default(),
                );
                if let Some(p) = g("plan") {
                    s += &format!(" plan={p}");
                }
                if let Some(c) = g("cancel_at") {
                    s += &format!(" cancel_at={c}");
                }
                if let Some(c) = g("cancel_reason") {
                    s += &format!(" reason={c}");
                }
                if let (Some(a), Some(b)) = (g("term_start"), g("term_end")) {
                    s += &format!(" term={a}..{b}");
                }
                if g("kind").as_deref() == Some("service") {
                    s += " service";
                }
                s
            }
            Some("invoice") => format!(
                "{t} invoice {} {} {} {}",
                g("invoice_id").unwrap_or_default(),
                g("status").unwrap_or_default(),
                g("amount").unwrap_or_default(),
                g("currency").unwrap_or_default()
            ),
            Some("account") => format!(
                "{t} account {} name={} attributes={}",
                g("account_id").unwrap_or_default(),
                g("name").unwrap_or_default(),
                v["attributes"]
            ),
            other => format!("{t} {other:?}"),
        };
        out += &format!("{line} [{}]\n", g("account_id").unwrap_or_default());
    }
    for p in &c.problems {
        out += &format!("problem: {p}\n");
    }
    for (what, n) in &c.skipped {
        out += &format!("left out: {n} {what}\n");
    }
    out
}

/// MRR of an item at `at` (minor units per month) from the converted subscription states,
/// by the contract: the last state at or before `at`; trialing, paused and canceled lines
/// are 0; the amount is per `interval`.
pub fn mrr(c: &tenure_stripe::Converted, item: &str, at: i64) -> i64 {
    let at = tenure_core::time::Timestamp::from_secs(at);
    let mut best: Option<(tenure_core::time::Timestamp, Value)> = None;
    for r in &c.rows {
        let v: Value = serde_json::from_str(&r.json()).expect("rows are JSON");
        if v["type"] != "subscription" || v["subscription_id"] != item {
            continue;
        }
        let t = tenure_core::time::Timestamp::parse(v["timestamp"].as_str().unwrap()).unwrap();
        if t <= at && best.as_ref().is_none_or(|(b, _)| t >= *b) {
            best = Some((t, v));
        }
    }
    let Some((_, v)) = best else { return 0 };
    if !matches!(v["status"].as_str(), Some("active" | "past_due")) {
        return 0;
    }
    let cur = tenure_core::money::Currency::parse(v["currency"].as_str().unwrap()).unwrap();
    let minor = tenure_core::money::parse_minor(v["amount"].as_str().unwrap(), cur).unwrap();
    let months = match v["interval"].as_str().unwrap() {
        "month" => 1,
        "quarter" => 3,
        "year" => 12,
        n => n.trim_end_matches('m').parse().unwrap(),
    };
    minor / months
}
