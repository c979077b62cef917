//! The single writer: lock, recovery on open, key deduplication, buffered
//! appends and group commit with fsync.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::error::LogError;
use crate::format::{self, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::lane::{self, SegmentFile};

/// Name of the lock file inside the log directory.
const LOCK_FILE: &str = "LOCK";
/// Pending buffers larger than this are shrunk after a commit so one huge
/// batch does not pin its memory for the life of the writer.
const RETAINED_PENDING_CAPACITY: usize = 16 * 1024 * 1024;

/// Tuning of a [`Log`] writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Roll to a new segment before a record would make the active segment
    /// larger than this many bytes. Default 64 MiB.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes: 64 * 1024 * 1024 }
    }
}

/// What recovery did when the writer opened the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Torn tails that were cut off (at most one per lane).
    pub truncated: Vec<TruncatedTail>,
    /// Lanes found.
    pub lanes: usize,
    /// Segments kept.
    pub segments: u64,
    /// Valid records found across all lanes.
    pub records: u64,
    /// Bytes of all kept segments, headers included.
    pub bytes: u64,
    /// Records whose key was already seen earlier. The writer never produces
    /// these, so a non-zero count means the files were written by something else.
    pub duplicate_keys: u64,
    /// Sealed segments whose keys came from their key index (not read again).
    pub indexed_segments: u64,
}

/// A torn tail removed from the last segment of a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    pub lane: String,
    pub path: PathBuf,
    /// Offset the file was truncated at (0 when the segment was removed).
    pub offset: u64,
    pub bytes_dropped: u64,
    /// Why the first dropped byte could not start a valid record.
    pub reason: String,
    /// True when the whole segment file was removed because its header was torn.
    pub segment_removed: bool,
}

/// What one [`Log::commit`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub records: u64,
    /// Bytes written, including headers of new segments.
    pub bytes: u64,
    /// Lanes that had pending records.
    pub lanes: usize,
    pub segments_created: usize,
}

/// Durable state of the log (pending records are not counted per lane).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    pub lanes: BTreeMap<String, LaneStats>,
    /// Distinct keys stored or pending.
    pub keys: u64,
    /// Records appended but not yet committed.
    pub pending_records: u64,
}

/// Durable state of one lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneStats {
    pub records: u64,
    /// Bytes on disk, segment headers included.
    pub bytes: u64,
    pub segments: u64,
}

/// The single writer of an event log directory.
///
/// Dropping it without [`commit`](Log::commit) discards pending records.
pub struct Log {
    dir: PathBuf,
    opts: LogOptions,
    /// Held for the writer's lifetime; the OS releases the lock on drop/exit.
    _lock: File,
    /// Keys stored or pending: the idempotency index.
    keys: FxHashSet<u128>,
    lanes: FxHashMap<String, LaneWriter>,
    pending_records: u64,
    poisoned: bool,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .field("lanes", &self.lanes.len())
            .field("keys", &self.keys.len())
            .field("pending_records", &self.pending_records)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Segment currently appended to.
struct ActiveSegment {
    file: File,
    path: PathBuf,
}

/// Where a commit must roll to a new segment inside a lane's pending buffer.
struct Split {
    /// Byte offset in `pending` of the first record of the new segment.
    at: usize,
    /// Lane-wide index of that record, which names the new segment.
    base: u64,
}

struct LaneWriter {
    dir: PathBuf,
    dir_exists: bool,
    active: Option<ActiveSegment>,
    committed_records: u64,
    committed_bytes: u64,
    segments: u64,
    /// Encoded pending records, written with one `write_all` per segment.
    pending: Vec<u8>,
    pending_records: u64,
    splits: Vec<Split>,
    /// Size and record count the segment receiving the next append will have,
    /// counting pending records: decides rolls at append time so the commit
    /// only has to follow `splits`.
    proj_seg_len: u64,
    proj_seg_records: u64,
}

impl LaneWriter {
    fn new(dir: PathBuf) -> Self {
        LaneWriter {
            dir,
            dir_exists: false,
            active: None,
            committed_records: 0,
            committed_bytes: 0,
            segments: 0,
            pending: Vec::new(),
            pending_records: 0,
            splits: Vec::new(),
            proj_seg_len: SEGMENT_HEADER_LEN as u64,
            proj_seg_records: 0,
        }
    }

    #[inline]
    fn push_framed(&mut self, record: &[u8], segment_bytes: u64) {
        self.plan_roll(record.len() as u64, segment_bytes);
        self.pending.extend_from_slice(record);
        self.proj_seg_len += record.len() as u64;
        self.proj_seg_records += 1;
        self.pending_records += 1;
    }

