//! `tenure stats`: the statistics library on any CSV, the way lifelines or lifetimes are
//! used from a notebook. Reads columns, fits, prints JSON (or a short table).

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value as Json, json};
use std::path::{Path, PathBuf};
use tenure_stats::StatsError;
use tenure_stats::cox::{CoxInput, Ties};
use tenure_stats::km::CiMethod;

#[derive(Subcommand)]
pub enum StatsCmd {
    /// Kaplan-Meier survival curves (per group), median with its CI, survival at given times
    Km {
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        surv: Surv,
        /// Column naming the group of each row (one curve per group)
        #[arg(long)]
        group: Option<String>,
        /// Times at which to report the survival (default: every distinct time)
        #[arg(long, value_delimiter = ',')]
        at: Vec<f64>,
        /// Pointwise confidence intervals: loglog | log | plain
        #[arg(long, default_value = "loglog")]
        ci: String,
        /// Also report the restricted mean survival time up to this time
        #[arg(long)]
        tau: Option<f64>,
    },
    /// Log-rank test of equal survival across the groups of a column
    Logrank {
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        surv: Surv,
        #[arg(long)]
        group: String,
    },
    /// Cox proportional hazards regression
    Cox {
        #[command(flatten)]
        io: Io,
        #[command(flatten)]
        surv: Surv,
        /// Covariate columns (text columns become indicator columns, first level left out)
        #[arg(long, value_delimiter = ',', required = true)]
        covariates: Vec<String>,
        #[arg(long, value_enum, default_value = "efron")]
        ties: TiesArg,
        /// Columns whose combinations define strata (a baseline hazard each)
        #[arg(long, value_delimiter = ',')]
        strata: Vec<String>,
        /// L2 penalty on standardised coefficients, per observation (as lifelines' penalizer)
        #[arg(long, default_value_t = 0.0)]
        l2: f64,
        /// Also give each row's predicted survival at these times (`predictions`, in input
        /// order)
        #[arg(long, value_delimiter = ',')]
        predict_at: Vec<f64>,
    },
    /// Shifted-beta-geometric retention model of a cohort's survivor counts
    Sbg {
        /// Customers still active at the start of each period: N0,N1,N2,...
        #[arg(long, value_delimiter = ',', required = true)]
        survivors: Vec<f64>,
        /// Periods to project beyond the data
        #[arg(long, default_value_t = 0)]
        project: usize,
        /// Discount rate per period for DEL and DERL
        #[arg(long, default_value_t = 0.1)]
        discount: f64,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// BG/NBD model of repeat purchases (frequency, recency, T per customer)
    Bgnbd {
        #[command(flatten)]
        io: Io,
        #[arg(long)]
        frequency: String,
        #[arg(long)]
        recency: String,
        #[arg(long)]
        t: String,
    },
    /// Gamma-Gamma model of spend per transaction (customers with repeat purchases)
    Gammagamma {
        #[command(flatten)]
        io: Io,
        #[arg(long)]
        frequency: String,
        #[arg(long)]
        monetary: String,
    },
    /// Gradient-boosted trees, cross-validated: out-of-fold AUC, PR AUC, log-loss, Brier,
    /// calibration error.
    ///
    /// Without any of the tree settings below, each training fold chooses its own by an
    /// inner stratified 3-fold cross-validation (repeated on three shuffles up to 5,000 rows,
    /// two up to 20,000): stumps to 31 leaves, with or without a penalty, early-stopped at
    /// learning rate 0.05 (at most 3,000 rounds); the lowest held-out log-loss wins and the
    /// model is the mean of its inner models. Above 200,000 training rows the choice is made
    /// on a sample and the winner refitted on every row. Give any tree setting to fix them all instead (the rest at LightGBM's defaults:
    /// 100 rounds, rate 0.1, 31 leaves, 20 rows a leaf, no penalty).
    Gbm {
        #[command(flatten)]
        io: Io,
        /// 0/1, true/false or yes/no
        #[arg(long)]
        target: String,
        /// Feature columns (text columns are categorical; empty cells are missing)
        #[arg(long, value_delimiter = ',', required = true)]
        features: Vec<String>,
        /// Cross-validation folds (rows assigned at random, seeded)
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Seed of the fold assignment (and of the inner folds that choose the settings)
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// A column holding each row's fold (0..K-1) instead of a seeded assignment
        #[arg(long)]
        fold_column: Option<String>,
        /// Boosting rounds (fixes the settings; default 100)
        #[arg(long)]
        rounds: Option<usize>,
        /// Shrinkage of each tree's output (fixes the settings; default 0.1)
        #[arg(long)]
        learning_rate: Option<f64>,
        /// Leaves per tree, grown best-first, 2 to 4096 (fixes the settings; default 31)
        #[arg(long)]
        num_leaves: Option<usize>,
        /// The fewest rows a leaf may hold; larger: smoother trees on small tables (fixes the
        /// settings; default 20)
        #[arg(long)]
        min_data_in_leaf: Option<usize>,
        /// L2 penalty on the leaf values (fixes the settings; default 0, none)
        #[arg(long)]
        lambda_l2: Option<f64>,
        /// Also report each feature's gain importance and mean absolute contribution to the
        /// log-odds (TreeSHAP) over the out-of-fold rows (slower on large data; with chosen
        /// settings, the mean over the fold's averaged models)
        #[arg(long)]
        explain: bool,
    },
    /// Logistic regression (Newton / IRLS) with standard errors
    Logit {
        #[command(flatten)]
        io: Io,
        /// 0/1, true/false or yes/no
        #[arg(long)]
        target: String,
        #[arg(long, value_delimiter = ',', required = true)]
        features: Vec<String>,
        /// L2 penalty on the coefficients (not the intercept)
        #[arg(long, default_value_t = 0.0)]
        l2: f64,
    },
}

#[derive(Args)]
pub struct Io {
    /// CSV file with a header row
    #[arg(long)]
    input: PathBuf,
    /// json, or table (one `path  value` line per figure)
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

#[derive(Args)]
pub struct Surv {
    /// Column of durations (non-negative numbers)
    #[arg(long)]
    duration: String,
    /// Column of event indicators: 1/0, true/false, yes/no (0 = censored)
    #[arg(long)]
    event: String,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Json,
    Table,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TiesArg {
    Efron,
    Breslow,
}

/// How a needed column is read.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Num,
    Flag,
    Text,
}

/// A column as read: numbers (NaN where a value is not one), flags or text, and the first
/// value that did not parse (line, text).
struct Col {
    nums: Vec<f64>,
    flags: Vec<bool>,
    text: Vec<String>,
    bad: Option<(usize, String)>,
    /// A non-empty value that is not a number (empty cells are only missing).
    text_seen: bool,
}

/// The needed columns of a CSV, parsed while reading (a million-row file is never held as
/// text).
struct Csv {
    path: PathBuf,
    /// By name and kind: a column may be asked for twice (a covariate and a stratum).
    cols: std::collections::HashMap<(String, Kind), Col>,
}

/// An input problem: the user's to fix (exit 2).
fn bad(msg: String) -> anyhow::Error {
    crate::usage(msg)
}

fn flag(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "y" | "t" => Some(true),
        "0" | "0.0" | "false" | "no" | "n" | "f" => Some(false),
        _ => None,
    }
}

type Columns = std::collections::HashMap<(String, Kind), Col>;

fn empty_col() -> Col {
    Col { nums: Vec::new(), flags: Vec::new(), text: Vec::new(), bad: None, text_seen: false }
}

/// An empty column of `kind` with room for `rows` values: sized once, as growing by doubling
/// copies the values and touches fresh pages the kernel must zero.
fn col_for(kind: Kind, rows: usize) -> Col {
    let mut c = empty_col();
    match kind {
        Kind::Num => c.nums.reserve_exact(rows),
        Kind::Flag => c.flags.reserve_exact(rows),
        Kind::Text => c.text.reserve_exact(rows),
    }
    c
}

/// The position of each asked-for column in the header.
fn locate(path: &Path, header: &[String], spec: &[(&str, Kind)]) -> Result<Vec<usize>> {
    spec.iter()
        .map(|(name, _)| {
            header.iter().position(|h| h == name).ok_or_else(|| {
                bad(format!(
                    "{}: no column {name:?} (columns: {})",
                    path.display(),
                    header.join(", ")
                ))
            })
        })
        .collect()
}

/// Adds one (trimmed) cell to a column; `line` is the file's line (the header is line 1).
/// Text that is not UTF-8 is an error.
fn push_cell(col: &mut Col, kind: Kind, v: &[u8], line: usize) -> Result<(), std::str::Utf8Error> {
    match kind {
        Kind::Num => {
            let x = parse_number(v);
            if x.is_none() && col.bad.is_none() {
                col.bad = Some((line, std::str::from_utf8(v)?.to_string()));
            }
            col.text_seen |= x.is_none() && !v.is_empty();
            col.nums.push(x.unwrap_or(f64::NAN));
        }
        Kind::Flag => {
            let x = match v {
                b"0" => Some(false),
                b"1" => Some(true),
                _ => flag(std::str::from_utf8(v)?),
            };
            if x.is_none() && col.bad.is_none() {
                col.bad = Some((line, std::str::from_utf8(v)?.to_string()));
            }
            col.flags.push(x.unwrap_or(false));
        }
        Kind::Text => col.text.push(std::str::from_utf8(v)?.to_string()),
    }
    Ok(())
}

/// A finite number. Up to 15 digits with an optional sign and decimal point are read
/// directly: the digits as an integer (exact below 2^53) divided by an exact power of ten
/// is correctly rounded (Clinger's fast path), so the result equals the general parser's.
fn parse_number(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let (mut m, mut nd, mut frac, mut dot) = (0u64, 0usize, 0usize, false);
    let mut fast = !digits.is_empty() && digits.len() <= 16;
    for &c in digits {
        if c.is_ascii_digit() {
            m = m * 10 + u64::from(c - b'0');
            nd += 1;
            frac += dot as usize;
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            fast = false;
            break;
        }
    }
    if fast && nd > 0 && nd <= 15 {
        let x = m as f64 / POW10[frac];
        return Some(if neg { -x } else { x });
    }
    std::str::from_utf8(b).ok()?.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Through the csv crate (quoted values may hold commas and newlines).
fn read_quoted(path: &Path, spec: &[(&str, Kind)]) -> Result<Columns> {
    let fail = |e: csv::Error| bad(format!("{}: {e}", path.display()));
    let mut r = csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(fail)?;
    let header: Vec<String> =
        r.headers().map_err(fail)?.iter().map(|h| h.trim().to_string()).collect();
    let at = locate(path, &header, spec)?;
    let mut cols: Vec<Col> = spec.iter().map(|_| empty_col()).collect();
    let mut rec = csv::StringRecord::new();
    let mut rows = 0;
    while r.read_record(&mut rec).map_err(fail)? {
        rows += 1;
        let line = rec.position().map_or(rows + 1, |p| p.line() as usize);
        for ((k, (_, kind)), col) in at.iter().zip(spec).zip(cols.iter_mut()) {
            // A StringRecord is UTF-8 already.
            let _ = push_cell(col, *kind, rec.get(*k).unwrap_or("").trim().as_bytes(), line);
        }
    }
    if rows == 0 {
        return Err(bad(format!("{}: no data rows", path.display())));
    }
    Ok(spec.iter().map(|(n, k)| (n.to_string(), *k)).zip(cols).collect())
}

/// Rows of a CSV without quotes, so one row per line and values split at commas. The file is
/// read in blocks of whole lines (a few buffers, reused: no file-sized allocation) and each
/// block is parsed on the thread pool while the next is read; the blocks are joined in order.
/// Blank lines are skipped (as the csv crate does); a row with a different number of values
/// than the header is an error naming its line. `None` when the file holds a quote (it needs
/// the csv crate).
fn read_plain(path: &Path, spec: &[(&str, Kind)]) -> Result<Option<Columns>> {
    use std::io::Read;
    const BLOCK: u64 = 4 << 20;
    fn text<'a>(path: &Path, b: &'a [u8], line: usize) -> Result<&'a str> {
        std::str::from_utf8(b)
            .map_err(|_| bad(format!("{}:{line}: the line is not valid UTF-8", path.display())))
    }
    let io_err = |e: std::io::Error| bad(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    // The header: read until its newline.
    let mut first = Vec::new();
    let header_end = loop {
        let start = first.len();
        let n = (&mut file).take(BLOCK).read_to_end(&mut first).map_err(io_err)?;
        if let Some(k) = memchr::memchr(b'\n', &first[start..]) {
            break start + k;
        }
        if n == 0 {
            break first.len();
        }
    };
    if memchr::memchr(b'"', &first).is_some() {
        return Ok(None);
    }
    let bom = if first.starts_with("\u{feff}".as_bytes()) { 3 } else { 0 };
    let header_line = text(path, &first[bom..header_end], 1)?.trim_end_matches('\r');
    let header: Vec<String> = header_line.split(',').map(|h| h.trim().to_string()).collect();
    let at = locate(path, &header, spec)?;
    // Which asked-for columns (indexes into `spec`) each value feeds.
    let mut feeds: Vec<Vec<usize>> = vec![Vec::new(); header.len()];
    for (j, k) in at.iter().enumerate() {
        feeds[*k].push(j);
    }
    let shape = Shape { width: header.len(), last_needed: at.iter().copied().max().unwrap_or(0) };
    let mut carry: Vec<u8> = first[(header_end + 1).min(first.len())..].to_vec();
    // The parsers take blocks from a queue; this thread reads (mostly waiting on the copy
    // from the OS) and recycles the buffers the parsers hand back.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..workers + 2 {
        free_tx.send(Vec::with_capacity(BLOCK as usize + (64 << 10))).expect("receiver alive");
    }
    let (work_tx, work_rx) = std::sync::mpsc::channel::<(usize, Vec<u8>)>();
    let work_rx = std::sync::Mutex::new(work_rx);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Part)>();
    let mut blocks = 0;
    let mut quoted = false;
    let mut read_error = None;
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (free_tx, done_tx, shape, feeds, work_rx) =
                (free_tx.clone(), done_tx.clone(), &shape, &feeds, &work_rx);
            s.spawn(move || {
                loop {
                    let job =
                        work_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok((i, buf)) = job else { break };
                    let _ = done_tx.send((i, parse_block(&buf, shape, feeds, spec)));
                    let _ = free_tx.send(buf);
                }
            });
        }
        let mut eof = false;
        while !eof {
            let mut buf = free_rx.recv().expect("a buffer comes back from every block");
            buf.clear();
            buf.append(&mut carry);
            match (&mut file).take(BLOCK).read_to_end(&mut buf) {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            }
            if !eof {
                // The block ends after its last newline; the rest starts the next one.
                if let Some(k) = memchr::memrchr(b'\n', &buf) {
                    carry.extend_from_slice(&buf[k + 1..]);
                    buf.truncate(k + 1);
                } else {
                    std::mem::swap(&mut carry, &mut buf);
                    free_tx.send(buf).expect("receiver alive");
                    continue;
                }
            }
            if memchr::memchr(b'"', &buf).is_some() {
                quoted = true;
                break;
            }
            work_tx.send((blocks, buf)).expect("the parsers run until the queue closes");
            blocks += 1;
        }
        // Closing the queue ends the parsers.
        drop(work_tx);
    });
    if let Some(e) = read_error {
        return Err(io_err(e));
    }
    if quoted {
        return Ok(None);
    }
    drop(done_tx);
    let mut parts: Vec<(usize, Part)> = done_rx.into_iter().collect();
    parts.sort_by_key(|(i, _)| *i);
    // Sized once: no reallocation while the blocks are joined.
    let total: usize = parts.iter().map(|(_, p)| p.rows).sum();
    let mut cols: Vec<Col> = spec.iter().map(|(_, kind)| col_for(*kind, total)).collect();
    // The file line of each block's line 1 (the header is line 1 of the file).
    let (mut first_line, mut rows) = (2, 0);
    for (_, part) in parts {
        if let Some((l, n)) = part.ragged {
            return Err(bad(format!(
                "{}:{}: {n} values, the header has {}",
                path.display(),
                first_line + l - 1,
                header.len()
            )));
        }
        if let Some(l) = part.utf8 {
            text(path, &[0xff], first_line + l - 1)?;
        }
        for (c, mut p) in cols.iter_mut().zip(part.cols) {
            if c.bad.is_none() {
                c.bad = p.bad.take().map(|(l, v)| (first_line + l - 1, v));
            }
            c.text_seen |= p.text_seen;
            c.nums.append(&mut p.nums);
            c.flags.append(&mut p.flags);
            c.text.append(&mut p.text);
        }
        rows += part.rows;
        first_line += part.lines;
    }
    if rows == 0 {
        return Err(bad(format!("{}: no data rows", path.display())));
    }
    Ok(Some(spec.iter().map(|(n, k)| (n.to_string(), *k)).zip(cols).collect()))
}

