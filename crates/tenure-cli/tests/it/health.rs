//! `tenure health`, `tenure risk` and `tenure model` on a generated company whose ground
//! truth is known: the backtest's figures against the generator's own probabilities, the
//! scorecards on the same split, risk and health listings, configuration without re-import.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn tenure(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenure")).args(args).output().unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let o = tenure(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// 1,500 accounts over 2022-01 .. 2024-12, imported; the truth stays in DATA/company.
fn company(dir: &Path) -> String {
    generated(dir, 1500, 3, "2022-01")
}

/// A generated company of `accounts` over the 36 months from `start`, imported.
fn generated(dir: &Path, accounts: u32, seed: u32, start: &str) -> String {
    let data = dir.display().to_string();
    let company = dir.join("company");
    let c = company.display().to_string();
    let (n, seed) = (accounts.to_string(), seed.to_string());
    let o = tenure(&[
        "gen",
        "--accounts",
        &n,
        "--months",
        "36",
        "--seed",
        &seed,
        "--start",
        start,
        "--out",
        &c,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files: Vec<String> = std::fs::read_dir(&company)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["import", "--data", &data];
    args.extend(files.iter().map(String::as_str));
    let o = tenure(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    data
}

const AS_OF: &str = "2025-01-01T00:00:00Z";

#[test]
fn model_and_scorecards_are_backtested_against_the_generators_truth() {
    let t = tempfile::tempdir().unwrap();
    let data = company(t.path());
    let j = ok_json(&[
        "model",
        "backtest",
        "--data",
        &data,
        "--from",
        "2023-10",
        "--to",
        "2024-09",
        "--horizon",
        "90d",
        "--as-of",
        AS_OF,
        "--format",
        "json",
    ]);
    for k in [
        "auc",
        "pr_auc",
        "brier",
        "ece",
        "lift_top_decile",
        "n_snapshots",
        "n_churned",
        "oracle_auc",
    ] {
        assert!(j[k].is_number(), "{k} missing in {j}");
    }
    let (auc, oracle, ece) =
        (j["auc"].as_f64().unwrap(), j["oracle_auc"].as_f64().unwrap(), j["ece"].as_f64().unwrap());
    assert!(j["n_churned"].as_u64().unwrap() > 100, "{j}");
    // The acceptance: at least 0.85 of the way from 0.5 to the generator's own AUC, and
    // calibrated within 0.03.
    assert!((auc - 0.5) / (oracle - 0.5) >= 0.85, "AUC {auc} against the oracle's {oracle}");
    assert!(ece <= 0.03, "ECE {ece}");
    // The scorecards on the same snapshots: they rank churners, less well than the model.
    for card in ["usage", "signals"] {
        let c = &j["scorecards"][card];
        let a = c["auc"].as_f64().unwrap_or_else(|| panic!("{card}: {c}"));
        assert!(a > 0.55 && a < auc, "{card}: AUC {a}, the model's {auc}");
        for k in ["pr_auc", "brier", "ece", "lift_top_decile"] {
            assert!(c[k].is_number(), "{card}.{k}");
        }
        // The learned weights: one per measure, tested on the same snapshots.
        let l = &c["learned"];
        assert!(l["auc"].is_number() && l["auc_gain"].is_number(), "{card}: {l}");
        assert!(!l["weights"].as_object().unwrap().is_empty());
    }
    assert!(j["baseline"]["auc"].as_f64().unwrap() > 0.6);
    // The drivers name the generator's cause among the top three in most cases, and first
    // more often than before issue 17 (the trees alone, each feature ranked by its own
    // contribution): measured 0.401 first and 0.804 in the top three, against 0.372 and
    // 0.737 before.
    let d = &j["drivers"];
    let share = |k: &str| d[k].as_f64().unwrap_or_else(|| panic!("{k}: {d}"));
    assert!(d["n"].as_u64().unwrap() > 500 && share("top3_match") > 0.75, "{d}");
    assert!(share("top1_match") > share("trees_top1_match") + 0.02, "{d}");
    assert!(share("top3_match") > share("trees_top3_match") + 0.05, "{d}");

    // Renewal risk: only snapshots with a contract due within the horizon, fewer of them.
    let r = ok_json(&[
        "model",
        "backtest",
        "--data",
        &data,
        "--from",
        "2023-10",
        "--to",
        "2024-09",
        "--outcome",
        "renewal",
        "--as-of",
        AS_OF,
        "--format",
        "json",
    ]);
    let (n, all) = (r["n_snapshots"].as_u64().unwrap(), j["n_snapshots"].as_u64().unwrap());
    assert!(n > 100 && n < all / 3, "{n} renewal snapshots of {all}");
    assert!(r["n_churned"].as_u64().unwrap() > 10 && r["auc"].as_f64().unwrap() > 0.6, "{r}");
}

/// How many accounts `tenure risk` scores at or above `p` (every account listed).
fn accounts_at_or_above(data: &str, p: f64) -> u64 {
    let all =
        ok_json(&["risk", "--data", data, "--as-of", AS_OF, "--top", "0", "--format", "json"]);
    all["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["probability"].as_f64().unwrap() >= p)
        .count() as u64
}

#[test]
fn risk_health_and_scorecards_configured_without_reimport() {
    let t = tempfile::tempdir().unwrap();
    let data = company(t.path());
    // No saved model: risk trains one (and says so); then a saved one is used.
    let o = tenure(&["risk", "--data", &data, "--as-of", AS_OF, "--top", "5", "--format", "json"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no saved model"));
    let train = ok_json(&["model", "train", "--data", &data, "--as-of", AS_OF, "--format", "json"]);
    assert!(Path::new(&data).join("models/churn.json").is_file(), "{train}");
    let o = tenure(&["risk", "--data", &data, "--as-of", AS_OF, "--top", "5", "--format", "json"]);
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("no saved model"));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let accounts = r["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 5);
    let mut last = f64::INFINITY;
    for a in accounts {
        let (p, mrr, loss) = (
            a["probability"].as_f64().unwrap(),
            a["mrr"].as_f64().unwrap(),
            a["expected_loss"].as_f64().unwrap(),
        );
        assert!(a["account_id"].is_string() && (0.0..=1.0).contains(&p));
        // Expected loss is MRR x probability, rounded to the cent; sorted largest first.
        assert!((loss - mrr * p).abs() <= 0.005 + 1e-9, "{a}");
        assert!(loss <= last);
        last = loss;
        assert!(a["drivers"].as_array().unwrap().iter().all(Value::is_string));
    }
    // The five listed are the first five of every account listed, in the same order.
    let all =
        ok_json(&["risk", "--data", &data, "--as-of", AS_OF, "--top", "0", "--format", "json"]);
    assert_eq!(accounts[..], all["accounts"].as_array().unwrap()[..5]);
    assert!(all["accounts"].as_array().unwrap().len() > 20, "{all}");
    assert_eq!((&r["mrr"], &r["expected_loss"]), (&all["mrr"], &all["expected_loss"]));
    // At risk: probability 20% or more (the default); their MRR is part of the total.
    let at_risk = r["accounts_at_risk"].as_u64().unwrap();
    assert!(at_risk > 0 && at_risk < r["accounts_scored"].as_u64().unwrap(), "{r}");
    assert!(r["mrr_at_risk"].as_f64().unwrap() < r["mrr"].as_f64().unwrap());
    assert_eq!(r["at_risk_threshold"], 0.2);
    // One definition of "at risk": `[risk] at_risk` in the data directory's tenure.toml is
    // `tenure risk`'s threshold (and the dashboard's); --at-risk overrides it; 1 is refused.
    let toml = Path::new(&data).join("tenure.toml");
    std::fs::write(&toml, "[risk]\nat_risk = 0.5\n").unwrap();
    let r5 =
        ok_json(&["risk", "--data", &data, "--as-of", AS_OF, "--top", "1", "--format", "json"]);
    assert_eq!(r5["at_risk_threshold"], 0.5);
    let above = accounts_at_or_above(&data, 0.5);
    assert_eq!(r5["accounts_at_risk"].as_u64().unwrap(), above, "{r5}");
    let o = tenure(&["risk", "--data", &data, "--as-of", AS_OF, "--at-risk", "1"]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_file(&toml).unwrap();
    let segs: f64 = r["by_segment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["expected_loss"].as_f64().unwrap())
        .sum();
    assert!((segs - r["expected_loss"].as_f64().unwrap()).abs() < 0.01);

    let h = ok_json(&["health", "--data", &data, "--as-of", AS_OF, "--format", "json"]);
    let list = h["accounts"].as_array().unwrap();
    assert_eq!(list.len() as u64, r["accounts_scored"].as_u64().unwrap());
    for a in list {
        let s = a["score"].as_f64().unwrap();
        let want = if s < 40.0 {
            "red"
        } else if s < 70.0 {
            "yellow"
        } else {
            "green"
        };
        assert_eq!(a["colour"], want, "{a}");
        assert_eq!(a["scorecard"], "usage");
    }
    // One account's breakdown adds up to its score.
    let id = list[0]["account_id"].as_str().unwrap();
    let one = ok_json(&[
        "health",
        "--data",
        &data,
        "--as-of",
        AS_OF,
        "--account",
        id,
        "--format",
        "json",
    ]);
    let points: f64 =
        one["measures"].as_array().unwrap().iter().map(|m| m["points"].as_f64().unwrap()).sum();
    assert!((points - one["score"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(one["history"].as_array().unwrap().len(), 12);

    // Retention by segment: three curves that differ (log-rank), and the hazard of churn
    // falls with licence utilisation at the landmark.
    let sv = ok_json(&[
        "survival", "--data", &data, "--as-of", AS_OF, "--by", "segment", "--format", "json",
    ]);
    let groups = sv["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{sv}");
    let n: u64 = groups.iter().map(|g| g["n"].as_u64().unwrap()).sum();
    assert!(n > 1000);
    for g in groups {
        let at: Vec<f64> =
            g["at"].as_array().unwrap().iter().map(|p| p["retention"].as_f64().unwrap()).collect();
        assert!(at.windows(2).all(|w| w[1] <= w[0]) && at[0] <= 1.0, "{g}");
    }
    assert!(sv["logrank"]["p"].as_f64().unwrap() < 0.01, "{sv}");
    assert_eq!(sv["logrank"]["df"], 2);
    let hr = &sv["hazards"]["coefficients"]["licence_utilisation"];
    assert!(hr["hr"].as_f64().unwrap() < 1.0 && hr["hr_ci"][1].as_f64().unwrap() < 1.0, "{hr}");
    // Lifetime value by plan: the projected survival falls, the CLTV is ARPA x lifetime.
    let clv =
        ok_json(&["clv", "--data", &data, "--as-of", AS_OF, "--by", "plan", "--format", "json"]);
    let plans = clv["groups"].as_array().unwrap();
    assert_eq!(plans.len(), 3, "{clv}");
    for g in plans {
        let s = [&g["survival_12m"], &g["survival_24m"], &g["survival_36m"]]
            .map(|v| v.as_f64().unwrap());
        assert!(s[0] < 1.0 && s[1] < s[0] && s[2] < s[1] && s[2] > 0.0, "{g}");
        let (arpa, life, cltv) = (
            g["arpa"].as_f64().unwrap(),
            g["expected_lifetime_months"].as_f64().unwrap(),
            g["cltv"].as_f64().unwrap(),
        );
        assert!((cltv - arpa * life).abs() <= 0.01 * cltv.max(1.0), "{g}");
    }

    // A new scorecards file takes effect at once; a bad one is named.
    std::fs::write(
        Path::new(&data).join("scorecards.toml"),
        "[[scorecard]]\nname = \"tickets\"\n[[scorecard.measure]]\nfeature = \"tickets_90d\"\nlinear = [5, 0]\n",
    )
    .unwrap();
    let h2 = ok_json(&["health", "--data", &data, "--as-of", AS_OF, "--format", "json"]);
    assert!(h2["accounts"].as_array().unwrap().iter().all(|a| a["scorecard"] == "tickets"));
    std::fs::write(Path::new(&data).join("scorecards.toml"), "[[scorecard]]\nname = \"x\"\n")
        .unwrap();
    let o = tenure(&["health", "--data", &data, "--as-of", AS_OF]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("scorecard \"x\": no [[scorecard.measure]]")
    );
}

/// `tenure risk --outcome renewal` reads (or trains) the renewal model, not the saved churn
/// model, and says what it predicts; `tenure forecast` gives totals that are the sum of its
/// renewals, groups that add up, CSM calls beside the model, a backtest and a saved file.
#[test]
fn renewal_risk_and_the_forecast_on_a_generated_company() {
    let t = tempfile::tempdir().unwrap();
    let data = company(t.path());
    let _ = ok_json(&["model", "train", "--data", &data, "--as-of", AS_OF, "--format", "json"]);
    let o =
        tenure(&["risk", "--data", &data, "--as-of", AS_OF, "--outcome", "renewal", "--top", "5"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.starts_with("Risk of a lost renewal (contracts due) within 90 days"), "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no saved model"));
    let j = ok_json(&[
        "model",
        "train",
        "--data",
        &data,
        "--as-of",
        AS_OF,
        "--outcome",
        "renewal",
        "--format",
        "json",
    ]);
    assert_eq!(j["outcome"], "renewal_lost");
    assert!(Path::new(&data).join("models/renewal.json").is_file());
    let churn = ok_json(&["risk", "--data", &data, "--as-of", AS_OF, "--format", "json"]);
    let renewal = ok_json(&[
        "risk",
        "--data",
        &data,
        "--as-of",
        AS_OF,
        "--outcome",
        "renewal",
        "--format",
        "json",
    ]);
    assert_eq!(
        (churn["outcome"].as_str(), renewal["outcome"].as_str()),
        (Some("churn"), Some("renewal_lost"))
    );
    assert!(
        renewal["accounts_scored"].as_u64().unwrap()
            < churn["accounts_scored"].as_u64().unwrap() / 2
    );

    // The forecast of 2025-Q1 as of its start.
    let f = ok_json(&[
        "forecast", "--data", &data, "--as-of", AS_OF, "--period", "2025-Q1", "--by", "csm",
        "--format", "json",
    ]);
    let items = f["items"].as_array().unwrap();
    let terms = items.iter().filter(|i| i["kind"] == "term").count();
    assert!(terms > 50 && items.len() > terms, "{terms} of {}", items.len());
    assert_eq!(f["term_contracts"]["source"], "model", "{}", f["term_contracts"]);
    let sum = |k: &str| items.iter().map(|i| i[k].as_f64().unwrap()).sum::<f64>();
    let m = &f["model"];
    assert_eq!(m["contracts"].as_u64().unwrap() as usize, items.len());
    assert!((sum("arr_due") - m["arr_due"].as_f64().unwrap()).abs() < 0.005);
    // Items' expected ARR are each rounded to the cent; the total once.
    assert!(
        (sum("expected_arr") - m["expected_arr"].as_f64().unwrap()).abs()
            <= 0.005 * items.len() as f64
    );
    let (lo, hi, e) = (
        m["interval"][0].as_f64().unwrap(),
        m["interval"][1].as_f64().unwrap(),
        m["expected_arr"].as_f64().unwrap(),
    );
    assert!(lo < e && e < hi && hi <= m["arr_due"].as_f64().unwrap() * 1.5, "{m}");
    for i in items {
        let p = i["probability"].as_f64().unwrap();
        let want = if p >= 0.9 {
            "commit"
        } else if p >= 0.6 {
            "probable"
        } else {
            "at_risk"
        };
        assert_eq!(i["category"], want, "{i}");
    }
    let cats: f64 = ["commit", "probable", "at_risk"]
        .iter()
        .map(|c| m["categories"][c]["arr_due"].as_f64().unwrap())
        .sum();
    assert!((cats - m["arr_due"].as_f64().unwrap()).abs() < 0.01);
    let groups = f["groups"].as_array().unwrap();
    assert!(groups.len() > 1);
    let g: f64 = groups.iter().map(|g| g["model"]["arr_due"].as_f64().unwrap()).sum();
    assert!((g - m["arr_due"].as_f64().unwrap()).abs() < 0.01);

    // A CSM's call, imported as an event: the model's figures stay, the called ones move.
    let top = &items[0];
    let (account, sub) = (top["account_id"].as_str().unwrap(), top["subscription_id"].clone());
    let call = t.path().join("calls.jsonl");
    std::fs::write(
        &call,
        serde_json::json!({"type": "forecast_override", "timestamp": "2024-12-20", "account_id": account,
            "subscription_id": sub, "category": "at_risk", "amount": "0", "reason": "moving to a competitor"})
        .to_string(),
    )
    .unwrap();
    let o = tenure(&["import", "--data", &data, &call.display().to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f2 = ok_json(&[
        "forecast", "--data", &data, "--as-of", AS_OF, "--period", "2025-Q1", "--format", "json",
    ]);
    assert_eq!(f2["model"], f["model"]);
    let called = f2["with_overrides"]["expected_arr"].as_f64().unwrap();
    let want = e - top["expected_arr"].as_f64().unwrap();
    assert!((called - want).abs() < 0.02, "{called} vs {want}");
    let first = &f2["items"][0];
    assert_eq!(
        (first["override"]["category"].as_str(), first["override"]["reason"].as_str()),
        (Some("at_risk"), Some("moving to a competitor"))
    );

    // The backtest of four past quarters, and the saved file the service shows.
    let b = ok_json(&[
        "forecast",
        "--data",
        &data,
        "--as-of",
        AS_OF,
        "--backtest",
        "--from",
        "2024-Q1",
        "--to",
        "2024-Q4",
        "--format",
        "json",
    ]);
    let periods = b["periods"].as_array().unwrap();
    assert_eq!(periods.len(), 4);
    assert!(
        periods.iter().all(|p| p["actual"].is_number() && p["naive_forecast"].is_number()),
        "{b}"
    );
    let o = tenure(&["forecast", "--data", &data, "--as-of", AS_OF, "--save"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&data).join("models/forecast.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["quarters"].as_array().unwrap().len(), 2);
    // 8 quarters back from 2024-Q4; 2023-Q1 had no decided renewal before it to learn from.
    let (done, skipped) = (&saved["backtest"]["periods"], &saved["backtest"]["skipped"]);
    assert_eq!(done.as_array().unwrap().len() + skipped.as_array().unwrap().len(), 8, "{saved}");
    assert!(done.as_array().unwrap().len() >= 6, "{}", saved["backtest"]);
    // Bad arguments are usage errors.
    let o = tenure(&["forecast", "--data", &data, "--as-of", AS_OF, "--period", "2024-Q1"]);
    assert_eq!(o.status.code(), Some(2), "a past period is backtested, not forecast");
    let o = tenure(&["forecast", "--data", &data, "--backtest", "--from", "2024-02"]);
    assert_eq!(o.status.code(), Some(2));
}

/// Issue 17: the saved model never loses to a baseline. On generated companies of 300 to
/// 1,000 accounts (seed 7 is the demo's) the backtest of the learner the selection
/// chooses on the training snapshots alone ranks the year that follows at least as well as
/// the best of the logistic baseline and every scorecard, configured or with learned
/// weights, less 0.005. Before the selection (trees alone) the 300-account company of seed
/// 2 reached an AUC of 0.436 against its baseline's 0.686, and seed 1's 1,000 accounts
/// 0.748 against 0.762.
#[test]
fn the_chosen_model_ranks_at_least_as_well_as_every_baseline() {
    let mut table = Vec::new();
    for (accounts, seed) in [(300, 1), (300, 2), (1000, 1), (1000, 2), (1000, 7)] {
        let t = tempfile::tempdir().unwrap();
        let data = generated(t.path(), accounts, seed, "2023-12");
        let j = ok_json(&[
            "model",
            "backtest",
            "--data",
            &data,
            "--as-of",
            "2026-12-01T00:00:00Z",
            "--format",
            "json",
        ]);
        let auc = j["auc"].as_f64().unwrap();
        let mut best = ("logistic baseline".to_string(), j["baseline"]["auc"].as_f64().unwrap());
        for (name, c) in j["scorecards"].as_object().unwrap() {
            for (what, v) in
                [(name.clone(), &c["auc"]), (format!("{name}, learned"), &c["learned"]["auc"])]
            {
                if let Some(a) = v.as_f64().filter(|a| *a > best.1) {
                    best = (what, a);
                }
            }
        }
        let chosen = j["selection"]["chosen"].as_str().unwrap().to_string();
        assert!(!j["selection"]["verdict"].as_str().unwrap().is_empty(), "{j}");
        table.push(format!(
            "{accounts} accounts, seed {seed}: {chosen} {auc:.4}, best baseline {} {:.4}",
            best.0, best.1
        ));
        assert!(auc >= best.1 - 0.005, "{table:#?}");
    }
    eprintln!("{table:#?}");
}

/// Fails naming the first line where a checkpoint's answer and a replay's differ.
fn differ(fast: &str, slow: &str, args: &[&str]) {
    if let Some((i, (a, b))) = fast.lines().zip(slow.lines()).enumerate().find(|(_, (a, b))| a != b)
    {
        panic!("{args:?}, line {}: checkpoint {a:?}, replay {b:?}", i + 1);
    }
    assert_eq!(fast.lines().count(), slow.lines().count(), "{args:?}: line counts differ");
}

/// Saved state is kept by the binary's build id: a hard link or a copy of the same build (a
/// package, an image, a backup's restore) reads what it saved, where keying by the file's
/// times made each of them fold the log again; a build whose id differs folds again.
#[test]
fn saved_state_is_read_by_a_link_or_a_copy_of_the_same_build() {
    let t = tempfile::tempdir().unwrap();
    let data = generated(t.path(), 80, 3, "2022-01");
    // Under the target directory: a temporary directory may not allow running programs.
    let bins = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_tenure"));
    let (linked, copied, other) =
        (bins.path().join("linked"), bins.path().join("copied"), bins.path().join("other"));
    std::fs::hard_link(bin, &linked).unwrap();
    std::fs::copy(bin, &copied).unwrap();
    crate::other_build(bin, &other);
    let said = |bin: &Path, args: &[&str]| -> String {
        let o = Command::new(bin).args(args).args(["--data", &data]).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stderr).unwrap()
    };
    let health = ["health", "--as-of", AS_OF, "--format", "csv"];
    let kpi = ["kpi", "--period", "2024-12", "--as-of", AS_OF];
    assert!(said(bin, &health).contains("folding the log into"));
    said(bin, &kpi);
    for b in [bin, &linked, &copied] {
        for args in [&health[..], &kpi[..]] {
            let s = said(b, args);
            assert!(!s.contains("folding"), "{}: {args:?}: {s}", b.display());
        }
    }
    for args in [&health[..], &kpi[..]] {
        let s = said(&other, args);
        assert!(s.contains("another build of tenure since"), "{args:?}: {s}");
    }
}

/// `tenure health` and `tenure risk` read the health state checkpoint (DATA/state/) and give
/// byte for byte what a fold of the whole log gives (`--replay`), at instants inside a
/// month, at a month start and after the last event; the checkpoint is read, not folded
/// again, until new events, other settings or damage make it unusable, and each of those is
/// noticed and said.
#[test]
fn health_and_risk_from_the_state_checkpoint_equal_a_replay() {
    let t = tempfile::tempdir().unwrap();
    let data = generated(t.path(), 500, 7, "2022-01");
    let state = t.path().join("state").join("health.state");
    let run = |args: &[&str]| -> (String, String) {
        let o = tenure(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    run(&["model", "train", "--data", &data, "--as-of", AS_OF, "--learner", "trees"]);
    // Every listing, through the checkpoint and through a replay; returns the stderr of the
    // checkpoint's runs.
    let same = |as_of: &str| -> String {
        let mut said = String::new();
        let health = ["health", "--data", &data, "--as-of", as_of, "--format", "csv"];
        let risk = ["risk", "--data", &data, "--as-of", as_of, "--top", "0", "--format", "json"];
        for args in [&health[..], &risk[..]] {
            let (fast, err) = run(args);
            let (slow, _) = run(&[args, &["--replay"]].concat());
            differ(&fast, &slow, args);
            assert!(fast.lines().count() > 100, "{args:?}: {fast}");
            said.push_str(&err);
        }
        // `--top 7` lists the head of the whole listing (each block of accounts keeps the
        // rows of its own largest losses only), with the same totals.
        let all: Value = serde_json::from_str(&run(&risk).0).unwrap();
        for replay in [&[][..], &["--replay"][..]] {
            let top = ["risk", "--data", &data, "--as-of", as_of, "--top", "7", "--format", "json"];
            let mut top: Value =
                serde_json::from_str(&run(&[&top[..], replay].concat()).0).unwrap();
            let head = &all["accounts"].as_array().unwrap()[..7];
            assert_eq!(top["accounts"].as_array().unwrap(), head, "{as_of} {replay:?}");
            top["accounts"] = all["accounts"].clone();
            assert_eq!(top, all, "{as_of} {replay:?}");
        }
        // One account's page: its worst-scored account has the most history to differ in.
        let (csv, _) = run(&health);
        let id = csv.lines().nth(1).unwrap().split(',').next().unwrap().to_string();
        let one =
            ["health", "--data", &data, "--as-of", as_of, "--account", &id, "--format", "json"];
        let (fast, err) = run(&one);
        differ(&fast, &run(&[&one[..], &["--replay"]].concat()).0, &one);
        said + &err
    };
    let said = same("2024-06-17T13:45:00Z");
    assert_eq!(said.matches("folding the log").count(), 1, "built once, then read: {said}");
    assert!(state.is_file());
    let made = std::fs::read(&state).unwrap();
    for as_of in ["2024-11-01T00:00:00Z", AS_OF, "2025-02-10T08:00:00Z"] {
        let said = same(as_of);
        assert!(!said.contains("folding"), "{as_of}: the checkpoint was not read: {said}");
    }
    assert_eq!(std::fs::read(&state).unwrap(), made, "reading changed the checkpoint");

    // New events: a ticket and an NPS answer of the worst account, after the old ones, and
    // a paying account's champion turning up under that account (a move).
    let (csv, _) = run(&["health", "--data", &data, "--as-of", AS_OF, "--format", "csv"]);
    let ids: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    let id = ids[0].to_string();
    let contacts =
        std::fs::read_to_string(t.path().join("company").join("contacts.jsonl")).unwrap();
    let champion = contacts
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| {
            c["role"] == "champion"
                && c["account_id"] != id.as_str()
                && ids.contains(&c["account_id"].as_str().unwrap())
        })
        .unwrap();
    let more = t.path().join("more.jsonl");
    std::fs::write(
        &more,
        format!(
            "{{\"type\":\"ticket\",\"timestamp\":\"2024-12-20T10:00:00Z\",\"account_id\":\"{id}\",\"ticket_id\":\"t-late\",\"status\":\"opened\",\"category\":\"defect\",\"severity\":\"urgent\"}}\n\
             {{\"type\":\"survey_response\",\"timestamp\":\"2024-12-21T10:00:00Z\",\"account_id\":\"{id}\",\"survey\":\"nps\",\"score\":0}}\n\
             {{\"type\":\"contact\",\"timestamp\":\"2024-12-15T10:00:00Z\",\"account_id\":\"{id}\",\"contact_id\":{},\"role\":\"champion\",\"status\":\"active\"}}\n",
            champion["contact_id"]
        ),
    )
    .unwrap();
    run(&["import", "--data", &data, &more.display().to_string()]);
    let said = same(AS_OF);
    // Brought forward, not folded again: the worst account and the account its new
    // champion left are folded alone.
    assert!(
        said.contains("forward over the log's new records (2 accounts folded again)"),
        "{said}"
    );
    assert!(!said.contains("folding the log"), "{said}");
    assert_ne!(std::fs::read(&state).unwrap(), made, "not brought forward");
    // A new account (which joins the others in id order) and usage (all of it read again:
    // the new account may have used the product before its first contract).
    std::fs::write(
        &more,
        format!(
            "{{\"type\":\"account\",\"timestamp\":\"2024-12-01T10:00:00Z\",\"account_id\":\"acc-0001234-new\",\"name\":\"Newco\",\"attributes\":{{\"segment\":\"a-brand-new-segment\"}}}}\n\
             {{\"type\":\"subscription\",\"timestamp\":\"2024-12-01T10:00:00Z\",\"account_id\":\"acc-0001234-new\",\"subscription_id\":\"s-new\",\"kind\":\"product\",\"plan\":\"a-brand-new-plan\",\"quantity\":3,\"amount\":\"90.00\",\"currency\":\"USD\",\"interval\":\"month\",\"status\":\"active\"}}\n\
             {{\"type\":\"usage\",\"timestamp\":\"2024-12-22T10:00:00Z\",\"account_id\":\"{id}\",\"user_id\":\"u-late\",\"event\":\"export\",\"feature\":\"reports\"}}\n\
             {{\"type\":\"usage\",\"timestamp\":\"2024-12-22T11:00:00Z\",\"account_id\":\"acc-0001234-new\",\"user_id\":\"u-new\",\"event\":\"export\",\"feature\":\"reports\"}}\n"
        ),
    )
    .unwrap();
    run(&["import", "--data", &data, &more.display().to_string()]);
    let said = same(AS_OF);
    assert!(said.contains("(1 account folded again, all usage read again)"), "{said}");
    assert!(!said.contains("folding the log"), "{said}");
    let (csv, _) = run(&["health", "--data", &data, "--as-of", AS_OF, "--format", "csv"]);
    assert!(csv.contains("acc-0001234-new"), "{csv}");
    // An account whose usage came first (it is in no fold then), and its first contract
    // later, with no new usage: its earlier usage is read for it when it joins.
    let usage_first = "{\"type\":\"usage\",\"timestamp\":\"2024-11-22T10:00:00Z\",\"account_id\":\"acc-0001235-usage-first\",\"user_id\":\"u-1\",\"event\":\"export\",\"feature\":\"reports\"}\n";
    std::fs::write(&more, usage_first).unwrap();
    run(&["import", "--data", &data, &more.display().to_string()]);
    let said = same(AS_OF);
    assert!(said.contains("(0 accounts folded again, usage from 2024-11 on read again)"), "{said}");
    let contract = "{\"type\":\"subscription\",\"timestamp\":\"2024-12-02T10:00:00Z\",\"account_id\":\"acc-0001235-usage-first\",\"subscription_id\":\"s-uf\",\"kind\":\"product\",\"quantity\":2,\"amount\":\"40.00\",\"currency\":\"USD\",\"interval\":\"month\",\"status\":\"active\"}\n";
    std::fs::write(&more, contract).unwrap();
    run(&["import", "--data", &data, &more.display().to_string()]);
    let said = same(AS_OF);
    assert!(said.contains("(1 account folded again, all usage read again)"), "{said}");
    // Usage only: this month's, then a late event of a month long past (its user new, so
    // that month's users change): only the months from the earliest new event's on are
    // read again, the rest kept, and the listings equal a replay's.
    for (ts, month) in [("2024-12-23T09:00:00Z", "2024-12"), ("2024-03-05T09:00:00Z", "2024-03")] {
        std::fs::write(
            &more,
            format!(
                "{{\"type\":\"usage\",\"timestamp\":\"{ts}\",\"account_id\":\"{id}\",\"user_id\":\"u-late-{month}\",\"event\":\"export\",\"feature\":\"reports\"}}\n"
            ),
        )
        .unwrap();
        run(&["import", "--data", &data, &more.display().to_string()]);
        let said = same(AS_OF);
        let want = format!("(0 accounts folded again, usage from {month} on read again)");
        assert!(said.contains(&want), "{said}");
    }

    // Damage anywhere is found, said, and repaired by folding again.
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&state, &bytes).unwrap();
    let said = same(AS_OF);
    assert!(said.contains("damaged"), "{said}");
    std::fs::write(&state, &bytes[..mid]).unwrap();
    assert!(same(AS_OF).contains("damaged"));

    // Other settings: the revenue rules change the fold, so the checkpoint is refolded.
    std::fs::write(
        t.path().join("tenure.toml"),
        "version = 1\n[revenue]\npast_due_churn_days = 3\n",
    )
    .unwrap();
    let said = same(AS_OF);
    assert!(said.contains("other settings"), "{said}");
    // A later instant than the checkpoint reaches: folded again for it.
    let said = same("2027-06-01T00:00:00Z");
    assert!(said.contains("answers up to"), "{said}");

    // A paying account's line changes ten minutes before an instant and again ten minutes
    // after: one group for the checkpoint's fold, only its first part for a fold at that
    // instant. The checkpoint does not answer there; a fold at the instant does.
    let at = "2024-12-18T13:45:00Z";
    let subs =
        std::fs::read_to_string(t.path().join("company").join("subscriptions.jsonl")).unwrap();
    let mut line: Value = subs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|s| s["account_id"] == id.as_str() && s["status"] == "active")
        .unwrap();
    let mut two = String::new();
    for (ts, more) in [("2024-12-18T13:35:00Z", 1), ("2024-12-18T13:55:00Z", 2)] {
        line["timestamp"] = Value::from(ts);
        line["quantity"] = Value::from(line["quantity"].as_u64().unwrap() + more);
        two.push_str(&format!("{line}\n"));
    }
    std::fs::write(&more, two).unwrap();
    run(&["import", "--data", &data, &more.display().to_string()]);
    let said = same(at);
    assert!(said.contains("grouped across"), "{said}");
}

/// `tenure account` reads one account's events through the account index (DATA/state/)
/// and prints byte for byte the page a fold of the whole log prints (`--replay`): before
/// and after new events (a champion moving between accounts among them), in both formats.
#[test]
fn account_page_through_the_account_index_equals_a_replay() {
    let t = tempfile::tempdir().unwrap();
    let data = generated(t.path(), 300, 9, "2022-01");
    let run = |args: &[&str]| -> (String, String) {
        let o = tenure(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    let contacts =
        std::fs::read_to_string(t.path().join("company").join("contacts.jsonl")).unwrap();
    let contacts: Vec<Value> = contacts.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let champion = contacts.iter().find(|c| c["role"] == "champion").unwrap();
    let (from, contact) =
        (champion["account_id"].as_str().unwrap(), champion["contact_id"].as_str().unwrap());
    let to = contacts.iter().map(|c| c["account_id"].as_str().unwrap()).find(|a| *a != from);
    let to = to.unwrap();
    let mut ids: Vec<&str> = contacts.iter().map(|c| c["account_id"].as_str().unwrap()).collect();
    ids.dedup();
    let mut ids: Vec<String> = ids.into_iter().step_by(97).map(str::to_string).collect();
    ids.extend([from.to_string(), to.to_string()]);
    let pages = |said: &mut String| {
        let mut pages = vec![(from, "2023-06-17T13:45:00Z", "table"), (from, AS_OF, "table")];
        pages.extend(ids.iter().map(|id| (id.as_str(), AS_OF, "json")));
        for (id, as_of, format) in pages {
            let args = ["account", "--data", &data, id, "--as-of", as_of, "--format", format];
            let (fast, err) = run(&args);
            let (slow, _) = run(&[&args[..], &["--replay"]].concat());
            differ(&fast, &slow, &args);
            assert!(fast.contains(id), "{args:?}: {fast}");
            said.push_str(&err);
        }
    };
    let mut said = String::new();
    pages(&mut said);
    assert_eq!(said.matches("indexed the log's accounts (first use)").count(), 1, "{said}");
    assert!(t.path().join("state").join("accounts.idx").is_file());

    let more = t.path().join("more.jsonl");
    std::fs::write(
        &more,
        format!(
            concat!(
                r#"{{"type":"contact","timestamp":"2024-03-01T00:00:00Z","account_id":"{to}","contact_id":"{contact}","role":"champion","status":"active"}}"#,
                "\n",
                r#"{{"type":"ticket","timestamp":"2024-03-02T00:00:00Z","account_id":"{from}","ticket_id":"t-more","status":"opened","category":"defect","severity":"urgent"}}"#,
                "\n"
            ),
            to = to,
            contact = contact,
            from = from
        ),
    )
    .unwrap();
    run(&["import", "--data", &data, &more.display().to_string()]);
    let (page, _) = run(&["account", "--data", &data, from, "--as-of", AS_OF, "--format", "json"]);
    let page: Value = serde_json::from_str(&page).unwrap();
    assert!(page.to_string().contains(to), "the move is on the page: {page}");
    let mut said = String::new();
    pages(&mut said);
    assert!(!said.contains("indexed"), "extended from the log's tail, not built again: {said}");
    assert!(t.path().join("state").join("accounts.tail").is_file());
    let o = tenure(&["account", "--data", &data, "no-such-account"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `tenure kpi` reads the ledger checkpoint (DATA/state/ledger.state) and gives byte for
/// byte what a fold of the whole log gives (`--replay`): for every family of KPIs, cut and
/// in series; at later instants (the accounts whose fold changes by then folded again),
/// after new events (brought forward), at an earlier instant (a fold, the checkpoint kept),
/// and after damage or other settings (folded again, said why).
#[test]
fn kpi_from_the_ledger_checkpoint_equals_a_replay() {
    let t = tempfile::tempdir().unwrap();
    let data = generated(t.path(), 400, 5, "2022-01");
    let state = t.path().join("state").join("ledger.state");
    let run = |args: &[&str]| -> (String, String) {
        let o = tenure(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    // Every report below, through the checkpoint and through a replay; returns the stderr
    // of the checkpoint's runs.
    let same = |as_of: &str| -> String {
        let mut said = String::new();
        let reports: [&[&str]; 6] = [
            &["--period", "2024-Q4"],
            &["--period", "2024", "--every", "month", "--kpis", "revenue"],
            &["--period", "2024-Q3", "--by", "segment"],
            &["--period", "2024-07..2025-01", "--by", "plan", "--kpis", "usage"],
            &["--period", "2024", "--every", "quarter", "--kpis", "root-causes"],
            &["--period", "2025-Q1"],
        ];
        for r in reports {
            let args =
                [&["kpi", "--data", &data, "--as-of", as_of, "--format", "json"], r].concat();
            let (fast, err) = run(&args);
            let (slow, _) = run(&[&args[..], &["--replay"]].concat());
            differ(&fast, &slow, &args);
            assert!(fast.contains("\"period\"") && fast.len() > 300, "{args:?}: {fast}");
            said.push_str(&err);
        }
        said
    };
    let said = same(AS_OF);
    assert_eq!(said.matches("folding the log").count(), 1, "built once, then read: {said}");
    let made = std::fs::read(&state).unwrap();
    // Later instants, after the last event: read as they are.
    for as_of in ["2025-02-10T08:00:00Z", "2025-07-01T00:00:00Z"] {
        let said = same(as_of);
        assert!(!said.contains("ledger state"), "{as_of}: {said}");
    }
    assert_eq!(std::fs::read(&state).unwrap(), made, "reading changed the checkpoint");
    // An earlier instant is folded, and the checkpoint kept for the later ones.
    let said = same("2024-06-17T13:45:00Z");
    assert!(said.contains("after 2024-06-17T13:45:00Z; folding the log"), "{said}");
    assert_eq!(std::fs::read(&state).unwrap(), made);

    // New events: a ticket and a detractor's answer, a new account with its contract, and
    // a champion turning up under another account (a move changes the account left).
    let contacts =
        std::fs::read_to_string(t.path().join("company").join("contacts.jsonl")).unwrap();
    let champion = contacts
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|c| c["role"] == "champion")
        .unwrap();
    let from = champion["account_id"].as_str().unwrap();
    let id = contacts
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|c| c["account_id"].as_str().unwrap().to_string())
        .find(|a| a != from)
        .unwrap();
    let more = t.path().join("more.jsonl");
    std::fs::write(
        &more,
        format!(
            "{{\"type\":\"ticket\",\"timestamp\":\"2024-12-20T10:00:00Z\",\"account_id\":\"{id}\",\"ticket_id\":\"t-late\",\"status\":\"opened\",\"category\":\"defect\",\"severity\":\"urgent\"}}\n\
             {{\"type\":\"survey_response\",\"timestamp\":\"2024-12-21T10:00:00Z\",\"account_id\":\"{id}\",\"survey\":\"nps\",\"score\":0}}\n\
             {{\"type\":\"contact\",\"timestamp\":\"2024-12-15T10:00:00Z\",\"account_id\":\"{id}\",\"contact_id\":{},\"role\":\"champion\",\"status\":\"active\"}}\n\
             {{\"type\":\"account\",\"timestamp\":\"2024-12-01T10:00:00Z\",\"account_id\":\"acc-0001234-new\",\"name\":\"Newco\",\"attributes\":{{\"segment\":\"a-brand-new-segment\"}}}}\n\
             {{\"type\":\"subscription\",\"timestamp\":\"2024-12-01T10:00:00Z\",\"account_id\":\"acc-0001234-new\",\"subscription_id\":\"s-new\",\"kind\":\"product\",\"plan\":\"a-brand-new-plan\",\"quantity\":3,\"amount\":\"90.00\",\"currency\":\"USD\",\"interval\":\"month\",\"status\":\"active\",\"cancel_at\":\"2025-03-01T00:00:00Z\"}}\n\
             {{\"type\":\"account\",\"timestamp\":\"2024-12-02T10:00:00Z\",\"account_id\":\"acc-0001235-crm-only\",\"attributes\":{{\"segment\":\"smb\"}}}}\n\
             {{\"type\":\"usage\",\"timestamp\":\"2024-12-22T10:00:00Z\",\"account_id\":\"acc-0001235-crm-only\",\"user_id\":\"u-crm\",\"event\":\"export\",\"feature\":\"reports\"}}\n",
            champion["contact_id"]
        ),
    )
    .unwrap();
    let made = std::fs::read(&state).unwrap();
    run(&["import", "--data", &data, &more.display().to_string()]);
    let said = same("2025-02-10T08:00:00Z");
    assert!(said.contains("(4 named by new events"), "{said}");
    // Saved beside the checkpoint, which is not rewritten for a few accounts.
    assert!(said.contains("4 accounts saved beside"), "{said}");
    assert!(!said.contains("folding the log"), "{said}");
    assert_eq!(std::fs::read(&state).unwrap(), made);
    assert!(t.path().join("state").join("ledger.delta").is_file());
    let (q1, _) = run(&["kpi", "--data", &data, "--period", "2025-Q1", "--format", "json"]);
    assert!(q1.contains("\"customers_churned\""), "{q1}");
    // The new account's scheduled cancellation takes effect on 2025-03-01: a later instant
    // folds it again.
    let made = std::fs::read(&state).unwrap();
    let said = same("2025-03-02T00:00:00Z");
    assert!(!said.contains("folding the log"), "{said}");
    assert!(said.contains("(0 named by new events, 1 changing by 2025-03-02"), "{said}");
    assert_eq!(std::fs::read(&state).unwrap(), made, "a few changes are not saved");

    // A checkpoint made for an instant still to come is replaced by the next fold at an
    // earlier one (reports ask for now), which is then read.
    let far = ["kpi", "--data", &data, "--period", "2025-Q1", "--as-of", "2099-01-01T00:00:00Z"];
    std::fs::remove_file(&state).unwrap();
    assert!(run(&far).1.contains("folding the log into"));
    assert!(same("2025-03-02T00:00:00Z").contains("after 2025-03-02T00:00:00Z; folding the log"));
    assert!(!same("2025-03-02T00:00:00Z").contains("ledger state"));

    // Damage anywhere is found, said, and repaired by folding again.
    let mut bytes = std::fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&state, &bytes).unwrap();
    let said = same("2025-03-02T00:00:00Z");
    assert!(said.contains("damaged"), "{said}");
    std::fs::write(&state, &bytes[..mid]).unwrap();
    assert!(same("2025-03-02T00:00:00Z").contains("damaged"));
    // Other settings: the revenue rules change the fold, so the checkpoint is refolded.
    std::fs::write(
        t.path().join("tenure.toml"),
        "version = 1\n[revenue]\npast_due_churn_days = 3\n",
    )
    .unwrap();
    assert!(same("2025-03-02T00:00:00Z").contains("other settings"));
}
