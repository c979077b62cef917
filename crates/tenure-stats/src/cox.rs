//! Cox proportional hazards by Newton-Raphson on the partial likelihood: Efron or Breslow
//! ties, strata, an optional L2 penalty, the three global tests, Harrell's concordance and
//! the Breslow baseline survival.
//!
//! As lifelines does, the fit runs on standardised covariates (centred, divided by their
//! sample standard deviation) and the coefficients are scaled back; a penalty therefore
//! applies to standardised coefficients, per observation (`n × penalizer / 2 × Σ β²`: the
//! same as lifelines' `penalizer` on its mean log-likelihood), which makes it fair across
//! covariates of different units.

use crate::StatsError;
use crate::linalg::{cholesky, cholesky_solve, quad_inv, spd_inverse};
use crate::special::{chi2_sf, normal_ppf, two_sided_p};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ties {
    #[default]
    Efron,
    Breslow,
}

/// What to fit: `x` is row-major, `n x p`; `strata[i]` is row i's stratum index.
#[derive(Clone, Debug)]
pub struct CoxInput<'a> {
    pub durations: &'a [f64],
    pub events: &'a [bool],
    pub x: &'a [f64],
    pub p: usize,
    pub strata: Option<&'a [usize]>,
    pub ties: Ties,
    pub penalizer: f64,
}

/// A global test: statistic, degrees of freedom, p-value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Test {
    pub statistic: f64,
    pub df: usize,
    pub p: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoxModel {
    pub coef: Vec<f64>,
    pub se: Vec<f64>,
    pub z: Vec<f64>,
    pub p: Vec<f64>,
    pub hr: Vec<f64>,
    /// 95% intervals of the hazard ratios.
    pub hr_ci: Vec<[f64; 2]>,
    pub log_likelihood: f64,
    pub log_likelihood_null: f64,
    pub lr_test: Test,
    pub wald_test: Test,
    pub score_test: Test,
    pub concordance: f64,
    pub iterations: usize,
    /// Covariate means: the baseline is the hazard of a subject at the means.
    pub means: Vec<f64>,
    /// Per stratum: (distinct event and censoring times, baseline survival at each).
    pub baseline: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Log partial likelihood, gradient and negative Hessian at `beta` (standardised scale).
#[derive(Clone)]
struct Eval {
    ll: f64,
    grad: Vec<f64>,
    info: Vec<f64>,
}

/// Rows of one stratum sorted by time, longest first.
fn order(inp: &CoxInput<'_>) -> Vec<Vec<usize>> {
    let k = inp.strata.map_or(1, |s| s.iter().max().map_or(1, |m| m + 1));
    let mut groups = vec![Vec::new(); k];
    for i in 0..inp.durations.len() {
        groups[inp.strata.map_or(0, |s| s[i])].push(i);
    }
    for g in &mut groups {
        g.sort_by(|a, b| inp.durations[*b].total_cmp(&inp.durations[*a]));
    }
    groups
}

/// The rows laid out in the order the likelihood walks them (stratum by stratum, longest
/// time first), so that every pass reads memory front to back.
struct Sorted {
    d: Vec<f64>,
    e: Vec<bool>,
    x: Vec<f64>,
    ranges: Vec<(usize, usize)>,
}

fn sorted(inp: &CoxInput<'_>, xs: &[f64], groups: &[Vec<usize>]) -> Sorted {
    let p = inp.p;
    let n = inp.durations.len();
    let (mut d, mut e, mut x) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n * p));
    let mut ranges = Vec::new();
    for g in groups {
        let start = d.len();
        for &r in g {
            d.push(inp.durations[r]);
            e.push(inp.events[r]);
            x.extend_from_slice(&xs[r * p..(r + 1) * p]);
        }
        ranges.push((start, d.len()));
    }
    Sorted { d, e, x, ranges }
}

