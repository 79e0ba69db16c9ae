//! Simulcast layer switching for one outbound stream: a [`SequenceRewriter`] maps the
//! packets of whichever publisher layer (SSRC) is selected onto one continuous outbound
//! sequence-number and timestamp space, switching layers only at a keyframe of the
//! target layer (found by [`crate::codec::keyframe_start`]), and a [`Vp8Continuity`]
//! keeps a VP8 stream's PictureID and TL0PICIDX continuous across those switches.
//!
//! Sans-IO and allocation-free: the caller passes each packet's header fields, whether
//! it starts a keyframe and the time, and gets back the fields to write (with
//! `rtp::set_sequence` / `rtp::set_timestamp`) or a reason to drop it. It does not choose
//! the layer (control does, from the bandwidth estimate) or send keyframe requests (it
//! says when one is needed), and it does not parse payloads ([`crate::codec`] finds
//! keyframes and the VP8 descriptor fields; this module only decides their numbers). A
//! NACK for the stream is mapped
//! back to its layer ([`SequenceRewriter::source_of`]) by the worker that forwards it;
//! one that arrives on another worker is handed there (see [`crate::handoff`]).

use crate::codec::vp8;
use crate::ids::{SeqNo, Ssrc};
use crate::rtp;

/// Largest timestamp step (in seconds of media clock) a switch may add: a pause longer
/// than this resumes as if this much time had passed.
const MAX_SWITCH_GAP_S: u64 = 60;

/// What the rewriter needs to know about one incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPacket {
    /// The publisher SSRC of the layer the packet belongs to.
    pub ssrc: Ssrc,
    /// The packet's RTP sequence number...
    pub seq: SeqNo,
    /// ...and timestamp, as the publisher sent them.
    pub timestamp: u32,
    /// The packet is the first of a keyframe (see [`crate::codec::keyframe_start`]);
    /// always true for codecs without inter-frame dependencies, such as audio.
    pub keyframe_start: bool,
}

/// What to do with a packet, from [`SequenceRewriter::rewrite`].
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Send it with this sequence number and timestamp.
    Forward {
        /// Outbound sequence number to write.
        seq: SeqNo,
        /// Outbound timestamp to write.
        timestamp: u32,
        /// This packet switched the stream to its layer (a new layer starts here).
        switched: bool,
    },
    /// Do not send it.
    Drop(DropCause),
}

/// Why [`SequenceRewriter::rewrite`] dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// The stream is paused: no layer is selected.
    Paused,
    /// The packet's layer is neither forwarded nor the switch target.
    NotSelected,
    /// The packet belongs to the target layer, which starts only at a keyframe: ask
    /// the publisher for one ([`SequenceRewriter::pending_keyframe`]).
    AwaitingKeyframe,
    /// The packet belongs to the forwarded layer but precedes the point where the
    /// stream switched to it (reordered across the switch).
    BeforeSwitch,
}

/// The mapping of the layer being forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LayerMapping {
    ssrc: Ssrc,
    /// Outbound = incoming + offset, modulo 2^16 and 2^32.
    seq_offset: u16,
    ts_offset: u32,
    /// Unwrapped incoming sequence number of the switch packet, and of the newest one.
    start: i64,
    newest: i64,
    /// Outbound sequence number of the switch packet.
    out_start: u16,
}

/// The newest packet sent on the outbound stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    seq: u16,
    timestamp: u32,
    at_us: u64,
}

/// Rewrites one outbound stream fed by the simulcast layers of one publisher track.
///
/// Select a layer with [`Self::select`]. Until a keyframe of it arrives, the previous
/// layer (if any) goes on being forwarded; at the keyframe the stream switches: its
/// sequence numbers continue from the last one sent, and its timestamps from the last
/// one sent plus the wall-clock time since it was sent (in media clock units), so the
/// receiver sees one stream with a plausible gap. `select(None)` pauses; selecting a
/// layer again resumes at its next keyframe. Within a layer, wrap-around and reordering
/// keep their mapping; packets from before the switch point are dropped.
#[derive(Debug, Clone)]
pub struct SequenceRewriter {
    clock_rate: u32,
    target: Option<Ssrc>,
    current: Option<LayerMapping>,
    /// The layer forwarded before the current one, for mapping NACKs of its last packets.
    previous: Option<(LayerMapping, u16)>,
    sent: Option<Sent>,
}

