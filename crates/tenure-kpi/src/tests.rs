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
        let mut b = LedgerBuilder::new().keep_sources();
        let mut position = 0;
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
                b.push_at(e, Some(position));
                position += 1;
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
        // Every movement names the events it classifies.
        for a in &l.accounts {
            for m in &a.movements {
                prop_assert!(!m.sources.is_empty(), "{} {:?} has no source", a.id, m);
            }
        }
        // Explanations sum to the catalogue's figures: whole, per segment and for a segment,
        // for a month and for the whole (multi-month) period.
        use explain::{Kpi, Selection, explain};
        let whole = Period::parse("2023-01..2024-03").unwrap();
        let whole_rows = report(&l, &[whole], None, &cfg());
        let whole_cut = report(&l, &[whole], Some(&by), &cfg());
        for (p, rows, cut_rows) in [(periods[5], &total[5..6], cut.iter().filter(|r| r.period == periods[5]).cloned().collect::<Vec<_>>()), (whole, &whole_rows[..], whole_cut.clone())] {
            for kpi in Kpi::ALL {
                let e = explain(&l, kpi, p, &Selection::default(), &cfg());
                prop_assert_eq!(e.total, money(&rows[0].kpis, kpi.id()), "{} {}", kpi.id(), p);
                prop_assert!(e.balances());
                let e = explain(&l, kpi, p, &Selection { by: Some(by.clone()), ..Selection::default() }, &cfg());
                prop_assert_eq!(e.segments.len(), cut_rows.len());
                for (s, r) in e.segments.iter().zip(&cut_rows) {
                    prop_assert_eq!(Some(&s.segment), r.segment.as_ref());
                    prop_assert_eq!(s.total, money(&r.kpis, kpi.id()), "{} {} {:?}", kpi.id(), p, s.segment);
                    let one = Selection { by: Some(by.clone()), segment: Some(s.segment.clone()), account: None };
                    prop_assert_eq!(explain(&l, kpi, p, &one, &cfg()).total, s.total);
                }
            }
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

/// February 2024 of five accounts, one of each movement, with segments and message ids.
fn explained_company() -> Ledger {
    let attr = |account: &str, seg: &str| Event {
        ts: Timestamp::parse("2023-01-01").unwrap(),
        account: Some(account.into()),
        message_id: None,
        body: EventBody::Account {
            name: Some(format!("{account} Inc")),
            attributes: vec![("segment".into(), tenure_core::event::AttrValue::Str(seg.into()))],
        },
    };
    let with_id = |mut e: Event, id: &str| {
        e.message_id = Some(id.into());
        e
    };
    let mut addon = sub("2024-02-20", "a", "a-addon", 3_000, SubStatus::Active);
    if let EventBody::Subscription(s) = &mut addon.body {
        s.product = Some("addon".into());
    }
    let ev = vec![
        attr("a", "smb"),
        attr("b", "ent"),
        attr("c", "ent"),
        attr("d", "smb"),
        with_id(sub("2023-06-01", "e", "e", 5_000, SubStatus::Active), "e1"),
        with_id(sub("2023-09-01", "e", "e", 0, SubStatus::Canceled), "e2"),
        with_id(sub("2024-01-01", "a", "a", 10_000, SubStatus::Active), "a1"),
        with_id(sub("2024-01-01", "b", "b", 20_000, SubStatus::Active), "b1"),
        with_id(sub("2024-01-01", "d", "d", 6_000, SubStatus::Active), "d1"),
        with_id(sub("2024-02-03", "c", "c", 8_000, SubStatus::Active), "c1"),
        with_id(sub("2024-02-05", "a", "a", 15_000, SubStatus::Active), "a2"),
        with_id(sub("2024-02-10", "b", "b", 0, SubStatus::Canceled), "b2"),
        with_id(sub("2024-02-12", "d", "d", 4_000, SubStatus::Active), "d2"),
        with_id(sub("2024-02-15", "e", "e", 7_000, SubStatus::Active), "e3"),
        with_id(addon, "a3"),
    ];
    let mut b = LedgerBuilder::new().keep_sources();
    for e in ev {
        b.push(e);
    }
    b.finish(&rev(), Timestamp::parse("2030-01-01").unwrap())
}

fn render_explanation(e: &explain::Explanation) -> String {
    let mut s = format!("{} total {} figure {}\n", e.kpi.id(), e.total, e.figure);
    for seg in &e.segments {
        s += &format!("  segment {:?}: {} (figure {})\n", seg.segment, seg.total, seg.figure);
    }
    for l in &e.lines {
        s += &format!("  {} {:?} {}\n", l.account, l.segment, l.amount);
        for i in &l.items {
            let refs: Vec<String> = i.sources.iter().map(|r| r.to_string()).collect();
            s += &format!(
                "    {} {} {} [{}]\n",
                i.ts.date_string(),
                i.kind.as_str(),
                i.amount,
                refs.join(" ")
            );
        }
    }
    s
}

#[test]
fn explain_sums_to_the_figure_for_every_movement_type_and_cut() {
    use explain::{Kpi, Selection, explain};
    let l = explained_company();
    let feb = Period::parse("2024-02").unwrap();
    let long = Period::parse("2023-09..2024-03").unwrap();
    let seg = |v: Option<&str>| Selection {
        by: Some(By::parse("segment")),
        segment: Some(v.map(str::to_string)),
        account: None,
    };
    let all = Selection::default();
    // Hand-computed, cents: February starts at a 100 + b 200 + d 60; c is new (80), a grows
    // by 50 of its product and 30 of a new one, d shrinks by 20, b leaves (200), e comes
    // back (70). From September 2023: e (50) leaves first, a, b and d are new in January.
    let cases: Vec<(Kpi, Period, Selection, i64)> = vec![
        (Kpi::MrrStart, feb, all.clone(), 36_000),
        (Kpi::MrrEnd, feb, all.clone(), 37_000),
        (Kpi::New, feb, all.clone(), 8_000),
        (Kpi::Expansion, feb, all.clone(), 8_000),
        (Kpi::Upsell, feb, all.clone(), 5_000),
        (Kpi::CrossSell, feb, all.clone(), 3_000),
        (Kpi::Contraction, feb, all.clone(), 2_000),
        (Kpi::Churn, feb, all.clone(), 20_000),
        (Kpi::Reactivation, feb, all.clone(), 7_000),
        (Kpi::NetChange, feb, all.clone(), 1_000),
        (Kpi::MrrStart, feb, seg(Some("ent")), 20_000),
        (Kpi::MrrEnd, feb, seg(Some("ent")), 8_000),
        (Kpi::Churn, feb, seg(Some("ent")), 20_000),
        (Kpi::Churn, feb, seg(Some("smb")), 0),
        (Kpi::NetChange, feb, seg(Some("smb")), 6_000),
        (Kpi::Reactivation, feb, seg(None), 7_000),
        (Kpi::MrrStart, long, all.clone(), 5_000),
        (Kpi::New, long, all.clone(), 44_000),
        (Kpi::Churn, long, all.clone(), 25_000),
        (Kpi::NetChange, long, all.clone(), 32_000),
        (Kpi::MrrEnd, long, seg(Some("smb")), 22_000),
        (
            Kpi::Expansion,
            feb,
            Selection { account: Some("a".into()), ..Selection::default() },
            8_000,
        ),
        (Kpi::Expansion, feb, Selection { account: Some("c".into()), ..Selection::default() }, 0),
    ];
    for (kpi, p, sel, want) in cases {
        let e = explain(&l, kpi, p, &sel, &cfg());
        let what = format!("{} {p} {sel:?}", kpi.id());
        assert_eq!(e.total, want, "lines of {what}");
        assert_eq!(e.figure, want, "catalogue of {what}");
        let lines: i64 =
            e.lines.iter().map(|l| l.items.iter().map(|i| i.amount).sum::<i64>()).sum();
        assert_eq!(lines, want, "items of {what}");
    }
    expect![[r#"
        mrr_end total 37000 figure 37000
          segment Some("ent"): 8000 (figure 8000)
          segment Some("smb"): 22000 (figure 22000)
          segment None: 7000 (figure 7000)
          a Some(Some("smb")) 18000
            2024-01-01 new 10000 [a1]
            2024-02-05 expansion 5000 [a2]
            2024-02-20 expansion 3000 [a3]
          c Some(Some("ent")) 8000
            2024-02-03 new 8000 [c1]
          e Some(None) 7000
            2024-02-15 reactivation 7000 [e3]
          d Some(Some("smb")) 4000
            2024-01-01 new 6000 [d1]
            2024-02-12 contraction -2000 [d2]
    "#]]
    .assert_eq(&render_explanation(&explain(
        &l,
        Kpi::MrrEnd,
        feb,
        &Selection { by: Some(By::parse("segment")), ..Selection::default() },
        &cfg(),
    )));
    expect![[r#"
        mrr_churn total 20000 figure 20000
          b None 20000
            2024-02-10 churn 20000 [b2]
    "#]]
    .assert_eq(&render_explanation(&explain(&l, Kpi::Churn, feb, &all, &cfg())));
    assert_eq!(Kpi::ALL.map(Kpi::id), explain::IDS);
    assert_eq!(Kpi::parse("mrr_churn"), Some(Kpi::Churn));
    assert_eq!(Kpi::parse("nrr"), None);
}
