//! Single sign-on against a real OpenID provider: the npm package oidc-provider, started
//! locally (scripts/oidc-provider.mjs; npm installs it under target/ the first time). The
//! test plays the browser: it follows the redirects to the provider and back, keeping the
//! provider's cookies, and hands the answer to the service. Needs node and npm.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use std::collections::BTreeMap;
use tenure_server::keys::Keys;
use tenure_server::oidc::OidcConfig;
use tenure_server::users::Role;
use tenure_server::{AppState, app};
use tenure_testkit::Keyring;
use tower::ServiceExt;

const CALLBACK: &str = "http://tenure.test/login/oidc/callback";

/// The provider, installed under target/oidc.
fn provider() -> tenure_testkit::OidcProvider {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../oidc");
    tenure_testkit::oidc_provider(&dir, CALLBACK, None)
}

/// A response's status, headers (lower-case names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn cookies(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| {
                let (k, v) = v.split(';').next()?.split_once('=')?;
                Some((k.trim().to_string(), v.to_string()))
            })
            .collect()
    }
}

/// A GET to the provider, with the cookies it set so far.
fn provider_get(addr: &str, path: &str, jar: &BTreeMap<String, String>) -> Answer {
    let cookie: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nConnection: close\r\n\r\n",
        cookie.join("; ")
    );
    let text = tenure_testkit::wire::exchange(addr, raw.as_bytes()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status, headers, body: body.to_string() }
}

/// A GET to the service, with a Cookie header.
async fn service_get(s: &AppState, path: &str, cookie: Option<&str>) -> Answer {
    let mut r = Request::builder().uri(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    let resp = app(s.clone()).oneshot(r.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// Signs in as `who` at the provider: the service's start, the provider's redirects, and
/// the callback URL the provider sends the browser to, with the state cookie the service
/// set.
async fn sign_in_at_provider(
    s: &AppState,
    p: &tenure_testkit::OidcProvider,
    who: &str,
) -> (String, String) {
    let start = service_get(s, &format!("/login/oidc?login_hint={who}"), None).await;
    assert_eq!(start.status, 303, "{}", start.body);
    let state =
        start.cookies().into_iter().find(|(k, _)| k == "tenure_oidc").expect("the state cookie");
    let set = start.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Lax")
            && set.contains("Path=/login/oidc"),
        "{set}"
    );
    let mut at = start.header("location").unwrap().to_string();
    let base = format!("http://{}", p.addr);
    assert!(at.starts_with(&format!("{base}/auth?")), "{at}");
    assert!(
        at.contains("code_challenge_method=S256") && at.contains("nonce="),
        "PKCE and a nonce: {at}"
    );
    let mut jar = BTreeMap::new();
    for _ in 0..10 {
        if at.starts_with(CALLBACK) {
            return (
                at.trim_start_matches("http://tenure.test").to_string(),
                format!("tenure_oidc={}", state.1),
            );
        }
        let path = at.strip_prefix(&base).map(String::from).unwrap_or(at.clone());
        let a = provider_get(&p.addr, &path, &jar);
        jar.extend(a.cookies());
        assert!([302, 303].contains(&a.status), "{path}: {} {}", a.status, a.body);
        let next = a.header("location").unwrap().to_string();
        at = if next.starts_with('/') { format!("{base}{next}") } else { next };
    }
    panic!("the provider did not send the browser back: {at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_with_a_real_openid_provider() {
    let p = provider();
    let f = Keyring::new();
    let mut keys = Keys::load(f.path()).unwrap();
    keys.add_user("Sam", "sam@acme.test", Role::Csm, None, "2026-01-01").unwrap();
    keys.add_user("Dee", "dee@acme.test", Role::Csm, None, "2026-01-01").unwrap();
    keys.user_mut("dee@acme.test").unwrap().disabled = true;
    keys.save(f.path()).unwrap();
    let issuer = format!("http://{}", p.addr);
    let s = tenure_testkit::open_with(f.path(), "2026-06-01T12:00:00Z", |o| {
        o.config.oidc = Some(OidcConfig {
            issuer,
            client_id: "tenure".into(),
            client_secret: Some("tenure-secret".into()),
            redirect_url: Some(CALLBACK.into()),
            label: Some("Sign in with Acme SSO".into()),
            scopes: None,
        });
    });
    let (st, _) = tenure_testkit::call(
        &s,
        "POST",
        "/api/v1/events",
        Some(&f.ingest),
        &tenure_testkit::company(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let login = service_get(&s, "/login", None).await;
    assert!(
        login.body.contains("href=\"/login/oidc\">Sign in with Acme SSO</a>"),
        "{}",
        login.body
    );

    // Sam signs in at the provider and comes back with a session.
    let (callback, state) = sign_in_at_provider(&s, &p, "sam@acme.test").await;
    let back = service_get(&s, &callback, Some(&state)).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(back.body.contains("http-equiv=\"refresh\" content=\"0;url=/\""), "{}", back.body);
    let session =
        back.cookies().into_iter().find(|(k, _)| k == "tenure_session").expect("a session");
    let cleared = back.headers.iter().any(|(k, v)| {
        k == "set-cookie" && v.starts_with("tenure_oidc=;") && v.contains("Max-Age=0")
    });
    assert!(cleared, "the state cookie is cleared");
    // The session is Sam's: their book (acme), not Kim's (bolt).
    let cookie = format!("tenure_session={}", session.1);
    let page = service_get(&s, "/accounts", Some(&cookie)).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("href=\"/accounts/acme\"")
            && !page.body.contains("href=\"/accounts/bolt\""),
        "{}",
        page.body
    );
    // The same answer again: refused (a code and its state are good once).
    let again = service_get(&s, &callback, Some(&state)).await;
    assert_eq!(again.status, 401);
    assert!(again.body.contains("expired or was used already"), "{}", again.body);

    // An answer without this browser's state cookie is refused.
    let (callback, _) = sign_in_at_provider(&s, &p, "sam@acme.test").await;
    let stolen = service_get(&s, &callback, Some("tenure_oidc=somebody-elses")).await;
    assert_eq!(stolen.status, 401);
    assert!(stolen.body.contains("not started in this browser"), "{}", stolen.body);

    // Someone the provider knows but Tenure does not, or a disabled person: no session.
    for (who, status) in [("eve@acme.test", 403), ("dee@acme.test", 403)] {
        let (callback, state) = sign_in_at_provider(&s, &p, who).await;
        let r = service_get(&s, &callback, Some(&state)).await;
        assert_eq!(r.status, status, "{who}: {}", r.body);
        assert!(r.body.contains("is not a Tenure user"), "{}", r.body);
        assert!(
            !r.headers.iter().any(|(k, v)| k == "set-cookie" && v.starts_with("tenure_session="))
        );
    }
    // An email the provider has not verified is not enough.
    let (callback, state) = sign_in_at_provider(&s, &p, "unverified-sam@acme.test").await;
    let r = service_get(&s, &callback, Some(&state)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("has not verified this email"), "{}", r.body);
    // The provider's refusal is shown, escaped.
    let r = service_get(
        &s,
        "/login/oidc/callback?error=access_denied&error_description=%3Cb%3Eno%3C/b%3E",
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("access_denied (&lt;b&gt;no&lt;/b&gt;)"), "{}", r.body);
}
