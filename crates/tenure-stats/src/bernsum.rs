//! The distribution of a sum of independent weighted Bernoulli outcomes: item `i` brings
//! `amount_i` with probability `p_i` (a contract that renews, say). Used for the interval of
//! a forecast total: its quantiles come from the outcomes themselves, not from a normal
//! guess.
//!
//! Exact while the support is small (every reachable sum with its probability), compressed
//! beyond [`MAX_POINTS`] (neighbouring sums merged at their probability-weighted mean, which
//! keeps the mass and the mean), and for more than [`CONVOLVE_MAX`] uncertain items the
//! Cornish-Fisher expansion on the sum's exact first four cumulants, where the sum is
//! already close to normal and the expansion's error is far below a contract's size.

use crate::StatsError;

/// Support points kept before neighbours are merged.
pub const MAX_POINTS: usize = 4096;
/// Uncertain items (0 < p < 1) convolved one by one; beyond, Cornish-Fisher.
pub const CONVOLVE_MAX: usize = 50_000;

/// How a [`SumDist`] was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Every reachable sum, with its probability.
    Exact,
    /// Convolved, with neighbouring sums merged to at most [`MAX_POINTS`].
    Compressed,
    /// Cornish-Fisher on the exact cumulants.
    CornishFisher,
}

/// The distribution of `sum_i amount_i * B_i`, `B_i ~ Bernoulli(p_i)` independent.
#[derive(Clone, Debug)]
pub struct SumDist {
    /// Sums with their probabilities, ascending (empty for Cornish-Fisher).
    points: Vec<(i64, f64)>,
    /// What every outcome brings for certain (items with p = 1).
    certain: i64,
    /// The mean, exactly `sum p_i amount_i` (in floating point).
    pub mean: f64,
    /// Cumulants 2 to 4 of the uncertain part.
    k: [f64; 3],
    /// The largest possible sum (every item comes in).
    max: i64,
    pub method: Method,
}

/// Builds the distribution of the sum of `items` (probability, amount >= 0).
pub fn distribution(items: &[(f64, i64)]) -> Result<SumDist, StatsError> {
    let one: Vec<[(f64, i64); 1]> = items.iter().map(|&(_, a)| [(1.0, a)]).collect();
    let mixed: Vec<(f64, &[(f64, i64)])> =
        items.iter().zip(&one).map(|(&(p, _), o)| (p, &o[..])).collect();
    distribution_of(&mixed)
}

