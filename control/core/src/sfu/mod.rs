//! The rooms of this server and everything in them, sans-IO: publications,
//! subscriptions, their peer sessions and the forwarding routes between them.
//!
//! HTTP handlers call [`Sfu::publish`], [`Sfu::subscribe`], [`Sfu::delete`]...; the
//! media shell feeds STUN/DTLS datagrams and timeouts. Everything the outside must do
//! comes out of [`Sfu::poll_output`]: data-plane [`Command`]s and control datagrams.
//! It owns no socket, no clock and no thread.
//!
//! Media quality decisions live here too: it negotiates transport-wide congestion
//! control, audio levels and simulcast (rid) layers, learns layer SSRCs, bit rates and
//! subscribers' bandwidth estimates from the data plane's
//! [`MediaEvent`](cascade_command::command::MediaEvent)s, picks each subscriber's layer
//! (estimate, preferences set by `PATCH`), starts probes so an estimate can grow, and
//! elects each room's active speaker ([`RoomEvent`]s).
//!
//! This file holds the [`Sfu`] itself, its way in (datagrams, timeouts) and out
//! ([`Sfu::poll_output`]), its counters and the peer-session outputs; each concern has
//! its own file, adding methods to [`Sfu`] in an `impl` block of its own:
//! `negotiate` (WHIP/WHEP offers and answers, trickle), `resource` (publications,
//! subscriptions, their state, `DELETE`, room info), `routes` (forwarding routes),
//! `layers` (simulcast layers, probes, preferences, active speaker), `local_source`
//! (streams this server produces, such as an MCU's mix), `origin` (this
//! server relaying its publications to edges), `edge` (publications relayed here from
//! origins), `relay_link` (what both ends of a relay link share), `dto` (the public
//! data types) and `admission` (caps on sessions, per server, token subject and source
//! address). No file here reads the clock or a global RNG, or opens a socket.

mod admission;
mod dto;
mod edge;
mod fanout;
mod layers;
mod local_source;
mod negotiate;
mod origin;
mod peer_link;
mod relay_link;
mod resource;
mod routes;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use cascade_command::command::{Command, ExtensionIds, SessionId};
use cascade_command::demux::{self, PacketClass};
use cascade_command::ids::Ssrc;
use rand::Rng;
use rand::rngs::StdRng;

use crate::cert::DtlsCertificate;
use crate::session::{CloseReason, PeerSession, SessionInput, SessionOutput};
use crate::speaker::SpeakerDetector;
use crate::stun::{self, StunClass};

pub use admission::{Client, SessionLimits, address_key};
pub use dto::{
    Created, Patched, PublicationInfo, RelayAnswer, RelayKeys, RelayLayer, RelayTrack,
    ResourceEvent, ResourceInfo, ResourceState, RoomEvent, RoomEventKind, RoomInfo,
    SubscriptionPreferences, TrackInfo, TrackPreferences,
};
pub use edge::{
    RELAY_CONSENT_TIMEOUT, RELAY_GIVE_UP, RELAY_GRACE, RELAY_PROBE_INTERVAL, RELAY_REOPEN_INTERVAL,
};
pub use fanout::{KERNEL_RETRY, KernelOutcome};
pub use layers::{LAYERS_SHOW_WITHIN, SimulcastLayer};
pub use local_source::{LocalSource, LocalTrack};
pub use origin::RELAY_EDGE_TIMEOUT;
pub use relay_link::relay_probe;
pub use resource::{PublishedTrack, ResourceId};

use edge::OriginLink;
use fanout::CascadeFanout;
use origin::{EdgeFeedback, RelayToEdge};
use relay_link::RELAY_PROBE_USERNAME;
use resource::Resource;

/// What the outside world must do for the SFU.
#[derive(Debug, Clone)]
pub enum SfuOutput {
    Command(Command),
    Transmit {
        dest: SocketAddr,
        data: Vec<u8>,
    },
    /// Close a relay this edge opened on an origin (`DELETE` with a cluster token).
    CloseRelay {
        relay: String,
    },
    /// Ask the origin of remote publication `url` for its relay again (the origin
    /// stopped answering); the answer goes to [`Sfu::relay_reopened`].
    ReopenRelay {
        url: String,
    },
    /// A resource changed state (for `GET {resource}/events`).
    Event(ResourceEvent),
    /// Something happened in a room (for `GET /rtc/v1/rooms/{room}/events`).
    Room(RoomEvent),
}

