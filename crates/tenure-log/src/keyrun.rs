//! Sorted runs of idempotency keys on disk: the part of the key index that is not RAM.
//!
//! A run is written once (its keys sorted and distinct, a Bloom filter of them, the first
//! key of each page, checksums) and then only read. Memory holds its filter and page
//! fences, about 1.3 bytes a key against 16-36 for a key in a hash set; a lookup the
//! filter lets through reads one 4 KiB page of keys. Keys are hashes (uniform 128-bit
//! values), which is what lets the filter take its bits from the key itself.
//!
//! Layout (little-endian):
//!
//! ```text
//! 0    b"TNRKRUN2"
//! 8    count: u64            keys
//! 16   blocks: u64           64-byte filter blocks (at least 10 bits a key; a merge sizes
//!                            them for its inputs' keys, some of which may be one)
//! 24   crc32 of bytes 0..24, then 4 zero bytes (written last: the count is known then)
//! 32   keys: count x u128, strictly ascending, in pages of 256 (the last one short)
//! ..   filter: blocks x 64 bytes, then its crc32
//! ..   fences: the first key of each page (u128)
//! ..   page checksums: a crc32 of each page of keys
//! end  crc32 of fences and page checksums
//! ```
//!
//! Opening reads and checks the header, fences and page checksums (about 0.08 bytes a key);
//! the filter (1.25 bytes a key) is read and checked apart, by [`KeyRun::load_filter`]
//! (the key index does it on a thread of its own after an open), so that opening a log of a
//! billion keys does not wait for a gigabyte of filters. Until its filter is in, a lookup
//! reads the page its key would be in. A page of keys is checked each time it is read. A
//! damaged run is an error, never a wrong answer: a key wrongly "present" would drop a new
//! event.

use crate::error::LogError;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const MAGIC: &[u8; 8] = b"TNRKRUN2";
const HEADER: usize = 32;
const PAGE_KEYS: usize = 256;
const PAGE: usize = PAGE_KEYS * 16;
const BLOCK: usize = 64;
/// Filter bits per key: with 7 probes in a 512-bit block, about 1% false positives.
const BITS_PER_KEY: u64 = 10;
const PROBES: usize = 7;

/// One run of keys: its file, and its fences and checksums in memory, and its filter once
/// loaded.
pub(crate) struct KeyRun {
    path: PathBuf,
    file: File,
    count: u64,
    blocks: u64,
    filter: std::sync::OnceLock<Vec<u64>>,
    fences: Vec<u128>,
    crcs: Vec<u32>,
}

impl std::fmt::Debug for KeyRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRun").field("path", &self.path).field("count", &self.count).finish()
    }
}

/// The filter block a key falls in, and its probe bits in that block.
#[inline]
fn probes(key: u128, blocks: u64) -> (usize, [u16; PROBES]) {
    let hi = (key >> 64) as u64;
    let lo = key as u64;
    // Multiply-shift: the block from the high bits, uniformly over `blocks`.
    let block = ((hi as u128 * blocks as u128) >> 64) as usize;
    let mut bits = [0u16; PROBES];
    for (i, b) in bits.iter_mut().enumerate() {
        *b = ((lo >> (9 * i)) & 511) as u16;
    }
    (block, bits)
}

fn filter_blocks(count: u64) -> u64 {
    (count.saturating_mul(BITS_PER_KEY)).div_ceil(512).max(1)
}

fn pages_of(count: u64) -> u64 {
    count.div_ceil(PAGE_KEYS as u64)
}

/// `buf.len()` bytes of `file` at `at`: positioned reads, so lookups share the file.
fn read_at(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, at)
    }
    #[cfg(windows)]
    {
        let mut done = 0;
        while done < buf.len() {
            let n =
                std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], at + done as u64)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn u128_at(b: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(b[at..at + 16].try_into().unwrap_or([0; 16]))
}