impl SequenceRewriter {
    /// A paused rewriter for a stream with RTP clock `clock_rate` (Hz, e.g. 90000).
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            target: None,
            current: None,
            previous: None,
            sent: None,
        }
    }

    /// Chooses the layer to forward (its publisher SSRC), or `None` to pause. Switching
    /// to another layer (or resuming) takes effect at its next keyframe.
    pub fn select(&mut self, ssrc: Option<Ssrc>) {
        self.target = ssrc;
        if ssrc.is_none() {
            self.retire_current();
        }
    }

    /// The layer selected by [`Self::select`] (`None` when paused).
    pub fn target(&self) -> Option<Ssrc> {
        self.target
    }

    /// The layer being forwarded now (`None` when paused or waiting for the first
    /// keyframe).
    pub fn current(&self) -> Option<Ssrc> {
        self.current.map(|c| c.ssrc)
    }

    /// The layer whose keyframe the rewriter waits for, if any: the caller should ask
    /// its publisher for one (rate-limited).
    pub fn pending_keyframe(&self) -> Option<Ssrc> {
        self.target.filter(|&t| self.current() != Some(t))
    }

    fn retire_current(&mut self) {
        if let (Some(c), Some(sent)) = (self.current.take(), self.sent) {
            self.previous = Some((c, sent.seq));
        }
    }

    /// Decides the fate of one incoming packet at time `now_us` (µs, any monotonic
    /// clock) and, when it is forwarded, its outbound sequence number and timestamp.
    pub fn rewrite(&mut self, pkt: &LayerPacket, now_us: u64) -> Rewrite {
        let Some(target) = self.target else {
            return Rewrite::Drop(DropCause::Paused);
        };
        let pkt_seq = pkt.seq.0;
        if let Some(layer) = self.current.as_mut().filter(|c| c.ssrc == pkt.ssrc) {
            let ext = layer.newest + i64::from(rtp::seq_diff(pkt_seq, layer.newest as u16));
            if ext < layer.start {
                return Rewrite::Drop(DropCause::BeforeSwitch);
            }
            layer.newest = layer.newest.max(ext);
            let seq = pkt_seq.wrapping_add(layer.seq_offset);
            let timestamp = pkt.timestamp.wrapping_add(layer.ts_offset);
            self.note_sent(seq, timestamp, now_us);
            return Rewrite::Forward {
                seq: SeqNo(seq),
                timestamp,
                switched: false,
            };
        }
        if pkt.ssrc != target {
            return Rewrite::Drop(DropCause::NotSelected);
        }
        if !pkt.keyframe_start {
            return Rewrite::Drop(DropCause::AwaitingKeyframe);
        }
        // Switch to the target layer at this keyframe.
        let (seq, timestamp) = match self.sent {
            Some(sent) => {
                let elapsed = now_us.saturating_sub(sent.at_us);
                let ticks = (u128::from(elapsed) * u128::from(self.clock_rate) / 1_000_000)
                    .clamp(1, u128::from(MAX_SWITCH_GAP_S * u64::from(self.clock_rate)));
                // ticks fits in u64 (at most 60 s of a 32-bit clock); truncate to 32 bits.
                (
                    sent.seq.wrapping_add(1),
                    sent.timestamp.wrapping_add(ticks as u32),
                )
            }
            None => (pkt_seq, pkt.timestamp),
        };
        self.retire_current();
        let start = i64::from(pkt_seq);
        self.current = Some(LayerMapping {
            ssrc: pkt.ssrc,
            seq_offset: seq.wrapping_sub(pkt_seq),
            ts_offset: timestamp.wrapping_sub(pkt.timestamp),
            start,
            newest: start,
            out_start: seq,
        });
        self.sent = Some(Sent {
            seq,
            timestamp,
            at_us: now_us,
        });
        Rewrite::Forward {
            seq: SeqNo(seq),
            timestamp,
            switched: true,
        }
    }

    fn note_sent(&mut self, seq: u16, timestamp: u32, now_us: u64) {
        match &mut self.sent {
            Some(sent) if !rtp::is_newer(seq, sent.seq) => {}
            sent => {
                *sent = Some(Sent {
                    seq,
                    timestamp,
                    at_us: now_us,
                });
            }
        }
    }

    /// Maps an RTP timestamp of layer `ssrc` (e.g. the one in its sender report) into
    /// the outbound timestamp space; `None` unless `ssrc` is the layer being forwarded
    /// (sender reports of other layers must not reach the subscriber).
    pub fn outbound_timestamp(&self, ssrc: Ssrc, timestamp: u32) -> Option<u32> {
        self.current
            .filter(|c| c.ssrc == ssrc)
            .map(|c| timestamp.wrapping_add(c.ts_offset))
    }

    /// Maps an outbound sequence number (from a subscriber's NACK) back to the
    /// publisher layer and sequence number it was sent from, for the current layer and
    /// the one before it. `None` for numbers this rewriter did not send from them.
    pub fn source_of(&self, out_seq: SeqNo) -> Option<(Ssrc, SeqNo)> {
        let out_seq = out_seq.0;
        // Unwrapped in the layer's own numbering (within 2^15 of its newest packet),
        // so a layer forwarded for more than 2^16 packets still maps its recent ones.
        let within = |m: &LayerMapping| {
            let src = out_seq.wrapping_sub(m.seq_offset);
            let ext = m.newest + i64::from(rtp::seq_diff(src, m.newest as u16));
            (m.start..=m.newest)
                .contains(&ext)
                .then_some((m.ssrc, SeqNo(src)))
        };
        if let Some(hit) = self.current.as_ref().and_then(within) {
            return Some(hit);
        }
        // The previous layer's numbers end where the current layer's begin.
        let (p, _) = self.previous.as_ref()?;
        within(p).filter(|_| {
            self.current
                .is_none_or(|c| rtp::is_newer(c.out_start, out_seq))
        })
    }
}

