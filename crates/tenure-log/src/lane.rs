//! Directory layout shared by writer and reader: finding lanes, listing and
//! checking a lane's segments, and reading segment files.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{LogError, ScanError};
use crate::format::{self, ParseError, SegmentParse};

/// One segment file of a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    /// Lane-wide index of the segment's first record.
    pub base: u64,
    pub path: PathBuf,
}

/// Lane names present in the log directory, sorted. Entries that are not
/// directories with valid lane names (LOCK, stray files) are ignored.
pub(crate) fn list_lanes(dir: &Path) -> Result<Vec<String>, LogError> {
    let mut lanes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !format::is_valid_lane(&name) {
            continue;
        }
        let file_type = entry.file_type().map_err(|e| LogError::io(entry.path(), e))?;
        if file_type.is_dir() {
            lanes.push(name);
        }
    }
    lanes.sort_unstable();
    Ok(lanes)
}

/// Segments of a lane directory sorted by base index. A missing directory is
/// an empty lane. A `.seg` file with a malformed name is corruption: it can only
/// come from outside tampering, and ignoring it could hide records.
pub(crate) fn list_segments(lane_dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let entries = match std::fs::read_dir(lane_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io(lane_dir, e)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(lane_dir, e))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        match format::parse_segment_file_name(&name) {
            None => continue,
            Some(Ok(base)) => segments.push(SegmentFile { base, path }),
            Some(Err(())) => {
                return Err(LogError::corrupt(path, 0, "malformed segment file name"));
            }
        }
    }
    segments.sort_unstable_by_key(|s| s.base);
    Ok(segments)
}

/// Checks that a segment starts where the previous one ended.
pub(crate) fn check_base(seg: &SegmentFile, expected: u64) -> Result<(), LogError> {
    if seg.base == expected {
        Ok(())
    } else {
        Err(LogError::corrupt(
            &seg.path,
            0,
            format!(
                "segment starts at record {} but the lane's previous segments end at record {expected}",
                seg.base
            ),
        ))
    }
}

/// Reads up to `limit` bytes of a file (all of it when `None`) into `buf`,
/// reusing its allocation across segments.
pub(crate) fn read_segment(
    path: &Path,
    limit: Option<u64>,
    buf: &mut Vec<u8>,
) -> Result<(), LogError> {
    buf.clear();
    let mut file = File::open(path).map_err(|e| LogError::io(path, e))?;
    let len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
    let want = limit.map_or(len, |l| l.min(len));
    // Reserving the exact size up front lets read_to_end fill it in few large reads.
    buf.reserve(usize::try_from(want).unwrap_or(0).saturating_add(1));
    let result = match limit {
        Some(l) => file.take(l).read_to_end(buf),
        None => file.read_to_end(buf),
    };
    result.map_err(|e| LogError::io(path, e))?;
    Ok(())
}

/// Runs [`format::parse_segment`] and attaches the path to its errors.
pub(crate) fn parse<E>(
    path: &Path,
    buf: &[u8],
    tolerate_torn_tail: bool,
    f: impl FnMut(u128, &[u8]) -> Result<(), E>,
) -> Result<SegmentParse, ScanError<E>> {
    format::parse_segment(buf, tolerate_torn_tail, f).map_err(|e| match e {
        ParseError::Corrupt { offset, reason } => {
            ScanError::Log(LogError::corrupt(path, offset, reason))
        }
        ParseError::UnsupportedVersion(version) => {
            ScanError::Log(LogError::UnsupportedVersion { path: path.to_path_buf(), version })
        }
        ParseError::Callback(e) => ScanError::Callback(e),
    })
}

/// The key index of a sealed segment: `<segment>.keys` beside it. Opening the writer needs
/// every stored key (to refuse duplicates); reading the index instead of the segment makes
/// that cost 16 bytes per record instead of the whole record and its checksum.
///
/// Layout: `TNRKEYS1`, the segment's length in bytes (u64 LE), its record count (u64 LE),
/// the keys (u128 LE each, in record order), and a CRC-32 of everything before it. An index
/// that does not match its segment's current length, or fails its checksum, is ignored (the
/// segment is read and verified instead, and the index written again).
pub(crate) fn keys_path(segment: &Path) -> PathBuf {
    segment.with_extension("keys")
}

const KEYS_MAGIC: &[u8; 8] = b"TNRKEYS1";

/// The keys of a sealed segment from its index, if the index is valid for `segment_len`.
pub(crate) fn read_keys(segment: &Path, segment_len: u64) -> Option<Vec<u128>> {
    let bytes = std::fs::read(keys_path(segment)).ok()?;
    if bytes.len() < 28 || &bytes[..8] != KEYS_MAGIC {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let len = u64::from_le_bytes(body[8..16].try_into().ok()?);
    let count = u64::from_le_bytes(body[16..24].try_into().ok()?);
    let keys = &body[24..];
    if len != segment_len || keys.len() as u64 != count.checked_mul(16)? {
        return None;
    }
    Some(
        keys.chunks_exact(16)
            .map(|k| u128::from_le_bytes(k.try_into().unwrap_or([0; 16])))
            .collect(),
    )
}

/// Writes a sealed segment's key index: aside, synced, renamed (a crash leaves either no
/// index or a complete one).
pub(crate) fn write_keys(segment: &Path, segment_len: u64, keys: &[u128]) -> Result<(), LogError> {
    let path = keys_path(segment);
    let tmp = path.with_extension("keys.tmp");
    let mut bytes = Vec::with_capacity(28 + keys.len() * 16);
    bytes.extend_from_slice(KEYS_MAGIC);
    bytes.extend_from_slice(&segment_len.to_le_bytes());
    bytes.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    for k in keys {
        bytes.extend_from_slice(&k.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let io = |e| LogError::io(&tmp, e);
    let f = File::create(&tmp).map_err(io)?;
    use std::io::Write;
    (&f).write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
    Ok(())
}
