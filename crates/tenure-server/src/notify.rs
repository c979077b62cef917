//! Alert notifications: renders alerts for signed webhooks and Slack, and delivers them in
//! the background (a queue and a task per target, retries with backoff, a dead-letter file)
//! so that a slow or failing receiver never holds up ingest.
//!
//! Rendering ([`Notifier::request`]) is pure so that payloads and signatures are tested
//! without a network; delivery is one POST per connection through hyper's HTTP/1 client
//! (already in the build as axum's), over a TCP or rustls connection opened here, so that
//! connect and TLS failures keep their own errors.
//! Secrets never leave this module except inside the signature header on the wire: they are
//! not in `Debug` output, error messages or the dead-letter file. Slack webhook URLs carry
//! their token in the path, so errors name only the host.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, HOST, HeaderName, HeaderValue, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tenure_core::event::Severity;
use tenure_core::time::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Queue length per notifier: enough to ride out a receiver's outage of a few minutes at
/// alert rates; beyond it, alerts go to the dead-letter file instead of growing memory.
pub const QUEUE_CAPACITY: usize = 1024;
/// No single wait between attempts is longer, so one bad receiver cannot stall its queue
/// for long (Retry-After included).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Dead letters waiting to be written; past this they are counted as dropped rather than
/// making [`Dispatcher::send`] wait for the disk.
const DEAD_LETTER_CAPACITY: usize = 1024;
/// How long shutdown waits, after its grace period, for the tasks to write what is left to
/// the dead-letter file.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A response head larger than this is not a webhook receiver's answer (hyper's limit on
/// the status line and headers).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// How much of an error response's body is kept for the error message.
const MAX_ERROR_BODY: usize = 200;

/// The signature header; named once so that redaction cannot miss it.
const SIGNATURE_HEADER: &str = "X-Tenure-Signature";

/// One alert, as sent to every target.
#[derive(Clone, Debug, Serialize)]
pub struct Notification {
    pub alert_id: String,
    pub account_id: String,
    pub account_name: Option<String>,
    pub rule: String,
    pub severity: String,
    pub message: String,
    pub owner: Option<String>,
    pub task_id: Option<String>,
    /// RFC 3339.
    pub ts: String,
    pub link: Option<String>,
}

/// One person's daily digest: their new and overdue work (`crate::daily`).
#[derive(Clone, Debug, Serialize)]
pub struct Digest {
    /// The person's login (email).
    pub person: String,
    pub name: String,
    pub role: String,
    /// The day it covers, `YYYY-MM-DD`.
    pub day: String,
    /// Tasks opened since the previous digest (at most [`crate::daily::LISTED`]).
    pub new: Vec<DigestTask>,
    pub new_total: usize,
    /// Open tasks past their due date (at most [`crate::daily::LISTED`]).
    pub overdue: Vec<DigestTask>,
    pub overdue_total: usize,
    /// RFC 3339.
    pub ts: String,
    /// The inbox.
    pub link: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DigestTask {
    pub task_id: String,
    pub account_id: String,
    pub account_name: Option<String>,
    pub title: Option<String>,
    pub rule: Option<String>,
    /// `YYYY-MM-DD`.
    pub due: Option<String>,
    pub link: Option<String>,
}

/// What goes to a notifier: an alert, or a person's digest. Serialised as its content
/// alone (a dead letter of an alert reads as it always did).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Message {
    Alert(Notification),
    Digest(Digest),
}

/// What a notifier speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    /// JSON POST, HMAC-signed when a secret is set.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
}

/// One delivery target from the configuration. `Debug` is written by hand so that the
/// secret and a Slack URL's token never reach a log.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: NotifierKind,
    pub url: String,
    /// Webhook HMAC secret.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry; doubles on each retry, capped at [`MAX_BACKOFF`].
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// low | normal | high | urgent: only alerts at or above it are sent.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Per attempt: connecting, sending and reading the response status.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Whether it gets alerts [true].
    #[serde(default)]
    pub alerts: Option<bool>,
    /// Whether it gets the daily digests [false].
    #[serde(default)]
    pub digests: Option<bool>,
    /// Whose digests it gets, by login (email) [everyone's]: a Slack webhook to one
    /// person's channel takes theirs.
    #[serde(default)]
    pub people: Vec<String>,
}

fn default_max_attempts() -> u32 {
    5
}

fn default_backoff_ms() -> u64 {
    1000
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl fmt::Debug for NotifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifierConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &redact_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("max_attempts", &self.max_attempts)
            .field("backoff_ms", &self.backoff_ms)
            .field("min_severity", &self.min_severity)
            .field("timeout_ms", &self.timeout_ms)
            .field("alerts", &self.alerts)
            .field("digests", &self.digests)
            .field("people", &self.people)
            .finish()
    }
}

/// A configuration mistake, found before anything is sent.
#[derive(Debug, thiserror::Error)]
#[error("notifier {name:?}: {message}")]
pub struct ConfigError {
    pub name: String,
    pub message: String,
}

