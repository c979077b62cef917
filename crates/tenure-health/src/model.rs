//! The churn model: the best of several learners on the account base's own history.
//! Gradient-boosted trees (two sizes), regularised logistic regressions and each scorecard
//! with learned weights are fitted on the older labelled snapshots and compared on the
//! latest ones (a time split inside the training window); the one with the lowest
//! log-loss there is fitted again on every snapshot and saved, with the comparison and a
//! verdict in words. Each prediction's drivers come from the chosen learner (TreeSHAP for
//! trees, coefficient × value for linear ones).

use crate::HealthError;
use crate::features::{CATEGORICAL, Cause, DEFS, N, Outcome, Risky, Row};
use crate::scorecard::{Reads, Scorecard, Scorecards};
use serde::{Deserialize, Serialize};
use tenure_core::time::{DAY, Timestamp};
use tenure_stats::eval;
use tenure_stats::gbm::{self, Column, Gbm, Params};

/// The version of the model file format (2: several learners and the selection).
pub const FORMAT: u32 = 2;

/// The most snapshots each candidate fits on, and is compared on, during the selection (a
/// sample of accounts beyond it): the comparison ranks learners, the final fit uses all.
pub const SELECT_ROWS: usize = 250_000;

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
    /// Each numeric feature's mean over the training snapshots (known values): a driver is
    /// named only when its value is on the risky side of it (`NaN` when never known).
    #[serde(with = "tenure_stats::floats")]
    pub means: Vec<f64>,
    /// The chosen learner, fitted on every snapshot.
    pub learner: Learner,
    /// How it was chosen.
    pub selection: Selection,
}

/// A learner, fitted.
#[derive(Clone, Debug, Serialize, Deserialize)]
// Externally tagged: an internally tagged enum reads through a buffer that cannot turn
// the trees' JSON map keys back into numbers.
#[serde(rename_all = "snake_case")]
pub enum Learner {
    /// Gradient-boosted trees; `P = σ(a × raw + b)`.
    Trees {
        gbm: Gbm,
        platt: [f64; 2],
    },
    Logistic(Linear),
    Scorecard(CardFit),
    /// The mean of its members' calibrated log-odds: trees and a linear model err
    /// differently, and on small bases their average ranks and calibrates better than either.
    Blend {
        members: Vec<Learner>,
    },
}

/// The most snapshots a logistic regression is fitted on (a regular sample beyond).
pub const LINEAR_ROWS: usize = 300_000;

/// A logistic regression on the numeric features (each `sign(x) ln(1 + |x|)`, a missing
/// value at the training mean, standardised), an indicator per numeric feature that is
/// sometimes missing, and one per frequent plan and segment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Linear {
    pub l2: f64,
    /// Per numeric feature, of the transformed values: mean and standard deviation.
    #[serde(with = "tenure_stats::floats")]
    pub mean: Vec<f64>,
    #[serde(with = "tenure_stats::floats")]
    pub sd: Vec<f64>,
    /// The numeric features with a missing-value indicator.
    pub missing: Vec<usize>,
    /// The plan and segment values with an indicator.
    pub onehot: [Vec<String>; 2],
    /// Coefficients: numeric features, missing indicators, plans, segments.
    #[serde(with = "tenure_stats::floats")]
    pub coef: Vec<f64>,
    pub intercept: f64,
}

/// A scorecard with weights learned from history ([`Scorecard::learn`]), its risk
/// (`1 - score / 100`, a missing score 0.5) calibrated by `σ(a × risk + b)`. The scorecards
/// file travels in the model so that the model means the same when the file changes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CardFit {
    pub scorecards: String,
    pub name: String,
    pub weights: Vec<f64>,
    /// Each measure's mean score on the training snapshots (what a driver compares with).
    #[serde(with = "tenure_stats::floats")]
    pub mean_scores: Vec<f64>,
    pub platt: [f64; 2],
    #[serde(skip)]
    card: Option<Box<Scorecard>>,
}

/// How the saved learner was chosen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub rule: String,
    /// Snapshots the candidates were fitted on, and those they were compared on (instants
    /// from `validation_from` to `validation_to`).
    pub fit_snapshots: usize,
    pub validation_snapshots: usize,
    pub validation_churned: usize,
    pub validation_from: String,
    pub validation_to: String,
    /// Best first.
    pub candidates: Vec<Candidate>,
    pub chosen: String,
    /// The choice in a sentence.
    pub verdict: String,
}

/// One learner's figures on the validation snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub log_loss: f64,
    pub auc: Option<f64>,
    pub ece: Option<f64>,
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
fn columns(rows: &[&Row], levels: &[Vec<String>; 2]) -> Vec<Column> {
    let mut cols: Vec<Column> =
        (0..N).map(|f| Column::Numeric(rows.iter().map(|r| r.num[f]).collect())).collect();
    for (k, lv) in levels.iter().enumerate() {
        let code =
            |v: Option<&String>| v.and_then(|v| lv.iter().position(|l| l == v)).map(|i| i as u32);
        cols.push(Column::Categorical(rows.iter().map(|r| code(category(r, k))).collect()));
    }
    cols
}

