//! Parquet files to events: columns named as the contract's fields (plus `attributes.KEY`),
//! decoded a record batch at a time, converted and validated in parallel, handed out in row
//! order (`docs/connectors.md`, "Parquet").
//!
//! Every row goes through [`validate::build`], as a JSON line or a CSV record does, so every
//! limit of the contract holds. Typed columns keep their exactness: timestamps become
//! instants without a detour through text, decimals reach money as decimal text (never a
//! float), floats are taken as JSON numbers are.

use crate::raw::{F, Raw, Scalar};
use crate::{IngestConfig, Rejection, RowSource, validate};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{
    Array, ArrayRef, BooleanArray, LargeStringArray, RecordBatch, RecordBatchReader, StringArray,
    StringViewArray,
};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use rayon::prelude::*;
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use tenure_core::event::{Event, EventKind};
use tenure_core::time::{DAY, Timestamp};

/// Rows decoded per record batch: large enough to split into parallel tasks and to keep
/// the hand-over between threads rare, small enough that two batches in flight stay a few
/// tens of MiB whatever the file's size.
const BATCH_ROWS: usize = 64 * 1024;
/// The smallest slice of a batch converted as one parallel task.
const MIN_TASK_ROWS: usize = 1024;

/// What stops a whole file, found before any row is read. Row errors are [`Rejection`]s.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("cannot open the file: {0}")]
    Open(#[from] std::io::Error),
    #[error("not a readable Parquet file: {0}")]
    Format(String),
    #[error("column `{column}` is {data_type}: {reason}")]
    Column { column: String, data_type: String, reason: &'static str },
    #[error("column `{0}` appears twice")]
    Duplicate(String),
    #[error("the file has no column that Tenure knows (first columns: {0})")]
    NoKnownColumns(String),
    #[error(
        "the file has no `type` column and its type is not known: name the file after its type (subscriptions.parquet) or pass --type"
    )]
    NoType,
}

/// The parquet crate's message without its "Parquet error: " prefix (the error says so).
fn format_error(e: impl std::fmt::Display) -> ParquetError {
    let m = e.to_string();
    ParquetError::Format(m.strip_prefix("Parquet error: ").unwrap_or(&m).to_string())
}

/// What a contract field holds, which decides the column types it may be read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Ids, names, enums, free text: strings, or integers and decimals as their digits.
    Text,
    /// Instants: timestamps, dates or strings.
    Time,
    /// `amount`, `cost`, `value`: never through a float unless the column is one.
    Money,
    /// Counts, scores and quantities.
    Number,
    /// `attributes.KEY`: any scalar, kept as a string, number or boolean.
    Attribute,
}

fn want(f: F) -> Want {
    match f {
        F::Timestamp
        | F::TermStart
        | F::TermEnd
        | F::CancelAt
        | F::PeriodStart
        | F::PeriodEnd
        | F::Due => Want::Time,
        F::Amount | F::Cost | F::Value => Want::Money,
        // `score` is a number for NPS and CSAT, a word for success surveys: text columns
        // serve both.
        F::Quantity | F::Csat | F::Score | F::Relationship | F::StrategicImportance => Want::Number,
        _ => Want::Text,
    }
}

/// The column types Tenure reads, by what their values are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repr {
    Str,
    Int,
    Float,
    Bool,
    Instant,
    Decimal,
    /// A column of nulls only (pyarrow writes one for a column of `None`s).
    Null,
}

fn repr(dt: &DataType) -> Option<Repr> {
    use DataType as D;
    Some(match dt {
        D::Utf8 | D::LargeUtf8 | D::Utf8View => Repr::Str,
        D::Dictionary(_, v) if matches!(**v, D::Utf8 | D::LargeUtf8 | D::Utf8View) => Repr::Str,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 => Repr::Int,
        D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => Repr::Int,
        D::Float32 | D::Float64 => Repr::Float,
        D::Boolean => Repr::Bool,
        D::Timestamp(..) | D::Date32 | D::Date64 => Repr::Instant,
        D::Decimal32(..) | D::Decimal64(..) | D::Decimal128(..) | D::Decimal256(..) => {
            Repr::Decimal
        }
        D::Null => Repr::Null,
        _ => return None,
    })
}