impl NotifierConfig {
    /// Checks what deserialisation cannot: the URL, the severity, settings that would be
    /// silently ignored.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError { name: self.name.clone(), message });
        if self.name.trim().is_empty() {
            return fail("name is empty".into());
        }
        if let Err(e) = parse_url(&self.url) {
            return fail(format!("url: {e}"));
        }
        if let Some(s) = &self.min_severity
            && Severity::parse(s).is_none()
        {
            return fail(format!("min_severity {s:?}: expected {}", Severity::expected()));
        }
        if self.kind == NotifierKind::Slack && self.secret.is_some() {
            // Slack verifies nothing: a secret here would give a false sense of security.
            return fail("secret is only used by webhook notifiers".into());
        }
        if self.max_attempts == 0 {
            return fail("max_attempts must be at least 1".into());
        }
        if self.timeout_ms == 0 {
            return fail("timeout_ms must be at least 1".into());
        }
        if !self.alerts.unwrap_or(true) && !self.digests.unwrap_or(false) {
            return fail("sends nothing: alerts = false and no digests = true".into());
        }
        if !self.people.is_empty() && !self.digests.unwrap_or(false) {
            return fail("people chooses whose digests it gets: set digests = true".into());
        }
        if self.people.iter().any(|p| p.trim().is_empty()) {
            return fail("people: an empty login".into());
        }
        Ok(())
    }

    /// The notifier this configuration describes, once valid.
    pub fn build(&self) -> Result<Arc<dyn Notifier>, ConfigError> {
        self.validate()?;
        Ok(match self.kind {
            NotifierKind::Webhook => {
                Arc::new(Webhook::new(&self.name, &self.url, self.secret.clone()))
            }
            NotifierKind::Slack => Arc::new(Slack::new(&self.name, &self.url)),
        })
    }
}

/// An HTTP POST, rendered but not sent. `Debug` hides the signature and the URL's path.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case(SIGNATURE_HEADER) { "<redacted>" } else { v };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("Request")
            .field("url", &redact_url(&self.url))
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A delivery target: renders a notification as the request its receiver expects.
pub trait Notifier: Send + Sync {
    fn name(&self) -> &str;
    /// Pure: the same notification and time give the same request.
    fn request(&self, n: &Notification, now_unix_secs: i64) -> Request;
    /// Pure, as [`request`](Self::request): a person's digest.
    fn digest_request(&self, d: &Digest, now_unix_secs: i64) -> Request;
}

/// The request for either kind of message.
pub fn render(notifier: &dyn Notifier, m: &Message, now_unix_secs: i64) -> Request {
    match m {
        Message::Alert(n) => notifier.request(n, now_unix_secs),
        Message::Digest(d) => notifier.digest_request(d, now_unix_secs),
    }
}

fn user_agent() -> String {
    format!("tenure/{}", env!("CARGO_PKG_VERSION"))
}

/// A generic JSON webhook. With a secret, each request carries
/// `X-Tenure-Signature: sha256=HEX(HMAC-SHA256(secret, "<timestamp>.<body>"))` next to
/// `X-Tenure-Timestamp`: signing the timestamp with the body lets receivers reject old
/// requests replayed by someone who captured one (the Stripe scheme).
pub struct Webhook {
    name: String,
    url: String,
    secret: Option<String>,
}

impl Webhook {
    pub fn new(name: impl Into<String>, url: impl Into<String>, secret: Option<String>) -> Webhook {
        Webhook { name: name.into(), url: url.into(), secret }
    }
}

/// The webhook body: the notification's fields with a `type`, so that receivers can tell
/// alerts from digests.
#[derive(Serialize)]
struct WebhookBody<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    notification: &'a T,
}

impl Webhook {
    /// The signed POST of a JSON body.
    fn signed(&self, body: Vec<u8>, now_unix_secs: i64) -> Request {
        let ts = now_unix_secs.to_string();
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("User-Agent".to_string(), user_agent()),
            ("X-Tenure-Timestamp".to_string(), ts.clone()),
        ];
        if let Some(secret) = &self.secret {
            let mut signed = Vec::with_capacity(ts.len() + 1 + body.len());
            signed.extend_from_slice(ts.as_bytes());
            signed.push(b'.');
            signed.extend_from_slice(&body);
            let mac = hmac_sha256(secret.as_bytes(), &signed);
            headers.push((SIGNATURE_HEADER.to_string(), format!("sha256={}", hex(&mac))));
        }
        Request { url: self.url.clone(), headers, body }
    }
}

impl Notifier for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn request(&self, n: &Notification, now_unix_secs: i64) -> Request {
        let body = serde_json::to_vec(&WebhookBody { kind: "alert", notification: n })
            .expect("a notification serialises");
        self.signed(body, now_unix_secs)
    }

    fn digest_request(&self, d: &Digest, now_unix_secs: i64) -> Request {
        let body = serde_json::to_vec(&WebhookBody { kind: "digest", notification: d })
            .expect("a digest serialises");
        self.signed(body, now_unix_secs)
    }
}

/// HMAC-SHA256 (RFC 2104), written over `sha2` rather than adding a crate for ten lines.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut ipad = [0x36u8; BLOCK];
    let mut opad = [0x5cu8; BLOCK];
    for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(k) {
        *i ^= k;
        *o ^= k;
    }
    let inner = Sha256::new().chain_update(ipad).chain_update(message).finalize();
    Sha256::new().chain_update(opad).chain_update(inner).finalize().into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// A Slack incoming webhook.
pub struct Slack {
    name: String,
    url: String,
}

impl Slack {
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Slack {
        Slack { name: name.into(), url: url.into() }
    }
}

/// Slack's required escaping: `&`, `<` and `>` are control characters in its text (links,
/// mentions), so user text containing them would otherwise be misread or break the message.
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn severity_emoji(severity: &str) -> &'static str {
    match Severity::parse(severity) {
        Some(Severity::Low) => ":information_source:",
        Some(Severity::Normal) => ":large_blue_circle:",
        Some(Severity::High) => ":warning:",
        Some(Severity::Urgent) => ":rotating_light:",
        None => ":bell:",
    }
}

