//! The inputs of `tenure import` beyond Tenure's own JSONL and CSV: Parquet files, vendor
//! exports read through a mapping, and Stripe exports. The conversions live in the library
//! crates; this module opens files, reports rejections and progress.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tenure_core::event::EventKind;
use tenure_engine::Importer;
use tenure_ingest::RowSource;

/// A mapping named on the command line (`--map`): shipped, or a file.
pub struct Mapping(tenure_ingest::mapping::Mapping);

/// `--map NAME|FILE`: a shipped mapping by name, else a mapping file. A missing file or a
/// mistake in the mapping is a usage error (exit 2), found before anything is imported.
pub fn load_mapping(spec: &str) -> Result<Mapping> {
    if let Some(m) = tenure_ingest::mapping::shipped(spec) {
        return Ok(Mapping(m?));
    }
    let text = match std::fs::read_to_string(spec) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(crate::usage(format!(
                "--map {spec}: no shipped mapping of that name and no such file \
                 (tenure import --map list shows the shipped ones)"
            )))
        }
        Err(e) => bail!(crate::usage(format!("--map {spec}: cannot read it: {e}"))),
    };
    tenure_ingest::mapping::Mapping::parse(&text, spec)
        .map(Mapping)
        .map_err(|e| crate::usage(format!("mapping {e}")))
}

/// `tenure import --map list`: the shipped mappings, one a line with what they read.
pub fn print_mappings() -> Result<()> {
    let mut out = String::new();
    let width = tenure_ingest::mapping::SHIPPED.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, _) in tenure_ingest::mapping::SHIPPED {
        let m = tenure_ingest::mapping::shipped(name).expect("a shipped name")?;
        out += &format!("{name:width$}  {}\n", m.description());
    }
    out +=
        "\nA mapping file of your own: --map ./my-crm.toml (docs/connectors.md, \"Mappings\").\n";
    crate::out(&out)
}

/// Opens a file as rows: Parquet, or any file through a mapping.
pub fn open_rows(
    path: &Path,
    parquet: bool,
    mapping: Option<&Mapping>,
    kind: Option<EventKind>,
) -> Result<Box<dyn RowSource>> {
    let _ = kind;
    if let Some(m) = mapping {
        return open_mapped(path, m);
    }
    if parquet {
        if mapping.is_some() {
            bail!("a Parquet file is read by its column names; --map reads CSV and JSON exports")
        }
        return Ok(Box::new(tenure_ingest::parquet::ParquetRows::open(path, kind)?));
    }
    bail!("{}: read as rows, but neither Parquet nor through a mapping", path.display())
}

/// A file (or `-`, standard input) read through a mapping; the mapping names the event
/// types, so `--type` and the file's name play no part.
fn open_mapped(path: &Path, mapping: &Mapping) -> Result<Box<dyn RowSource>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(mapping.0.open(std::io::stdin())?));
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(mapping.0.open(f)?))
}

/// The files of a Stripe export: named files, and the JSON and CSV files under named
/// folders, in name order.
fn stripe_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                for e in
                    std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?
                {
                    let path = e?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if is_json(&path) || is_csv(&path) {
                        found.push(path);
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// A `.json`, `.jsonl` or `.ndjson` file, by its name.
fn is_json(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "json" | "jsonl" | "ndjson"))
}

/// A `.csv` file (a Dashboard export), by its name.
fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Whether a file is a JSON file of one object a line whose first object is an invoice.
fn invoice_lines(path: &Path) -> bool {
    use std::io::Read;
    if !is_json(path) {
        return false;
    }
    let Ok(f) = std::fs::File::open(path) else { return false };
    // The first line, if it ends within 1 MiB (an invoice is a few KiB).
    let mut head = Vec::new();
    if f.take(1 << 20).read_to_end(&mut head).is_err() {
        return false;
    }
    let Some(end) = memchr::memchr(b'\n', &head) else { return false };
    let first = String::from_utf8_lossy(&head[..end]);
    tenure_stripe::load::object_of(&first).as_deref() == Some("invoice")
}

/// An export file read whole (JSON or a Dashboard CSV export): its text, unless it cannot
/// be read as one, and the problems found reading it.
struct WholeFile {
    name: String,
    csv: bool,
    text: Option<String>,
    problems: Vec<tenure_stripe::Problem>,
}

