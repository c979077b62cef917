//! `tenure health`, `tenure risk` and `tenure model`: scorecards, churn probabilities and the
//! model's backtest over a data directory (the computing is tenure-health's; this is IO).

use crate::report::{OutFormat, money_json};
use crate::{DataArgs, as_of, config, existing_data_dir, leave, out, refresh_columnar, usage};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rayon::prelude::*;
use serde_json::{Map, Value as Json, json};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use tenure_core::event::EventKind;
use tenure_core::time::{DAY, Period, PeriodUnit, Timestamp};
use tenure_engine::Config;
use tenure_engine::state::Marks;
use tenure_health::backtest::{self, Metrics, Truth};
use tenure_health::checkpoint::{self, Checkpoint, CheckpointError, UsageNow};
use tenure_health::features::{self, Context, DEFS, Outcome, Row};
use tenure_health::scorecard::{Reads, Score, Scorecards};
use tenure_health::{Model, UsageByAccount, UsageMonth};
use tenure_ledger::{AccountLedger, Ledger};

#[derive(Args)]
pub struct HealthArgs {
    #[command(flatten)]
    data: DataArgs,
    /// One account's score, measure by measure, and its monthly history
    #[arg(long)]
    account: Option<String>,
    /// Scorecards file [default: DATA/scorecards.toml when present, else the shipped ones]
    #[arg(long)]
    scorecards: Option<PathBuf>,
    /// Print the shipped scorecards (a starting point for DATA/scorecards.toml) and exit
    #[arg(long)]
    print_default_scorecards: bool,
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
    #[arg(long)]
    as_of: Option<String>,
    #[command(flatten)]
    state: StateArgs,
}

/// Where the accounts come from.
#[derive(Args)]
pub struct StateArgs {
    /// Fold the whole log afresh instead of reading the health state checkpoint
    /// (DATA/state/health.state, rebuilt whenever new events or settings make it stale);
    /// the figures are the same
    #[arg(long)]
    replay: bool,
}

#[derive(Args)]
pub struct RiskArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The accounts with the largest expected loss (0 = all)
    #[arg(long, default_value_t = 50)]
    top: usize,
    /// An account is at risk from this probability on (for the share of accounts and the
    /// MRR at risk) [`[risk] at_risk` in the configuration, 0.2: the dashboard's too]
    #[arg(long)]
    at_risk: Option<f64>,
    /// What to predict: `churn` reads DATA/models/churn.json, `renewal` (a contract due
    /// within the horizon is lost; only accounts with one are listed) reads
    /// DATA/models/renewal.json; without a saved model one is trained with --horizon
    #[command(flatten)]
    target: TargetArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
    #[arg(long)]
    as_of: Option<String>,
    #[command(flatten)]
    state: StateArgs,
}

/// What a model predicts, and over how long.
#[derive(Args)]
pub struct TargetArgs {
    /// Within this horizon of each snapshot: 90d, 13w, 6m, ...
    #[arg(long, default_value = "90d")]
    horizon: String,
    /// `churn`, or `renewal`: a contract due within the horizon is lost
    #[arg(long, default_value = "churn")]
    outcome: String,
}

impl TargetArgs {
    fn parse(&self) -> Result<(i64, Outcome)> {
        Ok((horizon_days(&self.horizon)?, outcome(&self.outcome)?))
    }
}

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Train the churn model (or with `--outcome renewal` the renewal model) on the whole
    /// history: gradient-boosted trees, logistic regressions and each scorecard with
    /// learned weights are compared on the latest snapshots and the best by log-loss is
    /// saved, with the verdict, as DATA/models/churn.json or renewal.json (and a dated copy)
    Train {
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        target: TargetArgs,
        /// Scorecards compared with the other learners, with learned weights [default:
        /// DATA/scorecards.toml when present, else the shipped ones]
        #[arg(long)]
        scorecards: Option<PathBuf>,
        /// auto: compare the learners and save the best (see docs/health.md); trees: the
        /// gradient-boosted trees alone, without a comparison (faster on large bases)
        #[arg(long, value_enum, default_value = "auto")]
        learner: LearnerArg,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Train on the snapshots before FROM, test on the month starts FROM..TO: the model, a
    /// logistic baseline and every scorecard on the same snapshots
    Backtest {
        #[command(flatten)]
        data: DataArgs,
        /// First test month, YYYY-MM (default: 12 months before the last month with outcomes)
        #[arg(long)]
        from: Option<String>,
        /// Last test month, YYYY-MM (default: the last month whose horizon has ended)
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
        /// Scorecards file [default: DATA/scorecards.toml when present, else the shipped ones]
        #[arg(long)]
        scorecards: Option<PathBuf>,
        /// The generator's truth.csv, for the oracle AUC and the driver check [default:
        /// DATA/company/truth.csv or DATA/truth.csv when present]
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutFormat,
        #[arg(long)]
        as_of: Option<String>,
    },
}

/// For `tenure demo`: trains and saves the churn model, then backtests it over the last
/// months with outcomes (the dashboard's model page reads the saved report).
pub fn demo_models(data: &Path) -> Result<()> {
    let args = || crate::DataArgs { data: Some(data.to_path_buf()), config: None };
    let target = || TargetArgs { horizon: "90d".into(), outcome: "churn".into() };
    // A small demo may have too little history for either: the dashboard then says so.
    if let Err(e) = model(ModelCmd::Train {
        data: args(),
        target: target(),
        scorecards: None,
        learner: LearnerArg::Auto,
        format: OutFormat::Table,
        as_of: None,
    }) {
        eprintln!("no churn model: {e:#}");
        return Ok(());
    }
    let r = model(ModelCmd::Backtest {
        data: args(),
        from: None,
        to: None,
        target: target(),
        scorecards: None,
        truth: None,
        format: OutFormat::Table,
        as_of: None,
    });
    if let Err(e) = r {
        eprintln!("no backtest: {e:#}");
    }
    Ok(())
}

fn outcome(s: &str) -> Result<Outcome> {
    Outcome::parse(s).ok_or_else(|| usage(format!("--outcome {s:?}: expected churn or renewal")))
}

/// A horizon in days: `90d`, `13w`, `3m` (a month counts 30 days) or a bare number of days.
pub fn horizon_days(s: &str) -> Result<i64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "d"),
    };
    let n: i64 =
        num.parse().map_err(|_| usage(format!("--horizon {s:?}: expected e.g. 90d, 13w or 3m")))?;
    let days = match unit {
        "d" => n,
        "w" => n * 7,
        "m" => n * 30,
        _ => bail!(usage(format!("--horizon {s:?}: the unit is d, w or m"))),
    };
    if days <= 0 {
        bail!(usage(format!("--horizon {s:?}: must be positive")));
    }
    Ok(days)
}

struct Data {
    dir: PathBuf,
    cfg: Config,
    ledger: Ledger,
    usage: UsageByAccount,
}

impl Data {
    fn load(d: &DataArgs, at: &Option<String>) -> Result<Data> {
        let cfg = config(d)?;
        let dir = existing_data_dir(d)?;
        let as_of = as_of(at)?;
        refresh_columnar(&dir, &cfg)?;
        let ledger = tenure_engine::ledger(&dir, &cfg, as_of)?;
        let names: Vec<String> = cfg.kpi.features.iter().map(|f| f.name.clone()).collect();
        let usage =
            tenure_analytics::usage_monthly(&dir, &crate::engine(&cfg), &names, ledger.as_of)?;
        Ok(Data { dir, cfg, ledger, usage })
    }

    fn ctx(&self) -> Context<'_> {
        Context { catalogue: &self.cfg.kpi.features, segment_key: "segment" }
    }
}

/// Every account as the health features read it at `t`: from a fold of the log at `t`, or
/// from the state checkpoint (`tenure_health::checkpoint`), which gives the same features.
struct Accounts {
    dir: PathBuf,
    cfg: Config,
    t: Timestamp,
    from: Source,
}

enum Source {
    Replay { ledger: Ledger, usage: UsageByAccount },
    State(Checkpoint<StateBytes>),
}

/// A checkpoint's bytes: its file (read a chunk at a time), or the memory it was just
/// made in (and is saved from meanwhile: [`saving`]).
enum StateBytes {
    File(std::fs::File, u64),
    Memory(std::sync::Arc<Vec<u8>>),
}

impl checkpoint::Source for StateBytes {
    fn size(&self) -> u64 {
        match self {
            StateBytes::File(_, n) => *n,
            StateBytes::Memory(b) => b.len() as u64,
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            StateBytes::File(f, _) => std::os::unix::fs::FileExt::read_exact_at(f, buf, offset),
            StateBytes::Memory(b) => checkpoint::Source::read_at(&**b, offset, buf),
        }
    }
}

/// Checkpoints being saved on threads of their own ([`saving`]); the process waits for
/// them before it ends ([`wait_for_saves`], from `main`).
static SAVES: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits for the checkpoints being saved: the process ends once each file is in place or
/// its failure is said.
pub(crate) fn wait_for_saves() {
    let saves = std::mem::take(&mut *SAVES.lock().unwrap_or_else(|p| p.into_inner()));
    for h in saves {
        let _ = h.join();
    }
}

/// `bytes`, a checkpoint just made, to answer from while a thread of its own saves them as
/// DATA/state/[`HEALTH_STATE`]: writing and syncing hundreds of megabytes (about a second
/// at a million accounts) overlaps the answer instead of preceding it.
fn saving(dir: &Path, bytes: Vec<u8>) -> StateBytes {
    let bytes = std::sync::Arc::new(bytes);
    let save = |d: PathBuf, b: std::sync::Arc<Vec<u8>>| {
        move || {
            if let Err(e) = tenure_engine::state::write(&d, HEALTH_STATE, &b) {
                eprintln!("health state: {e}; the checkpoint was not saved (this answer is whole)");
            }
        }
    };
    let thread = std::thread::Builder::new()
        .name("health-state-save".into())
        .spawn(save(dir.to_path_buf(), std::sync::Arc::clone(&bytes)));
    match thread {
        Ok(h) => SAVES.lock().unwrap_or_else(|p| p.into_inner()).push(h),
        // No thread to be had: saved before answering.
        Err(_) => save(dir.to_path_buf(), std::sync::Arc::clone(&bytes))(),
    }
    StateBytes::Memory(bytes)
}

