//! RTP packet headers (RFC 3550) and header extensions (RFC 8285): parsing, in-place
//! rewriting of the fields a forwarder changes (SSRC, sequence number, timestamp, payload
//! type), sequence-number arithmetic and the receive statistics behind receiver reports.
//! Everything works on borrowed slices and never allocates. This module does not decide
//! what to rewrite (the forwarding table does) and knows nothing about SRTP or codecs.
//!
//! Finding an extension element is here; writing one (and the transport-wide sequence
//! number element) is in `extension.rs`.

mod extension;

pub use self::extension::{ExtensionError, set_transport_seq, transport_seq};

use std::ops::Range;

/// Length of the fixed RTP header (no CSRCs, no extension).
pub const FIXED_HEADER_LEN: usize = 12;

/// `defined by profile` value of the RFC 8285 one-byte header-extension form.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;

/// Why an RTP packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("packet shorter than the fixed RTP header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    /// The CSRC list or the header extension runs past the end of the packet.
    #[error("CSRC list or header extension runs past the end of the packet")]
    Truncated,
    /// The padding count is zero or larger than the payload.
    #[error("invalid RTP padding length")]
    BadPadding,
}

/// Where a header extension's data lies in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionBlock {
    /// The 16-bit `defined by profile` field (0xBEDE, 0x100x, or something else).
    pub profile: u16,
    /// Offset of the extension data (after the 4-byte extension header) in the packet.
    pub offset: usize,
    /// Length of the extension data in bytes (a multiple of 4).
    pub len: usize,
}

impl ExtensionBlock {
    /// The extension data's byte range within the packet.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// A parsed RTP header. Offsets refer to the packet it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    /// The P bit.
    pub padding: bool,
    /// Number of padding bytes at the end of the packet (including the count byte);
    /// 0 when there is no padding or when the header was read with [`parse_header`].
    pub padding_len: u8,
    /// Fixed header + CSRCs + extension header and data.
    pub header_len: usize,
    pub extension: Option<ExtensionBlock>,
}

impl RtpHeader {
    /// The payload's byte range in a packet of `pkt_len` bytes: after the header, before
    /// the padding. Never inverted, even for a `pkt_len` other than the parsed packet's.
    pub fn payload_range(&self, pkt_len: usize) -> Range<usize> {
        let end = pkt_len.saturating_sub(usize::from(self.padding_len));
        self.header_len..end.max(self.header_len)
    }

    /// The CSRC identifiers in `pkt` (the packet this header was parsed from).
    pub fn csrcs<'a>(&self, pkt: &'a [u8]) -> impl Iterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count);
        pkt.get(FIXED_HEADER_LEN..end)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(be32)
    }
}