fn read_whole(f: &Path, pb: &indicatif::ProgressBar) -> Result<WholeFile> {
    let name = f.display().to_string();
    let data = std::fs::read(f).with_context(|| format!("cannot read {name}"))?;
    pb.inc(data.len() as u64);
    let csv = is_csv(f);
    let mut whole = WholeFile { name, csv, text: None, problems: Vec::new() };
    let problem = |name: &str, reason: &str| tenure_stripe::Problem {
        origin: tenure_stripe::Origin { file: name.into(), line: 0, index: None },
        id: None,
        field: None,
        reason: reason.into(),
    };
    if data.starts_with(b"PAR1") {
        whole.problems.push(problem(&whole.name, "a Parquet file, not a Stripe export"));
        return Ok(whole);
    }
    whole.text = match String::from_utf8(data) {
        Ok(text) => Some(text),
        Err(_) if csv => {
            whole.problems.push(problem(&whole.name, "not UTF-8 text"));
            None
        }
        // As in a file read a block at a time: the lines that are not UTF-8 are refused.
        Err(e) => {
            let file = whole.name.as_str().into();
            Some(utf8_lines(e.as_bytes(), &file, 1, &mut whole.problems))
        }
    };
    Ok(whole)
}

/// The objects of files read whole, in their order, borrowing their text.
fn export_of(files: &[WholeFile]) -> tenure_stripe::Export<'_> {
    let mut export = tenure_stripe::Export::default();
    for f in files {
        export.problems.extend(f.problems.iter().cloned());
        match &f.text {
            Some(text) if f.csv => export.add_csv(&f.name, text),
            Some(text) => export.add_json(&f.name, text),
            None => {}
        }
    }
    export
}

/// The text of `bytes` with each line that is not UTF-8 left empty and refused (a problem
/// naming its line, numbered from `first_line`); the other lines as they are.
fn utf8_lines(
    bytes: &[u8],
    file: &std::sync::Arc<str>,
    first_line: u64,
    problems: &mut Vec<tenure_stripe::Problem>,
) -> String {
    let mut text = String::with_capacity(bytes.len());
    for (i, l) in bytes.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(l) {
            Ok(l) => text.push_str(l),
            Err(_) => problems.push(tenure_stripe::Problem {
                origin: tenure_stripe::Origin {
                    file: file.clone(),
                    line: first_line + i as u64,
                    index: None,
                },
                id: None,
                field: None,
                reason: "line is not UTF-8 text".into(),
            }),
        }
    }
    text
}

/// Bytes of a file of invoices read and converted at once: small enough that a block's
/// text and objects are still in the processor's caches when the block is converted
/// (measured on 1.15 GiB of invoices: 256 KiB to 1 MiB blocks took 15-20% less time than
/// 32 MiB ones, which also put every block's objects in fresh memory).
const INVOICE_BLOCK: usize = 512 << 10;

/// Blocks of invoices held at once while the next is parsed as the last converts.
const INVOICE_GROUP: usize = 16;

/// Converts a file of one invoice a line a block of whole lines at a time: a thread reads
/// the blocks, and each is parsed while the one before it converts. Parsed objects borrow
/// their block's text, so blocks come in groups that outlive their objects. The number of
/// objects read, or `None` if the file holds objects the invoices depend on (customers,
/// subscriptions, prices, ...), which must then be read before any invoice.
fn stream_invoices(
    f: &Path,
    conv: &mut tenure_stripe::Converter<'_>,
    framer: &mut Framer<'_>,
    ignored: &mut std::collections::BTreeMap<String, u64>,
    pb: &indicatif::ProgressBar,
) -> Result<Option<usize>> {
    let name = f.display().to_string();
    let input = std::fs::File::open(f).with_context(|| format!("cannot open {name}"))?;
    let sizes = (INVOICE_BLOCK, INVOICE_GROUP);
    stream_invoice_blocks(input, &name, sizes, conv, framer, ignored, pb)
}

