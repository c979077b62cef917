//! The ledger checkpoint: every account's fold at an instant, with what the KPIs read
//! (bytes in, bytes out), so that `tenure kpi` reads the accounts instead of folding the
//! log.
//!
//! A fold at `as_of` holds for every instant until each account's
//! [`AccountLedger::changes_at`]: a reader asking for a later instant `t` folds again only
//! the accounts whose `changes_at` is at or before `t` (and those new events name) and
//! reads the rest from here ([`LedgerCheckpoint::forward`] writes the result back).
//!
//! What the KPIs do not read is dropped ([`kept`] says what a decoded account holds): the
//! account's name, invoices' and tickets' ids, contacts' emails and names, comments, the
//! ids of objectives and change requests, touchpoints' kinds, the renewals' subscriptions,
//! alerts, forecast calls, tasks' titles, owners and notes, and movements' sources. A
//! decoded account is for the KPIs, not for display. Company-level costs are not kept:
//! they are few, and the caller reads them from their lane.
//!
//! A *full* checkpoint ([`encode_full`]) keeps all of that too, in a part of each account
//! of its own that readers of the KPIs' parts skip: the service's live state is saved in
//! one (`tenure_alerting::snapshot`), and its pages show everything.
//!
//! The file is in chunks of accounts, each with its own string table and CRC; the header
//! lists each chunk's length, CRC, account count, earliest `changes_at` and first id. A
//! checkpoint whose key, format, length or CRCs differ is refused, never trusted.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use tenure_core::codec::{put_i64 as put_i, put_str, put_u64 as put};
use tenure_core::event::{
    AttrValue, ContactRole, ContactStatus, ForecastCategory, InvoiceStatus, ObjectiveStatus,
    RequestStatus, Sentiment, Severity, SurveyKind, SurveyScore, TaskStatus, TicketCategory,
};
use tenure_core::money::Currency;
use tenure_core::time::Timestamp;

use crate::cs::{
    Alert, ContactChange, CsLedger, Departure, ForecastCall, Objective, Response, Task, Ticket,
};
use crate::{
    AccountLedger, Diagnostic, Invoice, Movement, MovementKind, Renewal, RenewalOutcome, SourceRef,
    Step,
};

const MAGIC: &[u8; 8] = b"TNRLEDGR";
/// The layout of this file; a change of layout or of what is kept changes it. The service's
/// saved state is read by later builds of the same format: bump it with any change of
/// layout (`tenure-alerting`'s test `a_state_saved_by_an_earlier_build_is_read_as_it_was_saved`
/// fails until it is, for what its saved state holds).
pub const FORMAT: u32 = 5;
/// Accounts per chunk: the unit of parallel encoding, reading and decoding.
const CHUNK: usize = 2048;
/// Magic, format, the header's CRC32 and its length.
const PREFIX: usize = 24;

/// Why a checkpoint cannot be used (the caller folds the log again).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not a ledger checkpoint (bad magic)")]
    Magic,
    #[error("checkpoint format {0}, this build reads {FORMAT}")]
    Format(u32),
    #[error("checkpoint made from other settings or by another build (key differs)")]
    Key,
    #[error("checkpoint damaged: {0}")]
    Damaged(&'static str),
    #[error("checkpoint unreadable: {0}")]
    Io(String),
    #[error("the checkpoint keeps only what the KPIs read; every part was asked for")]
    NotFull,
}

type R<T> = Result<T, CheckpointError>;

