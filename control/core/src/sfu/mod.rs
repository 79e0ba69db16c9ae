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
//! subscribers' bandwidth estimates from the data plane's [`MediaEvent`]s, picks each
//! subscriber's layer (estimate, preferences set by `PATCH`), starts probes so an
//! estimate can grow, and elects each room's active speaker ([`RoomEvent`]s).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::{
    Command, ExtensionIds, KeyframeFormat, MAX_PT_MAP, MediaEvent, MediaKind, Route, SessionId,
    TRANSPORT_CC_URI,
};
use cascade_command::demux::{self, PacketClass};
use cascade_command::keys::SrtpKeyingMaterial;
use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;

use crate::cert::{DtlsCertificate, Fingerprint};
use crate::error::ApiError;
use crate::ice::IceCredentials;
use crate::sdp::{self, Codec, Direction, MediaAnswer, MediaType, SendStream, SessionAnswer};
use crate::session::{PeerSession, SessionInput, SessionOutput};
use crate::speaker::{self, AudioLevel, SpeakerConfig, SpeakerDetector};
use crate::stun::{self, StunClass};

/// `a=extmap` URIs of the RTP stream id extensions (RFC 8852) and mid (RFC 8843).
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// Bit rate set aside for each audio track when layers are chosen.
const AUDIO_RESERVE_BPS: u64 = 50_000;
/// Share of a subscriber's estimate (after audio) its video layers may take.
const LAYER_HEADROOM: f64 = 0.85;
/// How soon after publishing a publisher's simulcast layers are expected to show.
pub const LAYERS_SHOW_WITHIN: Duration = Duration::from_secs(5);
/// A layer's peak rate loses 1/`PEAK_DECAY` of itself with every rate report (one a
/// second) that does not renew it.
const PEAK_DECAY: u64 = 8;
/// A layer that reported no bit rate for this long is not being sent.
const LAYER_STALE: Duration = Duration::from_secs(3);
/// How long one probe lasts, and the pause between probes (doubling up to the max
/// while probes fail to raise the estimate).
const PROBE_DURATION: Duration = Duration::from_millis(1000);
const PROBE_BACKOFF_MIN: Duration = Duration::from_millis(1500);
const PROBE_BACKOFF_MAX: Duration = Duration::from_secs(3);
/// A probe aims this much above the next layer's bit rate (the estimate after a probe
/// is 90 % of what the subscriber acknowledged).
const PROBE_HEADROOM: f64 = 1.6;

/// Identifies a publication or a subscription; the last segment of its resource URL.
pub type ResourceId = String;

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

/// One event of a room's event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomEvent {
    #[serde(skip)]
    pub room: String,
    #[serde(flatten)]
    pub kind: RoomEventKind,
}

/// What happened; `type` in the JSON, and the SSE event name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEventKind {
    PublicationAdded {
        resource: String,
        user: String,
    },
    PublicationRemoved {
        resource: String,
        user: String,
    },
    /// The dominant speaker changed (`resource` is the publication's URL).
    ActiveSpeaker {
        resource: String,
        user: String,
    },
}

impl RoomEventKind {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            RoomEventKind::PublicationAdded { .. } => "publication_added",
            RoomEventKind::PublicationRemoved { .. } => "publication_removed",
            RoomEventKind::ActiveSpeaker { .. } => "active_speaker",
        }
    }
}

/// A subscriber's wishes for one delivered video track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackPreferences {
    /// Highest layer, 0 being the lowest bit rate.
    pub max_layer: Option<u8>,
    /// Largest frame size wanted (layers whose size is known and larger are skipped).
    pub max_width: Option<u16>,
    pub max_height: Option<u16>,
    /// Send no video on this track.
    pub paused: bool,
}

/// `PATCH {subscription}` JSON body: preferences for the video track on m-line `mid`,
/// or for every video track without one. Fields left out take their defaults (no
/// limit, not paused).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPreferences {
    #[serde(default)]
    pub mid: Option<String>,
    #[serde(default)]
    pub max_layer: Option<u8>,
    #[serde(default)]
    pub max_width: Option<u16>,
    #[serde(default)]
    pub max_height: Option<u16>,
    #[serde(default)]
    pub paused: bool,
}

impl SubscriptionPreferences {
    /// What applies to each matching track.
    pub fn track(&self) -> TrackPreferences {
        TrackPreferences {
            max_layer: self.max_layer,
            max_width: self.max_width,
            max_height: self.max_height,
            paused: self.paused,
        }
    }
}

/// One simulcast layer of a published video track.
#[derive(Debug, Clone)]
pub struct SimulcastLayer {
    pub rid: String,
    /// Learnt from the stream's rtp-stream-id (or signalled with `a=ssrc-group:SIM`).
    pub ssrc: Option<u32>,
    pub rtx_ssrc: Option<u32>,
    /// Last second's bit rate, when it was measured, and the last keyframe's size.
    pub bps: u64,
    pub rate_at: Option<Instant>,
    /// The recent peak of `bps` (decaying by [`PEAK_DECAY`] a report): a layer is
    /// taken only when its peak fits, so that a dip of its rate (an encoder ramping
    /// up, a quiet scene) does not switch a subscriber up and straight back down.
    pub peak_bps: u64,
    pub width: u16,
    pub height: u16,
}

/// Where a resource is in its life, as `GET {resource}` and its event stream show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Waiting for the peer's ICE and DTLS.
    Connecting,
    /// Media flows (or can: a subscription with every source available).
    Live,
    /// A source relayed from another server is lost; the relay is being re-opened.
    Reconnecting,
    /// Gone: deleted, or (for a subscription) every source it had is gone.
    Ended,
}

/// One state change of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceEvent {
    pub resource: ResourceId,
    pub state: ResourceState,
    /// Why, in one stable word: `connected`, `origin_unreachable`, `relay_reopened`,
    /// `source_ended`, `deleted`...
    pub reason: &'static str,
}

/// `GET {resource}` body.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceInfo {
    pub id: ResourceId,
    pub kind: &'static str,
    pub room: String,
    pub state: ResourceState,
    /// For a subscription: the resource URLs of its sources (on this server, or
    /// their origin's for relayed ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// For a publication relayed here from another server: its origin resource URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed_from: Option<String>,
}

/// One published track.
#[derive(Debug, Clone)]
pub struct PublishedTrack {
    pub mid: String,
    pub kind: MediaKind,
    pub codec: Codec,
    pub rtx_pt: Option<u8>,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    /// Simulcast layers in the offer's order (empty without simulcast; `ssrc` is then
    /// the first layer learnt, 0 before).
    pub layers: Vec<SimulcastLayer>,
}

impl PublishedTrack {
    /// Every (SSRC, RTX SSRC) this track sends media with, with its rate, size and
    /// recent peak rate, layers in bit-rate order (the offer's order until rates are
    /// known).
    fn sources(&self, now: Instant) -> Vec<(u32, Option<u32>, u64, u16, u16, u64)> {
        if self.layers.is_empty() {
            return vec![(self.ssrc, self.rtx_ssrc, 0, 0, 0, 0)];
        }
        let mut v: Vec<_> = self
            .layers
            .iter()
            .filter_map(|l| {
                let fresh = l
                    .rate_at
                    .is_none_or(|t| now.saturating_duration_since(t) < LAYER_STALE);
                fresh.then_some((l.ssrc?, l.rtx_ssrc, l.bps, l.width, l.height, l.peak_bps))
            })
            .collect();
        if v.iter().all(|l| l.2 > 0) {
            v.sort_by_key(|l| l.2);
        }
        v
    }
}

#[derive(Debug)]
struct Publication {
    room: String,
    user: String,
    session: SessionId,
    tracks: Vec<PublishedTrack>,
    /// The publisher's SRTP keys (what it protects with), once DTLS is done. They
    /// leave this server only inside a relay answer to an authenticated cluster call.
    keys: Option<SrtpKeyingMaterial>,
    /// Relay ids of the cascade peers this publication is relayed to.
    relays: Vec<String>,
    /// Set when the publication lives on another server and reaches this one
    /// through a relay.
    remote: Option<Box<RemoteSource>>,
    /// When it was created.
    since: Instant,
}

/// A publication of another server, relayed to this one.
#[derive(Debug, Clone)]
struct RemoteSource {
    /// Its resource URL on the origin.
    url: String,
    /// The relay resource on the origin, closed when nobody here needs it.
    relay: String,
    origin: SocketAddr,
    /// Since when no subscription here uses it.
    idle_since: Option<Instant>,
    /// When the origin last answered a probe of this relay (or the relay opened).
    last_answer: Instant,
    next_probe: Instant,
    /// Transaction ids of the last probes sent.
    probes: [[u8; 12]; RELAY_PROBES_KEPT],
    probes_sent: usize,
    /// Since when the origin is lost for this publication (no answer to probes, or a
    /// relay it no longer knows); cleared when the relay is re-opened.
    lost_since: Option<Instant>,
    /// When to ask the origin for the relay again, while lost.
    next_reopen: Instant,
    /// A re-open request is under way.
    reopening: bool,
}

/// How long a relay stays open after its last subscriber here left.
pub const RELAY_GRACE: Duration = Duration::from_secs(5);
/// How often an edge checks that each origin it relays from still answers.
pub const RELAY_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// An origin that has answered no probe for this long is lost (RFC 7675's consent
/// freshness, on the relay link).
pub const RELAY_CONSENT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an edge asks a lost origin for its relays again.
pub const RELAY_REOPEN_INTERVAL: Duration = Duration::from_secs(2);
/// How long an edge keeps trying before a lost origin's publications end here.
pub const RELAY_GIVE_UP: Duration = Duration::from_secs(30);
/// STUN USERNAME prefix of relay probes (followed by the relay id); their
/// MESSAGE-INTEGRITY uses the link's feedback keys, which only the two servers know.
const RELAY_PROBE_USERNAME: &str = "cascade-relay:";
/// Probes in flight an answer may match.
const RELAY_PROBES_KEPT: usize = 4;

