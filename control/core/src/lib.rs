//! Cascade's control core: everything a media server decides, with no I/O. It owns the
//! rooms and their publications and subscriptions ([`sfu::Sfu`]), each peer's session
//! (ICE-lite, DTLS, SRTP key export), SDP negotiation, STUN, active-speaker detection,
//! token verification and placement ranking.
//!
//! It is sans-IO in the str0m / quinn-proto sense: the shell hands it requests,
//! datagrams and the current time (`now` arguments), and randomness through an RNG it
//! was given; it answers with values and queued outputs (`poll_output`): data-plane
//! [`cascade_command::command::Command`]s, control datagrams to send, events. It never
//! reads the clock, draws from a global RNG, opens a socket or names an HTTP status.
//! The crate's dependencies keep it that way: no async runtime, HTTP or DNS crate is
//! among them (`tests/no_io_dependencies.rs` fails when one shows up), and clippy
//! refuses the clock and global-RNG functions here (`clippy.toml`).

pub mod cert;
pub mod dtls;
pub mod error;
pub mod ice;
pub mod placement;
pub mod sdp;
pub mod session;
pub mod sfu;
pub mod speaker;
pub mod stun;
pub mod token;

/// What the core's unit tests start from: an arbitrary instant, a fixed wall-clock
/// time and seeded RNGs, so that no test reads the clock or the global RNG.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// 2027-01-15, as seconds since the Unix epoch.
    pub(crate) const UNIX_NOW: u64 = 1_800_000_000;

    /// An instant for a test to count from; only differences between instants matter.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn start() -> Instant {
        Instant::now()
    }

    /// A seeded RNG; each call gets the next seed, so draws differ between calls
    /// and the same across runs.
    pub(crate) fn rng() -> StdRng {
        static NEXT_SEED: AtomicU64 = AtomicU64::new(1);
        StdRng::seed_from_u64(NEXT_SEED.fetch_add(1, Ordering::Relaxed))
    }
}