impl KeyRun {
    /// Writes `keys` (strictly ascending; at most `most` of them, which sizes the filter)
    /// as a run at `path`: to a temporary file, synced, then renamed into place.
    pub(crate) fn write(
        path: &Path,
        most: u64,
        keys: impl IntoIterator<Item = u128>,
    ) -> Result<KeyRun, LogError> {
        let tmp = path.with_extension("run.tmp");
        let result = write_tmp(&tmp, path, most, keys);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let filter = result?;
        std::fs::rename(&tmp, path).map_err(|e| LogError::io(path, e))?;
        if let Some(dir) = path.parent() {
            crate::lane::sync_dir(dir)?;
        }
        let run = KeyRun::open(path)?;
        // The filter just written, without reading it back.
        let _ = run.filter.set(filter);
        Ok(run)
    }

    /// Opens a run, reading and checking its header, fences and page checksums.
    pub(crate) fn open(path: &Path) -> Result<KeyRun, LogError> {
        let io = |e| LogError::io(path, e);
        let bad = |offset: u64, why: &str| LogError::corrupt(path, offset, why.to_string());
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut header = [0u8; HEADER];
        if len < HEADER as u64 {
            return Err(bad(0, "not a key run"));
        }
        read_at(&file, &mut header, 0).map_err(io)?;
        if &header[..8] != MAGIC {
            return Err(bad(0, "not a key run"));
        }
        let (count, blocks) = (u64_at(&header, 8), u64_at(&header, 16));
        if u32::from_le_bytes(header[24..28].try_into().unwrap_or([0; 4]))
            != crc32fast::hash(&header[..24])
        {
            return Err(bad(24, "header checksum mismatch"));
        }
        let pages = pages_of(count);
        let sizes = (|| {
            let keys = count.checked_mul(16)?;
            let filter = blocks.checked_mul(BLOCK as u64)?.checked_add(4)?;
            let tables = pages.checked_mul(20)?.checked_add(4)?;
            Some((keys, filter, tables))
        })();
        // A merge sizes its filter for the keys of its inputs, which may hold some twice.
        let Some((keys, filter, tables)) = sizes.filter(|_| blocks >= filter_blocks(count)) else {
            return Err(bad(8, "impossible sizes"));
        };
        let tables_at = (HEADER as u64).checked_add(keys).and_then(|n| n.checked_add(filter));
        let Some(tables_at) = tables_at.filter(|at| at.checked_add(tables) == Some(len)) else {
            return Err(bad(8, "length does not match its key count"));
        };
        let mut rest = vec![0u8; usize::try_from(tables).map_err(|_| bad(8, "too large"))?];
        read_at(&file, &mut rest, tables_at).map_err(io)?;
        let (body, crc) = rest.split_at(rest.len() - 4);
        if u32::from_le_bytes(crc.try_into().unwrap_or([0; 4])) != crc32fast::hash(body) {
            return Err(bad(tables_at, "page table checksum mismatch"));
        }
        let fences_len = pages as usize * 16;
        let fences = body[..fences_len].chunks_exact(16).map(|c| u128_at(c, 0)).collect();
        let crcs = body[fences_len..]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect();
        let filter = std::sync::OnceLock::new();
        Ok(KeyRun { path: path.to_path_buf(), file, count, blocks, filter, fences, crcs })
    }

    /// Reads and checks the filter (once; later calls return at once). Until it is in,
    /// lookups read pages: right, only slower. A damaged filter is an error here (lookups
    /// then go on reading pages).
    pub(crate) fn load_filter(&self) -> Result<(), LogError> {
        if self.filter.get().is_some() {
            return Ok(());
        }
        let at = HEADER as u64 + self.count * 16;
        let len = usize::try_from(self.blocks * BLOCK as u64 + 4)
            .map_err(|_| LogError::corrupt(&self.path, 8, "too large"))?;
        let mut bytes = vec![0u8; len];
        read_at(&self.file, &mut bytes, at).map_err(|e| LogError::io(&self.path, e))?;
        let (body, crc) = bytes.split_at(len - 4);
        if u32::from_le_bytes(crc.try_into().unwrap_or([0; 4])) != crc32fast::hash(body) {
            return Err(LogError::corrupt(&self.path, at, "filter checksum mismatch"));
        }
        let _ = self.filter.set(body.chunks_exact(8).map(|c| u64_at(c, 0)).collect());
        Ok(())
    }

