//! The audio mixer: one per room. Each input (a publisher's Opus stream) goes through
//! its own jitter buffer ([`jitter`]) and libopus decoder with loss concealment
//! ([`codec`]); every 20 ms the mixer sums the inputs' frames once in 32 bits and
//! derives each output from the sum minus the inputs that output excludes (a listener's
//! own voice), limits it back to 16 bits ([`mix`]) and encodes it with the output's own
//! Opus encoder. Listeners with the same exclusion set share one output.
//!
//! Format: 48 kHz mono throughout (decoders downmix stereo packets; outputs are mono
//! Opus, which a receiver that negotiated `opus/48000/2` plays on both channels),
//! 20 ms frames, DTX off. No I/O, no threads, no clock reads except to measure the time
//! spent in the mixer: the caller passes `Instant`s in.

mod codec;
mod jitter;
mod mix;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use codec::{MAX_ENCODED, MAX_PACKET_SAMPLES, OpusDecoder, OpusEncoder};
use jitter::{JitterBuffer, Pulled, Pushed};
use mix::Limiter;

use crate::{InputId, McuError};

/// One mixing period.
pub const FRAME: Duration = Duration::from_millis(20);
/// Samples in one [`FRAME`] at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Names one output of a mixer (a mix shared by the listeners with one exclusion set).
pub type OutputId = u64;

/// Frames of concealment, fading to silence, before an input that stopped sending is
/// silent (80 ms).
const FADE_FRAMES: u32 = 4;
/// Frames without a packet after which an input's jitter buffer forgets its playout
/// point, so that a sender that comes back starts afresh (200 ms).
const IDLE_FRAMES: u32 = 10;
/// Buffered audio beyond which one packet is decoded and dropped per frame, to bring
/// the delay back down after a burst, a delay spike or a sender clock faster than ours
/// (120 ms: the 40 ms target plus 80 ms of slack for jitter).
const MAX_BUFFERED_SAMPLES: usize = 120 * 48;
/// Ticks over which an input's least buffered audio is watched (1 s).
const SHED_WINDOW: u32 = 50;
/// The jitter buffer's target delay in samples.
const TARGET_DELAY_SAMPLES: usize = jitter::TARGET_DELAY.as_millis() as usize * 48;

/// Counters of a mixer since its creation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Inputs now.
    pub inputs: usize,
    /// Outputs now (each shared by the listeners with one exclusion set).
    pub outputs: usize,
    /// Input packets decoded (including those recovered from FEC).
    pub frames_decoded: u64,
    /// Input frames made up by loss concealment or fade-out (lost, undecodable or
    /// missing at playout time).
    pub frames_concealed: u64,
    /// Input packets that arrived after their playout point (dropped).
    pub late_packets: u64,
    /// Input packets missing at playout time while later ones were there.
    pub lost_packets: u64,
    /// Input packets libopus could not decode (empty, oversized or malformed).
    pub decode_errors: u64,
    /// Packets decoded and dropped to bring a grown buffer back to its target delay.
    pub frames_dropped: u64,
    /// Output frames the encoder failed on (none were sent for them).
    pub encode_errors: u64,
    /// Time spent in `push_rtp` and `tick` (wall-clock time measured around them:
    /// the CPU time of the mixer's thread when it is not preempted).
    pub cpu: Duration,
}

struct Input {
    jitter: JitterBuffer,
    decoder: OpusDecoder,
    /// Decoded samples not yet mixed (packets need not be 20 ms long).
    pending: Vec<i16>,
    /// This tick's frame, valid when `active`.
    frame: Vec<i16>,
    /// Whether `frame` is part of this tick's sum.
    active: bool,
    /// Whether the input has played anything since it last went idle (fade-out needs a
    /// decoder history).
    heard: bool,
    /// Consecutive ticks without decoded audio.
    starved: u32,
    /// Duration of the last packet, in samples: the size of a concealed packet.
    packet_samples: usize,
    /// Least audio buffered (samples) at any tick of the current window.
    min_buffered: usize,
    window_ticks: u32,
    /// Packets still to shed to bring the delay back to the target.
    to_shed: usize,
}

