//! The customer-success KPIs on a hand-made company whose every expected value was worked
//! out by hand (the arithmetic is in the comments).

mod common;
use tenure_core::time::Period;
use tenure_kpi::{KpiConfig, Value, report};

const EVENTS: &str = r#"
{"type":"subscription","timestamp":"2023-06-01","account_id":"a","subscription_id":"a1","amount":"100","status":"active"}
{"type":"subscription","timestamp":"2024-02-01","account_id":"a","subscription_id":"a2","kind":"service","amount":"30","status":"active"}
{"type":"subscription","timestamp":"2024-01-05","account_id":"b","subscription_id":"b1","amount":"50","status":"trialing"}
{"type":"subscription","timestamp":"2024-01-15","account_id":"b","subscription_id":"b1","amount":"50","status":"active"}
{"type":"subscription","timestamp":"2022-04-01","account_id":"c","subscription_id":"c1","amount":"80","status":"active"}
{"type":"subscription","timestamp":"2024-02-10","account_id":"c","subscription_id":"c1","status":"canceled"}

{"type":"survey_response","timestamp":"2024-01-10","account_id":"a","survey":"nps","contact_id":"a1","score":6}
{"type":"survey_response","timestamp":"2024-03-01","account_id":"a","survey":"nps","contact_id":"a1","score":9}
{"type":"survey_response","timestamp":"2024-02-01","account_id":"a","survey":"nps","contact_id":"a2","score":7}
{"type":"survey_response","timestamp":"2024-02-15","account_id":"a","survey":"nps","score":3}
{"type":"survey_response","timestamp":"2024-03-05","account_id":"b","survey":"nps","contact_id":"b1","score":10}
{"type":"survey_response","timestamp":"2023-12-01","account_id":"c","survey":"nps","contact_id":"c1","score":10}
{"type":"survey_response","timestamp":"2024-01-20","account_id":"a","survey":"csat","contact_id":"a1","score":9}
{"type":"survey_response","timestamp":"2024-02-20","account_id":"a","survey":"csat","contact_id":"a2","score":5}
{"type":"survey_response","timestamp":"2024-03-10","account_id":"b","survey":"csat","contact_id":"b1","score":10}
{"type":"survey_response","timestamp":"2024-02-01","account_id":"a","survey":"success","contact_id":"a1","score":"positive"}
{"type":"survey_response","timestamp":"2024-03-01","account_id":"b","survey":"success","contact_id":"b1","score":"negative"}
{"type":"survey_sent","timestamp":"2024-01-02","account_id":"a","survey":"nps","contact_id":"a1"}
{"type":"survey_sent","timestamp":"2024-01-02","account_id":"a","survey":"nps","contact_id":"a2"}
{"type":"survey_sent","timestamp":"2024-01-02","account_id":"a","survey":"csat","contact_id":"a1"}
{"type":"survey_sent","timestamp":"2024-02-02","account_id":"a","survey":"csat","contact_id":"a2"}
{"type":"survey_sent","timestamp":"2024-02-02","account_id":"a","survey":"success","contact_id":"a1"}
{"type":"survey_sent","timestamp":"2024-02-25","account_id":"a","survey":"nps","contact_id":"a1"}
{"type":"survey_sent","timestamp":"2024-02-25","account_id":"b","survey":"nps","contact_id":"b1"}
{"type":"survey_sent","timestamp":"2024-02-25","account_id":"b","survey":"csat","contact_id":"b1"}
{"type":"survey_sent","timestamp":"2024-02-25","account_id":"b","survey":"success","contact_id":"b1"}
{"type":"survey_sent","timestamp":"2024-01-05","account_id":"c","survey":"nps","contact_id":"c1"}
{"type":"survey_sent","timestamp":"2024-03-20","account_id":"b","survey":"nps","contact_id":"b1"}