/// The checkpoint's file under DATA/state/.
const HEALTH_STATE: &str = "health.state";

/// How long after the later of `as_of` and now a checkpoint answers (the derived instants,
/// term ends and the like, are folded that far).
const STATE_AHEAD: i64 = 92 * DAY;

impl Accounts {
    fn load(d: &DataArgs, at: &Option<String>, s: &StateArgs) -> Result<Accounts> {
        if s.replay {
            return Ok(Accounts::replay(Data::load(d, at)?));
        }
        let cfg = config(d)?;
        let dir = existing_data_dir(d)?;
        let t = as_of(at)?;
        // A current checkpoint holds the usage of its marks' usage lane: no refresh is
        // needed to read it.
        let c = checkpoint(&dir, &cfg, t, state_key(&cfg))?;
        Ok(Accounts { dir, cfg, t, from: Source::State(c) })
    }

    fn replay(d: Data) -> Accounts {
        let t = d.ledger.as_of;
        Accounts {
            dir: d.dir,
            cfg: d.cfg,
            t,
            from: Source::Replay { ledger: d.ledger, usage: d.usage },
        }
    }

    fn ctx(&self) -> Context<'_> {
        Context { catalogue: &self.cfg.kpi.features, segment_key: SEGMENT_KEY }
    }

    /// `f` of every account (and its monthly usage), in parallel; the results in the
    /// ledger's order.
    fn map<T: Send>(
        &self,
        f: impl Fn(&AccountLedger, &[UsageMonth]) -> Option<T> + Sync,
    ) -> Result<Vec<T>> {
        let parts = self.map_chunks(f)?;
        let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for p in parts {
            all.extend(p);
        }
        Ok(all)
    }

    /// As [`Accounts::map`], the results in blocks of accounts (in order), not copied once
    /// more into one vector.
    fn map_chunks<T: Send>(
        &self,
        f: impl Fn(&AccountLedger, &[UsageMonth]) -> Option<T> + Sync,
    ) -> Result<Vec<Vec<T>>> {
        self.map_blocks(f, |mut block| {
            block.shrink_to_fit();
            block
        })
    }

    /// As [`Accounts::map_chunks`], each block's results given to `g` on the thread that
    /// made them (`Checkpoint::map_blocks_at`); `g`'s results in order.
    fn map_blocks<T: Send, U: Send>(
        &self,
        f: impl Fn(&AccountLedger, &[UsageMonth]) -> Option<T> + Sync,
        g: impl Fn(Vec<T>) -> U + Sync,
    ) -> Result<Vec<U>> {
        let c = match &self.from {
            Source::Replay { ledger, usage } => return Ok(blocks(each(ledger, usage, &f), &g)),
            Source::State(c) => c,
        };
        let found = match c.map_blocks_at(self.t, &f, &g) {
            // Damage past the header shows only when its chunk is read.
            Err(e) if !matches!(e, CheckpointError::Rewritten(_)) => {
                self.refold(e)?.map_blocks_at(self.t, &f, &g)
            }
            found => found,
        };
        match found {
            Err(CheckpointError::Rewritten(id)) => {
                let (ledger, usage) = self.fold_at(&id)?;
                Ok(blocks(each(&ledger, &usage, &f), &g))
            }
            found => Ok(found?),
        }
    }

    /// A checkpoint found damaged while reading it, folded again.
    fn refold(&self, e: CheckpointError) -> Result<Checkpoint<StateBytes>> {
        let path = tenure_engine::state::dir(&self.dir).join(HEALTH_STATE);
        eprintln!("health state: {}: {e}; folding the log again", path.display());
        build(&self.dir, &self.cfg, self.t, state_key(&self.cfg))
    }

    /// The ledger and usage folded at `t` itself, for when the checkpoint's fold grouped an
    /// account's changes across `t` (rare: changes within the grouping window on both sides).
    fn fold_at(&self, id: &str) -> Result<(Ledger, UsageByAccount)> {
        let t = self.t;
        eprintln!(
            "health state: {id} has changes grouped across {t}, which only a fold at {t} \
             answers; folding the log"
        );
        refresh_columnar(&self.dir, &self.cfg)?;
        let ledger = tenure_engine::ledger(&self.dir, &self.cfg, t)?;
        let names: Vec<String> = self.cfg.kpi.features.iter().map(|f| f.name.clone()).collect();
        let engine = crate::engine(&self.cfg);
        Ok((ledger, tenure_analytics::usage_monthly(&self.dir, &engine, &names, t)?))
    }

    fn find(&self, id: &str) -> Result<Option<(AccountLedger, Vec<UsageMonth>)>> {
        // From the checkpoint, only the chunk that holds the account is read. When that
        // does not answer (no such account, damage, a fold rewritten around t), every
        // account is looked at as the reports do, which also sees to damage and rewrites.
        if let Source::State(c) = &self.from
            && let Ok(Some(found)) = c.find_at(self.t, id, |a, u| (a.clone(), u.to_vec()))
        {
            return Ok(Some(found));
        }
        let found = self.map(|a, u| (a.id == id).then(|| (a.clone(), u.to_vec())))?;
        Ok(found.into_iter().next())
    }
}

/// `f` of every account of a fold, in parallel; the results in the ledger's order.
fn each<T: Send>(
    ledger: &Ledger,
    usage: &UsageByAccount,
    f: &(impl Fn(&AccountLedger, &[UsageMonth]) -> Option<T> + Sync),
) -> Vec<T> {
    ledger
        .accounts
        .par_iter()
        .filter_map(|a| f(a, usage.get(&a.id).map_or(&[][..], |v| v.as_slice())))
        .collect()
}

/// `g` of `all` a block of 4,096 results at a time (about as a checkpoint's chunks), in
/// parallel; the results in order.
fn blocks<T: Send, U: Send>(all: Vec<T>, g: &(impl Fn(Vec<T>) -> U + Sync)) -> Vec<U> {
    let mut parts = Vec::with_capacity(all.len().div_ceil(4096));
    let mut rest = all.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(4096).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    parts.into_par_iter().map(g).collect()
}

/// The attribute whose value is an account's segment.
const SEGMENT_KEY: &str = "segment";

/// The lanes a health state checkpoint is folded from, as its marks note them: the
/// ledger's and the usage.
fn state_kinds() -> Vec<EventKind> {
    tenure_engine::REVENUE_KINDS
        .iter()
        .chain(tenure_engine::CS_KINDS)
        // Alerts, tasks and forecast calls are in the fold but no feature reads them: a
        // service raising alerts does not make the checkpoint stale.
        .filter(|k| !matches!(k, EventKind::Alert | EventKind::Task | EventKind::ForecastOverride))
        .chain([&EventKind::Usage])
        .copied()
        .collect()
}

/// What a health state checkpoint must have been folded with: the settings the fold and
/// the usage figures read, and this binary (a new build may fold differently). Where the
/// log stood is noted apart (`state::Marks`): a checkpoint of an older log is brought
/// forward.
fn state_key(cfg: &Config) -> Vec<u8> {
    let settings =
        format!("{}|{SEGMENT_KEY}|{:?}|{:?}", crate::build(), cfg.revenue, cfg.kpi.features);
    tenure_engine::state::digest(&settings).to_vec()
}

/// The health state checkpoint for `t`: the saved one when it is current (same log, same
/// settings, undamaged) and reaches `t`; else one folded now (at the later of `t` and now,
/// plus [`STATE_AHEAD`]) and saved for the next command.
fn checkpoint(
    dir: &Path,
    cfg: &Config,
    t: Timestamp,
    key: Vec<u8>,
) -> Result<Checkpoint<StateBytes>> {
    let path = tenure_engine::state::dir(dir).join(HEALTH_STATE);
    let path = path.display();
    // A file that cannot be read is folded again, as a damaged one is.
    let saved =
        tenure_engine::state::open(dir, HEALTH_STATE).map_err(anyhow::Error::from).and_then(|f| {
            Ok(f.map(|f| f.metadata().map(|m| StateBytes::File(f, m.len()))).transpose()?)
        });
    let saved = match saved {
        Ok(saved) => saved,
        Err(e) => {
            eprintln!("health state: {e:#}; folding the log again");
            return build(dir, cfg, t, key);
        }
    };
    match saved {
        None => eprintln!(
            "health state: folding the log into {path} (later commands read it until new events arrive)"
        ),
        Some(bytes) => match Checkpoint::open(bytes, &key) {
            Ok(c) if t <= c.valid_until() => match Marks::decode(c.position()) {
                Some(m) if m.current(dir)? => return Ok(c),
                Some(m) => match forward(dir, cfg, &key, &c, &m) {
                    Ok(Some(c)) => return Ok(c),
                    Ok(None) => {}
                    Err(e) => eprintln!("health state: {e:#}; folding the log again"),
                },
                None => eprintln!("health state: {path}: damaged marks; folding the log again"),
            },
            Ok(c) => eprintln!(
                "health state: {path} answers up to {}; folding the log again for {t}",
                c.valid_until()
            ),
            Err(CheckpointError::Key) => eprintln!(
                "health state: other settings or another build of tenure since {path} was made; \
                 folding the log again"
            ),
            Err(e) => eprintln!("health state: {path}: {e}; folding the log again"),
        },
    }
    build(dir, cfg, t, key)
}

/// Folds the log into a health state checkpoint for `t` (the columnar store brought up to
/// date first) and saves it.
fn build(dir: &Path, cfg: &Config, t: Timestamp, key: Vec<u8>) -> Result<Checkpoint<StateBytes>> {
    let marks = Marks::take(dir, &state_kinds())?;
    refresh_columnar(dir, cfg)?;
    let until = Timestamp(t.max(crate::now()).0.saturating_add(STATE_AHEAD));
    let ledger = tenure_engine::ledger(dir, cfg, until)?;
    let names: Vec<String> = cfg.kpi.features.iter().map(|f| f.name.clone()).collect();
    let usage = tenure_analytics::usage_monthly(dir, &crate::engine(cfg), &names, until)?;
    let bytes = checkpoint::encode(&key, &marks.encode(), &ledger, &usage, SEGMENT_KEY, until);
    drop((ledger, usage));
    Checkpoint::open(saving(dir, bytes), &key)
        .context("the health state checkpoint just made does not read back")
}

