//! The account index (`DATA/state/accounts.idx`, and `accounts.tail` for what the log
//! gained since): where each account's events are in the log, so that one account is
//! folded alone, exactly as a fold of the whole log folds it, from a few dozen positioned
//! reads instead of a scan of every lane (`tenure account`); and so that folded state can
//! be brought forward over new records by folding again only the accounts they change
//! ([`touched`], [`fold_many`]: the health state checkpoint).
//!
//! What one account's fold reads beyond its own events is the contact events of other
//! accounts naming one of its contacts (a contact seen later under another account has
//! moved there): the index also lists, by contact, where every contact event is.
//!
//! The index is derived, like `columnar/`: it records, per lane, how many records it
//! covers and the key and position of the last one. A log that grew is indexed from there
//! on into the tail (the base is left alone until the tail outgrows an eighth of it); a
//! log that no longer holds that last record where the index says (a repair cut it), or a
//! damaged file, is indexed again from scratch. Each record read through the index is
//! checked: its checksum, and that it names the account (or contact) it was indexed under;
//! any mismatch rebuilds the index rather than answering from it.
//!
//! Layout of a file: `MAGIC`, then the footer's offset and length (u64 LE each), a CRC-32
//! of the footer, and a CRC-32 of the 28 bytes before it (u32 LE each); then blocks of up to
//! [`BLOCK`] entries; then the footer. The footer (varints, `tenure_core::codec`): the
//! format, the number of postings, per lane its name, the first and last record covered
//! (`from`, `to`), the key (two u64 halves) and position of record `to - 1`; then the two
//! tables (accounts, contacts), each a block count and per block its first key, offset,
//! length and CRC-32. A block: its entry count, then per entry the key (a string: the
//! account id, or the contact id's 64-bit hash big-endian) and its postings as runs of one
//! lane: the run count, then per run the lane's number, the posting count, the first
//! position and the deltas to the next.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use tenure_core::codec::{self, Cursor, put_str, put_u64};
use tenure_core::event::{Event, EventBody, EventKind};
use tenure_core::time::Timestamp;
use tenure_ledger::{AccountLedger, Diagnostic, Ledger, LedgerBuilder};
use tenure_log::{Located, LogError, LogReader, ScanError};

use crate::{CS_KINDS, Config, EngineError, REVENUE_KINDS, lane, log_dir, scan_error, state};

const BASE: &str = "accounts.idx";
const TAIL: &str = "accounts.tail";
const MAGIC: [u8; 8] = *b"TNRAIX01";
const FORMAT: u64 = 2;
/// Entries per block: a lookup reads one block of each table it consults.
const BLOCK: usize = 512;
const HEADER_LEN: usize = 32;

/// The lanes a fold with every scope reads, in its order (`collect_lanes`).
fn fold_lanes() -> Vec<&'static str> {
    REVENUE_KINDS.iter().chain(CS_KINDS).map(|k| lane(*k)).collect()
}

/// The lanes indexed: those of [`fold_lanes`], in its order (of the cost lane, the records
/// that name an account; the company's costs are read whole).
fn indexed_lanes() -> Vec<&'static str> {
    fold_lanes()
}

/// A posting: the lane's number in [`indexed_lanes`] (8 bits) over a [`Located`] position
/// (a 16-bit segment ordinal and a 40-bit offset): sorting postings sorts by lane, then log
/// order.
type Posting = u64;

fn posting(lane_ix: usize, at: Located) -> Posting {
    debug_assert!(at.segment() < 1 << 16);
    ((lane_ix as u64) << 56) | at.0
}

fn posting_lane(p: Posting) -> usize {
    (p >> 56) as usize
}

fn posting_at(p: Posting) -> Located {
    Located(p & ((1 << 56) - 1))
}

fn contact_key(contact: &str) -> [u8; 8] {
    xxhash_rust::xxh3::xxh3_64(contact.as_bytes()).to_be_bytes()
}

/// How far a file's postings reach in one lane.
#[derive(Clone, Debug, PartialEq)]
struct Mark {
    lane: String,
    from: u64,
    to: u64,
    /// Key and position of record `to - 1` (zero when `to` is 0).
    last_key: u128,
    last_at: u64,
}

/// Keys (sorted, distinct) and their postings (sorted).
type Table = Vec<(Vec<u8>, Vec<Posting>)>;

/// What a scan of the lanes' records in `[from, to)` found.
struct Scanned {
    marks: Vec<Mark>,
    accounts: Table,
    contacts: Table,
}

