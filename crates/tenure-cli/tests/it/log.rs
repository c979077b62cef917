//! The event log's durability as an operator meets it through the `tenure` binary: what
//! recovery did is printed by `import`, damage to acknowledged data stops commands with
//! the file and the offset, `tenure verify` finds it (exit 4) and `tenure repair` says what
//! it would drop, then drops it only with `--yes`, never while a writer runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tenure(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenure")).args(args).output().expect("run tenure")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn usage_lines(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            format!(
                r#"{{"type":"usage","timestamp":"2024-03-01T10:00:00Z","account_id":"a{}","user_id":"u{i}","event":"login","message_id":"m{i}"}}"#,
                i % 7
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn import(data: &Path, file: &Path) -> Output {
    tenure(&[
        "import",
        "--no-refresh",
        "--data",
        &data.display().to_string(),
        &file.display().to_string(),
    ])
}

fn last_usage_segment(data: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("log").join("usage"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

fn status_count(data: &Path) -> u64 {
    let o = tenure(&["status", "--data", &data.display().to_string()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("usage").map(|n| n.trim().parse().unwrap()))
        .unwrap_or(0)
}

#[test]
fn import_prints_what_recovery_cut_off() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let first = t.path().join("first.jsonl");
    std::fs::write(&first, usage_lines(0, 20)).unwrap();
    assert!(import(&data, &first).status.success());
    // A write that never completed: a partial record after the last commit record.
    let seg = last_usage_segment(&data);
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[7, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&seg, bytes).unwrap();
    let second = t.path().join("second.jsonl");
    std::fs::write(&second, usage_lines(20, 30)).unwrap();
    let o = import(&data, &second);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!("log recovery: {}: offset {len}: dropped 7 bytes", seg.display()))
            && err.contains("never acknowledged"),
        "{err}"
    );
    assert_eq!(status_count(&data), 30);
}

#[test]
fn damage_is_refused_found_by_verify_and_repaired_only_on_request() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let d = data.display().to_string();
    let file = t.path().join("usage.jsonl");
    std::fs::write(&file, usage_lines(0, 50)).unwrap();
    assert!(import(&data, &file).status.success());
    let o = tenure(&["verify", "--data", &d]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).is_empty());

    // A flipped byte in a committed record: the last one, which used to be cut off as a
    // "torn tail" and reported as never acknowledged.
    let seg = last_usage_segment(&data);
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 80 - 5;
    bytes[at] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    let more = t.path().join("more.jsonl");
    std::fs::write(&more, usage_lines(50, 60)).unwrap();
    let o = import(&data, &more);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains(&seg.display().to_string()) && err.contains("at offset"), "{err}");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "a refused open changes nothing");

    let o = tenure(&["verify", "--data", &d]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let line = out.lines().next().unwrap();
    assert!(line.starts_with(&format!("{}: offset ", seg.display())), "{out}");
    let o = tenure(&["verify", "--data", &d, "--format", "json"]);
    assert_eq!(o.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["problems"][0]["kind"], "corrupt");
    assert_eq!(v["problems"][0]["path"], seg.display().to_string());

    // The dry run says what it would drop, and changes nothing.
    let o = tenure(&["repair", "--data", &d]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains(&seg.display().to_string()) && out.contains("drop"), "{out}");
    assert!(text(&o.stderr).contains("run again with --yes"), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);

    // Never while a writer holds the log.
    {
        let lock = std::fs::File::open(data.join("log").join("LOCK")).unwrap();
        lock.try_lock().unwrap();
        let o = tenure(&["repair", "--data", &d, "--yes"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o.stderr).contains("in use"), "{}", text(&o.stderr));
        assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    }

    let o = tenure(&["repair", "--data", &d, "--yes"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(data.join("log").join("repair-dropped").join("usage").is_dir());
    let o = tenure(&["verify", "--data", &d]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(status_count(&data), 49, "the damaged record is gone, the rest is there");
    // Importing the source again restores what was dropped, each event once.
    assert!(import(&data, &file).status.success());
    assert!(import(&data, &more).status.success());
    assert_eq!(status_count(&data), 60);
}

/// `tenure sql` folds the ledger only for a query that reads one of its tables: with the
/// subscription lane damaged, a query of the usage still answers, and one of `accounts`
/// is refused, naming the damaged file.
#[test]
fn sql_folds_the_ledger_only_for_its_tables() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let d = data.display().to_string();
    let file = t.path().join("events.jsonl");
    let sub = r#"{"type":"subscription","timestamp":"2024-02-01T00:00:00Z","account_id":"a1","subscription_id":"s1","kind":"product","quantity":1,"amount":"50.00","currency":"USD","interval":"month","status":"active"}"#;
    std::fs::write(&file, format!("{}\n{sub}\n", usage_lines(0, 20))).unwrap();
    assert!(import(&data, &file).status.success());
    let q = |sql: &str| tenure(&["sql", "--data", &d, "--format", "csv", sql]);
    let o = q("SELECT count(*) AS n FROM accounts");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "n\n1\n");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(data.join("log").join("subscription"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let seg = segs.pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Inside the record: its subscription id.
    let at = bytes.windows(2).position(|w| w == b"s1").unwrap();
    bytes[at] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    let o = q("WITH accounts AS (SELECT 1 AS x) SELECT count(*) AS n FROM usage");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "n\n20\n");
    let o = q("SELECT u.account_id FROM usage u JOIN accounts a ON a.account_id = u.account_id");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains(&seg.display().to_string()), "{}", text(&o.stderr));
}
