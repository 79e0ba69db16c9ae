//! Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01):
//! the transport-wide sequence number header extension (read, overwrite, insert), a
//! receiver-side [`TwccRecorder`] that turns packet arrivals into RTCP transport-feedback
//! packets (RTPFB, PT=205, FMT=15), and a zero-copy parser of such feedback
//! ([`TwccFeedback`]) for the sending side.
//!
//! Everything is sans-IO: times are microseconds on a monotonic clock of the caller's
//! choosing, output goes into buffers the caller supplies, memory is fixed when an object
//! is created and nothing allocates per packet. Input from the network never panics; it
//! gives a typed error. This module does not decide when to send feedback or what the
//! feedback means for the send rate (see `bwe`), and it finds header-extension elements
//! with [`rtp::extension_element`] rather than parsing them again.

use crate::rtcp::{self, FMT_TRANSPORT_CC, PT_RTPFB, RtcpError, RtcpKind};
use crate::rtp::{self, ONE_BYTE_PROFILE, RtpError, RtpHeader};

/// The `a=extmap` URI of the transport-wide sequence number header extension.
pub const EXTENSION_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Sequence numbers a [`TwccRecorder`] remembers: arrivals further behind the newest
/// packet than this are forgotten (and never reported).
pub const RECORDER_WINDOW: usize = 2048;

/// Length of a feedback packet's fixed part: RTCP header, two SSRCs, base sequence
/// number, status count, reference time and feedback packet count.
const FIXED_LEN: usize = 20;
/// The smallest buffer [`TwccRecorder::build_feedback`] accepts: the fixed part, a run
/// of losses, one more chunk and a large delta, padded.
pub const MIN_FEEDBACK_LEN: usize = 28;
/// Offset of the first packet chunk in the FCI (after the two SSRCs).
const FCI_FIXED_LEN: usize = 8;
/// Resolution of a receive delta (draft §3.1.5).
const DELTA_UNIT_US: i64 = 250;
/// Resolution of the reference time (draft §3.1).
const REFERENCE_UNIT_US: i64 = 64_000;
/// The reference time is a 24-bit field.
const REFERENCE_MODULUS: i64 = 1 << 24;
/// Largest run a run-length chunk can carry (13 bits).
const MAX_RUN: usize = 0x1fff;
/// Symbols in a one-bit and in a two-bit status vector chunk.
const ONE_BIT_CAPACITY: usize = 14;
const TWO_BIT_CAPACITY: usize = 7;
/// Stored in [`TwccRecorder`] slots for sequence numbers that did not arrive.
const NOT_RECEIVED: u64 = u64::MAX;

/// Packet status symbols (draft §3.1.1).
const SYMBOL_NOT_RECEIVED: u8 = 0;
const SYMBOL_SMALL_DELTA: u8 = 1;
const SYMBOL_LARGE_DELTA: u8 = 2;

/// Why a header extension could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// The packet is not a valid RTP packet.
    #[error(transparent)]
    Rtp(#[from] RtpError),
    /// Id 0 (and 15 in the one-byte form) cannot name an element.
    #[error("header extension id {0} cannot name an element")]
    BadId(u8),
    /// The packet's extension block is neither RFC 8285 form, or its one-byte form
    /// cannot hold this id, or it ends with an element that overruns the block.
    #[error("header extension block cannot take the element")]
    UnsupportedBlock,
    /// An element with this id is there, with another length.
    #[error("existing header extension element has length {0}")]
    LengthMismatch(usize),
    /// The buffer has no room to grow the header.
    #[error("buffer too small to insert the header extension")]
    BufferTooSmall,
}

/// Why a transport-feedback packet could not be parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TwccError {
    /// The RTCP framing is invalid.
    #[error(transparent)]
    Rtcp(#[from] RtcpError),
    /// The RTCP packet is not RTPFB/FMT=15.
    #[error("not a transport-wide congestion-control feedback packet")]
    NotTransportCc,
    /// Shorter than the fixed part (base sequence number to feedback packet count).
    #[error("transport feedback shorter than its fixed part")]
    TooShort,
    /// The packet chunks end before `packet status count` statuses are described.
    #[error("transport feedback chunks describe fewer packets than announced")]
    TruncatedChunks,
    /// The receive deltas the statuses announce run past the end of the packet.
    #[error("transport feedback receive deltas run past the end of the packet")]
    TruncatedDeltas,
    /// Status symbol 11, reserved by the draft (and rejected by libwebrtc).
    #[error("reserved packet status symbol in transport feedback")]
    ReservedSymbol,
    /// The output buffer cannot hold even a one-packet feedback.
    #[error("buffer too small for a transport feedback packet")]
    BufferTooSmall,
}

// --- Header extension --------------------------------------------------------------

