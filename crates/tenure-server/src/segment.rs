//! The Segment spec as an input: `track`, `identify`, `group`, `page`, `screen` and
//! `batch` calls mapped to events of the input contract (events.md, "Segment
//! compatibility"), so that Segment and RudderStack libraries can send to Tenure unchanged.
//!
//! The mapping builds a native event as JSON and hands it to the same validation as a line
//! of a file, so a mapped event is accepted or rejected exactly as a native one would be.

use serde_json::{Map, Value, json};
use tenure_core::time::Timestamp;

/// Segment's limit on one message (its HTTP API answers 400 above it).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// How calls find their account.
#[derive(Clone, Debug)]
pub struct SegmentConfig {
    /// A trait (identify) or property (track, page) naming the account when a call has no
    /// `context.groupId`.
    pub account_trait: String,
}

impl Default for SegmentConfig {
    fn default() -> SegmentConfig {
        SegmentConfig { account_trait: "account_id".to_string() }
    }
}

/// What one Segment message becomes.
#[derive(Debug, PartialEq)]
pub enum Mapped {
    /// A native event (JSON of the input contract), still to be validated.
    Event(Value),
    /// A call Tenure has no use for (`alias`): acknowledged, not stored.
    Ignored,
}

/// Why a message could not be mapped: the field and the reason.
#[derive(Debug, PartialEq)]
pub struct MapError {
    pub field: String,
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> MapError {
    MapError { field: field.to_string(), reason: reason.into() }
}

/// `createdAt` and `created_at` are the same trait to Segment; Tenure keeps snake case.
pub fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(if c == ' ' || c == '-' { '_' } else { c });
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An id of the call itself (`userId`, `groupId`, ...): a non-empty string or a number, as
/// Segment allows; `null` or absent is none; anything else is an error naming `name`.
fn id_field(m: &Map<String, Value>, field: &str, name: &str) -> Result<Option<String>, MapError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(err(name, "expected a non-empty string or a number")),
    }
}

/// A text field of the call (`event`, `name`, `category`, `messageId`): a string (non-empty
/// when `nonempty`), `null` or absent; anything else is an error.
fn string_field(
    m: &Map<String, Value>,
    field: &str,
    nonempty: bool,
) -> Result<Option<String>, MapError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !(nonempty && s.is_empty()) => Ok(Some(s.clone())),
        Some(_) if nonempty => Err(err(field, "expected a non-empty string")),
        Some(_) => Err(err(field, "expected a string")),
    }
}

fn time(m: &Map<String, Value>, field: &str) -> Result<Option<Timestamp>, MapError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Timestamp::parse(s)
            .map(Some)
            .map_err(|e| err(field, format!("unparsable timestamp {s:?}: {e}"))),
        Some(_) => Err(err(field, "expected an ISO-8601 string")),
    }
}

/// When the message happened, corrected for the sender's clock as Segment does:
/// `receivedAt - (sentAt - timestamp)`. Without `sentAt` the client's timestamp is trusted;
/// without any timestamp the message happened when it was received.
fn corrected(
    m: &Map<String, Value>,
    batch_sent_at: Option<Timestamp>,
    received: Timestamp,
) -> Result<Timestamp, MapError> {
    // Every timestamp given is checked, also those another one makes unused.
    let original = time(m, "originalTimestamp")?;
    let stamp = time(m, "timestamp")?;
    let original = original.or(stamp);
    let sent = time(m, "sentAt")?.or(batch_sent_at);
    match (original, sent) {
        (Some(t), Some(s)) => {
            // A sender's clock far off can move the time out of the supported range: say
            // so here, where the correction that did it is known.
            let at = Timestamp(received.0.saturating_sub(s.0.saturating_sub(t.0)));
            at.check_range().map_err(|e| {
                let field = if m.contains_key("originalTimestamp") {
                    "originalTimestamp"
                } else {
                    "timestamp"
                };
                err(
                    field,
                    format!(
                        "corrected for the sender's clock (receivedAt - (sentAt - {field})) \
                         the time is {e}"
                    ),
                )
            })
        }
        (Some(t), None) => Ok(t),
        (None, _) => Ok(received),
    }
}

