//! The audit log: who changed what, when. What people change in the service is in the
//! event log with its author (task changes, forecast calls); changes to people and keys,
//! made on the command line while the service may hold the log, are appended to
//! `DATA/audit.jsonl`. [`audit`] reads both, oldest first; the service's own changes
//! (author `tenure`: the tasks its rules open) are not people's and are left out.

use crate::{EngineError, replay};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use tenure_core::event::{EventBody, EventKind};
use tenure_core::time::Timestamp;

/// One change by a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When, as the change was stamped.
    pub at: String,
    /// Who: a key's name, a person's email, or on the command line `cli:USER`.
    pub who: String,
    /// What: `task.status`, `task.assign`, `task.due` (snoozed or rescheduled), `task.note`,
    /// `forecast.call`, `user.add`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The task, contract, user or key changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub detail: String,
}

pub fn path(data: &Path) -> PathBuf {
    data.join("audit.jsonl")
}

/// Appends one change to `DATA/audit.jsonl`, durably (the file synced before returning).
pub fn record(data: &Path, e: &Entry) -> Result<(), EngineError> {
    let p = path(data);
    let io = |source| EngineError::Io { path: p.clone(), source };
    std::fs::create_dir_all(data).map_err(io)?;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(io)?;
    let line = serde_json::to_string(e).unwrap_or_default() + "\n";
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Every change by a person from `from` on (inclusive) to `to` (exclusive), oldest first.
/// A line of the audit file that does not parse is reported as an entry of its own
/// (`audit.unreadable`), never skipped silently.
pub fn audit(
    data: &Path,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
) -> Result<Vec<Entry>, EngineError> {
    let within = |t: Timestamp| from.is_none_or(|f| t >= f) && to.is_none_or(|x| t < x);
    let mut out: Vec<(Timestamp, Entry)> = Vec::new();
    replay(data, &[EventKind::Task, EventKind::ForecastOverride], |e| {
        if !within(e.ts) {
            return;
        }
        let account = e.account.clone();
        match e.body {
            EventBody::Task(c) => {
                let Some(who) = c.author.clone().filter(|a| a != "tenure") else { return };
                let mut parts = Vec::new();
                let mut action = "task.note";
                if let Some(s) = c.status {
                    parts.push(format!("status {}", s.as_str()));
                    action = "task.status";
                }
                if let Some(o) = &c.owner {
                    parts.push(format!("owner {o}"));
                    if c.status.is_none() {
                        action = "task.assign";
                    }
                }
                if let Some(d) = c.due {
                    parts.push(format!("due {}", d.date_string()));
                    if c.status.is_none() && c.owner.is_none() {
                        action = "task.due";
                    }
                }
                if let Some(r) = &c.root_cause {
                    parts.push(format!("root cause {r}"));
                }
                if let Some(n) = &c.note {
                    parts.push(format!("note {n:?}"));
                }
                let entry = Entry {
                    at: e.ts.to_string(),
                    who,
                    action: action.into(),
                    account,
                    target: Some(c.task_id.clone()),
                    detail: parts.join("; "),
                };
                out.push((e.ts, entry));
            }
            EventBody::ForecastOverride { subscription_id, category, amount, reason, author } => {
                let mut detail = category.as_str().to_string();
                if let Some(a) = amount {
                    detail += &format!(
                        "; amount {} {}",
                        tenure_core::money::format_minor(a.minor, a.currency),
                        a.currency
                    );
                }
                if let Some(r) = reason {
                    detail += &format!("; reason {r:?}");
                }
                let entry = Entry {
                    at: e.ts.to_string(),
                    who: author.unwrap_or_else(|| "unknown".into()),
                    action: "forecast.call".into(),
                    account,
                    target: subscription_id,
                    detail,
                };
                out.push((e.ts, entry));
            }
            _ => {}
        }
    })?;
    let p = path(data);
    match std::fs::read_to_string(&p) {
        Ok(text) => {
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                match serde_json::from_str::<Entry>(line) {
                    Ok(e) => {
                        let t = Timestamp::parse(&e.at).unwrap_or(Timestamp(0));
                        if within(t) {
                            out.push((t, e));
                        }
                    }
                    Err(err) => out.push((
                        Timestamp(0),
                        Entry {
                            at: String::new(),
                            who: String::new(),
                            action: "audit.unreadable".into(),
                            account: None,
                            target: Some(format!("{}:{}", p.display(), i + 1)),
                            detail: err.to_string(),
                        },
                    )),
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(EngineError::Io { path: p, source }),
    }
    // Stable: entries of one instant keep their order (the log's, then the file's).
    out.sort_by_key(|(t, _)| *t);
    Ok(out.into_iter().map(|(_, e)| e).collect())
}

/// The entries as CSV (`at,who,action,account,target,detail`). A cell that a spreadsheet
/// would read as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return)
/// is prefixed with `'`, so an exported note cannot run as one.
pub fn to_csv(entries: &[Entry]) -> String {
    fn cell(s: &str) -> String {
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    }
    let mut out = String::from("at,who,action,account,target,detail\n");
    for e in entries {
        let row = [
            e.at.as_str(),
            &e.who,
            &e.action,
            e.account.as_deref().unwrap_or(""),
            e.target.as_deref().unwrap_or(""),
            &e.detail,
        ];
        out += &row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_changes_are_read_back_with_the_logs_and_exported_safely() {
        let dir = tempfile::tempdir().unwrap();
        let lines = r#"
{"type":"task","timestamp":"2026-06-01T10:00:00Z","account_id":"acme","task_id":"t1","status":"open","rule":"detractor","author":"tenure"}
{"type":"task","timestamp":"2026-06-02T10:00:00Z","account_id":"acme","task_id":"t1","owner":"kim","author":"sam@acme.test"}
{"type":"task","timestamp":"2026-06-03T10:00:00Z","account_id":"acme","task_id":"t1","status":"done","root_cause":"price","note":"=HYPERLINK(\"x\")","author":"kim@acme.test"}
{"type":"forecast_override","timestamp":"2026-06-04T10:00:00Z","account_id":"acme","category":"at_risk","amount":"0","reason":"budget cut","author":"kim@acme.test"}
"#;
        let (mut imp, _) =
            crate::Importer::open(dir.path(), tenure_ingest::IngestConfig::defaults(None)).unwrap();
        imp.import(
            lines.trim().as_bytes(),
            crate::import::Format::Jsonl,
            None,
            &mut |r| panic!("{r:?}"),
            &mut |_| {},
        )
        .unwrap();
        drop(imp);
        let user = Entry {
            at: "2026-06-02T09:00:00Z".into(),
            who: "cli:root".into(),
            action: "user.add".into(),
            account: None,
            target: Some("kim@acme.test".into()),
            detail: "role csm".into(),
        };
        record(dir.path(), &user).unwrap();
        let all = audit(dir.path(), None, None).unwrap();
        let got: Vec<(&str, &str, &str)> =
            all.iter().map(|e| (e.at.as_str(), e.who.as_str(), e.action.as_str())).collect();
        assert_eq!(
            got,
            [
                ("2026-06-02T09:00:00Z", "cli:root", "user.add"),
                ("2026-06-02T10:00:00Z", "sam@acme.test", "task.assign"),
                ("2026-06-03T10:00:00Z", "kim@acme.test", "task.status"),
                ("2026-06-04T10:00:00Z", "kim@acme.test", "forecast.call"),
            ],
            "the service's own task (author tenure) is left out"
        );
        assert_eq!(all[2].detail, "status done; root cause price; note \"=HYPERLINK(\\\"x\\\")\"");
        assert_eq!(all[3].detail, "at_risk; amount 0.00 USD; reason \"budget cut\"");
        let from = Timestamp::parse("2026-06-03").unwrap();
        assert_eq!(audit(dir.path(), Some(from), None).unwrap().len(), 2);
        let csv = to_csv(&all[..1]);
        assert_eq!(
            csv,
            "at,who,action,account,target,detail\n2026-06-02T09:00:00Z,cli:root,user.add,,kim@acme.test,role csm\n"
        );
        let tricky = Entry { detail: "=1+1".into(), ..user.clone() };
        assert!(to_csv(&[tricky]).ends_with(",'=1+1\n"));
        // A damaged line is reported, not skipped.
        std::fs::write(path(dir.path()), "{not json\n").unwrap();
        let all = audit(dir.path(), None, None).unwrap();
        assert!(all.iter().any(|e| e.action == "audit.unreadable"), "{all:?}");
    }
}
