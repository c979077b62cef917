//! tenure-server: the always-on service. Events are acknowledged only once durable: HTTP
//! handlers validate a request's events and hand them to the single writer thread, which
//! appends the waiting requests together and commits once (group commit) before any of
//! them is answered. The channel to the writer is bounded: when the disk falls behind,
//! requests wait instead of piling up in memory.
//!
//! Committed events then go to the applier thread, which folds them into the live state
//! (`live`), runs the alert rules (`rules`), records alerts and tasks as events through the
//! writer, and hands notifications to the dispatcher (`notify`), which never blocks it.

pub mod api;
pub mod decode;
pub mod fallback;
pub mod keys;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod segment;
pub mod web;

pub use tenure_alerting::rules;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use keys::{Keys, Scope};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
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
    ("invalid_request", 400),
    ("not_found", 404),
    ("unavailable", 503),
    ("internal", 500),
    ("method_not_allowed", 405),
    ("unsupported_media_type", 415),
    ("invalid_encoding", 400),
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

/// Events to store: a request's (answered once durable) or the service's own (alerts and
/// tasks, answered by nobody).
struct Job {
    events: Vec<Event>,
    reply: Option<Reply>,
    received: Instant,
}

/// Stored events on their way to the applier.
pub struct Committed {
    pub events: Vec<Event>,
    /// When the earliest request among them was received.
    pub received: Instant,
}

/// The single writer of the data directory's log, on its own thread.
pub struct Writer {
    tx: mpsc::Sender<Job>,
    /// For the applier (taken at start): the writer ends once every clone is gone.
    internal: Option<mpsc::UnboundedSender<Vec<Event>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer; stored events go on to `applied` when given. It ends when every
    /// request sender is gone, after its last commit.
    pub fn start(
        mut importer: Importer,
        queue: usize,
        applied: Option<std::sync::mpsc::SyncSender<Committed>>,
    ) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Job>(queue);
        let (internal, mut internal_rx) = mpsc::unbounded_channel::<Vec<Event>>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
            rt.block_on(async move {
                loop {
                    // The service's own events first: they are few and already decided.
                    let first = tokio::select! {
                        biased;
                        Some(events) = internal_rx.recv() => Job { events, reply: None, received: Instant::now() },
                        j = rx.recv() => match j {
                            Some(j) => j,
                            None => break,
                        },
                    };
                    // Group commit: every request already waiting joins this commit.
                    let mut jobs = vec![first];
                    let mut n = jobs[0].events.len();
                    while n < 200_000 {
                        if let Ok(events) = internal_rx.try_recv() {
                            n += events.len();
                            jobs.push(Job { events, reply: None, received: Instant::now() });
                            continue;
                        }
                        match rx.try_recv() {
                            Ok(j) => {
                                n += j.events.len();
                                jobs.push(j);
                            }
                            Err(_) => break,
                        }
                    }
                    commit(&mut importer, jobs, applied.as_ref());
                }
                // Requests are over. Closing the applier's channel lets it apply what is
                // queued and stop; what it raises meanwhile is committed here until its
                // sender is gone (the Writer's own clone was dropped first).
                drop(applied);
                while let Some(events) = internal_rx.recv().await {
                    commit(&mut importer, vec![Job { events, reply: None, received: Instant::now() }], None);
                }
            });
        });
        Writer { tx, internal: Some(internal), thread: Some(thread) }
    }
}

