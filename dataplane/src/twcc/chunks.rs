//! Packet status chunks of transport feedback (draft-holmer-rmcat-transport-wide-cc-
//! extensions-01 §3.1.1-3.1.4): the status symbols, the encoder that packs them into
//! the densest chunks, and the decoding of a chunk.
//!
//! It owns the chunk bit layouts. It must not know about feedback packets as a whole.

use super::{MAX_RUN, ONE_BIT_CAPACITY, TWO_BIT_CAPACITY};

/// Packet status symbols (draft §3.1.1).
pub(super) const SYMBOL_NOT_RECEIVED: u8 = 0;
pub(super) const SYMBOL_SMALL_DELTA: u8 = 1;
pub(super) const SYMBOL_LARGE_DELTA: u8 = 2;

/// Bytes of receive delta a status symbol carries.
pub(super) fn delta_size(symbol: u8) -> usize {
    match symbol {
        SYMBOL_SMALL_DELTA => 1,
        SYMBOL_LARGE_DELTA => 2,
        _ => 0,
    }
}

/// Packs status symbols into chunks, choosing for each stretch the densest encoding:
/// a run-length chunk for a run of one symbol, a one-bit vector of 14 when no large
/// delta is among them, a two-bit vector of 7 otherwise.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkEncoder {
    /// The symbols not yet emitted (only the first 14 are kept: beyond that, the
    /// pending symbols are all the same).
    pending: [u8; ONE_BIT_CAPACITY],
    len: usize,
    all_same: bool,
    has_large: bool,
    /// Chunks emitted so far.
    emitted: usize,
}

impl ChunkEncoder {
    pub(super) fn new() -> Self {
        Self {
            pending: [0; ONE_BIT_CAPACITY],
            len: 0,
            all_same: true,
            has_large: false,
            emitted: 0,
        }
    }

    /// Bytes of chunks once [`Self::finish`] has run.
    pub(super) fn bytes(&self) -> usize {
        2 * (self.emitted + usize::from(self.len > 0))
    }

    pub(super) fn can_add(&self, symbol: u8) -> bool {
        if self.len < TWO_BIT_CAPACITY {
            return true;
        }
        if self.len < ONE_BIT_CAPACITY && !self.has_large && symbol != SYMBOL_LARGE_DELTA {
            return true;
        }
        self.len < MAX_RUN && self.all_same && self.pending[0] == symbol
    }

    pub(super) fn push(&mut self, symbol: u8, out: &mut impl FnMut(u16)) {
        if !self.can_add(symbol) {
            let chunk = self.emit();
            out(chunk);
        }
        if self.len < ONE_BIT_CAPACITY {
            self.pending[self.len] = symbol;
        }
        self.all_same &= self.len == 0 || self.pending[0] == symbol;
        self.has_large |= symbol == SYMBOL_LARGE_DELTA;
        self.len += 1;
    }

    /// Emits the pending symbols as their final chunk.
    pub(super) fn finish(&mut self, out: &mut impl FnMut(u16)) {
        if self.len == 0 {
            return;
        }
        let chunk = if self.all_same {
            run_chunk(self.pending[0], self.len)
        } else if self.len <= TWO_BIT_CAPACITY {
            vector_chunk(&self.pending[..self.len], true)
        } else {
            vector_chunk(&self.pending[..self.len], false)
        };
        self.len = 0;
        self.emitted += 1;
        out(chunk);
    }

    /// Emits one chunk when the next symbol does not fit (see [`Self::can_add`]).
    pub(super) fn emit(&mut self) -> u16 {
        self.emitted += 1;
        if self.all_same {
            let chunk = run_chunk(self.pending[0], self.len);
            self.len = 0;
            return chunk;
        }
        if self.len == ONE_BIT_CAPACITY {
            let chunk = vector_chunk(&self.pending, false);
            self.len = 0;
            self.all_same = true;
            self.has_large = false;
            return chunk;
        }
        // 7 or more mixed symbols with a large delta among them (or one coming).
        let chunk = vector_chunk(&self.pending[..TWO_BIT_CAPACITY], true);
        self.pending.copy_within(TWO_BIT_CAPACITY..self.len, 0);
        self.len -= TWO_BIT_CAPACITY;
        let rest = &self.pending[..self.len];
        self.all_same = rest
            .iter()
            .all(|&s| s == rest.first().copied().unwrap_or(0));
        self.has_large = rest.contains(&SYMBOL_LARGE_DELTA);
        chunk
    }
}

/// A run-length chunk (draft §3.1.3): `0 | symbol (2) | run length (13)`.
pub(super) fn run_chunk(symbol: u8, run: usize) -> u16 {
    (u16::from(symbol) << 13) | (run.min(MAX_RUN) as u16)
}

/// A status vector chunk (draft §3.1.4): `1 | S | symbols`, S=1 for 7 two-bit symbols,
/// S=0 for 14 one-bit symbols. Missing symbols are "not received".
pub(super) fn vector_chunk(symbols: &[u8], two_bit: bool) -> u16 {
    let mut chunk = if two_bit { 0xc000 } else { 0x8000 };
    for (i, &s) in symbols.iter().enumerate() {
        if two_bit {
            chunk |= u16::from(s & 3) << (12 - 2 * i);
        } else {
            chunk |= u16::from(s & 1) << (13 - i);
        }
    }
    chunk
}

/// The symbols a chunk describes: (number of symbols, symbol at index `i`).
pub(super) fn chunk_symbol(chunk: u16, i: usize) -> u8 {
    if chunk & 0x8000 == 0 {
        ((chunk >> 13) & 3) as u8
    } else if chunk & 0x4000 == 0 {
        ((chunk >> (13 - i.min(13))) & 1) as u8
    } else {
        ((chunk >> (12 - 2 * i.min(6))) & 3) as u8
    }
}

/// Number of statuses a chunk describes (before clipping to the status count).
pub(super) fn chunk_len(chunk: u16) -> usize {
    if chunk & 0x8000 == 0 {
        usize::from(chunk & 0x1fff)
    } else if chunk & 0x4000 == 0 {
        ONE_BIT_CAPACITY
    } else {
        TWO_BIT_CAPACITY
    }
}
