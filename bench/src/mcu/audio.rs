//! The audio half of `cascade-bench mcu`: the mixer's CPU per participant (ticks run
//! as fast as the thread goes, on a virtual 20 ms clock) and the latency it adds
//! (packets paced in real time with arrival jitter, `AudioMixer::drain_latencies`).
//! Its input is real Opus: a tone plus a little noise per input, encoded with libopus
//! before anything is measured.

use std::time::{Duration, Instant};

use anyhow::Context;
use cascade_mcu::audio::{AudioMixer, FRAME};
use serde::Serialize;

use super::thread_cpu;
use crate::media::Latency;

/// Samples per 20 ms frame at 48 kHz.
const SAMPLES: usize = 960;
/// The mixer's (and the sources') Opus bitrate.
const BITRATE: u32 = 32_000;
/// Distinct frames encoded per input; the feed loops over them (Opus frames are
/// independent enough that a loop decodes cleanly).
const SOURCE_FRAMES: usize = 250;

/// The mixer's cost at one size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MixCpu {
    pub(crate) inputs: usize,
    /// Outputs encoded every tick: one per listener (minus its own voice) plus one
    /// shared by listeners who contribute nothing.
    pub(crate) outputs: usize,
    pub(crate) audio_secs: f64,
    pub(crate) cpu_secs: f64,
    /// Share of one core per participant, percent.
    pub(crate) core_pct_per_participant: f64,
    pub(crate) frames_decoded: u64,
    pub(crate) frames_concealed: u64,
    /// Payloads the mixer put out (ticks × outputs when it kept up).
    pub(crate) payloads_out: u64,
}

/// The mix's added latency under real-time pacing with jitter.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MixLatency {
    pub(crate) inputs: usize,
    pub(crate) secs: f64,
    pub(crate) jitter_ms: (u64, u64),
    pub(crate) latency: Latency,
    pub(crate) late_packets: u64,
    pub(crate) lost_packets: u64,
    pub(crate) frames_concealed: u64,
}

/// `SOURCE_FRAMES` Opus frames for each of `n` inputs: input i is a tone at
/// 220 + 55·i Hz with a little white noise, mono 48 kHz.
pub(crate) fn sources(n: usize) -> anyhow::Result<Vec<Vec<Vec<u8>>>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .context("creating an Opus encoder")?;
        enc.set_bitrate(opus::Bitrate::Bits(BITRATE as i32))?;
        let hz = 220.0 + 55.0 * i as f64;
        let mut pcm = [0i16; SAMPLES];
        let mut buf = [0u8; 1500];
        let mut frames = Vec::with_capacity(SOURCE_FRAMES);
        let mut t = 0usize;
        for _ in 0..SOURCE_FRAMES {
            for s in &mut pcm {
                let tone = (2.0 * std::f64::consts::PI * hz * t as f64 / 48_000.0).sin();
                let noise = rand::random::<f64>() * 2.0 - 1.0;
                *s = ((tone * 0.3 + noise * 0.03) * f64::from(i16::MAX)) as i16;
                t += 1;
            }
            let len = enc.encode(&pcm, &mut buf).context("Opus encode")?;
            frames.push(buf[..len].to_vec());
        }
        out.push(frames);
    }
    Ok(out)
}

/// A mixer with inputs `0..n`, every input also a listener (its minus-one output),
/// plus one output that excludes nobody.
fn mixer(n: usize) -> anyhow::Result<AudioMixer> {
    let mut m = AudioMixer::new(BITRATE).context("creating the mixer")?;
    for i in 0..n as u64 {
        m.add_input(i);
    }
    for i in 0..n as u64 {
        m.output(&[i]).context("a minus-one output")?;
    }
    m.output(&[]).context("the shared output")?;
    Ok(m)
}

