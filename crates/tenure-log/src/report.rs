//! What recovery did when the writer opened the log, in a form every caller can show: the
//! CLI prints its lines, the service logs them and exports the counts.

use std::fmt;
use std::path::PathBuf;

/// What recovery did when the writer opened the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Torn tails that were cut off (at most one per lane).
    pub truncated: Vec<TruncatedTail>,
    /// Key indexes found damaged or stale and written again from their segment (nothing is
    /// lost: an index only repeats its segment's keys).
    pub rebuilt_indexes: Vec<RebuiltIndex>,
    /// Format-1 segments that were a lane's last: sealed at this open (indexed, and a
    /// format-2 segment started after them), so new records get commit records.
    pub upgraded: Vec<PathBuf>,
    /// Lanes found.
    pub lanes: usize,
    /// Segments kept.
    pub segments: u64,
    /// Valid records found across all lanes.
    pub records: u64,
    /// Bytes of all kept segments, headers included.
    pub bytes: u64,
    /// Records whose key was already seen earlier. The writer never produces
    /// these, so a non-zero count means the files were written by something else.
    pub duplicate_keys: u64,
    /// Sealed segments whose keys came from their key index (not read again).
    pub indexed_segments: u64,
}

/// Whether bytes recovery dropped may have been acknowledged to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    /// Provably not: they lie after the lane's last commit record, and a commit is
    /// acknowledged only once its commit record is on disk.
    No,
    /// Cannot be told: a format-1 segment, written before commit records existed.
    Unknown,
}

/// A torn tail removed from the last segment of a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    pub lane: String,
    pub path: PathBuf,
    /// Offset the file was truncated at (0 when its header was rewritten).
    pub offset: u64,
    pub bytes_dropped: u64,
    /// Complete, valid records among the dropped bytes (written, but their commit never
    /// completed).
    pub records_dropped: u64,
    /// What the dropped bytes were.
    pub reason: String,
    /// True when the segment's header was torn (a crash while creating it): it held no
    /// records and was given a fresh header.
    pub header_rewritten: bool,
    pub acknowledged: Acknowledged,
}

/// A key index that recovery wrote again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltIndex {
    pub path: PathBuf,
    pub reason: String,
}

impl RecoveryReport {
    /// Nothing dropped, rebuilt or upgraded, no duplicate keys.
    pub fn is_clean(&self) -> bool {
        self.truncated.is_empty()
            && self.rebuilt_indexes.is_empty()
            && self.upgraded.is_empty()
            && self.duplicate_keys == 0
    }

    /// Bytes cut off torn tails.
    pub fn dropped_bytes(&self) -> u64 {
        self.truncated.iter().map(|t| t.bytes_dropped).sum()
    }

    /// Complete records cut off with torn tails.
    pub fn dropped_records(&self) -> u64 {
        self.truncated.iter().map(|t| t.records_dropped).sum()
    }

    /// One line per thing recovery did, each `FILE: offset N: what` (empty when clean).
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.truncated.iter().map(ToString::to_string).collect();
        for r in &self.rebuilt_indexes {
            out.push(format!(
                "{}: key index {}; rebuilt from its segment",
                r.path.display(),
                r.reason
            ));
        }
        for p in &self.upgraded {
            out.push(format!(
                "{}: format-1 segment (no commit records) sealed; new records go to a format-2 segment",
                p.display()
            ));
        }
        if self.duplicate_keys > 0 {
            out.push(format!(
                "{} records repeat a key stored earlier: the log was written by something else",
                self.duplicate_keys
            ));
        }
        out
    }
}

impl fmt::Display for TruncatedTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        if self.header_rewritten {
            return write!(
                f,
                "{path}: offset 0: {} ({} bytes) replaced by a fresh header; the segment held no records",
                self.reason, self.bytes_dropped
            );
        }
        write!(
            f,
            "{path}: offset {}: dropped {} bytes ({} complete records), {}; ",
            self.offset, self.bytes_dropped, self.records_dropped, self.reason
        )?;
        match self.acknowledged {
            Acknowledged::No => {
                f.write_str("never acknowledged (no commit record covers them)")
            }
            Acknowledged::Unknown => f.write_str(
                "a format-1 segment has no commit records, so whether they were acknowledged cannot be told",
            ),
        }
    }
}
