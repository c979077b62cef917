//! Read-only SQL over the columnar tables and the ledger's tables.

use crate::engine::{Engine, Scratch};
use crate::store::{TABLES, table_dir};
use crate::{AnalyticsError, runtime};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::parquet::arrow::ArrowWriter;
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

/// A session on `engine` with every table registered: the columnar tables (only those
/// materialised) and the caller's. The scratch directory, when there is one, holds the
/// caller's tables for a cluster and must outlive the session's queries.
pub(crate) async fn session(
    data: &Path,
    engine: &Engine,
    extra: Vec<SqlTable>,
) -> Result<(SessionContext, Option<Scratch>), AnalyticsError> {
    session_with(data, engine, extra, engine.default_session()?).await
}

pub(crate) async fn session_with(
    data: &Path,
    engine: &Engine,
    extra: Vec<SqlTable>,
    ctx: SessionContext,
) -> Result<(SessionContext, Option<Scratch>), AnalyticsError> {
    for name in TABLES.iter().map(|(t, _)| *t).chain(["usage_daily", "usage_features"]) {
        // The files seen now, under the lock, by name: a plan that runs elsewhere (a
        // cluster's scheduler and executors) reads exactly these, and fails loudly if it
        // cannot, where a directory it cannot see would read as empty.
        let dir = std::path::absolute(table_dir(data, name))
            .map_err(|source| AnalyticsError::Io { path: data.to_path_buf(), source })?;
        let mut files: Vec<String> = match std::fs::read_dir(&dir) {
            Ok(d) => d
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .map(|p| p.display().to_string())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(AnalyticsError::Io { path: dir, source }),
        };
        files.sort();
        if !files.is_empty() {
            let df = ctx.read_parquet(files, ParquetReadOptions::default()).await?;
            ctx.register_table(name, df.into_view())?;
        } else {
            let schema = match name {
                "usage_daily" => crate::store::daily_schema(),
                "usage_features" => crate::store::features_schema(),
                _ => crate::store::schema(name),
            };
            ctx.register_table(name, Arc::new(EmptyTable::new(schema)))?;
        }
    }
    let mut scratch = None;
    for t in extra {
        let schema = t.batch.schema();
        match engine {
            Engine::Embedded => {
                let table = MemTable::try_new(schema, vec![vec![t.batch]])?;
                ctx.register_table(t.name.as_str(), Arc::new(table))?;
            }
            Engine::Cluster { .. } => {
                // A plan sent to a cluster names files, not memory: the table goes to a file
                // the executors can read.
                if scratch.is_none() {
                    scratch = Some(Scratch::new(data)?);
                }
                let dir = scratch.as_ref().map(|s| s.dir.clone()).unwrap_or_default();
                let path = dir.join(format!("{}.parquet", t.name));
                let file = std::fs::File::create(&path)
                    .map_err(|source| AnalyticsError::Io { path: path.clone(), source })?;
                let mut w = ArrowWriter::try_new(file, schema, None)?;
                w.write(&t.batch)?;
                w.close()?;
                let path = path.display().to_string();
                let df = ctx.read_parquet(path, ParquetReadOptions::default()).await?;
                ctx.register_table(t.name.as_str(), df.into_view())?;
            }
        }
    }
    Ok((ctx, scratch))
}

/// The names of the tables `sql` reads, as the engine resolves them (common table
/// expressions aside), so that a caller computes only the tables a query needs; `None`
/// when it does not parse (running it says why).
pub fn tables_read(sql: &str) -> Option<Vec<String>> {
    let ctx = SessionContext::new();
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state.sql_to_statement(sql, &dialect).ok()?;
    let refs = state.resolve_table_references(&statement).ok()?;
    Some(refs.iter().map(|r| r.table().to_string()).collect())
}

/// Runs one read-only statement within `limits`: DDL (which could read files anywhere), DML
/// and `SET`-style statements are refused, so SQL sees the data directory's tables and
/// nothing else.
pub fn run_sql(
    data: &Path,
    engine: &Engine,
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
    let ctx = engine.session(engine.cancellable(SessionConfig::new()), env)?;
    let running = std::sync::Mutex::new(None);
    let run = async {
        let (ctx, _scratch) = session_with(data, engine, extra, ctx).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await?;
        let task = df.task_ctx();
        let plan = df.create_physical_plan().await?;
        *running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&plan));
        Ok(Query { batches: datafusion::physical_plan::collect(plan, Arc::new(task)).await? })
    };
    let out = rt.block_on(async {
        match limits.timeout {
            Some(t) => match tokio::time::timeout(t, run).await {
                Ok(out) => out,
                Err(_) => {
                    // On a cluster the job would run on: it is stopped there too.
                    let plan = running.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(plan) = plan {
                        engine.cancel(&plan).await;
                    }
                    Err(QueryError::Timeout(t))
                }
            },
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
        (Err(QueryError::Internal(e)), _) => Err(QueryError::Internal(engine.explain(e))),
        (out, _) => out,
    }
}

/// Writes every table (the columnar ones and the caller's) to `out/NAME.parquet`, streaming,
/// and returns (name, rows) per table.
pub fn export_parquet(
    data: &Path,
    engine: &Engine,
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
        // Strings as `Utf8`, not the view type Parquet reads default to: what a cluster
        // reads them as too, and what every Parquet reader knows.
        let mut config = SessionConfig::new();
        config.options_mut().execution.parquet.schema_force_view_types = false;
        let ctx = engine.session(config, Arc::new(RuntimeEnv::default()))?;
        let (ctx, _scratch) = session_with(data, engine, extra, ctx).await?;
        let mut written = Vec::new();
        for name in names {
            let path = out.join(format!("{name}.parquet"));
            let df = ctx.table(name.as_str()).await?;
            let rows = engine.write_parquet(df, &path).await?;
            written.push((name, rows));
        }
        Ok(written)
    })
    .map_err(|e| engine.explain(e))
}
