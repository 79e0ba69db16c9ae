//! VP8 in RTP (RFC 7741): the payload descriptor, the packetizer of the composed
//! stream, and the depacketizer that rebuilds each input's frames from its packets
//! (reordered within a small window, incomplete frames dropped and counted). It owns
//! bytes only: it never decodes.

use std::collections::VecDeque;

use thiserror::Error;

/// Largest RTP payload the packetizer produces (descriptor included).
pub const MAX_PAYLOAD: usize = 1200;
/// Largest frame the depacketizer assembles; anything larger is dropped as lost.
pub const MAX_FRAME_BYTES: usize = 2 << 20;
/// Frames the depacketizer keeps open at once while waiting for their packets.
const OPEN_FRAMES: usize = 4;
/// Packets one open frame may hold.
const MAX_FRAME_PACKETS: usize = 2048;
/// Consecutive late packets after which the input is taken to have restarted its
/// timestamps (a jump back): the depacketizer forgets the last frame it handed out.
const LATE_RUN_RESET: u32 = 64;

/// Why a VP8 RTP payload could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PayloadError {
    #[error("empty VP8 payload")]
    Empty,
    #[error("VP8 payload descriptor truncated")]
    Truncated,
    #[error("VP8 payload has a descriptor but no data")]
    NoData,
}

/// The fields of a VP8 payload descriptor (RFC 7741 §4.2) that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// S: the first packet of a VP8 partition.
    pub start: bool,
    /// PID: the partition index.
    pub partition: u8,
    /// The PictureID (7 or 15 bits), when present.
    pub picture_id: Option<u16>,
    /// Length of the descriptor; the VP8 data follows it.
    pub len: usize,
}

impl Descriptor {
    /// Parses the descriptor at the start of `payload`.
    pub fn parse(payload: &[u8]) -> Result<Descriptor, PayloadError> {
        let (&first, rest) = payload.split_first().ok_or(PayloadError::Empty)?;
        let mut len = 1;
        let mut picture_id = None;
        if first & 0x80 != 0 {
            let &ext = rest.first().ok_or(PayloadError::Truncated)?;
            len += 1;
            if ext & 0x80 != 0 {
                let &m = payload.get(len).ok_or(PayloadError::Truncated)?;
                if m & 0x80 != 0 {
                    let &low = payload.get(len + 1).ok_or(PayloadError::Truncated)?;
                    picture_id = Some(u16::from_be_bytes([m & 0x7F, low]));
                    len += 2;
                } else {
                    picture_id = Some(u16::from(m));
                    len += 1;
                }
            }
            if ext & 0x40 != 0 {
                len += 1; // TL0PICIDX
            }
            if ext & 0x30 != 0 {
                len += 1; // TID / Y / KEYIDX
            }
        }
        if payload.len() < len {
            return Err(PayloadError::Truncated);
        }
        if payload.len() == len {
            return Err(PayloadError::NoData);
        }
        Ok(Descriptor {
            start: first & 0x10 != 0,
            partition: first & 0x0F,
            picture_id,
            len,
        })
    }
}

/// Whether a VP8 frame (its first bytes, the VP8 payload header) is a keyframe:
/// the P bit is 0 and the keyframe start code follows the 3-byte frame tag.
pub fn is_keyframe(frame: &[u8]) -> bool {
    matches!(frame, [tag, _, _, 0x9d, 0x01, 0x2a, ..] if tag & 1 == 0)
}

/// Splits encoded frames into RTP payloads: a 4-byte descriptor (X, S on the first
/// packet, PID 0, a 15-bit PictureID that increments per frame) and balanced chunks.
#[derive(Debug)]
pub struct Vp8Packetizer {
    picture_id: u16,
}

impl Vp8Packetizer {
    /// `picture_id`: the first frame's PictureID (taken modulo 2^15).
    pub fn new(picture_id: u16) -> Self {
        Vp8Packetizer {
            picture_id: picture_id & 0x7FFF,
        }
    }

