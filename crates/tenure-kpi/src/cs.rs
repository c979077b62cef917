//! The customer-success KPIs (kpis.md §1 fee trend, §3 sentiment, §4 support and service,
//! §5 onboarding and value, §6 relationship): per-segment sums, then values.

use crate::{KpiConfig, Value, ratio};
use std::borrow::Cow;
use tenure_core::event::{
    ContactRole, InvoiceStatus, ObjectiveStatus, RequestStatus, RootCause, Sentiment, SurveyKind,
    SurveyScore, TaskStatus, TicketCategory,
};
use tenure_core::time::{Period, Timestamp};
use tenure_ledger::AccountLedger;

/// NPS category of a 0-10 score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NpsCategory {
    Detractor,
    Passive,
    Promoter,
}

impl NpsCategory {
    pub fn of(score: u8) -> NpsCategory {
        match score {
            9..=10 => NpsCategory::Promoter,
            7..=8 => NpsCategory::Passive,
            _ => NpsCategory::Detractor,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NpsCategory::Detractor => "detractor",
            NpsCategory::Passive => "passive",
            NpsCategory::Promoter => "promoter",
        }
    }
}

/// The latest NPS score per respondent among responses with `start <= ts < end`; responses
/// without a contact each count as their own respondent.
pub fn latest_nps(a: &AccountLedger, start: Timestamp, end: Timestamp) -> Vec<u8> {
    let mut by_contact: Vec<(&str, u8)> = Vec::new();
    let mut anonymous = Vec::new();
    for r in
        a.cs.responses.iter().filter(|r| r.survey == SurveyKind::Nps && start <= r.ts && r.ts < end)
    {
        let SurveyScore::Nps(score) = r.score else { continue };
        match &r.contact_id {
            None => anonymous.push(score),
            Some(c) => match by_contact.iter_mut().find(|(id, _)| id == c) {
                // Responses are in time order: a later one replaces the earlier.
                Some(slot) => slot.1 = score,
                None => by_contact.push((c, score)),
            },
        }
    }
    anonymous.extend(by_contact.into_iter().map(|(_, s)| s));
    anonymous
}

/// The rule (tenure-server's alert rules) whose tasks follow up detractor responses.
pub const DETRACTOR_RULE: &str = "detractor";

const CAUSES: usize = RootCause::ALL.len();

/// Whether a KPI id is one of the root-cause ones (`tenure kpi --kpis root-causes`).
pub fn is_root_cause_id(id: &str) -> bool {
    id.starts_with("tasks_resolved") || id.starts_with("root_cause_")
}

#[derive(Clone, Debug, Default)]
pub(crate) struct CsAcc {
    detractor_responses: i64,
    detractors_followed_up: i64,
    customers_during: i64,
    customers_end: i64,
    nps: [i64; 3],
    csat_responses: i64,
    csat_satisfied: i64,
    surveys_sent: i64,
    responses: i64,
    stopped_responding: i64,
    success: [i64; 3],
    tickets: i64,
    tickets_prev: i64,
    defect_tickets: i64,
    ticket_cost: i64,
    defect_cost: i64,
    ticket_csat: [(i64, i64); 2],
    engaged: i64,
    touchpoints: i64,
    touch_positive: i64,
    touch_negative: i64,
    touch_rated: i64,
    service_customers: i64,
    /// Customers with a service line at the start, and those of them paying more for
    /// service at the end (a higher service level).
    service_start: i64,
    service_upgrades: i64,
    service_revenue: i64,
    cohort: i64,
    onboarded: i64,
    onboarding_days: Vec<f64>,
    ttv_days: Vec<f64>,
    objectives: i64,
    objectives_achieved: i64,
    value_realised: i64,
    fees_paid: i64,
    coverage: [i64; 3],
    key_departures: i64,
    champion_departures: i64,
    assessed: i64,
    relationship_sum: i64,
    importance_n: i64,
    importance_sum: i64,
    change_requests: i64,
    fees_12m: i64,
    fees_prior_12m: i64,
    fee_decliners: i64,
    /// Tasks resolved done in the period: all, without a root cause, and by cause.
    tasks_resolved: i64,
    tasks_without_cause: i64,
    cause_tasks: [i64; CAUSES],
    /// Per cause, the MRR of the accounts with such a task (each account once per cause).
    cause_mrr: [i64; CAUSES],
}

