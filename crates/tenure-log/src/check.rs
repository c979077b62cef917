//! `verify` and `repair`: the full check of a log directory (every segment, record, commit
//! record, key index and the lanes' continuity), and the explicit repair that follows from
//! it. Nothing here runs on its own: the writer's open only ever cuts off tails that no
//! commit record covers; everything else waits for an operator's `repair`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::LogError;
use crate::format::{
    self, COMMIT_RECORD_LEN, CommitRecord, FORMAT_VERSION, HeaderFault, KIND_REPAIR,
    LEGACY_FORMAT_VERSION, Mode, SEGMENT_HEADER_LEN, Walk,
};
use crate::lane::{self, IndexState, SegmentFile};

/// Where `repair` moves what it drops, inside the log directory (not a valid lane name, so
/// never read as one).
pub const DROPPED_DIR: &str = "repair-dropped";

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub lanes: usize,
    pub segments: u64,
    /// Readable records (up to the first damage of each segment).
    pub records: u64,
    pub bytes: u64,
    /// Segments of format 1 (no commit records).
    pub legacy_segments: u64,
    /// Key indexes checked against their segments.
    pub indexes: u64,
    /// A writer held the log while it was checked: the tails it may have been writing were
    /// not judged.
    pub writer_running: bool,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub lane: String,
    /// The damaged file, or the missing one.
    pub path: PathBuf,
    pub offset: u64,
    pub kind: ProblemKind,
    pub reason: String,
}

/// Kinds of [`Problem`], from the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Damaged data that may have been acknowledged: the writer refuses to open the log and
    /// readers refuse to read it. `repair` drops it (or rewrites it, when nothing is lost).
    Corrupt,
    /// A segment is missing: the records it held are not on disk.
    Missing,
    /// A tail that no commit record covers: a write that never completed, never
    /// acknowledged. The next writer open cuts it off.
    TornTail,
    /// A damaged or stale key index: harmless (it only repeats its segment's keys); the
    /// next writer open writes it again.
    Index,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Missing => "missing",
            ProblemKind::TornTail => "torn_tail",
            ProblemKind::Index => "index",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: offset {}: {}", self.path.display(), self.offset, self.reason)
    }
}

/// What [`repair`] did, or would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Whether the actions were carried out (`false`: a dry run, nothing changed).
    pub applied: bool,
    pub actions: Vec<RepairAction>,
}

impl RepairReport {
    /// Nothing to repair.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Readable records the repair drops (plus those of missing segments).
    pub fn records_lost(&self) -> u64 {
        self.actions.iter().map(|a| a.records).sum()
    }

    /// Of those, records a commit record covers: they may have been acknowledged.
    pub fn acknowledged_lost(&self) -> u64 {
        self.actions.iter().map(|a| a.acknowledged).sum()
    }

    /// Lanes that lose records (whose derived data, e.g. columnar tables, must be rebuilt).
    pub fn lanes_losing_records(&self) -> Vec<String> {
        let mut lanes: Vec<String> = self
            .actions
            .iter()
            .filter(|a| a.records > 0 || a.uncounted)
            .map(|a| a.lane.clone())
            .collect();
        lanes.dedup();
        lanes
    }
}

/// One step of a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairAction {
    pub lane: String,
    pub path: PathBuf,
    pub offset: u64,
    pub kind: RepairKind,
    /// Bytes taken out of the log (moved to `repair-dropped/`).
    pub bytes: u64,
    /// Readable records lost to the lane.
    pub records: u64,
    /// Of those, records a commit record covers: they may have been acknowledged.
    pub acknowledged: u64,
    /// Records were lost that cannot be counted: a damaged (unreadable) record, or the
    /// records of a missing last segment.
    pub uncounted: bool,
    pub reason: String,
    op: Op,
}

/// Kinds of [`RepairAction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairKind {
    /// The segment is cut at `offset`; the bytes after it are dropped.
    Truncate,
    /// The whole segment (and its key index) is dropped.
    DropSegment,
    /// A damaged or torn header in front of intact records is written again.
    RewriteHeader,
    /// A damaged copy of a commit record is written again from the intact copy.
    RewriteCommitCopy,
    /// Records kept in front of a cut get a commit record, so that the writer keeps them.
    AddCommit,
    /// A key index is removed (the next writer open writes it again).
    RemoveIndex,
    /// The records of a missing segment are given up.
    AcceptMissing,
}