/// The checkpoint `c`, made when the log stood at `marks`, brought forward over the
/// records since: the accounts they change folded again (from the account index, at the
/// checkpoint's instant); if usage arrived, everyone's usage of the months from the
/// earliest new event's on read again (the earlier months kept); the rest kept.
/// `None` (said why) when folding the whole log is the better course: a lane rewritten,
/// or many accounts changed.
fn forward(
    dir: &Path,
    cfg: &Config,
    key: &[u8],
    c: &Checkpoint<StateBytes>,
    marks: &Marks,
) -> Result<Option<Checkpoint<StateBytes>>> {
    let started = std::time::Instant::now();
    let path = tenure_engine::state::dir(dir).join(HEALTH_STATE);
    // The new marks' fingerprints before the reader opens (a state noted older than it is
    // is only brought forward once more); their record counts from the same reader.
    let begun = Marks::begin(dir, &state_kinds())?;
    let log = tenure_engine::log_dir(dir);
    let mut lanes: Vec<&str> = tenure_engine::REVENUE_KINDS
        .iter()
        .chain(tenure_engine::CS_KINDS)
        .map(|k| tenure_engine::lane(*k))
        .collect();
    let usage_lane = tenure_engine::lane(EventKind::Usage);
    lanes.push(usage_lane);
    let reader = tenure_log::LogReader::open_lanes(&log, &lanes)?;
    let now = begun.finish(Some(&reader))?;
    let Some(from) = marks.tail(&reader) else {
        eprintln!(
            "health state: the log no longer holds what {} was folded from; folding it again",
            path.display()
        );
        return Ok(None);
    };
    use tenure_engine::EngineError::StaleIndex;
    use tenure_engine::accounts::{AccountIndex, fold_many, touched};
    let (mut index, _) = AccountIndex::current(dir, &reader)?;
    let ledger_from: Vec<(&str, u64)> =
        from.iter().filter(|(l, _)| l != usage_lane).map(|(l, n)| (l.as_str(), *n)).collect();
    // An index that does not fit the log is built again, once.
    let touched = match touched(&index, &reader, &ledger_from) {
        Err(StaleIndex(why)) => {
            index = AccountIndex::rebuild(dir, &reader, why)?;
            touched(&index, &reader, &ledger_from)?
        }
        t => t?,
    };
    // Folding an account alone reads its records one by one: past a quarter of the
    // accounts, one fold of the whole log is faster.
    if touched.len() > c.len() / 4 + 64 {
        eprintln!(
            "health state: new events for {} of {} accounts; folding the log again",
            touched.len(),
            c.len()
        );
        return Ok(None);
    }
    let until = c.valid_until();
    let usage_from = from.iter().find(|(l, _)| l == usage_lane).map_or(0, |(_, n)| *n);
    // Usage from this month on is read again (`None`: all of it).
    let read_usage = |since: Option<Timestamp>| -> Result<UsageByAccount> {
        refresh_columnar(dir, cfg)?;
        let names: Vec<String> = cfg.kpi.features.iter().map(|f| f.name.clone()).collect();
        let since = since.unwrap_or(Timestamp::MIN);
        Ok(tenure_analytics::usage_monthly_since(dir, &crate::engine(cfg), &names, since, until)?)
    };
    let mut usage: Option<(Option<Timestamp>, UsageByAccount)> =
        if reader.lane_len(usage_lane) > usage_from {
            let since = first_month(&reader, usage_lane, usage_from)?;
            Some((since, read_usage(since)?))
        } else {
            None
        };
    fn usage_now(u: &Option<(Option<Timestamp>, UsageByAccount)>) -> UsageNow<'_> {
        match u {
            None => UsageNow::Kept,
            Some((None, all)) => UsageNow::All(all),
            Some((Some(month), usage)) => UsageNow::Since { month: *month, usage },
        }
    }
    let ids: Vec<&str> = touched.iter().map(String::as_str).collect();
    let replace = match fold_many(&index, &reader, cfg, until, &ids) {
        Err(StaleIndex(why)) => {
            index = AccountIndex::rebuild(dir, &reader, why)?;
            fold_many(&index, &reader, cfg, until, &ids)?
        }
        r => r?,
    };
    let replace: Vec<AccountLedger> = replace.into_iter().map(|(a, _)| a).collect();
    let (mut bytes, joined) = c.forward(key, &now.encode(), &replace, usage_now(&usage))?;
    if joined > 0 && !matches!(usage, Some((None, _))) {
        // New accounts may have had usage before their first ledger event (and before the
        // earliest new usage): the checkpoint held none for them.
        usage = Some((None, read_usage(None)?));
        bytes = c.forward(key, &now.encode(), &replace, usage_now(&usage))?.0;
    }
    eprintln!(
        "health state: brought {} forward over the log's new records ({} account{} folded \
         again{}) in {:.1} s",
        path.display(),
        replace.len(),
        if replace.len() == 1 { "" } else { "s" },
        match &usage {
            None => String::new(),
            Some((None, _)) => ", all usage read again".to_string(),
            Some((Some(m), _)) =>
                format!(", usage from {} on read again", PeriodUnit::Month.label(*m)),
        },
        started.elapsed().as_secs_f64()
    );
    Ok(Some(
        Checkpoint::open(saving(dir, bytes), key)
            .context("the health state checkpoint just brought forward does not read back")?,
    ))
}

/// The month of the earliest usage event of `lane` from record `from` on: the usage of
/// earlier months is as it was. `None` when that month has no start a `Timestamp` holds
/// (an event before year 1 in an old log): then all usage is read again.
fn first_month(reader: &tenure_log::LogReader, lane: &str, from: u64) -> Result<Option<Timestamp>> {
    let mut first = Timestamp::MAX;
    reader
        .scan_from(lane, from, |_, _, payload| {
            let (_, ts, _) = tenure_core::codec::peek(payload).map_err(|e| e.to_string())?;
            first = first.min(ts);
            Ok::<(), String>(())
        })
        .map_err(|e| match e {
            tenure_log::ScanError::Log(l) => anyhow::Error::from(l),
            tenure_log::ScanError::Callback(why) => anyhow::anyhow!("a usage record: {why}"),
        })?;
    Ok(PeriodUnit::Month.checked_floor(first))
}

fn scorecards(dir: &Path, file: &Option<PathBuf>) -> Result<Scorecards> {
    let path = file.clone().or_else(|| Some(dir.join("scorecards.toml")).filter(|p| p.is_file()));
    match path {
        None => Ok(Scorecards::default_set()),
        Some(p) => {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            Scorecards::parse(&text).map_err(|e| usage(format!("{}: {e}", p.display())))
        }
    }
}

fn num(x: Option<f64>) -> Json {
    x.filter(|v| v.is_finite()).map_or(Json::Null, |v| json!(v))
}

fn fmt_opt(x: Option<f64>, digits: usize) -> String {
    x.filter(|v| v.is_finite()).map_or("n/a".into(), |v| format!("{v:.digits$}"))
}

/// The measures pulling a score down most (their shortfall from 100, weighted), in words.
fn health_drivers(s: &Score, cards: &tenure_health::Scorecard, top: usize) -> Vec<String> {
    let mut parts: Vec<(f64, usize)> = s
        .parts
        .iter()
        .zip(&cards.measures)
        .enumerate()
        .filter_map(|(i, (p, _))| {
            let score = p.score?;
            let short = p.weight * (100.0 - score);
            (score < 70.0 && short > 0.0).then_some((short, i))
        })
        .collect();
    // Stable: equal shortfalls keep the scorecard's order. Only the drivers shown are put
    // in words (a million accounts' every measure would be formatted otherwise).
    parts.sort_by(|a, b| b.0.total_cmp(&a.0));
    parts
        .into_iter()
        .take(top)
        .map(|(_, i)| {
            let (p, m) = (&s.parts[i], &cards.measures[i]);
            match (p.value, &m.reads) {
                (Some(v), Reads::Feature(f)) => (DEFS[*f].describe)(v),
                (Some(v), Reads::Dimension(_)) => format!("{} score {v:.0}", m.name),
                (None, _) => format!("{} unknown", m.name.replace('_', " ")),
            }
        })
        .collect()
}