/// As [`distribution`], where item `i` comes in with probability `p_i` and then brings an
/// amount drawn from its own discrete distribution `(weight, amount)` (weights summing to 1):
/// a renewal whose ARR may grow or shrink.
pub fn distribution_of(items: &[(f64, &[(f64, i64)])]) -> Result<SumDist, StatsError> {
    let mut certain = 0i64;
    let mut max = 0i64;
    let mut mean = 0.0;
    let mut k = [0.0; 3];
    let mut uncertain: Vec<(f64, &[(f64, i64)])> = Vec::new();
    for (i, &(p, amounts)) in items.iter().enumerate() {
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::Invalid(format!("item {i}: probability {p} is not in [0, 1]")));
        }
        let wsum: f64 = amounts.iter().map(|x| x.0).sum();
        if amounts.is_empty()
            || amounts.iter().any(|x| x.0.is_nan() || x.0 < 0.0)
            || (wsum - 1.0).abs() > 1e-9
        {
            return Err(StatsError::Invalid(format!(
                "item {i}: the amounts' weights must be non-negative and sum to 1"
            )));
        }
        if let Some(a) = amounts.iter().find(|x| x.1 < 0) {
            return Err(StatsError::Invalid(format!("item {i}: amount {} is negative", a.1)));
        }
        max = max.saturating_add(amounts.iter().map(|x| x.1).max().unwrap_or(0));
        // Raw moments of the item: E[X^j] = p E[A^j].
        let m = |j: i32| p * amounts.iter().map(|&(w, a)| w * (a as f64).powi(j)).sum::<f64>();
        let (m1, m2, m3, m4) = (m(1), m(2), m(3), m(4));
        mean += m1;
        let single = amounts.len() == 1 || amounts.iter().all(|x| x.1 == amounts[0].1);
        if p == 1.0 && single {
            certain = certain.saturating_add(amounts[0].1);
        } else if p > 0.0 && amounts.iter().any(|x| x.1 > 0) {
            let c2 = m2 - m1 * m1;
            let c3 = m3 - 3.0 * m1 * m2 + 2.0 * m1.powi(3);
            let c4 = m4 - 4.0 * m1 * m3 + 6.0 * m1 * m1 * m2 - 3.0 * m1.powi(4);
            k[0] += c2;
            k[1] += c3;
            k[2] += c4 - 3.0 * c2 * c2;
            uncertain.push((p, amounts));
        }
    }
    if uncertain.len() > CONVOLVE_MAX {
        return Ok(SumDist {
            points: Vec::new(),
            certain,
            mean,
            k,
            max,
            method: Method::CornishFisher,
        });
    }
    // Largest amounts first: the support spreads early and later items fill it in.
    uncertain.sort_by_key(|x| std::cmp::Reverse(x.1.iter().map(|a| a.1).max().unwrap_or(0)));
    let mut points: Vec<(i64, f64)> = vec![(0, 1.0)];
    let mut method = Method::Exact;
    for &(p, amounts) in &uncertain {
        // "Not in" (the points as they are), then each amount's shifted copy merged in.
        let mut acc: Vec<(i64, f64)> = points.iter().map(|&(v, m)| (v, m * (1.0 - p))).collect();
        for &(w, a) in amounts {
            if w == 0.0 {
                continue;
            }
            let shifted = points.iter().map(|&(v, m)| (v + a, m * p * w));
            acc = merge(&acc, shifted);
        }
        points = acc;
        if points.len() > MAX_POINTS {
            points = compress(&points, MAX_POINTS / 2);
            method = Method::Compressed;
        }
    }
    Ok(SumDist { points, certain, mean, k, max, method })
}

/// Merges two ascending lists of (sum, probability), adding the probabilities of equal sums.
fn merge(a: &[(i64, f64)], b: impl Iterator<Item = (i64, f64)>) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(2 * a.len());
    let mut b = b.peekable();
    let mut i = 0;
    loop {
        match (a.get(i), b.peek()) {
            (Some(&x), Some(&y)) if x.0 == y.0 => {
                out.push((x.0, x.1 + y.1));
                i += 1;
                b.next();
            }
            (Some(&x), Some(&y)) if x.0 < y.0 => {
                out.push(x);
                i += 1;
            }
            (Some(&x), None) => {
                out.push(x);
                i += 1;
            }
            (_, Some(&y)) => {
                out.push(y);
                b.next();
            }
            (None, None) => return out,
        }
    }
}

