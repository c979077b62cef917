//! The customer-success side of an account: contacts and their departures, surveys,
//! tickets, touchpoints, milestones, success objectives, assessments and change requests,
//! folded from their events into time-ordered histories the KPIs read.

use std::collections::BTreeMap;
use tenure_core::event::{
    ContactRole, ContactStatus, EventBody, ForecastCategory, ObjectiveStatus, RequestStatus,
    Sentiment, Severity, SurveyKind, SurveyScore, TaskChange, TaskStatus, TicketCategory,
    TicketStatus,
};
use tenure_core::time::Timestamp;

/// One change of a contact, as an upsert: fields left out keep their value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactChange {
    pub ts: Timestamp,
    pub contact_id: String,
    pub role: Option<ContactRole>,
    pub status: Option<ContactStatus>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// A contact's state at some instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub contact_id: String,
    pub role: Option<ContactRole>,
    pub active: bool,
    pub email: Option<String>,
    pub name: Option<String>,
    /// When the contact left (status `left`, or moved to another account).
    pub left_at: Option<Timestamp>,
}

/// A contact as [`CsLedger::contacts_seen_before`] gives it: a [`Contact`] whose texts
/// are the ledger's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContactSeen<'a> {
    pub contact_id: &'a str,
    pub role: Option<ContactRole>,
    pub active: bool,
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    pub left_at: Option<Timestamp>,
}

/// A contact leaving the account: status `left`, or showing up under another account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure {
    pub ts: Timestamp,
    pub contact_id: String,
    pub role: Option<ContactRole>,
    /// The account the contact moved to, when that is how they left.
    pub moved_to: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub ts: Timestamp,
    pub survey: SurveyKind,
    pub contact_id: Option<String>,
    pub score: SurveyScore,
    pub comment: Option<String>,
}

/// A ticket's life, folded from its events.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticket {
    pub ticket_id: String,
    pub opened: Timestamp,
    /// The last close, unless reopened after it.
    pub closed: Option<Timestamp>,
    pub reopened: u32,
    /// The latest known category, severity, cost (base minor units) and CSAT.
    pub category: Option<TicketCategory>,
    pub severity: Option<Severity>,
    pub cost: Option<i64>,
    pub csat: Option<u8>,
    /// The first category and severity given, with when: what was known at an instant
    /// (point-in-time features must not see a later reclassification).
    pub category_first: Option<(Timestamp, TicketCategory)>,
    pub severity_first: Option<(Timestamp, Severity)>,
}

impl Ticket {
    /// A ticket just opened at `opened`, nothing else known yet.
    pub fn opened(ticket_id: String, opened: Timestamp) -> Ticket {
        Ticket {
            ticket_id,
            opened,
            closed: None,
            reopened: 0,
            category: None,
            severity: None,
            cost: None,
            csat: None,
            category_first: None,
            severity_first: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    pub objective_id: String,
    pub created: Timestamp,
    pub status: ObjectiveStatus,
    pub status_at: Timestamp,
    /// Value realised (base minor units), when reported.
    pub value: Option<i64>,
}

/// An alert raised for the account.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub ts: Timestamp,
    pub alert_id: String,
    pub rule: String,
    pub severity: Severity,
    pub message: Option<String>,
}

/// A CSM task as its changes left it.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub task_id: String,
    pub opened: Timestamp,
    pub rule: Option<String>,
    pub alert_id: Option<String>,
    pub title: Option<String>,
    pub owner: Option<String>,
    pub due: Option<Timestamp>,
    pub status: TaskStatus,
    pub status_at: Timestamp,
    /// When it was last done or dismissed (`None` while open).
    pub resolved: Option<Timestamp>,
    pub root_cause: Option<String>,
    /// (when, author, note).
    pub notes: Vec<(Timestamp, Option<String>, String)>,
    /// Alerts the task was opened or updated for.
    pub alerts: u32,
}

impl Task {
    /// A task opened at `ts`, before its first change is applied.
    pub fn new(task_id: &str, ts: Timestamp) -> Task {
        Task {
            task_id: task_id.to_string(),
            opened: ts,
            rule: None,
            alert_id: None,
            title: None,
            owner: None,
            due: None,
            status: TaskStatus::Open,
            status_at: ts,
            resolved: None,
            root_cause: None,
            notes: Vec::new(),
            alerts: 0,
        }
    }