const KEY_ROLES: [ContactRole; 4] = [
    ContactRole::Champion,
    ContactRole::ExecutiveSponsor,
    ContactRole::Admin,
    ContactRole::DecisionMaker,
];

fn days(a: Timestamp, b: Timestamp) -> f64 {
    (b.0 - a.0) as f64 / tenure_core::time::DAY as f64
}

/// Fees paid (invoices with status paid) in `[start, end)`, base minor units.
pub fn paid_in(a: &AccountLedger, start: Timestamp, end: Timestamp) -> i64 {
    a.invoices
        .iter()
        .filter(|i| i.status == InvoiceStatus::Paid && start <= i.ts && i.ts < end)
        .map(|i| i.amount)
        .sum()
}

impl CsAcc {
    pub(crate) fn add(&mut self, o: &CsAcc) {
        macro_rules! sum { ($($f:ident),*) => { $(self.$f = self.$f.saturating_add(o.$f);)* } }
        sum!(
            detractor_responses,
            detractors_followed_up,
            customers_during,
            customers_end,
            csat_responses,
            csat_satisfied,
            surveys_sent,
            responses,
            stopped_responding,
            tickets,
            tickets_prev,
            defect_tickets,
            ticket_cost,
            defect_cost,
            engaged,
            touchpoints,
            touch_positive,
            touch_negative,
            touch_rated,
            service_customers,
            service_start,
            service_upgrades,
            service_revenue,
            cohort,
            onboarded,
            objectives,
            objectives_achieved,
            value_realised,
            fees_paid,
            key_departures,
            champion_departures,
            assessed,
            relationship_sum,
            importance_n,
            importance_sum,
            change_requests,
            fees_12m,
            fees_prior_12m,
            fee_decliners,
            tasks_resolved,
            tasks_without_cause
        );
        for i in 0..CAUSES {
            self.cause_tasks[i] += o.cause_tasks[i];
            self.cause_mrr[i] = self.cause_mrr[i].saturating_add(o.cause_mrr[i]);
        }
        for i in 0..3 {
            self.nps[i] += o.nps[i];
            self.success[i] += o.success[i];
            self.coverage[i] += o.coverage[i];
        }
        for i in 0..2 {
            self.ticket_csat[i].0 += o.ticket_csat[i].0;
            self.ticket_csat[i].1 += o.ticket_csat[i].1;
        }
        self.onboarding_days.extend_from_slice(&o.onboarding_days);
        self.ttv_days.extend_from_slice(&o.ttv_days);
    }

