//! The service as operators and attackers meet it: keys changed while it runs, scopes that
//! mean what they say, lists a page at a time, capped answers, an applier that panics, a
//! disk that fills up and empties, and clients that hold connections open or send slowly.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use std::time::{Duration, Instant};
use tenure_server::AppState;
use tenure_server::keys::{Keys, Scope};
use tenure_testkit::{Keyring, call, company, open, open_with, until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

const NOW: &str = "2026-06-01T12:00:00Z";

/// Polls until `path` answers `want` to `key`; how long it took (panics past two seconds).
async fn answers_within(s: &AppState, key: &str, path: &str, want: StatusCode) -> Duration {
    let start = Instant::now();
    loop {
        let (st, _) = call(s, "GET", path, Some(key), "").await;
        if st == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(2), "{path} still answers {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A page of the dashboard with a session cookie: (status, Location, Set-Cookie).
async fn page(
    s: &AppState,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> (StatusCode, Option<String>, Option<String>) {
    let mut r = Request::builder().method(method).uri(path);
    if method == "POST" {
        r = r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    let resp = tenure_server::app(s.clone())
        .oneshot(r.body(Body::from(form.to_string())).unwrap())
        .await
        .unwrap();
    let h = |n: header::HeaderName| resp.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (loc, set) = (h(header::LOCATION), h(header::SET_COOKIE));
    (resp.status(), loc, set.map(|c| c.split(';').next().unwrap().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_and_revoked_while_serving_take_effect_within_a_second() {
    let f = Keyring::new();
    let s = open(f.path(), NOW);
    // A key made after the start (as `tenure key create` does: the file rewritten).
    let mut keys = Keys::load(f.path()).unwrap();
    let (late, secret) = keys.create("late", &[Scope::Read], "2026-06-01").unwrap();
    keys.save(f.path()).unwrap();
    let took = answers_within(&s, &secret, "/api/v1/scorecards", StatusCode::OK).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Its dashboard session works...
    let (st, _, cookie) = page(&s, "POST", "/login", None, &format!("key={secret}")).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("a session cookie");
    assert_eq!(page(&s, "GET", "/", Some(&cookie), "").await.0, StatusCode::OK);
    // ...until the key is revoked: the API and the session stop within a second.
    keys.revoke(&late.id).unwrap();
    keys.save(f.path()).unwrap();
    let took = answers_within(&s, &secret, "/api/v1/scorecards", StatusCode::UNAUTHORIZED).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (st, loc, _) = page(&s, "GET", "/", Some(&cookie), "").await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
    // A keys file broken by hand leaves the keys in force as they were.
    std::fs::write(Keys::path(f.path()), "{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(call(&s, "GET", "/api/v1/scorecards", Some(&f.read), "").await.0, StatusCode::OK);
    assert_eq!(
        call(&s, "GET", "/api/v1/scorecards", Some(&secret), "").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_key_cannot_forge_alerts_or_change_tasks() {
    let f = Keyring::new();
    let s = open(f.path(), NOW);
    let alert = json!({"type": "alert", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme",
                       "alert_id": "forged", "rule": "detractor", "severity": "urgent"});
    let task = json!({"type": "task", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme",
                      "task_id": "t-forged", "status": "done", "root_cause": "none", "author": "the-ceo"});
    let ticket = json!({"type": "ticket", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme",
                        "ticket_id": "k1", "status": "opened"});
    let body = json!([ticket, alert, task]).to_string();
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &body).await;
    assert_eq!(st, StatusCode::OK, "{j}");
    assert_eq!(j["accepted"], 1, "{j}");
    let rejected: Vec<(u64, &str)> = j["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, vec![(1, "type"), (2, "type")], "{j}");
    assert!(j["rejected"][1]["reason"].as_str().unwrap().contains("PATCH"), "{j}");
    // Nor can a read or write key send events at all.
    for k in [&f.read, &f.write] {
        let (st, _) = call(&s, "POST", "/api/v1/events", Some(k), &body).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    // An admin key may (history brought over from another tool).
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.admin), &body).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(2)), "{j}");
}

/// The ids of a list (`path` with its filter) read a page of `limit` at a time, following
/// next_cursor.
async fn pages(s: &AppState, key: &str, path: &str, list: &str, limit: usize) -> Vec<String> {
    let (mut ids, mut cursor) = (Vec::new(), None::<String>);
    let id = if list == "tasks" { "task_id" } else { "alert_id" };
    for _ in 0..100 {
        let q = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (st, j) = call(s, "GET", &q, Some(key), "").await;
        assert_eq!(st, StatusCode::OK, "{j}");
        let items = j[list].as_array().unwrap();
        assert!(items.len() <= limit);
        ids.extend(items.iter().map(|t| t[id].as_str().unwrap().to_string()));
        match j["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
    panic!("no last page")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_alerts_come_a_page_at_a_time_in_a_stable_order() {
    let f = Keyring::new();
    let s = open(f.path(), NOW);
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    // Seven tasks (two due the same day, one without a due date) and seven alerts (two at
    // the same time): ties are broken by id.
    let mut events = Vec::new();
    for (i, due) in
        ["2026-06-09", "2026-06-03", "2026-06-03", "", "2026-06-20", "2026-06-05", "2026-06-01"]
            .iter()
            .enumerate()
    {
        let mut t = json!({"type": "task", "timestamp": "2026-05-01", "account_id": "acme",
                           "task_id": format!("t{i}"), "status": "open", "title": "call", "owner": "pager"});
        if !due.is_empty() {
            t["due"] = json!(due);
        }
        events.push(t);
        let at = [
            "2026-05-01",
            "2026-05-03",
            "2026-05-03",
            "2026-05-02",
            "2026-05-09",
            "2026-05-05",
            "2026-05-04",
        ][i];
        events.push(json!({"type": "alert", "timestamp": at, "account_id": "bolt",
                           "alert_id": format!("a{i}"), "rule": "manual", "severity": "low"}));
    }
    let (st, j) =
        call(&s, "POST", "/api/v1/events", Some(&f.admin), &json!(events).to_string()).await;
    assert_eq!(st, StatusCode::OK, "{j}");
    until(&s, &f.read, "/api/v1/alerts?rule=manual", |j| j["total"] == 7).await;
    until(&s, &f.read, "/api/v1/tasks?owner=pager", |j| j["total"] == 7).await;
    let tasks = pages(&s, &f.read, "/api/v1/tasks?owner=pager", "tasks", 3).await;
    assert_eq!(tasks, ["t6", "t1", "t2", "t5", "t0", "t4", "t3"]);
    let alerts = pages(&s, &f.read, "/api/v1/alerts?rule=manual", "alerts", 2).await;
    assert_eq!(alerts, ["a4", "a5", "a6", "a1", "a2", "a3", "a0"]);
    // A cursor names a place in the order: a task added before it does not shift the pages
    // after it.
    let (_, first) = call(&s, "GET", "/api/v1/tasks?owner=pager&limit=3", Some(&f.read), "").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let early = json!({"type": "task", "timestamp": "2026-05-02", "account_id": "acme",
                       "task_id": "t-early", "status": "open", "due": "2026-05-15", "owner": "pager"});
    call(&s, "POST", "/api/v1/events", Some(&f.admin), &early.to_string()).await;
    until(&s, &f.read, "/api/v1/tasks?owner=pager", |j| j["total"] == 8).await;
    let (_, next) = call(
        &s,
        "GET",
        &format!("/api/v1/tasks?owner=pager&limit=3&cursor={cursor}"),
        Some(&f.read),
        "",
    )
    .await;
    let ids: Vec<&str> =
        next["tasks"].as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["t5", "t0", "t4"], "{next}");
    // A limit past the documented maximum (1000) and a cursor not of this service's shape
    // are refused.
    let (st, j) = call(&s, "GET", "/api/v1/tasks?limit=100000", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{j}");
    for bad in ["zz", "0123", "0123456789abcdefg0"] {
        let (st, j) =
            call(&s, "GET", &format!("/api/v1/alerts?cursor={bad}"), Some(&f.read), "").await;
        assert_eq!(
            (st, j["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}: {j}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpi_answers_are_capped_by_rows() {
    let f = Keyring::new();
    let s = open_with(f.path(), NOW, |o| o.limits.max_kpi_rows = 10);
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    let q = "/api/v1/kpis?period=2026-01-01..2026-06-01&every=month";
    let (st, j) = call(&s, "GET", q, Some(&f.read), "").await;
    assert_eq!((st, j.as_array().map(Vec::len)), (StatusCode::OK, Some(5)), "{j}");
    // By week: 22 rows, over the cap of 10.
    let (st, j) = call(&s, "GET", &q.replace("month", "week"), Some(&f.read), "").await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("result_too_large")),
        "{j}"
    );
    assert!(j["error"]["message"].as_str().unwrap().contains("max_kpi_rows"), "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_applier_is_logged_counted_and_restarted_from_the_log() {
    let f = Keyring::new();
    let s = open_with(f.path(), NOW, |o| {
        o.fault = Some(std::sync::Arc::new(|events: &[tenure_core::event::Event]| {
            if events.iter().any(|e| e.account.as_deref() == Some("boom")) {
                panic!("a bug in the folds");
            }
        }))
    });
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    until(&s, &f.read, "/api/v1/accounts/acme", |j| j["account_id"] == "acme").await;
    let boom =
        json!({"type": "account", "timestamp": "2026-05-01", "account_id": "boom", "name": "Boom"});
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &boom.to_string()).await;
    assert_eq!(
        (st, j["accepted"].as_u64()),
        (StatusCode::OK, Some(1)),
        "acknowledged before applied: {j}"
    );
    // Counted...
    let start = Instant::now();
    loop {
        let (_, m) = call(&s, "GET", "/metrics", None, "").await;
        if m.as_str().unwrap().contains("tenure_applier_panics_total 1") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no panic counted: {m}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...and the applier goes on: the live state, rebuilt from the log, has the event that
    // was being applied, and later events are applied as before.
    until(&s, &f.read, "/api/v1/accounts/boom", |j| j["name"] == "Boom").await;
    let zed =
        json!({"type": "account", "timestamp": "2026-05-02", "account_id": "zed", "name": "Zed"});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &zed.to_string()).await;
    until(&s, &f.read, "/api/v1/accounts/zed", |j| j["name"] == "Zed").await;
    let (st, _) = call(&s, "GET", "/api/v1/accounts", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::OK);
}

/// A tmpfs mounted for a test and unmounted after it.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Events stored in the log, the service's own (alerts, tasks) left out.
fn stored(dir: &std::path::Path) -> u64 {
    let stats = tenure_engine::log_stats(dir).unwrap();
    stats
        .iter()
        .filter(|(lane, _)| !matches!(lane.as_str(), "alert" | "task"))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_service_not_ready_and_it_recovers_once_there_is_room() {
    // A small filesystem of its own, so that filling it harms nothing else: a tmpfs, which
    // needs root and the right to mount (CI has both; elsewhere the test says so and passes).
    if std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout != b"0\n")
        .unwrap_or(true)
    {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(base.path())
        .status()
        .unwrap();
    if !ok.success() {
        // A container without CAP_SYS_ADMIN: root, but no mounts.
        eprintln!("skipped: this machine does not let root mount a tmpfs");
        return;
    }
    let _mount = Tmpfs(base.path().to_path_buf());
    let data = base.path().join("data");
    let keys = Keyring::new();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(Keys::path(keys.path()), Keys::path(&data)).unwrap();
    let s = open(&data, NOW);
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&keys.ingest), &company()).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(5)), "{j}");
    // The disk fills up (another program's file).
    let filler = base.path().join("filler");
    {
        let mut w = std::fs::File::create(&filler).unwrap();
        let block = vec![7u8; 1 << 20];
        while std::io::Write::write_all(&mut w, &block).is_ok() {}
        let _ = w.sync_all();
    }
    // Events are sent until one is refused: every answer is either stored or refused
    // with 503 storage_unavailable, never a 500.
    let (mut acked, mut refused) = (5u64, None);
    for i in 0..4000 {
        let e = json!({"type": "ticket", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme",
                       "message_id": format!("full-{i}"), "ticket_id": format!("k{i}"), "status": "opened",
                       "subject": "x".repeat(2000)});
        let (st, j) = call(&s, "POST", "/api/v1/events", Some(&keys.ingest), &e.to_string()).await;
        match st {
            StatusCode::OK => acked += j["accepted"].as_u64().unwrap(),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = Some(j);
                break;
            }
            other => panic!("{other}: {j}"),
        }
    }
    let refused = refused.expect("a full disk refused nothing");
    assert_eq!(refused["error"]["code"], "storage_unavailable", "{refused}");
    let (st, text) = call(&s, "GET", "/healthz", None, "").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let (_, m) = call(&s, "GET", "/metrics", None, "").await;
    assert!(m.as_str().unwrap().contains("tenure_ready 0"), "{m}");
    // Still refused while the disk is full, not stuck in another state.
    let (st, _) = call(&s, "POST", "/api/v1/events", Some(&keys.ingest), &company()).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    // Room again: ready within moments, without a restart, and events are stored.
    std::fs::remove_file(&filler).unwrap();
    let start = Instant::now();
    while call(&s, "GET", "/healthz", None, "").await.0 != StatusCode::OK {
        assert!(start.elapsed() < Duration::from_secs(5), "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = json!({"type": "ticket", "timestamp": "2026-06-01T11:00:00Z", "account_id": "acme",
                       "message_id": "after", "ticket_id": "after", "status": "opened"});
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&keys.ingest), &again.to_string()).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
    acked += 1;
    // Nothing acknowledged was lost, nothing refused was kept.
    drop(s);
    assert_eq!(stored(&data), acked);
}

/// The service on a real socket with tight limits, and its address.
async fn on_socket(f: &Keyring) -> String {
    let s = open_with(f.path(), NOW, |o| {
        o.limits.header_timeout = Duration::from_secs(1);
        o.limits.body_timeout = Duration::from_secs(1);
        o.limits.max_connections = 2;
        o.limits.max_requests = 1;
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(tenure_server::serve(listener, s, std::future::pending()));
    addr
}

/// Reads what the server sends until it closes the connection (at most ten seconds).
async fn read_all(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_slow_headers_and_slow_bodies_are_cut_off() {
    let f = Keyring::new();
    let addr = on_socket(&f).await;
    // Nothing sent: closed after the header deadline, not held forever.
    let start = Instant::now();
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(read_all(&mut idle).await, "");
    assert!((Duration::from_millis(900)..Duration::from_secs(5)).contains(&start.elapsed()));
    // After an answer, a kept-alive connection that sends nothing more: the same deadline.
    let start = Instant::now();
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = read_all(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!((Duration::from_millis(900)..Duration::from_secs(5)).contains(&start.elapsed()));
    // Headers a byte at a time: the same deadline.
    let start = Instant::now();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
        if slow.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = read_all(&mut slow).await;
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    // A body that stops coming: 408 after the body deadline.
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n[{{\"type\"",
        f.ingest
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let answer = read_all(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_and_open_connections_are_capped() {
    let f = Keyring::new();
    let addr = on_socket(&f).await;
    let get = |path: &str, key: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        )
    };
    // One request in flight (its body coming slowly) holds the only permit: another is
    // refused at once with 503 overloaded, while /healthz still answers.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n[",
        f.ingest
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(get("/api/v1/scorecards", &f.read).as_bytes()).await.unwrap();
    let answer = read_all(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("overloaded") && answer.contains("retry-after"), "{answer}");
    drop(slow);
    // Two connections open and idle fill the cap of two: a third is served only once one
    // of them is closed (by the header deadline, here).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _a = TcpStream::connect(&addr).await.unwrap();
    let _b = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(get("/healthz", &f.read).as_bytes()).await.unwrap();
    let answer = read_all(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "served past the cap: {:?}",
        start.elapsed()
    );
}

#[test]
fn cursors_round_trip_and_every_string_of_their_shape_is_one() {
    use tenure_server::api::Cursor;
    for c in [Cursor(0, String::new()), Cursor(-5, "t-1".into()), Cursor(i64::MAX, "ü ✓".into())]
    {
        assert_eq!(Cursor::parse(&c.encode()), Ok(c));
    }
    assert_eq!(Cursor::parse("00000000000000ff41"), Ok(Cursor(255, "A".into())));
    // Bytes that are not UTF-8 still name a place (replaced), rather than failing a
    // request whose cursor matches the documented pattern.
    assert!(Cursor::parse("0000000000000000ff").is_ok());
    for bad in ["", "0", "000000000000000g", "00000000000000000"] {
        assert!(Cursor::parse(bad).is_err(), "{bad}");
    }
}
