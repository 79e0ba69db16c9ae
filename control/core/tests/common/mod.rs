//! What the SFU core's scenario tests start from: a fixed issue time for
//! certificates, an instant to count simulated time from, and servers with seeded
//! RNGs, so no test reads the clock or the process RNG beyond its one starting instant.

use std::time::Instant;

use cascade_core::cert::DtlsCertificate;
use cascade_core::sfu::Sfu;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// 2027-01-15, as seconds since the Unix epoch: the certificates' issue time.
pub(crate) const UNIX_NOW: u64 = 1_800_000_000;

/// An instant to count simulated time from; only differences between instants matter.
#[allow(clippy::disallowed_methods)]
pub(crate) fn start() -> Instant {
    Instant::now()
}

/// A server at `media`, started at `now`, with a seeded RNG.
pub(crate) fn server(media: &str, public_url: &str, now: Instant, seed: u64) -> Sfu {
    Sfu::new(
        DtlsCertificate::generate(UNIX_NOW).unwrap(),
        media.parse().unwrap(),
        public_url.into(),
        now,
        StdRng::seed_from_u64(seed),
    )
}
