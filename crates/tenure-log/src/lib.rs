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
//!
//! # On-disk format (version 1)
//!
//! ```text
//! <dir>/LOCK                                   writer lock file (empty)
//! <dir>/<lane>/                                one directory per lane, lane = [a-z][a-z0-9_]{0,63}
//! <dir>/<lane>/<first-record-index>.seg        segments; index is the lane-wide index of the
//!                                              segment's first record, 20-digit zero-padded decimal
//! ```
//!
//! A segment is a 16-byte header followed by records, back to back:
//!
//! ```text
//! header:  magic  b"TNRSEG01"       8 bytes
//!          format version u16 LE    2 bytes  (= 1; other versions are refused)
//!          reserved                 6 bytes  (written as zero, ignored on read)
//! record:  len    u32 LE            payload length in bytes, at most 16 MiB
//!          crc    u32 LE            CRC-32 (IEEE, as crc32fast) over key bytes + payload,
//!                                   i.e. over the record's bytes [8, 24 + len)
//!          key    u128 LE           idempotency key
//!          payload                  `len` opaque bytes
//! ```
//!
//! Records of a lane are numbered from 0 in append order. Segment `n + 1` of a
//! lane starts at index `base(n) + records(n)`; the first segment starts at 0.
//! The writer rolls to a new segment before a record would push the active
//! segment past [`LogOptions::segment_bytes`] (a segment always holds at least
//! one record, so a single oversized record still fits).
//!
//! # Durability protocol
//!
//! * A commit writes each touched lane's pending records with one `write_all`
//!   per segment, `fdatasync`s every touched segment and returns only then.
//! * Rolling finishes the old segment (`fdatasync`) *before* the new one is
//!   created, so only the last segment of a lane can ever have a torn tail.
//! * A new segment is created, its header written and `fsync`ed, then the lane
//!   directory is `fsync`ed (and the log directory when the lane is new).
//! * A commit is atomic per record, not across records or lanes: after a crash
//!   any prefix of a lane's last batch may survive. Idempotency keys make
//!   re-importing the batch safe.
//!
//! # Recovery rules
//!
//! Opening the writer verifies the CRC of every record of every segment and
//! rebuilds the key index. For the **last** segment of a lane, an invalid record
//! (file ends inside it, length over the limit, or CRC mismatch) is a *torn
//! tail* when no valid record can be found at any later byte offset of the file:
//! the file is truncated at the record's start, `fsync`ed and reported in
//! [`RecoveryReport`]. A last segment whose header is incomplete or all zero
//! (crash while creating it) is removed. Everything else is refused with
//! [`LogError::Corrupt`]: an invalid record followed by a valid one, any invalid
//! record or header in a non-last segment, gaps in segment numbering. Data is
//! never skipped silently.
//!
//! The search for a later valid record is what stops a single flipped byte in an
//! early record's length field from turning the rest of the segment into a
//! "torn tail". Its cost is a byte-by-byte probe of the tail, which only happens
//! when the tail is invalid. A payload that itself embeds a byte-exact valid
//! record could make a genuinely torn tail look corrupt; that errs on the side
//! of refusing to open rather than dropping data.
//!
//! [`LogReader`] applies the same rules without modifying anything: an invalid
//! tail of a lane's last segment is treated as the end of the lane (an in-flight
//! write).

mod error;
mod format;
mod lane;
mod reader;
mod writer;

pub use error::{LogError, ScanError};
pub use format::{
    FORMAT_VERSION, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
    begin_record, finish_record, set_record_key,
};
pub use reader::LogReader;
pub use writer::{
    CommitStats, LaneStats, Log, LogOptions, LogStats, RecoveryReport, TruncatedTail,
};
