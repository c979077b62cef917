//! The columnar store: built from the log incrementally, the same whatever the batches,
//! queried by read-only SQL, and the usage figures of the KPIs.

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::path::Path;
use tenure_analytics::{
    Engine, QueryError, refresh, refresh_batched, run_sql, usage_monthly, usage_stats,
};

/// Tests run the embedded engine; the cluster is checked against it end to end (tenure-cli).
const HERE: &Engine = &Engine::Embedded;
use tenure_core::codec;
use tenure_core::event::{Event, EventBody};
use tenure_core::time::{Period, Timestamp};
use tenure_kpi::usage::UsageMonth;
use tenure_log::{Log, LogOptions};

fn usage(ts: &str, account: &str, user: &str, feature: &str) -> Event {
    Event {
        ts: Timestamp::parse(ts).unwrap(),
        account: Some(account.into()),
        message_id: None,
        body: EventBody::Usage {
            user_id: user.into(),
            event: "use".into(),
            feature: Some(feature.into()),
            quantity: 1.0,
        },
    }
}

/// Appends events to the usage lane of `data/log`, committing each call.
fn append(data: &Path, events: &[Event]) {
    let (mut log, _) = Log::open(&data.join("log"), LogOptions::default()).unwrap();
    for (i, e) in events.iter().enumerate() {
        let mut buf = Vec::new();
        codec::encode(e, &mut buf);
        let key = u128::from_le_bytes(xxh(&buf, i));
        log.append("usage", key, &buf).unwrap();
    }
    log.commit().unwrap();
}

/// A key per content (tests never repeat an event).
fn xxh(buf: &[u8], _: usize) -> [u8; 16] {
    let mut k = [0u8; 16];
    for (i, b) in buf.iter().enumerate() {
        k[i % 16] = k[i % 16].wrapping_mul(31).wrapping_add(*b);
    }
    k
}

/// The company: a has users u1 (daily in March) and u2 (once, Feb 20 and Mar 30),
/// b has u3 (Jan 10 only).
fn events() -> Vec<Event> {
    let mut v = Vec::new();
    for d in 1..=31 {
        v.push(usage(
            &format!("2024-03-{d:02}T10:00:00Z"),
            "a",
            "u1",
            if d % 2 == 0 { "reports" } else { "dashboards" },
        ));
    }
    v.push(usage("2024-02-20T09:00:00Z", "a", "u2", "exports"));
    v.push(usage("2024-03-30T09:00:00Z", "a", "u2", "exports"));
    v.push(usage("2024-03-30T11:00:00Z", "a", "u2", "exports"));
    v.push(usage("2024-01-10T09:00:00Z", "b", "u3", "dashboards"));
    v
}

fn sql(data: &Path, q: &str) -> String {
    let r = run_sql(data, HERE, Vec::new(), q, Default::default()).unwrap();
    tenure_analytics::arrow::util::pretty::pretty_format_batches(&r.batches).unwrap().to_string()
}

