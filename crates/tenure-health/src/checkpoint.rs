//! The health state checkpoint: every account's history reduced to what the point-in-time
//! features read, with its monthly usage, in a compact binary form (bytes in, bytes out).
//!
//! `tenure health` and `tenure risk` read a checkpoint instead of folding the whole log:
//! the ledger is folded once at an instant `valid_until` after the requested `as_of`, and
//! each account is reduced to the fields [`crate::features::snapshot`] reads (steps' MRR,
//! seats, customer flag and plan; movements' kinds; failed invoices; scheduled
//! cancellations; renewals' dates; the segment attribute; tickets' first category and
//! severity; survey answers; touchpoints' sentiment; contacts' roles, departures and moves
//! to another account; assessments; change requests' dates) and written here.
//!
//! Features at any `t <= valid_until` then equal those of a fold at `t` (`tests/leakage.rs`
//! checks every feature, bit for bit), with two provisions in [`Checkpoint::map_at`]: the
//! attribute values set after `t` are dropped (a segment falls back to its earliest value,
//! which a fold at `t` does not know yet), and an account whose fold rewrote its past
//! around `t` (`AccountLedger::rewrites`: a change group across `t`, a due date amended
//! later) is refused with [`CheckpointError::Rewritten`], for the caller to fold at `t`.
//!
//! What is dropped is gone: a decoded account is not for display (contacts are numbered;
//! texts, amounts and the account a contact moved to are empty). The caller keys a
//! checkpoint by what it was folded from (the log's lane fingerprints, the settings); a
//! checkpoint whose key, format, length or CRCs differ is refused, never trusted.

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::sync::Arc;
use tenure_core::codec::{put_i64 as put_i, put_str, put_u64 as put};
use tenure_core::event::{
    AttrValue, ContactRole, ContactStatus, InvoiceStatus, RequestStatus, Sentiment, Severity,
    SurveyKind, SurveyScore, TicketCategory,
};
use tenure_core::time::Timestamp;
use tenure_ledger::cs::{ContactChange, Departure, Response, Ticket};
use tenure_ledger::{
    AccountLedger, Invoice, Ledger, Movement, MovementKind, Renewal, RenewalOutcome, Step,
};

use crate::{UsageByAccount, UsageMonth};

/// The monthly usage of each account in a checkpoint brought forward
/// ([`Checkpoint::forward`]).
#[derive(Clone, Copy, Debug)]
pub enum UsageNow<'a> {
    /// Each account keeps its own; one that joins has none.
    Kept,
    /// Every account's usage now (an account the map does not name has none).
    All(&'a UsageByAccount),
    /// Each account's months before `month` kept, and from `month` on those `usage` gives
    /// (none for an account it does not name): exact when no usage of an earlier month
    /// arrived. One that joins has only the later months.
    Since { month: Timestamp, usage: &'a UsageByAccount },
}

impl UsageNow<'_> {
    /// Account `id`'s months, given those it had.
    fn of<'b>(&'b self, id: &str, old: &'b [UsageMonth]) -> std::borrow::Cow<'b, [UsageMonth]> {
        use std::borrow::Cow;
        let now = |m: &'b UsageByAccount| m.get(id).map_or(&[][..], |v| v.as_slice());
        match *self {
            UsageNow::Kept => Cow::Borrowed(old),
            UsageNow::All(m) => Cow::Borrowed(now(m)),
            UsageNow::Since { month, usage } => {
                let mut v: Vec<UsageMonth> =
                    old.iter().filter(|u| u.month < month).cloned().collect();
                v.extend(now(usage).iter().filter(|u| u.month >= month).cloned());
                Cow::Owned(v)
            }
        }
    }
}

const MAGIC: &[u8; 8] = b"TNRSTATE";
/// The layout of this file; a change of layout or of what is kept changes it.
pub const FORMAT: u32 = 5;
/// Accounts per chunk: the unit of parallel encoding, reading and decoding.
const CHUNK: usize = 4096;
/// Magic, format, the header's CRC32 and its length.
const PREFIX: usize = 24;

/// Why a checkpoint cannot be used (the caller folds the log again).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not a state checkpoint (bad magic)")]
    Magic,
    #[error("checkpoint format {0}, this build reads {FORMAT}")]
    Format(u32),
    #[error("checkpoint made from other data or settings (key differs)")]
    Key,
    #[error("checkpoint damaged: {0}")]
    Damaged(&'static str),
    #[error("checkpoint unreadable: {0}")]
    Io(String),
    /// The fold behind the checkpoint rewrote this account's past before the instant asked
    /// for (`AccountLedger::rewrites`): only a fold at that instant answers for it.
    #[error("account {0} has a change spanning the instant asked for")]
    Rewritten(String),
}

/// Where a checkpoint's bytes are read from: memory, or a file the caller opened (read a
/// chunk at a time by the threads that decode it, so a large checkpoint is never held
/// whole).
pub trait Source: Sync {
    /// Bytes in all.
    fn size(&self) -> u64;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl Source for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let eof = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        buf.copy_from_slice(self.get(start..end).ok_or_else(eof)?);
        Ok(())
    }
}

/// A checkpoint whose header was read and checked; its accounts are read, checked (a CRC
/// per chunk) and decoded on demand.
pub struct Checkpoint<S> {
    src: S,
    position: Vec<u8>,
    valid_until: Timestamp,
    segment_key: String,
    accounts: usize,
    strings: Vec<AttrValue>,
    /// Each chunk's offset, length and CRC32.
    chunks: Vec<(u64, usize, u32)>,
}

/// Plans and segment values are few: one table for the file, indexes in the records.
#[derive(Default)]
struct Strings {
    list: Vec<AttrValue>,
    index: FxHashMap<AttrValue, u64>,
}

impl Strings {
    fn add(&mut self, a: &AccountLedger, segment_key: &str) {
        let plans =
            a.steps.iter().filter_map(|s| s.plan.as_deref().map(|p| AttrValue::Str(p.into())));
        let segs =
            a.attributes.iter().filter(|(_, k, _)| k == segment_key).map(|(_, _, v)| v.clone());
        for v in plans.chain(segs) {
            if !self.index.contains_key(&v) {
                self.index.insert(v.clone(), self.list.len() as u64);
                self.list.push(v);
            }
        }
    }
}

