//! The `tenure` binary: a thin shell over the library crates. It reads the clock and the
//! environment, parses arguments, draws progress and maps errors to exit codes:
//! 0 success, 1 internal error, 2 usage error, 3 some input rows were rejected, 4 the event
//! log is damaged (`verify` found something, or `repair` without `--yes` would change it),
//! 5 a query hit its time or memory limit (`sql --timeout`, `--memory-limit`).

mod forecast;
mod health;
mod report;
mod sources;
mod stats;

/// The folds and the importer allocate many small strings on several threads, where
/// mimalloc is markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use report::OutFormat;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tenure_core::event::EventKind;
use tenure_core::time::{Period, PeriodUnit, Timestamp};
use tenure_engine::import::Format;
use tenure_engine::{Config, Importer};
use tenure_kpi::{By, CohortMetric};

#[derive(Parser)]
#[command(name = "tenure", version, about = "Customer-success intelligence: retention KPIs, health and churn, from your own data", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Data directory (created on first import) [env: TENURE_DATA; default ./tenure-data]
    #[arg(long, short = 'd')]
    data: Option<PathBuf>,
    /// Configuration file [default: DATA/tenure.toml when present]
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Import events: Tenure's own JSONL or CSV (one file per type for CSV; `-` reads
    /// stdin), Parquet, a Stripe export (`--from stripe DIR`), or any export through a
    /// mapping (`--map hubspot-companies FILE`)
    Import {
        #[command(flatten)]
        data: DataArgs,
        /// Event type of rows that name none (default: from the file name, e.g. subscriptions.csv)
        #[arg(long = "type", conflicts_with = "map")]
        kind: Option<String>,
        /// What the input is (default: Parquet for a file starting with `PAR1`, else from
        /// the file extension: .csv, .parquet, else jsonl).
        /// `stripe`: files or folders of Stripe API objects (JSON) and Dashboard CSV exports
        #[arg(long, visible_alias = "format", value_enum)]
        from: Option<Source>,
        /// Read the files through a mapping: a shipped one by name (see `tenure import
        /// --map list`) or a mapping file (my-crm.toml); see docs/connectors.md
        #[arg(long, value_name = "NAME|FILE", conflicts_with = "from")]
        map: Option<String>,
        /// Stripe: group customers into the account named by this metadata key (customers
        /// without it are their own account, named by their Stripe id)
        #[arg(long, value_name = "KEY")]
        account_key: Option<String>,
        /// Stripe: count metered (usage-based) prices in MRR
        #[arg(long)]
        metered_in_mrr: bool,
        /// Print `acked LINES` on stderr after each durable commit (for scripts and tests)
        #[arg(long, hide = true)]
        acks: bool,
        /// Leave the columnar tables (usage, web visits, emails) to the next report or query
        /// instead of bringing them up to date now
        #[arg(long)]
        no_refresh: bool,
        /// Files to import (none with `--map list`)
        files: Vec<PathBuf>,
    },
    /// KPIs for a period, cut by an attribute, or as a series
    Kpi {
        #[command(flatten)]
        data: DataArgs,
        /// 2024 | 2024-Q1 | 2024-03 | 2024-03-15 | A..B (from the start of A to the start of B)
        #[arg(long, short)]
        period: String,
        /// Split the period into a series: day | week | month | quarter | year
        #[arg(long)]
        every: Option<String>,
        /// Cut by an account attribute (segment, region, csm, ...) or plan | tenure_band
        #[arg(long)]
        by: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        /// Report as known at this instant (default: now); later events are ignored
        #[arg(long)]
        as_of: Option<String>,
        /// Which KPIs: all of the catalogue, the revenue ones, the usage and adoption ones, or
        /// the tasks resolved by root cause
        #[arg(long, value_enum, default_value = "all")]
        kpis: KpiSet,
        /// Fold the whole log afresh instead of reading the ledger checkpoint
        /// (DATA/state/ledger.state, brought forward over new events and to later instants),
        /// and compute the usage figures of closed periods instead of reading those saved
        /// (DATA/columnar/figures); the figures are the same
        #[arg(long)]
        replay: bool,
    },
    /// Explain a revenue figure: the accounts, movements and source events behind it,
    /// summing to it exactly
    Explain {
        #[command(flatten)]
        data: DataArgs,
        /// mrr_start | mrr_end | mrr_new | mrr_expansion | mrr_contraction | mrr_churn |
        /// mrr_reactivation | mrr_net_change | upsell | cross_sell
        #[arg(long)]
        kpi: String,
        /// 2024 | 2024-Q1 | 2024-03 | 2024-03-15 | A..B (from the start of A to the start of B)
        #[arg(long, short)]
        period: String,
        /// Only this account
        #[arg(long)]
        account: Option<String>,
        /// Cut as `tenure kpi --by` (segment, region, plan, tenure_band, ...): every segment
        /// with its subtotal, or one segment with KEY=VALUE (KEY=(none): without the attribute)
        #[arg(long, value_name = "KEY[=VALUE]")]
        by: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        /// Report as known at this instant (default: now); later events are ignored
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Cohort retention: accounts by the month or quarter they first paid
    Cohorts {
        #[command(flatten)]
        data: DataArgs,
        /// month | quarter | year
        #[arg(long, default_value = "month")]
        by: String,
        #[arg(long, value_enum, default_value = "logo")]
        metric: Metric,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        #[arg(long)]
        as_of: Option<String>,
    },
    /// NPS for a period; with --migration, how contacts and accounts moved between categories
    Nps {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, short)]
        period: String,
        /// Show the promoter/passive/detractor migration matrices
        #[arg(long)]
        migration: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        #[arg(long)]
        as_of: Option<String>,
    },
    /// One account: attributes, MRR history, renewals, contacts, surveys, tickets and its KPIs
    Account {
        #[command(flatten)]
        data: DataArgs,
        /// The account id
        id: String,
        /// Period of the account's KPIs (default: the last 12 months)
        #[arg(long, short)]
        period: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        #[arg(long)]
        as_of: Option<String>,
        /// Fold the whole log rather than read the account's events through the account
        /// index (DATA/state/accounts.idx): the same page, slower on a large log
        #[arg(long)]
        replay: bool,
    },
    /// Read-only SQL over the data: usage, usage_daily, web_visits, emails, accounts,
    /// subscriptions, mrr_movements, renewals, contacts, survey_responses, tickets, ...
    Sql {
        #[command(flatten)]
        data: DataArgs,
        /// One SELECT statement
        query: String,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        #[arg(long)]
        as_of: Option<String>,
        /// Stop the query after this long (exit 5): 90s, 10m, 1h, or seconds; 0 for no limit
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Memory for the query's sorts, aggregations and joins, which spill to disk past it;
        /// a query that cannot fits fails (exit 5): 512MiB, 4GiB, or bytes; 0 for no limit
        #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
        memory_limit: u64,
    },
    /// Write every table to Parquet files, for a warehouse
    Export {
        #[command(flatten)]
        data: DataArgs,
        /// Output format (Parquet only, for now)
        #[arg(long, value_enum, default_value = "parquet")]
        format: ExportFormat,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Contracts due for renewal in a period (term ends) and their outcome
    Renewals {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, short)]
        period: String,
        /// Only the undecided ones
        #[arg(long)]
        open: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Renewal forecast: ARR up for renewal in a period, the probability each renews, the
    /// ARR expected back with an interval, categories and CSM overrides; `--backtest` for
    /// past periods' forecasts against what renewed
    Forecast(forecast::ForecastArgs),
    /// Health score of every paying account (scorecards; `--account` for the breakdown)
    Health(health::HealthArgs),
    /// Churn probability, MRR at risk, expected loss and drivers per account
    Risk(health::RiskArgs),
    /// Retention curves by group (Kaplan-Meier, log-rank) and Cox hazard ratios of signals
    Survival(health::SurvivalArgs),
    /// Projected lifetime (sBG) and CLTV by plan, start cohort or segment; with `--model bgnbd`, per-account P(alive), expected transactions and CLV from paid invoices (BG/NBD + Gamma-Gamma) with a hold-out backtest
    Clv(health::ClvArgs),
    /// Train the churn model, or backtest it against the scorecards
    Model {
        #[command(subcommand)]
        cmd: health::ModelCmd,
    },
    /// Create, list or revoke API keys (a secret is shown once; only its hash is kept)
    Key {
        #[command(subcommand)]
        cmd: KeyCmd,
    },
    /// People who log in to the dashboard: add, change, disable; passwords and personal
    /// API tokens (only hashes are kept)
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Who changed what: task changes and forecast calls from the log (with their author),
    /// and changes to people and keys, oldest first
    Audit {
        #[command(flatten)]
        data: DataArgs,
        /// From this day or instant on (e.g. 2026-06-01)
        #[arg(long)]
        from: Option<String>,
        /// Before this day or instant
        #[arg(long)]
        to: Option<String>,
        /// table, json or csv (for a spreadsheet: cells that would read as formulas are
        /// prefixed with ')
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
    },
    /// Run the service: the ingest API (acknowledged once durable) on --listen
    Serve {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The largest request body, bytes
        #[arg(long, default_value_t = 8 << 20)]
        max_request_bytes: usize,
    },
    /// Run a node of an Apache DataFusion Ballista cluster for the columnar side (usage
    /// rollups, usage figures, `tenure sql`): point `[cluster] scheduler = "df://HOST:PORT"`
    /// at its scheduler. The scheduler and executors must see the data directory at the same
    /// path as the commands that use them (docs/scale.md)
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Generate a synthetic SaaS company (every event type) with its ground truth
    Gen(GenArgs),
    /// Generate a sample company, import it, train the churn model, print its portfolio
    /// report, then serve the dashboard (Ctrl-C stops; the data is removed unless --data)
    Demo {
        /// Keep the data here (default: a fresh temporary directory)
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        accounts: u64,
        /// Months of history (36: with less, the churn model's backtest trains on under a
        /// year of outcomes and the page mostly shows how little that teaches)
        #[arg(long, default_value_t = 36)]
        months: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Where the dashboard listens
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Print the report and stop: no model, no service
        #[arg(long)]
        no_serve: bool,
    },
    /// Statistics on any CSV: survival curves, Cox regression, lifetime-value models, logistic
    /// regression (JSON by default)
    Stats {
        #[command(subcommand)]
        cmd: stats::StatsCmd,
    },
    /// What the log holds: records per event type
    Status {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Check the event log completely: every segment, record, commit record and key index,
    /// and that no segment is missing. Prints each problem as `FILE: offset N: reason`;
    /// exit 4 when it finds any
    Verify {
        #[command(flatten)]
        data: DataArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
    },
    /// Repair a damaged event log (never done automatically). Without --yes it prints what it
    /// would drop and changes nothing (exit 4 if there is anything to do); with --yes it does
    /// it. Needs the log to itself: stop `tenure serve` and imports first
    Repair {
        #[command(flatten)]
        data: DataArgs,
        /// Carry out the repair
        #[arg(long)]
        yes: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// The scheduler: plans jobs and hands their tasks to executors (runs until Ctrl-C or
    /// SIGTERM; its state is in memory)
    Scheduler {
        /// Address to listen on (gRPC, for clients and executors)
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
        /// The host name executors and clients reach it by
        #[arg(long, default_value = "localhost")]
        external_host: String,
        /// How a stage's tasks go to executors: bias fills each executor's free slots first,
        /// round-robin hands tasks to executors in turn (a task takes up to an executor's
        /// free slots' worth of partitions)
        #[arg(long, value_enum, default_value = "bias")]
        task_distribution: TaskDistribution,
        /// Log each job's progress to standard error, not only warnings and errors
        #[arg(long)]
        verbose: bool,
    },
    /// An executor: runs tasks, reading the Parquet files its scheduler's jobs name (runs
    /// until Ctrl-C or SIGTERM)
    Executor(ExecutorArgs),
}

#[derive(Args)]
struct ExecutorArgs {
    /// The scheduler, df://HOST:PORT
    #[arg(long, default_value = "df://localhost:50050")]
    scheduler: String,
    /// Address its services listen on
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The host name the scheduler and clients reach it by [default: the address it
    /// connects to the scheduler from]
    #[arg(long)]
    external_host: Option<String>,
    /// Arrow Flight port: results and shuffles are fetched from here
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// gRPC port: the scheduler hands out tasks here
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Partitions it computes at once: the slots the scheduler fills [default: one a core]
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    cores: usize,
    /// Where shuffle files go (kept until the scheduler asks, at most a day); size it for
    /// the largest stage's output [default: TMPDIR/tenure-executor-PORT]
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Memory its tasks share, e.g. 4GiB; operators spill to disk at it [default: most of
    /// the machine's]
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Log each task's progress to standard error, not only warnings and errors
    #[arg(long)]
    verbose: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TaskDistribution {
    Bias,
    RoundRobin,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

/// Exit status of `verify` (and of a `repair` dry run) when the log is damaged.
const DAMAGED: u8 = 4;

#[derive(Args)]
struct GenArgs {
    #[arg(long, default_value_t = 1000)]
    accounts: u64,
    #[arg(long, default_value_t = 36)]
    months: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// Approximate number of usage events (default: natural density)
    #[arg(long)]
    usage_events: Option<u64>,
    /// First month YYYY-MM (default: so that the history ends last month)
    #[arg(long)]
    start: Option<String>,
    /// jsonl | csv: Tenure's events; stripe: the billing history as Stripe API objects
    /// under OUT/stripe/ (customers, subscriptions, invoices, credit notes, prices), the
    /// other events as JSONL
    #[arg(long, value_enum, default_value = "jsonl")]
    format: GenFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GenFormat {
    Jsonl,
    Csv,
    Stripe,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create a key and print its secret (once)
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// What it may do (comma-separated): ingest (send events), read (read everything, log in
        /// to the dashboard), write (change tasks, recorded under the key's name), admin (all)
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Who uses it (a person, a pipeline): shown in lists, and the author of the task
        /// changes made with it [the key's id]
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys (ids, names, scopes; never secrets)
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Revoke a key by its id
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a person
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// Their name, as the accounts' owner attribute (`csm`) names them
        #[arg(long)]
        name: String,
        /// Their email: the login
        #[arg(long)]
        email: String,
        /// admin (everything), manager (their team's books), csm (their book), viewer
        /// (every account, read only)
        #[arg(long)]
        role: String,
        /// Their team: a manager sees the books of the team's members
        #[arg(long)]
        team: Option<String>,
        /// Other values of the owner attribute that mean them (repeatable)
        #[arg(long)]
        alias: Vec<String>,
        /// Read a password from the first line of standard input (at least 12 characters)
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a person's role, team or aliases
    Set {
        #[command(flatten)]
        data: DataArgs,
        /// Their email or id
        who: String,
        #[arg(long)]
        role: Option<String>,
        /// A team (an empty value: none)
        #[arg(long)]
        team: Option<String>,
        /// Replace their aliases (repeatable; an empty value: none)
        #[arg(long)]
        alias: Option<Vec<String>>,
    },
    /// Set a password, read from the first line of standard input
    Password {
        #[command(flatten)]
        data: DataArgs,
        /// Their email or id
        who: String,
    },
    /// Make a personal API token (shown once; replaces the earlier one)
    Token {
        #[command(flatten)]
        data: DataArgs,
        /// Their email or id
        who: String,
    },
    /// Disable a person: their sessions end and they cannot log in
    Disable {
        #[command(flatten)]
        data: DataArgs,
        /// Their email or id
        who: String,
    },
    /// Enable a disabled person again
    Enable {
        #[command(flatten)]
        data: DataArgs,
        /// Their email or id
        who: String,
    },
    /// List people (never passwords or tokens)
    List {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum InFormat {
    Jsonl,
    Csv,
}

/// What `tenure import` reads.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// Tenure's events, one JSON object per line
    Jsonl,
    /// Tenure's events as CSV, one file per type
    Csv,
    /// Tenure's events as Parquet columns (named as the contract's fields)
    Parquet,
    /// Stripe API objects (JSON) and Stripe Dashboard CSV exports
    Stripe,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Parquet,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KpiSet {
    All,
    Revenue,
    Usage,
    /// Tasks resolved by root cause, and the MRR of their accounts
    RootCauses,
}

#[derive(Clone, Copy, ValueEnum)]
enum Metric {
    Logo,
    Revenue,
}

/// A mistake in the command line (exit 2), as opposed to a failure (exit 1).
#[derive(Debug)]
struct Usage(String);
impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    Usage(msg.into()).into()
}

/// A limit the user set was reached (exit 5): not a failure of Tenure, nor a wrong command.
#[derive(Debug)]
struct LimitHit(String);
impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for LimitHit {}

/// `90s`, `10m`, `1h`, `500ms` or plain seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{s:?}: a duration such as 90s, 10m, 1h"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (ms, s, m, h)")),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// `512MiB`, `4GiB`, `2G`, `100k` or plain bytes (K, M, G are powers of 1024 here too).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: a size such as 512MiB or 4GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (KiB, MiB, GiB, TiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?}: too large"))
}

/// What a ledger checkpoint must have been folded with: the revenue settings and this
/// binary (a new build may fold differently). Where the log stood is noted apart.
fn ledger_key(cfg: &Config) -> Vec<u8> {
    let settings = format!("{}|{:?}", build(), cfg.revenue);
    tenure_engine::state::digest(&settings).to_vec()
}

/// This binary, as far as saved state is concerned (`tenure_engine::state::build`).
fn build() -> String {
    tenure_engine::state::build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = run(cli);
    // A checkpoint saved while the command answered is in place before the process ends.
    health::wait_for_saves();
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else if e.downcast_ref::<LimitHit>().is_some() {
                ExitCode::from(5)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(d.as_micros() as i64)
}

fn data_dir(d: &DataArgs) -> PathBuf {
    d.data
        .clone()
        .or_else(|| std::env::var_os("TENURE_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("tenure-data"))
}

/// The advanced-tier features of the catalogue.
fn advanced(cfg: &Config) -> Vec<String> {
    cfg.kpi.features.iter().filter(|f| f.advanced).map(|f| f.name.clone()).collect()
}

/// Where the columnar plans run: on the configured Ballista cluster, else in this process.
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

/// Brings the columnar store up to date before a report that reads it. A failure stops the
/// report: its usage figures would silently leave out every event not yet materialised.
fn refresh_columnar(dir: &Path, cfg: &Config) -> Result<()> {
    let s = tenure_analytics::refresh(dir, &engine(cfg)).context(
        "the columnar store (usage, web visits, emails) could not be brought up to date, so \
         usage figures would be incomplete",
    )?;
    if s.files > 0 {
        let n: u64 = s.events.values().sum();
        eprintln!("columnar store: {n} new events materialised");
    }
    Ok(())
}

/// The ledger's tables for SQL and export.
fn ledger_tables(
    dir: &Path,
    cfg: &Config,
    as_of: Timestamp,
) -> Result<Vec<tenure_analytics::SqlTable>> {
    let ledger = tenure_engine::ledger(dir, cfg, as_of)?;
    let mut subs = Vec::new();
    tenure_engine::replay(dir, &[EventKind::Subscription], |e| {
        if e.ts <= as_of {
            subs.push(e)
        }
    })?;
    Ok(tenure_analytics::ledger_tables(&ledger, cfg.revenue.fx.base, &subs)?)
}

/// The data directory of a report, which must exist (a typo should not read as "no data").
fn existing_data_dir(d: &DataArgs) -> Result<PathBuf> {
    let dir = data_dir(d);
    if !dir.exists() {
        bail!(usage(format!(
            "no data directory at {} (import some events first, or pass --data)",
            dir.display()
        )));
    }
    Ok(dir)
}

fn config(d: &DataArgs) -> Result<Config> {
    Ok(tenure_engine::load_config(&data_dir(d), d.config.as_deref())?)
}

fn as_of(s: &Option<String>) -> Result<Timestamp> {
    match s {
        None => Ok(now()),
        Some(s) => Timestamp::parse(s).map_err(|e| usage(format!("--as-of: {e}"))),
    }
}

fn out(s: &str) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())?;
    o.flush()?;
    Ok(())
}

/// Leaves a report's values to the operating system, which takes the process's memory
/// back at once when it ends: freeing a million accounts' figures one allocation at a time
/// takes a few tenths of a second on one core, after the answer is written. Only for what
/// a command holds when it is about to return to `main`.
pub(crate) fn leave<T>(v: T) {
    std::mem::forget(v);
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Import {
            data,
            kind,
            from,
            map,
            account_key,
            metered_in_mrr,
            acks,
            no_refresh,
            files,
        } => {
            if map.as_deref() == Some("list") {
                sources::print_mappings()?;
                return Ok(ExitCode::SUCCESS);
            }
            if files.is_empty() {
                bail!(usage("import: name the files to import (- reads standard input)"));
            }
            if (account_key.is_some() || metered_in_mrr) && from != Some(Source::Stripe) {
                bail!(usage("--account-key and --metered-in-mrr apply to --from stripe"));
            }
            let kind = match kind {
                None => None,
                Some(k) => Some(EventKind::parse(&k).ok_or_else(|| {
                    usage(format!(
                        "--type: unknown type {k:?} (expected {})",
                        EventKind::expected()
                    ))
                })?),
            };
            let cfg = config(&data)?;
            let stripe = tenure_stripe::Options { account_key, metered_in_mrr };
            let how =
                ImportHow { kind, from, map: map.as_deref(), stripe, acks, refresh: !no_refresh };
            import(&data_dir(&data), &cfg, &files, &how)
        }
        Cmd::Kpi { data, period, every, by, format, as_of: at, kpis, replay } => {
            let p = Period::parse(&period).map_err(|e| usage(format!("--period: {e}")))?;
            let periods = match &every {
                None => vec![p],
                Some(u) => p.split(PeriodUnit::parse(u).ok_or_else(|| {
                    usage(format!(
                        "--every: unknown unit {u:?} (expected day | week | month | quarter | year)"
                    ))
                })?),
            };
            let cfg = config(&data)?;
            let dir = existing_data_dir(&data)?;
            let by = by.as_deref().map(By::parse);
            let at = as_of(&at)?;
            let family = match kpis {
                KpiSet::All => tenure_kpi::Family::All,
                KpiSet::Revenue => tenure_kpi::Family::Revenue,
                KpiSet::Usage => tenure_kpi::Family::Usage,
                KpiSet::RootCauses => tenure_kpi::Family::RootCauses,
            };
            let usage_of = |as_of: Timestamp| -> Result<Option<Vec<_>>> {
                if !matches!(kpis, KpiSet::All | KpiSet::Usage) {
                    return Ok(None);
                }
                refresh_columnar(&dir, &cfg)?;
                let engine = engine(&cfg);
                if replay {
                    let u = tenure_analytics::usage_stats(
                        &dir,
                        &engine,
                        &periods,
                        &advanced(&cfg),
                        as_of,
                        None,
                    )?;
                    return Ok(Some(u));
                }
                // Closed periods are read as saved (their late events' accounts computed again).
                let (u, run) = tenure_analytics::usage_figures(
                    &dir,
                    &engine,
                    &periods,
                    &advanced(&cfg),
                    as_of,
                    &build(),
                )?;
                for d in &run.damaged {
                    eprintln!("note: saved usage figures {d}; computed again");
                }
                for u in &run.unsaved {
                    eprintln!(
                        "note: usage figures not saved ({u}); the next report computes them again"
                    );
                }
                Ok(Some(u))
            };
            let (rows, as_of) = if replay {
                // Every lane, as the checkpoint holds them: an account known only from its
                // attributes or its tickets is one account of the report either way.
                let ledger = tenure_engine::ledger_with(&dir, &cfg, at, tenure_engine::Scope::ALL)?;
                for d in &ledger.diagnostics {
                    eprintln!("warning: {}", d.0);
                }
                let usage = usage_of(ledger.as_of)?;
                let rows = match (kpis, &usage) {
                    (KpiSet::All, Some(u)) => {
                        tenure_kpi::report_with_usage(&ledger, &periods, by.as_ref(), &cfg.kpi, u)
                    }
                    (KpiSet::Usage, Some(u)) => {
                        tenure_kpi::usage_only(&ledger, &periods, by.as_ref(), &cfg.kpi, u)
                    }
                    (KpiSet::Revenue, _) => {
                        tenure_kpi::revenue(&ledger, &periods, by.as_ref(), &cfg.kpi)
                    }
                    _ => tenure_kpi::root_causes(&ledger, &periods, by.as_ref(), &cfg.kpi),
                };
                let as_of = ledger.as_of;
                leave(usage);
                leave(ledger);
                (rows, as_of)
            } else {
                use tenure_engine::{EngineError, ledger_state};
                let key = ledger_key(&cfg);
                let mut st = ledger_state::open(&dir, &cfg, at, crate::now(), &key)?;
                if let Some(said) = &st.said {
                    eprintln!("{said}");
                }
                let usage = usage_of(st.as_of)?;
                let mut tally = tenure_kpi::Tally::new(
                    family,
                    &periods,
                    by.as_ref(),
                    &cfg.kpi,
                    usage.as_deref(),
                    Some(&cfg.revenue.fx),
                );
                // Damage past the header shows only when its chunk is read.
                // Each account is added as it is decoded (no chunk of accounts is held).
                let fold = |st: &ledger_state::LedgerState| {
                    st.fold_chunks(tally.wants(), || tally.start(), |g, a| tally.step(g, a))
                };
                let groups = match fold(&st) {
                    Err(EngineError::State(why)) => {
                        st = ledger_state::refold(&dir, &cfg, at, &key, &why)?;
                        eprintln!("{}", st.said.as_deref().unwrap_or_default());
                        fold(&st)?
                    }
                    groups => groups?,
                };
                let parts: Vec<tenure_kpi::Part> = groups.into_iter().map(|g| g.part()).collect();
                for d in &st.diagnostics {
                    eprintln!("warning: {}", d.0);
                }
                for part in parts {
                    tally.add(part);
                }
                let mut rows = tally.rows(&st.costs);
                if kpis == KpiSet::RootCauses {
                    tenure_kpi::root_causes_only(&mut rows);
                }
                let as_of = st.as_of;
                leave(usage);
                leave(st);
                (rows, as_of)
            };
            let cur = cfg.revenue.fx.base;
            match format {
                OutFormat::Json => {
                    out(&(report::kpis_json(&rows, cur, every.is_none() && by.is_none()) + "\n"))?
                }
                OutFormat::Csv => out(&report::kpis_csv(&rows, cur))?,
                OutFormat::Table => {
                    let unit = every.as_deref().and_then(PeriodUnit::parse);
                    let labels: Vec<String> = rows
                        .iter()
                        .map(|r| {
                            let pl = match unit {
                                Some(u) => u.label(r.period.start),
                                None => period.clone(),
                            };
                            match &r.segment {
                                None => pl,
                                Some(s) => {
                                    let s = s.clone().unwrap_or_else(|| "(none)".into());
                                    if every.is_some() { format!("{pl} {s}") } else { s }
                                }
                            }
                        })
                        .collect();
                    out(&format!("{} in {cur}, as of {}\n", period, as_of))?;
                    out(&report::kpis_table(&rows, cur, &labels))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Explain { data, kpi, period, account, by, format, as_of: at } => {
            use tenure_kpi::explain::{self, Kpi, Selection};
            let Some(k) = Kpi::parse(&kpi) else {
                bail!(usage(format!(
                    "--kpi: {kpi:?} cannot be explained (expected {})",
                    Kpi::expected()
                )));
            };
            let p = Period::parse(&period).map_err(|e| usage(format!("--period: {e}")))?;
            let (by, segment) = match by.as_deref().map(Selection::parse_by) {
                Some((b, s)) => (Some(b), s),
                None => (None, None),
            };
            let selection = Selection { by, segment, account };
            let cfg = config(&data)?;
            let dir = existing_data_dir(&data)?;
            // The account lane too: names, and the attributes a cut reads.
            let scope = tenure_engine::Scope { attributes: true, cs: false };
            let ledger = tenure_engine::ledger_sourced(&dir, &cfg, as_of(&at)?, scope)?;
            for d in &ledger.diagnostics {
                eprintln!("warning: {}", d.0);
            }
            if let Some(a) = &selection.account
                && ledger.account(a).is_none()
            {
                bail!(usage(format!("--account: no account {a:?} in the data")));
            }
            let e = explain::explain(&ledger, k, p, &selection, &cfg.kpi);
            let events: report::Resolved =
                tenure_engine::source_events(&dir, &explain::sources(&e))?
                    .into_iter()
                    .map(|s| (s.source, (s.position, s.event)))
                    .collect();
            let cur = cfg.revenue.fx.base;
            match format {
                OutFormat::Json => out(&(serde_json::to_string_pretty(&report::explain_json(
                    &e,
                    cur,
                    ledger.as_of,
                    &events,
                ))? + "\n"))?,
                OutFormat::Csv => out(&report::explain_csv(&e, cur))?,
                OutFormat::Table => out(&report::explain_table(&e, cur, ledger.as_of, &events))?,
            }
            if !e.balances() {
                // Never expected: the lines and the catalogue are two computations of one figure.
                bail!("the explanation sums to {} but the figure is {}", e.total, e.figure);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cohorts { data, by, metric, format, as_of: at } => {
            let unit = PeriodUnit::parse(&by).ok_or_else(|| {
                usage(format!("--by: unknown unit {by:?} (expected month | quarter | year)"))
            })?;
            let cfg = config(&data)?;
            let ledger = tenure_engine::ledger_with(
                &existing_data_dir(&data)?,
                &cfg,
                as_of(&at)?,
                tenure_engine::Scope::REVENUE,
            )?;
            let m = match metric {
                Metric::Logo => CohortMetric::Logo,
                Metric::Revenue => CohortMetric::Revenue,
            };
            let t = tenure_kpi::cohorts(&ledger, unit, m);
            match format {
                OutFormat::Json => out(&(report::cohorts_json(&t, cfg.revenue.fx.base) + "\n"))?,
                OutFormat::Csv => out(&report::cohorts_text(&t, true))?,
                OutFormat::Table => out(&report::cohorts_text(&t, false))?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Nps { data, period, migration, format, as_of: at } => {
            let p = Period::parse(&period).map_err(|e| usage(format!("--period: {e}")))?;
            let cfg = config(&data)?;
            let scope = tenure_engine::Scope { attributes: false, cs: true };
            let ledger =
                tenure_engine::ledger_with(&existing_data_dir(&data)?, &cfg, as_of(&at)?, scope)?;
            let rows = tenure_kpi::report(&ledger, &[p], None, &cfg.kpi);
            let m = migration.then(|| tenure_kpi::cs::nps_migration(&ledger, p));
            out(&report::nps(&rows[0], m.as_ref(), format))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Account { data, id, period, format, as_of: at, replay } => {
            let cfg = config(&data)?;
            let as_of = as_of(&at)?;
            let p = match &period {
                Some(p) => Period::parse(p).map_err(|e| usage(format!("--period: {e}")))?,
                None => {
                    let end = PeriodUnit::Day.advance(PeriodUnit::Day.floor(as_of), 1);
                    Period::new(end.add_months(-12), end)
                }
            };
            let dir = existing_data_dir(&data)?;
            // The account's own KPIs: the catalogue over a ledger of that account alone, cut
            // by account so that company-level costs stay out.
            let ledger = if replay {
                let mut ledger = tenure_engine::ledger(&dir, &cfg, as_of)?;
                ledger.accounts.retain(|a| a.id == id);
                ledger
            } else {
                let started = std::time::Instant::now();
                let (ledger, refresh) =
                    tenure_engine::accounts::account_ledger(&dir, &cfg, as_of, &id)?;
                if let tenure_engine::accounts::Refresh::Built(why) = refresh {
                    eprintln!(
                        "note: indexed the log's accounts ({why}) in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
                ledger.unwrap_or_default()
            };
            if ledger.accounts.is_empty() {
                bail!(usage(format!("no account {id:?} in the data")));
            }
            refresh_columnar(&dir, &cfg)?;
            // The usage trend: the twelve months up to the period end, then the period.
            let month_end = PeriodUnit::Month.floor(Timestamp(p.end.0 - 1));
            let month_end = PeriodUnit::Month.advance(month_end, 1);
            let mut periods: Vec<Period> = (0..12)
                .rev()
                .map(|k| Period::new(month_end.add_months(-k - 1), month_end.add_months(-k)))
                .collect();
            periods.push(p);
            let usage = tenure_analytics::usage_stats(
                &dir,
                &engine(&cfg),
                &periods,
                &advanced(&cfg),
                ledger.as_of,
                Some(&id),
            )?;
            let trend: Vec<report::UsageMonth> = periods[..12]
                .iter()
                .zip(&usage)
                .map(|(m, u)| {
                    let u = u.get(&id).cloned().unwrap_or_default();
                    report::UsageMonth { month: *m, events: u.events, mau: u.mau }
                })
                .collect();
            let rows = tenure_kpi::report_with_usage(
                &ledger,
                &[p],
                Some(&By::Account),
                &cfg.kpi,
                &usage[12..],
            );
            out(&report::account(
                &ledger.accounts[0],
                &rows[0],
                &trend,
                cfg.revenue.fx.base,
                as_of,
                format,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Sql { data, query, format, as_of: at, timeout, memory_limit } => {
            let dir = existing_data_dir(&data)?;
            let cfg = config(&data)?;
            refresh_columnar(&dir, &cfg)?;
            // The ledger's tables take a fold of the log: made only for a query that reads one.
            let base = cfg.revenue.fx.base;
            let ledger_names: Vec<String> =
                tenure_analytics::ledger_tables(&tenure_ledger::Ledger::default(), base, &[])?
                    .into_iter()
                    .map(|t| t.name)
                    .collect();
            let reads_ledger = tenure_analytics::tables_read(&query)
                .is_some_and(|t| t.iter().any(|n| ledger_names.contains(n)));
            let at = as_of(&at)?;
            let tables = if reads_ledger { ledger_tables(&dir, &cfg, at)? } else { Vec::new() };
            let limits = tenure_analytics::SqlLimits {
                timeout: Some(timeout).filter(|t| !t.is_zero()),
                memory: Some(usize::try_from(memory_limit).unwrap_or(usize::MAX))
                    .filter(|m| *m > 0),
            };
            let q = match tenure_analytics::run_sql(&dir, &engine(&cfg), tables, &query, limits) {
                Ok(q) => q,
                Err(tenure_analytics::QueryError::Invalid(m)) => bail!(usage(format!("SQL: {m}"))),
                Err(e @ tenure_analytics::QueryError::Timeout(_)) => {
                    bail!(LimitHit(format!("{e} (raise --timeout, or 0 for none)")))
                }
                Err(e @ tenure_analytics::QueryError::Memory { .. }) => {
                    bail!(LimitHit(format!("{e} (raise --memory-limit, or 0 for none)")))
                }
                Err(e) => return Err(e.into()),
            };
            out(&report::batches(&q.batches, format)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Export { data, format: ExportFormat::Parquet, out: to, as_of: at } => {
            let dir = existing_data_dir(&data)?;
            let cfg = config(&data)?;
            refresh_columnar(&dir, &cfg)?;
            let tables = ledger_tables(&dir, &cfg, as_of(&at)?)?;
            for (name, rows) in tenure_analytics::export_parquet(&dir, &engine(&cfg), tables, &to)?
            {
                eprintln!(
                    "{:<18} {rows:>12} rows -> {}",
                    name,
                    to.join(format!("{name}.parquet")).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Renewals { data, period, open, format, as_of: at } => {
            let p = Period::parse(&period).map_err(|e| usage(format!("--period: {e}")))?;
            let cfg = config(&data)?;
            let ledger = tenure_engine::ledger_with(
                &existing_data_dir(&data)?,
                &cfg,
                as_of(&at)?,
                tenure_engine::Scope::REVENUE,
            )?;
            let mut list: Vec<(&str, &tenure_ledger::Renewal)> = ledger
                .accounts
                .iter()
                .flat_map(|a| a.renewals.iter().map(move |r| (a.id.as_str(), r)))
                .filter(|(_, r)| {
                    p.contains(r.due) && (!open || r.outcome == tenure_ledger::RenewalOutcome::Open)
                })
                .collect();
            list.sort_by_key(|(a, r)| (r.due, *a));
            out(&report::renewals(&list, cfg.revenue.fx.base, format))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gen(g) => {
            gen_company(&g)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo { data, accounts, months, seed, listen, no_serve } => {
            demo(data, accounts, months, seed, (!no_serve).then_some(listen))
        }
        Cmd::Stats { cmd } => stats::run(cmd).map(|()| ExitCode::SUCCESS),
        Cmd::Health(a) => health::health(a).map(|()| ExitCode::SUCCESS),
        Cmd::Forecast(a) => forecast::run(a).map(|()| ExitCode::SUCCESS),
        Cmd::Key { cmd } => key(cmd).map(|()| ExitCode::SUCCESS),
        Cmd::User { cmd } => user(cmd).map(|()| ExitCode::SUCCESS),
        Cmd::Audit { data, from, to, format } => audit(&data, from, to, format),
        Cmd::Cluster {
            cmd: ClusterCmd::Scheduler { bind, external_host, task_distribution, verbose },
        } => {
            eprintln!("Ballista scheduler listening on {bind} (Ctrl-C stops)");
            let round_robin = task_distribution == TaskDistribution::RoundRobin;
            let o =
                tenure_analytics::SchedulerOptions { bind, external_host, round_robin, verbose };
            tenure_analytics::run_scheduler(o)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cluster { cmd: ClusterCmd::Executor(a) } => {
            let s = tenure_engine::Scheduler::parse(&a.scheduler)
                .map_err(|e| usage(format!("--scheduler: {e}")))?;
            let (bind_host, port, grpc_port) = (a.bind_host, a.port, a.grpc_port);
            eprintln!(
                "Ballista executor on {bind_host}:{port} (gRPC {grpc_port}), scheduler {}:{} \
                 (Ctrl-C stops)",
                s.host, s.port
            );
            let work_dir = a
                .work_dir
                .unwrap_or_else(|| std::env::temp_dir().join(format!("tenure-executor-{port}")));
            let o = tenure_analytics::ExecutorOptions {
                scheduler_host: s.host,
                scheduler_port: s.port,
                bind_host,
                external_host: a.external_host,
                port,
                grpc_port,
                cores: a.cores,
                work_dir,
                memory: a.memory,
                verbose: a.verbose,
            };
            tenure_analytics::run_executor(o)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Serve { data, listen, max_request_bytes } => {
            let cfg = config(&data)?;
            let dir = data_dir(&data);
            let file = data
                .config
                .clone()
                .or_else(|| Some(dir.join("tenure.toml")).filter(|p| p.is_file()));
            let service = match &file {
                Some(p) => {
                    let text = std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    tenure_server::ServiceConfig::parse(&text)
                        .map_err(|e| usage(format!("{}: {e}", p.display())))?
                }
                None => tenure_server::ServiceConfig::default(),
            };
            let mut o = tenure_server::Options::new(std::sync::Arc::new(now));
            o.ingest = cfg.ingest(None);
            o.engine = cfg;
            o.limits.request_bytes = max_request_bytes;
            o.config = service;
            tenure_server::run(&dir, &listen, o, |addr| {
                eprintln!("tenure: serving {} on http://{addr}", dir.display());
            })
            .map_err(usage)?;
            eprintln!("tenure: stopped; every acknowledged event is on disk");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Risk(a) => health::risk(a).map(|()| ExitCode::SUCCESS),
        Cmd::Model { cmd } => health::model(cmd).map(|()| ExitCode::SUCCESS),
        Cmd::Survival(a) => health::survival(a).map(|()| ExitCode::SUCCESS),
        Cmd::Clv(a) => health::clv(a).map(|()| ExitCode::SUCCESS),
        Cmd::Verify { data, format } => verify(&existing_data_dir(&data)?, format),
        Cmd::Repair { data, yes, format } => repair(&existing_data_dir(&data)?, yes, format),
        Cmd::Status { data } => {
            let stats = tenure_engine::log_stats(&data_dir(&data))?;
            if stats.is_empty() {
                out("the log is empty\n")?;
            }
            for (lane, n) in stats {
                out(&format!("{lane:<20} {n:>12}\n"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn key(cmd: KeyCmd) -> Result<()> {
    use tenure_server::keys::{Keys, Scope};
    match cmd {
        KeyCmd::Create { data, scope, name } => {
            let dir = data_dir(&data);
            let scopes = scope
                .iter()
                .map(|s| {
                    Scope::parse(s.trim()).ok_or_else(|| {
                        usage(format!("--scope {s:?}: ingest, read, write or admin"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut keys = Keys::load(&dir)?;
            let (k, secret) = keys.create(&name, &scopes, &now().to_string())?;
            keys.save(&dir)?;
            record_change(&dir, "key.create", &k.id, format!("{name}: {}", scope.join(",")))?;
            eprintln!("created key {} ({}); the secret is shown once:", k.id, scope.join(","));
            out(&format!("{secret}\n"))
        }
        KeyCmd::List { data } => {
            let keys = Keys::load(&data_dir(&data))?;
            let mut s =
                format!("{:<14} {:<20} {:<18} {:<8} created\n", "id", "name", "scopes", "status");
            for k in &keys.keys {
                let scopes: Vec<String> =
                    k.scopes.iter().map(|s| format!("{s:?}").to_lowercase()).collect();
                s.push_str(&format!(
                    "{:<14} {:<20} {:<18} {:<8} {}\n",
                    k.id,
                    k.name,
                    scopes.join(","),
                    if k.revoked { "revoked" } else { "active" },
                    k.created
                ));
            }
            out(&s)
        }
        KeyCmd::Revoke { data, id } => {
            let dir = data_dir(&data);
            let mut keys = Keys::load(&dir)?;
            keys.revoke(&id).map_err(|e| usage(e.to_string()))?;
            keys.save(&dir)?;
            record_change(&dir, "key.revoke", &id, String::new())?;
            eprintln!("revoked key {id}");
            Ok(())
        }
    }
}

/// Who acts on the command line: the operating system's user (`cli:NAME`).
fn cli_identity() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_default();
    if user.is_empty() { "cli".into() } else { format!("cli:{user}") }
}

/// Records a change to people or keys in DATA/audit.jsonl.
fn record_change(dir: &Path, action: &str, target: &str, detail: String) -> Result<()> {
    let e = tenure_engine::audit::Entry {
        at: now().to_string(),
        who: cli_identity(),
        action: action.into(),
        account: None,
        target: Some(target.into()),
        detail,
    };
    tenure_engine::audit::record(dir, &e)?;
    Ok(())
}

fn audit(
    data: &DataArgs,
    from: Option<String>,
    to: Option<String>,
    format: OutFormat,
) -> Result<ExitCode> {
    let dir = existing_data_dir(data)?;
    let when = |v: &Option<String>, flag: &str| -> Result<Option<Timestamp>> {
        v.as_deref()
            .map(|s| Timestamp::parse(s).map_err(|e| usage(format!("{flag} {s:?}: {e}"))))
            .transpose()
    };
    let entries = tenure_engine::audit::audit(&dir, when(&from, "--from")?, when(&to, "--to")?)?;
    match format {
        OutFormat::Csv => out(&tenure_engine::audit::to_csv(&entries))?,
        OutFormat::Json => out(&(serde_json::to_string_pretty(&entries)? + "\n"))?,
        OutFormat::Table => {
            let mut s = format!(
                "{:<21} {:<24} {:<14} {:<12} {:<22} detail\n",
                "at", "who", "action", "account", "target"
            );
            for e in &entries {
                s += &format!(
                    "{:<21} {:<24} {:<14} {:<12} {:<22} {}\n",
                    e.at,
                    e.who,
                    e.action,
                    e.account.as_deref().unwrap_or("-"),
                    e.target.as_deref().unwrap_or("-"),
                    e.detail
                );
            }
            s += &format!("{} changes\n", entries.len());
            out(&s)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first line of standard input, checked as a password.
fn password_from_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if let Some(why) = tenure_server::users::password_problem(&p) {
        bail!(usage(why));
    }
    Ok(p)
}

fn user(cmd: UserCmd) -> Result<()> {
    use tenure_server::keys::Keys;
    use tenure_server::users::{Role, hash_password};
    let role_of = |r: &str| {
        Role::parse(r.trim())
            .ok_or_else(|| usage(format!("--role {r:?}: admin, manager, csm or viewer")))
    };
    let known = |e: tenure_server::keys::KeyError| match e {
        tenure_server::keys::KeyError::Unknown(_) | tenure_server::keys::KeyError::Invalid(_) => {
            usage(e.to_string())
        }
        e => anyhow::Error::from(e),
    };
    match cmd {
        UserCmd::Add { data, name, email, role, team, alias, password_stdin } => {
            let dir = data_dir(&data);
            let role = role_of(&role)?;
            let password = if password_stdin { Some(password_from_stdin()?) } else { None };
            let mut keys = Keys::load(&dir)?;
            let u = keys
                .add_user(&name, &email, role, team.as_deref(), &now().to_string())
                .map_err(known)?;
            let id = u.id.clone();
            let entry = keys.user_mut(&id).map_err(known)?;
            entry.aliases = alias.into_iter().filter(|a| !a.trim().is_empty()).collect();
            if let Some(p) = password {
                entry.password = Some(hash_password(&p).map_err(anyhow::Error::msg)?);
            }
            let has_password = entry.password.is_some();
            keys.save(&dir)?;
            let team = u.team.as_deref().map_or(String::new(), |t| format!(", team {t}"));
            record_change(&dir, "user.add", &u.email, format!("role {}{team}", role.as_str()))?;
            eprintln!("added {} ({}, {})", u.email, role.as_str(), id);
            if !has_password {
                eprintln!(
                    "no password yet: `tenure user password {} --data {}` reads one from standard input",
                    u.email,
                    dir.display()
                );
            }
            out(&format!("{id}\n"))
        }
        UserCmd::Set { data, who, role, team, alias } => {
            let dir = data_dir(&data);
            let mut keys = Keys::load(&dir)?;
            let role = role.as_deref().map(role_of).transpose()?;
            let u = keys.user_mut(&who).map_err(known)?;
            if let Some(r) = role {
                u.role = r;
            }
            if let Some(t) = team {
                u.team = Some(t.trim().to_string()).filter(|t| !t.is_empty());
            }
            if let Some(a) = alias {
                u.aliases = a.into_iter().filter(|a| !a.trim().is_empty()).collect();
            }
            let detail = format!(
                "role {}, team {}, aliases [{}]",
                u.role.as_str(),
                u.team.as_deref().unwrap_or("-"),
                u.aliases.join(", ")
            );
            let email = u.email.clone();
            keys.save(&dir)?;
            record_change(&dir, "user.change", &email, detail)?;
            eprintln!("changed {email}");
            Ok(())
        }
        UserCmd::Password { data, who } => {
            let dir = data_dir(&data);
            let p = password_from_stdin()?;
            let mut keys = Keys::load(&dir)?;
            let u = keys.user_mut(&who).map_err(known)?;
            u.password = Some(hash_password(&p).map_err(anyhow::Error::msg)?);
            let email = u.email.clone();
            keys.save(&dir)?;
            record_change(&dir, "user.password", &email, String::new())?;
            eprintln!("password set for {email}");
            Ok(())
        }
        UserCmd::Token { data, who } => {
            let dir = data_dir(&data);
            let mut keys = Keys::load(&dir)?;
            let secret = keys.new_token(&who).map_err(known)?;
            keys.save(&dir)?;
            record_change(&dir, "user.token", &who, String::new())?;
            eprintln!("a personal API token for {who}, shown once; it sees what they see:");
            out(&format!("{secret}\n"))
        }
        UserCmd::Disable { data, who } => set_disabled(&data, &who, true),
        UserCmd::Enable { data, who } => set_disabled(&data, &who, false),
        UserCmd::List { data } => {
            let keys = Keys::load(&data_dir(&data))?;
            let mut s = format!(
                "{:<16} {:<24} {:<28} {:<8} {:<12} {:<9} {:<6} status\n",
                "id", "name", "email", "role", "team", "password", "token"
            );
            for u in &keys.users {
                s.push_str(&format!(
                    "{:<16} {:<24} {:<28} {:<8} {:<12} {:<9} {:<6} {}\n",
                    u.id,
                    u.name,
                    u.email,
                    u.role.as_str(),
                    u.team.as_deref().unwrap_or("-"),
                    if u.password.is_some() { "set" } else { "none" },
                    if u.token.is_some() { "yes" } else { "no" },
                    if u.disabled { "disabled" } else { "active" }
                ));
            }
            out(&s)
        }
    }
}

fn set_disabled(data: &DataArgs, who: &str, disabled: bool) -> Result<()> {
    use tenure_server::keys::{KeyError, Keys};
    let dir = data_dir(data);
    let mut keys = Keys::load(&dir)?;
    let u = keys.user_mut(who).map_err(|e| match e {
        KeyError::Unknown(_) => usage(e.to_string()),
        e => anyhow::Error::from(e),
    })?;
    u.disabled = disabled;
    let email = u.email.clone();
    keys.save(&dir)?;
    record_change(
        &dir,
        if disabled { "user.disable" } else { "user.enable" },
        &email,
        String::new(),
    )?;
    eprintln!("{} {email}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}

/// A bar counting `len` things (`unit`) on standard error when it is a terminal.
pub(crate) fn count_bar(len: u64, what: &str, unit: &str) -> ProgressBar {
    let pb =
        if std::io::stderr().is_terminal() { ProgressBar::new(len) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb
}

pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let pb =
        if std::io::stderr().is_terminal() { ProgressBar::new(len) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:20} [{bar:30}] {percent:>3}% {binary_bytes:>10}/{binary_total_bytes} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// What `tenure import` was asked to do with its files.
struct ImportHow<'a> {
    kind: Option<EventKind>,
    from: Option<Source>,
    map: Option<&'a str>,
    stripe: tenure_stripe::Options,
    acks: bool,
    refresh: bool,
}

fn import(data: &Path, cfg: &Config, files: &[PathBuf], how: &ImportHow<'_>) -> Result<ExitCode> {
    let ImportHow { kind, from, map, acks, refresh, .. } = *how;
    let mapping = match map {
        Some(m) => Some(sources::load_mapping(m)?),
        None => None,
    };
    if from == Some(Source::Stripe) {
        if let Some(missing) = files.iter().find(|p| !p.exists()) {
            bail!(usage(format!("{}: no such file or folder", missing.display())));
        }
    } else if let Some(missing) = files.iter().find(|p| p.as_os_str() != "-" && !p.is_file()) {
        // A mistyped file name is a usage error, found before anything is imported.
        bail!(usage(format!("{}: no such file", missing.display())));
    }
    let (mut importer, report) = Importer::open(data, cfg.ingest(Some(now())))
        .with_context(|| format!("opening the log in {}", data.display()))?;
    for line in report.lines() {
        eprintln!("log recovery: {line}");
    }
    if from == Some(Source::Stripe) {
        let code = sources::import_stripe(&mut importer, files, &how.stripe, acks)?;
        drop(importer);
        if refresh && let Err(e) = refresh_columnar(data, cfg) {
            eprintln!("warning: {e:#}");
        }
        return Ok(code);
    }
    let mut total_rejected = 0;
    let started = Instant::now();
    let mut total_events = 0;
    for path in files {
        let stdin = path.as_os_str() == "-";
        let name = if stdin { "stdin".to_string() } else { path.display().to_string() };
        let ext = |e: &str| !stdin && path.extension().is_some_and(|x| x.eq_ignore_ascii_case(e));
        // A Parquet file is never read as text, whatever its name: its magic number decides.
        let is_parquet = !stdin && starts_with_par1(path);
        let src = match from {
            Some(s) => s,
            None if is_parquet => Source::Parquet,
            None if ext("csv") => Source::Csv,
            None if ext("parquet") => Source::Parquet,
            None => Source::Jsonl,
        };
        if stdin && src == Source::Parquet {
            bail!(usage("Parquet cannot be read from stdin: name the file"));
        }
        if is_parquet && matches!(src, Source::Jsonl | Source::Csv) {
            // One line, rather than one "not valid UTF-8" rejection per binary line.
            eprintln!("{name}: rejected: this is a Parquet file; use --from parquet");
            total_rejected += 1;
            continue;
        }
        let file_kind =
            kind.or_else(|| if stdin { None } else { tenure_ingest::kind_from_file_name(&name) });
        // JSONL rows name their type; a file name only fills in rows that do not.
        let t0 = Instant::now();
        let len = if stdin {
            0
        } else {
            std::fs::metadata(path)
                .map(|m| m.len())
                .with_context(|| format!("cannot read {name}"))?
        };
        let pb = bar(len, &name);
        let mut on_reject = |r: &tenure_ingest::Rejection| {
            pb.suspend(|| match &r.field {
                Some(f) => eprintln!("{name}:{}: {f}: {}", r.line, r.reason),
                None => eprintln!("{name}:{}: {}", r.line, r.reason),
            });
        };
        let mut on_commit = |p: &tenure_engine::Progress| {
            pb.set_position(p.bytes);
            if acks {
                eprintln!("acked {}", p.lines);
            }
        };
        let result = match (&mapping, src) {
            (None, Source::Jsonl | Source::Csv) => {
                let fmt = if src == Source::Csv { Format::Csv } else { Format::Jsonl };
                if stdin {
                    importer.import(
                        std::io::stdin(),
                        fmt,
                        file_kind,
                        &mut on_reject,
                        &mut on_commit,
                    )
                } else {
                    let f =
                        std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
                    importer.import(f, fmt, file_kind, &mut on_reject, &mut on_commit)
                }
            }
            _ => {
                match sources::open_rows(path, src == Source::Parquet, mapping.as_ref(), file_kind)
                {
                    Ok(mut rows) => {
                        if let Some(total) = rows.total() {
                            pb.set_length(total);
                        }
                        let r = importer.import_rows(&mut *rows, &mut on_reject, &mut on_commit);
                        if rows.skipped() > 0 {
                            pb.suspend(|| {
                                let n = rows.skipped();
                                let s = if n == 1 { "" } else { "s" };
                                eprintln!("{name}: {n} row{s} skipped by the mapping's skip rules")
                            });
                        }
                        r
                    }
                    Err(e) => {
                        pb.finish_and_clear();
                        eprintln!("{name}: rejected: {e:#}");
                        total_rejected += 1;
                        continue;
                    }
                }
            }
        };
        pb.finish_and_clear();
        let s = match result {
            // A file whose header says nothing we can read is rejected whole; the others go on.
            Err(tenure_engine::ImportError::Csv(e)) => {
                eprintln!("{name}: rejected: {e}");
                total_rejected += 1;
                continue;
            }
            r => r.with_context(|| format!("importing {name}"))?,
        };
        let p = &s.progress;
        let secs = t0.elapsed().as_secs_f64();
        let events = p.accepted + p.duplicates;
        total_events += events;
        eprintln!(
            "{name}: {} stored, {} already present, {} rejected ({:.0} events/s)",
            p.accepted,
            p.duplicates,
            p.rejected,
            events as f64 / secs.max(1e-9)
        );
        total_rejected += p.rejected;
    }
    if files.len() > 1 {
        eprintln!(
            "total: {total_events} events in {:.2} s, {total_rejected} rejected",
            started.elapsed().as_secs_f64()
        );
    }
    drop(importer);
    // The import itself is stored and acknowledged: a failed refresh is reported, and the
    // next report tries again (and stops if it still fails).
    if refresh && let Err(e) = refresh_columnar(data, cfg) {
        eprintln!("warning: {e:#}");
    }
    Ok(if total_rejected > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}

/// Whether a file starts with Parquet's magic number (`PAR1`). An unreadable file is not
/// Parquet here: opening it reports the error.
fn starts_with_par1(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && &magic == b"PAR1"
}

fn gen_company(g: &GenArgs) -> Result<tenure_sim::Summary> {
    let start = match &g.start {
        Some(s) => {
            let p = Period::parse(s).map_err(|e| usage(format!("--start: {e}")))?;
            let (y, m, _) = p.start.ymd();
            (y as i32, m)
        }
        None => {
            // End the history with last month.
            let t = PeriodUnit::Month.floor(now()).add_months(-(g.months as i64));
            let (y, m, _) = t.ymd();
            (y as i32, m)
        }
    };
    let cfg = tenure_sim::SimConfig {
        accounts: g.accounts,
        months: g.months,
        seed: g.seed,
        start,
        usage_events: g.usage_events,
        format: match g.format {
            GenFormat::Jsonl | GenFormat::Stripe => tenure_sim::OutputFormat::Jsonl,
            GenFormat::Csv => tenure_sim::OutputFormat::Csv,
        },
    };
    let pb = count_bar(g.accounts, "generating", "accounts");
    let t0 = Instant::now();
    let s = tenure_sim::generate(&cfg, &g.out, &|n| pb.set_position(n)).map_err(|e| match e {
        tenure_sim::SimError::InvalidConfig(m) => usage(m),
        other => anyhow::Error::from(other),
    })?;
    pb.finish_and_clear();
    let total: u64 = s.events_by_type.values().sum();
    eprintln!(
        "generated {} accounts, {total} events in {:.1} s into {}",
        s.accounts,
        t0.elapsed().as_secs_f64(),
        g.out.display()
    );
    for (k, n) in &s.events_by_type {
        eprintln!("  {k:<18} {n:>10}");
    }
    if g.format == GenFormat::Stripe {
        let (y, m) = cfg.start;
        let horizon = Timestamp::from_ymd(y as i64, m, 1)
            .ok_or_else(|| usage("--start: not a month"))?
            .add_months(g.months as i64);
        return sources::gen_stripe(&g.out, s, horizon);
    }
    Ok(s)
}

fn demo(
    data: Option<PathBuf>,
    accounts: u64,
    months: u32,
    seed: u64,
    listen: Option<String>,
) -> Result<ExitCode> {
    let (dir, _tmp) = match data {
        Some(d) => (d, None),
        None => {
            let t = std::env::temp_dir().join(format!("tenure-demo-{}", std::process::id()));
            (t.clone(), Some(TempDir(t)))
        }
    };
    let company = dir.join("company");
    let summary = gen_company(&GenArgs {
        accounts,
        months,
        seed,
        out: company.clone(),
        usage_events: None,
        start: None,
        format: GenFormat::Jsonl,
    })?;
    let cfg = tenure_engine::load_config(&dir, None)?;
    let files: Vec<PathBuf> = summary
        .files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .cloned()
        .collect();
    let how = ImportHow {
        kind: None,
        from: None,
        map: None,
        stripe: Default::default(),
        acks: false,
        refresh: true,
    };
    let code = import(&dir, &cfg, &files, &how)?;
    if code != ExitCode::SUCCESS {
        eprintln!("warning: some generated rows were rejected");
    }
    let as_of = now();
    let ledger = tenure_engine::ledger(&dir, &cfg, as_of)?;
    let last_q = PeriodUnit::Quarter.floor(as_of).add_months(-3);
    let period = tenure_core::time::Period::new(last_q, last_q.add_months(3));
    let cur = cfg.revenue.fx.base;
    let label = PeriodUnit::Quarter.label(last_q);
    out(&format!(
        "Portfolio report for the sample company ({accounts} accounts), {label}, in {cur}\n\n"
    ))?;
    // The whole catalogue, usage and adoption included (the import refreshed the columnar
    // store).
    let usage = tenure_analytics::usage_stats(
        &dir,
        &engine(&cfg),
        &[period],
        &advanced(&cfg),
        ledger.as_of,
        None,
    )?;
    let rows = tenure_kpi::report_with_usage(&ledger, &[period], None, &cfg.kpi, &usage);
    out(&report::kpis_table(&rows, cur, std::slice::from_ref(&label)))?;
    out("\nBy segment:\n")?;
    let by = By::parse("segment");
    let seg = tenure_kpi::report_with_usage(&ledger, &[period], Some(&by), &cfg.kpi, &usage);
    let labels: Vec<String> = seg
        .iter()
        .map(|r| r.segment.clone().flatten().unwrap_or_else(|| "(none)".into()))
        .collect();
    out(&report::kpis_table(&seg, cur, &labels))?;
    if let Some(listen) = listen {
        out("\nTraining the churn model and backtesting it:\n")?;
        health::demo_models(&dir)?;
        out("\nForecasting renewals (this quarter, the next, and the last 8 backtested):\n")?;
        // A small demo may have too little history: the Renewals page then says so.
        if let Err(e) = forecast::demo(&dir) {
            eprintln!("no renewal forecast: {e:#}");
        }
        let mut keys = tenure_server::keys::Keys::load(&dir)?;
        let today = now().date_string();
        let (_, secret) = keys
            .create(
                "demo",
                &[tenure_server::keys::Scope::Read, tenure_server::keys::Scope::Write],
                &today,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        keys.save(&dir)?;
        let mut o = tenure_server::Options::new(std::sync::Arc::new(now));
        o.ingest = cfg.ingest(None);
        o.engine = cfg;
        tenure_server::run(&dir, &listen, o, |addr| {
            eprintln!(
                "\nThe dashboard: http://{addr}\nLog in with this key: {secret} (it reads and works tasks)\n(Ctrl-C stops the demo{})",
                if _tmp.is_some() { " and removes its data; --data DIR keeps it" } else { "" }
            );
        })
        .map_err(|e| anyhow::anyhow!(e))?;
        return Ok(ExitCode::SUCCESS);
    }
    if _tmp.is_some() {
        out("\nThe demo data was temporary. Keep it and explore:\n  tenure demo --data ./demo\n")?;
        out(&format!(
            "  tenure kpi --data ./demo --period {label} --by region\n  tenure cohorts --data ./demo --by quarter --metric revenue\n  tenure account --data ./demo acc-000001\n"
        ))?;
    } else {
        let d = dir.display();
        out(&format!(
            "\nData in {d}. Try:\n  tenure kpi --data {d} --period {label} --by region\n  tenure cohorts --data {d} --by quarter --metric revenue\n"
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the demo's scratch directory when the demo ends.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `tenure verify`: the log's full check; exit 4 when it finds anything.
fn verify(data: &Path, format: CheckFormat) -> Result<ExitCode> {
    let dir = tenure_engine::log_dir(data);
    if !dir.exists() {
        eprintln!("no event log in {} (nothing imported yet)", data.display());
        return Ok(ExitCode::SUCCESS);
    }
    let r = tenure_log::verify(&dir).with_context(|| format!("checking {}", dir.display()))?;
    match format {
        CheckFormat::Json => {
            let problems: Vec<serde_json::Value> = r
                .problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "kind": p.kind.as_str(),
                        "lane": p.lane,
                        "path": p.path.display().to_string(),
                        "offset": p.offset,
                        "reason": p.reason,
                    })
                })
                .collect();
            let v = serde_json::json!({
                "clean": r.is_clean(),
                "writer_running": r.writer_running,
                "lanes": r.lanes,
                "segments": r.segments,
                "records": r.records,
                "bytes": r.bytes,
                "key_indexes": r.indexes,
                "format_1_segments": r.legacy_segments,
                "problems": problems,
            });
            out(&format!("{v}\n"))?;
        }
        CheckFormat::Text => {
            let mut s = String::new();
            for p in &r.problems {
                s.push_str(&format!("{p}\n"));
            }
            out(&s)?;
            if r.writer_running {
                eprintln!(
                    "a writer (server or import) is running: the tails it is writing were not judged"
                );
            }
            eprintln!(
                "checked {} lanes, {} segments, {} records, {} bytes, {} key indexes: {}",
                r.lanes,
                r.segments,
                r.records,
                r.bytes,
                r.indexes,
                match r.problems.len() {
                    0 => "no problem".to_string(),
                    1 => "1 problem (`tenure repair` says what it would do)".to_string(),
                    n => format!("{n} problems (`tenure repair` says what it would do)"),
                }
            );
        }
    }
    Ok(if r.is_clean() { ExitCode::SUCCESS } else { ExitCode::from(DAMAGED) })
}

/// `tenure repair`: what the repair would do (exit 4 when there is anything), or, with
/// `--yes`, doing it.
fn repair(data: &Path, yes: bool, format: CheckFormat) -> Result<ExitCode> {
    let dir = tenure_engine::log_dir(data);
    if !dir.exists() {
        eprintln!("no event log in {} (nothing imported yet)", data.display());
        return Ok(ExitCode::SUCCESS);
    }
    let r =
        tenure_log::repair(&dir, yes).with_context(|| format!("repairing {}", dir.display()))?;
    // The columnar tables are derived by record position: once records left the log they
    // are rebuilt from it.
    let rebuilt = yes
        && !r.lanes_losing_records().is_empty()
        && tenure_analytics::discard(data).context("removing the columnar tables")?;
    match format {
        CheckFormat::Json => {
            let actions: Vec<serde_json::Value> = r
                .actions
                .iter()
                .map(|a| {
                    serde_json::json!({
                        "kind": a.kind.as_str(),
                        "lane": a.lane,
                        "path": a.path.display().to_string(),
                        "offset": a.offset,
                        "bytes": a.bytes,
                        "records_lost": a.records,
                        "acknowledged_lost": a.acknowledged,
                        "uncounted_lost": a.uncounted,
                        "reason": a.reason,
                    })
                })
                .collect();
            let v = serde_json::json!({
                "applied": r.applied,
                "records_lost": r.records_lost(),
                "acknowledged_lost": r.acknowledged_lost(),
                "columnar_removed": rebuilt,
                "actions": actions,
            });
            out(&format!("{v}\n"))?;
        }
        CheckFormat::Text => {
            let mut s = String::new();
            for a in &r.actions {
                s.push_str(&format!("{a}\n"));
            }
            out(&s)?;
            if r.is_empty() {
                eprintln!("nothing to repair");
            } else {
                eprintln!(
                    "{} {} readable records, {} of them possibly acknowledged{}",
                    if yes { "repaired; lost" } else { "a repair would lose" },
                    r.records_lost(),
                    r.acknowledged_lost(),
                    if r.actions.iter().any(|a| a.uncounted) {
                        ", and more that cannot be counted"
                    } else {
                        ""
                    }
                );
                if yes {
                    eprintln!(
                        "dropped bytes are in {}; importing the source files again restores dropped events",
                        dir.join(tenure_log::DROPPED_DIR).display()
                    );
                    if rebuilt {
                        eprintln!(
                            "the columnar tables were removed; the next report rebuilds them"
                        );
                    }
                } else {
                    eprintln!("nothing changed; run again with --yes to repair");
                }
            }
        }
    }
    Ok(if yes || r.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(DAMAGED) })
}
