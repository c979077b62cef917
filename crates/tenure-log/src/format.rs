//! Byte-level segment format: header, records, commit records, and the verifying walk
//! that the writer's recovery, the readers' scans, `verify` and `repair` all use.
//!
//! Keeping one walk for every side guarantees that they agree on where a lane ends and on
//! what counts as damage.

use std::fmt;

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TNRSEG01";
/// Segment format written by this version: records and commit records.
pub const FORMAT_VERSION: u16 = 2;
/// The first format (records only, no commit records): still read, never written.
pub const LEGACY_FORMAT_VERSION: u16 = 1;
/// Size of the segment header: magic, version, header checksum, zero bytes.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// Size of a record header: `len` u32, `crc` u32, `key` u128.
pub const RECORD_HEADER_LEN: usize = 24;
/// Size of one copy of a commit record; each commit writes two identical copies.
pub const COMMIT_RECORD_LEN: usize = 40;
/// Largest accepted payload. Bounds what a corrupted length field can claim,
/// and keeps a single record far below the segment size.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// Offset within a record where the CRC-covered bytes (key + payload) start.
const CRC_START: usize = 8;
/// Where a record has its length, a commit record has this tag: a value above
/// [`MAX_PAYLOAD_LEN`], so a format-1 reader refuses it rather than misreading it.
const COMMIT_TAG: u32 = u32::from_le_bytes(*b"TNRC");
/// Kinds of commit records.
pub(crate) const KIND_COMMIT: u8 = 1;
/// Written by `repair` after the records it keeps in front of damage it cut off.
pub(crate) const KIND_REPAIR: u8 = 2;

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32fast::hash(&h[..10]);
    h[10..14].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends one encoded record to `buf`. The caller has checked the payload size.