impl Notifier for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn request(&self, n: &Notification, _now_unix_secs: i64) -> Request {
        let account = slack_escape(n.account_name.as_deref().unwrap_or(&n.account_id));
        let severity = slack_escape(&n.severity);
        let rule = slack_escape(&n.rule);
        let message = slack_escape(&n.message);
        let emoji = severity_emoji(&n.severity);
        // The fallback shows in notifications and clients that cannot render blocks.
        let text = format!("{emoji} [{severity}] {account}: {rule}: {message}");
        let mut section =
            format!("{emoji} *{severity}* alert for *{account}*\n*Rule:* {rule}\n{message}");
        if let Some(link) = &n.link {
            // `|` ends the URL part of a Slack link.
            let url = slack_escape(link).replace('|', "%7C");
            section.push_str(&format!("\n<{url}|Open in Tenure>"));
        }
        let owner = n.owner.as_deref().map_or_else(|| "unassigned".to_string(), slack_escape);
        let mut context = format!("Owner: {owner}");
        if let Some(task) = &n.task_id {
            context.push_str(&format!(" · Task: {}", slack_escape(task)));
        }
        context.push_str(&format!(
            " · Alert: {} · {}",
            slack_escape(&n.alert_id),
            slack_escape(&n.ts)
        ));
        let body = serde_json::json!({
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": section}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        });
        self.post(&body)
    }

    fn digest_request(&self, d: &Digest, _now_unix_secs: i64) -> Request {
        let who = slack_escape(&d.name);
        let text = format!(
            "Tenure digest for {who}, {}: {} new task{}, {} overdue",
            slack_escape(&d.day),
            d.new_total,
            if d.new_total == 1 { "" } else { "s" },
            d.overdue_total
        );
        let list = |title: &str, tasks: &[DigestTask], total: usize| {
            let mut out = format!("*{title}* ({total})");
            for t in tasks {
                let account = slack_escape(t.account_name.as_deref().unwrap_or(&t.account_id));
                let account = match &t.link {
                    Some(l) => format!("<{}|{account}>", slack_escape(l).replace('|', "%7C")),
                    None => account,
                };
                let title = slack_escape(t.title.as_deref().unwrap_or("task"));
                let due = t
                    .due
                    .as_deref()
                    .map_or(String::new(), |d| format!(" · due {}", slack_escape(d)));
                out.push_str(&format!("\n• {account}: {title}{due}"));
            }
            if total > tasks.len() {
                out.push_str(&format!("\n… and {} more", total - tasks.len()));
            }
            out
        };
        let mut blocks = vec![
            serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{text}*")}}),
        ];
        for (title, tasks, total) in
            [("New", &d.new, d.new_total), ("Overdue", &d.overdue, d.overdue_total)]
        {
            if total > 0 {
                blocks.push(serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": list(title, tasks, total)}}));
            }
        }
        if let Some(link) = &d.link {
            let url = slack_escape(link).replace('|', "%7C");
            blocks.push(serde_json::json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{url}|Open your inbox>")}]}));
        }
        self.post(&serde_json::json!({"text": text, "blocks": blocks}))
    }
}

impl Slack {
    fn post(&self, body: &serde_json::Value) -> Request {
        Request {
            url: self.url.clone(),
            headers: vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("User-Agent".to_string(), user_agent()),
            ],
            body: serde_json::to_vec(body).expect("JSON values serialise"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP delivery

/// Why one attempt failed. Messages name the host, never the path (a Slack URL's path is
/// its secret).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("connect to {0}")]
    Connect(String),
    #[error("TLS with {0}")]
    Tls(String),
    #[error("I/O: {0}")]
    Io(String),
    #[error("bad response: {0}")]
    BadResponse(String),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status { status: u16, retry_after: Option<u64>, body: String },
}

impl DeliveryError {
    /// Worth trying again: the receiver may recover. Other 4xx (Slack's 400
    /// `invalid_payload`, 410 `channel_is_archived`, …) will fail the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::InvalidUrl(_) => false,
            DeliveryError::Status { status, .. } => *status == 429 || (500..600).contains(status),
            DeliveryError::Connect(_)
            | DeliveryError::Tls(_)
            | DeliveryError::Io(_)
            | DeliveryError::BadResponse(_)
            | DeliveryError::Timeout(_) => true,
        }
    }

    /// The receiver's `Retry-After`, in seconds form.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Status { retry_after: Some(s), .. } => Some(Duration::from_secs(*s)),
            _ => None,
        }
    }
}

struct Target {
    tls: bool,
    /// Without IPv6 brackets, for connecting and TLS server names.
    host: String,
    port: u16,
    /// As written in the URL, for the Host header.
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, DeliveryError> {
    let bad = |m: &str| DeliveryError::InvalidUrl(m.to_string());
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(bad("the scheme must be http:// or https://"));
    };
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if url.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(bad("spaces or control characters"));
    }
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (host, after) = r.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, p.parse().map_err(|_| bad("bad port"))?),
            None if after.is_empty() => (host, default_port),
            None => return Err(bad("junk after ']'")),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if path.parse::<hyper::http::uri::PathAndQuery>().is_err() {
        return Err(bad("the path is not a valid HTTP request target"));
    }
    Ok(Target { tls, host: host.to_string(), port, authority: authority.to_string(), path })
}

/// `scheme://host/…`: enough to tell targets apart in a log without their secrets.
fn redact_url(url: &str) -> String {
    match parse_url(url) {
        Ok(t) => format!("{}://{}/…", if t.tls { "https" } else { "http" }, t.authority),
        Err(_) => "<invalid>".to_string(),
    }
}

/// A connection, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

