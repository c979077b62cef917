//! Loading the live state (`tenure_alerting::live`) from the data directory: the log's
//! history replayed, the columnar store refreshed and its usage figures read.

pub use tenure_alerting::live::*;

use std::path::Path;
use tenure_alerting::Rules;
use tenure_core::event::EventKind;
use tenure_core::time::Timestamp;
use tenure_engine::Config;
use tenure_health::Model;
use tenure_health::scorecard::Scorecards;

/// The kinds the live ledger folds (usage is kept by day instead).
pub(crate) fn ledger_kinds() -> Vec<EventKind> {
    tenure_engine::REVENUE_KINDS.iter().chain(tenure_engine::CS_KINDS).copied().collect()
}

/// Replays the data directory's log as known at `now`.
pub fn load(
    data: &Path,
    cfg: Config,
    rules: Rules,
    cards: Scorecards,
    model: Option<Model>,
    now: Timestamp,
) -> Result<Live, String> {
    // The usage figures are read while the log is replayed: they are independent, and the
    // replay leaves a core partly idle (a million accounts: 5-8 s of the start hidden).
    let started = std::time::Instant::now();
    let (history, usage) = std::thread::scope(|s| {
        let usage = s.spawn(|| load_usage(data, &cfg, &rules, now));
        let mut history = History::default();
        let replayed =
            tenure_engine::replay_at(data, &ledger_kinds(), |e, i| history.push_at(e, Some(i)));
        let usage = usage.join().map_err(|_| "reading the usage figures panicked".to_string())?;
        replayed.map_err(|e| e.to_string())?;
        Ok::<_, String>((history, usage?))
    })?;
    let read = started.elapsed();
    let settings = Settings { revenue: cfg.revenue, kpi: cfg.kpi };
    let live = Live::new(history, settings, rules, cards, model, usage, now);
    crate::log(
        "info",
        "live state loaded",
        serde_json::json!({"accounts": live.ledger.accounts.len(), "scored": live.health.accounts.len(),
               "read_secs": read.as_secs_f64(), "fold_and_score_secs": (started.elapsed() - read).as_secs_f64()}),
    );
    Ok(live)
}

/// The usage figures the live state starts from: the columnar store refreshed, then every
/// account's months and the days from [`Live::window_start`] read.
fn load_usage(data: &Path, cfg: &Config, rules: &Rules, now: Timestamp) -> Result<Usage, String> {
    if !tenure_engine::log_dir(data).exists() {
        return Ok(Usage::default());
    }
    let monthly = load_monthly(data, cfg, now)?;
    Ok(Usage { monthly, days: load_days(data, cfg, Live::window_start(rules, now), now)? })
}

/// The day-level usage rows from `from` to `now`, of the columnar store as it stands
/// ([`load_monthly`] refreshes it).
pub(crate) fn load_days(
    data: &Path,
    cfg: &Config,
    from: Timestamp,
    now: Timestamp,
) -> Result<Vec<DayRow>, String> {
    if !tenure_engine::log_dir(data).exists() {
        return Ok(Vec::new());
    }
    tenure_analytics::usage_days(data, &engine(cfg), from, now).map_err(|e| e.to_string())
}

fn engine(cfg: &Config) -> tenure_analytics::Engine {
    match &cfg.cluster {
        Some(c) => tenure_analytics::Engine::Cluster {
            host: c.scheduler.host.clone(),
            port: c.scheduler.port,
            partitions: c.partitions,
        },
        None => tenure_analytics::Engine::Embedded,
    }
}

/// Every account's usage per calendar month before `now`'s, the columnar store refreshed
/// first.
pub(crate) fn load_monthly(
    data: &Path,
    cfg: &Config,
    now: Timestamp,
) -> Result<tenure_health::UsageByAccount, String> {
    if !tenure_engine::log_dir(data).exists() {
        return Ok(Default::default());
    }
    let engine = engine(cfg);
    let names: Vec<String> = cfg.kpi.features.iter().map(|f| f.name.clone()).collect();
    tenure_analytics::refresh(data, &engine).map_err(|e| e.to_string())?;
    tenure_analytics::usage_monthly(data, &engine, &names, now).map_err(|e| e.to_string())
}
