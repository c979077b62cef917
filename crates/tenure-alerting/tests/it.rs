//! Scenario tests of the alerting core: each file of `tests/scenarios` is a configuration,
//! a history and instants at which events arrive (or every account is re-evaluated); the
//! alerts and tasks raised at each step, rendered as text, are the file's `== expect`
//! section. The runner drives the live state as the service's applier does: `load`
//! starts from the log's history and evaluates every account, `apply` takes a batch (the
//! immediate rules, then the aggregate ones on the accounts touched), `refresh`
//! re-evaluates every account, and what a step raised is applied back, as the service
//! stores its own alerts and tasks. `UPDATE_EXPECT=1 cargo test -p tenure-alerting`
//! rewrites the expect sections; each must then be checked against the rules by hand.
//!
//! A scenario file, sections in this order (`#` lines before the first are its comment):
//!
//! ```text
//! == config          a tenure.toml: the engine's sections, [service], [[rule]], [[playbook]]
//! == scorecards      a scorecards.toml (else the shipped scorecards)
//! == model           a churn model file (else none)
//! == only KIND...    every other kind of rule is disabled
//! == load INSTANT    JSON lines: the log's history
//! == apply INSTANT   JSON lines: a batch of committed events (any number of apply / refresh)
//! == refresh INSTANT
//! == expect
//! ```

use expect_test::expect_file;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tenure_alerting::{
    DayRow, Firing, History, Kind, Live, Pending, Playbook, RuleConfig, Rules, Settings, Usage,
    raise,
};
use tenure_core::event::{Event, EventBody};
use tenure_core::time::{DAY, PeriodUnit, Timestamp};
use tenure_health::scorecard::Scorecards;
use tenure_health::{Model, UsageByAccount};
use tenure_kpi::usage::UsageMonth;

/// The service's sections of the configuration, as tenure-server reads them (notifiers
/// aside).
#[derive(Default, Deserialize)]
struct ServiceConfig {
    #[serde(default)]
    service: ServiceSection,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleConfig>,
    #[serde(default, rename = "playbook")]
    playbooks: Vec<Playbook>,
}

#[derive(Default, Deserialize)]
struct ServiceSection {
    immediate_horizon_days: Option<i64>,
    digest_above: Option<usize>,
}

struct Section {
    name: String,
    arg: String,
    body: String,
}

/// The sections of a scenario up to `== expect`, and the text they span.
fn sections(text: &str) -> (String, Vec<Section>) {
    let input = match text.find("\n== expect") {
        Some(i) => &text[..=i],
        None => text,
    };
    let mut out: Vec<Section> = Vec::new();
    for line in input.lines() {
        if let Some(h) = line.strip_prefix("== ") {
            let (name, arg) = h.split_once(' ').unwrap_or((h, ""));
            out.push(Section { name: name.into(), arg: arg.trim().into(), body: String::new() });
        } else if let Some(s) = out.last_mut() {
            s.body += line;
            s.body += "\n";
        } else {
            assert!(
                line.is_empty() || line.starts_with('#'),
                "text before the first section: {line}"
            );
        }
    }
    let mut input = input.to_string();
    if !input.ends_with('\n') {
        input.push('\n');
    }
    (input, out)
}

fn instant(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap_or_else(|e| panic!("instant {s:?}: {e}"))
}

/// JSON lines to events, validated as the service validates a request.
fn events(body: &str, now: Option<Timestamp>) -> Vec<Event> {
    let cfg = tenure_ingest::IngestConfig::defaults(now);
    body.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            tenure_ingest::parse_json_line(l, None, &cfg).unwrap_or_else(|e| panic!("{l}: {e:?}"))
        })
        .collect()
}

/// The usage figures the columnar store gives the service at `now`: every account's months
/// before `now` and the day rows of `[since, now)`.
fn usage(history: &[Event], features: &[String], since: Timestamp, now: Timestamp) -> Usage {
    let bit = |f: &str| features.iter().take(64).position(|x| x == f).map_or(0, |i| 1u64 << i);
    /// A month's figures with its distinct users and days.
    type Month = (UsageMonth, FxHashSet<String>, FxHashSet<i64>);
    let mut months: FxHashMap<String, BTreeMap<Timestamp, Month>> = FxHashMap::default();
    let mut days: BTreeMap<(String, i64, String, String), u64> = BTreeMap::new();
    for e in history {
        let (EventBody::Usage { user_id, event, feature, .. }, Some(a)) = (&e.body, &e.account)
        else {
            continue;
        };
        let feature = feature.as_deref().unwrap_or(event);
        let day = e.ts.day();
        if day * DAY >= now.0 {
            continue;
        }
        let m = PeriodUnit::Month.floor(e.ts);
        let (u, users, ds) = months.entry(a.clone()).or_default().entry(m).or_insert_with(|| {
            (
                UsageMonth { month: m, ..UsageMonth::default() },
                FxHashSet::default(),
                FxHashSet::default(),
            )
        });
        u.events += 1;
        u.features |= bit(feature);
        u.last_day = u.last_day.max(Timestamp(day * DAY));
        users.insert(user_id.clone());
        ds.insert(day);
        if day * DAY >= since.0 {
            *days.entry((a.clone(), day, user_id.clone(), feature.to_string())).or_default() += 1;
        }
    }
    let monthly: UsageByAccount = months
        .into_iter()
        .map(|(a, ms)| {
            let v = ms
                .into_values()
                .map(|(mut u, users, ds)| {
                    u.users = users.len() as u64;
                    u.days = ds.len() as u64;
                    u
                })
                .collect();
            (a, v)
        })
        .collect();
    let days: Vec<DayRow> = days.into_iter().map(|((a, d, u, f), n)| (a, d, u, f, n)).collect();
    Usage { monthly, days }
}

