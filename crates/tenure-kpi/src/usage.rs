//! Usage and adoption KPIs (kpis.md §2) from per-account figures the columnar store computes
//! for each period; this module only combines them with the ledger (seats, plans, customers).

use crate::{Value, ratio};
use rayon::slice::ParallelSliceMut;
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

/// Usage per account id, one table per period of a report.
pub type Usage = Vec<UsageTable>;

/// One period's usage per account, sorted by account id: a report walks it in id order
/// beside the ledger's accounts ([`UsageTable::find`]). Held in parts (each sorted, the
/// parts in order) so that a saved table decodes part by part in parallel, with neither a
/// hash table of every account nor one copy of them all to build.
#[derive(Clone, Default)]
pub struct UsageTable {
    parts: Vec<Vec<(String, AccountUsage)>>,
    /// The index of each part's first row.
    starts: Vec<usize>,
}

impl UsageTable {
    /// From parts, each sorted by id with each id once, every id of a part before the
    /// next part's; `None` otherwise.
    pub fn from_parts(parts: Vec<Vec<(String, AccountUsage)>>) -> Option<UsageTable> {
        let parts: Vec<_> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        let sorted = parts.iter().all(|p| p.windows(2).all(|w| w[0].0 < w[1].0))
            && parts.windows(2).all(|w| w[0][w[0].len() - 1].0 < w[1][0].0);
        if !sorted {
            return None;
        }
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0;
        for p in &parts {
            starts.push(len);
            len += p.len();
        }
        Some(UsageTable { parts, starts })
    }

