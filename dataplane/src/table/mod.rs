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

//!
//! Where things are:
//! - `session`: per-session state (streams, routes, layered streams, SRTP contexts);
//! - this module: the table itself, construction, and [`ForwardingTable::apply`] of
//!   control's commands (sessions, routes, layer selection);
//! - `ingress`: datagrams from peers, RTP from publishers;
//! - `egress`: the last steps of every outgoing packet (rewrite, protect, queue);
//! - `rtcp`: RTCP from peers (reports, keyframe requests, estimator feedback), PLIs;
//! - `retransmit` and `nack_cache`: answering subscribers' NACKs;
//! - `timers`: periodic work (receiver reports, transport feedback, audio levels,
//!   rates, padding probes);
//! - `cascade`: cascade edges (packets relayed as they arrived, relayed sources).

mod cascade;
mod egress;
mod ingress;
mod nack_cache;
mod retransmit;
mod rtcp;
mod session;
mod timers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::nack_cache::NackCache;
use self::session::{InboundStream, LayeredStream, OutboundStream, RouteOut, Session, Slot};
use crate::budget::{UpcallBudget, UpcallBudgetConfig};
use crate::bwe::{BweConfig, SendLog, SendSideBwe};
use crate::command::{Command, KeyframeFormat, MediaEvent, MediaKind, Route, SessionId};
use crate::handoff::{Homes, NackHandoff};
use crate::ids::{SeqNo, Ssrc};
use crate::rewrite::{SequenceRewriter, Vp8Continuity};
use crate::rtcp::ReportBlock;
use crate::srtp::SrtpContext;
use crate::stats::{DropReason, LocalStats};
use crate::twcc::TwccRecorder;

/// Size of every receive and send buffer (the I/O layer's).
pub use crate::io::MAX_DATAGRAM;

/// Minimum time between two keyframe requests sent to one publisher stream.
pub const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// How often receiver reports are sent to publishers.
pub const RR_INTERVAL: Duration = Duration::from_secs(1);

/// Most inbound streams (SSRCs) one session may create; more are dropped.
const MAX_INBOUND_STREAMS: usize = 32;

/// How often transport feedback goes to publishers, audio levels go up to control and
/// probes are paced.
pub const FAST_TICK: Duration = Duration::from_millis(20);

/// Most sequence numbers the NACKs of one datagram get answered or passed on for:
/// the packets a stream's NACK cache holds. Repeats count once.
pub const MAX_NACK_SEQS: usize = nack_cache::CACHE_SLOTS;

/// Events kept between two drains by the worker; more are dropped.
pub const EVENT_CAPACITY: usize = 1024;
/// NACK hand-offs one batch may queue for other workers.
pub const HANDOFF_CAPACITY: usize = 256;

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

/// Where forwarded datagrams go: in the server, the I/O backend's batch of send
/// buffers (the worker adapts it); in tests, a recorder.
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

/// Queues `e` unless the queue is full (the worker drains it after every batch).
fn push_event(events: &mut Vec<MediaEvent>, e: MediaEvent) {
    if events.len() < EVENT_CAPACITY {
        events.push(e);
    }
}

/// One worker's replica of the forwarding state.
pub struct ForwardingTable {
    /// Distinguishes the RTCP sender SSRC of each worker, so two workers never share
    /// an SRTCP stream (and so never reuse an SRTCP index under the same key).
    worker_index: u32,
    sessions: Vec<Option<Session>>,
    free: Vec<Slot>,
    by_addr: HashMap<SocketAddr, Slot>,
    /// Addresses ICE validated, and for which session ([`Command::PeerValidated`]):
    /// their STUN and DTLS go up to control without being charged to the budget.
    validated: HashMap<SocketAddr, SessionId>,
    /// What STUN and DTLS from other sources may cost control.
    budget: UpcallBudget,
    by_id: HashMap<SessionId, Slot>,
    next_rr: Option<Instant>,
    next_fast: Option<Instant>,
    /// Origin of the µs clock (shared with every worker and send log).
    epoch: Instant,
    /// Scratch buffer for RTCP we build before protecting it into a send buffer.
    scratch: Box<[u8; MAX_DATAGRAM]>,
    /// The datagram being unprotected, as it arrived, while it is to be copied to
    /// cascade peers once it authenticates (its length, until then).
    relay_stash: Box<[u8; MAX_DATAGRAM]>,
    relay_stash_len: Option<usize>,
    /// Lost sequence numbers of a NACK being translated (at most [`MAX_NACK_SEQS`]).
    nack_scratch: Vec<u16>,
    /// One bit per sequence number, set while a NACK is collected (repeats count
    /// once); all clear in between.
    nack_seen: Box<[u64; 1024]>,
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
            validated: HashMap::new(),
            budget: UpcallBudget::default(),
            by_id: HashMap::new(),
            next_rr: None,
            next_fast: None,
            epoch: crate::bwe::clock_epoch(),
            scratch: Box::new([0; MAX_DATAGRAM]),
            relay_stash: Box::new([0; MAX_DATAGRAM]),
            relay_stash_len: None,
            nack_scratch: Vec::with_capacity(MAX_NACK_SEQS),
            nack_seen: Box::new([0; 1024]),
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

