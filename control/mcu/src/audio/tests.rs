//! Tests of the mixer with real libopus: tones are Opus-encoded as a browser would send
//! them (20 ms packets, random starting sequence number and timestamp), mixed, and the
//! outputs decoded and measured with a Goertzel filter.

use std::f64::consts::PI;

use rand::Rng;

use super::*;

const RATE: f64 = 48_000.0;

/// One publisher sending a sine tone.
struct ToneSender {
    encoder: opus::Encoder,
    freq: f64,
    amplitude: f64,
    sample: u64,
    seq: u16,
    ts: u32,
    stereo: bool,
}

impl ToneSender {
    /// A sender whose encoder codes two channels (the same tone on both), as a browser
    /// with `stereo=1` does.
    fn stereo(freq: f64, amplitude: f64) -> Self {
        let mut s = Self::new(freq, amplitude);
        s.encoder = opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)
            .expect("encoder");
        s.stereo = true;
        s
    }

    fn new(freq: f64, amplitude: f64) -> Self {
        let mut rng = rand::rng();
        let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("encoder");
        encoder
            .set_bitrate(opus::Bitrate::Bits(48_000))
            .expect("bitrate");
        Self {
            encoder,
            freq,
            amplitude,
            sample: 0,
            seq: rng.random(),
            ts: rng.random(),
            stereo: false,
        }
    }

    /// The next 20 ms packet: (seq, timestamp, payload).
    fn next(&mut self) -> (u16, u32, Vec<u8>) {
        let pcm: Vec<i16> = (0..FRAME_SAMPLES as u64)
            .map(|i| {
                let t = (self.sample + i) as f64 / RATE;
                (self.amplitude * (2.0 * PI * self.freq * t).sin())
                    .round()
                    .clamp(-32_768.0, 32_767.0) as i16
            })
            .collect();
        self.sample += FRAME_SAMPLES as u64;
        let pcm = if self.stereo {
            pcm.iter().flat_map(|&x| [x, x]).collect()
        } else {
            pcm
        };
        let payload = self.encoder.encode_vec(&pcm, 4000).expect("encode");
        let packet = (self.seq, self.ts, payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(FRAME_SAMPLES as u32);
        packet
    }
}

/// Decodes one output's payloads in order as a receiver would.
fn decode_all(payloads: &[Vec<u8>]) -> Vec<i16> {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; MAX_PACKET_SAMPLES];
    for p in payloads {
        let n = decoder
            .decode(p, &mut buf, false)
            .expect("our output decodes");
        pcm.extend_from_slice(&buf[..n]);
    }
    pcm
}

/// Power of `pcm` at `freq` (Goertzel), normalised by the length.
fn power(pcm: &[i16], freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq / RATE).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (pcm.len() as f64).powi(2)
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

fn rms(pcm: &[i16]) -> f64 {
    (pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / pcm.len().max(1) as f64).sqrt()
}

/// Collects each output's payloads from `out` and checks every output produced one.
fn collect(out: &mut Vec<(OutputId, Vec<u8>)>, per_output: &mut BTreeMap<OutputId, Vec<Vec<u8>>>) {
    let expected = per_output.len();
    let got = out.len();
    for (id, p) in out.drain(..) {
        per_output.get_mut(&id).expect("a known output").push(p);
    }
    assert_eq!(got, expected, "one payload per output per tick");
}