    pub fn len(&self) -> usize {
        match (self.starts.last(), self.parts.last()) {
            (Some(start), Some(part)) => start + part.len(),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The rows, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, AccountUsage)> {
        self.parts.iter().flatten()
    }

    /// Row `i` (below `len`).
    fn row(&self, i: usize) -> &(String, AccountUsage) {
        let p = self.starts.partition_point(|s| *s <= i) - 1;
        &self.parts[p][i - self.starts[p]]
    }

    /// Where `id` is, or would go.
    fn position(&self, id: &str) -> usize {
        // The first part whose last id is not below `id` holds it, if any does.
        let p = self.parts.partition_point(|part| part[part.len() - 1].0.as_str() < id);
        match self.parts.get(p) {
            Some(part) => self.starts[p] + part.partition_point(|(k, _)| k.as_str() < id),
            None => self.len(),
        }
    }

    fn at(&self, i: usize, id: &str) -> Option<&AccountUsage> {
        (i < self.len()).then(|| self.row(i)).filter(|(k, _)| k == id).map(|(_, u)| u)
    }

    pub fn get(&self, id: &str) -> Option<&AccountUsage> {
        self.at(self.position(id), id)
    }

    /// [`get`](Self::get) for a reader asking in id order: `at` is where the last answer
    /// was looked for (start at 0); the next id is looked for from there, nearest first.
    pub fn find(&self, id: &str, at: &mut usize) -> Option<&AccountUsage> {
        let from = *at;
        let len = self.len();
        let i = if from < len && self.row(from).0.as_str() <= id {
            // Galloping: the id asked for next is most often on the next row.
            let (mut lo, mut step) = (from, 1);
            while from + step < len && self.row(from + step).0.as_str() < id {
                lo = from + step;
                step *= 2;
            }
            // Row `lo` is below `id` (or is `from`); the answer is past it, within `step`.
            let mut hi = (from + step).min(len);
            let mut lo = if self.row(lo).0.as_str() < id { lo + 1 } else { lo };
            while lo < hi {
                let mid = (lo + hi) / 2;
                if self.row(mid).0.as_str() < id {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        } else {
            self.position(id)
        };
        *at = i;
        self.at(i, id)
    }

    /// The rows of `ids` (sorted) taken out, and `fresh`'s put in: a late event's accounts
    /// computed again.
    pub fn replace(&mut self, ids: &[String], fresh: UsageTable) {
        let mut rows: Vec<(String, AccountUsage)> = std::mem::take(&mut self.parts)
            .into_iter()
            .flatten()
            .filter(|(k, _)| ids.binary_search(k).is_err() && fresh.get(k).is_none())
            .collect();
        rows.extend(fresh.parts.into_iter().flatten());
        rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        *self = UsageTable::from_parts(vec![rows]).expect("sorted, each id once");
    }
}

impl PartialEq for UsageTable {
    /// The same rows, however they are split into parts.
    fn eq(&self, other: &UsageTable) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for UsageTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl FromIterator<(String, AccountUsage)> for UsageTable {
    /// Sorted by id; of rows with the same id, the last is kept.
    fn from_iter<I: IntoIterator<Item = (String, AccountUsage)>>(rows: I) -> UsageTable {
        let mut rows: Vec<(String, AccountUsage)> = rows.into_iter().collect();
        rows.par_sort_by(|a, b| a.0.cmp(&b.0));
        // The sort is stable: of equal ids, the last pushed is the last of its run.
        let mut out: Vec<(String, AccountUsage)> = Vec::with_capacity(rows.len());
        for r in rows {
            match out.last_mut() {
                Some(last) if last.0 == r.0 => *last = r,
                _ => out.push(r),
            }
        }
        UsageTable::from_parts(vec![out]).expect("sorted, each id once")
    }
}

impl From<FxHashMap<String, AccountUsage>> for UsageTable {
    fn from(m: FxHashMap<String, AccountUsage>) -> UsageTable {
        // A map's keys are distinct: no run of equal ids to keep the last of.
        let mut rows: Vec<(String, AccountUsage)> = m.into_iter().collect();
        rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        UsageTable::from_parts(vec![rows]).expect("sorted, each id once")
    }
}

impl std::ops::Index<&str> for UsageTable {
    type Output = AccountUsage;

    /// The account's usage; panics when it has none (as a map's index does).
    fn index(&self, id: &str) -> &AccountUsage {
        self.get(id).unwrap_or_else(|| panic!("no usage for account {id:?}"))
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(mau: u64) -> AccountUsage {
        AccountUsage { mau, ..AccountUsage::default() }
    }

    /// Even ids a00000..a00398 in parts of 1, 7, 50 and the rest: the odd ids are missing.
    fn table() -> UsageTable {
        let rows: Vec<(String, AccountUsage)> =
            (0..200).map(|i| (format!("a{:05}", 2 * i), usage(i))).collect();
        let mut parts = Vec::new();
        let mut rest = rows.as_slice();
        for n in [1, 7, 50] {
            parts.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        parts.push(rest.to_vec());
        UsageTable::from_parts(parts).unwrap()
    }

    /// Walking in id order, backwards, in a scrambled order, or skipping ahead: `find`
    /// answers as `get` does, and `get` finds every row and no missing id.
    #[test]
    fn find_answers_as_get_in_any_order() {
        let t = table();
        assert_eq!(t.len(), 200);
        for i in 0..400u64 {
            let id = format!("a{i:05}");
            assert_eq!(t.get(&id).map(|u| u.mau), (i % 2 == 0).then_some(i / 2), "{id}");
        }
        for id in ["", "a", "b", "a00399", "a00400", "a9"] {
            assert!(t.get(id).is_none(), "{id}");
        }
        let in_order: Vec<u64> = (0..400).collect();
        let backwards: Vec<u64> = (0..400).rev().collect();
        let mut x = 7u64;
        let scrambled: Vec<u64> = (0..600)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 33) % 420
            })
            .collect();
        let sparse: Vec<u64> = (0..400).step_by(37).collect();
        for order in [in_order, backwards, scrambled, sparse] {
            let mut at = 0;
            for i in order {
                let id = format!("a{i:05}");
                assert_eq!(t.find(&id, &mut at), t.get(&id), "{id} from {at}");
            }
        }
    }

    #[test]
    fn tables_are_built_sorted_and_refuse_disorder() {
        let rows = |ids: &[&str]| -> Vec<(String, AccountUsage)> {
            ids.iter().enumerate().map(|(i, id)| (id.to_string(), usage(i as u64))).collect()
        };
        assert!(UsageTable::from_parts(vec![rows(&["a", "b"]), rows(&["c"])]).is_some());
        assert!(UsageTable::from_parts(vec![rows(&["b", "a"])]).is_none());
        assert!(UsageTable::from_parts(vec![rows(&["a", "a"])]).is_none());
        assert!(UsageTable::from_parts(vec![rows(&["a", "c"]), rows(&["b"])]).is_none());
        assert!(UsageTable::from_parts(vec![rows(&["a"]), vec![], rows(&["a"])]).is_none());
        // Of two rows with the same id, the last is kept.
        let t: UsageTable = rows(&["b", "a", "b"]).into_iter().collect();
        assert_eq!(
            t.iter().map(|(k, u)| (k.as_str(), u.mau)).collect::<Vec<_>>(),
            [("a", 1), ("b", 2)]
        );
        // Equal whatever the parts.
        let one: UsageTable = table().iter().cloned().collect();
        assert_eq!(one, table());
    }

    /// A late event's accounts: their rows replaced, new ones put in order, those with no
    /// usage any more taken out.
    #[test]
    fn replacing_rows_keeps_the_order() {
        let mut t = table();
        let fresh: UsageTable = [("a00001", 1000), ("a00004", 1004)]
            .map(|(k, m)| (k.to_string(), usage(m)))
            .into_iter()
            .collect();
        let ids: Vec<String> = ["a00001", "a00002", "a00004"].map(String::from).to_vec();
        t.replace(&ids, fresh);
        assert_eq!(t.len(), 200);
        assert_eq!(t["a00001"].mau, 1000);
        assert!(t.get("a00002").is_none(), "no usage any more");
        assert_eq!(t["a00004"].mau, 1004);
        assert_eq!(t["a00006"].mau, 3);
        assert!(t.iter().map(|(k, _)| k).is_sorted());
    }
}
