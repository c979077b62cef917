//! Exact money: integer minor units with an ISO 4217 currency, and a rate table for reports.

use crate::time::Timestamp;
use std::fmt;

/// The ISO 4217 codes (list one, current and recently replaced, and funds codes), sorted.
const ISO_4217: &[[u8; 3]] = &[
    *b"AED", *b"AFN", *b"ALL", *b"AMD", *b"ANG", *b"AOA", *b"ARS", *b"AUD", *b"AWG", *b"AZN",
    *b"BAM", *b"BBD", *b"BDT", *b"BGN", *b"BHD", *b"BIF", *b"BMD", *b"BND", *b"BOB", *b"BOV",
    *b"BRL", *b"BSD", *b"BTN", *b"BWP", *b"BYN", *b"BZD", *b"CAD", *b"CDF", *b"CHE", *b"CHF",
    *b"CHW", *b"CLF", *b"CLP", *b"CNY", *b"COP", *b"COU", *b"CRC", *b"CUC", *b"CUP", *b"CVE",
    *b"CZK", *b"DJF", *b"DKK", *b"DOP", *b"DZD", *b"EGP", *b"ERN", *b"ETB", *b"EUR", *b"FJD",
    *b"FKP", *b"GBP", *b"GEL", *b"GHS", *b"GIP", *b"GMD", *b"GNF", *b"GTQ", *b"GYD", *b"HKD",
    *b"HNL", *b"HRK", *b"HTG", *b"HUF", *b"IDR", *b"ILS", *b"INR", *b"IQD", *b"IRR", *b"ISK",
    *b"JMD", *b"JOD", *b"JPY", *b"KES", *b"KGS", *b"KHR", *b"KMF", *b"KPW", *b"KRW", *b"KWD",
    *b"KYD", *b"KZT", *b"LAK", *b"LBP", *b"LKR", *b"LRD", *b"LSL", *b"LYD", *b"MAD", *b"MDL",
    *b"MGA", *b"MKD", *b"MMK", *b"MNT", *b"MOP", *b"MRU", *b"MUR", *b"MVR", *b"MWK", *b"MXN",
    *b"MXV", *b"MYR", *b"MZN", *b"NAD", *b"NGN", *b"NIO", *b"NOK", *b"NPR", *b"NZD", *b"OMR",
    *b"PAB", *b"PEN", *b"PGK", *b"PHP", *b"PKR", *b"PLN", *b"PYG", *b"QAR", *b"RON", *b"RSD",
    *b"RUB", *b"RWF", *b"SAR", *b"SBD", *b"SCR", *b"SDG", *b"SEK", *b"SGD", *b"SHP", *b"SLE",
    *b"SLL", *b"SOS", *b"SRD", *b"SSP", *b"STN", *b"SVC", *b"SYP", *b"SZL", *b"THB", *b"TJS",
    *b"TMT", *b"TND", *b"TOP", *b"TRY", *b"TTD", *b"TWD", *b"TZS", *b"UAH", *b"UGX", *b"USD",
    *b"USN", *b"UYI", *b"UYU", *b"UYW", *b"UZS", *b"VED", *b"VES", *b"VND", *b"VUV", *b"WST",
    *b"XAF", *b"XAG", *b"XAU", *b"XBA", *b"XBB", *b"XBC", *b"XBD", *b"XCD", *b"XCG", *b"XDR",
    *b"XOF", *b"XPD", *b"XPF", *b"XPT", *b"XSU", *b"XTS", *b"XUA", *b"XXX", *b"YER", *b"ZAR",
    *b"ZMW", *b"ZWG", *b"ZWL",
];