/// Where a checkpoint's bytes are read from: memory, or a file the caller opened (read a
/// chunk at a time by the threads that decode it, so that a large checkpoint is never held
/// whole).
pub trait Source: Sync {
    /// Bytes in all.
    fn size(&self) -> u64;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Source for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|s| *s <= self.len());
        let end = start.and_then(|s| s.checked_add(buf.len())).filter(|e| *e <= self.len());
        match (start, end) {
            (Some(s), Some(e)) => {
                buf.copy_from_slice(&self[s..e]);
                Ok(())
            }
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// One chunk's place in the file: offset, length, CRC32, accounts, the earliest
/// `changes_at` of its accounts (`i64::MAX`: none), and its first account's id.
#[derive(Clone, Debug)]
struct ChunkRef {
    offset: u64,
    len: usize,
    crc: u32,
    accounts: usize,
    changes_at: i64,
    first: String,
}

/// A chunk encoded: its bytes, account count, earliest `changes_at` and first id.
type Encoded = (Vec<u8>, usize, i64, String);

/// A checkpoint whose header was read and checked; its accounts are read, checked (a CRC
/// per chunk) and decoded on demand.
pub struct LedgerCheckpoint<S> {
    src: S,
    position: Vec<u8>,
    as_of: Timestamp,
    accounts: usize,
    diagnostics: Vec<Diagnostic>,
    chunks: Vec<ChunkRef>,
    /// Whether every part of each account is kept ([`encode_full`]).
    full: bool,
}

/// Encodes `accounts` (folded at `as_of`, sorted by id) with the fold's `diagnostics`.
/// `key` must match for [`LedgerCheckpoint::open`] to read it; `position` is the caller's
/// note of where the log stood (read back by [`LedgerCheckpoint::position`]).
pub fn encode(
    key: &[u8],
    position: &[u8],
    as_of: Timestamp,
    accounts: &[AccountLedger],
    diagnostics: &[Diagnostic],
) -> Image {
    encode_detail(key, position, as_of, accounts, diagnostics, false)
}

/// As [`encode`], keeping every part of each account: read back with [`Want::FULL`], an
/// account is the one encoded, field for field.
pub fn encode_full(
    key: &[u8],
    position: &[u8],
    as_of: Timestamp,
    accounts: &[AccountLedger],
    diagnostics: &[Diagnostic],
) -> Image {
    encode_detail(key, position, as_of, accounts, diagnostics, true)
}

fn encode_detail(
    key: &[u8],
    position: &[u8],
    as_of: Timestamp,
    accounts: &[AccountLedger],
    diagnostics: &[Diagnostic],
    full: bool,
) -> Image {
    assemble(key, position, as_of, diagnostics, encode_chunks(accounts, full), full)
}

/// `accounts` encoded a chunk at a time, the chunks in parallel.
fn encode_chunks(accounts: &[AccountLedger], full: bool) -> Vec<Encoded> {
    accounts
        .par_chunks(CHUNK)
        .map(|c| {
            let refs: Vec<&AccountLedger> = c.iter().collect();
            encode_chunk(&refs, full)
        })
        .collect()
}

/// A chunk's bytes (string table, then accounts), its account count, earliest
/// `changes_at` and first id.
fn encode_chunk(accounts: &[&AccountLedger], full: bool) -> Encoded {
    let mut w = Writer { full, ..Writer::default() };
    let mut body = Vec::with_capacity(accounts.len() * 512);
    for a in accounts {
        w.account(&mut body, a);
    }
    let mut out = Vec::with_capacity(body.len() + w.table_bytes + 16);
    put(&mut out, w.list.len() as u64);
    for s in &w.list {
        put_str(&mut out, s);
    }
    out.extend_from_slice(&body);
    let changes_at = accounts
        .iter()
        .filter_map(|a| a.changes_at.filter(|t| stamp(t.0).is_ok()))
        .map(|t| t.0)
        .min();
    let first = accounts.first().map_or(String::new(), |a| a.id.clone());
    (out, accounts.len(), changes_at.unwrap_or(i64::MAX), first)
}

fn assemble(
    key: &[u8],
    position: &[u8],
    as_of: Timestamp,
    diagnostics: &[Diagnostic],
    chunks: Vec<Encoded>,
    full: bool,
) -> Image {
    let refs: Vec<Listed> = chunks.iter().map(listed).collect();
    let head = header(key, position, as_of, diagnostics, &refs, full);
    Image { head, chunks: chunks.into_iter().map(|c| c.0).collect() }
}

/// What the header lists of a chunk: its length, CRC32, account count, earliest
/// `changes_at` and first id.
type Listed = (usize, u32, usize, i64, String);

fn listed(c: &Encoded) -> Listed {
    (c.0.len(), crc32fast::hash(&c.0), c.1, c.2, c.3.clone())
}

/// As [`encode_full`], the chunks handed to `out` in order as they are encoded (a batch
/// of them at a time, in parallel) rather than held: returns the header, which goes
/// before them in the file (the caller writes the chunks aside, then the header and
/// them). An error of `out` stops the encoding and is returned.
pub fn encode_full_to(
    key: &[u8],
    position: &[u8],
    as_of: Timestamp,
    accounts: &[AccountLedger],
    diagnostics: &[Diagnostic],
    out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    /// Chunks encoded at once: 65,536 accounts.
    const BATCH: usize = 32;
    let mut refs = Vec::with_capacity(accounts.len().div_ceil(CHUNK));
    for batch in accounts.chunks(CHUNK * BATCH) {
        for c in &encode_chunks(batch, true) {
            out(&c.0)?;
            refs.push(listed(c));
        }
    }
    Ok(header(key, position, as_of, diagnostics, &refs, true))
}

/// The file's header: magic, format, CRC and length, then what it lists.
fn header(
    key: &[u8],
    position: &[u8],
    as_of: Timestamp,
    diagnostics: &[Diagnostic],
    chunks: &[Listed],
    full: bool,
) -> Vec<u8> {
    let mut h = Vec::new();
    h.push(u8::from(full));
    put(&mut h, key.len() as u64);
    h.extend_from_slice(key);
    put(&mut h, position.len() as u64);
    h.extend_from_slice(position);
    put_i(&mut h, as_of.0);
    put(&mut h, diagnostics.len() as u64);
    for d in diagnostics {
        put_str(&mut h, &d.0);
    }
    put(&mut h, chunks.len() as u64);
    for (len, crc, n, changes_at, first) in chunks {
        put(&mut h, *len as u64);
        h.extend_from_slice(&crc.to_le_bytes());
        put(&mut h, *n as u64);
        put_i(&mut h, *changes_at);
        put_str(&mut h, first);
    }
    let mut head = Vec::with_capacity(PREFIX + h.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&FORMAT.to_le_bytes());
    head.extend_from_slice(&crc32fast::hash(&h).to_le_bytes());
    head.extend_from_slice(&(h.len() as u64).to_le_bytes());
    head.extend_from_slice(&h);
    head
}

/// A checkpoint's bytes as encoded: the header, then the chunks, in pieces, so that a
/// caller writes them to a file without first copying them into one buffer.
pub struct Image {
    head: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

impl Image {
    /// The file's bytes, in order.
    pub fn parts(&self) -> Vec<&[u8]> {
        std::iter::once(self.head.as_slice()).chain(self.chunks.iter().map(Vec::as_slice)).collect()
    }

    /// The file's bytes in one buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

fn io(e: std::io::Error) -> CheckpointError {
    CheckpointError::Io(e.to_string())
}

impl<S: Source> LedgerCheckpoint<S> {
    /// Reads and checks the header of the checkpoint in `src` (magic, format, CRC, key, the
    /// chunks' lengths against the source's).
    pub fn open(src: S, key: &[u8]) -> Result<LedgerCheckpoint<S>, CheckpointError> {
        let mut prefix = [0u8; PREFIX];
        if src.size() < PREFIX as u64 {
            return Err(CheckpointError::Magic);
        }
        src.read_at(0, &mut prefix).map_err(io)?;
        if &prefix[..8] != MAGIC {
            return Err(CheckpointError::Magic);
        }
        let word = |i: usize| u32::from_le_bytes(prefix[i..i + 4].try_into().expect("4 bytes"));
        if word(8) != FORMAT {
            return Err(CheckpointError::Format(word(8)));
        }
        let len = u64::from_le_bytes(prefix[16..24].try_into().expect("8 bytes"));
        // The header lists chunks (tens of bytes each), never the accounts: a length past
        // this is damage, not a header to read whole.
        if len > src.size() - PREFIX as u64 || len > 1 << 28 {
            return Err(CheckpointError::Damaged("header length"));
        }
        let mut h = vec![0u8; len as usize];
        src.read_at(PREFIX as u64, &mut h).map_err(io)?;
        if crc32fast::hash(&h) != word(12) {
            return Err(CheckpointError::Damaged("header CRC mismatch"));
        }
        let mut r = Reader::new(&h, &[]);
        let full = r.bool()?;
        let n = r.len()?;
        if r.bytes(n)? != key {
            return Err(CheckpointError::Key);
        }
        let n = r.len()?;
        let position = r.bytes(n)?.to_vec();
        let as_of = stamp(r.i()?)?;
        let n = r.len()?;
        let mut diagnostics = Vec::with_capacity(n);
        for _ in 0..n {
            diagnostics.push(Diagnostic(r.raw_str()?.to_string()));
        }
        let n = r.len()?;
        let mut chunks = Vec::with_capacity(n);
        let mut at = PREFIX as u64 + len;
        let mut accounts = 0usize;
        for _ in 0..n {
            let l = r.u()?;
            let crc = u32::from_le_bytes(r.bytes(4)?.try_into().expect("4 bytes"));
            let count = usize::try_from(r.u()?).map_err(|_| CheckpointError::Damaged("count"))?;
            let changes_at = r.i()?;
            let first = r.raw_str()?.to_string();
            let end = at.checked_add(l).filter(|e| *e <= src.size());
            let end = end.ok_or(CheckpointError::Damaged("chunk length"))?;
            // Every account takes a byte at least: a count past its chunk's bytes is damage
            // (and would be an allocation past what the file can hold).
            if count as u64 > l {
                return Err(CheckpointError::Damaged("count"));
            }
            let (offset, len) = (at, l as usize);
            chunks.push(ChunkRef { offset, len, crc, accounts: count, changes_at, first });
            accounts = accounts.checked_add(count).ok_or(CheckpointError::Damaged("count"))?;
            at = end;
        }
        if at != src.size() || r.at != h.len() {
            return Err(CheckpointError::Damaged("length"));
        }
        Ok(LedgerCheckpoint { src, position, as_of, accounts, diagnostics, chunks, full })
    }

    /// Whether every part of each account is kept ([`encode_full`]).
    pub fn full(&self) -> bool {
        self.full
    }

    /// Where the log stood when the accounts were folded, as the caller noted it.
    pub fn position(&self) -> &[u8] {
        &self.position
    }

    /// The instant the accounts were folded at.
    pub fn as_of(&self) -> Timestamp {
        self.as_of
    }

    /// Accounts held.
    pub fn len(&self) -> usize {
        self.accounts
    }

    pub fn is_empty(&self) -> bool {
        self.accounts == 0
    }

    /// Bytes of the whole checkpoint.
    pub fn size(&self) -> u64 {
        self.src.size()
    }

    /// The diagnostics of the fold (a missing exchange rate, say), sorted.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// The ids of the accounts whose fold changes by `t` (`changes_at <= t`), sorted: only
    /// the chunks that hold one are read.
    pub fn changing_by(&self, t: Timestamp) -> Result<Vec<String>, CheckpointError> {
        let parts: Vec<R<Vec<String>>> = (0..self.chunks.len())
            .into_par_iter()
            .filter(|c| self.chunks[*c].changes_at <= t.0)
            .map_init(Vec::new, |buf, c| {
                let mut out = Vec::new();
                self.decode(c, Want { cs: false, attributes: false, display: false }, buf, |a| {
                    if a.changes_at.is_some_and(|at| at <= t) {
                        out.push(a.id.clone());
                    }
                })?;
                Ok(out)
            })
            .collect();
        let mut ids = Vec::new();
        for p in parts {
            ids.extend(p?);
        }
        Ok(ids)
    }

    /// `f` of each chunk's accounts (in id order within a chunk), the chunks decoded in
    /// parallel; the results in chunk order. Accounts named in `skip` (sorted) are left
    /// out; the parts `want` leaves out come empty.
    pub fn map_chunks<T: Send>(
        &self,
        skip: &[String],
        want: Want,
        f: impl Fn(&[AccountLedger]) -> T + Sync,
    ) -> Result<Vec<T>, CheckpointError> {
        let parts: Vec<R<T>> = (0..self.chunks.len())
            .into_par_iter()
            .map_init(Vec::new, |buf, c| {
                let mut accounts = Vec::with_capacity(self.chunks[c].accounts);
                self.decode(c, want, buf, |a| {
                    if skip.binary_search(&a.id).is_err() {
                        accounts.push(std::mem::take(a));
                    }
                })?;
                Ok(f(&accounts))
            })
            .collect();
        parts.into_iter().collect()
    }

    /// Every account (the parts `want` names), in id order, decoded in parallel: each
    /// decoded once, into the memory it is kept in.
    pub fn accounts(&self, want: Want) -> Result<Vec<AccountLedger>, CheckpointError> {
        let parts = self.map_chunks_owned(want)?;
        let mut all = Vec::with_capacity(self.accounts);
        for p in parts {
            all.extend(p);
        }
        Ok(all)
    }

    fn map_chunks_owned(&self, want: Want) -> Result<Vec<Vec<AccountLedger>>, CheckpointError> {
        let parts: Vec<R<Vec<AccountLedger>>> = (0..self.chunks.len())
            .into_par_iter()
            .map_init(Vec::new, |buf, c| {
                let mut accounts = Vec::with_capacity(self.chunks[c].accounts);
                self.decode(c, want, buf, |a| accounts.push(std::mem::take(a)))?;
                Ok(accounts)
            })
            .collect();
        parts.into_iter().collect()
    }

    /// As [`map_chunks`](Self::map_chunks), folding each account into the chunk's `init()`
    /// with `step` as it is decoded: a thread decodes every account into the same
    /// [`AccountLedger`], whose vectors keep their capacity from one account to the next
    /// (their items' strings are still allocated), so no chunk of accounts is held.
    pub fn fold_chunks<T: Send>(
        &self,
        skip: &[String],
        want: Want,
        init: impl Fn() -> T + Sync,
        step: impl Fn(&mut T, &AccountLedger) + Sync,
    ) -> Result<Vec<T>, CheckpointError> {
        let parts: Vec<R<T>> = (0..self.chunks.len())
            .into_par_iter()
            .map_init(
                || (Vec::new(), AccountLedger::default()),
                |(buf, a), c| {
                    let mut s = init();
                    self.decode_into(c, want, buf, a, |a| {
                        if skip.binary_search(&a.id).is_err() {
                            step(&mut s, a);
                        }
                    })?;
                    Ok(s)
                },
            )
            .collect();
        parts.into_iter().collect()
    }

    /// Reads, checks and decodes chunk `c` (the parts `want` names), calling `f` on each
    /// account in turn. `buf` is reused from chunk to chunk, one per thread (at 1 M
    /// accounts this measured neither a gain nor a cost against a buffer per chunk).
    fn decode(
        &self,
        c: usize,
        want: Want,
        buf: &mut Vec<u8>,
        f: impl FnMut(&mut AccountLedger),
    ) -> R<()> {
        self.decode_into(c, want, buf, &mut AccountLedger::default(), f)
    }

    /// As [`decode`](Self::decode), each account decoded into `a` (what `f` leaves in it
    /// is written over by the next account, its vectors' capacity reused).
    fn decode_into(
        &self,
        c: usize,
        want: Want,
        buf: &mut Vec<u8>,
        a: &mut AccountLedger,
        mut f: impl FnMut(&mut AccountLedger),
    ) -> R<()> {
        if want.display && !self.full {
            return Err(CheckpointError::NotFull);
        }
        let chunk = &self.chunks[c];
        buf.resize(chunk.len, 0);
        let buf = &mut buf[..chunk.len];
        self.src.read_at(chunk.offset, buf).map_err(io)?;
        if crc32fast::hash(buf) != chunk.crc {
            return Err(CheckpointError::Damaged("chunk CRC mismatch"));
        }
        let mut r = Reader::new(buf, &[]);
        let n = r.len()?;
        let mut table: Vec<Arc<str>> = Vec::with_capacity(n);
        for _ in 0..n {
            table.push(Arc::from(r.raw_str()?));
        }
        let mut r = Reader::new(&buf[r.at..], &table);
        r.want = want;
        for _ in 0..chunk.accounts {
            r.account_into(a)?;
            f(a);
        }
        if r.at != r.b.len() {
            return Err(CheckpointError::Damaged("chunk length"));
        }
        Ok(())
    }

    /// The bytes of this checkpoint brought forward to `as_of`: each of `replace` (accounts
    /// folded at `as_of`, sorted by id) takes the place of the account of the same id, or
    /// joins the others in id order; every other account must hold at `as_of` (its
    /// `changes_at` later: the caller refolds the others). `diagnostics` are the
    /// replacements' fold's, added to the checkpoint's. The result is keyed `key` and noted
    /// at `position`.
    pub fn forward(
        &self,
        key: &[u8],
        position: &[u8],
        as_of: Timestamp,
        replace: &[AccountLedger],
        diagnostics: &[Diagnostic],
    ) -> Result<Image, CheckpointError> {
        debug_assert!(replace.windows(2).all(|w| w[0].id < w[1].id), "replace is sorted");
        let replaced = |id: &str| replace.binary_search_by(|r| r.id.as_str().cmp(id)).is_ok();
        // A chunk at a time (in parallel): its accounts decoded, those replaced left out, the
        // replacements whose ids fall before the next chunk's first merged in, encoded again
        // (chunks' string tables are their own). Only a chunk's accounts are held at once.
        let n = self.chunks.len();
        let bound = |c: usize| match c {
            0 => 0,
            c if c == n => replace.len(),
            c => replace.partition_point(|r| r.id < self.chunks[c].first),
        };
        let parts: Vec<R<Vec<Encoded>>> = (0..n)
            .into_par_iter()
            .map_init(Vec::new, |buf, c| {
                let mut kept = Vec::with_capacity(self.chunks[c].accounts);
                self.decode(c, Want::ALL, buf, |a| {
                    if !replaced(&a.id) {
                        debug_assert!(a.changes_at.is_none_or(|t| t > as_of), "{}", a.id);
                        kept.push(std::mem::take(a));
                    }
                })?;
                let mut fresh = replace[bound(c)..bound(c + 1)].iter().peekable();
                let mut merged: Vec<&AccountLedger> = Vec::with_capacity(kept.len());
                for a in &kept {
                    while let Some(r) = fresh.next_if(|r| r.id < a.id) {
                        merged.push(r);
                    }
                    merged.push(a);
                }
                merged.extend(fresh);
                Ok(merged.chunks(CHUNK).map(|c| encode_chunk(c, false)).collect())
            })
            .collect();
        let mut chunks = Vec::new();
        for p in parts {
            chunks.extend(p?);
        }
        if n == 0 {
            let all: Vec<&AccountLedger> = replace.iter().collect();
            chunks = all.par_chunks(CHUNK).map(|c| encode_chunk(c, false)).collect();
        }
        let mut all = self.diagnostics.clone();
        all.extend_from_slice(diagnostics);
        all.sort();
        all.dedup();
        Ok(assemble(key, position, as_of, &all, chunks, false))
    }
}

/// An instant read back, within the years 1 to 9999 (as every instant an event can hold),
/// so that no difference of two overflows.
fn stamp(v: i64) -> R<Timestamp> {
    const LIMIT: i64 = 320_000_000_000_000_000; // about 10,000 years in microseconds
    if v.unsigned_abs() > LIMIT as u64 {
        return Err(CheckpointError::Damaged("instant out of range"));
    }
    Ok(Timestamp(v))
}

/// Encodes accounts: strings as indexes into the chunk's table, instants as differences
/// from the one written before.
#[derive(Default)]
struct Writer {
    index: FxHashMap<Arc<str>, u64>,
    list: Vec<Arc<str>>,
    table_bytes: usize,
    prev: i64,
    /// Whether each account's display part is written ([`encode_full`]).
    full: bool,
}

impl Writer {
    fn s(&mut self, out: &mut Vec<u8>, s: &str) {
        let i = match self.index.get(s) {
            Some(i) => *i,
            None => {
                let i = self.list.len() as u64;
                let a: Arc<str> = Arc::from(s);
                self.table_bytes += s.len() + 2;
                self.index.insert(a.clone(), i);
                self.list.push(a);
                i
            }
        };
        put(out, i);
    }

    fn os(&mut self, out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                self.s(out, s);
            }
        }
    }

    fn ts(&mut self, out: &mut Vec<u8>, t: Timestamp) {
        put_i(out, t.0.wrapping_sub(self.prev));
        self.prev = t.0;
    }

    fn ots(&mut self, out: &mut Vec<u8>, t: Option<Timestamp>) {
        match t {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                self.ts(out, t);
            }
        }
    }

    fn oi(out: &mut Vec<u8>, v: Option<i64>) {
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                put_i(out, v);
            }
        }
    }

    /// A small enum's index, plus one (0: none).
    fn oe(out: &mut Vec<u8>, v: Option<u8>) {
        out.push(v.map_or(0, |v| v + 1));
    }

    fn attr(&mut self, out: &mut Vec<u8>, v: &AttrValue) {
        match v {
            AttrValue::Str(s) => {
                out.push(0);
                self.s(out, s);
            }
            AttrValue::Num(s) => {
                out.push(1);
                self.s(out, s);
            }
            AttrValue::Bool(b) => out.push(2 + u8::from(*b)),
        }
    }

    fn account(&mut self, out: &mut Vec<u8>, a: &AccountLedger) {
        self.prev = 0;
        self.s(out, &a.id);
        put(out, a.attributes.len() as u64);
        for (t, k, v) in &a.attributes {
            self.ts(out, *t);
            self.s(out, k);
            self.attr(out, v);
        }
        put(out, a.steps.len() as u64);
        for s in &a.steps {
            self.ts(out, s.ts);
            put_i(out, s.mrr);
            put_i(out, s.arr);
            put_i(out, s.service_mrr);
            put(out, s.seats);
            out.push(u8::from(s.customer));
            self.os(out, s.plan.as_deref());
            put_i(out, s.committed_mrr);
            put_i(out, s.committed_arr);
            put(out, s.fx.len() as u64);
            for (c, native, base) in s.fx.iter() {
                out.extend_from_slice(c.as_str().as_bytes());
                put_i(out, *native);
                put_i(out, *base);
            }
        }
        put(out, a.movements.len() as u64);
        for m in &a.movements {
            self.ts(out, m.ts);
            out.push(movement_kind_index(m.kind));
            put_i(out, m.amount);
            put_i(out, m.upsell);
            put_i(out, m.cross_sell);
            out.push(u8::from(m.involuntary));
            self.os(out, m.cancel_reason.as_deref());
        }
        put(out, a.renewals.len() as u64);
        for r in &a.renewals {
            self.ts(out, r.opened);
            self.ts(out, r.due);
            put_i(out, r.arr_due);
            match r.outcome {
                RenewalOutcome::Open => out.push(0),
                RenewalOutcome::Won { at, arr } => {
                    out.push(1);
                    self.ts(out, at);
                    put_i(out, arr);
                }
                RenewalOutcome::Lost { at } => {
                    out.push(2);
                    self.ts(out, at);
                }
            }
        }
        put(out, a.cancellations_scheduled.len() as u64);
        for (given, at) in &a.cancellations_scheduled {
            self.ts(out, *given);
            self.ts(out, *at);
        }
        self.ots(out, a.first_subscription);
        put(out, a.rewrites.len() as u64);
        for (from, to) in &a.rewrites {
            self.ts(out, *from);
            self.ts(out, *to);
        }
        // An instant past what can be read back (a huge `past_due_churn_days`, say) never
        // comes: none.
        self.ots(out, a.changes_at.filter(|t| stamp(t.0).is_ok()));
        // Invoices and the CS side last, behind their length: a reader of the revenue alone
        // skips them. Their instants follow on from `changes_at`'s or the last one before.
        let mut side = Vec::with_capacity(256);
        put(&mut side, a.invoices.len() as u64);
        for i in &a.invoices {
            self.ts(&mut side, i.ts);
            put_i(&mut side, i.amount);
            side.push(i.status.index());
        }
        self.cs(&mut side, &a.cs);
        put(out, side.len() as u64);
        out.extend_from_slice(&side);
        // What only the pages show, last and behind its length (empty unless full): the
        // KPIs' readers skip it.
        side.clear();
        if self.full {
            self.display(&mut side, a);
        }
        put(out, side.len() as u64);
        out.extend_from_slice(&side);
    }

    /// The parts [`kept`] drops, in the order of the lists they complete. Its instants
    /// start from zero, so that a reader that skipped the CS side reads them alike.
    fn display(&mut self, out: &mut Vec<u8>, a: &AccountLedger) {
        self.prev = 0;
        self.os(out, a.name.as_deref());
        for m in &a.movements {
            put(out, m.sources.len() as u64);
            for s in &m.sources {
                match s {
                    SourceRef::Message(m) => {
                        out.push(0);
                        self.s(out, m);
                    }
                    SourceRef::Log(i) => {
                        out.push(1);
                        put(out, *i);
                    }
                }
            }
        }
        for r in &a.renewals {
            self.s(out, &r.subscription_id);
        }
        for i in &a.invoices {
            self.s(out, &i.invoice_id);
        }
        let cs = &a.cs;
        for c in &cs.contact_changes {
            self.os(out, c.email.as_deref());
            self.os(out, c.name.as_deref());
        }
        for (_, _, s) in &cs.surveys_sent {
            self.os(out, s.as_deref());
        }
        for r in &cs.responses {
            self.os(out, r.comment.as_deref());
        }
        for t in &cs.tickets {
            self.s(out, &t.ticket_id);
        }
        for (_, kind, _) in &cs.touchpoints {
            self.s(out, kind);
        }
        for o in &cs.objectives {
            self.s(out, &o.objective_id);
        }
        for (_, id, _) in &cs.change_requests {
            self.s(out, id);
        }
        put(out, cs.alerts.len() as u64);
        for al in &cs.alerts {
            self.ts(out, al.ts);
            self.s(out, &al.alert_id);
            self.s(out, &al.rule);
            out.push(al.severity.index());
            self.os(out, al.message.as_deref());
        }
        put(out, cs.forecast_calls.len() as u64);
        for f in &cs.forecast_calls {
            self.ts(out, f.ts);
            self.os(out, f.subscription_id.as_deref());
            out.push(f.category.index());
            Self::oi(out, f.amount);
            self.os(out, f.reason.as_deref());
            self.os(out, f.author.as_deref());
        }
        for t in &cs.tasks {
            self.os(out, t.alert_id.as_deref());
            self.os(out, t.title.as_deref());
            self.os(out, t.owner.as_deref());
            put(out, t.notes.len() as u64);
            for (ts, author, note) in &t.notes {
                self.ts(out, *ts);
                self.os(out, author.as_deref());
                self.s(out, note);
            }
            put(out, u64::from(t.alerts));
        }
    }

    fn cs(&mut self, out: &mut Vec<u8>, cs: &CsLedger) {
        put(out, cs.contact_changes.len() as u64);
        for c in &cs.contact_changes {
            self.ts(out, c.ts);
            self.s(out, &c.contact_id);
            Self::oe(out, c.role.map(ContactRole::index));
            Self::oe(out, c.status.map(ContactStatus::index));
        }
        put(out, cs.departures.len() as u64);
        for d in &cs.departures {
            self.ts(out, d.ts);
            self.s(out, &d.contact_id);
            Self::oe(out, d.role.map(ContactRole::index));
            self.os(out, d.moved_to.as_deref());
        }
        put(out, cs.surveys_sent.len() as u64);
        for (t, kind, _) in &cs.surveys_sent {
            self.ts(out, *t);
            out.push(kind.index());
        }
        put(out, cs.responses.len() as u64);
        for r in &cs.responses {
            self.ts(out, r.ts);
            out.push(r.survey.index());
            self.os(out, r.contact_id.as_deref());
            match r.score {
                SurveyScore::Nps(x) => out.extend_from_slice(&[0, x]),
                SurveyScore::Csat(x) => out.extend_from_slice(&[1, x]),
                SurveyScore::Success(s) => out.extend_from_slice(&[2, s.index()]),
            }
        }
        put(out, cs.tickets.len() as u64);
        for t in &cs.tickets {
            self.ts(out, t.opened);
            self.ots(out, t.closed);
            put(out, u64::from(t.reopened));
            Self::oe(out, t.category.map(TicketCategory::index));
            Self::oe(out, t.severity.map(Severity::index));
            Self::oi(out, t.cost);
            Self::oi(out, t.csat.map(i64::from));
            self.ots(out, t.category_first.map(|x| x.0));
            Self::oe(out, t.category_first.map(|x| x.1.index()));
            self.ots(out, t.severity_first.map(|x| x.0));
            Self::oe(out, t.severity_first.map(|x| x.1.index()));
        }
        put(out, cs.touchpoints.len() as u64);
        for (t, _, sentiment) in &cs.touchpoints {
            self.ts(out, *t);
            Self::oe(out, sentiment.map(Sentiment::index));
        }
        put(out, cs.milestones.len() as u64);
        for (t, name) in &cs.milestones {
            self.ts(out, *t);
            self.s(out, name);
        }
        put(out, cs.objectives.len() as u64);
        for o in &cs.objectives {
            self.ts(out, o.created);
            out.push(o.status.index());
            self.ts(out, o.status_at);
            Self::oi(out, o.value);
        }
        put(out, cs.assessments.len() as u64);
        for (t, rel, imp) in &cs.assessments {
            self.ts(out, *t);
            Self::oi(out, rel.map(i64::from));
            Self::oi(out, imp.map(i64::from));
        }
        put(out, cs.change_requests.len() as u64);
        for (t, _, status) in &cs.change_requests {
            self.ts(out, *t);
            out.push(status.index());
        }
        put(out, cs.tasks.len() as u64);
        for t in &cs.tasks {
            self.s(out, &t.task_id);
            self.ts(out, t.opened);
            self.os(out, t.rule.as_deref());
            self.ots(out, t.due);
            out.push(t.status.index());
            self.ts(out, t.status_at);
            self.ots(out, t.resolved);
            self.os(out, t.root_cause.as_deref());
        }
    }
}