    /// Starts a new segment in the plan when `rec_len` more bytes would overflow this one.
    #[inline]
    fn plan_roll(&mut self, rec_len: u64, segment_bytes: u64) {
        if self.proj_seg_records > 0 && self.proj_seg_len + rec_len > segment_bytes {
            self.splits.push(Split {
                at: self.pending.len(),
                base: self.committed_records + self.pending_records,
            });
            self.proj_seg_len = SEGMENT_HEADER_LEN as u64;
            self.proj_seg_records = 0;
        }
    }

    #[inline]
    fn push(&mut self, key: u128, payload: &[u8], segment_bytes: u64) {
        self.plan_roll((RECORD_HEADER_LEN + payload.len()) as u64, segment_bytes);
        format::encode_record(&mut self.pending, key, payload);
        self.proj_seg_len += (RECORD_HEADER_LEN + payload.len()) as u64;
        self.proj_seg_records += 1;
        self.pending_records += 1;
    }

    /// Writes the pending records (rolling segments as planned) without the
    /// final fsync, which the commit batches over all lanes.
    fn write_pending(&mut self, log_dir: &Path, stats: &mut CommitStats) -> Result<(), LogError> {
        let mut pending = std::mem::take(&mut self.pending);
        let splits = std::mem::take(&mut self.splits);
        if self.active.is_none() {
            self.create_segment(log_dir, self.committed_records, stats)?;
        }
        let mut start = 0;
        for split in &splits {
            self.write_active(&pending[start..split.at], stats)?;
            // The old segment must be complete on disk before the next one
            // exists, so that only a lane's last segment can be torn.
            self.sync_active()?;
            self.create_segment(log_dir, split.base, stats)?;
            start = split.at;
        }
        self.write_active(&pending[start..], stats)?;
        self.committed_records += self.pending_records;
        stats.records += self.pending_records;
        stats.lanes += 1;
        self.pending_records = 0;
        pending.clear();
        if pending.capacity() > RETAINED_PENDING_CAPACITY {
            pending.shrink_to(RETAINED_PENDING_CAPACITY);
        }
        self.pending = pending;
        Ok(())
    }

    fn write_active(&mut self, bytes: &[u8], stats: &mut CommitStats) -> Result<(), LogError> {
        let Some(active) = self.active.as_mut() else {
            return Err(LogError::io(&self.dir, std::io::Error::other("no active segment")));
        };
        active.file.write_all(bytes).map_err(|e| LogError::io(&active.path, e))?;
        self.committed_bytes += bytes.len() as u64;
        stats.bytes += bytes.len() as u64;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), LogError> {
        if let Some(active) = &self.active {
            // fdatasync also persists the file size, which is all appends change.
            active.file.sync_data().map_err(|e| LogError::io(&active.path, e))?;
        }
        Ok(())
    }