pub fn health(a: HealthArgs) -> Result<()> {
    if a.print_default_scorecards {
        return out(tenure_health::scorecard::DEFAULT);
    }
    let d = Accounts::load(&a.data, &a.as_of, &a.state)?;
    let cards = scorecards(&d.dir, &a.scorecards)?;
    let ctx = d.ctx();
    let t = d.t;
    if let Some(id) = &a.account {
        let Some((acc, u)) = d.find(id)? else {
            bail!(usage(format!("no account {id:?} in the data")))
        };
        let Some(row) = features::snapshot(&acc, &u, t, &ctx) else {
            bail!(usage(format!("{id} is not a paying customer at {t}")));
        };
        let Some(card) = cards.for_row(&row) else {
            bail!(usage(format!("no scorecard applies to segment {:?}", row.segment)));
        };
        let s = card.score(&row);
        // The score at the last 12 month starts before t.
        let now_m = PeriodUnit::Month.floor(t);
        let last = if now_m < t { now_m } else { now_m.add_months(-1) };
        let history: Vec<(Timestamp, Option<f64>)> = (0..12)
            .rev()
            .map(|k| last.add_months(-k))
            .map(|m| (m, features::snapshot(&acc, &u, m, &ctx).and_then(|r| card.score(&r).value)))
            .collect();
        return out(&account_view(id, card, &s, &history, a.format));
    }
    let then_t = t.add_months(-3);
    // Each account's line (or JSON object) is made on the thread that scored it, while its
    // figures are in the caches: one allocation a row, where keeping the figures and the
    // drivers' texts for a second pass took five and fresh memory for all of them.
    let format = a.format;
    let blocks: Vec<Vec<Listed>> = d.map_chunks(|acc, u| {
        let row = features::snapshot(acc, u, t, &ctx)?;
        let card = cards.for_row(&row)?;
        let s = card.score(&row);
        let before = features::snapshot(acc, u, then_t, &ctx).and_then(|r| card.score(&r).value);
        let trend = s.value.zip(before).map(|(a, b)| a - b);
        let drivers = health_drivers(&s, card, 3);
        let (id, score, colour) = (acc.id.as_str(), s.value, s.colour);
        let out = match format {
            OutFormat::Json => Rendered::Json(json!({"account_id": id, "scorecard": card.name,
                "score": num(score), "colour": colour, "trend_3m": num(trend), "drivers": drivers})),
            OutFormat::Csv => {
                let mut l = String::with_capacity(96);
                let (score, trend) = (Tenths(score, false), Tenths(trend, false));
                let _ = write!(l, "{},{},{score},{colour},{trend},\"", csv_field(id), card.name);
                for (i, d) in drivers.iter().enumerate() {
                    l.push_str(if i == 0 { "" } else { "; " });
                    l.push_str(&d.replace('"', "\"\""));
                }
                l.push_str("\"\n");
                Rendered::Line(l)
            }
            OutFormat::Table => {
                let mut l = String::with_capacity(96);
                let (score, trend) = (Tenths(score, false), Tenths(trend, true));
                let _ = write!(l, "{id:<24} {:<10} {score:>6} {colour:<7} {trend:>7}  ", card.name);
                l.push_str(&drivers.join("; "));
                l.push('\n');
                Rendered::Line(l)
            }
        };
        Some(Listed { score, colour, out })
    })?;
    // The rows stay in their blocks: one vector of them all would be a single thread
    // copying them into fresh memory. They come in id order (as the accounts are held), so
    // a stable sort by score alone lists equal scores by id, without comparing ids.
    let mut rows: Vec<&Listed> = blocks.iter().flatten().collect();
    rows.par_sort_by(|a, b| a.score.unwrap_or(f64::MAX).total_cmp(&b.score.unwrap_or(f64::MAX)));
    let written = match a.format {
        OutFormat::Json => {
            let list: Vec<&Json> = rows
                .iter()
                .map(|r| match &r.out {
                    Rendered::Json(j) => j,
                    Rendered::Line(_) => unreachable!("JSON rows"),
                })
                .collect();
            let mut count = Map::new();
            for c in ["red", "yellow", "green", "grey"] {
                count.insert(c.into(), json!(rows.iter().filter(|r| r.colour == c).count()));
            }
            out(&format!(
                "{}\n",
                serde_json::to_string_pretty(
                    &json!({"as_of": t.to_string(), "colours": count, "accounts": list})
                )?
            ))
        }
        OutFormat::Csv => {
            out_rendered("account_id,scorecard,score,colour,trend_3m,drivers\n".to_string(), &rows)
        }
        OutFormat::Table => {
            let mut head =
                format!("Health at {t} ({} paying accounts, worst first)\n\n", rows.len());
            head.push_str(&format!(
                "{:<24} {:<10} {:>6} {:<7} {:>7}  drivers\n",
                "account", "scorecard", "score", "colour", "trend"
            ));
            out_rendered(head, &rows)
        }
    };
    leave(rows);
    leave(blocks);
    leave(d);
    written
}

/// An account's row of `tenure health`: what it is listed by, and its text.
struct Listed {
    score: Option<f64>,
    colour: &'static str,
    out: Rendered,
}

/// A row as its format writes it: a line of text, or an object of the JSON document.
enum Rendered {
    Line(String),
    Json(Json),
}

/// Writes `head`, then each row's line, through one buffer.
fn out_rendered(head: String, rows: &[&Listed]) -> Result<()> {
    let mut o = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    o.write_all(head.as_bytes())?;
    for r in rows {
        if let Rendered::Line(l) = &r.out {
            o.write_all(l.as_bytes())?;
        }
    }
    o.flush()?;
    Ok(())
}

/// A figure as `{:.1}` writes it (`{:+.1}` when `plus`), `n/a` when there is none or it is
/// not finite; padded as the format asks. The common case is written from the figure's
/// tenths as an integer: the general float formatter costs more than scoring an account.
struct Tenths(Option<f64>, bool);

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(v) = self.0.filter(|v| v.is_finite()) else { return f.pad("n/a") };
        let y = v * 10.0;
        let r = y.round();
        // `y` is within an ulp of the exact tenfold (under 0.002 below 1e13): unless it is
        // within 0.01 of a half, both round to the same integer. Near a half, and for a
        // negative figure that rounds to zero (written "-0.0"), the general formatter.
        if y.abs() < 1e13 && (y - r).abs() < 0.49 && !(r == 0.0 && v.is_sign_negative()) {
            let n = r as i64;
            // Digits from the right: tenths, the point, the units and up, the sign.
            let (mut buf, mut i, mut a) = ([0u8; 24], 24, n.unsigned_abs());
            for k in 0.. {
                i -= 1;
                buf[i] = if k == 1 { b'.' } else { b'0' + (a % 10) as u8 };
                if k != 1 {
                    a /= 10;
                }
                if k >= 2 && a == 0 {
                    break;
                }
            }
            if n < 0 || self.1 {
                i -= 1;
                buf[i] = if n < 0 { b'-' } else { b'+' };
            }
            return f.pad(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
        }
        f.pad(&if self.1 { format!("{v:+.1}") } else { format!("{v:.1}") })
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn account_view(
    id: &str,
    card: &tenure_health::Scorecard,
    s: &Score,
    history: &[(Timestamp, Option<f64>)],
    format: OutFormat,
) -> String {
    match format {
        OutFormat::Json => {
            let measures: Vec<Json> = s
                .parts
                .iter()
                .zip(&card.measures)
                .map(|(p, m)| {
                    json!({"measure": p.measure, "feature": match &m.reads {
                        Reads::Feature(f) => json!(DEFS[*f].name),
                        Reads::Dimension(_) => Json::Null,
                    }, "value": num(p.value),
                           "score": num(p.score), "weight": p.weight, "points": p.points})
                })
                .collect();
            let hist: Vec<Json> = history
                .iter()
                .map(|(m, v)| json!({"month": PeriodUnit::Month.label(*m), "score": num(*v)}))
                .collect();
            let j = json!({"account_id": id, "scorecard": card.name, "score": num(s.value), "colour": s.colour,
                           "measures": measures, "history": hist});
            format!("{}\n", serde_json::to_string_pretty(&j).unwrap_or_default())
        }
        _ => {
            let mut o = format!(
                "{id}: {} ({}), scorecard {}\n\n{:<26} {:>12} {:>7} {:>7} {:>7}\n",
                fmt_opt(s.value, 1),
                s.colour,
                card.name,
                "measure",
                "value",
                "score",
                "weight",
                "points"
            );
            for p in &s.parts {
                o.push_str(&format!(
                    "{:<26} {:>12} {:>7} {:>6.1}% {:>7.1}\n",
                    p.measure,
                    fmt_opt(p.value, 2),
                    fmt_opt(p.score, 0),
                    p.weight * 100.0,
                    p.points
                ));
            }
            o.push_str("\nHistory (month start):\n");
            for (m, v) in history {
                o.push_str(&format!("  {} {:>6}\n", PeriodUnit::Month.label(*m), fmt_opt(*v, 1)));
            }
            o
        }
    }
}

fn models_dir(dir: &Path) -> PathBuf {
    dir.join("models")
}

/// The saved model's name for an outcome: `churn`, or `renewal` (a lost renewal).
fn file_stem(o: Outcome) -> &'static str {
    match o {
        Outcome::Churn => "churn",
        Outcome::RenewalLost => "renewal",
    }
}

/// The model `tenure risk` reads for an outcome: DATA/models/churn.json or renewal.json.
fn model_file(dir: &Path, o: Outcome) -> PathBuf {
    models_dir(dir).join(format!("{}.json", file_stem(o)))
}

/// Trains on every month-start snapshot whose horizon has ended (of a sample of accounts
/// when that is more than `backtest::MAX_SNAPSHOTS`).
fn train_all(
    d: &Data,
    horizon: i64,
    outcome: Outcome,
    cards: &Scorecards,
    learner: LearnerArg,
) -> Result<Model> {
    let (at, keep) = backtest::training_months(&d.ledger, horizon)
        .ok_or_else(|| usage("no paying account in the data"))?;
    let s = backtest::labelled(&d.ledger, &d.usage, &at, horizon, outcome, &d.ctx(), &keep);
    let rows: Vec<&Row> = s.rows.iter().collect();
    match learner {
        LearnerArg::Auto => tenure_health::model::train(
            &rows,
            &s.label,
            &s.at,
            &s.account,
            horizon,
            outcome,
            Some(cards),
        ),
        LearnerArg::Trees => {
            tenure_health::model::train_trees(&rows, &s.label, &s.at, horizon, outcome)
        }
    }
    .map_err(|e| usage(e.to_string()))
}

/// Which learner `tenure model train` saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LearnerArg {
    Auto,
    Trees,
}

