//! RTCP (RFC 3550), RTP/AVPF feedback (RFC 4585) and codec-control messages (RFC 5104,
//! REMB): walking compound packets, typed zero-copy views of the packets a forwarder
//! reads, builders that write into the caller's buffer, and in-place SSRC rewriting.
//! Nothing here allocates. It does not decide when to send feedback or what to do with
//! a report (control and the forwarding table do), and it does not parse the
//! transport-wide congestion-control feedback format (only frames it).

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
const REPORT_BLOCK_LEN: usize = 24;
/// Length of the sender-info part of an SR after the sender SSRC.
const SENDER_INFO_LEN: usize = 20;
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
        let t = RtcpError::Truncated;
        Ok(match (self.packet_type, self.count_or_fmt) {
            (PT_SR, _) => {
                let blocks_at = 4 + SENDER_INFO_LEN;
                let blocks = body
                    .get(blocks_at..blocks_at + count * REPORT_BLOCK_LEN)
                    .ok_or(t)?;
                RtcpKind::SenderReport(SenderReport {
                    ssrc: be32(body, 0).ok_or(t)?,
                    ntp_time: (u64::from(be32(body, 4).ok_or(t)?) << 32)
                        | u64::from(be32(body, 8).ok_or(t)?),
                    rtp_time: be32(body, 12).ok_or(t)?,
                    packet_count: be32(body, 16).ok_or(t)?,
                    octet_count: be32(body, 20).ok_or(t)?,
                    reports: ReportBlocks { data: blocks },
                })
            }
            (PT_RR, _) => {
                let blocks = body.get(4..4 + count * REPORT_BLOCK_LEN).ok_or(t)?;
                RtcpKind::ReceiverReport(ReceiverReport {
                    ssrc: be32(body, 0).ok_or(t)?,
                    reports: ReportBlocks { data: blocks },
                })
            }
            (PT_SDES, _) => RtcpKind::Sdes(Sdes {
                chunk_count: self.count_or_fmt,
                body,
            }),
            (PT_BYE, _) => {
                let ssrcs = body.get(..4 * count).ok_or(t)?;
                let reason = match body.get(4 * count) {
                    None => None,
                    Some(&len) => {
                        let start = 4 * count + 1;
                        Some(body.get(start..start + usize::from(len)).ok_or(t)?)
                    }
                };
                RtcpKind::Bye(Bye {
                    ssrcs: SsrcList { data: ssrcs },
                    reason,
                })
            }
            (PT_RTPFB, FMT_NACK) => {
                let fci = fci(body, 4)?;
                RtcpKind::Nack(Nack {
                    sender_ssrc: be32(body, 0).ok_or(t)?,
                    media_ssrc: be32(body, 4).ok_or(t)?,
                    items: NackItems { data: fci },
                })
            }
            (PT_RTPFB, FMT_TRANSPORT_CC) => RtcpKind::TransportCc(TransportCc {
                sender_ssrc: be32(body, 0).ok_or(t)?,
                media_ssrc: be32(body, 4).ok_or(t)?,
                body: body.get(8..).ok_or(t)?,
            }),
            (PT_PSFB, FMT_PLI) => RtcpKind::Pli(Pli {
                sender_ssrc: be32(body, 0).ok_or(t)?,
                media_ssrc: be32(body, 4).ok_or(t)?,
            }),
            (PT_PSFB, FMT_FIR) => RtcpKind::Fir(Fir {
                sender_ssrc: be32(body, 0).ok_or(t)?,
                entries: FirEntries {
                    data: fci(body, 8)?,
                },
            }),
            (PT_PSFB, FMT_AFB) if body.get(8..12) == Some(b"REMB") => {
                let n = usize::from(*body.get(12).ok_or(t)?);
                let exp = u32::from(*body.get(13).ok_or(t)? >> 2);
                let mantissa = u64::from(be32(body, 12).ok_or(t)? & 0x3_ffff);
                let bitrate_bps = if mantissa.leading_zeros() < exp {
                    u64::MAX
                } else {
                    mantissa << exp
                };
                RtcpKind::Remb(Remb {
                    sender_ssrc: be32(body, 0).ok_or(t)?,
                    bitrate_bps,
                    ssrcs: SsrcList {
                        data: body.get(16..16 + 4 * n).ok_or(t)?,
                    },
                })
            }
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

/// Sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport<'a> {
    pub ssrc: u32,
    /// 64-bit NTP timestamp (seconds << 32 | fraction).
    pub ntp_time: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub reports: ReportBlocks<'a>,
}

/// Receiver report (RFC 3550 §6.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    pub reports: ReportBlocks<'a>,
}