/// The link from one origin server: one pseudo-session whose peer is the origin's
/// media address, carrying every publication relayed from it.
#[derive(Debug, Clone, Copy)]
struct OriginLink {
    session: SessionId,
    publications: usize,
    /// The keys this edge protects its RTCP to the origin with; also the key of
    /// the relay probes.
    keys: SrtpKeyingMaterial,
}

/// The MESSAGE-INTEGRITY key of relay link probes: the link's feedback master key and
/// salt.
fn probe_key(keys: &SrtpKeyingMaterial) -> Vec<u8> {
    let mut k = keys.key[..keys.profile.key_len()].to_vec();
    k.extend_from_slice(keys.salt());
    k
}

/// One cascade relay: a publication's packets, unchanged, to another server.
#[derive(Debug, Clone)]
struct Relay {
    publication: ResourceId,
    peer: SocketAddr,
}

/// What an edge needs to receive a relayed publication.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct RelayAnswer {
    pub relay: String,
    /// The room of the publication (the edge serves it only to that room's tokens).
    pub room: String,
    /// Keys the edge protects its RTCP to the origin with (keyframe requests, NACKs).
    pub feedback_srtp: RelayKeys,
    /// The origin's media address: relayed packets come from it.
    pub origin_media: SocketAddr,
    pub srtp: RelayKeys,
    pub tracks: Vec<RelayTrack>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RelayKeys {
    pub profile: String,
    pub key: String,
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RelayTrack {
    pub kind: String,
    pub mid: String,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
    pub codec: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
    pub fmtp: Option<String>,
    pub payload_type: u8,
    pub rtx_payload_type: Option<u8>,
    /// Simulcast layers whose SSRCs the origin knows (when the relay opened).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<RelayLayer>,
}

/// One simulcast layer of a relayed track.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RelayLayer {
    pub rid: String,
    pub ssrc: u32,
    pub rtx_ssrc: Option<u32>,
}

/// One publisher track delivered on one subscriber m-line.
#[derive(Debug, Clone)]
struct DeliveredTrack {
    publication: ResourceId,
    track: usize,
    /// The subscriber's m-line.
    mid: String,
    prefs: TrackPreferences,
    /// The layer (publisher SSRC) asked of the data plane; `None` when paused.
    selected: Option<u32>,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    pt: u8,
    rtx_pt: Option<u8>,
}

#[derive(Debug)]
struct Subscription {
    room: String,
    session: SessionId,
    tracks: Vec<DeliveredTrack>,
    /// The data plane's estimate of the path to the subscriber (transport-wide
    /// congestion control negotiated); `None` without one.
    estimate: Option<u64>,
    probe_until: Option<Instant>,
    probe_next: Instant,
    probe_backoff: Duration,
}

#[derive(Debug)]
enum Resource {
    Publication(Publication),
    Subscription(Subscription),
}

impl Resource {
    fn room(&self) -> &str {
        match self {
            Resource::Publication(p) => &p.room,
            Resource::Subscription(s) => &s.room,
        }
    }

    fn session(&self) -> SessionId {
        match self {
            Resource::Publication(p) => p.session,
            Resource::Subscription(s) => s.session,
        }
    }
}

/// `GET /rtc/v1/rooms/{room}` body.
#[derive(Debug, Serialize)]
pub struct RoomInfo {
    pub room: String,
    pub publications: Vec<PublicationInfo>,
}

#[derive(Debug, Serialize)]
pub struct PublicationInfo {
    pub resource: String,
    pub user: String,
    pub tracks: Vec<TrackInfo>,
    /// For a publication relayed here from another server: its origin resource URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed_from: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TrackInfo {
    pub kind: &'static str,
    pub mid: String,
}

/// Result of a successful publish or subscribe.
#[derive(Debug)]
pub struct Created {
    pub resource: ResourceId,
    pub answer: String,
}

/// Result of a trickle/restart PATCH.
#[derive(Debug, PartialEq, Eq)]
pub enum Patched {
    /// Candidates noted (an ICE-lite server learns addresses from checks): 204.
    NoContent,
    /// ICE restarted: our new credentials, as an sdpfrag body.
    Restarted(String),
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
    relays: HashMap<String, Relay>,
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
    out: VecDeque<SfuOutput>,
}

/// The session that reads an edge's RTCP (keyframe requests, NACKs).
#[derive(Debug, Clone, Copy)]
struct EdgeFeedback {
    session: SessionId,
    keys: SrtpKeyingMaterial,
    relays: usize,
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
            next_session: 1,
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
            out: VecDeque::new(),
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