/// Scans the indexed lanes from `from` (one per lane) to the reader's snapshot, in
/// parallel, into postings by account and by contact.
fn scan(reader: &LogReader, from: &[u64]) -> Result<Scanned, EngineError> {
    let lanes = indexed_lanes();
    struct LaneScan {
        mark: Mark,
        /// Local account ids (first-seen order) and (local id, posting) pairs.
        ids: Vec<String>,
        postings: Vec<(u32, Posting)>,
        contacts: Vec<([u8; 8], Posting)>,
    }
    let per_lane: Vec<Result<LaneScan, EngineError>> = lanes
        .par_iter()
        .enumerate()
        .map(|(ix, name)| {
            let mut local: FxHashMap<Box<str>, u32> = FxHashMap::default();
            let mut s = LaneScan {
                mark: Mark {
                    lane: name.to_string(),
                    from: from[ix],
                    to: from[ix],
                    last_key: 0,
                    last_at: 0,
                },
                ids: Vec::new(),
                postings: Vec::new(),
                contacts: Vec::new(),
            };
            let bad = |e: codec::CodecError| EngineError::Decode {
                lane: name.to_string(),
                reason: e.to_string(),
            };
            reader
                .scan_located(name, from[ix], |i, at, key, payload| {
                    if at.segment() >= 1 << 16 {
                        return Err(EngineError::Decode {
                            lane: name.to_string(),
                            reason: "more than 65,536 segments: past what the account index \
                                     can place"
                                .into(),
                        });
                    }
                    let p = posting(ix, at);
                    if let (_, _, Some(account)) = codec::peek(payload).map_err(bad)? {
                        let id = match local.get(account) {
                            Some(id) => *id,
                            None => {
                                let id = s.ids.len() as u32;
                                local.insert(account.into(), id);
                                s.ids.push(account.to_string());
                                id
                            }
                        };
                        s.postings.push((id, p));
                    }
                    if let Some(contact) = codec::peek_contact(payload).map_err(bad)? {
                        s.contacts.push((contact_key(contact), p));
                    }
                    s.mark.to = i + 1;
                    s.mark.last_key = key;
                    s.mark.last_at = at.0;
                    Ok::<(), EngineError>(())
                })
                .map_err(scan_error)?;
            Ok(s)
        })
        .collect();
    let mut marks = Vec::with_capacity(lanes.len());
    let mut global: FxHashMap<String, u32> = FxHashMap::default();
    let mut names: Vec<String> = Vec::new();
    let mut lane_scans = Vec::with_capacity(lanes.len());
    for s in per_lane {
        let s = s?;
        // Local ids to global ones, in lane order.
        let map: Vec<u32> = s
            .ids
            .iter()
            .map(|id| {
                *global.entry(id.clone()).or_insert_with(|| {
                    names.push(id.clone());
                    names.len() as u32 - 1
                })
            })
            .collect();
        marks.push(s.mark.clone());
        lane_scans.push((map, s.postings, s.contacts));
    }
    drop(global);
    // A counting sort by account: lanes in order and each lane in log order, so every
    // account's postings come out sorted.
    let mut count = vec![0usize; names.len() + 1];
    for (map, postings, _) in &lane_scans {
        for (id, _) in postings {
            count[map[*id as usize] as usize + 1] += 1;
        }
    }
    for i in 1..count.len() {
        count[i] += count[i - 1];
    }
    let mut flat = vec![0u64; count[names.len()]];
    let mut next = count.clone();
    let mut contacts: Vec<([u8; 8], Posting)> = Vec::new();
    for (map, postings, c) in lane_scans {
        for (id, p) in postings {
            let g = map[id as usize] as usize;
            flat[next[g]] = p;
            next[g] += 1;
        }
        contacts.extend(c);
    }
    let mut order: Vec<u32> = (0..names.len() as u32).collect();
    order.par_sort_unstable_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
    let accounts: Table = order
        .into_iter()
        .map(|g| {
            let g = g as usize;
            (std::mem::take(&mut names[g]).into_bytes(), flat[count[g]..count[g + 1]].to_vec())
        })
        .collect();
    // Stable: one contact's postings stay in lane order.
    contacts.par_sort_by_key(|c| c.0);
    let mut ctable: Table = Vec::new();
    for group in contacts.chunk_by(|a, b| a.0 == b.0) {
        let mut ps: Vec<Posting> = group.iter().map(|c| c.1).collect();
        ps.sort_unstable();
        ctable.push((group[0].0.to_vec(), ps));
    }
    Ok(Scanned { marks, accounts, contacts: ctable })
}

/// The contact a contact event sights.
fn contact_of(e: &Event) -> Option<&str> {
    match &e.body {
        EventBody::Contact { contact_id, .. } => Some(contact_id),
        _ => None,
    }
}

/// Whether `e` sights a contact whose key is among `keys` (sorted).
fn sights_one_of(e: &Event, keys: &[[u8; 8]]) -> bool {
    contact_of(e).is_some_and(|c| keys.binary_search(&contact_key(c)).is_ok())
}

fn encode_postings(out: &mut Vec<u8>, ps: &[Posting]) {
    let runs: Vec<&[Posting]> = ps.chunk_by(|a, b| posting_lane(*a) == posting_lane(*b)).collect();
    put_u64(out, runs.len() as u64);
    for run in runs {
        put_u64(out, posting_lane(run[0]) as u64);
        put_u64(out, run.len() as u64);
        let mut prev = 0;
        for p in run {
            let at = posting_at(*p).0;
            put_u64(out, at - prev);
            prev = at;
        }
    }
}

fn encode_table(out: &mut Vec<u8>, table: &Table) -> Vec<(Vec<u8>, u64, u64, u32)> {
    let blocks: Vec<Vec<u8>> = table
        .par_chunks(BLOCK)
        .map(|entries| {
            let mut b = Vec::new();
            put_u64(&mut b, entries.len() as u64);
            for (key, ps) in entries {
                put_u64(&mut b, key.len() as u64);
                b.extend_from_slice(key);
                encode_postings(&mut b, ps);
            }
            b
        })
        .collect();
    let mut fences = Vec::with_capacity(blocks.len());
    for (b, entries) in blocks.iter().zip(table.chunks(BLOCK)) {
        fences.push((entries[0].0.clone(), out.len() as u64, b.len() as u64, crc32fast::hash(b)));
        out.extend_from_slice(b);
    }
    fences
}

