//! The send side of transport-wide congestion control: a zero-copy parser of the
//! transport-feedback packets ([`TwccFeedback`]) a receiver sends back, and the
//! unwrapping of their reference time.
//!
//! It owns reading feedback. It must not decide what feedback means for the send rate
//! (see `bwe`) or allocate.

use super::chunks::{SYMBOL_LARGE_DELTA, SYMBOL_SMALL_DELTA, chunk_len, chunk_symbol, delta_size};
use super::{DELTA_UNIT_US, FCI_FIXED_LEN, REFERENCE_MODULUS, REFERENCE_UNIT_US, TwccError};
use crate::rtcp::{self, RtcpKind};

/// A parsed transport-feedback packet, borrowing its bytes. Parsing checks the whole
/// packet, so [`Self::packets`] always yields `status_count` statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccFeedback<'a> {
    /// SSRC of the feedback's sender.
    pub sender_ssrc: u32,
    /// Media source SSRC field (transport-wide feedback covers every stream).
    pub media_ssrc: u32,
    /// Transport-wide sequence number of the first packet described.
    pub base_seq: u16,
    /// Number of packets described.
    pub status_count: u16,
    /// 24-bit reference time in multiples of 64 ms, on the feedback sender's clock.
    pub reference_time: u32,
    /// Counts feedback packets (modulo 256), to detect lost feedback.
    pub feedback_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

/// What one feedback packet says about one transport-wide sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketStatus {
    /// Transport-wide sequence number.
    pub seq: u16,
    /// `None` when the packet was not received.
    pub arrival: Option<Arrival>,
}

/// When a reported packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The receive delta (µs) from the previous received packet of this feedback, or
    /// from the reference time for the first one.
    pub delta_us: i32,
    /// Arrival time (µs) on the feedback sender's clock: the reference time plus the
    /// deltas so far. Comparable across feedback packets once the 24-bit reference time
    /// is unwrapped (see [`unwrap_reference_time`]).
    pub at_us: i64,
}

impl<'a> TwccFeedback<'a> {
    /// Parses a single RTCP packet (the first of `pkt`) that must be a transport
    /// feedback.
    pub fn parse(pkt: &'a [u8]) -> Result<Self, TwccError> {
        let packet = rtcp::RtcpPacket::parse(pkt)?;
        match packet.kind()? {
            RtcpKind::TransportCc(tcc) => {
                Self::parse_fci(tcc.sender_ssrc, tcc.media_ssrc, tcc.body)
            }
            _ => Err(TwccError::NotTransportCc),
        }
    }

