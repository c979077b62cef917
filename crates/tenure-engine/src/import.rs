//! Import: read JSONL or CSV, validate rows in parallel, append to the log in input order,
//! and acknowledge (report progress) only after each group commit is durable.

use crate::{key, lane, log_dir, nth_key};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use tenure_core::codec;
use tenure_core::event::EventKind;
use tenure_ingest::{CsvEvents, IngestConfig, Rejection, RowSource};
use tenure_log::{Log, LogError, LogOptions, RecoveryReport};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("reading the input: {0}")]
    Read(#[from] std::io::Error),
    #[error(transparent)]
    Csv(#[from] tenure_ingest::CsvError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Counts after a durable commit: everything up to `lines` is acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes: u64,
    /// Input lines processed and made durable (the last line number covered).
    pub lines: u64,
    /// Events stored by this import.
    pub accepted: u64,
    /// Events acknowledged but already in the log (same `message_id` or same content).
    pub duplicates: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug, Default)]
pub struct FileSummary {
    pub progress: Progress,
    pub by_kind: BTreeMap<&'static str, u64>,
}

/// The single writer of a data directory's log.
pub struct Importer {
    log: Log,
    cfg: IngestConfig,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer").finish_non_exhaustive()
    }
}

/// Bytes read per group commit for JSONL.
const BLOCK: usize = 8 << 20;
/// Bytes per parallel parse task.
const CHUNK: usize = 256 << 10;
/// Rows per group commit for CSV.
const CSV_BATCH: usize = 50_000;

/// A chunk of input made ready for the writer: framed log records (kind and byte range
/// in `buf`), in input order, and the chunk's rejections.
#[derive(Default)]
struct Parsed {
    /// Kind, byte range, and whether the key is the content's (no `message_id`).
    recs: Vec<(EventKind, usize, usize, bool)>,
    buf: Vec<u8>,
    rejections: Vec<Rejection>,
}

impl Parsed {
    /// Empties it, keeping its buffers' capacity for the next batch.
    fn clear(&mut self) {
        self.recs.clear();
        self.buf.clear();
        self.rejections.clear();
    }
}

/// Events framed as log records ahead of the writer (on many threads, as they are
/// converted), then stored in order by [`Importer::import_framed`]. Holding a large import
/// as framed records takes a fraction of the memory of its events or of their text.
#[derive(Default)]
pub struct Framed {
    parsed: Parsed,
    /// The last row number framed (rows are numbered by the caller).
    last_line: u64,
}

impl Framed {
    /// Room for `records` events of `bytes` framed bytes in all: a large import's framed
    /// records are held until stored, and buffers grown by doubling copy them and touch
    /// fresh memory at every step.
    pub fn with_capacity(records: usize, bytes: usize) -> Framed {
        let parsed = Parsed {
            recs: Vec::with_capacity(records),
            buf: Vec::with_capacity(bytes),
            rejections: Vec::new(),
        };
        Framed { parsed, last_line: 0 }
    }

    /// Bytes framed.
    pub fn bytes(&self) -> usize {
        self.parsed.buf.len()
    }

    /// Frames one event, row `line` of the input.
    pub fn push(&mut self, line: u64, e: &tenure_core::event::Event) {
        push_event(&mut self.parsed, e);
        self.last_line = self.last_line.max(line);
    }

    /// Events framed (an event too large for a log record is not).
    pub fn len(&self) -> usize {
        self.parsed.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parsed.recs.is_empty()
    }
}

/// One block of JSONL, parsed: the writer appends it and commits.
struct Block {
    parsed: Vec<Parsed>,
    /// Rejection of an over-long line skipped before this block's lines.
    skipped: Option<Rejection>,
    bytes: u64,
    last_line: u64,
}

impl Importer {
    /// Opens (creating) the data directory's log; recovery of a torn tail is reported.
    pub fn open(data: &Path, cfg: IngestConfig) -> Result<(Importer, RecoveryReport), ImportError> {
        let (log, report) = Log::open(&log_dir(data), LogOptions::default())?;
        Ok((Importer { log, cfg }, report))
    }

