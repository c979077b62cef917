//! Raw input to validated events: JSONL lines and CSV records become `Event`s, and every
//! row that cannot is reported with its line, field and reason. One bad row never fails the
//! rest (`docs/events.md`, "Bad input").

pub mod mapping;
pub mod parquet;
pub mod raw;
pub mod validate;

use raw::{F, Raw, RawError, Scalar};
use std::borrow::Cow;
use std::io::Read;
use tenure_core::event::{Event, EventKind};
use tenure_core::money::Currency;
use tenure_core::time::{DAY, Timestamp};
pub use validate::FieldError;

/// What validation needs to know beyond the row itself.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Currency of amounts that name none.
    pub default_currency: Currency,
    /// Longest accepted line (bytes), as Segment's 32 KB per event.
    pub max_line_bytes: usize,
    /// The receiving instant, for the future-skew rule; `None` disables the rule (replay).
    pub now: Option<Timestamp>,
    pub max_future_skew_micros: i64,
    /// Inclusive CSAT scale.
    pub csat_scale: (u8, u8),
}

impl IngestConfig {
    /// The defaults of events.md with the caller's clock reading.
    pub fn defaults(now: Option<Timestamp>) -> IngestConfig {
        IngestConfig {
            default_currency: Currency::USD,
            max_line_bytes: 64 * 1024,
            now,
            max_future_skew_micros: DAY,
            csat_scale: (1, 10),
        }
    }
}

/// A rejected row: where, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// 1-based line number (or array index for HTTP batches).
    pub line: u64,
    pub field: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.line, field, self.reason),
            None => write!(f, "{}: {}", self.line, self.reason),
        }
    }
}

/// Parses one JSONL line (without its newline). `default_kind` applies when the row has no
/// `type` (an import with `--type`).
pub fn parse_json_line(
    line: &str,
    default_kind: Option<EventKind>,
    cfg: &IngestConfig,
) -> Result<Event, FieldError> {
    // A byte-order mark (some editors write one) is not part of the first object.
    let line = line.strip_prefix('\u{feff}').unwrap_or(line);
    if line.len() > cfg.max_line_bytes {
        return Err(FieldError::row(format!(
            "line is {} bytes, over the limit of {}",
            line.len(),
            cfg.max_line_bytes
        )));
    }
    let mut raw = Raw::default();
    raw::from_json(line, &mut raw).map_err(|e| match e {
        RawError::NotAnObject => FieldError::row("expected a JSON object"),
        RawError::Duplicate(f) => {
            FieldError { field: Some(f), reason: "field appears twice".into() }
        }
        RawError::Json(m) => FieldError::row(format!("malformed JSON: {m}")),
    })?;
    if raw.has_tiny_float()
        && let Some(key) = raw::underflowing_number(line)
    {
        let reason = "a number too small to be represented (it would be stored as 0)";
        return Err(FieldError { field: Some(key), reason: reason.into() });
    }
    validate::build(&raw, default_kind, cfg)
}

/// Parses a block of JSONL text whose first line is `first_line` (1-based). Blank lines are
/// skipped. Returns accepted events with their line numbers, in order, and the rejections.
pub fn parse_jsonl_block(
    text: &str,
    first_line: u64,
    default_kind: Option<EventKind>,
    cfg: &IngestConfig,
) -> (Vec<(u64, Event)>, Vec<Rejection>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let n = first_line + i as u64;
        match parse_json_line(line, default_kind, cfg) {
            Ok(e) => ok.push((n, e)),
            Err(e) => bad.push(Rejection { line: n, field: e.field, reason: e.reason }),
        }
    }
    (ok, bad)
}

/// The event type a file holds, from its name: `subscriptions.csv`, `usage.jsonl`,
/// `survey_responses.csv`... Singular and plural spellings are both understood.
pub fn kind_from_file_name(name: &str) -> Option<EventKind> {
    let stem =
        name.rsplit(['/', '\\']).next()?.split('.').next()?.to_ascii_lowercase().replace('-', "_");
    if let Some(k) = EventKind::parse(&stem) {
        return Some(k);
    }
    let singular = match stem.as_str() {
        "usage_events" | "usages" => "usage",
        "web_visits" => "web_visit",
        "surveys_sent" => "survey_sent",
        "survey_responses" | "responses" => "survey_response",
        "emails" => "email",
        "costs" => "cost",
        s => s.strip_suffix('s').unwrap_or(s),
    };
    EventKind::parse(singular)
}