    /// Parses the feedback control information (everything after the two SSRCs, padding
    /// removed), as [`rtcp::TransportCc::body`] holds it. Chunks may describe more
    /// statuses than the count (the rest is ignored); bytes after the deltas are ignored.
    pub fn parse_fci(sender_ssrc: u32, media_ssrc: u32, fci: &'a [u8]) -> Result<Self, TwccError> {
        let fixed: &[u8; FCI_FIXED_LEN] = fci.first_chunk().ok_or(TwccError::TooShort)?;
        let status_count = u16::from_be_bytes([fixed[2], fixed[3]]);
        let mut remaining = usize::from(status_count);
        let mut at = FCI_FIXED_LEN;
        let mut delta_bytes = 0;
        while remaining > 0 {
            let chunk = match fci.get(at..at + 2) {
                Some(&[a, b]) => u16::from_be_bytes([a, b]),
                _ => return Err(TwccError::TruncatedChunks),
            };
            at += 2;
            let n = chunk_len(chunk).min(remaining);
            if chunk & 0x8000 == 0 {
                let symbol = chunk_symbol(chunk, 0);
                if symbol == 3 && n > 0 {
                    return Err(TwccError::ReservedSymbol);
                }
                delta_bytes += n * delta_size(symbol);
            } else {
                for i in 0..n {
                    let symbol = chunk_symbol(chunk, i);
                    if symbol == 3 {
                        return Err(TwccError::ReservedSymbol);
                    }
                    delta_bytes += delta_size(symbol);
                }
            }
            remaining -= n;
        }
        let deltas = fci
            .get(at..at + delta_bytes)
            .ok_or(TwccError::TruncatedDeltas)?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            base_seq: u16::from_be_bytes([fixed[0], fixed[1]]),
            status_count,
            reference_time: u32::from_be_bytes([0, fixed[4], fixed[5], fixed[6]]),
            feedback_count: fixed[7],
            chunks: &fci[FCI_FIXED_LEN..at],
            deltas,
        })
    }

    /// The reference time in µs (not unwrapped).
    pub fn reference_us(&self) -> i64 {
        i64::from(self.reference_time) * REFERENCE_UNIT_US
    }

    /// The status of every packet described, in sequence-number order. The count
    /// comes from the packet: up to 65,535 statuses for a few bytes of run-length
    /// chunks. A sender that remembers only some packets walks those with
    /// [`Self::packets_in`].
    pub fn packets(&self) -> PacketStatuses<'a> {
        PacketStatuses {
            chunks: self.chunks,
            deltas: self.deltas,
            remaining: usize::from(self.status_count),
            chunk: 0,
            in_chunk: 0,
            chunk_total: 0,
            seq: self.base_seq,
            clock_us: self.reference_us(),
            steps: 0,
        }
    }

    /// The statuses of sequence numbers `first`, `first + 1`, ... (`len` of them,
    /// wrapping), in sequence-number order, with the same arrival times as
    /// [`Self::packets`] gives them. The statuses before them are skipped a chunk at a
    /// time (those that carry a receive delta one by one, so at most as many as the
    /// packet has delta bytes): the walk costs at most `len` statuses plus the packet's
    /// length, whatever status count the packet claims. When the window starts before
    /// the base sequence number, only its part from the base on is walked (a feedback
    /// whose count wraps around onto its own start is read once).
    pub fn packets_in(&self, first: u16, len: usize) -> PacketStatuses<'a> {
        let mut it = self.packets();
        let count = usize::from(self.status_count);
        let len = len.min(1 << 16);
        let offset = usize::from(first.wrapping_sub(self.base_seq));
        let (start, end) = if offset + len <= 1 << 16 {
            (offset, (offset + len).min(count))
        } else {
            (0, (offset + len - (1 << 16)).min(count))
        };
        if start >= end {
            it.remaining = 0;
            return it;
        }
        it.skip_statuses(start);
        it.remaining = it.remaining.min(end - start);
        it
    }
}

/// Unwraps a 24-bit reference time against the previous unwrapped one (in 64 ms units),
/// taking the nearest candidate.
pub fn unwrap_reference_time(previous: Option<i64>, reference_time: u32) -> i64 {
    let value = i64::from(reference_time & 0x00ff_ffff);
    match previous {
        None => value,
        Some(prev) => {
            let diff = (value - prev).rem_euclid(REFERENCE_MODULUS);
            if diff >= REFERENCE_MODULUS / 2 {
                prev + diff - REFERENCE_MODULUS
            } else {
                prev + diff
            }
        }
    }
}

/// Iterator over the statuses of a [`TwccFeedback`].
#[derive(Debug, Clone)]
pub struct PacketStatuses<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    remaining: usize,
    chunk: u16,
    in_chunk: usize,
    chunk_total: usize,
    seq: u16,
    clock_us: i64,
    /// Loop steps taken: chunks read, statuses passed or skipped.
    steps: usize,
}

