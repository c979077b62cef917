//! BG/NBD and Gamma-Gamma on the account base: each account's paid invoices become a
//! transaction history summarised as lifetimes' `summary_data_from_transaction_data` does
//! (frequency, recency, T, mean repeat value), the two models are fitted to the whole base,
//! and every account gets P(alive), its expected transactions and its discounted CLV over
//! a horizon; [`holdout`] backtests the predictions on a calibration / hold-out split, as
//! lifetimes' documentation validates the model.
//!
//! A transaction is a paid invoice: the ledger keeps every invoice event with its instant
//! and amount (base minor units), which is what the model counts and values. Usage is not
//! used: what this crate receives of it (`UsageByAccount`) is monthly per account, neither
//! an instant nor a value, so a "usage day" cannot be rebuilt from it.
//!
//! Money stays integral (minor units) in the summaries; it becomes `f64` only as the
//! model's input.

use crate::HealthError;
use rayon::prelude::*;
use rustc_hash::FxHashSet;
use tenure_core::event::InvoiceStatus;
use tenure_core::time::{DAY, PeriodUnit, Timestamp};
use tenure_ledger::{AccountLedger, Ledger};
use tenure_stats::bgnbd::{self as stats, BgNbd, GammaGamma};

/// The unit of frequency, recency and T: several payments within one unit are one
/// transaction (as lifetimes' `freq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Periods {
    Day,
    /// Weeks starting on Monday (pandas' `W` periods end on Sunday).
    Week,
}

impl Periods {
    pub fn parse(s: &str) -> Option<Periods> {
        match s {
            "day" | "D" => Some(Periods::Day),
            "week" | "W" => Some(Periods::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Periods::Day => "day",
            Periods::Week => "week",
        }
    }

    fn unit(self) -> PeriodUnit {
        match self {
            Periods::Day => PeriodUnit::Day,
            Periods::Week => PeriodUnit::Week,
        }
    }

    fn micros(self) -> i64 {
        match self {
            Periods::Day => DAY,
            Periods::Week => 7 * DAY,
        }
    }

    /// Periods in a month as lifetimes' `customer_lifetime_value` counts them (30 days,
    /// 4.345 weeks), so that a CLV here is lifetimes' for the same inputs.
    pub fn per_month(self) -> f64 {
        match self {
            Periods::Day => 30.0,
            Periods::Week => 4.345,
        }
    }

    /// Whole periods from the one containing `a` to the one containing `b`.
    fn between(self, a: Timestamp, b: Timestamp) -> i64 {
        (self.unit().floor(b).0 - self.unit().floor(a).0) / self.micros()
    }
}

/// An account's transactions known before `end`, in time order: its paid invoices at the
/// payment's instant, in base minor units. An invoice counts once (its first `paid` event:
/// a retried payment or a repeated notification is one purchase), not at all when it was
/// refunded before `end` (money given back was no purchase), nor when its amount is not
/// positive (a free plan's invoice buys nothing, and Gamma-Gamma needs positive spend).
pub fn transactions(a: &AccountLedger, end: Timestamp) -> Vec<(Timestamp, i64)> {
    let known = || a.invoices.iter().filter(|i| i.ts < end);
    let refunded: FxHashSet<&str> = known()
        .filter(|i| i.status == InvoiceStatus::Refunded)
        .map(|i| i.invoice_id.as_str())
        .collect();
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    known()
        .filter(|i| i.status == InvoiceStatus::Paid && i.amount > 0)
        .filter(|i| !refunded.contains(i.invoice_id.as_str()))
        .filter(|i| seen.insert(i.invoice_id.as_str()))
        .map(|i| (i.ts, i.amount))
        .collect()
}

/// One account's transaction history in whole periods and minor units (exact), as
/// lifetimes' `summary_data_from_transaction_data` with a monetary column computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub account: String,
    /// Periods with a transaction after the first one (repeat transactions).
    pub frequency: u32,
    /// Periods from the first transaction's to the last one's.
    pub recency: i64,
    /// Periods from the first transaction's to the last one observed (the one holding the
    /// instant just before `end`).
    pub t: i64,
    /// The first period's value and the repeat periods' value, base minor units.
    pub first_value: i64,
    pub repeat_value: i64,
    /// The first and the last transaction.
    pub first: Timestamp,
    pub last: Timestamp,
}

impl Summary {
    /// The mean value of a repeat transaction (0 without one, as lifetimes): the first
    /// purchase is left out because it is often unlike the later ones.
    pub fn monetary_value(&self) -> f64 {
        if self.frequency == 0 { 0.0 } else { self.repeat_value as f64 / self.frequency as f64 }
    }

    pub fn rfm(&self) -> Rfm {
        Rfm {
            frequency: self.frequency as f64,
            recency: self.recency as f64,
            t: self.t as f64,
            monetary_value: self.monetary_value(),
        }
    }
}

