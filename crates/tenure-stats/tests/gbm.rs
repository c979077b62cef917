//! Gradient boosting on small synthetic data where the answer is known: missing values and
//! categories carry the signal, the model finds it, early stopping stops; settings chosen by
//! cross-validation beat the defaults on fresh rows.

use tenure_stats::eval::roc_auc;
use tenure_stats::gbm::{Column, Params, train};

/// Row i: x is missing for the churners (every third row), a category that is informative
/// ("a" churns half the time, "b" never), and noise.
fn data(n: usize) -> (Vec<Column>, Vec<bool>) {
    let mut x = Vec::new();
    let mut cat = Vec::new();
    let mut noise = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let churn = i % 3 == 0;
        x.push(if churn { f64::NAN } else { (i % 17) as f64 });
        cat.push(Some(if churn || i % 2 == 0 { 0 } else { 1 }));
        noise.push(((i * 7919) % 101) as f64);
        y.push(churn);
    }
    (vec![Column::Numeric(x), Column::Categorical(cat), Column::Numeric(noise)], y)
}

#[test]
fn missing_values_and_categories_are_learned() {
    let (cols, y) = data(3000);
    let m = train(&cols, &y, None, &Params::default()).unwrap();
    let p = m.predict(&cols);
    assert!(roc_auc(&y, &p).unwrap().unwrap() > 0.999);
    // The feature whose missingness is the label carries the gain; the noise almost none.
    assert!(m.importance[0] > 10.0 * m.importance[2], "{:?}", m.importance);
    // Deterministic.
    let again = train(&cols, &y, None, &Params::default()).unwrap().predict(&cols);
    assert_eq!(p, again);
}

#[test]
fn early_stopping_keeps_the_best_round() {
    let (cols, y) = data(2000);
    let (valid, vy) = data(600);
    let params = Params { rounds: 500, early_stopping: 10, ..Params::default() };
    let m = train(&cols, &y, Some((&valid, &vy)), &params).unwrap();
    assert!(m.trees.len() < 500, "{}", m.trees.len());
    let best = m.validation_loss.iter().cloned().fold(f64::INFINITY, f64::min);
    // The kept round is the best (improvements under 1e-12 do not count).
    assert!(m.validation_loss[m.trees.len() - 1] - best <= 1e-12);
}

#[test]
fn one_class_is_an_error() {
    let (cols, _) = data(100);
    assert!(train(&cols, &[false; 100], None, &Params::default()).is_err());
}

/// Rows of three numeric features: `additive` draws churn from a sum of their effects (what
/// stumps hold), otherwise from an interaction (the sign of x0 times x1, which no stump can).
fn drawn(n: usize, additive: bool, seed: u64) -> (Vec<Column>, Vec<bool>) {
    let mut s = seed;
    let mut u = || (tenure_stats::splitmix64(&mut s) >> 11) as f64 / (1u64 << 53) as f64;
    let (mut x, mut y) = (vec![Vec::new(), Vec::new(), Vec::new()], Vec::new());
    for _ in 0..n {
        let v = [u() * 2.0 - 1.0, u() * 2.0 - 1.0, u() * 2.0 - 1.0];
        let z = if additive { 1.5 * v[0] - 1.0 * v[1] + 0.5 * v[2] } else { 3.0 * v[0] * v[1] };
        y.push(u() < 1.0 / (1.0 + (-z).exp()));
        for (c, x) in x.iter_mut().zip(v) {
            c.push(x);
        }
    }
    (x.into_iter().map(Column::Numeric).collect(), y)
}

/// On 600 training rows the chosen settings predict fresh rows at least as well (log-loss)
/// as LightGBM's defaults, whether the truth is additive or an interaction; the interaction
/// is not given to stumps.
#[test]
fn tuned_settings_beat_the_defaults_on_fresh_rows() {
    use tenure_stats::eval::log_loss;
    use tenure_stats::tune::{Tuning, tune};
    for additive in [true, false] {
        let (x, y) = drawn(600, additive, 1);
        let (xt, yt) = drawn(20_000, additive, 2);
        let tuned = tune(&x, &y, &Tuning::for_rows(600, 7)).unwrap();
        let fixed = train(&x, &y, None, &Params::default()).unwrap();
        let (a, b) = (
            log_loss(&yt, &tuned.predict(&xt)).unwrap(),
            log_loss(&yt, &fixed.predict(&xt)).unwrap(),
        );
        assert!(a < b, "additive {additive}: tuned {a} vs defaults {b}");
        assert_eq!(tuned.trials.len(), 6);
        // Three repeats of three folds under 5,000 rows: nine models averaged.
        assert_eq!(tuned.members.len(), 9);
        let (p, _) = tuned.settings();
        if !additive {
            assert!(p.num_leaves > 2, "stumps chosen for an interaction: {:?}", tuned.trials);
        }
    }
}

/// Above `max_rows` the choice is made on a stratified sample (a third of 3,000 rows here)
/// and one model is refitted on every row.
#[test]
fn large_tables_choose_on_a_sample_and_refit() {
    use tenure_stats::tune::{Tuning, candidates, tune};
    let (x, y) = drawn(3_000, true, 3);
    let t = Tuning {
        candidates: candidates(0.1, 1_000),
        folds: 3,
        repeats: 1,
        seed: 5,
        max_rows: 1_000,
    };
    let tuned = tune(&x, &y, &t).unwrap();
    assert_eq!(tuned.rows, 1_000);
    assert_eq!(tuned.members.len(), 1);
    // Refitted on every row: more trees than the inner models kept on two thirds of the
    // sample (1.1x their mean, plus one), no validation set.
    let r = &tuned.trials[tuned.chosen].rounds;
    assert!(tuned.members[0].trees.len() > r.iter().sum::<usize>() / r.len(), "{r:?}");
    assert!(tuned.members[0].validation_loss.is_empty());
    // Too few of a class to cut into folds is a clear error, not a panic.
    let mut few = vec![false; 100];
    few[3] = true;
    let cols = vec![Column::Numeric((0..100).map(f64::from).collect())];
    let e = tune(&cols, &few, &Tuning::for_rows(100, 1)).unwrap_err();
    assert!(e.to_string().contains("too few"), "{e}");
}

/// Stratified folds: sizes and each class's count differ by one at most between folds.
#[test]
fn stratified_folds_share_each_class() {
    let y: Vec<bool> = (0..1_003).map(|i| i % 7 == 0).collect();
    let f = tenure_stats::eval::stratified_kfold(&y, 3, 9);
    let count = |p: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..3).map(|k| (0..y.len()).filter(|i| f[*i] == k && p(*i)).count()).collect()
    };
    for c in [count(&|_| true), count(&|i| y[i]), count(&|i| !y[i])] {
        assert!(c.iter().max().unwrap() - c.iter().min().unwrap() <= 1, "{c:?}");
    }
    assert_eq!(f, tenure_stats::eval::stratified_kfold(&y, 3, 9));
    assert_ne!(f, tenure_stats::eval::stratified_kfold(&y, 3, 10));
}