    pub(crate) fn len(&self) -> u64 {
        self.count
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the filter says the key may be in the run (false: it is not); true while
    /// the filter is not loaded.
    #[inline]
    pub(crate) fn may_contain(&self, key: u128) -> bool {
        let Some(filter) = self.filter.get() else { return true };
        let (block, bits) = probes(key, self.blocks);
        let words = &filter[block * 8..block * 8 + 8];
        bits.iter().all(|&b| words[b as usize >> 6] & (1 << (b & 63)) != 0)
    }

    /// Page `page` of keys, read and checked, into `buf`; the number of keys in it.
    fn page(&self, page: usize, buf: &mut [u8; PAGE]) -> Result<usize, LogError> {
        let first = page as u64 * PAGE_KEYS as u64;
        let n = (self.count - first).min(PAGE_KEYS as u64) as usize;
        let at = HEADER as u64 + first * 16;
        read_at(&self.file, &mut buf[..n * 16], at).map_err(|e| LogError::io(&self.path, e))?;
        if crc32fast::hash(&buf[..n * 16]) != self.crcs[page] {
            return Err(LogError::corrupt(
                &self.path,
                at,
                "key run page checksum mismatch: `tenure repair` removes the key index \
                 (keys.idx) and the next writer open rebuilds it from the segments",
            ));
        }
        Ok(n)
    }

    /// Whether the run holds `key`.
    pub(crate) fn contains(&self, key: u128) -> Result<bool, LogError> {
        if !self.may_contain(key) {
            return Ok(false);
        }
        // The page whose first key is the last one not above `key`.
        let Some(page) = self.fences.partition_point(|&f| f <= key).checked_sub(1) else {
            return Ok(false);
        };
        let mut buf = [0u8; PAGE];
        let n = self.page(page, &mut buf)?;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let k = u128_at(&buf, mid * 16);
            if k == key {
                return Ok(true);
            }
            if k < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(false)
    }

    /// The keys in order, read a page at a time (each checked).
    pub(crate) fn keys(&self) -> Keys<'_> {
        Keys { run: self, page: 0, buf: Box::new([0; PAGE]), at: 0, n: 0 }
    }
}

/// The keys of a run in order.
pub(crate) struct Keys<'r> {
    run: &'r KeyRun,
    page: usize,
    buf: Box<[u8; PAGE]>,
    at: usize,
    n: usize,
}

impl Iterator for Keys<'_> {
    type Item = Result<u128, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at == self.n {
            if self.page == self.run.fences.len() {
                return None;
            }
            match self.run.page(self.page, &mut self.buf) {
                Ok(n) => (self.n, self.at) = (n, 0),
                Err(e) => {
                    self.page = self.run.fences.len();
                    return Some(Err(e));
                }
            }
            self.page += 1;
        }
        let key = u128_at(&self.buf[..], self.at * 16);
        self.at += 1;
        Some(Ok(key))
    }
}