fn evaluate(inp: &CoxInput<'_>, rows: &Sorted, beta: &[f64]) -> Eval {
    let p = inp.p;
    let (ds, es, xs) = (&rows.d, &rows.e, &rows.x);
    let mut ll = 0.0;
    let mut grad = vec![0.0; p];
    let mut info = vec![0.0; p * p];
    let (mut s1, mut s2) = (vec![0.0; p], vec![0.0; p * p]);
    let (mut d1, mut d2) = (vec![0.0; p], vec![0.0; p * p]);
    let mut num = vec![0.0; p];
    for &(start, end) in &rows.ranges {
        let mut s0 = 0.0;
        s1.iter_mut().for_each(|v| *v = 0.0);
        s2.iter_mut().for_each(|v| *v = 0.0);
        let mut i = start;
        while i < end {
            let t = ds[i];
            let (mut d0, mut m) = (0.0, 0usize);
            d1.iter_mut().for_each(|v| *v = 0.0);
            d2.iter_mut().for_each(|v| *v = 0.0);
            // Everyone with this time joins the risk set; the deaths also form the tie set.
            while i < end && ds[i] == t {
                let r = i;
                let x = &xs[r * p..(r + 1) * p];
                let eta: f64 = x.iter().zip(beta).map(|(a, b)| a * b).sum();
                let w = eta.exp();
                s0 += w;
                for a in 0..p {
                    s1[a] += w * x[a];
                    for b in 0..=a {
                        s2[a * p + b] += w * x[a] * x[b];
                    }
                }
                if es[r] {
                    m += 1;
                    d0 += w;
                    ll += eta;
                    for a in 0..p {
                        grad[a] += x[a];
                        d1[a] += w * x[a];
                        for b in 0..=a {
                            d2[a * p + b] += w * x[a] * x[b];
                        }
                    }
                }
                i += 1;
            }
            if m == 0 {
                continue;
            }
            for l in 0..m {
                let f = match inp.ties {
                    Ties::Efron => l as f64 / m as f64,
                    Ties::Breslow => 0.0,
                };
                let den = s0 - f * d0;
                ll -= den.ln();
                for a in 0..p {
                    num[a] = s1[a] - f * d1[a];
                    grad[a] -= num[a] / den;
                }
                for a in 0..p {
                    for b in 0..=a {
                        let second = (s2[a * p + b] - f * d2[a * p + b]) / den;
                        info[a * p + b] += second - num[a] * num[b] / (den * den);
                    }
                }
            }
        }
    }
    for a in 0..p {
        for b in 0..a {
            info[b * p + a] = info[a * p + b];
        }
    }
    if inp.penalizer > 0.0 {
        // Per observation, as lifelines (which maximises the mean log-likelihood).
        let lambda = inp.penalizer * inp.durations.len() as f64;
        for a in 0..p {
            ll -= 0.5 * lambda * beta[a] * beta[a];
            grad[a] -= lambda * beta[a];
            info[a * p + a] += lambda;
        }
    }
    Eval { ll, grad, info }
}

