//! The OpenAPI 3.1 document of [`crate::api::ROUTES`]: typed and enumerated parameters,
//! request bodies (the event contract, the Segment calls, task changes), a response schema
//! for every operation and status, and the security schemes. The parameter types here are
//! also what the server checks (`checked`): a request the document calls invalid is refused
//! with 400 before its handler runs, and the handler sees only what the document allows.

use crate::ApiError;
use crate::api::{ROUTES, Route};
use axum::extract::{Query, Request};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};
use tenure_core::event::{
    ContactRole, ContactStatus, CostCategory, EmailAction, EventKind, InvoiceStatus, LineKind,
    ObjectiveStatus, RequestStatus, RootCause, Section, Sentiment, Severity, SubStatus, SurveyKind,
    TaskStatus, TicketCategory, TicketStatus,
};

/// An id as the contract accepts it (docs/events.md, "Limits"): no control characters (C0,
/// DEL, C1) and not only whitespace.
const ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// Free text: anything but NUL.
const TEXT_PATTERN: &str = "^[^\\u0000]*$";

/// The type of a parameter, as documented and as checked.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// Any text.
    Text,
    /// One of these values.
    Enum(&'static [&'static str]),
    /// A whole number in `min..=max`.
    Int { min: i64, max: i64 },
    /// A finite number in `min..=max`.
    Num { min: f64, max: f64 },
    /// A period: `2024`, `2024-Q1`, `2024-03`, `2024-03-15`, or `START..END` of those.
    Period,
    /// One period of those, not a range (a bound: from its start, or to its end).
    Single,
    /// A page's cursor, as `next_cursor` gave it ([`crate::api::Cursor`]).
    Cursor,
}

const SORTS: &[&str] =
    &["name", "health", "risk", "mrr", "renewal", "csm", "segment", "utilisation", "nps"];
const COLOURS: &[&str] = &["red", "yellow", "green", "grey"];
const SEVERITIES: &[&str] = &["low", "normal", "high", "urgent"];
const TASK_FILTER: &[&str] = &["open", "in_progress", "done", "dismissed", "active"];
/// The Segment calls (`/v1/{call}`).
pub const CALLS: &[&str] = &["track", "identify", "group", "page", "screen", "alias", "batch"];
/// The most rows a list answers at once.
pub const MAX_LIMIT: i64 = 1000;

/// One period of the grammar as a regular expression, exactly what [`Period::parse`]
/// accepts: years 0001 to 9999, each month's own days, February 29th in leap years only (a
/// value the document allows is never refused; [`single_period_ok`] is the same grammar in
/// code, checked with the parser itself).
///
/// [`Period::parse`]: tenure_core::time::Period::parse
const SINGLE_PERIOD: &str = "(((000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)|(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})(-[Qq][1-4]|-(0[1-9]|1[0-2]))?)";
/// The period grammar: one period, or two joined by `..`.
const PERIOD_PATTERN: &str = concat!(
    "^",
    "(((000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)|(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})(-[Qq][1-4]|-(0[1-9]|1[0-2]))?)",
    "(\\.\\.",
    "(((000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)-02-29)|(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})(-[Qq][1-4]|-(0[1-9]|1[0-2]))?)",
    ")?$"
);

/// The type of parameter `name` of the route at `path`. Every parameter of [`ROUTES`] has
/// one (a test checks it): an untyped parameter is a bug.
pub fn param_type(path: &str, name: &str) -> Option<Ty> {
    Some(match (path, name) {
        ("/v1/{call}", "call") => Ty::Enum(CALLS),
        ("/api/v1/forecast", "by") => Ty::Enum(&["month", "csm", "segment"]),
        (_, "kpi") => Ty::Enum(tenure_kpi::explain::IDS),
        (_, "id" | "q" | "segment" | "csm" | "account" | "rule" | "owner" | "by") => Ty::Text,
        ("/webhooks/stripe", "Stripe-Signature") => Ty::Text,
        (_, "colour") => Ty::Enum(COLOURS),
        (_, "customer") => Ty::Enum(&["true", "false"]),
        (_, "min_risk") => Ty::Num { min: 0.0, max: 1.0 },
        (_, "sort") => Ty::Enum(SORTS),
        (_, "order") => Ty::Enum(&["asc", "desc"]),
        (_, "limit") => Ty::Int { min: 0, max: MAX_LIMIT },
        (_, "offset") => Ty::Int { min: 0, max: i64::from(u32::MAX) },
        (_, "period") => Ty::Period,
        ("/api/v1/audit", "from" | "to") => Ty::Single,
        (_, "every") => Ty::Enum(&["day", "week", "month", "quarter", "year"]),
        (_, "unit") => Ty::Enum(&["month", "quarter", "year"]),
        (_, "metric") => Ty::Enum(&["logo", "logos", "revenue"]),
        (_, "severity") => Ty::Enum(SEVERITIES),
        ("/api/v1/tasks", "status") => Ty::Enum(TASK_FILTER),
        (_, "cursor") => Ty::Cursor,
        _ => return None,
    })
}

/// Query parameters a route cannot do without.
fn required(path: &str, name: &str) -> bool {
    matches!((path, name), ("/api/v1/kpis/explain", "kpi"))
}

fn single_period_ok(s: &str) -> bool {
    // The shape first (the parser trims spaces the document does not allow), then the
    // parser itself: days of each month, leap years, years 1 to 9999.
    shape_ok(s) && tenure_core::time::Period::parse(s).is_ok()
}

fn shape_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let d = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    match b.len() {
        4 => d(0..4),
        7 if b[4] == b'-' && matches!(b[5], b'Q' | b'q') => {
            d(0..4) && (b'1'..=b'4').contains(&b[6])
        }
        7 => d(0..4) && b[4] == b'-' && d(5..7) && (1..=12).contains(&two(5)),
        10 => {
            d(0..4)
                && b[4] == b'-'
                && d(5..7)
                && b[7] == b'-'
                && d(8..10)
                && (1..=12).contains(&two(5))
                && (1..=31).contains(&two(8))
        }
        _ => false,
    }
}

