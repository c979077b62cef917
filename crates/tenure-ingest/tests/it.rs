//! Row validation under hostile input (issue 13): generated rows, most of them malformed,
//! never panic, and every accepted event is one every layer below can hold.
//!
//! A proptest harness rather than cargo-fuzz so that it runs in CI with a bounded budget
//! (`PROPTEST_CASES` raises it locally): rows are drawn from the contract's field names and
//! from values chosen to sit on every boundary (times at the edges of the supported range
//! and of nanosecond timestamps, NUL and control characters, blank ids, underflowing and
//! overflowing numbers, nested values, duplicate keys), plus arbitrary text.

use proptest::prelude::*;
use tenure_core::codec;
use tenure_core::event::{AttrValue, Event, EventBody};
use tenure_core::time::{EARLIEST, END_OF_RANGE, Timestamp};
use tenure_ingest::{CsvEvents, IngestConfig, parse_json_line};

const FIELDS: &[&str] = &[
    "type",
    "timestamp",
    "account_id",
    "message_id",
    "name",
    "contact_id",
    "email",
    "role",
    "status",
    "subscription_id",
    "product",
    "plan",
    "kind",
    "quantity",
    "amount",
    "currency",
    "interval",
    "term_start",
    "term_end",
    "cancel_reason",
    "cancel_at",
    "invoice_id",
    "period_start",
    "period_end",
    "user_id",
    "event",
    "feature",
    "ticket_id",
    "category",
    "severity",
    "cost",
    "csat",
    "survey",
    "score",
    "comment",
    "campaign",
    "action",
    "section",
    "page",
    "sentiment",
    "note",
    "objective_id",
    "value",
    "relationship",
    "strategic_importance",
    "author",
    "request_id",
    "alert_id",
    "rule",
    "message",
    "task_id",
    "title",
    "owner",
    "due",
    "root_cause",
    "unknown_extra",
];

const TYPES: &[&str] = &[
    "account",
    "contact",
    "subscription",
    "invoice",
    "usage",
    "ticket",
    "survey_sent",
    "survey_response",
    "email",
    "web_visit",
    "touchpoint",
    "milestone",
    "success_objective",
    "assessment",
    "change_request",
    "cost",
    "alert",
    "task",
    "purchase",
    "",
];

/// JSON value texts on every boundary we know of (written as text: `1e-400` cannot be held
/// by a `serde_json::Value`).
const VALUES: &[&str] = &[
    r#""2024-03-01""#,
    r#""2024-03-01T10:00:00Z""#,
    r#""1600-01-01""#,
    r#""1677-09-21""#,
    r#""1899-12-31T23:59:59.999999Z""#,
    r#""1900-01-01""#,
    r#""2199-12-31T23:59:59Z""#,
    r#""2200-01-01""#,
    r#""2262-04-12""#,
    r#""9999-12-31T23:59:60Z""#,
    r#""0001-01-01""#,
    r#""2024-02-30""#,
    r#""2024-03-01T10:00:00+23:59""#,
    r#""2024-03-01T10:00:00.123456789Z""#,
    r#""a""#,
    r#""acme""#,
    r#""""#,
    r#""   ""#,
    r#""a\u0000b""#,
    r#""\u0000""#,
    r#""a\nb""#,
    r#""\t""#,
    r#""é☃𝄞""#,
    r#""\ud800""#,
    r#""monthly""#,
    r#""active""#,
    r#""canceled""#,
    r#""nps""#,
    r#""csat""#,
    r#""paid""#,
    r#""opened""#,
    r#""docs""#,
    r#""open""#,
    r#""positive""#,
    r#""USD""#,
    r#""JPY""#,
    r#""1e-400""#,
    r#""12.345""#,
    r#""-1""#,
    r#""NaN""#,
    r#""inf""#,
    "0",
    "-0",
    "0.0",
    "1",
    "-1",
    "10",
    "7",
    "1e-400",
    "-1e-400",
    "1e-310",
    "0e-999",
    "4.9e-324",
    "1e15",
    "1e16",
    "1e300",
    "1e308",
    "1.7976931348623157e308",
    "9007199254740993",
    "18446744073709551615",
    "-9223372036854775808",
    "0.1",
    "12.5",
    "true",
    "false",
    "null",
    "{}",
    "[]",
    r#"{"a":1}"#,
    r#"[1,[2,[3]]]"#,
    r#"{"region":"EU","region":"US"}"#,
    r#"{"x":1e-400}"#,
    r#"{"":1}"#,
    r#"{"k":"\u0000"}"#,
    r#"{"k":{"n":1}}"#,
    r#"{"plan":"pro","seats":5,"vip":true}"#,
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(str::to_string),
        1 => "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => any::<f64>().prop_map(|x| if x.is_finite() { format!("{x:e}") } else { "1".into() }),
        1 => any::<i64>().prop_map(|x| x.to_string()),
    ]
}

