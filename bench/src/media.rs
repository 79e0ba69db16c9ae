//! The synthetic media the load generator sends and checks: RTP packets whose payload
//! starts with the send time (ns since the bench started) and the extended sequence
//! number, continuity tracking by sequence number, and latency percentiles.

use std::sync::OnceLock;
use std::time::Instant;

/// Opus payload type in the publisher's offer.
pub(crate) const AUDIO_PT: u8 = 111;
/// VP8 payload type in the publisher's offer.
pub(crate) const VIDEO_PT: u8 = 96;
/// Plaintext RTP length of an audio packet (about 100 B on the wire).
pub(crate) const AUDIO_LEN: usize = 96;
/// Smallest plaintext RTP length of a video packet; lengths vary up to +84, so with
/// the SRTP tag video datagrams are 1,100 to 1,200 bytes.
pub(crate) const VIDEO_MIN_LEN: usize = 1_100;
const VIDEO_SPREAD: u64 = 85;
const RTP_HEADER: usize = 12;
/// Send time (8 bytes) + extended sequence (8 bytes).
const STAMP_LEN: usize = 16;
/// The `a=extmap` id of the transport-wide sequence number in the bench's offers
/// (`ClientPeer::twcc`).
pub(crate) const TWCC_EXT_ID: u8 = 3;
/// What a simulcast layer's packets start with: a VP8 payload descriptor (S bit, no
/// extensions) and a keyframe header (frame tag with P = 0, start code, 640×360), so
/// that each packet is a one-packet keyframe a layer switch may start at.
const VP8_KEYFRAME: [u8; 11] = [
    0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
];

/// Monotonic nanoseconds since the bench started.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// One outgoing RTP stream: SSRC, payload type and its counters.
#[derive(Debug, Clone)]
pub(crate) struct StreamTx {
    pub(crate) ssrc: u32,
    pub(crate) pt: u8,
    /// Next extended sequence number.
    pub(crate) ext_seq: u64,
    /// Every packet is a one-packet VP8 keyframe ([`VP8_KEYFRAME`] before the stamp,
    /// its own timestamp, marker set): a simulcast layer.
    pub(crate) keyframes: bool,
}

impl StreamTx {
    pub(crate) fn new(ssrc: u32, pt: u8) -> Self {
        Self {
            ssrc,
            pt,
            // A random start, like a browser's, away from the wrap to keep it simple.
            ext_seq: u64::from(rand::random::<u16>() & 0x3fff),
            keyframes: false,
        }
    }

    /// A simulcast layer's video stream (see [`Self::keyframes`]).
    pub(crate) fn keyframes(mut self) -> Self {
        self.keyframes = true;
        self
    }

