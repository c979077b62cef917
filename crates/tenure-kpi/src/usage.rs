//! Usage and adoption KPIs (kpis.md §2) from per-account figures the columnar store computes
//! for each period; this module only combines them with the ledger (seats, plans, customers).

use crate::{Value, ratio};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::sync::Arc;
use tenure_core::time::{Period, Timestamp};
use tenure_ledger::AccountLedger;

/// One account's usage for one period (computed by `tenure-analytics`). "Active" means at
/// least one usage event; the windows end at the period end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountUsage {
    /// Distinct users active in the 30 and 7 days before the period end.
    pub mau: u64,
    pub wau: u64,
    /// Sum over the 30 days of each day's distinct active users.
    pub user_days: u64,
    /// Users active in the 30 days who used at least one advanced feature.
    pub advanced_users: u64,
    /// Distinct features used in the 30 days. Shared strings: a million accounts name the
    /// same few features.
    pub features: Vec<Arc<str>>,
    /// Every feature ever used before the period end, with the last day it was used.
    pub features_ever: Vec<(Arc<str>, Timestamp)>,
    /// Usage events in the period and in the equally long period before it.
    pub events: u64,
    pub events_prev: u64,
    /// Distinct users active in the 30 days before the period start (the usage trend).
    pub mau_prev: u64,
    /// Emails (a contact and a campaign) sent in the period, and those of them opened (or
    /// clicked, which implies an open) and clicked by the period end.
    pub emails_sent: u64,
    pub emails_opened: u64,
    pub emails_clicked: u64,
    /// Visits to the documentation and to the website in the period.
    pub docs_visits: u64,
    pub website_visits: u64,
}

/// Usage per account id, one map per period of a report.
pub type Usage = Vec<FxHashMap<String, AccountUsage>>;

/// One account's usage in one calendar month (computed by `tenure-analytics`): the input of
/// point-in-time health features, which read only the months before a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageMonth {
    /// The first instant of the month.
    pub month: Timestamp,
    pub events: u64,
    /// Distinct active users, and distinct days with any activity.
    pub users: u64,
    pub days: u64,
    /// Features used, one bit per index of the feature list the table was built with.
    pub features: u64,
    /// The last day with activity.
    pub last_day: Timestamp,
}

impl Feature {
    /// Whether the feature is part of `plan` (every plan when the feature names none).
    pub fn in_plan(&self, plan: Option<&str>) -> bool {
        self.available(plan)
    }
}

/// A feature of the product, from the configuration's feature catalogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    pub name: String,
    pub advanced: bool,
    /// Usage before the release does not count towards adoption.
    pub released: Option<Timestamp>,
    /// Plans that include the feature; empty = every plan.
    pub plans: Vec<String>,
}

