//! DTLS 1.2 for DTLS-SRTP (RFC 5764), sans-IO: datagrams in, datagrams out, SRTP keys
//! out once the peer's certificate matched the fingerprint from its SDP. OpenSSL runs
//! the handshake over an in-memory transport; this module owns the record sanity check
//! before OpenSSL sees a datagram, the retransmission timer, the fingerprint check and
//! the key export. It owns no socket and reads no clock.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use cascade_dataplane::srtp::{SrtpKeyingMaterial, SrtpProfile};
use openssl::ssl::{
    ErrorCode, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVerifyMode, SslVersion,
};

use crate::cert::{DtlsCertificate, Fingerprint};

/// Largest handshake datagram OpenSSL may write (fits any path WebRTC uses).
const MTU: u32 = 1200;
/// First handshake retransmission timeout (RFC 6347 §4.2.4.1), doubled up to the max.
const INITIAL_RTO: Duration = Duration::from_secs(1);
const MAX_RTO: Duration = Duration::from_secs(8);
/// Retransmissions before the handshake is given up.
const MAX_RETRANSMITS: u32 = 6;

/// Which side of the handshake this endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    Server,
    Client,
}

/// What a DTLS endpoint reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    Connected {
        profile: SrtpProfile,
        /// Protects what this endpoint sends.
        local: SrtpKeyingMaterial,
        /// Unprotects what the peer sends.
        remote: SrtpKeyingMaterial,
    },
    /// The peer sent close_notify.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    #[error("malformed DTLS record: {reason}")]
    MalformedRecord { reason: &'static str },
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    #[error("the peer certificate does not match the SDP fingerprint")]
    FingerprintMismatch,
    #[error("no SRTP profile was negotiated")]
    NoSrtpProfile,
    #[error("the handshake timed out")]
    Timeout,
    #[error("the DTLS endpoint failed earlier")]
    Failed,
    #[error("DTLS setup: {0}")]
    Setup(String),
}