    /// Writes the next packet into `buf` (plaintext RTP); returns its length. With
    /// `transport_seq`, the packet carries it in a transport-wide sequence number
    /// header extension ([`TWCC_EXT_ID`], RFC 8285 one-byte form; 8 bytes taken from
    /// the payload, the length stays the same).
    pub(crate) fn write_next(
        &mut self,
        buf: &mut [u8],
        send_ns: u64,
        transport_seq: Option<u16>,
    ) -> usize {
        let seq = self.ext_seq;
        self.ext_seq += 1;
        let len = if self.pt == AUDIO_PT {
            AUDIO_LEN
        } else {
            VIDEO_MIN_LEN + (seq.wrapping_mul(37) % VIDEO_SPREAD) as usize
        };
        // 20 ms audio frames at 48 kHz; video frames of ten packets at 90 kHz.
        let ts = if self.pt == AUDIO_PT {
            (seq as u32).wrapping_mul(960)
        } else if self.keyframes {
            (seq as u32).wrapping_mul(3000)
        } else {
            ((seq / 10) as u32).wrapping_mul(3000)
        };
        let marker = self.pt != AUDIO_PT && (self.keyframes || seq % 10 == 9);
        buf[0] = if transport_seq.is_some() { 0x90 } else { 0x80 };
        buf[1] = self.pt | if marker { 0x80 } else { 0 };
        buf[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
        buf[4..8].copy_from_slice(&ts.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = RTP_HEADER;
        if let Some(tseq) = transport_seq {
            let [hi, lo] = tseq.to_be_bytes();
            buf[at..at + 8].copy_from_slice(&[0xbe, 0xde, 0, 1, TWCC_EXT_ID << 4 | 1, hi, lo, 0]);
            at += 8;
        }
        if self.keyframes {
            buf[at..at + VP8_KEYFRAME.len()].copy_from_slice(&VP8_KEYFRAME);
            at += VP8_KEYFRAME.len();
        }
        buf[at..at + 8].copy_from_slice(&send_ns.to_be_bytes());
        buf[at + 8..at + 16].copy_from_slice(&seq.to_be_bytes());
        // A filler pattern the receiver can check.
        let fill = seq as u8;
        for (i, b) in buf[at + STAMP_LEN..len].iter_mut().enumerate() {
            *b = fill.wrapping_add(i as u8);
        }
        len
    }
}

/// The fields the receiver reads from a plaintext RTP header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) seq: u16,
    pub(crate) ssrc: u32,
}

/// Reads an RTP header (only the fixed part; the SRTP header is in the clear).
/// `None` for RTCP (RFC 5761 payload types 192–223), STUN, DTLS or garbage.
pub(crate) fn rtp_header(pkt: &[u8]) -> Option<Header> {
    if pkt.len() < RTP_HEADER || pkt[0] >> 6 != 2 {
        return None;
    }
    let pt = pkt[1] & 0x7f;
    if (64..96).contains(&pt) {
        return None;
    }
    Some(Header {
        seq: u16::from_be_bytes([pkt[2], pkt[3]]),
        ssrc: u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]),
    })
}

/// Reads the send time back from a plaintext packet and checks the payload; `None`
/// when it does not carry what [`StreamTx::write_next`] wrote. With `same_seq`, the
/// header's sequence number must be the one sent (servers that renumber, as Janus
/// does, are checked without it).
pub(crate) fn read_stamp(plain: &[u8], same_seq: bool) -> Option<u64> {
    let hdr = cascade_dataplane::rtp::parse(plain).ok()?;
    let mut p = plain.get(hdr.header_len..)?;
    // A simulcast layer's packet: the stamp follows the VP8 keyframe header (a stamp
    // itself starts with a zero byte: send times stay below 2^56 ns).
    if p.first() == Some(&VP8_KEYFRAME[0]) {
        p = p.get(VP8_KEYFRAME.len()..)?;
    }
    if p.len() < STAMP_LEN {
        return None;
    }
    let send_ns = u64::from_be_bytes(p[0..8].try_into().ok()?);
    let ext = u64::from_be_bytes(p[8..16].try_into().ok()?);
    if same_seq && ext as u16 != hdr.sequence {
        return None;
    }
    let fill = ext as u8;
    let ok = p[STAMP_LEN..]
        .iter()
        .take(8)
        .enumerate()
        .all(|(i, b)| *b == fill.wrapping_add(i as u8));
    ok.then_some(send_ns)
}

/// What became of one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// First time this sequence number is seen.
    New,
    /// Seen before (within the window).
    Duplicate,
    /// Older than the window: counted, but duplicates cannot be told apart.
    Late,
}

/// Continuity of one received stream, by sequence number: extended highest sequence
/// and a 128-packet window of the ones seen.
#[derive(Debug, Clone)]
pub(crate) struct StreamRx {
    pub(crate) ssrc: u32,
    highest: Option<u64>,
    window: u128,
}