fn encode(s: &Scanned) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    let tables = [encode_table(&mut out, &s.accounts), encode_table(&mut out, &s.contacts)];
    let footer_at = out.len();
    let mut f = Vec::new();
    put_u64(&mut f, FORMAT);
    put_u64(&mut f, s.accounts.iter().map(|(_, p)| p.len() as u64).sum());
    put_u64(&mut f, s.marks.len() as u64);
    for m in &s.marks {
        put_str(&mut f, &m.lane);
        put_u64(&mut f, m.from);
        put_u64(&mut f, m.to);
        put_u64(&mut f, m.last_key as u64);
        put_u64(&mut f, (m.last_key >> 64) as u64);
        put_u64(&mut f, m.last_at);
    }
    for fences in &tables {
        put_u64(&mut f, fences.len() as u64);
        for (key, at, len, crc) in fences {
            put_u64(&mut f, key.len() as u64);
            f.extend_from_slice(key);
            put_u64(&mut f, *at);
            put_u64(&mut f, *len);
            put_u64(&mut f, *crc as u64);
        }
    }
    out.extend_from_slice(&f);
    out[..8].copy_from_slice(&MAGIC);
    out[8..16].copy_from_slice(&(footer_at as u64).to_le_bytes());
    out[16..24].copy_from_slice(&(f.len() as u64).to_le_bytes());
    out[24..28].copy_from_slice(&crc32fast::hash(&f).to_le_bytes());
    let head = crc32fast::hash(&out[..28]);
    out[28..32].copy_from_slice(&head.to_le_bytes());
    out
}

/// Why an index file cannot be used (it is then built again; never an error to the user).
#[derive(Debug)]
enum Unusable {
    Damaged(&'static str),
    Io(std::io::Error),
}

impl From<codec::CodecError> for Unusable {
    fn from(_: codec::CodecError) -> Unusable {
        Unusable::Damaged("damaged: a field does not decode")
    }
}

struct Fence {
    first: Vec<u8>,
    at: u64,
    len: u64,
    crc: u32,
}

/// An index file's bytes: the file (blocks read on demand), or the bytes this process
/// just wrote (another process may replace the file meanwhile: what is answered from is
/// what was checked).
enum Bytes {
    File(std::fs::File),
    Memory(Vec<u8>),
}

impl Bytes {
    fn size(&self) -> Result<u64, Unusable> {
        match self {
            Bytes::File(f) => Ok(f.metadata().map_err(Unusable::Io)?.len()),
            Bytes::Memory(b) => Ok(b.len() as u64),
        }
    }

    /// A read past the end is damage (a file cut short), not an IO error.
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> Result<(), Unusable> {
        let short = || Unusable::Damaged("damaged: shorter than it says");
        match self {
            Bytes::File(f) => f.read_exact_at(buf, at).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => short(),
                _ => Unusable::Io(e),
            }),
            Bytes::Memory(b) => {
                let start = usize::try_from(at).map_err(|_| short())?;
                let end = start.checked_add(buf.len()).ok_or_else(short)?;
                let Some(part) = b.get(start..end) else { return Err(short()) };
                buf.copy_from_slice(part);
                Ok(())
            }
        }
    }
}

/// An index file, open: its marks and block fences in memory, blocks read on demand.
struct IndexFile {
    file: Bytes,
    postings: u64,
    marks: Vec<Mark>,
    tables: [Vec<Fence>; 2],
}

const ACCOUNTS: usize = 0;
const CONTACTS: usize = 1;

impl IndexFile {
    fn open(file: Bytes) -> Result<IndexFile, Unusable> {
        let mut head = [0u8; HEADER_LEN];
        file.read_exact_at(&mut head, 0)?;
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        if head[..8] != MAGIC || crc32fast::hash(&head[..28]) != u32_at(28) {
            return Err(Unusable::Damaged("damaged: header"));
        }
        let (at, len) = (u64_at(8), u64_at(16));
        let size = file.size()?;
        if at.checked_add(len) != Some(size) {
            return Err(Unusable::Damaged("damaged: length"));
        }
        let mut footer = vec![0u8; len as usize];
        file.read_exact_at(&mut footer, at)?;
        if crc32fast::hash(&footer) != u32_at(24) {
            return Err(Unusable::Damaged("damaged: footer checksum"));
        }
        let mut c = Cursor::new(&footer);
        if c.u64()? != FORMAT {
            return Err(Unusable::Damaged("written by another version of tenure"));
        }
        let postings = c.u64()?;
        let n = c.u64()?;
        let mut marks = Vec::new();
        for _ in 0..n.min(256) {
            let lane = c.str()?.to_string();
            let (from, to) = (c.u64()?, c.u64()?);
            let last_key = c.u64()? as u128 | (c.u64()? as u128) << 64;
            marks.push(Mark { lane, from, to, last_key, last_at: c.u64()? });
        }
        let mut tables: [Vec<Fence>; 2] = [Vec::new(), Vec::new()];
        for t in &mut tables {
            let n = c.u64()?;
            for _ in 0..n {
                let k = c.u64()? as usize;
                let first = c.bytes(k)?.to_vec();
                let (at, len, crc) = (c.u64()?, c.u64()?, c.u64()? as u32);
                if at.checked_add(len).is_none_or(|end| end > size) {
                    return Err(Unusable::Damaged("damaged: block out of the file"));
                }
                t.push(Fence { first, at, len, crc });
            }
        }
        if !c.is_done() || marks.len() as u64 != n {
            return Err(Unusable::Damaged("damaged: footer"));
        }
        Ok(IndexFile { file, postings, marks, tables })
    }

