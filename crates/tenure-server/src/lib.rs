//! tenure-server: the always-on service. Events are acknowledged only once durable: HTTP
//! handlers validate a request's events and hand them to the single writer thread, which
//! appends the waiting requests together and commits once (group commit) before any of
//! them is answered. The channel to the writer is bounded: when the disk falls behind,
//! requests wait instead of piling up in memory.

pub mod keys;
pub mod segment;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keys::{Keys, Scope};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tenure_core::event::Event;
use tenure_core::time::Timestamp;
use tenure_engine::Importer;
use tenure_ingest::{IngestConfig, Rejection};
use tokio::sync::{mpsc, oneshot};

/// A JSON response.
fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON values serialise");
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The service's errors, each with a stable code (the API's error table).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub rejected: Vec<Rejection>,
}

/// Every error code the API returns, with its HTTP status.
pub const ERROR_CODES: &[(&str, u16)] = &[
    ("unauthorized", 401),
    ("forbidden", 403),
    ("payload_too_large", 413),
    ("invalid_json", 400),
    ("invalid_events", 400),
    ("not_found", 404),
    ("unavailable", 503),
    ("internal", 500),
];

impl ApiError {
    fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        let status = ERROR_CODES
            .iter()
            .find(|(c, _)| *c == code)
            .and_then(|(_, s)| StatusCode::from_u16(*s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, code, message: message.into(), rejected: Vec::new() }
    }
}

fn rejections_json(r: &[Rejection]) -> Value {
    r.iter().map(|r| json!({"index": r.line - 1, "field": r.field, "reason": r.reason})).collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if !self.rejected.is_empty() {
            body["rejected"] = rejections_json(&self.rejected);
        }
        let mut r = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer, Basic realm=\"tenure\"".parse().expect("a valid header"),
            );
        }
        r
    }
}

/// Limits on what a request may carry.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest request body, bytes (a Segment batch is at most 500 KB).
    pub request_bytes: usize,
    /// Requests waiting for the writer before new ones wait to be queued.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { request_bytes: 8 << 20, queue: 256 }
    }
}

type Reply = oneshot::Sender<Result<Vec<bool>, String>>;

