//! Instants (UTC, microsecond precision) and half-open report periods.
//!
//! Hand-written civil-calendar arithmetic (Howard Hinnant's algorithms) keeps the hot import
//! path free of a date library and makes every conversion exact and testable.

use std::fmt;

/// Microseconds per second.
pub const MICROS: i64 = 1_000_000;
/// Microseconds per day.
pub const DAY: i64 = 86_400 * MICROS;

/// An instant in UTC, as microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not an RFC 3339 timestamp or YYYY-MM-DD date: {0:?}")]
    Syntax(String),
    #[error("date out of range: {0:?}")]
    Range(String),
    #[error("not a period (expected YYYY, YYYY-Qn, YYYY-MM, YYYY-MM-DD or A..B): {0:?}")]
    Period(String),
    #[error("empty period: {0:?} (its end is not after its start)")]
    EmptyPeriod(String),
    #[error(
        "{0} is outside the supported range 1900-01-01T00:00:00Z..2200-01-01T00:00:00Z \
         (every store of Tenure, Parquet's nanosecond timestamps included, holds it)"
    )]
    OutOfBounds(Timestamp),
}

/// The earliest instant an event may carry: 1900-01-01T00:00:00Z.
///
/// Every layer below must hold every accepted instant: Arrow's and DataFusion's nanosecond
/// timestamps end at 1677-09-21 and 2262-04-11, so the contract keeps well inside them
/// (a subscription business has no events before 1900, and contract terms a century ahead
/// are still representable).
pub const EARLIEST: Timestamp = Timestamp(-2_208_988_800 * MICROS);
/// The first instant past the supported range: 2200-01-01T00:00:00Z.
pub const END_OF_RANGE: Timestamp = Timestamp(7_258_118_400 * MICROS);

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

impl Timestamp {
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// Midnight UTC of a date; `None` for an invalid date.
    pub fn from_ymd(y: i64, m: u32, d: u32) -> Option<Timestamp> {
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || !(1..=9999).contains(&y) {
            return None;
        }
        Some(Timestamp(days_from_civil(y, m, d) * DAY))
    }

    /// `Ok` for an instant within [`EARLIEST`]..[`END_OF_RANGE`], the range every field of an
    /// event must fall in.
    pub fn check_range(self) -> Result<Timestamp, TimeError> {
        if (EARLIEST..END_OF_RANGE).contains(&self) {
            Ok(self)
        } else {
            Err(TimeError::OutOfBounds(self))
        }
    }

    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs * MICROS)
    }

    pub fn secs(self) -> i64 {
        self.0.div_euclid(MICROS)
    }

    /// Day number since the epoch (floor).
    pub fn day(self) -> i64 {
        self.0.div_euclid(DAY)
    }

    pub fn ymd(self) -> (i64, u32, u32) {
        civil_from_days(self.day())
    }

    pub fn add_days(self, days: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(days.saturating_mul(DAY)))
    }

    /// Adds calendar months, clamping the day of month (Jan 31 + 1 month = Feb 28/29).
    pub fn add_months(self, months: i64) -> Timestamp {
        let (y, m, d) = self.ymd();
        let tod = self.0.rem_euclid(DAY);
        let idx = y * 12 + (m as i64 - 1) + months;
        let (ny, nm) = (idx.div_euclid(12), (idx.rem_euclid(12) + 1) as u32);
        let nd = d.min(days_in_month(ny, nm));
        Timestamp(days_from_civil(ny, nm, nd) * DAY + tod)
    }

    /// Parses RFC 3339 (`2024-03-01T12:00:00Z`, offsets, fractional seconds) or a plain
    /// `YYYY-MM-DD` date, which means midnight UTC.
    pub fn parse(s: &str) -> Result<Timestamp, TimeError> {
        let err = || TimeError::Syntax(s.to_string());
        let b = s.as_bytes();
        if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        let y = digits(&b[0..4]).ok_or_else(err)? as i64;
        let mo = digits(&b[5..7]).ok_or_else(err)?;
        let d = digits(&b[8..10]).ok_or_else(err)?;
        let date = Timestamp::from_ymd(y, mo, d).ok_or_else(|| TimeError::Range(s.to_string()))?;
        if b.len() == 10 {
            return Ok(date);
        }
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return Err(err());
        }
        let h = digits(&b[11..13]).ok_or_else(err)? as i64;
        let mi = digits(&b[14..16]).ok_or_else(err)? as i64;
        let se = digits(&b[17..19]).ok_or_else(err)? as i64;
        // 60 is accepted as a leap second and folded onto the next second, as most systems do.
        if h > 23 || mi > 59 || se > 60 {
            return Err(TimeError::Range(s.to_string()));
        }
        let mut i = 19;
        let mut frac = 0i64;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    frac = frac * 10 + (b[i] - b'0') as i64;
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return Err(err());
            }
            for _ in n..6 {
                frac *= 10;
            }
        }
        let offset = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = digits(&b[i + 1..i + 3]).ok_or_else(err)? as i64;
                let om = digits(&b[i + 4..i + 6]).ok_or_else(err)? as i64;
                if oh > 23 || om > 59 {
                    return Err(TimeError::Range(s.to_string()));
                }
                let o = (oh * 3600 + om * 60) * MICROS;
                if *sign == b'+' { o } else { -o }
            }
            _ => return Err(err()),
        };
        Ok(Timestamp(date.0 + (h * 3600 + mi * 60 + se) * MICROS + frac - offset))
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC; whole seconds unless there is a fraction; a bare date at midnight is
    /// still printed with its time so the output always parses as an instant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        let tod = self.0.rem_euclid(DAY);
        let secs = tod / MICROS;
        let frac = tod % MICROS;
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        if frac != 0 {
            write!(f, ".{frac:06}")?;
        }
        f.write_str("Z")
    }
}

