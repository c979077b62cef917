//! End-to-end tests of the generator: determinism, the event contract, ground-truth
//! consistency and that the latent health really carries into the observable signals.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};
use tenure_sim::{FEATURES, OutputFormat, SimConfig, generate};

fn cfg(accounts: u64, months: u32, seed: u64, usage: Option<u64>) -> SimConfig {
    SimConfig {
        accounts,
        months,
        seed,
        start: (2023, 1),
        usage_events: usage,
        format: OutputFormat::Jsonl,
    }
}

fn run(c: &SimConfig, dir: &Path) -> tenure_sim::Summary {
    match generate(c, dir, &|_| {}) {
        Ok(s) => s,
        Err(e) => panic!("generate failed: {e}"),
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

fn lines(dir: &Path, name: &str) -> Vec<Map<String, Value>> {
    read(dir, name)
        .lines()
        .enumerate()
        .map(|(i, l)| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => m,
            other => panic!("{name}:{}: not a JSON object: {other:?}", i + 1),
        })
        .collect()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Strict parser for the `YYYY-MM-DDTHH:MM:SSZ` form the generator promises.
fn parse_ts(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let dim = [
        31,
        if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > dim[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || se > 59
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

fn money(v: &Value) -> Option<f64> {
    let s = v.as_str()?;
    let (a, b) = s.split_once('.')?;
    if b.len() != 2
        || a.is_empty()
        || !a.bytes().all(|c| c.is_ascii_digit())
        || !b.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

fn s<'a>(e: &'a Map<String, Value>, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or_else(|| panic!("missing string field {k} in {e:?}"))
}

fn month(e: &Map<String, Value>) -> String {
    s(e, "timestamp")[..7].to_owned()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (tempfile::tempdir(), tempfile::tempdir(), tempfile::tempdir());
    let (a, b, c) = match (a, b, c) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => panic!("tempdir"),
    };
    let conf = cfg(300, 20, 9, Some(60_000));
    let sa = run(&conf, a.path());
    let sb = run(&conf, b.path());
    assert_eq!(sa.events_by_type, sb.events_by_type);
    for f in &sa.files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(
            std::fs::read(f).ok(),
            std::fs::read(b.path().join(name)).ok(),
            "{name} differs"
        );
    }
    run(&cfg(300, 20, 10, Some(60_000)), c.path());
    for name in ["usage.jsonl", "subscriptions.jsonl", "truth.csv", "tickets.jsonl"] {
        assert_ne!(read(a.path(), name), read(c.path(), name), "{name} identical across seeds");
    }
}

/// Allowed fields per type (besides type/timestamp) and the required ones.
fn schema(t: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match t {
        "account" => (&["account_id", "name", "attributes"], &["account_id", "attributes"]),
        "contact" => (
            &["account_id", "contact_id", "email", "name", "role", "status"],
            &["account_id", "contact_id", "email", "name", "role", "status"],
        ),
        "subscription" => (
            &[
                "account_id",
                "subscription_id",
                "product",
                "plan",
                "kind",
                "quantity",
                "amount",
                "currency",
                "interval",
                "status",
                "term_start",
                "term_end",
                "cancel_reason",
                "cancel_at",
            ],
            &[
                "account_id",
                "subscription_id",
                "product",
                "plan",
                "kind",
                "quantity",
                "amount",
                "currency",
                "interval",
                "status",
            ],
        ),
        "invoice" => (
            &[
                "account_id",
                "invoice_id",
                "amount",
                "currency",
                "status",
                "period_start",
                "period_end",
            ],
            &[
                "account_id",
                "invoice_id",
                "amount",
                "currency",
                "status",
                "period_start",
                "period_end",
            ],
        ),
        "usage" => (
            &["account_id", "user_id", "event", "feature", "quantity"],
            &["account_id", "user_id", "event"],
        ),
        "ticket" => (
            &["account_id", "ticket_id", "status", "category", "severity", "cost", "csat"],
            &["account_id", "ticket_id", "status", "category", "severity"],
        ),
        "survey_sent" => {
            (&["account_id", "survey", "contact_id"], &["account_id", "survey", "contact_id"])
        }
        "survey_response" => (
            &["account_id", "survey", "contact_id", "score", "comment"],
            &["account_id", "survey", "contact_id", "score"],
        ),
        "email" => (
            &["account_id", "contact_id", "campaign", "action"],
            &["account_id", "contact_id", "campaign", "action"],
        ),
        "web_visit" => {
            (&["account_id", "contact_id", "section", "page"], &["account_id", "section", "page"])
        }
        "touchpoint" => {
            (&["account_id", "kind", "sentiment", "note"], &["account_id", "kind", "sentiment"])
        }
        "milestone" => (&["account_id", "name"], &["account_id", "name"]),
        "success_objective" => (
            &["account_id", "objective_id", "status", "value"],
            &["account_id", "objective_id", "status"],
        ),
        "assessment" => (
            &["account_id", "relationship", "strategic_importance", "author"],
            &["account_id", "relationship", "strategic_importance", "author"],
        ),
        "change_request" => {
            (&["account_id", "request_id", "status"], &["account_id", "request_id", "status"])
        }
        "cost" => (
            &["category", "amount", "currency", "period_start", "period_end"],
            &["category", "amount", "currency", "period_start", "period_end"],
        ),
        other => panic!("unknown type {other}"),
    }
}

fn one_of(e: &Map<String, Value>, k: &str, allowed: &[&str]) {
    let v = s(e, k);
    assert!(allowed.contains(&v), "{k}={v} not in {allowed:?}: {e:?}");
}

fn int_in(e: &Map<String, Value>, k: &str, lo: i64, hi: i64) -> i64 {
    let v = e.get(k).and_then(Value::as_i64).unwrap_or_else(|| panic!("{k} not an integer: {e:?}"));
    assert!((lo..=hi).contains(&v), "{k}={v} out of {lo}..={hi}: {e:?}");
    v
}

fn check_event(e: &Map<String, Value>, t: &str, lo: i64, hi: i64) {
    let (allowed, required) = schema(t);
    for k in e.keys() {
        assert!(
            k == "type" || k == "timestamp" || allowed.contains(&k.as_str()),
            "unexpected field {k} in {t}: {e:?}"
        );
    }
    for k in required {
        assert!(e.contains_key(*k), "missing {k} in {t}: {e:?}");
    }
    let ts = parse_ts(s(e, "timestamp")).unwrap_or_else(|| panic!("bad timestamp {e:?}"));
    assert!(ts >= lo && ts < hi, "timestamp outside history: {e:?}");
    if t != "cost" {
        let a = s(e, "account_id");
        assert!(a.starts_with("acc-") && a.len() <= 256);
    }
    for k in ["term_start", "term_end", "cancel_at", "period_start", "period_end"] {
        if e.contains_key(k) {
            assert!(parse_ts(s(e, k)).is_some(), "bad {k}: {e:?}");
        }
    }
    for k in ["amount", "cost", "value"] {
        if let Some(v) = e.get(k) {
            assert!(money(v).is_some_and(|x| x >= 0.0), "bad money {k}: {e:?}");
        }
    }
    if e.contains_key("currency") {
        one_of(e, "currency", &["USD", "EUR", "GBP"]);
    }
    match t {
        "account" => {
            let a = e
                .get("attributes")
                .and_then(Value::as_object)
                .unwrap_or_else(|| panic!("attributes {e:?}"));
            for (k, allowed) in [
                ("segment", &["smb", "mid_market", "enterprise"][..]),
                ("region", &["na", "emea", "apac", "latam"][..]),
                ("channel", &["self_serve", "sales", "partner"][..]),
                ("plan", &["starter", "growth", "enterprise"][..]),
            ] {
                if let Some(v) = a.get(k) {
                    assert!(
                        v.as_str().is_some_and(|v| allowed.contains(&v)),
                        "attribute {k}: {e:?}"
                    );
                }
            }
            assert!(a.get("plan").is_some());
            if let Some(v) = a.get("employees") {
                assert!(v.as_i64().is_some_and(|n| n > 0));
            }
        }
        "contact" => {
            one_of(
                e,
                "role",
                &[
                    "champion",
                    "executive_sponsor",
                    "admin",
                    "decision_maker",
                    "influencer",
                    "end_user",
                    "other",
                ],
            );
            one_of(e, "status", &["active", "left"]);
            assert!(s(e, "email").contains('@'));
        }
        "subscription" => {
            one_of(e, "kind", &["product", "service"]);
            one_of(e, "interval", &["month", "year"]);
            one_of(e, "status", &["trialing", "active", "past_due", "paused", "canceled"]);
            int_in(e, "quantity", 1, 1_000_000);
            if e.contains_key("cancel_reason") {
                assert_eq!(s(e, "status"), "canceled");
            }
            if s(e, "interval") == "year" {
                let (a, b) = (parse_ts(s(e, "term_start")), parse_ts(s(e, "term_end")));
                assert!(a < b, "{e:?}");
            }
        }
        "invoice" => {
            one_of(e, "status", &["paid", "failed", "refunded"]);
            assert!(parse_ts(s(e, "period_start")) < parse_ts(s(e, "period_end")));
        }
        "usage" => {
            assert!(s(e, "user_id").starts_with("u-"));
            if let Some(f) = e.get("feature") {
                assert!(FEATURES.iter().any(|x| Some(x.name) == f.as_str()), "{e:?}");
            } else {
                assert_eq!(s(e, "event"), "login");
            }
            if e.contains_key("quantity") {
                int_in(e, "quantity", 1, 10_000);
            }
        }
        "ticket" => {
            one_of(e, "status", &["opened", "closed", "reopened"]);
            one_of(e, "category", &["how_to", "defect", "other"]);
            one_of(e, "severity", &["low", "normal", "high", "urgent"]);
            if e.contains_key("csat") {
                int_in(e, "csat", 1, 10);
            }
        }
        "survey_sent" | "survey_response" => {
            one_of(e, "survey", &["nps", "csat", "success"]);
            if t == "survey_response" {
                match s(e, "survey") {
                    "nps" => drop(int_in(e, "score", 0, 10)),
                    "csat" => drop(int_in(e, "score", 1, 10)),
                    _ => one_of(e, "score", &["positive", "neutral", "negative"]),
                }
            }
        }
        "email" => one_of(e, "action", &["sent", "opened", "clicked"]),
        "web_visit" => one_of(e, "section", &["docs", "website", "other"]),
        "touchpoint" => one_of(e, "sentiment", &["positive", "neutral", "negative"]),
        "milestone" => one_of(
            e,
            "name",
            &[
                "onboarding_started",
                "onboarding_completed",
                "first_value",
                "training_completed",
                "qbr_held",
            ],
        ),
        "success_objective" => one_of(e, "status", &["planned", "achieved", "missed"]),
        "assessment" => {
            int_in(e, "relationship", 1, 5);
            int_in(e, "strategic_importance", 1, 5);
        }
        "change_request" => one_of(e, "status", &["opened", "done", "rejected"]),
        "cost" => one_of(e, "category", &["retention", "acquisition", "service"]),
        _ => {}
    }
}

#[test]
fn every_line_follows_the_event_contract() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let conf = cfg(400, 24, 3, Some(150_000));
    let summary = run(&conf, dir.path());
    let (lo, hi) = (days_from_civil(2023, 1, 1) * 86_400, days_from_civil(2025, 1, 1) * 86_400);
    let files: [(&str, &[&str]); 15] = [
        ("accounts.jsonl", &["account"]),
        ("contacts.jsonl", &["contact"]),
        ("subscriptions.jsonl", &["subscription"]),
        ("invoices.jsonl", &["invoice"]),
        ("usage.jsonl", &["usage"]),
        ("tickets.jsonl", &["ticket"]),
        ("surveys.jsonl", &["survey_sent", "survey_response"]),
        ("emails.jsonl", &["email"]),
        ("web_visits.jsonl", &["web_visit"]),
        ("touchpoints.jsonl", &["touchpoint"]),
        ("milestones.jsonl", &["milestone"]),
        ("success_objectives.jsonl", &["success_objective"]),
        ("assessments.jsonl", &["assessment"]),
        ("change_requests.jsonl", &["change_request"]),
        ("costs.jsonl", &["cost"]),
    ];
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (file, types) in files {
        let evs = lines(dir.path(), file);
        assert!(!evs.is_empty(), "{file} is empty");
        let mut identical = HashSet::new();
        let mut last_usage: HashMap<String, i64> = HashMap::new();
        for e in &evs {
            let t = s(e, "type");
            assert!(types.contains(&t), "{t} in {file}");
            check_event(e, t, lo, hi);
            *seen.entry(t.to_owned()).or_default() += 1;
            if t == "usage" {
                // Within an account usage timestamps are distinct (and increasing).
                let ts = parse_ts(s(e, "timestamp")).unwrap_or_default();
                let prev = last_usage.insert(s(e, "account_id").to_owned(), ts);
                assert!(prev.is_none_or(|p| p < ts), "usage timestamps not increasing: {e:?}");
            } else {
                assert!(
                    identical.insert(serde_json::to_string(e).unwrap_or_default()),
                    "duplicate event {e:?}"
                );
            }
        }
    }
    for (t, n) in &summary.events_by_type {
        assert_eq!(seen.get(t).copied().unwrap_or(0), *n, "count of {t}");
    }
    assert_eq!(
        lines(dir.path(), "accounts.jsonl").iter().filter(|e| e.contains_key("name")).count(),
        400
    );
    let truth = read(dir.path(), "truth.csv");
    for l in truth.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 6, "{l}");
        let h: f64 = f[2].parse().unwrap_or(-1.0);
        let p: f64 = f[3].parse().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&h) && (0.0..=1.0).contains(&p), "{l}");
        assert!(f[4] == "0" || f[4] == "1");
        assert!(
            ["low_adoption", "champion_left", "support_pain", "price", "detractor", "none"]
                .contains(&f[5]),
            "{l}"
        );
    }
    assert_eq!(read(dir.path(), "truth_accounts.csv").lines().count(), 401);
}

