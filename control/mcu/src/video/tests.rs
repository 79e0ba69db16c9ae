//! Scenario tests of the composer with real libvpx: publishers encode solid-colour
//! pictures, packetize them, and a subscriber decodes what the composer sends.

use std::time::{Duration, Instant};

use super::frame::{BLACK, I420Frame, Yuv};
use super::vp8_rtp::{Descriptor, MAX_PAYLOAD, Vp8Depacketizer, Vp8Packetizer};
use super::vpx::{Decoder, Encoder, EncoderConfig};
use super::{Composer, ComposerConfig, Layout};

const RED: Yuv = Yuv {
    y: 81,
    u: 90,
    v: 240,
};
const GREEN: Yuv = Yuv {
    y: 145,
    u: 54,
    v: 34,
};
const BLUE: Yuv = Yuv {
    y: 41,
    u: 240,
    v: 110,
};
const YELLOW: Yuv = Yuv {
    y: 210,
    u: 16,
    v: 146,
};
const WHITE: Yuv = Yuv {
    y: 235,
    u: 128,
    v: 128,
};
const FPS: u8 = 15;
const PERIOD: Duration = Duration::from_nanos(1_000_000_000 / FPS as u64);

/// One RTP packet of a publisher: seq, timestamp, marker, payload.
type Packet = (u16, u32, bool, Vec<u8>);

/// A publisher of 320x180 pictures: one colour, with a band of changing noise along
/// the top so that frames are large (several packets each).
struct Publisher {
    encoder: Encoder,
    packetizer: Vp8Packetizer,
    colour: Yuv,
    seq: u16,
    timestamp: u32,
    noise: u32,
    noise_rows: usize,
    /// Noise samples spread over 128 +/- amplitude / 2 (255: all values).
    noise_amplitude: u32,
}

impl Publisher {
    fn new(colour: Yuv, seq: u16) -> Self {
        Self::with(colour, seq, 40, 1_500_000)
    }

    fn with(colour: Yuv, seq: u16, noise_rows: usize, bitrate_bps: u32) -> Self {
        let encoder = Encoder::new(EncoderConfig {
            width: 320,
            height: 180,
            fps: FPS,
            bitrate_bps,
            keyframe_interval: 1000,
        })
        .unwrap();
        Publisher {
            encoder,
            packetizer: Vp8Packetizer::new(seq),
            colour,
            seq,
            timestamp: u32::from(seq) * 1000,
            noise: u32::from(seq) + 1,
            noise_rows,
            noise_amplitude: 256,
        }
    }

    fn picture(&mut self) -> I420Frame {
        let mut p = I420Frame::new(320, 180);
        p.fill(self.colour);
        let (y, _, _) = p.planes_mut();
        for v in y.iter_mut().take(320 * self.noise_rows) {
            // xorshift: different noise in every frame.
            self.noise ^= self.noise << 13;
            self.noise ^= self.noise >> 17;
            self.noise ^= self.noise << 5;
            *v = (128 + (self.noise >> 8) % self.noise_amplitude - self.noise_amplitude / 2) as u8;
        }
        p
    }

    fn frame(&mut self, keyframe: bool) -> Vec<Packet> {
        let picture = self.picture();
        let frame = self.encoder.encode(&picture, keyframe).unwrap().unwrap();
        let mut payloads = Vec::new();
        self.packetizer.packetize(&frame.data, &mut payloads);
        self.timestamp = self.timestamp.wrapping_add(90_000 / u32::from(FPS));
        let n = payloads.len();
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                self.seq = self.seq.wrapping_add(1);
                (self.seq, self.timestamp, i + 1 == n, p)
            })
            .collect()
    }
}

/// A subscriber of the composed stream: rebuilds and decodes its frames.
struct Subscriber {
    depacketizer: Vp8Depacketizer,
    decoder: Decoder,
    picture: I420Frame,
    seq: u16,
    timestamp: u32,
    picture_ids: Vec<u16>,
    keyframes: Vec<bool>,
    bytes: usize,
}