/// Whether `s` is in the period grammar ([`PERIOD_PATTERN`]).
pub fn period_ok(s: &str) -> bool {
    match s.split_once("..") {
        Some((a, b)) => single_period_ok(a) && single_period_ok(b),
        None => single_period_ok(s),
    }
}

impl Ty {
    /// Whether `v` is a value of this type; the reason when not.
    pub fn check(self, v: &str) -> Result<(), String> {
        match self {
            Ty::Text => Ok(()),
            Ty::Enum(vals) if vals.contains(&v) => Ok(()),
            Ty::Enum(vals) => Err(format!("{v:?} is not one of {}", vals.join(" | "))),
            Ty::Int { min, max } => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(()),
                Ok(n) => Err(format!("{n} is out of range {min}..={max}")),
                Err(_) => Err(format!("{v:?} is not a whole number")),
            },
            Ty::Num { min, max } => match v.parse::<f64>() {
                Ok(x) if x.is_finite() && (min..=max).contains(&x) => Ok(()),
                Ok(x) if x.is_finite() => Err(format!("{x} is out of range {min}..={max}")),
                _ => Err(format!("{v:?} is not a number")),
            },
            Ty::Period if period_ok(v) => Ok(()),
            Ty::Single if !v.contains("..") && single_period_ok(v) => Ok(()),
            Ty::Single => {
                Err(format!("{v:?} is not a period (2024, 2024-Q1, 2024-03, 2024-03-15)"))
            }
            Ty::Period => {
                Err(format!("{v:?} is not a period (2024, 2024-Q1, 2024-03, 2024-03-15, A..B)"))
            }
            Ty::Cursor => crate::api::Cursor::parse(v).map(|_| ()),
        }
    }

    /// The JSON schema of the type.
    pub fn schema(self) -> Value {
        match self {
            Ty::Text => json!({"type": "string"}),
            Ty::Enum(vals) => json!({"type": "string", "enum": vals}),
            Ty::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
            Ty::Num { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
            Ty::Period => json!({"type": "string", "pattern": PERIOD_PATTERN}),
            Ty::Single => json!({"type": "string", "pattern": format!("^{SINGLE_PERIOD}$")}),
            Ty::Cursor => json!({"type": "string", "pattern": "^[0-9a-f]{16}([0-9a-f]{2})*$",
                "maxLength": 16 + 2 * 1024}),
        }
    }
}

/// Checks the query of a request against the route's documented parameters (others are
/// ignored): 400 `invalid_request` naming the parameter and the reason.
pub fn check_query(r: &Route, query: Option<&str>) -> Result<(), ApiError> {
    let uri = format!("/?{}", query.unwrap_or(""));
    let uri: axum::http::Uri =
        uri.parse().map_err(|_| ApiError::new("invalid_request", "an unreadable query string"))?;
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::new("invalid_request", format!("the query: {}", e.body_text())))?;
    for (k, v) in &pairs {
        if !r.params.iter().any(|(n, at, _)| *n == k.as_str() && *at == "query") {
            continue;
        }
        if let Some(ty) = param_type(r.path, k) {
            ty.check(v).map_err(|why| ApiError::new("invalid_request", format!("{k}: {why}")))?;
        }
    }
    Ok(())
}

/// `m` with its query checked against the route's documented parameters first.
pub fn checked(
    r: &'static Route,
    m: MethodRouter<crate::AppState>,
) -> MethodRouter<crate::AppState> {
    if !r.params.iter().any(|(_, at, _)| *at == "query") {
        return m;
    }
    m.route_layer(axum::middleware::from_fn(move |req: Request, next: Next| async move {
        match check_query(r, req.uri().query()) {
            Ok(()) => next.run(req).await,
            Err(e) => e.into_response(),
        }
    }))
}

fn strings(v: impl IntoIterator<Item = &'static str>) -> Value {
    Value::Array(v.into_iter().map(|s| json!(s)).collect())
}

fn en<T: Copy>(all: &[T], s: fn(T) -> &'static str) -> Value {
    json!({"type": "string", "enum": strings(all.iter().map(|x| s(*x)))})
}

fn nullable(mut v: Value) -> Value {
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        v["type"] = json!([t, "null"]);
    } else {
        v = json!({"anyOf": [v, {"type": "null"}]});
    }
    v
}