/// [`stream_invoices`] of any input, in blocks of `sizes.0` bytes and groups of `sizes.1`.
fn stream_invoice_blocks(
    input: impl std::io::Read + Send,
    name: &str,
    (block_size, group_size): (usize, usize),
    conv: &mut tenure_stripe::Converter<'_>,
    framer: &mut Framer<'_>,
    ignored: &mut std::collections::BTreeMap<String, u64>,
    pb: &indicatif::ProgressBar,
) -> Result<Option<usize>> {
    let file: std::sync::Arc<str> = name.into();
    // Converts one block's objects: how many, or `None` if they hold context objects.
    let mut convert = |part: tenure_stripe::Export<'_>| {
        if part.has_context() {
            return None;
        }
        let objects = part.count();
        let tenure_stripe::Export { invoices, events, problems, ignored: other, .. } = part;
        for (kind, n) in other {
            *ignored.entry(kind).or_default() += n;
        }
        conv.add_problems(problems);
        conv.add_invoices(&invoices);
        conv.add_events(events);
        framer.add(&conv.take_rows());
        Some(objects)
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(group_size);
        let reader = scope.spawn(|| read_invoice_blocks(input, name, block_size, pb, tx));
        let mut objects = 0;
        loop {
            let group: Vec<InvoiceBlock> = rx.iter().take(group_size.max(1)).collect();
            if group.is_empty() {
                break;
            }
            let mut last: Option<tenure_stripe::Export<'_>> = None;
            for block in &group {
                let (part, converted) = rayon::join(
                    || block.parse(&file),
                    || last.take().map_or(Some(0), &mut convert),
                );
                // Dropping the receiver stops the reader at its next block.
                let Some(n) = converted else { return Ok(None) };
                objects += n;
                last = Some(part);
            }
            let Some(n) = last.map_or(Some(0), &mut convert) else { return Ok(None) };
            objects += n;
        }
        reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok(Some(objects))
    })
}

/// Whole lines of a file of invoices: their text (a line that is not UTF-8 left empty and
/// refused) and the number of the first.
struct InvoiceBlock {
    text: String,
    line: u64,
    problems: Vec<tenure_stripe::Problem>,
}

impl InvoiceBlock {
    /// The block's objects, borrowing its text (its problems are cloned: there are
    /// rarely any).
    fn parse(&self, file: &std::sync::Arc<str>) -> tenure_stripe::Export<'_> {
        let mut part =
            tenure_stripe::Export { problems: self.problems.clone(), ..Default::default() };
        part.add_lines(file, self.line, &self.text, Some("invoice"));
        part
    }
}

/// The reading side of [`stream_invoices`]: blocks of whole lines, in order.
fn read_invoice_blocks(
    mut input: impl std::io::Read,
    name: &str,
    size: usize,
    pb: &indicatif::ProgressBar,
    tx: std::sync::mpsc::SyncSender<InvoiceBlock>,
) -> Result<()> {
    let file: std::sync::Arc<str> = name.into();
    let mut block: Vec<u8> = Vec::with_capacity(size + (1 << 20));
    let (mut line, mut eof, mut want) = (1u64, false, size);
    loop {
        // Fill the block to `want` bytes, or to the end of the input.
        while block.len() < want && !eof {
            let old = block.len();
            block.resize(want, 0);
            match input.read(&mut block[old..]) {
                Ok(n) => {
                    block.truncate(old + n);
                    eof = n == 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => block.truncate(old),
                Err(e) => return Err(e).with_context(|| format!("reading {name}")),
            }
        }
        // Whole lines only, unless at the end.
        let cut =
            if eof { block.len() } else { memchr::memrchr(b'\n', &block).map_or(0, |i| i + 1) };
        if cut == 0 {
            if eof {
                break;
            }
            // A line longer than the block: read on until it ends (or the file does).
            want += size;
            continue;
        }
        want = size;
        // The block's lines leave as they are (no copy); what follows them stays.
        let rest = block[cut..].to_vec();
        let mut bytes = std::mem::replace(&mut block, rest);
        bytes.truncate(cut);
        let lines = memchr::memchr_iter(b'\n', &bytes).count() as u64;
        if line == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
            bytes.drain(..3);
        }
        let mut problems = Vec::new();
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => utf8_lines(e.as_bytes(), &file, line, &mut problems),
        };
        let next = InvoiceBlock { text, line, problems };
        line += lines;
        pb.inc(cut as u64);
        if tx.send(next).is_err() {
            break;
        }
    }
    Ok(())
}