/// Keeps a layered VP8 stream's PictureID and TL0PICIDX continuous across layer
/// switches, as the receiver's frame-reference tracking expects of one stream: each
/// simulcast layer numbers its pictures on its own, so at a switch the new layer's
/// numbers are shifted to go on from the last ones sent (RFC 7741 §4.2). Rewrites in
/// place; never panics; 7-bit PictureIDs stay 7 bits wide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Continuity {
    picture_offset: u16,
    tl0_offset: u8,
    /// The last PictureID and TL0PICIDX sent (after the shift).
    last_picture: Option<u16>,
    last_tl0: Option<u8>,
}

impl Vp8Continuity {
    /// Rewrites the descriptor of a forwarded packet's `payload`; `switched` when the
    /// packet starts the stream's new layer ([`Rewrite::Forward`]), which sets the
    /// shift from its numbers.
    pub fn forward(&mut self, payload: &mut [u8], switched: bool) {
        let (picture_id, tl0) = vp8::picture_indices(payload);
        if switched {
            if let (Some((at, wide)), Some(last)) = (picture_id, self.last_picture) {
                let id = vp8::read_picture_id(payload, at, wide);
                self.picture_offset = last.wrapping_add(1).wrapping_sub(id);
            }
            if let (Some(at), Some(last)) = (tl0, self.last_tl0) {
                self.tl0_offset = last.wrapping_add(1).wrapping_sub(payload[at]);
            }
        }
        if let Some((at, wide)) = picture_id {
            self.last_picture = Some(self.shift_picture_id(payload, at, wide));
        }
        if let Some(at) = tl0 {
            payload[at] = payload[at].wrapping_add(self.tl0_offset);
            self.last_tl0 = Some(payload[at]);
        }
    }

