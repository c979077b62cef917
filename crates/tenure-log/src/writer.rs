//! The single writer: lock, recovery on open, key deduplication, buffered appends, and
//! group commit: records and a commit record per lane, then one fsync per lane.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::error::LogError;
use crate::format::{
    self, COMMIT_RECORD_LEN, FORMAT_VERSION, Group, KIND_COMMIT, MAX_PAYLOAD_LEN, Mode,
    RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, record_key,
};
use crate::keyindex::KeyIndex;
use crate::lane::{self, IndexState, sync_dir};
use crate::report::{Acknowledged, RebuiltIndex, RecoveryReport, TruncatedTail};

/// Pending buffers larger than this are shrunk after a commit so one huge
/// batch does not pin its memory for the life of the writer.
const RETAINED_PENDING_CAPACITY: usize = 16 * 1024 * 1024;
/// What a commit adds to a lane's segment after its records: two copies of its commit record.
const COMMIT_BYTES: u64 = 2 * COMMIT_RECORD_LEN as u64;

/// Tuning of a [`Log`] writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Roll to a new segment before a record (and the commit record after it) would make
    /// the active segment larger than this many bytes. Default 64 MiB.
    pub segment_bytes: u64,
    /// Keys of sealed segments held in memory before they are written to the key index's
    /// runs on disk (and dropped from memory). Default 16 M (a table of about 550 MB): an
    /// import of fewer keys never pays for a flush, which runs on the writer's thread.
    pub key_memory: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes: 64 * 1024 * 1024, key_memory: 16_000_000 }
    }
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
    /// Of those, the keys held in memory (the rest are in the key index's runs on disk).
    pub keys_in_memory: u64,
    /// Why the key index's last merge of runs failed, if it did: lookups still answer
    /// right (the runs stay as they were), and the next flush tries again.
    pub key_merge_error: Option<String>,
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
    /// Keys stored or pending: the idempotency index.
    keys: KeyIndex,
    lanes: FxHashMap<String, LaneWriter>,
    pending_records: u64,
    poisoned: bool,
    /// Held for the writer's lifetime; the OS releases the lock on drop/exit. Declared
    /// last, so dropped last: after the key index has stopped its merge thread, which
    /// writes in the log's directory.
    _lock: File,
}

impl Drop for Log {
    /// The sealed keys held in memory go to a run when there are enough of them
    /// ([`KeyIndex::flush_at_close`]), so that the next open is quick. Only with nothing
    /// pending and nothing failed (what is in memory is then what the log holds). Best
    /// effort: what fails is left for the next open, which reads those keys again.
    fn drop(&mut self) {
        if self.pending_records == 0 && !self.poisoned {
            let lanes = &self.lanes;
            let _ = self.keys.flush_at_close(|| active_keys(lanes));
        }
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .field("lanes", &self.lanes.len())
            .field("keys", &self.keys)
            .field("pending_records", &self.pending_records)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Segment currently appended to, with what sealing it needs: its length, checksum and
/// keys, kept as it is written so that a roll does not read it again.
struct ActiveSegment {
    file: File,
    path: PathBuf,
    len: u64,
    crc: crc32fast::Hasher,
    keys: Vec<u128>,
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
    /// Their keys, for the key index of the segment they land in.
    pending_keys: Vec<u128>,
    /// Segments sealed by the last commit: the lane's records up to each one's end, and how
    /// many keys it holds (for the key index, once the commit is durable).
    just_sealed: Vec<(u64, usize)>,
    pending_records: u64,
    splits: Vec<Split>,
    /// Size and record count the segment receiving the next append will have,
    /// counting pending records: decides rolls at append time so the commit
    /// only has to follow `splits`.
    proj_seg_len: u64,
    proj_seg_records: u64,
    /// The records of that segment since its last commit record, pending ones included:
    /// what the next commit record covers.
    group: Group,
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
            pending_keys: Vec::new(),
            just_sealed: Vec::new(),
            pending_records: 0,
            splits: Vec::new(),
            proj_seg_len: SEGMENT_HEADER_LEN as u64,
            proj_seg_records: 0,
            group: Group::new(SEGMENT_HEADER_LEN),
        }
    }

