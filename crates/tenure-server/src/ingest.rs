//! The ingest endpoints: `POST /api/v1/events` (the input contract) and the Segment HTTP
//! API, each validating a request's events and storing the valid ones before answering.

use crate::auth::{authorise, authorise_write_key, segment_key_missing};
use crate::decode::off_worker;
use crate::error::rejections_json;
use crate::keys::{Key, Scope};
use crate::writer::store;
use crate::{ApiError, AppState, json_response, segment};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tenure_core::event::{Event, EventBody};
use tenure_core::time::Timestamp;
use tenure_ingest::{IngestConfig, Rejection};

/// The valid events of a body, each with its line (or array index plus one), and the
/// rejections.
type Parsed = (Vec<(u64, Event)>, Vec<Rejection>);

/// Parses a body of events: a JSON array, or JSON lines. Rejections count from 1 (the
/// array index plus one, or the line).
fn parse_events(body: &[u8], cfg: &IngestConfig) -> Result<Parsed, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::new("invalid_json", "the body is not UTF-8"))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(ApiError::new(
            "invalid_json",
            "the body is empty: send a JSON array or JSON lines of events",
        ));
    }
    if trimmed.starts_with('[') {
        // Each element goes through the same validation as a line of a file (written back
        // as JSON text).
        let items: Vec<Value> = serde_json::from_str(trimmed)
            .map_err(|e| ApiError::new("invalid_json", format!("malformed JSON: {e}")))?;
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for (i, item) in items.iter().enumerate() {
            match tenure_ingest::parse_json_line(&item.to_string(), None, cfg) {
                Ok(e) => ok.push((i as u64 + 1, e)),
                Err(e) => {
                    bad.push(Rejection { line: i as u64 + 1, field: e.field, reason: e.reason })
                }
            }
        }
        Ok((ok, bad))
    } else {
        Ok(tenure_ingest::parse_jsonl_block(text, 1, None, cfg))
    }
}

type BodyResult = Result<Bytes, axum::extract::rejection::BytesRejection>;

fn body_bytes(state: &AppState, body: BodyResult) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                "payload_too_large",
                format!("the body is over {} bytes", state.0.limits.request_bytes),
            )
        } else {
            ApiError::new("invalid_json", e.body_text())
        }
    })
}

/// Stores the valid events of a request and answers with what happened to each: 400 when
/// every event was rejected, else 200 with the counts and the rejections.
async fn accept(
    state: &AppState,
    events: Vec<Event>,
    rejected: Vec<Rejection>,
    extra: Option<(&str, Value)>,
) -> Result<Response, ApiError> {
    if events.is_empty() && !rejected.is_empty() {
        state.0.core.metrics.events_rejected.fetch_add(rejected.len() as u64, Relaxed);
        let mut e =
            ApiError::new("invalid_events", format!("all {} events were rejected", rejected.len()));
        e.rejected = rejected;
        return Err(e);
    }
    let started = Instant::now();
    let m = &state.0.core.metrics;
    m.requests.fetch_add(1, Relaxed);
    m.events_rejected.fetch_add(rejected.len() as u64, Relaxed);
    let stored = store(state, events).await?;
    m.ingest_latency.observe(started.elapsed());
    let accepted = stored.iter().filter(|s| **s).count();
    m.events_accepted.fetch_add(accepted as u64, Relaxed);
    m.events_duplicate.fetch_add((stored.len() - accepted) as u64, Relaxed);
    let mut body = json!({"success": true, "accepted": accepted, "duplicates": stored.len() - accepted, "rejected": rejections_json(&rejected)});
    if let Some((k, v)) = extra {
        body[k] = v;
    }
    Ok(json_response(StatusCode::OK, &body))
}

pub(crate) async fn ingest(
    State(state): State<AppState>,
    h: HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    let key = authorise(&state, &h, Scope::Ingest)?;
    let body = body_bytes(&state, body)?;
    let cfg = IngestConfig { now: Some((state.0.clock)()), ..state.0.ingest.clone() };
    let (parsed, mut rejected) = off_worker(body.len(), move || parse_events(&body, &cfg))
        .await
        .unwrap_or_else(read_failed)?;
    let mut events = Vec::with_capacity(parsed.len());
    for (line, e) in parsed {
        match service_only(&e, &key) {
            Some(reason) => {
                rejected.push(Rejection { line, field: Some("type".into()), reason: reason.into() })
            }
            None => events.push(e),
        }
    }
    rejected.sort_by_key(|r| r.line);
    accept(&state, events, rejected, None).await
}

