//! The churn model: gradient-boosted trees on point-in-time features, early-stopped and
//! Platt-calibrated on the latest labelled snapshots (later than those it trains on), with
//! each prediction's drivers (TreeSHAP contributions) in plain words; and a logistic
//! regression baseline.

use crate::HealthError;
use crate::features::{CATEGORICAL, Cause, DEFS, N, Outcome, Risky, Row};
use serde::{Deserialize, Serialize};
use tenure_core::time::Timestamp;
use tenure_stats::gbm::{self, Column, Gbm, Params};

/// The version of the model file format.
pub const FORMAT: u32 = 1;

/// A trained churn model, as stored in a model file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    /// What the model predicts (churn, or a lost renewal) within this many days of a
    /// snapshot.
    #[serde(default)]
    pub outcome: Outcome,
    pub horizon_days: i64,
    /// The snapshots used: first and last instant (RFC 3339), count and churners.
    pub first_snapshot: String,
    pub last_snapshot: String,
    pub n_snapshots: usize,
    pub n_churned: usize,
    /// Category codes of the categorical features, in code order.
    pub levels: [Vec<String>; 2],
    pub gbm: Gbm,
    /// `P = σ(a × raw + b)`.
    pub platt: [f64; 2],
    /// Each numeric feature's mean over the training snapshots (known values): a driver is
    /// named only when its value is on the risky side of it (`NaN` when never known).
    #[serde(with = "tenure_stats::floats")]
    pub means: Vec<f64>,
}

/// One reason behind a prediction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Driver {
    pub feature: &'static str,
    pub cause: Cause,
    /// Contribution to the log-odds of churn (positive = more risk).
    pub contribution: f64,
    pub text: String,
}

/// The training rows as the trees read them.
pub fn columns(rows: &[&Row], levels: &[Vec<String>; 2]) -> Vec<Column> {
    let mut cols: Vec<Column> =
        (0..N).map(|f| Column::Numeric(rows.iter().map(|r| r.num[f]).collect())).collect();
    for (k, lv) in levels.iter().enumerate() {
        let code =
            |v: Option<&String>| v.and_then(|v| lv.iter().position(|l| l == v)).map(|i| i as u32);
        cols.push(Column::Categorical(
            rows.iter()
                .map(|r| code(if k == 0 { r.plan.as_ref() } else { r.segment.as_ref() }))
                .collect(),
        ));
    }
    cols
}

