//! Per-account usage figures for report periods, as DataFusion queries over `usage_daily`.

use crate::sql::session;
use crate::{AnalyticsError, Engine, runtime};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
use datafusion::datasource::MemTable;
use datafusion::execution::options::ParquetReadOptions;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::Arc;
use tenure_core::time::{DAY, Period, PeriodUnit, Timestamp};
use tenure_kpi::usage::{AccountUsage, Usage, UsageMonth};

fn lit(t: Timestamp) -> String {
    format!("TIMESTAMP '{t}'")
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A column as strings, whatever string layout the engine chose (Parquet reads give views).
fn strings(batch: &RecordBatch, col: usize) -> Result<Vec<String>, AnalyticsError> {
    let a = cast(batch.column(col), &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len()).map(|i| a.value(i).to_string()).collect())
}

fn ints(batch: &RecordBatch, col: usize) -> Result<Vec<u64>, AnalyticsError> {
    let a = cast(batch.column(col), &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok((0..a.len()).map(|i| if a.is_null(i) { 0 } else { a.value(i).max(0) as u64 }).collect())
}

/// Rows `(account_id, feature, last, events)` covering exactly the days of `[a, b)`: whole
/// months from the monthly rollup, the days of partial months from the daily one.
fn span(a: Timestamp, b: Timestamp, only: &str) -> String {
    let daily = |x: Timestamp, y: Timestamp| {
        format!(
            "SELECT account_id, feature, day AS last, events FROM usage_daily \
             WHERE day >= {} AND day < {}{only}",
            lit(x),
            lit(y)
        )
    };
    let floor = |t: Timestamp| PeriodUnit::Month.floor(t);
    if a == Timestamp::MIN {
        // Everything before b: the months before b's, then b's own days.
        return format!(
            "SELECT account_id, feature, last_day AS last, events FROM usage_features \
             WHERE month < {m}{only} UNION ALL {d}",
            m = lit(floor(b)),
            d = daily(floor(b), b)
        );
    }
    // Whole months inside [a, b): from the first month start at or after a to the last at or
    // before b.
    let ma = if floor(a) == a { a } else { PeriodUnit::Month.advance(floor(a), 1) };
    let mb = floor(b);
    if ma >= mb {
        return daily(a, b);
    }
    format!(
        "SELECT account_id, feature, last_day AS last, events FROM usage_features \
         WHERE month >= {} AND month < {}{only} UNION ALL {} UNION ALL {}",
        lit(ma),
        lit(mb),
        daily(a, ma),
        daily(mb, b)
    )
}

/// The distinct accounts of some Parquet files of the columnar store (read here: they are
/// few and small, the files of events that arrived late).
pub(crate) fn accounts_in(files: &[String]) -> Result<Vec<String>, AnalyticsError> {
    let rt = runtime()?;
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        let df = ctx.read_parquet(files.to_vec(), ParquetReadOptions::default()).await?;
        ctx.register_table("late", df.into_view())?;
        let mut out = Vec::new();
        for b in ctx.sql("SELECT DISTINCT account_id FROM late").await?.collect().await? {
            out.extend(strings(&b, 0)?);
        }
        out.sort();
        Ok(out)
    })
}

/// Where a period's usage figures stop: its end, or just after `as_of` for a period still
/// running.
pub(crate) fn effective_end(p: Period, as_of: Timestamp) -> Timestamp {
    p.end.min(Timestamp(as_of.0.saturating_add(1)))
}

/// The usage of every account (or of `account` alone) for each period: windows of 30 and 7
/// days before the period end (and before `as_of`) and 30 days before its start, events in the
/// period and the one before, features ever used, emails and web visits.
pub fn usage_stats(
    data: &Path,
    engine: &Engine,
    periods: &[Period],
    advanced: &[String],
    as_of: Timestamp,
    account: Option<&str>,
) -> Result<Usage, AnalyticsError> {
    let _lock = crate::lock(data, false)?;
    let only = account.map_or(Only::All, Only::Account);
    compute(data, engine, periods, advanced, as_of, only)
}

