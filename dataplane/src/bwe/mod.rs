//! Send-side bandwidth estimation for one subscriber, in the manner of Google
//! Congestion Control (draft-ietf-rmcat-gcc-02) as libwebrtc implements it: a
//! delay-based controller (packet groups, a trendline filter over the accumulated
//! one-way delay variation, an overuse detector with an adaptive threshold, an AIMD
//! rate controller) and a loss-based controller, the estimate being the smaller of the
//! two. Without transport-wide feedback, a receiver's REMB sets the estimate instead.
//!
//! Inputs are what the sender knows: each packet sent (transport-wide sequence number,
//! size, send time) and the parsed feedback ([`TwccFeedback`](crate::twcc::TwccFeedback)), with times in µs on the
//! caller's monotonic clock. Memory is fixed at creation; nothing allocates or panics
//! afterwards. It does not send feedback, pace packets or pick simulcast layers: it
//! only says how many bits per second the path to the subscriber seems to carry.
//!
//! Several data-plane workers may send to one subscriber while one reads its feedback:
//! they share a [`SendLog`] (transport-wide sequence numbers and each packet's send
//! time and size, in atomics), from which the reading worker feeds its estimator.
//!
//! `estimator.rs` holds [`SendSideBwe`], `delay.rs` and `loss.rs` its two controllers,
//! `send_log.rs` the [`SendLog`] and the shared clock.

mod delay;
mod estimator;
mod loss;
mod send_log;

pub use self::estimator::{FeedbackWork, SendSideBwe, remb_bitrate};
pub use self::send_log::{SendLog, clock_epoch};

/// Sent packets remembered for matching feedback: a feedback's statuses beyond the
/// last this many packets are never read.
pub const HISTORY: usize = 2048;
/// Multiplicative increase per second far from convergence.
pub(super) const MULTIPLICATIVE_PER_S: f64 = 1.08;

/// Limits of a [`SendSideBwe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BweConfig {
    /// Estimate before any feedback.
    pub start_bps: u64,
    /// The estimate never goes below this...
    pub min_bps: u64,
    /// ...nor above this.
    pub max_bps: u64,
}

impl Default for BweConfig {
    fn default() -> Self {
        Self {
            start_bps: 300_000,
            min_bps: 30_000,
            max_bps: 20_000_000,
        }
    }
}

/// What the overuse detector concludes from the delay trend (draft §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthUsage {
    /// Delay is stable.
    Normal,
    /// Queues are building: the send rate is above the path's capacity.
    Overusing,
    /// Queues are draining.
    Underusing,
}
