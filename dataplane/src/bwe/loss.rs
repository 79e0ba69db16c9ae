//! The loss-based controller of the estimator (draft-ietf-rmcat-gcc-02 §6).
//!
//! It owns the reaction to packet loss. It must not look at delay (`delay.rs`).

use super::MULTIPLICATIVE_PER_S;

/// Loss-based control (draft §6): thresholds and the least packets per decision.
pub(super) const LOSS_LOW: f64 = 0.02;
pub(super) const LOSS_HIGH: f64 = 0.10;
pub(super) const LOSS_MIN_PACKETS: u32 = 100;
/// Weight of the newest window in the smoothed loss fraction.
pub(super) const LOSS_SMOOTHING: f64 = 0.5;
pub(super) const LOSS_MAX_INTERVAL_US: u64 = 1_000_000;
pub(super) const LOSS_DECREASE_INTERVAL_US: u64 = 300_000;

/// Loss-based controller (draft §6, with libwebrtc's pacing of changes). The loss
/// fraction it acts on is smoothed over windows of at least [`LOSS_MIN_PACKETS`]
/// packets (or [`LOSS_MAX_INTERVAL_US`]), so that chance bursts of random loss within
/// the hold band (2–10 %) are not taken for congestion.
#[derive(Debug, Clone, Copy)]
pub(super) struct LossControl {
    pub(super) bps: f64,
    pub(super) lost: u32,
    pub(super) total: u32,
    pub(super) since_us: Option<u64>,
    pub(super) last_update_us: Option<u64>,
    pub(super) last_decrease_us: Option<u64>,
    /// The smoothed loss fraction (`None` before the first window).
    pub(super) last_fraction: Option<f64>,
}

impl LossControl {
    pub(super) fn update(&mut self, lost: u32, total: u32, rtt_us: u64, now_us: u64) {
        self.lost += lost;
        self.total += total;
        let since = *self.since_us.get_or_insert(now_us);
        if self.total < LOSS_MIN_PACKETS
            && (self.total == 0 || now_us.saturating_sub(since) < LOSS_MAX_INTERVAL_US)
        {
            return;
        }
        let window = f64::from(self.lost) / f64::from(self.total.max(1));
        let fraction = match self.last_fraction {
            Some(f) => f + LOSS_SMOOTHING * (window - f),
            None => window,
        };
        self.last_fraction = Some(fraction);
        let elapsed_s = self
            .last_update_us
            .map_or(0.0, |t| now_us.saturating_sub(t) as f64 / 1e6)
            .min(1.0);
        if fraction < LOSS_LOW {
            self.bps *= MULTIPLICATIVE_PER_S.powf(elapsed_s);
        } else if fraction > LOSS_HIGH {
            let due = self
                .last_decrease_us
                .is_none_or(|t| now_us.saturating_sub(t) >= LOSS_DECREASE_INTERVAL_US + rtt_us);
            if due {
                self.bps *= 1.0 - 0.5 * fraction;
                self.last_decrease_us = Some(now_us);
            }
        }
        self.last_update_us = Some(now_us);
        self.lost = 0;
        self.total = 0;
        self.since_us = None;
    }
}