{"type":"ticket","timestamp":"2023-11-15","account_id":"c","ticket_id":"t0","status":"opened"}
{"type":"ticket","timestamp":"2024-01-05","account_id":"a","ticket_id":"t1","status":"opened","category":"defect","cost":"100.00"}
{"type":"ticket","timestamp":"2024-01-10","account_id":"a","ticket_id":"t1","status":"closed","csat":9}
{"type":"ticket","timestamp":"2024-02-01","account_id":"a","ticket_id":"t2","status":"opened","category":"how_to","cost":"20.00"}
{"type":"ticket","timestamp":"2024-02-02","account_id":"a","ticket_id":"t2","status":"closed","csat":4}
{"type":"ticket","timestamp":"2024-03-01","account_id":"b","ticket_id":"t3","status":"opened","category":"defect"}
{"type":"cost","timestamp":"2024-01-01","category":"service","amount":"1000.00","period_start":"2024-01-01","period_end":"2024-04-01"}

{"type":"touchpoint","timestamp":"2024-01-15","account_id":"a","kind":"call","sentiment":"positive"}
{"type":"touchpoint","timestamp":"2024-03-15","account_id":"a","kind":"qbr","sentiment":"neutral"}
{"type":"touchpoint","timestamp":"2024-01-20","account_id":"c","kind":"call","sentiment":"negative"}

{"type":"milestone","timestamp":"2024-01-16","account_id":"b","name":"onboarding_started"}
{"type":"milestone","timestamp":"2024-01-26","account_id":"b","name":"onboarding_completed"}
{"type":"milestone","timestamp":"2024-02-04","account_id":"b","name":"first_value"}

{"type":"success_objective","timestamp":"2023-12-01","account_id":"a","objective_id":"o1","status":"planned"}
{"type":"success_objective","timestamp":"2024-02-15","account_id":"a","objective_id":"o1","status":"achieved","value":"500.00"}
{"type":"success_objective","timestamp":"2024-01-10","account_id":"a","objective_id":"o2","status":"planned"}
{"type":"success_objective","timestamp":"2024-03-20","account_id":"b","objective_id":"o3","status":"planned"}
{"type":"success_objective","timestamp":"2024-03-25","account_id":"b","objective_id":"o3","status":"missed"}

{"type":"contact","timestamp":"2023-06-01","account_id":"a","contact_id":"a1","role":"champion","status":"active"}
{"type":"contact","timestamp":"2024-01-01","account_id":"a","contact_id":"a2","role":"decision_maker"}
{"type":"contact","timestamp":"2023-06-01","account_id":"a","contact_id":"a3","role":"executive_sponsor"}
{"type":"contact","timestamp":"2024-03-01","account_id":"a","contact_id":"a3","status":"left"}
{"type":"contact","timestamp":"2024-01-15","account_id":"b","contact_id":"b1","role":"champion"}
{"type":"contact","timestamp":"2024-01-15","account_id":"b","contact_id":"b2","role":"admin"}
{"type":"contact","timestamp":"2024-03-10","account_id":"d","contact_id":"b2","role":"admin"}
{"type":"contact","timestamp":"2022-04-01","account_id":"c","contact_id":"c1","role":"champion"}