/// Summarises transactions (in time order, all before `end`) in `periods`: the
/// transactions of one period are one, worth their sum. `None` without a transaction.
pub fn summarise(
    account: &str,
    tx: &[(Timestamp, i64)],
    end: Timestamp,
    periods: Periods,
) -> Option<Summary> {
    let (first, _) = *tx.first()?;
    let unit = periods.unit();
    let (mut frequency, mut first_value, mut repeat_value) = (0u32, 0i64, 0i64);
    let mut current = unit.floor(first);
    for (ts, amount) in tx {
        let p = unit.floor(*ts);
        if p != current {
            current = p;
            frequency += 1;
        }
        if frequency == 0 {
            first_value += amount;
        } else {
            repeat_value += amount;
        }
    }
    let last = tx.last().expect("not empty").0;
    // The last instant observed is just before `end` (`end` itself is not known).
    let observed = Timestamp(end.0 - 1);
    Some(Summary {
        account: account.to_string(),
        frequency,
        recency: periods.between(first, last),
        t: periods.between(first, observed),
        first_value,
        repeat_value,
        first,
        last,
    })
}

/// Every account's summary with its transactions before `end` (accounts without one are
/// left out), in the ledger's order (by account id).
pub fn summaries(ledger: &Ledger, end: Timestamp, periods: Periods) -> Vec<Summary> {
    ledger
        .accounts
        .par_iter()
        .filter_map(|a| summarise(&a.id, &transactions(a, end), end, periods))
        .collect()
}

/// The models' inputs for one customer, in periods (fractional in published data such as
/// CDNOW's weeks) and currency units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rfm {
    pub frequency: f64,
    pub recency: f64,
    pub t: f64,
    pub monetary_value: f64,
}

/// The two models fitted to a base.
#[derive(Clone, Debug)]
pub struct Fit {
    /// r, α, a, b and the log-likelihood (in the periods of the inputs).
    pub bgnbd: BgNbd,
    /// p, q, v (`gamma`) and the log-likelihood (in the currency units of the inputs).
    pub gamma_gamma: GammaGamma,
    /// Customers summarised; those the BG/NBD was fitted to (observed for at least a
    /// period); those the Gamma-Gamma was (a repeat transaction of positive mean value).
    pub customers: usize,
    pub bgnbd_customers: usize,
    pub gamma_gamma_customers: usize,
    /// Pearson correlation of frequency and mean repeat value among the latter: Gamma-Gamma
    /// assumes they are independent, and lifetimes' documentation checks it is near 0.
    pub frequency_value_correlation: Option<f64>,
}

/// Fits BG/NBD to the customers observed for more than zero periods (the likelihood needs
/// T > 0; a customer first seen in the last period tells nothing yet), and Gamma-Gamma to
/// those with a repeat transaction of positive mean value, as lifetimes requires.
pub fn fit(rows: &[Rfm]) -> Result<Fit, HealthError> {
    let used: Vec<&Rfm> = rows.iter().filter(|r| r.t > 0.0).collect();
    if used.is_empty() {
        return Err(HealthError::NotEnoughData(
            "no customer was observed for a period after its first transaction".into(),
        ));
    }
    if !used.iter().any(|r| r.frequency > 0.0) {
        return Err(HealthError::NotEnoughData(
            "no customer has a repeat transaction: the BG/NBD model cannot be fitted".into(),
        ));
    }
    let (gx, gm): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter(|r| r.frequency > 0.0 && r.monetary_value > 0.0)
        .map(|r| (r.frequency, r.monetary_value))
        .unzip();
    if gx.len() < 2 {
        return Err(HealthError::NotEnoughData(
            "fewer than two customers with a repeat transaction of positive value: the \
             Gamma-Gamma model cannot be fitted"
                .into(),
        ));
    }
    let x: Vec<f64> = used.iter().map(|r| r.frequency).collect();
    let tx: Vec<f64> = used.iter().map(|r| r.recency).collect();
    let t: Vec<f64> = used.iter().map(|r| r.t).collect();
    // As lifetimes does: fit with time scaled so that the longest T is 10 (the optimiser
    // starts at r = α = a = b = 1, far from an α of hundreds of days), then scale α back;
    // r, a and b do not depend on the unit of time.
    let scale = 10.0 / t.iter().fold(0.0f64, |m, v| m.max(*v));
    let (txs, ts): (Vec<f64>, Vec<f64>) =
        tx.iter().zip(&t).map(|(a, b)| (a * scale, b * scale)).unzip();
    let s = stats::fit(&x, &txs, &ts)?;
    let p = [s.r, s.alpha / scale, s.a, s.b];
    if !p.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(HealthError::NotEnoughData(format!(
            "the BG/NBD fit did not converge (r {}, alpha {}, a {}, b {})",
            p[0], p[1], p[2], p[3]
        )));
    }
    let bgnbd = BgNbd {
        r: p[0],
        alpha: p[1],
        a: p[2],
        b: p[3],
        log_likelihood: stats::bgnbd_log_likelihood(p, &x, &tx, &t),
    };
    // Gamma-Gamma is scale-equivariant (values times c: p and q stay, v is times c), so it
    // is fitted on values of mean 1 (minor units run to the millions; its optimiser starts
    // at v = 1) and v scaled back.
    let c = gm.iter().sum::<f64>() / gm.len() as f64;
    let scaled: Vec<f64> = gm.iter().map(|m| m / c).collect();
    let g = stats::fit_gamma_gamma(&gx, &scaled)?;
    let v = [g.p, g.q, g.gamma * c];
    if !v.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(HealthError::NotEnoughData(format!(
            "the Gamma-Gamma fit did not converge (p {}, q {}, v {})",
            v[0], v[1], v[2]
        )));
    }
    let gamma_gamma = GammaGamma {
        p: v[0],
        q: v[1],
        gamma: v[2],
        log_likelihood: stats::gamma_gamma_log_likelihood(v, &gx, &gm),
    };
    Ok(Fit {
        bgnbd,
        gamma_gamma,
        customers: rows.len(),
        bgnbd_customers: used.len(),
        gamma_gamma_customers: gx.len(),
        frequency_value_correlation: pearson(&gx, &gm),
    })
}

