//! A company's revenue events written out as the Stripe objects Stripe would hold for it
//! (`tenure gen --format stripe`): a customer per account, a subscription per line and
//! life (a canceled line that comes back is a new subscription, as in Stripe), a cycle
//! invoice per billing period (void while collection is paused, with failed attempts where
//! a payment failed), an invoice with proration lines for each mid-period change, prices,
//! and credit notes for refunds. Half the customers get the API shape before 2025-03-31 and
//! half the newer one, so an import of the output exercises both.

use rustc_hash::FxHashMap;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use tenure_core::event::{AttrValue, Event, EventBody, InvoiceStatus, SubStatus, Subscription};
use tenure_core::time::Timestamp;

/// The objects, one JSON line each, by file.
#[derive(Debug, Default)]
pub struct Objects {
    pub customers: Vec<String>,
    pub subscriptions: Vec<String>,
    pub invoices: Vec<String>,
    pub credit_notes: Vec<String>,
    pub prices: Vec<String>,
}

/// The metadata key under which each customer carries its Tenure account id; import with
/// `--account-key tenure_account_id` to keep the generated ids.
pub const ACCOUNT_KEY: &str = "tenure_account_id";

fn secs(t: Timestamp) -> i64 {
    t.secs()
}

fn add_months(t: i64, m: i64) -> i64 {
    Timestamp::from_secs(t).add_months(m).secs()
}

fn lower(c: &tenure_core::money::Currency) -> String {
    c.to_string().to_ascii_lowercase()
}

/// Writes one account's events (any order) as Stripe objects. `horizon`: the end of the
/// generated history; no invoice is created at or after it.
pub fn account_objects(
    account: &str,
    num: u64,
    events: &[Event],
    horizon: i64,
    prices: &mut BTreeMap<String, String>,
    out: &mut Objects,
) {
    let newer = num.is_multiple_of(2);
    let cus = format!("cus_{num:08}");
    let mut evs: Vec<&Event> = events.iter().collect();
    evs.sort_by_key(|e| e.ts);
    // The customer: created with the first account event, metadata = latest attributes.
    let mut created = None;
    let mut name = None;
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    meta.insert(ACCOUNT_KEY.into(), account.into());
    for e in &evs {
        if let EventBody::Account { name: n, attributes } = &e.body {
            created.get_or_insert(secs(e.ts));
            if n.is_some() {
                name = n.clone();
            }
            for (k, v) in attributes {
                let v = match v {
                    AttrValue::Str(s) | AttrValue::Num(s) => s.clone(),
                    AttrValue::Bool(b) => b.to_string(),
                };
                meta.insert(k.clone(), v);
            }
        }
    }
    let first_ts = evs.first().map_or(0, |e| secs(e.ts));
    out.customers.push(
        json!({"id": cus, "object": "customer", "created": created.unwrap_or(first_ts),
               "name": name, "email": null, "metadata": meta, "livemode": false})
        .to_string(),
    );
    // Native invoices: failures by period start, payments and refunds by invoice id.
    let mut failed_at: FxHashMap<(i64, i64), (String, i64)> = FxHashMap::default();
    let mut paid: FxHashMap<&str, i64> = FxHashMap::default();
    let mut refunds: Vec<(&str, i64, i64)> = Vec::new();
    let mut native_period: FxHashMap<&str, (i64, i64)> = FxHashMap::default();
    for e in &evs {
        if let EventBody::Invoice { invoice_id, amount, status, period_start, .. } = &e.body {
            let ps = period_start.map_or(secs(e.ts), secs);
            match status {
                InvoiceStatus::Failed => {
                    failed_at.entry((ps, amount.minor)).or_insert((invoice_id.clone(), secs(e.ts)));
                }
                InvoiceStatus::Paid => {
                    paid.entry(invoice_id).or_insert(secs(e.ts));
                    native_period.entry(invoice_id).or_insert((ps, amount.minor));
                }
                InvoiceStatus::Refunded => refunds.push((invoice_id, secs(e.ts), amount.minor)),
            }
        }
    }
    // Lines: each subscription id's states, the last per instant.
    let mut lines: BTreeMap<&str, Vec<(i64, &Subscription)>> = BTreeMap::new();
    for e in &evs {
        if let EventBody::Subscription(s) = &e.body {
            let v = lines.entry(&s.subscription_id).or_default();
            let t = secs(e.ts);
            if v.last().is_some_and(|(lt, _)| *lt == t) {
                v.pop();
            }
            v.push((t, s));
        }
    }
    let mut inv_n = 0u64;
    // Stripe invoice id and amount by (line period start, amount), for refunds.
    let mut by_period: FxHashMap<(i64, i64), String> = FxHashMap::default();
    let mut w = Writer {
        cus: &cus,
        newer,
        horizon,
        inv_n: &mut inv_n,
        out,
        prices,
        by_period: &mut by_period,
    };
    // Lives of the account: from a first state while no line is live to the moment every
    // line that started has ended; each is one Stripe subscription, its lines its items.
    let mut all: Vec<(i64, &str, &Subscription)> = Vec::new();
    for (id, states) in &lines {
        for (t, st) in states {
            all.push((*t, id, st));
        }
    }
    all.sort_by_key(|(t, id, _)| (*t, *id));
    let mut live: BTreeMap<&str, bool> = BTreeMap::new();
    let mut life_events: Vec<(i64, &str, &Subscription)> = Vec::new();
    let mut life = 0;
    for (i, &(t, id, st)) in all.iter().enumerate() {
        life_events.push((t, id, st));
        live.insert(id, st.status != SubStatus::Canceled);
        let next_same_t = all.get(i + 1).is_some_and(|n| n.0 == t);
        if (!live.values().any(|&l| l) && !next_same_t) || i + 1 == all.len() {
            if life_events.iter().any(|(_, _, s)| s.status != SubStatus::Canceled) {
                life += 1;
                let mut items: BTreeMap<&str, Vec<(i64, &Subscription)>> = BTreeMap::new();
                for (t, id, s) in &life_events {
                    items.entry(id).or_default().push((*t, s));
                }
                let items: Vec<(&str, Vec<(i64, &Subscription)>)> = items.into_iter().collect();
                w.life(life, &items, &failed_at, &paid);
            }
            life_events.clear();
            live.clear();
        }
    }
    for (native, at, amount) in refunds {
        let Some(&(ps, amt)) = native_period.get(native) else { continue };
        let Some(inv) = by_period.get(&(ps, amt)) else { continue };
        let _ = amount;
        out.credit_notes.push(
            json!({"id": format!("cn_{}_{}", &inv[3..], out.credit_notes.len() + 1), "object": "credit_note", "invoice": inv,
                   "customer": cus, "created": at, "amount": amt, "total_excluding_tax": amt,
                   "currency": null, "status": "issued", "type": "post_payment"})
            .to_string(),
        );
    }
}

