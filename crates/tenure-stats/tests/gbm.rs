//! Gradient boosting on small synthetic data where the answer is known: missing values and
//! categories carry the signal, the model finds it, early stopping stops.

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