#[test]
fn usage_figures_are_the_same_for_one_batch_or_many_and_after_a_restart() {
    let one = tempfile::tempdir().unwrap();
    append(one.path(), &events());
    let s = refresh(one.path(), HERE).unwrap();
    assert_eq!(s.events.get("usage"), Some(&35));
    assert_eq!(refresh(one.path(), HERE).unwrap().files, 0, "nothing new, nothing written");

    let many = tempfile::tempdir().unwrap();
    for chunk in events().chunks(4) {
        append(many.path(), chunk);
        refresh(many.path(), HERE).unwrap();
    }
    // Nine refreshes: March's first eight files were compacted into one, the ninth added one.
    let files = |table: &str, month: &str| {
        std::fs::read_dir(many.path().join("columnar").join(table))
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name().to_string_lossy().to_string();
                n.starts_with(month) && n.ends_with(".parquet")
            })
            .count()
    };
    assert_eq!((files("usage", "2024-03"), files("usage_daily", "2024-03")), (2, 2));
    assert_eq!(files("usage_features", "2024-03"), 1);
    // A compaction that stopped after writing its output but before removing its inputs: an
    // input left inside the output's range is removed, not counted twice.
    let dir = many.path().join("columnar/usage");
    let merged = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with("2024-03.0-"))
        .unwrap();
    // The compaction copied its eight files' row groups (one each) and decoded none: they
    // are the merged file's eight row groups. (Its rows are compared with one refresh's below.)
    let f = std::fs::File::open(dir.join(&merged)).unwrap();
    let meta = datafusion::parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&f)
        .unwrap();
    assert_eq!(meta.num_row_groups(), 8);
    std::fs::copy(dir.join(&merged), dir.join("2024-03.0-4.parquet")).unwrap();
    refresh(many.path(), HERE).unwrap();
    assert!(!dir.join("2024-03.0-4.parquet").exists());
    let q = "SELECT account_id, user_id, feature, CAST(sum(events) AS BIGINT) AS n FROM usage_daily GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    assert_eq!(sql(one.path(), q), sql(many.path(), q));
    let raw = "SELECT account_id, ts, user_id, event, feature, quantity FROM usage ORDER BY 1, 2, 3, 4, 5, 6";
    assert_eq!(sql(one.path(), raw), sql(many.path(), raw));
    assert!(sql(many.path(), raw).lines().count() >= 35, "every event is a row");
    // One refresh of the whole log in batches of three records (decoded while the batch
    // before is written): the same files as one refresh per three records would write.
    let batched = tempfile::tempdir().unwrap();
    append(batched.path(), &events());
    let s = refresh_batched(batched.path(), HERE, 3).unwrap();
    assert_eq!(s.events.get("usage"), Some(&35));
    let mut names: Vec<String> = std::fs::read_dir(batched.path().join("columnar/usage"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet") && !n.starts_with("2024-03"))
        .collect();
    names.sort();
    // January's and February's events, one file per batch they fall in.
    let expected_names = {
        let mut v: Vec<String> = events()
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.ts.to_string().starts_with("2024-03"))
            .map(|(i, e)| {
                let b = i as u64 / 3;
                let to = ((b + 1) * 3).min(35);
                format!("{}.{}-{to}.parquet", &e.ts.to_string()[..7], b * 3)
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(names, expected_names);
    assert_eq!(sql(batched.path(), q), sql(one.path(), q));
    assert_eq!(
        sql(batched.path(), "SELECT count(*) AS n FROM usage"),
        sql(one.path(), "SELECT count(*) AS n FROM usage")
    );
    assert_eq!(
        std::fs::read_to_string(batched.path().join("columnar/usage/WATERMARK")).unwrap().trim(),
        "35"
    );
    assert_eq!(
        sql(one.path(), "SELECT count(*) AS n FROM usage"),
        sql(many.path(), "SELECT count(*) AS n FROM usage")
    );

    let periods = [Period::parse("2024-03").unwrap(), Period::parse("2024-01").unwrap()];
    let as_of = Timestamp::parse("2030-01-01").unwrap();
    let u1 =
        usage_stats(one.path(), HERE, &periods, &["reports".to_string()], as_of, None).unwrap();
    let u2 =
        usage_stats(many.path(), HERE, &periods, &["reports".to_string()], as_of, None).unwrap();
    assert_eq!(u1, u2);
    // March: 30 days before Apr 1 = Mar 2..31. a: u1 on 30 days, u2 on Mar 30 -> MAU 2,
    // user-days 31; in the 7 days (Mar 25..31) both; u1 used reports (advanced).
    let a = &u1[0]["a"];
    assert_eq!((a.mau, a.wau, a.user_days, a.advanced_users), (2, 2, 31, 1));
    assert_eq!(
        a.features.iter().map(|f| &**f).collect::<Vec<_>>(),
        ["dashboards", "exports", "reports"]
    );
    // Events in March 33, in February 1.
    assert_eq!((a.events, a.events_prev), (33, 1));
    assert!(u1[0].get("b").is_none_or(|b| b.mau == 0));
    // The trend: Jan 31..Feb 29 (the 30 days before March) had u2 only.
    assert_eq!(a.mau_prev, 1);
    // One account alone gives that account's figures.
    let only = usage_stats(one.path(), HERE, &periods, &[], as_of, Some("a")).unwrap();
    assert_eq!((only[0].len(), only[0]["a"].mau), (1, 2));
    // January: b's u3 on Jan 10.
    assert_eq!(u1[1]["b"].mau, 1);

    // A process that stopped after writing files but before moving the watermark: the
    // files are written again, not twice.
    let wm = one.path().join("columnar/usage/WATERMARK");
    std::fs::write(&wm, "0").unwrap();
    refresh(one.path(), HERE).unwrap();
    assert_eq!(
        sql(one.path(), "SELECT count(*) AS n FROM usage"),
        sql(many.path(), "SELECT count(*) AS n FROM usage")
    );
}

/// A month compacted from many small files (a refresh every few events) is written again
/// in large row groups, not kept as hundreds of small ones; its rows are all there.
#[test]
fn many_small_files_are_compacted_into_large_row_groups() {
    let d = tempfile::tempdir().unwrap();
    let evs: Vec<Event> = (0..300)
        .map(|i| {
            let ts = format!("2024-03-01T{:02}:{:02}:{:02}Z", i / 3600, (i / 60) % 60, i % 60);
            usage(&ts, "a", &format!("u{i}"), "reports")
        })
        .collect();
    append(d.path(), &evs);
    refresh_batched(d.path(), HERE, 1).unwrap();
    let dir = d.path().join("columnar/usage");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let f = std::fs::File::open(&files[0]).unwrap();
    let meta = datafusion::parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&f)
        .unwrap();
    assert_eq!((meta.num_row_groups(), meta.file_metadata().num_rows()), (1, 300));
    assert!(sql(d.path(), "SELECT count(*) AS n FROM usage").contains("| 300 |"));
}

/// Issue 13, defect 1: a usage event before 1677-09-22 (or after 2262) in the log made every
/// refresh fail (`date_trunc` through nanosecond timestamps), and with it `tenure serve`'s
/// start and every usage report. Validation now refuses such events, but a log written by an
/// earlier version may hold them: the refresh floors days and months in our own code.
#[test]
fn events_outside_nanosecond_timestamps_do_not_break_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = events();
    v.push(usage("1600-01-01T10:00:00Z", "old", "u9", "reports"));
    v.push(usage("2300-06-15T10:00:00Z", "new", "u9", "reports"));
    append(dir.path(), &v);
    let s = refresh(dir.path(), HERE).expect("the refresh succeeds");
    assert_eq!(s.events.get("usage"), Some(&37));
    let q = "SELECT account_id, CAST(month AS VARCHAR) AS month, CAST(day AS VARCHAR) AS day, \
             CAST(sum(events) AS BIGINT) AS n FROM usage_daily WHERE account_id IN ('old', 'new') \
             GROUP BY 1, 2, 3 ORDER BY 1";
    let out = sql(dir.path(), q);
    assert!(
        out.contains("| new        | 2300-06-01T00:00:00Z | 2300-06-15T00:00:00Z | 1 |"),
        "{out}"
    );
    assert!(
        out.contains("| old        | 1600-01-01T00:00:00Z | 1600-01-01T00:00:00Z | 1 |"),
        "{out}"
    );
    // The monthly figures the health model reads, and the KPI figures, still come out.
    let monthly = tenure_analytics::usage_monthly(
        dir.path(),
        HERE,
        &[],
        Timestamp::parse("2199-01-01").unwrap(),
    )
    .unwrap();
    assert_eq!(monthly["old"][0].month, Timestamp::parse("1600-01-01").unwrap());
    assert_eq!(monthly["a"].len(), 2, "February and March");
    let periods = [Period::parse("2024-03").unwrap()];
    let as_of = Timestamp::parse("2030-01-01").unwrap();
    let u = usage_stats(dir.path(), HERE, &periods, &[], as_of, None).unwrap();
    assert_eq!(u[0]["a"].mau, 2);
}

/// A store of an earlier layout (no `FORMAT` file, or another one) is rebuilt from the log,
/// never read: it is derived.
#[test]
fn a_store_of_another_layout_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), &events());
    refresh(dir.path(), HERE).unwrap();
    let q = "SELECT account_id, CAST(sum(events) AS BIGINT) AS n FROM usage_daily GROUP BY 1 ORDER BY 1";
    let before = sql(dir.path(), q);
    std::fs::write(dir.path().join("columnar/FORMAT"), "1").unwrap();
    let s = refresh(dir.path(), HERE).unwrap();
    assert_eq!(s.events.get("usage"), Some(&35), "everything materialised again");
    assert_eq!(sql(dir.path(), q), before);
    assert_eq!(std::fs::read_to_string(dir.path().join("columnar/FORMAT")).unwrap(), "2");
    assert_eq!(refresh(dir.path(), HERE).unwrap().files, 0);
}