#[test]
fn csv_output_has_one_header_and_matching_columns() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut conf = cfg(150, 14, 5, Some(20_000));
    conf.format = OutputFormat::Csv;
    let summary = run(&conf, dir.path());
    let accounts = read(dir.path(), "accounts.csv");
    let header = accounts.lines().next().unwrap_or_default();
    assert!(header.starts_with("type,timestamp,account_id,name,attributes.segment"), "{header}");
    for f in &summary.files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let mut it = text.lines();
        let cols = it.next().map_or(0, |h| h.split(',').count());
        assert!(cols >= 3, "{f:?}");
        for l in it.filter(|l| !l.contains('"')) {
            assert_eq!(l.split(',').count(), cols, "{f:?}: {l}");
        }
    }
    let usage = read(dir.path(), "usage.csv").lines().count() as u64 - 1;
    assert_eq!(Some(&usage), summary.events_by_type.get("usage"));
}

#[test]
fn usage_events_target_is_met_within_ten_percent() {
    for (accounts, target) in [(500u64, 200_000u64), (200, 15_000)] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let summary = run(&cfg(accounts, 24, 11, Some(target)), dir.path());
        let n = summary.events_by_type.get("usage").copied().unwrap_or(0);
        let lines = read(dir.path(), "usage.jsonl").lines().count() as u64;
        assert_eq!(n, lines);
        let err = (n as f64 - target as f64).abs() / target as f64;
        assert!(err < 0.10, "{n} usage events for a target of {target}");
    }
}

