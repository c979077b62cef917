//! The renewal forecast: for every contract whose term ends in a period (and every
//! month-to-month account over it), the ARR up for renewal, the calibrated probability it
//! renews, the ARR expected back and a category; totals with an interval taken from the
//! distribution of the outcomes; and the backtest of forecasts made at past periods' starts.
//!
//! A forecast is made at the ledger's `as_of` and reads nothing after it: the models train on
//! outcomes known by then, the features read events before it (`features`), so a forecast
//! as of `t` is the same whether or not the events after `t` exist (test:
//! `tests/it/forecast.rs`).

use crate::backtest::{self, Snapshots};
use crate::features::{Context, F, Outcome, Row};
use crate::model::{self, Model};
use crate::{HealthError, UsageByAccount};
use rayon::prelude::*;
use tenure_core::time::{DAY, Period, PeriodUnit, Timestamp};
use tenure_ledger::{AccountLedger, Ledger, LedgerBuilder, RenewalOutcome, RevenueConfig};
use tenure_stats::bernsum;

/// How sure a renewal is (commit, probable, at risk): the event model's, since a CSM's
/// `forecast_override` names one.
pub use tenure_core::event::ForecastCategory as Category;

/// The forecast's settings (`[forecast]` in the configuration file).
#[derive(Clone, Debug)]
pub struct Settings {
    /// A renewal is `commit` from this probability on, `probable` from `probable` on,
    /// else `at_risk`.
    pub commit: f64,
    pub probable: f64,
    /// The probability the interval of a total holds (0.8: the 10% and 90% quantiles).
    pub level: f64,
    /// The account attribute naming its CSM.
    pub csm_key: String,
    /// Drivers (TreeSHAP, the costly part) for at most this many contracts, the largest
    /// expected losses first.
    pub drivers: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { commit: 0.9, probable: 0.6, level: 0.8, csm_key: "csm".into(), drivers: 200 }
    }
}

impl Settings {
    pub fn category(&self, p: f64) -> Category {
        if p >= self.commit {
            Category::Commit
        } else if p >= self.probable {
            Category::Probable
        } else {
            Category::AtRisk
        }
    }
}

/// A CSM's call on a renewal (a `forecast_override` event): it replaces the model's
/// category and, when it names one, the ARR expected back.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub account: String,
    /// The contract (subscription line); `None`: every contract of the account.
    pub subscription_id: Option<String>,
    pub category: Category,
    /// ARR expected back, base minor units.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub author: Option<String>,
    pub at: Timestamp,
}

/// What comes up for renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A contract term ending in the period.
    Term,
    /// An account without a term: it "renews" by still paying at the period's end.
    MonthToMonth,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Term => "term",
            Kind::MonthToMonth => "month_to_month",
        }
    }
}

/// Where a probability came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The renewal (or churn) model.
    Model,
    /// The base rate of past outcomes (too little history for a model, or no features).
    BaseRate,
    /// The churn model standing in for the renewal model: no renewal decided yet to learn
    /// from (a company younger than its contracts), so a contract renews as its account
    /// stays.
    ChurnModel,
    /// Already decided by `as_of` (renewed or lost early).
    Known,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Model => "model",
            Source::BaseRate => "base_rate",
            Source::ChurnModel => "churn_model",
            Source::Known => "known",
        }
    }
}

/// One renewal in the forecast.
#[derive(Clone, Debug)]
pub struct Item {
    pub account: String,
    /// The contract; `None` for a month-to-month account.
    pub subscription_id: Option<String>,
    pub kind: Kind,
    /// The term end (for month-to-month: the period's end).
    pub due: Timestamp,
    /// ARR up for renewal, base minor units.
    pub arr_due: i64,
    /// ARR back if it renews (ARR due times the expansion usual at renewal).
    pub arr_if_renewed: i64,
    /// The probability it renews.
    pub p: f64,
    /// The standard error of `p`'s log-odds: the uncertainty of the calibration it came from
    /// (its segment's shift, or the base rate), shared by every item calibrated alike. 0 for
    /// a known outcome.
    pub se: f64,
    pub source: Source,
    pub category: Category,
    pub csm: Option<String>,
    pub segment: Option<String>,
    pub drivers: Vec<String>,
    pub overridden: Option<Override>,
}

impl Item {
    /// The model's expected renewed ARR.
    pub fn expected(&self) -> f64 {
        self.p * self.arr_if_renewed as f64
    }

    /// The outcome as the forecast with overrides counts it: (probability, amount).
    fn called(&self) -> (f64, i64) {
        match &self.overridden {
            Some(Override { amount: Some(a), .. }) => (1.0, *a),
            _ => (self.p, self.arr_if_renewed),
        }
    }

    /// The category shown: the CSM's when overridden.
    pub fn shown_category(&self) -> Category {
        self.overridden.as_ref().map_or(self.category, |o| o.category)
    }
}

/// Per category: contracts, ARR due, expected ARR.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CategoryTotal {
    pub contracts: usize,
    pub arr_due: i64,
    pub expected: i64,
}

/// The sum over a set of items.
#[derive(Clone, Debug, PartialEq)]
pub struct Totals {
    pub contracts: usize,
    pub arr_due: i64,
    /// Expected renewed ARR, rounded to the minor unit.
    pub expected: i64,
    /// The central interval holding `level` of the outcome distribution.
    pub low: i64,
    pub high: i64,
    /// How the distribution was computed (exact, compressed, cornish_fisher).
    pub method: &'static str,
    /// By category (commit, probable, at risk), in that order.
    pub categories: [CategoryTotal; 3],
}

/// How the ARR of a renewal that happens spreads around its expected value: multipliers of
/// equal weight, the means of the tenths of past outcomes (ARR back per ARR due of renewals
/// won, ARR kept per ARR of month-to-month accounts that stayed), scaled to average 1. `[1]`
/// without enough history.
#[derive(Clone, Debug, PartialEq)]
pub struct Spread {
    pub term: Vec<f64>,
    pub month_to_month: Vec<f64>,
    /// How far the common level of the multipliers in the period may be from the mean
    /// expansion at renewal (of terms) and the mean growth of month-to-month accounts,
    /// relative to them: the means' standard errors and the variation of the level between
    /// quarters (spans), in quadrature.
    pub term_se: f64,
    pub month_to_month_se: f64,
}

impl Default for Spread {
    fn default() -> Spread {
        Spread { term: vec![1.0], month_to_month: vec![1.0], term_se: 0.0, month_to_month_se: 0.0 }
    }
}

impl Spread {
    /// The means of [`SPREAD_BINS`] equal-count bins of `ratios` (at least 20 of them),
    /// scaled to mean 1: bin means, not quantiles, so that the tails (a renewal that doubles)
    /// keep their weight.
    pub fn of(mut ratios: Vec<f64>) -> Vec<f64> {
        ratios.retain(|r| r.is_finite() && *r >= 0.0);
        if ratios.len() < 20 {
            return vec![1.0];
        }
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let k = SPREAD_BINS.min(n);
        let pts: Vec<f64> = (0..k)
            .map(|b| {
                let bin = &ratios[b * n / k..(b + 1) * n / k];
                bin.iter().sum::<f64>() / bin.len() as f64
            })
            .collect();
        let mean = pts.iter().sum::<f64>() / pts.len() as f64;
        if mean > 0.0 { pts.iter().map(|p| p / mean).collect() } else { vec![1.0] }
    }
}

/// How many amounts a renewal's ARR spreads over.
pub const SPREAD_BINS: usize = 10;

