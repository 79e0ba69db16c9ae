//! STUN message codec (RFC 5389 / RFC 8489) with the ICE attributes of RFC 8445.
//!
//! This module owns the wire format only: parsing a datagram into a borrowed
//! [`StunMessage`], verifying MESSAGE-INTEGRITY (HMAC-SHA1, short-term credentials)
//! and FINGERPRINT, and writing the few messages an ICE-lite server and its load
//! generator need. It must not keep any state between packets, decide whether a
//! request is acceptable (that is `ice`'s job), touch sockets or read clocks, and it
//! must never panic on network input: every malformed input becomes a [`StunError`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

mod parse;
mod write;

pub use self::parse::{parse, parse_header, username};
pub use self::write::{StunWriter, binding_request, binding_success_response, error_response};

/// Length of the fixed STUN header.
pub const HEADER_LEN: usize = 20;
/// The magic cookie every RFC 5389 message carries in bytes 4..8.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The Binding method, the only one ICE uses.
pub const METHOD_BINDING: u16 = 0x001;
/// XOR'ed into the CRC-32 of the message to form the FINGERPRINT value.
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// USERNAME attribute type.
pub const ATTR_USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY attribute type (HMAC-SHA1).
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE attribute type.
pub const ATTR_ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES attribute type (carried by 420 responses).
pub const ATTR_UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// XOR-MAPPED-ADDRESS attribute type.
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// PRIORITY attribute type (RFC 8445).
pub const ATTR_PRIORITY: u16 = 0x0024;
/// USE-CANDIDATE attribute type (RFC 8445).
pub const ATTR_USE_CANDIDATE: u16 = 0x0025;
/// SOFTWARE attribute type.
pub const ATTR_SOFTWARE: u16 = 0x8022;
/// FINGERPRINT attribute type.
pub const ATTR_FINGERPRINT: u16 = 0x8028;
/// ICE-CONTROLLED attribute type (RFC 8445).
pub const ATTR_ICE_CONTROLLED: u16 = 0x8029;
/// ICE-CONTROLLING attribute type (RFC 8445).
pub const ATTR_ICE_CONTROLLING: u16 = 0x802A;

/// Error code: the request was malformed.
pub const ERROR_BAD_REQUEST: u16 = 400;
/// Error code: the request did not carry valid credentials.
pub const ERROR_UNAUTHORIZED: u16 = 401;
/// Error code: the request carried comprehension-required attributes we do not know.
pub const ERROR_UNKNOWN_ATTRIBUTE: u16 = 420;
/// Error code: both agents claim the same ICE role.
pub const ERROR_ROLE_CONFLICT: u16 = 487;

/// Longest USERNAME value allowed by RFC 8489 §14.3.
const MAX_USERNAME_LEN: usize = 513;
/// Longest ERROR-CODE reason phrase allowed by RFC 8489 §14.8.
const MAX_REASON_LEN: usize = 763;
/// How many unknown comprehension-required attribute types a parsed message records.
pub const MAX_UNKNOWN_ATTRIBUTES: usize = 8;
/// Size of a MESSAGE-INTEGRITY attribute including its 4-byte header.
const INTEGRITY_ATTR_LEN: usize = 4 + 20;
/// Size of a FINGERPRINT attribute including its 4-byte header.
const FINGERPRINT_ATTR_LEN: usize = 4 + 4;

/// The class of a STUN message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StunClass {
    /// A request, which expects a response.
    Request,
    /// An indication, which gets no response.
    Indication,
    /// A success response.
    SuccessResponse,
    /// An error response, carrying ERROR-CODE.
    ErrorResponse,
}

impl StunClass {
    fn bits(self) -> u16 {
        match self {
            Self::Request => 0b00,
            Self::Indication => 0b01,
            Self::SuccessResponse => 0b10,
            Self::ErrorResponse => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => Self::Request,
            0b01 => Self::Indication,
            0b10 => Self::SuccessResponse,
            _ => Self::ErrorResponse,
        }
    }
}