/// Encodes `ledger`'s accounts (folded at `valid_until`) and their monthly usage. `key`
/// must match for [`Checkpoint::open`] to read it; `position` is the caller's note of where
/// the log stood (read back by [`Checkpoint::position`], for bringing it forward).
pub fn encode(
    key: &[u8],
    position: &[u8],
    ledger: &Ledger,
    usage: &UsageByAccount,
    segment_key: &str,
    valid_until: Timestamp,
) -> Vec<u8> {
    let mut strings = Strings::default();
    for a in &ledger.accounts {
        strings.add(a, segment_key);
    }
    let bodies: Vec<Vec<u8>> = ledger
        .accounts
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut out = Vec::with_capacity(chunk.len() * 256);
            for a in chunk {
                let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
                account(&mut out, a, u, segment_key, &strings.index);
            }
            out
        })
        .collect();
    let head = Head { key, position, valid_until, segment_key, accounts: ledger.accounts.len() };
    assemble(&head, &strings.list, bodies)
}

/// What a checkpoint's header holds besides its tables.
struct Head<'a> {
    key: &'a [u8],
    position: &'a [u8],
    valid_until: Timestamp,
    segment_key: &'a str,
    accounts: usize,
}

/// The file: prefix, header (with the chunks' lengths and CRCs), chunks.
fn assemble(head: &Head<'_>, strings: &[AttrValue], bodies: Vec<Vec<u8>>) -> Vec<u8> {
    let mut h = Vec::new();
    put(&mut h, head.key.len() as u64);
    h.extend_from_slice(head.key);
    put(&mut h, head.position.len() as u64);
    h.extend_from_slice(head.position);
    put_i(&mut h, head.valid_until.0);
    put_str(&mut h, head.segment_key);
    put(&mut h, head.accounts as u64);
    put(&mut h, strings.len() as u64);
    for s in strings {
        let (tag, text) = match s {
            AttrValue::Str(s) => (0, s.as_str()),
            AttrValue::Num(s) => (1, s.as_str()),
            AttrValue::Bool(b) => (2 + u64::from(*b), ""),
        };
        put(&mut h, tag);
        put_str(&mut h, text);
    }
    put(&mut h, bodies.len() as u64);
    for b in &bodies {
        put(&mut h, b.len() as u64);
        h.extend_from_slice(&crc32fast::hash(b).to_le_bytes());
    }
    let body: usize = bodies.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(PREFIX + h.len() + body);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&h).to_le_bytes());
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for b in bodies {
        out.extend_from_slice(&b);
    }
    out
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

fn io(e: std::io::Error) -> CheckpointError {
    CheckpointError::Io(e.to_string())
}

