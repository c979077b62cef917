//! Alert rules and playbooks: which events (immediate rules) and account states (aggregate
//! rules) raise an alert, how severe, how often, and the task each opens. Pure: rules read
//! an event or an account's state at an instant given to them and return what fires;
//! [`crate::raise`] turns that into alert and task events, which the service records and
//! notifies.

use crate::expr::{Expr, Term, Value};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tenure_core::event::{
    ContactRole, Event, EventBody, InvoiceStatus, Severity, SurveyScore, TicketCategory,
    TicketStatus,
};
use tenure_core::time::{DAY, Timestamp};
use tenure_health::features::F;
use tenure_health::state::AccountHealth;
use tenure_ledger::AccountLedger;

/// Every kind of rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    KeyContactLeft,
    Detractor,
    PromoterDropped,
    UrgentTicket,
    PaymentFailed,
    CancellationScheduled,
    UseOutsideSubscription,
    UsageDrop,
    TicketSurge,
    HealthRed,
    ChurnRisk,
    RenewalLowUtilisation,
    FeesDown,
    NoSurveyResponse,
    NoEngagement,
    RenewalNotice,
    /// A condition written in the expression language (`when`); several may be listed.
    Expression,
}

impl Kind {
    /// The shipped kinds, each with a default rule (not `Expression`, which has none).
    pub const ALL: &[Kind] = &[
        Kind::KeyContactLeft,
        Kind::Detractor,
        Kind::PromoterDropped,
        Kind::UrgentTicket,
        Kind::PaymentFailed,
        Kind::CancellationScheduled,
        Kind::UseOutsideSubscription,
        Kind::UsageDrop,
        Kind::TicketSurge,
        Kind::HealthRed,
        Kind::ChurnRisk,
        Kind::RenewalLowUtilisation,
        Kind::FeesDown,
        Kind::NoSurveyResponse,
        Kind::NoEngagement,
        Kind::RenewalNotice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KeyContactLeft => "key_contact_left",
            Kind::Detractor => "detractor",
            Kind::PromoterDropped => "promoter_dropped",
            Kind::UrgentTicket => "urgent_ticket",
            Kind::PaymentFailed => "payment_failed",
            Kind::CancellationScheduled => "cancellation_scheduled",
            Kind::UseOutsideSubscription => "use_outside_subscription",
            Kind::UsageDrop => "usage_drop",
            Kind::TicketSurge => "ticket_surge",
            Kind::HealthRed => "health_red",
            Kind::ChurnRisk => "churn_risk",
            Kind::RenewalLowUtilisation => "renewal_low_utilisation",
            Kind::FeesDown => "fees_down",
            Kind::NoSurveyResponse => "no_survey_response",
            Kind::NoEngagement => "no_engagement",
            Kind::RenewalNotice => "renewal_notice",
            Kind::Expression => "expression",
        }
    }

    /// Fired by one event as it arrives (else re-evaluated on the account's state).
    /// Whether closing its task asks why the account is at risk (a root cause from the
    /// taxonomy): not for routine work, as scheduling a touchpoint or answering a notice
    /// deadline, whose closing says nothing about churn.
    pub fn asks_root_cause(self) -> bool {
        !matches!(
            self,
            Kind::NoEngagement
                | Kind::NoSurveyResponse
                | Kind::RenewalNotice
                | Kind::UseOutsideSubscription
        )
    }

    pub fn immediate(self) -> bool {
        matches!(
            self,
            Kind::KeyContactLeft
                | Kind::Detractor
                | Kind::PromoterDropped
                | Kind::UrgentTicket
                | Kind::PaymentFailed
                | Kind::CancellationScheduled
                | Kind::UseOutsideSubscription
        )
    }

    fn default_severity(self) -> Severity {
        match self {
            Kind::CancellationScheduled => Severity::Urgent,
            Kind::KeyContactLeft
            | Kind::Detractor
            | Kind::UrgentTicket
            | Kind::PaymentFailed
            | Kind::TicketSurge
            | Kind::ChurnRisk
            | Kind::RenewalLowUtilisation
            | Kind::RenewalNotice
            | Kind::HealthRed => Severity::High,
            Kind::NoSurveyResponse | Kind::NoEngagement => Severity::Low,
            _ => Severity::Normal,
        }
    }

    /// Days before the same rule may alert again for the same account. Event rules alert on
    /// every event (their task is updated, not duplicated); a state that persists would
    /// otherwise alert on every change of the account.
    /// Days after an account first pays during which the rule stays quiet: a new
    /// customer's health, usage and engagement say little yet (30 for the rules that read
    /// them, 0 for the others).
    fn default_grace_days(self) -> i64 {
        match self {
            Kind::HealthRed
            | Kind::ChurnRisk
            | Kind::UsageDrop
            | Kind::NoEngagement
            | Kind::NoSurveyResponse
            | Kind::RenewalLowUtilisation
            | Kind::Expression => 30,
            _ => 0,
        }
    }

    fn default_cooldown_days(self) -> i64 {
        match self {
            Kind::UseOutsideSubscription => 7,
            k if k.immediate() => 0,
            _ => 30,
        }
    }

    /// The title of the task an alert opens when no playbook gives one.
    fn default_title(self) -> &'static str {
        match self {
            Kind::KeyContactLeft => "Re-establish the relationship: a key contact left",
            Kind::Detractor => "Follow up the detractor and tag the root cause",
            Kind::PromoterDropped => "Find out why a promoter's score fell",
            Kind::UrgentTicket => "Check in on the urgent ticket",
            Kind::PaymentFailed => "Help resolve the failed payment",
            Kind::CancellationScheduled => "Save the account: cancellation scheduled",
            Kind::UseOutsideSubscription => "Usage without a subscription: upsell or win back",
            Kind::UsageDrop => "Investigate the drop in usage",
            Kind::TicketSurge => "Review the surge of tickets",
            Kind::HealthRed => "Health turned red: review the account",
            Kind::ChurnRisk => "High churn risk: act on the drivers",
            Kind::RenewalLowUtilisation => "Renewal soon with low licence utilisation",
            Kind::FeesDown => "Fees down on last year: review the account",
            Kind::NoSurveyResponse => "No survey answer for a long time: re-engage",
            Kind::NoEngagement => "No touchpoint for a long time: schedule one",
            Kind::RenewalNotice => "Renewal notice deadline ahead: confirm the renewal",
            Kind::Expression => "A rule's condition holds: review the account",
        }
    }
}