    pub(crate) fn account(&mut self, a: &AccountLedger, p: Period, cfg: &KpiConfig) {
        let (s, e) = (p.start, p.end);
        let cs = &a.cs;
        let during = a.customer_during(s, e);
        let at_end = a.customer_before(e);
        self.customers_during += during as i64;
        self.customers_end += at_end as i64;

        // Sentiment.
        for score in latest_nps(a, s, e) {
            self.nps[NpsCategory::of(score) as usize] += 1;
        }
        let in_p = |t: Timestamp| s <= t && t < e;
        for r in cs.responses.iter().filter(|r| in_p(r.ts)) {
            self.responses += 1;
            match r.score {
                SurveyScore::Csat(x) => {
                    self.csat_responses += 1;
                    self.csat_satisfied += (x >= cfg.csat_satisfied_min) as i64;
                }
                SurveyScore::Success(sent) => self.success[sent as usize] += 1,
                SurveyScore::Nps(x) => {
                    if NpsCategory::of(x) == NpsCategory::Detractor {
                        // Followed up: a detractor task that was open when the response
                        // came, or opened within a week of it (the service opens or updates
                        // one at once), then resolved done with a root cause. One task may
                        // cover several responses; a task opened later is for another one.
                        self.detractor_responses += 1;
                        let week = Timestamp(r.ts.0 + 7 * tenure_core::time::DAY);
                        self.detractors_followed_up += cs.tasks.iter().any(|t| {
                            t.rule.as_deref() == Some(DETRACTOR_RULE)
                                && t.status == TaskStatus::Done
                                && t.root_cause.is_some()
                                && t.opened <= week
                                && t.resolved.is_some_and(|at| at >= r.ts)
                        }) as i64;
                    }
                }
            }
        }
        let sent = cs.surveys_sent.iter().filter(|x| in_p(x.0)).count() as i64;
        self.surveys_sent += sent;
        let answered_now = cs.responses.iter().any(|r| in_p(r.ts));
        let answered_before = cs.responses.iter().any(|r| r.ts < s);
        self.stopped_responding += (sent > 0 && !answered_now && answered_before) as i64;

        // Support.
        let len = e.0 - s.0;
        let prev = (Timestamp(s.0 - len), s);
        for t in &cs.tickets {
            if prev.0 <= t.opened && t.opened < prev.1 {
                self.tickets_prev += 1;
            }
            if in_p(t.opened) {
                self.tickets += 1;
                let defect = t.category == Some(TicketCategory::Defect);
                self.defect_tickets += defect as i64;
                self.ticket_cost += t.cost.unwrap_or(0);
                if defect {
                    self.defect_cost += t.cost.unwrap_or(0);
                }
            }
            if let (Some(closed), Some(csat)) = (t.closed, t.csat)
                && in_p(closed)
            {
                let k = (t.category != Some(TicketCategory::Defect)) as usize;
                self.ticket_csat[k].0 += 1;
                self.ticket_csat[k].1 += (csat >= cfg.csat_satisfied_min) as i64;
            }
        }

        // Engagement.
        let touches: Vec<_> = cs.touchpoints.iter().filter(|t| in_p(t.0)).collect();
        self.touchpoints += touches.len() as i64;
        self.engaged += (during && !touches.is_empty()) as i64;
        for (_, _, sentiment) in &touches {
            if let Some(x) = sentiment {
                self.touch_rated += 1;
                self.touch_positive += (*x == Sentiment::Positive) as i64;
                self.touch_negative += (*x == Sentiment::Negative) as i64;
            }
        }

        // Service.
        self.service_customers +=
            (at_end && a.state_before(e).is_some_and(|st| st.service_mrr > 0)) as i64;
        self.service_revenue += a.service_revenue(s, e);
        let service_at = |t: Timestamp| {
            a.state_before(t).filter(|st| st.customer).map_or(0, |st| st.service_mrr)
        };
        let (before, after) = (service_at(s), service_at(e));
        if before > 0 {
            self.service_start += 1;
            self.service_upgrades += (after > before) as i64;
        }

        // Onboarding and value: the cohort of accounts that first paid in the period.
        if let Some(first) = a.first_paid().filter(|t| in_p(*t)) {
            self.cohort += 1;
            if let Some(done) = cs.milestone("onboarding_completed") {
                self.onboarded += 1;
                let from = cs.milestone("onboarding_started").unwrap_or(first);
                self.onboarding_days.push(days(from, done).max(0.0));
            }
            if let (Some(start), Some(value)) = (a.first_subscription, cs.milestone("first_value"))
            {
                self.ttv_days.push(days(start, value).max(0.0));
            }
        }
        for o in cs.objectives.iter().filter(|o| o.created < e) {
            self.objectives += 1;
            let achieved = o.status == ObjectiveStatus::Achieved && o.status_at < e;
            self.objectives_achieved += achieved as i64;
            if o.status == ObjectiveStatus::Achieved && in_p(o.status_at) {
                self.value_realised += o.value.unwrap_or(0);
            }
        }
        self.fees_paid += paid_in(a, s, e);

        // Relationship.
        if at_end {
            let contacts = cs.contacts_before(e);
            for (i, role) in
                [ContactRole::Champion, ContactRole::DecisionMaker, ContactRole::ExecutiveSponsor]
                    .iter()
                    .enumerate()
            {
                self.coverage[i] +=
                    contacts.iter().any(|c| c.active && c.role == Some(*role)) as i64;
            }
            if let Some((rel, imp)) = cs.assessment_before(e) {
                if let Some(r) = rel {
                    self.assessed += 1;
                    self.relationship_sum += r as i64;
                }
                if let Some(i) = imp {
                    self.importance_n += 1;
                    self.importance_sum += i as i64;
                }
            }
        }
        for d in cs.departures.iter().filter(|d| in_p(d.ts)) {
            self.key_departures += d.role.is_some_and(|r| KEY_ROLES.contains(&r)) as i64;
            self.champion_departures += (d.role == Some(ContactRole::Champion)) as i64;
        }
        self.change_requests += cs
            .change_requests
            .iter()
            .filter(|(t, _, st)| in_p(*t) && *st == RequestStatus::Opened)
            .count() as i64;

        // Root causes: tasks resolved done in the period, as known at as_of (a task reopened
        // since is not resolved). An account's MRR counts once per cause, as it was just
        // before the first such task opened (tasks are in opening order): the revenue at stake.
        let mut seen = [false; CAUSES];
        for t in
            cs.tasks.iter().filter(|t| t.status == TaskStatus::Done && t.resolved.is_some_and(in_p))
        {
            self.tasks_resolved += 1;
            match t.root_cause.as_deref() {
                None => self.tasks_without_cause += 1,
                Some(text) => {
                    let c = RootCause::classify(text).index() as usize;
                    self.cause_tasks[c] += 1;
                    if !seen[c] {
                        seen[c] = true;
                        self.cause_mrr[c] =
                            self.cause_mrr[c].saturating_add(a.mrr_before(t.opened));
                    }
                }
            }
        }

        // Fee trend: the twelve months before the period end against the twelve before them.
        let (y1, y2) = (e.add_months(-12), e.add_months(-24));
        let (recent, prior) = (paid_in(a, y1, e), paid_in(a, y2, y1));
        self.fees_12m += recent;
        self.fees_prior_12m += prior;
        if prior > 0 && (recent - prior) as f64 / prior as f64 <= cfg.fee_decline {
            self.fee_decliners += 1;
        }
    }