impl StreamRx {
    pub(crate) fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            highest: None,
            window: 0,
        }
    }

    pub(crate) fn record(&mut self, seq: u16) -> Arrival {
        let Some(high) = self.highest else {
            self.highest = Some(u64::from(seq) + (1 << 16));
            self.window = 1;
            return Arrival::New;
        };
        // Extend against the highest seen (RFC 3550 A.1 style).
        let delta = seq.wrapping_sub(high as u16) as i16;
        let ext = (high as i64 + i64::from(delta)) as u64;
        if ext > high {
            let shift = ext - high;
            self.window = if shift >= 128 {
                1
            } else {
                (self.window << shift) | 1
            };
            self.highest = Some(ext);
            return Arrival::New;
        }
        let back = high - ext;
        if back >= 128 {
            return Arrival::Late;
        }
        let bit = 1u128 << back;
        if self.window & bit != 0 {
            Arrival::Duplicate
        } else {
            self.window |= bit;
            Arrival::New
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
}

impl Latency {
    /// Percentiles of latency samples in nanoseconds (sorts them).
    pub(crate) fn from_ns(samples: &mut [u32]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |p: f64| {
            let i = ((samples.len() - 1) as f64 * p).round() as usize;
            f64::from(samples[i]) / 1e3
        };
        Self {
            samples: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_round_trip() {
        let mut s = StreamTx::new(42, VIDEO_PT);
        let mut buf = [0u8; 2048];
        let n = s.write_next(&mut buf, 123_456, None);
        assert!((VIDEO_MIN_LEN..VIDEO_MIN_LEN + 85).contains(&n));
        let h = rtp_header(&buf[..n]).unwrap();
        assert_eq!(h.ssrc, 42);
        assert_eq!(read_stamp(&buf[..n], true), Some(123_456));
        buf[2] ^= 1;
        assert_eq!(read_stamp(&buf[..n], true), None);
        assert_eq!(read_stamp(&buf[..n], false), Some(123_456));
        buf[30] ^= 1;
        assert_eq!(read_stamp(&buf[..n], false), None);
        let mut a = StreamTx::new(7, AUDIO_PT);
        assert_eq!(a.write_next(&mut buf, 1, None), AUDIO_LEN);
    }

    #[test]
    fn simulcast_packet_with_transport_seq_round_trip() {
        let mut s = StreamTx::new(42, VIDEO_PT).keyframes();
        let mut buf = [0u8; 2048];
        let n = s.write_next(&mut buf, 987_654, Some(0x1234));
        assert!((VIDEO_MIN_LEN..VIDEO_MIN_LEN + 85).contains(&n));
        assert_eq!(buf[0], 0x90);
        assert_ne!(buf[1] & 0x80, 0, "every packet ends a frame");
        let hdr = cascade_dataplane::rtp::parse(&buf[..n]).unwrap();
        assert!(cascade_dataplane::codec::vp8::keyframe_start(
            &buf[hdr.header_len..n]
        ));
        assert_eq!(read_stamp(&buf[..n], true), Some(987_654));
    }

    #[test]
    fn rtcp_is_not_rtp() {
        let mut p = [0u8; 16];
        p[0] = 0x80;
        p[1] = 200;
        assert!(rtp_header(&p).is_none());
    }

    #[test]
    fn continuity() {
        let mut r = StreamRx::new(1);
        assert_eq!(r.record(65_534), Arrival::New);
        assert_eq!(r.record(65_535), Arrival::New);
        assert_eq!(r.record(1), Arrival::New);
        assert_eq!(r.record(0), Arrival::New);
        assert_eq!(r.record(0), Arrival::Duplicate);
        assert_eq!(r.record(65_535), Arrival::Duplicate);
        assert_eq!(r.record(1000), Arrival::New);
        assert_eq!(r.record(2), Arrival::Late);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let l = Latency::from_ns(&mut v);
        assert_eq!(l.samples, 1000);
        assert!((l.p50_us - 500.0).abs() <= 1.0);
        assert!((l.p99_us - 990.0).abs() <= 1.0);
        assert_eq!(l.max_us, 1000.0);
    }
}