struct Output {
    excluded: Vec<InputId>,
    refs: usize,
    encoder: OpusEncoder,
    limiter: Limiter,
}

/// Mixes a room's Opus inputs into Opus outputs, one per exclusion set.
pub struct AudioMixer {
    bitrate_bps: u32,
    inputs: BTreeMap<InputId, Input>,
    outputs: BTreeMap<OutputId, Output>,
    by_exclusion: HashMap<Vec<InputId>, OutputId>,
    next_output: OutputId,
    stats: AudioStats,
    latencies: Vec<Duration>,
    // Scratch buffers reused by every tick.
    decoded: Vec<i16>,
    sum: Vec<i32>,
    out_mix: Vec<i32>,
    pcm: Vec<i16>,
    encoded: Vec<u8>,
}

impl AudioMixer {
    /// A mixer whose outputs encode at `bitrate_bps` (6000..=510000).
    pub fn new(bitrate_bps: u32) -> Result<Self, McuError> {
        // Fails now, not at the first output, when the bitrate is out of range.
        OpusEncoder::new(bitrate_bps)?;
        Ok(Self {
            bitrate_bps,
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            by_exclusion: HashMap::new(),
            next_output: 1,
            stats: AudioStats::default(),
            latencies: Vec::with_capacity(64),
            decoded: vec![0; MAX_PACKET_SAMPLES],
            sum: vec![0; FRAME_SAMPLES],
            out_mix: vec![0; FRAME_SAMPLES],
            pcm: vec![0; FRAME_SAMPLES],
            encoded: vec![0; MAX_ENCODED],
        })
    }