    /// The values, in catalogue order. `service_cost` is company-level (`None` in cuts).
    pub(crate) fn finish(&self, service_cost: Option<i64>) -> Vec<(&'static str, Value)> {
        use Value::*;
        let f = |x: i64| x as f64;
        let n = self.nps.iter().sum::<i64>();
        let [d, pa, pr] = self.nps;
        let (pp, pd) = (f(pr) / f(n.max(1)), f(d) / f(n.max(1)));
        let nps = (n > 0).then_some(100.0 * (pp - pd));
        let nps_se =
            (n > 0).then(|| 100.0 * ((pp + pd - (pp - pd).powi(2)).max(0.0) / f(n)).sqrt());
        let success_n = self.success.iter().sum::<i64>();
        let share = |x: i64, of: i64| Rate(ratio(f(x), f(of)));
        let median = |v: &[f64]| -> Option<f64> { quantile(v, 0.5) };
        let service_margin =
            service_cost.and_then(|c| ratio(f(self.service_revenue - c), f(self.service_revenue)));
        vec![
            ("nps", Number(nps)),
            ("nps_se", Number(nps_se)),
            ("nps_responses", Count(n)),
            ("nps_promoters", Count(pr)),
            ("nps_passives", Count(pa)),
            ("nps_detractors", Count(d)),
            ("csat", share(self.csat_satisfied, self.csat_responses)),
            ("csat_responses", Count(self.csat_responses)),
            ("surveys_sent", Count(self.surveys_sent)),
            ("survey_responses", Count(self.responses)),
            ("survey_response_rate", share(self.responses, self.surveys_sent)),
            ("accounts_stopped_responding", Count(self.stopped_responding)),
            ("success_positive", share(self.success[Sentiment::Positive as usize], success_n)),
            ("success_neutral", share(self.success[Sentiment::Neutral as usize], success_n)),
            ("success_negative", share(self.success[Sentiment::Negative as usize], success_n)),
            (
                "detractor_follow_up_rate",
                share(self.detractors_followed_up, self.detractor_responses),
            ),
            ("tickets", Count(self.tickets)),
            ("tickets_per_account", Number(ratio(f(self.tickets), f(self.customers_during)))),
            (
                "tickets_change",
                Rate(ratio(f(self.tickets - self.tickets_prev), f(self.tickets_prev))),
            ),
            ("defect_tickets", Count(self.defect_tickets)),
            ("defect_share", share(self.defect_tickets, self.tickets)),
            ("ticket_cost", Money(self.ticket_cost)),
            ("defect_cost", Money(self.defect_cost)),
            (
                "defect_cost_share",
                Rate(service_cost.and_then(|c| ratio(f(self.defect_cost), f(c)))),
            ),
            ("csat_defect_tickets", share(self.ticket_csat[0].1, self.ticket_csat[0].0)),
            ("csat_other_tickets", share(self.ticket_csat[1].1, self.ticket_csat[1].0)),
            ("engagement_rate", share(self.engaged, self.customers_during)),
            ("touchpoints", Count(self.touchpoints)),
            (
                "touchpoints_per_account",
                Number(ratio(f(self.touchpoints), f(self.customers_during))),
            ),
            ("touchpoint_positive_share", share(self.touch_positive, self.touch_rated)),
            ("touchpoint_negative_share", share(self.touch_negative, self.touch_rated)),
            ("service_attach_rate", share(self.service_customers, self.customers_end)),
            ("service_upgrade_rate", share(self.service_upgrades, self.service_start)),
            ("service_revenue", Money(self.service_revenue)),
            ("service_cost", MaybeMoney(service_cost)),
            ("service_margin", Rate(service_margin)),
            ("onboarding_cohort", Count(self.cohort)),
            ("onboarding_completion_rate", share(self.onboarded, self.cohort)),
            ("onboarding_days_median", Number(median(&self.onboarding_days))),
            ("time_to_value_days", Number(median(&self.ttv_days))),
            ("time_to_value_days_p90", Number(quantile(&self.ttv_days, 0.9))),
            ("success_plan_realization", share(self.objectives_achieved, self.objectives)),
            ("value_realised", Money(self.value_realised)),
            ("fees_paid", Money(self.fees_paid)),
            ("roi", Number(ratio(f(self.value_realised - self.fees_paid), f(self.fees_paid)))),
            ("contact_coverage_champion", share(self.coverage[0], self.customers_end)),
            ("contact_coverage_decision_maker", share(self.coverage[1], self.customers_end)),
            ("contact_coverage_sponsor", share(self.coverage[2], self.customers_end)),
            ("key_contacts_departed", Count(self.key_departures)),
            ("champions_departed", Count(self.champion_departures)),
            ("csm_relationship_avg", Number(ratio(f(self.relationship_sum), f(self.assessed)))),
            (
                "strategic_importance_avg",
                Number(ratio(f(self.importance_sum), f(self.importance_n))),
            ),
            ("change_requests", Count(self.change_requests)),
            ("fees_trailing_12m", Money(self.fees_12m)),
            (
                "fee_trend_yoy",
                Rate(ratio(f(self.fees_12m - self.fees_prior_12m), f(self.fees_prior_12m))),
            ),
            ("accounts_fee_decline", Count(self.fee_decliners)),
            ("tasks_resolved", Count(self.tasks_resolved)),
            ("tasks_resolved_without_root_cause", Count(self.tasks_without_cause)),
        ]
    }

