//! The forwarding table and the per-packet forwarding logic, without sockets.
//!
//! Each worker owns one [`ForwardingTable`] (a replica: control broadcasts every
//! [`Command`] to every worker), so reads need no lock. A datagram goes in through
//! [`ForwardingTable::handle_datagram`]; protected copies for subscribers come out
//! through a [`TransmitSink`] the I/O backend supplies. After warm-up (sessions
//! installed, each SSRC seen once) forwarding allocates nothing.
//!
//! It owns: which peer address is which session, SRTP contexts, routes from publisher
//! streams to subscribers, SSRC/payload-type rewriting, keyframe-request translation
//! and rate limiting, forwarding of sender reports, generation of receiver reports,
//! transport-wide feedback to publishers, a bandwidth estimator per subscriber (fed by
//! its transport feedback, or REMB), simulcast layer switching on layered routes, and
//! padding probes. What control decides on (audio levels, layer bit rates, estimates,
//! unsignalled simulcast SSRCs) goes up as [`MediaEvent`]s in [`ForwardingTable::events`].
//! It must not: decide policy (control does), block, or touch a socket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bwe::{BweConfig, SendLog, SendSideBwe};
use crate::command::{
    Command, ExtensionIds, KeyframeFormat, MAX_PT_MAP, MediaEvent, MediaKind, Route, SessionId,
    ShortId,
};
use crate::demux::{self, PacketClass};
use crate::handoff::{Homes, NackHandoff};
use crate::rewrite::{self, LayerPacket, Rewrite, SequenceRewriter, Vp8Continuity};
use crate::rtcp::{self, ReportBlock, RtcpKind};
use crate::rtp::{self, SeqTracker};
use crate::twcc::{self, TwccFeedback, TwccRecorder};

use crate::srtp::{SrtpContext, SrtpError};
use crate::stats::{DropReason, LocalStats};

/// Size of every receive and send buffer; larger datagrams are truncated by the
/// kernel and then fail authentication.
pub const MAX_DATAGRAM: usize = 2048;

/// Minimum time between two keyframe requests sent to one publisher stream.
pub const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// How often receiver reports are sent to publishers.
pub const RR_INTERVAL: Duration = Duration::from_secs(1);

/// Most inbound streams (SSRCs) one session may create; more are dropped.
const MAX_INBOUND_STREAMS: usize = 32;

/// How often transport feedback goes to publishers, audio levels go up to control and
/// probes are paced.
pub const FAST_TICK: Duration = Duration::from_millis(20);

/// Events kept between two drains by the worker; more are dropped.
pub const EVENT_CAPACITY: usize = 1024;
/// NACK hand-offs one batch may queue for other workers.
pub const HANDOFF_CAPACITY: usize = 256;

/// Bytes of padding in one probe packet.
const PROBE_PADDING: usize = 240;
/// Most probe packets per subscriber per tick.
const MAX_PROBES_PER_TICK: usize = 16;

/// Where forwarded datagrams go: the I/O backend's batch of send buffers.
/// What the data plane adds to a command for its workers: the structures every
/// worker's replica of a session shares. [`crate::worker::Dataplane::command`] makes
/// one per command and hands a clone to each worker; control never sees it.
#[derive(Debug, Clone, Default)]
pub struct SessionShared {
    /// With transport-wide congestion control: the session's send log (sequence
    /// numbers, what was sent when), written by every worker that sends to it.
    pub send_log: Option<Arc<SendLog>>,
}

impl SessionShared {
    /// What `cmd` needs shared: a fresh send log for a session that negotiated
    /// transport-wide sequence numbers, nothing otherwise.
    pub fn for_command(cmd: &Command) -> Self {
        match cmd {
            Command::InstallSession { extensions, .. } if extensions.transport_cc != 0 => Self {
                send_log: Some(Arc::new(SendLog::new())),
            },
            _ => Self::default(),
        }
    }
}

pub trait TransmitSink {
    /// The next free send buffer (at least [`MAX_DATAGRAM`] bytes). The backend
    /// flushes its batch first when it is full.
    fn next_buffer(&mut self) -> &mut [u8];
    /// Queues the first `len` bytes of the buffer last returned by `next_buffer`.
    fn commit(&mut self, len: usize, dest: SocketAddr);
}

/// What happened to a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Media or RTCP handled here (forwarded, consumed, or simply had no subscriber).
    Handled,
    /// STUN or DTLS: control must see it.
    ToControl,
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy)]
struct RouteOut {
    subscriber: usize,
    subscriber_ssrc: u32,
    pt_map: [(u8, u8); MAX_PT_MAP],
    pt_map_len: u8,
    /// The subscriber's RTX SSRC and payload type, and the next RTX sequence number.
    rtx: Option<(u32, u8)>,
    rtx_seq: u16,
    layered: Option<KeyframeFormat>,
}

impl RouteOut {
    fn map_pt(&self, pt: u8) -> Option<u8> {
        self.pt_map[..usize::from(self.pt_map_len)]
            .iter()
            .find(|(from, _)| *from == pt)
            .map(|(_, to)| *to)
    }
}

struct InboundStream {
    ssrc: u32,
    routes: Vec<RouteOut>,
    seq: SeqTracker,
    kind: Option<MediaKind>,
    /// Set on a publisher's RTX stream: the primary SSRC and payload type it repairs.
    rtx_of: Option<(u32, u8)>,
    /// The last packets of a video stream, to answer subscribers' NACKs.
    cache: Option<Box<NackCache>>,
    last_pli: Option<Instant>,
    /// Middle 32 bits of the last sender report's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    last_packet: Option<Instant>,
    /// The stream named itself (rtp-stream-id) to control, or needs not.
    identified: bool,
    /// Loudest audio level since the last report (127: none).
    level: u8,
    /// Bytes received since the last rate report, and the last keyframe's size.
    bytes: u64,
    width: u16,
    height: u16,
}