/// Source description, left unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdes<'a> {
    pub chunk_count: u8,
    pub body: &'a [u8],
}

/// Goodbye (RFC 3550 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye<'a> {
    pub ssrcs: SsrcList<'a>,
    /// The optional reason text.
    pub reason: Option<&'a [u8]>,
}

/// Generic NACK (RFC 4585 §6.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pub items: NackItems<'a>,
}

impl<'a> Nack<'a> {
    /// Every sequence number the NACK reports lost, item by item: each PID, then the
    /// PID + n for every bit n-1 set in its BLP.
    pub fn lost_sequences(&self) -> impl Iterator<Item = u16> + 'a {
        self.items.clone().flat_map(|(pid, blp)| {
            std::iter::once(pid).chain(
                (0..16u16)
                    .filter(move |bit| blp & (1 << bit) != 0)
                    .map(move |bit| pid.wrapping_add(bit + 1)),
            )
        })
    }
}

/// Transport-wide congestion-control feedback; the FCI is left for its own parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportCc<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    /// The feedback control information, after the two SSRCs.
    pub body: &'a [u8],
}

/// Picture loss indication (RFC 4585 §6.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
}

/// Full intra request (RFC 5104 §4.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fir<'a> {
    pub sender_ssrc: u32,
    pub entries: FirEntries<'a>,
}

/// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remb<'a> {
    pub sender_ssrc: u32,
    /// Mantissa << exponent; saturates at `u64::MAX`.
    pub bitrate_bps: u64,
    pub ssrcs: SsrcList<'a>,
}

/// One report block of an SR or RR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, out of 256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, a 24-bit signed value; writing clamps to that range.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn read(b: &[u8; REPORT_BLOCK_LEN]) -> Self {
        let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = (i32::from_be_bytes([b[5], b[6], b[7], 0])) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    }

    fn write(&self, b: &mut [u8; REPORT_BLOCK_LEN]) {
        b[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7f_ffff)
            .to_be_bytes();
        b[4] = self.fraction_lost;
        b[5..8].copy_from_slice(&lost[1..4]);
        b[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        b[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        b[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    /// Exactly `count * 24` bytes.
    data: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let (block, rest) = self.data.split_first_chunk::<REPORT_BLOCK_LEN>()?;
        self.data = rest;
        Some(ReportBlock::read(block))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

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

/// The (PID, BLP) items of a generic NACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackItems<'a> {
    data: &'a [u8],
}

impl Iterator for NackItems<'_> {
    type Item = (u16, u16);

    fn next(&mut self) -> Option<(u16, u16)> {
        let (item, rest) = self.data.split_first_chunk::<4>()?;
        self.data = rest;
        Some((
            u16::from_be_bytes([item[0], item[1]]),
            u16::from_be_bytes([item[2], item[3]]),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / 4;
        (n, Some(n))
    }
}

impl ExactSizeIterator for NackItems<'_> {}

/// The (SSRC, command sequence number) entries of a FIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirEntries<'a> {
    data: &'a [u8],
}

impl Iterator for FirEntries<'_> {
    type Item = (u32, u8);

    fn next(&mut self) -> Option<(u32, u8)> {
        let (entry, rest) = self.data.split_first_chunk::<8>()?;
        self.data = rest;
        Some((
            u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]),
            entry[4],
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.data.len() / 8;
        (n, Some(n))
    }
}

impl ExactSizeIterator for FirEntries<'_> {}

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

    fn report_blocks(&mut self, blocks: &[ReportBlock]) -> Result<(), RtcpError> {
        for block in blocks {
            let mut b = [0u8; REPORT_BLOCK_LEN];
            block.write(&mut b);
            self.bytes(&b)?;
        }
        Ok(())
    }
}

/// Writes a PLI; returns its length (12).
pub fn write_pli(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let mut w = Writer::packet(buf, FMT_PLI, PT_PSFB, 12)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    Ok(w.pos)
}

/// Writes a FIR with one entry for `media_ssrc`; returns its length (20). The common
/// media-source field is 0 as RFC 5104 §4.3.1.2 requires.
pub fn write_fir(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    seq_nr: u8,
) -> Result<usize, RtcpError> {
    let mut w = Writer::packet(buf, FMT_FIR, PT_PSFB, 20)?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.u32(media_ssrc)?;
    w.bytes(&[seq_nr, 0, 0, 0])?;
    Ok(w.pos)
}

/// Packs lost sequence numbers into NACK (PID, BLP) items. Numbers are expected in
/// increasing (wrapping) order; a number more than 16 after the current PID, or before
/// it, starts a new item; repeats of the PID are skipped.
#[derive(Debug, Clone)]
struct NackPacker<'a> {
    lost: &'a [u16],
}