    fn create_segment(
        &mut self,
        log_dir: &Path,
        base: u64,
        stats: &mut CommitStats,
    ) -> Result<(), LogError> {
        if !self.dir_exists {
            match std::fs::create_dir(&self.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(LogError::io(&self.dir, e)),
            }
            sync_dir(log_dir)?;
            self.dir_exists = true;
        }
        let path = self.dir.join(format::segment_file_name(base));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        file.write_all(&format::segment_header()).map_err(|e| LogError::io(&path, e))?;
        file.sync_all().map_err(|e| LogError::io(&path, e))?;
        sync_dir(&self.dir)?;
        self.active = Some(ActiveSegment { file, path });
        self.segments += 1;
        self.committed_bytes += SEGMENT_HEADER_LEN as u64;
        stats.bytes += SEGMENT_HEADER_LEN as u64;
        stats.segments_created += 1;
        Ok(())
    }
}

impl Log {
    /// Opens or creates the log in `dir` (creating the directory), takes the
    /// writer lock, verifies every record of the segments still open for writing (and of
    /// sealed segments without a key index, writing one), truncates torn tails and
    /// rebuilds the set of stored keys.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Log, RecoveryReport), LogError> {
        create_log_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| LogError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LogError::Locked { path: dir.to_path_buf() });
            }
            Err(TryLockError::Error(e)) => return Err(LogError::io(&lock_path, e)),
        }

        let mut report = RecoveryReport::default();
        let mut keys = FxHashSet::default();
        // Size the key set once from the key indexes: growing a table of 100 M keys by
        // doubling holds the old and the new one at the same time.
        let mut indexed = 0u64;
        for name in lane::list_lanes(dir)? {
            for seg in lane::list_segments(&dir.join(&name))? {
                if let Ok(m) = std::fs::metadata(lane::keys_path(&seg.path)) {
                    indexed += m.len().saturating_sub(28) / 16;
                }
            }
        }
        keys.reserve(usize::try_from(indexed).unwrap_or(0));
        let mut lanes = FxHashMap::default();
        let mut buf = Vec::new();
        for name in lane::list_lanes(dir)? {
            let writer = recover_lane(dir, &name, &mut keys, &mut report, &mut buf)?;
            report.segments += writer.segments;
            report.records += writer.committed_records;
            report.bytes += writer.committed_bytes;
            lanes.insert(name, writer);
        }
        report.lanes = lanes.len();
        let log = Log {
            dir: dir.to_path_buf(),
            opts,
            _lock: lock,
            keys,
            lanes,
            pending_records: 0,
            poisoned: false,
        };
        Ok((log, report))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True if a record with this key is stored or pending.
    pub fn contains(&self, key: u128) -> bool {
        self.keys.contains(&key)
    }

    /// Buffers one record for `lane`. Returns `Ok(false)` and stores nothing if
    /// `key` is already stored or pending in any lane. Not durable until
    /// [`commit`](Log::commit).
    pub fn append(&mut self, lane: &str, key: u128, payload: &[u8]) -> Result<bool, LogError> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(LogError::RecordTooLarge { len: payload.len(), max: MAX_PAYLOAD_LEN });
        }
        let segment_bytes = self.opts.segment_bytes;
        match self.admit(lane, key)? {
            Some(writer) => writer.push(key, payload, segment_bytes),
            None => return Ok(false),
        }
        self.pending_records += 1;
        Ok(true)
    }

    /// The lane's writer if `key` is new (and now claimed), `None` for a duplicate.
    fn admit(&mut self, lane: &str, key: u128) -> Result<Option<&mut LaneWriter>, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let known = self.lanes.contains_key(lane);
        if !known && !format::is_valid_lane(lane) {
            return Err(LogError::InvalidLane(lane.to_owned()));
        }
        if !self.keys.insert(key) {
            return Ok(None);
        }
        // Look the lane up by `&str` on the hot path; allocate its name only once.
        if !known {
            self.lanes.insert(lane.to_owned(), LaneWriter::new(self.dir.join(lane)));
        }
        Ok(self.lanes.get_mut(lane))
    }

    /// Appends a record framed by [`crate::begin_record`] / [`crate::finish_record`]
    /// (framing and checksumming can then run in parallel, off the writer). Same
    /// deduplication as [`Log::append`]; the framing is trusted, not re-verified.
    pub fn append_framed(&mut self, lane: &str, record: &[u8]) -> Result<bool, LogError> {
        let len = record.len().saturating_sub(RECORD_HEADER_LEN);
        let (Some(key_bytes), true) = (record.get(8..RECORD_HEADER_LEN), len <= MAX_PAYLOAD_LEN)
        else {
            return Err(LogError::RecordTooLarge { len, max: MAX_PAYLOAD_LEN });
        };
        let key = u128::from_le_bytes(key_bytes.try_into().unwrap_or([0; 16]));
        debug_assert!(format::decode_record(record, 0).is_ok(), "a badly framed record");
        let segment_bytes = self.opts.segment_bytes;
        match self.admit(lane, key)? {
            Some(writer) => writer.push_framed(record, segment_bytes),
            None => return Ok(false),
        }
        self.pending_records += 1;
        Ok(true)
    }

    /// Writes all pending records and fsyncs every touched segment file (and
    /// directories for created segments and lanes) before returning. Only after
    /// `Ok` may the caller acknowledge the records.
    ///
    /// On error the writer is poisoned: any prefix of the pending records may
    /// have reached the disk, and only reopening (recovery) tells which.
    pub fn commit(&mut self) -> Result<CommitStats, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        let result = self.commit_inner();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn commit_inner(&mut self) -> Result<CommitStats, LogError> {
        let mut stats = CommitStats::default();
        if self.pending_records == 0 {
            return Ok(stats);
        }
        let mut touched = Vec::new();
        for writer in self.lanes.values_mut() {
            if writer.pending_records > 0 {
                writer.write_pending(&self.dir, &mut stats)?;
                touched.push(writer);
            }
        }
        // One fsync per touched lane, after all writes were issued, so the
        // kernel can write back the lanes' data together.
        for writer in touched {
            writer.sync_active()?;
        }
        self.pending_records = 0;
        Ok(stats)
    }

    /// Number of committed records in `lane` (0 for an unknown lane).
    pub fn lane_len(&self, lane: &str) -> u64 {
        self.lanes.get(lane).map_or(0, |w| w.committed_records)
    }

    /// Records appended but not yet committed.
    pub fn pending_records(&self) -> u64 {
        self.pending_records
    }

    /// Durable per-lane counts plus the size of the key index.
    pub fn stats(&self) -> LogStats {
        let lanes = self
            .lanes
            .iter()
            .map(|(name, w)| {
                let stats = LaneStats {
                    records: w.committed_records,
                    bytes: w.committed_bytes,
                    segments: w.segments,
                };
                (name.clone(), stats)
            })
            .collect();
        LogStats { lanes, keys: self.keys.len() as u64, pending_records: self.pending_records }
    }
}