/// An ISO 4217 code (three upper-case ASCII letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub const USD: Currency = Currency(*b"USD");

    /// Accepts an ISO 4217 code in either case.
    pub fn parse(s: &str) -> Option<Currency> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return None;
        }
        let c = Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]);
        ISO_4217.binary_search(&c.0).is_ok().then_some(c)
    }

    pub fn as_str(&self) -> &str {
        // The constructor only admits ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    pub fn bytes(&self) -> [u8; 3] {
        self.0
    }

    /// From stored bytes, which were validated when they came in: only the shape is checked
    /// (decoding the log must not search the code list for every amount).
    pub fn from_bytes(b: [u8; 3]) -> Option<Currency> {
        b.iter().all(u8::is_ascii_uppercase).then_some(Currency(b))
    }

    /// Digits after the decimal point in the currency's minor unit (ISO 4217).
    pub fn exponent(&self) -> u32 {
        match &self.0 {
            b"BIF" | b"CLP" | b"DJF" | b"GNF" | b"ISK" | b"JPY" | b"KMF" | b"KRW" | b"PYG"
            | b"RWF" | b"UGX" | b"UYI" | b"VND" | b"VUV" | b"XAF" | b"XOF" | b"XPF" => 0,
            b"BHD" | b"IQD" | b"JOD" | b"KWD" | b"LYD" | b"OMR" | b"TND" => 3,
            b"CLF" | b"UYW" => 4,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact amount: minor units (cents) of a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal amount: {0:?}")]
    Syntax(String),
    #[error("{0:?} has more decimal places than {1} allows")]
    Precision(String, Currency),
    #[error("amount out of range: {0:?}")]
    Range(String),
}

/// Parses a decimal amount in major units (`"1200.50"`, `"-3"`, `"1e3"` is refused) into
/// minor units of `currency`. Extra decimal places are accepted only when they are zeros,
/// so that no amount is ever silently rounded.
pub fn parse_minor(s: &str, currency: Currency) -> Result<i64, MoneyError> {
    let syntax = || MoneyError::Syntax(s.to_string());
    let t = s.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(syntax());
    }
    if !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return Err(syntax());
    }
    let exp = currency.exponent() as usize;
    let (kept, dropped) = frac.split_at(frac.len().min(exp));
    if dropped.bytes().any(|c| c != b'0') {
        return Err(MoneyError::Precision(s.to_string(), currency));
    }
    let range = || MoneyError::Range(s.to_string());
    let mut v: i64 = 0;
    for c in int.bytes().chain(kept.bytes()).chain(std::iter::repeat_n(b'0', exp - kept.len())) {
        v = v.checked_mul(10).and_then(|v| v.checked_add((c - b'0') as i64)).ok_or_else(range)?;
    }
    Ok(if neg { -v } else { v })
}

/// Formats minor units as a decimal string in major units (`123456` USD -> `"1234.56"`).
pub fn format_minor(minor: i64, currency: Currency) -> String {
    format_scaled(minor as i128, currency.exponent())
}

/// Formats an integer scaled by `10^exp` as a plain decimal string.
pub fn format_scaled(v: i128, exp: u32) -> String {
    if exp == 0 {
        return v.to_string();
    }
    let p = 10i128.pow(exp);
    let sign = if v < 0 { "-" } else { "" };
    let a = v.abs();
    format!("{sign}{}.{:0width$}", a / p, a % p, width = exp as usize)
}

/// Exchange rates into the base currency, each effective from a date until the next.
#[derive(Clone, Debug)]
pub struct FxTable {
    pub base: Currency,
    /// Per currency, ascending by date: (effective from, base units per unit, scaled by 1e9).
    rates: Vec<(Currency, Vec<(Timestamp, i128)>)>,
}

/// Rates are fixed-point with nine decimals: enough for every published FX rate.
pub const RATE_SCALE: i128 = 1_000_000_000;

impl FxTable {
    pub fn new(base: Currency) -> FxTable {
        FxTable { base, rates: Vec::new() }
    }

    /// Adds a rate (`"1.0825"` base units per one `currency` unit) effective from `from`.
    pub fn add(
        &mut self,
        currency: Currency,
        from: Timestamp,
        rate: &str,
    ) -> Result<(), MoneyError> {
        let scaled = parse_rate(rate)?;
        let entry = match self.rates.iter_mut().position(|(c, _)| *c == currency) {
            Some(i) => &mut self.rates[i].1,
            None => {
                self.rates.push((currency, Vec::new()));
                let last = self.rates.len() - 1;
                &mut self.rates[last].1
            }
        };
        entry.push((from, scaled));
        entry.sort_by_key(|(t, _)| *t);
        Ok(())
    }

    /// The rate in force at `at`: the latest one effective at or before it, or else the
    /// earliest known (so a table that starts late still converts early history).
    pub fn rate(&self, currency: Currency, at: Timestamp) -> Option<i128> {
        if currency == self.base {
            return Some(RATE_SCALE);
        }
        let list = &self.rates.iter().find(|(c, _)| *c == currency)?.1;
        let i = list.partition_point(|(t, _)| *t <= at);
        list.get(i.saturating_sub(1)).map(|(_, r)| *r)
    }

