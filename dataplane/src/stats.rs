//! Per-worker packet counters. Workers count into plain local fields and publish them
//! to shared relaxed atomics once per batch, so counting costs no atomic operation per
//! packet; control reads the atomics when `/metrics` is scraped.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why the data plane dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Media from an address that is not an installed session.
    UnknownSource,
    /// Not STUN, DTLS, RTP or RTCP (RFC 7983), or a header that does not parse.
    Malformed,
    /// SRTP/SRTCP authentication failed.
    AuthFailed,
    /// SRTP/SRTCP replay.
    Replayed,
    /// RTP with an SSRC or payload type nobody routes.
    NoRoute,
    /// STUN/DTLS could not be handed to control (control is overloaded).
    ControlBusy,
    /// A NACK could not be handed to the worker that holds its stream's cache (that
    /// worker's inbox was full).
    WorkerBusy,
    /// The kernel refused a send.
    SendFailed,
    /// STUN/DTLS from a source no session validated, over its source's or every
    /// unknown source's budget ([`crate::budget`]).
    UpcallBudget,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::UnknownSource,
        DropReason::Malformed,
        DropReason::AuthFailed,
        DropReason::Replayed,
        DropReason::NoRoute,
        DropReason::ControlBusy,
        DropReason::WorkerBusy,
        DropReason::SendFailed,
        DropReason::UpcallBudget,
    ];

    /// The `reason` label in `/metrics`.
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::UnknownSource => "unknown_source",
            DropReason::Malformed => "malformed",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Replayed => "replayed",
            DropReason::NoRoute => "no_route",
            DropReason::ControlBusy => "control_busy",
            DropReason::WorkerBusy => "worker_busy",
            DropReason::SendFailed => "send_failed",
            DropReason::UpcallBudget => "upcall_budget",
        }
    }
}

const DROP_REASONS: usize = DropReason::ALL.len();

/// Counters a worker accumulates between two publications.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Packets resent from the NACK cache.
    pub retransmitted: u64,
    /// Packets copied unchanged to cascade peers.
    pub relayed: u64,
    /// Packets a cascade edge lost on the way and got again from this server's cache.
    pub relay_recovered: u64,
    pub drops: [u64; DROP_REASONS],
}

impl LocalStats {
    #[inline]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}

/// The shared, readable side of one worker's counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    retransmitted: AtomicU64,
    relayed: AtomicU64,
    relay_recovered: AtomicU64,
    drops: [AtomicU64; DROP_REASONS],
}

impl WorkerStats {
    /// Adds `local` to the shared counters and resets it.
    pub fn publish(&self, local: &mut LocalStats) {
        let add = |a: &AtomicU64, v: u64| {
            if v != 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&self.packets_in, local.packets_in);
        add(&self.bytes_in, local.bytes_in);
        add(&self.packets_out, local.packets_out);
        add(&self.bytes_out, local.bytes_out);
        add(&self.retransmitted, local.retransmitted);
        add(&self.relayed, local.relayed);
        add(&self.relay_recovered, local.relay_recovered);
        for (a, v) in self.drops.iter().zip(local.drops) {
            add(a, v);
        }
        *local = LocalStats::default();
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> LocalStats {
        let mut s = LocalStats {
            packets_in: self.packets_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            packets_out: self.packets_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            retransmitted: self.retransmitted.load(Ordering::Relaxed),
            relayed: self.relayed.load(Ordering::Relaxed),
            relay_recovered: self.relay_recovered.load(Ordering::Relaxed),
            drops: [0; DROP_REASONS],
        };
        for (d, a) in s.drops.iter_mut().zip(&self.drops) {
            *d = a.load(Ordering::Relaxed);
        }
        s
    }
}

/// Sums snapshots of several workers.
pub fn sum<'a>(stats: impl IntoIterator<Item = &'a WorkerStats>) -> LocalStats {
    let mut total = LocalStats::default();
    for w in stats {
        let s = w.snapshot();
        total.packets_in += s.packets_in;
        total.bytes_in += s.bytes_in;
        total.packets_out += s.packets_out;
        total.bytes_out += s.bytes_out;
        total.retransmitted += s.retransmitted;
        total.relayed += s.relayed;
        total.relay_recovered += s.relay_recovered;
        for (t, d) in total.drops.iter_mut().zip(s.drops) {
            *t += d;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_adds_and_resets() {
        let shared = WorkerStats::default();
        let mut local = LocalStats {
            packets_in: 3,
            bytes_in: 300,
            ..Default::default()
        };
        local.drop(DropReason::Replayed);
        shared.publish(&mut local);
        assert_eq!(local.packets_in, 0);
        local.packets_in = 2;
        shared.publish(&mut local);
        let s = sum([&shared, &shared]);
        assert_eq!(s.packets_in, 10);
        assert_eq!(s.bytes_in, 600);
        assert_eq!(s.drops[DropReason::Replayed as usize], 2);
    }

    #[test]
    fn every_reason_has_its_own_counter_and_label() {
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "{r:?} counts in its own slot");
        }
        let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::ALL.len());
    }
}