/// Sums items with the model's probabilities (`called = false`) or with the CSMs'
/// overrides applied (`called = true`); a renewal's ARR spreads as `spread` says (a known
/// outcome and a CSM's amount do not).
pub fn totals(items: &[&Item], level: f64, called: bool, spread: &Spread) -> Totals {
    let outcomes: Vec<(f64, i64)> =
        items.iter().map(|i| if called { i.called() } else { (i.p, i.arr_if_renewed) }).collect();
    let fixed: Vec<bool> = items
        .iter()
        .map(|i| {
            i.source == Source::Known
                || (called && matches!(i.overridden, Some(Override { amount: Some(_), .. })))
        })
        .collect();
    // An account's contracts share its fate: the outcomes of its uncertain ones are one
    // draw `U`, a contract renewing when `U < p` (the most dependent coupling their own
    // probabilities allow). An account whose contracts are treated as independent would
    // look far more predictable than it is. Here: per account, its uncertain items.
    let mut by_account: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (k, i) in items.iter().enumerate() {
        if !fixed[k] && outcomes[k].0 > 0.0 {
            by_account.entry(i.account.as_str()).or_default().push(k);
        }
    }
    let mut accounts: Vec<Vec<usize>> = by_account.into_values().collect();
    accounts.sort_unstable();
    // The outcomes summed: one entry per fixed item and per account, (probability that
    // anything comes in, the amounts it may bring), with probabilities `ps` and each mean
    // amount scaled by `scale` (per kind; 1 but under the mixture below).
    let entries = |ps: &[f64], scale: [f64; 2]| -> Vec<(f64, Vec<(f64, i64)>)> {
        let mut out: Vec<(f64, Vec<(f64, i64)>)> = (0..items.len())
            .filter(|k| fixed[*k] || outcomes[*k].0 == 0.0)
            .map(|k| (ps[k], vec![(1.0, outcomes[k].1)]))
            .collect();
        for idx in &accounts {
            let mut idx = idx.clone();
            idx.sort_by(|a, b| ps[*b].total_cmp(&ps[*a]));
            let top = ps[idx[0]];
            if top <= 0.0 {
                out.push((0.0, vec![(1.0, 0)]));
                continue;
            }
            let i0 = items[idx[0]];
            let (m, k) = match i0.kind {
                Kind::Term => (&spread.term, scale[0]),
                Kind::MonthToMonth => (&spread.month_to_month, scale[1]),
            };
            let w = 1.0 / m.len() as f64;
            let mut amounts = Vec::with_capacity(idx.len() * m.len());
            let mut sum = 0.0;
            for (j, &kk) in idx.iter().enumerate() {
                sum += outcomes[kk].1 as f64;
                // The first j + 1 renew and the rest do not: U in [p_(j+1), p_j).
                let next = idx.get(j + 1).map_or(0.0, |n| ps[*n]);
                let q = (ps[kk] - next) / top;
                if q > 0.0 {
                    amounts
                        .extend(m.iter().map(|x| (q * w, (sum * x * k).round().max(0.0) as i64)));
                }
            }
            // Floating point: the weights sum to 1 within a hair; make it exact.
            let total: f64 = amounts.iter().map(|a| a.0).sum();
            amounts.iter_mut().for_each(|a| a.0 /= total);
            out.push((top, amounts));
        }
        out
    };
    let sum_of = |e: &[(f64, Vec<(f64, i64)>)]| -> bernsum::SumDist {
        let mixed: Vec<(f64, &[(f64, i64)])> = e.iter().map(|(p, a)| (*p, a.as_slice())).collect();
        bernsum::distribution_of(&mixed).expect("probabilities in [0, 1], amounts >= 0")
    };
    let ps: Vec<f64> = outcomes.iter().map(|o| o.0).collect();
    let dist = sum_of(&entries(&ps, [1.0, 1.0]));
    let (low, high) = match Shock::of(items, &outcomes, &fixed, spread) {
        None => dist.interval(level),
        Some(shock) => {
            // What the forecast estimated from the company's history (the calibration of its
            // probabilities, the mean expansion) is uncertain too, and it moves every item
            // estimated alike together. One common standard normal `z`: each item's log-odds
            // moved by `z * shock.logit[i]`, the mean amounts scaled by `1 + z * shock.amount`,
            // integrated by Gauss-Hermite quadrature: a mixture of outcome distributions.
            let parts: Vec<(f64, bernsum::SumDist)> = bernsum::NORMAL_NODES
                .par_iter()
                .map(|&(z, w)| {
                    let moved: Vec<f64> = ps
                        .iter()
                        .zip(&shock.logit)
                        .map(|(p, d)| moved_probability(*p, z * d))
                        .collect();
                    let k = shock.amount.map(|x| (1.0 + z * x).max(0.0));
                    (w, sum_of(&entries(&moved, k)))
                })
                .collect();
            bernsum::Mixture::new(parts).expect("the rule's weights sum to 1").interval(level)
        }
    };
    let mut categories: [CategoryTotal; 3] = Default::default();
    for (i, (p, a)) in items.iter().zip(&outcomes) {
        let c = if called { i.shown_category() } else { i.category };
        let t = &mut categories[c as usize];
        t.contracts += 1;
        t.arr_due += i.arr_due;
        t.expected += (p * *a as f64).round() as i64;
    }
    Totals {
        contracts: items.len(),
        arr_due: items.iter().map(|i| i.arr_due).sum(),
        expected: dist.mean.round() as i64,
        low,
        high,
        method: match dist.method {
            bernsum::Method::Exact => "exact",
            bernsum::Method::Compressed => "compressed",
            bernsum::Method::CornishFisher => "cornish_fisher",
        },
        categories,
    }
}

/// What one standard deviation of the estimates' uncertainty does to the items: a shift of
/// each item's log-odds, and a relative change of the mean amount per kind (term, month to
/// month).
struct Shock {
    logit: Vec<f64>,
    amount: [f64; 2],
}

impl Shock {
    /// `None` when nothing is uncertain. Items calibrated alike (kind, segment, source) share
    /// one shift of their log-odds, each kind one mean amount; these were estimated apart,
    /// so their errors are independent: one common factor stands in for them all, scaled so
    /// that the variance it gives the expected total (to first order) is the sum of theirs.
    fn of(
        items: &[&Item],
        outcomes: &[(f64, i64)],
        fixed: &[bool],
        spread: &Spread,
    ) -> Option<Shock> {
        let uncertain = |k: usize| !fixed[k] && outcomes[k].0 > 0.0 && outcomes[k].0 < 1.0;
        // (kind, segment, source) and the summed effect of its calibration's error.
        type Group<'a> = ((Kind, Option<&'a str>, Source), f64);
        let mut groups: Vec<Group<'_>> = Vec::new();
        let mut amount_effect = [0.0f64; 2];
        let rel = [spread.term_se, spread.month_to_month_se];
        for (k, i) in items.iter().enumerate() {
            let (p, a) = outcomes[k];
            if fixed[k] || p == 0.0 {
                continue;
            }
            amount_effect[i.kind as usize] += p * a as f64 * rel[i.kind as usize];
            if !uncertain(k) || i.se.is_nan() || i.se <= 0.0 {
                continue;
            }
            // d E[amount] / d (log-odds) times the standard error.
            let effect = a as f64 * p * (1.0 - p) * i.se;
            let key = (i.kind, i.segment.as_deref(), i.source);
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.1 += effect,
                None => groups.push((key, effect)),
            }
        }
        let effects = groups.iter().map(|g| g.1).chain(amount_effect);
        let sum: f64 = effects.clone().sum();
        if sum.is_nan() || sum <= 0.0 {
            return None;
        }
        let scale = effects.map(|e| e * e).sum::<f64>().sqrt() / sum;
        let logit = (0..items.len())
            .map(|k| if uncertain(k) && items[k].se > 0.0 { items[k].se * scale } else { 0.0 })
            .collect();
        Some(Shock { logit, amount: [rel[0] * scale, rel[1] * scale] })
    }
}

