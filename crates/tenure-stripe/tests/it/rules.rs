//! One fixture per rule; MRR figures in the asserts are worked out by hand in comments.

use crate::{day, lines, mrr, render, run};
use expect_test::expect;
use serde_json::{Value, json};
use tenure_stripe::Options;

fn price(id: &str, unit: i64, interval: &str, count: u32) -> Value {
    json!({"id": id, "object": "price", "product": "prod_app", "nickname": id, "unit_amount": unit,
           "currency": "usd", "billing_scheme": "per_unit", "type": "recurring",
           "recurring": {"interval": interval, "interval_count": count, "usage_type": "licensed"}})
}

fn customer(id: &str, meta: Value) -> Value {
    json!({"id": id, "object": "customer", "created": day(1, 1), "name": format!("{id} Inc"), "metadata": meta})
}

fn sub(id: &str, status: &str, items: &[(&str, Value, u64)], extra: Value) -> Value {
    let data: Vec<Value> = items
        .iter()
        .map(|(si, p, q)| json!({"id": si, "object": "subscription_item", "price": p, "quantity": q}))
        .collect();
    let mut s = json!({"id": id, "object": "subscription", "customer": "cus_1", "created": day(1, 1),
        "start_date": day(1, 1), "status": status, "currency": "usd",
        "items": {"object": "list", "data": data, "has_more": false}});
    if let (Value::Object(s), Value::Object(e)) = (&mut s, extra) {
        s.extend(e);
    }
    s
}

/// An invoice line in the API shape before 2025-03-31.
fn line(si: &str, p: &Value, qty: u64, amount: i64, period: (i64, i64), proration: bool) -> Value {
    json!({"id": format!("il_{si}_{}", period.0), "object": "line_item", "amount": amount, "currency": "usd",
           "period": {"start": period.0, "end": period.1}, "quantity": qty, "proration": proration,
           "type": "subscription", "subscription": "sub_1", "subscription_item": si, "price": p,
           "discount_amounts": []})
}

/// An invoice line in the newer shape: `parent` and `pricing`, the price by id only.
fn line_new(
    si: &str,
    price: &str,
    qty: u64,
    amount: i64,
    period: (i64, i64),
    proration: bool,
) -> Value {
    json!({"id": format!("il_{si}_{}", period.0), "object": "line_item", "amount": amount, "currency": "usd",
           "period": {"start": period.0, "end": period.1}, "quantity": qty,
           "parent": {"type": "subscription_item_details", "subscription_item_details":
               {"subscription": "sub_1", "subscription_item": si, "proration": proration}},
           "pricing": {"type": "price_details", "price_details": {"price": price, "product": "prod_app"}}})
}

fn invoice(id: &str, status: &str, created: i64, lines: Vec<Value>, extra: Value) -> Value {
    let total: i64 = lines.iter().map(|l| l["amount"].as_i64().unwrap()).sum();
    let mut i = json!({"id": id, "object": "invoice", "customer": "cus_1", "subscription": "sub_1",
        "created": created, "status": status, "currency": "usd", "attempt_count": 1,
        "total": total, "subtotal": total, "total_excluding_tax": total,
        "status_transitions": {"finalized_at": created, "paid_at": if status == "paid" { Some(created) } else { None }},
        "lines": {"object": "list", "data": lines, "has_more": false}});
    if let (Value::Object(i), Value::Object(e)) = (&mut i, extra) {
        i.extend(e);
    }
    i
}