/// Converts Stripe exports (files or folders) into events and imports them: every object
/// that cannot be used is reported with its file, line or index, id, field and reason.
pub fn import_stripe(
    importer: &mut Importer,
    paths: &[PathBuf],
    opts: &tenure_stripe::Options,
    acks: bool,
) -> Result<ExitCode> {
    let t0 = Instant::now();
    let files = stripe_files(paths)?;
    if files.is_empty() {
        bail!(crate::usage("no .json, .jsonl or .csv files in the Stripe export"));
    }
    let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let pb = crate::bar(bytes, "reading the Stripe export");
    // Files of one invoice a line (the bulk of an export) are converted a block at a time
    // once everything else is read: memory then holds a block of invoices, not all of them.
    let mut streamed = Vec::new();
    let mut whole = Vec::new();
    for f in &files {
        if invoice_lines(f) {
            streamed.push(f);
            continue;
        }
        whole.push(read_whole(f, &pb)?);
    }
    let cfg = importer.config().clone();
    {
        let export = export_of(&whole);
        let mut framer = Framer::new(&cfg);
        let mut objects = export.count();
        let mut ignored = export.ignored.clone();
        let mut conv = tenure_stripe::Converter::new(&export, opts);
        conv.add_invoices(&export.invoices);
        framer.add(&conv.take_rows());
        let mut mixed = false;
        for f in &streamed {
            match stream_invoices(f, &mut conv, &mut framer, &mut ignored, &pb)? {
                Some(n) => objects += n,
                None => {
                    mixed = true;
                    break;
                }
            }
        }
        if !mixed {
            let stored = finish_and_store(conv, framer, importer, acks, &pb, t0)?;
            return Ok(stored.report(objects, files.len(), &ignored));
        }
    }
    // A file that began with invoices holds customers, subscriptions or prices too, which
    // the invoices before them needed: read it whole, after the others, as any other file.
    // Nothing is stored yet: what was framed is dropped.
    let done: u64 = files
        .iter()
        .filter(|f| !streamed.contains(f))
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    pb.set_position(done);
    for f in &streamed {
        whole.push(read_whole(f, &pb)?);
    }
    let export = export_of(&whole);
    let objects = export.count();
    let ignored = export.ignored.clone();
    let mut framer = Framer::new(&cfg);
    let mut conv = tenure_stripe::Converter::new(&export, opts);
    conv.add_invoices(&export.invoices);
    framer.add(&conv.take_rows());
    let stored = finish_and_store(conv, framer, importer, acks, &pb, t0)?;
    Ok(stored.report(objects, files.len(), &ignored))
}

/// What a Stripe import did, for its summary.
struct Stored {
    sum: tenure_engine::FileSummary,
    problems: Vec<tenure_stripe::Problem>,
    skipped: std::collections::BTreeMap<&'static str, u64>,
    events: u64,
    rejected: usize,
    /// Seconds from the start to the end of the conversion, and to the last commit.
    converted: f64,
    total: f64,
}

impl Stored {
    /// Prints the summary; the exit code (3: something could not be used or stored).
    fn report(
        &self,
        objects: usize,
        files: usize,
        ignored: &std::collections::BTreeMap<String, u64>,
    ) -> ExitCode {
        let p = &self.sum.progress;
        eprintln!(
            "stripe: {objects} objects from {files} files ({:.0} objects/s read and converted), {} events: {} stored, {} already present, {} rejected; {} objects could not be used ({:.2} s: read and converted {:.2}, stored {:.2} more)",
            objects as f64 / self.converted.max(1e-9),
            self.events,
            p.accepted,
            p.duplicates,
            self.rejected,
            self.problems.len(),
            self.total,
            self.converted,
            self.total - self.converted,
        );
        for (what, n) in &self.skipped {
            eprintln!("  left out: {n} {what}");
        }
        for (kind, n) in ignored {
            eprintln!("  left out: {n} objects of type {kind} (not read by Tenure)");
        }
        let bad = self.rejected + self.problems.len();
        if bad > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS }
    }
}