/// `p` (a probability to renew) with its log-odds moved up by `d`: the direction in which
/// the expected total rises, as the amounts' does with `z` (one factor, every effect the
/// same sign).
fn moved_probability(p: f64, d: f64) -> f64 {
    if d == 0.0 || p <= 0.0 || p >= 1.0 {
        return p;
    }
    model::sigmoid((p / (1.0 - p)).ln() + d)
}

/// A cut of the forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Month,
    Csm,
    Segment,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "month" => Some(GroupBy::Month),
            "csm" | "owner" => Some(GroupBy::Csm),
            "segment" => Some(GroupBy::Segment),
            _ => None,
        }
    }

    pub fn key(self, i: &Item) -> String {
        match self {
            // A month-to-month account is due at the period's end: its last month.
            GroupBy::Month if i.kind == Kind::MonthToMonth => {
                PeriodUnit::Month.label(Timestamp(i.due.0 - 1))
            }
            GroupBy::Month => PeriodUnit::Month.label(i.due),
            GroupBy::Csm => i.csm.clone().unwrap_or_else(|| "(none)".into()),
            GroupBy::Segment => i.segment.clone().unwrap_or_else(|| "(none)".into()),
        }
    }
}

/// Groups of items with their totals (model, called), by key.
pub fn groups(
    items: &[Item],
    by: GroupBy,
    level: f64,
    spread: &Spread,
) -> Vec<(String, Totals, Totals)> {
    let mut keyed: std::collections::BTreeMap<String, Vec<&Item>> = Default::default();
    for i in items {
        keyed.entry(by.key(i)).or_default().push(i);
    }
    keyed
        .into_par_iter()
        .map(|(k, v)| {
            let (m, c) = (totals(&v, level, false, spread), totals(&v, level, true, spread));
            (k, m, c)
        })
        .collect()
}

/// How each kind's probabilities were obtained, with the history behind them.
#[derive(Clone, Debug, PartialEq)]
pub struct Method {
    pub source: Source,
    /// Labelled snapshots (or past outcomes, for a base rate) it learned from.
    pub examples: usize,
    /// The base rate of renewal (or retention) among them.
    pub base_rate: Option<f64>,
}

/// A forecast made at `as_of` for `period`.
#[derive(Clone, Debug)]
pub struct Forecast {
    pub as_of: Timestamp,
    pub period: Period,
    pub level: f64,
    /// Largest ARR due first.
    pub items: Vec<Item>,
    pub model: Totals,
    pub called: Totals,
    pub term: Method,
    pub month_to_month: Method,
    /// ARR back per ARR due among renewals won in the past (1 when history says nothing).
    pub expansion: f64,
    /// Month-to-month accounts: ARR at the end per ARR at the start among those that stayed,
    /// over the four spans as long as the forecast's before `as_of` (1 without history).
    pub month_to_month_growth: f64,
    /// How a renewal's ARR spreads (in the intervals).
    pub spread: Spread,
}

impl Forecast {
    /// The forecast with the calls known to `ledger` (a later state than the forecast's, in
    /// the service) applied again, and its totals recounted.
    pub fn with_overrides(mut self, ledger: &Ledger) -> Forecast {
        apply_overrides(&mut self.items, ledger);
        let refs: Vec<&Item> = self.items.iter().collect();
        self.called = totals(&refs, self.level, true, &self.spread);
        self
    }
}

/// Horizon in days from `t` to the end of `period` (at least 30, at most 400).
fn horizon(t: Timestamp, period: Period) -> i64 {
    ((period.end.0 - t.0 + DAY - 1) / DAY).clamp(30, 400)
}

/// A model whose probabilities are calibrated again per segment *in revenue*: over every
/// labelled snapshot it learned from (the held-back fifth alone is too few rows for the
/// large-account segments), each segment's log-odds are shifted so that the ARR its outcomes were expected to lose equals the ARR they
/// lost. The trees learn what signals mean risk mostly from the many small accounts, and a
/// large account's volume of tickets or share of idle seats reads as more risk than it is:
/// calibrated on counts, the model is right about how many renew and wrong about how much
/// ARR, which is what a forecast totals.
struct Calibrated {
    model: Model,
    /// Per segment: the shift of the log-odds and its standard error.
    shift: Vec<(Option<String>, f64, f64)>,
    /// The standard error of the level of a segment it did not see.
    overall: f64,
}

impl Calibrated {
    /// `weight[i]`: the ARR at stake in snapshot `i`.
    fn new(model: Model, s: &Snapshots, weight: &[f64]) -> Calibrated {
        let rows: Vec<&Row> = s.rows.iter().collect();
        let z = model.log_odds(&rows);
        let mut segs: Vec<Option<String>> = rows.iter().map(|r| r.segment.clone()).collect();
        segs.sort();
        segs.dedup();
        let mut shift = Vec::new();
        // The shift's standard error: the sandwich of its estimating equation
        // sum_k w_k (y_k - q_k(d)) = 0, clustered by account (an account's snapshots share
        // its fate).
        let se_of = |idx: &[usize], d: f64| -> f64 {
            let mut info = 0.0;
            // Ordered by account: a hash map's order changes from one process to the next, and
            // so would the last bits of the sum (and a bound rounded to the cent with them).
            let mut score: std::collections::BTreeMap<u32, f64> = Default::default();
            for &k in idx {
                let w = weight[k].max(0.0);
                let q = model::sigmoid(z[k] + d);
                info += w * q * (1.0 - q);
                *score.entry(s.account[k]).or_default() +=
                    w * (f64::from(u8::from(s.label[k])) - q);
            }
            let meat: f64 = score.values().map(|u| u * u).sum();
            if info > 0.0 { meat.sqrt() / info } else { 0.0 }
        };
        for seg in segs {
            let idx: Vec<usize> = (0..rows.len()).filter(|k| rows[*k].segment == seg).collect();
            let lost = idx.iter().filter(|k| s.label[**k]).count();
            if idx.len() < 30 || lost < 3 || lost + 3 > idx.len() {
                // Too few outcomes to shift: the model's own level, as uncertain as these
                // rows say.
                let se = se_of(&idx, 0.0);
                shift.push((seg, 0.0, se));
                continue;
            }
            let w = |k: usize| weight[k].max(0.0);
            let target: f64 = idx.iter().filter(|k| s.label[**k]).map(|k| w(*k)).sum();
            let expected =
                |d: f64| -> f64 { idx.iter().map(|k| w(*k) * model::sigmoid(z[*k] + d)).sum() };
            // The expected loss rises with the shift: bisection on [-8, 8].
            let (mut lo, mut hi) = (-8.0f64, 8.0f64);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if expected(mid) < target { lo = mid } else { hi = mid }
            }
            let d = 0.5 * (lo + hi);
            shift.push((seg, d, se_of(&idx, d)));
        }
        let all: Vec<usize> = (0..rows.len()).collect();
        let overall = se_of(&all, 0.0);
        Calibrated { model, shift, overall }
    }

    /// The probabilities of the outcome (a lost renewal, or churn), each with the standard
    /// error of its log-odds' calibration.
    fn predict(&self, rows: &[&Row]) -> Vec<(f64, f64)> {
        let z = self.model.log_odds(rows);
        z.iter()
            .zip(rows)
            .map(|(r, row)| {
                let (d, se) = self
                    .shift
                    .iter()
                    .find(|x| x.0 == row.segment)
                    .map_or((0.0, self.overall), |x| (x.1, x.2));
                (model::sigmoid(r + d), se)
            })
            .collect()
    }
}