pub fn model(cmd: ModelCmd) -> Result<()> {
    match cmd {
        ModelCmd::Train { data, target, scorecards: sc, learner, format, as_of: at } => {
            let (horizon, o) = target.parse()?;
            let d = Data::load(&data, &at)?;
            let cards = scorecards(&d.dir, &sc)?;
            let m = train_all(&d, horizon, o, &cards, learner)?;
            let dir = models_dir(&d.dir);
            std::fs::create_dir_all(&dir)?;
            let stamp = d.ledger.as_of.to_string().replace([':', '-'], "");
            let name = file_stem(o);
            let dated = dir.join(format!("{name}-{}.json", &stamp[..stamp.len().min(15)]));
            let text = m.to_json();
            write_atomic(&dated, &text)?;
            write_atomic(&model_file(&d.dir, o), &text)?;
            let summary = json!({"model": dated.display().to_string(), "outcome": o.as_str(), "horizon_days": horizon,
                "n_snapshots": m.n_snapshots, "n_churned": m.n_churned, "trees": m.trees(),
                "first_snapshot": m.first_snapshot, "last_snapshot": m.last_snapshot,
                "selection": m.selection});
            match format {
                OutFormat::Json => out(&format!("{}\n", serde_json::to_string_pretty(&summary)?)),
                _ => out(&format!(
                    "trained on {} snapshots ({} {} within {horizon} days), {} to {}\n\n{}\n{}\nsaved {} (and models/{name}.json)\n",
                    m.n_snapshots,
                    m.n_churned,
                    if o == Outcome::Churn { "churned" } else { "lost a renewal due" },
                    m.first_snapshot,
                    m.last_snapshot,
                    selection_text(&m.selection),
                    m.selection.verdict,
                    dated.display()
                )),
            }
        }
        ModelCmd::Backtest { data, from, to, target, scorecards: sc, truth, format, as_of: at } => {
            let (horizon, o) = target.parse()?;
            let d = Data::load(&data, &at)?;
            let cards = scorecards(&d.dir, &sc)?;
            let month = |s: &str, what: &str| -> Result<Timestamp> {
                Period::parse(s).map(|p| p.start).map_err(|e| usage(format!("{what}: {e}")))
            };
            let last = PeriodUnit::Month.floor(Timestamp(d.ledger.as_of.0 - horizon * DAY));
            let to = match &to {
                Some(s) => month(s, "--to")?,
                None => last,
            };
            let from = match &from {
                Some(s) => month(s, "--from")?,
                None => to.add_months(-11),
            };
            if to < from {
                bail!(usage("--to is before --from"));
            }
            let truth_path = truth.or_else(|| {
                [d.dir.join("company/truth.csv"), d.dir.join("truth.csv")]
                    .into_iter()
                    .find(|p| p.is_file())
            });
            let truth = truth_path.as_deref().map(read_truth).transpose()?;
            let r = backtest::backtest(
                &d.ledger,
                &d.usage,
                &d.ctx(),
                from,
                to,
                horizon,
                o,
                &cards,
                truth.as_ref(),
            )
            .map_err(|e| usage(e.to_string()))?;
            let metrics_json = |m: &Metrics| {
                json!({"auc": num(m.auc), "pr_auc": num(m.pr_auc), "brier": num(m.brier), "ece": num(m.ece),
                       "lift_top_decile": num(m.lift_top_decile)})
            };
            let mut j = metrics_json(&r.model);
            let o = j.as_object_mut().expect("an object");
            o.insert("from".into(), json!(PeriodUnit::Month.label(from)));
            o.insert("to".into(), json!(PeriodUnit::Month.label(to)));
            o.insert("horizon_days".into(), json!(horizon));
            o.insert("n_snapshots".into(), json!(r.n_snapshots));
            o.insert("n_churned".into(), json!(r.n_churned));
            o.insert("n_train".into(), json!(r.n_train));
            o.insert("trees".into(), json!(r.trees));
            o.insert("selection".into(), json!(r.selection));
            o.insert("oracle_auc".into(), num(r.oracle_auc));
            let share = r.oracle_auc.zip(r.model.auc).map(|(o, a)| (a - 0.5) / (o - 0.5));
            o.insert("share_of_oracle".into(), num(share));
            o.insert("baseline".into(), r.baseline.as_ref().map_or(Json::Null, metrics_json));
            o.insert(
                "scorecards".into(),
                r.scorecards
                    .iter()
                    .zip(&r.learned)
                    .map(|((n, m), l)| {
                        let mut c = metrics_json(m);
                        let learned = l.as_ref().map_or(Json::Null, |(w, lm)| {
                            let mut j = metrics_json(lm);
                            j["weights"] = w
                                .iter()
                                .map(|(k, v)| (k.clone(), json!(v)))
                                .collect::<Map<_, _>>()
                                .into();
                            j["auc_gain"] = num(lm.auc.zip(m.auc).map(|(a, b)| a - b));
                            j
                        });
                        c["learned"] = learned;
                        (n.clone(), c)
                    })
                    .collect::<Map<_, _>>()
                    .into(),
            );
            o.insert(
                "drivers".into(),
                r.drivers.as_ref().map_or(Json::Null, |c| {
                    let share =
                        |k: usize| if c.n > 0 { json!(k as f64 / c.n as f64) } else { Json::Null };
                    let (t1, t3) =
                        c.trees.map_or((Json::Null, Json::Null), |(a, b)| (share(a), share(b)));
                    json!({"n": c.n, "top1_match": share(c.top1), "top3_match": share(c.top3),
                           "trees_top1_match": t1, "trees_top3_match": t3})
                }),
            );
            o.insert(
                "calibration".into(),
                r.model.calibration.iter().map(|b| json!({"n": b.n, "predicted": b.mean_score, "observed": b.positive_rate})).collect(),
            );
            o.insert("roc".into(), r.model.roc.iter().map(|(x, y)| json!([x, y])).collect());
            // The dashboard's model page shows the latest backtest.
            let dir = models_dir(&d.dir);
            std::fs::create_dir_all(&dir)?;
            write_atomic(&dir.join("backtest.json"), &serde_json::to_string_pretty(&j)?)?;
            match format {
                OutFormat::Json => out(&format!("{}\n", serde_json::to_string_pretty(&j)?)),
                _ => out(&backtest_text(&j)),
            }
        }
    }
}

/// The selection's comparison as a table, best first.
fn selection_text(s: &tenure_health::model::Selection) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.4}"));
    if s.candidates.is_empty() {
        return String::new();
    }
    let mut o = format!(
        "Learners fitted on {} snapshots, compared on the {} latest ({} churned):\n{:<52} {:>9} {:>8} {:>8}\n",
        s.fit_snapshots, s.validation_snapshots, s.validation_churned, "", "log-loss", "auc", "ece"
    );
    for c in &s.candidates {
        let mark = if c.name == s.chosen { "* " } else { "  " };
        o.push_str(&format!(
            "{mark}{:<50} {:>9.4} {:>8} {:>8}\n",
            c.name,
            c.log_loss,
            f(c.auc),
            f(c.ece)
        ));
    }
    o
}

fn backtest_text(j: &Json) -> String {
    let f = |v: &Json| v.as_f64().map_or("n/a".into(), |x| format!("{x:.4}"));
    let mut s = format!(
        "Backtest {} .. {}, churn within {} days: {} test snapshots ({} churned), trained on {}\n\n",
        j["from"].as_str().unwrap_or(""),
        j["to"].as_str().unwrap_or(""),
        j["horizon_days"],
        j["n_snapshots"],
        j["n_churned"],
        j["n_train"]
    );
    s.push_str(&format!(
        "{:<30} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "", "auc", "pr_auc", "brier", "ece", "lift@10%"
    ));
    let mut line = |name: &str, m: &Json| {
        s.push_str(&format!(
            "{:<30} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            name,
            f(&m["auc"]),
            f(&m["pr_auc"]),
            f(&m["brier"]),
            f(&m["ece"]),
            f(&m["lift_top_decile"])
        ));
    };
    line("model", j);
    if !j["baseline"].is_null() {
        line("logistic baseline", &j["baseline"]);
    }
    if let Some(cards) = j["scorecards"].as_object() {
        for (n, m) in cards {
            line(&format!("scorecard {n}"), m);
            if !m["learned"].is_null() {
                line(&format!("  {n}, learned weights"), &m["learned"]);
            }
        }
    }
    if let Some(v) = j["selection"]["verdict"].as_str() {
        s.push_str(&format!("\nmodel = the learner chosen on the training snapshots alone: {v}\n"));
    }
    if !j["oracle_auc"].is_null() {
        s.push_str(&format!(
            "\noracle AUC (the generator's true probabilities) {}; the model reaches {} of the way from 0.5\n",
            f(&j["oracle_auc"]),
            f(&j["share_of_oracle"])
        ));
    }
    if !j["drivers"].is_null() {
        s.push_str(&format!(
            "drivers: for {} snapshots the generator made unhealthy, the first driver names its cause in {}, the top three in {}\n",
            j["drivers"]["n"],
            f(&j["drivers"]["top1_match"]),
            f(&j["drivers"]["top3_match"])
        ));
        if !j["drivers"]["trees_top1_match"].is_null() {
            s.push_str(&format!(
                "  (the trees alone: the first driver in {}, the top three in {})\n",
                f(&j["drivers"]["trees_top1_match"]),
                f(&j["drivers"]["trees_top3_match"])
            ));
        }
    }
    s
}

pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The generator's `truth.csv`: `account_id,month,health,churn_probability,churned,cause`.
fn read_truth(path: &Path) -> Result<Truth> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut t = Truth::default();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let bad = || {
            usage(format!(
                "{}:{}: expected account_id,month,health,churn_probability,churned,cause",
                path.display(),
                i + 2
            ))
        };
        let (id, month, p, cause) = (
            rec.get(0).ok_or_else(bad)?,
            rec.get(1).ok_or_else(bad)?,
            rec.get(3).ok_or_else(bad)?,
            rec.get(5).ok_or_else(bad)?,
        );
        let m = Period::parse(month).map_err(|_| bad())?.start;
        let p: f64 = p.parse().map_err(|_| bad())?;
        t.months.insert((id.to_string(), m), (p, cause.to_string()));
    }
    Ok(t)
}

pub fn risk(a: RiskArgs) -> Result<()> {
    let (horizon, o) = a.target.parse()?;
    if let Some(p) = a.at_risk {
        at_risk_ok(p)?;
    }
    // Each outcome has its own saved model: `--outcome renewal` reads models/renewal.json.
    // Without one, a model is trained on the whole history: the log is folded anyway.
    let saved = model_file(&existing_data_dir(&a.data)?, o);
    let d = if saved.is_file() {
        Accounts::load(&a.data, &a.as_of, &a.state)?
    } else {
        let d = Data::load(&a.data, &a.as_of)?;
        let m = train_all(&d, horizon, o, &scorecards(&d.dir, &None)?, LearnerArg::Auto)?;
        eprintln!(
            "no saved model: trained one on {} snapshots (`tenure model train` saves it)",
            m.n_snapshots
        );
        return risk_with(&a, Accounts::replay(d), m);
    };
    let m = Model::from_json(&std::fs::read_to_string(&saved)?)
        .map_err(|e| usage(format!("{}: {e}", saved.display())))?;
    if m.outcome != o {
        bail!(usage(format!(
            "{} holds a {} model, not a {} one: run `tenure model train --outcome {}`",
            saved.display(),
            m.outcome.as_str(),
            o.as_str(),
            a.target.outcome
        )));
    }
    risk_with(&a, d, m)
}