impl InboundStream {
    fn new(ssrc: u32) -> Self {
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
struct OutboundStream {
    subscriber_ssrc: u32,
    publisher: usize,
    publisher_ssrc: u32,
    /// The subscriber is a cascade edge reading the publisher's packets as they
    /// arrived (with the publisher's keys).
    relay: bool,
}

/// A subscriber stream fed by the layers of one publisher track through a rewriter.
#[derive(Debug, Clone)]
struct LayeredStream {
    subscriber_ssrc: u32,
    rewriter: SequenceRewriter,
    /// The subscriber's RTX SSRC and payload type, and the next RTX sequence number.
    rtx: Option<(u32, u8)>,
    rtx_seq: u16,
    /// The publisher session the layers come from.
    publisher: usize,
    /// VP8 streams only: PictureID and TL0PICIDX shifts across switches.
    vp8: Option<Vp8Continuity>,
}

struct Session {
    id: SessionId,
    peer: SocketAddr,
    rx: SrtpContext,
    tx: SrtpContext,
    /// Sender SSRC of RTCP this worker generates for the session.
    rtcp_ssrc: u32,
    inbound: Vec<InboundStream>,
    outbound: Vec<OutboundStream>,
    /// Cascade peers that receive this session's packets as they arrived.
    cascade: Vec<SocketAddr>,
    /// On a cascade edge: publishers relayed from this peer, each with its own keys.
    relayed: Vec<(Vec<u32>, SrtpContext)>,
    ext: ExtensionIds,
    /// Arrivals of the peer's packets, for transport feedback (when negotiated).
    twcc: Option<Box<TwccRecorder>>,
    /// The estimator of the path to the peer, the log of what every worker sent to
    /// it, and the estimate last reported.
    bwe: Option<Box<SendSideBwe>>,
    send_log: Option<Arc<SendLog>>,
    reported_bps: u64,
    layered: Vec<LayeredStream>,
    /// Probe target (bits/s, 0 for none) and bytes sent to the peer this tick.
    probe_bps: u64,
    tick_bytes: u64,
}

impl Session {
    /// The context that unprotects a packet with sender SSRC `ssrc` from this peer.
    fn rx_for(&mut self, ssrc: u32) -> &mut SrtpContext {
        match self
            .relayed
            .iter()
            .position(|(ssrcs, _)| ssrcs.contains(&ssrc))
        {
            Some(i) => &mut self.relayed[i].1,
            None => &mut self.rx,
        }
    }

    fn inbound_mut(&mut self, ssrc: u32) -> Option<&mut InboundStream> {
        self.inbound.iter_mut().find(|s| s.ssrc == ssrc)
    }

    fn layered_mut(&mut self, subscriber_ssrc: u32) -> Option<&mut LayeredStream> {
        self.layered
            .iter_mut()
            .find(|l| l.subscriber_ssrc == subscriber_ssrc)
    }

    /// Stamps the next transport-wide sequence number into the plaintext packet
    /// `slot[..len]` (when negotiated), protects it and returns the datagram length.
    /// Copies the plaintext `plain` into `slot` and returns its length there. When the
    /// peer negotiated transport sequence numbers (one-byte id) and the packet has no
    /// extension block, the copy gets one with the element in place, so that
    /// [`Self::finish_rtp`] overwrites it instead of moving the payload again.
    fn copy_rtp(&self, slot: &mut [u8], plain: &[u8]) -> usize {
        let id = self.ext.transport_cc;
        let hl = rtp::FIXED_HEADER_LEN + 4 * usize::from(plain[0] & 0x0f);
        if id == 0 || id > 14 || plain[0] & 0x10 != 0 || plain.len() < hl {
            slot[..plain.len()].copy_from_slice(plain);
            return plain.len();
        }
        slot[..hl].copy_from_slice(&plain[..hl]);
        slot[hl..hl + 8].copy_from_slice(&[0xbe, 0xde, 0, 1, (id << 4) | 1, 0, 0, 0]);
        slot[hl + 8..plain.len() + 8].copy_from_slice(&plain[hl..]);
        slot[0] |= 0x10;
        plain.len() + 8
    }

    fn finish_rtp(&mut self, slot: &mut [u8], len: usize, now_us: u64) -> Option<usize> {
        let mut len = len;
        let mut tseq = None;
        if self.ext.transport_cc != 0
            && let Some(log) = self.send_log.as_ref()
        {
            let seq = log.next_seq();
            if let Ok(n) = twcc::set_transport_seq(slot, len, self.ext.transport_cc, seq) {
                len = n;
                tseq = Some((seq, log));
            }
        }
        let n = self.tx.protect_rtp(slot, len).ok()?;
        if let Some((seq, log)) = tseq {
            log.record(seq, n, now_us);
        }
        self.tick_bytes += n as u64;
        Some(n)
    }
}

/// Queues `e` unless the queue is full (the worker drains it after every batch).
fn push_event(events: &mut Vec<MediaEvent>, e: MediaEvent) {
    if events.len() < EVENT_CAPACITY {
        events.push(e);
    }
}

/// Width and height of a VP8 keyframe whose payload (descriptor included) starts at
/// `payload`; `None` when it is not a keyframe start.
fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    if !rewrite::vp8_keyframe_start(payload) {
        return None;
    }
    let start = payload.windows(3).position(|w| w == [0x9d, 0x01, 0x2a])?;
    let d = payload.get(start + 3..start + 7)?;
    Some((
        u16::from_le_bytes([d[0], d[1]]) & 0x3fff,
        u16::from_le_bytes([d[2], d[3]]) & 0x3fff,
    ))
}

/// One worker's replica of the forwarding state.
pub struct ForwardingTable {
    /// Distinguishes the RTCP sender SSRC of each worker, so two workers never share
    /// an SRTCP stream (and so never reuse an SRTCP index under the same key).
    worker_index: u32,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    by_addr: HashMap<SocketAddr, usize>,
    by_id: HashMap<SessionId, usize>,
    next_rr: Option<Instant>,
    next_fast: Option<Instant>,
    /// Origin of the µs clock (shared with every worker and send log).
    epoch: Instant,
    /// Scratch buffer for RTCP we build before protecting it into a send buffer.
    scratch: Box<[u8; MAX_DATAGRAM]>,
    /// Lost sequence numbers of a NACK being translated.
    nack_scratch: Vec<u16>,
    report_scratch: Vec<ReportBlock>,
    /// What control must hear about; the worker drains it.
    pub events: Vec<MediaEvent>,
    /// Which worker receives each publisher's media (shared by all workers); `None`
    /// for a table that works alone.
    homes: Option<Arc<Homes>>,
    /// NACKs for other workers (their home), by worker; the worker drains it.
    pub handoffs: Vec<(u32, NackHandoff)>,
    /// A handed-off NACK is being answered: it is not handed on again.
    in_handoff: bool,
    pub stats: LocalStats,
}

impl std::fmt::Debug for ForwardingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardingTable")
            .field("worker_index", &self.worker_index)
            .field("sessions", &self.by_id.len())
            .finish_non_exhaustive()
    }
}

impl ForwardingTable {
    pub fn new(worker_index: u32) -> Self {
        Self {
            worker_index,
            sessions: Vec::new(),
            free: Vec::new(),
            by_addr: HashMap::new(),
            by_id: HashMap::new(),
            next_rr: None,
            next_fast: None,
            epoch: crate::bwe::clock_epoch(),
            scratch: Box::new([0; MAX_DATAGRAM]),
            nack_scratch: Vec::with_capacity(64),
            report_scratch: Vec::with_capacity(MAX_INBOUND_STREAMS),
            events: Vec::with_capacity(EVENT_CAPACITY),
            homes: None,
            handoffs: Vec::with_capacity(HANDOFF_CAPACITY),
            in_handoff: false,
            stats: LocalStats::default(),
        }
    }

    /// A table of worker `worker_index` among several: NACKs for publishers whose
    /// media another worker receives are handed to it ([`ForwardingTable::handoffs`]).
    pub fn with_homes(worker_index: u32, homes: Arc<Homes>) -> Self {
        Self {
            homes: Some(homes),
            ..Self::new(worker_index)
        }
    }

    /// Answers a NACK another worker handed here.
    pub fn handle_handoff(&mut self, now: Instant, h: &NackHandoff, out: &mut impl TransmitSink) {
        let Some(&idx) = self.by_id.get(&h.subscriber) else {
            return;
        };
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        self.nack_scratch.clear();
        self.nack_scratch.extend_from_slice(h.seqs());
        self.in_handoff = true;
        self.nack_from_subscriber(now_us, idx, h.subscriber_ssrc, out);
        self.in_handoff = false;
    }

    /// Hands the NACK in `nack_scratch` to the publisher's home worker when that is
    /// another worker; true when it did.
    fn hand_off_nack(&mut self, publisher: usize, sub_idx: usize, subscriber_ssrc: u32) -> bool {
        if self.in_handoff {
            return false;
        }
        let (Some(homes), Some(p), Some(sub)) = (
            self.homes.as_ref(),
            self.sessions[publisher].as_ref(),
            self.sessions[sub_idx].as_ref(),
        ) else {
            return false;
        };
        let Some(home) = homes
            .get(publisher, p.id)
            .filter(|&w| w != self.worker_index)
        else {
            return false;
        };
        let mut rest = &self.nack_scratch[..];
        while !rest.is_empty() {
            let (h, n) = NackHandoff::new(sub.id, subscriber_ssrc, rest);
            if self.handoffs.len() < self.handoffs.capacity() {
                self.handoffs.push((home, h));
            } else {
                self.stats.drop(DropReason::WorkerBusy);
            }
            rest = &rest[n..];
        }
        true
    }

    /// Whether this worker receives the media of the session at `idx` (or no worker
    /// has been seen to, or there is only this one).
    fn is_home_of(&self, idx: usize) -> bool {
        let (Some(homes), Some(p)) = (self.homes.as_ref(), self.sessions[idx].as_ref()) else {
            return true;
        };
        homes.get(idx, p.id).is_none_or(|w| w == self.worker_index)
    }

    /// Number of installed sessions.
    pub fn session_count(&self) -> usize {
        self.by_id.len()
    }