/// The churn model within `h` days, for month-to-month accounts: month-start snapshots
/// whose horizon ended by the ledger's `as_of`.
fn learn_churn(
    ledger: &Ledger,
    usage: &UsageByAccount,
    ctx: &Context<'_>,
    h: i64,
) -> (Option<Calibrated>, Snapshots) {
    let Some((at, keep)) = backtest::training_months(ledger, h) else {
        return (None, Snapshots::default());
    };
    let s = backtest::labelled(ledger, usage, &at, h, Outcome::Churn, ctx, &keep);
    let rows: Vec<&Row> = s.rows.iter().collect();
    let m = model::train_trees(&rows, &s.label, &s.at, h, Outcome::Churn).ok();
    let weight: Vec<f64> = s.rows.iter().map(|r| r.mrr as f64).collect();
    (m.map(|m| Calibrated::new(m, &s, &weight)), s)
}

/// A snapshot's features for one contract: the account's, with `days_to_renewal` that of
/// the contract (the account's own is its nearest term end).
fn for_contract(mut row: Row, at: Timestamp, due: Timestamp) -> Row {
    row.num[F::DAYS_TO_RENEWAL as usize] = (due.0 - at.0) as f64 / DAY as f64;
    row
}

/// The renewal model within `h` days: one row per contract and month start, for every term
/// known then and due within `h` days whose outcome was decided by the ledger's `as_of`,
/// labelled lost or renewed. Per contract, not per account: an account that renews its main
/// contract and drops an add-on is one renewal won and one lost, so a large account with many
/// lines does not look riskier than it is.
fn learn_renewal(
    ledger: &Ledger,
    usage: &UsageByAccount,
    ctx: &Context<'_>,
    h: i64,
) -> (Option<Calibrated>, Snapshots) {
    let t = ledger.as_of;
    let Some((at, keep)) = backtest::training_months(ledger, h) else {
        return (None, Snapshots::default());
    };
    // (account, month start, features, lost, ARR due) per contract.
    type Labelled = (u32, Timestamp, Row, bool, f64);
    let parts: Vec<Vec<Labelled>> = ledger
        .accounts
        .par_iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, a)| {
            let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
            let mut out = Vec::new();
            for at in &at {
                let end = Timestamp(at.0 + h * DAY);
                let due: Vec<(Timestamp, bool, f64)> = a
                    .renewals
                    .iter()
                    .filter(|r| r.opened < *at && r.due >= *at && r.due < end)
                    // Decided by the ledger's as_of but not yet at the snapshot: a forecast
                    // counts an outcome known at its instant as known, so a model that also
                    // learned from early decisions would count them twice.
                    .filter_map(|r| match r.outcome {
                        RenewalOutcome::Won { at: d, .. } if d <= t && d > *at => {
                            Some((r.due, false, r.arr_due as f64))
                        }
                        RenewalOutcome::Lost { at: d } if d <= t && d > *at => {
                            Some((r.due, true, r.arr_due as f64))
                        }
                        _ => None,
                    })
                    .collect();
                if due.is_empty() {
                    continue;
                }
                let Some(row) = crate::features::snapshot(a, u, *at, ctx) else { continue };
                for (d, lost, arr) in due {
                    out.push((i as u32, *at, for_contract(row.clone(), *at, d), lost, arr));
                }
            }
            out
        })
        .collect();
    let mut s = Snapshots::default();
    let mut weight = Vec::new();
    for (i, at, row, y, w) in parts.into_iter().flatten() {
        s.account.push(i);
        s.at.push(at);
        s.rows.push(row);
        s.label.push(y);
        weight.push(w);
    }
    let rows: Vec<&Row> = s.rows.iter().collect();
    let m = model::train_trees(&rows, &s.label, &s.at, h, Outcome::RenewalLost).ok();
    (m.map(|m| Calibrated::new(m, &s, &weight)), s)
}

/// Whether the account holds a term open at `t` (known before `t`, due at or after it).
fn open_term(a: &AccountLedger, t: Timestamp) -> bool {
    a.renewals.iter().any(|r| r.opened < t && r.due >= t)
}

/// The ratio `sum to / sum from` of `pairs` (from, to, group) when there are at least 10,
/// else 1; each pair's own ratio; and how far the next group's ratio may be from it, relative
/// to it: the ratio's standard error (of a ratio estimator, to first order) and, in
/// quadrature, the spread of the groups' own ratios beyond what their sampling explains
/// ([`between_groups`]). Groups are the quarters renewals were decided in, or the spans
/// month-to-month growth was measured over: a quarter whose renewals all expand more than
/// usual shares a level that no number of renewals averages away, and a forecast's
/// interval must hold it (measured: 2026-Q4 of the generated company expanded 7.7% against
/// the usual 4%).
fn ratio_of(pairs: &[(i64, i64, i64)]) -> (f64, Vec<f64>, f64) {
    let from: i128 = pairs.iter().map(|p| i128::from(p.0)).sum();
    let to: i128 = pairs.iter().map(|p| i128::from(p.1)).sum();
    let ratios = pairs.iter().filter(|p| p.0 > 0).map(|p| p.1 as f64 / p.0 as f64).collect();
    if pairs.len() < 10 || from <= 0 {
        return (1.0, ratios, 0.0);
    }
    if to <= 0 {
        return (0.0, ratios, 0.0);
    }
    let r = to as f64 / from as f64;
    let var = ratio_variance(pairs.iter().map(|p| (p.0, p.1)), r);
    let mut groups: std::collections::BTreeMap<i64, Vec<(i64, i64)>> = Default::default();
    for p in pairs {
        groups.entry(p.2).or_default().push((p.0, p.1));
    }
    let per_group: Vec<(f64, f64)> = groups
        .values()
        .filter(|g| g.len() >= 5)
        .filter_map(|g| {
            let from: f64 = g.iter().map(|p| p.0 as f64).sum();
            let to: f64 = g.iter().map(|p| p.1 as f64).sum();
            let rg = to / from;
            (from > 0.0).then(|| (rg, ratio_variance(g.iter().copied(), rg)))
        })
        .collect();
    let tau2 = between_groups(&per_group).unwrap_or(0.0);
    (r, ratios, (var + tau2).sqrt() / r)
}

/// The sampling variance of a ratio estimator `r = sum to / sum from`, to first order.
fn ratio_variance(pairs: impl Iterator<Item = (i64, i64)> + Clone, r: f64) -> f64 {
    let from: f64 = pairs.clone().map(|p| p.0 as f64).sum();
    let dev: f64 = pairs.map(|p| (p.1 as f64 - r * p.0 as f64).powi(2)).sum();
    if from > 0.0 { dev / (from * from) } else { 0.0 }
}