/// The header's width and the last value a row needs.
struct Shape {
    width: usize,
    last_needed: usize,
}

/// The asked-for columns of one block of lines.
struct Part {
    cols: Vec<Col>,
    rows: usize,
    /// Lines in the block.
    lines: usize,
    /// The first line (in the block) with the wrong number of values, and that number.
    ragged: Option<(usize, usize)>,
    /// The first line (in the block) that is not UTF-8.
    utf8: Option<usize>,
}

/// Commas in a line, counted in byte-sized lanes (128 bytes at a time cannot overflow a
/// byte), which vectorises far better than a count per byte.
fn count_commas(line: &[u8]) -> usize {
    line.chunks(128).map(|c| c.iter().map(|b| u8::from(*b == b',')).sum::<u8>() as usize).sum()
}

/// Parses a block of whole lines (lines are counted from 1 within the block).
fn parse_block(block: &[u8], shape: &Shape, feeds: &[Vec<usize>], spec: &[(&str, Kind)]) -> Part {
    let block = block.strip_suffix(b"\n").unwrap_or(block);
    // Sized from the line count (one vectorised pass): the page zeroing of columns grown by
    // doubling was most of a small read's time.
    let lines = memchr::memchr_iter(b'\n', block).count() + 1;
    let mut part = Part {
        cols: spec.iter().map(|(_, kind)| col_for(*kind, lines)).collect(),
        rows: 0,
        lines: 0,
        ragged: None,
        utf8: None,
    };
    let mut cells: Vec<&[u8]> = Vec::with_capacity(shape.last_needed + 1);
    let mut rest = block;
    loop {
        let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let (raw, more) = (&rest[..end], end < rest.len());
        rest = &rest[(end + 1).min(rest.len())..];
        part.lines += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if !line.is_empty() {
            // Counting the commas is one vectorised pass; only the values up to the last
            // one needed are split out.
            let values = count_commas(line) + 1;
            if values != shape.width {
                part.ragged.get_or_insert((part.lines, values));
            } else {
                cells.clear();
                let n = shape.last_needed + 1;
                cells.extend(line.splitn(n + 1, |b| *b == b',').take(n));
                part.rows += 1;
                for (cell, js) in cells.iter().zip(feeds) {
                    for &j in js {
                        let v = cell.trim_ascii();
                        if push_cell(&mut part.cols[j], spec[j].1, v, part.lines).is_err() {
                            part.utf8.get_or_insert(part.lines);
                        }
                    }
                }
            }
        }
        if !more {
            break;
        }
    }
    part
}

