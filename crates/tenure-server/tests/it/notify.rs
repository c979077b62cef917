//! Alert delivery end to end, against a scripted HTTP receiver on 127.0.0.1: signatures,
//! retries, the dead-letter file, Slack's payload. Tests wait on conditions with a
//! deadline, never for a fixed time.

use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tenure_server::notify::{
    Clock, DeliveryError, DeliveryStats, Dispatcher, Notification, Notifier, NotifierConfig,
    NotifierKind, Request, Webhook, hex, hmac_sha256, post,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const NOW: i64 = 1_700_000_000;
/// Generous: only a broken implementation waits this long.
const WAIT: Duration = Duration::from_secs(10);

/// What the receiver got.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A receiver answering its n-th request with `script[n]` (the last entry repeats), and
/// reporting each request on the channel before answering it.
pub(crate) async fn receiver(
    script: &[(u16, &str)],
) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let script: Vec<(u16, String)> = script.iter().map(|(s, b)| (*s, b.to_string())).collect();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for i in 0.. {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let (status, body) = script[i.min(script.len() - 1)].clone();
            let Some(received) = read_request(&mut socket).await else { continue };
            let _ = tx.send(received);
            let response = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Type: text/plain\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (base, rx)
}

async fn read_request(socket: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end - 4].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { request_line, headers, body })
}

pub(crate) async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, rx.recv()).await.expect("a request in time").expect("a request")
}

/// Polls until `done` holds; panics past [`WAIT`].
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn counts(s: &DeliveryStats) -> [u64; 4] {
    [get(&s.delivered), get(&s.retries), get(&s.dead_lettered), get(&s.dropped)]
}

fn clock() -> Clock {
    Arc::new(|| NOW)
}

pub(crate) fn config(name: &str, kind: NotifierKind, url: &str) -> NotifierConfig {
    NotifierConfig {
        name: name.into(),
        kind,
        url: url.into(),
        secret: None,
        max_attempts: 5,
        backoff_ms: 5,
        min_severity: None,
        timeout_ms: 5_000,
        alerts: None,
        digests: None,
        people: Vec::new(),
    }
}

fn notification(id: &str, severity: &str) -> Notification {
    Notification {
        alert_id: id.into(),
        account_id: "acc_1".into(),
        account_name: Some("Acme & Co".into()),
        rule: "usage_drop".into(),
        severity: severity.into(),
        message: "Weekly active users fell 45% <below plan>".into(),
        owner: Some("dana@example.com".into()),
        task_id: None,
        ts: "2025-03-01T12:00:00Z".into(),
        link: Some("https://tenure.example/accounts/acc_1".into()),
    }
}

