//! Survival and lifetime views of the account base: Kaplan-Meier retention by group with the
//! log-rank test, Cox hazard ratios of early signals (a landmark analysis), and sBG-projected
//! lifetime and CLTV per group.

use crate::features::{self, Context, F};
use crate::{HealthError, UsageByAccount};
use tenure_core::time::{DAY, Timestamp};
use tenure_ledger::{AccountLedger, Ledger, MovementKind};
use tenure_stats::cox::{CoxInput, CoxModel, Ties};
use tenure_stats::km::{CiMethod, KaplanMeier};
use tenure_stats::logrank::LogRank;
use tenure_stats::sbg::Sbg;

/// An account's first paid lifetime: from its first paid start to its first churn, or
/// censored at `as_of`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lifetime {
    pub account: usize,
    pub start: Timestamp,
    pub days: f64,
    pub churned: bool,
    pub group: String,
}

/// The group of an account: its plan at the start, the year of its start (`cohort`), or an
/// attribute's value.
pub fn group_of(a: &AccountLedger, by: &str, start: Timestamp) -> String {
    match by {
        "plan" => a
            .state_before(Timestamp(start.0 + 1))
            .and_then(|s| s.plan.as_deref().map(str::to_string)),
        "cohort" => Some(format!("{:04}", start.ymd().0)),
        key => a.attribute_at(key, Timestamp(start.0 + 1)).map(|v| v.label()),
    }
    .unwrap_or_else(|| "(none)".into())
}

pub fn lifetimes(ledger: &Ledger, by: &str) -> Vec<Lifetime> {
    let as_of = ledger.as_of;
    ledger
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let start = a.first_paid().filter(|s| *s < as_of)?;
            let end = a
                .movements
                .iter()
                .find(|m| m.kind == MovementKind::Churn && m.ts > start)
                .map(|m| m.ts);
            let (until, churned) = match end {
                Some(e) if e <= as_of => (e, true),
                _ => (as_of, false),
            };
            Some(Lifetime {
                account: i,
                start,
                days: (until.0 - start.0) as f64 / DAY as f64,
                churned,
                group: group_of(a, by, start),
            })
        })
        .collect()
}

pub struct Curve {
    pub group: String,
    pub km: KaplanMeier,
}

pub struct Hazards {
    pub names: Vec<String>,
    pub model: CoxModel,
    pub n: usize,
    pub events: usize,
    pub landmark_days: i64,
}

pub struct SurvivalReport {
    pub curves: Vec<Curve>,
    pub logrank: Option<LogRank>,
    pub hazards: Option<Hazards>,
}

/// Groups in order of size (largest first), then name.
fn groups(life: &[Lifetime]) -> Vec<String> {
    let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in life {
        *count.entry(&l.group).or_default() += 1;
    }
    let mut g: Vec<(&str, usize)> = count.into_iter().collect();
    g.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    g.into_iter().map(|(n, _)| n.to_string()).collect()
}

/// The signals whose hazard ratios are estimated, read at the landmark.
const SIGNALS: [(F, &str); 6] = [
    (F::UTILISATION, "licence_utilisation"),
    (F::ACTIVE_DAYS, "active_days"),
    (F::TICKETS, "tickets_90d"),
    (F::CHAMPION, "champion"),
    (F::COVERAGE, "contact_coverage"),
    (F::KEY_CONTACTS_LEFT, "key_contacts_left_90d"),
];

