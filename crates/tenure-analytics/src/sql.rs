//! Read-only SQL over the columnar tables and the ledger's tables.

use crate::store::{TABLES, table_dir};
use crate::{AnalyticsError, runtime};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::prelude::{SQLOptions, SessionContext};
use std::path::Path;
use std::sync::Arc;

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

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query is wrong (syntax, unknown table or column, a write): the user's to fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Internal(#[from] AnalyticsError),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> QueryError {
        // Errors arrive wrapped (diagnostics, context): the innermost says who must act.
        match e.find_root() {
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
    let ctx = SessionContext::new();
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

/// Runs one read-only statement: DDL (which could read files anywhere), DML and `SET`-style
/// statements are refused, so SQL sees the data directory's tables and nothing else.
pub fn run_sql(data: &Path, extra: Vec<SqlTable>, sql: &str) -> Result<Query, QueryError> {
    let _lock = crate::lock(data, false)?;
    let rt = runtime()?;
    rt.block_on(async {
        let ctx = session(data, extra).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await?;
        Ok(Query { batches: df.collect().await? })
    })
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