#[inline]
pub(crate) fn encode_record(buf: &mut Vec<u8>, key: u128, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD_LEN);
    let start = buf.len();
    buf.reserve(RECORD_HEADER_LEN + payload.len());
    // Cast is lossless: payload.len() <= MAX_PAYLOAD_LEN < u32::MAX.
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&key.to_le_bytes());
    buf.extend_from_slice(payload);
    // Key and payload are contiguous, so one CRC pass covers both.
    let crc = crc32fast::hash(&buf[start + CRC_START..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Starts a record whose payload the caller writes in place after the returned offset's
/// header: `let at = begin_record(buf); encode(payload into buf); finish_record(buf, at, key)`.
/// This lets callers frame records in parallel, away from the single writer.
pub fn begin_record(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    start
}

/// Completes a record begun at `start`: everything after its header is the payload.
/// Returns `false` (and truncates the buffer back to `start`) when the payload is too large.
pub fn finish_record(buf: &mut Vec<u8>, start: usize, key: u128) -> bool {
    let len = buf.len() - start - RECORD_HEADER_LEN;
    if len > MAX_PAYLOAD_LEN {
        buf.truncate(start);
        return false;
    }
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + CRC_START..start + RECORD_HEADER_LEN].copy_from_slice(&key.to_le_bytes());
    let crc = crc32fast::hash(&buf[start + CRC_START..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    true
}

/// Gives a framed record (exactly one, as [`finish_record`] left it) another key, and
/// checksums it again.
/// The key in the header of a framed record (0 for a slice shorter than a header).
#[inline]
pub fn record_key(record: &[u8]) -> u128 {
    let bytes = record.get(CRC_START..RECORD_HEADER_LEN).and_then(|b| b.try_into().ok());
    u128::from_le_bytes(bytes.unwrap_or([0; 16]))
}

pub fn set_record_key(record: &mut [u8], key: u128) {
    if record.len() < RECORD_HEADER_LEN {
        return;
    }
    record[CRC_START..RECORD_HEADER_LEN].copy_from_slice(&key.to_le_bytes());
    let crc = crc32fast::hash(&record[CRC_START..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The evidence a commit leaves in a lane's segment: what it covers, so that recovery can
/// tell records that may have been acknowledged (covered) from a write that never
/// completed (after the last commit record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitRecord {
    /// Records of the lane up to this commit record: the lane-wide index of the next record.
    pub records: u64,
    /// Segment offset where the records it covers start: just after the previous commit
    /// record (both copies) or the segment header.
    pub start: u64,
    /// Records it covers (those between `start` and itself).
    pub count: u32,
    /// CRC-32 over the `crc` fields of those records, in order.
    pub digest: u32,
    pub kind: u8,
}

impl CommitRecord {
    pub(crate) fn encode(&self) -> [u8; COMMIT_RECORD_LEN] {
        let mut b = [0u8; COMMIT_RECORD_LEN];
        b[0..4].copy_from_slice(&COMMIT_TAG.to_le_bytes());
        b[8..16].copy_from_slice(&self.records.to_le_bytes());
        b[16..24].copy_from_slice(&self.start.to_le_bytes());
        b[24..28].copy_from_slice(&self.count.to_le_bytes());
        b[28..32].copy_from_slice(&self.digest.to_le_bytes());
        b[32] = self.kind;
        let crc = crc32fast::hash(&b[8..]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Both copies, as a commit writes them: one damaged copy leaves the other as evidence.
    pub(crate) fn encode_twice(&self, buf: &mut Vec<u8>) {
        let one = self.encode();
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&one);
    }
}

/// Why the item at some offset is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordFault {
    /// Fewer than [`RECORD_HEADER_LEN`] bytes left.
    PartialHeader,
    /// Declared length above [`MAX_PAYLOAD_LEN`].
    TooLong(u32),
    /// Declared length runs past the end of the data.
    PartialPayload(u32),
    /// Checksum of key + payload does not match.
    Checksum,
    /// A commit record cut short by the end of the data.
    PartialCommit,
    /// A commit record whose checksum does not match.
    CommitChecksum,
    /// A commit record with a valid checksum but fields this version does not know.
    CommitUnknown,
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordFault::PartialHeader => f.write_str("incomplete record header"),
            RecordFault::TooLong(len) => {
                write!(f, "record length {len} exceeds maximum {MAX_PAYLOAD_LEN}")
            }
            RecordFault::PartialPayload(len) => {
                write!(f, "record payload of {len} bytes runs past end of file")
            }
            RecordFault::Checksum => f.write_str("record checksum mismatch"),
            RecordFault::PartialCommit => f.write_str("incomplete commit record"),
            RecordFault::CommitChecksum => f.write_str("commit record checksum mismatch"),
            RecordFault::CommitUnknown => f.write_str("commit record of an unknown kind"),
        }
    }
}

/// One valid item of a segment.
pub(crate) enum Item<'a> {
    Record { key: u128, payload: &'a [u8], crc: [u8; 4] },
    Commit(CommitRecord),
}

/// Decodes and verifies the record at `pos`; returns key, payload and the
/// offset of the next record.
#[inline]
pub(crate) fn decode_record(buf: &[u8], pos: usize) -> Result<(u128, &[u8], usize), RecordFault> {
    match decode_item(buf, pos, LEGACY_FORMAT_VERSION)? {
        (Item::Record { key, payload, .. }, next) => Ok((key, payload, next)),
        (Item::Commit(_), _) => Err(RecordFault::CommitUnknown),
    }
}

/// Decodes and verifies the item at `pos` of a segment of format `version`.
#[inline]
pub(crate) fn decode_item(
    buf: &[u8],
    pos: usize,
    version: u16,
) -> Result<(Item<'_>, usize), RecordFault> {
    let Some(header) = buf.get(pos..pos + RECORD_HEADER_LEN) else {
        if version >= FORMAT_VERSION && buf.get(pos..pos + 4) == Some(&COMMIT_TAG.to_le_bytes()) {
            return Err(RecordFault::PartialCommit);
        }
        return Err(RecordFault::PartialHeader);
    };
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let (len, crc) = (word(0), word(4));
    if len == COMMIT_TAG && version >= FORMAT_VERSION {
        return decode_commit(buf, pos).map(|c| (Item::Commit(c), pos + COMMIT_RECORD_LEN));
    }
    if len as usize > MAX_PAYLOAD_LEN {
        return Err(RecordFault::TooLong(len));
    }
    let end = pos + RECORD_HEADER_LEN + len as usize;
    let Some(covered) = buf.get(pos + CRC_START..end) else {
        return Err(RecordFault::PartialPayload(len));
    };
    if crc32fast::hash(covered) != crc {
        return Err(RecordFault::Checksum);
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&header[CRC_START..RECORD_HEADER_LEN]);
    let item = Item::Record {
        key: u128::from_le_bytes(key),
        payload: &covered[RECORD_HEADER_LEN - CRC_START..],
        crc: crc.to_le_bytes(),
    };
    Ok((item, end))
}

fn decode_commit(buf: &[u8], pos: usize) -> Result<CommitRecord, RecordFault> {
    let Some(b) = buf.get(pos..pos + COMMIT_RECORD_LEN) else {
        return Err(RecordFault::PartialCommit);
    };
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(x)
    };
    if crc32fast::hash(&b[8..]) != u32_at(4) {
        return Err(RecordFault::CommitChecksum);
    }
    let kind = b[32];
    if !matches!(kind, KIND_COMMIT | KIND_REPAIR) || b[33..].iter().any(|&x| x != 0) {
        return Err(RecordFault::CommitUnknown);
    }
    Ok(CommitRecord {
        records: u64_at(8),
        start: u64_at(16),
        count: u32_at(24),
        digest: u32_at(28),
        kind,
    })
}

/// Key and payload of a record already verified by [`walk`].
#[inline]
fn record_at(buf: &[u8], pos: usize) -> (u128, &[u8], usize) {
    let mut len = [0u8; 4];
    len.copy_from_slice(&buf[pos..pos + 4]);
    let end = pos + RECORD_HEADER_LEN + u32::from_le_bytes(len) as usize;
    let mut key = [0u8; 16];
    key.copy_from_slice(&buf[pos + CRC_START..pos + RECORD_HEADER_LEN]);
    (u128::from_le_bytes(key), &buf[pos + RECORD_HEADER_LEN..end], end)
}

/// First offset at or after `from` where a valid record starts, if any (format 1).
///
/// Only used once an invalid record has been found, to tell a torn tail
/// (nothing valid after it) from corruption in the middle (valid data after
/// it). Probing every byte offset rather than only the bad record's declared
/// end is what catches a corrupted length field.
pub(crate) fn find_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    let last_start = buf.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last_start).find(|&pos| decode_record(buf, pos).is_ok())
}

