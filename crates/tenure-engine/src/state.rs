//! Derived state kept between commands under `DATA/state/`: where the files live, what
//! identifies the log they were folded from, and their atomic replacement. What a file
//! holds, and the check that it still fits, belong to its reader (for the health state,
//! `tenure_health::checkpoint`).
//!
//! Like `columnar/`, `state/` is derived: deleting it costs one fold of the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use tenure_core::event::EventKind;

use tenure_core::codec::{Cursor, put_str, put_u64};
use tenure_log::LogReader;

use crate::{EngineError, lane, log_dir};

/// The state directory of a data directory.
pub fn dir(data: &Path) -> PathBuf {
    data.join("state")
}

/// Where some lanes stood when a state was folded from them: per lane, its files'
/// fingerprint (`tenure_log::lane_fingerprint`), its record count, and the key and
/// position of its last record. A state noted with its marks is current while the
/// fingerprints are; after that, [`Marks::tail`] says where the new records start, so the
/// state can be brought forward with them rather than folded again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marks(Vec<LaneMark>);

#[derive(Clone, Debug, PartialEq, Eq)]
struct LaneMark {
    lane: String,
    fingerprint: [u64; 4],
    records: u64,
    /// The last record's key and position (zero when the lane is empty).
    last_key: u128,
    last_at: u64,
}

impl Marks {
    /// The lanes of `kinds` now. Take them before reading the lanes for a fold: a state
    /// noted older than it is is brought forward over records it holds (folded once more),
    /// never newer.
    pub fn take(data: &Path, kinds: &[EventKind]) -> Result<Marks, EngineError> {
        let begun = Marks::begin(data, kinds)?;
        let dir = log_dir(data);
        if !dir.exists() {
            return begun.finish(None);
        }
        let lanes: Vec<&str> = kinds.iter().map(|k| lane(*k)).collect();
        begun.finish(Some(&LogReader::open_lanes(&dir, &lanes)?))
    }

    /// The first half of [`Marks::take`], for a caller that reads the lanes anyway: the
    /// lanes' fingerprints now; then open the reader (holding every lane of `kinds`) and
    /// [`finish`](BegunMarks::finish) with it, so that the lanes' last segments are read
    /// once.
    pub fn begin(data: &Path, kinds: &[EventKind]) -> Result<BegunMarks, EngineError> {
        let dir = log_dir(data);
        let mut prints = Vec::with_capacity(kinds.len());
        for k in kinds {
            prints.push((lane(*k), tenure_log::lane_fingerprint(&dir, lane(*k))?));
        }
        Ok(BegunMarks(prints))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.0.len() as u64);
        for m in &self.0 {
            put_str(&mut out, &m.lane);
            for v in m.fingerprint {
                put_u64(&mut out, v);
            }
            put_u64(&mut out, m.records);
            put_u64(&mut out, m.last_key as u64);
            put_u64(&mut out, (m.last_key >> 64) as u64);
            put_u64(&mut out, m.last_at);
        }
        out
    }

    /// Marks as [`Marks::encode`] wrote them; `None` for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Marks> {
        let mut c = Cursor::new(bytes);
        let n = c.u64().ok()?;
        let mut marks = Vec::new();
        for _ in 0..n.min(256) {
            let lane = c.str().ok()?.to_string();
            let mut fingerprint = [0u64; 4];
            for v in &mut fingerprint {
                *v = c.u64().ok()?;
            }
            let records = c.u64().ok()?;
            let last_key = c.u64().ok()? as u128 | (c.u64().ok()? as u128) << 64;
            let last_at = c.u64().ok()?;
            marks.push(LaneMark { lane, fingerprint, records, last_key, last_at });
        }
        (c.is_done() && marks.len() as u64 == n).then_some(Marks(marks))
    }

    /// Whether the lanes' files are as noted (from their metadata alone).
    pub fn current(&self, data: &Path) -> Result<bool, EngineError> {
        let dir = log_dir(data);
        for m in &self.0 {
            if tenure_log::lane_fingerprint(&dir, &m.lane)? != m.fingerprint {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`tail`](Self::tail) in the log of `data` as it stands.
    pub fn tail_now(&self, data: &Path) -> Result<Option<Vec<(String, u64)>>, EngineError> {
        let lanes: Vec<&str> = self.0.iter().map(|m| m.lane.as_str()).collect();
        Ok(self.tail(&LogReader::open_lanes(&log_dir(data), &lanes)?))
    }

    /// The lanes' record counts as noted (where the records taken since start).
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.0.iter().map(|m| (m.lane.clone(), m.records)).collect()
    }

    /// Each noted lane's record count in the log of `data` as it stands, when the lanes
    /// still hold what was noted ([`tail`](Self::tail)); `None` when one does not.
    pub fn ends_now(&self, data: &Path) -> Result<Option<Vec<(String, u64)>>, EngineError> {
        let lanes: Vec<&str> = self.0.iter().map(|m| m.lane.as_str()).collect();
        let reader = LogReader::open_lanes(&log_dir(data), &lanes)?;
        Ok(self.tail(&reader).map(|from| {
            from.into_iter().map(|(lane, _)| (lane.clone(), reader.lane_len(&lane))).collect()
        }))
    }

    /// Where each noted lane's new records start in `reader`'s snapshot, when the lanes
    /// still hold what was noted (none holds fewer records, and each one's last noted record
    /// is still there with its key); `None` when one does not (a repair cut it).
    pub fn tail(&self, reader: &LogReader) -> Option<Vec<(String, u64)>> {
        let mut out = Vec::with_capacity(self.0.len());
        for m in &self.0 {
            if reader.lane_len(&m.lane) < m.records {
                return None;
            }
            if m.records > 0
                && reader.key_at(&m.lane, tenure_log::Located(m.last_at)) != Some(m.last_key)
            {
                return None;
            }
            out.push((m.lane.clone(), m.records));
        }
        Some(out)
    }
}

