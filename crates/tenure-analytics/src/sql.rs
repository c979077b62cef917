//! Read-only SQL over the columnar tables and the ledger's tables.

use crate::store::{TABLES, table_dir};
use crate::{AnalyticsError, runtime};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A table computed outside the columnar store (from the ledger), given to SQL by name.
#[derive(Debug, Clone)]
pub struct SqlTable {
    pub name: String,
    pub batch: RecordBatch,
}

/// The result of a query.
#[derive(Debug)]
pub struct Query {
    pub batches: Vec<RecordBatch>,
}

/// What one query may take: it is stopped past its time, and its operators spill to disk
/// (sorts, aggregations, joins) or fail once their memory reaches the limit, rather than
/// the machine running out.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqlLimits {
    pub timeout: Option<Duration>,
    /// Bytes for the query's operators (DataFusion's memory pool, shared fairly among the
    /// operators that can spill).
    pub memory: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query is wrong (syntax, unknown table or column, a write): the user's to fix.
    #[error("{0}")]
    Invalid(String),
    /// The query ran past its time limit and was stopped.
    #[error("the query ran past its time limit ({0:?}) and was stopped")]
    Timeout(Duration),
    /// The query needed more memory than its limit allows.
    #[error("the query needed more memory than its limit of {limit} bytes: {detail}")]
    Memory { limit: usize, detail: String },
    #[error(transparent)]
    Internal(#[from] AnalyticsError),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> QueryError {
        // Errors arrive wrapped (diagnostics, context): the innermost says who must act.
        match e.find_root() {
            DataFusionError::ResourcesExhausted(m) => {
                QueryError::Memory { limit: 0, detail: m.clone() }
            }
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::Invalid(e.find_root().to_string()),
            _ => QueryError::Internal(AnalyticsError::DataFusion(e)),
        }
    }
}

/// A session with every table registered: the columnar tables (only those materialised)
/// and the caller's.
pub(crate) async fn session(
    data: &Path,
    extra: Vec<SqlTable>,
) -> Result<SessionContext, AnalyticsError> {
    session_with(data, extra, SessionContext::new()).await
}

async fn session_with(
    data: &Path,
    extra: Vec<SqlTable>,
    ctx: SessionContext,
) -> Result<SessionContext, AnalyticsError> {
    for name in TABLES.iter().map(|(t, _)| *t).chain(["usage_daily", "usage_features"]) {
        let dir = table_dir(data, name);
        let has_files = std::fs::read_dir(&dir)
            .map(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "parquet")))
            })
            .unwrap_or(false);
        if has_files {
            let path = format!("{}/", dir.display());
            ctx.register_parquet(name, &path, ParquetReadOptions::default()).await?;
        } else {
            let schema = match name {
                "usage_daily" => crate::store::daily_schema(),
                "usage_features" => crate::store::features_schema(),
                _ => crate::store::schema(name),
            };
            ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
        }
    }
    for t in extra {
        let schema = t.batch.schema();
        ctx.register_table(
            t.name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![vec![t.batch]])?),
        )?;
    }
    Ok(ctx)
}

/// Runs one read-only statement within `limits`: DDL (which could read files anywhere), DML
/// and `SET`-style statements are refused, so SQL sees the data directory's tables and
/// nothing else.
pub fn run_sql(
    data: &Path,
    extra: Vec<SqlTable>,
    sql: &str,
    limits: SqlLimits,
) -> Result<Query, QueryError> {
    let _lock = crate::lock(data, false)?;
    let rt = runtime()?;
    let mut env = RuntimeEnvBuilder::new();
    if let Some(bytes) = limits.memory {
        env = env.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
    }
    let env = env.build_arc().map_err(AnalyticsError::from)?;
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), env);
    let run = async {
        let ctx = session_with(data, extra, ctx).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await?;
        Ok(Query { batches: df.collect().await? })
    };
    let out = rt.block_on(async {
        match limits.timeout {
            Some(t) => tokio::time::timeout(t, run).await.unwrap_or(Err(QueryError::Timeout(t))),
            None => run.await,
        }
    });
    // A stopped query may leave blocking reads behind: they get a moment, not a wait.
    rt.shutdown_timeout(Duration::from_secs(2));
    // The limit is ours to tell: DataFusion's message names its pool, not the setting.
    match (out, limits.memory) {
        (Err(QueryError::Memory { detail, .. }), Some(limit)) => {
            Err(QueryError::Memory { limit, detail })
        }
        (out, _) => out,
    }
}

/// Writes every table (the columnar ones and the caller's) to `out/NAME.parquet`, streaming,
/// and returns (name, rows) per table.
pub fn export_parquet(
    data: &Path,
    extra: Vec<SqlTable>,
    out: &Path,
) -> Result<Vec<(String, u64)>, AnalyticsError> {
    std::fs::create_dir_all(out)
        .map_err(|source| AnalyticsError::Io { path: out.to_path_buf(), source })?;
    let names: Vec<String> = TABLES
        .iter()
        .map(|(t, _)| t.to_string())
        .chain(["usage_daily".to_string(), "usage_features".to_string()])
        .chain(extra.iter().map(|t| t.name.clone()))
        .collect();
    let _lock = crate::lock(data, false)?;
    let rt = runtime()?;
    rt.block_on(async {
        let ctx = session(data, extra).await?;
        let mut written = Vec::new();
        for name in names {
            let path = out.join(format!("{name}.parquet"));
            let df = ctx.table(name.as_str()).await?;
            let options =
                datafusion::dataframe::DataFrameWriteOptions::new().with_single_file_output(true);
            let done = df.write_parquet(&path.display().to_string(), options, None).await?;
            let rows = done
                .first()
                .and_then(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                        .map(|a| a.value(0))
                })
                .unwrap_or(0);
            written.push((name, rows));
        }
        Ok(written)
    })
}