    /// Appends the payloads of one frame to `out`; returns how many.
    pub fn packetize(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>) -> usize {
        const HEADER: usize = 4;
        let room = MAX_PAYLOAD - HEADER;
        let count = frame.len().div_ceil(room).max(1);
        let base = frame.len() / count;
        let extra = frame.len() % count;
        let id = self.picture_id.to_be_bytes();
        let mut rest = frame;
        for i in 0..count {
            let (chunk, tail) = rest.split_at((base + usize::from(i < extra)).min(rest.len()));
            rest = tail;
            let mut payload = Vec::with_capacity(HEADER + chunk.len());
            let s = if i == 0 { 0x10 } else { 0 };
            payload.extend_from_slice(&[0x80 | s, 0x80, 0x80 | id[0], id[1]]);
            payload.extend_from_slice(chunk);
            out.push(payload);
        }
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        count
    }
}

/// One frame rebuilt from its packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledFrame {
    pub timestamp: u32,
    pub data: Vec<u8>,
    pub keyframe: bool,
    /// Packets (hence possibly frames) were lost between the previous frame handed
    /// out and this one: a delta frame cannot be trusted after it.
    pub after_gap: bool,
}

/// Counters of the depacketizer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    pub frames: u64,
    /// Frames dropped incomplete (a packet never came, or the frame was too large).
    pub lost_frames: u64,
    /// Packets of a frame older than one already handed out.
    pub late_packets: u64,
    /// Payloads that were not VP8 (bad descriptor).
    pub malformed_packets: u64,
}

struct Packet {
    seq: u16,
    start: bool,
    marker: bool,
    data: Vec<u8>,
}

struct OpenFrame {
    timestamp: u32,
    packets: Vec<Packet>,
    bytes: usize,
    oversized: bool,
}

impl OpenFrame {
    /// The packets in order when the frame is complete: one starts partition 0, one
    /// carries the marker, and every sequence number between them is there.
    fn complete_order(&mut self) -> Option<(u16, u16)> {
        let first = self.packets.iter().find(|p| p.start).map(|p| p.seq)?;
        self.packets
            .sort_unstable_by_key(|p| p.seq.wrapping_sub(first));
        let last = self.packets.iter().find(|p| p.marker)?.seq;
        let span = usize::from(last.wrapping_sub(first)) + 1;
        let contiguous = self.packets.len() == span
            && self
                .packets
                .iter()
                .enumerate()
                .all(|(i, p)| usize::from(p.seq.wrapping_sub(first)) == i);
        contiguous.then_some((first, last))
    }
}

/// Rebuilds one input's VP8 frames from its RTP packets.
#[derive(Default)]
pub struct Vp8Depacketizer {
    open: VecDeque<OpenFrame>,
    /// Timestamp and last sequence number of the last frame handed out.
    last_out: Option<(u32, u16)>,
    gap: bool,
    late_run: u32,
    stats: DepacketizerStats,
}

impl std::fmt::Debug for Vp8Depacketizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Depacketizer")
            .field("open", &self.open.len())
            .field("last_out", &self.last_out)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Whether RTP timestamp `a` is after `b` (modulo 2^32).
fn ts_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

