//! RTCP (RFC 3550), RTP/AVPF feedback (RFC 4585) and codec-control messages (RFC 5104,
//! REMB): walking compound packets, typed zero-copy views of the packets a forwarder
//! reads, builders that write into the caller's buffer, and in-place SSRC rewriting.
//! Nothing here allocates. It does not decide when to send feedback or what to do with
//! a report (control and the forwarding table do), and it does not parse the
//! transport-wide congestion-control feedback format (only frames it).
//!
//! This file walks compound packets, frames each packet (common header, padding) and
//! dispatches on its type ([`RtcpPacket::kind`]); each packet type has its own file
//! with its view, its parser and its builder: `report.rs` (SR, RR and report blocks),
//! `sdes.rs`, `bye.rs`, `nack.rs`, `transport_cc.rs`, `pli.rs`, `fir.rs`, `remb.rs`.
//! `ssrc_rewrite.rs` rewrites SSRCs in place.

mod bye;
mod fir;
mod nack;
mod pli;
mod remb;
mod report;
mod sdes;
mod ssrc_rewrite;
mod transport_cc;

pub use self::bye::Bye;
pub use self::fir::{Fir, FirEntries, write_fir};
pub use self::nack::{Nack, NackItems, write_nack};
pub use self::pli::{Pli, write_pli};
pub use self::remb::{Remb, write_remb};
pub use self::report::{
    ReceiverReport, ReportBlock, ReportBlocks, SenderReport, write_receiver_report,
    write_sender_report,
};
pub use self::sdes::Sdes;
pub use self::ssrc_rewrite::{rewrite_media_ssrc, rewrite_sender_ssrc};
pub use self::transport_cc::TransportCc;

use std::iter::FusedIterator;

/// Sender report.
pub const PT_SR: u8 = 200;
/// Receiver report.
pub const PT_RR: u8 = 201;
/// Source description.
pub const PT_SDES: u8 = 202;
/// Goodbye.
pub const PT_BYE: u8 = 203;
/// Application-defined.
pub const PT_APP: u8 = 204;
/// Transport-layer feedback (RFC 4585).
pub const PT_RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585).
pub const PT_PSFB: u8 = 206;
/// Extended reports (RFC 3611).
pub const PT_XR: u8 = 207;

/// RTPFB format: generic NACK.
pub const FMT_NACK: u8 = 1;
/// RTPFB format: transport-wide congestion control feedback.
pub const FMT_TRANSPORT_CC: u8 = 15;
/// PSFB format: picture loss indication.
pub const FMT_PLI: u8 = 1;
/// PSFB format: full intra request (RFC 5104).
pub const FMT_FIR: u8 = 4;
/// PSFB format: application layer feedback (carries REMB).
pub const FMT_AFB: u8 = 15;

/// Length of the common RTCP header (V/P/count, type, length).
const HEADER_LEN: usize = 4;
/// Length of a report block.
/// Most report blocks (or sources, or FIR entries) the 5-bit count field can announce.
const MAX_COUNT: usize = 31;

/// Why an RTCP packet could not be parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Shorter than the 4-byte common header (or the buffer is empty).
    #[error("RTCP packet shorter than its header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTCP version {0} is not 2")]
    BadVersion(u8),
    /// The length field points past the end of the buffer.
    #[error("RTCP length field runs past the end of the buffer")]
    LengthOverflow,
    /// The padding count is zero or larger than the packet body.
    #[error("invalid RTCP padding")]
    BadPadding,
    /// The body is too short (or of the wrong size) for what the packet announces.
    #[error("RTCP body does not match its type or count")]
    Truncated,
    /// The output buffer cannot hold the packet.
    #[error("buffer too small for the RTCP packet")]
    BufferTooSmall,
    /// More items than the packet's count or length fields can express.
    #[error("too many items for one RTCP packet")]
    TooManyItems,
    /// A packet that needs at least one item was given none.
    #[error("nothing to write")]
    Empty,
    /// The packet is not the RTPFB/PSFB feedback the operation needs.
    #[error("not an RTCP feedback packet")]
    NotFeedback,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let bytes: &[u8; 4] = b.get(at..)?.first_chunk()?;
    Some(u32::from_be_bytes(*bytes))
}