fn sref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// One event of the input contract (`docs/events.md`), by type.
fn event_schema() -> Value {
    let id = || sref("Id");
    let text = || json!({"type": "string", "maxLength": 10000, "pattern": TEXT_PATTERN});
    let money = || sref("Money");
    let ts = || sref("Timestamp");
    let int = |lo: i64, hi: i64| json!({"type": "integer", "minimum": lo, "maximum": hi});
    let attrs = json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}});
    // (type, required besides type/timestamp/account_id, properties)
    let types: Vec<(EventKind, Vec<&str>, Value)> = vec![
        (EventKind::Account, vec![], json!({"name": text(), "attributes": attrs})),
        (
            EventKind::Contact,
            vec!["contact_id"],
            json!({"contact_id": id(), "email": text(), "name": text(),
                   "role": en(ContactRole::ALL, ContactRole::as_str),
                   "status": en(ContactStatus::ALL, ContactStatus::as_str)}),
        ),
        (
            EventKind::Subscription,
            vec!["subscription_id", "status"],
            json!({"subscription_id": id(), "product": id(), "plan": id(),
                   "kind": en(LineKind::ALL, LineKind::as_str), "quantity": int(0, 1_000_000_000),
                   "amount": money(), "currency": sref("Currency"),
                   "interval": {"type": "string", "pattern": "^(month|quarter|year|[1-9][0-9]?m)$"},
                   "status": en(SubStatus::ALL, SubStatus::as_str), "term_start": ts(), "term_end": ts(),
                   "cancel_reason": text(), "cancel_at": ts()}),
        ),
        (
            EventKind::Invoice,
            vec!["invoice_id", "amount", "status"],
            json!({"invoice_id": id(), "amount": money(), "currency": sref("Currency"),
                   "status": en(InvoiceStatus::ALL, InvoiceStatus::as_str),
                   "period_start": ts(), "period_end": ts()}),
        ),
        (
            EventKind::Usage,
            vec!["user_id", "event"],
            json!({"user_id": id(), "event": id(), "feature": id(), "quantity": int(0, 1_000_000_000)}),
        ),
        (
            EventKind::Ticket,
            vec!["ticket_id", "status"],
            json!({"ticket_id": id(), "status": en(TicketStatus::ALL, TicketStatus::as_str),
                   "category": en(TicketCategory::ALL, TicketCategory::as_str),
                   "severity": en(Severity::ALL, Severity::as_str), "cost": money(),
                   "csat": {"type": "number"}}),
        ),
        (
            EventKind::SurveySent,
            vec!["survey", "contact_id"],
            json!({"survey": en(SurveyKind::ALL, SurveyKind::as_str), "contact_id": id()}),
        ),
        (
            EventKind::SurveyResponse,
            vec!["survey", "contact_id", "score"],
            json!({"survey": en(SurveyKind::ALL, SurveyKind::as_str), "contact_id": id(),
                   "score": {"type": ["number", "string"], "description": "nps: 0-10; csat: the configured scale; success: positive | neutral | negative"},
                   "comment": text()}),
        ),
        (
            EventKind::Email,
            vec!["contact_id", "campaign", "action"],
            json!({"contact_id": id(), "campaign": id(), "action": en(EmailAction::ALL, EmailAction::as_str)}),
        ),
        (
            EventKind::WebVisit,
            vec!["section"],
            json!({"contact_id": id(), "section": en(Section::ALL, Section::as_str), "page": text()}),
        ),
        (
            EventKind::Touchpoint,
            vec!["kind"],
            json!({"kind": id(), "sentiment": en(Sentiment::ALL, Sentiment::as_str), "note": text()}),
        ),
        (EventKind::Milestone, vec!["name"], json!({"name": id()})),
        (
            EventKind::SuccessObjective,
            vec!["objective_id", "status"],
            json!({"objective_id": id(), "status": en(ObjectiveStatus::ALL, ObjectiveStatus::as_str),
                   "value": money(), "currency": sref("Currency")}),
        ),
        (
            EventKind::Assessment,
            vec![],
            json!({"relationship": int(1, 5), "strategic_importance": int(1, 5), "author": id()}),
        ),
        (
            EventKind::ChangeRequest,
            vec!["request_id", "status"],
            json!({"request_id": id(), "status": en(RequestStatus::ALL, RequestStatus::as_str)}),
        ),
        (
            EventKind::Cost,
            vec!["category", "amount", "period_start", "period_end"],
            json!({"category": en(CostCategory::ALL, CostCategory::as_str), "amount": money(),
                   "currency": sref("Currency"), "period_start": ts(), "period_end": ts()}),
        ),
        (
            EventKind::Alert,
            vec!["alert_id", "rule", "severity"],
            json!({"alert_id": id(), "rule": id(), "severity": en(Severity::ALL, Severity::as_str), "message": text()}),
        ),
        (
            EventKind::Task,
            vec!["task_id"],
            json!({"task_id": id(), "status": en(TaskStatus::ALL, TaskStatus::as_str), "rule": id(),
                   "alert_id": id(), "title": text(), "owner": id(), "due": ts(), "note": text(),
                   "root_cause": id(), "author": id()}),
        ),
    ];
    let branches: Vec<Value> = types
        .into_iter()
        .map(|(kind, req, props)| {
            let mut p = props.as_object().cloned().unwrap_or_default();
            p.insert("type".into(), json!({"const": kind.as_str()}));
            p.insert("timestamp".into(), ts());
            p.insert("message_id".into(), id());
            let mut required = vec!["type", "timestamp"];
            if kind != EventKind::Cost {
                p.insert("account_id".into(), id());
                required.push("account_id");
            }
            required.extend(req);
            json!({"type": "object", "title": kind.as_str(), "properties": p, "required": required})
        })
        .collect();
    json!({"oneOf": branches, "description": "One event of the input contract (docs/events.md); unknown fields are ignored"})
}

