//! One WebRTC peer session on the server side, sans-IO: ICE-lite connectivity checks
//! and consent, then the DTLS handshake that yields SRTP keys. Input goes in with
//! [`PeerSession::handle_input`], results come out of [`PeerSession::poll_output`].
//! It owns no socket and no clock, and never sees RTP: once keys exist, the caller
//! installs the session in the data plane.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::SessionId;
use cascade_command::keys::SrtpKeyingMaterial;

use crate::cert::{DtlsCertificate, Fingerprint};
use crate::dtls::{DtlsEndpoint, DtlsEvent, DtlsRole};
use crate::ice::{IceCredentials, IceEvent, IceLite};

/// A session that has not connected after this long is closed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a session is fed.
#[derive(Debug)]
pub enum SessionInput<'a> {
    /// A STUN message from `from`.
    Stun { from: SocketAddr, data: &'a [u8] },
    /// A DTLS datagram from `from`.
    Dtls { from: SocketAddr, data: &'a [u8] },
    /// Time passed; run timers.
    Timeout,
}

/// What a session asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutput {
    /// Send a control datagram (STUN response, DTLS record).
    Transmit { dest: SocketAddr, data: Vec<u8> },
    /// ICE validated a new address: DTLS from it may be accepted.
    AddressValidated(SocketAddr),
    /// ICE and DTLS are done: install the session in the data plane.
    Connected {
        peer: SocketAddr,
        rx: SrtpKeyingMaterial,
        tx: SrtpKeyingMaterial,
    },
    /// The nominated address changed after the session was connected.
    PeerChanged(SocketAddr),
    /// The session is over (consent lost, DTLS failure or close, never connected).
    Closed(CloseReason),
}

/// Why a session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    ConsentExpired,
    ConnectTimeout,
    DtlsFailed(String),
    DtlsClosed,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::ConsentExpired => f.write_str("ICE consent expired"),
            CloseReason::ConnectTimeout => f.write_str("never connected"),
            CloseReason::DtlsFailed(e) => write!(f, "DTLS failed: {e}"),
            CloseReason::DtlsClosed => f.write_str("DTLS closed by peer"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Connected,
    Closed,
}

/// ICE-lite + DTLS for one peer. As DTLS client (a passive offer), the ClientHello
/// leaves once ICE nominated the peer's address.
pub struct PeerSession {
    id: SessionId,
    created: Instant,
    ice: IceLite,
    dtls: DtlsEndpoint,
    /// Address DTLS records come from (the first validated address that sent one).
    dtls_peer: Option<SocketAddr>,
    keys: Option<(SrtpKeyingMaterial, SrtpKeyingMaterial)>,
    installed_peer: Option<SocketAddr>,
    state: State,
    out: VecDeque<SessionOutput>,
}

impl std::fmt::Debug for PeerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSession")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("peer", &self.installed_peer)
            .finish_non_exhaustive()
    }
}

impl PeerSession {
    /// A session answering an offer: we are ICE-lite, and DTLS `role` as negotiated.
    pub fn new(
        id: SessionId,
        local_ice: IceCredentials,
        remote_ice: IceCredentials,
        cert: &DtlsCertificate,
        remote_fingerprint: Fingerprint,
        role: DtlsRole,
        now: Instant,
    ) -> Result<Self, crate::dtls::DtlsError> {
        Ok(Self {
            id,
            created: now,
            ice: IceLite::new(local_ice, remote_ice, now),
            dtls: DtlsEndpoint::new(cert, role, remote_fingerprint, now)?,
            dtls_peer: None,
            keys: None,
            installed_peer: None,
            state: State::Connecting,
            out: VecDeque::new(),
        })
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The peer's current ICE credentials.
    pub fn remote_ice(&self) -> &IceCredentials {
        self.ice.remote_credentials()
    }

    pub fn local_ice(&self) -> &IceCredentials {
        self.ice.local_credentials()
    }

    /// True once keys are exported and a nominated address exists.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True when ICE validated `addr` (DTLS from it may be accepted).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.ice.is_validated(addr)
    }

    /// True when this STUN request is addressed to this session.
    pub fn accepts_stun(&self, data: &[u8]) -> bool {
        self.ice.accepts(data)
    }