/// First offset at or after `from` where a valid commit record starts, if any (format 2):
/// evidence that what lies before it was committed, and perhaps acknowledged.
pub(crate) fn find_commit_record(buf: &[u8], from: usize) -> Option<usize> {
    let last_start = buf.len().checked_sub(COMMIT_RECORD_LEN)?;
    let tag = COMMIT_TAG.to_le_bytes();
    (from..=last_start).find(|&pos| buf[pos..pos + 4] == tag && decode_commit(buf, pos).is_ok())
}

/// What is wrong with a segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderFault {
    /// What a crash while the segment was being created leaves: an empty file, a prefix of
    /// the header, or zeros; no record can follow such a header.
    Torn(String),
    /// Anything else: a damaged header.
    Bad { offset: u64, reason: String },
    /// A well-formed header of a format this version does not read.
    Unsupported(u16),
}

/// Checks a segment header; `Ok(version)` for a good one.
pub(crate) fn check_header(buf: &[u8]) -> Result<u16, HeaderFault> {
    let magic_len = buf.len().min(SEGMENT_MAGIC.len());
    let all_zero = buf.iter().all(|&b| b == 0);
    if buf.len() < SEGMENT_HEADER_LEN {
        // A crash can leave an empty file, a prefix of the header, or (on some
        // file systems) zeros where the unsynced header should be.
        if all_zero || buf[..magic_len] == SEGMENT_MAGIC[..magic_len] {
            return Err(HeaderFault::Torn(format!(
                "incomplete segment header ({} bytes)",
                buf.len()
            )));
        }
        return Err(HeaderFault::Bad {
            offset: 0,
            reason: format!("segment header truncated to {} bytes", buf.len()),
        });
    }
    if all_zero && buf.len() == SEGMENT_HEADER_LEN {
        return Err(HeaderFault::Torn("segment header is all zero bytes".to_string()));
    }
    if buf[..8] != SEGMENT_MAGIC {
        let reason = if all_zero {
            format!("segment of {} bytes holds only zero bytes", buf.len())
        } else {
            "bad segment magic".to_string()
        };
        return Err(HeaderFault::Bad { offset: 0, reason });
    }
    let version = u16::from_le_bytes([buf[8], buf[9]]);
    let crc_ok = buf[10..14] == crc32fast::hash(&buf[..10]).to_le_bytes();
    match version {
        // Format 1 wrote zeros after the version and never read them.
        LEGACY_FORMAT_VERSION => Ok(version),
        FORMAT_VERSION if !crc_ok => Err(HeaderFault::Bad {
            offset: 10,
            reason: "segment header checksum mismatch".to_string(),
        }),
        FORMAT_VERSION if buf[14..16] != [0, 0] => Err(HeaderFault::Bad {
            offset: 14,
            reason: "segment header bytes that must be zero are not".to_string(),
        }),
        FORMAT_VERSION => Ok(version),
        // A later format keeps the header checksum: a mismatch means a damaged version.
        v if crc_ok => Err(HeaderFault::Unsupported(v)),
        v => Err(HeaderFault::Bad {
            offset: 8,
            reason: format!("unknown segment format version {v} and a header checksum mismatch"),
        }),
    }
}

