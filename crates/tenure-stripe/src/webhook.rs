//! Stripe webhooks: the `Stripe-Signature` header verified as Stripe documents it, and each
//! event mapped to contract events keyed by the Stripe event, so that retries are stored
//! once and the event's `created` instant orders deliveries that arrive out of order.

use crate::history::{Options, State, cancel_reason, item_state, money, ts};
use crate::objects::{Customer, DiscountRef, Event, Invoice, Subscription};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// Stripe's libraries accept a signature this many seconds old by default.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp (t=) or no v1 signature")]
    Malformed,
    #[error("no v1 signature matches the payload with the configured signing secret")]
    NoMatch,
    #[error("the signature's timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
}

/// Checks `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=HEX...]`: HMAC-SHA256 of
/// `TIMESTAMP.BODY` under the endpoint's signing secret, any `v1` matching (Stripe sends
/// several while a secret is rolled), compared in constant time; and the timestamp within
/// `tolerance_secs` of `now_secs`, so that a captured request cannot be replayed later.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t: Option<i64> = None;
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else { continue };
        match k {
            "t" => t = v.parse().ok(),
            "v1" => {
                if let Some(b) = hex(v) {
                    sigs.push(b);
                }
            }
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matched = sigs.iter().any(|sig| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    let age = now_secs.saturating_sub(t);
    if age.abs() > tolerance_secs {
        return Err(SignatureError::Stale(age));
    }
    Ok(())
}

/// The signature header Stripe would send for `body` at `t` (for tests and `tenure gen`).
pub fn sign(body: &[u8], secret: &str, t: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// What one event becomes: contract events (as JSON objects), or nothing for a type Tenure
/// does not use (the reason is the `Err`'s text only when the event cannot be read).
#[derive(Debug, Default)]
pub struct Mapped {
    pub events: Vec<Value>,
    /// The event's type is not one Tenure maps; it is acknowledged and dropped.
    pub ignored: bool,
}

fn account_in(metadata: &crate::objects::Metadata<'_>, customer: &str, opts: &Options) -> String {
    opts.account_key
        .as_ref()
        .and_then(|k| metadata.get(k.as_str()))
        .filter(|v| !v.trim().is_empty())
        .map_or_else(|| customer.to_string(), |v| v.to_string())
}

/// Maps one Stripe event. Every contract event gets the `message_id`
/// `stripe:EVENT_ID:N`, so a retried delivery is acknowledged and not stored twice.
pub fn map_event(ev: &Event, opts: &Options) -> Result<Mapped, String> {
    let obj = &ev.data.object;
    let mut out = Mapped::default();
    let t = ev.created;
    let kind = ev.kind.as_str();
    let parse_err = |what: &str, e: serde_json::Error| format!("data.object is not {what}: {e}");
    if let Some(rest) = kind.strip_prefix("customer.subscription.") {
        let s: Subscription<'_> =
            Subscription::deserialize(obj).map_err(|e| parse_err("a subscription", e))?;
        let _ = rest;
        out.events = subscription_events(&s, t, &ev.id, opts)?;
        return Ok(out);
    }
    match kind {
        "customer.created" | "customer.updated" => {
            let c: Customer<'_> =
                Customer::deserialize(obj).map_err(|e| parse_err("a customer", e))?;
            let mut o = Map::new();
            o.insert("type".into(), json!("account"));
            o.insert("timestamp".into(), json!(ts(t)));
            o.insert("account_id".into(), json!(crate::history::account_of(&c, opts)));
            o.insert("message_id".into(), json!(format!("stripe:{}:0", ev.id)));
            if let Some(n) = c.name.as_ref().or(c.description.as_ref()).filter(|n| !n.is_empty()) {
                o.insert("name".into(), json!(n));
            }
            let mut attrs = Map::new();
            attrs.insert("stripe_customer_id".into(), json!(c.id));
            for (k, v) in &c.metadata {
                attrs.insert(k.to_string(), json!(v));
            }
            o.insert("attributes".into(), Value::Object(attrs));
            out.events.push(Value::Object(o));
        }
        "invoice.paid" | "invoice.payment_succeeded" | "invoice.payment_failed" => {
            let inv: Invoice<'_> =
                Invoice::deserialize(obj).map_err(|e| parse_err("an invoice", e))?;
            let amount = inv.total_excluding_tax.or(inv.subtotal).or(inv.total).unwrap_or(0);
            if amount > 0 {
                let currency = inv.currency.as_deref().unwrap_or("usd");
                let (amount, currency) =
                    money(amount, currency).ok_or(format!("unknown currency {currency:?}"))?;
                let failed = kind == "invoice.payment_failed";
                let status = if failed { "failed" } else { "paid" };
                let at = if failed { t } else { inv.status_transitions.paid_at.unwrap_or(t) };
                let mut o = Map::new();
                o.insert("type".into(), json!("invoice"));
                o.insert("timestamp".into(), json!(ts(at)));
                o.insert("account_id".into(), json!(inv.customer.0));
                // The invoice's own key, as a history import gives it: one paid and one
                // failed event per invoice however often Stripe retries.
                o.insert("message_id".into(), json!(format!("stripe:{}:{status}", inv.id)));
                o.insert("invoice_id".into(), json!(inv.id));
                o.insert("amount".into(), json!(amount));
                o.insert("currency".into(), json!(currency));
                o.insert("status".into(), json!(status));
                let s = inv.lines.data.iter().map(|l| l.period.start).min();
                let e = inv.lines.data.iter().map(|l| l.period.end).max();
                if let (Some(s), Some(e)) = (s, e)
                    && e > s
                {
                    o.insert("period_start".into(), json!(ts(s)));
                    o.insert("period_end".into(), json!(ts(e)));
                }
                out.events.push(Value::Object(o));
            }
        }
        "credit_note.created" => {
            let cn = crate::objects::CreditNote::deserialize(obj)
                .map_err(|e| parse_err("a credit note", e))?;
            let Some(customer) = cn.customer.as_ref() else {
                return Err("the credit note names no customer".into());
            };
            let amount = cn.total_excluding_tax.or(cn.subtotal_excluding_tax).unwrap_or(cn.amount);
            let currency = cn.currency.as_deref().unwrap_or("usd");
            let (amount, currency) =
                money(amount, currency).ok_or(format!("unknown currency {currency:?}"))?;
            out.events.push(json!({
                "type": "invoice", "timestamp": ts(cn.created), "account_id": customer.0,
                "message_id": format!("stripe:{}", cn.id), "invoice_id": cn.invoice.0,
                "amount": amount, "currency": currency, "status": "refunded",
            }));
        }
        "charge.refunded" => {
            #[derive(serde::Deserialize)]
            struct Charge<'a> {
                id: String,
                #[serde(borrow)]
                customer: Option<crate::objects::Id<'a>>,
                #[serde(borrow)]
                invoice: Option<crate::objects::Id<'a>>,
                amount_refunded: i64,
                currency: String,
            }
            let c = Charge::deserialize(obj).map_err(|e| parse_err("a charge", e))?;
            let Some(customer) = c.customer else {
                out.ignored = true;
                return Ok(out);
            };
            let (amount, currency) = money(c.amount_refunded, &c.currency)
                .ok_or(format!("unknown currency {:?}", c.currency))?;
            let invoice = c.invoice.map_or(c.id.clone(), |i| i.0.to_string());
            out.events.push(json!({
                "type": "invoice", "timestamp": ts(t), "account_id": customer.0,
                "message_id": format!("stripe:{}:0", ev.id), "invoice_id": invoice,
                "amount": amount, "currency": currency, "status": "refunded",
            }));
        }
        _ => out.ignored = true,
    }
    Ok(out)
}

/// A subscription snapshot at `t`: one subscription event per item with the state it gives.
fn subscription_events(
    s: &Subscription<'_>,
    t: i64,
    evt: &str,
    opts: &Options,
) -> Result<Vec<Value>, String> {
    if s.status.starts_with("incomplete") {
        return Ok(Vec::new());
    }
    let account = account_in(&s.metadata, &s.customer.0, opts);
    let (pct, off) = recurring_discount(s);
    let mut out = Vec::new();
    for (n, it) in s.items.data.iter().enumerate() {
        let Some(p) = it.price() else { return Err(format!("item {} has no price", it.id)) };
        let Some(mut st) = item_state(opts, p, it.quantity.unwrap_or(1), s)? else { continue };
        st.amount = (st.amount - st.amount * pct / 10_000 - if n == 0 { off } else { 0 }).max(0);
        let paused = s.pause_collection.as_ref().is_some_and(|p| p.behavior.is_some());
        st.status = match s.status.as_str() {
            "trialing" => "trialing",
            "past_due" | "unpaid" => "past_due",
            "paused" => "paused",
            "canceled" => "canceled",
            _ if paused => "paused",
            _ => "active",
        };
        let at = if st.status == "canceled" { s.ended_at.unwrap_or(t) } else { t };
        if st.status == "canceled" {
            st.cancel_reason = cancel_reason(s);
        } else {
            let period_end = it.current_period_end.or(s.current_period_end);
            st.cancel_at = s.cancel_at.or(if s.cancel_at_period_end { period_end } else { None });
        }
        if st.months >= 12
            && let (Some(a), Some(b)) = (
                it.current_period_start.or(s.current_period_start),
                it.current_period_end.or(s.current_period_end),
            )
        {
            st.term = Some((a, b));
        }
        let mut v = st_json(&st, at, &account, &it.id)?;
        v["message_id"] = json!(format!("stripe:{evt}:{n}"));
        out.push(v);
    }
    Ok(out)
}

fn st_json(st: &State, at: i64, account: &str, item: &str) -> Result<Value, String> {
    st.to_json(at, account, item).ok_or_else(|| format!("unknown currency {:?}", st.currency))
}

/// The subscription's expanded discounts that keep applying: percent off (in hundredths of
/// a percent) and amount off (minor units, taken off the first item).
fn recurring_discount(s: &Subscription<'_>) -> (i64, i64) {
    let mut pct = 0i64;
    let mut off = 0i64;
    for d in &s.discounts {
        if let DiscountRef::Discount(d) = d
            && let Some(c) = d.coupon()
            && c.duration.as_deref() != Some("once")
        {
            if let Some(p) = c.percent_off {
                pct += (p * 100.0).round() as i64;
            }
            if let Some(a) = c.amount_off {
                off += a;
            }
        }
    }
    (pct.min(10_000), off)
}
