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