    #[inline]
    fn push_framed(&mut self, key: u128, record: &[u8], segment_bytes: u64) {
        self.plan_roll(record.len() as u64, segment_bytes);
        self.pending.extend_from_slice(record);
        self.group.push(&record[4..8]);
        self.pending_keys.push(key);
        self.proj_seg_len += record.len() as u64;
        self.proj_seg_records += 1;
        self.pending_records += 1;
    }

    /// Starts a new segment in the plan when `rec_len` more bytes and the commit record
    /// would overflow this one.
    #[inline]
    fn plan_roll(&mut self, rec_len: u64, segment_bytes: u64) {
        if self.proj_seg_records > 0 && self.proj_seg_len + rec_len + COMMIT_BYTES > segment_bytes {
            self.splits.push(Split {
                at: self.pending.len(),
                base: self.committed_records + self.pending_records,
            });
            self.proj_seg_len = SEGMENT_HEADER_LEN as u64;
            self.proj_seg_records = 0;
            self.group = Group::new(SEGMENT_HEADER_LEN);
        }
    }

    #[inline]
    fn push(&mut self, key: u128, payload: &[u8], segment_bytes: u64) {
        let len = (RECORD_HEADER_LEN + payload.len()) as u64;
        self.plan_roll(len, segment_bytes);
        let start = self.pending.len();
        format::encode_record(&mut self.pending, key, payload);
        self.group.push(&self.pending[start + 4..start + 8]);
        self.pending_keys.push(key);
        self.proj_seg_len += len;
        self.proj_seg_records += 1;
        self.pending_records += 1;
    }

    /// Writes the pending records and the commit record after them (rolling segments as
    /// planned) without the final fsync, which the commit batches over all lanes.
    fn write_pending(&mut self, log_dir: &Path, stats: &mut CommitStats) -> Result<(), LogError> {
        let total = self.committed_records + self.pending_records;
        // The commit record goes after the records, in the same write: the fsync that
        // makes the records durable makes it durable too, and nothing is acknowledged
        // before that fsync returned. Its second copy keeps it evidence if one is damaged.
        self.group.commit(total, KIND_COMMIT).encode_twice(&mut self.pending);
        let mut pending = std::mem::take(&mut self.pending);
        let mut keys = std::mem::take(&mut self.pending_keys);
        let splits = std::mem::take(&mut self.splits);
        if self.active.is_none() {
            self.create_segment(log_dir, self.committed_records, stats)?;
        }
        let (mut start, mut k) = (0, 0);
        for split in &splits {
            let n = usize::try_from(split.base - self.committed_records).unwrap_or(keys.len());
            self.write_active(&pending[start..split.at], &keys[k..n], stats)?;
            // The old segment must be complete on disk before the next one
            // exists, so that only a lane's last segment can be torn.
            self.sync_active()?;
            self.roll(log_dir, split.base, stats)?;
            (start, k) = (split.at, n);
        }
        self.write_active(&pending[start..], &keys[k..], stats)?;
        self.committed_records = total;
        self.proj_seg_len += COMMIT_BYTES;
        self.group = Group::new(usize::try_from(self.proj_seg_len).unwrap_or(usize::MAX));
        debug_assert_eq!(self.active.as_ref().map(|a| a.len), Some(self.proj_seg_len));
        stats.records += self.pending_records;
        stats.lanes += 1;
        self.pending_records = 0;
        pending.clear();
        if pending.capacity() > RETAINED_PENDING_CAPACITY {
            pending.shrink_to(RETAINED_PENDING_CAPACITY);
        }
        self.pending = pending;
        keys.clear();
        self.pending_keys = keys;
        Ok(())
    }

