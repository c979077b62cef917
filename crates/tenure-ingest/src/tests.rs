//! Table tests: rows in, accepted events or rejections out (every bad-input example of
//! events.md among them).

use super::*;
use expect_test::{Expect, expect};
use tenure_core::event::*;

fn cfg() -> IngestConfig {
    IngestConfig::defaults(Some(Timestamp::parse("2024-06-01T00:00:00Z").unwrap()))
}

/// Renders each line's outcome: `ok KIND` or `LINE: FIELD: REASON`.
fn check(input: &str, expect: Expect) {
    let (ok, bad) = parse_jsonl_block(input.trim_start_matches('\n'), 1, None, &cfg());
    let mut lines: Vec<(u64, String)> =
        ok.iter().map(|(n, e)| (*n, format!("{n}: ok {}", e.kind().as_str()))).collect();
    lines.extend(bad.iter().map(|r| (r.line, r.to_string())));
    lines.sort();
    let out: Vec<String> = lines.into_iter().map(|(_, s)| s).collect();
    expect.assert_eq(&(out.join("\n") + "\n"));
}

#[test]
fn bad_input_of_the_contract_is_rejected_with_reasons() {
    check(
        r#"
{"type":"usage","timestamp":"2024-03-01T10:00:00Z","account_id":"a","user_id":"u","event":"login"}
{"type":"usage","timestamp":"2024-03-01T10:00:00Z","account_id":"a",
{"timestamp":"2024-03-01","account_id":"a"}
{"type":"purchase","timestamp":"2024-03-01","account_id":"a"}
{"type":"ticket","timestamp":"2024-03-01","ticket_id":"t","status":"opened"}
{"type":"ticket","timestamp":"March 1st","account_id":"a","ticket_id":"t","status":"opened"}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"x","quantity":-2}
{"type":"invoice","timestamp":"2024-03-01","account_id":"a","invoice_id":"i","amount":"-10.00","status":"paid"}
{"type":"survey_response","timestamp":"2024-03-01","account_id":"a","survey":"nps","score":11}
{"type":"ticket","timestamp":"2024-03-01","account_id":"a","ticket_id":"t","status":"escalated"}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"x","quantity":"lots"}
{"type":"account","timestamp":"2024-03-01","account_id":42}
{"type":"milestone","timestamp":"2030-01-01","account_id":"a","name":"first_value"}
[1,2,3]
{"type":"invoice","timestamp":"2024-03-01","account_id":"a","invoice_id":"i","amount":"10.001","status":"paid"}
{"type":"subscription","timestamp":"2024-03-01","account_id":"a","subscription_id":"s","amount":"10","status":"active","interval":"fortnight"}
{"type":"account","timestamp":"2024-03-01","account_id":"a","attributes":{"region":{"nested":1}}}
{"type":"contact","timestamp":"2024-03-01","account_id":"a","contact_id":"c","role":"ceo"}
{"type":"survey_response","timestamp":"2024-03-01","account_id":"a","survey":"success","score":"great"}
{"type":"account","timestamp":"2024-03-01","account_id":"","name":"x"}
{"type":"cost","timestamp":"2024-03-01","category":"retention","amount":"100","period_start":"2024-03-01","period_end":"2024-04-01"}
{"type":"account","timestamp":"2024-03-01","account_id":"a","account_id":"b"}
"#,
        expect![[r#"
            1: ok usage
            2: malformed JSON: EOF while parsing a value at line 1 column 68
            3: type: missing required field
            4: type: unknown type "purchase" (expected account | contact | subscription | invoice | usage | ticket | survey_sent | survey_response | email | web_visit | touchpoint | milestone | success_objective | assessment | change_request | cost | alert | task | forecast_override)
            5: account_id: missing required field
            6: timestamp: not an RFC 3339 timestamp or YYYY-MM-DD date: "March 1st"
            7: quantity: must not be negative, got -2
            8: amount: must not be negative, got -10.00
            9: score: 11 is out of range 0..=10
            10: status: unknown value "escalated" (expected opened | closed | reopened)
            11: quantity: expected a number, got "lots"
            12: account_id: expected a string, got a number
            13: timestamp: 2030-01-01T00:00:00Z is 2040.0 days in the future (beyond the allowed skew of 1 day)
            14: expected a JSON object
            15: amount: "10.001" has more decimal places than USD allows
            16: interval: unknown interval "fortnight" (expected month | quarter | year | N months as "6m")
            17: attributes: attribute values must be strings, numbers or booleans
            18: role: unknown value "ceo" (expected champion | executive_sponsor | admin | decision_maker | influencer | end_user | other)
            19: score: unknown value "great" (expected positive | neutral | negative)
            20: account_id: must not be empty
            21: ok cost
            22: account_id: field appears twice
        "#]],
    );
}

#[test]
fn oversized_lines_are_rejected() {
    let mut cfg = cfg();
    cfg.max_line_bytes = 100;
    let line = format!(
        r#"{{"type":"milestone","timestamp":"2024-03-01","account_id":"a","name":"{}"}}"#,
        "x".repeat(100)
    );
    let err = parse_json_line(&line, None, &cfg).unwrap_err();
    assert_eq!(err.reason, "line is 172 bytes, over the limit of 100");
}

#[test]
fn fields_are_read_exactly() {
    let line = r#"{"type":"subscription","timestamp":"2024-03-01T09:30:00+02:00","account_id":"acme","message_id":"m1","subscription_id":"s1","plan":"pro","quantity":25,"amount":1200.5,"currency":"eur","interval":"year","status":"active","term_start":"2024-03-01","term_end":"2025-03-01","extra":{"ignored":true}}"#;
    let e = parse_json_line(line, None, &cfg()).unwrap();
    assert_eq!(e.ts.to_string(), "2024-03-01T07:30:00Z");
    assert_eq!(e.message_id.as_deref(), Some("m1"));
    let EventBody::Subscription(s) = e.body else { panic!("not a subscription") };
    assert_eq!(
        (s.quantity, s.amount.minor, s.amount.currency.as_str(), s.interval_months),
        (25, 120_050, "EUR", 12)
    );
    assert_eq!(s.kind, LineKind::Product);
    assert_eq!(s.term_end.unwrap().date_string(), "2025-03-01");
}

#[test]
fn csv_rows_use_header_names_and_file_types() {
    let text = "account_id,timestamp,name,attributes.region,attributes.segment\nacme,2024-01-01,Acme,emea,smb\n,2024-01-01,NoId,na,\nbeta,2024-01-02,\"Beta, Inc\",na,\n";
    let mut rows = CsvEvents::new(text.as_bytes(), kind_from_file_name("accounts.csv")).unwrap();
    let mut out = Vec::new();
    while let Some((line, r)) = rows.next_row(&cfg()) {
        out.push(match r {
            Ok(e) => format!("{line}: {:?}", e.body),
            Err(r) => r.to_string(),
        });
    }
    expect![[r#"
        2: Account { name: Some("Acme"), attributes: [("region", Str("emea")), ("segment", Str("smb"))] }
        3: account_id: missing required field
        4: Account { name: Some("Beta, Inc"), attributes: [("region", Str("na"))] }"#]]
    .assert_eq(&out.join("\n"));
    assert!(matches!(
        CsvEvents::new("foo,bar\n1,2\n".as_bytes(), None),
        Err(CsvError::NoKnownColumns(_))
    ));
    assert!(matches!(
        CsvEvents::new("account_id,timestamp\na,2024-01-01\n".as_bytes(), None),
        Err(CsvError::NoType)
    ));
    assert!(CsvEvents::new("type,account_id,timestamp\n".as_bytes(), None).is_ok());
}

#[test]
fn file_names_name_types() {
    for (name, kind) in [
        ("accounts.jsonl", Some(EventKind::Account)),
        ("./x/subscriptions.csv", Some(EventKind::Subscription)),
        ("usage.csv", Some(EventKind::Usage)),
        ("survey_responses.csv", Some(EventKind::SurveyResponse)),
        ("web-visits.csv", Some(EventKind::WebVisit)),
        ("success_objectives.csv", Some(EventKind::SuccessObjective)),
        ("events.jsonl", None),
    ] {
        assert_eq!(kind_from_file_name(name), kind, "{name}");
    }
}

#[test]
fn crlf_csv_rows_name_their_lines_and_a_jsonl_bom_is_ignored() {
    let text = "account_id,timestamp,subscription_id,amount,status\r\na,2024-01-01,s1,x1,active\r\nb,2024-01-01,s2,\"1\r\n0\",active\r\n\r\nc,2024-01-01,s3,x3,active\r";
    let mut rows = CsvEvents::new(text.as_bytes(), Some(EventKind::Subscription)).unwrap();
    let mut out = Vec::new();
    while let Some((line, r)) = rows.next_row(&cfg()) {
        out.push(match r {
            Ok(_) => format!("{line}: ok"),
            Err(r) => r.to_string(),
        });
    }
    expect![[r#"
        2: amount: not a decimal amount: "x1"
        3: amount: not a decimal amount: "1\n0"
        6: amount: not a decimal amount: "x3""#]]
    .assert_eq(&out.join("\n"));
    let bom = "\u{feff}{\"type\":\"milestone\",\"timestamp\":\"2024-03-01\",\"account_id\":\"a\",\"name\":\"x\"}";
    assert!(parse_json_line(bom, None, &cfg()).is_ok());
}

#[test]
fn amounts_beyond_exactness_or_limits_are_refused() {
    let line = |amount: &str, cur: &str| {
        format!(
            r#"{{"type":"invoice","timestamp":"2024-03-01","account_id":"a","invoice_id":"i","amount":{amount},"currency":"{cur}","status":"paid"}}"#
        )
    };
    let reason = |l: String| parse_json_line(&l, None, &cfg()).err().map(|e| e.reason);
    assert_eq!(
        reason(line("12345678901234567.89", "USD")).unwrap(),
        "12345678901234568 is too large to be exact as a JSON number; send it as a string"
    );
    assert_eq!(
        reason(line("\"200000000000\"", "USD")).unwrap(),
        "200000000000 is over the limit of 100000000000.00 USD"
    );
    assert_eq!(reason(line("1200.5", "XYZ")).unwrap(), "\"XYZ\" is not an ISO 4217 currency code");
    assert_eq!(reason(line("1200.5", "usd")), None);
    let q = r#"{"type":"subscription","timestamp":"2024-03-01","account_id":"a","subscription_id":"s","amount":"1","status":"active","quantity":9000000000000000000}"#;
    assert_eq!(
        parse_json_line(q, None, &cfg()).unwrap_err().reason,
        "9000000000000000000 is out of range 0..=1000000000"
    );
}

/// Issue 13, item 1: every field bounded to what every layer below can hold. Each of these
/// was accepted before (the 1600 usage event then broke every columnar refresh).
#[test]
fn hostile_values_are_refused_with_the_field_and_reason() {
    check(
        r#"
{"type":"usage","timestamp":"1600-01-01","account_id":"a","user_id":"u","event":"e"}
{"type":"usage","timestamp":"1899-12-31T23:59:59Z","account_id":"a","user_id":"u","event":"e"}
{"type":"usage","timestamp":"1900-01-01","account_id":"a","user_id":"u","event":"e"}
{"type":"subscription","timestamp":"2024-03-01","account_id":"a","subscription_id":"s","amount":"1","status":"active","term_end":"2262-05-01"}
{"type":"subscription","timestamp":"2024-03-01","account_id":"a","subscription_id":"s","amount":"1","status":"active","cancel_at":"9999-12-31"}
{"type":"task","timestamp":"2024-03-01","account_id":"a","task_id":"t","due":"1000-01-01"}
{"type":"usage","timestamp":"2024-03-01","account_id":"a\u0000b","user_id":"u","event":"e"}
{"type":"usage","timestamp":"2024-03-01","account_id":"   ","user_id":"u","event":"e"}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u\nv","event":"e"}
{"type":"touchpoint","timestamp":"2024-03-01","account_id":"a","kind":"call","note":"two\nlines\tok"}
{"type":"touchpoint","timestamp":"2024-03-01","account_id":"a","kind":"call","note":"nul\u0000"}
{"type":"account","timestamp":"2024-03-01","account_id":"a","attributes":{"region":"EU","region":"US"}}
{"type":"account","timestamp":"2024-03-01","account_id":"a","attributes":{" ":"x"}}
{"type":"account","timestamp":"2024-03-01","account_id":"a","attributes":{"plan":"a\u0000"}}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"e","quantity":1e300}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"e","quantity":1e15}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"e","quantity":1e-400}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"e","quantity":"1e-400"}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"e","quantity":0.0}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"e","quantity":0e-999}
{"type":"invoice","timestamp":"2024-03-01","account_id":"a","invoice_id":"i","amount":1e-400,"status":"paid"}
{"type":"account","timestamp":"2024-03-01","account_id":"a","attributes":{"score":1e-320}}
{"type":"usage","timestamp":"2024-03-01","account_id":"a","user_id":"u","event":"e","quantity":1e400}
"#,
        expect![[r#"
            1: timestamp: 1600-01-01T00:00:00Z is outside the supported range 1900-01-01T00:00:00Z..2200-01-01T00:00:00Z (every store of Tenure, Parquet's nanosecond timestamps included, holds it)
            2: timestamp: 1899-12-31T23:59:59Z is outside the supported range 1900-01-01T00:00:00Z..2200-01-01T00:00:00Z (every store of Tenure, Parquet's nanosecond timestamps included, holds it)
            3: ok usage
            4: term_end: 2262-05-01T00:00:00Z is outside the supported range 1900-01-01T00:00:00Z..2200-01-01T00:00:00Z (every store of Tenure, Parquet's nanosecond timestamps included, holds it)
            5: cancel_at: 9999-12-31T00:00:00Z is outside the supported range 1900-01-01T00:00:00Z..2200-01-01T00:00:00Z (every store of Tenure, Parquet's nanosecond timestamps included, holds it)
            6: due: 1000-01-01T00:00:00Z is outside the supported range 1900-01-01T00:00:00Z..2200-01-01T00:00:00Z (every store of Tenure, Parquet's nanosecond timestamps included, holds it)
            7: account_id: must not contain a NUL character
            8: account_id: must not be blank (only whitespace)
            9: user_id: must not contain control characters (line breaks, tabs...)
            10: ok touchpoint
            11: note: must not contain a NUL character
            12: attributes.region: attribute appears twice
            13: attributes. : the name must not be blank (only whitespace)
            14: attributes.plan: must not contain a NUL character
            15: quantity: 1e300 is over the limit of 1e15 for one event
            16: ok usage
            17: quantity: a number too small to be represented (it would be stored as 0)
            18: quantity: "1e-400" is too small to be represented (it would be stored as 0)
            19: ok usage
            20: ok usage
            21: amount: a number too small to be represented (it would be stored as 0)
            22: score: a number too small to be represented (it would be stored as 0)
            23: malformed JSON: number out of range at line 1 column 100
        "#]],
    );
}

#[test]
fn a_csv_column_given_twice_is_refused() {
    let csv = "type,timestamp,account_id,user_id,event,account_id\nusage,2024-03-01,a,u,e,b\n";
    let err = CsvEvents::new(csv.as_bytes(), None).err().expect("refused");
    assert_eq!(err.to_string(), "cannot read the CSV header: column \"account_id\" appears twice");
    let csv = "type,timestamp,account_id,attributes.x,attributes.x\naccount,2024-03-01,a,1,2\n";
    assert!(CsvEvents::new(csv.as_bytes(), None).is_err());
}

/// Ids are checked byte by byte when ASCII and by character otherwise: both paths refuse
/// control characters, and the length limit counts characters, not bytes.
#[test]
fn id_checks_count_characters_and_find_every_control_character() {
    let usage = |user: &str| {
        let line = serde_json::json!({"type": "usage", "timestamp": "2024-03-01",
            "account_id": "a", "event": "e", "user_id": user})
        .to_string();
        match parse_json_line(&line, None, &cfg()) {
            Ok(_) => "ok".to_string(),
            Err(e) => e.reason,
        }
    };
    let control = "must not contain control characters (line breaks, tabs...)";
    assert_eq!(usage("a\tb"), control);
    assert_eq!(usage("a\u{7f}b"), control);
    // NEL and other C1 controls are not ASCII.
    assert_eq!(usage("é\u{85}"), control);
    assert_eq!(usage("é\u{9f}"), control);
    assert_eq!(usage("é\u{a0}"), "ok");
    // 256 two-byte characters are 512 bytes and within the limit; 257 are not.
    assert_eq!(usage(&"é".repeat(256)), "ok");
    assert_eq!(usage(&"é".repeat(257)), "is 257 characters long, over the limit of 256");
    assert_eq!(usage(&"x".repeat(257)), "is 257 characters long, over the limit of 256");
    assert_eq!(usage(&"x".repeat(256)), "ok");
}