/// Walks the packets of a compound RTCP packet. Yields an error for an empty buffer and
/// stops after the first error.
pub fn packets(buf: &[u8]) -> RtcpIter<'_> {
    RtcpIter {
        buf,
        offset: 0,
        done: false,
    }
}

/// Iterator over the packets of a compound RTCP packet, from [`packets`].
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    buf: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.buf.get(self.offset..).unwrap_or(&[]);
        if rest.is_empty() && self.offset > 0 {
            self.done = true;
            return None;
        }
        match RtcpPacket::parse(rest) {
            Ok(mut p) => {
                p.offset = self.offset;
                self.offset += p.raw.len();
                Some(Ok(p))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for RtcpIter<'_> {}

/// One packet of a compound RTCP packet, framed but not yet interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpPacket<'a> {
    /// Report/source count, or the feedback message type (FMT) for RTPFB/PSFB.
    pub count_or_fmt: u8,
    pub packet_type: u8,
    /// The P bit; padding is already excluded from `body`.
    pub padding: bool,
    /// Everything after the 4-byte header, without padding.
    pub body: &'a [u8],
    /// The whole packet, header and padding included.
    pub raw: &'a [u8],
    /// Offset of `raw` in the buffer given to [`packets`] (for in-place rewriting).
    pub offset: usize,
}

impl<'a> RtcpPacket<'a> {
    /// Frames the first packet of `buf`: version 2, length within `buf`, padding valid.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtcpError> {
        let head: &[u8; HEADER_LEN] = buf.first_chunk().ok_or(RtcpError::TooShort)?;
        let version = head[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let padding = head[0] & 0x20 != 0;
        let total = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
        let raw = buf.get(..total).ok_or(RtcpError::LengthOverflow)?;
        let body_end = if padding {
            let count = usize::from(*raw.last().ok_or(RtcpError::BadPadding)?);
            if count == 0 || count > total - HEADER_LEN {
                return Err(RtcpError::BadPadding);
            }
            total - count
        } else {
            total
        };
        Ok(Self {
            count_or_fmt: head[0] & 0x1f,
            packet_type: head[1],
            padding,
            body: raw.get(HEADER_LEN..body_end).ok_or(RtcpError::BadPadding)?,
            raw,
            offset: 0,
        })
    }

    /// The first SSRC of the body (the sender SSRC for most types), if present.
    pub fn sender_ssrc(&self) -> Option<u32> {
        be32(self.body, 0)
    }

    /// Interprets the packet. Unknown types and feedback formats give
    /// [`RtcpKind::Other`]; a known type whose body does not fit its counts gives
    /// [`RtcpError::Truncated`].
    pub fn kind(&self) -> Result<RtcpKind<'a>, RtcpError> {
        let body = self.body;
        let count = usize::from(self.count_or_fmt);
        Ok(match (self.packet_type, self.count_or_fmt) {
            (PT_SR, _) => RtcpKind::SenderReport(SenderReport::parse(body, count)?),
            (PT_RR, _) => RtcpKind::ReceiverReport(ReceiverReport::parse(body, count)?),
            (PT_SDES, _) => RtcpKind::Sdes(Sdes::parse(self.count_or_fmt, body)),
            (PT_BYE, _) => RtcpKind::Bye(Bye::parse(body, count)?),
            (PT_RTPFB, FMT_NACK) => RtcpKind::Nack(Nack::parse(body)?),
            (PT_RTPFB, FMT_TRANSPORT_CC) => RtcpKind::TransportCc(TransportCc::parse(body)?),
            (PT_PSFB, FMT_PLI) => RtcpKind::Pli(Pli::parse(body)?),
            (PT_PSFB, FMT_FIR) => RtcpKind::Fir(Fir::parse(body)?),
            (PT_PSFB, FMT_AFB) if remb::is_remb(body) => RtcpKind::Remb(Remb::parse(body)?),
            _ => RtcpKind::Other,
        })
    }
}

