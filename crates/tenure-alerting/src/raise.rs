//! From firings to events: each firing becomes an `alert` event and a `task` event that
//! opens a task (from the rule's playbook) or updates the task already open for the same
//! account and rule. Pure: the caller stores the events, counts, logs and notifies.

use crate::live::Live;
use crate::rules::Firing;
use rustc_hash::FxHashMap;
use tenure_core::event::{Event, EventBody, TaskChange, TaskStatus};
use tenure_core::time::Timestamp;

/// Tasks raised that the live state may not have folded yet, by (account, rule): a task
/// raised moments ago is still on its way through the writer, so the next firing of the
/// same rule updates it rather than opening a second one. Kept by the caller across calls.
#[derive(Default)]
pub struct Pending(FxHashMap<(String, String), String>);

/// One firing, recorded: the events to store and what a notification says.
#[derive(Clone, Debug, PartialEq)]
pub struct Raised {
    /// The `alert` event.
    pub alert: Event,
    /// The `task` event: a new task, or an update of the open one.
    pub task: Event,
    /// Whether `task` opens a new task.
    pub opened: bool,
    pub alert_id: String,
    pub task_id: String,
    pub account_id: String,
    /// The account's name, when known.
    pub account_name: Option<String>,
    /// The rule's index in the live state's rules.
    pub rule: usize,
    pub message: String,
    /// The account's `csm` attribute at the instant.
    pub owner: Option<String>,
}

fn short_hash(parts: &[&str]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(parts.join("\u{1f}").as_bytes()))
}

/// Records each firing at `now` as an alert event and a task event (opened, or the open
/// one updated), in the order given. Ids are derived from the account, rule, instant and
/// message, so the same firing always gets the same ids (and a retried store deduplicates).
pub fn raise(
    live: &Live,
    fired: Vec<Firing>,
    now: Timestamp,
    pending: &mut Pending,
) -> Vec<Raised> {
    let mut out = Vec::with_capacity(fired.len());
    for f in fired {
        let rule = &live.rules.rules[f.rule];
        let stamp = now.0.to_string();
        let id = short_hash(&[&f.account, &rule.id, &stamp, &f.message]);
        let alert_id = format!("al_{id}");
        let alert = Event {
            ts: now,
            account: Some(f.account.clone()),
            message_id: Some(alert_id.clone()),
            body: EventBody::Alert {
                alert_id: alert_id.clone(),
                rule: rule.id.clone(),
                severity: rule.severity,
                message: Some(f.message.clone()),
            },
        };
        let a = live.ledger.account(&f.account);
        let owner = a.and_then(|a| a.attribute_at("csm", now)).map(|v| v.label());

        let key = (f.account.clone(), rule.id.clone());
        // A task raised moments ago may not be folded yet: remember it until it is.
        let open = pending
            .0
            .get(&key)
            .filter(|id| {
                a.and_then(|a| a.cs.tasks.iter().find(|t| &&t.task_id == id))
                    .is_none_or(|t| t.is_active())
            })
            .cloned()
            .or_else(|| {
                a?.cs
                    .tasks
                    .iter()
                    .rev()
                    .find(|t| t.rule.as_deref() == Some(rule.id.as_str()) && t.is_active())
                    .map(|t| t.task_id.clone())
            });
        let opened = open.is_none();
        let change = match open {
            Some(task_id) => TaskChange {
                task_id,
                alert_id: Some(alert_id.clone()),
                note: Some(format!("alerted again: {}", f.message)),
                author: Some("tenure".into()),
                ..TaskChange::default()
            },
            None => {
                let (title, due_days, steps) = live.rules.task_template(rule);
                let mut note = f.message.clone();
                for (i, s) in steps.iter().enumerate() {
                    note += &format!("\n{}. {s}", i + 1);
                }
                TaskChange {
                    task_id: format!("tk_{id}"),
                    status: Some(TaskStatus::Open),
                    rule: Some(rule.id.clone()),
                    alert_id: Some(alert_id.clone()),
                    title: Some(title),
                    owner: owner.clone(),
                    due: Some(now.add_days(due_days)),
                    note: Some(note),
                    root_cause: None,
                    author: Some("tenure".into()),
                }
            }
        };
        let task_id = change.task_id.clone();
        pending.0.insert(key, task_id.clone());
        let task = Event {
            ts: now,
            account: Some(f.account.clone()),
            message_id: Some(format!("{task_id}:{alert_id}")),
            body: EventBody::Task(Box::new(change)),
        };
        out.push(Raised {
            alert,
            task,
            opened,
            alert_id,
            task_id,
            account_name: a.and_then(|a| a.name.clone()),
            account_id: f.account,
            rule: f.rule,
            message: f.message,
            owner,
        });
    }
    out
}