/// The files of `table` for `month`.
fn month_files(data: &Path, table: &str, month: &str) -> Vec<String> {
    let dir = data.join("columnar").join(table);
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(month) && n.ends_with(".parquet"))
        .collect();
    v.sort();
    v
}

/// A refresh stopped between a month's two monthly rollups (here the second cannot be
/// written) leaves the month counted once in the first, and the next refresh completes it.
#[test]
fn a_refresh_stopped_between_a_months_rollups_counts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), &events());
    refresh(dir.path(), HERE).unwrap();
    // One more event in March: the month's rollups are made again from records 0 to 36.
    append(dir.path(), &[usage("2024-03-15T12:00:00Z", "a", "u9", "reports")]);
    // `usage_accounts`' new file cannot be written: a directory holds its temporary name.
    let blocked = dir.path().join("columnar/usage_accounts/2024-03.0-36.parquet.tmp");
    std::fs::create_dir_all(&blocked).unwrap();
    assert!(refresh(dir.path(), HERE).is_err());
    assert_eq!(month_files(dir.path(), "usage_features", "2024-03"), ["2024-03.0-36.parquet"]);
    // a used "reports" on the 15 even days of March, and once more.
    let q = "SELECT account_id, feature, CAST(sum(events) AS BIGINT) AS n FROM usage_features \
             WHERE account_id = 'a' AND feature = 'reports' GROUP BY 1, 2";
    assert!(sql(dir.path(), q).contains("| a          | reports | 16 |"), "{}", sql(dir.path(), q));
    std::fs::remove_dir(&blocked).unwrap();
    refresh(dir.path(), HERE).unwrap();
    assert_eq!(month_files(dir.path(), "usage_accounts", "2024-03"), ["2024-03.0-36.parquet"]);
    assert_eq!(month_files(dir.path(), "usage_features", "2024-03"), ["2024-03.0-36.parquet"]);
}