/// Why a column of type `r` cannot feed a field wanting `w`, if it cannot.
fn mismatch(w: Want, r: Repr) -> Option<&'static str> {
    use Repr as R;
    match (w, r) {
        (_, R::Str | R::Null) | (Want::Attribute, _) => None,
        (Want::Text, R::Int | R::Decimal) => None,
        (Want::Text, _) => Some("this field is text or an id: use a string or integer column"),
        (Want::Time, R::Instant) => None,
        (Want::Time, _) => Some("this field is an instant: use a timestamp, date or string column"),
        (Want::Money, R::Int | R::Float | R::Decimal) => None,
        (Want::Money, _) => {
            Some("this field is an amount: use a decimal, integer, floating-point or string column")
        }
        (Want::Number, R::Int | R::Float | R::Decimal) => None,
        (Want::Number, _) => {
            Some("this field is a number: use an integer, decimal, floating-point or string column")
        }
    }
}

#[derive(Clone, Debug)]
enum Target {
    Field(F),
    Attribute(String),
}

/// A column read into events, at its position in the decoded (projected) batches.
#[derive(Clone, Debug)]
struct Column {
    index: usize,
    target: Target,
    want: Want,
}

/// One row's outcome, numbered from 1 over the whole file.
type Row = (u64, Result<Event, Rejection>);

/// What the reading thread hands over: a batch's rows in order, or why reading stopped.
enum Msg {
    Rows(Vec<Vec<Row>>),
    /// Reading failed at this row (a damaged page, say): the rest of the file is lost.
    Failed(u64, String),
    End,
}

/// A Parquet file read as events, a record batch at a time. A thread decodes batches and
/// converts each in parallel (rayon) while the importer frames and stores the previous one;
/// at most two batches are in flight (the one being handed out and the next, converted).
pub struct ParquetRows {
    /// The decoder, until the first row is asked for (the configuration comes with it).
    reader: Option<ParquetRecordBatchReader>,
    columns: Arc<[Column]>,
    default_kind: Option<EventKind>,
    total: u64,
    rx: Option<Receiver<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
    current: std::iter::Flatten<std::vec::IntoIter<Vec<Row>>>,
    position: u64,
    finished: bool,
}

impl ParquetRows {
    /// Opens a file and checks its columns: a known field in a column of a type that
    /// cannot hold it rejects the file before any row is read. `default_kind` applies when
    /// there is no `type` column (or a row's is empty), as for CSV.
    pub fn open(path: &Path, default_kind: Option<EventKind>) -> Result<ParquetRows, ParquetError> {
        let file = std::fs::File::open(path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(format_error)?;
        let schema = builder.schema().clone();
        let mut used: Vec<(usize, &str, Target, Want)> = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            let target = match name.strip_prefix("attributes.") {
                Some(a) => Target::Attribute(a.to_string()),
                // A column of no field is ignored, as an unknown JSON field is.
                None => match F::lookup(name) {
                    Some(f) => Target::Field(f),
                    None => continue,
                },
            };
            // Which of two columns of one name was meant cannot be known.
            if used.iter().any(|u| u.1 == name) {
                return Err(ParquetError::Duplicate(name.to_string()));
            }
            let w = match target {
                Target::Field(f) => want(f),
                Target::Attribute(_) => Want::Attribute,
            };
            let column_error = |reason| ParquetError::Column {
                column: name.to_string(),
                data_type: field.data_type().to_string(),
                reason,
            };
            let r = repr(field.data_type()).ok_or_else(|| {
                column_error(
                    "not a type Tenure reads (string, integer, floating-point, boolean, \
                     timestamp, date or decimal columns)",
                )
            })?;
            if let Some(reason) = mismatch(w, r) {
                return Err(column_error(reason));
            }
            used.push((i, name, target, w));
        }
        if used.is_empty() {
            let first: Vec<&str> =
                schema.fields().iter().take(5).map(|f| f.name().as_str()).collect();
            return Err(ParquetError::NoKnownColumns(first.join(",")));
        }
        if default_kind.is_none() && !used.iter().any(|u| matches!(u.2, Target::Field(F::Type))) {
            return Err(ParquetError::NoType);
        }
        let total = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        // Only the columns read are decoded; an arrow field at the top level is a root
        // column of the Parquet schema.
        let mask = ProjectionMask::roots(builder.parquet_schema(), used.iter().map(|u| u.0));
        let reader = builder
            .with_batch_size(BATCH_ROWS)
            .with_projection(mask)
            .build()
            .map_err(format_error)?;
        let projected = reader.schema();
        let mut columns = Vec::with_capacity(used.len());
        for (_, name, target, want) in used {
            let index = projected.index_of(name).map_err(format_error)?;
            columns.push(Column { index, target, want });
        }
        Ok(ParquetRows {
            reader: Some(reader),
            columns: columns.into(),
            default_kind,
            total,
            rx: None,
            thread: None,
            current: Vec::new().into_iter().flatten(),
            position: 0,
            finished: false,
        })
    }

