//! Authenticated garbage: random payloads wrapped in valid SRTP/SRTCP from the
//! publisher's and the subscriber's addresses, so they pass authentication and reach
//! the forwarding table's RTP and RTCP handling, its NACK cache, layer switch,
//! transport-cc and timers. Plain garbage from both addresses is mixed in.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_dataplane::command::{
    Command, ExtensionIds, KeyframeFormat, MAX_PT_MAP, MediaKind, Route,
};
use cascade_dataplane::ids::{Pt, SessionId, Ssrc};
use cascade_dataplane::srtp::{SrtpContext, SrtpKeyingMaterial, SrtpProfile};
use cascade_dataplane::table::{ForwardingTable, MAX_DATAGRAM, TransmitSink};

use crate::fixtures;

/// The publisher's plain stream, its RTX stream, and a second (layered VP8) stream.
const PUB_SSRC: u32 = 0xAAAA;
const PUB_RTX: u32 = 0xAAAB;
const PUB_LAYERED: u32 = 0xCCCC;
/// Transport-wide sequence number extension id both peers negotiated.
const TRANSPORT_CC: u8 = 3;

/// One peer's session in the table, and the contexts the peer itself uses.
struct Peer {
    addr: SocketAddr,
    /// Protects what the peer sends (the table's rx).
    send: SrtpContext,
}

fn keys(profile: SrtpProfile, seed: u8) -> SrtpKeyingMaterial {
    let key: Vec<u8> = (0..16)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i))
        .collect();
    let salt: Vec<u8> = (0..profile.salt_len() as u8)
        .map(|i| seed.wrapping_add(100).wrapping_add(i))
        .collect();
    SrtpKeyingMaterial::new(profile, &key, &salt).expect("key and salt lengths fit the profile")
}

fn install(
    table: &mut ForwardingTable,
    now: Instant,
    id: u32,
    profile: SrtpProfile,
    sink: &mut Sink,
) -> Peer {
    let rx = keys(profile, id as u8 * 2);
    let tx = keys(profile, id as u8 * 2 + 1);
    let addr: SocketAddr = ([10, 0, 0, id as u8], 5000).into();
    let send = SrtpContext::new(&rx).expect("valid keys");
    let extensions = ExtensionIds {
        transport_cc: TRANSPORT_CC,
        remb: true,
        ..Default::default()
    };
    table.apply(
        now,
        Command::InstallSession {
            id: SessionId(u64::from(id)),
            peer: addr,
            rx,
            tx,
            rtcp_ssrc: Ssrc(0x5000_0000 + id),
            extensions,
        },
        sink,
    );
    Peer { addr, send }
}

fn route(publisher_ssrc: u32, subscriber_ssrc: u32, rtx: bool, layered: bool) -> Command {
    let mut pt_map = [(Pt(0), Pt(0)); MAX_PT_MAP];
    pt_map[0] = (Pt(96), Pt(100));
    pt_map[1] = (Pt(111), Pt(111));
    Command::Route(Route {
        publisher: SessionId(1),
        publisher_ssrc: Ssrc(publisher_ssrc),
        subscriber: SessionId(2),
        subscriber_ssrc: Ssrc(subscriber_ssrc),
        kind: MediaKind::Video,
        pt_map,
        pt_map_len: 2,
        publisher_rtx: rtx.then_some((Ssrc(PUB_RTX), Pt(97))),
        subscriber_rtx: rtx.then_some((Ssrc(subscriber_ssrc + 1), Pt(101))),
        layered: layered.then_some(KeyframeFormat::Vp8),
    })
}

/// A sink with one reusable buffer: what matters is that the table never panics and
/// never claims more than a buffer.
struct Sink {
    buf: Box<[u8; MAX_DATAGRAM]>,
    sent: usize,
}

impl TransmitSink for Sink {
    fn next_buffer(&mut self) -> &mut [u8] {
        &mut self.buf[..]
    }

    fn commit(&mut self, len: usize, _dest: SocketAddr) {
        assert!(len <= MAX_DATAGRAM, "{len}");
        self.sent += 1;
    }
}

