//! The worked examples of kpis.md, and the invariants every report must keep.

use super::*;
use expect_test::expect;
use proptest::prelude::*;
use tenure_core::event::{Event, EventBody, LineKind, SubStatus, Subscription};
use tenure_core::money::{Currency, FxTable, Money};
use tenure_core::time::Timestamp;
use tenure_ledger::{LedgerBuilder, Preset, RevenueConfig};

fn cfg() -> KpiConfig {
    KpiConfig::defaults()
}

fn rev() -> RevenueConfig {
    RevenueConfig::preset(Preset::Tenure, FxTable::new(Currency::USD))
}

fn sub(ts: &str, account: &str, id: &str, mrr_minor: i64, status: SubStatus) -> Event {
    Event {
        ts: Timestamp::parse(ts).unwrap(),
        account: Some(account.to_string()),
        message_id: None,
        body: EventBody::Subscription(Box::new(Subscription {
            subscription_id: id.to_string(),
            product: None,
            plan: Some("pro".into()),
            kind: LineKind::Product,
            quantity: 1,
            amount: Money { minor: mrr_minor, currency: Currency::USD },
            interval_months: 1,
            status,
            term_start: None,
            term_end: None,
            cancel_reason: None,
            cancel_at: None,
        })),
    }
}

fn ledger(events: Vec<Event>) -> Ledger {
    let mut b = LedgerBuilder::new();
    for e in events {
        b.push(e);
    }
    b.finish(&rev(), Timestamp::parse("2030-01-01").unwrap())
}

fn get(k: &Kpis, id: &str) -> Value {
    k.get(id).cloned().unwrap_or_else(|| panic!("no {id}"))
}

#[test]
fn recurring_revenue_rate_example() {
    // Start 100; added 50 (45 new customers, 5 expansion); lost 30 (25 churn, 5 downgrade); end 120.
    let mut ev = vec![
        sub("2024-01-01", "a", "a", 5_000, SubStatus::Active),
        sub("2024-01-01", "b", "b", 2_500, SubStatus::Active),
        sub("2024-01-01", "c", "c", 2_500, SubStatus::Active),
        sub("2024-02-05", "a", "a", 5_500, SubStatus::Active),
        sub("2024-02-06", "b", "b", 2_000, SubStatus::Active),
        sub("2024-02-07", "c", "c", 0, SubStatus::Canceled),
        sub("2024-02-08", "d", "d", 4_500, SubStatus::Active),
    ];
    ev.reverse(); // arrival order does not matter
    let rows = report(&ledger(ev), &[Period::parse("2024-02").unwrap()], None, &cfg());
    let k = &rows[0].kpis;
    assert_eq!(get(k, "mrr_start"), Value::Money(10_000));
    assert_eq!(get(k, "mrr_end"), Value::Money(12_000));
    assert_eq!(get(k, "recurring_revenue_rate"), Value::Rate(Some(1.2)));
    assert_eq!(get(k, "mrr_new"), Value::Money(4_500));
    assert_eq!(get(k, "mrr_expansion"), Value::Money(500));
    assert_eq!(get(k, "mrr_churn"), Value::Money(2_500));
    assert_eq!(get(k, "mrr_contraction"), Value::Money(500));
    // NRR = (100 + 5 - 5 - 25) / 100; GRR = (55 capped at 50 + 20) / 100.
    assert_eq!(get(k, "nrr"), Value::Rate(Some(0.75)));
    assert_eq!(get(k, "grr"), Value::Rate(Some(0.7)));
    assert_eq!(get(k, "revenue_churn_rate"), Value::Rate(Some(0.3)));
    assert_eq!(get(k, "quick_ratio"), Value::Number(Some(5_000.0 / 3_000.0)));
    assert_eq!(get(k, "customers_start"), Value::Count(3));
    assert_eq!(get(k, "customers_end"), Value::Count(3));
    assert_eq!(get(k, "customer_retention_rate"), Value::Rate(Some(2.0 / 3.0)));
    // Net expansion (seed formula): 120 - 100 - 45 = -25.
    assert_eq!(get(k, "expansion_net"), Value::Money(-2_500));
}