impl Iterator for NackPacker<'_> {
    type Item = (u16, u16);

    fn next(&mut self) -> Option<(u16, u16)> {
        let (&pid, mut rest) = self.lost.split_first()?;
        let mut blp = 0u16;
        while let Some((&seq, tail)) = rest.split_first() {
            match seq.wrapping_sub(pid) {
                0 => {}
                d @ 1..=16 => blp |= 1 << (d - 1),
                _ => break,
            }
            rest = tail;
        }
        self.lost = rest;
        Some((pid, blp))
    }
}

/// Writes a generic NACK for the `lost` sequence numbers; returns its length. `Empty`
/// when `lost` is empty. Numbers are expected in increasing (wrapping) order: each item's
/// BLP takes the numbers up to 16 after its PID, a number further on or behind starts a
/// new item, and repeats of the PID are skipped.
pub fn write_nack(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    lost: &[u16],
) -> Result<usize, RtcpError> {
    if lost.is_empty() {
        return Err(RtcpError::Empty);
    }
    let items = NackPacker { lost }.count();
    let mut w = Writer::packet(buf, FMT_NACK, PT_RTPFB, 12 + 4 * items)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    for (pid, blp) in (NackPacker { lost }) {
        w.bytes(&pid.to_be_bytes())?;
        w.bytes(&blp.to_be_bytes())?;
    }
    Ok(w.pos)
}

/// Writes a receiver report with up to 31 blocks; returns its length.
pub fn write_receiver_report(
    buf: &mut [u8],
    sender_ssrc: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpError::TooManyItems);
    }
    let total = 8 + REPORT_BLOCK_LEN * blocks.len();
    let mut w = Writer::packet(buf, blocks.len() as u8, PT_RR, total)?;
    w.u32(sender_ssrc)?;
    w.report_blocks(blocks)?;
    Ok(w.pos)
}

/// Writes a sender report with up to 31 blocks; returns its length.
pub fn write_sender_report(
    buf: &mut [u8],
    ssrc: u32,
    ntp_time: u64,
    rtp_time: u32,
    packet_count: u32,
    octet_count: u32,
    blocks: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if blocks.len() > MAX_COUNT {
        return Err(RtcpError::TooManyItems);
    }
    let total = 8 + SENDER_INFO_LEN + REPORT_BLOCK_LEN * blocks.len();
    let mut w = Writer::packet(buf, blocks.len() as u8, PT_SR, total)?;
    w.u32(ssrc)?;
    w.bytes(&ntp_time.to_be_bytes())?;
    w.u32(rtp_time)?;
    w.u32(packet_count)?;
    w.u32(octet_count)?;
    w.report_blocks(blocks)?;
    Ok(w.pos)
}