/// Errors that stop a whole CSV file (its header is unusable); row errors are [`Rejection`]s.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("cannot read the CSV header: {0}")]
    Header(String),
    #[error("the CSV header has no column that Tenure knows (first columns: {0})")]
    NoKnownColumns(String),
    #[error("reading CSV: {0}")]
    Io(String),
    #[error(
        "the CSV has no `type` column and its type is not known: name the file after its type (subscriptions.csv) or pass --type"
    )]
    NoType,
}

/// Column of a CSV header: a known field, an account attribute, or ignored.
#[derive(Clone, Debug)]
enum Col {
    Field(F),
    Attribute(String),
    Ignored,
}

/// The CSV input as the csv crate reads it: CRLF line ends turned into LF, and the offsets
/// of line ends remembered, so that a row's line number is counted here. (The csv crate's
/// own count skips blank lines and is one short on CRLF files, and a rejection must name
/// the right line.)
pub struct LineCounted<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    /// Offset in the output of `buf[0]`.
    buf_start: u64,
    /// A CR ended the last chunk read: whether it starts a CRLF is known with the next one.
    held_cr: bool,
    /// Offsets of the line ends not yet passed by a row start, and how many were passed.
    newlines: std::collections::VecDeque<u64>,
    passed: u64,
}

impl<R> LineCounted<R> {
    fn new(inner: R) -> LineCounted<R> {
        LineCounted {
            inner,
            buf: Vec::new(),
            pos: 0,
            buf_start: 0,
            held_cr: false,
            newlines: Default::default(),
            passed: 0,
        }
    }

    /// The 1-based line of the byte at `offset` (offsets only ever move forward).
    fn line_at(&mut self, offset: u64) -> u64 {
        while self.newlines.front().is_some_and(|&p| p < offset) {
            self.newlines.pop_front();
            self.passed += 1;
        }
        // The csv crate places a row after blank lines at the first of them.
        let mut at = offset;
        while self.newlines.front() == Some(&at) {
            self.newlines.pop_front();
            self.passed += 1;
            at += 1;
        }
        self.passed + 1
    }

    fn push(&mut self, b: u8) {
        if b == b'\n' {
            self.newlines.push_back(self.buf_start + self.buf.len() as u64);
        }
        self.buf.push(b);
    }
}