/// A Segment message of call `call` (`None`: any, in a batch, where `type` says which).
/// What the mapping checks is what the schema says: ids are non-empty strings or numbers,
/// objects are objects, timestamps RFC 3339; `null` is the same as absent.
fn segment_message(call: Option<&str>) -> Value {
    let id = || json!({"anyOf": [{"type": "string", "minLength": 1}, {"type": "number"}, {"type": "null"}]});
    let id_set = || json!({"anyOf": [{"type": "string", "minLength": 1}, {"type": "number"}]});
    let obj = || json!({"type": ["object", "null"]});
    let ts = || nullable(sref("Timestamp"));
    let mut p = json!({
        "userId": id(), "anonymousId": id(),
        "messageId": {"type": ["string", "null"], "minLength": 1},
        "timestamp": ts(), "originalTimestamp": ts(), "sentAt": ts(),
        "context": {"type": ["object", "null"], "properties": {"groupId": id()}},
        "integrations": obj(), "properties": obj(), "traits": obj(),
        "writeKey": {"type": ["string", "null"], "minLength": 1, "description": "The write key, when no Authorization header is sent"},
    });
    let who = json!({"anyOf": [
        {"required": ["userId"], "properties": {"userId": id_set()}},
        {"required": ["anonymousId"], "properties": {"anonymousId": id_set()}}]});
    let in_context = json!({"required": ["context"], "properties": {"context": {
        "type": "object", "required": ["groupId"], "properties": {"groupId": id_set()}}}});
    let in_object = |o: &str, key: &str| json!({"required": [o], "properties": {o: {"type": "object", "required": [key], "properties": {key: id_set()}}}});
    let mut all = vec![];
    let mut required = vec![];
    match call {
        Some("track") => {
            p["event"] = json!({"type": "string", "minLength": 1});
            required.push("event");
            all.push(who.clone());
            all.push(json!({"anyOf": [in_context.clone(), in_object("properties", "account_id")]}));
        }
        Some(c @ ("page" | "screen")) => {
            p["name"] = json!({"type": ["string", "null"]});
            if c == "page" {
                p["category"] = json!({"type": ["string", "null"]});
            }
            all.push(who.clone());
            all.push(json!({"anyOf": [in_context.clone(), in_object("properties", "account_id")]}));
        }
        Some("identify") => {
            all.push(who.clone());
            all.push(json!({"anyOf": [in_context.clone(), in_object("traits", "account_id"),
                {"required": ["traits"], "properties": {"traits": {"type": "object", "required": ["company"],
                    "properties": {"company": {"type": "object", "required": ["id"], "properties": {"id": id_set()}}}}}}]}));
        }
        Some("group") => {
            p["groupId"] = id_set();
            required.push("groupId");
        }
        Some("alias") => p["previousId"] = id(),
        _ => {}
    }
    let mut s = json!({"type": "object", "properties": p});
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    if !all.is_empty() {
        s["allOf"] = json!(all);
    }
    if call.is_none() {
        let branches: Vec<Value> = CALLS
            .iter()
            .filter(|c| **c != "batch")
            .map(|c| {
                let mut b = segment_message(Some(c));
                b["properties"]["type"] = json!({"const": c});
                let mut required = vec![json!("type")];
                required.extend(b["required"].as_array().cloned().unwrap_or_default());
                b["required"] = Value::Array(required);
                b
            })
            .collect();
        return json!({"oneOf": branches});
    }
    s
}

fn error_codes() -> Value {
    strings(crate::ERROR_CODES.iter().map(|(c, _)| *c))
}