/// Merges `points` (ascending) into at most `bins` points of equal width over the range
/// that holds all but a negligible mass; each keeps its mass at its weighted mean.
fn compress(points: &[(i64, f64)], bins: usize) -> Vec<(i64, f64)> {
    const TAIL: f64 = 1e-15;
    let total: f64 = points.iter().map(|p| p.1).sum();
    // The far tails (under TAIL of the mass each) join the nearest point kept.
    let mut lo = 0;
    let mut acc = 0.0;
    while lo + 1 < points.len() && acc + points[lo].1 < TAIL * total {
        acc += points[lo].1;
        lo += 1;
    }
    let mut hi = points.len() - 1;
    let mut acc_hi = 0.0;
    while hi > lo && acc_hi + points[hi].1 < TAIL * total {
        acc_hi += points[hi].1;
        hi -= 1;
    }
    let (min, max) = (points[lo].0, points[hi].0);
    let width = ((max - min) as f64 / bins as f64).max(1.0);
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(bins + 1);
    let mut cur: Option<(usize, f64, f64)> = None; // (bin, mass, mass x value)
    let flush = |c: (usize, f64, f64), out: &mut Vec<(i64, f64)>| {
        if c.1 > 0.0 {
            let v = (c.2 / c.1).round() as i64;
            // Bins are ascending, so their means are too; equal means merge.
            match out.last_mut() {
                Some(last) if last.0 >= v => last.1 += c.1,
                _ => out.push((v, c.1)),
            }
        }
    };
    for (k, &(v, m)) in points[lo..=hi].iter().enumerate() {
        let mut m = m;
        if k == 0 {
            m += acc;
        }
        if k == hi - lo {
            m += acc_hi;
        }
        let b = (((v - min) as f64 / width) as usize).min(bins - 1);
        match cur {
            Some((cb, cm, cs)) if cb == b => cur = Some((cb, cm + m, cs + m * v as f64)),
            Some(c) => {
                flush(c, &mut out);
                cur = Some((b, m, m * v as f64));
            }
            None => cur = Some((b, m, m * v as f64)),
        }
    }
    if let Some(c) = cur {
        flush(c, &mut out);
    }
    out
}

impl SumDist {
    /// The smallest sum `x` with `P(sum <= x) >= q` (`q` in (0, 1)).
    pub fn quantile(&self, q: f64) -> i64 {
        if self.method == Method::CornishFisher {
            let sd = self.k[0].sqrt();
            let z = crate::special::normal_ppf(q.clamp(1e-12, 1.0 - 1e-12));
            let (g1, g2) = if sd > 0.0 {
                (self.k[1] / sd.powi(3), self.k[2] / sd.powi(4))
            } else {
                (0.0, 0.0)
            };
            let w = z + (z * z - 1.0) * g1 / 6.0 + (z.powi(3) - 3.0 * z) * g2 / 24.0
                - (2.0 * z.powi(3) - 5.0 * z) * g1 * g1 / 36.0;
            let x = (self.mean + w * sd).round() as i64;
            return x.clamp(self.certain, self.max);
        }
        // Sums of floating-point masses: a cumulative probability meant to be exactly q
        // may fall a hair short of it.
        let mut acc = 0.0;
        for &(v, m) in &self.points {
            acc += m;
            if acc >= q - 1e-12 {
                return self.certain + v;
            }
        }
        self.certain + self.points.last().map_or(0, |p| p.0)
    }

    /// The central interval holding `level` of the probability: the quantiles at
    /// `(1 - level) / 2` and `(1 + level) / 2`.
    pub fn interval(&self, level: f64) -> (i64, i64) {
        (self.quantile((1.0 - level) / 2.0), self.quantile((1.0 + level) / 2.0))
    }

    /// The standard deviation of the sum.
    pub fn sd(&self) -> f64 {
        self.k[0].sqrt()
    }

    /// The support with its probabilities (certain part included); empty for
    /// Cornish-Fisher.
    pub fn points(&self) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.points.iter().map(|&(v, m)| (self.certain + v, m))
    }
}

impl SumDist {
    /// `P(sum <= x)`. For Cornish-Fisher, the probability whose quantile is `x` (found by
    /// bisection: the expansion's quantile rises with the probability at the skews a sum
    /// of many contracts has).
    pub fn cdf(&self, x: i64) -> f64 {
        if self.method == Method::CornishFisher {
            if x < self.certain {
                return 0.0;
            }
            if x >= self.max {
                return 1.0;
            }
            let (mut lo, mut hi) = (0.0f64, 1.0f64);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if self.quantile(mid) <= x { lo = mid } else { hi = mid }
            }
            return lo;
        }
        self.points
            .iter()
            .take_while(|p| self.certain + p.0 <= x)
            .map(|p| p.1)
            .sum::<f64>()
            .min(1.0)
    }
}

/// A mixture of sums: with probability `w_j` the sum is drawn from `parts[j]`. The outcome
/// distribution when the contracts' probabilities are themselves uncertain (a calibration
/// estimated from a few hundred past renewals): one sum per value of the common
/// uncertainty, weighted by a quadrature rule.
#[derive(Clone, Debug)]
pub struct Mixture {
    parts: Vec<(f64, SumDist)>,
}