/// Marks whose fingerprints are taken, to be completed from a reader opened after them.
pub struct BegunMarks(Vec<(&'static str, [u64; 4])>);

impl BegunMarks {
    /// The marks, each lane's record count and last record from `reader` (none: no log).
    pub fn finish(self, reader: Option<&LogReader>) -> Result<Marks, EngineError> {
        let mut marks = Vec::with_capacity(self.0.len());
        for (l, fingerprint) in self.0 {
            let records = reader.map_or(0, |r| r.lane_len(l));
            let (mut last_key, mut last_at) = (0, 0);
            if let Some(r) = reader
                && let Some((key, at)) = r.last_record(l)?
            {
                (last_key, last_at) = (key, at.0);
            }
            marks.push(LaneMark { lane: l.to_string(), fingerprint, records, last_key, last_at });
        }
        Ok(Marks(marks))
    }
}

/// This binary, as far as saved state is concerned: its version and its GNU build id (the
/// linker's hash of what it linked), so a copy, a link or a package of the same build reads
/// what it saved, and a new build, which may compute differently, makes it again. A binary
/// without a build id is known by its file's size, modification and change times instead
/// (the change time, which no copy or archive keeps, tells apart builds whose times were
/// set alike; touching the file's inode then costs one fold). Taken once per process: a
/// binary replaced while it runs is still this one's. When the file cannot be read, a
/// value no other process has (nothing saved under it is taken for this build's).
pub fn build() -> String {
    static BUILD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILD
        .get_or_init(|| {
            use std::os::unix::fs::MetadataExt;
            let version = env!("CARGO_PKG_VERSION");
            // `/proc/self/exe` is this process's file even when it was replaced since.
            let exe = Path::new("/proc/self/exe");
            let exe = if exe.exists() {
                exe.to_path_buf()
            } else {
                std::env::current_exe().unwrap_or_default()
            };
            if let Some(id) = build_id(&exe) {
                let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                return format!("{version}|build-id|{hex}");
            }
            match std::fs::metadata(&exe) {
                Ok(m) => format!(
                    "{version}|{}|{:?}|{}.{}",
                    m.len(),
                    m.modified().ok(),
                    m.ctime(),
                    m.ctime_nsec()
                ),
                Err(_) => {
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                    format!("{version}|unknown|{}|{nanos}", std::process::id())
                }
            }
        })
        .clone()
}

/// The GNU build id of the 64-bit ELF file at `path` (the note `ld --build-id` writes, as
/// its program headers place it: a few hundred bytes read, whatever the file's size), or
/// `None` (another format, no such note, unreadable).
pub fn build_id(path: &Path) -> Option<Vec<u8>> {
    use object::elf;
    use object::read::ReadCache;
    use object::read::elf::{FileHeader, ProgramHeader};
    let data = ReadCache::new(std::fs::File::open(path).ok()?);
    let header = elf::FileHeader64::<object::Endianness>::parse(&data).ok()?;
    let endian = header.endian().ok()?;
    for segment in header.program_headers(endian, &data).ok()? {
        let Ok(Some(mut notes)) = segment.notes(endian, &data) else { continue };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                return Some(note.desc().to_vec()).filter(|id| !id.is_empty());
            }
        }
    }
    None
}

/// A 128-bit digest of `text` (a configuration's settings, say) for a state's key.
pub fn digest(text: &str) -> [u8; 16] {
    digest_bytes(text.as_bytes())
}

/// As [`digest`], of bytes (a file's, say).
pub fn digest_bytes(bytes: &[u8]) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes()
}

/// `DATA/state/NAME` opened for reading, or `None` when there is no such file.
pub fn open(data: &Path, name: &str) -> Result<Option<std::fs::File>, EngineError> {
    let path = dir(data).join(name);
    match std::fs::File::open(&path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EngineError::Io { path, source }),
    }
}