#[test]
fn logo_churn_example() {
    // 1,200 subscribers at the start of June, 24 leave during June -> 2%.
    let mut ev = Vec::new();
    for i in 0..1200 {
        let id = format!("c{i:04}");
        ev.push(sub("2024-05-01", &id, &id, 1_000, SubStatus::Active));
        if i < 24 {
            ev.push(sub("2024-06-15", &id, &id, 0, SubStatus::Canceled));
        }
    }
    // A customer who joins and leaves in June is not in the rate (reported apart).
    ev.push(sub("2024-06-02", "late", "late", 1_000, SubStatus::Active));
    ev.push(sub("2024-06-20", "late", "late", 0, SubStatus::Canceled));
    let rows = report(&ledger(ev), &[Period::parse("2024-06").unwrap()], None, &cfg());
    let k = &rows[0].kpis;
    assert_eq!(get(k, "logo_churn_rate"), Value::Rate(Some(0.02)));
    assert_eq!(get(k, "customers_churned"), Value::Count(24));
    assert_eq!(get(k, "customers_new_and_churned"), Value::Count(1));
    let Value::Interval(Some((lo, hi))) = get(k, "logo_churn_rate_ci95") else { panic!() };
    assert!((lo - 0.013_476_268_672_128).abs() < 1e-9 && (hi - 0.029_587_091_906_497).abs() < 1e-9);
    // ARPA $10, monthly churn 2% -> CLTV $500.
    assert_eq!(get(k, "arpa"), Value::MaybeMoney(Some(1_000)));
    assert_eq!(get(k, "cltv"), Value::MaybeMoney(Some(50_000)));
    assert_eq!(get(k, "avg_lifetime_months"), Value::Number(Some(50.0)));
}

#[test]
fn a_customer_who_churns_and_returns_within_the_period() {
    // Start 100; cancelled, back at 300, down to 50, all in February.
    let ev = vec![
        sub("2024-01-01", "a", "a", 10_000, SubStatus::Active),
        sub("2024-02-05", "a", "a", 0, SubStatus::Canceled),
        sub("2024-02-10", "a", "a", 30_000, SubStatus::Active),
        sub("2024-02-20", "a", "a", 5_000, SubStatus::Active),
        sub("2024-01-01", "b", "b", 10_000, SubStatus::Active),
        sub("2024-02-15", "b", "b", 0, SubStatus::Canceled),
    ];
    let rows = report(&ledger(ev), &[Period::parse("2024-02").unwrap()], None, &cfg());
    let k = &rows[0].kpis;
    // NRR = end MRR of the start customers / their start MRR = 50 / 200; never below GRR.
    assert_eq!(get(k, "nrr"), Value::Rate(Some(0.25)));
    assert_eq!(get(k, "grr"), Value::Rate(Some(0.25)));
    // a is still a customer at the end: retained, not churned, but counted as returned.
    assert_eq!(get(k, "customers_churned"), Value::Count(1));
    assert_eq!(get(k, "customers_churned_and_returned"), Value::Count(1));
    assert_eq!(get(k, "logo_churn_rate"), Value::Rate(Some(0.5)));
    assert_eq!(get(k, "customer_retention_rate"), Value::Rate(Some(0.5)));
}

#[test]
fn undefined_rates_are_null() {
    let rows = report(&ledger(vec![]), &[Period::parse("2024-06").unwrap()], None, &cfg());
    let k = &rows[0].kpis;
    for id in ["nrr", "grr", "logo_churn_rate", "recurring_revenue_rate", "contract_renewal_rate"] {
        assert_eq!(get(k, id), Value::Rate(None), "{id}");
    }
    assert_eq!(get(k, "quick_ratio"), Value::Number(None));
    assert_eq!(get(k, "cltv"), Value::MaybeMoney(None));
    assert_eq!(get(k, "logo_churn_rate_ci95"), Value::Interval(None));
}

