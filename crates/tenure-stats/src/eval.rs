//! Evaluation of scores and classifiers: concordance, ROC AUC, average precision, log-loss,
//! Brier, lift by decile, calibration (table, Platt, isotonic), Wilson intervals and the
//! splits that keep validation honest (k-fold, time-based).

use crate::StatsError;
use crate::special::normal_ppf;

/// Harrell's concordance index of `predicted` (higher = longer survival) against observed
/// durations (lifelines' `concordance_index`): over comparable pairs (an event before
/// another subject's time, or an event and a censoring at the same time), the share ordered
/// rightly, ties in the prediction counting one half. O(n log n).
pub fn concordance(
    durations: &[f64],
    predicted: &[f64],
    events: &[bool],
) -> Result<f64, StatsError> {
    let n = durations.len();
    if predicted.len() != n || events.len() != n {
        return Err(StatsError::Shape("durations, predictions and events differ in length".into()));
    }
    // Dense ranks of the predictions (equal values share a rank), for a Fenwick tree.
    let mut by_pred: Vec<usize> = (0..n).collect();
    by_pred.sort_unstable_by(|a, b| predicted[*a].total_cmp(&predicted[*b]));
    let mut ranks = vec![0usize; n];
    let mut distinct = 0;
    for (k, &i) in by_pred.iter().enumerate() {
        if k > 0 && predicted[i] != predicted[by_pred[k - 1]] {
            distinct += 1;
        }
        ranks[i] = distinct;
    }
    let vals_len = if n == 0 { 0 } else { distinct + 1 };
    let rank = |i: usize| ranks[i];
    let mut tree = vec![0u64; vals_len + 1];
    let add = |tree: &mut Vec<u64>, i: usize| {
        let mut k = i + 1;
        while k < tree.len() {
            tree[k] += 1;
            k += k & k.wrapping_neg();
        }
    };
    let prefix = |tree: &Vec<u64>, i: usize| {
        // count of inserted with rank < i
        let (mut k, mut s) = (i, 0);
        while k > 0 {
            s += tree[k];
            k -= k & k.wrapping_neg();
        }
        s
    };
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|a, b| durations[*b].total_cmp(&durations[*a]));
    let (mut pairs, mut correct, mut tied) = (0u64, 0u64, 0u64);
    let mut inserted = 0u64;
    let mut i = 0;
    while i < n {
        let t = durations[idx[i]];
        let mut j = i;
        while j < n && durations[idx[j]] == t {
            j += 1;
        }
        // Censorings at t are later than the events at t.
        for &r in &idx[i..j] {
            if !events[r] {
                add(&mut tree, rank(r));
                inserted += 1;
            }
        }
        for &r in &idx[i..j] {
            if events[r] {
                let k = rank(r);
                let below = prefix(&tree, k);
                let at_or_below = prefix(&tree, k + 1);
                pairs += inserted;
                correct += inserted - at_or_below;
                tied += at_or_below - below;
            }
        }
        for &r in &idx[i..j] {
            if events[r] {
                add(&mut tree, rank(r));
                inserted += 1;
            }
        }
        i = j;
    }
    if pairs == 0 {
        return Err(StatsError::Empty("no comparable pairs: concordance is undefined".into()));
    }
    Ok((correct as f64 + 0.5 * tied as f64) / pairs as f64)
}

fn check(y: &[bool], p: &[f64]) -> Result<(), StatsError> {
    if y.len() != p.len() {
        return Err(StatsError::Shape("labels and scores differ in length".into()));
    }
    if y.is_empty() {
        return Err(StatsError::Empty("no rows".into()));
    }
    Ok(())
}

/// Area under the ROC curve (ties in the score count one half); `None` with one class only.
pub fn roc_auc(y: &[bool], score: &[f64]) -> Result<Option<f64>, StatsError> {
    check(y, score)?;
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|a, b| score[*a].total_cmp(&score[*b]));
    // Mann-Whitney U with mid-ranks.
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && score[idx[j]] == score[idx[i]] {
            j += 1;
        }
        let mid = (i + j + 1) as f64 / 2.0;
        rank_sum += idx[i..j].iter().filter(|r| y[**r]).count() as f64 * mid;
        i = j;
    }
    let pos = y.iter().filter(|v| **v).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Ok(None);
    }
    Ok(Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)))
}

