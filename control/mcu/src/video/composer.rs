//! The composer of one (layout, size) composition: it keeps each input's latest
//! decoded picture, and on its frame clock draws them into their cells, encodes the
//! picture and cuts it into RTP payloads. It tracks which inputs need a keyframe and
//! asks for one at most every 500 ms each.

use std::time::{Duration, Instant};

use tracing::warn;

use super::frame::{BLACK, DARK_GREY, I420Frame};
use super::vp8_rtp::{DepacketizerStats, Vp8Depacketizer, Vp8Packetizer};
use super::vpx::{Decoder, Encoder, EncoderConfig};
use super::{ComposerConfig, VideoError, VideoStats, layout};
use crate::InputId;

/// Shortest interval between two keyframe requests for one input.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Longest interval between two keyframes of the composed stream.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(4);
/// Frame interval of the composed stream while it has no input (a black picture).
pub const IDLE_FRAME_INTERVAL: Duration = Duration::from_secs(1);

struct Input {
    id: InputId,
    depacketizer: Vp8Depacketizer,
    decoder: Decoder,
    /// The latest decoded picture, drawn at each frame.
    picture: Option<I420Frame>,
    /// Decoding target, swapped with `picture` once a decode succeeds.
    scratch: I420Frame,
    /// The decoder cannot go on before a keyframe (new input, loss, decode error).
    needs_keyframe: bool,
    last_request: Option<Instant>,
}

/// One composed VP8 stream; see the crate's contract for the calling sequence.
pub struct Composer {
    cfg: ComposerConfig,
    encoder: Encoder,
    packetizer: Vp8Packetizer,
    canvas: I420Frame,
    inputs: Vec<Input>,
    speaker: Option<InputId>,
    next: Instant,
    last_tick: Option<Instant>,
    force_keyframe: bool,
    /// Counters of removed inputs' depacketizers.
    retired: DepacketizerStats,
    frames_in: u64,
    frames_out: u64,
    keyframes_out: u64,
    /// Frames decoding refused or skipped while waiting for a keyframe.
    undecoded_frames: u64,
    cpu: Duration,
}

// The server runs each composer on a thread of its own.
const _: () = {
    const fn send<T: Send>() {}
    send::<Composer>();
};

impl std::fmt::Debug for Composer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composer")
            .field("cfg", &self.cfg)
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

impl Composer {
    /// A composer whose first frame is due at once. Fails on a size that is not even
    /// and at least 16x16, a zero frame rate, or a libvpx failure.
    pub fn new(cfg: ComposerConfig) -> Result<Self, VideoError> {
        let started = Instant::now();
        let keyframe_interval = u32::from(cfg.fps) * KEYFRAME_INTERVAL.as_secs() as u32;
        let encoder = Encoder::new(EncoderConfig {
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            bitrate_bps: cfg.bitrate_bps,
            keyframe_interval,
        })?;
        Ok(Composer {
            cfg,
            encoder,
            packetizer: Vp8Packetizer::new(0),
            canvas: I420Frame::new(cfg.width, cfg.height),
            inputs: Vec::new(),
            speaker: None,
            next: started,
            last_tick: None,
            force_keyframe: false,
            retired: DepacketizerStats::default(),
            frames_in: 0,
            frames_out: 0,
            keyframes_out: 0,
            undecoded_frames: 0,
            cpu: started.elapsed(),
        })
    }

    pub fn config(&self) -> ComposerConfig {
        self.cfg
    }

    fn frame_interval(&self) -> Duration {
        if self.inputs.is_empty() {
            IDLE_FRAME_INTERVAL
        } else {
            Duration::from_secs(1) / u32::from(self.cfg.fps)
        }
    }

    /// Adds an input at the end of the grid order (no-op if present). It shows as a
    /// dark grey cell until its first keyframe decodes.
    pub fn add_input(&mut self, input: InputId) {
        if self.inputs.iter().any(|i| i.id == input) {
            return;
        }
        let decoder = match Decoder::new() {
            Ok(d) => d,
            Err(e) => {
                warn!(input, error = %e, "VP8 decoder could not start; input not composed");
                return;
            }
        };
        if self.inputs.is_empty()
            && let Some(last) = self.last_tick
        {
            // Leave the idle frame rate at once.
            self.next = self
                .next
                .min(last + Duration::from_secs(1) / u32::from(self.cfg.fps));
        }
        self.inputs.push(Input {
            id: input,
            depacketizer: Vp8Depacketizer::new(),
            decoder,
            picture: None,
            scratch: I420Frame::new(2, 2),
            needs_keyframe: true,
            last_request: None,
        });
    }

    /// Removes an input; its cell is gone from the next frame on.
    pub fn remove_input(&mut self, input: InputId) {
        if let Some(pos) = self.inputs.iter().position(|i| i.id == input) {
            let gone = self.inputs.remove(pos);
            let s = gone.depacketizer.stats();
            self.retired.frames += s.frames;
            self.retired.lost_frames += s.lost_frames;
            self.retired.late_packets += s.late_packets;
            self.retired.malformed_packets += s.malformed_packets;
        }
    }