/// The single writer of the data directory's log, on its own thread.
pub struct Writer {
    tx: mpsc::Sender<(Vec<Event>, Reply)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer; it ends when every sender is gone, after its last commit.
    pub fn start(mut importer: Importer, queue: usize) -> Writer {
        let (tx, mut rx) = mpsc::channel::<(Vec<Event>, Reply)>(queue);
        let thread = std::thread::spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                // Group commit: every request already waiting joins this commit.
                let mut jobs = vec![first];
                let mut n = jobs[0].0.len();
                while n < 200_000 {
                    match rx.try_recv() {
                        Ok(j) => {
                            n += j.0.len();
                            jobs.push(j);
                        }
                        Err(_) => break,
                    }
                }
                let (batches, replies): (Vec<Vec<Event>>, Vec<Reply>) = jobs.into_iter().unzip();
                match importer.append(&batches) {
                    Ok(stored) => {
                        for (r, s) in replies.into_iter().zip(stored) {
                            let _ = r.send(Ok(s));
                        }
                    }
                    Err(e) => {
                        for r in replies {
                            let _ = r.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        Writer { tx, thread: Some(thread) }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the waiting requests are committed.
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The clock the service reads (injected, so tests are deterministic).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

pub struct Inner {
    pub data: PathBuf,
    pub keys: RwLock<Keys>,
    pub writer: Writer,
    pub ingest: IngestConfig,
    pub limits: Limits,
    pub clock: Clock,
    pub segment: segment::SegmentConfig,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl AppState {
    /// Opens the data directory's log (the service is then its only writer) and keys.
    pub fn open(
        data: &Path,
        ingest: IngestConfig,
        limits: Limits,
        clock: Clock,
    ) -> Result<AppState, String> {
        let keys = Keys::load(data).map_err(|e| e.to_string())?;
        let (importer, _) = Importer::open(data, ingest.clone()).map_err(|e| e.to_string())?;
        let writer = Writer::start(importer, limits.queue);
        Ok(AppState(Arc::new(Inner {
            data: data.to_path_buf(),
            keys: RwLock::new(keys),
            writer,
            ingest,
            limits,
            clock,
            segment: segment::SegmentConfig::default(),
        })))
    }
}

/// The credentials of a request: `Authorization: Bearer KEY`, or Basic with the key as the
/// user name (how Segment's libraries send their write key).
fn credential(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(k) = v.strip_prefix("Bearer ") {
        return Some(k.trim().to_string());
    }
    let b = v.strip_prefix("Basic ")?;
    let decoded = base64_decode(b.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or("").to_string())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Checks the request's key has `scope`.
fn authorise(state: &AppState, h: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
    let secret = credential(h).ok_or_else(|| {
        ApiError::new("unauthorized", "an API key is needed (Authorization: Bearer KEY)")
    })?;
    let keys =
        state.0.keys.read().map_err(|_| ApiError::new("internal", "key store unavailable"))?;
    let key = keys
        .verify(&secret)
        .ok_or_else(|| ApiError::new("unauthorized", "unknown or revoked API key"))?;
    if !key.allows(scope) {
        return Err(ApiError::new(
            "forbidden",
            format!("this key lacks the {scope:?} scope").to_lowercase(),
        ));
    }
    Ok(())
}

/// Parses a body of events: a JSON array, or JSON lines. Rejections count from 1 (the
/// array index plus one, or the line).
fn parse_events(body: &[u8], cfg: &IngestConfig) -> Result<(Vec<Event>, Vec<Rejection>), ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new("invalid_json", "the body is not UTF-8"))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        // Each element goes through the same validation as a line of a file (written back
        // as JSON text).
        let items: Vec<Value> = serde_json::from_str(trimmed)
            .map_err(|e| ApiError::new("invalid_json", format!("malformed JSON: {e}")))?;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for (i, item) in items.iter().enumerate() {
            match tenure_ingest::parse_json_line(&item.to_string(), None, cfg) {
                Ok(e) => ok.push(e),
                Err(e) => {
                    bad.push(Rejection { line: i as u64 + 1, field: e.field, reason: e.reason })
                }
            }
        }
        Ok((ok, bad))
    } else {
        let (ok, bad) = tenure_ingest::parse_jsonl_block(text, 1, None, cfg);
        Ok((ok.into_iter().map(|(_, e)| e).collect(), bad))
    }
}

/// Durably appends one request's events; per event, whether it was new.
async fn store(state: &AppState, events: Vec<Event>) -> Result<Vec<bool>, ApiError> {
    let (tx, rx) = oneshot::channel();
    state
        .0
        .writer
        .tx
        .send((events, tx))
        .await
        .map_err(|_| ApiError::new("unavailable", "the writer has stopped"))?;
    rx.await
        .map_err(|_| ApiError::new("unavailable", "the writer has stopped"))?
        .map_err(|e| ApiError::new("internal", format!("storing failed: {e}")))
}

type BodyResult = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn body_bytes(state: &AppState, body: BodyResult) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                "payload_too_large",
                format!("the body is over {} bytes", state.0.limits.request_bytes),
            )
        } else {
            ApiError::new("invalid_json", e.body_text())
        }
    })
}

/// Stores the valid events of a request and answers with what happened to each: 400 when
/// every event was rejected, else 200 with the counts and the rejections.
async fn accept(
    state: &AppState,
    events: Vec<Event>,
    rejected: Vec<Rejection>,
    extra: Option<(&str, Value)>,
) -> Result<Response, ApiError> {
    if events.is_empty() && !rejected.is_empty() {
        let mut e =
            ApiError::new("invalid_events", format!("all {} events were rejected", rejected.len()));
        e.rejected = rejected;
        return Err(e);
    }
    let stored = store(state, events).await?;
    let accepted = stored.iter().filter(|s| **s).count();
    let mut body = json!({"success": true, "accepted": accepted, "duplicates": stored.len() - accepted, "rejected": rejections_json(&rejected)});
    if let Some((k, v)) = extra {
        body[k] = v;
    }
    Ok(json_response(StatusCode::OK, &body))
}