fn at_risk_ok(p: f64) -> Result<f64> {
    if !(p > 0.0 && p < 1.0) {
        bail!(usage(format!("--at-risk {p}: expected a probability between 0 and 1")));
    }
    Ok(p)
}

fn risk_with(a: &RiskArgs, d: Accounts, m: Model) -> Result<()> {
    let at_risk = at_risk_ok(a.at_risk.unwrap_or(d.cfg.at_risk))?;
    let t = d.t;
    let ctx = d.ctx();
    let listed = if a.top == 0 { usize::MAX } else { a.top };
    // Each block of accounts is scored on the thread that read it, while its rows are in
    // the caches. A block keeps its accounts' figures, its segments' sums, and the rows of
    // its own largest losses: whichever accounts are listed are among those, and only
    // listed accounts need a row (for their drivers). A million rows are never held.
    let blocks: Vec<Block> = d.map_blocks(
        |acc, u| features::snapshot(acc, u, t, &ctx).map(|r| (acc.id.clone(), r)),
        |mut rows| {
            if m.outcome == Outcome::RenewalLost {
                // A renewal model speaks of contracts due within its horizon only.
                rows.retain(|(_, r)| r.get(features::F::DAYS_TO_RENEWAL) < m.horizon_days as f64);
            }
            let probability = m.predict(&rows.iter().map(|(_, r)| r).collect::<Vec<_>>());
            let mut by = SegmentSums::new();
            let mut scored: Vec<Scored> = rows
                .iter_mut()
                .zip(probability)
                .map(|((id, row), p)| {
                    let loss = (row.mrr as f64 * p).round() as i64;
                    let seg = row.segment.as_deref().unwrap_or("(none)");
                    match by.get_mut(seg) {
                        Some(e) => *e = (e.0 + 1, e.1 + row.mrr, e.2 + loss),
                        None => drop(by.insert(seg.to_string(), (1, row.mrr, loss))),
                    }
                    Scored { id: std::mem::take(id), p, mrr: row.mrr, loss, row: None }
                })
                .collect();
            let mut keep = vec![true; scored.len()];
            if listed < scored.len() {
                let mut order: Vec<usize> = (0..scored.len()).collect();
                order.select_nth_unstable_by(listed, |&i, &j| worse(&scored[i], &scored[j]));
                keep.fill(false);
                for &i in &order[..listed] {
                    keep[i] = true;
                }
            }
            for ((x, (_, row)), k) in scored.iter_mut().zip(rows).zip(keep) {
                if k {
                    x.row = Some(Box::new(row));
                }
            }
            Block { scored, by }
        },
    )?;
    let cur = d.cfg.revenue.fx.base;
    let mut list: Vec<&Scored> = blocks.iter().flat_map(|b| &b.scored).collect();
    let shown = listed.min(list.len());
    // Only the accounts listed need their order (what follows of the others are sums): the
    // largest losses are picked out, then sorted, rather than a million sorted.
    if shown < list.len() {
        list.select_nth_unstable_by(shown, |a, b| worse(a, b));
        list[..shown].sort_unstable_by(|a, b| worse(a, b));
    } else {
        list.par_sort_unstable_by(|a, b| worse(a, b));
    }
    let top_rows: Vec<&Row> = list[..shown]
        .iter()
        .map(|r| r.row.as_deref().expect("a block keeps the rows of its largest losses"))
        .collect();
    // Drivers (TreeSHAP, the costly part) only for the accounts listed.
    let drivers: Vec<Vec<String>> = m
        .explain(&top_rows, 3)
        .into_iter()
        .map(|(_, ds)| ds.into_iter().map(|d| d.text).collect())
        .collect();
    let (total_mrr, total_loss, risky, mrr_at_risk) = list
        .par_iter()
        .map(|r| {
            let at = r.p >= at_risk;
            (r.mrr, r.loss, usize::from(at), if at { r.mrr } else { 0 })
        })
        .reduce(|| (0, 0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3));
    let share = if list.is_empty() { Json::Null } else { json!(risky as f64 / list.len() as f64) };
    let mut by = SegmentSums::new();
    for b in &blocks {
        for (seg, (n, mrr, loss)) in &b.by {
            let e = by.entry(seg.clone()).or_default();
            e.0 += n;
            e.1 += mrr;
            e.2 += loss;
        }
    }
    let written = match a.format {
        OutFormat::Json => {
            let accounts: Vec<Json> = list[..shown]
                .iter()
                .zip(top_rows.iter().zip(&drivers))
                .map(|(r, (row, drivers))| json!({"account_id": r.id, "segment": row.segment, "probability": r.p,
                    "mrr": money_json(r.mrr, cur), "expected_loss": money_json(r.loss, cur), "drivers": drivers}))
                .collect();
            let segs: Vec<Json> = by
                .iter()
                .map(|(s, (n, mrr, loss))| json!({"segment": s, "accounts": n, "mrr": money_json(*mrr, cur), "expected_loss": money_json(*loss, cur)}))
                .collect();
            let j = json!({"as_of": t.to_string(), "outcome": m.outcome.as_str(), "horizon_days": m.horizon_days, "currency": cur.to_string(),
                "accounts_scored": list.len(), "mrr": money_json(total_mrr, cur), "expected_loss": money_json(total_loss, cur),
                "at_risk_threshold": at_risk, "accounts_at_risk": risky, "share_at_risk": share,
                "mrr_at_risk": money_json(mrr_at_risk, cur),
                "by_segment": segs, "accounts": accounts});
            out(&format!("{}\n", serde_json::to_string_pretty(&j)?))
        }
        _ => {
            let money = |m: i64| tenure_core::money::format_minor(m, cur);
            let what = match m.outcome {
                Outcome::Churn => "Churn risk",
                Outcome::RenewalLost => "Risk of a lost renewal (contracts due)",
            };
            let mut s = format!(
                "{what} within {} days at {t}: expected loss {} of {} MRR across {} accounts\n\n",
                m.horizon_days,
                money(total_loss),
                money(total_mrr),
                list.len()
            );
            s.push_str(&format!(
                "{} accounts at risk (probability >= {:.0}%) with {} MRR\n\n",
                risky,
                at_risk * 100.0,
                money(mrr_at_risk)
            ));
            s.push_str(&format!(
                "{:<24} {:>7} {:>12} {:>12}  drivers\n",
                "account", "risk", "MRR", "exp. loss"
            ));
            for (r, drivers) in list[..shown].iter().zip(&drivers) {
                s.push_str(&format!(
                    "{:<24} {:>6.1}% {:>12} {:>12}  {}\n",
                    r.id,
                    r.p * 100.0,
                    money(r.mrr),
                    money(r.loss),
                    if drivers.is_empty() { "-".into() } else { drivers.join("; ") }
                ));
            }
            s.push_str("\nBy segment:\n");
            for (seg, (n, mrr, loss)) in &by {
                s.push_str(&format!(
                    "  {seg:<14} {n:>6} accounts {:>14} MRR {:>12} expected loss\n",
                    money(*mrr),
                    money(*loss)
                ));
            }
            out(&s)
        }
    };
    leave(list);
    leave(blocks);
    leave(d);
    written
}

/// One account's churn figures in `tenure risk`, with its features' row when it may be
/// listed.
struct Scored {
    id: String,
    p: f64,
    mrr: i64,
    loss: i64,
    row: Option<Box<Row>>,
}

/// Accounts, MRR and expected loss per segment.
type SegmentSums = std::collections::BTreeMap<String, (usize, i64, i64)>;

/// What `tenure risk` keeps of a block of accounts.
struct Block {
    scored: Vec<Scored>,
    by: SegmentSums,
}

/// The listing order of `tenure risk`: the larger expected loss first, then by id.
fn worse(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    b.loss.cmp(&a.loss).then(a.id.cmp(&b.id))
}

#[derive(Args)]
pub struct SurvivalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Group accounts by an attribute (segment, region, ...), `plan` or `cohort` (start year)
    #[arg(long, default_value = "segment")]
    by: String,
    /// Days since the start at which to report retention
    #[arg(long, value_delimiter = ',', default_value = "90,180,365,730")]
    at: Vec<f64>,
    /// Hazard ratios of the signals read this many days after each start (accounts still
    /// customers then)
    #[arg(long, default_value_t = 90)]
    landmark: i64,
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
    #[arg(long)]
    as_of: Option<String>,
}

#[derive(Args)]
pub struct ClvArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The model: `sbg` projects each group's retention (lifetime and CLTV per group);
    /// `bgnbd` fits BG/NBD and Gamma-Gamma to every account's paid invoices (P(alive),
    /// expected transactions and CLV per account)
    #[arg(long, value_enum, default_value = "sbg")]
    model: ClvModel,
    /// sbg: group accounts by `plan`, `cohort` (start year) or an attribute (segment, ...)
    /// [default: plan]
    #[arg(long)]
    by: Option<String>,
    /// Annual discount rate of future revenue, in [0, 1) (bgnbd: compounded monthly,
    /// (1 + rate)^(1/12) - 1 a month, as lifetimes' monthly `discount_rate`)
    #[arg(long, default_value_t = 0.10)]
    discount: f64,
    /// bgnbd: the months over which transactions and CLV are predicted, 1 to 120 (`12` or
    /// `12m`) [default: 12]
    #[arg(long, value_name = "MONTHS")]
    horizon: Option<String>,
    /// bgnbd: how many accounts to list, highest CLV first (0 = all) [default: 20]
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// bgnbd: the unit of frequency, recency and T; the payments of one account within one
    /// unit are one transaction [default: day]
    #[arg(long, value_enum)]
    period: Option<ClvPeriod>,
    /// bgnbd: backtest on a hold-out: fit on the invoices paid before this month, predict
    /// each account's transactions from the month's start to --as-of, and compare them
    /// with those it made
    #[arg(long, value_name = "YYYY-MM")]
    holdout_from: Option<String>,
    /// `table`, `json`, or `csv` (sbg: as the table; bgnbd: one row per account listed)
    #[arg(long, value_enum, default_value = "table")]
    format: OutFormat,
    /// The instant the report is made at (RFC 3339 or YYYY-MM-DD): events after it are not
    /// known [default: now]
    #[arg(long)]
    as_of: Option<String>,
}

