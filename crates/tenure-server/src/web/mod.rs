//! The web dashboard, served by the same process: portfolio, accounts, account 360,
//! cohorts and survival, the alerts and tasks inbox, and the model's backtest. Pages are
//! rendered on the server as HTML with SVG charts: no script, no asset fetched, nothing to
//! build. People log in with their email and password (or an API key of the `read` scope)
//! and get a session cookie (HttpOnly, SameSite=Strict); each sees their book
//! ([`crate::users::Principal`]) on every page; every form that changes something carries
//! the session's CSRF token; every user string is escaped by [`html::esc`].

pub mod charts;
pub mod html;
mod pages;

use crate::keys::Scope;
use crate::users::Principal;
use crate::{AppState, log};
use axum::Form;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use tenure_core::time::Timestamp;

/// A logged-in user.
#[derive(Clone, Debug)]
pub struct Session {
    /// The key's id, or the user's.
    pub key_id: String,
    /// Who acts: the key's name, or the user's email (the author of what they change).
    pub name: String,
    pub csrf: String,
    pub expires: Timestamp,
    /// The accounts they see, worked out again on every request (a role or team changed
    /// in the keys file applies at once).
    pub principal: Principal,
    /// Whether they may change things (the write scope), worked out again on every
    /// request: pages show forms only to those who may send them.
    pub writes: bool,
}

/// Sessions by token (in memory: a restart logs everyone out), and the failed password
/// logins per email.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>, Mutex<HashMap<String, Failures>>);

/// Failed password logins of one email: after [`MAX_FAILURES`] in a row, each attempt
/// waits until [`LOCKOUT_SECS`] after the last failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Failures {
    count: u32,
    last: i64,
}

const MAX_FAILURES: u32 = 5;
const LOCKOUT_SECS: i64 = 15 * 60;

const COOKIE: &str = "tenure_session";
const HOURS: i64 = 12;

fn token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the system's random source");
    crate::notify::hex(&b)
}

fn cookie_of(h: &HeaderMap) -> Option<String> {
    named_cookie(h, COOKIE)
}

fn named_cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// The cookie binding a single sign-on to the browser that started it.
const OIDC_COOKIE: &str = "tenure_oidc";

/// The session of a request whose key or user is still valid (a revoked key or a disabled
/// user ends its sessions).
fn session(s: &AppState, h: &HeaderMap) -> Option<Session> {
    let t = cookie_of(h)?;
    let now = (s.0.clock)();
    let mut sess = {
        let mut map = s.0.sessions.0.lock().ok()?;
        let sess = map.get(&t)?.clone();
        if !s.0.keys.get().allows(&sess.key_id, Scope::Read) || sess.expires < now {
            map.remove(&t);
            return None;
        }
        sess
    };
    sess.principal = s.principal(&sess.key_id);
    sess.writes = s.0.keys.get().allows(&sess.key_id, Scope::Write);
    Some(sess)
}

fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")),
    );
    r
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // Nothing from elsewhere, no script at all, no framing.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

async fn login_page(State(s): State<AppState>) -> Response {
    html(StatusCode::OK, login_html(&s, None))
}

/// The login page, with the single sign-on button when it is configured.
fn login_html(s: &AppState, error: Option<&str>) -> String {
    html::login(error, s.0.oidc.as_ref().map(|o| o.label()))
}