#[test]
fn sql_is_read_only_and_errors_are_clear() {
    let t = tempfile::tempdir().unwrap();
    append(t.path(), &events());
    refresh(t.path(), HERE).unwrap();
    for bad in [
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "COPY usage TO '/tmp/out.csv'",
        "INSERT INTO usage VALUES ('a')",
        "DROP TABLE usage",
        "SET datafusion.execution.batch_size = 1",
        "SELEC 1",
        "SELECT nope FROM usage",
        "SELECT * FROM no_such_table",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'columnar/usage/WATERMARK'",
    ] {
        match run_sql(t.path(), HERE, Vec::new(), bad, Default::default()) {
            Err(QueryError::Invalid(m)) => assert!(!m.is_empty(), "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert!(
        sql(t.path(), "SELECT count(DISTINCT user_id) AS users FROM usage").contains("| 3     |")
    );
    // Tables that hold nothing yet still exist, empty.
    assert!(sql(t.path(), "SELECT count(*) AS n FROM web_visits").contains("| 0 |"));
}

fn email(ts: &str, account: &str, contact: &str, campaign: &str, action: &str) -> Event {
    let e = format!(
        r#"{{"type":"email","timestamp":"{ts}","account_id":"{account}","contact_id":"{contact}","campaign":"{campaign}","action":"{action}"}}"#
    );
    parse(&e)
}

fn visit(ts: &str, account: &str, section: &str) -> Event {
    parse(&format!(
        r#"{{"type":"web_visit","timestamp":"{ts}","account_id":"{account}","section":"{section}","page":"/x"}}"#
    ))
}

fn parse(line: &str) -> Event {
    let cfg = tenure_ingest::IngestConfig::defaults(None);
    let (mut ok, bad) = tenure_ingest::parse_jsonl_block(line, 1, None, &cfg);
    assert!(bad.is_empty(), "{line}: {bad:?}");
    ok.remove(0).1
}

/// Appends events to their own lanes.
fn append_lanes(data: &Path, events: &[Event]) {
    let (mut log, _) = Log::open(&data.join("log"), LogOptions::default()).unwrap();
    for (i, e) in events.iter().enumerate() {
        let mut buf = Vec::new();
        codec::encode(e, &mut buf);
        log.append(e.body.kind().as_str(), key_of(&buf, i), &buf).unwrap();
    }
    log.commit().unwrap();
}

#[test]
fn email_rates_and_visits_worked_by_hand() {
    let t = tempfile::tempdir().unwrap();
    append_lanes(
        t.path(),
        &[
            // March sends to a: c1 and c2 of "spring", c1 of "news"; c3's "spring" in February.
            email("2024-03-01T10:00:00Z", "a", "c1", "spring", "sent"),
            email("2024-03-01T10:00:00Z", "a", "c2", "spring", "sent"),
            email("2024-03-10T10:00:00Z", "a", "c1", "news", "sent"),
            email("2024-02-10T10:00:00Z", "a", "c3", "spring", "sent"),
            // c1 opens spring twice and clicks it; c2 only clicks (an open too); c3 opens.
            email("2024-03-02T10:00:00Z", "a", "c1", "spring", "opened"),
            email("2024-03-03T10:00:00Z", "a", "c1", "spring", "opened"),
            email("2024-03-03T10:01:00Z", "a", "c1", "spring", "clicked"),
            email("2024-03-05T10:00:00Z", "a", "c2", "spring", "clicked"),
            email("2024-03-05T10:00:00Z", "a", "c3", "spring", "opened"),
            // news opened in April: after the period.
            email("2024-04-02T10:00:00Z", "a", "c1", "news", "opened"),
            visit("2024-03-04T10:00:00Z", "a", "docs"),
            visit("2024-03-05T10:00:00Z", "a", "docs"),
            visit("2024-03-05T11:00:00Z", "a", "website"),
            visit("2024-02-05T11:00:00Z", "a", "docs"),
            visit("2024-03-06T11:00:00Z", "b", "other"),
        ],
    );
    refresh(t.path(), HERE).unwrap();
    let as_of = Timestamp::parse("2030-01-01").unwrap();
    let u = usage_stats(t.path(), HERE, &[Period::parse("2024-03").unwrap()], &[], as_of, None)
        .unwrap();
    let a = &u[0]["a"];
    // Sent in March: 3 emails; opened by the end of March: c1 spring, c2 spring; clicked both.
    assert_eq!((a.emails_sent, a.emails_opened, a.emails_clicked), (3, 2, 2));
    assert_eq!((a.docs_visits, a.website_visits), (2, 1));
    assert_eq!((u[0]["b"].docs_visits, u[0]["b"].website_visits), (0, 0));
}

/// Any company's usage, emails and visits, in any order of arrival.
fn arb_events() -> impl proptest::strategy::Strategy<Value = Vec<Event>> {
    use proptest::prelude::*;
    let one = (0u8..3, 0u8..4, 0u8..3, 0u32..120, 0u8..3).prop_map(|(a, u, f, day, kind)| {
        let account = ["a", "b", "c"][a as usize];
        let ts = Timestamp::parse("2024-01-01").unwrap().0
            + day as i64 * 86_400_000_000
            + u as i64 * 3_600_000_000;
        let ts = Timestamp(ts).to_string();
        match kind {
            0 => usage(&ts, account, &format!("{account}{u}"), ["x", "y", "z"][f as usize]),
            1 => email(
                &ts,
                account,
                &format!("c{u}"),
                ["p", "q"][f as usize % 2],
                ["sent", "opened", "clicked"][f as usize],
            ),
            _ => visit(&ts, account, ["docs", "website", "other"][f as usize]),
        }
    });
    proptest::collection::vec(one, 1..60)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// The figures do not depend on how the events were cut into imports and refreshes, nor
    /// on a restart (every refresh and query here is a fresh open of the directory).
    #[test]
    fn usage_figures_do_not_depend_on_the_batches(
        events in arb_events(),
        cuts in proptest::collection::vec(1usize..20, 1..6),
    ) {
        let periods = [
            Period::parse("2024-02").unwrap(),
            Period::parse("2024-Q1").unwrap(),
            Period::parse("2024-04-10").unwrap(),
        ];
        let as_of = Timestamp::parse("2030-01-01").unwrap();
        let one = tempfile::tempdir().unwrap();
        append_lanes(one.path(), &events);
        refresh(one.path(), HERE).unwrap();
        let many = tempfile::tempdir().unwrap();
        let mut rest: &[Event] = &events;
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            append_lanes_from(many.path(), &rest[..n], events.len() - rest.len());
            refresh(many.path(), HERE).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        let adv = ["y".to_string()];
        let u1 = usage_stats(one.path(), HERE, &periods, &adv, as_of, None).unwrap();
        let u2 = usage_stats(many.path(), HERE, &periods, &adv, as_of, None).unwrap();
        proptest::prop_assert_eq!(&u1, &u2);
        // One account's figures (an account page: its rows read once into memory, the
        // daily ones from the earliest month the periods read) are its figures in the
        // whole base's: for the periods together and for each alone.
        let alone: Vec<Vec<Period>> = periods.iter().map(|p| vec![*p]).collect();
        for ps in std::iter::once(periods.to_vec()).chain(alone) {
            let all = usage_stats(one.path(), HERE, &ps, &adv, as_of, None).unwrap();
            for id in ["a", "b", "c"] {
                let only = usage_stats(one.path(), HERE, &ps, &adv, as_of, Some(id)).unwrap();
                for (o, all) in only.iter().zip(&all) {
                    proptest::prop_assert!(o.len() <= 1);
                    proptest::prop_assert_eq!(o.get(id), all.get(id), "{} {:?}", id, ps);
                }
            }
        }
        for t in ["usage", "emails", "web_visits"] {
            let q = format!("SELECT count(*) AS n FROM {t}");
            proptest::prop_assert_eq!(sql(one.path(), &q), sql(many.path(), &q));
        }
    }
}

/// Appends events numbered from `first` (so keys stay distinct across calls).
fn append_lanes_from(data: &Path, events: &[Event], first: usize) {
    let (mut log, _) = Log::open(&data.join("log"), LogOptions::default()).unwrap();
    for (j, e) in events.iter().enumerate() {
        let mut buf = Vec::new();
        codec::encode(e, &mut buf);
        log.append(e.body.kind().as_str(), key_of(&buf, first + j), &buf).unwrap();
    }
    log.commit().unwrap();
}

/// A key per event position: identical events are distinct occurrences.
fn key_of(buf: &[u8], i: usize) -> u128 {
    u128::from_le_bytes(xxh(buf, 0)) ^ ((i as u128) << 64)
}

#[test]
fn concurrent_refreshes_write_each_event_once() {
    let t = tempfile::tempdir().unwrap();
    append(t.path(), &events());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| refresh(t.path(), HERE).unwrap());
        }
    });
    assert!(sql(t.path(), "SELECT count(*) AS n FROM usage").contains("| 35 |"));
    let q = "SELECT CAST(sum(events) AS BIGINT) AS n FROM usage_daily";
    assert!(sql(t.path(), q).contains("| 35 |"), "{}", sql(t.path(), q));
}