    /// Whether publication `id`, created less than [`LAYERS_SHOW_WITHIN`] before
    /// `now`, offered simulcast layers whose SSRC has not been seen yet (a relay
    /// opened now would not carry them). A layer still missing after that is taken to
    /// be one the publisher does not send.
    pub fn layers_pending(&self, id: &str, now: Instant) -> bool {
        matches!(self.resources.get(id), Some(Resource::Publication(p))
            if now.saturating_duration_since(p.since) < LAYERS_SHOW_WITHIN
                && p.tracks.iter().any(|t| t.layers.iter().any(|l| l.ssrc.is_none())))
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

    /// The absolute URL of a resource.
    pub fn resource_url(&self, id: &str) -> String {
        format!("{}/rtc/v1/resources/{id}", self.public_url)
    }

    /// The resource id named by an absolute or relative resource URL of this server.
    pub fn resource_id_of(&self, url: &str) -> Option<ResourceId> {
        let path = match url.strip_prefix(&self.public_url) {
            Some(p) => p,
            None if url.starts_with('/') => url,
            None => return None,
        };
        let id = path.strip_prefix("/rtc/v1/resources/")?;
        (!id.is_empty() && !id.contains('/')).then(|| id.to_owned())
    }

    /// The room a resource belongs to.
    pub fn resource_room(&self, id: &str) -> Option<&str> {
        self.resources.get(id).map(Resource::room)
    }

    /// Handles a WHIP publish: answers the offer and creates a publication.
    pub fn publish(
        &mut self,
        now: Instant,
        room: &str,
        user: &str,
        offer: &str,
    ) -> Result<Created, ApiError> {
        let offer = parse_offer(offer)?;
        let mut tracks = Vec::new();
        let mut media = Vec::new();
        for m in &offer.media {
            let Some(kind) = media_kind(&m.media_type) else {
                media.push(rejected(m));
                continue;
            };
            let sends = matches!(m.direction, Direction::SendOnly | Direction::SendRecv);
            let codec = sdp::choose_codec(m);
            // Simulcast (RFC 8853): layers named by rid, their SSRCs learnt from the
            // rtp-stream-id extension (or given by an `a=ssrc-group:SIM`).
            let rids = match kind {
                MediaKind::Video if m.extmap_id(RID_URI).is_some() => m.simulcast_send_rids(),
                _ => Vec::new(),
            };
            let ssrcs = m.sender_ssrcs();
            let first = match (ssrcs.first().copied(), rids.is_empty()) {
                (Some(s), _) => Some(s),
                (None, false) => Some((0, None)),
                (None, true) => None,
            };
            match (sends, m.port != 0, codec, first) {
                (true, true, Some(codec), Some((ssrc, rtx_ssrc))) => {
                    let mid = m.mid.clone().unwrap_or_default();
                    let rtx_pt = m.rtx_payload_for(codec.payload_type);
                    let sim = m
                        .ssrc_groups
                        .iter()
                        .find(|g| g.semantics == "SIM")
                        .map(|g| g.ssrcs.clone())
                        .unwrap_or_default();
                    let layers = rids
                        .iter()
                        .enumerate()
                        .map(|(i, rid)| {
                            let ssrc = sim.get(i).copied();
                            SimulcastLayer {
                                rid: rid.clone(),
                                ssrc,
                                rtx_ssrc: ssrc.and_then(|s| {
                                    ssrcs.iter().find(|x| x.0 == s).and_then(|x| x.1)
                                }),
                                bps: 0,
                                rate_at: None,
                                peak_bps: 0,
                                width: 0,
                                height: 0,
                            }
                        })
                        .collect();
                    tracks.push(PublishedTrack {
                        mid: mid.clone(),
                        kind,
                        codec: codec.clone(),
                        rtx_pt,
                        ssrc,
                        rtx_ssrc: rtx_ssrc.filter(|_| rtx_pt.is_some()),
                        layers,
                    });
                    let mut a = answer_media(m, codec, rtx_pt, Direction::RecvOnly, None);
                    a.extmaps = accepted_extmaps(m, true);
                    a.recv_rids = rids;
                    media.push(a);
                }
                (true, true, Some(_), None) => {
                    return Err(ApiError::bad_sdp(format!(
                        "m-line {:?} sends media without declaring its SSRC (a=ssrc)",
                        m.mid.as_deref().unwrap_or("")
                    )));
                }
                _ => media.push(rejected(m)),
            }
        }
        if tracks.is_empty() {
            return Err(ApiError::no_common_codec(
                "the offer sends no audio or video in a codec this server forwards (opus, VP8, H264, VP9, AV1)",
            ));
        }
        let (session, answer) = self.new_session(now, &offer, media)?;
        self.session_ext
            .insert(session, extension_ids(&offer, true));
        let id = new_resource_id(&mut self.rng);
        self.session_resource.insert(session, id.clone());
        self.out.push_back(SfuOutput::Room(RoomEvent {
            room: room.to_owned(),
            kind: RoomEventKind::PublicationAdded {
                resource: self.resource_url(&id),
                user: user.to_owned(),
            },
        }));
        self.resources.insert(
            id.clone(),
            Resource::Publication(Publication {
                room: room.to_owned(),
                user: user.to_owned(),
                session,
                tracks,
                keys: None,
                relays: Vec::new(),
                remote: None,
                since: now,
            }),
        );
        self.rooms
            .entry(room.to_owned())
            .or_default()
            .push(id.clone());
        tracing::info!(room, user, resource = %id, "publication created");
        Ok(Created {
            resource: id,
            answer,
        })
    }

    /// Handles a WHEP subscribe: delivers the given publications (all of the room's
    /// when `resources` is empty) on the offer's m-lines.
    pub fn subscribe(
        &mut self,
        now: Instant,
        room: &str,
        resources: &[ResourceId],
        offer: &str,
    ) -> Result<Created, ApiError> {
        let offer = parse_offer(offer)?;
        let wanted: Vec<ResourceId> = if resources.is_empty() {
            self.rooms.get(room).cloned().unwrap_or_default()
        } else {
            for r in resources {
                match self.resources.get(r) {
                    Some(Resource::Publication(p)) if p.room == room => {}
                    Some(Resource::Publication(_)) => {
                        return Err(ApiError::forbidden(
                            "resource_wrong_room",
                            format!("publication {r} is not in room {room}"),
                        ));
                    }
                    _ => return Err(ApiError::unknown_resource(r)),
                }
            }
            resources.to_vec()
        };
        // The tracks to deliver, in publication order.
        let mut pending: Vec<(ResourceId, usize, &PublishedTrack)> = Vec::new();
        for r in &wanted {
            if let Some(Resource::Publication(p)) = self.resources.get(r) {
                for (i, t) in p.tracks.iter().enumerate() {
                    pending.push((r.clone(), i, t));
                }
            }
        }
        let total = pending.len();
        let mut delivered = Vec::new();
        let mut media = Vec::new();
        let cname = format!("cascade-{}", &new_resource_id(&mut self.rng)[..8]);
        for m in &offer.media {
            let receives = matches!(m.direction, Direction::RecvOnly | Direction::SendRecv);
            let kind = media_kind(&m.media_type);
            let (Some(kind), true, true) = (kind, receives, m.port != 0) else {
                media.push(rejected(m));
                continue;
            };
            let pick = pending.iter().position(|(_, _, t)| {
                t.kind == kind && sdp::find_compatible_codec(m, &t.codec).is_some()
            });
            let Some(pos) = pick else {
                // Nothing (more) to send on this m-line: keep it, inactive.
                match sdp::choose_codec(m) {
                    Some(c) => media.push(answer_media(m, c, None, Direction::Inactive, None)),
                    None => media.push(rejected(m)),
                }
                continue;
            };
            let (publication, track, t) = pending.remove(pos);
            // Checked by the position() predicate above.
            let Some(codec) = sdp::find_compatible_codec(m, &t.codec) else {
                continue;
            };
            // The server answers NACKs from its own cache, so a subscriber gets RTX
            // whenever it offers it, whatever the publisher does.
            let rtx_pt = m.rtx_payload_for(codec.payload_type);
            let ssrc = self.rng.random::<u32>() | 1;
            let rtx_ssrc = rtx_pt.map(|_| self.rng.random::<u32>() | 1);
            let send = SendStream {
                ssrc,
                rtx_ssrc,
                cname: cname.clone(),
                stream_id: publication.clone(),
                track_id: format!("{}-{}", publication, t.mid),
            };
            let mut a = answer_media(m, codec, rtx_pt, Direction::SendOnly, Some(send));
            a.extmaps = accepted_extmaps(m, false);
            media.push(a);
            delivered.push(DeliveredTrack {
                publication,
                track,
                mid: m.mid.clone().unwrap_or_default(),
                prefs: TrackPreferences::default(),
                selected: None,
                ssrc,
                rtx_ssrc,
                pt: codec.payload_type,
                rtx_pt,
            });
        }
        if total > 0 && delivered.is_empty() {
            return Err(ApiError::no_common_codec(
                "the offer has no m-line that can receive any published track (kind or codec mismatch)",
            ));
        }
        let (session, answer) = self.new_session(now, &offer, media)?;
        let ext = extension_ids(&offer, false);
        self.session_ext.insert(session, ext);
        let id = new_resource_id(&mut self.rng);
        self.session_resource.insert(session, id.clone());
        self.resources.insert(
            id.clone(),
            Resource::Subscription(Subscription {
                room: room.to_owned(),
                session,
                tracks: delivered,
                // The data plane's estimator starts there too.
                estimate: (ext.transport_cc != 0).then_some(300_000),
                probe_until: None,
                probe_next: now + PROBE_BACKOFF_MIN,
                probe_backoff: PROBE_BACKOFF_MIN,
            }),
        );
        tracing::info!(room, resource = %id, tracks = total, "subscription created");
        Ok(Created {
            resource: id,
            answer,
        })
    }

    fn new_session(
        &mut self,
        now: Instant,
        offer: &sdp::SessionDescription,
        media: Vec<MediaAnswer>,
    ) -> Result<(SessionId, String), ApiError> {
        let (ufrag, pwd) = offer
            .ice_credentials()
            .map_err(|e| ApiError::bad_sdp(e.to_string()))?;
        let fingerprint = offer
            .fingerprint()
            .map_err(|e| ApiError::bad_sdp(e.to_string()))?;
        let fingerprint = Fingerprint::parse_sdp(&fingerprint)
            .map_err(|e| ApiError::bad_sdp(format!("a=fingerprint: {e}")))?;
        // The offerer picks: actpass or active makes us the DTLS server; a passive
        // offer (as the FFmpeg WHIP muxer sends) makes us the client.
        let (setup, role) = match offer.setup() {
            Some(sdp::Setup::Passive) => (sdp::Setup::Active, crate::dtls::DtlsRole::Client),
            _ => (sdp::Setup::Passive, crate::dtls::DtlsRole::Server),
        };
        let id = self.next_session;
        self.next_session += 1;
        let local = IceCredentials::random(&mut self.rng);
        let remote = IceCredentials { ufrag, pwd };
        let session = PeerSession::new(
            id,
            local.clone(),
            remote,
            &self.cert,
            fingerprint,
            role,
            now,
        )
        .map_err(|e| ApiError::internal(format!("DTLS setup failed: {e}")))?;
        let answer = SessionAnswer {
            session_id: self.rng.random::<u32>().into(),
            ice_ufrag: local.ufrag.clone(),
            ice_pwd: local.pwd.clone(),
            fingerprint: self.cert.fingerprint().to_sdp(),
            candidate: self.candidate,
            setup,
            media,
        };
        self.by_ufrag.insert(local.ufrag, id);
        self.sessions.insert(id, session);
        Ok((id, sdp::write_answer(&answer)))
    }

    /// Ends a publication or subscription and frees everything it held.
    pub fn delete(&mut self, id: &str) -> Result<(), ApiError> {
        let resource = self
            .resources
            .remove(id)
            .ok_or_else(|| ApiError::unknown_resource(id))?;
        let session = resource.session();
        if let Resource::Publication(p) = &resource {
            for r in &p.relays {
                if let Some(relay) = self.relays.remove(r) {
                    self.release_edge(relay.peer);
                }
            }
        }
        if let Resource::Publication(p) = &resource
            && let Some(list) = self.rooms.get_mut(&p.room)
        {
            list.retain(|r| r != id);
            if list.is_empty() {
                self.rooms.remove(&p.room);
            }
        }
        if let Resource::Publication(p) = &resource {
            if let Some(d) = self.speakers.get_mut(&p.room) {
                d.remove(&id.to_owned());
            }
            if p.remote.is_none() {
                self.out.push_back(SfuOutput::Room(RoomEvent {
                    room: p.room.clone(),
                    kind: RoomEventKind::PublicationRemoved {
                        resource: self.resource_url(id),
                        user: p.user.clone(),
                    },
                }));
            }
        }
        self.session_ext.remove(&session);
        self.session_resource.remove(&session);
        if let Some(mut s) = self.sessions.remove(&session) {
            s.shutdown();
            self.drain_session_transmits(&mut s);
            self.forget_session(&s);
        }
        self.out
            .push_back(SfuOutput::Command(Command::RemoveSession { id: session }));
        self.ended(id, "deleted");
        tracing::info!(resource = %id, "resource deleted");
        Ok(())
    }

    fn forget_session(&mut self, s: &PeerSession) {
        let id = s.id();
        self.by_ufrag.retain(|_, v| *v != id);
        self.by_addr.retain(|_, v| *v != id);
    }

    fn drain_session_transmits(&mut self, s: &mut PeerSession) {
        while let Some(o) = s.poll_output() {
            if let SessionOutput::Transmit { dest, data } = o {
                self.out.push_back(SfuOutput::Transmit { dest, data });
            }
        }
    }

    /// Relays publication `id` to the cascade peer at `peer` (an edge's media
    /// address): every packet the publisher sends goes there unchanged, and the answer
    /// carries what the edge needs to read them.
    pub fn open_relay(&mut self, id: &str, peer: SocketAddr) -> Result<RelayAnswer, ApiError> {
        let relay_id = new_resource_id(&mut self.rng);
        let Some(Resource::Publication(p)) = self.resources.get_mut(id) else {
            return Err(ApiError::unknown_resource(id));
        };
        let keys = p.keys.ok_or_else(|| {
            ApiError::new(
                crate::error::ErrorKind::Conflict,
                "not_connected",
                "the publisher has not connected yet",
            )
        })?;
        p.relays.push(relay_id.clone());
        let session = p.session;
        let room = p.room.clone();
        let ssrcs = track_ssrcs(&p.tracks);
        let cached: Vec<u32> = p
            .tracks
            .iter()
            .filter(|t| t.kind == MediaKind::Video)
            .flat_map(|t| std::iter::once(t.ssrc).chain(t.layers.iter().filter_map(|l| l.ssrc)))
            .fold(Vec::new(), |mut v, s| {
                if s != 0 && !v.contains(&s) {
                    v.push(s);
                }
                v
            });
        let tracks = p
            .tracks
            .iter()
            .map(|t| RelayTrack {
                kind: kind_name(t.kind).to_owned(),
                mid: t.mid.clone(),
                ssrc: t.ssrc,
                rtx_ssrc: t.rtx_ssrc,
                codec: t.codec.name.clone(),
                clock_rate: t.codec.clock_rate,
                channels: t.codec.channels,
                fmtp: t.codec.fmtp.clone(),
                payload_type: t.codec.payload_type,
                rtx_payload_type: t.rtx_pt,
                layers: t
                    .layers
                    .iter()
                    .filter_map(|l| {
                        Some(RelayLayer {
                            rid: l.rid.clone(),
                            ssrc: l.ssrc?,
                            rtx_ssrc: l.rtx_ssrc,
                        })
                    })
                    .collect(),
            })
            .collect();
        self.relays.insert(
            relay_id.clone(),
            Relay {
                publication: id.to_owned(),
                peer,
            },
        );
        self.emit_cascade(id, session);
        // The edge's RTCP comes back from `peer`: one feedback session per edge.
        let feedback = match self.edges.get_mut(&peer) {
            Some(e) => {
                e.relays += 1;
                e.keys
            }
            None => {
                let keys = random_keys(&mut self.rng);
                let edge = self.next_session;
                self.next_session += 1;
                self.out
                    .push_back(SfuOutput::Command(Command::PeerValidated {
                        id: edge,
                        peer,
                    }));
                self.out
                    .push_back(SfuOutput::Command(Command::InstallSession {
                        id: edge,
                        peer,
                        rx: keys,
                        tx: random_keys(&mut self.rng),
                        rtcp_ssrc: self.rng.random::<u32>() & !0xff,
                        extensions: ExtensionIds::default(),
                    }));
                self.edges.insert(
                    peer,
                    EdgeFeedback {
                        session: edge,
                        keys,
                        relays: 1,
                    },
                );
                keys
            }
        };
        if let Some(e) = self.edges.get(&peer) {
            self.out
                .push_back(SfuOutput::Command(Command::RelayFeedback {
                    relay: e.session,
                    publisher: session,
                    ssrcs,
                    cached,
                }));
        }
        tracing::info!(resource = %id, %peer, relay = %relay_id, "relay opened");
        Ok(RelayAnswer {
            relay: format!("{}/rtc/v1/relays/{relay_id}", self.public_url),
            origin_media: self.candidate,
            room,
            feedback_srtp: RelayKeys::from(&feedback),
            srtp: RelayKeys::from(&keys),
            tracks,
        })
    }

    /// Stops a relay.
    pub fn close_relay(&mut self, relay_id: &str) -> Result<(), ApiError> {
        let relay = self
            .relays
            .remove(relay_id)
            .ok_or_else(|| ApiError::unknown_resource(relay_id))?;
        self.release_edge(relay.peer);
        if let Some(Resource::Publication(p)) = self.resources.get_mut(&relay.publication) {
            p.relays.retain(|r| r != relay_id);
            let session = p.session;
            self.emit_cascade(&relay.publication, session);
        }
        tracing::info!(relay = %relay_id, "relay closed");
        Ok(())
    }

    /// One relay fewer to `peer`; the feedback session goes with the last one.
    fn release_edge(&mut self, peer: SocketAddr) {
        if let Some(e) = self.edges.get_mut(&peer) {
            e.relays = e.relays.saturating_sub(1);
            if e.relays == 0 {
                let id = e.session;
                self.edges.remove(&peer);
                self.out
                    .push_back(SfuOutput::Command(Command::RemoveSession { id }));
            }
        }
    }

    /// Asks the shell to close a relay on an origin.
    pub fn queue_close_relay(&mut self, relay: String) {
        self.out.push_back(SfuOutput::CloseRelay { relay });
    }

    /// The local id of a remote publication already relayed here.
    pub fn remote_publication(&self, url: &str) -> Option<ResourceId> {
        self.remote.get(url).cloned()
    }

    /// Makes a publication of another server available here from its relay answer.
    /// Returns the local id, and a relay to close when another call won the race.
    pub fn add_remote_publication(
        &mut self,
        now: Instant,
        url: &str,
        answer: RelayAnswer,
    ) -> Result<(ResourceId, Option<String>), ApiError> {
        if let Some(id) = self.remote.get(url) {
            return Ok((id.clone(), Some(answer.relay)));
        }
        let bad = |what: &str| {
            ApiError::new(
                crate::error::ErrorKind::BadGateway,
                "bad_relay_answer",
                format!("the origin's relay answer has bad {what}"),
            )
        };
        let keys = answer
            .srtp
            .material()
            .ok_or_else(|| bad("publisher keys"))?;
        let feedback = answer
            .feedback_srtp
            .material()
            .ok_or_else(|| bad("feedback keys"))?;
        let origin = answer.origin_media;
        let session = self.link_for(now, origin, feedback);
        let mut tracks = Vec::new();
        for t in &answer.tracks {
            let kind = match t.kind.as_str() {
                "audio" => MediaKind::Audio,
                "video" => MediaKind::Video,
                _ => return Err(bad("track kind")),
            };
            tracks.push(PublishedTrack {
                mid: t.mid.clone(),
                kind,
                codec: Codec {
                    payload_type: t.payload_type,
                    name: t.codec.clone(),
                    clock_rate: t.clock_rate,
                    channels: t.channels,
                    fmtp: t.fmtp.clone(),
                    rtcp_fb: Vec::new(),
                },
                rtx_pt: t.rtx_payload_type,
                ssrc: t.ssrc,
                rtx_ssrc: t.rtx_ssrc,
                layers: t
                    .layers
                    .iter()
                    .map(|l| SimulcastLayer {
                        rid: l.rid.clone(),
                        ssrc: Some(l.ssrc),
                        rtx_ssrc: l.rtx_ssrc,
                        bps: 0,
                        rate_at: None,
                        peak_bps: 0,
                        width: 0,
                        height: 0,
                    })
                    .collect(),
            });
        }
        let ssrcs = track_ssrcs(&tracks);
        self.out
            .push_back(SfuOutput::Command(Command::AddRelayedSource {
                session,
                ssrcs,
                rx: keys,
            }));
        let id = new_resource_id(&mut self.rng);
        self.resources.insert(
            id.clone(),
            Resource::Publication(Publication {
                room: answer.room,
                user: String::new(),
                session,
                tracks,
                keys: Some(keys),
                relays: Vec::new(),
                since: now,
                remote: Some(Box::new(RemoteSource {
                    url: url.to_owned(),
                    relay: answer.relay,
                    origin,
                    idle_since: Some(now),
                    last_answer: now,
                    next_probe: now + RELAY_PROBE_INTERVAL,
                    probes: [[0; 12]; RELAY_PROBES_KEPT],
                    probes_sent: 0,
                    lost_since: None,
                    next_reopen: now,
                    reopening: false,
                })),
            }),
        );
        self.remote.insert(url.to_owned(), id.clone());
        tracing::info!(%url, local = %id, "remote publication relayed here");
        Ok((id, None))
    }

    /// The link session from `origin`, set up with `feedback` keys when there is none
    /// (or re-keyed when the origin now gives other keys); counts one more
    /// publication on it.
    fn link_for(
        &mut self,
        now: Instant,
        origin: SocketAddr,
        feedback: SrtpKeyingMaterial,
    ) -> SessionId {
        if let Some(link) = self.origins.get_mut(&origin) {
            link.publications += 1;
            if link.keys == feedback {
                return link.session;
            }
            // The origin forgot this edge and made new feedback keys: re-key the link
            // and give it back its relayed sources and routes.
            link.keys = feedback;
            let id = link.session;
            self.install_link(id, origin, feedback);
            let relayed: Vec<(Vec<u32>, SrtpKeyingMaterial)> = self
                .resources
                .values()
                .filter_map(|r| match r {
                    Resource::Publication(p) if p.session == id && p.remote.is_some() => {
                        Some((track_ssrcs(&p.tracks), p.keys?))
                    }
                    _ => None,
                })
                .collect();
            for (ssrcs, rx) in relayed {
                self.out
                    .push_back(SfuOutput::Command(Command::AddRelayedSource {
                        session: id,
                        ssrcs,
                        rx,
                    }));
            }
            self.install_routes_for(now, id);
            return id;
        }
        let id = self.next_session;
        self.next_session += 1;
        self.install_link(id, origin, feedback);
        self.origins.insert(
            origin,
            OriginLink {
                session: id,
                publications: 1,
                keys: feedback,
            },
        );
        id
    }

    fn install_link(&mut self, id: SessionId, origin: SocketAddr, feedback: SrtpKeyingMaterial) {
        self.out
            .push_back(SfuOutput::Command(Command::PeerValidated {
                id,
                peer: origin,
            }));
        self.out
            .push_back(SfuOutput::Command(Command::InstallSession {
                id,
                peer: origin,
                rx: random_keys(&mut self.rng),
                tx: feedback,
                rtcp_ssrc: self.rng.random::<u32>() & !0xff,
                extensions: ExtensionIds::default(),
            }));
    }

    /// Marks remote publications used or idle, and closes those idle past the grace.
    fn sweep_remote(&mut self, now: Instant) {
        let used: std::collections::HashSet<ResourceId> = self
            .resources
            .values()
            .filter_map(|r| match r {
                Resource::Subscription(s) => Some(s.tracks.iter().map(|t| t.publication.clone())),
                _ => None,
            })
            .flatten()
            .collect();
        let mut expired = Vec::new();
        for (id, r) in &mut self.resources {
            if let Resource::Publication(p) = r
                && let Some(remote) = p.remote.as_mut()
            {
                // Used by a subscription here, or relayed further down a chain.
                if used.contains(id) || !p.relays.is_empty() {
                    remote.idle_since = None;
                } else {
                    let since = *remote.idle_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= RELAY_GRACE {
                        expired.push(id.clone());
                    }
                }
            }
        }
        for id in expired {
            self.drop_remote(&id);
        }
    }

    fn drop_remote(&mut self, id: &str) {
        let Some(Resource::Publication(p)) = self.resources.remove(id) else {
            return;
        };
        let Some(remote) = p.remote else {
            return;
        };
        self.remote.remove(&remote.url);
        let ssrcs = track_ssrcs(&p.tracks);
        self.out
            .push_back(SfuOutput::Command(Command::RemoveRelayedSource {
                session: p.session,
                ssrcs,
            }));
        self.leave_link(remote.origin);
        self.out.push_back(SfuOutput::CloseRelay {
            relay: remote.relay,
        });
        tracing::info!(url = %remote.url, "remote publication released");
    }

    /// An origin answers an edge's relay probe: signed success while it relays
    /// `relay` to that edge, an error when it does not (so the edge re-opens at once).
    fn answer_relay_probe(&mut self, from: SocketAddr, msg: &stun::StunMessage<'_>) {
        if msg.class != StunClass::Request {
            return;
        }
        let relay = msg
            .username()
            .and_then(|u| u.strip_prefix(RELAY_PROBE_USERNAME))
            .unwrap_or_default();
        let key = self.edges.get(&from).map(|e| probe_key(&e.keys));
        let known = self.relays.get(relay).is_some_and(|r| r.peer == from);
        let answer = match key {
            // Only a probe signed with this edge's keys gets a signed answer.
            Some(key) if msg.verify_integrity(&key) => {
                if known {
                    stun::binding_success_response(msg.transaction_id, from, &key)
                } else {
                    stun::error_response(msg.method, msg.transaction_id, 437, Some(&key))
                }
            }
            Some(_) => return,
            None => stun::error_response(msg.method, msg.transaction_id, 437, None),
        };
        if let Ok(data) = answer {
            self.out.push_back(SfuOutput::Transmit { dest: from, data });
        }
    }

    /// An edge reads an origin's answer to one of its relay probes.
    fn relay_probe_answered(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &stun::StunMessage<'_>,
    ) {
        let Some(key) = self.origins.get(&from).map(|l| probe_key(&l.keys)) else {
            return;
        };
        for r in self.resources.values_mut() {
            let Resource::Publication(p) = r else {
                continue;
            };
            let Some(remote) = p.remote.as_mut() else {
                continue;
            };
            if remote.origin != from || !remote.probes.contains(&msg.transaction_id) {
                continue;
            }
            match msg.class {
                StunClass::SuccessResponse if msg.verify_integrity(&key) => {
                    remote.last_answer = now;
                }
                // The origin no longer relays this publication here (it restarted, or
                // the publication is gone): re-open now rather than after the timeout.
                StunClass::ErrorResponse if remote.lost_since.is_none() => {
                    tracing::warn!(url = %remote.url, "origin refused a relay probe: re-opening");
                    remote.lost_since = Some(now);
                    remote.next_reopen = now;
                    self.states_dirty = true;
                }
                _ => {}
            }
            return;
        }
    }

    /// Probes every relayed publication's origin, marks those whose origin stopped
    /// answering as lost, asks for lost relays again and gives up on the long lost.
    fn check_origins(&mut self, now: Instant) {
        let mut give_up = Vec::new();
        for (id, r) in &mut self.resources {
            let Resource::Publication(p) = r else {
                continue;
            };
            let Some(remote) = p.remote.as_mut() else {
                continue;
            };
            if now >= remote.next_probe
                && let Some(link) = self.origins.get(&remote.origin)
            {
                let tid = stun::random_transaction_id(&mut self.rng);
                remote.probes[remote.probes_sent % RELAY_PROBES_KEPT] = tid;
                remote.probes_sent += 1;
                remote.next_probe = now + RELAY_PROBE_INTERVAL;
                let relay_id = remote.relay.rsplit('/').next().unwrap_or_default();
                let probe = stun::StunWriter::new(StunClass::Request, stun::METHOD_BINDING, tid)
                    .username(&format!("{RELAY_PROBE_USERNAME}{relay_id}"))
                    .finish(Some(&probe_key(&link.keys)), true);
                if let Ok(data) = probe {
                    self.out.push_back(SfuOutput::Transmit {
                        dest: remote.origin,
                        data,
                    });
                }
            }
            if remote.lost_since.is_none()
                && now.saturating_duration_since(remote.last_answer) >= RELAY_CONSENT_TIMEOUT
            {
                tracing::warn!(url = %remote.url, "origin stopped answering: re-opening the relay");
                remote.lost_since = Some(now);
                remote.next_reopen = now;
                self.states_dirty = true;
            }
            let Some(since) = remote.lost_since else {
                continue;
            };
            if now.saturating_duration_since(since) >= RELAY_GIVE_UP {
                give_up.push(id.clone());
            } else if !remote.reopening && now >= remote.next_reopen {
                remote.reopening = true;
                remote.next_reopen = now + RELAY_REOPEN_INTERVAL;
                self.out.push_back(SfuOutput::ReopenRelay {
                    url: remote.url.clone(),
                });
            }
        }
        for id in give_up {
            tracing::warn!(resource = %id, "origin lost for good: the relayed publication ends");
            self.end_remote(&id, "origin_lost");
        }
    }

    /// The outcome of a [`SfuOutput::ReopenRelay`]: the origin's new relay answer, or
    /// why there is none. A publication the origin no longer has ends here.
    pub fn relay_reopened(
        &mut self,
        now: Instant,
        url: &str,
        result: Result<RelayAnswer, ApiError>,
    ) {
        let Some(id) = self.remote.get(url).cloned() else {
            if let Ok(answer) = result {
                self.out.push_back(SfuOutput::CloseRelay {
                    relay: answer.relay,
                });
            }
            return;
        };
        let answer = match result {
            Ok(answer) => answer,
            Err(e) if e.code == "unknown_resource" => {
                tracing::info!(%url, "the origin no longer has the publication");
                self.end_remote(&id, "source_ended");
                return;
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "re-opening the relay failed; retrying");
                if let Some(Resource::Publication(p)) = self.resources.get_mut(&id)
                    && let Some(remote) = p.remote.as_mut()
                {
                    remote.reopening = false;
                }
                return;
            }
        };
        let (Some(keys), Some(feedback)) =
            (answer.srtp.material(), answer.feedback_srtp.material())
        else {
            self.out.push_back(SfuOutput::CloseRelay {
                relay: answer.relay,
            });
            return;
        };
        let Some(Resource::Publication(p)) = self.resources.get(&id) else {
            return;
        };
        let (old_session, ssrcs) = (p.session, track_ssrcs(&p.tracks));
        let Some(old) = p.remote.clone() else {
            return;
        };
        // Leave the old link (the origin may have moved or re-keyed), join the new one.
        self.out
            .push_back(SfuOutput::Command(Command::RemoveRelayedSource {
                session: old_session,
                ssrcs: ssrcs.clone(),
            }));
        self.leave_link(old.origin);
        let session = self.link_for(now, answer.origin_media, feedback);
        self.out
            .push_back(SfuOutput::Command(Command::AddRelayedSource {
                session,
                ssrcs,
                rx: keys,
            }));
        if let Some(Resource::Publication(p)) = self.resources.get_mut(&id)
            && let Some(remote) = p.remote.as_mut()
        {
            p.session = session;
            p.keys = Some(keys);
            remote.relay = answer.relay.clone();
            remote.origin = answer.origin_media;
            remote.last_answer = now;
            remote.next_probe = now + RELAY_PROBE_INTERVAL;
            remote.lost_since = None;
            remote.reopening = false;
        }
        if session != old_session {
            self.install_routes_for(now, session);
        }
        if old.relay != answer.relay {
            // The origin may still hold the old relay (it was only unreachable).
            self.out
                .push_back(SfuOutput::CloseRelay { relay: old.relay });
        }
        self.states_dirty = true;
        tracing::info!(%url, "relay re-opened");
    }

