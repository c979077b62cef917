//! The facade over a data directory: its configuration, importing files into the durable
//! log, and folding the log into the ledger that reports read.
//!
//! Layout of a data directory: `log/` (the event log, the truth) and an optional
//! `tenure.toml`. Everything else is derived and can be rebuilt by replay.

pub mod accounts;
pub mod audit;
pub mod config;
pub mod import;
pub mod ledger_state;
pub mod state;

pub use config::{ClusterConfig, Config, ConfigError, Scheduler};
pub use import::{FileSummary, Framed, ImportError, Importer, Progress};

use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tenure_core::codec;
use tenure_core::event::{Event, EventKind};
use tenure_core::time::Timestamp;
use tenure_ledger::{Ledger, LedgerBuilder, SourceRef};
use tenure_log::{LogError, LogReader, ScanError};

/// The lane (log stream) an event kind is stored in: one per kind, so that a report reads
/// only the kinds it needs (revenue never scans the billions of usage events).
pub fn lane(kind: EventKind) -> &'static str {
    kind.as_str()
}

/// The idempotency key: the `message_id` when given, else the event's whole content, so that
/// importing a file twice stores each event once. Identical events without a `message_id`
/// within one input are told apart by their order: see [`nth_key`].
pub fn key(e: &Event, encoded: &[u8]) -> u128 {
    match &e.message_id {
        Some(m) => message_key(m),
        None => {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(b"c\0");
            h.update(encoded);
            h.digest128()
        }
    }
}

/// The key of the `n`-th (from 0) occurrence of an event without `message_id` in one input:
/// two identical usage events in the same second are two events, and re-importing the
/// input maps each occurrence to the same key again.
pub fn nth_key(first: u128, n: u32) -> u128 {
    if n == 0 {
        return first;
    }
    let mut b = [0u8; 20];
    b[..16].copy_from_slice(&first.to_le_bytes());
    b[16..].copy_from_slice(&n.to_le_bytes());
    xxhash_rust::xxh3::xxh3_128(&b)
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error(
        "a log record in lane {lane} does not decode ({reason}); this is a bug or a damaged log, please report it"
    )]
    Decode { lane: String, reason: String },
    /// The account index (`accounts`) does not fit the log: rebuild it
    /// (`AccountIndex::rebuild`) and ask again.
    #[error("the account index does not fit the log ({0})")]
    StaleIndex(&'static str),
    /// Derived state under `DATA/state/` found damaged while reading it.
    #[error("{0}")]
    State(String),
}

pub fn log_dir(data: &Path) -> PathBuf {
    data.join("log")
}

/// Reads `tenure.toml` from the data directory, or `explicit` when given; defaults otherwise.
pub fn load_config(data: &Path, explicit: Option<&Path>) -> Result<Config, EngineError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let p = data.join("tenure.toml");
            if !p.exists() {
                return Ok(Config::defaults());
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|source| EngineError::Io { path: path.clone(), source })?;
    Config::parse(&text).map_err(|source| EngineError::Config { path, source })
}

/// Calls `f` with every event of the given kinds, lane by lane, in log order.
pub fn replay(
    data: &Path,
    kinds: &[EventKind],
    mut f: impl FnMut(Event),
) -> Result<(), EngineError> {
    replay_at(data, kinds, |e, _| f(e))
}

/// As [`replay`], with each event's record index in its lane (a [`SourceRef::Log`] for
/// subscription events).
pub fn replay_at(
    data: &Path,
    kinds: &[EventKind],
    f: impl FnMut(Event, u64),
) -> Result<(), EngineError> {
    replay_bounded(data, kinds, None, None, f)
}

/// As [`replay_at`], each lane's records before the count `until` gives it (a lane it does
/// not name: none): the log as it stood when the counts were taken
/// ([`state::Marks::tail`]), while a writer appends to it.
pub fn replay_until(
    data: &Path,
    kinds: &[EventKind],
    until: &[(String, u64)],
    f: impl FnMut(Event, u64),
) -> Result<(), EngineError> {
    replay_bounded(data, kinds, None, Some(until), f)
}