    pub fn import(
        &mut self,
        input: impl Read + Send,
        format: Format,
        default_kind: Option<EventKind>,
        on_reject: &mut dyn FnMut(&Rejection),
        on_commit: &mut dyn FnMut(&Progress),
    ) -> Result<FileSummary, ImportError> {
        match format {
            Format::Jsonl => self.import_jsonl(input, default_kind, on_reject, on_commit),
            Format::Csv => self.import_csv(input, default_kind, on_reject, on_commit),
        }
    }

    /// How rows are validated.
    pub fn config(&self) -> &IngestConfig {
        &self.cfg
    }

    /// Stores framed events in order, committing whenever [`CSV_BATCH`] records are
    /// pending and at the end; `Progress::lines` is the last row number made durable and
    /// `Progress::bytes` the records stored so far. Repeated content without a
    /// `message_id` is numbered as [`Importer::import_rows`] numbers it. Batches are stored
    /// as the iterator yields them (a caller still converting the rest can hand them over
    /// as they come); `expected`, the number of records the caller expects, sizes the key
    /// sets once (a table of millions of keys regrown by doubling holds the old and the
    /// new one at once).
    pub fn import_framed(
        &mut self,
        batches: impl IntoIterator<Item = Framed>,
        expected: usize,
        on_commit: &mut dyn FnMut(&Progress),
    ) -> Result<FileSummary, ImportError> {
        let mut seen = FxHashSet::default();
        seen.reserve(expected.min(1 << 28));
        self.log.reserve_keys(expected.min(1 << 28));
        let mut sum = FileSummary::default();
        let mut pending = 0;
        for mut b in batches {
            occurrences(&mut b.parsed, &mut seen);
            store(&mut self.log, &b.parsed, &mut sum)?;
            pending += b.parsed.recs.len();
            sum.progress.lines = sum.progress.lines.max(b.last_line);
            if pending >= CSV_BATCH {
                commit_framed(&mut self.log, &mut sum, on_commit)?;
                pending = 0;
            }
        }
        if pending > 0 {
            commit_framed(&mut self.log, &mut sum, on_commit)?;
        }
        Ok(sum)
    }

    /// Appends batches of validated events (one per request, say) and makes them durable
    /// with one commit for all. Returns, per event of each batch, whether it was stored
    /// (`false`: already in the log, or too large for a log record). An event without a
    /// `message_id` is keyed by its content and its occurrence among identical events of
    /// its own batch, so a batch sent twice is stored once.
    pub fn append(
        &mut self,
        batches: &[Vec<tenure_core::event::Event>],
    ) -> Result<Vec<Vec<bool>>, ImportError> {
        let at = self.append_at(batches)?;
        Ok(at.into_iter().map(|b| b.into_iter().map(|p| p.is_some()).collect()).collect())
    }