fn dead_letters(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn start(configs: &[NotifierConfig], dead: &Path) -> Dispatcher {
    Dispatcher::from_configs(configs, dead.to_path_buf(), clock()).unwrap()
}

#[tokio::test]
async fn webhook_is_signed_and_carries_the_alert() {
    let (base, mut rx) = receiver(&[(200, "ok")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("hook", NotifierKind::Webhook, &format!("{base}/hooks/tenure?x=1"));
    c.secret = Some("whsec_test".into());
    let d = start(&[c], &dir.path().join("dead.jsonl"));
    d.send(notification("al_1", "high"));
    let got = next(&mut rx).await;

    assert_eq!(got.request_line, "POST /hooks/tenure?x=1 HTTP/1.1");
    assert_eq!(got.header("Host"), Some(base.trim_start_matches("http://")));
    assert_eq!(got.header("Content-Type"), Some("application/json"));
    assert_eq!(got.header("Connection"), Some("close"));
    assert!(got.header("User-Agent").unwrap().starts_with("tenure/"));
    let ts = got.header("X-Tenure-Timestamp").unwrap();
    assert_eq!(ts, NOW.to_string());
    // The receiver's check: HMAC over "<timestamp>.<body>" with the shared secret.
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&got.body);
    let expected = format!("sha256={}", hex(&hmac_sha256(b"whsec_test", &signed)));
    assert_eq!(got.header("X-Tenure-Signature"), Some(expected.as_str()));

    let v = got.json();
    assert_eq!(v["type"], "alert");
    assert_eq!(v["alert_id"], "al_1");
    assert_eq!(v["account_id"], "acc_1");
    assert_eq!(v["account_name"], "Acme & Co");
    assert_eq!(v["rule"], "usage_drop");
    assert_eq!(v["severity"], "high");
    assert_eq!(v["message"], "Weekly active users fell 45% <below plan>");
    assert_eq!(v["owner"], "dana@example.com");
    assert_eq!(v["task_id"], Value::Null);
    assert_eq!(v["ts"], "2025-03-01T12:00:00Z");
    assert_eq!(v["link"], "https://tenure.example/accounts/acc_1");

    let stats = d.stats();
    wait_until("delivery", || get(&stats.delivered) == 1).await;
    assert!(d.shutdown(WAIT).await);
    assert_eq!(counts(&stats), [1, 0, 0, 0]);
    assert!(!dir.path().join("dead.jsonl").exists());
}

#[tokio::test]
async fn server_errors_are_retried_until_delivered() {
    let (base, mut rx) = receiver(&[(500, "boom"), (503, "busy"), (200, "ok")]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(&[config("hook", NotifierKind::Webhook, &base)], &dir.path().join("dead"));
    let stats = d.stats();
    d.send(notification("al_1", "normal"));
    wait_until("delivery", || get(&stats.delivered) == 1).await;
    let bodies: Vec<Value> = [next(&mut rx).await, next(&mut rx).await, next(&mut rx).await]
        .iter()
        .map(Received::json)
        .collect();
    assert!(bodies.iter().all(|b| b["alert_id"] == "al_1"));
    assert!(rx.try_recv().is_err(), "delivered once, so no fourth request");
    assert!(d.shutdown(WAIT).await);
    assert_eq!(counts(&stats), [1, 2, 0, 0]);
}

#[tokio::test]
async fn a_receiver_that_stays_down_gets_a_dead_letter() {
    let (base, mut rx) = receiver(&[(503, "down for maintenance")]).await;
    let dir = tempfile::tempdir().unwrap();
    // Parent directories are created on the first dead letter.
    let dead = dir.path().join("spool/notify/dead.jsonl");
    let mut c = config("hook", NotifierKind::Webhook, &base);
    c.max_attempts = 3;
    let d = start(&[c], &dead);
    let stats = d.stats();
    d.send(notification("al_7", "urgent"));
    wait_until("a dead letter", || get(&stats.dead_lettered) == 1).await;
    for _ in 0..3 {
        next(&mut rx).await;
    }
    assert!(rx.try_recv().is_err(), "no attempt past max_attempts");
    let lines = dead_letters(&dead);
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    assert_eq!(l["notifier"], "hook");
    assert_eq!(l["attempts"], 3);
    assert_eq!(l["error"], "HTTP 503: down for maintenance");
    assert_eq!(l["ts"], "2023-11-14T22:13:20Z");
    assert_eq!(l["notification"]["alert_id"], "al_7");
    assert_eq!(l["notification"]["severity"], "urgent");
    assert!(d.shutdown(WAIT).await);
    assert_eq!(counts(&stats), [0, 2, 1, 0]);
}

#[tokio::test]
async fn a_closed_port_gets_a_dead_letter() {
    // Bound then released: nothing listens there any more.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let mut c = config("hook", NotifierKind::Webhook, &format!("http://127.0.0.1:{port}/in"));
    c.max_attempts = 4;
    let d = start(&[c], &dead);
    let stats = d.stats();
    d.send(notification("al_2", "high"));
    wait_until("a dead letter", || get(&stats.dead_lettered) == 1).await;
    let lines = dead_letters(&dead);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["attempts"], 4);
    let error = lines[0]["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("connect to 127.0.0.1:{port}: ")), "{error}");
    assert!(!error.contains("/in"), "errors name the host, not the path: {error}");
    assert!(d.shutdown(WAIT).await);
    assert_eq!(counts(&stats), [0, 3, 1, 0]);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let (base, mut rx) = receiver(&[(400, "invalid_payload"), (200, "ok")]).await;
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let d = start(&[config("slack", NotifierKind::Slack, &base)], &dead);
    let stats = d.stats();
    d.send(notification("al_3", "high"));
    wait_until("a dead letter", || get(&stats.dead_lettered) == 1).await;
    next(&mut rx).await;
    assert!(rx.try_recv().is_err(), "a 400 is final");
    let lines = dead_letters(&dead);
    assert_eq!(lines[0]["attempts"], 1);
    assert_eq!(lines[0]["error"], "HTTP 400: invalid_payload");
    assert!(d.shutdown(WAIT).await);
    assert_eq!(counts(&stats), [0, 0, 1, 0]);
}

#[tokio::test]
async fn slack_gets_its_block_payload() {
    let (base, mut rx) = receiver(&[(200, "ok")]).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{base}/services/T000/B000/XXXX");
    let d = start(&[config("slack", NotifierKind::Slack, &url)], &dir.path().join("dead"));
    d.send(notification("al_4", "urgent"));
    let got = next(&mut rx).await;
    assert_eq!(got.request_line, "POST /services/T000/B000/XXXX HTTP/1.1");
    assert_eq!(got.header("Content-Type"), Some("application/json"));
    assert_eq!(got.header("X-Tenure-Signature"), None);
    let v = got.json();
    assert_eq!(
        v["text"],
        ":rotating_light: [urgent] Acme &amp; Co: usage_drop: \
         Weekly active users fell 45% &lt;below plan&gt;"
    );
    let blocks = v["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    let section = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(section.starts_with(":rotating_light: *urgent* alert for *Acme &amp; Co*"));
    assert!(section.contains("<https://tenure.example/accounts/acc_1|Open in Tenure>"));
    assert_eq!(blocks[1]["type"], "context");
    assert_eq!(blocks[1]["elements"][0]["type"], "mrkdwn");
    assert_eq!(
        blocks[1]["elements"][0]["text"],
        "Owner: dana@example.com · Alert: al_4 · 2025-03-01T12:00:00Z"
    );
    let stats = d.stats();
    wait_until("delivery", || get(&stats.delivered) == 1).await;
    assert!(d.shutdown(WAIT).await);
}

#[tokio::test]
async fn min_severity_filters_and_targets_are_independent() {
    let (all, mut rx_all) = receiver(&[(200, "ok")]).await;
    let (urgent_only, mut rx_urgent) = receiver(&[(200, "ok")]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("pager", NotifierKind::Webhook, &urgent_only);
    c.min_severity = Some("urgent".into());
    let d = start(&[config("all", NotifierKind::Webhook, &all), c], &dir.path().join("dead"));
    let stats = d.stats();
    for (id, severity) in [("a", "low"), ("b", "urgent"), ("c", "high")] {
        d.send(notification(id, severity));
    }
    wait_until("four deliveries", || get(&stats.delivered) == 4).await;
    // In order per target.
    let ids: Vec<Value> =
        [next(&mut rx_all).await, next(&mut rx_all).await, next(&mut rx_all).await]
            .iter()
            .map(|r| r.json()["alert_id"].clone())
            .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert_eq!(next(&mut rx_urgent).await.json()["alert_id"], "b");
    assert!(rx_urgent.try_recv().is_err());
    assert!(d.shutdown(WAIT).await);
}

#[tokio::test]
async fn a_full_queue_spills_to_the_dead_letter_file_without_blocking() {
    // A listener that never accepts: connections complete in the backlog and then hang, so
    // the task sits on its first notification until its timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let mut c = config("stuck", NotifierKind::Webhook, &url);
    c.timeout_ms = 60_000;
    let d = start(&[c], &dead);
    let stats = d.stats();
    // On this single-threaded runtime the task cannot run during the loop: the queue holds
    // 1024 and the rest spill over, every one of them without waiting.
    for i in 0..1100 {
        d.send(notification(&format!("al_{i}"), "normal"));
    }
    wait_until("spilled notifications", || get(&stats.dead_lettered) == 76).await;
    let lines = dead_letters(&dead);
    assert!(lines.iter().all(|l| l["error"] == "queue full" && l["attempts"] == 0));
    assert_eq!(lines[0]["notification"]["alert_id"], "al_1024");
    // Shutdown is bounded: past the grace period the backlog is written out, not lost.
    let started = std::time::Instant::now();
    assert!(!d.shutdown(Duration::from_millis(50)).await);
    assert!(started.elapsed() < WAIT);
    assert_eq!(counts(&stats), [0, 0, 1100, 0]);
    let lines = dead_letters(&dead);
    assert_eq!(lines.len(), 1100);
    let in_flight: Vec<&Value> = lines.iter().filter(|l| l["attempts"] == 1).collect();
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0]["error"], "shut down during delivery");
    assert_eq!(in_flight[0]["notification"]["alert_id"], "al_0");
    drop(listener);
}

#[tokio::test]
async fn a_silent_receiver_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let mut c = config("slow", NotifierKind::Webhook, &url);
    c.timeout_ms = 50;
    c.max_attempts = 2;
    let d = start(&[c], &dead);
    let stats = d.stats();
    d.send(notification("al_5", "high"));
    wait_until("a dead letter", || get(&stats.dead_lettered) == 1).await;
    let lines = dead_letters(&dead);
    assert_eq!(lines[0]["attempts"], 2);
    assert_eq!(lines[0]["error"], "timed out after 50 ms");
    assert!(d.shutdown(WAIT).await);
    drop(listener);
}

#[tokio::test]
async fn https_goes_through_tls() {
    // A plain-HTTP answer to a TLS client hello: the handshake must fail as a TLS error,
    // which shows that https URLs are not sent in the clear.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
            let _ = s.shutdown().await;
        }
    });
    let request = Webhook::new("h", format!("https://{addr}/x"), None)
        .request(&notification("al_6", "low"), NOW);
    let err = post(&request, WAIT).await.unwrap_err();
    assert!(matches!(err, DeliveryError::Tls(_)), "{err}");
    assert!(err.is_retryable());
    // Anything else is refused before connecting, and not retried.
    let bad = Request { url: "ftp://x/".into(), headers: vec![], body: vec![] };
    let err = post(&bad, WAIT).await.unwrap_err();
    assert!(matches!(err, DeliveryError::InvalidUrl(_)) && !err.is_retryable(), "{err}");
}

