//! Kaplan-Meier survival: the product-limit estimate, Greenwood variance, pointwise
//! confidence intervals, the median with its interval, the restricted mean.
//!
//! Conventions follow lifelines (and R's `survival`): at a time where both happen, events
//! come before censorings (a subject censored at `t` is at risk at `t`); the median is the
//! first time the survival falls to 0.5 or below.

use crate::StatsError;
use crate::special::normal_ppf;

/// How pointwise confidence intervals are built from the Greenwood variance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CiMethod {
    /// On `ln(-ln S)` (lifelines' "exponential Greenwood", R's `log-log`): always in [0, 1].
    #[default]
    LogLog,
    /// On `ln S` (R's default `log`), capped at 1.
    Log,
    /// On `S` itself, clipped to [0, 1].
    Plain,
}

impl CiMethod {
    pub fn parse(s: &str) -> Option<CiMethod> {
        match s {
            "loglog" | "log-log" => Some(CiMethod::LogLog),
            "log" => Some(CiMethod::Log),
            "plain" | "linear" => Some(CiMethod::Plain),
            _ => None,
        }
    }
}

/// One row of the survival table: a distinct observed time.
#[derive(Clone, Debug, PartialEq)]
pub struct KmRow {
    pub t: f64,
    /// At risk just before `t`.
    pub at_risk: u64,
    pub events: u64,
    pub censored: u64,
    pub survival: f64,
    /// Greenwood's sum `Σ d / (n (n - d))` up to `t`: `Var(S) ≈ S² × sum`.
    pub greenwood: f64,
    pub ci: [f64; 2],
}

/// A fitted Kaplan-Meier curve.
#[derive(Clone, Debug, PartialEq)]
pub struct KaplanMeier {
    pub n: u64,
    pub events: u64,
    pub rows: Vec<KmRow>,
    pub alpha: f64,
    pub method: CiMethod,
}

/// Fits the curve. `alpha` = 0.05 gives 95% intervals.
pub fn kaplan_meier(
    durations: &[f64],
    events: &[bool],
    alpha: f64,
    method: CiMethod,
) -> Result<KaplanMeier, StatsError> {
    if durations.len() != events.len() {
        return Err(StatsError::Shape("durations and events differ in length".into()));
    }
    if durations.is_empty() {
        return Err(StatsError::Empty("no observations".into()));
    }
    if let Some(i) = durations.iter().position(|d| !d.is_finite() || *d < 0.0) {
        return Err(StatsError::Invalid(format!(
            "row {}: duration {} is not a non-negative number",
            i + 1,
            durations[i]
        )));
    }
    // One sort key per row: the bits of a non-negative float order as the float does (+0.0
    // for -0.0), shifted to make room for a low bit that puts events before censorings.
    let mut keys: Vec<u64> = durations
        .iter()
        .zip(events)
        .map(|(d, e)| ((d + 0.0).to_bits() << 1) | u64::from(!*e))
        .collect();
    {
        use rayon::prelude::*;
        keys.par_sort_unstable();
    }
    let z = normal_ppf(1.0 - alpha / 2.0);
    let mut rows = Vec::new();
    let mut at_risk = durations.len() as u64;
    let (mut s, mut gw) = (1.0f64, 0.0f64);
    let mut i = 0;
    while i < keys.len() {
        let bits = keys[i] >> 1;
        let t = f64::from_bits(bits);
        let (mut d, mut c) = (0u64, 0u64);
        while i < keys.len() && keys[i] >> 1 == bits {
            if keys[i] & 1 == 0 {
                d += 1
            } else {
                c += 1
            }
            i += 1;
        }
        if d > 0 {
            let n = at_risk as f64;
            s *= 1.0 - d as f64 / n;
            gw += if at_risk > d { d as f64 / (n * (n - d as f64)) } else { f64::INFINITY };
        }
        rows.push(KmRow {
            t,
            at_risk,
            events: d,
            censored: c,
            survival: s,
            greenwood: gw,
            ci: interval(s, gw, z, method),
        });
        at_risk -= d + c;
    }
    let events_n = events.iter().filter(|e| **e).count() as u64;
    Ok(KaplanMeier { n: durations.len() as u64, events: events_n, rows, alpha, method })
}

fn interval(s: f64, gw: f64, z: f64, method: CiMethod) -> [f64; 2] {
    if s >= 1.0 {
        return [1.0, 1.0];
    }
    if s <= 0.0 || !gw.is_finite() {
        return [0.0, if s <= 0.0 { 0.0 } else { 1.0 }];
    }
    let se = gw.sqrt();
    match method {
        CiMethod::LogLog => {
            let v = s.ln();
            let a = z * se / v.abs();
            [s.powf(a.exp()), s.powf((-a).exp())]
        }
        CiMethod::Log => [s * (-z * se).exp(), (s * (z * se).exp()).min(1.0)],
        CiMethod::Plain => [(s - z * s * se).max(0.0), (s + z * s * se).min(1.0)],
    }
}

impl KaplanMeier {
    /// The row in force at `t` (the last distinct time at or before it), if any.
    fn row_at(&self, t: f64) -> Option<&KmRow> {
        let k = self.rows.partition_point(|r| r.t <= t);
        k.checked_sub(1).map(|k| &self.rows[k])
    }

    /// `S(t)` (right-continuous: events at `t` count).
    pub fn survival_at(&self, t: f64) -> f64 {
        self.row_at(t).map_or(1.0, |r| r.survival)
    }

    /// The confidence interval of `S(t)`.
    pub fn ci_at(&self, t: f64) -> [f64; 2] {
        self.row_at(t).map_or([1.0, 1.0], |r| r.ci)
    }

    /// The first time the curve `f` falls to `q` or below.
    fn first_at_or_below(&self, q: f64, f: impl Fn(&KmRow) -> f64) -> Option<f64> {
        self.rows.iter().find(|r| f(r) <= q).map(|r| r.t)
    }

    /// The median survival time; `None` if the curve never reaches 0.5.
    pub fn median(&self) -> Option<f64> {
        self.quantile(0.5)
    }

    /// The first time the survival is at or below `q`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.first_at_or_below(q, |r| r.survival)
    }

    /// The interval of the median as lifelines computes it: where the lower and the upper
    /// pointwise bounds cross 0.5 (`None` for a bound that never does).
    pub fn median_ci(&self) -> [Option<f64>; 2] {
        [self.first_at_or_below(0.5, |r| r.ci[0]), self.first_at_or_below(0.5, |r| r.ci[1])]
    }

    /// The restricted mean survival time up to `tau`: the area under the curve on [0, tau].
    pub fn restricted_mean(&self, tau: f64) -> f64 {
        let (mut area, mut last_t, mut s) = (0.0, 0.0f64, 1.0);
        for r in &self.rows {
            if r.t >= tau {
                break;
            }
            area += s * (r.t - last_t);
            last_t = r.t;
            s = r.survival;
        }
        area + s * (tau - last_t).max(0.0)
    }
}