impl Csv {
    /// The columns (of those read as numbers) holding text, read again as text, all in one
    /// pass; `None` when there are none.
    fn text_columns(&self, cols: &[String]) -> Result<Option<Csv>> {
        let spec: Vec<(&str, Kind)> = cols
            .iter()
            .filter(|c| self.col(c, Kind::Num).text_seen)
            .map(|c| (c.as_str(), Kind::Text))
            .collect();
        if spec.is_empty() { Ok(None) } else { Csv::read(&self.path, &spec).map(Some) }
    }

    fn read(path: &Path, spec: &[(&str, Kind)]) -> Result<Csv> {
        // A file without quotes has one row per line and no comma inside a value: its
        // rows are parsed in parallel, a block of lines per task. Otherwise the csv crate.
        let cols = match read_plain(path, spec)? {
            Some(cols) => cols,
            None => read_quoted(path, spec)?,
        };
        Ok(Csv { path: path.to_path_buf(), cols })
    }

    fn col(&self, name: &str, kind: Kind) -> &Col {
        // Every column asked for was checked when reading.
        &self.cols[&(name.to_string(), kind)]
    }

    /// A numeric column; the error names the line (header = line 1) and the value.
    fn numbers(&self, name: &str) -> Result<&[f64]> {
        let c = self.col(name, Kind::Num);
        match &c.bad {
            Some((line, v)) => Err(bad(format!(
                "{}:{line}: column {name}: {v:?} is not a number",
                self.path.display()
            ))),
            None => Ok(&c.nums),
        }
    }

