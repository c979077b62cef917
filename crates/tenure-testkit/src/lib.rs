//! Test helpers shared by the service's and the binary's tests (a dev-dependency only): a
//! data directory with a key of each scope, a small company as events, the service opened
//! at a fixed time, an HTTP client for the router in memory and a raw one for a socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure_core::time::Timestamp;
use tenure_server::keys::{Keys, Scope};
use tenure_server::{AppState, Options, app};
use tower::ServiceExt;

/// A data directory with one key of each kind (the secrets; the file keeps only hashes).
pub struct Keyring {
    pub dir: tempfile::TempDir,
    /// `pipeline`: sends events.
    pub ingest: String,
    /// `viewer`: reads.
    pub read: String,
    /// `sam`, the CSM of the company's first account: reads and works tasks.
    pub write: String,
    /// `ops`: everything.
    pub admin: String,
    /// `old`: an ingest key, revoked.
    pub revoked: String,
}

impl Keyring {
    pub fn new() -> Keyring {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut keys = Keys::default();
        let mut create = |name: &str, scopes: &[Scope]| {
            keys.create(name, scopes, "2026-01-01").expect("a key").1
        };
        let ingest = create("pipeline", &[Scope::Ingest]);
        let read = create("viewer", &[Scope::Read]);
        let write = create("sam", &[Scope::Read, Scope::Write]);
        let admin = create("ops", &[Scope::Admin]);
        let revoked = create("old", &[Scope::Ingest]);
        let old = keys.keys.last().expect("the key just made").id.clone();
        keys.revoke(&old).expect("a known key");
        keys.save(dir.path()).expect("the keys file");
        Keyring { dir, ingest, read, write, admin, revoked }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Keyring {
    fn default() -> Keyring {
        Keyring::new()
    }
}

/// The service on `data` with its clock stopped at `at` (`2026-06-01T12:00:00Z`, say).
pub fn open(data: &Path, at: &str) -> AppState {
    open_with(data, at, |_| {})
}

/// As [`open`], with the options changed by `f` first.
pub fn open_with(data: &Path, at: &str, f: impl FnOnce(&mut Options)) -> AppState {
    let t = Timestamp::parse(at).expect("a time");
    let mut o = Options::new(Arc::new(move || t));
    f(&mut o);
    AppState::open(data, o).expect("the service opens")
}

/// A gate for `Options::history_gate`: a start from a saved state holds its history's
/// replay (so the service stays warming) until the sender sends, or for 30 s at most.
pub fn history_gate() -> (std::sync::mpsc::Sender<()>, Arc<dyn Fn() + Send + Sync>) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let gate: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let _ =
            held.lock().unwrap_or_else(|p| p.into_inner()).recv_timeout(Duration::from_secs(30));
    });
    (release, gate)
}

