//! The daily digest per person: once a day, at `[service] daily_digest_hour` (UTC), each
//! CSM, manager and admin gets their new and overdue work (the open tasks of the accounts
//! in their book) through the notifiers that take digests (`digests = true`, optionally
//! only some `people`'s). Composing is pure ([`compose`]); the thread here only schedules,
//! and remembers the last digest sent in DATA/daily-digest.json so that a restart never
//! sends one twice.

use crate::notify::{Digest, DigestTask};
use crate::users::{Principal, Role, User};
use crate::{Core, log};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use tenure_alerting::Live;
use tenure_core::time::{DAY, Timestamp};

/// Tasks listed per section of a digest (the totals count them all).
pub const LISTED: usize = 20;

/// The digests of `users` at `now`: tasks opened after `since` (up to `now`) and open tasks
/// due before `now`'s day, on the accounts of each person's book (an admin's: the accounts
/// they own). People with nothing new or overdue get none; viewers and disabled people
/// none.
pub fn compose(
    live: &Live,
    users: &[User],
    owner_key: &str,
    since: Timestamp,
    now: Timestamp,
    public_url: Option<&str>,
) -> Vec<Digest> {
    let today = Timestamp(now.day() * DAY);
    let base = public_url.map(|u| u.trim_end_matches('/').to_string());
    // The accounts with open work and their owners, once: people are few, accounts many.
    let at = Timestamp(now.0 + 1);
    let with_work: Vec<_> = live
        .ledger
        .accounts
        .iter()
        .filter(|a| a.cs.tasks.iter().any(|t| t.is_active()))
        .map(|a| (a, crate::api::attr(a, owner_key, at)))
        .collect();
    let mut out = Vec::new();
    for u in users.iter().filter(|u| !u.disabled) {
        let book = match u.role {
            Role::Viewer => continue,
            Role::Admin => Principal::Owners(u.names().collect()),
            Role::Csm | Role::Manager => Principal::of(u, users),
        };
        let mut new: Vec<(Timestamp, DigestTask)> = Vec::new();
        let mut overdue: Vec<(Timestamp, DigestTask)> = Vec::new();
        for (a, _) in with_work.iter().filter(|(_, o)| book.sees(o.as_deref())) {
            for t in a.cs.tasks.iter().filter(|t| t.is_active()) {
                let item = || DigestTask {
                    task_id: t.task_id.clone(),
                    account_id: a.id.clone(),
                    account_name: a.name.clone(),
                    title: t.title.clone(),
                    rule: t.rule.clone(),
                    due: t.due.map(|d| d.date_string()),
                    link: base.as_ref().map(|b| format!("{b}/accounts/{}", a.id)),
                };
                if t.opened > since && t.opened <= now {
                    new.push((t.opened, item()));
                }
                if let Some(d) = t.due.filter(|d| *d < today) {
                    overdue.push((d, item()));
                }
            }
        }
        if new.is_empty() && overdue.is_empty() {
            continue;
        }
        // Newest work first; the longest overdue first; ties by task id, for a stable order.
        new.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.task_id.cmp(&b.1.task_id)));
        overdue.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.task_id.cmp(&b.1.task_id)));
        let (new_total, overdue_total) = (new.len(), overdue.len());
        out.push(Digest {
            person: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().to_string(),
            day: now.date_string(),
            new: new.into_iter().take(LISTED).map(|x| x.1).collect(),
            new_total,
            overdue: overdue.into_iter().take(LISTED).map(|x| x.1).collect(),
            overdue_total,
            ts: now.to_string(),
            link: base.as_ref().map(|b| format!("{b}/inbox")),
        });
    }
    out
}

/// The latest instant at or before `now` at `hour` o'clock UTC: when the digest due by
/// `now` was.
pub fn due_at(now: Timestamp, hour: u8) -> Timestamp {
    let at = Timestamp(now.day() * DAY + i64::from(hour) * 3_600_000_000);
    if at <= now { at } else { Timestamp(at.0 - DAY) }
}

fn state_path(data: &Path) -> PathBuf {
    data.join("daily-digest.json")
}