/// Who a password login is: the user (id, email), or the page saying why not. Five
/// failures in a row for an email lock it for 15 minutes; the hash check runs on a
/// blocking thread, one at a time (each costs about 19 MiB and some milliseconds).
async fn password_login(
    s: &AppState,
    f: &HashMap<String, String>,
) -> Result<(String, String), Response> {
    static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let email = f.get("email").map(|e| e.trim().to_lowercase()).unwrap_or_default();
    let password = f.get("password").cloned().unwrap_or_default();
    let now = (s.0.clock)().secs();
    let refuse = |why: &str| html(StatusCode::UNAUTHORIZED, login_html(s, Some(why)));
    let locked =
        s.0.sessions
            .1
            .lock()
            .ok()
            .and_then(|m| m.get(&email).copied())
            .is_some_and(|f| f.count >= MAX_FAILURES && now < f.last + LOCKOUT_SECS);
    if locked {
        return Err(refuse("Too many failed attempts: try again in 15 minutes."));
    }
    if password.len() > 1024 || email.len() > 254 {
        return Err(refuse("Unknown email or wrong password."));
    }
    let Ok(_permit) = CHECKS.acquire().await else {
        return Err(refuse("The service is stopping."));
    };
    let keys = s.0.keys.get();
    let (e, p) = (email.clone(), password);
    let found = tokio::task::spawn_blocking(move || {
        keys.login(&e, &p).map(|u| (u.id.clone(), u.email.clone()))
    })
    .await
    .ok()
    .flatten();
    if let Ok(mut m) = s.0.sessions.1.lock() {
        match &found {
            Some(_) => {
                m.remove(&email);
            }
            None => {
                let f = m.entry(email).or_default();
                f.count += 1;
                f.last = now;
            }
        }
    }
    found.ok_or_else(|| refuse("Unknown email or wrong password."))
}

async fn login(State(s): State<AppState>, Form(f): Form<HashMap<String, String>>) -> Response {
    let (id, name) = if f.contains_key("email") {
        match password_login(&s, &f).await {
            Ok(who) => who,
            Err(r) => return r,
        }
    } else {
        let secret = f.get("key").map(|k| k.trim()).unwrap_or("");
        let found = s.0.keys.get().verify(secret).cloned();
        let Some(key) = found.filter(|k| k.allows(Scope::Read)) else {
            return html(
                StatusCode::UNAUTHORIZED,
                login_html(&s, Some("Unknown or revoked key, or one without the read scope.")),
            );
        };
        (key.id.clone(), key.identity().to_string())
    };
    start_session(&s, id, name, redirect("/"))
}

/// Opens a session for the key or user `id` acting as `name`: its cookie set on `r`.
fn start_session(s: &AppState, id: String, name: String, mut r: Response) -> Response {
    let t = token();
    let now = (s.0.clock)();
    if let Ok(mut m) = s.0.sessions.0.lock() {
        m.retain(|_, v| v.expires >= now);
        m.insert(
            t.clone(),
            Session {
                principal: s.principal(&id),
                name,
                key_id: id,
                csrf: token(),
                expires: Timestamp(now.0 + HOURS * 3600 * 1_000_000),
                writes: false,
            },
        );
    }
    let c = format!(
        "{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        HOURS * 3600,
        secure(s)
    );
    r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&c).expect("a valid cookie"));
    r
}

/// `; Secure` when the service is published over HTTPS (a reverse proxy in front).
fn secure(s: &AppState) -> &'static str {
    if s.0.core.public_url.as_deref().is_some_and(|u| u.starts_with("https://")) {
        "; Secure"
    } else {
        ""
    }
}

/// Single sign-on's start: to the identity provider, the state in a cookie (SameSite=Lax:
/// the provider's answer is a navigation from its site, which a Strict cookie would miss).
async fn oidc_start(State(s): State<AppState>, Query(p): Params) -> Response {
    let Some(oidc) = s.0.oidc.clone() else {
        return html(
            StatusCode::NOT_FOUND,
            login_html(&s, Some("Single sign-on is not configured.")),
        );
    };
    match oidc.begin(p.get("login_hint").map(String::as_str)).await {
        Ok((url, state)) => {
            let mut r = redirect(&url);
            let c = format!(
                "{OIDC_COOKIE}={state}; HttpOnly; SameSite=Lax; Path=/login/oidc; Max-Age=600{}",
                secure(&s)
            );
            r.headers_mut()
                .insert(header::SET_COOKIE, HeaderValue::from_str(&c).expect("a valid cookie"));
            r
        }
        Err(e) => {
            log("error", "single sign-on could not start", json!({"error": e.to_string()}));
            html(StatusCode::BAD_GATEWAY, login_html(&s, Some(&e.to_string())))
        }
    }
}

