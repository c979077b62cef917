//! The BG/NBD model of repeat purchases in a non-contractual setting and the Gamma-Gamma
//! model of spend per transaction (Fader, Hardie & Lee 2005: "Counting your customers the
//! easy way", and "RFM and CLV: using iso-value curves for customer base analysis").
//!
//! Per customer: `x` repeat transactions (frequency), the time of the last one `t_x`
//! (recency), the length of observation `T`, all from the first transaction.

use crate::StatsError;
use crate::optim::maximize;
use crate::special::{digamma, hyp2f1, ln_gamma};

#[derive(Clone, Debug, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub log_likelihood: f64,
}

fn check(x: &[f64], t_x: &[f64], t: &[f64]) -> Result<(), StatsError> {
    if x.len() != t_x.len() || x.len() != t.len() {
        return Err(StatsError::Shape("frequency, recency and T differ in length".into()));
    }
    if x.is_empty() {
        return Err(StatsError::Empty("no customers".into()));
    }
    for i in 0..x.len() {
        if !(x[i] >= 0.0 && t_x[i] >= 0.0 && t[i] > 0.0 && t_x[i] <= t[i]) {
            return Err(StatsError::Invalid(format!(
                "row {}: need frequency >= 0, 0 <= recency <= T and T > 0",
                i + 1
            )));
        }
        if x[i] == 0.0 && t_x[i] != 0.0 {
            return Err(StatsError::Invalid(format!(
                "row {}: a customer without repeat transactions has recency 0",
                i + 1
            )));
        }
    }
    if !x.iter().any(|v| *v > 0.0) {
        return Err(StatsError::Invalid(
            "no repeat transactions: the model is not identified".into(),
        ));
    }
    Ok(())
}

/// Sum of the individual log-likelihoods (2005, eq. 6). The log-gamma terms depend on the
/// customer only through `x`, so they are computed once per distinct frequency.
pub fn bgnbd_log_likelihood(p: [f64; 4], x: &[f64], t_x: &[f64], t: &[f64]) -> f64 {
    let [r, alpha, a, b] = p;
    let (lg_r, lg_ab, lg_b) = (ln_gamma(r), ln_gamma(a + b), ln_gamma(b));
    let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
    // A1 + A2 per integral frequency (the usual case), computed on first use.
    let top = x.iter().fold(0.0f64, |m, v| m.max(*v)).min(1e6) as usize;
    let mut table = vec![f64::NAN; top + 1];
    let mut ll = 0.0;
    for i in 0..x.len() {
        let xi = x[i];
        let direct = || {
            ln_gamma(r + xi) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + xi)
                - lg_b
                - ln_gamma(a + b + xi)
        };
        let a12 = if xi.fract() == 0.0 && (xi as usize) <= top {
            let slot = &mut table[xi as usize];
            if slot.is_nan() {
                *slot = direct();
            }
            *slot
        } else {
            direct()
        };
        let a3 = -(r + xi) * (alpha + t[i]).ln();
        let li = if xi > 0.0 {
            let a4 = ln_a - (b + xi - 1.0).ln() - (r + xi) * (alpha + t_x[i]).ln();
            let m = a3.max(a4);
            m + ((a3 - m).exp() + (a4 - m).exp()).ln()
        } else {
            a3
        };
        ll += a12 + li;
    }
    ll
}

/// The log-likelihood and its gradient with respect to the log-parameters
/// `(ln r, ln α, ln a, ln b)`; the digamma and log-gamma terms are computed once per
/// distinct integral frequency.
pub fn bgnbd_gradient(p: [f64; 4], x: &[f64], t_x: &[f64], t: &[f64]) -> (f64, [f64; 4]) {
    // Chunks in parallel, summed in a fixed order (the same result on any number of threads).
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    let parts: Vec<(f64, [f64; 4])> = x
        .par_chunks(CHUNK)
        .zip(t_x.par_chunks(CHUNK))
        .zip(t.par_chunks(CHUNK))
        .map(|((x, t_x), t)| bgnbd_gradient_serial(p, x, t_x, t))
        .collect();
    parts.iter().fold((0.0, [0.0; 4]), |(ll, g), (l, h)| {
        (ll + l, [g[0] + h[0], g[1] + h[1], g[2] + h[2], g[3] + h[3]])
    })
}