impl RepairKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepairKind::Truncate => "truncate",
            RepairKind::DropSegment => "drop_segment",
            RepairKind::RewriteHeader => "rewrite_header",
            RepairKind::RewriteCommitCopy => "rewrite_commit_copy",
            RepairKind::AddCommit => "add_commit",
            RepairKind::RemoveIndex => "remove_index",
            RepairKind::AcceptMissing => "accept_missing",
        }
    }
}

/// What applying an action does on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Write these bytes at the action's offset.
    Patch(Vec<u8>),
    /// Move the bytes from the offset on aside, then cut the file there.
    Truncate,
    /// Write these bytes at the offset, the file's end.
    Append(Vec<u8>),
    /// Move the file (and its key index) aside.
    Move,
    /// Remove a key index that fails its own checks (the writer never used what it holds).
    RemoveIndex,
    /// Remove a key index that checks but disagrees with its segment: the keys it gave may
    /// be in the idempotency index's runs.
    RemoveStaleIndex,
    /// Remove the idempotency index's runs (`keys.idx/`): one of them is damaged.
    RemoveKeyIndex,
    Nothing,
}

impl fmt::Display for RepairAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: offset {}: ", self.path.display(), self.offset)?;
        let lost = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            write!(f, "{} readable records lost", self.records)?;
            if self.uncounted {
                f.write_str(", and more that cannot be counted")?;
            }
            match self.acknowledged {
                0 => f.write_str(", none of them acknowledged"),
                n if n == self.records => f.write_str(", all of them possibly acknowledged"),
                n => write!(f, ", {n} of them possibly acknowledged"),
            }
        };
        match self.kind {
            RepairKind::Truncate => {
                write!(f, "drop {} bytes to the end of the segment (", self.bytes)?;
                lost(f)?;
                write!(f, "): {}", self.reason)
            }
            RepairKind::DropSegment => {
                write!(f, "drop the segment, {} bytes (", self.bytes)?;
                lost(f)?;
                write!(f, "): {}", self.reason)
            }
            RepairKind::AcceptMissing => {
                f.write_str("give up the missing records (")?;
                lost(f)?;
                write!(f, "): {}", self.reason)
            }
            RepairKind::RewriteHeader
            | RepairKind::RewriteCommitCopy
            | RepairKind::AddCommit
            | RepairKind::RemoveIndex => write!(f, "{} (nothing lost)", self.reason),
        }
    }
}

/// Checks every lane of the log in `dir` completely: every segment's header, every record's
/// and commit record's checksum, what each commit record covers, the lanes' continuity
/// (missing segments, first, middle or last), and every key index against its segment
/// (keys, length and the whole segment's checksum). Changes nothing.
///
/// It holds the log's lock shared while it runs, so no writer starts meanwhile; when a
/// writer is already running, the tails it may be writing are not judged
/// ([`VerifyReport::writer_running`]).
pub fn verify(dir: &Path) -> Result<VerifyReport, LogError> {
    require_dir(dir)?;
    let (_lock, writer_running) = shared_lock(dir);
    let mut report = VerifyReport { writer_running, ..VerifyReport::default() };
    for name in lane::list_lanes(dir)? {
        let c = check_lane(dir, &name, writer_running)?;
        report.lanes += 1;
        report.segments += c.segments;
        report.records += c.records;
        report.bytes += c.bytes;
        report.legacy_segments += c.legacy;
        report.indexes += c.indexes;
        report.problems.extend(c.problems);
    }
    // A running writer merges runs and removes the merged ones: not judged then.
    if let Some((path, offset, why)) =
        (!writer_running).then(|| crate::keyindex::check_runs(dir)).flatten()
    {
        report.problems.push(Problem {
            lane: String::new(),
            path,
            offset,
            kind: ProblemKind::Index,
            reason: format!("{why}; `tenure repair` removes the key index (keys.idx) and the next writer open rebuilds it"),
        });
    }
    Ok(report)
}