/// The feedback control information of an RTPFB/PSFB body: after the two SSRCs, in
/// items of `item_len` bytes.
fn fci(body: &[u8], item_len: usize) -> Result<&[u8], RtcpError> {
    let fci = body.get(8..).ok_or(RtcpError::Truncated)?;
    if fci.is_empty() || fci.len() % item_len != 0 {
        return Err(RtcpError::Truncated);
    }
    Ok(fci)
}

/// A packet interpreted by [`RtcpPacket::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpKind<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    Sdes(Sdes<'a>),
    Bye(Bye<'a>),
    Nack(Nack<'a>),
    TransportCc(TransportCc<'a>),
    Pli(Pli),
    Fir(Fir<'a>),
    Remb(Remb<'a>),
    /// APP, XR, other feedback formats and unknown types: use the raw packet.
    Other,
}

/// A list of SSRCs (BYE sources, REMB SSRCs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcList<'a> {
    data: &'a [u8],
}

impl Iterator for SsrcList<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (ssrc, rest) = self.data.split_first_chunk::<4>()?;
        self.data = rest;
        Some(u32::from_be_bytes(*ssrc))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / 4;
        (n, Some(n))
    }
}

impl ExactSizeIterator for SsrcList<'_> {}

/// Sequential writer over a buffer whose size was checked up front; an overrun still
/// returns `BufferTooSmall` instead of panicking.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts a packet of `total` bytes (a multiple of 4) with its common header.
    fn packet(
        buf: &'a mut [u8],
        count_or_fmt: u8,
        packet_type: u8,
        total: usize,
    ) -> Result<Self, RtcpError> {
        if buf.len() < total {
            return Err(RtcpError::BufferTooSmall);
        }
        let words = u16::try_from(total / 4 - 1).map_err(|_| RtcpError::TooManyItems)?;
        let mut w = Writer { buf, pos: 0 };
        w.bytes(&[0x80 | (count_or_fmt & 0x1f), packet_type])?;
        w.bytes(&words.to_be_bytes())?;
        Ok(w)
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), RtcpError> {
        let end = self.pos + bytes.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(RtcpError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    pub(super) fn only(buf: &[u8]) -> RtcpKind<'_> {
        let mut it = packets(buf);
        let p = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        assert_eq!(p.raw.len(), buf.len());
        p.kind().unwrap()
    }

    /// What Chrome sends from a video sender: SR followed by an SDES CNAME.
    #[test]
    fn chrome_sr_sdes() {
        let buf = hex(
            "80c80006 2bd2b3b4 e92d8a3f 4a3d70a4 0001d4c0 000004d2 000f4240
                       81ca0006 2bd2b3b4 0110 6a4b4c6d 6e4f5071 72537475 56777859 0000",
        );
        let mut it = packets(&buf);
        let sr = it.next().unwrap().unwrap();
        let RtcpKind::SenderReport(r) = sr.kind().unwrap() else {
            panic!()
        };
        assert_eq!(r.ssrc, 0x2bd2_b3b4);
        assert_eq!(r.ntp_time, 0xe92d_8a3f_4a3d_70a4);
        assert_eq!(r.rtp_time, 120_000);
        assert_eq!(r.packet_count, 1234);
        assert_eq!(r.octet_count, 1_000_000);
        assert_eq!(r.reports.len(), 0);
        let sdes = it.next().unwrap().unwrap();
        assert_eq!(sdes.offset, 28);
        assert_eq!(sdes.sender_ssrc(), Some(0x2bd2_b3b4));
        let RtcpKind::Sdes(s) = sdes.kind().unwrap() else {
            panic!()
        };
        assert_eq!(s.chunk_count, 1);
        assert_eq!(&s.body[6..22], b"jKLmnOPqrStuVwxY");
        assert!(it.next().is_none());
    }

    /// What Chrome sends from a video receiver without transport-cc: RR with one block,
    /// then REMB.
    #[test]
    fn chrome_rr_remb() {
        let buf = hex(
            "81c90007 00000001 2bd2b3b4 0c00002a 00012f5c 00000031 8a3f4a3d 00018000
                       8fce0005 00000001 00000000 52454d42 010fa120 2bd2b3b4",
        );
        let kinds: Vec<_> = packets(&buf).map(|p| p.unwrap().kind().unwrap()).collect();
        let [RtcpKind::ReceiverReport(rr), RtcpKind::Remb(remb)] = &kinds[..] else {
            panic!("{kinds:?}")
        };
        assert_eq!(rr.ssrc, 1);
        let b: Vec<_> = rr.reports.clone().collect();
        assert_eq!(
            b,
            [ReportBlock {
                ssrc: 0x2bd2_b3b4,
                fraction_lost: 12,
                cumulative_lost: 42,
                extended_highest_seq: 0x0001_2f5c,
                jitter: 49,
                last_sr: 0x8a3f_4a3d,
                delay_since_last_sr: 0x0001_8000,
            }]
        );
        assert_eq!(remb.sender_ssrc, 1);
        // Exponent 3, mantissa 0x3a120.
        assert_eq!(remb.bitrate_bps, 0x3_a120 << 3);
        assert_eq!(remb.ssrcs.clone().collect::<Vec<_>>(), [0x2bd2_b3b4]);
    }

    #[test]
    fn other_types_and_bye() {
        // BYE with two sources and a reason, padded to a word.
        let buf = hex("82cb0003 00000001 00000002 03627965");
        let RtcpKind::Bye(bye) = only(&buf) else {
            panic!()
        };
        assert_eq!(bye.ssrcs.collect::<Vec<_>>(), [1, 2]);
        assert_eq!(bye.reason, Some(&b"bye"[..]));
        // APP and an unknown feedback format.
        assert_eq!(only(&hex("80cc0002 00000001 6e616d65")), RtcpKind::Other);
        assert_eq!(only(&hex("83ce0002 00000001 00000002")), RtcpKind::Other);
        // Transport-cc keeps its FCI raw.
        let buf = hex("8fcd0004 00000001 00000002 00010002 20000000");
        let RtcpKind::TransportCc(tcc) = only(&buf) else {
            panic!()
        };
        assert_eq!((tcc.sender_ssrc, tcc.media_ssrc), (1, 2));
        assert_eq!(tcc.body, &buf[12..]);
    }

    #[test]
    fn padding_is_removed_from_body() {
        // RR with no blocks, 4 bytes of padding (P bit, count 4).
        let buf = hex("a0c90002 00000009 00000004");
        let p = packets(&buf).next().unwrap().unwrap();
        assert!(p.padding);
        assert_eq!(p.body, &[0, 0, 0, 9]);
        assert_eq!(p.raw.len(), 12);
        let bad = hex("a0c90002 00000009 00000009");
        assert_eq!(packets(&bad).next(), Some(Err(RtcpError::BadPadding)));
        let zero = hex("a0c90002 00000009 00000000");
        assert_eq!(packets(&zero).next(), Some(Err(RtcpError::BadPadding)));
    }

    #[test]
    fn malformed_input_gives_errors() {
        assert_eq!(packets(&[]).collect::<Vec<_>>(), [Err(RtcpError::TooShort)]);
        assert_eq!(packets(&[0x80]).next(), Some(Err(RtcpError::TooShort)));
        assert_eq!(
            packets(&[0x80, 201, 0]).next(),
            Some(Err(RtcpError::TooShort))
        );
        // Bad version.
        let buf = hex("40c90001 00000001");
        assert_eq!(packets(&buf).next(), Some(Err(RtcpError::BadVersion(1))));
        // Length past the end.
        let buf = hex("80c90002 00000001");
        assert_eq!(packets(&buf).next(), Some(Err(RtcpError::LengthOverflow)));
        // Zero length: a header alone frames, but an RR needs its SSRC.
        let buf = hex("80c90000");
        let p = packets(&buf).next().unwrap().unwrap();
        assert_eq!(p.kind(), Err(RtcpError::Truncated));
        // Report count larger than the body.
        let buf = hex("81c90001 00000001");
        assert_eq!(only_err(&buf), RtcpError::Truncated);
        // SR without sender info.
        let buf = hex("80c80002 00000001 00000002");
        assert_eq!(only_err(&buf), RtcpError::Truncated);
        // NACK without FCI, and FIR with a partial entry.
        assert_eq!(
            only_err(&hex("81cd0002 00000001 00000002")),
            RtcpError::Truncated
        );
        assert_eq!(
            only_err(&hex("84ce0003 00000001 00000000 00000002")),
            RtcpError::Truncated
        );
        // PLI without media SSRC.
        assert_eq!(only_err(&hex("81ce0001 00000001")), RtcpError::Truncated);
        // REMB listing more SSRCs than present.
        let buf = hex("8fce0004 00000001 00000000 52454d42 020fa120");
        assert_eq!(only_err(&buf), RtcpError::Truncated);
        // BYE reason longer than the packet.
        assert_eq!(
            only_err(&hex("81cb0002 00000001 09616263")),
            RtcpError::Truncated
        );
        // The iterator stops after an error even if bytes follow.
        let mut buf = hex("80c90001 00000001");
        buf.extend(hex("00000000 80c90001 00000001"));
        let all: Vec<_> = packets(&buf).collect();
        assert_eq!(all.len(), 2);
        assert!(all[0].is_ok());
        assert_eq!(all[1], Err(RtcpError::BadVersion(0)));
        // Trailing bytes that do not make a header.
        let mut buf = hex("80c90001 00000001");
        buf.push(0x80);
        let all: Vec<_> = packets(&buf).collect();
        assert_eq!(all[1], Err(RtcpError::TooShort));
    }

    fn only_err(buf: &[u8]) -> RtcpError {
        packets(buf).next().unwrap().unwrap().kind().unwrap_err()
    }

    /// Walks everything a caller could look at.
    fn exercise(buf: &[u8]) -> usize {
        let mut seen = 0;
        for p in packets(buf) {
            let Ok(p) = p else { break };
            seen += p.body.len() + usize::from(p.sender_ssrc().is_some());
            match p.kind() {
                Ok(RtcpKind::SenderReport(sr)) => seen += sr.reports.count(),
                Ok(RtcpKind::ReceiverReport(rr)) => seen += rr.reports.count(),
                Ok(RtcpKind::Bye(b)) => seen += b.ssrcs.count() + b.reason.map_or(0, <[u8]>::len),
                Ok(RtcpKind::Nack(n)) => seen += n.lost_sequences().count(),
                Ok(RtcpKind::Fir(f)) => seen += f.entries.count(),
                Ok(RtcpKind::Remb(r)) => seen += r.ssrcs.count(),
                Ok(_) | Err(_) => {}
            }
        }
        seen
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x7c9);
        let mut total = 0;
        let mut buf = [0u8; 256];
        for i in 0..100_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            if i % 2 == 0 && len >= 4 {
                // Plausible headers reach the typed parsers more often.
                buf[0] = 0x80 | (buf[0] & 0x3f);
                buf[1] = 200 + (buf[1] % 8);
                buf[2] = 0;
                buf[3] %= (len / 4) as u8 + 1;
            }
            total += exercise(&buf[..len]);
            let mut copy = buf;
            let _ = rewrite_media_ssrc(&mut copy[..len], 1);
            let _ = rewrite_sender_ssrc(&mut copy[..len], 1);
        }
        assert!(total > 0);
    }
}