impl<R: Read> Read for LineCounted<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let mut chunk = [0u8; 64 * 1024];
            let n = self.inner.read(&mut chunk)?;
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
            self.pos = 0;
            if n == 0 {
                if std::mem::take(&mut self.held_cr) {
                    self.push(b'\r');
                    continue;
                }
                return Ok(0);
            }
            let mut bytes = &chunk[..n];
            if std::mem::take(&mut self.held_cr) && bytes[0] != b'\n' {
                self.push(b'\r');
            }
            if bytes.last() == Some(&b'\r') {
                self.held_cr = true;
                bytes = &bytes[..bytes.len() - 1];
            }
            for (i, &b) in bytes.iter().enumerate() {
                if b != b'\r' || bytes.get(i + 1) != Some(&b'\n') {
                    self.push(b);
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Any input read row by row into events: CSV files, Parquet files, mapped vendor exports,
/// converted Stripe objects. The importer pulls rows, frames and commits them in batches.
pub trait RowSource {
    /// The next row: `None` at the end; `Some((line, Ok(event) | Err(rejection)))`
    /// otherwise, where `line` is what a rejection names (a file line, a row number).
    fn next_row(&mut self, cfg: &IngestConfig) -> Option<(u64, Result<Event, Rejection>)>;
    /// How far the input is read, in the unit of its progress bar (bytes for text files).
    fn position(&self) -> u64;
    /// The position at the end, when the input counts in other units than its file's
    /// bytes (rows of a Parquet file).
    fn total(&self) -> Option<u64> {
        None
    }
    /// Rows read but deliberately turned into no event (a mapping's `[[skip]]` rules), for
    /// the import's summary.
    fn skipped(&self) -> u64 {
        0
    }
}

impl<R: Read> RowSource for CsvEvents<R> {
    fn next_row(&mut self, cfg: &IngestConfig) -> Option<(u64, Result<Event, Rejection>)> {
        CsvEvents::next_row(self, cfg)
    }
    fn position(&self) -> u64 {
        self.bytes_read()
    }
}

/// A CSV file read row by row into events; header = field names, `attributes.KEY` columns
/// become account attributes.
pub struct CsvEvents<R: Read> {
    reader: csv::Reader<LineCounted<R>>,
    cols: Vec<Col>,
    default_kind: Option<EventKind>,
    record: csv::StringRecord,
}

impl<R: Read> CsvEvents<R> {
    pub fn new(input: R, default_kind: Option<EventKind>) -> Result<CsvEvents<R>, CsvError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(LineCounted::new(input));
        let headers = reader.headers().map_err(|e| CsvError::Header(e.to_string()))?.clone();
        let cols: Vec<Col> = headers
            .iter()
            .map(|h| {
                let h = h.trim().trim_start_matches('\u{feff}');
                if let Some(a) = h.strip_prefix("attributes.") {
                    Col::Attribute(a.to_string())
                } else {
                    F::lookup(h).map(Col::Field).unwrap_or(Col::Ignored)
                }
            })
            .collect();
        // A column given twice would be read as the last one silently: refused, as a
        // JSON field given twice is.
        let names: Vec<&str> =
            headers.iter().map(|h| h.trim().trim_start_matches('\u{feff}')).collect();
        for (i, (col, name)) in cols.iter().zip(&names).enumerate() {
            if !matches!(col, Col::Ignored) && names[..i].contains(name) {
                return Err(CsvError::Header(format!("column {name:?} appears twice")));
            }
        }
        if cols.iter().all(|c| matches!(c, Col::Ignored)) {
            let first: Vec<&str> = headers.iter().take(5).collect();
            return Err(CsvError::NoKnownColumns(first.join(",")));
        }
        if default_kind.is_none() && !cols.iter().any(|c| matches!(c, Col::Field(F::Type))) {
            return Err(CsvError::NoType);
        }
        Ok(CsvEvents { reader, cols, default_kind, record: csv::StringRecord::new() })
    }

    /// Bytes of input consumed so far (line ends counted as one byte), for progress.
    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The next row: `None` at the end; `Some((line, Ok(event) | Err(rejection)))` otherwise.
    pub fn next_row(&mut self, cfg: &IngestConfig) -> Option<(u64, Result<Event, Rejection>)> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Err(e) => {
                let line = e.position().map_or(0, |p| self.reader.get_mut().line_at(p.byte()));
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Some((
                        line,
                        Err(Rejection { line, field: None, reason: format!("read error: {e}") }),
                    ));
                }
                Some((
                    line,
                    Err(Rejection { line, field: None, reason: format!("malformed CSV: {e}") }),
                ))
            }
            Ok(true) => {
                let line =
                    self.record.position().map_or(0, |p| self.reader.get_mut().line_at(p.byte()));
                if self.record.iter().all(|c| c.trim().is_empty()) {
                    return self.next_row(cfg);
                }
                let bytes: usize = self.record.as_slice().len();
                if bytes > cfg.max_line_bytes {
                    let reason =
                        format!("row is {bytes} bytes, over the limit of {}", cfg.max_line_bytes);
                    return Some((line, Err(Rejection { line, field: None, reason })));
                }
                if self.record.len() > self.cols.len() {
                    let reason = format!(
                        "row has {} cells but the header has {}",
                        self.record.len(),
                        self.cols.len()
                    );
                    return Some((line, Err(Rejection { line, field: None, reason })));
                }
                let mut raw = Raw { from_text: true, ..Raw::default() };
                let mut attrs = Vec::new();
                for (col, cell) in self.cols.iter().zip(self.record.iter()) {
                    match col {
                        Col::Field(f) => {
                            raw.vals[*f as usize] = Some(Scalar::Str(Cow::Borrowed(cell)))
                        }
                        Col::Attribute(a) => attrs
                            .push((Cow::Borrowed(a.as_str()), Scalar::Str(Cow::Borrowed(cell)))),
                        Col::Ignored => {}
                    }
                }
                if !attrs.is_empty() {
                    raw.attributes = Some(attrs);
                }
                let res = validate::build(&raw, self.default_kind, cfg).map_err(|e| Rejection {
                    line,
                    field: e.field,
                    reason: e.reason,
                });
                Some((line, res))
            }
        }
    }
}

#[cfg(test)]
mod tests;
