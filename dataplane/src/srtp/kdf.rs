//! SRTP key derivation (RFC 3711 §4.3, key derivation rate 0): the AES-CM PRF that
//! turns a master key and salt into the session keys of the SRTP or the SRTCP
//! transform. RFC 7714 §11 uses the same for AES-GCM.
//!
//! It runs once per context, when it is keyed. It does not key the ciphers
//! ([`super::cm`], [`super::gcm`]) or hold any per-packet state.

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;

use super::SrtpKeyingMaterial;

/// Session keys of one of the two transforms (SRTP or SRTCP) of a context.
pub(super) struct SessionKeys {
    pub(super) enc: [u8; 16],
    /// Only the profile's salt length is used (14 for AES-CM, 12 for GCM).
    pub(super) salt: [u8; 14],
    /// Only used by the HMAC profile.
    pub(super) auth: [u8; 20],
}

/// Runs the AES-CM PRF of RFC 3711 §4.3.3 (key derivation rate 0) for every label of one
/// transform: `rtcp` selects labels 3..5 instead of 0..2.
pub(super) fn derive_session_keys(
    m: &SrtpKeyingMaterial,
    rtcp: bool,
) -> Result<SessionKeys, ErrorStack> {
    let mut prf = CipherCtx::new()?;
    prf.encrypt_init(Some(Cipher::aes_128_ecb()), Some(&m.key), None)?;
    prf.set_padding(false);
    let base = if rtcp { 3 } else { 0 };
    // A 12-byte GCM master salt is used left-aligned and zero-padded to 14 bytes, as
    // libsrtp and other implementations do.
    let salt = m.salt();
    let mut derive = |label: u8| -> Result<[u8; 32], ErrorStack> {
        // x = (label << 48) XOR master_salt, then x * 2^16 + block counter.
        let mut input = [0u8; 32];
        for block in input.chunks_exact_mut(16) {
            block[..salt.len()].copy_from_slice(salt);
            block[7] ^= label;
        }
        input[31] = 1;
        let mut out = [0u8; 48];
        let n = prf.cipher_update(&input, Some(&mut out))?;
        debug_assert_eq!(n, 32);
        let mut keystream = [0u8; 32];
        keystream.copy_from_slice(&out[..32]);
        Ok(keystream)
    };
    let enc = derive(base)?;
    let auth = derive(base + 1)?;
    let salt_bytes = derive(base + 2)?;
    let mut keys = SessionKeys {
        enc: [0; 16],
        salt: [0; 14],
        auth: [0; 20],
    };
    keys.enc.copy_from_slice(&enc[..16]);
    keys.auth.copy_from_slice(&auth[..20]);
    keys.salt[..m.profile.salt_len()].copy_from_slice(&salt_bytes[..m.profile.salt_len()]);
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::SrtpProfile;
    use crate::srtp::tests::hex;

    /// RFC 3711 Appendix B.3.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let m = SrtpKeyingMaterial::new(
            SrtpProfile::Aes128CmHmacSha1_80,
            &hex("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let keys = derive_session_keys(&m, false).unwrap();
        assert_eq!(keys.enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            keys.auth.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
        // The SRTCP labels give different keys.
        let rtcp = derive_session_keys(&m, true).unwrap();
        assert_ne!(rtcp.enc, keys.enc);
        assert_ne!(rtcp.salt, keys.salt);
        assert_ne!(rtcp.auth, keys.auth);
    }
}
