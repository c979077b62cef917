//! The renewal forecast as the service serves it: the saved forecast with the calls CSMs
//! make through the API applied at once, recorded under the key's name; the scopes and the
//! fields a client may not set.

use axum::http::StatusCode;
use serde_json::json;
use tenure_testkit::{Keyring, call, company, open, save_forecast, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saved_forecast_is_served_and_calls_apply_at_once() {
    let f = Keyring::new();
    let s = open(f.path(), "2026-06-01T12:00:00Z");
    let (st, _) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    assert_eq!(st, StatusCode::OK);
    // Nothing saved yet: 404 saying how to save one.
    let (st, j) = call(&s, "GET", "/api/v1/forecast", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{j}");
    assert!(j["error"]["message"].as_str().unwrap().contains("tenure forecast --save"), "{j}");
    save_forecast(f.path(), "sam", "usage down");
    let (st, j) = call(&s, "GET", "/api/v1/forecast", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::OK, "{j}");
    // The figures worked by hand in `save_forecast`.
    assert_eq!(j["model"]["expected_arr"], json!(9300.0));
    assert_eq!(j["model"]["interval"], json!([0.0, 12600.0]));
    assert_eq!(j["model"]["interval_method"], "exact");
    assert_eq!(j["with_overrides"], j["model"]);
    assert_eq!(j["items"].as_array().unwrap().len(), 2);
    let (st, j) = call(&s, "GET", "/api/v1/forecast?by=csm", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::OK);
    let keys: Vec<&str> =
        j["groups"].as_array().unwrap().iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["kim", "sam"]);
    let (st, j) = call(&s, "GET", "/api/v1/forecast?period=2027-Q1", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(j["error"]["message"].as_str().unwrap().contains("2026-Q3"), "{j}");
    let (st, _) = call(&s, "GET", "/api/v1/forecast?by=region", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, j) = call(&s, "GET", "/api/v1/forecast/backtest", Some(&f.read), "").await;
    assert_eq!((st, j["summary"]["coverage"].as_f64()), (StatusCode::OK, Some(1.0)));

    // A call: only with the write scope, never with an author, on a known account.
    let body = json!({"category": "at_risk", "amount": "0", "subscription_id": "s1", "reason": "budget cut"}).to_string();
    let path = "/api/v1/accounts/acme/forecast-override";
    let (st, _) = call(&s, "POST", path, Some(&f.read), &body).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let forged = json!({"category": "commit", "author": "the ceo"}).to_string();
    let (st, j) = call(&s, "POST", path, Some(&f.write), &forged).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{j}");
    let (st, _) = call(&s, "POST", path, Some(&f.write), r#"{"category": "maybe"}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) =
        call(&s, "POST", path, Some(&f.write), r#"{"category": "commit", "amount": "-5"}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) =
        call(&s, "POST", path, Some(&f.write), r#"{"category": "commit", "amount": 5}"#).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "an amount is a decimal string");
    let (st, _) =
        call(&s, "POST", "/api/v1/accounts/nobody/forecast-override", Some(&f.write), &body).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, j) = call(&s, "POST", path, Some(&f.write), &body).await;
    assert_eq!(st, StatusCode::OK, "{j}");
    assert_eq!(j["author"], "sam");
    // Applied as soon as the applier folded it: Acme's 9,000 is called at 0.
    let j = until(&s, &f.read, "/api/v1/forecast", |j| {
        j["with_overrides"]["expected_arr"] == json!(300.0)
    })
    .await;
    assert_eq!(j["model"]["expected_arr"], json!(9300.0));
    let acme = &j["items"][0];
    assert_eq!(acme["override"]["author"], "sam");
    assert_eq!(acme["override"]["category"], "at_risk");
    assert_eq!(j["with_overrides"]["categories"]["at_risk"]["contracts"], 2);
    // Sent as an event, a call needs an admin key (the author would be the client's word).
    let line = json!({"type": "forecast_override", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme",
                      "category": "commit", "author": "sam"}).to_string();
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &line).await;
    assert!(st != StatusCode::OK || j["accepted"] == 0, "{st} {j}");
    let (st, j) = call(&s, "POST", "/api/v1/events", Some(&f.admin), &line).await;
    assert_eq!((st, j["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{j}");
}

/// The service remakes the saved forecast itself, from its live state, on the schedule of
/// `[service] forecast_refresh_hours` (here at once): the Renewals page does not depend on
/// someone running `tenure forecast --save`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_remakes_the_forecast_on_its_schedule() {
    let f = Keyring::new();
    // A generated company with 30 months of history: renewals enough to learn from.
    let out = tempfile::tempdir().unwrap();
    let cfg = tenure_sim::SimConfig {
        accounts: 400,
        months: 30,
        seed: 11,
        start: (2024, 1),
        usage_events: None,
        format: tenure_sim::OutputFormat::Jsonl,
    };
    let summary = tenure_sim::generate(&cfg, out.path(), &|_| {}).unwrap();
    {
        let ingest = tenure_ingest::IngestConfig::defaults(None);
        let (mut imp, _) = tenure_engine::Importer::open(f.path(), ingest).unwrap();
        for file in summary.files.iter().filter(|p| p.extension().is_some_and(|e| e == "jsonl")) {
            let kind = tenure_ingest::kind_from_file_name(&file.display().to_string());
            let input = std::fs::File::open(file).unwrap();
            let sum = imp
                .import(
                    input,
                    tenure_engine::import::Format::Jsonl,
                    kind,
                    &mut |r| panic!("{}: {r:?}", file.display()),
                    &mut |_| {},
                )
                .unwrap();
            assert!(sum.progress.accepted > 0, "{}", file.display());
        }
    }
    let saved = f.path().join("models").join("forecast.json");
    assert!(!saved.exists());
    let s = tenure_testkit::open_with(f.path(), "2026-06-15T00:00:00Z", |o| {
        o.config.service.forecast_delay_minutes = Some(0);
    });
    let start = std::time::Instant::now();
    while !saved.exists() {
        assert!(start.elapsed() < std::time::Duration::from_secs(300), "no forecast saved");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (st, j) = call(&s, "GET", "/api/v1/forecast", Some(&f.read), "").await;
    assert_eq!(st, StatusCode::OK, "{j}");
    assert_eq!(j["period"]["start"], "2026-04-01T00:00:00Z");
    let items = j["items"].as_array().unwrap();
    assert!(!items.is_empty());
    // The service's figures: the sum of the contracts' expectations, inside the interval.
    let expected = j["model"]["expected_arr"].as_f64().unwrap();
    let sum: f64 = items.iter().map(|i| i["expected_arr"].as_f64().unwrap()).sum();
    assert!((expected - sum).abs() < 0.01 * items.len() as f64, "{expected} vs {sum}");
    let (low, high) =
        (j["model"]["interval"][0].as_f64().unwrap(), j["model"]["interval"][1].as_f64().unwrap());
    assert!(low <= expected && expected <= high, "{} {low} {high}", j["model"]);
    let (st, j) = call(&s, "GET", "/api/v1/forecast?period=2026-Q3", Some(&f.read), "").await;
    assert_eq!((st, &j["period"]["start"]), (StatusCode::OK, &json!("2026-07-01T00:00:00Z")));
    // Made as of the service's clock, with the past quarters backtested.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(doc["made_at"], "2026-06-15T00:00:00Z");
    assert!(!doc["backtest"]["periods"].as_array().unwrap().is_empty(), "{}", doc["backtest"]);
    // On the same schedule, every account's lifetime value from its paid invoices (made
    // just before the forecast): on the account API, as of the service's clock.
    let (mut with_clv, mut listed) = (0, 0);
    for id in items.iter().filter_map(|i| i["account_id"].as_str()).take(20) {
        let (st, a) = call(&s, "GET", &format!("/api/v1/accounts/{id}"), Some(&f.read), "").await;
        assert_eq!(st, StatusCode::OK, "{a}");
        let v = &a["lifetime_value"];
        if v.is_null() {
            continue;
        }
        listed += 1;
        assert_eq!(
            (&v["model"], &v["as_of"], &v["horizon_months"]),
            (&json!("bgnbd"), &json!("2026-06-15T00:00:00Z"), &json!(12)),
            "{v}"
        );
        let p = v["p_alive"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{v}");
        assert!(v["expected_payments"].as_f64().unwrap() >= 0.0, "{v}");
        assert!(v["age_days"].as_f64().unwrap() >= v["recency_days"].as_f64().unwrap(), "{v}");
        if let Some(clv) = v["clv"].as_f64() {
            with_clv += 1;
            // Major units: below twelve months of the account's ARR-scale payments, above 0.
            assert!(clv > 0.0 && clv < 1e7, "{v}");
        }
    }
    assert!(listed > 10 && with_clv > 0, "{listed} accounts with values, {with_clv} with a CLV");
}