    fn flags(&self, name: &str) -> Result<&[bool]> {
        let c = self.col(name, Kind::Flag);
        match &c.bad {
            Some((line, v)) => Err(bad(format!(
                "{}:{line}: column {name}: {v:?} is not 0/1, true/false or yes/no",
                self.path.display()
            ))),
            None => Ok(&c.flags),
        }
    }

    fn texts(&self, name: &str) -> Vec<String> {
        self.col(name, Kind::Text).text.clone()
    }

    /// Design columns (read as numbers): numeric ones as they are; a column with any
    /// non-numeric value is categorical (read again as text) and becomes one indicator per
    /// level but the first (sorted).
    fn design(&self, cols: &[String]) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
        let (mut names, mut out) = (Vec::new(), Vec::new());
        let texts = self.text_columns(cols)?;
        for c in cols {
            let col = self.col(c, Kind::Num);
            if col.bad.is_none() {
                names.push(c.clone());
                out.push(col.nums.clone());
                continue;
            }
            if !col.text_seen {
                let line = col.bad.as_ref().map_or(0, |b| b.0);
                return Err(bad(format!(
                    "{}:{line}: column {c}: empty value (this model takes no missing values)",
                    self.path.display()
                )));
            }
            // text_seen: read again as text above.
            let text = texts.as_ref().map(|t| t.texts(c)).unwrap_or_default();
            for level in levels(&text, false).iter().skip(1) {
                names.push(format!("{c}={level}"));
                out.push(text.iter().map(|v| (v == level) as u8 as f64).collect());
            }
        }
        Ok((names, out))
    }
}

