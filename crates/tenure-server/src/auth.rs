//! Authentication: the credentials of a request (Bearer, Basic, Segment's writeKey) checked
//! against the data directory's keys and the scope a route needs.

use crate::keys::{Key, Scope};
use crate::users::Principal;
use crate::{ApiError, AppState, segment};
use axum::http::{HeaderMap, header};
use serde_json::Value;

/// The credentials of a request: `Authorization: Bearer KEY`, or Basic with the key as the
/// user name (how Segment's libraries send their write key). Scheme names are
/// case-insensitive (RFC 9110: `bearer`, `BASIC` are the same schemes).
fn credential(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once([' ', '\t'])?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(rest)?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split(':').next().unwrap_or("").to_string())
}

/// Base64 in either alphabet (standard, or URL-safe as some clients send), padded or not.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const EITHER: [GeneralPurpose; 2] =
        [GeneralPurpose::new(&STANDARD, CONFIG), GeneralPurpose::new(&URL_SAFE, CONFIG)];
    EITHER.iter().find_map(|e| e.decode(s).ok())
}

/// Checks the request's key has `scope`; the key is the request's identity (the author of
/// what it changes). A person's token passes only when it sees every account (an admin's, a
/// viewer's): this route does not narrow its answer to a book.
pub(crate) fn authorise(state: &AppState, h: &HeaderMap, scope: Scope) -> Result<Key, ApiError> {
    let (key, who) = authorise_book(state, h, scope)?;
    if !who.is_all() {
        return Err(ApiError::new(
            "forbidden",
            "a CSM's or manager's token sees their book through /api/v1/accounts, /alerts, /tasks and /forecast; this route needs an API key",
        ));
    }
    Ok(key)
}

/// As [`authorise`], for routes that answer with the caller's book only: a machine key
/// sees every account; a person's token (`tnu_...`) acts as them, with their role's scopes
/// (admin: all; manager and CSM: read and write; viewer: read) and their book. The key
/// returned for a person carries their id and, as its name, their email (the author of
/// what they change).
pub(crate) fn authorise_book(
    state: &AppState,
    h: &HeaderMap,
    scope: Scope,
) -> Result<(Key, Principal), ApiError> {
    let secret = credential(h).ok_or_else(|| {
        ApiError::new("unauthorized", "an API key is needed (Authorization: Bearer KEY)")
    })?;
    let keys = state.0.keys.get();
    let (key, who) = if let Some(k) = keys.verify(&secret) {
        (k.clone(), Principal::All)
    } else if let Some(u) = keys.verify_token(&secret) {
        let key = Key {
            id: u.id.clone(),
            name: u.email.clone(),
            scopes: u.role.scopes().to_vec(),
            hash: String::new(),
            created: u.created.clone(),
            revoked: false,
        };
        (key, Principal::of(u, &keys.users))
    } else {
        return Err(ApiError::new("unauthorized", "unknown or revoked API key"));
    };
    if !key.allows(scope) {
        return Err(ApiError::new(
            "forbidden",
            format!("this key lacks the {scope:?} scope").to_lowercase(),
        ));
    }
    Ok((key, who))
}

pub(crate) fn segment_key_missing() -> ApiError {
    ApiError::new(
        "unauthorized",
        "an API key is needed: Authorization (Bearer, or Basic with the write key as user name) or writeKey in the body",
    )
}

/// Segment's writeKey authentication: the key in the body, checked exactly as the same key
/// in an Authorization header would be (it goes through the same function).
pub(crate) fn authorise_write_key(state: &AppState, root: &Value) -> Result<Key, ApiError> {
    let key = match segment::write_key(root) {
        Ok(Some(k)) => k,
        Ok(None) => return Err(segment_key_missing()),
        Err(why) => return Err(ApiError::new("unauthorized", why)),
    };
    let mut h = HeaderMap::new();
    let v = header::HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| ApiError::new("unauthorized", "unknown or revoked API key"))?;
    h.insert(header::AUTHORIZATION, v);
    authorise(state, &h, Scope::Ingest)
}
