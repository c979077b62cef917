//! Gradient-boosting settings chosen by cross-validation inside the training rows, so that
//! one default serves 500 rows and 10 million: leaves, rows per leaf, penalty and rounds.
//!
//! The rule (measured on the four public churn tables `bench/gbm.sh` runs and on nine more
//! Telco samples of 500-2,000 rows): a stratified 3-fold split of the training rows,
//! repeated on up to three shuffles; every candidate trains on two folds with early stopping
//! on the third (learning rate 0.05, patience 50 rounds, at most 3,000); the lowest pooled
//! log-loss on the held-out folds wins, and the model is the mean of the winner's fold
//! models. No fixed setting does as well on every table: small tables want stumps with a
//! penalty, tables of interactions want 15-31 leaves. Averaging the fold models rather than
//! refitting on every row keeps small tables honest (the early-stopped round counts are
//! noisy there). Above `max_rows` the choice is made on a stratified sample (one of
//! `ceil(n / max_rows)` stratified shares: between half of `max_rows` and `max_rows` rows)
//! and the winner is refitted on every row, for 1.1x its mean round count.

use crate::StatsError;
use crate::gbm::{self, Column, Gbm, Params};

#[derive(Clone, Debug)]
pub struct Tuning {
    /// The settings compared, in order of preference on a tie.
    pub candidates: Vec<Params>,
    /// Inner folds (each candidate trains this many models per repeat).
    pub folds: usize,
    /// Inner cross-validations, each on its own shuffle: more models to average and a
    /// steadier choice where rows are few.
    pub repeats: usize,
    pub seed: u64,
    /// Above this many rows the choice is made on a stratified sample of at most this many.
    pub max_rows: usize,
}

/// The candidates at a learning rate and a ceiling of rounds (early stopping after 50 rounds
/// without a better held-out log-loss decides the count).
pub fn candidates(learning_rate: f64, rounds: usize) -> Vec<Params> {
    let at = |num_leaves, min_data_in_leaf, lambda_l2| Params {
        rounds,
        learning_rate,
        num_leaves,
        min_data_in_leaf,
        lambda_l2,
        early_stopping: 50,
        ..Params::default()
    };
    vec![
        at(2, 20, 0.0),
        at(4, 20, 0.0),
        at(15, 20, 0.0),
        at(31, 20, 0.0),
        at(2, 50, 10.0),
        at(4, 50, 10.0),
    ]
}

impl Tuning {
    /// The default for `n` training rows: rate 0.05 and at most 3,000 rounds; on more rows
    /// than are sampled, rate 0.1 and at most 1,000 (the refit on every row must stay
    /// affordable). Three repeats up to 5,000 rows, two up to 20,000, one above: the
    /// choice is noisiest, and the models cheapest, where rows are few.
    pub fn for_rows(n: usize, seed: u64) -> Tuning {
        let max_rows = 200_000;
        let candidates =
            if n > max_rows { candidates(0.1, 1_000) } else { candidates(0.05, 3_000) };
        let repeats = match n {
            0..=5_000 => 3,
            5_001..=20_000 => 2,
            _ => 1,
        };
        Tuning { candidates, folds: 3, repeats, seed, max_rows }
    }
}

/// One candidate's showing.
#[derive(Clone, Debug)]
pub struct Trial {
    pub params: Params,
    /// Pooled log-loss over the held-out inner folds.
    pub log_loss: f64,
    /// Rounds each inner model kept (early stopping).
    pub rounds: Vec<usize>,
}

/// The chosen settings and the model they gave.
#[derive(Clone, Debug)]
pub struct Tuned {
    pub trials: Vec<Trial>,
    /// Index of the winner in `trials`.
    pub chosen: usize,
    /// Rows the choice was made on (fewer than the training rows when sampled).
    pub rows: usize,
    /// The model: the mean of these members' probabilities.
    pub members: Vec<Gbm>,
}

impl Tuned {
    pub fn predict(&self, cols: &[Column]) -> Vec<f64> {
        let mut p = vec![0.0; cols.first().map_or(0, Column::len)];
        for m in &self.members {
            for (a, b) in p.iter_mut().zip(m.predict(cols)) {
                *a += b / self.members.len() as f64;
            }
        }
        p
    }

    /// Mean of the members' gain importances.
    pub fn importance(&self) -> Vec<f64> {
        let mut v = vec![0.0; self.members.first().map_or(0, |m| m.importance.len())];
        for m in &self.members {
            for (a, b) in v.iter_mut().zip(&m.importance) {
                *a += b / self.members.len() as f64;
            }
        }
        v
    }