/// Why an event is not the client's to send: alerts are raised by the service, task
/// changes made through `PATCH /api/v1/tasks/{id}` and forecast overrides through
/// `POST /api/v1/accounts/{id}/forecast-override`, both under the key's name, so a key that
/// sends events cannot forge any of them. An admin key may (bringing history over from another
/// tool).
fn service_only(e: &Event, key: &Key) -> Option<&'static str> {
    if key.allows(Scope::Admin) {
        return None;
    }
    match e.body {
        EventBody::Alert { .. } => {
            Some("alert events are raised by the service's rules; only an admin key may send them")
        }
        EventBody::Task(_) => Some(
            "task changes go through PATCH /api/v1/tasks/{id} (write scope); only an admin key may send task events",
        ),
        EventBody::ForecastOverride { .. } => Some(
            "forecast overrides go through POST /api/v1/accounts/{id}/forecast-override (write scope), which records the key's name; only an admin key may send them as events",
        ),
        _ => None,
    }
}

/// `POST /v1/{track,identify,group,page,screen,alias,batch}`: the Segment HTTP API.
pub(crate) async fn segment_call(
    State(state): State<AppState>,
    UrlPath(call): UrlPath<String>,
    h: HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    const CALLS: &[&str] = &["track", "identify", "group", "page", "screen", "alias", "batch"];
    if !CALLS.contains(&call.as_str()) {
        return Err(ApiError::new("not_found", format!("no Segment call {call:?}")));
    }
    // An Authorization header decides; without one, Segment's writeKey in the body does.
    let header_auth = h.contains_key(header::AUTHORIZATION);
    if header_auth {
        authorise(&state, &h, Scope::Ingest)?;
    }
    let body = body_bytes(&state, body)?;
    let (events, rejected, ignored) = {
        let state = state.clone();
        off_worker(body.len(), move || segment_events(&state, &call, header_auth, &body))
            .await
            .unwrap_or_else(read_failed)?
    };
    accept(&state, events, rejected, Some(("ignored", json!(ignored)))).await
}

fn read_failed<T>() -> Result<T, ApiError> {
    Err(ApiError::new("internal", "reading the events failed"))
}

