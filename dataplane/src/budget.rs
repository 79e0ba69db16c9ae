//! The upcall budget: how many STUN and DTLS datagrams from sources no session has
//! validated a worker hands up to control. Without the eBPF guard nothing else stands
//! between a flood of STUN/DTLS-looking datagrams and control's one queue, so each
//! worker keeps token buckets at three levels: per source (`ip:port`), per address
//! (the IP, or the /64 of an IPv6 address, so that one host cycling through its ports
//! or its /64 gets no more than one address's share), and one for all unknown sources
//! together. The first two are fixed tables indexed by a keyed hash (keys that
//! collide share a bucket). A datagram over any budget is dropped before it is
//! copied for control.
//!
//! It owns the buckets and their arithmetic, with time passed in. It must not know
//! which sources are validated (the forwarding table asks only about the others),
//! allocate after creation, or read a clock.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use cascade_command::addr::address_key;

/// Buckets in the per-source table (a power of two). 4,096 buckets of 8 bytes: 32 KiB
/// per worker.
pub const SOURCE_BUCKETS: usize = 4096;

/// A bucket holds this many units per token, so refills need no fractions.
const UNITS: u64 = 1000;

/// Rates and bursts of an [`UpcallBudget`], per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpcallBudgetConfig {
    /// Datagrams per second one source may send up...
    pub per_source_rate: u32,
    /// ...after a first burst of this many.
    pub per_source_burst: u32,
    /// Datagrams per second all sources of one address (IPv4, or IPv6 /64) may send
    /// up...
    pub per_address_rate: u32,
    /// ...after a first burst of this many.
    pub per_address_burst: u32,
    /// Datagrams per second all unknown sources together may send up...
    pub global_rate: u32,
    /// ...after a first burst of this many.
    pub global_burst: u32,
}

impl Default for UpcallBudgetConfig {
    /// A browser's ICE checks before its first success are a handful per candidate
    /// and its DTLS handshake comes from the validated address (not charged): 20 per
    /// second and source after 40 leave it ample room. 100 per second and address
    /// after 200 leave room for a few dozen browsers behind one NAT starting at once.
    /// 2,000 per second for every unknown source together, per worker, lets hundreds
    /// of sessions start each second while a flood costs control next to nothing.
    fn default() -> Self {
        Self {
            per_source_rate: 20,
            per_source_burst: 40,
            per_address_rate: 100,
            per_address_burst: 200,
            global_rate: 2000,
            global_burst: 2000,
        }
    }
}

/// One token bucket: tokens in [`UNITS`], and when it was last refilled (ms).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: u64,
    stamp_ms: u64,
}

impl Bucket {
    fn full(burst: u32) -> Self {
        Self {
            units: u64::from(burst) * UNITS,
            stamp_ms: 0,
        }
    }

    /// Adds what `rate` tokens per second earned since the last refill, up to `burst`.
    fn refill(&mut self, now_ms: u64, rate: u32, burst: u32) {
        let elapsed = now_ms.saturating_sub(self.stamp_ms);
        let cap = u64::from(burst) * UNITS;
        // rate tokens/s = rate units/ms.
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(u64::from(rate)))
            .min(cap);
        self.stamp_ms = self.stamp_ms.max(now_ms);
    }

    fn has_token(&self) -> bool {
        self.units >= UNITS
    }

    fn take(&mut self) {
        self.units -= UNITS.min(self.units);
    }
}

/// Per-source and global token buckets for upcalls from unknown sources.
pub struct UpcallBudget {
    config: UpcallBudgetConfig,
    hasher: std::hash::RandomState,
    sources: Box<[Bucket; SOURCE_BUCKETS]>,
    addresses: Box<[Bucket; SOURCE_BUCKETS]>,
    global: Bucket,
}

impl std::fmt::Debug for UpcallBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpcallBudget")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for UpcallBudget {
    fn default() -> Self {
        Self::new(UpcallBudgetConfig::default())
    }
}