/// As [`replay_until`], from each lane's record count in `from` (0 for a lane not named):
/// the records appended between two points of the log (a saved state's tail).
pub fn replay_between(
    data: &Path,
    kinds: &[EventKind],
    from: &[(String, u64)],
    until: &[(String, u64)],
    f: impl FnMut(Event, u64),
) -> Result<(), EngineError> {
    replay_bounded(data, kinds, Some(from), Some(until), f)
}

fn replay_bounded(
    data: &Path,
    kinds: &[EventKind],
    from: Option<&[(String, u64)]>,
    until: Option<&[(String, u64)]>,
    mut f: impl FnMut(Event, u64),
) -> Result<(), EngineError> {
    let dir = log_dir(data);
    if !dir.exists() {
        return Ok(());
    }
    let lanes: Vec<&str> = kinds.iter().map(|k| lane(*k)).collect();
    let reader = LogReader::open_lanes(&dir, &lanes)?;
    // Records are decoded on a thread of their own, a batch at a time, while `f` takes the
    // batch before: a few batches are held, not every event of the log at once (tens of
    // gigabytes of fresh memory for a service's start at a million accounts).
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<(u64, Event)>, EngineError>>(4);
    std::thread::scope(|s| {
        s.spawn(move || {
            for lane in &lanes {
                let limit = until.map(|u| u.iter().find(|x| x.0 == *lane).map_or(0, |x| x.1));
                let start = from.and_then(|u| u.iter().find(|x| x.0 == *lane)).map_or(0, |x| x.1);
                if limit.is_some_and(|n| start >= n) {
                    continue;
                }
                let mut reached = false;
                let mut batch = Vec::with_capacity(REPLAY_BATCH);
                let scanned = scan_events_until(&reader, lane, start, |i, e| {
                    if limit.is_some_and(|n| i >= n) {
                        reached = true;
                        return false;
                    }
                    batch.push((i, e));
                    if batch.len() == REPLAY_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH));
                        // The taker stopped (it panicked): so does the decoding.
                        return tx.send(Ok(full)).is_ok();
                    }
                    true
                });
                let sent = match scanned {
                    Ok(true) => tx.send(Ok(batch)).is_ok(),
                    Ok(false) if reached => tx.send(Ok(batch)).is_ok(),
                    Ok(false) => false,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        false
                    }
                };
                if !sent {
                    return;
                }
            }
        });
        for batch in rx {
            for (i, e) in batch? {
                f(e, i);
            }
        }
        Ok(())
    })
}

/// Events decoded at a time by [`replay_at`].
const REPLAY_BATCH: usize = 16_384;

/// Decodes the records of a lane, in log order, with their record indexes, while `f` says
/// to go on; `Ok(false)` when it said to stop.
fn scan_events_until(
    reader: &LogReader,
    lane: &str,
    from: u64,
    mut f: impl FnMut(u64, Event) -> bool,
) -> Result<bool, EngineError> {
    /// Why a scan ended early.
    enum Halt {
        Stopped,
        Failed(EngineError),
    }
    let scanned = reader.scan_from(lane, from, |i, _, payload| {
        let e = codec::decode(payload).map_err(|e| {
            Halt::Failed(EngineError::Decode { lane: lane.to_string(), reason: e.to_string() })
        })?;
        if f(i, e) { Ok(()) } else { Err(Halt::Stopped) }
    });
    match scanned {
        Ok(()) => Ok(true),
        Err(ScanError::Callback(Halt::Stopped)) => Ok(false),
        Err(ScanError::Callback(Halt::Failed(e))) => Err(e),
        Err(ScanError::Log(l)) => Err(EngineError::Log(l)),
    }
}