    /// The postings of each of `keys` (sorted, no key twice) in `table`, empty for a key
    /// it does not hold: each block holding one is read and checked once, the blocks in
    /// parallel, and only the wanted entries' postings decoded. (A day's accounts fall in
    /// most blocks of a large index: looked up one at a time, a block of 512 accounts was
    /// read and half decoded for each: a forward over 6,000 accounts at 1,000,000 took
    /// 4.0-5.3 s that way, 1.7 s this way; BENCHMARKS.md.)
    fn get_many(&self, table: usize, keys: &[&[u8]]) -> Result<Vec<Vec<Posting>>, Unusable> {
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys sorted, unique");
        let fences = &self.tables[table];
        // The keys that fall in each block: (block, first key, end of its keys).
        let mut groups: Vec<(usize, usize, usize)> = Vec::new();
        for (j, key) in keys.iter().enumerate() {
            let i = fences.partition_point(|f| f.first.as_slice() <= *key);
            if i == 0 {
                continue;
            }
            match groups.last_mut() {
                Some(g) if g.0 == i - 1 => g.2 = j + 1,
                _ => groups.push((i - 1, j, j + 1)),
            }
        }
        let found: Vec<Vec<(usize, Vec<Posting>)>> = groups
            .par_iter()
            .map(|&(b, from, to)| {
                let block = self.block(&fences[b])?;
                let mut c = Cursor::new(&block);
                let mut out = Vec::new();
                let mut next = from;
                for _ in 0..c.u64()? {
                    let k = c.u64()? as usize;
                    let key = c.bytes(k)?;
                    while next < to && keys[next] < key {
                        next += 1;
                    }
                    if next < to && keys[next] == key {
                        out.push((next, decode_postings(&mut c)?));
                        next += 1;
                    } else {
                        skip_postings(&mut c)?;
                    }
                    if next == to {
                        break;
                    }
                }
                Ok(out)
            })
            .collect::<Result<_, Unusable>>()?;
        let mut all = vec![Vec::new(); keys.len()];
        for f in found {
            for (j, ps) in f {
                all[j] = ps;
            }
        }
        Ok(all)
    }

    fn block(&self, f: &Fence) -> Result<Vec<u8>, Unusable> {
        let mut b = vec![0u8; f.len as usize];
        self.file.read_exact_at(&mut b, f.at)?;
        if crc32fast::hash(&b) != f.crc {
            return Err(Unusable::Damaged("damaged: block checksum"));
        }
        Ok(b)
    }

    /// Every entry of both tables (for merging a small tail with more postings).
    fn read_all(&self) -> Result<[Table; 2], Unusable> {
        let mut out: [Table; 2] = [Vec::new(), Vec::new()];
        for (t, fences) in self.tables.iter().enumerate() {
            for f in fences {
                let block = self.block(f)?;
                let mut c = Cursor::new(&block);
                for _ in 0..c.u64()? {
                    let k = c.u64()? as usize;
                    let key = c.bytes(k)?.to_vec();
                    out[t].push((key, decode_postings(&mut c)?));
                }
            }
        }
        Ok(out)
    }
}

/// Moves `c` past an entry's postings without keeping them.
fn skip_postings(c: &mut Cursor<'_>) -> Result<(), Unusable> {
    for _ in 0..c.u64()? {
        c.u64()?;
        for _ in 0..c.u64()? {
            c.u64()?;
        }
    }
    Ok(())
}

fn decode_postings(c: &mut Cursor<'_>) -> Result<Vec<Posting>, Unusable> {
    let mut out = Vec::new();
    for _ in 0..c.u64()? {
        let ix = c.u64()? as usize;
        if ix >= 256 {
            return Err(Unusable::Damaged("damaged: lane number"));
        }
        let n = c.u64()?;
        let mut at = 0u64;
        for _ in 0..n {
            at = at.checked_add(c.u64()?).ok_or(Unusable::Damaged("damaged: position"))?;
            if at >= 1 << 56 {
                return Err(Unusable::Damaged("damaged: position"));
            }
            out.push(posting(ix, Located(at)));
        }
    }
    Ok(out)
}

/// Merges two tables of sorted keys; a key in both gets both postings (`b`'s are later).
fn merge(a: Table, b: Table) -> Table {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                let (k, mut p) = a.next().expect("peeked");
                p.extend(b.next().expect("peeked").1);
                p.sort_unstable();
                (k, p)
            }
            (Some(x), Some(y)) if x.0 < y.0 => a.next().expect("peeked"),
            (Some(_), Some(_)) | (None, Some(_)) => b.next().expect("peeked"),
            (Some(_), None) => a.next().expect("peeked"),
            (None, None) => break,
        };
        out.push(next);
    }
    out
}

/// The index as the log is now: the base and, when the log grew since, the tail.
pub struct AccountIndex {
    base: IndexFile,
    tail: Option<IndexFile>,
}

/// What [`AccountIndex::current`] did to have the index answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The index was current.
    Current,
    /// The log's new records were indexed into the tail.
    Extended,
    /// The index was built from the whole log, for the reason given (first use, a tail
    /// grown large, or a file that did not fit the log or was damaged).
    Built(&'static str),
}

impl AccountIndex {
    /// The index of the log `reader` snapshots, brought to it: read, extended with the
    /// records past it, or built again.
    pub fn current(
        data: &Path,
        reader: &LogReader,
    ) -> Result<(AccountIndex, Refresh), EngineError> {
        Self::current_or_rebuilt(data, reader, None)
    }