fn levels_of(rows: &[&Row]) -> [Vec<String>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for r in rows {
        for (k, v) in [&r.plan, &r.segment].into_iter().enumerate() {
            if let Some(v) = v
                && !out[k].contains(v)
            {
                out[k].push(v.clone());
            }
        }
    }
    out.iter_mut().for_each(|l| l.sort());
    out
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Tree settings for churn data: a slower rate with early stopping and small trees (churn
/// signals interact little; on generated companies 7 leaves of at least 20 snapshots rank
/// and calibrate better than LightGBM's 31 leaves or 15 leaves of 40).
pub fn params() -> Params {
    Params {
        rounds: 400,
        learning_rate: 0.05,
        num_leaves: 7,
        min_data_in_leaf: 20,
        early_stopping: 30,
        ..Params::default()
    }
}

/// Trains on labelled snapshots: the trees on those before the last fifth of the snapshot
/// instants, early stopping and calibration on that last fifth.
pub fn train(
    rows: &[&Row],
    y: &[bool],
    at: &[Timestamp],
    horizon_days: i64,
    outcome: Outcome,
) -> Result<Model, HealthError> {
    let n = rows.len();
    let churned = y.iter().filter(|v| **v).count();
    if n < 50 || churned < 5 || churned == n {
        return Err(HealthError::NotEnoughData(format!(
            "{n} labelled snapshots with {churned} churns; at least 50 and 5 are needed"
        )));
    }
    let mut times: Vec<Timestamp> = at.to_vec();
    times.sort();
    times.dedup();
    // The cut: the instant at which the last fifth of the rows begins.
    let mut sorted: Vec<Timestamp> = at.to_vec();
    sorted.sort();
    let mut cut = sorted[n * 4 / 5];
    if cut == sorted[0] {
        cut = times.get(1).copied().unwrap_or(cut);
    }
    let fit_rows: Vec<usize> = (0..n).filter(|i| at[*i] < cut).collect();
    let cal_rows: Vec<usize> = (0..n).filter(|i| at[*i] >= cut).collect();
    let both = |idx: &[usize]| {
        let k = idx.iter().filter(|i| y[**i]).count();
        k > 0 && k < idx.len()
    };
    let levels = levels_of(rows);
    let pick = |idx: &[usize]| -> (Vec<&Row>, Vec<bool>) {
        (idx.iter().map(|i| rows[*i]).collect(), idx.iter().map(|i| y[*i]).collect())
    };
    let (gbm, platt) = if both(&fit_rows) && both(&cal_rows) {
        let (fr, fy) = pick(&fit_rows);
        let (cr, cy) = pick(&cal_rows);
        let (fc, cc) = (columns(&fr, &levels), columns(&cr, &levels));
        let gbm = gbm::train(&fc, &fy, Some((&cc, &cy)), &params())?;
        let raw = gbm.predict_raw(&cc);
        let (a, b) = tenure_stats::eval::platt(&cy, &raw)?;
        (gbm, [a, b])
    } else {
        // Too little history to hold a slice back: all rows, a fixed number of rounds, the
        // trees' own probabilities.
        let all: Vec<usize> = (0..n).collect();
        let (r, yy) = pick(&all);
        let p = Params { rounds: 150, early_stopping: 0, ..params() };
        (gbm::train(&columns(&r, &levels), &yy, None, &p)?, [1.0, 0.0])
    };
    let means = (0..N)
        .map(|f| {
            let v: Vec<f64> = rows.iter().map(|r| r.num[f]).filter(|x| x.is_finite()).collect();
            if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
        })
        .collect();
    Ok(Model {
        means,
        outcome,
        format: FORMAT,
        horizon_days,
        first_snapshot: times[0].to_string(),
        last_snapshot: times[times.len() - 1].to_string(),
        n_snapshots: n,
        n_churned: churned,
        levels,
        gbm,
        platt,
    })
}

impl Model {
    /// Calibrated churn probabilities.
    pub fn predict(&self, rows: &[&Row]) -> Vec<f64> {
        let raw = self.gbm.predict_raw(&columns(rows, &self.levels));
        raw.into_iter().map(|r| sigmoid(self.platt[0] * r + self.platt[1])).collect()
    }

    /// Probabilities and, for each row, up to `top` drivers that raise the risk: features a
    /// CSM can act on, whose value is on the risky side of the training mean, largest
    /// contribution first (contributions under 0.02 in log-odds are not named).
    pub fn explain(&self, rows: &[&Row], top: usize) -> Vec<(f64, Vec<Driver>)> {
        let cols = columns(rows, &self.levels);
        let phi = self.gbm.contributions(&cols);
        phi.into_iter()
            .zip(rows)
            .map(|(c, row)| {
                let raw: f64 = c.iter().sum();
                // The calibration scales the log-odds by a: contributions scale alike.
                let p = sigmoid(self.platt[0] * raw + self.platt[1]);
                let mut idx: Vec<usize> = (0..c.len() - 1)
                    .filter(|f| c[*f] * self.platt[0] > 0.02 && self.risky(*f, row))
                    .collect();
                idx.sort_by(|a, b| c[*b].total_cmp(&c[*a]));
                let drivers = idx
                    .into_iter()
                    .take(top)
                    .map(|f| driver(f, row, c[f] * self.platt[0]))
                    .collect();
                (p, drivers)
            })
            .collect()
    }

    /// Whether feature `f` at value `v` is an actionable sign of risk.
    fn risky(&self, f: usize, row: &Row) -> bool {
        if f >= N || !DEFS[f].cause.actionable() || !row.num[f].is_finite() {
            return false;
        }
        let v = row.num[f];
        let mean = self.means.get(f).copied().unwrap_or(f64::NAN);
        match DEFS[f].risky {
            Risky::Higher => v > mean,
            Risky::Lower => v < mean,
            Risky::Decline => v < mean.min(0.0),
            Risky::Rise => v > mean.max(0.0),
            Risky::Neither => false,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a model serialises")
    }

    pub fn from_json(s: &str) -> Result<Model, HealthError> {
        let m: Model = serde_json::from_str(s).map_err(|e| HealthError::Model(e.to_string()))?;
        if m.format != FORMAT {
            return Err(HealthError::Model(format!(
                "format {} (this version reads {FORMAT}); train the model again",
                m.format
            )));
        }
        Ok(m)
    }
}

/// Names feature `f` of `row` as a driver.
pub fn driver(f: usize, row: &Row, contribution: f64) -> Driver {
    if f < N {
        let d = &DEFS[f];
        let v = row.num[f];
        let text = if v.is_nan() {
            format!("{} unknown", d.name.replace('_', " "))
        } else {
            (d.describe)(v)
        };
        Driver { feature: d.name, cause: d.cause, contribution, text }
    } else {
        let k = f - N;
        let v = if k == 0 { &row.plan } else { &row.segment };
        Driver {
            feature: CATEGORICAL[k],
            cause: Cause::Account,
            contribution,
            text: format!("{} {}", CATEGORICAL[k], v.as_deref().unwrap_or("unknown")),
        }
    }
}

/// The logistic-regression baseline: numeric features, missing values set to the training
/// mean, standardised, L2 = 1.
pub struct Baseline {
    mean: Vec<f64>,
    sd: Vec<f64>,
    fit: tenure_stats::logit::Logit,
}

impl Baseline {
    pub fn train(rows: &[&Row], y: &[bool]) -> Result<Baseline, HealthError> {
        let mut mean = vec![0.0; N];
        let mut sd = vec![0.0; N];
        for f in 0..N {
            let v: Vec<f64> = rows.iter().map(|r| r.num[f]).filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                continue;
            }
            mean[f] = v.iter().sum::<f64>() / v.len() as f64;
            sd[f] = (v.iter().map(|x| (x - mean[f]).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        }
        let b = Baseline { mean, sd, fit: tenure_stats::logit::Logit::default() };
        let x: Vec<f64> = rows.iter().flat_map(|r| b.standardise(r)).collect();
        let fit = tenure_stats::logit::fit(&x, N, y, 1.0)?;
        Ok(Baseline { fit, ..b })
    }

    fn standardise(&self, r: &Row) -> Vec<f64> {
        (0..N)
            .map(|f| {
                let v = if r.num[f].is_finite() { r.num[f] } else { self.mean[f] };
                if self.sd[f] > 0.0 { (v - self.mean[f]) / self.sd[f] } else { 0.0 }
            })
            .collect()
    }

    pub fn predict(&self, rows: &[&Row]) -> Vec<f64> {
        rows.iter()
            .map(|r| {
                let z: f64 =
                    self.standardise(r).iter().zip(&self.fit.coef).map(|(x, c)| x * c).sum();
                sigmoid(self.fit.intercept + z)
            })
            .collect()
    }
}
