//! [`SendLog`]: what every worker sent to one subscriber, shared between them, and
//! the clock they share.
//!
//! It owns transport-wide sequence numbers and the send times behind round-trip times.
//! It must not take a lock or allocate after creation.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use super::HISTORY;
use super::estimator::{FeedbackWork, SendSideBwe};
use crate::twcc::TwccFeedback;

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
    /// `now_us` is on [`clock_epoch`]'s clock. Only the statuses of the packets the
    /// ring can still hold are read (the last [`HISTORY`] sequence numbers taken), and
    /// at most `max_statuses` of them (the newest): the work is bounded by that, not by
    /// the status count the packet claims.
    pub fn apply_feedback(
        &self,
        bwe: &mut SendSideBwe,
        fb: &TwccFeedback<'_>,
        now_us: u64,
        max_statuses: usize,
    ) -> FeedbackWork {
        let taken = self.next_seq.load(Ordering::Relaxed);
        let len = usize::try_from(taken)
            .unwrap_or(usize::MAX)
            .min(HISTORY)
            .min(max_statuses);
        let first = (taken as u16).wrapping_sub(len as u16);
        let statuses = fb.packets_in(first, len);
        let mut walk = statuses.clone();
        for p in walk.by_ref() {
            if let Some((size, sent)) = self.get(p.seq) {
                bwe.on_packet_sent(p.seq, size, sent);
            }
        }
        bwe.add_feedback_steps(walk.steps());
        let mut work = bwe.on_statuses(fb, statuses, now_us);
        work.steps += walk.steps();
        work
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bwe::BweConfig;
    use crate::twcc::TwccRecorder;

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
    fn feedback_is_read_only_as_far_as_the_log_reaches() {
        let log = SendLog::new();
        for _ in 0..5000 {
            let s = log.next_seq();
            log.record(s, 1000, u64::from(s) * 1000);
        }
        let mut bwe = SendSideBwe::new(BweConfig::default());
        let pkt = crate::bwe::estimator::tests::claims_everything(5000u16.wrapping_sub(65_535), 2);
        let fb = TwccFeedback::parse(&pkt).unwrap();
        // Both passes (the log's, the estimator's) read at most the log's 2,048.
        let work = log.apply_feedback(&mut bwe, &fb, 5_100_000, HISTORY);
        assert_eq!(work.statuses, HISTORY);
        assert!(work.steps <= 2 * (HISTORY + 32), "{work:?}");
        assert_eq!(bwe.feedback_steps(), work.steps as u64);
        // A caller with less left to spend gets the newest statuses only.
        let work = log.apply_feedback(&mut bwe, &fb, 5_100_000, 100);
        assert_eq!(work.statuses, 100);
        assert!(work.steps <= 2 * (100 + 32), "{work:?}");
        // Nothing sent yet: nothing read.
        let work = SendLog::new().apply_feedback(&mut bwe, &fb, 5_100_000, HISTORY);
        assert_eq!(work.statuses, 0);
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
            let fb = TwccFeedback::parse(&buf[..n]).unwrap();
            log.apply_feedback(&mut bwe, &fb, 130_000, HISTORY);
        }
        assert!(
            bwe.acked_bps().is_some(),
            "the estimator saw the acknowledged packets"
        );
        assert_eq!(bwe.loss_fraction(), 0.0);
    }
}