/// Area under the precision-recall curve as average precision (scikit-learn's
/// `average_precision_score`): `Σ (R_k - R_{k-1}) P_k` over distinct score thresholds.
pub fn average_precision(y: &[bool], score: &[f64]) -> Result<Option<f64>, StatsError> {
    check(y, score)?;
    let pos = y.iter().filter(|v| **v).count() as f64;
    if pos == 0.0 {
        return Ok(None);
    }
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|a, b| score[*b].total_cmp(&score[*a]));
    let (mut tp, mut fp, mut ap, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && score[idx[j]] == score[idx[i]] {
            if y[idx[j]] {
                tp += 1.0
            } else {
                fp += 1.0
            }
            j += 1;
        }
        let recall = tp / pos;
        ap += (recall - last_recall) * tp / (tp + fp);
        last_recall = recall;
        i = j;
    }
    Ok(Some(ap))
}

/// Mean negative log-likelihood of probabilities (clipped to [1e-15, 1 - 1e-15]).
pub fn log_loss(y: &[bool], p: &[f64]) -> Result<f64, StatsError> {
    check(y, p)?;
    let s: f64 = y
        .iter()
        .zip(p)
        .map(|(y, p)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Ok(s / y.len() as f64)
}

/// Mean squared error of probabilities.
pub fn brier(y: &[bool], p: &[f64]) -> Result<f64, StatsError> {
    check(y, p)?;
    Ok(y.iter().zip(p).map(|(y, p)| (p - *y as u8 as f64).powi(2)).sum::<f64>() / y.len() as f64)
}

/// One bin of a calibration or lift table.
#[derive(Clone, Debug, PartialEq)]
pub struct Bin {
    pub n: usize,
    pub mean_score: f64,
    pub positive_rate: f64,
    /// The bin's positive rate over the overall one.
    pub lift: f64,
}

/// Rows sorted by score, highest first, cut into `bins` groups of (nearly) equal size.
pub fn lift_table(y: &[bool], score: &[f64], bins: usize) -> Result<Vec<Bin>, StatsError> {
    check(y, score)?;
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|a, b| score[*b].total_cmp(&score[*a]));
    let base = y.iter().filter(|v| **v).count() as f64 / y.len() as f64;
    let n = y.len();
    Ok((0..bins)
        .filter_map(|b| {
            let (lo, hi) = (b * n / bins, (b + 1) * n / bins);
            (hi > lo).then(|| {
                let rows = &idx[lo..hi];
                let rate = rows.iter().filter(|r| y[**r]).count() as f64 / rows.len() as f64;
                Bin {
                    n: rows.len(),
                    mean_score: rows.iter().map(|r| score[*r]).sum::<f64>() / rows.len() as f64,
                    positive_rate: rate,
                    lift: if base > 0.0 { rate / base } else { f64::NAN },
                }
            })
        })
        .collect())
}

/// Calibration table: probabilities cut into `bins` equal-width bins on [0, 1] (empty bins
/// left out), each with its mean prediction and observed rate.
pub fn calibration_table(y: &[bool], p: &[f64], bins: usize) -> Result<Vec<Bin>, StatsError> {
    check(y, p)?;
    let base = y.iter().filter(|v| **v).count() as f64 / y.len() as f64;
    let mut acc = vec![(0usize, 0.0f64, 0usize); bins];
    for (y, p) in y.iter().zip(p) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += p;
        acc[b].2 += *y as usize;
    }
    Ok(acc
        .into_iter()
        .filter(|a| a.0 > 0)
        .map(|(n, s, k)| Bin {
            n,
            mean_score: s / n as f64,
            positive_rate: k as f64 / n as f64,
            lift: if base > 0.0 { k as f64 / n as f64 / base } else { f64::NAN },
        })
        .collect())
}

/// Platt scaling: `P(y) = 1 / (1 + exp(-(a s + b)))` fitted by logistic regression on the
/// scores. Returns (a, b).
pub fn platt(y: &[bool], score: &[f64]) -> Result<(f64, f64), StatsError> {
    check(y, score)?;
    let x: Vec<f64> = score.to_vec();
    let fit = crate::logit::fit(&x, 1, y, 0.0)?;
    Ok((fit.coef[0], fit.intercept))
}

