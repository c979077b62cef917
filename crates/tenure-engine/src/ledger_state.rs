//! The ledger checkpoint kept as `DATA/state/ledger.state` (`tenure_ledger::checkpoint`):
//! opened for an instant, brought forward to it (the accounts new records name, and those
//! whose fold changes by then, folded again through the account index), or folded from
//! the whole log when it cannot be; for `tenure kpi`, which then reads every account from
//! it a chunk at a time.

use std::path::Path;
use tenure_core::event::EventKind;
use tenure_core::time::Timestamp;
use tenure_ledger::checkpoint::{self, CheckpointError, LedgerCheckpoint};
use tenure_ledger::{AccountLedger, CostEntry, Diagnostic, LedgerBuilder};
use tenure_log::LogReader;

use crate::accounts::{AccountIndex, fold_many, touched};
use crate::state::{self, Marks};
use crate::{CS_KINDS, Config, EngineError, REVENUE_KINDS, Scope, lane, log_dir};

/// The checkpoint's file under `DATA/state/`.
pub const FILE: &str = "ledger.state";

/// Every account folded at `as_of`: the checkpoint's accounts, but those folded again
/// since (`refolded`), read in their place.
pub struct LedgerState {
    checkpoint: LedgerCheckpoint<Bytes>,
    /// Folded at `as_of`, sorted by id; read instead of the checkpoint's.
    refolded: Vec<AccountLedger>,
    skip: Vec<String>,
    pub as_of: Timestamp,
    /// Company-level costs (from their lane, folded at `as_of`).
    pub costs: Vec<CostEntry>,
    /// The fold's diagnostics and the costs', sorted.
    pub diagnostics: Vec<Diagnostic>,
    /// What was done to answer, for the person asking (`None`: the checkpoint was current).
    pub said: Option<String>,
}

/// A checkpoint's bytes: its file (read a chunk at a time), or the memory it was just
/// made in.
enum Bytes {
    File(std::fs::File, u64),
    Memory(Vec<u8>),
}