    /// Converts minor units of `currency` into minor units of the base currency at `at`,
    /// rounding half away from zero. `None` when no rate is known.
    pub fn convert(&self, minor: i64, currency: Currency, at: Timestamp) -> Option<i64> {
        if currency == self.base {
            return Some(minor);
        }
        let rate = self.rate(currency, at)?;
        let (from_exp, to_exp) = (currency.exponent() as i32, self.base.exponent() as i32);
        let mut num = minor as i128 * rate;
        let mut den = RATE_SCALE;
        if to_exp >= from_exp {
            num *= 10i128.pow((to_exp - from_exp) as u32);
        } else {
            den *= 10i128.pow((from_exp - to_exp) as u32);
        }
        let q = div_round(num, den);
        i64::try_from(q).ok()
    }
}

/// Integer division rounding half away from zero.
pub fn div_round(num: i128, den: i128) -> i128 {
    let (q, r) = (num / den, num % den);
    if 2 * r.abs() >= den.abs() { q + num.signum() * den.signum() } else { q }
}

fn parse_rate(s: &str) -> Result<i128, MoneyError> {
    let t = s.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
        || frac.len() > 9
    {
        return Err(MoneyError::Syntax(s.to_string()));
    }
    let mut v: i128 = 0;
    for c in int.bytes().chain(frac.bytes()).chain(std::iter::repeat_n(b'0', 9 - frac.len())) {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((c - b'0') as i128))
            .ok_or_else(|| MoneyError::Range(s.to_string()))?;
    }
    if v == 0 {
        return Err(MoneyError::Range(s.to_string()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_amounts() {
        let usd = Currency::USD;
        assert_eq!(parse_minor("1200.50", usd), Ok(120_050));
        assert_eq!(parse_minor("1200.5", usd), Ok(120_050));
        assert_eq!(parse_minor("7", usd), Ok(700));
        assert_eq!(parse_minor("-0.01", usd), Ok(-1));
        assert_eq!(parse_minor("1.230", usd), Ok(123));
        assert!(matches!(parse_minor("1.234", usd), Err(MoneyError::Precision(..))));
        assert_eq!(parse_minor("1500", Currency::parse("jpy").unwrap()), Ok(1500));
        assert_eq!(parse_minor("1.5", Currency::parse("KWD").unwrap()), Ok(1500));
        for bad in ["", ".", "1,5", "1e3", "abc", "--1", "99999999999999999999"] {
            assert!(parse_minor(bad, usd).is_err(), "{bad}");
        }
        assert_eq!(format_minor(123_456, usd), "1234.56");
        assert_eq!(Currency::parse("eur").map(|c| c.to_string()), Some("EUR".to_string()));
        assert_eq!(Currency::parse("XYZ"), None);
        assert_eq!(Currency::parse("US"), None);
        assert_eq!(format_minor(-5, usd), "-0.05");
    }

    #[test]
    fn converts_with_the_rate_in_force() {
        let eur = Currency::parse("EUR").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        let mut fx = FxTable::new(Currency::USD);
        fx.add(eur, Timestamp::parse("2024-01-01").unwrap(), "1.10").unwrap();
        fx.add(eur, Timestamp::parse("2024-06-01").unwrap(), "1.20").unwrap();
        fx.add(jpy, Timestamp::parse("2024-01-01").unwrap(), "0.0067").unwrap();
        let jan = Timestamp::parse("2024-02-01").unwrap();
        assert_eq!(fx.convert(10_000, eur, jan), Some(11_000));
        assert_eq!(fx.convert(10_000, eur, Timestamp::parse("2024-07-01").unwrap()), Some(12_000));
        // Before the first rate, the earliest one applies.
        assert_eq!(fx.convert(10_000, eur, Timestamp::parse("2020-01-01").unwrap()), Some(11_000));
        // 1000 JPY (no minor unit) = 6.70 USD.
        assert_eq!(fx.convert(1000, jpy, jan), Some(670));
        assert_eq!(fx.convert(1, Currency::parse("GBP").unwrap(), jan), None);
        assert_eq!(div_round(-5, 2), -3);
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(4, 3), 1);
    }
}