/// Writes a REMB for up to 255 SSRCs; returns its length. The bitrate is encoded as an
/// 18-bit mantissa and a 6-bit exponent, rounding down.
pub fn write_remb(
    buf: &mut [u8],
    sender_ssrc: u32,
    bitrate_bps: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    let n = u8::try_from(ssrcs.len()).map_err(|_| RtcpError::TooManyItems)?;
    let mut mantissa = bitrate_bps;
    let mut exp = 0u32;
    while mantissa >= 1 << 18 {
        mantissa >>= 1;
        exp += 1;
    }
    // exp <= 46 and mantissa < 2^18, so both fit their fields.
    let encoded = (exp << 18) | mantissa as u32;
    let mut w = Writer::packet(buf, FMT_AFB, PT_PSFB, 20 + 4 * ssrcs.len())?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.bytes(b"REMB")?;
    w.u32((u32::from(n) << 24) | encoded)?;
    for &ssrc in ssrcs {
        w.u32(ssrc)?;
    }
    Ok(w.pos)
}

/// Checks that `pkt` starts with a version-2 RTCP header and returns the packet's
/// length per its length field, limited to `pkt.len()`.
fn framed_len(pkt: &[u8]) -> Result<usize, RtcpError> {
    let head: &[u8; HEADER_LEN] = pkt.first_chunk().ok_or(RtcpError::TooShort)?;
    if head[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion(head[0] >> 6));
    }
    let total = (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1) * 4;
    Ok(total.min(pkt.len()))
}

/// Rewrites the media-source SSRC of the single RTPFB or PSFB packet at the start of
/// `pkt`, in place. For a FIR, whose common media-source field stays 0 (RFC 5104), the
/// SSRC of every FCI entry is rewritten instead. Other packet types give `NotFeedback`
/// and leave `pkt` untouched.
pub fn rewrite_media_ssrc(pkt: &mut [u8], media_ssrc: u32) -> Result<(), RtcpError> {
    let len = framed_len(pkt)?;
    // framed_len checked the 4-byte header.
    let (fmt, pt) = (pkt[0] & 0x1f, pkt[1]);
    if pt != PT_RTPFB && pt != PT_PSFB {
        return Err(RtcpError::NotFeedback);
    }
    let packet = pkt.get_mut(..len).ok_or(RtcpError::TooShort)?;
    if pt == PT_PSFB && fmt == FMT_FIR {
        let entries = packet.get_mut(12..).ok_or(RtcpError::Truncated)?;
        for entry in entries.chunks_exact_mut(8) {
            // Every chunk is 8 bytes long.
            entry[..4].copy_from_slice(&media_ssrc.to_be_bytes());
        }
        return Ok(());
    }
    packet
        .get_mut(8..12)
        .ok_or(RtcpError::Truncated)?
        .copy_from_slice(&media_ssrc.to_be_bytes());
    Ok(())
}

