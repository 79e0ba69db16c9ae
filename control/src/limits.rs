//! What the HTTP side of `cascade serve` bounds, and the counters that bound it:
//! timeouts of the listener, caps on open connections and event streams (in total
//! and per client address) and on `resource=` parameters. Session caps live in the
//! core ([`cascade_core::sfu::SessionLimits`]); this module only carries their
//! per-client settings from the configuration.
//!
//! The per-address count is a small map under a mutex, touched once per accepted
//! connection or opened event stream (never per request or per packet): tower's
//! `ConcurrencyLimit` and tokio's `Semaphore` cap a total, not a count per key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cascade_core::sfu::address_key;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Timeouts and caps of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to send a request's headers (and a TLS handshake); an idle HTTP/1
    /// keep-alive connection is closed after it too.
    pub header_timeout: Duration,
    /// Time to send a whole request body.
    pub body_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Time a write to the client may stay blocked (the client reads nothing, so its
    /// window stays full) before the connection is closed.
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_event_streams: usize,
    pub max_event_streams_per_ip: usize,
    /// Most `resource=` parameters in one subscribe.
    pub max_subscribe_resources: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 256,
            max_event_streams: 1024,
            max_event_streams_per_ip: 32,
            max_subscribe_resources: 32,
        }
    }
}

/// Per-client session caps (the server-wide ones are [`crate::config::Capacity`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCaps {
    /// Sessions one token subject may hold.
    pub per_subject: Option<usize>,
    /// Sessions created from one client address.
    pub per_ip: Option<usize>,
}

/// Why [`OpenCap::try_acquire`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The total is reached.
    Total,
    /// The client's address holds its share.
    PerAddress,
}

/// A cap on things open at once (connections, event streams): in total and per
/// client address (IPv6 counted by /64).
#[derive(Debug, Clone)]
pub struct OpenCap {
    total: Arc<Semaphore>,
    max_total: usize,
    per_address: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open thing; dropping it frees its place.
#[derive(Debug)]
pub struct OpenPermit {
    _total: OwnedSemaphorePermit,
    address: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for OpenPermit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

impl OpenCap {
    pub fn new(max_total: usize, per_address: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max_total.min(Semaphore::MAX_PERMITS))),
            max_total: max_total.min(Semaphore::MAX_PERMITS),
            per_address,
            counts: Arc::default(),
        }
    }

    /// A place for one more from `ip`, unless a cap is reached.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<OpenPermit, Refusal> {
        let address = address_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(address).or_insert(0);
        if *n >= self.per_address {
            if *n == 0 {
                counts.remove(&address);
            }
            return Err(Refusal::PerAddress);
        }
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        *n += 1;
        Ok(OpenPermit {
            _total: total,
            address,
            counts: self.counts.clone(),
        })
    }

    /// How many are open.
    pub fn open(&self) -> usize {
        self.max_total - self.total.available_permits()
    }

    /// Resolves once nothing is open any more, or after `limit`.
    pub async fn drained(&self, limit: Duration) {
        let all = u32::try_from(self.max_total).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.total.acquire_many(all)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_total_and_per_address() {
        let cap = OpenCap::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = cap.try_acquire(a).unwrap();
        let _a2 = cap.try_acquire(a).unwrap();
        assert_eq!(cap.try_acquire(a).unwrap_err(), Refusal::PerAddress);
        let _b1 = cap.try_acquire(b).unwrap();
        assert_eq!(cap.try_acquire(b).unwrap_err(), Refusal::Total);
        assert_eq!(cap.open(), 3);
        drop(a1);
        assert_eq!(cap.open(), 2);
        let _a3 = cap.try_acquire(a).unwrap();
        // A refusal for the total leaves the address's count as it was.
        assert_eq!(cap.try_acquire(b).unwrap_err(), Refusal::Total);
        assert_eq!(cap.counts.lock().unwrap().get(&b), Some(&1));
    }

    #[test]
    fn ipv6_neighbours_share_a_place() {
        let cap = OpenCap::new(10, 1);
        let _p = cap.try_acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            cap.try_acquire("2001:db8::2".parse().unwrap()).unwrap_err(),
            Refusal::PerAddress
        );
        assert!(cap.try_acquire("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }
}