/// The distinct values of a text column, sorted (the empty one left out when it means
/// missing).
fn levels(text: &[String], skip_empty: bool) -> Vec<&str> {
    let mut levels: Vec<&str> =
        text.iter().map(|s| s.as_str()).filter(|s| !(skip_empty && s.is_empty())).collect();
    levels.sort();
    levels.dedup();
    levels
}

/// Row-major matrix of design columns.
fn rows_of(cols: &[Vec<f64>]) -> Vec<f64> {
    let n = cols.first().map_or(0, |c| c.len());
    (0..n).flat_map(|i| cols.iter().map(move |c| c[i])).collect()
}

/// Labels to group indices, in order of first appearance.
fn group_index(labels: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = Vec::new();
    let idx = labels
        .iter()
        .map(|l| match names.iter().position(|n| n == l) {
            Some(i) => i,
            None => {
                names.push(l.clone());
                names.len() - 1
            }
        })
        .collect();
    (names, idx)
}

/// A fold's model: trained with the settings given, or tuned inside the fold.
enum Trained {
    Fixed(tenure_stats::gbm::Gbm),
    Tuned(tenure_stats::tune::Tuned),
}

impl Trained {
    fn predict(&self, cols: &[tenure_stats::gbm::Column]) -> Vec<f64> {
        match self {
            Trained::Fixed(m) => m.predict(cols),
            Trained::Tuned(t) => t.predict(cols),
        }
    }

    fn importance(&self) -> Vec<f64> {
        match self {
            Trained::Fixed(m) => m.importance.clone(),
            Trained::Tuned(t) => t.importance(),
        }
    }

    fn contributions(&self, cols: &[tenure_stats::gbm::Column]) -> Vec<Vec<f64>> {
        match self {
            Trained::Fixed(m) => m.contributions(cols),
            Trained::Tuned(t) => t.contributions(cols),
        }
    }
}

fn stats_err(e: StatsError) -> anyhow::Error {
    bad(e.to_string())
}

fn num(x: f64) -> Json {
    if x.is_finite() { json!(x) } else { Json::Null }
}

fn emit(v: &Json, format: Format) -> Result<()> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(v)? + "\n",
        Format::Table => table(v, ""),
    };
    crate::out(&text)
}

/// A plain rendering of the JSON for a terminal: one `path  value` line per scalar.
fn table(v: &Json, prefix: &str) -> String {
    match v {
        Json::Object(m) => m
            .iter()
            .map(|(k, x)| {
                table(x, &if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") })
            })
            .collect(),
        Json::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            format!(
                "{prefix:<40} {}\n",
                a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
            )
        }
        Json::Array(a) => {
            a.iter().enumerate().map(|(i, x)| table(x, &format!("{prefix}[{i}]"))).collect()
        }
        x => format!("{prefix:<40} {x}\n"),
    }
}