    /// True when `addr` is the peer of an installed session.
    pub fn knows_peer(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    /// Applies one command from control, with state of its own for what the command
    /// creates (a new session's send log). Returns false for `Shutdown`.
    pub fn apply(&mut self, now: Instant, cmd: Command, out: &mut impl TransmitSink) -> bool {
        let shared = SessionShared::for_command(&cmd);
        self.apply_shared(now, cmd, shared, out)
    }

    /// Applies one command from control, with the state `shared` by every worker's
    /// replica of what it creates. Returns false for `Shutdown`.
    pub fn apply_shared(
        &mut self,
        now: Instant,
        cmd: Command,
        shared: SessionShared,
        out: &mut impl TransmitSink,
    ) -> bool {
        match cmd {
            Command::InstallSession {
                id,
                peer,
                rx,
                tx,
                rtcp_ssrc,
                extensions,
            } => {
                let send_log = shared.send_log;
                self.remove_session(id);
                let (rx, tx) = match (SrtpContext::new(&rx), SrtpContext::new(&tx)) {
                    (Ok(rx), Ok(tx)) => (rx, tx),
                    (Err(e), _) | (_, Err(e)) => {
                        tracing::error!(session = id, error = %e, "cannot key SRTP");
                        return true;
                    }
                };
                let session = Session {
                    id,
                    peer,
                    rx,
                    tx,
                    rtcp_ssrc: rtcp_ssrc.wrapping_add(self.worker_index),
                    inbound: Vec::new(),
                    outbound: Vec::new(),
                    cascade: Vec::new(),
                    relayed: Vec::new(),
                    ext: extensions,
                    twcc: (extensions.transport_cc != 0).then(|| Box::new(TwccRecorder::new())),
                    bwe: (extensions.transport_cc != 0 || extensions.remb)
                        .then(|| Box::new(SendSideBwe::new(BweConfig::default()))),
                    send_log,
                    reported_bps: 0,
                    layered: Vec::new(),
                    probe_bps: 0,
                    tick_bytes: 0,
                };
                let idx = match self.free.pop() {
                    Some(i) => {
                        self.sessions[i] = Some(session);
                        i
                    }
                    None => {
                        self.sessions.push(Some(session));
                        self.sessions.len() - 1
                    }
                };
                self.by_id.insert(id, idx);
                self.by_addr.insert(peer, idx);
                if self.next_rr.is_none() {
                    self.next_rr = Some(now + RR_INTERVAL);
                }
                if self.next_fast.is_none() {
                    self.next_fast = Some(now + FAST_TICK);
                }
            }
            Command::UpdatePeer { id, peer } => {
                if let Some(&idx) = self.by_id.get(&id)
                    && let Some(s) = self.sessions[idx].as_mut()
                {
                    self.by_addr.remove(&s.peer);
                    s.peer = peer;
                    self.by_addr.insert(peer, idx);
                }
            }
            Command::RemoveSession { id } => self.remove_session(id),
            Command::PeerValidated { .. } => {}
            Command::AddRelayedSource { session, ssrcs, rx } => {
                if let Some(&idx) = self.by_id.get(&session)
                    && let Some(s) = self.sessions[idx].as_mut()
                {
                    match SrtpContext::new(&rx) {
                        Ok(ctx) => s.relayed.push((ssrcs, ctx)),
                        Err(e) => tracing::error!(error = %e, "cannot key relayed source"),
                    }
                }
            }
            Command::RemoveRelayedSource { session, ssrcs } => {
                if let Some(&idx) = self.by_id.get(&session)
                    && let Some(s) = self.sessions[idx].as_mut()
                {
                    s.relayed
                        .retain(|(x, _)| !x.iter().any(|v| ssrcs.contains(v)));
                }
            }
            Command::RelayFeedback {
                relay,
                publisher,
                ssrcs,
                cached,
            } => {
                if let (Some(&r), Some(&p)) = (self.by_id.get(&relay), self.by_id.get(&publisher)) {
                    if let Some(s) = self.sessions[r].as_mut() {
                        for ssrc in ssrcs {
                            if !s
                                .outbound
                                .iter()
                                .any(|o| o.subscriber_ssrc == ssrc && o.publisher == p)
                            {
                                s.outbound.push(OutboundStream {
                                    subscriber_ssrc: ssrc,
                                    publisher: p,
                                    publisher_ssrc: ssrc,
                                    relay: true,
                                });
                            }
                        }
                    }
                    if let Some(publisher) = self.sessions[p].as_mut() {
                        for ssrc in cached {
                            if publisher.inbound_mut(ssrc).is_none()
                                && publisher.inbound.len() < MAX_INBOUND_STREAMS
                            {
                                publisher.inbound.push(InboundStream::new(ssrc));
                            }
                            if let Some(stream) = publisher.inbound_mut(ssrc) {
                                stream.kind = Some(MediaKind::Video);
                                if stream.cache.is_none() {
                                    stream.cache = Some(NackCache::new());
                                }
                            }
                        }
                    }
                }
            }
            Command::CascadeOut { publisher, peers } => {
                if let Some(&idx) = self.by_id.get(&publisher)
                    && let Some(s) = self.sessions[idx].as_mut()
                {
                    s.cascade = peers;
                }
            }
            Command::Route(route) => self.route(route),
            Command::Unroute {
                publisher,
                publisher_ssrc,
                subscriber,
            } => self.unroute(publisher, publisher_ssrc, subscriber),
            Command::RequestKeyframe {
                publisher,
                media_ssrc,
            } => {
                if let Some(&idx) = self.by_id.get(&publisher) {
                    // Only the worker that receives the stream asks for it, so a
                    // broadcast command yields one request, not one per worker.
                    let seen = self.sessions[idx]
                        .as_ref()
                        .and_then(|s| s.inbound.iter().find(|i| i.ssrc == media_ssrc))
                        .is_some_and(|i| i.last_packet.is_some());
                    if seen {
                        self.send_pli(now, idx, media_ssrc, out);
                    }
                }
            }
            Command::SelectLayer {
                subscriber,
                subscriber_ssrc,
                layer,
            } => self.select_layer(now, subscriber, subscriber_ssrc, layer, out),
            Command::Probe { subscriber, bps } => {
                if let Some(&idx) = self.by_id.get(&subscriber)
                    && let Some(s) = self.sessions[idx].as_mut()
                {
                    s.probe_bps = bps;
                }
            }
            Command::Shutdown => return false,
        }
        true
    }

    fn remove_session(&mut self, id: SessionId) {
        let Some(idx) = self.by_id.remove(&id) else {
            return;
        };
        if let Some(s) = self.sessions[idx].take()
            && self.by_addr.get(&s.peer) == Some(&idx)
        {
            self.by_addr.remove(&s.peer);
        }
        for s in self.sessions.iter_mut().flatten() {
            for i in &mut s.inbound {
                i.routes.retain(|r| r.subscriber != idx);
            }
            s.outbound.retain(|o| o.publisher != idx);
            s.layered.retain(|l| l.publisher != idx);
        }
        self.free.push(idx);
    }

    fn route(&mut self, route: Route) {
        let (Some(&p), Some(&s)) = (
            self.by_id.get(&route.publisher),
            self.by_id.get(&route.subscriber),
        ) else {
            tracing::debug!(?route, "route for an unknown session ignored");
            return;
        };
        // A layered stream outlives the re-routing of its layers (its numbering goes on).
        let kept = self.sessions[s].as_mut().and_then(|x| {
            let i = x
                .layered
                .iter()
                .position(|l| l.subscriber_ssrc == route.subscriber_ssrc)?;
            Some(x.layered.swap_remove(i))
        });
        self.unroute(route.publisher, route.publisher_ssrc, route.subscriber);
        if let (Some(k), Some(x)) = (kept, self.sessions[s].as_mut()) {
            x.layered.push(k);
        }
        if let Some(publisher) = self.sessions[p].as_mut() {
            if publisher.inbound_mut(route.publisher_ssrc).is_none() {
                publisher
                    .inbound
                    .push(InboundStream::new(route.publisher_ssrc));
            }
            if let Some(stream) = publisher.inbound_mut(route.publisher_ssrc) {
                stream.kind = Some(route.kind);
                if route.kind == MediaKind::Video && stream.cache.is_none() {
                    stream.cache = Some(NackCache::new());
                }
                stream.routes.push(RouteOut {
                    subscriber: s,
                    subscriber_ssrc: route.subscriber_ssrc,
                    pt_map: route.pt_map,
                    pt_map_len: route.pt_map_len,
                    rtx: route.subscriber_rtx,
                    rtx_seq: rand::random(),
                    layered: route.layered,
                });
            }
            if let Some((rtx_ssrc, _)) = route.publisher_rtx
                && publisher.inbound.len() < MAX_INBOUND_STREAMS
            {
                if publisher.inbound_mut(rtx_ssrc).is_none() {
                    publisher.inbound.push(InboundStream::new(rtx_ssrc));
                }
                if let Some(rtx) = publisher.inbound_mut(rtx_ssrc) {
                    rtx.rtx_of = Some((route.publisher_ssrc, route.pt_map[0].0));
                }
            }
        }
        if let Some(subscriber) = self.sessions[s].as_mut() {
            subscriber.outbound.push(OutboundStream {
                subscriber_ssrc: route.subscriber_ssrc,
                publisher: p,
                publisher_ssrc: route.publisher_ssrc,
                relay: false,
            });
            if route.layered.is_some() {
                match subscriber.layered_mut(route.subscriber_ssrc) {
                    Some(l) => l.rtx = route.subscriber_rtx,
                    None => {
                        let clock = match route.kind {
                            MediaKind::Audio => 48_000,
                            MediaKind::Video => 90_000,
                        };
                        let mut rewriter = SequenceRewriter::new(clock);
                        // The first layer routed is forwarded until control says
                        // otherwise.
                        rewriter.select(Some(route.publisher_ssrc));
                        subscriber.layered.push(LayeredStream {
                            subscriber_ssrc: route.subscriber_ssrc,
                            rewriter,
                            rtx: route.subscriber_rtx,
                            rtx_seq: rand::random(),
                            publisher: p,
                            vp8: (route.layered == Some(KeyframeFormat::Vp8))
                                .then(Vp8Continuity::default),
                        });
                    }
                }
            }
        }
    }

    fn select_layer(
        &mut self,
        now: Instant,
        subscriber: SessionId,
        subscriber_ssrc: u32,
        layer: Option<u32>,
        out: &mut impl TransmitSink,
    ) {
        let Some(&s) = self.by_id.get(&subscriber) else {
            return;
        };
        let Some(sub) = self.sessions[s].as_mut() else {
            return;
        };
        let Some(l) = sub.layered_mut(subscriber_ssrc) else {
            return;
        };
        if l.rewriter.target() == layer {
            return;
        }
        l.rewriter.select(layer);
        let publisher = l.publisher;
        if let Some(layer) = layer {
            // Only the worker that receives the layer asks for its keyframe.
            let seen = self.sessions[publisher]
                .as_ref()
                .and_then(|p| p.inbound.iter().find(|i| i.ssrc == layer))
                .is_some_and(|i| i.last_packet.is_some());
            if seen {
                self.send_pli(now, publisher, layer, out);
            }
        }
    }

    fn unroute(&mut self, publisher: SessionId, publisher_ssrc: u32, subscriber: SessionId) {
        let (Some(&p), Some(&s)) = (self.by_id.get(&publisher), self.by_id.get(&subscriber)) else {
            return;
        };
        if let Some(stream) = self.sessions[p]
            .as_mut()
            .and_then(|x| x.inbound_mut(publisher_ssrc))
        {
            stream.routes.retain(|r| r.subscriber != s);
        }
        if let Some(sub) = self.sessions[s].as_mut() {
            sub.outbound
                .retain(|o| !(o.publisher == p && o.publisher_ssrc == publisher_ssrc));
            let outbound = &sub.outbound;
            sub.layered.retain(|l| {
                outbound
                    .iter()
                    .any(|o| o.subscriber_ssrc == l.subscriber_ssrc)
            });
        }
    }

    /// Handles one received datagram in place in `buf`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut impl TransmitSink,
    ) -> Disposition {
        self.stats.packets_in += 1;
        self.stats.bytes_in += buf.len() as u64;
        let disposition = match demux::classify(buf) {
            PacketClass::Stun | PacketClass::Dtls => Disposition::ToControl,
            PacketClass::Other => Disposition::Dropped(DropReason::Malformed),
            class @ (PacketClass::Rtp | PacketClass::Rtcp) => match self.by_addr.get(&from) {
                None => Disposition::Dropped(DropReason::UnknownSource),
                Some(&idx) => {
                    self.relay(idx, buf, out);
                    if class == PacketClass::Rtp {
                        self.handle_rtp(now, idx, buf, out)
                    } else {
                        self.handle_rtcp(now, idx, buf, out)
                    }
                }
            },
        };
        if let Disposition::Dropped(reason) = disposition {
            self.stats.drop(reason);
        }
        disposition
    }

