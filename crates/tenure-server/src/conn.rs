//! Connections: the accept loop with a cap on open connections, HTTP/1 with a deadline for
//! each request's headers (idle keep-alive included) and for its body, a cap on requests
//! in flight, and a graceful shutdown. What a client controls (how slowly it sends, how
//! many connections it opens) is bounded here, before any handler runs.

use crate::{ApiError, AppState, log};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// Reads a request's whole body within the body deadline (a client sending a byte a second
/// is cut off: 408), and no more than the request limit (413). Handlers then read it from
/// memory. Requests without a body pass straight through.
pub(crate) async fn read_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.0.limits;
    let empty = req.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v == "0")
        || matches!(req.method().as_str(), "GET" | "HEAD" | "OPTIONS" | "DELETE")
            && !req.headers().contains_key(axum::http::header::TRANSFER_ENCODING)
            && !req.headers().contains_key(axum::http::header::CONTENT_LENGTH);
    if empty {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    // The compressed size is bounded here; decoding bounds the decoded size.
    let read = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.request_bytes).collect(),
    );
    let bytes = match read.await {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::new(
                "payload_too_large",
                format!("the body is over {} bytes", limits.request_bytes),
            )
            .into_response();
        }
        Ok(Err(e)) => {
            return ApiError::new("invalid_request", format!("reading the body: {e}"))
                .into_response();
        }
        Err(_) => {
            state.0.core.metrics.timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = ApiError::new(
                "request_timeout",
                format!(
                    "the body did not arrive within {} s; send it whole, or in smaller requests",
                    limits.body_timeout.as_secs()
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(axum::http::header::CONNECTION, "close".parse().expect("a header"));
            return r;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// Requests in flight beyond the limit are answered 503 `overloaded` at once (with
/// Retry-After) rather than queued without bound; `/healthz` and `/metrics` are never
/// refused, so the service can still be watched while it sheds load.
pub(crate) async fn in_flight(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/metrics") {
        return next.run(req).await;
    }
    match state.0.requests.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            state.0.core.metrics.overloaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ApiError::new("overloaded", "too many requests in flight: send again in a moment")
                .into_response()
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (for at most `grace`). At most `max_connections` are open at once: past it, new ones
/// wait in the listen backlog until one closes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = Duration::from_secs(30);
    let open = Arc::new(Semaphore::new(max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = open.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    log("warn", "accepting a connection failed", json!({"error": e.to_string()}));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: all back means all done.
    let all = u32::try_from(max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(grace, open.acquire_many(all)).await;
    Ok(())
}