/// The end of a conversion (credit notes, each item's timeline, events) on a thread of its
/// own while what was framed so far is stored, its rows stored after them as they are
/// framed: every block has been read, so nothing framed can change any more.
fn finish_and_store(
    conv: tenure_stripe::Converter<'_>,
    mut framer: Framer<'_>,
    importer: &mut Importer,
    acks: bool,
    pb: &indicatif::ProgressBar,
    t0: Instant,
) -> Result<Stored> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let early = std::mem::take(&mut framer.framed);
    let framed = early.iter().map(tenure_engine::Framed::len).sum::<usize>();
    // The key sets sized for every event, the conversion's last ones included.
    let expected = framed + conv.rows_to_come();
    let total = AtomicU64::new(framed as u64);
    pb.finish_and_clear();
    let bar = crate::bar(expected as u64, "storing");
    std::thread::scope(|scope| {
        // `None` says the conversion is done: a thread that stops without it (a panic)
        // must not have the events before it committed as if they were all.
        let (tx, rx) = std::sync::mpsc::channel::<Option<tenure_engine::Framed>>();
        let total = &total;
        let tail = scope.spawn(move || {
            let converted = conv.finish();
            let secs = t0.elapsed().as_secs_f64();
            // Framed a slice at a time, each sent as soon as framed.
            'send: for rows in converted.rows.chunks(1 << 16) {
                framer.add(rows);
                for f in framer.framed.drain(..) {
                    total.fetch_add(f.len() as u64, Ordering::Relaxed);
                    if tx.send(Some(f)).is_err() {
                        // The store failed: its error is reported.
                        break 'send;
                    }
                }
            }
            let _ = tx.send(None);
            (framer.rows, framer.rejected, converted.problems, converted.skipped, secs)
        });
        let rest = std::iter::from_fn(|| match rx.recv() {
            Ok(batch) => batch,
            Err(_) => panic!("the Stripe conversion stopped before its end"),
        });
        let mut on_commit = |p: &tenure_engine::Progress| {
            bar.set_length(total.load(Ordering::Relaxed));
            bar.set_position(p.bytes);
            if acks {
                eprintln!("acked {}", p.lines);
            }
        };
        let sum = importer.import_framed(early.into_iter().chain(rest), expected, &mut on_commit);
        let (events, rejected, problems, skipped, converted) =
            tail.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        bar.finish_and_clear();
        for p in &problems {
            eprintln!("{p}");
        }
        for r in &rejected {
            eprintln!("{r}");
        }
        let sum = sum.context("importing the Stripe export")?;
        Ok(Stored {
            sum,
            problems,
            skipped,
            events,
            rejected: rejected.len(),
            converted,
            total: t0.elapsed().as_secs_f64(),
        })
    })
}

/// Converted Stripe rows validated (as any JSON line's fields are) and framed as log
/// records as they come, in parallel: a large export is then held as framed records. A row
/// that fails validation is named by the object it came from.
struct Framer<'c> {
    cfg: &'c tenure_ingest::IngestConfig,
    framed: Vec<tenure_engine::Framed>,
    /// Rows seen so far (their numbers run on across blocks).
    rows: u64,
    rejected: Vec<String>,
    /// Bytes and records framed so far.
    bytes: u64,
    framed_rows: u64,
}

impl<'c> Framer<'c> {
    fn new(cfg: &'c tenure_ingest::IngestConfig) -> Framer<'c> {
        Framer { cfg, framed: Vec::new(), rows: 0, rejected: Vec::new(), bytes: 0, framed_rows: 0 }
    }

    fn add(&mut self, rows: &[tenure_stripe::Row]) {
        use rayon::prelude::*;
        const CHUNK: usize = 4096;
        let (first, cfg) = (self.rows, self.cfg);
        self.rows += rows.len() as u64;
        // Each chunk's buffer sized from the bytes a row took so far (with a margin).
        let per_row = (self.bytes / self.framed_rows.max(1)) as usize * 9 / 8 + 16;
        let parts: Vec<(tenure_engine::Framed, Vec<String>)> = rows
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, chunk)| {
                let mut framed = tenure_engine::Framed::with_capacity(
                    chunk.len(),
                    if first == 0 { 0 } else { chunk.len() * per_row },
                );
                let mut bad = Vec::new();
                for (i, row) in chunk.iter().enumerate() {
                    let line = first + (c * CHUNK + i) as u64 + 1;
                    let event = match &row.event {
                        tenure_stripe::RowEvent::Fields(f) => f.validate(cfg),
                        tenure_stripe::RowEvent::Json(j) => {
                            tenure_ingest::parse_json_line(j, None, cfg)
                        }
                    };
                    match event {
                        Ok(e) => framed.push(line, &e),
                        Err(e) => bad.push(match &e.field {
                            Some(f) => format!("{}: {}: {f}: {}", row.origin, row.id, e.reason),
                            None => format!("{}: {}: {}", row.origin, row.id, e.reason),
                        }),
                    }
                }
                (framed, bad)
            })
            .collect();
        for (framed, bad) in parts {
            self.bytes += framed.bytes() as u64;
            self.framed_rows += framed.len() as u64;
            self.framed.push(framed);
            self.rejected.extend(bad);
        }
    }
}

