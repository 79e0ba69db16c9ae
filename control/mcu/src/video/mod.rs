//! The video composer: one composed VP8 stream out of many VP8 inputs. It owns the
//! path from each input's RTP payloads to the composed stream's RTP payloads:
//! depacketizing (`vp8_rtp`), decoding and encoding with libvpx (`vpx`), pictures and
//! scaling (`frame`), the cells of each layout (`layout`) and the composer that ties
//! them to a frame clock (`composer`). No sockets, threads or clock reads beyond
//! measuring its own CPU time: the caller passes every instant in.

pub mod composer;
pub mod frame;
pub mod layout;
pub mod vp8_rtp;
pub mod vpx;

#[cfg(test)]
mod tests;

use std::time::Duration;

use thiserror::Error;

pub use composer::Composer;

/// How inputs are arranged in the composed picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// ceil(sqrt(n)) columns of equal cells, row-major in the order inputs were added.
    Grid,
    /// The speaker (or the first input) over the top three quarters, the others in a
    /// strip of small cells below.
    Speaker,
}

/// What a composer produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ComposerConfig {
    pub layout: Layout,
    pub width: u16,
    pub height: u16,
    pub fps: u8,
    pub bitrate_bps: u32,
}

/// Counters of one composer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoStats {
    pub inputs: usize,
    /// Input frames decoded.
    pub frames_in: u64,
    pub frames_out: u64,
    pub keyframes_out: u64,
    /// Input packets that came after a newer frame of their input was used.
    pub late_packets: u64,
    /// Input frames not shown: incomplete, undecodable, or skipped while their input
    /// waited for a keyframe.
    pub lost_frames: u64,
    /// Input payloads that were not VP8.
    pub malformed_packets: u64,
    /// Time spent in `push_rtp` and `tick` (decoding, composing, encoding).
    pub cpu: Duration,
}

/// What went wrong in the video path.
#[derive(Debug, Error)]
pub enum VideoError {
    /// libvpx refused a call; the text is its own message.
    #[error("VP8 codec: {0}")]
    Codec(String),
    #[error("invalid video configuration: {0}")]
    BadConfig(&'static str),
    /// The decoder met a frame it could not decode cleanly (the input needs a keyframe).
    #[error("corrupted VP8 frame")]
    Corrupted,
}