/// Valid rows of several types, as (field, value text) lists: generated rows start from one
/// and have some of its fields replaced, or extra ones added, so that many get as far as
/// the checks of each field rather than failing on a missing one.
const TEMPLATES: &[&[(&str, &str)]] = &[
    &[
        ("type", r#""usage""#),
        ("timestamp", r#""2026-03-01""#),
        ("account_id", r#""a""#),
        ("user_id", r#""u""#),
        ("event", r#""login""#),
        ("quantity", "2"),
    ],
    &[
        ("type", r#""subscription""#),
        ("timestamp", r#""2026-03-01""#),
        ("account_id", r#""a""#),
        ("subscription_id", r#""s""#),
        ("amount", r#""10.50""#),
        ("status", r#""active""#),
        ("term_start", r#""2026-03-01""#),
        ("term_end", r#""2027-03-01""#),
        ("quantity", "5"),
    ],
    &[
        ("type", r#""account""#),
        ("timestamp", r#""2026-03-01""#),
        ("account_id", r#""a""#),
        ("name", r#""Acme""#),
        ("attributes", r#"{"segment":"smb","seats":3}"#),
    ],
    &[
        ("type", r#""invoice""#),
        ("timestamp", r#""2026-03-01""#),
        ("account_id", r#""a""#),
        ("invoice_id", r#""i""#),
        ("amount", "12.5"),
        ("status", r#""paid""#),
        ("period_start", r#""2026-03-01""#),
        ("period_end", r#""2026-04-01""#),
    ],
    &[
        ("type", r#""task""#),
        ("timestamp", r#""2026-03-01""#),
        ("account_id", r#""a""#),
        ("task_id", r#""t""#),
        ("due", r#""2026-03-08""#),
        ("note", r#""call""#),
    ],
    &[
        ("type", r#""cost""#),
        ("timestamp", r#""2026-03-01""#),
        ("category", r#""service""#),
        ("amount", "100"),
        ("period_start", r#""2026-03-01""#),
        ("period_end", r#""2026-04-01""#),
    ],
    &[
        ("type", r#""survey_response""#),
        ("timestamp", r#""2026-03-01""#),
        ("account_id", r#""a""#),
        ("survey", r#""nps""#),
        ("score", "9"),
        ("comment", r#""great""#),
    ],
];

/// A JSON object line: a template's fields, some replaced by hostile values, some added
/// (a known field again, an unknown one, or a random type).
fn json_row() -> impl Strategy<Value = String> {
    (
        prop::sample::select(TEMPLATES),
        prop::collection::vec((prop::sample::select(FIELDS), value()), 0..5),
        prop::collection::vec((prop::sample::select(FIELDS), value()), 0..3),
        prop::option::weighted(0.1, prop::sample::select(TYPES)),
    )
        .prop_map(|(template, replace, add, ty)| {
            let mut fields: Vec<(String, String)> =
                template.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            for (k, v) in replace {
                match fields.iter_mut().find(|(f, _)| f == k) {
                    Some(slot) => slot.1 = v,
                    None => fields.push((k.to_string(), v)),
                }
            }
            fields.extend(add.into_iter().map(|(k, v)| (k.to_string(), v)));
            if let Some(t) = ty {
                fields[0].1 = format!("\"{t}\"");
            }
            let parts: Vec<String> = fields.iter().map(|(k, v)| format!(r#""{k}":{v}"#)).collect();
            format!("{{{}}}", parts.join(","))
        })
}

/// Every instant an event carries.
fn times(e: &Event) -> Vec<Timestamp> {
    let mut t = vec![e.ts];
    match &e.body {
        EventBody::Subscription(s) => {
            t.extend([s.term_start, s.term_end, s.cancel_at].into_iter().flatten())
        }
        EventBody::Invoice { period_start, period_end, .. } => {
            t.extend([*period_start, *period_end].into_iter().flatten())
        }
        EventBody::Cost { period_start, period_end, .. } => t.extend([*period_start, *period_end]),
        EventBody::Task(c) => t.extend(c.due),
        _ => {}
    }
    t
}

/// Whether a NUL character is anywhere in the event's text (read off `Debug`, which writes
/// NUL as `\0` and a backslash as `\\`).
fn has_nul(e: &Event) -> bool {
    let d = format!("{e:?}");
    let mut chars = d.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next() == Some('0') {
            return true;
        }
    }
    false
}

/// What every accepted event must be: storable by every layer and unchanged by the codec.
fn check_accepted(e: &Event, line: &str) {
    for t in times(e) {
        assert!((EARLIEST..END_OF_RANGE).contains(&t), "{t} accepted from {line}");
    }
    for id in [&e.account, &e.message_id].into_iter().flatten() {
        assert!(
            !id.trim().is_empty() && !id.chars().any(char::is_control),
            "id {id:?} from {line}"
        );
    }
    assert!(!has_nul(e), "a NUL accepted from {line}");
    match &e.body {
        EventBody::Usage { quantity, user_id, event, .. } => {
            assert!(
                quantity.is_finite() && (0.0..=1e15).contains(quantity),
                "{quantity} from {line}"
            );
            assert!(!user_id.trim().is_empty() && !event.trim().is_empty());
        }
        EventBody::Account { attributes, .. } => {
            for w in attributes.windows(2) {
                assert!(w[0].0 != w[1].0, "attribute {} twice from {line}", w[0].0);
            }
            for (_, v) in attributes {
                if let AttrValue::Num(n) = v {
                    let x: f64 = n.parse().unwrap();
                    assert!(x == 0.0 || x.abs() >= f64::MIN_POSITIVE, "{n} from {line}");
                }
            }
        }
        _ => {}
    }
    let mut buf = Vec::new();
    codec::encode(e, &mut buf);
    assert_eq!(&codec::decode(&buf).unwrap(), e, "codec round trip of {line}");
}

/// A harness that never reaches an accepted row tests little: at least a fifth are.
#[test]
fn the_json_harness_reaches_accepted_rows() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut ok, mut total) = (0, 0);
    for _ in 0..2000 {
        let line =
            proptest::strategy::ValueTree::current(&json_row().new_tree(&mut runner).unwrap());
        total += 1;
        ok += parse_json_line(&line, None, &cfg()).is_ok() as usize;
    }
    assert!(ok * 5 > total, "only {ok} of {total} generated rows accepted");
}

fn cfg() -> IngestConfig {
    IngestConfig::defaults(Some(Timestamp::parse("2026-06-01").unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_json_rows_are_refused_with_a_reason_or_fully_valid(line in json_row()) {
        match parse_json_line(&line, None, &cfg()) {
            Ok(e) => check_accepted(&e, &line),
            Err(err) => {
                prop_assert!(!err.reason.is_empty());
                // The field named is one of the contract's, or one the row holds.
                if let Some(f) = &err.field {
                    let known = FIELDS.contains(&f.as_str()) || f == "attributes";
                    let held = line.contains(f.strip_prefix("attributes.").unwrap_or(f));
                    prop_assert!(known || held, "field {f:?} is neither known nor in {line}");
                }
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(line in "\\PC{0,200}") {
        let _ = parse_json_line(&line, None, &cfg());
    }

    #[test]
    fn generated_csv_rows_are_refused_with_a_reason_or_fully_valid(
        cells in prop::collection::vec(value(), 5)
    ) {
        // CSV cells are text: a JSON string's content (NUL and line breaks included), any
        // other value's text as it is; every cell quoted.
        let row: Vec<String> = cells
            .iter()
            .map(|c| serde_json::from_str::<String>(c).unwrap_or_else(|_| c.clone()))
            .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
            .collect();
        let text =
            format!("type,timestamp,account_id,user_id,event,quantity\nusage,{}\n", row.join(","));
        let mut csv = CsvEvents::new(text.as_bytes(), None).unwrap();
        while let Some((_, r)) = csv.next_row(&cfg()) {
            match r {
                Ok(e) => check_accepted(&e, &text),
                Err(rej) => prop_assert!(!rej.reason.is_empty()),
            }
        }
    }
}