    /// Copies a datagram, as it arrived, to the session's cascade peers (before it is
    /// unprotected in place).
    fn relay(&mut self, idx: usize, buf: &[u8], out: &mut impl TransmitSink) {
        let Some(s) = self.sessions[idx].as_ref() else {
            return;
        };
        for &peer in &s.cascade {
            let slot = out.next_buffer();
            if slot.len() < buf.len() {
                continue;
            }
            slot[..buf.len()].copy_from_slice(buf);
            out.commit(buf.len(), peer);
            self.stats.packets_out += 1;
            self.stats.bytes_out += buf.len() as u64;
            self.stats.relayed += 1;
        }
    }

    fn handle_rtp(
        &mut self,
        now: Instant,
        idx: usize,
        buf: &mut [u8],
        out: &mut impl TransmitSink,
    ) -> Disposition {
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return Disposition::Dropped(DropReason::UnknownSource);
        };
        // RTP's SSRC is in clear at bytes 8..12 (demux checked the length).
        let ssrc = buf
            .get(8..12)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let mut len = match publisher.rx_for(ssrc).unprotect_rtp(buf) {
            Ok(len) => len,
            Err(e) => return Disposition::Dropped(srtp_drop_reason(&e)),
        };
        let Ok(mut header) = rtp::parse(&buf[..len]) else {
            return Disposition::Dropped(DropReason::Malformed);
        };
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let ext = publisher.ext;
        if let Some(rec) = publisher.twcc.as_mut()
            && let Some(tseq) = twcc::transport_seq(&buf[..len], &header, ext.transport_cc)
        {
            rec.record(tseq, now_us);
        }
        let mut si = match publisher.inbound.iter().position(|s| s.ssrc == header.ssrc) {
            Some(i) => i,
            None if publisher.inbound.len() < MAX_INBOUND_STREAMS => {
                publisher.inbound.push(InboundStream::new(header.ssrc));
                publisher.inbound.len() - 1
            }
            None => return Disposition::Dropped(DropReason::NoRoute),
        };
        let session_id = publisher.id;
        if let Some(homes) = &self.homes {
            homes.set(idx, session_id, self.worker_index);
        }
        let stream = &mut publisher.inbound[si];
        stream.last_packet = Some(now);
        stream.bytes += len as u64;
        if ext.rid != 0 && !stream.identified {
            let pkt = &buf[..len];
            let rid = rtp::extension_element(pkt, &header, ext.rid)
                .map(|r| (r, false))
                .or_else(|| {
                    (ext.repaired_rid != 0)
                        .then(|| rtp::extension_element(pkt, &header, ext.repaired_rid))
                        .flatten()
                        .map(|r| (r, true))
                });
            if let Some((rid, repaired)) = rid
                && let Some(rid) = ShortId::new(rid)
            {
                stream.identified = true;
                let mid = (ext.mid != 0)
                    .then(|| rtp::extension_element(pkt, &header, ext.mid))
                    .flatten()
                    .and_then(ShortId::new);
                push_event(
                    &mut self.events,
                    MediaEvent::StreamIdentified {
                        session: session_id,
                        ssrc: header.ssrc,
                        mid,
                        rid,
                        repaired,
                    },
                );
            }
        }
        if ext.audio_level != 0
            && let Some(&b) = rtp::extension_element(&buf[..len], &header, ext.audio_level)
                .and_then(|e| e.first())
        {
            stream.level = stream.level.min(b & 0x7f);
        }
        if let Some((primary, primary_pt)) = publisher.inbound[si].rtx_of {
            // A retransmission (RFC 4588): restore the original packet in place and
            // treat it as one of the primary stream.
            let Some(n) = unwrap_rtx(&mut buf[..len], &header, primary, primary_pt) else {
                return Disposition::Dropped(DropReason::Malformed);
            };
            len = n;
            let Ok(h) = rtp::parse(&buf[..len]) else {
                return Disposition::Dropped(DropReason::Malformed);
            };
            header = h;
            match publisher.inbound.iter().position(|s| s.ssrc == primary) {
                Some(i) => si = i,
                None => return Disposition::Handled,
            }
        } else {
            let stream = &mut publisher.inbound[si];
            let clock = match stream.kind {
                Some(MediaKind::Audio) => 48_000,
                _ => 90_000,
            };
            let arrival =
                now.saturating_duration_since(self.epoch).as_micros() as u64 * clock / 1_000_000;
            stream
                .seq
                .record(header.sequence, header.timestamp, arrival as u32);
        }
        if let Some(cache) = publisher.inbound[si].cache.as_mut() {
            cache.insert(header.sequence, &buf[..len]);
        }
        let n_routes = publisher.inbound[si].routes.len();
        // Whether the packet starts a keyframe, for layered routes (all of one stream
        // share a codec).
        let payload = header.payload_range(len);
        let keyframe_start = match publisher.inbound[si].routes.iter().find_map(|r| r.layered) {
            None | Some(KeyframeFormat::Any) => true,
            Some(KeyframeFormat::H264) => rewrite::h264_keyframe_start(&buf[payload]),
            Some(KeyframeFormat::Vp8) => match vp8_keyframe_size(&buf[payload]) {
                Some((w, h)) => {
                    let stream = &mut publisher.inbound[si];
                    (stream.width, stream.height) = (w, h);
                    true
                }
                None => false,
            },
            Some(KeyframeFormat::Vp9) => {
                let start = rewrite::vp9_keyframe_start(&buf[payload.clone()]);
                if let Some((w, h)) = start
                    .then(|| rewrite::vp9_keyframe_size(&buf[payload]))
                    .flatten()
                {
                    let stream = &mut publisher.inbound[si];
                    (stream.width, stream.height) = (w, h);
                }
                start
            }
            Some(KeyframeFormat::Av1) => rewrite::av1_keyframe_start(&buf[payload]),
        };
        for r in 0..n_routes {
            // Routes are plain data: copy one out so the subscriber can be borrowed.
            let Some(route) = self.sessions[idx]
                .as_ref()
                .and_then(|p| p.inbound.get(si))
                .and_then(|s| s.routes.get(r).copied())
            else {
                break;
            };
            let Some(pt) = route.map_pt(header.payload_type) else {
                self.stats.drop(DropReason::NoRoute);
                continue;
            };
            if route.layered.is_some() {
                let pkt = LayerPacket {
                    ssrc: header.ssrc,
                    seq: header.sequence,
                    timestamp: header.timestamp,
                    keyframe_start,
                };
                if self.send_layered(now_us, &route, &buf[..len], &pkt, pt, out) {
                    self.send_pli(now, idx, header.ssrc, out);
                }
                continue;
            }
            self.send_rewritten(
                now_us,
                route.subscriber,
                &buf[..len],
                route.subscriber_ssrc,
                pt,
                out,
            );
        }
        Disposition::Handled
    }

    /// Sends a plaintext packet of a layered route through its subscriber stream's
    /// rewriter. True when the rewriter waits for a keyframe of the packet's layer.
    fn send_layered(
        &mut self,
        now_us: u64,
        route: &RouteOut,
        plain: &[u8],
        pkt: &LayerPacket,
        pt: u8,
        out: &mut impl TransmitSink,
    ) -> bool {
        let Some(sub) = self.sessions[route.subscriber].as_mut() else {
            return false;
        };
        let Some(l) = sub.layered_mut(route.subscriber_ssrc) else {
            return false;
        };
        let (seq, timestamp, switched) = match l.rewriter.rewrite(pkt, now_us) {
            Rewrite::Forward {
                seq,
                timestamp,
                switched,
            } => (seq, timestamp, switched),
            Rewrite::Drop(rewrite::DropCause::AwaitingKeyframe) => return true,
            Rewrite::Drop(_) => return false,
        };
        let len = plain.len();
        let slot = out.next_buffer();
        if slot.len() < len + 8 + sub.tx.profile().rtp_overhead() {
            return false;
        }
        let len = sub.copy_rtp(slot, plain);
        // The packet parsed before, so its fixed header is there to rewrite.
        let _ = rtp::set_ssrc(&mut slot[..len], route.subscriber_ssrc);
        let _ = rtp::set_payload_type(&mut slot[..len], pt);
        let _ = rtp::set_sequence(&mut slot[..len], seq);
        let _ = rtp::set_timestamp(&mut slot[..len], timestamp);
        if let Some(vp8) = sub
            .layered_mut(route.subscriber_ssrc)
            .and_then(|l| l.vp8.as_mut())
            && let Ok(h) = rtp::parse(&slot[..len])
        {
            vp8.forward(&mut slot[h.payload_range(len)], switched);
        }
        match sub.finish_rtp(slot, len, now_us) {
            Some(n) => {
                out.commit(n, sub.peer);
                self.stats.packets_out += 1;
                self.stats.bytes_out += n as u64;
            }
            None => self.stats.drop(DropReason::Malformed),
        }
        false
    }

    /// Copies a plaintext RTP packet into a send buffer, rewrites SSRC and payload
    /// type, protects it for subscriber `sub` and queues it.
    fn send_rewritten(
        &mut self,
        now_us: u64,
        sub: usize,
        plain: &[u8],
        ssrc: u32,
        pt: u8,
        out: &mut impl TransmitSink,
    ) {
        let Some(sub) = self.sessions[sub].as_mut() else {
            return;
        };
        let len = plain.len();
        let slot = out.next_buffer();
        if slot.len() < len + 8 + sub.tx.profile().rtp_overhead() {
            return;
        }
        let len = sub.copy_rtp(slot, plain);
        // The packet parsed before, so its fixed header is there to rewrite.
        let _ = rtp::set_ssrc(&mut slot[..len], ssrc);
        let _ = rtp::set_payload_type(&mut slot[..len], pt);
        match sub.finish_rtp(slot, len, now_us) {
            Some(n) => {
                out.commit(n, sub.peer);
                self.stats.packets_out += 1;
                self.stats.bytes_out += n as u64;
            }
            None => self.stats.drop(DropReason::Malformed),
        }
    }

    /// Sends the cached packet `seq` of publisher stream (`idx`, `ssrc`) to the
    /// subscriber of route `r`: as RTX when the subscriber has it, else as the
    /// original. False when the packet is not in the cache.
    fn retransmit(
        &mut self,
        now_us: u64,
        idx: usize,
        ssrc: u32,
        r: usize,
        seq: u16,
        out: &mut impl TransmitSink,
    ) -> bool {
        let slot = out.next_buffer();
        // Build the packet while the publisher's stream is borrowed...
        let (len, sub_idx) = {
            let Some(stream) = self.sessions[idx]
                .as_mut()
                .and_then(|p| p.inbound_mut(ssrc))
            else {
                return false;
            };
            let Some(route) = stream.routes.get_mut(r) else {
                return false;
            };
            let Some(plain) = stream.cache.as_ref().and_then(|c| c.get(seq)) else {
                return false;
            };
            let Ok(header) = rtp::parse(plain) else {
                return false;
            };
            let Some(pt) = route.map_pt(header.payload_type) else {
                return false;
            };
            // Room for the packet, two bytes of OSN and the largest SRTP tag.
            if slot.len() < plain.len() + 2 + 8 + 16 {
                return true;
            }
            let len = match route.rtx {
                Some((rtx_ssrc, rtx_pt)) => {
                    let payload = header.payload_range(plain.len());
                    let hl = header.header_len;
                    let len = hl + 2 + payload.len();
                    slot[..hl].copy_from_slice(&plain[..hl]);
                    slot[0] &= !0x20; // no padding in the RTX packet
                    slot[hl..hl + 2].copy_from_slice(&seq.to_be_bytes());
                    slot[hl + 2..len].copy_from_slice(&plain[payload]);
                    let rtx_seq = route.rtx_seq;
                    route.rtx_seq = rtx_seq.wrapping_add(1);
                    let _ = rtp::set_ssrc(&mut slot[..len], rtx_ssrc);
                    let _ = rtp::set_payload_type(&mut slot[..len], rtx_pt);
                    let _ = rtp::set_sequence(&mut slot[..len], rtx_seq);
                    len
                }
                None => {
                    let len = plain.len();
                    slot[..len].copy_from_slice(plain);
                    let _ = rtp::set_ssrc(&mut slot[..len], route.subscriber_ssrc);
                    let _ = rtp::set_payload_type(&mut slot[..len], pt);
                    len
                }
            };
            (len, route.subscriber)
        };
        // ...then protect it for the subscriber.
        let Some(sub) = self.sessions[sub_idx].as_mut() else {
            return true;
        };
        if let Some(n) = sub.finish_rtp(slot, len, now_us) {
            out.commit(n, sub.peer);
            self.stats.packets_out += 1;
            self.stats.bytes_out += n as u64;
            self.stats.retransmitted += 1;
        }
        true
    }

    /// Answers a NACK of outbound sequence number `out_seq` of the layered subscriber
    /// stream `subscriber_ssrc` from the cache of the layer it was sent from (as RTX
    /// when the subscriber has it). False when the packet is not there.
    fn retransmit_layered(
        &mut self,
        now_us: u64,
        sub_idx: usize,
        subscriber_ssrc: u32,
        out_seq: u16,
        out: &mut impl TransmitSink,
    ) -> bool {
        let Some(l) = self.sessions[sub_idx]
            .as_mut()
            .and_then(|s| s.layered_mut(subscriber_ssrc))
        else {
            return false;
        };
        let Some((layer, orig)) = l.rewriter.source_of(out_seq) else {
            return false;
        };
        let (publisher, rtx) = (l.publisher, l.rtx);
        let rtx_seq = l.rtx_seq;
        let slot = out.next_buffer();
        let len = {
            let Some(stream) = self.sessions[publisher]
                .as_ref()
                .and_then(|p| p.inbound.iter().find(|i| i.ssrc == layer))
            else {
                return false;
            };
            let Some(pt) = stream
                .routes
                .iter()
                .find(|r| r.subscriber == sub_idx)
                .and_then(|r| {
                    let h = rtp::parse(stream.cache.as_ref()?.get(orig)?).ok()?;
                    r.map_pt(h.payload_type)
                })
            else {
                return false;
            };
            let Some(plain) = stream.cache.as_ref().and_then(|c| c.get(orig)) else {
                return false;
            };
            let Ok(header) = rtp::parse(plain) else {
                return false;
            };
            let Some(l) = self.sessions[sub_idx].as_ref().and_then(|s| {
                s.layered
                    .iter()
                    .find(|l| l.subscriber_ssrc == subscriber_ssrc)
            }) else {
                return false;
            };
            // Only the forwarded layer's timestamps map; older layers' packets are lost.
            let Some(ts) = l.rewriter.outbound_timestamp(layer, header.timestamp) else {
                return false;
            };
            let vp8 = l.vp8;
            if slot.len() < plain.len() + 2 + 8 + 16 {
                return true;
            }
            match rtx {
                Some((rtx_ssrc, rtx_pt)) => {
                    let payload = header.payload_range(plain.len());
                    let hl = header.header_len;
                    let len = hl + 2 + payload.len();
                    slot[..hl].copy_from_slice(&plain[..hl]);
                    slot[0] &= !0x20;
                    slot[hl..hl + 2].copy_from_slice(&out_seq.to_be_bytes());
                    slot[hl + 2..len].copy_from_slice(&plain[payload]);
                    let _ = rtp::set_ssrc(&mut slot[..len], rtx_ssrc);
                    let _ = rtp::set_payload_type(&mut slot[..len], rtx_pt);
                    let _ = rtp::set_sequence(&mut slot[..len], rtx_seq);
                    let _ = rtp::set_timestamp(&mut slot[..len], ts);
                    if let Some(vp8) = vp8 {
                        vp8.resend(&mut slot[hl + 2..len]);
                    }
                    len
                }
                None => {
                    let len = plain.len();
                    slot[..len].copy_from_slice(plain);
                    let _ = rtp::set_ssrc(&mut slot[..len], subscriber_ssrc);
                    let _ = rtp::set_payload_type(&mut slot[..len], pt);
                    let _ = rtp::set_sequence(&mut slot[..len], out_seq);
                    let _ = rtp::set_timestamp(&mut slot[..len], ts);
                    if let Some(vp8) = vp8 {
                        vp8.resend(&mut slot[header.payload_range(len)]);
                    }
                    len
                }
            }
        };
        let Some(sub) = self.sessions[sub_idx].as_mut() else {
            return true;
        };
        if rtx.is_some()
            && let Some(l) = sub.layered_mut(subscriber_ssrc)
        {
            l.rtx_seq = rtx_seq.wrapping_add(1);
        }
        if let Some(n) = sub.finish_rtp(slot, len, now_us) {
            out.commit(n, sub.peer);
            self.stats.packets_out += 1;
            self.stats.bytes_out += n as u64;
            self.stats.retransmitted += 1;
        }
        true
    }

    /// Resends the cached packet `seq` of publisher stream (`idx`, `ssrc`) to the
    /// cascade edge of session `edge` exactly as the publisher protected it (its keys,
    /// SSRC, sequence number and packet index), so the edge reads it like the original.
    /// False when the packet is not in the cache.
    fn resend_to_relay(
        &mut self,
        idx: usize,
        ssrc: u32,
        edge: usize,
        seq: u16,
        out: &mut impl TransmitSink,
    ) -> bool {
        let Some(dest) = self.sessions[edge].as_ref().map(|s| s.peer) else {
            return false;
        };
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return false;
        };
        let Some(plain) = publisher
            .inbound
            .iter()
            .find(|s| s.ssrc == ssrc)
            .and_then(|s| s.cache.as_ref())
            .and_then(|c| c.get(seq))
        else {
            return false;
        };
        let slot = out.next_buffer();
        let len = plain.len();
        if slot.len() < len + 16 {
            return true;
        }
        slot[..len].copy_from_slice(plain);
        let ctx = publisher.rx_for(ssrc);
        let Some(index) = ctx.received_index(ssrc, seq) else {
            return false;
        };
        if let Ok(n) = ctx.protect_rtp_at(slot, len, index) {
            out.commit(n, dest);
            self.stats.packets_out += 1;
            self.stats.bytes_out += n as u64;
            self.stats.retransmitted += 1;
            self.stats.relay_recovered += 1;
        }
        true
    }

    fn handle_rtcp(
        &mut self,
        now: Instant,
        idx: usize,
        buf: &mut [u8],
        out: &mut impl TransmitSink,
    ) -> Disposition {
        let Some(session) = self.sessions[idx].as_mut() else {
            return Disposition::Dropped(DropReason::UnknownSource);
        };
        // The sender SSRC of SRTCP is in clear at bytes 4..8 (demux checked the length).
        let ssrc = buf
            .get(4..8)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let len = match session.rx_for(ssrc).unprotect_rtcp(buf) {
            Ok(len) => len,
            Err(e) => return Disposition::Dropped(srtp_drop_reason(&e)),
        };
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        // The packet is copied to the scratch buffer only when something in it needs
        // an answer; iterate over the plaintext in `buf`.
        for pkt in rtcp::packets(&buf[..len]) {
            let Ok(pkt) = pkt else {
                return Disposition::Dropped(DropReason::Malformed);
            };
            let Ok(kind) = pkt.kind() else {
                continue;
            };
            match kind {
                RtcpKind::SenderReport(sr) => {
                    self.round_trip(idx, sr.reports.clone(), now_us);
                    self.forward_sender_report(now, idx, &sr, out);
                }
                RtcpKind::ReceiverReport(rr) => self.round_trip(idx, rr.reports, now_us),
                RtcpKind::Pli(pli) => self.keyframe_from_subscriber(now, idx, pli.media_ssrc, out),
                RtcpKind::Fir(fir) => {
                    for (ssrc, _) in fir.entries.clone() {
                        self.keyframe_from_subscriber(now, idx, ssrc, out);
                    }
                }
                RtcpKind::Nack(nack) => {
                    self.nack_scratch.clear();
                    self.nack_scratch.extend(nack.lost_sequences());
                    self.nack_from_subscriber(now_us, idx, nack.media_ssrc, out);
                }
                RtcpKind::TransportCc(t) => {
                    if let Some(s) = self.sessions[idx].as_mut()
                        && let (Some(bwe), Some(log)) = (s.bwe.as_mut(), s.send_log.as_ref())
                        && let Ok(fb) = TwccFeedback::parse_fci(t.sender_ssrc, t.media_ssrc, t.body)
                    {
                        log.apply_feedback(bwe, &fb, now_us);
                        if s.probe_bps > 0
                            && let Some(acked) = bwe.acked_bps()
                        {
                            bwe.on_probe_result(acked * 9 / 10);
                        }
                        self.check_estimate(idx);
                    }
                }
                RtcpKind::Remb(r) => {
                    if let Some(bwe) = self.sessions[idx].as_mut().and_then(|s| s.bwe.as_mut()) {
                        bwe.on_remb(r.bitrate_bps);
                        self.check_estimate(idx);
                    }
                }
                _ => {}
            }
        }
        Disposition::Handled
    }

    /// Feeds session `idx`'s estimator the round-trip time its report blocks show
    /// about the sender reports the server sent it.
    fn round_trip(&mut self, idx: usize, blocks: rtcp::ReportBlocks<'_>, now_us: u64) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let (Some(bwe), Some(log)) = (s.bwe.as_mut(), s.send_log.as_ref()) else {
            return;
        };
        for b in blocks {
            if let Some(rtt) = log.rtt_us(b.last_sr, b.delay_since_last_sr, now_us) {
                bwe.set_rtt(rtt);
            }
        }
    }

    /// Reports session `idx`'s estimate to control when it moved by more than 10 %.
    fn check_estimate(&mut self, idx: usize) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let Some(bps) = s.bwe.as_ref().map(|b| b.estimate_bps()) else {
            return;
        };
        if s.reported_bps == 0 || bps.abs_diff(s.reported_bps) * 10 > s.reported_bps {
            s.reported_bps = bps;
            push_event(
                &mut self.events,
                MediaEvent::Estimate { session: s.id, bps },
            );
        }
    }

    fn forward_sender_report(
        &mut self,
        now: Instant,
        idx: usize,
        sr: &rtcp::SenderReport<'_>,
        out: &mut impl TransmitSink,
    ) {
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return;
        };
        let Some(stream) = publisher.inbound_mut(sr.ssrc) else {
            return;
        };
        stream.last_sr = Some(((sr.ntp_time >> 16) as u32, now));
        for r in 0..stream.routes.len() {
            let Some(route) = self.sessions[idx]
                .as_ref()
                .and_then(|p| p.inbound.iter().find(|s| s.ssrc == sr.ssrc))
                .and_then(|s| s.routes.get(r).copied())
            else {
                break;
            };
            let rtp_time = if route.layered.is_some() {
                // Only the forwarded layer's reports, in the outbound timestamp space.
                let Some(t) = self.sessions[route.subscriber]
                    .as_ref()
                    .and_then(|s| {
                        s.layered
                            .iter()
                            .find(|l| l.subscriber_ssrc == route.subscriber_ssrc)
                    })
                    .and_then(|l| l.rewriter.outbound_timestamp(sr.ssrc, sr.rtp_time))
                else {
                    continue;
                };
                t
            } else {
                sr.rtp_time
            };
            let Ok(n) = rtcp::write_sender_report(
                &mut self.scratch[..],
                route.subscriber_ssrc,
                sr.ntp_time,
                rtp_time,
                sr.packet_count,
                sr.octet_count,
                &[],
            ) else {
                continue;
            };
            if let Some(log) = self.sessions[route.subscriber]
                .as_ref()
                .and_then(|s| s.send_log.as_ref())
            {
                log.record_report((sr.ntp_time >> 16) as u32, now_us);
            }
            self.send_rtcp(route.subscriber, n, out);
        }
    }

    /// Protects `scratch[..len]` for session `idx` and queues it.
    fn send_rtcp(&mut self, idx: usize, len: usize, out: &mut impl TransmitSink) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let slot = out.next_buffer();
        if slot.len() < len + s.tx.profile().rtcp_overhead() {
            return;
        }
        slot[..len].copy_from_slice(&self.scratch[..len]);
        match s.tx.protect_rtcp(slot, len) {
            Ok(n) => {
                out.commit(n, s.peer);
                self.stats.packets_out += 1;
                self.stats.bytes_out += n as u64;
            }
            Err(e) => tracing::debug!(error = %e, "SRTCP protect failed"),
        }
    }

    /// The publisher stream behind a subscriber's SSRC.
    fn outbound(&self, sub_idx: usize, subscriber_ssrc: u32) -> Option<OutboundStream> {
        self.sessions[sub_idx]
            .as_ref()?
            .outbound
            .iter()
            .find(|o| o.subscriber_ssrc == subscriber_ssrc)
            .copied()
    }

    fn keyframe_from_subscriber(
        &mut self,
        now: Instant,
        sub_idx: usize,
        subscriber_ssrc: u32,
        out: &mut impl TransmitSink,
    ) {
        let Some(o) = self.outbound(sub_idx, subscriber_ssrc) else {
            return;
        };
        let layer = self.sessions[sub_idx]
            .as_ref()
            .and_then(|s| {
                s.layered
                    .iter()
                    .find(|l| l.subscriber_ssrc == subscriber_ssrc)
            })
            .and_then(|l| l.rewriter.current().or(l.rewriter.target()));
        self.send_pli(now, o.publisher, layer.unwrap_or(o.publisher_ssrc), out);
    }

    /// Sends a PLI for `media_ssrc` to the publisher at `idx`, at most once per
    /// [`PLI_INTERVAL`].
    fn send_pli(&mut self, now: Instant, idx: usize, media_ssrc: u32, out: &mut impl TransmitSink) {
        let Some(publisher) = self.sessions[idx].as_mut() else {
            return;
        };
        let sender = publisher.rtcp_ssrc;
        // The publisher's packets may reach another worker than this request: the
        // stream's rate-limiting state is then created here.
        if publisher.inbound_mut(media_ssrc).is_none()
            && publisher.inbound.len() < MAX_INBOUND_STREAMS
        {
            publisher.inbound.push(InboundStream::new(media_ssrc));
        }
        let Some(stream) = publisher.inbound_mut(media_ssrc) else {
            return;
        };
        if stream
            .last_pli
            .is_some_and(|t| now.saturating_duration_since(t) < PLI_INTERVAL)
        {
            return;
        }
        stream.last_pli = Some(now);
        if let Ok(n) = rtcp::write_pli(&mut self.scratch[..], sender, media_ssrc) {
            self.send_rtcp(idx, n, out);
        }
    }

    /// Answers a subscriber's NACK from the publisher stream's cache; asks the
    /// publisher only for what the server itself does not have.
    fn nack_from_subscriber(
        &mut self,
        now_us: u64,
        sub_idx: usize,
        subscriber_ssrc: u32,
        out: &mut impl TransmitSink,
    ) {
        let Some(o) = self.outbound(sub_idx, subscriber_ssrc) else {
            return;
        };
        // The cache and the rewriters of this stream are where its media arrives.
        if self.hand_off_nack(o.publisher, sub_idx, subscriber_ssrc) {
            return;
        }
        // Here the mapping is this worker's own: it forwards the stream, or no other
        // worker is known to.
        let layered = self.sessions[sub_idx].as_ref().and_then(|s| {
            s.layered
                .iter()
                .find(|l| l.subscriber_ssrc == subscriber_ssrc)
                .map(|l| l.rewriter.current())
        });
        if let Some(current) = layered {
            // Sequence numbers of the rewritten stream: answer from the caches of the
            // layers they came from; ask the publisher for the forwarded layer's rest
            // (nothing when no layer is forwarded).
            let mut missing = 0;
            for i in 0..self.nack_scratch.len() {
                let seq = self.nack_scratch[i];
                if self.retransmit_layered(now_us, sub_idx, subscriber_ssrc, seq, out) {
                    continue;
                }
                let source = self.sessions[sub_idx]
                    .as_ref()
                    .and_then(|s| {
                        s.layered
                            .iter()
                            .find(|l| l.subscriber_ssrc == subscriber_ssrc)
                    })
                    .and_then(|l| l.rewriter.source_of(seq));
                tracing::debug!(
                    seq,
                    ?source,
                    ?current,
                    "layered NACK not answered from the cache"
                );
                if let (Some((layer, orig)), Some(current)) = (source, current)
                    && layer == current
                {
                    self.nack_scratch[missing] = orig;
                    missing += 1;
                }
            }
            self.nack_scratch.truncate(missing);
            let Some(current) = current else {
                return;
            };
            if self.nack_scratch.is_empty() {
                return;
            }
            let Some(sender) = self.sessions[o.publisher].as_ref().map(|p| p.rtcp_ssrc) else {
                return;
            };
            if let Ok(n) =
                rtcp::write_nack(&mut self.scratch[..], sender, current, &self.nack_scratch)
            {
                self.send_rtcp(o.publisher, n, out);
            }
            return;
        }
        // A cascade edge has no route here (it gets the publisher's packets as they
        // arrived): its NACKs go to the publisher, whose retransmissions it gets too.
        let route = self.sessions[o.publisher]
            .as_ref()
            .and_then(|p| p.inbound.iter().find(|s| s.ssrc == o.publisher_ssrc))
            .and_then(|s| s.routes.iter().position(|r| r.subscriber == sub_idx));
        if route.is_some() || o.relay {
            let mut missing = 0;
            for i in 0..self.nack_scratch.len() {
                let seq = self.nack_scratch[i];
                let sent = match route {
                    Some(r) => self.retransmit(now_us, o.publisher, o.publisher_ssrc, r, seq, out),
                    None => self.resend_to_relay(o.publisher, o.publisher_ssrc, sub_idx, seq, out),
                };
                if !sent {
                    self.nack_scratch[missing] = seq;
                    missing += 1;
                }
            }
            self.nack_scratch.truncate(missing);
        }
        if self.nack_scratch.is_empty() {
            return;
        }
        let Some(sender) = self.sessions[o.publisher].as_ref().map(|p| p.rtcp_ssrc) else {
            return;
        };
        if let Ok(n) = rtcp::write_nack(
            &mut self.scratch[..],
            sender,
            o.publisher_ssrc,
            &self.nack_scratch,
        ) {
            self.send_rtcp(o.publisher, n, out);
        }
    }

    /// When [`ForwardingTable::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_rr, self.next_fast) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs timers: transport feedback, audio levels and probes every [`FAST_TICK`],
    /// receiver reports to publishers and layer bit rates every [`RR_INTERVAL`].
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl TransmitSink) {
        if self.next_fast.is_some_and(|t| now >= t) {
            self.next_fast = if self.by_id.is_empty() {
                None
            } else {
                Some(now + FAST_TICK)
            };
            let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
            for idx in 0..self.sessions.len() {
                self.fast_tick(idx, now_us, out);
            }
        }
        let Some(due) = self.next_rr else {
            return;
        };
        if now < due {
            return;
        }
        self.next_rr = if self.by_id.is_empty() {
            None
        } else {
            Some(now + RR_INTERVAL)
        };
        for idx in 0..self.sessions.len() {
            let Some(s) = self.sessions[idx].as_mut() else {
                continue;
            };
            self.report_scratch.clear();
            let session = s.id;
            for stream in s.inbound.iter_mut().filter(|i| i.rtx_of.is_none()) {
                if stream.kind != Some(MediaKind::Audio) && stream.bytes > 0 {
                    let bps = stream.bytes * 8 * 1000 / RR_INTERVAL.as_millis().max(1) as u64;
                    stream.bytes = 0;
                    push_event(
                        &mut self.events,
                        MediaEvent::StreamRate {
                            session,
                            ssrc: stream.ssrc,
                            bps,
                            width: stream.width,
                            height: stream.height,
                        },
                    );
                }
                // Report only streams this worker received recently.
                if stream
                    .last_packet
                    .is_none_or(|t| now.saturating_duration_since(t) > 5 * RR_INTERVAL)
                {
                    continue;
                }
                let (lsr, dlsr) = match stream.last_sr {
                    Some((lsr, at)) => {
                        let d = now.saturating_duration_since(at);
                        // DLSR is in units of 1/65536 s.
                        (lsr, (d.as_secs_f64() * 65536.0) as u32)
                    }
                    None => (0, 0),
                };
                let r = stream.seq.report();
                self.report_scratch.push(ReportBlock {
                    ssrc: stream.ssrc,
                    fraction_lost: r.fraction_lost,
                    cumulative_lost: r.cumulative_lost,
                    extended_highest_seq: r.extended_highest_seq,
                    jitter: r.jitter,
                    last_sr: lsr,
                    delay_since_last_sr: dlsr,
                });
            }
            if self.report_scratch.is_empty() {
                continue;
            }
            let sender = s.rtcp_ssrc;
            if let Ok(n) =
                rtcp::write_receiver_report(&mut self.scratch[..], sender, &self.report_scratch)
            {
                self.send_rtcp(idx, n, out);
            }
        }
    }
}

