//! `POST /webhooks/stripe`: signed deliveries are stored once per Stripe event, whatever
//! their order; a bad or stale signature is a 400; a payment failure and a scheduled
//! cancellation raise the existing alerts.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tenure_server::{AppState, app};
use tenure_testkit::{Keyring, call, open_with, until};
use tower::ServiceExt;

const SECRET: &str = "whsec_test_0123456789";
/// 2026-06-01T00:00:00Z, the service's clock.
const NOW: i64 = 1_780_272_000;

async fn deliver(s: &AppState, body: &str, signature: Option<String>) -> (StatusCode, Value) {
    let mut r = Request::builder()
        .method("POST")
        .uri("/webhooks/stripe")
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        r = r.header("stripe-signature", sig);
    }
    let resp = app(s.clone()).oneshot(r.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn signed(body: &str, t: i64) -> Option<String> {
    Some(tenure_stripe::webhook::sign(body.as_bytes(), SECRET, t))
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({"id": id, "object": "event", "type": kind, "created": created, "data": {"object": object}}).to_string()
}

fn subscription(status: &str, extra: Value) -> Value {
    let mut s = json!({"id": "sub_1", "object": "subscription", "customer": "cus_1", "created": NOW - 90 * 86_400,
        "status": status, "currency": "usd",
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "quantity": 10,
            "current_period_start": NOW - 10 * 86_400, "current_period_end": NOW + 20 * 86_400,
            "price": {"id": "price_seat", "object": "price", "product": "prod_app", "unit_amount": 5000,
                "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}}]}});
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    s
}

#[tokio::test]
async fn signed_events_are_stored_once_and_raise_alerts() {
    let keys = Keyring::new();
    let s = open_with(keys.path(), "2026-06-01", |o| {
        o.config.service.stripe_webhook_secret = Some(SECRET.into());
    });
    let created = event(
        "evt_1",
        "customer.subscription.created",
        NOW - 90 * 86_400,
        subscription("active", json!({})),
    );
    let (st, j) = deliver(&s, &created, signed(&created, NOW)).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    // Stripe retries: acknowledged, not stored again.
    let (st, j) = deliver(&s, &created, signed(&created, NOW + 60)).await;
    assert_eq!(
        (st, j["accepted"].as_u64(), j["duplicates"].as_u64()),
        (StatusCode::OK, Some(0), Some(1))
    );
    // Out of order: the notice (Jun 1) arrives before a payment failure dated earlier (May 30).
    let notice = event(
        "evt_3",
        "customer.subscription.updated",
        NOW,
        subscription("active", json!({"cancel_at_period_end": true})),
    );
    assert_eq!(deliver(&s, &notice, signed(&notice, NOW)).await.0, StatusCode::OK);
    let inv = json!({"id": "in_9", "object": "invoice", "customer": "cus_1", "created": NOW - 2 * 86_400, "status": "open",
        "currency": "usd", "attempt_count": 1, "total": 50_000, "total_excluding_tax": 50_000,
        "lines": {"data": [{"id": "il_1", "amount": 50_000, "period": {"start": NOW - 10 * 86_400, "end": NOW + 20 * 86_400}}]}});
    let failed = event("evt_2", "invoice.payment_failed", NOW - 2 * 86_400, inv);
    let (st, j) = deliver(&s, &failed, signed(&failed, NOW)).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    let ignored = event("evt_4", "payment_intent.created", NOW, json!({"id": "pi_1"}));
    let (st, j) = deliver(&s, &ignored, signed(&ignored, NOW)).await;
    assert_eq!((st, j["ignored"].as_bool()), (StatusCode::OK, Some(true)));
    // The account's MRR is the subscription's (10 x 50.00), and both alerts are raised.
    let has = |j: &Value, rule: &str| {
        j["alerts"].as_array().is_some_and(|a| a.iter().any(|x| x["rule"] == rule))
    };
    let a = until(&s, &keys.read, "/api/v1/alerts", |j| {
        has(j, "payment_failed") && has(j, "cancellation_scheduled")
    })
    .await;
    assert!(has(&a, "payment_failed") && has(&a, "cancellation_scheduled"), "{a}");
    let (_, acct) = call(&s, "GET", "/api/v1/accounts/cus_1", Some(&keys.read), "").await;
    assert_eq!(acct["mrr"], 500.0, "{acct}");
    assert_eq!(acct["cancellations_scheduled"][0]["effective"], "2026-06-21T00:00:00Z");
}

#[tokio::test]
async fn bad_stale_missing_or_unconfigured_signatures_are_refused() {
    let keys = Keyring::new();
    let s = open_with(keys.path(), "2026-06-01", |o| {
        o.config.service.stripe_webhook_secret = Some(SECRET.into());
    });
    let body = event(
        "evt_1",
        "customer.created",
        NOW,
        json!({"id": "cus_1", "object": "customer", "created": NOW, "metadata": {}}),
    );
    let wrong = tenure_stripe::webhook::sign(body.as_bytes(), "whsec_wrong", NOW);
    for (sig, why) in [
        (Some(wrong), "no v1 signature matches"),
        (signed(&body, NOW - 301), "beyond the tolerance"),
        (None, "no Stripe-Signature header"),
        (Some("t=abc".to_string()), "no timestamp"),
    ] {
        let (st, j) = deliver(&s, &body, sig).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(j["error"]["code"], "invalid_signature");
        assert!(j["error"]["message"].as_str().unwrap().contains(why), "{j}");
    }
    let (_, list) = call(&s, "GET", "/api/v1/accounts", Some(&keys.read), "").await;
    assert_eq!(list["total"], 0, "nothing refused is stored: {list}");
    let keys2 = Keyring::new();
    let off = open_with(keys2.path(), "2026-06-01", |_| {});
    let (st, j) = deliver(&off, &body, signed(&body, NOW)).await;
    assert_eq!((st, j["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}
