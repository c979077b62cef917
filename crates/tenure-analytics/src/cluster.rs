//! A Ballista scheduler or executor run by this binary (`tenure cluster`): a cluster built
//! from the same DataFusion as the embedded engine, so both plan and compute alike.

use crate::AnalyticsError;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::start_server;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A scheduler's settings.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// The address it listens on (gRPC, for clients and executors).
    pub bind: SocketAddr,
    /// The host name executors and clients reach it by.
    pub external_host: String,
    /// Hand a stage's tasks to executors in turn, one each, rather than filling each
    /// executor's free slots first (Ballista's default).
    pub round_robin: bool,
    /// Log what each job does, not only warnings and errors.
    pub verbose: bool,
}

/// An executor's settings.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// The address its services listen on.
    pub bind_host: String,
    /// The host name the scheduler and clients reach it by (default: the address it
    /// connects to the scheduler from).
    pub external_host: Option<String>,
    /// Arrow Flight port: clients and other executors fetch results from here.
    pub port: u16,
    /// gRPC port: the scheduler hands out tasks here.
    pub grpc_port: u16,
    /// Partitions it computes at once, the slots the scheduler fills (0: one a core).
    pub cores: usize,
    /// Where shuffle files go: each job's are removed when the scheduler asks (5 minutes
    /// after the job), and any older than a day every hour whatever happened.
    pub work_dir: PathBuf,
    /// The memory its tasks share, in bytes (default: most of the machine's).
    pub memory: Option<u64>,
    /// Log what each task does, not only warnings and errors.
    pub verbose: bool,
}

fn cluster_error(e: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Cluster(format!("Ballista: {e}"))
}

/// A runtime like Ballista's own binaries use: plans recurse deeply, so threads get a
/// large stack.
fn runtime() -> Result<tokio::runtime::Runtime, AnalyticsError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(32 * 1024 * 1024)
        .build()
        .map_err(|source| AnalyticsError::Io { path: PathBuf::from("<tokio runtime>"), source })
}

/// Ballista's log records, to standard error: a node's only output.
struct Stderr(log::LevelFilter);

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.0
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            use std::io::Write;
            // A closed stderr loses the line, never stops the node.
            let _ =
                writeln!(std::io::stderr().lock(), "{} {}: {}", r.level(), r.target(), r.args());
        }
    }

    fn flush(&self) {}
}

/// Sends Ballista's log to standard error: warnings and errors, and with `verbose` what each
/// job and task does.
fn log_to_stderr(verbose: bool) {
    let level = if verbose { log::LevelFilter::Info } else { log::LevelFilter::Warn };
    // Once a process: the logger lives as long as it.
    if log::set_logger(Box::leak(Box::new(Stderr(level)))).is_ok() {
        log::set_max_level(level);
    }
}

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs a scheduler until Ctrl-C or SIGTERM (or until it fails). Its state (jobs, executors)
/// is in memory: a restarted scheduler starts empty and executors register again.
pub fn run_scheduler(o: SchedulerOptions) -> Result<(), AnalyticsError> {
    log_to_stderr(o.verbose);
    let config = SchedulerConfig {
        bind_host: o.bind.ip().to_string(),
        bind_port: o.bind.port(),
        external_host: o.external_host,
        task_distribution: if o.round_robin {
            TaskDistributionPolicy::RoundRobin
        } else {
            TaskDistributionPolicy::Bias
        },
        ..SchedulerConfig::default()
    };
    let config = Arc::new(config);
    runtime()?.block_on(async {
        let cluster = BallistaCluster::new_from_config(&config).await.map_err(cluster_error)?;
        tokio::select! {
            r = start_server(cluster, o.bind, config) => r.map_err(cluster_error),
            _ = stop_signal() => Ok(()),
        }
    })
}

/// Runs an executor until Ctrl-C or SIGTERM (after its running tasks), or until its
/// scheduler tells it to stop.
pub fn run_executor(o: ExecutorOptions) -> Result<(), AnalyticsError> {
    log_to_stderr(o.verbose);
    let config = ExecutorProcessConfig {
        scheduler_host: o.scheduler_host,
        scheduler_port: o.scheduler_port,
        bind_host: o.bind_host,
        external_host: o.external_host,
        port: o.port,
        grpc_port: o.grpc_port,
        vcores: if o.cores == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            o.cores
        },
        work_dir: Some(o.work_dir.display().to_string()),
        memory_pool_size: o.memory,
        // Started before its scheduler (a machine's boot, a test), an executor retries every
        // half second until the scheduler answers, rather than exiting at once.
        scheduler_connect_timeout_seconds: 60,
        // Jobs' shuffle files are removed when the scheduler asks; a request lost (a
        // scheduler restarted, an executor unreachable) must not fill the disk.
        job_data_ttl_seconds: 24 * 3600,
        job_data_clean_up_interval_seconds: 3600,
        ..ExecutorProcessConfig::default()
    };
    std::fs::create_dir_all(&o.work_dir)
        .map_err(|source| AnalyticsError::Io { path: o.work_dir.clone(), source })?;
    // The executor stops itself on Ctrl-C and SIGTERM, telling the scheduler and letting
    // running tasks finish first.
    runtime()?.block_on(start_executor_process(Arc::new(config))).map_err(cluster_error)
}
