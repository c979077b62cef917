//! Webhook events as contract events.

use crate::day;
use serde_json::json;
use tenure_stripe::Options;
use tenure_stripe::objects::Event;
use tenure_stripe::webhook::map_event;

fn event(id: &str, kind: &str, created: i64, object: serde_json::Value) -> Event {
    serde_json::from_value(json!({"id": id, "object": "event", "type": kind, "created": created,
        "data": {"object": object}}))
    .unwrap()
}

fn subscription(extra: serde_json::Value) -> serde_json::Value {
    let mut s = json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "created": day(1, 1),
        "status": "active", "currency": "usd",
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "quantity": 4,
            "current_period_start": day(3, 1), "current_period_end": day(4, 1),
            "price": {"id": "price_seat", "object": "price", "product": "prod_app", "unit_amount": 2500,
                "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}}]}});
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    s
}

#[test]
fn a_scheduled_cancellation_is_a_notice_at_the_event_s_time() {
    let ev = event(
        "evt_1",
        "customer.subscription.updated",
        day(3, 10),
        subscription(json!({"cancel_at_period_end": true})),
    );
    let m = map_event(&ev, &Options::default()).unwrap();
    assert_eq!(m.events.len(), 1);
    let e = &m.events[0];
    // 4 seats x 25.00, noticed on Mar 10 for the period's end (Apr 1); keyed by the event.
    assert_eq!(e["amount"], "100.00");
    assert_eq!(e["timestamp"], "2024-03-10T00:00:00Z");
    assert_eq!(e["cancel_at"], "2024-04-01T00:00:00Z");
    assert_eq!(e["status"], "active");
    assert_eq!(e["message_id"], "stripe:evt_1:0");
}

#[test]
fn statuses_and_recurring_discounts_of_a_snapshot() {
    let discount = json!([{"id": "di_1", "object": "discount", "coupon": {"id": "c", "duration": "forever", "percent_off": 25.0}},
                          {"id": "di_2", "object": "discount", "coupon": {"id": "o", "duration": "once", "amount_off": 5000}}]);
    let ev = event(
        "evt_2",
        "customer.subscription.updated",
        day(3, 10),
        subscription(json!({"status": "past_due", "discounts": discount})),
    );
    let e = &map_event(&ev, &Options::default()).unwrap().events[0];
    // 100.00 less 25% forever = 75.00; the once coupon does not count.
    assert_eq!((e["status"].as_str(), e["amount"].as_str()), (Some("past_due"), Some("75.00")));
    let ev = event(
        "evt_3",
        "customer.subscription.deleted",
        day(3, 20),
        subscription(json!({"status": "canceled", "ended_at": day(3, 19),
        "cancellation_details": {"reason": "payment_failed"}})),
    );
    let e = &map_event(&ev, &Options::default()).unwrap().events[0];
    assert_eq!(
        (e["status"].as_str(), e["timestamp"].as_str(), e["cancel_reason"].as_str()),
        (Some("canceled"), Some("2024-03-19T00:00:00Z"), Some("payment_failed"))
    );
    let ev = event(
        "evt_4",
        "customer.subscription.updated",
        day(3, 10),
        subscription(json!({"pause_collection": {"behavior": "void"}})),
    );
    assert_eq!(map_event(&ev, &Options::default()).unwrap().events[0]["status"], "paused");
    let ev = event(
        "evt_5",
        "customer.subscription.created",
        day(3, 10),
        subscription(json!({"status": "incomplete"})),
    );
    assert!(map_event(&ev, &Options::default()).unwrap().events.is_empty());
}

#[test]
fn payment_failures_and_refunds() {
    let inv = json!({"id": "in_7", "object": "invoice", "customer": "cus_1", "created": day(3, 1), "status": "open",
        "currency": "eur", "attempt_count": 1, "total": 11_900, "total_excluding_tax": 10_000,
        "lines": {"data": [{"id": "il_1", "amount": 10_000, "period": {"start": day(3, 1), "end": day(4, 1)}}]}});
    let e =
        &map_event(&event("evt_6", "invoice.payment_failed", day(3, 1), inv), &Options::default())
            .unwrap()
            .events[0];
    assert_eq!(
        (e["status"].as_str(), e["amount"].as_str(), e["currency"].as_str()),
        (Some("failed"), Some("100.00"), Some("EUR"))
    );
    // The invoice's key, as an export import gives it: a retried failure is one event.
    assert_eq!(e["message_id"], "stripe:in_7:failed");
    let ch = json!({"id": "ch_1", "object": "charge", "customer": "cus_1", "invoice": "in_7", "amount_refunded": 2500, "currency": "eur"});
    let e = &map_event(&event("evt_7", "charge.refunded", day(3, 5), ch), &Options::default())
        .unwrap()
        .events[0];
    assert_eq!(
        (e["status"].as_str(), e["amount"].as_str(), e["invoice_id"].as_str()),
        (Some("refunded"), Some("25.00"), Some("in_7"))
    );
    let m = map_event(
        &event("evt_8", "payment_intent.created", day(3, 5), json!({})),
        &Options::default(),
    )
    .unwrap();
    assert!(m.ignored && m.events.is_empty());
    assert!(
        map_event(
            &event("evt_9", "invoice.paid", day(3, 5), json!({"id": 5})),
            &Options::default()
        )
        .is_err()
    );
}