/// Which accounts [`compute`] computes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Only<'a> {
    All,
    Account(&'a str),
    /// These (as a table the queries join with: the list may be long).
    Accounts(&'a [String]),
}

/// A feature name shared by every account that uses it.
fn interned(
    names: &mut FxHashMap<Box<str>, Arc<str>>,
    batch: &RecordBatch,
    col: usize,
) -> Result<Vec<Arc<str>>, AnalyticsError> {
    let a = cast(batch.column(col), &DataType::Utf8)?;
    let a = a.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| {
            let s = a.value(i);
            match names.get(s) {
                Some(n) => n.clone(),
                None => names.entry(s.into()).or_insert_with(|| Arc::from(s)).clone(),
            }
        })
        .collect())
}

/// The tables [`compute`]'s queries read.
const READ: [&str; 4] = ["usage_daily", "usage_features", "emails", "web_visits"];

/// The earliest instants [`compute`]'s queries read of `usage_daily` (the start of the month
/// of the earliest day: whole months before it come from `usage_features`) and of
/// `web_visits`; `None` for no bound (the periods reach before year 1). The emails'
/// opens are read whatever their age.
fn reads_since(periods: &[Period], as_of: Timestamp) -> Option<(Timestamp, Timestamp)> {
    let ago = |t: Timestamp, d: i64| Timestamp(t.0.saturating_sub(d));
    let daily = periods
        .iter()
        .map(|p| {
            let end = effective_end(*p, as_of);
            let prev = ago(p.start, p.end.0.saturating_sub(p.start.0));
            prev.min(ago(end, 30 * DAY)).min(ago(p.start.min(end), 30 * DAY))
        })
        .min()?;
    let visits = periods.iter().map(|p| p.start).min()?;
    Some((PeriodUnit::Month.checked_floor(daily)?, visits))
}

/// A session whose tables [`compute`] reads hold `account`'s rows alone, each read from its
/// files once (the account column decoded first, the others only where it matches), the
/// daily usage and the visits from `since` on ([`reads_since`]): the report of one account
/// (an account page's thirteen periods, several queries each) then reads no file again.
/// Embedded only: a cluster's plans name files, not this memory.
async fn one_account(
    data: &Path,
    engine: &Engine,
    account: &str,
    since: Option<(Timestamp, Timestamp)>,
) -> Result<(SessionContext, Option<crate::engine::Scratch>), AnalyticsError> {
    let mut config = SessionConfig::new();
    config.options_mut().execution.parquet.pushdown_filters = true;
    let ctx = engine.session(config, Arc::new(RuntimeEnv::default()))?;
    let (ctx, scratch) = crate::sql::session_with(data, engine, Vec::new(), ctx).await?;
    for t in READ {
        let from = match (t, since) {
            ("usage_daily", Some((day, _))) => format!(" AND day >= {}", lit(day)),
            ("web_visits", Some((_, ts))) => format!(" AND ts >= {}", lit(ts)),
            _ => String::new(),
        };
        let q = format!("SELECT * FROM {t} WHERE account_id = {}{from}", quote(account));
        let df = ctx.sql(&q).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let rows = df.collect().await?;
        ctx.deregister_table(t)?;
        ctx.register_table(t, Arc::new(MemTable::try_new(schema, vec![rows])?))?;
    }
    Ok((ctx, scratch))
}

