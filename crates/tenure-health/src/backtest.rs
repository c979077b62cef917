//! Snapshots of the account base and the honest test of a model and of scorecards on them:
//! train on snapshots whose outcome was known before the test period starts, test on the
//! snapshots inside it.

use crate::features::{self, Context, Outcome, Row};
use crate::model::{self, Baseline};
use crate::scorecard::Scorecards;
use crate::{HealthError, UsageByAccount};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use tenure_core::time::{DAY, PeriodUnit, Timestamp};
use tenure_ledger::Ledger;
use tenure_stats::eval;

/// Labelled (or unlabelled) snapshots: row `i` is account `account[i]` (an index into the
/// ledger's accounts) at `at[i]`.
#[derive(Default)]
pub struct Snapshots {
    pub rows: Vec<Row>,
    pub account: Vec<u32>,
    pub at: Vec<Timestamp>,
    /// Churned within the horizon (only for snapshots whose horizon ended by `as_of`).
    pub label: Vec<bool>,
}

/// The most snapshots a model trains on (about 1 GB of features).
pub const MAX_SNAPSHOTS: usize = 3_000_000;

/// What a model trains on at the ledger's `as_of` with a horizon of `h` days: the month
/// starts from the first paying account to `h` days before `as_of` (their horizons have
/// ended), and a sampler of accounts keeping about [`MAX_SNAPSHOTS`] rows (by a hash of the
/// account's index, so the same accounts every run). `None` without a paying account.
pub fn training_months(
    ledger: &Ledger,
    h: i64,
) -> Option<(Vec<Timestamp>, impl Fn(usize) -> bool + Sync + use<>)> {
    let first = ledger.accounts.iter().filter_map(|a| a.first_paid()).min()?;
    let at = months(first, Timestamp(ledger.as_of.0 - h * DAY));
    let estimate = ledger.accounts.len() * at.len();
    let per_mille = (MAX_SNAPSHOTS * 1000 / estimate.max(1)).clamp(1, 1000) as u64;
    let keep =
        move |i: usize| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % 1000 < per_mille;
    Some((at, keep))
}

/// Month starts from `from` to `to` inclusive.
pub fn months(from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut m = PeriodUnit::Month.floor(from);
    if m < from {
        m = m.add_months(1);
    }
    while m <= to {
        out.push(m);
        m = m.add_months(1);
    }
    out
}

/// Snapshots of every paying account at each instant of `at` whose horizon has ended by
/// the ledger's `as_of`, with their `outcome` label (those without one are left out).
/// `keep(account index)` samples accounts.
pub fn labelled(
    ledger: &Ledger,
    usage: &UsageByAccount,
    at: &[Timestamp],
    horizon_days: i64,
    outcome: Outcome,
    ctx: &Context<'_>,
    keep: &(dyn Fn(usize) -> bool + Sync),
) -> Snapshots {
    let at: Vec<Timestamp> =
        at.iter().copied().filter(|t| t.0 + horizon_days * DAY <= ledger.as_of.0).collect();
    let parts: Vec<Vec<(u32, Timestamp, Row, bool)>> = ledger
        .accounts
        .par_iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, a)| {
            let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
            at.iter()
                .filter_map(|t| {
                    let y = outcome.label(a, *t, Timestamp(t.0 + horizon_days * DAY))?;
                    let row = features::snapshot(a, u, *t, ctx)?;
                    Some((i as u32, *t, row, y))
                })
                .collect()
        })
        .collect();
    let mut s = Snapshots::default();
    for (i, t, row, y) in parts.into_iter().flatten() {
        s.account.push(i);
        s.at.push(t);
        s.rows.push(row);
        s.label.push(y);
    }
    s
}

/// Every paying account at `t` (no labels): what scoring reads.
pub fn current(
    ledger: &Ledger,
    usage: &UsageByAccount,
    t: Timestamp,
    ctx: &Context<'_>,
) -> Snapshots {
    let parts: Vec<Option<(u32, Row)>> = ledger
        .accounts
        .par_iter()
        .enumerate()
        .map(|(i, a)| {
            let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
            features::snapshot(a, u, t, ctx).map(|r| (i as u32, r))
        })
        .collect();
    let mut s = Snapshots::default();
    for (i, row) in parts.into_iter().flatten() {
        s.account.push(i);
        s.at.push(t);
        s.rows.push(row);
    }
    s
}

/// How well scores rank and how well probabilities match outcomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    pub auc: Option<f64>,
    pub pr_auc: Option<f64>,
    pub brier: Option<f64>,
    /// Expected calibration error: the mean gap between predicted and observed rates over
    /// ten equal-width probability bins, weighted by the rows in each.
    pub ece: Option<f64>,
    /// Churn rate among the top-scored tenth over the overall rate.
    pub lift_top_decile: Option<f64>,
    pub calibration: Vec<eval::Bin>,
    /// ROC curve points (false positive rate, true positive rate), at most 101.
    pub roc: Vec<(f64, f64)>,
}

