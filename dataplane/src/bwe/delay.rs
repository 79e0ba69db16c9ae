//! The delay-based controller of the estimator (draft-ietf-rmcat-gcc-02 §5): the
//! trendline filter over the one-way delay variation of packet groups, the overuse
//! detector with its adaptive threshold, and the AIMD rate controller with its link
//! capacity estimate.
//!
//! It owns the reaction to queueing delay. It must not look at losses (`loss.rs`) or
//! at packets one by one (the estimator groups them).

use super::{BandwidthUsage, MULTIPLICATIVE_PER_S};

/// Samples in the trendline regression window.
pub(super) const TRENDLINE_WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
pub(super) const TRENDLINE_SMOOTHING: f64 = 0.9;
/// Gain applied to the trend before comparing it with the threshold.
pub(super) const TRENDLINE_GAIN: f64 = 4.0;
/// The trend is scaled by the number of deltas seen, up to this many.
pub(super) const MIN_DELTAS: usize = 60;
/// Overuse must last this long (ms of send time) before it is signalled.
pub(super) const OVERUSE_TIME_MS: f64 = 10.0;
/// Adaptive threshold: start, bounds, gains (draft §5.4).
pub(super) const THRESHOLD_START_MS: f64 = 12.5;
pub(super) const THRESHOLD_MIN_MS: f64 = 6.0;
pub(super) const THRESHOLD_MAX_MS: f64 = 600.0;
pub(super) const K_UP: f64 = 0.0087;
pub(super) const K_DOWN: f64 = 0.039;
/// Trends further than this beyond the threshold do not adapt it (spikes).
pub(super) const MAX_ADAPT_OFFSET_MS: f64 = 15.0;
/// Multiplicative decrease factor on overuse (draft §5.5).
pub(super) const BETA: f64 = 0.85;
/// Assumed packet size when computing the additive increase.
pub(super) const PACKET_BITS: f64 = 1200.0 * 8.0;

/// Trendline filter and overuse detector (libwebrtc `TrendlineEstimator`).
#[derive(Debug, Clone)]
pub(super) struct Trendline {
    pub(super) deltas: usize,
    pub(super) first_arrival_ms: Option<f64>,
    pub(super) accumulated_ms: f64,
    pub(super) smoothed_ms: f64,
    /// (arrival ms since first, smoothed delay ms), a ring.
    pub(super) history: [(f64, f64); TRENDLINE_WINDOW],
    pub(super) len: usize,
    pub(super) head: usize,
    pub(super) previous_trend: f64,
    pub(super) threshold_ms: f64,
    pub(super) last_threshold_update_ms: Option<f64>,
    pub(super) time_overusing_ms: Option<f64>,
    pub(super) overuse_count: u32,
    pub(super) usage: BandwidthUsage,
}

impl Trendline {
    pub(super) fn new() -> Self {
        Self {
            deltas: 0,
            first_arrival_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            history: [(0.0, 0.0); TRENDLINE_WINDOW],
            len: 0,
            head: 0,
            previous_trend: 0.0,
            threshold_ms: THRESHOLD_START_MS,
            last_threshold_update_ms: None,
            time_overusing_ms: None,
            overuse_count: 0,
            usage: BandwidthUsage::Normal,
        }
    }

    /// One delay-variation sample between two packet groups.
    pub(super) fn update(&mut self, arrival_delta_ms: f64, send_delta_ms: f64, arrival_ms: f64) {
        self.deltas = (self.deltas + 1).min(1000);
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.accumulated_ms += arrival_delta_ms - send_delta_ms;
        self.smoothed_ms = TRENDLINE_SMOOTHING * self.smoothed_ms
            + (1.0 - TRENDLINE_SMOOTHING) * self.accumulated_ms;
        self.history[self.head] = (arrival_ms - first, self.smoothed_ms);
        self.head = (self.head + 1) % TRENDLINE_WINDOW;
        self.len = (self.len + 1).min(TRENDLINE_WINDOW);
        let trend = if self.len == TRENDLINE_WINDOW {
            self.slope().unwrap_or(self.previous_trend)
        } else {
            self.previous_trend
        };
        self.detect(trend, send_delta_ms, arrival_ms);
    }

    /// Least-squares slope of smoothed delay over arrival time.
    pub(super) fn slope(&self) -> Option<f64> {
        let n = self.len as f64;
        let (sx, sy) = self.history[..self.len]
            .iter()
            .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (num, den) = self.history[..self.len]
            .iter()
            .fold((0.0, 0.0), |(num, den), &(x, y)| {
                (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
            });
        (den > 0.0 && num.is_finite()).then(|| num / den)
    }

    pub(super) fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        if self.deltas < 2 {
            self.usage = BandwidthUsage::Normal;
            return;
        }
        let modified = self.deltas.min(MIN_DELTAS) as f64 * trend * TRENDLINE_GAIN;
        if modified > self.threshold_ms {
            let t = match self.time_overusing_ms {
                None => send_delta_ms / 2.0,
                Some(t) => t + send_delta_ms,
            };
            self.time_overusing_ms = Some(t);
            self.overuse_count += 1;
            if t > OVERUSE_TIME_MS && self.overuse_count > 1 && trend >= self.previous_trend {
                self.time_overusing_ms = Some(0.0);
                self.overuse_count = 0;
                self.usage = BandwidthUsage::Overusing;
            }
        } else if modified < -self.threshold_ms {
            self.time_overusing_ms = None;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Underusing;
        } else {
            self.time_overusing_ms = None;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Normal;
        }
        self.previous_trend = trend;
        self.update_threshold(modified, now_ms);
    }