#[test]
fn cohort_tables() {
    let ev = vec![
        sub("2024-01-10", "a", "a", 1_000, SubStatus::Active),
        sub("2024-01-20", "b", "b", 1_000, SubStatus::Active),
        sub("2024-02-15", "a", "a", 3_000, SubStatus::Active),
        sub("2024-03-15", "b", "b", 0, SubStatus::Canceled),
        sub("2024-02-01", "c", "c", 500, SubStatus::Active),
    ];
    let mut b = LedgerBuilder::new();
    for e in ev {
        b.push(e);
    }
    let l = b.finish(&rev(), Timestamp::parse("2024-04-10").unwrap());
    let render = |t: &CohortTable| {
        t.rows
            .iter()
            .map(|r| {
                let v: Vec<String> =
                    r.values.iter().map(|v| v.map_or("-".into(), |x| format!("{x:.2}"))).collect();
                format!("{} n={} base={} | {}", r.label, r.accounts, r.base_mrr, v.join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    expect![[r#"
        2024-01 n=2 base=2000 | 1.00 1.00 0.50
        2024-02 n=1 base=500 | 1.00 1.00"#]]
    .assert_eq(&render(&cohorts(&l, PeriodUnit::Month, CohortMetric::Logo)));
    expect![[r#"
        2024-01 n=2 base=2000 | 1.00 2.00 1.50
        2024-02 n=1 base=500 | 1.00 1.00"#]]
    .assert_eq(&render(&cohorts(&l, PeriodUnit::Month, CohortMetric::Revenue)));
}

use tenure_core::time::PeriodUnit;

/// A random history: per account, a sequence of (day offset, line, amount cents, status).
type History = Vec<(u8, Vec<(u16, u8, u32, u8)>)>;

fn history() -> impl Strategy<Value = History> {
    prop::collection::vec(
        (0u8..4, prop::collection::vec((0u16..400, 0u8..3, 0u32..50_000, 0u8..5), 0..12)),
        1..25,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn movements_explain_mrr_in_every_period_and_segment(h in history(), grouping in prop::bool::ANY, interval in 1u32..13) {
        let t0 = Timestamp::parse("2023-01-01").unwrap();
        let mut b = LedgerBuilder::new();
        for (i, (seg, changes)) in h.iter().enumerate() {
            let account = format!("a{i}");
            b.push(Event {
                ts: t0,
                account: Some(account.clone()),
                message_id: None,
                body: EventBody::Account {
                    name: None,
                    attributes: vec![("region".into(), tenure_core::event::AttrValue::Str(format!("r{seg}")))],
                },
            });
            for (day, line, amount, status) in changes {
                let mut e = sub(&t0.add_days(*day as i64).to_string(), &account, &format!("{account}-{line}"), *amount as i64, SubStatus::ALL[*status as usize]);
                if let EventBody::Subscription(s) = &mut e.body { s.interval_months = interval; s.product = Some(format!("p{line}")); }
                e.ts = Timestamp(e.ts.0 + *line as i64 * 1_000_000);
                b.push(e);
            }
        }
        let mut rc = rev();
        if !grouping { rc.grouping_window_secs = 0; }
        let l = b.finish(&rc, Timestamp::parse("2024-03-01").unwrap());
        let periods = Period::parse("2023-01..2024-03").unwrap().split(PeriodUnit::Month);
        let by = By::parse("region");
        let total = report(&l, &periods, None, &cfg());
        let cut = report(&l, &periods, Some(&by), &cfg());
        let money = |k: &Kpis, id: &str| match k.get(id) { Some(Value::Money(m)) => *m, _ => panic!("{id}") };
        for row in total.iter().chain(cut.iter()) {
            let k = &row.kpis;
            prop_assert_eq!(
                money(k, "mrr_end"),
                money(k, "mrr_start") + money(k, "mrr_new") + money(k, "mrr_reactivation") + money(k, "mrr_expansion")
                    - money(k, "mrr_contraction") - money(k, "mrr_churn")
            );
            prop_assert_eq!(money(k, "mrr_expansion"), money(k, "upsell") + money(k, "cross_sell"));
            if let Some(Value::Rate(Some(g))) = k.get("grr") {
                prop_assert!(*g <= 1.0 + 1e-12);
                let Some(Value::Rate(Some(n))) = k.get("nrr") else { panic!("nrr undefined where grr is not") };
                prop_assert!(*n >= *g - 1e-12, "nrr {} below grr {}", n, g);
            }
            if let (Some(Value::Rate(Some(c))), Some(Value::Rate(Some(r)))) = (k.get("logo_churn_rate"), k.get("customer_retention_rate")) {
                prop_assert!((c + r - 1.0).abs() < 1e-12);
            }
        }
        for t in &total {
            for id in ["mrr_start", "mrr_end", "mrr_new", "mrr_expansion", "mrr_contraction", "mrr_churn", "mrr_reactivation"] {
                let sum: i64 = cut.iter().filter(|r| r.period == t.period).map(|r| money(&r.kpis, id)).sum();
                prop_assert_eq!(sum, money(&t.kpis, id), "{} in {}", id, t.period);
            }
        }
        // Consecutive periods chain.
        for w in total.windows(2) {
            prop_assert_eq!(money(&w[0].kpis, "mrr_end"), money(&w[1].kpis, "mrr_start"));
        }
    }
}
