//! The HTTP side of `cascade signal` (axum): the WebSocket upgrade at
//! `GET /v1/connect` after the user's token is verified, `POST /v1/messages` for
//! application backends with a service token, `GET /health` and `GET /metrics`.
//! Errors reach HTTP clients as `{"code", "message"}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cascade_core::token::{TokenError, TokenSecret, TokenVerifier, verify_cluster};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::protocol::valid_name;
use crate::store::{AppendRequest, Destination, Store, StoreError};

/// Initial read buffer and write batching threshold of a WebSocket, in bytes.
const SOCKET_BUFFER: usize = 4 * 1024;

/// What a connection may do, and how long it may stay silent.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest text frame (and `POST /v1/messages` body), in bytes.
    pub max_message_bytes: usize,
    /// Frames per second per connection.
    pub rate: f64,
    /// Frames a connection may send at once above the rate; also the number of
    /// frames dropped in a row after which it is closed.
    pub burst: f64,
    /// Time a new connection has to send `hello`.
    pub hello_timeout: Duration,
    /// Interval of WebSocket pings.
    pub ping_interval: Duration,
    /// Silence (no frame, no pong) after which a connection is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    /// The defaults of `cascade signal`'s flags: 64 KiB frames, 200 frames per
    /// second with a burst of 200, 10 s for `hello`, a ping every 20 s, closed
    /// after 60 s of silence.
    fn default() -> Self {
        Limits {
            max_message_bytes: 64 * 1024,
            rate: 200.0,
            burst: 200.0,
            hello_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) presence: Arc<Presence>,
    pub(crate) metrics: Metrics,
    pub(crate) verifier: TokenVerifier,
    pub(crate) service_secret: Option<TokenSecret>,
    pub(crate) limits: Limits,
    /// Becomes true when the server shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Each connection holds a clone; shutdown waits until all are dropped.
    pub(crate) alive: mpsc::Sender<()>,
}

pub(crate) fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .route("/v1/connect", get(connect))
        .route("/v1/messages", post(post_message))
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// An error answered to an HTTP client.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownRoom(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_room", e.to_string())
            }
            StoreError::Storage(_) | StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

fn unix_now() -> u64 {
    crate::store::unix_ms() / 1000
}

/// The bearer token of `Authorization`, else the `access_token` query parameter.
fn bearer<'a>(
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
) -> Result<&'a str, ApiError> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    from_header
        .or_else(|| query.get("access_token").map(String::as_str))
        .ok_or_else(|| ApiError::from(TokenError::Missing))
}

async fn connect(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = bearer(&headers, &query)?;
    let claims = state.verifier.verify_signature(token, unix_now())?;
    if !valid_name(&claims.sub) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_malformed",
            "the token's sub is empty or too long",
        ));
    }
    // Room for our own check (close 1009) before the socket's hard limit.
    let hard_limit = state.limits.max_message_bytes.saturating_mul(2) + 1024;
    // Small socket buffers (tungstenite's are 128 KiB each by default): they grow for
    // a large frame and the memory per idle connection stays small.
    Ok(ws
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_upgrade(move |socket| crate::connection::serve(socket, claims.sub, state)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedMessage {
    from: String,
    to: Destination,
    id: String,
    body: serde_json::Value,
}

async fn post_message(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(secret) = &state.service_secret else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "service_disabled",
            "no --service-secret: the backend interface is off",
        ));
    };
    let no_query = HashMap::new();
    let token = bearer(&headers, &no_query)?;
    verify_cluster(secret, token, unix_now())?;
    if body.len() > state.limits.max_message_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over {} bytes", state.limits.max_message_bytes),
        ));
    }
    let msg: PostedMessage = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let target = match &msg.to {
        Destination::User(u) | Destination::Room(u) => u,
    };
    if !valid_name(&msg.from) || !valid_name(&msg.id) || !valid_name(target) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "from, id, user and room must be 1 to 128 bytes",
        ));
    }
    let appended = state
        .store
        .append(AppendRequest {
            sender: msg.from,
            client_id: msg.id.clone(),
            to: msg.to,
            body: msg.body,
            sender_must_be_member: false,
        })
        .await?;
    if appended.duplicate {
        state.metrics.duplicate.inc();
    } else {
        state.metrics.accepted.inc();
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"accepted": msg.id, "duplicate": appended.duplicate})),
    )
        .into_response())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.store.commits()),
    )
        .into_response()
}