    /// Starts the reading thread with the configuration rows are validated under.
    fn start(&mut self, cfg: &IngestConfig) {
        let Some(reader) = self.reader.take() else { return };
        // A rendezvous channel: the thread converts the next batch while this one is
        // handed out, then waits, so two batches at most are in memory.
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let (columns, kind, cfg) = (self.columns.clone(), self.default_kind, cfg.clone());
        let spawned = std::thread::Builder::new()
            .name("parquet-reader".into())
            .spawn(move || produce(reader, &columns, kind, &cfg, &tx));
        match spawned {
            Ok(h) => self.thread = Some(h),
            Err(e) => {
                let (tx, rx2) = std::sync::mpsc::sync_channel(1);
                let _ = tx.send(Msg::Failed(1, format!("cannot start a reading thread: {e}")));
                self.rx = Some(rx2);
                return;
            }
        }
        self.rx = Some(rx);
    }
}

impl RowSource for ParquetRows {
    fn next_row(&mut self, cfg: &IngestConfig) -> Option<Row> {
        loop {
            if let Some(row) = self.current.next() {
                self.position = row.0;
                return Some(row);
            }
            if self.finished {
                return None;
            }
            if self.rx.is_none() {
                self.start(cfg);
            }
            let msg = self.rx.as_ref().map(Receiver::recv);
            match msg {
                Some(Ok(Msg::Rows(rows))) => self.current = rows.into_iter().flatten(),
                Some(Ok(Msg::Failed(line, reason))) => {
                    self.finished = true;
                    self.position = line;
                    return Some((line, Err(Rejection { line, field: None, reason })));
                }
                Some(Ok(Msg::End)) | None => self.finished = true,
                // The thread ended without saying so: it panicked. Its panic is ours, so
                // that an import never ends as if the file were complete.
                Some(Err(_)) => {
                    self.finished = true;
                    if let Some(Err(panic)) = self.thread.take().map(|h| h.join()) {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
        }
    }

    /// Rows handed out so far.
    fn position(&self) -> u64 {
        self.position
    }

    fn total(&self) -> Option<u64> {
        Some(self.total)
    }
}

impl Drop for ParquetRows {
    fn drop(&mut self) {
        // Closing the channel first makes a thread waiting to hand over a batch stop.
        self.rx = None;
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// The reading thread: decodes batches, converts each in parallel, sends them in order.
fn produce(
    reader: ParquetRecordBatchReader,
    columns: &[Column],
    kind: Option<EventKind>,
    cfg: &IngestConfig,
    tx: &SyncSender<Msg>,
) {
    let mut first_row = 1u64;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                let reason = format!("cannot read the file from this row on: {e}");
                let _ = tx.send(Msg::Failed(first_row, reason));
                return;
            }
        };
        let rows = convert_batch(&batch, columns, first_row, kind, cfg);
        first_row += batch.num_rows() as u64;
        if tx.send(Msg::Rows(rows)).is_err() {
            return;
        }
    }
    let _ = tx.send(Msg::End);
}

/// A batch's rows as events or rejections, converted in parallel slices, in order.
fn convert_batch(
    batch: &RecordBatch,
    columns: &[Column],
    first_row: u64,
    kind: Option<EventKind>,
    cfg: &IngestConfig,
) -> Vec<Vec<Row>> {
    let cols: Vec<ColumnView<'_>> = columns
        .iter()
        .map(|c| {
            let array = batch.column(c.index);
            ColumnView {
                values: Values::new(array),
                nulls: array.logical_nulls(),
                target: &c.target,
                want: c.want,
            }
        })
        .collect();
    let n = batch.num_rows();
    let per_task = (n / (rayon::current_num_threads() * 4)).max(MIN_TASK_ROWS);
    let tasks = n.div_ceil(per_task);
    (0..tasks)
        .into_par_iter()
        .map(|t| {
            let rows = t * per_task..((t + 1) * per_task).min(n);
            convert_rows(&cols, rows, first_row, kind, cfg)
        })
        .collect()
}

/// A column of one batch, ready to be read row by row.
struct ColumnView<'b> {
    values: Values<'b>,
    nulls: Option<arrow_buffer::NullBuffer>,
    target: &'b Target,
    want: Want,
}

fn convert_rows(
    cols: &[ColumnView<'_>],
    rows: std::ops::Range<usize>,
    first_row: u64,
    kind: Option<EventKind>,
    cfg: &IngestConfig,
) -> Vec<Row> {
    let mut out = Vec::with_capacity(rows.len());
    // One `Raw` for the slice: each row overwrites the slots of the columns read (the
    // others stay empty), which spares clearing a slot per known field on every row.
    let mut raw = Raw { from_text: true, ..Raw::default() };
    let has_attributes = cols.iter().any(|c| matches!(c.target, Target::Attribute(_)));
    for i in rows {
        let line = first_row + i as u64;
        let mut attrs = Vec::new();
        let mut bytes = 0;
        for c in cols {
            let value = match &c.nulls {
                Some(n) if n.is_null(i) => None,
                _ => c.values.get(i).map(|v| scalar(v, c.want)),
            };
            if let Some(Scalar::Str(s) | Scalar::Num(s)) = &value {
                bytes += s.len();
            }
            match (c.target, value) {
                (Target::Field(f), v) => raw.vals[*f as usize] = v,
                (Target::Attribute(a), Some(v)) => attrs.push((Cow::Borrowed(a.as_str()), v)),
                (Target::Attribute(_), None) => {}
            }
        }
        raw.attributes = has_attributes.then_some(attrs);
        // A row holds what a line would: the same bound as a JSON line or a CSV row.
        let res = if bytes > cfg.max_line_bytes {
            let reason = format!("row is {bytes} bytes, over the limit of {}", cfg.max_line_bytes);
            Err(Rejection { line, field: None, reason })
        } else {
            validate::build(&raw, kind, cfg).map_err(|e| Rejection {
                line,
                field: e.field,
                reason: e.reason,
            })
        };
        out.push((line, res));
    }
    out
}

/// A value read from a column, before it is fitted to the field.
enum Val<'b> {
    Str(&'b str),
    Int(i64),
    UInt(u64),
    F32(f32),
    F64(f64),
    Bool(bool),
    /// Microseconds since the epoch, and whether the column holds dates.
    Instant(i64, bool),
    /// Exact decimal text.
    Decimal(String),
}

/// The value as the field wants it. Mismatched combinations were refused when the file was
/// opened; any left would be refused by validation with the field's name.
fn scalar<'b>(v: Val<'b>, w: Want) -> Scalar<'b> {
    match (v, w) {
        (Val::Str(s), _) => Scalar::Str(Cow::Borrowed(s)),
        (Val::Int(i), Want::Text) => Scalar::Str(Cow::Owned(i.to_string())),
        (Val::UInt(u), Want::Text) => Scalar::Str(Cow::Owned(u.to_string())),
        (Val::Decimal(d), Want::Text) => Scalar::Str(Cow::Owned(d)),
        (Val::Instant(t, date), Want::Attribute) => Scalar::Str(Cow::Owned(if date {
            Timestamp(t).date_string()
        } else {
            Timestamp(t).to_string()
        })),
        (Val::Instant(t, _), _) => Scalar::Time(Timestamp(t)),
        (Val::Int(i), _) => Scalar::Int(i),
        // Beyond i64: exact digits, as a JSON number that large would have to be sent.
        (Val::UInt(u), _) => {
            i64::try_from(u).map_or_else(|_| Scalar::Num(u.to_string().into()), Scalar::Int)
        }
        (Val::F64(x), _) => Scalar::Float(x),
        // The shortest text of the f32 is what its producer wrote (0.1, not the double
        // nearest to the f32 0.1, 0.10000000149011612).
        (Val::F32(x), _) => Scalar::Float(x.to_string().parse().unwrap_or(x as f64)),
        (Val::Bool(b), _) => Scalar::Bool(b),
        (Val::Decimal(d), _) => Scalar::Num(Cow::Owned(d)),
    }
}

