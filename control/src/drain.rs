//! Graceful drain of `cascade serve`: on SIGTERM (or `POST /admin/drain` with the
//! admin secret) the server stops taking new sessions (`503 draining`), reports
//! itself unhealthy on `/healthz` (so `cascade dns` and Kubernetes readiness stop
//! sending clients), counts as full for placement (new rooms spill to the next
//! member), keeps its live sessions until they end or the drain deadline passes, and
//! then lets the server exit 0. SIGINT, or a second SIGTERM, stops at once.
//!
//! This module owns the drain state and its two HTTP endpoints; it never touches
//! sessions itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cascade_core::error::{ApiError, ErrorKind};
use openssl::sha::sha256;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Secret;
use crate::error::HttpError;
use crate::server::AppState;

/// Default `--drain-deadline`, seconds.
pub const DEFAULT_DRAIN_DEADLINE: u64 = 300;

/// How often a draining server looks whether its last session has ended.
const SESSION_CHECK: Duration = Duration::from_millis(200);

/// Whether this server drains, how long it may, and who may ask it to.
#[derive(Debug)]
pub struct Drain {
    draining: AtomicBool,
    /// Woken when an admin request starts the drain.
    requested: tokio::sync::Notify,
    deadline: Duration,
    /// SHA-256 of the admin secret (compared in constant time).
    admin_digest: Option<[u8; 32]>,
}

impl Drain {
    pub fn new(deadline: Duration, admin_secret: Option<&Secret>) -> Self {
        Self {
            draining: AtomicBool::new(false),
            requested: tokio::sync::Notify::new(),
            deadline,
            admin_digest: admin_secret.map(|s| sha256(s.expose().as_bytes())),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts draining; false when it had started already.
    pub fn start(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::Relaxed);
        if first {
            self.requested.notify_one();
        }
        first
    }

    /// Refuses a new session while draining: 503 `draining` (with `Retry-After`).
    pub fn check(&self) -> Result<(), ApiError> {
        if self.is_draining() {
            Err(draining_error())
        } else {
            Ok(())
        }
    }

    /// Whether `headers` carry `Authorization: Bearer <admin secret>`.
    fn admits(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.admin_digest else {
            return Err(ApiError::forbidden(
                "admin_disabled",
                "this server was started without --admin-secret",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Unauthenticated,
                    "missing_token",
                    "Authorization: Bearer <admin secret> required",
                )
            })?;
        // Digests have equal lengths, as openssl's constant-time comparison needs.
        if openssl::memcmp::eq(&sha256(given.as_bytes()), expected) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::Unauthenticated,
                "bad_admin_token",
                "the admin secret does not match",
            ))
        }
    }
}

fn draining_error() -> ApiError {
    ApiError::new(
        ErrorKind::Unavailable,
        "draining",
        "this server is draining: it takes no new sessions; retry (another server)",
    )
}

/// `GET /healthz`: `ok`, or 503 `draining` once the drain started.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.drain.check() {
        Ok(()) => "ok\n".into_response(),
        Err(e) => {
            let mut resp = HttpError(e).into_response();
            // A health probe is not a refused session: keep it out of
            // `cascade_refused_total`.
            resp.extensions_mut().remove::<crate::error::ErrorCode>();
            resp
        }
    }
}

/// `POST /admin/drain` (admin secret as bearer): starts the drain; 202 with the
/// sessions left and the deadline.
pub async fn admin_drain(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    state.drain.admits(&headers)?;
    state.metrics.draining.set(1);
    if state.drain.start() {
        tracing::info!("drain requested over the admin API");
    }
    let sessions = state.with_sfu(|s| s.session_count());
    let body = serde_json::json!({
        "draining": true,
        "sessions": sessions,
        "deadline_secs": state.drain.deadline.as_secs(),
    });
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// SIGTERM and SIGINT, watched from before the server announces itself (a signal
/// sent as soon as it is up must not meet the default action, which kills).
#[derive(Debug)]
pub struct StopSignals {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl StopSignals {
    /// Starts watching both signals (needs a Tokio runtime).
    pub fn install() -> Self {
        let watch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch {name}");
                None
            }
        };
        Self {
            term: watch(SignalKind::terminate(), "SIGTERM"),
            int: watch(SignalKind::interrupt(), "SIGINT"),
        }
    }
}

/// Resolves when the server should stop: at once on SIGINT; after a drain (started
/// by SIGTERM or the admin API) once no session is left or the deadline passed; at
/// once on a second SIGTERM (or a SIGINT) during the drain.
pub async fn until_stopped(state: Arc<AppState>, mut signals: StopSignals) {
    tokio::select! {
        _ = next(&mut signals.int) => {
            tracing::info!("SIGINT: stopping at once");
            return;
        }
        _ = next(&mut signals.term) => {
            // The gauge first: whoever sees the drain sees it counted.
            state.metrics.draining.set(1);
            state.drain.start();
            tracing::info!("SIGTERM: draining");
        }
        _ = state.drain.requested.notified() => {}
    }
    crate::readiness::notify_stopping();
    let deadline = tokio::time::Instant::now() + state.drain.deadline;
    tracing::info!(
        sessions = state.with_sfu(|s| s.session_count()),
        deadline_secs = state.drain.deadline.as_secs(),
        "draining: no new sessions; waiting for live ones to end"
    );
    loop {
        let sessions = state.with_sfu(|s| s.session_count());
        if sessions == 0 {
            tracing::info!("drained: no session left");
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(SESSION_CHECK) => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(sessions, "drain deadline passed: stopping with sessions left");
                return;
            }
            _ = next(&mut signals.int) => {
                tracing::info!(sessions, "SIGINT while draining: stopping at once");
                return;
            }
            _ = next(&mut signals.term) => {
                tracing::info!(sessions, "second SIGTERM while draining: stopping at once");
                return;
            }
        }
    }
}

/// The next delivery of a watched signal, or never when it is not watched.
async fn next(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
