//! The ledger checkpoint kept as `DATA/state/ledger.state` (`tenure_ledger::checkpoint`):
//! opened for an instant, brought forward to it (the accounts new records name, and those
//! whose fold changes by then, folded again through the account index), or folded from
//! the whole log when it cannot be; for `tenure kpi`, which then reads every account from
//! it a chunk at a time.
//!
//! The accounts folded again are saved beside it, in `DATA/state/ledger.delta` (a
//! checkpoint of those accounts alone, naming the base it applies to), rather than by
//! writing every account again: a day's events touch a few thousand accounts spread over
//! nearly every chunk, and rewriting the base for them took 4.9 s of 7.5 s at 1,000,000
//! accounts. The delta is merged into the base once it holds more than the base's
//! accounts over [`DELTA_SHARE`], plus [`DELTA_LEAST`].

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

/// The accounts folded again since the checkpoint was written, beside it.
pub const DELTA: &str = "ledger.delta";

/// The delta is merged into the checkpoint once it holds more accounts than the
/// checkpoint's over this, plus [`DELTA_LEAST`]: rewriting a delta costs what rewriting the
/// same number of the checkpoint's accounts does, so it stays a small part of a rewrite of
/// the whole.
pub const DELTA_SHARE: usize = 16;
/// Accounts a delta may hold whatever the checkpoint's size (a small base is rewritten
/// whole in milliseconds; a delta is still worth its file there, and is tested there).
pub const DELTA_LEAST: usize = 4096;

/// Every account folded at `as_of`: the checkpoint's accounts, but those of the delta
/// and those folded again since (`refolded`), read in their place.
pub struct LedgerState {
    checkpoint: LedgerCheckpoint<Bytes>,
    /// The accounts folded again when the state was last saved (`ledger.delta`).
    delta: Option<LedgerCheckpoint<Bytes>>,
    /// Folded at `as_of`, sorted by id; read instead of the checkpoint's and the delta's.
    refolded: Vec<AccountLedger>,
    /// The ids of the delta's accounts and of `refolded`, sorted: not read from the
    /// checkpoint.
    skip: Vec<String>,
    /// The ids of `refolded`, sorted: not read from the delta.
    skip_delta: Vec<String>,
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
    /// Every account folded into its group's `init()` with `step` as it is decoded, the
    /// groups a chunk of the checkpoint or of its delta each (decoded in parallel,
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
        if let Some(d) = &self.delta {
            let more = d.fold_chunks(&self.skip_delta, want, &init, &step);
            out.extend(more.map_err(|e| EngineError::State(format!("{DELTA}: {e}")))?);
        }
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
    open_with(data, cfg, as_of, now, key, None)
}

/// [`open`], with the delta merged into the checkpoint once it would hold more than
/// `delta_most` accounts (`None`: the checkpoint's accounts over [`DELTA_SHARE`], plus
/// [`DELTA_LEAST`]).
pub fn open_with(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
    now: Timestamp,
    key: &[u8],
    delta_most: Option<usize>,
) -> Result<LedgerState, EngineError> {
    let path = state::dir(data).join(FILE);
    let path = path.display();
    let saved = opened(data, FILE).map_err(|e| e.to_string());
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
            Ok(c) => {
                let most = delta_most.unwrap_or(c.len() / DELTA_SHARE + DELTA_LEAST);
                let (delta, mut note) = delta_of(data, key, &c);
                // A delta made for a later instant is left aside: the checkpoint is brought
                // forward alone, and that saved in the delta's place only when the delta is
                // ahead of every instant most commands ask for.
                let (delta, save) = match delta {
                    Some((d, _, _)) if d.as_of() > as_of => {
                        if d.as_of() <= now {
                            note = Some(format!("{DELTA} holds {}, after {as_of}", d.as_of()));
                        }
                        (None, d.as_of() > now)
                    }
                    d => (d, true),
                };
                let marks = match &delta {
                    Some((_, m, _)) => Marks::decode(m),
                    None => Marks::decode(c.position()),
                };
                let delta = delta.map(|(d, _, ids)| (d, ids));
                match marks {
                    Some(m) => {
                        let base = Base { c, delta, most, save, note };
                        match forward(data, cfg, key, base, &m, as_of)? {
                            Ok(s) => return Ok(s),
                            Err(why) => why,
                        }
                    }
                    None => format!("{path}: damaged marks; folding the log again"),
                }
            }
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

/// Folds the whole log at `as_of` into a checkpoint, saved when `save` (its delta, of the
/// checkpoint it replaces, then removed).
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
    let c = keep(data, FILE, key, image, (as_of, &marks), save, &mut said)?;
    if save {
        remove_delta(data, &mut said);
    }
    said.push_str(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
    finish(data, cfg, c, None, Vec::new(), Default::default(), as_of, Some(said))
}

/// Removes the delta of a checkpoint just replaced. Left behind, it would name a base
/// that is gone and be passed over; removing it is only tidiness, so a failure is said,
/// not returned.
fn remove_delta(data: &Path, said: &mut String) {
    let path = state::dir(data).join(DELTA);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            said.push_str(&format!("; {}: {e} (left, unused)", path.display()))
        }
        _ => {}
    }
}

