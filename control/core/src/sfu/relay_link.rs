//! What both ends of a relay link (the UDP path between an origin and an edge) share:
//! the random keys of its feedback SRTP contexts and the form of the STUN probes the
//! edge sends over it (USERNAME prefix, integrity key, the attribute by which an
//! origin says its own origin is lost). No state and no decisions: the origin answers
//! probes in `origin`, the edge sends and reads them in `edge`.

use cascade_command::keys::SrtpKeyingMaterial;
use rand::Rng;
use rand::rngs::StdRng;

/// STUN USERNAME prefix of relay probes (followed by the relay id); their
/// MESSAGE-INTEGRITY uses the link's feedback keys, which only the two servers know.
pub(super) const RELAY_PROBE_USERNAME: &str = "cascade-relay:";

/// A comprehension-optional STUN attribute (RFC 8489 §18.2: 0x8000-0xFFFF) of a
/// probe's success answer, before MESSAGE-INTEGRITY: the relayed publication is itself
/// relayed from an origin the answering server lost, so the edge is `reconnecting`
/// too. Its value is 4 bytes, `00 00 00 01`.
pub(super) const ATTR_UPSTREAM_LOST: u16 = 0xCA5C;

/// Whether the authenticated part of the STUN message `raw` (the attributes before
/// MESSAGE-INTEGRITY) holds attribute `attr`. Reads lengths with bounds checks: a
/// malformed message holds nothing.
pub(super) fn has_attribute(raw: &[u8], attr: u16) -> bool {
    let mut at = crate::stun::HEADER_LEN;
    while let Some(head) = raw.get(at..at.saturating_add(4)) {
        let kind = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if kind == crate::stun::ATTR_MESSAGE_INTEGRITY {
            return false;
        }
        if kind == attr {
            return raw.len() >= at + 4 + len;
        }
        at += 4 + ((len + 3) & !3);
    }
    false
}

/// The probe an edge sends an origin every [`RELAY_PROBE_INTERVAL`] for each relay
/// (`relay_id`: the last segment of the relay URL), signed with the link's
/// `feedback` keys (the relay answer's `feedback_srtp`). It keeps the relay open: an
/// origin closes a relay whose edge stopped probing it ([`RELAY_EDGE_TIMEOUT`]).
///
/// [`RELAY_PROBE_INTERVAL`]: super::RELAY_PROBE_INTERVAL
/// [`RELAY_EDGE_TIMEOUT`]: super::RELAY_EDGE_TIMEOUT
pub fn relay_probe(
    relay_id: &str,
    feedback: &SrtpKeyingMaterial,
    transaction_id: [u8; 12],
) -> Result<Vec<u8>, crate::stun::StunBuildError> {
    crate::stun::StunWriter::new(
        crate::stun::StunClass::Request,
        crate::stun::METHOD_BINDING,
        transaction_id,
    )
    .username(&format!("{RELAY_PROBE_USERNAME}{relay_id}"))
    .finish(Some(&probe_key(feedback)), true)
}

/// The MESSAGE-INTEGRITY key of relay link probes: the link's feedback master key and
/// salt.
pub(super) fn probe_key(keys: &SrtpKeyingMaterial) -> Vec<u8> {
    let mut k = keys.key[..keys.profile.key_len()].to_vec();
    k.extend_from_slice(keys.salt());
    k
}

/// Fresh random AEAD_AES_128_GCM keys (for relay feedback contexts).
pub(super) fn random_keys(rng: &mut StdRng) -> SrtpKeyingMaterial {
    let key: [u8; 16] = rng.random();
    let salt: [u8; 12] = rng.random();
    // 16 + 12 bytes are exactly what the GCM profile takes.
    SrtpKeyingMaterial::new(
        cascade_command::keys::SrtpProfile::AeadAes128Gcm,
        &key,
        &salt,
    )
    .unwrap_or_else(|| unreachable!("GCM takes a 16-byte key and a 12-byte salt"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{METHOD_BINDING, StunClass, StunWriter};

    #[test]
    fn the_upstream_attribute_counts_only_before_integrity() {
        let tid = [7; 12];
        let with = StunWriter::new(StunClass::SuccessResponse, METHOD_BINDING, tid)
            .attribute(ATTR_UPSTREAM_LOST, &[0, 0, 0, 1])
            .finish(Some(b"key"), true)
            .unwrap();
        assert!(has_attribute(&with, ATTR_UPSTREAM_LOST));
        let without = StunWriter::new(StunClass::SuccessResponse, METHOD_BINDING, tid)
            .finish(Some(b"key"), true)
            .unwrap();
        assert!(!has_attribute(&without, ATTR_UPSTREAM_LOST));
        // Truncated or garbage input holds nothing and does not panic.
        for n in 0..with.len() {
            let _ = has_attribute(&with[..n], ATTR_UPSTREAM_LOST);
        }
        assert!(!has_attribute(&[0xff; 3], ATTR_UPSTREAM_LOST));
        let mut big = with.clone();
        big[22] = 0xff;
        big[23] = 0xff;
        let _ = has_attribute(&big, ATTR_UPSTREAM_LOST);
    }
}