fn tls_config() -> Arc<rustls::ClientConfig> {
    // Built once: parsing the root store on every attempt would be wasted work.
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            // The provider is named explicitly: no process-wide default has to be installed.
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

async fn connect(target: &Target) -> Result<Box<dyn Stream>, DeliveryError> {
    let host_port = format!("{}:{}", target.authority_host(), target.port);
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| DeliveryError::Connect(format!("{host_port}: {e}")))?;
    // One write per request, then a read: Nagle would only add latency.
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|_| DeliveryError::InvalidUrl("not a valid TLS server name".into()))?;
    let tls = tokio_rustls::TlsConnector::from(tls_config())
        .connect(name, tcp)
        .await
        .map_err(|e| DeliveryError::Tls(format!("{host_port}: {e}")))?;
    Ok(Box::new(tls))
}

impl Target {
    fn authority_host(&self) -> String {
        if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
    }
}

/// A hyper error with its causes (its own text is only the kind: "connection closed before
/// message completed"). A response hyper could not parse is a bad response; the rest is
/// I/O. Neither names the URL.
fn http_error(e: &hyper::Error) -> DeliveryError {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        DeliveryError::BadResponse(text)
    } else {
        DeliveryError::Io(text)
    }
}

/// The HTTP request for `request` on a connection of its own: origin-form target, `Host`
/// as written in the URL, `Connection: close`; hyper adds the `Content-Length`.
fn http_request(
    target: &Target,
    request: &Request,
) -> Result<hyper::Request<Full<Bytes>>, DeliveryError> {
    any_request(target, hyper::Method::POST, &request.headers, request.body.clone())
}

fn any_request(
    target: &Target,
    method: hyper::Method,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>, DeliveryError> {
    let mut r = hyper::Request::builder()
        .method(method)
        .uri(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONNECTION, "close");
    for (k, v) in headers {
        // A CR or LF would let a value inject headers; the notifiers never produce one, so
        // this only guards custom notifiers.
        if [k, v].iter().any(|s| s.contains(['\r', '\n'])) {
            return Err(DeliveryError::InvalidUrl(format!("header {k:?} contains a line break")));
        }
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| DeliveryError::InvalidUrl(format!("header name {k:?} is not valid")))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| DeliveryError::InvalidUrl(format!("header {k:?} has an invalid value")))?;
        r = r.header(name, value);
    }
    r.body(Full::new(Bytes::from(body)))
        .map_err(|_| DeliveryError::InvalidUrl("not a valid HTTP request target".into()))
}

/// A whole response.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One HTTP exchange read to the end (a body of at most `max_body` bytes), within
/// `timeout`: what single sign-on asks of its provider (discovery, keys, tokens). Any
/// status is an answer; errors are the connection's.
pub async fn fetch(
    method: hyper::Method,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
    max_body: usize,
) -> Result<Fetched, DeliveryError> {
    let target = parse_url(url)?;
    let http = any_request(&target, method, headers, body)?;
    let deadline = Instant::now() + timeout;
    tokio::time::timeout_at(deadline, async {
        let stream = connect(&target).await?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_header_size(MAX_RESPONSE_HEAD)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| http_error(&e))?;
        let mut conn = Driven { conn: Box::pin(conn), done: false };
        let response = conn.run(sender.send_request(http)).await.map_err(|e| http_error(&e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let mut incoming = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = conn.run(incoming.frame()).await {
            let frame = frame.map_err(|e| http_error(&e))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max_body {
                    return Err(DeliveryError::BadResponse(format!(
                        "a body over {max_body} bytes"
                    )));
                }
                out.extend_from_slice(&data);
            }
        }
        Ok(Fetched { status, headers, body: out })
    })
    .await
    .map_err(|_| DeliveryError::Timeout(timeout.as_millis().try_into().unwrap_or(u64::MAX)))?
}

/// A client connection's own future, which does the reading and writing for the requests
/// and bodies on it: awaited beside them, so nothing outlives [`post`] (no spawned task).
struct Driven<C> {
    conn: Pin<Box<C>>,
    done: bool,
}

impl<C: Future> Driven<C> {
    /// Awaits `fut` while the connection makes progress.
    async fn run<T>(&mut self, fut: impl Future<Output = T>) -> T {
        let mut fut = std::pin::pin!(fut);
        if !self.done {
            tokio::select! {
                biased;
                t = &mut fut => return t,
                // The connection ended (closed, or failed): `fut` now resolves on its own,
                // with the connection's error when it was waiting on it.
                _ = self.conn.as_mut() => self.done = true,
            }
        }
        fut.await
    }
}

/// The start of an error response's body, for the error message (Slack explains its
/// errors there: `invalid_payload`, `channel_is_archived`); into `out` as it arrives, so
/// that a timeout keeps what came.
async fn read_error_body(mut body: Incoming, out: &mut Vec<u8>) {
    while out.len() < MAX_ERROR_BODY + 16 {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
}

/// An error body as one short line: whitespace and control characters collapsed, at most
/// [`MAX_ERROR_BODY`] characters.
fn error_body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > MAX_ERROR_BODY {
        out = out.chars().take(MAX_ERROR_BODY).collect::<String>() + "…";
    }
    out
}

/// Sends one request (one connection, `Connection: close`) and returns the 2xx status, or
/// why not. The timeout covers connecting, sending and reading the status; a slow error
/// body only shortens its excerpt.
pub async fn post(request: &Request, timeout: Duration) -> Result<u16, DeliveryError> {
    let target = parse_url(&request.url)?;
    let http = http_request(&target, request)?;
    let deadline = Instant::now() + timeout;
    let timed_out = || DeliveryError::Timeout(timeout.as_millis().try_into().unwrap_or(u64::MAX));
    let (response, mut conn) = tokio::time::timeout_at(deadline, async {
        let stream = connect(&target).await?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            // Header names on the wire as the notifiers write them (Content-Type, …).
            .title_case_headers(true)
            .max_header_size(MAX_RESPONSE_HEAD)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| http_error(&e))?;
        let mut conn = Driven { conn: Box::pin(conn), done: false };
        let response = conn.run(sender.send_request(http)).await.map_err(|e| http_error(&e))?;
        Ok::<_, DeliveryError>((response, conn))
    })
    .await
    .map_err(|_| timed_out())??;
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(status);
    }
    // The HTTP-date form of Retry-After is not honoured: the computed backoff applies.
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let mut body = Vec::new();
    let _ = tokio::time::timeout_at(
        deadline,
        conn.run(read_error_body(response.into_body(), &mut body)),
    )
    .await;
    Err(DeliveryError::Status { status, retry_after, body: error_body_text(&body) })
}

