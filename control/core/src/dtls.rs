//! DTLS 1.2 endpoint for DTLS-SRTP (RFC 5764), sans-IO.
//!
//! Owns one DTLS association: it hands datagrams to OpenSSL over an in-memory
//! transport, runs the handshake retransmission timer from the `Instant`s it is given,
//! pins the peer certificate to the fingerprint signalled in SDP and exports the SRTP
//! keys once the handshake is done. It does not own sockets or clocks, does not read
//! the wall clock, does not carry application data (data channels are not supported)
//! and never hands keys out before the peer certificate matched its fingerprint.
//!
//! Datagrams are checked to be a plausible sequence of DTLS records before OpenSSL sees
//! them, so stray input is refused with [`DtlsError::MalformedRecord`] without touching
//! the handshake state.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cascade_command::keys::{SrtpKeyingMaterial, SrtpProfile};
use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode,
    SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::X509VerifyResult;

use crate::cert::{DtlsCertificate, Fingerprint};

/// Largest datagram OpenSSL is asked to produce. Leaves room for IP/UDP headers and
/// TURN or VPN encapsulation on a 1280-byte IPv6 path.
pub const DTLS_MTU: usize = 1200;

/// First retransmission timeout of a handshake flight (RFC 6347 §4.2.4.1).
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// The retransmission timeout doubles up to this value.
const MAX_RTO: Duration = Duration::from_secs(8);
/// Retransmissions of one flight before the handshake is given up: with the timeouts
/// above the handshake fails 39 s after the flight was first sent.
const MAX_RETRANSMISSIONS: u32 = 6;
/// How often the server re-sends its final flight when the client retransmits its own
/// (the final flight has no timer of its own, RFC 6347 §4.2.4).
const MAX_FINAL_FLIGHT_RESENDS: u32 = 8;

/// SRTP profiles offered by default, most preferred first. OpenSSL as a server picks
/// the first profile of its own list that the client offers.
const DEFAULT_PROFILES: [SrtpProfile; 2] =
    [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];

/// ECDHE suites, ECDSA first (our own certificates are ECDSA); the RSA ones only matter
/// when we are the client of a server with an RSA certificate.
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
                       ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:\
                       ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:\
                       ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:\
                       ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA";
/// Key exchange groups.
const GROUPS: &str = "X25519:P-256:P-384";

/// RFC 5764 §4.2 exporter label.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// DTLS record header: type, version, epoch, sequence number, length.
const RECORD_HEADER_LEN: usize = 13;
/// Largest record body: 2^14 bytes of plaintext plus the expansion TLS allows.
const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Largest datagram accepted (a UDP payload never exceeds it).
const MAX_DATAGRAM_LEN: usize = 65_535;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;

/// Which side of the handshake this endpoint plays (SDP `a=setup`: `passive` is the
/// server, `active` the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    Server,
    Client,
}

/// What a [`DtlsEndpoint`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake completed and the peer certificate matched its fingerprint.
    Connected {
        profile: SrtpProfile,
        /// Protects what we send.
        local: SrtpKeyingMaterial,
        /// Unprotects what we receive.
        remote: SrtpKeyingMaterial,
    },
    /// The peer sent close_notify.
    Closed,
}

/// Why a DTLS datagram or the association failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    /// The datagram is not a well-formed sequence of DTLS records. It was dropped
    /// without reaching the handshake; the association is unaffected.
    #[error("malformed DTLS record")]
    MalformedRecord,
    /// OpenSSL failed the handshake or the association (includes fatal alerts from
    /// the peer).
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    /// The peer certificate does not hash to the fingerprint signalled in SDP.
    #[error("peer certificate does not match the signalled fingerprint")]
    FingerprintMismatch,
    /// No SRTP protection profile was offered or none was agreed with the peer.
    #[error("no SRTP protection profile in common with the peer")]
    NoSrtpProfile,
    /// The peer did not answer the handshake in time.
    #[error("DTLS handshake timed out")]
    HandshakeTimeout,
    /// Exporting the SRTP keying material failed.
    #[error("exporting SRTP keying material failed: {0}")]
    KeyExport(String),
    /// OpenSSL could not be set up for this endpoint.
    #[error("DTLS setup failed: {0}")]
    Setup(String),
    /// The endpoint failed earlier; it accepts no further input.
    #[error("DTLS endpoint failed earlier")]
    Failed,
}

impl From<ErrorStack> for DtlsError {
    fn from(e: ErrorStack) -> Self {
        DtlsError::Setup(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    /// Closed by either side; input is ignored.
    Closed,
    /// A fatal error happened; input is refused.
    Failed,
}

/// The in-memory transport under OpenSSL: each `read` yields exactly one received
/// datagram, each `write` is one datagram to send.
#[derive(Debug, Default)]
struct DatagramPipe {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl Read for DatagramPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(datagram) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // Like a datagram socket: what does not fit is discarded. OpenSSL's DTLS read
        // buffer holds a maximal record, and records are checked before they get here.
        let n = datagram.len().min(buf.len());
        // `n` is at most the length of either slice: the ranges are in bounds.
        buf[..n].copy_from_slice(&datagram[..n]);
        Ok(n)
    }
}

impl Write for DatagramPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.outgoing.push_back(buf.to_vec());
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One DTLS-SRTP association.
pub struct DtlsEndpoint {
    role: DtlsRole,
    state: State,
    stream: SslStream<DatagramPipe>,
    remote_fingerprint: Fingerprint,
    /// Set by the certificate verification callback when the peer's certificate does
    /// not match `remote_fingerprint`.
    mismatch: Arc<AtomicBool>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
    /// Datagrams of the last flight we sent, re-sent on timeout. On a connected server
    /// this is the final flight, re-sent when the client retransmits its own.
    last_flight: Vec<Vec<u8>>,
    retransmit_at: Option<Instant>,
    rto: Duration,
    retransmissions: u32,
    final_flight_resends: u32,
}

impl fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("remote_fingerprint", &self.remote_fingerprint.to_sdp())
            .field("pending_transmit", &self.transmit.len())
            .field("retransmit_at", &self.retransmit_at)
            .finish_non_exhaustive()
    }
}