/// `data` is a sequence of operations: an op byte, a 2-byte length and that many
/// payload bytes (the last one takes what is left). The op's low 3 bits pick what is
/// done; its high bits steer the header fields the payload would rarely get right.
pub fn run(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let profile = if first & 1 == 0 {
        SrtpProfile::AeadAes128Gcm
    } else {
        SrtpProfile::Aes128CmHmacSha1_80
    };
    let mut now = fixtures::epoch();
    let mut sink = Sink {
        buf: Box::new([0; MAX_DATAGRAM]),
        sent: 0,
    };
    let mut table = ForwardingTable::new(0);
    let mut publisher = install(&mut table, now, 1, profile, &mut sink);
    let mut subscriber = install(&mut table, now, 2, profile, &mut sink);
    table.apply(now, route(PUB_SSRC, 0xB000, true, false), &mut sink);
    table.apply(now, route(PUB_LAYERED, 0xD000, false, true), &mut sink);

    let mut buf = vec![0u8; MAX_DATAGRAM + 64];
    while let Some((&op, tail)) = rest.split_first() {
        let payload = match tail.split_first_chunk::<2>() {
            Some((len, tail)) => {
                let len = usize::from(u16::from_be_bytes(*len))
                    .min(tail.len())
                    .min(1200);
                let (p, tail) = tail.split_at(len);
                rest = tail;
                p
            }
            None => {
                rest = &[];
                tail
            }
        };
        let (peer, other) = if op & 0x08 == 0 {
            (&mut publisher, &subscriber)
        } else {
            (&mut subscriber, &publisher)
        };
        let mut from = peer.addr;
        let len = match op & 0x07 {
            0..=2 => rtp(peer, op, payload, &mut buf),
            3 | 4 => rtcp(peer, op, payload, &mut buf),
            5 => {
                // Unprotected bytes, sometimes from the other peer's address.
                if op & 0x10 != 0 {
                    from = other.addr;
                }
                buf[..payload.len()].copy_from_slice(payload);
                Some(payload.len())
            }
            _ => {
                let ms = u64::from(payload.first().copied().unwrap_or(20)) * 4;
                now += Duration::from_millis(ms);
                table.handle_timeout(now, &mut sink);
                None
            }
        };
        if let Some(len) = len {
            let _ = table.handle_datagram(now, from, &mut buf[..len], &mut sink);
        }
    }
    let _ = table.poll_timeout();
    let _ = sink.sent;
}

/// Protects an RTP packet built from `payload` (version forced to 2; with op bit 0x10
/// the SSRC is one the table routes, with 0x20 the RTX stream's or the layered one's).
fn rtp(peer: &mut Peer, op: u8, payload: &[u8], buf: &mut [u8]) -> Option<usize> {
    let len = payload.len();
    if len < 12 {
        return None;
    }
    buf[..len].copy_from_slice(payload);
    buf[0] = 0x80 | (buf[0] & 0x3f);
    // Keep it RTP for the demultiplexer (RFC 5761: 64..=95 would read as RTCP).
    if (64..=95).contains(&(buf[1] & 0x7f)) {
        buf[1] &= 0xbf;
    }
    if op & 0x10 != 0 {
        let ssrc = match (op & 0x20 != 0, op & 0x40 != 0) {
            (false, _) => PUB_SSRC,
            (true, false) => PUB_RTX,
            (true, true) => PUB_LAYERED,
        };
        buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
    peer.send.protect_rtp(buf, len).ok()
}

/// Protects a compound RTCP packet built from `payload` (version forced to 2; with op
/// bit 0x10 the first packet's type and length are made to fit).
fn rtcp(peer: &mut Peer, op: u8, payload: &[u8], buf: &mut [u8]) -> Option<usize> {
    let len = payload.len();
    if len < 8 {
        return None;
    }
    buf[..len].copy_from_slice(payload);
    buf[0] = 0x80 | (buf[0] & 0x3f);
    if op & 0x10 != 0 {
        const TYPES: [u8; 4] = [200, 201, 205, 206];
        buf[1] = TYPES[usize::from(op >> 5) & 3];
        let words = (len / 4 - 1) as u16;
        buf[2..4].copy_from_slice(&words.to_be_bytes());
    }
    peer.send.protect_rtcp(buf, len).ok()
}