    fn write_active(
        &mut self,
        bytes: &[u8],
        keys: &[u128],
        stats: &mut CommitStats,
    ) -> Result<(), LogError> {
        let Some(active) = self.active.as_mut() else {
            return Err(LogError::io(&self.dir, std::io::Error::other("no active segment")));
        };
        active.file.write_all(bytes).map_err(|e| LogError::io(&active.path, e))?;
        active.crc.update(bytes);
        active.len += bytes.len() as u64;
        active.keys.extend_from_slice(keys);
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

    /// Seals the active segment (already synced) and starts the next one at `base`. The
    /// sealed segment's key index is written only once the next segment exists: an index
    /// beside a lane's last segment then means that its successor went missing.
    fn roll(&mut self, log_dir: &Path, base: u64, stats: &mut CommitStats) -> Result<(), LogError> {
        let sealed = self.active.take();
        self.create_segment(log_dir, base, stats)?;
        if let Some(s) = sealed {
            // Best effort, unsynced: a missing or damaged index is rebuilt by the next open.
            let _ = lane::write_index(&s.path, s.len, s.crc.finalize(), &s.keys, false);
            self.just_sealed.push((base, s.keys.len()));
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
        let path = lane::segment_path(&self.dir, base);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let header = format::segment_header();
        file.write_all(&header).map_err(|e| LogError::io(&path, e))?;
        file.sync_all().map_err(|e| LogError::io(&path, e))?;
        sync_dir(&self.dir)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header);
        self.active = Some(ActiveSegment {
            file,
            path,
            len: SEGMENT_HEADER_LEN as u64,
            crc,
            keys: Vec::new(),
        });
        self.segments += 1;
        self.committed_bytes += SEGMENT_HEADER_LEN as u64;
        stats.bytes += SEGMENT_HEADER_LEN as u64;
        stats.segments_created += 1;
        Ok(())
    }
}

impl Log {
    /// Opens or creates the log in `dir` (creating the directory), takes the writer lock,
    /// verifies every record of the segments still open for writing (and of sealed segments
    /// without a valid key index, writing one; of a sealed segment whose keys the key
    /// index's runs hold, only its key index's header is read), cuts off tails that no
    /// commit record covers (never acknowledged), and opens the key index (the runs named
    /// by its manifest, plus the keys no run covers). What it did is in the
    /// [`RecoveryReport`]; damage to anything that may have been acknowledged is refused with
    /// [`LogError::Corrupt`].
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(Log, RecoveryReport), LogError> {
        create_log_dir(dir)?;
        let lock = lane::lock(dir, true)?;

        let mut report = RecoveryReport::default();
        let mut keys = KeyIndex::open(dir, opts.key_memory)?;
        let mut listed = Vec::new();
        for name in lane::list_lanes(dir)? {
            let segments = lane::list_segments(&dir.join(&name))?;
            listed.push((name, segments));
        }
        // Where each lane's sealed segments end (segments are named by their first record).
        let ends = listed
            .iter()
            .map(|(name, segs)| (name.clone(), segs.iter().skip(1).map(|s| s.base).collect()))
            .collect();
        if !keys.fits(&ends) {
            keys.distrust();
        }
        let mut lanes = FxHashMap::default();
        let mut buf = Vec::new();
        let mut uncovered = Vec::new();
        for (name, segments) in listed {
            let writer = recover_lane(
                dir,
                &name,
                &segments,
                &mut keys,
                &mut report,
                &mut buf,
                &mut uncovered,
            )?;
            report.segments += writer.segments;
            report.records += writer.committed_records;
            report.bytes += writer.committed_bytes;
            lanes.insert(name, writer);
        }
        report.lanes = lanes.len();
        // Every lane is recovered (nothing was refused): the keys of sealed segments no run
        // covers go into the index now, flushed to runs as they pass the limit, so that
        // memory stays bounded even when the whole index is rebuilt (a log from before the
        // index, or after a repair).
        keys.settle(dir)?;
        for i in 0..uncovered.len() {
            let seg = &mut uncovered[i];
            let (seg_keys, held) = match std::mem::replace(&mut seg.keys, Deferred::Done) {
                Deferred::Index => match lane::read_index(&seg.path) {
                    IndexState::Valid(ix) => (ix.keys, false),
                    _ => {
                        let why = "key index changed while the log was opened";
                        return Err(LogError::corrupt(lane::keys_path(&seg.path), 0, why));
                    }
                },
                Deferred::Parsed(k) => (k, false),
                Deferred::Held(k) => (k, true),
                Deferred::Done => (Vec::new(), true),
            };
            if !held {
                // Into memory only, as the open segments' keys went: no run is probed (a
                // lookup there could read pages for nothing, and fail on a damaged one
                // that only appends need).
                for key in &seg_keys {
                    if !keys.load_sealed(*key) {
                        report.duplicate_keys += 1;
                    }
                }
            }
            keys.sealed(&seg.lane, seg.upto, seg_keys.len());
            let later = &uncovered[i + 1..];
            keys.maybe_flush(|| {
                // Keys in memory that are not yet counted as sealed: the open segments', and
                // those of upgraded segments still to come.
                let held = later.iter().flat_map(|u| match &u.keys {
                    Deferred::Held(k) => k.as_slice(),
                    _ => &[],
                });
                active_keys(&lanes).into_iter().chain(held.copied()).collect::<Vec<_>>()
            })?;
        }
        keys.maybe_flush(|| active_keys(&lanes))?;
        keys.start_merge();
        let log = Log {
            dir: dir.to_path_buf(),
            opts,
            keys,
            lanes,
            pending_records: 0,
            poisoned: false,
            _lock: lock,
        };
        Ok((log, report))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True if a record with this key is stored or pending. An error if the key index on
    /// disk cannot be read.
    pub fn contains(&self, key: u128) -> Result<bool, LogError> {
        self.keys.contains(key)
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
        if !self.keys.insert(key)? {
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
        if record.len() < RECORD_HEADER_LEN || len > MAX_PAYLOAD_LEN {
            return Err(LogError::RecordTooLarge { len, max: MAX_PAYLOAD_LEN });
        }
        let key = record_key(record);
        debug_assert!(format::decode_record(record, 0).is_ok(), "a badly framed record");
        let segment_bytes = self.opts.segment_bytes;
        match self.admit(lane, key)? {
            Some(writer) => writer.push_framed(key, record, segment_bytes),
            None => return Ok(false),
        }
        self.pending_records += 1;
        Ok(true)
    }

    /// [`append_framed`](Self::append_framed) for a batch of `(lane, record)`, with the same
    /// answers (in `stored`, one per record, replacing its contents) as one call per record
    /// in order. The batch is checked first: a record too large or a lane name not valid
    /// fails it before anything is appended (and `stored` is left as it was).
    ///
    /// Why a batch: at tens of millions of keys the key index is far larger than the
    /// caches, so each lookup is a miss to memory. Looked up in one tight loop, the misses
    /// of consecutive keys overlap; interleaved with copying each record they do not
    /// (measured on a 10 M-row import: 447 ns a record through `append_framed`).
    pub fn append_framed_batch(
        &mut self,
        records: &[(&str, &[u8])],
        stored: &mut Vec<bool>,
    ) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        for &(lane, record) in records {
            let len = record.len().saturating_sub(RECORD_HEADER_LEN);
            if record.len() < RECORD_HEADER_LEN || len > MAX_PAYLOAD_LEN {
                return Err(LogError::RecordTooLarge { len, max: MAX_PAYLOAD_LEN });
            }
            if !self.lanes.contains_key(lane) && !format::is_valid_lane(lane) {
                return Err(LogError::InvalidLane(lane.to_owned()));
            }
            debug_assert!(format::decode_record(record, 0).is_ok(), "a badly framed record");
        }
        stored.clear();
        for (_, r) in records {
            match self.keys.insert(record_key(r)) {
                Ok(new) => stored.push(new),
                Err(e) => {
                    // Nothing of the batch is appended: the keys it claimed are let go.
                    for ((_, r), new) in records.iter().zip(stored.iter()) {
                        if *new {
                            self.keys.forget(record_key(r));
                        }
                    }
                    stored.clear();
                    return Err(e);
                }
            }
        }
        let segment_bytes = self.opts.segment_bytes;
        let mut current: Option<(&str, &mut LaneWriter)> = None;
        for (&(lane, record), _) in records.iter().zip(stored.iter()).filter(|(_, s)| **s) {
            if current.as_ref().is_none_or(|(name, _)| *name != lane) {
                if !self.lanes.contains_key(lane) {
                    self.lanes.insert(lane.to_owned(), LaneWriter::new(self.dir.join(lane)));
                }
                current = self.lanes.get_mut(lane).map(|w| (lane, w));
            }
            if let Some((_, writer)) = current.as_mut() {
                writer.push_framed(record_key(record), record, segment_bytes);
                self.pending_records += 1;
            }
        }
        Ok(())
    }

    /// Writes all pending records, and after each lane's records its commit record, and
    /// fsyncs every touched segment file (and directories for created segments and lanes)
    /// before returning. Only after `Ok` may the caller acknowledge the records.
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
        // Segments sealed by this commit are durable: their keys may go to the index's runs.
        for (name, writer) in self.lanes.iter_mut() {
            for (upto, keys) in writer.just_sealed.drain(..) {
                self.keys.sealed(name, upto, keys);
            }
        }
        self.keys.maybe_flush(|| active_keys(&self.lanes))?;
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

    /// Makes room in the key index for `additional` more keys. A writer that knows how
    /// many records are coming (an import of a Parquet file's rows) spares the index its
    /// regrowths, each of which rehashes every key held (at ten million keys, the larger
    /// part of storing them).
    pub fn reserve_keys(&mut self, additional: usize) {
        self.keys.reserve(additional);
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
        LogStats {
            lanes,
            keys: self.keys.len(),
            keys_in_memory: self.keys.in_memory(),
            key_merge_error: self.keys.merge_error().map(str::to_owned),
            pending_records: self.pending_records,
        }
    }
}

/// A sealed segment whose keys no run holds, found while the lanes are recovered: its keys
/// go into the index once every lane is recovered.
struct Uncovered {
    lane: String,
    path: PathBuf,
    /// Records of the lane up to its end.
    upto: u64,
    keys: Deferred,
}

/// Where the keys of an [`Uncovered`] segment are.
enum Deferred {
    /// In its key index (checked while recovering), read again.
    Index,
    /// Read from the segment (its key index could not be written).
    Parsed(Vec<u128>),
    /// An upgraded format-1 segment, recovered as an open one: its keys are in memory
    /// already, and must not go to a run before the lane's earlier segments are counted.
    Held(Vec<u128>),
    Done,
}

/// The keys of the lanes' open segments.
fn active_keys(lanes: &FxHashMap<String, LaneWriter>) -> Vec<u128> {
    let open = lanes.values().filter_map(|w| w.active.as_ref());
    open.flat_map(|a| a.keys.iter().copied()).collect()
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

/// Replaces a segment's content with a fresh (format 2) header, synced.
fn fresh_header(path: &Path) -> Result<File, LogError> {
    let io = |e| LogError::io(path, e);
    let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
    file.set_len(0).map_err(io)?;
    file.write_all(&format::segment_header()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(file)
}

/// Verifies all segments of one lane (as listed at open), collects their keys, and cuts off the tail of the
/// last segment that no commit record covers.
fn recover_lane(
    log_dir: &Path,
    name: &str,
    segments: &[lane::SegmentFile],
    keys: &mut KeyIndex,
    report: &mut RecoveryReport,
    buf: &mut Vec<u8>,
    uncovered: &mut Vec<Uncovered>,
) -> Result<LaneWriter, LogError> {
    let mut writer = LaneWriter::new(log_dir.join(name));
    writer.dir_exists = true;
    let Some((last, sealed)) = segments.split_last() else { return Ok(writer) };
    let mut seg_keys = Vec::new();
    let covered = keys.covered(name);
    for seg in sealed {
        lane::check_base(seg, writer.committed_records)?;
        let len = std::fs::metadata(&seg.path).map_err(|e| LogError::io(&seg.path, e))?.len();
        // A sealed segment whose keys are in the key index's runs: the header of its key
        // index (checksummed: the segment's length and record count) and the index's
        // length are all an open reads of it, so that opening does not read the history's
        // keys. Its keys are checked by `verify`, and read again only if the runs are lost.
        let in_runs = writer.committed_records < covered;
        if in_runs
            && let Some((indexed_len, count)) = lane::read_index_summary(&seg.path)
            && indexed_len == len
        {
            writer.committed_records += count;
            writer.committed_bytes += len;
            writer.segments += 1;
            report.indexed_segments += 1;
            continue;
        }
        // A sealed segment (never written again) with a valid key index: its keys without
        // reading it. Readers verify its records when they read them, `verify` all of it.
        let note = match lane::read_index(&seg.path) {
            IndexState::Valid(ix) if ix.segment_len == len => {
                if !in_runs {
                    let upto = writer.committed_records + ix.keys.len() as u64;
                    let path = seg.path.clone();
                    uncovered.push(Uncovered {
                        lane: name.into(),
                        path,
                        upto,
                        keys: Deferred::Index,
                    });
                }
                writer.committed_records += ix.keys.len() as u64;
                writer.committed_bytes += len;
                writer.segments += 1;
                report.indexed_segments += 1;
                continue;
            }
            IndexState::Valid(ix) => {
                Some(format!("is for a segment of {} bytes, the segment has {len}", ix.segment_len))
            }
            IndexState::Invalid(why) => Some(why),
            IndexState::Missing => None,
        };
        lane::read_segment(&seg.path, None, buf)?;
        seg_keys.clear();
        let parsed =
            lane::parse(&seg.path, buf, writer.committed_records, Mode::Sealed, |key, _| {
                seg_keys.push(key);
                Ok::<(), Infallible>(())
            })
            .map_err(LogError::from)?;
        // Best effort: without an index the next open reads the segment again.
        let indexed = lane::write_index(&seg.path, len, crc32fast::hash(buf), &seg_keys, true);
        if indexed.is_ok()
            && let Some(reason) = note
        {
            report.rebuilt_indexes.push(RebuiltIndex { path: lane::keys_path(&seg.path), reason });
        }
        if !in_runs {
            uncovered.push(Uncovered {
                lane: name.into(),
                path: seg.path.clone(),
                upto: writer.committed_records + parsed.records,
                keys: if indexed.is_ok() {
                    Deferred::Index
                } else {
                    Deferred::Parsed(std::mem::take(&mut seg_keys))
                },
            });
        }
        writer.committed_records += parsed.records;
        writer.committed_bytes += len;
        writer.segments += 1;
    }

    lane::check_base(last, writer.committed_records)?;
    if let Some((_, count)) = lane::read_index_header(&last.path) {
        return Err(lane::missing_successor(last, count));
    }
    lane::read_segment(&last.path, None, buf)?;
    seg_keys.clear();
    let parsed = lane::parse(&last.path, buf, writer.committed_records, Mode::Last, |key, _| {
        if !keys.load(key) {
            report.duplicate_keys += 1;
        }
        seg_keys.push(key);
        Ok::<(), Infallible>(())
    })
    .map_err(LogError::from)?;
    let file_len = buf.len() as u64;
    let mut valid_len = parsed.valid_end as u64;
    let mut version = parsed.version;
    if let Some(tail) = &parsed.tail {
        report.truncated.push(TruncatedTail {
            lane: name.to_owned(),
            path: last.path.clone(),
            offset: valid_len,
            bytes_dropped: file_len - valid_len,
            records_dropped: tail.records,
            reason: tail.reason.clone(),
            header_rewritten: tail.header,
            acknowledged: if tail.header || parsed.version >= FORMAT_VERSION {
                Acknowledged::No
            } else {
                Acknowledged::Unknown
            },
        });
        if tail.header {
            // A segment whose header never reached the disk holds no records.
            drop(fresh_header(&last.path)?);
            valid_len = SEGMENT_HEADER_LEN as u64;
            version = FORMAT_VERSION;
            buf.clear();
            buf.extend_from_slice(&format::segment_header());
        } else {
            let file = OpenOptions::new()
                .write(true)
                .open(&last.path)
                .map_err(|e| LogError::io(&last.path, e))?;
            file.set_len(valid_len).map_err(|e| LogError::io(&last.path, e))?;
            file.sync_all().map_err(|e| LogError::io(&last.path, e))?;
        }
    }
    // An index beside the active segment can only be an older writer's leftover (format 1,
    // or damaged): it must not be mistaken for a seal later.
    if lane::read_index(&last.path) != IndexState::Missing {
        lane::remove_index(&last.path)?;
    }
    writer.committed_records += parsed.records;
    writer.segments += 1;
    let valid = &buf[..usize::try_from(valid_len).unwrap_or(buf.len()).min(buf.len())];
    if version < FORMAT_VERSION {
        report.upgraded.push(last.path.clone());
        if parsed.records == 0 {
            // Nothing in it: it simply becomes a format-2 segment.
            drop(fresh_header(&last.path)?);
            valid_len = SEGMENT_HEADER_LEN as u64;
        } else {
            // Sealed as it is; appends go to a new format-2 segment, created first so that
            // the index beside the old one never stands beside a lane's last segment.
            writer.committed_bytes += valid_len;
            // Its records may not have reached the disk yet (a writer of format 1 may have
            // died before its fsync): synced before its keys may go to a run.
            let io = |e| LogError::io(&last.path, e);
            OpenOptions::new().write(true).open(&last.path).map_err(io)?.sync_all().map_err(io)?;
            let mut stats = CommitStats::default();
            writer.create_segment(log_dir, writer.committed_records, &mut stats)?;
            lane::write_index(&last.path, valid_len, crc32fast::hash(valid), &seg_keys, true)?;
            // Its keys are in memory already (loaded as an open segment's): counted as sealed
            // in their turn, after the lane's earlier segments.
            uncovered.push(Uncovered {
                lane: name.into(),
                path: last.path.clone(),
                upto: writer.committed_records,
                keys: Deferred::Held(std::mem::take(&mut seg_keys)),
            });
            return Ok(writer);
        }
    }
    writer.committed_bytes += valid_len;
    let file = OpenOptions::new()
        .append(true)
        .open(&last.path)
        .map_err(|e| LogError::io(&last.path, e))?;
    let mut crc = crc32fast::Hasher::new();
    let header = format::segment_header();
    crc.update(if version < FORMAT_VERSION { &header[..] } else { valid });
    writer.active = Some(ActiveSegment {
        file,
        path: last.path.clone(),
        len: valid_len,
        crc,
        keys: std::mem::take(&mut seg_keys),
    });
    writer.proj_seg_len = valid_len;
    writer.proj_seg_records = parsed.records;
    writer.group = Group::new(usize::try_from(valid_len).unwrap_or(usize::MAX));
    Ok(writer)
}