/// What to predict: over `horizon_months` months of `periods.per_month()` periods, each
/// month's value discounted at `monthly_discount` (lifetimes' `discount_rate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    pub periods: Periods,
    pub horizon_months: u32,
    pub monthly_discount: f64,
}

/// The monthly discount rate twelve of which compound to the annual rate `annual` (as
/// lifetimes' monthly `discount_rate`).
pub fn monthly_discount(annual: f64) -> f64 {
    (1.0 + annual).powf(1.0 / 12.0) - 1.0
}

/// One customer's predictions; `None` where the model leaves a figure undefined (a
/// Gamma-Gamma with q <= 1 has no finite mean value).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub p_alive: Option<f64>,
    /// Expected transactions over the horizon.
    pub expected_transactions: Option<f64>,
    /// Expected value of a transaction (Gamma-Gamma, given the customer's history).
    pub expected_value: Option<f64>,
    /// The discounted value of the horizon's expected transactions, as lifetimes'
    /// `customer_lifetime_value(bgf, frequency, recency, T, monetary_value, time,
    /// discount_rate, freq)`.
    pub clv: Option<f64>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

pub fn score(f: &Fit, r: &Rfm, o: &Options) -> Scored {
    let (bg, gg) = (&f.bgnbd, &f.gamma_gamma);
    let (x, tx, t, m) = (r.frequency, r.recency, r.t, r.monetary_value);
    let per_month = o.periods.per_month();
    let horizon = o.horizon_months as f64 * per_month;
    let expected_value =
        if gg.p * x + gg.q - 1.0 > 0.0 { finite(gg.expected_average_value(x, m)) } else { None };
    Scored {
        p_alive: finite(bg.p_alive(x, tx, t)),
        expected_transactions: finite(bg.conditional_expected_purchases(horizon, x, tx, t)),
        expected_value,
        clv: expected_value.and_then(|_| {
            finite(gg.clv(bg, x, tx, t, m, o.horizon_months, per_month, o.monthly_discount))
        }),
    }
}

/// An account's summary and predictions.
#[derive(Clone, Debug)]
pub struct AccountValue {
    pub summary: Summary,
    pub scored: Scored,
}

pub struct Report {
    /// Transactions before this instant were used (the ledger's `as_of`).
    pub end: Timestamp,
    pub options: Options,
    pub fit: Fit,
    /// Highest CLV first (undefined last), then by account id.
    pub accounts: Vec<AccountValue>,
}

/// Both models fitted to every account's paid invoices before the ledger's `as_of`, and
/// each account's predictions.
pub fn value(ledger: &Ledger, o: &Options) -> Result<Report, HealthError> {
    value_of(summaries(ledger, ledger.as_of, o.periods), ledger.as_of, o)
}

/// As [`value`], from the accounts' summaries as of `end` (the service takes them under
/// its state's read lock and fits outside it).
pub fn value_of(sums: Vec<Summary>, end: Timestamp, o: &Options) -> Result<Report, HealthError> {
    if sums.is_empty() {
        return Err(HealthError::NotEnoughData(format!(
            "no account has a paid invoice before {end}"
        )));
    }
    let rows: Vec<Rfm> = sums.iter().map(Summary::rfm).collect();
    let fit = fit(&rows)?;
    let mut accounts: Vec<AccountValue> = sums
        .into_iter()
        .zip(&rows)
        .map(|(summary, r)| AccountValue { scored: score(&fit, r, o), summary })
        .collect();
    accounts.sort_by(|a, b| {
        let key = |v: &AccountValue| v.scored.clv.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a)).then_with(|| a.summary.account.cmp(&b.summary.account))
    });
    Ok(Report { end, options: *o, fit, accounts })
}

/// The accounts of one calibration frequency: their mean predicted and actual hold-out
/// transactions (`None` without an account).
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Repeat transactions in the calibration period: 0 to 6, and 7 or more.
    pub frequency: u32,
    pub or_more: bool,
    pub accounts: usize,
    pub predicted: Option<f64>,
    pub actual: Option<f64>,
}