    fn current_or_rebuilt(
        data: &Path,
        reader: &LogReader,
        rebuild: Option<&'static str>,
    ) -> Result<(AccountIndex, Refresh), EngineError> {
        let lanes = indexed_lanes();
        let base = match rebuild {
            Some(why) => Err(why),
            None => open_file(data, BASE)?,
        };
        let base = match base {
            Ok(b) if fits(&b, reader, &lanes, None) => b,
            Ok(_) => return Ok((Self::build(data, reader)?, Refresh::Built("the log changed"))),
            Err(why) => return Ok((Self::build(data, reader)?, Refresh::Built(why))),
        };
        let tail = open_file(data, TAIL)?.ok().filter(|t| fits(t, reader, &lanes, Some(&base)));
        let reached: Vec<u64> = match &tail {
            Some(t) => t.marks.iter().map(|m| m.to).collect(),
            None => base.marks.iter().map(|m| m.to).collect(),
        };
        if lanes.iter().zip(&reached).all(|(l, to)| reader.lane_len(l) == *to) {
            return Ok((AccountIndex { base, tail }, Refresh::Current));
        }
        let mut s = scan(reader, &reached)?;
        // A lane with nothing new still ends at the record where the index ended.
        let before = tail.as_ref().unwrap_or(&base);
        for (m, old) in s.marks.iter_mut().zip(&before.marks) {
            if m.to == old.to {
                (m.last_key, m.last_at) = (old.last_key, old.last_at);
            }
        }
        let tail_postings = tail.as_ref().map_or(0, |t| t.postings)
            + s.accounts.iter().map(|(_, p)| p.len() as u64).sum::<u64>();
        if tail_postings > base.postings / 8 + 4096 {
            let why = "the log grew by more than an eighth";
            return Ok((Self::build(data, reader)?, Refresh::Built(why)));
        }
        if let Some(t) = &tail {
            let Ok([accounts, contacts]) = t.read_all() else {
                return Ok((Self::build(data, reader)?, Refresh::Built("damaged")));
            };
            s.accounts = merge(accounts, std::mem::take(&mut s.accounts));
            s.contacts = merge(contacts, std::mem::take(&mut s.contacts));
            for (m, old) in s.marks.iter_mut().zip(&t.marks) {
                m.from = old.from;
            }
        }
        let bytes = encode(&s);
        state::write(data, TAIL, &bytes)?;
        let tail = IndexFile::open(Bytes::Memory(bytes)).map_err(|_| written_unreadable())?;
        Ok((AccountIndex { base, tail: Some(tail) }, Refresh::Extended))
    }

    /// The index built again from the whole log, for the reason given (a caller found it
    /// does not fit: [`EngineError::StaleIndex`]).
    pub fn rebuild(
        data: &Path,
        reader: &LogReader,
        why: &'static str,
    ) -> Result<AccountIndex, EngineError> {
        Ok(Self::current_or_rebuilt(data, reader, Some(why))?.0)
    }

    fn build(data: &Path, reader: &LogReader) -> Result<AccountIndex, EngineError> {
        let lanes = indexed_lanes();
        let s = scan(reader, &vec![0; lanes.len()])?;
        let bytes = encode(&s);
        drop(s);
        state::write(data, BASE, &bytes)?;
        let _ = std::fs::remove_file(state::dir(data).join(TAIL));
        let base = IndexFile::open(Bytes::Memory(bytes)).map_err(|_| written_unreadable())?;
        Ok(AccountIndex { base, tail: None })
    }

    /// The postings of each of `keys` (sorted, no key twice) in `table`, the base's then
    /// the tail's.
    fn get_many(&self, table: usize, keys: &[&[u8]]) -> Result<Vec<Vec<Posting>>, Unusable> {
        let mut all = self.base.get_many(table, keys)?;
        if let Some(t) = &self.tail {
            for (ps, more) in all.iter_mut().zip(t.get_many(table, keys)?) {
                ps.extend(more);
            }
        }
        Ok(all)
    }
}

fn written_unreadable() -> EngineError {
    EngineError::Decode {
        lane: "(account index)".into(),
        reason: "an index just encoded does not read back".into(),
    }
}

/// An index file, or why there is none to use (absent, damaged).
fn open_file(data: &Path, name: &str) -> Result<Result<IndexFile, &'static str>, EngineError> {
    let Some(file) = state::open(data, name)? else { return Ok(Err("first use")) };
    match IndexFile::open(Bytes::File(file)) {
        Ok(f) => Ok(Ok(f)),
        Err(Unusable::Damaged(why)) => Ok(Err(why)),
        Err(Unusable::Io(source)) => {
            Err(EngineError::Io { path: state::dir(data).join(name), source })
        }
    }
}

/// Whether `f` indexes the lanes of `reader` (from the start, or from where `after` ends):
/// the same lanes, not more records than the lane holds, and the last record indexed is
/// still there with the same key.
fn fits(f: &IndexFile, reader: &LogReader, lanes: &[&str], after: Option<&IndexFile>) -> bool {
    if f.marks.len() != lanes.len() {
        return false;
    }
    for (i, (m, l)) in f.marks.iter().zip(lanes).enumerate() {
        let from = after.map_or(0, |b| b.marks[i].to);
        if m.lane != *l || m.from != from || m.to < m.from || m.to > reader.lane_len(l) {
            return false;
        }
        if m.to > 0 && reader.key_at(l, Located(m.last_at)) != Some(m.last_key) {
            return false;
        }
    }
    true
}