/// When the last digest was sent (its due instant), from DATA/daily-digest.json.
fn last_sent(data: &Path) -> Option<Timestamp> {
    let text = std::fs::read_to_string(state_path(data)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Timestamp::parse(v.get("last_due")?.as_str()?).ok()
}

/// Records a digest as sent: written whole to a temporary file and renamed, so a crash
/// leaves the old record or the new one.
fn record_sent(data: &Path, due: Timestamp) -> std::io::Result<()> {
    let tmp = data.join("daily-digest.json.tmp");
    std::fs::write(&tmp, format!("{}\n", json!({"last_due": due.to_string()})))?;
    std::fs::rename(&tmp, state_path(data))
}

/// The thread's handle: dropping it stops the thread.
pub(crate) struct DailyDigest {
    _stop: Option<Sender<()>>,
}

/// What the thread needs besides the core.
pub(crate) struct Setup {
    pub data: PathBuf,
    pub keys: Arc<crate::keys::KeyStore>,
    pub owner_key: String,
    /// `None`: no digests.
    pub hour: Option<u8>,
    /// Between checks of the clock (a minute; tests shorten it).
    pub poll: Duration,
}

/// Starts the thread (nothing when digests are off).
pub(crate) fn start(core: Arc<Core>, setup: Setup) -> DailyDigest {
    let Some(hour) = setup.hour else { return DailyDigest { _stop: None } };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("daily-digest".into())
        .spawn(move || run(&core, &setup, hour, &rx));
    if let Err(e) = spawned {
        log("error", "the daily digest could not start", json!({"error": e.to_string()}));
    }
    DailyDigest { _stop: Some(tx) }
}

fn run(core: &Core, setup: &Setup, hour: u8, rx: &Receiver<()>) {
    let mut last = last_sent(&setup.data);
    loop {
        // The first check waits a poll too: the evaluation at start records its tasks first.
        if !matches!(rx.recv_timeout(setup.poll), Err(RecvTimeoutError::Timeout)) {
            return;
        }
        // Not before the applier's work at start is done: a state read from its snapshot
        // lacks what its tail in the log holds (tasks opened before a crash or by an import
        // while the service was down) until its history is in and every account refreshed.
        if !core.started.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let now = (core.clock)();
        let due = due_at(now, hour);
        if last.is_some_and(|l| l >= due) {
            continue;
        }
        let takes = core
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|d| d.takes_digests());
        // Without a notifier that takes digests there is nothing to send, or to record.
        if !takes {
            continue;
        }
        // New since the last digest; on the first ever, the day before.
        let since = last.unwrap_or(Timestamp(due.0 - DAY));
        let keys = setup.keys.get();
        let digests = {
            let live = core.live.read().unwrap_or_else(|p| p.into_inner());
            compose(&live, &keys.users, &setup.owner_key, since, now, core.public_url.as_deref())
        };
        let n = digests.len();
        if let Some(d) = core.dispatcher.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            for x in digests {
                d.send_digest(x);
            }
        }
        log("info", "daily digests sent", json!({"people": n, "due": due.to_string()}));
        last = Some(due);
        if let Err(e) = record_sent(&setup.data, due) {
            log(
                "error",
                "the daily digest's record could not be written: a restart may send it again",
                json!({"error": e.to_string()}),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_due_is_the_last_hour_passed() {
        let t = |s: &str| Timestamp::parse(s).unwrap();
        assert_eq!(due_at(t("2026-06-15T09:30:00Z"), 8), t("2026-06-15T08:00:00Z"));
        assert_eq!(due_at(t("2026-06-15T08:00:00Z"), 8), t("2026-06-15T08:00:00Z"));
        assert_eq!(due_at(t("2026-06-15T07:59:59Z"), 8), t("2026-06-14T08:00:00Z"));
        assert_eq!(due_at(t("2026-01-01T00:10:00Z"), 0), t("2026-01-01T00:00:00Z"));
        assert_eq!(due_at(t("2026-01-01T00:10:00Z"), 23), t("2025-12-31T23:00:00Z"));
    }

    #[test]
    fn the_record_of_the_last_digest_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_sent(dir.path()), None);
        let t = Timestamp::parse("2026-06-15T08:00:00Z").unwrap();
        record_sent(dir.path(), t).unwrap();
        assert_eq!(last_sent(dir.path()), Some(t));
        std::fs::write(state_path(dir.path()), "{not json").unwrap();
        assert_eq!(last_sent(dir.path()), None, "a damaged record is not trusted");
    }
}