/// Fits the model.
pub fn cox(inp: &CoxInput<'_>) -> Result<CoxModel, StatsError> {
    let (n, p) = (inp.durations.len(), inp.p);
    if inp.events.len() != n || inp.x.len() != n * p || inp.strata.is_some_and(|s| s.len() != n) {
        return Err(StatsError::Shape(
            "durations, events, covariates and strata differ in length".into(),
        ));
    }
    if p == 0 {
        return Err(StatsError::Invalid("no covariates".into()));
    }
    if !inp.events.iter().any(|e| *e) {
        return Err(StatsError::Empty("no events: the Cox model is undefined".into()));
    }
    if let Some(i) = inp.durations.iter().position(|d| !d.is_finite() || *d < 0.0) {
        return Err(StatsError::Invalid(format!(
            "row {}: duration is not a non-negative number",
            i + 1
        )));
    }
    if let Some(i) = inp.x.iter().position(|v| !v.is_finite()) {
        return Err(StatsError::Invalid(format!("row {}: a covariate is not a number", i / p + 1)));
    }
    // Standardise.
    let mut means = vec![0.0; p];
    let mut sds = vec![0.0; p];
    for a in 0..p {
        let m = (0..n).map(|i| inp.x[i * p + a]).sum::<f64>() / n as f64;
        let v =
            (0..n).map(|i| (inp.x[i * p + a] - m).powi(2)).sum::<f64>() / (n as f64 - 1.0).max(1.0);
        means[a] = m;
        sds[a] = v.sqrt();
        if sds[a].is_nan() || sds[a] <= 0.0 {
            return Err(StatsError::Singular(format!("covariate {} is constant", a + 1)));
        }
    }
    let xs: Vec<f64> = (0..n * p).map(|k| (inp.x[k] - means[k % p]) / sds[k % p]).collect();
    let groups = order(inp);

    let mut beta = vec![0.0; p];
    let rows = sorted(inp, &xs, &groups);
    let null = evaluate(inp, &rows, &beta);
    let mut cur = null.clone();
    let mut iterations = 0;
    for it in 1..=100 {
        iterations = it;
        let l = cholesky(&cur.info, p)?;
        let step = cholesky_solve(&l, p, &cur.grad);
        // Halve the step until the likelihood does not fall.
        let mut scale = 1.0;
        let mut next;
        loop {
            let cand: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + scale * s).collect();
            next = evaluate(inp, &rows, &cand);
            if next.ll.is_finite() && next.ll >= cur.ll - 1e-12 * cur.ll.abs() || scale < 1e-8 {
                beta = cand;
                break;
            }
            scale /= 2.0;
        }
        let moved = step.iter().map(|s| (s * scale).abs()).fold(0.0, f64::max);
        let gain = next.ll - cur.ll;
        cur = next;
        if moved < 1e-10 || (gain.abs() < 1e-13 * cur.ll.abs().max(1.0) && moved < 1e-7) {
            break;
        }
    }
    let cov = spd_inverse(&cur.info, p)?;
    let z975 = normal_ppf(0.975);
    let mut out = CoxModel {
        coef: Vec::with_capacity(p),
        se: Vec::with_capacity(p),
        z: Vec::with_capacity(p),
        p: Vec::with_capacity(p),
        hr: Vec::with_capacity(p),
        hr_ci: Vec::with_capacity(p),
        log_likelihood: cur.ll,
        log_likelihood_null: null.ll,
        lr_test: Test { statistic: 0.0, df: p, p: 1.0 },
        wald_test: Test { statistic: 0.0, df: p, p: 1.0 },
        score_test: Test { statistic: 0.0, df: p, p: 1.0 },
        concordance: 0.0,
        iterations,
        means: means.clone(),
        baseline: Vec::new(),
    };
    for a in 0..p {
        let (c, se) = (beta[a] / sds[a], cov[a * p + a].sqrt() / sds[a]);
        out.coef.push(c);
        out.se.push(se);
        out.z.push(c / se);
        out.p.push(two_sided_p(c / se));
        out.hr.push(c.exp());
        out.hr_ci.push([(c - z975 * se).exp(), (c + z975 * se).exp()]);
    }
    let lr = 2.0 * (cur.ll - null.ll);
    out.lr_test = Test { statistic: lr, df: p, p: chi2_sf(lr, p as f64) };
    let wald: f64 =
        (0..p).map(|a| (0..p).map(|b| beta[a] * cur.info[a * p + b] * beta[b]).sum::<f64>()).sum();
    out.wald_test = Test { statistic: wald, df: p, p: chi2_sf(wald, p as f64) };
    let score = quad_inv(&null.info, p, &null.grad)?;
    out.score_test = Test { statistic: score, df: p, p: chi2_sf(score, p as f64) };

    // Risk scores on the original scale, centred at the means.
    let eta: Vec<f64> =
        (0..n).map(|i| (0..p).map(|a| (inp.x[i * p + a] - means[a]) * out.coef[a]).sum()).collect();
    let neg: Vec<f64> = eta.iter().map(|e| -e).collect();
    out.concordance = crate::eval::concordance(inp.durations, &neg, inp.events)?;
    for g in &groups {
        out.baseline.push(breslow_baseline(inp.durations, inp.events, &eta, g));
    }
    Ok(out)
}

/// The Breslow estimate of the baseline survival of one stratum (rows sorted by time,
/// longest first): `H0(t) = Σ_{t_i <= t} d_i / Σ_{T_j >= t_i} exp(eta_j)`.
fn breslow_baseline(
    durations: &[f64],
    events: &[bool],
    eta: &[f64],
    rows: &[usize],
) -> (Vec<f64>, Vec<f64>) {
    let mut steps = Vec::new(); // (t, d / risk), from the longest time down
    let mut risk = 0.0;
    let mut i = 0;
    while i < rows.len() {
        let t = durations[rows[i]];
        let mut d = 0.0;
        while i < rows.len() && durations[rows[i]] == t {
            risk += eta[rows[i]].exp();
            d += events[rows[i]] as u8 as f64;
            i += 1;
        }
        steps.push((t, d / risk));
    }
    steps.reverse();
    let mut h = 0.0;
    let (mut times, mut surv) = (Vec::new(), Vec::new());
    for (t, inc) in steps {
        h += inc;
        times.push(t);
        surv.push((-h).exp());
    }
    (times, surv)
}

impl CoxModel {
    /// A subject's survival at `t` in `stratum`: `S0(t) ^ exp((x - means) . coef)`.
    pub fn predict_survival(&self, x: &[f64], stratum: usize, t: f64) -> f64 {
        let eta: f64 =
            x.iter().zip(&self.means).zip(&self.coef).map(|((v, m), c)| (v - m) * c).sum();
        let (times, surv) = &self.baseline[stratum];
        let k = times.partition_point(|u| *u <= t);
        let s0 = if k == 0 { 1.0 } else { surv[k - 1] };
        s0.powf(eta.exp())
    }
}