/// A receiver answering every request with the same raw bytes, for responses the scripted
/// one does not write.
async fn raw_receiver(response: &[u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let response = response.to_vec();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            if read_request(&mut socket).await.is_some() {
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            }
        }
    });
    base
}

async fn post_to(base: &str) -> Result<u16, DeliveryError> {
    let request =
        Webhook::new("h", format!("{base}/in"), None).request(&notification("al_9", "high"), NOW);
    post(&request, WAIT).await
}

#[tokio::test]
async fn error_bodies_are_decoded_and_retry_after_read() {
    // A chunked error body: its text, not the chunk framing, is the error's.
    let base = raw_receiver(
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          f\r\nno_such_channel\r\n0\r\n\r\n",
    )
    .await;
    let err = post_to(&base).await.unwrap_err();
    assert_eq!(err.to_string(), "HTTP 400: no_such_channel");
    assert!(!err.is_retryable());
    // A 429's Retry-After (seconds) is the receiver's wish for the next attempt.
    let base = raw_receiver(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nslow",
    )
    .await;
    let err = post_to(&base).await.unwrap_err();
    assert_eq!(err.to_string(), "HTTP 429: slow");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    // A 2xx is delivered whatever its body.
    let base = raw_receiver(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    assert_eq!(post_to(&base).await, Ok(204));
}

#[tokio::test]
async fn a_response_that_is_not_http_or_too_large_is_a_bad_response() {
    let mut huge = b"HTTP/1.1 200 OK\r\nX-Padding: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20 * 1024));
    huge.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    for response in [&b"220 smtp.example ESMTP ready\r\n\r\n"[..], &huge] {
        let base = raw_receiver(response).await;
        let err = post_to(&base).await.unwrap_err();
        assert!(matches!(err, DeliveryError::BadResponse(_)), "{err}");
        assert!(err.is_retryable());
    }
}
