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

/// Reads a whole export file into `export` (JSON or a Dashboard CSV export).
fn read_whole(
    f: &Path,
    export: &mut tenure_stripe::Export,
    pb: &indicatif::ProgressBar,
) -> Result<()> {
    let name = f.display().to_string();
    let data = std::fs::read(f).with_context(|| format!("cannot read {name}"))?;
    pb.inc(data.len() as u64);
    let problem = |reason: &str| tenure_stripe::Problem {
        origin: tenure_stripe::Origin { file: name.as_str().into(), line: 0, index: None },
        id: None,
        field: None,
        reason: reason.into(),
    };
    if data.starts_with(b"PAR1") {
        export.problems.push(problem("a Parquet file, not a Stripe export"));
        return Ok(());
    }
    let csv = is_csv(f);
    let text = match String::from_utf8(data) {
        Ok(text) => text,
        Err(_) if csv => {
            export.problems.push(problem("not UTF-8 text"));
            return Ok(());
        }
        // As in a file read a block at a time: the lines that are not UTF-8 are refused.
        Err(e) => utf8_lines(e.as_bytes(), &name.as_str().into(), 1, &mut export.problems),
    };
    if csv {
        export.add_csv(&name, &text);
    } else {
        export.add_json(&name, &text);
    }
    Ok(())
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

/// Bytes of a file of invoices read and converted at once.
const INVOICE_BLOCK: usize = 32 << 20;

/// Converts a file of one invoice a line a block of whole lines at a time: a thread reads
/// and parses the next block while this one converts the last. The number of objects
/// read, or `None` if the file holds objects the invoices depend on (customers,
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
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reader = scope.spawn(|| read_invoice_blocks(input, &name, INVOICE_BLOCK, pb, tx));
        let mut objects = 0;
        for part in rx {
            let part: tenure_stripe::Export = part;
            if part.has_context() {
                // Dropping the receiver stops the reader at its next block.
                return Ok(None);
            }
            objects += part.count();
            let tenure_stripe::Export { invoices, events, problems, ignored: other, .. } = part;
            for (kind, n) in other {
                *ignored.entry(kind).or_default() += n;
            }
            conv.add_problems(problems);
            conv.add_invoices(&invoices);
            conv.add_events(events);
            framer.add(conv.take_rows());
        }
        reader.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok(Some(objects))
    })
}