    /// One relayed publication fewer on the link from `origin`; the link goes with
    /// the last one.
    fn leave_link(&mut self, origin: SocketAddr) {
        if let Some(link) = self.origins.get_mut(&origin) {
            link.publications = link.publications.saturating_sub(1);
            if link.publications == 0 {
                let session = link.session;
                self.origins.remove(&origin);
                self.out
                    .push_back(SfuOutput::Command(Command::RemoveSession { id: session }));
            }
        }
    }

    /// Ends a relayed publication here: its subscriptions see their source end.
    fn end_remote(&mut self, id: &str, reason: &'static str) {
        self.drop_remote(id);
        self.ended(id, reason);
    }

    /// Reports that resource `id`, now gone, ended.
    fn ended(&mut self, id: &str, reason: &'static str) {
        self.reported.remove(id);
        self.states_dirty = true;
        self.out.push_back(SfuOutput::Event(ResourceEvent {
            resource: id.to_owned(),
            state: ResourceState::Ended,
            reason,
        }));
    }

    /// `GET {resource}`.
    pub fn resource_info(&self, id: &str) -> Option<ResourceInfo> {
        let r = self.resources.get(id)?;
        let (state, _) = self.state_of(r);
        Some(match r {
            Resource::Publication(p) => ResourceInfo {
                id: id.to_owned(),
                kind: "publication",
                room: p.room.clone(),
                state,
                sources: Vec::new(),
                relayed_from: p.remote.as_ref().map(|r| r.url.clone()),
            },
            Resource::Subscription(s) => ResourceInfo {
                id: id.to_owned(),
                kind: "subscription",
                room: s.room.clone(),
                state,
                sources: sources_of(s)
                    .into_iter()
                    .map(|src| match self.resources.get(src) {
                        Some(Resource::Publication(Publication {
                            remote: Some(r), ..
                        })) => r.url.clone(),
                        _ => self.resource_url(src),
                    })
                    .collect(),
                relayed_from: None,
            },
        })
    }

