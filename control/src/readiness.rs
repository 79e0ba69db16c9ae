//! Readiness for a service manager: `READY=1` once `cascade serve` listens, and
//! `STOPPING=1` when it starts draining, over systemd's notify socket (`Type=notify`
//! units set `NOTIFY_SOCKET`; elsewhere these do nothing). Uses the `sd-notify`
//! crate: a datagram to the socket, no libsystemd.

use sd_notify::NotifyState;

/// Tells the service manager the server is ready (listening, announced).
pub fn notify_ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// Tells the service manager the server is draining towards its exit.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