impl Bucket {
    pub fn label(&self) -> String {
        if self.or_more { format!("{}+", self.frequency) } else { self.frequency.to_string() }
    }
}

/// The last bucket holds this many repeat transactions or more (lifetimes plots 0 to 6).
pub const BUCKETS: u32 = 7;

pub struct Holdout {
    /// Calibration: transactions before `cut`; hold-out: from `cut` to before `end`.
    pub cut: Timestamp,
    pub end: Timestamp,
    /// The hold-out's length in periods, as lifetimes' `duration_holdout`: from the period
    /// of the calibration's last instant to that of the hold-out's.
    pub periods: i64,
    pub fit: Fit,
    /// Accounts with a transaction in the calibration period (the others are not predicted).
    pub accounts: usize,
    pub buckets: Vec<Bucket>,
    pub predicted_total: f64,
    pub actual_total: u64,
    /// Between accounts' predicted and actual hold-out transactions.
    pub correlation: Option<f64>,
    pub mean_absolute_error: f64,
}

/// Each account with a transaction before `cut`: its summary as known then, and the number
/// of periods from `cut` to before the ledger's `as_of` in which it paid (a period that
/// holds the cut counts on both sides, as in lifetimes' `calibration_and_holdout_data`).
pub fn calibration_and_holdout(
    ledger: &Ledger,
    cut: Timestamp,
    periods: Periods,
) -> Vec<(Summary, u64)> {
    let unit = periods.unit();
    ledger
        .accounts
        .par_iter()
        .filter_map(|a| {
            let s = summarise(&a.id, &transactions(a, cut), cut, periods)?;
            let mut paid: Vec<Timestamp> = transactions(a, ledger.as_of)
                .iter()
                .filter(|(ts, _)| *ts >= cut)
                .map(|(ts, _)| unit.floor(*ts))
                .collect();
            paid.dedup();
            Some((s, paid.len() as u64))
        })
        .collect()
}

/// Fits both models on the transactions before `cut` (as known then: a refund after the
/// cut is not), predicts each calibration account's transactions in the periods from `cut`
/// to the ledger's `as_of`, and compares with the periods in which it did pay, as
/// lifetimes' `calibration_and_holdout_data` and
/// `plot_calibration_purchases_vs_holdout_purchases` do.
pub fn holdout(ledger: &Ledger, cut: Timestamp, periods: Periods) -> Result<Holdout, HealthError> {
    let end = ledger.as_of;
    let length = periods.between(Timestamp(cut.0 - 1), Timestamp(end.0 - 1));
    if cut >= end || length < 1 {
        return Err(HealthError::NotEnoughData(format!(
            "the hold-out from {cut} to {end} holds no whole {}",
            periods.as_str()
        )));
    }
    let pairs = calibration_and_holdout(ledger, cut, periods);
    let rows: Vec<Rfm> = pairs.iter().map(|(s, _)| s.rfm()).collect();
    let fit = fit(&rows).map_err(|e| match e {
        HealthError::NotEnoughData(m) => {
            HealthError::NotEnoughData(format!("the calibration period before {cut}: {m}"))
        }
        e => e,
    })?;
    let bg = &fit.bgnbd;
    let h = length as f64;
    let predicted: Vec<f64> = rows
        .iter()
        .map(|r| bg.conditional_expected_purchases(h, r.frequency, r.recency, r.t))
        .collect();
    if let Some(i) = predicted.iter().position(|p| !p.is_finite()) {
        return Err(HealthError::NotEnoughData(format!(
            "the calibration fit predicts no finite figure for {}",
            pairs[i].0.account
        )));
    }
    let actual: Vec<f64> = pairs.iter().map(|(_, n)| *n as f64).collect();
    let buckets = (0..=BUCKETS)
        .map(|k| {
            let or_more = k == BUCKETS;
            let i: Vec<usize> = (0..pairs.len())
                .filter(|i| {
                    let f = pairs[*i].0.frequency;
                    if or_more { f >= k } else { f == k }
                })
                .collect();
            let mean = |v: &[f64]| {
                (!i.is_empty()).then(|| i.iter().map(|j| v[*j]).sum::<f64>() / i.len() as f64)
            };
            Bucket {
                frequency: k,
                or_more,
                accounts: i.len(),
                predicted: mean(&predicted),
                actual: mean(&actual),
            }
        })
        .collect();
    let n = pairs.len() as f64;
    Ok(Holdout {
        cut,
        end,
        periods: length,
        accounts: pairs.len(),
        buckets,
        predicted_total: predicted.iter().sum(),
        actual_total: pairs.iter().map(|(_, n)| n).sum(),
        correlation: pearson(&predicted, &actual),
        mean_absolute_error: predicted.iter().zip(&actual).map(|(p, a)| (p - a).abs()).sum::<f64>()
            / n,
        fit,
    })
}

/// Pearson's correlation; `None` for fewer than two points or a constant series.
fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 2 || x.len() != y.len() {
        return None;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    finite(sxy / (sxx * syy).sqrt())
}