    /// Applies a change at `ts`: the fields given replace the task's, a note is appended.
    pub fn apply(&mut self, ts: Timestamp, c: TaskChange) {
        if c.alert_id.is_some() && c.alert_id != self.alert_id {
            self.alerts += 1;
        }
        self.rule = c.rule.or(self.rule.take());
        self.alert_id = c.alert_id.or(self.alert_id.take());
        self.title = c.title.or(self.title.take());
        self.owner = c.owner.or(self.owner.take());
        self.due = c.due.or(self.due);
        self.root_cause = c.root_cause.or(self.root_cause.take());
        if let Some(s) = c.status
            && s != self.status
        {
            self.status = s;
            self.status_at = ts;
            self.resolved = matches!(s, TaskStatus::Done | TaskStatus::Dismissed).then_some(ts);
        }
        if let Some(n) = c.note {
            self.notes.push((ts, c.author, n));
        }
    }

    /// Open or in progress: someone still has to act.
    pub fn is_active(&self) -> bool {
        matches!(self.status, TaskStatus::Open | TaskStatus::InProgress)
    }
}

/// Everything CS about one account, each list in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsLedger {
    pub contact_changes: Vec<ContactChange>,
    pub departures: Vec<Departure>,
    pub surveys_sent: Vec<(Timestamp, SurveyKind, Option<String>)>,
    pub responses: Vec<Response>,
    pub tickets: Vec<Ticket>,
    pub touchpoints: Vec<(Timestamp, String, Option<Sentiment>)>,
    pub milestones: Vec<(Timestamp, String)>,
    pub objectives: Vec<Objective>,
    /// (ts, relationship 1-5, strategic importance 1-5).
    pub assessments: Vec<(Timestamp, Option<u8>, Option<u8>)>,
    pub change_requests: Vec<(Timestamp, String, RequestStatus)>,
    pub alerts: Vec<Alert>,
    /// By opening time.
    pub tasks: Vec<Task>,
    /// The CSMs' calls on renewals (`forecast_override` events), in time order.
    pub forecast_calls: Vec<ForecastCall>,
}

/// A CSM's call on a renewal: a category and maybe the ARR expected back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForecastCall {
    pub ts: Timestamp,
    /// The contract; `None` for every contract of the account.
    pub subscription_id: Option<String>,
    pub category: ForecastCategory,
    /// ARR expected back, base-currency minor units.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    pub author: Option<String>,
}

impl CsLedger {
    /// The contacts as known just before `t`.
    pub fn contacts_before(&self, t: Timestamp) -> Vec<Contact> {
        self.contacts_seen_before(t)
            .into_iter()
            .map(|c| Contact {
                contact_id: c.contact_id.to_string(),
                role: c.role,
                active: c.active,
                email: c.email.map(str::to_string),
                name: c.name.map(str::to_string),
                left_at: c.left_at,
            })
            .collect()
    }

    /// As [`CsLedger::contacts_before`], the texts borrowed from the ledger: two
    /// allocations (the changes' order and the list) where the map of copies took one a
    /// contact and more (the health features read every account's contacts twice).
    pub fn contacts_seen_before(&self, t: Timestamp) -> Vec<ContactSeen<'_>> {
        let changes = &self.contact_changes;
        let n = changes.iter().position(|c| c.ts >= t).unwrap_or(changes.len());
        // The changes by contact, each contact's in the order they came (a stable sort).
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| changes[i].contact_id.cmp(&changes[j].contact_id));
        let mut out: Vec<ContactSeen<'_>> = Vec::new();
        for group in order.chunk_by(|&i, &j| changes[i].contact_id == changes[j].contact_id) {
            let mut e = ContactSeen {
                contact_id: &changes[group[0]].contact_id,
                role: None,
                active: true,
                email: None,
                name: None,
                left_at: None,
            };
            for c in group.iter().map(|&i| &changes[i]) {
                if c.role.is_some() {
                    e.role = c.role;
                }
                if c.email.is_some() {
                    e.email = c.email.as_deref();
                }
                if c.name.is_some() {
                    e.name = c.name.as_deref();
                }
                match c.status {
                    Some(ContactStatus::Left) if e.active => {
                        e.active = false;
                        e.left_at = Some(c.ts);
                    }
                    Some(ContactStatus::Active) => {
                        e.active = true;
                        e.left_at = None;
                    }
                    _ => {}
                }
            }
            out.push(e);
        }
        for d in self.departures.iter().filter(|d| d.moved_to.is_some() && d.ts < t) {
            if let Ok(i) = out.binary_search_by(|c| c.contact_id.cmp(d.contact_id.as_str()))
                && out[i].active
            {
                out[i].active = false;
                out[i].left_at = Some(d.ts);
            }
        }
        out
    }

    /// Whether an active contact with this role exists just before `t`.
    pub fn has_role_before(&self, role: ContactRole, t: Timestamp) -> bool {
        self.contacts_before(t).iter().any(|c| c.active && c.role == Some(role))
    }

    /// The latest assessment made before `t`.
    pub fn assessment_before(&self, t: Timestamp) -> Option<(Option<u8>, Option<u8>)> {
        let mut rel = None;
        let mut imp = None;
        for (_, r, i) in self.assessments.iter().take_while(|a| a.0 < t) {
            rel = r.or(rel);
            imp = i.or(imp);
        }
        (rel.is_some() || imp.is_some()).then_some((rel, imp))
    }

    /// The first milestone of this name, if any.
    pub fn milestone(&self, name: &str) -> Option<Timestamp> {
        self.milestones.iter().find(|(_, n)| n == name).map(|(t, _)| *t)
    }
}