fn bgnbd_gradient_serial(p: [f64; 4], x: &[f64], t_x: &[f64], t: &[f64]) -> (f64, [f64; 4]) {
    let [r, alpha, a, b] = p;
    let (lg_r, lg_ab, lg_b) = (ln_gamma(r), ln_gamma(a + b), ln_gamma(b));
    let (ps_r, ps_ab, ps_b) = (digamma(r), digamma(a + b), digamma(b));
    let (ln_alpha, ln_a) = (alpha.ln(), a.ln());
    let top = x.iter().fold(0.0f64, |m, v| m.max(*v)).min(1e6) as usize;
    // Per frequency: A1 + A2, dA/dr, dA/da, dA/db (NaN = not computed yet).
    let mut table = vec![[f64::NAN; 4]; top + 1];
    let terms = |xi: f64| {
        [
            ln_gamma(r + xi) - lg_r + r * ln_alpha + lg_ab + ln_gamma(b + xi)
                - lg_b
                - ln_gamma(a + b + xi),
            digamma(r + xi) - ps_r + ln_alpha,
            ps_ab - digamma(a + b + xi),
            ps_ab + digamma(b + xi) - ps_b - digamma(a + b + xi),
        ]
    };
    let (mut ll, mut g) = (0.0, [0.0f64; 4]);
    for i in 0..x.len() {
        let xi = x[i];
        let c = if xi.fract() == 0.0 && (xi as usize) <= top {
            let slot = &mut table[xi as usize];
            if slot[0].is_nan() {
                *slot = terms(xi);
            }
            *slot
        } else {
            terms(xi)
        };
        let (lt, ltx) = ((alpha + t[i]).ln(), (alpha + t_x[i]).ln());
        let a3 = -(r + xi) * lt;
        let (li, w3, w4) = if xi > 0.0 {
            let a4 = ln_a - (b + xi - 1.0).ln() - (r + xi) * ltx;
            let m = a3.max(a4);
            let (e3, e4) = ((a3 - m).exp(), (a4 - m).exp());
            (m + (e3 + e4).ln(), e3 / (e3 + e4), e4 / (e3 + e4))
        } else {
            (a3, 1.0, 0.0)
        };
        ll += c[0] + li;
        g[0] += c[1] - w3 * lt - w4 * ltx;
        g[1] += r / alpha - (r + xi) * (w3 / (alpha + t[i]) + w4 / (alpha + t_x[i]));
        g[2] += c[2] + w4 / a;
        if xi > 0.0 {
            g[3] += c[3] - w4 / (b + xi - 1.0);
        } else {
            g[3] += c[3];
        }
    }
    (ll, [g[0] * r, g[1] * alpha, g[2] * a, g[3] * b])
}

/// Fits r, α, a, b by maximum likelihood: a Nelder-Mead start on a systematic subsample
/// (at most 20,000 customers), then Newton's method on every customer with the analytic
/// gradient (the Hessian by differences of gradients).
pub fn fit(x: &[f64], t_x: &[f64], t: &[f64]) -> Result<BgNbd, StatsError> {
    check(x, t_x, t)?;
    let step = x.len().div_ceil(20_000);
    let pick = |v: &[f64]| v.iter().step_by(step).copied().collect::<Vec<f64>>();
    let (sx, stx, st) = (pick(x), pick(t_x), pick(t));
    let f = |p: &[f64]| {
        bgnbd_log_likelihood([p[0].exp(), p[1].exp(), p[2].exp(), p[3].exp()], &sx, &stx, &st)
    };
    let start = crate::optim::nelder_mead_start(&f, &[0.0, 0.0, 0.0, 0.0]);
    let grad = |q: &[f64]| {
        let (ll, g) = bgnbd_gradient([q[0].exp(), q[1].exp(), q[2].exp(), q[3].exp()], x, t_x, t);
        (ll, g.to_vec())
    };
    let q = crate::optim::newton_with_gradient(&grad, &start);
    let p = [q[0].exp(), q[1].exp(), q[2].exp(), q[3].exp()];
    Ok(BgNbd {
        r: p[0],
        alpha: p[1],
        a: p[2],
        b: p[3],
        log_likelihood: bgnbd_log_likelihood(p, x, t_x, t),
    })
}

impl BgNbd {
    /// Expected repeat transactions of a new customer in `(0, t]` (eq. 7).
    pub fn expected_purchases(&self, t: f64) -> f64 {
        let (r, al, a, b) = (self.r, self.alpha, self.a, self.b);
        (a + b - 1.0) / (a - 1.0)
            * (1.0 - (al / (al + t)).powf(r) * hyp2f1(r, b, a + b - 1.0, t / (al + t)))
    }