/// Decodes every record of a lane, in log order, with its record index.
fn scan_events(
    reader: &LogReader,
    lane: &str,
    mut f: impl FnMut(u64, Event),
) -> Result<(), EngineError> {
    scan_events_until(reader, lane, 0, |i, e| {
        f(i, e);
        true
    })
    .map(|_| ())
}

/// A scan's error as the engine's: the log's, or the callback's own.
fn scan_error(e: ScanError<EngineError>) -> EngineError {
    match e {
        ScanError::Log(l) => EngineError::Log(l),
        ScanError::Callback(c) => c,
    }
}

/// The kinds the revenue ledger reads. Invoices are not among them: no revenue KPI reads
/// them (MRR comes from subscription states), and they are the largest revenue lane.
pub const REVENUE_KINDS: &[EventKind] =
    &[EventKind::Account, EventKind::Subscription, EventKind::Cost];

/// Folds the log into the revenue ledger as known at `as_of`.
pub fn ledger(data: &Path, cfg: &Config, as_of: Timestamp) -> Result<Ledger, EngineError> {
    ledger_with(data, cfg, as_of, Scope::ALL)
}

/// What a fold reads beyond subscriptions and costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Account names and attributes (for cuts by attribute and account views).
    pub attributes: bool,
    /// The customer-success lanes and invoices (for the CS KPIs and account views).
    pub cs: bool,
}

impl Scope {
    pub const ALL: Scope = Scope { attributes: true, cs: true };
    pub const REVENUE: Scope = Scope { attributes: false, cs: false };
}

/// The kinds the CS side of the ledger reads.
pub const CS_KINDS: &[EventKind] = &[
    EventKind::Contact,
    EventKind::SurveySent,
    EventKind::SurveyResponse,
    EventKind::Ticket,
    EventKind::Touchpoint,
    EventKind::Milestone,
    EventKind::SuccessObjective,
    EventKind::Assessment,
    EventKind::ChangeRequest,
    EventKind::Invoice,
    EventKind::Alert,
    EventKind::Task,
    EventKind::ForecastOverride,
];

/// As [`ledger`], reading only the lanes `scope` asks for (a report that cuts by no
/// attribute and shows no CS KPI reads three lanes of the log).
pub fn ledger_with(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
    scope: Scope,
) -> Result<Ledger, EngineError> {
    Ok(collect_lanes(data, scope, false)?.finish(&cfg.revenue, as_of))
}

/// As [`ledger_with`], each movement naming the subscription events it classifies
/// (`Movement::sources`, which [`source_events`] reads back): for `tenure explain`.
pub fn ledger_sourced(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
    scope: Scope,
) -> Result<Ledger, EngineError> {
    Ok(collect_lanes(data, scope, true)?.finish(&cfg.revenue, as_of))
}

/// The events a fold reads, collected and not yet folded: a backtest folds the same
/// builder at several instants (`LedgerBuilder::clone`, then `finish`).
pub fn ledger_builder(data: &Path, scope: Scope) -> Result<LedgerBuilder, EngineError> {
    collect_lanes(data, scope, false)
}

fn collect_lanes(data: &Path, scope: Scope, sources: bool) -> Result<LedgerBuilder, EngineError> {
    let builder =
        || if sources { LedgerBuilder::new().keep_sources() } else { LedgerBuilder::new() };
    let dir = log_dir(data);
    if !dir.exists() {
        return Ok(builder());
    }
    let lanes: Vec<&str> = REVENUE_KINDS
        .iter()
        .filter(|k| scope.attributes || **k != EventKind::Account)
        .chain(CS_KINDS.iter().filter(|_| scope.cs))
        .map(|k| lane(*k))
        .collect();
    let reader = LogReader::open_lanes(&dir, &lanes)?;
    // One builder per lane, in parallel, merged in lane order: the same ledger as one
    // builder fed lane after lane, without holding the decoded events twice.
    let builders: Vec<Result<LedgerBuilder, EngineError>> = lanes
        .par_iter()
        .map(|lane| {
            let mut b = builder();
            scan_events(&reader, lane, |i, e| b.push_at(e, Some(i)))?;
            Ok(b)
        })
        .collect();
    let mut all = builder();
    for b in builders {
        all.merge(b?);
    }
    Ok(all)
}