/// The transport-wide sequence number carried in extension element `ext_id` of `pkt`
/// (whose header is `hdr`), in either RFC 8285 form. `None` when the element is absent
/// or is not two bytes long.
pub fn transport_seq(pkt: &[u8], hdr: &RtpHeader, ext_id: u8) -> Option<u16> {
    match rtp::extension_element(pkt, hdr, ext_id)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Stamps transport-wide sequence number `seq` into element `ext_id` of the plaintext
/// RTP packet in `buf[..len]` and returns the packet's new length.
///
/// An existing two-byte element is overwritten in place. Otherwise the element is added:
/// into the extension block's trailing padding when it fits, else by growing the block
/// (or adding one, one-byte form for ids up to 14, two-byte form above) and moving the
/// payload back; `buf` must then have room beyond `len`. On error `buf` is unchanged.
pub fn set_transport_seq(
    buf: &mut [u8],
    len: usize,
    ext_id: u8,
    seq: u16,
) -> Result<usize, ExtensionError> {
    set_element(buf, len, ext_id, &seq.to_be_bytes())
}

/// Writes extension element `id` with `data` (1..=16 bytes) into the packet in
/// `buf[..len]`; see [`set_transport_seq`].
fn set_element(buf: &mut [u8], len: usize, id: u8, data: &[u8]) -> Result<usize, ExtensionError> {
    let pkt = buf.get(..len).ok_or(ExtensionError::BufferTooSmall)?;
    let hdr = rtp::parse_header(pkt)?;
    if id == 0 {
        return Err(ExtensionError::BadId(id));
    }
    if let Some(existing) = rtp::extension_element(pkt, &hdr, id) {
        if existing.len() != data.len() {
            return Err(ExtensionError::LengthMismatch(existing.len()));
        }
        // `existing` borrows from `pkt`, so its address lies within `pkt`.
        let at = existing.as_ptr() as usize - pkt.as_ptr() as usize;
        buf[at..at + data.len()].copy_from_slice(data);
        return Ok(len);
    }
    let Some(ext) = hdr.extension else {
        // No block yet: add one after the CSRCs.
        let two_byte = id > 14;
        let element_len = data.len() + if two_byte { 2 } else { 1 };
        let block_len = element_len.next_multiple_of(4);
        let grow = 4 + block_len;
        let at = hdr.header_len;
        if len + grow > buf.len() {
            return Err(ExtensionError::BufferTooSmall);
        }
        buf.copy_within(at..len, at + grow);
        let profile = if two_byte { 0x1000 } else { ONE_BYTE_PROFILE };
        buf[at..at + 2].copy_from_slice(&profile.to_be_bytes());
        // block_len <= 20, so the word count fits.
        buf[at + 2..at + 4].copy_from_slice(&((block_len / 4) as u16).to_be_bytes());
        let written = write_element(&mut buf[at + 4..at + 4 + block_len], two_byte, id, data);
        buf[at + 4 + written..at + 4 + block_len].fill(0);
        buf[0] |= 0x10;
        return Ok(len + grow);
    };
    let two_byte = if ext.profile == ONE_BYTE_PROFILE {
        if id > 14 {
            return Err(ExtensionError::BadId(id));
        }
        false
    } else if ext.profile & 0xfff0 == 0x1000 {
        true
    } else {
        return Err(ExtensionError::UnsupportedBlock);
    };
    let block = pkt
        .get(ext.range())
        .ok_or(ExtensionError::UnsupportedBlock)?;
    let used = used_len(block, two_byte).ok_or(ExtensionError::UnsupportedBlock)?;
    let element_len = data.len() + if two_byte { 2 } else { 1 };
    if ext.len - used >= element_len {
        // Trailing padding (all zero, or it would have parsed as elements) has room.
        write_element(
            &mut buf[ext.offset + used..ext.range().end],
            two_byte,
            id,
            data,
        );
        return Ok(len);
    }
    let new_block_len = (used + element_len).next_multiple_of(4);
    let words = u16::try_from(new_block_len / 4).map_err(|_| ExtensionError::UnsupportedBlock)?;
    let grow = new_block_len - ext.len;
    let end = ext.range().end;
    if len + grow > buf.len() {
        return Err(ExtensionError::BufferTooSmall);
    }
    buf.copy_within(end..len, end + grow);
    let block = &mut buf[ext.offset..ext.offset + new_block_len];
    let written = write_element(&mut block[used..], two_byte, id, data);
    block[used + written..].fill(0);
    buf[ext.offset - 2..ext.offset].copy_from_slice(&words.to_be_bytes());
    Ok(len + grow)
}

/// Writes one element at the start of `out` (which has room) and returns its length.
fn write_element(out: &mut [u8], two_byte: bool, id: u8, data: &[u8]) -> usize {
    let head = if two_byte {
        out[0] = id;
        // data is at most 16 bytes.
        out[1] = data.len() as u8;
        2
    } else {
        out[0] = (id << 4) | (data.len() as u8 - 1);
        1
    };
    out[head..head + data.len()].copy_from_slice(data);
    head + data.len()
}

/// Bytes of an extension block up to the end of its last element (the rest is
/// padding). `None` when an element overruns the block or, in the one-byte form, id 15
/// ends parsing (elements written after it would be ignored).
fn used_len(block: &[u8], two_byte: bool) -> Option<usize> {
    let mut used = 0;
    let mut i = 0;
    while let Some(&b) = block.get(i) {
        if b == 0 {
            i += 1;
            continue;
        }
        let end = if two_byte {
            i + 2 + usize::from(*block.get(i + 1)?)
        } else if b >> 4 == 15 {
            return None;
        } else {
            i + 2 + usize::from(b & 0x0f)
        };
        if end > block.len() {
            return None;
        }
        used = end;
        i = end;
    }
    Some(used)
}

// --- Status chunks ------------------------------------------------------------------

/// Bytes of receive delta a status symbol carries.
fn delta_size(symbol: u8) -> usize {
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
struct ChunkEncoder {
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
    fn new() -> Self {
        Self {
            pending: [0; ONE_BIT_CAPACITY],
            len: 0,
            all_same: true,
            has_large: false,
            emitted: 0,
        }
    }

    /// Bytes of chunks once [`Self::finish`] has run.
    fn bytes(&self) -> usize {
        2 * (self.emitted + usize::from(self.len > 0))
    }

    fn can_add(&self, symbol: u8) -> bool {
        if self.len < TWO_BIT_CAPACITY {
            return true;
        }
        if self.len < ONE_BIT_CAPACITY && !self.has_large && symbol != SYMBOL_LARGE_DELTA {
            return true;
        }
        self.len < MAX_RUN && self.all_same && self.pending[0] == symbol
    }

    fn push(&mut self, symbol: u8, out: &mut impl FnMut(u16)) {
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
    fn finish(&mut self, out: &mut impl FnMut(u16)) {
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
    fn emit(&mut self) -> u16 {
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
fn run_chunk(symbol: u8, run: usize) -> u16 {
    (u16::from(symbol) << 13) | (run.min(MAX_RUN) as u16)
}

/// A status vector chunk (draft §3.1.4): `1 | S | symbols`, S=1 for 7 two-bit symbols,
/// S=0 for 14 one-bit symbols. Missing symbols are "not received".
fn vector_chunk(symbols: &[u8], two_bit: bool) -> u16 {
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
fn chunk_symbol(chunk: u16, i: usize) -> u8 {
    if chunk & 0x8000 == 0 {
        ((chunk >> 13) & 3) as u8
    } else if chunk & 0x4000 == 0 {
        ((chunk >> (13 - i.min(13))) & 1) as u8
    } else {
        ((chunk >> (12 - 2 * i.min(6))) & 3) as u8
    }
}

/// Number of statuses a chunk describes (before clipping to the status count).
fn chunk_len(chunk: u16) -> usize {
    if chunk & 0x8000 == 0 {
        usize::from(chunk & 0x1fff)
    } else if chunk & 0x4000 == 0 {
        ONE_BIT_CAPACITY
    } else {
        TWO_BIT_CAPACITY
    }
}

// --- Receiver side ------------------------------------------------------------------

/// Receiver side of transport-wide congestion control for one media sender (a
/// publisher): remembers when each transport-wide sequence number arrived and writes
/// transport-feedback packets covering what has not been reported yet.
///
/// Sequence numbers are unwrapped against the newest one seen. The window is
/// [`RECORDER_WINDOW`] sequence numbers behind the newest: older packets are ignored,
/// and unreported ones that fall out of it are never reported. A packet that arrives
/// after its sequence number was reported (as lost) is reported again in the next
/// feedback, with the ones after it, as libwebrtc does. Two consecutive packets far
/// outside the window are taken as a sender restart.
#[derive(Debug, Clone)]
pub struct TwccRecorder {
    /// Arrival time (µs) per unwrapped sequence number modulo the window.
    arrivals: Box<[u64]>,
    /// Newest unwrapped sequence number; `None` before the first packet.
    newest: Option<i64>,
    /// First unwrapped sequence number the next feedback covers.
    next_base: i64,
    /// The sequence number that would confirm a restart.
    restart_seq: Option<u16>,
    /// A received packet may await feedback.
    pending: bool,
    feedback_count: u8,
}

impl Default for TwccRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl TwccRecorder {
    /// A recorder that has seen no packet (allocates its window once).
    pub fn new() -> Self {
        Self {
            arrivals: vec![NOT_RECEIVED; RECORDER_WINDOW].into_boxed_slice(),
            newest: None,
            next_base: 0,
            restart_seq: None,
            pending: false,
            feedback_count: 0,
        }
    }

    fn slot(ext: i64) -> usize {
        ext.rem_euclid(RECORDER_WINDOW as i64) as usize
    }

    fn restart(&mut self, seq: u16) {
        self.arrivals.fill(NOT_RECEIVED);
        self.newest = Some(i64::from(seq));
        self.next_base = i64::from(seq);
        self.restart_seq = None;
        self.pending = true;
    }

    /// Records that transport-wide sequence number `seq` arrived at `arrival_us`.
    /// Returns false when the packet is ignored: a duplicate, or too old for the window.
    pub fn record(&mut self, seq: u16, arrival_us: u64) -> bool {
        let arrival_us = arrival_us.min(NOT_RECEIVED - 1);
        let newest = match self.newest {
            Some(n) => n,
            None => {
                self.restart(seq);
                self.arrivals[Self::slot(i64::from(seq))] = arrival_us;
                return true;
            }
        };
        let ext = newest + i64::from(rtp::seq_diff(seq, newest as u16));
        let window = RECORDER_WINDOW as i64;
        if ext <= newest - window {
            if self.restart_seq == Some(seq) {
                self.restart(seq);
                self.arrivals[Self::slot(i64::from(seq))] = arrival_us;
                return true;
            }
            self.restart_seq = Some(seq.wrapping_add(1));
            return false;
        }
        self.restart_seq = None;
        if ext > newest {
            // Forget what the window no longer holds.
            for e in (newest + 1).max(ext - window + 1)..=ext {
                self.arrivals[Self::slot(e)] = NOT_RECEIVED;
            }
            self.newest = Some(ext);
            self.next_base = self.next_base.max(ext - window + 1);
        }
        let slot = &mut self.arrivals[Self::slot(ext)];
        if *slot != NOT_RECEIVED {
            return false;
        }
        *slot = arrival_us;
        self.next_base = self.next_base.min(ext);
        self.pending = true;
        true
    }

    /// True when a received packet awaits feedback.
    pub fn has_feedback(&self) -> bool {
        self.pending
    }

    /// The first unreported received packet's unwrapped sequence number and arrival.
    fn first_unreported(&self) -> Option<(i64, u64)> {
        let newest = self.newest?;
        (self.next_base..=newest)
            .map(|e| (e, self.arrivals[Self::slot(e)]))
            .find(|&(_, t)| t != NOT_RECEIVED)
    }

    /// Writes one transport-feedback packet into `buf` and returns its length, or `None`
    /// when no received packet awaits feedback.
    ///
    /// It covers the unreported sequence numbers from the oldest up to the last
    /// received one that fits (the buffer's size, rounded down to a word, and the range
    /// of receive deltas); call again while [`Self::has_feedback`] says more remain.
    /// Losses after the last received packet are left for the next feedback.
    pub fn build_feedback(
        &mut self,
        buf: &mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Result<Option<usize>, TwccError> {
        let capacity = buf.len() & !3;
        if capacity < MIN_FEEDBACK_LEN {
            return Err(TwccError::BufferTooSmall);
        }
        let (Some(newest), Some((_, first_arrival))) = (self.newest, self.first_unreported())
        else {
            self.pending = false;
            return Ok(None);
        };
        let base = self.next_base;
        let reference = first_arrival as i64 / REFERENCE_UNIT_US;

        // Pass 1: how many statuses fit, and the chunk and delta bytes they take.
        let mut chunks = ChunkEncoder::new();
        let mut count = 0usize;
        let mut chunk_bytes = 0;
        let mut delta_bytes = 0;
        let mut clock = reference * REFERENCE_UNIT_US;
        for (i, e) in (base..=newest).enumerate() {
            let arrival = self.arrivals[Self::slot(e)];
            if arrival == NOT_RECEIVED {
                chunks.push(SYMBOL_NOT_RECEIVED, &mut |_| {});
                continue;
            }
            let Some((symbol, ticks)) = encode_delta(arrival as i64 - clock) else {
                break;
            };
            let mut trial = chunks;
            trial.push(symbol, &mut |_| {});
            let size = FIXED_LEN + trial.bytes() + delta_bytes + delta_size(symbol);
            if size > capacity {
                break;
            }
            chunks = trial;
            clock += ticks * DELTA_UNIT_US;
            count = i + 1;
            chunk_bytes = trial.bytes();
            delta_bytes += delta_size(symbol);
        }
        if count == 0 {
            // Unreachable: a run of losses, the first received packet's chunk and its
            // delta (less than 64 ms after the reference time) fit MIN_FEEDBACK_LEN.
            return Err(TwccError::BufferTooSmall);
        }
        let unpadded = FIXED_LEN + chunk_bytes + delta_bytes;
        let total = unpadded.next_multiple_of(4);
        let pad = total - unpadded;

        // Pass 2: write.
        let out = &mut buf[..total];
        out[0] = 0x80 | if pad > 0 { 0x20 } else { 0 } | FMT_TRANSPORT_CC;
        out[1] = PT_RTPFB;
        out[2..4].copy_from_slice(&((total / 4 - 1) as u16).to_be_bytes());
        out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
        out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
        out[12..14].copy_from_slice(&(base as u16).to_be_bytes());
        // count <= RECORDER_WINDOW < 65536.
        out[14..16].copy_from_slice(&(count as u16).to_be_bytes());
        let reference_field = reference.rem_euclid(REFERENCE_MODULUS) as u32;
        out[16..19].copy_from_slice(&reference_field.to_be_bytes()[1..]);
        out[19] = self.feedback_count;
        let mut chunks = ChunkEncoder::new();
        let mut chunk_at = FIXED_LEN;
        let mut delta_at = 0;
        let mut clock = reference * REFERENCE_UNIT_US;
        {
            let (chunk_area, delta_area) = out.split_at_mut(FIXED_LEN + chunk_bytes);
            let mut put_chunk = |c: u16| {
                if let Some(dst) = chunk_area.get_mut(chunk_at..chunk_at + 2) {
                    dst.copy_from_slice(&c.to_be_bytes());
                }
                chunk_at += 2;
            };
            for e in base..base + count as i64 {
                let arrival = self.arrivals[Self::slot(e)];
                if arrival == NOT_RECEIVED {
                    chunks.push(SYMBOL_NOT_RECEIVED, &mut put_chunk);
                    continue;
                }
                // Pass 1 encoded these same deltas.
                let Some((symbol, ticks)) = encode_delta(arrival as i64 - clock) else {
                    break;
                };
                chunks.push(symbol, &mut put_chunk);
                clock += ticks * DELTA_UNIT_US;
                let bytes = ticks.to_be_bytes();
                let n = delta_size(symbol);
                if let Some(dst) = delta_area.get_mut(delta_at..delta_at + n) {
                    dst.copy_from_slice(&bytes[8 - n..]);
                }
                delta_at += n;
            }
            chunks.finish(&mut put_chunk);
        }
        if pad > 0 {
            out[unpadded..total].fill(0);
            out[total - 1] = pad as u8;
        }
        self.next_base = base + count as i64;
        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.pending = self.first_unreported().is_some();
        Ok(Some(total))
    }
}

/// Rounds a time difference to receive-delta ticks and picks the symbol that carries
/// it; `None` when it does not fit a large delta.
fn encode_delta(diff_us: i64) -> Option<(u8, i64)> {
    let ticks = (diff_us + DELTA_UNIT_US / 2).div_euclid(DELTA_UNIT_US);
    if (0..=255).contains(&ticks) {
        Some((SYMBOL_SMALL_DELTA, ticks))
    } else if (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&ticks) {
        Some((SYMBOL_LARGE_DELTA, ticks))
    } else {
        None
    }
}

// --- Sender side --------------------------------------------------------------------

/// A parsed transport-feedback packet, borrowing its bytes. Parsing checks the whole
/// packet, so [`Self::packets`] always yields `status_count` statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccFeedback<'a> {
    /// SSRC of the feedback's sender.
    pub sender_ssrc: u32,
    /// Media source SSRC field (transport-wide feedback covers every stream).
    pub media_ssrc: u32,
    /// Transport-wide sequence number of the first packet described.
    pub base_seq: u16,
    /// Number of packets described.
    pub status_count: u16,
    /// 24-bit reference time in multiples of 64 ms, on the feedback sender's clock.
    pub reference_time: u32,
    /// Counts feedback packets (modulo 256), to detect lost feedback.
    pub feedback_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

/// What one feedback packet says about one transport-wide sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketStatus {
    /// Transport-wide sequence number.
    pub seq: u16,
    /// `None` when the packet was not received.
    pub arrival: Option<Arrival>,
}

/// When a reported packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The receive delta (µs) from the previous received packet of this feedback, or
    /// from the reference time for the first one.
    pub delta_us: i32,
    /// Arrival time (µs) on the feedback sender's clock: the reference time plus the
    /// deltas so far. Comparable across feedback packets once the 24-bit reference time
    /// is unwrapped (see [`unwrap_reference_time`]).
    pub at_us: i64,
}

impl<'a> TwccFeedback<'a> {
    /// Parses a single RTCP packet (the first of `pkt`) that must be a transport
    /// feedback.
    pub fn parse(pkt: &'a [u8]) -> Result<Self, TwccError> {
        let packet = rtcp::RtcpPacket::parse(pkt)?;
        match packet.kind()? {
            RtcpKind::TransportCc(tcc) => {
                Self::parse_fci(tcc.sender_ssrc, tcc.media_ssrc, tcc.body)
            }
            _ => Err(TwccError::NotTransportCc),
        }
    }

    /// Parses the feedback control information (everything after the two SSRCs, padding
    /// removed), as [`rtcp::TransportCc::body`] holds it. Chunks may describe more
    /// statuses than the count (the rest is ignored); bytes after the deltas are ignored.
    pub fn parse_fci(sender_ssrc: u32, media_ssrc: u32, fci: &'a [u8]) -> Result<Self, TwccError> {
        let fixed: &[u8; FCI_FIXED_LEN] = fci.first_chunk().ok_or(TwccError::TooShort)?;
        let status_count = u16::from_be_bytes([fixed[2], fixed[3]]);
        let mut remaining = usize::from(status_count);
        let mut at = FCI_FIXED_LEN;
        let mut delta_bytes = 0;
        while remaining > 0 {
            let chunk = match fci.get(at..at + 2) {
                Some(&[a, b]) => u16::from_be_bytes([a, b]),
                _ => return Err(TwccError::TruncatedChunks),
            };
            at += 2;
            let n = chunk_len(chunk).min(remaining);
            if chunk & 0x8000 == 0 {
                let symbol = chunk_symbol(chunk, 0);
                if symbol == 3 && n > 0 {
                    return Err(TwccError::ReservedSymbol);
                }
                delta_bytes += n * delta_size(symbol);
            } else {
                for i in 0..n {
                    let symbol = chunk_symbol(chunk, i);
                    if symbol == 3 {
                        return Err(TwccError::ReservedSymbol);
                    }
                    delta_bytes += delta_size(symbol);
                }
            }
            remaining -= n;
        }
        let deltas = fci
            .get(at..at + delta_bytes)
            .ok_or(TwccError::TruncatedDeltas)?;
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            base_seq: u16::from_be_bytes([fixed[0], fixed[1]]),
            status_count,
            reference_time: u32::from_be_bytes([0, fixed[4], fixed[5], fixed[6]]),
            feedback_count: fixed[7],
            chunks: &fci[FCI_FIXED_LEN..at],
            deltas,
        })
    }

    /// The reference time in µs (not unwrapped).
    pub fn reference_us(&self) -> i64 {
        i64::from(self.reference_time) * REFERENCE_UNIT_US
    }

    /// The status of every packet described, in sequence-number order.
    pub fn packets(&self) -> PacketStatuses<'a> {
        PacketStatuses {
            chunks: self.chunks,
            deltas: self.deltas,
            remaining: usize::from(self.status_count),
            chunk: 0,
            in_chunk: 0,
            chunk_total: 0,
            seq: self.base_seq,
            clock_us: self.reference_us(),
        }
    }
}

/// Unwraps a 24-bit reference time against the previous unwrapped one (in 64 ms units),
/// taking the nearest candidate.
pub fn unwrap_reference_time(previous: Option<i64>, reference_time: u32) -> i64 {
    let value = i64::from(reference_time & 0x00ff_ffff);
    match previous {
        None => value,
        Some(prev) => {
            let diff = (value - prev).rem_euclid(REFERENCE_MODULUS);
            if diff >= REFERENCE_MODULUS / 2 {
                prev + diff - REFERENCE_MODULUS
            } else {
                prev + diff
            }
        }
    }
}

/// Iterator over the statuses of a [`TwccFeedback`].
#[derive(Debug, Clone)]
pub struct PacketStatuses<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    remaining: usize,
    chunk: u16,
    in_chunk: usize,
    chunk_total: usize,
    seq: u16,
    clock_us: i64,
}

impl Iterator for PacketStatuses<'_> {
    type Item = PacketStatus;

    fn next(&mut self) -> Option<PacketStatus> {
        if self.remaining == 0 {
            return None;
        }
        while self.in_chunk >= self.chunk_total {
            let (head, rest) = self.chunks.split_first_chunk::<2>()?;
            self.chunk = u16::from_be_bytes(*head);
            self.chunks = rest;
            self.in_chunk = 0;
            self.chunk_total = chunk_len(self.chunk);
        }
        let symbol = chunk_symbol(self.chunk, self.in_chunk);
        self.in_chunk += 1;
        self.remaining -= 1;
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let ticks = match symbol {
            SYMBOL_SMALL_DELTA => {
                let (d, rest) = self.deltas.split_first()?;
                self.deltas = rest;
                i32::from(*d)
            }
            SYMBOL_LARGE_DELTA => {
                let (d, rest) = self.deltas.split_first_chunk::<2>()?;
                self.deltas = rest;
                i32::from(i16::from_be_bytes(*d))
            }
            _ => return Some(PacketStatus { seq, arrival: None }),
        };
        let delta_us = ticks * DELTA_UNIT_US as i32;
        self.clock_us += i64::from(delta_us);
        Some(PacketStatus {
            seq,
            arrival: Some(Arrival {
                delta_us,
                at_us: self.clock_us,
            }),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl std::iter::FusedIterator for PacketStatuses<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn rtp_packet(ext: Option<(u16, &[u8])>, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        if let Some((profile, data)) = ext {
            p[0] |= 0x10;
            p.extend_from_slice(&profile.to_be_bytes());
            p.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(data);
        }
        p.extend_from_slice(payload);
        p
    }

    fn read_seq(pkt: &[u8], id: u8) -> Option<u16> {
        let h = rtp::parse(pkt).unwrap();
        transport_seq(pkt, &h, id)
    }

    #[test]
    fn reads_transport_seq_in_both_forms() {
        // One-byte form: id 1 (audio level, 1 byte), id 3 (transport seq, 2 bytes).
        let p = rtp_packet(
            Some((ONE_BYTE_PROFILE, &[0x10, 0x7f, 0x31, 0xab, 0xcd, 0, 0, 0])),
            b"x",
        );
        assert_eq!(read_seq(&p, 3), Some(0xabcd));
        assert_eq!(
            read_seq(&p, 1),
            None,
            "one-byte element is not a sequence number"
        );
        assert_eq!(read_seq(&p, 5), None);
        // Two-byte form, id 200.
        let p = rtp_packet(Some((0x1000, &[200, 2, 0x12, 0x34])), b"x");
        assert_eq!(read_seq(&p, 200), Some(0x1234));
        assert_eq!(read_seq(&rtp_packet(None, b"x"), 3), None);
    }

    #[test]
    fn overwrites_existing_transport_seq_in_place() {
        let mut p = rtp_packet(
            Some((ONE_BYTE_PROFILE, &[0x10, 0x7f, 0x31, 0xab, 0xcd, 0, 0, 0])),
            b"pay",
        );
        let orig = p.clone();
        let len = p.len();
        assert_eq!(set_transport_seq(&mut p, len, 3, 0x0102), Ok(len));
        assert_eq!(read_seq(&p, 3), Some(0x0102));
        let diff: Vec<usize> = (0..len).filter(|&i| p[i] != orig[i]).collect();
        assert_eq!(diff, [19, 20]);
        let mut p = rtp_packet(Some((0x1000, &[7, 2, 0, 0])), b"pay");
        let len = p.len();
        assert_eq!(set_transport_seq(&mut p, len, 7, 0xfffe), Ok(len));
        assert_eq!(read_seq(&p, 7), Some(0xfffe));
    }

    #[test]
    fn inserts_transport_seq_where_missing() {
        // No extension at all: a one-byte block is added, payload moves back 8 bytes.
        let mut buf = rtp_packet(None, b"payload");
        let len = buf.len();
        buf.resize(64, 0xee);
        let n = set_transport_seq(&mut buf, len, 5, 0x4242).unwrap();
        assert_eq!(n, len + 8);
        let h = rtp::parse(&buf[..n]).unwrap();
        assert_eq!(transport_seq(&buf[..n], &h, 5), Some(0x4242));
        assert_eq!(&buf[h.payload_range(n)], b"payload");
        // Id above 14: a two-byte block.
        let mut buf = rtp_packet(None, b"payload");
        buf.resize(64, 0);
        let n = set_transport_seq(&mut buf, len, 100, 9).unwrap();
        let h = rtp::parse(&buf[..n]).unwrap();
        assert_eq!(h.extension.unwrap().profile, 0x1000);
        assert_eq!(transport_seq(&buf[..n], &h, 100), Some(9));
        assert_eq!(&buf[h.payload_range(n)], b"payload");
        // Trailing padding of an existing block is reused when the element fits in it.
        let mut buf = rtp_packet(
            Some((ONE_BYTE_PROFILE, &[0x10, 0x55, 0, 0, 0, 0, 0, 0])),
            b"pl",
        );
        let len = buf.len();
        assert_eq!(set_transport_seq(&mut buf, len, 3, 0x0a0b), Ok(len));
        let h = rtp::parse(&buf).unwrap();
        assert_eq!(transport_seq(&buf, &h, 3), Some(0x0a0b));
        assert_eq!(rtp::extension_element(&buf, &h, 1), Some(&[0x55][..]));
        // Not enough padding: the block grows by one word.
        let mut buf = rtp_packet(Some((ONE_BYTE_PROFILE, &[0x10, 0x55, 0, 0])), b"pl");
        let len = buf.len();
        buf.resize(40, 0);
        let n = set_transport_seq(&mut buf, len, 3, 0x0c0d).unwrap();
        assert_eq!(n, len + 4);
        let h = rtp::parse(&buf[..n]).unwrap();
        assert_eq!(h.extension.unwrap().len, 8);
        assert_eq!(transport_seq(&buf[..n], &h, 3), Some(0x0c0d));
        assert_eq!(rtp::extension_element(&buf[..n], &h, 1), Some(&[0x55][..]));
        assert_eq!(&buf[h.payload_range(n)], b"pl");
    }

    #[test]
    fn refuses_what_it_cannot_write() {
        let mut p = rtp_packet(None, b"x");
        let len = p.len();
        assert_eq!(
            set_transport_seq(&mut p, len, 3, 1),
            Err(ExtensionError::BufferTooSmall)
        );
        assert_eq!(
            set_transport_seq(&mut p, len, 0, 1),
            Err(ExtensionError::BadId(0))
        );
        let mut p = rtp_packet(Some((ONE_BYTE_PROFILE, &[0x10, 0x55, 0, 0])), b"x");
        let len = p.len();
        assert_eq!(
            set_transport_seq(&mut p, len, 20, 1),
            Err(ExtensionError::BadId(20))
        );
        assert_eq!(
            set_transport_seq(&mut p, len, 1, 1),
            Err(ExtensionError::LengthMismatch(1))
        );
        let mut p = rtp_packet(Some((0xabcd, &[1, 2, 3, 4])), b"x");
        let len = p.len();
        assert_eq!(
            set_transport_seq(&mut p, len, 3, 1),
            Err(ExtensionError::UnsupportedBlock)
        );
        assert!(matches!(
            set_transport_seq(&mut [0x80; 8], 8, 3, 1),
            Err(ExtensionError::Rtp(RtpError::TooShort))
        ));
    }

    /// Captured from Chrome (pion/rtcp `transport_layer_cc_test.go` "example1"; the
    /// bytes are Chrome's, per pion/rtcp issue #52): one packet, run-length chunk, a
    /// small delta, padding with the P bit. Layout per draft-holmer-rmcat-transport-
    /// wide-cc-extensions-01 §3.1.
    const CHROME_FEEDBACK: [u8; 24] = [
        0xaf, 0xcd, 0x00, 0x05, 0xfa, 0x17, 0xfa, 0x17, 0x43, 0x03, 0x2f, 0xa0, 0x00, 0x99, 0x00,
        0x01, 0x3d, 0xe8, 0x02, 0x17, 0x20, 0x01, 0x94, 0x01,
    ];

    #[test]
    fn parses_chrome_feedback() {
        let fb = TwccFeedback::parse(&CHROME_FEEDBACK).unwrap();
        assert_eq!(fb.sender_ssrc, 4_195_875_351);
        assert_eq!(fb.media_ssrc, 1_124_282_272);
        assert_eq!(fb.base_seq, 153);
        assert_eq!(fb.status_count, 1);
        assert_eq!(fb.reference_time, 4_057_090);
        assert_eq!(fb.feedback_count, 23);
        let statuses: Vec<_> = fb.packets().collect();
        assert_eq!(
            statuses,
            [PacketStatus {
                seq: 153,
                arrival: Some(Arrival {
                    delta_us: 37_000,
                    at_us: 4_057_090 * 64_000 + 37_000,
                }),
            }]
        );
    }

    /// FCI with the fixed part for `count` statuses followed by `rest`.
    fn fci(base: u16, count: u16, rest: &[u8]) -> Vec<u8> {
        let mut v = base.to_be_bytes().to_vec();
        v.extend_from_slice(&count.to_be_bytes());
        v.extend_from_slice(&[0, 0, 1, 9]);
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn decodes_draft_chunk_examples() {
        // §3.1.4 example 1: one-bit vector 0x9F1C, 14 statuses, 8 received.
        let mut rest = vec![0x9f, 0x1c];
        rest.extend_from_slice(&[4; 8]);
        let f = fci(65530, 14, &rest);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        let received: Vec<bool> = fb.packets().map(|p| p.arrival.is_some()).collect();
        let want = [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0].map(|b| b == 1);
        assert_eq!(received, want);
        let seqs: Vec<u16> = fb.packets().map(|p| p.seq).collect();
        assert_eq!(seqs[..7], [65530, 65531, 65532, 65533, 65534, 65535, 0]);
        assert_eq!(fb.reference_us(), 64_000);
        let last = fb.packets().filter_map(|p| p.arrival).last().unwrap();
        assert_eq!(last.at_us, 64_000 + 8 * 1000);
        // §3.1.3 example 1: run of 221 "not received": no deltas needed.
        let f = fci(0, 221, &[0x00, 0xdd]);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        assert_eq!(fb.packets().count(), 221);
        assert!(fb.packets().all(|p| p.arrival.is_none()));
        // §3.1.3 example 2 and §3.1.4 example 2 use symbol 11, which libwebrtc rejects.
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 24, &[0x60, 0x18])),
            Err(TwccError::ReservedSymbol)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 7, &[0xcd, 0x50, 1, 1, 1])),
            Err(TwccError::ReservedSymbol)
        );
        // Two-bit vector with a negative large delta.
        let f = fci(7, 2, &[0xd8, 0x00, 0x08, 0xff, 0xfc]);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        let d: Vec<_> = fb
            .packets()
            .map(|p| p.arrival.map(|a| a.delta_us))
            .collect();
        assert_eq!(d, [Some(2000), Some(-1000)]);
    }

    #[test]
    fn rejects_malformed_feedback() {
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &[0; 7]),
            Err(TwccError::TooShort)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 3, &[0x20, 0x02])),
            Err(TwccError::TruncatedChunks)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 3, &[0x20, 0x03, 1, 1])),
            Err(TwccError::TruncatedDeltas)
        );
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 1, &[0x40, 0x01, 1])),
            Err(TwccError::TruncatedDeltas)
        );
        // A PLI is RTCP, but not transport feedback.
        let mut pli = [0u8; 12];
        let n = rtcp::write_pli(&mut pli, 1, 2).unwrap();
        assert_eq!(
            TwccFeedback::parse(&pli[..n]),
            Err(TwccError::NotTransportCc)
        );
        assert_eq!(
            TwccFeedback::parse(&[0x8f]),
            Err(TwccError::Rtcp(RtcpError::TooShort))
        );
        // Status count 0 and a run chunk longer than the count are accepted (clipped).
        assert_eq!(
            TwccFeedback::parse_fci(1, 2, &fci(0, 0, &[]))
                .unwrap()
                .packets()
                .count(),
            0
        );
        let f = fci(0, 2, &[0x20, 0x30, 1, 1]);
        let fb = TwccFeedback::parse_fci(1, 2, &f).unwrap();
        assert_eq!(fb.packets().count(), 2);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x7cc);
        let mut buf = [0u8; 96];
        let mut parsed = 0;
        for i in 0..200_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            if i % 2 == 0 && len >= 4 {
                // A valid RTCP header so the FCI parser is reached.
                buf[0] = 0x8f | (buf[0] & 0x20);
                buf[1] = PT_RTPFB;
                buf[2] = 0;
                buf[3] = (len / 4 - 1) as u8;
                if i % 4 == 0 && len >= 16 {
                    // Small status counts reach the deltas more often.
                    buf[14] = 0;
                    buf[15] %= 40;
                }
            }
            if let Ok(fb) = TwccFeedback::parse(&buf[..len]) {
                let n = fb.packets().count();
                assert_eq!(n, usize::from(fb.status_count));
                parsed += 1;
            }
            let mut copy = buf;
            let _ = set_transport_seq(&mut copy, len, (i % 16) as u8, 7);
        }
        assert!(parsed > 1000, "{parsed}");
    }

    /// Records `arrivals` (seq, µs), builds every feedback and checks each packet's
    /// reported status against what was recorded.
    fn round_trip(arrivals: &[(u16, u64)], buf_len: usize) -> usize {
        let mut rec = TwccRecorder::new();
        let mut truth = std::collections::HashMap::new();
        for &(seq, t) in arrivals {
            rec.record(seq, t);
            truth.entry(seq).or_insert(t);
        }
        let mut buf = vec![0u8; buf_len];
        let mut seen = std::collections::HashMap::new();
        let mut packets = 0;
        let mut expected_fb = 0u8;
        while rec.has_feedback() {
            let n = rec.build_feedback(&mut buf, 11, 22).unwrap().unwrap();
            assert!(n <= buf_len && n.is_multiple_of(4));
            let fb = TwccFeedback::parse(&buf[..n]).unwrap();
            assert_eq!(fb.feedback_count, expected_fb);
            expected_fb = expected_fb.wrapping_add(1);
            packets += 1;
            for p in fb.packets() {
                if let Some(a) = p.arrival {
                    seen.insert(p.seq, a.at_us);
                }
            }
        }
        assert!(rec.build_feedback(&mut buf, 11, 22).unwrap().is_none());
        assert_eq!(seen.len(), truth.len(), "every received packet reported");
        for (seq, at) in seen {
            let t = truth[&seq] as i64;
            assert!(
                (at - t).abs() <= 125,
                "seq {seq}: reported {at}, arrived {t}"
            );
        }
        packets
    }

    #[test]
    fn builder_round_trips_through_parser() {
        let mut rng = StdRng::seed_from_u64(42);
        for round in 0..200 {
            let n = rng.random_range(1..600);
            let start: u16 = rng.random();
            let mut t = rng.random_range(0..1u64 << 39);
            let mut arrivals = Vec::new();
            for i in 0..n {
                // Gaps of 0..80 ms, sometimes long; 10 % loss; some reordering.
                t += if rng.random_bool(0.02) {
                    rng.random_range(0..9_000_000)
                } else {
                    rng.random_range(0..80_000)
                };
                if rng.random_bool(0.1) {
                    continue;
                }
                arrivals.push((start.wrapping_add(i), t));
            }
            for _ in 0..n / 20 {
                let (a, b) = (
                    rng.random_range(0..arrivals.len()),
                    rng.random_range(0..arrivals.len()),
                );
                let (sa, sb) = (arrivals[a].0, arrivals[b].0);
                arrivals[a].0 = sb;
                arrivals[b].0 = sa;
            }
            let buf_len = if round % 3 == 0 { 64 } else { 1200 };
            round_trip(&arrivals, buf_len);
        }
    }

    #[test]
    fn feedback_uses_each_chunk_kind() {
        // All received at 1 ms spacing: one run-length chunk.
        let arrivals: Vec<_> = (0..100u16)
            .map(|s| (s, 1_000_000 + u64::from(s) * 1000))
            .collect();
        let mut rec = TwccRecorder::new();
        for &(s, t) in &arrivals {
            rec.record(s, t);
        }
        let mut buf = [0u8; 1500];
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        assert_eq!(&buf[20..22], &[0x20, 100]);
        assert_eq!(n, (20 + 2 + 100usize).next_multiple_of(4));
        // Alternating loss: one-bit vectors.
        let mut rec = TwccRecorder::new();
        for s in (0..28u16).step_by(2) {
            rec.record(s, 1_000_000 + u64::from(s) * 1000);
        }
        rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        assert_eq!(u16::from_be_bytes([buf[14], buf[15]]), 27);
        assert_eq!(buf[20] & 0xc0, 0x80);
        assert_eq!(buf[22] & 0xc0, 0x80);
        // A large gap: two-bit vector.
        let mut rec = TwccRecorder::new();
        rec.record(0, 1_000_000);
        rec.record(1, 1_100_000);
        rec.record(2, 1_101_000);
        rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        assert_eq!(buf[20] & 0xc0, 0xc0);
        let fb = TwccFeedback::parse(&buf).unwrap();
        let d: Vec<_> = fb.packets().map(|p| p.arrival.unwrap().delta_us).collect();
        assert_eq!(d, [1_000_000 - 15 * 64_000, 100_000, 1000]);
    }

    #[test]
    fn recorder_handles_wrap_reorder_duplicates_and_window() {
        let mut rec = TwccRecorder::new();
        let mut buf = [0u8; 1500];
        assert!(!rec.has_feedback());
        assert_eq!(rec.build_feedback(&mut buf, 1, 2), Ok(None));
        assert!(rec.record(65534, 1000));
        assert!(rec.record(1, 4000));
        assert!(rec.record(65535, 2000), "reordered across the wrap");
        assert!(!rec.record(65535, 2500), "duplicate");
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!(fb.base_seq, 65534);
        let got: Vec<_> = fb.packets().map(|p| (p.seq, p.arrival.is_some())).collect();
        assert_eq!(got, [(65534, true), (65535, true), (0, false), (1, true)]);
        // The late 0 is reported in the next feedback, with what follows it again.
        assert!(!rec.has_feedback());
        assert!(rec.record(0, 5000));
        assert!(rec.has_feedback());
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!(fb.base_seq, 0);
        assert_eq!(fb.status_count, 2);
        // Far behind the window: ignored; far ahead: the window moves.
        assert!(rec.record(2, 6000));
        assert!(rec.record(2 + RECORDER_WINDOW as u16 + 10, 7000));
        assert!(!rec.record(3, 8000), "behind the window");
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!(usize::from(fb.status_count), RECORDER_WINDOW);
        assert_eq!(fb.packets().filter(|p| p.arrival.is_some()).count(), 1);
    }

    #[test]
    fn recorder_follows_a_restarted_sender() {
        let mut rec = TwccRecorder::new();
        for s in 0..10u16 {
            rec.record(s, u64::from(s) * 1000);
        }
        let mut buf = [0u8; 1500];
        rec.build_feedback(&mut buf, 1, 2).unwrap();
        assert!(!rec.record(40_000, 20_000));
        assert!(
            rec.record(40_001, 21_000),
            "second packet confirms the restart"
        );
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!((fb.base_seq, fb.status_count), (40_001, 1));
    }

    #[test]
    fn small_buffers_split_feedback() {
        let arrivals: Vec<_> = (0..300u16)
            .map(|s| {
                (
                    s,
                    5_000_000 + u64::from(s) * 3000 + u64::from(s % 7) * 40_000,
                )
            })
            .collect();
        assert!(round_trip(&arrivals, 32) > 10);
        let mut rec = TwccRecorder::new();
        rec.record(1, 1);
        assert_eq!(
            rec.build_feedback(&mut [0; 27], 1, 2),
            Err(TwccError::BufferTooSmall)
        );
        assert_eq!(round_trip(&[(9, 123_456_789)], MIN_FEEDBACK_LEN), 1);
        // Worst case for the minimum: a run of losses, then a large first delta.
        let mut rec = TwccRecorder::new();
        let mut buf = [0u8; MIN_FEEDBACK_LEN];
        rec.record(0, 1000);
        rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        rec.record(11, 127_999);
        let n = rec.build_feedback(&mut buf, 1, 2).unwrap().unwrap();
        let fb = TwccFeedback::parse(&buf[..n]).unwrap();
        assert_eq!((fb.base_seq, fb.status_count), (1, 11));
        let last = fb.packets().last().unwrap().arrival.unwrap();
        assert_eq!((last.delta_us, last.at_us), (64_000, 128_000));
    }

    #[test]
    fn reference_time_unwraps() {
        assert_eq!(unwrap_reference_time(None, 5), 5);
        assert_eq!(unwrap_reference_time(Some(0xff_fffe), 1), 0x100_0001);
        assert_eq!(
            unwrap_reference_time(Some(0x100_0001), 0xff_fffe),
            0xff_fffe
        );
        assert_eq!(unwrap_reference_time(Some(3), 0xff_ffff), -1);
    }
}