{"type":"assessment","timestamp":"2024-01-15","account_id":"a","relationship":4,"strategic_importance":5}
{"type":"assessment","timestamp":"2024-03-15","account_id":"a","relationship":2}
{"type":"assessment","timestamp":"2024-02-01","account_id":"b","relationship":3}
{"type":"change_request","timestamp":"2024-02-01","account_id":"a","request_id":"r1","status":"opened"}
{"type":"change_request","timestamp":"2024-02-20","account_id":"a","request_id":"r1","status":"done"}
{"type":"alert","timestamp":"2024-01-10T00:01:00Z","account_id":"a","alert_id":"al1","rule":"detractor","severity":"high"}
{"type":"task","timestamp":"2024-01-10T00:01:00Z","account_id":"a","task_id":"k1","rule":"detractor","alert_id":"al1","status":"open","owner":"sam"}
{"type":"task","timestamp":"2024-01-20","account_id":"a","task_id":"k1","status":"done","root_cause":"product_gap","note":"called a1"}
{"type":"task","timestamp":"2024-02-16","account_id":"a","task_id":"k2","rule":"detractor","status":"open"}
{"type":"task","timestamp":"2024-02-20","account_id":"a","task_id":"k2","status":"done"}
{"type":"task","timestamp":"2024-03-20","account_id":"a","task_id":"k3","rule":"detractor","status":"open"}
{"type":"task","timestamp":"2024-03-21","account_id":"a","task_id":"k3","status":"done","root_cause":"price"}
{"type":"change_request","timestamp":"2024-03-01","account_id":"b","request_id":"r2","status":"opened"}
"#;

/// Invoices: a pays 100 monthly from 2023-06 and its service line 30 from 2024-02; b pays
/// 50 from 2024-01-15; c paid 80 monthly for 2022-04..2023-03, then 70 for 2023-04..2024-01.
fn invoices() -> String {
    let mut out = String::new();
    let mut inv = |account: &str, date: String, amount: &str| {
        out += &format!(
            r#"{{"type":"invoice","timestamp":"{date}","account_id":"{account}","invoice_id":"{account}-{date}-{amount}","amount":"{amount}","status":"paid"}}"#
        );
        out += "\n";
    };
    let month = |y: i32, m: u32| format!("{y:04}-{m:02}-01");
    for m in 6..=12 {
        inv("a", month(2023, m), "100");
    }
    for m in 1..=3 {
        inv("a", month(2024, m), "100");
    }
    for m in 2..=3 {
        inv("a", month(2024, m), "30");
    }
    for d in ["2024-01-15", "2024-02-15", "2024-03-15"] {
        inv("b", d.to_string(), "50");
    }
    for i in 0..12 {
        let (y, m) = if i < 9 { (2022, 4 + i) } else { (2023, i - 8) };
        inv("c", month(y, m), "80");
    }
    for i in 0..10 {
        let (y, m) = if i < 9 { (2023, 4 + i) } else { (2024, 1) };
        inv("c", month(y, m), "70");
    }
    out
}