impl ForwardingTable {
    /// One session's share of the fast timer: audio levels up to control, transport
    /// feedback to the peer, probe padding.
    fn fast_tick(&mut self, idx: usize, now_us: u64, out: &mut impl TransmitSink) {
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        for stream in &mut s.inbound {
            if stream.level < 127 {
                push_event(
                    &mut self.events,
                    MediaEvent::AudioLevel {
                        session: s.id,
                        ssrc: stream.ssrc,
                        level: stream.level,
                        period_ms: FAST_TICK.as_millis() as u16,
                    },
                );
                stream.level = 127;
            }
        }
        if s.twcc.as_ref().is_some_and(|t| t.has_feedback()) {
            let media = s.inbound.first().map_or(0, |i| i.ssrc);
            let sender = s.rtcp_ssrc;
            for _ in 0..4 {
                let Some(rec) = self.sessions[idx].as_mut().and_then(|s| s.twcc.as_mut()) else {
                    break;
                };
                match rec.build_feedback(&mut self.scratch[..1200], sender, media) {
                    Ok(Some(n)) => {
                        let more = rec.has_feedback();
                        self.send_rtcp(idx, n, out);
                        if !more {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
        self.probe(idx, now_us, out);
    }

    /// Pads the path to session `idx` up to its probe rate for this tick, with
    /// padding-only packets on a video stream's RTX SSRC (receivers discard them; their
    /// transport feedback shows what the path carries).
    fn probe(&mut self, idx: usize, now_us: u64, out: &mut impl TransmitSink) {
        let Some(s) = self.sessions[idx].as_ref() else {
            return;
        };
        if s.probe_bps == 0 || s.ext.transport_cc == 0 {
            if let Some(s) = self.sessions[idx].as_mut() {
                s.tick_bytes = 0;
            }
            return;
        }
        // The worker that forwards a layer to the subscriber pads (one, as a rule).
        // With every layer paused none does: then the publisher's home worker (where
        // its layers arrive, and would be forwarded from) pads, so that a subscriber
        // whose path came back can be found to fit a layer again.
        let forwarding = s
            .layered
            .iter()
            .enumerate()
            .filter(|(_, l)| l.rewriter.current().is_some())
            .find_map(|(i, l)| Some((i, l.rtx?)));
        let chosen = forwarding.or_else(|| {
            s.layered
                .iter()
                .enumerate()
                .filter(|(_, l)| self.is_home_of(l.publisher))
                .find_map(|(i, l)| Some((i, l.rtx?)))
        });
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let sent = std::mem::take(&mut s.tick_bytes);
        let Some((li, (rtx_ssrc, rtx_pt))) = chosen else {
            return;
        };
        let budget = s.probe_bps / 8 * FAST_TICK.as_millis() as u64 / 1000;
        let mut padding = budget.saturating_sub(sent);
        let mut n = 0;
        while padding > 0 && n < MAX_PROBES_PER_TICK {
            n += 1;
            let l = &mut s.layered[li];
            let seq = l.rtx_seq;
            l.rtx_seq = seq.wrapping_add(1);
            let slot = out.next_buffer();
            let len = rtp::FIXED_HEADER_LEN + PROBE_PADDING;
            if slot.len() < len + 8 + s.tx.profile().rtp_overhead() {
                return;
            }
            slot[..len].fill(0);
            slot[0] = 0xa0; // version 2, padding
            slot[1] = rtx_pt & 0x7f;
            slot[2..4].copy_from_slice(&seq.to_be_bytes());
            slot[8..12].copy_from_slice(&rtx_ssrc.to_be_bytes());
            slot[len - 1] = PROBE_PADDING as u8;
            match s.finish_rtp(slot, len, now_us) {
                Some(n) => {
                    out.commit(n, s.peer);
                    padding = padding.saturating_sub(n as u64);
                    self.stats.packets_out += 1;
                    self.stats.bytes_out += n as u64;
                }
                None => return,
            }
        }
        s.tick_bytes = 0;
    }
}

fn srtp_drop_reason(e: &SrtpError) -> DropReason {
    match e {
        SrtpError::Replayed => DropReason::Replayed,
        SrtpError::AuthenticationFailed => DropReason::AuthFailed,
        _ => DropReason::Malformed,
    }
}

/// Packets kept per video stream for retransmission (about half a second of 2 Mbit/s).
const CACHE_SLOTS: usize = 512;
/// Largest packet the cache keeps.
const CACHE_PACKET: usize = 1500;

/// The last [`CACHE_SLOTS`] plaintext packets of a stream, by sequence number.
/// Allocated once when the first video route appears; never again.
struct NackCache {
    /// Sequence number held by each slot; `u32::MAX` for none.
    seqs: [u32; CACHE_SLOTS],
    lens: [u16; CACHE_SLOTS],
    data: Box<[[u8; CACHE_PACKET]; CACHE_SLOTS]>,
}

impl NackCache {
    fn new() -> Box<Self> {
        Box::new(Self {
            seqs: [u32::MAX; CACHE_SLOTS],
            lens: [0; CACHE_SLOTS],
            data: vec![[0u8; CACHE_PACKET]; CACHE_SLOTS]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("the vector has CACHE_SLOTS elements")),
        })
    }

    fn insert(&mut self, seq: u16, pkt: &[u8]) {
        if pkt.len() > CACHE_PACKET {
            return;
        }
        let i = usize::from(seq) % CACHE_SLOTS;
        self.seqs[i] = u32::from(seq);
        self.lens[i] = pkt.len() as u16;
        self.data[i][..pkt.len()].copy_from_slice(pkt);
    }

    fn get(&self, seq: u16) -> Option<&[u8]> {
        let i = usize::from(seq) % CACHE_SLOTS;
        (self.seqs[i] == u32::from(seq)).then(|| &self.data[i][..usize::from(self.lens[i])])
    }
}

/// Turns an RTX packet (RFC 4588: original sequence number, then the original
/// payload) back into the original packet, in place; returns its length.
fn unwrap_rtx(pkt: &mut [u8], header: &rtp::RtpHeader, ssrc: u32, pt: u8) -> Option<usize> {
    let payload = header.payload_range(pkt.len());
    if payload.len() < 2 {
        return None;
    }
    let hl = header.header_len;
    let osn = u16::from_be_bytes([pkt[payload.start], pkt[payload.start + 1]]);
    let body = payload.start + 2..payload.end;
    let len = hl + body.len();
    pkt.copy_within(body, hl);
    pkt[0] &= !0x20; // the original's padding is not carried over
    rtp::set_ssrc(&mut pkt[..len], ssrc).ok()?;
    rtp::set_payload_type(&mut pkt[..len], pt).ok()?;
    rtp::set_sequence(&mut pkt[..len], osn).ok()?;
    Some(len)
}