/// The reusable schemas: the answers of the API and its request bodies.
fn components() -> Value {
    let s = |t: &str| json!({"type": t});
    let ns = || json!({"type": ["string", "null"]});
    let nn = || json!({"type": ["number", "null"]});
    let health = json!({"type": ["object", "null"], "properties": {
        "score": nn(), "colour": {"type": "string", "enum": COLOURS}, "scorecard": ns()}});
    let mut m = Map::new();
    m.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {
            "error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": error_codes()}, "message": s("string")}},
            "rejected": {"type": "array", "items": sref("Rejection")}}}),
    );
    m.insert(
        "Rejection".into(),
        json!({"type": "object", "required": ["index", "reason"], "properties": {
            "index": {"type": "integer", "minimum": 0}, "field": ns(), "reason": s("string")}}),
    );
    m.insert("IngestAnswer".into(), json!({"type": "object", "required": ["success", "accepted", "duplicates", "rejected"], "properties": {
            "success": {"const": true}, "accepted": {"type": "integer", "minimum": 0},
            "duplicates": {"type": "integer", "minimum": 0},
            "ignored": {"type": "integer", "minimum": 0, "description": "Segment calls Tenure has no use for (alias)"},
            "rejected": {"type": "array", "items": sref("Rejection")}}}));
    m.insert(
        "Id".into(),
        json!({"type": "string", "minLength": 1, "maxLength": 256, "pattern": ID_PATTERN}),
    );
    // Real calendar days only (a pattern cannot tell leap years: 29 February, which is
    // accepted in them, is left out), years 1900-2199.
    m.insert("Timestamp".into(), json!({"type": "string", "description": "RFC 3339, or YYYY-MM-DD (midnight UTC); years 1900-2199 (29 February of leap years is accepted too)",
            "pattern": "^(19|20|21)[0-9]{2}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?$"}));
    m.insert("Money".into(), json!({"description": "An amount in major units: a decimal string or a number, stored exactly",
            "anyOf": [{"type": "string", "pattern": "^-?[0-9]{1,15}(\\.[0-9]{1,4})?$"}, {"type": "number"}]}));
    m.insert(
        "Currency".into(),
        json!({"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"}),
    );
    m.insert("Event".into(), json!(event_schema()));
    m.insert("Events".into(), json!({"description": "A JSON array of events, or one event (JSON lines: application/x-ndjson)",
            "anyOf": [{"type": "array", "items": sref("Event")}, sref("Event")]}));
    m.insert("SegmentBatch".into(), json!({"type": "object", "required": ["batch"], "properties": {
            "batch": {"type": "array", "items": segment_message(None)},
            "sentAt": nullable(sref("Timestamp")),
            "context": {"type": ["object", "null"], "description": "Shared by every call of the batch (a call's own keys win)"},
            "integrations": {"type": ["object", "null"]},
            "writeKey": {"type": ["string", "null"], "minLength": 1}}}));
    let changes: Vec<Value> = ["status", "owner", "due", "note", "root_cause"]
        .iter()
        .map(|f| json!({"required": [f], "properties": {*f: {"not": {"type": "null"}}}}))
        .collect();
    // The one root-cause taxonomy (the dashboard offers the same list).
    let mut causes: Vec<Value> = RootCause::ALL.iter().map(|c| json!(c.as_str())).collect();
    causes.push(Value::Null);
    m.insert("TaskChange".into(), json!({"type": "object", "additionalProperties": false,
        "description": "At least one field that is not null; resolving (status done) needs a root_cause in the same change, except for tasks of the routine rules (no_engagement, no_survey_response, renewal_notice, use_outside_subscription). The change is recorded under the name of the key (or the person's email, for a personal token) that makes it (there is no author field)",
        "anyOf": changes,
        "properties": {
            "status": {"type": ["string", "null"], "enum": [TaskStatus::Open.as_str(), TaskStatus::InProgress.as_str(), TaskStatus::Done.as_str(), TaskStatus::Dismissed.as_str(), null]},
            "owner": {"type": ["string", "null"], "minLength": 1, "maxLength": 256, "pattern": ID_PATTERN},
            "due": nullable(sref("Timestamp")),
            "note": {"type": ["string", "null"], "maxLength": 10000},
            "root_cause": {"type": ["string", "null"], "enum": causes, "description": "Why the account was at risk, one of the root-cause taxonomy; needed to resolve (status done) a task of a risk rule"}}}));
    m.insert("AccountSummary".into(), json!({"type": "object", "required": ["account_id", "customer", "mrr", "open_tasks"], "properties": {
            "account_id": s("string"), "name": ns(), "segment": ns(), "csm": ns(), "customer": s("boolean"),
            "mrr": s("number"), "renewal_date": ns(), "health": health.clone(), "risk": nn(),
            "licence_utilisation": nn(), "nps": nn(), "open_tasks": {"type": "integer", "minimum": 0}}}));
    m.insert(
        "AccountList".into(),
        json!({"type": "object", "required": ["as_of", "total", "accounts"], "properties": {
            "as_of": s("string"), "total": {"type": "integer", "minimum": 0},
            "accounts": {"type": "array", "items": sref("AccountSummary")}}}),
    );
    let nn = || json!({"type": ["number", "null"]});
    let lifetime = json!({"type": ["object", "null"], "description": "BG/NBD + Gamma-Gamma on paid invoices, remade on the forecast's schedule (null before its first run or without a paid invoice)",
        "properties": {"model": s("string"), "as_of": s("string"), "horizon_months": {"type": "integer"},
            "repeat_payments": {"type": "integer", "minimum": 0}, "recency_days": s("number"), "age_days": s("number"),
            "p_alive": nn(), "expected_payments": nn(), "expected_payment_value": nn(), "clv": nn()}});
    m.insert("Account".into(), json!({"type": "object", "required": ["account_id", "mrr", "customer", "alerts", "tasks", "kpis"], "properties": {
            "account_id": s("string"), "name": ns(), "attributes": {"type": "object", "additionalProperties": s("string")},
            "mrr": s("number"), "arr": s("number"), "customer": s("boolean"), "seats": s("integer"), "plan": ns(),
            "first_paid": ns(), "movements": s("array"), "renewals": s("array"), "contacts": s("array"),
            "departures": s("array"), "nps_history": s("array"), "tickets": s("array"), "milestones": s("array"),
            "usage_trend": s("array"), "kpis": sref("KpiRow"), "as_of": s("string"),
            "health": health.clone(),
            "risk": {"type": ["object", "null"], "properties": {"probability": s("number"), "drivers": {"type": ["array", "null"]}}},
            "alerts": {"type": "array", "items": {"type": "object"}}, "tasks": {"type": "array", "items": sref("Task")},
            "lifetime_value": lifetime}}));
    m.insert("KpiRow".into(), json!({"type": "object", "required": ["period", "kpis"], "properties": {
            "period": {"type": "object", "required": ["start", "end"], "properties": {"start": s("string"), "end": s("string")}},
            "segment": ns(),
            "kpis": {"type": "object", "additionalProperties": {"anyOf": [
                {"type": ["number", "null"]}, {"type": "array", "items": s("number"), "minItems": 2, "maxItems": 2}]}}}}));
    // In parts: one json! of the whole nests too deep for the macro.
    let source = json!({"type": "object", "required": ["ref", "found"], "properties": {
        "ref": {"type": "string", "description": "The event's message_id, else log:subscription:N (its record index in the subscription lane)"},
        "found": s("boolean"), "position": {"type": "integer", "minimum": 0},
        "type": s("string"), "ts": s("string"), "message_id": ns(), "subscription_id": s("string"),
        "product": ns(), "plan": ns(), "status": en(SubStatus::ALL, SubStatus::as_str),
        "amount": s("number"), "currency": sref("Currency"), "interval_months": s("integer"), "quantity": s("integer")}});
    let movement = json!({"type": "object", "required": ["ts", "kind", "amount", "sources"], "properties": {
        "ts": s("string"),
        "kind": {"type": "string", "enum": ["new", "expansion", "contraction", "churn", "reactivation"]},
        "amount": {"type": "number", "description": "What the movement adds to the figure (signed for mrr_net_change, mrr_start and mrr_end)"},
        "involuntary": s("boolean"),
        "sources": {"type": "array", "items": source}}});
    let account = json!({"type": "object", "required": ["account", "amount", "movements"], "properties": {
        "account": s("string"), "name": ns(), "segment": ns(), "amount": s("number"),
        "movements": {"type": "array", "items": movement}}});
    m.insert("Explanation".into(), json!({"type": "object",
        "required": ["kpi", "period", "as_of", "currency", "at", "by", "account", "figure", "total", "balanced", "accounts_total", "accounts"],
        "properties": {
            "kpi": {"type": "string", "enum": tenure_kpi::explain::IDS},
            "period": {"type": "object", "required": ["start", "end"], "properties": {"start": s("string"), "end": s("string")}},
            "as_of": s("string"), "currency": sref("Currency"),
            "at": {"type": ["string", "null"], "description": "mrr_start and mrr_end: the MRR just before this instant"},
            "by": ns(),
            "segment": {"type": ["string", "null"], "description": "Present when one segment was asked for; null: the accounts without the attribute"},
            "account": ns(),
            "figure": {"type": "number", "description": "The KPI as /api/v1/kpis reports it for the same period and cut"},
            "total": {"type": "number", "description": "The sum of the accounts' amounts (of all of them, not only this page)"},
            "balanced": {"type": "boolean", "description": "total equals figure (and each segment's total its figure): always true unless Tenure has a bug"},
            "segments": {"type": "array", "description": "With by=KEY: each segment's total and figure", "items": {"type": "object", "properties": {
                "segment": ns(), "total": s("number"), "figure": s("number")}}},
            "accounts_total": {"type": "integer", "minimum": 0},
            "accounts": {"type": "array", "items": account}}}));
    m.insert("KpiRows".into(), json!({"type": "array", "items": sref("KpiRow")}));
    m.insert("Cohorts".into(), json!({"type": "object", "required": ["metric", "cohorts"], "properties": {
            "metric": {"type": "string", "enum": ["logo", "revenue"]},
            "cohorts": {"type": "array", "items": {"type": "object", "properties": {
                "cohort": s("string"), "start": s("string"), "accounts": s("integer"), "base_mrr": s("number"),
                "retention": {"type": "array", "items": nn()}}}}}}));
    m.insert("Alert".into(), json!({"type": "object", "required": ["alert_id", "account_id", "at", "rule", "severity"], "properties": {
            "alert_id": s("string"), "account_id": s("string"), "account_name": ns(), "at": s("string"),
            "rule": s("string"), "severity": {"type": "string", "enum": SEVERITIES}, "message": ns(), "owner": ns()}}));
    m.insert("AlertList".into(), json!({"type": "object", "required": ["total", "alerts"], "properties": {
            "total": {"type": "integer", "minimum": 0}, "alerts": {"type": "array", "items": sref("Alert")},
            "next_cursor": {"type": ["string", "null"], "description": "The next page: pass it as cursor; null on the last page"}}}));
    m.insert("Task".into(), json!({"type": "object", "required": ["task_id", "account_id", "status", "opened", "notes"], "properties": {
            "task_id": s("string"), "account_id": s("string"), "rule": ns(), "alert_id": ns(), "title": ns(),
            "owner": ns(), "due": ns(), "status": en(TaskStatus::ALL, TaskStatus::as_str), "opened": s("string"),
            "resolved": ns(), "root_cause": ns(), "alerts": {"type": "integer", "minimum": 0},
            "notes": {"type": "array", "items": {"type": "object", "required": ["at", "note"], "properties": {
                "at": s("string"), "author": ns(), "note": s("string")}}}}}));
    m.insert("TaskList".into(), json!({"type": "object", "required": ["total", "tasks"], "properties": {
            "total": {"type": "integer", "minimum": 0}, "tasks": {"type": "array", "items": sref("Task")},
            "next_cursor": {"type": ["string", "null"], "description": "The next page: pass it as cursor; null on the last page"}}}));
    m.insert("Scorecards".into(), json!({"type": "object", "required": ["scorecards", "accounts_by_colour"], "properties": {
            "scorecards": {"type": "array", "items": {"type": "object", "properties": {"name": s("string"), "dimension": s("string"), "rollup": s("boolean")}}},
            "accounts_by_colour": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}}));
    let nn = || json!({"type": ["number", "null"]});
    m.insert("Model".into(), json!({"type": "object", "required": ["model", "since", "error"], "properties": {
            "model": {"type": ["object", "null"], "description": "null: no churn model in use", "required": ["outcome", "horizon_days", "chosen", "verdict", "candidates"], "properties": {
                "outcome": s("string"), "horizon_days": {"type": "integer"}, "first_snapshot": s("string"), "last_snapshot": s("string"),
                "n_snapshots": {"type": "integer", "minimum": 0}, "n_churned": {"type": "integer", "minimum": 0},
                "chosen": s("string"), "verdict": s("string"), "rule": s("string"),
                "validation": {"type": "object", "properties": {"fit_snapshots": {"type": "integer", "minimum": 0},
                    "snapshots": {"type": "integer", "minimum": 0}, "churned": {"type": "integer", "minimum": 0}, "from": ns(), "to": ns()}},
                "candidates": {"type": "array", "description": "Best (lowest log-loss on the latest snapshots) first", "items": {"type": "object",
                    "required": ["name", "log_loss", "auc", "ece", "chosen"], "properties": {
                    "name": s("string"), "log_loss": nn(), "auc": nn(), "ece": nn(), "chosen": s("boolean")}}}}},
            "since": {"type": ["string", "null"], "description": "When the service began to score with this model (null: since its start)"},
            "error": {"type": ["string", "null"], "description": "Why the latest model file could not be used, when it could not"}}}));
    m.insert("OpenApi".into(), json!({"type": "object", "required": ["openapi", "paths"]}));
    let totals = json!({"type": "object", "required": ["contracts", "arr_due", "expected_arr", "interval", "categories"], "properties": {
            "contracts": {"type": "integer", "minimum": 0}, "arr_due": s("number"), "expected_arr": s("number"),
            "interval": {"type": "array", "items": s("number"), "minItems": 2, "maxItems": 2},
            "interval_method": {"enum": ["exact", "compressed", "cornish_fisher"]}, "categories": {"type": "object"}}});
    m.insert("Forecast".into(), json!({"type": "object", "required": ["as_of", "period", "model", "with_overrides", "items"], "properties": {
            "as_of": s("string"), "period": {"type": "object"}, "model": totals, "with_overrides": totals,
            "groups": {"type": "array"}, "items": {"type": "array", "items": {"type": "object", "required": ["account_id", "kind", "due", "arr_due", "probability", "category"]}}}}));
    m.insert(
        "ForecastBacktest".into(),
        json!({"type": "object", "required": ["periods", "summary"], "properties": {
            "periods": {"type": "array"}, "summary": {"type": "object"}}}),
    );
    m.insert("ForecastCall".into(), json!({"type": "object", "additionalProperties": false, "required": ["category"], "properties": {
            "category": en(tenure_core::event::ForecastCategory::ALL, tenure_core::event::ForecastCategory::as_str),
            "amount": {"type": ["string", "null"], "pattern": "^[0-9]{1,13}(\\.[0-9]{1,2})?$",
                       "description": "ARR expected back, in the base currency: a decimal string, not negative"},
            "subscription_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 256, "pattern": ID_PATTERN},
            "reason": {"type": ["string", "null"], "maxLength": 10000, "pattern": TEXT_PATTERN}}}));
    m.insert(
        "ForecastCallStored".into(),
        json!({"type": "object", "required": ["type", "account_id", "category", "author"]}),
    );
    m.insert(
        "Audit".into(),
        json!({"type": "object", "required": ["entries"], "properties": {"entries": {"type": "array", "items": {
            "type": "object", "required": ["at", "who", "action", "detail"], "properties": {
                "at": s("string"), "who": s("string"), "action": s("string"),
                "account": s("string"), "target": s("string"), "detail": s("string")}}}}}),
    );
    Value::Object(m)
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": sref("Error")}}})
}