#[test]
fn monthly_cycles_in_the_older_shape() {
    let p = price("price_basic", 4900, "month", 1);
    let objs = vec![
        customer("cus_1", json!({"segment": "smb"})),
        sub(
            "sub_1",
            "active",
            &[("si_1", p.clone(), 1)],
            json!({"current_period_start": day(2, 1), "current_period_end": day(3, 1)}),
        ),
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![line("si_1", &p, 1, 4900, (day(1, 1), day(2, 1)), false)],
            json!({}),
        ),
        invoice(
            "in_2",
            "paid",
            day(2, 1),
            vec![line("si_1", &p, 1, 4900, (day(2, 1), day(3, 1)), false)],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // 49.00 a month from the first period on; a second period at the same price is no change.
    assert_eq!(mrr(&c, "si_1", day(1, 1) - 1), 0);
    assert_eq!(mrr(&c, "si_1", day(1, 15)), 4900);
    assert_eq!(mrr(&c, "si_1", day(2, 15)), 4900);
    expect![[r#"
        2024-01-01T00:00:00Z account cus_1 name=cus_1 Inc attributes={"segment":"smb","stripe_customer_id":"cus_1"} [cus_1]
        2024-01-01T00:00:00Z invoice in_1 paid 49.00 USD [cus_1]
        2024-02-01T00:00:00Z invoice in_2 paid 49.00 USD [cus_1]
        2024-01-01T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=price_basic [cus_1]
    "#]]
    .assert_eq(&render(&c));
}

#[test]
fn intervals_are_normalised_to_months() {
    let year = price("price_year", 120_000, "year", 1);
    let quarter = price("price_q", 30_000, "month", 3);
    let week = price("price_week", 1000, "week", 1);
    let two_weeks = price("price_2w", 1000, "week", 2);
    let day_p = price("price_day", 100, "day", 1);
    let objs = vec![
        sub(
            "sub_1",
            "active",
            &[
                ("si_y", year.clone(), 1),
                ("si_q", quarter.clone(), 1),
                ("si_w", week.clone(), 1),
                ("si_2w", two_weeks.clone(), 1),
                ("si_d", day_p.clone(), 1),
            ],
            json!({}),
        ),
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![
                line("si_y", &year, 1, 120_000, (day(1, 1), day(1, 1) + 366 * 86_400), false),
                line("si_q", &quarter, 1, 30_000, (day(1, 1), day(4, 1)), false),
                line("si_w", &week, 1, 1000, (day(1, 1), day(1, 8)), false),
                line("si_2w", &two_weeks, 1, 1000, (day(1, 1), day(1, 15)), false),
                line("si_d", &day_p, 1, 100, (day(1, 1), day(1, 2)), false),
            ],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // 1,200.00 a year = 100.00 a month; 300.00 a quarter = 100.00; 10.00 a week x 52 / 12
    // = 43.333 -> 43.33; every two weeks: 10.00 x 26 / 12 = 21.666 -> 21.67; a day: 1.00 x
    // 365 / 12 = 30.416 -> 30.42.
    let t = day(1, 20);
    assert_eq!(mrr(&c, "si_y", t), 10_000);
    assert_eq!(mrr(&c, "si_q", t), 10_000);
    assert_eq!(mrr(&c, "si_w", t), 4333);
    assert_eq!(mrr(&c, "si_2w", t), 2167);
    assert_eq!(mrr(&c, "si_d", t), 3042);
    expect![[r#"
        2024-01-01T00:00:00Z invoice in_1 paid 1521.00 USD [cus_1]
        2024-01-01T00:00:00Z sub si_2w active 21.67 USD/month x1 plan=price_2w [cus_1]
        2024-01-01T00:00:00Z sub si_d active 30.42 USD/month x1 plan=price_day [cus_1]
        2024-01-01T00:00:00Z sub si_q active 300.00 USD/quarter x1 plan=price_q [cus_1]
        2024-01-01T00:00:00Z sub si_w active 43.33 USD/month x1 plan=price_week [cus_1]
        2024-01-01T00:00:00Z sub si_y active 1200.00 USD/year x1 plan=price_year term=2024-01-01T00:00:00Z..2025-01-01T00:00:00Z [cus_1]
    "#]]
    .assert_eq(&render(&c));
}

#[test]
fn metered_prices_are_not_mrr_unless_configured() {
    let mut metered = price("price_api", 1, "month", 1);
    metered["recurring"]["usage_type"] = json!("metered");
    let seat = price("price_seat", 2000, "month", 1);
    let objs = vec![
        sub(
            "sub_1",
            "active",
            &[("si_seat", seat.clone(), 3), ("si_api", metered.clone(), 0)],
            json!({}),
        ),
        invoice(
            "in_1",
            "paid",
            day(2, 1),
            vec![
                line("si_seat", &seat, 3, 6000, (day(1, 1), day(2, 1)), false),
                line("si_api", &metered, 12_500, 12_500, (day(1, 1), day(2, 1)), false),
            ],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // Seats: 3 x 20.00 = 60.00; the metered line (125.00 of usage) is not recurring revenue.
    assert_eq!(mrr(&c, "si_seat", day(1, 10)), 6000);
    assert_eq!(mrr(&c, "si_api", day(1, 10)), 0);
    assert!(render(&c).contains("left out: 1 metered lines"));
    let c = run(&objs, &Options { metered_in_mrr: true, ..Options::default() });
    assert_eq!(mrr(&c, "si_api", day(1, 10)), 12_500);
}

#[test]
fn tiered_prices_take_stripe_s_line_amount() {
    let mut tiered = price("price_tiered", 0, "month", 1);
    tiered["billing_scheme"] = json!("tiered");
    tiered["unit_amount"] = Value::Null;
    let objs = vec![
        sub("sub_1", "active", &[("si_1", tiered.clone(), 10)], json!({})),
        // Stripe computed the tiers: 5 x 10.00 + 5 x 5.00 = 75.00.
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![line("si_1", &tiered, 10, 7500, (day(1, 1), day(2, 1)), false)],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    assert_eq!(mrr(&c, "si_1", day(1, 10)), 7500);
}

#[test]
fn recurring_discounts_lower_mrr_once_discounts_do_not() {
    let p = price("price_pro", 10_000, "month", 1);
    let mut l1 = line("si_1", &p, 1, 10_000, (day(1, 1), day(2, 1)), false);
    l1["discount_amounts"] = json!([{"amount": 2000, "discount": "di_forever"}]);
    let mut l2 = line("si_2", &p, 1, 10_000, (day(1, 1), day(2, 1)), false);
    l2["discount_amounts"] = json!([{"amount": 5000, "discount": "di_once"}]);
    let mut l3 = line("si_3", &p, 1, 10_000, (day(1, 1), day(2, 1)), false);
    l3["discount_amounts"] = json!([{"amount": 1000, "discount": "di_repeating"}]);
    let objs = vec![
        json!({"id": "di_forever", "object": "discount", "coupon": {"id": "c20", "duration": "forever", "percent_off": 20.0}}),
        json!({"id": "di_once", "object": "discount", "source": {"type": "coupon", "coupon": {"id": "c50", "duration": "once", "percent_off": 50.0}}}),
        json!({"id": "c10", "object": "coupon", "duration": "repeating", "duration_in_months": 3, "amount_off": 1000}),
        json!({"id": "di_repeating", "object": "discount", "source": {"type": "coupon", "coupon": "c10"}}),
        sub(
            "sub_1",
            "active",
            &[("si_1", p.clone(), 1), ("si_2", p.clone(), 1), ("si_3", p.clone(), 1)],
            json!({}),
        ),
        invoice("in_1", "paid", day(1, 1), vec![l1, l2, l3], json!({})),
        // The repeating coupon has run out by February: back to 100.00.
        invoice(
            "in_2",
            "paid",
            day(2, 1),
            vec![line("si_3", &p, 1, 10_000, (day(2, 1), day(3, 1)), false)],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // 100.00 - 20% forever = 80.00; a once coupon leaves 100.00; 100.00 - 10.00 repeating = 90.00.
    assert_eq!(mrr(&c, "si_1", day(1, 10)), 8000);
    assert_eq!(mrr(&c, "si_2", day(1, 10)), 10_000);
    assert_eq!(mrr(&c, "si_3", day(1, 10)), 9000);
    assert_eq!(mrr(&c, "si_3", day(2, 10)), 10_000);
}

#[test]
fn a_discount_told_by_a_later_block_of_invoices_still_applies() {
    // Invoices converted a block at a time (as `tenure import` reads a large export): the
    // January lines name their discounts by id only; the February invoice, in the second
    // block, expands them with their coupons. The durations settle January's MRR too.
    let p = price("price_pro", 10_000, "month", 1);
    let mut l1 = line("si_1", &p, 1, 10_000, (day(1, 1), day(2, 1)), false);
    l1["discount_amounts"] = json!([{"amount": 5000, "discount": "di_once"}]);
    let mut l2 = line("si_2", &p, 1, 10_000, (day(1, 1), day(2, 1)), false);
    l2["discount_amounts"] = json!([{"amount": 2000, "discount": "di_forever"}]);
    let mut l2b = line("si_2", &p, 1, 10_000, (day(2, 1), day(3, 1)), false);
    l2b["discount_amounts"] = json!([{"amount": 2000, "discount": "di_forever"}]);
    let february = invoice(
        "in_2",
        "paid",
        day(2, 1),
        vec![line("si_1", &p, 1, 10_000, (day(2, 1), day(3, 1)), false), l2b],
        json!({"discounts": [
            {"id": "di_once", "object": "discount", "coupon": {"id": "c50", "duration": "once", "percent_off": 50.0}},
            {"id": "di_forever", "object": "discount", "coupon": {"id": "c20", "duration": "forever", "percent_off": 20.0}}
        ]}),
    );
    let context =
        vec![sub("sub_1", "active", &[("si_1", p.clone(), 1), ("si_2", p.clone(), 1)], json!({}))];
    let january = invoice("in_1", "paid", day(1, 1), vec![l1, l2], json!({}));
    let whole = run(
        &[context.clone(), vec![january.clone(), february.clone()]].concat(),
        &Options::default(),
    );

    let text = lines(&context);
    let mut ex = tenure_stripe::Export::default();
    ex.add_json("subscriptions.jsonl", &text);
    let opts = Options::default();
    let mut conv = tenure_stripe::Converter::new(&ex, &opts);
    for (i, block) in [january, february].iter().enumerate() {
        let text = lines(std::slice::from_ref(block));
        let mut part = tenure_stripe::Export::default();
        part.add_lines(&"invoices.jsonl".into(), i as u64 + 1, &text, Some("invoice"));
        conv.add_invoices(&part.invoices);
    }
    let blocks = conv.finish();
    // A once coupon leaves 100.00; 100.00 - 20% forever = 80.00, from January on.
    assert_eq!(mrr(&blocks, "si_1", day(1, 10)), 10_000);
    assert_eq!(mrr(&blocks, "si_2", day(1, 10)), 8000);
    assert_eq!(mrr(&blocks, "si_2", day(2, 10)), 8000);
    assert_eq!(render(&blocks), render(&whole));
}

#[test]
fn tax_is_excluded() {
    let p = price("price_pro", 10_000, "month", 1);
    let mut newer = line_new("si_1", "price_pro", 1, 12_000, (day(1, 1), day(2, 1)), false);
    newer["taxes"] =
        json!([{"amount": 2000, "tax_behavior": "inclusive", "taxable_amount": 10_000}]);
    let mut older = line("si_2", &p, 1, 11_900, (day(1, 1), day(2, 1)), false);
    older["tax_amounts"] = json!([{"amount": 1900, "inclusive": true}]);
    let exclusive = line("si_3", &p, 1, 10_000, (day(1, 1), day(2, 1)), false);
    let objs = vec![
        p.clone(),
        sub(
            "sub_1",
            "active",
            &[("si_1", p.clone(), 1), ("si_2", p.clone(), 1), ("si_3", p.clone(), 1)],
            json!({}),
        ),
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![newer, older, exclusive],
            json!({"total": 35_900, "total_excluding_tax": 30_000}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // 120.00 with 20.00 inclusive tax -> 100.00; 119.00 with 19.00 inclusive -> 100.00; an
    // exclusive tax is not in the line's amount at all.
    for si in ["si_1", "si_2", "si_3"] {
        assert_eq!(mrr(&c, si, day(1, 10)), 10_000, "{si}");
    }
    // The invoice event is the amount before tax.
    assert!(render(&c).contains("invoice in_1 paid 300.00 USD"));
}

#[test]
fn prorations_date_a_change_and_are_not_revenue() {
    let objs = vec![
        price("price_seat", 2000, "month", 1),
        sub("sub_1", "active", &[("si_1", price("price_seat", 2000, "month", 1), 8)], json!({})),
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![line_new("si_1", "price_seat", 5, 10_000, (day(1, 1), day(2, 1)), false)],
            json!({"subscription": null, "parent": {"subscription_details": {"subscription": "sub_1"}}}),
        ),
        // On Jan 16, 5 -> 8 seats: credit for 16 unused days of 5 seats, charge for 8.
        invoice(
            "in_2",
            "paid",
            day(1, 16),
            vec![
                line_new("si_1", "price_seat", 5, -5161, (day(1, 16), day(2, 1)), true),
                line_new("si_1", "price_seat", 8, 8258, (day(1, 16), day(2, 1)), true),
            ],
            json!({}),
        ),
        invoice(
            "in_3",
            "paid",
            day(2, 1),
            vec![line_new("si_1", "price_seat", 8, 16_000, (day(2, 1), day(3, 1)), false)],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // 5 x 20.00 = 100.00 until Jan 16, then 8 x 20.00 = 160.00 (the prorated 30.97 is not MRR).
    assert_eq!(mrr(&c, "si_1", day(1, 15)), 10_000);
    assert_eq!(mrr(&c, "si_1", day(1, 16)), 16_000);
    assert_eq!(mrr(&c, "si_1", day(2, 10)), 16_000);
    expect![[r#"
        2024-01-01T00:00:00Z invoice in_1 paid 100.00 USD [cus_1]
        2024-01-16T00:00:00Z invoice in_2 paid 30.97 USD [cus_1]
        2024-02-01T00:00:00Z invoice in_3 paid 160.00 USD [cus_1]
        2024-01-01T00:00:00Z sub si_1 active 100.00 USD/month x5 plan=price_seat [cus_1]
        2024-01-16T00:00:00Z sub si_1 active 160.00 USD/month x8 plan=price_seat [cus_1]
    "#]]
    .assert_eq(&render(&c));
}

#[test]
fn statuses_trial_past_due_pause_and_cancellation() {
    let p = price("price_basic", 4900, "month", 1);
    let objs = vec![
        sub(
            "sub_1",
            "canceled",
            &[("si_1", p.clone(), 1)],
            json!({
            "trial_start": day(1, 1), "trial_end": day(1, 15),
            "canceled_at": day(5, 3), "ended_at": day(5, 15), "cancel_at": day(5, 15),
            "cancellation_details": {"reason": "cancellation_requested", "feedback": "too_expensive", "comment": null}}),
        ),
        // The $0 trial invoice.
        invoice(
            "in_0",
            "paid",
            day(1, 1),
            vec![line("si_1", &p, 1, 0, (day(1, 1), day(1, 15)), false)],
            json!({}),
        ),
        invoice(
            "in_1",
            "paid",
            day(1, 15),
            vec![line("si_1", &p, 1, 4900, (day(1, 15), day(2, 15)), false)],
            json!({}),
        ),
        // Paid on the second attempt, on Feb 19.
        invoice(
            "in_2",
            "paid",
            day(2, 15),
            vec![line("si_1", &p, 1, 4900, (day(2, 15), day(3, 15)), false)],
            json!({"attempt_count": 2, "status_transitions": {"finalized_at": day(2, 15), "paid_at": day(2, 19)}}),
        ),
        // Collection paused: Stripe voids the cycle invoice.
        invoice(
            "in_3",
            "void",
            day(3, 15),
            vec![line("si_1", &p, 1, 4900, (day(3, 15), day(4, 15)), false)],
            json!({"attempt_count": 0}),
        ),
        invoice(
            "in_4",
            "paid",
            day(4, 15),
            vec![line("si_1", &p, 1, 4900, (day(4, 15), day(5, 15)), false)],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // Trial: 0; active from Jan 15: 49.00; past due Feb 15-19 still counts; paused Mar 15 -
    // Apr 15: 0; notice given May 3 for May 15; canceled May 15: 0.
    assert_eq!(mrr(&c, "si_1", day(1, 10)), 0);
    assert_eq!(mrr(&c, "si_1", day(1, 20)), 4900);
    assert_eq!(mrr(&c, "si_1", day(2, 17)), 4900);
    assert_eq!(mrr(&c, "si_1", day(3, 20)), 0);
    assert_eq!(mrr(&c, "si_1", day(4, 20)), 4900);
    assert_eq!(mrr(&c, "si_1", day(5, 16)), 0);
    expect![[r#"
        2024-01-15T00:00:00Z invoice in_1 paid 49.00 USD [cus_1]
        2024-02-15T00:00:00Z invoice in_2 failed 49.00 USD [cus_1]
        2024-02-19T00:00:00Z invoice in_2 paid 49.00 USD [cus_1]
        2024-04-15T00:00:00Z invoice in_4 paid 49.00 USD [cus_1]
        2024-01-01T00:00:00Z sub si_1 trialing 0.00 USD/month x1 plan=price_basic [cus_1]
        2024-01-15T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=price_basic [cus_1]
        2024-02-15T00:00:00Z sub si_1 past_due 49.00 USD/month x1 plan=price_basic [cus_1]
        2024-02-19T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=price_basic [cus_1]
        2024-03-15T00:00:00Z sub si_1 paused 49.00 USD/month x1 plan=price_basic [cus_1]
        2024-04-15T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=price_basic [cus_1]
        2024-05-03T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=price_basic cancel_at=2024-05-15T00:00:00Z [cus_1]
        2024-05-15T00:00:00Z sub si_1 canceled 49.00 USD/month x1 plan=price_basic reason=too_expensive [cus_1]
    "#]]
    .assert_eq(&render(&c));
}

#[test]
fn scheduled_cancellation_of_a_live_subscription() {
    let p = price("price_basic", 4900, "month", 1);
    let objs = vec![
        sub(
            "sub_1",
            "active",
            &[("si_1", p.clone(), 1)],
            json!({
            "cancel_at_period_end": true, "canceled_at": day(2, 10),
            "current_period_start": day(2, 1), "current_period_end": day(3, 1)}),
        ),
        invoice(
            "in_1",
            "paid",
            day(2, 1),
            vec![line("si_1", &p, 1, 4900, (day(2, 1), day(3, 1)), false)],
            json!({}),
        ),
    ];
    let c = run(&objs, &Options::default());
    // Notice on Feb 10 for the end of the period (Mar 1); still 49.00 until then.
    assert!(render(&c).contains("2024-02-10T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=price_basic cancel_at=2024-03-01T00:00:00Z"));
    assert_eq!(mrr(&c, "si_1", day(2, 20)), 4900);
}

#[test]
fn incomplete_subscriptions_are_never_revenue() {
    let p = price("price_basic", 4900, "month", 1);
    let objs = vec![
        sub("sub_1", "incomplete_expired", &[("si_1", p.clone(), 1)], json!({})),
        invoice(
            "in_1",
            "open",
            day(1, 1),
            vec![line("si_1", &p, 1, 4900, (day(1, 1), day(2, 1)), false)],
            json!({"attempt_count": 1}),
        ),
    ];
    let c = run(&objs, &Options::default());
    assert_eq!(mrr(&c, "si_1", day(1, 10)), 0);
    expect![[r#"
        left out: 1 incomplete subscriptions (never revenue)
        left out: 1 invoices of incomplete subscriptions
    "#]]
    .assert_eq(&render(&c));
}

#[test]
fn currencies_keep_their_own_minor_units() {
    let mut eur = price("price_eur", 9900, "month", 1);
    eur["currency"] = json!("eur");
    let mut jpy = price("price_jpy", 5000, "month", 1);
    jpy["currency"] = json!("jpy");
    let mut l_eur = line("si_eur", &eur, 1, 9900, (day(1, 1), day(2, 1)), false);
    l_eur["currency"] = json!("eur");
    let mut l_jpy = line("si_jpy", &jpy, 1, 5000, (day(1, 1), day(2, 1)), false);
    l_jpy["currency"] = json!("jpy");
    let mut isk = price("price_isk", 990_000, "month", 1);
    isk["currency"] = json!("isk");
    let mut l_isk = line("si_isk", &isk, 1, 990_000, (day(1, 1), day(2, 1)), false);
    l_isk["currency"] = json!("isk");
    let objs = vec![
        sub(
            "sub_1",
            "active",
            &[("si_eur", eur, 1), ("si_jpy", jpy, 1), ("si_isk", isk, 1)],
            json!({}),
        ),
        invoice("in_1", "paid", day(1, 1), vec![l_eur, l_jpy, l_isk], json!({})),
    ];
    let c = run(&objs, &Options::default());
    // 99.00 EUR (cents); 5000 JPY (a zero-decimal currency: Stripe's 5000 is ¥5000); ISK,
    // two-decimal in Stripe's API: 990000 is 9,900 kr.
    let r = render(&c);
    assert!(r.contains("sub si_eur active 99.00 EUR/month"), "{r}");
    assert!(r.contains("sub si_jpy active 5000 JPY/month"), "{r}");
    assert!(r.contains("sub si_isk active 9900 ISK/month"), "{r}");
}

#[test]
fn customers_grouped_by_a_metadata_key() {
    let p = price("price_basic", 4900, "month", 1);
    let mut c2 = customer("cus_2", json!({"company": "acme", "region": "emea"}));
    c2["created"] = json!(day(1, 5));
    let mut s2 = sub("sub_2", "active", &[("si_2", p.clone(), 1)], json!({}));
    s2["customer"] = json!("cus_2");
    let mut in2 = invoice(
        "in_2",
        "paid",
        day(1, 5),
        vec![line("si_2", &p, 1, 4900, (day(1, 5), day(2, 5)), false)],
        json!({"subscription": "sub_2"}),
    );
    in2["customer"] = json!("cus_2");
    in2["lines"]["data"][0]["subscription"] = json!("sub_2");
    let objs = vec![
        customer("cus_1", json!({"company": "acme"})),
        c2,
        customer("cus_3", json!({})),
        sub("sub_1", "active", &[("si_1", p.clone(), 1)], json!({})),
        s2,
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![line("si_1", &p, 1, 4900, (day(1, 1), day(2, 1)), false)],
            json!({}),
        ),
        in2,
    ];
    let c = run(&objs, &Options { account_key: Some("company".into()), ..Options::default() });
    expect![[r#"
        2024-01-01T00:00:00Z account acme name=cus_1 Inc attributes={"company":"acme","stripe_customer_id":"cus_1"} [acme]
        2024-01-05T00:00:00Z account acme name=cus_2 Inc attributes={"company":"acme","region":"emea","stripe_customer_id":"cus_2"} [acme]
        2024-01-01T00:00:00Z account cus_3 name=cus_3 Inc attributes={"stripe_customer_id":"cus_3"} [cus_3]
        2024-01-01T00:00:00Z invoice in_1 paid 49.00 USD [acme]
        2024-01-05T00:00:00Z invoice in_2 paid 49.00 USD [acme]
        2024-01-01T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=price_basic [acme]
        2024-01-05T00:00:00Z sub si_2 active 49.00 USD/month x1 plan=price_basic [acme]
    "#]]
    .assert_eq(&render(&c));
}

#[test]
fn refunds_from_credit_notes() {
    let p = price("price_basic", 4900, "month", 1);
    let objs = vec![
        sub("sub_1", "active", &[("si_1", p.clone(), 1)], json!({})),
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![line("si_1", &p, 1, 4900, (day(1, 1), day(2, 1)), false)],
            json!({}),
        ),
        json!({"id": "cn_1", "object": "credit_note", "invoice": "in_1", "customer": "cus_1", "created": day(1, 9),
               "amount": 4900, "total_excluding_tax": 4900, "currency": "usd", "status": "issued"}),
        json!({"id": "cn_2", "object": "credit_note", "invoice": "in_1", "customer": "cus_1", "created": day(1, 9),
               "amount": 100, "currency": "usd", "status": "void"}),
    ];
    let c = run(&objs, &Options::default());
    // A refund is an invoice event; MRR does not change.
    assert!(render(&c).contains("2024-01-09T00:00:00Z invoice in_1 refunded 49.00 USD"));
    assert!(!render(&c).contains("1.00 USD"));
    assert_eq!(mrr(&c, "si_1", day(1, 10)), 4900);
}

#[test]
fn unusable_objects_are_named_with_file_line_id_and_field() {
    let p = price("price_basic", 4900, "month", 1);
    let mut odd = line("si_1", &p, 1, 4900, (day(1, 1), day(1, 11)), false);
    odd["price"] = Value::Null;
    let mut bad_currency = line("si_2", &p, 1, 4900, (day(1, 1), day(2, 1)), false);
    bad_currency["currency"] = json!("xxq");
    let text = [
        invoice("in_1", "paid", day(1, 1), vec![odd], json!({})).to_string(),
        "{\"object\": \"invoice\", \"id\": \"in_2\"".to_string(),
        invoice("in_3", "paid", day(1, 1), vec![bad_currency], json!({})).to_string(),
        json!({"id": "ch_1", "object": "charge"}).to_string(),
        json!({"id": "x"}).to_string(),
    ]
    .join("\n");
    let mut ex = tenure_stripe::Export::default();
    ex.add_json("invoices.jsonl", &text);
    let c = tenure_stripe::convert(&ex, &Options::default());
    expect![[r#"
        2024-01-01T00:00:00Z invoice in_1 paid 49.00 USD [cus_1]
        2024-01-01T00:00:00Z invoice in_3 paid 49.00 USD [cus_1]
        problem: invoices.jsonl:2: malformed JSON: EOF while parsing an object at line 1 column 34
        problem: invoices.jsonl:5: x: no `object` field: not a Stripe API object
        problem: invoices.jsonl:1: in_1 line il_si_1_1704067200: price: the line's price is not in the export and its period does not tell the billing interval: export the prices (or expand `lines.data.price`)
        problem: invoices.jsonl:3: in_3 line il_si_2_1704067200: currency: unknown currency "xxq"
    "#]]
    .assert_eq(&render(&c));
    assert_eq!(ex.ignored.get("charge"), Some(&1));
}

#[test]
fn the_same_export_gives_the_same_rows() {
    let p = price("price_basic", 4900, "month", 1);
    let objs = vec![
        customer("cus_1", json!({})),
        sub("sub_1", "active", &[("si_1", p.clone(), 1)], json!({})),
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![line("si_1", &p, 1, 4900, (day(1, 1), day(2, 1)), false)],
            json!({}),
        ),
    ];
    let a = run(&objs, &Options::default());
    let b = run(&objs, &Options::default());
    let ja: Vec<String> = a.rows.iter().map(|r| r.json()).collect();
    let jb: Vec<String> = b.rows.iter().map(|r| r.json()).collect();
    assert_eq!(ja, jb);
    // Every event is keyed by its Stripe object: a second import stores nothing.
    assert!(a.rows.iter().all(|r| r.json().contains("\"message_id\":\"stripe:")));
}

#[test]
fn list_responses_and_arrays_are_read_like_lines() {
    let p = price("price_basic", 4900, "month", 1);
    let s = sub("sub_1", "active", &[("si_1", p.clone(), 2)], json!({}));
    let list = json!({"object": "list", "data": [s.clone()], "has_more": false, "url": "/v1/subscriptions"});
    let page = serde_json::to_string_pretty(&list).unwrap();
    let array = serde_json::to_string_pretty(&json!([customer("cus_1", json!({}))])).unwrap();
    let mut ex = tenure_stripe::Export::default();
    ex.add_json("page.json", &page);
    ex.add_json("array.json", &array);
    assert_eq!((ex.subscriptions.len(), ex.customers.len()), (1, 1));
    // Without invoices, a subscription's current items count from its start: 2 x 49.00.
    let c = tenure_stripe::convert(&ex, &Options::default());
    assert_eq!(mrr(&c, "si_1", day(1, 2)), 9800);
}

#[test]
fn dashboard_csv_exports() {
    let subs = "id,Customer ID,Customer Email,Plan,Product,Quantity,Currency,Interval,Amount,Status,Created (UTC),Start Date (UTC),Current Period Start (UTC),Current Period End (UTC),Trial Start (UTC),Trial End (UTC),Canceled At (UTC),Ended At (UTC),Cancel At Period End,Cancellation Reason,tier (metadata)\n\
sub_1,cus_1,a@example.com,price_pro,prod_app,3,usd,month,25.00,active,2024-01-01 00:00,2024-01-01 00:00,2024-02-01 00:00,2024-03-01 00:00,,,,,false,,gold\n\
sub_2,cus_2,b@example.com,price_year,prod_app,1,eur,year,1200.00,canceled,2024-01-10 09:30,2024-01-10 09:30,2024-01-10 09:30,2025-01-10 09:30,,,2024-03-01 00:00,2024-03-01 00:00,false,cancellation_requested,\n\
sub_3,cus_3,c@example.com,price_pro,prod_app,x,usd,month,25.00,active,2024-01-01 00:00,,,,,,,,false,,\n";
    let customers = "id,Description,Email,Name,Created (UTC),Delinquent,plan_tier (metadata)\ncus_1,,a@example.com,Acme,2024-01-01 00:00,false,gold\n";
    let invoices = "id,Customer,Subscription,Status,Currency,Amount Due,Amount Paid,Subtotal,Tax,Total,Date (UTC),Paid At (UTC),Period Start (UTC),Period End (UTC)\nin_1,cus_1,sub_1,paid,usd,82.50,82.50,75.00,7.50,82.50,2024-02-01 00:05,2024-02-01 00:06,2024-01-01 00:00,2024-02-01 00:00\n";
    let mut ex = tenure_stripe::Export::default();
    ex.add_csv("subscriptions.csv", subs);
    ex.add_csv("unified_customers.csv", customers);
    ex.add_csv("invoices.csv", invoices);
    let c = tenure_stripe::convert(&ex, &Options::default());
    // 3 seats x 25.00 = 75.00 a month since Jan 1; 1,200.00 EUR a year = 100.00 EUR a month
    // from Jan 10 to Mar 1; the invoice is 75.00 before its 7.50 tax.
    assert_eq!(mrr(&c, "sub_1:price_pro", day(2, 10)), 7500);
    assert_eq!(mrr(&c, "sub_2:price_year", day(2, 10)), 10_000);
    assert_eq!(mrr(&c, "sub_2:price_year", day(3, 2)), 0);
    expect![[r#"
        2024-01-01T00:00:00Z account cus_1 name=Acme attributes={"plan_tier":"gold","stripe_customer_id":"cus_1"} [cus_1]
        2024-02-01T00:06:00Z invoice in_1 paid 75.00 USD [cus_1]
        2024-01-01T00:00:00Z sub sub_1:price_pro active 75.00 USD/month x3 plan=price_pro [cus_1]
        2024-01-10T09:30:00Z sub sub_2:price_year active 1200.00 EUR/year x1 plan=price_year [cus_2]
        2024-03-01T00:00:00Z sub sub_2:price_year canceled 1200.00 EUR/year x1 plan=price_year reason=cancellation_requested [cus_2]
        problem: subscriptions.csv:4: sub_3: Quantity: "x" is not a whole number
    "#]]
    .assert_eq(&render(&c));
}

#[test]
fn events_in_an_export_are_read_as_deliveries() {
    let p = price("price_basic", 4900, "month", 1);
    let s = sub(
        "sub_1",
        "active",
        &[("si_1", p.clone(), 2)],
        json!({"cancel_at_period_end": true, "current_period_end": day(3, 1)}),
    );
    let objs = vec![
        json!({"id": "evt_1", "object": "event", "type": "customer.subscription.updated", "created": day(2, 20), "data": {"object": s}}),
        json!({"id": "evt_2", "object": "event", "type": "charge.succeeded", "created": day(2, 20), "data": {"object": {"id": "ch_1"}}}),
        json!({"id": "evt_3", "object": "event", "type": "invoice.paid", "created": day(2, 20), "data": {"object": {"id": 7}}}),
    ];
    let c = run(&objs, &Options::default());
    // 2 x 49.00 from the event's instant, with the notice for the period's end.
    assert_eq!(mrr(&c, "si_1", day(2, 21)), 9800);
    let r = render(&c);
    assert!(r.contains("2024-02-20T00:00:00Z sub si_1 active 98.00 USD/month x2 plan=price_basic cancel_at=2024-03-01T00:00:00Z"), "{r}");
    assert!(r.contains("left out: 1 events of types Tenure does not use"), "{r}");
    assert!(
        r.contains("problem: export.jsonl:3: evt_3: data.object: data.object is not an invoice"),
        "{r}"
    );
}

/// Strings are borrowed from the export's text when they hold no JSON escape and owned when
/// they do: the same export written with escapes (`\u005f` for `_`, `\"`) converts alike.
#[test]
fn strings_with_escapes_convert_as_plain_ones() {
    use std::borrow::Cow;
    use tenure_stripe::objects::{Id, Str};
    let plain: Str<'_> = serde_json::from_str(r#""cus_1""#).unwrap();
    assert!(matches!(plain.0, Cow::Borrowed("cus_1")));
    let escaped: Str<'_> = serde_json::from_str(r#""cus\u005f1""#).unwrap();
    assert!(matches!(&escaped.0, Cow::Owned(s) if s == "cus_1"));
    let expanded: Id<'_> =
        serde_json::from_str(r#"{"object":"customer","id":"cus\u005f1"}"#).unwrap();
    assert_eq!(expanded.as_str(), "cus_1");

    let mut p = price("price_basic", 4900, "month", 1);
    p["nickname"] = json!("basic \"monthly\"");
    let objs = vec![
        customer("cus_1", json!({"segment": "smb"})),
        invoice(
            "in_1",
            "paid",
            day(1, 1),
            vec![line("si_1", &p, 1, 4900, (day(1, 1), day(2, 1)), false)],
            json!({}),
        ),
    ];
    let text = lines(&objs);
    let escaped = text.replace("cus_1", "cus\\u005f1").replace("si_1", "si\\u005f1");
    assert_ne!(text, escaped);
    let convert = |text: &str| {
        let mut ex = tenure_stripe::Export::default();
        ex.add_json("export.jsonl", text);
        render(&tenure_stripe::convert(&ex, &Options::default()))
    };
    expect![[r#"
        2024-01-01T00:00:00Z account cus_1 name=cus_1 Inc attributes={"segment":"smb","stripe_customer_id":"cus_1"} [cus_1]
        2024-01-01T00:00:00Z invoice in_1 paid 49.00 USD [cus_1]
        2024-01-01T00:00:00Z sub si_1 active 49.00 USD/month x1 plan=basic "monthly" [cus_1]
    "#]]
    .assert_eq(&convert(&escaped));
    assert_eq!(convert(&text), convert(&escaped));
}
