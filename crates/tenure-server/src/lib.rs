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
mod applier;
mod auth;
pub mod config;
mod conn;
pub mod daily;
pub mod decode;
pub mod error;
pub mod fallback;
pub mod forecast;
pub mod forecaster;
pub mod ingest;
pub mod keys;
pub mod lifetime;
pub mod live;
pub mod lock;
pub mod metrics;
pub mod models;
pub mod notify;
pub mod oidc;
pub mod openapi;
pub mod segment;
pub mod snapshot;
pub mod users;
pub mod web;
pub mod writer;

pub use applier::Fault;
pub(crate) use auth::{authorise, authorise_book};
pub use config::{Clock, Limits, Options, ServiceConfig, ServiceSection};
pub(crate) use error::json_response;
pub use error::{ApiError, ERROR_CODES};
pub(crate) use ingest::{ingest, segment_call};
pub use tenure_alerting::rules;
pub(crate) use writer::store;
pub use writer::{Committed, Writer};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tenure_core::time::Timestamp;
use tenure_engine::Importer;
use tenure_ingest::IngestConfig;

/// What the applier shares with the handlers.
pub struct Core {
    pub live: lock::LiveLock<live::Live>,
    pub metrics: metrics::Metrics,
    /// Taken at shutdown, to let queued notifications go out.
    pub dispatcher: std::sync::Mutex<Option<notify::Dispatcher>>,
    pub clock: Clock,
    pub public_url: Option<String>,
    /// The dashboard's KPI rows of closed months, by (months, cut by segment, end).
    pub kpi_cache: KpiCache,
    /// Whether the writer can write the log.
    pub storage: Arc<writer::Storage>,
    /// The forecasts `tenure forecast --save` wrote, parsed.
    pub forecast_cache: forecast::Cache,
    /// `[service] digest_above`: new tasks one rule may open in one evaluation at start or
    /// after a bulk batch before its alerts go into a digest instead.
    pub digest_above: usize,
    /// The model in use and since when (`models.rs`; the applier swaps it).
    pub health_setup: std::sync::Mutex<models::Status>,
    /// Each account's lifetime value, as the forecaster last made it (`lifetime.rs`).
    pub lifetime: std::sync::Mutex<Option<Arc<lifetime::Values>>>,
    /// Whether the start read the state saved at the last stop (`snapshot.rs`).
    pub from_snapshot: bool,
    /// Set when the applier panicked and the state could not be rebuilt: it is not saved.
    pub tainted: std::sync::atomic::AtomicBool,
    /// Set when the service stops: a refresh in progress ends at its next block, so that
    /// the stop (and its save) does not wait for every account.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Set once the applier's work at start is done: the evaluation at start, or, from a
    /// saved state, its history in, every account refreshed and the batches kept meanwhile
    /// taken. The daily digest waits for it (a saved state lacks the tasks its tail holds).
    pub started: std::sync::atomic::AtomicBool,
}

/// KPI rows by (months, cut, end) with when and at which generation (and history
/// generation) of the live state they were computed.
pub type KpiCache = std::sync::Mutex<
    std::collections::HashMap<(i64, bool, i64), (Instant, (u64, u64), Arc<Vec<tenure_kpi::Row>>)>,
>;

pub struct Inner {
    pub data: PathBuf,
    pub keys: Arc<keys::KeyStore>,
    // Dropped in this order: the writer commits what is waiting, then the applier ends.
    writer: Writer,
    _applier: applier::Applier,
    _forecaster: forecaster::Forecaster,
    _daily: daily::DailyDigest,
    pub core: Arc<Core>,
    pub ingest: IngestConfig,
    pub limits: Limits,
    pub clock: Clock,
    pub segment: segment::SegmentConfig,
    pub stripe: ingest::StripeConfig,
    pub sessions: web::Sessions,
    /// The account attribute naming its owner (`[forecast] csm_attribute`, `csm`): whose
    /// book an account is in.
    pub owner_key: String,
    /// The churn probability from which an account is at risk (`[risk] at_risk`): the
    /// dashboard's figures use it as `tenure risk` does.
    pub at_risk: f64,
    /// Single sign-on, when `[oidc]` is configured.
    pub oidc: Option<Arc<oidc::Oidc>>,
    /// Permits for requests in flight (`limits.max_requests`).
    pub(crate) requests: Arc<tokio::sync::Semaphore>,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl Drop for Inner {
    /// Before the fields (the writer, then the applier) are dropped: the applier then
    /// leaves a refresh in progress at its next block.
    fn drop(&mut self) {
        self.core.stopping.store(true, Relaxed);
    }
}

impl AppState {
    /// Which accounts the key or user with this id sees (a key: all).
    pub fn principal(&self, id: &str) -> users::Principal {
        let keys = self.0.keys.get();
        match keys.user(id) {
            Some(u) => users::Principal::of(u, &keys.users),
            None => users::Principal::All,
        }
    }