    /// As [`append`](Self::append), with where each stored event went: its record index in
    /// its lane (the source a movement names for a subscription event without `message_id`).
    pub fn append_at(
        &mut self,
        batches: &[Vec<tenure_core::event::Event>],
    ) -> Result<Vec<Vec<Option<u64>>>, ImportError> {
        // Every append ends with a commit, so each lane starts at its committed length.
        let mut next: FxHashMap<&'static str, u64> = FxHashMap::default();
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut p = Parsed { recs: Vec::new(), buf: Vec::new(), rejections: Vec::new() };
            let mut framed = Vec::with_capacity(batch.len());
            for e in batch {
                let before = p.recs.len();
                push_event(&mut p, e);
                framed.push(p.recs.len() > before);
            }
            occurrences(&mut p, &mut FxHashSet::default());
            let mut stored = Vec::with_capacity(batch.len());
            let mut recs = p.recs.iter();
            for ok in framed {
                let Some(&(kind, start, end, _)) = ok.then(|| recs.next()).flatten() else {
                    stored.push(None);
                    continue;
                };
                let name = lane(kind);
                let position = *next.entry(name).or_insert_with(|| self.log.lane_len(name));
                if self.log.append_framed(name, &p.buf[start..end])? {
                    next.insert(name, position + 1);
                    stored.push(Some(position));
                } else {
                    stored.push(None);
                }
            }
            out.push(stored);
        }
        self.log.commit()?;
        Ok(out)
    }

    /// Two stages: a reader thread reads blocks and parses them (in parallel, framing log
    /// records off the writer's path) while this thread appends the previous block and
    /// commits it. The channel holds one block, which bounds memory to about three blocks.
    fn import_jsonl(
        &mut self,
        input: impl Read + Send,
        default_kind: Option<EventKind>,
        on_reject: &mut dyn FnMut(&Rejection),
        on_commit: &mut dyn FnMut(&Progress),
    ) -> Result<FileSummary, ImportError> {
        let mut sum = FileSummary::default();
        let cfg = self.cfg.clone();
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Block, std::io::Error>>(1);
            scope.spawn(move || read_blocks(input, default_kind, &cfg, &tx));
            for block in rx {
                let block = block?;
                if let Some(r) = &block.skipped {
                    on_reject(r);
                    sum.progress.rejected += 1;
                }
                for p in &block.parsed {
                    for r in &p.rejections {
                        on_reject(r);
                    }
                    sum.progress.rejected += p.rejections.len() as u64;
                    store(&mut self.log, p, &mut sum)?;
                }
                self.log.commit()?;
                sum.progress.bytes += block.bytes;
                sum.progress.lines = block.last_line;
                on_commit(&sum.progress);
            }
            Ok(sum)
        })
    }

    fn import_csv(
        &mut self,
        input: impl Read,
        default_kind: Option<EventKind>,
        on_reject: &mut dyn FnMut(&Rejection),
        on_commit: &mut dyn FnMut(&Progress),
    ) -> Result<FileSummary, ImportError> {
        let mut rows =
            CsvEvents::new(std::io::BufReader::with_capacity(1 << 20, input), default_kind)?;
        self.import_rows(&mut rows, on_reject, on_commit)
    }

    /// Imports any row source (CSV, Parquet, a mapped export):
    /// rows are framed in input order and committed in batches; `Progress::bytes` is the
    /// source's own position and `Progress::lines` the last row number made durable.
    ///
    /// Two stages, as for JSONL: this thread pulls rows and frames them (encoding, keys,
    /// occurrences) while a writer thread appends the previous batch to the log and commits
    /// it, so framing overlaps the key index and the fsync. The channel holds one batch;
    /// progress comes back after each commit and is reported here, so a row is acknowledged
    /// only once it is durable.
    pub fn import_rows(
        &mut self,
        rows: &mut dyn RowSource,
        on_reject: &mut dyn FnMut(&Rejection),
        on_commit: &mut dyn FnMut(&Progress),
    ) -> Result<FileSummary, ImportError> {
        let mut seen = FxHashSet::default();
        // A source that knows its length (a Parquet file's rows) spares both key sets their
        // regrowths (measured: 10% off a 10 M-row import). A file of duplicates over-reserves
        // the log's index by at most its own size.
        if let Some(total) = rows.total() {
            let total = usize::try_from(total).unwrap_or(0).min(1 << 28);
            seen.reserve(total);
            self.log.reserve_keys(total);
        }
        let cfg = &self.cfg;
        let log = &mut self.log;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(1);
            let (done_tx, done_rx) = std::sync::mpsc::channel::<Progress>();
            // Stored batches come back emptied, their buffers kept: a fresh 5 MiB buffer
            // a batch is fresh pages for the kernel to zero (the kernel's zeroing was 13% of
            // a Parquet import's CPU time, these buffers a part of it).
            let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Parsed>();
            let writer = scope.spawn(move || -> Result<FileSummary, ImportError> {
                let mut sum = FileSummary::default();
                for mut b in rx {
                    sum.progress.rejected += b.parsed.rejections.len() as u64;
                    store(log, &b.parsed, &mut sum)?;
                    log.commit()?;
                    sum.progress.lines = sum.progress.lines.max(b.last_line);
                    sum.progress.bytes = b.position;
                    // The receiver is gone only when framing stopped: nothing to report to.
                    let _ = done_tx.send(sum.progress.clone());
                    b.parsed.clear();
                    let _ = spare_tx.send(b.parsed);
                }
                Ok(sum)
            });
            let mut done = false;
            while !done {
                let mut p = spare_rx.try_recv().unwrap_or_else(|_| Parsed::default());
                let mut last = 0;
                for _ in 0..CSV_BATCH {
                    let Some((line, row)) = rows.next_row(cfg) else {
                        done = true;
                        break;
                    };
                    last = line;
                    match row {
                        Ok(e) => push_event(&mut p, &e),
                        Err(r) => p.rejections.push(r),
                    }
                }
                for r in &p.rejections {
                    on_reject(r);
                }
                occurrences(&mut p, &mut seen);
                let batch = Batch { parsed: p, last_line: last, position: rows.position() };
                // A closed channel: the writer stopped on an error, which join returns.
                if tx.send(batch).is_err() {
                    break;
                }
                for progress in done_rx.try_iter() {
                    on_commit(&progress);
                }
            }
            drop(tx);
            let sum = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for progress in done_rx.try_iter() {
                on_commit(&progress);
            }
            sum
        })
    }
}

