//! DTLS certificates and their SDP fingerprints (RFC 8122 `a=fingerprint:`).
//!
//! Owns generating the server's self-signed ECDSA P-256 certificate, hashing
//! certificates into fingerprints, and parsing/formatting the SDP form of a fingerprint.
//! It does not run the DTLS handshake or decide whether a peer is trusted (see
//! `crate::dtls`), and it never prints or exposes the private key.

use std::fmt;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::{X509, X509NameBuilder, X509Ref};

/// Common name of the generated certificates.
const COMMON_NAME: &str = "cascade";
/// How long a generated certificate is valid, counted from its issue time.
const VALIDITY_DAYS: i64 = 30;
/// How far in the past a generated certificate's validity starts, to tolerate peers
/// whose clocks are behind.
const BACKDATE_SECS: i64 = 24 * 60 * 60;
/// Bits of the random serial number (positive, fits the 20-octet limit of RFC 5280).
const SERIAL_BITS: i32 = 64;

/// Hash functions of RFC 8122 fingerprints that Cascade understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FingerprintAlgorithm {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl FingerprintAlgorithm {
    /// The SDP name (`sha-256`, ...), as written in `a=fingerprint:`.
    pub const fn sdp_name(self) -> &'static str {
        match self {
            FingerprintAlgorithm::Sha1 => "sha-1",
            FingerprintAlgorithm::Sha224 => "sha-224",
            FingerprintAlgorithm::Sha256 => "sha-256",
            FingerprintAlgorithm::Sha384 => "sha-384",
            FingerprintAlgorithm::Sha512 => "sha-512",
        }
    }

    /// Looks an algorithm up by its SDP name; hash names are case-insensitive
    /// (RFC 8122 §5).
    pub fn from_sdp_name(name: &str) -> Option<Self> {
        [
            FingerprintAlgorithm::Sha1,
            FingerprintAlgorithm::Sha224,
            FingerprintAlgorithm::Sha256,
            FingerprintAlgorithm::Sha384,
            FingerprintAlgorithm::Sha512,
        ]
        .into_iter()
        .find(|a| a.sdp_name().eq_ignore_ascii_case(name))
    }

    /// Length of the digest in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            FingerprintAlgorithm::Sha1 => 20,
            FingerprintAlgorithm::Sha224 => 28,
            FingerprintAlgorithm::Sha256 => 32,
            FingerprintAlgorithm::Sha384 => 48,
            FingerprintAlgorithm::Sha512 => 64,
        }
    }

    /// The OpenSSL digest computing this hash.
    pub(crate) fn message_digest(self) -> MessageDigest {
        match self {
            FingerprintAlgorithm::Sha1 => MessageDigest::sha1(),
            FingerprintAlgorithm::Sha224 => MessageDigest::sha224(),
            FingerprintAlgorithm::Sha256 => MessageDigest::sha256(),
            FingerprintAlgorithm::Sha384 => MessageDigest::sha384(),
            FingerprintAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }
}

impl fmt::Display for FingerprintAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdp_name())
    }
}

/// Why an `a=fingerprint:` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// The value is not `<hash-func> <fingerprint>`.
    #[error("expected \"<hash-func> <fingerprint>\"")]
    Malformed,
    /// The hash function is not one of sha-1, sha-224, sha-256, sha-384, sha-512.
    #[error("unsupported fingerprint hash function {0:?}")]
    UnknownAlgorithm(String),
    /// The fingerprint is not colon-separated pairs of hex digits.
    #[error("fingerprint is not colon-separated hex octets")]
    InvalidHex,
    /// The fingerprint does not have the digest length of its hash function.
    #[error("fingerprint has {actual} octets, {expected} expected for the hash function")]
    WrongLength { expected: usize, actual: usize },
}

/// A certificate fingerprint: a hash function and the digest of the DER certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub algorithm: FingerprintAlgorithm,
    pub bytes: Vec<u8>,
}

impl Fingerprint {
    /// Parses an SDP `a=fingerprint:` value such as "sha-256 AB:CD:...".
    ///
    /// The hash name is case-insensitive; hex digits are accepted in either case.
    /// Surrounding whitespace is ignored.
    pub fn parse_sdp(value: &str) -> Result<Self, FingerprintError> {
        let mut fields = value.split_ascii_whitespace();
        let (Some(name), Some(hex), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(FingerprintError::Malformed);
        };
        let algorithm = FingerprintAlgorithm::from_sdp_name(name)
            .ok_or_else(|| FingerprintError::UnknownAlgorithm(name.to_owned()))?;
        let bytes = hex
            .split(':')
            .map(|octet| {
                // `hex::decode` would also accept a longer even-length group; RFC 8122
                // asks for exactly two digits per octet.
                if octet.len() != 2 {
                    return Err(FingerprintError::InvalidHex);
                }
                let mut out = [0u8; 1];
                hex::decode_to_slice(octet, &mut out).map_err(|_| FingerprintError::InvalidHex)?;
                Ok(out[0])
            })
            .collect::<Result<Vec<u8>, _>>()?;
        if bytes.len() != algorithm.digest_len() {
            return Err(FingerprintError::WrongLength {
                expected: algorithm.digest_len(),
                actual: bytes.len(),
            });
        }
        Ok(Self { algorithm, bytes })
    }