pub fn run(cmd: StatsCmd) -> Result<()> {
    match cmd {
        StatsCmd::Km { io, surv, group, at, ci, tau } => {
            let method = CiMethod::parse(&ci)
                .ok_or_else(|| bad(format!("--ci: {ci:?} (expected loglog, log or plain)")))?;
            let mut spec =
                vec![(surv.duration.as_str(), Kind::Num), (surv.event.as_str(), Kind::Flag)];
            if let Some(g) = &group {
                spec.push((g.as_str(), Kind::Text));
            }
            let csv = Csv::read(&io.input, &spec)?;
            let (t, e) = (csv.numbers(&surv.duration)?, csv.flags(&surv.event)?);
            let labels = group.as_deref().map(|g| csv.texts(g));
            let (names, idx) = labels.as_deref().map(group_index).unwrap_or_default();
            // Each group's durations and events (the whole columns when there is no group).
            type Set = Option<(Vec<f64>, Vec<bool>)>;
            let sets: Vec<(Json, Set)> = if labels.is_some() {
                names
                    .iter()
                    .enumerate()
                    .map(|(g, n)| {
                        let rows = (0..t.len()).filter(|i| idx[*i] == g);
                        (json!(n), Some(rows.map(|i| (t[i], e[i])).unzip()))
                    })
                    .collect()
            } else {
                vec![(Json::Null, None)]
            };
            let mut groups = Vec::new();
            for (name, set) in sets {
                let (tt, ee) = set.as_ref().map_or((t, e), |(a, b)| (a.as_slice(), b.as_slice()));
                let km = tenure_stats::km::kaplan_meier(tt, ee, 0.05, method).map_err(stats_err)?;
                let times: Vec<f64> =
                    if at.is_empty() { km.rows.iter().map(|r| r.t).collect() } else { at.clone() };
                let mc = km.median_ci();
                let mut g = Map::new();
                g.insert("name".into(), name);
                g.insert("n".into(), json!(km.n));
                g.insert("events".into(), json!(km.events));
                g.insert("median".into(), km.median().map_or(Json::Null, num));
                g.insert(
                    "median_ci".into(),
                    json!([mc[0].map_or(Json::Null, num), mc[1].map_or(Json::Null, num)]),
                );
                if let Some(tau) = tau {
                    g.insert("restricted_mean".into(), num(km.restricted_mean(tau)));
                }
                g.insert(
                    "at".into(),
                    times
                        .iter()
                        .map(|x| {
                            let c = km.ci_at(*x);
                            json!({"t": num(*x), "survival": num(km.survival_at(*x)), "ci": [num(c[0]), num(c[1])]})
                        })
                        .collect(),
                );
                groups.push(Json::Object(g));
            }
            emit(&json!({ "groups": groups }), io.format)
        }
        StatsCmd::Logrank { io, surv, group } => {
            let spec = [
                (surv.duration.as_str(), Kind::Num),
                (surv.event.as_str(), Kind::Flag),
                (group.as_str(), Kind::Text),
            ];
            let csv = Csv::read(&io.input, &spec)?;
            let (t, e) = (csv.numbers(&surv.duration)?, csv.flags(&surv.event)?);
            let (names, idx) = group_index(&csv.texts(&group));
            let lr = tenure_stats::logrank::logrank(t, e, &idx).map_err(stats_err)?;
            let per: Vec<Json> = names
                .iter()
                .enumerate()
                .map(|(g, n)| json!({"name": n, "observed": lr.observed[g], "expected": num(lr.expected[g])}))
                .collect();
            emit(
                &json!({"chi2": num(lr.chi2), "df": lr.df, "p": num(lr.p), "groups": per}),
                io.format,
            )
        }
        StatsCmd::Cox { io, surv, covariates, ties, strata, l2, predict_at } => {
            let mut spec =
                vec![(surv.duration.as_str(), Kind::Num), (surv.event.as_str(), Kind::Flag)];
            spec.extend(covariates.iter().map(|c| (c.as_str(), Kind::Num)));
            spec.extend(strata.iter().map(|c| (c.as_str(), Kind::Text)));
            let csv = Csv::read(&io.input, &spec)?;
            let (t, e) = (csv.numbers(&surv.duration)?, csv.flags(&surv.event)?);
            let (names, cols) = csv.design(&covariates)?;
            let x = rows_of(&cols);
            let strata_idx = if strata.is_empty() {
                None
            } else {
                let parts: Vec<Vec<String>> = strata.iter().map(|s| csv.texts(s)).collect();
                let keys: Vec<String> = (0..t.len())
                    .map(|i| parts.iter().map(|p| p[i].as_str()).collect::<Vec<_>>().join("\u{1f}"))
                    .collect();
                Some(group_index(&keys).1)
            };
            let m = tenure_stats::cox::cox(&CoxInput {
                durations: t,
                events: e,
                x: &x,
                p: names.len(),
                strata: strata_idx.as_deref(),
                ties: match ties {
                    TiesArg::Efron => Ties::Efron,
                    TiesArg::Breslow => Ties::Breslow,
                },
                penalizer: l2,
            })
            .map_err(stats_err)?;
            let coefs: Map<String, Json> = names
                .iter()
                .enumerate()
                .map(|(k, n)| {
                    (
                        n.clone(),
                        json!({"coef": num(m.coef[k]), "se": num(m.se[k]), "z": num(m.z[k]), "p": num(m.p[k]),
                               "hr": num(m.hr[k]), "hr_ci": [num(m.hr_ci[k][0]), num(m.hr_ci[k][1])]}),
                    )
                })
                .collect();
            let test = |t: tenure_stats::cox::Test| json!({"statistic": num(t.statistic), "df": t.df, "p": num(t.p)});
            emit(
                &json!({
                    "coefficients": coefs,
                    "log_likelihood": num(m.log_likelihood),
                    "log_likelihood_null": num(m.log_likelihood_null),
                    "lr_test": test(m.lr_test),
                    "wald_test": test(m.wald_test),
                    "score_test": test(m.score_test),
                    "concordance": num(m.concordance),
                    "n": t.len(),
                    "events": e.iter().filter(|x| **x).count(),
                    "iterations": m.iterations,
                    "predictions": if predict_at.is_empty() {
                        Json::Null
                    } else {
                        let p = names.len();
                        (0..t.len())
                            .map(|i| {
                                let stratum = strata_idx.as_ref().map_or(0, |s| s[i]);
                                predict_at
                                    .iter()
                                    .map(|at| num(m.predict_survival(&x[i * p..(i + 1) * p], stratum, *at)))
                                    .collect::<Json>()
                            })
                            .collect::<Json>()
                    },
                }),
                io.format,
            )
        }
        StatsCmd::Sbg { survivors, project, discount, format } => {
            let m = tenure_stats::sbg::fit(&survivors).map_err(stats_err)?;
            let periods = survivors.len() - 1 + project;
            let renewals = (survivors.len() - 1) as u32;
            emit(
                &json!({
                    "alpha": num(m.alpha),
                    "beta": num(m.beta),
                    "log_likelihood": num(m.log_likelihood),
                    "survival": m.survival(periods).into_iter().map(num).collect::<Vec<_>>(),
                    "retention": m.retention(periods).into_iter().map(num).collect::<Vec<_>>(),
                    "discount": discount,
                    "del": num(m.del(discount)),
                    "derl": num(m.derl(discount, renewals)),
                    "derl_renewals": renewals,
                }),
                format,
            )
        }
        StatsCmd::Bgnbd { io, frequency, recency, t } => {
            let spec = [
                (frequency.as_str(), Kind::Num),
                (recency.as_str(), Kind::Num),
                (t.as_str(), Kind::Num),
            ];
            let csv = Csv::read(&io.input, &spec)?;
            let (x, tx, tt) = (csv.numbers(&frequency)?, csv.numbers(&recency)?, csv.numbers(&t)?);
            let m = tenure_stats::bgnbd::fit(x, tx, tt).map_err(stats_err)?;
            emit(
                &json!({"r": num(m.r), "alpha": num(m.alpha), "a": num(m.a), "b": num(m.b), "log_likelihood": num(m.log_likelihood)}),
                io.format,
            )
        }
        StatsCmd::Gammagamma { io, frequency, monetary } => {
            let csv = Csv::read(
                &io.input,
                &[(frequency.as_str(), Kind::Num), (monetary.as_str(), Kind::Num)],
            )?;
            let (x, m) = (csv.numbers(&frequency)?, csv.numbers(&monetary)?);
            let g = tenure_stats::bgnbd::fit_gamma_gamma(x, m).map_err(stats_err)?;
            emit(
                &json!({"p": num(g.p), "q": num(g.q), "gamma": num(g.gamma), "log_likelihood": num(g.log_likelihood)}),
                io.format,
            )
        }
        StatsCmd::Gbm {
            io,
            target,
            features,
            folds,
            seed,
            fold_column,
            rounds,
            learning_rate,
            num_leaves,
            min_data_in_leaf,
            lambda_l2,
            explain,
        } => {
            // Settings a client controls, checked before any work: each bounded.
            if let Some(rounds) = rounds.filter(|r| !(1..=100_000).contains(r)) {
                return Err(bad(format!("--rounds {rounds}: between 1 and 100000")));
            }
            if let Some(r) = learning_rate.filter(|r| !(*r > 0.0 && *r <= 1.0)) {
                return Err(bad(format!("--learning-rate {r}: above 0, at most 1")));
            }
            if let Some(l) = num_leaves.filter(|l| !(2..=4096).contains(l)) {
                return Err(bad(format!("--num-leaves {l}: between 2 and 4096")));
            }
            if min_data_in_leaf == Some(0) {
                return Err(bad("--min-data-in-leaf 0: at least 1".into()));
            }
            if let Some(l) = lambda_l2.filter(|l| !(*l >= 0.0 && l.is_finite())) {
                return Err(bad(format!("--lambda-l2 {l}: a number, 0 or more")));
            }
            let fixed = rounds.is_some()
                || learning_rate.is_some()
                || num_leaves.is_some()
                || min_data_in_leaf.is_some()
                || lambda_l2.is_some();
            use tenure_stats::gbm::{Column, Params};
            let mut spec = vec![(target.as_str(), Kind::Flag)];
            spec.extend(features.iter().map(|c| (c.as_str(), Kind::Num)));
            if let Some(f) = &fold_column {
                spec.push((f.as_str(), Kind::Num));
            }
            let csv = Csv::read(&io.input, &spec)?;
            let y = csv.flags(&target)?;
            let n = y.len();
            // A column with a non-numeric value (other than an empty cell) is categorical;
            // those are read again, together, as text.
            let texts = csv.text_columns(&features)?;
            let mut cols = Vec::new();
            for f in &features {
                let c = csv.col(f, Kind::Num);
                match (&texts, c.text_seen) {
                    (Some(t), true) => {
                        let text = t.texts(f);
                        let levels = levels(&text, true);
                        cols.push(Column::Categorical(
                            text.iter()
                                .map(|v| levels.binary_search(&v.as_str()).ok().map(|k| k as u32))
                                .collect(),
                        ));
                    }
                    _ => cols.push(Column::Numeric(c.nums.clone())),
                }
            }
            let fold: Vec<usize> = match &fold_column {
                Some(f) => {
                    let v = csv.numbers(f)?;
                    if let Some(i) =
                        v.iter().position(|x| x.fract() != 0.0 || *x < 0.0 || *x >= 1000.0)
                    {
                        return Err(bad(format!(
                            "{}:{}: column {f}: {} is not a fold number (0, 1, 2, ...)",
                            io.input.display(),
                            i + 2,
                            v[i]
                        )));
                    }
                    v.iter().map(|x| *x as usize).collect()
                }
                None => {
                    if folds < 2 || folds > n {
                        return Err(bad(format!("--folds {folds}: between 2 and the {n} rows")));
                    }
                    tenure_stats::eval::kfold(n, folds, seed)
                }
            };
            // Fold numbers run 0..K without gaps: every fold has rows to test.
            if let Some(f) = (0..fold.iter().max().map_or(0, |m| m + 1)).find(|f| !fold.contains(f))
            {
                return Err(bad(format!("fold {f} has no rows")));
            }
            let k = fold.iter().max().map_or(0, |m| m + 1);
            if k < 2 {
                return Err(bad("cross-validation needs at least two folds".into()));
            }
            let d = Params::default();
            let params = Params {
                rounds: rounds.unwrap_or(d.rounds),
                learning_rate: learning_rate.unwrap_or(d.learning_rate),
                num_leaves: num_leaves.unwrap_or(d.num_leaves),
                min_data_in_leaf: min_data_in_leaf.unwrap_or(d.min_data_in_leaf),
                lambda_l2: lambda_l2.unwrap_or(d.lambda_l2),
                ..d
            };
            let take =
                |rows: &[usize]| -> Vec<Column> { cols.iter().map(|c| c.take(rows)).collect() };
            let mut oof = vec![0.0; n];
            let mut per_fold = Vec::new();
            let (mut gain, mut contrib) = (vec![0.0; features.len()], vec![0.0; features.len()]);
            let started = std::time::Instant::now();
            let mut training = 0.0;
            // Choosing the settings takes a while on large tables: folds done, on a terminal.
            let bar = crate::count_bar(k as u64, "training", "folds");
            for f in 0..k {
                let (test, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| fold[*i] == f);
                let ytr: Vec<bool> = train.iter().map(|i| y[*i]).collect();
                let (xtr, t0) = (take(&train), std::time::Instant::now());
                let model = if fixed {
                    Trained::Fixed(
                        tenure_stats::gbm::train(&xtr, &ytr, None, &params).map_err(stats_err)?,
                    )
                } else {
                    // The inner folds' own stream, apart from the outer assignment's.
                    let inner = tenure_stats::mix64(seed ^ (f as u64 + 1));
                    let tuning = tenure_stats::tune::Tuning::for_rows(train.len(), inner);
                    Trained::Tuned(
                        tenure_stats::tune::tune(&xtr, &ytr, &tuning)
                            .map_err(|e| bad(format!("fold {f}: {e}, e.g. --num-leaves 31")))?,
                    )
                };
                training += t0.elapsed().as_secs_f64();
                let xte = take(&test);
                let p = model.predict(&xte);
                let yte: Vec<bool> = test.iter().map(|i| y[*i]).collect();
                for (i, v) in test.iter().zip(&p) {
                    oof[*i] = *v;
                }
                if explain {
                    for (a, b) in gain.iter_mut().zip(model.importance()) {
                        *a += b;
                    }
                    for row in model.contributions(&xte) {
                        for (a, b) in contrib.iter_mut().zip(&row) {
                            *a += b.abs() / n as f64;
                        }
                    }
                }
                let auc = tenure_stats::eval::roc_auc(&yte, &p).map_err(stats_err)?;
                let mut row =
                    json!({"fold": f, "n": test.len(), "auc": auc.map_or(Json::Null, num)});
                match &model {
                    Trained::Fixed(m) => row["trees"] = json!(m.trees.len()),
                    Trained::Tuned(t) => {
                        let (p, mean_rounds) = t.settings();
                        // Every tree of the fold's model, over its averaged members.
                        row["trees"] =
                            json!(t.members.iter().map(|m| m.trees.len()).sum::<usize>());
                        row["settings"] = json!({
                            "num_leaves": p.num_leaves,
                            "min_data_in_leaf": p.min_data_in_leaf,
                            "lambda_l2": num(p.lambda_l2),
                            "learning_rate": num(p.learning_rate),
                            "models": t.members.len(),
                            "mean_rounds": num(mean_rounds),
                            "chosen_on_rows": t.rows,
                        });
                        row["candidates"] = t
                            .trials
                            .iter()
                            .map(|c| {
                                json!({
                                    "num_leaves": c.params.num_leaves,
                                    "min_data_in_leaf": c.params.min_data_in_leaf,
                                    "lambda_l2": num(c.params.lambda_l2),
                                    "inner_log_loss": num(c.log_loss),
                                    "rounds": c.rounds,
                                })
                            })
                            .collect();
                    }
                }
                per_fold.push(row);
                bar.inc(1);
            }
            bar.finish_and_clear();
            let m = |r: Result<Option<f64>, StatsError>| -> Result<Json> {
                Ok(r.map_err(stats_err)?.map_or(Json::Null, num))
            };
            emit(
                &json!({
                    "auc": m(tenure_stats::eval::roc_auc(y, &oof))?,
                    "pr_auc": m(tenure_stats::eval::average_precision(y, &oof))?,
                    "log_loss": num(tenure_stats::eval::log_loss(y, &oof).map_err(stats_err)?),
                    "brier": num(tenure_stats::eval::brier(y, &oof).map_err(stats_err)?),
                    // Expected calibration error over ten equal-width bins of the prediction.
                    "ece": tenure_stats::eval::calibration_table(y, &oof, 10)
                        .ok()
                        .and_then(|t| tenure_stats::eval::ece(&t))
                        .map_or(Json::Null, num),
                    "tuned": !fixed,
                    "folds": per_fold,
                    "importance": if explain {
                        features.iter().zip(&gain).map(|(f, g)| (f.clone(), num(*g / k as f64))).collect::<Map<String, Json>>().into()
                    } else {
                        Json::Null
                    },
                    "mean_abs_contribution": if explain {
                        features.iter().zip(&contrib).map(|(f, c)| (f.clone(), num(*c))).collect::<Map<String, Json>>().into()
                    } else {
                        Json::Null
                    },
                    // Wall-clock seconds (informational): training alone, and the folds.
                    "seconds_training": training,
                    "seconds_total": started.elapsed().as_secs_f64(),
                }),
                io.format,
            )
        }
        StatsCmd::Logit { io, target, features, l2 } => {
            let mut spec = vec![(target.as_str(), Kind::Flag)];
            spec.extend(features.iter().map(|c| (c.as_str(), Kind::Num)));
            let csv = Csv::read(&io.input, &spec)?;
            let y = csv.flags(&target)?;
            let (names, cols) = csv.design(&features)?;
            let m =
                tenure_stats::logit::fit(&rows_of(&cols), names.len(), y, l2).map_err(stats_err)?;
            let coefs: Map<String, Json> = names
                .iter()
                .enumerate()
                .map(|(k, n)| (n.clone(), json!({"coef": num(m.coef[k]), "se": num(m.se[k])})))
                .collect();
            emit(
                &json!({"coefficients": coefs, "intercept": num(m.intercept), "intercept_se": num(m.intercept_se), "log_likelihood": num(m.log_likelihood)}),
                io.format,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    /// The fast number path gives the same bits as the standard parser.
    #[test]
    fn numbers_parse_as_the_standard_parser_does() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 15 + 1) as usize;
            let mut s: String =
                (0..digits).map(|k| char::from(b'0' + ((x >> (k * 4)) % 10) as u8)).collect();
            let dot = (x >> 60) as usize % (digits + 2);
            if dot <= digits {
                s.insert(dot, '.');
            }
            if x & 1 == 1 {
                s.insert(0, '-');
            }
            let want = s.parse::<f64>().ok().filter(|v| v.is_finite());
            assert_eq!(
                super::parse_number(s.as_bytes()).map(f64::to_bits),
                want.map(f64::to_bits),
                "{s}"
            );
        }
        for s in ["", ".", "-", "1e3", "1.5E-2", "inf", "NaN", "0x10", "1..2", "+7", "12,5"] {
            let want = s.parse::<f64>().ok().filter(|v| v.is_finite());
            assert_eq!(super::parse_number(s.as_bytes()), want, "{s:?}");
        }
    }
}
