//! The usage rollups of a refresh in this process, computed here rather than planned: a
//! batch's daily rollup (`usage_daily`) and a month's feature and account rollups
//! (`usage_features`, `usage_accounts`). Each gives the rows its SQL plan in `store` gives
//! (the tests hold them to the plans, run by DataFusion), for less CPU: a key is hashed
//! once, as borrowed strings, in tables sized to the caches, and a month's daily rows are
//! read once for both of its rollups (measured on 10 M usage events: the import with its
//! refresh took 10.0-10.3 s of user time instead of 13.2-13.8 s, with the changes beside).

use crate::AnalyticsError;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::Arc;
use tenure_core::time::{DAY, PeriodUnit, Timestamp};

/// The start and end of the month of `t`, where both are instants a `Timestamp` holds.
pub(crate) fn month_bounds(t: i64) -> Option<(i64, i64)> {
    let start = PeriodUnit::Month.checked_floor(Timestamp(t))?;
    // A month is at most 31 days long and the next at least 28: 32 days on is in the next.
    let next = PeriodUnit::Month.floor(Timestamp(start.0.checked_add(32 * DAY)?));
    Some((start.0, next.0))
}

/// The month of `t`, from a cache of the last month seen (a batch's rows are mostly of one
/// month): `(start, end)` of that month.
fn month_of(t: i64, cache: &mut (i64, i64)) -> i64 {
    if !(cache.0..cache.1).contains(&t) {
        match month_bounds(t) {
            Some(b) => *cache = b,
            None => return PeriodUnit::Month.floor(Timestamp(t)).0,
        }
    }
    cache.0
}

/// Rows are grouped part by part, a part being the rows of the accounts whose hash falls
/// in it: a part's hash tables fit in the processor's caches, where one table over all rows
/// (a million groups) misses them on nearly every row (measured on a month's rollups: 500
/// ns a row, against under 200 ns in parts, reading the files included). Every key holds
/// the account, so no group spans two parts.
const PARTS: usize = 64;

fn part(account: &str) -> usize {
    (FxBuildHasher.hash_one(account) >> 58) as usize
}

/// A batch of the `usage` table (`account_id`, `ts`, `user_id`, `event`, `feature`,
/// `quantity`, none null) rolled up per account, day, user and feature: the rows of the
/// SQL plan it replaced (`tests::USAGE_DAILY`), part by part in the order their groups
/// first appear.
pub(crate) fn daily(batch: &RecordBatch, schema: SchemaRef) -> Result<RecordBatch, AnalyticsError> {
    let account = batch.column(0).as_string::<i32>();
    let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
    let user = batch.column(2).as_string::<i32>();
    let feature = batch.column(4).as_string::<i32>();
    let quantity = batch.column(5).as_primitive::<Float64Type>();
    let n = batch.num_rows();
    let mut parts: Vec<Vec<u32>> =
        (0..PARTS).map(|_| Vec::with_capacity(n / PARTS * 5 / 4)).collect();
    for i in 0..n {
        parts[part(account.value(i))].push(i as u32);
    }
    let (mut first, mut days, mut months) = (Vec::new(), Vec::new(), Vec::new());
    let (mut events, mut quantities) = (Vec::<i64>::new(), Vec::<f64>::new());
    let mut cache = (0, 0);
    let mut groups: FxHashMap<(&str, i64, &str, &str), u32> = FxHashMap::default();
    for rows in &parts {
        groups.clear();
        for &i in rows {
            let i = i as usize;
            let t = ts.value(i);
            let day = t.div_euclid(DAY) * DAY;
            match groups.entry((account.value(i), day, user.value(i), feature.value(i))) {
                Entry::Occupied(g) => {
                    let g = *g.get() as usize;
                    events[g] += 1;
                    quantities[g] += quantity.value(i);
                }
                Entry::Vacant(slot) => {
                    slot.insert(first.len() as u32);
                    first.push(i as u32);
                    days.push(day);
                    months.push(month_of(t, &mut cache));
                    events.push(1);
                    // As a sum starts: from 0.0 (which turns -0.0 into 0.0).
                    quantities.push(0.0 + quantity.value(i));
                }
            }
        }
    }
    let rows = UInt32Array::from(first);
    let cols: Vec<ArrayRef> = vec![
        take(batch.column(0), &rows, None)?,
        instants(days),
        take(batch.column(2), &rows, None)?,
        take(batch.column(4), &rows, None)?,
        Arc::new(Int64Array::from(events)),
        Arc::new(Float64Array::from(quantities)),
        instants(months),
    ];
    Ok(RecordBatch::try_new(schema, cols)?)
}