fn write_tmp(
    tmp: &Path,
    path: &Path,
    most: u64,
    keys: impl IntoIterator<Item = u128>,
) -> Result<Vec<u64>, LogError> {
    let io = |e| LogError::io(tmp, e);
    let blocks = filter_blocks(most);
    let words = usize::try_from(blocks * 8)
        .map_err(|_| LogError::corrupt(path, 0, "key run too large for this machine"))?;
    let mut filter = vec![0u64; words];
    let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(tmp).map_err(io)?);
    // The header, which needs the count, is written last, over these zeros (a file cut
    // short before it is not a run).
    out.write_all(&[0u8; HEADER]).map_err(io)?;
    let (mut fences, mut crcs) = (Vec::new(), Vec::new());
    let mut page = crc32fast::Hasher::new();
    let (mut n, mut last) = (0u64, None::<u128>);
    for key in keys {
        if last.is_some_and(|l| l >= key) {
            return Err(LogError::corrupt(path, HEADER as u64 + n * 16, "keys out of order"));
        }
        last = Some(key);
        if n % PAGE_KEYS as u64 == 0 {
            if n > 0 {
                crcs.push(std::mem::take(&mut page).finalize());
            }
            fences.push(key);
        }
        let bytes = key.to_le_bytes();
        out.write_all(&bytes).map_err(io)?;
        page.update(&bytes);
        let (block, bits) = probes(key, blocks);
        for b in bits {
            filter[block * 8 + (b as usize >> 6)] |= 1 << (b & 63);
        }
        n += 1;
    }
    if n > 0 {
        crcs.push(page.finalize());
    }
    if n > most {
        return Err(LogError::corrupt(
            path,
            0,
            format!("{n} keys written, at most {most} announced"),
        ));
    }
    let count = n;
    let mut bits = Vec::with_capacity(filter.len() * 8 + 4);
    for w in &filter {
        bits.extend_from_slice(&w.to_le_bytes());
    }
    let crc = crc32fast::hash(&bits);
    bits.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&bits).map_err(io)?;
    let mut tail = Vec::with_capacity(fences.len() * 20 + 4);
    for f in &fences {
        tail.extend_from_slice(&f.to_le_bytes());
    }
    for c in &crcs {
        tail.extend_from_slice(&c.to_le_bytes());
    }
    let crc = crc32fast::hash(&tail);
    tail.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&tail).map_err(io)?;
    let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
    let mut header = [0u8; HEADER];
    header[..8].copy_from_slice(MAGIC);
    header[8..16].copy_from_slice(&count.to_le_bytes());
    header[16..24].copy_from_slice(&blocks.to_le_bytes());
    let crc = crc32fast::hash(&header[..24]);
    header[24..28].copy_from_slice(&crc.to_le_bytes());
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&header).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(filter)
}

/// Merges runs into one at `path` (a key in several is kept once), reading each run in
/// order and writing as it goes: memory holds a page of each run.
pub(crate) fn merge(
    path: &Path,
    runs: &[&KeyRun],
    cancel: &AtomicBool,
) -> Result<KeyRun, LogError> {
    let cancelled = || {
        let e = std::io::Error::new(std::io::ErrorKind::Interrupted, "merge cancelled");
        LogError::io(path, e)
    };
    // One pass: the filter is sized for the inputs' keys (a key in several is counted in
    // each: a filter a little larger than needed), the header written with the count last.
    let most = runs.iter().map(|r| r.len()).sum();
    let mut error = None;
    let mut n = 0u64;
    let keys = merged(runs).map_while(|k| {
        n += 1;
        if n.is_multiple_of(65_536) && cancel.load(Ordering::Relaxed) {
            error = Some(cancelled());
            return None;
        }
        match k {
            Ok(k) => Some(k),
            Err(e) => {
                error = Some(e);
                None
            }
        }
    });
    let run = KeyRun::write(path, most, keys);
    if let Some(e) = error {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    run
}

/// The keys of runs merged in order, each once.
fn merged<'r>(runs: &[&'r KeyRun]) -> impl Iterator<Item = Result<u128, LogError>> + 'r {
    let mut heads: Vec<std::iter::Peekable<Keys<'r>>> =
        runs.iter().map(|r| r.keys().peekable()).collect();
    std::iter::from_fn(move || {
        let mut best: Option<u128> = None;
        for h in heads.iter_mut() {
            match h.peek() {
                Some(Ok(k)) if best.is_none_or(|b| *k < b) => best = Some(*k),
                Some(Err(_)) => return h.next(),
                _ => {}
            }
        }
        let key = best?;
        for h in heads.iter_mut() {
            if matches!(h.peek(), Some(Ok(k)) if *k == key) {
                h.next();
            }
        }
        Some(Ok(key))
    })
}