    /// A VP8 RTP packet (RFC 7741) of `input`; packets of unknown inputs are ignored.
    pub fn push_rtp(
        &mut self,
        _now: Instant,
        input: InputId,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) {
        let started = Instant::now();
        if let Some(entry) = self.inputs.iter_mut().find(|i| i.id == input)
            // Err: counted as malformed by the depacketizer; None: frame incomplete.
            && let Ok(Some(frame)) = entry.depacketizer.push(seq, timestamp, marker, payload)
        {
            if frame.after_gap && !frame.keyframe {
                entry.needs_keyframe = true;
            }
            if entry.needs_keyframe && !frame.keyframe {
                self.undecoded_frames += 1;
            } else {
                match entry.decoder.decode(&frame.data, &mut entry.scratch) {
                    Ok(true) => {
                        match &mut entry.picture {
                            Some(p) => std::mem::swap(p, &mut entry.scratch),
                            None => entry.picture = Some(entry.scratch.clone()),
                        }
                        entry.needs_keyframe = false;
                        self.frames_in += 1;
                    }
                    Ok(false) => {}
                    Err(_) => {
                        // The last good picture stays on screen until a keyframe.
                        entry.needs_keyframe = true;
                        self.undecoded_frames += 1;
                    }
                }
            }
        }
        self.cpu += started.elapsed();
    }

    /// The input drawn large in the speaker layout (None: the first input).
    pub fn set_speaker(&mut self, speaker: Option<InputId>) {
        self.speaker = speaker;
    }

    /// The encoder's target bitrate, applied from the next frame.
    pub fn set_bitrate(&mut self, bps: u32) {
        match self.encoder.set_bitrate(bps) {
            Ok(()) => self.cfg.bitrate_bps = bps,
            Err(e) => warn!(bps, error = %e, "VP8 encoder refused the bitrate"),
        }
    }

    /// Makes the next output frame a keyframe.
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Appends the inputs whose decoder waits for a keyframe, each at most once per
    /// KEYFRAME_REQUEST_INTERVAL (so again while it still waits).
    pub fn keyframe_requests(&mut self, now: Instant, out: &mut Vec<InputId>) {
        for input in &mut self.inputs {
            let due = input
                .last_request
                .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
            if input.needs_keyframe && due {
                input.last_request = Some(now);
                out.push(input.id);
            }
        }
    }

    fn cells(&self) -> Vec<super::frame::Rect> {
        let speaker = self
            .speaker
            .and_then(|s| self.inputs.iter().position(|i| i.id == s));
        layout::cells(
            self.cfg.layout,
            self.cfg.width,
            self.cfg.height,
            self.inputs.len(),
            speaker,
        )
    }

    /// Size of the cell `input` is drawn in.
    pub fn cell_size(&self, input: InputId) -> Option<(u16, u16)> {
        let pos = self.inputs.iter().position(|i| i.id == input)?;
        self.cells().get(pos).map(|r| (r.width, r.height))
    }

    /// When the next frame is due.
    pub fn next_frame(&self) -> Instant {
        self.next
    }

    /// If a frame is due at `now`, composes, encodes and appends its RTP payloads to
    /// `out`; returns whether a frame was produced (the caller marks the last payload).
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> bool {
        if now < self.next {
            return false;
        }
        let started = Instant::now();
        self.compose();
        let produced = match self.encoder.encode(&self.canvas, self.force_keyframe) {
            Ok(Some(frame)) => {
                self.packetizer.packetize(&frame.data, out);
                self.frames_out += 1;
                if frame.keyframe {
                    self.keyframes_out += 1;
                    self.force_keyframe = false;
                }
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "VP8 encode failed");
                false
            }
        };
        let interval = self.frame_interval();
        self.next += interval;
        if self.next <= now {
            // Late by more than a frame: skip frames rather than burst.
            self.next = now + interval;
        }
        self.last_tick = Some(now);
        self.cpu += started.elapsed();
        produced
    }

    fn compose(&mut self) {
        let cells = self.cells();
        self.canvas.fill(BLACK);
        for (input, cell) in self.inputs.iter().zip(cells) {
            match &input.picture {
                Some(p) => self.canvas.draw_scaled(p, cell.fit(p.width(), p.height())),
                None => self.canvas.fill_rect(cell, DARK_GREY),
            }
        }
    }

    pub fn stats(&self) -> VideoStats {
        let mut s = self.retired;
        for input in &self.inputs {
            let d = input.depacketizer.stats();
            s.lost_frames += d.lost_frames;
            s.late_packets += d.late_packets;
            s.malformed_packets += d.malformed_packets;
        }
        VideoStats {
            inputs: self.inputs.len(),
            frames_in: self.frames_in,
            frames_out: self.frames_out,
            keyframes_out: self.keyframes_out,
            late_packets: s.late_packets,
            lost_frames: s.lost_frames + self.undecoded_frames,
            malformed_packets: s.malformed_packets,
            cpu: self.cpu,
        }
    }
}