/// One request to the router in memory: the status and the body (JSON, or the text as a
/// JSON string when it is not JSON).
pub async fn call(
    s: &AppState,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut r =
        Request::builder().method(method).uri(path).header("content-type", "application/json");
    if let Some(k) = key {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    let resp = app(s.clone())
        .oneshot(r.body(Body::from(body.to_string())).expect("a request"))
        .await
        .expect("the router answers");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

/// Polls `path` until `done` holds (the applier works beside the request path), for at most
/// five seconds.
pub async fn until(s: &AppState, key: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (_, j) = call(s, "GET", path, Some(key), "").await;
        if done(&j) {
            return j;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting on {path}: {j}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A small company as JSON lines: Acme (mid-market, Sam's, 1000 a month since January,
/// a name with a script in it) and Bolt (SMB, Kim's, 50 a month since May, a call in May).
pub fn company() -> String {
    [
        json!({"type": "account", "timestamp": "2026-01-01", "account_id": "acme", "name": "Acme <script>alert(1)</script>",
               "attributes": {"segment": "mid", "csm": "sam"}}),
        json!({"type": "subscription", "timestamp": "2026-01-01", "account_id": "acme", "subscription_id": "s1",
               "plan": "pro", "quantity": 10, "amount": "1000", "status": "active"}),
        json!({"type": "account", "timestamp": "2026-01-01", "account_id": "bolt", "name": "Bolt",
               "attributes": {"segment": "smb", "csm": "kim"}}),
        json!({"type": "subscription", "timestamp": "2026-05-01", "account_id": "bolt", "subscription_id": "s2",
               "amount": "50", "status": "active"}),
        json!({"type": "touchpoint", "timestamp": "2026-05-20", "account_id": "bolt", "kind": "call"}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect()
}

/// HTTP/1.1 over a real socket, written by hand: what the tests of connections need (slow
/// headers, half-sent bodies) and what a process under test answers.
pub mod wire {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// Sends `raw` (a whole request, `Connection: close`) and reads the answer to the end.
    pub fn exchange(addr: &str, raw: &[u8]) -> std::io::Result<String> {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        c.write_all(raw)?;
        let mut resp = Vec::new();
        c.read_to_end(&mut resp)?;
        Ok(String::from_utf8_lossy(&resp).into_owned())
    }

    /// `POST /api/v1/events` with `body` (JSON lines or an array) and the key.
    pub fn post_events(addr: &str, key: &str, body: &str) -> std::io::Result<String> {
        let raw = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        exchange(addr, raw.as_bytes())
    }
}

/// Writes DATA/models/forecast.json as `tenure forecast --save` would, with one quarter,
/// 2026-Q3 as of 2026-06-01: Acme's contract s1 (12,000 due 2026-08-01, renews with
/// probability 0.75, CSM `csm`, a driver `driver`) and Bolt month to month (600 at 0.5).
/// Expected: 9,000 + 300 = 9,300; the outcomes 0, 600, 12,000 and 12,600 have probabilities
/// 0.125, 0.125, 0.375, 0.375, so the 80% interval is 0 to 12,600.
pub fn save_forecast(data: &Path, csm: &str, driver: &str) {
    let method = json!({"source": "model", "examples": 120, "base_rate": 0.8});
    let quarter = json!({
        "as_of": "2026-06-01T00:00:00Z",
        "period": {"start": "2026-07-01T00:00:00Z", "end": "2026-10-01T00:00:00Z"},
        "currency": "USD", "interval_level": 0.8,
        "term_contracts": method, "month_to_month": method, "expansion_at_renewal": 1.0,
        "items": [
            {"account_id": "acme", "subscription_id": "s1", "kind": "term", "due": "2026-08-01T00:00:00Z",
             "arr_due": 12000.0, "arr_if_renewed": 12000.0, "probability": 0.75, "source": "model",
             "category": "probable", "csm": csm, "segment": "mid", "drivers": [driver]},
            {"account_id": "bolt", "subscription_id": null, "kind": "month_to_month", "due": "2026-10-01T00:00:00Z",
             "arr_due": 600.0, "arr_if_renewed": 600.0, "probability": 0.5, "source": "model",
             "category": "at_risk", "csm": "kim", "segment": "smb", "drivers": []},
        ],
    });
    let doc = json!({"made_at": "2026-06-01T00:00:00Z", "quarters": [quarter], "backtest": {
        "currency": "USD", "interval_level": 0.8,
        "periods": [{"period": "2026-Q1", "arr_due": 10000.0, "forecast": 8000.0, "interval": [6000.0, 10000.0],
                     "naive_forecast": 7000.0, "actual": 9000.0, "covered": true}],
        "summary": {"periods_with_actual": 1, "coverage": 1.0, "mape": 0.111, "naive_mape": 0.222}}});
    let dir = data.join("models");
    std::fs::create_dir_all(&dir).expect("the models directory");
    std::fs::write(dir.join("forecast.json"), doc.to_string()).expect("the saved forecast");
}

/// A local OpenID provider (the npm package oidc-provider, pinned, installed under `dir`
/// the first time; scripts/oidc-provider.mjs) for the single sign-on tests: client
/// `tenure` / `tenure-secret`, sending the browser back to `redirect`, signing in the
/// request's `login_hint` else `default_account`. Stopped when dropped.
pub struct OidcProvider {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an [`OidcProvider`]; needs node and npm.
pub fn oidc_provider(dir: &Path, redirect: &str, default_account: Option<&str>) -> OidcProvider {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    std::fs::create_dir_all(dir).unwrap();
    if !dir.join("node_modules/oidc-provider/package.json").is_file() {
        let o = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .arg("oidc-provider@9.13.3")
            .output()
            .expect("npm, to install oidc-provider for the single sign-on tests (apt install npm)");
        assert!(
            o.status.success(),
            "npm install oidc-provider: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Beside its node_modules, so that the import resolves.
    let script = dir.join("provider.mjs");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/oidc-provider.mjs"), &script)
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new("node")
        .arg(&script)
        .arg(port.to_string())
        .arg(redirect)
        .args(default_account)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let provider = OidcProvider { child, addr: format!("127.0.0.1:{port}") };
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening "), "the provider did not start: {line:?}");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    provider
}
