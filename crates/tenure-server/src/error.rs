//! The API's errors: one type with a stable code per kind (the error table), rendered as
//! `{"error": {"code", "message"}}` with the rejected events when there are any.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tenure_ingest::Rejection;

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON values serialise");
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The service's errors, each with a stable code (the API's error table).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub rejected: Vec<Rejection>,
}

/// Every error code the API returns, with its HTTP status.
pub const ERROR_CODES: &[(&str, u16)] = &[
    ("unauthorized", 401),
    ("forbidden", 403),
    ("payload_too_large", 413),
    ("invalid_json", 400),
    ("invalid_events", 400),
    ("invalid_request", 400),
    ("not_found", 404),
    ("unavailable", 503),
    ("internal", 500),
    ("method_not_allowed", 405),
    ("unsupported_media_type", 415),
    ("invalid_encoding", 400),
    ("storage_unavailable", 503),
    ("overloaded", 503),
    ("result_too_large", 400),
    ("request_timeout", 408),
    ("invalid_signature", 400),
    ("root_cause_required", 409),
];

impl ApiError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        let status = ERROR_CODES
            .iter()
            .find(|(c, _)| *c == code)
            .and_then(|(_, s)| StatusCode::from_u16(*s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { status, code, message: message.into(), rejected: Vec::new() }
    }
}

pub(crate) fn rejections_json(r: &[Rejection]) -> Value {
    r.iter().map(|r| json!({"index": r.line - 1, "field": r.field, "reason": r.reason})).collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if !self.rejected.is_empty() {
            body["rejected"] = rejections_json(&self.rejected);
        }
        let mut r = json_response(self.status, &body);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Segment's libraries and most HTTP clients retry a 503, after this long.
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer, Basic realm=\"tenure\"".parse().expect("a valid header"),
            );
        }
        r
    }
}