impl Vp8Depacketizer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Takes one packet; returns the frame it completes, if any. Frames come out in
    /// timestamp order: a frame completed after a newer one was handed out is dropped
    /// (late), and older open frames are dropped (lost) when a newer one completes.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<AssembledFrame>, PayloadError> {
        let desc = Descriptor::parse(payload).inspect_err(|_| self.stats.malformed_packets += 1)?;
        if let Some((last_ts, _)) = self.last_out
            && !ts_after(timestamp, last_ts)
        {
            self.stats.late_packets += 1;
            self.late_run += 1;
            if self.late_run >= LATE_RUN_RESET {
                self.last_out = None;
                self.gap = true;
                self.late_run = 0;
            }
            return Ok(None);
        }
        self.late_run = 0;
        let index = match self.open.iter().position(|f| f.timestamp == timestamp) {
            Some(i) => i,
            None => {
                if self.open.len() == OPEN_FRAMES {
                    self.drop_oldest();
                }
                // Open frames stay in timestamp order.
                let at = self
                    .open
                    .iter()
                    .position(|f| ts_after(f.timestamp, timestamp))
                    .unwrap_or(self.open.len());
                self.open.insert(
                    at,
                    OpenFrame {
                        timestamp,
                        packets: Vec::new(),
                        bytes: 0,
                        oversized: false,
                    },
                );
                at
            }
        };
        let Some(frame) = self.open.get_mut(index) else {
            return Ok(None);
        };
        if frame.packets.iter().any(|p| p.seq == seq) {
            return Ok(None); // duplicate
        }
        let data = payload.get(desc.len..).unwrap_or_default();
        frame.bytes += data.len();
        if frame.bytes > MAX_FRAME_BYTES || frame.packets.len() >= MAX_FRAME_PACKETS {
            frame.oversized = true;
            frame.packets.clear();
            return Ok(None);
        }
        if frame.oversized {
            return Ok(None);
        }
        frame.packets.push(Packet {
            seq,
            start: desc.start && desc.partition == 0,
            marker,
            data: data.to_vec(),
        });
        let Some((first, last)) = frame.complete_order() else {
            return Ok(None);
        };
        // Complete: everything opened before it is now lost.
        for _ in 0..index {
            self.drop_oldest();
        }
        let Some(frame) = self.open.pop_front() else {
            return Ok(None);
        };
        let gap = match self.last_out {
            Some((_, last_seq)) => first != last_seq.wrapping_add(1),
            None => false,
        } || std::mem::take(&mut self.gap);
        self.last_out = Some((frame.timestamp, last));
        let mut data = Vec::with_capacity(frame.bytes);
        for p in &frame.packets {
            data.extend_from_slice(&p.data);
        }
        self.stats.frames += 1;
        Ok(Some(AssembledFrame {
            timestamp: frame.timestamp,
            keyframe: is_keyframe(&data),
            data,
            after_gap: gap,
        }))
    }

    fn drop_oldest(&mut self) {
        if self.open.pop_front().is_some() {
            self.stats.lost_frames += 1;
            self.gap = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// A fake keyframe of `len` bytes (valid frame tag and start code, then a pattern).
    fn fake_keyframe(len: usize) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        f[..6].copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
        f
    }

    fn packets(frame: &[u8], pid: u16) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        Vp8Packetizer::new(pid).packetize(frame, &mut out);
        out
    }

    #[test]
    fn descriptor_forms_parse() {
        // No extension.
        let d = Descriptor::parse(&[0x10, 0xAA]).unwrap();
        assert_eq!(
            (d.start, d.partition, d.picture_id, d.len),
            (true, 0, None, 1)
        );
        // 7-bit PictureID.
        let d = Descriptor::parse(&[0x90, 0x80, 0x05, 0xAA]).unwrap();
        assert_eq!((d.picture_id, d.len), (Some(5), 3));
        // 15-bit PictureID, TL0PICIDX, TID/KEYIDX.
        let d = Descriptor::parse(&[0x83, 0xF0, 0x81, 0x02, 0x07, 0x40, 0xAA]).unwrap();
        assert_eq!(
            (d.start, d.partition, d.picture_id, d.len),
            (false, 3, Some(0x102), 6)
        );
        assert_eq!(Descriptor::parse(&[]), Err(PayloadError::Empty));
        assert_eq!(
            Descriptor::parse(&[0x90, 0x80, 0x81]),
            Err(PayloadError::Truncated)
        );
        assert_eq!(Descriptor::parse(&[0x90]), Err(PayloadError::Truncated));
        assert_eq!(Descriptor::parse(&[0x10]), Err(PayloadError::NoData));
    }

    #[test]
    fn packetizer_bounds_payloads_and_increments_the_picture_id() {
        let frame = fake_keyframe(5000);
        let mut p = Vp8Packetizer::new(0x7FFE);
        let mut out = Vec::new();
        assert_eq!(p.packetize(&frame, &mut out), 5);
        assert!(out.iter().all(|x| x.len() <= MAX_PAYLOAD));
        let d: Vec<_> = out.iter().map(|x| Descriptor::parse(x).unwrap()).collect();
        assert!(d[0].start && !d[1].start);
        assert!(d.iter().all(|d| d.picture_id == Some(0x7FFE)));
        let joined: Vec<u8> = out.iter().flat_map(|x| x[4..].to_vec()).collect();
        assert_eq!(joined, frame);
        out.clear();
        p.packetize(&frame[..100], &mut out);
        p.packetize(&frame[..100], &mut out);
        let ids: Vec<_> = out
            .iter()
            .map(|x| Descriptor::parse(x).unwrap().picture_id)
            .collect();
        assert_eq!(ids, [Some(0x7FFF), Some(0)]);
    }

    #[test]
    fn reordered_packets_of_a_frame_reassemble() {
        let frame = fake_keyframe(4000);
        let pkts = packets(&frame, 1);
        assert_eq!(pkts.len(), 4);
        let mut d = Vp8Depacketizer::new();
        let base = 65534u16; // sequence numbers wrap inside the frame
        let n = pkts.len() as u16;
        let mut got = None;
        for i in [2u16, 0, 3, 1] {
            let seq = base.wrapping_add(i);
            let r = d
                .push(seq, 9000, i == n - 1, &pkts[usize::from(i)])
                .unwrap();
            assert!(got.is_none());
            got = r;
        }
        let got = got.expect("the frame completes with its last packet");
        assert_eq!(got.data, frame);
        assert!(got.keyframe);
        assert!(!got.after_gap);
        assert_eq!(d.stats().frames, 1);
    }

    #[test]
    fn a_missing_middle_packet_drops_the_frame() {
        let frame = fake_keyframe(4000);
        let pkts = packets(&frame, 1);
        let mut d = Vp8Depacketizer::new();
        for (i, p) in pkts.iter().enumerate() {
            if i == 1 {
                continue;
            }
            assert_eq!(
                d.push(i as u16, 3000, i == pkts.len() - 1, p).unwrap(),
                None
            );
        }
        // The next frame completes: the first is counted lost, the second flagged.
        let next = packets(&frame[..500], 2);
        let out = d.push(10, 6000, true, &next[0]).unwrap().unwrap();
        assert!(out.after_gap);
        assert_eq!(d.stats().lost_frames, 1);
        assert_eq!(d.stats().frames, 1);
        // The missing packet arriving now is late and changes nothing.
        assert_eq!(d.push(1, 3000, false, &pkts[1]).unwrap(), None);
        assert_eq!(d.stats().late_packets, 1);
        // A following frame in sequence has no gap.
        let out = d.push(11, 9000, true, &next[0]).unwrap().unwrap();
        assert!(!out.after_gap);
    }

    #[test]
    fn a_whole_lost_frame_is_a_gap() {
        let frame = fake_keyframe(300);
        let p = packets(&frame, 1);
        let mut d = Vp8Depacketizer::new();
        assert!(!d.push(1, 100, true, &p[0]).unwrap().unwrap().after_gap);
        assert!(d.push(3, 300, true, &p[0]).unwrap().unwrap().after_gap);
    }

    #[test]
    fn a_timestamp_jump_back_resynchronises_after_a_run_of_late_packets() {
        let p = packets(&fake_keyframe(300), 1);
        let mut d = Vp8Depacketizer::new();
        assert!(d.push(1, 1_000_000, true, &p[0]).unwrap().is_some());
        let mut first_out = None;
        for k in 0..100u16 {
            if let Some(f) = d.push(2 + k, 3000 * u32::from(k), true, &p[0]).unwrap() {
                first_out = Some((u32::from(k), f.after_gap));
                break;
            }
        }
        assert_eq!(first_out, Some((LATE_RUN_RESET, true)));
        assert_eq!(d.stats().late_packets, u64::from(LATE_RUN_RESET));
    }

    #[test]
    fn garbage_payloads_never_panic() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut d = Vp8Depacketizer::new();
        let mut errors = 0;
        for _ in 0..5000 {
            let len = rng.random_range(0..40);
            let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let (seq, ts) = (rng.random_range(0..64), rng.random_range(0..8) * 3000);
            match d.push(seq, ts, rng.random_bool(0.3), &payload) {
                Ok(Some(f)) => assert!(f.data.len() <= MAX_FRAME_BYTES),
                Ok(None) => {}
                Err(_) => errors += 1,
            }
            let _ = is_keyframe(&payload);
        }
        assert!(errors > 0);
        assert_eq!(d.stats().malformed_packets, errors);
    }
}