/// [`usage_stats`] under a lock the caller holds.
pub(crate) fn compute(
    data: &Path,
    engine: &Engine,
    periods: &[Period],
    advanced: &[String],
    as_of: Timestamp,
    accounts: Only<'_>,
) -> Result<Usage, AnalyticsError> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut extra = Vec::new();
        let only = match accounts {
            Only::All => String::new(),
            Only::Account(a) => format!(" AND account_id = {}", quote(a)),
            Only::Accounts(ids) => {
                let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                    datafusion::arrow::datatypes::Field::new("account_id", DataType::Utf8, false),
                ]));
                let ids = datafusion::arrow::array::StringArray::from_iter_values(ids);
                let batch = RecordBatch::try_new(schema, vec![Arc::new(ids)])?;
                extra.push(crate::SqlTable { name: "only_accounts".into(), batch });
                " AND account_id IN (SELECT account_id FROM only_accounts)".to_string()
            }
        };
        let (ctx, _scratch) = match (accounts, engine) {
            (Only::Account(a), Engine::Embedded) => {
                one_account(data, engine, a, reads_since(periods, as_of)).await?
            }
            _ => session(data, engine, extra).await?,
        };
        let adv = if advanced.is_empty() {
            "NULL".to_string()
        } else {
            advanced.iter().map(|f| quote(f)).collect::<Vec<_>>().join(", ")
        };
        let mut out = Vec::with_capacity(periods.len());
        let mut names = FxHashMap::default();
        for p in periods {
            let end = effective_end(*p, as_of);
            let (w30, w7) = (Timestamp(end.0 - 30 * DAY), Timestamp(end.0 - 7 * DAY));
            let len = p.end.0 - p.start.0;
            let prev = Timestamp(p.start.0 - len);
            let mut map: FxHashMap<String, AccountUsage> = FxHashMap::default();
            // Users are counted per account: a user id belongs to its account. Days per user
            // first, then users, then accounts: plain groupings, no distinct counts (which
            // the engine runs row by row).
            let windows = format!(
                "SELECT account_id, count(*), \
                 sum(CASE WHEN last >= {w7} THEN 1 ELSE 0 END), sum(days), sum(adv) FROM \
                 (SELECT account_id, user_id, max(day) AS last, count(*) AS days, max(adv) AS adv \
                  FROM (SELECT account_id, user_id, day, \
                        max(CASE WHEN feature IN ({adv}) THEN 1 ELSE 0 END) AS adv \
                        FROM usage_daily WHERE day >= {w30} AND day < {end}{only} \
                        GROUP BY account_id, user_id, day) \
                  GROUP BY account_id, user_id) \
                 GROUP BY account_id",
                w7 = lit(w7),
                w30 = lit(w30),
                end = lit(end),
            );
            for b in ctx.sql(&windows).await?.collect().await? {
                let ids = strings(&b, 0)?;
                let (mau, wau, days, advu) = (ints(&b, 1)?, ints(&b, 2)?, ints(&b, 3)?, ints(&b, 4)?);
                for (i, id) in ids.into_iter().enumerate() {
                    let u = map.entry(id).or_default();
                    (u.mau, u.wau, u.user_days, u.advanced_users) = (mau[i], wau[i], days[i], advu[i]);
                }
            }
            let features = format!(
                "SELECT account_id, feature FROM usage_daily \
                 WHERE day >= {w30} AND day < {end}{only} GROUP BY account_id, feature",
                w30 = lit(w30),
                end = lit(end),
            );
            for b in ctx.sql(&features).await?.collect().await? {
                let (ids, feats) = (strings(&b, 0)?, interned(&mut names, &b, 1)?);
                for (id, feat) in ids.into_iter().zip(feats) {
                    map.entry(id).or_default().features.push(feat);
                }
            }
            let start = p.start.min(end);
            let events = format!(
                "SELECT account_id, CAST(sum(now) AS BIGINT), CAST(sum(before) AS BIGINT) FROM \
                 (SELECT account_id, events AS now, 0 AS before FROM ({now}) \
                  UNION ALL SELECT account_id, 0 AS now, events AS before FROM ({before})) \
                 GROUP BY account_id",
                now = span(start, end, &only),
                before = span(prev, start, &only),
            );
            for b in ctx.sql(&events).await?.collect().await? {
                let ids = strings(&b, 0)?;
                let (now, before) = (ints(&b, 1)?, ints(&b, 2)?);
                for (i, id) in ids.into_iter().enumerate() {
                    let u = map.entry(id).or_default();
                    u.events = now[i];
                    u.events_prev = before[i];
                }
            }
            let ever = format!(
                "SELECT account_id, feature, max(last) FROM ({}) GROUP BY account_id, feature",
                span(Timestamp::MIN, end, &only),
            );
            for b in ctx.sql(&ever).await?.collect().await? {
                let (ids, feats) = (strings(&b, 0)?, interned(&mut names, &b, 1)?);
                let last = cast(b.column(2), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                let last = last.as_primitive::<TimestampMicrosecondType>();
                for (i, (id, feat)) in ids.into_iter().zip(feats).enumerate() {
                    map.entry(id).or_default().features_ever.push((feat, Timestamp(last.value(i))));
                }
            }
            // The trend: users of the 30 days before the start (a period that has not started by
            // `as_of` has none).
            let before = format!(
                "SELECT account_id, count(*) FROM (SELECT account_id, user_id FROM usage_daily \
                 WHERE day >= {from} AND day < {start}{only} GROUP BY account_id, user_id) \
                 GROUP BY account_id",
                from = lit(Timestamp(start.0 - 30 * DAY)),
                start = lit(start),
            );
            for b in ctx.sql(&before).await?.collect().await? {
                let (ids, n) = (strings(&b, 0)?, ints(&b, 1)?);
                for (i, id) in ids.into_iter().enumerate() {
                    map.entry(id).or_default().mau_prev = n[i];
                }
            }
            // An email is a contact and a campaign: sent in the period, opened (a click
            // implies an open) by its end.
            let emails = format!(
                "WITH s AS (SELECT account_id, coalesce(contact_id, '') AS c, coalesce(campaign, '') AS k \
                   FROM emails WHERE action = 'sent' AND ts >= {start} AND ts < {end}{only} GROUP BY 1, 2, 3), \
                 r AS (SELECT account_id, coalesce(contact_id, '') AS c, coalesce(campaign, '') AS k, \
                   max(CASE WHEN action = 'clicked' THEN 1 ELSE 0 END) AS clicked \
                   FROM emails WHERE action <> 'sent' AND ts < {end}{only} GROUP BY 1, 2, 3) \
                 SELECT s.account_id, count(*) AS sent, count(r.k) AS opened, \
                   CAST(coalesce(sum(r.clicked), 0) AS BIGINT) AS clicked \
                 FROM s LEFT JOIN r ON s.account_id = r.account_id AND s.c = r.c AND s.k = r.k \
                 GROUP BY s.account_id",
                start = lit(p.start),
                end = lit(end),
            );
            for b in ctx.sql(&emails).await?.collect().await? {
                let ids = strings(&b, 0)?;
                let (sent, opened, clicked) = (ints(&b, 1)?, ints(&b, 2)?, ints(&b, 3)?);
                for (i, id) in ids.into_iter().enumerate() {
                    let u = map.entry(id).or_default();
                    (u.emails_sent, u.emails_opened, u.emails_clicked) =
                        (sent[i], opened[i], clicked[i]);
                }
            }
            let visits = format!(
                "SELECT account_id, count(CASE WHEN section = 'docs' THEN 1 END), \
                 count(CASE WHEN section = 'website' THEN 1 END) FROM web_visits \
                 WHERE ts >= {start} AND ts < {end}{only} GROUP BY account_id",
                start = lit(p.start),
                end = lit(end),
            );
            for b in ctx.sql(&visits).await?.collect().await? {
                let (ids, docs, web) = (strings(&b, 0)?, ints(&b, 1)?, ints(&b, 2)?);
                for (i, id) in ids.into_iter().enumerate() {
                    let u = map.entry(id).or_default();
                    (u.docs_visits, u.website_visits) = (docs[i], web[i]);
                }
            }
            // Query results come in no particular order.
            for u in map.values_mut() {
                u.features.sort();
                u.features_ever.sort();
            }
            out.push(map.into());
        }
        Ok(out)
    })
    .map_err(|e| engine.explain(e))
}

