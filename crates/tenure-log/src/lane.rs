//! Directory layout shared by writer, readers, `verify` and `repair`: the lock, finding
//! lanes, listing and checking a lane's segments, reading segment files, and the key index
//! of sealed segments.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{LogError, ScanError};
use crate::format::{self, Mode, ParseError, SegmentParse};

/// Name of the lock file inside the log directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Takes the log's lock without waiting: exclusive for the writer and `repair`, shared for
/// `verify`. Held until the file is dropped.
pub(crate) fn lock(dir: &Path, exclusive: bool) -> Result<File, LogError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| LogError::io(&path, e))?;
    let locked = if exclusive { file.try_lock() } else { file.try_lock_shared() };
    match locked {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(LogError::Locked { path: dir.to_path_buf() }),
        Err(TryLockError::Error(e)) => Err(LogError::io(&path, e)),
    }
}

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

/// The path of the segment of `lane_dir` whose first record is `base`.
pub(crate) fn segment_path(lane_dir: &Path, base: u64) -> PathBuf {
    lane_dir.join(format::segment_file_name(base))
}

/// Checks that a segment starts where the lane's previous segments end. A gap is a missing
/// segment, and the error names it.
pub(crate) fn check_base(seg: &SegmentFile, expected: u64) -> Result<(), LogError> {
    if seg.base == expected {
        return Ok(());
    }
    let name = seg.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if seg.base > expected {
        let lane_dir = seg.path.parent().unwrap_or(Path::new(""));
        return Err(LogError::corrupt(
            segment_path(lane_dir, expected),
            0,
            format!(
                "segment missing: the lane's records {expected}..{} are not on disk \
                 (the previous segments end at record {expected}, {name} starts at record {})",
                seg.base, seg.base
            ),
        ));
    }
    Err(LogError::corrupt(
        &seg.path,
        0,
        format!(
            "segment starts at record {} but the lane's previous segments end at record {expected}",
            seg.base
        ),
    ))
}

/// The error for a lane whose last segment was sealed (its successor was created before
/// its key index was written) but has no successor.
pub(crate) fn missing_successor(last: &SegmentFile, records: u64) -> LogError {
    let lane_dir = last.path.parent().unwrap_or(Path::new(""));
    let name = last.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    LogError::corrupt(
        segment_path(lane_dir, last.base + records),
        0,
        format!(
            "segment missing: {name} was sealed (it has a key index, written only once the next \
             segment exists) but no segment follows it; the lane's records from {} on are not on disk",
            last.base + records
        ),
    )
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

/// Like [`read_segment`] for a segment a reader listed earlier: its disappearance is
/// corruption of the snapshot, named with the file, not a bare I/O error.
pub(crate) fn read_listed_segment(
    path: &Path,
    limit: Option<u64>,
    buf: &mut Vec<u8>,
) -> Result<(), LogError> {
    match read_segment(path, limit, buf) {
        Err(LogError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(LogError::corrupt(path, 0, "segment missing: it was listed a moment earlier"))
        }
        other => other,
    }
}

/// Runs [`format::parse_segment`] and attaches the path to its errors.
pub(crate) fn parse<E>(
    path: &Path,
    buf: &[u8],
    base: u64,
    mode: Mode,
    f: impl FnMut(u128, &[u8]) -> Result<(), E>,
) -> Result<SegmentParse, ScanError<E>> {
    format::parse_segment(buf, base, mode, f).map_err(|e| match e {
        ParseError::Corrupt { offset, reason } => {
            ScanError::Log(LogError::corrupt(path, offset, reason))
        }
        ParseError::UnsupportedVersion(version) => {
            ScanError::Log(LogError::UnsupportedVersion { path: path.to_path_buf(), version })
        }
        ParseError::Callback(e) => ScanError::Callback(e),
    })
}

/// Judges a segment (see [`format::judge`]) and attaches the path to its errors.
pub(crate) fn judge(
    path: &Path,
    buf: &[u8],
    base: u64,
    mode: Mode,
) -> Result<SegmentParse, LogError> {
    format::judge::<std::convert::Infallible>(buf, base, mode).map_err(|e| match e {
        ParseError::Corrupt { offset, reason } => LogError::corrupt(path, offset, reason),
        ParseError::UnsupportedVersion(version) => {
            LogError::UnsupportedVersion { path: path.to_path_buf(), version }
        }
        ParseError::Callback(never) => match never {},
    })
}

/// The key index of a sealed segment: `<segment>.keys` beside it. Opening the writer needs
/// every stored key (to refuse duplicates); reading the index instead of the segment makes
/// that cost 16 bytes per record instead of the whole record and its checksum.
///
/// Layout (format 2, `TNRKEYS2`): the magic, the segment's length in bytes (u64 LE), its
/// record count (u64 LE), a CRC-32 of the whole segment file (u32 LE), a CRC-32 of these
/// first 28 bytes (u32 LE), the keys (u128 LE each, in record order), and a CRC-32 of
/// everything before it. The header checksum lets a reader take the record count from the
/// first 32 bytes alone. Format 1 (`TNRKEYS1`, still read): magic, length, count, keys, CRC.
///
/// The writer writes the index of a segment when it seals it, only once the next segment
/// exists: a lane's last segment never has one, so one beside it means its successor is
/// missing.
pub(crate) fn keys_path(segment: &Path) -> PathBuf {
    segment.with_extension("keys")
}

const KEYS_MAGIC_V1: &[u8; 8] = b"TNRKEYS1";
const KEYS_MAGIC_V2: &[u8; 8] = b"TNRKEYS2";
const KEYS_HEADER_V2: usize = 32;

/// A key index as read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    pub version: u8,
    pub segment_len: u64,
    pub keys: Vec<u128>,
    /// CRC-32 of the whole segment (format 2).
    pub segment_crc: Option<u32>,
}