/// Single sign-on's end: the provider's answer checked, the person found among Tenure's
/// users by their verified email, a session opened. The page then moves to the portfolio
/// itself: a same-site navigation, which carries the Strict session cookie.
async fn oidc_callback(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    let refuse = |status: StatusCode, why: &str| html(status, login_html(&s, Some(why)));
    let Some(oidc) = s.0.oidc.clone() else {
        return refuse(StatusCode::NOT_FOUND, "Single sign-on is not configured.");
    };
    if let Some(e) = p.get("error") {
        let why = format!(
            "The identity provider refused the sign-in: {}{}",
            e,
            p.get("error_description").map_or(String::new(), |d| format!(" ({d})"))
        );
        return refuse(StatusCode::UNAUTHORIZED, &why);
    }
    let (Some(state), Some(code)) = (p.get("state"), p.get("code")) else {
        return refuse(StatusCode::BAD_REQUEST, "The identity provider's answer has no code.");
    };
    let cookie = named_cookie(&h, OIDC_COOKIE);
    let email = match oidc.finish(state, cookie.as_deref(), code).await {
        Ok(e) => e,
        Err(e) => {
            log("warn", "a single sign-on was refused", json!({"error": e.to_string()}));
            let status = match e {
                crate::oidc::OidcError::Refused(_) => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_GATEWAY,
            };
            return refuse(status, &e.to_string());
        }
    };
    let keys = s.0.keys.get();
    let Some(user) = keys.users.iter().find(|u| !u.disabled && u.email == email) else {
        let why = format!(
            "{email} signed in, but is not a Tenure user (or is disabled): an admin adds people with tenure user add."
        );
        return refuse(StatusCode::FORBIDDEN, &why);
    };
    let (id, name) = (user.id.clone(), user.email.clone());
    drop(keys);
    let page = html(
        StatusCode::OK,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=/\"><link rel=\"icon\" href=\"data:,\"><title>Signed in · Tenure</title></head><body><p><a href=\"/\">Signed in: continue to Tenure</a></p></body></html>".into(),
    );
    let mut r = start_session(&s, id, name, page);
    let gone = format!(
        "{OIDC_COOKIE}=; HttpOnly; SameSite=Lax; Path=/login/oidc; Max-Age=0{}",
        secure(&s)
    );
    r.headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_str(&gone).expect("a valid cookie"));
    r
}

fn csrf_ok(sess: &Session, f: &HashMap<String, String>) -> bool {
    f.get("csrf").is_some_and(|c| {
        c.len() == sess.csrf.len()
            && c.bytes().zip(sess.csrf.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
    })
}

async fn logout(
    State(s): State<AppState>,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if let Some(sess) = session(&s, &h) {
        if !csrf_ok(&sess, &f) {
            return html(StatusCode::FORBIDDEN, "<p>Bad form token.</p>".into());
        }
        if let (Some(t), Ok(mut m)) = (cookie_of(&h), s.0.sessions.0.lock()) {
            m.remove(&t);
        }
    }
    let mut r = redirect("/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("tenure_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}

type Params = Query<HashMap<String, String>>;

/// Renders a page for a logged-in user, or sends them to log in.
async fn show(
    s: AppState,
    h: HeaderMap,
    render: impl FnOnce(&AppState, &Session) -> Result<String, (StatusCode, String)> + Send + 'static,
) -> Response {
    let Some(sess) = session(&s, &h) else { return redirect("/login") };
    // Pages compute over every account: on a blocking thread, so the async workers keep
    // acknowledging events meanwhile.
    let session = sess.clone();
    let rendered = tokio::task::spawn_blocking(move || render(&s, &session))
        .await
        .unwrap_or_else(|_| Err((StatusCode::INTERNAL_SERVER_ERROR, "the page failed".into())));
    match rendered {
        Ok(body) => html(StatusCode::OK, body),
        Err((status, msg)) => html(
            status,
            html::page(
                "Error",
                "",
                &sess.csrf,
                &format!("<h1>{}</h1><p>{}</p>", status.as_u16(), html::esc(&msg)),
            ),
        ),
    }
}

async fn portfolio(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    show(s, h, move |s, sess| pages::portfolio(s, sess, &p)).await
}

async fn accounts(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    show(s, h, move |s, sess| pages::accounts(s, sess, &p)).await
}

async fn account(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    show(s, h, move |s, sess| pages::account(s, sess, &id)).await
}

async fn cohorts(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    show(s, h, move |s, sess| pages::cohorts(s, sess, &p)).await
}

async fn inbox(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    show(s, h, move |s, sess| pages::inbox(s, sess, &p)).await
}

async fn digest(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    show(s, h, move |s, sess| pages::digest(s, sess, &p)).await
}

async fn team(State(s): State<AppState>, h: HeaderMap) -> Response {
    show(s, h, pages::team).await
}

async fn audit(State(s): State<AppState>, h: HeaderMap) -> Response {
    show(s, h, pages::audit).await
}

/// The audit log as CSV: all of it for an admin, one's own changes otherwise.
async fn audit_csv(State(s): State<AppState>, h: HeaderMap) -> Response {
    let Some(sess) = session(&s, &h) else { return redirect("/login") };
    let made = tokio::task::spawn_blocking(move || pages::audit_entries(&s, &sess))
        .await
        .ok()
        .and_then(Result::ok);
    let Some(entries) = made else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the audit log could not be read")
            .into_response();
    };
    let mut r = tenure_engine::audit::to_csv(&entries).into_response();
    let hs = r.headers_mut();
    hs.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    hs.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tenure-audit.csv\""),
    );
    r
}

