//! Columnar tables of the high-volume events (usage, web visits, emails), their rollups and
//! read-only SQL, on Apache DataFusion.
//!
//! The log stays the truth: [`refresh`] reads the part of the usage, web-visit and email
//! lanes not yet materialized (a watermark per lane) and writes it as Parquet files, one per
//! month of event time per refresh, with the per-account, per-day, per-user rollup of the
//! same batch beside it (`usage_daily`); a month with many files is compacted, and each
//! changed month's per-account, per-feature rollup (`usage_features`) and per-account
//! rollup of distinct users and days (`usage_accounts`, internal: not a SQL table) rebuilt,
//! named by the range of daily rows they were made from. The rollups are computed in this
//! process without a plan (`rollup`); compactions and usage figures are DataFusion plans
//! (SQL), which run in this process or, configured, on an Apache DataFusion Ballista
//! cluster over the same Parquet files ([`Engine`], [`run_scheduler`], [`run_executor`]),
//! where a month's rollups run as plans too. Everything under `columnar/` can be deleted
//! and rebuilt.

mod cluster;
mod engine;
mod figures;
mod rollup;
mod sql;
mod store;
mod tables;
mod usage;

pub use cluster::{ExecutorOptions, SchedulerOptions, run_executor, run_scheduler};
pub use engine::Engine;
pub use figures::{FiguresRun, usage_figures};
pub use sql::{Query, QueryError, SqlLimits, SqlTable, export_parquet, run_sql, tables_read};
pub use store::{RefreshStats, refresh, refresh_batched};
pub use tables::ledger_tables;
pub use usage::{DayRow, usage_days, usage_monthly, usage_monthly_since, usage_stats};

/// Arrow, as the query engine builds it, for callers that render results.
pub use datafusion::arrow;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Log(#[from] tenure_log::LogError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("a log record does not decode ({0}); this is a bug or a damaged log, please report it")]
    Decode(String),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("query engine: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    /// A Ballista node failed, or a plan failed on the cluster.
    #[error("{0}")]
    Cluster(String),
}

/// The columnar directory of a data directory.
pub fn columnar_dir(data: &Path) -> PathBuf {
    data.join("columnar")
}

/// Serialises access to the columnar store between processes: a refresh holds the lock
/// exclusively (two `tenure kpi` started together must not both write the same batch), queries
/// hold it shared (they never see a refresh removing files they listed). The OS releases it
/// when the returned file is dropped or the process dies.
pub(crate) fn lock(data: &Path, exclusive: bool) -> Result<std::fs::File, AnalyticsError> {
    let dir = columnar_dir(data);
    let io = |source| AnalyticsError::Io { path: dir.join("LOCK"), source };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(io)?;
    if exclusive { f.lock() } else { f.lock_shared() }.map_err(io)?;
    Ok(f)
}

/// A runtime for DataFusion's async plans; the rest of Tenure is synchronous.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, AnalyticsError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()
        .map_err(|source| AnalyticsError::Io { path: PathBuf::from("<tokio runtime>"), source })
}

/// Removes the columnar tables (they are derived from the log and rebuilt by the next
/// refresh), holding the store's lock: what `tenure repair` does once records left the log,
/// since a table's watermark past the end of its lane would never catch up. Returns
/// whether anything was removed.
pub fn discard(data: &Path) -> Result<bool, AnalyticsError> {
    let dir = columnar_dir(data);
    if !dir.exists() {
        return Ok(false);
    }
    let _lock = lock(data, true)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AnalyticsError::Io { path, source }
    };
    let mut removed = false;
    for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
        let path = entry.map_err(io(&dir))?.path();
        if path.file_name().is_some_and(|n| n == "LOCK") {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        removed = true;
    }
    Ok(removed)
}