fn instants(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
}

/// A column of a `usage_daily` file as `to` (files written by another version may hold
/// strings as views or large strings).
fn column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, AnalyticsError> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| AnalyticsError::Decode(format!("usage_daily has no column {name}")))?;
    Ok(if c.data_type() == to { c.clone() } else { cast(c, to)? })
}

/// The columns of a batch of `usage_daily` rows that the monthly rollups read.
struct Daily {
    account: ArrayRef,
    day: ArrayRef,
    user: ArrayRef,
    feature: ArrayRef,
    events: ArrayRef,
    month: ArrayRef,
}

impl Daily {
    fn new(b: &RecordBatch) -> Result<Daily, AnalyticsError> {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let d = Daily {
            account: column(b, "account_id", &DataType::Utf8)?,
            day: column(b, "day", &ts)?,
            user: column(b, "user_id", &DataType::Utf8)?,
            feature: column(b, "feature", &DataType::Utf8)?,
            events: column(b, "events", &DataType::Int64)?,
            month: column(b, "month", &ts)?,
        };
        // The plans' groupings skip no row: a null key is a group of its own, and null
        // counts nothing. `usage_daily` holds none (its writers never write one); should a
        // damaged file hold one, it is said rather than counted some other way.
        let columns = [&d.account, &d.day, &d.user, &d.feature, &d.events, &d.month];
        if columns.iter().any(|c| c.null_count() > 0) {
            return Err(AnalyticsError::Decode("usage_daily holds a null".into()));
        }
        Ok(d)
    }

    fn view(&self) -> View<'_> {
        View {
            account: self.account.as_string::<i32>(),
            day: self.day.as_primitive::<TimestampMicrosecondType>().values(),
            user: self.user.as_string::<i32>(),
            feature: self.feature.as_string::<i32>(),
            events: self.events.as_primitive::<Int64Type>().values(),
            month: self.month.as_primitive::<TimestampMicrosecondType>().values(),
        }
    }
}

struct View<'a> {
    account: &'a StringArray,
    day: &'a [i64],
    user: &'a StringArray,
    feature: &'a StringArray,
    events: &'a [i64],
    month: &'a [i64],
}

/// One part's `usage_accounts` rows (account, month, users, days) and `usage_features`
/// rows (account, month, feature, first day, last day, events).
type PartRows<'a> = (Vec<(&'a str, i64, i64, i64)>, Vec<(&'a str, i64, &'a str, i64, i64, i64)>);

/// The monthly rollups of one part's rows (batch, row).
fn monthly_part<'a>(views: &[View<'a>], rows: &[(u32, u32)]) -> PartRows<'a> {
    let mut groups: FxHashMap<(&str, i64), u32> = FxHashMap::default();
    let mut accounts: Vec<(&str, i64, i64, i64)> = Vec::new();
    let mut users: FxHashSet<(u32, &str)> = FxHashSet::default();
    let mut days: FxHashSet<(u32, i64)> = FxHashSet::default();
    let mut feature_of: FxHashMap<(u32, &str), u32> = FxHashMap::default();
    let mut features: Vec<(&str, i64, &str, i64, i64, i64)> = Vec::new();
    for &(b, i) in rows {
        let (v, i) = (&views[b as usize], i as usize);
        let (account, month) = (v.account.value(i), v.month[i]);
        let g = *groups.entry((account, month)).or_insert_with(|| {
            accounts.push((account, month, 0, 0));
            accounts.len() as u32 - 1
        });
        if users.insert((g, v.user.value(i))) {
            accounts[g as usize].2 += 1;
        }
        let (day, n) = (v.day[i], v.events[i]);
        if days.insert((g, day)) {
            accounts[g as usize].3 += 1;
        }
        let feature = v.feature.value(i);
        match feature_of.entry((g, feature)) {
            Entry::Occupied(f) => {
                let f = &mut features[*f.get() as usize];
                f.3 = f.3.min(day);
                f.4 = f.4.max(day);
                // As the plan's sum of 64-bit integers.
                f.5 = f.5.wrapping_add(n);
            }
            Entry::Vacant(slot) => {
                slot.insert(features.len() as u32);
                features.push((account, month, feature, day, day, n));
            }
        }
    }
    (accounts, features)
}