fn ok_json(schema: Value) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
}

/// The operation object of route `r` (at `path`: a Segment call has one path per call).
fn operation(r: &Route, path: &str, call: Option<&str>) -> Value {
    let params: Vec<Value> = r
        .params
        .iter()
        .filter(|(n, _, _)| !(call.is_some() && *n == "call"))
        .map(|(n, at, d)| {
            let ty = param_type(r.path, n).unwrap_or(Ty::Text);
            json!({"name": n, "in": at, "required": matches!(*at, "path" | "header") || required(r.path, n), "description": d, "schema": ty.schema()})
        })
        .collect();
    let mut responses = Map::new();
    let ok = match (r.method, r.path) {
        ("get", "/healthz") => {
            json!({"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        ("get", "/metrics") => {
            json!({"description": "The Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}})
        }
        ("get", "/api/v1/openapi.json") => ok_json(sref("OpenApi")),
        ("post", "/api/v1/events") | ("post", "/v1/{call}") | ("post", "/webhooks/stripe") => {
            ok_json(sref("IngestAnswer"))
        }
        ("get", "/api/v1/accounts") => ok_json(sref("AccountList")),
        ("get", "/api/v1/accounts/{id}") => ok_json(sref("Account")),
        ("get", "/api/v1/kpis") => ok_json(sref("KpiRows")),
        ("get", "/api/v1/kpis/explain") => ok_json(sref("Explanation")),
        ("get", "/api/v1/cohorts") => ok_json(sref("Cohorts")),
        ("get", "/api/v1/alerts") => ok_json(sref("AlertList")),
        ("get", "/api/v1/tasks") => ok_json(sref("TaskList")),
        ("get" | "patch", "/api/v1/tasks/{id}") => ok_json(sref("Task")),
        ("get", "/api/v1/scorecards") => ok_json(sref("Scorecards")),
        ("get", "/api/v1/model") => ok_json(sref("Model")),
        ("get", "/api/v1/forecast") => ok_json(sref("Forecast")),
        ("get", "/api/v1/forecast/backtest") => ok_json(sref("ForecastBacktest")),
        ("post", "/api/v1/accounts/{id}/forecast-override") => ok_json(sref("ForecastCallStored")),
        ("get", "/api/v1/audit") => ok_json(sref("Audit")),
        // A new route without a documented answer: the document test names it.
        _ => json!({"description": "OK"}),
    };
    responses.insert("200".into(), ok);
    if r.path == "/healthz" {
        responses.insert("503".into(), json!({"description": "Not ready: the event log cannot be written (a full disk, say), with the reason",
            "content": {"text/plain": {"schema": {"type": "string"}}}}));
    }
    let body = matches!(r.method, "post" | "patch" | "put");
    if body || !params.is_empty() {
        responses.insert(
            "400".into(),
            error("Invalid request: a parameter, malformed JSON, every event rejected (with `rejected`), a damaged compressed body"),
        );
    }
    if r.scope.is_some() {
        responses.insert("401".into(), error("No key, or an unknown or revoked one"));
        responses.insert("403".into(), error("The key lacks the scope"));
    }
    // A saved forecast may be missing (`tenure forecast --save` has not run).
    if r.params.iter().any(|(_, at, _)| *at == "path")
        || r.path == "/webhooks/stripe"
        || r.path.starts_with("/api/v1/forecast")
    {
        responses.insert("404".into(), error("No such resource"));
    }
    if (r.method, r.path) == ("patch", "/api/v1/tasks/{id}") {
        responses.insert(
            "409".into(),
            error("`root_cause_required`: resolving a task of a risk rule needs a root_cause"),
        );
    }
    if body {
        responses.insert("413".into(), error("The body (decoded) is over the size limit"));
        responses.insert("415".into(), error("An unsupported Content-Encoding"));
    }
    responses.insert("default".into(), error("Unavailable (503) or an internal error (500)"));
    let mut op = json!({
        "operationId": format!("{}{}", r.method, path.replace(['/', '{', '}', '.'], "_")),
        "summary": r.summary,
        "parameters": params,
        "responses": responses,
    });
    match r.scope {
        Some(s) => {
            let mut sec = vec![json!({"bearer": []}), json!({"basic": []})];
            if call.is_some() {
                // Segment's writeKey authentication: the key in the body instead.
                sec.push(json!({}));
                op["description"] = json!(
                    "Authenticated by an Authorization header (Basic with the write key as user name, or Bearer) or, without one, by `writeKey` in the body. The key needs the ingest scope."
                );
            }
            op["security"] = json!(sec);
            op["x-scope"] = json!(format!("{s:?}").to_lowercase());
        }
        None => op["security"] = json!([]),
    }
    let request = match (r.method, call) {
        ("post", _) if r.path == "/webhooks/stripe" => Some(
            json!({"type": "object", "description": "A Stripe event object, as Stripe sends it"}),
        ),
        ("post", Some("batch")) => Some(sref("SegmentBatch")),
        ("post", Some(c)) => Some(segment_message(Some(c))),
        ("post", None) if r.path.ends_with("/forecast-override") => Some(sref("ForecastCall")),
        ("post", None) => Some(sref("Events")),
        ("patch", _) => Some(sref("TaskChange")),
        _ => None,
    };
    if let Some(schema) = request {
        let mut content = json!({"application/json": {"schema": schema}});
        if call.is_none() && r.method == "post" && r.path == "/api/v1/events" {
            content["application/x-ndjson"] = json!({"schema": {"type": "string", "description": "JSON lines: one event per line"}});
        }
        op["requestBody"] = json!({"required": true, "content": content,
            "description": "JSON; may be sent compressed (Content-Encoding: gzip or deflate)"});
    }
    op
}

/// The OpenAPI 3.1 document of [`ROUTES`] and the error table.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let concrete: Vec<(String, Option<&str>)> = if route.path == "/v1/{call}" {
            CALLS.iter().map(|c| (format!("/v1/{c}"), Some(*c))).collect()
        } else {
            vec![(route.path.to_string(), None)]
        };
        for (path, call) in concrete {
            let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
            entry[route.method] = operation(route, &path, call);
        }
    }
    let codes: Vec<Value> =
        crate::ERROR_CODES.iter().map(|(c, s)| json!({"code": c, "status": s})).collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Tenure", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Customer-success intelligence: ingest, accounts, KPIs, alerts and tasks."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key"},
                "basic": {"type": "http", "scheme": "basic", "description": "An API key as the user name (Segment's write key)"}
            },
            "schemas": components(),
            "x-error-codes": codes,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_typed_and_every_operation_documents_its_answer() {
        for r in ROUTES {
            for (n, _, _) in r.params {
                assert!(
                    param_type(r.path, n).is_some(),
                    "{} {}: {n} has no type",
                    r.method,
                    r.path
                );
            }
        }
        let doc = document();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (m, op) in ops.as_object().unwrap() {
                let ok = &op["responses"]["200"];
                assert!(ok.get("content").is_some(), "{m} {path}: no schema for 200");
                assert!(op["responses"]["default"]["content"].is_object(), "{m} {path}");
                if m == "post" || m == "patch" {
                    assert!(
                        op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                        "{m} {path}"
                    );
                }
            }
        }
    }

    #[test]
    fn parameter_checks_follow_the_documented_types() {
        assert!(Ty::Int { min: 0, max: 1000 }.check("1000").is_ok());
        assert!(Ty::Int { min: 0, max: 1000 }.check("1001").is_err());
        assert!(Ty::Int { min: 0, max: 1000 }.check("-1").is_err());
        assert!(Ty::Int { min: 0, max: 1000 }.check("1.5").is_err());
        assert!(Ty::Num { min: 0.0, max: 1.0 }.check("0.5").is_ok());
        assert!(Ty::Num { min: 0.0, max: 1.0 }.check("NaN").is_err());
        assert!(Ty::Num { min: 0.0, max: 1.0 }.check("inf").is_err());
        assert!(Ty::Enum(COLOURS).check("purple").is_err());
        for p in [
            "2024",
            "2024-Q1",
            "2024-q4",
            "2024-03",
            "2024-03-15",
            "2024-01..2024-06",
            "2023..2024-02-01",
        ] {
            assert!(period_ok(p), "{p}");
            // What the grammar admits, the server parses (a reversed range aside).
            assert!(tenure_core::time::Period::parse(p).is_ok(), "{p}");
        }
        for p in [
            "",
            "24",
            "2024-Q5",
            "2024-13",
            "2024-00",
            "2024-03-32",
            "2024..",
            "..2024",
            "2024-1",
            " 2024",
            "2024-03-1x",
        ] {
            assert!(!period_ok(p), "{p}");
        }
    }

    /// The document's period patterns admit exactly what the server accepts, on every day
    /// of the calendar's edge years (and impossible dates): a schema-valid bound is never
    /// refused, a schema-invalid one never taken.
    #[test]
    fn the_documented_period_patterns_are_the_parsers_grammar() {
        let single = regex::Regex::new(&format!("^{SINGLE_PERIOD}$")).unwrap();
        let range = regex::Regex::new(PERIOD_PATTERN).unwrap();
        let mut n = 0;
        for y in ["0000", "0001", "0004", "0100", "0400", "1900", "2000", "2023", "2024", "9999"] {
            let mut values = vec![y.to_string(), format!("{y}-Q0"), format!("{y}-Q4")];
            for m in 0..=13 {
                values.push(format!("{y}-{m:02}"));
                for d in 0..=32 {
                    values.push(format!("{y}-{m:02}-{d:02}"));
                }
            }
            for v in values {
                let parsed = tenure_core::time::Period::parse(&v).is_ok();
                assert_eq!(single.is_match(&v), parsed, "{v}");
                assert_eq!(single_period_ok(&v), parsed, "{v}");
                assert_eq!(Ty::Single.check(&v).is_ok(), parsed, "{v}");
                assert_eq!(range.is_match(&v), parsed, "{v}");
                n += 1;
            }
        }
        assert!(n > 4000);
        assert!(range.is_match("2024-02-29..2025-02-28") && !range.is_match("2023-02-29..2024"));
        assert!(Ty::Single.check("2024..2025").is_err(), "a bound is one period");
    }
}