impl<S: Source> Checkpoint<S> {
    /// Reads and checks the header of the checkpoint in `src` (magic, format, CRC, key, the
    /// chunks' lengths against the source's).
    pub fn open(src: S, key: &[u8]) -> Result<Checkpoint<S>, CheckpointError> {
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
        if len > src.size() - PREFIX as u64 {
            return Err(CheckpointError::Damaged("header length"));
        }
        let mut h = vec![0u8; len as usize];
        src.read_at(PREFIX as u64, &mut h).map_err(io)?;
        if crc32fast::hash(&h) != word(12) {
            return Err(CheckpointError::Damaged("header CRC mismatch"));
        }
        let mut r = Reader { b: &h, at: 0 };
        let n = r.len()?;
        if r.bytes(n)? != key {
            return Err(CheckpointError::Key);
        }
        let n = r.len()?;
        let position = r.bytes(n)?.to_vec();
        let valid_until = Timestamp(r.i()?);
        let segment_key = r.str()?.to_string();
        let accounts = usize::try_from(r.u()?).map_err(|_| CheckpointError::Damaged("accounts"))?;
        let n = r.len()?;
        let mut strings = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = r.u()?;
            let text = r.str()?.to_string();
            strings.push(match tag {
                0 => AttrValue::Str(text),
                1 => AttrValue::Num(text),
                2 | 3 => AttrValue::Bool(tag == 3),
                _ => return Err(CheckpointError::Damaged("string tag")),
            });
        }
        let n = r.len()?;
        if n != accounts.div_ceil(CHUNK) {
            return Err(CheckpointError::Damaged("chunk count"));
        }
        let mut chunks = Vec::with_capacity(n);
        let mut at = PREFIX as u64 + len;
        for _ in 0..n {
            let l = r.u()?;
            let crc = u32::from_le_bytes(r.bytes(4)?.try_into().expect("4 bytes"));
            let end = at.checked_add(l).filter(|e| *e <= src.size());
            let end = end.ok_or(CheckpointError::Damaged("chunk length"))?;
            chunks.push((at, l as usize, crc));
            at = end;
        }
        if at != src.size() || r.at != h.len() {
            return Err(CheckpointError::Damaged("length"));
        }
        Ok(Checkpoint { src, position, valid_until, segment_key, accounts, strings, chunks })
    }

    /// Where the log stood when the accounts were folded, as the caller noted it.
    pub fn position(&self) -> &[u8] {
        &self.position
    }

    /// The bytes of this checkpoint brought forward: each of `replace` (accounts folded at
    /// [`Checkpoint::valid_until`], sorted by id, as [`encode`] takes them) takes the place
    /// of the account of the same id, or joins the others in id order; each account's
    /// monthly usage is as `usage` says. The result is keyed `key`, noted at `position`, and
    /// holds what [`encode`] of the same fold would hold, but for this: unless `usage` is
    /// [`UsageNow::All`], an account that joins has none of its earlier usage (a checkpoint
    /// holds no usage for an account not in its fold). So also returned: how many joined
    /// (give all usage when any did).
    pub fn forward(
        &self,
        key: &[u8],
        position: &[u8],
        replace: &[AccountLedger],
        usage: UsageNow<'_>,
    ) -> Result<(Vec<u8>, usize), CheckpointError> {
        debug_assert!(replace.windows(2).all(|w| w[0].id < w[1].id), "replace is sorted");
        let mut strings = Strings::default();
        for (i, v) in self.strings.iter().enumerate() {
            strings.index.insert(v.clone(), i as u64);
        }
        strings.list = self.strings.clone();
        for a in replace {
            strings.add(a, &self.segment_key);
        }
        let replaced: rustc_hash::FxHashSet<&str> = replace.iter().map(|a| a.id.as_str()).collect();
        // The others, a chunk at a time in parallel: their bytes as they are (their string
        // indexes stay: the table only grew), or with their usage encoded anew.
        struct Kept {
            bytes: Vec<u8>,
            ids: Vec<(String, usize)>,
            old_usage: Vec<(String, Vec<UsageMonth>)>,
        }
        let parts: Vec<Result<Kept, CheckpointError>> = (0..self.chunks.len())
            .into_par_iter()
            .map(|c| {
                let (offset, len, crc) = self.chunks[c];
                let mut buf = vec![0u8; len];
                self.src.read_at(offset, &mut buf).map_err(io)?;
                if crc32fast::hash(&buf) != crc {
                    return Err(CheckpointError::Damaged("chunk CRC mismatch"));
                }
                let mut r = Reader { b: buf.as_slice(), at: 0 };
                let (mut a, mut u) = (AccountLedger::default(), Vec::new());
                let mut d = Decoder::new(&self.strings, &self.segment_key);
                let mut kept =
                    Kept { bytes: Vec::with_capacity(len), ids: Vec::new(), old_usage: Vec::new() };
                for _ in 0..CHUNK.min(self.accounts - c * CHUNK) {
                    let start = r.at;
                    r.account_ledger(&mut a, &mut d)?;
                    let usage_at = r.at;
                    r.usage(&mut u)?;
                    if replaced.contains(a.id.as_str()) {
                        kept.old_usage.push((a.id.clone(), u.clone()));
                        continue;
                    }
                    match usage {
                        UsageNow::Kept => kept.bytes.extend_from_slice(&buf[start..r.at]),
                        _ => {
                            kept.bytes.extend_from_slice(&buf[start..usage_at]);
                            usage_part(&mut kept.bytes, &usage.of(&a.id, &u));
                        }
                    }
                    kept.ids.push((a.id.clone(), kept.bytes.len()));
                }
                if r.at != r.b.len() {
                    return Err(CheckpointError::Damaged("chunk length"));
                }
                Ok(kept)
            })
            .collect();
        let parts: Vec<Kept> = parts.into_iter().collect::<Result<_, _>>()?;
        let joined = replace.len() - parts.iter().map(|k| k.old_usage.len()).sum::<usize>();
        let old_usage: FxHashMap<&str, &[UsageMonth]> = parts
            .iter()
            .flat_map(|k| k.old_usage.iter().map(|(id, u)| (id.as_str(), u.as_slice())))
            .collect();
        let new: Vec<Vec<u8>> = replace
            .par_iter()
            .map(|a| {
                let old = old_usage.get(a.id.as_str()).copied().unwrap_or(&[]);
                let mut out = Vec::with_capacity(256);
                account(&mut out, a, &usage.of(&a.id, old), &self.segment_key, &strings.index);
                out
            })
            .collect();
        // Both in id order: merged into chunks of CHUNK accounts.
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        let mut body = Vec::new();
        let mut in_body = 0;
        let mut accounts = 0;
        let mut push = |bytes: &[u8], body: &mut Vec<u8>, in_body: &mut usize| {
            body.extend_from_slice(bytes);
            *in_body += 1;
            accounts += 1;
            if *in_body == CHUNK {
                bodies.push(std::mem::take(body));
                *in_body = 0;
            }
        };
        let mut fresh = replace.iter().zip(&new).peekable();
        for k in &parts {
            let mut start = 0;
            for (id, end) in &k.ids {
                while let Some((_, b)) = fresh.next_if(|(a, _)| a.id < *id) {
                    push(b, &mut body, &mut in_body);
                }
                push(&k.bytes[start..*end], &mut body, &mut in_body);
                start = *end;
            }
        }
        for (_, b) in fresh {
            push(b, &mut body, &mut in_body);
        }
        if in_body > 0 {
            bodies.push(body);
        }
        let head = Head {
            key,
            position,
            valid_until: self.valid_until,
            segment_key: &self.segment_key,
            accounts,
        };
        Ok((assemble(&head, &strings.list, bodies), joined))
    }

    /// The latest `as_of` this checkpoint answers for.
    pub fn valid_until(&self) -> Timestamp {
        self.valid_until
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

    /// Calls `f` on every account as a fold at `as_of` would give it to the features (see
    /// the module's documentation), with its monthly usage, in parallel; the results in
    /// account order. `as_of` must not be after [`Checkpoint::valid_until`].
    pub fn map_at<T: Send>(
        &self,
        as_of: Timestamp,
        f: impl Fn(&AccountLedger, &[UsageMonth]) -> Option<T> + Sync,
    ) -> Result<Vec<T>, CheckpointError> {
        let parts = self.map_chunks_at(as_of, f)?;
        let mut all = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for p in parts {
            all.extend(p);
        }
        Ok(all)
    }

    /// As [`Checkpoint::map_at`], the results left in one vector per chunk of accounts (in
    /// order): large results are not copied once more into one vector.
    pub fn map_chunks_at<T: Send>(
        &self,
        as_of: Timestamp,
        f: impl Fn(&AccountLedger, &[UsageMonth]) -> Option<T> + Sync,
    ) -> Result<Vec<Vec<T>>, CheckpointError> {
        self.map_blocks_at(as_of, f, |mut out| {
            out.shrink_to_fit();
            out
        })
    }

    /// As [`Checkpoint::map_chunks_at`], each chunk's results then given to `g` on the same
    /// thread, while they are in its caches; `g`'s results in account order. What `g` keeps
    /// of a chunk is all that is held of it: a million accounts' large rows need never be
    /// in memory at once.
    pub fn map_blocks_at<T: Send, U: Send>(
        &self,
        as_of: Timestamp,
        f: impl Fn(&AccountLedger, &[UsageMonth]) -> Option<T> + Sync,
        g: impl Fn(Vec<T>) -> U + Sync,
    ) -> Result<Vec<U>, CheckpointError> {
        assert!(as_of <= self.valid_until, "{as_of} is past the checkpoint's {}", self.valid_until);
        // Each thread reuses one buffer and one account (their vectors keep their capacity).
        let parts: Vec<Result<U, CheckpointError>> = (0..self.chunks.len())
            .into_par_iter()
            .map_init(
                || (Vec::new(), AccountLedger::default(), Vec::new()),
                |(buf, a, u), c| {
                    // Sized once: grown by doubling, a chunk's results were copied and
                    // their memory freed and taken afresh (pages the kernel zeroes) a
                    // dozen times.
                    let mut out = Vec::with_capacity(CHUNK.min(self.accounts - c * CHUNK));
                    self.each_in_chunk(c, buf, a, u, |a, u| {
                        at_instant(a, as_of)?;
                        out.extend(f(a, u));
                        Ok(())
                    })?;
                    Ok(g(out))
                },
            )
            .collect();
        parts.into_iter().collect()
    }

    /// Calls `f` on account `id` as [`Checkpoint::map_at`] would, reading only the chunk
    /// that holds it (found by the chunks' first ids, in id order). `Ok(None)` when that
    /// chunk does not hold it: the account is not in the checkpoint, or a chunk's first id
    /// is damaged (only the chunk read is checked; [`Checkpoint::map_at`] checks them all).
    pub fn find_at<T>(
        &self,
        as_of: Timestamp,
        id: &str,
        f: impl FnOnce(&AccountLedger, &[UsageMonth]) -> T,
    ) -> Result<Option<T>, CheckpointError> {
        assert!(as_of <= self.valid_until, "{as_of} is past the checkpoint's {}", self.valid_until);
        let mut buf = Vec::new();
        let mut first_at_most = Ok(());
        // The number of chunks whose first account's id is not after `id`.
        let chunks: Vec<usize> = (0..self.chunks.len()).collect();
        let after = chunks.partition_point(|c| match self.first_id(*c, &mut buf) {
            Ok(first) => first.as_str() <= id,
            Err(e) => {
                first_at_most = Err(e);
                false
            }
        });
        first_at_most?;
        let Some(c) = after.checked_sub(1) else { return Ok(None) };
        let (mut a, mut u, mut f, mut found) =
            (AccountLedger::default(), Vec::new(), Some(f), None);
        self.each_in_chunk(c, &mut buf, &mut a, &mut u, |a, u| {
            if a.id == id {
                at_instant(a, as_of)?;
                found = f.take().map(|f| f(a, u));
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// The id of chunk `c`'s first account (the first field of its first record).
    fn first_id(&self, c: usize, buf: &mut Vec<u8>) -> Result<String, CheckpointError> {
        let (offset, len, _) = self.chunks[c];
        // Ids are short: a prefix holds one, else the whole chunk is read.
        for want in [len.min(1024), len] {
            buf.resize(want, 0);
            self.src.read_at(offset, buf).map_err(io)?;
            if let Ok(id) = (Reader { b: buf.as_slice(), at: 0 }).str() {
                return Ok(id.to_string());
            }
        }
        Err(CheckpointError::Damaged("a chunk's first id"))
    }

    /// Calls `visit` on each account of chunk `c` as decoded (its CRC checked first), in
    /// order, reusing `buf`, `a` and `u`.
    fn each_in_chunk(
        &self,
        c: usize,
        buf: &mut Vec<u8>,
        a: &mut AccountLedger,
        u: &mut Vec<UsageMonth>,
        mut visit: impl FnMut(&mut AccountLedger, &[UsageMonth]) -> Result<(), CheckpointError>,
    ) -> Result<(), CheckpointError> {
        let (offset, len, crc) = self.chunks[c];
        buf.resize(len, 0);
        self.src.read_at(offset, buf).map_err(io)?;
        if crc32fast::hash(buf) != crc {
            return Err(CheckpointError::Damaged("chunk CRC mismatch"));
        }
        let mut r = Reader { b: buf.as_slice(), at: 0 };
        let mut d = Decoder::new(&self.strings, &self.segment_key);
        let n = CHUNK.min(self.accounts - c * CHUNK);
        for _ in 0..n {
            r.account(a, u, &mut d)?;
            visit(a, u)?;
        }
        if r.at != r.b.len() {
            return Err(CheckpointError::Damaged("chunk length"));
        }
        Ok(())
    }
}

/// Account `a` (as decoded) as a fold at `as_of` gives it: the attribute values set later
/// dropped; refused when its fold rewrote its past around `as_of`.
fn at_instant(a: &mut AccountLedger, as_of: Timestamp) -> Result<(), CheckpointError> {
    if a.rewrites.iter().any(|(from, to)| *from < as_of && as_of <= *to) {
        return Err(CheckpointError::Rewritten(a.id.clone()));
    }
    a.attributes.retain(|(ts, ..)| *ts <= as_of);
    Ok(())
}

fn account(
    out: &mut Vec<u8>,
    a: &AccountLedger,
    usage: &[UsageMonth],
    segment_key: &str,
    index: &FxHashMap<AttrValue, u64>,
) {
    put_str(out, &a.id);
    let mut w = Times::default();
    put(out, a.rewrites.len() as u64);
    for (from, to) in &a.rewrites {
        w.put(out, *from);
        put_i(out, to.0 - from.0);
    }
    let mut w = Times::default();
    put(out, a.steps.len() as u64);
    for s in &a.steps {
        w.put(out, s.ts);
        put_i(out, s.mrr);
        put(out, s.seats);
        let plan = s.plan.as_deref().map_or(0, |p| index[&AttrValue::Str(p.into())] + 1);
        put(out, plan << 1 | u64::from(s.customer));
    }
    let mut w = Times::default();
    put(out, a.movements.len() as u64);
    for m in &a.movements {
        w.put(out, m.ts);
        out.push(m.kind as u8);
    }
    let mut w = Times::default();
    let failed = a.invoices.iter().filter(|i| i.status == InvoiceStatus::Failed);
    put(out, failed.clone().count() as u64);
    for i in failed {
        w.put(out, i.ts);
    }
    let mut w = Times::default();
    put(out, a.cancellations_scheduled.len() as u64);
    for (given, at) in &a.cancellations_scheduled {
        w.put(out, *given);
        put_i(out, at.0 - given.0);
    }
    let mut w = Times::default();
    put(out, a.renewals.len() as u64);
    for r in &a.renewals {
        w.put(out, r.opened);
        put_i(out, r.due.0 - r.opened.0);
    }
    let mut w = Times::default();
    let segs = a.attributes.iter().filter(|(_, k, _)| k == segment_key);
    put(out, segs.clone().count() as u64);
    for (ts, _, v) in segs {
        w.put(out, *ts);
        put(out, index[v]);
    }
    let cs = &a.cs;
    let mut w = Times::default();
    put(out, cs.tickets.len() as u64);
    for k in &cs.tickets {
        w.put(out, k.opened);
        put_opt(out, k.category_first.map(|(ts, c)| (ts.0 - k.opened.0, c.index())));
        put_opt(out, k.severity_first.map(|(ts, s)| (ts.0 - k.opened.0, s.index())));
    }
    let mut w = Times::default();
    put(out, cs.responses.len() as u64);
    for r in &cs.responses {
        w.put(out, r.ts);
        out.push(r.survey.index());
        let (tag, v) = match r.score {
            SurveyScore::Nps(s) => (0, s),
            SurveyScore::Csat(s) => (1, s),
            SurveyScore::Success(s) => (2, s.index()),
        };
        out.extend_from_slice(&[tag, v]);
    }
    let mut w = Times::default();
    put(out, cs.touchpoints.len() as u64);
    for (ts, _, s) in &cs.touchpoints {
        w.put(out, *ts);
        out.push(s.map_or(0, |s| s.index() + 1));
    }
    // Contacts are told apart by a number of their own within the account.
    let mut ids: FxHashMap<&str, u64> = FxHashMap::default();
    let mut w = Times::default();
    put(out, cs.contact_changes.len() as u64);
    for c in &cs.contact_changes {
        w.put(out, c.ts);
        let n = ids.len() as u64;
        put(out, *ids.entry(c.contact_id.as_str()).or_insert(n));
        out.push(c.role.map_or(0, |r| r.index() + 1));
        out.push(c.status.map_or(0, |s| s.index() + 1));
    }
    // Of the departures, the moves to another account (the contacts' states read them).
    let mut w = Times::default();
    let moves = cs.departures.iter().filter(|d| d.moved_to.is_some());
    put(out, moves.clone().count() as u64);
    for d in moves {
        w.put(out, d.ts);
        let n = ids.len() as u64;
        put(out, *ids.entry(d.contact_id.as_str()).or_insert(n));
        out.push(d.role.map_or(0, |r| r.index() + 1));
    }
    let mut w = Times::default();
    put(out, cs.assessments.len() as u64);
    for (ts, rel, imp) in &cs.assessments {
        w.put(out, *ts);
        put(out, rel.map_or(0, |v| u64::from(v) + 1));
        put(out, imp.map_or(0, |v| u64::from(v) + 1));
    }
    let mut w = Times::default();
    put(out, cs.change_requests.len() as u64);
    for (ts, ..) in &cs.change_requests {
        w.put(out, *ts);
    }
    usage_part(out, usage);
}

/// The last part of an account's record: its monthly usage.
fn usage_part(out: &mut Vec<u8>, usage: &[UsageMonth]) {
    let mut w = Times::default();
    put(out, usage.len() as u64);
    for u in usage {
        w.put(out, u.month);
        put(out, u.events);
        put(out, u.users);
        put(out, u.days);
        put(out, u.features);
        put_i(out, u.last_day.0 - u.month.0);
    }
}

/// Instants as differences from the previous one in the same list.
#[derive(Default)]
struct Times(i64);

impl Times {
    fn put(&mut self, out: &mut Vec<u8>, t: Timestamp) {
        put_i(out, t.0.wrapping_sub(self.0));
        self.0 = t.0;
    }
}

fn put_opt(out: &mut Vec<u8>, v: Option<(i64, u8)>) {
    match v {
        None => out.push(0),
        Some((dt, x)) => {
            out.push(x + 1);
            put_i(out, dt);
        }
    }
}

/// What decoding a chunk's accounts reuses: the file's string table, each plan's name
/// made once a chunk (it was once an account: an allocation each), and the strings the
/// last account's lists let go (a contact's number, the segment's key).
struct Decoder<'c> {
    strings: &'c [AttrValue],
    segment_key: &'c str,
    plans: FxHashMap<u64, Arc<str>>,
    spare: Vec<String>,
}

impl<'c> Decoder<'c> {
    fn new(strings: &'c [AttrValue], segment_key: &'c str) -> Decoder<'c> {
        Decoder { strings, segment_key, plans: FxHashMap::default(), spare: Vec::new() }
    }

    /// `v` in decimal, in a spare string when there is one.
    fn number(&mut self, v: u64) -> String {
        let mut s = self.spare.pop().unwrap_or_default();
        s.clear();
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{v}"));
        s
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

type R<T> = Result<T, CheckpointError>;

impl<'a> Reader<'a> {
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

    /// A count or length, which cannot exceed the bytes left.
    fn len(&mut self) -> R<usize> {
        let v = self.u()?;
        // Every item of a list takes a byte at least: no count is above the bytes left.
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

    fn str(&mut self) -> R<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| CheckpointError::Damaged("UTF-8"))
    }

    /// The next instant of a list, after `prev` (the one before it).
    fn ts(&mut self, prev: &mut i64) -> R<Timestamp> {
        *prev = stamp(prev.wrapping_add(self.i()?))?.0;
        Ok(Timestamp(*prev))
    }

    /// An instant written as its distance from `base`.
    fn after(&mut self, base: Timestamp) -> R<Timestamp> {
        stamp(base.0.wrapping_add(self.i()?))
    }

    fn small<T>(&mut self, from: impl Fn(u8) -> Option<T>) -> R<Option<T>> {
        match self.byte()? {
            0 => Ok(None),
            v => from(v - 1).map(Some).ok_or(CheckpointError::Damaged("enum")),
        }
    }

    fn opt_u8(&mut self) -> R<Option<u8>> {
        match self.u()? {
            0 => Ok(None),
            v => u8::try_from(v - 1).map(Some).map_err(|_| CheckpointError::Damaged("score")),
        }
    }

    fn first<T>(
        &mut self,
        opened: Timestamp,
        from: impl Fn(u8) -> Option<T>,
    ) -> R<Option<(Timestamp, T)>> {
        match self.small(from)? {
            None => Ok(None),
            Some(v) => Ok(Some((self.after(opened)?, v))),
        }
    }

    /// Decodes the next account into `a` and `u`, whose previous contents go.
    fn account(
        &mut self,
        a: &mut AccountLedger,
        usage: &mut Vec<UsageMonth>,
        d: &mut Decoder<'_>,
    ) -> R<()> {
        self.account_ledger(a, d)?;
        self.usage(usage)
    }

    /// An account's record up to its usage.
    fn account_ledger(&mut self, a: &mut AccountLedger, d: &mut Decoder<'_>) -> R<()> {
        let strings = d.strings;
        let string =
            |i: u64| strings.get(i as usize).ok_or(CheckpointError::Damaged("string index"));
        a.id.clear();
        a.id.push_str(self.str()?);
        a.rewrites.clear();
        let mut t = 0;
        for _ in 0..self.len()? {
            let from = self.ts(&mut t)?;
            let to = self.after(from)?;
            a.rewrites.push((from, to));
        }
        a.steps.clear();
        a.movements.clear();
        a.invoices.clear();
        a.cancellations_scheduled.clear();
        a.renewals.clear();
        d.spare.extend(a.attributes.drain(..).map(|(_, key, _)| key));
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            let mrr = self.i()?;
            let seats = self.u()?;
            let v = self.u()?;
            let plan = match v >> 1 {
                0 => None,
                p => Some(match d.plans.get(&p) {
                    Some(s) => s.clone(),
                    None => {
                        let s: Arc<str> = string(p - 1)?.label().into();
                        d.plans.insert(p, s.clone());
                        s
                    }
                }),
            };
            a.steps.push(Step {
                ts,
                mrr,
                arr: 0,
                service_mrr: 0,
                seats,
                customer: v & 1 == 1,
                plan,
                committed_mrr: 0,
                committed_arr: 0,
                fx: Box::new([]),
            });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            let kind = match self.byte()? {
                0 => MovementKind::New,
                1 => MovementKind::Expansion,
                2 => MovementKind::Contraction,
                3 => MovementKind::Churn,
                4 => MovementKind::Reactivation,
                _ => return Err(CheckpointError::Damaged("movement kind")),
            };
            a.movements.push(Movement {
                ts,
                kind,
                amount: 0,
                upsell: 0,
                cross_sell: 0,
                involuntary: false,
                cancel_reason: None,
                sources: Box::new([]),
            });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            a.invoices.push(Invoice {
                ts,
                invoice_id: String::new(),
                amount: 0,
                status: InvoiceStatus::Failed,
            });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let given = self.ts(&mut t)?;
            let at = self.after(given)?;
            a.cancellations_scheduled.push((given, at));
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let opened = self.ts(&mut t)?;
            let due = self.after(opened)?;
            a.renewals.push(Renewal {
                subscription_id: String::new(),
                opened,
                due,
                arr_due: 0,
                outcome: RenewalOutcome::Open,
            });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            let v = string(self.u()?)?.clone();
            let mut key = d.spare.pop().unwrap_or_default();
            key.clear();
            key.push_str(d.segment_key);
            a.attributes.push((ts, key, v));
        }
        let cs = &mut a.cs;
        cs.tickets.clear();
        cs.responses.clear();
        cs.touchpoints.clear();
        d.spare.extend(cs.contact_changes.drain(..).map(|c| c.contact_id));
        d.spare.extend(cs.departures.drain(..).map(|c| c.contact_id));
        cs.assessments.clear();
        cs.change_requests.clear();
        let mut t = 0;
        for _ in 0..self.len()? {
            let opened = self.ts(&mut t)?;
            let category_first = self.first(opened, TicketCategory::from_index)?;
            let severity_first = self.first(opened, Severity::from_index)?;
            cs.tickets.push(Ticket {
                category_first,
                severity_first,
                ..Ticket::opened(String::new(), opened)
            });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            let survey =
                SurveyKind::from_index(self.byte()?).ok_or(CheckpointError::Damaged("survey"))?;
            let (tag, v) = (self.byte()?, self.byte()?);
            let score = match tag {
                0 => SurveyScore::Nps(v),
                1 => SurveyScore::Csat(v),
                2 => SurveyScore::Success(
                    Sentiment::from_index(v).ok_or(CheckpointError::Damaged("sentiment"))?,
                ),
                _ => return Err(CheckpointError::Damaged("score")),
            };
            cs.responses.push(Response { ts, survey, contact_id: None, score, comment: None });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            cs.touchpoints.push((ts, String::new(), self.small(Sentiment::from_index)?));
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            let contact_id = d.number(self.u()?);
            let role = self.small(ContactRole::from_index)?;
            let status = self.small(ContactStatus::from_index)?;
            cs.contact_changes.push(ContactChange {
                ts,
                contact_id,
                role,
                status,
                email: None,
                name: None,
            });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            let contact_id = d.number(self.u()?);
            let role = self.small(ContactRole::from_index)?;
            cs.departures.push(Departure { ts, contact_id, role, moved_to: Some(String::new()) });
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            let rel = self.opt_u8()?;
            let imp = self.opt_u8()?;
            cs.assessments.push((ts, rel, imp));
        }
        let mut t = 0;
        for _ in 0..self.len()? {
            let ts = self.ts(&mut t)?;
            cs.change_requests.push((ts, String::new(), RequestStatus::Opened));
        }
        Ok(())
    }

    /// The last part of an account's record: its monthly usage.
    fn usage(&mut self, usage: &mut Vec<UsageMonth>) -> R<()> {
        usage.clear();
        let mut t = 0;
        for _ in 0..self.len()? {
            let month = self.ts(&mut t)?;
            let (events, users, days, features) = (self.u()?, self.u()?, self.u()?, self.u()?);
            let last_day = self.after(month)?;
            usage.push(UsageMonth { month, events, users, days, features, last_day });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenure_ledger::{LedgerBuilder, Preset, RevenueConfig};

    /// A small generated company's ledger and usage (every kind of event the features read).
    fn small() -> (Ledger, UsageByAccount, Timestamp) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tenure_sim::SimConfig {
            accounts: 12,
            months: 18,
            seed: 3,
            start: (2023, 1),
            usage_events: None,
            format: tenure_sim::OutputFormat::Jsonl,
        };
        let summary = tenure_sim::generate(&cfg, dir.path(), &|_| {}).unwrap();
        let ingest = tenure_ingest::IngestConfig::defaults(None);
        let mut b = LedgerBuilder::new();
        let mut usage: UsageByAccount = FxHashMap::default();
        for f in summary.files.iter().filter(|f| f.extension().is_some_and(|e| e == "jsonl")) {
            let text = std::fs::read_to_string(f).unwrap();
            let kind = tenure_ingest::kind_from_file_name(&f.display().to_string());
            let (ok, _) = tenure_ingest::parse_jsonl_block(&text, 1, kind, &ingest);
            for (_, e) in ok {
                if let (Some(a), tenure_core::event::EventBody::Usage { .. }) =
                    (&e.account, &e.body)
                {
                    let month = tenure_core::time::PeriodUnit::Month.floor(e.ts);
                    let months = usage.entry(a.clone()).or_default();
                    if months.last().is_none_or(|m| m.month != month) {
                        months.push(UsageMonth { month, last_day: month, ..UsageMonth::default() });
                    }
                    months.last_mut().unwrap().events += 1;
                }
                b.push(e);
            }
        }
        let fx = tenure_core::money::FxTable::new(tenure_core::money::Currency::USD);
        let until = Timestamp::parse("2024-09-01").unwrap();
        (b.finish(&RevenueConfig::preset(Preset::Tenure, fx), until), usage, until)
    }

    /// Makes every CRC match the bytes again, so that a test reaches the decoder.
    fn reseal(b: &mut [u8]) {
        let len = u64::from_le_bytes(b[16..24].try_into().unwrap()) as usize;
        let Some(h) = b.get(PREFIX..PREFIX + len) else { return };
        let mut r = Reader { b: h, at: 0 };
        let chunks = (|| -> R<Vec<(usize, usize)>> {
            let n = r.len()?;
            r.bytes(n)?;
            r.i()?;
            r.str()?;
            r.u()?;
            for _ in 0..r.len()? {
                r.u()?;
                r.str()?;
            }
            (0..r.len()?)
                .map(|_| {
                    let l = r.u()? as usize;
                    r.bytes(4)?;
                    Ok((r.at - 4, l))
                })
                .collect()
        })();
        if let Ok(chunks) = chunks {
            let mut at = PREFIX + len;
            for (crc_at, l) in chunks {
                let Some(body) = b.get(at..at.saturating_add(l)) else { break };
                let crc = crc32fast::hash(body).to_le_bytes();
                b[PREFIX + crc_at..PREFIX + crc_at + 4].copy_from_slice(&crc);
                at += l;
            }
        }
        let crc = crc32fast::hash(&b[PREFIX..PREFIX + len]).to_le_bytes();
        b[12..16].copy_from_slice(&crc);
    }

    /// Every account as a checkpoint gives it to the features, and its usage.
    fn read_back(bytes: Vec<u8>, key: &[u8], until: Timestamp) -> Vec<String> {
        let c = Checkpoint::open(bytes, key).unwrap();
        c.map_at(until, |a, u| Some(format!("{a:?} {u:?}"))).unwrap()
    }

    /// A checkpoint brought forward with some accounts folded again (three new ones, two
    /// changed) reads as a checkpoint encoded from the new fold: with each account's usage
    /// kept, or with everyone's usage replaced.
    #[test]
    fn brought_forward_reads_as_the_new_fold_encoded() {
        let (ledger, usage, until) = small();
        let n = ledger.accounts.len();
        let (new, changed) = ([1, 5, n - 1], [2, 7]);
        let mut old = Ledger::default();
        for (i, a) in ledger.accounts.iter().enumerate() {
            let mut a = a.clone();
            if changed.contains(&i) {
                // As an earlier fold had it: fewer steps and tickets, another segment.
                a.steps.truncate(1);
                a.cs.tickets.clear();
                a.attributes.push((until, "segment".into(), AttrValue::Str("zz-old".into())));
            }
            if !new.contains(&i) {
                old.accounts.push(a);
            }
        }
        let mut old_usage = usage.clone();
        let some = ledger.accounts[0].id.clone();
        old_usage.insert(
            some,
            vec![UsageMonth { month: until, last_day: until, events: 9, ..UsageMonth::default() }],
        );
        // And another account's earliest month as an earlier read had it.
        let other = old_usage.get_mut(&ledger.accounts[3].id).unwrap();
        other[0].events += 100;
        let c = Checkpoint::open(encode(b"k", b"p1", &old, &old_usage, "segment", until), b"k")
            .unwrap();
        assert_eq!(c.position(), b"p1");
        let replace: Vec<AccountLedger> = ledger
            .accounts
            .iter()
            .enumerate()
            .filter(|(i, _)| new.contains(i) || changed.contains(i))
            .map(|(_, a)| a.clone())
            .collect();
        // Usage kept: the new accounts had none.
        let kept: UsageByAccount = old_usage
            .iter()
            .filter(|(id, _)| old.accounts.iter().any(|a| &a.id == *id))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (fwd, joined) = c.forward(b"k2", b"p2", &replace, UsageNow::Kept).unwrap();
        assert_eq!(joined, new.len());
        assert_eq!(Checkpoint::open(fwd.clone(), b"k").err(), Some(CheckpointError::Key));
        assert_eq!(Checkpoint::open(fwd.clone(), b"k2").unwrap().position(), b"p2");
        let want = encode(b"k2", b"p2", &ledger, &kept, "segment", until);
        let got = read_back(fwd, b"k2", until);
        assert_eq!(got.len(), n);
        assert_eq!(got, read_back(want, b"k2", until));
        assert_ne!(got, read_back(encode(b"k", b"", &old, &kept, "segment", until), b"k", until));
        // Everyone's usage replaced.
        let (fwd, _) = c.forward(b"k2", b"p2", &replace, UsageNow::All(&usage)).unwrap();
        let want = encode(b"k2", b"p2", &ledger, &usage, "segment", until);
        assert_eq!(read_back(fwd, b"k2", until), read_back(want, b"k2", until));
        // The months from one on replaced, the earlier kept: as `encode` of that usage.
        for month in [Timestamp::parse("2024-03-01").unwrap(), until, Timestamp(until.0 + 1)] {
            let (fwd, _) = c
                .forward(b"k2", b"p2", &replace, UsageNow::Since { month, usage: &usage })
                .unwrap();
            let mixed: UsageByAccount = ledger
                .accounts
                .iter()
                .map(|a| {
                    let was = old_usage
                        .get(&a.id)
                        .filter(|_| !new.iter().any(|&i| ledger.accounts[i].id == a.id));
                    let mut v: Vec<UsageMonth> =
                        was.into_iter().flatten().filter(|u| u.month < month).cloned().collect();
                    v.extend(
                        usage
                            .get(&a.id)
                            .into_iter()
                            .flatten()
                            .filter(|u| u.month >= month)
                            .cloned(),
                    );
                    (a.id.clone(), v)
                })
                .collect();
            let want = encode(b"k2", b"p2", &ledger, &mixed, "segment", until);
            assert_eq!(read_back(fwd, b"k2", until), read_back(want, b"k2", until), "{month}");
        }
        // Nothing to replace and the usage unchanged: the same accounts, byte for byte.
        let (same, joined) = c.forward(b"k", b"p1", &[], UsageNow::Kept).unwrap();
        assert_eq!(joined, 0);
        assert_eq!(same, encode(b"k", b"p1", &old, &old_usage, "segment", until));
    }

    #[test]
    fn accounts_read_back_with_what_the_features_read() {
        let (ledger, usage, until) = small();
        let bytes = encode(b"k", b"", &ledger, &usage, "segment", until);
        let c = Checkpoint::open(bytes, b"k").unwrap();
        assert_eq!(c.len(), ledger.accounts.len());
        let back = c.map_at(until, |a, u| Some((a.clone(), u.to_vec()))).unwrap();
        let mut tickets = 0;
        for ((a, u), want) in back.iter().zip(&ledger.accounts) {
            assert_eq!(a.id, want.id);
            let steps = |a: &AccountLedger| {
                a.steps
                    .iter()
                    .map(|s| (s.ts, s.mrr, s.seats, s.customer, s.plan.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(steps(a), steps(want));
            let moves =
                |a: &AccountLedger| a.movements.iter().map(|m| (m.ts, m.kind)).collect::<Vec<_>>();
            assert_eq!(moves(a), moves(want));
            let opened = |a: &AccountLedger| {
                a.cs.tickets
                    .iter()
                    .map(|k| (k.opened, k.category_first, k.severity_first))
                    .collect::<Vec<_>>()
            };
            assert_eq!(opened(a), opened(want));
            tickets += a.cs.tickets.len();
            let scores = |a: &AccountLedger| {
                a.cs.responses.iter().map(|r| (r.ts, r.survey, r.score.clone())).collect::<Vec<_>>()
            };
            assert_eq!(scores(a), scores(want));
            assert_eq!(a.cs.assessments, want.cs.assessments);
            assert_eq!(u, usage.get(&a.id).map_or(&[][..], |v| v.as_slice()));
        }
        assert!(tickets > 10, "{tickets} tickets");
    }

    /// One account read from its chunk alone is the account every account's reading gives
    /// (the first and last of each chunk, and others); an id before the first, between
    /// two, or after the last is not found. Three chunks: the small company's accounts
    /// copied under 800 prefixes.
    #[test]
    fn one_account_is_found_in_its_chunk() {
        let (mut ledger, usage, until) = small();
        let small = std::mem::take(&mut ledger.accounts);
        let mut more = UsageByAccount::default();
        for k in 0..800 {
            for a in &small {
                let id = format!("p{k:03}-{}", a.id);
                if let Some(u) = usage.get(&a.id) {
                    more.insert(id.clone(), u.clone());
                }
                ledger.accounts.push(AccountLedger { id, ..a.clone() });
            }
        }
        ledger.accounts.sort_by(|a, b| a.id.cmp(&b.id));
        let n = ledger.accounts.len();
        assert!(n > 2 * CHUNK, "{n} accounts");
        let c =
            Checkpoint::open(encode(b"k", b"", &ledger, &more, "segment", until), b"k").unwrap();
        let all = c.map_at(until, |a, u| Some((a.id.clone(), format!("{a:?} {u:?}")))).unwrap();
        let picks = (0..n).filter(|i| i % 997 == 0 || i % CHUNK == 0 || i % CHUNK == CHUNK - 1);
        let mut checked = 0;
        for i in picks.chain([n - 1]) {
            let (id, want) = &all[i];
            let got = c.find_at(until, id, |a, u| format!("{a:?} {u:?}")).unwrap();
            assert_eq!(got.as_ref(), Some(want), "{id}");
            checked += 1;
        }
        assert!(checked > 10);
        let between = format!("{}!", all[CHUNK].0);
        for id in ["", "p", between.as_str(), "q"] {
            assert!(c.find_at(until, id, |a, _| a.id.clone()).unwrap().is_none(), "{id:?}");
        }
    }

    /// A damaged checkpoint is refused, or decodes to something, but never panics: every
    /// cut, and bytes changed under CRCs made to match them.
    #[test]
    fn a_damaged_checkpoint_is_refused_without_a_panic() {
        let (ledger, usage, until) = small();
        let bytes = encode(b"k", b"", &ledger, &usage, "segment", until);
        let decode = |b: Vec<u8>| {
            let c = Checkpoint::open(b, b"k")?;
            // (`map_at` past the checkpoint's reach is a caller's error, and panics.)
            c.map_at(c.valid_until().min(until), |a, u| Some((a.steps.len(), u.len())))
        };
        assert_eq!(decode(bytes.clone()).unwrap().len(), ledger.accounts.len());
        for n in 0..bytes.len() {
            assert!(decode(bytes[..n].to_vec()).is_err(), "cut at {n} read as whole");
        }
        let mut flipped = bytes.clone();
        flipped[bytes.len() - 3] ^= 1;
        assert_eq!(decode(flipped).err(), Some(CheckpointError::Damaged("chunk CRC mismatch")));
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let i = PREFIX + (next() as usize) % (b.len() - PREFIX);
                b[i] = next() as u8;
            }
            reseal(&mut b);
            let _ = decode(b);
        }
    }
}