/// The variance between groups of estimates `(value, sampling variance)` beyond their
/// sampling variances: DerSimonian and Laird's moment estimator, as meta-analyses use it
/// (checked against statsmodels' `combine_effects(method_re="dl")` in the tests). `None`
/// with fewer than three groups or a group without sampling variance.
fn between_groups(est: &[(f64, f64)]) -> Option<f64> {
    if est.len() < 3 || est.iter().any(|e| e.1.is_nan() || e.1 <= 0.0 || !e.0.is_finite()) {
        return None;
    }
    let w: Vec<f64> = est.iter().map(|e| 1.0 / e.1).collect();
    let sw: f64 = w.iter().sum();
    let sw2: f64 = w.iter().map(|x| x * x).sum();
    let mean = est.iter().zip(&w).map(|(e, w)| w * e.0).sum::<f64>() / sw;
    let q: f64 = est.iter().zip(&w).map(|(e, w)| w * (e.0 - mean).powi(2)).sum();
    let df = (est.len() - 1) as f64;
    Some(((q - df) / (sw - sw2 / sw)).max(0.0))
}

/// ARR back per ARR due among renewals won by `t` (at least 10 of them), else 1.
fn expansion_ratio(ledger: &Ledger) -> (f64, Vec<f64>, f64) {
    let t = ledger.as_of;
    let mut pairs = Vec::new();
    for a in &ledger.accounts {
        for r in &a.renewals {
            if let RenewalOutcome::Won { at, arr } = r.outcome
                && at <= t
                && r.arr_due > 0
            {
                let (y, m, _) = at.ymd();
                pairs.push((r.arr_due, arr, y * 4 + i64::from((m - 1) / 3)));
            }
        }
    }
    ratio_of(&pairs)
}

/// ARR at the end per ARR at the start of the month-to-month accounts (paying, no open
/// term) that still paid at the end, over the four spans of `len` before the ledger's
/// `as_of` (at least 10 of them), else 1.
fn month_to_month_growth(ledger: &Ledger, len: i64) -> (f64, Vec<f64>, f64) {
    let t = ledger.as_of;
    let mut pairs = Vec::new();
    for k in 1..=4 {
        let (a, b) = (Timestamp(t.0 - k * len), Timestamp(t.0 - (k - 1) * len));
        for acc in ledger.accounts.iter().filter(|x| !open_term(x, a)) {
            let (Some(s0), Some(s1)) = (acc.state_before(a), acc.state_before(b)) else { continue };
            if s0.customer && s0.arr > 0 && s1.customer && s1.arr > 0 {
                pairs.push((s0.arr, s1.arr, k));
            }
        }
    }
    ratio_of(&pairs)
}

/// The forecast for `period`, made at the ledger's `as_of` (the period must end after it),
/// with the CSMs' calls (`forecast_override` events) known by then beside the model's.
pub fn forecast(
    ledger: &Ledger,
    usage: &UsageByAccount,
    ctx: &Context<'_>,
    period: Period,
    s: &Settings,
) -> Result<Forecast, HealthError> {
    let t = ledger.as_of;
    if period.end <= t {
        return Err(HealthError::Config(format!(
            "the period ended by {t}: a forecast looks ahead (a past period is backtested)"
        )));
    }
    if !(s.commit > s.probable && s.probable > 0.0 && s.commit <= 1.0) {
        return Err(HealthError::Config(format!(
            "thresholds: expected 0 < probable ({}) < commit ({}) <= 1",
            s.probable, s.commit
        )));
    }
    if !(s.level > 0.0 && s.level < 1.0) {
        return Err(HealthError::Config(format!("level {}: expected within (0, 1)", s.level)));
    }
    let (expansion, term_ratios, term_se) = expansion_ratio(ledger);
    let (growth, mtm_ratios, mtm_se) = month_to_month_growth(ledger, period.end.0 - t.0);
    let spread = Spread {
        term: Spread::of(term_ratios),
        month_to_month: Spread::of(mtm_ratios),
        term_se,
        month_to_month_se: mtm_se,
    };
    // What comes up: terms due in the period, known before t; accounts without a term.
    struct Due {
        account: u32,
        sub: Option<String>,
        kind: Kind,
        due: Timestamp,
        arr_due: i64,
        known: Option<(f64, i64)>,
    }
    let mut due: Vec<Due> = Vec::new();
    for (i, a) in ledger.accounts.iter().enumerate() {
        let mut any = false;
        for r in a.renewals.iter().filter(|r| r.opened < t && period.contains(r.due)) {
            any = true;
            let arr_if = (r.arr_due as f64 * expansion).round() as i64;
            let known = match r.outcome {
                RenewalOutcome::Won { at, arr } if at <= t => Some((1.0, arr)),
                RenewalOutcome::Lost { at } if at <= t => Some((0.0, arr_if)),
                _ => None,
            };
            due.push(Due {
                account: i as u32,
                sub: Some(r.subscription_id.clone()),
                kind: Kind::Term,
                due: r.due,
                arr_due: r.arr_due,
                known,
            });
        }
        if any || open_term(a, t) {
            continue;
        }
        if let Some(st) = a.state_before(t).filter(|st| st.customer && st.arr > 0) {
            due.push(Due {
                account: i as u32,
                sub: None,
                kind: Kind::MonthToMonth,
                due: period.end,
                arr_due: st.arr,
                known: None,
            });
        }
    }
    let h = horizon(t, period);
    let wants = |k: Kind| due.iter().any(|d| d.kind == k && d.known.is_none());
    // The two models train one after the other, each in parallel inside.
    let renewal = wants(Kind::Term).then(|| learn_renewal(ledger, usage, ctx, h));
    // No renewal decided yet to learn from (a company younger than its contracts): the
    // churn model over the same horizon stands in, a contract renewing as its account stays.
    // It is the month-to-month accounts' model: trained once for both.
    let stand_in = renewal.as_ref().is_some_and(|(_, s)| s.label.is_empty());
    let churn = (wants(Kind::MonthToMonth) || stand_in).then(|| learn_churn(ledger, usage, ctx, h));
    let term = if stand_in { churn.as_ref() } else { renewal.as_ref() };
    let mtm = if wants(Kind::MonthToMonth) { churn.as_ref() } else { None };
    let method =
        |m: Option<&(Option<Calibrated>, Snapshots)>| -> Result<(Method, f64, f64), HealthError> {
            let Some((model, snaps)) = m else {
                return Ok((
                    Method { source: Source::Known, examples: 0, base_rate: None },
                    f64::NAN,
                    0.0,
                ));
            };
            let n = snaps.label.len();
            let lost = snaps.label.iter().filter(|l| **l).count();
            if n == 0 {
                return Err(HealthError::NotEnoughData(
                    "no past outcome to learn from: no snapshot whose horizon has ended".into(),
                ));
            }
            let rate = 1.0 - lost as f64 / n as f64;
            let source = if model.is_some() { Source::Model } else { Source::BaseRate };
            // The base rate's standard error on the log-odds, counting accounts (an account's
            // snapshots are not independent outcomes).
            let mut accounts = snaps.account.clone();
            accounts.sort_unstable();
            accounts.dedup();
            let v = accounts.len() as f64 * rate * (1.0 - rate);
            let se = if v > 0.0 { 1.0 / v.sqrt() } else { 0.0 };
            Ok((Method { source, examples: n, base_rate: Some(rate) }, rate, se))
        };
    let (mut term_method, term_rate, term_rate_se) = method(term)?;
    let term_source = if stand_in { Source::ChurnModel } else { Source::Model };
    if term_method.source == Source::Model {
        term_method.source = term_source;
    }
    let (mtm_method, mtm_rate, mtm_rate_se) = method(mtm)?;
    // Features at t of every account with something due, then the probabilities.
    let rows: Vec<Option<Row>> = due
        .par_iter()
        .map(|d| {
            if d.known.is_some() {
                return None;
            }
            let a = &ledger.accounts[d.account as usize];
            let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
            let row = crate::features::snapshot(a, u, t, ctx)?;
            Some(if d.kind == Kind::Term { for_contract(row, t, d.due) } else { row })
        })
        .collect();
    let predict =
        |k: Kind, m: Option<&(Option<Calibrated>, Snapshots)>| -> Vec<Option<(f64, f64)>> {
            let idx: Vec<usize> =
                (0..due.len()).filter(|i| due[*i].kind == k && rows[*i].is_some()).collect();
            let mut out = vec![None; due.len()];
            if let Some((Some(model), _)) = m {
                let r: Vec<&Row> = idx.iter().map(|i| rows[*i].as_ref().expect("kept")).collect();
                for (i, (q, se)) in idx.iter().zip(model.predict(&r)) {
                    out[*i] = Some((1.0 - q, se));
                }
            }
            out
        };
    let pt = predict(Kind::Term, term);
    let pm = predict(Kind::MonthToMonth, mtm);
    let mut items: Vec<Item> = due
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let a = &ledger.accounts[d.account as usize];
            let (p, se, source, arr_if) = match (d.known, d.kind) {
                (Some((p, amount)), _) => (p, 0.0, Source::Known, amount),
                (None, Kind::Term) => {
                    let arr_if = (d.arr_due as f64 * expansion).round() as i64;
                    match pt[i] {
                        Some((p, se)) => (p, se, term_source, arr_if),
                        None => (term_rate, term_rate_se, Source::BaseRate, arr_if),
                    }
                }
                (None, Kind::MonthToMonth) => {
                    let arr_if = (d.arr_due as f64 * growth).round() as i64;
                    match pm[i] {
                        Some((p, se)) => (p, se, Source::Model, arr_if),
                        None => (mtm_rate, mtm_rate_se, Source::BaseRate, arr_if),
                    }
                }
            };
            let segment = rows[i]
                .as_ref()
                .and_then(|r| r.segment.clone())
                .or_else(|| a.attribute_at(ctx.segment_key, t).map(|v| v.label()));
            Item {
                account: a.id.clone(),
                subscription_id: d.sub.clone(),
                kind: d.kind,
                due: d.due,
                arr_due: d.arr_due,
                arr_if_renewed: arr_if,
                p,
                se,
                source,
                category: s.category(p),
                csm: a.attribute_at(&s.csm_key, t).map(|v| v.label()),
                segment,
                drivers: Vec::new(),
                overridden: None,
            }
        })
        .collect();
    apply_overrides(&mut items, ledger);
    // Drivers for the largest expected losses the model scored.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| {
        let loss = |i: &Item| (1.0 - i.p) * i.arr_due as f64;
        loss(&items[*b]).total_cmp(&loss(&items[*a]))
    });
    for k in [Kind::Term, Kind::MonthToMonth] {
        let model = match k {
            Kind::Term => term.and_then(|m| m.0.as_ref()).map(|c| &c.model),
            Kind::MonthToMonth => mtm.and_then(|m| m.0.as_ref()).map(|c| &c.model),
        };
        let Some(model) = model else { continue };
        let pick: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| {
                items[*i].kind == k
                    && matches!(items[*i].source, Source::Model | Source::ChurnModel)
            })
            .take(s.drivers)
            .collect();
        let r: Vec<&Row> = pick.iter().map(|i| rows[*i].as_ref().expect("scored")).collect();
        for (i, (_, ds)) in pick.iter().zip(model.explain(&r, 3)) {
            items[*i].drivers = ds.into_iter().map(|d| d.text).collect();
        }
    }
    items.sort_by(|a, b| {
        b.arr_due.cmp(&a.arr_due).then(a.account.cmp(&b.account)).then(a.due.cmp(&b.due))
    });
    let refs: Vec<&Item> = items.iter().collect();
    let (model_totals, called) = rayon::join(
        || totals(&refs, s.level, false, &spread),
        || totals(&refs, s.level, true, &spread),
    );
    Ok(Forecast {
        as_of: t,
        period,
        level: s.level,
        model: model_totals,
        called,
        items,
        term: term_method,
        month_to_month: mtm_method,
        expansion,
        month_to_month_growth: growth,
        spread,
    })
}

