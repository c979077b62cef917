//! Typed errors of the event log and of lane scans.

use std::path::PathBuf;

/// Everything that can go wrong opening, writing or reading the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Invalid data that cannot be explained by a torn write at the end of a
    /// lane. The log refuses to go on rather than skip records silently.
    #[error("corrupt event log: {path} at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("unsupported segment format version {version} in {path}")]
    UnsupportedVersion { path: PathBuf, version: u16 },
    #[error("event log {path} is in use: another process (a writer, or a repair) holds its LOCK")]
    Locked { path: PathBuf },
    #[error("invalid lane name {0:?}: must match [a-z][a-z0-9_]{{0,63}}")]
    InvalidLane(String),
    #[error("record payload of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    /// A commit failed part-way; what reached the disk is unknown until the log
    /// is reopened and recovered, so the writer refuses further use.
    #[error("event log writer is unusable after a failed commit; reopen it to recover")]
    Poisoned,
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        LogError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }
}

/// Error of [`LogReader::scan`](crate::LogReader::scan): either the log itself
/// failed, or the caller's callback did (e.g. a payload failed to decode).
#[derive(Debug, thiserror::Error)]
pub enum ScanError<E> {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("scan callback failed: {0}")]
    Callback(E),
}

impl<E> ScanError<E> {
    /// Collapses into the caller's own error type, so that
    /// `reader.scan(lane, f).map_err(ScanError::flatten)?` works for any error
    /// type that can wrap a [`LogError`].
    pub fn flatten(self) -> E
    where
        E: From<LogError>,
    {
        match self {
            ScanError::Log(e) => E::from(e),
            ScanError::Callback(e) => e,
        }
    }
}

impl From<ScanError<std::convert::Infallible>> for LogError {
    fn from(e: ScanError<std::convert::Infallible>) -> Self {
        match e {
            ScanError::Log(e) => e,
            ScanError::Callback(never) => match never {},
        }
    }
}