/// Reads a big-endian u32 from the first four bytes of `b`; callers pass 4-byte chunks.
fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// Parses the RTP header without looking at padding. Use this for packets whose payload
/// (and so the padding count in its last byte) is still encrypted, as in SRTP.
pub fn parse_header(pkt: &[u8]) -> Result<RtpHeader, RtpError> {
    let fixed: &[u8; FIXED_HEADER_LEN] = pkt.first_chunk().ok_or(RtpError::TooShort)?;
    let version = fixed[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let padding = fixed[0] & 0x20 != 0;
    let has_extension = fixed[0] & 0x10 != 0;
    let csrc_count = fixed[0] & 0x0f;
    let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
    if pkt.len() < header_len {
        return Err(RtpError::Truncated);
    }
    let extension = if has_extension {
        let ext_header = pkt
            .get(header_len..header_len + 4)
            .ok_or(RtpError::Truncated)?;
        let profile = u16::from_be_bytes([ext_header[0], ext_header[1]]);
        let len = 4 * usize::from(u16::from_be_bytes([ext_header[2], ext_header[3]]));
        let offset = header_len + 4;
        if pkt.len() < offset + len {
            return Err(RtpError::Truncated);
        }
        header_len = offset + len;
        Some(ExtensionBlock {
            profile,
            offset,
            len,
        })
    } else {
        None
    };
    Ok(RtpHeader {
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7f,
        sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        csrc_count,
        padding,
        padding_len: 0,
        header_len,
        extension,
    })
}

/// Parses a plaintext RTP packet: version 2, CSRC list and extension within bounds, and,
/// when the P bit is set, a padding count of at least 1 that fits after the header.
pub fn parse(pkt: &[u8]) -> Result<RtpHeader, RtpError> {
    let mut hdr = parse_header(pkt)?;
    if hdr.padding {
        let count = *pkt.last().ok_or(RtpError::BadPadding)?;
        if count == 0 || hdr.header_len + usize::from(count) > pkt.len() {
            return Err(RtpError::BadPadding);
        }
        hdr.padding_len = count;
    }
    Ok(hdr)
}

/// The writable fixed header of `pkt`, or `TooShort`.
fn fixed_mut(pkt: &mut [u8]) -> Result<&mut [u8; FIXED_HEADER_LEN], RtpError> {
    pkt.first_chunk_mut().ok_or(RtpError::TooShort)
}

/// Overwrites the SSRC. Returns `TooShort` (and leaves `pkt` untouched) below 12 bytes.
pub fn set_ssrc(pkt: &mut [u8], ssrc: u32) -> Result<(), RtpError> {
    fixed_mut(pkt)?[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(())
}

/// Overwrites the sequence number. Returns `TooShort` (and leaves `pkt` untouched) below
/// 12 bytes.
pub fn set_sequence(pkt: &mut [u8], sequence: u16) -> Result<(), RtpError> {
    fixed_mut(pkt)?[2..4].copy_from_slice(&sequence.to_be_bytes());
    Ok(())
}

/// Overwrites the timestamp. Returns `TooShort` (and leaves `pkt` untouched) below 12
/// bytes.
pub fn set_timestamp(pkt: &mut [u8], timestamp: u32) -> Result<(), RtpError> {
    fixed_mut(pkt)?[4..8].copy_from_slice(&timestamp.to_be_bytes());
    Ok(())
}

/// Overwrites the 7-bit payload type, keeping the marker bit; the top bit of
/// `payload_type` is ignored. Returns `TooShort` (and leaves `pkt` untouched) below 12
/// bytes.
pub fn set_payload_type(pkt: &mut [u8], payload_type: u8) -> Result<(), RtpError> {
    let fixed = fixed_mut(pkt)?;
    fixed[1] = (fixed[1] & 0x80) | (payload_type & 0x7f);
    Ok(())
}

/// Sets or clears the marker bit. Returns `TooShort` (and leaves `pkt` untouched) below 12
/// bytes.
pub fn set_marker(pkt: &mut [u8], marker: bool) -> Result<(), RtpError> {
    let fixed = fixed_mut(pkt)?;
    fixed[1] = (fixed[1] & 0x7f) | if marker { 0x80 } else { 0 };
    Ok(())
}

/// Finds the RFC 8285 header-extension element with `id` and returns its data.
///
/// Supports the one-byte form (profile 0xBEDE, ids 1..=14; id 15 ends parsing) and the
/// two-byte form (profile 0x100X, ids 1..=255). Padding bytes (0) are skipped. Returns
/// `None` for other profiles, id 0, or an element that runs past the extension block.
pub fn extension_element<'a>(pkt: &'a [u8], hdr: &RtpHeader, id: u8) -> Option<&'a [u8]> {
    let ext = hdr.extension?;
    let data = pkt.get(ext.range())?;
    if id == 0 {
        return None;
    }
    let two_byte = if ext.profile == ONE_BYTE_PROFILE {
        false
    } else if ext.profile & 0xfff0 == 0x1000 {
        true
    } else {
        return None;
    };
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        if b == 0 {
            i += 1;
            continue;
        }
        let (element_id, len, start) = if two_byte {
            (b, usize::from(*data.get(i + 1)?), i + 2)
        } else {
            let element_id = b >> 4;
            if element_id == 15 {
                return None;
            }
            (element_id, usize::from(b & 0x0f) + 1, i + 1)
        };
        let element = data.get(start..start + len)?;
        if element_id == id {
            return Some(element);
        }
        i = start + len;
    }
    None
}

/// True when sequence number `a` is newer than `b` in modulo-2^16 arithmetic, i.e. `a`
/// is less than half the number space ahead of `b`. Equal numbers are not newer.
pub fn is_newer(a: u16, b: u16) -> bool {
    let diff = a.wrapping_sub(b);
    diff != 0 && diff < 0x8000
}

