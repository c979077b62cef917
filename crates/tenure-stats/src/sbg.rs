//! The shifted-beta-geometric model of contractual retention (Fader & Hardie 2007, "How to
//! project customer retention"), and the discounted expected (residual) lifetime of a
//! customer under it (Fader & Hardie 2010, "Customer-base valuation in a contractual
//! setting: the perils of ignoring heterogeneity").
//!
//! A customer has a constant churn probability θ per period, θ ~ Beta(α, β) across
//! customers: `P(T = t) = B(α + 1, β + t - 1) / B(α, β)`, `S(t) = B(α, β + t) / B(α, β)`.

use crate::StatsError;
use crate::optim::maximize;
use crate::special::hyp2f1;

#[derive(Clone, Debug, PartialEq)]
pub struct Sbg {
    pub alpha: f64,
    pub beta: f64,
    pub log_likelihood: f64,
}

/// `P(T = t)` for t = 1..=n and `S(t)` for t = 0..=n, by the recursions of the 2007 paper.
fn pmf_and_survival(alpha: f64, beta: f64, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut pmf = Vec::with_capacity(n);
    let mut s = vec![1.0];
    for t in 1..=n {
        let p = if t == 1 {
            alpha / (alpha + beta)
        } else {
            pmf[t - 2] * (beta + t as f64 - 2.0) / (alpha + beta + t as f64 - 1.0)
        };
        pmf.push(p);
        s.push(s[t - 1] - p);
    }
    (pmf, s)
}

/// Fits α, β to a cohort's survivor counts `n_0, n_1, ..., n_T` (customers still active at
/// the start of each period; `n_0` = the cohort).
pub fn fit(survivors: &[f64]) -> Result<Sbg, StatsError> {
    if survivors.len() < 2 {
        return Err(StatsError::Invalid("at least two survivor counts are needed".into()));
    }
    if survivors.windows(2).any(|w| w[1] > w[0]) || survivors.iter().any(|v| *v < 0.0) {
        return Err(StatsError::Invalid(
            "survivor counts must not increase nor be negative".into(),
        ));
    }
    if survivors[0] == survivors[survivors.len() - 1] {
        return Err(StatsError::Invalid("nobody churned: α and β are not identified".into()));
    }
    let ll = |x: &[f64]| log_likelihood(survivors, x[0].exp(), x[1].exp());
    let x = maximize(&ll, &[0.0, 0.0]);
    let (alpha, beta) = (x[0].exp(), x[1].exp());
    Ok(Sbg { alpha, beta, log_likelihood: log_likelihood(survivors, alpha, beta) })
}

fn log_likelihood(survivors: &[f64], alpha: f64, beta: f64) -> f64 {
    let n = survivors.len() - 1;
    let (pmf, s) = pmf_and_survival(alpha, beta, n);
    let mut ll = 0.0;
    for t in 1..=n {
        let lost = survivors[t - 1] - survivors[t];
        if lost > 0.0 {
            ll += lost * pmf[t - 1].ln();
        }
    }
    if survivors[n] > 0.0 {
        ll += survivors[n] * s[n].ln();
    }
    ll
}

impl Sbg {
    /// `S(t)` for t = 0..=periods.
    pub fn survival(&self, periods: usize) -> Vec<f64> {
        pmf_and_survival(self.alpha, self.beta, periods).1
    }

    /// Retention rates `r_t = S(t) / S(t - 1) = (β + t - 1) / (α + β + t - 1)`, t = 1..=periods.
    pub fn retention(&self, periods: usize) -> Vec<f64> {
        (1..=periods)
            .map(|t| (self.beta + t as f64 - 1.0) / (self.alpha + self.beta + t as f64 - 1.0))
            .collect()
    }

    /// Discounted expected lifetime of a new customer, in periods (payments at the start of
    /// each period, the first undiscounted): `2F1(1, β; α + β; 1 / (1 + d))`.
    pub fn del(&self, discount: f64) -> f64 {
        hyp2f1(1.0, self.beta, self.alpha + self.beta, 1.0 / (1.0 + discount))
    }

    /// Discounted expected residual lifetime of a customer who has made `renewals` renewals,
    /// just before the next renewal decision (2010, eq. 6):
    /// `(β + n) / (α + β + n) × 2F1(1, β + n + 1; α + β + n + 1; 1 / (1 + d))`.
    pub fn derl(&self, discount: f64, renewals: u32) -> f64 {
        let n = renewals as f64;
        (self.beta + n) / (self.alpha + self.beta + n)
            * hyp2f1(
                1.0,
                self.beta + n + 1.0,
                self.alpha + self.beta + n + 1.0,
                1.0 / (1.0 + discount),
            )
    }
}
