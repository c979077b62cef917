//! Derived state kept between commands under `DATA/state/`: where the files live, what
//! identifies the log they were folded from, and their atomic replacement. What a file
//! holds, and the check that it still fits, belong to its reader (for the health state,
//! `tenure_health::checkpoint`).
//!
//! Like `columnar/`, `state/` is derived: deleting it costs one fold of the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use tenure_core::event::EventKind;

use crate::{EngineError, lane, log_dir};

/// The state directory of a data directory.
pub fn dir(data: &Path) -> PathBuf {
    data.join("state")
}

/// What identifies the content of `kinds`' lanes now, from the files' metadata alone
/// (`tenure_log::lane_fingerprint`, in the order given): equal positions mean the same
/// records, so a state folded from them is current. Take it before reading the lanes: a
/// state labelled with an older position than it holds is only folded once more, never
/// trusted when stale.
pub fn position(data: &Path, kinds: &[EventKind]) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::with_capacity(kinds.len() * 48);
    let dir = log_dir(data);
    for k in kinds {
        let l = lane(*k);
        out.extend_from_slice(l.as_bytes());
        out.push(0);
        for v in tenure_log::lane_fingerprint(&dir, l)? {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// A 128-bit digest of `text` (a configuration's settings, say) for a state's key.
pub fn digest(text: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(text.as_bytes()).to_le_bytes()
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
    let d = dir(data);
    std::fs::create_dir_all(&d).map_err(|source| EngineError::Write { path: d.clone(), source })?;
    remove_stale(&d, name);
    let tmp = d.join(format!(".{name}.{}.tmp", std::process::id()));
    let path = d.join(name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
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