/// Reads a whole run's keys (tests and checks).
#[cfg(test)]
fn read_all(run: &KeyRun) -> Result<Vec<u128>, LogError> {
    use std::io::Read;
    let mut f = File::open(run.path()).map_err(|e| LogError::io(run.path(), e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| LogError::io(run.path(), e))?;
    Ok(bytes[HEADER..HEADER + run.len() as usize * 16]
        .chunks_exact(16)
        .map(|c| u128_at(c, 0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn run_of(dir: &Path, name: &str, keys: &BTreeSet<u128>) -> KeyRun {
        KeyRun::write(&dir.join(name), keys.len() as u64, keys.iter().copied()).unwrap()
    }

    proptest! {
        /// A run answers exactly as the set of its keys, for its keys and for others, and
        /// a merge of runs as their union; a run reopened answers the same.
        #[test]
        fn runs_answer_as_their_sets(
            a in proptest::collection::btree_set(any::<u128>(), 0..2000),
            b in proptest::collection::btree_set(any::<u128>(), 0..2000),
            probes in proptest::collection::vec(any::<u128>(), 0..500),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let ra = run_of(dir.path(), "a.run", &a);
            let rb = run_of(dir.path(), "b.run", &b);
            let both = merge(&dir.path().join("ab.run"), &[&ra, &rb], &AtomicBool::new(false)).unwrap();
            let union: BTreeSet<u128> = a.union(&b).copied().collect();
            prop_assert_eq!(both.len(), union.len() as u64);
            let reopened = KeyRun::open(&dir.path().join("ab.run")).unwrap();
            for k in a.iter().chain(&b).chain(&probes) {
                prop_assert_eq!(ra.contains(*k).unwrap(), a.contains(k));
                prop_assert_eq!(rb.contains(*k).unwrap(), b.contains(k));
                prop_assert_eq!(both.contains(*k).unwrap(), union.contains(k));
                prop_assert_eq!(reopened.contains(*k).unwrap(), union.contains(k));
            }
            let back: Vec<u128> = both.keys().collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(&back, &union.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(read_all(&both).unwrap(), back);
        }

        /// Keys bunched together (not uniform) are found as well.
        #[test]
        fn bunched_keys_are_found(base in any::<u64>(), n in 1usize..3000) {
            let keys: BTreeSet<u128> =
                (0..n as u128).map(|i| ((base as u128) << 20) + i * 3).collect();
            let dir = tempfile::tempdir().unwrap();
            let run = run_of(dir.path(), "r.run", &keys);
            for k in &keys {
                prop_assert!(run.contains(*k).unwrap());
                prop_assert!(!run.contains(*k + 1).unwrap());
            }
        }
    }

    /// About 1% of absent keys pass the filter (10 bits a key, 7 probes).
    #[test]
    fn the_filter_passes_about_one_percent_of_absent_keys() {
        let mut x = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834u128;
        let mut next = || {
            // xorshift128: uniform test keys
            x ^= x << 23;
            x ^= x >> 17;
            x ^= x << 26;
            x
        };
        let keys: BTreeSet<u128> = (0..100_000).map(|_| next()).collect();
        let dir = tempfile::tempdir().unwrap();
        let run = run_of(dir.path(), "r.run", &keys);
        let absent: Vec<u128> =
            (0..100_000).map(|_| next()).filter(|k| !keys.contains(k)).collect();
        let passed = absent.iter().filter(|k| run.may_contain(**k)).count();
        assert!((300..2_000).contains(&passed), "{passed} of {} passed the filter", absent.len());
    }

    /// A damaged byte anywhere is an error (when the run opens, or when a lookup reads the
    /// page), never a wrong answer.
    #[test]
    fn damage_is_an_error_not_an_answer() {
        let keys: BTreeSet<u128> = (1..=5000u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.run");
        drop(run_of(dir.path(), "r.run", &keys));
        let original = std::fs::read(&path).unwrap();
        let len = original.len();
        let (mut opened, mut filters) = (0, 0);
        for at in
            [3, 20, HEADER + 7, HEADER + 16 * 2500 + 3, HEADER + 16 * 5000 + 10, len - 30, len - 2]
        {
            let mut bytes = original.clone();
            bytes[at] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            let Ok(run) = KeyRun::open(&path) else { continue };
            // Without its filter, a run answers from its pages: the damaged filter is found
            // by loading it, and the lookups still answer right.
            if run.load_filter().is_err() {
                filters += 1;
                for k in &keys {
                    assert!(run.contains(*k).unwrap(), "byte {at} damaged, key {k} lost");
                }
                continue;
            }
            opened += 1;
            let answers: Result<Vec<bool>, _> = keys.iter().map(|k| run.contains(*k)).collect();
            assert!(answers.is_err(), "byte {at} damaged, every key still answered");
        }
        // The two damaged pages of keys open (only a lookup reads them), the damaged filter
        // opens and does not load; the rest refuse.
        assert_eq!((opened, filters), (2, 1));
    }
}