    /// Adds an input (no effect if it exists). Its packets are ignored until then.
    pub fn add_input(&mut self, input: InputId) {
        if self.inputs.contains_key(&input) {
            return;
        }
        let decoder = match OpusDecoder::new() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(input, error = %e, "cannot create an Opus decoder; input not mixed");
                return;
            }
        };
        self.inputs.insert(
            input,
            Input {
                jitter: JitterBuffer::new(),
                decoder,
                pending: Vec::with_capacity(MAX_PACKET_SAMPLES + FRAME_SAMPLES),
                frame: vec![0; FRAME_SAMPLES],
                active: false,
                heard: false,
                starved: 0,
                packet_samples: FRAME_SAMPLES,
                min_buffered: usize::MAX,
                window_ticks: 0,
                to_shed: 0,
            },
        );
    }

    /// Removes an input: it leaves the mix at the next tick.
    pub fn remove_input(&mut self, input: InputId) {
        self.inputs.remove(&input);
    }

    /// An Opus RTP packet's payload from `input` (arrival `now`, its RTP seq and
    /// timestamp). Packets of unknown inputs are ignored. Playout follows the sequence
    /// numbers; the timestamp is not used yet (a sender's pause without packets plays
    /// as concealment fading to silence, then starts afresh).
    pub fn push_rtp(
        &mut self,
        now: Instant,
        input: InputId,
        seq: u16,
        _timestamp: u32,
        payload: &[u8],
    ) {
        let started = Instant::now();
        if let Some(inp) = self.inputs.get_mut(&input)
            && inp.jitter.push(now, seq, payload) == Pushed::Late
        {
            self.stats.late_packets += 1;
        }
        self.stats.cpu += started.elapsed();
    }

    /// The output that mixes every input except `excluded` (a listener's own inputs);
    /// listeners with the same set share one output and one encoder (ref-counted).
    pub fn output(&mut self, excluded: &[InputId]) -> Result<OutputId, McuError> {
        let mut key = excluded.to_vec();
        key.sort_unstable();
        key.dedup();
        if let Some(&id) = self.by_exclusion.get(&key)
            && let Some(out) = self.outputs.get_mut(&id)
        {
            out.refs += 1;
            return Ok(id);
        }
        let encoder = OpusEncoder::new(self.bitrate_bps)?;
        let id = self.next_output;
        self.next_output += 1;
        self.by_exclusion.insert(key.clone(), id);
        self.outputs.insert(
            id,
            Output {
                excluded: key,
                refs: 1,
                encoder,
                limiter: Limiter::new(),
            },
        );
        Ok(id)
    }

    /// Gives back one reference to `output`; the last one frees it (and its encoder).
    pub fn release(&mut self, output: OutputId) {
        let Some(out) = self.outputs.get_mut(&output) else {
            return;
        };
        out.refs -= 1;
        if out.refs == 0
            && let Some(out) = self.outputs.remove(&output)
        {
            self.by_exclusion.remove(&out.excluded);
        }
    }

    /// Mixes one 20 ms frame (call every [`FRAME`]); appends (output, Opus payload) for
    /// every output to `out`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<(OutputId, Vec<u8>)>) {
        let started = Instant::now();
        self.latencies.clear();
        self.sum.fill(0);
        for inp in self.inputs.values_mut() {
            next_frame(
                inp,
                now,
                &mut self.decoded,
                &mut self.stats,
                &mut self.latencies,
            );
            if inp.active {
                mix::add(&mut self.sum, &inp.frame);
            }
        }
        for (&id, output) in &mut self.outputs {
            self.out_mix.copy_from_slice(&self.sum);
            for excluded in &output.excluded {
                if let Some(inp) = self.inputs.get(excluded).filter(|i| i.active) {
                    mix::subtract(&mut self.out_mix, &inp.frame);
                }
            }
            output.limiter.process(&self.out_mix, &mut self.pcm);
            match output.encoder.encode(&self.pcm, &mut self.encoded) {
                Ok(n) => out.push((id, self.encoded[..n].to_vec())),
                Err(e) => {
                    self.stats.encode_errors += 1;
                    tracing::warn!(output = id, error = %e, "Opus encoding failed");
                }
            }
        }
        self.stats.cpu += started.elapsed();
    }

    /// The mixer's counters.
    pub fn stats(&self) -> AudioStats {
        AudioStats {
            inputs: self.inputs.len(),
            outputs: self.outputs.len(),
            ..self.stats
        }
    }

    /// Added latency of the mix: for frames mixed in the last tick, arrival of the
    /// input packet -> the tick that encoded it (for the mouth-to-ear figure).
    pub fn drain_latencies(&mut self, out: &mut Vec<Duration>) {
        out.append(&mut self.latencies);
    }
}

// The media shell moves each mixer into its own thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<AudioMixer>();
};

