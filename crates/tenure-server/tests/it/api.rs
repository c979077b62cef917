//! The service as a client sees it: in memory (the router called directly) and over a real
//! socket (port 0). Events are acknowledged once durable, deduplicated, rejected one by one
//! with reasons; keys and scopes are enforced.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tenure_core::time::Timestamp;
use tenure_server::keys::Keys;
use tenure_server::{AppState, Limits, Options, app};
use tower::ServiceExt;

use tenure_testkit::Keyring as Fixture;

fn fixture() -> Fixture {
    let f = Fixture::new();
    // The secret is not in the file, only its hash.
    let text = std::fs::read_to_string(Keys::path(f.path())).unwrap();
    assert!(!text.contains(&f.ingest) && !text.contains(&f.read));
    f
}

fn state(f: &Fixture, limits: Limits) -> AppState {
    let clock = Arc::new(|| Timestamp::parse("2026-06-01").unwrap());
    let mut o = Options::new(clock);
    o.limits = limits;
    AppState::open(f.dir.path(), o).unwrap()
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

/// A request to any path with any Authorization header.
async fn post(s: &AppState, path: &str, auth: &str, body: &str) -> (StatusCode, Value) {
    let r = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", auth);
    let resp = app(s.clone()).oneshot(r.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// HTTP Basic with the key as the user name and no password, as Segment's libraries send
/// their write key.
fn basic(key: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = format!("{key}:").into_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    format!("Basic {out}")
}

fn events_of(dir: &std::path::Path) -> Vec<tenure_core::event::Event> {
    let mut out = Vec::new();
    tenure_engine::replay(dir, tenure_core::event::EventKind::ALL, |e| out.push(e)).unwrap();
    out
}

// The examples of the Segment spec (segment.com/docs/connections/spec: track, identify,
// group, page), with a groupId added where the spec's example has none.
const SEGMENT_GROUP: &str = r#"{
  "anonymousId": "507f191e810c19729de860ea", "channel": "browser",
  "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_2) AppleWebKit/537.36"},
  "groupId": "0e8c78ea9d97a7b8185e8632", "integrations": {"All": true, "Mixpanel": false, "Salesforce": true},
  "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db", "receivedAt": "2015-02-23T22:28:55.387Z",
  "sentAt": "2015-02-23T22:28:55.111Z", "timestamp": "2015-02-23T22:28:55.111Z",
  "traits": {"name": "Initech", "industry": "Technology", "employees": 329, "plan": "enterprise", "total billed": 830},
  "type": "group", "userId": "97980cfea0067", "version": "1.1"}"#;
const SEGMENT_IDENTIFY: &str = r#"{
  "anonymousId": "507f191e810c19729de860ea", "channel": "browser",
  "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0", "groupId": "0e8c78ea9d97a7b8185e8632"},
  "integrations": {"All": false, "Mixpanel": true, "Salesforce": true},
  "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093dc", "receivedAt": "2015-02-23T22:28:55.387Z",
  "sentAt": "2015-02-23T22:28:55.111Z", "timestamp": "2015-02-23T22:28:55.111Z",
  "traits": {"name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium", "logins": 5,
    "address": {"street": "6th St", "city": "San Francisco", "state": "CA", "postalCode": "94103", "country": "USA"}},
  "type": "identify", "userId": "97980cfea0067", "version": "1.1"}"#;
const SEGMENT_TRACK: &str = r#"{
  "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
  "context": {"library": {"name": "analytics.js", "version": "2.11.1"},
    "page": {"path": "/academy/", "referrer": "", "search": "", "title": "Analytics Academy", "url": "https://segment.com/academy/"},
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_0)", "ip": "108.0.78.21", "groupId": "0e8c78ea9d97a7b8185e8632"},
  "event": "Course Clicked", "integrations": {}, "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
  "properties": {"title": "Intro to Analytics"}, "receivedAt": "2015-12-12T19:11:01.266Z",
  "sentAt": "2015-12-12T19:11:01.169Z", "timestamp": "2015-12-12T19:11:01.249Z", "type": "track",
  "userId": "AiUGstSDIg", "originalTimestamp": "2015-12-12T19:11:01.152Z"}"#;