impl DtlsEndpoint {
    /// Creates an endpoint offering the default SRTP profiles (AEAD_AES_128_GCM
    /// preferred, then AES128_CM_SHA1_80). A client starts the handshake at once: its
    /// ClientHello is available from [`DtlsEndpoint::poll_transmit`].
    pub fn new(
        cert: &DtlsCertificate,
        role: DtlsRole,
        remote_fingerprint: Fingerprint,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        Self::with_profiles(cert, role, remote_fingerprint, &DEFAULT_PROFILES, now)
    }

    /// Like [`DtlsEndpoint::new`], offering only `profiles` (most preferred first;
    /// duplicates are ignored).
    pub fn with_profiles(
        cert: &DtlsCertificate,
        role: DtlsRole,
        remote_fingerprint: Fingerprint,
        profiles: &[SrtpProfile],
        now: Instant,
    ) -> Result<Self, DtlsError> {
        let mut names: Vec<&str> = Vec::with_capacity(profiles.len());
        for p in profiles {
            if !names.contains(&p.openssl_name()) {
                names.push(p.openssl_name());
            }
        }
        if names.is_empty() {
            return Err(DtlsError::NoSrtpProfile);
        }
        let ctx = build_context(cert, &names.join(":"))?;

        let mut ssl = Ssl::new(&ctx)?;
        // Checked against OpenSSL's minimum; 1200 is far above it.
        ssl.set_mtu(DTLS_MTU as u32)?;
        let mismatch = Arc::new(AtomicBool::new(false));
        let expected = remote_fingerprint.clone();
        let flag = Arc::clone(&mismatch);
        // The peer certificate is self-signed: chain errors are accepted, and the leaf
        // is pinned to the SDP fingerprint instead. Rejecting here (rather than after
        // the handshake) makes OpenSSL send a fatal alert, so the peer stops at once.
        ssl.set_verify_callback(verify_mode(), move |_chain_ok, store| {
            if store.error_depth() != 0 {
                return true;
            }
            let ok = store.current_cert().is_some_and(|c| expected.matches(c));
            if !ok {
                flag.store(true, Ordering::Relaxed);
                store.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
            }
            ok
        });
        match role {
            DtlsRole::Server => ssl.set_accept_state(),
            DtlsRole::Client => ssl.set_connect_state(),
        }
        let stream = SslStream::new(ssl, DatagramPipe::default())?;

        let mut endpoint = Self {
            role,
            state: State::Handshaking,
            stream,
            remote_fingerprint,
            mismatch,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            last_flight: Vec::new(),
            retransmit_at: None,
            rto: INITIAL_RTO,
            retransmissions: 0,
            final_flight_resends: 0,
        };
        if role == DtlsRole::Client {
            endpoint.drive_handshake(now)?;
        }
        Ok(endpoint)
    }

    /// The role this endpoint plays.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Feeds one received UDP datagram.
    ///
    /// A datagram that is not a plausible DTLS record sequence is refused with
    /// [`DtlsError::MalformedRecord`] and leaves the endpoint as it was. Any other error
    /// is fatal: the endpoint stays failed and refuses further input with
    /// [`DtlsError::Failed`]. Input after a close is ignored.
    pub fn handle_receive(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        match self.state {
            State::Failed => return Err(DtlsError::Failed),
            State::Closed => return Ok(()),
            State::Handshaking | State::Connected => {}
        }
        let records = check_records(datagram)?;
        self.stream.get_mut().incoming.push_back(datagram.to_vec());
        let result = match self.state {
            State::Handshaking => self.drive_handshake(now),
            _ => self.read_connected(records.has_handshake),
        };
        // OpenSSL reads until it would block, so the datagram is consumed; make sure
        // nothing stale is left for the next call whatever happened.
        self.stream.get_mut().incoming.clear();
        result
    }