#[test]
fn three_tones_mix_and_the_minus_one_output_lacks_its_own() {
    let mut mixer = AudioMixer::new(64_000).expect("mixer");
    let mut senders = [
        (1, ToneSender::new(440.0, 6000.0)),
        (2, ToneSender::new(660.0, 6000.0)),
        (3, ToneSender::stereo(880.0, 6000.0)),
    ];
    for (id, _) in &senders {
        mixer.add_input(*id);
    }
    let all = mixer.output(&[]).expect("output");
    let minus_440 = mixer.output(&[1]).expect("output");
    assert_ne!(all, minus_440);
    let mut per_output = BTreeMap::from([(all, Vec::new()), (minus_440, Vec::new())]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut latencies = Vec::new();
    for k in 0..50u32 {
        let now = t0 + FRAME * k;
        for (id, s) in &mut senders {
            let (seq, ts, payload) = s.next();
            mixer.push_rtp(now + Duration::from_millis(*id), *id, seq, ts, &payload);
        }
        mixer.tick(now + Duration::from_millis(5), &mut out);
        collect(&mut out, &mut per_output);
        latencies.clear();
        mixer.drain_latencies(&mut latencies);
        if k >= 3 {
            assert_eq!(latencies.len(), 3, "tick {k}: one frame per input");
            for l in &latencies {
                assert!(
                    *l >= Duration::from_millis(40) && *l <= Duration::from_millis(80),
                    "{l:?}"
                );
            }
        }
    }
    let stats = mixer.stats();
    assert_eq!((stats.inputs, stats.outputs), (3, 2));
    assert_eq!(
        (stats.late_packets, stats.lost_packets, stats.decode_errors),
        (0, 0, 0)
    );
    assert!(stats.frames_decoded >= 3 * 45, "{stats:?}");
    assert!(stats.cpu > Duration::ZERO);

    // The last 600 ms, past the start-up and the codecs' delays.
    let pcm = decode_all(&per_output[&all]);
    let tail = &pcm[pcm.len() - 30 * FRAME_SAMPLES..];
    let tones = [440.0, 660.0, 880.0].map(|f| power(tail, f));
    let off = [550.0, 770.0, 1000.0]
        .map(|f| power(tail, f))
        .into_iter()
        .fold(0.0, f64::max);
    for (f, p) in [440, 660, 880].iter().zip(tones) {
        assert!(
            db(p / off) > 20.0,
            "{f} Hz in the full mix: {:.1} dB above off-tone bins",
            db(p / off)
        );
    }
    let (lo, hi) = tones
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &p| (lo.min(p), hi.max(p)));
    assert!(db(hi / lo) < 6.0, "tones at similar levels: {tones:?}");

    let pcm = decode_all(&per_output[&minus_440]);
    let tail = &pcm[pcm.len() - 30 * FRAME_SAMPLES..];
    let p440 = power(tail, 440.0);
    let others = power(tail, 660.0).min(power(tail, 880.0));
    assert!(
        db(others / off) > 20.0,
        "660 and 880 Hz present in the minus-one output"
    );
    assert!(
        db(others / p440) >= 20.0,
        "440 Hz only {:.1} dB below the others",
        db(others / p440)
    );
}

