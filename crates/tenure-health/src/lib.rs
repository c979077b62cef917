//! tenure-health: which accounts will leave, how much revenue is at risk, and why.
//!
//! Point-in-time features per account ([`features`]), configurable and explainable health
//! scorecards ([`scorecard`]), a calibrated churn model with drivers in plain words
//! ([`model`]) and an honest time-split backtest of both ([`backtest`]). Pure: every function
//! takes the folded ledger, the monthly usage and an instant, and returns values; nothing
//! here reads files, the network or the clock.

pub mod backtest;
pub mod bgnbd;
pub mod checkpoint;
pub mod features;
pub mod forecast;
pub mod model;
pub mod scorecard;
pub mod state;
pub mod survival;

pub use features::{Cause, Context, Row};
pub use model::{Driver, Model};
pub use scorecard::{Scorecard, Scorecards};

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("scorecard configuration: {0}")]
    Config(String),
    #[error("not enough history: {0}")]
    NotEnoughData(String),
    #[error(transparent)]
    Stats(#[from] tenure_stats::StatsError),
    #[error("model file: {0}")]
    Model(String),
}

pub use tenure_kpi::usage::UsageMonth;

/// Per-account monthly usage by account id (as `tenure-analytics` returns it).
pub type UsageByAccount = rustc_hash::FxHashMap<String, Vec<UsageMonth>>;