/// Isotonic calibration by pool-adjacent-violators: (score thresholds, calibrated
/// probabilities), non-decreasing; predict with [`isotonic_predict`].
pub fn isotonic(y: &[bool], score: &[f64]) -> Result<(Vec<f64>, Vec<f64>), StatsError> {
    check(y, score)?;
    let mut idx: Vec<usize> = (0..y.len()).collect();
    idx.sort_by(|a, b| score[*a].total_cmp(&score[*b]));
    // Rows of equal score first become one point (their mean, weighted by their count),
    // as scikit-learn does; then adjacent violators are pooled.
    // Blocks: (sum of y, weight, min score, max score).
    let mut blocks: Vec<(f64, f64, f64, f64)> = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let s0 = score[idx[i]];
        let (mut sum, mut w) = (0.0, 0.0);
        while i < idx.len() && score[idx[i]] == s0 {
            sum += y[idx[i]] as u8 as f64;
            w += 1.0;
            i += 1;
        }
        blocks.push((sum, w, s0, s0));
        while blocks.len() > 1 {
            let (a, b) = (blocks[blocks.len() - 2], blocks[blocks.len() - 1]);
            if a.0 / a.1 >= b.0 / b.1 {
                blocks.pop();
                let last = blocks.len() - 1;
                blocks[last] = (a.0 + b.0, a.1 + b.1, a.2, b.3);
            } else {
                break;
            }
        }
    }
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (s, w, lo, hi) in blocks {
        xs.push(lo);
        ys.push(s / w);
        if hi > lo {
            xs.push(hi);
            ys.push(s / w);
        }
    }
    Ok((xs, ys))
}

/// The isotonic fit at `s`: linear between thresholds, constant beyond them.
pub fn isotonic_predict(xs: &[f64], ys: &[f64], s: f64) -> f64 {
    let k = xs.partition_point(|x| *x <= s);
    if k == 0 {
        return ys[0];
    }
    if k == xs.len() {
        return ys[k - 1];
    }
    let (x0, x1, y0, y1) = (xs[k - 1], xs[k], ys[k - 1], ys[k]);
    y0 + (y1 - y0) * (s - x0) / (x1 - x0)
}

/// Wilson score interval of `k` successes in `n` at level `1 - alpha`; `None` when n = 0.
pub fn wilson(k: u64, n: u64, alpha: f64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let z = normal_ppf(1.0 - alpha / 2.0);
    let (n, p) = (n as f64, k as f64 / n as f64);
    let den = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / den;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / den;
    // The bounds are exactly 0 with no successes and 1 with no failures; rounding would leave
    // a few 1e-17 otherwise.
    let lo = if k == 0 { 0.0 } else { (centre - half).max(0.0) };
    let hi = if k as f64 == n { 1.0 } else { (centre + half).min(1.0) };
    Some([lo, hi])
}

/// Fold index of each row for k-fold cross-validation, rows shuffled by `seed`
/// (a splitmix64 permutation: the same seed, the same folds).
pub fn kfold(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed;
    shuffle(&mut order, &mut state);
    let mut fold = vec![0; n];
    for (pos, row) in order.into_iter().enumerate() {
        fold[row] = pos * k / n.max(1);
    }
    fold
}

/// Fisher-Yates on the splitmix64 stream whose state is `state` (which moves on).
fn shuffle(v: &mut [usize], state: &mut u64) {
    for i in (1..v.len()).rev() {
        let j = (crate::splitmix64(state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Fold index of each row, each class shuffled by `seed` and dealt out in turn, so that
/// every fold holds its share of either class (as scikit-learn's `StratifiedKFold`, though
/// not its exact assignment).
pub fn stratified_kfold(y: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut fold = vec![0; y.len()];
    let mut state = seed;
    let mut dealt = 0usize;
    for class in [true, false] {
        let mut rows: Vec<usize> = (0..y.len()).filter(|i| y[*i] == class).collect();
        shuffle(&mut rows, &mut state);
        // The second class continues where the first stopped: fold sizes differ by one at most.
        for r in rows {
            fold[r] = dealt % k.max(1);
            dealt += 1;
        }
    }
    fold
}

/// Expected calibration error of a calibration table: the row-weighted mean distance between
/// each bin's mean prediction and its observed rate.
pub fn ece(t: &[Bin]) -> Option<f64> {
    let n: usize = t.iter().map(|b| b.n).sum();
    (n > 0).then(|| {
        t.iter().map(|b| b.n as f64 * (b.mean_score - b.positive_rate).abs()).sum::<f64>()
            / n as f64
    })
}

/// A time-based split: rows before `cutoff` train, the rest validate (true = validation).
pub fn time_split(times: &[f64], cutoff: f64) -> Vec<bool> {
    times.iter().map(|t| *t >= cutoff).collect()
}