/// Folds one account's CS events known at `as_of`. `convert` turns money into base minor
/// units; `moves` are this account's contacts seen later under other accounts.
pub(crate) fn fold(
    raw: &crate::bodies::Bodies,
    as_of: Timestamp,
    mut convert: impl FnMut(tenure_core::money::Money, Timestamp) -> i64,
    moves: &[(Timestamp, String, String)],
) -> CsLedger {
    let mut known: Vec<_> = raw.encoded().filter(|(ts, ..)| *ts <= as_of).collect();
    // Stable: log order breaks ties.
    known.sort_by_key(|(ts, ..)| *ts);
    let events =
        known.into_iter().map(|(ts, kind, bytes)| (ts, crate::bodies::decode(kind, bytes)));
    let mut cs = CsLedger::default();
    let mut tickets: BTreeMap<String, Ticket> = BTreeMap::new();
    let mut objectives: BTreeMap<String, Objective> = BTreeMap::new();
    let mut tasks: BTreeMap<String, Task> = BTreeMap::new();
    let mut roles: BTreeMap<String, Option<ContactRole>> = BTreeMap::new();
    for (ts, body) in events {
        match body {
            EventBody::Contact { contact_id, email, name, role, status } => {
                let known = roles.entry(contact_id.clone()).or_insert(None);
                if role.is_some() {
                    *known = role;
                }
                if status == Some(ContactStatus::Left) {
                    cs.departures.push(Departure {
                        ts,
                        contact_id: contact_id.clone(),
                        role: *known,
                        moved_to: None,
                    });
                }
                cs.contact_changes.push(ContactChange {
                    ts,
                    contact_id,
                    role,
                    status,
                    email,
                    name,
                });
            }
            EventBody::SurveySent { survey, contact_id } => {
                cs.surveys_sent.push((ts, survey, contact_id))
            }
            EventBody::SurveyResponse { survey, contact_id, score, comment } => {
                cs.responses.push(Response { ts, survey, contact_id, score, comment })
            }
            EventBody::Ticket { ticket_id, status, category, severity, cost, csat } => {
                let t = tickets
                    .entry(ticket_id.clone())
                    .or_insert_with(|| Ticket::opened(ticket_id, ts));
                match status {
                    TicketStatus::Closed => t.closed = Some(ts),
                    TicketStatus::Reopened => {
                        t.reopened += 1;
                        t.closed = None;
                    }
                    TicketStatus::Opened => {}
                }
                t.category = category.or(t.category);
                t.severity = severity.or(t.severity);
                if t.category_first.is_none() {
                    t.category_first = category.map(|c| (ts, c));
                }
                if t.severity_first.is_none() {
                    t.severity_first = severity.map(|s| (ts, s));
                }
                if let Some(c) = cost {
                    t.cost = Some(convert(c, ts));
                }
                t.csat = csat.or(t.csat);
            }
            EventBody::Touchpoint { kind, sentiment, .. } => {
                cs.touchpoints.push((ts, kind, sentiment))
            }
            EventBody::Milestone { name } => cs.milestones.push((ts, name)),
            EventBody::SuccessObjective { objective_id, status, value } => {
                let value = value.map(|v| convert(v, ts));
                let o = objectives.entry(objective_id.clone()).or_insert_with(|| Objective {
                    objective_id,
                    created: ts,
                    status,
                    status_at: ts,
                    value: None,
                });
                o.status = status;
                o.status_at = ts;
                o.value = value.or(o.value);
            }
            EventBody::Assessment { relationship, strategic_importance, .. } => {
                cs.assessments.push((ts, relationship, strategic_importance))
            }
            EventBody::ChangeRequest { request_id, status } => {
                cs.change_requests.push((ts, request_id, status))
            }
            EventBody::Alert { alert_id, rule, severity, message } => {
                cs.alerts.push(Alert { ts, alert_id, rule, severity, message })
            }
            EventBody::Task(c) => {
                let t = tasks.entry(c.task_id.clone()).or_insert_with(|| Task::new(&c.task_id, ts));
                t.apply(ts, *c);
            }
            EventBody::ForecastOverride { subscription_id, category, amount, reason, author } => {
                cs.forecast_calls.push(ForecastCall {
                    ts,
                    subscription_id,
                    category,
                    amount: amount.map(|m| convert(m, ts)),
                    reason,
                    author,
                })
            }
            _ => {}
        }
    }
    for (ts, contact_id, to) in moves.iter().filter(|m| m.0 <= as_of) {
        let role = roles.get(contact_id).copied().flatten();
        cs.departures.push(Departure {
            ts: *ts,
            contact_id: contact_id.clone(),
            role,
            moved_to: Some(to.clone()),
        });
    }
    cs.departures.sort_by_key(|d| d.ts);
    cs.tickets = tickets.into_values().collect();
    cs.tickets.sort_by_key(|t| t.opened);
    cs.objectives = objectives.into_values().collect();
    cs.objectives.sort_by_key(|o| o.created);
    cs.tasks = tasks.into_values().collect();
    cs.tasks.sort_by_key(|t| t.opened);
    cs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contacts as a map by id folded them before the borrowed fold: each change in
    /// turn, then the moves away in turn.
    fn by_map(cs: &CsLedger, t: Timestamp) -> Vec<Contact> {
        let mut map: BTreeMap<&str, Contact> = BTreeMap::new();
        for c in cs.contact_changes.iter().take_while(|c| c.ts < t) {
            let e = map.entry(&c.contact_id).or_insert_with(|| Contact {
                contact_id: c.contact_id.clone(),
                role: None,
                active: true,
                email: None,
                name: None,
                left_at: None,
            });
            if c.role.is_some() {
                e.role = c.role;
            }
            if c.email.is_some() {
                e.email.clone_from(&c.email);
            }
            if c.name.is_some() {
                e.name.clone_from(&c.name);
            }
            match c.status {
                Some(ContactStatus::Left) if e.active => {
                    e.active = false;
                    e.left_at = Some(c.ts);
                }
                Some(ContactStatus::Active) => {
                    e.active = true;
                    e.left_at = None;
                }
                _ => {}
            }
        }
        for d in cs.departures.iter().filter(|d| d.moved_to.is_some() && d.ts < t) {
            if let Some(e) = map.get_mut(d.contact_id.as_str())
                && e.active
            {
                e.active = false;
                e.left_at = Some(d.ts);
            }
        }
        map.into_values().collect()
    }

    /// Random histories of a few contacts (ids that sort apart from their first sighting,
    /// roles, leaving and coming back, emails and names, moves away, some of contacts never
    /// seen): the contacts at every instant are those of the map's fold.
    #[test]
    fn contacts_seen_are_the_maps_fold() {
        let mut seed = 11u64;
        let mut next = |n: u64| {
            // A linear congruential stream (Knuth's MMIX constants): what is drawn matters
            // little, that it is the same every run does.
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let roles = [None, Some(ContactRole::Champion), Some(ContactRole::Admin)];
        let statuses = [None, Some(ContactStatus::Active), Some(ContactStatus::Left)];
        for _ in 0..2000 {
            let mut cs = CsLedger::default();
            let mut ts = 0;
            for _ in 0..next(12) {
                ts += next(3) as i64;
                cs.contact_changes.push(ContactChange {
                    ts: Timestamp(ts),
                    contact_id: format!("c{}", 9 - next(5)),
                    role: roles[next(3) as usize],
                    status: statuses[next(3) as usize],
                    email: (next(2) == 0).then(|| format!("e{}", next(9))),
                    name: (next(3) == 0).then(|| format!("n{}", next(9))),
                });
            }
            let mut ts = 0;
            for _ in 0..next(4) {
                ts += next(6) as i64;
                cs.departures.push(Departure {
                    ts: Timestamp(ts),
                    contact_id: format!("c{}", 9 - next(6)),
                    role: None,
                    moved_to: (next(3) != 0).then(|| "elsewhere".to_string()),
                });
            }
            for t in 0..40 {
                let t = Timestamp(t);
                assert_eq!(cs.contacts_before(t), by_map(&cs, t), "{cs:?} at {t}");
            }
        }
    }
}
