//! What several targets share: one DTLS certificate (generating one per input would
//! dominate the run), a fixed clock origin, real client offers, and an SFU built the
//! way the server builds it.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use cascade_core::cert::DtlsCertificate;
use cascade_core::sfu::Sfu;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A Chromium publisher (audio and video, `sendonly`).
pub(crate) const CHROME_PUBLISH: &str =
    include_str!("../../control/core/src/sdp/fixtures/chrome_publish.sdp");
/// A Chromium subscriber (`recvonly`).
pub(crate) const CHROME_SUBSCRIBE: &str =
    include_str!("../../control/core/src/sdp/fixtures/chrome_subscribe.sdp");

/// Seconds since the epoch the certificates are dated from.
const UNIX_NOW: u64 = 1_767_225_600;

/// The server's certificate.
pub(crate) fn server_cert() -> &'static DtlsCertificate {
    static CERT: OnceLock<DtlsCertificate> = OnceLock::new();
    CERT.get_or_init(|| DtlsCertificate::generate(UNIX_NOW).expect("certificate"))
}

/// A peer's certificate.
pub(crate) fn peer_cert() -> &'static DtlsCertificate {
    static CERT: OnceLock<DtlsCertificate> = OnceLock::new();
    CERT.get_or_init(|| DtlsCertificate::generate(UNIX_NOW).expect("certificate"))
}

/// The instant every input starts at.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// An offer as a client sends it (CRLF line ends).
pub(crate) fn crlf(sdp: &str) -> String {
    sdp.replace('\n', "\r\n")
}

/// A server's SFU with no session, seeded so every input sees the same ids.
pub(crate) fn sfu() -> Sfu {
    let candidate: SocketAddr = ([192, 0, 2, 1], 3478).into();
    Sfu::new(
        server_cert().clone(),
        candidate,
        "https://media.example".to_owned(),
        epoch(),
        StdRng::seed_from_u64(7),
    )
}

/// Takes everything the SFU wants done, as the shell would.
pub(crate) fn drain(sfu: &mut Sfu) {
    while sfu.poll_output().is_some() {}
}
