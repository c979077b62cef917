//! The KPI catalogue (`docs/kpis.md`) as pure functions of a [`Ledger`], a period
//! and an optional cut. Rates whose denominator is zero are `None` (reported as null),
//! never 0 or NaN. Money stays in integer minor units of the base currency.

mod cohort;
pub mod cs;
pub mod explain;
mod segment;
mod stats;
pub mod usage;

pub use cohort::{CohortMetric, CohortRow, CohortTable, cohorts};
pub use segment::By;
pub use stats::wilson;

use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::collections::BTreeMap;
use tenure_core::event::CostCategory;
use tenure_core::money::FxTable;
use tenure_core::time::Period;
use tenure_ledger::{AccountLedger, CostEntry, Ledger, Movement, MovementKind, RenewalOutcome};

/// Settings of the catalogue that are business choices.
#[derive(Clone, Debug)]
pub struct KpiConfig {
    /// Gross margin for CLTV, as a fraction (1.0 = revenue).
    pub gross_margin: f64,
    /// Lowest CSAT score that counts as satisfied (on the configured scale).
    pub csat_satisfied_min: u8,
    /// A fee change year over year at or below this fraction is a decline (-0.2 = -20%).
    pub fee_decline: f64,
    /// The product's feature catalogue (tiers, releases, plans) for the adoption KPIs.
    pub features: Vec<usage::Feature>,
}

impl KpiConfig {
    /// The catalogue's defaults: margin 1, CSAT 1-10 with 9-10 satisfied, fee decline -20%.
    pub fn defaults() -> KpiConfig {
        KpiConfig {
            gross_margin: 1.0,
            csat_satisfied_min: 9,
            fee_decline: -0.2,
            features: Vec::new(),
        }
    }
}

/// One reported value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Base-currency minor units.
    Money(i64),
    /// Base-currency minor units, or undefined.
    MaybeMoney(Option<i64>),
    /// A fraction (0.2 = 20%), or undefined.
    Rate(Option<f64>),
    Count(i64),
    /// A plain number (ratio, months), or undefined.
    Number(Option<f64>),
    /// A 95% interval of a rate, or undefined.
    Interval(Option<(f64, f64)>),
}

/// KPI id -> value, in catalogue order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Kpis(pub Vec<(Cow<'static, str>, Value)>);

impl Kpis {
    pub fn get(&self, id: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == id).map(|(_, v)| v)
    }
}

/// One line of a report: a period, the segment when cut (`Some(None)` = attribute unset).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub period: Period,
    pub segment: Option<Option<String>>,
    pub kpis: Kpis,
}

/// Per-segment sums from which every KPI is derived.
#[derive(Clone, Debug, Default)]
struct Acc {
    mrr_start: i64,
    mrr_end: i64,
    arr_start: i64,
    arr_end: i64,
    /// Start-of-period ARR still in place at the end, per account capped at its start.
    arr_kept: i64,
    new: i64,
    expansion: i64,
    contraction: i64,
    churn: i64,
    reactivation: i64,
    upsell: i64,
    cross_sell: i64,
    // Accounts that were customers at the start: their movements (NRR) and capped end (GRR).
    /// MRR at the end of the accounts that were customers at the start (NRR).
    cohort_end: i64,
    cohort_kept: i64,
    customers_start: i64,
    customers_end: i64,
    customers_new: i64,
    customers_reactivated: i64,
    customers_churned: i64,
    customers_churned_and_returned: i64,
    customers_retained: i64,
    customers_new_and_churned: i64,
    seats_end: i64,
    renewals_due: i64,
    renewals_won: i64,
    renewals_lost: i64,
    renewals_open: i64,
    arr_due: i64,
    arr_won_gross: i64,
    arr_won_net: i64,
    committed_mrr_start: i64,
    committed_mrr_end: i64,
    committed_arr_start: i64,
    committed_arr_end: i64,
    /// What MRR at start and at end gain at the closing rates over the booked ones.
    fx_reval_start: i64,
    fx_reval_end: i64,
    /// A line at start or end is in a currency without a rate (or the ledger has no rates).
    fx_undefined: bool,
    churn_voluntary: i64,
    churn_involuntary: i64,
    customers_churned_voluntary: i64,
    customers_churned_involuntary: i64,
    /// Churned MRR by [`churn_reason`].
    churn_by_reason: BTreeMap<String, i64>,
    cs: cs::CsAcc,
    usage: usage::UsageAcc,
}