fn category(r: &Row, k: usize) -> Option<&String> {
    if k == 0 { r.plan.as_ref() } else { r.segment.as_ref() }
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

/// Tree settings for churn data: a slow rate with early stopping and small trees (churn
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

/// A learner's settings, before fitting: what the selection compares.
#[derive(Clone, Debug)]
enum Spec {
    Trees(Params),
    Logistic(f64),
    Scorecard(Scorecard),
    Blend(Vec<Spec>),
}

impl Spec {
    fn name(&self) -> String {
        match self {
            Spec::Trees(p) => format!("gradient-boosted trees ({} leaves)", p.num_leaves),
            Spec::Logistic(l2) => format!("logistic regression (L2 {l2})"),
            Spec::Scorecard(c) => format!("scorecard {}, learned weights", c.name),
            Spec::Blend(m) => {
                let names: Vec<String> = m.iter().map(Spec::name).collect();
                format!("blend of {}", names.join(" and "))
            }
        }
    }

    fn fit(
        &self,
        rows: &[&Row],
        y: &[bool],
        at: &[Timestamp],
        levels: &[Vec<String>; 2],
        source: &str,
    ) -> Result<Learner, HealthError> {
        match self {
            Spec::Trees(p) => fit_trees(rows, y, at, levels, p),
            Spec::Logistic(l2) => Linear::fit(rows, y, *l2).map(Learner::Logistic),
            Spec::Scorecard(c) => CardFit::fit(c, source, rows, y).map(Learner::Scorecard),
            Spec::Blend(m) => Ok(Learner::Blend {
                members: m
                    .iter()
                    .map(|s| s.fit(rows, y, at, levels, source))
                    .collect::<Result<_, _>>()?,
            }),
        }
    }
}

/// Trees on the snapshots before the last fifth of the snapshot instants, early stopping
/// and calibration on that last fifth; with too little history for that, all of them, a
/// fixed number of rounds and the trees' own probabilities.
fn fit_trees(
    rows: &[&Row],
    y: &[bool],
    at: &[Timestamp],
    levels: &[Vec<String>; 2],
    params: &Params,
) -> Result<Learner, HealthError> {
    let n = rows.len();
    let cut = last_fifth(at);
    let fit_rows: Vec<usize> = (0..n).filter(|i| at[*i] < cut).collect();
    let cal_rows: Vec<usize> = (0..n).filter(|i| at[*i] >= cut).collect();
    let pick = |idx: &[usize]| -> (Vec<&Row>, Vec<bool>) {
        (idx.iter().map(|i| rows[*i]).collect(), idx.iter().map(|i| y[*i]).collect())
    };
    if both_classes(&fit_rows, y) && both_classes(&cal_rows, y) {
        let (fr, fy) = pick(&fit_rows);
        let (cr, cy) = pick(&cal_rows);
        let (fc, cc) = (columns(&fr, levels), columns(&cr, levels));
        let gbm = gbm::train(&fc, &fy, Some((&cc, &cy)), params)?;
        let raw = gbm.predict_raw(&cc);
        let (a, b) = eval::platt(&cy, &raw)?;
        Ok(Learner::Trees { gbm, platt: [a, b] })
    } else {
        let p = Params { rounds: 150, early_stopping: 0, ..params.clone() };
        Ok(Learner::Trees {
            gbm: gbm::train(&columns(rows, levels), y, None, &p)?,
            platt: [1.0, 0.0],
        })
    }
}

/// Up to this many snapshots the selection compares learners on three rolling folds (their
/// figures are noisy on few snapshots); beyond it on one (the latest fifth).
pub const FOLDS_UNDER: usize = 200_000;

/// `k` consecutive ranges `[start, end)` of snapshot instants covering the latest fifth of
/// the rows (`k` = 1) or the latest two fifths (`k` = 3), of about equal rows.
fn folds(at: &[Timestamp], k: usize) -> Vec<(Timestamp, Timestamp)> {
    let mut sorted: Vec<Timestamp> = at.to_vec();
    sorted.sort();
    let n = sorted.len();
    let first = if k == 1 { n * 4 / 5 } else { n * 3 / 5 };
    let mut bounds: Vec<Timestamp> = (0..k).map(|g| sorted[first + (n - first) * g / k]).collect();
    bounds.dedup();
    // An instant's rows stay in one fold; the first fold never starts at the first instant.
    if bounds[0] == sorted[0]
        && let Some(t) = sorted.iter().copied().find(|t| *t > sorted[0])
    {
        bounds[0] = t;
        bounds.dedup();
    }
    let end = Timestamp(sorted[n - 1].0 + 1);
    bounds
        .iter()
        .enumerate()
        .map(|(g, s)| (*s, bounds.get(g + 1).copied().unwrap_or(end)))
        .collect()
}

/// The instant at which the last fifth of the rows begins (the second instant when the
/// first one holds more than four fifths).
fn last_fifth(at: &[Timestamp]) -> Timestamp {
    let mut sorted: Vec<Timestamp> = at.to_vec();
    sorted.sort();
    let cut = sorted[at.len() * 4 / 5];
    if cut == sorted[0] { sorted.iter().copied().find(|t| *t > cut).unwrap_or(cut) } else { cut }
}

fn both_classes(idx: &[usize], y: &[bool]) -> bool {
    let k = idx.iter().filter(|i| y[**i]).count();
    k > 0 && k < idx.len()
}

/// At most `max` of `idx`, by a hash of the row's account so that an account's snapshots
/// stay together (`account(i)` names row `i`'s account), the same ones every run. The hash
/// is not the one `backtest::training_months` samples accounts with: on a base sampled
/// by that one every account would pass (at 1,000,000 accounts the selection fitted on
/// 732,411 snapshots instead of 250,000).
fn sample(idx: Vec<usize>, max: usize, account: &dyn Fn(usize) -> u64) -> Vec<usize> {
    if idx.len() <= max {
        return idx;
    }
    let per_mille = (max as u64 * 1000 / idx.len() as u64).max(1);
    let spread = |a: u64| tenure_stats::mix64(a.wrapping_add(0x632b_e59b_d9b4_e019));
    idx.into_iter().filter(|i| spread(account(*i)) % 1000 < per_mille).collect()
}

/// What the selection compares: trees of two sizes (the small ones for small bases),
/// logistic regressions of three strengths and each scorecard with learned weights.
fn candidates(cards: Option<&Scorecards>) -> Vec<Spec> {
    let mut out = vec![
        Spec::Trees(params()),
        Spec::Trees(Params { num_leaves: 3, ..params() }),
        Spec::Logistic(1.0),
        Spec::Logistic(10.0),
        Spec::Logistic(100.0),
    ];
    if let Some(cards) = cards {
        out.extend(cards.all().map(|c| Spec::Scorecard(c.clone())));
    }
    out
}

/// Trains on labelled snapshots (`rows[i]` of account `account[i]` at `at[i]`, churned
/// within the horizon when `y[i]`): the selection, then the chosen learner on them all.
/// `cards` are the scorecards in force (compared with learned weights when given).
pub fn train(
    rows: &[&Row],
    y: &[bool],
    at: &[Timestamp],
    account: &[u32],
    horizon_days: i64,
    outcome: Outcome,
    cards: Option<&Scorecards>,
) -> Result<Model, HealthError> {
    enough(rows, y)?;
    let levels = levels_of(rows);
    let (spec, selection) = select(rows, y, at, account, horizon_days, &levels, cards)?;
    fit_model(rows, y, at, horizon_days, outcome, cards, &levels, spec, selection)
}

/// Trains the trees alone, without a selection (the renewal forecast's model: its
/// backtest of twelve quarters is measured with them; `tenure model train --learner
/// trees`).
pub fn train_trees(
    rows: &[&Row],
    y: &[bool],
    at: &[Timestamp],
    horizon_days: i64,
    outcome: Outcome,
) -> Result<Model, HealthError> {
    enough(rows, y)?;
    let levels = levels_of(rows);
    let spec = Spec::Trees(params());
    let chosen = spec.name();
    let selection = Selection {
        verdict: format!("{chosen}: asked for, not compared with other learners"),
        chosen,
        ..Selection::default()
    };
    fit_model(rows, y, at, horizon_days, outcome, None, &levels, spec, selection)
}

fn enough(rows: &[&Row], y: &[bool]) -> Result<(), HealthError> {
    let n = rows.len();
    let churned = y.iter().filter(|v| **v).count();
    if n < 50 || churned < 5 || churned == n {
        return Err(HealthError::NotEnoughData(format!(
            "{n} labelled snapshots with {churned} churns; at least 50 and 5 are needed"
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn fit_model(
    rows: &[&Row],
    y: &[bool],
    at: &[Timestamp],
    horizon_days: i64,
    outcome: Outcome,
    cards: Option<&Scorecards>,
    levels: &[Vec<String>; 2],
    spec: Spec,
    selection: Selection,
) -> Result<Model, HealthError> {
    let mut times: Vec<Timestamp> = at.to_vec();
    times.sort();
    times.dedup();
    let source = cards.map_or("", |c| c.source.as_str());
    let learner = spec.fit(rows, y, at, levels, source)?;
    let (n, churned) = (rows.len(), y.iter().filter(|v| **v).count());
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
        levels: levels.clone(),
        learner,
        selection,
    })
}

/// The rule the selection states.
pub const RULE: &str = "the default (small trees and a logistic regression, averaged) unless \
     another learner's log-loss on the latest snapshots of the training window is lower by more \
     than two standard errors (paired, clustered by account), then the lowest of those; each \
     learner fitted on the snapshots whose outcome was known before the ones it predicts";

/// The learner kept unless another is clearly better: on small bases it ranks at least as
/// well as either of its members (measured on generated companies of 300 to 1,000
/// accounts).
fn default_spec() -> Spec {
    Spec::Blend(vec![Spec::Trees(Params { num_leaves: 3, ..params() }), Spec::Logistic(10.0)])
}

/// The fewest churned among the latest snapshots with which learners are compared; with
/// fewer the default stays (on 300-account companies a lead of two standard errors on 37
/// churned still picked a learner that ranked worse on the following year).
pub const MIN_CHURNED: usize = 100;

/// The mean of paired differences `diff` (row `i` of account `account[i]`) and its standard
/// error, clustered by account.
fn paired_lead(diff: &[f64], account: &[u64]) -> (f64, f64) {
    let n = diff.len() as f64;
    if diff.is_empty() {
        return (0.0, f64::INFINITY);
    }
    let mean = diff.iter().sum::<f64>() / n;
    // Ordered by account: the sum's last bits must not depend on a hash map's order.
    let mut by: std::collections::BTreeMap<u64, f64> = Default::default();
    for (d, a) in diff.iter().zip(account) {
        *by.entry(*a).or_default() += d - mean;
    }
    let g = by.len() as f64;
    let v: f64 = by.values().map(|s| s * s).sum::<f64>() / (n * n);
    // The small-sample factor of clustered errors, g / (g - 1).
    let se = if g > 1.0 { (v * g / (g - 1.0)).sqrt() } else { f64::INFINITY };
    (mean, se)
}

/// Compares the candidates on a time split of the training snapshots: fitted on those whose
/// horizon ended by the cut (else those before it), compared on those from the cut on.
fn select(
    rows: &[&Row],
    y: &[bool],
    at: &[Timestamp],
    account: &[u32],
    horizon_days: i64,
    levels: &[Vec<String>; 2],
    cards: Option<&Scorecards>,
) -> Result<(Spec, Selection), HealthError> {
    let n = rows.len();
    let who = |i: usize| account.get(i).copied().unwrap_or(i as u32) as u64;
    // The folds: consecutive groups of the latest instants, each predicted by candidates
    // fitted on the snapshots whose outcome was known at its start (else those before it).
    let folds: Vec<(Vec<usize>, Vec<usize>)> = folds(at, if n <= FOLDS_UNDER { 3 } else { 1 })
        .into_iter()
        .filter_map(|(start, end)| {
            let val: Vec<usize> = (0..n).filter(|i| at[*i] >= start && at[*i] < end).collect();
            let mut fit: Vec<usize> =
                (0..n).filter(|i| at[*i].0 + horizon_days * DAY <= start.0).collect();
            if fit.len() < 50 || !both_classes(&fit, y) {
                fit = (0..n).filter(|i| at[*i] < start).collect();
            }
            (fit.len() >= 50 && both_classes(&fit, y) && !val.is_empty())
                .then(|| (sample(fit, SELECT_ROWS, &who), sample(val, SELECT_ROWS, &who)))
        })
        .collect();
    let val: Vec<usize> = folds.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    if folds.is_empty() || !both_classes(&val, y) {
        // Too little history to compare: the most regularised logistic model, the safest
        // on few snapshots.
        let spec = Spec::Logistic(100.0);
        let chosen = spec.name();
        let verdict = format!(
            "{chosen}: too little history to compare learners ({n} snapshots, {} churned); the strongly regularised logistic model is the safest on few snapshots",
            y.iter().filter(|v| **v).count()
        );
        return Ok((
            spec,
            Selection { rule: RULE.into(), chosen, verdict, ..Selection::default() },
        ));
    }
    let pick = |idx: &[usize]| -> (Vec<&Row>, Vec<bool>, Vec<Timestamp>) {
        (
            idx.iter().map(|i| rows[*i]).collect(),
            idx.iter().map(|i| y[*i]).collect(),
            idx.iter().map(|i| at[*i]).collect(),
        )
    };
    let (_, vy, va) = pick(&val);
    let n_fit = folds.iter().map(|(f, _)| f.len()).max().unwrap_or(0);
    let source = cards.map_or("", |c| c.source.as_str());
    let mut scored: Vec<(Spec, Candidate)> = Vec::new();
    // Each candidate's calibrated log-odds of the validation rows.
    let mut predicted: Vec<(Spec, Vec<f64>)> = Vec::new();
    'candidates: for spec in candidates(cards) {
        let mut z = Vec::with_capacity(vy.len());
        for (fit, val) in &folds {
            let (fr, fy, fa) = pick(fit);
            // A learner that cannot be fitted here (a scorecard no measure of which lowers
            // risk, a singular fit) is not a candidate.
            let Ok(learner) = spec.fit(&fr, &fy, &fa, levels, source) else {
                continue 'candidates;
            };
            z.extend(learner.log_odds(&pick(val).0, levels));
        }
        predicted.push((spec, z));
    }
    // Each trees with each logistic regression, averaged as `Learner::Blend` does: their
    // log-odds are at hand.
    let mut blends = Vec::new();
    for (a, za) in predicted.iter().filter(|(s, _)| matches!(s, Spec::Trees(_))) {
        for (b, zb) in predicted.iter().filter(|(s, _)| matches!(s, Spec::Logistic(_))) {
            let z = za.iter().zip(zb).map(|(x, y)| 0.5 * (x + y)).collect();
            blends.push((Spec::Blend(vec![a.clone(), b.clone()]), z));
        }
    }
    predicted.extend(blends);
    // Per candidate: each validation row's log-loss (what the paired comparison reads).
    let per_row = |p: &[f64]| -> Vec<f64> {
        vy.iter()
            .zip(p)
            .map(|(y, p)| {
                let p = p.clamp(1e-15, 1.0 - 1e-15);
                if *y { -p.ln() } else { -(1.0 - p).ln() }
            })
            .collect()
    };
    let mut losses: Vec<Vec<f64>> = Vec::new();
    for (spec, z) in predicted {
        let p: Vec<f64> = z.into_iter().map(sigmoid).collect();
        let ll = per_row(&p);
        let log_loss = ll.iter().sum::<f64>() / ll.len().max(1) as f64;
        if !log_loss.is_finite() {
            continue;
        }
        let auc = eval::roc_auc(&vy, &p).ok().flatten();
        let ece = eval::calibration_table(&vy, &p, 10).ok().and_then(|t| eval::ece(&t));
        scored.push((spec.clone(), Candidate { name: spec.name(), log_loss, auc, ece }));
        losses.push(ll);
    }
    if scored.is_empty() {
        return Err(HealthError::NotEnoughData("no learner could be fitted".into()));
    }
    // The default stays unless a challenger's log-loss is lower by more than two standard
    // errors of the paired difference (clustered by account: an account's snapshots move
    // together); then the lowest such. On a few hundred accounts the figures are too noisy
    // to trust a smaller lead.
    let default_name = default_spec().name();
    let d = scored.iter().position(|(s, _)| s.name() == default_name);
    let accounts: Vec<u64> = val.iter().map(|i| who(*i)).collect();
    let lead = |k: usize, d: usize| -> (f64, f64) {
        let diff: Vec<f64> = losses[d].iter().zip(&losses[k]).map(|(a, b)| a - b).collect();
        paired_lead(&diff, &accounts)
    };
    let churned = vy.iter().filter(|v| **v).count();
    let clear: Vec<usize> = match d {
        None => (0..scored.len()).collect(),
        // Too few outcomes to tell learners apart: the default.
        Some(d) if churned < MIN_CHURNED => vec![d],
        Some(d) => (0..scored.len())
            .filter(|k| {
                let (mean, se) = lead(*k, d);
                *k == d || mean > 2.0 * se
            })
            .collect(),
    };
    let w = clear
        .iter()
        .copied()
        .filter(|k| d != Some(*k) || clear.len() == 1)
        .min_by(|a, b| scored[*a].1.log_loss.total_cmp(&scored[*b].1.log_loss))
        .or(d)
        .unwrap_or(0);
    let (best, won) = scored[w].clone();
    let (from, to) =
        (va.iter().min().expect("validation rows"), va.iter().max().expect("validation rows"));
    let f = |v: Option<f64>| v.map_or("n/a".into(), |x| format!("{x:.3}"));
    let on = format!(
        "on the {} latest snapshots ({} to {}, {churned} churned, in {} rolling fold{})",
        vy.len(),
        from.date_string(),
        to.date_string(),
        folds.len(),
        if folds.len() == 1 { "" } else { "s" }
    );
    let lowest =
        scored.iter().min_by(|a, b| a.1.log_loss.total_cmp(&b.1.log_loss)).expect("a candidate");
    let mut verdict = match d {
        Some(d) if d == w => {
            if lowest.1.name == won.name {
                format!("{}: the lowest log-loss ({:.4}) {on}", won.name, won.log_loss)
            } else if churned < MIN_CHURNED {
                format!(
                    "{}, the default: log-loss {:.4} {on}; {churned} churned are too few to tell learners apart (at least {MIN_CHURNED} are needed), so the lowest ({}, {:.4}) is not trusted",
                    won.name, won.log_loss, lowest.1.name, lowest.1.log_loss
                )
            } else {
                let (mean, se) =
                    lead(scored.iter().position(|c| c.1.name == lowest.1.name).expect("listed"), d);
                format!(
                    "{}, the default: log-loss {:.4} {on}; {} was lower ({:.4}) by {:.4}, within two standard errors ({:.4}), too little to trust on this history",
                    won.name,
                    won.log_loss,
                    lowest.1.name,
                    lowest.1.log_loss,
                    mean,
                    2.0 * se
                )
            }
        }
        Some(d) => {
            let (mean, se) = lead(w, d);
            format!(
                "{}: log-loss {:.4} {on}, lower than the default ({}, {:.4}) by {:.4}, more than two standard errors ({:.4})",
                won.name,
                won.log_loss,
                scored[d].1.name,
                scored[d].1.log_loss,
                mean,
                2.0 * se
            )
        }
        None => format!("{}: the lowest log-loss ({:.4}) {on}", won.name, won.log_loss),
    };
    verdict.push_str(&format!("; AUC {}, calibration error {}", f(won.auc), f(won.ece)));
    if let Some((_, trees)) = scored.iter().find(|(s, _)| matches!(s, Spec::Trees(_)))
        && !matches!(best, Spec::Trees(_) | Spec::Blend(_))
    {
        verdict.push_str(&format!(
            ". The trees' best was {:.4} (AUC {}): this base's history does not support them",
            trees.log_loss,
            f(trees.auc)
        ));
    }
    verdict.push('.');
    scored.sort_by(|a, b| a.1.log_loss.total_cmp(&b.1.log_loss));
    let selection = Selection {
        rule: RULE.into(),
        fit_snapshots: n_fit,
        validation_snapshots: vy.len(),
        validation_churned: churned,
        validation_from: from.to_string(),
        validation_to: to.to_string(),
        chosen: won.name.clone(),
        candidates: scored.into_iter().map(|(_, c)| c).collect(),
        verdict,
    };
    Ok((best, selection))
}

impl Linear {
    fn fit(rows: &[&Row], y: &[bool], l2: f64) -> Result<Linear, HealthError> {
        let n = rows.len().max(1);
        let mut mean = vec![0.0; N];
        let mut sd = vec![0.0; N];
        let mut missing = Vec::new();
        for f in 0..N {
            let v: Vec<f64> =
                rows.iter().map(|r| r.num[f]).filter(|x| x.is_finite()).map(squash).collect();
            let gone = rows.len() - v.len();
            if gone * 100 >= n && v.len() * 100 >= n {
                missing.push(f);
            }
            if v.is_empty() {
                continue;
            }
            mean[f] = v.iter().sum::<f64>() / v.len() as f64;
            sd[f] = (v.iter().map(|x| (x - mean[f]).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        }
        // An indicator for each plan and segment of at least 1% of the snapshots (and 30),
        // the 20 most frequent.
        let mut onehot = [Vec::new(), Vec::new()];
        for (k, out) in onehot.iter_mut().enumerate() {
            let mut count: std::collections::BTreeMap<&String, usize> = Default::default();
            for r in rows {
                if let Some(v) = category(r, k) {
                    *count.entry(v).or_default() += 1;
                }
            }
            let mut c: Vec<(&String, usize)> =
                count.into_iter().filter(|(_, c)| *c * 100 >= n && *c >= 30).collect();
            c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            *out = c.into_iter().take(20).map(|(v, _)| v.clone()).collect();
        }
        let mut m = Linear { l2, mean, sd, missing, onehot, coef: Vec::new(), intercept: 0.0 };
        let p = m.width();
        // A few dozen coefficients need no more than LINEAR_ROWS snapshots: beyond, every
        // k-th (rows come account by account, so the sample spans the accounts).
        let step = rows.len().div_ceil(LINEAR_ROWS).max(1);
        let x: Vec<f64> = rows.iter().step_by(step).flat_map(|r| m.inputs(r)).collect();
        let ys: Vec<bool> = y.iter().step_by(step).copied().collect();
        let fit = tenure_stats::logit::fit(&x, p, &ys, l2)?;
        (m.coef, m.intercept) = (fit.coef, fit.intercept);
        Ok(m)
    }

    fn width(&self) -> usize {
        N + self.missing.len() + self.onehot[0].len() + self.onehot[1].len()
    }

    /// The model's inputs for a row, in coefficient order.
    fn inputs(&self, r: &Row) -> Vec<f64> {
        let mut x = Vec::with_capacity(self.width());
        for f in 0..N {
            x.push(self.standard(f, r));
        }
        x.extend(self.missing.iter().map(|f| (!r.num[*f].is_finite()) as u8 as f64));
        for (k, lv) in self.onehot.iter().enumerate() {
            let v = category(r, k);
            x.extend(lv.iter().map(|l| (v == Some(l)) as u8 as f64));
        }
        x
    }

    /// Feature `f` of `r` transformed and standardised (a missing value: 0, the mean).
    fn standard(&self, f: usize, r: &Row) -> f64 {
        let v = r.num[f];
        if !v.is_finite() || self.sd[f] <= 0.0 {
            return 0.0;
        }
        (squash(v) - self.mean[f]) / self.sd[f]
    }

    fn raw(&self, r: &Row) -> f64 {
        self.intercept + self.inputs(r).iter().zip(&self.coef).map(|(x, c)| x * c).sum::<f64>()
    }
}

/// `sign(x) ln(1 + |x|)`: counts and amounts with long tails, on a scale a linear model
/// weighs sensibly.
fn squash(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

impl CardFit {
    fn fit(
        card: &Scorecard,
        source: &str,
        rows: &[&Row],
        y: &[bool],
    ) -> Result<CardFit, HealthError> {
        let learned = card.learn(rows, y).ok_or_else(|| {
            HealthError::NotEnoughData(format!("no measure of scorecard {} lowers risk", card.name))
        })?;
        let mut learned = learned;
        learned.name = card.name.clone();
        let scores: Vec<crate::scorecard::Score> = rows.iter().map(|r| learned.score(r)).collect();
        let risk: Vec<f64> =
            scores.iter().map(|s| (100.0 - s.value.unwrap_or(50.0)) / 100.0).collect();
        let (a, b) = eval::platt(y, &risk)?;
        let mean_scores = (0..learned.measures.len())
            .map(|j| {
                let s: Vec<f64> = scores.iter().filter_map(|s| s.parts[j].score).collect();
                if s.is_empty() { f64::NAN } else { s.iter().sum::<f64>() / s.len() as f64 }
            })
            .collect();
        Ok(CardFit {
            scorecards: source.to_string(),
            name: card.name.clone(),
            weights: learned.measures.iter().map(|m| m.weight).collect(),
            mean_scores,
            platt: [a, b],
            card: Some(Box::new(learned)),
        })
    }

    /// The scorecard with the learned weights, from the scorecards file in the model.
    fn resolve(&mut self) -> Result<(), HealthError> {
        let cards = Scorecards::parse(&self.scorecards)?;
        let mut card = cards.get(&self.name).cloned().ok_or_else(|| {
            HealthError::Model(format!(
                "scorecard {:?} is not in the model's scorecards",
                self.name
            ))
        })?;
        if card.measures.len() != self.weights.len() {
            return Err(HealthError::Model(format!(
                "scorecard {:?} has {} measures and the model {} weights",
                self.name,
                card.measures.len(),
                self.weights.len()
            )));
        }
        for (m, w) in card.measures.iter_mut().zip(&self.weights) {
            m.weight = *w;
        }
        self.card = Some(Box::new(card));
        Ok(())
    }

    fn card(&self) -> &Scorecard {
        self.card.as_deref().expect("a scorecard model is resolved when fitted or read")
    }
}

fn card_risk(card: &Scorecard, r: &Row) -> f64 {
    (100.0 - card.score(r).value.unwrap_or(50.0)) / 100.0
}

impl Learner {
    /// After reading: the scorecard of a scorecard learner, and checks of the rest.
    fn prepare(&mut self) -> Result<(), HealthError> {
        match self {
            Learner::Scorecard(c) => c.resolve(),
            Learner::Logistic(l)
                if l.coef.len() != l.width() || l.mean.len() != N || l.sd.len() != N =>
            {
                Err(HealthError::Model(
                    "the logistic model's coefficients do not match its inputs".into(),
                ))
            }
            Learner::Blend { members } if members.is_empty() => {
                Err(HealthError::Model("a blend without members".into()))
            }
            Learner::Blend { members } => members.iter_mut().try_for_each(Learner::prepare),
            _ => Ok(()),
        }
    }

    /// Calibrated log-odds.
    fn log_odds(&self, rows: &[&Row], levels: &[Vec<String>; 2]) -> Vec<f64> {
        match self {
            Learner::Trees { gbm, platt } => gbm
                .predict_raw(&columns(rows, levels))
                .into_iter()
                .map(|r| platt[0] * r + platt[1])
                .collect(),
            Learner::Logistic(m) => rows.iter().map(|r| m.raw(r)).collect(),
            Learner::Scorecard(c) => {
                rows.iter().map(|r| c.platt[0] * card_risk(c.card(), r) + c.platt[1]).collect()
            }
            Learner::Blend { members } => {
                let mut z = vec![0.0; rows.len()];
                for m in members {
                    z.iter_mut().zip(m.log_odds(rows, levels)).for_each(|(a, b)| *a += b);
                }
                let k = members.len().max(1) as f64;
                z.into_iter().map(|v| v / k).collect()
            }
        }
    }

    /// Calibrated probabilities.
    fn predict(&self, rows: &[&Row], levels: &[Vec<String>; 2]) -> Vec<f64> {
        self.log_odds(rows, levels).into_iter().map(sigmoid).collect()
    }

    /// Per row: the calibrated log-odds and each candidate driver's contribution to them,
    /// as (feature index, contribution).
    fn contributions(
        &self,
        rows: &[&Row],
        levels: &[Vec<String>; 2],
    ) -> Vec<(f64, Vec<(usize, f64)>)> {
        match self {
            Learner::Trees { gbm, platt } => gbm
                .contributions(&columns(rows, levels))
                .into_iter()
                .map(|c| {
                    let raw: f64 = c.iter().sum();
                    // The calibration scales the log-odds by a: contributions scale alike.
                    let z = platt[0] * raw + platt[1];
                    (z, (0..c.len() - 1).map(|f| (f, c[f] * platt[0])).collect())
                })
                .collect(),
            Learner::Logistic(m) => rows
                .iter()
                .map(|r| {
                    let c = (0..N).map(|f| (f, m.coef[f] * m.standard(f, r))).collect();
                    (m.raw(r), c)
                })
                .collect(),
            Learner::Scorecard(fit) => {
                let card = fit.card();
                rows.iter()
                    .map(|r| {
                        let s = card.score(r);
                        let risk = (100.0 - s.value.unwrap_or(50.0)) / 100.0;
                        let z = fit.platt[0] * risk + fit.platt[1];
                        // Risk rises by weight × (mean score - score) / 100 over the
                        // measure's usual part.
                        let c = card
                            .measures
                            .iter()
                            .zip(&s.parts)
                            .zip(&fit.mean_scores)
                            .filter_map(|((m, part), mean)| match (&m.reads, part.score) {
                                (Reads::Feature(f), Some(sc)) if mean.is_finite() => {
                                    Some((*f, fit.platt[0] * part.weight * (mean - sc) / 100.0))
                                }
                                _ => None,
                            })
                            .collect();
                        (z, c)
                    })
                    .collect()
            }
            Learner::Blend { members } => {
                // The blend's log-odds are the members' mean: so are the contributions.
                let k = members.len().max(1) as f64;
                let mut out: Vec<(f64, Vec<f64>)> = vec![(0.0, vec![0.0; N + 2]); rows.len()];
                for m in members {
                    for (o, (z, c)) in out.iter_mut().zip(m.contributions(rows, levels)) {
                        o.0 += z / k;
                        for (f, v) in c {
                            o.1[f] += v / k;
                        }
                    }
                }
                out.into_iter().map(|(z, c)| (z, c.into_iter().enumerate().collect())).collect()
            }
        }
    }
}

impl Model {
    /// Calibrated churn probabilities.
    pub fn predict(&self, rows: &[&Row]) -> Vec<f64> {
        self.in_blocks(rows, |b| self.learner.predict(b, &self.levels))
    }

    /// Calibrated log-odds of the outcome.
    pub fn log_odds(&self, rows: &[&Row]) -> Vec<f64> {
        self.in_blocks(rows, |b| self.learner.log_odds(b, &self.levels))
    }

    /// `f` over blocks of rows, in parallel: a row's figure depends on that row alone, and
    /// the columns a block needs are reused memory, where a million rows' columns at once
    /// would be fresh pages the kernel zeroes first.
    fn in_blocks(&self, rows: &[&Row], f: impl Fn(&[&Row]) -> Vec<f64> + Sync) -> Vec<f64> {
        use rayon::prelude::*;
        let parts: Vec<Vec<f64>> = rows.par_chunks(8192).map(&f).collect();
        parts.concat()
    }

    /// The chosen learner's trees, when it is trees.
    pub fn trees(&self) -> Option<usize> {
        match &self.learner {
            Learner::Trees { gbm, .. } => Some(gbm.trees.len()),
            _ => None,
        }
    }

    /// Probabilities and, for each row, up to `top` drivers that raise the risk: features a
    /// CSM can act on, whose value is on the risky side of the training mean (contributions
    /// under 0.02 in log-odds are not named). Causes come in the order of their features'
    /// summed contributions, each named by its strongest feature, then the other features
    /// by contribution: an account losing its adoption shows it in several small signals,
    /// which together outweigh one survey answer that every cause moves.
    pub fn explain(&self, rows: &[&Row], top: usize) -> Vec<(f64, Vec<Driver>)> {
        self.explain_with(rows, top, true)
    }

    /// As [`Model::explain`], ranked by each feature's own contribution alone (how drivers
    /// were ranked before causes were summed; backtests compare the two).
    pub fn explain_by_feature(&self, rows: &[&Row], top: usize) -> Vec<(f64, Vec<Driver>)> {
        self.explain_with(rows, top, false)
    }

    fn explain_with(&self, rows: &[&Row], top: usize, by_cause: bool) -> Vec<(f64, Vec<Driver>)> {
        self.learner
            .contributions(rows, &self.levels)
            .into_iter()
            .zip(rows)
            .map(|((z, mut c), row)| {
                c.retain(|(f, v)| *v > 0.02 && self.risky(*f, row));
                c.sort_by(|a, b| b.1.total_cmp(&a.1));
                if by_cause {
                    let mut causes: Vec<(Cause, f64)> = Vec::new();
                    for (f, v) in &c {
                        match causes.iter_mut().find(|(k, _)| *k == DEFS[*f].cause) {
                            Some(k) => k.1 += v,
                            None => causes.push((DEFS[*f].cause, *v)),
                        }
                    }
                    causes.sort_by(|a, b| b.1.total_cmp(&a.1));
                    let lead: Vec<(usize, f64)> = causes
                        .iter()
                        .filter_map(|(k, _)| c.iter().find(|(f, _)| DEFS[*f].cause == *k).copied())
                        .collect();
                    c.retain(|x| !lead.contains(x));
                    c = lead.into_iter().chain(c).collect();
                }
                (sigmoid(z), c.into_iter().take(top).map(|(f, v)| driver(f, row, v)).collect())
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

    /// Reads a model file: this format, or format 1 (trees only, saved before the
    /// selection), which reads as trees chosen without a comparison.
    pub fn from_json(s: &str) -> Result<Model, HealthError> {
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        /// Format 1: the trees and their calibration at the top level.
        #[derive(Deserialize)]
        struct V1 {
            #[serde(default)]
            outcome: Outcome,
            horizon_days: i64,
            first_snapshot: String,
            last_snapshot: String,
            n_snapshots: usize,
            n_churned: usize,
            levels: [Vec<String>; 2],
            gbm: Gbm,
            platt: [f64; 2],
            #[serde(with = "tenure_stats::floats")]
            means: Vec<f64>,
        }
        let bad = |e: serde_json::Error| HealthError::Model(e.to_string());
        let head: Head = serde_json::from_str(s).map_err(bad)?;
        let mut m = match head.format {
            1 => {
                let v: V1 = serde_json::from_str(s).map_err(bad)?;
                let chosen = Spec::Trees(params()).name();
                Model {
                    format: FORMAT,
                    outcome: v.outcome,
                    horizon_days: v.horizon_days,
                    first_snapshot: v.first_snapshot,
                    last_snapshot: v.last_snapshot,
                    n_snapshots: v.n_snapshots,
                    n_churned: v.n_churned,
                    levels: v.levels,
                    means: v.means,
                    learner: Learner::Trees { gbm: v.gbm, platt: v.platt },
                    selection: Selection {
                        verdict: format!(
                            "{chosen}: saved by an earlier version, which compared no other learner; train again to compare"
                        ),
                        chosen,
                        ..Selection::default()
                    },
                }
            }
            FORMAT => serde_json::from_str(s).map_err(bad)?,
            f => {
                return Err(HealthError::Model(format!(
                    "format {f} (this version reads {FORMAT} and 1); train the model again"
                )));
            }
        };
        m.learner.prepare()?;
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

/// The logistic baseline of backtests: L2 1 on every snapshot.
pub struct Baseline(Linear);

impl Baseline {
    pub fn train(rows: &[&Row], y: &[bool]) -> Result<Baseline, HealthError> {
        Linear::fit(rows, y, 1.0).map(Baseline)
    }

    pub fn predict(&self, rows: &[&Row]) -> Vec<f64> {
        rows.iter().map(|r| sigmoid(self.0.raw(r))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::F;

    /// A deterministic stream of uniform numbers in [0, 1) (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            (tenure_stats::splitmix64(&mut self.0) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// `accounts` accounts at `months` month starts: utilisation and tickets drawn at
    /// random, churn (within the month's horizon) with probability `truth(utilisation,
    /// tickets)`. A snapshot's outcome is known a month after it.
    fn base(
        accounts: u32,
        months: i64,
        seed: u64,
        truth: impl Fn(f64, f64) -> f64,
    ) -> (Vec<Row>, Vec<bool>, Vec<Timestamp>, Vec<u32>) {
        let mut rng = Rng(seed);
        let start = Timestamp::parse("2024-01-01").unwrap();
        let (mut rows, mut y, mut at, mut account) = (vec![], vec![], vec![], vec![]);
        for m in 0..months {
            for a in 0..accounts {
                let mut num = [f64::NAN; N];
                let (u, t) = (rng.next(), (rng.next() * 6.0).floor());
                num[F::UTILISATION as usize] = u;
                num[F::TICKETS as usize] = t;
                num[F::MAU as usize] = (u * 40.0).round();
                num[F::TENURE as usize] = m as f64;
                let plan = Some(if a % 3 == 0 { "pro" } else { "basic" }.to_string());
                rows.push(Row { num, plan, segment: None, mrr: 10_000 });
                y.push(rng.next() < truth(u, t));
                at.push(start.add_months(m));
                account.push(a);
            }
        }
        (rows, y, at, account)
    }

    fn linear_truth(u: f64, t: f64) -> f64 {
        sigmoid(-2.5 - 2.0 * u + 0.4 * t)
    }

    #[test]
    fn paired_differences_and_their_clustered_error() {
        // Accounts a (1, 2) and b (3, 4): mean 2.5; per-account sums of deviations -2 and
        // 2; variance (4 + 4) / 4^2 = 0.5, times g / (g - 1) = 2: 1, so the error is 1.
        let (mean, se) = paired_lead(&[1.0, 2.0, 3.0, 4.0], &[7, 7, 9, 9]);
        assert_eq!((mean, se), (2.5, 1.0));
        // One account: no error can be estimated.
        assert_eq!(paired_lead(&[1.0, 2.0], &[7, 7]).1, f64::INFINITY);
    }

    /// The selection's sample is independent of the accounts `training_months` kept: on
    /// rows of accounts that sampler kept (3 in 10), it still keeps about `max`.
    #[test]
    fn the_selection_samples_a_sampled_base_again() {
        let kept = |a: u64| (a.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 1000 < 300;
        let accounts: Vec<u64> = (0..200_000u64).filter(|a| kept(*a)).collect();
        let idx: Vec<usize> = (0..accounts.len() * 4).collect();
        let who = |i: usize| accounts[i / 4];
        let n = sample(idx.clone(), idx.len() / 3, &who).len();
        let third = idx.len() / 3;
        assert!(
            n > third * 9 / 10 && n < third * 11 / 10,
            "{n} of {} kept, {third} asked",
            idx.len()
        );
    }

    #[test]
    fn folds_are_consecutive_instants_of_the_latest_rows() {
        let t = |m: i64| Timestamp::parse("2024-01-01").unwrap().add_months(m);
        // Ten instants of ten rows each.
        let at: Vec<Timestamp> = (0..100).map(|i| t(i / 10)).collect();
        let end = Timestamp(t(9).0 + 1);
        // Three folds over the latest two fifths: rows 60.., 73.., 86.. begin them.
        assert_eq!(folds(&at, 3), vec![(t(6), t(7)), (t(7), t(8)), (t(8), end)]);
        // One fold: the latest fifth.
        assert_eq!(folds(&at, 1), vec![(t(8), end)]);
        // Two instants, the first holding most rows: the fold starts at the second.
        let at: Vec<Timestamp> = (0..100).map(|i| t((i >= 95) as i64)).collect();
        assert_eq!(folds(&at, 3), vec![(t(1), Timestamp(t(1).0 + 1))]);
    }

    /// Every kind of learner reads back from its file and predicts and explains alike.
    #[test]
    fn every_learner_round_trips_through_its_file() {
        let (rows, y, at, _) = base(150, 12, 1, linear_truth);
        let r: Vec<&Row> = rows.iter().collect();
        let levels = levels_of(&r);
        let cards = Scorecards::default_set();
        let specs = [
            Spec::Trees(params()),
            Spec::Logistic(10.0),
            Spec::Scorecard(cards.cards[0].clone()),
            default_spec(),
        ];
        for spec in specs {
            let selection = Selection { chosen: spec.name(), ..Selection::default() };
            let m =
                fit_model(&r, &y, &at, 30, Outcome::Churn, Some(&cards), &levels, spec, selection)
                    .unwrap();
            let back = Model::from_json(&m.to_json()).unwrap();
            let name = &m.selection.chosen;
            assert_eq!(back.predict(&r[..50]), m.predict(&r[..50]), "{name}");
            assert_eq!(back.explain(&r[..50], 3), m.explain(&r[..50], 3), "{name}");
            let p = m.predict(&r);
            assert!(p.iter().all(|p| *p > 0.0 && *p < 1.0), "{name}");
            // Calibrated: the mean prediction is near the churn rate it was fitted on.
            let rate = y.iter().filter(|v| **v).count() as f64 / y.len() as f64;
            let mean = p.iter().sum::<f64>() / p.len() as f64;
            assert!((mean - rate).abs() < 0.02, "{name}: {mean} against {rate}");
        }
    }

    /// A linear model's drivers are coefficient x value: on a base where low utilisation
    /// and tickets cause churn, an idle account with many tickets names both, an active
    /// one without tickets neither.
    #[test]
    fn linear_drivers_are_coefficients_times_values() {
        let (rows, y, at, _) = base(300, 12, 2, linear_truth);
        let r: Vec<&Row> = rows.iter().collect();
        let levels = levels_of(&r);
        let spec = Spec::Logistic(1.0);
        let m =
            fit_model(&r, &y, &at, 30, Outcome::Churn, None, &levels, spec, Selection::default())
                .unwrap();
        let Learner::Logistic(l) = &m.learner else { panic!("a logistic model") };
        let (u, t) = (F::UTILISATION as usize, F::TICKETS as usize);
        assert!(l.coef[u] < 0.0 && l.coef[t] > 0.0, "{:?}", (l.coef[u], l.coef[t]));
        let mut idle = rows[0].clone();
        idle.num[u] = 0.05;
        idle.num[F::MAU as usize] = 2.0;
        idle.num[t] = 5.0;
        let (_, ds) = m.explain(&[&idle], 3).pop().unwrap();
        let named: Vec<&str> = ds.iter().map(|d| d.feature).collect();
        assert!(named.contains(&"licence_utilisation") && named.contains(&"tickets_90d"), "{ds:?}");
        let d = ds.iter().find(|d| d.feature == "tickets_90d").unwrap();
        let expected = l.coef[t] * (squash(5.0) - l.mean[t]) / l.sd[t];
        assert!((d.contribution - expected).abs() < 1e-12, "{} vs {expected}", d.contribution);
        let mut busy = rows[0].clone();
        busy.num[u] = 0.95;
        busy.num[F::MAU as usize] = 38.0;
        busy.num[t] = 0.0;
        assert!(m.explain(&[&busy], 3)[0].1.is_empty());
    }

    /// Where churn needs two signals at once (an interaction no linear model or 3-leaf
    /// tree holds), the 7-leaf trees are clearly better and replace the default; on a
    /// small base of the same kind too few churn to tell, and the default stays.
    #[test]
    fn a_clear_winner_replaces_the_default_and_few_outcomes_keep_it() {
        let both = |u: f64, t: f64| if u < 0.3 && t >= 3.0 { 0.6 } else { 0.02 };
        let (rows, y, at, account) = base(1500, 12, 3, both);
        let r: Vec<&Row> = rows.iter().collect();
        let m = train(&r, &y, &at, &account, 30, Outcome::Churn, None).unwrap();
        let s = &m.selection;
        assert_ne!(s.chosen, default_spec().name(), "{}", s.verdict);
        assert!(s.chosen.contains("trees"), "{}", s.verdict);
        assert!(s.verdict.contains("more than two standard errors"), "{}", s.verdict);
        assert_eq!(
            s.candidates[0].log_loss,
            s.candidates.iter().map(|c| c.log_loss).fold(f64::INFINITY, f64::min)
        );
        assert!(s.validation_churned >= MIN_CHURNED, "{s:?}");
        assert!(s.candidates.iter().any(|c| c.name == default_spec().name()));

        let (rows, y, at, account) = base(60, 12, 4, both);
        let r: Vec<&Row> = rows.iter().collect();
        let m = train(&r, &y, &at, &account, 30, Outcome::Churn, None).unwrap();
        let s = &m.selection;
        assert!(s.validation_churned < MIN_CHURNED, "{s:?}");
        assert_eq!(s.chosen, default_spec().name(), "{}", s.verdict);
        assert!(
            s.verdict.contains("too few to tell learners apart")
                || s.verdict.contains("the lowest log-loss"),
            "{}",
            s.verdict
        );
    }

    /// A model file of format 1 (trees only) reads as trees chosen without a comparison.
    #[test]
    fn a_format_1_file_reads_as_trees() {
        let (rows, y, at, _) = base(100, 10, 5, linear_truth);
        let r: Vec<&Row> = rows.iter().collect();
        let levels = levels_of(&r);
        let m = fit_model(
            &r,
            &y,
            &at,
            30,
            Outcome::Churn,
            None,
            &levels,
            Spec::Trees(params()),
            Selection::default(),
        )
        .unwrap();
        let Learner::Trees { gbm, platt } = &m.learner else { panic!("trees") };
        let v1 = serde_json::json!({
            "format": 1, "outcome": "churn", "horizon_days": 30, "first_snapshot": m.first_snapshot,
            "last_snapshot": m.last_snapshot, "n_snapshots": m.n_snapshots, "n_churned": m.n_churned,
            "levels": m.levels, "gbm": gbm, "platt": platt,
            "means": m.means.iter().map(|x| if x.is_finite() { serde_json::json!(x) } else { serde_json::json!("nan") }).collect::<Vec<_>>(),
        });
        let back = Model::from_json(&v1.to_string()).unwrap();
        assert_eq!(back.predict(&r), m.predict(&r));
        assert!(back.selection.verdict.contains("earlier version"), "{}", back.selection.verdict);
        let bad = Model::from_json(r#"{"format": 9}"#).unwrap_err().to_string();
        assert!(bad.contains("format 9"), "{bad}");
    }
}