impl PacketStatuses<'_> {
    /// Statuses still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Loop steps taken so far (each chunk read, each status yielded, each skip):
    /// what walking the feedback cost.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Reads the next chunk; false when none is left.
    fn next_chunk(&mut self) -> bool {
        let Some((head, rest)) = self.chunks.split_first_chunk::<2>() else {
            return false;
        };
        self.steps += 1;
        self.chunk = u16::from_be_bytes(*head);
        self.chunks = rest;
        self.in_chunk = 0;
        self.chunk_total = chunk_len(self.chunk);
        true
    }

    /// Passes over the next `n` statuses: the rest of a run-length chunk whose
    /// symbol carries no delta in one step, every other status one by one (each
    /// consumes delta bytes or is one of a vector chunk's 14 at most).
    fn skip_statuses(&mut self, n: usize) {
        let mut n = n.min(self.remaining);
        while n > 0 {
            if self.in_chunk >= self.chunk_total {
                if !self.next_chunk() {
                    self.remaining = 0;
                    return;
                }
                continue;
            }
            if self.chunk & 0x8000 == 0 && delta_size(chunk_symbol(self.chunk, 0)) == 0 {
                let k = n.min(self.chunk_total - self.in_chunk);
                self.steps += 1;
                self.in_chunk += k;
                self.remaining -= k;
                self.seq = self.seq.wrapping_add(k as u16);
                n -= k;
                continue;
            }
            if self.next().is_none() {
                return;
            }
            n -= 1;
        }
    }
}