/// `a` as the checkpoint gives it back: without what the KPIs do not read (see the
/// module's documentation).
pub fn kept(a: &AccountLedger) -> AccountLedger {
    let mut a = a.clone();
    a.name = None;
    for m in &mut a.movements {
        m.sources = Box::default();
    }
    a.renewals.iter_mut().for_each(|r| r.subscription_id.clear());
    a.invoices.iter_mut().for_each(|i| i.invoice_id.clear());
    let cs = &mut a.cs;
    for c in &mut cs.contact_changes {
        (c.email, c.name) = (None, None);
    }
    cs.surveys_sent.iter_mut().for_each(|s| s.2 = None);
    cs.responses.iter_mut().for_each(|r| r.comment = None);
    cs.tickets.iter_mut().for_each(|t| t.ticket_id.clear());
    cs.touchpoints.iter_mut().for_each(|t| t.1.clear());
    cs.objectives.iter_mut().for_each(|o| o.objective_id.clear());
    cs.change_requests.iter_mut().for_each(|c| c.1.clear());
    cs.alerts.clear();
    cs.forecast_calls.clear();
    for t in &mut cs.tasks {
        (t.alert_id, t.title, t.owner) = (None, None, None);
        t.notes.clear();
        t.alerts = 0;
    }
    a
}