/// One `[[rule]]` of the service configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub kind: Option<Kind>,
    /// The rule's name in alerts and tasks [default: the kind].
    pub id: Option<String>,
    pub enabled: Option<bool>,
    pub severity: Option<String>,
    pub cooldown_days: Option<i64>,
    /// Days after an account first pays before the rule may fire for it (onboarding grace:
    /// 30 for health_red, churn_risk, usage_drop, no_engagement, no_survey_response and
    /// renewal_low_utilisation; 0 for the others).
    pub grace_days: Option<i64>,
    /// The window, days (usage_drop 14, ticket_surge 7, renewal_low_utilisation 90,
    /// no_survey_response 180, no_engagement 90); renewal_notice: the notice period, days
    /// before a term end by which notice must be given [60].
    pub days: Option<i64>,
    /// renewal_notice: days before the notice deadline the alert (and its task) comes [30].
    pub lead_days: Option<i64>,
    /// usage_drop: the fall that alerts, a fraction [0.5].
    pub drop: Option<f64>,
    /// usage_drop: the fewest events in the earlier window to judge a drop [20].
    pub min_events: Option<u64>,
    /// ticket_surge: tickets opened within `days` that alert [5].
    pub tickets: Option<u64>,
    /// churn_risk: the probability that alerts [0.5].
    pub probability: Option<f64>,
    /// renewal_low_utilisation: utilisation under which it alerts [0.5].
    pub utilisation: Option<f64>,
    /// fees_down: the fall of paid fees, last 12 months on the 12 before, that alerts [0.1].
    pub decline: Option<f64>,
    /// key_contact_left: the roles that count [champion, executive_sponsor, decision_maker].
    pub roles: Option<Vec<String>>,
    /// urgent_ticket: the severities [urgent] and categories [defect] that alert.
    pub severities: Option<Vec<String>>,
    pub categories: Option<Vec<String>>,
    /// expression: the condition (docs/api.md lists the names and functions); a rule with
    /// `when` and no kind is an expression rule.
    pub when: Option<String>,
    /// The title of the task it opens [the kind's].
    pub title: Option<String>,
    /// Whether resolving its task asks for a root cause [true, except for the routine
    /// kinds].
    pub root_cause: Option<bool>,
}

/// A task template attached to rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    /// The rule ids it applies to.
    pub rules: Vec<String>,
    pub title: Option<String>,
    /// Days from the alert to the task's due date [3].
    pub due_days: Option<i64>,
    /// Steps, written into the task as its first note.
    #[serde(default)]
    pub steps: Vec<String>,
}

