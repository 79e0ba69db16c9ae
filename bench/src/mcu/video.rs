//! The video half of `cascade-bench mcu`: the composer's CPU for a 640×360 grid of
//! four inputs. Each input is VP8 of moving content (two at 320×180, two at 640×360,
//! encoded before the measurement); the composer gets every input frame's RTP
//! payloads and ticks at its frame rate on a virtual clock, as fast as the thread
//! goes. CPU time of the thread / video time = cores.

use std::time::{Duration, Instant};

use anyhow::Context;
use cascade_mcu::video::{Composer, ComposerConfig, Layout};
use serde::Serialize;

use super::thread_cpu;
use super::vp8src::{self, Frame};

/// The composition measured.
pub(crate) const WIDTH: u16 = 640;
pub(crate) const HEIGHT: u16 = 360;
pub(crate) const FPS: u8 = 15;
const BITRATE_BPS: u32 = 800_000;
/// Inputs: (width, height, kbps).
const INPUTS: [(u16, u16, u32); 4] = [
    (320, 180, 300),
    (640, 360, 600),
    (320, 180, 300),
    (640, 360, 600),
];
/// Input frames encoded per input; the feed loops over them (the first is a
/// keyframe, so a loop restarts cleanly).
const SOURCE_FRAMES: usize = 90;

/// The composer's cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ComposeCpu {
    pub(crate) layout: String,
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) fps: u8,
    pub(crate) inputs: Vec<String>,
    pub(crate) input_fps: u32,
    pub(crate) video_secs: f64,
    pub(crate) cpu_secs: f64,
    /// CPU seconds per second of video: cores.
    pub(crate) cores: f64,
    pub(crate) frames_in: u64,
    pub(crate) frames_out: u64,
    pub(crate) keyframes_out: u64,
    pub(crate) bytes_out: u64,
}

/// Encodes the inputs at `input_fps`.
pub(crate) fn sources(input_fps: u8) -> anyhow::Result<Vec<Vec<Frame>>> {
    INPUTS
        .iter()
        .enumerate()
        .map(|(i, &(w, h, kbps))| {
            vp8src::encode(w, h, input_fps, kbps * 1000, SOURCE_FRAMES, i as u8)
                .with_context(|| format!("encoding input {i} ({w}x{h})"))
        })
        .collect()
}

/// Runs `secs` of video through a 640×360 grid of the four inputs.
pub(crate) fn cpu(secs: f64, input_fps: u32, src: &[Vec<Frame>]) -> anyhow::Result<ComposeCpu> {
    let cfg = ComposerConfig {
        layout: Layout::Grid,
        width: WIDTH,
        height: HEIGHT,
        fps: FPS,
        bitrate_bps: BITRATE_BPS,
    };
    let mut c = Composer::new(cfg).context("creating the composer")?;
    for i in 0..src.len() as u64 {
        c.add_input(i);
    }
    let frame_in = Duration::from_secs(1) / input_fps;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0u64;
    let mut seqs = vec![0u16; src.len()];
    let mut pli = Vec::new();
    let mut k = 0u32;
    let cpu0 = thread_cpu();
    loop {
        let now = t0 + frame_in * k;
        if now >= end {
            break;
        }
        for (i, frames) in src.iter().enumerate() {
            let f = &frames[k as usize % frames.len()];
            let ts = k.wrapping_mul(90_000 / input_fps);
            let last = f.payloads.len() - 1;
            for (j, p) in f.payloads.iter().enumerate() {
                c.push_rtp(now, i as u64, seqs[i], ts, j == last, p);
                seqs[i] = seqs[i].wrapping_add(1);
            }
        }
        while c.next_frame() <= now {
            out.clear();
            if c.tick(now, &mut out) {
                bytes += out.iter().map(|p| p.len() as u64).sum::<u64>();
            } else {
                break;
            }
        }
        pli.clear();
        c.keyframe_requests(now, &mut pli);
        k += 1;
    }
    let cpu = thread_cpu() - cpu0;
    let video = f64::from(k) * frame_in.as_secs_f64();
    let stats = c.stats();
    Ok(ComposeCpu {
        layout: "grid".into(),
        width: WIDTH,
        height: HEIGHT,
        fps: FPS,
        inputs: INPUTS
            .iter()
            .map(|(w, h, kbps)| format!("{w}x{h}@{kbps}k"))
            .collect(),
        input_fps,
        video_secs: video,
        cpu_secs: cpu.as_secs_f64(),
        cores: cpu.as_secs_f64() / video,
        frames_in: stats.frames_in,
        frames_out: stats.frames_out,
        keyframes_out: stats.keyframes_out,
        bytes_out: bytes,
    })
}