/// A batch's column, downcast once.
enum Values<'b> {
    Null,
    Str(&'b StringArray),
    LargeStr(&'b LargeStringArray),
    Utf8View(&'b StringViewArray),
    /// Dictionary keys as indexes into the values.
    Dict(Vec<usize>, Box<Values<'b>>),
    I8(&'b [i8]),
    I16(&'b [i16]),
    I32(&'b [i32]),
    I64(&'b [i64]),
    U8(&'b [u8]),
    U16(&'b [u16]),
    U32(&'b [u32]),
    U64(&'b [u64]),
    F32(&'b [f32]),
    F64(&'b [f64]),
    Bool(&'b BooleanArray),
    /// Instants in a unit: microseconds are `value * mul / div`.
    Time(&'b [i64], TimeUnit),
    Date32(&'b [i32]),
    Date64(&'b [i64]),
    /// Unscaled integer and scale.
    Dec32(&'b [i32], i8),
    Dec64(&'b [i64], i8),
    Dec128(&'b [i128], i8),
    Dec256(&'b arrow_array::Decimal256Array, i8),
}

impl<'b> Values<'b> {
    fn new(a: &'b ArrayRef) -> Values<'b> {
        use DataType as D;
        match a.data_type() {
            D::Utf8 => Values::Str(a.as_string::<i32>()),
            D::LargeUtf8 => Values::LargeStr(a.as_string::<i64>()),
            D::Utf8View => Values::Utf8View(a.as_string_view()),
            D::Dictionary(..) => match a.as_any_dictionary_opt() {
                Some(d) => Values::Dict(d.normalized_keys(), Box::new(Values::new(d.values()))),
                None => Values::Null,
            },
            D::Int8 => Values::I8(a.as_primitive::<Int8Type>().values()),
            D::Int16 => Values::I16(a.as_primitive::<Int16Type>().values()),
            D::Int32 => Values::I32(a.as_primitive::<Int32Type>().values()),
            D::Int64 => Values::I64(a.as_primitive::<Int64Type>().values()),
            D::UInt8 => Values::U8(a.as_primitive::<UInt8Type>().values()),
            D::UInt16 => Values::U16(a.as_primitive::<UInt16Type>().values()),
            D::UInt32 => Values::U32(a.as_primitive::<UInt32Type>().values()),
            D::UInt64 => Values::U64(a.as_primitive::<UInt64Type>().values()),
            D::Float32 => Values::F32(a.as_primitive::<Float32Type>().values()),
            D::Float64 => Values::F64(a.as_primitive::<Float64Type>().values()),
            D::Boolean => Values::Bool(a.as_boolean()),
            D::Timestamp(unit, _) => Values::Time(
                match unit {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().values(),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().values(),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().values(),
                },
                *unit,
            ),
            D::Date32 => Values::Date32(a.as_primitive::<Date32Type>().values()),
            D::Date64 => Values::Date64(a.as_primitive::<Date64Type>().values()),
            D::Decimal32(_, s) => Values::Dec32(a.as_primitive::<Decimal32Type>().values(), *s),
            D::Decimal64(_, s) => Values::Dec64(a.as_primitive::<Decimal64Type>().values(), *s),
            D::Decimal128(_, s) => Values::Dec128(a.as_primitive::<Decimal128Type>().values(), *s),
            D::Decimal256(_, s) => Values::Dec256(a.as_primitive::<Decimal256Type>(), *s),
            // Refused when the file was opened.
            _ => Values::Null,
        }
    }

    /// The value of row `i` (not null: the caller checked).
    fn get(&self, i: usize) -> Option<Val<'b>> {
        Some(match self {
            Values::Null => return None,
            Values::Str(a) => Val::Str(a.value(i)),
            Values::LargeStr(a) => Val::Str(a.value(i)),
            Values::Utf8View(a) => Val::Str(a.value(i)),
            Values::Dict(keys, values) => return values.get(keys[i]),
            Values::I8(v) => Val::Int(v[i].into()),
            Values::I16(v) => Val::Int(v[i].into()),
            Values::I32(v) => Val::Int(v[i].into()),
            Values::I64(v) => Val::Int(v[i]),
            Values::U8(v) => Val::Int(v[i].into()),
            Values::U16(v) => Val::Int(v[i].into()),
            Values::U32(v) => Val::Int(v[i].into()),
            Values::U64(v) => Val::UInt(v[i]),
            Values::F32(v) => Val::F32(v[i]),
            Values::F64(v) => Val::F64(v[i]),
            Values::Bool(a) => Val::Bool(a.value(i)),
            Values::Time(v, unit) => Val::Instant(micros(v[i], *unit), false),
            Values::Date32(v) => Val::Instant(i64::from(v[i]) * DAY, true),
            // Milliseconds that should be whole days: floored to the day's midnight, so a
            // date is a date whatever the writer put in the time part.
            Values::Date64(v) => {
                Val::Instant(v[i].div_euclid(86_400_000).saturating_mul(DAY), true)
            }
            Values::Dec32(v, s) => Val::Decimal(decimal_text(i128::from(v[i]).to_string(), *s)),
            Values::Dec64(v, s) => Val::Decimal(decimal_text(i128::from(v[i]).to_string(), *s)),
            Values::Dec128(v, s) => Val::Decimal(decimal_text(v[i].to_string(), *s)),
            Values::Dec256(a, s) => Val::Decimal(decimal_text(a.value(i).to_string(), *s)),
        })
    }
}

/// Microseconds since the epoch of a timestamp in `unit`: finer units are floored (the
/// contract keeps microseconds, as RFC 3339 text with more digits is read); coarser ones
/// saturate past the representable range, which validation then refuses as out of range.
fn micros(v: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    }
}

/// The decimal text of an unscaled integer (`-12345`, scale 2 -> `-123.45`; scale -2 ->
/// `-1234500`).
fn decimal_text(digits: String, scale: i8) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", digits.as_str()),
    };
    if scale <= 0 {
        let zeros = if digits == "0" { 0 } else { usize::from(scale.unsigned_abs()) };
        return format!("{sign}{digits}{}", "0".repeat(zeros));
    }
    let scale = usize::from(scale.unsigned_abs());
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests;