    /// Adaptive threshold (draft §5.4): follows |trend| up slowly, down fast.
    pub(super) fn update_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_update_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold_ms + MAX_ADAPT_OFFSET_MS {
            self.last_threshold_update_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt;
        self.threshold_ms = self.threshold_ms.clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
        self.last_threshold_update_ms = Some(now_ms);
    }
}

/// Average and spread of the throughput measured at overuse (libwebrtc
/// `LinkCapacityEstimator`): tells AIMD whether it is near convergence.
#[derive(Debug, Clone, Copy)]
pub(super) struct LinkCapacity {
    pub(super) estimate_kbps: Option<f64>,
    pub(super) deviation_kbps: f64,
}

impl LinkCapacity {
    pub(super) fn new() -> Self {
        Self {
            estimate_kbps: None,
            deviation_kbps: 0.4,
        }
    }

    pub(super) fn spread_kbps(&self, estimate: f64) -> f64 {
        (self.deviation_kbps * estimate).sqrt()
    }

    pub(super) fn upper_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e + 3.0 * self.spread_kbps(e)) * 1000.0)
    }

    pub(super) fn lower_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e - 3.0 * self.spread_kbps(e)).max(0.0) * 1000.0)
    }

    pub(super) fn on_overuse(&mut self, acked_bps: f64) {
        const ALPHA: f64 = 0.05;
        let sample = acked_bps / 1000.0;
        let estimate = match self.estimate_kbps {
            None => sample,
            Some(e) => (1.0 - ALPHA) * e + ALPHA * sample,
        };
        let error = estimate - sample;
        self.deviation_kbps = ((1.0 - ALPHA) * self.deviation_kbps
            + ALPHA * error * error / estimate.max(1.0))
        .clamp(0.4, 2.5);
        self.estimate_kbps = Some(estimate);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RateState {
    Hold,
    Increase,
    Decrease,
}

/// Additive-increase multiplicative-decrease rate controller (draft §5.5).
#[derive(Debug, Clone, Copy)]
pub(super) struct Aimd {
    pub(super) bps: f64,
    pub(super) state: RateState,
    pub(super) last_change_us: Option<u64>,
    pub(super) link: LinkCapacity,
}

impl Aimd {
    pub(super) fn update(
        &mut self,
        usage: BandwidthUsage,
        acked_bps: Option<f64>,
        rtt_us: u64,
        now_us: u64,
    ) {
        match usage {
            BandwidthUsage::Normal if self.state == RateState::Hold => {
                self.state = RateState::Increase;
                self.last_change_us = Some(now_us);
            }
            BandwidthUsage::Normal => {}
            BandwidthUsage::Overusing => self.state = RateState::Decrease,
            BandwidthUsage::Underusing => self.state = RateState::Hold,
        }
        match self.state {
            RateState::Hold => {}
            RateState::Increase => {
                if let (Some(acked), Some(upper)) = (acked_bps, self.link.upper_bps())
                    && acked > upper
                {
                    // Far above what the link carried at the last overuse: capacity grew.
                    self.link = LinkCapacity::new();
                }
                let elapsed_s = self
                    .last_change_us
                    .map_or(0.0, |t| now_us.saturating_sub(t) as f64 / 1e6);
                let increase = if self.link.estimate_kbps.is_some() {
                    // Near convergence: about one packet per response time.
                    let frame_bits = self.bps / 30.0;
                    let packets = (frame_bits / PACKET_BITS).ceil().max(1.0);
                    let response_s = (rtt_us as f64 / 1e6) + 0.1;
                    let rate = (frame_bits / packets / response_s).max(4000.0);
                    rate * elapsed_s
                } else {
                    let alpha = MULTIPLICATIVE_PER_S.powf(elapsed_s.min(1.0));
                    (self.bps * (alpha - 1.0)).max(1000.0)
                };
                let mut next = self.bps + increase;
                if let Some(acked) = acked_bps {
                    // Do not run away from what actually gets through.
                    let limit = 1.5 * acked + 10_000.0;
                    next = next.min(limit.max(self.bps));
                }
                self.bps = next;
                self.last_change_us = Some(now_us);
            }
            RateState::Decrease => {
                let interval = rtt_us.clamp(10_000, 200_000);
                let due = self
                    .last_change_us
                    .is_none_or(|t| now_us.saturating_sub(t) >= interval);
                let acked = acked_bps.unwrap_or(self.bps);
                if due || acked < 0.5 * self.bps {
                    let mut next = BETA * acked;
                    if next > self.bps
                        && let Some(link) = self.link.estimate_kbps
                    {
                        next = BETA * link * 1000.0;
                    }
                    if let Some(lower) = self.link.lower_bps()
                        && acked < lower
                    {
                        self.link = LinkCapacity::new();
                    }
                    self.link.on_overuse(acked);
                    self.bps = self.bps.min(next);
                    self.last_change_us = Some(now_us);
                }
                self.state = RateState::Hold;
            }
        }
    }
}