const SEGMENT_PAGE: &str = r#"{
  "anonymousId": "507f191e810c19729de860ea", "channel": "browser",
  "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0", "groupId": "0e8c78ea9d97a7b8185e8632"},
  "integrations": {"All": true}, "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093dd", "name": "Home",
  "properties": {"title": "Welcome | Initech", "url": "http://www.example.com"},
  "receivedAt": "2015-02-23T22:28:55.387Z", "sentAt": "2015-02-23T22:28:55.111Z",
  "timestamp": "2015-02-23T22:28:55.111Z", "type": "page", "userId": "97980cfea0067", "version": "1.1"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_spec_examples_are_accepted_and_mapped() {
    use tenure_core::event::{AttrValue, EventBody};
    let f = fixture();
    let s = state(&f, Limits::default());
    let auth = basic(&f.ingest);
    for (path, body) in [
        ("/v1/group", SEGMENT_GROUP),
        ("/v1/identify", SEGMENT_IDENTIFY),
        ("/v1/track", SEGMENT_TRACK),
        ("/v1/page", SEGMENT_PAGE),
    ] {
        let (st, j) = post(&s, path, &auth, body).await;
        assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{path}: {j}");
        assert_eq!(j["success"], true);
    }
    let events = events_of(f.dir.path());
    assert_eq!(events.len(), 4);
    let now = Timestamp::parse("2026-06-01").unwrap();
    for e in &events {
        assert_eq!(e.account.as_deref(), Some("0e8c78ea9d97a7b8185e8632"));
        match &e.body {
            EventBody::Account { name, attributes } => {
                assert_eq!(name.as_deref(), Some("Initech"));
                assert!(attributes.contains(&("employees".into(), AttrValue::Num("329".into()))));
                assert!(
                    attributes.contains(&("total_billed".into(), AttrValue::Num("830".into())))
                );
                assert!(attributes.contains(&("plan".into(), AttrValue::Str("enterprise".into()))));
                assert_eq!(e.ts, now, "sentAt = timestamp: no skew");
            }
            EventBody::Contact { contact_id, email, name, .. } => {
                assert_eq!(contact_id, "97980cfea0067");
                assert_eq!(email.as_deref(), Some("peter@example.com"));
                assert_eq!(name.as_deref(), Some("Peter Gibbons"));
            }
            EventBody::Usage { user_id, event, .. } => {
                assert_eq!((user_id.as_str(), event.as_str()), ("AiUGstSDIg", "Course Clicked"));
                // receivedAt - (sentAt - originalTimestamp) = now - 17 ms.
                assert_eq!(e.ts, Timestamp(now.0 - 17_000));
                assert_eq!(e.message_id.as_deref(), Some("ajs-f8ca1e4de5024d9430b3928bd8ac6b96"));
            }
            EventBody::WebVisit { contact_id, page, .. } => {
                assert_eq!(contact_id.as_deref(), Some("97980cfea0067"));
                assert_eq!(page.as_deref(), Some("http://www.example.com"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // A batch with the same messages (a retry) and two bad ones: messageId deduplicates,
    // the bad ones are rejected by index with the field and reason.
    let batch = format!(
        r#"{{"batch": [{SEGMENT_TRACK}, {SEGMENT_GROUP}, {{"type": "track", "userId": "u"}},
            {{"type": "track", "event": "e", "userId": "u", "context": {{"groupId": "g"}}, "timestamp": "soon"}},
            {{"type": "alias", "userId": "u", "previousId": "a"}}],
            "sentAt": "2015-12-12T19:11:01.169Z"}}"#
    );
    let (st, j) = post(&s, "/v1/batch", &auth, &batch).await;
    assert_eq!(st, StatusCode::OK, "{j}");
    assert_eq!((j["accepted"].as_u64(), j["duplicates"].as_u64()), (Some(0), Some(2)), "{j}");
    assert_eq!(j["ignored"], 1);
    assert_eq!(j["rejected"][0]["index"], 2);
    assert_eq!(j["rejected"][0]["field"], "context.groupId");
    assert_eq!(j["rejected"][1]["index"], 3);
    assert_eq!(j["rejected"][1]["field"], "timestamp");
    // A Segment message over 32 KB is rejected; all-bad is a 400; Bearer works too.
    let big = json!({"type": "track", "event": "e", "userId": "u", "context": {"groupId": "g"},
        "properties": {"blob": "x".repeat(40_000)}});
    let (st, j) = post(&s, "/v1/track", &format!("Bearer {}", f.ingest), &big.to_string()).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_events"))
    );
    assert!(j["rejected"][0]["reason"].as_str().unwrap().contains("32768"), "{j}");
    // Auth: no key 401, a read key 403, an unknown call 404.
    let (st, _) = post(&s, "/v1/track", "Basic Z3Vlc3M6", SEGMENT_TRACK).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = post(&s, "/v1/track", &basic(&f.read), SEGMENT_TRACK).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = post(&s, "/v1/nothing", &auth, SEGMENT_TRACK).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(events_of(f.dir.path()).len(), 4);
}

/// A request with any method, path, headers and body bytes; the answer's status, headers
/// and JSON body.
async fn raw(
    s: &AppState,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut r = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = app(s.clone()).oneshot(r.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let h = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, h, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn zlib(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// Segment's libraries gzip their batches (analytics-python with gzip=True): every ingest
/// route decodes gzip and deflate, with the body limit on the decoded size; an unknown
/// coding is 415, a damaged stream 400, and none of them stores anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_are_decoded_with_the_limit_on_the_decoded_size() {
    let f = fixture();
    let s = state(&f, Limits { request_bytes: 64 << 10, ..Limits::default() });
    let bearer = format!("Bearer {}", f.ingest);
    let auth = bearer.as_str();
    let events = json!([ticket(1), ticket(2)]).to_string();
    let (st, _, j) = raw(
        &s,
        "POST",
        "/api/v1/events",
        &[("authorization", auth), ("content-encoding", "gzip")],
        gzip(events.as_bytes()),
    )
    .await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(2)), "{j}");
    let batch = format!(r#"{{"batch": [{SEGMENT_TRACK}], "sentAt": "2015-12-12T19:11:01.169Z"}}"#);
    let (st, _, j) = raw(
        &s,
        "POST",
        "/v1/batch",
        &[("authorization", &basic(&f.ingest)), ("content-encoding", "deflate")],
        zlib(batch.as_bytes()),
    )
    .await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    assert_eq!(stored(f.dir.path()), 3);
    // A bomb: 3 KB on the wire, 4 MB decoded, over the 64 KiB limit: 413, not memory.
    let mut bomb = b"[".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 4 << 20));
    bomb.extend(b"]");
    let small = gzip(&bomb);
    assert!(small.len() < 64 << 10);
    let (st, _, j) = raw(
        &s,
        "POST",
        "/api/v1/events",
        &[("authorization", auth), ("content-encoding", "gzip")],
        small,
    )
    .await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
        "{j}"
    );
    let (st, h, j) = raw(
        &s,
        "POST",
        "/api/v1/events",
        &[("authorization", auth), ("content-encoding", "br")],
        events.clone().into_bytes(),
    )
    .await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")),
        "{j}"
    );
    assert_eq!(h["accept-encoding"], "gzip, deflate");
    let mut damaged = gzip(events.as_bytes());
    damaged.truncate(damaged.len() - 6);
    let (st, _, j) = raw(
        &s,
        "POST",
        "/v1/track",
        &[("authorization", auth), ("content-encoding", "gzip")],
        damaged,
    )
    .await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_encoding")),
        "{j}"
    );
    assert_eq!(stored(f.dir.path()), 3);
}

