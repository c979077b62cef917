//! Parquet files written with the parquet crate's `ArrowWriter`, read back as events or
//! rejections: every accepted column type, nulls, time units, decimals, attributes, and the
//! files refused whole.

use super::*;
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_buffer::i256;
use expect_test::{Expect, expect};
use parquet::arrow::ArrowWriter;
use std::path::PathBuf;
use tenure_core::event::EventBody;

/// 2024-03-01T10:00:00.123456Z, in microseconds since the epoch (worked out by hand).
const T_MICROS: i64 = 1_709_287_200_123_456;
/// 2024-03-01, in days since the epoch.
const DAY_2024_03_01: i32 = 19_783;

fn cfg() -> IngestConfig {
    IngestConfig::defaults(Some(Timestamp::parse("2024-06-01T00:00:00Z").unwrap()))
}

fn col(a: impl Array + 'static) -> ArrayRef {
    Arc::new(a)
}

/// Writes the columns as a Parquet file named `name` in a fresh directory.
fn file(name: &str, columns: Vec<(&str, ArrayRef)>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    (dir, path)
}

/// Every row's outcome: `ROW: TIMESTAMP ACCOUNT BODY` or the rejection.
fn rows(path: &Path, kind: Option<EventKind>) -> Vec<String> {
    let mut src = ParquetRows::open(path, kind).unwrap();
    let mut out = Vec::new();
    while let Some((line, r)) = src.next_row(&cfg()) {
        out.push(match r {
            Ok(e) => tidy(&format!(
                "{line}: {} {} {:?}",
                e.ts,
                e.account.as_deref().unwrap_or("-"),
                e.body
            )),
            Err(r) => r.to_string(),
        });
    }
    out
}

/// Debug output made readable: `Timestamp(micros)` as RFC 3339, `Currency([85, 83, 68])`
/// as its code.
fn tidy(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("Timestamp(").into_iter().chain(rest.find("Currency([")).min() {
        out.push_str(&rest[..i]);
        let end = i + rest[i..].find(')').unwrap() + 1;
        let inner = &rest[i..end];
        if let Some(n) = inner.strip_prefix("Timestamp(") {
            out.push_str(&Timestamp(n.trim_end_matches(')').parse().unwrap()).to_string());
        } else {
            let bytes = inner.trim_start_matches("Currency([").trim_end_matches("])");
            out.extend(bytes.split(", ").map(|b| char::from(b.parse::<u8>().unwrap())));
        }
        rest = &rest[end..];
    }
    out + rest
}

fn check(columns: Vec<(&str, ArrayRef)>, kind: Option<EventKind>, expect: Expect) {
    let (_dir, path) = file("events.parquet", columns);
    expect.assert_eq(&(rows(&path, kind).join("\n") + "\n"));
}

fn open_error(columns: Vec<(&str, ArrayRef)>, kind: Option<EventKind>) -> String {
    let (_dir, path) = file("events.parquet", columns);
    match ParquetRows::open(&path, kind) {
        Ok(_) => panic!("the file was accepted"),
        Err(e) => e.to_string(),
    }
}

fn strs(v: &[&str]) -> ArrayRef {
    col(StringArray::from(v.to_vec()))
}

