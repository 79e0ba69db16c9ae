//! SRTP and SRTCP transforms (RFC 3711, RFC 7714): keyed once per session, in place,
//! no allocation per packet. Owns the key schedule, per-SSRC rollover and replay state.
//! It does not own sockets, routing or the DTLS handshake that produces the keys.
//!
//! This file holds [`SrtpContext`]: per-SSRC state, header checks and the packet
//! layouts. `kdf.rs` derives the session keys, `cm.rs` and `gcm.rs` are the two
//! ciphers (AES-CM with HMAC-SHA1, AES-GCM), `replay.rs` the replay window and the
//! index estimation.

mod cm;
mod gcm;
mod kdf;
mod replay;

pub use cascade_command::keys::{SrtpKeyingMaterial, SrtpProfile};

use openssl::error::ErrorStack;

use self::cm::AesCm;
use self::gcm::{AesGcm, GCM_TAG_LEN};
use self::kdf::{SessionKeys, derive_session_keys};
use self::replay::{ReplayWindow, estimate_index};
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

/// Length of the E flag + SRTCP index word.
const SRTCP_INDEX_LEN: usize = 4;
/// Largest SRTCP index (31 bits).
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;
/// Fixed RTCP header bytes left in the clear: version/count/type/length + sender SSRC.
const RTCP_CLEAR_LEN: usize = 8;

/// The keyed cipher of one transform.
enum Transform {
    /// AES-128 counter mode + HMAC-SHA1-80 (RFC 3711).
    AesCm(AesCm),
    /// AEAD AES-128-GCM (RFC 7714).
    Gcm(AesGcm),
}

impl Transform {
    fn new(profile: SrtpProfile, keys: &SessionKeys) -> Result<Self, ErrorStack> {
        Ok(match profile {
            SrtpProfile::Aes128CmHmacSha1_80 => Transform::AesCm(AesCm::new(keys)?),
            SrtpProfile::AeadAes128Gcm => Transform::Gcm(AesGcm::new(keys)?),
        })
    }
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
            .highest()?;
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
        match &mut self.rtp {
            Transform::AesCm(cm) => cm.seal_rtp(packet, hdr.header_len, hdr.ssrc, index, tail)?,
            Transform::Gcm(gcm) => {
                gcm.seal_rtp(packet, hdr.header_len, hdr.ssrc, roc, hdr.sequence, tail)?;
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
            estimate_index(state.rx_rtp.highest(), hdr.sequence).ok_or(SrtpError::KeyExhausted)?;
        state.rx_rtp.check(index)?;
        let roc = (index >> 16) as u32;
        // body_end <= buf.len() and header_len <= body_end, checked above.
        let (packet, tag) = buf.split_at_mut(body_end);
        match &mut self.rtp {
            Transform::AesCm(cm) => cm.open_rtp(packet, hdr.header_len, hdr.ssrc, index, tag)?,
            Transform::Gcm(gcm) => {
                gcm.open_rtp(packet, hdr.header_len, hdr.ssrc, roc, hdr.sequence, tag)?;
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
            Transform::AesCm(cm) => cm.seal_rtcp(packet, ssrc, index, &e_index, tail)?,
            Transform::Gcm(gcm) => gcm.seal_rtcp(packet, ssrc, index, &e_index, tail)?,
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
            Transform::AesCm(cm) => cm.open_rtcp(buf, body_end, ssrc, index, encrypted)?,
            Transform::Gcm(gcm) => {
                gcm.open_rtcp(buf, body_end, ssrc, index, &e_index, encrypted)?
            }
        }
        state.rx_rtcp.accept(u64::from(index));
        self.commit(slot, state);
        Ok(body_end)
    }
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

    pub(super) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        assert_eq!(s.len() % 2, 0);
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(super) fn session_keys(enc: &str, salt: &str) -> SessionKeys {
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

    pub(super) fn material(profile: SrtpProfile, seed: u8) -> SrtpKeyingMaterial {
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

    pub(super) const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
                                0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

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
                assert_eq!(s.rx_rtp.highest().map(|h| h >> 16), Some(1), "ROC advanced");
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