/// Runs `secs` seconds of audio through a mixer of `n` inputs as fast as this thread
/// can, and divides its thread CPU time by the audio time and by `n`.
pub(crate) fn cpu_per_participant(
    n: usize,
    secs: f64,
    src: &[Vec<Vec<u8>>],
) -> anyhow::Result<MixCpu> {
    let mut m = mixer(n)?;
    let ticks = (secs / FRAME.as_secs_f64()).round() as u64;
    let t0 = Instant::now();
    let mut out: Vec<(u64, Vec<u8>)> = Vec::with_capacity(n + 1);
    let mut payloads = 0u64;
    let mut lat = Vec::new();
    let cpu0 = thread_cpu();
    for k in 0..ticks {
        // Each packet arrives 2 ms before the tick of its frame's slot; the jitter
        // buffer holds it for its target delay.
        let now = t0 + FRAME * (k as u32);
        let arrival = now.checked_sub(Duration::from_millis(2)).unwrap_or(now);
        for (i, frames) in src.iter().enumerate().take(n) {
            let f = &frames[k as usize % frames.len()];
            m.push_rtp(arrival, i as u64, k as u16, (k as u32).wrapping_mul(960), f);
        }
        out.clear();
        m.tick(now, &mut out);
        payloads += out.len() as u64;
        lat.clear();
        m.drain_latencies(&mut lat);
    }
    let cpu = thread_cpu() - cpu0;
    let stats = m.stats();
    let audio = ticks as f64 * FRAME.as_secs_f64();
    Ok(MixCpu {
        inputs: n,
        outputs: n + 1,
        audio_secs: audio,
        cpu_secs: cpu.as_secs_f64(),
        core_pct_per_participant: 100.0 * cpu.as_secs_f64() / audio / n as f64,
        frames_decoded: stats.frames_decoded,
        frames_concealed: stats.frames_concealed,
        payloads_out: payloads,
    })
}

/// Feeds a mixer of `n` inputs in real time for `secs`: each input's packet k is
/// sent at k·20 ms and arrives after a uniformly random delay in `jitter` (so packets
/// may overtake each other); the mixer ticks every 20 ms on the wall clock. Returns
/// the percentiles of what `drain_latencies` reported.
pub(crate) fn latency(
    n: usize,
    secs: f64,
    jitter: (Duration, Duration),
    src: &[Vec<Vec<u8>>],
) -> anyhow::Result<MixLatency> {
    let mut m = mixer(n)?;
    let frames = (secs / FRAME.as_secs_f64()).round() as u64;
    let spread = jitter.1.saturating_sub(jitter.0).as_nanos() as u64;
    // Every packet's arrival time, in arrival order.
    let t0 = Instant::now() + Duration::from_millis(50);
    let mut arrivals: Vec<(Instant, usize, u64)> = Vec::with_capacity(n * frames as usize);
    for k in 0..frames {
        for i in 0..n {
            let delay = jitter.0 + Duration::from_nanos(rand::random::<u64>() % spread.max(1));
            arrivals.push((t0 + FRAME * (k as u32) + delay, i, k));
        }
    }
    arrivals.sort_by_key(|a| a.0);
    // The first tick leaves the earliest packet time to arrive.
    let mut next_tick = t0 + FRAME;
    let end = t0 + FRAME * (frames as u32) + jitter.1 + Duration::from_millis(100);
    let mut out = Vec::with_capacity(n + 1);
    let mut ns: Vec<u32> = Vec::new();
    let mut lat = Vec::new();
    let mut next = arrivals.iter().peekable();
    loop {
        let due = next.peek().map_or(next_tick, |a| a.0.min(next_tick));
        if due > end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let now = Instant::now();
        while let Some(&&(at, i, k)) = next.peek() {
            if at > now {
                break;
            }
            let f = &src[i][k as usize % src[i].len()];
            m.push_rtp(now, i as u64, k as u16, (k as u32).wrapping_mul(960), f);
            next.next();
        }
        if now >= next_tick {
            out.clear();
            m.tick(now, &mut out);
            lat.clear();
            m.drain_latencies(&mut lat);
            ns.extend(
                lat.iter()
                    .map(|d| u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)),
            );
            next_tick += FRAME;
        }
    }
    let stats = m.stats();
    Ok(MixLatency {
        inputs: n,
        secs,
        jitter_ms: (jitter.0.as_millis() as u64, jitter.1.as_millis() as u64),
        latency: Latency::from_ns(&mut ns),
        late_packets: stats.late_packets,
        lost_packets: stats.lost_packets,
        frames_concealed: stats.frames_concealed,
    })
}