#[test]
fn typed_usage_columns_of_each_string_and_number_kind() {
    check(
        vec![
            ("type", strs(&["usage", "usage", "usage"])),
            ("timestamp", col(TimestampMicrosecondArray::from(vec![T_MICROS; 3]))),
            // Integer ids are read as their digits (database exports have them).
            ("account_id", col(Int64Array::from(vec![42, 43, 44]))),
            ("user_id", col(LargeStringArray::from(vec!["u1", "u2", "u3"]))),
            ("event", col(StringViewArray::from(vec!["login", "export", "export"]))),
            (
                "feature",
                col(vec!["login", "reports", "reports"]
                    .into_iter()
                    .collect::<DictionaryArray<Int32Type>>()),
            ),
            ("quantity", col(Float64Array::from(vec![1.0, 2.5, 1e15]))),
            ("unrelated", col(BooleanArray::from(vec![true, false, true]))),
        ],
        None,
        expect![[r#"
            1: 2024-03-01T10:00:00.123456Z 42 Usage { user_id: "u1", event: "login", feature: None, quantity: 1.0 }
            2: 2024-03-01T10:00:00.123456Z 43 Usage { user_id: "u2", event: "export", feature: Some("reports"), quantity: 2.5 }
            3: 2024-03-01T10:00:00.123456Z 44 Usage { user_id: "u3", event: "export", feature: Some("reports"), quantity: 1000000000000000.0 }
        "#]],
    );
    // Integer and unsigned quantities of every width; a float32 is its shortest text.
    let ts = || ("timestamp", strs(&["2024-03-01", "2024-03-01"]));
    let base = |q: ArrayRef| {
        vec![
            ts(),
            ("account_id", strs(&["a", "a"])),
            ("user_id", strs(&["u", "u"])),
            ("event", strs(&["e", "e"])),
            ("quantity", q),
        ]
    };
    for (q, want) in [
        (col(Int8Array::from(vec![-1, 7])), ["quantity: must not be negative, got -1", "7.0"]),
        (col(Int16Array::from(vec![300, 7])), ["300.0", "7.0"]),
        (col(Int32Array::from(vec![70_000, 7])), ["70000.0", "7.0"]),
        (col(UInt8Array::from(vec![255, 7])), ["255.0", "7.0"]),
        (col(UInt16Array::from(vec![65_535, 7])), ["65535.0", "7.0"]),
        (col(UInt32Array::from(vec![4_000_000_000, 7])), ["4000000000.0", "7.0"]),
        (
            col(UInt64Array::from(vec![u64::MAX, 7])),
            ["quantity: 1.8446744073709552e19 is over the limit of 1e15 for one event", "7.0"],
        ),
        (col(Float32Array::from(vec![0.1, 7.0])), ["0.1", "7.0"]),
        (
            col(Float64Array::from(vec![f64::NAN, f64::INFINITY])),
            [
                "quantity: must be a finite number, got NaN",
                "quantity: must be a finite number, got inf",
            ],
        ),
    ] {
        let (_dir, path) = file("usage.parquet", base(q));
        let got: Vec<String> = rows(&path, Some(EventKind::Usage))
            .iter()
            .map(|r| match r.split_once("quantity: ") {
                Some((_, q)) if r.contains("Usage") => q.trim_end_matches(" }").to_string(),
                _ => r.split_once(": ").unwrap().1.to_string(),
            })
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn all_string_columns_read_like_csv_and_nulls_are_absent() {
    check(
        vec![
            ("type", strs(&["subscription", "subscription", "subscription", ""])),
            (
                "timestamp",
                strs(&["2024-03-01T09:30:00+02:00", "2024-03-02", "2024-03-03", "2024-03-04"]),
            ),
            (
                "account_id",
                col(StringArray::from(vec![Some("acme"), None, Some("beta"), Some("c")])),
            ),
            ("subscription_id", strs(&["s1", "s2", "s3", "s4"])),
            ("plan", col(StringArray::from(vec![Some("pro"), Some("pro"), None, Some("")]))),
            ("quantity", strs(&["25", "1", "", "3"])),
            ("amount", strs(&["1200.50", "10", "99.99", "1"])),
            ("currency", col(StringArray::from(vec![Some("eur"), None, None, None]))),
            ("interval", strs(&["year", "month", "month", "month"])),
            ("status", strs(&["active", "active", "active", "active"])),
            ("term_start", col(StringArray::from(vec![Some("2024-03-01"), None, None, None]))),
            ("term_end", col(StringArray::from(vec![Some("2025-03-01"), None, None, None]))),
        ],
        // The file's type fills in an empty `type` cell, as in CSV.
        Some(EventKind::Subscription),
        expect![[r#"
            1: 2024-03-01T07:30:00Z acme Subscription(Subscription { subscription_id: "s1", product: None, plan: Some("pro"), kind: Product, quantity: 25, amount: Money { minor: 120050, currency: EUR }, interval_months: 12, status: Active, term_start: Some(2024-03-01T00:00:00Z), term_end: Some(2025-03-01T00:00:00Z), cancel_reason: None, cancel_at: None })
            2: account_id: missing required field
            3: 2024-03-03T00:00:00Z beta Subscription(Subscription { subscription_id: "s3", product: None, plan: None, kind: Product, quantity: 1, amount: Money { minor: 9999, currency: USD }, interval_months: 1, status: Active, term_start: None, term_end: None, cancel_reason: None, cancel_at: None })
            4: 2024-03-04T00:00:00Z c Subscription(Subscription { subscription_id: "s4", product: None, plan: None, kind: Product, quantity: 3, amount: Money { minor: 100, currency: USD }, interval_months: 1, status: Active, term_start: None, term_end: None, cancel_reason: None, cancel_at: None })
        "#]],
    );
}

#[test]
fn timestamps_of_every_unit_and_zone_are_the_same_instant() {
    let secs = T_MICROS / 1_000_000;
    let millis = T_MICROS / 1_000;
    // 789 ns past the microsecond: dropped, as digits past microseconds in text are.
    let nanos = T_MICROS * 1_000 + 789;
    let t = |a: ArrayRef| {
        let (_dir, path) = file(
            "milestones.parquet",
            vec![("timestamp", a), ("account_id", strs(&["a"])), ("name", strs(&["first_value"]))],
        );
        rows(&path, Some(EventKind::Milestone)).join("")
    };
    let ok = |ts: &str| format!("1: {ts} a Milestone {{ name: \"first_value\" }}");
    let micro = ok("2024-03-01T10:00:00.123456Z");
    assert_eq!(t(col(TimestampNanosecondArray::from(vec![nanos]))), micro);
    assert_eq!(t(col(TimestampMicrosecondArray::from(vec![T_MICROS]))), micro);
    assert_eq!(
        t(col(TimestampMillisecondArray::from(vec![millis]))),
        ok("2024-03-01T10:00:00.123000Z")
    );
    assert_eq!(t(col(TimestampSecondArray::from(vec![secs]))), ok("2024-03-01T10:00:00Z"));
    // A zone only says how to display the instant: the stored value is UTC.
    let zoned = TimestampMicrosecondArray::from(vec![T_MICROS]).with_timezone("+02:00");
    assert_eq!(t(col(zoned)), micro);
    let zoned = TimestampNanosecondArray::from(vec![nanos]).with_timezone("America/New_York");
    assert_eq!(t(col(zoned)), micro);
    // Before 1970 the nanoseconds are floored too: 500 ns before the epoch is the
    // microsecond before it, as "1969-12-31T23:59:59.9999995Z" reads.
    assert_eq!(
        t(col(TimestampNanosecondArray::from(vec![-500]))),
        ok("1969-12-31T23:59:59.999999Z")
    );
    assert_eq!(
        Timestamp::parse("1969-12-31T23:59:59.9999995Z").unwrap().to_string(),
        "1969-12-31T23:59:59.999999Z"
    );
    // Outside 1900..2200 (here 2300-01-01 in seconds) the range rule applies.
    assert_eq!(
        t(col(TimestampSecondArray::from(vec![10_413_792_000]))),
        "1: timestamp: 2300-01-01T00:00:00Z is outside the supported range \
         1900-01-01T00:00:00Z..2200-01-01T00:00:00Z (every store of Tenure, Parquet's \
         nanosecond timestamps included, holds it)"
    );
    // Seconds so large that microseconds overflow are out of range, not wrapped around.
    assert!(
        t(col(TimestampSecondArray::from(vec![i64::MAX / 10])))
            .contains("outside the supported range")
    );
    // Dates are midnight UTC; a Date64 with a time part is floored to its day.
    assert_eq!(t(col(Date32Array::from(vec![DAY_2024_03_01]))), ok("2024-03-01T00:00:00Z"));
    let ms = i64::from(DAY_2024_03_01) * 86_400_000;
    assert_eq!(t(col(Date64Array::from(vec![ms]))), ok("2024-03-01T00:00:00Z"));
}

#[test]
fn subscription_dates_and_decimal_money_are_exact() {
    check(
        vec![
            ("timestamp", col(Date32Array::from(vec![DAY_2024_03_01; 6]))),
            ("account_id", strs(&["a", "b", "c", "d", "e", "f"])),
            ("subscription_id", strs(&["s1", "s2", "s3", "s4", "s5", "s6"])),
            ("status", strs(&["active"; 6])),
            ("quantity", col(UInt16Array::from(vec![25, 1, 1, 1, 1, 1]))),
            (
                "amount",
                col(Decimal128Array::from(vec![
                    120_050,
                    1_234_500,
                    1_234_501,
                    100_000_000_000_010,
                    1,
                    -100,
                ])
                .with_precision_and_scale(20, 3)
                .unwrap()),
            ),
            ("currency", strs(&["usd", "eur", "usd", "usd", "jpy", "usd"])),
            (
                "term_start",
                col(Date32Array::from(vec![Some(DAY_2024_03_01), None, None, None, None, None])),
            ),
            (
                "term_end",
                col(Date32Array::from(vec![
                    Some(DAY_2024_03_01 + 365),
                    None,
                    None,
                    None,
                    None,
                    None,
                ])),
            ),
        ],
        Some(EventKind::Subscription),
        expect![[r#"
            1: 2024-03-01T00:00:00Z a Subscription(Subscription { subscription_id: "s1", product: None, plan: None, kind: Product, quantity: 25, amount: Money { minor: 12005, currency: USD }, interval_months: 1, status: Active, term_start: Some(2024-03-01T00:00:00Z), term_end: Some(2025-03-01T00:00:00Z), cancel_reason: None, cancel_at: None })
            2: 2024-03-01T00:00:00Z b Subscription(Subscription { subscription_id: "s2", product: None, plan: None, kind: Product, quantity: 1, amount: Money { minor: 123450, currency: EUR }, interval_months: 1, status: Active, term_start: None, term_end: None, cancel_reason: None, cancel_at: None })
            3: amount: "1234.501" has more decimal places than USD allows
            4: amount: 100000000000.010 is over the limit of 100000000000.00 USD
            5: amount: "0.001" has more decimal places than JPY allows
            6: amount: must not be negative, got -0.100
        "#]],
    );
    // Every decimal width: the digits, exactly.
    let money = |a: ArrayRef| {
        let (_dir, path) = file(
            "invoices.parquet",
            vec![
                ("timestamp", strs(&["2024-03-01"])),
                ("account_id", strs(&["a"])),
                ("invoice_id", strs(&["i"])),
                ("status", strs(&["paid"])),
                ("amount", a),
            ],
        );
        let out = rows(&path, Some(EventKind::Invoice)).join("");
        out.split_once("minor: ")
            .map_or(out.clone(), |(_, m)| m.split(',').next().unwrap().to_string())
    };
    let d256 =
        Decimal256Array::from(vec![i256::from_i128(120_050)]).with_precision_and_scale(40, 2);
    assert_eq!(money(col(d256.unwrap())), "120050");
    let d = Decimal64Array::from(vec![5]).with_precision_and_scale(10, 1).unwrap();
    assert_eq!(money(col(d)), "50");
    let d = Decimal32Array::from(vec![7]).with_precision_and_scale(9, 0).unwrap();
    assert_eq!(money(col(d)), "700");
    // Integers are whole major units; floats are read as JSON numbers are: the shortest
    // text of the double, so 0.1 + 0.2 is refused rather than rounded.
    assert_eq!(money(col(Int64Array::from(vec![1200]))), "120000");
    assert_eq!(money(col(Float64Array::from(vec![1200.5]))), "120050");
    assert_eq!(
        money(col(Float64Array::from(vec![0.1 + 0.2]))),
        r#"1: amount: "0.30000000000000004" has more decimal places than USD allows"#
    );
    assert_eq!(
        money(col(Float64Array::from(vec![1e14]))),
        "1: amount: 100000000000000 is too large to be exact as a JSON number; send it as a string"
    );
}

#[test]
fn a_bad_row_names_its_row_number_and_field() {
    check(
        vec![
            ("type", strs(&["ticket", "ticket", "ticket", "purchase"])),
            ("timestamp", strs(&["2024-03-01", "2024-03-01", "2030-01-01", "2024-03-01"])),
            ("account_id", strs(&["a", "a", "a", "a"])),
            ("ticket_id", strs(&["t1", "t2", "t3", "t4"])),
            ("status", strs(&["opened", "lost", "opened", "opened"])),
            ("csat", col(Int32Array::from(vec![Some(9), None, None, None]))),
        ],
        None,
        expect![[r#"
            1: 2024-03-01T00:00:00Z a Ticket { ticket_id: "t1", status: Opened, category: None, severity: None, cost: None, csat: Some(9) }
            2: status: unknown value "lost" (expected opened | closed | reopened)
            3: timestamp: 2030-01-01T00:00:00Z is 2040.0 days in the future (beyond the allowed skew of 1 day)
            4: type: unknown type "purchase" (expected account | contact | subscription | invoice | usage | ticket | survey_sent | survey_response | email | web_visit | touchpoint | milestone | success_objective | assessment | change_request | cost | alert | task | forecast_override)
        "#]],
    );
    // A row over the line limit, counting its text.
    let mut c = cfg();
    c.max_line_bytes = 100;
    let (_dir, path) = file(
        "milestones.parquet",
        vec![
            ("timestamp", strs(&["2024-03-01", "2024-03-01"])),
            ("account_id", strs(&["a", "a"])),
            ("name", col(StringArray::from(vec!["first_value".to_string(), "x".repeat(100)]))),
        ],
    );
    let mut src = ParquetRows::open(&path, Some(EventKind::Milestone)).unwrap();
    assert!(src.next_row(&c).unwrap().1.is_ok());
    let (line, r) = src.next_row(&c).unwrap();
    assert_eq!(
        (line, r.unwrap_err().reason.as_str()),
        (2, "row is 111 bytes, over the limit of 100")
    );
    assert!(src.next_row(&c).is_none());
}

#[test]
fn attribute_columns_keep_strings_numbers_and_booleans() {
    check(
        vec![
            ("timestamp", strs(&["2024-03-01", "2024-03-01"])),
            ("account_id", strs(&["a", "b"])),
            ("name", col(StringArray::from(vec![Some("Acme"), None]))),
            ("attributes.segment", col(StringArray::from(vec![Some("smb"), None]))),
            ("attributes.seats", col(Int64Array::from(vec![Some(25), Some(3)]))),
            ("attributes.score", col(Float64Array::from(vec![Some(0.75), None]))),
            (
                "attributes.arr",
                col(Decimal128Array::from(vec![Some(1_200_050), None])
                    .with_precision_and_scale(12, 2)
                    .unwrap()),
            ),
            ("attributes.enterprise", col(BooleanArray::from(vec![Some(true), Some(false)]))),
            ("attributes.signed", col(Date32Array::from(vec![Some(DAY_2024_03_01), None]))),
            ("attributes.seen", col(TimestampMicrosecondArray::from(vec![Some(T_MICROS), None]))),
        ],
        Some(EventKind::Account),
        expect![[r#"
            1: 2024-03-01T00:00:00Z a Account { name: Some("Acme"), attributes: [("arr", Num("12000.50")), ("enterprise", Bool(true)), ("score", Num("0.75")), ("seats", Num("25")), ("seen", Str("2024-03-01T10:00:00.123456Z")), ("segment", Str("smb")), ("signed", Str("2024-03-01"))] }
            2: 2024-03-01T00:00:00Z b Account { name: None, attributes: [("enterprise", Bool(false)), ("seats", Num("3"))] }
        "#]],
    );
}

#[test]
fn files_that_cannot_be_read_as_events_are_refused_whole() {
    let ok = || vec![("timestamp", strs(&["2024-03-01"])), ("account_id", strs(&["a"]))];
    let with = |name, a: ArrayRef| {
        let mut c = ok();
        c.push((name, a));
        c
    };
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1)])]);
    expect!["column `quantity` is List(Int64): not a type Tenure reads (string, integer, floating-point, boolean, timestamp, date or decimal columns)"]
        .assert_eq(&open_error(with("quantity", col(list)), Some(EventKind::Usage)));
    let binary = BinaryArray::from(vec![b"x".as_ref()]);
    expect![[r#"column `attributes.logo` is Binary: not a type Tenure reads (string, integer, floating-point, boolean, timestamp, date or decimal columns)"#]]
        .assert_eq(&open_error(with("attributes.logo", col(binary)), Some(EventKind::Account)));
    expect![[r#"column `user_id` is Float64: this field is text or an id: use a string or integer column"#]]
        .assert_eq(&open_error(with("user_id", col(Float64Array::from(vec![1.0]))), Some(EventKind::Usage)));
    expect![[r#"column `period_end` is Int64: this field is an instant: use a timestamp, date or string column"#]]
        .assert_eq(&open_error(with("period_end", col(Int64Array::from(vec![1]))), Some(EventKind::Cost)));
    expect![[r#"column `amount` is Boolean: this field is an amount: use a decimal, integer, floating-point or string column"#]]
        .assert_eq(&open_error(with("amount", col(BooleanArray::from(vec![true]))), Some(EventKind::Invoice)));
    expect![[r#"column `quantity` is Timestamp(µs): this field is a number: use an integer, decimal, floating-point or string column"#]]
        .assert_eq(&open_error(with("quantity", col(TimestampMicrosecondArray::from(vec![1]))), Some(EventKind::Usage)));
    expect![[r#"column `account_id` appears twice"#]]
        .assert_eq(&open_error(with("account_id", strs(&["b"])), Some(EventKind::Account)));
    expect![[r#"the file has no `type` column and its type is not known: name the file after its type (subscriptions.parquet) or pass --type"#]]
        .assert_eq(&open_error(ok(), None));
    expect![[r#"the file has no column that Tenure knows (first columns: when,who)"#]]
        .assert_eq(&open_error(vec![("when", strs(&["2024-03-01"])), ("who", strs(&["a"]))], None));
    // A column that is no field is ignored whatever its type, as an unknown JSON field is.
    let (_dir, path) =
        file("accounts.parquet", with("tags", col(BinaryArray::from(vec![b"x".as_ref()]))));
    assert_eq!(rows(&path, Some(EventKind::Account)).len(), 1);
    // Not Parquet at all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    std::fs::write(&path, "{\"type\":\"usage\"}\n").unwrap();
    let err = ParquetRows::open(&path, None).err().unwrap().to_string();
    assert!(err.starts_with("not a readable Parquet file: "), "{err}");
}

/// Rows past the first record batch keep their numbers and their order, and the whole file
/// is read once (position and total are in rows).
#[test]
fn large_files_are_read_in_order_across_batches() {
    let n = BATCH_ROWS * 2 + 1000;
    let bad = BATCH_ROWS + 7; // a 0-based index in the second batch
    let users: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let mut quantity = vec![1i64; n];
    quantity[bad] = -1;
    let (_dir, path) = file(
        "usage.parquet",
        vec![
            ("timestamp", col(TimestampMicrosecondArray::from(vec![T_MICROS; n]))),
            ("account_id", strs(&vec!["a"; n])),
            ("user_id", col(StringArray::from(users))),
            ("event", strs(&vec!["login"; n])),
            ("quantity", col(Int64Array::from(quantity))),
        ],
    );
    let mut src = ParquetRows::open(&path, Some(EventKind::Usage)).unwrap();
    assert_eq!(src.total(), Some(n as u64));
    let mut seen = 0;
    while let Some((line, r)) = src.next_row(&cfg()) {
        seen += 1;
        assert_eq!(line, seen);
        assert_eq!(src.position(), seen);
        match r {
            Ok(e) => {
                let EventBody::Usage { user_id, .. } = e.body else { panic!("not usage") };
                assert_eq!(user_id, format!("u{}", line - 1));
            }
            Err(r) => {
                assert_eq!(line, bad as u64 + 1);
                assert_eq!(
                    r.to_string(),
                    format!("{}: quantity: must not be negative, got -1", bad + 1)
                );
            }
        }
    }
    assert_eq!(seen, n as u64);
    // Dropped half-way: the reading thread stops.
    let mut src = ParquetRows::open(&path, Some(EventKind::Usage)).unwrap();
    assert!(src.next_row(&cfg()).is_some());
    drop(src);
}

#[test]
fn decimal_text_places_the_point() {
    let cases = [("-12345", 2, "-123.45"), ("5", 3, "0.005"), ("-5", 3, "-0.005"), ("7", 0, "7")];
    for (digits, scale, want) in cases {
        assert_eq!(decimal_text(digits.to_string(), scale), want);
    }
    // Parquet has no negative scales, but Arrow has: 12 at scale -2 is 1200.
    assert_eq!(decimal_text("12".into(), -2), "1200");
    assert_eq!(decimal_text("0".into(), -2), "0");
}