/// Why an answer through the index was refused: a damaged block, or a record read
/// through it that is not what the index says it is.
struct Stale(&'static str);

impl From<Unusable> for Stale {
    fn from(u: Unusable) -> Stale {
        match u {
            Unusable::Damaged(why) => Stale(why),
            Unusable::Io(_) => Stale("a block could not be read"),
        }
    }
}

const NOT_INDEXED: Stale = Stale("a record read through it was not the one indexed");

/// One account's ledger as a fold of the whole log at `as_of` would give it (and the
/// company's costs, as that fold has them), from the account index: `None` when no event
/// names the account. Also says what it did to the index.
pub fn account_ledger(
    data: &Path,
    cfg: &Config,
    as_of: Timestamp,
    id: &str,
) -> Result<(Option<Ledger>, Refresh), EngineError> {
    let dir = log_dir(data);
    if !dir.exists() {
        return Ok((None, Refresh::Current));
    }
    let reader = LogReader::open_lanes(&dir, &fold_lanes())?;
    let (index, refresh) = AccountIndex::current(data, &reader)?;
    match fold_indexed(&index, &reader, cfg, as_of, id)? {
        Ok(ledger) => Ok((ledger, refresh)),
        Err(Stale(why)) => {
            let (index, refresh) = AccountIndex::current_or_rebuilt(data, &reader, Some(why))?;
            match fold_indexed(&index, &reader, cfg, as_of, id)? {
                Ok(ledger) => Ok((ledger, refresh)),
                Err(_) => Err(EngineError::Decode {
                    lane: "(account index)".into(),
                    reason: "a freshly built index does not fit the log".into(),
                }),
            }
        }
    }
}

fn fold_indexed(
    index: &AccountIndex,
    reader: &LogReader,
    cfg: &Config,
    as_of: Timestamp,
    id: &str,
) -> Result<Result<Option<Ledger>, Stale>, EngineError> {
    let events = match gather(index, reader, &[id])? {
        Ok(mut per) => per.pop().expect("one account asked for"),
        Err(stale) => return Ok(Err(stale)),
    };
    if events.is_empty() {
        return Ok(Ok(None));
    }
    // The company's costs (naming no account) are read whole (a few records) and kept apart
    // by the fold; those naming this account came with its events.
    let mut b = LedgerBuilder::new();
    crate::scan_events(reader, lane(EventKind::Cost), |_, e| {
        if e.account.is_none() {
            b.push(e);
        }
    })?;
    for e in events {
        b.push(e);
    }
    let mut ledger = b.finish(&cfg.revenue, as_of);
    ledger.accounts.retain(|a| a.id == id);
    Ok(Ok(Some(ledger)))
}

/// Each of `ids`' events as a fold of the whole log holds them: its own, and every contact
/// event (of any account) naming one of its contacts; lane by lane in the fold's order,
/// each lane in log order. Empty for an account no event names.
fn gather(
    index: &AccountIndex,
    reader: &LogReader,
    ids: &[&str],
) -> Result<Result<Vec<Vec<Event>>, Stale>, EngineError> {
    let lanes = indexed_lanes();
    let mut keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
    keys.sort_unstable();
    keys.dedup();
    let postings = match index.get_many(ACCOUNTS, &keys) {
        Ok(p) => p,
        Err(u) => return Ok(Err(u.into())),
    };
    let own: Vec<Vec<Posting>> = ids
        .iter()
        .map(|id| {
            let mut p = postings[keys.binary_search(&id.as_bytes()).expect("listed")].clone();
            p.sort_unstable();
            p
        })
        .collect();
    // Each posting is read once, however many accounts want it.
    let mut wanted: Vec<Posting> = own.iter().flatten().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let first = match read(reader, &lanes, &wanted)? {
        Ok(events) => events,
        Err(stale) => return Ok(Err(stale)),
    };
    for (ps, id) in own.iter().zip(ids) {
        for p in ps {
            let (_, e) = &first[wanted.binary_search(p).expect("read above")];
            if e.account.as_deref() != Some(*id) {
                return Ok(Err(NOT_INDEXED));
            }
        }
    }
    // The contacts' sightings.
    let contacts_of = |ps: &[Posting]| -> Vec<[u8; 8]> {
        let mut keys: Vec<[u8; 8]> = ps
            .iter()
            .filter_map(|p| contact_of(&first[wanted.binary_search(p).expect("read above")].1))
            .map(contact_key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    };
    let keys: Vec<Vec<[u8; 8]>> = own.iter().map(|ps| contacts_of(ps)).collect();
    let mut all_keys: Vec<[u8; 8]> = keys.iter().flatten().copied().collect();
    all_keys.sort_unstable();
    all_keys.dedup();
    let contact_keys: Vec<&[u8]> = all_keys.iter().map(|k| k.as_slice()).collect();
    let mut sightings = match index.get_many(CONTACTS, &contact_keys) {
        Ok(s) => s,
        Err(u) => return Ok(Err(u.into())),
    };
    for p in &mut sightings {
        p.sort_unstable();
    }
    let mut more: Vec<Posting> =
        sightings.iter().flatten().copied().filter(|p| wanted.binary_search(p).is_err()).collect();
    more.sort_unstable();
    more.dedup();
    let second = match read(reader, &lanes, &more)? {
        Ok(events) => events,
        Err(stale) => return Ok(Err(stale)),
    };
    if !second.iter().all(|(_, e)| sights_one_of(e, &all_keys)) {
        return Ok(Err(NOT_INDEXED));
    }
    let event = |p: &Posting| -> &Event {
        match wanted.binary_search(p) {
            Ok(i) => &first[i].1,
            Err(_) => &second[more.binary_search(p).expect("read above")].1,
        }
    };
    let per: Vec<Vec<Event>> = own
        .par_iter()
        .zip(&keys)
        .map(|(ps, keys)| {
            let mut mine: Vec<Posting> = ps.clone();
            for k in keys {
                let i = all_keys.binary_search(k).expect("collected above");
                mine.extend(&sightings[i]);
            }
            // Postings sort by lane (numbered in the fold's order), then log order.
            mine.sort_unstable();
            mine.dedup();
            mine.iter().map(|p| event(p).clone()).collect()
        })
        .collect();
    Ok(Ok(per))
}

/// Records read back through the index with their postings, or why the index is refused.
type Read = Result<Result<Vec<(Posting, Event)>, Stale>, EngineError>;

/// Postings a task of [`read`] reads, at most (a part of one lane's): a day's few thousand
/// accounts make hundreds of parts.
const READ_PART: usize = 256;

/// Tasks of [`read`] at once, each a read in flight: more than the cores, since a read
/// the page cache does not hold waits on the disk (which serves many reads together) and
/// one it holds costs a copy.
const READS_IN_FLIGHT: usize = 16;

/// Reads and decodes the records at `postings` (sorted), in their order: in parts of
/// [`READ_PART`] of a lane's, [`READS_IN_FLIGHT`] at once.
fn read(
    reader: &LogReader,
    lanes: &[&str],
    postings: &[Posting],
) -> Result<Result<Vec<(Posting, Event)>, Stale>, EngineError> {
    // Each lane's postings (in log order) in parts read side by side: where the page cache
    // does not hold the log, each read waits on the disk, which serves many at once.
    let runs: Vec<&[Posting]> = postings
        .chunk_by(|a, b| posting_lane(*a) == posting_lane(*b))
        .flat_map(|run| run.chunks(READ_PART))
        .collect();
    let read_all = || -> Vec<Read> {
        runs.par_iter()
            .map(|run| {
                let ix = posting_lane(run[0]);
                let Some(l) = lanes.get(ix) else { return Ok(Err(NOT_INDEXED)) };
                let at: Vec<Located> = run.iter().map(|p| posting_at(*p)).collect();
                let mut out = Vec::with_capacity(run.len());
                let result = reader.read_located(l, &at, |at, _, payload| {
                    let Ok(e) = codec::decode(payload) else { return Err(NOT_INDEXED) };
                    out.push((posting(ix, at), e));
                    Ok(())
                });
                match result {
                    Ok(()) => Ok(Ok(out)),
                    Err(ScanError::Callback(stale)) => Ok(Err(stale)),
                    Err(ScanError::Log(LogError::Corrupt { .. })) => Ok(Err(NOT_INDEXED)),
                    Err(ScanError::Log(e)) => Err(e.into()),
                }
            })
            .collect()
    };
    let pool = (runs.len() > 1)
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(READS_IN_FLIGHT)
                .thread_name(|i| format!("account-read-{i}"))
                .build()
                .ok()
        })
        .flatten();
    let parts = match &pool {
        Some(p) => p.install(read_all),
        None => read_all(),
    };
    let mut all = Vec::with_capacity(postings.len());
    for p in parts {
        match p? {
            Ok(events) => all.extend(events),
            Err(stale) => return Ok(Err(stale)),
        }
    }
    Ok(Ok(all))
}