/// Commits what [`Importer::import_framed`] stored and reports it (records stored so far).
fn commit_framed(
    log: &mut Log,
    sum: &mut FileSummary,
    on_commit: &mut dyn FnMut(&Progress),
) -> Result<(), ImportError> {
    log.commit()?;
    sum.progress.bytes = sum.progress.accepted + sum.progress.duplicates;
    on_commit(&sum.progress);
    Ok(())
}

/// A batch of framed rows on its way to the writer thread of [`Importer::import_rows`].
struct Batch {
    parsed: Parsed,
    /// The last row number the batch covers, and the source's position after it.
    last_line: u64,
    position: u64,
}

/// Appends a batch's records to the log, counting what was stored and what was known.
fn store(log: &mut Log, p: &Parsed, sum: &mut FileSummary) -> Result<(), ImportError> {
    let records: Vec<(&str, &[u8])> =
        p.recs.iter().map(|&(kind, start, end, _)| (lane(kind), &p.buf[start..end])).collect();
    let mut stored = Vec::with_capacity(records.len());
    log.append_framed_batch(&records, &mut stored)?;
    for (&(kind, ..), new) in p.recs.iter().zip(stored) {
        if new {
            sum.progress.accepted += 1;
            *sum.by_kind.entry(kind.as_str()).or_default() += 1;
        } else {
            sum.progress.duplicates += 1;
        }
    }
    Ok(())
}

/// Numbers repeated content: `seen` holds the content keys this input has produced so far,
/// and a repeat of identical content is its next occurrence, re-keyed with [`nth_key`].
/// Runs in input order, on the reader's side of the pipeline. `seen` keeps 64 bits of each
/// key: a collision only numbers an event as a repeat, which is deterministic (the same
/// input gets the same keys again), so nothing is lost and re-imports stay idempotent.
fn occurrences(p: &mut Parsed, seen: &mut FxHashSet<u64>) {
    for &(_, start, end, by_content) in &p.recs {
        if !by_content {
            continue;
        }
        let record = &mut p.buf[start..end];
        let first = tenure_log::record_key(record);
        let mut n = 0;
        while !seen.insert(nth_key(first, n) as u64) {
            n += 1;
        }
        if n > 0 {
            tenure_log::set_record_key(record, nth_key(first, n));
        }
    }
}

/// Frames one event as a log record at the end of the chunk buffer.
fn push_event(p: &mut Parsed, e: &tenure_core::event::Event) {
    let start = tenure_log::begin_record(&mut p.buf);
    codec::encode(e, &mut p.buf);
    let k = key(e, &p.buf[start + tenure_log::RECORD_HEADER_LEN..]);
    if tenure_log::finish_record(&mut p.buf, start, k) {
        p.recs.push((e.kind(), start, p.buf.len(), e.message_id.is_none()));
    }
}