/// Saves `image` (made at `expect`'s instant and position) as `DATA/state/NAME` (when
/// `save`) and opens it: from its file, or from memory when it was not saved (the reason
/// added to `said`).
fn keep(
    data: &Path,
    name: &str,
    key: &[u8],
    image: checkpoint::Image,
    expect: (Timestamp, &[u8]),
    save: bool,
    said: &mut String,
) -> Result<LedgerCheckpoint<Bytes>, EngineError> {
    let saved = match save.then(|| state::write_parts(data, name, &image.parts())) {
        Some(Ok(())) => opened(data, name),
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

/// `DATA/state/NAME`, opened; `None` when there is none.
fn opened(data: &Path, name: &str) -> Result<Option<Bytes>, EngineError> {
    let Some(f) = state::open(data, name)? else { return Ok(None) };
    match f.metadata() {
        Ok(m) => Ok(Some(Bytes::File(f, m.len()))),
        Err(source) => Err(EngineError::Io { path: state::dir(data).join(name), source }),
    }
}

/// What names the checkpoint a delta applies to: its instant, size and position (two
/// checkpoints alike in all three hold the same fold).
fn base_id(c: &LedgerCheckpoint<Bytes>) -> Vec<u8> {
    let mut id = Vec::with_capacity(16 + c.position().len());
    id.extend_from_slice(&c.as_of().0.to_le_bytes());
    id.extend_from_slice(&c.size().to_le_bytes());
    id.extend_from_slice(c.position());
    id
}

/// A delta's position: the length of its base's id, that id, then the marks its accounts
/// were folded at.
fn delta_position(base: &LedgerCheckpoint<Bytes>, marks: &[u8]) -> Vec<u8> {
    let id = base_id(base);
    let mut p = Vec::with_capacity(4 + id.len() + marks.len());
    p.extend_from_slice(&(id.len() as u32).to_le_bytes());
    p.extend_from_slice(&id);
    p.extend_from_slice(marks);
    p
}

/// A delta opened, with the marks its accounts were folded at and their ids (sorted).
type Delta = (LedgerCheckpoint<Bytes>, Vec<u8>, Vec<String>);

/// The delta beside `base` with the marks it was folded at and its accounts' ids, when
/// there is one made for it; else `None`, with a note for the person asking when one was
/// there but unusable (damaged anywhere, every chunk is read; or of other settings: it is
/// replaced at the next save). A delta of another checkpoint (left by one replaced) is
/// passed over without a word.
fn delta_of(
    data: &Path,
    key: &[u8],
    base: &LedgerCheckpoint<Bytes>,
) -> (Option<Delta>, Option<String>) {
    let bytes = match opened(data, DELTA) {
        Ok(Some(b)) => b,
        Ok(None) => return (None, None),
        Err(e) => return (None, Some(e.to_string())),
    };
    let d = match LedgerCheckpoint::open(bytes, key) {
        Ok(d) => d,
        Err(e) => return (None, Some(format!("{DELTA}: {e}"))),
    };
    let p = d.position();
    let split = p.get(..4).and_then(|n| {
        let n = u32::from_le_bytes(n.try_into().expect("4 bytes")) as usize;
        Some((p.get(4..4usize.checked_add(n)?)?, p.get(4 + n..)?))
    });
    match split {
        Some((id, marks)) if id == base_id(base) => {
            let marks = marks.to_vec();
            match ids_of(&d) {
                Ok(ids) => (Some((d, marks, ids)), None),
                Err(e) => (None, Some(format!("{DELTA}: {e}"))),
            }
        }
        Some(_) => (None, None),
        None => (None, Some(format!("{DELTA}: damaged position"))),
    }
}

/// The ids of a checkpoint's accounts, sorted.
fn ids_of(c: &LedgerCheckpoint<Bytes>) -> Result<Vec<String>, CheckpointError> {
    let want = checkpoint::Want { cs: false, attributes: false, display: false };
    let parts = c.map_chunks(&[], want, |a| a.iter().map(|a| a.id.clone()).collect::<Vec<_>>())?;
    Ok(parts.concat())
}

/// The state from `c`, its delta (holding the accounts `delta_ids`) and the accounts
/// folded again (with their folds' `diagnostics`), with the costs at `as_of`.
#[allow(clippy::too_many_arguments)]
fn finish(
    data: &Path,
    cfg: &Config,
    checkpoint: LedgerCheckpoint<Bytes>,
    delta: Option<LedgerCheckpoint<Bytes>>,
    delta_ids: Vec<String>,
    (refolded, folded_diagnostics): (Vec<AccountLedger>, Vec<Diagnostic>),
    as_of: Timestamp,
    said: Option<String>,
) -> Result<LedgerState, EngineError> {
    let (costs, mut diagnostics) = costs(data, cfg, as_of)?;
    diagnostics.extend_from_slice(checkpoint.diagnostics());
    if let Some(d) = &delta {
        diagnostics.extend_from_slice(d.diagnostics());
    }
    diagnostics.extend(folded_diagnostics);
    diagnostics.sort();
    diagnostics.dedup();
    let skip_delta: Vec<String> = refolded.iter().map(|a| a.id.clone()).collect();
    let mut skip = delta_ids;
    skip.extend_from_slice(&skip_delta);
    skip.sort_unstable();
    skip.dedup();
    Ok(LedgerState {
        checkpoint,
        delta,
        refolded,
        skip,
        skip_delta,
        as_of,
        costs,
        diagnostics,
        said,
    })
}

/// More accounts to fold again than this share of them: one fold of the whole log is
/// faster than reading each one's records through the index.
fn too_many(changed: usize, accounts: usize) -> bool {
    changed > accounts / 4 + 64
}

/// Accounts folded again only because time passed (no new record names them), past which
/// the state is saved at the new instant rather than folding them at every command.
const SAVE_PAST: usize = 1000;

/// The saved state a command starts from: the checkpoint, its delta when one was made for
/// it, how many accounts a delta may hold, whether what is brought forward may be saved,
/// and a note for the person asking about a delta passed over.
struct Base {
    c: LedgerCheckpoint<Bytes>,
    /// The delta with its accounts' ids.
    delta: Option<(LedgerCheckpoint<Bytes>, Vec<String>)>,
    most: usize,
    save: bool,
    note: Option<String>,
}

/// `base` (its delta, or else the checkpoint, noted at `marks`) brought to `as_of`;
/// `Err(why)` when the whole log should be folded instead.
fn forward(
    data: &Path,
    cfg: &Config,
    key: &[u8],
    base: Base,
    marks: &Marks,
    as_of: Timestamp,
) -> Result<Result<LedgerState, String>, EngineError> {
    let started = std::time::Instant::now();
    let Base { c, delta, most, save, note } = base;
    let path = state::dir(data).join(FILE);
    let path = path.display();
    let (delta, delta_ids) = match delta {
        Some((d, ids)) => (Some(d), ids),
        None => (None, Vec::new()),
    };
    // The accounts whose fold changes by `as_of`: the checkpoint's that the delta does not
    // hold again, and the delta's.
    let expired = c.changing_by(as_of).and_then(|mut ids| {
        ids.retain(|id| delta_ids.binary_search(id).is_err());
        if let Some(d) = &delta {
            ids.extend(d.changing_by(as_of)?);
        }
        Ok(ids)
    });
    let mut ids = match expired {
        Ok(ids) => ids,
        Err(e) => return Ok(Err(format!("{path}: {e}; folding the log again"))),
    };
    ids.sort_unstable();
    ids.dedup();
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
        let said = note.map(|n| format!("ledger state: {n}, passed over"));
        return Ok(Ok(finish(data, cfg, c, delta, delta_ids, Default::default(), as_of, said)?));
    }
    let mut said = format!(
        "ledger state: {} account{} folded again ({} named by new events, {} changing by {as_of})",
        refolded.len(),
        plural(refolded.len()),
        named_count,
        changing
    );
    if let Some(n) = &note {
        said.push_str(&format!("; {n}, passed over"));
    }
    if save && (new_records || changing > SAVE_PAST) {
        // The new marks only when the records since the old ones were read: records that
        // arrived after `marks.current` said there were none are left for the next command.
        let marks = if new_records {
            now.expect("marks taken with the reader").encode()
        } else {
            marks.encode()
        };
        // What the delta holds from now: its accounts not folded again, and those folded.
        let mut merged = match &delta {
            Some(d) => match d.accounts(checkpoint::Want::ALL) {
                Ok(all) => all,
                Err(e) => return Ok(Err(format!("{DELTA}: {e}; folding the log again"))),
            },
            None => Vec::new(),
        };
        merged.retain(|a| refolded.binary_search_by(|r| r.id.cmp(&a.id)).is_err());
        merged.append(&mut refolded);
        merged.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let mut all_diagnostics = delta.as_ref().map_or(Vec::new(), |d| d.diagnostics().to_vec());
        all_diagnostics.extend_from_slice(&diagnostics);
        all_diagnostics.sort();
        all_diagnostics.dedup();
        drop(delta);
        if merged.len() <= most {
            let position = delta_position(&c, &marks);
            let image = checkpoint::encode(key, &position, as_of, &merged, &all_diagnostics);
            let ids: Vec<String> = merged.iter().map(|a| a.id.clone()).collect();
            drop(merged);
            said.push_str(&format!(
                ", {} account{} saved beside {path}",
                ids.len(),
                plural(ids.len())
            ));
            let d = keep(data, DELTA, key, image, (as_of, &position), true, &mut said)?;
            said.push_str(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
            let folded = (Vec::new(), diagnostics);
            return Ok(Ok(finish(data, cfg, c, Some(d), ids, folded, as_of, Some(said))?));
        }
        let image = match c.forward(key, &marks, as_of, &merged, &all_diagnostics) {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("{path}: {e}; folding the log again"))),
        };
        drop(merged);
        drop(c);
        said.push_str(&format!(", {path} brought forward"));
        let c = keep(data, FILE, key, image, (as_of, &marks), true, &mut said)?;
        remove_delta(data, &mut said);
        said.push_str(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
        let folded = (Vec::new(), diagnostics);
        return Ok(Ok(finish(data, cfg, c, None, Vec::new(), folded, as_of, Some(said))?));
    }
    said.push_str(&format!(" ({:.1} s)", started.elapsed().as_secs_f64()));
    let folded = (refolded, diagnostics);
    Ok(Ok(finish(data, cfg, c, delta, delta_ids, folded, as_of, Some(said))?))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
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
