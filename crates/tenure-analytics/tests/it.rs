//! The columnar store: built from the log incrementally, the same whatever the batches,
//! queried by read-only SQL, and the usage figures of the KPIs.

use std::path::Path;
use tenure_analytics::{QueryError, refresh, run_sql, usage_stats};
use tenure_core::codec;
use tenure_core::event::{Event, EventBody};
use tenure_core::time::{Period, Timestamp};
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
    let r = run_sql(data, Vec::new(), q).unwrap();
    tenure_analytics::arrow::util::pretty::pretty_format_batches(&r.batches).unwrap().to_string()
}

#[test]
fn usage_figures_are_the_same_for_one_batch_or_many_and_after_a_restart() {
    let one = tempfile::tempdir().unwrap();
    append(one.path(), &events());
    let s = refresh(one.path()).unwrap();
    assert_eq!(s.events.get("usage"), Some(&35));
    assert_eq!(refresh(one.path()).unwrap().files, 0, "nothing new, nothing written");

    let many = tempfile::tempdir().unwrap();
    for chunk in events().chunks(4) {
        append(many.path(), chunk);
        refresh(many.path()).unwrap();
    }
    let q = "SELECT account_id, user_id, feature, CAST(sum(events) AS BIGINT) AS n FROM usage_daily GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    assert_eq!(sql(one.path(), q), sql(many.path(), q));
    assert_eq!(
        sql(one.path(), "SELECT count(*) AS n FROM usage"),
        sql(many.path(), "SELECT count(*) AS n FROM usage")
    );

    let periods = [Period::parse("2024-03").unwrap(), Period::parse("2024-01").unwrap()];
    let as_of = Timestamp::parse("2030-01-01").unwrap();
    let u1 = usage_stats(one.path(), &periods, &["reports".to_string()], as_of).unwrap();
    let u2 = usage_stats(many.path(), &periods, &["reports".to_string()], as_of).unwrap();
    assert_eq!(u1, u2);
    // March: 30 days before Apr 1 = Mar 2..31. a: u1 on 30 days, u2 on Mar 30 -> MAU 2,
    // user-days 31; in the 7 days (Mar 25..31) both; u1 used reports (advanced).
    let a = &u1[0]["a"];
    assert_eq!((a.mau, a.wau, a.user_days, a.advanced_users), (2, 2, 31, 1));
    assert_eq!(a.features, ["dashboards", "exports", "reports"]);
    // Events in March 33, in February 1.
    assert_eq!((a.events, a.events_prev), (33, 1));
    assert!(!u1[0].contains_key("b") || u1[0]["b"].mau == 0);
    // January: b's u3 on Jan 10.
    assert_eq!(u1[1]["b"].mau, 1);

    // A process that stopped after writing files but before moving the watermark: the
    // files are written again, not twice.
    let wm = one.path().join("columnar/usage/WATERMARK");
    std::fs::write(&wm, "0").unwrap();
    refresh(one.path()).unwrap();
    assert_eq!(
        sql(one.path(), "SELECT count(*) AS n FROM usage"),
        sql(many.path(), "SELECT count(*) AS n FROM usage")
    );
}

#[test]
fn sql_is_read_only_and_errors_are_clear() {
    let t = tempfile::tempdir().unwrap();
    append(t.path(), &events());
    refresh(t.path()).unwrap();
    for bad in [
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "COPY usage TO '/tmp/out.csv'",
        "INSERT INTO usage VALUES ('a')",
        "DROP TABLE usage",
        "SET datafusion.execution.batch_size = 1",
        "SELEC 1",
        "SELECT nope FROM usage",
        "SELECT * FROM no_such_table",
    ] {
        match run_sql(t.path(), Vec::new(), bad) {
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