/// Creates the log directory; when it is new, fsyncs its parent so that the
/// directory itself survives a crash along with what is committed into it.
fn create_log_dir(dir: &Path) -> Result<(), LogError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| LogError::io(dir, e))
}

/// Verifies all segments of one lane, collects their keys and repairs a torn
/// tail of the last segment.
fn recover_lane(
    log_dir: &Path,
    name: &str,
    keys: &mut FxHashSet<u128>,
    report: &mut RecoveryReport,
    buf: &mut Vec<u8>,
) -> Result<LaneWriter, LogError> {
    let mut writer = LaneWriter::new(log_dir.join(name));
    writer.dir_exists = true;
    let segments = lane::list_segments(&writer.dir)?;
    let count = segments.len();
    // The last segment kept so far, its valid length and record count: it
    // becomes the active segment.
    let mut last_kept: Option<(SegmentFile, u64, u64)> = None;
    for (i, seg) in segments.into_iter().enumerate() {
        let is_last = i + 1 == count;
        lane::check_base(&seg, writer.committed_records)?;
        // A sealed segment (never written again) with a valid key index: its keys without
        // reading it. It was verified whole when the index was written.
        if !is_last {
            let len = std::fs::metadata(&seg.path).map_err(|e| LogError::io(&seg.path, e))?.len();
            if let Some(k) = lane::read_keys(&seg.path, len) {
                keys.reserve(k.len());
                for key in &k {
                    if !keys.insert(*key) {
                        report.duplicate_keys += 1;
                    }
                }
                writer.committed_records += k.len() as u64;
                writer.committed_bytes += len;
                writer.segments += 1;
                report.indexed_segments += 1;
                continue;
            }
        }
        lane::read_segment(&seg.path, None, buf)?;
        let mut seg_keys = Vec::new();
        let parsed = lane::parse(&seg.path, buf, is_last, |key, _| {
            if !keys.insert(key) {
                report.duplicate_keys += 1;
            }
            if !is_last {
                seg_keys.push(key);
            }
            Ok::<(), Infallible>(())
        })
        .map_err(LogError::from)?;
        if !is_last && parsed.torn.is_none() {
            // Best effort: without an index the next open reads the segment again.
            let _ = lane::write_keys(&seg.path, buf.len() as u64, &seg_keys);
        }
        let file_len = buf.len() as u64;
        let valid_len = parsed.valid_end as u64;
        if let Some(reason) = parsed.torn {
            let removed = valid_len == 0;
            report.truncated.push(TruncatedTail {
                lane: name.to_owned(),
                path: seg.path.clone(),
                offset: valid_len,
                bytes_dropped: file_len - valid_len,
                reason,
                segment_removed: removed,
            });
            if removed {
                // A segment whose header never reached the disk holds no
                // records; the previous segment (if any) becomes active again
                // and rolls on the next append.
                std::fs::remove_file(&seg.path).map_err(|e| LogError::io(&seg.path, e))?;
                sync_dir(&writer.dir)?;
                continue;
            }
            let file = OpenOptions::new()
                .write(true)
                .open(&seg.path)
                .map_err(|e| LogError::io(&seg.path, e))?;
            file.set_len(valid_len).map_err(|e| LogError::io(&seg.path, e))?;
            file.sync_all().map_err(|e| LogError::io(&seg.path, e))?;
        }
        writer.committed_records += parsed.records;
        writer.committed_bytes += valid_len;
        writer.segments += 1;
        last_kept = Some((seg, valid_len, parsed.records));
    }
    if let Some((seg, len, records)) = last_kept {
        let file = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(|e| LogError::io(&seg.path, e))?;
        writer.active = Some(ActiveSegment { file, path: seg.path });
        writer.proj_seg_len = len;
        writer.proj_seg_records = records;
    }
    Ok(writer)
}