    /// ICE restart (PATCH with new credentials): checks go on with fresh `local`
    /// credentials and the peer's new `remote` ones.
    pub fn restart_ice(&mut self, local: IceCredentials, remote: IceCredentials, now: Instant) {
        self.ice.restart(local, remote, now);
    }

    pub fn handle_input(&mut self, now: Instant, input: SessionInput<'_>) {
        if self.state == State::Closed {
            return;
        }
        match input {
            SessionInput::Stun { from, data } => {
                let was_validated = self.ice.is_validated(from);
                let response = self.ice.handle_stun(now, from, data);
                // Validation first: the kernel guard must allow the address before the
                // peer, answered, starts DTLS.
                if !was_validated && self.ice.is_validated(from) {
                    self.out.push_back(SessionOutput::AddressValidated(from));
                }
                match response {
                    Ok(Some(response)) => self.out.push_back(SessionOutput::Transmit {
                        dest: from,
                        data: response,
                    }),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(session = self.id.0, %from, error = %e, "STUN refused")
                    }
                }
            }
            SessionInput::Dtls { from, data } => {
                if !self.ice.is_validated(from) {
                    return;
                }
                if self.dtls_peer.is_none() {
                    self.dtls_peer = Some(from);
                }
                if let Err(e) = self.dtls.handle_receive(now, data) {
                    if self.dtls.is_connected() || !is_recoverable(&e) {
                        self.close(CloseReason::DtlsFailed(e.to_string()));
                        return;
                    }
                    tracing::debug!(session = self.id.0, %from, error = %e, "DTLS datagram refused");
                }
            }
            SessionInput::Timeout => {
                self.ice.handle_timeout(now);
                if let Err(e) = self.dtls.handle_timeout(now) {
                    self.close(CloseReason::DtlsFailed(e.to_string()));
                    return;
                }
                if self.state == State::Connecting
                    && now.saturating_duration_since(self.created) >= CONNECT_TIMEOUT
                {
                    self.close(CloseReason::ConnectTimeout);
                    return;
                }
            }
        }
        self.drive();
    }

    fn drive(&mut self) {
        while let Some(ev) = self.ice.poll_event() {
            match ev {
                IceEvent::Nominated(addr) => {
                    if self.state == State::Connected && self.installed_peer != Some(addr) {
                        self.installed_peer = Some(addr);
                        self.out.push_back(SessionOutput::PeerChanged(addr));
                    }
                }
                IceEvent::ConsentExpired => {
                    self.close(CloseReason::ConsentExpired);
                    return;
                }
            }
        }
        while let Some(ev) = self.dtls.poll_event() {
            match ev {
                DtlsEvent::Connected { local, remote, .. } => self.keys = Some((remote, local)),
                DtlsEvent::Closed => {
                    self.close(CloseReason::DtlsClosed);
                    return;
                }
            }
        }
        if let Some(dest) = self.dtls_peer.or(self.ice.nominated()) {
            while let Some(data) = self.dtls.poll_transmit() {
                self.out.push_back(SessionOutput::Transmit { dest, data });
            }
        }
        if self.state == State::Connecting
            && let (Some((rx, tx)), Some(peer)) = (self.keys, self.ice.nominated())
        {
            self.state = State::Connected;
            self.installed_peer = Some(peer);
            self.out
                .push_back(SessionOutput::Connected { peer, rx, tx });
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.out.push_back(SessionOutput::Closed(reason));
        }
    }

    /// Asks the peer to close DTLS (on DELETE); the datagram comes out of `poll_output`.
    pub fn shutdown(&mut self) {
        if self.state == State::Closed {
            return;
        }
        self.dtls.close();
        if let Some(dest) = self.dtls_peer {
            while let Some(data) = self.dtls.poll_transmit() {
                self.out.push_back(SessionOutput::Transmit { dest, data });
            }
        }
        self.state = State::Closed;
    }

    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        self.out.pop_front()
    }

    /// When `handle_input(now, SessionInput::Timeout)` should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let connect = (self.state == State::Connecting).then_some(self.created + CONNECT_TIMEOUT);
        [self.ice.poll_timeout(), self.dtls.poll_timeout(), connect]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Malformed records from a validated address are dropped; OpenSSL handshake
/// failures end the session.
fn is_recoverable(e: &crate::dtls::DtlsError) -> bool {
    matches!(e, crate::dtls::DtlsError::MalformedRecord)
}