fn commit(
    importer: &mut Importer,
    jobs: Vec<Job>,
    applied: Option<&std::sync::mpsc::SyncSender<Committed>>,
) {
    let received = jobs.iter().map(|j| j.received).min().unwrap_or_else(Instant::now);
    let (batches, replies): (Vec<Vec<Event>>, Vec<Option<Reply>>) =
        jobs.into_iter().map(|j| (j.events, j.reply)).unzip();
    match importer.append(&batches) {
        Ok(stored) => {
            for (r, s) in replies.into_iter().zip(&stored) {
                if let Some(r) = r {
                    let _ = r.send(Ok(s.clone()));
                }
            }
            if let Some(tx) = applied {
                let events: Vec<Event> = batches
                    .into_iter()
                    .zip(stored)
                    .flat_map(|(b, s)| b.into_iter().zip(s).filter(|(_, s)| *s).map(|(e, _)| e))
                    .collect();
                // Blocks when the applier is behind: backpressure reaches the requests.
                if !events.is_empty() {
                    let _ = tx.send(Committed { events, received });
                }
            }
        }
        Err(e) => {
            for r in replies.into_iter().flatten() {
                let _ = r.send(Err(e.to_string()));
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread once the waiting requests are committed.
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, tx));
        self.internal = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The clock the service reads (injected, so tests are deterministic).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// `[service]` of the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Minutes between full re-evaluations of every account (health moves with time even
    /// without events) [60].
    #[serde(default = "default_refresh")]
    pub refresh_minutes: u64,
    /// The dashboard's address, for links in notifications.
    pub public_url: Option<String>,
    /// The trait or property naming the account of Segment calls without a groupId.
    pub segment_account_trait: Option<String>,
    /// Immediate rules skip events older than this many days [7].
    pub immediate_horizon_days: Option<i64>,
}

fn default_refresh() -> u64 {
    60
}

impl Default for ServiceSection {
    fn default() -> ServiceSection {
        ServiceSection {
            refresh_minutes: 60,
            public_url: None,
            segment_account_trait: None,
            immediate_horizon_days: None,
        }
    }
}

/// The service's sections of the configuration file (`tenure serve --config FILE`, by
/// default DATA/tenure.toml): rules, playbooks, notifiers. The file's other sections are
/// the engine's (tenure-engine checks them).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServiceConfig {
    #[serde(default)]
    pub service: ServiceSection,
    #[serde(default, rename = "rule")]
    pub rules: Vec<rules::RuleConfig>,
    #[serde(default, rename = "playbook")]
    pub playbooks: Vec<rules::Playbook>,
    #[serde(default, rename = "notifier")]
    pub notifiers: Vec<notify::NotifierConfig>,
}

impl ServiceConfig {
    pub fn parse(text: &str) -> Result<ServiceConfig, String> {
        let c: ServiceConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        rules::Rules::from_config(&c.rules, c.playbooks.clone()).map_err(|e| e.to_string())?;
        for n in &c.notifiers {
            n.validate().map_err(|e| e.to_string())?;
        }
        Ok(c)
    }
}

/// How to start the service.
pub struct Options {
    pub engine: tenure_engine::Config,
    pub ingest: IngestConfig,
    pub limits: Limits,
    pub clock: Clock,
    pub config: ServiceConfig,
}

impl Options {
    /// Defaults, with `clock`.
    pub fn new(clock: Clock) -> Options {
        Options {
            engine: tenure_engine::Config::defaults(),
            ingest: IngestConfig::defaults(None),
            limits: Limits::default(),
            clock,
            config: ServiceConfig::default(),
        }
    }
}

/// What the applier shares with the handlers.
pub struct Core {
    pub live: RwLock<live::Live>,
    pub metrics: metrics::Metrics,
    /// Taken at shutdown, to let queued notifications go out.
    pub dispatcher: std::sync::Mutex<Option<notify::Dispatcher>>,
    pub clock: Clock,
    pub public_url: Option<String>,
    /// The dashboard's KPI rows of closed months, by (months, cut by segment, end).
    pub kpi_cache: KpiCache,
}

/// KPI rows by (months, cut, end) with when and at which generation of the live state
/// they were computed.
pub type KpiCache = std::sync::Mutex<
    std::collections::HashMap<(i64, bool, i64), (Instant, u64, Arc<Vec<tenure_kpi::Row>>)>,
>;

/// The applier thread, joined when the service stops (after the writer).
struct Applier(Option<std::thread::JoinHandle<()>>);

