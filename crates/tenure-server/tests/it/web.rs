//! The dashboard as a browser sees it: login with a read key and a session cookie
//! (HttpOnly, SameSite=Strict), every page rendered, user strings escaped everywhere, and
//! state-changing forms refused without the session's CSRF token.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenure_core::time::Timestamp;
use tenure_server::keys::{Keys, Scope};
use tenure_server::{AppState, Options, app};
use tower::ServiceExt;

const XSS: &str = "<script>alert(1)</script>";

struct Browser {
    s: AppState,
    cookie: Option<String>,
}

impl Browser {
    async fn go(
        &mut self,
        method: &str,
        path: &str,
        form: &str,
    ) -> (StatusCode, Option<String>, String) {
        let mut r = Request::builder().method(method).uri(path);
        if method == "POST" {
            r = r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(c) = &self.cookie {
            r = r.header(header::COOKIE, c.clone());
        }
        let resp = app(self.s.clone())
            .oneshot(r.body(Body::from(form.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let location =
            resp.headers().get(header::LOCATION).map(|v| v.to_str().unwrap().to_string());
        if let Some(c) = resp.headers().get(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
            self.cookie = Some(c.split(';').next().unwrap().to_string());
        }
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, location, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(
            |b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            },
        )
        .collect()
}

fn csrf_of(page: &str) -> String {
    let i = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[i..i + 64].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_escape_user_text_and_forms_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Keys::default();
    let (_, read) = keys.create("sam", &[Scope::Read, Scope::Write], "2026-01-01").unwrap();
    let (_, viewer) = keys.create("viewer", &[Scope::Read], "2026-01-01").unwrap();
    let (_, ingest) = keys.create("pipe", &[Scope::Ingest], "2026-01-01").unwrap();
    keys.save(dir.path()).unwrap();
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    let s = AppState::open(dir.path(), Options::new(clock)).unwrap();
    // A company whose every user string is a script.
    let events: String = [
        json!({"type": "account", "timestamp": "2026-01-01", "account_id": "acme", "name": XSS, "attributes": {"segment": XSS, "csm": XSS}}),
        json!({"type": "subscription", "timestamp": "2026-01-01", "account_id": "acme", "subscription_id": "s1", "quantity": 5, "amount": "100", "status": "active"}),
        json!({"type": "contact", "timestamp": "2026-01-02", "account_id": "acme", "contact_id": "c1", "name": XSS, "role": "champion"}),
        json!({"type": "survey_response", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme", "survey": "nps", "contact_id": "c1", "score": 2, "comment": XSS}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect();
    let r = Request::post("/api/v1/events")
        .header("authorization", format!("Bearer {ingest}"))
        .body(Body::from(events))
        .unwrap();
    assert_eq!(app(s.clone()).oneshot(r).await.unwrap().status(), StatusCode::OK);
    let mut b = Browser { s: s.clone(), cookie: None };
    // No session: every page sends to the login.
    for p in [
        "/",
        "/accounts",
        "/accounts/acme",
        "/cohorts",
        "/inbox",
        "/renewals",
        "/model",
        "/explain",
    ] {
        let (st, loc, _) = b.go("GET", p, "").await;
        assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/login")), "{p}");
    }
    // A key without the read scope is refused; a read key logs in.
    let (st, _, page) = b.go("POST", "/login", &format!("key={}", enc(&ingest))).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(page.contains("read scope"));
    let (st, loc, _) = b.go("POST", "/login", &format!("key={}", enc(&read))).await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    assert!(b.cookie.is_some());
    // The detractor's task exists once the applier has run.
    let start = Instant::now();
    let inbox = loop {
        let (st, _, page) = b.go("GET", "/inbox", "").await;
        assert_eq!(st, StatusCode::OK);
        if page.contains("/inbox/tasks/") {
            break page;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no task: {page}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    for p in [
        "/",
        "/accounts",
        "/accounts/acme",
        "/cohorts",
        "/inbox",
        "/renewals",
        "/model",
        "/accounts?sort=risk&order=desc",
        "/explain?kpi=mrr_end&period=2026-05",
        "/explain?kpi=mrr_new&period=2026-01&by=segment",
    ] {
        let (st, _, page) = b.go("GET", p, "").await;
        assert_eq!(st, StatusCode::OK, "{p}: {page}");
        assert!(!page.contains("<script"), "{p} let a script through: {page}");
    }
    let (_, _, page) = b.go("GET", "/accounts/acme", "").await;
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name, escaped");
    assert!(page.contains("“&lt;script&gt;"), "the survey comment, escaped");
    // The resolve form offers exactly the root-cause taxonomy the API accepts.
    let options: Vec<&str> = inbox
        .split("<select name=\"root_cause\" aria-label=")
        .nth(1)
        .unwrap()
        .split("</select>")
        .next()
        .unwrap()
        .split("<option value=\"")
        .skip(1)
        .map(|o| o.split('"').next().unwrap())
        .filter(|v| !v.is_empty())
        .collect();
    let causes: Vec<&str> = tenure_core::event::RootCause::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(options, causes);
    // A form without the token is refused; with it, the task is resolved.
    let i = inbox.find("/inbox/tasks/").unwrap();
    let action = inbox[i..].split('"').next().unwrap().to_string();
    // A key that can only read sees the inbox but cannot change a task.
    let mut v = Browser { s: s.clone(), cookie: None };
    v.go("POST", "/login", &format!("key={}", enc(&viewer))).await;
    let (_, _, vinbox) = v.go("GET", "/inbox", "").await;
    let (st, _, page) = v
        .go(
            "POST",
            &action,
            &format!("csrf={}&status=done&root_cause=performance", csrf_of(&vinbox)),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("write scope"), "{page}");
    let (st, _, _) = b
        .go("POST", &action, &format!("status=done&root_cause=performance&note={}", enc(XSS)))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&inbox);
    let (st, _, page) = b.go("POST", &action, &format!("csrf={csrf}&status=done")).await;
    assert_eq!(st, StatusCode::CONFLICT, "resolving needs a root cause: {page}");
    let (st, loc, _) = b
        .go("POST", &action, &format!("csrf={csrf}&status=done&root_cause=performance&note={}&return=%2Finbox%3Fstatus%3Ddone", enc(XSS)))
        .await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/inbox?status=done")));
    let (_, _, page) = b.go("GET", "/inbox?status=done", "").await;
    assert!(page.contains("performance") && page.contains("&lt;script&gt;"), "{page}");
    assert!(!page.contains("<script"));
    // Log out: the session is gone.
    let (st, _, _) = b.go("POST", "/logout", &format!("csrf={csrf}")).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, loc, _) = b.go("GET", "/", "").await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/login")));
}

/// The Renewals page: the saved forecast with user strings escaped, a call made from its form
/// (with the token, by a key that may write) shown at once under the session's key name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_renewals_page_shows_the_forecast_and_takes_a_call() {
    let f = tenure_testkit::Keyring::new();
    let s = tenure_testkit::open(f.path(), "2026-06-01T12:00:00Z");
    let (st, _) = tenure_testkit::call(
        &s,
        "POST",
        "/api/v1/events",
        Some(&f.ingest),
        &tenure_testkit::company(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let mut b = Browser { s: s.clone(), cookie: None };
    b.go("POST", "/login", &format!("key={}", enc(&f.write))).await;
    let (st, _, page) = b.go("GET", "/renewals", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("tenure forecast --save"), "{page}");
    tenure_testkit::save_forecast(f.path(), XSS, XSS);
    let (st, _, page) = b.go("GET", "/renewals?by=csm", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains("2026-Q3") && page.contains("9,300") && page.contains("12,600"),
        "{page}"
    );
    assert!(page.contains("&lt;script&gt;"), "the CSM and the driver, escaped");
    assert!(page.contains("2026-Q1"), "the past quarter");
    let csrf = csrf_of(&page);
    let (st, _, _) = b.go("POST", "/renewals/acme/call", "category=at_risk&amount=0").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no token");
    let (st, loc, _) = b
        .go(
            "POST",
            "/renewals/acme/call",
            &format!("csrf={csrf}&subscription_id=s1&category=at_risk&amount=0&reason={}&return=%2Frenewals%3Fby%3Dcsm", enc(XSS)),
        )
        .await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/renewals?by=csm")));
    let (_, _, page) = b.go("GET", "/renewals", "").await;
    assert!(page.contains("at risk, 0: &lt;script&gt;") && page.contains("(sam)"), "{page}");
    assert!(!page.contains("<script"));
    // A read-only key sees the page but cannot make a call.
    let mut v = Browser { s: s.clone(), cookie: None };
    v.go("POST", "/login", &format!("key={}", enc(&f.read))).await;
    let (_, _, vpage) = v.go("GET", "/renewals", "").await;
    let (st, _, page) = v
        .go("POST", "/renewals/acme/call", &format!("csrf={}&category=commit", csrf_of(&vpage)))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_figure_is_explained_by_its_accounts_movements_and_events() {
    use tenure_testkit::{Keyring, call, company, open, until};
    const NOW: &str = "2026-06-01T12:00:00Z";
    let f = Keyring::new();
    let s = open(f.path(), NOW);
    let (st, _) = call(&s, "POST", "/api/v1/events", Some(&f.ingest), &company()).await;
    assert_eq!(st, StatusCode::OK);
    // Restarted: the history is replayed from the log, each subscription event named by its
    // position (Acme's s1 is record 0 of the subscription lane, Bolt's s2 record 1).
    drop(s);
    let s = open(f.path(), NOW);
    let q = "/api/v1/kpis/explain?kpi=mrr_new&period=2026-05";
    let (st, j) = call(&s, "GET", q, Some(&f.read), "").await;
    assert_eq!(st, StatusCode::OK, "{j}");
    let (_, k) = call(&s, "GET", "/api/v1/kpis?period=2026-05", Some(&f.read), "").await;
    assert_eq!(j["figure"], k[0]["kpis"]["mrr_new"], "{j} {k}");
    assert_eq!((j["figure"].as_f64(), j["total"].as_f64()), (Some(50.0), Some(50.0)));
    assert_eq!((&j["balanced"], &j["accounts_total"]), (&json!(true), &json!(1)));
    let src = &j["accounts"][0]["movements"][0]["sources"][0];
    assert_eq!(j["accounts"][0]["account"], "bolt");
    assert_eq!(
        (&src["ref"], &src["found"], &src["position"]),
        (&json!("log:subscription:1"), &json!(true), &json!(1))
    );
    assert_eq!((&src["subscription_id"], &src["amount"]), (&json!("s2"), &json!(50.0)));
    // A cut: every segment with its subtotal, or one segment.
    let (_, j) = call(
        &s,
        "GET",
        "/api/v1/kpis/explain?kpi=mrr_end&period=2026-05&by=segment",
        Some(&f.read),
        "",
    )
    .await;
    assert_eq!(
        j["segments"],
        json!([{"segment": "mid", "total": 1000.0, "figure": 1000.0}, {"segment": "smb", "total": 50.0, "figure": 50.0}]),
        "{j}"
    );
    let (_, j) = call(
        &s,
        "GET",
        "/api/v1/kpis/explain?kpi=mrr_end&period=2026-05&by=segment%3Dsmb",
        Some(&f.read),
        "",
    )
    .await;
    assert_eq!((j["total"].as_f64(), j["segment"].as_str()), (Some(50.0), Some("smb")), "{j}");
    // An event that arrives while serving is named by its message id.
    let cancel = json!({"type": "subscription", "timestamp": "2026-06-01T10:00:00Z", "account_id": "acme",
                        "message_id": "evt-cancel-1", "subscription_id": "s1", "status": "canceled"});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &cancel.to_string()).await;
    let j = until(&s, &f.read, "/api/v1/kpis/explain?kpi=mrr_churn&period=2026-06", |j| {
        j["total"] == 1000.0
    })
    .await;
    let src = &j["accounts"][0]["movements"][0]["sources"][0];
    assert_eq!(
        (&src["ref"], &src["message_id"], &src["status"]),
        (&json!("evt-cancel-1"), &json!("evt-cancel-1"), &json!("canceled")),
        "{j}"
    );
    // And one without a message id by the position it was stored at (record 3: after
    // Acme's, Bolt's and the cancellation).
    let upgrade = json!({"type": "subscription", "timestamp": "2026-06-01T11:00:00Z", "account_id": "bolt",
                         "subscription_id": "s2", "amount": "80", "status": "active"});
    call(&s, "POST", "/api/v1/events", Some(&f.ingest), &upgrade.to_string()).await;
    let j = until(&s, &f.read, "/api/v1/kpis/explain?kpi=mrr_expansion&period=2026-06", |j| {
        j["total"] == 30.0
    })
    .await;
    let src = &j["accounts"][0]["movements"][0]["sources"][0];
    assert_eq!(
        (&src["ref"], &src["found"], &src["amount"]),
        (&json!("log:subscription:3"), &json!(true), &json!(80.0)),
        "{j}"
    );
    // What cannot be explained, and who may ask.
    let (st, j) =
        call(&s, "GET", "/api/v1/kpis/explain?kpi=nrr&period=2026-05", Some(&f.read), "").await;
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{j}"
    );
    let (st, _) = call(&s, "GET", q, Some(&f.ingest), "").await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The dashboard: the movements chart's bars link to the page, which lists the events.
    let mut b = Browser { s: s.clone(), cookie: None };
    b.go("POST", "/login", &format!("key={}", enc(&f.read))).await;
    let (st, _, home) = b.go("GET", "/", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        home.contains(
            "<a href=\"/explain?kpi=mrr_new&amp;period=2026-05\" aria-label=\"New: 2026-05 "
        ),
        "{home}"
    );
    let (st, _, page) = b.go("GET", "/explain?kpi=mrr_new&period=2026-05", "").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("log:subscription:1") && page.contains("/accounts/bolt"), "{page}");
    assert!(page.contains("= mrr_new exactly"), "{page}");
    let (_, _, page) = b.go("GET", "/explain?kpi=mrr_end&period=2026-05", "").await;
    assert!(page.contains("Acme &lt;script&gt;") && !page.contains("<script"), "{page}");
    let (st, _, _) = b.go("GET", "/explain?kpi=nrr", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

/// The portfolio's finance view: last month's MRR bridge, exact to the cent, churn split into
/// voluntary and involuntary, committed MRR beside MRR, and lost MRR by cancel reason. The
/// figures below are worked by hand from the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portfolio_bridges_last_months_mrr_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Keys::default();
    let (_, read) = keys.create("sam", &[Scope::Read], "2026-01-01").unwrap();
    let (_, ingest) = keys.create("pipe", &[Scope::Ingest], "2026-01-01").unwrap();
    keys.save(dir.path()).unwrap();
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    let s = AppState::open(dir.path(), Options::new(clock)).unwrap();
    let sub = |t: &str, a: &str, amount: &str, status: &str, extra: serde_json::Value| {
        let mut v = json!({"type": "subscription", "timestamp": t, "account_id": a,
            "subscription_id": format!("{a}-1"), "amount": amount, "status": status});
        if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(x.clone());
        }
        v
    };
    let events: String = [
        // May starts at 100.00 + 40.00 + 30.05 = 170.05.
        sub("2026-01-01", "acme", "100", "active", json!({})),
        sub("2026-01-01", "bolt", "40", "active", json!({})),
        sub("2026-01-01", "cora", "30.05", "active", json!({})),
        // Expansion +50.50; a cancellation at the end of the term (committed MRR only).
        sub("2026-05-10", "acme", "150.50", "active", json!({"cancel_at": "2026-09-01"})),
        // Voluntary churn -40.00, with its reason.
        sub("2026-05-15", "bolt", "40", "canceled", json!({"cancel_reason": "too_expensive"})),
        // Involuntary churn -30.05: cancelled while past due.
        sub("2026-05-03", "cora", "30.05", "past_due", json!({})),
        sub("2026-05-20", "cora", "30.05", "canceled", json!({})),
        // New +25.00.
        sub("2026-05-05", "dune", "25", "active", json!({})),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect();
    let r = Request::post("/api/v1/events")
        .header("authorization", format!("Bearer {ingest}"))
        .body(Body::from(events))
        .unwrap();
    assert_eq!(app(s.clone()).oneshot(r).await.unwrap().status(), StatusCode::OK);
    let mut b = Browser { s: s.clone(), cookie: None };
    b.go("POST", "/login", &format!("key={}", enc(&read))).await;
    // The applier folds the events in shortly after they are acknowledged. The portfolio's
    // figures were computed at start, on no events: history arriving makes them fresh.
    let start = Instant::now();
    loop {
        let (st, _, page) = b.go("GET", "/accounts?q=dune", "").await;
        assert_eq!(st, StatusCode::OK);
        if page.contains("/accounts/dune") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "not folded: {page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, _, page) = b.go("GET", "/", "").await;
    let bridge = page.split("Revenue bridge, 2026-05").nth(1).expect(&page);
    let bridge = bridge.split("</table>").next().unwrap();
    // Each line: its label (links stripped) and its figure.
    let lines: Vec<(String, String)> = bridge
        .split("<tr")
        .skip(2)
        .map(|tr| {
            let cells: Vec<String> = tr
                .split("<td")
                .skip(1)
                .map(|td| {
                    let inner = td.split_once('>').unwrap().1.split("</td>").next().unwrap();
                    // Drop the tags of links inside the cell.
                    let mut text = String::new();
                    let mut in_tag = false;
                    for c in inner.chars() {
                        match c {
                            '<' => in_tag = true,
                            '>' => in_tag = false,
                            c if !in_tag => text.push(c),
                            _ => {}
                        }
                    }
                    text
                })
                .collect();
            (cells[0].clone(), cells[1].clone())
        })
        .collect();
    let want = [
        ("MRR at the start of 2026-05", "170.05"),
        ("New", "25.00"),
        ("Expansion", "50.50"),
        ("Reactivation", "0.00"),
        ("Contraction", "0.00"),
        ("Churn, voluntary (cancelled)", "-40.00"),
        ("Churn, involuntary (payment failed)", "-30.05"),
        ("FX impact (exchange rates moved)", "0.00"),
        ("MRR at the end of 2026-05", "175.50"),
        ("Committed MRR at the end (after scheduled cancellations)", "25.00"),
    ];
    let got: Vec<(&str, &str)> = lines.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, want);
    // Movements open their explanation for the month.
    assert!(bridge.contains("href=\"/explain?kpi=mrr_churn&amp;period=2026-05\""), "{bridge}");
    // Lost MRR by reason over the months shown: the involuntary churn has no reason given.
    let reasons = page.split("Lost MRR by cancel reason").nth(1).unwrap();
    let reasons = reasons.split("</table>").next().unwrap();
    let too = reasons.find("too expensive").expect(reasons);
    let unpaid = reasons.find("unpaid").expect(reasons);
    assert!(too < unpaid, "largest first: {reasons}");
    assert!(
        reasons.contains("<td class=\"num\">40.00</td><td class=\"num\">57%</td>"),
        "{reasons}"
    );
    assert!(
        reasons.contains("<td class=\"num\">70.05</td><td class=\"num\">100%</td>"),
        "{reasons}"
    );
    assert!(page.contains("Committed MRR (after scheduled cancellations)"));
}

/// People log in with their email and password and see their book: a CSM the accounts
/// whose `csm` attribute names them, a manager their team's, a viewer everything but
/// changes nothing. Outside the book an account or a task is as unknown as a missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_its_book_and_changes_only_what_it_may() {
    use tenure_server::users::{Role, hash_password};
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Keys::default();
    let (_, ingest) = keys.create("pipe", &[Scope::Ingest], "2026-01-01").unwrap();
    const PW: &str = "a long enough passphrase";
    let mut add = |name: &str, email: &str, role: Role, team: Option<&str>| {
        let u = keys.add_user(name, email, role, team, "2026-01-01").unwrap();
        keys.user_mut(&u.id).unwrap().password = Some(hash_password(PW).unwrap());
    };
    add("Sam Lee", "sam@acme.test", Role::Csm, Some("east"));
    add("Kim O", "kim@acme.test", Role::Csm, Some("east"));
    add("Ana", "ana@acme.test", Role::Csm, Some("west"));
    add("Max", "max@acme.test", Role::Manager, Some("east"));
    add("Vic", "vic@acme.test", Role::Viewer, None);
    add("Ada", "ada@acme.test", Role::Admin, None);
    keys.user_mut("kim@acme.test").unwrap().aliases = vec!["kim.o".into()];
    keys.save(dir.path()).unwrap();
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    let s = AppState::open(dir.path(), Options::new(clock)).unwrap();
    let account = |id: &str, csm: Option<&str>| {
        let mut a = json!({"type": "account", "timestamp": "2026-01-01", "account_id": id, "name": format!("{id} Inc")});
        if let Some(c) = csm {
            a["attributes"] = json!({"csm": c});
        }
        [
            a,
            json!({"type": "subscription", "timestamp": "2026-01-01", "account_id": id, "subscription_id": format!("{id}-s"), "amount": "100", "status": "active"}),
            // A detractor: a task on every account.
            json!({"type": "survey_response", "timestamp": "2026-06-01T10:00:00Z", "account_id": id, "survey": "nps", "score": 1}),
        ]
    };
    let events: String = [
        account("acme", Some("sam lee")),
        account("bolt", Some("kim.o")),
        account("cora", Some("Ana")),
        account("dune", None),
    ]
    .iter()
    .flatten()
    .map(|v| v.to_string() + "\n")
    .collect();
    let r = Request::post("/api/v1/events")
        .header("authorization", format!("Bearer {ingest}"))
        .body(Body::from(events))
        .unwrap();
    assert_eq!(app(s.clone()).oneshot(r).await.unwrap().status(), StatusCode::OK);
    let login = |email: &str, password: &str| {
        let (s, email, password) = (s.clone(), email.to_string(), password.to_string());
        async move {
            let mut b = Browser { s, cookie: None };
            let (st, loc, page) = b
                .go("POST", "/login", &format!("email={}&password={}", enc(&email), enc(&password)))
                .await;
            (b, st, loc, page)
        }
    };
    // Every task exists once the applier has run (four accounts, four detractors).
    let (mut vic, st, loc, _) = login("vic@acme.test", PW).await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/")));
    let (mut ada, _, _, _) = login("ada@acme.test", PW).await;
    let start = Instant::now();
    loop {
        let (_, _, page) = ada.go("GET", "/inbox", "").await;
        if page.matches("/inbox/tasks/").count() >= 4 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no tasks: {page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listed = |page: &str| -> Vec<String> {
        ["acme", "bolt", "cora", "dune"]
            .into_iter()
            .filter(|id| page.contains(&format!("href=\"/accounts/{id}\"")))
            .map(String::from)
            .collect()
    };
    let task_of = |inbox: &str, account: &str| -> Option<String> {
        inbox.split("<tr").find(|tr| tr.contains(&format!("/accounts/{account}\""))).and_then(
            |_| {
                let i = inbox.find(&format!("/accounts/{account}\""))?;
                let j = inbox[i..].find("/inbox/tasks/")? + i;
                Some(inbox[j..].split('"').next()?.to_string())
            },
        )
    };
    // The viewer sees every account and task but changes nothing, and is offered no form.
    let (_, _, page) = vic.go("GET", "/accounts", "").await;
    assert_eq!(listed(&page), ["acme", "bolt", "cora", "dune"]);
    let (_, _, inbox) = vic.go("GET", "/inbox", "").await;
    assert_eq!(listed(&inbox), ["acme", "bolt", "cora", "dune"]);
    assert!(!inbox.contains("method=\"post\" action=\"/inbox"), "no forms for a viewer: {inbox}");
    let (_, _, page) = vic.go("GET", "/accounts/acme", "").await;
    assert!(!page.contains("Assign the account") && !page.contains("Resolve"), "{page}");
    let (_, _, inbox) = ada.go("GET", "/inbox", "").await;
    let acme_task = task_of(&inbox, "acme").expect(&inbox);
    let bolt_task = task_of(&inbox, "bolt").expect(&inbox);
    let (st, _, page) =
        vic.go("POST", &acme_task, &format!("csrf={}&status=in_progress", csrf_of(&inbox))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
    // A CSM: their own book (the attribute's case and spaces do not matter).
    let (mut sam, st, _, _) = login("SAM@acme.test", PW).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (_, _, page) = sam.go("GET", "/accounts", "").await;
    assert_eq!(listed(&page), ["acme"]);
    let (st, _, _) = sam.go("GET", "/accounts/bolt", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "outside the book: as unknown as missing");
    let (st, _, _) = sam.go("GET", "/accounts/acme", "").await;
    assert_eq!(st, StatusCode::OK);
    let (_, _, inbox) = sam.go("GET", "/inbox", "").await;
    assert_eq!(listed(&inbox), ["acme"]);
    let csrf = csrf_of(&inbox);
    let (st, _, page) =
        sam.go("POST", &bolt_task, &format!("csrf={csrf}&status=in_progress")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "another book's task: {page}");
    let (st, loc, _) =
        sam.go("POST", &acme_task, &format!("csrf={csrf}&status=in_progress&note=called")).await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/inbox")));
    // The change is recorded under the person's email, not a name a client could send.
    let (_, _, page) = sam.go("GET", "/accounts/acme", "").await;
    assert!(page.contains("note by sam@acme.test: called"), "the author: {page}");
    // The audit log names who did it: everything for an admin (page and CSV), one's own
    // changes for others.
    let (st, _, page) = sam.go("GET", "/audit", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("1 of your changes"), "{page}");
    let (_, _, page) = vic.go("GET", "/audit", "").await;
    assert!(page.contains("0 of your changes") && !page.contains("sam@acme.test"), "{page}");
    let (st, _, page) = ada.go("GET", "/audit", "").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("<td>sam@acme.test</td><td>task.status</td>"), "{page}");
    let (st, _, csv) = ada.go("GET", "/audit.csv", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(csv.starts_with("at,who,action,account,target,detail\n"), "{csv}");
    assert!(csv.contains(",sam@acme.test,task.status,acme,"), "{csv}");
    // The portfolio is the book's: one account's MRR.
    let (_, _, page) = sam.go("GET", "/", "").await;
    assert!(page.contains("<small>MRR</small><b>100</b>"), "{page}");
    // A manager: the team's books (an alias counts), not another team's.
    let (mut max, _, _, _) = login("max@acme.test", PW).await;
    let (_, _, page) = max.go("GET", "/accounts", "").await;
    assert_eq!(listed(&page), ["acme", "bolt"]);
    let (_, _, page) = max.go("GET", "/", "").await;
    assert!(page.contains("<small>MRR</small><b>200</b>"), "{page}");
    // The team view: the manager's team's owners, one line each, not another team's.
    let (st, _, page) = max.go("GET", "/team", "").await;
    assert_eq!(st, StatusCode::OK);
    let owners: Vec<&str> = page
        .split("<tr><td><a href=\"/accounts?csm=")
        .skip(1)
        .map(|r| r.split('>').nth(1).unwrap().split('<').next().unwrap())
        .collect();
    assert_eq!(owners, ["kim.o", "sam lee"], "{page}");
    assert!(
        page.contains("sam lee</a></td><td class=\"num\">1</td><td class=\"num\">100</td>"),
        "{page}"
    );
    // Wrong passwords: refused alike for unknown emails; five in a row lock the email.
    let (_, st, _, page) = login("sam@acme.test", "not the password").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Unknown email or wrong password"), "{page}");
    let (_, st, _, _) = login("nobody@acme.test", PW).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    for _ in 0..4 {
        login("ana@acme.test", "wrong wrong wrong").await;
    }
    let (_, st, _, _) = login("ana@acme.test", "wrong wrong wrong").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, st, _, page) = login("ana@acme.test", PW).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "locked even with the right password");
    assert!(page.contains("Too many failed attempts"), "{page}");
    // Assigning an account moves it between books: sam gives acme to Kim, and from then
    // on Kim sees it and sam does not; the audit log says who did it.
    let (_, _, page) = sam.go("GET", "/accounts/acme", "").await;
    let csrf = csrf_of(&page);
    let (st, loc, page) =
        sam.go("POST", "/accounts/acme/owner", &format!("csrf={csrf}&owner=Kim+O")).await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/accounts/acme")), "{page}");
    let (st, _, _) = sam.go("GET", "/accounts/acme", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "no longer in sam's book");
    let (mut kim, _, _, _) = login("kim@acme.test", PW).await;
    let (st, _, page) = kim.go("GET", "/accounts/acme", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("acme Inc</h1>") && page.contains("CSM Kim O"), "the name stays: {page}");
    let (st, _, _) =
        sam.go("POST", "/accounts/bolt/owner", &format!("csrf={csrf}&owner=Sam+Lee")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "an account of another book cannot be taken");
    let (_, _, csv) = ada.go("GET", "/audit.csv", "").await;
    assert!(csv.contains(",sam@acme.test,account.assign,acme,,owner sam lee -> Kim O\n"), "{csv}");
    // Disabling a person ends their sessions at once (the keys file is read again).
    let mut keys = Keys::load(dir.path()).unwrap();
    keys.user_mut("sam@acme.test").unwrap().disabled = true;
    keys.save(dir.path()).unwrap();
    let start = Instant::now();
    loop {
        let (st, loc, _) = sam.go("GET", "/accounts", "").await;
        if (st, loc.as_deref()) == (StatusCode::SEE_OTHER, Some("/login")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(3), "still logged in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A first start does not flood the inbox: a rule that would open more tasks at once than
/// `digest_above` records its alerts in a digest; the inbox shows the digest, its page lists
/// the accounts (of the person's book), and "open a task for each" opens them, after which
/// the digest is gone. A new customer is left alone by the health and engagement rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_records_a_digest_instead_of_a_flood_of_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Keys::default();
    let (_, read) = keys.create("sam", &[Scope::Read, Scope::Write], "2026-01-01").unwrap();
    keys.save(dir.path()).unwrap();
    // Four customers since January without a touchpoint (no_engagement), one since last
    // week (within its onboarding grace); history imported before the service starts.
    let mut lines = String::new();
    for id in ["acme", "bolt", "cora", "dune", "newt"] {
        let since = if id == "newt" { "2026-05-25" } else { "2026-01-01" };
        lines += &json!({"type": "subscription", "timestamp": since, "account_id": id,
            "subscription_id": format!("{id}-s"), "amount": "100", "status": "active"})
        .to_string();
        lines.push('\n');
    }
    {
        let (mut imp, _) =
            tenure_engine::Importer::open(dir.path(), tenure_ingest::IngestConfig::defaults(None))
                .unwrap();
        let sum = imp
            .import(
                lines.as_bytes(),
                tenure_engine::import::Format::Jsonl,
                None,
                &mut |r| panic!("{r:?}"),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(sum.progress.accepted, 5);
    }
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    let mut o = Options::new(clock);
    o.config.service.digest_above = Some(3);
    let s = AppState::open(dir.path(), o).unwrap();
    let mut b = Browser { s: s.clone(), cookie: None };
    b.go("POST", "/login", &format!("key={}", enc(&read))).await;
    let start = Instant::now();
    let inbox = loop {
        let (_, _, page) = b.go("GET", "/inbox", "").await;
        if page.contains("Digests") {
            break page;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no digest: {page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!inbox.contains("/inbox/tasks/"), "no task opened: {inbox}");
    assert!(inbox.contains("no_engagement: 4 accounts on 2026-06-01"), "{inbox}");
    let i = inbox.find("/inbox/digest?").unwrap();
    let link = inbox[i..].split('"').next().unwrap().replace("&amp;", "&");
    let (st, _, page) = b.go("GET", &link, "").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    for id in ["acme", "bolt", "cora", "dune"] {
        assert!(page.contains(&format!("href=\"/accounts/{id}\"")), "{id}: {page}");
    }
    assert!(!page.contains("/accounts/newt"), "in its onboarding grace");
    let csrf = csrf_of(&page);
    let at = link.split("at=").nth(1).unwrap().to_string();
    let (st, loc, page) =
        b.go("POST", "/inbox/digest", &format!("csrf={csrf}&rule=no_engagement&at={at}")).await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/inbox")), "{page}");
    let start = Instant::now();
    loop {
        let (_, _, page) = b.go("GET", "/inbox", "").await;
        if page.matches("<tr class=\"task\">").count() == 4 && !page.contains("no_engagement: 4") {
            assert!(page.contains("opened by sam"), "{page}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "tasks not opened: {page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The inbox at scale: 55 accounts' tasks, 50 a page with numbered pages, most at stake
/// first; bulk assign, snooze and resolve; a routine task closes without a root cause, a
/// risk task only with one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_ranks_pages_and_works_tasks_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Keys::default();
    let (_, sam) = keys.create("sam", &[Scope::Read, Scope::Write], "2026-01-01").unwrap();
    let (_, ingest) = keys.create("pipe", &[Scope::Ingest], "2026-01-01").unwrap();
    keys.save(dir.path()).unwrap();
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    let s = AppState::open(dir.path(), Options::new(clock)).unwrap();
    let mut lines = String::new();
    for i in 0..55 {
        let id = format!("a{i:02}");
        for v in [
            json!({"type": "subscription", "timestamp": "2026-01-01", "account_id": id,
                   "subscription_id": format!("{id}-s"), "amount": format!("{}", 100 + 37 * i), "status": "active"}),
            json!({"type": "survey_response", "timestamp": "2026-06-01T10:00:00Z", "account_id": id, "survey": "nps", "score": 2}),
        ] {
            lines += &(v.to_string() + "\n");
        }
    }
    let r = Request::post("/api/v1/events")
        .header("authorization", format!("Bearer {ingest}"))
        .body(Body::from(lines))
        .unwrap();
    assert_eq!(app(s.clone()).oneshot(r).await.unwrap().status(), StatusCode::OK);
    let mut b = Browser { s: s.clone(), cookie: None };
    b.go("POST", "/login", &format!("key={}", enc(&sam))).await;
    // Every account's detractor task (and, health permitting, others of high severity).
    let count = |page: &str| -> usize {
        let i = page.find(" tasks, most at stake").unwrap();
        page[..i].rsplit('>').next().unwrap().parse().unwrap()
    };
    // Until every task is open: at least the 55 detractor tasks, and the same count twice
    // 300 ms apart (the applier may still be opening the others; a count read mid-way made
    // the last page disagree with the first).
    let start = Instant::now();
    let mut last = 0;
    let page1 = loop {
        let (_, _, page) = b.go("GET", "/inbox?severity=high", "").await;
        let c = count(&page);
        if c >= 55 && c == last {
            break page;
        }
        last = c;
        assert!(start.elapsed() < Duration::from_secs(10), "not all tasks: {page}");
        tokio::time::sleep(Duration::from_millis(if c >= 55 { 300 } else { 10 })).await;
    };
    let n = count(&page1);
    let pages = n.div_ceil(50);
    let rows = |page: &str| page.matches("<tr class=\"task\">").count();
    assert_eq!(rows(&page1), 50);
    assert!(page1.contains("aria-current=\"page\">1</b>") && page1.contains("page=2\">2</a>"));
    let mut all = vec![page1.clone()];
    for k in 2..=pages {
        let (_, _, p) = b.go("GET", &format!("/inbox?severity=high&page={k}"), "").await;
        all.push(p);
    }
    assert_eq!(rows(all.last().unwrap()), n - 50 * (pages - 1));
    // Most at stake first: within one severity and without renewals, the expected MRR
    // loss never rises down the list, across the pages.
    let stakes: Vec<f64> = all
        .iter()
        .flat_map(|p| p.split("<tr class=\"task\">").skip(1))
        .map(|tr| {
            let cell = tr.split("<td class=\"num\">").nth(1).unwrap();
            cell.split(' ').next().unwrap().replace(',', "").parse::<f64>().unwrap()
        })
        .collect();
    assert_eq!(stakes.len(), n);
    assert!(stakes.windows(2).all(|w| w[0] >= w[1]), "{stakes:?}");
    assert!(stakes[0] > stakes[n - 1], "{stakes:?}");
    // Every control of the task rows has an accessible name.
    let table = page1.split("<tbody>").nth(1).unwrap();
    for tag in table.split('<').filter(|t| t.starts_with("input ") || t.starts_with("select ")) {
        let named = tag.contains("type=\"hidden\"") || tag.contains("aria-label=");
        assert!(named, "unlabelled: <{tag}");
    }
    // Bulk: three tasks assigned, snoozed, then resolved (a detractor's asks a cause).
    let ids: Vec<String> = page1
        .split("name=\"task\" value=\"")
        .skip(1)
        .take(3)
        .map(|x| x.split('"').next().unwrap().to_string())
        .collect();
    let csrf = csrf_of(&page1);
    let chosen: String = ids.iter().map(|i| format!("&task={i}")).collect();
    let (st, loc, page) =
        b.go("POST", "/inbox/bulk", &format!("csrf={csrf}&action=assign&owner=kim{chosen}")).await;
    assert_eq!((st, loc.as_deref()), (StatusCode::SEE_OTHER, Some("/inbox")), "{page}");
    let (st, _, _) =
        b.go("POST", "/inbox/bulk", &format!("csrf={csrf}&action=snooze&days=7{chosen}")).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let (st, _, page) =
        b.go("POST", "/inbox/bulk", &format!("csrf={csrf}&action=resolve{chosen}")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a detractor's task needs a root cause: {page}");
    assert!(page.contains("3 of 3 tasks were not changed"), "{page}");
    let api = |path: String| {
        let (s, sam) = (s.clone(), sam.clone());
        async move {
            let r = Request::get(path)
                .header("authorization", format!("Bearer {sam}"))
                .body(Body::empty())
                .unwrap();
            let resp = app(s).oneshot(r).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()
        }
    };
    let start = Instant::now();
    loop {
        let t = api(format!("/api/v1/tasks/{}", ids[0])).await;
        if t["owner"] == "kim" && t["due"] == "2026-06-08T12:00:00Z" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{t}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (st, _, _) = b
        .go(
            "POST",
            "/inbox/bulk",
            &format!("csrf={csrf}&action=resolve&root_cause=product_gap{chosen}"),
        )
        .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    // A routine task (no touchpoint in 90 days) closes without a root cause.
    let all = api("/api/v1/tasks?rule=no_engagement".into()).await;
    let routine = all["tasks"][0]["task_id"].as_str().expect("a no_engagement task").to_string();
    let r = Request::patch(format!("/api/v1/tasks/{routine}"))
        .header("authorization", format!("Bearer {sam}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"status":"done","note":"call booked"}"#))
        .unwrap();
    assert_eq!(app(s.clone()).oneshot(r).await.unwrap().status(), StatusCode::OK);
    let (_, _, page) = b.go("GET", "/inbox?severity=low", "").await;
    let row = page.split("<tr class=\"task\">").nth(1).unwrap();
    assert!(!row.contains("name=\"root_cause\""), "no cause asked for routine work: {row}");
}

/// The accounts list shows customers unless asked otherwise, and an account's id beside
/// its name when another account has the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_customers_by_default_and_repeated_names_show_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Keys::default();
    let (_, read) = keys.create("sam", &[Scope::Read], "2026-01-01").unwrap();
    let (_, ingest) = keys.create("pipe", &[Scope::Ingest], "2026-01-01").unwrap();
    keys.save(dir.path()).unwrap();
    let clock = Arc::new(|| Timestamp::parse("2026-06-01T12:00:00Z").unwrap());
    let s = AppState::open(dir.path(), Options::new(clock)).unwrap();
    let events: String = [
        json!({"type": "account", "timestamp": "2026-01-01", "account_id": "x1", "name": "Globex"}),
        json!({"type": "account", "timestamp": "2026-01-01", "account_id": "x2", "name": "Globex"}),
        json!({"type": "account", "timestamp": "2026-01-01", "account_id": "x3", "name": "Initech"}),
        json!({"type": "account", "timestamp": "2026-01-01", "account_id": "p1", "name": "Prospect"}),
        json!({"type": "subscription", "timestamp": "2026-01-01", "account_id": "x1", "subscription_id": "s1", "amount": "10", "status": "active"}),
        json!({"type": "subscription", "timestamp": "2026-01-01", "account_id": "x2", "subscription_id": "s2", "amount": "10", "status": "active"}),
        json!({"type": "subscription", "timestamp": "2026-01-01", "account_id": "x3", "subscription_id": "s3", "amount": "10", "status": "active"}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect();
    let r = Request::post("/api/v1/events")
        .header("authorization", format!("Bearer {ingest}"))
        .body(Body::from(events))
        .unwrap();
    assert_eq!(app(s.clone()).oneshot(r).await.unwrap().status(), StatusCode::OK);
    let mut b = Browser { s: s.clone(), cookie: None };
    b.go("POST", "/login", &format!("key={}", enc(&read))).await;
    let start = Instant::now();
    let page = loop {
        let (_, _, page) = b.go("GET", "/accounts", "").await;
        if page.contains("3 accounts") {
            break page;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{page}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!page.contains("/accounts/p1"), "customers only by default");
    assert!(page.contains("Globex</a> <small class=\"muted\">x1</small>"), "{page}");
    assert!(page.contains("Globex</a> <small class=\"muted\">x2</small>"), "{page}");
    assert!(page.contains("Initech</a></td>"), "a unique name goes alone: {page}");
    let (_, _, page) = b.go("GET", "/accounts?customer=false", "").await;
    assert!(page.contains("4 accounts") && page.contains("/accounts/p1"), "{page}");
}

/// A churn model file: one tree splitting on failed payments in 90 days (the alerting
/// scenarios' fixture).
fn model_file() -> String {
    let scenario = include_str!("../../../tenure-alerting/tests/scenarios/churn_risk.txt");
    let start = scenario.find("== model\n").unwrap() + "== model\n".len();
    let end = start + scenario[start..].find("\n== ").unwrap();
    scenario[start..end].trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_saved_while_the_service_runs_is_used_at_once() {
    let f = tenure_testkit::Keyring::new();
    let s = tenure_testkit::open(f.path(), "2026-06-01T12:00:00Z");
    let (st, _) = tenure_testkit::call(
        &s,
        "POST",
        "/api/v1/events",
        Some(&f.ingest),
        &tenure_testkit::company(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let j = tenure_testkit::until(&s, &f.read, "/api/v1/accounts/acme", |j| !j["health"].is_null())
        .await;
    assert!(j["risk"].is_null(), "no model yet: {j}");
    let mut b = Browser { s: s.clone(), cookie: None };
    b.go("POST", "/login", &format!("key={}", enc(&f.read))).await;
    let (_, _, page) = b.go("GET", "/model", "").await;
    assert!(page.contains("No churn model in use (since 2026-06-01T12:00:00Z)"), "{page}");
    let (_, j) = tenure_testkit::call(&s, "GET", "/api/v1/model", Some(&f.read), "").await;
    assert_eq!(j, json!({"model": null, "since": "2026-06-01T12:00:00Z", "error": null}));
    // `tenure model train` writes the file; the service scores with it within seconds.
    let models = f.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("churn.json"), model_file()).unwrap();
    let start = Instant::now();
    let j = loop {
        let (_, j) =
            tenure_testkit::call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
        if j["risk"]["probability"].is_number() {
            break j;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the new model is not used: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let p = j["risk"]["probability"].as_f64().unwrap();
    assert!(p > 0.0 && p < 1.0, "{j}");
    assert_eq!(j["risk"]["drivers"], json!([]), "no failed payment, nothing drives it: {j}");
    // A failed payment: the one tree's +2 leaf (88%), explained by its SHAP value,
    // 2 - (90 x -1 + 10 x 2) / 100 = 2.7, on the page and over the API (as the alerting
    // scenario churn_risk.txt works out).
    let failed = json!({"type": "invoice", "timestamp": "2026-05-01", "account_id": "bolt",
                        "invoice_id": "i-failed", "amount": "50", "status": "failed"});
    let (st, _) =
        tenure_testkit::call(&s, "POST", "/api/v1/events", Some(&f.ingest), &format!("{failed}\n"))
            .await;
    assert_eq!(st, StatusCode::OK);
    let j = tenure_testkit::until(&s, &f.read, "/api/v1/accounts/bolt", |j| {
        j["risk"]["probability"].as_f64().is_some_and(|p| p > 0.5)
    })
    .await;
    let expected = 1.0 / (1.0 + (-2f64).exp());
    assert!((j["risk"]["probability"].as_f64().unwrap() - expected).abs() < 1e-12, "{j}");
    let d = &j["risk"]["drivers"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(
        (&d[0]["feature"], &d[0]["text"]),
        (&json!("failed_payments_90d"), &json!("1 failed payment in 90 days")),
        "{j}"
    );
    assert!((d[0]["contribution"].as_f64().unwrap() - 2.7).abs() < 1e-9, "{j}");
    let (_, _, page) = b.go("GET", "/accounts/bolt", "").await;
    assert!(
        page.contains("<h2>Why at risk</h2><ul><li>1 failed payment in 90 days</li></ul>"),
        "{page}"
    );
    let (_, _, page) = b.go("GET", "/model", "").await;
    assert!(
        page.contains("In use since 2026-06-01T12:00:00Z: the churn model (churn within 90 days), trained on 100 snapshots from 2025-01-01T00:00:00Z to 2026-01-01T00:00:00Z (10 churned)."),
        "{page}"
    );
    // A file that does not parse is shown, and the model in force stays.
    std::fs::write(models.join("churn.json"), "{\"format\": 1, \"trees\": ").unwrap();
    let start = Instant::now();
    let page = loop {
        let (_, _, page) = b.go("GET", "/model", "").await;
        if page.contains("cannot be used") {
            break page;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the broken file is not reported: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(page.contains("churn.json"), "{page}");
    let (_, j) = tenure_testkit::call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    assert_eq!(j["risk"]["probability"].as_f64(), Some(p), "the model in force stays: {j}");
    let (_, j) = tenure_testkit::call(&s, "GET", "/api/v1/model", Some(&f.read), "").await;
    assert_eq!(
        j["model"]["chosen"], "gradient-boosted trees (7 leaves)",
        "format 1 reads as trees: {j}"
    );
    assert!(j["error"].as_str().unwrap().contains("churn.json"), "{j}");
    // A model chosen by the selection (`tenure model train`): the API and the page say
    // which learner won, against which, and why (the verdict escaped).
    std::fs::write(models.join("churn.json"), chosen_model_file()).unwrap();
    let start = Instant::now();
    let j = loop {
        let (_, j) = tenure_testkit::call(&s, "GET", "/api/v1/model", Some(&f.read), "").await;
        if j["model"]["chosen"] == BLEND {
            break j;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the chosen model is not used: {j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(j["error"].is_null(), "{j}");
    assert_eq!(j["model"]["verdict"], VERDICT);
    assert_eq!(j["model"]["validation"]["churned"], 3);
    let c = &j["model"]["candidates"];
    assert_eq!((c[0]["name"].as_str(), c[0]["chosen"].as_bool()), (Some(BLEND), Some(true)), "{j}");
    assert_eq!(
        (&c[1]["auc"], c[1]["chosen"].as_bool()),
        (&serde_json::Value::Null, Some(false)),
        "{j}"
    );
    // The blend averages the trees' log-odds with the logistic model's (-2: 0.119).
    let (_, a) = tenure_testkit::call(&s, "GET", "/api/v1/accounts/acme", Some(&f.read), "").await;
    let q = a["risk"]["probability"].as_f64().unwrap();
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let expected = 1.0 / (1.0 + (-(logit(p) - 2.0) / 2.0).exp());
    assert!((q - expected).abs() < 1e-9, "{q} against {expected}");
    let (_, _, page) = b.go("GET", "/model", "").await;
    assert!(page.contains("<p id=\"verdict\"><b>blend of gradient-boosted trees (3 leaves) and logistic regression (L2 10)</b></p>"), "{page}");
    assert!(page.contains("too few to tell &lt;learners&gt; apart"), "escaped: {page}");
    assert!(
        page.contains(
            "logistic regression (L2 10)</td><td class=\"num\">0.2500</td><td class=\"num\">–</td>"
        ),
        "{page}"
    );
    assert!(page.contains("(in use)"), "{page}");
}

const BLEND: &str = "blend of gradient-boosted trees (3 leaves) and logistic regression (L2 10)";
const VERDICT: &str = "blend of gradient-boosted trees (3 leaves) and logistic regression (L2 10), the default: 3 churned are too few to tell <learners> apart";

/// The fixture's trees blended with a logistic model of intercept -2 and no slope, with a
/// selection as `tenure model train` saves it.
fn chosen_model_file() -> String {
    let mut m: serde_json::Value = serde_json::from_str(&model_file()).unwrap();
    let o = m.as_object_mut().unwrap();
    let (gbm, platt) = (o.remove("gbm").unwrap(), o.remove("platt").unwrap());
    let n = tenure_health::features::N;
    o.insert("format".into(), json!(2));
    o.insert(
        "learner".into(),
        json!({"blend": {"members": [
            {"trees": {"gbm": gbm, "platt": platt}},
            {"logistic": {"l2": 10.0, "mean": vec![0.0; n], "sd": vec![1.0; n], "missing": [],
                          "onehot": [[], []], "coef": vec![0.0; n], "intercept": -2.0}}]}}),
    );
    o.insert(
        "selection".into(),
        json!({"rule": "the default unless clearly beaten", "fit_snapshots": 80, "validation_snapshots": 20,
               "validation_churned": 3, "validation_from": "2025-10-01T00:00:00Z", "validation_to": "2026-01-01T00:00:00Z",
               "candidates": [{"name": BLEND, "log_loss": 0.2, "auc": 0.7, "ece": 0.01},
                              {"name": "logistic regression (L2 10)", "log_loss": 0.25, "auc": null, "ece": 0.02}],
               "chosen": BLEND, "verdict": VERDICT}),
    );
    m.to_string()
}