impl Feature {
    fn available(&self, plan: Option<&str>) -> bool {
        self.plans.is_empty() || plan.is_some_and(|p| self.plans.iter().any(|x| x == p))
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct UsageAcc {
    mau: u64,
    wau: u64,
    user_days: u64,
    advanced_users: u64,
    events: u64,
    events_prev: u64,
    mau_prev: u64,
    emails_sent: u64,
    emails_opened: u64,
    emails_clicked: u64,
    docs_visits: u64,
    website_visits: u64,
    /// Customers at the end with at least one docs visit in the period.
    docs_visitors: u64,
    /// Customers at the end: active users and seats (licence utilisation).
    active_of_customers: u64,
    seats: u64,
    customers_end: u64,
    depth_sum: f64,
    depth_n: u64,
    outside_plan: u64,
    /// Per catalogued feature: customers at the end that used it since its release.
    adopters: Vec<u64>,
}

impl UsageAcc {
    pub(crate) fn add(&mut self, o: &UsageAcc) {
        self.mau += o.mau;
        self.wau += o.wau;
        self.user_days += o.user_days;
        self.advanced_users += o.advanced_users;
        self.events += o.events;
        self.events_prev += o.events_prev;
        self.mau_prev += o.mau_prev;
        self.emails_sent += o.emails_sent;
        self.emails_opened += o.emails_opened;
        self.emails_clicked += o.emails_clicked;
        self.docs_visits += o.docs_visits;
        self.website_visits += o.website_visits;
        self.docs_visitors += o.docs_visitors;
        self.active_of_customers += o.active_of_customers;
        self.seats += o.seats;
        self.customers_end += o.customers_end;
        self.depth_sum += o.depth_sum;
        self.depth_n += o.depth_n;
        self.outside_plan += o.outside_plan;
        if self.adopters.len() < o.adopters.len() {
            self.adopters.resize(o.adopters.len(), 0);
        }
        for (a, b) in self.adopters.iter_mut().zip(&o.adopters) {
            *a += b;
        }
    }

    pub(crate) fn account(
        &mut self,
        a: &AccountLedger,
        p: Period,
        u: Option<&AccountUsage>,
        catalogue: &[Feature],
    ) {
        let end = a.state_before(p.end).filter(|s| s.customer);
        if self.adopters.len() < catalogue.len() {
            self.adopters.resize(catalogue.len(), 0);
        }
        if let Some(s) = end {
            self.customers_end += 1;
            self.seats += s.seats;
        }
        let Some(u) = u else { return };
        self.mau += u.mau;
        self.wau += u.wau;
        self.user_days += u.user_days;
        self.advanced_users += u.advanced_users;
        self.events += u.events;
        self.events_prev += u.events_prev;
        self.mau_prev += u.mau_prev;
        self.emails_sent += u.emails_sent;
        self.emails_opened += u.emails_opened;
        self.emails_clicked += u.emails_clicked;
        self.docs_visits += u.docs_visits;
        self.website_visits += u.website_visits;
        let Some(s) = end else { return };
        self.docs_visitors += (u.docs_visits > 0) as u64;
        if s.seats > 0 {
            self.active_of_customers += u.mau;
        }
        let plan = s.plan.as_deref();
        let available: Vec<&Feature> = catalogue.iter().filter(|f| f.available(plan)).collect();
        if !available.is_empty() {
            let used =
                available.iter().filter(|f| u.features.iter().any(|x| **x == f.name)).count();
            self.depth_sum += used as f64 / available.len() as f64;
            self.depth_n += 1;
        }
        let outside = u
            .features
            .iter()
            .any(|f| catalogue.iter().any(|c| *c.name == **f && !c.available(plan)));
        self.outside_plan += outside as u64;
        for (i, f) in catalogue.iter().enumerate() {
            let since = f.released.unwrap_or(Timestamp::MIN);
            if u.features_ever.iter().any(|(name, last)| **name == f.name && *last >= since) {
                self.adopters[i] += 1;
            }
        }
    }

    pub(crate) fn finish(&self, catalogue: &[Feature]) -> Vec<(Cow<'static, str>, Value)> {
        use Value::*;
        let f = |x: u64| x as f64;
        let dau = f(self.user_days) / 30.0;
        let mut out: Vec<(Cow<'static, str>, Value)> = vec![
            ("mau".into(), Count(self.mau as i64)),
            ("mau_change".into(), Rate(ratio(f(self.mau) - f(self.mau_prev), f(self.mau_prev)))),
            ("wau".into(), Count(self.wau as i64)),
            ("dau".into(), Number(Some(dau))),
            ("stickiness".into(), Rate(ratio(dau, f(self.mau)))),
            ("license_utilization".into(), Rate(ratio(f(self.active_of_customers), f(self.seats)))),
            ("active_days_per_user".into(), Number(ratio(f(self.user_days), f(self.mau)))),
            ("advanced_users_share".into(), Rate(ratio(f(self.advanced_users), f(self.mau)))),
            (
                "basic_users_share".into(),
                Rate(ratio(f(self.mau - self.advanced_users.min(self.mau)), f(self.mau))),
            ),
            ("depth_of_usage".into(), Number(ratio(self.depth_sum, f(self.depth_n)))),
            ("accounts_using_outside_plan".into(), Count(self.outside_plan as i64)),
            ("usage_events".into(), Count(self.events as i64)),
            (
                "usage_events_change".into(),
                Rate(ratio(self.events as f64 - self.events_prev as f64, f(self.events_prev))),
            ),
            ("emails_sent".into(), Count(self.emails_sent as i64)),
            ("email_open_rate".into(), Rate(ratio(f(self.emails_opened), f(self.emails_sent)))),
            ("email_click_rate".into(), Rate(ratio(f(self.emails_clicked), f(self.emails_sent)))),
            ("docs_visits".into(), Count(self.docs_visits as i64)),
            ("website_visits".into(), Count(self.website_visits as i64)),
            (
                "docs_visitors_share".into(),
                Rate(ratio(f(self.docs_visitors), f(self.customers_end))),
            ),
        ];
        for (i, feat) in catalogue.iter().enumerate() {
            let adopters = self.adopters.get(i).copied().unwrap_or(0);
            out.push((
                format!("feature_adoption.{}", feat.name).into(),
                Rate(ratio(f(adopters), f(self.customers_end))),
            ));
        }
        out
    }
}