impl Timestamp {
    /// `YYYY-MM-DD` of the instant's UTC day.
    pub fn date_string(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Calendar units for periods and series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeriodUnit {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl PeriodUnit {
    pub fn parse(s: &str) -> Option<PeriodUnit> {
        Some(match s {
            "day" | "daily" => PeriodUnit::Day,
            "week" | "weekly" => PeriodUnit::Week,
            "month" | "monthly" => PeriodUnit::Month,
            "quarter" | "quarterly" => PeriodUnit::Quarter,
            "year" | "yearly" | "annual" => PeriodUnit::Year,
            _ => return None,
        })
    }

    /// The start of the unit containing `t` (weeks start on Monday).
    pub fn floor(self, t: Timestamp) -> Timestamp {
        let (y, m, _) = t.ymd();
        let day = t.day();
        let d = match self {
            PeriodUnit::Day => day,
            // 1970-01-01 was a Thursday: shift so that Monday is day 0 of a week.
            PeriodUnit::Week => day - (day + 3).rem_euclid(7),
            PeriodUnit::Month => days_from_civil(y, m, 1),
            PeriodUnit::Quarter => days_from_civil(y, (m - 1) / 3 * 3 + 1, 1),
            PeriodUnit::Year => days_from_civil(y, 1, 1),
        };
        Timestamp(d * DAY)
    }

    /// [`floor`](Self::floor), or `None` for an instant before year 1 (an old log may hold
    /// some): the unit start of the earliest instants is not a `Timestamp`.
    pub fn checked_floor(self, t: Timestamp) -> Option<Timestamp> {
        const YEAR_1: Timestamp = Timestamp(-62_135_596_800_000_000);
        (t >= YEAR_1).then(|| self.floor(t))
    }

    /// `t` moved forward by `n` units.
    pub fn advance(self, t: Timestamp, n: i64) -> Timestamp {
        match self {
            PeriodUnit::Day => t.add_days(n),
            PeriodUnit::Week => t.add_days(7 * n),
            PeriodUnit::Month => t.add_months(n),
            PeriodUnit::Quarter => t.add_months(3 * n),
            PeriodUnit::Year => t.add_months(12 * n),
        }
    }

    /// A short label for the unit starting at `t` (`2024-03`, `2024-Q1`, `2024`, `2024-03-04`).
    pub fn label(self, t: Timestamp) -> String {
        let (y, m, _) = t.ymd();
        match self {
            PeriodUnit::Day | PeriodUnit::Week => t.date_string(),
            PeriodUnit::Month => format!("{y:04}-{m:02}"),
            PeriodUnit::Quarter => format!("{y:04}-Q{}", (m - 1) / 3 + 1),
            PeriodUnit::Year => format!("{y:04}"),
        }
    }
}

/// A half-open interval `[start, end)` of UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Period {
    pub fn new(start: Timestamp, end: Timestamp) -> Period {
        Period { start, end }
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// Parses `2024` (year), `2024-Q1`, `2024-03` (month), `2024-03-15` (day), or `A..B`
    /// where `A` and `B` are any of those: from the start of `A` to the start of `B`.
    pub fn parse(s: &str) -> Result<Period, TimeError> {
        if let Some((a, b)) = s.split_once("..") {
            let a = Period::parse_single(a.trim())?;
            let b = Period::parse_single(b.trim())?;
            if b.start <= a.start {
                return Err(TimeError::EmptyPeriod(s.to_string()));
            }
            return Ok(Period::new(a.start, b.start));
        }
        Period::parse_single(s.trim())
    }

    fn parse_single(s: &str) -> Result<Period, TimeError> {
        let err = || TimeError::Period(s.to_string());
        let b = s.as_bytes();
        let year = |b: &[u8]| digits(b).filter(|_| b.len() == 4).map(|y| y as i64);
        match b.len() {
            4 => {
                let y = year(b).ok_or_else(err)?;
                let start = Timestamp::from_ymd(y, 1, 1).ok_or_else(err)?;
                Ok(Period::new(start, PeriodUnit::Year.advance(start, 1)))
            }
            7 if b[4] == b'-' && (b[5] == b'Q' || b[5] == b'q') => {
                let y = year(&b[..4]).ok_or_else(err)?;
                let q = digits(&b[6..7]).filter(|q| (1..=4).contains(q)).ok_or_else(err)?;
                let start = Timestamp::from_ymd(y, (q - 1) * 3 + 1, 1).ok_or_else(err)?;
                Ok(Period::new(start, PeriodUnit::Quarter.advance(start, 1)))
            }
            7 if b[4] == b'-' => {
                let y = year(&b[..4]).ok_or_else(err)?;
                let m = digits(&b[5..7]).ok_or_else(err)?;
                let start = Timestamp::from_ymd(y, m, 1).ok_or_else(err)?;
                Ok(Period::new(start, PeriodUnit::Month.advance(start, 1)))
            }
            10 => {
                let start = Timestamp::parse(s).map_err(|_| err())?;
                Ok(Period::new(start, start.add_days(1)))
            }
            _ => Err(err()),
        }
    }

    /// Splits the period into consecutive units (`--every month`): each piece starts at a
    /// unit boundary except possibly the first, and the last is cut at `end`.
    pub fn split(&self, unit: PeriodUnit) -> Vec<Period> {
        let mut out = Vec::new();
        let mut s = self.start;
        while s < self.end {
            let next = unit.advance(unit.floor(s), 1).min(self.end);
            out.push(Period::new(s, next));
            s = next;
        }
        out
    }

    /// Length in days (fractional).
    pub fn days(&self) -> f64 {
        (self.end.0 - self.start.0) as f64 / DAY as f64
    }

    /// Number of whole calendar months if the period is month-aligned, else `None`.
    pub fn whole_months(&self) -> Option<i64> {
        let floor = PeriodUnit::Month.floor(self.start);
        if floor != self.start || PeriodUnit::Month.floor(self.end) != self.end {
            return None;
        }
        let (y0, m0, _) = self.start.ymd();
        let (y1, m1, _) = self.end.ymd();
        Some((y1 * 12 + m1 as i64) - (y0 * 12 + m0 as i64))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests;