/// The accounts whose fold the records of the indexed lanes from `from` on (by lane name;
/// a lane not named is not read) change: those the records name, and those that
/// sighted a contact a contact record among them sights (a move changes the account left).
pub fn touched(
    index: &AccountIndex,
    reader: &LogReader,
    from: &[(&str, u64)],
) -> Result<Vec<String>, EngineError> {
    let lanes = indexed_lanes();
    type Named = (Vec<String>, Vec<[u8; 8]>);
    let parts: Vec<Result<Named, EngineError>> = lanes
        .par_iter()
        .map(|l| {
            let (mut ids, mut keys) = (Vec::new(), Vec::new());
            let Some(start) = from.iter().find(|(n, _)| n == l).map(|(_, f)| *f) else {
                return Ok((ids, keys));
            };
            let bad = |e: codec::CodecError| EngineError::Decode {
                lane: l.to_string(),
                reason: e.to_string(),
            };
            reader
                .scan_from(l, start, |_, _, payload| {
                    if let (_, _, Some(a)) = codec::peek(payload).map_err(bad)?
                        && ids.last().is_none_or(|last: &String| last != a)
                    {
                        ids.push(a.to_string());
                    }
                    if let Some(c) = codec::peek_contact(payload).map_err(bad)? {
                        keys.push(contact_key(c));
                    }
                    Ok::<(), EngineError>(())
                })
                .map_err(scan_error)?;
            Ok((ids, keys))
        })
        .collect();
    let (mut ids, mut keys) = (Vec::new(), Vec::new());
    for p in parts {
        let (i, k) = p?;
        ids.extend(i);
        keys.extend(k);
    }
    keys.sort_unstable();
    keys.dedup();
    let contact_keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let found = index.get_many(CONTACTS, &contact_keys).map_err(|u| stale(u.into()))?;
    let mut sightings: Vec<Posting> = found.into_iter().flatten().collect();
    sightings.sort_unstable();
    sightings.dedup();
    let events = read(reader, &lanes, &sightings)?.map_err(stale)?;
    for (_, e) in events {
        if !sights_one_of(&e, &keys) {
            return Err(stale(NOT_INDEXED));
        }
        ids.extend(e.account);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn stale(s: Stale) -> EngineError {
    EngineError::StaleIndex(s.0)
}

/// `ids`' ledgers (each as a fold of the whole log at `as_of` gives it), with the
/// diagnostics of their folds, from the account index, in the order given; an account no
/// event names is left out.
pub fn fold_many(
    index: &AccountIndex,
    reader: &LogReader,
    cfg: &Config,
    as_of: Timestamp,
    ids: &[&str],
) -> Result<Vec<(AccountLedger, Vec<Diagnostic>)>, EngineError> {
    let per = gather(index, reader, ids)?.map_err(stale)?;
    Ok(per
        .into_par_iter()
        .zip(ids)
        .filter(|(events, _)| !events.is_empty())
        .map(|(events, id)| {
            let mut b = LedgerBuilder::new();
            for e in events {
                b.push(e);
            }
            b.fold_one(id, &cfg.revenue, as_of).expect("the account's own events are here")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys looked up many at once (some absent, before the first, past the last, several
    /// to a block and blocks skipped) get exactly their own postings, across blocks.
    #[test]
    fn many_keys_get_their_own_postings_across_blocks() {
        let key = |i: usize| format!("acc-{i:06}").into_bytes();
        // Every third key is held, with postings of its own in two lanes.
        let held = |i: usize| i.is_multiple_of(3);
        let postings = |i: usize| -> Vec<Posting> {
            (0..i % 5 + 1).map(|n| posting(n % 2, Located((i * 10 + n) as u64 + 1))).collect()
        };
        let table: Table =
            (0..BLOCK * 9).filter(|i| held(*i)).map(|i| (key(i), postings(i))).collect();
        let s = Scanned { marks: Vec::new(), accounts: table, contacts: Vec::new() };
        let f = IndexFile::open(Bytes::Memory(encode(&s))).unwrap();
        assert!(f.tables[ACCOUNTS].len() > 2, "more than two blocks");
        let wanted: Vec<usize> = (0..BLOCK * 9 + 3)
            .filter(|i| {
                i % 7 == 0 || i % 11 == 1 || (BLOCK * 2..BLOCK * 4).contains(i) && i % 2 == 0
            })
            .filter(|i| !(BLOCK * 5..BLOCK * 7).contains(i))
            .collect();
        let keys: Vec<Vec<u8>> = wanted.iter().map(|i| key(*i)).collect();
        let mut refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        refs.insert(0, b"a");
        refs.push(b"zzz");
        let got = f.get_many(ACCOUNTS, &refs).unwrap();
        assert_eq!(got.len(), refs.len());
        assert!(got[0].is_empty() && got[got.len() - 1].is_empty());
        for (n, i) in wanted.iter().enumerate() {
            let want = if held(*i) { postings(*i) } else { Vec::new() };
            assert_eq!(got[n + 1], want, "key {i}");
        }
        assert!(f.get_many(ACCOUNTS, &[]).unwrap().is_empty());
    }
    use crate::import::Format;
    use crate::{Config, Importer};

    /// An index whose positions point at other records (as after a repair that kept the
    /// last record's key) is caught by the records' own account, and built again.
    #[test]
    fn positions_that_name_another_account_are_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path();
        let cfg = Config::defaults();
        let (mut imp, _) = Importer::open(data, cfg.ingest(None)).unwrap();
        let text = concat!(
            r#"{"type":"subscription","timestamp":"2024-01-10T00:00:00Z","account_id":"a","subscription_id":"s-a","kind":"product","quantity":1,"amount":"50.00","currency":"USD","interval":"month","status":"active"}"#,
            "\n",
            r#"{"type":"subscription","timestamp":"2024-01-11T00:00:00Z","account_id":"b","subscription_id":"s-b","kind":"product","quantity":1,"amount":"70.00","currency":"USD","interval":"month","status":"active"}"#,
            "\n",
        );
        imp.import(text.as_bytes(), Format::Jsonl, None, &mut |r| panic!("{r}"), &mut |_| {})
            .unwrap();
        drop(imp);
        let as_of = Timestamp::parse("2024-06-01").unwrap();
        let (a, refresh) = account_ledger(data, &cfg, as_of, "a").unwrap();
        assert_eq!(refresh, Refresh::Built("first use"));
        let a = format!("{:#?}", a.unwrap().accounts);
        // Swap the two accounts' postings, keeping the marks: the file still fits the log.
        let file = state::open(data, BASE).unwrap().unwrap();
        let index = IndexFile::open(Bytes::File(file)).unwrap();
        let [mut accounts, contacts] = index.read_all().unwrap();
        assert_eq!(accounts.len(), 2);
        let (pa, pb) = (accounts[0].1.clone(), accounts[1].1.clone());
        (accounts[0].1, accounts[1].1) = (pb, pa);
        let s = Scanned { marks: index.marks.clone(), accounts, contacts };
        state::write(data, BASE, &encode(&s)).unwrap();
        let (again, refresh) = account_ledger(data, &cfg, as_of, "a").unwrap();
        assert_eq!(refresh, Refresh::Built("a record read through it was not the one indexed"));
        assert_eq!(format!("{:#?}", again.unwrap().accounts), a);
        assert_eq!(account_ledger(data, &cfg, as_of, "a").unwrap().1, Refresh::Current);
    }
}