impl Drop for Applier {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

pub struct Inner {
    pub data: PathBuf,
    pub keys: RwLock<Keys>,
    // Dropped in this order: the writer commits what is waiting, then the applier ends.
    writer: Writer,
    _applier: Applier,
    pub core: Arc<Core>,
    pub ingest: IngestConfig,
    pub limits: Limits,
    pub clock: Clock,
    pub segment: segment::SegmentConfig,
    pub sessions: web::Sessions,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// The data directory's scorecards (DATA/scorecards.toml, else the shipped ones) and saved
/// churn model (DATA/models/churn.json), as `tenure health` and `tenure risk` read them.
fn health_setup(
    data: &Path,
) -> Result<(tenure_health::scorecard::Scorecards, Option<tenure_health::Model>), String> {
    let p = data.join("scorecards.toml");
    let cards = if p.is_file() {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        tenure_health::scorecard::Scorecards::parse(&text)
            .map_err(|e| format!("{}: {e}", p.display()))?
    } else {
        tenure_health::scorecard::Scorecards::default_set()
    };
    let m = data.join("models").join("churn.json");
    let model = if m.is_file() {
        let text = std::fs::read_to_string(&m).map_err(|e| format!("{}: {e}", m.display()))?;
        Some(tenure_health::Model::from_json(&text).map_err(|e| format!("{}: {e}", m.display()))?)
    } else {
        None
    };
    Ok((cards, model))
}

impl AppState {
    /// Opens the data directory (the service is then its log's only writer): keys, the
    /// live state replayed from the log, the writer and the applier. Call within a Tokio
    /// runtime when notifiers are configured.
    pub fn open(data: &Path, o: Options) -> Result<AppState, String> {
        let keys = Keys::load(data).map_err(|e| e.to_string())?;
        let rules = rules::Rules::from_config(&o.config.rules, o.config.playbooks.clone())
            .map_err(|e| e.to_string())?;
        let (cards, model) = health_setup(data)?;
        let now = (o.clock)();
        // On a thread of its own: the columnar store runs its own runtime, which cannot
        // start inside the caller's.
        let engine = o.engine.clone();
        let mut live = std::thread::scope(|sc| {
            sc.spawn(|| live::load(data, engine, rules, cards, model, now))
                .join()
                .map_err(|_| "loading the live state panicked".to_string())
        })??;
        if let Some(d) = o.config.service.immediate_horizon_days {
            live.immediate_horizon_days = d.max(0);
        }
        let dispatcher = if o.config.notifiers.is_empty() {
            None
        } else {
            let unix = o.clock.clone();
            Some(
                notify::Dispatcher::from_configs(
                    &o.config.notifiers,
                    data.join("dead-letter.jsonl"),
                    Arc::new(move || unix().secs()),
                )
                .map_err(|e| e.to_string())?,
            )
        };
        let core = Arc::new(Core {
            live: RwLock::new(live),
            metrics: metrics::Metrics::default(),
            dispatcher: std::sync::Mutex::new(dispatcher),
            clock: o.clock.clone(),
            public_url: o.config.service.public_url.clone(),
            kpi_cache: KpiCache::default(),
        });
        let (importer, recovery) =
            Importer::open(data, o.ingest.clone()).map_err(|e| e.to_string())?;
        // What the log's recovery did (tails no commit covered cut off, indexes rebuilt) is
        // logged and counted, never discarded.
        core.metrics.log_recovered(recovery.dropped_bytes(), recovery.dropped_records());
        log(
            if recovery.is_clean() { "info" } else { "warn" },
            "event log opened",
            json!({"lanes": recovery.lanes, "records": recovery.records,
                   "dropped_bytes": recovery.dropped_bytes(),
                   "dropped_records": recovery.dropped_records(), "recovery": recovery.lines()}),
        );
        let (applied_tx, applied_rx) = std::sync::mpsc::sync_channel::<Committed>(64);
        let mut writer = Writer::start(importer, o.limits.queue, Some(applied_tx));
        let refresh = Duration::from_secs(o.config.service.refresh_minutes.max(1) * 60);
        let applier = {
            let core = core.clone();
            let internal = writer.internal.take().expect("the applier's sender");
            std::thread::spawn(move || apply_loop(&core, &applied_rx, &internal, refresh))
        };
        let mut seg = segment::SegmentConfig::default();
        if let Some(t) = &o.config.service.segment_account_trait {
            seg.account_trait = t.clone();
        }
        Ok(AppState(Arc::new(Inner {
            data: data.to_path_buf(),
            keys: RwLock::new(keys),
            writer,
            _applier: Applier(Some(applier)),
            core,
            ingest: o.ingest,
            limits: o.limits,
            clock: o.clock,
            segment: seg,
            sessions: web::Sessions::default(),
        })))
    }
}

/// The applier: folds committed events into the live state and raises what the rules
/// fire; re-evaluates every account at start (nothing fires twice: the cooldowns come from
/// the alerts in the log) and every `refresh`.
fn apply_loop(
    core: &Core,
    rx: &std::sync::mpsc::Receiver<Committed>,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    refresh: Duration,
) {
    let mut pending = tenure_alerting::Pending::default();
    let now = (core.clock)();
    let fired = core.live.write().expect("live state").refresh(now);
    // What the first evaluation finds is recorded (alerts, tasks) but not notified: on a
    // first start that is every at-risk account at once, a flood rather than news.
    let n = fired.len();
    raise(core, fired, now, None, internal, &mut pending, false);
    if n > 0 {
        log(
            "info",
            "the evaluation at start raised alerts without notifying",
            json!({"alerts": n}),
        );
    }
    web::warm(core);
    let mut next = Instant::now() + refresh;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(mut c) => {
                // Everything already committed is applied together: re-scoring costs per
                // account touched, not per event, so a backlog is caught up in one step.
                while c.events.len() < 1_000_000 {
                    match rx.try_recv() {
                        Ok(more) => {
                            c.events.extend(more.events);
                            c.received = c.received.min(more.received);
                        }
                        Err(_) => break,
                    }
                }
                let now = (core.clock)();
                // Immediate rules first: their alerts do not wait for the re-scoring.
                let (fired, touched) = core.live.write().expect("live state").take(&c.events, now);
                raise(core, fired, now, Some(c.received), internal, &mut pending, true);
                let fired = core.live.write().expect("live state").settle(touched, now);
                raise(core, fired, now, None, internal, &mut pending, true);
                // Keeps the portfolio's default view computed (at most every few minutes).
                web::warm(core);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = (core.clock)();
                let fired = core.live.write().expect("live state").refresh(now);
                raise(core, fired, now, None, internal, &mut pending, true);
                web::warm(core);
                next = Instant::now() + refresh;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Structured logs: one JSON object per line on stderr. Never given keys or secrets.
pub fn log(level: &str, msg: &str, fields: Value) {
    let mut o = json!({"level": level, "msg": msg});
    if let (Some(o), Value::Object(f)) = (o.as_object_mut(), fields) {
        o.extend(f);
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    o["ts"] = json!(Timestamp(secs).to_string());
    eprintln!("{o}");
}

/// Records each firing as an alert event and a task (opened, or the open one updated),
/// through the writer, and notifies.
fn raise(
    core: &Core,
    fired: Vec<rules::Firing>,
    now: Timestamp,
    received: Option<Instant>,
    internal: &mpsc::UnboundedSender<Vec<Event>>,
    pending: &mut tenure_alerting::Pending,
    notify: bool,
) {
    if fired.is_empty() {
        return;
    }
    let live = core.live.read().expect("live state");
    let raised = tenure_alerting::raise(&live, fired, now, pending);
    let mut events = Vec::with_capacity(2 * raised.len());
    for r in raised {
        let rule = &live.rules.rules[r.rule];
        if r.opened {
            core.metrics.tasks_opened.fetch_add(1, Relaxed);
        }
        if let Some(at) = received {
            core.metrics.alert_latency.observe(at.elapsed());
        }
        *core
            .metrics
            .alerts
            .lock()
            .expect("metrics lock")
            .entry((rule.id.clone(), rule.severity.as_str().to_string()))
            .or_default() += 1;
        log(
            "info",
            "alert",
            json!({"alert_id": r.alert_id, "account_id": r.account_id, "rule": rule.id,
                   "severity": rule.severity.as_str(), "task_id": r.task_id}),
        );
        if let Some(d) =
            core.dispatcher.lock().expect("dispatcher lock").as_ref().filter(|_| notify)
        {
            d.send(notify::Notification {
                alert_id: r.alert_id,
                account_id: r.account_id.clone(),
                account_name: r.account_name,
                rule: rule.id.clone(),
                severity: rule.severity.as_str().to_string(),
                message: r.message,
                owner: r.owner,
                task_id: Some(r.task_id),
                ts: now.to_string(),
                link: core
                    .public_url
                    .as_ref()
                    .map(|u| format!("{}/accounts/{}", u.trim_end_matches('/'), r.account_id)),
            });
        }
        events.push(r.alert);
        events.push(r.task);
    }
    drop(live);
    let _ = internal.send(events);
}

/// The credentials of a request: `Authorization: Bearer KEY`, or Basic with the key as the
/// user name (how Segment's libraries send their write key). Scheme names are
/// case-insensitive (RFC 9110: `bearer`, `BASIC` are the same schemes).
fn credential(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once([' ', '\t'])?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(rest)?;
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
    if trimmed.is_empty() {
        return Err(ApiError::new(
            "invalid_json",
            "the body is empty: send a JSON array or JSON lines of events",
        ));
    }
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
        .send(Job { events, reply: Some(tx), received: Instant::now() })
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
        state.0.core.metrics.events_rejected.fetch_add(rejected.len() as u64, Relaxed);
        let mut e =
            ApiError::new("invalid_events", format!("all {} events were rejected", rejected.len()));
        e.rejected = rejected;
        return Err(e);
    }
    let started = Instant::now();
    let m = &state.0.core.metrics;
    m.requests.fetch_add(1, Relaxed);
    m.events_rejected.fetch_add(rejected.len() as u64, Relaxed);
    let stored = store(state, events).await?;
    m.ingest_latency.observe(started.elapsed());
    let accepted = stored.iter().filter(|s| **s).count();
    m.events_accepted.fetch_add(accepted as u64, Relaxed);
    m.events_duplicate.fetch_add((stored.len() - accepted) as u64, Relaxed);
    let mut body = json!({"success": true, "accepted": accepted, "duplicates": stored.len() - accepted, "rejected": rejections_json(&rejected)});
    if let Some((k, v)) = extra {
        body[k] = v;
    }
    Ok(json_response(StatusCode::OK, &body))
}

pub(crate) async fn ingest(
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
pub(crate) async fn segment_call(
    State(state): State<AppState>,
    UrlPath(call): UrlPath<String>,
    h: HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    const CALLS: &[&str] = &["track", "identify", "group", "page", "screen", "alias", "batch"];
    if !CALLS.contains(&call.as_str()) {
        return Err(ApiError::new("not_found", format!("no Segment call {call:?}")));
    }
    // An Authorization header decides; without one, Segment's writeKey in the body does.
    let header_auth = h.contains_key(header::AUTHORIZATION);
    if header_auth {
        authorise(&state, &h, Scope::Ingest)?;
    }
    let body = body_bytes(&state, body)?;
    let received = (state.0.clock)();
    let root: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        // Without a key, nothing about the body is told.
        Err(_) if !header_auth => return Err(segment_key_missing()),
        Err(e) => return Err(ApiError::new("invalid_json", format!("malformed JSON: {e}"))),
    };
    if !header_auth {
        authorise_write_key(&state, &root)?;
    } else if let Some(why) = segment::malformed_write_key(&root) {
        return Err(ApiError::new("invalid_request", why));
    }
    let mut shared = None;
    let (messages, sent_at): (Vec<&Value>, Option<Timestamp>) = if call == "batch" {
        let list = root.get("batch").and_then(Value::as_array).ok_or_else(|| {
            let mut e = ApiError::new("invalid_events", "a batch call needs a \"batch\" array");
            e.rejected =
                vec![Rejection { line: 1, field: Some("batch".into()), reason: "missing".into() }];
            e
        })?;
        let envelope = segment::batch_envelope(&root)
            .map_err(|e| ApiError::new("invalid_request", format!("{}: {}", e.field, e.reason)))?;
        shared = envelope.context;
        (list.iter().collect(), envelope.sent_at)
    } else {
        (vec![&root], None)
    };
    let cfg = IngestConfig { now: Some(received), ..state.0.ingest.clone() };
    // A number too small for a double (`1e-400`) reaches us as 0.0: found in the text, it
    // rejects the messages holding a zero float under the same key, rather than being
    // stored as 0.
    let underflow =
        std::str::from_utf8(&body).ok().and_then(tenure_ingest::raw::underflowing_number);
    let (mut events, mut rejected, mut ignored) = (Vec::new(), Vec::new(), 0u64);
    for (i, m) in messages.into_iter().enumerate() {
        let line = i as u64 + 1;
        if let Some(key) = underflow.as_deref().filter(|k| segment::tiny_float_under(m, k)) {
            rejected.push(Rejection {
                line,
                field: Some(key.to_string()),
                reason: "a number too small to be represented (it would be stored as 0)".into(),
            });
            continue;
        }
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
        let merged;
        let m = match &shared {
            Some(c) => {
                merged = segment::with_context(m, c);
                &merged
            }
            None => m,
        };
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

fn segment_key_missing() -> ApiError {
    ApiError::new(
        "unauthorized",
        "an API key is needed: Authorization (Bearer, or Basic with the write key as user name) or writeKey in the body",
    )
}

/// Segment's writeKey authentication: the key in the body, checked exactly as the same key
/// in an Authorization header would be (it goes through the same function).
fn authorise_write_key(state: &AppState, root: &Value) -> Result<(), ApiError> {
    let key = match segment::write_key(root) {
        Ok(Some(k)) => k,
        Ok(None) => return Err(segment_key_missing()),
        Err(why) => return Err(ApiError::new("unauthorized", why)),
    };
    let mut h = HeaderMap::new();
    let v = header::HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| ApiError::new("unauthorized", "unknown or revoked API key"))?;
    h.insert(header::AUTHORIZATION, v);
    authorise(state, &h, Scope::Ingest)
}

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `/metrics`: the counters and histograms, and the log's size on disk.
pub(crate) async fn metrics_text(State(state): State<AppState>) -> Response {
    fn size(p: &Path) -> u64 {
        match std::fs::read_dir(p) {
            Ok(rd) => rd
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => size(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum(),
            Err(_) => 0,
        }
    }
    let log_bytes = size(&tenure_engine::log_dir(&state.0.data)) as f64;
    let (accounts, open_tasks) = match state.0.core.live.read() {
        Ok(l) => (
            l.ledger.accounts.len() as f64,
            l.ledger.accounts.iter().flat_map(|a| &a.cs.tasks).filter(|t| t.is_active()).count()
                as f64,
        ),
        Err(_) => (f64::NAN, f64::NAN),
    };
    let mut extra = vec![
        ("tenure_log_bytes", "Size of the event log on disk.", log_bytes),
        ("tenure_accounts", "Accounts known.", accounts),
        ("tenure_tasks_open", "Tasks open or in progress.", open_tasks),
    ];
    let stats = state.0.core.dispatcher.lock().ok().and_then(|d| d.as_ref().map(|d| d.stats()));
    if let Some(st) = &stats {
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed) as f64;
        // Ever-growing: counters, named `_total` (see `Metrics::render`).
        extra.push((
            "tenure_notifications_delivered_total",
            "Notifications delivered.",
            g(&st.delivered),
        ));
        extra.push(("tenure_notifications_retries_total", "Notification retries.", g(&st.retries)));
        extra.push((
            "tenure_notifications_dead_lettered_total",
            "Notifications given up on (in DATA/dead-letter.jsonl).",
            g(&st.dead_lettered),
        ));
    }
    let body = state.0.core.metrics.render(&extra);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new("not_found", "no such endpoint")
}

/// The service's routes.
pub fn app(state: AppState) -> Router {
    let limit = state.0.limits.request_bytes;
    let mut router = Router::new();
    for r in api::ROUTES {
        // Parameters are checked against their documented types before the handler runs.
        router = router.route(r.path, openapi::checked(r, api::handler(r)));
    }
    router
        .merge(web::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        // Outermost last: decoding sees the request first; the error format sees every answer.
        .layer(axum::middleware::from_fn_with_state(limit, decode::request_body))
        .layer(axum::middleware::from_fn(fallback::error_bodies))
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
    options: Options,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async move {
        let state = AppState::open(data, options)?;
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
        let core = state.0.core.clone();
        let served = serve(listener, state, shutdown).await.map_err(|e| e.to_string());
        // The writer and the applier stop with the last handle on the state (the router
        // held the others); then the notifications still queued get a bounded time.
        let dispatcher = core.dispatcher.lock().ok().and_then(|mut d| d.take());
        if let Some(d) = dispatcher {
            d.shutdown(Duration::from_secs(10)).await;
        }
        served
    })
}