impl Mixture {
    /// `parts`: weights (non-negative, summing to 1) and sums.
    pub fn new(parts: Vec<(f64, SumDist)>) -> Result<Mixture, StatsError> {
        let total: f64 = parts.iter().map(|p| p.0).sum();
        if parts.is_empty()
            || parts.iter().any(|p| p.0.is_nan() || p.0 < 0.0)
            || (total - 1.0).abs() > 1e-9
        {
            return Err(StatsError::Invalid(
                "a mixture needs weights that are non-negative and sum to 1".into(),
            ));
        }
        Ok(Mixture { parts })
    }

    pub fn cdf(&self, x: i64) -> f64 {
        self.parts.iter().map(|(w, d)| w * d.cdf(x)).sum()
    }

    /// The smallest sum `x` with `P(sum <= x) >= q`: between the parts' own quantiles,
    /// found by bisection on the sum.
    pub fn quantile(&self, q: f64) -> i64 {
        let qs = self.parts.iter().filter(|p| p.0 > 0.0).map(|p| p.1.quantile(q));
        let (mut lo, mut hi) = qs.fold((i64::MAX, i64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        // Invariant: cdf(hi) >= q; the answer is in (lo - 1, hi].
        lo -= 1;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.cdf(mid) >= q - 1e-12 { hi = mid } else { lo = mid }
        }
        hi
    }

    pub fn interval(&self, level: f64) -> (i64, i64) {
        (self.quantile((1.0 - level) / 2.0), self.quantile((1.0 + level) / 2.0))
    }
}

/// The nodes and weights of the 7-point Gauss-Hermite rule for a standard normal
/// (probabilists' form): `E[f(Z)] ~ sum w_j f(z_j)`, exact for polynomials of degree 13.
/// Seven, not five: on 100 contracts at 0.8 with a log-odds error of 0.5, five nodes put
/// the 10% quantile one contract off the exact integral, seven do not.
pub const NORMAL_NODES: [(f64, f64); 7] = [
    (-3.750_439_717_725_742, 0.000_548_268_855_972_218),
    (-2.366_759_410_734_541, 0.030_757_123_967_586_5),
    (-1.154_405_394_739_968, 0.240_123_178_605_013),
    (0.0, 16.0 / 35.0),
    (1.154_405_394_739_968, 0.240_123_178_605_013),
    (2.366_759_410_734_541, 0.030_757_123_967_586_5),
    (3.750_439_717_725_742, 0.000_548_268_855_972_218),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Three contracts worked by hand: 100 at 0.9, 200 at 0.5, 300 at 0.2.
    /// Sums and probabilities (in x out):
    ///   0: 0.1*0.5*0.8 = 0.04     100: 0.9*0.5*0.8 = 0.36   200: 0.1*0.5*0.8 = 0.04
    ///   300: 0.9*0.5*0.8 + 0.1*0.5*0.2 = 0.37                 400: 0.9*0.5*0.2 = 0.09
    ///   500: 0.1*0.5*0.2 = 0.01   600: 0.9*0.5*0.2 = 0.09
    /// Cumulative: 0.04, 0.40, 0.44, 0.81, 0.90, 0.91, 1.00.
    #[test]
    fn three_contracts_by_hand() {
        let d = distribution(&[(0.9, 100), (0.5, 200), (0.2, 300)]).unwrap();
        assert_eq!(d.method, Method::Exact);
        let pts: Vec<(i64, f64)> = d.points().collect();
        let want = [
            (0, 0.04),
            (100, 0.36),
            (200, 0.04),
            (300, 0.37),
            (400, 0.09),
            (500, 0.01),
            (600, 0.09),
        ];
        assert_eq!(pts.len(), want.len());
        for ((v, m), (wv, wm)) in pts.iter().zip(want) {
            assert_eq!(*v, wv);
            assert!((m - wm).abs() < 1e-12, "{v}: {m} vs {wm}");
        }
        // Mean 90 + 100 + 60 = 250.
        assert!((d.mean - 250.0).abs() < 1e-9);
        // 80%: the 10% quantile is 100 (0.40 >= 0.1), the 90% quantile is 400 (0.90).
        assert_eq!(d.interval(0.8), (100, 400));
        assert_eq!(d.quantile(0.5), 300);
        assert_eq!(d.quantile(0.04), 0);
        assert_eq!(d.quantile(0.041), 100);
    }

    /// One contract at 0.5 whose ARR, if it renews, is 90 or 110 (even odds), beside one of
    /// 100 at 0.8: sums 0 (0.1), 90 (0.025... x), worked out:
    ///   neither: 0.5 x 0.2 = 0.10 at 0; only B: 0.5 x 0.8 = 0.40 at 100;
    ///   only A: 0.5 x 0.5 x 0.2 = 0.05 at 90 and 0.05 at 110;
    ///   both: 0.5 x 0.5 x 0.8 = 0.20 at 190 and 0.20 at 210.
    /// Cumulative: 0.10, 0.15 (90), 0.55 (100), 0.60 (110), 0.80 (190), 1.00 (210).
    /// Mean: 0.5 x 100 + 0.8 x 100 = 130.
    #[test]
    fn an_uncertain_amount_spreads_the_sum() {
        let a = [(0.5, 90), (0.5, 110)];
        let b = [(1.0, 100)];
        let d = distribution_of(&[(0.5, &a[..]), (0.8, &b[..])]).unwrap();
        let pts: Vec<(i64, f64)> = d.points().collect();
        let want = [(0, 0.10), (90, 0.05), (100, 0.40), (110, 0.05), (190, 0.20), (210, 0.20)];
        assert_eq!(pts.len(), want.len(), "{pts:?}");
        for ((v, m), (wv, wm)) in pts.iter().zip(want) {
            assert_eq!(*v, wv);
            assert!((m - wm).abs() < 1e-12, "{v}: {m} vs {wm}");
        }
        assert!((d.mean - 130.0).abs() < 1e-9);
        assert_eq!(d.interval(0.8), (0, 210));
        assert_eq!(d.quantile(0.11), 90);
        assert_eq!(d.quantile(0.6), 110);
        // A certain renewal whose amount is uncertain is not a constant.
        let c = distribution_of(&[(1.0, &a[..])]).unwrap();
        assert_eq!(c.interval(0.5), (90, 110));
        assert!(distribution_of(&[(0.5, &[(0.7, 1)][..])]).is_err(), "weights must sum to 1");
    }

    #[test]
    fn certain_and_impossible_items_shift_or_vanish() {
        let d = distribution(&[(1.0, 1000), (0.0, 5000), (0.5, 10)]).unwrap();
        assert_eq!(d.interval(0.8), (1000, 1010));
        assert!((d.mean - 1005.0).abs() < 1e-9);
        let none = distribution(&[]).unwrap();
        assert_eq!(none.interval(0.8), (0, 0));
        assert!(distribution(&[(1.5, 1)]).is_err());
        assert!(distribution(&[(f64::NAN, 1)]).is_err());
        assert!(distribution(&[(0.5, -1)]).is_err());
    }

    /// 200 equal contracts of 1,000 at p = 0.3: the sum is 1,000 x Binomial(200, 0.3).
    /// Its 10% and 90% quantiles, from the exact binomial CDF summed in Python
    /// (`math.comb`): 52 and 68 (mean 60, sd 6.48).
    #[test]
    fn equal_contracts_are_a_binomial() {
        let items = vec![(0.3, 1000); 200];
        let d = distribution(&items).unwrap();
        assert_eq!(d.method, Method::Exact);
        assert_eq!(d.interval(0.8), (52_000, 68_000));
    }

    /// Many different amounts force compression; its quantiles stay within a few units of
    /// the binned width of the exact ones, and Cornish-Fisher agrees with both.
    #[test]
    fn compressed_and_cornish_fisher_agree() {
        let mut s = 12345u64;
        let mut rnd = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as f64 / (1u64 << 31) as f64
        };
        let items: Vec<(f64, i64)> =
            (0..3000).map(|_| (0.5 + 0.49 * rnd(), 1_000 + (rnd() * 99_000.0) as i64)).collect();
        let d = distribution(&items).unwrap();
        assert_eq!(d.method, Method::Compressed);
        let mut cf = d.clone();
        cf.method = Method::CornishFisher;
        for q in [0.05, 0.1, 0.5, 0.9, 0.95] {
            let (a, b) = (d.quantile(q) as f64, cf.quantile(q) as f64);
            assert!((a - b).abs() < 0.05 * d.sd(), "q {q}: {a} vs {b} (sd {})", d.sd());
        }
        let mass: f64 = d.points().map(|p| p.1).sum();
        assert!((mass - 1.0).abs() < 1e-9);
        let mean: f64 = d.points().map(|(v, m)| v as f64 * m).sum();
        assert!((mean - d.mean).abs() < 1e-6 * d.mean, "{mean} vs {}", d.mean);
    }