// ---------------------------------------------------------------------------------------
// Dispatch

/// Unix seconds now; injected so that tests and replays control timestamps.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

/// Delivery counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Notifications a receiver accepted (2xx).
    pub delivered: AtomicU64,
    /// Attempts after the first.
    pub retries: AtomicU64,
    /// Notifications written to the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Notifications lost altogether: the dead-letter file could not be written or its
    /// queue was full.
    pub dropped: AtomicU64,
}

impl DeliveryStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One line of the dead-letter file.
#[derive(Serialize)]
struct DeadLetter {
    ts: String,
    notifier: String,
    attempts: u32,
    error: String,
    notification: Message,
}

/// How one notifier is driven.
#[derive(Clone)]
struct Policy {
    max_attempts: u32,
    backoff: Duration,
    timeout: Duration,
    min_severity: Option<Severity>,
    alerts: bool,
    digests: bool,
    /// Lower-case logins; empty: everyone.
    people: Vec<String>,
}

impl Policy {
    fn from_config(c: Option<&NotifierConfig>) -> Policy {
        match c {
            Some(c) => Policy {
                max_attempts: c.max_attempts.max(1),
                backoff: Duration::from_millis(c.backoff_ms),
                timeout: Duration::from_millis(c.timeout_ms.max(1)),
                min_severity: c.min_severity.as_deref().and_then(Severity::parse),
                alerts: c.alerts.unwrap_or(true),
                digests: c.digests.unwrap_or(false),
                people: c.people.iter().map(|p| p.trim().to_lowercase()).collect(),
            },
            None => Policy {
                max_attempts: default_max_attempts(),
                backoff: Duration::from_millis(default_backoff_ms()),
                timeout: Duration::from_millis(default_timeout_ms()),
                min_severity: None,
                alerts: true,
                digests: false,
                people: Vec::new(),
            },
        }
    }

    /// An alert of a severity we do not know is sent: missing an alert is worse than one
    /// too many.
    fn wants(&self, m: &Message) -> bool {
        match m {
            Message::Alert(n) => {
                self.alerts
                    && match (self.min_severity, Severity::parse(&n.severity)) {
                        (Some(min), Some(s)) => s >= min,
                        _ => true,
                    }
            }
            Message::Digest(d) => {
                self.digests
                    && (self.people.is_empty() || self.people.contains(&d.person.to_lowercase()))
            }
        }
    }

    /// The wait after `failed` attempts: backoff × 2^(failed-1), or the receiver's
    /// Retry-After when longer, never above [`MAX_BACKOFF`].
    fn delay(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        let exp = self.backoff.saturating_mul(factor).min(MAX_BACKOFF);
        retry_after.map_or(exp, |r| exp.max(r.min(MAX_BACKOFF)))
    }
}

struct Lane {
    name: String,
    policy: Policy,
    tx: mpsc::Sender<Message>,
}

/// Fans notifications out to the notifiers. Each has its own bounded queue and task, so
/// a slow target delays only itself and alerts reach each target in order. Created inside
/// a Tokio runtime. Dropping it closes the queues and the tasks finish what is queued in
/// the background; [`Dispatcher::shutdown`] waits for them, for a bounded time.
pub struct Dispatcher {
    lanes: Vec<Lane>,
    dead_tx: mpsc::Sender<DeadLetter>,
    stats: Arc<DeliveryStats>,
    clock: Clock,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    writer: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts a task per notifier and one for the dead-letter file. Each notifier takes its
    /// delivery settings from the config of the same name (defaults when there is none).
    /// Panics outside a Tokio runtime.
    pub fn start(
        notifiers: Vec<Arc<dyn Notifier>>,
        configs: &[NotifierConfig],
        dead_letter: PathBuf,
        clock: Clock,
    ) -> Dispatcher {
        let stats = Arc::new(DeliveryStats::default());
        let (dead_tx, dead_rx) = mpsc::channel(DEAD_LETTER_CAPACITY);
        let (stop, _) = watch::channel(false);
        let writer = tokio::spawn(write_dead_letters(dead_rx, dead_letter, stats.clone()));
        let mut lanes = Vec::with_capacity(notifiers.len());
        let mut workers = Vec::with_capacity(notifiers.len());
        for notifier in notifiers {
            let policy = Policy::from_config(configs.iter().find(|c| c.name == notifier.name()));
            let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
            lanes.push(Lane { name: notifier.name().to_string(), policy: policy.clone(), tx });
            workers.push(tokio::spawn(run_lane(
                Worker {
                    notifier,
                    policy,
                    dead: dead_tx.clone(),
                    stats: stats.clone(),
                    clock: clock.clone(),
                    stop: stop.subscribe(),
                },
                rx,
            )));
        }
        Dispatcher { lanes, dead_tx, stats, clock, stop, workers, writer }
    }