    /// `root_cause_tasks.CAUSE` then `root_cause_mrr.CAUSE`, for every cause of the taxonomy
    /// in its order.
    pub(crate) fn root_causes(&self) -> Vec<(Cow<'static, str>, Value)> {
        let tasks = RootCause::ALL.iter().map(|c| {
            let id = format!("root_cause_tasks.{}", c.as_str());
            (Cow::Owned(id), Value::Count(self.cause_tasks[c.index() as usize]))
        });
        let mrr = RootCause::ALL.iter().map(|c| {
            let id = format!("root_cause_mrr.{}", c.as_str());
            (Cow::Owned(id), Value::Money(self.cause_mrr[c.index() as usize]))
        });
        tasks.chain(mrr).collect()
    }
}

/// The `q` quantile (linear interpolation between order statistics, as numpy's default).
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(s[lo] + (s[hi] - s[lo]) * (pos - lo as f64))
}

/// Moves between NPS categories, `[from][to]` indexed by [`NpsCategory`] (detractor,
/// passive, promoter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migration {
    /// Contacts whose latest response falls in the period and who answered before: the
    /// category of the response before it, then of the latest.
    pub contacts: [[u64; 3]; 3],
    /// Accounts, by the mean of their contacts' latest scores before the period and at its
    /// end (accounts with responses both times).
    pub accounts: [[u64; 3]; 3],
}