    /// The state of a resource, and why.
    fn state_of(&self, r: &Resource) -> (ResourceState, &'static str) {
        match r {
            Resource::Publication(p) => match &p.remote {
                Some(remote) if remote.lost_since.is_some() => {
                    (ResourceState::Reconnecting, "origin_unreachable")
                }
                Some(_) => (ResourceState::Live, "relayed"),
                None if p.keys.is_some() => (ResourceState::Live, "connected"),
                None => (ResourceState::Connecting, "created"),
            },
            Resource::Subscription(s) => {
                if !self
                    .sessions
                    .get(&s.session)
                    .is_some_and(PeerSession::is_connected)
                {
                    return (ResourceState::Connecting, "created");
                }
                let sources = sources_of(s);
                let mut present = 0;
                let mut lost = false;
                for src in &sources {
                    if let Some(Resource::Publication(p)) = self.resources.get(*src) {
                        present += 1;
                        lost |= p.remote.as_ref().is_some_and(|r| r.lost_since.is_some());
                    }
                }
                if !sources.is_empty() && present == 0 {
                    (ResourceState::Ended, "source_ended")
                } else if lost {
                    (ResourceState::Reconnecting, "origin_unreachable")
                } else {
                    (ResourceState::Live, "connected")
                }
            }
        }
    }

