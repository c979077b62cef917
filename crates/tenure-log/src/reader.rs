//! Lock-free, read-only snapshot of the log for queries, safe to use while
//! the writer appends.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{LogError, ScanError};
use crate::format::Mode;
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
}

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
        let mut lanes = BTreeMap::new();
        let mut buf = Vec::new();
        for name in lane::list_lanes(dir)? {
            if only.is_some_and(|only| !only.contains(&name.as_str())) {
                continue;
            }
            let mut segments = lane::list_checked(&dir.join(&name))?;
            let last = match segments.pop() {
                Some(file) => Some(snapshot_last(file, &mut buf)?),
                None => None,
            };
            if let Some(first) = segments.first().or(last.as_ref().map(|l| &l.file)) {
                lane::check_base(first, 0)?;
            }
            let records = last.as_ref().map_or(0, |l| l.file.base + l.records);
            let sealed = segments
                .into_iter()
                .map(|file| Sealed { file, records: OnceLock::new() })
                .collect();
            lanes.insert(name, LaneSnapshot { sealed, last, records });
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
            let parsed = lane::parse(path, &buf, seg.file.base, Mode::Sealed, |key, payload| {
                let r = if index >= from { f(index, key, payload) } else { Ok(()) };
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
        let parsed = lane::parse(path, &buf, last.file.base, Mode::Sealed, |key, payload| {
            let r = if index >= from { f(index, key, payload) } else { Ok(()) };
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

/// Verifies a lane's last segment as it is now and records the prefix a snapshot holds.
fn snapshot_last(file: SegmentFile, buf: &mut Vec<u8>) -> Result<LastSegment, LogError> {
    lane::read_listed_segment(&file.path, None, buf)?;
    let parsed = lane::judge(&file.path, buf, file.base, Mode::Last)?;
    Ok(LastSegment { file, valid_len: parsed.valid_end as u64, records: parsed.records })
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