/// Copies a directory tree (a data directory, for comparisons).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// `usage_monthly` reads months wholly before `as_of` from the monthly rollups
/// (`usage_features`, `usage_accounts`) and the rest from the daily rows: the same figures
/// as from the daily rows alone, at any `as_of`; a rollup that does not match its daily
/// rows (missing, or named for another range) is not read.
#[test]
fn monthly_usage_from_rollups_is_the_daily_rows_figures() {
    let mut all = events();
    all.push(usage("2024-01-31T23:00:00Z", "b", "u4", "reports"));
    all.push(usage("2024-02-01T00:00:00Z", "b", "u3", "reports"));
    let rolled = tempfile::tempdir().unwrap();
    for chunk in all.chunks(5) {
        append(rolled.path(), chunk);
        refresh(rolled.path(), HERE).unwrap();
    }
    let accounts = rolled.path().join("columnar/usage_accounts");
    let months: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(&accounts)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(months.len(), 3, "one usage_accounts file per month: {months:?}");
    // The same data without the account rollups: every month from the daily rows.
    let daily = tempfile::tempdir().unwrap();
    copy_tree(rolled.path(), daily.path());
    std::fs::remove_dir_all(daily.path().join("columnar/usage_accounts")).unwrap();
    let features: Vec<String> =
        ["reports", "exports", "dashboards"].iter().map(|s| s.to_string()).collect();
    let sorted = |m: FxHashMap<String, Vec<UsageMonth>>| m.into_iter().collect::<BTreeMap<_, _>>();
    for at in [
        "2024-01-05T00:00:00Z",
        "2024-02-01T00:00:00Z",
        "2024-02-20T09:00:00Z",
        "2024-03-15T12:00:00Z",
        "2024-04-01T00:00:00Z",
        "2030-01-01T00:00:00Z",
    ] {
        let t = Timestamp::parse(at).unwrap();
        let a = sorted(usage_monthly(rolled.path(), HERE, &features, t).unwrap());
        let b = sorted(usage_monthly(daily.path(), HERE, &features, t).unwrap());
        assert_eq!(a, b, "as of {at}");
        // From a month on: the same months, the earlier ones left out (`since` inside a
        // month reads that whole month).
        for since in
            ["2024-01-01", "2024-02-01", "2024-02-15T10:00:00Z", "2024-03-01", "2024-05-01"]
        {
            let from = Timestamp::parse(since).unwrap();
            let month = tenure_core::time::PeriodUnit::Month.floor(from);
            let want: BTreeMap<String, Vec<UsageMonth>> = a
                .iter()
                .map(|(id, v)| {
                    (id.clone(), v.iter().filter(|m| m.month >= month).cloned().collect())
                })
                .filter(|(_, v): &(String, Vec<UsageMonth>)| !v.is_empty())
                .collect();
            for dir in [rolled.path(), daily.path()] {
                let got = sorted(
                    tenure_analytics::usage_monthly_since(dir, HERE, &features, from, t).unwrap(),
                );
                assert_eq!(got, want, "as of {at}, since {since}");
            }
        }
    }
    // March's figures worked by hand: a's u1 on 31 days and u2 on the 30th.
    let t = Timestamp::parse("2024-04-01T00:00:00Z").unwrap();
    let a = sorted(usage_monthly(rolled.path(), HERE, &features, t).unwrap());
    let march = a["a"].iter().find(|m| m.month == Timestamp::parse("2024-03-01").unwrap()).unwrap();
    assert_eq!((march.events, march.users, march.days), (33, 2, 31));
    // The rollups are read: February's file holding January's figures (under February's
    // name) changes February's users and days...
    let tampered = tempfile::tempdir().unwrap();
    copy_tree(rolled.path(), tampered.path());
    let dir = tampered.path().join("columnar/usage_accounts");
    std::fs::copy(dir.join(&months[0]), dir.join(&months[1])).unwrap();
    let c = sorted(usage_monthly(tampered.path(), HERE, &features, t).unwrap());
    assert_ne!(c, a, "February's account rollup was not read");
    // ...and one named for another range of records is not: renamed, it is stale.
    let stale = tempfile::tempdir().unwrap();
    copy_tree(rolled.path(), stale.path());
    let dir = stale.path().join("columnar/usage_accounts");
    std::fs::copy(dir.join(&months[0]), dir.join("2024-02.0-1.parquet")).unwrap();
    std::fs::remove_file(dir.join(&months[1])).unwrap();
    let d = sorted(usage_monthly(stale.path(), HERE, &features, t).unwrap());
    assert_eq!(d, a);
    // The next refresh writes the stale month's rollup again.
    refresh(stale.path(), HERE).unwrap();
    assert!(dir.join(&months[1]).exists());
    assert!(!dir.join("2024-02.0-1.parquet").exists());
    // A crash after a month's new rollup was written and before the old one was removed
    // leaves both: the next refresh removes the old one (`usage_features` is read whole by
    // SQL, which would count that month twice).
    let features_dir = stale.path().join("columnar/usage_features");
    let current: Vec<String> = std::fs::read_dir(&features_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("2024-01."))
        .collect();
    assert_eq!(current.len(), 1);
    let q = "SELECT CAST(sum(events) AS BIGINT) AS n FROM usage_features";
    let before = sql(stale.path(), q);
    std::fs::copy(features_dir.join(&current[0]), features_dir.join("2024-01.0-1.parquet"))
        .unwrap();
    assert_ne!(sql(stale.path(), q), before, "the leftover is read by SQL");
    refresh(stale.path(), HERE).unwrap();
    assert!(!features_dir.join("2024-01.0-1.parquet").exists());
    assert_eq!(sql(stale.path(), q), before);
}

