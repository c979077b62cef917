//! The log-rank test of equal survival across k groups (lifelines'
//! `multivariate_logrank_test`, R's `survdiff`).

use crate::StatsError;
use crate::linalg::quad_inv;
use crate::special::chi2_sf;

#[derive(Clone, Debug, PartialEq)]
pub struct LogRank {
    pub chi2: f64,
    pub df: usize,
    pub p: f64,
    /// Per group (in the order of first appearance of its label index): observed and
    /// expected events.
    pub observed: Vec<f64>,
    pub expected: Vec<f64>,
}

/// `groups[i]` is the group index (0..k) of row i.
pub fn logrank(
    durations: &[f64],
    events: &[bool],
    groups: &[usize],
) -> Result<LogRank, StatsError> {
    let n = durations.len();
    if events.len() != n || groups.len() != n {
        return Err(StatsError::Shape("durations, events and groups differ in length".into()));
    }
    let k = groups.iter().max().map_or(0, |m| m + 1);
    if k < 2 {
        return Err(StatsError::Invalid("the log-rank test needs at least two groups".into()));
    }
    if !events.iter().any(|e| *e) {
        return Err(StatsError::Empty("no events: the log-rank test is undefined".into()));
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|a, b| durations[*a].total_cmp(&durations[*b]));
    let mut at_risk = vec![0.0f64; k];
    for g in groups {
        at_risk[*g] += 1.0;
    }
    let (mut obs, mut exp) = (vec![0.0; k], vec![0.0; k]);
    let mut var = vec![0.0; k * k];
    let mut i = 0;
    while i < n {
        let t = durations[idx[i]];
        let (mut d_g, mut leave) = (vec![0.0; k], vec![0.0; k]);
        while i < n && durations[idx[i]] == t {
            let r = idx[i];
            if events[r] {
                d_g[groups[r]] += 1.0;
            }
            leave[groups[r]] += 1.0;
            i += 1;
        }
        let d: f64 = d_g.iter().sum();
        let nt: f64 = at_risk.iter().sum();
        if d > 0.0 {
            for g in 0..k {
                obs[g] += d_g[g];
                exp[g] += d * at_risk[g] / nt;
            }
            if nt > 1.0 {
                let f = d * (nt - d) / (nt * nt * (nt - 1.0));
                for a in 0..k {
                    for b in 0..k {
                        let delta = if a == b { nt } else { 0.0 };
                        var[a * k + b] += f * at_risk[a] * (delta - at_risk[b]);
                    }
                }
            }
        }
        for g in 0..k {
            at_risk[g] -= leave[g];
        }
    }
    // The k-1 first groups carry all the information (the differences sum to zero).
    let m = k - 1;
    let diff: Vec<f64> = (0..m).map(|g| obs[g] - exp[g]).collect();
    let sub: Vec<f64> =
        (0..m).flat_map(|a| (0..m).map(move |b| (a, b))).map(|(a, b)| var[a * k + b]).collect();
    let chi2 = quad_inv(&sub, m, &diff)?;
    Ok(LogRank { chi2, df: m, p: chi2_sf(chi2, m as f64), observed: obs, expected: exp })
}
