//! Per-session state of the forwarding table: the peer, its SRTP contexts, the
//! streams it sends (inbound, with their routes out) and receives (outbound, layered),
//! its transport feedback recorder and bandwidth estimator.
//!
//! It owns the shape of that state and lookups into it; what happens to packets is
//! in the sibling modules. It must not send anything.

use std::net::SocketAddr;
use std::ops::{Index, IndexMut};
use std::sync::Arc;
use std::time::Instant;

use super::nack_cache::NackCache;
use crate::bwe::{SendLog, SendSideBwe};
use crate::command::{ExtensionIds, KeyframeFormat, MAX_PT_MAP, MediaKind, SessionId};
use crate::ids::{Pt, SeqNo, Ssrc};
use crate::rewrite::{SequenceRewriter, Vp8Continuity};
use crate::rtp::SeqTracker;
use crate::srtp::SrtpContext;
use crate::twcc::TwccRecorder;

/// A session's place in the table's session vector. The same on every worker (they
/// apply the same commands in the same order); reused once the session is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Slot(pub(crate) usize);

impl Index<Slot> for Vec<Option<Session>> {
    type Output = Option<Session>;

    fn index(&self, slot: Slot) -> &Self::Output {
        &self[slot.0]
    }
}

impl IndexMut<Slot> for Vec<Option<Session>> {
    fn index_mut(&mut self, slot: Slot) -> &mut Self::Output {
        &mut self[slot.0]
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RouteOut {
    pub(super) subscriber: Slot,
    pub(super) subscriber_ssrc: Ssrc,
    pub(super) pt_map: [(Pt, Pt); MAX_PT_MAP],
    pub(super) pt_map_len: u8,
    /// The subscriber's RTX SSRC and payload type, and the next RTX sequence number.
    pub(super) rtx: Option<(Ssrc, Pt)>,
    pub(super) rtx_seq: SeqNo,
    pub(super) layered: Option<KeyframeFormat>,
}

impl RouteOut {
    pub(super) fn map_pt(&self, pt: Pt) -> Option<Pt> {
        self.pt_map[..usize::from(self.pt_map_len)]
            .iter()
            .find(|(from, _)| *from == pt)
            .map(|(_, to)| *to)
    }
}

pub(super) struct InboundStream {
    pub(super) ssrc: Ssrc,
    pub(super) routes: Vec<RouteOut>,
    pub(super) seq: SeqTracker,
    pub(super) kind: Option<MediaKind>,
    /// Set on a publisher's RTX stream: the primary SSRC and payload type it repairs.
    pub(super) rtx_of: Option<(Ssrc, Pt)>,
    /// The last packets of a video stream, to answer subscribers' NACKs.
    pub(super) cache: Option<Box<NackCache>>,
    pub(super) last_pli: Option<Instant>,
    /// Middle 32 bits of the last sender report's NTP time, and when it arrived.
    pub(super) last_sr: Option<(u32, Instant)>,
    pub(super) last_packet: Option<Instant>,
    /// The stream named itself (rtp-stream-id) to control, or needs not.
    pub(super) identified: bool,
    /// Loudest audio level since the last report (127: none).
    pub(super) level: u8,
    /// Bytes received since the last rate report, and the last keyframe's size.
    pub(super) bytes: u64,
    pub(super) width: u16,
    pub(super) height: u16,
}

impl InboundStream {
    pub(super) fn new(ssrc: Ssrc) -> Self {
        Self {
            ssrc,
            routes: Vec::new(),
            seq: SeqTracker::default(),
            kind: None,
            rtx_of: None,
            cache: None,
            last_pli: None,
            last_sr: None,
            last_packet: None,
            identified: false,
            level: 127,
            bytes: 0,
            width: 0,
            height: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct OutboundStream {
    pub(super) subscriber_ssrc: Ssrc,
    pub(super) publisher: Slot,
    pub(super) publisher_ssrc: Ssrc,
    /// The subscriber is a cascade edge reading the publisher's packets as they
    /// arrived (with the publisher's keys).
    pub(super) relay: bool,
}

/// A subscriber stream fed by the layers of one publisher track through a rewriter.
#[derive(Debug, Clone)]
pub(super) struct LayeredStream {
    pub(super) subscriber_ssrc: Ssrc,
    pub(super) rewriter: SequenceRewriter,
    /// The subscriber's RTX SSRC and payload type, and the next RTX sequence number.
    pub(super) rtx: Option<(Ssrc, Pt)>,
    pub(super) rtx_seq: SeqNo,
    /// The publisher session the layers come from.
    pub(super) publisher: Slot,
    /// VP8 streams only: PictureID and TL0PICIDX shifts across switches.
    pub(super) vp8: Option<Vp8Continuity>,
}

pub(super) struct Session {
    pub(super) id: SessionId,
    pub(super) peer: SocketAddr,
    pub(super) rx: SrtpContext,
    pub(super) tx: SrtpContext,
    /// Sender SSRC of RTCP this worker generates for the session.
    pub(super) rtcp_ssrc: Ssrc,
    pub(super) inbound: Vec<InboundStream>,
    pub(super) outbound: Vec<OutboundStream>,
    /// Cascade peers that receive this session's packets as they arrived.
    pub(super) cascade: Vec<SocketAddr>,
    /// On a cascade edge: publishers relayed from this peer, each with its own keys.
    pub(super) relayed: Vec<(Vec<Ssrc>, SrtpContext)>,
    pub(super) ext: ExtensionIds,
    /// Arrivals of the peer's packets, for transport feedback (when negotiated).
    pub(super) twcc: Option<Box<TwccRecorder>>,
    /// The estimator of the path to the peer, the log of what every worker sent to
    /// it, and the estimate last reported.
    pub(super) bwe: Option<Box<SendSideBwe>>,
    pub(super) send_log: Option<Arc<SendLog>>,
    pub(super) reported_bps: u64,
    pub(super) layered: Vec<LayeredStream>,
    /// Probe target (bits/s, 0 for none) and bytes sent to the peer this tick.
    pub(super) probe_bps: u64,
    pub(super) tick_bytes: u64,
}

impl Session {
    /// The context that unprotects a packet with sender SSRC `ssrc` from this peer.
    pub(super) fn rx_for(&mut self, ssrc: Ssrc) -> &mut SrtpContext {
        match self
            .relayed
            .iter()
            .position(|(ssrcs, _)| ssrcs.contains(&ssrc))
        {
            Some(i) => &mut self.relayed[i].1,
            None => &mut self.rx,
        }
    }

    pub(super) fn inbound(&self, ssrc: Ssrc) -> Option<&InboundStream> {
        self.inbound.iter().find(|s| s.ssrc == ssrc)
    }

    pub(super) fn inbound_mut(&mut self, ssrc: Ssrc) -> Option<&mut InboundStream> {
        self.inbound.iter_mut().find(|s| s.ssrc == ssrc)
    }

    /// The layered stream the subscriber knows as `subscriber_ssrc`.
    pub(super) fn layered(&self, subscriber_ssrc: Ssrc) -> Option<&LayeredStream> {
        self.layered
            .iter()
            .find(|l| l.subscriber_ssrc == subscriber_ssrc)
    }

    pub(super) fn layered_mut(&mut self, subscriber_ssrc: Ssrc) -> Option<&mut LayeredStream> {
        self.layered
            .iter_mut()
            .find(|l| l.subscriber_ssrc == subscriber_ssrc)
    }
}