impl Acc {
    fn add(&mut self, o: &Acc) {
        macro_rules! sum { ($($f:ident),*) => { $(self.$f = self.$f.saturating_add(o.$f);)* } }
        sum!(
            mrr_start,
            mrr_end,
            arr_start,
            arr_end,
            arr_kept,
            new,
            expansion,
            contraction,
            churn,
            reactivation,
            upsell,
            cross_sell,
            cohort_end,
            cohort_kept,
            customers_start,
            customers_end,
            customers_new,
            customers_reactivated,
            customers_churned,
            customers_churned_and_returned,
            customers_retained,
            customers_new_and_churned,
            seats_end,
            renewals_due,
            renewals_won,
            renewals_lost,
            renewals_open,
            arr_due,
            arr_won_gross,
            arr_won_net,
            committed_mrr_start,
            committed_mrr_end,
            committed_arr_start,
            committed_arr_end,
            fx_reval_start,
            fx_reval_end,
            churn_voluntary,
            churn_involuntary,
            customers_churned_voluntary,
            customers_churned_involuntary
        );
        self.fx_undefined |= o.fx_undefined;
        for (r, m) in &o.churn_by_reason {
            let slot = self.churn_by_reason.entry(r.clone()).or_default();
            *slot = slot.saturating_add(*m);
        }
        self.cs.add(&o.cs);
        self.usage.add(&o.usage);
    }

    fn account(
        &mut self,
        a: &AccountLedger,
        p: Period,
        cfg: &KpiConfig,
        usage: Option<&usage::AccountUsage>,
        fx: Option<&FxTable>,
        cs: bool,
    ) {
        if cs {
            self.cs.account(a, p, cfg);
        }
        self.usage.account(a, p, usage, &cfg.features);
        let s = a.state_before(p.start);
        let e = a.state_before(p.end);
        let (mrr_s, cust_s) = s.map_or((0, false), |s| (s.mrr, s.customer));
        let (mrr_e, cust_e) = e.map_or((0, false), |s| (s.mrr, s.customer));
        self.mrr_start = self.mrr_start.saturating_add(mrr_s);
        self.mrr_end = self.mrr_end.saturating_add(mrr_e);
        let (arr_s, arr_e) = (s.map_or(0, |s| s.arr), e.map_or(0, |s| s.arr));
        self.arr_start = self.arr_start.saturating_add(arr_s);
        self.arr_end = self.arr_end.saturating_add(arr_e);
        if cust_s {
            self.arr_kept = self.arr_kept.saturating_add(arr_e.min(arr_s));
        }
        self.customers_start = self.customers_start.saturating_add(cust_s as i64);
        self.customers_end = self.customers_end.saturating_add(cust_e as i64);
        self.seats_end = self.seats_end.saturating_add(e.map_or(0, |s| s.seats as i64));
        let ((cm_s, ca_s), (cm_e, ca_e)) = (a.committed_before(p.start), a.committed_before(p.end));
        self.committed_mrr_start = self.committed_mrr_start.saturating_add(cm_s);
        self.committed_mrr_end = self.committed_mrr_end.saturating_add(cm_e);
        self.committed_arr_start = self.committed_arr_start.saturating_add(ca_s);
        self.committed_arr_end = self.committed_arr_end.saturating_add(ca_e);
        match fx
            .map(|fx| (a.fx_revaluation_before(p.start, fx), a.fx_revaluation_before(p.end, fx)))
        {
            Some((Some(rs), Some(re))) => {
                self.fx_reval_start = self.fx_reval_start.saturating_add(rs);
                self.fx_reval_end = self.fx_reval_end.saturating_add(re);
            }
            _ => self.fx_undefined = true,
        }
        let (mut had_new, mut had_react, mut had_churn) = (false, false, false);
        // The last churn of the period says how a customer lost by its end was lost.
        let mut last_churn_involuntary = false;
        for m in a.movements_in(p.start, p.end) {
            match m.kind {
                MovementKind::New => {
                    self.new = self.new.saturating_add(m.amount);
                    had_new = true;
                }
                MovementKind::Reactivation => {
                    self.reactivation = self.reactivation.saturating_add(m.amount);
                    had_react = true;
                }
                MovementKind::Expansion => {
                    self.expansion = self.expansion.saturating_add(m.amount);
                    self.upsell = self.upsell.saturating_add(m.upsell);
                    self.cross_sell = self.cross_sell.saturating_add(m.cross_sell);
                }
                MovementKind::Contraction => {
                    self.contraction = self.contraction.saturating_add(m.amount);
                }
                MovementKind::Churn => {
                    self.churn = self.churn.saturating_add(m.amount);
                    if m.involuntary {
                        self.churn_involuntary = self.churn_involuntary.saturating_add(m.amount);
                    } else {
                        self.churn_voluntary = self.churn_voluntary.saturating_add(m.amount);
                    }
                    let slot =
                        self.churn_by_reason.entry(churn_reason(m).into_owned()).or_default();
                    *slot = slot.saturating_add(m.amount);
                    had_churn = true;
                    last_churn_involuntary = m.involuntary;
                }
            }
        }
        self.customers_new = self.customers_new.saturating_add(had_new as i64);
        self.customers_reactivated =
            self.customers_reactivated.saturating_add((had_react && !cust_s) as i64);
        // Customers at the start no longer customers at the end are lost; those that churned
        // and came back within the period are counted apart, so churn + retention = 1.
        self.customers_churned = self.customers_churned.saturating_add((cust_s && !cust_e) as i64);
        if cust_s && !cust_e {
            // Losing a customer within the period takes a churn movement in it.
            if last_churn_involuntary {
                self.customers_churned_involuntary += 1;
            } else {
                self.customers_churned_voluntary += 1;
            }
        }
        self.customers_churned_and_returned = self
            .customers_churned_and_returned
            .saturating_add((cust_s && cust_e && had_churn) as i64);
        self.customers_new_and_churned =
            self.customers_new_and_churned.saturating_add((had_churn && !cust_s) as i64);
        if cust_s {
            self.customers_retained = self.customers_retained.saturating_add(cust_e as i64);
            self.cohort_kept = self.cohort_kept.saturating_add(mrr_e.min(mrr_s));
            self.cohort_end = self.cohort_end.saturating_add(mrr_e);
        }
        for r in a.renewals.iter().filter(|r| p.contains(r.due)) {
            self.renewals_due = self.renewals_due.saturating_add(1);
            self.arr_due = self.arr_due.saturating_add(r.arr_due);
            match r.outcome {
                RenewalOutcome::Won { arr, .. } => {
                    self.renewals_won = self.renewals_won.saturating_add(1);
                    self.arr_won_gross = self.arr_won_gross.saturating_add(arr.min(r.arr_due));
                    self.arr_won_net = self.arr_won_net.saturating_add(arr);
                }
                RenewalOutcome::Lost { .. } => self.renewals_lost += 1,
                RenewalOutcome::Open => self.renewals_open += 1,
            }
        }
    }
}

