//! The service as CSMs and their tools use it: events in, alerts and tasks out, the REST API
//! over the live state, the OpenAPI document in step with the routes, and a restart that
//! raises nothing twice.

use axum::http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tenure_core::time::Timestamp;
use tenure_server::{AppState, Options};

use tenure_testkit::{Keyring as Fixture, call, company, until};

fn fixture() -> Fixture {
    Fixture::new()
}

fn open(f: &Fixture) -> AppState {
    tenure_testkit::open(f.path(), "2026-06-01T12:00:00Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_open_tasks_that_csms_resolve_and_a_restart_raises_nothing_twice() {
    let f = fixture();
    let s = open(&f);
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(5)), "{j}");
    // acme has paid since January with no touchpoint: the aggregate rule no_engagement.
    let j =
        until(&s, &f.read, "/api/v1/alerts?account=acme", |j| j["total"].as_u64() >= Some(1)).await;
    assert_eq!(j["alerts"][0]["rule"], "no_engagement", "{j}");
    assert_eq!(j["alerts"][0]["owner"], "sam");
    // An immediate rule: a detractor answer.
    let nps = json!({"type": "survey_response", "timestamp": "2026-06-01T11:00:00Z", "account_id": "acme",
                     "survey": "nps", "contact_id": "c1", "score": 3, "comment": "too slow"});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &nps.to_string()).await;
    let j =
        until(&s, &f.read, "/api/v1/tasks?account=acme&rule=detractor", |j| j["total"] == 1).await;
    let task = &j["tasks"][0];
    assert_eq!(task["status"], "open");
    assert_eq!(task["owner"], "sam", "the account's CSM owns it");
    assert!(task["notes"][0]["note"].as_str().unwrap().contains("NPS 3"), "{task}");
    let id = task["task_id"].as_str().unwrap().to_string();
    // A second detractor answer updates the open task instead of opening another.
    let nps2 = json!({"type": "survey_response", "timestamp": "2026-06-01T11:30:00Z", "account_id": "acme",
                      "survey": "nps", "contact_id": "c2", "score": 5});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &nps2.to_string()).await;
    let j = until(&s, &f.read, &format!("/api/v1/tasks/{id}"), |j| j["alerts"] == 2).await;
    assert_eq!(j["notes"].as_array().unwrap().len(), 2, "{j}");
    let (_, j) =
        call(&s, "GET", "/api/v1/tasks?account=acme&rule=detractor", Some(&f.read), "").await;
    assert_eq!(j["total"], 1);
    // Resolving needs a root cause; with one, the task is done and the change is an event.
    let path = format!("/api/v1/tasks/{id}");
    // Changing a task needs the write scope: a read key is refused.
    let (st, j) = call(&s, "PATCH", &path, Some(&f.read), r#"{"note": "hi"}"#).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{j}"
    );
    // The author is whoever the key is: a field naming someone else is refused.
    let (st, j) =
        call(&s, "PATCH", &path, Some(&f.write), r#"{"note": "hi", "author": "the-ceo"}"#).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{j}"
    );
    assert!(j["error"]["message"].as_str().unwrap().starts_with("author"), "{j}");
    // A risk rule's task asks why: the change is well formed but conflicts with the task.
    let (st, j) = call(&s, "PATCH", &path, Some(&f.write), r#"{"status": "done"}"#).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("root_cause_required")),
        "{j}"
    );
    // A root cause is one of the taxonomy, so that the reports count causes, not spellings.
    let (st, j) = call(
        &s,
        "PATCH",
        &path,
        Some(&f.write),
        r#"{"status": "done", "root_cause": "they hate us"}"#,
    )
    .await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{j}"
    );
    assert!(
        j["error"]["message"].as_str().unwrap().starts_with("root_cause: unknown cause"),
        "{j}"
    );
    let (st, _) = call(&s, "PATCH", &path, None, r#"{"status": "done"}"#).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A change changes something.
    for empty in ["{}", r#"{"due": null}"#] {
        let (st, j) = call(&s, "PATCH", &path, Some(&f.write), empty).await;
        assert_eq!(
            (st, j["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{empty}: {j}"
        );
    }
    let (st, j) = call(
        &s,
        "PATCH",
        &path,
        Some(&f.write),
        r#"{"status": "done", "root_cause": "performance", "note": "called <b>c1</b>"}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{j}");
    let note = j["notes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (note["note"].as_str(), note["author"].as_str()),
        (Some("called <b>c1</b>"), Some("sam")),
        "{j}"
    );
    assert_eq!(
        (j["status"].as_str(), j["root_cause"].as_str()),
        (Some("done"), Some("performance"))
    );
    until(&s, &f.read, &path, |j| j["status"] == "done").await;
    // Both detractor answers are followed up: the KPI reads the task events.
    let (_, j) =
        call(&s, "GET", "/api/v1/kpis?period=2026-06-01..2026-07-01", Some(&f.read), "").await;
    assert_eq!(j[0]["kpis"]["detractor_follow_up_rate"], 1.0, "{j}");
    assert_eq!(j[0]["kpis"]["root_cause_tasks.performance"], 1, "{j}");
    assert_eq!(j[0]["kpis"]["tasks_resolved"], 1, "{j}");
    let (_, before) = call(&s, "GET", "/api/v1/alerts", Some(&f.read), "").await;
    let n = before["total"].as_u64().unwrap();
    assert!(n >= 3, "{before}");
    // The metrics saw it all.
    let (_, m) = call(&s, "GET", "/metrics", None, "").await;
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("tenure_events_accepted_total 7"), "{m}");
    assert!(m.contains("tenure_alerts_total{rule=\"detractor\",severity=\"high\"} 2"), "{m}");
    // Restart: the state is replayed from the log; the aggregate rules are re-evaluated for
    // every account, and the cooldowns (from the alerts in the log) hold them back.
    drop(s);
    let s = open(&f);
    let touch = json!({"type": "usage", "timestamp": "2026-06-01T11:45:00Z", "account_id": "acme",
                       "user_id": "u1", "event": "login"});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &touch.to_string()).await;
    let (_, j) = call(&s, "GET", "/api/v1/tasks?status=done", Some(&f.read), "").await;
    assert_eq!(j["total"], 1, "the resolved task survived the restart: {j}");
    // The usage event has been applied once its day shows in the account view.
    until(&s, &f.read, "/api/v1/accounts/acme", |j| j["health"].is_object()).await;
    let (_, after) = call(&s, "GET", "/api/v1/alerts", Some(&f.read), "").await;
    assert_eq!(after["total"].as_u64(), Some(n), "no alert raised twice: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_filter_sort_and_the_account_360() {
    let f = fixture();
    let s = open(&f);
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    let j = until(&s, &f.read, "/api/v1/accounts?sort=mrr", |j| j["total"] == 2).await;
    assert_eq!(j["accounts"][0]["account_id"], "acme", "highest MRR first: {j}");
    assert_eq!(j["accounts"][0]["mrr"], 1000.0);
    assert_eq!(j["accounts"][1]["mrr"], 50.0);
    let (_, j) = call(&s, "GET", "/api/v1/accounts?sort=mrr&order=asc", Some(&f.read), "").await;
    assert_eq!(j["accounts"][0]["account_id"], "bolt");
    let (_, j) = call(&s, "GET", "/api/v1/accounts?sort=csm", Some(&f.read), "").await;
    assert_eq!(j["accounts"][0]["csm"], "kim", "by CSM, a to z: {j}");
    let (_, j) =
        call(&s, "GET", "/api/v1/accounts?sort=segment&order=desc", Some(&f.read), "").await;
    assert_eq!(j["accounts"][0]["segment"], "smb");
    let (_, j) = call(&s, "GET", "/api/v1/accounts?segment=smb", Some(&f.read), "").await;
    assert_eq!((j["total"].as_u64(), j["accounts"][0]["csm"].as_str()), (Some(1), Some("kim")));
    let (_, j) = call(&s, "GET", "/api/v1/accounts?q=ACM", Some(&f.read), "").await;
    assert_eq!(j["total"], 1);
    let (st, j) = call(&s, "GET", "/api/v1/accounts?sort=vibes", Some(&f.read), "").await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (st, j) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(j["name"], "Acme <script>alert(1)</script>", "JSON carries the text as it is");
    assert_eq!(j["plan"], "pro");
    assert_eq!(j["seats"], 10);
    assert!(j["health"]["colour"].is_string(), "{j}");
    assert!(j["tasks"].is_array() && j["alerts"].is_array());
    let (st, j) = call(&s, "GET", "/api/v1/accounts/nobody", Some(&f.read), "").await;
    assert_eq!((st, j["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (st, _) = call(&s, "GET", "/api/v1/accounts", Some(&f.ingest), "").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "an ingest key cannot read");
    let (st, j) = call(&s, "GET", "/api/v1/cohorts?metric=logo", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::OK, "{j}");
    let (st, j) = call(
        &s,
        "GET",
        "/api/v1/kpis?period=2026-01-01..2026-06-01&every=month&by=segment",
        Some(&f.read),
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{j}");
    assert_eq!(j.as_array().unwrap().len(), 10, "5 months x 2 segments: {j}");
    let (_, j) = call(&s, "GET", "/api/v1/scorecards", Some(&f.read), "").await;
    assert!(!j["scorecards"].as_array().unwrap().is_empty());
}

/// Every operation of the OpenAPI document is served (a request without a key gets 401,
/// not 404; public ones answer), and every route is documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_the_routes() {
    let f = fixture();
    let s = open(&f);
    let (st, doc) = call(&s, "GET", "/api/v1/openapi.json", None, "").await;
    assert_eq!(st, StatusCode::OK);
    let mut ops = 0;
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            ops += 1;
            let concrete = path.replace("{id}", "x");
            let (st, j) = call(&s, &method.to_uppercase(), &concrete, None, "{}").await;
            let public = op["security"].as_array().unwrap().is_empty();
            if path == "/webhooks/stripe" {
                // Public, authenticated by its signature: 404 until a signing secret is set.
                assert_eq!(st, StatusCode::NOT_FOUND, "{method} {path}: {j}");
            } else if public {
                assert_eq!(st, StatusCode::OK, "{method} {path}: {j}");
            } else {
                assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path}: {j}");
            }
        }
    }
    // One operation per route, the Segment route once per call.
    let calls = tenure_server::openapi::CALLS.len();
    assert_eq!(ops, tenure_server::api::ROUTES.len() - 1 + calls);
    // Typed parameters, request bodies, and an answer schema for every status.
    let accounts = &doc["paths"]["/api/v1/accounts"]["get"];
    let limit =
        accounts["parameters"].as_array().unwrap().iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!(
        (limit["schema"]["type"].as_str(), limit["schema"]["maximum"].as_i64()),
        (Some("integer"), Some(1000))
    );
    assert_eq!(
        accounts["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/AccountList"
    );
    assert_eq!(
        accounts["responses"]["401"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    let patch = &doc["paths"]["/api/v1/tasks/{id}"]["patch"];
    assert_eq!(
        patch["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/TaskChange"
    );
    assert!(doc["paths"]["/v1/batch"]["post"]["requestBody"].is_object());
    assert!(doc["components"]["schemas"]["Event"]["oneOf"].as_array().unwrap().len() >= 16);
    // An undocumented path is a 404 with the stable code.
    let (st, j) = call(&s, "GET", "/api/v1/nothing", None, "").await;
    assert_eq!((st, j["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    // The error table is part of the document.
    let codes: Vec<&str> = doc["components"]["x-error-codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    for (c, _) in tenure_server::ERROR_CODES {
        assert!(codes.contains(c));
    }
}

/// An aggregate rule with no cooldown alerts once per change of the account, not again on
/// its own alert; immediate rules skip history (events older than the horizon); a survey
/// sent today is not "no answer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_do_not_answer_their_own_alerts_nor_history() {
    let f = fixture();
    // A clock that moves a millisecond at every reading: alerts raised at different
    // instants are different events (a fixed clock would hide a loop behind deduplication).
    let tick = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let base = Timestamp::parse("2026-06-01T12:00:00Z").unwrap();
    let clock = Arc::new(move || {
        Timestamp(base.0 + 1000 * tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    });
    let mut o = Options::new(clock);
    o.config = tenure_server::ServiceConfig::parse(
        "[[rule]]\nkind = \"no_engagement\"\ncooldown_days = 0\n",
    )
    .unwrap();
    let s = AppState::open(f.dir.path(), o).unwrap();
    let old = json!({"type": "survey_response", "timestamp": "2026-04-01", "account_id": "bolt",
                     "survey": "nps", "contact_id": "b1", "score": 1});
    let sent = json!({"type": "survey_sent", "timestamp": "2026-06-01T11:00:00Z", "account_id": "bolt",
                      "survey": "nps", "contact_id": "b2"});
    let body = format!("{}{old}\n{sent}\n", company());
    let (st, _) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &body).await;
    assert_eq!(st, StatusCode::OK);
    let path = "/api/v1/tasks?account=acme&rule=no_engagement";
    until(&s, &f.read, path, |j| j["total"] == 1).await;
    // The task's own events come back through the applier: still one alert, many times over.
    for _ in 0..20 {
        let (_, j) =
            call(&s, "GET", "/api/v1/alerts?account=acme&rule=no_engagement", Some(&f.read), "")
                .await;
        assert_eq!(j["total"], 1, "{j}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, j) = call(&s, "GET", "/api/v1/alerts?account=bolt", Some(&f.read), "").await;
    let rules: Vec<&str> =
        j["alerts"].as_array().unwrap().iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert!(!rules.contains(&"detractor"), "a two-month-old answer raised an alert: {j}");
    assert!(!rules.contains(&"no_survey_response"), "a survey sent an hour ago: {j}");
}

/// Notifications: an alert raised by an event reaches a webhook, signed; what the
/// evaluation at start finds is recorded (alerts, tasks) but not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_notify_the_webhook_and_the_start_evaluation_does_not() {
    use std::io::{BufRead, BufReader, Read, Write};
    let f = fixture();
    // The company is imported before the service starts: its state alerts at start.
    {
        let cfg = tenure_ingest::IngestConfig::defaults(None);
        let events: Vec<_> = company()
            .lines()
            .map(|l| tenure_ingest::parse_json_line(l, None, &cfg).unwrap())
            .collect();
        let (mut imp, _) = tenure_engine::Importer::open(f.dir.path(), cfg).unwrap();
        imp.append(&[events]).unwrap();
    }
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hook.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<(String, String)>();
    std::thread::spawn(move || {
        for conn in hook.incoming().flatten() {
            let tx = tx.clone();
            let mut c = BufReader::new(conn);
            let (mut len, mut sig) = (0, String::new());
            let mut line = String::new();
            c.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                c.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap();
                }
                if k.eq_ignore_ascii_case("x-tenure-signature") {
                    sig = v.trim().to_string();
                }
            }
            let mut body = vec![0; len];
            c.read_exact(&mut body).unwrap();
            let _ = c.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let j: Value = serde_json::from_slice(&body).unwrap();
            let _ = tx.send((j["rule"].as_str().unwrap_or("").to_string(), sig));
        }
    });
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    let mut o = Options::new(clock);
    o.config = tenure_server::ServiceConfig::parse(&format!(
        "[service]\nrefresh_minutes = 600\n\n[[notifier]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"k\"\nbackoff_ms = 5\n"
    ))
    .unwrap();
    let s = AppState::open(f.dir.path(), o).unwrap();
    let nps = json!({"type": "survey_response", "timestamp": "2026-06-01T11:00:00Z", "account_id": "bolt",
                     "survey": "nps", "contact_id": "b1", "score": 0});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &nps.to_string()).await;
    let (rule, sig) = rx.recv_timeout(Duration::from_secs(5)).expect("a notification");
    assert_eq!(rule, "detractor", "the first notification is the event's, not the start's");
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "nothing else was sent");
    // Delivered notifications are counted by a counter named as Prometheus expects.
    let (_, m) = call(&s, "GET", "/metrics", None, "").await;
    let m = m.as_str().unwrap().to_string();
    assert_eq!(tenure_server::metrics::lint(&m), Vec::<String>::new(), "{m}");
    assert!(m.contains("# TYPE tenure_notifications_delivered_total counter\n"), "{m}");
    assert!(m.contains("# TYPE tenure_notifications_dead_lettered_total counter\n"), "{m}");
    // The start's alerts were recorded all the same, with their tasks.
    let (_, j) = call(&s, "GET", "/api/v1/alerts?account=acme", Some(&f.read), "").await;
    assert!(j["total"].as_u64() >= Some(1), "{j}");
}

/// Immediate rules read what earlier events of the same request said: a champion named
/// and then gone, a promoter who then answers low.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_rules_see_the_earlier_events_of_their_batch() {
    let f = fixture();
    let s = open(&f);
    let body: String = [
        json!({"type": "subscription", "timestamp": "2026-05-01", "account_id": "cc", "subscription_id": "s9", "amount": "10", "status": "active"}),
        json!({"type": "contact", "timestamp": "2026-05-31T09:00:00Z", "account_id": "cc", "contact_id": "c1", "role": "champion"}),
        json!({"type": "contact", "timestamp": "2026-05-31T10:00:00Z", "account_id": "cc", "contact_id": "c1", "status": "left"}),
        json!({"type": "survey_response", "timestamp": "2026-05-31T09:00:00Z", "account_id": "cc", "survey": "nps", "contact_id": "c2", "score": 10}),
        json!({"type": "survey_response", "timestamp": "2026-05-31T10:00:00Z", "account_id": "cc", "survey": "nps", "contact_id": "c2", "score": 7}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect();
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &body).await;
    assert_eq!(st, StatusCode::OK, "{j}");
    let j =
        until(&s, &f.read, "/api/v1/alerts?account=cc", |j| j["total"].as_u64() >= Some(2)).await;
    let rules: Vec<&str> =
        j["alerts"].as_array().unwrap().iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert!(rules.contains(&"key_contact_left"), "{j}");
    assert!(rules.contains(&"promoter_dropped"), "{j}");
}

/// The metric `name`'s value in the exposition.
/// What `s` answers on `paths`, asserted equal to what a start that replays the log
/// answers (the saved state removed first); the answers.
async fn equals_a_replay(f: &Fixture, s: AppState, paths: &[&str]) -> Vec<(StatusCode, Value)> {
    equals_a_replay_at(f, s, paths, "2026-06-01T12:00:00Z").await
}

/// As [`equals_a_replay`], the replay started with its clock at `at` (as `s`'s was).
async fn equals_a_replay_at(
    f: &Fixture,
    s: AppState,
    paths: &[&str],
    at: &str,
) -> Vec<(StatusCode, Value)> {
    let mut answers = Vec::new();
    for p in paths {
        answers.push(call(&s, "GET", p, Some(&f.read), "").await);
    }
    drop(s);
    std::fs::remove_dir_all(f.path().join("state")).unwrap();
    let s = tenure_testkit::open(f.path(), at);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 0.0, "replayed");
    for (p, a) in paths.iter().zip(&answers) {
        assert_eq!(&call(&s, "GET", p, Some(&f.read), "").await, a, "{p}");
    }
    answers
}

/// A start that saves its state `every` so often while running.
fn open_saving(f: &Fixture, every: Duration) -> AppState {
    tenure_testkit::open_with(f.path(), "2026-06-01T12:00:00Z", |o| o.save_every = Some(every))
}

/// The generated company sent, and its first alert raised.
async fn send_company(f: &Fixture, s: &AppState) {
    call(s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    until(s, &f.read, "/api/v1/alerts?account=acme", |j| j["total"].as_u64() >= Some(1)).await;
}

/// A start whose history's replay (from a saved state) waits until the sender sends, or
/// 30 s pass.
fn open_held(f: &Fixture) -> (std::sync::mpsc::Sender<()>, AppState) {
    open_held_at(f, "2026-06-01T12:00:00Z")
}

/// As [`open_held`], its clock at `at`.
fn open_held_at(f: &Fixture, at: &str) -> (std::sync::mpsc::Sender<()>, AppState) {
    let (release, gate) = tenure_testkit::history_gate();
    let s = tenure_testkit::open_with(f.path(), at, |o| {
        o.history_gate = Some(gate);
    });
    (release, s)
}

/// The saved ledgers' files in a state directory.
fn ledgers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("live-ledger.") && n.ends_with(".state"))
        .collect()
}

async fn metric(s: &AppState, name: &str) -> f64 {
    let (_, m) = call(s, "GET", "/metrics", None, "").await;
    let m = m.as_str().unwrap().to_string();
    let line =
        m.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{m}"));
    line[name.len() + 1..].parse().unwrap()
}

/// Polls `/metrics` until `name`'s value satisfies `done`, for at most 30 s.
async fn until_metric(s: &AppState, name: &str, done: impl Fn(f64) -> bool) {
    let started = std::time::Instant::now();
    loop {
        let n = metric(s, name).await;
        if done(n) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{name} is still {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stop saves the live state and the next start reads it (`/metrics` says which): the
/// same answers as before the stop, events taken once its history is in, and a stop after
/// them saves them too. After an import while the service was down, the saved state is
/// still read, and brought forward over the import: once warm, it answers as a start that
/// replays the whole log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_the_state_saved_at_the_stop_and_brings_it_over_an_import() {
    let f = fixture();
    let s = open(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 0.0, "nothing saved yet");
    send_company(&f, &s).await;
    let paths = [
        "/api/v1/accounts",
        "/api/v1/accounts/acme",
        "/api/v1/accounts/bolt",
        "/api/v1/alerts",
        "/api/v1/tasks",
        "/api/v1/kpis?period=2026-01-01..2026-07-01&every=month",
    ];
    let mut before = Vec::new();
    for p in paths {
        before.push(call(&s, "GET", p, Some(&f.read), "").await);
    }
    drop(s);
    let state = f.path().join("state");
    assert!(state.join("live.state").is_file());
    assert_eq!(ledgers(&state).len(), 1, "one ledger file");
    // A save cut short by a crash: its ledger's file written, the state's file not. The
    // state saved before is read, and the next save removes the stray file.
    let stray = state.join("live-ledger.00000000000000ab.state");
    std::fs::write(&stray, b"half a save").unwrap();
    let s = open(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 1.0);
    for (p, b) in paths.iter().zip(&before) {
        assert_eq!(&call(&s, "GET", p, Some(&f.read), "").await, b, "{p}");
    }
    // Events are stored at once, and taken once the history is in.
    let nps = json!({"type": "survey_response", "timestamp": "2026-06-01T11:00:00Z", "account_id": "acme",
                     "survey": "nps", "contact_id": "c1", "score": 3, "comment": "too slow"});
    let (st, _) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &nps.to_string()).await;
    assert_eq!(st, StatusCode::OK);
    until(&s, &f.read, "/api/v1/tasks?account=acme&rule=detractor", |j| j["total"] == 1).await;
    assert_eq!(metric(&s, "tenure_live_warming").await, 0.0);
    // The history's install, the refresh's steps and the event's take each held the
    // state's write lock, and were timed.
    assert!(metric(&s, "tenure_live_lock_seconds_count").await >= 3.0);
    for (p, b) in paths.iter().zip(&before) {
        let changed = !p.ends_with("bolt");
        assert_eq!(&call(&s, "GET", p, Some(&f.read), "").await != b, changed, "{p}");
    }
    let tasks = call(&s, "GET", "/api/v1/tasks", Some(&f.read), "").await;
    drop(s);
    assert!(!stray.exists());
    assert_eq!(ledgers(&state).len(), 1, "one ledger file");
    let s = open(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 1.0);
    assert_eq!(call(&s, "GET", "/api/v1/tasks", Some(&f.read), "").await, tasks);
    let (_, acme_before) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    drop(s);
    // An import while the service is down (a new account, an urgent ticket, usage): the
    // saved state is still used, the import its tail, folded in once the history is
    // replayed to the log's end. The immediate rules see the tail at the start: the urgent
    // ticket is alerted, its task opened. The answers are then a replay's of the whole log.
    let cfg = tenure_ingest::IngestConfig::defaults(None);
    let import = [
        r#"{"type":"account","timestamp":"2026-05-30","account_id":"cora","name":"Cora"}"#,
        r#"{"type":"ticket","timestamp":"2026-05-31T10:00:00Z","account_id":"bolt","ticket_id":"t-down","status":"opened","severity":"urgent"}"#,
        r#"{"type":"usage","timestamp":"2026-06-01T09:00:00Z","account_id":"acme","user_id":"u7","event":"login"}"#,
    ];
    let import: Vec<_> =
        import.iter().map(|l| tenure_ingest::parse_json_line(l, None, &cfg).unwrap()).collect();
    let (mut imp, _) = tenure_engine::Importer::open(f.path(), cfg).unwrap();
    imp.append(&[import]).unwrap();
    drop(imp);
    let s = open(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 1.0, "brought forward");
    let j = until(&s, &f.read, "/api/v1/accounts/cora", |j| j["name"] == "Cora").await;
    assert_eq!(j["name"], "Cora");
    assert_eq!(metric(&s, "tenure_live_warming").await, 0.0);
    let urgent = "/api/v1/alerts?account=bolt&rule=urgent_ticket";
    let j = until(&s, &f.read, urgent, |j| j["total"].as_u64() >= Some(1)).await;
    assert_eq!(j["total"], 1, "{j}");
    let tasks = "/api/v1/tasks?account=bolt&rule=urgent_ticket";
    let j = until(&s, &f.read, tasks, |j| j["total"].as_u64() >= Some(1)).await;
    assert_eq!(j["total"], 1, "{j}");
    let paths = [paths.as_slice(), &["/api/v1/accounts/cora"]].concat();
    let forward = equals_a_replay(&f, s, &paths).await;
    assert!(forward[2].1.to_string().contains("t-down"), "{:?}", forward[2]);
    // Of the import, acme has only its usage.
    assert_ne!(forward[1].1, acme_before, "acme's usage is in");
}

/// A state saved with other scorecards (a new file while the service was down) is read all
/// the same: it answers as saved until its history is in, then every account is scored
/// with the scorecards in force, as a start that replays the log scores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_saved_with_other_scorecards_is_scored_again_once_its_history_is_in() {
    let f = fixture();
    let s = open(&f);
    send_company(&f, &s).await;
    let (_, saved) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    assert_ne!(saved["health"]["scorecard"], "tickets", "{saved}");
    drop(s);
    std::fs::write(
        f.path().join("scorecards.toml"),
        "[[scorecard]]\nname = \"tickets\"\n[[scorecard.measure]]\nfeature = \"tickets_90d\"\nlinear = [5, 0]\n",
    )
    .unwrap();
    let s = open(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 1.0);
    let acme = "/api/v1/accounts/acme";
    until(&s, &f.read, acme, |j| j["health"]["scorecard"] == "tickets").await;
    assert_eq!(metric(&s, "tenure_live_warming").await, 0.0);
    let paths = ["/api/v1/accounts", acme, "/api/v1/accounts/bolt", "/api/v1/alerts"];
    equals_a_replay(&f, s, &paths).await;
}

/// While running, the live state is saved every so often (`save_state_minutes`), noted
/// where the log stood when it had taken every batch before: after a crash (the stop's
/// save lost), the next start reads that save, answers as it was when saved while its
/// history is replayed, then takes what came after it, as a replay of the log would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_saved_while_running_is_read_after_a_crash_and_brought_forward() {
    let f = fixture();
    let s = open_saving(&f, Duration::from_millis(100));
    send_company(&f, &s).await;
    // Two saves after the events were taken: the second holds them.
    let acme = "/api/v1/accounts/acme";
    let (_, at_save) = call(&s, "GET", acme, Some(&f.read), "").await;
    let saves = metric(&s, "tenure_state_saves_total").await;
    until_metric(&s, "tenure_state_saves_total", |n| n >= saves + 2.0).await;
    let state = f.path().join("state");
    let copy = f.path().join("saved-while-running");
    std::fs::create_dir(&copy).unwrap();
    for name in ledgers(&state).iter().map(String::as_str).chain(["live.state"]) {
        std::fs::copy(state.join(name), copy.join(name)).unwrap();
    }
    // An urgent ticket after the save, alerted before the crash: the next start evaluates
    // it again (its record is in the saved state's tail) and alerts it under the same id,
    // which the log keeps once.
    let late = json!({"type": "ticket", "timestamp": "2026-06-01T11:00:00Z", "account_id": "acme",
                      "ticket_id": "t-late", "status": "opened", "severity": "urgent"});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &late.to_string()).await;
    until(&s, &f.read, acme, |j| j.to_string().contains("t-late")).await;
    let urgent = "/api/v1/alerts?account=acme&rule=urgent_ticket";
    let alerted = until(&s, &f.read, urgent, |j| j["total"] == 1).await;
    drop(s);
    // The crash: the stop's save lost, the one made while running left.
    for name in ledgers(&state) {
        std::fs::remove_file(state.join(name)).unwrap();
    }
    for name in ledgers(&copy).iter().map(String::as_str).chain(["live.state"]) {
        std::fs::copy(copy.join(name), state.join(name)).unwrap();
    }
    // Ten minutes later: an alert keyed by the instant would be another alert.
    let restart = "2026-06-01T12:10:00Z";
    let (release, s) = open_held_at(&f, restart);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 1.0);
    assert_eq!(metric(&s, "tenure_live_warming").await, 1.0, "the replay is held");
    let (_, warming) = call(&s, "GET", acme, Some(&f.read), "").await;
    assert_eq!(warming, at_save, "answers as it was saved while running");
    release.send(()).unwrap();
    until(&s, &f.read, acme, |j| j.to_string().contains("t-late")).await;
    until_metric(&s, "tenure_live_warming", |n| n == 0.0).await;
    // Whatever the start raised went to the log before this event: once it is taken, so
    // is any alert raised twice.
    let after = json!({"type": "ticket", "timestamp": "2026-06-01T11:30:00Z", "account_id": "bolt",
                       "ticket_id": "t-after", "status": "opened"});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &after.to_string()).await;
    until(&s, &f.read, "/api/v1/accounts/bolt", |j| j.to_string().contains("t-after")).await;
    let (_, again) = call(&s, "GET", urgent, Some(&f.read), "").await;
    assert_eq!(again, alerted, "the urgent ticket alerted once");
    let (_, tasks) =
        call(&s, "GET", "/api/v1/tasks?account=acme&rule=urgent_ticket", Some(&f.read), "").await;
    assert_eq!(tasks["total"], 1, "{tasks}");
    let paths = ["/api/v1/accounts", acme, "/api/v1/alerts", "/api/v1/tasks"];
    equals_a_replay_at(&f, s, &paths, restart).await;
}