#[test]
fn customer_success_kpis_match_the_hand_worked_values() {
    let text = format!("{EVENTS}\n{}", invoices());
    let ledger = common::ledger(&text);
    let rows = report(&ledger, &[Period::parse("2024-Q1").unwrap()], None, &KpiConfig::defaults());
    let k = &rows[0].kpis;
    let num = |id: &str| match k.get(id) {
        Some(Value::Number(Some(x)) | Value::Rate(Some(x))) => *x,
        Some(Value::Count(c)) => *c as f64,
        Some(Value::Money(m) | Value::MaybeMoney(Some(m))) => *m as f64 / 100.0,
        other => panic!("{id}: {other:?}"),
    };
    let close = |id: &str, want: f64| {
        let got = num(id);
        assert!((got - want).abs() < 1e-9, "{id}: got {got}, want {want}");
    };
    // NPS: latest per contact in Q1: a1 9 (P), a2 7 (Pa), anonymous 3 (D), b1 10 (P); c1's
    // 10 was in December. 4 respondents: 100 x (2 - 1) / 4 = 25;
    // SE = 100 x sqrt((0.5 + 0.25 - 0.25^2) / 4) = 41.4578...
    close("nps", 25.0);
    close("nps_se", 100.0 * (0.6875f64 / 4.0).sqrt());
    close("nps_responses", 4.0);
    close("nps_promoters", 2.0);
    close("nps_passives", 1.0);
    close("nps_detractors", 1.0);
    // CSAT 9, 5, 10 on 1-10 with 9-10 satisfied: 2/3.
    close("csat", 2.0 / 3.0);
    // Responses in Q1: a1 x4 (2 NPS, CSAT, success), a2 x2, anonymous, b1 x3 = 10, to 11
    // surveys sent (a 6, b 4, c 1).
    close("survey_responses", 10.0);
    close("surveys_sent", 11.0);
    close("survey_response_rate", 10.0 / 11.0);
    // c was sent a survey, answered before, not in Q1.
    close("accounts_stopped_responding", 1.0);
    close("success_positive", 0.5);
    close("success_neutral", 0.0);
    close("success_negative", 0.5);
    // Detractor responses in Q1: a1's 6 (01-10) and the anonymous 3 (02-15). Task k1 was
    // resolved with a root cause after the first; k2, after the second, has no root cause;
    // k3, opened five weeks after the second, is for something else.
    close("detractor_follow_up_rate", 0.5);
    // Tickets opened in Q1: t1 (defect, 100), t2 (how_to, 20), t3 (defect); in the 91 days
    // before: t0. Customers during Q1: a, b, c.
    close("tickets", 3.0);
    close("tickets_per_account", 1.0);
    close("tickets_change", 2.0);
    close("defect_tickets", 2.0);
    close("defect_share", 2.0 / 3.0);
    close("ticket_cost", 120.0);
    close("defect_cost", 100.0);
    close("defect_cost_share", 0.1);
    close("csat_defect_tickets", 1.0);
    close("csat_other_tickets", 0.0);
    // Touchpoints: a (positive, neutral), c (negative): 2 of 3 customers engaged.
    close("engagement_rate", 2.0 / 3.0);
    close("touchpoints", 3.0);
    close("touchpoint_positive_share", 1.0 / 3.0);
    close("touchpoint_negative_share", 1.0 / 3.0);
    // Service: a's 30/month line from Feb 1 (60 days = 60 / 30.4375 months); customers at
    // the end: a and b.
    close("service_attach_rate", 0.5);
    close("service_revenue", (3000.0f64 * 60.0 / 30.4375).round() / 100.0);
    close("service_cost", 1000.0);
    // Onboarding: b first paid on Jan 15; started Jan 16, completed Jan 26 (10 days); first
    // value Feb 4, 30 days after its trial began on Jan 5.
    close("onboarding_cohort", 1.0);
    close("onboarding_completion_rate", 1.0);
    close("onboarding_days_median", 10.0);
    close("time_to_value_days", 30.0);
    close("time_to_value_days_p90", 30.0);
    // Objectives: o1 achieved (500), o2 planned, o3 missed: 1/3. Fees paid in Q1:
    // a 3 x 100 + 2 x 30, b 3 x 50, c 70 (January) = 580; ROI = (500 - 580) / 580.
    close("success_plan_realization", 1.0 / 3.0);
    close("value_realised", 500.0);
    close("fees_paid", 580.0);
    close("roi", (500.0 - 580.0) / 580.0);
    // Contacts of the customers at the end (a, b): champions a1, b1; decision maker a2;
    // a's sponsor left on Mar 1. Departures in Q1: a3 (sponsor), b2 (admin, moved to d).
    close("contact_coverage_champion", 1.0);
    close("contact_coverage_decision_maker", 0.5);
    close("contact_coverage_sponsor", 0.0);
    close("key_contacts_departed", 2.0);
    close("champions_departed", 0.0);
    // Latest assessments: a relationship 2 (importance 5 kept), b 3.
    close("csm_relationship_avg", 2.5);
    close("strategic_importance_avg", 5.0);
    close("change_requests", 2.0);
    // Fees Apr 2023 - Mar 2024: a 10 x 100 + 2 x 30 = 1060, b 150, c 9 x 70 + 70 = 700;
    // the 12 months before: c 12 x 80 = 960. c fell 27%: a decliner.
    close("fees_trailing_12m", 1910.0);
    close("fee_trend_yoy", (1910.0 - 960.0) / 960.0);
    close("accounts_fee_decline", 1.0);
}