/// A line's state in effect at `t`.
fn state_at<'s>(v: &[(i64, &'s Subscription)], t: i64) -> Option<&'s Subscription> {
    v.iter().rev().find(|(st, _)| *st <= t).map(|(_, s)| *s)
}

struct Writer<'a> {
    cus: &'a str,
    newer: bool,
    horizon: i64,
    inv_n: &'a mut u64,
    out: &'a mut Objects,
    prices: &'a mut BTreeMap<String, String>,
    by_period: &'a mut FxHashMap<(i64, i64), String>,
}

/// A line's commercial terms.
#[derive(Clone, PartialEq)]
struct Terms {
    price: String,
    qty: u64,
    amount: i64,
}

impl Writer<'_> {
    fn price(&mut self, s: &Subscription) -> Terms {
        // Per seat when the amount divides evenly, else the whole line as one unit.
        let (unit, qty) = if s.quantity > 0 && s.amount.minor % s.quantity as i64 == 0 {
            (s.amount.minor / s.quantity as i64, s.quantity)
        } else {
            (s.amount.minor, 1)
        };
        let cur = lower(&s.amount.currency);
        let (interval, count) = match s.interval_months {
            12 => ("year", 1),
            m if m % 12 == 0 => ("year", m / 12),
            m => ("month", m),
        };
        let product = s.product.clone().unwrap_or_else(|| "product".into());
        let plan = s.plan.clone().unwrap_or_else(|| "standard".into());
        let id = format!("price_{product}_{plan}_{interval}{count}_{unit}_{cur}");
        if !self.prices.contains_key(&id) {
            let mut meta = Map::new();
            if s.kind == tenure_core::event::LineKind::Service {
                meta.insert("tenure_kind".into(), json!("service"));
            }
            let p = json!({"id": id, "object": "price", "product": product, "nickname": plan,
                "unit_amount": unit, "currency": cur, "billing_scheme": "per_unit", "type": "recurring",
                "recurring": {"interval": interval, "interval_count": count, "usage_type": "licensed"},
                "metadata": meta});
            self.prices.insert(id.clone(), p.to_string());
        }
        Terms { price: id, qty, amount: s.amount.minor }
    }

    fn price_json(&self, id: &str) -> Value {
        serde_json::from_str(&self.prices[id]).unwrap_or(Value::Null)
    }

    fn next_invoice(&mut self) -> String {
        *self.inv_n += 1;
        format!("in_{}_{:05}", &self.cus[4..], self.inv_n)
    }

    #[allow(clippy::too_many_arguments)]
    fn line_json(
        &self,
        id: &str,
        sub: &str,
        item: &str,
        t: &Terms,
        amount: i64,
        period: (i64, i64),
        proration: bool,
    ) -> Value {
        let cur = self.price_json(&t.price)["currency"].clone();
        if self.newer {
            json!({"id": id, "object": "line_item", "amount": amount, "currency": cur,
                "period": {"start": period.0, "end": period.1}, "quantity": t.qty,
                "discount_amounts": [], "taxes": [],
                "parent": {"type": "subscription_item_details", "subscription_item_details":
                    {"subscription": sub, "subscription_item": item, "proration": proration}},
                "pricing": {"type": "price_details", "price_details": {"price": t.price,
                    "product": self.price_json(&t.price)["product"]}}})
        } else {
            json!({"id": id, "object": "line_item", "amount": amount, "currency": cur,
                "period": {"start": period.0, "end": period.1}, "quantity": t.qty,
                "discount_amounts": [], "proration": proration, "type": "subscription",
                "subscription": sub, "subscription_item": item, "price": self.price_json(&t.price)})
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invoice(
        &mut self,
        sub: &str,
        created: i64,
        reason: &str,
        status: &str,
        attempts: u32,
        paid_at: Option<i64>,
        lines: Vec<Value>,
        currency: &Value,
    ) -> String {
        let id = self.next_invoice();
        let total: i64 = lines.iter().map(|l| l["amount"].as_i64().unwrap_or(0)).sum();
        let mut o = json!({"id": id, "object": "invoice", "customer": self.cus, "created": created,
            "status": status, "currency": currency, "billing_reason": reason, "attempt_count": attempts,
            "subtotal": total, "total": total, "total_excluding_tax": total,
            "amount_paid": if status == "paid" { total.max(0) } else { 0 },
            "status_transitions": {"finalized_at": created, "paid_at": paid_at,
                "voided_at": if status == "void" { Some(created) } else { None }},
            "lines": {"object": "list", "data": lines, "has_more": false}});
        if self.newer {
            o["parent"] = json!({"type": "subscription_details", "subscription_details": {"subscription": sub}});
        } else {
            o["subscription"] = json!(sub);
        }
        self.out.invoices.push(o.to_string());
        id
    }

    /// One life of an account: one subscription whose items are its lines, from its first
    /// state to the end of its last line (or the horizon).
    fn life(
        &mut self,
        life: u32,
        items: &[(&str, Vec<(i64, &Subscription)>)],
        failed: &FxHashMap<(i64, i64), (String, i64)>,
        paid: &FxHashMap<&str, i64>,
    ) {
        let sub = format!("sub_{}_{life}", &self.cus[4..]);
        let item_id = |line: &str| format!("si_{}_{life}", line.replace('-', "_"));
        let first = items.iter().map(|(_, v)| v[0].0).min().unwrap_or(0);
        let (lead_line, lead) = items
            .iter()
            .find(|(_, v)| v[0].0 == first)
            .map(|(l, v)| (*l, v))
            .expect("a life has lines");
        let ended = items
            .iter()
            .all(|(_, v)| v.last().is_some_and(|(_, s)| s.status == SubStatus::Canceled));
        let end = ended
            .then(|| items.iter().map(|(_, v)| v.last().map_or(0, |x| x.0)).max().unwrap_or(0));
        let trial_end = (lead[0].1.status == SubStatus::Trialing)
            .then(|| lead.iter().find(|(_, s)| s.status != SubStatus::Trialing).map(|(t, _)| *t))
            .flatten();
        let anchor = trial_end.unwrap_or(first);
        let months = lead[0].1.interval_months.max(1) as i64;
        let currency = json!(lower(&lead[0].1.amount.currency));
        let stop = end.unwrap_or(i64::MAX).min(self.horizon);
        if let Some(te) = trial_end {
            let t = self.price(lead[0].1);
            let l = self.line_json(
                &format!("il_{}_trial", item_id(lead_line)),
                &sub,
                &item_id(lead_line),
                &t,
                0,
                (first, te),
                false,
            );
            self.invoice(
                &sub,
                first,
                "subscription_create",
                "paid",
                0,
                Some(first),
                vec![l],
                &currency,
            );
        }
        let mut p = anchor;
        let mut k = 0;
        let mut last_period = (anchor, add_months(anchor, months));
        let mut current: BTreeMap<&str, Terms> = BTreeMap::new();
        while p < stop {
            let next = add_months(p, months);
            last_period = (p, next);
            // The cycle invoice: a line per item in effect at the period's start.
            let mut lines = Vec::new();
            let mut all_paused = true;
            let mut failure: Option<Option<i64>> = None;
            let mut amounts = Vec::new();
            current.clear();
            for (line, v) in items {
                let Some(s) = state_at(v, p) else { continue };
                if s.status == SubStatus::Canceled {
                    continue;
                }
                let t = self.price(s);
                all_paused &= s.status == SubStatus::Paused;
                if let Some((native, _)) = failed.get(&(p, t.amount)) {
                    failure = Some(paid.get(native.as_str()).copied());
                }
                let id = item_id(line);
                lines.push(self.line_json(
                    &format!("il_{id}_{k}"),
                    &sub,
                    &id,
                    &t,
                    t.amount,
                    (p, next),
                    false,
                ));
                amounts.push(t.amount);
                current.insert(line, t);
            }
            if !lines.is_empty() {
                let reason = if k == 0 && trial_end.is_none() {
                    "subscription_create"
                } else {
                    "subscription_cycle"
                };
                let id = if all_paused {
                    self.invoice(&sub, p, reason, "void", 0, None, lines, &currency)
                } else {
                    match failure {
                        Some(Some(at)) => {
                            self.invoice(&sub, p, reason, "paid", 2, Some(at), lines, &currency)
                        }
                        Some(None) => self.invoice(
                            &sub,
                            p,
                            reason,
                            "uncollectible",
                            4,
                            None,
                            lines,
                            &currency,
                        ),
                        None => self.invoice(&sub, p, reason, "paid", 1, Some(p), lines, &currency),
                    }
                };
                for a in amounts {
                    self.by_period.insert((p, a), id.clone());
                }
            }
            // Changes inside the period: items added, changed or removed.
            let mut changes: Vec<(i64, &str, &Subscription)> = Vec::new();
            for (line, v) in items {
                for (ct, cs) in v.iter().filter(|(ct, _)| *ct > p && *ct < next && *ct < stop) {
                    changes.push((*ct, line, cs));
                }
            }
            changes.sort_by_key(|(t, l, _)| (*t, *l));
            let mut j = 0;
            while j < changes.len() {
                let ct = changes[j].0;
                let mut plines = Vec::new();
                while j < changes.len() && changes[j].0 == ct {
                    let (_, line, cs) = changes[j];
                    j += 1;
                    let frac = |a: i64| -> i64 {
                        let v = a as i128 * (next - ct) as i128;
                        let d = (next - p) as i128;
                        ((v + d / 2).div_euclid(d)) as i64
                    };
                    let id = item_id(line);
                    let old = current.get(line).cloned();
                    let new = (cs.status != SubStatus::Canceled).then(|| self.price(cs));
                    if old == new {
                        continue;
                    }
                    if let Some(o) = &old {
                        plines.push(self.line_json(
                            &format!("il_{id}_{ct}_unused"),
                            &sub,
                            &id,
                            o,
                            -frac(o.amount),
                            (ct, next),
                            true,
                        ));
                    }
                    if let Some(n) = &new {
                        plines.push(self.line_json(
                            &format!("il_{id}_{ct}_remaining"),
                            &sub,
                            &id,
                            n,
                            frac(n.amount),
                            (ct, next),
                            true,
                        ));
                        current.insert(line, n.clone());
                    } else {
                        current.remove(line);
                    }
                }
                if !plines.is_empty() {
                    self.invoice(
                        &sub,
                        ct,
                        "subscription_update",
                        "paid",
                        1,
                        Some(ct),
                        plines,
                        &currency,
                    );
                }
            }
            p = next;
            k += 1;
        }
        // The subscription as it is at its end or at the horizon.
        let at_end = end.map_or(self.horizon - 1, |e| e - 1);
        let notice = items
            .iter()
            .flat_map(|(_, v)| v.iter())
            .filter(|(t, s)| s.cancel_at.is_some() && *t <= at_end)
            .map(|(t, s)| (*t, s.cancel_at.map(secs)))
            .min_by_key(|n| n.0);
        let lead_last = state_at(lead, at_end).unwrap_or(lead[0].1);
        let status = match (end, lead_last.status) {
            (Some(_), _) => "canceled",
            (None, SubStatus::Trialing) => "trialing",
            (None, SubStatus::PastDue) => "past_due",
            _ => "active",
        };
        let native_reason = lead.iter().rev().find_map(|(_, s)| s.cancel_reason.clone());
        let details = native_reason.as_deref().map(|r| {
            let (reason, feedback) = match r {
                "payment_failed" => ("payment_failed", None),
                "too_expensive" => ("cancellation_requested", Some("too_expensive")),
                "not_using" => ("cancellation_requested", Some("unused")),
                "switched_competitor" => ("cancellation_requested", Some("switched_service")),
                "product_issues" => ("cancellation_requested", Some("low_quality")),
                _ => ("cancellation_requested", Some("other")),
            };
            json!({"reason": reason, "feedback": feedback, "comment": if feedback == Some("other") { Some(r) } else { None }})
        });
        let mut item_objs = Vec::new();
        for (line, v) in items {
            let Some(s) = state_at(v, at_end) else { continue };
            let s = if s.status == SubStatus::Canceled {
                // Ended with the subscription: listed with its last terms, as Stripe does.
                match v.iter().rev().find(|(_, x)| x.status != SubStatus::Canceled) {
                    Some((_, x)) if end.is_some() => *x,
                    _ => continue,
                }
            } else {
                s
            };
            let t = self.price(s);
            let mut o = json!({"id": item_id(line), "object": "subscription_item", "price": self.price_json(&t.price), "quantity": t.qty, "created": v[0].0});
            if self.newer {
                o["current_period_start"] = json!(last_period.0);
                o["current_period_end"] = json!(last_period.1);
            }
            item_objs.push(o);
        }
        let paused = end.is_none() && lead_last.status == SubStatus::Paused;
        let mut o = json!({"id": sub, "object": "subscription", "customer": self.cus, "created": first,
            "start_date": first, "status": status, "currency": currency,
            "cancel_at": notice.and_then(|n| n.1),
            "cancel_at_period_end": false,
            "canceled_at": end.map(|e| notice.map_or(e, |n| n.0)).or(notice.map(|n| n.0)),
            "ended_at": end, "trial_start": trial_end.map(|_| first), "trial_end": trial_end,
            "cancellation_details": details, "metadata": {},
            "pause_collection": if paused { json!({"behavior": "void", "resumes_at": null}) } else { Value::Null }});
        if !self.newer {
            o["current_period_start"] = json!(last_period.0);
            o["current_period_end"] = json!(last_period.1);
        }
        o["items"] = json!({"object": "list", "data": item_objs, "has_more": false});
        self.out.subscriptions.push(o.to_string());
    }
}

/// Writes every account's objects; `events` in any order; accounts numbered by first
/// appearance.
pub fn write(events: &[Event], horizon: i64) -> Objects {
    let mut by_account: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for e in events {
        if let Some(a) = &e.account
            && matches!(
                e.body,
                EventBody::Account { .. } | EventBody::Subscription(_) | EventBody::Invoice { .. }
            )
        {
            by_account.entry(a).or_default().push(e.clone());
        }
    }
    let mut out = Objects::default();
    let mut prices = BTreeMap::new();
    for (n, (account, evs)) in by_account.iter().enumerate() {
        account_objects(account, n as u64 + 1, evs, horizon, &mut prices, &mut out);
    }
    out.prices = prices.into_values().collect();
    out
}