impl Iterator for PacketStatuses<'_> {
    type Item = PacketStatus;

    fn next(&mut self) -> Option<PacketStatus> {
        if self.remaining == 0 {
            return None;
        }
        while self.in_chunk >= self.chunk_total {
            if !self.next_chunk() {
                return None;
            }
        }
        self.steps += 1;
        let symbol = chunk_symbol(self.chunk, self.in_chunk);
        self.in_chunk += 1;
        self.remaining -= 1;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let ticks = match symbol {
            SYMBOL_SMALL_DELTA => {
                let (d, rest) = self.deltas.split_first()?;
                self.deltas = rest;
                i32::from(*d)
            }
            SYMBOL_LARGE_DELTA => {
                let (d, rest) = self.deltas.split_first_chunk::<2>()?;
                self.deltas = rest;
                i32::from(i16::from_be_bytes(*d))
            }
            _ => return Some(PacketStatus { seq, arrival: None }),
        };
        let delta_us = ticks * DELTA_UNIT_US as i32;
        self.clock_us += i64::from(delta_us);
        Some(PacketStatus {
            seq,
            arrival: Some(Arrival {
                delta_us,
                at_us: self.clock_us,
            }),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl std::iter::FusedIterator for PacketStatuses<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::{PT_RTPFB, RtcpError};
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Captured from Chrome (pion/rtcp `transport_layer_cc_test.go` "example1"; the
    /// bytes are Chrome's, per pion/rtcp issue #52): one packet, run-length chunk, a
    /// small delta, padding with the P bit. Layout per draft-holmer-rmcat-transport-
    /// wide-cc-extensions-01 §3.1.
    const CHROME_FEEDBACK: [u8; 24] = [
        0xaf, 0xcd, 0x00, 0x05, 0xfa, 0x17, 0xfa, 0x17, 0x43, 0x03, 0x2f, 0xa0, 0x00, 0x99, 0x00,
        0x01, 0x3d, 0xe8, 0x02, 0x17, 0x20, 0x01, 0x94, 0x01,
    ];

    #[test]
    fn parses_chrome_feedback() {
        let fb = TwccFeedback::parse(&CHROME_FEEDBACK).unwrap();
        assert_eq!(fb.sender_ssrc, 4_195_875_351);
        assert_eq!(fb.media_ssrc, 1_124_282_272);
        assert_eq!(fb.base_seq, 153);
        assert_eq!(fb.status_count, 1);
        assert_eq!(fb.reference_time, 4_057_090);
        assert_eq!(fb.feedback_count, 23);
        let statuses: Vec<_> = fb.packets().collect();
        assert_eq!(
            statuses,
            [PacketStatus {
                seq: 153,
                arrival: Some(Arrival {
                    delta_us: 37_000,
                    at_us: 4_057_090 * 64_000 + 37_000,
                }),
            }]
        );
    }

    /// FCI with the fixed part for `count` statuses followed by `rest`.
    fn fci(base: u16, count: u16, rest: &[u8]) -> Vec<u8> {
        let mut v = base.to_be_bytes().to_vec();
        v.extend_from_slice(&count.to_be_bytes());
        v.extend_from_slice(&[0, 0, 1, 9]);
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn decodes_draft_chunk_examples() {
        // §3.1.4 example 1: one-bit vector 0x9F1C, 14 statuses, 8 received.
        let mut rest = vec![0x9f, 0x1c];
        rest.extend_from_slice(&[4; 8]);
        let f = fci(65530, 14, &rest);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        let received: Vec<bool> = fb.packets().map(|p| p.arrival.is_some()).collect();
        let want = [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0].map(|b| b == 1);
        assert_eq!(received, want);
        let seqs: Vec<u16> = fb.packets().map(|p| p.seq).collect();
        assert_eq!(seqs[..7], [65530, 65531, 65532, 65533, 65534, 65535, 0]);
        assert_eq!(fb.reference_us(), 64_000);
        let last = fb.packets().filter_map(|p| p.arrival).last().unwrap();
        assert_eq!(last.at_us, 64_000 + 8 * 1000);
        // §3.1.3 example 1: run of 221 "not received": no deltas needed.
        let f = fci(0, 221, &[0x00, 0xdd]);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        assert_eq!(fb.packets().count(), 221);
        assert!(fb.packets().all(|p| p.arrival.is_none()));
        // §3.1.3 example 2 and §3.1.4 example 2 use symbol 11, which libwebrtc rejects.
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 24, &[0x60, 0x18])),
            Err(TwccError::ReservedSymbol)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 7, &[0xcd, 0x50, 1, 1, 1])),
            Err(TwccError::ReservedSymbol)
        );
        // Two-bit vector with a negative large delta.
        let f = fci(7, 2, &[0xd8, 0x00, 0x08, 0xff, 0xfc]);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        let d: Vec<_> = fb
            .packets()
            .map(|p| p.arrival.map(|a| a.delta_us))
            .collect();
        assert_eq!(d, [Some(2000), Some(-1000)]);
    }

    #[test]
    fn rejects_malformed_feedback() {
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &[0; 7]),
            Err(TwccError::TooShort)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 3, &[0x20, 0x02])),
            Err(TwccError::TruncatedChunks)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 3, &[0x20, 0x03, 1, 1])),
            Err(TwccError::TruncatedDeltas)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 1, &[0x40, 0x01, 1])),
            Err(TwccError::TruncatedDeltas)
        );
        // A PLI is RTCP, but not transport feedback.
        let mut pli = [0u8; 12];
        let n = rtcp::write_pli(&mut pli, 1, 2).unwrap();
        assert_eq!(
            TwccFeedback::parse(&pli[..n]),
            Err(TwccError::NotTransportCc)
        );
        assert_eq!(
            TwccFeedback::parse(&[0x8f]),
            Err(TwccError::Rtcp(RtcpError::TooShort))
        );
        // Status count 0 and a run chunk longer than the count are accepted (clipped).
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 0, &[]))
                .unwrap()
                .packets()
                .count(),
            0
        );
        let f = fci(0, 2, &[0x20, 0x30, 1, 1]);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        assert_eq!(fb.packets().count(), 2);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x7cc);
        let mut buf = [0u8; 96];
        let mut parsed = 0;
        for i in 0..200_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            if i % 2 == 0 && len >= 4 {
                // A valid RTCP header so the FCI parser is reached.
                buf[0] = 0x8f | (buf[0] & 0x20);
                buf[1] = PT_RTPFB;
                buf[2] = 0;
                buf[3] = (len / 4 - 1) as u8;
                if i % 4 == 0 && len >= 16 {
                    // Small status counts reach the deltas more often.
                    buf[14] = 0;
                    buf[15] %= 40;
                }
            }
            if let Ok(fb) = TwccFeedback::parse(&buf[..len]) {
                let n = fb.packets().count();
                assert_eq!(n, usize::from(fb.status_count));
                parsed += 1;
            }
            let mut copy = buf;
            let _ = crate::rtp::set_transport_seq(&mut copy, len, (i % 16) as u8, 7);
        }
        assert!(parsed > 1000, "{parsed}");
    }

    /// The FCI of a feedback claiming 65,535 statuses in 18 bytes of chunks: runs of
    /// "not received" with `received` small deltas at the end.
    fn claims_everything(base: u16, received: u8) -> Vec<u8> {
        let mut chunks = Vec::new();
        for _ in 0..8 {
            chunks.extend_from_slice(&0x1fffu16.to_be_bytes());
        }
        let tail = 65_535 - 8 * 0x1fff - u16::from(received);
        chunks.extend_from_slice(&tail.to_be_bytes());
        if received > 0 {
            chunks.extend_from_slice(&(0x2000 | u16::from(received)).to_be_bytes());
            chunks.extend(std::iter::repeat_n(4u8, usize::from(received)));
        }
        fci(base, 65_535, &chunks)
    }

    #[test]
    fn a_window_walks_what_it_asks_for_not_what_the_packet_claims() {
        let f = claims_everything(1000, 3);
        assert!(f.len() <= 40, "{} bytes", f.len());
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        let mut all = fb.packets();
        assert_eq!(all.by_ref().count(), 65_535);
        assert!(all.steps() >= 65_535, "{}", all.steps());
        // The last 2,048 sequence numbers the packet describes, and their arrivals.
        let last = 1000u16.wrapping_add(65_534);
        let first = last.wrapping_sub(2047);
        let mut window = fb.packets_in(first, 2048);
        let got: Vec<_> = window.by_ref().collect();
        assert_eq!(got.len(), 2048);
        assert_eq!(got[0].seq, first);
        assert_eq!(got[2047].seq, last);
        let want: Vec<_> = fb
            .packets()
            .filter(|p| p.seq.wrapping_sub(first) < 2048)
            .collect();
        assert_eq!(got, want, "same statuses, same arrival times");
        assert!(
            window.steps() <= 2048 + 32,
            "{} steps for a 2,048 window",
            window.steps()
        );
        // A window the packet does not describe costs nothing.
        let f = fci(1000, 10, &[0x00, 0x0a]);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        let mut none = fb.packets_in(1000u16.wrapping_sub(3000), 2048);
        assert_eq!(none.by_ref().count(), 0);
        assert_eq!(none.steps(), 0);
    }

    #[test]
    fn a_window_gives_the_same_statuses_as_a_filtered_walk() {
        let mut rng = StdRng::seed_from_u64(0x3d1);
        for _ in 0..2000 {
            // Random statuses (mixed runs and vectors, small and large deltas).
            let mut rec = crate::twcc::TwccRecorder::new();
            let base: u16 = rng.random();
            let count = rng.random_range(1..600u16);
            let mut at = 1_000_000u64;
            for i in 0..count {
                if rng.random_bool(0.7) {
                    at += rng.random_range(0..40_000);
                    rec.record(base.wrapping_add(i), at);
                }
            }
            let mut buf = [0u8; 1500];
            while rec.has_feedback() {
                let Ok(Some(n)) = rec.build_feedback(&mut buf, 1, 2) else {
                    break;
                };
                let fb = TwccFeedback::parse(&buf[..n]).unwrap();
                let first = fb
                    .base_seq
                    .wrapping_add(rng.random_range(0..700u16))
                    .wrapping_sub(100);
                let len = rng.random_range(0..800usize);
                let got: Vec<_> = fb.packets_in(first, len).collect();
                let want: Vec<_> = fb
                    .packets()
                    .filter(|p| usize::from(p.seq.wrapping_sub(first)) < len)
                    .collect();
                assert_eq!(
                    got, want,
                    "window {first}+{len} of {}+{}",
                    fb.base_seq, fb.status_count
                );
            }
        }
    }

    #[test]
    fn reference_time_unwraps() {
        assert_eq!(unwrap_reference_time(None, 5), 5);
        assert_eq!(unwrap_reference_time(Some(0xff_fffe), 1), 0x100_0001);
        assert_eq!(
            unwrap_reference_time(Some(0x100_0001), 0xff_fffe),
            0xff_fffe
        );
        assert_eq!(unwrap_reference_time(Some(3), 0xff_ffff), -1);
    }
}