/// The key a churn's MRR counts under in `mrr_churn_by_reason.KEY`: the cancel reason with
/// each run of whitespace made one space (so that it stays on one line of a table); without
/// one, `unpaid` when the churn is involuntary, else `unspecified`.
pub fn churn_reason(m: &Movement) -> Cow<'static, str> {
    match m.cancel_reason.as_deref().map(|r| r.split_whitespace().collect::<Vec<_>>().join(" ")) {
        Some(r) if !r.is_empty() => Cow::Owned(r),
        _ if m.involuntary => Cow::Borrowed("unpaid"),
        _ => Cow::Borrowed("unspecified"),
    }
}

pub(crate) fn ratio(num: f64, den: f64) -> Option<f64> {
    if den == 0.0 { None } else { Some(num / den) }
}

/// Costs of a category falling in the period, pro rata by overlap.
fn cost_in(costs: &[CostEntry], category: CostCategory, p: Period) -> i64 {
    costs
        .iter()
        .filter(|c| c.category == category)
        .map(|c| {
            let (s, e) = (c.start.max(p.start), c.end.min(p.end));
            if e <= s {
                return 0;
            }
            let part = (e.0 - s.0) as i128;
            let whole = (c.end.0 - c.start.0) as i128;
            tenure_core::money::div_round(c.amount as i128 * part, whole) as i64
        })
        .sum()
}

/// The monthly equivalent of a rate measured over the period (`1-(1-c)^(1/months)`).
fn monthly(rate: f64, p: Period) -> f64 {
    let months = p.whole_months().map_or(p.days() / (365.25 / 12.0), |m| m as f64);
    if (months - 1.0).abs() < 1e-12 { rate } else { 1.0 - (1.0 - rate).powf(1.0 / months) }
}