/// A Segment call's body, authenticated by its writeKey when no header did, mapped to
/// events: (events, rejections, calls ignored). CPU work: run off the async workers.
fn segment_events(
    state: &AppState,
    call: &str,
    header_auth: bool,
    body: &[u8],
) -> Result<(Vec<Event>, Vec<Rejection>, u64), ApiError> {
    let received = (state.0.clock)();
    let root: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        // Without a key, nothing about the body is told.
        Err(_) if !header_auth => return Err(segment_key_missing()),
        Err(e) => return Err(ApiError::new("invalid_json", format!("malformed JSON: {e}"))),
    };
    if !header_auth {
        authorise_write_key(state, &root)?;
    } else if let Some(why) = segment::malformed_write_key(&root) {
        return Err(ApiError::new("invalid_request", why));
    }
    let mut shared = None;
    let (messages, sent_at): (Vec<&Value>, Option<Timestamp>) = if call == "batch" {
        let list = root.get("batch").and_then(Value::as_array).ok_or_else(|| {
            let mut e = ApiError::new("invalid_events", "a batch call needs a \"batch\" array");
            e.rejected =
                vec![Rejection { line: 1, field: Some("batch".into()), reason: "missing".into() }];
            e
        })?;
        let envelope = segment::batch_envelope(&root)
            .map_err(|e| ApiError::new("invalid_request", format!("{}: {}", e.field, e.reason)))?;
        shared = envelope.context;
        (list.iter().collect(), envelope.sent_at)
    } else {
        (vec![&root], None)
    };
    let cfg = IngestConfig { now: Some(received), ..state.0.ingest.clone() };
    // A number too small for a double (`1e-400`) reaches us as 0.0: found in the text, it
    // rejects the messages holding a zero float under the same key, rather than being
    // stored as 0.
    let underflow =
        std::str::from_utf8(body).ok().and_then(tenure_ingest::raw::underflowing_number);
    let (mut events, mut rejected, mut ignored) = (Vec::new(), Vec::new(), 0u64);
    for (i, m) in messages.into_iter().enumerate() {
        let line = i as u64 + 1;
        if let Some(key) = underflow.as_deref().filter(|k| segment::tiny_float_under(m, k)) {
            rejected.push(Rejection {
                line,
                field: Some(key.to_string()),
                reason: "a number too small to be represented (it would be stored as 0)".into(),
            });
            continue;
        }
        let size = serde_json::to_vec(m).map_or(0, |v| v.len());
        if size > segment::MAX_MESSAGE_BYTES {
            rejected.push(Rejection {
                line,
                field: None,
                reason: format!(
                    "the message is {size} bytes, over Segment's limit of {}",
                    segment::MAX_MESSAGE_BYTES
                ),
            });
            continue;
        }
        let merged;
        let m = match &shared {
            Some(c) => {
                merged = segment::with_context(m, c);
                &merged
            }
            None => m,
        };
        match segment::map(call, m, sent_at, received, &state.0.segment) {
            Ok(segment::Mapped::Event(v)) => {
                match tenure_ingest::parse_json_line(&v.to_string(), None, &cfg) {
                    Ok(e) => events.push(e),
                    Err(e) => rejected.push(Rejection { line, field: e.field, reason: e.reason }),
                }
            }
            Ok(segment::Mapped::Ignored) => ignored += 1,
            Err(e) => rejected.push(Rejection {
                line,
                field: Some(e.field).filter(|f| !f.is_empty()),
                reason: e.reason,
            }),
        }
    }
    Ok((events, rejected, ignored))
}

/// The Stripe webhook's settings (`[service] stripe_*`).
#[derive(Clone, Debug, Default)]
pub struct StripeConfig {
    pub secret: Option<String>,
    pub tolerance_secs: i64,
    pub options: tenure_stripe::Options,
}

/// `POST /webhooks/stripe`: the signature checked on the raw body, the event mapped to
/// contract events keyed by its id, stored before the 200 (Stripe retries anything else).
/// A type Tenure does not use is acknowledged with `ignored: true`.
pub(crate) async fn stripe_webhook(
    State(state): State<AppState>,
    h: HeaderMap,
    body: BodyResult,
) -> Result<Response, ApiError> {
    let Some(secret) = state.0.stripe.secret.clone() else {
        return Err(ApiError::new(
            "not_found",
            "the Stripe webhook is not configured ([service] stripe_webhook_secret)",
        ));
    };
    let body = body_bytes(&state, body)?;
    let now = (state.0.clock)();
    let sig = h.get("stripe-signature").and_then(|v| v.to_str().ok());
    tenure_stripe::webhook::verify(sig, &body, &secret, now.secs(), state.0.stripe.tolerance_secs)
        .map_err(|e| ApiError::new("invalid_signature", e.to_string()))?;
    let ev: tenure_stripe::objects::Event = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new("invalid_json", format!("not a Stripe event: {e}")))?;
    let mapped = tenure_stripe::webhook::map_event(&ev, &state.0.stripe.options)
        .map_err(|e| ApiError::new("invalid_events", format!("{} ({}): {e}", ev.id, ev.kind)))?;
    if mapped.ignored || mapped.events.is_empty() {
        let body = json!({"success": true, "accepted": 0, "duplicates": 0, "rejected": [], "ignored": true});
        return Ok(json_response(StatusCode::OK, &body));
    }
    let cfg = IngestConfig { now: Some(now), ..state.0.ingest.clone() };
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (i, v) in mapped.events.iter().enumerate() {
        match tenure_ingest::parse_json_line(&v.to_string(), None, &cfg) {
            Ok(e) => events.push(e),
            Err(e) => rejected.push(Rejection {
                line: i as u64 + 1,
                field: e.field,
                reason: format!("{} ({}): {}", ev.id, ev.kind, e.reason),
            }),
        }
    }
    accept(&state, events, rejected, Some(("stripe_event", json!(ev.id)))).await
}
