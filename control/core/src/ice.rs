//! ICE-lite agent (RFC 8445 §2.5) with consent freshness (RFC 7675).
//!
//! This module owns the connectivity-check state of one peer connection: it answers
//! the peer's Binding requests, remembers which source addresses passed a check,
//! follows the peer's nomination and expires consent after 30 s of silence. We are
//! always the lite, controlled agent, so it never sends checks of its own. It is
//! sans-IO: it must not open sockets or read clocks (time comes in as `Instant`),
//! must never panic on network input, and keeps bounded memory whatever arrives.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::stun::{self, StunBuildError, StunClass};

/// How long the nominated address keeps consent without a verified request (RFC 7675).
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many validated source addresses are remembered; the least recently verified
/// one (never the nominated one) is forgotten first.
pub const MAX_VALIDATED: usize = 8;

/// Length of a generated ufrag, in ice-chars.
const UFRAG_LEN: usize = 8;
/// Length of a generated password, in ice-chars.
const PWD_LEN: usize = 24;
/// RFC 8839 ice-char = ALPHA / DIGIT / "+" / "/".
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// ICE username fragment and password of one side.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// Username fragment (`a=ice-ufrag`).
    pub ufrag: String,
    /// Password (`a=ice-pwd`).
    pub pwd: String,
}

impl IceCredentials {
    /// Fresh random credentials: an 8-character ufrag and a 24-character password
    /// (RFC 8839 requires at least 4 and 22), drawn from the ice-char alphabet.
    pub fn random(rng: &mut impl Rng) -> Self {
        let mut draw = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    // random_range(0..64) is below ICE_CHARS.len() == 64.
                    char::from(ICE_CHARS[rng.random_range(0..ICE_CHARS.len())])
                })
                .collect()
        };
        let ufrag = draw(UFRAG_LEN);
        let pwd = draw(PWD_LEN);
        Self { ufrag, pwd }
    }
}

impl fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

/// Something the owner of an [`IceLite`] must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// The peer nominated this address (first nomination or a change of address):
    /// media goes there from now on.
    Nominated(SocketAddr),
    /// The nominated address sent no verified request for [`CONSENT_TIMEOUT`]: stop
    /// sending to it.
    ConsentExpired,
}

/// Failure to produce a response (the packet itself is never an error).
#[derive(Debug, thiserror::Error)]
pub enum IceError {
    /// The STUN response could not be written.
    #[error("cannot build STUN response: {0}")]
    Build(#[from] StunBuildError),
}

#[derive(Debug, Clone, Copy)]
struct Validated {
    addr: SocketAddr,
    last_verified: Instant,
}

/// The ICE-lite, controlled side of one peer connection.
#[derive(Debug)]
pub struct IceLite {
    local: IceCredentials,
    remote: IceCredentials,
    /// "<local ufrag>:", the prefix every USERNAME addressed to us starts with.
    username_prefix: String,
    /// Validated addresses, least recently verified first; at most [`MAX_VALIDATED`].
    validated: VecDeque<Validated>,
    nominated: Option<SocketAddr>,
    /// Pending events; at most one of each kind, so at most two.
    events: VecDeque<IceEvent>,
    /// Latest time seen, so a caller passing an earlier `Instant` cannot move time back.
    now: Instant,
}

impl IceLite {
    /// A new agent with our credentials and the peer's.
    pub fn new(local: IceCredentials, remote: IceCredentials, now: Instant) -> Self {
        let username_prefix = format!("{}:", local.ufrag);
        Self {
            local,
            remote,
            username_prefix,
            validated: VecDeque::with_capacity(MAX_VALIDATED),
            nominated: None,
            events: VecDeque::with_capacity(2),
            now,
        }
    }

    /// True when this STUN packet is a request addressed to this agent: its USERNAME
    /// is "<local ufrag>:<remote ufrag>". Only the local part is compared (RFC 8445
    /// §7.3), so checks that arrive before the peer's credentials are still routed
    /// here. Cheap: the packet is not authenticated.
    pub fn accepts(&self, stun_packet: &[u8]) -> bool {
        matches!(stun::parse_header(stun_packet), Ok(h) if h.class == StunClass::Request)
            && stun::username(stun_packet).is_some_and(|u| u.starts_with(&self.username_prefix))
    }

