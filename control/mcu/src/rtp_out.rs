//! RTP streams of mixed output: each has its own SSRC, sequence numbers and timestamp
//! domain, derives its RTP timestamps from the capture instants the caller passes in,
//! counts what it sent, and writes RTCP sender reports (RFC 3550 §6.4.1) that map its
//! timestamps to the wallclock, so a receiver can lip-sync the mixed audio with the
//! composed video. It writes bytes into buffers the caller owns; no I/O, no clock reads.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of the fixed RTP header written here (no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

const RTCP_SR: u8 = 200;
const RTCP_SDES: u8 = 202;
const SDES_CNAME: u8 = 1;

/// One RTP stream of mixed output with its own SSRC, sequence and timestamp domain.
#[derive(Debug, Clone)]
pub struct RtpStream {
    ssrc: u32,
    payload_type: u8,
    clock_rate: u32,
    next_seq: u16,
    ts0: u32,
    epoch: Instant,
    packets: u32,
    octets: u32,
}

impl RtpStream {
    /// `seq0`, `ts0`: random starting values chosen by the caller; `epoch`: the instant
    /// that maps to `ts0` (timestamps advance with the capture instant passed to
    /// [`RtpStream::write_packet`]). `payload_type` keeps its low 7 bits.
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        clock_rate: u32,
        seq0: u16,
        ts0: u32,
        epoch: Instant,
    ) -> Self {
        Self {
            ssrc,
            payload_type: payload_type & 0x7f,
            clock_rate,
            next_seq: seq0,
            ts0,
            epoch,
            packets: 0,
            octets: 0,
        }
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Packets and payload octets sent so far (as the sender report counts them).
    pub fn counts(&self) -> (u32, u32) {
        (self.packets, self.octets)
    }

    /// The RTP timestamp of `instant` in this stream's domain: `ts0` plus the clock-rate
    /// ticks from the epoch (negative before it), modulo 2^32.
    pub fn timestamp_at(&self, instant: Instant) -> u32 {
        match instant.checked_duration_since(self.epoch) {
            Some(after) => self.ts0.wrapping_add(self.ticks(after)),
            None => self.ts0.wrapping_sub(self.ticks(self.epoch - instant)),
        }
    }

    fn ticks(&self, d: Duration) -> u32 {
        // Truncated to 32 bits on purpose: RTP timestamps wrap.
        (d.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32
    }

    /// Appends one RTP packet (12-byte header, no extensions, + payload) to `out`
    /// (cleared first). `capture`: the instant the media was sampled (its RTP timestamp
    /// derives from it).
    pub fn write_packet(
        &mut self,
        capture: Instant,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let ts = self.timestamp_at(capture);
        self.write_with_timestamp(ts, marker, payload, out);
    }

    /// Like [`RtpStream::write_packet`] but with an explicit RTP timestamp offset from
    /// `ts0` (audio: `frame_index * 960` for 20 ms frames at 48 kHz), so that timestamps
    /// advance by exactly one frame per packet whatever the caller's scheduling jitter.
    /// The offset stays consistent with the sender reports as long as the caller's
    /// frames follow the epoch at the clock rate.
    pub fn write_packet_at_offset(
        &mut self,
        ts_offset: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) {
        let ts = self.ts0.wrapping_add(ts_offset);
        self.write_with_timestamp(ts, marker, payload, out);
    }

    fn write_with_timestamp(&mut self, ts: u32, marker: bool, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(RTP_HEADER_LEN + payload.len());
        out.push(0x80); // V=2, P=0, X=0, CC=0
        out.push(u8::from(marker) << 7 | self.payload_type);
        out.extend_from_slice(&self.next_seq.to_be_bytes());
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        // The SR's octet count wraps modulo 2^32 (RFC 3550 §6.4.1).
        self.octets = self.octets.wrapping_add(payload.len() as u32);
    }

    /// An RTCP compound packet: SR (RFC 3550 §6.4.1: NTP from `wallclock`, the RTP
    /// timestamp of `now` in this stream's domain, packet and octet counts, no report
    /// blocks) + SDES CNAME `cname` (truncated to 255 bytes). Written to `out`
    /// (cleared first).
    pub fn sender_report(
        &self,
        now: Instant,
        wallclock: SystemTime,
        cname: &str,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        let (ntp_secs, ntp_frac) = ntp_timestamp(wallclock);
        // SR: header + SSRC + 5 words of sender info = 7 words, length field 6.
        out.extend_from_slice(&[0x80, RTCP_SR, 0, 6]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&ntp_secs.to_be_bytes());
        out.extend_from_slice(&ntp_frac.to_be_bytes());
        out.extend_from_slice(&self.timestamp_at(now).to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());

        // SDES with one chunk: SSRC, CNAME item, then 1 to 4 null octets to the next
        // 32-bit boundary (RFC 3550 §6.5).
        let name = truncate_utf8(cname, 255).as_bytes();
        let chunk = 4 + 2 + name.len();
        let padded = (chunk / 4 + 1) * 4;
        let words = 1 + padded / 4; // header + chunk
        let start = out.len();
        out.extend_from_slice(&[0x81, RTCP_SDES]);
        out.extend_from_slice(&((words - 1) as u16).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(SDES_CNAME);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.resize(start + words * 4, 0);
    }
}

/// The 64-bit NTP timestamp of `wallclock` as (seconds since 1900, fraction of 2^32).
/// Times before 1970 map to the Unix epoch.
pub fn ntp_timestamp(wallclock: SystemTime) -> (u32, u32) {
    let since = wallclock.duration_since(UNIX_EPOCH).unwrap_or_default();
    // NTP seconds wrap in 2036 (era 1); the truncation is the wire format's.
    let secs = (since.as_secs() + NTP_UNIX_OFFSET) as u32;
    let frac = ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000) as u32;
    (secs, frac)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