    /// Reports every resource whose state changed since it was last reported.
    fn report_states(&mut self) {
        if !std::mem::take(&mut self.states_dirty) {
            return;
        }
        let mut changes = Vec::new();
        for (id, r) in &self.resources {
            let (state, reason) = self.state_of(r);
            if self.reported.get(id) != Some(&state) {
                changes.push(ResourceEvent {
                    resource: id.clone(),
                    state,
                    reason,
                });
            }
        }
        for e in changes {
            self.reported.insert(e.resource.clone(), e.state);
            self.out.push_back(SfuOutput::Event(e));
        }
    }

    /// Number of open relays.
    pub fn relay_count(&self) -> usize {
        self.relays.len()
    }

    /// Tells the data plane the full set of cascade peers of a publication.
    fn emit_cascade(&mut self, id: &str, publisher: SessionId) {
        let peers = match self.resources.get(id) {
            Some(Resource::Publication(p)) => p
                .relays
                .iter()
                .filter_map(|r| self.relays.get(r).map(|r| r.peer))
                .collect(),
            _ => Vec::new(),
        };
        self.out
            .push_back(SfuOutput::Command(Command::CascadeOut { publisher, peers }));
    }

    /// `GET /rtc/v1/rooms/{room}`.
    pub fn room_info(&self, room: &str) -> RoomInfo {
        let info = |id: &ResourceId, p: &Publication| PublicationInfo {
            resource: self.resource_url(id),
            user: p.user.clone(),
            tracks: p
                .tracks
                .iter()
                .map(|t| TrackInfo {
                    kind: kind_name(t.kind),
                    mid: t.mid.clone(),
                })
                .collect(),
            relayed_from: p.remote.as_ref().map(|r| r.url.clone()),
        };
        let local = self.rooms.get(room).into_iter().flatten().filter_map(|id| {
            match self.resources.get(id) {
                Some(Resource::Publication(p)) => Some(info(id, p)),
                _ => None,
            }
        });
        // Publications relayed here, which an edge further down can subscribe to.
        let relayed = self
            .remote
            .values()
            .filter_map(|id| match self.resources.get(id) {
                Some(Resource::Publication(p)) if p.room == room => Some(info(id, p)),
                _ => None,
            });
        RoomInfo {
            room: room.to_owned(),
            publications: local.chain(relayed).collect(),
        }
    }