    /// Probability that a customer with history (x, t_x, T) is still active.
    pub fn p_alive(&self, x: f64, t_x: f64, t: f64) -> f64 {
        if x == 0.0 {
            return 1.0;
        }
        let (r, al, a, b) = (self.r, self.alpha, self.a, self.b);
        1.0 / (1.0 + a / (b + x - 1.0) * ((al + t) / (al + t_x)).powf(r + x))
    }

    /// Expected transactions in the next `horizon` periods of a customer with history
    /// (x, t_x, T) (eq. 10).
    pub fn conditional_expected_purchases(&self, horizon: f64, x: f64, t_x: f64, t: f64) -> f64 {
        let (r, al, a, b) = (self.r, self.alpha, self.a, self.b);
        let z = horizon / (al + t + horizon);
        let lead = (a + b + x - 1.0) / (a - 1.0);
        let bracket = 1.0
            - ((al + t) / (al + t + horizon)).powf(r + x)
                * hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        let den = if x > 0.0 {
            1.0 + a / (b + x - 1.0) * ((al + t) / (al + t_x)).powf(r + x)
        } else {
            1.0
        };
        lead * bracket / den
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
    pub log_likelihood: f64,
}

/// Gamma-Gamma log-likelihood over customers with `x > 0` repeat transactions of mean value
/// `m` (the constant terms in `x` and `m` included, as lifetimes does).
pub fn gamma_gamma_log_likelihood(pq: [f64; 3], x: &[f64], m: &[f64]) -> f64 {
    let [p, q, g] = pq;
    let lg_q = ln_gamma(q);
    let mut ll = 0.0;
    for i in 0..x.len() {
        let (xi, mi) = (x[i], m[i]);
        ll += ln_gamma(p * xi + q) - ln_gamma(p * xi) - lg_q
            + q * g.ln()
            + (p * xi - 1.0) * mi.ln()
            + p * xi * xi.ln()
            - (p * xi + q) * (g + xi * mi).ln();
    }
    ll
}

/// Fits p, q, γ on the customers with at least one repeat transaction and positive spend.
pub fn fit_gamma_gamma(x: &[f64], m: &[f64]) -> Result<GammaGamma, StatsError> {
    if x.len() != m.len() {
        return Err(StatsError::Shape("frequency and monetary value differ in length".into()));
    }
    if let Some(i) = (0..x.len())
        .find(|i| x[*i] > 0.0 && m[*i].partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
    {
        return Err(StatsError::Invalid(format!("row {}: monetary value must be positive", i + 1)));
    }
    let keep: Vec<usize> = (0..x.len()).filter(|i| x[*i] > 0.0).collect();
    if keep.len() < 2 {
        return Err(StatsError::Empty("fewer than two customers with repeat transactions".into()));
    }
    let (x, m): (Vec<f64>, Vec<f64>) = keep.iter().map(|i| (x[*i], m[*i])).unzip();
    let f = |v: &[f64]| gamma_gamma_log_likelihood([v[0].exp(), v[1].exp(), v[2].exp()], &x, &m);
    let v = maximize(&f, &[0.0, 0.0, 0.0]);
    let v = [v[0].exp(), v[1].exp(), v[2].exp()];
    Ok(GammaGamma {
        p: v[0],
        q: v[1],
        gamma: v[2],
        log_likelihood: gamma_gamma_log_likelihood(v, &x, &m),
    })
}

impl GammaGamma {
    /// Customer lifetime value over `periods` future periods of `period_len` time units
    /// (the unit of recency and T), each period's expected transactions (BG/NBD, given the
    /// customer's history) times the expected transaction value (Gamma-Gamma, given the
    /// customer's `x` and mean `m`), discounted at `discount` per period; as lifetimes'
    /// `customer_lifetime_value`.
    #[allow(clippy::too_many_arguments)]
    pub fn clv(
        &self,
        bg: &BgNbd,
        x: f64,
        t_x: f64,
        t: f64,
        m: f64,
        periods: u32,
        period_len: f64,
        discount: f64,
    ) -> f64 {
        let value = self.expected_average_value(x, m);
        let upto = |k: u32| {
            if k == 0 {
                0.0
            } else {
                bg.conditional_expected_purchases(k as f64 * period_len, x, t_x, t)
            }
        };
        (1..=periods)
            .map(|i| value * (upto(i) - upto(i - 1)) / (1.0 + discount).powi(i as i32))
            .sum()
    }

    /// Expected mean transaction value of a customer with `x` repeat transactions averaging `m`.
    pub fn expected_average_value(&self, x: f64, m: f64) -> f64 {
        (self.gamma + m * x) * self.p / (self.p * x + self.q - 1.0)
    }
}
