//! Send-side bandwidth estimation for one subscriber, in the manner of Google
//! Congestion Control (draft-ietf-rmcat-gcc-02) as libwebrtc implements it: a
//! delay-based controller (packet groups, a trendline filter over the accumulated
//! one-way delay variation, an overuse detector with an adaptive threshold, an AIMD
//! rate controller) and a loss-based controller, the estimate being the smaller of the
//! two. Without transport-wide feedback, a receiver's REMB sets the estimate instead.
//!
//! Inputs are what the sender knows: each packet sent (transport-wide sequence number,
//! size, send time) and the parsed feedback ([`TwccFeedback`]), with times in µs on the
//! caller's monotonic clock. Memory is fixed at creation; nothing allocates or panics
//! afterwards. It does not send feedback, pace packets or pick simulcast layers: it
//! only says how many bits per second the path to the subscriber seems to carry.
//!
//! Several data-plane workers may send to one subscriber while one reads its feedback:
//! they share a [`SendLog`] (transport-wide sequence numbers and each packet's send
//! time and size, in atomics), from which the reading worker feeds its estimator.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use crate::twcc::{self, TwccFeedback};

/// Sent packets remembered for matching feedback.
const HISTORY: usize = 2048;
/// Packets sent within this span start one group (libwebrtc `kTimestampGroupLengthMs`).
const GROUP_SPAN_US: i64 = 5_000;
/// Packets arriving closer than this with shrinking delay join the group (a burst).
const BURST_DELTA_US: i64 = 5_000;
/// Longest burst.
const MAX_BURST_US: i64 = 100_000;
/// Samples in the trendline regression window.
const TRENDLINE_WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
const TRENDLINE_SMOOTHING: f64 = 0.9;
/// Gain applied to the trend before comparing it with the threshold.
const TRENDLINE_GAIN: f64 = 4.0;
/// The trend is scaled by the number of deltas seen, up to this many.
const MIN_DELTAS: usize = 60;
/// Overuse must last this long (ms of send time) before it is signalled.
const OVERUSE_TIME_MS: f64 = 10.0;
/// Adaptive threshold: start, bounds, gains (draft §5.4).
const THRESHOLD_START_MS: f64 = 12.5;
const THRESHOLD_MIN_MS: f64 = 6.0;
const THRESHOLD_MAX_MS: f64 = 600.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// Trends further than this beyond the threshold do not adapt it (spikes).
const MAX_ADAPT_OFFSET_MS: f64 = 15.0;
/// Multiplicative decrease factor on overuse (draft §5.5).
const BETA: f64 = 0.85;
/// Multiplicative increase per second far from convergence.
const MULTIPLICATIVE_PER_S: f64 = 1.08;
/// Acknowledged bitrate: 50 ms buckets over 500 ms.
const ACKED_BUCKET_US: u64 = 50_000;
const ACKED_BUCKETS: usize = 10;
/// Loss-based control (draft §6): thresholds and the least packets per decision.
const LOSS_LOW: f64 = 0.02;
const LOSS_HIGH: f64 = 0.10;
const LOSS_MIN_PACKETS: u32 = 100;
/// Weight of the newest window in the smoothed loss fraction.
const LOSS_SMOOTHING: f64 = 0.5;
const LOSS_MAX_INTERVAL_US: u64 = 1_000_000;
const LOSS_DECREASE_INTERVAL_US: u64 = 300_000;
/// Assumed packet size when computing the additive increase.
const PACKET_BITS: f64 = 1200.0 * 8.0;

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

#[derive(Debug, Clone, Copy, Default)]
struct SentPacket {
    send_us: u64,
    size: u32,
    seq: u16,
    /// 0: empty, 1: sent, 2: acknowledged.
    state: u8,
}

/// A group of packets sent close together, as the delay-based controller sees them.
#[derive(Debug, Clone, Copy)]
struct PacketGroup {
    first_send_us: i64,
    last_send_us: i64,
    first_arrival_us: i64,
    last_arrival_us: i64,
}