fn text(s: &Option<String>) -> String {
    s.as_deref().map_or("-".into(), |s| format!("{s:?}"))
}

/// One raised alert and its task, as text.
fn render(r: &tenure_alerting::Raised, live: &Live, now: Timestamp) -> String {
    let rule = &live.rules.rules[r.rule];
    assert_eq!(r.alert.ts, now, "alerts are dated at the instant");
    assert_eq!(r.alert.message_id.as_deref(), Some(r.alert_id.as_str()));
    let EventBody::Alert { alert_id, rule: rule_id, severity, message } = &r.alert.body else {
        panic!("not an alert: {:?}", r.alert)
    };
    assert_eq!((alert_id, rule_id), (&r.alert_id, &rule.id));
    let mut s = format!(
        "  alert {alert_id} {} {rule_id} {}: {}\n",
        r.account_id,
        severity.as_str(),
        text(message)
    );
    let Some(task) = &r.task else {
        assert!(r.task_id.is_none() && !r.opened);
        return s + "  no task: in a digest\n";
    };
    assert_eq!(task.ts, now, "tasks are dated at the instant");
    let task_id = r.task_id.as_deref().expect("a task's id");
    assert_eq!(task.message_id, Some(format!("{task_id}:{}", r.alert_id)));
    let EventBody::Task(t) = &task.body else { panic!("not a task: {task:?}") };
    assert_eq!(t.alert_id.as_deref(), Some(r.alert_id.as_str()));
    assert_eq!(t.status.is_some(), r.opened, "a new task has a status, an update none");
    s += &format!("  task {} {}", t.task_id, if r.opened { "opened" } else { "updated" });
    if let Some(x) = t.status {
        s += &format!(" status={}", x.as_str());
    }
    if let Some(x) = &t.rule {
        s += &format!(" rule={x}");
    }
    if let Some(x) = &t.title {
        s += &format!(" title={x:?}");
    }
    if r.opened {
        s += &format!(" owner={}", t.owner.as_deref().unwrap_or("-"));
    }
    if let Some(x) = t.due {
        s += &format!(" due={}", x.date_string());
    }
    if let Some(x) = &t.root_cause {
        s += &format!(" root_cause={x}");
    }
    s += &format!(" author={} note={}\n", t.author.as_deref().unwrap_or("-"), text(&t.note));
    s
}

/// Raises what fired and renders it; returns the events to store.
fn record(
    live: &Live,
    fired: Vec<Firing>,
    now: Timestamp,
    pending: &mut Pending,
    out: &mut String,
    cap: Option<usize>,
) -> Vec<Event> {
    let mut stored = Vec::new();
    for r in raise(live, fired, now, pending, cap) {
        *out += &render(&r, live, now);
        stored.push(r.alert);
        stored.extend(r.task);
    }
    stored
}

/// A batch through the live state as the applier takes it: immediate rules first, then the
/// aggregate rules on the accounts touched.
fn apply(
    live: &mut Live,
    batch: &[Event],
    now: Timestamp,
    pending: &mut Pending,
    out: &mut String,
) -> Vec<Event> {
    let (fired, touched) = live.take(batch, now);
    let mut stored = record(live, fired, now, pending, out, None);
    // One account a step, as the service settles a bulk import a block at a time: the
    // scenarios' outputs do not depend on the blocks.
    let mut s = live.settle_start(touched, now).in_blocks_of(1);
    let mut fired = Vec::new();
    while let Some(f) = live.settle_step(&mut s) {
        fired.extend(f);
    }
    stored.extend(record(live, fired, now, pending, out, None));
    stored
}