impl Migration {
    /// Detractors who became passives or promoters / detractors before (contacts).
    pub fn detractor_conversion_rate(&self) -> Option<f64> {
        let d = self.contacts[0];
        ratio((d[1] + d[2]) as f64, d.iter().sum::<u64>() as f64)
    }

    /// Promoters who became passives or detractors / promoters before (contacts): the risk signal.
    pub fn promoter_decay_rate(&self) -> Option<f64> {
        let p = self.contacts[2];
        ratio((p[0] + p[1]) as f64, p.iter().sum::<u64>() as f64)
    }
}

fn mean_category(scores: &[u8]) -> Option<NpsCategory> {
    if scores.is_empty() {
        return None;
    }
    let mean = scores.iter().map(|s| *s as f64).sum::<f64>() / scores.len() as f64;
    // Categories of a mean score: promoters from 9, passives from 7.
    Some(if mean >= 9.0 {
        NpsCategory::Promoter
    } else if mean >= 7.0 {
        NpsCategory::Passive
    } else {
        NpsCategory::Detractor
    })
}

/// The NPS migration matrices for a period.
pub fn nps_migration(ledger: &tenure_ledger::Ledger, p: Period) -> Migration {
    let mut m = Migration::default();
    for a in &ledger.accounts {
        let nps: Vec<(&tenure_ledger::cs::Response, u8)> =
            a.cs.responses
                .iter()
                .filter_map(|r| match r.score {
                    SurveyScore::Nps(s) if r.ts < p.end => Some((r, s)),
                    _ => None,
                })
                .collect();
        let mut contacts: Vec<&str> =
            nps.iter().filter_map(|(r, _)| r.contact_id.as_deref()).collect();
        contacts.sort_unstable();
        contacts.dedup();
        for c in contacts {
            let mine: Vec<&(&tenure_ledger::cs::Response, u8)> =
                nps.iter().filter(|(r, _)| r.contact_id.as_deref() == Some(c)).collect();
            if let [.., before, latest] = mine.as_slice()
                && p.contains(latest.0.ts)
            {
                m.contacts[NpsCategory::of(before.1) as usize]
                    [NpsCategory::of(latest.1) as usize] += 1;
            }
        }
        let before = latest_nps(a, Timestamp::MIN, p.start);
        let after = latest_nps(a, Timestamp::MIN, p.end);
        if let (Some(x), Some(y)) = (mean_category(&before), mean_category(&after)) {
            m.accounts[x as usize][y as usize] += 1;
        }
    }
    m
}
