//! Sender and receiver reports (RFC 3550 §6.4): the SR/RR views, their report blocks,
//! and the builders of both.
//!
//! Zero-copy and allocation-free; malformed input gives [`RtcpError::Truncated`], never a
//! panic. It does not decide what goes into a report (the forwarding table does).

use super::{MAX_COUNT, PT_RR, PT_SR, RtcpError, Writer, be32};

/// Length of a report block.
const REPORT_BLOCK_LEN: usize = 24;
/// Length of the sender-info part of an SR after the sender SSRC.
const SENDER_INFO_LEN: usize = 20;

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

impl<'a> SenderReport<'a> {
    /// Reads an SR body with `count` report blocks.
    pub(super) fn parse(body: &'a [u8], count: usize) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        let blocks_at = 4 + SENDER_INFO_LEN;
        let blocks = body
            .get(blocks_at..blocks_at + count * REPORT_BLOCK_LEN)
            .ok_or(t)?;
        Ok(SenderReport {
            ssrc: be32(body, 0).ok_or(t)?,
            ntp_time: (u64::from(be32(body, 4).ok_or(t)?) << 32)
                | u64::from(be32(body, 8).ok_or(t)?),
            rtp_time: be32(body, 12).ok_or(t)?,
            packet_count: be32(body, 16).ok_or(t)?,
            octet_count: be32(body, 20).ok_or(t)?,
            reports: ReportBlocks { data: blocks },
        })
    }
}

/// Receiver report (RFC 3550 §6.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    pub ssrc: u32,
    pub reports: ReportBlocks<'a>,
}

impl<'a> ReceiverReport<'a> {
    /// Reads an RR body with `count` report blocks.
    pub(super) fn parse(body: &'a [u8], count: usize) -> Result<Self, RtcpError> {
        let t = RtcpError::Truncated;
        let blocks = body.get(4..4 + count * REPORT_BLOCK_LEN).ok_or(t)?;
        Ok(ReceiverReport {
            ssrc: be32(body, 0).ok_or(t)?,
            reports: ReportBlocks { data: blocks },
        })
    }
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

impl Writer<'_> {
    fn report_blocks(&mut self, blocks: &[ReportBlock]) -> Result<(), RtcpError> {
        for block in blocks {
            let mut b = [0u8; REPORT_BLOCK_LEN];
            block.write(&mut b);
            self.bytes(&b)?;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::RtcpKind;
    use crate::rtcp::tests::only;

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
}