/// Saves while events keep arriving are noted exactly where the state is: usage sent one
/// event a request while the state is saved every few milliseconds; a save taken midway,
/// read after a "crash" and brought forward over its tail, counts each event once, as a
/// replay of the log does (marks ahead of the state would miss some, behind it count some
/// twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_while_events_arrive_are_noted_where_the_state_is() {
    let f = fixture();
    let s = open_saving(&f, Duration::from_millis(5));
    send_company(&f, &s).await;
    let state = f.path().join("state");
    // A saved pair as it stands (a save may replace it while it is read: read again).
    let pair = || loop {
        let head = std::fs::read(state.join("live.state")).unwrap();
        let at = head.windows(12).position(|w| w == b"live-ledger.").unwrap();
        let name = String::from_utf8(head[at..at + 34].to_vec()).unwrap();
        if let Ok(ledger) = std::fs::read(state.join(&name)) {
            return (head, name, ledger);
        }
    };
    let mut midway = None;
    for i in 0..120 {
        let e = json!({"type": "usage", "timestamp": format!("2026-06-01T{:02}:{:02}:00Z", i / 60, i % 60),
                       "account_id": if i % 3 == 0 { "bolt" } else { "acme" },
                       "user_id": format!("u{}", i % 7), "event": "login"});
        let (st, _) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &e.to_string()).await;
        assert_eq!(st, StatusCode::OK);
        if i == 60 {
            midway = Some(pair());
        }
    }
    assert!(metric(&s, "tenure_state_saves_total").await >= 3.0, "saves while events came");
    let (head, name, ledger) = midway.unwrap();
    drop(s);
    for n in ledgers(&state) {
        std::fs::remove_file(state.join(n)).unwrap();
    }
    std::fs::write(state.join("live.state"), head).unwrap();
    std::fs::write(state.join(&name), ledger).unwrap();
    let s = open(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 1.0);
    until_metric(&s, "tenure_live_warming", |n| n == 0.0).await;
    let paths = ["/api/v1/accounts", "/api/v1/accounts/acme", "/api/v1/accounts/bolt"];
    equals_a_replay(&f, s, &paths).await;
}