// Amounts in the tests are written as units_cents: 150_00 is 150.00.
#[cfg(test)]
#[allow(clippy::inconsistent_digit_grouping)]
mod tests {
    use super::*;
    use tenure_core::event::{Event, EventBody};
    use tenure_core::money::{Currency, FxTable, Money};
    use tenure_ledger::{LedgerBuilder, Preset, RevenueConfig};

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn invoice(account: &str, ts: &str, id: &str, minor: i64, status: InvoiceStatus) -> Event {
        Event {
            ts: at(ts),
            account: Some(account.into()),
            message_id: None,
            body: EventBody::Invoice {
                invoice_id: id.into(),
                amount: Money { minor, currency: Currency::USD },
                status,
                period_start: None,
                period_end: None,
            },
        }
    }

    /// Four accounts whose summaries are worked out by hand below.
    fn ledger(as_of: &str) -> Ledger {
        use InvoiceStatus::{Failed, Paid, Refunded};
        let events = [
            // a: two payments on 2024-01-01 (one transaction of 150.00), then 2024-01-15
            // and 2024-02-14.
            invoice("a", "2024-01-01T10:00:00Z", "a1", 100_00, Paid),
            invoice("a", "2024-01-01T15:00:00Z", "a2", 50_00, Paid),
            invoice("a", "2024-01-15T09:00:00Z", "a3", 200_00, Paid),
            invoice("a", "2024-02-14T09:00:00Z", "a4", 300_00, Paid),
            // Two more on 2024-03-05: one transaction of 120.00.
            invoice("a", "2024-03-05T08:00:00Z", "a5", 100_00, Paid),
            invoice("a", "2024-03-05T18:00:00Z", "a6", 20_00, Paid),
            // b: a failed invoice is no purchase; one payment on 2024-03-10.
            invoice("b", "2024-02-10T00:00:00Z", "b1", 80_00, Failed),
            invoice("b", "2024-03-10T12:00:00Z", "b2", 80_00, Paid),
            // c: c2 refunded on 2024-02-20; c3 failed, then paid on 2024-03-03; c4's payment
            // notified twice (one purchase, on 2024-03-20); c5 is worth nothing.
            invoice("c", "2024-01-05T08:00:00Z", "c1", 60_00, Paid),
            invoice("c", "2024-02-05T08:00:00Z", "c2", 60_00, Paid),
            invoice("c", "2024-02-20T08:00:00Z", "c2", 60_00, Refunded),
            invoice("c", "2024-03-01T08:00:00Z", "c3", 60_00, Failed),
            invoice("c", "2024-03-03T08:00:00Z", "c3", 60_00, Paid),
            invoice("c", "2024-03-20T08:00:00Z", "c4", 60_00, Paid),
            invoice("c", "2024-03-21T08:00:00Z", "c4", 60_00, Paid),
            invoice("c", "2024-03-25T08:00:00Z", "c5", 0, Paid),
            // d: paid at the very instant of the summary, which is not known yet.
            invoice("d", "2024-04-01T00:00:00Z", "d1", 10_00, Paid),
        ];
        let mut b = LedgerBuilder::new();
        for e in events {
            b.push(e);
        }
        b.finish(&RevenueConfig::preset(Preset::Tenure, FxTable::new(Currency::USD)), at(as_of))
    }

    /// (account, frequency, recency, T, first value, repeat value)
    fn brief(s: &[Summary]) -> Vec<(&str, u32, i64, i64, i64, i64)> {
        s.iter()
            .map(|s| {
                (s.account.as_str(), s.frequency, s.recency, s.t, s.first_value, s.repeat_value)
            })
            .collect()
    }