/// Rewrites the sender SSRC (bytes 4..8: the reporter of SR/RR, the packet sender of
/// feedback, the first source of SDES/BYE) of the single packet at the start of `pkt`.
pub fn rewrite_sender_ssrc(pkt: &mut [u8], sender_ssrc: u32) -> Result<(), RtcpError> {
    let len = framed_len(pkt)?;
    pkt.get_mut(..len)
        .and_then(|p| p.get_mut(4..8))
        .ok_or(RtcpError::Truncated)?
        .copy_from_slice(&sender_ssrc.to_be_bytes());
    Ok(())
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

    fn only(buf: &[u8]) -> RtcpKind<'_> {
        let mut it = packets(buf);
        let p = it.next().unwrap().unwrap();
        assert!(it.next().is_none());
        assert_eq!(p.raw.len(), buf.len());
        p.kind().unwrap()
    }

    fn block(i: u32) -> ReportBlock {
        ReportBlock {
            ssrc: 0x1000 + i,
            fraction_lost: 10 + i as u8,
            cumulative_lost: -5 + i as i32 * 1000,
            extended_highest_seq: 70000 + i,
            jitter: 33 * i,
            last_sr: 0xabcd_0000 + i,
            delay_since_last_sr: 65536 * i,
        }
    }

    #[test]
    fn pli_round_trip() {
        let mut buf = [0u8; 12];
        assert_eq!(write_pli(&mut buf, 1, 2), Ok(12));
        assert_eq!(buf, [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(
            only(&buf),
            RtcpKind::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 2
            })
        );
        assert_eq!(
            write_pli(&mut [0u8; 11], 1, 2),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn fir_round_trip() {
        let mut buf = [0u8; 40];
        let n = write_fir(&mut buf, 7, 0xdead_beef, 42).unwrap();
        assert_eq!(n, 20);
        assert_eq!(&buf[..4], &[0x84, 206, 0, 4]);
        assert_eq!(&buf[8..12], &[0, 0, 0, 0], "media field is 0");
        let RtcpKind::Fir(fir) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!(fir.sender_ssrc, 7);
        assert_eq!(fir.entries.collect::<Vec<_>>(), [(0xdead_beef, 42)]);
    }

    #[test]
    fn nack_round_trip_and_packing() {
        let lost = [65530u16, 65531, 65535, 0, 5, 9, 40, 41, 56, 57, 57, 10];
        let mut buf = [0u8; 64];
        let n = write_nack(&mut buf, 1, 2, &lost).unwrap();
        let RtcpKind::Nack(nack) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!((nack.sender_ssrc, nack.media_ssrc), (1, 2));
        let items: Vec<_> = nack.items.clone().collect();
        // 65530 covers up to 65530 + 16 = 10 (wrapping): 65531, 65535, 0, 5, 9;
        // 40 covers 41, 56; 57 starts a new item; 10 is behind it and starts another.
        assert_eq!(
            items,
            [
                (
                    65530,
                    (1 << 0) | (1 << 4) | (1 << 5) | (1 << 10) | (1 << 14)
                ),
                (40, (1 << 0) | (1 << 15)),
                (57, 0),
                (10, 0),
            ]
        );
        let mut got: Vec<u16> = nack.lost_sequences().collect();
        let mut want: Vec<u16> = lost.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        want.dedup();
        assert_eq!(got, want);
        assert_eq!(n, 12 + 4 * 4);
        assert_eq!(write_nack(&mut buf, 1, 2, &[]), Err(RtcpError::Empty));
        assert_eq!(
            write_nack(&mut [0u8; 15], 1, 2, &[1]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn receiver_report_round_trip() {
        let blocks: Vec<_> = (0..3).map(block).collect();
        let mut buf = [0u8; 200];
        let n = write_receiver_report(&mut buf, 0x55, &blocks).unwrap();
        assert_eq!(n, 8 + 72);
        let RtcpKind::ReceiverReport(rr) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!(rr.ssrc, 0x55);
        assert_eq!(rr.reports.len(), 3);
        assert_eq!(rr.reports.collect::<Vec<_>>(), blocks);
        let n = write_receiver_report(&mut buf, 0x55, &[]).unwrap();
        assert_eq!(n, 8);
        assert_eq!(
            write_receiver_report(&mut buf, 1, &[block(0); 32]),
            Err(RtcpError::TooManyItems)
        );
    }

    #[test]
    fn sender_report_round_trip() {
        let blocks = [block(1)];
        let mut buf = [0u8; 100];
        let n = write_sender_report(&mut buf, 9, 0x0102_0304_0506_0708, 1234, 55, 6789, &blocks)
            .unwrap();
        assert_eq!(n, 52);
        let RtcpKind::SenderReport(sr) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!(sr.ssrc, 9);
        assert_eq!(sr.ntp_time, 0x0102_0304_0506_0708);
        assert_eq!(
            (sr.rtp_time, sr.packet_count, sr.octet_count),
            (1234, 55, 6789)
        );
        assert_eq!(sr.reports.collect::<Vec<_>>(), blocks);
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed() {
        let mut buf = [0u8; 32];
        for (written, read) in [
            (-1, -1),
            (0x7f_ffff, 0x7f_ffff),
            (0x100_0000, 0x7f_ffff),
            (-0x80_0000, -0x80_0000),
            (i32::MIN, -0x80_0000),
        ] {
            let b = ReportBlock {
                cumulative_lost: written,
                ..block(0)
            };
            write_receiver_report(&mut buf, 1, &[b]).unwrap();
            let RtcpKind::ReceiverReport(mut rr) = only(&buf) else {
                panic!()
            };
            assert_eq!(rr.reports.next().unwrap().cumulative_lost, read);
        }
        write_receiver_report(
            &mut buf,
            1,
            &[ReportBlock {
                cumulative_lost: -1,
                ..block(0)
            }],
        )
        .unwrap();
        assert_eq!(&buf[13..16], &[0xff, 0xff, 0xff]);
    }

    #[test]
    fn remb_round_trip() {
        let mut buf = [0u8; 64];
        for bitrate in [
            0u64,
            1,
            262_143,
            262_144,
            1_500_000,
            2_500_000_000,
            u64::MAX,
        ] {
            let n = write_remb(&mut buf, 3, bitrate, &[10, 20]).unwrap();
            assert_eq!(n, 28);
            let RtcpKind::Remb(remb) = only(&buf[..n]) else {
                panic!()
            };
            assert_eq!(remb.sender_ssrc, 3);
            assert_eq!(remb.ssrcs.collect::<Vec<_>>(), [10, 20]);
            // Rounded down to 18 significant bits.
            assert!(remb.bitrate_bps <= bitrate);
            assert!(bitrate - remb.bitrate_bps <= bitrate >> 17, "{bitrate}");
        }
        assert_eq!(
            write_remb(&mut buf, 3, 1, &[0; 256]),
            Err(RtcpError::TooManyItems)
        );
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

    #[test]
    fn ssrc_rewriting() {
        let mut buf = [0u8; 64];
        let n = write_pli(&mut buf, 1, 2).unwrap();
        rewrite_media_ssrc(&mut buf[..n], 0x99).unwrap();
        rewrite_sender_ssrc(&mut buf[..n], 0x77).unwrap();
        assert_eq!(
            only(&buf[..n]),
            RtcpKind::Pli(Pli {
                sender_ssrc: 0x77,
                media_ssrc: 0x99
            })
        );
        let n = write_fir(&mut buf, 1, 2, 3).unwrap();
        rewrite_media_ssrc(&mut buf[..n], 0x99).unwrap();
        let RtcpKind::Fir(fir) = only(&buf[..n]) else {
            panic!()
        };
        assert_eq!(fir.entries.collect::<Vec<_>>(), [(0x99, 3)]);
        assert_eq!(&buf[8..12], &[0, 0, 0, 0]);
        // Only the packet at the start is touched, per its own length field.
        let mut compound = [0u8; 64];
        let a = write_nack(&mut compound, 1, 2, &[5]).unwrap();
        let b = write_pli(&mut compound[a..], 1, 2).unwrap();
        let offset = packets(&compound[..a + b]).nth(1).unwrap().unwrap().offset;
        assert_eq!(offset, a);
        rewrite_media_ssrc(&mut compound[offset..], 0x42).unwrap();
        let kinds: Vec<_> = packets(&compound[..a + b])
            .map(|p| p.unwrap().kind().unwrap())
            .collect();
        let [RtcpKind::Nack(nack), RtcpKind::Pli(pli)] = &kinds[..] else {
            panic!()
        };
        assert_eq!(nack.media_ssrc, 2);
        assert_eq!(pli.media_ssrc, 0x42);
        // Wrong type, short and bad input.
        let n = write_receiver_report(&mut buf, 1, &[]).unwrap();
        assert_eq!(
            rewrite_media_ssrc(&mut buf[..n], 5),
            Err(RtcpError::NotFeedback)
        );
        assert_eq!(rewrite_sender_ssrc(&mut buf[..n], 5), Ok(()));
        assert_eq!(
            rewrite_sender_ssrc(&mut buf[..6], 5),
            Err(RtcpError::Truncated)
        );
        assert_eq!(rewrite_sender_ssrc(&mut [], 5), Err(RtcpError::TooShort));
        assert_eq!(
            rewrite_media_ssrc(&mut [0x81, 206, 0, 2, 0, 0, 0, 1], 5),
            Err(RtcpError::Truncated)
        );
        assert_eq!(
            rewrite_media_ssrc(&mut [0x01, 206, 0, 2], 5),
            Err(RtcpError::BadVersion(0))
        );
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
