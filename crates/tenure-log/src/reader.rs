//! Lock-free, read-only snapshot of the log for queries, safe to use while
//! the writer appends.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{LogError, ScanError};
use crate::format::{MAX_PAYLOAD_LEN, Mode, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::lane::{self, SegmentFile};

/// Read-only view of the log as of [`LogReader::open`].
///
/// Opening lists every lane's segments and verifies the last segment of each lane to fix
/// how far the snapshot reaches: up to the last commit record of the lane's last segment
/// (what a commit may have acknowledged); records committed later are not seen (open a new
/// reader for them), nor records whose commit is still being written. Anything invalid
/// before that is [`LogError::Corrupt`], and so is a missing segment, at open or at the scan
/// that meets it. The reader takes no lock and never modifies files.
#[derive(Debug, Clone)]
pub struct LogReader {
    dir: PathBuf,
    lanes: BTreeMap<String, LaneSnapshot>,
}

#[derive(Debug, Clone)]
struct LaneSnapshot {
    /// Segments before the last; the writer never changes them again.
    sealed: Vec<Sealed>,
    /// The last segment and how much of it belongs to the snapshot.
    last: Option<LastSegment>,
    records: u64,
}

#[derive(Debug, Clone)]
struct Sealed {
    file: SegmentFile,
    /// Its record count, once a scan read it (or its key index).
    records: OnceLock<u64>,
}

#[derive(Debug, Clone)]
struct LastSegment {
    file: SegmentFile,
    /// Bytes of the snapshot (header included) at open; 0 if the header was torn.
    valid_len: u64,
    records: u64,
    /// The key and offset of its last record in the snapshot, if it holds one.
    last: Option<(u128, u64)>,
}

/// Bytes [`LogReader::read_located`] reads at a record: the record and what follows it,
/// which holds the next records asked for when they are near. A page, chosen rather than
/// measured against other sizes: records asked for through the account index are mostly
/// far apart, so a larger window would mostly copy bytes no one reads.
const READ_WINDOW: u64 = 4096;

impl LogReader {
    /// Snapshots the log in `dir`, which must exist.
    pub fn open(dir: &Path) -> Result<LogReader, LogError> {
        LogReader::open_filtered(dir, None)
    }

    /// Like [`LogReader::open`], but snapshots (and verifies the tails of) only the named
    /// lanes: a report that needs three lanes does not read the tails of the others.
    pub fn open_lanes(dir: &Path, lanes: &[&str]) -> Result<LogReader, LogError> {
        LogReader::open_filtered(dir, Some(lanes))
    }

    fn open_filtered(dir: &Path, only: Option<&[&str]>) -> Result<LogReader, LogError> {
        let meta = std::fs::metadata(dir).map_err(|e| LogError::io(dir, e))?;
        if !meta.is_dir() {
            let err = std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "log path is not a directory",
            );
            return Err(LogError::io(dir, err));
        }
        let names: Vec<String> = lane::list_lanes(dir)?
            .into_iter()
            .filter(|name| only.is_none_or(|only| only.contains(&name.as_str())))
            .collect();
        // Each lane's last segment is read and judged whole: on a thread per core, the
        // lanes taken in turn (a report's dozen lanes' tails are hundreds of megabytes).
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = workers.min(names.len()).max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || {
            let (mut buf, mut out) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else { break };
                out.push((i, snapshot_lane(&dir.join(name), &mut buf)));
            }
            out
        };
        // One lane (or one core): read here, no thread started.
        let mut snapshots: Vec<(usize, Result<LaneSnapshot, LogError>)> = if workers == 1 {
            work()
        } else {
            std::thread::scope(|s| {
                let threads: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
                threads.into_iter().flat_map(|t| t.join().expect("a lane's snapshot")).collect()
            })
        };
        // The first lane's error in name order, as when they were read one after another.
        snapshots.sort_by_key(|(i, _)| *i);
        let mut lanes = BTreeMap::new();
        for ((_, snapshot), name) in snapshots.into_iter().zip(names) {
            lanes.insert(name, snapshot?);
        }
        Ok(LogReader { dir: dir.to_path_buf(), lanes })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Lanes in the snapshot, sorted.
    pub fn lanes(&self) -> Vec<String> {
        self.lanes.keys().cloned().collect()
    }

    /// Number of records of `lane` in the snapshot (0 for a missing lane).
    pub fn lane_len(&self, lane: &str) -> u64 {
        self.lanes.get(lane).map_or(0, |l| l.records)
    }

    /// The key and position of the last record of `lane` in the snapshot; `None` when the
    /// lane has none. Known from the snapshot's reading of the lane's last segment, unless
    /// that one holds no record yet (then the segment before it is read).
    pub fn last_record(&self, lane: &str) -> Result<Option<(u128, Located)>, LogError> {
        let Some(snapshot) = self.lanes.get(lane) else { return Ok(None) };
        if let Some((key, offset)) = snapshot.last.as_ref().and_then(|l| l.last) {
            return Ok(Some((key, Located::new(snapshot.sealed.len() as u32, offset))));
        }
        if snapshot.records == 0 {
            return Ok(None);
        }
        let mut last = None;
        let scanned = self.scan_located(lane, snapshot.records - 1, |_, at, key, _| {
            last = Some((key, at));
            Ok::<(), Infallible>(())
        });
        match scanned {
            Ok(()) => Ok(last),
            Err(ScanError::Log(e)) => Err(e),
            Err(ScanError::Callback(never)) => match never {},
        }
    }

    /// Calls `f(key, payload)` for every record of `lane` in the snapshot, in
    /// append order, verifying each record's checksum and each segment's place in the
    /// lane. A missing lane yields no calls. The payload slice borrows a segment buffer,
    /// so copy what must outlive the call.
    ///
    /// The first error of `f` stops the scan and is returned as
    /// [`ScanError::Callback`]. On [`ScanError::Log`] some records (those before the
    /// damage) may already have been passed to `f`.
    pub fn scan<E>(
        &self,
        lane: &str,
        mut f: impl FnMut(u128, &[u8]) -> Result<(), E>,
    ) -> Result<(), ScanError<E>> {
        self.scan_from(lane, 0, |_, key, payload| f(key, payload))
    }

    /// Calls `f(index, key, payload)` for the records of the lane from record `from` on, in
    /// order: whole segments before `from` are not read (incremental consumers keep a
    /// watermark and read only the tail), but their place in the lane is still checked
    /// (from their key index, or by reading them when they have none), so a missing
    /// segment is an error here too.
    pub fn scan_from<E>(
        &self,
        lane: &str,
        from: u64,
        mut f: impl FnMut(u64, u128, &[u8]) -> Result<(), E>,
    ) -> Result<(), ScanError<E>> {
        self.scan_located(lane, from, |i, _, key, payload| f(i, key, payload))
    }

    /// As [`scan_from`](Self::scan_from), with each record's [`Located`] position as well:
    /// an index of positions lets [`read_located`](Self::read_located) read those records
    /// again without scanning the lane.
    pub fn scan_located<E>(
        &self,
        lane: &str,
        from: u64,
        mut f: impl FnMut(u64, Located, u128, &[u8]) -> Result<(), E>,
    ) -> Result<(), ScanError<E>> {
        let Some(snapshot) = self.lanes.get(lane) else { return Ok(()) };
        let mut buf = Vec::new();
        let mut next_base = 0;
        for (i, seg) in snapshot.sealed.iter().enumerate() {
            lane::check_base(&seg.file, next_base)?;
            let path = &seg.file.path;
            let next_start = snapshot
                .sealed
                .get(i + 1)
                .map(|s| s.file.base)
                .or(snapshot.last.as_ref().map(|l| l.file.base));
            if next_start.is_some_and(|next| next <= from) {
                next_base = seg.file.base + sealed_records(seg, &mut buf)?;
                continue;
            }
            lane::read_listed_segment(path, None, &mut buf)?;
            let mut index = seg.file.base;
            let start = buf.as_ptr() as usize;
            let parsed = lane::parse(path, &buf, seg.file.base, Mode::Sealed, |key, payload| {
                let r = if index >= from {
                    f(index, Located::at(i, start, payload), key, payload)
                } else {
                    Ok(())
                };
                index += 1;
                r
            })?;
            let _ = seg.records.set(parsed.records);
            next_base = seg.file.base + parsed.records;
        }
        let Some(last) = &snapshot.last else { return Ok(()) };
        lane::check_base(&last.file, next_base)?;
        if last.valid_len == 0 || last.file.base + last.records <= from {
            return Ok(());
        }
        let path = &last.file.path;
        lane::read_listed_segment(path, Some(last.valid_len), &mut buf)?;
        if buf.len() as u64 != last.valid_len {
            return Err(LogError::corrupt(
                path,
                buf.len() as u64,
                "segment shrank while the log was being read",
            )
            .into());
        }
        // The snapshot's prefix was fully valid at open, so nothing in it may
        // be treated as a torn tail now.
        let mut index = last.file.base;
        let start = buf.as_ptr() as usize;
        let ordinal = snapshot.sealed.len();
        let parsed = lane::parse(path, &buf, last.file.base, Mode::Sealed, |key, payload| {
            let r = if index >= from {
                f(index, Located::at(ordinal, start, payload), key, payload)
            } else {
                Ok(())
            };
            index += 1;
            r
        })?;
        if parsed.records != last.records {
            let reason =
                format!("segment holds {} records, expected {}", parsed.records, last.records);
            return Err(LogError::corrupt(path, last.valid_len, reason).into());
        }
        Ok(())
    }

    /// Calls `f(position, key, payload)` for the record at each of `positions` (as a
    /// located scan of this lane gave them), verifying each record's checksum. A position
    /// past the snapshot, or where no whole record starts, is [`LogError::Corrupt`]: an index
    /// of positions that no longer fits the lane (a repair cut it) is detected, not trusted.
    /// Reads are positioned reads of the segment files, in the order given.
    pub fn read_located<E>(
        &self,
        lane: &str,
        positions: &[Located],
        mut f: impl FnMut(Located, u128, &[u8]) -> Result<(), E>,
    ) -> Result<(), ScanError<E>> {
        use std::os::unix::fs::FileExt;
        let snapshot = self.lanes.get(lane);
        let mut open: Option<(u32, std::fs::File, u64, &Path)> = None;
        // A window of the open segment, read at `window_at`: a record is read with the
        // bytes after it, in one read (its header and payload were two), and the records
        // that follow within the window are taken from it.
        let mut window: Vec<u8> = Vec::new();
        let mut window_at = 0u64;
        for &at in positions {
            let ordinal = at.segment();
            let offset = at.offset();
            if open.as_ref().is_none_or(|o| o.0 != ordinal) {
                window.clear();
                let (file, limit) = match snapshot {
                    Some(s) if (ordinal as usize) < s.sealed.len() => {
                        (&s.sealed[ordinal as usize].file, None)
                    }
                    Some(s) if ordinal as usize == s.sealed.len() && s.last.is_some() => {
                        let last = s.last.as_ref().expect("checked");
                        (&last.file, Some(last.valid_len))
                    }
                    _ => {
                        let path = self.dir.join(lane);
                        let reason = format!("no segment {ordinal} in the lane (a stale index?)");
                        return Err(LogError::corrupt(&path, offset, reason).into());
                    }
                };
                let path = file.path.as_path();
                let handle = std::fs::File::open(path).map_err(|e| LogError::io(path, e))?;
                let len = match limit {
                    Some(l) => l,
                    None => handle.metadata().map_err(|e| LogError::io(path, e))?.len(),
                };
                open = Some((ordinal, handle, len, path));
            }
            let (_, handle, len, path) = open.as_ref().expect("opened above");
            let fault =
                |reason: String| -> ScanError<E> { LogError::corrupt(path, offset, reason).into() };
            let header_end = offset + RECORD_HEADER_LEN as u64;
            if offset < SEGMENT_HEADER_LEN as u64 || header_end > *len {
                return Err(fault("a record position past the snapshot (a stale index?)".into()));
            }
            let read = |window: &mut Vec<u8>, bytes: u64| {
                window.resize(bytes as usize, 0);
                handle.read_exact_at(window, offset).map_err(|e| LogError::io(path, e))
            };
            if offset < window_at || header_end > window_at + window.len() as u64 {
                read(&mut window, READ_WINDOW.min(*len - offset))?;
                window_at = offset;
            }
            let mut from = (offset - window_at) as usize;
            let h = &window[from..from + 4];
            let declared = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as u64;
            if declared > MAX_PAYLOAD_LEN as u64 || header_end + declared > *len {
                return Err(fault("no record at this position (a stale index?)".into()));
            }
            let end = from + RECORD_HEADER_LEN + declared as usize;
            if end > window.len() {
                read(&mut window, RECORD_HEADER_LEN as u64 + declared)?;
                window_at = offset;
                from = 0;
            }
            let record = &window[from..from + RECORD_HEADER_LEN + declared as usize];
            let (key, payload, _) = crate::format::decode_record(record, 0)
                .map_err(|r| fault(format!("no record at this position: {r}")))?;
            f(at, key, payload).map_err(ScanError::Callback)?;
        }
        Ok(())
    }

    /// The key of the record at `at` in `lane`, if a whole, valid record starts there: a
    /// state that noted its last record's key and position checks it is still there.
    pub fn key_at(&self, lane: &str, at: Located) -> Option<u128> {
        let mut key = None;
        let read = self.read_located(lane, &[at], |_, k, _| {
            key = Some(k);
            Ok::<(), Infallible>(())
        });
        read.ok().and(key)
    }

    /// Convenience: every record of `lane` as owned `(key, payload)` pairs.
    pub fn read_lane(&self, lane: &str) -> Result<Vec<(u128, Vec<u8>)>, LogError> {
        let mut out = Vec::with_capacity(usize::try_from(self.lane_len(lane)).unwrap_or(0));
        self.scan(lane, |key, payload| {
            out.push((key, payload.to_vec()));
            Ok::<(), Infallible>(())
        })?;
        Ok(out)
    }
}