impl UpcallBudget {
    /// Full buckets (allocated once). The hash key is random per budget, so a sender
    /// cannot choose addresses that share a bucket with someone else's.
    pub fn new(config: UpcallBudgetConfig) -> Self {
        Self {
            config,
            hasher: std::hash::RandomState::new(),
            sources: Box::new([Bucket::full(config.per_source_burst); SOURCE_BUCKETS]),
            addresses: Box::new([Bucket::full(config.per_address_burst); SOURCE_BUCKETS]),
            global: Bucket::full(config.global_burst),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> UpcallBudgetConfig {
        self.config
    }

    /// Whether a datagram from `from` may go up at `now_ms` (milliseconds on any
    /// monotonic clock); takes a token from its source's, its address's and the
    /// global bucket when it may, none when it may not.
    pub fn admit(&mut self, from: SocketAddr, now_ms: u64) -> bool {
        let c = self.config;
        let i = (self.hasher.hash_one(from) as usize) & (SOURCE_BUCKETS - 1);
        let source = &mut self.sources[i];
        source.refill(now_ms, c.per_source_rate, c.per_source_burst);
        if !source.has_token() {
            return false;
        }
        // The address (IPv4, or IPv6 /64) hashes apart from the source's `ip:port`,
        // so a source's and its address's buckets are not tied to the same index.
        let j = (self.hasher.hash_one(address_key(from.ip())) as usize) & (SOURCE_BUCKETS - 1);
        let address = &mut self.addresses[j];
        address.refill(now_ms, c.per_address_rate, c.per_address_burst);
        if !address.has_token() {
            return false;
        }
        self.global.refill(now_ms, c.global_rate, c.global_burst);
        if !self.global.has_token() {
            return false;
        }
        source.take();
        address.take();
        self.global.take();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from((i.to_be_bytes(), 40_000 + (i % 1000) as u16))
    }

    fn small() -> UpcallBudgetConfig {
        UpcallBudgetConfig {
            per_source_rate: 10,
            per_source_burst: 5,
            per_address_rate: 1000,
            per_address_burst: 1000,
            global_rate: 100,
            global_burst: 50,
        }
    }

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let mut b = UpcallBudget::new(small());
        let a = addr(1);
        let burst = (0..100).filter(|_| b.admit(a, 0)).count();
        assert_eq!(burst, 5);
        // 10 per second: one token every 100 ms.
        assert!(!b.admit(a, 99));
        assert!(b.admit(a, 100));
        assert!(!b.admit(a, 150));
        // A second with nothing sent refills up to the burst, not beyond.
        let after = (0..100).filter(|_| b.admit(a, 5_000)).count();
        assert_eq!(after, 5);
        // Another source has its own bucket.
        assert!(b.admit(addr(2), 5_000));
    }

    #[test]
    fn many_sources_are_cut_to_the_global_budget() {
        let mut b = UpcallBudget::new(small());
        // 1,000 sources, 3 datagrams each, over one second.
        let mut admitted = 0;
        for round in 0..3u64 {
            for i in 0..1000 {
                admitted += usize::from(b.admit(addr(i), round * 500));
            }
        }
        // The burst (50) plus 100 per second for the 1 s the flood lasted.
        assert!((50..=150).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_refused_datagram_costs_no_global_token() {
        let mut b = UpcallBudget::new(small());
        let a = addr(7);
        for _ in 0..1000 {
            b.admit(a, 0);
        }
        // The one noisy source used 5 of the 50 global tokens, not 1,000 (a source
        // whose bucket happens to be the noisy one's is refused too: a few at most).
        let others = (100..200).filter(|&i| b.admit(addr(i), 0)).count();
        assert!((40..=45).contains(&others), "{others}");
    }

    #[test]
    fn one_address_cycling_through_ports_gets_one_addresss_share() {
        let mut b = UpcallBudget::new(UpcallBudgetConfig {
            per_source_rate: 10,
            per_source_burst: 5,
            per_address_rate: 20,
            per_address_burst: 30,
            global_rate: 10_000,
            global_burst: 10_000,
        });
        let port = |p: u16| SocketAddr::from(([198, 51, 100, 9], p));
        // 2,000 ports, 2 datagrams each, over one second.
        let mut admitted = 0;
        for round in 0..2u64 {
            for p in 0..2000 {
                admitted += usize::from(b.admit(port(10_000 + p), round * 1000));
            }
        }
        // The address's burst (30) plus 20 per second for the second it lasted.
        assert!((30..=50).contains(&admitted), "{admitted}");
        // Other addresses keep their share: each gets its source burst.
        let other = (0..5)
            .filter(|_| b.admit(SocketAddr::from(([198, 51, 100, 10], 5000)), 1000))
            .count();
        assert_eq!(other, 5);
        // An IPv6 host cycling through its /64 is one address too.
        let v6 = |i: u16| SocketAddr::from(([0x2001, 0xdb8, 0, 1, 0, 0, 0, i], 4000));
        let admitted = (0..1000).filter(|&i| b.admit(v6(i), 2000)).count();
        assert_eq!(admitted, 30);
        // ... while the next /64 is another.
        let next = SocketAddr::from(([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1], 4000));
        assert!(b.admit(next, 2000));
    }
}