/// The reading side of [`stream_invoices`]: blocks of whole lines, parsed, in order.
fn read_invoice_blocks(
    mut input: impl std::io::Read,
    name: &str,
    size: usize,
    pb: &indicatif::ProgressBar,
    tx: std::sync::mpsc::SyncSender<tenure_stripe::Export>,
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
        let bytes = &block[..cut];
        let bytes =
            if line == 1 { bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes) } else { bytes };
        let mut part = tenure_stripe::Export::default();
        match std::str::from_utf8(bytes) {
            Ok(text) => part.add_lines(&file, line, text, Some("invoice")),
            Err(_) => {
                let text = utf8_lines(bytes, &file, line, &mut part.problems);
                part.add_lines(&file, line, &text, Some("invoice"));
            }
        }
        line += memchr::memchr_iter(b'\n', &block[..cut]).count() as u64;
        pb.inc(cut as u64);
        block.drain(..cut);
        if tx.send(part).is_err() {
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
    let mut export = tenure_stripe::Export::default();
    let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let pb = crate::bar(bytes, "reading the Stripe export");
    // Files of one invoice a line (the bulk of an export) are converted a block at a time
    // once everything else is read: memory then holds a block of invoices, not all of them.
    let mut streamed = Vec::new();
    for f in &files {
        if invoice_lines(f) {
            streamed.push(f);
            continue;
        }
        read_whole(f, &mut export, &pb)?;
    }
    let cfg = importer.config().clone();
    let mut framer = Framer::new(&cfg);
    let mut objects = export.count();
    let mut ignored = export.ignored.clone();
    let converted = 'converted: {
        let mut conv = tenure_stripe::Converter::new(&export, opts);
        conv.add_invoices(&export.invoices);
        framer.add(conv.take_rows());
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
            break 'converted conv.finish();
        }
        // A file that began with invoices holds customers, subscriptions or prices too,
        // which the invoices before them needed: read it whole, as any other file. Nothing
        // is stored yet: what was framed is dropped.
        drop(conv);
        framer = Framer::new(&cfg);
        let whole: u64 = files
            .iter()
            .filter(|f| !streamed.contains(f))
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        pb.set_position(whole);
        for f in &streamed {
            read_whole(f, &mut export, &pb)?;
        }
        objects = export.count();
        ignored = export.ignored.clone();
        tenure_stripe::convert(&export, opts)
    };
    drop(export);
    let tenure_stripe::Converted { rows, problems, skipped } = converted;
    framer.add(rows);
    pb.finish_and_clear();
    let read_secs = t0.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for p in &problems {
        eprintln!("{p}");
    }
    for r in &framer.rejected {
        eprintln!("{r}");
    }
    let Framer { framed, rows: events, rejected, .. } = framer;
    let pb = crate::bar(events - rejected.len() as u64, "storing");
    let mut on_commit = |p: &tenure_engine::Progress| {
        pb.set_position(p.bytes);
        if acks {
            eprintln!("acked {}", p.lines);
        }
    };
    let sum =
        importer.import_framed(framed, &mut on_commit).context("importing the Stripe export")?;
    pb.finish_and_clear();
    let p = &sum.progress;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "stripe: {objects} objects from {} files ({:.0} objects/s read and converted), {events} events: {} stored, {} already present, {} rejected; {} objects could not be used ({:.2} s: read and converted {read_secs:.2}, stored {:.2})",
        files.len(),
        objects as f64 / read_secs.max(1e-9),
        p.accepted,
        p.duplicates,
        rejected.len(),
        problems.len(),
        secs,
        t2.elapsed().as_secs_f64(),
    );
    for (what, n) in &skipped {
        eprintln!("  left out: {n} {what}");
    }
    for (kind, n) in &ignored {
        eprintln!("  left out: {n} objects of type {kind} (not read by Tenure)");
    }
    let bad = rejected.len() + problems.len();
    Ok(if bad > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
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
}

impl<'c> Framer<'c> {
    fn new(cfg: &'c tenure_ingest::IngestConfig) -> Framer<'c> {
        Framer { cfg, framed: Vec::new(), rows: 0, rejected: Vec::new() }
    }

    fn add(&mut self, rows: Vec<tenure_stripe::Row>) {
        use rayon::prelude::*;
        const CHUNK: usize = 4096;
        let (first, cfg) = (self.rows, self.cfg);
        self.rows += rows.len() as u64;
        let parts: Vec<(tenure_engine::Framed, Vec<String>)> = rows
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, chunk)| {
                let mut framed = tenure_engine::Framed::default();
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
            let parts: Vec<tenure_stripe::Export> = rx.into_iter().collect();
            let ids: Vec<(u64, String)> = parts
                .iter()
                .flat_map(|p| p.invoices.iter().map(|(o, i)| (o.line, i.id.clone())))
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

    /// What a file of invoices gives: each invoice's line and id, in order, and the
    /// problems (sorted: a file read whole reports the lines that are not UTF-8 before the
    /// others, a file read a block at a time block by block).
    fn outcome(parts: &[tenure_stripe::Export]) -> (Vec<(u64, String)>, Vec<String>) {
        let ids = parts
            .iter()
            .flat_map(|p| p.invoices.iter().map(|(o, i)| (o.line, i.id.clone())))
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
            let streamed: Vec<tenure_stripe::Export> = rx.into_iter().collect();

            let mut whole = tenure_stripe::Export::default();
            let body = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&text);
            let body = match std::str::from_utf8(body) {
                Ok(t) => t.to_string(),
                Err(_) => utf8_lines(body, &"f.jsonl".into(), 1, &mut whole.problems),
            };
            whole.add_json("f.jsonl", &body);
            proptest::prop_assert_eq!(outcome(&streamed), outcome(std::slice::from_ref(&whole)));
        }
    }
}