/// A rule ready to evaluate.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: String,
    pub kind: Kind,
    pub severity: Severity,
    pub cooldown_days: i64,
    pub grace_days: i64,
    pub days: i64,
    pub lead_days: i64,
    pub drop: f64,
    pub min_events: u64,
    pub tickets: u64,
    pub probability: f64,
    pub utilisation: f64,
    pub decline: f64,
    pub roles: Vec<ContactRole>,
    pub severities: Vec<Severity>,
    pub categories: Vec<TicketCategory>,
    /// expression: the compiled condition.
    pub when: Option<Arc<Expr>>,
    pub title: Option<String>,
    /// Whether resolving its task asks for a root cause.
    pub root_cause: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("rule {rule:?}: {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

impl Rule {
    /// The rule of `kind` with every default.
    pub fn default_of(kind: Kind) -> Rule {
        Rule::from_config(&RuleConfig { kind: Some(kind), ..RuleConfig::default() })
            .expect("defaults are valid")
    }

    pub fn from_config(c: &RuleConfig) -> Result<Rule, RuleError> {
        let kind = c.kind.or(c.when.as_ref().map(|_| Kind::Expression));
        let name = c.id.clone().or(kind.map(|k| k.as_str().to_string())).unwrap_or_default();
        let bad = |reason: String| RuleError { rule: name.clone(), reason };
        let kind = kind.ok_or_else(|| {
            bad(format!(
                "needs a kind ({} | expression with when = \"CONDITION\")",
                Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" | ")
            ))
        })?;
        let when = match (&c.when, kind) {
            (Some(w), Kind::Expression) => {
                if c.id.is_none() {
                    return Err(bad(
                        "an expression rule needs an id (its name in alerts and tasks)".into(),
                    ));
                }
                Some(Arc::new(Expr::parse(w).map_err(|e| bad(format!("when: {e}")))?))
            }
            (None, Kind::Expression) => {
                return Err(bad("an expression rule needs a condition: when = \"...\"".into()));
            }
            (Some(_), k) => {
                return Err(bad(format!(
                    "when is for expression rules (kind = \"expression\" or no kind), not {}",
                    k.as_str()
                )));
            }
            (None, _) => None,
        };
        if let Some(t) = &c.title
            && (t.trim().is_empty() || t.len() > 200)
        {
            return Err(bad("title must be 1 to 200 characters".into()));
        }
        fn list<T>(
            v: &Option<Vec<String>>,
            default: Vec<T>,
            parse: fn(&str) -> Option<T>,
            what: &str,
            expected: fn() -> String,
        ) -> Result<Vec<T>, String> {
            match v {
                None => Ok(default),
                Some(v) => v
                    .iter()
                    .map(|s| {
                        parse(s).ok_or_else(|| {
                            format!("unknown {what} {s:?} (expected {})", expected())
                        })
                    })
                    .collect(),
            }
        }
        let severity = match &c.severity {
            None => kind.default_severity(),
            Some(s) => Severity::parse(s).ok_or_else(|| {
                bad(format!("unknown severity {s:?} (expected {})", Severity::expected()))
            })?,
        };
        let frac = |x: Option<f64>, d: f64, what: &str| -> Result<f64, RuleError> {
            let v = x.unwrap_or(d);
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(bad(format!("{what} must be between 0 and 1, got {v}")))
            }
        };
        let default_days = match kind {
            Kind::UsageDrop => 14,
            Kind::TicketSurge => 7,
            Kind::NoSurveyResponse => 180,
            Kind::RenewalNotice => 60,
            _ => 90,
        };
        let days = c.days.unwrap_or(default_days);
        if days <= 0 {
            return Err(bad(format!("days must be positive, got {days}")));
        }
        let lead_days = c.lead_days.unwrap_or(30);
        if lead_days <= 0 {
            return Err(bad(format!("lead_days must be positive, got {lead_days}")));
        }
        let cooldown_days = c.cooldown_days.unwrap_or(kind.default_cooldown_days());
        if cooldown_days < 0 {
            return Err(bad(format!("cooldown_days must not be negative, got {cooldown_days}")));
        }
        let grace_days = c.grace_days.unwrap_or(kind.default_grace_days());
        if grace_days < 0 {
            return Err(bad(format!("grace_days must not be negative, got {grace_days}")));
        }
        Ok(Rule {
            id: name.clone(),
            kind,
            severity,
            cooldown_days,
            grace_days,
            days,
            lead_days,
            drop: frac(c.drop, 0.5, "drop")?,
            min_events: c.min_events.unwrap_or(20),
            tickets: c.tickets.unwrap_or(5),
            probability: frac(c.probability, 0.5, "probability")?,
            utilisation: frac(c.utilisation, 0.5, "utilisation")?,
            decline: frac(c.decline, 0.1, "decline")?,
            roles: list(
                &c.roles,
                vec![
                    ContactRole::Champion,
                    ContactRole::ExecutiveSponsor,
                    ContactRole::DecisionMaker,
                ],
                ContactRole::parse,
                "role",
                ContactRole::expected,
            )
            .map_err(bad)?,
            severities: list(
                &c.severities,
                vec![Severity::Urgent],
                Severity::parse,
                "severity",
                Severity::expected,
            )
            .map_err(bad)?,
            categories: list(
                &c.categories,
                vec![TicketCategory::Defect],
                TicketCategory::parse,
                "category",
                TicketCategory::expected,
            )
            .map_err(bad)?,
            when,
            title: c.title.clone(),
            root_cause: c.root_cause.unwrap_or(kind.asks_root_cause()),
        })
    }

    /// The title of the task its alerts open when no playbook gives one.
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(self.kind.default_title())
    }

    /// The days of daily usage its evaluation reads (before its instant).
    pub fn usage_days(&self) -> i64 {
        match (self.kind, &self.when) {
            (Kind::UsageDrop, _) => 2 * self.days,
            (_, Some(e)) => e.usage_days(),
            _ => 0,
        }
    }
}

