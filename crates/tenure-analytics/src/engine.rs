//! Where the columnar store's plans run: in this process, or on an Apache DataFusion Ballista
//! cluster whose executors read the same Parquet files.
//!
//! Both engines get the same logical plans (the SQL of [`crate::usage`], the rollups of
//! [`crate::store`], a user's `tenure sql`): only the session that plans and runs them
//! differs. A cluster's scheduler and executors must see the data directory at the same
//! absolute path (a shared file system), since file paths travel inside the plans.

use crate::AnalyticsError;
use ballista_core::config::BALLISTA_CLIENT_PULL;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion_proto::protobuf::LogicalPlanNode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where plans run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// In this process (the default).
    #[default]
    Embedded,
    /// On the Ballista cluster of this scheduler (`[cluster] scheduler = "df://HOST:PORT"`),
    /// with plans' data split into `partitions` (the cluster's cores, not this machine's).
    Cluster { host: String, port: u16, partitions: usize },
}

impl Engine {
    /// A session whose plans run on this engine, with `config` and, in this process, `runtime`
    /// (a memory pool bounds only what runs here: a cluster's executors have their own).
    pub(crate) fn session(
        &self,
        config: SessionConfig,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<SessionContext, AnalyticsError> {
        match self {
            Engine::Embedded => Ok(SessionContext::new_with_config_rt(config, runtime)),
            Engine::Cluster { host, port, partitions } => {
                let state = SessionStateBuilder::new()
                    .with_default_features()
                    .with_config(config.with_target_partitions(*partitions))
                    .with_runtime_env(runtime)
                    .build()
                    .upgrade_for_ballista(format!("http://{host}:{port}"))?;
                Ok(SessionContext::new_with_state(state))
            }
        }
    }

    /// A failed plan's error, said in the terms of where it ran: a cluster's failures name
    /// the scheduler (and its innermost cause once, not the chain of wrappers).
    pub(crate) fn explain(&self, e: AnalyticsError) -> AnalyticsError {
        match (self, e) {
            (Engine::Cluster { host, port, .. }, AnalyticsError::DataFusion(d)) => {
                let root = d.find_root().to_string();
                let hint = if root.contains("tonic::transport") {
                    " (is `tenure cluster scheduler` running there, with executors this \
                     machine can reach?)"
                } else {
                    ""
                };
                AnalyticsError::Cluster(format!(
                    "the Ballista cluster at df://{host}:{port} did not run the plan{hint}: {root}"
                ))
            }
            (_, e) => e,
        }
    }

    /// `config` for a query that may be cancelled ([`Engine::cancel`]): on a cluster, the
    /// client learns its job's id as soon as the job is queued (Ballista's "pull" tracking;
    /// by default the id comes with the first status, once the job is planned).
    pub(crate) fn cancellable(&self, config: SessionConfig) -> SessionConfig {
        match self {
            Engine::Embedded => config,
            Engine::Cluster { .. } => {
                let mut config = config.upgrade_for_ballista();
                // The key is Ballista's own, registered by the upgrade: setting it cannot fail.
                let _ = config.options_mut().set(BALLISTA_CLIENT_PULL, "true");
                config
            }
        }
    }

    /// Asks the cluster to stop the job of `plan`, a query whose result no one waits for
    /// any more (Ballista runs a job to its end otherwise). Best effort: the job may have
    /// ended, or the scheduler be gone; and an executor aborts a running task only when it
    /// next waits (on input, say), so a task that only computes runs to its end.
    pub(crate) async fn cancel(&self, plan: &Arc<dyn ExecutionPlan>) {
        let Engine::Cluster { host, port, .. } = self else { return };
        let Some(job) =
            plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>().and_then(|d| d.job_id())
        else {
            return;
        };
        let cancel = async {
            let mut c = SchedulerGrpcClient::connect(format!("http://{host}:{port}")).await.ok()?;
            c.cancel_job(CancelJobParams { job_id: job.as_str().to_owned() }).await.ok()
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), cancel).await;
    }

    /// A session with the default settings.
    pub(crate) fn default_session(&self) -> Result<SessionContext, AnalyticsError> {
        self.session(SessionConfig::new(), Arc::new(RuntimeEnv::default()))
    }

    /// Writes a plan's result as one Parquet file at `path`. In this process DataFusion
    /// writes it (encoding columns in parallel); from a cluster the result streams back to
    /// this process, which writes it, so the file lands beside the log whatever the
    /// executors' own disks are. Returns the rows written.
    pub(crate) async fn write_parquet(
        &self,
        df: DataFrame,
        path: &Path,
    ) -> Result<u64, AnalyticsError> {
        match self {
            Engine::Embedded => {
                let options = DataFrameWriteOptions::new().with_single_file_output(true);
                let done = df.write_parquet(&path.display().to_string(), options, None).await?;
                Ok(done
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                            .map(|a| a.value(0))
                    })
                    .unwrap_or(0))
            }
            Engine::Cluster { .. } => {
                use futures::StreamExt;
                let mut stream = df.execute_stream().await?;
                let file = std::fs::File::create(path)
                    .map_err(|source| AnalyticsError::Io { path: path.to_path_buf(), source })?;
                // DataFusion's own defaults for the files it writes.
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                    .build();
                let mut w = ArrowWriter::try_new(file, stream.schema(), Some(props))?;
                let mut rows = 0;
                while let Some(batch) = stream.next().await {
                    let batch: RecordBatch = batch?;
                    rows += batch.num_rows() as u64;
                    w.write(&batch)?;
                }
                w.close()?;
                Ok(rows)
            }
        }
    }
}

/// A directory of Parquet files standing in for tables a cluster cannot be sent (the ledger's
/// tables live in this process's memory): under the data directory, so the executors see
/// it; removed when dropped, and by the next refresh if this process dies first.
pub(crate) struct Scratch {
    pub dir: PathBuf,
}

/// Where [`Scratch`] directories go.
pub(crate) fn scratch_root(data: &Path) -> PathBuf {
    crate::columnar_dir(data).join("scratch")
}

impl Scratch {
    pub(crate) fn new(data: &Path) -> Result<Scratch, AnalyticsError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Unique across processes and runs (a container's process is often pid 1 every
        // time), so no cache of file statistics keyed by path ever sees an old table.
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| AnalyticsError::Io {
            path: PathBuf::from("<random>"),
            source: std::io::Error::other(e.to_string()),
        })?;
        let name = format!(
            "{}-{:016x}-{}",
            std::process::id(),
            u64::from_le_bytes(random),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::path::absolute(scratch_root(data).join(name))
            .map_err(|source| AnalyticsError::Io { path: data.to_path_buf(), source })?;
        std::fs::create_dir_all(&dir)
            .map_err(|source| AnalyticsError::Io { path: dir.clone(), source })?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