/// Why a datagram is not an acceptable STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than the 20-byte header.
    #[error("datagram of {len} bytes is shorter than a STUN header")]
    TooShort {
        /// Length of the datagram.
        len: usize,
    },
    /// The two most significant bits of the message type are not zero.
    #[error("leading bits of the message type are not zero")]
    NotStun,
    /// The magic cookie is missing (e.g. an RFC 3489 message or another protocol).
    #[error("bad magic cookie {0:#010x}")]
    BadMagicCookie(u32),
    /// The header length is not a multiple of 4 or does not match the datagram.
    #[error("header announces {declared} attribute bytes but {actual} follow the header")]
    BadLength {
        /// Length announced in the header.
        declared: usize,
        /// Bytes actually following the header.
        actual: usize,
    },
    /// An attribute header or value runs past the end of the message.
    #[error("attribute at offset {offset} runs past the end of the message")]
    Truncated {
        /// Offset of the attribute header in the datagram.
        offset: usize,
    },
    /// A known attribute has a malformed value.
    #[error("malformed attribute {attr:#06x}: {reason}")]
    BadAttribute {
        /// Attribute type.
        attr: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// FINGERPRINT is not the last attribute.
    #[error("attribute {attr:#06x} follows FINGERPRINT")]
    AttributeAfterFingerprint {
        /// Type of the attribute found after FINGERPRINT.
        attr: u16,
    },
}

/// Why a STUN message could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StunBuildError {
    /// An attribute value or the whole message exceeds the 16-bit length fields.
    #[error("STUN message or attribute too long")]
    TooLong,
    /// The error code is outside 300..=699.
    #[error("error code {0} is outside 300..=699")]
    BadErrorCode(u16),
    /// The USERNAME is longer than 513 bytes.
    #[error("username longer than {MAX_USERNAME_LEN} bytes")]
    UsernameTooLong,
    /// OpenSSL failed to compute HMAC-SHA1.
    #[error("HMAC-SHA1 failed: {0}")]
    Crypto(#[from] ErrorStack),
}

/// The fixed 20-byte header of a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StunHeader {
    /// Message class.
    pub class: StunClass,
    /// Message method (12 bits; [`METHOD_BINDING`] for ICE).
    pub method: u16,
    /// Length of the attribute section, as announced.
    pub length: usize,
    /// Transaction ID.
    pub transaction_id: [u8; 12],
}

/// The ERROR-CODE attribute of an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// Numeric code, 300..=699 (e.g. 401).
    pub code: u16,
    /// Reason phrase.
    pub reason: &'a str,
}

/// A parsed STUN message borrowing the datagram it came from.
#[derive(Debug, Clone)]
pub struct StunMessage<'a> {
    /// Message class.
    pub class: StunClass,
    /// Message method ([`METHOD_BINDING`] = 0x001).
    pub method: u16,
    /// Transaction ID.
    pub transaction_id: [u8; 12],
    raw: &'a [u8],
    username: Option<&'a str>,
    /// Offset of the MESSAGE-INTEGRITY attribute header in `raw`.
    integrity_offset: Option<usize>,
    /// Offset of the FINGERPRINT attribute header in `raw`, and its value.
    fingerprint: Option<(usize, u32)>,
    xor_mapped_address: Option<SocketAddr>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    error_code: Option<ErrorCode<'a>>,
    unknown: [u16; MAX_UNKNOWN_ATTRIBUTES],
    unknown_len: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(s))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

fn be64(b: &[u8]) -> Option<u64> {
    let s: [u8; 8] = b.try_into().ok()?;
    Some(u64::from_be_bytes(s))
}

/// Rounds an attribute value length up to the 4-byte boundary.
fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Decodes the 14-bit message type into (class, method).
fn decode_type(t: u16) -> (StunClass, u16) {
    let class = ((t >> 4) & 0b01) | ((t >> 7) & 0b10);
    let method = (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2);
    (StunClass::from_bits(class), method)
}

/// Encodes (class, method) into the 14-bit message type; `method` is cut to 12 bits.
fn encode_type(class: StunClass, method: u16) -> u16 {
    let m = method & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
}

fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Result<[u8; 20], ErrorStack> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha1(), &pkey)?;
    for part in parts {
        signer.update(part)?;
    }
    let mut mac = [0u8; 20];
    let written = signer.sign(&mut mac)?;
    if written != mac.len() {
        return Err(ErrorStack::get());
    }
    Ok(mac)
}

/// A random 96-bit transaction ID drawn from `rng`.
pub fn random_transaction_id(rng: &mut impl rand::Rng) -> [u8; 12] {
    rng.random()
}

