//! Durable append-only event log for Tenure: "the event log is the truth".
//!
//! The log stores opaque payload bytes in named *lanes*, each record carrying a
//! 128-bit idempotency key. It knows nothing about event types: callers put each
//! event type in its own lane (`"subscription"`, `"usage"`, ...) so that a report
//! only reads the lanes it needs.
//!
//! * [`Log`] is the single writer. It holds an exclusive lock on `<dir>/LOCK`,
//!   deduplicates keys across all lanes ("first occurrence of a key wins"),
//!   buffers appends and makes them durable in one group [`Log::commit`].
//! * [`LogReader`] is a lock-free, read-only snapshot for queries that may run
//!   while a writer is appending.
//! * [`verify`] checks everything (every byte of every segment and key index, and the
//!   lanes' continuity); [`repair`] fixes what it finds, explicitly, never on its own.
//!
//! # On-disk format (version 2)
//!
//! ```text
//! <dir>/LOCK                                   writer lock file (empty)
//! <dir>/<lane>/                                one directory per lane, lane = [a-z][a-z0-9_]{0,63}
//! <dir>/<lane>/<first-record-index>.seg        segments; index is the lane-wide index of the
//!                                              segment's first record, 20-digit zero-padded decimal
//! <dir>/<lane>/<first-record-index>.keys       key index of a sealed segment (see below)
//! <dir>/repair-dropped/                        what `repair` took out of the log
//! <dir>/keys.idx/MANIFEST, <n>.run             the idempotency index's runs (see below)
//! ```
//!
//! A segment is a 16-byte header followed by records and commit records, back to back:
//!
//! ```text
//! header:  magic  b"TNRSEG01"       8 bytes
//!          format version u16 LE    2 bytes  (2; 1 is still read, others are refused)
//!          header crc u32 LE        4 bytes  CRC-32 of the 10 bytes before (format 2)
//!          zero                     2 bytes
//! record:  len    u32 LE            payload length in bytes, at most 16 MiB
//!          crc    u32 LE            CRC-32 (IEEE, as crc32fast) over key bytes + payload,
//!                                   i.e. over the record's bytes [8, 24 + len)
//!          key    u128 LE           idempotency key
//!          payload                  `len` opaque bytes
//! commit:  tag    u32 LE            b"TNRC" (above any record length, so format 1 refuses it)
//!          crc    u32 LE            CRC-32 of the 32 bytes after it
//!          records u64 LE           the lane's record count up to here
//!          start  u64 LE            segment offset of the first record it covers (just
//!                                   after the previous commit record, or the header)
//!          count  u32 LE            records it covers
//!          digest u32 LE            CRC-32 of those records' crc fields, in order
//!          kind   u8                1 commit, 2 written by `repair`
//!          zero                     7 bytes
//! ```
//!
//! Each commit writes, after each touched lane's records, its commit record twice (80
//! bytes): one damaged copy leaves the other as evidence. Format 1 (segments written
//! before commit records existed) has a zero-filled header after the version and no
//! commit records.
//!
//! Records of a lane are numbered from 0 in append order. Segment `n + 1` of a
//! lane starts at index `base(n) + records(n)`; the first segment starts at 0.
//! The writer rolls to a new segment before a record and a commit record would push the
//! active segment past [`LogOptions::segment_bytes`] (a segment always holds at least
//! one record, so a single oversized record still fits).
//!
//! A sealed segment gets a key index, `<segment>.keys`: `TNRKEYS2`, the segment's length,
//! its record count, a CRC-32 of the whole segment, a CRC-32 of this header, the keys, and
//! a CRC-32 of everything. The writer's open reads it instead of the segment; `verify`
//! checks it against the segment (keys and whole-segment checksum). It is written only
//! once the next segment exists, so a lane's last segment never has one: one there means
//! the segment after it is missing.
//!
//! The writer holds in memory the keys of open segments and of segments sealed since its
//! last flush; past [`LogOptions::key_memory`] of the latter they are written as a sorted
//! run in `keys.idx/` (a Bloom filter and page fences in memory, about 1.3 bytes a key, a
//! page of keys read per lookup the filter lets through; runs merge four at a time, on a
//! thread of their own), and `keys.idx/MANIFEST` (replaced whole) names the runs and how
//! many records of each lane they cover. An open reads the runs' fences and page checksums
//! (about 0.08 bytes a key of history; their filters load on a thread of their own, and
//! until then a lookup reads a page), and of a covered segment's key index only its
//! header (its length and count, checksummed) and its length, not its keys; `verify`
//! checks the rest. A manifest missing or damaged is not trusted: the keys are
//! read again from the segments' key indexes and flushed anew, in runs of the limit as
//! they are read, so a rebuild's memory is bounded too. `repair` removes `keys.idx/` when
//! it may take out records (or keys) the runs cover: a key of a dropped record must not
//! stay.
//!
//! # Durability protocol
//!
//! * A commit writes each touched lane's pending records and its commit record with one
//!   `write_all` per segment, `fdatasync`s every touched segment and returns only then:
//!   an acknowledged commit has its commit record on disk. No extra fsync.
//! * Rolling finishes the old segment (`fdatasync`) *before* the new one is
//!   created, so only the last segment of a lane can ever have a torn tail.
//! * A new segment is created, its header written and `fsync`ed, then the lane
//!   directory is `fsync`ed (and the log directory when the lane is new); then the old
//!   segment's key index is written (unsynced: a damaged one is rebuilt).
//! * A commit is atomic per lane only as far as its commit record: after a crash the
//!   records after a lane's last commit record are dropped; idempotency keys make
//!   re-sending the batch safe.
//!
//! # Recovery rules
//!
//! Opening the writer verifies every record of each lane's last segment (and of sealed
//! segments without a valid key index) and rebuilds the key set. In a lane's **last**
//! segment, whatever follows the last commit record (complete records, a torn record,
//! zeros, a torn second copy of the commit record) was never acknowledged: it is cut off,
//! `fsync`ed and reported in [`RecoveryReport`]. A last segment whose header is torn
//! (crash while creating it) gets a fresh header. Everything else is refused with
//! [`LogError::Corrupt`] naming the file, the offset and the reason: damage with a valid
//! commit record after it (so it may have been acknowledged), damage in a sealed segment,
//! a commit record that does not match the records before it, gaps in segment numbering,
//! a missing last segment (the key index beside its predecessor). Data is never skipped
//! silently. Format-1 segments keep the old rule (an invalid tail with no valid record
//! after it is cut, reported as possibly acknowledged), and a format-1 last segment is
//! sealed at open so that new records get commit records.
//!
//! What no format can tell apart without an extra fsync per commit: a lane's last commit,
//! cut short *after* it returned (a file system losing acknowledged writes), from a commit
//! that never returned. The two copies of the commit record and the forward search for a
//! commit record after any damage cover every other single fault.
//!
//! [`LogReader`] applies the same rules without modifying anything: its snapshot of a lane
//! ends at the last commit record of the lane's last segment.

mod check;
mod error;
mod format;
mod keyindex;
mod keyrun;
mod lane;
mod reader;
mod report;
mod writer;

pub use check::{
    DROPPED_DIR, Problem, ProblemKind, RepairAction, RepairKind, RepairReport, VerifyReport,
    repair, verify,
};
pub use error::{LogError, ScanError};
pub use format::{
    COMMIT_RECORD_LEN, FORMAT_VERSION, LEGACY_FORMAT_VERSION, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC, begin_record, finish_record, record_key, set_record_key,
};
pub use reader::{Located, LogReader, lane_fingerprint};
pub use report::{Acknowledged, RebuiltIndex, RecoveryReport, TruncatedTail};
pub use writer::{CommitStats, LaneStats, Log, LogOptions, LogStats};
