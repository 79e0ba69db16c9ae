//! Shared fixtures for the forwarding tests: keys, packets and a sink that records
//! what the table transmits.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use cascade_dataplane::command::{Command, MAX_PT_MAP, MediaKind, Route};
pub use cascade_dataplane::ids::{Pt, SessionId, Ssrc};
use cascade_dataplane::srtp::{SrtpContext, SrtpKeyingMaterial, SrtpProfile};
use cascade_dataplane::table::{MAX_DATAGRAM, TransmitSink};

pub fn keys(profile: SrtpProfile, seed: u8) -> SrtpKeyingMaterial {
    let key: Vec<u8> = (0..16)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i))
        .collect();
    let salt: Vec<u8> = (0..profile.salt_len() as u8)
        .map(|i| seed.wrapping_add(100).wrapping_add(i))
        .collect();
    SrtpKeyingMaterial::new(profile, &key, &salt).unwrap()
}

/// One peer as the table sees it, and the client-side contexts to talk to it.
pub struct Peer {
    pub id: SessionId,
    pub addr: SocketAddr,
    /// What the peer uses to protect what it sends (the table's rx).
    pub send: SrtpContext,
    /// What the peer uses to unprotect what it receives (the table's tx).
    pub recv: SrtpContext,
    pub install: Command,
}

pub fn peer(id: SessionId, port: u16, profile: SrtpProfile) -> Peer {
    let up = keys(profile, id.0 as u8 * 2);
    let down = keys(profile, id.0 as u8 * 2 + 1);
    let addr: SocketAddr = ([10, 0, 0, id.0 as u8], port).into();
    Peer {
        id,
        addr,
        send: SrtpContext::new(&up).unwrap(),
        recv: SrtpContext::new(&down).unwrap(),
        install: Command::InstallSession {
            id,
            peer: addr,
            rx: up,
            tx: down,
            rtcp_ssrc: Ssrc(0x5000_0000 + id.0 as u32 * 256),
            extensions: Default::default(),
        },
    }
}

/// Makes `p` a peer that negotiated transport-wide sequence numbers (extension `id`):
/// the table gives it the send log its estimator reads.
pub fn with_transport_cc(p: &mut Peer, id: u8) {
    if let Command::InstallSession { extensions, .. } = &mut p.install {
        extensions.transport_cc = id;
    }
}

pub fn route(
    publisher: SessionId,
    pssrc: u32,
    subscriber: SessionId,
    sssrc: u32,
    pt: (u8, u8),
) -> Command {
    route_rtx(publisher, pssrc, subscriber, sssrc, pt, None, None)
}

/// A video route with RTX streams on either side.
pub fn route_rtx(
    publisher: SessionId,
    pssrc: u32,
    subscriber: SessionId,
    sssrc: u32,
    pt: (u8, u8),
    publisher_rtx: Option<(u32, u8)>,
    subscriber_rtx: Option<(u32, u8)>,
) -> Command {
    let mut pt_map = [(Pt(0), Pt(0)); MAX_PT_MAP];
    pt_map[0] = (Pt(pt.0), Pt(pt.1));
    Command::Route(Route {
        publisher,
        publisher_ssrc: Ssrc(pssrc),
        subscriber,
        subscriber_ssrc: Ssrc(sssrc),
        kind: MediaKind::Video,
        pt_map,
        pt_map_len: 1,
        publisher_rtx: publisher_rtx.map(|(s, p)| (Ssrc(s), Pt(p))),
        subscriber_rtx: subscriber_rtx.map(|(s, p)| (Ssrc(s), Pt(p))),
        layered: None,
    })
}

/// A plaintext RTP packet with a `payload_len`-byte payload.
pub fn rtp(ssrc: u32, seq: u16, ts: u32, pt: u8, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// Protects `plain` with `ctx` into a fresh datagram.
pub fn protect(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0; plain.len() + 32];
    buf[..plain.len()].copy_from_slice(plain);
    let n = ctx.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

/// Records transmissions into preallocated storage (no allocation after creation).
pub struct RecordingSink {
    pub bufs: Vec<[u8; MAX_DATAGRAM]>,
    pub sent: Vec<(usize, SocketAddr)>,
}

impl RecordingSink {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            bufs: vec![[0; MAX_DATAGRAM]; n],
            sent: Vec::with_capacity(n),
        }
    }

    pub fn clear(&mut self) {
        self.sent.clear();
    }

    pub fn datagram(&self, i: usize) -> (&[u8], SocketAddr) {
        let (len, dest) = self.sent[i];
        (&self.bufs[i][..len], dest)
    }
}

impl TransmitSink for RecordingSink {
    fn next_buffer(&mut self) -> &mut [u8] {
        let i = self.sent.len();
        &mut self.bufs[i][..]
    }

    fn commit(&mut self, len: usize, dest: SocketAddr) {
        self.sent.push((len, dest));
    }
}
