//! People's API tokens: a CSM's token sees their book and nothing else, through every
//! route that answers with accounts; routes that do not narrow to a book refuse it; a
//! viewer's reads everything and changes nothing; a disabled person's token stops. Each
//! person's daily digest of their new and overdue work, to the notifiers that take them.

use axum::http::StatusCode;
use serde_json::json;
use tenure_server::keys::Keys;
use tenure_server::users::Role;
use tenure_testkit::{Keyring, call, company, open, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_token_sees_their_book_only() {
    let f = Keyring::new();
    let mut keys = Keys::load(f.path()).unwrap();
    let mut token = |name: &str, email: &str, role: Role, team: Option<&str>| {
        keys.add_user(name, email, role, team, "2026-01-01").unwrap();
        keys.new_token(email).unwrap()
    };
    // The company's accounts: acme is sam's, bolt is kim's.
    let sam = token("sam", "sam@acme.test", Role::Csm, Some("east"));
    let max = token("Max", "max@acme.test", Role::Manager, Some("west"));
    let vic = token("Vic", "vic@acme.test", Role::Viewer, None);
    let adm = token("Ada", "ada@acme.test", Role::Admin, None);
    keys.save(f.path()).unwrap();
    let s = open(f.path(), "2026-06-01T12:00:00Z");
    let detractors: String = ["acme", "bolt"]
        .iter()
        .map(|a| {
            json!({"type": "survey_response", "timestamp": "2026-06-01T10:00:00Z", "account_id": a, "survey": "nps", "score": 0})
                .to_string()
                + "\n"
        })
        .collect();
    let body = company() + &detractors;
    let (st, _) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &body).await;
    assert_eq!(st, StatusCode::OK);
    let all = until(&s, &adm, "/api/v1/tasks?rule=detractor", |j| j["total"] == 2).await;
    let task_of = |account: &str| -> String {
        all["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["account_id"] == account)
            .unwrap()["task_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (acme_task, bolt_task) = (task_of("acme"), task_of("bolt"));
    let ids = |j: &serde_json::Value, list: &str| -> Vec<String> {
        j[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["account_id"].as_str().unwrap().to_string())
            .collect()
    };
    // A CSM: their book, in every list and lookup.
    let (_, j) = call(&s, "GET", "/api/v1/accounts", Some(&sam), "").await;
    assert_eq!((ids(&j, "accounts"), &j["total"]), (vec!["acme".to_string()], &json!(1)));
    let (st, _) = call(&s, "GET", "/api/v1/accounts/bolt", Some(&sam), "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "outside the book: as unknown as missing");
    let (st, _) = call(&s, "GET", "/api/v1/accounts/acme", Some(&sam), "").await;
    assert_eq!(st, StatusCode::OK);
    let (_, j) = call(&s, "GET", "/api/v1/tasks", Some(&sam), "").await;
    let mut seen = ids(&j, "tasks");
    seen.dedup();
    assert_eq!(seen, ["acme"]);
    let (_, j) = call(&s, "GET", "/api/v1/alerts", Some(&sam), "").await;
    let mut seen = ids(&j, "alerts");
    seen.dedup();
    assert_eq!(seen, ["acme"]);
    let (st, _) = call(&s, "GET", &format!("/api/v1/tasks/{bolt_task}"), Some(&sam), "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let change = r#"{"status":"in_progress","note":"on it"}"#;
    let (st, _) =
        call(&s, "PATCH", &format!("/api/v1/tasks/{bolt_task}"), Some(&sam), change).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another book's task cannot be changed");
    let (st, j) =
        call(&s, "PATCH", &format!("/api/v1/tasks/{acme_task}"), Some(&sam), change).await;
    assert_eq!(st, StatusCode::OK, "{j}");
    // Recorded under the person's email: the identity comes from the token.
    let on_it = |j: &serde_json::Value| {
        j["notes"].as_array().and_then(|n| n.iter().find(|n| n["note"] == "on it")).cloned()
    };
    let j = until(&s, &adm, &format!("/api/v1/tasks/{acme_task}"), |j| on_it(j).is_some()).await;
    assert_eq!(on_it(&j).unwrap()["author"], "sam@acme.test");
    // The audit log shows who did what, to admins only.
    let (st, j) = call(&s, "GET", "/api/v1/audit?from=2026-06", Some(&f.admin), "").await;
    assert_eq!(st, StatusCode::OK, "{j}");
    let mine: Vec<&serde_json::Value> =
        j["entries"].as_array().unwrap().iter().filter(|e| e["who"] == "sam@acme.test").collect();
    assert_eq!(mine.len(), 1, "{j}");
    assert_eq!(
        (&mine[0]["action"], &mine[0]["account"], &mine[0]["target"]),
        (&json!("task.status"), &json!("acme"), &json!(acme_task))
    );
    assert!(mine[0]["detail"].as_str().unwrap().contains("status in_progress; note \"on it\""));
    let (st, j) = call(&s, "GET", "/api/v1/audit?from=2026-07", Some(&f.admin), "").await;
    assert_eq!((st, j["entries"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    for key in [&sam, &vic, &f.read] {
        let (st, _) = call(&s, "GET", "/api/v1/audit", Some(key), "").await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    let (st, _) = call(&s, "GET", "/api/v1/audit", Some(&adm), "").await;
    assert_eq!(st, StatusCode::OK, "an admin's personal token sees it");
    let (st, _) = call(
        &s,
        "POST",
        "/api/v1/accounts/bolt/forecast-override",
        Some(&sam),
        r#"{"category":"commit"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Routes that answer for the whole company refuse a book's token, and say why.
    for path in ["/api/v1/kpis?period=2026-05", "/api/v1/cohorts", "/api/v1/scorecards"] {
        let (st, j) = call(&s, "GET", path, Some(&sam), "").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{path}: {j}");
        assert!(j["error"]["message"].as_str().unwrap().contains("book"), "{j}");
    }
    let (st, _) = call(&s, "POST", "/api/v1/events", Some(&sam), &detractors).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a person's token does not send events");
    // A manager of another team: an empty book.
    let (_, j) = call(&s, "GET", "/api/v1/accounts", Some(&max), "").await;
    assert_eq!(j["total"], 0);
    // A viewer: everything, read only.
    let (_, j) = call(&s, "GET", "/api/v1/accounts", Some(&vic), "").await;
    assert_eq!(j["total"], 2);
    let (st, _) = call(&s, "GET", "/api/v1/kpis?period=2026-05", Some(&vic), "").await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) =
        call(&s, "PATCH", &format!("/api/v1/tasks/{acme_task}"), Some(&vic), change).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // A disabled person's token stops within the keys file's recheck.
    let mut keys = Keys::load(f.path()).unwrap();
    keys.user_mut("sam@acme.test").unwrap().disabled = true;
    keys.save(f.path()).unwrap();
    let start = std::time::Instant::now();
    loop {
        let (st, _) = call(&s, "GET", "/api/v1/accounts", Some(&sam), "").await;
        if st == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(3), "still accepted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Writes events to the data directory's log before the service opens.
fn import(data: &std::path::Path, jsonl: &str) {
    let ingest = tenure_ingest::IngestConfig::defaults(None);
    let (mut imp, _) = tenure_engine::Importer::open(data, ingest).unwrap();
    let sum = imp
        .import(
            std::io::Cursor::new(jsonl.to_string()),
            tenure_engine::import::Format::Jsonl,
            None,
            &mut |r| panic!("{r:?}"),
            &mut |_| {},
        )
        .unwrap();
    assert!(sum.progress.accepted > 0);
}

/// Every kind of rule disabled.
fn no_rules() -> Vec<tenure_alerting::RuleConfig> {
    tenure_alerting::Kind::ALL
        .iter()
        .map(|k| tenure_alerting::RuleConfig {
            kind: Some(*k),
            enabled: Some(false),
            ..Default::default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_person_gets_a_daily_digest_of_their_new_and_overdue_work() {
    use crate::notify::{config, next, receiver};
    use tenure_server::notify::NotifierKind;
    let f = Keyring::new();
    let mut keys = Keys::load(f.path()).unwrap();
    keys.add_user("sam", "sam@acme.test", Role::Csm, Some("east"), "2026-01-01").unwrap();
    keys.add_user("kim", "kim@acme.test", Role::Csm, Some("east"), "2026-01-01").unwrap();
    keys.add_user("Max", "max@acme.test", Role::Manager, Some("east"), "2026-01-01").unwrap();
    keys.add_user("Vic", "vic@acme.test", Role::Viewer, None, "2026-01-01").unwrap();
    keys.add_user("Lee", "lee@acme.test", Role::Csm, Some("west"), "2026-01-01").unwrap();
    keys.save(f.path()).unwrap();
    // acme is sam's, bolt kim's. The digest of 2026-06-15 08:00 covers tasks opened since
    // the day before's (none was sent: the first looks back a day) and open tasks due
    // before June 15.
    let task = |id: &str, account: &str, at: &str, status: &str, due: &str, title: &str| {
        json!({"type": "task", "timestamp": at, "account_id": account, "task_id": id,
               "status": status, "due": due, "title": title, "rule": "detractor"})
        .to_string()
            + "\n"
    };
    let events = company()
        + &task("tk_new", "acme", "2026-06-14T10:00:00Z", "open", "2026-06-20", "Call <the> CFO")
        + &task("tk_old", "acme", "2026-06-01T10:00:00Z", "open", "2026-06-10", "Old & late")
        + &task(
            "tk_bolt",
            "bolt",
            "2026-05-02T10:00:00Z",
            "in_progress",
            "2026-06-12",
            "Bolt late",
        )
        + &task("tk_done", "bolt", "2026-05-02T10:00:00Z", "done", "2026-06-01", "Done")
        + &task(
            "tk_eve",
            "bolt",
            "2026-06-14T07:00:00Z",
            "open",
            "2026-06-30",
            "Before the window",
        );
    import(f.path(), &events);
    let (hook, mut hooks) = receiver(&[(200, "ok")]).await;
    let (slack, mut slacks) = receiver(&[(200, "ok")]).await;
    let mut all = config("digests", NotifierKind::Webhook, &format!("{hook}/digest"));
    (all.alerts, all.digests) = (Some(false), Some(true));
    let mut sams = config("sam-slack", NotifierKind::Slack, &format!("{slack}/services/T/B/x"));
    (sams.alerts, sams.digests, sams.people) =
        (Some(false), Some(true), vec!["SAM@acme.test".into()]);
    let open_at = |at: &'static str, hooks: Vec<tenure_server::notify::NotifierConfig>| {
        tenure_testkit::open_with(f.path(), at, move |o| {
            o.config.notifiers = hooks;
            o.config.service.daily_digest_hour = Some(8);
            o.config.service.public_url = Some("https://tenure.example".into());
            o.digest_poll = std::time::Duration::from_millis(100);
            // No rule opens tasks of its own here: the digest lists the imported ones.
            o.config.rules = no_rules();
        })
    };
    let s = open_at("2026-06-15T09:00:00Z", vec![all.clone(), sams.clone()]);
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let r = next(&mut hooks).await;
        assert_eq!(r.request_line, "POST /digest HTTP/1.1");
        let j = r.json();
        assert_eq!(j["type"], "digest", "{j}");
        got.insert(j["person"].as_str().unwrap().to_string(), j);
    }
    let tasks = |j: &serde_json::Value, list: &str| -> Vec<String> {
        j[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap().to_string())
            .collect()
    };
    // Sam: acme's new task and its overdue one; kim: bolt's overdue task (the done one is
    // not work, the one opened at 07:00 on June 14 is before the window); Max, their
    // manager: both books. Vic (a viewer) and Lee (nothing in the book) get none.
    assert_eq!(got.keys().collect::<Vec<_>>(), ["kim@acme.test", "max@acme.test", "sam@acme.test"]);
    let sam = &got["sam@acme.test"];
    assert_eq!(
        (tasks(sam, "new"), tasks(sam, "overdue")),
        (vec!["tk_new".to_string()], vec!["tk_old".to_string()])
    );
    assert_eq!(
        (&sam["new_total"], &sam["overdue_total"], &sam["day"], &sam["role"]),
        (&json!(1), &json!(1), &json!("2026-06-15"), &json!("csm"))
    );
    assert_eq!(sam["new"][0]["link"], "https://tenure.example/accounts/acme");
    assert_eq!(sam["new"][0]["due"], "2026-06-20");
    assert_eq!(sam["link"], "https://tenure.example/inbox");
    let kim = &got["kim@acme.test"];
    assert_eq!((tasks(kim, "new"), tasks(kim, "overdue")), (vec![], vec!["tk_bolt".to_string()]));
    let max = &got["max@acme.test"];
    assert_eq!(
        (tasks(max, "new"), tasks(max, "overdue")),
        (vec!["tk_new".to_string()], vec!["tk_old".to_string(), "tk_bolt".to_string()]),
        "the longest overdue first"
    );
    // Sam's Slack channel gets sam's digest only, escaped for Slack.
    let r = next(&mut slacks).await;
    let j = r.json();
    let text = j["text"].as_str().unwrap();
    assert_eq!(text, "Tenure digest for sam, 2026-06-15: 1 new task, 1 overdue");
    let blocks = j["blocks"].to_string();
    assert!(
        blocks.contains("Call &lt;the&gt; CFO") && blocks.contains("Old &amp; late"),
        "{blocks}"
    );
    assert!(
        blocks.contains("<https://tenure.example/accounts/acme|Acme &lt;script&gt;"),
        "{blocks}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(slacks.try_recv().is_err(), "only sam's digest goes to sam's channel");
    assert!(hooks.try_recv().is_err(), "one digest per person");
    // A restart the same day sends nothing again; the next day's digest goes out.
    drop(s);
    let s = open_at("2026-06-15T11:00:00Z", vec![all.clone()]);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(hooks.try_recv().is_err(), "no second digest on June 15");
    drop(s);
    let _s = open_at("2026-06-16T08:30:00Z", vec![all]);
    let r = next(&mut hooks).await;
    let j = r.json();
    assert_eq!(j["day"], "2026-06-16", "{j}");
    assert_eq!(j["new_total"], 0, "nothing opened since the last digest: {j}");
}

/// A start from a saved state sends a digest due then only once the state's history is in
/// and every account refreshed from it: a task imported while the service was down (the
/// state's tail, which the saved state lacks) is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_due_at_a_start_from_a_saved_state_waits_for_its_history() {
    use crate::notify::{config, next, receiver};
    use std::sync::Arc;
    use std::time::Duration;
    use tenure_server::notify::{NotifierConfig, NotifierKind};
    let f = Keyring::new();
    let mut keys = Keys::load(f.path()).unwrap();
    keys.add_user("sam", "sam@acme.test", Role::Csm, Some("east"), "2026-01-01").unwrap();
    keys.save(f.path()).unwrap();
    let task = |id: &str, at: &str| {
        json!({"type": "task", "timestamp": at, "account_id": "acme", "task_id": id,
               "status": "open", "due": "2026-06-20", "title": id, "rule": "detractor"})
        .to_string()
            + "\n"
    };
    import(f.path(), &(company() + &task("tk_new", "2026-06-14T10:00:00Z")));
    let open_at =
        |at: &str, hooks: Vec<NotifierConfig>, gate: Option<Arc<dyn Fn() + Send + Sync>>| {
            tenure_testkit::open_with(f.path(), at, move |o| {
                o.config.notifiers = hooks;
                o.config.service.daily_digest_hour = Some(8);
                o.digest_poll = Duration::from_millis(50);
                o.history_gate = gate;
                o.config.rules = no_rules();
            })
        };
    // Saved at the stop, before the digest hour and without a notifier: nothing sent.
    drop(open_at("2026-06-15T07:00:00Z", Vec::new(), None));
    assert!(f.path().join("state/live.state").is_file());
    import(f.path(), &task("tk_tail", "2026-06-15T06:00:00Z"));
    let (hook, mut hooks) = receiver(&[(200, "ok")]).await;
    let mut all = config("digests", NotifierKind::Webhook, &format!("{hook}/digest"));
    (all.alerts, all.digests) = (Some(false), Some(true));
    let (release, gate) = tenure_testkit::history_gate();
    let s = open_at("2026-06-15T09:00:00Z", vec![all], Some(gate));
    let (_, m) = call(&s, "GET", "/metrics", None, "").await;
    assert!(m.as_str().unwrap().contains("\ntenure_started_from_snapshot 1\n"), "{m}");
    // The digest of June 15, 08:00 is due; while the history is held, none goes.
    let early = tokio::time::timeout(Duration::from_millis(600), hooks.recv()).await;
    assert!(early.is_err(), "a digest was sent from the saved state: {early:?}");
    release.send(()).unwrap();
    let j = next(&mut hooks).await.json();
    assert_eq!(j["person"], "sam@acme.test", "{j}");
    let mut new: Vec<&str> =
        j["new"].as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap()).collect();
    new.sort_unstable();
    assert_eq!(new, ["tk_new", "tk_tail"], "{j}");
    drop(s);
}