impl Subscriber {
    fn new() -> Self {
        Subscriber {
            depacketizer: Vp8Depacketizer::new(),
            decoder: Decoder::new().unwrap(),
            picture: I420Frame::new(2, 2),
            seq: 100,
            timestamp: 0,
            picture_ids: Vec::new(),
            keyframes: Vec::new(),
            bytes: 0,
        }
    }

    /// Takes one output frame's payloads; checks their size and decodes the frame.
    fn take(&mut self, payloads: &[Vec<u8>]) {
        assert!(!payloads.is_empty());
        self.timestamp += 6000;
        let mut done = None;
        for (i, p) in payloads.iter().enumerate() {
            assert!(p.len() <= MAX_PAYLOAD, "payload of {} bytes", p.len());
            self.bytes += p.len();
            let d = Descriptor::parse(p).unwrap();
            assert_eq!(d.start, i == 0);
            if i == 0 {
                self.picture_ids.push(d.picture_id.unwrap());
                // The VP8 payload header's P bit: 0 on keyframes.
                self.keyframes.push(p[d.len] & 1 == 0);
            }
            self.seq = self.seq.wrapping_add(1);
            done = self
                .depacketizer
                .push(self.seq, self.timestamp, i + 1 == payloads.len(), p)
                .unwrap();
        }
        let frame = done.expect("a whole frame");
        assert!(self.decoder.decode(&frame.data, &mut self.picture).unwrap());
    }

    fn at(&self, x: u16, y: u16) -> Yuv {
        self.picture.pixel(x, y).unwrap()
    }
}

fn near(got: Yuv, want: Yuv) -> bool {
    got.y.abs_diff(want.y) <= 12 && got.u.abs_diff(want.u) <= 12 && got.v.abs_diff(want.v) <= 12
}

#[track_caller]
fn assert_near(got: Yuv, want: Yuv) {
    assert!(near(got, want), "got {got:?}, want {want:?}");
}

struct Room {
    composer: Composer,
    publishers: Vec<(u64, Publisher)>,
    subscriber: Subscriber,
    now: Instant,
    frames_with_several_packets: usize,
}

impl Room {
    fn new(layout: Layout, colours: &[Yuv]) -> Self {
        let composer = Composer::new(ComposerConfig {
            layout,
            width: 640,
            height: 360,
            fps: FPS,
            bitrate_bps: 1_000_000,
        })
        .unwrap();
        let now = composer.next_frame();
        let mut room = Room {
            composer,
            publishers: Vec::new(),
            subscriber: Subscriber::new(),
            now,
            frames_with_several_packets: 0,
        };
        for (i, &c) in colours.iter().enumerate() {
            let id = 10 + i as u64;
            room.composer.add_input(id);
            room.publishers.push((
                id,
                Publisher::new(c, 65000u16.wrapping_add(1000 * i as u16)),
            ));
        }
        room
    }

    /// One frame interval: every publisher sends a frame, the composer ticks, the
    /// subscriber decodes the output.
    fn step(&mut self, keyframe: bool) {
        for (id, publisher) in &mut self.publishers {
            let packets = publisher.frame(keyframe);
            if packets.len() > 1 {
                self.frames_with_several_packets += 1;
            }
            for (seq, ts, marker, payload) in packets {
                self.composer
                    .push_rtp(self.now, *id, seq, ts, marker, &payload);
            }
        }
        self.tick();
    }

    fn tick(&mut self) {
        let mut out = Vec::new();
        assert!(self.composer.tick(self.now, &mut out));
        assert!(
            !self.composer.tick(self.now, &mut Vec::new()),
            "one frame per interval"
        );
        self.subscriber.take(&out);
        self.now += PERIOD;
        assert!(self.composer.next_frame() <= self.now);
    }
}