/// Replaces `DATA/state/NAME` with `bytes` atomically: a reader sees the old file or the
/// new one, never a part (a temporary file of this process, synced, then renamed).
pub fn write(data: &Path, name: &str, bytes: &[u8]) -> Result<(), EngineError> {
    write_parts(data, name, &[bytes])
}

/// As [`write`], the file's bytes given in pieces (written in order).
pub fn write_parts(data: &Path, name: &str, parts: &[&[u8]]) -> Result<(), EngineError> {
    write_with(data, name, |f| {
        for p in parts {
            f.write_all(p)?;
        }
        Ok(())
    })
}

/// A file of this process beside `DATA/state/NAME`, for a writer's scratch (`tag` tells
/// two apart): removed as a dead writer's once an hour old, as [`write`]'s are.
pub fn scratch(data: &Path, name: &str, tag: &str) -> PathBuf {
    dir(data).join(format!(".{name}.{tag}.{}.tmp", std::process::id()))
}

/// As [`write`], the file's bytes written by `f`.
pub fn write_with(
    data: &Path,
    name: &str,
    f: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), EngineError> {
    let d = dir(data);
    std::fs::create_dir_all(&d).map_err(|source| EngineError::Write { path: d.clone(), source })?;
    remove_stale(&d, name);
    let tmp = d.join(format!(".{name}.{}.tmp", std::process::id()));
    let path = d.join(name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        f(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        EngineError::Write { path, source }
    })
}

/// Temporary files of writers that died before their rename (killed during a fold, say):
/// removed once an hour old. A live writer's is younger: it is written after its fold.
fn remove_stale(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.");
    for e in entries.flatten() {
        let file = e.file_name();
        let file = file.to_string_lossy();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if old && file.starts_with(&prefix) && file.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build id as binutils' `readelf -n` prints it ("Build ID: 0a1b..."), the
    /// reference for [`build_id`].
    fn readelf_build_id(path: &Path) -> Option<String> {
        let out = std::process::Command::new("readelf")
            .arg("-n")
            .arg(path)
            .output()
            .expect("readelf (binutils) runs: it checks the build id read here");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
    }

    #[test]
    fn the_build_id_is_the_one_readelf_reads_and_changes_with_the_note() {
        let exe = std::env::current_exe().unwrap();
        let hex = |id: Vec<u8>| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let id = build_id(&exe).expect("this test binary has a GNU build id");
        let reference = readelf_build_id(&exe).expect("readelf finds a build id");
        assert_eq!(hex(id.clone()), reference);
        assert!(build().ends_with(&format!("|build-id|{reference}")), "{}", build());
        // A copy whose note says otherwise is another build.
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = std::fs::read(&exe).unwrap();
        let mut note = vec![4, 0, 0, 0];
        note.extend((id.len() as u32).to_le_bytes());
        note.extend([3, 0, 0, 0, b'G', b'N', b'U', 0]);
        note.extend(&id);
        let at = bytes.windows(note.len()).position(|w| w == note).expect("the note's bytes");
        bytes[at + 16] ^= 0xff;
        let other = dir.path().join("other");
        std::fs::write(&other, &bytes).unwrap();
        let other_id = build_id(&other).expect("still a build id");
        assert_ne!(other_id, id);
        assert_eq!(hex(other_id), readelf_build_id(&other).unwrap());
        // Not ELF, cut short, empty: none.
        for (name, content) in
            [("text", &b"#!/bin/sh\n"[..]), ("cut", &bytes[..40]), ("empty", &[][..])]
        {
            std::fs::write(dir.path().join(name), content).unwrap();
            assert_eq!(build_id(&dir.path().join(name)), None, "{name}");
        }
        assert_eq!(build_id(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_write_replaces_the_file_and_removes_only_stale_temporary_files() {
        let data = tempfile::tempdir().unwrap();
        write(data.path(), "x.state", b"one").unwrap();
        let d = dir(data.path());
        let stale = d.join(".x.state.12345.tmp");
        let young = d.join(".x.state.12346.tmp");
        let other = d.join(".y.state.12345.tmp");
        let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for p in [&stale, &young, &other] {
            let f = std::fs::File::create(p).unwrap();
            if *p != young {
                f.set_modified(hours_ago).unwrap();
            }
        }
        write(data.path(), "x.state", b"two").unwrap();
        assert_eq!(std::fs::read(d.join("x.state")).unwrap(), b"two");
        assert!(!stale.exists(), "a dead writer's file stays");
        assert!(young.exists() && other.exists(), "a live writer's or another state's went");
        let mut f = open(data.path(), "x.state").unwrap().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert_eq!(text, "two");
        assert!(open(data.path(), "none").unwrap().is_none());
    }
}