/// While a state read from its snapshot waits for its history, it answers as saved and
/// events sent are stored and acknowledged; once the history is in, each is taken exactly
/// once (a ticket counted once, a detractor's task opened once) after the events stored
/// before the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_while_the_history_is_replayed_are_taken_once_after_it() {
    let f = fixture();
    let s = open(&f);
    send_company(&f, &s).await;
    let (_, saved) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    drop(s);
    // Usage imported while the service is down: the saved state's tail.
    let cfg = tenure_ingest::IngestConfig::defaults(None);
    let line = r#"{"type":"usage","timestamp":"2026-06-01T08:00:00Z","account_id":"acme","user_id":"u8","event":"login"}"#;
    let (mut imp, _) = tenure_engine::Importer::open(f.path(), cfg.clone()).unwrap();
    imp.append(&[vec![tenure_ingest::parse_json_line(line, None, &cfg).unwrap()]]).unwrap();
    drop(imp);
    // The history's replay held until the events are in.
    let (release, s) = open_held(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 1.0);
    let events = [
        json!({"type": "ticket", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme",
               "ticket_id": "t-warm", "status": "opened"}),
        json!({"type": "survey_response", "timestamp": "2026-06-01T11:00:00Z", "account_id": "acme",
               "survey": "nps", "contact_id": "c1", "score": 2}),
        json!({"type": "usage", "timestamp": "2026-06-01T11:30:00Z", "account_id": "acme",
               "user_id": "u9", "event": "login"}),
    ];
    for e in &events {
        let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &e.to_string()).await;
        assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metric(&s, "tenure_live_warming").await, 1.0, "the replay is held");
    let (_, j) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    assert_eq!(j, saved, "answers as saved while warming");
    // And says so, with the instant of its figures; not once the history is in (below).
    let warming = |s: &AppState| {
        let r = axum::http::Request::get("/api/v1/accounts/acme")
            .header("authorization", format!("Bearer {}", f.read))
            .body(axum::body::Body::empty())
            .unwrap();
        let app = tenure_server::app(s.clone());
        async move {
            let resp = tower::ServiceExt::oneshot(app, r).await.unwrap();
            resp.headers().get("tenure-warming").map(|v| v.to_str().unwrap().to_string())
        }
    };
    let as_of = warming(&s).await.expect("a Tenure-Warming header");
    assert!(as_of.starts_with("2026-06-01T12:00:00"), "{as_of}");
    // A dashboard page says so above its content.
    let page = |s: &AppState| {
        let app = tenure_server::app(s.clone());
        let login = axum::http::Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(format!("key={}", f.read)))
            .unwrap();
        async move {
            let resp = tower::ServiceExt::oneshot(app.clone(), login).await.unwrap();
            let cookie = resp.headers()["set-cookie"].to_str().unwrap();
            let cookie = cookie.split(';').next().unwrap().to_string();
            let r = axum::http::Request::get("/accounts/acme")
                .header("cookie", cookie)
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = tower::ServiceExt::oneshot(app, r).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
            String::from_utf8(body.to_bytes().to_vec()).unwrap()
        }
    };
    let html = page(&s).await;
    assert!(
        html.contains("<main><p role=\"status\" id=\"warming\">Starting up: these figures are as of 2026-06-01 12:00 UTC"),
        "{html}"
    );
    release.send(()).unwrap();
    let j =
        until(&s, &f.read, "/api/v1/tasks?account=acme&rule=detractor", |j| j["total"] == 1).await;
    assert_eq!(j["tasks"][0]["alerts"], 1, "{j}");
    assert_eq!(metric(&s, "tenure_live_warming").await, 0.0);
    assert_eq!(warming(&s).await, None);
    assert!(!page(&s).await.contains("id=\"warming\""));
    let (_, j) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    let tickets = j.to_string().matches("t-warm").count();
    assert_eq!(tickets, 1, "the ticket is taken once: {j}");
    // And counted once in the month's figures.
    let june = "/api/v1/kpis?period=2026-06-01..2026-07-01";
    let (_, k) = call(&s, "GET", june, Some(&f.read), "").await;
    assert_eq!(k[0]["kpis"]["nps_responses"], 1, "{k}");
    assert_eq!(k[0]["kpis"]["tickets"], 1, "{k}");
    // The usage of the tail and the one sent while warming, each counted once: as a start
    // that replays the log counts them.
    let (_, warmed) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    drop(s);
    let kept = f.path().join("kept-state");
    std::fs::rename(f.path().join("state"), &kept).unwrap();
    let s = open(&f);
    assert_eq!(metric(&s, "tenure_started_from_snapshot").await, 0.0, "replayed");
    let (_, replayed) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    assert_eq!(warmed, replayed);
    drop(s);
    std::fs::remove_dir_all(f.path().join("state")).unwrap();
    std::fs::rename(&kept, f.path().join("state")).unwrap();
    // Taken from the log on the next start too, once.
    let s = open(&f);
    let (_, j) = call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    assert_eq!(j.to_string().matches("t-warm").count(), 1, "{j}");
    let (_, j) =
        call(&s, "GET", "/api/v1/tasks?account=acme&rule=detractor", Some(&f.read), "").await;
    assert_eq!(j["total"], 1, "{j}");
}