/// Sets each item's override: the latest call (`forecast_override` event) in the ledger on
/// its contract, made while its term was open (a call on the previous term does not carry
/// over) and before it was due. The service calls it again on a saved forecast when a CSM
/// makes a call.
pub fn apply_overrides(items: &mut [Item], ledger: &Ledger) {
    let t = ledger.as_of;
    for it in items.iter_mut() {
        let Some(a) = ledger.account(&it.account) else { continue };
        let opened = match &it.subscription_id {
            Some(sub) => a
                .renewals
                .iter()
                .find(|r| &r.subscription_id == sub && r.due == it.due)
                .map_or(Timestamp(i64::MIN), |r| r.opened),
            None => Timestamp(i64::MIN),
        };
        it.overridden =
            a.cs.forecast_calls
                .iter()
                .rfind(|o| {
                    o.ts <= t
                        && o.ts >= opened
                        && o.ts < it.due
                        && (o.subscription_id.is_none() || o.subscription_id == it.subscription_id)
                })
                .map(|o| Override {
                    account: it.account.clone(),
                    subscription_id: o.subscription_id.clone(),
                    category: o.category,
                    amount: o.amount,
                    reason: o.reason.clone(),
                    author: o.author.clone(),
                    at: o.ts,
                });
    }
}

/// The periods forecast and compared, and those left out with why.
pub type Backtest = (Vec<PastPeriod>, Vec<(Period, String)>);

/// A past period: the forecast made at its start against what happened.
#[derive(Clone, Debug, PartialEq)]
pub struct PastPeriod {
    pub period: Period,
    pub contracts: usize,
    pub arr_due: i64,
    pub forecast: i64,
    pub low: i64,
    pub high: i64,
    /// Last year's renewal rates times the ARR due.
    pub naive: Option<i64>,
    /// Renewed ARR; `None` while a renewal in it is undecided.
    pub actual: Option<i64>,
}

impl PastPeriod {
    pub fn covered(&self) -> Option<bool> {
        self.actual.map(|a| self.low <= a && a <= self.high)
    }
}

/// The renewed ARR of a forecast's items, from the ledger as known now.
fn actual(now: &Ledger, items: &[Item], period: Period) -> Option<i64> {
    let mut sum = 0i64;
    for it in items {
        let a = now.account(&it.account)?;
        match (&it.subscription_id, it.kind) {
            (Some(sub), Kind::Term) => {
                let r = a
                    .renewals
                    .iter()
                    .filter(|r| &r.subscription_id == sub && period.contains(r.due))
                    .min_by_key(|r| (r.due.0 - it.due.0).abs())?;
                match r.outcome {
                    RenewalOutcome::Won { arr, .. } => sum += arr,
                    RenewalOutcome::Lost { .. } => {}
                    RenewalOutcome::Open => return None,
                }
            }
            _ => {
                if let Some(st) = a.state_before(period.end).filter(|s| s.customer) {
                    sum += st.arr;
                }
            }
        }
    }
    Some(sum)
}