    /// Formats the SDP value: "sha-256 AB:CD:..." (upper-case hex, colon separated).
    pub fn to_sdp(&self) -> String {
        let mut s =
            String::with_capacity(self.algorithm.sdp_name().len() + 1 + self.bytes.len() * 3);
        s.push_str(self.algorithm.sdp_name());
        s.push(' ');
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push_str(&hex::encode_upper([*b]));
        }
        s
    }

    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(algorithm: FingerprintAlgorithm, der: &[u8]) -> Result<Self, CertError> {
        let digest = openssl::hash::hash(algorithm.message_digest(), der)?;
        Ok(Self {
            algorithm,
            bytes: digest.to_vec(),
        })
    }

    /// The fingerprint of a certificate.
    pub fn of_x509(algorithm: FingerprintAlgorithm, cert: &X509Ref) -> Result<Self, CertError> {
        let digest = cert.digest(algorithm.message_digest())?;
        Ok(Self {
            algorithm,
            bytes: digest.to_vec(),
        })
    }

    /// Whether `cert` hashes to this fingerprint under this fingerprint's algorithm.
    pub fn matches(&self, cert: &X509Ref) -> bool {
        cert.digest(self.algorithm.message_digest())
            .is_ok_and(|d| *d == *self.bytes)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sdp())
    }
}

/// Why a certificate could not be generated or hashed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CertError {
    /// OpenSSL reported an error.
    #[error("crypto library error: {0}")]
    Crypto(#[from] ErrorStack),
    /// The system clock cannot express the validity period.
    #[error("system clock out of range for a certificate validity period")]
    Clock,
}

/// The local DTLS identity: a self-signed certificate, its private key and its
/// sha-256 fingerprint (the one put in SDP).
#[derive(Clone)]
pub struct DtlsCertificate {
    x509: X509,
    pkey: PKey<Private>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for DtlsCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private key is never printed.
        f.debug_struct("DtlsCertificate")
            .field("fingerprint", &self.fingerprint.to_sdp())
            .finish_non_exhaustive()
    }
}

impl DtlsCertificate {
    /// Generates a fresh self-signed ECDSA P-256 certificate: random serial (from
    /// OpenSSL's generator), CN "cascade", valid for 30 days starting a day before
    /// `now_unix` (seconds since the Unix epoch), signed with SHA-256.
    pub fn generate(now_unix: u64) -> Result<Self, CertError> {
        let now = i64::try_from(now_unix).map_err(|_| CertError::Clock)?;
        Self::generate_at(now)
    }

    /// [`DtlsCertificate::generate`] with the issue time given in seconds since the Unix epoch.
    fn generate_at(now_unix: i64) -> Result<Self, CertError> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let pkey = PKey::from_ec_key(EcKey::generate(&group)?)?;

        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, COMMON_NAME)?;
        let name = name.build();

        let mut serial = BigNum::new()?;
        serial.rand(SERIAL_BITS, MsbOption::MAYBE_ZERO, false)?;
        let serial = Asn1Integer::from_bn(&serial)?;

        let not_before = now_unix
            .checked_sub(BACKDATE_SECS)
            .ok_or(CertError::Clock)?;
        let not_after = now_unix
            .checked_add(VALIDITY_DAYS * 24 * 60 * 60)
            .ok_or(CertError::Clock)?;
        let not_before = Asn1Time::from_unix(to_time_t(not_before)?)?;
        let not_after = Asn1Time::from_unix(to_time_t(not_after)?)?;

        let mut builder = X509::builder()?;
        // Version 3 (the field is zero-based).
        builder.set_version(2)?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&pkey)?;
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.sign(&pkey, MessageDigest::sha256())?;
        let x509 = builder.build();

        let fingerprint = Fingerprint::of_x509(FingerprintAlgorithm::Sha256, &x509)?;
        Ok(Self {
            x509,
            pkey,
            fingerprint,
        })
    }

    /// The sha-256 fingerprint of the certificate, as announced in SDP.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// The certificate.
    pub fn x509(&self) -> &X509Ref {
        &self.x509
    }

    /// The private key, for the DTLS stack.
    pub(crate) fn private_key(&self) -> &PKeyRef<Private> {
        &self.pkey
    }
}

