//! People's API tokens: a CSM's token sees their book and nothing else, through every
//! route that answers with accounts; routes that do not narrow to a book refuse it; a
//! viewer's reads everything and changes nothing; a disabled person's token stops.

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