/// The first invalid item a walk met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub at: usize,
    pub reason: String,
}

/// Records since the last commit record: what a commit record written now would cover.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub start: usize,
    pub count: u32,
    pub digest: crc32fast::Hasher,
}

impl Group {
    pub(crate) fn new(start: usize) -> Group {
        Group { start, count: 0, digest: crc32fast::Hasher::new() }
    }

    #[inline]
    pub(crate) fn push(&mut self, crc: &[u8]) {
        self.count += 1;
        self.digest.update(crc);
    }

    /// The commit record that closes this group, `records` being the lane's count then.
    pub(crate) fn commit(&self, records: u64, kind: u8) -> CommitRecord {
        CommitRecord {
            records,
            start: self.start as u64,
            count: self.count,
            digest: self.digest.clone().finalize(),
            kind,
        }
    }
}

/// Everything a full verifying pass over one segment's bytes finds, without judging it:
/// the judgement (torn tail or corruption) depends on whether the segment is its lane's last.
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    pub version: u16,
    pub len: usize,
    /// Valid records before `end`.
    pub records: u64,
    /// The first byte not accepted: the fault's offset, or `len`.
    pub end: usize,
    pub fault: Option<Fault>,
    /// End of the last commit record (both copies) before `end`, or of the header.
    pub committed_end: usize,
    /// Records before `committed_end`.
    pub committed_records: u64,
    /// Commit records met (not counting second copies).
    pub commits: u64,
    /// The records between `committed_end` and `end`.
    pub group: Group,
    /// After a fault: a valid commit record (format 2) or record (format 1) further on.
    pub valid_after: Option<usize>,
}

impl Walk {
    /// Records after the last commit record (none for format 1, which has no commit records).
    pub(crate) fn uncommitted(&self) -> u64 {
        self.records - self.committed_records
    }
}

/// Verifies every item of a segment whose first record has the lane-wide index `base`.
/// Commit records are checked against the records they claim to cover. Stops at the first
/// invalid item.
pub(crate) fn walk(buf: &[u8], base: u64) -> Result<Walk, HeaderFault> {
    match walk_with(buf, base, |_, _| Ok::<(), std::convert::Infallible>(())) {
        Ok(w) => Ok(w),
        Err(WalkStop::Header(h)) => Err(h),
        Err(WalkStop::Callback(never)) => match never {},
    }
}

/// Why [`walk_with`] stopped before the end.
pub(crate) enum WalkStop<E> {
    Header(HeaderFault),
    Callback(E),
}

/// [`walk`], handing each valid record to `f` as it goes (so `f` may see records before a
/// fault: only for segments where a fault is an error, never a tail to drop).
fn walk_with<E>(
    buf: &[u8],
    base: u64,
    mut f: impl FnMut(u128, &[u8]) -> Result<(), E>,
) -> Result<Walk, WalkStop<E>> {
    let version = check_header(buf).map_err(WalkStop::Header)?;
    let mut w = Walk {
        version,
        len: buf.len(),
        records: 0,
        end: buf.len(),
        fault: None,
        committed_end: SEGMENT_HEADER_LEN,
        committed_records: 0,
        commits: 0,
        group: Group::new(SEGMENT_HEADER_LEN),
        valid_after: None,
    };
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < buf.len() {
        match decode_item(buf, pos, version) {
            Ok((Item::Record { key, payload, crc }, next)) => {
                f(key, payload).map_err(WalkStop::Callback)?;
                w.records += 1;
                if version >= FORMAT_VERSION {
                    w.group.push(&crc);
                } else {
                    // Format 1 has no commit evidence: every valid record counts as kept.
                    w.committed_records = w.records;
                    w.committed_end = next;
                }
                pos = next;
            }
            Ok((Item::Commit(c), mut next)) => {
                let want = w.group.commit(base + w.records, c.kind);
                if c != want {
                    let reason = format!(
                        "commit record does not match the records before it: it covers {} records \
                         from offset {} up to lane record {}, the segment has {} from offset {} up to {}",
                        c.count, c.start, c.records, want.count, want.start, want.records
                    );
                    w.fault = Some(Fault { at: pos, reason });
                    break;
                }
                // The second copy, unless a crash or damage took it (judged by the next step).
                if buf.get(next..next + COMMIT_RECORD_LEN) == Some(&buf[pos..next]) {
                    next += COMMIT_RECORD_LEN;
                }
                w.commits += 1;
                w.committed_end = next;
                w.committed_records = w.records;
                w.group = Group::new(next);
                pos = next;
            }
            Err(fault) => {
                w.fault = Some(Fault { at: pos, reason: fault.to_string() });
                break;
            }
        }
    }
    if let Some(f) = &w.fault {
        w.end = f.at;
        w.valid_after = if version >= FORMAT_VERSION {
            find_commit_record(buf, f.at + 1)
        } else {
            find_valid_record(buf, f.at + 1)
        };
    }
    Ok(w)
}