    /// Rewrites a retransmitted packet of the forwarded layer as it was sent.
    pub fn resend(&self, payload: &mut [u8]) {
        let (picture_id, tl0) = vp8::picture_indices(payload);
        if let Some((at, wide)) = picture_id {
            self.shift_picture_id(payload, at, wide);
        }
        if let Some(at) = tl0 {
            payload[at] = payload[at].wrapping_add(self.tl0_offset);
        }
    }

    /// Shifts the PictureID at `at` (checked by [`vp8::picture_indices`]) and returns it.
    fn shift_picture_id(&self, payload: &mut [u8], at: usize, wide: bool) -> u16 {
        let id = vp8::read_picture_id(payload, at, wide).wrapping_add(self.picture_offset);
        vp8::write_picture_id(payload, at, wide, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn pkt(ssrc: u32, seq: u16, timestamp: u32, keyframe_start: bool) -> LayerPacket {
        LayerPacket {
            ssrc: Ssrc(ssrc),
            seq: SeqNo(seq),
            timestamp,
            keyframe_start,
        }
    }

    fn forwarded(r: Rewrite) -> (u16, u32) {
        match r {
            Rewrite::Forward { seq, timestamp, .. } => (seq.0, timestamp),
            Rewrite::Drop(c) => panic!("dropped: {c:?}"),
        }
    }

    #[test]
    fn starts_at_a_keyframe_and_keeps_the_first_layers_numbers() {
        let mut rw = SequenceRewriter::new(90_000);
        assert_eq!(
            rw.rewrite(&pkt(1, 10, 1000, true), 0),
            Rewrite::Drop(DropCause::Paused)
        );
        rw.select(Some(Ssrc(1)));
        assert_eq!(rw.pending_keyframe(), Some(Ssrc(1)));
        assert_eq!(
            rw.rewrite(&pkt(1, 11, 1000, false), 0),
            Rewrite::Drop(DropCause::AwaitingKeyframe)
        );
        assert_eq!(
            rw.rewrite(&pkt(2, 50, 7, true), 0),
            Rewrite::Drop(DropCause::NotSelected)
        );
        assert_eq!(
            rw.rewrite(&pkt(1, 12, 4000, true), 0),
            Rewrite::Forward {
                seq: SeqNo(12),
                timestamp: 4000,
                switched: true
            }
        );
        assert_eq!(rw.current(), Some(Ssrc(1)));
        assert_eq!(rw.pending_keyframe(), None);
        assert_eq!(
            forwarded(rw.rewrite(&pkt(1, 13, 4000, false), 1)),
            (13, 4000)
        );
        assert_eq!(
            rw.rewrite(&pkt(1, 11, 1000, false), 2),
            Rewrite::Drop(DropCause::BeforeSwitch)
        );
    }

    #[test]
    fn switches_layers_only_at_a_keyframe_with_continuous_numbers() {
        let mut rw = SequenceRewriter::new(90_000);
        rw.select(Some(Ssrc(1)));
        // Layer 1 (low): seq 100.., 30 fps at 90 kHz; layer 2 (high): seq 5000...
        let _ = rw.rewrite(&pkt(1, 100, 10_000, true), 0);
        let _ = rw.rewrite(&pkt(1, 101, 13_000, false), 33_333);
        rw.select(Some(Ssrc(2)));
        assert_eq!(rw.pending_keyframe(), Some(Ssrc(2)));
        assert_eq!(
            rw.rewrite(&pkt(2, 5000, 777_000, false), 40_000),
            Rewrite::Drop(DropCause::AwaitingKeyframe)
        );
        // Layer 1 goes on until then.
        assert_eq!(
            forwarded(rw.rewrite(&pkt(1, 102, 16_000, false), 66_666)),
            (102, 16_000)
        );
        // Keyframe of layer 2, 10 ms after the last packet sent: next seq, +900 ticks.
        assert_eq!(
            rw.rewrite(&pkt(2, 5001, 780_000, true), 76_666),
            Rewrite::Forward {
                seq: SeqNo(103),
                timestamp: 16_900,
                switched: true
            }
        );
        assert_eq!(rw.current(), Some(Ssrc(2)));
        assert_eq!(rw.outbound_timestamp(Ssrc(2), 783_000), Some(19_900));
        assert_eq!(rw.outbound_timestamp(Ssrc(1), 19_000), None);
        assert_eq!(
            rw.rewrite(&pkt(1, 103, 19_000, false), 80_000),
            Rewrite::Drop(DropCause::NotSelected)
        );
        assert_eq!(
            forwarded(rw.rewrite(&pkt(2, 5002, 780_000, false), 80_000)),
            (104, 16_900)
        );
        assert_eq!(
            forwarded(rw.rewrite(&pkt(2, 5003, 783_000, false), 110_000)),
            (105, 19_900)
        );
        // Reordered inside the layer, and from before the switch.
        assert_eq!(
            forwarded(rw.rewrite(&pkt(2, 5005, 786_000, false), 140_000)),
            (107, 22_900)
        );
        assert_eq!(
            forwarded(rw.rewrite(&pkt(2, 5004, 783_000, false), 141_000)),
            (106, 19_900)
        );
        assert_eq!(
            rw.rewrite(&pkt(2, 5000, 777_000, false), 142_000),
            Rewrite::Drop(DropCause::BeforeSwitch)
        );
        // A later switch continues from the newest sent (107), not the reordered 106.
        rw.select(Some(Ssrc(1)));
        let (seq, ts) = forwarded(rw.rewrite(&pkt(1, 200, 50_000, true), 150_000));
        assert_eq!((seq, ts), (108, 22_900 + 900));
    }

    #[test]
    fn wraps_incoming_and_outgoing_numbers() {
        let mut rw = SequenceRewriter::new(48_000);
        rw.select(Some(Ssrc(7)));
        let _ = rw.rewrite(&pkt(7, 65_534, u32::MAX - 959, true), 0);
        let mut expected = 65_534u16;
        let mut ts = u32::MAX - 959;
        for i in 1..6u16 {
            expected = expected.wrapping_add(1);
            ts = ts.wrapping_add(960);
            let r = rw.rewrite(
                &pkt(7, 65_534u16.wrapping_add(i), ts, false),
                u64::from(i) * 20_000,
            );
            assert_eq!(forwarded(r), (expected, ts));
        }
        // Switch to a layer far away in number space; outbound continues across wrap.
        rw.select(Some(Ssrc(8)));
        let (seq, _) = forwarded(rw.rewrite(&pkt(8, 30_000, 5, true), 200_000));
        assert_eq!(seq, expected.wrapping_add(1));
        // A reordered packet across this layer's own wrap is still mapped.
        let mut rw = SequenceRewriter::new(90_000);
        rw.select(Some(Ssrc(1)));
        let _ = rw.rewrite(&pkt(1, 65_530, 0, true), 0);
        assert_eq!(forwarded(rw.rewrite(&pkt(1, 2, 0, false), 1)).0, 2);
        assert_eq!(
            forwarded(rw.rewrite(&pkt(1, 65_535, 0, false), 2)).0,
            65_535
        );
        assert_eq!(
            rw.rewrite(&pkt(1, 65_529, 0, false), 3),
            Rewrite::Drop(DropCause::BeforeSwitch)
        );
    }

    #[test]
    fn pause_and_resume_at_the_next_keyframe() {
        let mut rw = SequenceRewriter::new(90_000);
        rw.select(Some(Ssrc(1)));
        let _ = rw.rewrite(&pkt(1, 10, 90_000, true), 1_000_000);
        let _ = rw.rewrite(&pkt(1, 11, 93_000, false), 1_033_000);
        rw.select(None);
        assert_eq!(rw.current(), None);
        assert_eq!(rw.pending_keyframe(), None);
        assert_eq!(
            rw.rewrite(&pkt(1, 12, 96_000, true), 1_066_000),
            Rewrite::Drop(DropCause::Paused)
        );
        rw.select(Some(Ssrc(1)));
        assert_eq!(rw.pending_keyframe(), Some(Ssrc(1)));
        assert_eq!(
            rw.rewrite(&pkt(1, 40, 180_000, false), 2_000_000),
            Rewrite::Drop(DropCause::AwaitingKeyframe)
        );
        // Resumes 2 s after the last packet sent: seq 12, timestamp + 2 s of clock.
        assert_eq!(
            forwarded(rw.rewrite(&pkt(1, 41, 183_000, true), 3_033_000)),
            (12, 93_000 + 180_000)
        );
        // A very long pause adds at most a minute.
        rw.select(None);
        rw.select(Some(Ssrc(1)));
        let (_, ts) = forwarded(rw.rewrite(&pkt(1, 9000, 0, true), 3_033_000 + 3_600_000_000));
        assert_eq!(ts, 273_000 + 60 * 90_000);
    }

    #[test]
    fn maps_nacked_numbers_back_to_their_layer() {
        let mut rw = SequenceRewriter::new(90_000);
        assert_eq!(rw.source_of(SeqNo(0)), None);
        rw.select(Some(Ssrc(1)));
        for s in 100..105 {
            let _ = rw.rewrite(&pkt(1, s, 0, s == 100), 0);
        }
        rw.select(Some(Ssrc(2)));
        let _ = rw.rewrite(&pkt(2, 7000, 0, true), 10);
        let _ = rw.rewrite(&pkt(2, 7001, 0, false), 20);
        assert_eq!(rw.source_of(SeqNo(103)), Some((Ssrc(1), SeqNo(103))));
        assert_eq!(rw.source_of(SeqNo(105)), Some((Ssrc(2), SeqNo(7000))));
        assert_eq!(rw.source_of(SeqNo(106)), Some((Ssrc(2), SeqNo(7001))));
        assert_eq!(rw.source_of(SeqNo(107)), None, "not sent yet");
        assert_eq!(
            rw.source_of(SeqNo(99)),
            None,
            "before the first layer started"
        );
    }

    #[test]
    fn maps_nacks_of_a_layer_forwarded_for_more_than_65536_packets() {
        let mut rw = SequenceRewriter::new(90_000);
        rw.select(Some(Ssrc(1)));
        let mut last = SeqNo(0);
        for i in 0..70_000u32 {
            let seq = (1000 + i) as u16;
            let Rewrite::Forward { seq: out, .. } =
                rw.rewrite(&pkt(1, seq, i * 3000, i == 0), u64::from(i) * 1000)
            else {
                panic!("forwarded");
            };
            last = out;
        }
        let newest_src = (1000 + 69_999u32) as u16;
        assert_eq!(rw.source_of(last), Some((Ssrc(1), SeqNo(newest_src))));
        // Sent 5,000 packets ago: before the outbound numbers last passed the switch
        // packet's.
        assert_eq!(
            rw.source_of(SeqNo(last.0.wrapping_sub(5000))),
            Some((Ssrc(1), SeqNo(newest_src.wrapping_sub(5000))))
        );
        assert_eq!(rw.source_of(last.wrapping_add(1)), None, "not sent yet");
    }

    /// A VP8 descriptor with a 15-bit PictureID and a TL0PICIDX, then `rest`.
    fn vp8(picture_id: u16, tl0: u8, start: bool, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x80 | if start { 0x10 } else { 0 },
            0xc0,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
            tl0,
        ];
        p.extend_from_slice(rest);
        p
    }

    fn indices(p: &[u8]) -> (u16, u8) {
        (u16::from_be_bytes([p[2] & 0x7f, p[3]]), p[4])
    }

    #[test]
    fn vp8_picture_ids_and_tl0_go_on_across_a_switch() {
        let mut c = Vp8Continuity::default();
        // The first layer keeps its numbers.
        for (i, id) in (100u16..103).enumerate() {
            let mut p = vp8(id, 7 + i as u8, i == 0, &[1, 2, 3]);
            c.forward(&mut p, i == 0);
            assert_eq!(indices(&p), (id, 7 + i as u8));
            assert_eq!(&p[5..], &[1, 2, 3], "the payload is untouched");
        }
        // Switch to a layer numbering from 32760 (about to wrap) and TL0 250.
        let mut p = vp8(32_760, 250, true, &[9]);
        c.forward(&mut p, true);
        assert_eq!(indices(&p), (103, 10), "one after the last sent");
        let mut p = vp8(32_767, 251, false, &[9]);
        c.forward(&mut p, false);
        assert_eq!(indices(&p), (110, 11));
        let mut p = vp8(2, 252, false, &[9]);
        c.forward(&mut p, false);
        assert_eq!(indices(&p), (113, 12), "wraps with the layer's own numbers");
        // A retransmission of that layer's packet is shifted the same way.
        let mut p = vp8(32_767, 251, false, &[9]);
        c.resend(&mut p);
        assert_eq!(indices(&p), (110, 11));
        // 7-bit PictureIDs stay 7 bits wide.
        let mut p = vec![0x90, 0x80, 0x05, 0xaa];
        c.forward(&mut p, true);
        assert_eq!(p[2], 114, "(113 + 1) mod 128");
        assert_eq!(p[3], 0xaa);
        // Descriptors without the fields, cut short or empty, are left alone.
        for mut p in [
            vec![0x10, 0x00, 0x9d],
            vec![0x90, 0x80],
            vec![0x90, 0x80, 0x85],
            vec![],
        ] {
            let before = p.clone();
            c.forward(&mut p, true);
            assert_eq!(p, before);
        }
    }

    #[test]
    fn vp8_continuity_never_panics_on_random_payloads() {
        let mut rng = StdRng::seed_from_u64(6184);
        let mut buf = [0u8; 32];
        for _ in 0..100_000 {
            let n = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..n]);
            let mut c = Vp8Continuity::default();
            c.forward(&mut buf[..n], true);
            c.forward(&mut buf[..n], false);
            c.resend(&mut buf[..n]);
        }
    }

    #[test]
    fn random_switching_keeps_outbound_sequence_continuous() {
        // Three layers sending in lockstep; the target changes at random. Every packet
        // forwarded must be exactly one after the previous one (no reordering here),
        // and timestamps must never go backwards.
        let mut rng = StdRng::seed_from_u64(8853);
        let mut rw = SequenceRewriter::new(90_000);
        rw.select(Some(Ssrc(0)));
        let mut seqs = [1000u16, 30_000, 65_000];
        let mut last: Option<(SeqNo, u32)> = None;
        let mut switches = 0;
        for frame in 0..3000u32 {
            if rng.random_bool(0.02) {
                rw.select(Some(Ssrc(rng.random_range(0..3))));
            }
            let now = u64::from(frame) * 33_333;
            for (layer, seq) in seqs.iter_mut().enumerate() {
                let key = frame % 60 == 0 || rng.random_bool(0.01);
                for i in 0..3 {
                    let p = pkt(
                        layer as u32,
                        *seq,
                        frame * 3000 + layer as u32 * 77,
                        key && i == 0,
                    );
                    *seq = seq.wrapping_add(1);
                    if let Rewrite::Forward {
                        seq,
                        timestamp,
                        switched,
                    } = rw.rewrite(&p, now)
                    {
                        switches += usize::from(switched);
                        if let Some((s, t)) = last {
                            assert_eq!(seq, s.wrapping_add(1));
                            assert!((timestamp.wrapping_sub(t) as i32) >= 0);
                        }
                        last = Some((seq, timestamp));
                    }
                }
            }
        }
        assert!(switches > 20, "{switches}");
    }
}
