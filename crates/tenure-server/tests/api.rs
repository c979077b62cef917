//! The service as a client sees it: in memory (the router called directly) and over a real
//! socket (port 0). Events are acknowledged once durable, deduplicated, rejected one by one
//! with reasons; keys and scopes are enforced.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tenure_core::time::Timestamp;
use tenure_server::keys::{Keys, Scope};
use tenure_server::{AppState, Limits, app};
use tower::ServiceExt;

struct Fixture {
    dir: tempfile::TempDir,
    ingest: String,
    read: String,
    revoked: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Keys::default();
    let (_, ingest) = keys.create("pipeline", &[Scope::Ingest], "2026-01-01").unwrap();
    let (_, read) = keys.create("dashboard", &[Scope::Read], "2026-01-01").unwrap();
    let (k, revoked) = keys.create("old", &[Scope::Ingest], "2026-01-01").unwrap();
    keys.revoke(&k.id).unwrap();
    keys.save(dir.path()).unwrap();
    // The secret is not in the file, only its hash.
    let text = std::fs::read_to_string(Keys::path(dir.path())).unwrap();
    assert!(!text.contains(&ingest) && !text.contains(&read));
    Fixture { dir, ingest, read, revoked }
}

fn state(f: &Fixture, limits: Limits) -> AppState {
    let clock = Arc::new(|| Timestamp::parse("2026-06-01").unwrap());
    let ingest = tenure_ingest::IngestConfig::defaults(None);
    AppState::open(f.dir.path(), ingest, limits, clock).unwrap()
}

async fn call(s: &AppState, key: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut r = Request::post("/api/v1/events").header("content-type", "application/json");
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    let resp = app(s.clone()).oneshot(r.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn ticket(n: u32) -> Value {
    json!({"type": "ticket", "timestamp": "2026-05-01T10:00:00Z", "account_id": "acme",
           "message_id": format!("m-{n}"), "ticket_id": format!("t-{n}"), "status": "opened"})
}

fn stored(dir: &std::path::Path) -> u64 {
    tenure_engine::log_stats(dir).unwrap().iter().map(|(_, n)| n).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_acknowledged_once_durable_deduplicated_and_rejected_one_by_one() {
    let f = fixture();
    let s = state(&f, Limits::default());
    let bad = json!({"type": "ticket", "timestamp": "yesterday", "account_id": "acme", "ticket_id": "x", "status": "opened"});
    let body = json!([ticket(1), ticket(2), bad]).to_string();
    let (status, j) = call(&s, Some(&f.ingest), &body).await;
    assert_eq!(status, StatusCode::OK, "{j}");
    assert_eq!((j["accepted"].as_u64(), j["duplicates"].as_u64()), (Some(2), Some(0)));
    assert_eq!(j["rejected"][0]["index"], 2);
    assert_eq!(j["rejected"][0]["field"], "timestamp");
    // Acknowledged means on disk: a reader of the log sees them now.
    assert_eq!(stored(f.dir.path()), 2);
    // The same batch again (a retry): stored once.
    let (_, j) = call(&s, Some(&f.ingest), &body).await;
    assert_eq!((j["accepted"].as_u64(), j["duplicates"].as_u64()), (Some(0), Some(2)));
    // JSON lines work too.
    let lines = format!("{}\n{}\n", ticket(3), ticket(4));
    let (status, j) = call(&s, Some(&f.ingest), &lines).await;
    assert_eq!((status, j["accepted"].as_u64()), (StatusCode::OK, Some(2)));
    assert_eq!(stored(f.dir.path()), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_scopes_and_bad_payloads_get_stable_error_codes() {
    let f = fixture();
    let s = state(&f, Limits { request_bytes: 4096, ..Limits::default() });
    let one = json!([ticket(1)]).to_string();
    for (key, status, code) in [
        (None, StatusCode::UNAUTHORIZED, "unauthorized"),
        (Some("tnr_guess"), StatusCode::UNAUTHORIZED, "unauthorized"),
        (Some(f.revoked.as_str()), StatusCode::UNAUTHORIZED, "unauthorized"),
        (Some(f.read.as_str()), StatusCode::FORBIDDEN, "forbidden"),
    ] {
        let (st, j) = call(&s, key, &one).await;
        assert_eq!((st, j["error"]["code"].as_str()), (status, Some(code)), "{j}");
    }
    let (st, j) = call(&s, Some(&f.ingest), "[{\"type\": ").await;
    assert_eq!((st, j["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    let (st, j) =
        call(&s, Some(&f.ingest), &json!([{"type": "ticket"}, {"type": "nonsense"}]).to_string())
            .await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_events"))
    );
    assert_eq!(j["rejected"].as_array().unwrap().len(), 2, "{j}");
    let big = json!((0..200).map(ticket).collect::<Vec<_>>()).to_string();
    let (st, j) = call(&s, Some(&f.ingest), &big).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    assert_eq!(stored(f.dir.path()), 0);
}

/// Over a real socket: the server listens on port 0, a plain HTTP/1.1 client talks to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_real_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture();
    let s = state(&f, Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tenure_server::serve(listener, s, async {
        let _ = stopped.await;
    }));
    let body = json!([ticket(7)]).to_string();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        f.ingest,
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"accepted\":1"), "{resp}");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200") && resp.ends_with("ok\n"), "{resp}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(stored(f.dir.path()), 1);
}