/// The lifetime-value model of `tenure clv`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClvModel {
    /// Shifted-beta-geometric per group on monthly retention (contractual: revenue lasts
    /// until the account churns)
    Sbg,
    /// BG/NBD with Gamma-Gamma on each account's paid invoices (non-contractual: payments
    /// come and may stop without notice)
    Bgnbd,
}

/// The transaction period of `tenure clv --model bgnbd`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClvPeriod {
    Day,
    /// Weeks from Monday
    Week,
}

pub fn survival(a: SurvivalArgs) -> Result<()> {
    let d = Data::load(&a.data, &a.as_of)?;
    let r = tenure_health::survival::survival(&d.ledger, &d.usage, &d.ctx(), &a.by, a.landmark)
        .map_err(|e| usage(e.to_string()))?;
    let curves: Vec<Json> = r
        .curves
        .iter()
        .map(|c| {
            let mc = c.km.median_ci();
            json!({"group": c.group, "n": c.km.n, "churned": c.km.events,
                "median_days": num(c.km.median()), "median_ci": [num(mc[0]), num(mc[1])],
                "at": a.at.iter().map(|t| json!({"days": t, "retention": c.km.survival_at(*t), "ci": c.km.ci_at(*t)})).collect::<Vec<_>>()})
        })
        .collect();
    let logrank =
        r.logrank.as_ref().map_or(Json::Null, |l| json!({"chi2": l.chi2, "df": l.df, "p": l.p}));
    let hazards = r.hazards.as_ref().map_or(Json::Null, |h| {
        let m = &h.model;
        json!({"landmark_days": h.landmark_days, "n": h.n, "churned": h.events, "concordance": m.concordance,
            "coefficients": h.names.iter().enumerate().map(|(i, n)| (n.clone(), json!({"hr": m.hr[i], "hr_ci": m.hr_ci[i], "p": m.p[i], "coef": m.coef[i]}))).collect::<Map<_, _>>()})
    });
    let j = json!({"by": a.by, "as_of": d.ledger.as_of.to_string(), "groups": curves, "logrank": logrank, "hazards": hazards});
    match a.format {
        OutFormat::Json => out(&format!("{}\n", serde_json::to_string_pretty(&j)?)),
        _ => {
            let mut s = format!(
                "Retention of paying accounts by {} (Kaplan-Meier, days since the first payment)\n\n",
                a.by
            );
            s.push_str(&format!("{:<16} {:>7} {:>8} {:>8}", "group", "n", "churned", "median"));
            for t in &a.at {
                s.push_str(&format!(" {:>9}", format!("S({t})")));
            }
            s.push('\n');
            for c in &r.curves {
                s.push_str(&format!(
                    "{:<16} {:>7} {:>8} {:>8}",
                    c.group,
                    c.km.n,
                    c.km.events,
                    c.km.median().map_or("-".into(), |m| format!("{m:.0}"))
                ));
                for t in &a.at {
                    s.push_str(&format!(" {:>8.1}%", 100.0 * c.km.survival_at(*t)));
                }
                s.push('\n');
            }
            if let Some(l) = &r.logrank {
                s.push_str(&format!(
                    "\nlog-rank test: chi2 {:.2}, df {}, p {:.3e}\n",
                    l.chi2, l.df, l.p
                ));
            }
            if let Some(h) = &r.hazards {
                s.push_str(&format!(
                    "\nCox hazard ratios of signals read {} days after the start ({} accounts, {} churned; concordance {:.3}):\n",
                    h.landmark_days, h.n, h.events, h.model.concordance
                ));
                for (i, n) in h.names.iter().enumerate() {
                    s.push_str(&format!(
                        "  {:<28} HR {:>7.3}  95% CI [{:.3}, {:.3}]  p {:.2e}\n",
                        n, h.model.hr[i], h.model.hr_ci[i][0], h.model.hr_ci[i][1], h.model.p[i]
                    ));
                }
            }
            out(&s)
        }
    }
}

