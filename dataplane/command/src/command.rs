//! The one type where control meets the data plane. Control decides, the data plane
//! executes: every change to forwarding state is a [`Command`], applied by each worker
//! to its own replica of the forwarding table. Nothing here does I/O.

use std::net::SocketAddr;

pub use crate::ids::SessionId;
use crate::ids::{Pt, Ssrc};
use crate::keys::SrtpKeyingMaterial;

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
    pub publisher_ssrc: Ssrc,
    pub subscriber: SessionId,
    /// Stable SSRC the subscriber sees (announced in its SDP answer).
    pub subscriber_ssrc: Ssrc,
    pub kind: MediaKind,
    /// Publisher payload type → subscriber payload type. Unlisted types are dropped.
    pub pt_map: [(Pt, Pt); MAX_PT_MAP],
    pub pt_map_len: u8,
    /// The publisher's RTX stream (RFC 4588) for this stream: SSRC and payload type.
    /// Its packets are unwrapped into the NACK cache and forwarded as the original.
    pub publisher_rtx: Option<(Ssrc, Pt)>,
    /// The subscriber's RTX stream: SSRC and payload type. When present, answers to
    /// the subscriber's NACKs are sent as RTX; otherwise as the original packet.
    pub subscriber_rtx: Option<(Ssrc, Pt)>,
    /// Video routes whose packets go through the subscriber stream's layer switch
    /// (sequence-number and timestamp rewriting, one forwarded layer at a time, pause),
    /// with the codec's keyframe format. Several routes of one publisher track (its
    /// simulcast layers) may then share one `subscriber_ssrc`. `None`: forwarded as is.
    pub layered: Option<KeyframeFormat>,
}

/// How keyframes are recognised in a layered route's payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeFormat {
    /// RFC 7741.
    Vp8,
    /// RFC 6184.
    H264,
    /// RFC 9628.
    Vp9,
    /// The AOMedia "RTP Payload Format For AV1".
    Av1,
    /// Not recognised: every packet counts as a switch point.
    Any,
}

/// The `a=extmap` URI of transport-wide sequence numbers
/// (draft-holmer-rmcat-transport-wide-cc-extensions-01).
pub const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Header-extension ids a peer negotiated (RFC 8285); 0 where it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtensionIds {
    /// Transport-wide sequence number: feedback to a publisher, estimation for a
    /// subscriber.
    pub transport_cc: u8,
    /// RFC 6464 client-to-mixer audio level.
    pub audio_level: u8,
    /// RFC 8843 mid, RFC 8852 rtp-stream-id and repaired-rtp-stream-id.
    pub mid: u8,
    pub rid: u8,
    pub repaired_rid: u8,
    /// Not an extension: the peer sends REMB (`goog-remb`), which stands in for
    /// transport feedback when it has none.
    pub remb: bool,
}

/// A short RTP stream id or mid as read from a header extension (at most 16 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ShortId {
    bytes: [u8; 16],
    len: u8,
}

impl ShortId {
    /// The id in `b`, or `None` when it is empty or longer than 16 bytes.
    pub fn new(b: &[u8]) -> Option<Self> {
        if b.is_empty() || b.len() > 16 {
            return None;
        }
        let mut bytes = [0; 16];
        bytes[..b.len()].copy_from_slice(b);
        Some(Self {
            bytes,
            len: b.len() as u8,
        })
    }

    /// The id as text (lossy for bytes that are not UTF-8).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes[..usize::from(self.len)])
    }
}

impl std::fmt::Debug for ShortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Route {
    /// Looks up the subscriber payload type for a publisher payload type.
    pub fn map_pt(&self, pt: Pt) -> Option<Pt> {
        self.pt_map[..usize::from(self.pt_map_len)]
            .iter()
            .find(|(from, _)| *from == pt)
            .map(|(_, to)| *to)
    }
}