/// The conventional reason phrase for an error code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        420 => "Unknown Attribute",
        487 => "Role Conflict",
        500 => "Server Error",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const TID: [u8; 12] = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    /// RFC 5769 §2.1 sample request.
    const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    /// RFC 5769 §2.2 sample IPv4 response.
    const RFC5769_RESPONSE_V4: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 §2.3 sample IPv6 response.
    const RFC5769_RESPONSE_V6: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];

    #[test]
    fn rfc5769_request_parses_and_verifies() {
        let msg = parse(&RFC5769_REQUEST).expect("parses");
        assert_eq!(msg.class, StunClass::Request);
        assert_eq!(msg.method, METHOD_BINDING);
        assert_eq!(msg.transaction_id, TID);
        assert_eq!(msg.username(), Some("evtj:h6vY"));
        assert_eq!(msg.priority(), Some(0x6e00_01ff));
        assert_eq!(msg.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
        assert_eq!(msg.ice_controlling(), None);
        assert!(!msg.use_candidate());
        assert_eq!(msg.message_integrity_offset(), Some(76));
        assert_eq!(msg.fingerprint(), Some(0xe57a_3bcf));
        assert!(msg.unknown_comprehension_required().is_empty());
        assert!(msg.verify_integrity(PASSWORD));
        assert!(msg.verify_fingerprint());
        assert!(!msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBT"));
        assert_eq!(username(&RFC5769_REQUEST), Some("evtj:h6vY"));
    }

    #[test]
    fn rfc5769_ipv4_response_parses_and_verifies() {
        let msg = parse(&RFC5769_RESPONSE_V4).expect("parses");
        assert_eq!(msg.class, StunClass::SuccessResponse);
        assert_eq!(msg.method, METHOD_BINDING);
        assert_eq!(msg.transaction_id, TID);
        assert_eq!(
            msg.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert!(msg.verify_integrity(PASSWORD));
        assert!(msg.verify_fingerprint());
        assert_eq!(username(&RFC5769_RESPONSE_V4), None);
    }

    #[test]
    fn rfc5769_ipv6_response_parses_and_verifies() {
        let msg = parse(&RFC5769_RESPONSE_V6).expect("parses");
        assert_eq!(msg.class, StunClass::SuccessResponse);
        assert_eq!(
            msg.xor_mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert!(msg.verify_integrity(PASSWORD));
        assert!(msg.verify_fingerprint());
    }

    #[test]
    fn message_type_round_trips() {
        for class in [
            StunClass::Request,
            StunClass::Indication,
            StunClass::SuccessResponse,
            StunClass::ErrorResponse,
        ] {
            for method in [0x001, 0x002, 0x0ab, 0xfff] {
                assert_eq!(decode_type(encode_type(class, method)), (class, method));
            }
        }
        assert_eq!(
            encode_type(StunClass::SuccessResponse, METHOD_BINDING),
            0x0101
        );
        assert_eq!(
            encode_type(StunClass::ErrorResponse, METHOD_BINDING),
            0x0111
        );
        assert_eq!(encode_type(StunClass::Indication, METHOD_BINDING), 0x0011);
    }

    #[test]
    fn builder_success_response_round_trips() {
        for mapped in [
            "203.0.113.7:50000",
            "[2001:db8::42]:3478",
            "[::ffff:198.51.100.9]:6000",
        ] {
            let mapped: SocketAddr = mapped.parse().unwrap();
            let tid = random_transaction_id(&mut crate::testing::rng());
            let out = binding_success_response(tid, mapped, b"secret-pwd").unwrap();
            let msg = parse(&out).expect("parses");
            assert_eq!(msg.class, StunClass::SuccessResponse);
            assert_eq!(msg.method, METHOD_BINDING);
            assert_eq!(msg.transaction_id, tid);
            let expected = match mapped.ip() {
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => SocketAddr::new(IpAddr::V4(v4), mapped.port()),
                    None => mapped,
                },
                IpAddr::V4(_) => mapped,
            };
            assert_eq!(msg.xor_mapped_address(), Some(expected));
            assert!(msg.verify_integrity(b"secret-pwd"));
            assert!(!msg.verify_integrity(b"other"));
            assert!(msg.verify_fingerprint());
        }
    }

    #[test]
    fn builder_request_round_trips() {
        let tid = random_transaction_id(&mut crate::testing::rng());
        let out = binding_request(tid, "abcd:wxyz1", 0x7e7f_00ff, 42, true, PASSWORD).unwrap();
        assert_eq!(out.len() % 4, 0);
        let msg = parse(&out).expect("parses");
        assert_eq!(msg.class, StunClass::Request);
        assert_eq!(msg.transaction_id, tid);
        assert_eq!(msg.username(), Some("abcd:wxyz1"));
        assert_eq!(msg.priority(), Some(0x7e7f_00ff));
        assert_eq!(msg.ice_controlling(), Some(42));
        assert!(msg.use_candidate());
        assert!(msg.verify_integrity(PASSWORD));
        assert!(msg.verify_fingerprint());
        assert_eq!(username(&out), Some("abcd:wxyz1"));

        let plain = binding_request(tid, "a:b", 1, 2, false, PASSWORD).unwrap();
        assert!(!parse(&plain).unwrap().use_candidate());
    }

    #[test]
    fn builder_error_responses() {
        for code in [400, 401, 487] {
            let out = error_response(METHOD_BINDING, TID, code, Some(PASSWORD)).unwrap();
            let msg = parse(&out).unwrap();
            assert_eq!(msg.class, StunClass::ErrorResponse);
            let ec = msg.error_code().unwrap();
            assert_eq!(ec.code, code);
            assert_eq!(ec.reason, reason_phrase(code));
            assert!(msg.verify_integrity(PASSWORD));
            assert!(msg.verify_fingerprint());
        }
        let unsigned = error_response(METHOD_BINDING, TID, 401, None).unwrap();
        let msg = parse(&unsigned).unwrap();
        assert_eq!(msg.message_integrity(), None);
        assert!(!msg.verify_integrity(PASSWORD));
        assert!(msg.verify_fingerprint());
        assert!(matches!(
            error_response(METHOD_BINDING, TID, 200, None),
            Err(StunBuildError::BadErrorCode(200))
        ));
        let long = "x".repeat(600);
        assert!(matches!(
            binding_request(TID, &long, 1, 1, false, PASSWORD),
            Err(StunBuildError::UsernameTooLong)
        ));
    }

    #[test]
    fn integrity_without_fingerprint_verifies() {
        let out = StunWriter::new(StunClass::Request, METHOD_BINDING, TID)
            .username("u:v")
            .finish(Some(PASSWORD), false)
            .unwrap();
        let msg = parse(&out).unwrap();
        assert_eq!(msg.fingerprint(), None);
        assert!(!msg.verify_fingerprint());
        assert!(msg.verify_integrity(PASSWORD));
    }

    #[test]
    fn corrupted_byte_fails_integrity() {
        // Flip every byte that the HMAC covers but the parser does not interpret
        // structurally: the SOFTWARE value and the USERNAME/PRIORITY values.
        for at in (24..40).chain(44..48).chain(64..73) {
            let mut buf = RFC5769_REQUEST;
            buf[at] ^= 0x01;
            let msg = parse(&buf).expect("still well-formed");
            assert!(!msg.verify_integrity(PASSWORD), "byte {at}");
            assert!(!msg.verify_fingerprint(), "byte {at}");
        }
        // A corrupted HMAC value itself.
        let mut buf = RFC5769_REQUEST;
        buf[80] ^= 0x80;
        assert!(!parse(&buf).unwrap().verify_integrity(PASSWORD));
        // A corrupted transaction ID.
        let mut buf = RFC5769_REQUEST;
        buf[10] ^= 0xff;
        assert!(!parse(&buf).unwrap().verify_integrity(PASSWORD));
    }

    #[test]
    fn header_errors() {
        assert_eq!(parse(&[]).unwrap_err(), StunError::TooShort { len: 0 });
        assert_eq!(
            parse(&RFC5769_REQUEST[..19]).unwrap_err(),
            StunError::TooShort { len: 19 }
        );
        let mut buf = RFC5769_REQUEST;
        buf[0] |= 0x80;
        assert_eq!(parse(&buf).unwrap_err(), StunError::NotStun);
        let mut buf = RFC5769_REQUEST;
        buf[4] = 0;
        assert!(matches!(parse(&buf), Err(StunError::BadMagicCookie(_))));
        assert!(matches!(
            parse(&RFC5769_REQUEST[..104]),
            Err(StunError::BadLength { .. })
        ));
        let mut buf = RFC5769_REQUEST;
        buf[3] = 0x57;
        assert!(matches!(parse(&buf), Err(StunError::BadLength { .. })));
    }

    #[test]
    fn attribute_errors() {
        // An attribute whose length runs past the end.
        let mut buf = RFC5769_REQUEST;
        buf[22..24].copy_from_slice(&0x0100u16.to_be_bytes());
        assert!(matches!(parse(&buf), Err(StunError::Truncated { .. })));
        // A PRIORITY of the wrong size.
        let bad = StunWriter::new(StunClass::Request, METHOD_BINDING, TID)
            .attribute(ATTR_PRIORITY, &[1, 2])
            .finish(None, false)
            .unwrap();
        assert!(matches!(
            parse(&bad),
            Err(StunError::BadAttribute {
                attr: ATTR_PRIORITY,
                ..
            })
        ));
        // Something after FINGERPRINT.
        let mut fp = StunWriter::new(StunClass::Request, METHOD_BINDING, TID)
            .finish(None, true)
            .unwrap();
        fp.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
        fp[2..4].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(
            parse(&fp).unwrap_err(),
            StunError::AttributeAfterFingerprint {
                attr: ATTR_USE_CANDIDATE
            }
        );
    }

    #[test]
    fn unknown_attributes_are_sorted_by_comprehension() {
        let out = StunWriter::new(StunClass::Request, METHOD_BINDING, TID)
            .attribute(0xC057, &[0, 1, 0, 10]) // optional: ignored
            .attribute(0x0077, b"abc") // required: recorded
            .attribute(0x0077, b"abc") // recorded once
            .username("a:b")
            .finish(Some(PASSWORD), true)
            .unwrap();
        let msg = parse(&out).unwrap();
        assert_eq!(msg.unknown_comprehension_required(), &[0x0077]);
        assert_eq!(msg.username(), Some("a:b"));
        assert!(msg.verify_integrity(PASSWORD));
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        // USE-CANDIDATE appended after MESSAGE-INTEGRITY is not covered by the HMAC
        // and must not be reported.
        let signed = StunWriter::new(StunClass::Request, METHOD_BINDING, TID)
            .username("a:b")
            .finish(Some(PASSWORD), false)
            .unwrap();
        let mut buf = signed.clone();
        buf.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
        let len = (buf.len() - HEADER_LEN) as u16;
        buf[2..4].copy_from_slice(&len.to_be_bytes());
        let msg = parse(&buf).unwrap();
        assert!(!msg.use_candidate());
        assert!(msg.verify_integrity(PASSWORD));
    }

    fn exercise(buf: &[u8]) {
        let _ = username(buf);
        let _ = parse_header(buf);
        if let Ok(msg) = parse(buf) {
            let _ = msg.verify_integrity(PASSWORD);
            let _ = msg.verify_fingerprint();
            let _ = (msg.username(), msg.message_integrity(), msg.error_code());
            let _ = (
                msg.xor_mapped_address(),
                msg.priority(),
                msg.use_candidate(),
            );
            let _ = msg.unknown_comprehension_required();
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x5354_554e);
        let mut parsed = 0usize;
        for i in 0..100_000 {
            let len = rng.random_range(0..160usize);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Half the time give it a plausible header so the attribute walk runs.
            if i % 2 == 0 && len >= HEADER_LEN {
                buf[0] &= 0x01;
                buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                let attrs = (len - HEADER_LEN) & !3;
                buf.truncate(HEADER_LEN + attrs);
                buf[2..4].copy_from_slice(&(attrs as u16).to_be_bytes());
                // Make attribute types hit the ones we parse now and then.
                if attrs >= 4 {
                    let known = [
                        ATTR_USERNAME,
                        ATTR_MESSAGE_INTEGRITY,
                        ATTR_XOR_MAPPED_ADDRESS,
                        ATTR_ERROR_CODE,
                        ATTR_FINGERPRINT,
                        ATTR_PRIORITY,
                    ];
                    let t = known[rng.random_range(0..known.len())];
                    buf[20..22].copy_from_slice(&t.to_be_bytes());
                    buf[22] = 0;
                }
            }
            parsed += usize::from(parse(&buf).is_ok());
            exercise(&buf);
        }
        assert!(
            parsed > 0,
            "the generator should reach the attribute parser"
        );
    }

    #[test]
    fn mutated_valid_messages_never_panic() {
        let mut rng = StdRng::seed_from_u64(7675);
        let seeds: [&[u8]; 3] = [&RFC5769_REQUEST, &RFC5769_RESPONSE_V4, &RFC5769_RESPONSE_V6];
        for i in 0..100_000 {
            let seed = seeds[i % seeds.len()];
            let mut buf = seed.to_vec();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..3) {
                    0 => {
                        let at = rng.random_range(0..buf.len());
                        buf[at] = rng.random();
                    }
                    1 => {
                        let at = rng.random_range(0..buf.len());
                        buf.truncate(at);
                    }
                    _ => {
                        let extra = rng.random_range(0..8);
                        buf.extend((0..extra).map(|_| rng.random::<u8>()));
                    }
                }
                if buf.is_empty() {
                    break;
                }
            }
            // The HMAC covers every byte before MESSAGE-INTEGRITY's value and must
            // equal that value; the CRC covers everything before FINGERPRINT's value
            // and must equal it; the header length pins the size. So nothing altered
            // may pass both checks.
            if let Ok(msg) = parse(&buf)
                && msg.verify_integrity(PASSWORD)
                && msg.verify_fingerprint()
            {
                assert_eq!(buf, seed, "mutation {i} still verifies");
            }
            exercise(&buf);
        }
    }
}
