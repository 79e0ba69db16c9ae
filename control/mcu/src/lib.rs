//! MCU media processing, with no I/O: what turns a room's publications into one mixed
//! audio stream (per listener, minus its own voice) and one composed video stream (per
//! layout and resolution). The media server's shell feeds it the RTP payloads it reads
//! from its publishers, calls it on a clock, and sends what comes out as a local
//! publisher would. Codecs are libopus and libvpx; nothing here runs on the forwarding
//! hot path.
//!
//! `audio` owns the mixer (jitter buffer, decoding with loss concealment, mixing,
//! encoding per output), `video` the composer (VP8 depacketizing, decoding, layout,
//! scaling, encoding, packetizing) and `rtp_out` the RTP streams they send (their own
//! sequence and timestamp domains, sender reports).

pub mod audio;
pub mod error;
pub mod rtp_out;
pub mod video;

pub use error::McuError;

/// Names one input of a mixer or composer (a publisher's stream); chosen by the caller.
pub type InputId = u64;