    /// Whether `a` is in the book of `p` at `t`.
    pub fn sees(
        &self,
        p: &users::Principal,
        a: &tenure_ledger::AccountLedger,
        t: tenure_core::time::Timestamp,
    ) -> bool {
        // As of `t` inclusive: an assignment made at this very instant counts already.
        let now = tenure_core::time::Timestamp(t.0.saturating_add(1));
        p.is_all() || p.sees(api::attr(a, &self.0.owner_key, now).as_deref())
    }
}

impl AppState {
    /// Opens the data directory (the service is then its log's only writer): keys, the
    /// live state replayed from the log, the writer and the applier. Call within a Tokio
    /// runtime when notifiers are configured.
    pub fn open(data: &Path, o: Options) -> Result<AppState, String> {
        let keys = Arc::new(
            keys::KeyStore::open(data, |e| {
                log(
                    "error",
                    "the keys file could not be read again: the keys in force stay",
                    json!({"error": e.to_string()}),
                )
            })
            .map_err(|e| e.to_string())?,
        );
        let rules = rules::Rules::from_config(&o.config.rules, o.config.playbooks.clone())
            .map_err(|e| e.to_string())?;
        let (cards, model) = models::load(data)?;
        let watch = models::Watch::new(data);
        let status = models::Status {
            since: Some((o.clock)()),
            model: model.as_ref().map(models::ModelInfo::of),
            error: None,
        };
        let now = (o.clock)();
        // The state saved last (at a stop or while running), when the log still holds what
        // it was saved from: the service answers from it at once, and replays the log's history behind
        // it (the applier), to the log's end (records appended since are folded in then).
        let settings_text = snapshot::settings(&o, &rules);
        let (key, setup) = (snapshot::key(), snapshot::setup(data, &settings_text));
        let save = o.config.service.save_state.unwrap_or(true);
        let settings =
            live::Settings { revenue: o.engine.revenue.clone(), kpi: o.engine.kpi.clone() };
        let found = if save { snapshot::check(data, &key, &setup) } else { None };
        // A state found is read while the log opens (its open reads the idempotency
        // index: seconds at a hundred million events).
        let mut open_secs = None;
        let (saved, opened) = match found {
            None => (None, None),
            Some(found) => {
                let (saved, opened) = std::thread::scope(|sc| {
                    let opened = sc.spawn(|| {
                        let started = std::time::Instant::now();
                        let opened = Importer::open(data, o.ingest.clone());
                        open_secs = Some(started.elapsed().as_secs_f64());
                        opened
                    });
                    let saved = snapshot::read(
                        data,
                        found,
                        settings,
                        rules.clone(),
                        cards.clone(),
                        model.clone(),
                    );
                    (saved, opened.join())
                });
                let opened = opened
                    .map_err(|_| "opening the event log panicked".to_string())?
                    .map_err(|e| e.to_string())?;
                // A recovery may have cut a torn tail (records never committed, so never in
                // the state): the log is checked again to hold what the state was saved from.
                let saved = saved.and_then(|s| s.history(data).map(|t| (s, t)));
                // Saved with another setup: its days are read again from the columnar store
                // now, before the service takes events (read later, the store would hold
                // events the applier also takes from its channel). Not beside the decoding:
                // both take the two cores, and together took longer (BENCHMARKS.md).
                let saved = match saved {
                    Some((s, t)) if !t.same_setup => {
                        let window = live::Live::window_start(&rules, now);
                        let read = std::thread::scope(|sc| {
                            sc.spawn(|| {
                                let closed = live::load_monthly(data, &o.engine, now)?;
                                Ok::<_, String>((
                                    closed,
                                    live::load_days(data, &o.engine, window, now)?,
                                ))
                            })
                            .join()
                            .unwrap_or_else(|_| Err("reading the usage panicked".into()))
                        });
                        match read {
                            Ok(read) => Some((s, t, Some(read))),
                            Err(e) => {
                                log(
                                    "error",
                                    "the saved live state is not used: its usage could not be read again",
                                    json!({"error": e}),
                                );
                                None
                            }
                        }
                    }
                    Some((s, t)) => Some((s, t, None)),
                    None => None,
                };
                (saved, Some(opened))
            }
        };
        // The same load rebuilds the live state if the applier panics.
        let reload: applier::Reload = {
            let (data, engine) = (data.to_path_buf(), o.engine.clone());
            // The setup as the files say now (a model may have been trained since the
            // start), else as it was at start.
            Box::new(move |now| {
                let (cards, model) =
                    models::load(&data).unwrap_or_else(|_| (cards.clone(), model.clone()));
                live::load(&data, engine.clone(), rules.clone(), cards, model, now)
            })
        };
        let (reload, live, warm) = match saved {
            Some((s, tail, read)) => (reload, Ok(s.live), Some((tail, read))),
            // On a thread of its own: the columnar store runs its own runtime, which cannot
            // start inside the caller's.
            None => std::thread::scope(|sc| {
                sc.spawn(move || {
                    let live = reload(now);
                    (reload, live, None)
                })
                .join()
                .map_err(|_| "loading the live state panicked".to_string())
            })?,
        };
        let mut live = live?;
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
            live: lock::LiveLock::new(live),
            metrics: metrics::Metrics::default(),
            dispatcher: std::sync::Mutex::new(dispatcher),
            clock: o.clock.clone(),
            public_url: o.config.service.public_url.clone(),
            kpi_cache: KpiCache::default(),
            storage: Arc::default(),
            forecast_cache: forecast::Cache::default(),
            digest_above: o.config.service.digest_above.unwrap_or(20),
            health_setup: std::sync::Mutex::new(status),
            lifetime: std::sync::Mutex::new(None),
            from_snapshot: warm.is_some(),
            tainted: Default::default(),
            stopping: Default::default(),
            started: Default::default(),
        });
        let (importer, recovery) = match opened {
            Some(o) => o,
            None => {
                let started = std::time::Instant::now();
                let opened = Importer::open(data, o.ingest.clone()).map_err(|e| e.to_string())?;
                open_secs = Some(started.elapsed().as_secs_f64());
                opened
            }
        };
        // What the log's recovery did (tails no commit covered cut off, indexes rebuilt) is
        // logged and counted, never discarded.
        core.metrics.log_recovered(recovery.dropped_bytes(), recovery.dropped_records());
        log(
            if recovery.is_clean() { "info" } else { "warn" },
            "event log opened",
            json!({"lanes": recovery.lanes, "records": recovery.records, "secs": open_secs,
                   "dropped_bytes": recovery.dropped_bytes(),
                   "dropped_records": recovery.dropped_records(), "recovery": recovery.lines()}),
        );
        let limits = o.limits.clone().with_service(&o.config.service);
        let (applied_tx, applied_rx) = std::sync::mpsc::sync_channel::<Committed>(64);
        let reopen: writer::Reopen = {
            let (data, ingest, core) = (data.to_path_buf(), o.ingest.clone(), core.clone());
            Box::new(move || {
                let (importer, recovery) =
                    Importer::open(&data, ingest.clone()).map_err(|e| e.to_string())?;
                core.metrics.log_recovered(recovery.dropped_bytes(), recovery.dropped_records());
                log(
                    if recovery.is_clean() { "info" } else { "warn" },
                    "event log reopened",
                    json!({"dropped_bytes": recovery.dropped_bytes(),
                           "dropped_records": recovery.dropped_records(), "recovery": recovery.lines()}),
                );
                Ok(importer)
            })
        };
        let saver = Saver {
            core: core.clone(),
            data: data.to_path_buf(),
            settings: settings_text,
            save,
            // At most a year apart (an instant that far ahead is still representable).
            every: o
                .save_every
                .or(match o.config.service.save_state_minutes.unwrap_or(60) {
                    0 => None,
                    m => Some(Duration::from_secs(m.min(525_600) * 60)),
                })
                .filter(|_| save),
        };
        let mut writer = Writer::start(
            importer,
            reopen,
            data,
            core.storage.clone(),
            limits.queue,
            Some(applied_tx),
            // The live state is saved last: the applier has taken every batch, and the log
            // is still locked (no import can append before its marks are taken).
            Some(Box::new({
                let stop = saver.clone();
                move |stored| stop.at_stop(stored)
            })),
        );
        let refresh = Duration::from_secs(o.config.service.refresh_minutes.max(1) * 60);
        let applier = {
            let core = core.clone();
            let internal = writer.internal.take().expect("the applier's sender");
            let saving = applier::Saving {
                saver,
                ask: writer.marks.take().expect("the applier's marks sender"),
            };
            let fault = o.fault.clone();
            let warm = warm.map(|(tail, read)| applier::Warm {
                data: data.to_path_buf(),
                until: tail.until,
                from: tail.from,
                usage: tail.usage,
                read,
                engine: o.engine.clone(),
                gate: o.history_gate.clone(),
            });
            std::thread::spawn(move || {
                applier::supervise(
                    &core,
                    &applied_rx,
                    &internal,
                    refresh,
                    reload,
                    watch,
                    fault,
                    warm,
                    &saving,
                )
            })
        };
        let forecaster = forecaster::start(
            core.clone(),
            data.to_path_buf(),
            o.engine.clone(),
            forecaster::Schedule::from_config(&o.config.service),
        );
        let oidc = match &o.config.oidc {
            Some(c) => Some(Arc::new(
                oidc::Oidc::new(c.clone(), o.config.service.public_url.as_deref())
                    .map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        let daily = daily::start(
            core.clone(),
            daily::Setup {
                data: data.to_path_buf(),
                keys: keys.clone(),
                owner_key: o.engine.forecast.csm_attribute.clone(),
                hour: Some(o.config.service.daily_digest_hour.unwrap_or(8)),
                poll: o.digest_poll,
            },
        );
        let mut seg = segment::SegmentConfig::default();
        if let Some(t) = &o.config.service.segment_account_trait {
            seg.account_trait = t.clone();
        }
        Ok(AppState(Arc::new(Inner {
            data: data.to_path_buf(),
            keys,
            writer,
            _applier: applier::Applier(Some(applier)),
            _forecaster: forecaster,
            _daily: daily,
            core,
            ingest: o.ingest,
            clock: o.clock,
            segment: seg,
            stripe: ingest::StripeConfig {
                secret: o.config.service.stripe_webhook_secret.clone().filter(|s| !s.is_empty()),
                tolerance_secs: o
                    .config
                    .service
                    .stripe_tolerance_secs
                    .unwrap_or(tenure_stripe::webhook::DEFAULT_TOLERANCE_SECS),
                options: tenure_stripe::Options {
                    account_key: o.config.service.stripe_account_key.clone(),
                    metered_in_mrr: false,
                },
            },
            sessions: web::Sessions::default(),
            owner_key: o.engine.forecast.csm_attribute.clone(),
            at_risk: o.engine.at_risk,
            requests: Arc::new(tokio::sync::Semaphore::new(limits.max_requests.max(1))),
            oidc,
            limits,
        })))
    }
}

/// Saves the live state: at the writer's end (`Writer::start`'s `at_end`), and while
/// running, every `[service] save_state_minutes`, from the applier (`applier.rs`).
#[derive(Clone)]
pub(crate) struct Saver {
    core: Arc<Core>,
    data: PathBuf,
    /// The options' part of the setup (`snapshot::settings`).
    settings: String,
    save: bool,
    /// How often while running (`None`: only at the stop).
    pub(crate) every: Option<Duration>,
}

impl Saver {
    /// Saves at the stop, unless alerts the service raised were not `stored`, or the
    /// state may differ from the log ([`run`](Self::run)).
    fn at_stop(self, stored: bool) {
        if !self.save {
            return;
        }
        if !stored {
            log(
                "warn",
                "the live state is not saved: alerts it raised were not stored (the next start reads the one saved before, if any, or replays the log)",
                json!({}),
            );
            return;
        }
        self.run(None);
    }

    /// Saves the state as it stands, noted at `marks` (the applier has taken every batch
    /// before them and none after).
    pub(crate) fn running(&self, marks: tenure_engine::state::Marks) {
        // A stop saves anyway, once every batch is taken.
        if self.core.stopping.load(Relaxed) {
            return;
        }
        // (Never asked for when saving is off: `every` is `None` then.)
        if self.run(Some(marks)) {
            self.core.metrics.state_saves.fetch_add(1, Relaxed);
        }
    }

    /// Saves unless the state may differ from the log's fold: a commit that failed (its
    /// records may be in the log, never taken), a rebuild after a panic that failed (the
    /// state is what the panic left), a setup in force that is not the files'.
    fn run(&self, marks: Option<tenure_engine::state::Marks>) -> bool {
        let failures = self.core.storage.failures.load(Relaxed);
        let tainted = self.core.tainted.load(Relaxed);
        if failures > 0 || tainted {
            log(
                "warn",
                "the live state is not saved: it may differ from the log (the next start reads the one saved before, if any, or replays the log)",
                json!({"failed_commits": failures, "failed_rebuild": tainted}),
            );
            return false;
        }
        // Scored with a setup other than the files' (they changed and did not load): the
        // setup would not say what the state was scored with.
        let setup = self.core.health_setup.lock().map(|s| s.error.clone()).unwrap_or(None);
        if let Some(e) = setup {
            log(
                "info",
                "the live state is not saved: the model or scorecards in force are not the files'",
                json!({"error": e}),
            );
            return false;
        }
        let setup = snapshot::setup(&self.data, &self.settings);
        // A state a panic left half-changed is not saved (the next start replays the log).
        match self.core.live.read() {
            Ok(live) => snapshot::save(&self.data, &live, &snapshot::key(), &setup, marks),
            Err(_) => {
                log(
                    "warn",
                    "the live state is not saved: the applier panicked while changing it",
                    json!({}),
                );
                false
            }
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

/// `/healthz`: 200 `ok` while the service can store events; 503 with the reason while it
/// cannot (the disk is full, say), until the writer's probe finds it can again.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match state.0.core.storage.problem() {
        None => "ok\n".into_response(),
        Some(why) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the event log cannot be written ({why})\n"),
        )
            .into_response(),
    }
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
    let (accounts, open_tasks, warming) = match state.0.core.live.read() {
        Ok(l) => (
            l.ledger.accounts.len() as f64,
            l.ledger.accounts.iter().flat_map(|a| &a.cs.tasks).filter(|t| t.is_active()).count()
                as f64,
            if l.warming() { 1.0 } else { 0.0 },
        ),
        Err(_) => (f64::NAN, f64::NAN, f64::NAN),
    };
    let storage = &state.0.core.storage;
    let mut extra = vec![
        ("tenure_log_bytes", "Size of the event log on disk.", log_bytes),
        (
            "tenure_ready",
            "1 while the event log can be written (as /healthz), 0 while it cannot.",
            if storage.is_writable() { 1.0 } else { 0.0 },
        ),
        (
            "tenure_storage_failures_total",
            "Commits to the event log that failed (a full disk, say).",
            storage.failures.load(Relaxed) as f64,
        ),
        ("tenure_accounts", "Accounts known.", accounts),
        (
            "tenure_started_from_snapshot",
            "1 when the service started from the live state saved before (at its last stop or while running).",
            if state.0.core.from_snapshot { 1.0 } else { 0.0 },
        ),
        (
            "tenure_live_warming",
            "1 while a start from the saved state replays the log's history behind it (events are stored, and taken once it is in).",
            warming,
        ),
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
        // Outermost last: the error format sees every answer; requests past the in-flight
        // limit are refused before their body is read; the body arrives within its
        // deadline, then is decoded.
        .layer(axum::middleware::from_fn_with_state(limit, decode::request_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), conn::read_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), conn::in_flight))
        .layer(axum::middleware::from_fn(fallback::error_bodies))
        .layer(axum::middleware::from_fn_with_state(state.clone(), warming_header))
        .with_state(state)
}

/// While a start from a saved state replays its history, every answer says so, with the
/// instant its figures are of: `Tenure-Warming: <as of>` (a client can tell an answer of
/// the saved state from one of the log as it stands), and a dashboard page with a line
/// above its content.
async fn warming_header(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    // Not waited for: the state is locked only to take its history in.
    let as_of = match state.0.core.live.try_read() {
        Ok(l) if l.warming() => Some(l.t),
        _ => None,
    };
    let Some(t) = as_of else { return resp };
    if let Ok(v) = axum::http::HeaderValue::from_str(&t.to_string()) {
        resp.headers_mut().insert("tenure-warming", v);
    }
    let html = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/html"));
    if !html {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = http_body_util::BodyExt::collect(body).await.map(|b| b.to_bytes()) else {
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "the page could not be read")
            .into_response();
    };
    let page = String::from_utf8_lossy(&bytes).replacen(
        "<main>",
        &format!(
            "<main><p role=\"status\" id=\"warming\">Starting up: these figures are as of {} UTC; they catch up with the events since within a minute or so.</p>",
            t.to_string().get(..16).unwrap_or_default().replace('T', " ")
        ),
        1,
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(page))
}

/// Serves on `listener` until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (header_timeout, max_connections) =
        (state.0.limits.header_timeout, state.0.limits.max_connections);
    conn::serve(listener, app(state), header_timeout, max_connections, shutdown).await
}

/// Runs the service on `listen` until Ctrl-C or SIGTERM: binds (port 0 picks one), tells
/// `on_listening` the address, serves, then lets in-flight requests finish and the writer
/// commit before returning. For a process that ends next: the live state's memory is not
/// given back (the process's end frees it at once).
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
        // The live state (saved by now) is left for the process's end to free at once:
        // freeing millions of accounts' parts one by one takes seconds at a million.
        std::mem::forget(core);
        served
    })
}