struct Truth {
    /// (account, month) -> (health, churned)
    rows: HashMap<(String, String), (f64, bool)>,
    segment: HashMap<String, String>,
}

fn load_truth(dir: &Path) -> Truth {
    let mut rows = HashMap::new();
    for l in read(dir, "truth.csv").lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        rows.insert((f[0].to_owned(), f[1].to_owned()), (f[2].parse().unwrap_or(0.0), f[4] == "1"));
    }
    let segment = read(dir, "truth_accounts.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect();
    Truth { rows, segment }
}

fn rate(n: f64, d: f64) -> f64 {
    if d > 0.0 { n / d } else { f64::NAN }
}

#[test]
fn ground_truth_matches_the_events_and_signals_carry_health() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let summary = run(&cfg(2500, 30, 21, Some(1_000_000)), dir.path());
    eprintln!("{:?}", summary.events_by_type);
    let truth = load_truth(dir.path());

    // 1. Churn in truth <=> all lines canceled in that month.
    let subs = lines(dir.path(), "subscriptions.jsonl");
    let mut cancel_months: HashMap<String, HashSet<String>> = HashMap::new();
    let mut state: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let mut seats: HashMap<String, i64> = HashMap::new();
    let mut by_acct: BTreeMap<String, Vec<&Map<String, Value>>> = BTreeMap::new();
    for e in &subs {
        by_acct.entry(s(e, "account_id").to_owned()).or_default().push(e);
    }
    for (acct, evs) in &mut by_acct {
        evs.sort_by_key(|e| parse_ts(s(e, "timestamp")));
        for e in evs.iter() {
            if s(e, "product") == "platform" {
                let q = e.get("quantity").and_then(Value::as_i64).unwrap_or(1);
                let m = seats.entry(acct.clone()).or_default();
                *m = (*m).max(q);
            }
            state
                .entry(acct.clone())
                .or_default()
                .insert(s(e, "subscription_id").to_owned(), s(e, "status").to_owned());
            if s(e, "status") == "canceled" {
                cancel_months.entry(acct.clone()).or_default().insert(month(e));
                // At a cancellation, every line of the account has stopped.
                let st = &state[acct];
                let open: Vec<_> = st.iter().filter(|(_, v)| *v != "canceled").collect();
                let same_ts_pending = evs.iter().any(|x| {
                    x.get("timestamp") == e.get("timestamp")
                        && s(x, "status") == "canceled"
                        && st.get(s(x, "subscription_id")).is_some_and(|v| v != "canceled")
                });
                assert!(
                    open.is_empty() || same_ts_pending,
                    "{acct}: lines still open at churn: {open:?}"
                );
            }
        }
    }
    let mut churn_rows = 0;
    for ((acct, m), (_, churned)) in &truth.rows {
        let canceled = cancel_months.get(acct).is_some_and(|s| s.contains(m));
        assert_eq!(
            *churned, canceled,
            "{acct} {m}: truth churned={churned}, canceled event={canceled}"
        );
        churn_rows += usize::from(*churned);
    }
    for (acct, ms) in &cancel_months {
        for m in ms {
            assert!(
                truth.rows.get(&(acct.clone(), m.clone())).is_some_and(|r| r.1),
                "{acct} canceled in {m} but not churned in truth"
            );
        }
    }
    assert!(churn_rows > 50, "too few churns to test: {churn_rows}");

    // 2. Plausible logo churn, and low health churns more.
    let (mut smb_rows, mut smb_churn) = (0.0, 0.0);
    let mut buckets = [(0.0, 0.0); 3]; // h < 0.5, 0.5..0.75, >= 0.75
    for ((acct, _), (h, churned)) in &truth.rows {
        if truth.segment[acct] == "smb" {
            smb_rows += 1.0;
            smb_churn += f64::from(u8::from(*churned));
        }
        let b = if *h < 0.5 {
            0
        } else if *h < 0.75 {
            1
        } else {
            2
        };
        buckets[b].0 += 1.0;
        buckets[b].1 += f64::from(u8::from(*churned));
    }
    let smb_rate = smb_churn / smb_rows;
    let churn_by_h: Vec<f64> = buckets.iter().map(|(n, c)| rate(*c, *n)).collect();
    eprintln!(
        "smb monthly logo churn {smb_rate:.4}; churn by health bucket {churn_by_h:?}; rows {buckets:?}"
    );
    assert!((0.01..=0.045).contains(&smb_rate), "smb monthly churn {smb_rate}");
    assert!(churn_by_h[0] > 2.0 * churn_by_h[2], "{churn_by_h:?}");

    // 3. Observable signals per account-month, by health bucket.
    let bucket = |acct: &str, m: &str| -> Option<usize> {
        truth.rows.get(&(acct.to_owned(), m.to_owned())).map(|(h, _)| {
            if *h < 0.5 {
                0
            } else if *h < 0.75 {
                1
            } else {
                2
            }
        })
    };
    let mut usage_per_seat = [(0.0, 0.0); 3];
    let mut users: HashMap<(String, String), HashSet<String>> = HashMap::new();
    let mut events: HashMap<(String, String), f64> = HashMap::new();
    let mut advanced = [(0.0, 0.0); 3];
    for e in lines(dir.path(), "usage.jsonl") {
        let key = (s(&e, "account_id").to_owned(), month(&e));
        *events.entry(key.clone()).or_default() += 1.0;
        if let (Some(b), Some(f)) =
            (bucket(&key.0, &key.1), e.get("feature").and_then(Value::as_str))
        {
            advanced[b].0 += 1.0;
            advanced[b].1 +=
                f64::from(u8::from(FEATURES.iter().any(|x| x.name == f && x.advanced)));
        }
        users.entry(key).or_default().insert(s(&e, "user_id").to_owned());
    }
    let mut util = [(0.0, 0.0); 3];
    let mut tickets = [(0.0, 0.0); 3];
    let mut ticket_count: HashMap<(String, String), f64> = HashMap::new();
    for e in lines(dir.path(), "tickets.jsonl") {
        if s(&e, "status") == "opened" {
            *ticket_count.entry((s(&e, "account_id").to_owned(), month(&e))).or_default() += 1.0;
        }
    }
    for ((acct, m), (h, churned)) in &truth.rows {
        if *churned {
            continue; // partial month
        }
        let b = if *h < 0.5 {
            0
        } else if *h < 0.75 {
            1
        } else {
            2
        };
        let key = (acct.clone(), m.clone());
        let st = seats.get(acct).copied().unwrap_or(1).max(1) as f64;
        usage_per_seat[b].0 += 1.0;
        usage_per_seat[b].1 += events.get(&key).copied().unwrap_or(0.0) / st;
        util[b].0 += 1.0;
        util[b].1 += users.get(&key).map_or(0.0, |u| u.len() as f64) / st;
        tickets[b].0 += 1.0;
        tickets[b].1 += ticket_count.get(&key).copied().unwrap_or(0.0);
    }
    let mut nps = [(0.0, 0.0); 3];
    for e in lines(dir.path(), "surveys.jsonl") {
        if s(&e, "type") == "survey_response" && s(&e, "survey") == "nps" {
            // The survey is sent in the month whose health it reflects; responses can
            // land a few days later, so look up the sending month first.
            let acct = s(&e, "account_id");
            if let Some(b) = bucket(acct, &month(&e)) {
                nps[b].0 += 1.0;
                nps[b].1 += e.get("score").and_then(Value::as_f64).unwrap_or(0.0);
            }
        }
    }
    let mean = |x: &[(f64, f64); 3]| -> Vec<f64> { x.iter().map(|(n, v)| rate(*v, *n)).collect() };
    let (u, ut, t, n, a) =
        (mean(&usage_per_seat), mean(&util), mean(&tickets), mean(&nps), mean(&advanced));
    eprintln!(
        "usage/seat {u:?}\nutilisation {ut:?}\ntickets {t:?}\nnps {n:?}\nadvanced share {a:?}"
    );
    assert!(u[0] < u[2] * 0.8, "usage per seat {u:?}");
    assert!(ut[0] < ut[2] * 0.8, "utilisation {ut:?}");
    assert!(t[0] > t[2] * 1.3, "tickets {t:?}");
    assert!(n[0] + 1.5 < n[2], "nps {n:?}");
    assert!(a[0] < a[2], "advanced feature share {a:?}");
}