    /// Runs the retransmission timer: re-sends the last flight when it is due.
    /// Fails with [`DtlsError::HandshakeTimeout`] once the peer stayed silent through
    /// all retransmissions.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        match self.state {
            State::Failed => return Err(DtlsError::Failed),
            State::Connected | State::Closed => return Ok(()),
            State::Handshaking => {}
        }
        let Some(at) = self.retransmit_at else {
            return Ok(());
        };
        if now < at {
            return Ok(());
        }
        if self.retransmissions >= MAX_RETRANSMISSIONS {
            return Err(self.fail(DtlsError::HandshakeTimeout));
        }
        self.retransmissions += 1;
        self.rto = self.rto.saturating_mul(2).min(MAX_RTO);
        self.retransmit_at = now.checked_add(self.rto);
        tracing::debug!(
            role = ?self.role,
            datagrams = self.last_flight.len(),
            attempt = self.retransmissions,
            "retransmitting DTLS flight"
        );
        self.transmit.extend(self.last_flight.iter().cloned());
        Ok(())
    }

    /// The next datagram to send, one UDP datagram at a time.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When [`DtlsEndpoint::handle_timeout`] should run next: the next retransmission
    /// while handshaking, `None` otherwise.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking => self.retransmit_at,
            State::Connected | State::Closed | State::Failed => None,
        }
    }

    /// Whether the handshake completed, the peer was verified and the association is
    /// neither closed nor failed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Closes the association: queues close_notify when connected; during the
    /// handshake it only stops the endpoint.
    pub fn close(&mut self) {
        match self.state {
            State::Connected => {
                if let Err(e) = self.stream.shutdown() {
                    tracing::debug!(role = ?self.role, error = %e, "DTLS shutdown failed");
                }
                self.collect_output_into_transmit();
            }
            State::Handshaking => {}
            State::Closed | State::Failed => return,
        }
        self.state = State::Closed;
        self.stop_timer();
        self.last_flight.clear();
    }

    /// Runs OpenSSL's handshake on whatever the transport holds.
    fn drive_handshake(&mut self, now: Instant) -> Result<(), DtlsError> {
        let result = self.stream.do_handshake();
        let produced = self.take_output();
        match result {
            Ok(()) => self.complete_handshake(produced),
            Err(e) if e.code() == ErrorCode::WANT_READ => {
                if !produced.is_empty() {
                    // A new flight: it replaces the previous one and restarts the timer.
                    self.transmit.extend(produced.iter().cloned());
                    self.last_flight = produced;
                    self.rto = INITIAL_RTO;
                    self.retransmissions = 0;
                    self.retransmit_at = now.checked_add(INITIAL_RTO);
                }
                Ok(())
            }
            Err(e) => {
                // Whatever OpenSSL wrote now is its fatal alert: let the peer know.
                self.transmit.extend(produced);
                let error = if self.mismatch.load(Ordering::Relaxed) {
                    DtlsError::FingerprintMismatch
                } else {
                    DtlsError::Handshake(e.to_string())
                };
                Err(self.fail(error))
            }
        }
    }

    /// The handshake finished in OpenSSL: verify the peer, export the keys.
    fn complete_handshake(&mut self, produced: Vec<Vec<u8>>) -> Result<(), DtlsError> {
        // The verification callback already pinned the certificate; this check makes
        // sure no key is ever exported for an unverified peer whatever path OpenSSL took.
        let verified = self
            .stream
            .ssl()
            .peer_certificate()
            .is_some_and(|c| self.remote_fingerprint.matches(&c));
        if !verified || self.mismatch.load(Ordering::Relaxed) {
            // Our final flight (if any) is dropped: the peer must not complete either.
            return Err(self.fail(DtlsError::FingerprintMismatch));
        }
        let keys = self.export_keys();
        // Send the final flight even when no profile was agreed, so that the peer
        // reaches the same conclusion instead of retransmitting.
        self.transmit.extend(produced.iter().cloned());
        let (profile, local, remote) = match keys {
            Ok(keys) => keys,
            Err(e) => return Err(self.fail(e)),
        };
        self.state = State::Connected;
        self.stop_timer();
        self.last_flight = match self.role {
            // The server sent the final flight: keep it for the client's retransmissions.
            DtlsRole::Server => produced,
            DtlsRole::Client => Vec::new(),
        };
        tracing::debug!(role = ?self.role, ?profile, "DTLS connected");
        self.events.push_back(DtlsEvent::Connected {
            profile,
            local,
            remote,
        });
        // Records that followed the last handshake message in the same datagram.
        self.read_connected(false)
    }

    /// Exports the SRTP keys (RFC 5764 §4.2): client_key | server_key | client_salt |
    /// server_salt, returned as (profile, local, remote).
    fn export_keys(
        &self,
    ) -> Result<(SrtpProfile, SrtpKeyingMaterial, SrtpKeyingMaterial), DtlsError> {
        let ssl = self.stream.ssl();
        let profile = ssl
            .selected_srtp_profile()
            .and_then(|p| SrtpProfile::from_openssl_name(p.name()))
            .ok_or(DtlsError::NoSrtpProfile)?;
        let key_len = profile.key_len();
        let salt_len = profile.salt_len();
        let mut material = vec![0u8; 2 * (key_len + salt_len)];
        ssl.export_keying_material(&mut material, EXPORTER_LABEL, None)
            .map_err(|e| DtlsError::KeyExport(e.to_string()))?;
        // `material` is exactly 2 * (key_len + salt_len) long, so each split point is
        // within the remaining slice: the splits cannot panic.
        let (client_key, rest) = material.split_at(key_len);
        let (server_key, rest) = rest.split_at(key_len);
        let (client_salt, server_salt) = rest.split_at(salt_len);
        let client = SrtpKeyingMaterial::new(profile, client_key, client_salt);
        let server = SrtpKeyingMaterial::new(profile, server_key, server_salt);
        // Best effort: do not leave the exported secret in the freed allocation.
        material.fill(0);
        let (Some(client), Some(server)) = (client, server) else {
            return Err(DtlsError::KeyExport(
                "keying material does not fit the profile".into(),
            ));
        };
        Ok(match self.role {
            DtlsRole::Server => (profile, server, client),
            DtlsRole::Client => (profile, client, server),
        })
    }

    /// Reads records after the handshake: application data is discarded, close_notify
    /// closes the association, fatal alerts fail it.
    fn read_connected(&mut self, has_handshake: bool) -> Result<(), DtlsError> {
        let mut buf = [0u8; 2048];
        // Each successful read consumes at least one record of at least a header, so
        // this bounds the loop by the number of records one datagram can hold.
        for _ in 0..MAX_DATAGRAM_LEN / RECORD_HEADER_LEN + 1 {
            match self.stream.ssl_read(&mut buf) {
                // Application data is not used (no data channels).
                Ok(_) => continue,
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    tracing::debug!(role = ?self.role, "DTLS close_notify received");
                    // Answer with our own close_notify.
                    if let Err(e) = self.stream.shutdown() {
                        tracing::debug!(role = ?self.role, error = %e, "DTLS shutdown failed");
                    }
                    self.collect_output_into_transmit();
                    self.state = State::Closed;
                    self.last_flight.clear();
                    self.events.push_back(DtlsEvent::Closed);
                    return Ok(());
                }
                Err(e) => {
                    self.collect_output_into_transmit();
                    return Err(self.fail(DtlsError::Handshake(e.to_string())));
                }
            }
        }
        let produced = self.take_output();
        if !produced.is_empty() {
            // OpenSSL answered by itself (a retransmitted Finished with fresh record
            // numbers makes it re-send its final flight).
            self.transmit.extend(produced);
        } else if has_handshake
            && self.role == DtlsRole::Server
            && !self.last_flight.is_empty()
            && self.final_flight_resends < MAX_FINAL_FLIGHT_RESENDS
        {
            // The client is still handshaking: it did not get our final flight.
            self.final_flight_resends += 1;
            tracing::debug!(
                attempt = self.final_flight_resends,
                "re-sending final DTLS flight"
            );
            self.transmit.extend(self.last_flight.iter().cloned());
        }
        Ok(())
    }

    fn take_output(&mut self) -> Vec<Vec<u8>> {
        self.stream.get_mut().outgoing.drain(..).collect()
    }

    fn collect_output_into_transmit(&mut self) {
        let produced = self.take_output();
        self.transmit.extend(produced);
    }

    fn stop_timer(&mut self) {
        self.retransmit_at = None;
        self.rto = INITIAL_RTO;
        self.retransmissions = 0;
    }

    /// Enters the failed state and returns `error` for the caller.
    fn fail(&mut self, error: DtlsError) -> DtlsError {
        tracing::debug!(role = ?self.role, %error, "DTLS endpoint failed");
        self.state = State::Failed;
        self.stop_timer();
        self.last_flight.clear();
        error
    }
}

