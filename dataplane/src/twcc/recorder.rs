//! The receive side of transport-wide congestion control: [`TwccRecorder`] remembers
//! when each transport-wide sequence number arrived and builds the transport-feedback
//! packets (RTPFB, PT=205, FMT=15) that report it.
//!
//! It owns the arrival window and feedback building. It must not decide when feedback
//! is sent (the forwarding table's timer does) or allocate after creation.

use super::chunks::{
    ChunkEncoder, SYMBOL_LARGE_DELTA, SYMBOL_NOT_RECEIVED, SYMBOL_SMALL_DELTA, delta_size,
};
use super::{
    DELTA_UNIT_US, FIXED_LEN, MIN_FEEDBACK_LEN, NOT_RECEIVED, RECORDER_WINDOW, REFERENCE_MODULUS,
    REFERENCE_UNIT_US, TwccError,
};
use crate::rtcp::{FMT_TRANSPORT_CC, PT_RTPFB};
use crate::rtp;

/// Receiver side of transport-wide congestion control for one media sender (a
/// publisher): remembers when each transport-wide sequence number arrived and writes
/// transport-feedback packets covering what has not been reported yet.
///
/// Sequence numbers are unwrapped against the newest one seen. The window is
/// [`RECORDER_WINDOW`] sequence numbers behind the newest: older packets are ignored,
/// and unreported ones that fall out of it are never reported. A packet that arrives
/// after its sequence number was reported (as lost) is reported again in the next
/// feedback, with the ones after it, as libwebrtc does. Two consecutive packets far
/// outside the window are taken as a sender restart.
#[derive(Debug, Clone)]
pub struct TwccRecorder {
    /// Arrival time (µs) per unwrapped sequence number modulo the window.
    arrivals: Box<[u64]>,
    /// Newest unwrapped sequence number; `None` before the first packet.
    newest: Option<i64>,
    /// First unwrapped sequence number the next feedback covers.
    next_base: i64,
    /// The sequence number that would confirm a restart.
    restart_seq: Option<u16>,
    /// A received packet may await feedback.
    pending: bool,
    feedback_count: u8,
}

impl Default for TwccRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl TwccRecorder {
    /// A recorder that has seen no packet (allocates its window once).
    pub fn new() -> Self {
        Self {
            arrivals: vec![NOT_RECEIVED; RECORDER_WINDOW].into_boxed_slice(),
            newest: None,
            next_base: 0,
            restart_seq: None,
            pending: false,
            feedback_count: 0,
        }
    }

    fn slot(ext: i64) -> usize {
        ext.rem_euclid(RECORDER_WINDOW as i64) as usize
    }

    fn restart(&mut self, seq: u16) {
        self.arrivals.fill(NOT_RECEIVED);
        self.newest = Some(i64::from(seq));
        self.next_base = i64::from(seq);
        self.restart_seq = None;
        self.pending = true;
    }

    /// Records that transport-wide sequence number `seq` arrived at `arrival_us`.
    /// Returns false when the packet is ignored: a duplicate, or too old for the window.
    pub fn record(&mut self, seq: u16, arrival_us: u64) -> bool {
        let arrival_us = arrival_us.min(NOT_RECEIVED - 1);
        let newest = match self.newest {
            Some(n) => n,
            None => {
                self.restart(seq);
                self.arrivals[Self::slot(i64::from(seq))] = arrival_us;
                return true;
            }
        };
        let ext = newest + i64::from(rtp::seq_diff(seq, newest as u16));
        let window = RECORDER_WINDOW as i64;
        if ext <= newest - window {
            if self.restart_seq == Some(seq) {
                self.restart(seq);
                self.arrivals[Self::slot(i64::from(seq))] = arrival_us;
                return true;
            }
            self.restart_seq = Some(seq.wrapping_add(1));
            return false;
        }
        self.restart_seq = None;
        if ext > newest {
            // Forget what the window no longer holds.
            for e in (newest + 1).max(ext - window + 1)..=ext {
                self.arrivals[Self::slot(e)] = NOT_RECEIVED;
            }
            self.newest = Some(ext);
            self.next_base = self.next_base.max(ext - window + 1);
        }
        let slot = &mut self.arrivals[Self::slot(ext)];
        if *slot != NOT_RECEIVED {
            return false;
        }
        *slot = arrival_us;
        self.next_base = self.next_base.min(ext);
        self.pending = true;
        true
    }