/// `tenure gen --format stripe`: the generated billing history (accounts, subscriptions,
/// invoices) rewritten as Stripe objects under OUT/stripe/, the native files removed.
pub fn gen_stripe(
    out: &Path,
    mut summary: tenure_sim::Summary,
    horizon: tenure_core::time::Timestamp,
) -> Result<tenure_sim::Summary> {
    let cfg = tenure_ingest::IngestConfig::defaults(None);
    let mut events = Vec::new();
    let native = ["accounts.jsonl", "subscriptions.jsonl", "invoices.jsonl"];
    for f in native {
        let path = out.join(f);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let (ok, bad) = tenure_ingest::parse_jsonl_block(&text, 1, None, &cfg);
        if let Some(b) = bad.first() {
            bail!("{}:{b}: the generated file does not parse", path.display());
        }
        events.extend(ok.into_iter().map(|(_, e)| e));
    }
    let objects = tenure_stripe::synth::write(&events, horizon.secs());
    drop(events);
    let dir = out.join("stripe");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("customers.jsonl", &objects.customers),
        ("subscriptions.jsonl", &objects.subscriptions),
        ("invoices.jsonl", &objects.invoices),
        ("credit_notes.jsonl", &objects.credit_notes),
        ("prices.jsonl", &objects.prices),
    ];
    for f in native {
        let path = out.join(f);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        summary.files.retain(|p| p != &path);
    }
    for (name, lines) in files {
        let path = dir.join(name);
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("  stripe/{name:<20} {:>10} objects", lines.len());
        summary.files.push(path);
    }
    eprintln!(
        "import with: tenure import --from stripe {} --account-key {}",
        dir.display(),
        tenure_stripe::synth::ACCOUNT_KEY
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of a file of invoices reaches the conversion once, in order, with its
    /// number, whatever the blocks: lines longer than a block, the last line without a
    /// newline (longer than a block too), a byte-order mark, a line that is not UTF-8.
    #[test]
    fn blocks_of_invoice_lines_lose_nothing() {
        let invoice = |n: usize, pad: usize| {
            format!(
                r#"{{"id":"in_{n}","object":"invoice","customer":"cus_1","created":1,"description":"{}"}}"#,
                "x".repeat(pad)
            )
        };
        let mut text = b"\xef\xbb\xbf".to_vec();
        for n in 1..=40 {
            text.extend_from_slice(invoice(n, (n * 37) % 150).as_bytes());
            text.push(b'\n');
        }
        text.extend_from_slice(b"{\"id\":\"in_\xff\"}\n");
        text.extend_from_slice(invoice(42, 300).as_bytes());
        for size in [64, 100, 257, 1 << 20] {
            let (tx, rx) = std::sync::mpsc::sync_channel(100);
            let pb = indicatif::ProgressBar::hidden();
            read_invoice_blocks(&text[..], "invoices.jsonl", size, &pb, tx).unwrap();
            let blocks: Vec<InvoiceBlock> = rx.into_iter().collect();
            let file = "invoices.jsonl".into();
            let parts: Vec<tenure_stripe::Export<'_>> =
                blocks.iter().map(|b| b.parse(&file)).collect();
            let ids: Vec<(u64, String)> = parts
                .iter()
                .flat_map(|p| p.invoices.iter().map(|(o, i)| (o.line, i.id.to_string())))
                .collect();
            let want: Vec<(u64, String)> = (1..=40)
                .map(|n| (n as u64, format!("in_{n}")))
                .chain([(42, "in_42".to_string())])
                .collect();
            assert_eq!(ids, want, "blocks of {size} bytes");
            let problems: Vec<String> =
                parts.iter().flat_map(|p| p.problems.iter().map(|x| x.to_string())).collect();
            assert_eq!(problems, ["invoices.jsonl:41: line is not UTF-8 text"], "{size}");
            assert_eq!(pb.position(), text.len() as u64, "{size}");
        }
    }

    /// A file of invoices: `n` monthly invoices of three customers' items, one with an
    /// escaped string, and a line that is not JSON.
    fn invoice_file(n: usize) -> String {
        let mut text = String::new();
        for i in 0..n {
            let (k, t) = (i % 3, 1_700_000_000 + (i / 3) as i64 * 2_592_000);
            let nickname = if i == 7 { r#"basic \"monthly\""# } else { "basic" };
            text.push_str(&format!(
                r#"{{"id":"in_{i}","object":"invoice","customer":"cus_{k}","created":{t},"status":"paid","currency":"usd","total":4900,"subtotal":4900,"total_excluding_tax":4900,"status_transitions":{{"paid_at":{t}}},"lines":{{"object":"list","has_more":false,"data":[{{"id":"il_{i}","object":"line_item","amount":{amount},"currency":"usd","period":{{"start":{t},"end":{e}}},"quantity":{q},"subscription":"sub_{k}","subscription_item":"si_{k}","price":{{"id":"price_1","object":"price","nickname":"{nickname}","unit_amount":4900,"currency":"usd","recurring":{{"interval":"month","interval_count":1}}}}}}]}}}}"#,
                amount = 4900 * (1 + i % 2),
                q = 1 + i % 2,
                e = t + 2_592_000,
            ));
            text.push('\n');
            if i == 11 {
                text.push_str("{not json\n");
            }
        }
        text
    }

    /// What a conversion framed and gave at its end: rows, records and bytes framed,
    /// rejections, the last rows as JSON, and the problems.
    fn converted(
        conv: tenure_stripe::Converter<'_>,
        mut framer: Framer<'_>,
    ) -> (u64, u64, u64, Vec<String>, Vec<String>, Vec<String>) {
        let last = conv.finish();
        framer.add(&last.rows);
        let rows = last.rows.iter().map(tenure_stripe::Row::json).collect();
        let problems = last.problems.iter().map(ToString::to_string).collect();
        (framer.rows, framer.framed_rows, framer.bytes, framer.rejected, rows, problems)
    }

    /// `text` as a file of invoices streamed in blocks and groups of `sizes`.
    fn stream(
        text: &str,
        sizes: (usize, usize),
        conv: &mut tenure_stripe::Converter<'_>,
        framer: &mut Framer<'_>,
    ) -> Result<Option<usize>> {
        let mut ignored = std::collections::BTreeMap::new();
        let pb = indicatif::ProgressBar::hidden();
        stream_invoice_blocks(
            text.as_bytes(),
            "invoices.jsonl",
            sizes,
            conv,
            framer,
            &mut ignored,
            &pb,
        )
    }

    /// Streamed in blocks and groups of any size (a group boundary, blocks of one line,
    /// blocks shorter than a line), a file of invoices converts and frames as it does read
    /// whole.
    #[test]
    fn invoices_streamed_in_groups_convert_as_read_whole() {
        let text = invoice_file(40);
        let cfg = tenure_ingest::IngestConfig::defaults(None);
        let opts = tenure_stripe::Options::default();
        let context = tenure_stripe::Export::default();
        let mut whole = tenure_stripe::Export::default();
        whole.add_json("invoices.jsonl", &text);
        let mut conv = tenure_stripe::Converter::new(&whole, &opts);
        let mut framer = Framer::new(&cfg);
        conv.add_invoices(&whole.invoices);
        framer.add(&conv.take_rows());
        let want = converted(conv, framer);
        assert!(want.0 > 40 && want.3.is_empty() && want.5.len() == 1, "{want:?}");
        for sizes in [(300, 3), (1, 1), (2_000, 2), (700, 16), (1 << 20, 16)] {
            let mut conv = tenure_stripe::Converter::new(&context, &opts);
            let mut framer = Framer::new(&cfg);
            let objects = stream(&text, sizes, &mut conv, &mut framer).unwrap();
            assert_eq!(objects, Some(40), "{sizes:?}");
            assert_eq!(converted(conv, framer), want, "{sizes:?}");
        }
    }

    /// A customer among the invoices, even in a later group of blocks, stops the stream:
    /// the file is then read whole.
    #[test]
    fn context_in_a_later_block_stops_the_stream() {
        let mut text = invoice_file(30);
        text.push_str(r#"{"id":"cus_9","object":"customer","created":1700000000}"#);
        text.push('\n');
        text.push_str(&invoice_file(3));
        let cfg = tenure_ingest::IngestConfig::defaults(None);
        let opts = tenure_stripe::Options::default();
        let context = tenure_stripe::Export::default();
        for sizes in [(300, 3), (1 << 20, 16)] {
            let mut conv = tenure_stripe::Converter::new(&context, &opts);
            let mut framer = Framer::new(&cfg);
            let r = stream(&text, sizes, &mut conv, &mut framer);
            assert_eq!(r.unwrap(), None, "{sizes:?}");
        }
    }

    /// What a file of invoices gives: each invoice's line and id, in order, and the
    /// problems (sorted: a file read whole reports the lines that are not UTF-8 before the
    /// others, a file read a block at a time block by block).
    fn outcome(parts: &[tenure_stripe::Export<'_>]) -> (Vec<(u64, String)>, Vec<String>) {
        let ids = parts
            .iter()
            .flat_map(|p| p.invoices.iter().map(|(o, i)| (o.line, i.id.to_string())))
            .collect();
        let mut problems: Vec<String> =
            parts.iter().flat_map(|p| p.problems.iter().map(|x| x.to_string())).collect();
        problems.sort();
        (ids, problems)
    }

    proptest::proptest! {
        /// Read a block at a time, any file that begins with an invoice gives what the same
        /// file read whole gives: the same invoices at the same lines, the same problems.
        #[test]
        fn blocks_give_what_the_whole_file_gives(
            lines in proptest::collection::vec(0u8..7, 0..40),
            size in 16usize..600,
            bom: bool,
            newline_at_end: bool,
        ) {
            let mut text: Vec<u8> = if bom { b"\xef\xbb\xbf".to_vec() } else { Vec::new() };
            let kinds = std::iter::once(0).chain(lines);
            for (n, kind) in kinds.enumerate() {
                if n > 0 {
                    text.push(b'\n');
                }
                let invoice = format!(
                    r#"{{"id":"in_{n}","object":"invoice","customer":"cus_1","created":{n}}}"#
                );
                match kind {
                    0 | 1 => text.extend_from_slice(invoice.as_bytes()),
                    2 => {}
                    3 => text.extend_from_slice(b"   "),
                    4 => text.extend_from_slice(format!("{invoice}\r").as_bytes()),
                    5 => text.extend_from_slice(b"{\"id\":\"in_\xfe\"}"),
                    _ => text.extend_from_slice(b"{not json"),
                }
            }
            if newline_at_end {
                text.push(b'\n');
            }
            let (tx, rx) = std::sync::mpsc::sync_channel(1000);
            let pb = indicatif::ProgressBar::hidden();
            read_invoice_blocks(&text[..], "f.jsonl", size, &pb, tx).unwrap();
            let blocks: Vec<InvoiceBlock> = rx.into_iter().collect();
            let file = "f.jsonl".into();
            let streamed: Vec<tenure_stripe::Export<'_>> =
                blocks.iter().map(|b| b.parse(&file)).collect();

            let mut problems = Vec::new();
            let body = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text);
            let body = match std::str::from_utf8(body) {
                Ok(t) => t.to_string(),
                Err(_) => utf8_lines(body, &"f.jsonl".into(), 1, &mut problems),
            };
            let mut whole = tenure_stripe::Export { problems, ..Default::default() };
            whole.add_json("f.jsonl", &body);
            proptest::prop_assert_eq!(outcome(&streamed), outcome(std::slice::from_ref(&whole)));
        }
    }
}