/// Records that can still be read after a fault, found by resynchronising on the next
/// valid item: `(records, records covered by a later commit record)`. Used to say what a
/// repair would lose.
pub(crate) fn salvage(buf: &[u8], from: usize, version: u16) -> (u64, u64) {
    let (mut records, mut covered) = (0u64, 0u64);
    let mut pos = from + 1;
    'resync: while pos < buf.len() {
        let Some(start) = (pos..buf.len()).find(|&p| decode_item(buf, p, version).is_ok()) else {
            break;
        };
        pos = start;
        loop {
            match decode_item(buf, pos, version) {
                Ok((Item::Record { .. }, next)) => {
                    records += 1;
                    if version < FORMAT_VERSION {
                        covered = records;
                    }
                    pos = next;
                }
                Ok((Item::Commit(_), next)) => {
                    covered = records;
                    pos = next;
                }
                Err(_) => {
                    pos += 1;
                    continue 'resync;
                }
            }
            if pos >= buf.len() {
                break 'resync;
            }
        }
    }
    (records, covered)
}

/// Calls `f` for every record in `buf[..end]`, which a [`walk`] has verified.
pub(crate) fn for_each_record<E>(
    buf: &[u8],
    end: usize,
    version: u16,
    mut f: impl FnMut(u128, &[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    let tag = COMMIT_TAG.to_le_bytes();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut n = 0;
    while pos < end {
        if version >= FORMAT_VERSION && buf[pos..pos + 4] == tag {
            pos += COMMIT_RECORD_LEN;
            continue;
        }
        let (key, payload, next) = record_at(buf, pos);
        f(key, payload)?;
        n += 1;
        pos = next;
    }
    Ok(n)
}

/// How a segment is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Every byte must be valid: a sealed segment, or the prefix of a last segment that a
    /// reader's snapshot holds.
    Sealed,
    /// The last segment of a lane: what follows the last commit record (format 2), or an
    /// invalid record with nothing valid after it (format 1), is a tail that was never
    /// acknowledged (format 2) or may not have been (format 1).
    Last,
}

/// Result of judging one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentParse {
    pub version: u16,
    /// Records kept.
    pub records: u64,
    /// Offset just past the last byte kept (0 if the header itself is torn).
    pub valid_end: usize,
    /// What follows `valid_end` when it is a torn tail (only in [`Mode::Last`]).
    pub tail: Option<Tail>,
}

/// A tail of a lane's last segment that is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Why it is not kept.
    pub reason: String,
    /// Complete, valid records in it (format 2: written, but their commit never completed).
    pub records: u64,
    /// The header itself is torn: the segment holds nothing.
    pub header: bool,
}

/// Why a segment could not be parsed.
#[derive(Debug)]
pub(crate) enum ParseError<E> {
    Corrupt { offset: u64, reason: String },
    UnsupportedVersion(u16),
    Callback(E),
}

