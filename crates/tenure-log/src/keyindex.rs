//! The idempotency index: which keys the log holds. Keys of recent records are in memory;
//! once the sealed segments' keys in memory pass a limit they are written as a sorted run
//! on disk ([`KeyRun`]) and dropped from memory, and runs of a size are merged, so memory
//! stays about the limit whatever the history, and an open holds only the keys no run
//! covers. Merges run on a thread of their own (the writer goes on with the runs merged
//! until the merged one is written, then swaps it in after a commit), so that a merge of
//! gigabytes never stalls a commit.
//!
//! `<log>/keys.idx/MANIFEST` names the runs and, for each lane, how many of its first
//! records they cover (always whole sealed segments, always committed). It is replaced
//! whole (written aside, synced, renamed); a run not in it is a leftover and is deleted.
//! A manifest that is missing or damaged is not trusted: the index starts empty, and every
//! segment's keys are read again from its key index, once all lanes are recovered, and
//! written to runs as they pass the limit (a rebuild holds no more than the limit either).

use crate::error::LogError;
use crate::keyrun::{self, KeyRun};
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

const MANIFEST_MAGIC: &str = "TNRKIDX1";
/// Runs of one level merged into one of the next when there are this many.
const FAN_IN: usize = 4;
/// Sealed keys in memory a writer's close writes as a run ([`KeyIndex::flush_at_close`]),
/// at most (a sixteenth of the limit when that is less): the next open reads at most about
/// this many from the segments' key indexes.
const CLOSE_FLUSH: usize = 1 << 20;
/// Lookups after an open before the runs' filters are loaded: below it, a page read per
/// run and key costs less than loading 1.25 bytes a key of history.
const LOAD_FILTERS_AFTER: u32 = 1024;

pub(crate) struct KeyIndex {
    dir: PathBuf,
    /// Keys not in any run: pending records', open segments', and sealed segments' since
    /// the last flush.
    mem: FxHashSet<u128>,
    /// How many keys of `mem` are of sealed segments (committed): the next run's.
    sealed: usize,
    /// Per lane, records of sealed segments whose keys are in runs or in `sealed`.
    sealed_upto: BTreeMap<String, u64>,
    /// Per lane, records whose keys are in runs.
    covered: BTreeMap<String, u64>,
    /// Runs with their level (a flush is level 0; `FAN_IN` runs of a level merge into one
    /// of the next).
    runs: Vec<(u32, Arc<KeyRun>)>,
    in_runs: u64,
    /// The merge under way, if any (one at a time).
    merging: Option<Merge>,
    /// Why the last merge failed (its runs stay as they were).
    merge_error: Option<String>,
    /// Keys of sealed segments that open segments hold too, for the next run.
    also_sealed: Vec<u128>,
    /// Tells the thread loading the runs' filters after an open to stop (the index closed).
    stop_loading: Arc<AtomicBool>,
    /// Runs opened from disk whose filters are not loading yet, and the lookups so far.
    unloaded: Vec<Arc<KeyRun>>,
    lookups: u32,
    /// Sealed keys held in memory before they are flushed as a run.
    limit: usize,
    next_run: u64,
    /// Files of the index directory to keep when it is settled (the runs trusted and, if
    /// any, their manifest).
    keep: std::collections::BTreeSet<String>,
}

/// A merge on its thread: the level of the runs it merges, and those runs (still in use).
struct Merge {
    level: u32,
    parts: Vec<Arc<KeyRun>>,
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<Result<KeyRun, LogError>>,
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("in_memory", &self.mem.len())
            .field("runs", &self.runs.len())
            .field("in_runs", &self.in_runs)
            .finish()
    }
}

pub(crate) fn index_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("keys.idx")
}

/// Forgets the index (a repair changed segments): the next open rebuilds it.
pub(crate) fn remove(log_dir: &Path) -> Result<(), LogError> {
    let dir = index_dir(log_dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => crate::lane::sync_dir(log_dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(&dir, e)),
    }
}

/// What the manifest says the runs cover (records per lane), if there is a valid one.
pub(crate) fn coverage(log_dir: &Path) -> Option<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(index_dir(log_dir).join("MANIFEST")).ok()?;
    parse_manifest(&text).map(|m| m.covered)
}

