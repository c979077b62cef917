//! Calendar arithmetic on UTC seconds since the Unix epoch.
//!
//! Seconds (not `tenure_core::Timestamp` microseconds) because the generator writes
//! whole-second text on its hot path; the civil calendar itself is `tenure_core::time`'s.
//! The generator never reads the clock: all times derive from the configured start month.

pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;

pub use tenure_core::time::{civil_from_days, days_from_civil};

/// Timestamp of 00:00 UTC on the first day of month `(year, month) + add`.
pub fn month_start(year: i32, month: u32, add: i64) -> i64 {
    let total = i64::from(year) * 12 + i64::from(month) - 1 + add;
    days_from_civil(total.div_euclid(12), (total.rem_euclid(12) + 1) as u32, 1) * DAY
}

/// "YYYY-MM" label of month `(year, month) + add`.
pub fn month_label(year: i32, month: u32, add: i64) -> String {
    let total = i64::from(year) * 12 + i64::from(month) - 1 + add;
    format!("{:04}-{:02}", total.div_euclid(12), total.rem_euclid(12) + 1)
}

/// Shift a timestamp by whole months keeping day-of-month and time of day. Callers only
/// use days <= 28 for anchors, so no clamping is ever needed; clamp anyway for safety.
pub fn add_months(ts: i64, n: i64) -> i64 {
    let days = ts.div_euclid(DAY);
    let tod = ts.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let total = y * 12 + i64::from(m) - 1 + n;
    let (ny, nm) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u32);
    days_from_civil(ny, nm, d.min(28)) * DAY + tod
}

/// 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday).
pub fn weekday(ts: i64) -> u32 {
    (ts.div_euclid(DAY) + 3).rem_euclid(7) as u32
}

fn push2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

/// Append an RFC 3339 UTC timestamp (`2023-01-05T09:12:00Z`) without allocating.
pub fn write_ts(buf: &mut Vec<u8>, ts: i64) {
    let (y, m, d) = civil_from_days(ts.div_euclid(DAY));
    let tod = ts.rem_euclid(DAY) as u32;
    let y = y.clamp(0, 9999) as u32;
    push2(buf, y / 100);
    push2(buf, y % 100);
    buf.push(b'-');
    push2(buf, m);
    buf.push(b'-');
    push2(buf, d);
    buf.push(b'T');
    push2(buf, tod / 3600);
    buf.push(b':');
    push2(buf, tod / 60 % 60);
    buf.push(b':');
    push2(buf, tod % 60);
    buf.push(b'Z');
}

pub fn ts_string(ts: i64) -> String {
    let mut b = Vec::with_capacity(20);
    write_ts(&mut b, ts);
    String::from_utf8_lossy(&b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_roundtrip() {
        for z in [-1000, 0, 19_000, 19_358, 30_000, 100_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(
            ts_string(month_start(2023, 1, 0) + 4 * DAY + 9 * HOUR + 720),
            "2023-01-05T09:12:00Z"
        );
        assert_eq!(month_label(2023, 11, 3), "2024-02");
        assert_eq!(
            ts_string(add_months(month_start(2023, 12, 0) + 27 * DAY, 2)),
            "2024-02-28T00:00:00Z"
        );
        assert_eq!(weekday(month_start(2024, 1, 0)), 0); // 2024-01-01 was a Monday
    }
}