/// Daily rows the monthly rollups of a refresh hold at once (about 75 bytes each in
/// memory: 1.2 GB): a larger month is read once for each slice of its accounts.
pub(crate) const ROWS_PER_PASS: u64 = 16 << 20;

/// How a month's rollups share the machine.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Share {
    /// Alone: its parts grouped on every thread, up to [`ROWS_PER_PASS`] rows held.
    Alone,
    /// Beside other months, one on each of the threads: on the calling thread (which so
    /// never waits on, nor picks up, another month's work), up to this many rows held.
    Beside(u64),
}

/// The daily rows in `files`, from their footers.
pub(crate) fn rows(files: &[PathBuf]) -> Result<u64, AnalyticsError> {
    let mut total = 0u64;
    for path in files {
        total += open(path)?.metadata().file_metadata().num_rows().max(0) as u64;
    }
    Ok(total)
}

fn open(path: &PathBuf) -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>, AnalyticsError> {
    let file = std::fs::File::open(path)
        .map_err(|source| AnalyticsError::Io { path: path.clone(), source })?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(file)?)
}

/// The slice of the accounts, of `passes`, that `account` is in: from other bits of its
/// hash than its part's.
fn slice(account: &str, passes: u64) -> u64 {
    ((FxBuildHasher.hash_one(account) & 0xffff_ffff) * passes) >> 32
}

/// The `usage_features` and `usage_accounts` rows of the `usage_daily` rows in `files`
/// (`rows` of them, as [`rows`] counts them):
/// those of the `store::FEATURES` and `store::ACCOUNTS` plans. A month's daily rows are
/// held while they are grouped, at most as many at a time as `share` says.
pub(crate) fn monthly(
    files: &[PathBuf],
    rows: u64,
    features: SchemaRef,
    accounts: SchemaRef,
    share: Share,
) -> Result<(RecordBatch, RecordBatch), AnalyticsError> {
    let rows_per_pass = match share {
        Share::Alone => ROWS_PER_PASS,
        Share::Beside(n) => n,
    };
    let parallel = matches!(share, Share::Alone);
    let passes = rows.div_ceil(rows_per_pass.max(1)).max(1);
    let (mut f, mut a) = (Vec::new(), Vec::new());
    for pass in 0..passes {
        let mut batches = Vec::new();
        for path in files {
            let builder = open(path)?;
            let wanted = ["account_id", "day", "user_id", "feature", "events", "month"];
            let mask = ProjectionMask::columns(builder.parquet_schema(), wanted);
            for b in builder.with_projection(mask).with_batch_size(64 * 1024).build()? {
                let mut b = b?;
                if passes > 1 {
                    let ids = column(&b, "account_id", &DataType::Utf8)?;
                    let ids = ids.as_string::<i32>();
                    let keep: BooleanArray = ids
                        .iter()
                        .map(|id| Some(slice(id.unwrap_or(""), passes) == pass))
                        .collect();
                    b = filter_record_batch(&b, &keep)?;
                }
                batches.push(Daily::new(&b)?);
            }
        }
        let (features, accounts) =
            group_month(&batches, features.clone(), accounts.clone(), parallel)?;
        f.push(features);
        a.push(accounts);
    }
    Ok((concat_batches(&features, &f)?, concat_batches(&accounts, &a)?))
}