#[test]
fn nps_migration_of_contacts_and_accounts() {
    let text = r#"
{"type":"survey_response","timestamp":"2023-10-01","account_id":"a","survey":"nps","contact_id":"a1","score":10}
{"type":"survey_response","timestamp":"2024-02-01","account_id":"a","survey":"nps","contact_id":"a1","score":6}
{"type":"survey_response","timestamp":"2023-10-01","account_id":"a","survey":"nps","contact_id":"a2","score":9}
{"type":"survey_response","timestamp":"2024-02-01","account_id":"a","survey":"nps","contact_id":"a2","score":8}
{"type":"survey_response","timestamp":"2023-11-01","account_id":"b","survey":"nps","contact_id":"b1","score":3}
{"type":"survey_response","timestamp":"2023-12-01","account_id":"b","survey":"nps","contact_id":"b1","score":5}
{"type":"survey_response","timestamp":"2024-03-01","account_id":"b","survey":"nps","contact_id":"b1","score":9}
{"type":"survey_response","timestamp":"2024-03-01","account_id":"b","survey":"nps","contact_id":"b2","score":9}
{"type":"survey_response","timestamp":"2023-11-01","account_id":"c","survey":"nps","contact_id":"c1","score":9}
"#;
    let ledger = common::ledger(text);
    let m = tenure_kpi::cs::nps_migration(&ledger, Period::parse("2024-Q1").unwrap());
    // Contacts [from][to] as [detractor, passive, promoter]: a1 promoter -> detractor,
    // a2 promoter -> passive, b1 detractor (its answer before the latest) -> promoter; b2
    // answered once, c1 not in Q1.
    assert_eq!(m.contacts, [[0, 0, 1], [0, 0, 0], [1, 1, 0]]);
    assert_eq!(m.promoter_decay_rate(), Some(1.0));
    assert_eq!(m.detractor_conversion_rate(), Some(1.0));
    // Accounts by mean of latest scores: a 9.5 -> 7.0 (promoter -> passive), b 5 -> 9
    // (detractor -> promoter), c 9 -> 9 (promoter -> promoter).
    assert_eq!(m.accounts, [[0, 0, 1], [0, 0, 0], [0, 1, 1]]);
}

#[test]
fn service_upgrades_among_customers_with_a_service_line_at_the_start() {
    // x, y, z hold a 20/month service line from December; in Q1 x moves to 40, z down to 10,
    // y stays; w buys its first service line in February (attach, not an upgrade).
    let mut text = String::new();
    for acc in ["x", "y", "z", "w"] {
        text += &format!(
            r#"{{"type":"subscription","timestamp":"2023-12-01","account_id":"{acc}","subscription_id":"{acc}1","amount":"100","status":"active"}}
"#
        );
    }
    for (acc, at, amount) in
        [("x", "2023-12-01", 20), ("y", "2023-12-01", 20), ("z", "2023-12-01", 20)]
            .into_iter()
            .chain([("x", "2024-02-01", 40), ("z", "2024-02-01", 10), ("w", "2024-02-01", 30)])
    {
        text += &format!(
            r#"{{"type":"subscription","timestamp":"{at}","account_id":"{acc}","subscription_id":"{acc}s","kind":"service","amount":"{amount}","status":"active"}}
"#
        );
    }
    let ledger = common::ledger(&text);
    let rows = report(&ledger, &[Period::parse("2024-Q1").unwrap()], None, &KpiConfig::defaults());
    let k = &rows[0].kpis;
    // 1 of the 3 with service at the start pays more for it at the end.
    assert_eq!(k.get("service_upgrade_rate"), Some(&Value::Rate(Some(1.0 / 3.0))));
    // All 4 customers hold a service line at the end.
    assert_eq!(k.get("service_attach_rate"), Some(&Value::Rate(Some(1.0))));
}