    #[test]
    fn paid_invoices_summarise_by_hand() {
        let l = ledger("2024-04-01T00:00:00Z");
        let end = l.as_of;
        // The last day observed is 2024-03-31 (2024 is a leap year).
        // a: first 01-01; repeats 01-15, 02-14 and 03-05: recency 31 + 29 + 4 = 64 days, T
        //    31 + 29 + 30 = 90 days.
        // b: one purchase on 03-10: T 21 days.
        // c: 01-05, 03-03, 03-20 (c2 refunded, c4 once, c5 free): recency 31 + 29 + 15 = 75
        //    days, T 86 days.
        // d: nothing before 04-01T00:00.
        assert_eq!(
            brief(&summaries(&l, end, Periods::Day)),
            [
                ("a", 3, 64, 90, 150_00, 620_00),
                ("b", 0, 0, 21, 80_00, 0),
                ("c", 2, 75, 86, 60_00, 120_00),
            ]
        );
        // Weeks from Monday: 2024-01-01 is a Monday, 02-14 falls in the week of 02-12 (6
        // weeks on), 03-05 in that of 03-04 (9 weeks on), 03-31 (a Sunday) in that of 03-25
        // (12 weeks on); b's 03-10 (a Sunday) in
        // that of 03-04, 3 weeks before 03-25; c's 01-05 in the week of 01-01, 03-03 (a
        // Sunday) in that of 02-26 (8 weeks on), 03-20 in that of 03-18 (11 weeks on).
        assert_eq!(
            brief(&summaries(&l, end, Periods::Week)),
            [
                ("a", 3, 9, 12, 150_00, 620_00),
                ("b", 0, 0, 3, 80_00, 0),
                ("c", 2, 11, 12, 60_00, 120_00),
            ]
        );
        let s = summaries(&l, end, Periods::Day);
        assert_eq!(
            (s[0].first, s[0].last),
            (at("2024-01-01T10:00:00Z"), at("2024-03-05T18:00:00Z"))
        );
        assert_eq!((s[0].monetary_value(), s[1].monetary_value()), (620_00.0 / 3.0, 0.0));
        assert_eq!(
            s[0].rfm(),
            Rfm { frequency: 3.0, recency: 64.0, t: 90.0, monetary_value: 620_00.0 / 3.0 }
        );
        // Before the cut of 2024-02-15 c's refund of c2 is not known: c1 and c2 count, T runs
        // to 02-14 (40 days), and b has not bought yet.
        let cut = at("2024-02-15T00:00:00Z");
        assert_eq!(
            brief(&summaries(&l, cut, Periods::Day)),
            [("a", 2, 44, 44, 150_00, 500_00), ("c", 1, 31, 40, 60_00, 60_00)]
        );
        // The ledger folded at the cut tells the same.
        assert_eq!(
            brief(&summaries(&ledger("2024-02-15T00:00:00Z"), cut, Periods::Day)),
            brief(&summaries(&l, cut, Periods::Day))
        );
        // The hold-out from the cut: a paid on one day (03-05), c on two (03-03 and 03-20;
        // c4's second notice and the free c5 are no purchases); b is not in the calibration.
        let pairs = calibration_and_holdout(&l, cut, Periods::Day);
        let got: Vec<(&str, u32, u64)> =
            pairs.iter().map(|(s, n)| (s.account.as_str(), s.frequency, *n)).collect();
        assert_eq!(got, [("a", 2, 1), ("c", 1, 2)]);
        assert_eq!(brief(&[pairs[1].0.clone()]), [("c", 1, 31, 40, 60_00, 60_00)]);
        assert_eq!(Periods::parse("week"), Some(Periods::Week));
        assert_eq!(Periods::parse("month"), None);
    }

    #[test]
    fn a_base_too_small_or_a_hold_out_too_short_is_named() {
        let o = Options { periods: Periods::Day, horizon_months: 12, monthly_discount: 0.01 };
        let err = |r: Result<Report, HealthError>| r.err().expect("an error").to_string();
        // Nothing paid yet.
        let e = err(value(&ledger("2024-01-01T00:00:00Z"), &o));
        assert!(e.contains("no account has a paid invoice before 2024-01-01"), "{e}");
        // 01-10: a bought on one day, c on one: no repeat transaction.
        let e = err(value(&ledger("2024-01-10T00:00:00Z"), &o));
        assert!(e.contains("no customer has a repeat transaction"), "{e}");
        // 01-20: a has repeated, c not: one customer for Gamma-Gamma.
        let e = err(value(&ledger("2024-01-20T00:00:00Z"), &o));
        assert!(e.contains("fewer than two customers with a repeat transaction"), "{e}");
        let l = ledger("2024-04-01T00:00:00Z");
        let e = holdout(&l, at("2024-04-01T00:00:00Z"), Periods::Day).err().unwrap();
        assert!(e.to_string().contains("holds no whole day"), "{e}");
        let e = holdout(&l, at("2024-01-02T00:00:00Z"), Periods::Day).err().unwrap();
        assert!(e.to_string().contains("calibration period before 2024-01-02"), "{e}");
    }