fn roc(y: &[bool], s: &[f64]) -> Vec<(f64, f64)> {
    let (pos, neg) = (y.iter().filter(|v| **v).count(), y.iter().filter(|v| !**v).count());
    if pos == 0 || neg == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|a, b| s[*b].total_cmp(&s[*a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let step = (y.len() / 100).max(1);
    for (k, i) in idx.iter().enumerate() {
        if y[*i] {
            tp += 1
        } else {
            fp += 1
        }
        let tie = idx.get(k + 1).is_some_and(|j| s[*j] == s[*i]);
        if !tie && ((k + 1) % step == 0 || k + 1 == idx.len()) {
            pts.push((fp as f64 / neg as f64, tp as f64 / pos as f64));
        }
    }
    pts
}

/// Metrics of probabilities `p` (or of a risk score, for the ranking figures) against `y`.
pub fn metrics(y: &[bool], p: &[f64]) -> Metrics {
    let lift = eval::lift_table(y, p, 10)
        .ok()
        .and_then(|t| t.first().map(|b| b.lift))
        .filter(|l| l.is_finite());
    let calibration = eval::calibration_table(y, p, 10).unwrap_or_default();
    Metrics {
        auc: eval::roc_auc(y, p).ok().flatten(),
        pr_auc: eval::average_precision(y, p).ok().flatten(),
        brier: eval::brier(y, p).ok(),
        ece: eval::ece(&calibration),
        lift_top_decile: lift,
        calibration,
        roc: roc(y, p),
    }
}

/// The generator's ground truth: per account and month, the true churn probability of that
/// month and the cause it gave.
#[derive(Default)]
pub struct Truth {
    pub months: FxHashMap<(String, Timestamp), (f64, String)>,
}

impl Truth {
    /// The true probability of churning in `[t, t + horizon)`: one minus the product of
    /// the monthly survival over the months the horizon starts in.
    pub fn probability(&self, account: &str, t: Timestamp, horizon_days: i64) -> f64 {
        let end = t.0 + horizon_days * DAY;
        let mut m = PeriodUnit::Month.floor(t);
        let mut survive = 1.0;
        while m.0 < end {
            if let Some((p, _)) = self.months.get(&(account.to_string(), m)) {
                survive *= 1.0 - p;
            }
            m = m.add_months(1);
        }
        1.0 - survive
    }

    /// The cause the generator gave the account in the month before `t` (what the
    /// features at `t` observe), else in `t`'s month; `None` when healthy.
    pub fn cause(&self, account: &str, t: Timestamp) -> Option<&str> {
        let m = PeriodUnit::Month.floor(t);
        [m.add_months(-1), m]
            .iter()
            .filter_map(|k| self.months.get(&(account.to_string(), *k)))
            .map(|(_, c)| c.as_str())
            .find(|c| *c != "none")
    }
}

/// How often the model's drivers name the generator's cause for unhealthy accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct DriverCheck {
    /// Test snapshots the generator gave a cause.
    pub n: usize,
    /// Those whose first driver's cause is the generator's, and whose top three include it.
    pub top1: usize,
    pub top3: usize,
    /// The same counts for the drivers before issue 17 (the trees alone, each feature
    /// ranked by its own contribution): what today's drivers are measured against.
    pub trees: Option<(usize, usize)>,
}

/// A scorecard's learned weights (measure, weight) and their metrics.
pub type Learned = (Vec<(String, f64)>, Metrics);

pub struct Report {
    pub model: Metrics,
    pub baseline: Option<Metrics>,
    pub scorecards: Vec<(String, Metrics)>,
    /// Per scorecard: its weights fitted on the training snapshots, and their metrics on the
    /// test snapshots (`None` when no weights could be learned).
    pub learned: Vec<Option<Learned>>,
    pub n_train: usize,
    pub n_snapshots: usize,
    pub n_churned: usize,
    pub oracle_auc: Option<f64>,
    pub drivers: Option<DriverCheck>,
    /// The trees of the chosen learner, when it is trees.
    pub trees: Option<usize>,
    /// How the tested model was chosen (on the training snapshots alone).
    pub selection: model::Selection,
}

/// Trains on snapshots at month starts whose horizon ended by `from` and tests on those
/// from `from` to `to` (inclusive) whose horizon ended by the ledger's `as_of`. Scorecards are
/// tested on the same snapshots (their score ranks risk; for Brier and ECE it is calibrated
/// by Platt scaling fitted on the training snapshots).
#[allow(clippy::too_many_arguments)]
pub fn backtest(
    ledger: &Ledger,
    usage: &UsageByAccount,
    ctx: &Context<'_>,
    from: Timestamp,
    to: Timestamp,
    horizon_days: i64,
    outcome: Outcome,
    cards: &Scorecards,
    truth: Option<&Truth>,
) -> Result<Report, HealthError> {
    let first = ledger
        .accounts
        .iter()
        .filter_map(|a| a.first_paid())
        .min()
        .ok_or_else(|| HealthError::NotEnoughData("no paying account".into()))?;
    let train_at: Vec<Timestamp> = months(first, Timestamp(from.0 - horizon_days * DAY));
    let test_at: Vec<Timestamp> = months(from, to);
    let all = |_: usize| true;
    // Training outcomes were all known by `from`: each horizon ended by then.
    let train = labelled(ledger, usage, &train_at, horizon_days, outcome, ctx, &all);
    let test = labelled(ledger, usage, &test_at, horizon_days, outcome, ctx, &all);
    if test.rows.is_empty() {
        return Err(HealthError::NotEnoughData(format!(
            "no snapshot from {from} to {to} whose {horizon_days}-day horizon ended by {}",
            ledger.as_of
        )));
    }
    let tr: Vec<&Row> = train.rows.iter().collect();
    let te: Vec<&Row> = test.rows.iter().collect();
    let m = model::train(
        &tr,
        &train.label,
        &train.at,
        &train.account,
        horizon_days,
        outcome,
        Some(cards),
    )?;
    let p = m.predict(&te);
    let baseline =
        Baseline::train(&tr, &train.label).ok().map(|b| metrics(&test.label, &b.predict(&te)));
    let card_metrics = |card: &crate::Scorecard| {
        // Risk = 100 - health; a missing score is the middle.
        let risk = |rows: &[&Row]| -> Vec<f64> {
            rows.iter().map(|r| (100.0 - card.score(r).value.unwrap_or(50.0)) / 100.0).collect()
        };
        let (rtr, rte) = (risk(&tr), risk(&te));
        let mut mt = metrics(&test.label, &rte);
        match eval::platt(&train.label, &rtr) {
            Ok((a, b)) => {
                let cal: Vec<f64> = rte.iter().map(|s| model::sigmoid(a * s + b)).collect();
                let c = metrics(&test.label, &cal);
                (mt.brier, mt.ece, mt.calibration) = (c.brier, c.ece, c.calibration);
            }
            Err(_) => (mt.brier, mt.ece) = (None, None),
        }
        mt
    };
    let mut scorecards = Vec::new();
    let mut learned = Vec::new();
    for card in cards.all() {
        scorecards.push((card.name.clone(), card_metrics(card)));
        learned.push(card.learn(&tr, &train.label).map(|l| {
            let w = l.measures.iter().map(|m| (m.name.clone(), m.weight)).collect();
            (w, card_metrics(&l))
        }));
    }
    let name = |i: usize| ledger.accounts[test.account[i] as usize].id.as_str();
    let oracle_auc = truth.and_then(|t| {
        let q: Vec<f64> =
            (0..te.len()).map(|i| t.probability(name(i), test.at[i], horizon_days)).collect();
        eval::roc_auc(&test.label, &q).ok().flatten()
    });
    let drivers = truth.map(|t| {
        let sick: Vec<(usize, &str)> =
            (0..te.len()).filter_map(|i| t.cause(name(i), test.at[i]).map(|c| (i, c))).collect();
        let rows: Vec<&Row> = sick.iter().map(|(i, _)| te[*i]).collect();
        let count = |explained: Vec<(f64, Vec<model::Driver>)>| {
            let (mut top1, mut top3) = (0, 0);
            for ((_, cause), (_, ds)) in sick.iter().zip(explained) {
                top1 += ds.first().is_some_and(|d| d.cause.as_str() == *cause) as usize;
                top3 += ds.iter().any(|d| d.cause.as_str() == *cause) as usize;
            }
            (top1, top3)
        };
        let (top1, top3) = count(m.explain(&rows, 3));
        // Before issue 17: the trees alone, drivers ranked feature by feature.
        let trees = model::train_trees(&tr, &train.label, &train.at, horizon_days, outcome)
            .ok()
            .map(|t| count(t.explain_by_feature(&rows, 3)));
        DriverCheck { n: sick.len(), top1, top3, trees }
    });
    Ok(Report {
        model: metrics(&test.label, &p),
        baseline,
        scorecards,
        learned,
        n_train: tr.len(),
        n_snapshots: te.len(),
        n_churned: test.label.iter().filter(|v| **v).count(),
        oracle_auc,
        drivers,
        trees: m.trees(),
        selection: m.selection.clone(),
    })
}
