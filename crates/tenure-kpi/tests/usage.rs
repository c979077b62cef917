//! The usage and adoption KPIs from per-account usage figures, worked out by hand;
//! among them the catalogue's example: 100 seats, 80 active in the last month -> 80%.

mod common;
use rustc_hash::FxHashMap;
use tenure_core::time::{Period, Timestamp};
use tenure_kpi::usage::{AccountUsage, Feature};
use tenure_kpi::{KpiConfig, Value, report_with_usage};

const SUBS: &str = r#"
{"type":"subscription","timestamp":"2024-01-01","account_id":"a","subscription_id":"a1","plan":"growth","quantity":60,"amount":"600","status":"active"}
{"type":"subscription","timestamp":"2024-01-01","account_id":"b","subscription_id":"b1","plan":"starter","quantity":40,"amount":"400","status":"active"}
{"type":"subscription","timestamp":"2024-01-01","account_id":"c","subscription_id":"c1","plan":"starter","quantity":10,"amount":"100","status":"active"}
{"type":"subscription","timestamp":"2024-02-15","account_id":"c","subscription_id":"c1","status":"canceled"}
"#;

#[test]
fn usage_kpis_match_the_hand_worked_values() {
    let ledger = common::ledger(SUBS);
    let day = |d: &str| Timestamp::parse(d).unwrap();
    let mut usage = FxHashMap::default();
    // a: 50 of 60 seats active, 10 of them on an advanced feature; b: 30 of 40; c (churned)
    // had 5 users, who count in MAU but not in the utilisation of customers.
    usage.insert(
        "a".to_string(),
        AccountUsage {
            mau: 50,
            wau: 30,
            user_days: 600,
            advanced_users: 10,
            features: vec!["dashboards".into(), "reports".into()],
            features_ever: vec![
                ("dashboards".into(), day("2024-03-30")),
                ("reports".into(), day("2024-03-20")),
            ],
            events: 2_000,
            events_prev: 1_000,
            mau_prev: 40,
            emails_sent: 10,
            emails_opened: 4,
            emails_clicked: 1,
            docs_visits: 3,
            website_visits: 2,
        },
    );
    usage.insert(
        "b".to_string(),
        AccountUsage {
            mau: 30,
            wau: 20,
            user_days: 300,
            advanced_users: 0,
            features: vec!["dashboards".into(), "reports".into()],
            // b used reports before its release: not an adopter.
            features_ever: vec![
                ("dashboards".into(), day("2024-03-01")),
                ("reports".into(), day("2023-12-01")),
            ],
            events: 1_000,
            events_prev: 1_000,
            mau_prev: 45,
            emails_sent: 10,
            emails_opened: 6,
            emails_clicked: 2,
            docs_visits: 0,
            website_visits: 5,
        },
    );
    usage.insert(
        "c".to_string(),
        AccountUsage { mau: 5, mau_prev: 5, user_days: 10, ..AccountUsage::default() },
    );
    let kcfg = KpiConfig {
        features: vec![
            Feature { name: "dashboards".into(), advanced: false, released: None, plans: vec![] },
            Feature {
                name: "reports".into(),
                advanced: true,
                released: Some(day("2024-01-01")),
                plans: vec!["growth".into()],
            },
        ],
        ..KpiConfig::defaults()
    };
    let rows = report_with_usage(
        &ledger,
        &[Period::parse("2024-03").unwrap()],
        None,
        &kcfg,
        &[usage.into()],
    );
    let k = &rows[0].kpis;
    let num = |id: &str| match k.get(id) {
        Some(Value::Number(Some(x)) | Value::Rate(Some(x))) => *x,
        Some(Value::Count(c)) => *c as f64,
        other => panic!("{id}: {other:?}"),
    };
    let close = |id: &str, want: f64| {
        assert!((num(id) - want).abs() < 1e-12, "{id}: {} != {want}", num(id))
    };
    close("mau", 85.0);
    close("wau", 50.0);
    close("dau", 910.0 / 30.0);
    close("stickiness", 910.0 / 30.0 / 85.0);
    // Customers at the end: a (60 seats, 50 active) and b (40, 30): 80 / 100 = 80%.
    close("license_utilization", 0.8);
    close("active_days_per_user", 910.0 / 85.0);
    close("advanced_users_share", 10.0 / 85.0);
    close("basic_users_share", 75.0 / 85.0);
    // Depth: a (growth) used both of its 2 features: 1; b (starter) has dashboards only and
    // used it: 1. b used reports outside its plan.
    close("depth_of_usage", 1.0);
    close("accounts_using_outside_plan", 1.0);
    close("usage_events", 3_000.0);
    close("usage_events_change", 0.5);
    // Adoption among the 2 customers: dashboards both; reports (released Jan 1) only a.
    close("feature_adoption.dashboards", 1.0);
    close("feature_adoption.reports", 0.5);
    // The trend: 85 users now, 40 + 45 + 5 = 90 in the 30 days before the start.
    close("mau_change", 85.0 / 90.0 - 1.0);
    // Emails: 4 + 6 of 20 opened, 1 + 2 clicked.
    close("emails_sent", 20.0);
    close("email_open_rate", 0.5);
    close("email_click_rate", 0.15);
    close("docs_visits", 3.0);
    close("website_visits", 7.0);
    // a visited the docs, b did not: 1 of the 2 customers.
    close("docs_visitors_share", 0.5);
}