    /// Two sums worked by hand, mixed half and half: A = one contract of 100 at 0.5
    /// (0: 0.5, 100: 0.5), B = the same at 0.9 (0: 0.1, 100: 0.9). Mixed: 0 with 0.3, 100
    /// with 0.7. The 25% quantile is 0, the 31% quantile 100.
    #[test]
    fn a_mixture_by_hand() {
        let a = distribution(&[(0.5, 100)]).unwrap();
        let b = distribution(&[(0.9, 100)]).unwrap();
        let m = Mixture::new(vec![(0.5, a), (0.5, b)]).unwrap();
        assert!((m.cdf(0) - 0.3).abs() < 1e-12);
        assert!((m.cdf(99) - 0.3).abs() < 1e-12);
        assert!((m.cdf(100) - 1.0).abs() < 1e-12);
        assert_eq!(m.quantile(0.25), 0);
        assert_eq!(m.quantile(0.31), 100);
        assert_eq!(m.interval(0.5), (0, 100));
        let c = distribution(&[(0.5, 100)]).unwrap();
        assert!(Mixture::new(vec![(0.7, c)]).is_err(), "weights must sum to 1");
    }

    /// The Gauss-Hermite rule integrates the standard normal's moments: E[1] = 1,
    /// E[Z^2] = 1, E[Z^4] = 3, ..., E[Z^12] = 11!! = 10,395 (exact to degree 13).
    #[test]
    fn the_normal_nodes_integrate_its_moments() {
        let m = |k: i32| NORMAL_NODES.iter().map(|(z, w)| w * z.powi(k)).sum::<f64>();
        for (k, want) in
            [(0, 1.0), (1, 0.0), (2, 1.0), (4, 3.0), (6, 15.0), (8, 105.0), (12, 10395.0)]
        {
            assert!((m(k) - want).abs() < 1e-9 * want.max(1.0), "E[Z^{k}] = {} vs {want}", m(k));
        }
    }

    /// For Cornish-Fisher, the cdf inverts the quantile.
    #[test]
    fn the_cornish_fisher_cdf_inverts_its_quantile() {
        let items: Vec<(f64, i64)> = (0..CONVOLVE_MAX + 10)
            .map(|i| (0.3 + 0.6 * (i % 7) as f64 / 7.0, 100 + (i % 13) as i64))
            .collect();
        let d = distribution(&items).unwrap();
        assert_eq!(d.method, Method::CornishFisher);
        for q in [0.05, 0.1, 0.5, 0.9, 0.95] {
            let x = d.quantile(q);
            let c = d.cdf(x);
            assert!(c >= q - 1e-6 && d.cdf(x - 200) < q, "q {q}: x {x}, cdf {c}");
        }
    }
}