    /// Validates the configurations (names must be unique), builds their notifiers and
    /// starts them.
    pub fn from_configs(
        configs: &[NotifierConfig],
        dead_letter: PathBuf,
        clock: Clock,
    ) -> Result<Dispatcher, ConfigError> {
        let mut notifiers = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            if configs[..i].iter().any(|o| o.name == c.name) {
                return Err(ConfigError { name: c.name.clone(), message: "duplicate name".into() });
            }
            notifiers.push(c.build()?);
        }
        Ok(Dispatcher::start(notifiers, configs, dead_letter, clock))
    }

    /// Queues a notification for every notifier that wants its severity. Never waits: a
    /// full queue sends the notification to the dead-letter file ("queue full") instead.
    pub fn send(&self, n: Notification) {
        self.send_message(Message::Alert(n));
    }

    /// Queues a person's digest for every notifier that takes digests (and theirs).
    pub fn send_digest(&self, d: Digest) {
        self.send_message(Message::Digest(d));
    }

    /// Whether any notifier takes digests (else none need composing).
    pub fn takes_digests(&self) -> bool {
        self.lanes.iter().any(|l| l.policy.digests)
    }

    fn send_message(&self, n: Message) {
        for lane in &self.lanes {
            if !lane.policy.wants(&n) {
                continue;
            }
            let (n, error) = match lane.tx.try_send(n.clone()) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(n)) => (n, "queue full"),
                Err(mpsc::error::TrySendError::Closed(n)) => (n, "delivery task stopped"),
            };
            let record = DeadLetter {
                ts: Timestamp::from_secs((self.clock)()).to_string(),
                notifier: lane.name.clone(),
                attempts: 0,
                error: error.to_string(),
                notification: n,
            };
            if self.dead_tx.try_send(record).is_err() {
                DeliveryStats::add(&self.stats.dropped, 1);
            }
        }
    }

    /// The counters, shared: they keep counting after this call.
    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Closes the queues and waits up to `grace` for what is queued to be delivered. Past
    /// it, what is left (retries included) goes to the dead-letter file, which gets a few
    /// more seconds. Returns whether everything finished within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let Dispatcher { lanes, dead_tx, stop, mut workers, mut writer, .. } = self;
        // Closing the queues lets each task finish its backlog and end.
        drop(lanes);
        drop(dead_tx);
        let deadline = Instant::now() + grace;
        let mut clean = true;
        for w in &mut workers {
            if tokio::time::timeout_at(deadline, w).await.is_err() {
                clean = false;
                break;
            }
        }
        if !clean {
            let _ = stop.send(true);
            let drain = Instant::now() + DRAIN_TIMEOUT;
            for w in &mut workers {
                if tokio::time::timeout_at(drain, &mut *w).await.is_err() {
                    w.abort();
                }
            }
        }
        // The writer ends once every task's handle to it is gone.
        if tokio::time::timeout_at(Instant::now() + DRAIN_TIMEOUT, &mut writer).await.is_err() {
            writer.abort();
            clean = false;
        }
        clean
    }
}

struct Worker {
    notifier: Arc<dyn Notifier>,
    policy: Policy,
    dead: mpsc::Sender<DeadLetter>,
    stats: Arc<DeliveryStats>,
    clock: Clock,
    stop: watch::Receiver<bool>,
}

async fn run_lane(mut w: Worker, mut rx: mpsc::Receiver<Message>) {
    while let Some(n) = rx.recv().await {
        let outcome = if *w.stop.borrow() {
            Err((0, "shut down before delivery".to_string()))
        } else {
            w.deliver(&n).await
        };
        match outcome {
            Ok(()) => DeliveryStats::add(&w.stats.delivered, 1),
            Err((attempts, error)) => {
                let record = DeadLetter {
                    ts: Timestamp::from_secs((w.clock)()).to_string(),
                    notifier: w.notifier.name().to_string(),
                    attempts,
                    error,
                    notification: n,
                };
                // Waiting here is fine: this task is in the background, and the writer
                // only ever waits for the disk.
                if w.dead.send(record).await.is_err() {
                    DeliveryStats::add(&w.stats.dropped, 1);
                }
            }
        }
    }
}

/// Resolves once shutdown asks the tasks to stop; never when the dispatcher was simply
/// dropped (then queued notifications are still delivered).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Worker {
    /// Ok, or the number of attempts made and the last error.
    async fn deliver(&mut self, n: &Message) -> Result<(), (u32, String)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Rendered per attempt: a retry gets a fresh timestamp and signature, so
            // receivers with a replay window still accept it.
            let request = render(&*self.notifier, n, (self.clock)());
            let result = tokio::select! {
                r = post(&request, self.policy.timeout) => r,
                () = stopped(&mut self.stop) => {
                    return Err((attempt, "shut down during delivery".to_string()));
                }
            };
            let error = match result {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if !error.is_retryable() || attempt >= self.policy.max_attempts {
                return Err((attempt, error.to_string()));
            }
            let delay = self.policy.delay(attempt, error.retry_after());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stopped(&mut self.stop) => {
                    return Err((attempt, format!("{error} (shut down before retrying)")));
                }
            }
            DeliveryStats::add(&self.stats.retries, 1);
        }
    }
}

