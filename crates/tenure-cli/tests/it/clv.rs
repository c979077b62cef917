//! `tenure clv --model bgnbd` on a generated company: BG/NBD and Gamma-Gamma fitted to the
//! accounts' paid invoices, per-account figures in their ranges, and the hold-out backtest
//! predicting about as many transactions as were made.

use serde_json::Value;
use std::process::{Command, Output};

fn tenure(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenure")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = tenure(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

const AS_OF: &str = "2025-01-01T00:00:00Z";

#[test]
fn bgnbd_lifetime_value_per_account_with_its_hold_out_backtest() {
    let t = tempfile::tempdir().unwrap();
    let company = t.path().join("company").display().to_string();
    let data = t.path().join("data").display().to_string();
    ok(&[
        "gen",
        "--accounts",
        "300",
        "--months",
        "36",
        "--seed",
        "3",
        "--start",
        "2022-01",
        "--out",
        &company,
    ]);
    let mut args = vec!["import".to_string(), "--data".into(), data.clone()];
    for e in std::fs::read_dir(&company).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "jsonl") {
            args.push(p.display().to_string());
        }
    }
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let base = ["clv", "--data", &data, "--model", "bgnbd", "--as-of", AS_OF];
    let run = |more: &[&str]| -> String { ok(&[&base[..], more].concat()) };
    let j: Value = serde_json::from_str(&run(&[
        "--holdout-from",
        "2024-01",
        "--top",
        "0",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(j["model"], "bgnbd");
    assert_eq!((j["period"].as_str(), j["horizon_months"].as_u64()), (Some("day"), Some(12)));
    let positive = |v: &Value, k: &str| {
        let x = v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
        assert!(x > 0.0 && x.is_finite(), "{k} = {x}");
    };
    let params = &j["parameters"];
    for k in ["r", "alpha", "a", "b"] {
        positive(&params["bgnbd"], k);
    }
    for k in ["p", "q", "v"] {
        positive(&params["gamma_gamma"], k);
    }
    assert!(params["bgnbd"]["log_likelihood"].as_f64().unwrap() < 0.0);

    // Every account that paid an invoice, highest CLV first.
    let accounts = j["accounts"].as_array().unwrap();
    let n = j["totals"]["accounts"].as_u64().unwrap() as usize;
    assert!(n > 200 && accounts.len() == n, "{n} accounts, {} listed", accounts.len());
    let mut clvs = Vec::new();
    for a in accounts {
        let p = a["p_alive"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{a}");
        let (f, r, tt) = (
            a["frequency"].as_u64().unwrap(),
            a["recency"].as_u64().unwrap(),
            a["T"].as_u64().unwrap(),
        );
        assert!(r <= tt && (f > 0 || r == 0), "{a}");
        assert!(a["expected_transactions"].as_f64().unwrap() >= 0.0, "{a}");
        // Undefined is null, never NaN; a defined CLV is not negative.
        if let Some(c) = a["clv"].as_f64() {
            assert!(c >= 0.0, "{a}");
            clvs.push(c);
        } else {
            assert!(a["clv"].is_null(), "{a}");
        }
    }
    assert!(clvs.len() > n / 2, "{} of {n} accounts have a CLV", clvs.len());
    assert!(clvs.windows(2).all(|w| w[0] >= w[1]), "not sorted by CLV");
    let total = j["totals"]["clv"].as_f64().unwrap();
    let sum: f64 = clvs.iter().sum();
    assert!((total - sum).abs() <= 0.01 * n as f64, "total {total}, sum {sum}");
    assert_eq!(j["totals"]["accounts_without_clv"].as_u64().unwrap() as usize, n - clvs.len());

    // The backtest: buckets 0..6 and 7+, their accounts add up, and the predicted
    // transactions of 2024 are of the order of those made.
    let h = &j["backtest"];
    let buckets = h["by_frequency"].as_array().unwrap();
    let labels: Vec<&str> = buckets.iter().map(|b| b["frequency"].as_str().unwrap()).collect();
    assert_eq!(labels, ["0", "1", "2", "3", "4", "5", "6", "7+"]);
    let in_buckets: u64 = buckets.iter().map(|b| b["accounts"].as_u64().unwrap()).sum();
    assert_eq!(in_buckets, h["accounts"].as_u64().unwrap());
    assert_eq!(h["holdout_periods"], 366);
    let (pred, act) = (h["predicted_total"].as_f64().unwrap(), h["actual_total"].as_f64().unwrap());
    assert!(act > 100.0 && pred / act > 0.5 && pred / act < 2.0, "predicted {pred}, made {act}");
    assert!(h["correlation"].as_f64().unwrap() > 0.3, "{h}");
    assert!(h["mean_absolute_error"].as_f64().unwrap() >= 0.0);
    for k in ["r", "alpha", "a", "b"] {
        positive(&h["parameters"]["bgnbd"], k);
    }

    // The table and the CSV; without --holdout-from no backtest.
    let table = run(&["--top", "5", "--holdout-from", "2024-01", "--period", "week"]);
    assert!(table.contains("BG/NBD on") && table.contains("Backtest:"), "{table}");
    assert!(table.contains("7+") && table.contains("more (--top 0 lists all)"), "{table}");
    let csv = run(&["--top", "3", "--format", "csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("account_id,frequency,recency,T,monetary_value,"), "{csv}");
    let j: Value = serde_json::from_str(&run(&["--top", "2", "--format", "json"])).unwrap();
    assert!(j["backtest"].is_null() && j["accounts"].as_array().unwrap().len() == 2, "{j}");

    // Flags of the other model, or out of range, are usage errors (exit 2) that say why.
    for (args, says) in [
        (vec!["--model", "bgnbd", "--by", "plan"], "--by applies to --model sbg only"),
        (vec!["--horizon", "6"], "--horizon applies to --model bgnbd only"),
        (vec!["--model", "bgnbd", "--horizon", "0"], "a number of months from 1 to 120"),
        (vec!["--model", "bgnbd", "--holdout-from", "2025-03"], "is not before --as-of"),
        (vec!["--model", "bgnbd", "--holdout-from", "March"], "--holdout-from: not a period"),
    ] {
        let o = tenure(&[&["clv", "--data", &data, "--as-of", AS_OF][..], &args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
