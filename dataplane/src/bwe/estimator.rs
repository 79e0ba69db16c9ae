//! [`SendSideBwe`]: the estimator of the path to one subscriber. It matches transport
//! feedback with what was sent, groups packets for the delay-based controller, measures
//! the acknowledged rate, feeds the loss-based controller, and takes the smaller of
//! the two estimates (or REMB's, without transport feedback).
//!
//! It owns one subscriber's estimate. It must not be shared between workers (the
//! [`SendLog`](super::SendLog) is) or allocate after creation.

use super::delay::{Aimd, LinkCapacity, RateState, Trendline};
use super::loss::LossControl;
use super::{BandwidthUsage, BweConfig, HISTORY};
use crate::twcc::{self, PacketStatuses, TwccFeedback};

/// Packets sent within this span start one group (libwebrtc `kTimestampGroupLengthMs`).
const GROUP_SPAN_US: i64 = 5_000;
/// Packets arriving closer than this with shrinking delay join the group (a burst).
const BURST_DELTA_US: i64 = 5_000;
/// Longest burst.
const MAX_BURST_US: i64 = 100_000;
/// Acknowledged bitrate: 50 ms buckets over 500 ms.
const ACKED_BUCKET_US: u64 = 50_000;
const ACKED_BUCKETS: usize = 10;

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
    pub(super) rtt_us: u64,
    remb_bps: Option<u64>,
    twcc_seen: bool,
    /// The sequence number of the last packet recorded: feedback is read from
    /// [`HISTORY`] packets before it to it.
    last_sent: Option<u16>,
    /// Loop steps spent reading transport feedback so far.
    feedback_steps: u64,
}

/// What reading one transport feedback cost: the statuses of packets the sender may
/// still remember that were examined, and the loop steps taken (chunks, statuses and
/// skips, every pass included). Both are bounded by [`HISTORY`] and the packet's
/// length, never by the status count the packet claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackWork {
    pub statuses: usize,
    pub steps: usize,
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
            last_sent: None,
            feedback_steps: 0,
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

    /// Records a packet sent with transport-wide sequence number `seq` (in sending
    /// order).
    pub fn on_packet_sent(&mut self, seq: u16, size_bytes: usize, send_us: u64) {
        self.history[usize::from(seq) % HISTORY] = SentPacket {
            send_us,
            size: u32::try_from(size_bytes).unwrap_or(u32::MAX),
            seq,
            state: 1,
        };
        self.last_sent = Some(seq);
    }

    /// Loop steps spent reading transport feedback since creation (see
    /// [`FeedbackWork`]).
    pub fn feedback_steps(&self) -> u64 {
        self.feedback_steps
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

    /// Processes one transport feedback received at `now_us`. Only the statuses of
    /// the last [`HISTORY`] packets recorded are read: no other can match.
    pub fn on_feedback(&mut self, fb: &TwccFeedback<'_>, now_us: u64) -> FeedbackWork {
        let statuses = match self.last_sent {
            Some(last) => fb.packets_in(last.wrapping_sub(HISTORY as u16 - 1), HISTORY),
            None => fb.packets_in(fb.base_seq, 0),
        };
        self.on_statuses(fb, statuses, now_us)
    }

    /// Processes the `statuses` of feedback `fb` (all of those the sender may still
    /// remember), received at `now_us`.
    pub(super) fn on_statuses(
        &mut self,
        fb: &TwccFeedback<'_>,
        mut statuses: PacketStatuses<'_>,
        now_us: u64,
    ) -> FeedbackWork {
        let examined = statuses.remaining();
        self.twcc_seen = true;
        let reference = twcc::unwrap_reference_time(self.last_reference, fb.reference_time);
        self.last_reference = Some(reference);
        // Remote arrival times, unwrapped, relative to the first feedback.
        let shift = reference * 64_000 - fb.reference_us();
        let origin = *self.arrival_origin_us.get_or_insert(reference * 64_000);
        let (mut lost, mut total) = (0u32, 0u32);
        for status in statuses.by_ref() {
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
        self.feedback_steps += statuses.steps() as u64;
        FeedbackWork {
            statuses: examined,
            steps: statuses.steps(),
        }
    }

    /// Counts `steps` another pass over a feedback took (the send log's).
    pub(super) fn add_feedback_steps(&mut self, steps: usize) {
        self.feedback_steps += steps as u64;
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

#[cfg(test)]
pub(super) mod tests {
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

    /// A 40-byte transport feedback claiming 65,535 statuses, the last `received`
    /// of them received, from sequence number `base` on.
    pub(in crate::bwe) fn claims_everything(base: u16, received: u8) -> Vec<u8> {
        let mut p = vec![0x8f, 0xcd, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        p.extend_from_slice(&base.to_be_bytes());
        p.extend_from_slice(&65_535u16.to_be_bytes());
        p.extend_from_slice(&[0, 0, 1, 0]);
        for _ in 0..8 {
            p.extend_from_slice(&0x1fffu16.to_be_bytes());
        }
        let tail = 65_535 - 8 * 0x1fff - u16::from(received);
        p.extend_from_slice(&tail.to_be_bytes());
        p.extend_from_slice(&(0x2000 | u16::from(received)).to_be_bytes());
        p.extend(std::iter::repeat_n(4u8, usize::from(received)));
        while p.len() % 4 != 0 {
            p.push(0);
        }
        let words = (p.len() / 4 - 1) as u16;
        p[2..4].copy_from_slice(&words.to_be_bytes());
        p
    }

    #[test]
    fn feedback_claiming_every_sequence_number_costs_what_the_history_holds() {
        let mut bwe = SendSideBwe::new(BweConfig::default());
        for s in 0..3000u16 {
            bwe.on_packet_sent(s, 1000, u64::from(s) * 1000);
        }
        // Statuses for 3000 - 65,535 .. 2999: only the last 2,048 can match.
        let pkt = claims_everything(3000u16.wrapping_sub(65_535), 2);
        assert!(pkt.len() <= 44, "{} bytes", pkt.len());
        let fb = TwccFeedback::parse(&pkt).unwrap();
        assert_eq!(fb.status_count, 65_535);
        let work = bwe.on_feedback(&fb, 3_100_000);
        assert_eq!(work.statuses, HISTORY);
        assert!(work.steps <= HISTORY + 32, "{work:?}");
        assert_eq!(bwe.feedback_steps(), work.steps as u64);
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
        // Neither the repeats nor the packets never sent read as loss or overuse: the
        // path carried 800 kbit/s at a steady delay, so the estimate stays at least
        // where it started (the floor, 30 kbit/s, would hide a collapse).
        assert_eq!(bwe.loss_fraction(), 0.0);
        assert_eq!(bwe.usage(), BandwidthUsage::Normal);
        let start = BweConfig::default().start_bps;
        assert!(
            bwe.estimate_bps() >= start,
            "{} < {start}",
            bwe.estimate_bps()
        );
    }
}