    /// Handles a STUN packet from `from` and returns the response to send back to
    /// `from`, if any.
    ///
    /// A Binding request is answered with success only when USERNAME starts with our
    /// ufrag, MESSAGE-INTEGRITY verifies with our password and FINGERPRINT, if present,
    /// verifies. Otherwise: 400 (malformed, missing USERNAME or MESSAGE-INTEGRITY, or
    /// not a Binding request), 401 (wrong ufrag or integrity), 420 (unknown
    /// comprehension-required attributes), 487 (the peer also claims to be
    /// controlled). Non-STUN data, bad FINGERPRINTs, responses and indications get
    /// `None`.
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &[u8],
    ) -> Result<Option<Vec<u8>>, IceError> {
        let now = self.advance(now);
        self.expire(now);

        let Ok(header) = stun::parse_header(packet) else {
            return Ok(None);
        };
        if header.class != StunClass::Request {
            return Ok(None);
        }
        let tid = header.transaction_id;
        let reject = |code| stun::error_response(header.method, tid, code, None).map(Some);

        let msg = match stun::parse(packet) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::trace!(%from, error = %e, "malformed STUN request");
                return Ok(reject(stun::ERROR_BAD_REQUEST)?);
            }
        };
        if msg.fingerprint().is_some() && !msg.verify_fingerprint() {
            // RFC 8489 §7.3: a bad FINGERPRINT means the datagram is not STUN.
            tracing::trace!(%from, "STUN request with bad FINGERPRINT dropped");
            return Ok(None);
        }
        if msg.method != stun::METHOD_BINDING {
            return Ok(reject(stun::ERROR_BAD_REQUEST)?);
        }
        let (Some(username), Some(_)) = (msg.username(), msg.message_integrity()) else {
            return Ok(reject(stun::ERROR_BAD_REQUEST)?);
        };
        if !username.starts_with(&self.username_prefix) {
            tracing::trace!(%from, "STUN request for another ufrag");
            return Ok(reject(stun::ERROR_UNAUTHORIZED)?);
        }
        let key = self.local.pwd.as_bytes();
        if !msg.verify_integrity(key) {
            tracing::debug!(%from, "STUN request failed MESSAGE-INTEGRITY");
            return Ok(reject(stun::ERROR_UNAUTHORIZED)?);
        }

        // Authenticated from here on: error responses are signed.
        let unknown = msg.unknown_comprehension_required();
        if !unknown.is_empty() {
            let response = stun::StunWriter::new(StunClass::ErrorResponse, msg.method, tid)
                .error_code(
                    stun::ERROR_UNKNOWN_ATTRIBUTE,
                    stun::reason_phrase(stun::ERROR_UNKNOWN_ATTRIBUTE),
                )
                .unknown_attributes(unknown)
                .finish(Some(key), true)?;
            return Ok(Some(response));
        }
        if msg.ice_controlled().is_some() {
            // We are lite and therefore always controlled; we cannot take the
            // controlling role, so the peer must (RFC 8445 §7.3.1.1).
            tracing::debug!(%from, "ICE role conflict: peer claims to be controlled");
            let response =
                stun::error_response(msg.method, tid, stun::ERROR_ROLE_CONFLICT, Some(key))?;
            return Ok(Some(response));
        }

        let response = stun::binding_success_response(tid, from, key)?;
        self.mark_validated(from, now);
        if msg.use_candidate() && self.nominated != Some(from) {
            tracing::debug!(%from, "ICE address nominated");
            self.nominated = Some(from);
            self.push_event(IceEvent::Nominated(from));
        }
        Ok(Some(response))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// Expires consent that is [`CONSENT_TIMEOUT`] old at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.expire(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called; `None`
    /// while no address is validated.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.validated
            .iter()
            .map(|v| v.last_verified + CONSENT_TIMEOUT)
            .min()
    }

    /// The nominated address while it has consent.
    pub fn nominated(&self) -> Option<SocketAddr> {
        self.nominated
    }

    /// True when `addr` passed a connectivity check and its consent has not expired
    /// (as of the last `handle_stun`/`handle_timeout` call).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.validated.iter().any(|v| v.addr == addr)
    }

    /// Our credentials, for the SDP answer.
    pub fn local_credentials(&self) -> &IceCredentials {
        &self.local
    }

    /// The peer's credentials.
    pub fn remote_credentials(&self) -> &IceCredentials {
        &self.remote
    }

    /// ICE restart or late remote credentials: replaces the remote credentials and
    /// installs `local` (which may equal the current ones). With new local
    /// credentials, addresses validated under the old ones are forgotten except the
    /// nominated one, which keeps carrying media, with its consent clock running,
    /// until checks with the new credentials confirm or replace it (RFC 8445 §9).
    pub fn restart(&mut self, local: IceCredentials, remote: IceCredentials, now: Instant) {
        let now = self.advance(now);
        if local != self.local {
            let nominated = self.nominated;
            self.validated.retain(|v| Some(v.addr) == nominated);
            self.username_prefix = format!("{}:", local.ufrag);
            self.local = local;
        }
        self.remote = remote;
        self.expire(now);
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn expire(&mut self, now: Instant) {
        let before = self.validated.len();
        self.validated
            .retain(|v| now.saturating_duration_since(v.last_verified) < CONSENT_TIMEOUT);
        if self.validated.len() == before {
            return;
        }
        if let Some(addr) = self.nominated
            && !self.is_validated(addr)
        {
            tracing::debug!(%addr, "ICE consent expired");
            self.nominated = None;
            self.push_event(IceEvent::ConsentExpired);
        }
    }

    fn mark_validated(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(i) = self.validated.iter().position(|v| v.addr == addr) {
            self.validated.remove(i);
        } else if self.validated.len() >= MAX_VALIDATED {
            let nominated = self.nominated;
            if let Some(i) = self
                .validated
                .iter()
                .position(|v| Some(v.addr) != nominated)
            {
                self.validated.remove(i);
            }
        }
        self.validated.push_back(Validated {
            addr,
            last_verified: now,
        });
    }

    /// Queues an event, dropping an older pending one of the same kind: only the
    /// latest nomination matters, and the queue stays at two entries at most.
    fn push_event(&mut self, event: IceEvent) {
        self.events
            .retain(|e| std::mem::discriminant(e) != std::mem::discriminant(&event));
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{StunMessage, StunWriter};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::net::{IpAddr, Ipv4Addr};

    fn creds(ufrag: &str, pwd: &str) -> IceCredentials {
        IceCredentials {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
        }
    }

    fn local() -> IceCredentials {
        creds("Lu9fRag1", "localPassword0123456789+")
    }

    fn remote() -> IceCredentials {
        creds("rEm0", "remotePassword0123456789")
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A Binding request as a browser sends it to us.
    fn browser_request(use_candidate: bool) -> Vec<u8> {
        browser_request_with("Lu9fRag1:rEm0", "localPassword0123456789+", use_candidate)
    }

    fn browser_request_with(user: &str, pwd: &str, use_candidate: bool) -> Vec<u8> {
        stun::binding_request(
            stun::random_transaction_id(&mut crate::testing::rng()),
            user,
            0x6e00_1eff,
            0x1234_5678_9abc_def0,
            use_candidate,
            pwd.as_bytes(),
        )
        .unwrap()
    }

    fn expect_error(response: &[u8], code: u16) -> StunMessage<'_> {
        let msg = stun::parse(response).unwrap();
        assert_eq!(msg.class, StunClass::ErrorResponse);
        assert_eq!(msg.error_code().map(|e| e.code), Some(code));
        assert!(msg.verify_fingerprint());
        msg
    }

    #[test]
    fn random_credentials_use_ice_chars() {
        let a = IceCredentials::random(&mut crate::testing::rng());
        let b = IceCredentials::random(&mut crate::testing::rng());
        assert_eq!(a.ufrag.len(), 8);
        assert_eq!(a.pwd.len(), 24);
        assert!(
            a.ufrag
                .bytes()
                .chain(a.pwd.bytes())
                .all(|c| ICE_CHARS.contains(&c))
        );
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(&a.pwd));
    }

    #[test]
    fn full_flow_answers_and_nominates() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:54321");
        let request = browser_request(true);
        assert!(ice.accepts(&request));

        let response = ice
            .handle_stun(t0, from, &request)
            .unwrap()
            .expect("answered");
        let req = stun::parse(&request).unwrap();
        let msg = stun::parse(&response).unwrap();
        assert_eq!(msg.class, StunClass::SuccessResponse);
        assert_eq!(msg.method, stun::METHOD_BINDING);
        assert_eq!(msg.transaction_id, req.transaction_id);
        assert_eq!(msg.xor_mapped_address(), Some(from));
        assert!(msg.verify_integrity(local().pwd.as_bytes()));
        assert!(!msg.verify_integrity(remote().pwd.as_bytes()));
        assert!(msg.verify_fingerprint());

        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(from)));
        assert_eq!(ice.poll_event(), None);
        assert_eq!(ice.nominated(), Some(from));
        assert!(ice.is_validated(from));
        assert!(!ice.is_validated(addr("198.51.100.20:54322")));
        assert_eq!(ice.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));

        // Same address nominated again: no new event.
        ice.handle_stun(t0, from, &browser_request(true)).unwrap();
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn ipv6_source_gets_its_mapped_address() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("[2001:db8::7]:40000");
        let response = ice
            .handle_stun(t0, from, &browser_request(false))
            .unwrap()
            .unwrap();
        let msg = stun::parse(&response).unwrap();
        assert_eq!(msg.xor_mapped_address(), Some(from));
        assert!(msg.verify_integrity(local().pwd.as_bytes()));
        assert!(ice.is_validated(from));
        assert_eq!(ice.nominated(), None);
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn wrong_password_gets_401_and_validates_nothing() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:54321");
        let request = browser_request_with("Lu9fRag1:rEm0", "not-the-password-at-all!", true);
        assert!(ice.accepts(&request), "routing only looks at the ufrag");
        let response = ice.handle_stun(t0, from, &request).unwrap().unwrap();
        let msg = expect_error(&response, 401);
        assert_eq!(msg.message_integrity(), None, "401 is not signed");
        assert!(!ice.is_validated(from));
        assert_eq!(ice.nominated(), None);
        assert_eq!(ice.poll_event(), None);
        assert_eq!(ice.poll_timeout(), None);
    }

    #[test]
    fn wrong_ufrag_is_not_accepted() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:54321");
        for user in [
            "Other123:rEm0",
            "Lu9fRag1",
            "Lu9fRag:rEm0",
            "Lu9fRag12:rEm0",
        ] {
            let request = browser_request_with(user, &local().pwd, true);
            assert!(!ice.accepts(&request), "{user}");
            let response = ice.handle_stun(t0, from, &request).unwrap().unwrap();
            expect_error(&response, 401);
        }
        // A different remote part is accepted: only our ufrag identifies us.
        let late = browser_request_with("Lu9fRag1:newRemote", &local().pwd, false);
        assert!(ice.accepts(&late));
        assert!(!ice.is_validated(from));
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn accepts_rejects_responses_and_garbage() {
        let ice = IceLite::new(local(), remote(), crate::testing::start());
        let response = stun::binding_success_response([1; 12], addr("192.0.2.1:1"), b"k").unwrap();
        assert!(!ice.accepts(&response));
        assert!(!ice.accepts(&[]));
        assert!(!ice.accepts(&[0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn requests_without_credentials_get_400() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:1000");
        let tid = stun::random_transaction_id(&mut crate::testing::rng());

        let no_integrity = StunWriter::new(StunClass::Request, stun::METHOD_BINDING, tid)
            .username("Lu9fRag1:rEm0")
            .use_candidate()
            .finish(None, true)
            .unwrap();
        let response = ice.handle_stun(t0, from, &no_integrity).unwrap().unwrap();
        let msg = expect_error(&response, 400);
        assert_eq!(msg.transaction_id, tid);

        let no_username = StunWriter::new(StunClass::Request, stun::METHOD_BINDING, tid)
            .use_candidate()
            .finish(Some(local().pwd.as_bytes()), true)
            .unwrap();
        let response = ice.handle_stun(t0, from, &no_username).unwrap().unwrap();
        expect_error(&response, 400);

        let other_method = StunWriter::new(StunClass::Request, 0x003, tid)
            .username("Lu9fRag1:rEm0")
            .finish(Some(local().pwd.as_bytes()), true)
            .unwrap();
        let response = ice.handle_stun(t0, from, &other_method).unwrap().unwrap();
        let msg = expect_error(&response, 400);
        assert_eq!(msg.method, 0x003);

        assert!(!ice.is_validated(from));
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn bad_fingerprint_responses_and_indications_get_nothing() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:1000");

        let mut request = browser_request(true);
        let last = request.len() - 1;
        request[last] ^= 1;
        assert_eq!(ice.handle_stun(t0, from, &request).unwrap(), None);

        let indication = StunWriter::new(StunClass::Indication, stun::METHOD_BINDING, [3; 12])
            .finish(None, true)
            .unwrap();
        assert_eq!(ice.handle_stun(t0, from, &indication).unwrap(), None);

        let response = stun::binding_success_response([4; 12], from, b"k").unwrap();
        assert_eq!(ice.handle_stun(t0, from, &response).unwrap(), None);
        assert_eq!(
            ice.handle_stun(t0, from, b"\x80\x60hello rtp").unwrap(),
            None
        );

        assert!(!ice.is_validated(from));
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn peer_claiming_controlled_gets_487() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:1000");
        let pwd = local().pwd;
        let request = StunWriter::new(
            StunClass::Request,
            stun::METHOD_BINDING,
            stun::random_transaction_id(&mut crate::testing::rng()),
        )
        .username("Lu9fRag1:rEm0")
        .priority(1)
        .ice_controlled(99)
        .use_candidate()
        .finish(Some(pwd.as_bytes()), true)
        .unwrap();
        let response = ice.handle_stun(t0, from, &request).unwrap().unwrap();
        let msg = expect_error(&response, 487);
        assert!(
            msg.verify_integrity(pwd.as_bytes()),
            "authenticated errors are signed"
        );
        assert!(!ice.is_validated(from));
        assert_eq!(ice.nominated(), None);
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn unknown_required_attribute_gets_420() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:1000");
        let pwd = local().pwd;
        let request = StunWriter::new(
            StunClass::Request,
            stun::METHOD_BINDING,
            stun::random_transaction_id(&mut crate::testing::rng()),
        )
        .username("Lu9fRag1:rEm0")
        .attribute(0x0042, &[1, 2, 3, 4])
        .use_candidate()
        .finish(Some(pwd.as_bytes()), true)
        .unwrap();
        let response = ice.handle_stun(t0, from, &request).unwrap().unwrap();
        let msg = expect_error(&response, 420);
        assert!(msg.verify_integrity(pwd.as_bytes()));
        // Header, then ERROR-CODE: 4-byte attribute header, 4-byte code and the
        // 17-byte "Unknown Attribute" padded to 20.
        let at = 20 + 4 + 4 + 20;
        assert_eq!(&response[at..at + 6], &[0x00, 0x0A, 0x00, 0x02, 0x00, 0x42]);
        assert!(!ice.is_validated(from));
        assert_eq!(ice.poll_event(), None);
    }

    #[test]
    fn nomination_moves_to_a_new_address() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let a = addr("198.51.100.20:1000");
        let b = addr("203.0.113.5:2000");
        let c = addr("203.0.113.6:3000");

        ice.handle_stun(t0, a, &browser_request(true)).unwrap();
        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(a)));

        // A check without USE-CANDIDATE validates but does not nominate.
        ice.handle_stun(t0, c, &browser_request(false)).unwrap();
        assert!(ice.is_validated(c));
        assert_eq!(ice.nominated(), Some(a));
        assert_eq!(ice.poll_event(), None);

        let t1 = t0 + Duration::from_secs(3);
        ice.handle_stun(t1, b, &browser_request(true)).unwrap();
        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(b)));
        assert_eq!(ice.poll_event(), None);
        assert_eq!(ice.nominated(), Some(b));
        assert!(ice.is_validated(a) && ice.is_validated(b));

        // Back to a: another event.
        ice.handle_stun(t1, a, &browser_request(true)).unwrap();
        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(a)));
    }

    #[test]
    fn unpolled_nominations_coalesce() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        for port in 1..=100u16 {
            let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port);
            ice.handle_stun(t0, from, &browser_request(true)).unwrap();
        }
        let last = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 100);
        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(last)));
        assert_eq!(ice.poll_event(), None);
        assert_eq!(ice.validated.len(), MAX_VALIDATED);
        assert!(ice.is_validated(last));
    }

    #[test]
    fn nominated_address_is_never_evicted() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let nominated = addr("198.51.100.1:9");
        ice.handle_stun(t0, nominated, &browser_request(true))
            .unwrap();
        for port in 1..=50u16 {
            let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port);
            ice.handle_stun(t0, from, &browser_request(false)).unwrap();
            assert!(ice.validated.len() <= MAX_VALIDATED);
        }
        assert!(ice.is_validated(nominated));
        assert_eq!(ice.nominated(), Some(nominated));
        // The oldest non-nominated ones were dropped, the newest kept.
        assert!(!ice.is_validated(addr("192.0.2.1:1")));
        assert!(ice.is_validated(addr("192.0.2.1:50")));
    }

    #[test]
    fn consent_expires_after_30s_of_silence_and_not_before() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:1000");
        ice.handle_stun(t0, from, &browser_request(true)).unwrap();
        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(from)));

        ice.handle_timeout(t0 + Duration::from_secs(29));
        assert_eq!(ice.poll_event(), None);
        assert_eq!(ice.nominated(), Some(from));

        // A consent check (no USE-CANDIDATE, as browsers send them) refreshes it.
        let t29 = t0 + Duration::from_secs(29);
        ice.handle_stun(t29, from, &browser_request(false)).unwrap();
        assert_eq!(ice.poll_timeout(), Some(t29 + CONSENT_TIMEOUT));

        // A failed check does not.
        let bad = browser_request_with("Lu9fRag1:rEm0", "wrong-password-xxxxxxxxx", false);
        let t39 = t29 + Duration::from_secs(10);
        ice.handle_stun(t39, from, &bad).unwrap();
        assert_eq!(ice.poll_timeout(), Some(t29 + CONSENT_TIMEOUT));

        ice.handle_timeout(t29 + CONSENT_TIMEOUT - Duration::from_millis(1));
        assert_eq!(ice.poll_event(), None);
        assert!(ice.is_validated(from));

        ice.handle_timeout(t29 + CONSENT_TIMEOUT);
        assert_eq!(ice.poll_event(), Some(IceEvent::ConsentExpired));
        assert_eq!(ice.poll_event(), None);
        assert_eq!(ice.nominated(), None);
        assert!(!ice.is_validated(from));
        assert_eq!(ice.poll_timeout(), None);

        // Once only.
        ice.handle_timeout(t29 + Duration::from_secs(120));
        assert_eq!(ice.poll_event(), None);

        // A new nomination brings it back.
        let later = t29 + Duration::from_secs(121);
        ice.handle_stun(later, from, &browser_request(true))
            .unwrap();
        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(from)));
        assert!(ice.is_validated(from));
    }

    #[test]
    fn late_request_after_missed_timeout_does_not_extend_expired_consent() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let from = addr("198.51.100.20:1000");
        ice.handle_stun(t0, from, &browser_request(true)).unwrap();
        ice.poll_event();
        // The owner never called handle_timeout; a check arrives at 31 s.
        ice.handle_stun(t0 + Duration::from_secs(31), from, &browser_request(false))
            .unwrap();
        assert_eq!(ice.poll_event(), Some(IceEvent::ConsentExpired));
        assert_eq!(ice.nominated(), None);
        assert!(
            ice.is_validated(from),
            "the new check validated the address again"
        );
    }

    #[test]
    fn time_does_not_go_backwards() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0 + Duration::from_secs(10));
        let from = addr("198.51.100.20:1000");
        ice.handle_stun(t0, from, &browser_request(true)).unwrap();
        assert_eq!(
            ice.poll_timeout(),
            Some(t0 + Duration::from_secs(10) + CONSENT_TIMEOUT)
        );
    }

    #[test]
    fn restart_switches_credentials_and_keeps_media_flowing() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let a = addr("198.51.100.20:1000");
        let c = addr("198.51.100.21:1000");
        ice.handle_stun(t0, a, &browser_request(true)).unwrap();
        ice.handle_stun(t0, c, &browser_request(false)).unwrap();
        ice.poll_event();

        // Late remote credentials only: nothing changes for inbound checks.
        ice.restart(local(), creds("newR", "newRemotePassword1234567"), t0);
        assert!(ice.is_validated(a) && ice.is_validated(c));
        assert_eq!(ice.remote_credentials().ufrag, "newR");

        let fresh = creds("N3wLocal", "aNewLocalPassword+/12345");
        ice.restart(fresh.clone(), creds("R2", "remotePassword2xxxxxxxxx"), t0);
        assert_eq!(ice.local_credentials(), &fresh);
        assert_eq!(ice.nominated(), Some(a));
        assert!(ice.is_validated(a));
        assert!(!ice.is_validated(c));

        // Old credentials are refused now.
        let old = browser_request(true);
        assert!(!ice.accepts(&old));
        let response = ice.handle_stun(t0, c, &old).unwrap().unwrap();
        expect_error(&response, 401);

        let new = browser_request_with("N3wLocal:R2", &fresh.pwd, true);
        assert!(ice.accepts(&new));
        let response = ice.handle_stun(t0, c, &new).unwrap().unwrap();
        let msg = stun::parse(&response).unwrap();
        assert!(msg.verify_integrity(fresh.pwd.as_bytes()));
        assert_eq!(ice.poll_event(), Some(IceEvent::Nominated(c)));
    }

    #[test]
    fn flood_of_random_packets_stays_bounded_and_never_nominates() {
        let t0 = crate::testing::start();
        let mut ice = IceLite::new(local(), remote(), t0);
        let mut rng = StdRng::seed_from_u64(8445);
        let mut answered = 0usize;
        for i in 0..10_000u32 {
            let from = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(rng.random::<u32>())),
                rng.random(),
            );
            let packet: Vec<u8> = match i % 4 {
                // Raw noise.
                0 => (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect(),
                // Requests for us, signed with a random key.
                1 => {
                    let key: [u8; 16] = rng.random();
                    StunWriter::new(StunClass::Request, stun::METHOD_BINDING, rng.random())
                        .username("Lu9fRag1:rEm0")
                        .use_candidate()
                        .ice_controlling(rng.random())
                        .finish(Some(&key), true)
                        .unwrap()
                }
                // A valid request with one byte changed among those MESSAGE-INTEGRITY
                // covers (all but the 8-byte FINGERPRINT). A change after it is
                // ignored by design: the rest is still a genuinely signed request.
                2 => {
                    let mut p = browser_request(true);
                    let at = rng.random_range(0..p.len() - 8);
                    let old = p[at];
                    p[at] = loop {
                        let b: u8 = rng.random();
                        if b != old {
                            break b;
                        }
                    };
                    p
                }
                // STUN-framed requests with random attribute bytes.
                _ => {
                    let body_len = 4 * rng.random_range(0..30usize);
                    let mut p = StunWriter::new(StunClass::Request, 1, rng.random())
                        .finish(None, false)
                        .unwrap();
                    p.extend((0..body_len).map(|_| rng.random::<u8>()));
                    p[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
                    p
                }
            };
            let now = t0 + Duration::from_millis(u64::from(i));
            let _ = ice.accepts(&packet);
            if let Some(response) = ice.handle_stun(now, from, &packet).unwrap() {
                answered += 1;
                let msg = stun::parse(&response).expect("our responses parse");
                assert_eq!(
                    msg.class,
                    StunClass::ErrorResponse,
                    "packet {i}: {packet:02x?}"
                );
                assert!(response.len() <= 128);
            }
            assert!(ice.validated.len() <= MAX_VALIDATED);
            assert!(ice.events.len() <= 2);
        }
        assert!(answered > 0);
        assert_eq!(ice.validated.len(), 0);
        assert_eq!(ice.nominated(), None);
        assert_eq!(ice.poll_event(), None);
        assert_eq!(ice.poll_timeout(), None);
    }
}