/// Record counts per lane.
pub fn log_stats(data: &Path) -> Result<Vec<(String, u64)>, EngineError> {
    let dir = log_dir(data);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let r = LogReader::open(&dir)?;
    Ok(r.lanes()
        .into_iter()
        .map(|l| {
            let n = r.lane_len(&l);
            (l, n)
        })
        .collect())
}

/// A subscription event a movement names, read back from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceEvent {
    pub source: SourceRef,
    /// Its record index in the subscription lane.
    pub position: u64,
    pub event: Event,
}

/// Reads the subscription events `refs` name back from the log, in one scan of the
/// subscription lane that decodes only the records asked for (a `message_id` is found by its
/// idempotency key, which is in the record header) and stops once every one was found.
/// A reference the log does not hold (an event stored after the ledger was folded and then
/// lost, or a log replaced since) is left out: the caller shows it as not found.
pub fn source_events(data: &Path, refs: &[SourceRef]) -> Result<Vec<SourceEvent>, EngineError> {
    use std::collections::{BTreeSet, HashMap};
    let dir = log_dir(data);
    if refs.is_empty() || !dir.exists() {
        return Ok(Vec::new());
    }
    let lane_name = lane(EventKind::Subscription);
    let mut positions: BTreeSet<u64> = BTreeSet::new();
    let mut keys: HashMap<u128, &str> = HashMap::new();
    for r in refs {
        match r {
            SourceRef::Log(i) => {
                positions.insert(*i);
            }
            SourceRef::Message(m) => {
                keys.insert(message_key(m), m);
            }
        }
    }
    let reader = LogReader::open_lanes(&dir, &[lane_name])?;
    let mut wanted = positions.len() + keys.len();
    let mut out = Vec::with_capacity(wanted);
    // Records before the first position asked for are skipped unread when no message id is
    // looked for.
    let from = if keys.is_empty() { positions.first().copied().unwrap_or(0) } else { 0 };
    /// Why a scan ended early.
    enum Stop {
        /// Everything asked for was found.
        Done,
        Failed(EngineError),
    }
    let r = reader.scan_from(lane_name, from, |i, key, payload| {
        let by_position = positions.contains(&i);
        let by_key = keys.get(&key).copied();
        if !by_position && by_key.is_none() {
            return Ok(());
        }
        let event = codec::decode(payload).map_err(|e| {
            Stop::Failed(EngineError::Decode { lane: lane_name.to_string(), reason: e.to_string() })
        })?;
        if by_position {
            out.push(SourceEvent { source: SourceRef::Log(i), position: i, event: event.clone() });
            wanted -= 1;
        }
        if let Some(m) = by_key
            && event.message_id.as_deref() == Some(m)
        {
            keys.remove(&key);
            out.push(SourceEvent { source: SourceRef::Message(m.into()), position: i, event });
            wanted -= 1;
        }
        if wanted == 0 { Err(Stop::Done) } else { Ok(()) }
    });
    match r {
        Ok(()) | Err(ScanError::Callback(Stop::Done)) => Ok(out),
        Err(ScanError::Callback(Stop::Failed(e))) => Err(e),
        Err(ScanError::Log(l)) => Err(EngineError::Log(l)),
    }
}

/// The idempotency key of an event with this `message_id` (see [`key`]).
fn message_key(m: &str) -> u128 {
    use xxhash_rust::xxh3::Xxh3;
    let mut h = Xxh3::new();
    h.update(b"m\0");
    h.update(m.as_bytes());
    h.digest128()
}
