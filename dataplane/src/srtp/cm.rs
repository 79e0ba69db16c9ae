//! The `AES_CM_128_HMAC_SHA1_80` transform (RFC 3711): AES-128 in counter mode with
//! the IV of §4.1.1, and HMAC-SHA1 authentication truncated to 80 bits, for SRTP and
//! SRTCP packets.
//!
//! It works in place on buffers whose sizes the caller checked and allocates nothing.
//! It does not parse headers, estimate indices or keep replay state ([`super`] does).

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;
use openssl::sha::Sha1;

use super::kdf::SessionKeys;
use super::{RTCP_CLEAR_LEN, SRTCP_INDEX_LEN, SrtpError};

/// HMAC-SHA1 tag length of `AES_CM_128_HMAC_SHA1_80`.
pub(super) const HMAC_TAG_LEN: usize = 10;

/// HMAC-SHA1 (RFC 2104) with the padded-key states precomputed, so that a tag costs two
/// clones of a stack struct and no allocation.
#[derive(Clone)]
pub(super) struct HmacSha1 {
    inner: Sha1,
    outer: Sha1,
}

impl HmacSha1 {
    /// `key` must be at most 64 bytes (SRTP auth keys are 20).
    fn new(key: &[u8]) -> Self {
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(key) {
            *i ^= k;
            *o ^= k;
        }
        let mut inner = Sha1::new();
        inner.update(&ipad);
        let mut outer = Sha1::new();
        outer.update(&opad);
        Self { inner, outer }
    }

    /// HMAC over `data || trailer`.
    fn tag(&self, data: &[u8], trailer: &[u8]) -> [u8; 20] {
        let mut inner = self.inner.clone();
        inner.update(data);
        inner.update(trailer);
        let inner = inner.finish();
        let mut outer = self.outer.clone();
        outer.update(&inner);
        outer.finish()
    }
}

/// The keyed AES-CM cipher and HMAC of one transform (SRTP or SRTCP).
pub(super) struct AesCm {
    ctr: CipherCtx,
    salt: [u8; 14],
    hmac: HmacSha1,
}

impl AesCm {
    pub(super) fn new(keys: &SessionKeys) -> Result<Self, ErrorStack> {
        let mut ctx = CipherCtx::new()?;
        ctx.encrypt_init(Some(Cipher::aes_128_ctr()), Some(&keys.enc), Some(&[0; 16]))?;
        Ok(Self {
            ctr: ctx,
            salt: keys.salt,
            hmac: HmacSha1::new(&keys.auth),
        })
    }

    /// Encrypts the payload of the RTP packet `packet` (whose header is `header_len`
    /// bytes) at `index` and writes the tag to the start of `tail`, which the caller
    /// made long enough.
    pub(super) fn seal_rtp(
        &mut self,
        packet: &mut [u8],
        header_len: usize,
        ssrc: u32,
        index: u64,
        tail: &mut [u8],
    ) -> Result<(), ErrorStack> {
        let roc = (index >> 16) as u32;
        let payload = &mut packet[header_len..];
        ctr_apply(&mut self.ctr, &cm_iv(&self.salt, ssrc, index), payload)?;
        let tag = self.hmac.tag(packet, &roc.to_be_bytes());
        tail[..HMAC_TAG_LEN].copy_from_slice(&tag[..HMAC_TAG_LEN]);
        Ok(())
    }

    /// Checks `tag` over the SRTP packet `packet` (without the tag) at `index`, then
    /// decrypts its payload.
    pub(super) fn open_rtp(
        &mut self,
        packet: &mut [u8],
        header_len: usize,
        ssrc: u32,
        index: u64,
        tag: &[u8],
    ) -> Result<(), SrtpError> {
        let roc = (index >> 16) as u32;
        let expected = self.hmac.tag(packet, &roc.to_be_bytes());
        if !openssl::memcmp::eq(&expected[..HMAC_TAG_LEN], tag) {
            return Err(SrtpError::AuthenticationFailed);
        }
        let payload = &mut packet[header_len..];
        ctr_apply(&mut self.ctr, &cm_iv(&self.salt, ssrc, index), payload)?;
        Ok(())
    }

