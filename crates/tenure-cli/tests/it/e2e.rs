//! The dashboard in a real headless Chromium (driven through chromedriver's WebDriver API):
//! `tenure demo` serves a generated company; the browser logs in, loads every page, clicks
//! through to an account's 360 view, resolves a task with a root cause, then logs in as a
//! CSM (their book only; tasks snoozed in bulk), their manager (the team view), a viewer
//! (changes refused) and an admin (the audit log names who did what), and saves a
//! screenshot of each step (target/e2e/). It fails on any browser console error, on any
//! link that does not answer 200, and on any accessibility violation of critical or serious
//! impact that axe-core finds on a page (WCAG 2.1 A and AA).
//!
//! Needs Debian's `chromium` and `chromium-driver`, and npm for axe-core (`.ci/run` installs
//! them).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 exchange (a new connection each time); the status and body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    c.write_all(req.as_bytes()).unwrap();
    c.write_all(body.as_bytes()).unwrap();
    // Read by Content-Length: chromedriver keeps the connection open whatever we ask.
    let mut r = BufReader::new(c);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut len = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).unwrap();
        }
        None => {
            r.read_to_end(&mut body).unwrap();
        }
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

struct Driver {
    addr: String,
    session: String,
    child: Child,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: install Debian's chromium and chromium-driver (see README)");
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let (st, body) = http(
            &addr,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            &caps.to_string(),
        );
        assert_eq!(st, 200, "new session: {body}");
        let j: Value = serde_json::from_str(&body).unwrap();
        let session = j["value"]["sessionId"].as_str().unwrap().to_string();
        Driver { addr, session, child }
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let p = format!("/session/{}{path}", self.session);
        let (st, text) = http(
            &self.addr,
            method,
            &p,
            &[("Content-Type", "application/json")],
            &body.to_string(),
        );
        let j: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(st, 200, "{method} {path}: {text}");
        j["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({"using": "css selector", "value": css}));
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no {css}"))
            .to_string()
    }

    fn click(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/click"), json!({}));
    }

    fn script(&self, js: &str) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": js, "args": []}))
    }

    /// The page's accessibility violations of critical or serious impact, by axe-core
    /// (Deque's rules engine: WCAG 2 A and AA, contrast included), injected into the page.
    fn axe(&self, source: &str) -> Vec<Value> {
        let js = format!(
            "{source}\n;const done = arguments[arguments.length - 1];\
             axe.run(document, {{runOnly: {{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}}})\
             .then(r => done(r.violations.filter(v => v.impact === 'critical' || v.impact === 'serious')\
             .map(v => ({{id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.html)}}))))\
             .catch(e => done([{{id: 'axe-failed', help: String(e)}}]));"
        );
        let v = self.cmd("POST", "/execute/async", json!({"script": js, "args": []}));
        v.as_array().cloned().unwrap_or_else(|| panic!("axe answered {v}"))
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", json!({})).as_str().unwrap_or("").to_string()
    }

    /// The page's URL once `done` holds for it, or the last one after 10 s: a click's
    /// navigation may still be under way when the click returns (seen on a loaded machine).
    fn url_when(&self, done: impl Fn(&str) -> bool) -> String {
        let mut u = self.url();
        for _ in 0..200 {
            if done(&u) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            u = self.url();
        }
        u
    }

    /// Saves a screenshot and fails on console errors since the last check.
    fn check(&self, dir: &std::path::Path, name: &str) {
        let png = self.cmd("GET", "/screenshot", json!({}));
        let bytes = decode64(png.as_str().unwrap());
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
        let logs = self.cmd("POST", "/se/log", json!({"type": "browser"}));
        let errors: Vec<&Value> =
            logs.as_array().into_iter().flatten().filter(|l| l["level"] == "SEVERE").collect();
        assert!(errors.is_empty(), "{name}: console errors: {errors:?}");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = http(&self.addr, "DELETE", &format!("/session/{}", self.session), &[], "");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decode64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    } as u32;
    let b: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(b.len() * 3 / 4);
    for chunk in b.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