/// Fills `inp.frame` with the input's next 20 ms (decoded, concealed, fading or
/// silent) and sets `inp.active`.
fn next_frame(
    inp: &mut Input,
    now: Instant,
    scratch: &mut [i16],
    stats: &mut AudioStats,
    latencies: &mut Vec<Duration>,
) {
    while inp.pending.len() < FRAME_SAMPLES {
        if !pull_packet(inp, now, scratch, stats, latencies, true) {
            break;
        }
    }
    // The delay comes back down after a spike: a buffer that never held less than the
    // target plus one packet over a window sheds the excess, one packet per tick; one
    // grown past its bound sheds at once.
    let buffered = inp.jitter.len() * inp.packet_samples;
    inp.min_buffered = inp.min_buffered.min(buffered);
    inp.window_ticks += 1;
    if inp.window_ticks == SHED_WINDOW {
        let target = TARGET_DELAY_SAMPLES + inp.packet_samples;
        inp.to_shed = inp
            .min_buffered
            .saturating_sub(target)
            .div_ceil(inp.packet_samples);
        inp.min_buffered = usize::MAX;
        inp.window_ticks = 0;
    }
    if inp.jitter.len() > 0 && (buffered > MAX_BUFFERED_SAMPLES || inp.to_shed > 0) {
        inp.to_shed = inp.to_shed.saturating_sub(1);
        let kept = inp.pending.len();
        if pull_packet(inp, now, scratch, stats, latencies, false) {
            stats.frames_dropped += 1;
        }
        inp.pending.truncate(kept);
    }
    if inp.pending.len() >= FRAME_SAMPLES {
        inp.frame.copy_from_slice(&inp.pending[..FRAME_SAMPLES]);
        inp.pending.drain(..FRAME_SAMPLES);
        inp.active = true;
        inp.heard = true;
        inp.starved = 0;
        return;
    }
    // Nothing (or not enough) to play: conceal and fade out, then silence.
    inp.starved = inp.starved.saturating_add(1);
    if inp.starved > IDLE_FRAMES && inp.jitter.is_playing() {
        inp.jitter.go_idle();
    }
    if !inp.heard || inp.starved > FADE_FRAMES {
        inp.pending.clear();
        inp.active = false;
        if inp.starved > FADE_FRAMES {
            inp.heard = false;
        }
        return;
    }
    let have = inp.pending.len();
    inp.frame[..have].copy_from_slice(&inp.pending);
    inp.pending.clear();
    let need = FRAME_SAMPLES - have;
    let concealed = inp.decoder.conceal(scratch, need).unwrap_or_else(|_| {
        scratch[..need].fill(0);
        need
    });
    inp.frame[have..have + concealed.min(need)].copy_from_slice(&scratch[..concealed.min(need)]);
    inp.frame[have + concealed.min(need)..].fill(0);
    stats.frames_concealed += 1;
    // Linear fade from (1 - (k-1)/F) to (1 - k/F) over the k-th starved frame.
    let f = i64::from(FADE_FRAMES);
    let k = i64::from(inp.starved);
    let n = FRAME_SAMPLES as i64;
    for (i, s) in inp.frame.iter_mut().enumerate() {
        let num = (f - k + 1) * n - (i as i64 + 1);
        *s = (i64::from(*s) * num.max(0) / (f * n)) as i16;
    }
    inp.active = true;
}

/// Takes the input's next packet from its jitter buffer and decodes (or conceals) it
/// into `inp.pending` when `keep`. Returns false when there was nothing to play.
fn pull_packet(
    inp: &mut Input,
    now: Instant,
    scratch: &mut [i16],
    stats: &mut AudioStats,
    latencies: &mut Vec<Duration>,
    keep: bool,
) -> bool {
    let decoded = match inp.jitter.pull(now) {
        Pulled::Nothing => return false,
        Pulled::Packet { payload, arrival } => match inp.decoder.decode(payload, scratch) {
            Ok(n) => {
                stats.frames_decoded += 1;
                inp.packet_samples = n.clamp(1, MAX_PACKET_SAMPLES);
                if keep {
                    latencies.push(now.saturating_duration_since(arrival));
                }
                Some(n)
            }
            Err(_) => {
                stats.decode_errors += 1;
                stats.frames_concealed += 1;
                None
            }
        },
        Pulled::Bad => {
            stats.decode_errors += 1;
            stats.frames_concealed += 1;
            None
        }
        Pulled::Lost { fec } => {
            stats.lost_packets += 1;
            stats.frames_concealed += 1;
            fec.and_then(|next| {
                inp.decoder
                    .decode_fec(next, scratch, inp.packet_samples)
                    .ok()
            })
        }
    };
    let n = match decoded {
        Some(n) => n,
        None => inp
            .decoder
            .conceal(scratch, inp.packet_samples)
            .unwrap_or(0),
    };
    if keep {
        let n = n
            .min(scratch.len())
            .min(inp.pending.capacity() - inp.pending.len());
        inp.pending.extend_from_slice(&scratch[..n]);
    }
    true
}

#[cfg(test)]
mod tests;