async fn write_dead_letters(
    mut rx: mpsc::Receiver<DeadLetter>,
    path: PathBuf,
    stats: Arc<DeliveryStats>,
) {
    let path = Arc::new(path);
    while let Some(first) = rx.recv().await {
        // What has piled up meanwhile is written with the same open and flush.
        let mut lines = Vec::new();
        let mut count = 0u64;
        for record in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
            let mut line = serde_json::to_vec(&record).expect("a dead letter serialises");
            line.push(b'\n');
            lines.extend_from_slice(&line);
            count += 1;
            if count >= 256 {
                break;
            }
        }
        let p = path.clone();
        // The file is written off the async workers: a slow disk must not stall delivery.
        let written = tokio::task::spawn_blocking(move || append(&p, &lines)).await;
        match written {
            Ok(Ok(())) => DeliveryStats::add(&stats.dead_lettered, count),
            Ok(Err(e)) => {
                DeliveryStats::add(&stats.dropped, count);
                eprintln!(
                    "tenure: lost {count} notification(s): dead-letter file {}: {e}",
                    path.display()
                );
            }
            Err(_) => DeliveryStats::add(&stats.dropped, count),
        }
    }
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(bytes)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatcher_can_be_shared_by_handlers() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Dispatcher>();
        shareable::<DeliveryStats>();
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 1.
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Test case 2: a key shorter than the block.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a 131-byte key, longer than the block, so hashed first.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(hex(&[0x00, 0xff, 0x10]), "00ff10");
    }

    fn sample() -> Notification {
        Notification {
            alert_id: "al_1".into(),
            account_id: "acc_42".into(),
            account_name: Some("Smith & Sons <EU>".into()),
            rule: "usage_drop>30%".into(),
            severity: "high".into(),
            message: "Usage fell <50% & seats > plan".into(),
            owner: Some("<@U123>".into()),
            task_id: Some("t_9".into()),
            ts: "2025-03-01T12:00:00Z".into(),
            link: Some("https://app.example/a?x=1&y=2|z".into()),
        }
    }

    #[test]
    fn webhook_body_headers_and_signature() {
        let w = Webhook::new("hook", "https://example.com/in", Some("s3cret".into()));
        let r = w.request(&sample(), 1_700_000_000);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["type"], "alert");
        assert_eq!(v["alert_id"], "al_1");
        assert_eq!(v["account_name"], "Smith & Sons <EU>");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("User-Agent"), Some(user_agent().as_str()));
        assert_eq!(r.header("X-Tenure-Timestamp"), Some("1700000000"));
        let mut signed = b"1700000000.".to_vec();
        signed.extend_from_slice(&r.body);
        let expected = format!("sha256={}", hex(&hmac_sha256(b"s3cret", &signed)));
        assert_eq!(r.header(SIGNATURE_HEADER), Some(expected.as_str()));
        // Neither the signature nor the URL's path reaches Debug output.
        let debug = format!("{r:?}");
        assert!(!debug.contains(&expected[7..]) && !debug.contains("/in"), "{debug}");
        // No secret, no signature.
        let unsigned = Webhook::new("hook", "http://h/", None).request(&sample(), 1);
        assert_eq!(unsigned.header(SIGNATURE_HEADER), None);
    }

    #[test]
    fn slack_escapes_user_text() {
        assert_eq!(slack_escape("a & b <c> d"), "a &amp; b &lt;c&gt; d");
        assert_eq!(slack_escape("&amp;"), "&amp;amp;");
        assert_eq!(slack_escape("plain: ünïcode *bold*"), "plain: ünïcode *bold*");
    }

    #[test]
    fn slack_body_shape() {
        let s = Slack::new("slack", "https://hooks.slack.com/services/T/B/X");
        let r = s.request(&sample(), 0);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(!text.contains('\n'), "the fallback is one line: {text}");
        assert_eq!(
            text,
            ":warning: [high] Smith &amp; Sons &lt;EU&gt;: usage_drop&gt;30%: \
             Usage fell &lt;50% &amp; seats &gt; plan"
        );
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
        assert_eq!(
            blocks[0]["text"]["text"],
            ":warning: *high* alert for *Smith &amp; Sons &lt;EU&gt;*\n\
             *Rule:* usage_drop&gt;30%\n\
             Usage fell &lt;50% &amp; seats &gt; plan\n\
             <https://app.example/a?x=1&amp;y=2%7Cz|Open in Tenure>"
        );
        assert_eq!(blocks[1]["type"], "context");
        let elements = blocks[1]["elements"].as_array().unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0]["type"], "mrkdwn");
        assert_eq!(
            elements[0]["text"],
            "Owner: &lt;@U123&gt; · Task: t_9 · Alert: al_1 · 2025-03-01T12:00:00Z"
        );
        // Without a name, link, owner or task: the id, no link, "unassigned".
        let mut n = sample();
        n.account_name = None;
        n.link = None;
        n.owner = None;
        n.task_id = None;
        n.severity = "urgent".into();
        let v: serde_json::Value = serde_json::from_slice(&s.request(&n, 0).body).unwrap();
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(section.starts_with(":rotating_light: *urgent* alert for *acc_42*"), "{section}");
        assert!(!section.contains("Open in Tenure"));
        assert!(
            v["blocks"][1]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("Owner: unassigned · Alert: al_1")
        );
    }

    #[test]
    fn config_parsing_defaults_and_validation() {
        let c: NotifierConfig = serde_json::from_str(
            r#"{"name":"ops","kind":"slack","url":"https://hooks.slack.com/services/T/B/SECRET"}"#,
        )
        .unwrap();
        assert_eq!((c.max_attempts, c.backoff_ms, c.timeout_ms), (5, 1000, 10_000));
        assert_eq!(c.kind, NotifierKind::Slack);
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("SECRET"));
        let unknown = serde_json::from_str::<NotifierConfig>(
            r#"{"name":"a","kind":"webhook","url":"http://h/","retries":3}"#,
        );
        assert!(unknown.unwrap_err().to_string().contains("unknown field `retries`"));
        assert!(
            serde_json::from_str::<NotifierConfig>(r#"{"name":"a","kind":"email","url":"x"}"#)
                .is_err()
        );
        let w: NotifierConfig = serde_json::from_str(
            r#"{"name":"a","kind":"webhook","url":"http://h:8080/x","secret":"k","min_severity":"high"}"#,
        )
        .unwrap();
        assert!(w.validate().is_ok());
        assert!(!format!("{w:?}").contains("\"k\""));
        let bad = |f: fn(&mut NotifierConfig)| {
            let mut c = w.clone();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.min_severity = Some("critical".into())).contains("min_severity"));
        assert!(bad(|c| c.url = "ftp://h/".into()).contains("scheme"));
        assert!(bad(|c| c.kind = NotifierKind::Slack).contains("secret"));
        assert!(bad(|c| c.max_attempts = 0).contains("max_attempts"));
    }

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/a/b?c=d#frag").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (false, "127.0.0.1", 8080, "/a/b?c=d")
        );
        let t = parse_url("https://example.com").unwrap();
        assert_eq!(
            (t.tls, t.port, t.path.as_str(), t.authority.as_str()),
            (true, 443, "/", "example.com")
        );
        let t = parse_url("http://[::1]:9/x").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.authority.as_str()), ("::1", 9, "[::1]:9"));
        let t = parse_url("http://h?q=1").unwrap();
        assert_eq!(t.path, "/?q=1");
        // The last: '<' cannot be sent in a request target unencoded.
        for bad in [
            "ftp://h/",
            "http://",
            "http://u:p@h/",
            "http://h:99999/",
            "http://h/a b",
            "http://h/a<b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T/B/X"),
            "https://hooks.slack.com/…"
        );
    }

    #[test]
    fn requests_carry_host_and_close_and_refuse_injected_headers() {
        let t = parse_url("http://[::1]:9/in?x=1").unwrap();
        let mut r = Webhook::new("h", "http://[::1]:9/in?x=1", None).request(&sample(), 1);
        let h = http_request(&t, &r).unwrap();
        assert_eq!((h.method().as_str(), h.uri().to_string()), ("POST", "/in?x=1".to_string()));
        assert_eq!(h.headers()["host"], "[::1]:9");
        assert_eq!(h.headers()["connection"], "close");
        assert_eq!(h.headers()["x-tenure-timestamp"], "1");
        r.headers.push(("X-Note".into(), "a\r\nX-Evil: 1".into()));
        let e = http_request(&t, &r).unwrap_err();
        assert!(matches!(e, DeliveryError::InvalidUrl(_)) && e.to_string().contains("line break"));
        r.headers.pop();
        r.headers.push(("Bad Name".into(), "v".into()));
        assert!(matches!(http_request(&t, &r), Err(DeliveryError::InvalidUrl(_))));
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let p = Policy {
            max_attempts: 10,
            backoff: Duration::from_millis(1000),
            timeout: Duration::from_secs(1),
            min_severity: None,
            alerts: true,
            digests: false,
            people: Vec::new(),
        };
        let ms = |failed, ra: Option<u64>| p.delay(failed, ra.map(Duration::from_secs)).as_millis();
        assert_eq!([ms(1, None), ms(2, None), ms(3, None)], [1000, 2000, 4000]);
        assert_eq!(ms(7, None), 60_000);
        assert_eq!(ms(40, None), 60_000);
        assert_eq!(ms(1, Some(5)), 5000);
        assert_eq!(ms(3, Some(1)), 4000);
        assert_eq!(ms(1, Some(3600)), 60_000);
    }

    #[test]
    fn severity_filter() {
        let mut p = Policy::from_config(None);
        p.min_severity = Some(Severity::High);
        let mut n = sample();
        for (s, wanted) in
            [("low", false), ("normal", false), ("high", true), ("urgent", true), ("odd", true)]
        {
            n.severity = s.into();
            assert_eq!(p.wants(&Message::Alert(n.clone())), wanted, "{s}");
        }
        // Alerts only where alerts are wanted; digests only where digests are, and only
        // the people's listed (whatever the case of their login).
        p.alerts = false;
        assert!(!p.wants(&Message::Alert(n.clone())));
        let digest = |person: &str| {
            Message::Digest(Digest {
                person: person.into(),
                name: "Sam".into(),
                role: "csm".into(),
                day: "2026-06-15".into(),
                new: vec![],
                new_total: 0,
                overdue: vec![],
                overdue_total: 1,
                ts: "2026-06-15T08:00:00Z".into(),
                link: None,
            })
        };
        assert!(!p.wants(&digest("sam@acme.test")), "digests are off by default");
        p.digests = true;
        assert!(p.wants(&digest("sam@acme.test")));
        p.people = vec!["sam@acme.test".into()];
        assert!(p.wants(&digest("Sam@Acme.test")));
        assert!(!p.wants(&digest("kim@acme.test")));
    }

    #[test]
    fn retryable_errors() {
        let status =
            |s| DeliveryError::Status { status: s, retry_after: None, body: String::new() };
        assert!(
            status(500).is_retryable() && status(503).is_retryable() && status(429).is_retryable()
        );
        assert!(
            !status(400).is_retryable()
                && !status(410).is_retryable()
                && !status(404).is_retryable()
        );
        assert!(DeliveryError::Timeout(1).is_retryable());
        assert!(DeliveryError::Connect("x".into()).is_retryable());
        assert!(!DeliveryError::InvalidUrl("x".into()).is_retryable());
        let e = DeliveryError::Status {
            status: 400,
            retry_after: None,
            body: "invalid_payload".into(),
        };
        assert_eq!(e.to_string(), "HTTP 400: invalid_payload");
    }

    #[test]
    fn error_bodies_are_short_and_clean() {
        assert_eq!(error_body_text(b"invalid_payload\n"), "invalid_payload");
        assert_eq!(error_body_text(b" no such\r\n\tchannel "), "no such channel");
        let long = vec![b'x'; 1000];
        assert_eq!(error_body_text(&long).chars().count(), MAX_ERROR_BODY + 1);
    }
}