    /// Whether this worker receives the media of the session at `idx` (or no worker
    /// has been seen to, or there is only this one).
    fn is_home_of(&self, idx: Slot) -> bool {
        let (Some(homes), Some(p)) = (self.homes.as_ref(), self.sessions[idx].as_ref()) else {
            return true;
        };
        homes
            .get(idx.0, p.id)
            .is_none_or(|w| w == self.worker_index)
    }

    /// The layered stream subscriber session `sub_idx` knows as `subscriber_ssrc`.
    fn layered(&self, sub_idx: Slot, subscriber_ssrc: Ssrc) -> Option<&LayeredStream> {
        self.sessions[sub_idx].as_ref()?.layered(subscriber_ssrc)
    }

    /// Whether this worker has received packets of stream `ssrc` of the session at
    /// `idx` (only the worker that receives a stream asks its publisher for keyframes,
    /// so a command broadcast to every worker yields one request, not one per worker).
    fn has_received(&self, idx: Slot, ssrc: Ssrc) -> bool {
        self.sessions[idx]
            .as_ref()
            .and_then(|s| s.inbound(ssrc))
            .is_some_and(|i| i.last_packet.is_some())
    }

    /// The bandwidth estimator of session `id`, when it has one.
    pub fn estimator(&self, id: SessionId) -> Option<&SendSideBwe> {
        let &idx = self.by_id.get(&id)?;
        self.sessions[idx].as_ref()?.bwe.as_deref()
    }

    /// Number of installed sessions.
    pub fn session_count(&self) -> usize {
        self.by_id.len()
    }

    /// True when `addr` is the peer of an installed session.
    pub fn knows_peer(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    /// True when STUN and DTLS from `addr` go up to control uncharged: it is an
    /// installed session's peer or an address ICE validated.
    pub fn is_validated(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr) || self.validated.contains_key(addr)
    }

    /// Replaces the upcall budget (fresh, full buckets) with one of these limits.
    pub fn set_upcall_budget(&mut self, config: UpcallBudgetConfig) {
        self.budget = UpcallBudget::new(config);
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
                        tracing::error!(session = id.0, error = %e, "cannot key SRTP");
                        return true;
                    }
                };
                let session = Session {
                    id,
                    peer,
                    rx,
                    tx,
                    rtcp_ssrc: Ssrc(rtcp_ssrc.0.wrapping_add(self.worker_index)),
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
                        Slot(self.sessions.len() - 1)
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
            Command::PeerValidated { id, peer } => {
                self.validated.insert(peer, id);
            }
            Command::PeerRevoked { id, peer } => {
                if self.validated.get(&peer) == Some(&id) {
                    self.validated.remove(&peer);
                }
            }
            // The eBPF shell's part; nothing in the userspace tables.
            Command::KernelFanout { .. } => {}
            Command::AddRelayedSource { session, ssrcs, rx } => {
                self.add_relayed_source(session, ssrcs, &rx)
            }
            Command::RemoveRelayedSource { session, ssrcs } => {
                self.remove_relayed_source(session, &ssrcs)
            }
            Command::RelayFeedback {
                relay,
                publisher,
                ssrcs,
                cached,
            } => self.relay_feedback(relay, publisher, ssrcs, cached),
            Command::CascadeOut { publisher, peers } => self.cascade_out(publisher, peers),
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
                if let Some(&idx) = self.by_id.get(&publisher)
                    && self.has_received(idx, media_ssrc)
                {
                    self.send_pli(now, idx, media_ssrc, out);
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
        self.validated.retain(|_, v| *v != id);
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
                    rtx_seq: SeqNo(rand::random()),
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
                            rtx_seq: SeqNo(rand::random()),
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
        subscriber_ssrc: Ssrc,
        layer: Option<Ssrc>,
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
        if let Some(layer) = layer
            && self.has_received(publisher, layer)
        {
            self.send_pli(now, publisher, layer, out);
        }
    }

    fn unroute(&mut self, publisher: SessionId, publisher_ssrc: Ssrc, subscriber: SessionId) {
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
}