/// Repairs the log in `dir` from what [`verify`] finds, or with `apply == false` only says
/// what it would do. It needs the log's lock ([`LogError::Locked`] while a server or an
/// import runs). Lossless fixes come first (a damaged header or commit record copy written
/// again, a damaged key index removed); otherwise each lane is cut at its first damage:
/// the records before it are kept (with a commit record, so the writer keeps them), the
/// rest of the lane is dropped. Dropped bytes are moved to `<dir>/repair-dropped/<lane>/`,
/// not deleted; re-importing the sources restores dropped events (their keys are new again).
pub fn repair(dir: &Path, apply: bool) -> Result<RepairReport, LogError> {
    require_dir(dir)?;
    let _lock = lane::lock(dir, true)?;
    let mut report = RepairReport { applied: apply, actions: Vec::new() };
    let mut lanes = Vec::new();
    for name in lane::list_lanes(dir)? {
        let c = check_lane(dir, &name, false)?;
        if let Some((path, version)) = c.unsupported {
            return Err(LogError::UnsupportedVersion { path, version });
        }
        lanes.push(name);
        report.actions.extend(c.actions);
    }
    if let Some((path, offset, why)) = crate::keyindex::check_runs(dir) {
        report.actions.push(RepairAction {
            lane: String::new(),
            path,
            offset,
            kind: RepairKind::RemoveIndex,
            bytes: 0,
            records: 0,
            acknowledged: 0,
            uncounted: false,
            reason: format!(
                "remove the key index (keys.idx), which the next writer open rebuilds: {why}"
            ),
            op: Op::RemoveKeyIndex,
        });
    }
    if apply {
        // The idempotency index's runs hold the keys of each lane's first `covered` records.
        // An action that may take out records (or keys) among those makes them untrue: the
        // index goes, durably, before anything is cut, and the next writer open rebuilds it
        // (re-importing the sources then restores what was cut). Lossless fixes (a header or
        // commit record written again, a commit added, a key index that fails its own
        // checks removed), and cuts past the covered records (a torn tail of a lane's open
        // segment, the usual repair), keep the runs.
        let covered = crate::keyindex::coverage(dir);
        let untrue = |a: &RepairAction| {
            let lossless = matches!(
                a.kind,
                RepairKind::RewriteHeader | RepairKind::RewriteCommitCopy | RepairKind::AddCommit
            ) || a.op == Op::RemoveIndex;
            if a.op == Op::RemoveKeyIndex {
                return true;
            }
            let base = a.path.file_stem().and_then(|s| s.to_str()?.parse::<u64>().ok());
            !lossless
                && match (&covered, base) {
                    (Some(c), Some(base)) => base < c.get(&a.lane).copied().unwrap_or(0),
                    _ => true,
                }
        };
        if report.actions.iter().any(untrue) {
            crate::keyindex::remove(dir)?;
        }
        for name in &lanes {
            let actions: Vec<&RepairAction> =
                report.actions.iter().filter(|a| &a.lane == name).collect();
            if !actions.is_empty() {
                apply_lane(dir, name, &actions)?;
            }
        }
    }
    Ok(report)
}

fn require_dir(dir: &Path) -> Result<(), LogError> {
    let meta = std::fs::metadata(dir).map_err(|e| LogError::io(dir, e))?;
    if !meta.is_dir() {
        let err =
            std::io::Error::new(std::io::ErrorKind::NotADirectory, "log path is not a directory");
        return Err(LogError::io(dir, err));
    }
    Ok(())
}

/// The lock held shared, if the log has a lock file (read-only: `verify` creates nothing),
/// and whether a writer holds it.
fn shared_lock(dir: &Path) -> (Option<File>, bool) {
    let Ok(file) = File::open(dir.join(lane::LOCK_FILE)) else { return (None, false) };
    match file.try_lock_shared() {
        Ok(()) => (Some(file), false),
        Err(std::fs::TryLockError::WouldBlock) => (None, true),
        Err(std::fs::TryLockError::Error(_)) => (None, false),
    }
}

/// The check of one lane.
#[derive(Debug, Default)]
struct LaneCheck {
    problems: Vec<Problem>,
    actions: Vec<RepairAction>,
    segments: u64,
    records: u64,
    bytes: u64,
    legacy: u64,
    indexes: u64,
    /// A segment of a format newer than this build: `repair` leaves the lane alone.
    unsupported: Option<(PathBuf, u16)>,
}