fn finish(
    a: &Acc,
    p: Period,
    costs: Option<(i64, i64, i64)>,
    cfg: &KpiConfig,
    set: Set,
    usage: bool,
    reasons: &[String],
) -> Kpis {
    let cs = set.cs;
    use Value::*;
    let f = |x: i64| x as f64;
    let logo_churn = ratio(f(a.customers_churned), f(a.customers_start));
    let arpa = if a.customers_end == 0 {
        None
    } else {
        Some(tenure_core::money::div_round(a.mrr_end as i128, a.customers_end as i128) as i64)
    };
    let arpu = if a.seats_end == 0 {
        None
    } else {
        Some(tenure_core::money::div_round(a.mrr_end as i128, a.seats_end as i128) as i64)
    };
    let monthly_churn = logo_churn.map(|c| monthly(c, p));
    let cltv = match (arpa, monthly_churn) {
        (Some(arpa), Some(c)) if c > 0.0 => {
            Some((arpa as f64 * cfg.gross_margin / c).round() as i64)
        }
        _ => None,
    };
    let grr = ratio(f(a.cohort_kept), f(a.mrr_start));
    let ci = |x: i64, n: i64| Interval(wilson(x as u64, n as u64));
    let (crc, cac, retention_cost, acquisition_cost) = match costs {
        Some((ret, acq, _)) => {
            let crc = ratio(f(ret), f(a.customers_start)).map(|x| x.round() as i64);
            let cac = ratio(f(acq), f(a.customers_new)).map(|x| x.round() as i64);
            (crc, cac, Some(ret), Some(acq))
        }
        None => (None, None, None, None),
    };
    let fx = |x: i64| MaybeMoney((!a.fx_undefined).then_some(x));
    let kpis = vec![
        ("mrr_start", Money(a.mrr_start)),
        ("mrr_end", Money(a.mrr_end)),
        ("arr_start", Money(a.arr_start)),
        ("arr_end", Money(a.arr_end)),
        ("committed_mrr_start", Money(a.committed_mrr_start)),
        ("committed_mrr_end", Money(a.committed_mrr_end)),
        ("committed_arr_start", Money(a.committed_arr_start)),
        ("committed_arr_end", Money(a.committed_arr_end)),
        ("mrr_new", Money(a.new)),
        ("mrr_expansion", Money(a.expansion)),
        ("mrr_contraction", Money(a.contraction)),
        ("mrr_churn", Money(a.churn)),
        ("mrr_churn_voluntary", Money(a.churn_voluntary)),
        ("mrr_churn_involuntary", Money(a.churn_involuntary)),
        ("mrr_reactivation", Money(a.reactivation)),
        ("mrr_net_change", Money(a.mrr_end - a.mrr_start)),
        ("mrr_fx_impact", fx(a.fx_reval_end - a.fx_reval_start)),
        ("mrr_start_at_closing_rates", fx(a.mrr_start + a.fx_reval_start)),
        ("mrr_end_at_closing_rates", fx(a.mrr_end + a.fx_reval_end)),
        ("recurring_revenue_rate", Rate(ratio(f(a.mrr_end), f(a.mrr_start)))),
        ("nrr", Rate(ratio(f(a.cohort_end), f(a.mrr_start)))),
        ("grr", Rate(grr)),
        ("renewed_arr_rate", Rate(ratio(f(a.arr_kept), f(a.arr_start)))),
        ("logo_churn_rate", Rate(logo_churn)),
        ("logo_churn_rate_ci95", ci(a.customers_churned, a.customers_start)),
        ("revenue_churn_rate", Rate(ratio(f(a.churn + a.contraction), f(a.mrr_start)))),
        (
            "net_revenue_churn_rate",
            Rate(ratio(f(a.churn + a.contraction - a.expansion - a.reactivation), f(a.mrr_start))),
        ),
        ("customer_retention_rate", Rate(ratio(f(a.customers_retained), f(a.customers_start)))),
        ("customer_retention_rate_ci95", ci(a.customers_retained, a.customers_start)),
        ("customers_start", Count(a.customers_start)),
        ("customers_end", Count(a.customers_end)),
        ("customers_new", Count(a.customers_new)),
        ("customers_reactivated", Count(a.customers_reactivated)),
        ("customers_churned", Count(a.customers_churned)),
        ("customers_churned_voluntary", Count(a.customers_churned_voluntary)),
        ("customers_churned_involuntary", Count(a.customers_churned_involuntary)),
        ("customers_churned_and_returned", Count(a.customers_churned_and_returned)),
        ("customers_new_and_churned", Count(a.customers_new_and_churned)),
        ("contract_renewal_rate", Rate(ratio(f(a.renewals_won), f(a.renewals_due)))),
        ("contract_renewal_rate_ci95", ci(a.renewals_won, a.renewals_due)),
        ("renewals_due", Count(a.renewals_due)),
        ("renewals_won", Count(a.renewals_won)),
        ("renewals_lost", Count(a.renewals_lost)),
        ("renewals_open", Count(a.renewals_open)),
        ("arr_due", Money(a.arr_due)),
        ("renewal_revenue_rate", Rate(ratio(f(a.arr_won_gross), f(a.arr_due)))),
        ("net_renewal_rate", Rate(ratio(f(a.arr_won_net), f(a.arr_due)))),
        ("arpa", MaybeMoney(arpa)),
        ("arpu", MaybeMoney(arpu)),
        ("seats_end", Count(a.seats_end)),
        ("expansion_net", Money(a.mrr_end - a.mrr_start - a.new)),
        ("upsell", Money(a.upsell)),
        ("cross_sell", Money(a.cross_sell)),
        ("monthly_logo_churn_rate", Rate(monthly_churn)),
        ("avg_lifetime_months", Number(monthly_churn.and_then(|c| ratio(1.0, c)))),
        ("cltv", MaybeMoney(cltv)),
        (
            "quick_ratio",
            Number(ratio(f(a.new + a.expansion + a.reactivation), f(a.contraction + a.churn))),
        ),
        ("retention_cost", MaybeMoney(retention_cost)),
        ("acquisition_cost", MaybeMoney(acquisition_cost)),
        ("crc", MaybeMoney(crc)),
        ("cac", MaybeMoney(cac)),
        (
            "crc_to_cac",
            Number(match (crc, cac) {
                (Some(r), Some(c)) => ratio(f(r), f(c)),
                _ => None,
            }),
        ),
    ];
    let borrowed =
        |v: Vec<(&'static str, Value)>| v.into_iter().map(|(k, v)| (Cow::Borrowed(k), v));
    let mut kpis: Vec<(Cow<'static, str>, Value)> = borrowed(kpis).collect();
    // One id per reason of the whole report (0 where a row has none), so that every row
    // has the same columns.
    kpis.extend(reasons.iter().map(|r| {
        (
            Cow::Owned(format!("mrr_churn_by_reason.{r}")),
            Money(a.churn_by_reason.get(r).copied().unwrap_or(0)),
        )
    }));
    if cs {
        kpis.extend(borrowed(a.cs.finish(costs.map(|c| c.2))));
        kpis.extend(a.cs.root_causes());
    }
    if !set.revenue {
        kpis.clear();
    }
    if usage {
        kpis.extend(a.usage.finish(&cfg.features));
    }
    Kpis(kpis)
}

/// Every KPI of the catalogue (revenue and customer success) for each period, whole or cut
/// `by` an account attribute. Rows come period by period, segments in ascending order (unset
/// last). Company-level costs (CRC, CAC, service cost) are not attributable to a segment
/// and are null in cut rows.
pub fn report(ledger: &Ledger, periods: &[Period], by: Option<&By>, cfg: &KpiConfig) -> Vec<Row> {
    report_of(ledger, periods, by, cfg, Set { revenue: true, cs: true }, None)
}

/// [`report`] with the usage and adoption KPIs, from per-account usage for each period
/// (`usage[i]` belongs to `periods[i]`).
pub fn report_with_usage(
    ledger: &Ledger,
    periods: &[Period],
    by: Option<&By>,
    cfg: &KpiConfig,
    usage: &[usage::UsageTable],
) -> Vec<Row> {
    report_of(ledger, periods, by, cfg, Set { revenue: true, cs: true }, Some(usage))
}

/// The usage and adoption KPIs alone (customers, seats and plans from a revenue ledger).
pub fn usage_only(
    ledger: &Ledger,
    periods: &[Period],
    by: Option<&By>,
    cfg: &KpiConfig,
    usage: &[usage::UsageTable],
) -> Vec<Row> {
    report_of(ledger, periods, by, cfg, Set { revenue: false, cs: false }, Some(usage))
}

/// The root-cause KPIs alone (`tenure kpi --kpis root-causes`): tasks resolved in each
/// period, by cause of the taxonomy, and the MRR of their accounts.
pub fn root_causes(
    ledger: &Ledger,
    periods: &[Period],
    by: Option<&By>,
    cfg: &KpiConfig,
) -> Vec<Row> {
    let mut rows = report(ledger, periods, by, cfg);
    root_causes_only(&mut rows);
    rows
}

/// Which KPI families a report holds (usage ones come with usage figures).
#[derive(Clone, Copy)]
struct Set {
    revenue: bool,
    cs: bool,
}

/// The revenue KPIs only (kpis.md §1), for a ledger folded without the CS lanes.
pub fn revenue(ledger: &Ledger, periods: &[Period], by: Option<&By>, cfg: &KpiConfig) -> Vec<Row> {
    report_of(ledger, periods, by, cfg, Set { revenue: true, cs: false }, None)
}

fn report_of(
    ledger: &Ledger,
    periods: &[Period],
    by: Option<&By>,
    cfg: &KpiConfig,
    set: Set,
    usage: Option<&[usage::UsageTable]>,
) -> Vec<Row> {
    let mut t =
        Tally { periods, by, cfg, set, usage, fx: ledger.fx.as_ref(), merged: Map::default() };
    let part = ledger
        .accounts
        .par_iter()
        .fold(Part::default, |part, a| t.account(part, a, None))
        .reduce(Part::default, Part::merge);
    t.add(part);
    t.rows(&ledger.costs)
}

/// Which KPI families a report holds, as `tenure kpi --kpis` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// The whole catalogue: revenue, customer success and, given usage figures, usage.
    All,
    Revenue,
    /// Usage and adoption (customers, seats and plans from the revenue side).
    Usage,
    RootCauses,
}

type Map = FxHashMap<(usize, Option<String>), Acc>;

/// The sums of a [`Tally`] over some accounts: merged in any order and grouping.
#[derive(Default)]
pub struct Part(Map);

/// The sums of a group of accounts being added one at a time ([`Tally::start`]).
pub struct Group {
    part: Part,
    /// Where each period's usage was last found.
    at: Vec<usize>,
}

impl Group {
    pub fn part(self) -> Part {
        self.part
    }
}

impl Part {
    pub fn merge(mut self, other: Part) -> Part {
        for (k, v) in other.0 {
            self.0.entry(k).or_default().add(&v);
        }
        self
    }
}

/// A report summed account by account, for accounts that are not held in one [`Ledger`]
/// (read a chunk at a time from `tenure_ledger::checkpoint`): [`Tally::part`] of each
/// group of accounts (in parallel, any order), [`Tally::add`] of each part, then
/// [`Tally::rows`], as [`report`] and its kin give them for a ledger of the same accounts.
pub struct Tally<'a> {
    periods: &'a [Period],
    by: Option<&'a By>,
    cfg: &'a KpiConfig,
    set: Set,
    usage: Option<&'a [usage::UsageTable]>,
    /// The rates amounts were converted with (`Ledger::fx`).
    fx: Option<&'a FxTable>,
    merged: Map,
}

