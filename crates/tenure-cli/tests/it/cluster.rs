//! The columnar side on an Apache DataFusion Ballista cluster: a scheduler and two executors
//! started as local processes (`tenure cluster`), and every usage figure and a set of SQL
//! queries checked against embedded DataFusion on the same data. Ballista has had
//! wrong-result bugs, so this cross-check is the cluster's spec.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn tenure(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenure")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> Vec<u8> {
    let o = tenure(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// `n` distinct free ports on 127.0.0.1 (held together while chosen, so no two are the same).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> =
        (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    held.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// The cluster's processes (and their logs), stopped when the test ends however it ends;
/// `done` tells the watchdog they are gone (their ids may be reused).
struct Nodes(Vec<(Child, PathBuf)>, Arc<AtomicBool>);

impl Nodes {
    /// Fails the test, with its log, if a node has stopped.
    fn check(&mut self) {
        for (c, log) in &mut self.0 {
            if let Ok(Some(status)) = c.try_wait() {
                let said = std::fs::read_to_string(&*log).unwrap_or_default();
                panic!("a cluster node stopped ({status}): {said}");
            }
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.1.store(true, Ordering::SeqCst);
        for (c, _) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn node(args: &[String], log: PathBuf) -> (Child, PathBuf) {
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .arg("cluster")
        .args(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    (child, log)
}

/// A generated company's JSONL files: (usage.jsonl, the others).
fn company(dir: &Path) -> (PathBuf, Vec<String>) {
    let out = dir.join("company");
    let o = out.display().to_string();
    ok(&[
        "gen",
        "--accounts",
        "300",
        "--months",
        "24",
        "--seed",
        "11",
        "--start",
        "2023-01",
        "--usage-events",
        "150000",
        "--out",
        &o,
    ]);
    let mut others = Vec::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "jsonl") && !p.ends_with("usage.jsonl") {
            others.push(p.display().to_string());
        }
    }
    others.sort();
    (out.join("usage.jsonl"), others)
}

/// `usage.jsonl` cut into `n` files by account (a file holds all of an account's events, so
/// identical events stay in one file and are numbered as in the whole), each spanning
/// every month: imported one after another, they give each month one file per import, and
/// the refresh compacts months of many files.
fn split_by_account(usage: &Path, n: usize, dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(usage).unwrap();
    let paths: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("usage-{i}.jsonl"))).collect();
    let mut files: Vec<_> = paths.iter().map(|p| std::fs::File::create(p).unwrap()).collect();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        let account = v["account_id"].as_str().unwrap();
        let h = account.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        writeln!(files[h % n], "{line}").unwrap();
    }
    paths.iter().map(|p| p.display().to_string()).collect()
}

#[test]
fn a_ballista_cluster_gives_the_embedded_figures() {
    let t = tempfile::tempdir().unwrap();
    let (usage, others) = company(t.path());

    // The cluster: a scheduler and two executors, each with its own shuffle directory.
    let ports = free_ports(5);
    let sched = ports[0];
    let at = format!("df://127.0.0.1:{sched}");
    let mut nodes = Nodes(Vec::new(), Arc::new(AtomicBool::new(false)));
    nodes.0.push(node(
        &[
            "scheduler".into(),
            "--bind".into(),
            format!("127.0.0.1:{sched}"),
            // Tasks to both executors in turn: shuffles cross processes.
            "--task-distribution".into(),
            "round-robin".into(),
        ],
        t.path().join("scheduler.log"),
    ));
    let mut work = Vec::new();
    for i in 0..2 {
        let w = t.path().join(format!("executor-{i}"));
        std::fs::create_dir_all(&w).unwrap();
        nodes.0.push(node(
            &[
                "executor".into(),
                "--scheduler".into(),
                at.clone(),
                "--port".into(),
                ports[1 + 2 * i].to_string(),
                "--grpc-port".into(),
                ports[2 + 2 * i].to_string(),
                "--cores".into(),
                "2".into(),
                "--work-dir".into(),
                w.display().to_string(),
            ],
            t.path().join(format!("executor-{i}.log")),
        ));
        work.push(w);
    }
    // A job stalled on the cluster must fail the test, not hang CI: past ten minutes the
    // nodes are killed, and every clustered command still waiting fails.
    let pids: Vec<String> = nodes.0.iter().map(|(c, _)| c.id().to_string()).collect();
    let done = Arc::clone(&nodes.1);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(600));
        if !done.load(Ordering::SeqCst) {
            let _ = Command::new("kill").arg("-9").args(&pids).status();
        }
    });
    let cluster = t.path().join("cluster.toml");
    // Four partitions: the cluster's cores (two executors of two).
    std::fs::write(&cluster, format!("[cluster]\nscheduler = \"{at}\"\npartitions = 4\n")).unwrap();
    let local = t.path().join("local.toml");
    std::fs::write(&local, "").unwrap();
    let (cluster, local) = (cluster.display().to_string(), local.display().to_string());

    // Embedded: everything imported at once, rollups and queries in this process.
    let e = t.path().join("embedded").display().to_string();
    let mut args = vec!["import", "--data", &e, "--config", &local];
    let usage_s = usage.display().to_string();
    args.extend(others.iter().map(String::as_str));
    args.push(&usage_s);
    ok(&args);

    // Clustered: the cluster is ready once both executors have registered, which shows as
    // both running tasks of a query of many partitions (each keeps a directory per job).
    let c = t.path().join("clustered").display().to_string();
    let ran_tasks = |w: &PathBuf| std::fs::read_dir(w).map(|d| d.count()).unwrap_or(0) > 0;
    let started = Instant::now();
    let spread = "SELECT feature, count(*) AS n FROM usage_daily GROUP BY 1";
    loop {
        let o = tenure(&["sql", "--data", &e, "--config", &cluster, "--timeout", "20s", spread]);
        if o.status.success() && work.iter().all(ran_tasks) {
            break;
        }
        nodes.check();
        if started.elapsed() > Duration::from_secs(90) {
            let logs: Vec<String> = nodes
                .0
                .iter()
                .map(|(_, log)| std::fs::read_to_string(log).unwrap_or_default())
                .collect();
            panic!(
                "the cluster's two executors did not both run tasks within 90 s: {}\n{}",
                String::from_utf8_lossy(&o.stderr),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // The same events, usage in nine imports: each refresh's compactions and monthly
    // rollups run on the cluster.
    let mut args = vec!["import", "--data", &c, "--config", &cluster];
    args.extend(others.iter().map(String::as_str));
    ok(&args);
    // Where each import's records end in the usage lane.
    let mut ends = Vec::new();
    for part in split_by_account(&usage, 9, t.path()) {
        let o = tenure(&["import", "--data", &c, "--config", &cluster, &part]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let said = String::from_utf8_lossy(&o.stderr).to_string();
        let stored: u64 = said
            .split(" stored")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count stored in: {said}"));
        ends.push(ends.last().copied().unwrap_or(0) + stored);
    }
    // A month compacted on the cluster has a file whose records span more than one import.
    let daily = Path::new(&c).join("columnar/usage_daily");
    let compacted = std::fs::read_dir(&daily)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            let (a, b) = n.strip_suffix(".parquet")?.split('.').nth(1)?.split_once('-')?;
            Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
        })
        .filter(|(a, b)| ends.iter().any(|e| a < e && e < b))
        .count();
    assert!(compacted > 0, "no month of usage_daily was compacted on the cluster ({ends:?})");

    // Every usage KPI, the usage trend of one account, and health (which reads the monthly
    // usage) the same on the cluster as embedded, on data whose rollups were built either way.
    let as_of = "2025-01-01T00:00:00Z";
    // `--replay` computes the usage figures on the engine configured (a report otherwise
    // reads the figures of closed periods saved by an earlier one, whichever engine).
    let kpi = |data: &str, config: &str, replay: bool| {
        let mut args = vec![
            "kpi",
            "--data",
            data,
            "--config",
            config,
            "--kpis",
            "usage",
            "--period",
            "2024-01..2025-01",
            "--every",
            "month",
            "--format",
            "json",
            "--as-of",
            as_of,
        ];
        if replay {
            args.push("--replay");
        }
        ok(&args)
    };
    let embedded = kpi(&e, &local, true);
    let v: Value = serde_json::from_slice(&embedded).unwrap();
    assert!(v.to_string().contains("\"mau\""), "usage KPIs are reported: {v}");
    assert_eq!(kpi(&c, &cluster, true), embedded, "usage KPIs: the cluster against embedded");
    assert_eq!(kpi(&c, &local, true), embedded, "usage KPIs: rollups built on the cluster");
    // Saved by the cluster, then read.
    assert_eq!(kpi(&c, &cluster, false), embedded, "usage KPIs: computed and saved");
    assert_eq!(kpi(&c, &cluster, false), embedded, "usage KPIs: read as saved");
    let health = |data: &str, config: &str| {
        ok(&["health", "--data", data, "--config", config, "--format", "json", "--as-of", as_of])
    };
    let h = health(&e, &local);
    assert_eq!(health(&c, &cluster), h, "health from the cluster's monthly usage");
    let sql = |data: &str, config: &str, q: &str| {
        ok(&["sql", "--data", data, "--config", config, "--format", "json", "--as-of", as_of, q])
    };
    let one: Value =
        serde_json::from_slice(&sql(&e, &local, "SELECT min(account_id) AS a FROM usage")).unwrap();
    let one = one[0]["a"].as_str().unwrap().to_string();
    let account = |data: &str, config: &str| {
        ok(&[
            "account", "--data", data, "--config", config, "--format", "json", "--as-of", as_of,
            &one,
        ])
    };
    assert_eq!(account(&c, &cluster), account(&e, &local), "one account's usage");

    // SQL: scans, groupings, distinct counts, a window, a join with a table of the ledger
    // (which lives in the client's memory and travels as a file).
    for q in [
        "SELECT count(*) AS n, count(DISTINCT account_id) AS accounts, \
         count(DISTINCT user_id) AS users FROM usage",
        "SELECT account_id, feature, CAST(sum(events) AS BIGINT) AS events, \
         min(day) AS first, max(day) AS last FROM usage_daily GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT feature, min(first_day) AS first, max(last_day) AS last, \
         CAST(sum(events) AS BIGINT) AS events FROM usage_features GROUP BY 1 ORDER BY 1",
        "SELECT month, account_id, users, rank() OVER (PARTITION BY month ORDER BY users DESC, \
         account_id) AS r FROM (SELECT month, account_id, count(DISTINCT user_id) AS users \
         FROM usage_daily GROUP BY 1, 2) ORDER BY month, r",
        "SELECT m.kind, count(*) AS movements, count(u.account_id) AS with_usage \
         FROM mrr_movements m LEFT JOIN (SELECT DISTINCT account_id FROM usage) u \
         ON m.account_id = u.account_id GROUP BY m.kind ORDER BY m.kind",
        "SELECT section, count(*) AS visits FROM web_visits GROUP BY 1 ORDER BY 1",
        "SELECT action, count(*) AS n, count(DISTINCT contact_id) AS contacts FROM emails \
         GROUP BY 1 ORDER BY 1",
    ] {
        let here = sql(&e, &local, q);
        let rows: Value = serde_json::from_slice(&here).unwrap();
        assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{q}: no rows");
        assert_eq!(sql(&c, &cluster, q), here, "{q}");
    }
    // Tables written for the cluster are gone once the query is.
    let scratch = Path::new(&c).join("columnar/scratch");
    let left = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "scratch tables left behind");
    // Export reads through the cluster too.
    let lake = |name: &str, data: &str, config: &str| {
        let out = t.path().join(name).display().to_string();
        let args = ["export", "--data", data, "--config", config, "--out", &out, "--as-of", as_of];
        let o = tenure(&args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        // "TABLE ROWS rows -> PATH" per table
        let said = String::from_utf8_lossy(&o.stderr).to_string();
        let tables: Vec<(String, String)> = said
            .lines()
            .filter_map(|l| l.split_once(" -> ").map(|(t, _)| t.split_whitespace()))
            .map(|mut w| (w.next().unwrap().to_string(), w.next().unwrap().to_string()))
            .collect();
        assert!(tables.len() > 5 && tables.iter().any(|(t, n)| t == "usage" && n != "0"), "{said}");
        tables
    };
    assert_eq!(lake("lake-c", &c, &cluster), lake("lake-e", &e, &local), "export");

    // A late usage event of a saved month: the month is computed again on the cluster (a
    // cluster computes the whole period where this process computes the late event's
    // account alone); the same as a fresh computation.
    let late = t.path().join("late.jsonl");
    std::fs::write(
        &late,
        format!(
            "{{\"type\":\"usage\",\"timestamp\":\"2024-06-15T10:00:00Z\",\"account_id\":\"{one}\",\"user_id\":\"a-late-user\",\"event\":\"export\",\"feature\":\"reports\"}}\n"
        ),
    )
    .unwrap();
    ok(&["import", "--data", &c, "--config", &cluster, &late.display().to_string()]);
    let fresh = kpi(&c, &local, true);
    assert_ne!(fresh, embedded, "the late event changes June's figures");
    assert_eq!(kpi(&c, &cluster, false), fresh, "usage KPIs: a late event's account");

    // A query past its time limit stops with exit 5.
    let slow = "SELECT count(*) FROM usage a, usage b WHERE a.quantity + b.quantity < 0";
    let o = tenure(&["sql", "--data", &c, "--config", &cluster, "--timeout", "2s", slow]);
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));

    // Without its scheduler, a clustered command fails and says so: never a silent fallback
    // to this process.
    drop(nodes);
    let o = tenure(&["sql", "--data", &c, "--config", &cluster, "--timeout", "30s", "SELECT 1"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("cluster at {at} did not run")), "names the scheduler: {err}");
}