#[test]
fn a_lost_packet_is_recovered_from_the_next_packets_fec() {
    let mut mixer = AudioMixer::new(64_000).expect("mixer");
    let mut a = ToneSender::new(440.0, 8000.0);
    a.encoder
        .set_bitrate(opus::Bitrate::Bits(24_000))
        .expect("bitrate");
    a.encoder.set_inband_fec(true).expect("fec");
    a.encoder.set_packet_loss_perc(20).expect("loss");
    mixer.add_input(1);
    let all = mixer.output(&[]).expect("output");
    let mut per_output = BTreeMap::from([(all, Vec::new())]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for k in 0..50u32 {
        let now = t0 + FRAME * k;
        // The tone jumps to 880 Hz in packet 30, which is lost: concealment alone would
        // carry 440 Hz on, the FEC in packet 31 carries 880 Hz.
        if k == 30 {
            a.freq = 880.0;
        }
        let p = a.next();
        if k != 30 {
            mixer.push_rtp(now, 1, p.0, p.1, &p.2);
        }
        mixer.tick(now + Duration::from_millis(5), &mut out);
        collect(&mut out, &mut per_output);
    }
    assert_eq!(mixer.stats().lost_packets, 1);
    let pcm = decode_all(&per_output[&all]);
    // Packet 30 plays at tick 32; its second half, clear of the codecs' delays.
    let recovered = &pcm[32 * FRAME_SAMPLES + FRAME_SAMPLES / 2..33 * FRAME_SAMPLES];
    let (p880, p440) = (power(recovered, 880.0), power(recovered, 440.0));
    // Measured: +7 dB with the FEC, -20 dB with concealment alone.
    assert!(
        db(p880 / p440) > 3.0,
        "880 Hz {:.1} dB above 440 Hz",
        db(p880 / p440)
    );
}

#[test]
fn three_full_scale_inputs_are_limited_not_wrapped() {
    let mut mixer = AudioMixer::new(128_000).expect("mixer");
    let mut senders: Vec<ToneSender> = (0..3).map(|_| ToneSender::new(440.0, 32_767.0)).collect();
    for id in 0..3 {
        mixer.add_input(id);
    }
    let all = mixer.output(&[]).expect("output");
    let mut per_output = BTreeMap::from([(all, Vec::new())]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for k in 0..50u32 {
        let now = t0 + FRAME * k;
        for (id, s) in senders.iter_mut().enumerate() {
            let (seq, ts, payload) = s.next();
            mixer.push_rtp(now, id as u64, seq, ts, &payload);
        }
        mixer.tick(now + Duration::from_millis(5), &mut out);
        collect(&mut out, &mut per_output);
    }
    let pcm = decode_all(&per_output[&all]);
    let tail = &pcm[pcm.len() - 30 * FRAME_SAMPLES..];
    // A wrapped sum (three full-scale sines cast to 16 bits) spreads its energy over
    // harmonics; a limited one stays a sine.
    let fundamental = 2.0 * power(tail, 440.0);
    let total = rms(tail).powi(2);
    assert!(
        fundamental / total > 0.9,
        "440 Hz holds {:.0}% of the energy",
        100.0 * fundamental / total
    );
    assert!(
        rms(tail) > 15_000.0,
        "loud, near full scale: rms {}",
        rms(tail)
    );
}

#[test]
fn reordered_packets_play_in_order_and_late_lost_and_stopped_inputs_are_handled() {
    let mut mixer = AudioMixer::new(64_000).expect("mixer");
    let mut a = ToneSender::new(440.0, 8000.0);
    let mut b = ToneSender::new(660.0, 8000.0);
    mixer.add_input(1);
    mixer.add_input(2);
    mixer.add_input(99); // never sends: silent, never a problem
    let all = mixer.output(&[]).expect("output");
    let mut per_output = BTreeMap::from([(all, Vec::new())]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut held = None;
    let mut concealed_at_stop = 0;
    for k in 0..90u32 {
        let now = t0 + FRAME * k;
        let pa = a.next();
        if k < 50 {
            match k {
                20 => {}                    // lost
                30 => held = Some(pa),      // delivered 100 ms late
                11 | 41 => held = Some(pa), // swapped with the next one
                12 | 42 => {
                    mixer.push_rtp(now, 1, pa.0, pa.1, &pa.2);
                    let h = held.take().expect("held");
                    mixer.push_rtp(now, 1, h.0, h.1, &h.2);
                }
                35 => {
                    let h = held.take().expect("held");
                    mixer.push_rtp(now, 1, h.0, h.1, &h.2);
                    mixer.push_rtp(now, 1, pa.0, pa.1, &pa.2);
                }
                _ => mixer.push_rtp(now, 1, pa.0, pa.1, &pa.2),
            }
        }
        let pb = b.next();
        mixer.push_rtp(now, 2, pb.0, pb.1, &pb.2);
        mixer.tick(now + Duration::from_millis(5), &mut out);
        collect(&mut out, &mut per_output);
        if k == 51 {
            concealed_at_stop = mixer.stats().frames_concealed;
        }
    }
    let stats = mixer.stats();
    assert_eq!(stats.late_packets, 1, "{stats:?}");
    assert_eq!(
        stats.lost_packets, 2,
        "20 lost, 30 missing at its playout: {stats:?}"
    );
    assert_eq!(stats.decode_errors, 0);
    // Input 1 stopped after packet 49, played at tick 51: then FADE_FRAMES of fading
    // concealment and silence.
    assert_eq!(
        stats.frames_concealed,
        concealed_at_stop + u64::from(FADE_FRAMES),
        "{stats:?}"
    );

    let pcm = decode_all(&per_output[&all]);
    let frame = |k: usize| &pcm[k * FRAME_SAMPLES..(k + 1) * FRAME_SAMPLES];
    // While both send (including around the loss, the late and the swapped packets),
    // both tones are there, at steady levels (a frame played out of order would break
    // the phase and smear 440 Hz).
    let before = &pcm[15 * FRAME_SAMPLES..50 * FRAME_SAMPLES];
    assert!(db(power(before, 440.0) / power(before, 660.0)).abs() < 3.0);
    for k in (8..50).filter(|k| ![21, 22, 23, 31, 32, 33].contains(k)) {
        let p = power(frame(k), 440.0);
        let q = power(frame(k), 660.0);
        assert!(
            db(p / q).abs() < 3.0,
            "frame {k}: 440 Hz at {:.1} dB of 660 Hz",
            db(p / q)
        );
    }
    // After the stop and the fade, 440 Hz is gone (no stale loop) and 660 Hz plays on.
    let after = &pcm[62 * FRAME_SAMPLES..];
    assert!(db(power(after, 660.0) / power(after, 440.0)) > 40.0);
    // The fade: the input's level falls frame by frame.
    let levels: Vec<f64> = (51..58).map(|k| power(frame(k), 440.0)).collect();
    assert!(
        levels[..4].windows(2).all(|w| w[1] < w[0] * 0.9),
        "{levels:?}"
    );
    assert!(
        levels[4..].iter().all(|&l| l < levels[0] / 100.0),
        "{levels:?}"
    );
}

#[test]
fn the_delay_comes_back_down_after_a_spike() {
    let mut mixer = AudioMixer::new(64_000).expect("mixer");
    let mut a = ToneSender::new(440.0, 8000.0);
    mixer.add_input(1);
    mixer.output(&[]).expect("output");
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut held = Vec::new();
    let mut latencies = Vec::new();
    for k in 0..150u32 {
        let now = t0 + FRAME * k;
        let p = a.next();
        // Packets 20 to 25 are held back by the network and arrive with packet 26.
        if (20..26).contains(&k) {
            held.push(p);
        } else {
            for h in held.drain(..) {
                mixer.push_rtp(now, 1, h.0, h.1, &h.2);
            }
            mixer.push_rtp(now, 1, p.0, p.1, &p.2);
        }
        mixer.tick(now + Duration::from_millis(5), &mut out);
        out.clear();
        latencies.clear();
        mixer.drain_latencies(&mut latencies);
        if k == 40 {
            assert!(
                latencies.iter().all(|l| *l > Duration::from_millis(120)),
                "{latencies:?}"
            );
        }
    }
    let stats = mixer.stats();
    assert_eq!(
        (stats.late_packets, stats.lost_packets),
        (0, 0),
        "{stats:?}"
    );
    assert!(stats.frames_dropped >= 3, "{stats:?}");
    assert!(
        latencies.iter().all(|l| *l <= Duration::from_millis(65)),
        "{latencies:?}"
    );
}

#[test]
fn an_input_that_stops_is_silent_not_repeated() {
    let mut mixer = AudioMixer::new(64_000).expect("mixer");
    let mut a = ToneSender::new(500.0, 10_000.0);
    mixer.add_input(1);
    let all = mixer.output(&[]).expect("output");
    let mut per_output = BTreeMap::from([(all, Vec::new())]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for k in 0..60u32 {
        let now = t0 + FRAME * k;
        if k < 30 {
            let p = a.next();
            mixer.push_rtp(now, 1, p.0, p.1, &p.2);
        }
        mixer.tick(now + Duration::from_millis(5), &mut out);
        collect(&mut out, &mut per_output);
    }
    let pcm = decode_all(&per_output[&all]);
    assert!(rms(&pcm[20 * FRAME_SAMPLES..30 * FRAME_SAMPLES]) > 5000.0);
    let silent = rms(&pcm[40 * FRAME_SAMPLES..]);
    assert!(silent < 20.0, "rms {silent} after the fade");

    // A sender that comes back later starts a new playout and is heard again.
    for k in 60..90u32 {
        let now = t0 + FRAME * k;
        let p = a.next();
        mixer.push_rtp(now, 1, p.0, p.1, &p.2);
        mixer.tick(now + Duration::from_millis(5), &mut out);
        collect(&mut out, &mut per_output);
    }
    let pcm = decode_all(&per_output[&all]);
    assert!(rms(&pcm[75 * FRAME_SAMPLES..]) > 5000.0);
    assert_eq!(mixer.stats().late_packets, 0);
}

#[test]
fn listeners_with_one_exclusion_set_share_an_output() {
    let mut mixer = AudioMixer::new(32_000).expect("mixer");
    let a = mixer.output(&[]).expect("output");
    let b = mixer.output(&[]).expect("output");
    let c = mixer.output(&[7, 3]).expect("output");
    let d = mixer.output(&[3, 7, 7]).expect("output");
    assert_eq!(a, b);
    assert_eq!(c, d);
    assert_ne!(a, c);
    assert_eq!(mixer.stats().outputs, 2);
    let mut out = Vec::new();
    mixer.tick(Instant::now(), &mut out);
    assert_eq!(out.len(), 2, "one payload per output, not per listener");
    mixer.release(a);
    assert_eq!(mixer.stats().outputs, 2, "b still holds it");
    mixer.release(b);
    assert_eq!(mixer.stats().outputs, 1);
    mixer.release(b); // unknown now: no effect
    mixer.release(c);
    mixer.release(d);
    assert_eq!(mixer.stats().outputs, 0);
    out.clear();
    mixer.tick(Instant::now(), &mut out);
    assert!(out.is_empty());
    let e = mixer.output(&[]).expect("output");
    assert_ne!(e, a, "a freed output's id is not reused");
    assert!(matches!(
        AudioMixer::new(0),
        Err(McuError::InvalidParameter(_))
    ));
}

#[test]
fn garbage_payloads_are_counted_and_concealed() {
    let mut mixer = AudioMixer::new(64_000).expect("mixer");
    let mut rng = rand::rng();
    let mut good = ToneSender::new(660.0, 8000.0);
    let mut bad = ToneSender::new(440.0, 8000.0);
    mixer.add_input(1);
    mixer.add_input(2);
    mixer.add_input(3);
    let all = mixer.output(&[]).expect("output");
    let mut per_output = BTreeMap::from([(all, Vec::new())]);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for k in 0..60u32 {
        let now = t0 + FRAME * k;
        let (seq, ts, p) = good.next();
        mixer.push_rtp(now, 1, seq, ts, &p);
        let (seq, ts, _) = bad.next();
        let garbage: Vec<u8> = match k % 4 {
            0 => Vec::new(),
            1 => vec![0xff; 100_000],
            _ => (0..rng.random_range(1..2000))
                .map(|_| rng.random())
                .collect(),
        };
        mixer.push_rtp(now, 2, seq, ts, &garbage);
        // Random sequence numbers and timestamps too.
        mixer.push_rtp(now, 3, rng.random(), rng.random(), &garbage);
        mixer.push_rtp(now, 42, seq, ts, &garbage); // unknown input
        mixer.tick(now + Duration::from_millis(5), &mut out);
        collect(&mut out, &mut per_output);
    }
    let stats = mixer.stats();
    assert!(
        stats.decode_errors >= 28,
        "the empty and oversized ones at least: {stats:?}"
    );
    assert!(stats.frames_concealed >= stats.decode_errors);
    let pcm = decode_all(&per_output[&all]);
    let tail = &pcm[30 * FRAME_SAMPLES..];
    assert!(
        power(tail, 660.0) > 0.0 && rms(tail) > 1000.0,
        "the good input plays on"
    );
}
