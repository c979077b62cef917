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
                if let EventBody::Subscription(s) = &mut e.body {
                    s.interval_months = interval;
                    s.product = Some(format!("p{line}"));
                    // Line 2 is in euros; cancellations give a reason by line; some
                    // active states give notice.
                    if *line == 2 { s.amount.currency = Currency::parse("EUR").unwrap(); }
                    if s.status == SubStatus::Canceled {
                        s.cancel_reason = [Some("too_expensive"), None, Some("payment_failed")][*line as usize].map(str::to_string);
                    }
                    if s.status == SubStatus::Active && amount % 5 == 0 {
                        s.cancel_at = Some(e.ts.add_days((*amount % 60) as i64));
                    }
                }
                e.ts = Timestamp(e.ts.0 + *line as i64 * 1_000_000);
                b.push(e);
            }
        }
        let mut rc = rev();
        if !grouping { rc.grouping_window_secs = 0; }
        // The euro moves every month.
        for k in 0..16i64 {
            let from = t0.add_months(k);
            rc.fx.add(Currency::parse("EUR").unwrap(), from, &format!("{:.2}", 0.8 + 0.05 * ((k * 7) % 11) as f64)).unwrap();
        }
        let l = b.finish(&rc, Timestamp::parse("2024-03-01").unwrap());
        let periods = Period::parse("2023-01..2024-03").unwrap().split(PeriodUnit::Month);
        let by = By::parse("region");
        let total = report(&l, &periods, None, &cfg());
        let cut = report(&l, &periods, Some(&by), &cfg());
        let money = |k: &Kpis, id: &str| match k.get(id) { Some(Value::Money(m)) | Some(Value::MaybeMoney(Some(m))) => *m, _ => panic!("{id}") };
        let count = |k: &Kpis, id: &str| match k.get(id) { Some(Value::Count(c)) => *c, _ => panic!("{id}") };
        for row in total.iter().chain(cut.iter()) {
            let k = &row.kpis;
            // The bridge at closing rates closes with the FX row.
            prop_assert_eq!(
                money(k, "mrr_end_at_closing_rates"),
                money(k, "mrr_start_at_closing_rates") + money(k, "mrr_new") + money(k, "mrr_reactivation") + money(k, "mrr_expansion")
                    - money(k, "mrr_contraction") - money(k, "mrr_churn") + money(k, "mrr_fx_impact")
            );
            prop_assert_eq!(money(k, "mrr_churn"), money(k, "mrr_churn_voluntary") + money(k, "mrr_churn_involuntary"));
            let by_reason: i64 = k.0.iter().filter(|(id, _)| id.starts_with("mrr_churn_by_reason.")).map(|(id, _)| money(k, id)).sum();
            prop_assert_eq!(by_reason, money(k, "mrr_churn"));
            prop_assert_eq!(count(k, "customers_churned"), count(k, "customers_churned_voluntary") + count(k, "customers_churned_involuntary"));
            prop_assert!(money(k, "committed_mrr_start") <= money(k, "mrr_start"));
            prop_assert!(money(k, "committed_mrr_end") <= money(k, "mrr_end"));
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
            for id in ["mrr_start", "mrr_end", "mrr_new", "mrr_expansion", "mrr_contraction", "mrr_churn", "mrr_reactivation",
                       "committed_mrr_start", "committed_mrr_end", "committed_arr_end", "mrr_churn_involuntary", "mrr_fx_impact", "mrr_end_at_closing_rates"] {
                let sum: i64 = cut.iter().filter(|r| r.period == t.period).map(|r| money(&r.kpis, id)).sum();
                prop_assert_eq!(sum, money(&t.kpis, id), "{} in {}", id, t.period);
            }
        }
        // Consecutive periods chain.
        for w in total.windows(2) {
            prop_assert_eq!(money(&w[0].kpis, "mrr_end"), money(&w[1].kpis, "mrr_start"));
            prop_assert_eq!(money(&w[0].kpis, "committed_mrr_end"), money(&w[1].kpis, "committed_mrr_start"));
            prop_assert_eq!(money(&w[0].kpis, "mrr_end_at_closing_rates"), money(&w[1].kpis, "mrr_start_at_closing_rates"));
        }
    }
}

