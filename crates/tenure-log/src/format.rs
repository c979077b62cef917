//! Byte-level segment format: header, record encoding and the verifying parser
//! that both the writer's recovery and the reader's scans use.
//!
//! Keeping one parser for both sides guarantees that the writer and readers
//! agree on where a lane ends.

use std::fmt;

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TNRSEG01";
/// Current (and only supported) segment format version.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the segment header: magic, version, reserved bytes.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// Size of a record header: `len` u32, `crc` u32, `key` u128.
pub const RECORD_HEADER_LEN: usize = 24;
/// Largest accepted payload. Bounds what a corrupted length field can claim,
/// and keeps a single record far below the segment size.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// Offset within a record where the CRC-covered bytes (key + payload) start.
const CRC_START: usize = 8;

pub(crate) fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
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
pub fn set_record_key(record: &mut [u8], key: u128) {
    if record.len() < RECORD_HEADER_LEN {
        return;
    }
    record[CRC_START..RECORD_HEADER_LEN].copy_from_slice(&key.to_le_bytes());
    let crc = crc32fast::hash(&record[CRC_START..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Why a record at some offset is not valid.
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
        }
    }
}

/// Decodes and verifies the record at `pos`; returns key, payload and the
/// offset of the next record.
#[inline]
pub(crate) fn decode_record(buf: &[u8], pos: usize) -> Result<(u128, &[u8], usize), RecordFault> {
    let Some(header) = buf.get(pos..pos + RECORD_HEADER_LEN) else {
        return Err(RecordFault::PartialHeader);
    };
    let (len_bytes, rest) = header.split_at(4);
    let (crc_bytes, key_bytes) = rest.split_at(4);
    let len = u32::from_le_bytes(len_bytes.try_into().map_err(|_| RecordFault::PartialHeader)?);
    let crc = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| RecordFault::PartialHeader)?);
    let key = u128::from_le_bytes(key_bytes.try_into().map_err(|_| RecordFault::PartialHeader)?);
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
    Ok((key, &covered[RECORD_HEADER_LEN - CRC_START..], end))
}

/// First offset at or after `from` where a valid record starts, if any.
///
/// Only used once an invalid record has been found, to tell a torn tail
/// (nothing valid after it) from corruption in the middle (valid data after
/// it). Probing every byte offset rather than only the bad record's declared
/// end is what catches a corrupted length field.
pub(crate) fn find_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    let last_start = buf.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last_start).find(|&pos| decode_record(buf, pos).is_ok())
}

/// Result of parsing one segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentParse {
    /// Valid records found.
    pub records: u64,
    /// Offset just past the last valid record (0 if the header itself is torn).
    pub valid_end: usize,
    /// Present when the segment ends in a torn tail starting at `valid_end`.
    pub torn: Option<String>,
}

/// Why a segment could not be parsed.
#[derive(Debug)]
pub(crate) enum ParseError<E> {
    Corrupt { offset: u64, reason: String },
    UnsupportedVersion(u16),
    Callback(E),
}

/// Verifies every record of a segment and hands each to `f` in order.
///
/// `tolerate_torn_tail` is true only for the last segment of a lane: there an
/// invalid header or record with nothing valid after it is reported as a torn
/// tail instead of an error. Records before a corruption have already been
/// passed to `f` when the error is returned.
pub(crate) fn parse_segment<E>(
    buf: &[u8],
    tolerate_torn_tail: bool,
    mut f: impl FnMut(u128, &[u8]) -> Result<(), E>,
) -> Result<SegmentParse, ParseError<E>> {
    if let Some(torn) = check_header(buf, tolerate_torn_tail)? {
        return Ok(SegmentParse { records: 0, valid_end: 0, torn: Some(torn) });
    }
    let mut records = 0u64;
    let mut pos = SEGMENT_HEADER_LEN;
    while pos < buf.len() {
        match decode_record(buf, pos) {
            Ok((key, payload, next)) => {
                f(key, payload).map_err(ParseError::Callback)?;
                records += 1;
                pos = next;
            }
            Err(fault) => {
                if !tolerate_torn_tail {
                    return Err(ParseError::Corrupt {
                        offset: pos as u64,
                        reason: format!("{fault} (not at the end of the lane)"),
                    });
                }
                if let Some(valid) = find_valid_record(buf, pos + 1) {
                    return Err(ParseError::Corrupt {
                        offset: pos as u64,
                        reason: format!("{fault}, followed by a valid record at offset {valid}"),
                    });
                }
                return Ok(SegmentParse { records, valid_end: pos, torn: Some(fault.to_string()) });
            }
        }
    }
    Ok(SegmentParse { records, valid_end: pos, torn: None })
}

/// `Ok(None)` for a good header, `Ok(Some(reason))` for a header torn by a
/// crash while the segment was being created (only when tolerated).
fn check_header<E>(buf: &[u8], tolerate_torn: bool) -> Result<Option<String>, ParseError<E>> {
    let expected = segment_header();
    let all_zero = buf.iter().all(|&b| b == 0);
    if buf.len() < SEGMENT_HEADER_LEN {
        // A crash can leave an empty file, a prefix of the header, or (on some
        // file systems) zeros where the unsynced header should be.
        let prefix_len = buf.len().min(SEGMENT_MAGIC.len());
        let is_prefix = buf[..prefix_len] == expected[..prefix_len];
        if tolerate_torn && (all_zero || is_prefix) {
            return Ok(Some(format!("incomplete segment header ({} bytes)", buf.len())));
        }
        return Err(ParseError::Corrupt {
            offset: 0,
            reason: format!("segment header truncated to {} bytes", buf.len()),
        });
    }
    if buf[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        if tolerate_torn && all_zero {
            return Ok(Some("segment contains only zero bytes".to_string()));
        }
        return Err(ParseError::Corrupt { offset: 0, reason: "bad segment magic".to_string() });
    }
    let version = u16::from_le_bytes([buf[8], buf[9]]);
    if version != FORMAT_VERSION {
        return Err(ParseError::UnsupportedVersion(version));
    }
    Ok(None)
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