/// Whether `v` holds, under `key` at any depth, a float that reads as zero or a subnormal:
/// where a body's underflowing number (`1e-400`, found in its text by
/// [`tenure_ingest::raw::underflowing_number`]) can have gone, since serde_json hands it
/// over as 0.0.
pub fn tiny_float_under(v: &Value, key: &str) -> bool {
    let tiny = |v: &Value| matches!(v, Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|x| x.abs() < f64::MIN_POSITIVE));
    match v {
        Value::Object(m) => {
            m.iter().any(|(k, v)| (k == key && tiny(v)) || tiny_float_under(v, key))
        }
        Value::Array(a) => a.iter().any(|v| tiny_float_under(v, key)),
        _ => false,
    }
}

fn object<'a>(
    m: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a Map<String, Value>>, MapError> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(err(field, "expected an object")),
    }
}

/// The write key a request carries in its body (Segment's writeKey authentication): the
/// body's `writeKey`, or else the one every message of a batch that has one agrees on.
/// `Ok(None)`: no key in the body. Never stored: the mapping copies no such field.
pub fn write_key(root: &Value) -> Result<Option<String>, String> {
    fn of(v: &Value) -> Result<Option<&str>, String> {
        match v.get("writeKey") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(_) => Err("writeKey must be a non-empty string".to_string()),
        }
    }
    if let Some(k) = of(root)? {
        return Ok(Some(k.to_string()));
    }
    let mut found: Option<&str> = None;
    for m in root.get("batch").and_then(Value::as_array).into_iter().flatten() {
        if let Some(k) = of(m)? {
            if found.is_some_and(|f| f != k) {
                return Err("the messages carry different write keys (one per request)".into());
            }
            found = Some(k);
        }
    }
    Ok(found.map(str::to_string))
}

/// What is wrong with the `writeKey`s of a body, if anything (each must be a non-empty
/// string), whether or not they are the ones that authenticate it.
pub fn malformed_write_key(root: &Value) -> Option<String> {
    let bad = |v: &Value| match v.get("writeKey") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => true,
    };
    let messages = root.get("batch").and_then(Value::as_array);
    (bad(root) || messages.into_iter().flatten().any(bad))
        .then(|| "writeKey must be a non-empty string".to_string())
}

/// The envelope of a batch: what its calls share.
#[derive(Debug, Default, PartialEq)]
pub struct Envelope {
    pub sent_at: Option<Timestamp>,
    /// Segment applies a batch's context to every call in it.
    pub context: Option<Map<String, Value>>,
}

/// The envelope of a batch; a malformed one is an error.
pub fn batch_envelope(root: &Value) -> Result<Envelope, MapError> {
    let Value::Object(r) = root else { return Err(err("", "a batch is a JSON object")) };
    object(r, "integrations")?;
    let context = object(r, "context")?.cloned();
    Ok(Envelope { sent_at: time(r, "sentAt")?, context })
}

/// `msg` with the batch's `shared` context under its own (the message's keys win).
pub fn with_context(msg: &Value, shared: &Map<String, Value>) -> Value {
    let mut m = msg.clone();
    if let Some(o) = m.as_object_mut() {
        match o.get_mut("context") {
            Some(Value::Object(c)) => {
                for (k, v) in shared {
                    c.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            // A malformed context stays as it is, to be refused by the mapping.
            Some(other) if !other.is_null() => {}
            _ => {
                o.insert("context".into(), Value::Object(shared.clone()));
            }
        }
    }
    m
}

/// The `section` of a web visit from a page's section or category (`Docs`, `API
/// Documentation`): `docs` when it names documentation, `other` when it says so, else
/// `website`.
pub fn section(label: &str) -> &'static str {
    let l = label.trim().to_lowercase();
    if l == "other" {
        return "other";
    }
    let docs = l
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| matches!(w, "doc" | "docs" | "documentation"));
    if docs { "docs" } else { "website" }
}