/// A change to forwarding state, from control to every data-plane worker.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        rtcp_ssrc: Ssrc,
        /// Header extensions the peer negotiated. With transport-wide congestion
        /// control (`transport_cc`), the data plane gives the session a send log that
        /// every worker's replica of it shares.
        extensions: ExtensionIds,
    },
    /// ICE validated `peer` for session `id`: DTLS and media from it may pass the
    /// kernel guard, on the worker that owns the session. The userspace tables stop
    /// charging its STUN and DTLS to their upcall budget; the eBPF shell adds the
    /// 5-tuple to its allow and steering maps.
    PeerValidated { id: SessionId, peer: SocketAddr },
    /// Session `id` is gone: `peer`, validated for it before, may no longer pass the
    /// kernel guard. The userspace tables charge it again (`RemoveSession` does the
    /// same); the eBPF shell removes the 5-tuple from its maps.
    PeerRevoked { id: SessionId, peer: SocketAddr },
    /// The peer's nominated address changed (ICE restart, NAT rebinding after a check).
    UpdatePeer { id: SessionId, peer: SocketAddr },
    /// Forget a session and every route to or from it.
    RemoveSession { id: SessionId },
    /// Start forwarding a publisher stream to a subscriber.
    Route(Route),
    /// Stop forwarding one publisher stream to one subscriber.
    Unroute {
        publisher: SessionId,
        publisher_ssrc: Ssrc,
        subscriber: SessionId,
    },
    /// The data-plane workers copy everything the publisher of session `publisher`
    /// sends (SRTP and SRTCP, unchanged, still under the publisher's keys) to these
    /// cascade peers, besides forwarding it locally. Replaces the previous set; empty
    /// stops copying (nobody to copy to, or the kernel copies: [`Command::KernelFanout`]).
    CascadeOut {
        publisher: SessionId,
        peers: Vec<SocketAddr>,
    },
    /// The kernel clones the packets that come from `source` (the publisher's
    /// address) to these cascade peers (TC clone-redirect), replacing what it did for
    /// `source` before; empty peers stop it. `originals_up`: the packets still go up
    /// to the userspace workers besides (the publisher has local subscribers, or its
    /// feedback or speaker detection needs every packet); otherwise the kernel's
    /// copies are all there is. Only the eBPF shell acts on it; it reports back to
    /// control whether the kernel took it (`Sfu::handle_kernel_fanout`).
    KernelFanout {
        publisher: SessionId,
        source: SocketAddr,
        peers: Vec<SocketAddr>,
        originals_up: bool,
    },
    /// Packets from session `session`'s peer (a cascade origin) with these SSRCs are
    /// a relayed publisher's, protected with that publisher's keys `rx`.
    AddRelayedSource {
        session: SessionId,
        ssrcs: Vec<Ssrc>,
        rx: SrtpKeyingMaterial,
    },
    /// Forget relayed SSRCs of `session`.
    RemoveRelayedSource {
        session: SessionId,
        ssrcs: Vec<Ssrc>,
    },
    /// Session `relay` is a cascade edge that receives `publisher`'s packets through
    /// `CascadeOut`: its keyframe requests and NACKs for these SSRCs reach the publisher.
    /// The packets of `cached` (video SSRCs) are kept, so the edge's NACKs are answered
    /// here, by resending them exactly as the publisher sent them; only what is no
    /// longer kept is asked of the publisher.
    RelayFeedback {
        relay: SessionId,
        publisher: SessionId,
        ssrcs: Vec<Ssrc>,
        cached: Vec<Ssrc>,
    },
    /// Ask the publisher of `media_ssrc` for a keyframe (PLI), subject to rate limiting.
    RequestKeyframe {
        publisher: SessionId,
        media_ssrc: Ssrc,
    },
    /// Forward publisher layer `layer` (a routed publisher SSRC) on the layered
    /// subscriber stream `subscriber_ssrc`, from its next keyframe on (asked for);
    /// `None` pauses the stream.
    SelectLayer {
        subscriber: SessionId,
        subscriber_ssrc: Ssrc,
        layer: Option<Ssrc>,
    },
    /// Probe the path to `subscriber` up to `bps` with padding (on a video stream's
    /// RTX SSRC), so its estimate can grow beyond what it is sent; 0 stops probing.
    Probe { subscriber: SessionId, bps: u64 },
    /// Stop the worker (shutdown).
    Shutdown,
}

/// What the data plane hands up to control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upcall {
    /// A STUN or DTLS datagram from any source.
    Datagram { from: SocketAddr, data: Vec<u8> },
    /// Something control decides on, seen on the forwarding path.
    Media(MediaEvent),
}

/// Media observations for control's decisions; each is small and sent at a bounded
/// rate (never one per forwarded packet to each subscriber).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A publisher stream with an unsignalled SSRC named itself with its mid and
    /// rtp-stream-id (or, for an RTX stream, repaired-rtp-stream-id).
    StreamIdentified {
        session: SessionId,
        ssrc: Ssrc,
        mid: Option<ShortId>,
        rid: ShortId,
        repaired: bool,
    },
    /// The loudest RFC 6464 level (-dBov, 127 silence) of a publisher's audio stream
    /// over the last `period_ms`.
    AudioLevel {
        session: SessionId,
        ssrc: Ssrc,
        level: u8,
        period_ms: u16,
    },
    /// A publisher video stream's bit rate over the last second, and the size of its
    /// last keyframe (0 when unknown).
    StreamRate {
        session: SessionId,
        ssrc: Ssrc,
        bps: u64,
        width: u16,
        height: u16,
    },
    /// The estimated bandwidth to a subscriber changed by more than 10 %.
    Estimate { session: SessionId, bps: u64 },
}
