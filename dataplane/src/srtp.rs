//! SRTP and SRTCP transforms (RFC 3711, RFC 7714): keyed once per session, in place,
//! no allocation per packet. Owns the key schedule, per-SSRC rollover and replay state.
//! It does not own sockets, routing or the DTLS handshake that produces the keys.

pub use cascade_command::keys::{SrtpKeyingMaterial, SrtpProfile};

use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;
use openssl::sha::Sha1;

use crate::rtp;

/// Why an SRTP or SRTCP packet could not be protected or unprotected.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SrtpError {
    /// The packet is too short for its header (and, when unprotecting, the tag).
    #[error("packet too short")]
    TooShort,
    /// The buffer has no room for the protected packet, or `len` exceeds the buffer.
    #[error("buffer too small for the protected packet")]
    BufferTooSmall,
    /// The authentication tag did not verify.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The packet index was already seen or is older than the replay window.
    #[error("replayed or too old packet")]
    Replayed,
    /// The RTP or RTCP header is invalid (version, CSRC list, extension length).
    #[error("malformed RTP/RTCP header")]
    Malformed,
    /// The packet index space of the key is used up (2^48 SRTP or 2^31 SRTCP
    /// packets, RFC 3711 §9.2); the session must be rekeyed.
    #[error("packet index space of the key exhausted")]
    KeyExhausted,
    /// A new SSRC would exceed [`MAX_SSRCS`] streams in this context.
    #[error("too many SSRCs in one SRTP context")]
    TooManySsrcs,
    /// The buffer is larger than any UDP datagram ([`MAX_PACKET_LEN`]).
    #[error("packet larger than a UDP datagram")]
    TooLarge,
    /// OpenSSL reported an error.
    #[error("crypto library error: {0}")]
    Crypto(#[from] ErrorStack),
}

/// Most SSRCs one [`SrtpContext`] keeps state for. Entries are only created after a
/// packet authenticates (or is protected), so only the peer holding the key can add them.
pub const MAX_SSRCS: usize = 256;

/// Largest packet (before or after protection) the transforms accept: a UDP payload
/// never exceeds it, and it keeps every length far inside OpenSSL's `int` range.
pub const MAX_PACKET_LEN: usize = 65_535;

/// Size of the replay window, for SRTP and SRTCP alike. RFC 3711 §3.3.2 asks for at
/// least 64; packets resent after a NACK (a cascade origin resends with the original
/// SSRC and index) arrive a round trip late, so the window is as wide as libwebrtc's.
const REPLAY_WINDOW: u64 = 1024;
/// 64-bit words of the replay window.
const REPLAY_WORDS: usize = (REPLAY_WINDOW / 64) as usize;
/// Length of the E flag + SRTCP index word.
const SRTCP_INDEX_LEN: usize = 4;
/// Largest SRTCP index (31 bits).
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;
/// HMAC-SHA1 tag length of `AES_CM_128_HMAC_SHA1_80`.
const HMAC_TAG_LEN: usize = 10;
/// GCM tag length of `AEAD_AES_128_GCM`.
const GCM_TAG_LEN: usize = 16;
/// Fixed RTCP header bytes left in the clear: version/count/type/length + sender SSRC.
const RTCP_CLEAR_LEN: usize = 8;

