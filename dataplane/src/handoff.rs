//! Work one worker hands to another.
//!
//! A peer's packets reach the worker its 4-tuple hashes to (or the one eBPF steers
//! it to), so a publisher's media and a subscriber's RTCP may land on different
//! workers. The NACK cache and the layer rewriters of a publisher's streams live on
//! the worker that receives its media (its *home*), so a NACK that arrives anywhere
//! else is handed there. [`Homes`] records each publisher's home; [`NackHandoff`] is
//! the message, fixed-size and `Copy`, sent over a bounded channel: no allocation and
//! no lock on the way.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::command::SessionId;
use crate::ids::Ssrc;

/// Slots of the home table. A session's slot is its index in the forwarding table,
/// the same on every worker (they apply the same commands in the same order) and
/// reused only once the session is gone, so live sessions share a slot only beyond
/// this many at once; a shared slot costs hand-offs that are answered where they land.
const HOME_SLOTS: usize = 65_536;

/// Most sequence numbers one hand-off carries (a longer NACK is split).
pub const HANDOFF_SEQS: usize = 32;

/// Which worker receives each publisher's media, shared by all workers.
#[derive(Debug)]
pub struct Homes {
    /// `session << 16 | (worker + 1)`; 0 for none.
    slots: Box<[AtomicU64]>,
}

impl Default for Homes {
    fn default() -> Self {
        Self {
            slots: (0..HOME_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Homes {
    fn slot(&self, index: usize) -> &AtomicU64 {
        &self.slots[index % HOME_SLOTS]
    }

    fn pack(session: SessionId, worker: u32) -> u64 {
        (session.0 << 16) | u64::from((worker & 0xffff) + 1)
    }

    /// Notes that `worker` receives the media of `session`, at `index` in the
    /// forwarding table. A load, and a store only when it changed.
    #[inline]
    pub fn set(&self, index: usize, session: SessionId, worker: u32) {
        let v = Self::pack(session, worker);
        let slot = self.slot(index);
        if slot.load(Ordering::Relaxed) != v {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// The worker that last received the media of `session` (at `index`), if known.
    #[inline]
    pub fn get(&self, index: usize, session: SessionId) -> Option<u32> {
        let v = self.slot(index).load(Ordering::Relaxed);
        let worker = (v & 0xffff) as u32;
        (worker != 0 && v >> 16 == session.0 & (u64::MAX >> 16)).then(|| worker - 1)
    }
}

/// A subscriber's NACK, for the worker that holds the publisher's cache.
#[derive(Debug, Clone, Copy)]
pub struct NackHandoff {
    /// The subscriber (or cascade edge) session that asked.
    pub subscriber: SessionId,
    /// The media SSRC of the NACK, as the subscriber knows the stream.
    pub subscriber_ssrc: Ssrc,
    len: u8,
    seqs: [u16; HANDOFF_SEQS],
}

impl NackHandoff {
    /// A hand-off of up to [`HANDOFF_SEQS`] of `seqs`; returns it and how many it took.
    pub fn new(subscriber: SessionId, subscriber_ssrc: Ssrc, seqs: &[u16]) -> (Self, usize) {
        let n = seqs.len().min(HANDOFF_SEQS);
        let mut h = Self {
            subscriber,
            subscriber_ssrc,
            len: n as u8,
            seqs: [0; HANDOFF_SEQS],
        };
        h.seqs[..n].copy_from_slice(&seqs[..n]);
        (h, n)
    }

    /// The lost sequence numbers.
    pub fn seqs(&self) -> &[u16] {
        &self.seqs[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homes_remember_the_last_worker_and_ignore_collisions() {
        let h = Homes::default();
        assert_eq!(h.get(2, SessionId(7)), None);
        h.set(2, SessionId(7), 1);
        assert_eq!(h.get(2, SessionId(7)), Some(1));
        h.set(2, SessionId(7), 0);
        assert_eq!(h.get(2, SessionId(7)), Some(0));
        // Session ids far apart on different table slots do not meet.
        h.set(3, SessionId(7 + 65_536), 1);
        assert_eq!(h.get(2, SessionId(7)), Some(0));
        assert_eq!(h.get(3, SessionId(7 + 65_536)), Some(1));
        // The slot's next session replaces the gone one; neither is misread.
        h.set(2, SessionId(9), 3);
        assert_eq!(h.get(2, SessionId(7)), None);
        assert_eq!(h.get(2, SessionId(9)), Some(3));
    }

    #[test]
    fn long_nacks_are_split() {
        let seqs: Vec<u16> = (0..40).collect();
        let (a, n) = NackHandoff::new(SessionId(3), Ssrc(9), &seqs);
        assert_eq!(n, HANDOFF_SEQS);
        assert_eq!(a.seqs(), &seqs[..HANDOFF_SEQS]);
        let (b, m) = NackHandoff::new(SessionId(3), Ssrc(9), &seqs[n..]);
        assert_eq!(m, 8);
        assert_eq!(b.seqs(), &seqs[HANDOFF_SEQS..]);
    }
}