#[test]
fn four_inputs_fill_the_grid_in_order_and_a_removed_one_leaves_it() {
    let mut room = Room::new(Layout::Grid, &[RED, GREEN, BLUE, YELLOW]);
    assert_eq!(room.composer.cell_size(12), Some((320, 180)));
    room.step(true);
    for _ in 0..5 {
        room.step(false);
    }
    assert!(
        room.frames_with_several_packets > 0,
        "input frames span several packets"
    );
    let s = &room.subscriber;
    assert_near(s.at(160, 90), RED);
    assert_near(s.at(480, 90), GREEN);
    assert_near(s.at(160, 270), BLUE);
    assert_near(s.at(480, 270), YELLOW);
    let stats = room.composer.stats();
    assert_eq!(stats.inputs, 4);
    assert_eq!(stats.frames_in, 24);
    assert_eq!(stats.frames_out, 6);
    assert_eq!(stats.lost_frames, 0);

    // PictureID increments by one per frame.
    let ids = &room.subscriber.picture_ids;
    assert!(
        ids.windows(2).all(|w| w[1] == (w[0] + 1) & 0x7FFF),
        "{ids:?}"
    );

    // Yellow leaves: a grid of three at the next frame.
    room.composer.remove_input(13);
    room.publishers.pop();
    assert_eq!(room.composer.cell_size(13), None);
    room.step(false);
    let s = &room.subscriber;
    assert_near(s.at(160, 90), RED);
    assert_near(s.at(480, 90), GREEN);
    assert_near(s.at(160, 270), BLUE);
    assert_near(s.at(480, 270), BLACK);
    assert_eq!(room.composer.stats().inputs, 3);
}

#[test]
fn the_speaker_fills_the_large_area() {
    let mut room = Room::new(Layout::Speaker, &[RED, GREEN, BLUE]);
    room.step(true);
    room.step(false);
    // No speaker: the first input is large.
    assert_near(room.subscriber.at(320, 135), RED);
    room.composer.set_speaker(Some(12));
    assert_eq!(room.composer.cell_size(12), Some((640, 270)));
    room.step(false);
    room.step(false);
    let s = &room.subscriber;
    assert_near(s.at(320, 135), BLUE);
    // The others in the strip below, in input order.
    assert_near(s.at(160, 315), RED);
    assert_near(s.at(480, 315), GREEN);
}

#[test]
fn a_keyframe_request_makes_the_next_frame_a_keyframe() {
    let mut room = Room::new(Layout::Grid, &[RED]);
    room.step(true);
    room.step(false);
    room.step(false);
    room.composer.request_keyframe();
    room.step(false);
    room.step(false);
    assert_eq!(room.subscriber.keyframes, [true, false, false, true, false]);
    assert_eq!(room.composer.stats().keyframes_out, 2);
}

#[test]
fn inputs_ask_for_keyframes_when_new_and_after_a_loss() {
    let mut room = Room::new(Layout::Grid, &[RED]);
    let t0 = room.now;
    let mut asks = Vec::new();
    // New: asks once, not again before 500 ms, again after if still waiting.
    room.composer.keyframe_requests(t0, &mut asks);
    assert_eq!(asks, [10]);
    room.composer
        .keyframe_requests(t0 + Duration::from_millis(400), &mut asks);
    assert_eq!(asks, [10]);
    room.composer
        .keyframe_requests(t0 + Duration::from_millis(500), &mut asks);
    assert_eq!(asks, [10, 10]);
    room.step(true);
    room.step(false);
    asks.clear();
    room.composer
        .keyframe_requests(room.now + Duration::from_secs(1), &mut asks);
    assert!(asks.is_empty(), "the keyframe came");
    assert_near(room.subscriber.at(320, 180), RED);
    let before = room.composer.stats();

    // A frame loses its middle packet; the publisher turns white in deltas.
    let (id, publisher) = &mut room.publishers[0];
    let id = *id;
    publisher.colour = WHITE;
    let packets = publisher.frame(false);
    assert!(packets.len() >= 3);
    for (i, (seq, ts, marker, payload)) in packets.into_iter().enumerate() {
        if i != 1 {
            room.composer
                .push_rtp(room.now, id, seq, ts, marker, &payload);
        }
    }
    room.tick();
    for _ in 0..3 {
        room.step(false);
    }
    let after = room.composer.stats();
    assert_eq!(
        after.frames_in, before.frames_in,
        "no delta decoded after the loss"
    );
    assert_eq!(
        after.lost_frames,
        before.lost_frames + 4,
        "1 incomplete + 3 skipped"
    );
    assert_near(room.subscriber.at(320, 180), RED);
    asks.clear();
    room.composer
        .keyframe_requests(room.now + Duration::from_secs(2), &mut asks);
    assert_eq!(asks, [id]);

    // The keyframe answers it: white on screen, no more requests.
    room.step(true);
    assert_near(room.subscriber.at(320, 240), WHITE);
    assert_eq!(room.composer.stats().frames_in, before.frames_in + 1);
    asks.clear();
    room.composer
        .keyframe_requests(room.now + Duration::from_secs(3), &mut asks);
    assert!(asks.is_empty());
}