/// The rules and playbooks in force.
#[derive(Clone, Debug)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub playbooks: Vec<Playbook>,
}

impl Default for Rules {
    /// Every kind with its defaults.
    fn default() -> Rules {
        Rules { rules: Kind::ALL.iter().map(|k| Rule::default_of(*k)).collect(), playbooks: vec![] }
    }
}

impl Rules {
    /// From the configuration's `[[rule]]` and `[[playbook]]` lists: with no rules listed,
    /// every kind with its defaults; a rule listed replaces the default of its kind.
    pub fn from_config(rules: &[RuleConfig], playbooks: Vec<Playbook>) -> Result<Rules, RuleError> {
        let mut out: Vec<Rule> = Vec::new();
        let listed: Vec<Rule> = rules.iter().map(Rule::from_config).collect::<Result<_, _>>()?;
        let mut enabled = BTreeMap::new();
        for (r, c) in listed.iter().zip(rules) {
            enabled.insert(r.id.clone(), c.enabled.unwrap_or(true));
        }
        for k in Kind::ALL {
            if !listed.iter().any(|r| r.kind == *k) {
                out.push(Rule::default_of(*k));
            }
        }
        for r in listed {
            if out.iter().any(|o| o.id == r.id) {
                return Err(RuleError { rule: r.id, reason: "listed twice".into() });
            }
            if enabled[&r.id] {
                out.push(r);
            }
        }
        for p in &playbooks {
            for id in &p.rules {
                if !out.iter().any(|r| &r.id == id) && !enabled.contains_key(id) {
                    return Err(RuleError {
                        rule: id.clone(),
                        reason: format!("playbook {:?} names a rule that does not exist", p.name),
                    });
                }
            }
        }
        Ok(Rules { rules: out, playbooks })
    }

    /// The task an alert of `rule` opens: title, due in days, steps.
    /// The title, days to the due date and steps of the task a rule's alert opens: the
    /// playbook's, else the kind's title and a due date by severity (urgent 1 day, high 3,
    /// normal 7, low 14).
    pub fn task_template(&self, rule: &Rule) -> (String, i64, Vec<String>) {
        let by_severity = match rule.severity {
            Severity::Urgent => 1,
            Severity::High => 3,
            Severity::Normal => 7,
            Severity::Low => 14,
        };
        match self.playbooks.iter().find(|p| p.rules.contains(&rule.id)) {
            Some(p) => (
                p.title.clone().unwrap_or_else(|| rule.title().to_string()),
                p.due_days.unwrap_or(by_severity),
                p.steps.clone(),
            ),
            None => (rule.title().to_string(), by_severity, Vec::new()),
        }
    }

    /// The rule a task came from (by its `rule`), if it is one of these.
    pub fn of_task(&self, rule: Option<&str>) -> Option<&Rule> {
        self.rules.iter().find(|r| Some(r.id.as_str()) == rule)
    }
}

/// A rule that fired for an account.
#[derive(Clone, Debug, PartialEq)]
pub struct Firing {
    pub rule: usize,
    pub account: String,
    pub message: String,
    /// The record that fired an immediate rule, as `KIND:INDEX` (its lane and its index
    /// there), when known: its alert's id is then the record's, not the instant's, so the
    /// record alerts once however often it is evaluated (again after a crash, say).
    pub source: Option<String>,
}

fn role_of(a: Option<&AccountLedger>, contact: &str, t: Timestamp) -> Option<ContactRole> {
    a?.cs.contacts_before(t).into_iter().find(|c| c.contact_id == contact)?.role
}

/// What the earlier events of the same batch said: the ledger the rules read is as it was
/// before the batch, so a contact's role or NPS answer given earlier in it lives here.
#[derive(Default)]
pub struct Batch {
    /// The latest NPS answer per (account, contact).
    nps: rustc_hash::FxHashMap<(String, String), u8>,
    /// The latest role per (account, contact).
    roles: rustc_hash::FxHashMap<(String, String), ContactRole>,
}

impl Batch {
    /// Takes note of an event, after the rules have seen it.
    pub fn note(&mut self, e: &Event) {
        let Some(account) = &e.account else { return };
        match &e.body {
            EventBody::SurveyResponse {
                score: SurveyScore::Nps(s), contact_id: Some(c), ..
            } => {
                self.nps.insert((account.clone(), c.clone()), *s);
            }
            EventBody::Contact { contact_id, role: Some(r), .. } => {
                self.roles.insert((account.clone(), contact_id.clone()), *r);
            }
            _ => {}
        }
    }

