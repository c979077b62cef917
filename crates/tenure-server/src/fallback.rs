//! The API's one error format for the answers the framework makes itself: a method a path
//! does not have (405, with `Allow`), and the plain-text rejections of axum's extractors (a
//! path or query that is not valid UTF-8, ...). Handlers' own errors are `ApiError`s
//! already; the dashboard's HTML answers are left alone.

use crate::{ApiError, ERROR_CODES};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

/// The stable code of an answer with `status`, if the error table has one.
pub fn code_of(status: StatusCode) -> Option<&'static str> {
    if status == StatusCode::BAD_REQUEST {
        return Some("invalid_request");
    }
    ERROR_CODES.iter().find(|(_, s)| *s == status.as_u16()).map(|(c, _)| *c)
}

/// The middleware: an error answer that is neither JSON nor HTML becomes an `ApiError` of
/// the same status, keeping its headers (`Allow`, `WWW-Authenticate`).
pub async fn error_bodies(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let r = next.run(req).await;
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let ct = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json") || ct.starts_with("text/html") {
        return r;
    }
    let Some(code) = code_of(status) else { return r };
    let (parts, body) = r.into_parts();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
        format!("{method} is not allowed on {path} (allowed: {allow})")
    } else {
        // axum's rejections are one short sentence.
        let reason = status.canonical_reason().unwrap_or("error").to_string();
        match Limited::new(body, 4096).collect().await {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b.to_bytes()).trim().to_string();
                if text.is_empty() { reason } else { text }
            }
            Err(_) => reason,
        }
    };
    let mut out = ApiError { status, code, message, rejected: Vec::new() }.into_response();
    for k in parts.headers.keys() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().remove(k);
            for v in parts.headers.get_all(k) {
                out.headers_mut().append(k.clone(), v.clone());
            }
        }
    }
    out
}