/// Signed distance from `b` to `a` in modulo-2^16 arithmetic (positive when `a` is newer).
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// Sequence jump (forward) beyond which a packet is treated as a possible restart.
const MAX_DROPOUT: u16 = 3000;
/// Backward distance within which a packet is treated as reordered, not a restart.
const MAX_MISORDER: u16 = 100;

/// Receive statistics for one RTP source, as RFC 3550 Appendix A.1, A.3 and A.8 keep
/// them: extended highest sequence number, expected and received counts, loss since the
/// last report and interarrival jitter.
///
/// No probation period: the first packet starts the statistics. A forward jump larger
/// than 3000 or a backward jump larger than 100 is ignored unless the next packet follows
/// it, in which case the source is assumed to have restarted and the statistics reset.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    started: bool,
    max_seq: u16,
    /// Sequence-number wraps, shifted left by 16 (RFC 3550 `cycles`).
    cycles: u32,
    base_seq: u32,
    /// The sequence number that would confirm a restart; above u16 range when none.
    bad_seq: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    last_transit: Option<u32>,
    /// Jitter scaled by 16 (RFC 3550 A.8 integer form).
    jitter_q4: u32,
}

/// What a receiver report block needs, from [`SeqTracker::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptionReport {
    /// Highest sequence number received, extended with the wrap count.
    pub extended_highest_seq: u32,
    /// Packets expected since the first one.
    pub expected: u64,
    /// Packets received (duplicates included, as RFC 3550 counts them).
    pub received: u64,
    /// `expected - received`, clamped to the 24-bit signed range of a report block.
    pub cumulative_lost: i32,
    /// Loss since the previous report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