    fn role(&self, account: &str, contact: &str) -> Option<ContactRole> {
        self.roles.get(&(account.to_string(), contact.to_string())).copied()
    }
}

fn who(contact: &str, role: Option<ContactRole>) -> String {
    match role {
        Some(r) => format!("{} {contact}", r.as_str().replace('_', " ")),
        None => format!("contact {contact}"),
    }
}

/// The immediate rules `e` fires. `ledger` gives an account as folded before `e`;
/// `moved_from` is the account a contact event's contact was last seen under, when another.
pub fn immediate<'a>(
    rules: &Rules,
    e: &Event,
    ledger: &dyn Fn(&str) -> Option<&'a AccountLedger>,
    moved_from: Option<&str>,
    batch: &Batch,
) -> Vec<Firing> {
    let Some(account) = e.account.as_deref() else { return Vec::new() };
    let before = ledger(account);
    let mut out = Vec::new();
    for (i, r) in rules.rules.iter().enumerate().filter(|(_, r)| r.kind.immediate()) {
        let fire = |acct: &str, message: String| Firing {
            rule: i,
            account: acct.to_string(),
            message,
            source: None,
        };
        match (&e.body, r.kind) {
            (EventBody::Contact { contact_id, role, status, .. }, Kind::KeyContactLeft) => {
                if *status == Some(tenure_core::event::ContactStatus::Left) {
                    let role = role
                        .or(batch.role(account, contact_id))
                        .or(role_of(before, contact_id, e.ts));
                    if role.is_some_and(|x| r.roles.contains(&x)) {
                        out.push(fire(account, format!("{} left", who(contact_id, role))));
                    }
                }
                if let Some(from) = moved_from {
                    let role =
                        batch.role(from, contact_id).or(role_of(ledger(from), contact_id, e.ts));
                    if role.is_some_and(|x| r.roles.contains(&x)) {
                        out.push(fire(
                            from,
                            format!("{} moved to account {account}", who(contact_id, role)),
                        ));
                    }
                }
            }
            (
                EventBody::SurveyResponse {
                    score: SurveyScore::Nps(s), contact_id, comment, ..
                },
                k,
            ) if k == Kind::Detractor || k == Kind::PromoterDropped => {
                let by = contact_id.as_deref().map_or("an anonymous respondent".to_string(), |c| {
                    who(c, role_of(before, c, e.ts))
                });
                let said = comment.as_deref().map_or(String::new(), |c| format!(": \"{c}\""));
                if k == Kind::Detractor && *s <= 6 {
                    out.push(fire(account, format!("NPS {s} (detractor) from {by}{said}")));
                }
                if k == Kind::PromoterDropped && *s <= 8 {
                    let previous = contact_id.as_deref().and_then(|c| {
                        if let Some(x) = batch.nps.get(&(account.to_string(), c.to_string())) {
                            return Some(*x);
                        }
                        before?.cs.responses.iter().rev().find_map(|p| match p.score {
                            SurveyScore::Nps(x)
                                if p.contact_id.as_deref() == Some(c) && p.ts <= e.ts =>
                            {
                                Some(x)
                            }
                            _ => None,
                        })
                    });
                    if previous.is_some_and(|p| p >= 9) {
                        let to = if *s <= 6 { "detractor" } else { "passive" };
                        out.push(fire(
                            account,
                            format!(
                                "{by} went from promoter ({}) to {to} ({s}){said}",
                                previous.unwrap_or(0)
                            ),
                        ));
                    }
                }
            }
            (
                EventBody::Ticket { ticket_id, status, category, severity, .. },
                Kind::UrgentTicket,
            ) if *status != TicketStatus::Closed => {
                let hot_sev = severity.is_some_and(|s| r.severities.contains(&s));
                let hot_cat = category.is_some_and(|c| r.categories.contains(&c));
                if hot_sev || hot_cat {
                    let what = [
                        severity.filter(|_| hot_sev).map(|s| s.as_str()),
                        category.filter(|_| hot_cat).map(|c| c.as_str()),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                    out.push(fire(
                        account,
                        format!("{what} ticket {ticket_id} {}", status.as_str()),
                    ));
                }
            }
            (
                EventBody::Invoice { invoice_id, status: InvoiceStatus::Failed, amount, .. },
                Kind::PaymentFailed,
            ) => {
                out.push(fire(
                    account,
                    format!(
                        "payment of invoice {invoice_id} failed ({} {})",
                        tenure_core::money::format_minor(amount.minor, amount.currency),
                        amount.currency.as_str()
                    ),
                ));
            }
            (EventBody::Subscription(s), Kind::CancellationScheduled) => {
                if let Some(at) = s.cancel_at {
                    let was = before.is_some_and(|a| {
                        a.cancellations_scheduled.iter().any(|(_, eff)| *eff == at)
                    });
                    if !was {
                        out.push(fire(
                            account,
                            format!(
                                "cancellation of {} scheduled for {}{}",
                                s.subscription_id,
                                at.date_string(),
                                s.cancel_reason
                                    .as_deref()
                                    .map_or(String::new(), |r| format!(" ({r})"))
                            ),
                        ));
                    }
                }
            }
            (EventBody::Usage { user_id, .. }, Kind::UseOutsideSubscription) => {
                // Only accounts that have had a subscription: prospects are not alerted on.
                if let Some(a) = before
                    && !a.steps.is_empty()
                    && !a.customer_before(Timestamp(e.ts.0 + 1))
                {
                    out.push(fire(
                        account,
                        format!("user {user_id} is using the product with no active subscription"),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// The value of what an expression reads, for the account at `now`.
fn term_value(t: Term, s: &AccountState<'_>, h: &AccountHealth, now: Timestamp) -> Value {
    let a = s.ledger;
    let today = now.day();
    let ago = |d: i64| Timestamp(now.0 - d * DAY);
    // (now - before) / before: exact where it can be (10 to 7 is -0.3, as `-30%` is).
    let change =
        |now: f64, before: f64| if before > 0.0 { (now - before) / before } else { f64::NAN };
    // MRR as of an instant, its changes at that instant included.
    let mrr_at = |t: Timestamp| a.mrr_before(Timestamp(t.0 + 1)) as f64;
    Value::Num(match t {
        Term::Feature(i) => h.row.num[i],
        Term::Health => h.score.unwrap_or(f64::NAN),
        Term::ChurnProbability => h.probability.unwrap_or(f64::NAN),
        Term::Plan => return Value::Text(h.row.plan.clone()),
        Term::Segment => return Value::Text(h.row.segment.clone()),
        Term::Usage(d) => (s.events_between)(today - d, today) as f64,
        Term::UsageChange(d) => change(
            (s.events_between)(today - d, today) as f64,
            (s.events_between)(today - 2 * d, today - d) as f64,
        ),
        Term::MrrChange(d) => change(mrr_at(now), mrr_at(ago(d))),
        Term::Tickets(d) => {
            a.cs.tickets.iter().filter(|x| x.opened >= ago(d) && x.opened <= now).count() as f64
        }
        Term::Touchpoints(d) => {
            a.cs.touchpoints.iter().filter(|x| x.0 >= ago(d) && x.0 <= now).count() as f64
        }
    })
}

/// What aggregate rules read of one account.
pub struct AccountState<'a> {
    pub ledger: &'a AccountLedger,
    /// The account's health now (`None` when it is not a paying customer).
    pub health: Option<&'a AccountHealth>,
    /// Usage events on days `[from, to)` (day numbers since the epoch).
    pub events_between: &'a dyn Fn(i64, i64) -> u64,
    /// The churn model that gave the health its probability (its drivers are explained
    /// when a rule names them).
    pub model: Option<&'a tenure_health::Model>,
    /// Whether rule `i` is within its cooldown for this account (its firing would be
    /// dropped): a rule whose message is costly (the model's drivers) is not worked out.
    pub cooling: &'a dyn Fn(usize) -> bool,
}

/// The aggregate rules the account's state at `now` meets.
pub fn aggregate(rules: &Rules, s: &AccountState<'_>, now: Timestamp) -> Vec<Firing> {
    let a = s.ledger;
    let mut out = Vec::new();
    // Aggregate rules watch paying customers only.
    let Some(h) = s.health else { return out };
    let today = now.day();
    let first_paid = a.first_paid();
    // Within a rule's onboarding grace, a new customer is left alone by it.
    let settled = |r: &Rule| {
        r.grace_days == 0 || first_paid.is_some_and(|f| now.0 - f.0 >= r.grace_days * DAY)
    };
    for (i, r) in rules.rules.iter().enumerate().filter(|(_, r)| !r.kind.immediate() && settled(r))
    {
        let ago = |d: i64| Timestamp(now.0 - d * DAY);
        let message = match r.kind {
            Kind::UsageDrop => {
                let recent = (s.events_between)(today - r.days, today);
                let prior = (s.events_between)(today - 2 * r.days, today - r.days);
                (prior >= r.min_events && (recent as f64) <= (prior as f64) * (1.0 - r.drop)).then(
                    || {
                        format!(
                            "usage down {:.0}% over {} days ({prior} to {recent} events)",
                            100.0 * (prior - recent.min(prior)) as f64 / prior as f64,
                            r.days
                        )
                    },
                )
            }
            Kind::TicketSurge => {
                let n =
                    a.cs.tickets
                        .iter()
                        .filter(|t| t.opened >= ago(r.days) && t.opened <= now)
                        .count() as u64;
                (n >= r.tickets).then(|| format!("{n} tickets opened in {} days", r.days))
            }
            Kind::HealthRed => (h.colour == "red").then(|| {
                format!(
                    "health is red ({}){}",
                    h.score.map_or("-".into(), |x| format!("{x:.0}")),
                    h.scorecard.as_deref().map_or(String::new(), |c| format!(" on scorecard {c}"))
                )
            }),
            Kind::ChurnRisk => {
                h.probability.filter(|p| *p >= r.probability && !(s.cooling)(i)).map(|p| {
                    let drivers = h.drivers(s.model, 3);
                    let why: Vec<&str> = drivers.iter().map(|d| d.text.as_str()).collect();
                    format!(
                        "churn probability {:.0}%{}",
                        p * 100.0,
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", why.join("; "))
                        }
                    )
                })
            }
            Kind::RenewalLowUtilisation => {
                let days = h.row.get(F::DAYS_TO_RENEWAL);
                let u = h.row.get(F::UTILISATION);
                (days.is_finite()
                    && days >= 0.0
                    && days <= r.days as f64
                    && u.is_finite()
                    && u < r.utilisation)
                    .then(|| {
                        format!(
                            "renewal in {days:.0} days with {:.0}% of licences in use",
                            u * 100.0
                        )
                    })
            }
            Kind::FeesDown => {
                let recent = tenure_kpi::cs::paid_in(a, ago(365), now);
                let prior = tenure_kpi::cs::paid_in(a, ago(730), ago(365));
                (prior > 0 && (prior - recent) as f64 >= r.decline * prior as f64).then(|| {
                    format!(
                        "fees paid down {:.0}% on the year before",
                        100.0 * (prior - recent) as f64 / prior as f64
                    )
                })
            }
            Kind::NoSurveyResponse => {
                // The oldest survey sent since the last answer has waited `days` or more.
                let last = a.cs.responses.iter().filter(|x| x.ts <= now).map(|x| x.ts).max();
                let waiting =
                    a.cs.surveys_sent
                        .iter()
                        .map(|x| x.0)
                        .filter(|t| *t <= now && last.is_none_or(|l| *t > l))
                        .min();
                waiting.filter(|t| *t <= ago(r.days)).map(|t| {
                    format!(
                        "no survey answer since surveys were sent on {} ({} days or more)",
                        t.date_string(),
                        r.days
                    )
                })
            }
            Kind::RenewalNotice => {
                // The open term whose notice deadline (term end - notice period) comes
                // within the lead time and has not passed.
                a.renewals
                    .iter()
                    .filter(|x| x.outcome == tenure_ledger::RenewalOutcome::Open && x.opened <= now)
                    .map(|x| (Timestamp(x.due.0 - r.days * DAY), x))
                    .filter(|(deadline, _)| *deadline > now && *deadline <= Timestamp(now.0 + r.lead_days * DAY))
                    .min_by_key(|(deadline, _)| *deadline)
                    .map(|(deadline, x)| {
                        format!(
                            "notice for {} is due by {} ({} days' notice before the term ends on {})",
                            x.subscription_id,
                            deadline.date_string(),
                            r.days,
                            x.due.date_string()
                        )
                    })
            }
            Kind::NoEngagement => {
                let last = a.cs.touchpoints.iter().filter(|x| x.0 <= now).map(|x| x.0).max();
                let customer_long = a.first_paid().is_some_and(|t| t < ago(r.days));
                (customer_long && last.is_none_or(|t| t < ago(r.days)))
                    .then(|| format!("no touchpoint in {} days", r.days))
            }
            Kind::Expression => r.when.as_ref().and_then(|e| {
                let values: Vec<Value> =
                    e.terms.iter().map(|t| term_value(*t, s, h, now)).collect();
                e.holds(&values).then(|| format!("{}: {}", e.source.trim(), e.describe(&values)))
            }),
            _ => None,
        };
        if let Some(message) = message {
            out.push(Firing { rule: i, account: a.id.clone(), message, source: None });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Result<Rule, RuleError> {
        Rule::from_config(&toml::from_str::<RuleConfig>(toml_text).expect("a rule table"))
    }

    #[test]
    fn defaults_cover_every_kind_with_their_cooldowns() {
        let r = Rules::default();
        assert_eq!(r.rules.len(), Kind::ALL.len());
        for x in &r.rules {
            assert_eq!(x.id, x.kind.as_str());
            let cooldown = match x.kind {
                Kind::UseOutsideSubscription => 7,
                k if k.immediate() => 0,
                _ => 30,
            };
            assert_eq!(x.cooldown_days, cooldown, "{}", x.id);
        }
        assert_eq!(Kind::ALL.iter().filter(|k| k.immediate()).count(), 7);
        let drop = Rule::default_of(Kind::UsageDrop);
        assert_eq!((drop.days, drop.drop, drop.min_events), (14, 0.5, 20));
        assert_eq!(Rule::default_of(Kind::NoSurveyResponse).days, 180);
        assert_eq!(Rule::default_of(Kind::CancellationScheduled).severity, Severity::Urgent);
    }

    #[test]
    fn invalid_rules_are_refused_with_the_rule_and_the_reason() {
        let e = |t: &str| rule(t).unwrap_err().to_string();
        assert!(e("id = \"x\"").starts_with("rule \"x\": needs a kind"), "{}", e("id = \"x\""));
        assert!(e("kind = \"usage_drop\"\ndrop = 1.5").contains("drop must be between 0 and 1"));
        assert!(e("kind = \"ticket_surge\"\ndays = 0").contains("days must be positive"));
        assert!(e("kind = \"fees_down\"\ncooldown_days = -1").contains("must not be negative"));
        assert!(e("kind = \"detractor\"\nseverity = \"dire\"").contains("unknown severity"));
        assert!(e("kind = \"key_contact_left\"\nroles = [\"boss\"]").contains("unknown role"));
        assert!(e("kind = \"urgent_ticket\"\ncategories = [\"bug\"]").contains("unknown category"));
        assert_eq!(
            e("when = \"health < 40\""),
            "rule \"expression\": an expression rule needs an id (its name in alerts and tasks)"
        );
        assert_eq!(
            e("id = \"d\"\nwhen = \"usage_chnge(60) < -30%\""),
            "rule \"d\": when: at column 1: unknown name \"usage_chnge\" (did you mean usage_change?)"
        );
        assert_eq!(
            e("kind = \"usage_drop\"\nwhen = \"true\""),
            "rule \"usage_drop\": when is for expression rules (kind = \"expression\" or no kind), not usage_drop"
        );
        assert_eq!(
            e("kind = \"expression\"\nid = \"x\""),
            "rule \"x\": an expression rule needs a condition: when = \"...\""
        );
        assert_eq!(
            e("id = \"x\"\nwhen = \"true\"\ntitle = \" \""),
            "rule \"x\": title must be 1 to 200 characters"
        );
        let x = rule("id = \"d\"\nwhen = \"usage_change(90) < -30%\"\ntitle = \"Look\"").unwrap();
        assert_eq!(
            (x.kind, x.severity, x.grace_days, x.cooldown_days),
            (Kind::Expression, Severity::Normal, 30, 30)
        );
        assert_eq!((x.title(), x.root_cause, x.usage_days()), ("Look", true, 180));
        let routine =
            rule("id = \"qbr\"\nwhen = \"touchpoints(90) == 0\"\nroot_cause = false").unwrap();
        assert!(!routine.root_cause);
        assert_eq!(routine.title(), "A rule's condition holds: review the account");
        assert!(!Rule::default_of(Kind::NoEngagement).root_cause);
        assert!(Rule::default_of(Kind::Detractor).root_cause);
        let r = rule("kind = \"urgent_ticket\"\nid = \"hot\"\nseverities = [\"high\"]").unwrap();
        assert_eq!((r.id.as_str(), r.severities.as_slice()), ("hot", &[Severity::High][..]));
    }

    #[test]
    fn listed_rules_replace_their_kind_and_playbooks_must_name_rules() {
        let parse = |t: &str| {
            #[derive(Deserialize)]
            struct Doc {
                #[serde(default)]
                rule: Vec<RuleConfig>,
                #[serde(default)]
                playbook: Vec<Playbook>,
            }
            let d: Doc = toml::from_str(t).unwrap();
            Rules::from_config(&d.rule, d.playbook)
        };
        let r = parse("[[rule]]\nkind = \"usage_drop\"\ndays = 7\n[[rule]]\nkind = \"no_engagement\"\nenabled = false\n[[playbook]]\nname = \"p\"\nrules = [\"no_engagement\"]").unwrap();
        assert_eq!(r.rules.len(), Kind::ALL.len() - 1, "the disabled rule is gone");
        assert_eq!(r.rules.iter().filter(|x| x.kind == Kind::UsageDrop).count(), 1);
        assert_eq!(r.rules.iter().find(|x| x.kind == Kind::UsageDrop).unwrap().days, 7);
        let e =
            parse("[[rule]]\nkind = \"detractor\"\n[[rule]]\nkind = \"detractor\"").unwrap_err();
        assert_eq!(e.to_string(), "rule \"detractor\": listed twice");
        let e = parse("[[playbook]]\nname = \"p\"\nrules = [\"nope\"]").unwrap_err();
        assert!(e.to_string().contains("names a rule that does not exist"), "{e}");
    }

    #[test]
    fn task_templates_come_from_the_playbook_else_the_kind() {
        let p = Playbook {
            name: "p".into(),
            rules: vec!["detractor".into()],
            title: None,
            due_days: Some(1),
            steps: vec!["Call".into()],
        };
        let r = Rules { playbooks: vec![p], ..Rules::default() };
        let d = Rule::default_of(Kind::Detractor);
        assert_eq!(
            r.task_template(&d),
            (Kind::Detractor.default_title().to_string(), 1, vec!["Call".to_string()])
        );
        let t = Rule::default_of(Kind::TicketSurge);
        assert_eq!(r.task_template(&t), ("Review the surge of tickets".to_string(), 3, vec![]));
    }
}
