//! The demo pages built from the Call Kit (`/call`, a 1:1 call; `/meeting`, a
//! meeting), what they need to start (`/dev/config.json`: where the signalling
//! service is), and, only on a server running with a token secret generated for
//! development, `/dev/token`, which mints a token for any user and room so two
//! browser tabs can call each other with nothing else set up.
//!
//! The pages are bundled from `sdk/` at build time (see `build.rs`) and embedded.
//! The signalling service they use is a `cascade signal` elsewhere (`--signal-url`)
//! or one this process runs under `/signal` ([`start_signal`]): with
//! `--signal-store`, or on its own on a generated development secret.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use cascade_core::error::{ApiError, ErrorKind};
use cascade_core::token::{Claims, Grant, TokenSecret, mint};

use crate::api::valid_name;
use crate::config::ServeConfig;
use crate::error::HttpError;
use crate::unix_now;
use cascade_signal::store::StoreLocation;
use cascade_signal::{SignalConfig, SignalService};

macro_rules! demo_asset {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/sdk-demo/", $name))
    };
}

const CALL_HTML: &[u8] = demo_asset!("call.html");
const CALL_JS: &[u8] = demo_asset!("call.js");
const MEETING_HTML: &[u8] = demo_asset!("meeting.html");
const MEETING_JS: &[u8] = demo_asset!("meeting.js");

/// How long a development token is valid.
const DEV_TOKEN_TTL: u64 = 3600;

/// Where the demo pages find the signalling service.
#[derive(Debug, Clone)]
pub enum SignalEndpoint {
    /// A `cascade signal` elsewhere, by its WebSocket URL (`--signal-url`).
    External(String),
    /// The one this server runs in-process, under `/signal`.
    Mounted,
    /// None: the call page cannot ring anyone.
    None,
}

/// What the demo routes need.
#[derive(Debug)]
pub struct DemoState {
    pub signal: SignalEndpoint,
    /// The generated development secret, when the server runs on one.
    pub dev_secret: Option<TokenSecret>,
    /// The API is served over TLS (the in-process signal URL is then `wss:`).
    pub tls: bool,
}

pub fn router(state: Arc<DemoState>) -> Router {
    Router::new()
        .route(
            "/call",
            get(|| async { asset(CALL_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/call.js",
            get(|| async { asset(CALL_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/meeting",
            get(|| async { asset(MEETING_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/meeting.js",
            get(|| async { asset(MEETING_JS, "text/javascript; charset=utf-8") }),
        )
        .route("/dev/config.json", get(config))
        .route("/dev/token", get(token))
        .with_state(state)
}

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /dev/config.json`: `{"signal": URL or null, "dev": bool}`. The URL of the
/// in-process signal is built from the request's `Host`, so it works from any
/// address the server is reached at.
async fn config(State(state): State<Arc<DemoState>>, headers: HeaderMap) -> Response {
    let signal = match &state.signal {
        SignalEndpoint::External(url) => Some(url.clone()),
        SignalEndpoint::Mounted => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| valid_host(h))
            .map(|host| {
                let scheme = if state.tls { "wss" } else { "ws" };
                format!("{scheme}://{host}/signal/v1/connect")
            }),
        SignalEndpoint::None => None,
    };
    axum::Json(serde_json::json!({
        "signal": signal,
        "dev": state.dev_secret.is_some(),
    }))
    .into_response()
}

/// A `Host` header fit to go into a URL: a name or address and an optional port.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
}

/// A `cascade signal` running in this process (its router is mounted at `/signal`):
/// the service behind the router, and the development store file to remove at exit.
#[derive(Debug)]
pub struct InProcessSignal {
    service: SignalService,
    temporary_store: Option<PathBuf>,
}

impl InProcessSignal {
    /// Closes its connections, waits for the last commit (once the router and every
    /// connection are gone), removes a development store.
    pub async fn shutdown(self) {
        self.service.shutdown().await;
        if let Some(path) = self.temporary_store {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How long the in-process signal keeps messages.
const SIGNAL_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Where the pages find signalling, starting the in-process `cascade signal` when
/// `--signal-store` says so or when the server runs on a generated development
/// secret (`dev`) with no `--signal-url`. It takes the server's token secrets.
pub async fn start_signal(
    config: &ServeConfig,
    secrets: &[TokenSecret],
    dev: bool,
) -> anyhow::Result<(SignalEndpoint, Option<(Router, InProcessSignal)>)> {
    if let Some(url) = &config.signal_url {
        return Ok((SignalEndpoint::External(url.clone()), None));
    }
    let (store, temporary_store) = match &config.signal_store {
        Some(store) => (store.clone(), None),
        None if dev => {
            let path = std::env::temp_dir()
                .join(format!("cascade-dev-signal-{}.redb", std::process::id()));
            (StoreLocation::File(path.clone()), Some(path))
        }
        None => return Ok((SignalEndpoint::None, None)),
    };
    let (router, service) = cascade_signal::launch(SignalConfig {
        // Not used: the router is served by this server's listener.
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        store,
        token_secrets: secrets.to_vec(),
        service_secret: None,
        retention: SIGNAL_RETENTION,
        limits: cascade_signal::Limits::default(),
    })
    .await?;
    tracing::info!("cascade signal runs in this process under /signal");
    Ok((
        SignalEndpoint::Mounted,
        Some((
            router,
            InProcessSignal {
                service,
                temporary_store,
            },
        )),
    ))
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    user: Option<String>,
    room: Option<String>,
}

/// `GET /dev/token?user=U&room=R`: `{"token": JWT}` with the publish and subscribe
/// grants for an hour, signed with the development secret. 404 `dev_only` on a server
/// with an operator's secret.
async fn token(
    State(state): State<Arc<DemoState>>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, HttpError> {
    let Some(secret) = &state.dev_secret else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "dev_only",
            "development tokens are minted only by a server running on a generated secret",
        )
        .into());
    };
    let (Some(user), Some(room)) = (q.user, q.room) else {
        return Err(ApiError::bad_request("bad_request", "give user and room").into());
    };
    if !valid_name(&user) || !valid_name(&room) {
        return Err(ApiError::bad_request(
            "bad_request",
            "user and room are 1-128 characters of A-Z a-z 0-9 - _ .",
        )
        .into());
    }
    let now = unix_now();
    let claims = Claims {
        sub: user,
        room,
        grants: vec![Grant::Publish, Grant::Subscribe],
        exp: now + DEV_TOKEN_TTL,
        iat: now,
    };
    let token = mint(secret, &claims).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(axum::Json(serde_json::json!({ "token": token })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hosts() {
        assert!(valid_name("alice-1.b_c"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(129)));
        assert!(valid_host("127.0.0.1:8080"));
        assert!(valid_host("[::1]:8080"));
        assert!(valid_host("m1.example.test"));
        assert!(!valid_host("evil\"host"));
        assert!(!valid_host("a/b"));
        assert!(!valid_host(""));
    }
}