    /// Encrypts the RTCP packet `packet` after its clear part at SRTCP `index`, then
    /// writes the E flag and index word (`e_index`) and the tag over both into `tail`.
    pub(super) fn seal_rtcp(
        &mut self,
        packet: &mut [u8],
        ssrc: u32,
        index: u32,
        e_index: &[u8; SRTCP_INDEX_LEN],
        tail: &mut [u8],
    ) -> Result<(), ErrorStack> {
        let iv = cm_iv(&self.salt, ssrc, u64::from(index));
        ctr_apply(&mut self.ctr, &iv, &mut packet[RTCP_CLEAR_LEN..])?;
        tail[..SRTCP_INDEX_LEN].copy_from_slice(e_index);
        let tag = self.hmac.tag(packet, e_index);
        tail[SRTCP_INDEX_LEN..SRTCP_INDEX_LEN + HMAC_TAG_LEN].copy_from_slice(&tag[..HMAC_TAG_LEN]);
        Ok(())
    }

    /// Checks the tag of the SRTCP packet `buf` (packet to `body_end`, then the E flag
    /// and index word, then the tag) and, when `encrypted`, decrypts it at `index`.
    pub(super) fn open_rtcp(
        &mut self,
        buf: &mut [u8],
        body_end: usize,
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<(), SrtpError> {
        // Authenticated portion: packet || E|index; the tag follows it.
        let (authenticated, tag) = buf.split_at_mut(body_end + SRTCP_INDEX_LEN);
        let expected = self.hmac.tag(authenticated, &[]);
        if !openssl::memcmp::eq(&expected[..HMAC_TAG_LEN], tag) {
            return Err(SrtpError::AuthenticationFailed);
        }
        if encrypted {
            let iv = cm_iv(&self.salt, ssrc, u64::from(index));
            ctr_apply(
                &mut self.ctr,
                &iv,
                &mut authenticated[RTCP_CLEAR_LEN..body_end],
            )?;
        }
        Ok(())
    }
}

/// Applies the AES-CTR keystream that starts at `iv` to `data` in place.
fn ctr_apply(ctr: &mut CipherCtx, iv: &[u8; 16], data: &mut [u8]) -> Result<(), ErrorStack> {
    ctr.encrypt_init(None, None, Some(iv))?;
    if !data.is_empty() {
        let len = data.len();
        ctr.cipher_update_inplace(data, len)?;
    }
    Ok(())
}

/// The AES-CM IV of RFC 3711 §4.1.1: (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
/// For SRTCP the index is the 31-bit SRTCP index.
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..14].copy_from_slice(&index.to_be_bytes()[2..8]);
    for (v, s) in iv.iter_mut().zip(salt) {
        *v ^= s;
    }
    iv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::srtp::kdf::derive_session_keys;
    use crate::srtp::tests::{RFC7714_RTCP, hex, material, session_keys};
    use crate::srtp::{SrtpContext, SrtpProfile};

    /// RFC 3711 Appendix B.2: with SSRC, ROC and SEQ zero the IV is the shifted salt, and
    /// encrypting zeros yields the published keystream.
    #[test]
    fn rfc3711_b2_keystream() {
        let keys = session_keys(
            "2B7E151628AED2A6ABF7158809CF4F3C",
            "F0F1F2F3F4F5F6F7F8F9FAFBFCFD",
        );
        let mut ctx =
            SrtpContext::with_session_keys(SrtpProfile::Aes128CmHmacSha1_80, &keys, &keys).unwrap();
        let mut buf = [0u8; 12 + 48 + 10];
        buf[0] = 0x80;
        let n = ctx.protect_rtp(&mut buf, 60).unwrap();
        assert_eq!(n, 70);
        assert_eq!(
            buf[12..60].to_vec(),
            hex("E03EAD0935C95E80E166B16DD92B4EB4
                 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
    }

    #[test]
    fn aes_cm_rtcp_without_encryption_is_accepted() {
        let m = material(SrtpProfile::Aes128CmHmacSha1_80, 3);
        let keys = derive_session_keys(&m, true).unwrap();
        let plain = hex(RFC7714_RTCP);
        let mut pkt = plain.clone();
        pkt.extend_from_slice(&7u32.to_be_bytes());
        let tag = HmacSha1::new(&keys.auth).tag(&pkt, &[]);
        pkt.extend_from_slice(&tag[..10]);
        let mut rx = SrtpContext::new(&m).unwrap();
        let n = rx.unprotect_rtcp(&mut pkt).unwrap();
        assert_eq!(pkt[..n], plain[..]);
    }

    /// RFC 2202 test case 2 for the precomputed-state HMAC.
    #[test]
    fn hmac_sha1_rfc2202() {
        let tag = HmacSha1::new(b"Jefe").tag(b"what do ya want ", b"for nothing?");
        assert_eq!(
            tag.to_vec(),
            hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
    }
}