/// The in-memory transport OpenSSL reads from and writes to: one datagram per call.
#[derive(Debug, Default)]
struct Datagrams {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.incoming.pop_front() {
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Closed,
    Failed,
}

/// One DTLS association.
pub struct DtlsEndpoint {
    stream: SslStream<Datagrams>,
    remote_fingerprint: Fingerprint,
    state: State,
    /// Datagrams of the flight we sent last, resent when the peer stays silent.
    last_flight: Vec<Vec<u8>>,
    /// True once something arrived after `last_flight` was sent (a new flight starts).
    flight_acknowledged: bool,
    retransmit_at: Option<Instant>,
    rto: Duration,
    retransmits: u32,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
}

impl std::fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl DtlsEndpoint {
    /// An endpoint offering both SRTP profiles, AEAD_AES_128_GCM preferred.
    pub fn new(
        cert: &DtlsCertificate,
        role: DtlsRole,
        remote_fingerprint: Fingerprint,
        now: Instant,
    ) -> Result<Self, DtlsError> {
        Self::with_profiles(
            cert,
            role,
            remote_fingerprint,
            &[SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
            now,
        )
    }

    /// An endpoint offering only `profiles`, in order of preference.
    pub fn with_profiles(
        cert: &DtlsCertificate,
        role: DtlsRole,
        remote_fingerprint: Fingerprint,
        profiles: &[SrtpProfile],
        now: Instant,
    ) -> Result<Self, DtlsError> {
        let setup = |e: openssl::error::ErrorStack| DtlsError::Setup(e.to_string());
        let mut ctx = SslContextBuilder::new(SslMethod::dtls()).map_err(setup)?;
        ctx.set_min_proto_version(Some(SslVersion::DTLS1_2))
            .map_err(setup)?;
        ctx.set_max_proto_version(Some(SslVersion::DTLS1_2))
            .map_err(setup)?;
        ctx.set_certificate(cert.x509()).map_err(setup)?;
        ctx.set_private_key(cert.private_key()).map_err(setup)?;
        ctx.check_private_key().map_err(setup)?;
        ctx.set_cipher_list(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
             ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256:\
             ECDHE-RSA-AES256-GCM-SHA384",
        )
        .map_err(setup)?;
        let names: Vec<&str> = profiles.iter().map(|p| p.openssl_name()).collect();
        ctx.set_tlsext_use_srtp(&names.join(":")).map_err(setup)?;
        // Self-signed certificates: identity is the SDP fingerprint, checked after the
        // handshake; the server requires a client certificate.
        ctx.set_verify_callback(
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            |_, _| true,
        );
        ctx.set_options(SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET);
        let ctx = ctx.build();
        let mut ssl = openssl::ssl::Ssl::new(&ctx).map_err(setup)?;
        ssl.set_mtu(MTU).map_err(setup)?;
        match role {
            DtlsRole::Server => ssl.set_accept_state(),
            DtlsRole::Client => ssl.set_connect_state(),
        }
        let stream = SslStream::new(ssl, Datagrams::default()).map_err(setup)?;
        let mut endpoint = Self {
            stream,
            remote_fingerprint,
            state: State::Handshaking,
            last_flight: Vec::new(),
            flight_acknowledged: true,
            retransmit_at: None,
            rto: INITIAL_RTO,
            retransmits: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        if role == DtlsRole::Client {
            endpoint.drive(now)?;
        }
        Ok(endpoint)
    }

    /// Feeds one received datagram.
    pub fn handle_receive(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DtlsError> {
        match self.state {
            State::Failed => return Err(DtlsError::Failed),
            State::Closed => return Ok(()),
            _ => {}
        }
        check_records(datagram)?;
        self.stream.get_mut().incoming.push_back(datagram.to_vec());
        self.flight_acknowledged = true;
        self.drive(now)
    }

    /// Runs the retransmission timer.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.state == State::Failed {
            return Err(DtlsError::Failed);
        }
        let Some(at) = self.retransmit_at else {
            return Ok(());
        };
        if now < at || self.state != State::Handshaking {
            return Ok(());
        }
        if self.retransmits >= MAX_RETRANSMITS {
            self.state = State::Failed;
            return Err(DtlsError::Timeout);
        }
        self.retransmits += 1;
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.retransmit_at = Some(now + self.rto);
        self.transmit.extend(self.last_flight.iter().cloned());
        Ok(())
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When the retransmission timer fires next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking => self.retransmit_at,
            _ => None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Queues close_notify.
    pub fn close(&mut self) {
        if self.state == State::Connected {
            let _ = self.stream.shutdown();
            self.collect_output(Instant::now(), false);
        }
        if self.state != State::Failed {
            self.state = State::Closed;
        }
    }

    fn drive(&mut self, now: Instant) -> Result<(), DtlsError> {
        let result = match self.state {
            State::Handshaking => self.handshake(),
            State::Connected => self.read_application(),
            _ => Ok(()),
        };
        self.collect_output(now, self.state == State::Handshaking || result.is_ok());
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn handshake(&mut self) -> Result<(), DtlsError> {
        match self.stream.do_handshake() {
            Ok(()) => self.on_connected(),
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(()),
            Err(e) => Err(DtlsError::Handshake(e.to_string())),
        }
    }

    fn on_connected(&mut self) -> Result<(), DtlsError> {
        let ssl = self.stream.ssl();
        let peer = ssl
            .peer_certificate()
            .ok_or(DtlsError::FingerprintMismatch)?;
        if !self.remote_fingerprint.matches(&peer) {
            return Err(DtlsError::FingerprintMismatch);
        }
        let profile = ssl
            .selected_srtp_profile()
            .and_then(|p| SrtpProfile::from_openssl_name(p.name()))
            .ok_or(DtlsError::NoSrtpProfile)?;
        let (kl, sl) = (profile.key_len(), profile.salt_len());
        let mut material = vec![0u8; 2 * (kl + sl)];
        ssl.export_keying_material(&mut material, "EXTRACTOR-dtls_srtp", None)
            .map_err(|e| DtlsError::Handshake(e.to_string()))?;
        let client_key = &material[..kl];
        let server_key = &material[kl..2 * kl];
        let client_salt = &material[2 * kl..2 * kl + sl];
        let server_salt = &material[2 * kl + sl..];
        let make = |k: &[u8], s: &[u8]| {
            SrtpKeyingMaterial::new(profile, k, s)
                .ok_or_else(|| DtlsError::Handshake("exported key of the wrong size".into()))
        };
        let client = make(client_key, client_salt)?;
        let server = make(server_key, server_salt)?;
        let (local, remote) = if ssl.is_server() {
            (server, client)
        } else {
            (client, server)
        };
        self.state = State::Connected;
        self.retransmit_at = None;
        self.events.push_back(DtlsEvent::Connected {
            profile,
            local,
            remote,
        });
        // Records that arrived with the last flight may already hold data or alerts.
        self.read_application()
    }

    /// Reads (and discards) application data; notices close_notify.
    fn read_application(&mut self) -> Result<(), DtlsError> {
        let mut buf = [0u8; 2048];
        loop {
            match self.stream.ssl_read(&mut buf) {
                Ok(_) => continue,
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.state = State::Closed;
                    self.events.push_back(DtlsEvent::Closed);
                    return Ok(());
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {
                    return Ok(());
                }
                Err(e) => return Err(DtlsError::Handshake(e.to_string())),
            }
        }
    }

    /// Moves what OpenSSL wrote to the transmit queue; a new flight restarts the timer.
    fn collect_output(&mut self, now: Instant, arm_timer: bool) {
        let out: Vec<Vec<u8>> = self.stream.get_mut().outgoing.drain(..).collect();
        if out.is_empty() {
            return;
        }
        if self.flight_acknowledged {
            self.last_flight.clear();
            self.flight_acknowledged = false;
            self.rto = INITIAL_RTO;
            self.retransmits = 0;
        }
        self.last_flight.extend(out.iter().cloned());
        self.transmit.extend(out);
        if arm_timer && self.state == State::Handshaking {
            self.retransmit_at = Some(now + self.rto);
        }
    }
}

/// Checks that a datagram is a sequence of well-formed DTLS record headers whose
/// lengths stay inside it (RFC 6347 §4.1).
fn check_records(mut d: &[u8]) -> Result<(), DtlsError> {
    let bad = |reason| Err(DtlsError::MalformedRecord { reason });
    if d.is_empty() {
        return bad("empty datagram");
    }
    while !d.is_empty() {
        if d.len() < 13 {
            return bad("truncated record header");
        }
        if !(20..=63).contains(&d[0]) {
            return bad("content type out of the DTLS range");
        }
        if d[1] != 0xfe || !(d[2] == 0xfd || d[2] == 0xff) {
            return bad("not DTLS 1.0/1.2");
        }
        let len = usize::from(u16::from_be_bytes([d[11], d[12]]));
        if 13 + len > d.len() {
            return bad("record length past the end of the datagram");
        }
        d = &d[13 + len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(client_profiles: &[SrtpProfile]) -> (DtlsEndpoint, DtlsEndpoint, Instant) {
        let now = Instant::now();
        let sc = DtlsCertificate::generate().unwrap();
        let cc = DtlsCertificate::generate().unwrap();
        let server =
            DtlsEndpoint::new(&sc, DtlsRole::Server, cc.fingerprint().clone(), now).unwrap();
        let client = DtlsEndpoint::with_profiles(
            &cc,
            DtlsRole::Client,
            sc.fingerprint().clone(),
            client_profiles,
            now,
        )
        .unwrap();
        (server, client, now)
    }

    /// Passes datagrams both ways until both are quiet; `drop_first_server_flight`
    /// loses the server's first flight once.
    fn run(
        server: &mut DtlsEndpoint,
        client: &mut DtlsEndpoint,
        mut now: Instant,
        drop_first_server_flight: bool,
    ) -> (Vec<DtlsEvent>, Vec<DtlsEvent>, Vec<DtlsError>) {
        let (mut se, mut ce, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let mut dropped = !drop_first_server_flight;
        for _ in 0..50 {
            let mut moved = false;
            while let Some(d) = client.poll_transmit() {
                moved = true;
                if let Err(e) = server.handle_receive(now, &d) {
                    errors.push(e);
                }
            }
            let mut flight = Vec::new();
            while let Some(d) = server.poll_transmit() {
                flight.push(d);
            }
            if !flight.is_empty() && !dropped {
                dropped = true;
                flight.clear();
            }
            for d in flight {
                moved = true;
                if let Err(e) = client.handle_receive(now, &d) {
                    errors.push(e);
                }
            }
            se.extend(std::iter::from_fn(|| server.poll_event()));
            ce.extend(std::iter::from_fn(|| client.poll_event()));
            if !moved {
                let next = [server.poll_timeout(), client.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) => {
                        now = now.max(t);
                        let _ = server.handle_timeout(now);
                        let _ = client.handle_timeout(now);
                    }
                    None => break,
                }
            }
        }
        (se, ce, errors)
    }

    fn keys(ev: &[DtlsEvent]) -> (SrtpProfile, SrtpKeyingMaterial, SrtpKeyingMaterial) {
        ev.iter()
            .find_map(|e| match e {
                DtlsEvent::Connected {
                    profile,
                    local,
                    remote,
                } => Some((*profile, *local, *remote)),
                DtlsEvent::Closed => None,
            })
            .expect("connected")
    }

    #[test]
    fn handshake_exports_matching_keys_gcm_by_default() {
        let (mut s, mut c, now) = pair(&[SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80]);
        let (se, ce, errors) = run(&mut s, &mut c, now, false);
        assert!(errors.is_empty(), "{errors:?}");
        let (sp, sl, sr) = keys(&se);
        let (cp, cl, cr) = keys(&ce);
        assert_eq!(sp, SrtpProfile::AeadAes128Gcm);
        assert_eq!(sp, cp);
        assert_eq!(sl, cr);
        assert_eq!(sr, cl);
        assert_ne!(sl, sr);
        assert!(s.is_connected() && c.is_connected());
    }

    #[test]
    fn cm_when_the_client_offers_only_cm() {
        let (mut s, mut c, now) = pair(&[SrtpProfile::Aes128CmHmacSha1_80]);
        let (se, _, errors) = run(&mut s, &mut c, now, false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys(&se).0, SrtpProfile::Aes128CmHmacSha1_80);
    }

    #[test]
    fn wrong_fingerprint_never_exports_keys() {
        let now = Instant::now();
        let sc = DtlsCertificate::generate().unwrap();
        let cc = DtlsCertificate::generate().unwrap();
        let stranger = DtlsCertificate::generate().unwrap();
        let mut s =
            DtlsEndpoint::new(&sc, DtlsRole::Server, stranger.fingerprint().clone(), now).unwrap();
        let mut c = DtlsEndpoint::new(&cc, DtlsRole::Client, sc.fingerprint().clone(), now).unwrap();
        let (se, _, errors) = run(&mut s, &mut c, now, false);
        assert!(se.is_empty(), "no Connected event: {se:?}");
        assert!(errors.contains(&DtlsError::FingerprintMismatch), "{errors:?}");
        assert!(!s.is_connected());
        // And the client side checks too.
        let mut s = DtlsEndpoint::new(&sc, DtlsRole::Server, cc.fingerprint().clone(), now).unwrap();
        let mut c =
            DtlsEndpoint::new(&cc, DtlsRole::Client, stranger.fingerprint().clone(), now).unwrap();
        let (_, ce, errors) = run(&mut s, &mut c, now, false);
        assert!(ce.is_empty());
        assert!(errors.contains(&DtlsError::FingerprintMismatch), "{errors:?}");
    }

    #[test]
    fn lost_flight_is_retransmitted() {
        let (mut s, mut c, now) = pair(&[SrtpProfile::AeadAes128Gcm]);
        let (se, ce, errors) = run(&mut s, &mut c, now, true);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(keys(&se).1, keys(&ce).2);
    }

    #[test]
    fn garbage_is_a_typed_error_and_does_not_break_a_handshake() {
        let (mut s, mut c, now) = pair(&[SrtpProfile::AeadAes128Gcm]);
        let junk: [&[u8]; 5] = [
            &[],
            &[22, 0xfe, 0xfd],
            &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2],
            &[99; 40],
            &[22, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ];
        for j in junk {
            assert!(matches!(
                s.handle_receive(now, j),
                Err(DtlsError::MalformedRecord { .. })
            ));
        }
        let (se, _, errors) = run(&mut s, &mut c, now, false);
        assert!(errors.is_empty(), "{errors:?}");
        keys(&se);
        // Random bytes never panic.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let cert = DtlsCertificate::generate().unwrap();
        let mut e = DtlsEndpoint::new(&cert, DtlsRole::Server, cert.fingerprint().clone(), now)
            .unwrap();
        for _ in 0..2000 {
            let len = rng.random_range(0..300);
            let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(b) = d.first_mut() {
                *b = rng.random_range(20..64);
            }
            let _ = e.handle_receive(now, &d);
        }
    }

    #[test]
    fn close_notify_is_reported() {
        let (mut s, mut c, now) = pair(&[SrtpProfile::AeadAes128Gcm]);
        run(&mut s, &mut c, now, false);
        c.close();
        while let Some(d) = c.poll_transmit() {
            s.handle_receive(now, &d).unwrap();
        }
        let ev: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
        assert_eq!(ev, vec![DtlsEvent::Closed]);
    }
}