/// Converts seconds since the epoch to the platform's `time_t`, which is narrower than
/// `i64` on some targets.
fn to_time_t<T: TryFrom<i64>>(secs: i64) -> Result<T, CertError> {
    T::try_from(secs).map_err(|_| CertError::Clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_HEX: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:\
                              AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    #[test]
    fn parse_and_format_round_trip() {
        let value = format!("sha-256 {SHA256_HEX}");
        let fp = Fingerprint::parse_sdp(&value).unwrap();
        assert_eq!(fp.algorithm, FingerprintAlgorithm::Sha256);
        assert_eq!(fp.bytes.len(), 32);
        assert_eq!(&fp.bytes[..4], &[0xab, 0xcd, 0xef, 0x01]);
        assert_eq!(fp.to_sdp(), value);
        assert_eq!(fp.to_string(), value);
        assert_eq!(Fingerprint::parse_sdp(&fp.to_sdp()).unwrap(), fp);
    }

    #[test]
    fn parse_is_lenient_on_case_and_surrounding_space() {
        let lower = format!("  SHA-256   {}\r\n", SHA256_HEX.to_ascii_lowercase());
        let fp = Fingerprint::parse_sdp(&lower).unwrap();
        assert_eq!(fp.to_sdp(), format!("sha-256 {SHA256_HEX}"));
    }

    #[test]
    fn every_algorithm_round_trips() {
        let cert = DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap();
        for algorithm in [
            FingerprintAlgorithm::Sha1,
            FingerprintAlgorithm::Sha224,
            FingerprintAlgorithm::Sha256,
            FingerprintAlgorithm::Sha384,
            FingerprintAlgorithm::Sha512,
        ] {
            let fp = Fingerprint::of_x509(algorithm, cert.x509()).unwrap();
            assert_eq!(fp.bytes.len(), algorithm.digest_len());
            assert!(fp.to_sdp().starts_with(algorithm.sdp_name()));
            assert_eq!(Fingerprint::parse_sdp(&fp.to_sdp()).unwrap(), fp);
            assert!(fp.matches(cert.x509()));
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        use FingerprintError::*;
        let cases: &[(&str, FingerprintError)] = &[
            ("", Malformed),
            ("   ", Malformed),
            ("sha-256", Malformed),
            ("sha-256 AB:CD extra", Malformed),
            ("md5 AB:CD", UnknownAlgorithm("md5".into())),
            ("sha-257 AB", UnknownAlgorithm("sha-257".into())),
            ("sha-1 AB:CD:ZZ", InvalidHex),
            ("sha-1 ABC:DE", InvalidHex),
            ("sha-1 A:BC", InvalidHex),
            ("sha-1 AB::CD", InvalidHex),
            ("sha-1 AB:CD:", InvalidHex),
            ("sha-1 :AB", InvalidHex),
            ("sha-1 ABCD", InvalidHex),
            ("sha-1 \u{e9}\u{e9}", InvalidHex),
            ("sha-1 \u{e9}", InvalidHex),
            (
                "sha-1 AB:CD",
                WrongLength {
                    expected: 20,
                    actual: 2,
                },
            ),
            (
                &format!("sha-1 {SHA256_HEX}"),
                WrongLength {
                    expected: 20,
                    actual: 32,
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Fingerprint::parse_sdp(input).as_ref(),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn of_der_matches_certificate_digest() {
        let cert = DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap();
        let der = cert.x509().to_der().unwrap();
        let fp = Fingerprint::of_der(FingerprintAlgorithm::Sha256, &der).unwrap();
        assert_eq!(&fp, cert.fingerprint());
        let other = DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap();
        assert!(!fp.matches(other.x509()));
    }

    #[test]
    fn generated_certificate_properties() {
        let cert = DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap();
        let x509 = cert.x509();
        let cn = x509
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .unwrap()
            .data()
            .as_slice()
            .to_vec();
        assert_eq!(cn, b"cascade");
        // Self-signed with the key it carries, an ECDSA P-256 key.
        let public = x509.public_key().unwrap();
        assert!(x509.verify(&public).unwrap());
        assert!(public.public_eq(cert.private_key()));
        let ec = public.ec_key().unwrap();
        assert_eq!(ec.group().curve_name(), Some(Nid::X9_62_PRIME256V1));
        // Validity: from a day before the issue time to 30 days after it.
        let now = Asn1Time::from_unix(crate::testing::UNIX_NOW as i64).unwrap();
        let start = x509.not_before().diff(&now).unwrap();
        assert_eq!(start.days, 1);
        let end = now.diff(x509.not_after()).unwrap();
        assert!(
            end.days == 30 || (end.days == 29 && end.secs > 86_000),
            "{end:?}"
        );
        // Serials are random.
        let other = DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap();
        assert_ne!(
            x509.serial_number().to_bn().unwrap(),
            other.x509().serial_number().to_bn().unwrap()
        );
        assert_ne!(cert.fingerprint(), other.fingerprint());
    }

    #[test]
    fn clone_shares_identity_and_debug_hides_key() {
        let cert = DtlsCertificate::generate(crate::testing::UNIX_NOW).unwrap();
        let copy = cert.clone();
        assert_eq!(copy.fingerprint(), cert.fingerprint());
        assert!(copy.private_key().public_eq(cert.private_key()));
        let debug = format!("{cert:?}");
        assert!(debug.contains("sha-256"));
        let key_pem = cert.private_key().private_key_to_pem_pkcs8().unwrap();
        let key_pem = String::from_utf8(key_pem).unwrap();
        assert!(!debug.contains("PRIVATE"));
        assert!(!debug.contains(key_pem.lines().nth(1).unwrap()));
    }

    #[test]
    fn generate_at_rejects_out_of_range_clock() {
        assert!(matches!(
            DtlsCertificate::generate_at(i64::MIN),
            Err(CertError::Clock)
        ));
    }
}