async fn explain(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    show(s, h, move |s, sess| pages::explain(s, sess, &p)).await
}

async fn model(State(s): State<AppState>, h: HeaderMap) -> Response {
    show(s, h, pages::model).await
}

async fn renewals(State(s): State<AppState>, h: HeaderMap, Query(p): Params) -> Response {
    show(s, h, move |s, sess| pages::renewals(s, sess, &p)).await
}

/// A CSM's call on a renewal from the Renewals page: stored as a `forecast_override` event
/// under the session's key name, then back to the page.
async fn renewal_call(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(account): UrlPath<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let Post { sess, back, fields } = match form_post(
        &s,
        &h,
        &f,
        ("/renewals", "/renewals"),
        "Your key can read but not make calls: that needs a key with the write scope.",
        &["category", "amount", "subscription_id", "reason"],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let stored =
        crate::forecast::record_call(&s, &account, &fields, &sess.name, &sess.principal).await;
    match stored {
        Ok(_) => {
            // Wait (bounded) for the applier to fold it, so the page shows the call.
            let n =
                s.0.core.live.read().map_or(0, |l| {
                    l.ledger.account(&account).map_or(0, |a| a.cs.forecast_calls.len())
                });
            for _ in 0..200 {
                let folded = s.0.core.live.read().is_ok_and(|l| {
                    l.ledger.account(&account).is_some_and(|a| a.cs.forecast_calls.len() > n)
                });
                if folded {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            redirect(&back)
        }
        Err(e)
            if matches!(
                e.status,
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::CONFLICT
            ) =>
        {
            not_made(
                &sess,
                e.status,
                "Not recorded",
                "The call was not recorded",
                &e.message,
                &back,
            )
        }
        Err(e) => e.into_response(),
    }
}

/// A 403 page saying why (`why` is our own text, not the user's).
fn forbidden(sess: &Session, why: &str) -> Response {
    html(
        StatusCode::FORBIDDEN,
        html::page("Forbidden", "", &sess.csrf, &format!("<h1>403</h1><p>{why}</p>")),
    )
}

/// What every form that changes something checks first, in this order: the session (else
/// the login page), the form's CSRF token, the page to go back to (`return`: a path of this
/// site under `under`, else `home`; browsers read `/\\host` or `/<tab>/host` as another
/// site), the write scope (checked now: the key may have changed since login; `cannot`
/// says what the key may not do). Then the form's non-empty `names`, trimmed.
fn form_post(
    s: &AppState,
    h: &HeaderMap,
    f: &HashMap<String, String>,
    (under, home): (&str, &str),
    cannot: &str,
    names: &[&str],
) -> Result<Post, Box<Response>> {
    let Some(sess) = session(s, h) else { return Err(Box::new(redirect("/login"))) };
    if !csrf_ok(&sess, f) {
        let why = "The form's token is missing or stale: reload the page.";
        return Err(Box::new(forbidden(&sess, why)));
    }
    let back = f
        .get("return")
        .filter(|r| {
            r.starts_with(under)
                && r.starts_with('/')
                && !r.starts_with("//")
                && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-.?=&%~".contains(&b))
        })
        .cloned()
        .unwrap_or_else(|| home.into());
    if !s.0.keys.get().allows(&sess.key_id, Scope::Write) {
        return Err(Box::new(forbidden(&sess, cannot)));
    }
    let mut fields = serde_json::Map::new();
    for k in names {
        if let Some(v) = f.get(*k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            fields.insert((*k).into(), v.into());
        }
    }
    Ok(Post { sess, back, fields })
}

/// A form post that passed [`form_post`]'s checks.
struct Post {
    sess: Session,
    back: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

/// The page saying a form's change was not made (`why`: the API's message), with the way
/// back.
fn not_made(
    sess: &Session,
    status: StatusCode,
    title: &str,
    what: &str,
    why: &str,
    back: &str,
) -> Response {
    html(
        status,
        html::page(
            title,
            "",
            &sess.csrf,
            &format!(
                "<h1>{what}</h1><p>{}. <a href=\"{}\">Back</a></p>",
                html::esc(why),
                html::esc(back)
            ),
        ),
    )
}

/// "Assign the account" on its page: a new owner, stored as an `account` event setting the
/// owner attribute (so the log says whose book it is from then on), and recorded in the
/// audit log under the person's name first (an `account` event has no author field).
async fn assign_owner(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(account): UrlPath<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let back = format!("/accounts/{}", html::url(&account));
    let Post { sess, fields, .. } = match form_post(
        &s,
        &h,
        &f,
        ("/accounts", "/accounts"),
        "You can read but not assign accounts: that needs a role or key that changes things.",
        &["owner"],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let refuse = |status: StatusCode, why: &str| {
        not_made(&sess, status, "Not assigned", "The account was not assigned", why, &back)
    };
    let Some(owner) = fields.get("owner").and_then(|v| v.as_str()).map(str::to_string) else {
        return refuse(StatusCode::BAD_REQUEST, "owner: a name is needed");
    };
    let now = (s.0.clock)();
    let before = {
        let Ok(live) = s.0.core.live.read() else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        // Outside the person's book: as unknown as a missing account.
        match live.ledger.account(&account).filter(|a| s.sees(&sess.principal, a, live.t)) {
            Some(a) => crate::api::attr(a, &s.0.owner_key, Timestamp(live.t.0 + 1)),
            None => {
                let why = format!("no account {account:?}");
                return not_made(
                    &sess,
                    StatusCode::NOT_FOUND,
                    "Not assigned",
                    "The account was not assigned",
                    &why,
                    "/accounts",
                );
            }
        }
    };
    let mut attributes = serde_json::Map::new();
    attributes.insert(s.0.owner_key.clone(), owner.clone().into());
    let line = serde_json::json!({"type": "account", "timestamp": now.to_string(), "account_id": account,
        "attributes": attributes});
    let event = match tenure_ingest::parse_json_line(&line.to_string(), None, &s.0.ingest) {
        Ok(e) => e,
        Err(e) => {
            let why = format!("{}: {}", e.field.unwrap_or_default(), e.reason);
            return refuse(StatusCode::BAD_REQUEST, &why);
        }
    };
    let entry = tenure_engine::audit::Entry {
        at: now.to_string(),
        who: sess.name.clone(),
        action: "account.assign".into(),
        account: Some(account.clone()),
        target: None,
        detail: format!("owner {} -> {owner}", before.as_deref().unwrap_or("(none)")),
    };
    let data = s.0.data.clone();
    let recorded =
        tokio::task::spawn_blocking(move || tenure_engine::audit::record(&data, &entry)).await;
    if !matches!(recorded, Ok(Ok(()))) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the audit log could not be written: nothing was changed",
        )
            .into_response();
    }
    match crate::writer::store(&s, vec![event]).await {
        Ok(_) => {
            // Wait (bounded) for the applier to fold it, so the page shows the new owner.
            for _ in 0..200 {
                let folded = s.0.core.live.read().is_ok_and(|l| {
                    l.ledger
                        .account(&account)
                        .and_then(|a| crate::api::attr(a, &s.0.owner_key, Timestamp(l.t.0 + 1)))
                        .as_deref()
                        == Some(owner.as_str())
                });
                if folded {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            redirect(&back)
        }
        Err(e) => e.into_response(),
    }
}

/// "Open a task for each" on a digest: each account of the digest in the person's book
/// gets its alert raised again now with a task (from the rule's playbook), recorded under
/// the person's name in the task's note. Back to the inbox.
async fn digest_open(
    State(s): State<AppState>,
    h: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let Post { sess, back, .. } = match form_post(
        &s,
        &h,
        &f,
        ("/inbox", "/inbox"),
        "You can read but not open tasks: that needs a role or key that changes things.",
        &[],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let refuse = |status: StatusCode, why: &str| {
        not_made(&sess, status, "Not opened", "No task was opened", why, &back)
    };
    let rule = f.get("rule").cloned().unwrap_or_default();
    let Some(at) = f.get("at").and_then(|a| Timestamp::parse(a).ok()) else {
        return refuse(StatusCode::BAD_REQUEST, "at: an instant is needed");
    };
    let now = (s.0.clock)();
    let events = {
        let Ok(live) = s.0.core.live.read() else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        let Some(index) = live.rules.rules.iter().position(|r| r.id == rule) else {
            return refuse(StatusCode::NOT_FOUND, "no such rule");
        };
        let book = live.ledger.accounts.iter().filter(|a| s.sees(&sess.principal, a, live.t));
        let Some(d) = tenure_alerting::raise::digests(book)
            .into_iter()
            .find(|d| d.rule == rule && d.at == at)
        else {
            return refuse(StatusCode::NOT_FOUND, "no such digest in your book");
        };
        let fired: Vec<tenure_alerting::Firing> = d
            .accounts
            .iter()
            .map(|account| {
                let was = live
                    .ledger
                    .account(account)
                    .and_then(|a| a.cs.alerts.iter().find(|x| x.ts == at && x.rule == rule))
                    .and_then(|x| x.message.clone())
                    .unwrap_or_default();
                tenure_alerting::Firing {
                    rule: index,
                    account: account.clone(),
                    message: format!(
                        "{was} (from the digest of {}, opened by {})",
                        at.date_string(),
                        sess.name
                    ),
                    source: None,
                }
            })
            .collect();
        let mut pending = tenure_alerting::Pending::default();
        tenure_alerting::raise(&live, fired, now, &mut pending, None)
            .into_iter()
            .flat_map(|r| std::iter::once(r.alert).chain(r.task))
            .collect::<Vec<_>>()
    };
    match crate::writer::store(&s, events).await {
        Ok(_) => redirect(&back),
        Err(e) => e.into_response(),
    }
}

/// The inbox's bulk form: one action (assign to an owner, snooze for some days, resolve)
/// on every selected task, each a `task` event under the person's name; tasks outside their
/// book are skipped as unknown. Resolving a task whose rule asks for a root cause needs one.
async fn bulk(
    State(s): State<AppState>,
    h: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let tasks: Vec<String> =
        pairs.iter().filter(|(k, _)| k == "task").map(|(_, v)| v.clone()).take(1000).collect();
    let f: HashMap<String, String> = pairs.into_iter().filter(|(k, _)| k != "task").collect();
    let Post { sess, back, fields } = match form_post(
        &s,
        &h,
        &f,
        ("/inbox", "/inbox"),
        "You can read but not change tasks: that needs a role or key that changes things.",
        &["action", "owner", "days", "root_cause"],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let refuse = |status: StatusCode, why: &str| {
        not_made(&sess, status, "Not changed", "Nothing was changed", why, &back)
    };
    let text = |k: &str| fields.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let now = (s.0.clock)();
    let mut change = serde_json::Map::new();
    match text("action").as_str() {
        "assign" if !text("owner").is_empty() => {
            change.insert("owner".into(), text("owner").into());
        }
        "snooze" => {
            let Some(days) = text("days").parse::<i64>().ok().filter(|d| (1..=365).contains(d))
            else {
                let why = "days: snoozing needs 1 to 365 days";
                return refuse(StatusCode::BAD_REQUEST, why);
            };
            change.insert("due".into(), now.add_days(days).to_string().into());
            change.insert("note".into(), format!("snoozed for {days} days").into());
        }
        "resolve" => {
            change.insert("status".into(), "done".into());
        }
        _ => {
            let why = "choose an action (assign needs an owner)";
            return refuse(StatusCode::BAD_REQUEST, why);
        }
    }
    if tasks.is_empty() {
        let why = "select at least one task";
        return refuse(StatusCode::BAD_REQUEST, why);
    }
    let mut failed = Vec::new();
    for id in &tasks {
        let mut c = change.clone();
        if c.contains_key("status") {
            let asks = s.0.core.live.read().is_ok_and(|l| {
                l.ledger
                    .accounts
                    .iter()
                    .find_map(|a| a.cs.tasks.iter().find(|t| &t.task_id == id))
                    .is_none_or(|t| pages::asks(&l, t))
            });
            if asks {
                if text("root_cause").is_empty() {
                    failed.push(format!("{id}: needs a root cause"));
                    continue;
                }
                c.insert("root_cause".into(), text("root_cause").into());
            }
        }
        if let Err(e) = crate::api::change_task(&s, id, &c, &sess.name, &sess.principal).await {
            failed.push(format!("{id}: {}", e.message));
        }
    }
    if failed.is_empty() {
        return redirect(&back);
    }
    let why = format!(
        "{} of {} tasks were not changed: {}",
        failed.len(),
        tasks.len(),
        failed.iter().take(10).cloned().collect::<Vec<_>>().join("; ")
    );
    not_made(
        &sess,
        StatusCode::BAD_REQUEST,
        "Partly changed",
        "Some tasks were not changed",
        &why,
        &back,
    )
}

/// A task change from a form (assign, comment, change status, resolve with a root cause):
/// stored as a `task` event, then back to the page the form was on.
async fn task_form(
    State(s): State<AppState>,
    h: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let Post { sess, back, fields } = match form_post(
        &s,
        &h,
        &f,
        ("/", "/inbox"),
        "Your key can read but not change tasks: changing them needs a key with the write scope.",
        &["status", "owner", "note", "root_cause", "due"],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match crate::api::change_task(&s, &id, &fields, &sess.name, &sess.principal).await {
        Ok((account, view)) => {
            // The applier folds it within moments; wait for it (bounded) so that the page
            // the user goes back to shows the change.
            for _ in 0..200 {
                let folded = s.0.core.live.read().is_ok_and(|l| {
                    l.ledger.account(&account).is_some_and(|a| a.cs.tasks.contains(&view))
                });
                if folded {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            redirect(&back)
        }
        Err(e)
            if matches!(
                e.status,
                StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::CONFLICT
            ) =>
        {
            not_made(&sess, e.status, "Not changed", "The task was not changed", &e.message, &back)
        }
        Err(e) => e.into_response(),
    }
}

/// Computes what the portfolio's default view needs ahead of the first visit.
pub fn warm(core: &crate::Core) {
    // Nobody will look at it: the stop (and its save) does not wait for it.
    if core.stopping.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Ok(live) = core.live.read() {
        pages::monthly_kpis(core, &live, 12, false);
    }
}

/// The dashboard's routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(portfolio))
        .route("/login", get(login_page).post(login))
        .route("/login/oidc", get(oidc_start))
        .route("/login/oidc/callback", get(oidc_callback))
        .route("/logout", post(logout))
        .route("/accounts", get(accounts))
        .route("/accounts/{id}", get(account))
        .route("/cohorts", get(cohorts))
        .route("/explain", get(explain))
        .route("/inbox", get(inbox))
        .route("/inbox/tasks/{id}", post(task_form))
        .route("/inbox/digest", get(digest).post(digest_open))
        .route("/inbox/bulk", post(bulk))
        .route("/team", get(team))
        .route("/accounts/{id}/owner", post(assign_owner))
        .route("/audit", get(audit))
        .route("/audit.csv", get(audit_csv))
        .route("/model", get(model))
        .route("/renewals", get(renewals))
        .route("/renewals/{id}/call", post(renewal_call))
}