/// Maps one message of call type `call` (the path's, or the message's `type` in a batch).
pub fn map(
    call: &str,
    msg: &Value,
    batch_sent_at: Option<Timestamp>,
    received: Timestamp,
    cfg: &SegmentConfig,
) -> Result<Mapped, MapError> {
    let Value::Object(m) = msg else {
        return Err(err("", "a message is a JSON object"));
    };
    let call = match call {
        "batch" => m.get("type").and_then(Value::as_str).ok_or_else(|| {
            err("type", "a batch message needs a type (track, identify, group, page, screen)")
        })?,
        c => c,
    };
    let user_id = id_field(m, "userId", "userId")?;
    let anonymous_id = id_field(m, "anonymousId", "anonymousId")?;
    let user = user_id.or(anonymous_id);
    let context = object(m, "context")?;
    let traits = object(m, "traits")?;
    let properties = object(m, "properties")?;
    object(m, "integrations")?;
    let message_id = string_field(m, "messageId", true)?;
    let ts = corrected(m, batch_sent_at, received)?;
    let group = match context {
        Some(c) => id_field(c, "groupId", "context.groupId")?,
        None => None,
    };
    let account_from =
        |o: Option<&Map<String, Value>>| o.and_then(|o| text(o.get(&cfg.account_trait)));
    let mut out = Map::new();
    out.insert("timestamp".into(), json!(ts.to_string()));
    if let Some(id) = message_id {
        out.insert("message_id".into(), json!(id));
    }
    let need_user =
        || user.clone().ok_or_else(|| err("userId", "every call needs a userId or an anonymousId"));
    let no_account = |what: &str| {
        err(
            "context.groupId",
            format!(
                "{what} needs an account: context.groupId or the {:?} {}",
                cfg.account_trait,
                if what == "identify" { "trait" } else { "property" }
            ),
        )
    };
    match call {
        "group" => {
            let id = id_field(m, "groupId", "groupId")?
                .ok_or_else(|| err("groupId", "a group call needs a groupId"))?;
            out.insert("type".into(), json!("account"));
            out.insert("account_id".into(), json!(id));
            let mut attrs = Map::new();
            for (k, v) in traits.into_iter().flatten() {
                let k = snake_case(k);
                match (k.as_str(), v) {
                    ("name", Value::String(s)) => {
                        out.insert("name".into(), json!(s));
                    }
                    // Nested traits (address) and lists have no place among flat attributes.
                    (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) if k != "id" => {
                        attrs.insert(k, v.clone());
                    }
                    _ => {}
                }
            }
            out.insert("attributes".into(), Value::Object(attrs));
        }
        "identify" => {
            let account = group
                .or_else(|| account_from(traits))
                .or_else(|| {
                    traits
                        .and_then(|t| object(t, "company").ok().flatten())
                        .and_then(|c| text(c.get("id")))
                })
                .ok_or_else(|| no_account("identify"))?;
            out.insert("type".into(), json!("contact"));
            out.insert("account_id".into(), json!(account));
            out.insert("contact_id".into(), json!(need_user()?));
            for (k, v) in traits.into_iter().flatten() {
                let k = snake_case(k);
                if matches!(k.as_str(), "email" | "role" | "status") {
                    out.insert(k, v.clone());
                }
            }
            let name = traits.and_then(|t| text(t.get("name"))).or_else(|| {
                let t = traits?;
                let first = text(t.get("firstName").or(t.get("first_name")));
                let last = text(t.get("lastName").or(t.get("last_name")));
                match (first, last) {
                    (Some(f), Some(l)) => Some(format!("{f} {l}")),
                    (f, l) => f.or(l),
                }
            });
            if let Some(n) = name {
                out.insert("name".into(), json!(n));
            }
        }
        "track" | "screen" => {
            let account =
                group.or_else(|| account_from(properties)).ok_or_else(|| no_account(call))?;
            let event = if call == "track" {
                string_field(m, "event", true)?
                    .ok_or_else(|| err("event", "a track call needs an event name"))?
            } else {
                "screen".to_string()
            };
            out.insert("type".into(), json!("usage"));
            out.insert("account_id".into(), json!(account));
            out.insert("user_id".into(), json!(need_user()?));
            out.insert("event".into(), json!(event));
            let name = if call == "screen" { string_field(m, "name", false)? } else { None };
            let feature = properties
                .and_then(|p| text(p.get("feature")))
                .or_else(|| if call == "screen" { name.filter(|n| !n.is_empty()) } else { None });
            if let Some(f) = feature {
                out.insert("feature".into(), json!(f));
            }
            if let Some(q) = properties.and_then(|p| p.get("quantity")) {
                out.insert("quantity".into(), q.clone());
            }
        }
        "page" => {
            let account =
                group.or_else(|| account_from(properties)).ok_or_else(|| no_account("page"))?;
            out.insert("type".into(), json!("web_visit"));
            out.insert("account_id".into(), json!(account));
            out.insert("contact_id".into(), json!(need_user()?));
            // A page in the documentation counts as a docs visit; anything else is website.
            // analytics.js puts a page's category in `properties.category`, the server
            // libraries at the top level.
            let name = string_field(m, "name", false)?.filter(|n| !n.is_empty());
            let category = string_field(m, "category", false)?.filter(|c| !c.is_empty());
            let label = properties
                .and_then(|p| text(p.get("section")).or_else(|| text(p.get("category"))))
                .or(category);
            out.insert("section".into(), json!(label.as_deref().map_or("website", section)));
            let page = properties
                .and_then(|p| text(p.get("path")).or_else(|| text(p.get("url"))))
                .or(name);
            if let Some(p) = page {
                out.insert("page".into(), json!(p));
            }
        }
        "alias" => {
            // Not stored, but checked like the others: a malformed call is still refused.
            id_field(m, "previousId", "previousId")?;
            return Ok(Mapped::Ignored);
        }
        other => {
            return Err(err(
                "type",
                format!("unknown call {other:?} (track, identify, group, page, screen, alias)"),
            ));
        }
    }
    Ok(Mapped::Event(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn keys_become_snake_case() {
        assert_eq!(snake_case("createdAt"), "created_at");
        assert_eq!(snake_case("created_at"), "created_at");
        assert_eq!(snake_case("planName2"), "plan_name2");
        assert_eq!(snake_case("Employees"), "employees");
    }

    #[test]
    fn timestamps_are_corrected_for_the_senders_clock() {
        // The client's clock is 2 minutes fast: it sent at 12:02 (its time) an event of
        // 12:00 (its time), received at 12:00:30 (ours): the event happened at 11:58:30.
        let m = json!({"type": "track", "event": "x", "userId": "u", "context": {"groupId": "g"},
            "timestamp": "2026-01-01T12:00:00Z", "sentAt": "2026-01-01T12:02:00Z"});
        let Mapped::Event(e) =
            map("track", &m, None, at("2026-01-01T12:00:30Z"), &SegmentConfig::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(e["timestamp"], at("2026-01-01T11:58:30Z").to_string());
        // A batch's sentAt applies to its messages; originalTimestamp wins over timestamp.
        let m = json!({"type": "track", "event": "x", "userId": "u", "context": {"groupId": "g"},
            "originalTimestamp": "2026-01-01T12:00:00Z", "timestamp": "2020-01-01T00:00:00Z"});
        let Mapped::Event(e) = map(
            "batch",
            &m,
            Some(at("2026-01-01T12:00:10Z")),
            at("2026-01-01T12:00:20Z"),
            &SegmentConfig::default(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(e["timestamp"], at("2026-01-01T12:00:10Z").to_string());
        // No timestamp at all: when it was received.
        let m = json!({"type": "track", "event": "x", "userId": "u", "context": {"groupId": "g"}});
        let Mapped::Event(e) =
            map("track", &m, None, at("2026-01-01T12:00:20Z"), &SegmentConfig::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(e["timestamp"], at("2026-01-01T12:00:20Z").to_string());
    }

    #[test]
    fn a_pages_category_names_its_section() {
        let cfg = SegmentConfig::default();
        let now = at("2026-01-01");
        let page = |extra: Value| {
            let mut m = json!({"userId": "u", "context": {"groupId": "g"}, "name": "Install"});
            for (k, v) in extra.as_object().unwrap() {
                m[k] = v.clone();
            }
            let Mapped::Event(e) = map("page", &m, None, now, &cfg).unwrap() else { panic!() };
            e["section"].as_str().unwrap().to_string()
        };
        // analytics.js: page('Docs', 'Install') puts the category in properties.
        assert_eq!(page(json!({"properties": {"category": "Docs"}})), "docs");
        assert_eq!(page(json!({"properties": {"category": "API Documentation"}})), "docs");
        assert_eq!(page(json!({"category": "docs"})), "docs");
        assert_eq!(page(json!({"properties": {"category": "Pricing"}})), "website");
        assert_eq!(page(json!({"properties": {"category": "Other"}})), "other");
        assert_eq!(page(json!({})), "website");
        // An explicit section wins over the category.
        assert_eq!(
            page(json!({"properties": {"section": "website", "category": "Docs"}})),
            "website"
        );
        assert_eq!(section("Doctors"), "website", "a word, not a prefix");
    }

    #[test]
    fn fields_are_typed_as_the_openapi_document_says_and_null_is_absent() {
        let cfg = SegmentConfig::default();
        let now = at("2026-01-01");
        let base = json!({"event": "e", "userId": "u", "context": {"groupId": "g"}});
        let with = |k: &str, v: Value| {
            let mut m = base.clone();
            m[k] = v;
            map("track", &m, None, now, &cfg)
        };
        assert!(matches!(with("userId", json!(42)), Ok(Mapped::Event(e)) if e["user_id"] == "42"));
        assert!(with("anonymousId", Value::Null).is_ok());
        for (k, v, field) in [
            ("userId", json!(true), "userId"),
            ("userId", json!(""), "userId"),
            ("anonymousId", json!({}), "anonymousId"),
            ("messageId", json!(7), "messageId"),
            ("event", json!(5), "event"),
            ("integrations", json!([]), "integrations"),
            ("context", json!({"groupId": [1]}), "context.groupId"),
            // An unused timestamp is still checked.
            ("timestamp", json!("soon"), "timestamp"),
        ] {
            let mut m = base.clone();
            m["originalTimestamp"] = json!("2026-01-01T00:00:00Z");
            m[k] = v;
            let e = map("track", &m, None, now, &cfg).unwrap_err();
            assert_eq!(e.field, field, "{k}: {e:?}");
        }
        let alias = json!({"userId": "u", "previousId": {"a": 1}});
        assert_eq!(map("alias", &alias, None, now, &cfg).unwrap_err().field, "previousId");
    }

    #[test]
    fn a_batchs_context_goes_to_its_calls_under_their_own() {
        let shared = json!({"groupId": "g", "ip": "1.2.3.4"});
        let shared = shared.as_object().unwrap();
        let m = with_context(&json!({"type": "track", "context": {"groupId": "own"}}), shared);
        assert_eq!(m["context"], json!({"groupId": "own", "ip": "1.2.3.4"}));
        let m = with_context(&json!({"type": "track"}), shared);
        assert_eq!(m["context"]["groupId"], "g");
        let m = with_context(&json!({"type": "track", "context": 5}), shared);
        assert_eq!(m["context"], 5, "left for the mapping to refuse");
        let e = batch_envelope(&json!({"batch": [], "sentAt": "2026-01-01", "context": {"a": 1}}))
            .unwrap();
        assert_eq!((e.sent_at, e.context.map(|c| c.len())), (Some(at("2026-01-01")), Some(1)));
        assert_eq!(batch_envelope(&json!({"sentAt": "later"})).unwrap_err().field, "sentAt");
        assert_eq!(batch_envelope(&json!({"integrations": 1})).unwrap_err().field, "integrations");
        assert!(malformed_write_key(&json!({"writeKey": 5})).is_some());
        assert!(malformed_write_key(&json!({"batch": [{"writeKey": ""}]})).is_some());
        assert_eq!(
            malformed_write_key(&json!({"writeKey": null, "batch": [{"writeKey": "k"}]})),
            None
        );
    }

    #[test]
    fn the_write_key_comes_from_the_body_or_the_batchs_messages() {
        assert_eq!(write_key(&json!({"writeKey": "k"})), Ok(Some("k".into())));
        assert_eq!(write_key(&json!({"batch": []})), Ok(None));
        assert_eq!(
            write_key(&json!({"batch": [{"writeKey": "k"}, {"type": "track"}, {"writeKey": "k"}]})),
            Ok(Some("k".into()))
        );
        assert!(write_key(&json!({"batch": [{"writeKey": "k"}, {"writeKey": "j"}]})).is_err());
        assert!(write_key(&json!({"writeKey": 5})).is_err());
    }

    #[test]
    fn calls_without_an_account_or_user_are_rejected_with_the_field() {
        let cfg = SegmentConfig::default();
        let now = at("2026-01-01");
        let e = map("track", &json!({"event": "x", "userId": "u"}), None, now, &cfg).unwrap_err();
        assert_eq!(e.field, "context.groupId");
        let e = map("track", &json!({"event": "x", "context": {"groupId": "g"}}), None, now, &cfg)
            .unwrap_err();
        assert_eq!(e.field, "userId");
        let e = map("group", &json!({"userId": "u"}), None, now, &cfg).unwrap_err();
        assert_eq!(e.field, "groupId");
        let e = map("batch", &json!({"userId": "u"}), None, now, &cfg).unwrap_err();
        assert_eq!(e.field, "type");
        // The configured property names the account when there is no groupId.
        let m = json!({"event": "x", "userId": "u", "properties": {"account_id": "acme"}});
        let Mapped::Event(e) = map("track", &m, None, now, &cfg).unwrap() else { panic!() };
        assert_eq!(e["account_id"], "acme");
        assert_eq!(
            map("alias", &json!({"userId": "u"}), None, now, &cfg).unwrap(),
            Mapped::Ignored
        );
    }
}