/// Judges a segment whose first record has the lane-wide index `base` and hands each
/// record kept to `f`, in order. A sealed segment is read in one pass (on damage, the
/// records before it have been handed out, and the error follows); a lane's last segment
/// is judged whole first, so that `f` never sees a record of a tail that is dropped.
pub(crate) fn parse_segment<E>(
    buf: &[u8],
    base: u64,
    mode: Mode,
    f: impl FnMut(u128, &[u8]) -> Result<(), E>,
) -> Result<SegmentParse, ParseError<E>> {
    if mode == Mode::Sealed {
        let w = match walk_with(buf, base, f) {
            Ok(w) => w,
            Err(WalkStop::Callback(e)) => return Err(ParseError::Callback(e)),
            Err(WalkStop::Header(h)) => return Err(header_error(h, mode)),
        };
        return judge_walk(&w, mode);
    }
    let parsed = judge(buf, base, mode)?;
    if parsed.valid_end > 0 {
        for_each_record(buf, parsed.valid_end, parsed.version, f).map_err(ParseError::Callback)?;
    }
    Ok(parsed)
}

fn header_error<E>(h: HeaderFault, mode: Mode) -> ParseError<E> {
    match h {
        HeaderFault::Torn(reason) => {
            debug_assert_eq!(mode, Mode::Sealed);
            ParseError::Corrupt {
                offset: 0,
                reason: format!("{reason} (not at the end of the lane)"),
            }
        }
        HeaderFault::Bad { offset, reason } => ParseError::Corrupt { offset, reason },
        HeaderFault::Unsupported(v) => ParseError::UnsupportedVersion(v),
    }
}

/// The judgement of [`parse_segment`] without the callbacks.
pub(crate) fn judge<E>(buf: &[u8], base: u64, mode: Mode) -> Result<SegmentParse, ParseError<E>> {
    let w = match walk(buf, base) {
        Ok(w) => w,
        Err(HeaderFault::Torn(reason)) if mode == Mode::Last => {
            let tail = Tail { reason, records: 0, header: true };
            return Ok(SegmentParse {
                version: FORMAT_VERSION,
                records: 0,
                valid_end: 0,
                tail: Some(tail),
            });
        }
        Err(h) => return Err(header_error(h, mode)),
    };
    judge_walk(&w, mode)
}

/// The judgement of a walk (see [`Mode`]).
pub(crate) fn judge_walk<E>(w: &Walk, mode: Mode) -> Result<SegmentParse, ParseError<E>> {
    let corrupt =
        |offset: usize, reason: String| ParseError::Corrupt { offset: offset as u64, reason };
    if let Some(fault) = &w.fault {
        if mode == Mode::Sealed {
            return Err(corrupt(
                fault.at,
                format!("{} (not at the end of the lane)", fault.reason),
            ));
        }
        if let Some(valid) = w.valid_after {
            let what = if w.version >= FORMAT_VERSION {
                format!(
                    "followed by a commit record at offset {valid}: committed records are damaged"
                )
            } else {
                format!("followed by a valid record at offset {valid}")
            };
            return Err(corrupt(fault.at, format!("{}, {what}", fault.reason)));
        }
    }
    let tail = match (&w.fault, mode) {
        (_, Mode::Sealed) => None,
        (None, Mode::Last) if w.committed_end == w.len => None,
        (None, Mode::Last) => Some(Tail {
            reason: format!(
                "{} records after the last commit record: their commit never completed",
                w.uncommitted()
            ),
            records: w.uncommitted(),
            header: false,
        }),
        (Some(fault), Mode::Last) => {
            let reason = if w.version >= FORMAT_VERSION {
                let records = match w.uncommitted() {
                    0 => String::new(),
                    n => format!("{n} complete records, then "),
                };
                format!(
                    "after the last commit record: {records}{} at offset {}",
                    fault.reason, fault.at
                )
            } else {
                fault.reason.clone()
            };
            Some(Tail { reason, records: w.uncommitted(), header: false })
        }
    };
    let (records, valid_end) = if mode == Mode::Sealed {
        (w.records, w.len)
    } else {
        (w.committed_records, w.committed_end)
    };
    Ok(SegmentParse { version: w.version, records, valid_end, tail })
}

/// Lane names are directory names, so they are restricted to a portable set.
pub(crate) fn is_valid_lane(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(b'a'..=b'z') => {}
        _ => return false,
    }
    bytes.len() <= 64 && bytes[1..].iter().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// Parses a segment file name; `None` if it is not one, `Some(Err)` if it
/// looks like a segment (`.seg`) but its index is malformed.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Result<u64, ()>> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(()));
    }
    Some(stem.parse::<u64>().map_err(|_| ()))
}

#[cfg(test)]
mod tests;