fn verify_mode() -> SslVerifyMode {
    SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
}

/// The OpenSSL context for one endpoint: DTLS 1.2 only, our identity, use_srtp.
fn build_context(cert: &DtlsCertificate, srtp_profiles: &str) -> Result<SslContext, DtlsError> {
    let mut ctx = SslContextBuilder::new(SslMethod::dtls())?;
    ctx.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    ctx.set_max_proto_version(Some(SslVersion::DTLS1_2))?;
    ctx.set_cipher_list(CIPHERS)?;
    ctx.set_groups_list(GROUPS)?;
    ctx.set_tlsext_use_srtp(srtp_profiles)?;
    ctx.set_certificate(cert.x509())?;
    ctx.set_private_key(cert.private_key())?;
    ctx.check_private_key()?;
    // A fresh, full handshake per association: no tickets, no resumption, no
    // renegotiation. The MTU is fixed by `set_mtu`, never queried from the transport.
    ctx.set_options(
        SslOptions::NO_TICKET
            | SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_QUERY_MTU
            | SslOptions::CIPHER_SERVER_PREFERENCE,
    );
    ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
    // Replaced per connection by the pinning callback; set here so that the context
    // alone never accepts a peer without a certificate.
    ctx.set_verify(verify_mode());
    Ok(ctx.build())
}

/// What [`check_records`] learnt about a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordSummary {
    /// At least one record is a handshake record.
    has_handshake: bool,
}