impl checkpoint::Source for Bytes {
    fn size(&self) -> u64 {
        match self {
            Bytes::File(_, n) => *n,
            Bytes::Memory(b) => b.len() as u64,
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match self {
            Bytes::File(f, _) => std::os::unix::fs::FileExt::read_exact_at(f, buf, offset),
            Bytes::Memory(b) => b.read_at(offset, buf),
        }
    }
}

/// The lanes the checkpoint is folded from: every lane of the ledger (the KPIs read the
/// tasks and alerts too).
fn kinds() -> Vec<EventKind> {
    REVENUE_KINDS.iter().chain(CS_KINDS).copied().collect()
}

impl LedgerState {
    /// Accounts held.
    pub fn len(&self) -> usize {
        self.checkpoint.len() - self.skip.len() + self.refolded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the checkpoint file.
    pub fn size(&self) -> u64 {
        self.checkpoint.size()
    }

    /// Every account folded into its group's `init()` with `step` as it is decoded, the
    /// groups a chunk of the checkpoint each (decoded in parallel,
    /// `LedgerCheckpoint::fold_chunks`: no group of accounts is held), then one of the
    /// accounts folded again: the results in no particular order. The checkpoint's
    /// accounts come without the parts `want` leaves out.
    pub fn fold_chunks<T: Send>(
        &self,
        want: checkpoint::Want,
        init: impl Fn() -> T + Sync,
        step: impl Fn(&mut T, &AccountLedger) + Sync,
    ) -> Result<Vec<T>, EngineError> {
        let mut out =
            self.checkpoint.fold_chunks(&self.skip, want, &init, &step).map_err(damaged)?;
        if !self.refolded.is_empty() {
            let mut t = init();
            for a in &self.refolded {
                step(&mut t, a);
            }
            out.push(t);
        }
        Ok(out)
    }
}

fn damaged(e: CheckpointError) -> EngineError {
    EngineError::State(format!("{FILE}: {e}"))
}

/// The ledger at `as_of` from the checkpoint, brought forward or made first when needed
/// (and saved for the next command). `key` names what the checkpoint must have been
/// folded with (the settings, the build): another key folds the log again. `now` is the
/// wall clock's instant: a checkpoint made for a later one than it is replaced by a fold
/// at an earlier `as_of` (most commands ask for now), any other is kept.
pub fn open(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
    now: Timestamp,
    key: &[u8],
) -> Result<LedgerState, EngineError> {
    let path = state::dir(data).join(FILE);
    let path = path.display();
    let saved = opened(data).map_err(|e| e.to_string());
    let why = match saved {
        Err(e) => format!("{e}; folding the log again"),
        Ok(None) => format!(
            "folding the log into {path} (later commands read it, bringing it forward over new events)"
        ),
        Ok(Some(bytes)) => match LedgerCheckpoint::open(bytes, key) {
            Ok(c) if as_of < c.as_of() => {
                // Kept for the later instants most commands ask for, unless it is ahead of
                // them all.
                let why = format!("{path} holds {}, after {as_of}; folding the log", c.as_of());
                let save = c.as_of() > now;
                return build(data, cfg, as_of, key, why, save);
            }
            Ok(c) => match Marks::decode(c.position()) {
                Some(m) => match forward(data, cfg, key, c, &m, as_of)? {
                    Ok(s) => return Ok(s),
                    Err(why) => why,
                },
                None => format!("{path}: damaged marks; folding the log again"),
            },
            Err(CheckpointError::Key) => format!(
                "other settings or another build of tenure since {path} was made; folding the log again"
            ),
            Err(e) => format!("{path}: {e}; folding the log again"),
        },
    };
    build(data, cfg, as_of, key, why, true)
}

/// The ledger at `as_of` from a fold of the whole log, saved as the checkpoint: for a
/// checkpoint found damaged while reading it (`EngineError::State` from
/// [`LedgerState::fold_chunks`]), said why.
pub fn refold(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
    key: &[u8],
    why: &str,
) -> Result<LedgerState, EngineError> {
    build(data, cfg, as_of, key, format!("{why}; folding the log again"), true)
}

/// Folds the whole log at `as_of` into a checkpoint, saved when `save`.
fn build(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
    key: &[u8],
    why: String,
    save: bool,
) -> Result<LedgerState, EngineError> {
    let started = std::time::Instant::now();
    let marks = Marks::take(data, &kinds())?;
    let ledger = crate::ledger_with(data, cfg, as_of, Scope::ALL)?;
    let marks = marks.encode();
    let image = checkpoint::encode(key, &marks, as_of, &ledger.accounts, &ledger.diagnostics);
    drop(ledger);
    let mut said = format!("ledger state: {why}");
    let c = keep(data, key, image, (as_of, &marks), save, &mut said)?;
    said.push_str(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
    finish(data, cfg, c, Default::default(), as_of, Some(said))
}

/// Saves `image` (made at `expect`'s instant and marks) as the checkpoint (when `save`)
/// and opens it: from its file, or from memory when it was not saved (the reason added to
/// `said`).
fn keep(
    data: &Path,
    key: &[u8],
    image: checkpoint::Image,
    expect: (Timestamp, &[u8]),
    save: bool,
    said: &mut String,
) -> Result<LedgerCheckpoint<Bytes>, EngineError> {
    let saved = match save.then(|| state::write_parts(data, FILE, &image.parts())) {
        Some(Ok(())) => opened(data),
        Some(Err(e)) => Err(e),
        None => Ok(None),
    };
    let bytes = match saved {
        Ok(Some(b)) => b,
        Ok(None) => Bytes::Memory(image.to_bytes()),
        Err(e) => {
            said.push_str(&format!("; {e}: answering without saving it"));
            Bytes::Memory(image.to_bytes())
        }
    };
    // Another command may have replaced the file since: then this one's is read from memory.
    match LedgerCheckpoint::open(bytes, key) {
        Ok(c) if c.as_of() == expect.0 && c.position() == expect.1 => Ok(c),
        _ => LedgerCheckpoint::open(Bytes::Memory(image.to_bytes()), key).map_err(damaged),
    }
}

/// The checkpoint's file, opened; `None` when there is none.
fn opened(data: &Path) -> Result<Option<Bytes>, EngineError> {
    let Some(f) = state::open(data, FILE)? else { return Ok(None) };
    match f.metadata() {
        Ok(m) => Ok(Some(Bytes::File(f, m.len()))),
        Err(source) => Err(EngineError::Io { path: state::dir(data).join(FILE), source }),
    }
}

/// The state from `c` and the accounts folded again (with their folds' `diagnostics`),
/// with the costs at `as_of`.
fn finish(
    data: &Path,
    cfg: &Config,
    checkpoint: LedgerCheckpoint<Bytes>,
    (refolded, folded_diagnostics): (Vec<AccountLedger>, Vec<Diagnostic>),
    as_of: Timestamp,
    said: Option<String>,
) -> Result<LedgerState, EngineError> {
    let (costs, mut diagnostics) = costs(data, cfg, as_of)?;
    diagnostics.extend_from_slice(checkpoint.diagnostics());
    diagnostics.extend(folded_diagnostics);
    diagnostics.sort();
    diagnostics.dedup();
    let skip = refolded.iter().map(|a| a.id.clone()).collect();
    Ok(LedgerState { checkpoint, refolded, skip, as_of, costs, diagnostics, said })
}

/// More accounts to fold again than this share of them: one fold of the whole log is
/// faster than reading each one's records through the index.
fn too_many(changed: usize, accounts: usize) -> bool {
    changed > accounts / 4 + 64
}

/// Accounts folded again only because time passed (no new record names them), past which
/// the checkpoint is saved at the new instant rather than folding them at every command.
const SAVE_PAST: usize = 1000;

/// `c` (noted at `marks`) brought to `as_of`; `Err(why)` when the whole log should be
/// folded instead.
fn forward(
    data: &Path,
    cfg: &Config,
    key: &[u8],
    c: LedgerCheckpoint<Bytes>,
    marks: &Marks,
    as_of: Timestamp,
) -> Result<Result<LedgerState, String>, EngineError> {
    let started = std::time::Instant::now();
    let path = state::dir(data).join(FILE);
    let path = path.display();
    let expired = c.changing_by(as_of);
    let mut ids = match expired {
        Ok(ids) => ids,
        Err(e) => return Ok(Err(format!("{path}: {e}; folding the log again"))),
    };
    let changing = ids.len();
    let mut named_count = 0;
    let new_records = !marks.current(data)?;
    let mut index = None;
    let (reader, now) = if new_records || !ids.is_empty() {
        let begun = Marks::begin(data, &kinds())?;
        let lanes: Vec<&str> = kinds().iter().map(|k| lane(*k)).collect();
        let reader = LogReader::open_lanes(&log_dir(data), &lanes)?;
        let now = begun.finish(Some(&reader))?;
        (Some(reader), Some(now))
    } else {
        (None, None)
    };
    if let Some(reader) = &reader {
        use EngineError::StaleIndex;
        let (mut ix, _) = AccountIndex::current(data, reader)?;
        if new_records {
            let Some(from) = marks.tail(reader) else {
                return Ok(Err(format!(
                    "the log no longer holds what {path} was folded from; folding it again"
                )));
            };
            let from: Vec<(&str, u64)> = from.iter().map(|(l, n)| (l.as_str(), *n)).collect();
            // An index that does not fit the log is built again, once.
            let named = match touched(&ix, reader, &from) {
                Err(StaleIndex(why)) => {
                    ix = AccountIndex::rebuild(data, reader, why)?;
                    touched(&ix, reader, &from)?
                }
                t => t?,
            };
            named_count = named.len();
            ids.extend(named);
            ids.sort_unstable();
            ids.dedup();
        }
        index = Some(ix);
    }
    if too_many(ids.len(), c.len()) {
        return Ok(Err(format!(
            "{} of {} accounts changed since {path} was made; folding the log again",
            ids.len(),
            c.len()
        )));
    }
    let mut refolded = Vec::new();
    let mut diagnostics = Vec::new();
    if let (Some(reader), Some(mut ix)) = (&reader, index) {
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        let folded = match fold_many(&ix, reader, cfg, as_of, &names) {
            Err(EngineError::StaleIndex(why)) => {
                ix = AccountIndex::rebuild(data, reader, why)?;
                fold_many(&ix, reader, cfg, as_of, &names)?
            }
            r => r?,
        };
        for (a, d) in folded {
            refolded.push(a);
            diagnostics.extend(d);
        }
    }
    if refolded.is_empty() && !new_records {
        return Ok(Ok(finish(data, cfg, c, Default::default(), as_of, None)?));
    }
    let mut said = format!(
        "ledger state: {} account{} folded again ({} named by new events, {} changing by {as_of})",
        refolded.len(),
        if refolded.len() == 1 { "" } else { "s" },
        named_count,
        changing
    );
    if new_records || changing > SAVE_PAST {
        // The new marks only when the records since the old ones were read: records that
        // arrived after `marks.current` said there were none are left for the next command.
        let marks = if new_records {
            now.expect("marks taken with the reader").encode()
        } else {
            marks.encode()
        };
        let image = match c.forward(key, &marks, as_of, &refolded, &diagnostics) {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("{path}: {e}; folding the log again"))),
        };
        drop(c);
        said.push_str(&format!(", {path} brought forward"));
        let c = keep(data, key, image, (as_of, &marks), true, &mut said)?;
        said.push_str(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
        return Ok(Ok(finish(data, cfg, c, (Vec::new(), diagnostics), as_of, Some(said))?));
    }
    said.push_str(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
    Ok(Ok(finish(data, cfg, c, (refolded, diagnostics), as_of, Some(said))?))
}

/// Company-level costs (events of the cost lane naming no account) as a fold at `as_of`
/// gives them, with the fold's diagnostics.
pub fn costs(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
) -> Result<(Vec<CostEntry>, Vec<Diagnostic>), EngineError> {
    let dir = log_dir(data);
    let mut b = LedgerBuilder::new();
    if dir.exists() {
        let cost = lane(EventKind::Cost);
        let reader = LogReader::open_lanes(&dir, &[cost])?;
        crate::scan_events(&reader, cost, |_, e| {
            if e.account.is_none() {
                b.push(e);
            }
        })?;
    }
    let l = b.finish(&cfg.revenue, as_of);
    Ok((l.costs, l.diagnostics))
}