/// HMAC-SHA1 (RFC 2104) with the padded-key states precomputed, so that a tag costs two
/// clones of a stack struct and no allocation.
#[derive(Clone)]
struct HmacSha1 {
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

/// Session keys of one of the two transforms (SRTP or SRTCP) of a context.
struct SessionKeys {
    enc: [u8; 16],
    /// Only the profile's salt length is used (14 for AES-CM, 12 for GCM).
    salt: [u8; 14],
    /// Only used by the HMAC profile.
    auth: [u8; 20],
}

/// Runs the AES-CM PRF of RFC 3711 §4.3.3 (key derivation rate 0) for every label of one
/// transform: `rtcp` selects labels 3..5 instead of 0..2.
fn derive_session_keys(m: &SrtpKeyingMaterial, rtcp: bool) -> Result<SessionKeys, ErrorStack> {
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

/// The keyed cipher of one transform.
enum Transform {
    /// AES-128 counter mode + HMAC-SHA1-80 (RFC 3711).
    AesCm {
        ctr: CipherCtx,
        salt: [u8; 14],
        hmac: HmacSha1,
    },
    /// AEAD AES-128-GCM (RFC 7714).
    Gcm { gcm: CipherCtx, salt: [u8; 12] },
}

impl Transform {
    fn new(profile: SrtpProfile, keys: &SessionKeys) -> Result<Self, ErrorStack> {
        let mut ctx = CipherCtx::new()?;
        Ok(match profile {
            SrtpProfile::Aes128CmHmacSha1_80 => {
                ctx.encrypt_init(Some(Cipher::aes_128_ctr()), Some(&keys.enc), Some(&[0; 16]))?;
                Transform::AesCm {
                    ctr: ctx,
                    salt: keys.salt,
                    hmac: HmacSha1::new(&keys.auth),
                }
            }
            SrtpProfile::AeadAes128Gcm => {
                ctx.encrypt_init(Some(Cipher::aes_128_gcm()), Some(&keys.enc), None)?;
                let mut salt = [0; 12];
                salt.copy_from_slice(&keys.salt[..12]);
                Transform::Gcm { gcm: ctx, salt }
            }
        })
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

/// Sliding replay window over packet indices (RFC 3711 §3.3.2), as a ring of bits:
/// bit `index % REPLAY_WINDOW` stands for `index` while it is inside the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReplayWindow {
    highest: Option<u64>,
    seen: [u64; REPLAY_WORDS],
}

impl ReplayWindow {
    fn bit(index: u64) -> (usize, u64) {
        let i = (index % REPLAY_WINDOW) as usize;
        (i / 64, 1 << (i % 64))
    }

    fn is_seen(&self, index: u64) -> bool {
        let (w, m) = Self::bit(index);
        self.seen[w] & m != 0
    }

    fn set(&mut self, index: u64, on: bool) {
        let (w, m) = Self::bit(index);
        if on {
            self.seen[w] |= m;
        } else {
            self.seen[w] &= !m;
        }
    }

    fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        if highest - index >= REPLAY_WINDOW || self.is_seen(index) {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        match self.highest {
            Some(highest) if index <= highest => {
                if highest - index < REPLAY_WINDOW {
                    self.set(index, true);
                }
            }
            Some(highest) if index - highest < REPLAY_WINDOW => {
                // Indices skipped over enter the window unseen.
                for i in highest + 1..index {
                    self.set(i, false);
                }
                self.set(index, true);
                self.highest = Some(index);
            }
            _ => {
                self.seen = [0; REPLAY_WORDS];
                self.set(index, true);
                self.highest = Some(index);
            }
        }
    }
}

/// Estimates the 48-bit SRTP packet index (ROC << 16 | SEQ) of `seq` from the highest
/// index seen so far (RFC 3711 §3.3.1 and Appendix A). While the highest index is still
/// below 2^15 with ROC 0 no wrap backwards is possible, as in libsrtp. `None` when the
/// ROC would overflow 32 bits.
fn estimate_index(highest: Option<u64>, seq: u16) -> Option<u64> {
    let Some(highest) = highest else {
        return Some(u64::from(seq));
    };
    let roc = highest >> 16;
    let s_l = (highest & 0xffff) as u16;
    let guess_roc = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.saturating_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    if guess_roc > u64::from(u32::MAX) {
        return None;
    }
    Some(guess_roc << 16 | u64::from(seq))
}

/// Per-SSRC state of a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamState {
    ssrc: u32,
    /// Highest SRTP index protected (sender side).
    tx_highest: Option<u64>,
    /// Last SRTCP index protected; 0 before the first (the first packet uses 1, as
    /// libsrtp does).
    tx_rtcp_index: u32,
    /// Received SRTP indices; its highest also drives ROC estimation.
    rx_rtp: ReplayWindow,
    /// Received SRTCP indices.
    rx_rtcp: ReplayWindow,
}

impl StreamState {
    fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            tx_highest: None,
            tx_rtcp_index: 0,
            rx_rtp: ReplayWindow::default(),
            rx_rtcp: ReplayWindow::default(),
        }
    }
}