/// The ledger of JSONL events (every line accepted) under `cfg`, as of 2030-01-01.
fn ledger_jsonl(jsonl: &str, cfg: &RevenueConfig) -> Ledger {
    let (events, rejected) = tenure_ingest::parse_jsonl_block(
        jsonl,
        1,
        None,
        &tenure_ingest::IngestConfig::defaults(None),
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    let mut b = LedgerBuilder::new();
    for (_, e) in events {
        b.push(e);
    }
    b.finish(cfg, Timestamp::parse("2030-01-01").unwrap())
}

/// A monthly line of `account` (its id is the account's): a JSON line with `extra` fields.
fn line(ts: &str, account: &str, amount: &str, extra: &str) -> String {
    format!(
        r#"{{"type":"subscription","timestamp":"{ts}","account_id":"{account}","subscription_id":"{account}","amount":"{amount}","currency":"USD","interval":"month"{extra}}}"#
    ) + "\n"
}

#[test]
fn committed_mrr_beside_mrr() {
    // x: notice given in March for May. y: notice in February for 03-15 (reached in March).
    // z: notice in February, withdrawn in March.
    let jsonl = [
        line("2024-01-01", "x", "100", r#","status":"active""#),
        line("2024-03-10", "x", "100", r#","status":"active","cancel_at":"2024-05-01""#),
        line("2024-01-01", "y", "50", r#","status":"active""#),
        line("2024-02-10", "y", "50", r#","status":"active","cancel_at":"2024-03-15""#),
        line("2024-01-01", "z", "70", r#","status":"active""#),
        line("2024-02-01", "z", "70", r#","status":"active","cancel_at":"2024-06-01""#),
        line("2024-03-05", "z", "70", r#","status":"active""#),
    ]
    .concat();
    let march = [Period::parse("2024-03").unwrap()];
    let k = &report(&ledger_jsonl(&jsonl, &rev()), &march, None, &cfg())[0].kpis;
    // Start: x 100, y 50 and z 70 in MRR; y and z under notice. End: y gone, x under notice.
    assert_eq!(get(k, "mrr_start"), Value::Money(22_000));
    assert_eq!(get(k, "committed_mrr_start"), Value::Money(10_000));
    assert_eq!(get(k, "committed_arr_start"), Value::Money(120_000));
    assert_eq!(get(k, "mrr_end"), Value::Money(17_000));
    assert_eq!(get(k, "committed_mrr_end"), Value::Money(7_000));
    assert_eq!(get(k, "committed_arr_end"), Value::Money(84_000));
    assert_eq!(get(k, "mrr_churn"), Value::Money(5_000));
    // Recognising churn at the notice makes MRR the committed MRR: the same run says so.
    let scheduled =
        RevenueConfig { churn_recognition: tenure_ledger::ChurnRecognition::Scheduled, ..rev() };
    let k = &report(&ledger_jsonl(&jsonl, &scheduled), &march, None, &cfg())[0].kpis;
    assert_eq!(get(k, "mrr_start"), Value::Money(10_000));
    assert_eq!(get(k, "committed_mrr_start"), Value::Money(10_000));
    assert_eq!(get(k, "mrr_end"), Value::Money(7_000));
    assert_eq!(get(k, "committed_mrr_end"), Value::Money(7_000));
}

#[test]
fn voluntary_and_involuntary_churn_by_reason() {
    let jsonl = [
        // Chosen, with reasons.
        line("2024-01-01", "a", "100", r#","status":"active""#),
        line("2024-03-05", "a", "100", r#","status":"canceled","cancel_reason":"too_expensive""#),
        line("2024-01-01", "d", "400", r#","status":"active""#),
        line("2024-03-20", "d", "400", r#","status":"canceled","cancel_reason":"too_expensive""#),
        line("2024-01-01", "e", "40", r#","status":"active""#),
        line("2024-03-25", "e", "40", r#","status":"canceled""#),
        // Cancelled while past due, without a reason: involuntary, `unpaid`.
        line("2024-01-01", "b", "200", r#","status":"active""#),
        line("2024-03-01", "b", "200", r#","status":"past_due""#),
        line("2024-03-10", "b", "200", r#","status":"canceled""#),
        // Stripe's reason after failed payments.
        line("2024-01-01", "c", "300", r#","status":"active""#),
        line("2024-03-12", "c", "300", r#","status":"canceled","cancel_reason":"payment_failed""#),
        // Past due from 02-10: churned by the 30-day rule on 03-11.
        line("2024-02-01", "f", "60", r#","status":"active""#),
        line("2024-02-10", "f", "60", r#","status":"past_due""#),
        // Churns and comes back in March: churn MRR, but not a customer lost.
        line("2024-01-01", "g", "80", r#","status":"active""#),
        line("2024-03-02", "g", "80", r#","status":"canceled","cancel_reason":"unused""#),
        line("2024-03-20", "g", "80", r#","status":"active""#),
    ]
    .concat();
    let l = ledger_jsonl(&jsonl, &rev());
    let march = [Period::parse("2024-03").unwrap()];
    let k = &report(&l, &march, None, &cfg())[0].kpis;
    // 100 + 400 + 40 + 80 chosen; 200 + 300 + 60 for want of payment.
    assert_eq!(get(k, "mrr_churn"), Value::Money(118_000));
    assert_eq!(get(k, "mrr_churn_voluntary"), Value::Money(62_000));
    assert_eq!(get(k, "mrr_churn_involuntary"), Value::Money(56_000));
    assert_eq!(get(k, "customers_churned"), Value::Count(6));
    assert_eq!(get(k, "customers_churned_voluntary"), Value::Count(3));
    assert_eq!(get(k, "customers_churned_involuntary"), Value::Count(3));
    let by_reason: Vec<(String, Value)> =
        k.0.iter()
            .filter(|(id, _)| id.starts_with("mrr_churn_by_reason."))
            .map(|(id, v)| (id.to_string(), v.clone()))
            .collect();
    // Largest first.
    assert_eq!(
        by_reason,
        [
            ("mrr_churn_by_reason.too_expensive", 50_000),
            ("mrr_churn_by_reason.payment_failed", 30_000),
            ("mrr_churn_by_reason.unpaid", 26_000),
            ("mrr_churn_by_reason.unused", 8_000),
            ("mrr_churn_by_reason.unspecified", 4_000),
        ]
        .map(|(id, m)| (id.to_string(), Value::Money(m)))
    );
    // No rates needed with every line in the base currency: the FX line is a real 0.
    assert_eq!(get(k, "mrr_fx_impact"), Value::MaybeMoney(Some(0)));
    // Cut by account, every row has every reason (0 where it has none) and the cut sums.
    let cut = report(&l, &march, Some(&By::parse("account")), &cfg());
    let ids = |r: &Row| r.kpis.0.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>();
    assert!(cut.iter().all(|r| ids(r) == ids(&cut[0])));
    assert_eq!(get(&cut[0].kpis, "mrr_churn_by_reason.too_expensive"), Value::Money(10_000));
    assert_eq!(get(&cut[0].kpis, "mrr_churn_by_reason.unpaid"), Value::Money(0));
}

#[test]
fn fx_impact_is_the_row_that_closes_the_bridge_at_closing_rates() {
    let eur = Currency::parse("EUR").unwrap();
    let mut fx = FxTable::new(Currency::USD);
    for (from, rate) in [
        ("2024-01-01", "1.10"),
        ("2024-02-15", "1.20"),
        ("2024-03-20", "1.30"),
        // In force from the end of March: not March's closing rate.
        ("2024-04-01", "2.00"),
    ] {
        fx.add(eur, Timestamp::parse(from).unwrap(), rate).unwrap();
    }
    let eur_line = |ts: &str, a: &str, amount: &str, status: &str| {
        line(ts, a, amount, &format!(r#","status":"{status}""#)).replace("\"USD\"", "\"EUR\"")
    };
    let jsonl = [
        // Booked at 1.10: 110.00.
        eur_line("2024-01-01", "a", "100", "active"),
        // Booked at 1.20 in March: 60.00.
        eur_line("2024-03-10", "b", "50", "active"),
        // Booked at 1.10: 220.00; churns in March.
        eur_line("2024-01-01", "c", "200", "active"),
        eur_line("2024-03-25", "c", "200", "canceled"),
        line("2024-01-01", "d", "1000", r#","status":"active""#),
    ]
    .concat();
    let l = ledger_jsonl(&jsonl, &RevenueConfig { fx, ..rev() });
    let periods = Period::parse("2024-01..2024-04").unwrap().split(PeriodUnit::Month);
    let rows = report(&l, &periods, None, &cfg());
    let m = |row: usize, id: &str| get(&rows[row].kpis, id);
    let some = |x: i64| Value::MaybeMoney(Some(x));
    // January: every line at the rate it was booked at, and that rate closes the month.
    assert_eq!(m(0, "mrr_fx_impact"), some(0));
    assert_eq!(m(0, "mrr_end_at_closing_rates"), some(133_000));
    // February closes at 1.20: a is worth 120.00 (+10), c 240.00 (+20).
    assert_eq!(m(1, "mrr_start_at_closing_rates"), some(133_000));
    assert_eq!(m(1, "mrr_fx_impact"), some(3_000));
    assert_eq!(m(1, "mrr_end_at_closing_rates"), some(136_000));
    // March: starts at 1.20 (a 120, c 240, d 1000 = 1360), closes at 1.30 (a 130, b 65,
    // d 1000 = 1195). Booked: start 1330, +60 new, -220 churn, end 1170. FX: the end's
    // revaluation (a +20, b +5) less the start's (a +10, c +20) = -5.00: c left worth 240.00
    // at closing rates, 220.00 of it booked as churn.
    assert_eq!(m(2, "mrr_start"), Value::Money(133_000));
    assert_eq!(m(2, "mrr_new"), Value::Money(6_000));
    assert_eq!(m(2, "mrr_churn"), Value::Money(22_000));
    assert_eq!(m(2, "mrr_end"), Value::Money(117_000));
    assert_eq!(m(2, "mrr_start_at_closing_rates"), some(136_000));
    assert_eq!(m(2, "mrr_fx_impact"), some(-500));
    assert_eq!(m(2, "mrr_end_at_closing_rates"), some(119_500));
    // A currency without a rate: undefined, not 0.
    let gbp = line("2024-01-01", "g", "10", r#","status":"active""#).replace("\"USD\"", "\"GBP\"");
    let l = ledger_jsonl(&gbp, &rev());
    let k = &report(&l, &periods[2..], None, &cfg())[0].kpis;
    for id in ["mrr_fx_impact", "mrr_start_at_closing_rates", "mrr_end_at_closing_rates"] {
        assert_eq!(get(k, id), Value::MaybeMoney(None), "{id}");
    }
}

#[test]
fn root_causes_of_resolved_tasks() {
    let task = |ts: &str, account: &str, id: &str, extra: &str| {
        format!(
            r#"{{"type":"task","timestamp":"{ts}","account_id":"{account}","task_id":"{id}"{extra}}}"#
        ) + "\n"
    };
    let jsonl = [
        line("2024-01-01", "a", "100", r#","status":"active""#),
        line("2024-01-01", "b", "300", r#","status":"active""#),
        line("2024-03-02", "b", "500", r#","status":"active""#),
        // a: two price tasks resolved in March (its MRR counts once), one after March.
        task("2024-02-01", "a", "t1", r#","status":"open""#),
        task("2024-03-05", "a", "t1", r#","status":"done","root_cause":"price""#),
        task("2024-03-01", "a", "t2", r#","status":"open""#),
        task("2024-03-10", "a", "t2", r#","status":"done","root_cause":"price""#),
        task("2024-03-15", "a", "t6", r#","status":"open""#),
        task("2024-04-02", "a", "t6", r#","status":"done","root_cause":"competitor""#),
        // b: another spelling of a cause, free text, none, and a dismissal.
        task("2024-03-03", "b", "t3", r#","status":"open""#),
        task("2024-03-20", "b", "t3", r#","status":"done","root_cause":"Product gap""#),
        task("2024-03-04", "b", "t4", r#","status":"open""#),
        task("2024-03-25", "b", "t4", r#","status":"done""#),
        task("2024-03-01", "b", "t5", r#","status":"open""#),
        task("2024-03-02", "b", "t5", r#","status":"dismissed","root_cause":"price""#),
        task("2024-03-06", "b", "t7", r#","status":"open""#),
        task("2024-03-28", "b", "t7", r#","status":"done","root_cause":"the CFO hates us""#),
    ]
    .concat();
    let l = ledger_jsonl(&jsonl, &rev());
    let march = [Period::parse("2024-03").unwrap()];
    let k = &report(&l, &march, None, &cfg())[0].kpis;
    assert_eq!(get(k, "tasks_resolved"), Value::Count(5));
    assert_eq!(get(k, "tasks_resolved_without_root_cause"), Value::Count(1));
    let mut causes = 0;
    for c in tenure_core::event::RootCause::ALL {
        let (n, mrr) = match c.as_str() {
            // a's MRR when t1 opened.
            "price" => (2, 10_000),
            // b's MRR when t3 (and t7) opened: 500.
            "product_gap" | "other" => (1, 50_000),
            _ => (0, 0),
        };
        assert_eq!(get(k, &format!("root_cause_tasks.{}", c.as_str())), Value::Count(n), "{c:?}");
        assert_eq!(get(k, &format!("root_cause_mrr.{}", c.as_str())), Value::Money(mrr), "{c:?}");
        causes += n;
    }
    assert_eq!(causes + 1, 5);
    // The report of root causes alone holds those ids only, in the same order.
    let only = root_causes(&l, &march, None, &cfg());
    let ids: Vec<&str> = only[0].kpis.0.iter().map(|(id, _)| id.as_ref()).collect();
    assert_eq!(ids.len(), 2 + 2 * tenure_core::event::RootCause::ALL.len());
    assert_eq!(
        &ids[..3],
        ["tasks_resolved", "tasks_resolved_without_root_cause", "root_cause_tasks.product_gap"]
    );
}
