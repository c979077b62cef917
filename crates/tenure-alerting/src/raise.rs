//! From firings to events: each firing becomes an `alert` event and a `task` event that
//! opens a task (from the rule's playbook) or updates the task already open for the same
//! account and rule. Pure: the caller stores the events, counts, logs and notifies.
//!
//! A *digest* instead of a flood: when one evaluation (the first start, a bulk import)
//! would open more than a cap of new tasks for one rule, that rule's new firings are
//! recorded as alerts only, no task each; [`digests`] finds them again in the ledger.

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
    /// The `task` event: a new task, or an update of the open one; `None` when the firing
    /// went into a digest.
    pub task: Option<Event>,
    /// Whether `task` opens a new task.
    pub opened: bool,
    pub alert_id: String,
    pub task_id: Option<String>,
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
/// message, or, for a firing of a record ([`Firing::source`]), from the account, rule and
/// record: so the same firing always gets the same ids, and a store that already holds
/// them (a retry, a record evaluated again after a crash) keeps the first.
/// With `cap`, a rule whose firings would open more than `cap` new tasks opens none: its
/// new firings are alerts only (a digest).
pub fn raise(
    live: &Live,
    fired: Vec<Firing>,
    now: Timestamp,
    pending: &mut Pending,
    cap: Option<usize>,
) -> Vec<Raised> {
    let open_task = |pending: &Pending, account: &str, rule: &str| -> Option<String> {
        let a = live.ledger.account(account);
        pending
            .0
            .get(&(account.to_string(), rule.to_string()))
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
                    .find(|t| t.rule.as_deref() == Some(rule) && t.is_active())
                    .map(|t| t.task_id.clone())
            })
    };
    // The rules that would open more than `cap` tasks at once.
    let mut digested = rustc_hash::FxHashSet::default();
    if let Some(cap) = cap {
        let mut new: FxHashMap<usize, usize> = FxHashMap::default();
        for f in &fired {
            if open_task(pending, &f.account, &live.rules.rules[f.rule].id).is_none() {
                *new.entry(f.rule).or_default() += 1;
            }
        }
        digested.extend(new.into_iter().filter(|(_, n)| *n > cap).map(|(r, _)| r));
    }
    let mut out = Vec::with_capacity(fired.len());
    for f in fired {
        let rule = &live.rules.rules[f.rule];
        let id = match &f.source {
            Some(record) => short_hash(&[&f.account, &rule.id, "record", record]),
            None => short_hash(&[&f.account, &rule.id, &now.0.to_string(), &f.message]),
        };
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
        let open = open_task(pending, &f.account, &rule.id);
        if open.is_none() && digested.contains(&f.rule) {
            out.push(Raised {
                alert,
                task: None,
                opened: false,
                alert_id,
                task_id: None,
                account_name: a.and_then(|a| a.name.clone()),
                account_id: f.account,
                rule: f.rule,
                message: f.message,
                owner,
            });
            continue;
        }
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
                // Due before the account's next open renewal when that comes sooner (but not
                // before tomorrow): work on an account about to renew cannot wait.
                let mut due = now.add_days(due_days);
                if let Some(r) = a.and_then(|a| a.next_renewal(now)) {
                    due = due.min(r).max(now.add_days(1));
                }
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
                    due: Some(due),
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
            task: Some(task),
            opened,
            alert_id,
            task_id: Some(task_id),
            account_name: a.and_then(|a| a.name.clone()),
            account_id: f.account,
            rule: f.rule,
            message: f.message,
            owner,
        });
    }
    out
}

/// Alerts recorded without a task of their own (a digest): for each (rule, instant) at
/// which more than one account was alerted and none of them got a task from it, the
/// accounts, in id order, newest digest first. Derived from the ledger, so it survives a
/// restart: an alert is in a digest while its account has no task of its rule opened at or
/// after its instant, nor one it touched (an open task it updated).
pub fn digests<'a>(
    accounts: impl Iterator<Item = &'a tenure_ledger::AccountLedger>,
) -> Vec<Digest> {
    let mut by: std::collections::BTreeMap<(Timestamp, String), Vec<String>> = Default::default();
    for a in accounts {
        for al in &a.cs.alerts {
            let tasked = a.cs.tasks.iter().any(|t| {
                t.rule.as_deref() == Some(al.rule.as_str())
                    && (t.opened >= al.ts || t.notes.iter().any(|n| n.0 == al.ts))
            });
            if !tasked {
                by.entry((al.ts, al.rule.clone())).or_default().push(a.id.clone());
            }
        }
    }
    by.into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((at, rule), accounts)| Digest { at, rule, accounts })
        .rev()
        .collect()
}

/// Alerts of one rule at one instant recorded without tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub at: Timestamp,
    pub rule: String,
    pub accounts: Vec<String>,
}