/// The first damage in the runs a valid manifest names (every page of keys read and
/// checked): the run, the offset and why. A missing or damaged manifest is no damage: the
/// writer does not trust it and rebuilds the index.
pub(crate) fn check_runs(log_dir: &Path) -> Option<(PathBuf, u64, String)> {
    let dir = index_dir(log_dir);
    let text = std::fs::read_to_string(dir.join("MANIFEST")).ok()?;
    let manifest = parse_manifest(&text)?;
    let check = |path: &Path, count: u64| -> Result<(), LogError> {
        let run = KeyRun::open(path)?;
        if run.len() != count {
            let why = format!("the manifest names {count} keys, the run holds {}", run.len());
            return Err(LogError::corrupt(path, 0, why));
        }
        run.load_filter()?;
        run.keys().try_for_each(|k| k.map(drop))
    };
    manifest.runs.iter().find_map(|(name, _, count)| {
        let path = dir.join(name);
        match check(&path, *count) {
            Ok(()) => None,
            Err(LogError::Corrupt { path, offset, reason }) => Some((path, offset, reason)),
            Err(e) => Some((path, 0, e.to_string())),
        }
    })
}

impl KeyIndex {
    /// Opens the index of the log in `log_dir` (the writer's lock held): its runs as the
    /// manifest names them, or none (and an empty directory) when there is no valid one.
    pub(crate) fn open(log_dir: &Path, limit: usize) -> Result<KeyIndex, LogError> {
        let dir = index_dir(log_dir);
        let mut index = KeyIndex {
            dir: dir.clone(),
            mem: FxHashSet::default(),
            sealed: 0,
            sealed_upto: BTreeMap::new(),
            covered: BTreeMap::new(),
            runs: Vec::new(),
            in_runs: 0,
            merging: None,
            merge_error: None,
            also_sealed: Vec::new(),
            stop_loading: Arc::new(AtomicBool::new(false)),
            unloaded: Vec::new(),
            lookups: 0,
            limit: limit.max(1),
            next_run: 0,
            keep: std::collections::BTreeSet::new(),
        };
        if !dir.is_dir() {
            return Ok(index);
        }
        let path = dir.join("MANIFEST");
        let manifest = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // Damage (not UTF-8) is distrusted below; other errors are errors.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Some(String::new()),
            Err(e) => return Err(LogError::io(&path, e)),
        };
        let listed = manifest.as_deref().and_then(parse_manifest);
        if let Some(m) = listed {
            index.next_run = m.next_run;
            let mut runs = Vec::new();
            for (name, level, count) in &m.runs {
                match KeyRun::open(&dir.join(name)) {
                    Ok(run) if run.len() == *count => runs.push((*level, Arc::new(run))),
                    // A run the manifest names is damaged or gone: trust none of them.
                    Ok(_) | Err(LogError::Corrupt { .. }) => break,
                    Err(LogError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if runs.len() == m.runs.len() {
                // Their filters (about 1.25 bytes a key) load once the writer has looked up
                // enough keys to need them (a one-event import never does).
                index.unloaded = runs.iter().map(|(_, r)| Arc::clone(r)).collect();
                index.keep.extend(m.runs.iter().map(|(n, ..)| n.clone()));
                index.keep.insert("MANIFEST".into());
                index.in_runs = runs.iter().map(|(_, r)| r.len()).sum();
                index.runs = runs;
                index.covered = m.covered;
                index.sealed_upto = index.covered.clone();
            }
        }
        Ok(index)
    }

    /// Forgets the runs (their coverage does not fit the log): every key is read again.
    /// Nothing on disk changes until [`settle`](Self::settle).
    pub(crate) fn distrust(&mut self) {
        debug_assert!(self.merging.is_none(), "distrusted after a merge began");
        self.runs.clear();
        self.unloaded.clear();
        self.in_runs = 0;
        self.covered.clear();
        self.sealed_upto.clear();
        self.keep.clear();
    }

    /// Once the log is recovered (nothing on disk changes before, so that a refused open
    /// changes nothing): the directory made, and leftovers of a flush or merge cut short and
    /// whatever was not trusted deleted.
    pub(crate) fn settle(&mut self, log_dir: &Path) -> Result<(), LogError> {
        let dir = &self.dir;
        if !dir.is_dir() {
            std::fs::create_dir(dir).map_err(|e| LogError::io(dir, e))?;
            crate::lane::sync_dir(log_dir)?;
        }
        for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
            let entry = entry.map_err(|e| LogError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !self.keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Whether the manifest's coverage fits the lanes on disk: `ends` is, per lane, where
    /// each of its sealed segments ends (the first record of the segment after it).
    /// Coverage that is not such a boundary (or names a lane that is gone) cannot come from
    /// this log's history: the index is then not trusted.
    pub(crate) fn fits(&self, sealed: &BTreeMap<String, Vec<u64>>) -> bool {
        self.covered.iter().all(|(lane, n)| {
            *n == 0 || sealed.get(lane).is_some_and(|ends| ends.binary_search(n).is_ok())
        })
    }

    /// Records of `lane` whose keys are in runs (a sealed-segment boundary).
    pub(crate) fn covered(&self, lane: &str) -> u64 {
        self.covered.get(lane).copied().unwrap_or(0)
    }

    /// Whether the log holds `key` (stored or pending).
    pub(crate) fn contains(&self, key: u128) -> Result<bool, LogError> {
        Ok(self.mem.contains(&key) || self.in_runs(key)?)
    }

    /// Loads the filters of the runs opened from disk on a thread of their own (lookups
    /// read a page per run until each is in), once [`LOAD_FILTERS_AFTER`] lookups show
    /// they are worth it.
    fn count_lookup(&mut self) {
        self.lookups += 1;
        if self.lookups < LOAD_FILTERS_AFTER {
            return;
        }
        let loading = std::mem::take(&mut self.unloaded);
        let stop = Arc::clone(&self.stop_loading);
        let spawned =
            std::thread::Builder::new().name("tenure-log-keys-filters".into()).spawn(move || {
                for run in loading {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // A damaged filter stays out: lookups read pages, and `verify` says.
                    let _ = run.load_filter();
                }
            });
        // No thread to be had: lookups go on reading pages.
        drop(spawned);
    }

    /// Claims `key`: `true` if it is new (and now held), `false` if the log holds it.
    #[inline]
    pub(crate) fn insert(&mut self, key: u128) -> Result<bool, LogError> {
        if !self.unloaded.is_empty() {
            self.count_lookup();
        }
        // The runs first: then one probe of memory, the insert, tells the rest.
        Ok(!self.in_runs(key)? && self.mem.insert(key))
    }

    fn in_runs(&self, key: u128) -> Result<bool, LogError> {
        for (_, run) in &self.runs {
            if run.contains(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Lets go of a key claimed by [`insert`](Self::insert) whose record was not appended.
    pub(crate) fn forget(&mut self, key: u128) {
        self.mem.remove(&key);
    }

    /// A key read back from a segment no run covers, at open: `false` if it was seen.
    pub(crate) fn load(&mut self, key: u128) -> bool {
        self.mem.insert(key)
    }

    /// A key of a sealed segment no run covers, at open, after the open segments' keys:
    /// `false` if it was seen. A key an open segment holds too (a duplicate a log of an
    /// earlier version may hold) still goes to the next run, which the flush, leaving out
    /// the open segments' keys, would otherwise miss: the run then covers the sealed
    /// segment whatever becomes of the open one.
    pub(crate) fn load_sealed(&mut self, key: u128) -> bool {
        let new = self.mem.insert(key);
        if !new {
            self.also_sealed.push(key);
        }
        new
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        // More than the limit would be flushed anyway: no need to size for it.
        self.mem.reserve(additional.min(self.limit));
    }

    /// Keys held in memory.
    pub(crate) fn in_memory(&self) -> u64 {
        self.mem.len() as u64
    }

    /// Keys held in all.
    pub(crate) fn len(&self) -> u64 {
        self.mem.len() as u64 + self.in_runs
    }

    /// A segment of `lane` was sealed (its records committed and synced): how many keys it
    /// holds, and the records of the lane up to its end.
    pub(crate) fn sealed(&mut self, lane: &str, upto: u64, keys: usize) {
        self.sealed += keys;
        self.sealed_upto.insert(lane.to_owned(), upto);
    }

    /// Swaps in a finished merge, then writes the sealed keys held in memory as a run once
    /// they pass the limit (starting a merge of a level's runs when there are [`FAN_IN`]
    /// of them), then holds in memory only the
    /// keys `active` gives: those of the lanes' open segments. Called with nothing pending
    /// (after a commit, or at open), when those are all the keys no run holds.
    pub(crate) fn maybe_flush<I: IntoIterator<Item = u128>>(
        &mut self,
        active: impl FnOnce() -> I,
    ) -> Result<(), LogError> {
        self.flush_over(self.limit, true, active)
    }

    /// As [`maybe_flush`](Self::maybe_flush), once the sealed keys pass `over`; the run it
    /// writes, or a finished merge it swaps in, starts the next merge only if `merge`.
    fn flush_over<I: IntoIterator<Item = u128>>(
        &mut self,
        over: usize,
        merge: bool,
        active: impl FnOnce() -> I,
    ) -> Result<(), LogError> {
        self.reap(false, merge)?;
        if self.sealed < over {
            return Ok(());
        }
        // The sealed segments' keys are those of memory but the open segments' (no copy
        // of them is kept on the way); memory is then cleared and given the open segments'
        // back, rather than emptied key by key (each removal a miss to memory). Its table
        // is kept: a new one of the same size, hundreds of megabytes, would have every page
        // faulted and zeroed again by the kernel as the next keys fill it (measured: a
        // seventh of a 25 M-event import's time went to a fresh table and a growing vector
        // here).
        let open: FxHashSet<u128> = active().into_iter().collect();
        let mut keys = Vec::with_capacity(self.mem.len() + self.also_sealed.len());
        keys.extend(self.mem.iter().filter(|k| !open.contains(k)));
        keys.append(&mut self.also_sealed);
        keys.sort_unstable();
        keys.dedup();
        self.flush(&keys, merge)?;
        drop(keys);
        self.mem.clear();
        self.mem.extend(open);
        self.sealed = 0;
        Ok(())
    }

    /// As [`maybe_flush`](Self::maybe_flush), as the writer closes, with a lower limit
    /// ([`CLOSE_FLUSH`]): the sealed keys held in memory are written as a run once they
    /// pass it, so that the next open does not read them again from the segments' key
    /// indexes (up to the limit: seconds for a small import into a large log). The run
    /// starts no merge, which the close would cancel at once: the next open starts it.
    pub(crate) fn flush_at_close<I: IntoIterator<Item = u128>>(
        &mut self,
        active: impl FnOnce() -> I,
    ) -> Result<(), LogError> {
        self.flush_over((self.limit / 16).clamp(1, CLOSE_FLUSH), false, active)
    }

    fn flush(&mut self, keys: &[u128], merge: bool) -> Result<(), LogError> {
        let name = self.run_name();
        let run = KeyRun::write(&self.dir.join(&name), keys.len() as u64, keys.iter().copied())?;
        self.runs.push((0, Arc::new(run)));
        self.in_runs += keys.len() as u64;
        self.covered = self.sealed_upto.clone();
        // The merge's name is taken before the manifest is written, so that the manifest's
        // `next` is past it and no later run can take it, whatever happens to this process.
        if merge {
            self.start_merge();
        }
        self.write_manifest()
    }

    /// Starts merging the runs of the lowest level that has [`FAN_IN`] of them, unless a
    /// merge is under way (also at open: merges a closed writer cancelled start again).
    pub(crate) fn start_merge(&mut self) {
        if self.merging.is_some() {
            return;
        }
        let Some(level) = (0..)
            .take_while(|l| self.runs.iter().any(|(rl, _)| rl >= l))
            .find(|l| self.runs.iter().filter(|(rl, _)| rl == l).count() >= FAN_IN)
        else {
            return;
        };
        let parts: Vec<Arc<KeyRun>> = self
            .runs
            .iter()
            .filter(|(l, _)| *l == level)
            .take(FAN_IN)
            .map(|(_, r)| Arc::clone(r))
            .collect();
        let name = self.run_name();
        let path = self.dir.join(name);
        let cancel = Arc::new(AtomicBool::new(false));
        let (p, c) = (parts.clone(), Arc::clone(&cancel));
        let spawned =
            std::thread::Builder::new().name("tenure-log-keys-merge".into()).spawn(move || {
                let refs: Vec<&KeyRun> = p.iter().map(|r| &**r).collect();
                keyrun::merge(&path, &refs, &c)
            });
        // No thread to be had: the runs stay as they are (lookups probe more of them) and
        // the next flush tries again.
        if let Ok(thread) = spawned {
            self.merging = Some(Merge { level, parts, cancel, thread });
        }
    }

    /// Swaps a finished merge in (`wait`: waits for it): the merged run replaces its parts
    /// in the manifest, then their files go, and the next merge starts if `next` (not as the
    /// index closes: it would be cancelled at once, its work done again at the next open). A
    /// merge that failed leaves the runs as they were (lookups still answer right, probing
    /// more runs): the failure is kept for [`merge_error`](Self::merge_error) and the next
    /// flush tries again. A damaged run found while merging is an error, and the manifest
    /// is removed so that the next open does not trust the runs.
    pub(crate) fn reap(&mut self, wait: bool, next: bool) -> Result<(), LogError> {
        match &self.merging {
            Some(m) if wait || m.thread.is_finished() => {}
            _ => return Ok(()),
        }
        let Some(m) = self.merging.take() else { return Ok(()) };
        let merged = match m.thread.join() {
            Ok(r) => r,
            Err(_) => Err(LogError::io(&self.dir, std::io::Error::other("the key merge panicked"))),
        };
        let merged = match merged {
            Ok(run) => run,
            Err(e @ LogError::Corrupt { .. }) => {
                let _ = std::fs::remove_file(self.dir.join("MANIFEST"));
                return Err(e);
            }
            Err(e) => {
                self.merge_error = Some(e.to_string());
                return Ok(());
            }
        };
        self.merge_error = None;
        let gone = |r: &Arc<KeyRun>| m.parts.iter().any(|p| Arc::ptr_eq(p, r));
        self.runs.retain(|(_, r)| !gone(r));
        self.runs.push((m.level + 1, Arc::new(merged)));
        self.in_runs = self.runs.iter().map(|(_, r)| r.len()).sum();
        if next {
            self.start_merge();
        }
        self.write_manifest()?;
        for part in &m.parts {
            let _ = std::fs::remove_file(part.path());
        }
        Ok(())
    }

    /// Why the last merge of runs failed, if it did (cleared by one that succeeds).
    pub(crate) fn merge_error(&self) -> Option<&str> {
        self.merge_error.as_deref()
    }

    fn run_name(&mut self) -> String {
        self.next_run += 1;
        format!("{:012}.run", self.next_run)
    }

    fn write_manifest(&self) -> Result<(), LogError> {
        let mut text = format!("{MANIFEST_MAGIC}\nnext {}\n", self.next_run);
        for (level, run) in &self.runs {
            let name = run.path().file_name().map(|n| n.to_string_lossy().into_owned());
            text.push_str(&format!("run {} {level} {}\n", name.unwrap_or_default(), run.len()));
        }
        for (lane, n) in &self.covered {
            text.push_str(&format!("lane {lane} {n}\n"));
        }
        text.push_str(&format!("crc {:08x}\n", crc32fast::hash(text.as_bytes())));
        let path = self.dir.join("MANIFEST");
        let tmp = self.dir.join("MANIFEST.tmp");
        let io = |e| LogError::io(&tmp, e);
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
        crate::lane::sync_dir(&self.dir)
    }
}

impl Drop for KeyIndex {
    /// A finished merge is swapped in; one under way is cancelled (its partial file is a
    /// leftover the next open deletes; the runs it was merging stay named by the manifest,
    /// and the next open starts it again). The log's lock is released only after this.
    fn drop(&mut self) {
        // The filter loader only reads: it is told to stop, not waited for.
        self.stop_loading.store(true, Ordering::Relaxed);
        if let Some(m) = &self.merging {
            m.cancel.store(true, Ordering::Relaxed);
        }
        // Best effort: what fails is left as it was, for the next open (which starts the
        // next merge).
        let _ = self.reap(true, false);
    }
}

struct Manifest {
    next_run: u64,
    runs: Vec<(String, u32, u64)>,
    covered: BTreeMap<String, u64>,
}

fn parse_manifest(text: &str) -> Option<Manifest> {
    let (body, last) = text.trim_end_matches('\n').rsplit_once('\n')?;
    let crc = u32::from_str_radix(last.strip_prefix("crc ")?, 16).ok()?;
    let body = format!("{body}\n");
    if crc != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != MANIFEST_MAGIC {
        return None;
    }
    let mut m = Manifest { next_run: 0, runs: Vec::new(), covered: BTreeMap::new() };
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["next", n] => m.next_run = n.parse().ok()?,
            ["run", name, level, count]
                if name.ends_with(".run") && !name.contains('/') && !name.contains('\\') =>
            {
                m.runs.push((name.to_string(), level.parse().ok()?, count.parse().ok()?))
            }
            ["lane", lane, n] if crate::format::is_valid_lane(lane) => {
                m.covered.insert(lane.to_string(), n.parse().ok()?);
            }
            _ => return None,
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> u128 {
        (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
    }

    /// An index of `limit` keys in memory on an empty log directory.
    fn fresh(log: &Path, limit: usize) -> KeyIndex {
        let mut index = KeyIndex::open(log, limit).unwrap();
        index.settle(log).unwrap();
        index
    }

    /// Claims keys `n..n + count` (each new), seals them, and moves `n` past them.
    fn seal(index: &mut KeyIndex, n: &mut u64, count: usize) {
        for _ in 0..count {
            assert!(index.insert(key(*n)).unwrap(), "key {n} taken for a duplicate");
            *n += 1;
        }
        index.sealed("usage", *n, count);
    }

    /// Flushes of ten keys each, merged four at a time on the merge thread while flushes go
    /// on: every key stays found (during merges, after them, and after a reopen), no other
    /// key is, and the runs merged are gone from disk once the merged one is named.
    #[test]
    fn merges_aside_keep_every_key() {
        let log = tempfile::tempdir().unwrap();
        let mut index = fresh(log.path(), 10);
        let mut n = 0;
        for flush in 0..64u64 {
            seal(&mut index, &mut n, 10);
            index.maybe_flush(Vec::new).unwrap();
            for i in (0..n).step_by(7) {
                assert!(!index.insert(key(i)).unwrap(), "key {i} lost after flush {flush}");
            }
        }
        index.reap(true, true).unwrap();
        while index.merging.is_some() {
            index.reap(true, true).unwrap();
        }
        // 64 flushes of one level-0 run each: merged into one run of level 3.
        let levels: Vec<u32> = index.runs.iter().map(|(l, _)| *l).collect();
        assert_eq!(levels, [3], "runs after the merges: {levels:?}");
        assert_eq!(index.len(), 640);
        let files = std::fs::read_dir(index_dir(log.path())).unwrap().count();
        assert_eq!(files, 2, "the manifest and one run, no merged leftovers");
        drop(index);
        let reopened = KeyIndex::open(log.path(), 10).unwrap();
        assert_eq!(reopened.covered("usage"), 640);
        for i in 0..n {
            assert!(reopened.contains(key(i)).unwrap(), "key {i} lost by the reopen");
        }
        for i in n..n + 1000 {
            assert!(!reopened.contains(key(i)).unwrap(), "key {i} found, never inserted");
        }
    }

    /// A close's flush starts no merge (the close would cancel it at once, and the work be
    /// done again): the next open starts it, and every key stays found.
    #[test]
    fn a_close_flush_leaves_the_merge_to_the_next_open() {
        let log = tempfile::tempdir().unwrap();
        // A close flushes past a sixteenth of the limit: 2 keys.
        let limit = 32;
        let mut index = fresh(log.path(), limit);
        let mut n = 0;
        for _ in 0..FAN_IN - 1 {
            seal(&mut index, &mut n, limit);
            index.maybe_flush(Vec::new).unwrap();
        }
        assert_eq!((index.runs.len(), index.merging.is_none()), (FAN_IN - 1, true));
        seal(&mut index, &mut n, 10);
        index.flush_at_close(Vec::new).unwrap();
        assert_eq!(index.runs.len(), FAN_IN, "the close wrote its run");
        assert!(index.merging.is_none(), "and started no merge");
        drop(index);
        let mut reopened = KeyIndex::open(log.path(), limit).unwrap();
        reopened.settle(log.path()).unwrap();
        // As the writer's open does.
        reopened.start_merge();
        assert!(reopened.merging.is_some(), "the open starts the merge");
        reopened.reap(true, true).unwrap();
        assert_eq!(reopened.runs.len(), 1);
        for i in 0..n {
            assert!(reopened.contains(key(i)).unwrap(), "key {i} lost");
        }
        assert!(!reopened.contains(key(n)).unwrap());
    }

    /// A merge cut short by closing the index leaves the runs it was merging named and its
    /// partial output a leftover, which the next open deletes.
    #[test]
    fn a_cancelled_merge_loses_nothing() {
        let log = tempfile::tempdir().unwrap();
        let limit = 200_000;
        let mut index = fresh(log.path(), limit);
        let mut n = 0;
        for _ in 0..FAN_IN {
            seal(&mut index, &mut n, limit);
            index.maybe_flush(Vec::new).unwrap();
        }
        assert!(index.merging.is_some() || index.runs.len() == 1);
        drop(index);
        let mut reopened = KeyIndex::open(log.path(), limit).unwrap();
        reopened.settle(log.path()).unwrap();
        let files = std::fs::read_dir(index_dir(log.path())).unwrap().count();
        assert_eq!(files, reopened.runs.len() + 1, "leftovers beside the named runs");
        for i in (0..n).step_by(97) {
            assert!(reopened.contains(key(i)).unwrap(), "key {i} lost");
        }
        assert_eq!(reopened.len(), n);
    }
}