/// The SFU core of one media server.
pub struct Sfu {
    cert: DtlsCertificate,
    /// Address put in answers as the host candidate.
    candidate: SocketAddr,
    /// `scheme://host[:port]` this server's resource URLs start with.
    public_url: String,
    next_session: SessionId,
    sessions: HashMap<SessionId, PeerSession>,
    session_resource: HashMap<SessionId, ResourceId>,
    by_ufrag: HashMap<String, SessionId>,
    by_addr: HashMap<SocketAddr, SessionId>,
    resources: HashMap<ResourceId, Resource>,
    /// Room → publications in publish order.
    rooms: BTreeMap<String, Vec<ResourceId>>,
    /// Relays this server runs as an origin, by relay id.
    relays: HashMap<String, RelayToEdge>,
    /// Edges this server relays to, by their media address.
    edges: HashMap<SocketAddr, EdgeFeedback>,
    /// Origins this server receives relays from, by their media address.
    origins: HashMap<SocketAddr, OriginLink>,
    /// Remote publications by their origin resource URL → local id.
    remote: HashMap<String, ResourceId>,
    /// The state each resource was last reported in.
    reported: HashMap<ResourceId, ResourceState>,
    /// Something happened that may change a resource's state.
    states_dirty: bool,
    /// Header extensions each session negotiated.
    session_ext: HashMap<SessionId, ExtensionIds>,
    /// Active speaker detection per room.
    speakers: HashMap<String, SpeakerDetector<ResourceId>>,
    /// Origin of the µs clock of speaker detection.
    epoch: Instant,
    /// Where every id, key, SSRC and ICE credential comes from.
    rng: StdRng,
    /// Who copies each publisher's packets to its cascade peers; what the kernel
    /// guard lets through.
    fanout: CascadeFanout,
    out: VecDeque<SfuOutput>,
    /// Caps checked before a session is created ([`Sfu::admit`]).
    limits: SessionLimits,
    /// Who asked for each session (for the per-client caps).
    clients: HashMap<SessionId, Client>,
    /// Sessions of local sources (`local_source`).
    local_sources: HashSet<SessionId>,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("sessions", &self.sessions.len())
            .field("resources", &self.resources.len())
            .finish_non_exhaustive()
    }
}

impl Sfu {
    /// A server with no sessions yet, started at `now`, drawing every id, key and
    /// credential from `rng` (seed it from the operating system in production).
    pub fn new(
        cert: DtlsCertificate,
        candidate: SocketAddr,
        public_url: String,
        now: Instant,
        rng: StdRng,
    ) -> Self {
        Self {
            cert,
            candidate,
            public_url: public_url.trim_end_matches('/').to_owned(),
            next_session: SessionId(1),
            sessions: HashMap::new(),
            session_resource: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            resources: HashMap::new(),
            rooms: BTreeMap::new(),
            relays: HashMap::new(),
            edges: HashMap::new(),
            origins: HashMap::new(),
            remote: HashMap::new(),
            reported: HashMap::new(),
            states_dirty: false,
            session_ext: HashMap::new(),
            speakers: HashMap::new(),
            epoch: now,
            rng,
            fanout: CascadeFanout::default(),
            out: VecDeque::new(),
            limits: SessionLimits::default(),
            clients: HashMap::new(),
            local_sources: HashSet::new(),
        }
    }

    /// Media tracks handled here: published (local and relayed here) plus delivered
    /// to subscribers.
    pub fn track_count(&self) -> usize {
        self.resources
            .values()
            .map(|r| match r {
                Resource::Publication(p) => p.tracks.len(),
                Resource::Subscription(s) => s.tracks.len(),
            })
            .sum()
    }

    /// Number of live peer sessions (connecting or connected).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of live publications published here (not those relayed from others).
    pub fn publication_count(&self) -> usize {
        self.rooms.values().map(Vec::len).sum()
    }