/// The rows `query` selects from table `rolled`, the Parquet `files` of a monthly rollup
/// (none when there are no files).
async fn rolled_rows(
    ctx: &datafusion::prelude::SessionContext,
    files: Vec<String>,
    query: &str,
) -> Result<Vec<RecordBatch>, AnalyticsError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let df = ctx.read_parquet(files, ParquetReadOptions::default()).await?;
    ctx.deregister_table("rolled")?;
    ctx.register_table("rolled", df.into_view())?;
    Ok(ctx.sql(query).await?.collect().await?)
}

/// Every account's usage per calendar month before `as_of` (months in order): events,
/// distinct users and days, the features used as bits of their index in `features` (at most
/// 64; other features are counted in events only) and the last active day.
pub fn usage_monthly(
    data: &Path,
    engine: &Engine,
    features: &[String],
    as_of: Timestamp,
) -> Result<FxHashMap<String, Vec<UsageMonth>>, AnalyticsError> {
    usage_monthly_since(data, engine, features, Timestamp::MIN, as_of)
}

/// [`usage_monthly`] of the months from the one holding `since` on: what a state that holds
/// the earlier months reads when only later ones received events.
pub fn usage_monthly_since(
    data: &Path,
    engine: &Engine,
    features: &[String],
    since: Timestamp,
    as_of: Timestamp,
) -> Result<FxHashMap<String, Vec<UsageMonth>>, AnalyticsError> {
    let _lock = crate::lock(data, false)?;
    // Instants before year 1 read every month.
    let since = PeriodUnit::Month.checked_floor(since).unwrap_or(Timestamp::MIN);
    let rt = runtime()?;
    rt.block_on(async {
        let (ctx, _scratch) = session(data, engine, Vec::new()).await?;
        let bit: FxHashMap<&str, u64> =
            features.iter().take(64).enumerate().map(|(i, f)| (f.as_str(), 1u64 << i)).collect();
        let end = lit(as_of);
        let mut map: FxHashMap<String, std::collections::BTreeMap<i64, UsageMonth>> =
            FxHashMap::default();
        let micros = |b: &RecordBatch, c: usize| -> Result<Vec<i64>, AnalyticsError> {
            let a = cast(b.column(c), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let a = a.as_primitive::<TimestampMicrosecondType>();
            Ok((0..a.len()).map(|i| a.value(i)).collect())
        };
        // Months wholly before `as_of` whose rollups match their daily rows are read from
        // the rollups (a row per account, month and feature; per account and month); the
        // rest (the month of `as_of`, a month whose rollup is missing or stale) from
        // `usage_daily`.
        let cut = PeriodUnit::Month.floor(as_of);
        let mut rolled = Vec::new();
        let (mut feature_files, mut account_files) = (Vec::new(), Vec::new());
        for (month, (f, a)) in crate::store::current_rollups(data) {
            let Ok(start) = Timestamp::parse(&format!("{month}-01")) else { continue };
            if since <= start && start < cut {
                // As integers (microseconds): a timestamp literal goes through nanoseconds,
                // which end in 1677 and 2262.
                rolled.push(start.0.to_string());
                feature_files.push(f.display().to_string());
                account_files.push(a.display().to_string());
            }
        }
        let mut not_rolled = if rolled.is_empty() {
            String::new()
        } else {
            format!(" AND CAST(month AS BIGINT) NOT IN ({})", rolled.join(", "))
        };
        if since > Timestamp::MIN {
            not_rolled.push_str(&format!(" AND CAST(month AS BIGINT) >= {}", since.0));
        }
        let mut add_features = |b: &RecordBatch| -> Result<(), AnalyticsError> {
            let (ids, feats) = (strings(b, 0)?, strings(b, 2)?);
            let (months, events, last) = (micros(b, 1)?, ints(b, 3)?, micros(b, 4)?);
            for (i, id) in ids.into_iter().enumerate() {
                let u = map.entry(id).or_default().entry(months[i]).or_insert_with(|| UsageMonth {
                    month: Timestamp(months[i]),
                    ..UsageMonth::default()
                });
                u.events += events[i];
                u.features |= bit.get(feats[i].as_str()).copied().unwrap_or(0);
                u.last_day = u.last_day.max(Timestamp(last[i]));
            }
            Ok(())
        };
        let q = "SELECT account_id, month, feature, events, last_day FROM rolled";
        for b in rolled_rows(&ctx, feature_files, q).await? {
            add_features(&b)?;
        }
        // Events, features and the last day per feature and month.
        let q = format!(
            "SELECT account_id, month AS m, feature, CAST(sum(events) AS BIGINT), \
             max(day) FROM usage_daily WHERE day < {end}{not_rolled} GROUP BY 1, 2, 3"
        );
        for b in ctx.sql(&q).await?.collect().await? {
            add_features(&b)?;
        }
        type Field = fn(&mut UsageMonth) -> &mut u64;
        let users: Field = |u| &mut u.users;
        let days: Field = |u| &mut u.days;
        let mut set = |b: &RecordBatch, field: Field, col: usize| -> Result<(), AnalyticsError> {
            let (ids, months, n) = (strings(b, 0)?, micros(b, 1)?, ints(b, col)?);
            for (i, id) in ids.into_iter().enumerate() {
                if let Some(u) = map.get_mut(&id).and_then(|m| m.get_mut(&months[i])) {
                    *field(u) = n[i];
                }
            }
            Ok(())
        };
        let q = "SELECT account_id, month, users, days FROM rolled";
        for b in rolled_rows(&ctx, account_files, q).await? {
            set(&b, users, 2)?;
            set(&b, days, 3)?;
        }
        // Distinct users and days per month: plain groupings first (no distinct counts).
        for (field, col) in [(users, "user_id"), (days, "day")] {
            let q = format!(
                "SELECT account_id, m, count(*) FROM (SELECT account_id, \
                 month AS m, {col} FROM usage_daily WHERE day < {end}{not_rolled} \
                 GROUP BY 1, 2, 3) GROUP BY 1, 2"
            );
            for b in ctx.sql(&q).await?.collect().await? {
                set(&b, field, 2)?;
            }
        }
        Ok(map.into_iter().map(|(k, v)| (k, v.into_values().collect())).collect())
    })
    .map_err(|e| engine.explain(e))
}

/// One account's usage on one day by one user: (account, day number since the epoch,
/// user, feature, events), for days `since <= day < as_of` (the service's live window).
pub type DayRow = (String, i64, String, String, u64);

/// The day-level usage rows of `[since, as_of)`: what a live service keeps in memory to
/// update the current month's figures exactly as new events arrive.
pub fn usage_days(
    data: &Path,
    engine: &Engine,
    since: Timestamp,
    as_of: Timestamp,
) -> Result<Vec<DayRow>, AnalyticsError> {
    let _lock = crate::lock(data, false)?;
    let rt = runtime()?;
    rt.block_on(async {
        let (ctx, _scratch) = session(data, engine, Vec::new()).await?;
        let q = format!(
            "SELECT account_id, day, user_id, feature, CAST(sum(events) AS BIGINT) FROM usage_daily \
             WHERE day >= {} AND day < {} GROUP BY 1, 2, 3, 4",
            lit(since),
            lit(as_of)
        );
        let mut out = Vec::new();
        for b in ctx.sql(&q).await?.collect().await? {
            let a = cast(b.column(1), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let days = a.as_primitive::<TimestampMicrosecondType>();
            let (ids, users, feats, n) = (strings(&b, 0)?, strings(&b, 2)?, strings(&b, 3)?, ints(&b, 4)?);
            for (i, ((id, u), f)) in ids.into_iter().zip(users).zip(feats).enumerate() {
                out.push((id, days.value(i).div_euclid(tenure_core::time::DAY), u, f, n[i]));
            }
        }
        Ok(out)
    })
    .map_err(|e| engine.explain(e))
}