/// Last year's rates, as known at the ledger's `as_of`: ARR back per ARR due among terms
/// due in the year before, and the ARR month-to-month accounts kept over the same period a
/// year earlier. `None` when there is no such history.
fn naive(ledger: &Ledger, items: &[Item], period: Period) -> Option<i64> {
    let t = ledger.as_of;
    let year_ago = t.add_months(-12);
    let (mut due, mut back) = (0i128, 0i128);
    for a in &ledger.accounts {
        for r in a.renewals.iter().filter(|r| r.due >= year_ago && r.due < t) {
            match r.outcome {
                RenewalOutcome::Won { at, arr } if at <= t => {
                    due += i128::from(r.arr_due);
                    back += i128::from(arr);
                }
                RenewalOutcome::Lost { at } if at <= t => due += i128::from(r.arr_due),
                _ => {}
            }
        }
    }
    let then = Period::new(period.start.add_months(-12), period.end.add_months(-12));
    let (mut kept_from, mut kept) = (0i128, 0i128);
    if then.end <= t {
        for a in ledger.accounts.iter().filter(|a| !open_term(a, then.start)) {
            if let Some(st) = a.state_before(then.start).filter(|s| s.customer && s.arr > 0) {
                kept_from += i128::from(st.arr);
                kept += i128::from(
                    a.state_before(then.end).filter(|s| s.customer).map_or(0, |s| s.arr),
                );
            }
        }
    }
    let rate = |num: i128, den: i128| (den > 0).then(|| num as f64 / den as f64);
    let (term_rate, mtm_rate) = (rate(back, due), rate(kept, kept_from));
    let mut sum = 0.0;
    for it in items {
        let r = match it.kind {
            Kind::Term => term_rate?,
            Kind::MonthToMonth => mtm_rate?,
        };
        sum += r * it.arr_due as f64;
    }
    Some(sum.round() as i64)
}

/// Forecasts each of `periods` as of its start (the ledger folded at that instant from
/// `builder`) and compares it with the renewed ARR in `now` (the ledger as known now) and
/// with the naive forecast. A period with too little history before it to learn from is
/// left out, with the reason (the second list); it is an error only when every one is.
pub fn backtest(
    builder: &LedgerBuilder,
    cfg: &RevenueConfig,
    now: &Ledger,
    usage: &UsageByAccount,
    ctx: &Context<'_>,
    periods: &[Period],
    s: &Settings,
) -> Result<Backtest, HealthError> {
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for p in periods {
        let then = builder.fold_all(cfg, p.start);
        let f = match forecast(&then, usage, ctx, *p, s) {
            Ok(f) => f,
            Err(HealthError::NotEnoughData(why)) => {
                skipped.push((*p, why));
                continue;
            }
            Err(e) => return Err(e),
        };
        out.push(PastPeriod {
            period: *p,
            contracts: f.items.len(),
            arr_due: f.model.arr_due,
            forecast: f.model.expected,
            low: f.model.low,
            high: f.model.high,
            naive: naive(&then, &f.items, *p),
            actual: (p.end <= now.as_of).then(|| actual(now, &f.items, *p)).flatten(),
        });
    }
    if out.is_empty() && !skipped.is_empty() {
        return Err(HealthError::NotEnoughData(format!(
            "no period could be forecast from what was known at its start: {}",
            skipped[0].1
        )));
    }
    Ok((out, skipped))
}

/// The backtest in a few numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Accuracy {
    /// Periods with an actual.
    pub periods: usize,
    /// Share of them whose interval held the actual.
    pub coverage: Option<f64>,
    /// Mean absolute error as a share of the actual, of the forecast and of the naive one
    /// (over periods where both exist).
    pub mape: Option<f64>,
    pub naive_mape: Option<f64>,
}