    /// Number of live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.resources
            .values()
            .filter(|r| matches!(r, Resource::Subscription(_)))
            .count()
    }

    /// Number of open relays.
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// A STUN or DTLS datagram that arrived on the media port.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if demux::classify(data) == PacketClass::Stun
            && let Ok(msg) = stun::parse(data)
        {
            if msg.class != StunClass::Request && self.origins.contains_key(&from) {
                self.relay_probe_answered(now, from, &msg);
                return;
            }
            if msg
                .username()
                .is_some_and(|u| u.starts_with(RELAY_PROBE_USERNAME))
            {
                self.answer_relay_probe(now, from, &msg);
                return;
            }
        }
        let session = match demux::classify(data) {
            PacketClass::Stun => stun::username(data)
                .and_then(|u| u.split(':').next())
                .and_then(|ufrag| self.by_ufrag.get(ufrag))
                .copied(),
            PacketClass::Dtls => self.by_addr.get(&from).copied(),
            _ => None,
        };
        let Some(id) = session else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let input = match demux::classify(data) {
            PacketClass::Stun => SessionInput::Stun { from, data },
            _ => SessionInput::Dtls { from, data },
        };
        s.handle_input(now, input);
        self.drain(id, now);
    }

    /// Runs timers of every session due at `now`, and releases relays idle for
    /// [`RELAY_GRACE`] (a remote publication turns idle when a sweep finds no
    /// subscription using it, so call this at least every second while relays exist).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.end_probes(now);
        let mut cmds = VecDeque::new();
        self.fanout.handle_timeout(now, &mut cmds);
        self.out.extend(cmds.into_iter().map(SfuOutput::Command));
        if !self.relays.is_empty() {
            self.expire_silent_edges(now);
        }
        if !self.remote.is_empty() {
            self.sweep_remote(now);
            self.check_origins(now);
        }
        let due: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(s) = self.sessions.get_mut(&id) {
                s.handle_input(now, SessionInput::Timeout);
                self.drain(id, now);
            }
        }
    }

    /// When [`Sfu::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.resources.values().filter_map(|r| match r {
            Resource::Publication(p) => {
                let remote = p.remote.as_ref()?;
                let idle = remote
                    .idle_since
                    .map_or(remote.next_probe, |t| t + RELAY_GRACE);
                Some(idle.min(remote.next_probe))
            }
            _ => None,
        });
        let probes = self.resources.values().filter_map(|r| match r {
            Resource::Subscription(s) => s.probe_until,
            _ => None,
        });
        self.sessions
            .values()
            .filter_map(PeerSession::poll_timeout)
            .chain(idle)
            .chain(probes)
            .chain(self.fanout.poll_timeout())
            .chain(self.next_edge_expiry())
            .min()
    }

    pub fn poll_output(&mut self) -> Option<SfuOutput> {
        self.report_states();
        let o = self.out.pop_front()?;
        if let SfuOutput::Command(c) = &o {
            // What follows from a command (kernel fan-out, revocations) comes right
            // after it.
            let mut follow = VecDeque::new();
            self.fanout.observe(c, &mut follow);
            for c in follow.into_iter().rev() {
                self.out.push_front(SfuOutput::Command(c));
            }
        }
        Some(o)
    }

    /// A kernel fast path can clone packets to cascade peers: publishers' cascade
    /// copying is asked of it ([`Command::KernelFanout`]) from now on.
    pub fn enable_kernel_fanout(&mut self) {
        self.fanout = CascadeFanout::new(true);
    }

    /// The eBPF shell's report on `request`, a [`Command::KernelFanout`] with peers.
    pub fn handle_kernel_outcome(
        &mut self,
        now: Instant,
        request: &Command,
        outcome: KernelOutcome,
    ) {
        let mut cmds = VecDeque::new();
        self.fanout
            .handle_kernel_outcome(now, request, outcome, &mut cmds);
        self.out.extend(cmds.into_iter().map(SfuOutput::Command));
    }

    fn drain(&mut self, id: SessionId, now: Instant) {
        loop {
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            let Some(o) = s.poll_output() else {
                return;
            };
            match o {
                SessionOutput::Transmit { dest, data } => {
                    self.out.push_back(SfuOutput::Transmit { dest, data });
                }
                SessionOutput::AddressValidated(addr) => {
                    self.by_addr.insert(addr, id);
                    self.out
                        .push_back(SfuOutput::Command(Command::PeerValidated {
                            id,
                            peer: addr,
                        }));
                }
                SessionOutput::Connected { peer, rx, tx } => {
                    let ext = self.session_ext.get(&id).copied().unwrap_or_default();
                    if let Some(Resource::Publication(p)) = self
                        .session_resource
                        .get(&id)
                        .and_then(|r| self.resources.get_mut(r))
                    {
                        p.keys = Some(rx);
                    }
                    self.out
                        .push_back(SfuOutput::Command(Command::InstallSession {
                            id,
                            peer,
                            rx,
                            tx,
                            rtcp_ssrc: Ssrc(self.rng.random::<u32>() & !0xff),
                            extensions: ext,
                        }));
                    self.install_routes_for(now, id);
                    self.states_dirty = true;
                }
                SessionOutput::PeerChanged(peer) => {
                    self.out
                        .push_back(SfuOutput::Command(Command::UpdatePeer { id, peer }));
                }
                SessionOutput::Closed(reason) => {
                    tracing::info!(session = id.0, %reason, "session closed");
                    if let Some(resource) = self.session_resource.get(&id).cloned() {
                        // This frees the session, its routes and its resource.
                        let _ = self.end_resource(&resource, close_reason_code(&reason));
                    } else if let Some(s) = self.sessions.remove(&id) {
                        self.forget_session(&s);
                    }
                    return;
                }
            }
        }
    }
}

/// The `reason` of the `ended` event of a resource whose peer session closed.
fn close_reason_code(reason: &CloseReason) -> &'static str {
    match reason {
        CloseReason::ConsentExpired => "consent_expired",
        CloseReason::ConnectTimeout => "connect_timeout",
        CloseReason::DtlsFailed(_) => "dtls_failed",
        CloseReason::DtlsClosed => "dtls_closed",
    }
}
