//! Logistic regression by Newton's method (IRLS), with an optional L2 penalty on the
//! coefficients (never on the intercept); standard errors from the inverse information.

use crate::StatsError;
use crate::linalg::{cholesky, cholesky_solve, spd_inverse};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logit {
    pub intercept: f64,
    pub intercept_se: f64,
    pub coef: Vec<f64>,
    pub se: Vec<f64>,
    pub log_likelihood: f64,
    pub iterations: usize,
}

/// Fits `P(y) = σ(b0 + x.b)`; `x` is row-major `n x p`.
pub fn fit(x: &[f64], p: usize, y: &[bool], l2: f64) -> Result<Logit, StatsError> {
    let n = y.len();
    if x.len() != n * p {
        return Err(StatsError::Shape("features and target differ in length".into()));
    }
    if n == 0 {
        return Err(StatsError::Empty("no rows".into()));
    }
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 || pos == n {
        return Err(StatsError::Invalid("the target has one class only".into()));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::Invalid(format!(
            "row {}: a feature is not a number",
            i / p.max(1) + 1
        )));
    }
    let k = p + 1; // intercept first
    let row = |i: usize, j: usize| if j == 0 { 1.0 } else { x[i * p + j - 1] };
    let mut w = vec![0.0; k];
    let objective = |w: &[f64]| -> f64 {
        let mut ll = 0.0;
        for (i, yi) in y.iter().enumerate() {
            let eta: f64 = (0..k).map(|j| row(i, j) * w[j]).sum();
            // log σ(eta) and log(1 - σ(eta)), stable for large |eta|.
            let log1pexp = if eta > 0.0 { eta + (-eta).exp().ln_1p() } else { eta.exp().ln_1p() };
            ll += if *yi { eta - log1pexp } else { -log1pexp };
        }
        ll - 0.5 * l2 * w[1..].iter().map(|v| v * v).sum::<f64>()
    };
    let mut ll = objective(&w);
    let mut iterations = 0;
    let mut info = vec![0.0; k * k];
    for it in 1..=100 {
        iterations = it;
        let mut grad = vec![0.0; k];
        info.iter_mut().for_each(|v| *v = 0.0);
        for (i, yi) in y.iter().enumerate() {
            let eta: f64 = (0..k).map(|j| row(i, j) * w[j]).sum();
            let mu = 1.0 / (1.0 + (-eta).exp());
            let r = *yi as u8 as f64 - mu;
            let v = mu * (1.0 - mu);
            for a in 0..k {
                grad[a] += row(i, a) * r;
                for b in 0..=a {
                    info[a * k + b] += v * row(i, a) * row(i, b);
                }
            }
        }
        for a in 0..k {
            for b in 0..a {
                info[b * k + a] = info[a * k + b];
            }
        }
        for a in 1..k {
            grad[a] -= l2 * w[a];
            info[a * k + a] += l2;
        }
        let l = cholesky(&info, k)?;
        let step = cholesky_solve(&l, k, &grad);
        let mut t = 1.0;
        loop {
            let cand: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a + t * s).collect();
            let c = objective(&cand);
            if c >= ll - 1e-12 * ll.abs() || t < 1e-8 {
                w = cand;
                let gain = c - ll;
                ll = c;
                if step.iter().map(|s| (s * t).abs()).fold(0.0, f64::max) < 1e-10
                    || gain.abs() < 1e-14 * ll.abs()
                {
                    return finish(w, &info, k, ll, l2, iterations);
                }
                break;
            }
            t /= 2.0;
        }
        if w.iter().any(|v| v.abs() > 1e6) {
            return Err(StatsError::Singular(
                "the coefficients diverge: the classes are (quasi-)separable; add --l2".into(),
            ));
        }
    }
    finish(w, &info, k, ll, l2, iterations)
}

fn finish(
    w: Vec<f64>,
    info: &[f64],
    k: usize,
    ll: f64,
    l2: f64,
    iterations: usize,
) -> Result<Logit, StatsError> {
    let cov = spd_inverse(info, k)?;
    let penalty = 0.5 * l2 * w[1..].iter().map(|v| v * v).sum::<f64>();
    Ok(Logit {
        intercept: w[0],
        intercept_se: cov[0].sqrt(),
        coef: w[1..].to_vec(),
        se: (1..k).map(|a| cov[a * k + a].sqrt()).collect(),
        // The likelihood itself, without the penalty.
        log_likelihood: ll + penalty,
        iterations,
    })
}