pub fn accuracy(past: &[PastPeriod]) -> Accuracy {
    let done: Vec<&PastPeriod> = past.iter().filter(|p| p.actual.is_some()).collect();
    let covered = done.iter().filter(|p| p.covered() == Some(true)).count();
    let both: Vec<&&PastPeriod> =
        done.iter().filter(|p| p.naive.is_some() && p.actual.is_some_and(|a| a > 0)).collect();
    let ape = |f: i64, a: i64| (f - a).abs() as f64 / a as f64;
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Accuracy {
        periods: done.len(),
        coverage: (!done.is_empty()).then(|| covered as f64 / done.len() as f64),
        mape: mean(both.iter().map(|p| ape(p.forecast, p.actual.unwrap_or(0))).collect()),
        naive_mape: mean(
            both.iter().map(|p| ape(p.naive.unwrap_or(0), p.actual.unwrap_or(0))).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DerSimonian and Laird's between-group variance, against statsmodels 0.15.0:
    /// `combine_effects(eff, var, method_re="dl").tau2`, which reports the moment estimate
    /// before it is floored at 0 (-0.000449714... for the second set, where groups agree
    /// more than their sampling variances say: no variation between them).
    #[test]
    fn variance_between_quarters_is_dersimonian_laird() {
        let eff = [1.02, 1.05, 1.01, 1.08, 1.03, 0.99];
        let var = [0.0004, 0.0009, 0.0001, 0.0016, 0.0004, 0.0002];
        let est: Vec<(f64, f64)> = eff.into_iter().zip(var).collect();
        let tau2 = between_groups(&est).unwrap();
        assert!((tau2 - 0.00018953125).abs() < 1e-12, "{tau2}");
        let close = [(1.04, 0.0004), (1.041, 0.0009), (1.039, 0.0001), (1.040, 0.0016)];
        assert_eq!(between_groups(&close), Some(0.0));
        assert_eq!(between_groups(&est[..2]), None, "two groups cannot tell");
        assert_eq!(between_groups(&[(1.0, 0.0), (1.1, 0.1), (1.2, 0.1)]), None);
    }

    /// Renewals in quarters that expand alike widen nothing; quarters that expand apart add
    /// their spread to the level's uncertainty.
    #[test]
    fn the_expansion_level_is_as_uncertain_as_quarters_differ() {
        // Ten renewals a quarter in four quarters, 10,000 due each; within a quarter they
        // expand by 2% +- 1%.
        let quarters = |levels: [i64; 4]| -> Vec<(i64, i64, i64)> {
            let mut pairs = Vec::new();
            for (q, level) in levels.into_iter().enumerate() {
                for k in 0..10 {
                    pairs.push((
                        10_000,
                        10_000 + level + if k % 2 == 0 { 100 } else { -100 },
                        q as i64,
                    ));
                }
            }
            pairs
        };
        let (r_alike, _, rel_alike) = ratio_of(&quarters([200, 200, 200, 200]));
        let (r_apart, _, rel_apart) = ratio_of(&quarters([0, 400, 100, 300]));
        assert!((r_alike - 1.02).abs() < 1e-12 && (r_apart - 1.02).abs() < 1e-12);
        // Alike: the ratio estimator's own error, sqrt(40 * 100^2) / 400,000 = 0.0015811...
        // relative to 1.02.
        let own = (40.0f64 * 100.0 * 100.0).sqrt() / 400_000.0 / 1.02;
        assert!((rel_alike - own).abs() < 1e-9, "{rel_alike} vs {own}");
        // Apart: quarters at 1.00, 1.04, 1.01, 1.03, each with a sampling variance of
        // 1e-5: Q = 1e5 * 0.001 = 100 on 3 degrees of freedom, tau^2 = 97 / 3e5; with the
        // pooled ratio's own variance 1.4e6 / 1.6e11, sqrt(8.75e-6 + 3.2333e-4) / 1.02.
        let want = (8.75e-6f64 + 97.0 / 3e5).sqrt() / 1.02;
        assert!((rel_apart - want).abs() < 1e-9, "{rel_apart} vs {want}");
    }

    fn item(account: &str, arr: i64, p: f64, csm: &str, due: &str) -> Item {
        let s = Settings::default();
        Item {
            account: account.into(),
            subscription_id: Some(format!("{account}-sub")),
            kind: Kind::Term,
            due: Timestamp::parse(due).unwrap(),
            arr_due: arr,
            arr_if_renewed: arr,
            p,
            se: 0.0,
            source: Source::Model,
            category: s.category(p),
            csm: Some(csm.into()),
            segment: None,
            drivers: Vec::new(),
            overridden: None,
        }
    }

    /// A book of four contracts with given probabilities:
    ///   A 120,000 at 0.95 (commit), B 60,000 at 0.7 (probable), C 30,000 at 0.4 and
    ///   D 10,000 at 0.5 (at risk); the CSM calls D lost (amount 0, at risk).
    /// Expected: 114,000 + 42,000 + 12,000 + 5,000 = 173,000; called: 168,000.
    /// The 80% interval, from the 16 outcomes enumerated in Python (itertools.product):
    /// P(sum <= 100,000) = 0.05 (A lost: 0.05 of the mass, spread below 120,000), and
    /// P(sum <= 120,000) = 0.05 + 0.95 x 0.3 x 0.6 x 0.5 = 0.1355 >= 0.1, so the 10% quantile
    /// is 120,000; P(sum <= 210,000) = 1 - P(A, B, C and D in) ... = 0.867 < 0.9, so the 90%
    /// quantile is 220,000 (everything renews). Called (D certain at 0): 120,000 to
    /// 210,000 (P(sum <= 180,000) = 0.734, the top outcome A+B+C = 0.266).
    #[test]
    fn a_hand_made_book_gives_exact_totals_and_interval() {
        let mut items = vec![
            item("A", 120_000, 0.95, "ann", "2027-01-15"),
            item("B", 60_000, 0.7, "ann", "2027-02-10"),
            item("C", 30_000, 0.4, "bob", "2027-02-20"),
            item("D", 10_000, 0.5, "bob", "2027-03-31"),
        ];
        let cats: Vec<Category> = items.iter().map(|i| i.category).collect();
        assert_eq!(
            cats,
            [Category::Commit, Category::Probable, Category::AtRisk, Category::AtRisk]
        );
        items[3].overridden = Some(Override {
            account: "D".into(),
            subscription_id: None,
            category: Category::AtRisk,
            amount: Some(0),
            reason: Some("moving to a competitor".into()),
            author: Some("bob".into()),
            at: Timestamp::parse("2026-12-01").unwrap(),
        });
        let refs: Vec<&Item> = items.iter().collect();
        let m = totals(&refs, 0.8, false, &Spread::default());
        assert_eq!((m.contracts, m.arr_due, m.expected), (4, 220_000, 173_000));
        assert_eq!((m.low, m.high, m.method), (120_000, 220_000, "exact"));
        let want = |n, arr_due, expected| CategoryTotal { contracts: n, arr_due, expected };
        assert_eq!(
            m.categories,
            [want(1, 120_000, 114_000), want(1, 60_000, 42_000), want(2, 40_000, 17_000)]
        );
        let c = totals(&refs, 0.8, true, &Spread::default());
        assert_eq!((c.expected, c.low, c.high), (168_000, 120_000, 210_000));
        assert_eq!(c.categories[2], want(2, 40_000, 12_000));
        // By CSM and by month: each group's own distribution.
        let by_csm = groups(&items, GroupBy::Csm, 0.8, &Spread::default());
        let keys: Vec<(&str, i64, i64)> =
            by_csm.iter().map(|(k, m, c)| (k.as_str(), m.expected, c.expected)).collect();
        assert_eq!(keys, [("ann", 156_000, 156_000), ("bob", 17_000, 12_000)]);
        // ann: A and B; P(<= 60,000) = 0.05 x 1 = 0.05, P(<= 120,000) = 0.05 + 0.95 x 0.3
        // = 0.335: the 10% quantile is 120,000; the 90% is 180,000 (0.665 for both).
        assert_eq!((by_csm[0].1.low, by_csm[0].1.high), (120_000, 180_000));
        let by_month = groups(&items, GroupBy::Month, 0.8, &Spread::default());
        let months: Vec<&str> = by_month.iter().map(|g| g.0.as_str()).collect();
        assert_eq!(months, ["2027-01", "2027-02", "2027-03"]);
        assert_eq!(by_month[1].1.expected, 54_000);
    }

    #[test]
    fn categories_follow_the_thresholds() {
        let s = Settings { commit: 0.8, probable: 0.5, ..Settings::default() };
        assert_eq!(s.category(0.8), Category::Commit);
        assert_eq!(s.category(0.79), Category::Probable);
        assert_eq!(s.category(0.5), Category::Probable);
        assert_eq!(s.category(0.49), Category::AtRisk);
    }

    /// Two contracts of one account share its fate: A 100 at 0.9 and B 50 at 0.6 renew as
    /// one draw U (A when U < 0.9, B when U < 0.6): nothing with 0.1, both (150) with 0.6,
    /// A alone (100) with 0.3. The 80% interval is [0, 150]. Held by two accounts, they are
    /// independent: 0 with 0.04, 50 with 0.06, 100 with 0.36, 150 with 0.54; the 10%
    /// quantile is 50.
    #[test]
    fn an_accounts_contracts_share_its_fate() {
        let (a, mut b) = (
            item("acme", 100, 0.9, "sam", "2027-01-15"),
            item("acme", 50, 0.6, "sam", "2027-02-01"),
        );
        let spread = Spread::default();
        let t = totals(&[&a, &b], 0.8, false, &spread);
        assert_eq!((t.low, t.high, t.expected), (0, 150, 120));
        b.account = "bolt".into();
        let t = totals(&[&a, &b], 0.8, false, &spread);
        assert_eq!((t.low, t.high, t.expected), (50, 150, 120));
    }

    /// The calibration's uncertainty widens the interval and leaves the expected total:
    /// 100 contracts of 1,000 at 0.8 in 100 accounts. Certain probabilities: a binomial,
    /// 80% interval [75, 85] contracts. With a standard error of 0.5 on their common
    /// log-odds: P(sum <= k) = integral of Binomial(100, sigmoid(logit 0.8 + 0.5 z)) over
    /// z ~ N(0, 1), integrated in Python with the trapezoid rule on 4,001 points over
    /// [-8, 8] (not the quadrature used here): 10% quantile 67 (cdf 0.0985 at 66, 0.1140
    /// at 67), 90% quantile 90 (0.8983 at 89, 0.9254 at 90).
    #[test]
    fn an_uncertain_calibration_widens_the_interval() {
        let mut items: Vec<Item> =
            (0..100).map(|k| item(&format!("a{k}"), 1000, 0.8, "sam", "2027-01-15")).collect();
        let spread = Spread::default();
        let refs: Vec<&Item> = items.iter().collect();
        let t = totals(&refs, 0.8, false, &spread);
        assert_eq!((t.low, t.high, t.expected), (75_000, 85_000, 80_000));
        items.iter_mut().for_each(|i| i.se = 0.5);
        let refs: Vec<&Item> = items.iter().collect();
        let t = totals(&refs, 0.8, false, &spread);
        assert_eq!((t.low, t.high, t.expected), (67_000, 90_000, 80_000));
    }
}