#[test]
fn an_input_with_no_picture_yet_is_dark_grey_and_no_input_is_black() {
    let mut composer = Composer::new(ComposerConfig {
        layout: Layout::Grid,
        width: 320,
        height: 180,
        fps: FPS,
        bitrate_bps: 200_000,
    })
    .unwrap();
    let mut sub = Subscriber::new();
    let t0 = composer.next_frame();
    let mut out = Vec::new();
    assert!(composer.tick(t0, &mut out));
    sub.take(&out);
    assert_near(sub.at(160, 90), BLACK);
    // Idle: one frame a second.
    assert_eq!(composer.next_frame(), t0 + Duration::from_secs(1));
    composer.add_input(1);
    assert_eq!(composer.next_frame(), t0 + PERIOD);
    out.clear();
    assert!(composer.tick(t0 + PERIOD, &mut out));
    sub.take(&out);
    assert_near(sub.at(160, 90), super::frame::DARK_GREY);
}

#[test]
fn a_lower_bitrate_lowers_the_bytes_sent() {
    // Noise over the whole input: the encoder is limited by its target, not the content.
    let mut room = Room::new(Layout::Grid, &[]);
    room.composer.add_input(1);
    let mut publisher = Publisher::with(GREY_NOISE, 7, 180, 4_000_000);
    publisher.noise_amplitude = 32;
    room.publishers.push((1, publisher));
    room.composer.set_bitrate(1_500_000);
    room.step(true);
    let two_seconds = usize::from(FPS) * 2;
    let measure = |room: &mut Room| {
        // Let the rate control settle, then count two seconds.
        for _ in 0..usize::from(FPS) {
            room.step(false);
        }
        let start = room.subscriber.bytes;
        for _ in 0..two_seconds {
            room.step(false);
        }
        room.subscriber.bytes - start
    };
    let high = measure(&mut room);
    room.composer.set_bitrate(250_000);
    assert_eq!(room.composer.config().bitrate_bps, 250_000);
    let low = measure(&mut room);
    eprintln!("composed bytes in 2 s: {high} at 1.5 Mbit/s, {low} at 250 kbit/s");
    assert!(
        high > 3 * low,
        "{high} bytes at 1.5 Mbit/s, {low} at 250 kbit/s"
    );
}

const GREY_NOISE: Yuv = Yuv {
    y: 128,
    u: 128,
    v: 128,
};

#[test]
fn garbage_frames_reach_the_decoder_without_harm() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(15);
    let mut room = Room::new(Layout::Grid, &[RED, GREEN]);
    room.step(true);
    let before = room.composer.stats();
    // Whole one-packet "frames" (start bit and marker set), half of them dressed as
    // keyframes (P bit clear, start code, a plausible size) so libvpx parses them.
    for k in 0..2000u32 {
        let mut payload = vec![0x10];
        let len = rng.random_range(1..300);
        payload.extend((0..len).map(|_| rng.random::<u8>()));
        if k % 2 == 0 && payload.len() >= 11 {
            payload[1..11]
                .copy_from_slice(&[0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00]);
        }
        let seq = 30_000u16.wrapping_add(k as u16);
        room.composer
            .push_rtp(room.now, 10, seq, 500_000 + 3000 * k, true, &payload);
    }
    let after = room.composer.stats();
    assert!(
        after.lost_frames > before.lost_frames,
        "garbage counted as lost"
    );
    // The composer still produces decodable frames and the other input is intact.
    room.step(true);
    assert_near(room.subscriber.at(480, 180), GREEN);
    assert!(room.composer.tick(room.now, &mut Vec::new()));
}
