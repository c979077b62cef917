//! Materialising the high-volume lanes of the log as Parquet, incrementally, with rollups.

use crate::engine::{Engine, scratch_root};
use crate::{AnalyticsError, columnar_dir, runtime};
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{DataFrame, SessionContext};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenure_core::codec;
use tenure_core::event::EventBody;
use tenure_core::time::Timestamp;
use tenure_log::LogReader;

/// The high-volume tables: name (= lane of the same event type) and columns.
pub(crate) const TABLES: &[(&str, &str)] =
    &[("usage", "usage"), ("web_visits", "web_visit"), ("emails", "email")];

/// Records per materialised batch: bounds memory whatever the size of the tail.
const BATCH: u64 = 2_000_000;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(crate) fn schema(table: &str) -> SchemaRef {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let mut fields = vec![s("account_id", false), Field::new("ts", ts_type(), false)];
    match table {
        "usage" => fields.extend([
            s("user_id", false),
            s("event", false),
            s("feature", false),
            Field::new("quantity", DataType::Float64, false),
        ]),
        "web_visits" => {
            fields.extend([s("contact_id", true), s("section", false), s("page", true)])
        }
        _ => fields.extend([s("contact_id", true), s("campaign", true), s("action", false)]),
    }
    Arc::new(Schema::new(fields))
}

/// Column builders of one table for one month.
struct Builders {
    account: StringBuilder,
    ts: TimestampMicrosecondBuilder,
    text: Vec<StringBuilder>,
    quantity: Float64Builder,
}

impl Builders {
    fn new(texts: usize) -> Builders {
        Builders {
            account: StringBuilder::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            text: (0..texts).map(|_| StringBuilder::new()).collect(),
            quantity: Float64Builder::new(),
        }
    }

    fn finish(mut self, table: &str) -> Result<RecordBatch, AnalyticsError> {
        let mut cols: Vec<ArrayRef> =
            vec![Arc::new(self.account.finish()), Arc::new(self.ts.finish())];
        for t in &mut self.text {
            cols.push(Arc::new(t.finish()));
        }
        if table == "usage" {
            cols.push(Arc::new(self.quantity.finish()));
        }
        Ok(RecordBatch::try_new(schema(table), cols)?)
    }
}

/// What a refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Events materialised, per table.
    pub events: BTreeMap<String, u64>,
    pub files: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnalyticsError + '_ {
    move |source| AnalyticsError::Io { path: path.to_path_buf(), source }
}

fn read_watermark(dir: &Path) -> Result<u64, AnalyticsError> {
    let p = dir.join("WATERMARK");
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(s.trim().parse().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io(&p)(e)),
    }
}

/// Records how far a table is materialised: written aside, synced, then renamed over the
/// old one, so the watermark never runs ahead of files on disk.
fn write_watermark(dir: &Path, n: u64) -> Result<(), AnalyticsError> {
    let tmp = dir.join("WATERMARK.tmp");
    let f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    use std::io::Write;
    (&f).write_all(n.to_string().as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join("WATERMARK")).map_err(io(dir))?;
    Ok(())
}