pub fn clv(a: ClvArgs) -> Result<()> {
    if !(0.0..1.0).contains(&a.discount) {
        bail!(usage("--discount: an annual rate in [0, 1)"));
    }
    match a.model {
        ClvModel::Bgnbd => return clv_bgnbd(a),
        ClvModel::Sbg => {
            let only_bgnbd = [
                ("--horizon", a.horizon.is_some()),
                ("--top", a.top.is_some()),
                ("--period", a.period.is_some()),
                ("--holdout-from", a.holdout_from.is_some()),
            ];
            if let Some((flag, _)) = only_bgnbd.iter().find(|(_, given)| *given) {
                bail!(usage(format!("{flag} applies to --model bgnbd only")));
            }
        }
    }
    let by = a.by.clone().unwrap_or_else(|| "plan".into());
    let d = Data::load(&a.data, &a.as_of)?;
    let cur = d.cfg.revenue.fx.base;
    let v = tenure_health::survival::lifetime_value(&d.ledger, &by, a.discount)
        .map_err(|e| usage(e.to_string()))?;
    let minor = |x: f64| x.round() as i64;
    match a.format {
        OutFormat::Json => {
            let groups: Vec<Json> = v
                .iter()
                .map(|g| {
                    json!({"group": g.group, "accounts": g.accounts, "active": g.active, "arpa": money_json(minor(g.arpa), cur),
                        "alpha": g.sbg.alpha, "beta": g.sbg.beta, "months_observed": g.months,
                        "survival_12m": g.survival[0], "survival_24m": g.survival[1], "survival_36m": g.survival[2],
                        "expected_lifetime_months": g.del_months, "cltv": money_json(minor(g.cltv), cur),
                        "base_value": money_json(minor(g.base_value), cur)})
                })
                .collect();
            let j = json!({"by": by, "discount": a.discount, "currency": cur.to_string(), "groups": groups});
            out(&format!("{}\n", serde_json::to_string_pretty(&j)?))
        }
        _ => {
            let money = |x: f64| tenure_core::money::format_minor(minor(x), cur);
            let mut s = format!(
                "Lifetime value by {} (sBG on monthly retention, {:.0}% annual discount, {cur})\n\n",
                by,
                a.discount * 100.0
            );
            s.push_str(&format!(
                "{:<16} {:>7} {:>7} {:>10} {:>7} {:>7} {:>7} {:>9} {:>12} {:>14}\n",
                "group",
                "accts",
                "active",
                "ARPA",
                "S(12)",
                "S(24)",
                "S(36)",
                "lifetime",
                "CLTV",
                "base value"
            ));
            for g in &v {
                s.push_str(&format!(
                    "{:<16} {:>7} {:>7} {:>10} {:>6.1}% {:>6.1}% {:>6.1}% {:>8.1}m {:>12} {:>14}\n",
                    g.group,
                    g.accounts,
                    g.active,
                    money(g.arpa),
                    g.survival[0] * 100.0,
                    g.survival[1] * 100.0,
                    g.survival[2] * 100.0,
                    g.del_months,
                    money(g.cltv),
                    money(g.base_value)
                ));
            }
            out(&s)
        }
    }
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
fn csv_text(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `12` or `12m`: months of `tenure clv --model bgnbd`'s horizon.
fn horizon_months(s: &str) -> Result<u32> {
    let n = s.trim().strip_suffix('m').unwrap_or(s.trim());
    match n.parse::<u32>() {
        Ok(m) if (1..=120).contains(&m) => Ok(m),
        _ => {
            bail!(usage(format!("--horizon {s:?}: a number of months from 1 to 120, as 12 or 12m")))
        }
    }
}

/// `tenure clv --model bgnbd`: the population parameters, the accounts of highest CLV and,
/// with --holdout-from, the backtest by calibration frequency.
fn clv_bgnbd(a: ClvArgs) -> Result<()> {
    use tenure_health::bgnbd::{self, Fit, Options, Periods};
    if a.by.is_some() {
        bail!(usage("--by applies to --model sbg only (BG/NBD is fitted to every account)"));
    }
    let months = a.horizon.as_deref().map_or(Ok(12), horizon_months)?;
    let top = a.top.unwrap_or(20);
    let periods = match a.period.unwrap_or(ClvPeriod::Day) {
        ClvPeriod::Day => Periods::Day,
        ClvPeriod::Week => Periods::Week,
    };
    let cut = a
        .holdout_from
        .as_deref()
        .map(|s| {
            Period::parse(s).map(|p| p.start).map_err(|e| usage(format!("--holdout-from: {e}")))
        })
        .transpose()?;
    let monthly = tenure_health::bgnbd::monthly_discount(a.discount);
    let cfg = config(&a.data)?;
    let dir = existing_data_dir(&a.data)?;
    let t = as_of(&a.as_of)?;
    if let Some(c) = cut.filter(|c| *c >= t) {
        bail!(usage(format!("--holdout-from {c} is not before --as-of {t}")));
    }
    let ledger = tenure_engine::ledger(&dir, &cfg, t)?;
    let cur = cfg.revenue.fx.base;
    let o = Options { periods, horizon_months: months, monthly_discount: monthly };
    let r = bgnbd::value(&ledger, &o).map_err(|e| usage(e.to_string()))?;
    let h = cut
        .map(|c| bgnbd::holdout(&ledger, c, periods).map_err(|e| usage(e.to_string())))
        .transpose()?;
    let unit = periods.as_str();
    // Model figures are f64 minor units: rounded to the minor unit to be shown as money.
    let money_j = |x: Option<f64>| x.map_or(Json::Null, |v| money_json(v.round() as i64, cur));
    let money_s = |x: Option<f64>| {
        x.map_or("n/a".into(), |v| tenure_core::money::format_minor(v.round() as i64, cur))
    };
    let shown = if top == 0 { r.accounts.len() } else { top.min(r.accounts.len()) };
    let accounts = &r.accounts[..shown];
    let alive: f64 = r.accounts.iter().filter_map(|v| v.scored.p_alive).sum();
    let transactions: f64 = r.accounts.iter().filter_map(|v| v.scored.expected_transactions).sum();
    let clv_total: f64 = r.accounts.iter().filter_map(|v| v.scored.clv).sum();
    let undefined = r.accounts.iter().filter(|v| v.scored.clv.is_none()).count();
    let params = |f: &Fit| {
        let (b, g) = (&f.bgnbd, &f.gamma_gamma);
        json!({
            "bgnbd": {"r": num(Some(b.r)), "alpha": num(Some(b.alpha)), "a": num(Some(b.a)), "b": num(Some(b.b)),
                      "log_likelihood": num(Some(b.log_likelihood)), "accounts": f.bgnbd_customers},
            // v is in minor units of the base currency, as the values it was fitted to.
            "gamma_gamma": {"p": num(Some(g.p)), "q": num(Some(g.q)), "v": num(Some(g.gamma)),
                            "log_likelihood": num(Some(g.log_likelihood)), "accounts": f.gamma_gamma_customers},
            "frequency_value_correlation": num(f.frequency_value_correlation),
        })
    };
    match a.format {
        OutFormat::Json => {
            let list: Vec<Json> = accounts
                .iter()
                .map(|v| {
                    let (s, p) = (&v.summary, &v.scored);
                    json!({"account_id": s.account, "frequency": s.frequency, "recency": s.recency, "T": s.t,
                        "monetary_value": money_j(Some(s.monetary_value())),
                        "first_transaction": s.first.to_string(), "last_transaction": s.last.to_string(),
                        "p_alive": num(p.p_alive), "expected_transactions": num(p.expected_transactions),
                        "expected_value": money_j(p.expected_value), "clv": money_j(p.clv)})
                })
                .collect();
            let backtest = h.as_ref().map_or(Json::Null, |h| {
                let buckets: Vec<Json> = h
                    .buckets
                    .iter()
                    .map(|b| json!({"frequency": b.label(), "accounts": b.accounts,
                        "predicted": num(b.predicted), "actual": num(b.actual)}))
                    .collect();
                json!({"from": h.cut.to_string(), "to": h.end.to_string(), "holdout_periods": h.periods,
                    "accounts": h.accounts, "parameters": params(&h.fit), "by_frequency": buckets,
                    "predicted_total": num(Some(h.predicted_total)), "actual_total": h.actual_total,
                    "correlation": num(h.correlation), "mean_absolute_error": num(Some(h.mean_absolute_error))})
            });
            let j = json!({"model": "bgnbd", "as_of": r.end.to_string(), "currency": cur.to_string(),
                "transaction": "a paid invoice (once per invoice, not refunded, of positive amount)",
                "period": unit, "horizon_months": months, "discount": a.discount, "monthly_discount": monthly,
                "parameters": params(&r.fit),
                "totals": {"accounts": r.accounts.len(), "expected_alive": num(Some(alive)),
                           "expected_transactions": num(Some(transactions)), "clv": money_j(Some(clv_total)),
                           "accounts_without_clv": undefined},
                "accounts": list, "backtest": backtest});
            out(&format!("{}\n", serde_json::to_string_pretty(&j)?))
        }
        OutFormat::Csv => {
            let cell = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
            let money_c = |x: Option<f64>| {
                x.map_or(String::new(), |v| tenure_core::money::format_minor(v.round() as i64, cur))
            };
            let mut s = String::from(
                "account_id,frequency,recency,T,monetary_value,first_transaction,last_transaction,p_alive,expected_transactions,expected_value,clv\n",
            );
            for v in accounts {
                let (m, p) = (&v.summary, &v.scored);
                s.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{},{}\n",
                    csv_text(&m.account),
                    m.frequency,
                    m.recency,
                    m.t,
                    money_c(Some(m.monetary_value())),
                    m.first,
                    m.last,
                    cell(p.p_alive),
                    cell(p.expected_transactions),
                    money_c(p.expected_value),
                    money_c(p.clv)
                ));
            }
            out(&s)
        }
        OutFormat::Table => {
            let (b, g) = (&r.fit.bgnbd, &r.fit.gamma_gamma);
            let mut s = format!(
                "Lifetime value per account (BG/NBD and Gamma-Gamma on paid invoices) at {}, {cur}\n\
                 A transaction is a paid invoice; an account's payments within one {unit} are one.\n\
                 Horizon {months} months, {:.1}% annual discount ({:.3}% a month).\n\n",
                r.end,
                a.discount * 100.0,
                monthly * 100.0
            );
            s.push_str(&format!(
                "BG/NBD on {} accounts: r {:.4}, alpha {:.4} ({unit}s), a {:.4}, b {:.4}; log-likelihood {:.2}\n",
                r.fit.bgnbd_customers, b.r, b.alpha, b.a, b.b, b.log_likelihood
            ));
            s.push_str(&format!(
                "Gamma-Gamma on {} accounts with repeat transactions: p {:.4}, q {:.4}, v {:.4} (minor units); log-likelihood {:.2}\n",
                r.fit.gamma_gamma_customers, g.p, g.q, g.gamma, g.log_likelihood
            ));
            s.push_str(&format!(
                "Correlation of frequency and mean repeat value (Gamma-Gamma assumes none): {}\n\n",
                fmt_opt(r.fit.frequency_value_correlation, 3)
            ));
            s.push_str(&format!(
                "{} accounts, {alive:.1} expected alive; in {months} months {transactions:.1} transactions expected, worth {} discounted (CLV)\n",
                r.accounts.len(),
                money_s(Some(clv_total))
            ));
            if undefined > 0 {
                let why = if g.q <= 1.0 {
                    "with q <= 1 the Gamma-Gamma mean spend of an account without a repeat \
                     transaction is infinite"
                } else {
                    "the model's figure is not finite"
                };
                s.push_str(&format!("{undefined} accounts have no CLV: {why}\n"));
            }
            s.push('\n');
            s.push_str(&format!(
                "{:<24} {:>6} {:>8} {:>6} {:>12} {:>8} {:>9} {:>12} {:>14}\n",
                "account",
                "freq",
                "recency",
                "T",
                "mean value",
                "P(alive)",
                "E[tx]",
                "E[value]",
                "CLV"
            ));
            for v in accounts {
                let (m, p) = (&v.summary, &v.scored);
                s.push_str(&format!(
                    "{:<24} {:>6} {:>8} {:>6} {:>12} {:>8} {:>9} {:>12} {:>14}\n",
                    m.account,
                    m.frequency,
                    m.recency,
                    m.t,
                    money_s(Some(m.monetary_value())),
                    p.p_alive.map_or("n/a".into(), |x| format!("{:.1}%", x * 100.0)),
                    fmt_opt(p.expected_transactions, 2),
                    money_s(p.expected_value),
                    money_s(p.clv)
                ));
            }
            if shown < r.accounts.len() {
                s.push_str(&format!("... {} more (--top 0 lists all)\n", r.accounts.len() - shown));
            }
            if let Some(h) = &h {
                s.push_str(&format!(
                    "\nBacktest: fitted on the invoices before {}, {} accounts; hold-out of {} {unit}s to {}\n",
                    h.cut, h.accounts, h.periods, h.end
                ));
                s.push_str(&format!(
                    "{:>24} {:>9} {:>10} {:>10}\n",
                    "repeat tx (calibration)", "accounts", "predicted", "actual"
                ));
                for k in &h.buckets {
                    s.push_str(&format!(
                        "{:>24} {:>9} {:>10} {:>10}\n",
                        k.label(),
                        k.accounts,
                        fmt_opt(k.predicted, 2),
                        fmt_opt(k.actual, 2)
                    ));
                }
                s.push_str(&format!(
                    "{:>24} {:>9} {:>10.1} {:>10}\n(means per account by bucket; totals over all)\ncorrelation per account {}, mean absolute error {:.2} transactions\n",
                    "total",
                    h.accounts,
                    h.predicted_total,
                    h.actual_total,
                    fmt_opt(h.correlation, 3),
                    h.mean_absolute_error
                ));
            }
            out(&s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{HEALTH_STATE, Tenths, checkpoint, saving, wait_for_saves};

    /// A checkpoint answered from while it is saved is whole on disk once the saves are
    /// waited for (as `main` waits before the process ends), and reads as it was given.
    #[test]
    fn a_checkpoint_saved_meanwhile_is_in_place_once_saves_are_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..8_000_000u32).map(|i| (i % 251) as u8).collect();
        let src = saving(dir.path(), bytes.clone());
        let mut head = [0u8; 16];
        checkpoint::Source::read_at(&src, 1000, &mut head).unwrap();
        assert_eq!(head[..], bytes[1000..1016]);
        wait_for_saves();
        let path = tenure_engine::state::dir(dir.path()).join(HEALTH_STATE);
        assert_eq!(std::fs::read(path).unwrap(), bytes);
    }

    /// Tenths writes what the general formatter writes, padding included: figures of every
    /// size and sign, halves exact in binary (0.25) and not (0.35), and negatives rounding
    /// to zero.
    #[test]
    fn tenths_write_as_the_general_formatter() {
        let mut seed = 7u64;
        let mut next = || (tenure_stats::splitmix64(&mut seed) >> 11) as f64 / (1u64 << 53) as f64;
        let mut figures =
            vec![0.0, -0.0, 0.05, 0.25, 0.35, -0.25, -0.04, -0.05, 99.95, 1e12 + 0.05];
        figures.extend([1e13, 1e300, -1e15 - 0.5, f64::MIN_POSITIVE, 4.5e-17]);
        for _ in 0..200_000 {
            let (u, k) = (next(), next());
            figures.push((u - 0.5) * 200.0);
            // Whole hundredths and halves of tenths, where rounding is closest to a tie.
            figures.push(((u - 0.5) * 2e6).round() / 100.0);
            figures.push(((u - 0.5) * 2e5).round() / 10.0 + 0.05);
            figures.push((u - 0.5) * 10f64.powf(k * 30.0 - 10.0));
        }
        for v in figures {
            assert_eq!(Tenths(Some(v), false).to_string(), format!("{v:.1}"), "{v:e}");
            assert_eq!(Tenths(Some(v), true).to_string(), format!("{v:+.1}"), "{v:e}");
            assert_eq!(
                format!("{:>9}", Tenths(Some(v), true)),
                format!("{:>9}", format!("{v:+.1}"))
            );
        }
        for v in [None, Some(f64::NAN), Some(f64::INFINITY), Some(f64::NEG_INFINITY)] {
            assert_eq!(format!("{:>6}", Tenths(v, true)), "   n/a");
        }
    }
}
