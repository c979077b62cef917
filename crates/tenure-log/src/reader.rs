//! Lock-free, read-only snapshot of the log for queries, safe to use while
//! the writer appends.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use crate::error::{LogError, ScanError};
use crate::lane::{self, SegmentFile};

/// Read-only view of the log as of [`LogReader::open`].
///
/// Opening lists every lane's segments and verifies the last segment of each
/// lane to fix how far the snapshot reaches: records committed later are not
/// seen (open a new reader for them). A partial or invalid record at the very
/// end of a lane counts as an in-flight write and ends the lane; anything
/// invalid before that is [`LogError::Corrupt`]. The reader takes no lock and
/// never modifies files.
#[derive(Debug, Clone)]
pub struct LogReader {
    dir: PathBuf,
    lanes: BTreeMap<String, LaneSnapshot>,
}

#[derive(Debug, Clone)]
struct LaneSnapshot {
    /// Segments before the last; the writer never changes them again.
    sealed: Vec<SegmentFile>,
    /// The last segment and how much of it belongs to the snapshot.
    last: Option<LastSegment>,
    records: u64,
}

#[derive(Debug, Clone)]
struct LastSegment {
    file: SegmentFile,
    /// Bytes of valid records (header included) at open; 0 if the header was torn.
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
            let mut sealed = lane::list_segments(&dir.join(&name))?;
            let last = match sealed.pop() {
                Some(file) => Some(snapshot_last(file, &mut buf)?),
                None => None,
            };
            if let Some(first) = sealed.first().or(last.as_ref().map(|l| &l.file)) {
                lane::check_base(first, 0)?;
            }
            let records = last.as_ref().map_or(0, |l| l.file.base + l.records);
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
    /// append order, verifying each record's checksum. A missing lane yields no
    /// calls. The payload slice borrows a segment buffer, so copy what must
    /// outlive the call.
    ///
    /// The first error of `f` stops the scan and is returned as
    /// [`ScanError::Callback`]. On [`ScanError::Log`] some records may already
    /// have been passed to `f`.
    pub fn scan<E>(
        &self,
        lane: &str,
        mut f: impl FnMut(u128, &[u8]) -> Result<(), E>,
    ) -> Result<(), ScanError<E>> {
        let Some(snapshot) = self.lanes.get(lane) else { return Ok(()) };
        let mut buf = Vec::new();
        let mut next_base = 0;
        for seg in &snapshot.sealed {
            lane::check_base(seg, next_base)?;
            lane::read_segment(&seg.path, None, &mut buf)?;
            next_base += lane::parse(&seg.path, &buf, false, &mut f)?.records;
        }
        let Some(last) = &snapshot.last else { return Ok(()) };
        lane::check_base(&last.file, next_base)?;
        if last.valid_len == 0 {
            return Ok(());
        }
        let path = &last.file.path;
        lane::read_segment(path, Some(last.valid_len), &mut buf)?;
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
        let parsed = lane::parse(path, &buf, false, &mut f)?;
        if parsed.records != last.records {
            let reason =
                format!("segment holds {} records, expected {}", parsed.records, last.records);
            return Err(LogError::corrupt(path, last.valid_len, reason).into());
        }
        Ok(())
    }

    /// Calls `f(index, key, payload)` for the records of the lane from record `from` on, in
    /// order: whole segments before `from` are not read (incremental consumers keep a
    /// watermark and read only the tail).
    pub fn scan_from<E>(
        &self,
        lane: &str,
        from: u64,
        mut f: impl FnMut(u64, u128, &[u8]) -> Result<(), E>,
    ) -> Result<(), ScanError<E>> {
        let Some(snapshot) = self.lanes.get(lane) else { return Ok(()) };
        let bases: Vec<u64> = snapshot
            .sealed
            .iter()
            .map(|s| s.base)
            .chain(snapshot.last.as_ref().map(|l| l.file.base))
            .collect();
        let mut buf = Vec::new();
        for (i, seg) in snapshot.sealed.iter().enumerate() {
            if bases.get(i + 1).is_some_and(|&next| next <= from) {
                continue;
            }
            lane::read_segment(&seg.path, None, &mut buf)?;
            let mut index = seg.base;
            lane::parse(&seg.path, &buf, false, |key, payload| {
                let r = if index >= from { f(index, key, payload) } else { Ok(()) };
                index += 1;
                r
            })?;
        }
        let Some(last) = &snapshot.last else { return Ok(()) };
        if last.valid_len == 0 || last.file.base + last.records <= from {
            return Ok(());
        }
        let path = &last.file.path;
        lane::read_segment(path, Some(last.valid_len), &mut buf)?;
        let mut index = last.file.base;
        lane::parse(path, &buf, false, |key, payload| {
            let r = if index >= from { f(index, key, payload) } else { Ok(()) };
            index += 1;
            r
        })?;
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

/// Verifies a lane's last segment as it is now and records its valid prefix.
fn snapshot_last(file: SegmentFile, buf: &mut Vec<u8>) -> Result<LastSegment, LogError> {
    match lane::read_segment(&file.path, None, buf) {
        Ok(()) => {}
        // A recovering writer may have just removed a segment with a torn header.
        Err(LogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LastSegment { file, valid_len: 0, records: 0 });
        }
        Err(e) => return Err(e),
    }
    let parsed = lane::parse(&file.path, buf, true, |_, _| Ok::<(), Infallible>(()))?;
    Ok(LastSegment { file, valid_len: parsed.valid_end as u64, records: parsed.records })
}