/// SRTP/SRTCP state of one direction of one session, for all SSRCs of that direction.
///
/// All transforms work in place on the caller's buffer and allocate nothing per packet;
/// the only allocation after [`SrtpContext::new`] is growing the SSRC table when a new
/// SSRC first protects or authenticates. Per-SSRC state (rollover counter, replay
/// windows, SRTCP index) changes only after a packet authenticates (or is protected). On
/// error the buffer's contents are unspecified and the packet must be dropped.
///
/// Interoperability choices: a new SSRC starts with ROC 0; the ROC is estimated from the
/// highest index seen (RFC 3711 Appendix A, both when protecting and unprotecting); the
/// first SRTCP packet protected for an SSRC carries index 1, as libsrtp does; SRTCP state
/// is keyed by the packet's first SSRC (the sender SSRC of the first RTCP packet).
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: Transform,
    rtcp: Transform,
    streams: Vec<StreamState>,
    /// Index into `streams` of the last SSRC used; checked first.
    last: usize,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("ssrcs", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives the session keys from the master key and salt and keys the ciphers.
    pub fn new(material: &SrtpKeyingMaterial) -> Result<Self, SrtpError> {
        let rtp = derive_session_keys(material, false)?;
        let rtcp = derive_session_keys(material, true)?;
        Self::with_session_keys(material.profile, &rtp, &rtcp)
    }

    fn with_session_keys(
        profile: SrtpProfile,
        rtp: &SessionKeys,
        rtcp: &SessionKeys,
    ) -> Result<Self, SrtpError> {
        Ok(Self {
            profile,
            rtp: Transform::new(profile, rtp)?,
            rtcp: Transform::new(profile, rtcp)?,
            streams: Vec::with_capacity(4),
            last: 0,
        })
    }

    /// The protection profile this context was keyed for.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    fn find(&mut self, ssrc: u32) -> Option<usize> {
        if self.streams.get(self.last).is_some_and(|s| s.ssrc == ssrc) {
            return Some(self.last);
        }
        let i = self.streams.iter().position(|s| s.ssrc == ssrc)?;
        self.last = i;
        Some(i)
    }

    /// The state of `ssrc` as it is, or fresh state for an SSRC not seen yet.
    fn state(&mut self, ssrc: u32) -> (Option<usize>, StreamState) {
        match self.find(ssrc) {
            Some(i) => (Some(i), self.streams[i]), // `find` returned a valid index.
            None => (None, StreamState::new(ssrc)),
        }
    }

    /// Stores updated state, appending a new SSRC (the only allocation on this path).
    fn commit(&mut self, slot: Option<usize>, state: StreamState) {
        match slot {
            Some(i) => self.streams[i] = state, // `find` returned a valid index.
            None => {
                self.last = self.streams.len();
                self.streams.push(state);
            }
        }
    }

    fn check_room(&self, slot: Option<usize>) -> Result<(), SrtpError> {
        if slot.is_none() && self.streams.len() >= MAX_SSRCS {
            return Err(SrtpError::TooManySsrcs);
        }
        Ok(())
    }

    /// Protects the RTP packet in `buf[..len]` in place; `buf` must have room for
    /// `len + profile.rtp_overhead()` bytes. Returns the protected length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        check_len(len)?;
        let pkt = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let hdr = rtp::parse_header(pkt).map_err(rtp_error)?;
        let out_len = len + self.profile.rtp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::BufferTooSmall);
        }
        let (slot, mut state) = self.state(hdr.ssrc);
        self.check_room(slot)?;
        let index =
            estimate_index(state.tx_highest, hdr.sequence).ok_or(SrtpError::KeyExhausted)?;
        self.seal_rtp(buf, len, &hdr, index)?;
        if state.tx_highest.is_none_or(|h| index > h) {
            state.tx_highest = Some(index);
        }
        self.commit(slot, state);
        Ok(out_len)
    }

    /// The packet index a packet `seq` of `ssrc` received through this context had
    /// (its rollover counter estimated from the highest index received, RFC 3711
    /// Appendix A). `None` for an SSRC never received.
    pub fn received_index(&self, ssrc: u32, seq: u16) -> Option<u64> {
        let highest = self
            .streams
            .iter()
            .find(|s| s.ssrc == ssrc)?
            .rx_rtp
            .highest?;
        estimate_index(Some(highest), seq)
    }

    /// Protects the RTP packet in `buf[..len]` at packet index `index`, as its sender
    /// did, without touching this context's sender state: a packet received through
    /// this context and resent with the index [`SrtpContext::received_index`] gives is
    /// byte for byte what the sender sent. Used to resend a publisher's packet to a
    /// cascade peer that reads it with the publisher's keys.
    pub fn protect_rtp_at(
        &mut self,
        buf: &mut [u8],
        len: usize,
        index: u64,
    ) -> Result<usize, SrtpError> {
        check_len(len)?;
        let pkt = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let hdr = rtp::parse_header(pkt).map_err(rtp_error)?;
        let out_len = len + self.profile.rtp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::BufferTooSmall);
        }
        if index & 0xffff != u64::from(hdr.sequence) || index >> 48 != 0 {
            return Err(SrtpError::KeyExhausted);
        }
        self.seal_rtp(buf, len, &hdr, index)?;
        Ok(out_len)
    }

    /// Encrypts and authenticates `buf[..len]` (header `hdr`) at `index`, writing the
    /// tag after it; the caller checked that `buf` has room for the tag.
    fn seal_rtp(
        &mut self,
        buf: &mut [u8],
        len: usize,
        hdr: &rtp::RtpHeader,
        index: u64,
    ) -> Result<(), SrtpError> {
        let roc = (index >> 16) as u32;
        // len <= buf.len() (checked by the callers) and header_len <= len (parse_header).
        let (packet, tail) = buf.split_at_mut(len);
        let (header, payload) = packet.split_at_mut(hdr.header_len);
        match &mut self.rtp {
            Transform::AesCm { ctr, salt, hmac } => {
                ctr_apply(ctr, &cm_iv(salt, hdr.ssrc, index), payload)?;
                let tag = hmac.tag(packet, &roc.to_be_bytes());
                tail[..HMAC_TAG_LEN].copy_from_slice(&tag[..HMAC_TAG_LEN]);
            }
            Transform::Gcm { gcm, salt } => {
                let iv = gcm_iv(salt, hdr.ssrc, roc, hdr.sequence);
                let tag = gcm_seal(gcm, &iv, &[header], payload)?;
                tail[..GCM_TAG_LEN].copy_from_slice(&tag);
            }
        }
        Ok(())
    }

    /// Unprotects the SRTP packet that is the whole of `buf` in place (authentication
    /// and replay check); returns the plaintext RTP length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        check_len(buf.len())?;
        let tag_len = self.profile.rtp_overhead();
        let hdr = rtp::parse_header(buf).map_err(rtp_error)?;
        let body_end = buf
            .len()
            .checked_sub(tag_len)
            .filter(|&end| end >= hdr.header_len)
            .ok_or(SrtpError::TooShort)?;
        let (slot, mut state) = self.state(hdr.ssrc);
        self.check_room(slot)?;
        let index =
            estimate_index(state.rx_rtp.highest, hdr.sequence).ok_or(SrtpError::KeyExhausted)?;
        state.rx_rtp.check(index)?;
        let roc = (index >> 16) as u32;
        // body_end <= buf.len() and header_len <= body_end, checked above.
        let (packet, tag) = buf.split_at_mut(body_end);
        match &mut self.rtp {
            Transform::AesCm { ctr, salt, hmac } => {
                let expected = hmac.tag(packet, &roc.to_be_bytes());
                if !openssl::memcmp::eq(&expected[..HMAC_TAG_LEN], tag) {
                    return Err(SrtpError::AuthenticationFailed);
                }
                let payload = &mut packet[hdr.header_len..];
                ctr_apply(ctr, &cm_iv(salt, hdr.ssrc, index), payload)?;
            }
            Transform::Gcm { gcm, salt } => {
                let tag: &[u8; GCM_TAG_LEN] =
                    (&*tag).try_into().map_err(|_| SrtpError::TooShort)?;
                let (header, payload) = packet.split_at_mut(hdr.header_len);
                let iv = gcm_iv(salt, hdr.ssrc, roc, hdr.sequence);
                gcm_open(gcm, &iv, &[header], payload, tag)?;
            }
        }
        state.rx_rtp.accept(index);
        self.commit(slot, state);
        Ok(body_end)
    }

    /// Protects the RTCP (compound) packet in `buf[..len]` in place, always encrypting
    /// (E flag set); `buf` must have room for `len + profile.rtcp_overhead()` bytes.
    /// Returns the protected length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        check_len(len)?;
        let pkt = buf.get(..len).ok_or(SrtpError::BufferTooSmall)?;
        let ssrc = rtcp_sender_ssrc(pkt)?;
        let out_len = len + self.profile.rtcp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::BufferTooSmall);
        }
        let (slot, mut state) = self.state(ssrc);
        self.check_room(slot)?;
        let index = state.tx_rtcp_index + 1;
        if index > MAX_SRTCP_INDEX {
            return Err(SrtpError::KeyExhausted);
        }
        let e_index = (index | 0x8000_0000).to_be_bytes();
        // RTCP_CLEAR_LEN <= len <= buf.len(), checked by `get` and rtcp_sender_ssrc.
        let (packet, tail) = buf.split_at_mut(len);
        match &mut self.rtcp {
            Transform::AesCm { ctr, salt, hmac } => {
                let iv = cm_iv(salt, ssrc, u64::from(index));
                ctr_apply(ctr, &iv, &mut packet[RTCP_CLEAR_LEN..])?;
                tail[..SRTCP_INDEX_LEN].copy_from_slice(&e_index);
                let tag = hmac.tag(packet, &e_index);
                tail[SRTCP_INDEX_LEN..SRTCP_INDEX_LEN + HMAC_TAG_LEN]
                    .copy_from_slice(&tag[..HMAC_TAG_LEN]);
            }
            Transform::Gcm { gcm, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let (header, body) = packet.split_at_mut(RTCP_CLEAR_LEN);
                let tag = gcm_seal(gcm, &iv, &[header, &e_index], body)?;
                tail[..GCM_TAG_LEN].copy_from_slice(&tag);
                tail[GCM_TAG_LEN..GCM_TAG_LEN + SRTCP_INDEX_LEN].copy_from_slice(&e_index);
            }
        }
        state.tx_rtcp_index = index;
        self.commit(slot, state);
        Ok(out_len)
    }

    /// Unprotects the SRTCP packet that is the whole of `buf` in place (authentication
    /// and replay check on the SRTCP index); returns the plaintext RTCP length. Packets
    /// sent without encryption (E flag clear) are authenticated and returned as they are.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        check_len(buf.len())?;
        let overhead = self.profile.rtcp_overhead();
        let body_end = buf
            .len()
            .checked_sub(overhead)
            .filter(|&end| end >= RTCP_CLEAR_LEN)
            .ok_or(SrtpError::TooShort)?;
        let ssrc = rtcp_sender_ssrc(buf)?;
        let word_at = match self.profile {
            SrtpProfile::Aes128CmHmacSha1_80 => body_end,
            SrtpProfile::AeadAes128Gcm => body_end + GCM_TAG_LEN,
        };
        let e_index: [u8; 4] = buf
            .get(word_at..word_at + SRTCP_INDEX_LEN)
            .and_then(|w| w.try_into().ok())
            .ok_or(SrtpError::TooShort)?;
        let word = u32::from_be_bytes(e_index);
        let encrypted = word & 0x8000_0000 != 0;
        let index = word & MAX_SRTCP_INDEX;
        let (slot, mut state) = self.state(ssrc);
        self.check_room(slot)?;
        state.rx_rtcp.check(u64::from(index))?;
        match &mut self.rtcp {
            Transform::AesCm { ctr, salt, hmac } => {
                // Authenticated portion: packet || E|index; the tag follows it.
                let (authenticated, tag) = buf.split_at_mut(body_end + SRTCP_INDEX_LEN);
                let expected = hmac.tag(authenticated, &[]);
                if !openssl::memcmp::eq(&expected[..HMAC_TAG_LEN], tag) {
                    return Err(SrtpError::AuthenticationFailed);
                }
                if encrypted {
                    let iv = cm_iv(salt, ssrc, u64::from(index));
                    ctr_apply(ctr, &iv, &mut authenticated[RTCP_CLEAR_LEN..body_end])?;
                }
            }
            Transform::Gcm { gcm, salt } => {
                let (packet, rest) = buf.split_at_mut(body_end);
                let tag: &[u8; GCM_TAG_LEN] = rest.first_chunk().ok_or(SrtpError::TooShort)?;
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                if encrypted {
                    let (header, body) = packet.split_at_mut(RTCP_CLEAR_LEN);
                    gcm_open(gcm, &iv, &[header, &e_index], body, tag)?;
                } else {
                    // RFC 7714 §9.2: without encryption the whole packet is AAD.
                    gcm_open(gcm, &iv, &[packet, &e_index], &mut [], tag)?;
                }
            }
        }
        state.rx_rtcp.accept(u64::from(index));
        self.commit(slot, state);
        Ok(body_end)
    }
}

