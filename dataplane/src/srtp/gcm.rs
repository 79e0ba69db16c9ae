//! The `AEAD_AES_128_GCM` transform (RFC 7714): AES-128-GCM with the IVs of §8.1 and
//! §9.1 and the header (and SRTCP index word) as associated data, for SRTP and SRTCP
//! packets.
//!
//! It works in place on buffers whose sizes the caller checked and allocates nothing.
//! It does not parse headers, estimate indices or keep replay state ([`super`] does).

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;

use super::kdf::SessionKeys;
use super::{RTCP_CLEAR_LEN, SRTCP_INDEX_LEN, SrtpError};

/// GCM tag length of `AEAD_AES_128_GCM`.
pub(super) const GCM_TAG_LEN: usize = 16;

/// The keyed AES-GCM cipher of one transform (SRTP or SRTCP).
pub(super) struct AesGcm {
    gcm: CipherCtx,
    salt: [u8; 12],
}

impl AesGcm {
    pub(super) fn new(keys: &SessionKeys) -> Result<Self, ErrorStack> {
        let mut ctx = CipherCtx::new()?;
        ctx.encrypt_init(Some(Cipher::aes_128_gcm()), Some(&keys.enc), None)?;
        let mut salt = [0; 12];
        salt.copy_from_slice(&keys.salt[..12]);
        Ok(Self { gcm: ctx, salt })
    }

    /// Encrypts the payload of the RTP packet `packet` (whose header of `header_len`
    /// bytes is the associated data) with rollover counter `roc`, and writes the tag
    /// to the start of `tail`, which the caller made long enough.
    pub(super) fn seal_rtp(
        &mut self,
        packet: &mut [u8],
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
        tail: &mut [u8],
    ) -> Result<(), ErrorStack> {
        let (header, payload) = packet.split_at_mut(header_len);
        let iv = gcm_iv(&self.salt, ssrc, roc, seq);
        let tag = gcm_seal(&mut self.gcm, &iv, &[header], payload)?;
        tail[..GCM_TAG_LEN].copy_from_slice(&tag);
        Ok(())
    }

    /// Decrypts the payload of the SRTP packet `packet` (without the tag) and checks
    /// `tag`.
    pub(super) fn open_rtp(
        &mut self,
        packet: &mut [u8],
        header_len: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        let tag: &[u8; GCM_TAG_LEN] = tag.try_into().map_err(|_| SrtpError::TooShort)?;
        let (header, payload) = packet.split_at_mut(header_len);
        let iv = gcm_iv(&self.salt, ssrc, roc, seq);
        gcm_open(&mut self.gcm, &iv, &[header], payload, tag)
    }

    /// Encrypts the RTCP packet `packet` after its clear part at SRTCP `index`, then
    /// writes the tag and the E flag and index word (`e_index`) into `tail`.
    pub(super) fn seal_rtcp(
        &mut self,
        packet: &mut [u8],
        ssrc: u32,
        index: u32,
        e_index: &[u8; SRTCP_INDEX_LEN],
        tail: &mut [u8],
    ) -> Result<(), ErrorStack> {
        let iv = gcm_rtcp_iv(&self.salt, ssrc, index);
        let (header, body) = packet.split_at_mut(RTCP_CLEAR_LEN);
        let tag = gcm_seal(&mut self.gcm, &iv, &[header, e_index], body)?;
        tail[..GCM_TAG_LEN].copy_from_slice(&tag);
        tail[GCM_TAG_LEN..GCM_TAG_LEN + SRTCP_INDEX_LEN].copy_from_slice(e_index);
        Ok(())
    }

    /// Checks the tag of the SRTCP packet `buf` (packet to `body_end`, then the tag,
    /// then the E flag and index word `e_index`), decrypting it when `encrypted`.
    pub(super) fn open_rtcp(
        &mut self,
        buf: &mut [u8],
        body_end: usize,
        ssrc: u32,
        index: u32,
        e_index: &[u8; SRTCP_INDEX_LEN],
        encrypted: bool,
    ) -> Result<(), SrtpError> {
        let (packet, rest) = buf.split_at_mut(body_end);
        let tag: &[u8; GCM_TAG_LEN] = rest.first_chunk().ok_or(SrtpError::TooShort)?;
        let iv = gcm_rtcp_iv(&self.salt, ssrc, index);
        if encrypted {
            let (header, body) = packet.split_at_mut(RTCP_CLEAR_LEN);
            gcm_open(&mut self.gcm, &iv, &[header, e_index], body, tag)
        } else {
            // RFC 7714 §9.2: without encryption the whole packet is AAD.
            gcm_open(&mut self.gcm, &iv, &[packet, e_index], &mut [], tag)
        }
    }
}

/// The GCM IV of RFC 7714 §8.1 / §9.1: (00 00 || SSRC || high || low) XOR salt, where
/// high/low are ROC/SEQ for SRTP and 00 00 / SRTCP index for SRTCP.
fn gcm_iv(salt: &[u8; 12], ssrc: u32, high: u32, low: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&high.to_be_bytes());
    iv[10..12].copy_from_slice(&low.to_be_bytes());
    for (v, s) in iv.iter_mut().zip(salt) {
        *v ^= s;
    }
    iv
}

