//! The retransmission cache of a video stream: its last packets, in plaintext, by
//! sequence number.
//!
//! It owns the storage, allocated once. It must not grow or allocate afterwards, or
//! know what a route is.

use crate::ids::SeqNo;

/// Packets kept per video stream for retransmission (about half a second of 2 Mbit/s).
pub(super) const CACHE_SLOTS: usize = 512;
/// Largest packet the cache keeps.
const CACHE_PACKET: usize = 1500;

/// The last [`CACHE_SLOTS`] plaintext packets of a stream, by sequence number.
/// Allocated once when the first video route appears; never again.
pub(super) struct NackCache {
    /// Sequence number held by each slot; `u32::MAX` for none.
    seqs: [u32; CACHE_SLOTS],
    lens: [u16; CACHE_SLOTS],
    data: Box<[[u8; CACHE_PACKET]; CACHE_SLOTS]>,
}

impl NackCache {
    pub(super) fn new() -> Box<Self> {
        Box::new(Self {
            seqs: [u32::MAX; CACHE_SLOTS],
            lens: [0; CACHE_SLOTS],
            data: vec![[0u8; CACHE_PACKET]; CACHE_SLOTS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("the vector has CACHE_SLOTS elements")),
        })
    }

    pub(super) fn insert(&mut self, seq: SeqNo, pkt: &[u8]) {
        if pkt.len() > CACHE_PACKET {
            return;
        }
        let seq = seq.0;
        let i = usize::from(seq) % CACHE_SLOTS;
        self.seqs[i] = u32::from(seq);
        self.lens[i] = pkt.len() as u16;
        self.data[i][..pkt.len()].copy_from_slice(pkt);
    }

    pub(super) fn get(&self, seq: SeqNo) -> Option<&[u8]> {
        let seq = seq.0;
        let i = usize::from(seq) % CACHE_SLOTS;
        (self.seqs[i] == u32::from(seq)).then(|| &self.data[i][..usize::from(self.lens[i])])
    }
}
