//! Issue 14's acceptance: a generated company imported once as Tenure's events and once as
//! the Stripe objects `tenure gen --format stripe` writes for it gives identical revenue
//! KPIs in every month of its history, movement by movement; importing the export again
//! changes nothing; a broken export names what it cannot use and exits 3.

use std::path::Path;
use std::process::{Command, Output};

fn tenure(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_tenure")).args(args).output().expect("run tenure");
    assert!(
        o.status.code().is_some(),
        "tenure {args:?} was killed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn ok(args: &[&str]) -> String {
    let o = tenure(args);
    assert!(o.status.success(), "tenure {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The monthly revenue series and every MRR movement of a data directory.
fn revenue(data: &Path) -> (String, String) {
    let d = p(data);
    let at = "2026-01-01T00:00:00Z";
    let series = ok(&[
        "kpi",
        "--data",
        &d,
        "--period",
        "2024-01..2026-01",
        "--every",
        "month",
        "--kpis",
        "revenue",
        "--format",
        "csv",
        "--as-of",
        at,
    ]);
    let movements = ok(&[
        "sql",
        "--data",
        &d,
        "--as-of",
        at,
        "--format",
        "csv",
        "select account_id, ts, kind, amount, delta, upsell, cross_sell, involuntary from mrr_movements order by account_id, ts, kind",
    ]);
    (without_reasons(&series), movements)
}

/// The CSV without its `mrr_churn_by_reason.*` columns: Stripe has its own vocabulary of
/// cancellation feedback (the native `not_using` is Stripe's `unused`), so the reasons are
/// named differently on the two sides; their sum is `mrr_churn`, which is compared.
fn without_reasons(csv: &str) -> String {
    let Some(head) = csv.lines().next() else { return String::new() };
    let keep: Vec<bool> = head.split(',').map(|c| !c.starts_with("mrr_churn_by_reason.")).collect();
    assert!(keep.iter().any(|k| !k), "no churn reasons in {head}");
    csv.lines()
        .map(|l| {
            let cells: Vec<&str> =
                l.split(',').zip(&keep).filter(|(_, k)| **k).map(|(c, _)| c).collect();
            cells.join(",") + "\n"
        })
        .collect()
}

#[test]
fn a_company_through_stripe_gives_the_same_revenue_as_natively() {
    let dir = tempfile::tempdir().unwrap();
    let (native, stripe) = (dir.path().join("native"), dir.path().join("stripe"));
    let gen_args = ["--accounts", "400", "--months", "24", "--seed", "5", "--start", "2024-01"];
    let mut args = vec!["gen", "--out"];
    let (n, s) = (p(&native), p(&stripe));
    ok(&[args.clone(), vec![&n], gen_args.to_vec()].concat());
    args.extend([s.as_str(), "--format", "stripe"]);
    ok(&[args, gen_args.to_vec()].concat());
    // The Stripe side has no native billing files, only Stripe objects.
    assert!(!stripe.join("subscriptions.jsonl").exists());
    for f in ["customers", "subscriptions", "invoices", "credit_notes", "prices"] {
        assert!(stripe.join("stripe").join(format!("{f}.jsonl")).is_file(), "{f}");
    }
    let invoices = std::fs::read_to_string(stripe.join("stripe/invoices.jsonl")).unwrap();
    // Both API shapes, prorations, paused (void) periods and failed attempts are exercised.
    assert!(invoices.contains("\"parent\":") && invoices.contains("\"subscription_item\":\"si_"));
    assert!(invoices.contains("\"proration\":true") && invoices.contains("\"status\":\"void\""));
    assert!(invoices.contains("\"attempt_count\":2"));

    let (dn, ds) = (dir.path().join("dn"), dir.path().join("ds"));
    let (dn_s, ds_s) = (p(&dn), p(&ds));
    let billing: Vec<String> = ["accounts", "subscriptions", "invoices"]
        .iter()
        .map(|f| p(&native.join(format!("{f}.jsonl"))))
        .collect();
    let mut a = vec!["import", "--data", &dn_s, "--no-refresh"];
    a.extend(billing.iter().map(String::as_str));
    ok(&a);
    let export = p(&stripe.join("stripe"));
    let o = tenure(&[
        "import",
        "--data",
        &ds_s,
        "--from",
        "stripe",
        &export,
        "--account-key",
        "tenure_account_id",
        "--no-refresh",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(" 0 rejected; 0 objects could not be used"), "{err}");

    let (series_n, moves_n) = revenue(&dn);
    let (series_s, moves_s) = revenue(&ds);
    assert_eq!(series_n.lines().count(), 25, "a header and 24 months");
    assert!(moves_n.lines().count() > 400, "movements: {}", moves_n.lines().count());
    assert_eq!(series_n, series_s, "monthly revenue KPIs differ");
    assert_eq!(moves_n, moves_s, "MRR movements differ");

    // The same export again: everything already present.
    let o = tenure(&[
        "import",
        "--data",
        &ds_s,
        "--from",
        "stripe",
        &export,
        "--account-key",
        "tenure_account_id",
        "--no-refresh",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains(": 0 stored,"), "{err}");
    assert_eq!(revenue(&ds).0, series_n);
}

#[test]
fn an_export_with_unusable_objects_names_them_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    std::fs::create_dir(&export).unwrap();
    let customers = r#"{"object":"list","data":[{"id":"cus_1","object":"customer","created":1704067200,"name":"Acme","metadata":{"tier":"gold"}}],"has_more":false}"#;
    std::fs::write(export.join("customers.json"), customers).unwrap();
    let subs = concat!(
        r#"{"id":"sub_1","object":"subscription","customer":"cus_1","created":1704067200,"start_date":1704067200,"status":"active","items":{"data":[{"id":"si_1","quantity":2,"price":{"id":"price_1","unit_amount":2500,"currency":"usd","recurring":{"interval":"month","interval_count":1}}}]}}"#,
        "\n",
        r#"{"id":"sub_2","object":"subscription","customer":"cus_1","created":1704067200,"status":"active","items":{"data":[{"id":"si_2","quantity":1,"price":{"id":"price_2","currency":"usd","unit_amount":100,"recurring":{"interval":"fortnight"}}}]}}"#,
        "\n",
        "{not json\n",
    );
    std::fs::write(export.join("subscriptions.jsonl"), subs).unwrap();
    let data = p(&dir.path().join("data"));
    let o = tenure(&["import", "--data", &data, "--from", "stripe", &p(&export), "--no-refresh"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("subscriptions.jsonl:3: malformed JSON"), "{err}");
    assert!(err.contains("subscriptions.jsonl:2: sub_2 item si_2: items.price: price price_2: unknown interval \"fortnight\""), "{err}");
    // The usable subscription is in: 2 x 25.00 a month.
    let v = february_revenue(&data);
    assert_eq!(v["mrr_end"], 50.0, "{v}");
}

/// The revenue KPIs of February 2024, as of March 1st.
fn february_revenue(data: &str) -> serde_json::Value {
    let out = ok(&[
        "kpi",
        "--data",
        data,
        "--period",
        "2024-02",
        "--kpis",
        "revenue",
        "--format",
        "json",
        "--as-of",
        "2024-03-01",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["kpis"].clone()
}

/// Files of one invoice a line are converted a block at a time, after the other files: a
/// line that is not UTF-8 is refused alone, and a file that begins with invoices but holds
/// what they depend on (here the customer naming their account) is read whole instead,
/// with the same result as the objects in their own files.
#[test]
fn invoice_files_read_a_block_at_a_time_keep_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let customer = r#"{"id":"cus_1","object":"customer","created":1704067200,"name":"Acme","metadata":{"company":"acme"}}"#;
    let sub = r#"{"id":"sub_1","object":"subscription","customer":"cus_1","created":1704067200,"start_date":1704067200,"status":"active","items":{"data":[{"id":"si_1","quantity":2,"price":{"id":"price_1","unit_amount":2500,"currency":"usd","recurring":{"interval":"month","interval_count":1}}}]}}"#;
    let invoice = |n: u32, start: i64| {
        format!(
            r#"{{"id":"in_{n}","object":"invoice","customer":"cus_1","subscription":"sub_1","created":{start},"status":"paid","currency":"usd","attempt_count":1,"total":5000,"subtotal":5000,"total_excluding_tax":5000,"status_transitions":{{"paid_at":{start}}},"lines":{{"object":"list","has_more":false,"data":[{{"id":"il_{n}","object":"line_item","amount":5000,"currency":"usd","period":{{"start":{start},"end":{}}},"quantity":2,"proration":false,"type":"subscription","subscription":"sub_1","subscription_item":"si_1","price":{{"id":"price_1","unit_amount":2500,"currency":"usd","recurring":{{"interval":"month","interval_count":1}}}}}}]}}}}"#,
            start + 31 * 86_400
        )
    };
    let (jan, feb) = (invoice(1, 1_704_067_200), invoice(2, 1_706_745_600));
    let import = |export: &Path, data: &Path| {
        tenure(&[
            "import",
            "--data",
            &p(data),
            "--from",
            "stripe",
            &p(export),
            "--account-key",
            "company",
            "--no-refresh",
        ])
    };
    let mrr_of = |data: &Path| {
        let v = february_revenue(&p(data));
        (v["mrr_end"].clone(), v["customers_end"].clone())
    };

    // Each type in its own file; a line of the invoice file is not UTF-8.
    let split = dir.path().join("split");
    std::fs::create_dir(&split).unwrap();
    std::fs::write(split.join("customers.jsonl"), format!("{customer}\n")).unwrap();
    std::fs::write(split.join("subscriptions.jsonl"), format!("{sub}\n")).unwrap();
    let mut invoices = format!("{jan}\n").into_bytes();
    invoices.extend_from_slice(b"{\"id\":\"in_\xff\"}\n");
    invoices.extend_from_slice(format!("{feb}\n").as_bytes());
    std::fs::write(split.join("invoices.jsonl"), invoices).unwrap();
    let data = dir.path().join("d1");
    let o = import(&split, &data);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("invoices.jsonl:2: line is not UTF-8 text"), "{err}");
    assert!(err.contains("1 objects could not be used"), "{err}");
    // 2 x 25.00 a month, for the one account the metadata names.
    assert_eq!(mrr_of(&data), (serde_json::json!(50.0), serde_json::json!(1)));

    // One file, invoices first, then the subscription and the customer they depend on.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    std::fs::write(mixed.join("all.jsonl"), format!("{jan}\n{feb}\n{sub}\n{customer}\n")).unwrap();
    let data2 = dir.path().join("d2");
    let o = import(&mixed, &data2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("4 objects from 1 files"), "{err}");
    assert_eq!(mrr_of(&data2), mrr_of(&data));
    // The invoices are the account the customer's metadata names, not the customer id.
    let account = |d: &Path| {
        let out =
            ok(&["account", "--data", &p(d), "acme", "--format", "json", "--as-of", "2024-03-01"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (v["mrr"].clone(), v["movements"].to_string())
    };
    assert_eq!(account(&data2), account(&data));
    assert_eq!(account(&data).0, serde_json::json!(50.0));
}