/// Runs one scenario: its input, then `== expect` and what each step raised.
fn run(path: &Path) -> String {
    let file = std::fs::read_to_string(path).unwrap();
    let (input, sections) = sections(&file);
    for s in &sections {
        const KNOWN: &[&str] =
            &["config", "scorecards", "model", "only", "load", "apply", "refresh"];
        assert!(KNOWN.contains(&s.name.as_str()), "unknown section == {}", s.name);
    }
    let section = |name: &str| sections.iter().find(|s| s.name == name).map(|s| s.body.as_str());
    let config = section("config").unwrap_or("");
    let engine = tenure_engine::Config::parse(config).expect("the engine's sections");
    let mut service: ServiceConfig = toml::from_str(config).expect("the service's sections");
    if let Some(s) = sections.iter().find(|s| s.name == "only") {
        let only: Vec<&str> = s.arg.split_whitespace().collect();
        assert!(
            only.iter().all(|o| Kind::ALL.iter().any(|k| k.as_str() == *o)),
            "unknown kind in {only:?}"
        );
        for k in Kind::ALL {
            if !only.contains(&k.as_str()) && !service.rules.iter().any(|r| r.kind == Some(*k)) {
                service.rules.push(RuleConfig {
                    kind: Some(*k),
                    enabled: Some(false),
                    ..RuleConfig::default()
                });
            }
        }
    }
    let rules = Rules::from_config(&service.rules, service.playbooks).expect("valid rules");
    let cards = match section("scorecards") {
        Some(t) => Scorecards::parse(t).expect("valid scorecards"),
        None => Scorecards::default_set(),
    };
    let model = section("model").map(|t| Model::from_json(t).expect("a valid model"));
    let settings = Settings { revenue: engine.revenue, kpi: engine.kpi };
    let features: Vec<String> = settings.kpi.features.iter().map(|f| f.name.clone()).collect();

    let mut steps =
        sections.iter().filter(|s| matches!(s.name.as_str(), "load" | "apply" | "refresh"));
    let load = steps.next().filter(|s| s.name == "load").expect("a scenario starts with == load");
    let now = instant(&load.arg);
    let history = events(&load.body, None);
    let used = usage(&history, &features, Live::window_start(&rules, now), now);
    let mut log = History::default();
    for e in history {
        log.push(e);
    }
    let mut live = Live::new(log, settings, rules, cards, model, used, now);
    if let Some(d) = service.service.immediate_horizon_days {
        live.immediate_horizon_days = d.max(0);
    }
    let mut pending = Pending::default();
    let mut out = String::new();
    // Evaluations of every account are capped as the service's are (`digest_above`).
    let cap = Some(service.service.digest_above.unwrap_or(20));
    // The evaluation at start, capped as the service's is (`digest_above`).
    {
        let mut s = String::new();
        let fired = live.evaluate();
        let stored = record(&live, fired, now, &mut pending, &mut s, cap);
        finish(&mut live, &mut pending, format!("load {now}"), s, stored, now, &mut out);
    }
    for st in steps {
        let now = instant(&st.arg);
        let mut s = String::new();
        let stored = match st.name.as_str() {
            "apply" => {
                let batch = events(&st.body, Some(now));
                apply(&mut live, &batch, now, &mut pending, &mut s)
            }
            _ => {
                assert!(st.body.trim().is_empty(), "refresh takes no events");
                let fired = live.refresh(now);
                record(&live, fired, now, &mut pending, &mut s, cap)
            }
        };
        finish(&mut live, &mut pending, format!("{} {now}", st.name), s, stored, now, &mut out);
    }
    format!("{input}== expect\n{out}")
}

/// Ends a step: what it raised is applied back, as the service stores its own alerts and
/// tasks and applies them like any committed batch (the rules never answer their own
/// alerts, so this settles at once); then the step's text.
fn finish(
    live: &mut Live,
    pending: &mut Pending,
    title: String,
    mut s: String,
    mut stored: Vec<Event>,
    now: Timestamp,
    out: &mut String,
) {
    let mut rounds = 0;
    while !stored.is_empty() {
        rounds += 1;
        assert!(rounds <= 3, "{title}: alerts keep raising alerts");
        let mut again = String::new();
        stored = apply(live, &stored, now, pending, &mut again);
        s += &if again.is_empty() {
            "  (its alerts and tasks applied back: nothing raised)\n".to_string()
        } else {
            format!("  its alerts and tasks applied back raised:\n{again}")
        };
    }
    *out += &title;
    *out += if s.is_empty() { ": nothing raised\n" } else { ":\n" };
    *out += &s;
}

#[test]
fn scenarios() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    let mut failed = Vec::new();
    for p in &paths {
        // Each scenario runs even when another fails, so one run shows every difference.
        if std::panic::catch_unwind(|| expect_file![p.clone()].assert_eq(&run(p))).is_err() {
            failed.push(p.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    assert!(failed.is_empty(), "scenarios differ from their expect sections: {failed:?}");
}

/// Every kind of rule has a scenario in which it fires.
#[test]
fn every_kind_has_a_scenario() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        all += &std::fs::read_to_string(e.unwrap().path()).unwrap();
    }
    let expect: String =
        all.split("== expect\n").skip(1).map(|s| s.split("\n== ").next().unwrap_or("")).collect();
    for k in Kind::ALL {
        assert!(
            expect
                .lines()
                .any(|l| l.starts_with("  alert ") && l.contains(&format!(" {} ", k.as_str()))),
            "no scenario raises {}",
            k.as_str()
        );
    }
}

/// The churn_risk scenario's model (a failed payment in 90 days: 88%).
fn churn_risk_model() -> Model {
    let scenario = include_str!("scenarios/churn_risk.txt");
    let from = scenario.find("== model\n").unwrap() + "== model\n".len();
    Model::from_json(&scenario[from..from + scenario[from..].find("\n== ").unwrap()]).unwrap()
}

