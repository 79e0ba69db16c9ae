//! Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01):
//! a receiver-side [`TwccRecorder`] that turns packet arrivals into RTCP
//! transport-feedback packets (RTPFB, PT=205, FMT=15), and a zero-copy parser of such
//! feedback ([`TwccFeedback`]) for the sending side.
//!
//! Everything is sans-IO: times are microseconds on a monotonic clock of the caller's
//! choosing, output goes into buffers the caller supplies, memory is fixed when an object
//! is created and nothing allocates per packet. Input from the network never panics; it
//! gives a typed error. This module does not decide when to send feedback or what the
//! feedback means for the send rate (see `bwe`).
//!
//! `feedback.rs` parses feedback, `recorder.rs` records arrivals and builds feedback,
//! `chunks.rs` holds the status chunk encoding both share. The sequence number element
//! itself is read and written by [`crate::rtp::transport_seq`] and
//! [`crate::rtp::set_transport_seq`].

mod chunks;
mod feedback;
mod recorder;

pub use self::feedback::{
    Arrival, PacketStatus, PacketStatuses, TwccFeedback, unwrap_reference_time,
};
pub use self::recorder::TwccRecorder;

use crate::rtcp::RtcpError;

/// Sequence numbers a [`TwccRecorder`] remembers: arrivals further behind the newest
/// packet than this are forgotten (and never reported).
pub const RECORDER_WINDOW: usize = 2048;

/// Length of a feedback packet's fixed part: RTCP header, two SSRCs, base sequence
/// number, status count, reference time and feedback packet count.
const FIXED_LEN: usize = 20;
/// The smallest buffer [`TwccRecorder::build_feedback`] accepts: the fixed part, a run
/// of losses, one more chunk and a large delta, padded.
pub const MIN_FEEDBACK_LEN: usize = 28;
/// Offset of the first packet chunk in the FCI (after the two SSRCs).
const FCI_FIXED_LEN: usize = 8;
/// Resolution of a receive delta (draft §3.1.5).
const DELTA_UNIT_US: i64 = 250;
/// Resolution of the reference time (draft §3.1).
const REFERENCE_UNIT_US: i64 = 64_000;
/// The reference time is a 24-bit field.
const REFERENCE_MODULUS: i64 = 1 << 24;
/// Largest run a run-length chunk can carry (13 bits).
const MAX_RUN: usize = 0x1fff;
/// Symbols in a one-bit and in a two-bit status vector chunk.
const ONE_BIT_CAPACITY: usize = 14;
const TWO_BIT_CAPACITY: usize = 7;
/// Stored in [`TwccRecorder`] slots for sequence numbers that did not arrive.
const NOT_RECEIVED: u64 = u64::MAX;

/// Why a transport-feedback packet could not be parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TwccError {
    /// The RTCP framing is invalid.
    #[error(transparent)]
    Rtcp(#[from] RtcpError),
    /// The RTCP packet is not RTPFB/FMT=15.
    #[error("not a transport-wide congestion-control feedback packet")]
    NotTransportCc,
    /// Shorter than the fixed part (base sequence number to feedback packet count).
    #[error("transport feedback shorter than its fixed part")]
    TooShort,
    /// The packet chunks end before `packet status count` statuses are described.
    #[error("transport feedback chunks describe fewer packets than announced")]
    TruncatedChunks,
    /// The receive deltas the statuses announce run past the end of the packet.
    #[error("transport feedback receive deltas run past the end of the packet")]
    TruncatedDeltas,
    /// Status symbol 11, reserved by the draft (and rejected by libwebrtc).
    #[error("reserved packet status symbol in transport feedback")]
    ReservedSymbol,
    /// The output buffer cannot hold even a one-packet feedback.
    #[error("buffer too small for a transport feedback packet")]
    BufferTooSmall,
}