async fn ingest(
    State(state): State<AppState>,
    h: HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    authorise(&state, &h, Scope::Ingest)?;
    let body = body_bytes(&state, body)?;
    let cfg = IngestConfig { now: Some((state.0.clock)()), ..state.0.ingest.clone() };
    let (events, rejected) = parse_events(&body, &cfg)?;
    accept(&state, events, rejected, None).await
}

/// `POST /v1/{track,identify,group,page,screen,alias,batch}`: the Segment HTTP API.
async fn segment_call(
    State(state): State<AppState>,
    UrlPath(call): UrlPath<String>,
    h: HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    const CALLS: &[&str] = &["track", "identify", "group", "page", "screen", "alias", "batch"];
    if !CALLS.contains(&call.as_str()) {
        return Err(ApiError::new("not_found", format!("no Segment call {call:?}")));
    }
    authorise(&state, &h, Scope::Ingest)?;
    let body = body_bytes(&state, body)?;
    let received = (state.0.clock)();
    let root: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new("invalid_json", format!("malformed JSON: {e}")))?;
    let (messages, sent_at): (Vec<&Value>, Option<Timestamp>) = if call == "batch" {
        let list = root.get("batch").and_then(Value::as_array).ok_or_else(|| {
            let mut e = ApiError::new("invalid_events", "a batch call needs a \"batch\" array");
            e.rejected =
                vec![Rejection { line: 1, field: Some("batch".into()), reason: "missing".into() }];
            e
        })?;
        let sent =
            root.get("sentAt").and_then(Value::as_str).and_then(|s| Timestamp::parse(s).ok());
        (list.iter().collect(), sent)
    } else {
        (vec![&root], None)
    };
    let cfg = IngestConfig { now: Some(received), ..state.0.ingest.clone() };
    let (mut events, mut rejected, mut ignored) = (Vec::new(), Vec::new(), 0u64);
    for (i, m) in messages.into_iter().enumerate() {
        let line = i as u64 + 1;
        let size = serde_json::to_vec(m).map_or(0, |v| v.len());
        if size > segment::MAX_MESSAGE_BYTES {
            rejected.push(Rejection {
                line,
                field: None,
                reason: format!(
                    "the message is {size} bytes, over Segment's limit of {}",
                    segment::MAX_MESSAGE_BYTES
                ),
            });
            continue;
        }
        match segment::map(&call, m, sent_at, received, &state.0.segment) {
            Ok(segment::Mapped::Event(v)) => {
                match tenure_ingest::parse_json_line(&v.to_string(), None, &cfg) {
                    Ok(e) => events.push(e),
                    Err(e) => rejected.push(Rejection { line, field: e.field, reason: e.reason }),
                }
            }
            Ok(segment::Mapped::Ignored) => ignored += 1,
            Err(e) => rejected.push(Rejection {
                line,
                field: Some(e.field).filter(|f| !f.is_empty()),
                reason: e.reason,
            }),
        }
    }
    accept(&state, events, rejected, Some(("ignored", json!(ignored)))).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> ApiError {
    ApiError::new("not_found", "no such endpoint")
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    let limit = state.0.limits.request_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/events", post(ingest))
        .route("/v1/{call}", post(segment_call))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// Runs the service on `listen` until Ctrl-C or SIGTERM: binds (port 0 picks one), tells
/// `on_listening` the address, serves, then lets in-flight requests finish and the writer
/// commit before returning.
pub fn run(
    data: &Path,
    listen: &str,
    ingest: IngestConfig,
    limits: Limits,
    clock: Clock,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let state = AppState::open(data, ingest, limits, clock)?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listening on {listen}: {e}"))?;
        on_listening(listener.local_addr().map_err(|e| e.to_string())?);
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("a SIGTERM handler");
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                let _ = ctrl_c.await;
            }
        };
        serve(listener, state, shutdown).await.map_err(|e| e.to_string())
    })
}
