//! Credentials before bodies: a request that needs a token (publish, subscribe, a
//! resource's `PATCH`, a relay request) has it checked from its headers and query
//! before its body is read, with the same checks and errors as its handler. A client
//! without a valid token then gets its 401/403 at once and holds no body buffer or
//! body timeout; on HTTP/1 the connection is closed, since the unread body cannot be
//! skipped. Handlers check again (a signature check costs microseconds), so nothing
//! here decides what a handler would not.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cascade_core::error::ApiError;
use cascade_core::token::Grant;

use super::{authorize, authorize_cluster, authorize_resource, check_room, with_query_token};
use crate::error::HttpError;
use crate::server::AppState;

/// Refuses a request whose credentials fail before its body is read.
pub(super) async fn credentials_first(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    use axum::body::HttpBody as _;
    match check(&state, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let mut resp = HttpError(e).into_response();
            if !req.body().is_end_stream() {
                crate::listener::close_unread(&mut resp, req.version());
            }
            resp
        }
    }
}

fn check(state: &AppState, req: &Request) -> Result<(), ApiError> {
    let path = req.uri().path();
    // A percent-encoded segment is left to the handler, which decodes it.
    if path.contains('%') {
        return Ok(());
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let headers = req.headers();
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["rtc", "v1", "rooms", room, kind @ ("publish" | "subscribe")]) => {
            check_room(room)?;
            let grant = if *kind == "publish" {
                Grant::Publish
            } else {
                Grant::Subscribe
            };
            let headers = with_query_token(headers.clone(), req.uri().query());
            authorize(&headers, state, room, grant).map(drop)
        }
        (&Method::PATCH, ["rtc", "v1", "resources", id]) => authorize_resource(headers, state, id),
        (&Method::POST, ["rtc", "v1", "resources", _, "relay"]) => {
            authorize_cluster(headers, state)
        }
        _ => Ok(()),
    }
}