/// Saved usage figures: a closed period is read back as computed, stays read while only
/// later months receive events, is computed again after a late event in a month it reads
/// (usage, email or visit), and a damaged entry is never trusted.
#[test]
fn saved_usage_figures_hold_until_a_month_they_read_changes() {
    use tenure_analytics::usage_figures;
    let t = tempfile::tempdir().unwrap();
    let mut all = events();
    all.push(email("2024-03-01T10:00:00Z", "a", "c1", "spring", "sent"));
    all.push(visit("2024-03-04T10:00:00Z", "a", "docs"));
    append_lanes(t.path(), &all);
    refresh(t.path(), HERE).unwrap();
    let adv = ["reports".to_string()];
    // March is closed; April is running at `as_of`.
    let periods = [Period::parse("2024-03").unwrap(), Period::parse("2024-04").unwrap()];
    let as_of = Timestamp::parse("2024-04-15T12:00:00Z").unwrap();
    let fresh = || usage_stats(t.path(), HERE, &periods, &adv, as_of, None).unwrap();
    let figures = || usage_figures(t.path(), HERE, &periods, &adv, as_of, "build 1").unwrap();
    let runs = |r: &tenure_analytics::FiguresRun| (r.read, r.computed, r.updated, r.damaged.len());

    let (first, run) = figures();
    assert_eq!(runs(&run), (0, 2, 0, 0));
    assert_eq!(first, fresh());
    assert_eq!(first[0]["a"].mau, 2);
    let (second, run) = figures();
    assert_eq!(runs(&run), (1, 1, 0, 0), "March read, April computed");
    assert_eq!(second, first);
    let entries = |dir: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.join("columnar/figures"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    assert_eq!(entries(t.path()).len(), 1, "only the closed period is saved");

    // Events of April leave March's entry alone (and show in April).
    append_lanes(t.path(), &[usage("2024-04-02T10:00:00Z", "b", "u9", "dashboards")]);
    refresh(t.path(), HERE).unwrap();
    let (u, run) = figures();
    assert_eq!(runs(&run), (1, 1, 0, 0));
    assert_eq!(u, fresh());
    assert_eq!(u[1]["b"].mau, 1);

    // A late event of March, another of February (read by "features ever" and the trend),
    // a late email and a late visit: each makes March computed again for the account it
    // names (its new file lists no other), equal to a fresh run.
    type Field = fn(&tenure_kpi::usage::AccountUsage) -> u64;
    let late: [(Event, Field, u64); 4] = [
        (usage("2024-03-20T10:00:00Z", "b", "u8", "reports"), |u| u.mau, 1),
        (usage("2024-02-25T10:00:00Z", "b", "u7", "reports"), |u| u.mau_prev, 1),
        (email("2024-03-09T10:00:00Z", "b", "c9", "spring", "sent"), |u| u.emails_sent, 1),
        (visit("2024-03-09T10:00:00Z", "b", "website"), |u| u.website_visits, 1),
    ];
    for (e, field, want) in late {
        append_lanes(t.path(), std::slice::from_ref(&e));
        refresh(t.path(), HERE).unwrap();
        let (u, run) = figures();
        assert_eq!((runs(&run), run.accounts_updated), ((0, 1, 1, 0), 1), "{e:?}");
        assert_eq!(u, fresh());
        assert_eq!(field(&u[0]["b"]), want, "{e:?}");
        assert_eq!(runs(&figures().1), (1, 1, 0, 0));
    }
    // Late events of March until the month is compacted (its files merged into one): the
    // files listed before are gone, so March is computed whole; until then, for a alone.
    let march = || {
        std::fs::read_dir(t.path().join("columnar/usage_daily"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("2024-03"))
            .count()
    };
    let mut compacted = false;
    for k in 0..10 {
        let e = usage(&format!("2024-03-2{k}T12:00:00Z"), "a", &format!("late-{k}"), "api");
        append_lanes(t.path(), &[e]);
        refresh(t.path(), HERE).unwrap();
        let (u, run) = figures();
        assert_eq!(u, fresh());
        if march() == 1 {
            assert_eq!(runs(&run), (0, 2, 0, 0), "compacted: computed whole");
            compacted = true;
            break;
        }
        assert_eq!((runs(&run), run.accounts_updated), ((0, 1, 1, 0), 1), "late event {k}");
    }
    assert!(compacted, "March was never compacted");

    // Damage: a flipped byte, a file cut in its body or in its key, another file's bytes.
    // Each is said and computed.
    let entry = entries(t.path()).remove(0);
    let good = std::fs::read(&entry).unwrap();
    let mut flipped = good.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 0x10;
    for (bytes, why) in [
        (flipped, "checksum mismatch"),
        (good[..good.len() - 5].to_vec(), "checksum mismatch"),
        (good[..20].to_vec(), "cut short"),
        (b"PAR1 not an entry".to_vec(), "not a usage figures file"),
    ] {
        std::fs::write(&entry, bytes).unwrap();
        let (u, run) = figures();
        assert_eq!(runs(&run), (0, 2, 0, 1), "{why}");
        assert!(run.damaged[0].contains(why), "{:?}", run.damaged);
        assert_eq!(u, fresh());
        assert_eq!(std::fs::read(&entry).unwrap(), good, "written again, the same bytes");
    }

    // Another build computes again (and replaces the entry); other advanced features make
    // another entry.
    let (u, run) = usage_figures(t.path(), HERE, &periods, &adv, as_of, "build 2").unwrap();
    assert_eq!(runs(&run), (0, 2, 0, 0));
    assert_eq!(u, fresh());
    assert_eq!(runs(&figures().1), (0, 2, 0, 0), "build 1 again: computed");
    let (u, run) = usage_figures(t.path(), HERE, &periods, &[], as_of, "build 1").unwrap();
    assert_eq!(runs(&run), (0, 2, 0, 0));
    assert_eq!(u, usage_stats(t.path(), HERE, &periods, &[], as_of, None).unwrap());
    assert_eq!(entries(t.path()).len(), 2);

    // A report of more closed periods than half the cache holds computes them, saving none.
    let months: Vec<Period> = (0..30)
        .map(|k| {
            let start = Timestamp::parse("2022-01-01").unwrap().add_months(k);
            Period::new(start, start.add_months(1))
        })
        .collect();
    let (u, run) = usage_figures(t.path(), HERE, &months, &adv, as_of, "build 1").unwrap();
    assert_eq!((run.read, run.computed, run.unsaved.len()), (1, 29, 0), "March is read");
    assert_eq!(u, usage_stats(t.path(), HERE, &months, &adv, as_of, None).unwrap());
    assert_eq!(entries(t.path()).len(), 2);

    // A folder that cannot be written: the report is whole, the failure said.
    let figures_dir = t.path().join("columnar/figures");
    std::fs::remove_dir_all(&figures_dir).unwrap();
    std::fs::write(&figures_dir, "a file where the folder was").unwrap();
    let (u, run) = usage_figures(t.path(), HERE, &periods, &adv, as_of, "build 1").unwrap();
    assert_eq!((run.read, run.computed, run.unsaved.len()), (0, 2, 1), "{run:?}");
    assert_eq!(u, fresh());
}
