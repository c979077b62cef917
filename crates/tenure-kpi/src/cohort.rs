//! Cohort retention tables: accounts grouped by the interval they first paid in, followed
//! interval by interval.

use tenure_core::time::{PeriodUnit, Timestamp};
use tenure_ledger::{Ledger, MovementKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CohortMetric {
    /// Share of the cohort's accounts that are customers.
    Logo,
    /// Cohort MRR over the MRR the cohort started with (new-business MRR); expansion can
    /// take it above 1.
    Revenue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CohortRow {
    pub start: Timestamp,
    pub label: String,
    pub accounts: u64,
    /// New-business MRR of the cohort (base minor units).
    pub base_mrr: i64,
    /// Column k: retention measured at the end of interval k (k = 0 is the first interval).
    /// Only complete intervals (ending at or before `as_of`) are reported.
    pub values: Vec<Option<f64>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CohortTable {
    pub unit: PeriodUnit,
    pub metric: CohortMetric,
    pub rows: Vec<CohortRow>,
}

pub fn cohorts(ledger: &Ledger, unit: PeriodUnit, metric: CohortMetric) -> CohortTable {
    let as_of = ledger.as_of;
    // cohort start -> (accounts, base mrr, per column: customers, mrr)
    type Cols = (u64, i64, Vec<(u64, i64)>);
    let mut map: std::collections::BTreeMap<Timestamp, Cols> = Default::default();
    for a in &ledger.accounts {
        let Some(first) = a.movements.iter().find(|m| m.kind == MovementKind::New) else {
            continue;
        };
        let start = unit.floor(first.ts);
        let entry = map.entry(start).or_insert_with(|| (0, 0, Vec::new()));
        entry.0 += 1;
        entry.1 += first.amount;
        let mut k = 0;
        loop {
            let end = unit.advance(start, k as i64 + 1);
            if end > as_of {
                break;
            }
            if entry.2.len() <= k {
                entry.2.push((0, 0));
            }
            if let Some(s) = a.state_before(end) {
                entry.2[k].0 += s.customer as u64;
                entry.2[k].1 += s.mrr;
            }
            k += 1;
        }
    }
    let rows = map
        .into_iter()
        .map(|(start, (n, base, cols))| CohortRow {
            start,
            label: unit.label(start),
            accounts: n,
            base_mrr: base,
            values: cols
                .iter()
                .map(|(c, m)| match metric {
                    CohortMetric::Logo => Some(*c as f64 / n as f64),
                    CohortMetric::Revenue if base > 0 => Some(*m as f64 / base as f64),
                    CohortMetric::Revenue => None,
                })
                .collect(),
        })
        .collect();
    CohortTable { unit, metric, rows }
}