/// [`monthly`] of daily rows held in memory, the parts on every thread if `parallel`.
fn group_month(
    batches: &[Daily],
    features: SchemaRef,
    accounts: SchemaRef,
    parallel: bool,
) -> Result<(RecordBatch, RecordBatch), AnalyticsError> {
    use rayon::prelude::*;
    let views: Vec<View<'_>> = batches.iter().map(Daily::view).collect();
    let total: usize = views.iter().map(|v| v.day.len()).sum();
    let mut parts: Vec<Vec<(u32, u32)>> =
        (0..PARTS).map(|_| Vec::with_capacity(total / PARTS * 5 / 4)).collect();
    for (b, v) in views.iter().enumerate() {
        for i in 0..v.day.len() {
            parts[part(v.account.value(i))].push((b as u32, i as u32));
        }
    }
    let done: Vec<PartRows<'_>> = if parallel {
        parts.par_iter().map(|rows| monthly_part(&views, rows)).collect()
    } else {
        parts.iter().map(|rows| monthly_part(&views, rows)).collect()
    };
    // Collected: string arrays are built from iterators of known length.
    let a: Vec<_> = done.iter().flat_map(|d| &d.0).collect();
    let a = a.iter();
    let accounts = RecordBatch::try_new(
        accounts,
        vec![
            Arc::new(StringArray::from_iter_values(a.clone().map(|r| r.0))),
            instants(a.clone().map(|r| r.1).collect()),
            Arc::new(Int64Array::from_iter_values(a.clone().map(|r| r.2))),
            Arc::new(Int64Array::from_iter_values(a.map(|r| r.3))),
        ],
    )?;
    let f: Vec<_> = done.iter().flat_map(|d| &d.1).collect();
    let f = f.iter();
    let features = RecordBatch::try_new(
        features,
        vec![
            Arc::new(StringArray::from_iter_values(f.clone().map(|r| r.0))),
            instants(f.clone().map(|r| r.1).collect()),
            Arc::new(StringArray::from_iter_values(f.clone().map(|r| r.2))),
            instants(f.clone().map(|r| r.3).collect()),
            instants(f.clone().map(|r| r.4).collect()),
            Arc::new(Int64Array::from_iter_values(f.map(|r| r.5))),
        ],
    )?;
    Ok((features, accounts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ACCOUNTS, FEATURES, accounts_schema, daily_schema, features_schema};
    use datafusion::arrow::array::TimestampMicrosecondBuilder;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};
    use proptest::prelude::*;

    /// The daily rollup as a DataFusion plan, as the refresh planned it before
    /// [`daily`]: `day` and `month` added in our calendar code (DataFusion truncates through
    /// nanoseconds, which end in 1677 and 2262), then grouped.
    const USAGE_DAILY: &str = "SELECT account_id, day, user_id, feature, \
         count(*) AS events, sum(quantity) AS quantity, month \
         FROM batch GROUP BY account_id, day, user_id, feature, month";

    fn ts_type() -> DataType {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }

    fn usage_schema() -> SchemaRef {
        crate::store::schema("usage")
    }

    fn batch(rows: &[(&str, i64, &str, &str, f64)]) -> RecordBatch {
        let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for r in rows {
            ts.append_value(r.1);
        }
        let strings = |column: usize| -> ArrayRef {
            let v = rows.iter().map(|r| [r.0, r.2, r.3][column]);
            Arc::new(StringArray::from_iter_values(v))
        };
        RecordBatch::try_new(
            usage_schema(),
            vec![
                strings(0),
                Arc::new(ts.finish()),
                strings(1),
                strings(2),
                strings(2),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.4))),
            ],
        )
        .unwrap()
    }

    fn plan(tables: Vec<(&str, RecordBatch)>, sql: &str) -> Vec<RecordBatch> {
        crate::runtime().unwrap().block_on(async {
            let ctx = SessionContext::new();
            for (name, b) in tables {
                let t = MemTable::try_new(b.schema(), vec![vec![b]]).unwrap();
                ctx.register_table(name, Arc::new(t)).unwrap();
            }
            ctx.sql(sql).await.unwrap().collect().await.unwrap()
        })
    }

    /// The rows of batches as text, sorted (neither the plans nor [`daily`] promise an
    /// order).
    fn rows(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| datafusion::arrow::util::display::array_value_to_string(c, i).unwrap())
                    .collect();
                out.push(cells.join(" | "));
            }
        }
        out.sort();
        out
    }

    fn t(s: &str) -> i64 {
        Timestamp::parse(s).unwrap().0
    }

    #[test]
    fn a_batch_rolls_up_per_account_day_user_and_feature() {
        let b = batch(&[
            ("a", t("2024-03-01T10:00:00Z"), "u1", "core", 1.0),
            ("a", t("2024-03-01T23:59:59.999999Z"), "u1", "core", 2.5),
            ("a", t("2024-03-02T00:00:00Z"), "u1", "core", 1.0),
            ("b", t("2024-03-01T10:00:00Z"), "u1", "core", 1.0),
            ("a", t("2024-03-01T11:00:00Z"), "u2", "core", 4.0),
            ("a", t("2024-03-01T12:00:00Z"), "u1", "files", -0.0),
            ("a", t("1969-12-31T23:00:00Z"), "u1", "core", 1.0),
        ]);
        let got = daily(&b, daily_schema()).unwrap();
        assert_eq!(got.schema(), daily_schema());
        assert_eq!(
            rows(&[got]),
            [
                "a | 1969-12-31T00:00:00Z | u1 | core | 1 | 1.0 | 1969-12-01T00:00:00Z",
                "a | 2024-03-01T00:00:00Z | u1 | core | 2 | 3.5 | 2024-03-01T00:00:00Z",
                "a | 2024-03-01T00:00:00Z | u1 | files | 1 | 0.0 | 2024-03-01T00:00:00Z",
                "a | 2024-03-01T00:00:00Z | u2 | core | 1 | 4.0 | 2024-03-01T00:00:00Z",
                "a | 2024-03-02T00:00:00Z | u1 | core | 1 | 1.0 | 2024-03-01T00:00:00Z",
                "b | 2024-03-01T00:00:00Z | u1 | core | 1 | 1.0 | 2024-03-01T00:00:00Z",
            ]
        );
    }

    #[test]
    fn month_bounds_hold_only_instants() {
        assert_eq!(
            month_bounds(t("2024-02-29T23:59:59Z")),
            Some((t("2024-02-01"), t("2024-03-01")))
        );
        let december = t("9999-12-01");
        assert_eq!(month_bounds(t("9999-12-31T23:59:59Z")), Some((december, december + 31 * DAY)));
        assert_eq!(
            month_bounds(t("0001-01-01T00:00:00Z")),
            Some((t("0001-01-01"), t("0001-02-01")))
        );
        assert_eq!(month_bounds(i64::MAX - 1), None);
        assert_eq!(month_bounds(i64::MIN), None);
    }

    /// Daily files written with other string types and nullable columns (as a compaction
    /// by DataFusion may write them) give the same rollups.
    #[test]
    fn daily_files_of_other_string_types_roll_up_the_same() {
        use datafusion::arrow::datatypes::Field;
        let rows = owned(&[(0, t("2024-03-01"), 0, 0, 1.0), (1, t("2024-03-02"), 1, 2, 2.0)]);
        let d = daily(&as_batch(&rows), daily_schema()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, b: &RecordBatch| {
            let path = dir.path().join(name);
            let f = std::fs::File::create(&path).unwrap();
            let mut w =
                datafusion::parquet::arrow::ArrowWriter::try_new(f, b.schema(), None).unwrap();
            w.write(b).unwrap();
            w.close().unwrap();
            path
        };
        let plain = write("plain.parquet", &d);
        for to in [DataType::LargeUtf8, DataType::Utf8View] {
            let (mut fields, mut cols) = (Vec::new(), Vec::new());
            for (f, c) in d.schema().fields().iter().zip(d.columns()) {
                let ty = if f.data_type() == &DataType::Utf8 {
                    to.clone()
                } else {
                    f.data_type().clone()
                };
                fields.push(Field::new(f.name(), ty.clone(), true));
                cols.push(cast(c, &ty).unwrap());
            }
            let other = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
            let other = write("other.parquet", &other);
            let other = [other];
            let got = monthly(
                &other,
                super::rows(&other).unwrap(),
                features_schema(),
                accounts_schema(),
                Share::Alone,
            )
            .unwrap();
            let want = monthly(
                std::slice::from_ref(&plain),
                2,
                features_schema(),
                accounts_schema(),
                Share::Alone,
            )
            .unwrap();
            assert_eq!(rows_of(&got.0), rows_of(&want.0), "{to}");
            assert_eq!(rows_of(&got.1), rows_of(&want.1), "{to}");
            assert_eq!(got.0.num_rows(), 2);
        }
    }

    fn rows_of(b: &RecordBatch) -> Vec<String> {
        rows(std::slice::from_ref(b))
    }

    /// Usage rows of a few accounts, users and features over days that cross months,
    /// the epoch and the ends of the calendar; quantities whose sums are exact in any
    /// order.
    fn arb_rows() -> impl Strategy<Value = Vec<(u8, i64, u8, u8, f64)>> {
        let day = prop_oneof![
            8 => (0i64..70).prop_map(|d| t("2024-01-20") + d * DAY),
            1 => (0i64..40).prop_map(|d| t("1969-12-10") + d * DAY),
            1 => (0i64..3).prop_map(|d| t("0001-01-01") + d * DAY),
        ];
        let row =
            (0u8..4, day, 0i64..3, 0u8..5, 0u8..3, 0u8..4).prop_map(|(a, day, hour, u, f, q)| {
                (a, day + hour * 7 * 3_600_000_000, u, f, [0.5, 1.0, 2.25, -0.0][q as usize])
            });
        proptest::collection::vec(row, 0..200)
    }

    fn owned(rows: &[(u8, i64, u8, u8, f64)]) -> Vec<(String, i64, String, String, f64)> {
        rows.iter()
            .map(|r| {
                (
                    format!("acc-{}", r.0),
                    r.1,
                    format!("u{}", r.2),
                    ["core", "files", "api"][r.3 as usize].to_string(),
                    r.4,
                )
            })
            .collect()
    }

    fn as_batch(rows: &[(String, i64, String, String, f64)]) -> RecordBatch {
        let r: Vec<(&str, i64, &str, &str, f64)> =
            rows.iter().map(|r| (r.0.as_str(), r.1, r.2.as_str(), r.3.as_str(), r.4)).collect();
        batch(&r)
    }

    /// What the refresh planned before [`daily`]: the batch with `day` and `month`, grouped.
    fn daily_by_plan(b: &RecordBatch) -> Vec<RecordBatch> {
        let ts = b.column(1).as_primitive::<TimestampMicrosecondType>();
        let floor = |unit: PeriodUnit| -> ArrayRef {
            let v: TimestampMicrosecondArray =
                ts.iter().map(|t| t.map(|t| unit.floor(Timestamp(t)).0)).collect();
            Arc::new(v.with_timezone("UTC"))
        };
        let mut fields: Vec<Field> =
            b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("day", ts_type(), false));
        fields.push(Field::new("month", ts_type(), false));
        let mut cols = b.columns().to_vec();
        cols.push(floor(PeriodUnit::Day));
        cols.push(floor(PeriodUnit::Month));
        let with = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        plan(vec![("batch", with)], USAGE_DAILY)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// [`daily`] gives the rows of the plan it replaced, on every batch.
        #[test]
        fn daily_gives_the_plans_rows(r in arb_rows()) {
            let b = as_batch(&owned(&r));
            let got = daily(&b, daily_schema()).unwrap();
            prop_assert_eq!(rows(&[got]), rows(&daily_by_plan(&b)));
        }

        /// [`monthly`] over a month's `usage_daily` files gives the rows of [`FEATURES`]
        /// and [`ACCOUNTS`] over the same files, however the rows are cut into files and
        /// however many passes over them it takes.
        #[test]
        fn monthly_gives_the_plans_rows(r in arb_rows(), cut in 0usize..200, per_pass in 0u64..300) {
            let rows_of = owned(&r);
            let dir = tempfile::tempdir().unwrap();
            let cut = cut.min(rows_of.len());
            let mut files = Vec::new();
            for (i, part) in [&rows_of[..cut], &rows_of[cut..]].into_iter().enumerate() {
                let d = daily(&as_batch(part), daily_schema()).unwrap();
                let path = dir.path().join(format!("{i}.parquet"));
                let f = std::fs::File::create(&path).unwrap();
                let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(f, d.schema(), None).unwrap();
                w.write(&d).unwrap();
                w.close().unwrap();
                files.push(path);
            }
            // Rows held at a time: from one (a pass per row) to all of them, or alone.
            let share = if per_pass == 0 { Share::Alone } else { Share::Beside(per_pass) };
            let (features, accounts) =
                monthly(&files, super::rows(&files).unwrap(), features_schema(), accounts_schema(), share)
                    .unwrap();
            prop_assert_eq!(features.schema(), features_schema());
            prop_assert_eq!(accounts.schema(), accounts_schema());
            let by_plan = |sql: &str| -> Vec<RecordBatch> {
                crate::runtime().unwrap().block_on(async {
                    let ctx = SessionContext::new();
                    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                    let df = ctx.read_parquet(paths, ParquetReadOptions::default()).await.unwrap();
                    ctx.register_table("t", df.into_view()).unwrap();
                    ctx.sql(sql).await.unwrap().collect().await.unwrap()
                })
            };
            prop_assert_eq!(rows(&[features]), rows(&by_plan(FEATURES)));
            prop_assert_eq!(rows(&[accounts]), rows(&by_plan(ACCOUNTS)));
        }
    }
}