/// The record range a file holds, from its name `YYYY-MM.FROM-TO.parquet`.
fn file_range(name: &str) -> Option<(u64, u64)> {
    let range = name.strip_suffix(".parquet")?.split('.').nth(1)?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The Parquet files of a directory with their month and record range, sorted.
fn listing(dir: &Path) -> Vec<(String, u64, u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let (from, to) = file_range(&name)?;
            Some((name.split('.').next()?.to_string(), from, to, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Removes files of records at or past the watermark (left by a refresh that stopped before
/// moving the watermark; they are written again), and the inputs of a compaction that
/// stopped after writing its output (a file whose range lies inside another's of the same
/// month was merged into it: files of one month never overlap otherwise).
fn remove_orphans(dir: &Path, watermark: u64) -> Result<(), AnalyticsError> {
    let files = listing(dir);
    for (month, from, to, path) in &files {
        let merged = files.iter().any(|(m, f, t, p)| {
            m == month && p != path && f <= from && to <= t && (f, t) != (from, to)
        });
        if *from >= watermark || merged {
            std::fs::remove_file(path).map_err(io(path))?;
        }
    }
    Ok(())
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), AnalyticsError> {
    use datafusion::parquet::basic::{Compression, ZstdLevel};
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    // Compressed (the fastest level): a batch's raw rows are kept as written when its month
    // is compacted ([`concat`]); uncompressed they took about seven times the bytes.
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(1 << 20))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props))?;
    w.write(batch)?;
    let file = w.into_inner()?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

/// The version of the columnar layout: a store written by another one is rebuilt from the
/// log (it is derived), never read. 2: `usage_daily` has a `month` column.
pub(crate) const FORMAT: &str = "2";

/// The derived tables, removed when the layout changes.
const DERIVED: &[&str] =
    &["usage", "usage_daily", "usage_features", "usage_accounts", "web_visits", "emails"];

/// Removes a columnar store of another layout (under the exclusive lock), so that the
/// refresh that follows rebuilds it from the log.
fn check_format(data: &Path) -> Result<(), AnalyticsError> {
    let dir = columnar_dir(data);
    let path = dir.join("FORMAT");
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref().map(str::trim) == Some(FORMAT) {
        return Ok(());
    }
    for t in DERIVED {
        let d = dir.join(t);
        if d.exists() {
            std::fs::remove_dir_all(&d).map_err(io(&d))?;
        }
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    std::fs::write(&path, FORMAT).map_err(io(&path))?;
    Ok(())
}

/// A month with this many files (one per refresh batch) is compacted into one.
const COMPACT_AT: usize = 8;

/// Brings the columnar tables up to date with the log. Cheap when nothing is new.
///
/// Compactions run on `engine`, and so do a month's rollups on a cluster (in this process
/// they are computed by `rollup`); the rollup of each new batch runs here, where the batch
/// is (it is the size of one batch, and a cluster cannot be sent memory). The tail of each
/// lane is read once, in order, and decoded in batches of [`BATCH`] records on this thread,
/// while a second thread writes the batch before (its Parquet files and daily rollups, in
/// parallel, then the watermark): decoding and writing overlap, and no record is read
/// twice.
pub fn refresh(data: &Path, engine: &Engine) -> Result<RefreshStats, AnalyticsError> {
    refresh_batched(data, engine, BATCH)
}

/// [`refresh`] with `batch` records per batch (a batch's memory is bounded; a refresh cut
/// short resumes after the last whole batch). Tests use small batches to make one refresh
/// write many.
pub fn refresh_batched(
    data: &Path,
    engine: &Engine,
    batch: u64,
) -> Result<RefreshStats, AnalyticsError> {
    let batch = batch.max(1);
    let mut stats = RefreshStats::default();
    let log = data.join("log");
    if !log.exists() {
        return Ok(stats);
    }
    let _lock = crate::lock(data, true)?;
    check_format(data)?;
    // Tables a query wrote for a cluster: no query runs now (they hold the lock shared), so
    // any left are a dead process's.
    let scratch = scratch_root(data);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    }
    let lanes: Vec<&str> = TABLES.iter().map(|(_, l)| *l).collect();
    let reader = LogReader::open_lanes(&log, &lanes)?;
    let rt = runtime()?;
    let daily = columnar_dir(data).join("usage_daily");
    for (table, lane) in TABLES {
        let dir = columnar_dir(data).join(table);
        let total = reader.lane_len(lane);
        let mark = read_watermark(&dir)?;
        remove_orphans(&dir, mark)?;
        if *table == "usage" {
            remove_orphans(&daily, mark)?;
        }
        let mut touched = std::collections::BTreeSet::new();
        if mark < total {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            if *table == "usage" {
                std::fs::create_dir_all(&daily).map_err(io(&daily))?;
            }
            let rollups = (*table == "usage").then_some(daily.as_path());
            let written = std::thread::scope(|s| {
                // A rendezvous: one batch is decoded while the one before is written.
                let (tx, rx) = std::sync::mpsc::sync_channel::<Decoded>(0);
                let writer = s.spawn(|| write_batches(table, &dir, rollups, rx));
                let decoded =
                    decode_tail(&reader, table, lane, mark, batch, |d| tx.send(d).is_ok());
                drop(tx);
                // The writer's error first: it is why a hand-over failed.
                let written = writer.join().map_err(|_| {
                    AnalyticsError::Decode("the thread writing Parquet panicked".into())
                })??;
                decoded?;
                Ok::<_, AnalyticsError>(written)
            })?;
            stats.files += written.files;
            *stats.events.entry(table.to_string()).or_default() += written.events;
            touched = written.months;
        }
        // What runs on the engine says so when it fails (a batch's rollup runs here).
        let on_engine = |e| engine.explain(e);
        rt.block_on(compact(engine, &dir, &touched, None)).map_err(on_engine)?;
        if *table == "usage" {
            rt.block_on(compact(engine, &daily, &touched, Some(COMPACT_DAILY)))
                .map_err(on_engine)?;
            rt.block_on(monthly_features(data, engine)).map_err(on_engine)?;
        }
    }
    Ok(stats)
}

/// Records `[from, to)` of a lane, decoded into per-month column builders.
struct Decoded {
    from: u64,
    to: u64,
    months: BTreeMap<String, Builders>,
}

/// What the writing thread wrote.
#[derive(Default)]
struct Written {
    files: u64,
    events: u64,
    months: std::collections::BTreeSet<String>,
}

/// Writes each batch as it comes: a Parquet file per month (and its daily rollup into
/// `rollups`), then the watermark past it, so that a refresh cut short resumes after the
/// last batch written whole.
fn write_batches(
    table: &str,
    dir: &Path,
    rollups: Option<&Path>,
    batches: std::sync::mpsc::Receiver<Decoded>,
) -> Result<Written, AnalyticsError> {
    use rayon::prelude::*;
    let mut w = Written::default();
    for d in batches {
        // A batch's months, and each month's two files, are written in parallel: the
        // thread decoding the next batch leaves a core idle for part of the time.
        let months: Vec<(String, Builders)> = d.months.into_iter().collect();
        let written: Vec<(String, u64, u64)> = months
            .into_par_iter()
            .map(|(month, b)| -> Result<_, AnalyticsError> {
                let batch = b.finish(table)?;
                let name = format!("{month}.{}-{}.parquet", d.from, d.to);
                let daily = || -> Result<u64, AnalyticsError> {
                    let Some(daily) = rollups else { return Ok(0) };
                    let rolled = crate::rollup::daily(&batch, daily_schema())?;
                    write_parquet(&daily.join(&name), &rolled)?;
                    Ok(1)
                };
                let (raw, daily) = rayon::join(|| write_parquet(&dir.join(&name), &batch), daily);
                raw?;
                Ok((month, 1 + daily?, batch.num_rows() as u64))
            })
            .collect::<Result<_, _>>()?;
        for (month, files, events) in written {
            w.files += files;
            w.events += events;
            w.months.insert(month);
        }
        write_watermark(dir, d.to)?;
    }
    Ok(w)
}

/// Merges the files of a compacted `usage_daily` month: rows of the same account, day,
/// user and feature from different batches become one.
const COMPACT_DAILY: &str = "SELECT account_id, day, user_id, feature, \
     CAST(sum(events) AS BIGINT) AS events, sum(quantity) AS quantity, month \
     FROM t GROUP BY account_id, day, user_id, feature, month";

/// Rewrites each touched month that has [`COMPACT_AT`] files or more as one file (through
/// `plan` over table `t`, else as is), so that the file count stays small however many
/// refreshes there were. The output is written before the inputs are removed; a crash in
/// between leaves inputs that [`remove_orphans`] recognises.
async fn compact(
    engine: &Engine,
    dir: &Path,
    touched: &std::collections::BTreeSet<String>,
    plan: Option<&str>,
) -> Result<(), AnalyticsError> {
    let files = listing(dir);
    for month in touched {
        let inputs: Vec<&(String, u64, u64, PathBuf)> =
            files.iter().filter(|f| &f.0 == month).collect();
        if inputs.len() < COMPACT_AT {
            continue;
        }
        let (from, to) = (inputs[0].1, inputs.iter().map(|f| f.2).max().unwrap_or(0));
        let out = dir.join(format!("{month}.{from}-{to}.parquet"));
        // A raw table's rows are kept as they are: its files' row groups are copied, not
        // decoded and written again (files of an earlier build's layout go the long way).
        if plan.is_none() && concat(&inputs.iter().map(|f| &f.3).collect::<Vec<_>>(), &out)? {
            for f in inputs {
                std::fs::remove_file(&f.3).map_err(io(&f.3))?;
            }
            continue;
        }
        let paths: Vec<String> = inputs.iter().map(|f| f.3.display().to_string()).collect();
        let ctx = writer_session(engine)?;
        let df = ctx.read_parquet(paths, ParquetReadOptions::default()).await?;
        let df = match plan {
            Some(q) => {
                ctx.register_table("t", df.into_view())?;
                ctx.sql(q).await?
            }
            None => df,
        };
        write_frame(engine, df, &out).await?;
        for f in inputs {
            std::fs::remove_file(&f.3).map_err(io(&f.3))?;
        }
    }
    Ok(())
}

/// Row groups a compaction keeps by copying them, at most (else it writes the month again).
const MAX_ROW_GROUPS: usize = 256;

/// Writes Parquet files of one layout as one file at `out` (aside, synced, renamed) by
/// copying their row groups' bytes in order, with their statistics and page indexes: no
/// row is decoded. `Ok(false)`, and nothing written, when the files' schemas or Arrow
/// types differ (a file written by an earlier build's layout) or they hold more than
/// [`MAX_ROW_GROUPS`] row groups.
fn concat(inputs: &[&PathBuf], out: &Path) -> Result<bool, AnalyticsError> {
    use datafusion::parquet::column::writer::ColumnCloseResult;
    use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use datafusion::parquet::file::writer::SerializedFileWriter;
    let mut files = Vec::with_capacity(inputs.len());
    for p in inputs {
        let f = std::fs::File::open(p).map_err(io(p))?;
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&f)?;
        files.push((f, meta));
    }
    let Some((_, first)) = files.first() else { return Ok(false) };
    // Small batches (a service refreshing every few minutes) would pile up small row groups
    // month after month: past this many, the month is written again in large ones.
    if files.iter().map(|(_, m)| m.num_row_groups()).sum::<usize>() > MAX_ROW_GROUPS {
        return Ok(false);
    }
    let layout = |m: &datafusion::parquet::file::metadata::ParquetMetaData| {
        let f = m.file_metadata();
        (f.schema().clone(), f.key_value_metadata().cloned())
    };
    let expected = layout(first);
    if files.iter().any(|(_, m)| layout(m) != expected) {
        return Ok(false);
    }
    let root = first.file_metadata().schema_descr().root_schema_ptr();
    let tmp = out.with_extension("parquet.tmp");
    let written = (|| -> Result<(), AnalyticsError> {
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut w = SerializedFileWriter::new(file, root, Arc::new(WriterProperties::default()))?;
        for kv in expected.1.iter().flatten() {
            w.append_key_value_metadata(kv.clone());
        }
        for (f, m) in &files {
            for (g, rg) in m.row_groups().iter().enumerate() {
                let index = m.column_index().and_then(|c| c.get(g));
                let offsets = m.offset_index().and_then(|o| o.get(g));
                let mut out = w.next_row_group()?;
                for (c, column) in rg.columns().iter().enumerate() {
                    out.append_column(
                        f,
                        ColumnCloseResult {
                            bytes_written: column.compressed_size() as u64,
                            rows_written: rg.num_rows() as u64,
                            metadata: column.clone(),
                            bloom_filter: None,
                            column_index: index.and_then(|r| r.get(c)).cloned(),
                            offset_index: offsets.and_then(|r| r.get(c)).cloned(),
                        },
                    )?;
                }
                out.close()?;
            }
        }
        let file = w.into_inner()?;
        file.sync_all().map_err(io(&tmp))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(true)
}

/// A session for plans whose results are written back: strings stay `Utf8` (not the view
/// type Parquet reads default to), so that every file of a table has one schema.
fn writer_session(engine: &Engine) -> Result<SessionContext, AnalyticsError> {
    let mut cfg = datafusion::prelude::SessionConfig::new();
    cfg.options_mut().execution.parquet.schema_force_view_types = false;
    engine.session(cfg, Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default()))
}

/// Writes a query result as one Parquet file: aside, synced, renamed.
async fn write_frame(engine: &Engine, df: DataFrame, out: &Path) -> Result<(), AnalyticsError> {
    let tmp = out.with_extension("parquet.tmp");
    if let Err(e) = engine.write_parquet(df, &tmp).await {
        // A file cut short is never read (not `.parquet`), but would stay until the same
        // name is written again.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(())
}

/// The monthly feature rollup, `usage_features`: per account, month and feature the first
/// and last day of use and the events, so that "used since" and whole-month event counts
/// never scan the daily rows of past months; and `usage_accounts`, per account and month
/// the distinct users and days. A month's files are rebuilt from its `usage_daily` files
/// whenever they changed (their names carry the range of records those hold).
async fn monthly_features(data: &Path, engine: &Engine) -> Result<(), AnalyticsError> {
    if matches!(engine, Engine::Embedded) {
        return monthly_here(data);
    }
    for (table, plan) in [("usage_features", FEATURES), ("usage_accounts", ACCOUNTS)] {
        monthly_rollup(data, engine, table, plan).await?;
    }
    Ok(())
}

/// [`monthly_features`] in this process: each month whose rollups are not both current has
/// its daily rows read once for both (`rollup::monthly`, the rows of [`FEATURES`] and
/// [`ACCOUNTS`]). Months of up to their share of `rollup::ROWS_PER_PASS` rows run one on
/// each thread, larger ones alone on every thread, so that the rows held stay within it.
/// As in [`monthly_rollup`], a table's file is written before the one it replaces is
/// removed, and that one is removed before the next table is written: a refresh stopped
/// anywhere leaves no month counted twice.
fn monthly_here(data: &Path) -> Result<(), AnalyticsError> {
    use crate::rollup::{ROWS_PER_PASS, Share};
    use rayon::prelude::*;
    let daily = listing(&columnar_dir(data).join("usage_daily"));
    let mut months: BTreeMap<&str, Vec<PathBuf>> = BTreeMap::new();
    for (m, _, _, p) in &daily {
        months.entry(m.as_str()).or_default().push(p.clone());
    }
    let mut tables = Vec::new();
    for table in ["usage_features", "usage_accounts"] {
        let dir = columnar_dir(data).join(table);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let existing = listing(&dir);
        for f in existing.iter().filter(|f| !months.contains_key(f.0.as_str())) {
            std::fs::remove_file(&f.3).map_err(io(&f.3))?;
        }
        tables.push((dir, existing));
    }
    // Whether each table's file of the month is missing (named by another range, or none).
    let stale = |month: &str| -> Vec<bool> {
        let (from, to) = month_range(&daily, month);
        let current = |f: &(String, u64, u64, PathBuf)| f.0 == month && (f.1, f.2) == (from, to);
        tables.iter().map(|(_, existing)| !existing.iter().any(current)).collect()
    };
    let month = |month: &str, paths: &[PathBuf], rows: u64, share: Share| {
        let (from, to) = month_range(&daily, month);
        let current = |f: &(String, u64, u64, PathBuf)| f.0 == month && (f.1, f.2) == (from, to);
        let stale = stale(month);
        let rolled = if stale.contains(&true) {
            let (f, a) =
                crate::rollup::monthly(paths, rows, features_schema(), accounts_schema(), share)?;
            Some([f, a])
        } else {
            None
        };
        for (i, (dir, existing)) in tables.iter().enumerate() {
            if let Some(rolled) = &rolled
                && stale[i]
            {
                write_parquet(&dir.join(format!("{month}.{from}-{to}.parquet")), &rolled[i])?;
            }
            // A crash between writing the current file and removing the one it replaced
            // leaves both: the old one goes now (a table read whole would count it twice).
            for f in existing.iter().filter(|f| f.0 == month && !current(f)) {
                std::fs::remove_file(&f.3).map_err(io(&f.3))?;
            }
        }
        Ok::<(), AnalyticsError>(())
    };
    let share = ROWS_PER_PASS / rayon::current_num_threads().max(1) as u64;
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for (m, paths) in &months {
        // Only a month to roll up again has its files' footers read for its size.
        let rows = if stale(m).contains(&true) { crate::rollup::rows(paths)? } else { 0 };
        if rows <= share { small.push((m, paths, rows)) } else { large.push((m, paths, rows)) }
    }
    small.into_par_iter().try_for_each(|(m, p, rows)| month(m, p, rows, Share::Beside(share)))?;
    large.into_iter().try_for_each(|(m, p, rows)| month(m, p, rows, Share::Alone))
}

/// Rebuilds `table`'s file of each month whose `usage_daily` files changed (through `plan`
/// over table `t`, the month's daily rows), and removes files of months gone.
async fn monthly_rollup(
    data: &Path,
    engine: &Engine,
    table: &str,
    plan: &str,
) -> Result<(), AnalyticsError> {
    let daily = listing(&columnar_dir(data).join("usage_daily"));
    let dir = columnar_dir(data).join(table);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let existing = listing(&dir);
    let mut months: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (m, _, _, p) in &daily {
        months.entry(m.as_str()).or_default().push(p.display().to_string());
    }
    for f in existing.iter().filter(|f| !months.contains_key(f.0.as_str())) {
        std::fs::remove_file(&f.3).map_err(io(&f.3))?;
    }
    for (month, paths) in months {
        let (from, to) = month_range(&daily, month);
        let current = |f: &&(String, u64, u64, PathBuf)| f.0 == month && (f.1, f.2) == (from, to);
        if existing.iter().any(|f| current(&f)) {
            // A crash between writing the current file and removing the one it replaced
            // leaves both: the old one goes now (a table read whole would count it twice).
            for f in existing.iter().filter(|f| f.0 == month && !current(f)) {
                std::fs::remove_file(&f.3).map_err(io(&f.3))?;
            }
            continue;
        }
        let ctx = writer_session(engine)?;
        let df = ctx.read_parquet(paths, ParquetReadOptions::default()).await?;
        ctx.register_table("t", df.into_view())?;
        let df = ctx.sql(plan).await?;
        write_frame(engine, df, &dir.join(format!("{month}.{from}-{to}.parquet"))).await?;
        for f in existing.iter().filter(|f| f.0 == month && !current(f)) {
            std::fs::remove_file(&f.3).map_err(io(&f.3))?;
        }
    }
    Ok(())
}

/// The record range of a month's `usage_daily` files: what its monthly rollups are named by.
fn month_range(daily: &[(String, u64, u64, PathBuf)], month: &str) -> (u64, u64) {
    daily.iter().filter(|f| f.0 == month).fold((u64::MAX, 0), |(a, b), f| (a.min(f.1), b.max(f.2)))
}

/// For each month (`YYYY-MM`) whose rollups in `usage_features` and `usage_accounts` are
/// both current (named by the range of the month's `usage_daily` files), the two files.
/// A month missing from this map is computed from `usage_daily` instead: a rollup is
/// never trusted unless it matches the daily rows it was made from.
pub(crate) fn current_rollups(data: &Path) -> BTreeMap<String, (PathBuf, PathBuf)> {
    let dir = columnar_dir(data);
    let daily = listing(&dir.join("usage_daily"));
    let features = listing(&dir.join("usage_features"));
    let accounts = listing(&dir.join("usage_accounts"));
    let mut out = BTreeMap::new();
    let months: std::collections::BTreeSet<&str> = daily.iter().map(|f| f.0.as_str()).collect();
    for month in months {
        let range = month_range(&daily, month);
        let find = |files: &[(String, u64, u64, PathBuf)]| {
            files.iter().find(|f| f.0 == month && (f.1, f.2) == range).map(|f| f.3.clone())
        };
        if let (Some(f), Some(a)) = (find(&features), find(&accounts)) {
            out.insert(month.to_string(), (f, a));
        }
    }
    out
}

/// Per account and month: distinct users and days, which a month's events alone cannot
/// give (`usage_monthly` reads complete months from here). Plain groupings, not
/// `count(DISTINCT ...)`: the engine keeps a set per group for those, which took 8 GiB and
/// 9 s for one month of a million accounts where this takes under 1 GiB and 1 s.
pub(crate) const ACCOUNTS: &str = "SELECT account_id, month, count(u) AS users, count(d) AS days FROM \
     (SELECT account_id, month, 1 AS u, CAST(NULL AS BIGINT) AS d \
      FROM t GROUP BY account_id, month, user_id \
      UNION ALL SELECT account_id, month, CAST(NULL AS BIGINT) AS u, 1 AS d \
      FROM t GROUP BY account_id, month, day) \
     GROUP BY account_id, month";

pub(crate) const FEATURES: &str = "SELECT account_id, month, feature, \
     min(day) AS first_day, max(day) AS last_day, CAST(sum(events) AS BIGINT) AS events \
     FROM t GROUP BY account_id, month, feature";

/// Why a scan of the tail stopped early.
enum Stop {
    /// The writing thread is gone (its error says why).
    Writer,
    Failed(AnalyticsError),
}

/// The month of each record and where it starts and ends: a lane's records are mostly in
/// time order, so the calendar is worked out again only at a change of month.
type LastMonth = ((i64, u32), i64, i64);

/// The column builders of `ts`'s month.
fn builders<'m>(
    months: &'m mut BTreeMap<(i64, u32), Builders>,
    last: &mut LastMonth,
    ts: Timestamp,
    texts: usize,
) -> &'m mut Builders {
    if !(last.1..last.2).contains(&ts.0) {
        let (y, m, _) = ts.ymd();
        // Where the month's bounds are no instants: worked out every time.
        let (from, to) = crate::rollup::month_bounds(ts.0).unwrap_or((0, 0));
        *last = ((y, m), from, to);
    }
    months.entry(last.0).or_insert_with(|| Builders::new(texts))
}

/// Decodes one record of `table`'s lane into its month's column builders.
fn append(
    table: &str,
    lane: &str,
    payload: &[u8],
    months: &mut BTreeMap<(i64, u32), Builders>,
    last: &mut LastMonth,
    texts: usize,
) -> Result<(), Stop> {
    let failed = |e: codec::CodecError| Stop::Failed(AnalyticsError::Decode(e.to_string()));
    // Usage, the largest lane by far, is read borrowing its strings.
    if table == "usage"
        && let Ok(u) = codec::decode_usage(payload)
    {
        let b = builders(months, last, u.ts, texts);
        b.account.append_value(u.account.unwrap_or(""));
        b.ts.append_value(u.ts.0);
        b.text[0].append_value(u.user_id);
        b.text[1].append_value(u.event);
        b.text[2].append_value(u.feature.unwrap_or(u.event));
        b.quantity.append_value(u.quantity);
        return Ok(());
    }
    let e = codec::decode(payload).map_err(failed)?;
    let b = builders(months, last, e.ts, texts);
    match e.body {
        EventBody::WebVisit { contact_id, section, page } if table == "web_visits" => {
            b.text[0].append_option(contact_id.as_deref());
            b.text[1].append_value(section.as_str());
            b.text[2].append_option(page.as_deref());
        }
        EventBody::Email { contact_id, campaign, action } if table == "emails" => {
            b.text[0].append_option(contact_id.as_deref());
            b.text[1].append_option(campaign.as_deref());
            b.text[2].append_value(action.as_str());
        }
        body => {
            return Err(Stop::Failed(AnalyticsError::Decode(format!(
                "a {} event in the {lane} lane",
                body.kind().as_str()
            ))));
        }
    }
    b.account.append_value(e.account.as_deref().unwrap_or(""));
    b.ts.append_value(e.ts.0);
    Ok(())
}

/// Decodes the lane's records from `from` to its end, in order, handing each `batch` of
/// them (and the rest) to `hand` as per-month column builders; stops when `hand` returns
/// false.
fn decode_tail(
    reader: &LogReader,
    table: &str,
    lane: &str,
    from: u64,
    batch: u64,
    mut hand: impl FnMut(Decoded) -> bool,
) -> Result<(), AnalyticsError> {
    let texts = schema(table).fields().len() - 2 - (table == "usage") as usize;
    let mut start = from;
    let mut months: BTreeMap<(i64, u32), Builders> = BTreeMap::new();
    let mut last: LastMonth = ((0, 0), 0, 0);
    let named = |months: BTreeMap<(i64, u32), Builders>| {
        months.into_iter().map(|((y, m), b)| (format!("{y:04}-{m:02}"), b)).collect()
    };
    let result = reader.scan_from(lane, from, |i, _, payload| {
        append(table, lane, payload, &mut months, &mut last, texts)?;
        if i + 1 - start == batch {
            let batch =
                Decoded { from: start, to: i + 1, months: named(std::mem::take(&mut months)) };
            start = i + 1;
            if !hand(batch) {
                return Err(Stop::Writer);
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(tenure_log::ScanError::Log(l)) => return Err(AnalyticsError::Log(l)),
        Err(tenure_log::ScanError::Callback(Stop::Failed(e))) => return Err(e),
        Err(tenure_log::ScanError::Callback(Stop::Writer)) => return Ok(()),
    }
    let end = reader.lane_len(lane);
    if start < end {
        hand(Decoded { from: start, to: end, months: named(months) });
    }
    Ok(())
}

/// The Parquet files of a table, for registering it.
pub(crate) fn table_dir(data: &Path, table: &str) -> PathBuf {
    columnar_dir(data).join(table)
}

/// The schema of `usage_daily` (what `rollup::daily` produces), for an empty table.
pub(crate) fn daily_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("day", ts_type(), false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("feature", DataType::Utf8, false),
        Field::new("events", DataType::Int64, false),
        Field::new("quantity", DataType::Float64, true),
        Field::new("month", ts_type(), false),
    ]))
}

/// The schema of `usage_accounts` (what [`ACCOUNTS`] produces).
pub(crate) fn accounts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("month", ts_type(), false),
        Field::new("users", DataType::Int64, false),
        Field::new("days", DataType::Int64, false),
    ]))
}

/// The schema of `usage_features` (what [`FEATURES`] produces), for an empty table.
pub(crate) fn features_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("month", ts_type(), false),
        Field::new("feature", DataType::Utf8, false),
        Field::new("first_day", ts_type(), true),
        Field::new("last_day", ts_type(), true),
        Field::new("events", DataType::Int64, true),
    ]))
}
