//! Fixture tests of the fold: a compact event script in, the ledger rendered as text out.

use super::*;
use expect_test::{Expect, expect};
use tenure_core::event::{LineKind, SubStatus};
use tenure_core::money::{Currency, FxTable};

/// Script lines: `DATE[THH:MM] ACCOUNT sub ID key=value...` (keys: amount, status, interval
/// in months, qty, product, plan, term_start, term_end, cancel_at, reason, cur) or
/// `DATE ACCOUNT attr key=value`.
pub(crate) fn events(script: &str) -> Vec<Event> {
    let mut out = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut it = line.split_whitespace();
        let when = it.next().unwrap();
        let ts = Timestamp::parse(&if when.len() == 10 {
            when.to_string()
        } else {
            format!("{when}:00Z")
        })
        .unwrap();
        let account = it.next().unwrap().to_string();
        let what = it.next().unwrap();
        let kv: Vec<(&str, &str)> = it.map(|t| t.split_once('=').unwrap()).collect();
        let get = |k: &str| kv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let body = match what {
            "attr" => EventBody::Account {
                name: None,
                attributes: kv
                    .iter()
                    .map(|(k, v)| (k.to_string(), AttrValue::Str(v.to_string())))
                    .collect(),
            },
            "sub" => {
                let currency = Currency::parse(get("cur").unwrap_or("USD")).unwrap();
                let minor = tenure_core::money::parse_minor(get("amount").unwrap_or("0"), currency)
                    .unwrap();
                EventBody::Subscription(Box::new(Subscription {
                    subscription_id: kv
                        .iter()
                        .find(|(k, _)| *k == "id")
                        .map(|(_, v)| v.to_string())
                        .unwrap_or("s1".into()),
                    product: get("product").map(str::to_string),
                    plan: get("plan").map(str::to_string),
                    kind: LineKind::Product,
                    quantity: get("qty").map_or(1, |q| q.parse().unwrap()),
                    amount: Money { minor, currency },
                    interval_months: get("interval").map_or(1, |q| q.parse().unwrap()),
                    status: SubStatus::parse(get("status").unwrap_or("active")).unwrap(),
                    term_start: get("term_start").map(|t| Timestamp::parse(t).unwrap()),
                    term_end: get("term_end").map(|t| Timestamp::parse(t).unwrap()),
                    cancel_reason: get("reason").map(str::to_string),
                    cancel_at: get("cancel_at").map(|t| Timestamp::parse(t).unwrap()),
                }))
            }
            other => panic!("unknown fixture verb {other}"),
        };
        out.push(Event { ts, account: Some(account), message_id: None, body });
    }
    out
}

pub(crate) fn build(script: &str, cfg: &RevenueConfig, as_of: &str) -> Ledger {
    let mut b = LedgerBuilder::new();
    for e in events(script) {
        b.push(e);
    }
    b.finish(cfg, Timestamp::parse(as_of).unwrap())
}

fn money(m: i64) -> String {
    tenure_core::money::format_minor(m, Currency::USD)
}

pub(crate) fn render(l: &Ledger) -> String {
    let mut s = String::new();
    for a in &l.accounts {
        s += &format!("{}\n", a.id);
        for m in &a.movements {
            s += &format!("  {} {} {}", m.ts, m.kind.as_str(), money(m.amount));
            if m.kind == MovementKind::Expansion {
                s += &format!(" (upsell {} cross-sell {})", money(m.upsell), money(m.cross_sell));
            }
            if m.involuntary {
                s += " involuntary";
            }
            if let Some(r) = &m.cancel_reason {
                s += &format!(" reason={r}");
            }
            s += "\n";
        }
        for st in &a.steps {
            s += &format!(
                "  = {} mrr {} seats {} customer {}",
                st.ts,
                money(st.mrr),
                st.seats,
                st.customer
            );
            if st.committed_mrr != st.mrr {
                s += &format!(" committed {}", money(st.committed_mrr));
            }
            s += "\n";
        }
        for r in &a.renewals {
            let outcome = match &r.outcome {
                RenewalOutcome::Won { at, arr } => {
                    format!("won {} arr {}", at.date_string(), money(*arr))
                }
                RenewalOutcome::Lost { at } => format!("lost {}", at.date_string()),
                RenewalOutcome::Open => "open".to_string(),
            };
            s += &format!(
                "  renewal {} due {} arr {} {outcome}\n",
                r.subscription_id,
                r.due.date_string(),
                money(r.arr_due)
            );
        }
    }
    for d in &l.diagnostics {
        s += &format!("! {}\n", d.0);
    }
    s
}

fn check(script: &str, cfg: &RevenueConfig, expect: Expect) {
    expect.assert_eq(&render(&build(script, cfg, "2030-01-01")));
}

fn tenure() -> RevenueConfig {
    RevenueConfig::preset(Preset::Tenure, FxTable::new(Currency::USD))
}

