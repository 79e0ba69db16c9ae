//! Writing STUN: [`StunWriter`] and the few messages an ICE-lite server and its
//! load generator send (binding requests, success and error responses).

use super::*;

/// Writes one STUN message. Attributes are appended in call order; MESSAGE-INTEGRITY
/// and FINGERPRINT are added by [`finish`](Self::finish), which puts them last as the
/// RFC requires.
#[derive(Debug, Clone)]
pub struct StunWriter {
    buf: Vec<u8>,
    error: Option<StunBuildErrorKind>,
}

/// Deferred, copyable form of the errors an attribute setter can hit.
#[derive(Debug, Clone, Copy)]
enum StunBuildErrorKind {
    TooLong,
    BadErrorCode(u16),
    UsernameTooLong,
}

impl StunWriter {
    /// Starts a message; `method` is cut to its 12 bits.
    pub fn new(class: StunClass, method: u16, transaction_id: [u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&encode_type(class, method).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&transaction_id);
        Self { buf, error: None }
    }

    /// Appends an arbitrary attribute, padding it to 4 bytes with zeros.
    pub fn attribute(mut self, attr: u16, value: &[u8]) -> Self {
        let Ok(len) = u16::try_from(value.len()) else {
            self.error.get_or_insert(StunBuildErrorKind::TooLong);
            return self;
        };
        self.buf.extend_from_slice(&attr.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.buf
            .resize(self.buf.len() + padded(value.len()) - value.len(), 0);
        self
    }

    /// USERNAME (at most 513 bytes).
    pub fn username(mut self, username: &str) -> Self {
        if username.len() > MAX_USERNAME_LEN {
            self.error
                .get_or_insert(StunBuildErrorKind::UsernameTooLong);
            return self;
        }
        self.attribute(ATTR_USERNAME, username.as_bytes())
    }

    /// XOR-MAPPED-ADDRESS. An IPv4-mapped IPv6 address (from a dual-stack socket) is
    /// written as the IPv4 address the peer actually used.
    pub fn xor_mapped_address(self, addr: SocketAddr) -> Self {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let mut value = Vec::with_capacity(20);
        match ip {
            IpAddr::V4(v4) => {
                value.extend_from_slice(&[0, 0x01]);
                value.extend_from_slice(&port.to_be_bytes());
                value.extend_from_slice(&(u32::from(v4) ^ MAGIC_COOKIE).to_be_bytes());
            }
            IpAddr::V6(v6) => {
                value.extend_from_slice(&[0, 0x02]);
                value.extend_from_slice(&port.to_be_bytes());
                // The header holds the cookie at 4..8 and the transaction ID at 8..20,
                // exactly the 16-byte XOR mask of RFC 8489 §14.2.
                let mask = self.buf.get(4..HEADER_LEN).unwrap_or(&[]);
                value.extend(v6.octets().iter().zip(mask).map(|(o, m)| o ^ m));
            }
        }
        self.attribute(ATTR_XOR_MAPPED_ADDRESS, &value)
    }

    /// PRIORITY.
    pub fn priority(self, priority: u32) -> Self {
        self.attribute(ATTR_PRIORITY, &priority.to_be_bytes())
    }

    /// USE-CANDIDATE.
    pub fn use_candidate(self) -> Self {
        self.attribute(ATTR_USE_CANDIDATE, &[])
    }

    /// ICE-CONTROLLING with its tie-breaker.
    pub fn ice_controlling(self, tie_breaker: u64) -> Self {
        self.attribute(ATTR_ICE_CONTROLLING, &tie_breaker.to_be_bytes())
    }

    /// ICE-CONTROLLED with its tie-breaker.
    pub fn ice_controlled(self, tie_breaker: u64) -> Self {
        self.attribute(ATTR_ICE_CONTROLLED, &tie_breaker.to_be_bytes())
    }

    /// ERROR-CODE (`code` in 300..=699).
    pub fn error_code(mut self, code: u16, reason: &str) -> Self {
        if !(300..=699).contains(&code) {
            self.error
                .get_or_insert(StunBuildErrorKind::BadErrorCode(code));
            return self;
        }
        // Fits in u8: code / 100 <= 6 and code % 100 <= 99.
        let mut value = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        value.extend_from_slice(reason.as_bytes());
        self.attribute(ATTR_ERROR_CODE, &value)
    }

    /// UNKNOWN-ATTRIBUTES listing the given types.
    pub fn unknown_attributes(self, attrs: &[u16]) -> Self {
        let value: Vec<u8> = attrs.iter().flat_map(|a| a.to_be_bytes()).collect();
        self.attribute(ATTR_UNKNOWN_ATTRIBUTES, &value)
    }

    fn set_length(&mut self, attributes_len: usize) -> Result<(), StunBuildError> {
        let len = u16::try_from(attributes_len).map_err(|_| StunBuildError::TooLong)?;
        // `new` wrote the 20-byte header, so bytes 2..4 exist.
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Appends MESSAGE-INTEGRITY (when `integrity_key` is given) and FINGERPRINT (when
    /// `fingerprint`), fixes the header length and returns the datagram.
    pub fn finish(
        mut self,
        integrity_key: Option<&[u8]>,
        fingerprint: bool,
    ) -> Result<Vec<u8>, StunBuildError> {
        if let Some(e) = self.error {
            return Err(match e {
                StunBuildErrorKind::TooLong => StunBuildError::TooLong,
                StunBuildErrorKind::BadErrorCode(c) => StunBuildError::BadErrorCode(c),
                StunBuildErrorKind::UsernameTooLong => StunBuildError::UsernameTooLong,
            });
        }
        if let Some(key) = integrity_key {
            let covered = self.buf.len() + INTEGRITY_ATTR_LEN - HEADER_LEN;
            self.set_length(covered)?;
            let mac = hmac_sha1(key, &[&self.buf])?;
            self = self.attribute(ATTR_MESSAGE_INTEGRITY, &mac);
        }
        if fingerprint {
            let covered = self.buf.len() + FINGERPRINT_ATTR_LEN - HEADER_LEN;
            self.set_length(covered)?;
            let crc = crc32fast::hash(&self.buf) ^ FINGERPRINT_XOR;
            self = self.attribute(ATTR_FINGERPRINT, &crc.to_be_bytes());
        }
        let total = self.buf.len() - HEADER_LEN;
        self.set_length(total)?;
        Ok(self.buf)
    }
}

/// A Binding success response carrying `mapped` as XOR-MAPPED-ADDRESS, signed with
/// `key` and fingerprinted.
pub fn binding_success_response(
    transaction_id: [u8; 12],
    mapped: SocketAddr,
    key: &[u8],
) -> Result<Vec<u8>, StunBuildError> {
    StunWriter::new(StunClass::SuccessResponse, METHOD_BINDING, transaction_id)
        .xor_mapped_address(mapped)
        .finish(Some(key), true)
}

/// An error response with ERROR-CODE `code` and its usual reason phrase, signed when
/// `key` is given (the request was authenticated; never for 400/401), fingerprinted.
pub fn error_response(
    method: u16,
    transaction_id: [u8; 12],
    code: u16,
    key: Option<&[u8]>,
) -> Result<Vec<u8>, StunBuildError> {
    StunWriter::new(StunClass::ErrorResponse, method, transaction_id)
        .error_code(code, reason_phrase(code))
        .finish(key, true)
}

/// A Binding request as a controlling ICE agent sends it: USERNAME, PRIORITY,
/// ICE-CONTROLLING, optionally USE-CANDIDATE, MESSAGE-INTEGRITY with `key` (the
/// remote password) and FINGERPRINT.
pub fn binding_request(
    transaction_id: [u8; 12],
    username: &str,
    priority: u32,
    tie_breaker: u64,
    use_candidate: bool,
    key: &[u8],
) -> Result<Vec<u8>, StunBuildError> {
    let mut w = StunWriter::new(StunClass::Request, METHOD_BINDING, transaction_id)
        .username(username)
        .priority(priority)
        .ice_controlling(tie_breaker);
    if use_candidate {
        w = w.use_candidate();
    }
    w.finish(Some(key), true)
}