/// The segment before the current one, for when a cut makes it the lane's last.
struct Prev {
    path: PathBuf,
    len: u64,
    /// The commit record it needs at its end to keep its records after its last commit
    /// record (they belong to a commit that went on in the next segment).
    closing: Option<CommitRecord>,
    uncommitted: u64,
}

impl LaneCheck {
    fn problem(&mut self, lane: &str, path: &Path, offset: u64, kind: ProblemKind, reason: String) {
        self.problems.push(Problem {
            lane: lane.to_owned(),
            path: path.to_path_buf(),
            offset,
            kind,
            reason,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn action(
        &mut self,
        lane: &str,
        path: &Path,
        offset: u64,
        kind: RepairKind,
        (bytes, records, acknowledged, uncounted): (u64, u64, u64, bool),
        reason: String,
        op: Op,
    ) {
        self.actions.push(RepairAction {
            lane: lane.to_owned(),
            path: path.to_path_buf(),
            offset,
            kind,
            bytes,
            records,
            acknowledged,
            uncounted,
            reason,
            op,
        });
    }

    /// The segment before a cut becomes the lane's last: no key index beside it, and a
    /// commit record after records no commit record of its own covers.
    fn close_prev(&mut self, lane: &str, prev: Option<&Prev>) {
        let Some(p) = prev else { return };
        if let Some(c) = p.closing {
            let mut bytes = Vec::with_capacity(2 * COMMIT_RECORD_LEN);
            c.encode_twice(&mut bytes);
            let reason = format!(
                "add a commit record after the {} records at the end of the segment, which now ends the lane",
                p.uncommitted
            );
            self.action(
                lane,
                &p.path,
                p.len,
                RepairKind::AddCommit,
                (0, 0, 0, false),
                reason,
                Op::Append(bytes),
            );
        }
        if lane::keys_path(&p.path).exists() {
            let reason = "remove the key index of the segment that now ends the lane".to_string();
            self.action(
                lane,
                &lane::keys_path(&p.path),
                0,
                RepairKind::RemoveIndex,
                (0, 0, 0, false),
                reason,
                Op::RemoveIndex,
            );
        }
    }
}

/// Lists a lane's segments; misnamed `.seg` files are problems, not errors.
fn list(lane_dir: &Path, lane: &str, c: &mut LaneCheck) -> Result<Vec<SegmentFile>, LogError> {
    let mut segments = Vec::new();
    let entries = match std::fs::read_dir(lane_dir) {
        Ok(e) => e,
        Err(e) => return Err(LogError::io(lane_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(lane_dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        match format::parse_segment_file_name(&name) {
            None => {}
            Some(Ok(base)) => segments.push(SegmentFile { base, path }),
            Some(Err(())) => {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                let reason = "malformed segment file name".to_string();
                c.problem(lane, &path, 0, ProblemKind::Corrupt, reason.clone());
                c.action(
                    lane,
                    &path,
                    0,
                    RepairKind::DropSegment,
                    (len, 0, 0, true),
                    reason,
                    Op::Move,
                );
            }
        }
    }
    segments.sort_unstable_by_key(|s| s.base);
    Ok(segments)
}

/// What dropping a whole segment loses: `(records, acknowledged)`.
fn holds(buf: &[u8], base: u64, last: bool) -> (u64, u64) {
    match format::walk(buf, base) {
        Ok(w) => {
            let (more, covered) = match &w.fault {
                Some(f) => format::salvage(buf, f.at, w.version),
                None => (0, 0),
            };
            let acked = if last { w.committed_records + covered } else { w.records + more };
            (w.records + more, acked.min(w.records + more))
        }
        Err(_) => {
            let (records, covered) = format::salvage(buf, SEGMENT_HEADER_LEN - 1, FORMAT_VERSION);
            (records, if last { covered } else { records })
        }
    }
}

/// A damaged copy of a commit record whose other copy is intact: `(offset, good bytes)`.
/// Only bytes that still look like the copy they replace (a few bytes differ) are
/// rewritten, so that a damaged record after a single copy is never overwritten.
fn twin_patch(buf: &[u8], base: u64, w: &Walk, at: usize) -> Option<(usize, Vec<u8>)> {
    let n = COMMIT_RECORD_LEN;
    if w.version < FORMAT_VERSION {
        return None;
    }
    let close = |a: &[u8], b: &[u8]| a.iter().zip(b).filter(|(x, y)| x != y).count() <= 8;
    let damaged = buf.get(at..at + n)?;
    // The second copy is damaged: the first just ended the committed part.
    if w.commits > 0 && w.committed_end == at && at >= n {
        let good = &buf[at - n..at];
        if format::decode_item(buf, at - n, w.version).is_ok() && close(damaged, good) {
            return Some((at, good.to_vec()));
        }
    }
    // The first copy is damaged: the second follows and matches the records before it.
    let good = buf.get(at + n..at + 2 * n)?;
    if let Ok((format::Item::Commit(c), _)) = format::decode_item(buf, at + n, w.version)
        && c == w.group.commit(base + w.records, c.kind)
        && close(damaged, good)
    {
        return Some((at, good.to_vec()));
    }
    None
}

/// A fresh header for a segment whose header is damaged, if the records after it are
/// intact with it: format 2 when its body holds commit records, else format 1.
fn header_fix(buf: &[u8], base: u64, last: bool) -> Option<(Vec<u8>, Walk)> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return None;
    }
    let mut legacy = [0u8; SEGMENT_HEADER_LEN];
    legacy[..8].copy_from_slice(&format::SEGMENT_MAGIC);
    legacy[8..10].copy_from_slice(&LEGACY_FORMAT_VERSION.to_le_bytes());
    for header in [format::segment_header(), legacy] {
        let mut fixed = buf.to_vec();
        fixed[..SEGMENT_HEADER_LEN].copy_from_slice(&header);
        let Ok(w) = format::walk(&fixed, base) else { continue };
        let intact = match &w.fault {
            None => true,
            // A torn tail of a last segment is for the writer to cut, not damage.
            Some(_) => last && w.valid_after.is_none(),
        };
        let fits = w.version == LEGACY_FORMAT_VERSION || w.commits > 0;
        if intact && fits && w.records > 0 {
            return Some((header.to_vec(), w));
        }
    }
    None
}

fn check_lane(dir: &Path, name: &str, online: bool) -> Result<LaneCheck, LogError> {
    let lane_dir = dir.join(name);
    let mut c = LaneCheck::default();
    let segments = list(&lane_dir, name, &mut c)?;
    let count = segments.len();
    let mut expected = 0u64;
    let mut cut = false;
    let mut prev: Option<Prev> = None;
    let mut buf = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == count;
        let path = &seg.path;
        lane::read_segment(path, None, &mut buf)?;
        let len = buf.len() as u64;
        c.segments += 1;
        c.bytes += len;
        if cut {
            let (records, acked) = holds(&buf, seg.base, is_last);
            let reason = "it comes after the cut".to_string();
            c.action(
                name,
                path,
                0,
                RepairKind::DropSegment,
                (len, records, acked, false),
                reason,
                Op::Move,
            );
            continue;
        }
        if seg.base != expected {
            let (records, acked) = holds(&buf, seg.base, is_last);
            if seg.base > expected {
                let missing = lane::segment_path(&lane_dir, expected);
                let reason = format!(
                    "segment missing: the lane's records {expected}..{} are not on disk (the next segment starts at record {})",
                    seg.base, seg.base
                );
                c.problem(name, &missing, 0, ProblemKind::Missing, reason.clone());
                let lost = seg.base - expected;
                c.action(
                    name,
                    &missing,
                    0,
                    RepairKind::AcceptMissing,
                    (0, lost, lost, false),
                    reason,
                    Op::Nothing,
                );
            } else {
                let reason = format!(
                    "segment starts at record {} but the lane's previous segments end at record {expected}",
                    seg.base
                );
                c.problem(name, path, 0, ProblemKind::Corrupt, reason);
            }
            c.close_prev(name, prev.as_ref());
            let reason =
                "its records cannot keep their place in the lane after the gap".to_string();
            c.action(
                name,
                path,
                0,
                RepairKind::DropSegment,
                (len, records, acked, false),
                reason,
                Op::Move,
            );
            cut = true;
            continue;
        }
        // A last segment with a key index was sealed: its successor is missing (unless a
        // running writer created it since the listing: the index comes after it).
        let mut sealed_index = if is_last { lane::read_index_header(path) } else { None };
        if sealed_index.is_some()
            && online
            && lane::list_segments(&lane_dir)?.last().is_some_and(|s| s.base > seg.base)
        {
            sealed_index = None;
        }
        let last_mode = is_last && sealed_index.is_none();
        let mut w = match format::walk(&buf, seg.base) {
            Ok(w) => w,
            Err(HeaderFault::Unsupported(v)) => {
                let reason = format!("segment format version {v} is newer than this build reads");
                c.problem(name, path, 8, ProblemKind::Corrupt, reason);
                c.unsupported = Some((path.clone(), v));
                return Ok(c);
            }
            Err(HeaderFault::Torn(reason)) if last_mode => {
                if !online {
                    let r = format!(
                        "{reason}: the segment holds no records; the next writer open gives it a fresh header"
                    );
                    c.problem(name, path, 0, ProblemKind::TornTail, r.clone());
                    let op = Op::Patch(format::segment_header().to_vec());
                    c.action(name, path, 0, RepairKind::RewriteHeader, (len, 0, 0, false), r, op);
                }
                continue;
            }
            Err(fault @ (HeaderFault::Torn(_) | HeaderFault::Bad { .. })) => {
                let (offset, reason) = match fault {
                    HeaderFault::Bad { offset, reason } => (offset, reason),
                    HeaderFault::Torn(reason) => {
                        (0, format!("{reason} (not at the end of the lane)"))
                    }
                    HeaderFault::Unsupported(_) => (8, String::new()),
                };
                if let Some((header, fixed)) = header_fix(&buf, seg.base, last_mode) {
                    let r = format!("{reason}; the records after it are intact");
                    c.problem(name, path, offset, ProblemKind::Corrupt, r.clone());
                    let r = format!("write a fresh segment header: {r}");
                    c.action(
                        name,
                        path,
                        0,
                        RepairKind::RewriteHeader,
                        (0, 0, 0, false),
                        r,
                        Op::Patch(header.clone()),
                    );
                    buf[..SEGMENT_HEADER_LEN].copy_from_slice(&header);
                    fixed
                } else {
                    c.problem(name, path, offset, ProblemKind::Corrupt, reason.clone());
                    let (records, acked) = holds(&buf, seg.base, is_last);
                    c.close_prev(name, prev.as_ref());
                    let reason = format!("its header is damaged: {reason}");
                    c.action(
                        name,
                        path,
                        0,
                        RepairKind::DropSegment,
                        (len, records, acked, true),
                        reason,
                        Op::Move,
                    );
                    cut = true;
                    continue;
                }
            }
        };
        if w.version == LEGACY_FORMAT_VERSION {
            c.legacy += 1;
        }
        // Lossless first: a damaged copy of a commit record beside an intact one.
        for _ in 0..64 {
            let Some(fault) = w.fault.clone() else { break };
            // What the writer would cut off as a tail is judged as one below.
            if last_mode && w.valid_after.is_none() {
                break;
            }
            let Some((at, good)) = twin_patch(&buf, seg.base, &w, fault.at) else { break };
            let r = format!("{}; the other copy of this commit record is intact", fault.reason);
            c.problem(name, path, at as u64, ProblemKind::Corrupt, r.clone());
            let r = format!("rewrite the damaged commit record copy: {r}");
            c.action(
                name,
                path,
                at as u64,
                RepairKind::RewriteCommitCopy,
                (0, 0, 0, false),
                r,
                Op::Patch(good.clone()),
            );
            buf[at..at + good.len()].copy_from_slice(&good);
            w = format::walk(&buf, seg.base)
                .map_err(|_| LogError::corrupt(path, 0, "header changed"))?;
        }
        c.records += w.records;
        let judged =
            format::judge_walk::<()>(&w, if last_mode { Mode::Last } else { Mode::Sealed });
        match (&w.fault, judged) {
            // A tail no commit record covers: the writer's business (unless it is running).
            (_, Ok(p)) if p.tail.is_some() => {
                if !online && let Some(tail) = p.tail {
                    let at = p.valid_end as u64;
                    let what = if w.version >= FORMAT_VERSION {
                        "a write that never completed, never acknowledged"
                    } else {
                        "a format-1 segment (no commit records): whether it was acknowledged cannot be told"
                    };
                    let reason = format!(
                        "{} bytes, {}: {what}; the next writer open cuts it off",
                        len - at,
                        tail.reason
                    );
                    c.problem(name, path, at, ProblemKind::TornTail, reason.clone());
                    let (more, _) = match &w.fault {
                        Some(f) => format::salvage(&buf, f.at, w.version),
                        None => (0, 0),
                    };
                    let records = tail.records + more;
                    c.action(
                        name,
                        path,
                        at,
                        RepairKind::Truncate,
                        (len - at, records, 0, false),
                        reason,
                        Op::Truncate,
                    );
                }
            }
            (None, _) => {}
            // Damage after a sealed segment's last record (a torn or damaged second copy
            // of its last commit record, junk) with every record intact and the next
            // segment starting where they end: cutting it off loses nothing.
            (Some(fault), _)
                if format::salvage(&buf, fault.at, w.version).0 == 0
                    && segments
                        .get(i + 1)
                        .is_some_and(|next| next.base == seg.base + w.records) =>
            {
                let at = fault.at as u64;
                let reason = format!("{} after the segment's last record", fault.reason);
                c.problem(name, path, at, ProblemKind::Corrupt, reason.clone());
                let r = format!("cut off {} bytes that hold no record: {reason}", len - at);
                c.action(
                    name,
                    path,
                    at,
                    RepairKind::Truncate,
                    (len - at, 0, 0, false),
                    r,
                    Op::Truncate,
                );
            }
            (Some(fault), _) => {
                let (more, covered) = format::salvage(&buf, fault.at, w.version);
                let under = if w.version >= FORMAT_VERSION { covered } else { more };
                let reason = format!(
                    "{}{}; {more} readable records follow it, {under} of them under a commit record",
                    fault.reason,
                    match w.valid_after {
                        Some(v) if w.version >= FORMAT_VERSION =>
                            format!(", and a commit record at offset {v} covers it"),
                        Some(v) => format!(", followed by a valid record at offset {v}"),
                        None => " (not at the end of the lane)".to_string(),
                    }
                );
                c.problem(name, path, fault.at as u64, ProblemKind::Corrupt, reason.clone());
                let at = fault.at as u64;
                c.action(
                    name,
                    path,
                    at,
                    RepairKind::Truncate,
                    (len - at, more, under, true),
                    reason,
                    Op::Truncate,
                );
                let kept = Prev {
                    path: path.clone(),
                    len: at,
                    closing: (w.version >= FORMAT_VERSION && w.group.count > 0)
                        .then(|| w.group.commit(seg.base + w.records, KIND_REPAIR)),
                    uncommitted: w.uncommitted(),
                };
                c.close_prev(name, Some(&kept));
                cut = true;
                continue;
            }
        }
        let closing = (w.version >= FORMAT_VERSION && w.group.count > 0 && w.fault.is_none())
            .then(|| w.group.commit(seg.base + w.records, KIND_REPAIR));
        let me =
            Prev { path: path.clone(), len: w.end as u64, closing, uncommitted: w.uncommitted() };
        if let Some((_, indexed)) = sealed_index {
            let missing = lane::segment_path(&lane_dir, seg.base + indexed);
            let reason = format!(
                "segment missing: {} was sealed (it has a key index, written only once the next segment exists) \
                 but no segment follows it; the lane's records from {} on are not on disk",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                seg.base + indexed
            );
            c.problem(name, &missing, 0, ProblemKind::Missing, reason.clone());
            c.action(
                name,
                &missing,
                0,
                RepairKind::AcceptMissing,
                (0, 0, 0, true),
                reason,
                Op::Nothing,
            );
            c.close_prev(name, Some(&me));
        } else if !is_last {
            check_index(&mut c, name, path, &buf, &w);
        }
        expected = seg.base + w.records;
        prev = Some(me);
    }
    Ok(c)
}

/// Checks a sealed segment's key index against the segment.
fn check_index(c: &mut LaneCheck, lane: &str, segment: &Path, buf: &[u8], w: &Walk) {
    let path = lane::keys_path(segment);
    let mut op = Op::RemoveStaleIndex;
    let (offset, why) = match lane::read_index(segment) {
        IndexState::Missing => return,
        IndexState::Invalid(why) => {
            op = Op::RemoveIndex;
            (0, why)
        }
        IndexState::Valid(ix) => {
            c.indexes += 1;
            let mut keys = Vec::with_capacity(ix.keys.len());
            let _ = format::for_each_record(buf, w.end, w.version, |k, _| {
                keys.push(k);
                Ok::<(), ()>(())
            });
            let header = if ix.version == 2 { 32 } else { 24 };
            if ix.segment_len != buf.len() as u64 {
                (
                    8,
                    format!(
                        "is for a segment of {} bytes, the segment has {}",
                        ix.segment_len,
                        buf.len()
                    ),
                )
            } else if let Some(k) =
                (0..keys.len().max(ix.keys.len())).find(|&k| keys.get(k) != ix.keys.get(k))
            {
                ((header + 16 * k) as u64, format!("key {k} differs from the segment's record {k}"))
            } else if ix.segment_crc.is_some_and(|crc| crc != crc32fast::hash(buf)) {
                (
                    24,
                    "segment checksum mismatch: the segment's bytes changed since it was sealed"
                        .to_string(),
                )
            } else {
                return;
            }
        }
    };
    let why = why.strip_prefix("key index ").unwrap_or(&why);
    let reason = format!(
        "key index {why}; `tenure repair` removes it and the next writer open writes it again \
         from the segment"
    );
    c.problem(lane, &path, offset, ProblemKind::Index, reason.clone());
    c.action(
        lane,
        &path,
        0,
        RepairKind::RemoveIndex,
        (0, 0, 0, false),
        format!("remove the {reason}"),
        op,
    );
}

/// Carries out one lane's actions, in order.
fn apply_lane(dir: &Path, name: &str, actions: &[&RepairAction]) -> Result<(), LogError> {
    let lane_dir = dir.join(name);
    let dropped = dir.join(DROPPED_DIR).join(name);
    for a in actions {
        let path = &a.path;
        let io = |e| LogError::io(path, e);
        match &a.op {
            Op::Nothing => {}
            Op::Patch(bytes) | Op::Append(bytes) => {
                let mut f = OpenOptions::new().write(true).open(path).map_err(io)?;
                if matches!(a.op, Op::Append(_)) {
                    f.set_len(a.offset).map_err(io)?;
                }
                f.seek(SeekFrom::Start(a.offset)).map_err(io)?;
                f.write_all(bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
            }
            Op::Truncate => {
                let data = std::fs::read(path).map_err(io)?;
                let from = usize::try_from(a.offset).unwrap_or(data.len()).min(data.len());
                let file_name =
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let aside = free_name(&dropped, &format!("{file_name}.from-{}", a.offset))?;
                write_synced(&aside, &data[from..])?;
                let f = OpenOptions::new().write(true).open(path).map_err(io)?;
                f.set_len(a.offset).map_err(io)?;
                f.sync_all().map_err(io)?;
                lane::remove_index(path)?;
            }
            Op::Move => {
                let file_name =
                    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let aside = free_name(&dropped, &file_name)?;
                std::fs::rename(path, &aside).map_err(io)?;
                let keys = lane::keys_path(path);
                if keys.exists() {
                    let aside = free_name(&dropped, &format!("{file_name}.keys"))?;
                    std::fs::rename(&keys, &aside).map_err(|e| LogError::io(&keys, e))?;
                }
                lane::sync_dir(&dropped)?;
            }
            // Done before any lane's actions, by `repair` itself.
            Op::RemoveKeyIndex => {}
            Op::RemoveIndex | Op::RemoveStaleIndex => match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            },
        }
    }
    lane::sync_dir(&lane_dir)
}

/// A name in `dir` (created) not taken yet, starting with `name`.
fn free_name(dir: &Path, name: &str) -> Result<PathBuf, LogError> {
    std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
    let mut candidate = dir.join(name);
    let mut n = 1;
    while candidate.exists() {
        candidate = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    Ok(candidate)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LogError> {
    let io = |e| LogError::io(path, e);
    let mut f = File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    if let Some(parent) = path.parent() {
        lane::sync_dir(parent)?;
    }
    Ok(())
}
