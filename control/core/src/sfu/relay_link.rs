//! What both ends of a relay link (the UDP path between an origin and an edge) share:
//! the random keys of its feedback SRTP contexts and the form of the STUN probes the
//! edge sends over it (USERNAME prefix, integrity key). No state and no decisions: the
//! origin answers probes in `origin`, the edge sends and reads them in `edge`.

use cascade_command::keys::SrtpKeyingMaterial;
use rand::Rng;
use rand::rngs::StdRng;

/// STUN USERNAME prefix of relay probes (followed by the relay id); their
/// MESSAGE-INTEGRITY uses the link's feedback keys, which only the two servers know.
pub(super) const RELAY_PROBE_USERNAME: &str = "cascade-relay:";

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