    /// `PATCH {resource}` with an `application/trickle-ice-sdpfrag` body.
    pub fn patch(&mut self, now: Instant, id: &str, frag: &str) -> Result<Patched, ApiError> {
        let session_id = self
            .resources
            .get(id)
            .map(Resource::session)
            .ok_or_else(|| ApiError::unknown_resource(id))?;
        let frag = sdp::parse_sdpfrag(frag).map_err(|e| ApiError::bad_sdp(e.to_string()))?;
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return Err(ApiError::unknown_resource(id));
        };
        // WHIP trickle bodies repeat the current credentials; only new ones restart.
        let restart = frag
            .ice_ufrag
            .as_ref()
            .is_some_and(|u| *u != session.remote_ice().ufrag);
        match (frag.ice_ufrag, frag.ice_pwd) {
            (Some(ufrag), Some(pwd)) if restart => {
                let local = IceCredentials::random(&mut self.rng);
                session.restart_ice(local.clone(), IceCredentials { ufrag, pwd }, now);
                self.by_ufrag.retain(|_, v| *v != session_id);
                self.by_ufrag.insert(local.ufrag.clone(), session_id);
                let mids: String = frag.mids.iter().map(|m| format!("a=mid:{m}\r\n")).collect();
                Ok(Patched::Restarted(format!(
                    "a=ice-lite\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n{mids}a=candidate:1 1 udp 2130706431 {} {} typ host\r\na=end-of-candidates\r\n",
                    local.ufrag,
                    local.pwd,
                    self.candidate.ip(),
                    self.candidate.port()
                )))
            }
            // Remote candidates need no action on an ICE-lite server: their
            // connectivity checks reach us and validate their addresses.
            _ => Ok(Patched::NoContent),
        }
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
                self.answer_relay_probe(from, &msg);
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
            .min()
    }

    pub fn poll_output(&mut self) -> Option<SfuOutput> {
        self.report_states();
        self.out.pop_front()
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
                            rtcp_ssrc: self.rng.random::<u32>() & !0xff,
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
                    tracing::info!(session = id, %reason, "session closed");
                    if let Some(resource) = self.session_resource.get(&id).cloned() {
                        // delete() frees the session, its routes and its resource.
                        let _ = self.delete(&resource);
                    } else if let Some(s) = self.sessions.remove(&id) {
                        self.forget_session(&s);
                    }
                    return;
                }
            }
        }
    }

    /// Installs every route that involves `session` and whose other end is connected.
    fn install_routes_for(&mut self, now: Instant, session: SessionId) {
        let connected = |sfu: &Sfu, s: SessionId| {
            sfu.sessions.get(&s).is_some_and(|x| x.is_connected())
                || sfu.origins.values().any(|o| o.session == s)
        };
        let mut commands = Vec::new();
        for sub in self.resources.values() {
            let Resource::Subscription(sub) = sub else {
                continue;
            };
            for d in &sub.tracks {
                let Some(Resource::Publication(p)) = self.resources.get(&d.publication) else {
                    continue;
                };
                if p.session != session && sub.session != session {
                    continue;
                }
                if !connected(self, p.session) || !connected(self, sub.session) {
                    continue;
                }
                let Some(t) = p.tracks.get(d.track) else {
                    continue;
                };
                if t.layers.is_empty() {
                    // One stream: forwarded as it comes (no layer to choose).
                    if t.kind == MediaKind::Video {
                        commands.push(Command::RequestKeyframe {
                            publisher: p.session,
                            media_ssrc: t.ssrc,
                        });
                    }
                    commands.push(Command::Route(route(
                        (p.session, t.ssrc),
                        (sub.session, d.ssrc),
                        t.kind,
                        (t.codec.payload_type, d.pt),
                        t.rtx_ssrc.zip(t.rtx_pt),
                        d.rtx_ssrc.zip(d.rtx_pt),
                    )));
                    continue;
                }
                // Simulcast goes through the subscriber stream's layer switch: every
                // layer is routed, the one forwarded is chosen by `select_layers`.
                for (ssrc, rtx_ssrc, ..) in t.sources(now) {
                    if ssrc == 0 {
                        continue;
                    }
                    let mut r = route(
                        (p.session, ssrc),
                        (sub.session, d.ssrc),
                        t.kind,
                        (t.codec.payload_type, d.pt),
                        rtx_ssrc.zip(t.rtx_pt),
                        d.rtx_ssrc.zip(d.rtx_pt),
                    );
                    r.layered = Some(keyframe_format(&t.codec));
                    commands.push(Command::Route(r));
                    commands.push(Command::RequestKeyframe {
                        publisher: p.session,
                        media_ssrc: ssrc,
                    });
                }
                if let Some(selected) = d.selected {
                    // Re-routing keeps the stream's layer; say it again all the same.
                    commands.push(Command::SelectLayer {
                        subscriber: sub.session,
                        subscriber_ssrc: d.ssrc,
                        layer: Some(selected),
                    });
                }
            }
        }
        self.out
            .extend(commands.into_iter().map(SfuOutput::Command));
        let subs: Vec<ResourceId> = self
            .resources
            .iter()
            .filter_map(|(id, r)| match r {
                Resource::Subscription(s)
                    if s.session == session
                        || s.tracks.iter().any(|d| {
                            matches!(self.resources.get(&d.publication),
                                Some(Resource::Publication(p)) if p.session == session)
                        }) =>
                {
                    Some(id.clone())
                }
                _ => None,
            })
            .collect();
        for id in subs {
            self.select_layers(&id, now, true);
        }
    }

    /// An observation of the data plane.
    pub fn handle_media_event(&mut self, now: Instant, event: MediaEvent) {
        match event {
            MediaEvent::StreamIdentified {
                session,
                ssrc,
                mid,
                rid,
                repaired,
            } => {
                let Some(Resource::Publication(p)) = self
                    .session_resource
                    .get(&session)
                    .and_then(|r| self.resources.get_mut(r))
                else {
                    return;
                };
                let rid = rid.as_str();
                let mid = mid.map(|m| m.as_str().into_owned());
                let Some(t) = p.tracks.iter_mut().find(|t| {
                    mid.as_ref().is_none_or(|m| *m == t.mid)
                        && t.layers.iter().any(|l| l.rid == rid)
                }) else {
                    return;
                };
                let Some(layer) = t.layers.iter_mut().find(|l| l.rid == rid) else {
                    return;
                };
                if repaired {
                    if layer.rtx_ssrc == Some(ssrc) {
                        return;
                    }
                    layer.rtx_ssrc = Some(ssrc);
                } else {
                    if layer.ssrc == Some(ssrc) {
                        return;
                    }
                    layer.ssrc = Some(ssrc);
                    if t.ssrc == 0 {
                        t.ssrc = ssrc;
                    }
                }
                tracing::info!(session, ssrc, rid = %rid, repaired, "simulcast stream identified");
                let connected = self
                    .sessions
                    .get(&session)
                    .is_some_and(|x| x.is_connected());
                if connected {
                    self.install_routes_for(now, session);
                }
            }
            MediaEvent::AudioLevel { session, level, .. } => {
                let Some(id) = self.session_resource.get(&session) else {
                    return;
                };
                let Some(Resource::Publication(p)) = self.resources.get(id) else {
                    return;
                };
                let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
                let detector = self
                    .speakers
                    .entry(p.room.clone())
                    .or_insert_with(|| SpeakerDetector::new(SpeakerConfig::default()));
                let sample = AudioLevel {
                    voice: false,
                    level: level.min(speaker::SILENT),
                };
                if let Some(dominant) = detector.record(id, sample, now_us) {
                    let user = match self.resources.get(&dominant) {
                        Some(Resource::Publication(d)) => d.user.clone(),
                        _ => String::new(),
                    };
                    let room = p.room.clone();
                    tracing::debug!(%room, resource = %dominant, "active speaker");
                    self.out.push_back(SfuOutput::Room(RoomEvent {
                        room,
                        kind: RoomEventKind::ActiveSpeaker {
                            resource: self.resource_url(&dominant),
                            user,
                        },
                    }));
                }
            }
            MediaEvent::StreamRate {
                session,
                ssrc,
                bps,
                width,
                height,
            } => {
                // A relayed publication's session is its origin link, shared by all
                // publications relayed from that origin: look for the layer's SSRC.
                let Some((id, layer)) = self.resources.iter_mut().find_map(|(id, r)| match r {
                    Resource::Publication(p) if p.session == session => p
                        .tracks
                        .iter_mut()
                        .flat_map(|t| t.layers.iter_mut())
                        .find(|l| l.ssrc == Some(ssrc))
                        .map(|l| (id.clone(), l)),
                    _ => None,
                }) else {
                    return;
                };
                layer.bps = bps;
                layer.peak_bps = bps.max(layer.peak_bps - layer.peak_bps / PEAK_DECAY);
                layer.rate_at = Some(now);
                if width > 0 {
                    (layer.width, layer.height) = (width, height);
                }
                let subs: Vec<ResourceId> = self
                    .resources
                    .iter()
                    .filter_map(|(sid, r)| match r {
                        Resource::Subscription(s)
                            if s.tracks.iter().any(|d| d.publication == id) =>
                        {
                            Some(sid.clone())
                        }
                        _ => None,
                    })
                    .collect();
                for sid in subs {
                    self.select_layers(&sid, now, false);
                }
            }
            MediaEvent::Estimate { session, bps } => {
                let Some(id) = self.session_resource.get(&session).cloned() else {
                    return;
                };
                let Some(Resource::Subscription(s)) = self.resources.get_mut(&id) else {
                    return;
                };
                s.estimate = Some(bps);
                tracing::debug!(subscription = %id, bps, "bandwidth estimate");
                self.select_layers(&id, now, false);
            }
        }
    }

    /// `PATCH {subscription}` with a JSON body: a subscriber's preferences for its
    /// video tracks.
    pub fn set_preferences(
        &mut self,
        now: Instant,
        id: &str,
        prefs: &SubscriptionPreferences,
    ) -> Result<(), ApiError> {
        let Some(Resource::Subscription(s)) = self.resources.get_mut(id) else {
            return Err(match self.resources.get(id) {
                Some(_) => ApiError::bad_request(
                    "not_a_subscription",
                    "preferences apply to subscriptions",
                ),
                None => ApiError::unknown_resource(id),
            });
        };
        let mut matched = false;
        for d in &mut s.tracks {
            if prefs.mid.as_ref().is_none_or(|m| *m == d.mid) {
                d.prefs = prefs.track();
                matched = true;
            }
        }
        if !matched {
            return Err(ApiError::bad_request(
                "unknown_mid",
                format!("the subscription has no m-line {:?}", prefs.mid),
            ));
        }
        self.select_layers(id, now, false);
        Ok(())
    }

    /// Chooses the layer of every video track of subscription `id` from its estimate
    /// and preferences, tells the data plane what changed (or everything, with
    /// `force`), and starts a probe when a better layer may fit.
    fn select_layers(&mut self, id: &str, now: Instant, force: bool) {
        let Some(Resource::Subscription(sub)) = self.resources.get(id) else {
            return;
        };
        let connected = self
            .sessions
            .get(&sub.session)
            .is_some_and(|x| x.is_connected());
        if !connected {
            return;
        }
        let audio = sub
            .tracks
            .iter()
            .filter(|d| {
                matches!(self.resources.get(&d.publication),
                    Some(Resource::Publication(p)) if p.tracks.get(d.track).is_some_and(|t| t.kind == MediaKind::Audio))
            })
            .count() as u64;
        let mut budget = sub
            .estimate
            .map(|e| e.saturating_sub(audio * AUDIO_RESERVE_BPS));
        let mut choices = Vec::new();
        let mut probe_for: Option<u64> = None;
        for (i, d) in sub.tracks.iter().enumerate() {
            let Some(Resource::Publication(p)) = self.resources.get(&d.publication) else {
                continue;
            };
            let Some(t) = p
                .tracks
                .get(d.track)
                .filter(|t| t.kind == MediaKind::Video && !t.layers.is_empty())
            else {
                continue;
            };
            let layers: Vec<_> = t
                .sources(now)
                .into_iter()
                .filter(|l| l.0 != 0)
                .enumerate()
                .filter(|(n, l)| {
                    d.prefs.max_layer.is_none_or(|m| *n <= usize::from(m))
                        && (l.3 == 0 || d.prefs.max_width.is_none_or(|w| l.3 <= w))
                        && (l.4 == 0 || d.prefs.max_height.is_none_or(|h| l.4 <= h))
                })
                .map(|(_, l)| l)
                .collect();
            let choice = if d.prefs.paused || layers.is_empty() {
                None
            } else {
                match budget {
                    None => layers.last().map(|l| l.0),
                    Some(b) => {
                        // Layers are sent at their rate plus bursts (keyframes): keep
                        // headroom below the estimate to take a layer, not to keep it.
                        let fit = layers.iter().rposition(|l| {
                            // A layer whose rate is not known yet does not fit; one
                            // is kept while its rate fits, taken when its peak does.
                            let (rate, share) = if Some(l.0) == d.selected {
                                (l.2, 1.0)
                            } else {
                                (l.2.max(l.5), LAYER_HEADROOM)
                            };
                            l.2 > 0 && rate as f64 <= b as f64 * share
                        });
                        let pick = match fit {
                            Some(n) => Some(n),
                            // Nothing fits: the lowest layer unless the path collapsed.
                            None if b >= layers[0].2 / 2 => Some(0),
                            None => None,
                        };
                        let next = pick.map_or(0, |n| n + 1);
                        if let Some(l) = layers.get(next) {
                            let target = (l.2 as f64 * PROBE_HEADROOM) as u64;
                            probe_for = Some(probe_for.unwrap_or(0).max(target));
                        }
                        if let Some(n) = pick {
                            budget = Some(b.saturating_sub(layers[n].2));
                        }
                        pick.map(|n| layers[n].0)
                    }
                }
            };
            if force || choice != d.selected {
                let rank =
                    |ssrc: Option<u32>| ssrc.and_then(|x| layers.iter().position(|l| l.0 == x));
                let up = match (rank(d.selected), rank(choice)) {
                    (None, Some(_)) => true,
                    (Some(old), Some(new)) => new > old,
                    _ => false,
                };
                choices.push((i, choice, up));
            }
        }
        let subscriber = sub.session;
        let estimate = sub.estimate;
        let Some(Resource::Subscription(sub)) = self.resources.get_mut(id) else {
            return;
        };
        let mut upgraded = false;
        for (i, choice, up) in choices {
            let d = &mut sub.tracks[i];
            upgraded |= up;
            d.selected = choice;
            tracing::debug!(subscription = %id, mid = %d.mid, layer = ?choice, ?estimate, "layer selected");
            self.out.push_back(SfuOutput::Command(Command::SelectLayer {
                subscriber,
                subscriber_ssrc: d.ssrc,
                layer: choice,
            }));
        }
        if upgraded {
            // A probe that worked: the next layer may be tried soon.
            sub.probe_backoff = PROBE_BACKOFF_MIN;
            sub.probe_next = sub.probe_next.min(now + PROBE_BACKOFF_MIN);
        }
        if let (Some(target), None) = (probe_for, sub.probe_until)
            && now >= sub.probe_next
        {
            let bps = target + audio * AUDIO_RESERVE_BPS;
            sub.probe_until = Some(now + PROBE_DURATION);
            tracing::debug!(subscription = %id, bps, "probing");
            self.out
                .push_back(SfuOutput::Command(Command::Probe { subscriber, bps }));
        }
    }

    /// Ends probes that ran their time.
    fn end_probes(&mut self, now: Instant) {
        for r in self.resources.values_mut() {
            if let Resource::Subscription(s) = r
                && s.probe_until.is_some_and(|t| t <= now)
            {
                s.probe_until = None;
                s.probe_next = now + s.probe_backoff;
                s.probe_backoff = (s.probe_backoff * 2).min(PROBE_BACKOFF_MAX);
                self.out.push_back(SfuOutput::Command(Command::Probe {
                    subscriber: s.session,
                    bps: 0,
                }));
            }
        }
    }
}

