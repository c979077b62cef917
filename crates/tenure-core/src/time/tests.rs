//! Tests of civil-time arithmetic, RFC 3339 parsing and period syntax.

use super::*;
use proptest::prelude::*;

#[test]
fn parses_dates_and_instants() {
    assert_eq!(Timestamp::parse("1970-01-01").unwrap(), Timestamp(0));
    assert_eq!(Timestamp::parse("1970-01-02T00:00:01Z").unwrap(), Timestamp(DAY + MICROS));
    assert_eq!(
        Timestamp::parse("2024-03-01T01:00:00+01:00").unwrap(),
        Timestamp::parse("2024-03-01").unwrap()
    );
    assert_eq!(Timestamp::parse("2024-03-01T00:00:00.5Z").unwrap().0 % MICROS, 500_000);
    assert_eq!(
        Timestamp::parse("2024-02-29T23:59:59.123456Z").unwrap().to_string(),
        "2024-02-29T23:59:59.123456Z"
    );
    for bad in [
        "",
        "2024",
        "2024-13-01",
        "2023-02-29",
        "2024-03-01T25:00:00Z",
        "2024-03-01T10:00:00",
        "yesterday",
        "2024-03-01T10:00:00+0100",
    ] {
        assert!(Timestamp::parse(bad).is_err(), "{bad} should not parse");
    }
}

#[test]
fn the_supported_range_is_1900_to_2200() {
    // Independent of the constants: Unix time of 1900-01-01 and 2200-01-01 (`date -d`).
    assert_eq!(EARLIEST, Timestamp::parse("1900-01-01").unwrap());
    assert_eq!(EARLIEST.secs(), -2_208_988_800);
    assert_eq!(END_OF_RANGE.secs(), 7_258_118_400);
    assert!(Timestamp::parse("1900-01-01T00:00:00Z").unwrap().check_range().is_ok());
    assert!(Timestamp::parse("2199-12-31T23:59:59.999999Z").unwrap().check_range().is_ok());
    for out in ["1899-12-31T23:59:59.999999Z", "1600-01-01", "2200-01-01", "9999-12-31"] {
        let t = Timestamp::parse(out).unwrap();
        let e = t.check_range().unwrap_err().to_string();
        assert!(e.starts_with(&t.to_string()) && e.contains("1900-01-01"), "{out}: {e}");
    }
    // Arrow's nanosecond timestamps (i64 ns since the epoch) hold the whole range.
    assert!(EARLIEST.0.checked_mul(1000).is_some() && END_OF_RANGE.0.checked_mul(1000).is_some());
}

#[test]
fn periods() {
    let q = Period::parse("2024-Q1").unwrap();
    assert_eq!(q.to_string(), "2024-01-01T00:00:00Z..2024-04-01T00:00:00Z");
    assert_eq!(Period::parse("2024-02").unwrap().days(), 29.0);
    assert_eq!(Period::parse("2023").unwrap().whole_months(), Some(12));
    let r = Period::parse("2023-01..2024-01").unwrap();
    let months = r.split(PeriodUnit::Month);
    assert_eq!(months.len(), 12);
    assert_eq!(months[11].to_string(), "2023-12-01T00:00:00Z..2024-01-01T00:00:00Z");
    assert_eq!(r.split(PeriodUnit::Quarter).len(), 4);
    assert!(Period::parse("2024-Q5").is_err());
    assert!(Period::parse("2024-03..2024-01").is_err());
    assert_eq!(Timestamp::parse("2024-01-31").unwrap().add_months(1).date_string(), "2024-02-29");
    // 2024-03-06 is a Wednesday; its week starts on Monday 2024-03-04.
    assert_eq!(
        PeriodUnit::Week.floor(Timestamp::parse("2024-03-06T10:00:00Z").unwrap()).date_string(),
        "2024-03-04"
    );
    // Before year 1 a unit start is not asked for: none, down to the earliest instant.
    let year_1 = Timestamp::from_ymd(1, 1, 1).unwrap();
    let later = Timestamp(year_1.0 + 40 * DAY + 5);
    assert_eq!(PeriodUnit::Month.checked_floor(later), Some(Timestamp(year_1.0 + 31 * DAY)));
    assert_eq!(PeriodUnit::Month.checked_floor(year_1), Some(year_1));
    assert_eq!(PeriodUnit::Month.checked_floor(Timestamp(year_1.0 - 1)), None);
    assert_eq!(PeriodUnit::Year.checked_floor(Timestamp::MIN), None);
    let t = Timestamp::parse("2024-03-06T10:00:00Z").unwrap();
    assert_eq!(PeriodUnit::Quarter.checked_floor(t), Some(PeriodUnit::Quarter.floor(t)));
}

proptest! {
    #[test]
    fn civil_round_trip(days in -800_000i64..2_900_000) {
        let (y, m, d) = civil_from_days(days);
        prop_assert_eq!(days_from_civil(y, m, d), days);
    }

    #[test]
    fn display_parses_back(micros in 0i64..253_402_300_799_000_000) {
        let t = Timestamp(micros);
        prop_assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
    }
}