struct Demo(Child);
impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// axe-core's script, from the npm registry (pinned) into target/e2e/node the first time.
fn axe_source(dir: &std::path::Path) -> String {
    let node = dir.join("node");
    let file = node.join("node_modules/axe-core/axe.min.js");
    if !file.is_file() {
        let o = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&node)
            .arg("axe-core@4.10.2")
            .output()
            .expect("npm, to install axe-core for the accessibility checks (apt install npm)");
        assert!(o.status.success(), "npm install axe-core: {}", String::from_utf8_lossy(&o.stderr));
    }
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn the_demo_dashboard_in_a_real_browser() {
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../e2e");
    std::fs::create_dir_all(&shots).unwrap();
    let axe = axe_source(&shots);
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["demo", "--accounts", "250", "--months", "24", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let demo = Demo(child);
    let (mut base, mut key) = (String::new(), String::new());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(u) = line.trim().strip_prefix("The dashboard: ") {
            base = u.to_string();
        }
        if let Some(k) = line.trim().strip_prefix("Log in with this key: ") {
            key = k.split_whitespace().next().unwrap_or("").to_string();
            break;
        }
        line.clear();
    }
    assert!(!base.is_empty() && !key.is_empty(), "the demo did not start");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let d = Driver::start();
    // Log in.
    d.go(&format!("{base}/login"));
    d.check(&shots, "01-login");
    let input = d.find("input#key");
    d.cmd("POST", &format!("/element/{input}/value"), json!({"text": key}));
    d.click(&d.find("button#key-login"));
    let home = format!("{base}/");
    assert_eq!(d.url_when(|u| u == home), home);
    // Every page loads without console errors; every link on it answers 200.
    let cookie = d.cmd("GET", "/cookie/tenure_session", json!({}));
    let cookie = format!("tenure_session={}", cookie["value"].as_str().unwrap());
    let host = base.trim_start_matches("http://").to_string();
    let mut seen = std::collections::BTreeSet::new();
    for (i, page) in [
        "/",
        "/accounts",
        "/accounts?sort=risk",
        "/cohorts",
        "/inbox",
        "/model",
        "/renewals",
        "/team",
        "/audit",
    ]
    .iter()
    .enumerate()
    {
        d.go(&format!("{base}{page}"));
        let h1 = d.script(
            "return document.querySelector('h1') && document.querySelector('h1').textContent",
        );
        assert!(h1.as_str().is_some_and(|t| !t.is_empty()), "{page}: no heading");
        let violations = d.axe(&axe);
        assert!(violations.is_empty(), "{page}: accessibility: {violations:#?}");
        d.check(
            &shots,
            &format!(
                "{:02}-{}",
                i + 2,
                match page.trim_start_matches('/') {
                    "" => "portfolio".to_string(),
                    p => p.replace(['?', '=', '/', '&'], "-"),
                }
            ),
        );
        let links = d.script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))");
        for l in links.as_array().unwrap() {
            let l = l.as_str().unwrap().replace("&amp;", "&");
            assert!(l.starts_with('/'), "{page}: a link leaves the site: {l}");
            if seen.insert(l.clone()) {
                let (st, _) = http(&host, "GET", &l, &[("Cookie", &cookie)], "");
                assert_eq!(st, 200, "{page}: broken link {l}");
            }
        }
    }
    assert!(seen.len() > 20, "links checked: {}", seen.len());
    // Click through to an account's 360 view.
    d.go(&format!("{base}/accounts?sort=risk"));
    let first = d.find("table tbody a[href^='/accounts/']");
    d.click(&first);
    let account = format!("{base}/accounts/");
    let at = d.url_when(|u| u.starts_with(&account));
    assert!(at.starts_with(&account), "{at}");
    let charts = d.script("return document.querySelectorAll('svg.chart').length");
    assert!(charts.as_u64() >= Some(4), "the account view draws its charts: {charts}");
    let violations = d.axe(&axe);
    assert!(violations.is_empty(), "the account page: accessibility: {violations:#?}");
    d.check(&shots, "11-account-360");
    // Resolve the first open task from the inbox with a root cause.
    d.go(&format!("{base}/inbox"));
    let before = d
        .script("return document.querySelectorAll('tbody select[name=root_cause]').length")
        .as_u64()
        .unwrap();
    assert!(before > 0, "the demo raised tasks");
    let option = d.find("tbody select[name=root_cause] option[value=performance]");
    d.click(&option);
    let form = d.script("return document.querySelector('tbody select[name=root_cause]').form.querySelector('button').outerHTML");
    assert!(form.as_str().unwrap().contains("Resolve"));
    // The task resolved is the one that form is for (others may move up from page 2).
    let action = d.script("return document.querySelector('tbody select[name=root_cause]').form.getAttribute('action')");
    let action = action.as_str().unwrap().to_string();
    d.script("document.querySelector('tbody select[name=root_cause]').form.querySelector('button').click(); return 1");
    let start = Instant::now();
    let gone = format!("return document.querySelectorAll('form[action=\"{action}\"]').length");
    loop {
        let left = d.script(&gone).as_u64();
        // Back on the inbox the form returns to (`page=` is in its return address only).
        if left == Some(0) && d.url().contains("page=") {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let text = d.script("return document.body.textContent.slice(0, 600)");
            panic!("the task {action} was not resolved ({before} forms) at {}: {text}", d.url());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    d.check(&shots, "12-task-resolved");
    d.go(&format!("{base}/inbox?status=done"));
    let text = d.script("return document.body.textContent").as_str().unwrap().to_string();
    assert!(text.contains("performance"), "the resolved task shows its root cause");
    d.check(&shots, "13-done-tasks");
    // A phone-sized window.
    d.cmd("POST", "/window/rect", json!({"width": 390, "height": 844}));
    d.go(&format!("{base}/accounts"));
    d.check(&shots, "14-accounts-phone");
    d.cmd("POST", "/window/rect", json!({"width": 1280, "height": 900}));
    let mine = people(&d, &base, &host, &key, data.path(), &axe, &shots);
    // Single sign-on: the same data served with an [oidc] section, a real OpenID provider
    // (oidc-provider) signing the CSM in.
    drop(demo);
    sso(&d, data.path(), &axe, &shots, &mine);
    drop(d);
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The CSM signs in through the identity provider, in the browser, and lands on their book.
fn sso(d: &Driver, data: &std::path::Path, axe: &str, shots: &std::path::Path, mine: &[String]) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let idp = tenure_testkit::oidc_provider(
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../oidc"),
        &format!("{base}/login/oidc/callback"),
        Some("csm@demo.test"),
    );
    let config = data.join("sso.toml");
    std::fs::write(
        &config,
        format!(
            "[service]\npublic_url = \"{base}\"\n[oidc]\nissuer = \"http://{}\"\nclient_id = \"tenure\"\nclient_secret = \"tenure-secret\"\nlabel = \"Sign in with Demo SSO\"\n",
            idp.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenure"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let serve = Demo(child);
    let (mut line, mut said) = (String::new(), String::new());
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("tenure: serving") {
        said.push_str(&line);
        line.clear();
    }
    assert!(line.contains("tenure: serving"), "tenure serve did not start: {said}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    d.cmd("DELETE", "/cookie", json!({}));
    d.go(&format!("{base}/login"));
    let violations = d.axe(axe);
    assert!(violations.is_empty(), "the login page with single sign-on: {violations:#?}");
    d.check(shots, "19-login-sso");
    d.click(&d.find("a#sso-login"));
    let home = format!("{base}/");
    assert_eq!(d.url_when(|u| u == home), home, "signed in through the provider");
    d.go(&format!("{base}/accounts"));
    assert_eq!(account_links(d), mine, "the CSM's book, signed in by single sign-on");
    d.check(shots, "20-sso-book");
    drop(serve);
    drop(idp);
}

/// A person's password in the browser test.
const PW: &str = "correct horse battery staple";

/// Adds a person with `tenure user add` while the demo runs (the service reads the keys
/// file again within a second).
fn add_user(data: &std::path::Path, name: &str, email: &str, role: &str, team: Option<&str>) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tenure"));
    c.args(["user", "add", "--data"]).arg(data);
    c.args(["--name", name, "--email", email, "--role", role, "--password-stdin"]);
    if let Some(t) = team {
        c.args(["--team", t]);
    }
    let mut child =
        c.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{PW}\n").as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "tenure user add {email}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The ids of the accounts a page links to.
fn account_links(d: &Driver) -> Vec<String> {
    let v = d.script("return Array.from(document.querySelectorAll('table tbody a[href^=\"/accounts/\"]')).map(a => a.getAttribute('href').slice(10))");
    let mut ids: Vec<String> =
        v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    ids.dedup();
    ids
}

/// A CSM, their manager, a viewer and an admin in the browser: each sees what their role
/// allows (pages and API), the CSM works tasks in bulk, and the audit log names them.
fn people(
    d: &Driver,
    base: &str,
    host: &str,
    key: &str,
    data: &std::path::Path,
    axe: &str,
    shots: &std::path::Path,
) -> Vec<String> {
    let bearer = format!("Bearer {key}");
    let api = |path: &str| -> Value {
        let (st, body) = http(host, "GET", path, &[("Authorization", &bearer)], "");
        assert_eq!(st, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    // The CSM with the most open tasks, so that their inbox has work.
    let open = api("/api/v1/tasks?status=open&limit=1000");
    let mut by_owner: std::collections::BTreeMap<String, usize> = Default::default();
    for t in open["tasks"].as_array().unwrap() {
        if let Some(o) = t["owner"].as_str() {
            *by_owner.entry(o.to_string()).or_default() += 1;
        }
    }
    let (csm, tasks) = by_owner
        .iter()
        .max_by_key(|x| x.1)
        .map(|(o, n)| (o.clone(), *n))
        .expect("tasks with owners");
    assert!(tasks >= 2, "{csm} has {tasks} open tasks");
    let csm_of: std::collections::BTreeMap<String, Option<String>> =
        api("/api/v1/accounts?limit=1000")["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (a["account_id"].as_str().unwrap().to_string(), a["csm"].as_str().map(String::from))
            })
            .collect();
    let owner_of = |id: &str| csm_of.get(id).cloned().flatten();
    add_user(data, &csm, "csm@demo.test", "csm", Some("north"));
    add_user(data, "Mia Lund", "mia@demo.test", "manager", Some("north"));
    add_user(data, "Val Stone", "val@demo.test", "viewer", None);
    add_user(data, "Ada Admin", "ada@demo.test", "admin", None);
    let home = format!("{base}/");
    let login = |email: &str| {
        let start = Instant::now();
        loop {
            d.cmd("DELETE", "/cookie", json!({}));
            d.go(&format!("{base}/login"));
            let e = d.find("input#email");
            d.cmd("POST", &format!("/element/{e}/value"), json!({"text": email}));
            let p = d.find("input#password");
            d.cmd("POST", &format!("/element/{p}/value"), json!({"text": PW}));
            d.click(&d.find("button#password-login"));
            if d.url_when(|u| u == home) == home {
                return;
            }
            // The keys file is read again within a second of a change.
            assert!(start.elapsed() < Duration::from_secs(30), "{email} cannot log in");
        }
    };
    // The CSM: their book only, on every page, and in bulk.
    login("csm@demo.test");
    for page in ["/", "/accounts", "/inbox"] {
        d.go(&format!("{base}{page}"));
        let violations = d.axe(axe);
        assert!(violations.is_empty(), "{page} as a CSM: accessibility: {violations:#?}");
    }
    d.go(&format!("{base}/accounts"));
    let mine = account_links(d);
    assert!(!mine.is_empty(), "the CSM's accounts");
    for id in &mine {
        assert_eq!(owner_of(id).as_deref(), Some(csm.as_str()), "{id} is not in {csm}'s book");
    }
    let theirs = api("/api/v1/accounts?limit=1000")["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["csm"].as_str().is_some_and(|c| c != csm))
        .map(|a| a["account_id"].as_str().unwrap().to_string())
        .expect("an account of another CSM");
    d.go(&format!("{base}/accounts/{theirs}"));
    let h1 = d.script("return document.querySelector('h1').textContent");
    assert_eq!(h1, json!("404"), "another book's account is as unknown as a missing one");
    // That 404 is the browser's console's only error: read it off, so checks see the rest.
    d.cmd("POST", "/se/log", json!({"type": "browser"}));
    d.go(&format!("{base}/inbox"));
    let listed = account_links(d);
    assert!(listed.iter().all(|id| owner_of(id).as_deref() == Some(csm.as_str())), "{listed:?}");
    // Snooze the first two tasks for 7 days at once.
    let boxes = d.script("return document.querySelectorAll('input[name=task][form=bulk]').length");
    assert!(boxes.as_u64() >= Some(2), "{boxes}");
    d.script("const b = document.querySelectorAll('input[name=task][form=bulk]'); b[0].click(); b[1].click(); return 1");
    d.click(&d.find("form#bulk select[name=action] option[value=snooze]"));
    let days = d.find("form#bulk input[name=days]");
    d.cmd("POST", &format!("/element/{days}/value"), json!({"text": "7"}));
    d.check(shots, "15-csm-bulk");
    d.click(&d.find("form#bulk button"));
    // Done: back on the inbox page the form was sent from.
    let back = d.url_when(|u| u.contains("/inbox?") && u.contains("page="));
    assert!(back.contains("page="), "the bulk change: {back}");
    d.check(shots, "16-csm-bulk-done");
    // The manager: the team's books, and the team view of its owners.
    login("mia@demo.test");
    d.go(&format!("{base}/team"));
    let violations = d.axe(axe);
    assert!(violations.is_empty(), "/team as a manager: accessibility: {violations:#?}");
    let owners = d.script("return Array.from(document.querySelectorAll('table tbody tr td:first-child')).map(td => td.textContent)");
    assert_eq!(owners, json!([csm]), "the team's owners");
    d.check(shots, "17-manager-team");
    d.go(&format!("{base}/accounts"));
    assert_eq!(account_links(d), mine, "the manager sees the team's book");
    // The viewer: every account, and no change goes through.
    login("val@demo.test");
    d.go(&format!("{base}/accounts"));
    assert!(
        account_links(d).iter().any(|id| owner_of(id).as_deref() != Some(csm.as_str())),
        "a viewer sees beyond one book"
    );
    d.go(&format!("{base}/inbox"));
    let forms = d.script("return document.querySelectorAll('form[action^=\"/inbox\"], form[action^=\"/accounts\"]').length");
    assert_eq!(forms, json!(0), "a viewer is offered no form");
    let rows = d.script("return document.querySelectorAll('tr.task').length");
    assert!(rows.as_u64() > Some(0), "a viewer sees the tasks");
    // And a change sent anyway (the session's own token) is refused.
    let csrf = d.script("return document.querySelector('input[name=csrf]').value");
    let cookie = d.cmd("GET", "/cookie/tenure_session", json!({}));
    let cookie = format!("tenure_session={}", cookie["value"].as_str().unwrap());
    let task = open["tasks"][0]["task_id"].as_str().unwrap();
    let form = format!("csrf={}&action=snooze&days=3&task={task}", csrf.as_str().unwrap());
    let (st, _) = http(
        host,
        "POST",
        "/inbox/bulk",
        &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    );
    assert_eq!(st, 403, "a viewer's change is refused");
    // The admin: the audit log says who did what.
    login("ada@demo.test");
    d.go(&format!("{base}/audit"));
    let violations = d.axe(axe);
    assert!(violations.is_empty(), "/audit: accessibility: {violations:#?}");
    // (who, action) of each entry.
    let rows = d.script(
        "return Array.from(document.querySelectorAll('table tbody tr')).map(tr => [tr.children[1].textContent, tr.children[2].textContent])",
    );
    let by = |who: &str| -> Vec<String> {
        rows.as_array()
            .unwrap()
            .iter()
            .filter(|r| r[0] == who)
            .map(|r| r[1].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(by("csm@demo.test"), ["task.due", "task.due"], "the two snoozed tasks: {rows}");
    assert_eq!(by("val@demo.test"), Vec::<String>::new(), "the viewer changed nothing");
    assert_eq!(by("cli").len(), 4, "the four people added: {rows}");
    d.check(shots, "18-admin-audit");
    mine
}
