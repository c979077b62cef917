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
fn ledger_kinds() -> Vec<EventKind> {
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
    let mut history = History::default();
    tenure_engine::replay_at(data, &ledger_kinds(), |e, i| history.push_at(e, Some(i)))
        .map_err(|e| e.to_string())?;
    let usage = if tenure_engine::log_dir(data).exists() {
        let names: Vec<String> = cfg.kpi.features.iter().map(|f| f.name.clone()).collect();
        let engine = match &cfg.cluster {
            Some(c) => tenure_analytics::Engine::Cluster {
                host: c.scheduler.host.clone(),
                port: c.scheduler.port,
                partitions: c.partitions,
            },
            None => tenure_analytics::Engine::Embedded,
        };
        tenure_analytics::refresh(data, &engine).map_err(|e| e.to_string())?;
        Usage {
            monthly: tenure_analytics::usage_monthly(data, &engine, &names, now)
                .map_err(|e| e.to_string())?,
            days: tenure_analytics::usage_days(data, &engine, Live::window_start(&rules, now), now)
                .map_err(|e| e.to_string())?,
        }
    } else {
        Usage::default()
    };
    let settings = Settings { revenue: cfg.revenue, kpi: cfg.kpi };
    Ok(Live::new(history, settings, rules, cards, model, usage, now))
}