    /// SplitMix64 (`tenure_stats::splitmix64`), for the simulated base.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            tenure_stats::splitmix64(&mut self.0)
        }

        /// Uniform on (0, 1).
        fn uniform(&mut self) -> f64 {
            ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }

        /// Gamma(k, 1) by Marsaglia and Tsang (2000); a shape below 1 by boosting.
        fn gamma(&mut self, k: f64) -> f64 {
            if k < 1.0 {
                return self.gamma(k + 1.0) * self.uniform().powf(1.0 / k);
            }
            let d = k - 1.0 / 3.0;
            let c = 1.0 / (9.0 * d).sqrt();
            loop {
                let x = self.normal();
                let v = (1.0 + c * x).powi(3);
                if v > 0.0 && self.uniform().ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                    return d * v;
                }
            }
        }

        fn beta(&mut self, a: f64, b: f64) -> f64 {
            let x = self.gamma(a);
            x / (x + self.gamma(b))
        }
    }

    /// 3,000 accounts drawn from the two models themselves (days; r = 0.5, α = 20, a = 0.8,
    /// b = 2.5; spend per transaction p = 6, q = 4, v = 15.00), first paying during 2022
    /// and observed to 2024-01-01: the fit reaches at least the likelihood of the true
    /// parameters (it converged, α in days and v in cents included), lands near them, and
    /// the hold-out of the second half of 2023 predicts about the transactions made.
    #[test]
    fn a_base_drawn_from_the_models_is_fitted_and_its_hold_out_predicted() {
        let (r, alpha, a, b) = (0.5, 20.0, 0.8, 2.5);
        let (p, q, v) = (6.0, 4.0, 15_00.0);
        let start = at("2022-01-01T00:00:00Z");
        let end = at("2024-01-01T00:00:00Z");
        let mut rng = Rng(17);
        let accounts: Vec<AccountLedger> = (0..3000)
            .map(|i| {
                let rate = rng.gamma(r) / alpha; // purchases a day
                let drop = rng.beta(a, b);
                let scale = v / rng.gamma(q); // the account's mean spend is p x this
                let mut t = start.0 as f64 + rng.uniform() * 365.0 * DAY as f64;
                let mut invoices = Vec::new();
                while t < end.0 as f64 {
                    invoices.push(tenure_ledger::Invoice {
                        ts: Timestamp(t as i64),
                        invoice_id: format!("{i}-{}", invoices.len()),
                        amount: ((rng.gamma(p) * scale).round() as i64).max(1),
                        status: InvoiceStatus::Paid,
                    });
                    // Dropping out follows a repeat transaction, never the first (the
                    // likelihood of x = 0 is e^(-λT)).
                    if invoices.len() > 1 && rng.uniform() < drop {
                        break;
                    }
                    t += -rng.uniform().ln() / rate * DAY as f64;
                }
                AccountLedger { id: format!("acc-{i:04}"), invoices, ..Default::default() }
            })
            .collect();
        let l = Ledger { accounts, as_of: end, ..Default::default() };
        let o = Options { periods: Periods::Day, horizon_months: 12, monthly_discount: 0.01 };
        let rep = value(&l, &o).unwrap();
        let (bg, gg) = (&rep.fit.bgnbd, &rep.fit.gamma_gamma);
        let rows: Vec<Rfm> = summaries(&l, end, Periods::Day).iter().map(Summary::rfm).collect();
        let col = |f: fn(&Rfm) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
        let (x, tx, tt) = (col(|r| r.frequency), col(|r| r.recency), col(|r| r.t));
        let truth = stats::bgnbd_log_likelihood([r, alpha, a, b], &x, &tx, &tt);
        assert!(bg.log_likelihood >= truth - 1e-6, "{bg:?} against {truth} at the truth");
        let (gx, gm): (Vec<f64>, Vec<f64>) = rows
            .iter()
            .filter(|r| r.frequency > 0.0)
            .map(|r| (r.frequency, r.monetary_value))
            .unzip();
        let truth = stats::gamma_gamma_log_likelihood([p, q, v], &gx, &gm);
        assert!(gg.log_likelihood >= truth - 1e-6, "{gg:?} against {truth} at the truth");
        let near = |got: f64, want: f64, rel: f64, what: &str| {
            assert!((got / want - 1.0).abs() <= rel, "{what}: {got}, the truth {want}");
        };
        near(bg.r, r, 0.25, "r");
        near(bg.alpha, alpha, 0.35, "alpha");
        near(gg.p, p, 0.35, "p");
        near(gg.gamma / (gg.q - 1.0), v / (q - 1.0), 0.25, "v / (q - 1)");
        for acc in &rep.accounts {
            let s = &acc.scored;
            assert!((0.0..=1.0).contains(&s.p_alive.unwrap()), "{acc:?}");
            assert!(s.clv.unwrap() >= 0.0 && s.expected_transactions.unwrap() >= 0.0, "{acc:?}");
        }
        let clv = |a: &AccountValue| a.scored.clv.unwrap();
        assert!(rep.accounts.windows(2).all(|w| clv(&w[0]) >= clv(&w[1])));
        let h = holdout(&l, at("2023-07-01T00:00:00Z"), Periods::Day).unwrap();
        // From 2023-06-30, the calibration's last day, to 2023-12-31.
        assert_eq!(h.periods, 184);
        assert_eq!(h.accounts, 3000);
        assert_eq!(h.buckets.iter().map(|b| b.accounts).sum::<usize>(), 3000);
        assert_eq!(h.buckets.last().unwrap().label(), "7+");
        let (pred, act) = (h.predicted_total, h.actual_total as f64);
        assert!((pred / act - 1.0).abs() < 0.1, "predicted {pred}, made {act}");
        assert!(h.correlation.unwrap() > 0.5, "{:?}", h.correlation);
        for k in &h.buckets[..3] {
            let (p, a) = (k.predicted.unwrap(), k.actual.unwrap());
            assert!((p - a).abs() < 0.25 * a.max(0.2), "bucket {}: {p} against {a}", k.label());
        }
    }

    fn close(got: f64, want: f64, rel: f64, what: &str) {
        assert!(
            (got - want).abs() <= rel * want.abs().max(1e-12),
            "{what}: {got} against lifetimes' {want}"
        );
    }

    /// The acceptance: on the CDNOW sample (2,357 customers, weeks), the per-account
    /// figures of this module equal lifetimes'. Figures from lifetimes 0.11.3 (pandas
    /// 2.1.4, numpy 1.26.4, scipy 1.13.1):
    ///   bgf = BetaGeoFitter(penalizer_coef=0.0).fit(d.frequency, d.recency, d.T)
    ///   ret = d[(d.frequency > 0) & (d.monetary_value > 0)]
    ///   ggf = GammaGammaFitter(penalizer_coef=0.0).fit(ret.frequency, ret.monetary_value)
    /// then for the rows below (1-based, in the file's order):
    ///   bgf.conditional_probability_alive(f, r, T),
    ///   bgf.conditional_expected_number_of_purchases_up_to_time(39, f, r, T) and (12 * 4.345, ...),
    ///   ggf.conditional_expected_average_profit(f, m),
    ///   ggf.customer_lifetime_value(bgf, f, r, T, m, time=12, discount_rate=0.01, freq="W")
    ///   and the same with discount_rate=0.0;
    /// the log-likelihoods are lifetimes' `_negative_log_likelihood` at the fitted
    /// parameters on the unscaled data, times -n.
    #[test]
    fn per_account_figures_equal_lifetimes_on_cdnow() {
        let text = include_str!("../../tenure-stats/tests/data/cdnow.csv");
        let rows: Vec<Rfm> = text
            .lines()
            .skip(1)
            .map(|l| {
                let v: Vec<f64> = l.split(',').map(|c| c.parse().unwrap()).collect();
                Rfm { frequency: v[0], recency: v[1], t: v[2], monetary_value: v[3] }
            })
            .collect();
        assert_eq!(rows.len(), 2357);
        let f = fit(&rows).unwrap();
        let (bg, gg) = (&f.bgnbd, &f.gamma_gamma);
        close(bg.r, 0.2425929282798216, 1e-5, "r");
        close(bg.alpha, 4.413532265271803, 1e-5, "alpha");
        close(bg.a, 0.7928859664405851, 1e-5, "a");
        close(bg.b, 2.42575238262545, 1e-5, "b");
        close(bg.log_likelihood, -9582.425560567366, 1e-8, "BG/NBD log-likelihood");
        close(gg.p, 6.248802496074264, 1e-5, "p");
        close(gg.q, 3.744588460923312, 1e-5, "q");
        close(gg.gamma, 15.447748064932831, 1e-5, "v");
        close(gg.log_likelihood, -4055.9232435028634, 1e-8, "Gamma-Gamma log-likelihood");
        assert_eq!((f.customers, f.bgnbd_customers, f.gamma_gamma_customers), (2357, 2357, 946));
        let week = |d| Options { periods: Periods::Week, horizon_months: 12, monthly_discount: d };
        // (row, P(alive), E[Y(39)], E[Y(12 months)], E[M], CLV at 1% a month, CLV undiscounted)
        #[rustfmt::skip]
        let want = [
            (1, 0.7266091367990611, 1.2259104241744259, 1.562017013808268, 24.658616189236923, 36.278495763626665, 38.51717802455623),
            (2, 0.212227388072203, 0.20325062425618526, 0.2604947873392165, 18.911479869930286, 4.63746632856977, 4.926341926987405),
            (3, 1.0, 0.1947808579394759, 0.2522613410806132, 35.171002152506624, 8.344093121809948, 8.872284170140537),
            (6, 0.641800639351933, 3.337239646527083, 4.207940521294509, 71.462850804534, 283.5235925904007, 300.7114256676289),
            (17, 0.8153255835931228, 5.933575005055285, 7.4655784707510655, 24.699909557511813, 173.89734149635572, 184.39911302206445),
            (21, 0.4069366524342035, 0.6885989187002937, 0.8772943175625362, 32.81696754822828, 27.117102336695304, 28.7901391496947),
            (157, 0.9691335940044082, 20.053665319495945, 25.11238329298103, 26.3929476635306, 625.3500337089756, 662.7898179581393),
            (325, 0.04099631664979023, 0.7497320310961101, 0.9382268558640761, 37.1747958842818, 32.910534634906476, 34.87839185989935),
            (1081, 0.9172284302684416, 8.185343648539112, 10.238561106794567, 103.79011188277714, 1002.757859119025, 1062.6614027928908),
        ];
        for (row, alive, e39, e12, value, clv, clv0) in want {
            let r = &rows[row - 1];
            let s = score(&f, r, &week(0.01));
            let what = |k: &str| format!("row {row}: {k}");
            close(s.p_alive.unwrap(), alive, 1e-5, &what("P(alive)"));
            close(
                bg.conditional_expected_purchases(39.0, r.frequency, r.recency, r.t),
                e39,
                1e-5,
                &what("E[Y(39)]"),
            );
            close(s.expected_transactions.unwrap(), e12, 1e-5, &what("E[Y(12 months)]"));
            close(s.expected_value.unwrap(), value, 1e-5, &what("E[M]"));
            close(s.clv.unwrap(), clv, 1e-5, &what("CLV"));
            close(score(&f, r, &week(0.0)).clv.unwrap(), clv0, 1e-5, &what("CLV undiscounted"));
        }
    }
}