/// The SRTCP GCM IV of RFC 7714 §9.1: (00 00 || SSRC || 00 00 || 0 || index) XOR salt.
/// The index has 31 bits, so its upper half fills the low bytes of the `high` word.
fn gcm_rtcp_iv(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    gcm_iv(salt, ssrc, index >> 16, (index & 0xffff) as u16)
}

/// GCM-encrypts `data` in place after feeding `aad`, and returns the tag.
fn gcm_seal(
    gcm: &mut CipherCtx,
    iv: &[u8; 12],
    aad: &[&[u8]],
    data: &mut [u8],
) -> Result<[u8; GCM_TAG_LEN], ErrorStack> {
    gcm.encrypt_init(None, None, Some(iv))?;
    for a in aad.iter().filter(|a| !a.is_empty()) {
        gcm.cipher_update(a, None)?;
    }
    if !data.is_empty() {
        let len = data.len();
        gcm.cipher_update_inplace(data, len)?;
    }
    gcm.cipher_final(&mut [])?;
    let mut tag = [0u8; GCM_TAG_LEN];
    gcm.tag(&mut tag)?;
    Ok(tag)
}

/// GCM-decrypts `data` in place after feeding `aad` and checks `tag`. On a tag mismatch
/// `data` holds unauthenticated plaintext, which the caller must discard.
fn gcm_open(
    gcm: &mut CipherCtx,
    iv: &[u8; 12],
    aad: &[&[u8]],
    data: &mut [u8],
    tag: &[u8; GCM_TAG_LEN],
) -> Result<(), SrtpError> {
    gcm.decrypt_init(None, None, Some(iv))?;
    for a in aad.iter().filter(|a| !a.is_empty()) {
        gcm.cipher_update(a, None)?;
    }
    if !data.is_empty() {
        let len = data.len();
        gcm.cipher_update_inplace(data, len)?;
    }
    gcm.set_tag(tag)?;
    gcm.cipher_final(&mut [])
        .map_err(|_| SrtpError::AuthenticationFailed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::tests::{RFC7714_RTCP, hex, session_keys};
    use crate::srtp::{SrtpContext, SrtpProfile, StreamState};

    const RFC7714_KEY: &str = "000102030405060708090a0b0c0d0e0f";
    const RFC7714_SALT: &str = "517569642070726f2071756f";

    fn rfc7714_context() -> SrtpContext {
        let keys = session_keys(RFC7714_KEY, RFC7714_SALT);
        SrtpContext::with_session_keys(SrtpProfile::AeadAes128Gcm, &keys, &keys).unwrap()
    }

    /// RFC 7714 §16.1.1 (encryption) and §16.1.2 (decryption).
    #[test]
    fn rfc7714_16_rtp_vector() {
        let plain = hex(
            "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                         20646976 69736120 696e2070 61727465 73207472 6573",
        );
        let protected = hex(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
                             be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
                             6a9152cf 765ee439 0cce",
        );
        assert_eq!(
            gcm_iv(
                &hex(RFC7714_SALT).try_into().unwrap(),
                0x5501_a0b2,
                0,
                0xf17b
            )
            .to_vec(),
            hex("51753c6580c2726f20718414")
        );
        let mut buf = plain.clone();
        buf.resize(plain.len() + 16, 0);
        let n = rfc7714_context()
            .protect_rtp(&mut buf, plain.len())
            .unwrap();
        assert_eq!(buf[..n], protected[..]);

        let mut buf = protected.clone();
        let n = rfc7714_context().unprotect_rtp(&mut buf).unwrap();
        assert_eq!(buf[..n], plain[..]);
    }

    /// RFC 7714 §17.1 (SRTCP encryption) and §17.2 (decryption), SRTCP index 0x5d4.
    #[test]
    fn rfc7714_17_rtcp_vector() {
        let plain = hex(RFC7714_RTCP);
        let protected = hex(
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
                             6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458
                             96cf4d2f c5abf872 45d9eade 800005d4",
        );
        assert_eq!(
            gcm_rtcp_iv(&hex(RFC7714_SALT).try_into().unwrap(), 0x4d61_7273, 0x5d4).to_vec(),
            hex("517524055203726f207170bb")
        );
        let mut ctx = rfc7714_context();
        let mut state = StreamState::new(0x4d61_7273);
        state.tx_rtcp_index = 0x5d3;
        ctx.commit(None, state);
        let mut buf = plain.clone();
        buf.resize(plain.len() + 20, 0);
        let n = ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
        assert_eq!(buf[..n], protected[..]);

        let mut buf = protected.clone();
        let n = rfc7714_context().unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(buf[..n], plain[..]);
    }

    /// RFC 7714 §17.3/§17.4: SRTCP authenticated but not encrypted (E flag clear).
    #[test]
    fn rfc7714_17_rtcp_authentication_only() {
        let plain = hex(RFC7714_RTCP);
        let mut protected = plain.clone();
        protected.extend(hex("841dd968 3dd78ec9 2ae58790 125f62b3 000005d4"));
        let mut buf = protected.clone();
        let n = rfc7714_context().unprotect_rtcp(&mut buf).unwrap();
        assert_eq!(buf[..n], plain[..]);
        // Setting the E flag changes the AAD, so the tag no longer verifies.
        let mut buf = protected;
        let last4 = buf.len() - 4;
        buf[last4] |= 0x80;
        assert!(matches!(
            rfc7714_context().unprotect_rtcp(&mut buf),
            Err(SrtpError::AuthenticationFailed)
        ));
    }
}