impl SeqTracker {
    /// A tracker that has seen no packet yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn restart(&mut self, seq: u16) {
        *self = SeqTracker {
            started: true,
            max_seq: seq,
            cycles: 0,
            base_seq: u32::from(seq),
            bad_seq: u32::from(u16::MAX) + 2,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter_q4: 0,
        };
    }

    /// Records a packet's sequence number (RFC 3550 A.1 `update_seq`). Returns `false`
    /// when the packet is ignored as an unconfirmed large jump.
    pub fn update(&mut self, seq: u16) -> bool {
        if !self.started {
            self.restart(seq);
            self.received = 1;
            return true;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            if u32::from(seq) == self.bad_seq {
                self.restart(seq);
            } else {
                self.bad_seq = u32::from(seq.wrapping_add(1));
                return false;
            }
        }
        // Otherwise a duplicate or reordered packet: counted, max unchanged.
        self.received += 1;
        true
    }

    /// Records a packet: its sequence number, then, if accepted, its jitter sample.
    /// `arrival` is the arrival time converted to the stream's RTP clock (any origin);
    /// `rtp_timestamp` is the packet's timestamp. Returns what [`Self::update`] returns.
    pub fn record(&mut self, seq: u16, rtp_timestamp: u32, arrival: u32) -> bool {
        if !self.update(seq) {
            return false;
        }
        let transit = arrival.wrapping_sub(rtp_timestamp);
        if let Some(last) = self.last_transit {
            let d = transit.wrapping_sub(last) as i32;
            let d = d.unsigned_abs();
            // J += (|D| - J) / 16, kept scaled by 16 (RFC 3550 A.8).
            self.jitter_q4 = self
                .jitter_q4
                .wrapping_add(d)
                .wrapping_sub((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        true
    }

    /// Highest sequence number seen, extended with the wrap count (0 before any packet).
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected since the first one (0 before any packet).
    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        // Saturating: the extended maximum only falls below base_seq if the 32-bit wrap
        // count itself wraps (after 2^32 packets).
        (u64::from(self.cycles) + u64::from(self.max_seq) + 1)
            .saturating_sub(u64::from(self.base_seq))
    }

    /// Packets received.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// `expected - received` (negative when duplicates outnumber losses).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// Builds the numbers for a report block and starts a new loss interval (RFC 3550
    /// A.3): `fraction_lost` covers the packets since the previous call.
    pub fn report(&mut self) -> ReceptionReport {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior.min(expected);
        let received_interval = self.received - self.received_prior.min(self.received);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            // lost_interval <= expected_interval, so the quotient is at most 256; 256
            // only when nothing arrived, reported as 255.
            ((lost_interval as u64) << 8)
                .checked_div(expected_interval)
                .map_or(0, |f| f.min(255) as u8)
        };
        ReceptionReport {
            extended_highest_seq: self.extended_highest_seq(),
            expected,
            received: self.received,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            fraction_lost,
            jitter: self.jitter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(cc: u8, ext: Option<(u16, &[u8])>, payload: &[u8], pad: Option<u8>) -> Vec<u8> {
        let mut p = vec![
            0x80 | cc | if ext.is_some() { 0x10 } else { 0 } | if pad.is_some() { 0x20 } else { 0 },
            0x80 | 96,
            0x12,
            0x34,
            0xde,
            0xad,
            0xbe,
            0xef,
            0xca,
            0xfe,
            0xba,
            0xbe,
        ];
        for i in 0..cc {
            p.extend_from_slice(&(0x1000_0000u32 + u32::from(i)).to_be_bytes());
        }
        if let Some((profile, data)) = ext {
            assert_eq!(data.len() % 4, 0);
            p.extend_from_slice(&profile.to_be_bytes());
            p.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(data);
        }
        p.extend_from_slice(payload);
        if let Some(n) = pad {
            p.extend(std::iter::repeat_n(0, usize::from(n) - 1));
            p.push(n);
        }
        p
    }

    #[test]
    fn parses_fixed_fields() {
        let p = packet(0, None, b"hello", None);
        let h = parse(&p).unwrap();
        assert!(h.marker);
        assert_eq!(h.payload_type, 96);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 0xdead_beef);
        assert_eq!(h.ssrc, 0xcafe_babe);
        assert_eq!(h.header_len, 12);
        assert_eq!(&p[h.payload_range(p.len())], b"hello");
        assert_eq!(h.extension, None);
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        let ext = [0x10, 0xaa, 0x21, 0xbb, 0xcc, 0, 0, 0];
        let p = packet(2, Some((ONE_BYTE_PROFILE, &ext)), b"payload", Some(3));
        let h = parse(&p).unwrap();
        assert_eq!(h.csrc_count, 2);
        assert_eq!(h.csrcs(&p).collect::<Vec<_>>(), [0x1000_0000, 0x1000_0001]);
        assert_eq!(h.header_len, 12 + 8 + 4 + 8);
        let e = h.extension.unwrap();
        assert_eq!(e.profile, ONE_BYTE_PROFILE);
        assert_eq!(&p[e.range()], &ext);
        assert!(h.padding);
        assert_eq!(h.padding_len, 3);
        assert_eq!(&p[h.payload_range(p.len())], b"payload");
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(&[]), Err(RtpError::TooShort));
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort));
        let mut p = packet(0, None, b"x", None);
        p[0] = 0x40;
        assert_eq!(parse(&p), Err(RtpError::BadVersion(1)));
        // Three CSRCs announced, one present.
        let mut p = packet(1, None, b"", None);
        p[0] = (p[0] & 0xf0) | 3;
        assert_eq!(parse(&p), Err(RtpError::Truncated));
        // Extension length says 2 words, 1 present.
        let mut p = packet(0, Some((ONE_BYTE_PROFILE, &[0x10, 1, 0, 0])), b"", None);
        p[15] = 2;
        assert_eq!(parse(&p), Err(RtpError::Truncated));
        // X bit without room for the extension header.
        let mut p = packet(0, None, b"", None);
        p[0] |= 0x10;
        assert_eq!(parse(&p), Err(RtpError::Truncated));
        // Padding count of zero, and one larger than the payload.
        let mut p = packet(0, None, b"abc", Some(1));
        *p.last_mut().unwrap() = 0;
        assert_eq!(parse(&p), Err(RtpError::BadPadding));
        *p.last_mut().unwrap() = 5;
        assert_eq!(parse(&p), Err(RtpError::BadPadding));
        // P bit on a bare header: no count byte at all.
        let mut p = packet(0, None, b"", None);
        p[0] |= 0x20;
        assert_eq!(parse(&p), Err(RtpError::BadPadding));
        // parse_header ignores padding (encrypted payloads).
        assert!(parse_header(&p).is_ok());
    }

    #[test]
    fn padding_may_fill_the_whole_payload() {
        let p = packet(0, None, b"", Some(4));
        let h = parse(&p).unwrap();
        assert_eq!(h.payload_range(p.len()), 12..12);
    }

    #[test]
    fn rewriters_change_only_their_field() {
        let orig = packet(1, None, b"data", None);
        let mut p = orig.clone();
        set_ssrc(&mut p, 0x0102_0304).unwrap();
        set_sequence(&mut p, 0xfffe).unwrap();
        set_timestamp(&mut p, 7).unwrap();
        set_payload_type(&mut p, 111).unwrap();
        let h = parse(&p).unwrap();
        assert_eq!(h.ssrc, 0x0102_0304);
        assert_eq!(h.sequence, 0xfffe);
        assert_eq!(h.timestamp, 7);
        assert_eq!(h.payload_type, 111);
        assert!(h.marker, "marker kept");
        assert_eq!(p[0], orig[0]);
        assert_eq!(&p[12..], &orig[12..]);
        set_marker(&mut p, false).unwrap();
        let h = parse(&p).unwrap();
        assert!(!h.marker);
        assert_eq!(h.payload_type, 111);
        set_payload_type(&mut p, 0xff).unwrap();
        assert_eq!(parse(&p).unwrap().payload_type, 0x7f);
        assert!(!parse(&p).unwrap().marker);
    }

    #[test]
    fn rewriters_reject_short_input_untouched() {
        let mut short = [0x80u8; 11];
        assert_eq!(set_ssrc(&mut short, 1), Err(RtpError::TooShort));
        assert_eq!(set_sequence(&mut short, 1), Err(RtpError::TooShort));
        assert_eq!(set_timestamp(&mut short, 1), Err(RtpError::TooShort));
        assert_eq!(set_payload_type(&mut short, 1), Err(RtpError::TooShort));
        assert_eq!(set_marker(&mut short, true), Err(RtpError::TooShort));
        assert_eq!(short, [0x80u8; 11]);
        assert_eq!(set_ssrc(&mut [], 1), Err(RtpError::TooShort));
    }

    #[test]
    fn one_byte_extension_elements() {
        // id 1 len 1, padding, id 3 len 4, id 2 len 2.
        let ext = [0x10, 0xaa, 0x00, 0x33, 1, 2, 3, 4, 0x21, 9, 8, 0];
        let p = packet(0, Some((ONE_BYTE_PROFILE, &ext)), b"x", None);
        let h = parse(&p).unwrap();
        assert_eq!(extension_element(&p, &h, 1), Some(&[0xaa][..]));
        assert_eq!(extension_element(&p, &h, 3), Some(&[1, 2, 3, 4][..]));
        assert_eq!(extension_element(&p, &h, 2), Some(&[9, 8][..]));
        assert_eq!(extension_element(&p, &h, 4), None);
        assert_eq!(extension_element(&p, &h, 0), None);
    }

    #[test]
    fn one_byte_extension_stops_at_id_15_and_overrun() {
        let ext = [0xf0, 0x10, 0xaa, 0];
        let p = packet(0, Some((ONE_BYTE_PROFILE, &ext)), b"", None);
        let h = parse(&p).unwrap();
        assert_eq!(extension_element(&p, &h, 1), None);
        // Element claims 16 bytes in a 4-byte block.
        let ext = [0x1f, 1, 2, 3];
        let p = packet(0, Some((ONE_BYTE_PROFILE, &ext)), b"", None);
        let h = parse(&p).unwrap();
        assert_eq!(extension_element(&p, &h, 1), None);
    }

    #[test]
    fn two_byte_extension_elements() {
        // id 200 len 0, id 5 len 3, padding.
        let ext = [200, 0, 5, 3, 7, 7, 7, 0];
        let p = packet(0, Some((0x1000, &ext)), b"x", None);
        let h = parse(&p).unwrap();
        assert_eq!(extension_element(&p, &h, 200), Some(&[][..]));
        assert_eq!(extension_element(&p, &h, 5), Some(&[7, 7, 7][..]));
        assert_eq!(extension_element(&p, &h, 6), None);
        // Length byte missing at the end of the block.
        let ext = [0, 0, 0, 9];
        let p = packet(0, Some((0x1003, &ext)), b"", None);
        let h = parse(&p).unwrap();
        assert_eq!(extension_element(&p, &h, 9), None);
        // Unknown profile.
        let p = packet(0, Some((0x1234, &[0x10, 1, 0, 0])), b"", None);
        let h = parse(&p).unwrap();
        assert_eq!(extension_element(&p, &h, 1), None);
    }

    #[test]
    fn sequence_comparison() {
        assert!(is_newer(1, 0));
        assert!(is_newer(0, 65535));
        assert!(is_newer(100, 65000));
        assert!(!is_newer(0, 1));
        assert!(!is_newer(5, 5));
        assert!(!is_newer(65000, 100));
        assert_eq!(seq_diff(2, 65534), 4);
        assert_eq!(seq_diff(65534, 2), -4);
    }

    #[test]
    fn tracker_counts_wraps_and_losses() {
        let mut t = SeqTracker::new();
        assert_eq!(t.expected(), 0);
        // 65530..=65535, 0..=9 with 3 and 4 missing.
        for s in (65530u32..65546).map(|s| s as u16) {
            if s != 3 && s != 4 {
                assert!(t.update(s));
            }
        }
        assert_eq!(t.extended_highest_seq(), 65536 + 9);
        assert_eq!(t.expected(), 16);
        assert_eq!(t.received(), 14);
        let r = t.report();
        assert_eq!(r.cumulative_lost, 2);
        assert_eq!(r.fraction_lost, (2 * 256 / 16) as u8);
        assert_eq!(r.extended_highest_seq, 65545);
        // Late arrival of 3: received catches up, next interval has negative loss -> 0.
        assert!(t.update(3));
        assert_eq!(
            t.extended_highest_seq(),
            65545,
            "reordered packet is not a new max"
        );
        let r = t.report();
        assert_eq!(r.cumulative_lost, 1);
        assert_eq!(r.fraction_lost, 0);
        // 10 expected, 5 received.
        for s in [10u16, 12, 14, 16, 18, 19] {
            t.update(s);
        }
        let r = t.report();
        assert_eq!(r.expected, 26);
        assert_eq!(r.fraction_lost, (4 * 256 / 10) as u8);
    }

    #[test]
    fn tracker_resyncs_after_confirmed_jump() {
        let mut t = SeqTracker::new();
        for s in 0..10u16 {
            t.update(s);
        }
        assert!(!t.update(40000), "single big jump ignored");
        assert_eq!(t.extended_highest_seq(), 9);
        assert!(
            t.update(40001),
            "second sequential packet confirms a restart"
        );
        assert_eq!(t.extended_highest_seq(), 40001);
        assert_eq!(t.expected(), 1);
        assert_eq!(t.received(), 1);
    }

    #[test]
    fn tracker_jitter_follows_rfc3550() {
        let mut t = SeqTracker::new();
        // Constant transit: no jitter.
        for i in 0..10u16 {
            t.record(i, u32::from(i) * 3000, 1000 + u32::from(i) * 3000);
        }
        assert_eq!(t.jitter(), 0);
        // Alternate arrival offsets of +-160: |D| = 320 each packet, J converges to 320.
        for i in 10..2000u16 {
            let offset = if i % 2 == 0 { 1160 } else { 840 };
            t.record(i, u32::from(i) * 3000, offset + u32::from(i) * 3000);
        }
        assert!((315..=320).contains(&t.jitter()), "jitter {}", t.jitter());
        // Reference computation in floating point for a short irregular run.
        let mut t = SeqTracker::new();
        let arrivals = [0u32, 3100, 5900, 9050, 12000, 15400, 17990];
        let mut j = 0f64;
        let mut prev: Option<i64> = None;
        for (i, a) in arrivals.iter().enumerate() {
            let ts = i as u32 * 3000;
            t.record(i as u16, ts, *a);
            let transit = i64::from(*a) - i64::from(ts);
            if let Some(p) = prev {
                j += ((transit - p).abs() as f64 - j) / 16.0;
            }
            prev = Some(transit);
        }
        assert!(
            (i64::from(t.jitter()) - j as i64).abs() <= 1,
            "{} vs {j}",
            t.jitter()
        );
    }
}
