//! The one type where control meets the data plane. Control decides, the data plane
//! executes: every change to forwarding state is a [`Command`], applied by each worker
//! to its own replica of the forwarding table. Nothing here does I/O.

use std::net::SocketAddr;

use crate::srtp::SrtpKeyingMaterial;

/// Identifies one WebRTC session (one peer connection) on this server.
pub type SessionId = u64;

/// What kind of media a forwarded stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// Maximum payload-type rewrites carried by one route (codec + RTX + red/ulpfec).
pub const MAX_PT_MAP: usize = 4;

/// One publisher stream (an SSRC) delivered to one subscriber as one of its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub publisher: SessionId,
    /// SSRC the publisher sends this stream with.
    pub publisher_ssrc: u32,
    pub subscriber: SessionId,
    /// Stable SSRC the subscriber sees (announced in its SDP answer).
    pub subscriber_ssrc: u32,
    pub kind: MediaKind,
    /// Publisher payload type → subscriber payload type. Unlisted types are dropped.
    pub pt_map: [(u8, u8); MAX_PT_MAP],
    pub pt_map_len: u8,
    /// The publisher's RTX stream (RFC 4588) for this stream: SSRC and payload type.
    /// Its packets are unwrapped into the NACK cache and forwarded as the original.
    pub publisher_rtx: Option<(u32, u8)>,
    /// The subscriber's RTX stream: SSRC and payload type. When present, answers to
    /// the subscriber's NACKs are sent as RTX; otherwise as the original packet.
    pub subscriber_rtx: Option<(u32, u8)>,
}

impl Route {
    /// Looks up the subscriber payload type for a publisher payload type.
    pub fn map_pt(&self, pt: u8) -> Option<u8> {
        self.pt_map[..usize::from(self.pt_map_len)]
            .iter()
            .find(|(from, _)| *from == pt)
            .map(|(_, to)| *to)
    }
}

/// A change to forwarding state, from control to every data-plane worker.
#[derive(Debug, Clone)]
pub enum Command {
    /// A session whose ICE check passed from `peer` and whose DTLS handshake exported
    /// keys. Media is accepted from and sent to `peer` only.
    InstallSession {
        id: SessionId,
        peer: SocketAddr,
        /// Keys to unprotect what the peer sends.
        rx: SrtpKeyingMaterial,
        /// Keys to protect what we send to the peer.
        tx: SrtpKeyingMaterial,
        /// SSRC the server uses as sender of its own RTCP (receiver reports, PLI, NACK).
        rtcp_ssrc: u32,
    },
    /// ICE validated `peer` for session `id`: DTLS and media from it may pass the
    /// kernel guard. The userspace tables need nothing for this; the eBPF shell adds
    /// the 5-tuple to its allow map.
    PeerValidated { id: SessionId, peer: SocketAddr },
    /// The peer's nominated address changed (ICE restart, NAT rebinding after a check).
    UpdatePeer { id: SessionId, peer: SocketAddr },
    /// Forget a session and every route to or from it.
    RemoveSession { id: SessionId },
    /// Start forwarding a publisher stream to a subscriber.
    Route(Route),
    /// Stop forwarding one publisher stream to one subscriber.
    Unroute {
        publisher: SessionId,
        publisher_ssrc: u32,
        subscriber: SessionId,
    },
    /// Relay everything the publisher of session `publisher` sends (SRTP and SRTCP,
    /// unchanged, still under the publisher's keys) to these cascade peers, besides
    /// forwarding it locally. Replaces the previous set; empty stops relaying.
    CascadeOut {
        publisher: SessionId,
        peers: Vec<SocketAddr>,
    },
    /// Packets from session `session`'s peer (a cascade origin) with these SSRCs are
    /// a relayed publisher's, protected with that publisher's keys `rx`.
    AddRelayedSource {
        session: SessionId,
        ssrcs: Vec<u32>,
        rx: SrtpKeyingMaterial,
    },
    /// Forget relayed SSRCs of `session`.
    RemoveRelayedSource { session: SessionId, ssrcs: Vec<u32> },
    /// Session `relay` is a cascade edge that receives `publisher`'s packets through
    /// `CascadeOut`: its keyframe requests and NACKs for these SSRCs reach the publisher.
    /// The packets of `cached` (video SSRCs) are kept, so the edge's NACKs are answered
    /// here, by resending them exactly as the publisher sent them; only what is no
    /// longer kept is asked of the publisher.
    RelayFeedback {
        relay: SessionId,
        publisher: SessionId,
        ssrcs: Vec<u32>,
        cached: Vec<u32>,
    },
    /// Ask the publisher of `media_ssrc` for a keyframe (PLI), subject to rate limiting.
    RequestKeyframe {
        publisher: SessionId,
        media_ssrc: u32,
    },
    /// Stop the worker (shutdown).
    Shutdown,
}

/// A datagram the data plane hands up to control: STUN or DTLS from any source.
#[derive(Debug, Clone)]
pub struct Upcall {
    pub from: SocketAddr,
    pub data: Vec<u8>,
}