    /// Mean of the members' TreeSHAP contributions to the log-odds (each member's sum to its
    /// own log-odds; the mean is a summary of the drivers, not an exact decomposition of the
    /// averaged probability).
    pub fn contributions(&self, cols: &[Column]) -> Vec<Vec<f64>> {
        let mut out: Vec<Vec<f64>> = Vec::new();
        for m in &self.members {
            let c = m.contributions(cols);
            if out.is_empty() {
                out = vec![vec![0.0; c.first().map_or(0, Vec::len)]; c.len()];
            }
            for (a, b) in out.iter_mut().zip(c) {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += y / self.members.len() as f64;
                }
            }
        }
        out
    }

    /// The winner's settings, with the rounds it was trained for (mean over the members).
    pub fn settings(&self) -> (Params, f64) {
        let rounds = self.members.iter().map(|m| m.trees.len()).sum::<usize>() as f64
            / self.members.len().max(1) as f64;
        (self.trials[self.chosen].params.clone(), rounds)
    }
}

/// Chooses the settings on `(cols, y)` and trains the model with them.
pub fn tune(cols: &[Column], y: &[bool], t: &Tuning) -> Result<Tuned, StatsError> {
    use rayon::prelude::*;
    let n = gbm::check(cols, y)?;
    if t.candidates.is_empty() || t.folds < 2 || t.max_rows < 2 * t.folds {
        return Err(StatsError::Invalid(
            "tuning needs candidates, two folds or more and room for them in max_rows".into(),
        ));
    }
    // The rows the choice is made on: all, or a stratified sample.
    let rows: Vec<usize> = if n > t.max_rows {
        let fold = crate::eval::stratified_kfold(y, n.div_ceil(t.max_rows), t.seed ^ 0x5eed);
        (0..n).filter(|i| fold[*i] == 0).collect()
    } else {
        (0..n).collect()
    };
    let ys: Vec<bool> = rows.iter().map(|i| y[*i]).collect();
    // Every inner training and held-out fold must hold both classes.
    let pos = ys.iter().filter(|v| **v).count();
    if pos.min(ys.len() - pos) < t.folds {
        return Err(StatsError::Invalid(format!(
            "{} rows of one class: too few to choose settings by {}-fold cross-validation \
             (fix the settings instead)",
            pos.min(ys.len() - pos),
            t.folds
        )));
    }
    let repeats = t.repeats.max(1);
    // (train, test) of every inner fold of every repeat, repeat-major.
    let mut parts: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    for r in 0..repeats {
        let fold = crate::eval::stratified_kfold(&ys, t.folds, t.seed.wrapping_add(r as u64));
        for f in 0..t.folds {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..rows.len()).partition(|i| fold[*i] == f);
            parts.push((train, test));
        }
    }
    let pick = |idx: &[usize]| -> (Vec<Column>, Vec<bool>) {
        let abs: Vec<usize> = idx.iter().map(|i| rows[*i]).collect();
        (cols.iter().map(|c| c.take(&abs)).collect(), abs.iter().map(|i| y[*i]).collect())
    };
    let data: Vec<_> = parts.iter().map(|(tr, te)| (pick(tr), pick(te))).collect();
    // Every candidate on every fold, in parallel (each fit is small next to the machine).
    let jobs: Vec<(usize, usize)> =
        (0..t.candidates.len()).flat_map(|c| (0..parts.len()).map(move |f| (c, f))).collect();
    let fits: Vec<(Gbm, Vec<f64>)> = jobs
        .par_iter()
        .map(|&(c, f)| {
            let ((xtr, ytr), (xte, yte)) = &data[f];
            let m = gbm::train(xtr, ytr, Some((xte, yte)), &t.candidates[c])?;
            let p = m.predict(xte);
            Ok((m, p))
        })
        .collect::<Result<_, StatsError>>()?;
    let mut trials = Vec::new();
    let mut models: Vec<Vec<Gbm>> = Vec::new();
    // Fits come candidate by candidate, each over every fold of every repeat in turn.
    let mut fits = fits.into_iter();
    for params in &t.candidates {
        let mut loss = 0.0;
        let mut kept = Vec::new();
        for r in 0..repeats {
            let mut oof = vec![0.0; rows.len()];
            for (_, test) in &parts[r * t.folds..(r + 1) * t.folds] {
                let (m, p) = fits.next().expect("one fit per candidate and fold");
                for (i, v) in test.iter().zip(p) {
                    oof[*i] = v;
                }
                kept.push(m);
            }
            loss += crate::eval::log_loss(&ys, &oof)? / repeats as f64;
        }
        trials.push(Trial {
            params: params.clone(),
            log_loss: loss,
            rounds: kept.iter().map(|m| m.trees.len()).collect(),
        });
        models.push(kept);
    }
    // The lowest; on an exact tie, the first listed.
    let chosen = (0..trials.len())
        .min_by(|a, b| trials[*a].log_loss.total_cmp(&trials[*b].log_loss))
        .unwrap_or(0);
    let members = if rows.len() < n {
        let mean =
            trials[chosen].rounds.iter().sum::<usize>() as f64 / trials[chosen].rounds.len() as f64;
        let rounds = ((mean * 1.1) as usize + 1).min(trials[chosen].params.rounds);
        let p = Params { rounds, early_stopping: 0, ..trials[chosen].params.clone() };
        vec![gbm::train(cols, y, None, &p)?]
    } else {
        models.swap_remove(chosen)
    };
    Ok(Tuned { trials, chosen, rows: rows.len(), members })
}