/// What is beside a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexState {
    Missing,
    /// Present but unusable: why.
    Invalid(String),
    Valid(KeyIndex),
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(x)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Reads and checks the key index of `segment` (its own checksums; not against the segment).
pub(crate) fn read_index(segment: &Path) -> IndexState {
    let path = keys_path(segment);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return IndexState::Missing,
        Err(e) => return IndexState::Invalid(format!("unreadable: {e}")),
    };
    parse_index(&bytes).map_or_else(IndexState::Invalid, IndexState::Valid)
}

fn parse_index(bytes: &[u8]) -> Result<KeyIndex, String> {
    let (version, header) = match bytes.get(..8) {
        Some(m) if m == KEYS_MAGIC_V2 => (2, KEYS_HEADER_V2),
        Some(m) if m == KEYS_MAGIC_V1 => (1, 24),
        _ => return Err("bad key index magic".into()),
    };
    if bytes.len() < header + 4 {
        return Err(format!("key index truncated to {} bytes", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32_at(crc, 0) {
        return Err("key index checksum mismatch".into());
    }
    if version == 2 && crc32fast::hash(&body[..28]) != u32_at(body, 28) {
        return Err("key index header checksum mismatch".into());
    }
    let count = u64_at(body, 16);
    let keys = &body[header..];
    if Some(keys.len() as u64) != count.checked_mul(16) {
        return Err(format!("key index holds {} bytes of keys for {count} records", keys.len()));
    }
    Ok(KeyIndex {
        version,
        segment_len: u64_at(body, 8),
        keys: keys
            .chunks_exact(16)
            .map(|k| {
                let mut x = [0u8; 16];
                x.copy_from_slice(k);
                u128::from_le_bytes(x)
            })
            .collect(),
        segment_crc: (version == 2).then(|| u32_at(body, 24)),
    })
}

/// `(segment length, record count)` from a format-2 index's checked header, reading 32
/// bytes; `None` when there is no such index.
pub(crate) fn read_index_header(segment: &Path) -> Option<(u64, u64)> {
    read_header_of(&mut File::open(keys_path(segment)).ok()?)
}

fn read_header_of(f: &mut File) -> Option<(u64, u64)> {
    let mut h = [0u8; KEYS_HEADER_V2];
    f.read_exact(&mut h).ok()?;
    if &h[..8] != KEYS_MAGIC_V2 || crc32fast::hash(&h[..28]) != u32_at(&h, 28) {
        return None;
    }
    Some((u64_at(&h, 8), u64_at(&h, 16)))
}

/// [`read_index_header`], when the index file is also as long as its count makes it (a cut
/// index is caught without reading its keys).
pub(crate) fn read_index_summary(segment: &Path) -> Option<(u64, u64)> {
    let mut f = File::open(keys_path(segment)).ok()?;
    let (segment_len, count) = read_header_of(&mut f)?;
    let expected = count.checked_mul(16)?.checked_add(KEYS_HEADER_V2 as u64 + 4)?;
    (f.metadata().ok()?.len() == expected).then_some((segment_len, count))
}

/// Writes a sealed segment's key index aside and renames it into place, so that it appears
/// whole or not at all. With `sync` the file is synced first; without, a crash may leave a
/// damaged index, which its checksums reveal and the next writer open rebuilds.
pub(crate) fn write_index(
    segment: &Path,
    segment_len: u64,
    segment_crc: u32,
    keys: &[u128],
    sync: bool,
) -> Result<(), LogError> {
    let path = keys_path(segment);
    let tmp = path.with_extension("keys.tmp");
    let mut bytes = Vec::with_capacity(KEYS_HEADER_V2 + 4 + keys.len() * 16);
    bytes.extend_from_slice(KEYS_MAGIC_V2);
    bytes.extend_from_slice(&segment_len.to_le_bytes());
    bytes.extend_from_slice(&(keys.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&segment_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&header_crc.to_le_bytes());
    for k in keys {
        bytes.extend_from_slice(&k.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let io = |e| LogError::io(&tmp, e);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    if sync {
        f.sync_all().map_err(io)?;
    }
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| LogError::io(&path, e))?;
    Ok(())
}

/// Removes a segment's key index if there is one.
pub(crate) fn remove_index(segment: &Path) -> Result<bool, LogError> {
    let path = keys_path(segment);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(LogError::io(&path, e)),
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| LogError::io(dir, e))
}

/// Whether the lane's last segment has a format-2 key index (so it was sealed). A reader
/// may be racing a writer that is rolling: the index is written only after the next
/// segment exists, so listing again tells a roll in progress from a missing segment.
pub(crate) fn list_checked(lane_dir: &Path) -> Result<Vec<SegmentFile>, LogError> {
    let mut segments = list_segments(lane_dir)?;
    // Each round needs a new segment to have appeared, so this ends.
    loop {
        let Some(last) = segments.last() else { return Ok(segments) };
        let Some((_, count)) = read_index_header(&last.path) else { return Ok(segments) };
        let again = list_segments(lane_dir)?;
        if again.last().map(|s| s.base) == Some(last.base) {
            return Err(missing_successor(last, count));
        }
        segments = again;
    }
}