/// The SRTCP GCM IV of RFC 7714 §9.1: (00 00 || SSRC || 00 00 || 0 || index) XOR salt.
/// The index has 31 bits, so its upper half fills the low bytes of the `high` word.
fn gcm_rtcp_iv(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    gcm_iv(salt, ssrc, index >> 16, (index & 0xffff) as u16)
}

/// The sender SSRC of an RTCP packet (bytes 4..8), after checking the version.
fn rtcp_sender_ssrc(pkt: &[u8]) -> Result<u32, SrtpError> {
    let head: &[u8; RTCP_CLEAR_LEN] = pkt.first_chunk().ok_or(SrtpError::TooShort)?;
    if head[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    Ok(u32::from_be_bytes([head[4], head[5], head[6], head[7]]))
}

fn check_len(len: usize) -> Result<(), SrtpError> {
    if len > MAX_PACKET_LEN {
        return Err(SrtpError::TooLarge);
    }
    Ok(())
}

fn rtp_error(e: rtp::RtpError) -> SrtpError {
    match e {
        rtp::RtpError::TooShort => SrtpError::TooShort,
        _ => SrtpError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        assert_eq!(s.len() % 2, 0);
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn session_keys(enc: &str, salt: &str) -> SessionKeys {
        let mut keys = SessionKeys {
            enc: [0; 16],
            salt: [0; 14],
            auth: [0; 20],
        };
        keys.enc.copy_from_slice(&hex(enc));
        let salt = hex(salt);
        keys.salt[..salt.len()].copy_from_slice(&salt);
        keys
    }

    fn material(profile: SrtpProfile, seed: u8) -> SrtpKeyingMaterial {
        let key: Vec<u8> = (0..16)
            .map(|i| seed.wrapping_mul(31).wrapping_add(i))
            .collect();
        let salt: Vec<u8> = (0..profile.salt_len() as u8)
            .map(|i| seed ^ i.wrapping_mul(7))
            .collect();
        SrtpKeyingMaterial::new(profile, &key, &salt).unwrap()
    }

    fn rtp_packet(ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend((0..payload_len).map(|i| i as u8));
        p
    }

    const PROFILES: [SrtpProfile; 2] =
        [SrtpProfile::Aes128CmHmacSha1_80, SrtpProfile::AeadAes128Gcm];

    /// A packet received and resent at its received index is byte for byte what the
    /// sender sent, after the rollover counter moved on too; the resender's own
    /// sender state stays untouched.
    #[test]
    fn resend_at_received_index_reproduces_the_sender() {
        for profile in PROFILES {
            let m = material(profile, 9);
            let mut sender = SrtpContext::new(&m).unwrap();
            let mut receiver = SrtpContext::new(&m).unwrap();
            let mut sent = Vec::new();
            // Cross a sequence-number wrap so the ROC is 1 for the later packets.
            for i in 0..300u32 {
                let seq = (65_400 + i) as u16;
                let plain = rtp_packet(0xabcd, seq, 40);
                let mut buf = plain.clone();
                buf.resize(plain.len() + profile.rtp_overhead(), 0);
                let n = sender.protect_rtp(&mut buf, plain.len()).unwrap();
                buf.truncate(n);
                let mut rx = buf.clone();
                receiver.unprotect_rtp(&mut rx).unwrap();
                sent.push((seq, plain, buf));
            }
            for (seq, plain, wire) in sent.iter().step_by(7) {
                let index = receiver.received_index(0xabcd, *seq).unwrap();
                let mut buf = plain.clone();
                buf.resize(plain.len() + profile.rtp_overhead(), 0);
                let n = receiver
                    .protect_rtp_at(&mut buf, plain.len(), index)
                    .unwrap();
                assert_eq!(&buf[..n], &wire[..], "{profile:?} seq {seq}");
            }
            assert_eq!(receiver.received_index(0x1, 5), None);
            let plain = rtp_packet(0xabcd, 10, 8);
            let mut buf = plain.clone();
            buf.resize(64, 0);
            assert!(receiver.protect_rtp_at(&mut buf, plain.len(), 11).is_err());
        }
    }

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

    const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
                                0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

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

    #[test]
    fn index_estimation() {
        assert_eq!(estimate_index(None, 65000), Some(65000));
        // Early in ROC 0 a high sequence number is ahead, never ROC -1.
        assert_eq!(estimate_index(Some(10), 65000), Some(65000));
        // Forward wrap.
        assert_eq!(estimate_index(Some(65535), 0), Some(1 << 16));
        assert_eq!(estimate_index(Some(65000), 100), Some((1 << 16) + 100));
        // Late packet from the previous ROC.
        assert_eq!(estimate_index(Some((1 << 16) + 5), 65530), Some(65530));
        assert_eq!(
            estimate_index(Some((3 << 16) + 100), 40000),
            Some((2 << 16) + 40000)
        );
        // From the upper half, a number more than 2^15 behind is the next ROC.
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 40001),
            Some((2 << 16) + 40001)
        );
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 7000),
            Some((3 << 16) + 7000)
        );
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 7232),
            Some((2 << 16) + 7232)
        );
        assert_eq!(
            estimate_index(Some((2 << 16) + 40000), 7231),
            Some((3 << 16) + 7231)
        );
        // ROC overflow.
        assert_eq!(
            estimate_index(Some((u64::from(u32::MAX) << 16) + 65535), 0),
            None
        );
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check(3000).is_ok());
        w.accept(3000);
        assert!(matches!(w.check(3000), Err(SrtpError::Replayed)));
        assert!(w.check(2999).is_ok());
        assert!(w.check(3001).is_ok());
        w.accept(3010);
        assert!(matches!(w.check(3000), Err(SrtpError::Replayed)));
        assert!(w.check(3005).is_ok());
        w.accept(3005);
        assert!(matches!(w.check(3005), Err(SrtpError::Replayed)));
        // Oldest index still inside the window, and the first one outside.
        assert!(w.check(3010 - 1023).is_ok());
        assert!(matches!(w.check(3010 - 1024), Err(SrtpError::Replayed)));
        // Moving forward, the slots of skipped indices are unseen again; the slot of
        // an index that left the window is reused.
        w.accept(3010 + 1000);
        assert!(matches!(w.check(3005), Err(SrtpError::Replayed)));
        assert!(w.check(3010 + 999).is_ok());
        assert!(matches!(w.check(3010), Err(SrtpError::Replayed)));
        w.accept(3010 + 1029);
        assert!(w.check(3010 + 1024).is_ok());
        assert!(w.check(3010 + 1028).is_ok());
        assert!(matches!(w.check(3010 + 1029), Err(SrtpError::Replayed)));
        assert!(matches!(w.check(3010 + 1000), Err(SrtpError::Replayed)));
        // A jump beyond the window forgets everything older.
        w.accept(9000);
        assert!(matches!(w.check(4039), Err(SrtpError::Replayed)));
        assert!(w.check(8999).is_ok());
        assert!(w.check(9000 - 1023).is_ok());
        assert!(matches!(w.check(9000), Err(SrtpError::Replayed)));
    }

    #[test]
    fn round_trip_both_profiles_across_wrap() {
        for profile in PROFILES {
            let m = material(profile, 9);
            let mut tx = SrtpContext::new(&m).unwrap();
            let mut rx = SrtpContext::new(&m).unwrap();
            for (k, seq) in (65500u32..65500 + 100).map(|s| s as u16).enumerate() {
                let ssrc = 0x1000 + (k % 3) as u32;
                let plain = rtp_packet(ssrc, seq, k * 7 % 300);
                let mut buf = plain.clone();
                buf.resize(plain.len() + profile.rtp_overhead(), 0);
                let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
                assert_eq!(n, buf.len());
                if plain.len() > 12 {
                    assert_ne!(buf[12..plain.len()], plain[12..], "payload encrypted");
                }
                let n = rx.unprotect_rtp(&mut buf).unwrap();
                assert_eq!(buf[..n], plain[..]);
            }
            assert_eq!(rx.streams.len(), 3);
            for s in &rx.streams {
                assert_eq!(s.rx_rtp.highest.map(|h| h >> 16), Some(1), "ROC advanced");
            }
            for k in 0..20u32 {
                let mut plain = hex(RFC7714_RTCP);
                plain[4..8].copy_from_slice(&(0x1000 + k % 2).to_be_bytes());
                let mut buf = plain.clone();
                buf.resize(plain.len() + profile.rtcp_overhead(), 0);
                let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
                assert_eq!(n, buf.len());
                let word = u32::from_be_bytes(
                    buf[n - if profile == SrtpProfile::AeadAes128Gcm {
                        4
                    } else {
                        14
                    }..][..4]
                        .try_into()
                        .unwrap(),
                );
                assert_eq!(
                    word,
                    0x8000_0000 | (k / 2 + 1),
                    "index starts at 1, per SSRC"
                );
                let n = rx.unprotect_rtcp(&mut buf).unwrap();
                assert_eq!(buf[..n], plain[..]);
            }
        }
    }

    #[test]
    fn failures_leave_state_unchanged() {
        for profile in PROFILES {
            let m = material(profile, 1);
            let mut tx = SrtpContext::new(&m).unwrap();
            let mut rx = SrtpContext::new(&m).unwrap();
            let mut protect = |seq: u16| {
                let plain = rtp_packet(42, seq, 50);
                let mut buf = plain.clone();
                buf.resize(plain.len() + profile.rtp_overhead(), 0);
                tx.protect_rtp(&mut buf, plain.len()).unwrap();
                buf
            };
            let first = protect(65535);
            let mut b = first.clone();
            rx.unprotect_rtp(&mut b).unwrap();
            let second = protect(0);
            let before = rx.streams.clone();
            // Tag and payload tampering, for the packet that would advance the ROC.
            for at in [second.len() - 1, 20, 2] {
                let mut b = second.clone();
                b[at] ^= 0x01;
                assert!(matches!(
                    rx.unprotect_rtp(&mut b),
                    Err(SrtpError::AuthenticationFailed)
                ));
                assert_eq!(rx.streams, before);
            }
            // Unknown SSRC with a bad tag creates no state.
            let mut b = second.clone();
            b[8] ^= 0xff;
            assert!(rx.unprotect_rtp(&mut b).is_err());
            assert_eq!(rx.streams, before);
            // The genuine packet still works, then is a replay.
            let mut b = second.clone();
            rx.unprotect_rtp(&mut b).unwrap();
            let after = rx.streams.clone();
            let mut b = second.clone();
            assert!(matches!(rx.unprotect_rtp(&mut b), Err(SrtpError::Replayed)));
            let mut b = first.clone();
            assert!(matches!(rx.unprotect_rtp(&mut b), Err(SrtpError::Replayed)));
            assert_eq!(rx.streams, after);
        }
    }

    #[test]
    fn size_errors() {
        for profile in PROFILES {
            let mut ctx = SrtpContext::new(&material(profile, 2)).unwrap();
            let plain = rtp_packet(1, 1, 10);
            let mut buf = plain.clone();
            buf.resize(plain.len() + profile.rtp_overhead() - 1, 0);
            assert!(matches!(
                ctx.protect_rtp(&mut buf, plain.len()),
                Err(SrtpError::BufferTooSmall)
            ));
            assert!(matches!(
                ctx.protect_rtp(&mut buf, plain.len() + 100),
                Err(SrtpError::BufferTooSmall)
            ));
            assert!(matches!(
                ctx.protect_rtp(&mut [0x80; 40], 11),
                Err(SrtpError::TooShort)
            ));
            assert!(matches!(
                ctx.protect_rtp(&mut [0x40; 40], 12),
                Err(SrtpError::Malformed)
            ));
            assert!(matches!(
                ctx.protect_rtcp(&mut [0x80; 40], 7),
                Err(SrtpError::TooShort)
            ));
            assert!(matches!(
                ctx.protect_rtcp(&mut [0x00; 40], 8),
                Err(SrtpError::Malformed)
            ));
            assert!(matches!(
                ctx.unprotect_rtp(&mut [0x80; 12]),
                Err(SrtpError::TooShort)
            ));
            assert!(matches!(
                ctx.unprotect_rtcp(&mut [0x80; 21]),
                Err(SrtpError::TooShort)
            ));
            let mut huge = vec![0x80u8; MAX_PACKET_LEN + 100];
            assert!(matches!(
                ctx.protect_rtp(&mut huge, MAX_PACKET_LEN + 1),
                Err(SrtpError::TooLarge)
            ));
            assert!(matches!(
                ctx.unprotect_rtp(&mut huge),
                Err(SrtpError::TooLarge)
            ));
            assert!(matches!(
                ctx.protect_rtcp(&mut huge, MAX_PACKET_LEN + 1),
                Err(SrtpError::TooLarge)
            ));
            assert!(matches!(
                ctx.unprotect_rtcp(&mut huge),
                Err(SrtpError::TooLarge)
            ));
            assert!(ctx.streams.is_empty());
        }
    }

    #[test]
    fn srtcp_index_exhaustion() {
        let mut ctx = SrtpContext::new(&material(SrtpProfile::AeadAes128Gcm, 5)).unwrap();
        let mut state = StreamState::new(0x4d61_7273);
        state.tx_rtcp_index = MAX_SRTCP_INDEX - 1;
        ctx.commit(None, state);
        let plain = hex(RFC7714_RTCP);
        let mut buf = plain.clone();
        buf.resize(plain.len() + 20, 0);
        ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
        buf[..plain.len()].copy_from_slice(&plain);
        assert!(matches!(
            ctx.protect_rtcp(&mut buf, plain.len()),
            Err(SrtpError::KeyExhausted)
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        for profile in PROFILES {
            let mut ctx = SrtpContext::new(&material(profile, 4)).unwrap();
            let mut buf = [0u8; 200];
            for _ in 0..20_000 {
                let len = rng.random_range(0..buf.len());
                rng.fill(&mut buf[..len]);
                if rng.random_bool(0.5) {
                    buf[0] = 0x80 | (buf[0] & 0x3f);
                }
                let _ = ctx.unprotect_rtp(&mut buf[..len]);
                let _ = ctx.unprotect_rtcp(&mut buf[..len]);
                let room = rng.random_range(0..buf.len());
                let _ = ctx.protect_rtp(&mut buf[..room], len);
                let _ = ctx.protect_rtcp(&mut buf[..room], len);
            }
        }
    }

    #[test]
    fn context_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<SrtpContext>();
    }
}
