//! The forecaster thread: remakes the renewal forecast the service shows
//! (DATA/models/forecast.json, as `tenure forecast --save` writes it) from the live state
//! every `[service] forecast_refresh_hours`, so that the Renewals page and
//! `/api/v1/forecast` do not go stale when nobody schedules `tenure forecast --save`; and,
//! on the same schedule (first after the delay), every account's lifetime value
//! (`lifetime.rs`), kept in memory.
//!
//! The live state is copied under its read lock (the ledger's builder, whose accounts'
//! events are shared rather than copied, and the usage) and the forecast computed from the copy, so
//! the applier waits only for the copy. A panic in
//! the computation is logged and the thread goes on; it stops when the service does.

use crate::Core;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};
use tenure_health::features::Context;

/// When to remake the forecast.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Between remakes; `None`: never.
    pub every: Option<Duration>,
    /// After start, before the first remake.
    pub delay: Duration,
}

impl Schedule {
    pub fn from_config(s: &crate::config::ServiceSection) -> Schedule {
        let hours = s.forecast_refresh_hours.unwrap_or(24);
        Schedule {
            every: (hours > 0).then(|| Duration::from_secs(hours.saturating_mul(3600))),
            delay: Duration::from_secs(s.forecast_delay_minutes.unwrap_or(10).saturating_mul(60)),
        }
    }
}

/// The thread's handle: dropping it stops the thread. It is not joined: a remake in
/// progress (minutes on a large base) would hold up the service's shutdown, and one that
/// finds the service stopped writes nothing.
pub(crate) struct Forecaster {
    _stop: Option<Sender<()>>,
}

/// Starts the thread (nothing when the schedule says never).
pub(crate) fn start(
    core: Arc<Core>,
    data: PathBuf,
    engine: tenure_engine::Config,
    schedule: Schedule,
) -> Forecaster {
    let Some(every) = schedule.every else { return Forecaster { _stop: None } };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("forecaster".into())
        .spawn(move || run(&core, &data, &engine, every, schedule.delay, &rx));
    if let Err(e) = spawned {
        crate::log(
            "error",
            "the forecaster could not start: the saved forecast is not remade",
            json!({"error": e.to_string()}),
        );
    }
    Forecaster { _stop: Some(tx) }
}

/// Whether the service is stopping (the handle was dropped), after waiting up to `wait`.
fn stopping(rx: &Receiver<()>, wait: Duration) -> bool {
    !matches!(rx.recv_timeout(wait), Err(RecvTimeoutError::Timeout))
}

fn path(data: &Path) -> PathBuf {
    data.join("models").join("forecast.json")
}

fn run(
    core: &Core,
    data: &Path,
    engine: &tenure_engine::Config,
    every: Duration,
    delay: Duration,
    rx: &Receiver<()>,
) {
    if stopping(rx, delay) {
        return;
    }
    let mut last_try: Option<Instant> = None;
    let mut last_values: Option<Instant> = None;
    loop {
        // A state read from its snapshot has no history until the applier replays it (the
        // forecast's backtests fold that history), and its folds are the saved ones until
        // the refresh that follows (the lifetime values read them): the applier's work at
        // start done, then.
        if !core.started.load(std::sync::atomic::Ordering::Acquire)
            || core.live.read().is_ok_and(|l| l.warming())
        {
            if stopping(rx, Duration::from_millis(100)) {
                return;
            }
            continue;
        }
        if last_values.is_none_or(|t| t.elapsed() >= every) {
            last_values = Some(Instant::now());
            let made =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lifetime_values(core)));
            match made {
                Ok(Ok(v)) => {
                    crate::log(
                        "info",
                        "lifetime values remade",
                        json!({"accounts": v.accounts.len(), "as_of": v.made_at.to_string()}),
                    );
                    if let Ok(mut slot) = core.lifetime.lock() {
                        *slot = Some(Arc::new(v));
                    }
                }
                Ok(Err(e)) => crate::log(
                    "warn",
                    "no lifetime values: the service tries again after the refresh period",
                    json!({"reason": e}),
                ),
                Err(_) => {
                    crate::log("error", "the lifetime values' computation panicked", json!({}))
                }
            }
        }
        // Due when the saved forecast is missing or older than the period, and the last
        // attempt (which may have failed: too little history) is too.
        let age = std::fs::metadata(path(data))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        let due = age.is_none_or(|a| a >= every) && last_try.is_none_or(|t| t.elapsed() >= every);
        if due {
            last_try = Some(Instant::now());
            let made =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| remake(core, engine)));
            match made {
                Ok(Ok((doc, notes))) => {
                    // Stopped meanwhile: the data directory may be another writer's now.
                    if stopping(rx, Duration::ZERO) {
                        return;
                    }
                    match write_atomic(&path(data), &doc) {
                        Ok(()) => crate::log(
                            "info",
                            "renewal forecast remade",
                            json!({"made_at": doc["made_at"], "notes": notes}),
                        ),
                        Err(e) => crate::log(
                            "error",
                            "the remade forecast could not be saved",
                            json!({"error": e.to_string()}),
                        ),
                    }
                }
                Ok(Err(e)) => crate::log(
                    "warn",
                    "no renewal forecast: the service tries again after the refresh period",
                    json!({"reason": e}),
                ),
                Err(_) => crate::log("error", "the forecast's computation panicked", json!({})),
            }
        }
        if stopping(rx, Duration::from_secs(60).min(every)) {
            return;
        }
    }
}

/// Every account's lifetime value from a copy of the ledger, as of the service's clock.
fn lifetime_values(core: &Core) -> Result<crate::lifetime::Values, String> {
    let (sums, end) = {
        let live = core.live.read().map_err(|_| "the live state is unavailable".to_string())?;
        let end = live.t;
        let periods = crate::lifetime::options().periods;
        (tenure_health::bgnbd::summaries(&live.ledger, end, periods), end)
    };
    crate::lifetime::compute(sums, end)
}

/// The forecast document from a copy of the live state, as of the service's clock.
fn remake(
    core: &Core,
    engine: &tenure_engine::Config,
) -> Result<(serde_json::Value, Vec<String>), String> {
    let t = (core.clock)();
    let (builder, usage) = {
        let live = core.live.read().map_err(|_| "the live state is unavailable".to_string())?;
        (live.builder().clone(), live.usage.clone())
    };
    let now = builder.fold_all(&engine.revenue, t);
    let ctx = Context { catalogue: &engine.kpi.features, segment_key: "segment" };
    let f = &engine.forecast;
    let s = tenure_health::forecast::Settings {
        commit: f.commit,
        probable: f.probable,
        level: f.interval,
        csm_key: f.csm_attribute.clone(),
        ..Default::default()
    };
    tenure_report::forecast::saved_document(
        &builder,
        &engine.revenue,
        &now,
        &usage,
        &ctx,
        &s,
        engine.revenue.fx.base,
    )
    .map_err(|e| e.to_string())
}

/// Writes the file whole and durably: a temporary file, synced, renamed over it.
fn write_atomic(p: &Path, doc: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    let dir = p.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = p.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, p)?;
    std::fs::File::open(dir)?.sync_all()
}