/// Where a record is in its lane: the ordinal of its segment (from 0, in the lane's order)
/// and its byte offset there, packed in a `u64` (`segment << 40 | offset`) for indexes.
/// Segments are only ever appended to a lane; a repair that cuts one changes what a
/// position holds, which [`LogReader::read_located`]'s checks catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Located(pub u64);

impl Located {
    const OFFSET_BITS: u32 = 40;

    pub fn new(segment: u32, offset: u64) -> Located {
        debug_assert!(offset < 1 << Self::OFFSET_BITS);
        Located(((segment as u64) << Self::OFFSET_BITS) | offset)
    }

    /// The position of `payload`, a slice of the segment buffer starting at address `start`.
    fn at(segment: usize, start: usize, payload: &[u8]) -> Located {
        let offset = payload.as_ptr() as usize - start - RECORD_HEADER_LEN;
        Located::new(segment as u32, offset as u64)
    }

    pub fn segment(self) -> u32 {
        (self.0 >> Self::OFFSET_BITS) as u32
    }

    pub fn offset(self) -> u64 {
        self.0 & ((1 << Self::OFFSET_BITS) - 1)
    }
}

/// The record count of a sealed segment without reading it when its key index says
/// (a checked header for the segment's current length); otherwise by verifying it.
fn sealed_records(seg: &Sealed, buf: &mut Vec<u8>) -> Result<u64, LogError> {
    if let Some(n) = seg.records.get() {
        return Ok(*n);
    }
    let path = &seg.file.path;
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LogError::corrupt(
                path,
                0,
                "segment missing: it was there when the reader opened the log",
            ));
        }
        Err(e) => return Err(LogError::io(path, e)),
    };
    let records = match lane::read_index_header(path) {
        Some((indexed_len, count)) if indexed_len == len => count,
        _ => {
            lane::read_listed_segment(path, None, buf)?;
            lane::judge(path, buf, seg.file.base, Mode::Sealed)?.records
        }
    };
    let _ = seg.records.set(records);
    Ok(records)
}