/// Checks that `datagram` is a sequence of whole DTLS records: first byte in the DTLS
/// range of RFC 7983, then records with a DTLS 1.0/1.2 version, a known content type
/// and a length inside the datagram. Application data in epoch 0 (never valid: it would
/// be unprotected) is refused too.
fn check_records(datagram: &[u8]) -> Result<RecordSummary, DtlsError> {
    if datagram.len() > MAX_DATAGRAM_LEN || !matches!(datagram.first(), Some(20..=63)) {
        return Err(DtlsError::MalformedRecord);
    }
    let mut summary = RecordSummary {
        has_handshake: false,
    };
    let mut rest = datagram;
    while !rest.is_empty() {
        let Some((header, body)) = rest.split_first_chunk::<RECORD_HEADER_LEN>() else {
            return Err(DtlsError::MalformedRecord);
        };
        // Constant indices into a 13-byte array: checked at compile time.
        let content_type = header[0];
        let version = [header[1], header[2]];
        let epoch = u16::from_be_bytes([header[3], header[4]]);
        let len = usize::from(u16::from_be_bytes([header[11], header[12]]));
        match content_type {
            CONTENT_CHANGE_CIPHER_SPEC | CONTENT_ALERT => {}
            CONTENT_HANDSHAKE => summary.has_handshake = true,
            CONTENT_APPLICATION_DATA if epoch != 0 => {}
            _ => return Err(DtlsError::MalformedRecord),
        }
        if version != [0xfe, 0xfd] && version != [0xfe, 0xff] {
            return Err(DtlsError::MalformedRecord);
        }
        if len > MAX_RECORD_LEN {
            return Err(DtlsError::MalformedRecord);
        }
        let Some(after) = body.get(len..) else {
            return Err(DtlsError::MalformedRecord);
        };
        rest = after;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;
    use crate::cert::FingerprintAlgorithm;

    struct Pair {
        server: DtlsEndpoint,
        client: DtlsEndpoint,
        server_errors: Vec<DtlsError>,
        client_errors: Vec<DtlsError>,
        server_events: Vec<DtlsEvent>,
        client_events: Vec<DtlsEvent>,
    }

    fn certs() -> (DtlsCertificate, DtlsCertificate) {
        (
            DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap(),
            DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap(),
        )
    }

    impl Pair {
        fn new(now: Instant) -> Self {
            let (s, c) = certs();
            Self::with(
                &s,
                &c,
                c.fingerprint().clone(),
                s.fingerprint().clone(),
                &DEFAULT_PROFILES,
                &DEFAULT_PROFILES,
                now,
            )
        }

        fn with(
            server_cert: &DtlsCertificate,
            client_cert: &DtlsCertificate,
            server_expects: Fingerprint,
            client_expects: Fingerprint,
            server_profiles: &[SrtpProfile],
            client_profiles: &[SrtpProfile],
            now: Instant,
        ) -> Self {
            Self {
                server: DtlsEndpoint::with_profiles(
                    server_cert,
                    DtlsRole::Server,
                    server_expects,
                    server_profiles,
                    now,
                )
                .unwrap(),
                client: DtlsEndpoint::with_profiles(
                    client_cert,
                    DtlsRole::Client,
                    client_expects,
                    client_profiles,
                    now,
                )
                .unwrap(),
                server_errors: Vec::new(),
                client_errors: Vec::new(),
                server_events: Vec::new(),
                client_events: Vec::new(),
            }
        }

        fn deliver_to_server(&mut self, now: Instant, datagram: &[u8]) {
            if let Err(e) = self.server.handle_receive(now, datagram) {
                self.server_errors.push(e);
            }
            self.server_events
                .extend(std::iter::from_fn(|| self.server.poll_event()));
        }

        fn deliver_to_client(&mut self, now: Instant, datagram: &[u8]) {
            if let Err(e) = self.client.handle_receive(now, datagram) {
                self.client_errors.push(e);
            }
            self.client_events
                .extend(std::iter::from_fn(|| self.client.poll_event()));
        }

        /// Delivers everything both sides send until both are quiet.
        fn pump(&mut self, now: Instant) {
            for _ in 0..50 {
                let from_client: Vec<_> =
                    std::iter::from_fn(|| self.client.poll_transmit()).collect();
                let from_server: Vec<_> =
                    std::iter::from_fn(|| self.server.poll_transmit()).collect();
                if from_client.is_empty() && from_server.is_empty() {
                    return;
                }
                for d in from_client {
                    self.deliver_to_server(now, &d);
                }
                for d in from_server {
                    self.deliver_to_client(now, &d);
                }
            }
            panic!("endpoints never went quiet");
        }

        fn keys(
            events: &[DtlsEvent],
        ) -> Vec<(SrtpProfile, SrtpKeyingMaterial, SrtpKeyingMaterial)> {
            events
                .iter()
                .filter_map(|e| match e {
                    DtlsEvent::Connected {
                        profile,
                        local,
                        remote,
                    } => Some((*profile, *local, *remote)),
                    DtlsEvent::Closed => None,
                })
                .collect()
        }

        /// Asserts a clean handshake and returns the negotiated profile.
        fn assert_connected(&self) -> SrtpProfile {
            assert!(self.server_errors.is_empty(), "{:?}", self.server_errors);
            assert!(self.client_errors.is_empty(), "{:?}", self.client_errors);
            assert!(self.server.is_connected());
            assert!(self.client.is_connected());
            let s = Self::keys(&self.server_events);
            let c = Self::keys(&self.client_events);
            assert_eq!(s.len(), 1, "{:?}", self.server_events);
            assert_eq!(c.len(), 1, "{:?}", self.client_events);
            let (s_profile, s_local, s_remote) = s[0];
            let (c_profile, c_local, c_remote) = c[0];
            assert_eq!(s_profile, c_profile);
            assert_eq!(s_local, c_remote);
            assert_eq!(s_remote, c_local);
            assert_ne!(s_local, s_remote);
            for k in [s_local, s_remote] {
                assert_eq!(k.profile, s_profile);
                assert_eq!(k.salt().len(), s_profile.salt_len());
                assert_ne!(k.key, [0; 16]);
            }
            assert_eq!(self.server.poll_timeout(), None);
            assert_eq!(self.client.poll_timeout(), None);
            s_profile
        }

        fn assert_no_connected_event(&self) {
            assert!(Self::keys(&self.server_events).is_empty());
            assert!(Self::keys(&self.client_events).is_empty());
            assert!(!self.server.is_connected());
            assert!(!self.client.is_connected());
        }
    }

    fn drain(ep: &mut DtlsEndpoint) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| ep.poll_transmit()).collect()
    }

    #[test]
    fn handshake_connects_with_gcm_by_default() {
        let now = crate::testing::start();
        let mut p = Pair::new(now);
        p.pump(now);
        assert_eq!(p.assert_connected(), SrtpProfile::AeadAes128Gcm);
    }

    #[test]
    fn client_offering_only_cm_gets_cm() {
        let now = crate::testing::start();
        let (s, c) = certs();
        let mut p = Pair::with(
            &s,
            &c,
            c.fingerprint().clone(),
            s.fingerprint().clone(),
            &DEFAULT_PROFILES,
            &[SrtpProfile::Aes128CmHmacSha1_80],
            now,
        );
        p.pump(now);
        assert_eq!(p.assert_connected(), SrtpProfile::Aes128CmHmacSha1_80);
    }

    #[test]
    fn server_preference_wins() {
        let now = crate::testing::start();
        let (s, c) = certs();
        let mut p = Pair::with(
            &s,
            &c,
            c.fingerprint().clone(),
            s.fingerprint().clone(),
            &[SrtpProfile::Aes128CmHmacSha1_80, SrtpProfile::AeadAes128Gcm],
            &DEFAULT_PROFILES,
            now,
        );
        p.pump(now);
        assert_eq!(p.assert_connected(), SrtpProfile::Aes128CmHmacSha1_80);
    }

    #[test]
    fn no_common_profile_fails_without_keys() {
        let now = crate::testing::start();
        let (s, c) = certs();
        let mut p = Pair::with(
            &s,
            &c,
            c.fingerprint().clone(),
            s.fingerprint().clone(),
            &[SrtpProfile::AeadAes128Gcm],
            &[SrtpProfile::Aes128CmHmacSha1_80],
            now,
        );
        p.pump(now);
        p.assert_no_connected_event();
        assert_eq!(p.server_errors.first(), Some(&DtlsError::NoSrtpProfile));
        // The client sees the final flight without use_srtp and reaches the same verdict.
        assert_eq!(p.client_errors.first(), Some(&DtlsError::NoSrtpProfile));
    }

    #[test]
    fn empty_profile_list_is_refused() {
        let (s, c) = certs();
        let err = DtlsEndpoint::with_profiles(
            &s,
            DtlsRole::Client,
            c.fingerprint().clone(),
            &[],
            crate::testing::start(),
        )
        .unwrap_err();
        assert_eq!(err, DtlsError::NoSrtpProfile);
    }

    #[test]
    fn other_fingerprint_algorithms_are_checked() {
        let now = crate::testing::start();
        let (s, c) = certs();
        let server_expects = Fingerprint::of_x509(FingerprintAlgorithm::Sha1, c.x509()).unwrap();
        let client_expects = Fingerprint::of_x509(FingerprintAlgorithm::Sha512, s.x509()).unwrap();
        let mut p = Pair::with(
            &s,
            &c,
            server_expects,
            client_expects,
            &DEFAULT_PROFILES,
            &DEFAULT_PROFILES,
            now,
        );
        p.pump(now);
        p.assert_connected();
    }

    #[test]
    fn wrong_fingerprint_at_server_fails() {
        let now = crate::testing::start();
        let (s, c) = certs();
        let stranger = DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap();
        let mut p = Pair::with(
            &s,
            &c,
            stranger.fingerprint().clone(),
            s.fingerprint().clone(),
            &DEFAULT_PROFILES,
            &DEFAULT_PROFILES,
            now,
        );
        p.pump(now);
        p.assert_no_connected_event();
        assert_eq!(
            p.server_errors.first(),
            Some(&DtlsError::FingerprintMismatch)
        );
        // The client got the fatal alert.
        assert!(
            matches!(p.client_errors.first(), Some(DtlsError::Handshake(_))),
            "{:?}",
            p.client_errors
        );
        // The failed endpoint stays failed.
        assert_eq!(
            p.server
                .handle_receive(now, &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DtlsError::Failed)
        );
        assert_eq!(
            p.server.handle_timeout(now + MAX_RTO),
            Err(DtlsError::Failed)
        );
        assert_eq!(p.server.poll_timeout(), None);
        assert_eq!(p.server.poll_event(), None);
    }

    #[test]
    fn wrong_fingerprint_at_client_fails() {
        let now = crate::testing::start();
        let (s, c) = certs();
        let mut wrong = s.fingerprint().clone();
        wrong.bytes[0] ^= 1;
        let mut p = Pair::with(
            &s,
            &c,
            c.fingerprint().clone(),
            wrong,
            &DEFAULT_PROFILES,
            &DEFAULT_PROFILES,
            now,
        );
        p.pump(now);
        p.assert_no_connected_event();
        assert_eq!(
            p.client_errors.first(),
            Some(&DtlsError::FingerprintMismatch)
        );
        assert!(
            matches!(p.server_errors.first(), Some(DtlsError::Handshake(_))),
            "{:?}",
            p.server_errors
        );
        assert_eq!(
            p.client.handle_timeout(now + MAX_RTO),
            Err(DtlsError::Failed)
        );
    }

    #[test]
    fn dropped_server_flight_is_retransmitted() {
        let t0 = crate::testing::start();
        let mut p = Pair::new(t0);
        let hello = drain(&mut p.client);
        assert!(!hello.is_empty());
        assert_eq!(p.client.poll_timeout(), Some(t0 + INITIAL_RTO));
        // The server waits for a ClientHello: no timer yet.
        assert_eq!(p.server.poll_timeout(), None);
        for d in &hello {
            p.deliver_to_server(t0, d);
        }
        let dropped = drain(&mut p.server);
        assert!(!dropped.is_empty());
        let due = p.server.poll_timeout().unwrap();
        assert_eq!(due, t0 + INITIAL_RTO);

        // Nothing before the deadline.
        p.server
            .handle_timeout(due - Duration::from_millis(1))
            .unwrap();
        assert!(drain(&mut p.server).is_empty());

        // Both sides time out; the server repeats its flight.
        p.server.handle_timeout(due).unwrap();
        p.client.handle_timeout(due).unwrap();
        assert_eq!(drain(&mut p.server), dropped);
        assert_eq!(drain(&mut p.client), hello);
        assert_eq!(p.server.poll_timeout(), Some(due + 2 * INITIAL_RTO));

        // Deliver the retransmission (and the duplicate ClientHello).
        for d in &hello {
            p.deliver_to_server(due, d);
        }
        for d in &dropped {
            p.deliver_to_client(due, d);
        }
        p.pump(due);
        p.assert_connected();
    }

    #[test]
    fn dropped_final_flight_is_resent_when_client_retransmits() {
        let t0 = crate::testing::start();
        let mut p = Pair::new(t0);
        // ClientHello → server, server flight → client, client flight → server.
        for d in drain(&mut p.client) {
            p.deliver_to_server(t0, &d);
        }
        for d in drain(&mut p.server) {
            p.deliver_to_client(t0, &d);
        }
        for d in drain(&mut p.client) {
            p.deliver_to_server(t0, &d);
        }
        assert!(p.server.is_connected());
        // The server's final flight is lost.
        let lost = drain(&mut p.server);
        assert!(!lost.is_empty());
        assert!(!p.client.is_connected());
        let due = p.client.poll_timeout().unwrap();
        p.client.handle_timeout(due).unwrap();
        let repeated = drain(&mut p.client);
        assert!(!repeated.is_empty());
        for d in &repeated {
            p.deliver_to_server(due, d);
        }
        // The client's repeated flight makes the server repeat its final flight.
        assert_eq!(drain(&mut p.server), lost);
        for d in &lost {
            p.deliver_to_client(due, d);
        }
        p.pump(due);
        p.assert_connected();
    }

    #[test]
    fn retransmission_backs_off_then_gives_up() {
        let t0 = crate::testing::start();
        let (s, c) = certs();
        let mut client =
            DtlsEndpoint::new(&c, DtlsRole::Client, s.fingerprint().clone(), t0).unwrap();
        let hello = drain(&mut client);
        let mut now = t0;
        let mut gaps = Vec::new();
        while let Some(due) = client.poll_timeout() {
            gaps.push(due - now);
            now = due;
            match client.handle_timeout(now) {
                Ok(()) => assert_eq!(drain(&mut client), hello),
                Err(e) => {
                    assert_eq!(e, DtlsError::HandshakeTimeout);
                    break;
                }
            }
        }
        let secs: Vec<u64> = gaps.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8, 8]);
        assert_eq!(client.poll_timeout(), None);
        assert_eq!(client.handle_timeout(now + MAX_RTO), Err(DtlsError::Failed));
    }

    /// Datagrams that must be refused before OpenSSL sees them.
    fn garbage() -> Vec<Vec<u8>> {
        let valid_header = |t: u8, len: u16| {
            let mut h = vec![t, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1];
            h.extend_from_slice(&len.to_be_bytes());
            h
        };
        let mut v = vec![
            vec![],
            vec![22],
            vec![22, 0xfe, 0xfd, 0, 0],
            // Header only, claiming a body.
            valid_header(22, 10),
            // Length past the end of the datagram.
            [valid_header(22, 100), vec![0; 50]].concat(),
            // A whole record followed by a partial header.
            [valid_header(21, 2), vec![2, 40], vec![22, 0xfe]].concat(),
            // A whole record followed by a record running past the end.
            [
                valid_header(21, 2),
                vec![2, 40],
                valid_header(22, 5),
                vec![1],
            ]
            .concat(),
            // Bad version.
            [vec![22, 0x03, 0x03], vec![0; 8], vec![0, 1], vec![0]].concat(),
            // Unknown content types, one inside and one outside the DTLS range.
            [valid_header(24, 1), vec![0]].concat(),
            [valid_header(64, 1), vec![0]].concat(),
            // Unprotected application data.
            [valid_header(23, 4), vec![1, 2, 3, 4]].concat(),
            // Length beyond any record.
            [valid_header(22, u16::MAX), vec![0; usize::from(u16::MAX)]].concat(),
            // STUN and RTP.
            vec![
                0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            vec![0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
        ];
        // Too large for a UDP datagram.
        v.push(vec![22; MAX_DATAGRAM_LEN + 1]);
        v
    }

    #[test]
    fn record_check() {
        for g in garbage() {
            assert_eq!(check_records(&g), Err(DtlsError::MalformedRecord), "{g:?}");
        }
        let alert = [21, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0];
        assert_eq!(
            check_records(&alert),
            Ok(RecordSummary {
                has_handshake: false
            })
        );
        let two = [&alert[..], &[22, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]].concat();
        assert_eq!(
            check_records(&two),
            Ok(RecordSummary {
                has_handshake: true
            })
        );
        let app_data = [23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 5, 0, 1, 9];
        assert!(check_records(&app_data).is_ok());
    }

    #[test]
    fn garbage_is_refused_and_later_handshakes_work() {
        let now = crate::testing::start();
        let (s, c) = certs();
        let mut server =
            DtlsEndpoint::new(&s, DtlsRole::Server, c.fingerprint().clone(), now).unwrap();
        for g in garbage() {
            assert_eq!(
                server.handle_receive(now, &g),
                Err(DtlsError::MalformedRecord)
            );
        }
        assert!(server.poll_transmit().is_none());
        assert_eq!(server.poll_timeout(), None);

        // Random bytes: any outcome but a panic. Most are refused by the record check.
        let mut rng = crate::testing::rng();
        let mut refused = 0;
        for _ in 0..2000 {
            let len = rng.random_range(0..300);
            let mut d = vec![0u8; len];
            rng.fill(&mut d[..]);
            if rng.random_bool(0.5) && len > 3 {
                // Make it look more like DTLS so that deeper checks are exercised.
                d[0] = rng.random_range(20..=23);
                d[1] = 0xfe;
                d[2] = 0xfd;
            }
            let mut fresh =
                DtlsEndpoint::new(&s, DtlsRole::Server, c.fingerprint().clone(), now).unwrap();
            if fresh.handle_receive(now, &d) == Err(DtlsError::MalformedRecord) {
                refused += 1;
            }
            while fresh.poll_transmit().is_some() {}
        }
        assert!(refused > 1900, "{refused}");

        // The server that saw the garbage still completes a handshake.
        let mut client =
            DtlsEndpoint::new(&c, DtlsRole::Client, s.fingerprint().clone(), now).unwrap();
        for _ in 0..10 {
            for d in drain(&mut client) {
                server.handle_receive(now, &d).unwrap();
            }
            for d in drain(&mut server) {
                client.handle_receive(now, &d).unwrap();
            }
        }
        assert!(server.is_connected() && client.is_connected());

        // And so does a fresh pair.
        let mut p = Pair::new(now);
        p.pump(now);
        p.assert_connected();
    }

    #[test]
    fn garbage_interleaved_into_handshake_is_harmless() {
        let now = crate::testing::start();
        let mut p = Pair::new(now);
        let junk = garbage();
        let mut refused = 0;
        for _ in 0..20 {
            let from_client = drain(&mut p.client);
            let from_server = drain(&mut p.server);
            if from_client.is_empty() && from_server.is_empty() {
                break;
            }
            for d in from_client {
                for g in &junk {
                    p.deliver_to_server(now, g);
                }
                // A truncated copy of the real datagram, too.
                p.deliver_to_server(now, &d[..d.len() - 1]);
                p.deliver_to_server(now, &d);
            }
            for d in from_server {
                for g in &junk {
                    p.deliver_to_client(now, g);
                }
                p.deliver_to_client(now, &d[..d.len() - 1]);
                p.deliver_to_client(now, &d);
            }
            refused += p.server_errors.len() + p.client_errors.len();
            assert!(
                p.server_errors
                    .drain(..)
                    .chain(p.client_errors.drain(..))
                    .all(|e| e == DtlsError::MalformedRecord)
            );
        }
        assert!(refused > 0);
        p.assert_connected();
    }

    #[test]
    fn handshake_datagrams_are_whole_records_within_mtu() {
        let now = crate::testing::start();
        let mut p = Pair::new(now);
        let mut seen = 0;
        for _ in 0..10 {
            let from_client = drain(&mut p.client);
            let from_server = drain(&mut p.server);
            for d in from_client.iter().chain(&from_server) {
                assert!(d.len() <= DTLS_MTU, "{} bytes", d.len());
                assert!(check_records(d).is_ok());
                seen += 1;
            }
            for d in from_client {
                p.deliver_to_server(now, &d);
            }
            for d in from_server {
                p.deliver_to_client(now, &d);
            }
        }
        assert!(seen >= 3);
        p.assert_connected();
    }

    #[test]
    fn close_notify_reaches_peer() {
        let now = crate::testing::start();
        let mut p = Pair::new(now);
        p.pump(now);
        p.assert_connected();
        p.client.close();
        assert!(!p.client.is_connected());
        let notify = drain(&mut p.client);
        assert!(!notify.is_empty());
        for d in &notify {
            p.deliver_to_server(now, d);
        }
        assert_eq!(p.server_events.last(), Some(&DtlsEvent::Closed));
        assert!(!p.server.is_connected());
        assert!(p.server_errors.is_empty());
        // The server answers with its own close_notify, which the client ignores.
        for d in drain(&mut p.server) {
            p.client.handle_receive(now, &d).unwrap();
        }
        assert_eq!(p.client.poll_event(), None);
        // A closed endpoint ignores further input.
        p.server.handle_receive(now, &notify[0]).unwrap();
        assert_eq!(p.server.poll_event(), None);
    }

    #[test]
    fn close_during_handshake_stops_timers() {
        let now = crate::testing::start();
        let mut p = Pair::new(now);
        drain(&mut p.client);
        p.client.close();
        assert!(p.client.poll_transmit().is_none());
        assert_eq!(p.client.poll_timeout(), None);
        p.client.handle_timeout(now + MAX_RTO).unwrap();
        assert!(p.client.poll_transmit().is_none());
    }

    #[test]
    fn application_data_is_ignored() {
        let now = crate::testing::start();
        let mut p = Pair::new(now);
        p.pump(now);
        p.assert_connected();
        p.client.stream.ssl_write(b"not used").unwrap();
        p.client.collect_output_into_transmit();
        let data = drain(&mut p.client);
        assert_eq!(data.len(), 1);
        assert_eq!(data[0][0], CONTENT_APPLICATION_DATA);
        p.server.handle_receive(now, &data[0]).unwrap();
        assert_eq!(p.server.poll_event(), None);
        assert!(p.server.poll_transmit().is_none());
        assert!(p.server.is_connected());
    }

    #[test]
    fn endpoint_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<DtlsEndpoint>();
        assert_send::<DtlsEvent>();
        assert_send::<DtlsCertificate>();
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let now = crate::testing::start();
        let mut p = Pair::new(now);
        p.pump(now);
        let debug = format!("{:?} {:?}", p.server, p.server_events);
        let (_, local, _) = Pair::keys(&p.server_events)[0];
        assert!(!debug.contains(&format!("{:?}", local.key)));
        assert!(debug.contains("Server"));
    }
}