#[test]
fn the_five_movements() {
    check(
        r#"
        2024-01-01 a sub id=s1 amount=100 qty=10 product=core
        2024-02-01 a sub id=s1 amount=150 qty=15 product=core
        2024-02-15 a sub id=s2 amount=50 product=addon
        2024-03-01 a sub id=s1 amount=120 qty=12 product=core
        2024-04-01 a sub id=s1 status=canceled
        2024-04-01 a sub id=s2 status=canceled
        2024-06-01 a sub id=s3 amount=1200 interval=12 product=core
        "#,
        &tenure(),
        expect![[r#"
            a
              2024-01-01T00:00:00Z new 100.00
              2024-02-01T00:00:00Z expansion 50.00 (upsell 50.00 cross-sell 0.00)
              2024-02-15T00:00:00Z expansion 50.00 (upsell 0.00 cross-sell 50.00)
              2024-03-01T00:00:00Z contraction 30.00
              2024-04-01T00:00:00Z churn 170.00
              2024-06-01T00:00:00Z reactivation 100.00
              = 2024-01-01T00:00:00Z mrr 100.00 seats 10 customer true
              = 2024-02-01T00:00:00Z mrr 150.00 seats 15 customer true
              = 2024-02-15T00:00:00Z mrr 200.00 seats 16 customer true
              = 2024-03-01T00:00:00Z mrr 170.00 seats 13 customer true
              = 2024-04-01T00:00:00Z mrr 0.00 seats 0 customer false
              = 2024-06-01T00:00:00Z mrr 100.00 seats 1 customer true
        "#]],
    );
}

#[test]
fn changes_within_the_grouping_window_are_one_movement() {
    let script = r#"
        2024-01-01T10:00 a sub id=s1 amount=100
        2024-01-01T10:30 a sub id=s1 amount=300
        2024-05-01T09:00 a sub id=s1 amount=200
        2024-05-01T09:10 a sub id=s1 status=canceled
        "#;
    check(
        script,
        &tenure(),
        expect![[r#"
            a
              2024-01-01T10:00:00Z new 300.00
              2024-05-01T09:00:00Z churn 300.00
              = 2024-01-01T10:00:00Z mrr 300.00 seats 1 customer true
              = 2024-05-01T09:00:00Z mrr 0.00 seats 0 customer false
        "#]],
    );
    // Without grouping each change stands alone.
    check(
        script,
        &RevenueConfig { grouping_window_secs: 0, ..tenure() },
        expect![[r#"
            a
              2024-01-01T10:00:00Z new 100.00
              2024-01-01T10:30:00Z expansion 200.00 (upsell 200.00 cross-sell 0.00)
              2024-05-01T09:00:00Z contraction 100.00
              2024-05-01T09:10:00Z churn 200.00
              = 2024-01-01T10:00:00Z mrr 100.00 seats 1 customer true
              = 2024-01-01T10:30:00Z mrr 300.00 seats 1 customer true
              = 2024-05-01T09:00:00Z mrr 200.00 seats 1 customer true
              = 2024-05-01T09:10:00Z mrr 0.00 seats 0 customer false
        "#]],
    );
}

#[test]
fn trials_past_due_pauses_and_free_plans() {
    let script = r#"
        2024-01-01 a sub amount=90 interval=3 status=trialing
        2024-01-15 a sub amount=90 interval=3
        2024-03-01 a sub amount=90 interval=3 status=past_due
        2024-03-10 a sub amount=90 interval=3 status=past_due
        2024-05-01 a sub amount=90 interval=3
        2024-06-01 a sub amount=90 interval=3 status=paused
        2024-07-01 a sub amount=90 interval=3
        2024-08-01 a sub amount=0 interval=3
        "#;
    check(
        script,
        &tenure(),
        expect![[r#"
            a
              2024-01-15T00:00:00Z new 30.00
              2024-03-31T00:00:00Z churn 30.00 involuntary
              2024-05-01T00:00:00Z reactivation 30.00
              2024-06-01T00:00:00Z contraction 30.00
              2024-07-01T00:00:00Z expansion 30.00 (upsell 30.00 cross-sell 0.00)
              2024-08-01T00:00:00Z churn 30.00
              = 2024-01-15T00:00:00Z mrr 30.00 seats 1 customer true
              = 2024-03-31T00:00:00Z mrr 0.00 seats 0 customer false
              = 2024-05-01T00:00:00Z mrr 30.00 seats 1 customer true
              = 2024-06-01T00:00:00Z mrr 0.00 seats 0 customer true
              = 2024-07-01T00:00:00Z mrr 30.00 seats 1 customer true
              = 2024-08-01T00:00:00Z mrr 0.00 seats 0 customer false
        "#]],
    );
    // ChartMogul: past due stays in MRR, pauses keep MRR, a free plan stays a customer.
    check(
        script,
        &RevenueConfig::preset(Preset::ChartMogul, FxTable::new(Currency::USD)),
        expect![[r#"
            a
              2024-01-15T00:00:00Z new 30.00
              2024-08-01T00:00:00Z contraction 30.00
              = 2024-01-15T00:00:00Z mrr 30.00 seats 1 customer true
              = 2024-08-01T00:00:00Z mrr 0.00 seats 0 customer true
        "#]],
    );
}

#[test]
fn reactivation_window_and_churn_recognition() {
    let script = r#"
        2023-01-01 a sub id=s1 amount=1200 interval=12 term_start=2023-01-01 term_end=2024-01-01
        2023-10-01 a sub id=s1 amount=1200 interval=12 term_start=2023-01-01 term_end=2024-01-01 cancel_at=2024-01-01
        2024-09-01 a sub id=s2 amount=50
        "#;
    check(
        script,
        &RevenueConfig { reactivation_window_days: Some(90), ..tenure() },
        expect![[r#"
            a
              2023-01-01T00:00:00Z new 100.00
              2024-01-01T00:00:00Z churn 100.00
              2024-09-01T00:00:00Z new 50.00
              = 2023-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2023-10-01T00:00:00Z mrr 100.00 seats 1 customer true committed 0.00
              = 2024-01-01T00:00:00Z mrr 0.00 seats 0 customer false
              = 2024-09-01T00:00:00Z mrr 50.00 seats 1 customer true
              renewal s1 due 2024-01-01 arr 1200.00 lost 2024-01-01
        "#]],
    );
    check(
        script,
        &RevenueConfig { churn_recognition: ChurnRecognition::Scheduled, ..tenure() },
        expect![[r#"
            a
              2023-01-01T00:00:00Z new 100.00
              2023-10-01T00:00:00Z churn 100.00
              2024-09-01T00:00:00Z reactivation 50.00
              = 2023-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2023-10-01T00:00:00Z mrr 0.00 seats 0 customer false
              = 2024-09-01T00:00:00Z mrr 50.00 seats 1 customer true
              renewal s1 due 2024-01-01 arr 1200.00 lost 2024-01-01
        "#]],
    );
    // Term-end recognition: cancelling mid-term keeps the MRR to the term's end.
    check(
        r#"
        2023-01-01 a sub amount=1200 interval=12 term_start=2023-01-01 term_end=2024-01-01
        2023-06-15 a sub status=canceled
        "#,
        &RevenueConfig { churn_recognition: ChurnRecognition::TermEnd, ..tenure() },
        expect![[r#"
            a
              2023-01-01T00:00:00Z new 100.00
              2024-01-01T00:00:00Z churn 100.00
              = 2023-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2023-06-15T00:00:00Z mrr 100.00 seats 1 customer true committed 0.00
              = 2024-01-01T00:00:00Z mrr 0.00 seats 0 customer false
              renewal s1 due 2024-01-01 arr 1200.00 lost 2023-06-15
        "#]],
    );
}

#[test]
fn renewals_won_lost_and_open() {
    check(
        r#"
        2023-01-01 a sub id=s1 amount=1200 interval=12 term_start=2023-01-01 term_end=2024-01-01
        2023-12-20 a sub id=s1 amount=2400 interval=12 term_start=2024-01-01 term_end=2025-01-01
        2023-02-01 b sub id=s2 amount=600 interval=12 term_start=2023-02-01 term_end=2024-02-01
        2024-02-01 b sub id=s2 status=canceled
        2023-03-01 c sub id=s3 amount=600 interval=12 term_start=2023-03-01 term_end=2024-03-01
        "#,
        &tenure(),
        expect![[r#"
            a
              2023-01-01T00:00:00Z new 100.00
              2023-12-20T00:00:00Z expansion 100.00 (upsell 100.00 cross-sell 0.00)
              = 2023-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2023-12-20T00:00:00Z mrr 200.00 seats 1 customer true
              renewal s1 due 2024-01-01 arr 1200.00 won 2023-12-20 arr 2400.00
              renewal s1 due 2025-01-01 arr 2400.00 open
            b
              2023-02-01T00:00:00Z new 50.00
              2024-02-01T00:00:00Z churn 50.00
              = 2023-02-01T00:00:00Z mrr 50.00 seats 1 customer true
              = 2024-02-01T00:00:00Z mrr 0.00 seats 0 customer false
              renewal s2 due 2024-02-01 arr 600.00 lost 2024-02-01
            c
              2023-03-01T00:00:00Z new 50.00
              = 2023-03-01T00:00:00Z mrr 50.00 seats 1 customer true
              renewal s3 due 2024-03-01 arr 600.00 open
        "#]],
    );
}

#[test]
fn exchange_rates_never_create_movements() {
    let eur = Currency::parse("EUR").unwrap();
    let mut fx = FxTable::new(Currency::USD);
    fx.add(eur, Timestamp::parse("2024-01-01").unwrap(), "1.10").unwrap();
    fx.add(eur, Timestamp::parse("2024-03-01").unwrap(), "1.50").unwrap();
    check(
        r#"
        2024-01-01 a sub amount=100 qty=10 cur=EUR
        2024-04-01 a sub amount=120 qty=12 cur=EUR
        2024-06-01 a sub status=canceled cur=EUR
        2024-01-01 b sub amount=10 cur=GBP
        "#,
        &RevenueConfig { fx, ..tenure() },
        expect![[r#"
            a
              2024-01-01T00:00:00Z new 110.00
              2024-04-01T00:00:00Z expansion 22.00 (upsell 22.00 cross-sell 0.00)
              2024-06-01T00:00:00Z churn 132.00
              = 2024-01-01T00:00:00Z mrr 110.00 seats 10 customer true
              = 2024-04-01T00:00:00Z mrr 132.00 seats 12 customer true
              = 2024-06-01T00:00:00Z mrr 0.00 seats 0 customer false
            b
              2024-01-01T00:00:00Z new 10.00
              = 2024-01-01T00:00:00Z mrr 10.00 seats 1 customer true
            ! no exchange rate from GBP to USD: amounts in GBP were taken as USD
        "#]],
    );
}

#[test]
fn events_after_as_of_are_unknown() {
    let l = build(
        "2024-01-01 a sub amount=10\n2024-03-01 a sub status=canceled",
        &tenure(),
        "2024-02-01",
    );
    assert_eq!(l.accounts[0].movements.len(), 1);
    assert_eq!(l.accounts[0].mrr_before(Timestamp::parse("2024-06-01").unwrap()), 1000);
}

#[test]
fn renewal_outcomes_follow_terms_not_field_changes() {
    check(
        r#"
        # A term_start that appears mid-term is not a new term: the cancellation loses it.
        2024-01-01 a sub id=s1 amount=1200 interval=12 term_end=2025-01-01
        2024-03-01 a sub id=s1 amount=2400 interval=12 qty=2 term_start=2024-01-01 term_end=2025-01-01
        2024-12-01 a sub id=s1 status=canceled
        # Only term_end is sent: a later one is the follow-on term.
        2024-01-01 b sub id=s2 amount=1200 interval=12 term_end=2025-01-01
        2024-12-20 b sub id=s2 amount=1200 interval=12 term_end=2026-01-01
        # Unpaid past the auto-churn, then paid and renewed: won, not lost.
        2024-01-01 c sub id=s3 amount=300 interval=3 term_start=2024-01-01 term_end=2024-04-01
        2024-02-01 c sub id=s3 amount=300 interval=3 status=past_due term_start=2024-01-01 term_end=2024-04-01
        2024-03-15 c sub id=s3 amount=300 interval=3 term_start=2024-01-01 term_end=2024-04-01
        2024-04-01 c sub id=s3 amount=300 interval=3 term_start=2024-04-01 term_end=2024-07-01
        "#,
        &tenure(),
        expect![[r#"
            a
              2024-01-01T00:00:00Z new 100.00
              2024-03-01T00:00:00Z expansion 100.00 (upsell 100.00 cross-sell 0.00)
              2024-12-01T00:00:00Z churn 200.00
              = 2024-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2024-03-01T00:00:00Z mrr 200.00 seats 2 customer true
              = 2024-12-01T00:00:00Z mrr 0.00 seats 0 customer false
              renewal s1 due 2025-01-01 arr 2400.00 lost 2024-12-01
            b
              2024-01-01T00:00:00Z new 100.00
              = 2024-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              renewal s2 due 2025-01-01 arr 1200.00 won 2024-12-20 arr 1200.00
              renewal s2 due 2026-01-01 arr 1200.00 open
            c
              2024-01-01T00:00:00Z new 100.00
              2024-03-02T00:00:00Z churn 100.00 involuntary
              2024-03-15T00:00:00Z reactivation 100.00
              = 2024-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2024-03-02T00:00:00Z mrr 0.00 seats 0 customer false
              = 2024-03-15T00:00:00Z mrr 100.00 seats 1 customer true
              renewal s3 due 2024-04-01 arr 1200.00 won 2024-04-01 arr 1200.00
              renewal s3 due 2024-07-01 arr 1200.00 open
        "#]],
    );
}

#[test]
fn term_end_recognition_survives_a_repeated_cancellation() {
    check(
        r#"
        2024-01-01 a sub amount=1200 interval=12 term_start=2024-01-01 term_end=2025-01-01
        2024-06-15 a sub status=canceled
        2024-06-20 a sub status=canceled
        "#,
        &RevenueConfig { churn_recognition: ChurnRecognition::TermEnd, ..tenure() },
        expect![[r#"
            a
              2024-01-01T00:00:00Z new 100.00
              2025-01-01T00:00:00Z churn 100.00
              = 2024-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2024-06-15T00:00:00Z mrr 100.00 seats 1 customer true committed 0.00
              = 2025-01-01T00:00:00Z mrr 0.00 seats 0 customer false
              renewal s1 due 2025-01-01 arr 1200.00 lost 2024-06-15
        "#]],
    );
}

#[test]
fn a_line_keeps_the_exchange_rate_it_started_at() {
    let eur = Currency::parse("EUR").unwrap();
    let mut fx = FxTable::new(Currency::USD);
    fx.add(eur, Timestamp::parse("2024-01-01").unwrap(), "0.5").unwrap();
    fx.add(eur, Timestamp::parse("2024-03-01").unwrap(), "2.0").unwrap();
    // A price cut after the rate rose: still worth its price at the line's rate, never 0.
    check(
        r#"
        2024-01-01 a sub amount=100 cur=EUR
        2024-04-01 a sub amount=10 cur=EUR
        2024-06-01 a sub status=canceled cur=EUR
        2024-05-01 b sub amount=100 cur=EUR
        "#,
        &RevenueConfig { fx, ..tenure() },
        expect![[r#"
            a
              2024-01-01T00:00:00Z new 50.00
              2024-04-01T00:00:00Z contraction 45.00
              2024-06-01T00:00:00Z churn 5.00
              = 2024-01-01T00:00:00Z mrr 50.00 seats 1 customer true
              = 2024-04-01T00:00:00Z mrr 5.00 seats 1 customer true
              = 2024-06-01T00:00:00Z mrr 0.00 seats 0 customer false
            b
              2024-05-01T00:00:00Z new 200.00
              = 2024-05-01T00:00:00Z mrr 200.00 seats 1 customer true
        "#]],
    );
}

#[test]
fn grouping_never_crosses_a_day_boundary() {
    check(
        r#"
        2024-01-31T23:30 a sub amount=100
        2024-02-01T00:10 a sub amount=200
        "#,
        &tenure(),
        expect![[r#"
            a
              2024-01-31T23:30:00Z new 100.00
              2024-02-01T00:10:00Z expansion 100.00 (upsell 100.00 cross-sell 0.00)
              = 2024-01-31T23:30:00Z mrr 100.00 seats 1 customer true
              = 2024-02-01T00:10:00Z mrr 200.00 seats 1 customer true
        "#]],
    );
}

#[test]
fn a_free_signup_is_not_a_customer_until_it_pays() {
    check(
        r#"
        2024-01-01 f sub plan=free amount=0
        2024-03-10 f sub plan=pro amount=100
        2024-05-01 f sub plan=free amount=0
        "#,
        &RevenueConfig { free_is_churn: false, ..tenure() },
        expect![[r#"
            f
              2024-03-10T00:00:00Z new 100.00
              2024-05-01T00:00:00Z contraction 100.00
              = 2024-03-10T00:00:00Z mrr 100.00 seats 1 customer true
              = 2024-05-01T00:00:00Z mrr 0.00 seats 0 customer true
        "#]],
    );
}

#[test]
fn folding_one_account_from_the_builder_equals_the_full_fold() {
    use tenure_core::event::{ContactRole, ContactStatus};
    let mut evs = events(
        "2024-01-01 a sub id=a1 amount=100
         2024-02-01 b sub id=b1 amount=50 term_end=2025-02-01
         2024-03-01 a sub id=a1 amount=150
         2024-04-01 b attr segment=smb",
    );
    let contact = |ts: &str, acct: &str, id: &str, role, status| Event {
        ts: Timestamp::parse(ts).unwrap(),
        account: Some(acct.into()),
        message_id: None,
        body: EventBody::Contact { contact_id: id.into(), email: None, name: None, role, status },
    };
    // c1 is a's champion, then shows up under b (moved); c2 leaves b.
    evs.push(contact("2024-01-05", "a", "c1", Some(ContactRole::Champion), None));
    evs.push(contact("2024-05-01", "b", "c1", None, None));
    evs.push(contact("2024-01-05", "b", "c2", Some(ContactRole::Admin), None));
    evs.push(contact("2024-06-01", "b", "c2", None, Some(ContactStatus::Left)));
    // c0 goes a -> b -> a: two moves, the first at the same instant as c1's; seen after c1,
    // its id sorts before c1's (moves at one instant are in the order of the ids).
    evs.push(contact("2024-02-01", "a", "c0", Some(ContactRole::Admin), None));
    evs.push(contact("2024-05-01", "b", "c0", None, None));
    evs.push(contact("2024-08-01", "a", "c0", None, None));
    let cfg = tenure();
    let as_of = Timestamp::parse("2024-12-01").unwrap();
    // Builders fed a lane each (contacts apart, b's contacts first), merged.
    let (people, rest): (Vec<Event>, Vec<Event>) =
        evs.iter().cloned().partition(|e| matches!(e.body, EventBody::Contact { .. }));
    let mut merged = LedgerBuilder::new();
    for e in rest {
        merged.push(e);
    }
    let mut lane = LedgerBuilder::new();
    lane.push(contact("2024-01-01", "c", "c9", None, None));
    for e in people {
        lane.push(e);
    }
    merged.merge(lane);
    let mut b = LedgerBuilder::new();
    for e in evs {
        b.push(e);
    }
    b.push(contact("2024-01-01", "c", "c9", None, None));
    let ids: Vec<String> = b.account_ids().map(str::to_string).collect();
    let one: Vec<String> =
        ids.iter().map(|id| format!("{:?}", b.fold_one(id, &cfg, as_of).unwrap().0)).collect();
    assert!(b.fold_one("nobody", &cfg, as_of).is_none());
    // A copy shares the accounts until one is pushed to: the original stays as it was.
    let mut copy = b.clone();
    copy.push(events("2024-07-01 a sub id=a1 amount=400").remove(0));
    let moved = format!("{:?}", copy.fold_one("a", &cfg, as_of).unwrap().0);
    assert_ne!(moved, one[0], "the copy folds its new event");
    assert_eq!(format!("{:?}", b.fold_one("a", &cfg, as_of).unwrap().0), one[0]);
    // Folding in place gives what consuming the builder gives, and leaves it whole.
    let in_place = format!("{:?}", b.fold_all(&cfg, as_of));
    assert_eq!(format!("{:?}", b.fold_all(&cfg, as_of)), in_place);
    // A ledger folded at another instant, folded again over itself: the same.
    for at in [Timestamp(as_of.0 - 400 * tenure_core::time::DAY), as_of] {
        let mut ledger = b.fold_all(&cfg, at);
        b.refold(&mut ledger, &cfg, as_of);
        assert_eq!(format!("{ledger:?}"), in_place, "from {at}");
    }
    // A ledger of other accounts is folded anew.
    let mut other = Ledger::default();
    b.refold(&mut other, &cfg, as_of);
    assert_eq!(format!("{other:?}"), in_place);
    let full = b.finish(&cfg, as_of);
    assert_eq!(format!("{full:?}"), in_place);
    let all: Vec<String> = full.accounts.iter().map(|a| format!("{a:?}")).collect();
    assert_eq!(one, all);
    let moved: Vec<(&str, Option<&str>)> = full
        .accounts
        .iter()
        .flat_map(|a| {
            a.cs.departures.iter().map(|d| (d.contact_id.as_str(), d.moved_to.as_deref()))
        })
        .collect();
    assert_eq!(moved, [("c0", Some("b")), ("c1", Some("b")), ("c2", None), ("c0", Some("a"))]);
    let merged = merged.finish(&cfg, as_of);
    assert_eq!(format!("{:?}", merged.accounts), format!("{:?}", full.accounts));
}

#[test]
fn where_a_contact_was_last_seen() {
    let contact = |ts: &str, acct: &str, id: &str| Event {
        ts: Timestamp::parse(ts).unwrap(),
        account: Some(acct.into()),
        message_id: None,
        body: EventBody::Contact {
            contact_id: id.into(),
            email: None,
            name: None,
            role: None,
            status: None,
        },
    };
    let seen = |b: &LedgerBuilder, id: &str| {
        b.last_seen(id).map(|(ts, a)| format!("{} {a}", ts.date_string()))
    };
    let mut b = LedgerBuilder::new();
    // c1: a, then b; a sighting under a dated before b's, arriving late, does not move it.
    b.push(contact("2024-01-05", "a", "c1"));
    b.push(contact("2024-05-01", "b", "c1"));
    b.push(contact("2024-03-01", "a", "c1"));
    // c2: two sightings at one instant, the one pushed last wins.
    b.push(contact("2024-06-01", "a", "c2"));
    b.push(contact("2024-06-01", "c", "c2"));
    assert_eq!(seen(&b, "c1").as_deref(), Some("2024-05-01 b"));
    assert_eq!(seen(&b, "c2").as_deref(), Some("2024-06-01 c"));
    assert_eq!(seen(&b, "c3"), None);
    // A builder merged in (its own contact and account indexes) is seen through too.
    let mut lane = LedgerBuilder::new();
    lane.push(contact("2024-07-01", "d", "c3"));
    lane.push(contact("2024-07-01", "d", "c1"));
    b.merge(lane);
    assert_eq!(seen(&b, "c1").as_deref(), Some("2024-07-01 d"));
    assert_eq!(seen(&b, "c3").as_deref(), Some("2024-07-01 d"));
}

/// The committed side of each step: `= ts mrr X committed Y (arr Z)`.
fn render_committed(l: &Ledger) -> String {
    let mut s = String::new();
    for a in &l.accounts {
        s += &format!("{}\n", a.id);
        for m in &a.movements {
            s += &format!("  {} {} {}\n", m.ts.date_string(), m.kind.as_str(), money(m.amount));
        }
        for st in &a.steps {
            s += &format!(
                "  = {} mrr {} committed {} (arr {})\n",
                st.ts.date_string(),
                money(st.mrr),
                money(st.committed_mrr),
                money(st.committed_arr)
            );
        }
    }
    s
}

#[test]
fn committed_mrr_leaves_out_lines_whose_end_is_known() {
    // s1: notice given 02-10 for 04-01, withdrawn 03-05. s2: notice 03-20 for 04-15, kept.
    let script = r#"
        2024-01-01 a sub id=s1 amount=100 product=core
        2024-01-01 a sub id=s2 amount=50 product=addon
        2024-02-10 a sub id=s1 amount=100 product=core cancel_at=2024-04-01
        2024-03-05 a sub id=s1 amount=100 product=core
        2024-03-20 a sub id=s2 amount=50 product=addon cancel_at=2024-04-15
        "#;
    // At the event: MRR keeps the lines to their end; committed MRR drops at the notice and
    // comes back when it is withdrawn.
    expect![[r#"
        a
          2024-01-01 new 150.00
          2024-04-15 contraction 50.00
          = 2024-01-01 mrr 150.00 committed 150.00 (arr 1800.00)
          = 2024-02-10 mrr 150.00 committed 50.00 (arr 600.00)
          = 2024-03-05 mrr 150.00 committed 150.00 (arr 1800.00)
          = 2024-03-20 mrr 150.00 committed 100.00 (arr 1200.00)
          = 2024-04-15 mrr 100.00 committed 100.00 (arr 1200.00)
    "#]]
    .assert_eq(&render_committed(&build(script, &tenure(), "2030-01-01")));
    // Scheduled recognition: MRR is already committed MRR.
    expect![[r#"
        a
          2024-01-01 new 150.00
          2024-02-10 contraction 100.00
          2024-03-05 expansion 100.00
          2024-03-20 contraction 50.00
          = 2024-01-01 mrr 150.00 committed 150.00 (arr 1800.00)
          = 2024-02-10 mrr 50.00 committed 50.00 (arr 600.00)
          = 2024-03-05 mrr 150.00 committed 150.00 (arr 1800.00)
          = 2024-03-20 mrr 100.00 committed 100.00 (arr 1200.00)
    "#]]
    .assert_eq(&render_committed(&build(
        script,
        &RevenueConfig { churn_recognition: ChurnRecognition::Scheduled, ..tenure() },
        "2030-01-01",
    )));
    // Known only from its event on: as of 03-01 the withdrawal is not known yet, and a notice
    // whose date is after as_of still counts out.
    let l = build(script, &tenure(), "2024-03-01");
    assert_eq!(
        l.accounts[0].committed_before(Timestamp::parse("2024-06-01").unwrap()),
        (5_000, 60_000)
    );
    assert_eq!(l.accounts[0].mrr_before(Timestamp::parse("2024-06-01").unwrap()), 15_000);
}

#[test]
fn a_cancellation_waiting_for_the_term_end_is_not_committed() {
    expect![[r#"
        a
          2023-01-01 new 100.00
          2024-01-01 churn 100.00
          = 2023-01-01 mrr 100.00 committed 100.00 (arr 1200.00)
          = 2023-06-15 mrr 100.00 committed 0.00 (arr 0.00)
          = 2024-01-01 mrr 0.00 committed 0.00 (arr 0.00)
    "#]]
    .assert_eq(&render_committed(&build(
        r#"
        2023-01-01 a sub amount=1200 interval=12 term_start=2023-01-01 term_end=2024-01-01
        2023-06-15 a sub status=canceled
        "#,
        &RevenueConfig { churn_recognition: ChurnRecognition::TermEnd, ..tenure() },
        "2030-01-01",
    )));
}

#[test]
fn churn_is_involuntary_when_payment_failed_and_carries_its_reason() {
    check(
        r#"
        # Chosen: cancelled with a reason.
        2024-01-01 a sub amount=100
        2024-03-01 a sub status=canceled reason=too_expensive
        # Cancelled while past due: involuntary, even without a reason.
        2024-01-01 b sub amount=200
        2024-02-01 b sub amount=200 status=past_due
        2024-02-10 b sub status=canceled
        # Stripe's reason for a subscription it cancelled after failed payments.
        2024-01-01 c sub amount=300
        2024-03-01 c sub status=canceled reason=payment_failed
        # Notice with a reason, reached at cancel_at.
        2024-01-01 d sub amount=400
        2024-02-01 d sub amount=400 cancel_at=2024-03-15 reason=switched_service
        # The past-due rule (30 days).
        2024-01-01 e sub amount=50 status=past_due
        # Two lines end together: the larger one's reason is the churn's.
        2024-01-01 f sub id=f1 amount=100 product=x
        2024-01-01 f sub id=f2 amount=300 product=y
        2024-03-01 f sub id=f1 status=canceled reason=unused
        2024-03-01 f sub id=f2 status=canceled reason=budget
        "#,
        &tenure(),
        expect![[r#"
            a
              2024-01-01T00:00:00Z new 100.00
              2024-03-01T00:00:00Z churn 100.00 reason=too_expensive
              = 2024-01-01T00:00:00Z mrr 100.00 seats 1 customer true
              = 2024-03-01T00:00:00Z mrr 0.00 seats 0 customer false
            b
              2024-01-01T00:00:00Z new 200.00
              2024-02-10T00:00:00Z churn 200.00 involuntary
              = 2024-01-01T00:00:00Z mrr 200.00 seats 1 customer true
              = 2024-02-10T00:00:00Z mrr 0.00 seats 0 customer false
            c
              2024-01-01T00:00:00Z new 300.00
              2024-03-01T00:00:00Z churn 300.00 involuntary reason=payment_failed
              = 2024-01-01T00:00:00Z mrr 300.00 seats 1 customer true
              = 2024-03-01T00:00:00Z mrr 0.00 seats 0 customer false
            d
              2024-01-01T00:00:00Z new 400.00
              2024-03-15T00:00:00Z churn 400.00 reason=switched_service
              = 2024-01-01T00:00:00Z mrr 400.00 seats 1 customer true
              = 2024-02-01T00:00:00Z mrr 400.00 seats 1 customer true committed 0.00
              = 2024-03-15T00:00:00Z mrr 0.00 seats 0 customer false
            e
              2024-01-01T00:00:00Z new 50.00
              2024-01-31T00:00:00Z churn 50.00 involuntary
              = 2024-01-01T00:00:00Z mrr 50.00 seats 1 customer true
              = 2024-01-31T00:00:00Z mrr 0.00 seats 0 customer false
            f
              2024-01-01T00:00:00Z new 400.00
              2024-03-01T00:00:00Z churn 400.00 reason=budget
              = 2024-01-01T00:00:00Z mrr 400.00 seats 2 customer true
              = 2024-03-01T00:00:00Z mrr 0.00 seats 0 customer false
        "#]],
    );
}

#[test]
fn foreign_lines_keep_their_native_and_booked_amounts() {
    let eur = Currency::parse("EUR").unwrap();
    let mut fx = FxTable::new(Currency::USD);
    fx.add(eur, Timestamp::parse("2024-01-01").unwrap(), "1.10").unwrap();
    fx.add(eur, Timestamp::parse("2024-03-01").unwrap(), "1.50").unwrap();
    let l = build(
        r#"
        2024-01-01 a sub id=s1 amount=100 cur=EUR
        2024-01-01 a sub id=s2 amount=30
        2024-04-01 a sub id=s3 amount=20 cur=EUR
        "#,
        &RevenueConfig { fx: fx.clone(), ..tenure() },
        "2030-01-01",
    );
    let a = &l.accounts[0];
    // s1 booked at 1.10: 110.00; s3 at 1.50: 30.00.
    assert_eq!(&*a.steps[0].fx, &[(eur, 10_000, 11_000)]);
    assert_eq!(&*a.steps[1].fx, &[(eur, 10_000, 11_000), (eur, 2_000, 3_000)]);
    // Before the rate moved, valued at its booked rate: nothing to revalue.
    assert_eq!(a.fx_revaluation_before(Timestamp::parse("2024-02-01").unwrap(), &fx), Some(0));
    // At 1.50: 120 EUR = 180.00 against 140.00 booked.
    assert_eq!(a.fx_revaluation_before(Timestamp::parse("2024-05-01").unwrap(), &fx), Some(4_000));
    // The closing rate of an instant is the one in force just before it: at 03-01 still 1.10.
    assert_eq!(a.fx_revaluation_before(Timestamp::parse("2024-03-01").unwrap(), &fx), Some(0));
    assert_eq!(a.fx_revaluation_before(Timestamp::parse("2024-03-02").unwrap(), &fx), Some(4_000));
    // No rate for the currency: undefined.
    assert_eq!(
        a.fx_revaluation_before(
            Timestamp::parse("2024-05-01").unwrap(),
            &FxTable::new(Currency::USD)
        ),
        None
    );
}

#[test]
fn movements_name_the_events_they_classify() {
    let script = r#"
        2024-01-01T10:00 a sub id=s1 amount=100 status=trialing
        2024-01-15T10:00 a sub id=s1 amount=100
        2024-01-15T10:30 a sub id=s2 amount=50 product=addon
        2024-02-10 a sub id=s1 amount=100 plan=gold
        2024-03-01 a sub id=s1 amount=80
        2024-04-01 a sub id=s1 status=canceled
        2024-04-01 a sub id=s2 status=canceled
        2024-04-01T12:00 b sub id=s9 amount=10 status=past_due
        "#;
    let fold = |keep: bool| {
        let mut b = if keep { LedgerBuilder::new().keep_sources() } else { LedgerBuilder::new() };
        for (i, mut e) in events(script).into_iter().enumerate() {
            if i == 1 || i == 6 {
                e.message_id = Some(format!("evt_{i}"));
            }
            b.push_at(e, Some(i as u64));
        }
        b.finish(&tenure(), Timestamp::parse("2030-01-01").unwrap())
    };
    let render = |l: &Ledger| {
        let mut s = String::new();
        for a in &l.accounts {
            for m in &a.movements {
                let refs: Vec<String> = m.sources.iter().map(|r| r.to_string()).collect();
                s += &format!("{} {} {} {}\n", a.id, m.ts, m.kind.as_str(), refs.join(" "));
            }
        }
        s
    };
    // The trial start changes no MRR, nor the plan change: neither is named. The past-due
    // event is the source of both b's start and its later involuntary churn.
    expect![[r#"
        a 2024-01-15T10:00:00Z new evt_1 log:subscription:2
        a 2024-03-01T00:00:00Z contraction log:subscription:4
        a 2024-04-01T00:00:00Z churn log:subscription:5 evt_6
        b 2024-04-01T12:00:00Z new log:subscription:7
        b 2024-05-01T12:00:00Z churn log:subscription:7
    "#]]
    .assert_eq(&render(&fold(true)));
    // Not kept unless asked for; the movements are the same otherwise.
    let (with, without) = (fold(true), fold(false));
    assert!(without.accounts.iter().all(|a| a.movements.iter().all(|m| m.sources.is_empty())));
    for (x, y) in with.accounts.iter().zip(&without.accounts) {
        let strip = |a: &AccountLedger| {
            a.movements
                .iter()
                .map(|m| Movement { sources: Box::default(), ..m.clone() })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(x), strip(y));
    }
}

/// Two lines ending at the same instant: the notice given first counts, whichever line the
/// fold reads first (here the line that sorts first gave its notice later), so a fold made
/// after both notices says what a fold between them says of that instant.
#[test]
fn a_scheduled_cancellation_keeps_its_earliest_notice() {
    let script = "
        2024-01-01 a sub id=s1 amount=100 product=core
        2024-01-01 a sub id=s2 amount=50 product=addon
        2024-03-20 a sub id=s1 amount=100 product=core cancel_at=2024-06-01
        2024-02-10 a sub id=s2 amount=50 product=addon cancel_at=2024-06-01";
    let at = |s: &str| Timestamp::parse(s).unwrap();
    let later = build(script, &tenure(), "2024-05-01");
    assert_eq!(
        later.accounts[0].cancellations_scheduled,
        vec![(at("2024-02-10"), at("2024-06-01"))]
    );
    let between = build(script, &tenure(), "2024-03-01");
    assert_eq!(
        between.accounts[0].cancellations_scheduled,
        later.accounts[0].cancellations_scheduled
    );
}

/// A group of changes within the grouping window is named as a span a fold inside it would
/// see otherwise; a renewal's due date moved earlier by an amendment likewise.
#[test]
fn rewrites_name_groups_and_amended_due_dates() {
    let l = build(
        "2024-01-01 a sub id=s1 amount=100 interval=12 term_start=2024-01-01 term_end=2025-01-01
         2024-03-01T10:00 a sub id=s1 amount=100 interval=12 term_start=2024-01-01 term_end=2024-12-01
         2024-03-01T10:30 a sub id=s1 amount=120 interval=12 term_start=2024-01-01 term_end=2024-12-01",
        &tenure(),
        "2024-06-01",
    );
    let at = |s: &str| Timestamp::parse(s).unwrap();
    assert_eq!(
        l.accounts[0].rewrites,
        vec![
            (at("2024-01-01"), at("2024-03-01T10:00:00Z")),
            (at("2024-03-01T10:00:00Z"), at("2024-03-01T10:30:00Z"))
        ]
    );
}

/// `changes_at` is the first instant after `as_of` at which a fold sees more: the next
/// event, or a change derived from the events before it (an unpaid line churning, a
/// cancellation scheduled or sent mid-term taking effect). A fold just before it gives the
/// same account; a fold at it does not.
#[test]
fn changes_at_is_the_next_instant_a_fold_sees_more() {
    let at = |s: &str| Timestamp::parse(s).unwrap();
    let script = "2024-01-01 a sub id=s1 amount=100
         2024-03-01 a sub id=s1 amount=100 status=past_due
         2024-01-01 b sub id=s2 amount=50
         2024-03-05 b sub id=s2 amount=50 cancel_at=2024-04-20
         2024-01-01 c sub id=s3 amount=1200 interval=12 term_start=2024-01-01 term_end=2025-01-01
         2024-02-10 c sub id=s3 amount=1200 interval=12 term_start=2024-01-01 term_end=2025-01-01 status=canceled
         2024-01-01 d sub id=s4 amount=70
         2024-05-02 d sub id=s4 amount=90";
    let past_due = RevenueConfig { past_due_churn_days: Some(30), ..tenure() };
    let never = RevenueConfig { past_due_churn_days: None, ..tenure() };
    let term_end = RevenueConfig { churn_recognition: ChurnRecognition::TermEnd, ..never.clone() };
    let scheduled =
        RevenueConfig { churn_recognition: ChurnRecognition::Scheduled, ..never.clone() };
    for (cfg, as_of, want) in [
        // The unpaid line churns 30 days after it fell due; the notice takes effect at its
        // date; the next event of d.
        (&past_due, "2024-03-10", ["2024-03-31", "2024-04-20", "", "2024-05-02"]),
        (&past_due, "2024-04-01", ["", "2024-04-20", "", "2024-05-02"]),
        (&never, "2024-03-10", ["", "2024-04-20", "", "2024-05-02"]),
        // At the term end, the cancelled annual line churns at its term's end.
        (&term_end, "2024-03-10", ["", "2024-04-20", "2025-01-01", "2024-05-02"]),
        (&term_end, "2024-01-15", ["2024-03-01", "2024-03-05", "2024-02-10", "2024-05-02"]),
        // When scheduled, the MRR leaves at the notice; a renewal would be lost at its date.
        (&scheduled, "2024-03-10", ["", "2024-04-20", "", "2024-05-02"]),
    ] {
        let l = build(script, cfg, as_of);
        let got: Vec<String> = l
            .accounts
            .iter()
            .map(|a| a.changes_at.map_or(String::new(), |t| t.to_string()[..10].to_string()))
            .collect();
        assert_eq!(got, want, "{as_of} {:?} {:?}", cfg.churn_recognition, cfg.past_due_churn_days);
        // Just before it, the same account; at it, more.
        for a in &l.accounts {
            let Some(next) = a.changes_at else { continue };
            let before = build(script, cfg, &Timestamp(next.0 - 1).to_string());
            let b = before.account(&a.id).unwrap();
            assert_eq!(format!("{b:?}"), format!("{a:?}"), "{} before {next}", a.id);
            // At a derived change, the MRR moves (an event may change nothing the steps show).
            if [at("2024-03-31"), at("2024-04-20"), at("2025-01-01")].contains(&next)
                && cfg.churn_recognition != ChurnRecognition::Scheduled
            {
                let then = build(script, cfg, &next.to_string());
                let b = then.account(&a.id).unwrap();
                assert_ne!(
                    format!("{:?}", b.steps),
                    format!("{:?}", a.steps),
                    "{} at {next}",
                    a.id
                );
            }
        }
    }
}