/// Reads the input in blocks of whole lines, parses each block in parallel chunks, and
/// sends the blocks in order. Stops at the end of input, a read error, or a closed channel.
fn read_blocks(
    mut input: impl Read,
    default_kind: Option<EventKind>,
    cfg: &IngestConfig,
    tx: &std::sync::mpsc::SyncSender<Result<Block, std::io::Error>>,
) {
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK + CHUNK);
    let mut next_line: u64 = 1;
    // While discarding the rest of an over-long line: the line it started on.
    let mut skipping: Option<u64> = None;
    let mut skipped_bytes = 0u64;
    let mut seen = FxHashSet::default();
    let mut eof = false;
    while !eof {
        while block.len() < BLOCK {
            let old = block.len();
            block.resize(BLOCK, 0);
            match input.read(&mut block[old..]) {
                Ok(n) => {
                    block.truncate(old + n);
                    if n == 0 {
                        eof = true;
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => block.truncate(old),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        // Complete lines only, unless at the end of input.
        let cut =
            if eof { block.len() } else { memchr::memrchr(b'\n', &block).map_or(0, |i| i + 1) };
        if cut == 0 {
            if !eof {
                // One line longer than a whole block: skip it, reject it once it ends.
                skipping.get_or_insert(next_line);
                skipped_bytes += block.len() as u64;
                block.clear();
            } else if let Some(line) = skipping.take() {
                // The over-long line ran to the end of the input.
                let reason = format!("line is over the limit of {} bytes", cfg.max_line_bytes);
                let b = Block {
                    parsed: Vec::new(),
                    skipped: Some(Rejection { line, field: None, reason }),
                    bytes: skipped_bytes,
                    last_line: line,
                };
                let _ = tx.send(Ok(b));
            }
            continue;
        }
        let mut body = &block[..cut];
        let mut skipped = None;
        if let Some(line) = skipping.take() {
            let end = memchr::memchr(b'\n', body).map_or(body.len(), |i| i + 1);
            let reason = format!("line is over the limit of {} bytes", cfg.max_line_bytes);
            skipped = Some(Rejection { line, field: None, reason });
            body = &body[end..];
            next_line += 1;
        }
        // Split into chunks at line ends, numbering their first lines.
        let mut chunks: Vec<(u64, &[u8])> = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let mut end = rest.len().min(CHUNK);
            if end < rest.len() {
                end = memchr::memchr(b'\n', &rest[end..]).map_or(rest.len(), |i| end + i + 1);
            }
            let (chunk, tail) = rest.split_at(end);
            chunks.push((next_line, chunk));
            next_line += memchr::memchr_iter(b'\n', chunk).count() as u64;
            if tail.is_empty() && !chunk.ends_with(b"\n") {
                next_line += 1;
            }
            rest = tail;
        }
        let mut parsed: Vec<Parsed> = chunks
            .par_iter()
            .map(|(first, chunk)| parse_chunk(chunk, *first, default_kind, cfg))
            .collect();
        for p in &mut parsed {
            occurrences(p, &mut seen);
        }
        let b = Block {
            parsed,
            skipped,
            bytes: cut as u64 + std::mem::take(&mut skipped_bytes),
            last_line: next_line - 1,
        };
        if tx.send(Ok(b)).is_err() {
            return;
        }
        block.drain(..cut);
    }
}

fn parse_chunk(
    chunk: &[u8],
    first_line: u64,
    default_kind: Option<EventKind>,
    cfg: &IngestConfig,
) -> Parsed {
    let mut p = Parsed {
        recs: Vec::with_capacity(chunk.len() / 100),
        buf: Vec::with_capacity(chunk.len() + chunk.len() / 4),
        rejections: Vec::new(),
    };
    for (i, line) in chunk.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = first_line + i as u64;
        let Ok(text) = std::str::from_utf8(line) else {
            p.rejections.push(Rejection {
                line: n,
                field: None,
                reason: "line is not valid UTF-8".into(),
            });
            continue;
        };
        match tenure_ingest::parse_json_line(text, default_kind, cfg) {
            Ok(e) => push_event(&mut p, &e),
            Err(e) => p.rejections.push(Rejection { line: n, field: e.field, reason: e.reason }),
        }
    }
    p
}
