//! The service's inputs: the Segment mapping under hostile messages (issue 13: generated
//! calls, most of them malformed, never panic, and whatever is accepted passes the
//! contract's validation and is an event every layer below can hold; a proptest harness run
//! in CI with a bounded budget, `PROPTEST_CASES` raises it), and the example configuration.

use proptest::prelude::*;
use serde_json::Value;
use tenure_core::event::Event;
use tenure_core::time::{EARLIEST, END_OF_RANGE, Timestamp};
use tenure_ingest::{IngestConfig, parse_json_line};
use tenure_server::ServiceConfig;
use tenure_server::segment::{self, Mapped, SegmentConfig};

/// `config/tenure.example.toml` lists every section of the service; it must parse, its
/// commented-out notifier included, and mean what it says.
#[test]
fn the_example_configuration_is_valid() {
    let text = include_str!("../../../../config/tenure.example.toml");
    let c = ServiceConfig::parse(text).unwrap();
    assert_eq!((c.rules.len(), c.playbooks.len(), c.notifiers.len()), (4, 1, 0));
    assert_eq!(c.service.refresh_minutes, 60);
    // The notifier block, uncommented (its trailing comments kept as TOML comments).
    let (head, tail) = text.split_at(text.find("# [[notifier]]").unwrap());
    let tail: String =
        tail.lines().map(|l| l.strip_prefix("# ").unwrap_or(l).to_string() + "\n").collect();
    let c = ServiceConfig::parse(&format!("{head}{tail}")).unwrap();
    assert_eq!(c.notifiers.len(), 1);
    assert_eq!(c.notifiers[0].name, "crm");
}

const KEYS: &[&str] = &[
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "category",
    "groupId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "properties",
    "traits",
    "context",
];

const VALUES: &[&str] = &[
    r#""u1""#,
    r#""acme""#,
    r#""""#,
    r#""   ""#,
    r#""a\u0000b""#,
    r#""line\nbreak""#,
    r#""Signed Up""#,
    r#""docs""#,
    r#""Docs""#,
    r#""2026-06-01T10:00:00Z""#,
    r#""2026-06-01T10:00:00.123+02:00""#,
    r#""1600-01-01T00:00:00Z""#,
    r#""0001-01-01""#,
    r#""9999-12-31T23:59:59Z""#,
    r#""1899-12-31""#,
    r#""2199-12-31""#,
    r#""2300-01-01""#,
    r#""not a date""#,
    "0",
    "1",
    "-1",
    "1e-400",
    "1e300",
    "1e15",
    "0.5",
    "12345678901234567890",
    "true",
    "null",
    "[]",
    r#"[1,{"a":[]}]"#,
    r#"{"groupId":"acme"}"#,
    r#"{"groupId":""}"#,
    r#"{"groupId":"\u0000"}"#,
    r#"{"groupId":7}"#,
    r#"{"account_id":"acme","quantity":3}"#,
    r#"{"quantity":-5,"feature":"reports"}"#,
    r#"{"quantity":1e-400}"#,
    r#"{"quantity":1e300}"#,
    r#"{"name":"Acme","plan":"pro","Employee Count":12,"address":{"city":"x"}}"#,
    r#"{"email":"a@b.c","role":"champion","firstName":"A","lastName":"B","company":{"id":"acme"}}"#,
    r#"{"path":"/docs/x","url":"https://x","category":"docs","section":"website"}"#,
    r#"{"region":"EU","Region":"US"}"#,
];

const CALLS: &[&str] = &["track", "identify", "group", "page", "screen", "alias", "batch"];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(VALUES).prop_map(str::to_string),
        1 => "\\PC{0,10}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

/// A message as JSON text, with a fair chance of a type and a group.
fn message() -> impl Strategy<Value = String> {
    (
        prop::sample::select(&CALLS[..6]),
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..10),
    )
        .prop_map(|(ty, fields)| {
            let mut parts = vec![
                format!(r#""type":"{ty}""#),
                r#""userId":"u1""#.to_string(),
                r#""context":{"groupId":"acme"}"#.to_string(),
            ];
            parts.extend(fields.iter().map(|(k, v)| format!(r#""{k}":{v}"#)));
            format!("{{{}}}", parts.join(","))
        })
}

fn check_event(e: &Event, msg: &str) {
    assert!((EARLIEST..END_OF_RANGE).contains(&e.ts), "{} from {msg}", e.ts);
    for id in [&e.account, &e.message_id].into_iter().flatten() {
        assert!(!id.trim().is_empty() && !id.chars().any(char::is_control), "{id:?} from {msg}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_segment_calls_are_mapped_or_refused_never_broken(
        call in prop::sample::select(CALLS),
        msg in message(),
        batch_sent in prop::option::of(prop::sample::select(&VALUES[9..18])),
    ) {
        let received = Timestamp::parse("2026-06-01T10:00:05Z").unwrap();
        let cfg = IngestConfig { now: Some(received), ..IngestConfig::defaults(None) };
        // Duplicate keys: serde_json keeps the last, as Segment's own API does.
        let Ok(v) = serde_json::from_str::<Value>(&msg) else { return Ok(()) };
        let sent = batch_sent.and_then(|s| serde_json::from_str::<String>(s).ok())
            .and_then(|s| Timestamp::parse(&s).ok());
        match segment::map(call, &v, sent, received, &SegmentConfig::default()) {
            Ok(Mapped::Event(native)) => match parse_json_line(&native.to_string(), None, &cfg) {
                Ok(e) => check_event(&e, &msg),
                Err(err) => prop_assert!(!err.reason.is_empty()),
            },
            Ok(Mapped::Ignored) => {}
            Err(e) => prop_assert!(!e.reason.is_empty()),
        }
    }
}

#[test]
fn a_clock_correction_out_of_the_supported_range_names_its_field() {
    let received = Timestamp::parse("2026-06-01T10:00:00Z").unwrap();
    let msg = serde_json::json!({"type": "track", "userId": "u", "event": "e",
        "context": {"groupId": "acme"}, "originalTimestamp": "1950-01-01T00:00:00Z",
        "sentAt": "2199-01-01T00:00:00Z"});
    let e = segment::map("track", &msg, None, received, &SegmentConfig::default()).unwrap_err();
    assert_eq!(e.field, "originalTimestamp");
    assert!(e.reason.starts_with("corrected for the sender's clock"), "{}", e.reason);
    assert!(e.reason.contains("outside the supported range"), "{}", e.reason);
}