/// The snapshot of the lane in `dir`: its segments listed, its last one judged.
fn snapshot_lane(dir: &Path, buf: &mut Vec<u8>) -> Result<LaneSnapshot, LogError> {
    let mut segments = lane::list_checked(dir)?;
    let last = match segments.pop() {
        Some(file) => Some(snapshot_last(file, buf)?),
        None => None,
    };
    if let Some(first) = segments.first().or(last.as_ref().map(|l| &l.file)) {
        lane::check_base(first, 0)?;
    }
    let records = last.as_ref().map_or(0, |l| l.file.base + l.records);
    let sealed =
        segments.into_iter().map(|file| Sealed { file, records: OnceLock::new() }).collect();
    Ok(LaneSnapshot { sealed, last, records })
}

/// Verifies a lane's last segment as it is now and records the prefix a snapshot holds.
fn snapshot_last(file: SegmentFile, buf: &mut Vec<u8>) -> Result<LastSegment, LogError> {
    lane::read_listed_segment(&file.path, None, buf)?;
    let parsed = lane::judge(&file.path, buf, file.base, Mode::Last)?;
    // The last record kept, found by its header alone (judged just above): what a state's
    // marks note, which would otherwise read the segment again.
    let mut last = None;
    if parsed.records > 0 {
        let start = buf.as_ptr() as usize;
        let walked =
            crate::format::for_each_record(buf, parsed.valid_end, parsed.version, |k, p| {
                last = Some((k, (p.as_ptr() as usize - start - RECORD_HEADER_LEN) as u64));
                Ok::<(), Infallible>(())
            });
        let Ok(_) = walked;
    }
    Ok(LastSegment { file, valid_len: parsed.valid_end as u64, records: parsed.records, last })
}

/// What identifies the content of `lane` in the log at `dir` without reading it: the
/// number of its segments, and the base, length and modification time (nanoseconds) of
/// the last one. Records are only ever appended to the last segment, and a repair cuts or
/// removes segments, so equal values mean the same records; a writer's tail not yet
/// committed counts too (a state folded before its commit is only folded once more).
/// A missing lane is all zeros.
pub fn lane_fingerprint(dir: &Path, lane: &str) -> Result<[u64; 4], LogError> {
    let segments = lane::list_segments(&dir.join(lane))?;
    let Some(last) = segments.last() else { return Ok([0; 4]) };
    let meta = std::fs::metadata(&last.path).map_err(|e| LogError::io(&last.path, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    Ok([segments.len() as u64, last.base, meta.len(), mtime])
}