fn movement_kind_index(k: MovementKind) -> u8 {
    match k {
        MovementKind::New => 0,
        MovementKind::Expansion => 1,
        MovementKind::Contraction => 2,
        MovementKind::Churn => 3,
        MovementKind::Reactivation => 4,
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    table: &'a [Arc<str>],
    prev: i64,
    /// The parts decoded (the others left empty).
    want: Want,
}

/// The parts of each account a reader of the checkpoint decodes; those it leaves out come
/// empty (a report that reads only the revenue side does not pay for the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// The invoices and the CS side.
    pub cs: bool,
    /// The attributes (read by cuts by attribute).
    pub attributes: bool,
    /// What only the pages show (a full checkpoint's; with the CS side).
    pub display: bool,
}

impl Want {
    /// Every part the KPIs read.
    pub const ALL: Want = Want { cs: true, attributes: true, display: false };
    /// Every part of a full checkpoint's accounts.
    pub const FULL: Want = Want { cs: true, attributes: true, display: true };
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], table: &'a [Arc<str>]) -> Reader<'a> {
        Reader { b, at: 0, table, prev: 0, want: Want::ALL }
    }

    fn byte(&mut self) -> R<u8> {
        let v = *self.b.get(self.at).ok_or(CheckpointError::Damaged("truncated"))?;
        self.at += 1;
        Ok(v)
    }

    fn u(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CheckpointError::Damaged("varint"))
    }

    fn i(&mut self) -> R<i64> {
        let v = self.u()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn bool(&mut self) -> R<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CheckpointError::Damaged("flag")),
        }
    }

    /// A count or length, which cannot exceed the bytes left (every item takes a byte).
    fn len(&mut self) -> R<usize> {
        let v = self.u()?;
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= self.b.len().saturating_sub(self.at))
            .ok_or(CheckpointError::Damaged("length"))
    }

    fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or(CheckpointError::Damaged("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// A string written in place (tables, the header).
    fn raw_str(&mut self) -> R<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| CheckpointError::Damaged("UTF-8"))
    }

    /// A string of the chunk's table, borrowed (an owned copy costs an allocation, a shared
    /// one an atomic count).
    fn entry(&mut self) -> R<&'a Arc<str>> {
        let i = self.u()?;
        let table = self.table;
        usize::try_from(i)
            .ok()
            .and_then(|i| table.get(i))
            .ok_or(CheckpointError::Damaged("string index"))
    }

    fn arc(&mut self) -> R<Arc<str>> {
        Ok(self.entry()?.clone())
    }

    fn s(&mut self) -> R<String> {
        Ok(self.entry()?.to_string())
    }

    fn os(&mut self) -> R<Option<String>> {
        Ok(if self.bool()? { Some(self.s()?) } else { None })
    }

    fn oarc(&mut self) -> R<Option<Arc<str>>> {
        Ok(if self.bool()? { Some(self.arc()?) } else { None })
    }

    fn ts(&mut self) -> R<Timestamp> {
        let t = stamp(self.prev.wrapping_add(self.i()?))?;
        self.prev = t.0;
        Ok(t)
    }

    fn ots(&mut self) -> R<Option<Timestamp>> {
        Ok(if self.bool()? { Some(self.ts()?) } else { None })
    }

    fn oi(&mut self) -> R<Option<i64>> {
        Ok(if self.bool()? { Some(self.i()?) } else { None })
    }

    fn ou8(&mut self) -> R<Option<u8>> {
        match self.oi()? {
            None => Ok(None),
            Some(v) => u8::try_from(v).map(Some).map_err(|_| CheckpointError::Damaged("byte")),
        }
    }

    fn e<T>(&mut self, from: impl Fn(u8) -> Option<T>) -> R<T> {
        from(self.byte()?).ok_or(CheckpointError::Damaged("enum"))
    }

    fn oe<T>(&mut self, from: impl Fn(u8) -> Option<T>) -> R<Option<T>> {
        match self.byte()? {
            0 => Ok(None),
            v => from(v - 1).map(Some).ok_or(CheckpointError::Damaged("enum")),
        }
    }

    /// As [`list`](Self::list), into `v`: cleared, its capacity kept.
    fn list_into<T>(&mut self, v: &mut Vec<T>, mut item: impl FnMut(&mut Self) -> R<T>) -> R<()> {
        v.clear();
        let n = self.len()?;
        v.reserve(n);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(())
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let n = self.len()?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }

    fn attr(&mut self) -> R<AttrValue> {
        Ok(match self.byte()? {
            0 => AttrValue::Str(self.s()?),
            1 => AttrValue::Num(self.s()?),
            2 => AttrValue::Bool(false),
            3 => AttrValue::Bool(true),
            _ => return Err(CheckpointError::Damaged("attribute")),
        })
    }

    /// One account, decoded into `a`: every field written (a reused `a` keeps nothing of
    /// the account before but its vectors' capacity).
    fn account_into(&mut self, a: &mut AccountLedger) -> R<()> {
        let AccountLedger {
            id,
            name,
            attributes,
            steps,
            movements,
            renewals,
            invoices,
            cancellations_scheduled,
            first_subscription,
            cs,
            rewrites,
            changes_at,
        } = a;
        self.prev = 0;
        id.clear();
        id.push_str(self.entry()?);
        *name = None;
        if self.want.attributes {
            self.list_into(attributes, |r| Ok((r.ts()?, r.s()?, r.attr()?)))?;
        } else {
            attributes.clear();
            // Walked, not kept: the times are deltas from one to the next.
            for _ in 0..self.len()? {
                self.ts()?;
                self.entry()?;
                match self.byte()? {
                    0 | 1 => {
                        self.entry()?;
                    }
                    2 | 3 => {}
                    _ => return Err(CheckpointError::Damaged("attribute")),
                }
            }
        }
        self.list_into(steps, |r| {
            Ok(Step {
                ts: r.ts()?,
                mrr: r.i()?,
                arr: r.i()?,
                service_mrr: r.i()?,
                seats: r.u()?,
                customer: r.bool()?,
                plan: r.oarc()?,
                committed_mrr: r.i()?,
                committed_arr: r.i()?,
                fx: r
                    .list(|r| {
                        let c = std::str::from_utf8(r.bytes(3)?).ok().and_then(Currency::parse);
                        let c = c.ok_or(CheckpointError::Damaged("currency"))?;
                        Ok((c, r.i()?, r.i()?))
                    })?
                    .into_boxed_slice(),
            })
        })?;
        self.list_into(movements, |r| {
            Ok(Movement {
                ts: r.ts()?,
                kind: r.e(|k| {
                    [
                        MovementKind::New,
                        MovementKind::Expansion,
                        MovementKind::Contraction,
                        MovementKind::Churn,
                        MovementKind::Reactivation,
                    ]
                    .get(k as usize)
                    .copied()
                })?,
                amount: r.i()?,
                upsell: r.i()?,
                cross_sell: r.i()?,
                involuntary: r.bool()?,
                cancel_reason: r.oarc()?,
                sources: Box::default(),
            })
        })?;
        self.list_into(renewals, |r| {
            Ok(Renewal {
                subscription_id: String::new(),
                opened: r.ts()?,
                due: r.ts()?,
                arr_due: r.i()?,
                outcome: match r.byte()? {
                    0 => RenewalOutcome::Open,
                    1 => RenewalOutcome::Won { at: r.ts()?, arr: r.i()? },
                    2 => RenewalOutcome::Lost { at: r.ts()? },
                    _ => return Err(CheckpointError::Damaged("outcome")),
                },
            })
        })?;
        self.list_into(cancellations_scheduled, |r| Ok((r.ts()?, r.ts()?)))?;
        *first_subscription = self.ots()?;
        self.list_into(rewrites, |r| Ok((r.ts()?, r.ts()?)))?;
        *changes_at = self.ots()?;
        let side = self.len()?;
        if self.want.cs {
            let end = self.at + side;
            self.list_into(invoices, |r| {
                Ok(Invoice {
                    ts: r.ts()?,
                    invoice_id: String::new(),
                    amount: r.i()?,
                    status: r.e(InvoiceStatus::from_index)?,
                })
            })?;
            self.cs_into(cs)?;
            if self.at != end {
                return Err(CheckpointError::Damaged("CS length"));
            }
        } else {
            self.bytes(side)?;
            invoices.clear();
            *cs = CsLedger::default();
        }
        let shown = self.len()?;
        if self.want.display && self.want.cs {
            let end = self.at + shown;
            self.prev = 0;
            *name = self.os()?;
            for m in movements.iter_mut() {
                m.sources = self
                    .list(|r| match r.byte()? {
                        0 => Ok(SourceRef::Message(Box::from(&**r.entry()?))),
                        1 => Ok(SourceRef::Log(r.u()?)),
                        _ => Err(CheckpointError::Damaged("source")),
                    })?
                    .into_boxed_slice();
            }
            for r in renewals.iter_mut() {
                r.subscription_id = self.s()?;
            }
            for i in invoices.iter_mut() {
                i.invoice_id = self.s()?;
            }
            self.display_into(cs)?;
            if self.at != end {
                return Err(CheckpointError::Damaged("display length"));
            }
        } else {
            self.bytes(shown)?;
        }
        Ok(())
    }

    /// The CS side's display part (see [`Writer::display`]), into the lists `cs_into` read.
    fn display_into(&mut self, cs: &mut CsLedger) -> R<()> {
        for c in cs.contact_changes.iter_mut() {
            c.email = self.os()?;
            c.name = self.os()?;
        }
        for s in cs.surveys_sent.iter_mut() {
            s.2 = self.os()?;
        }
        for r in cs.responses.iter_mut() {
            r.comment = self.os()?;
        }
        for t in cs.tickets.iter_mut() {
            t.ticket_id = self.s()?;
        }
        for t in cs.touchpoints.iter_mut() {
            t.1 = self.s()?;
        }
        for o in cs.objectives.iter_mut() {
            o.objective_id = self.s()?;
        }
        for c in cs.change_requests.iter_mut() {
            c.1 = self.s()?;
        }
        self.list_into(&mut cs.alerts, |r| {
            Ok(Alert {
                ts: r.ts()?,
                alert_id: r.s()?,
                rule: r.s()?,
                severity: r.e(Severity::from_index)?,
                message: r.os()?,
            })
        })?;
        self.list_into(&mut cs.forecast_calls, |r| {
            Ok(ForecastCall {
                ts: r.ts()?,
                subscription_id: r.os()?,
                category: r.e(ForecastCategory::from_index)?,
                amount: r.oi()?,
                reason: r.os()?,
                author: r.os()?,
            })
        })?;
        for t in cs.tasks.iter_mut() {
            t.alert_id = self.os()?;
            t.title = self.os()?;
            t.owner = self.os()?;
            t.notes = self.list(|r| Ok((r.ts()?, r.os()?, r.s()?)))?;
            t.alerts = u32::try_from(self.u()?).map_err(|_| CheckpointError::Damaged("alerts"))?;
        }
        Ok(())
    }

    /// The CS side, decoded into `cs` (every list written; those the checkpoint does not
    /// keep left empty).
    fn cs_into(&mut self, cs: &mut CsLedger) -> R<()> {
        let CsLedger {
            contact_changes,
            departures,
            surveys_sent,
            responses,
            tickets,
            touchpoints,
            milestones,
            objectives,
            assessments,
            change_requests,
            alerts,
            tasks,
            forecast_calls,
        } = cs;
        self.list_into(contact_changes, |r| {
            Ok(ContactChange {
                ts: r.ts()?,
                contact_id: r.s()?,
                role: r.oe(ContactRole::from_index)?,
                status: r.oe(ContactStatus::from_index)?,
                email: None,
                name: None,
            })
        })?;
        self.list_into(departures, |r| {
            Ok(Departure {
                ts: r.ts()?,
                contact_id: r.s()?,
                role: r.oe(ContactRole::from_index)?,
                moved_to: r.os()?,
            })
        })?;
        self.list_into(surveys_sent, |r| Ok((r.ts()?, r.e(SurveyKind::from_index)?, None)))?;
        self.list_into(responses, |r| {
            Ok(Response {
                ts: r.ts()?,
                survey: r.e(SurveyKind::from_index)?,
                contact_id: r.os()?,
                score: match r.byte()? {
                    0 => SurveyScore::Nps(r.byte()?),
                    1 => SurveyScore::Csat(r.byte()?),
                    2 => SurveyScore::Success(r.e(Sentiment::from_index)?),
                    _ => return Err(CheckpointError::Damaged("score")),
                },
                comment: None,
            })
        })?;
        self.list_into(tickets, |r| {
            let opened = r.ts()?;
            let closed = r.ots()?;
            let reopened =
                u32::try_from(r.u()?).map_err(|_| CheckpointError::Damaged("reopened"))?;
            let category = r.oe(TicketCategory::from_index)?;
            let severity = r.oe(Severity::from_index)?;
            let cost = r.oi()?;
            let csat = r.ou8()?;
            let cat_at = r.ots()?;
            let cat = r.oe(TicketCategory::from_index)?;
            let sev_at = r.ots()?;
            let sev = r.oe(Severity::from_index)?;
            Ok(Ticket {
                ticket_id: String::new(),
                opened,
                closed,
                reopened,
                category,
                severity,
                cost,
                csat,
                category_first: cat_at.zip(cat),
                severity_first: sev_at.zip(sev),
            })
        })?;
        self.list_into(touchpoints, |r| {
            Ok((r.ts()?, String::new(), r.oe(Sentiment::from_index)?))
        })?;
        self.list_into(milestones, |r| Ok((r.ts()?, r.s()?)))?;
        self.list_into(objectives, |r| {
            Ok(Objective {
                objective_id: String::new(),
                created: r.ts()?,
                status: r.e(ObjectiveStatus::from_index)?,
                status_at: r.ts()?,
                value: r.oi()?,
            })
        })?;
        self.list_into(assessments, |r| Ok((r.ts()?, r.ou8()?, r.ou8()?)))?;
        self.list_into(change_requests, |r| {
            Ok((r.ts()?, String::new(), r.e(RequestStatus::from_index)?))
        })?;
        self.list_into(tasks, |r| {
            Ok(Task {
                task_id: r.s()?,
                opened: r.ts()?,
                rule: r.os()?,
                alert_id: None,
                title: None,
                owner: None,
                due: r.ots()?,
                status: r.e(TaskStatus::from_index)?,
                status_at: r.ts()?,
                resolved: r.ots()?,
                root_cause: r.os()?,
                notes: Vec::new(),
                alerts: 0,
            })
        })?;
        alerts.clear();
        forecast_calls.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, mrr: i64, changes_at: Option<i64>) -> AccountLedger {
        let step = |ts: i64| Step {
            ts: Timestamp(ts),
            mrr,
            arr: mrr * 12,
            service_mrr: 0,
            seats: 1,
            customer: mrr > 0,
            plan: Some(Arc::from("pro")),
            committed_mrr: mrr,
            committed_arr: mrr * 12,
            fx: Box::default(),
        };
        AccountLedger {
            id: id.to_string(),
            // Dated between the steps: a reader that skips them must keep the times' deltas.
            attributes: vec![
                (Timestamp(1_500), "segment".into(), AttrValue::Str(format!("s-{id}"))),
                (Timestamp(1_700), "trial".into(), AttrValue::Bool(true)),
            ],
            steps: vec![step(1_000), step(2_000)],
            changes_at: changes_at.map(Timestamp),
            ..AccountLedger::default()
        }
    }

    /// Bringing a checkpoint of several chunks forward puts each replacement in its place
    /// and each new account in id order (before the first chunk, between chunks, after the
    /// last), whole chunks replaced included; the result reads as the merged list encoded.
    #[test]
    fn brought_forward_reads_as_the_merged_accounts() {
        let ids = |r: std::ops::Range<usize>| r.map(|i| format!("acc-{:05}", i * 2 + 1));
        let old: Vec<AccountLedger> = ids(0..5000)
            .enumerate()
            .map(|(i, id)| account(&id, 100, Some(i as i64 + 10)))
            .collect();
        let bytes = encode(b"k", b"p", Timestamp(5), &old, &[Diagnostic("old".into())]).to_bytes();
        let c = LedgerCheckpoint::open(bytes, b"k").unwrap();
        assert_eq!((c.len(), c.chunks.len()), (5000, 3));
        assert_eq!(c.changing_by(Timestamp(12)).unwrap(), ["acc-00001", "acc-00003", "acc-00005"]);
        // Replaced: the first, one in each chunk, all of the second chunk's first 2,048; new:
        // before all, between (even ids), after all.
        let mut replace: Vec<AccountLedger> = Vec::new();
        replace.push(account("acc", 7, None));
        replace.extend(ids(0..1).map(|id| account(&id, 1, None)));
        replace.extend(["acc-00000", "acc-04096", "acc-05000"].map(|id| account(id, 2, None)));
        replace.extend(ids(2048..4096).map(|id| account(&id, 3, None)));
        replace.extend(ids(4999..5000).map(|id| account(&id, 4, None)));
        replace.push(account("zzz", 5, Some(99)));
        replace.sort_by(|a, b| a.id.cmp(&b.id));
        let bytes =
            c.forward(b"k2", b"p2", Timestamp(8), &replace, &[Diagnostic("new".into())]).unwrap();
        let bytes = bytes.to_bytes();
        let f = LedgerCheckpoint::open(bytes, b"k2").unwrap();
        let mut want: Vec<AccountLedger> = old
            .into_iter()
            .filter(|a| replace.binary_search_by(|r| r.id.cmp(&a.id)).is_err())
            .chain(replace.iter().cloned())
            .collect();
        want.sort_by(|a, b| a.id.cmp(&b.id));
        let got: Vec<AccountLedger> =
            f.map_chunks(&[], Want::ALL, |a| a.to_vec()).unwrap().concat();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert_eq!((f.len(), f.as_of(), f.position()), (want.len(), Timestamp(8), &b"p2"[..]));
        assert_eq!(f.diagnostics(), [Diagnostic("new".into()), Diagnostic("old".into())]);
        assert!(f.chunks.windows(2).all(|w| w[0].first < w[1].first));
        // Skipped accounts are left out; without the CS side, accounts come without it.
        let skip = ["acc-00000".to_string(), "zzz".to_string()];
        let n: usize = f
            .map_chunks(&skip, Want { cs: false, attributes: true, display: false }, |a| a.len())
            .unwrap()
            .iter()
            .sum();
        assert_eq!(n, want.len() - 2);
        // Without the attributes, accounts come without them, and otherwise whole.
        let no_attributes = Want { cs: true, attributes: false, display: false };
        let bare: Vec<AccountLedger> =
            f.map_chunks(&[], no_attributes, |a| a.to_vec()).unwrap().concat();
        for a in &mut want {
            a.attributes.clear();
        }
        assert_eq!(format!("{bare:?}"), format!("{want:?}"));
    }

    /// Damage to a chunk is found when it is read; to the header, when it is opened.
    #[test]
    fn damage_is_found() {
        let old: Vec<AccountLedger> =
            (0..3000).map(|i| account(&format!("a{i:05}"), 100, None)).collect();
        let bytes = encode(b"k", b"p", Timestamp(5), &old, &[]).to_bytes();
        let mut bad = bytes.clone();
        let at = bad.len() - 10;
        bad[at] ^= 1;
        let c = LedgerCheckpoint::open(bad, b"k").unwrap();
        assert_eq!(
            c.map_chunks(&[], Want::ALL, |a| a.len()).err(),
            Some(CheckpointError::Damaged("chunk CRC mismatch"))
        );
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert!(matches!(LedgerCheckpoint::open(bad, b"k"), Err(CheckpointError::Damaged(_))));
        let cut = bytes[..bytes.len() - 1].to_vec();
        assert!(matches!(LedgerCheckpoint::open(cut, b"k"), Err(CheckpointError::Damaged(_))));
        assert!(matches!(LedgerCheckpoint::open(bytes, b"x"), Err(CheckpointError::Key)));
    }

    /// A full checkpoint gives back every part of an account, each list of the display part
    /// with something in it (a field the codec forgot would differ); its reader of the KPIs'
    /// parts gets what [`kept`] keeps; a checkpoint of those parts alone refuses a reader
    /// of every part.
    #[test]
    fn a_full_checkpoint_gives_back_every_part() {
        let t = Timestamp;
        let mut a = account("acc-1", 100, Some(9_000));
        a.name = Some("Acme \u{e9}".into());
        a.movements = vec![Movement {
            ts: t(1_000),
            kind: MovementKind::New,
            amount: 100,
            upsell: 0,
            cross_sell: 0,
            involuntary: false,
            cancel_reason: None,
            sources: vec![SourceRef::Message("m-1".into()), SourceRef::Log(42)].into(),
        }];
        a.renewals = vec![Renewal {
            subscription_id: "sub-1".into(),
            opened: t(1_000),
            due: t(5_000),
            arr_due: 1_200,
            outcome: RenewalOutcome::Open,
        }];
        a.invoices = vec![Invoice {
            ts: t(1_100),
            invoice_id: "in-1".into(),
            amount: 100,
            status: InvoiceStatus::from_index(0).unwrap(),
        }];
        let cs = &mut a.cs;
        cs.contact_changes = vec![ContactChange {
            ts: t(1_200),
            contact_id: "c-1".into(),
            role: None,
            status: None,
            email: Some("ann@example.com".into()),
            name: Some("Ann".into()),
        }];
        cs.surveys_sent = vec![(t(1_300), SurveyKind::from_index(0).unwrap(), Some("s-1".into()))];
        cs.responses = vec![Response {
            ts: t(1_400),
            survey: SurveyKind::from_index(0).unwrap(),
            contact_id: Some("c-1".into()),
            score: SurveyScore::Nps(9),
            comment: Some("great".into()),
        }];
        cs.tickets = vec![Ticket::opened("t-1".into(), t(1_500))];
        cs.touchpoints = vec![(t(1_600), "qbr".into(), None)];
        cs.objectives = vec![Objective {
            objective_id: "o-1".into(),
            created: t(1_700),
            status: ObjectiveStatus::from_index(0).unwrap(),
            status_at: t(1_700),
            value: Some(5),
        }];
        cs.change_requests = vec![(t(1_800), "cr-1".into(), RequestStatus::from_index(0).unwrap())];
        cs.alerts = vec![Alert {
            ts: t(1_900),
            alert_id: "al-1".into(),
            rule: "churn_risk".into(),
            severity: Severity::from_index(1).unwrap(),
            message: Some("at risk".into()),
        }];
        cs.forecast_calls = vec![ForecastCall {
            ts: t(2_100),
            subscription_id: Some("sub-1".into()),
            category: ForecastCategory::AtRisk,
            amount: Some(600),
            reason: Some("budget".into()),
            author: Some("bea".into()),
        }];
        let mut task = Task::new("task-1", t(1_950));
        (task.alert_id, task.title, task.owner) =
            (Some("al-1".into()), Some("Call them".into()), Some("bea".into()));
        task.notes = vec![(t(1_990), Some("bea".into()), "left a message".into())];
        task.alerts = 2;
        cs.tasks = vec![task];
        let accounts = vec![account("acc-0", 5, None), a, account("acc-2", 7, None)];
        let full = encode_full(b"k", b"p", t(5), &accounts, &[]).to_bytes();
        let c = LedgerCheckpoint::open(full, b"k").unwrap();
        assert!(c.full());
        let back: Vec<AccountLedger> =
            c.map_chunks(&[], Want::FULL, |a| a.to_vec()).unwrap().concat();
        assert_eq!(format!("{back:#?}"), format!("{accounts:#?}"));
        let owned = c.accounts(Want::FULL).unwrap();
        assert_eq!(format!("{owned:#?}"), format!("{accounts:#?}"));
        // Streamed, the same bytes: the header, then the chunks as handed out.
        let mut many: Vec<AccountLedger> =
            (0..70_000).map(|i| account(&format!("b{i:06}"), i, None)).collect();
        many.extend(accounts.iter().cloned());
        let whole = encode_full(b"k", b"p", t(5), &many, &[Diagnostic("d".into())]).to_bytes();
        let mut body = Vec::new();
        let head = encode_full_to(b"k", b"p", t(5), &many, &[Diagnostic("d".into())], &mut |b| {
            body.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert!(whole == [head, body].concat(), "streamed differs from whole");
        let failing = encode_full_to(b"k", b"p", t(5), &many, &[], &mut |_| {
            Err(std::io::ErrorKind::StorageFull.into())
        });
        assert_eq!(failing.unwrap_err().kind(), std::io::ErrorKind::StorageFull);
        let kept_all: Vec<AccountLedger> = accounts.iter().map(kept).collect();
        assert_ne!(format!("{kept_all:?}"), format!("{accounts:?}"), "the display part is tested");
        let reduced: Vec<AccountLedger> =
            c.map_chunks(&[], Want::ALL, |a| a.to_vec()).unwrap().concat();
        assert_eq!(format!("{reduced:#?}"), format!("{kept_all:#?}"));
        // Reused decoding (every field written, the display part's included).
        let folded: Vec<AccountLedger> = c
            .fold_chunks(&[], Want::FULL, Vec::new, |v: &mut Vec<AccountLedger>, a| {
                v.push(a.clone())
            })
            .unwrap()
            .concat();
        assert_eq!(format!("{folded:#?}"), format!("{accounts:#?}"));
        let part = encode(b"k", b"p", t(5), &accounts, &[]).to_bytes();
        let c = LedgerCheckpoint::open(part, b"k").unwrap();
        assert!(!c.full());
        assert_eq!(
            c.map_chunks(&[], Want::FULL, |a| a.len()).err(),
            Some(CheckpointError::NotFull)
        );
    }
}