/// JSON lines of `n` paying accounts `acc-00000`...: each with a CSM, a subscription from
/// 2025-06 (a third cancelled in June 2026) and, for half, a login in May 2026; `more`
/// adds an account's own lines (`i`, its id, the lines).
fn leaving_company(n: usize, more: impl Fn(usize, &str, &mut Vec<String>)) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..n {
        let a = format!("acc-{i:05}");
        lines.push(format!(r#"{{"type":"account","timestamp":"2025-01-01","account_id":"{a}","attributes":{{"csm":"c{}"}}}}"#, i % 7));
        lines.push(format!(r#"{{"type":"subscription","timestamp":"2025-06-01","account_id":"{a}","subscription_id":"s{i}","amount":"{}","status":"active"}}"#, 100 + i % 50));
        if i % 3 == 0 {
            lines.push(format!(r#"{{"type":"subscription","timestamp":"2026-06-{:02}","account_id":"{a}","subscription_id":"s{i}","amount":"{}","status":"canceled"}}"#, 11 + i % 13, 100 + i % 50));
        }
        if i % 2 == 0 {
            lines.push(format!(r#"{{"type":"usage","timestamp":"2026-05-{:02}T09:00:00Z","account_id":"{a}","user_id":"u{i}","event":"login"}}"#, 1 + i % 28));
        }
        more(i, &a, &mut lines);
    }
    lines
}

/// A live state started at `now` from `history`, with the default settings and rules and the
/// churn_risk scenario's model (so that refreshes predict and churn_risk alerts name their
/// drivers).
fn started(history: &[Event], now: Timestamp) -> Live {
    let engine = tenure_engine::Config::defaults();
    let rules = Rules::from_config(&[], Vec::new()).unwrap();
    let features: Vec<String> = engine.kpi.features.iter().map(|f| f.name.clone()).collect();
    let mut log = History::default();
    for e in history {
        log.push(e.clone());
    }
    let used = usage(history, &features, Live::window_start(&rules, now), now);
    let settings = Settings { revenue: engine.revenue.clone(), kpi: engine.kpi.clone() };
    Live::new(log, settings, rules, Scorecards::default_set(), Some(churn_risk_model()), used, now)
}

/// A batch that touches many accounts (a bulk import), settled a block of accounts at a time
/// as the service does, leaves the state and raises what settling it at once does; an
/// account not yet reached keeps its fold of before the batch.
#[test]
fn a_settle_in_blocks_equals_one_at_once() {
    let (t1, t2) = (instant("2026-06-10T00:00:00Z"), instant("2026-06-12T00:00:00Z"));
    let history = events(&leaving_company(600, |_, _, _| {}).join("\n"), None);
    // Tickets for half the accounts, usage for a third, failed payments for a seventh.
    let mut batch = Vec::new();
    for i in 0..600 {
        let a = format!("acc-{i:05}");
        if i % 2 == 0 {
            batch.push(format!(r#"{{"type":"ticket","timestamp":"2026-06-11T09:00:00Z","account_id":"{a}","ticket_id":"t{i}","status":"opened"}}"#));
        }
        if i % 3 == 0 {
            batch.push(format!(r#"{{"type":"usage","timestamp":"2026-06-11T10:00:00Z","account_id":"{a}","user_id":"v{i}","event":"login"}}"#));
        }
        if i % 7 == 0 {
            batch.push(format!(r#"{{"type":"invoice","timestamp":"2026-06-11T11:00:00Z","account_id":"{a}","invoice_id":"b{i}","amount":"100","status":"failed"}}"#));
        }
    }
    let batch = events(&batch.join("\n"), None);
    let start = || started(&history, t1);
    let render = |l: &Live| {
        let mut health: Vec<String> =
            l.health.accounts.iter().map(|(id, h)| format!("{id} {h:?}")).collect();
        health.sort();
        let mut usage: Vec<String> = l.usage.iter().map(|(id, m)| format!("{id} {m:?}")).collect();
        usage.sort();
        (format!("{:?}\n{:?}", l.ledger.accounts, l.ledger.diagnostics), health, usage)
    };
    let mut once = start();
    let (_, touched) = once.take(&batch, t2);
    let taken = render(&once);
    let expected_fired = once.settle(touched, t2);
    let expected = render(&once);
    assert_ne!(taken, expected, "settling changes the folds, health and usage");
    assert!(
        expected_fired.iter().any(|f| f.message.contains("failed payment")),
        "the aggregate rules fire: {expected_fired:?}"
    );
    let mut live = start();
    let (_, touched) = live.take(&batch, t2);
    let mut s = live.settle_start(touched, t2).in_blocks_of(7);
    let accounts = s.len();
    // The first block settled, a later account not yet: it keeps its fold of before.
    let mut fired = live.settle_step(&mut s).expect("a first block");
    let fold = |l: &Live| format!("{:?}", l.ledger.account("acc-00598").unwrap());
    assert_eq!(fold(&live), fold(&start()));
    assert_ne!(fold(&live), fold(&once));
    let mut steps = 1;
    while let Some(f) = live.settle_step(&mut s) {
        fired.extend(f);
        steps += 1;
    }
    assert!(accounts >= 300, "{accounts} accounts settled");
    assert_eq!(steps, accounts.div_ceil(7));
    assert!(render(&live) == expected, "the state settled in blocks differs");
    assert_eq!(fired, expected_fired);
}

/// A refresh, done a block of accounts at a time, leaves the state a fresh start at its
/// instant would have (ledger, health, usage rules) and raises what that start's
/// evaluation raises; an account not yet reached keeps the fold of the instant before.
/// 5,000 accounts: more than one block.
#[test]
fn a_refresh_in_blocks_equals_a_fresh_start() {
    let (t1, t2) = (instant("2026-06-10T00:00:00Z"), instant("2026-06-25T00:00:00Z"));
    // Known at t2, not at t1: a third of the accounts leave, some pay late.
    let mut lines = leaving_company(5000, |i, a, lines| {
        if i % 5 == 0 {
            lines.push(format!(r#"{{"type":"invoice","timestamp":"2026-06-{:02}","account_id":"{a}","invoice_id":"i{i}","amount":"100","status":"failed"}}"#, 12 + i % 10));
        }
    });
    // A cost known at t2 only: the ledger's own part, brought forward at the end.
    lines.push(r#"{"type":"cost","timestamp":"2026-06-15","category":"service","amount":"1000.00","period_start":"2026-06-01","period_end":"2026-07-01"}"#.into());
    let history = events(&lines.join("\n"), None);
    let start = |now: Timestamp| started(&history, now);
    let render = |l: &Live| {
        let mut health: Vec<String> =
            l.health.accounts.iter().map(|(id, h)| format!("{id} {h:?}")).collect();
        health.sort();
        (
            format!("{:?}\n{:?}\n{:?}", l.ledger.accounts, l.ledger.costs, l.ledger.diagnostics),
            health,
        )
    };
    let mut fresh = start(t2);
    let expected = render(&fresh);
    let expected_fired = fresh.evaluate();
    let drivers = expected_fired.iter().filter(|f| f.message.contains("failed payment")).count();
    assert!(
        expected_fired.len() > 100 && drivers > 100,
        "the rules fire, naming drivers: {expected_fired:?}"
    );
    let mut live = start(t1);
    let before = render(&live);
    assert_ne!(before, expected, "the instants differ");
    let mut r = live.refresh_start(t2);
    // The first block refreshed, a later account not yet: it keeps its fold of t1 (it
    // left on 2026-06-17, between the instants).
    let first = live.refresh_step(&mut r).expect("a first block");
    let fold = |l: &Live| format!("{:?}", l.ledger.account("acc-04998").unwrap());
    assert_eq!(fold(&live), fold(&start(t1)));
    assert_ne!(fold(&live), fold(&fresh));
    let mut fired = first;
    let mut steps = 1;
    while let Some(f) = live.refresh_step(&mut r) {
        fired.extend(f);
        steps += 1;
    }
    assert_eq!(steps, 2, "5,000 accounts in blocks of 4,096");
    assert!(render(&live) == expected, "the refreshed state differs from a fresh start at t2");
    assert_eq!(fired, expected_fired);
}

/// A state saved (`Live::snapshot`) and read back answers as the one saved: every
/// account's fold, health, monthly and daily usage; it waits for its history, and once
/// given it (the log replayed up to where it was saved) a refresh gives what the saved
/// state's refresh gives, firings included. An alert in the history that the saved state
/// had not taken (recorded as the service stopped) keeps its account in the rule's
/// cooldown. A damaged snapshot is refused.
#[test]
fn a_state_read_from_its_snapshot_answers_and_refreshes_as_the_one_saved() {
    use tenure_ledger::checkpoint::LedgerCheckpoint;
    let (t0, t1, t2) = (
        instant("2026-06-09T00:00:00Z"),
        instant("2026-06-10T00:00:00Z"),
        instant("2026-06-25T00:00:00Z"),
    );
    let lines = leaving_company(3000, |i, a, lines| {
        lines.push(format!(r#"{{"type":"account","timestamp":"2025-01-02","account_id":"{a}","name":"Account {i}"}}"#));
        if i % 5 == 0 {
            lines.push(format!(r#"{{"type":"invoice","timestamp":"2026-06-{:02}","account_id":"{a}","invoice_id":"i{i}","amount":"100","status":"failed"}}"#, 1 + i % 8));
        }
        if i % 2 == 0 {
            lines.push(format!(r#"{{"type":"usage","timestamp":"2026-06-{:02}T09:00:00Z","account_id":"{a}","user_id":"u{i}","event":"login"}}"#, 1 + i % 8));
        }
    });
    // Taken by the running state after its start (so not only a fresh fold is saved).
    let later = events(
        r#"{"type":"ticket","timestamp":"2026-06-09T12:00:00Z","account_id":"acc-00004","ticket_id":"t1","status":"opened"}
{"type":"usage","timestamp":"2026-06-09T13:00:00Z","account_id":"acc-00005","user_id":"u9","event":"login"}"#,
        None,
    );
    let history = events(&lines.join("\n"), None);
    let engine = tenure_engine::Config::defaults();
    let rules = Rules::from_config(&[], Vec::new()).unwrap();
    let features: Vec<String> = engine.kpi.features.iter().map(|f| f.name.clone()).collect();
    let settings = Settings { revenue: engine.revenue.clone(), kpi: engine.kpi.clone() };
    let model = || Some(churn_risk_model());
    let log = |extra: &[Event]| {
        let mut log = History::default();
        for e in history.iter().chain(extra) {
            log.push(e.clone());
        }
        log
    };
    let used = usage(&history, &features, Live::window_start(&rules, t0), t0);
    let mut saved = Live::new(
        log(&[]),
        settings.clone(),
        rules.clone(),
        Scorecards::default_set(),
        model(),
        used,
        t0,
    );
    let _ = saved.apply(&later, t1);
    let render = |l: &Live| {
        let mut health: Vec<String> =
            l.health.accounts.iter().map(|(id, h)| format!("{id} {h:?}")).collect();
        health.sort();
        let mut usage: Vec<String> = l.usage.iter().map(|(id, m)| format!("{id} {m:?}")).collect();
        usage.sort();
        let days: Vec<u64> = l
            .ledger
            .accounts
            .iter()
            .map(|a| l.events_between(&a.id, t0.day() - 40, t2.day()))
            .collect();
        (
            format!("{:?}\n{:?}\n{:?}", l.ledger.accounts, l.ledger.costs, l.ledger.diagnostics),
            (health, usage, days, l.t, l.health.t),
        )
    };
    let snap = saved.snapshot(b"key", b"position");
    let open = || LedgerCheckpoint::open(snap.ledger.to_bytes(), b"key").unwrap();
    let read = |rest: &[u8]| {
        Live::from_snapshot(
            &open(),
            rest,
            settings.clone(),
            rules.clone(),
            Scorecards::default_set(),
            model(),
        )
    };
    let mut back = read(&snap.rest).unwrap();
    assert!(back.warming() && !saved.warming());
    let (ledger, rest) = render(&saved);
    assert!(rest.0.len() > 1000 && rest.1.len() > 1000, "health and usage are tested");
    assert!(rest.2.iter().sum::<u64>() > 1000, "daily usage is tested");
    assert!(ledger.contains("Account 7") && ledger.contains("t1"), "names and tickets are tested");
    assert!(render(&back) == render(&saved), "the state read back differs from the one saved");
    // Damage is refused, never read.
    let mut bad = snap.rest.clone();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    assert!(read(&bad).is_err());
    assert!(read(&snap.rest[..snap.rest.len() - 1]).is_err());
    // The history as the log holds it: with an alert recorded as the service stopped.
    let expected = saved.refresh(t2);
    let silenced = expected.iter().find(|f| f.message.contains("failed payment")).unwrap();
    let rule = rules.rules[silenced.rule].id.clone();
    let alert = Event {
        ts: t1,
        account: Some(silenced.account.clone()),
        message_id: None,
        body: EventBody::Alert {
            alert_id: "al-stop".into(),
            rule,
            severity: tenure_core::event::Severity::from_index(0).unwrap(),
            message: None,
        },
    };
    back.install(log(&[later.clone(), vec![alert]].concat()), None, None);
    assert!(!back.warming());
    let fired = back.refresh(t2);
    let mut want = expected.clone();
    want.retain(|f| f != silenced);
    let only = |a: &[Firing], b: &[Firing]| -> Vec<String> {
        a.iter().filter(|f| !b.contains(f)).take(5).map(|f| format!("{f:?}")).collect()
    };
    assert!(
        fired == want,
        "the refresh after the history differs from the saved state's: {} and {} firings; only after the history: {:?}; only saved: {:?}",
        fired.len(),
        want.len(),
        only(&fired, &want),
        only(&want, &fired)
    );
    // The alert recorded at the stop is in the refreshed ledger, not in the saved one.
    let (_, rest_saved) = render(&saved);
    let (_, rest_back) = render(&back);
    assert_eq!(rest_back, rest_saved);
    let mut accounts = back.ledger.accounts.clone();
    let mut recorded = 0;
    for a in &mut accounts {
        let n = a.cs.alerts.len();
        a.cs.alerts.retain(|al| al.alert_id != "al-stop");
        recorded += n - a.cs.alerts.len();
    }
    assert_eq!(recorded, 1);
    assert_eq!(format!("{accounts:?}"), format!("{:?}", saved.ledger.accounts));
    // Given the closed months' usage as the columnar store has them now (a late event in
    // May for acc-00000, May's usage for an account the state had none for), the state
    // takes them, and keeps its own current month.
    let mut again = read(&snap.rest).unwrap();
    let may = instant("2026-05-01T00:00:00Z");
    let mut closed: UsageByAccount = saved.usage.clone();
    closed.get_mut("acc-00000").unwrap().iter_mut().find(|u| u.month == may).unwrap().events += 5;
    closed.insert(
        "acc-00001".into(),
        vec![UsageMonth { month: may, events: 3, ..UsageMonth::default() }],
    );
    // What the store gives of the current month is not taken.
    let june = instant("2026-06-01T00:00:00Z");
    closed.get_mut("acc-00002").unwrap().retain(|u| u.month < june);
    closed.get_mut("acc-00002").unwrap().push(UsageMonth {
        month: june,
        events: 99,
        ..UsageMonth::default()
    });
    let before = again.usage.clone();
    again.install(log(&later), Some((closed, t2)), None);
    let events = |l: &Live, id: &str, m: Timestamp| {
        l.usage.get(id).and_then(|v| v.iter().find(|u| u.month == m)).map(|u| u.events)
    };
    let was = |id: &str, m: Timestamp| {
        before.get(id).and_then(|v| v.iter().find(|u| u.month == m)).map(|u| u.events)
    };
    assert_eq!(events(&again, "acc-00000", may), was("acc-00000", may).map(|e| e + 5));
    assert_eq!(events(&again, "acc-00001", may), Some(3));
    assert_eq!(events(&again, "acc-00002", june), was("acc-00002", june));
    assert!(was("acc-00002", june).is_some_and(|e| e != 99), "the current month is tested");
    assert_eq!(events(&again, "acc-00004", june), was("acc-00004", june));
    // A tail: events the saved state never took (appended after the save, before a crash
    // or by an import while the service was down). Given the history to the log's end and
    // the days as the columnar store has them, its refresh is a fresh start's on the whole
    // log: the ticket, the failed payment, the new account and the new day's usage in.
    let tail = crate::events(
        r#"{"type":"ticket","timestamp":"2026-06-11T12:00:00Z","account_id":"acc-00006","ticket_id":"t2","status":"opened"}
{"type":"invoice","timestamp":"2026-06-12T08:00:00Z","account_id":"acc-00008","invoice_id":"i-tail","amount":"100","status":"failed"}
{"type":"account","timestamp":"2026-06-12T09:00:00Z","account_id":"acc-tail","name":"Tail"}
{"type":"usage","timestamp":"2026-06-12T10:00:00Z","account_id":"acc-00007","user_id":"u-tail","event":"login"}
{"type":"usage","timestamp":"2026-06-12T11:00:00Z","account_id":"acc-tail","user_id":"u-new","event":"login"}"#,
        None,
    );
    let all: Vec<Event> = [later.clone(), tail].concat();
    let whole: Vec<Event> = history.iter().chain(&all).cloned().collect();
    let used = usage(&whole, &features, Live::window_start(&rules, t2), t2);
    let fresh = Live::new(
        log(&all),
        settings.clone(),
        rules.clone(),
        Scorecards::default_set(),
        model(),
        used.clone(),
        t2,
    );
    let mut forward = read(&snap.rest).unwrap();
    forward.install(log(&all), Some((used.monthly.clone(), t2)), Some(used.days.clone()));
    let _ = forward.refresh(t2);
    assert!(forward.ledger.account("acc-tail").is_some());
    assert!(
        render(&forward) == render(&fresh),
        "brought forward over its tail, the state differs from a fresh start"
    );
    // Saved by a build that folded and scored otherwise (an upgrade): once its history is
    // in, the refresh folds and scores every account again, as this build does.
    let mut odd = read(&snap.rest).unwrap();
    for a in &mut odd.ledger.accounts {
        a.steps.clear();
        a.cs.tickets.clear();
    }
    odd.ledger.costs.clear();
    for h in odd.health.accounts.values_mut() {
        (h.score, h.probability, h.colour) = (Some(0.5), Some(0.5), "grey");
    }
    assert!(render(&odd) != render(&fresh));
    odd.install(log(&all), Some((used.monthly.clone(), t2)), Some(used.days.clone()));
    let _ = odd.refresh(t2);
    assert!(render(&odd) == render(&fresh), "an earlier build's folds or scores are left");
    // Without the store's days, the tail's usage would be missing.
    let mut kept = read(&snap.rest).unwrap();
    kept.install(log(&all), Some((used.monthly, t2)), None);
    let _ = kept.refresh(t2);
    assert!(render(&kept).1 != render(&fresh).1, "the days are tested");
    // Its days read again (saved with other rules, or days counted otherwise): its current month
    // goes with them. An account the store has no days of this month for has no usage in
    // it once refreshed, as after a replay, whatever the saved state counted.
    let used = usage(&whole, &features, Live::window_start(&rules, t2), t2);
    let days: Vec<DayRow> = used.days.into_iter().filter(|r| r.0 != "acc-00004").collect();
    let mut other = read(&snap.rest).unwrap();
    other.install(log(&all), Some((used.monthly, t2)), Some(days));
    let _ = other.refresh(t2);
    assert!(was("acc-00004", june).is_some(), "the saved state counted acc-00004's June");
    assert_eq!(events(&other, "acc-00004", june), None);
    assert_eq!(events(&other, "acc-00006", june), events(&fresh, "acc-00006", june));
}

/// A state saved by an earlier build is read by this one as it was saved (the service's
/// upgrade reads the state the build before saved). `tests/data/live-state/FORMATS/` holds
/// a state encoded once, by the first build of those formats (the ledger checkpoint's and
/// the rest's), and never rewritten: a state of `events.jsonl` with its alerts and tasks,
/// rules' memory, health, predictions, monthly and recent usage, and its text (`state.txt`,
/// every value as that build wrote it down). This build decodes it to that text and encodes
/// it again to the very same bytes, so every byte is read as that build meant it.
/// A change of either layout fails here until the format it changes is bumped
/// (`tenure_ledger::checkpoint::FORMAT`, `live::SNAPSHOT_FORMAT`), and a service upgraded
/// across it replays its log once rather than misreading its state. Then
/// `TENURE_NEW_SAVED_STATE=1` writes the new formats' directory (the older ones may go).
#[test]
fn a_state_saved_by_an_earlier_build_is_read_as_it_was_saved() {
    use tenure_ledger::checkpoint::{self, LedgerCheckpoint};
    const KEY: &[u8] = b"live state";
    const POSITION: &[u8] = b"lanes";
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/live-state");
    let formats =
        format!("ledger-{}-live-{}", checkpoint::FORMAT, tenure_alerting::live::SNAPSHOT_FORMAT);
    let dir = root.join(&formats);
    let mut engine = tenure_engine::Config::defaults();
    // Features catalogued, so that the usage's feature sets are not all empty.
    engine.kpi.features = ["dashboards", "export", "automations", "custom_fields", "api"]
        .map(|name| tenure_kpi::usage::Feature {
            name: name.into(),
            advanced: false,
            released: None,
            plans: Vec::new(),
        })
        .into();
    let rules = Rules::from_config(&[], Vec::new()).unwrap();
    let settings = Settings { revenue: engine.revenue.clone(), kpi: engine.kpi.clone() };
    let model = || Some(churn_risk_model());
    // The state: the company's history folded and scored on 2026-06-20, evaluated, and
    // what that raised taken back (the ledger's alerts and tasks, the rules' memory).
    let state = || {
        let t0 = instant("2026-06-20T00:00:00Z");
        let history = events(&std::fs::read_to_string(root.join("events.jsonl")).unwrap(), None);
        let features: Vec<String> = engine.kpi.features.iter().map(|f| f.name.clone()).collect();
        let mut log = History::default();
        // At positions, as the service replays them: the movements name their sources.
        for (i, e) in history.iter().enumerate() {
            log.push_at(e.clone(), Some(i as u64));
        }
        let used = usage(&history, &features, Live::window_start(&rules, t0), t0);
        let mut live = Live::new(
            log,
            settings.clone(),
            rules.clone(),
            Scorecards::default_set(),
            model(),
            used,
            t0,
        );
        let fired = live.evaluate();
        let stored = record(&live, fired, t0, &mut Pending::default(), &mut String::new(), None);
        assert!(!stored.is_empty(), "alerts and tasks are in the state");
        let _ = live.apply(&stored, Timestamp(t0.0 + DAY));
        live
    };
    let read = |ledger: Vec<u8>, rest: &[u8]| {
        let ledger = LedgerCheckpoint::open(ledger, KEY).map_err(|e| e.to_string())?;
        Live::from_snapshot(
            &ledger,
            rest,
            settings.clone(),
            rules.clone(),
            Scorecards::default_set(),
            model(),
        )
        .map_err(|e| e.to_string())
    };
    // This build reads its own state back as it was, and to the same bytes.
    let made = state();
    let own = made.snapshot(KEY, POSITION);
    let back = read(own.ledger.to_bytes(), &own.rest).unwrap();
    assert!(back.saved_text() == made.saved_text(), "the state reads back as it was");
    let again = back.snapshot(KEY, POSITION);
    assert!(again.ledger.to_bytes() == own.ledger.to_bytes(), "the ledger encodes again alike");
    assert!(again.rest == own.rest, "the rest encodes again alike");
    if !dir.exists() && std::env::var_os("TENURE_NEW_SAVED_STATE").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ledger.bin"), own.ledger.to_bytes()).unwrap();
        std::fs::write(dir.join("rest.bin"), &own.rest).unwrap();
        std::fs::write(dir.join("state.txt"), made.saved_text()).unwrap();
    }
    let file = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "{}: {e}. No state saved in this build's formats ({formats}): if a format was \
                 bumped, write one with TENURE_NEW_SAVED_STATE=1 and commit it",
                dir.join(name).display()
            )
        })
    };
    let (ledger, rest) = (file("ledger.bin"), file("rest.bin"));
    let back = read(ledger.clone(), &rest).unwrap_or_else(|e| {
        panic!(
            "the state saved by the first build of formats {formats} no longer reads ({e}): \
             its layout changed; bump the format of the part that changed"
        )
    });
    // Read as that build saved it: its every value as it wrote them down then. Only by
    // hand, and reviewed, may this text change (a field renamed, the bytes still read).
    assert!(
        back.saved_text().as_bytes() == file("state.txt").as_slice(),
        "the state saved in {formats} reads as other values than it held (compare its \
         state.txt with Live::saved_text): a layout changed without its format"
    );
    let again = back.snapshot(KEY, POSITION);
    assert!(
        again.ledger.to_bytes() == ledger,
        "the ledger saved in {formats} reads as something else: its layout changed; bump \
         tenure_ledger::checkpoint::FORMAT"
    );
    assert!(
        again.rest == rest,
        "the rest of the state saved in {formats} reads as something else: its layout \
         changed; bump tenure_alerting::live::SNAPSHOT_FORMAT"
    );
    // What the saved state holds: every part of the layout, with values that tell
    // same-typed fields apart.
    let cs = |f: &dyn Fn(&tenure_ledger::AccountLedger) -> usize| {
        back.ledger.accounts.iter().map(f).sum::<usize>()
    };
    assert!(back.ledger.accounts.len() == 15 && !back.ledger.costs.is_empty());
    let text = back.saved_text();
    for part in [
        "kind: Expansion",
        "kind: Contraction",
        "kind: Churn",
        "kind: Reactivation",
        "involuntary: true",
        "cancel_reason: Some(",
        "outcome: Won {",
        "outcome: Lost {",
        "outcome: Open",
        "Bool(true)",
        "Bool(false)",
        "cancellations_scheduled: [(",
        "rewrites: [(",
        "forecast_calls: [ForecastCall",
        "sources: [Log(",
    ] {
        assert!(text.contains(part), "the saved state has no {part}");
    }
    for (what, pattern) in
        [("upsell", "upsell: "), ("cross-sell", "cross_sell: "), ("service", "service_mrr: ")]
    {
        let some = text.match_indices(pattern).any(|(i, _)| {
            text[i + pattern.len()..].starts_with(|c: char| c.is_ascii_digit() && c != '0')
        });
        assert!(some, "the saved state has no {what} amount");
    }
    for (what, n) in [
        ("attributes", cs(&|a| a.attributes.len())),
        ("steps", cs(&|a| a.steps.len())),
        ("movements", cs(&|a| a.movements.len())),
        ("invoices", cs(&|a| a.invoices.len())),
        ("contacts", cs(&|a| a.cs.contact_changes.len())),
        ("surveys sent", cs(&|a| a.cs.surveys_sent.len())),
        ("survey responses", cs(&|a| a.cs.responses.len())),
        ("tickets", cs(&|a| a.cs.tickets.len())),
        ("touchpoints", cs(&|a| a.cs.touchpoints.len())),
        ("milestones", cs(&|a| a.cs.milestones.len())),
        ("objectives", cs(&|a| a.cs.objectives.len())),
        ("assessments", cs(&|a| a.cs.assessments.len())),
        ("change requests", cs(&|a| a.cs.change_requests.len())),
        ("alerts", cs(&|a| a.cs.alerts.len())),
        ("tasks", cs(&|a| a.cs.tasks.len())),
    ] {
        assert!(n > 0, "no {what} in the saved state");
    }
    assert!(back.usage.values().map(Vec::len).sum::<usize>() > 20, "monthly usage");
    let t = back.t.day();
    let recent: u64 =
        back.ledger.accounts.iter().map(|a| back.events_between(&a.id, t - 60, t + 1)).sum();
    assert!(recent > 10, "recent days");
    assert!(back.health.accounts.values().all(|h| h.probability.is_some() && h.score.is_some()));
}