    /// True when a received packet awaits feedback.
    pub fn has_feedback(&self) -> bool {
        self.pending
    }

    /// The first unreported received packet's unwrapped sequence number and arrival.
    fn first_unreported(&self) -> Option<(i64, u64)> {
        let newest = self.newest?;
        (self.next_base..=newest)
            .map(|e| (e, self.arrivals[Self::slot(e)]))
            .find(|&(_, t)| t != NOT_RECEIVED)
    }

    /// Writes one transport-feedback packet into `buf` and returns its length, or `None`
    /// when no received packet awaits feedback.
    ///
    /// It covers the unreported sequence numbers from the oldest up to the last
    /// received one that fits (the buffer's size, rounded down to a word, and the range
    /// of receive deltas); call again while [`Self::has_feedback`] says more remain.
    /// Losses after the last received packet are left for the next feedback.
    pub fn build_feedback(
        &mut self,
        buf: &mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Result<Option<usize>, TwccError> {
        let capacity = buf.len() & !3;
        if capacity < MIN_FEEDBACK_LEN {
            return Err(TwccError::BufferTooSmall);
        }
        let (Some(newest), Some((_, first_arrival))) = (self.newest, self.first_unreported())
        else {
            self.pending = false;
            return Ok(None);
        };
        let base = self.next_base;
        let reference = first_arrival as i64 / REFERENCE_UNIT_US;

        // Pass 1: how many statuses fit, and the chunk and delta bytes they take.
        let mut chunks = ChunkEncoder::new();
        let mut count = 0usize;
        let mut chunk_bytes = 0;
        let mut delta_bytes = 0;
        let mut clock = reference * REFERENCE_UNIT_US;
        for (i, e) in (base..=newest).enumerate() {
            let arrival = self.arrivals[Self::slot(e)];
            if arrival == NOT_RECEIVED {
                chunks.push(SYMBOL_NOT_RECEIVED, &mut |_| {});
                continue;
            }
            let Some((symbol, ticks)) = encode_delta(arrival as i64 - clock) else {
                break;
            };
            let mut trial = chunks;
            trial.push(symbol, &mut |_| {});
            let size = FIXED_LEN + trial.bytes() + delta_bytes + delta_size(symbol);
            if size > capacity {
                break;
            }
            chunks = trial;
            clock += ticks * DELTA_UNIT_US;
            count = i + 1;
            chunk_bytes = trial.bytes();
            delta_bytes += delta_size(symbol);
        }
        if count == 0 {
            // Unreachable: a run of losses, the first received packet's chunk and its
            // delta (less than 64 ms after the reference time) fit MIN_FEEDBACK_LEN.
            return Err(TwccError::BufferTooSmall);
        }
        let unpadded = FIXED_LEN + chunk_bytes + delta_bytes;
        let total = unpadded.next_multiple_of(4);
        let pad = total - unpadded;

        // Pass 2: write.
        let out = &mut buf[..total];
        out[0] = 0x80 | if pad > 0 { 0x20 } else { 0 } | FMT_TRANSPORT_CC;
        out[1] = PT_RTPFB;
        out[2..4].copy_from_slice(&((total / 4 - 1) as u16).to_be_bytes());
        out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
        out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
        out[12..14].copy_from_slice(&(base as u16).to_be_bytes());
        // count <= RECORDER_WINDOW < 65536.
        out[14..16].copy_from_slice(&(count as u16).to_be_bytes());
        let reference_field = reference.rem_euclid(REFERENCE_MODULUS) as u32;
        out[16..19].copy_from_slice(&reference_field.to_be_bytes()[1..]);
        out[19] = self.feedback_count;
        let mut chunks = ChunkEncoder::new();
        let mut chunk_at = FIXED_LEN;
        let mut delta_at = 0;
        let mut clock = reference * REFERENCE_UNIT_US;
        {
            let (chunk_area, delta_area) = out.split_at_mut(FIXED_LEN + chunk_bytes);
            let mut put_chunk = |c: u16| {
                if let Some(dst) = chunk_area.get_mut(chunk_at..chunk_at + 2) {
                    dst.copy_from_slice(&c.to_be_bytes());
                }
                chunk_at += 2;
            };
            for e in base..base + count as i64 {
                let arrival = self.arrivals[Self::slot(e)];
                if arrival == NOT_RECEIVED {
                    chunks.push(SYMBOL_NOT_RECEIVED, &mut put_chunk);
                    continue;
                }
                // Pass 1 encoded these same deltas.
                let Some((symbol, ticks)) = encode_delta(arrival as i64 - clock) else {
                    break;
                };
                chunks.push(symbol, &mut put_chunk);
                clock += ticks * DELTA_UNIT_US;
                let bytes = ticks.to_be_bytes();
                let n = delta_size(symbol);
                if let Some(dst) = delta_area.get_mut(delta_at..delta_at + n) {
                    dst.copy_from_slice(&bytes[8 - n..]);
                }
                delta_at += n;
            }
            chunks.finish(&mut put_chunk);
        }
        if pad > 0 {
            out[unpadded..total].fill(0);
            out[total - 1] = pad as u8;
        }
        self.next_base = base + count as i64;
        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.pending = self.first_unreported().is_some();
        Ok(Some(total))
    }
}

/// Rounds a time difference to receive-delta ticks and picks the symbol that carries
/// it; `None` when it does not fit a large delta.
fn encode_delta(diff_us: i64) -> Option<(u8, i64)> {
    let ticks = (diff_us + DELTA_UNIT_US / 2).div_euclid(DELTA_UNIT_US);
    if (0..=255).contains(&ticks) {
        Some((SYMBOL_SMALL_DELTA, ticks))
    } else if (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&ticks) {
        Some((SYMBOL_LARGE_DELTA, ticks))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twcc::TwccFeedback;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// Records `arrivals` (seq, µs), builds every feedback and checks each packet's
    /// reported status against what was recorded.
    fn round_trip(arrivals: &[(u16, u64)], buf_len: usize) -> usize {
        let mut rec = TwccRecorder::new();
        let mut truth = std::collections::HashMap::new();
        for &(seq, t) in arrivals {
            rec.record(seq, t);
            truth.entry(seq).or_insert(t);
        }
        let mut buf = vec![0u8; buf_len];
        let mut seen = std::collections::HashMap::new();
        let mut packets = 0;
        let mut expected_fb = 0u8;
        while rec.has_feedback() {
            let n = rec.build_feedback(&mut buf, 11, 22).unwrap().unwrap();
            assert!(n <= buf_len && n.is_multiple_of(4));
            let fb = TwccFeedback::parse(&buf[..n]).unwrap();
            assert_eq!(fb.feedback_count, expected_fb);
            expected_fb = expected_fb.wrapping_add(1);
            packets += 1;
            for p in fb.packets() {
                if let Some(a) = p.arrival {
                    seen.insert(p.seq, a.at_us);
                }
            }
        }
        assert!(rec.build_feedback(&mut buf, 11, 22).unwrap().is_none());
        assert_eq!(seen.len(), truth.len(), "every received packet reported");
        for (seq, at) in seen {
            let t = truth[&seq] as i64;
            assert!(
                (at - t).abs() <= 125,
                "seq {seq}: reported {at}, arrived {t}"
            );
        }
        packets
    }

    #[test]
    fn builder_round_trips_through_parser() {
        let mut rng = StdRng::seed_from_u64(42);
        for round in 0..200 {
            let n = rng.random_range(1..600);
            let start: u16 = rng.random();
            let mut t = rng.random_range(0..1u64 << 39);
            let mut arrivals = Vec::new();
            for i in 0..n {
                // Gaps of 0..80 ms, sometimes long; 10 % loss; some reordering.
                t += if rng.random_bool(0.02) {
                    rng.random_range(0..9_000_000)
                } else {
                    rng.random_range(0..80_000)
                };
                if rng.random_bool(0.1) {
                    continue;
                }
                arrivals.push((start.wrapping_add(i), t));
            }
            for _ in 0..n / 20 {
                let (a, b) = (
                    rng.random_range(0..arrivals.len()),
                    rng.random_range(0..arrivals.len()),
                );
                let (sa, sb) = (arrivals[a].0, arrivals[b].0);
                arrivals[a].0 = sb;
                arrivals[b].0 = sa;
            }
            let buf_len = if round % 3 == 0 { 64 } else { 1200 };
            round_trip(&arrivals, buf_len);
        }
    }

    #[test]
    fn feedback_uses_each_chunk_kind() {
        // All received at 1 ms spacing: one run-length chunk.
        let arrivals: Vec<_> = (0..100u16)
            .map(|s| (s, 1_000_000 + u64::from(s) * 1000))
            .collect();
        let mut rec = TwccRecorder::new();
        for &(s, t) in &arrivals {
            rec.record(s, t);
        }
        let mut buf = [0u8; 1500];
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        assert_eq!(&buf[20..22], &[0x20, 100]);
        assert_eq!(n, (20 + 2 + 100usize).next_multiple_of(4));
        // Alternating loss: one-bit vectors.
        let mut rec = TwccRecorder::new();
        for s in (0..28u16).step_by(2) {
            rec.record(s, 1_000_000 + u64::from(s) * 1000);
        }
        rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        assert_eq!(u16::from_be_bytes([buf[14], buf[15]]), 27);
        assert_eq!(buf[20] & 0xc0, 0x80);
        assert_eq!(buf[22] & 0xc0, 0x80);
        // A large gap: two-bit vector.
        let mut rec = TwccRecorder::new();
        rec.record(0, 1_000_000);
        rec.record(1, 1_100_000);
        rec.record(2, 1_101_000);
        rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        assert_eq!(buf[20] & 0xc0, 0xc0);
        let fb = TwccFeedback::parse(&buf).unwrap();
        let d: Vec<_> = fb.packets().map(|p| p.arrival.unwrap().delta_us).collect();
        assert_eq!(d, [1_000_000 - 15 * 64_000, 100_000, 1000]);
    }

    #[test]
    fn recorder_handles_wrap_reorder_duplicates_and_window() {
        let mut rec = TwccRecorder::new();
        let mut buf = [0u8; 1500];
        assert!(!rec.has_feedback());
        assert_eq!(rec.build_feedback(&mut buf, 1, 2), Ok(None));
        assert!(rec.record(65534, 1000));
        assert!(rec.record(1, 4000));
        assert!(rec.record(65535, 2000), "reordered across the wrap");
        assert!(!rec.record(65535, 2500), "duplicate");
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!(fb.base_seq, 65534);
        let got: Vec<_> = fb.packets().map(|p| (p.seq, p.arrival.is_some())).collect();
        assert_eq!(got, [(65534, true), (65535, true), (0, false), (1, true)]);
        // The late 0 is reported in the next feedback, with what follows it again.
        assert!(!rec.has_feedback());
        assert!(rec.record(0, 5000));
        assert!(rec.has_feedback());
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!(fb.base_seq, 0);
        assert_eq!(fb.status_count, 2);
        // Far behind the window: ignored; far ahead: the window moves.
        assert!(rec.record(2, 6000));
        assert!(rec.record(2 + RECORDER_WINDOW as u16 + 10, 7000));
        assert!(!rec.record(3, 8000), "behind the window");
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!(usize::from(fb.status_count), RECORDER_WINDOW);
        assert_eq!(fb.packets().filter(|p| p.arrival.is_some()).count(), 1);
    }

    #[test]
    fn recorder_follows_a_restarted_sender() {
        let mut rec = TwccRecorder::new();
        for s in 0..10u16 {
            rec.record(s, u64::from(s) * 1000);
        }
        let mut buf = [0u8; 1500];
        rec.build_feedback(&mut buf, 1, 2).unwrap();
        assert!(!rec.record(40_000, 20_000));
        assert!(
            rec.record(40_001, 21_000),
            "second packet confirms the restart"
        );
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!((fb.base_seq, fb.status_count), (40_001, 1));
    }

    #[test]
    fn small_buffers_split_feedback() {
        let arrivals: Vec<_> = (0..300u16)
            .map(|s| {
                (
                    s,
                    5_000_000 + u64::from(s) * 3000 + u64::from(s % 7) * 40_000,
                )
            })
            .collect();
        assert!(round_trip(&arrivals, 32) > 10);
        let mut rec = TwccRecorder::new();
        rec.record(1, 1);
        assert_eq!(
            rec.build_feedback(&mut [0; 27], 1, 2),
            Err(TwccError::BufferTooSmall)
        );
        assert_eq!(round_trip(&[(9, 123_456_789)], MIN_FEEDBACK_LEN), 1);
        // Worst case for the minimum: a run of losses, then a large first delta.
        let mut rec = TwccRecorder::new();
        let mut buf = [0u8; MIN_FEEDBACK_LEN];
        rec.record(0, 1000);
        rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        rec.record(11, 127_999);
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!((fb.base_seq, fb.status_count), (1, 11));
        let last = fb.packets().last().unwrap().arrival.unwrap();
        assert_eq!((last.delta_us, last.at_us), (64_000, 128_000));
    }
}