/// Segment's writeKey authentication: the key in the body when no Authorization header is
/// sent, with the same checks as the header; the key is not stored with the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_write_key_in_the_body_authenticates_like_the_header() {
    let f = fixture();
    let s = state(&f, Limits::default());
    let json_ct = [("content-type", "application/json")];
    let with_key = |key: &str, body: &str| {
        let mut v: Value = serde_json::from_str(body).unwrap();
        v["writeKey"] = json!(key);
        v.to_string().into_bytes()
    };
    let (st, _, j) =
        raw(&s, "POST", "/v1/track", &json_ct, with_key(&f.ingest, SEGMENT_TRACK)).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    // In a batch: at its root, or on its messages (all the same key).
    let batch = format!(r#"{{"batch": [{SEGMENT_GROUP}]}}"#);
    let (st, _, j) = raw(&s, "POST", "/v1/batch", &json_ct, with_key(&f.ingest, &batch)).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    let in_messages = json!({"batch": [serde_json::from_slice::<Value>(&with_key(&f.ingest, SEGMENT_PAGE)).unwrap()]});
    let (st, _, j) =
        raw(&s, "POST", "/v1/batch", &json_ct, in_messages.to_string().into_bytes()).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    // The same checks as the header: a read key 403, unknown and revoked 401, none 401.
    for (key, status) in [
        (f.read.as_str(), StatusCode::FORBIDDEN),
        ("tnr_guess", StatusCode::UNAUTHORIZED),
        (f.revoked.as_str(), StatusCode::UNAUTHORIZED),
        ("bad\nkey", StatusCode::UNAUTHORIZED),
    ] {
        let (st, _, j) =
            raw(&s, "POST", "/v1/identify", &json_ct, with_key(key, SEGMENT_IDENTIFY)).await;
        assert_eq!(st, status, "{key}: {j}");
    }
    let (st, _, j) =
        raw(&s, "POST", "/v1/identify", &json_ct, SEGMENT_IDENTIFY.as_bytes().to_vec()).await;
    assert_eq!((st, j["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (st, _, _) = raw(&s, "POST", "/v1/identify", &json_ct, b"{not json".to_vec()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "no key, nothing said about the body");
    // A header decides when there is one: a wrong key in the body does not matter then.
    let (st, _, j) = raw(
        &s,
        "POST",
        "/v1/identify",
        &[("authorization", &basic(&f.ingest))],
        with_key("tnr_other", SEGMENT_IDENTIFY),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{j}");
    assert_eq!(events_of(f.dir.path()).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_schemes_are_case_insensitive() {
    let f = fixture();
    let s = state(&f, Limits::default());
    let basic_lower = basic(&f.ingest).replacen("Basic", "basic", 1);
    for (i, auth) in [
        format!("bearer {}", f.ingest),
        format!("BEARER {}", f.ingest),
        format!("Bearer   {}", f.ingest),
        basic_lower,
        basic(&f.ingest).replacen("Basic", "BASIC", 1),
    ]
    .iter()
    .enumerate()
    {
        let (st, j) =
            post(&s, "/api/v1/events", auth, &json!([ticket(i as u32)]).to_string()).await;
        assert_eq!(st, StatusCode::OK, "{auth}: {j}");
    }
    let (st, _) = post(&s, "/api/v1/events", &format!("Token {}", f.ingest), "[]").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// Answers the router makes itself carry the error body too: 405 (with Allow), and the
/// rejections of a path that is not UTF-8; parameters are checked against their documented
/// types (a limit over the maximum, an unknown colour, a risk that is not a number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_has_the_error_body_and_parameters_their_documented_types() {
    let f = fixture();
    let s = state(&f, Limits::default());
    let read = format!("Bearer {}", f.read);
    let (st, h, j) = raw(&s, "GET", "/v1/track", &[], vec![]).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")),
        "{j}"
    );
    assert_eq!(h["allow"], "POST");
    let (st, h, j) = raw(&s, "DELETE", "/api/v1/tasks/x", &[], vec![]).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let allow = h["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("PATCH"), "{allow}");
    let (st, _, j) =
        raw(&s, "GET", "/api/v1/accounts/%FF", &[("authorization", &read)], vec![]).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{j}"
    );
    let (st, _, j) = raw(&s, "GET", "/nothing/here", &[], vec![]).await;
    assert_eq!((st, j["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    for q in [
        "limit=5000",
        "limit=-1",
        "colour=purple",
        "min_risk=NaN",
        "min_risk=2",
        "sort=vibes",
        "customer=yes",
    ] {
        let (st, _, j) =
            raw(&s, "GET", &format!("/api/v1/accounts?{q}"), &[("authorization", &read)], vec![])
                .await;
        assert_eq!(
            (st, j["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{q}: {j}"
        );
    }
    for q in [
        "/api/v1/alerts?severity=awful",
        "/api/v1/tasks?status=finished",
        "/api/v1/kpis?period=last-year",
        "/api/v1/cohorts?unit=decade",
    ] {
        let (st, _, j) = raw(&s, "GET", q, &[("authorization", &read)], vec![]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {j}");
    }
    let (st, _, j) = raw(
        &s,
        "GET",
        "/api/v1/accounts?limit=1000&colour=red&min_risk=0.5",
        &[("authorization", &read)],
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{j}");
}

/// An empty ingest body is an error, not an acknowledged nothing; a batch's context reaches
/// its calls (Segment's batch-level context), and its envelope is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_bodies_are_refused_and_a_batchs_context_is_shared() {
    let f = fixture();
    let s = state(&f, Limits::default());
    let (st, j) = call(&s, Some(&f.ingest), "  \n").await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json")),
        "{j}"
    );
    let auth = basic(&f.ingest);
    let batch = json!({"context": {"groupId": "shared"}, "batch": [
        {"type": "track", "event": "e", "userId": "u", "messageId": "b1"},
        {"type": "track", "event": "e", "userId": "u", "messageId": "b2", "context": {"groupId": "own"}}]});
    let (st, j) = post(&s, "/v1/batch", &auth, &batch.to_string()).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(2)), "{j}");
    let mut accounts: Vec<String> =
        events_of(f.dir.path()).into_iter().filter_map(|e| e.account).collect();
    accounts.sort();
    assert_eq!(accounts, ["own", "shared"]);
    let bad = json!({"sentAt": "yesterday", "batch": [{"type": "track", "event": "e", "userId": "u", "context": {"groupId": "g"}}]});
    let (st, j) = post(&s, "/v1/batch", &auth, &bad.to_string()).await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{j}"
    );
    let (st, j) =
        post(&s, "/v1/batch", &auth, &json!({"writeKey": 5, "batch": []}).to_string()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a malformed writeKey beside a header: {j}");
    assert_eq!(stored(f.dir.path()), 2);
}

/// Issue 13, item 1, through the Segment API: a number too small for a double and a time
/// the sender's clock correction moves out of the supported range are refused one by one
/// with their field, never stored as 0 or as a year 1600 event.
#[tokio::test]
async fn segment_underflow_and_out_of_range_corrections_are_refused_per_message() {
    let f = fixture();
    let s = state(&f, Limits::default());
    let body = r#"{"batch": [
        {"type": "track", "userId": "u1", "event": "Exported", "context": {"groupId": "acme"},
         "properties": {"quantity": 1e-400}, "timestamp": "2026-05-31T10:00:00Z"},
        {"type": "track", "userId": "u1", "event": "Exported", "context": {"groupId": "acme"},
         "properties": {"quantity": 0.0}, "timestamp": "2026-05-31T10:00:00Z", "messageId": "zero"},
        {"type": "track", "userId": "u1", "event": "Exported", "context": {"groupId": "acme"},
         "properties": {"quantity": 2}, "timestamp": "1950-01-01T00:00:00Z",
         "sentAt": "2199-01-01T00:00:00Z"},
        {"type": "track", "userId": "u1", "event": "Opened", "context": {"groupId": "acme"},
         "timestamp": "2026-05-31T10:00:00Z", "messageId": "ok"}
    ]}"#;
    let (status, v) = post(&s, "/v1/batch", &basic(&f.ingest), body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let rejected = v["rejected"].as_array().unwrap();
    // The 0.0 of the second message shares its key with the underflow: refused too, as
    // the reason says; a request without an underflow keeps its zeros (checked below).
    assert_eq!(v["accepted"], 1, "{v}");
    assert_eq!(rejected.len(), 3, "{v}");
    assert_eq!(rejected[0]["field"], "quantity");
    assert!(rejected[0]["reason"].as_str().unwrap().contains("too small to be represented"));
    let skew = &rejected[2];
    assert_eq!(skew["field"], "timestamp", "{v}");
    assert!(skew["reason"].as_str().unwrap().contains("outside the supported range"), "{v}");
    let zero = r#"{"type": "track", "userId": "u1", "event": "Exported", "context": {"groupId": "acme"},
        "properties": {"quantity": 0.0}, "timestamp": "2026-05-31T10:00:00Z", "messageId": "zero2"}"#;
    let (status, v) = post(&s, "/v1/track", &basic(&f.ingest), zero).await;
    assert_eq!((status, v["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
}
