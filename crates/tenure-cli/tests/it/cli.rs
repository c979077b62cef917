//! End-to-end tests of the `tenure` binary: files in, reports out, as a user runs it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tenure"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run tenure")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text.trim_start()).unwrap();
    p
}

fn import(data: &Path, files: &[PathBuf]) -> Output {
    let mut args = vec!["import".to_string(), "--data".into(), data.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    bin().args(&args).output().unwrap()
}

/// Writes JSONL lines to `dir/NAME.jsonl`, imports them into `dir/NAME`, returns that data dir.
fn import_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let file = write(dir, &format!("{name}.jsonl"), &lines.join("\n"));
    let data = dir.join(name);
    let o = import(&data, &[file]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    data
}

fn kpi_json(data: &Path, period: &str, extra: &[&str]) -> Value {
    let d = data.display().to_string();
    let mut args =
        vec!["kpi", "--data", &d, "--period", period, "--format", "json", "--as-of", "2030-01-01"];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "kpi failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn f(v: &Value, id: &str) -> f64 {
    v["kpis"][id].as_f64().unwrap_or_else(|| panic!("{id} is {:?}", v["kpis"][id]))
}

/// `n` annual contracts `PREFIX{i}` with terms `[start, due)` then `[due, next)`: the first
/// `won` renew at `renewed_at` (a follow-on term starts), the others cancel at `lost_at`.
fn contracts(
    prefix: &str,
    n: usize,
    won: usize,
    [start, due, next]: [&str; 3],
    renewed_at: &str,
    lost_at: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let term = format!(r#","term_start":"{start}","term_end":"{due}""#);
        lines.push(sub_line(start, &id, &id, "1200", "year", &term));
        if i < won {
            let next = format!(r#","term_start":"{due}","term_end":"{next}""#);
            lines.push(sub_line(renewed_at, &id, &id, "1200", "year", &next));
        } else {
            lines.push(format!(
                r#"{{"type":"subscription","timestamp":"{lost_at}","account_id":"{id}","subscription_id":"{id}","status":"canceled"}}"#
            ));
        }
    }
    lines
}

fn sub_line(
    ts: &str,
    account: &str,
    id: &str,
    amount: &str,
    interval: &str,
    extra: &str,
) -> String {
    format!(
        r#"{{"type":"subscription","timestamp":"{ts}","account_id":"{account}","subscription_id":"{id}","amount":"{amount}","interval":"{interval}","status":"active"{extra}}}"#
    )
}

#[test]
fn recurring_revenue_rate_and_net_expansion_examples() {
    let t = tempfile::tempdir().unwrap();
    // RRR: start 100; added 50 (45 new customers, 5 expansion); lost 30 (25 churn, 5 downgrade); end 120.
    let csv = "account_id,timestamp,subscription_id,amount,status,interval\n\
        a,2024-01-01,a,50,active,month\nb,2024-01-01,b,25,active,month\nc,2024-01-01,c,25,active,month\n\
        a,2024-02-05,a,55,active,month\nb,2024-02-06,b,20,active,month\nc,2024-02-07,c,,canceled,month\n\
        d,2024-02-08,d,45,active,month\n";
    let subs = write(t.path(), "subscriptions.csv", csv);
    let data = t.path().join("data");
    let o = import(&data, &[subs]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = kpi_json(&data, "2024-02", &[]);
    assert_eq!(r["period"]["start"], "2024-02-01T00:00:00Z");
    assert_eq!(r["period"]["end"], "2024-03-01T00:00:00Z");
    assert_eq!(f(&r, "recurring_revenue_rate"), 1.2);
    assert_eq!((f(&r, "mrr_start"), f(&r, "mrr_end")), (100.0, 120.0));
    assert_eq!(
        (f(&r, "mrr_new"), f(&r, "mrr_expansion"), f(&r, "mrr_churn"), f(&r, "mrr_contraction")),
        (45.0, 5.0, 25.0, 5.0)
    );

    // Net expansion: 1.5m start, 1.8m end, 0.2m from new customers -> 0.1m.
    let t2 = tempfile::tempdir().unwrap();
    let mut lines = vec![];
    for i in 0..15 {
        lines.push(sub_line(
            "2024-01-01",
            &format!("old{i}"),
            &format!("o{i}"),
            "100000",
            "month",
            "",
        ));
    }
    lines.push(sub_line("2024-04-15", "old0", "o0", "200000", "month", ""));
    for i in 0..2 {
        lines.push(sub_line(
            "2024-05-01",
            &format!("new{i}"),
            &format!("n{i}"),
            "100000",
            "month",
            "",
        ));
    }
    let file = write(t2.path(), "subs.jsonl", &lines.join("\n"));
    let data = t2.path().join("data");
    assert!(import(&data, &[file]).status.success());
    let r = kpi_json(&data, "2024-Q2", &[]);
    assert_eq!(
        (f(&r, "mrr_start"), f(&r, "mrr_end"), f(&r, "mrr_new")),
        (1_500_000.0, 1_800_000.0, 200_000.0)
    );
    assert_eq!(f(&r, "expansion_net"), 100_000.0);
    assert_eq!(f(&r, "arr_end"), 21_600_000.0);
}

#[test]
fn churn_renewal_and_renewed_arr_examples() {
    let t = tempfile::tempdir().unwrap();
    let mut lines = vec![];
    // 1,200 subscribers at the start of June, 24 leave in June -> 2%.
    for i in 0..1200 {
        lines.push(sub_line("2024-05-01", &format!("m{i}"), &format!("m{i}"), "10", "month", ""));
        if i < 24 {
            lines.push(format!(r#"{{"type":"subscription","timestamp":"2024-06-{:02}","account_id":"m{i}","subscription_id":"m{i}","status":"canceled"}}"#, 1 + i % 28));
        }
    }
    let churn_data = import_lines(t.path(), "churn", &std::mem::take(&mut lines));
    // Renewals: 100 annual contracts due in 2023-Q3, 90 renewed (a follow-on term starts);
    // 18 renewal opportunities in 2022-Q4, 16 won.
    lines.extend(contracts(
        "r",
        100,
        90,
        ["2022-08-01", "2023-08-01", "2024-08-01"],
        "2023-07-20",
        "2023-08-01",
    ));
    lines.extend(contracts(
        "q",
        18,
        16,
        ["2021-11-01", "2022-11-01", "2023-11-01"],
        "2022-11-01",
        "2022-10-15",
    ));
    let renewal_data = import_lines(t.path(), "renewals", &std::mem::take(&mut lines));
    // Quarterly renewed ARR: ARR 1.5m at the start of 2025-Q2, 1.49m of it still there at the end.
    for i in 0..15 {
        lines.push(sub_line(
            "2025-01-01",
            &format!("big{i}"),
            &format!("b{i}"),
            "100000",
            "year",
            "",
        ));
    }
    lines.push(sub_line("2025-05-01", "big0", "b0", "90000", "year", ""));
    lines.push(sub_line("2025-05-02", "big1", "b1", "150000", "year", ""));
    let arr_data = import_lines(t.path(), "arr", &lines);

    let june = kpi_json(&churn_data, "2024-06", &[]);
    assert_eq!(f(&june, "customers_start"), 1200.0);
    assert_eq!(f(&june, "customers_churned"), 24.0);
    assert_eq!(f(&june, "logo_churn_rate"), 0.02);
    let ci = june["kpis"]["logo_churn_rate_ci95"].as_array().unwrap();
    // statsmodels proportion_confint(24, 1200, method="wilson")
    assert!((ci[0].as_f64().unwrap() - 0.013_476_268_672_128).abs() < 1e-9);
    assert!((ci[1].as_f64().unwrap() - 0.029_587_091_906_497).abs() < 1e-9);

    let q3 = kpi_json(&renewal_data, "2023-Q3", &[]);
    assert_eq!(
        (f(&q3, "renewals_due"), f(&q3, "renewals_won"), f(&q3, "renewals_lost")),
        (100.0, 90.0, 10.0)
    );
    assert_eq!(f(&q3, "contract_renewal_rate"), 0.9);
    let d = renewal_data.display().to_string();
    let o = run(&[
        "renewals",
        "--data",
        &d,
        "--period",
        "2023-Q3",
        "--format",
        "json",
        "--as-of",
        "2030-01-01",
    ]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 100);
    assert_eq!(list.iter().filter(|r| r["outcome"] == "won").count(), 90);
    assert_eq!(list[0]["due"], "2023-08-01T00:00:00Z");
    assert_eq!(list[0]["arr_due"], 1200.0);
    let q4 = kpi_json(&renewal_data, "2022-Q4", &[]);
    assert_eq!((f(&q4, "renewals_due"), f(&q4, "renewals_won")), (18.0, 16.0));
    assert!((f(&q4, "contract_renewal_rate") - 0.8889).abs() < 5e-5);
    assert_eq!(f(&q4, "contract_renewal_rate"), 16.0 / 18.0);

    let q2 = kpi_json(&arr_data, "2025-Q2", &[]);
    assert_eq!(f(&q2, "arr_start"), 1_500_000.0);
    assert_eq!(f(&q2, "arr_end"), 1_490_000.0 + 50_000.0);
    assert!((f(&q2, "renewed_arr_rate") - 0.9933).abs() < 5e-5);
    assert_eq!(f(&q2, "renewed_arr_rate"), 1_490_000.0 / 1_500_000.0);
}

#[test]
fn segment_cuts_and_series_are_lists_that_sum_to_the_total() {
    let t = tempfile::tempdir().unwrap();
    let accounts = "account_id,timestamp,name,attributes.region\na,2024-01-01,A,emea\nb,2024-01-01,B,na\nc,2024-01-01,C,emea\n";
    let a = write(t.path(), "accounts.csv", accounts);
    let lines = [
        sub_line("2024-01-05", "a", "a", "100", "month", ""),
        sub_line("2024-01-06", "b", "b", "200", "month", ""),
        sub_line("2024-02-10", "c", "c", "300", "month", ""),
        sub_line("2024-03-10", "a", "a", "150", "month", ""),
        sub_line("2024-02-01", "z", "z", "50", "month", ""),
    ];
    let s = write(t.path(), "subscriptions.jsonl", &lines.join("\n"));
    let data = t.path().join("data");
    assert!(import(&data, &[a, s]).status.success());
    let by = kpi_json(&data, "2024-Q1", &["--by", "region"]);
    let rows = by.as_array().unwrap();
    let segs: Vec<&Value> = rows.iter().map(|r| &r["segment"]).collect();
    assert_eq!(segs, [&Value::from("emea"), &Value::from("na"), &Value::Null]);
    assert_eq!(rows.iter().map(|r| f(r, "mrr_end")).sum::<f64>(), 700.0);
    assert_eq!(f(&rows[0], "mrr_end"), 450.0);
    // One row per account: per-account expansion.
    let per_account = kpi_json(&data, "2024-Q1", &["--by", "account"]);
    let rows = per_account.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["segment"], "a");
    assert_eq!((f(&rows[0], "mrr_new"), f(&rows[0], "upsell")), (100.0, 50.0));
    let series = kpi_json(&data, "2024-01..2024-04", &["--every", "month"]);
    let months: Vec<f64> = series.as_array().unwrap().iter().map(|r| f(r, "mrr_end")).collect();
    assert_eq!(months, [300.0, 650.0, 700.0]);
    // CSV: one line per period.
    let d = data.display().to_string();
    let o = run(&[
        "kpi",
        "--data",
        &d,
        "--period",
        "2024-01..2024-04",
        "--every",
        "month",
        "--format",
        "csv",
        "--as-of",
        "2030-01-01",
    ]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.starts_with("period_start,period_end,mrr_start,mrr_end,"));
    // Cohorts by month.
    let o = run(&[
        "cohorts",
        "--data",
        &d,
        "--by",
        "month",
        "--metric",
        "logo",
        "--format",
        "json",
        "--as-of",
        "2024-06-01",
    ]);
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["cohorts"][0]["cohort"], "2024-01");
    assert_eq!(c["cohorts"][0]["accounts"], 2);
}

#[test]
fn bad_rows_are_reported_and_good_rows_kept() {
    let t = tempfile::tempdir().unwrap();
    let text = r#"
{"type":"ticket","timestamp":"2024-03-01","account_id":"a","ticket_id":"t1","status":"opened"}
{"type":"ticket","timestamp":"2024-03-01","account_id":"a","ticket_id":"t2","status":"lost"}
not json
{"type":"ticket","timestamp":"2024-03-02","account_id":"a","ticket_id":"t3","status":"closed","csat":9}
"#;
    let file = write(t.path(), "tickets.jsonl", text);
    let data = t.path().join("data");
    let o = import(&data, std::slice::from_ref(&file));
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    let name = file.display().to_string();
    assert!(
        err.contains(&format!(
            "{name}:2: status: unknown value \"lost\" (expected opened | closed | reopened)"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{name}:3: malformed JSON")), "{err}");
    assert!(err.contains("2 stored, 0 already present, 2 rejected"), "{err}");
    // Re-import: nothing new, the same rejections.
    let o = import(&data, &[file]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 stored, 2 already present, 2 rejected"));
    let d = data.display().to_string();
    let o = run(&["status", "--data", &d]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("ticket"));
    // Standard input, with the type given on the command line.
    let mut child = bin()
        .args(["import", "--data", &d, "--type", "milestone", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"{\"timestamp\":\"2024-03-05\",\"account_id\":\"a\",\"name\":\"first_value\"}\n",
        )
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stdin: 1 stored"));
    // Usage errors exit 2.
    assert_eq!(run(&["kpi", "--data", &d, "--period", "2024-Q7"]).status.code(), Some(2));
    assert_eq!(run(&["kpi", "--data", &d]).status.code(), Some(2));
    assert_eq!(
        run(&["import", "--data", &d, "--type", "purchase", "x.csv"]).status.code(),
        Some(2)
    );
    let o = run(&["import", "--data", &d, "no-such-file.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-file.jsonl: no such file"));
    let o = run(&["cohorts", "--data", "/nonexistent/tenure"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Decodes the usage lane: user id -> how many times it is stored.
fn stored_users(data: &Path) -> std::collections::HashMap<String, u32> {
    let reader = tenure_log::LogReader::open(&data.join("log")).unwrap();
    let mut seen = std::collections::HashMap::new();
    for (_, payload) in reader.read_lane("usage").unwrap() {
        let e = tenure_core::codec::decode(&payload).unwrap();
        if let tenure_core::event::EventBody::Usage { user_id, .. } = e.body {
            *seen.entry(user_id).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn kill_9_during_import_loses_no_acknowledged_event() {
    let t = tempfile::tempdir().unwrap();
    let n = 300_000;
    let path = t.path().join("usage.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..n {
        // Half the events carry a message_id; the others are identified by their content.
        let mid = if i % 2 == 0 { format!(r#","message_id":"m{i}""#) } else { String::new() };
        writeln!(w, r#"{{"type":"usage","timestamp":"2024-03-01T10:00:00Z","account_id":"acct-{}","user_id":"u{i}","event":"report_viewed"{mid}}}"#, i % 977).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let data = t.path().join("data");
    let mut child = bin()
        .args([
            "import",
            "--acks",
            "--data",
            &data.display().to_string(),
            &path.display().to_string(),
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
            break;
        }
    }
    // SIGKILL: no destructor, no flush, the process just stops mid-import.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked > 0 && acked < n,
        "killed after {acked} of {n} lines were acknowledged; make the file larger"
    );
    let seen = stored_users(&data);
    for i in 0..acked {
        assert_eq!(
            seen.get(&format!("u{i}")),
            Some(&1),
            "acknowledged line {} is missing or duplicated",
            i + 1
        );
    }
    assert!(seen.values().all(|c| *c == 1));
    // Importing the same file again completes it: every event exactly once.
    let o = import(&data, &[path]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let seen = stored_users(&data);
    assert_eq!(seen.len() as u64, n);
    assert!(seen.values().all(|c| *c == 1));
}

#[test]
fn generated_csv_and_jsonl_companies_give_the_same_report() {
    let t = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    for format in ["jsonl", "csv"] {
        let out = t.path().join(format);
        let o = run(&[
            "gen",
            "--accounts",
            "120",
            "--months",
            "14",
            "--seed",
            "5",
            "--start",
            "2023-01",
            "--format",
            format,
            "--out",
            &out.display().to_string(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == format)
                    && !p.display().to_string().contains("truth")
            })
            .collect();
        files.sort();
        assert_eq!(files.len(), 15, "{files:?}");
        let data = t.path().join(format!("data-{format}"));
        let o = import(&data, &files);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        reports.push(kpi_json(
            &data,
            "2023-01..2024-03",
            &["--every", "quarter", "--by", "segment"],
        ));
    }
    assert_eq!(reports[0], reports[1]);
    let rows = reports[0].as_array().unwrap();
    assert!(rows.iter().any(|r| f(r, "mrr_new") > 0.0));
    assert!(rows.iter().any(|r| f(r, "mrr_churn") > 0.0));
    // A file that is not events at all is rejected whole, and the import says so.
    let o = import(&t.path().join("x"), &[t.path().join("csv").join("truth.csv")]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("truth.csv: rejected: the CSV has no `type` column")
    );
}

#[test]
fn account_view_nps_and_the_full_catalogue_on_a_generated_company() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("co");
    let o = run(&[
        "gen",
        "--accounts",
        "80",
        "--months",
        "12",
        "--seed",
        "9",
        "--start",
        "2023-01",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success());
    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    let data = t.path().join("data");
    assert!(import(&data, &files).status.success());
    let d = data.display().to_string();
    // Every KPI of the catalogue, revenue and customer success, in one report.
    let k = kpi_json(&data, "2023-07..2024-01", &[]);
    for id in [
        "mrr_end",
        "nps",
        "nps_promoters",
        "nps_passives",
        "nps_detractors",
        "csat",
        "survey_response_rate",
        "tickets",
        "defect_share",
        "engagement_rate",
        "onboarding_completion_rate",
        "time_to_value_days",
        "success_plan_realization",
        "contact_coverage_champion",
        "key_contacts_departed",
        "service_attach_rate",
        "license_utilization",
        "mau",
        "wau",
        "dau",
        "stickiness",
        "mau_change",
        "email_open_rate",
        "email_click_rate",
        "docs_visits",
        "website_visits",
    ] {
        assert!(k["kpis"].get(id).is_some(), "{id} missing");
    }
    let open = f(&k, "email_open_rate");
    assert!(open > 0.0 && open <= 1.0 && f(&k, "email_click_rate") <= open, "{open}");
    assert!(f(&k, "tickets") > 0.0 && f(&k, "nps_responses") > 0.0);
    let nps = f(&k, "nps");
    assert!((-100.0..=100.0).contains(&nps));
    // --kpis revenue leaves the CS ids out.
    let r = kpi_json(&data, "2023-07..2024-01", &["--kpis", "revenue"]);
    assert!(r["kpis"].get("nps").is_none() && r["kpis"].get("mrr_end").is_some());
    assert_eq!(r["kpis"]["mrr_end"], k["kpis"]["mrr_end"]);
    // NPS with its migration.
    let o = run(&[
        "nps",
        "--data",
        &d,
        "--period",
        "2023-07..2024-01",
        "--migration",
        "--format",
        "json",
        "--as-of",
        "2030-01-01",
    ]);
    let n: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(n["nps"], k["kpis"]["nps"]);
    assert!(n["contacts"]["promoter"]["detractor"].is_u64());
    // One account's view.
    let o = run(&[
        "account",
        "--data",
        &d,
        "acc-000001",
        "--format",
        "json",
        "--as-of",
        "2030-01-01",
        "--period",
        "2023-01..2024-01",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(a["account_id"], "acc-000001");
    assert!(!a["movements"].as_array().unwrap().is_empty());
    assert!(!a["contacts"].as_array().unwrap().is_empty());
    assert_eq!(a["kpis"]["segment"], "acc-000001");
    // Its usage trend: twelve months, the latest ending with the period.
    let trend = a["usage_trend"].as_array().unwrap();
    assert_eq!(trend.len(), 12);
    assert!(trend.iter().any(|m| m["events"].as_u64().unwrap() > 0), "{trend:?}");
    assert!(a["kpis"]["kpis"]["mau"].as_u64().is_some(), "{}", a["kpis"]);
    let o = run(&["account", "--data", &d, "no-such-account"]);
    assert_eq!(o.status.code(), Some(2));
    // Usage KPIs come from the columnar store, which SQL reads too.
    assert!(f(&k, "mau") > 0.0);
    let lu = f(&k, "license_utilization");
    assert!(lu > 0.0 && lu < 5.0, "{lu}");
    let o = run(&["sql", "--data", &d, "--format", "json", "SELECT count(*) AS n FROM usage"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(rows[0]["n"].as_u64().unwrap() > 0);
    let o = run(&[
        "sql",
        "--data",
        &d,
        "--format",
        "csv",
        "SELECT kind, count(*) AS n FROM mrr_movements GROUP BY kind ORDER BY kind",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("kind,n\n"));
    let o = run(&["sql", "--data", &d, "DROP TABLE usage"]);
    assert_eq!(o.status.code(), Some(2));
    let lake = t.path().join("lake");
    let o =
        run(&["export", "--data", &d, "--format", "parquet", "--out", &lake.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for table in [
        "usage",
        "usage_daily",
        "accounts",
        "subscriptions",
        "mrr_movements",
        "tickets",
        "survey_responses",
        "contacts",
    ] {
        assert!(lake.join(format!("{table}.parquet")).exists(), "{table}");
    }
}

#[test]
fn many_small_imports_give_the_same_report_as_one() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("co");
    let o = run(&[
        "gen",
        "--accounts",
        "60",
        "--months",
        "8",
        "--seed",
        "3",
        "--start",
        "2023-01",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let one = t.path().join("one");
    assert!(import(&one, &files).status.success());

    // The high-volume files arrive in slices, a report (which refreshes the columnar store,
    // in a new process each time) after each.
    let many = t.path().join("many");
    let (big, small): (Vec<PathBuf>, Vec<PathBuf>) = files.iter().cloned().partition(|p| {
        let n = p.file_name().unwrap().to_string_lossy().to_string();
        n.starts_with("usage") || n.starts_with("email") || n.starts_with("web_visit")
    });
    assert_eq!(big.len(), 3, "{big:?}");
    assert!(import(&many, &small).status.success());
    for f in &big {
        let text = std::fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, part) in lines.chunks(lines.len().div_ceil(4)).enumerate() {
            let name = format!("{}.{i}.jsonl", f.file_stem().unwrap().to_string_lossy());
            let p = write(t.path(), &name, &part.join("\n"));
            let o = import(&many, &[p]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            kpi_json(&many, "2023-06", &[]);
        }
    }
    let a = kpi_json(&one, "2023-03..2023-09", &["--every", "month", "--by", "segment"]);
    let b = kpi_json(&many, "2023-03..2023-09", &["--every", "month", "--by", "segment"]);
    assert_eq!(a, b);
    assert!(a.as_array().unwrap().iter().any(|r| f(r, "mau") > 0.0));
}

#[test]
fn demo_prints_the_whole_catalogue() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("demo");
    let o = run(&[
        "demo",
        "--accounts",
        "60",
        "--months",
        "8",
        "--no-serve",
        "--data",
        &d.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    for id in ["mrr_end", "nrr", "nps", "tickets", "mau", "license_utilization", "email_open_rate"]
    {
        assert!(text.lines().any(|l| l.starts_with(&format!("{id} "))), "{id} missing:\n{text}");
    }
    // The data stays where asked, ready for the other commands.
    assert!(d.join("log").is_dir() && d.join("columnar").is_dir());
}

/// Issue 13, defect 1: `{"timestamp":"1600-01-01"...}` was accepted, then every columnar
/// refresh failed and usage reports silently stopped counting. It is now refused with its
/// reason, and the reports go on counting the rest.
#[test]
fn an_event_outside_the_supported_range_is_refused_and_usage_still_counts() {
    let t = tempfile::tempdir().unwrap();
    let text = r#"
{"type":"usage","timestamp":"1600-01-01","account_id":"a","user_id":"u","event":"e"}
{"type":"usage","timestamp":"2024-03-10T10:00:00Z","account_id":"a","user_id":"u1","event":"e"}
{"type":"usage","timestamp":"2300-01-01","account_id":"a","user_id":"u","event":"e"}
{"type":"usage","timestamp":"2024-03-11T10:00:00Z","account_id":"a","user_id":"u2","event":"e"}
"#;
    let file = write(t.path(), "usage.jsonl", text);
    let data = t.path().join("data");
    let o = import(&data, std::slice::from_ref(&file));
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    let name = file.display().to_string();
    assert!(
        err.contains(&format!(
            "{name}:1: timestamp: 1600-01-01T00:00:00Z is outside the supported range \
             1900-01-01T00:00:00Z..2200-01-01T00:00:00Z"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:3: timestamp: 2300-01-01T00:00:00Z is outside")),
        "{err}"
    );
    assert!(err.contains("2 stored, 0 already present, 2 rejected"), "{err}");
    let d = data.display().to_string();
    let o = run(&["sql", "--data", &d, "--format", "csv", "SELECT count(*) AS n FROM usage"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().last(), Some("2"));
}

/// `tenure sql` stops a query past its time or memory limit with exit 5 and says which
/// limit to raise; bad limits are usage errors (exit 2); within limits, it answers.
#[test]
fn sql_queries_are_stopped_past_their_time_and_memory_limits() {
    let t = tempfile::tempdir().unwrap();
    let line = r#"{"type":"usage","timestamp":"2024-03-10T10:00:00Z","account_id":"a","user_id":"u1","event":"e"}"#;
    let file = write(t.path(), "usage.jsonl", line);
    let data = t.path().join("data");
    assert!(import(&data, &[file]).status.success());
    let d = data.display().to_string();
    // Billions of rows to count: far past a 200 ms limit.
    let slow = "SELECT count(*) AS n FROM range(0, 100000000000)";
    let o = run(&["sql", "--data", &d, "--timeout", "200ms", slow]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("time limit") && err.contains("--timeout"), "{err}");
    // Ten million groups cannot be held in 1 MiB.
    let big = "SELECT value AS k, count(*) AS n FROM range(0, 10000000) GROUP BY value ORDER BY n DESC LIMIT 1";
    let o = run(&["sql", "--data", &d, "--memory-limit", "1MiB", big]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("memory") && err.contains("--memory-limit"), "{err}");
    for bad in [["--timeout", "soon"], ["--memory-limit", "lots"], ["--memory-limit", "5XB"]] {
        let o = run(&["sql", "--data", &d, bad[0], bad[1], "SELECT 1"]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let o = run(&[
        "sql",
        "--data",
        &d,
        "--format",
        "csv",
        "--timeout",
        "1m",
        "--memory-limit",
        "256MiB",
        "SELECT count(*) AS n FROM range(0, 1000)",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().last(), Some("1000"));
}

/// A lane's stored events, one a line (`TIMESTAMP ACCOUNT BODY`), sorted.
fn stored_events(data: &Path, lane: &str) -> Vec<String> {
    let reader = tenure_log::LogReader::open(&data.join("log")).unwrap();
    let mut out: Vec<String> = reader
        .read_lane(lane)
        .unwrap()
        .into_iter()
        .map(|(_, payload)| {
            let e = tenure_core::codec::decode(&payload).unwrap();
            format!("{} {} {:?}", e.ts, e.account.unwrap_or_default(), e.body)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn import_through_a_shipped_mapping_or_a_mapping_file() {
    let t = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tenure-ingest/tests/fixtures/mappings/hubspot-companies.csv");
    let file = fixtures.display().to_string();
    let data = t.path().join("data");
    let d = data.display().to_string();

    let o = run(&["import", "--data", &d, "--map", "hubspot-companies", &file]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "{file}:6: timestamp (column \"Create Date\"): cannot parse \"31/02/2024 10:00\" \
             with formats %Y-%m-%d %H:%M or %Y-%m-%d %H:%M:%S or %Y-%m-%d"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}:7: account_id (column \"Record ID\"): missing required field"
        )),
        "{err}"
    );
    assert!(err.contains("4 stored, 0 already present, 2 rejected"), "{err}");
    let accounts = stored_events(&data, "account");
    assert_eq!(accounts.len(), 4, "{accounts:#?}");
    assert_eq!(
        accounts[0],
        "2023-06-01T08:00:00Z 8836126340 Account { name: Some(\"Borealis Health\"), attributes: \
         [(\"city\", Str(\"Toronto\")), (\"country\", Str(\"Canada\")), (\"csm\", Str(\"Sam Ortiz\")), \
         (\"employees\", Str(\"1200\")), (\"industry\", Str(\"Hospital & Health Care\")), \
         (\"lifecycle_stage\", Str(\"Customer\"))] }"
    );
    // The same export again stores nothing new.
    let o = run(&["import", "--data", &d, "--map", "hubspot-companies", &file]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 stored, 4 already present, 2 rejected"));

    // A mapping file of the user's own, named by a relative path: a helpdesk's CSV with
    // semicolons, day-first local dates and its own priority and state names.
    write(
        t.path(),
        "my.toml",
        r#"
type = "ticket"
[input]
delimiter = ";"
utc_offset = "+01:00"
[fields]
account_id = "Customer"
ticket_id = "Ticket #"
timestamp = { from = "Opened", format = "%d/%m/%Y %H:%M" }
status = { from = "State", map = { "Open" = "opened", "Waiting" = "opened", "Resolved" = "closed" } }
severity = { from = "Priority", default = "normal", map = { "P1" = "urgent", "P2" = "high", "P4" = "low" } }
"#,
    );
    write(
        t.path(),
        "helpdesk.csv",
        "Ticket #;Customer;Opened;State;Priority\n\
         T-1;8836126339;04/03/2024 09:15;Open;P1\n\
         T-2;8836126340;05/03/2024 17:00;Resolved;P3\n",
    );
    let o = bin()
        .current_dir(t.path())
        .args(["import", "--data", &d, "--map", "./my.toml", "helpdesk.csv"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stored_events(&data, "ticket"),
        [
            "2024-03-04T08:15:00Z 8836126339 Ticket { ticket_id: \"T-1\", status: Opened, \
             category: None, severity: Some(Urgent), cost: None, csat: None }",
            "2024-03-05T16:00:00Z 8836126340 Ticket { ticket_id: \"T-2\", status: Closed, \
             category: None, severity: Some(Normal), cost: None, csat: None }",
        ]
    );

    // An export lacking a mapped column is rejected whole (exit 3), and says which column.
    write(
        t.path(),
        "other.csv",
        "Ticket #;Client;Opened;State;Priority\nT-3;x;01/03/2024 10:00;Open;P1\n",
    );
    let o = bin()
        .current_dir(t.path())
        .args(["import", "--data", &d, "--map", "./my.toml", "other.csv"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("other.csv: rejected: the CSV header has no column \"Customer\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A mistake in the mapping, or a mapping that does not exist, is a usage error (exit 2)
    // naming the file and line; nothing is imported.
    write(
        t.path(),
        "bad.toml",
        "type = \"ticket\"\n[fields]\naccount_id = \"Customer\"\nseverty = \"Priority\"\n",
    );
    let o = bin()
        .current_dir(t.path())
        .args(["import", "--data", &d, "--map", "./bad.toml", "helpdesk.csv"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("./bad.toml:4: unknown contract field \"severty\""),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["import", "--data", &d, "--map", "hubspot-deals", &file]);
    assert_eq!(o.status.code(), Some(2));
    // The mapping names the event type: --type beside it is a usage error.
    let o =
        run(&["import", "--data", &d, "--map", "hubspot-companies", "--type", "account", &file]);
    assert_eq!(o.status.code(), Some(2));

    // The shipped mappings, one a line with what they read.
    let o = run(&["import", "--map", "list"]);
    assert_eq!(o.status.code(), Some(0));
    let list = String::from_utf8_lossy(&o.stdout);
    for name in [
        "hubspot-companies",
        "hubspot-contacts",
        "salesforce-accounts",
        "salesforce-contacts",
        "zendesk-tickets",
        "delighted-responses",
    ] {
        assert!(list.lines().any(|l| l.starts_with(&format!("{name}  "))), "{name}: {list}");
    }
}

/// Writes columns as a Parquet file (the parquet crate's writer, as a producer would).
fn write_parquet(path: &Path, columns: Vec<(&str, Vec<Option<&str>>)>) {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let columns = columns
        .into_iter()
        .map(|(name, v)| (name, std::sync::Arc::new(StringArray::from(v)) as ArrayRef));
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A Parquet file is imported by its `.parquet` suffix, and by its magic number whatever
/// its name; named as text explicitly, it is refused in one line, not read as text.
#[test]
fn parquet_files_are_imported_by_suffix_and_by_magic_number() {
    let t = tempfile::tempdir().unwrap();
    let usage = t.path().join("usage.parquet");
    write_parquet(
        &usage,
        vec![
            ("account_id", vec![Some("a"), Some("a"), Some("b")]),
            (
                "timestamp",
                vec![Some("2024-03-10T10:00:00Z"), Some("2024-03-10"), Some("2024-03-11")],
            ),
            ("user_id", vec![Some("u1"), Some("u2"), Some("u3")]),
            ("event", vec![Some("login"), Some("login"), Some("export")]),
            ("quantity", vec![None, Some("-1"), Some("2.5")]),
        ],
    );
    // Tickets with their type in a column, in a file named as JSONL.
    let tickets = t.path().join("tickets.jsonl");
    write_parquet(
        &tickets,
        vec![
            ("type", vec![Some("ticket"), Some("ticket")]),
            ("timestamp", vec![Some("2024-03-01"), Some("2024-03-02")]),
            ("account_id", vec![Some("a"), Some("b")]),
            ("ticket_id", vec![Some("t1"), Some("t2")]),
            ("status", vec![Some("opened"), Some("closed")]),
        ],
    );
    let data = t.path().join("data");
    let o = import(&data, &[usage.clone(), tickets.clone()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let (u, k) = (usage.display().to_string(), tickets.display().to_string());
    assert!(err.contains(&format!("{u}:2: quantity: must not be negative, got -1\n")), "{err}");
    assert!(err.contains(&format!("{u}: 2 stored, 0 already present, 1 rejected")), "{err}");
    assert!(err.contains(&format!("{k}: 2 stored, 0 already present, 0 rejected")), "{err}");
    let d = data.display().to_string();
    let o = run(&[
        "sql",
        "--data",
        &d,
        "--format",
        "csv",
        "SELECT account_id, user_id, feature, quantity, ts FROM usage ORDER BY user_id",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("a,u1,login,1.0,2024-03-10T10:00:00"), "{out}");
    assert!(rows[1].starts_with("b,u3,export,2.5,2024-03-11T00:00:00"), "{out}");
    let reader = tenure_log::LogReader::open(&data.join("log")).unwrap();
    let stored: Vec<String> = reader
        .read_lane("ticket")
        .unwrap()
        .into_iter()
        .map(|(_, p)| {
            let e = tenure_core::codec::decode(&p).unwrap();
            format!("{} {} {:?}", e.ts, e.account.unwrap_or_default(), e.body)
        })
        .collect();
    assert_eq!(
        stored,
        [
            "2024-03-01T00:00:00Z a Ticket { ticket_id: \"t1\", status: Opened, category: None, severity: None, cost: None, csat: None }",
            "2024-03-02T00:00:00Z b Ticket { ticket_id: \"t2\", status: Closed, category: None, severity: None, cost: None, csat: None }",
        ]
    );
    // Again: nothing new.
    let o = import(&data, std::slice::from_ref(&tickets));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 stored, 2 already present, 0 rejected"));
    // Read as text on request: refused in one line, and nothing else is said about it.
    let o = run(&["import", "--data", &d, "--from", "jsonl", &k]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("{k}: rejected: this is a Parquet file; use --from parquet\n")
    );
    let o = run(&["import", "--data", &d, "--from", "csv", &u]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rejected: this is a Parquet file"));
    // Text named as Parquet: the file is refused whole, the others are still imported.
    let text = write(t.path(), "more.parquet", "{\"type\":\"usage\"}\n");
    let milestone = write(
        t.path(),
        "milestones.jsonl",
        r#"{"timestamp":"2024-03-05","account_id":"a","name":"first_value"}"#,
    );
    let o = import(&data, &[text.clone(), milestone]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}: rejected: not a readable Parquet file", text.display())),
        "{err}"
    );
    assert!(err.contains("milestones.jsonl: 1 stored"), "{err}");
}

#[test]
fn explain_traces_a_figure_to_its_accounts_movements_and_events() {
    let t = tempfile::tempdir().unwrap();
    let accounts = "account_id,timestamp,name,attributes.region\na,2024-01-01,A,emea\nb,2024-01-01,B,na\nc,2024-01-01,C,emea\n";
    let a = write(t.path(), "accounts.csv", accounts);
    // Subscription lane positions 0..4 in this order; three events carry a message id.
    let lines = [
        sub_line("2024-01-05", "a", "a", "100", "month", r#","message_id":"a-start""#),
        sub_line("2024-01-06", "b", "b", "200", "month", ""),
        sub_line("2024-02-10", "c", "c", "300", "month", r#","message_id":"c-start""#),
        sub_line("2024-03-10", "a", "a", "150", "month", ""),
        r#"{"type":"subscription","timestamp":"2024-03-20","account_id":"b","subscription_id":"b","status":"canceled","message_id":"b-end"}"#.to_string(),
    ];
    let s = write(t.path(), "subscriptions.jsonl", &lines.join("\n"));
    let data = t.path().join("data");
    assert!(import(&data, &[a, s]).status.success());
    let d = data.display().to_string();
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--data", &d, "--as-of", "2030-01-01"];
        args.extend_from_slice(extra);
        run(&args)
    };
    let json = |extra: &[&str]| -> Value {
        let mut args = extra.to_vec();
        args.extend(["--format", "json"]);
        let o = explain(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };

    let churn = json(&["--kpi", "mrr_churn", "--period", "2024-03"]);
    assert_eq!((churn["figure"].as_f64(), churn["total"].as_f64()), (Some(200.0), Some(200.0)));
    assert_eq!(churn["balanced"], true);
    let b = &churn["accounts"][0];
    assert_eq!((&b["account"], &b["name"]), (&Value::from("b"), &Value::from("B")));
    let src = &b["movements"][0]["sources"][0];
    assert_eq!(src["ref"], "b-end");
    assert_eq!(src["message_id"], "b-end");
    assert_eq!(src["position"], 4);
    assert_eq!(src["status"], "canceled");
    assert_eq!(src["subscription_id"], "b");

    // A segment's end MRR: a (150) and c (300); a's MRR built by its start and an upsell,
    // the latter named by its log position.
    let emea = json(&["--kpi", "mrr_end", "--period", "2024-Q1", "--by", "region=emea"]);
    assert_eq!(emea["total"].as_f64(), Some(450.0));
    assert_eq!(
        emea["figure"].as_f64(),
        kpi_json(&data, "2024-Q1", &["--by", "region"])[0]["kpis"]["mrr_end"].as_f64()
    );
    let accounts: Vec<&Value> =
        emea["accounts"].as_array().unwrap().iter().map(|a| &a["account"]).collect();
    assert_eq!(accounts, ["c", "a"]);
    let a_moves = emea["accounts"][1]["movements"].as_array().unwrap();
    assert_eq!(a_moves.len(), 2);
    assert_eq!(a_moves[0]["sources"][0]["ref"], "a-start");
    let up = &a_moves[1]["sources"][0];
    assert_eq!(
        (&up["ref"], &up["ts"], &up["amount"]),
        (
            &Value::from("log:subscription:3"),
            &Value::from("2024-03-10T00:00:00Z"),
            &Value::from(150.0)
        )
    );

    // CSV: one row per movement, the amounts sum to the figure.
    let o = explain(&[
        "--kpi",
        "mrr_end",
        "--period",
        "2024-Q1",
        "--by",
        "region=emea",
        "--format",
        "csv",
    ]);
    let text = String::from_utf8(o.stdout).unwrap();
    let sum: f64 =
        text.lines().skip(1).map(|l| l.split(',').nth(5).unwrap().parse::<f64>().unwrap()).sum();
    assert_eq!(sum, 450.0);
    // The table ends with the check.
    let o = explain(&["--kpi", "mrr_expansion", "--period", "2024-Q1", "--account", "a"]);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("log:subscription:3: subscription 2024-03-10T00:00:00Z"), "{text}");
    assert!(
        text.trim_end().ends_with("total 50.00 over 1 account = mrr_expansion 50.00"),
        "{text}"
    );

    // An unknown KPI is a usage error naming those that can be explained.
    let o = explain(&["--kpi", "nrr", "--period", "2024-03"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mrr_churn"));
}

/// `tenure user`: people added with a role and a password read from standard input, listed
/// without secrets, changed, given a token, disabled; bad input is a usage error (exit 2).
#[test]
fn people_are_added_listed_changed_and_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let with_stdin = |args: &[&str], input: &str| -> Output {
        let mut c = bin()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let add = [
        "user",
        "add",
        "--data",
        &data,
        "--name",
        "Sam Lee",
        "--email",
        "Sam@Acme.test",
        "--role",
        "csm",
        "--team",
        "east",
        "--alias",
        "sam.lee",
        "--password-stdin",
    ];
    let o = with_stdin(&add, "a long enough passphrase\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(id.starts_with("u_"), "{id}");
    // The same email again, a short password, an unknown role: usage errors.
    let o = with_stdin(&add, "a long enough passphrase\n");
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let short = [
        "user",
        "add",
        "--data",
        &data,
        "--name",
        "Kim",
        "--email",
        "kim@acme.test",
        "--role",
        "csm",
        "--password-stdin",
    ];
    let o = with_stdin(&short, "short\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 12 characters"));
    let o = run(&[
        "user", "add", "--data", &data, "--name", "X", "--email", "x@a.test", "--role", "boss",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["user", "token", "--data", &data, "sam@acme.test"]);
    assert!(o.status.success());
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("tnu_") && token.len() == 68, "{token}");
    let o = run(&["user", "set", "--data", &data, &id, "--role", "manager", "--team", "west"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["user", "disable", "--data", &data, "sam@acme.test"]);
    assert!(o.status.success());
    let o = run(&["user", "list", "--data", &data]);
    let list = String::from_utf8(o.stdout).unwrap();
    let sam = list.lines().find(|l| l.starts_with(&id)).expect(&list);
    let cols: Vec<&str> = sam.split_whitespace().collect();
    assert_eq!(
        cols[cols.len() - 6..],
        ["sam@acme.test", "manager", "west", "set", "yes", "disabled"],
        "{list}"
    );
    // The file holds hashes only, and only its owner reads it.
    let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
    assert!(!text.contains("a long enough passphrase") && !text.contains(&token));
    assert!(text.contains("$argon2id$"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let o = run(&["user", "enable", "--data", &data, "nobody@acme.test"]);
    assert_eq!(o.status.code(), Some(2), "an unknown person");
    // Every change is in the audit log, with who made it (the operating system's user).
    let o = bin()
        .args(["audit", "--data", &data, "--format", "csv"])
        .env("USER", "ops")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = String::from_utf8(o.stdout).unwrap();
    let actions: Vec<(&str, &str)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[2], c[4])
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("user.add", "sam@acme.test"),
            ("user.token", "sam@acme.test"),
            ("user.change", "sam@acme.test"),
            ("user.disable", "sam@acme.test"),
        ],
        "{csv}"
    );
    assert!(csv.lines().skip(1).all(|l| l.split(',').nth(1).is_some_and(|w| w.starts_with("cli"))));
}