fn route(
    (publisher, publisher_ssrc): (SessionId, u32),
    (subscriber, subscriber_ssrc): (SessionId, u32),
    kind: MediaKind,
    pt: (u8, u8),
    publisher_rtx: Option<(u32, u8)>,
    subscriber_rtx: Option<(u32, u8)>,
) -> Route {
    let mut pt_map = [(0u8, 0u8); MAX_PT_MAP];
    pt_map[0] = pt;
    Route {
        publisher,
        publisher_ssrc,
        subscriber,
        subscriber_ssrc,
        kind,
        pt_map,
        pt_map_len: 1,
        publisher_rtx,
        subscriber_rtx,
        layered: None,
    }
}

/// How the data plane finds keyframes of `codec`.
fn keyframe_format(codec: &Codec) -> KeyframeFormat {
    if codec.name.eq_ignore_ascii_case("VP8") {
        KeyframeFormat::Vp8
    } else if codec.name.eq_ignore_ascii_case("H264") {
        KeyframeFormat::H264
    } else if codec.name.eq_ignore_ascii_case("VP9") {
        KeyframeFormat::Vp9
    } else if codec.name.eq_ignore_ascii_case("AV1") {
        KeyframeFormat::Av1
    } else {
        KeyframeFormat::Any
    }
}

/// The header extensions the server uses, as the offer's m-line maps them: transport
/// sequence numbers always; audio level, mid and rtp-stream-ids from publishers.
fn accepted_extmaps(m: &sdp::MediaDescription, publisher: bool) -> Vec<sdp::ExtMap> {
    m.extmaps
        .iter()
        .filter(|e| {
            e.uri == TRANSPORT_CC_URI
                || (publisher
                    && [speaker::AUDIO_LEVEL_URI, MID_URI, RID_URI, REPAIRED_RID_URI]
                        .contains(&e.uri.as_str()))
        })
        .map(|e| sdp::ExtMap {
            id: e.id,
            uri: e.uri.clone(),
            direction: None,
        })
        .collect()
}

/// The extension ids a session negotiated (BUNDLE: one mapping for the transport).
fn extension_ids(offer: &sdp::SessionDescription, publisher: bool) -> ExtensionIds {
    let mut ids = ExtensionIds::default();
    for m in offer.media.iter().filter(|m| m.port != 0) {
        ids.remb |= !publisher
            && m.codecs
                .iter()
                .any(|c| c.rtcp_fb.iter().any(|f| f == "goog-remb"));
        for e in accepted_extmaps(m, publisher) {
            let slot = match e.uri.as_str() {
                TRANSPORT_CC_URI => &mut ids.transport_cc,
                speaker::AUDIO_LEVEL_URI => &mut ids.audio_level,
                MID_URI => &mut ids.mid,
                RID_URI => &mut ids.rid,
                REPAIRED_RID_URI => &mut ids.repaired_rid,
                _ => continue,
            };
            if *slot == 0 {
                *slot = e.id;
            }
        }
    }
    ids
}

fn parse_offer(offer: &str) -> Result<sdp::SessionDescription, ApiError> {
    let offer = sdp::parse(offer).map_err(|e| ApiError::bad_sdp(e.to_string()))?;
    offer
        .validate_webrtc()
        .map_err(|e| ApiError::bad_sdp(e.to_string()))?;
    Ok(offer)
}

impl From<&SrtpKeyingMaterial> for RelayKeys {
    fn from(k: &SrtpKeyingMaterial) -> Self {
        Self {
            profile: k.profile.openssl_name().to_owned(),
            key: hex::encode(k.key),
            salt: hex::encode(k.salt()),
        }
    }
}

impl RelayKeys {
    /// The keying material these hex strings describe.
    pub fn material(&self) -> Option<SrtpKeyingMaterial> {
        let profile = cascade_command::keys::SrtpProfile::from_openssl_name(&self.profile)?;
        let key = hex::decode(&self.key).ok()?;
        let salt = hex::decode(&self.salt).ok()?;
        SrtpKeyingMaterial::new(profile, &key, &salt)
    }
}

/// Fresh random AEAD_AES_128_GCM keys (for relay feedback contexts).
/// The publications a subscription delivers tracks of, each once.
fn sources_of(s: &Subscription) -> Vec<&ResourceId> {
    let mut v: Vec<&ResourceId> = Vec::new();
    for t in &s.tracks {
        if !v.contains(&&t.publication) {
            v.push(&t.publication);
        }
    }
    v
}

/// Every SSRC of `tracks`, RTX included.
fn track_ssrcs(tracks: &[PublishedTrack]) -> Vec<u32> {
    let mut v = Vec::new();
    for t in tracks {
        let layers = t
            .layers
            .iter()
            .flat_map(|l| l.ssrc.into_iter().chain(l.rtx_ssrc));
        for s in std::iter::once(t.ssrc).chain(t.rtx_ssrc).chain(layers) {
            if s != 0 && !v.contains(&s) {
                v.push(s);
            }
        }
    }
    v
}

fn random_keys(rng: &mut StdRng) -> SrtpKeyingMaterial {
    let key: [u8; 16] = rng.random();
    let salt: [u8; 12] = rng.random();
    // 16 + 12 bytes are exactly what the GCM profile takes.
    SrtpKeyingMaterial::new(
        cascade_command::keys::SrtpProfile::AeadAes128Gcm,
        &key,
        &salt,
    )
    .unwrap_or_else(|| unreachable!("GCM takes a 16-byte key and a 12-byte salt"))
}

fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

fn media_kind(t: &MediaType) -> Option<MediaKind> {
    match t {
        MediaType::Audio => Some(MediaKind::Audio),
        MediaType::Video => Some(MediaKind::Video),
        _ => None,
    }
}

/// RTCP feedback the server understands; the rest is not answered.
fn supported_feedback(fb: &str) -> bool {
    matches!(
        fb,
        "nack" | "nack pli" | "ccm fir" | "transport-cc" | "goog-remb"
    )
}

fn answer_media(
    m: &sdp::MediaDescription,
    codec: &Codec,
    rtx_pt: Option<u8>,
    direction: Direction,
    send: Option<SendStream>,
) -> MediaAnswer {
    let mut chosen = codec.clone();
    chosen.rtcp_fb.retain(|fb| supported_feedback(fb));
    let mut codecs = vec![chosen];
    if let Some(rtx) = rtx_pt.and_then(|pt| m.codecs.iter().find(|c| c.payload_type == pt)) {
        codecs.push(rtx.clone());
    }
    MediaAnswer {
        mid: m.mid.clone().unwrap_or_default(),
        media_type: m.media_type.clone(),
        protocol: m.protocol.clone(),
        direction,
        rejected: false,
        codecs,
        extmaps: Vec::new(),
        send,
        rtcp_rsize: m.rtcp_rsize,
        recv_rids: Vec::new(),
    }
}

fn rejected(m: &sdp::MediaDescription) -> MediaAnswer {
    MediaAnswer {
        mid: m.mid.clone().unwrap_or_default(),
        media_type: m.media_type.clone(),
        protocol: m.protocol.clone(),
        direction: Direction::Inactive,
        rejected: true,
        codecs: Vec::new(),
        extmaps: Vec::new(),
        send: None,
        rtcp_rsize: false,
        recv_rids: Vec::new(),
    }
}

fn new_resource_id(rng: &mut StdRng) -> ResourceId {
    let bytes: [u8; 16] = rng.random();
    hex::encode(bytes)
}