/// Kaplan-Meier by group, the log-rank test across groups, and a Cox model of churn after a
/// landmark (`landmark_days` after the start, among accounts still customers then): the
/// signals read at the landmark plus the groups (the largest is the reference).
pub fn survival(
    ledger: &Ledger,
    usage: &UsageByAccount,
    ctx: &Context<'_>,
    by: &str,
    landmark_days: i64,
) -> Result<SurvivalReport, HealthError> {
    let life = lifetimes(ledger, by);
    if life.iter().all(|l| !l.churned) {
        return Err(HealthError::NotEnoughData("no account has churned".into()));
    }
    let names = groups(&life);
    let index = |g: &str| names.iter().position(|n| n == g).expect("every group is named");
    let mut curves = Vec::new();
    for g in &names {
        let (d, e): (Vec<f64>, Vec<bool>) =
            life.iter().filter(|l| &l.group == g).map(|l| (l.days, l.churned)).unzip();
        curves.push(Curve {
            group: g.clone(),
            km: tenure_stats::km::kaplan_meier(&d, &e, 0.05, CiMethod::LogLog)?,
        });
    }
    let (d, e): (Vec<f64>, Vec<bool>) = life.iter().map(|l| (l.days, l.churned)).unzip();
    let gi: Vec<usize> = life.iter().map(|l| index(&l.group)).collect();
    let logrank =
        if names.len() >= 2 { tenure_stats::logrank::logrank(&d, &e, &gi).ok() } else { None };
    // The landmark analysis: covariates known at start + landmark, time counted from there.
    let mut rows: Vec<(Vec<f64>, f64, bool)> = Vec::new();
    for l in life.iter().filter(|l| l.days > landmark_days as f64) {
        let a = &ledger.accounts[l.account];
        let at = Timestamp(l.start.0 + landmark_days * DAY);
        let u = usage.get(&a.id).map_or(&[][..], |v| v.as_slice());
        let Some(row) = features::snapshot(a, u, at, ctx) else { continue };
        let mut x: Vec<f64> = SIGNALS.iter().map(|(f, _)| row.get(*f)).collect();
        for k in 1..names.len() {
            x.push((index(&l.group) == k) as u8 as f64);
        }
        rows.push((x, l.days - landmark_days as f64, l.churned));
    }
    let mut cols: Vec<String> = SIGNALS.iter().map(|(_, n)| n.to_string()).collect();
    cols.extend(names.iter().skip(1).map(|g| format!("{by}={g}")));
    let hazards = (rows.iter().filter(|r| r.2).count() >= 5).then(|| {
        let p = cols.len();
        // A signal unknown at the landmark takes its mean; constant columns are dropped.
        let mut keep = Vec::new();
        for j in 0..p {
            let known: Vec<f64> = rows.iter().map(|r| r.0[j]).filter(|v| v.is_finite()).collect();
            let mean =
                if known.is_empty() { 0.0 } else { known.iter().sum::<f64>() / known.len() as f64 };
            for r in rows.iter_mut() {
                if !r.0[j].is_finite() {
                    r.0[j] = mean;
                }
            }
            let first = rows[0].0[j];
            if rows.iter().any(|r| r.0[j] != first) {
                keep.push(j);
            }
        }
        let x: Vec<f64> = rows.iter().flat_map(|r| keep.iter().map(|j| r.0[*j])).collect();
        let (d, e): (Vec<f64>, Vec<bool>) = rows.iter().map(|r| (r.1, r.2)).unzip();
        let inp = CoxInput {
            durations: &d,
            events: &e,
            x: &x,
            p: keep.len(),
            strata: None,
            ties: Ties::Efron,
            penalizer: 0.0,
        };
        tenure_stats::cox::cox(&inp).ok().map(|model| Hazards {
            names: keep.iter().map(|j| cols[*j].clone()).collect(),
            model,
            n: rows.len(),
            events: e.iter().filter(|v| **v).count(),
            landmark_days,
        })
    });
    Ok(SurvivalReport { curves, logrank, hazards: hazards.flatten() })
}

/// One group's projected lifetime and value.
pub struct Value {
    pub group: String,
    pub accounts: usize,
    /// Paying now, and their mean MRR (base minor units).
    pub active: usize,
    pub arpa: f64,
    pub sbg: Sbg,
    /// Months observed (the survivor series the model was fitted to has one more point).
    pub months: usize,
    /// Projected share still paying after 12, 24 and 36 months.
    pub survival: [f64; 3],
    /// Discounted expected lifetime of a new account, in months, and its value (ARPA ×
    /// that), base minor units.
    pub del_months: f64,
    pub cltv: f64,
    /// The discounted residual value of the accounts paying now: Σ MRR × DERL.
    pub base_value: f64,
}

/// sBG per group: the group's monthly survivor series is read off its Kaplan-Meier curve
/// (so accounts that started at different times pool, each observed as long as it was) and
/// the model projects it; `annual_discount` discounts the months.
pub fn lifetime_value(
    ledger: &Ledger,
    by: &str,
    annual_discount: f64,
) -> Result<Vec<Value>, HealthError> {
    let life = lifetimes(ledger, by);
    let month = 365.25 / 12.0;
    let d = (1.0 + annual_discount).powf(1.0 / 12.0) - 1.0;
    let mut out = Vec::new();
    for g in groups(&life) {
        let members: Vec<&Lifetime> = life.iter().filter(|l| l.group == g).collect();
        let (dur, ev): (Vec<f64>, Vec<bool>) =
            members.iter().map(|l| (l.days / month, l.churned)).unzip();
        if !ev.iter().any(|e| *e) {
            continue;
        }
        let km = tenure_stats::km::kaplan_meier(&dur, &ev, 0.05, CiMethod::LogLog)?;
        // Months with at least a tenth of the group still observed.
        let months = (1..=60usize)
            .take_while(|k| {
                members.iter().filter(|l| l.days / month >= *k as f64).count() * 10 >= members.len()
            })
            .count();
        if months < 3 {
            continue;
        }
        let n0 = members.len() as f64;
        let series: Vec<f64> =
            (0..=months).map(|k| (n0 * km.survival_at(k as f64)).round()).collect();
        let Ok(sbg) = tenure_stats::sbg::fit(&series) else { continue };
        let s = sbg.survival(36);
        let paying: Vec<&&Lifetime> = members.iter().filter(|l| !l.churned).collect();
        let mrr: Vec<i64> =
            paying.iter().map(|l| ledger.accounts[l.account].mrr_before(ledger.as_of)).collect();
        let arpa =
            if mrr.is_empty() { 0.0 } else { mrr.iter().sum::<i64>() as f64 / mrr.len() as f64 };
        let del = sbg.del(d);
        let base_value = paying
            .iter()
            .zip(&mrr)
            .map(|(l, m)| *m as f64 * sbg.derl(d, (l.days / month).floor() as u32))
            .sum();
        out.push(Value {
            group: g,
            accounts: members.len(),
            active: paying.len(),
            arpa,
            months,
            survival: [s[12], s[24], s[36]],
            del_months: del,
            cltv: arpa * del,
            base_value,
            sbg,
        });
    }
    Ok(out)
}