/// Trendline filter and overuse detector (libwebrtc `TrendlineEstimator`).
#[derive(Debug, Clone)]
struct Trendline {
    deltas: usize,
    first_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms since first, smoothed delay ms), a ring.
    history: [(f64, f64); TRENDLINE_WINDOW],
    len: usize,
    head: usize,
    previous_trend: f64,
    threshold_ms: f64,
    last_threshold_update_ms: Option<f64>,
    time_overusing_ms: Option<f64>,
    overuse_count: u32,
    usage: BandwidthUsage,
}

impl Trendline {
    fn new() -> Self {
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
    fn update(&mut self, arrival_delta_ms: f64, send_delta_ms: f64, arrival_ms: f64) {
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
    fn slope(&self) -> Option<f64> {
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

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
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
    fn update_threshold(&mut self, modified: f64, now_ms: f64) {
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
struct LinkCapacity {
    estimate_kbps: Option<f64>,
    deviation_kbps: f64,
}

impl LinkCapacity {
    fn new() -> Self {
        Self {
            estimate_kbps: None,
            deviation_kbps: 0.4,
        }
    }

    fn spread_kbps(&self, estimate: f64) -> f64 {
        (self.deviation_kbps * estimate).sqrt()
    }

    fn upper_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e + 3.0 * self.spread_kbps(e)) * 1000.0)
    }

    fn lower_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e - 3.0 * self.spread_kbps(e)).max(0.0) * 1000.0)
    }

    fn on_overuse(&mut self, acked_bps: f64) {
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
enum RateState {
    Hold,
    Increase,
    Decrease,
}

/// Additive-increase multiplicative-decrease rate controller (draft §5.5).
#[derive(Debug, Clone, Copy)]
struct Aimd {
    bps: f64,
    state: RateState,
    last_change_us: Option<u64>,
    link: LinkCapacity,
}

impl Aimd {
    fn update(&mut self, usage: BandwidthUsage, acked_bps: Option<f64>, rtt_us: u64, now_us: u64) {
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

/// Loss-based controller (draft §6, with libwebrtc's pacing of changes). The loss
/// fraction it acts on is smoothed over windows of at least [`LOSS_MIN_PACKETS`]
/// packets (or [`LOSS_MAX_INTERVAL_US`]), so that chance bursts of random loss within
/// the hold band (2–10 %) are not taken for congestion.
#[derive(Debug, Clone, Copy)]
struct LossControl {
    bps: f64,
    lost: u32,
    total: u32,
    since_us: Option<u64>,
    last_update_us: Option<u64>,
    last_decrease_us: Option<u64>,
    /// The smoothed loss fraction (`None` before the first window).
    last_fraction: Option<f64>,
}

impl LossControl {
    fn update(&mut self, lost: u32, total: u32, rtt_us: u64, now_us: u64) {
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

/// Send-side bandwidth estimator for the path to one subscriber.
///
/// Call [`Self::on_packet_sent`] for every packet stamped with a transport-wide
/// sequence number, [`Self::on_feedback`] for every transport feedback the subscriber
/// sends, optionally [`Self::set_rtt`], and read [`Self::estimate_bps`]. Before any
/// transport feedback, [`Self::on_remb`] sets the estimate; afterwards REMB only caps it.
#[derive(Debug, Clone)]
pub struct SendSideBwe {
    config: BweConfig,
    history: Box<[SentPacket]>,
    current_group: Option<PacketGroup>,
    previous_group: Option<PacketGroup>,
    trendline: Trendline,
    aimd: Aimd,
    loss: LossControl,
    /// Acknowledged bytes per 50 ms of arrival time, and the newest bucket's number.
    acked: [u64; ACKED_BUCKETS],
    acked_newest: Option<u64>,
    acked_first: u64,
    /// Unwrapped reference time of the last feedback (64 ms units), and the offset
    /// that turns remote arrival times into non-negative µs.
    last_reference: Option<i64>,
    arrival_origin_us: Option<i64>,
    rtt_us: u64,
    remb_bps: Option<u64>,
    twcc_seen: bool,
}

impl SendSideBwe {
    /// An estimator starting at `config.start_bps` (allocates its history once).
    pub fn new(config: BweConfig) -> Self {
        let start = config
            .start_bps
            .clamp(config.min_bps, config.max_bps.max(config.min_bps));
        let start = start as f64;
        Self {
            config,
            history: vec![SentPacket::default(); HISTORY].into_boxed_slice(),
            current_group: None,
            previous_group: None,
            trendline: Trendline::new(),
            aimd: Aimd {
                bps: start,
                state: RateState::Hold,
                last_change_us: None,
                link: LinkCapacity::new(),
            },
            loss: LossControl {
                bps: start,
                lost: 0,
                total: 0,
                since_us: None,
                last_update_us: None,
                last_decrease_us: None,
                last_fraction: None,
            },
            acked: [0; ACKED_BUCKETS],
            acked_newest: None,
            acked_first: 0,
            last_reference: None,
            arrival_origin_us: None,
            rtt_us: 100_000,
            remb_bps: None,
            twcc_seen: false,
        }
    }

    fn clamp(&self, bps: f64) -> u64 {
        let max = self.config.max_bps.max(self.config.min_bps);
        if bps.is_nan() {
            return self.config.min_bps;
        }
        (bps.max(0.0) as u64).clamp(self.config.min_bps, max)
    }

    /// The current estimate (bits per second) of what the path carries.
    pub fn estimate_bps(&self) -> u64 {
        if !self.twcc_seen
            && let Some(remb) = self.remb_bps
        {
            return remb.clamp(
                self.config.min_bps,
                self.config.max_bps.max(self.config.min_bps),
            );
        }
        let both = self.aimd.bps.min(self.loss.bps);
        let capped = self.remb_bps.map_or(both, |r| both.min(r as f64));
        self.clamp(capped)
    }

    /// The delay-based part of the estimate.
    pub fn delay_based_bps(&self) -> u64 {
        self.clamp(self.aimd.bps)
    }

    /// The loss-based part of the estimate.
    pub fn loss_based_bps(&self) -> u64 {
        self.clamp(self.loss.bps)
    }

    /// The smoothed loss fraction the loss-based part last acted on (0.0..=1.0).
    pub fn loss_fraction(&self) -> f64 {
        self.loss.last_fraction.unwrap_or(0.0)
    }

    /// What the overuse detector concluded last.
    pub fn usage(&self) -> BandwidthUsage {
        self.trendline.usage
    }

    /// The rate at which the subscriber received our packets, over the last 500 ms of
    /// its clock; `None` until 100 ms of feedback came in.
    pub fn acked_bps(&self) -> Option<u64> {
        let newest = self.acked_newest?;
        // Complete buckets only (the newest may still be filling).
        let complete = newest
            .saturating_sub(self.acked_first)
            .min(ACKED_BUCKETS as u64 - 1);
        if complete < 2 {
            return None;
        }
        let bytes: u64 = (1..=complete)
            .map(|back| self.acked[((newest - back) % ACKED_BUCKETS as u64) as usize])
            .sum();
        Some(bytes * 8 * 1_000_000 / (complete * ACKED_BUCKET_US))
    }

    /// Sets the round-trip time (from RTCP receiver reports), which paces decreases.
    pub fn set_rtt(&mut self, rtt_us: u64) {
        self.rtt_us = rtt_us.min(10_000_000);
    }

    /// Records a packet sent with transport-wide sequence number `seq`.
    pub fn on_packet_sent(&mut self, seq: u16, size_bytes: usize, send_us: u64) {
        self.history[usize::from(seq) % HISTORY] = SentPacket {
            send_us,
            size: u32::try_from(size_bytes).unwrap_or(u32::MAX),
            seq,
            state: 1,
        };
    }

    /// A probe showed the path carried `bps` (the acknowledged rate while padding up to
    /// a target): the estimate rises to it at once, unless the delay trend says the
    /// path is overused (libwebrtc applies probe results the same way).
    pub fn on_probe_result(&mut self, bps: u64) {
        if self.trendline.usage == BandwidthUsage::Overusing {
            return;
        }
        let bps = bps as f64;
        self.aimd.bps = self.aimd.bps.max(bps);
        self.loss.bps = self.loss.bps.max(bps);
    }

    /// A receiver estimated maximum bitrate (from `rtcp::RtcpKind::Remb`): sets the
    /// estimate while no transport feedback has been seen, caps it afterwards.
    pub fn on_remb(&mut self, bitrate_bps: u64) {
        self.remb_bps = Some(bitrate_bps);
    }

    /// Processes one transport feedback received at `now_us`.
    pub fn on_feedback(&mut self, fb: &TwccFeedback<'_>, now_us: u64) {
        self.twcc_seen = true;
        let reference = twcc::unwrap_reference_time(self.last_reference, fb.reference_time);
        self.last_reference = Some(reference);
        // Remote arrival times, unwrapped, relative to the first feedback.
        let shift = reference * 64_000 - fb.reference_us();
        let origin = *self.arrival_origin_us.get_or_insert(reference * 64_000);
        let (mut lost, mut total) = (0u32, 0u32);
        for status in fb.packets() {
            let entry = &mut self.history[usize::from(status.seq) % HISTORY];
            if entry.state == 0 || entry.seq != status.seq {
                continue;
            }
            if entry.state == 2 {
                // Reported again (after a reordered arrival): counted already.
                continue;
            }
            total += 1;
            let Some(arrival) = status.arrival else {
                lost += 1;
                continue;
            };
            entry.state = 2;
            let (send_us, size) = (entry.send_us, entry.size);
            let arrival_us = arrival.at_us + shift - origin;
            self.on_acked(send_us as i64, arrival_us, size);
        }
        self.loss.update(lost, total, self.rtt_us, now_us);
        let acked = self.acked_bps().map(|b| b as f64);
        self.aimd
            .update(self.trendline.usage, acked, self.rtt_us, now_us);
        // Keep both parts within the limits, and the loss-based part at most the
        // delay-based one (so it falls as soon as losses do, libwebrtc-style).
        let (min, max) = (self.config.min_bps as f64, self.config.max_bps as f64);
        self.aimd.bps = self.aimd.bps.clamp(min, max.max(min));
        self.loss.bps = self.loss.bps.min(self.aimd.bps).max(min);
    }

    fn on_acked(&mut self, send_us: i64, arrival_us: i64, size: u32) {
        // Acknowledged bitrate, by arrival time.
        if let Ok(at) = u64::try_from(arrival_us) {
            let bucket = at / ACKED_BUCKET_US;
            match self.acked_newest {
                None => {
                    self.acked_newest = Some(bucket);
                    self.acked_first = bucket;
                }
                Some(newest) if bucket > newest => {
                    let start = (newest + 1).max(bucket.saturating_sub(ACKED_BUCKETS as u64 - 1));
                    for b in start..=bucket {
                        self.acked[(b % ACKED_BUCKETS as u64) as usize] = 0;
                    }
                    self.acked_newest = Some(bucket);
                }
                _ => {}
            }
            if let Some(newest) = self.acked_newest
                && newest - bucket.min(newest) < ACKED_BUCKETS as u64
            {
                self.acked[(bucket % ACKED_BUCKETS as u64) as usize] += u64::from(size);
            }
        }
        // Delay-based: group packets, feed group-to-group deltas to the trendline.
        let Some(group) = self.current_group.as_mut() else {
            self.current_group = Some(PacketGroup {
                first_send_us: send_us,
                last_send_us: send_us,
                first_arrival_us: arrival_us,
                last_arrival_us: arrival_us,
            });
            return;
        };
        if send_us < group.first_send_us {
            return; // Reordered: older than the group being built.
        }
        let in_span = send_us - group.first_send_us <= GROUP_SPAN_US;
        let arrival_delta = arrival_us - group.last_arrival_us;
        let send_delta = send_us - group.last_send_us;
        let burst = (0..=BURST_DELTA_US).contains(&arrival_delta)
            && arrival_delta - send_delta < 0
            && arrival_us - group.first_arrival_us < MAX_BURST_US;
        if in_span || burst {
            group.last_send_us = group.last_send_us.max(send_us);
            group.last_arrival_us = group.last_arrival_us.max(arrival_us);
            return;
        }
        let done = *group;
        if let Some(prev) = self.previous_group {
            let send_delta = done.last_send_us - prev.last_send_us;
            let arrival_delta = done.last_arrival_us - prev.last_arrival_us;
            if arrival_delta >= 0 && send_delta > 0 {
                self.trendline.update(
                    arrival_delta as f64 / 1000.0,
                    send_delta as f64 / 1000.0,
                    done.last_arrival_us as f64 / 1000.0,
                );
            }
        }
        self.previous_group = Some(done);
        self.current_group = Some(PacketGroup {
            first_send_us: send_us,
            last_send_us: send_us,
            first_arrival_us: arrival_us,
            last_arrival_us: arrival_us,
        });
    }
}

/// The bitrate of the first REMB in a compound RTCP packet, if any: the fallback
/// input to [`SendSideBwe::on_remb`] (parsing is `rtcp`'s).
pub fn remb_bitrate(compound: &[u8]) -> Option<u64> {
    crate::rtcp::packets(compound)
        .map_while(Result::ok)
        .find_map(|p| match p.kind() {
            Ok(crate::rtcp::RtcpKind::Remb(r)) => Some(r.bitrate_bps),
            _ => None,
        })
}

/// `us` in units of 1/65536 s, truncated to 32 bits (RTCP's delay unit).
fn units_65536(us: u64) -> u32 {
    (u128::from(us) * 65_536 / 1_000_000) as u32
}

/// The origin of the µs clock every worker and [`SendLog`] share (set on first use).
pub fn clock_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The packets sent to one subscriber by every worker: transport-wide sequence numbers
/// are taken here, and each packet's size and send time is logged in a fixed ring, so
/// the worker that reads the subscriber's feedback knows what it acknowledges. Only
/// atomics: no lock, no allocation after creation.
pub struct SendLog {
    epoch: Instant,
    next_seq: AtomicU32,
    sent_us: Box<[AtomicU64]>,
    /// Sequence number << 16 | size (bytes, saturated), per slot.
    meta: Box<[AtomicU32]>,
    /// The last sender reports sent to the subscriber: the middle 32 bits of their NTP
    /// time << 32 | the send time in 1/65536 s (truncated), for the round-trip time
    /// from the subscriber's report blocks (RFC 3550 §6.4.1).
    reports: [AtomicU64; SR_LOG],
    next_report: AtomicU32,
}

/// Sender reports remembered per subscriber (several streams report every second or so).
const SR_LOG: usize = 16;

impl std::fmt::Debug for SendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendLog")
            .field("next_seq", &self.next_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for SendLog {
    fn default() -> Self {
        Self::new()
    }
}

impl SendLog {
    /// An empty log (allocates its ring once).
    pub fn new() -> Self {
        Self {
            epoch: clock_epoch(),
            next_seq: AtomicU32::new(0),
            sent_us: (0..HISTORY).map(|_| AtomicU64::new(0)).collect(),
            meta: (0..HISTORY).map(|_| AtomicU32::new(u32::MAX)).collect(),
            reports: std::array::from_fn(|_| AtomicU64::new(0)),
            next_report: AtomicU32::new(0),
        }
    }

    /// Logs a sender report whose NTP time's middle 32 bits are `ntp_middle`, sent to
    /// the subscriber at `now_us`.
    pub fn record_report(&self, ntp_middle: u32, now_us: u64) {
        let slot = self.next_report.fetch_add(1, Ordering::Relaxed) as usize % SR_LOG;
        let at = units_65536(now_us);
        self.reports[slot].store(
            u64::from(ntp_middle) << 32 | u64::from(at),
            Ordering::Relaxed,
        );
    }

    /// The round-trip time a subscriber's report block shows (its `last_sr` and
    /// `delay_since_last_sr`), read at `now_us`: `None` when the report it names is not
    /// one of the last ones logged, or the figures do not add up.
    pub fn rtt_us(&self, last_sr: u32, delay_since_last_sr: u32, now_us: u64) -> Option<u64> {
        if last_sr == 0 {
            return None;
        }
        let sent = self.reports.iter().find_map(|r| {
            let v = r.load(Ordering::Relaxed);
            (v != 0 && (v >> 32) as u32 == last_sr).then_some(v as u32)
        })?;
        let rtt = units_65536(now_us)
            .wrapping_sub(sent)
            .checked_sub(delay_since_last_sr)?;
        // Longer than a minute: a stale or forged report.
        (rtt < 60 << 16).then(|| u64::from(rtt) * 1_000_000 / 65_536)
    }

    /// `now` in µs on the log's clock, [`clock_epoch`]'s.
    pub fn now_us(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Takes the next transport-wide sequence number.
    pub fn next_seq(&self) -> u16 {
        self.next_seq.fetch_add(1, Ordering::Relaxed) as u16
    }

    /// Logs packet `seq` of `size` bytes sent at `send_us`.
    pub fn record(&self, seq: u16, size: usize, send_us: u64) {
        let slot = usize::from(seq) % HISTORY;
        self.sent_us[slot].store(send_us, Ordering::Relaxed);
        let size = u32::try_from(size.min(0xffff)).unwrap_or(0xffff);
        self.meta[slot].store(u32::from(seq) << 16 | size, Ordering::Release);
    }

    /// Size and send time of packet `seq`, while the ring holds it.
    pub fn get(&self, seq: u16) -> Option<(usize, u64)> {
        let slot = usize::from(seq) % HISTORY;
        let meta = self.meta[slot].load(Ordering::Acquire);
        if meta == u32::MAX || meta >> 16 != u32::from(seq) {
            return None;
        }
        Some((
            (meta & 0xffff) as usize,
            self.sent_us[slot].load(Ordering::Relaxed),
        ))
    }

    /// Feeds `bwe` the packets feedback `fb` reports and then the feedback itself.
    /// `now_us` is on [`clock_epoch`]'s clock.
    pub fn apply_feedback(&self, bwe: &mut SendSideBwe, fb: &TwccFeedback<'_>, now_us: u64) {
        for p in fb.packets() {
            if let Some((size, sent)) = self.get(p.seq) {
                bwe.on_packet_sent(p.seq, size, sent);
            }
        }
        bwe.on_feedback(fb, now_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twcc::TwccRecorder;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use std::collections::VecDeque;

    const PACKET_BYTES: usize = 1200;
    const PROPAGATION_US: u64 = 20_000;
    const FEEDBACK_INTERVAL_US: u64 = 50_000;
    /// Packets queued longer than this at the bottleneck are dropped (tail drop).
    const MAX_QUEUE_US: u64 = 500_000;

    /// A sender paced at the estimate, a bottleneck link (FIFO queue at `rate_bps`,
    /// then random loss and propagation delay), a receiver sending transport feedback
    /// every 50 ms, and the feedback's way back. Everything deterministic.
    struct Simulation {
        bwe: SendSideBwe,
        recorder: TwccRecorder,
        rng: StdRng,
        now_us: u64,
        next_send_us: u64,
        seq: u16,
        link_free_us: u64,
        in_flight: VecDeque<(u16, u64)>,
        feedback: VecDeque<(u64, Vec<u8>)>,
        next_feedback_us: u64,
        rate_bps: u64,
        loss: f64,
    }

    impl Simulation {
        fn new(start_bps: u64, rate_bps: u64) -> Self {
            let mut bwe = SendSideBwe::new(BweConfig {
                start_bps,
                ..BweConfig::default()
            });
            bwe.set_rtt(2 * PROPAGATION_US);
            Self {
                bwe,
                recorder: TwccRecorder::new(),
                rng: StdRng::seed_from_u64(9),
                now_us: 1_000_000,
                next_send_us: 1_000_000,
                seq: 0,
                link_free_us: 0,
                in_flight: VecDeque::new(),
                feedback: VecDeque::new(),
                next_feedback_us: 1_000_000,
                rate_bps,
                loss: 0.0,
            }
        }

        /// Runs for `seconds` and returns the estimate sampled every 100 ms.
        fn run(&mut self, seconds: u64) -> Vec<u64> {
            let end = self.now_us + seconds * 1_000_000;
            let mut samples = Vec::new();
            while self.now_us < end {
                let now = self.now_us;
                while self.next_send_us <= now {
                    self.send(self.next_send_us);
                    let bps = self.bwe.estimate_bps().max(1);
                    self.next_send_us += (PACKET_BYTES as u64 * 8 * 1_000_000).div_ceil(bps);
                }
                while let Some(&(seq, at)) = self.in_flight.front() {
                    if at > now {
                        break;
                    }
                    self.in_flight.pop_front();
                    self.recorder.record(seq, at);
                }
                if now >= self.next_feedback_us {
                    self.next_feedback_us += FEEDBACK_INTERVAL_US;
                    while self.recorder.has_feedback() {
                        let mut buf = vec![0u8; 1200];
                        let n = self
                            .recorder
                            .build_feedback(&mut buf, 1, 2)
                            .unwrap()
                            .unwrap();
                        buf.truncate(n);
                        self.feedback.push_back((now + PROPAGATION_US, buf));
                    }
                }
                while let Some((at, _)) = self.feedback.front() {
                    if *at > now {
                        break;
                    }
                    let (_, buf) = self.feedback.pop_front().unwrap();
                    let fb = TwccFeedback::parse(&buf).unwrap();
                    self.bwe.on_feedback(&fb, now);
                }
                if now.is_multiple_of(100_000) {
                    samples.push(self.bwe.estimate_bps());
                }
                self.now_us += 1000;
            }
            samples
        }

        fn send(&mut self, at: u64) {
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            self.bwe.on_packet_sent(seq, PACKET_BYTES, at);
            let service = (PACKET_BYTES as u64 * 8 * 1_000_000).div_ceil(self.rate_bps);
            let start = self.link_free_us.max(at);
            if start - at > MAX_QUEUE_US {
                return; // Tail drop.
            }
            self.link_free_us = start + service;
            if self.rng.random_bool(self.loss) {
                return;
            }
            self.in_flight
                .push_back((seq, self.link_free_us + PROPAGATION_US));
        }
    }

    fn within(samples: &[u64], low: u64, high: u64) -> bool {
        samples.iter().all(|&s| (low..=high).contains(&s))
    }

    #[test]
    fn converges_to_the_bottleneck_from_below_and_above() {
        for start in [100_000, 1_500_000] {
            let mut sim = Simulation::new(start, 300_000);
            let samples = sim.run(60);
            let tail = &samples[samples.len() - 200..];
            assert!(
                within(tail, 210_000, 390_000),
                "start {start}: {:?}",
                &samples[..]
            );
        }
    }

    #[test]
    fn rises_when_the_bottleneck_is_lifted() {
        let mut sim = Simulation::new(300_000, 300_000);
        let before = sim.run(30);
        assert!(
            within(&before[before.len() - 50..], 210_000, 390_000),
            "{before:?}"
        );
        sim.rate_bps = 1_000_000;
        let after = sim.run(40);
        let tail = &after[after.len() - 100..];
        assert!(within(tail, 700_000, 1_300_000), "{after:?}");
    }

    #[test]
    fn drops_on_heavy_loss() {
        let mut sim = Simulation::new(300_000, 1_000_000);
        let before = *sim.run(30).last().unwrap();
        assert!(before > 600_000, "{before}");
        sim.loss = 0.2;
        let after = sim.run(10);
        let last = *after.last().unwrap();
        assert!(last < before / 2, "{before} -> {after:?}");
        assert!(sim.bwe.loss_fraction() > 0.1);
        assert!(sim.bwe.loss_based_bps() < sim.bwe.delay_based_bps());
        // Loss stops: the estimate recovers.
        sim.loss = 0.0;
        let recovered = *sim.run(30).last().unwrap();
        assert!(recovered > 2 * last, "{last} -> {recovered}");
    }

    #[test]
    fn holds_under_moderate_random_loss() {
        // Random loss that is not congestion: 5 % is within the band where the
        // loss-based part holds, so the estimate must not drift down with chance
        // bursts of it.
        for seed in 0..4 {
            let mut sim = Simulation::new(300_000, 2_000_000);
            sim.rng = StdRng::seed_from_u64(seed);
            let before = *sim.run(30).last().unwrap();
            assert!(before > 1_400_000, "{before}");
            sim.loss = 0.05;
            let during = sim.run(60);
            let low = *during.iter().min().unwrap();
            assert!(
                low > before * 8 / 10,
                "seed {seed}: {before} -> lowest {low}: {during:?}"
            );
        }
    }

    #[test]
    fn remb_sets_the_estimate_without_transport_feedback() {
        let mut bwe = SendSideBwe::new(BweConfig::default());
        assert_eq!(bwe.estimate_bps(), 300_000);
        let mut buf = [0u8; 64];
        let n = crate::rtcp::write_remb(&mut buf, 1, 850_000, &[7]).unwrap();
        let bps = remb_bitrate(&buf[..n]).unwrap();
        bwe.on_remb(bps);
        assert!((849_000..=850_000).contains(&bwe.estimate_bps()));
        bwe.on_remb(1);
        assert_eq!(bwe.estimate_bps(), BweConfig::default().min_bps);
        // Once transport feedback flows, REMB only caps.
        bwe.on_remb(100_000_000);
        let empty = [
            0x8f, 0xcd, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        bwe.on_feedback(&TwccFeedback::parse(&empty).unwrap(), 1000);
        assert_eq!(bwe.estimate_bps(), 300_000);
        bwe.on_remb(200_000);
        assert_eq!(bwe.estimate_bps(), 200_000);
        assert_eq!(remb_bitrate(&buf[..4]), None);
    }

    #[test]
    fn unknown_and_repeated_feedback_is_harmless() {
        let mut bwe = SendSideBwe::new(BweConfig::default());
        let mut rec = TwccRecorder::new();
        for s in 0..50u16 {
            bwe.on_packet_sent(s, 1000, u64::from(s) * 10_000);
            rec.record(s, 30_000 + u64::from(s) * 10_000);
        }
        // Packets never sent (sequence numbers 5000..) are skipped.
        for s in 5000..5010u16 {
            rec.record(s, 600_000 + u64::from(s));
        }
        let mut buf = [0u8; 1500];
        while rec.has_feedback() {
            let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
            let fb = TwccFeedback::parse(&buf[..n]).unwrap();
            bwe.on_feedback(&fb, 700_000);
            bwe.on_feedback(&fb, 700_000);
        }
        assert_eq!(bwe.loss_fraction(), 0.0);
        assert!(bwe.estimate_bps() >= 30_000);
    }

    #[test]
    fn round_trip_time_from_report_blocks() {
        let log = SendLog::new();
        // Reports sent at 1.0 s and 2.0 s; the subscriber answers the second 30 ms
        // after it got it, and its answer arrives at 2.080 s: 50 ms round trip.
        log.record_report(0x1111_0000, 1_000_000);
        log.record_report(0x2222_0000, 2_000_000);
        let dlsr = 30 * 65_536 / 1000;
        let rtt = log.rtt_us(0x2222_0000, dlsr, 2_080_000).unwrap();
        assert!((49_000..=51_000).contains(&rtt), "{rtt}");
        assert_eq!(
            log.rtt_us(0x3333_0000, dlsr, 2_080_000),
            None,
            "unknown report"
        );
        assert_eq!(log.rtt_us(0, 0, 2_080_000), None, "no report received yet");
        assert_eq!(
            log.rtt_us(0x2222_0000, 65_536, 2_080_000),
            None,
            "a delay longer than the time since the report"
        );
        // The ring keeps the last ones only.
        for i in 0..SR_LOG as u32 {
            log.record_report(0x4000_0000 + i, 3_000_000);
        }
        assert_eq!(log.rtt_us(0x2222_0000, dlsr, 3_080_000), None);
        let mut bwe = SendSideBwe::new(BweConfig::default());
        bwe.set_rtt(rtt);
        assert_eq!(bwe.rtt_us, rtt);
    }

    #[test]
    fn send_log_shared_by_workers_feeds_the_reading_one() {
        let log = std::sync::Arc::new(SendLog::new());
        // Two "workers" take sequence numbers from one log and record what they send.
        let seqs: Vec<u16> = (0..100).map(|_| log.next_seq()).collect();
        assert_eq!(seqs, (0..100).collect::<Vec<u16>>());
        for &s in &seqs {
            let w = if s % 2 == 0 { &log } else { &log.clone() };
            w.record(s, 1200, u64::from(s) * 1000);
        }
        assert_eq!(log.get(7), Some((1200, 7000)));
        assert_eq!(log.get(100), None, "never sent");
        // A slot reused by a later packet no longer answers for the old one.
        log.record(7 + HISTORY as u16, 500, 1);
        assert_eq!(log.get(7), None);
        let mut rec = TwccRecorder::new();
        for s in 0..100u16 {
            rec.record(s, 20_000 + u64::from(s) * 1000);
        }
        let mut bwe = SendSideBwe::new(BweConfig::default());
        let mut buf = [0u8; 1500];
        while rec.has_feedback() {
            let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
            log.apply_feedback(&mut bwe, &TwccFeedback::parse(&buf[..n]).unwrap(), 130_000);
        }
        assert!(
            bwe.acked_bps().is_some(),
            "the estimator saw the acknowledged packets"
        );
        assert_eq!(bwe.loss_fraction(), 0.0);
    }
}