impl<'a> Tally<'a> {
    /// `usage` (per period, as [`report_with_usage`] takes it) is read by `All` and
    /// `Usage`; `Usage` needs it.
    pub fn new(
        family: Family,
        periods: &'a [Period],
        by: Option<&'a By>,
        cfg: &'a KpiConfig,
        usage: Option<&'a [usage::UsageTable]>,
        fx: Option<&'a FxTable>,
    ) -> Tally<'a> {
        let (set, usage) = match family {
            Family::All | Family::RootCauses => (Set { revenue: true, cs: true }, usage),
            Family::Revenue => (Set { revenue: true, cs: false }, None),
            Family::Usage => (Set { revenue: false, cs: false }, usage),
        };
        let usage = if family == Family::RootCauses { None } else { usage };
        Tally { periods, by, cfg, set, usage, fx, merged: Map::default() }
    }

    /// What the report reads of each account: the CS side and invoices for the CS KPIs,
    /// the attributes for a cut by attribute (a checkpoint's reader leaves out the rest).
    pub fn wants(&self) -> tenure_ledger::checkpoint::Want {
        tenure_ledger::checkpoint::Want {
            cs: self.set.cs,
            attributes: matches!(self.by, Some(By::Attribute(_))),
            display: false,
        }
    }

    /// The sums over `accounts` (in id order, as a checkpoint's chunk holds them, the
    /// usage is found walking beside them; any order gives the same sums).
    pub fn part(&self, accounts: &[AccountLedger]) -> Part {
        let mut g = self.start();
        for a in accounts {
            self.step(&mut g, a);
        }
        g.part()
    }

    /// A group's sums, begun: [`step`](Self::step) adds its accounts (in id order, as
    /// [`part`](Self::part) takes them) one at a time, [`Group::part`] ends it.
    pub fn start(&self) -> Group {
        Group { part: Part::default(), at: vec![0; self.periods.len()] }
    }

    pub fn step(&self, g: &mut Group, a: &AccountLedger) {
        let part = std::mem::take(&mut g.part);
        g.part = self.account(part, a, Some(&mut g.at));
    }

    /// Adds account `a`; `at` holds where each period's usage was last found (for
    /// [`usage::UsageTable::find`]), `None` to look each up afresh.
    fn account(&self, mut part: Part, a: &AccountLedger, mut at: Option<&mut Vec<usize>>) -> Part {
        for (i, p) in self.periods.iter().enumerate() {
            let key = self.by.map(|b| b.segment(a, *p)).unwrap_or(None);
            let usage = self.usage.and_then(|u| {
                let table = u.get(i)?;
                match at.as_deref_mut() {
                    Some(at) => table.find(&a.id, &mut at[i]),
                    None => table.get(&a.id),
                }
            });
            part.0.entry((i, key)).or_default().account(
                a,
                *p,
                self.cfg,
                usage,
                self.fx,
                self.set.cs,
            );
        }
        part
    }

    pub fn add(&mut self, part: Part) {
        let merged = std::mem::take(&mut self.merged);
        self.merged = Part(merged).merge(part).0;
    }

    /// The report's rows, with the company-level `costs` (`Ledger::costs`).
    pub fn rows(self, costs: &[CostEntry]) -> Vec<Row> {
        let Tally { periods, by, cfg, set, usage, fx, merged } = self;
        // Churn reasons of the whole report, the largest lost MRR first.
        let mut reasons: BTreeMap<&str, i64> = BTreeMap::new();
        for acc in merged.values() {
            for (r, m) in &acc.churn_by_reason {
                let slot = reasons.entry(r.as_str()).or_default();
                *slot = slot.saturating_add(*m);
            }
        }
        let mut reasons: Vec<(&str, i64)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let reasons: Vec<String> = reasons.into_iter().map(|(r, _)| r.to_string()).collect();
        let mut keys: Vec<(usize, Option<String>)> = merged.keys().cloned().collect();
        // Unset segment last.
        keys.sort_by(|a, b| (a.0, a.1.is_none(), &a.1).cmp(&(b.0, b.1.is_none(), &b.1)));
        let mut rows = Vec::new();
        for (i, p) in periods.iter().enumerate() {
            let costs = Some((
                cost_in(costs, CostCategory::Retention, *p),
                cost_in(costs, CostCategory::Acquisition, *p),
                cost_in(costs, CostCategory::Service, *p),
            ));
            if by.is_none() {
                let mut acc = merged.get(&(i, None)).cloned().unwrap_or_default();
                acc.fx_undefined |= fx.is_none();
                rows.push(Row {
                    period: *p,
                    segment: None,
                    kpis: finish(&acc, *p, costs, cfg, set, usage.is_some(), &reasons),
                });
                continue;
            }
            for k in keys.iter().filter(|k| k.0 == i) {
                rows.push(Row {
                    period: *p,
                    segment: Some(k.1.clone()),
                    kpis: finish(&merged[k], *p, None, cfg, set, usage.is_some(), &reasons),
                });
            }
        }
        rows
    }
}

/// Keeps only the root-cause KPIs of `rows` (`tenure kpi --kpis root-causes`).
pub fn root_causes_only(rows: &mut [Row]) {
    for r in rows {
        r.kpis.0.retain(|(k, _)| cs::is_root_cause_id(k));
    }
}

#[cfg(test)]
mod tests;
