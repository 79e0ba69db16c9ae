//! Resources: what a publication or a subscription holds (tracks, keys, relays,
//! delivered tracks), how a resource is named by URL, how its state is reported
//! (`GET {resource}`, its event stream, `GET /rtc/v1/rooms/{room}`), and `DELETE`, which
//! frees a resource's session, its relays and (through `RemoveSession`) its routes. It
//! negotiates no SDP, installs no route and picks no layer.

use std::time::{Duration, Instant};

use cascade_command::command::{Command, MediaKind, SessionId};
use cascade_command::ids::Ssrc;
use cascade_command::keys::SrtpKeyingMaterial;
use rand::Rng;
use rand::rngs::StdRng;

use super::dto::{
    PublicationInfo, ResourceEvent, ResourceInfo, ResourceState, RoomEvent, RoomEventKind,
    RoomInfo, TrackInfo, TrackPreferences,
};
use super::edge::RemoteSource;
use super::layers::SimulcastLayer;
use super::{Sfu, SfuOutput};
use crate::error::ApiError;
use crate::sdp::Codec;
use crate::session::{PeerSession, SessionOutput};

/// Identifies a publication or a subscription; the last segment of its resource URL.
pub type ResourceId = String;

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

#[derive(Debug)]
pub(super) struct Publication {
    pub(super) room: String,
    pub(super) user: String,
    pub(super) session: SessionId,
    pub(super) tracks: Vec<PublishedTrack>,
    /// The publisher's SRTP keys (what it protects with), once DTLS is done. They
    /// leave this server only inside a relay answer to an authenticated cluster call.
    pub(super) keys: Option<SrtpKeyingMaterial>,
    /// Relay ids of the cascade peers this publication is relayed to.
    pub(super) relays: Vec<String>,
    /// Set when the publication lives on another server and reaches this one
    /// through a relay.
    pub(super) remote: Option<Box<RemoteSource>>,
    /// When it was created.
    pub(super) since: Instant,
}

/// One publisher track delivered on one subscriber m-line.
#[derive(Debug, Clone)]
pub(super) struct DeliveredTrack {
    pub(super) publication: ResourceId,
    pub(super) track: usize,
    /// The subscriber's m-line.
    pub(super) mid: String,
    pub(super) prefs: TrackPreferences,
    /// The layer (publisher SSRC) asked of the data plane; `None` when paused.
    pub(super) selected: Option<u32>,
    pub(super) ssrc: u32,
    pub(super) rtx_ssrc: Option<u32>,
    pub(super) pt: u8,
    pub(super) rtx_pt: Option<u8>,
}

#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) room: String,
    pub(super) session: SessionId,
    pub(super) tracks: Vec<DeliveredTrack>,
    /// The data plane's estimate of the path to the subscriber (transport-wide
    /// congestion control negotiated); `None` without one.
    pub(super) estimate: Option<u64>,
    pub(super) probe_until: Option<Instant>,
    pub(super) probe_next: Instant,
    pub(super) probe_backoff: Duration,
}

#[derive(Debug)]
pub(super) enum Resource {
    Publication(Publication),
    Subscription(Subscription),
}

impl Resource {
    pub(super) fn room(&self) -> &str {
        match self {
            Resource::Publication(p) => &p.room,
            Resource::Subscription(s) => &s.room,
        }
    }

    pub(super) fn session(&self) -> SessionId {
        match self {
            Resource::Publication(p) => p.session,
            Resource::Subscription(s) => s.session,
        }
    }
}

impl Sfu {
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

    /// Ends a publication or subscription and frees everything it held.
    pub fn delete(&mut self, id: &str) -> Result<(), ApiError> {
        self.end_resource(id, "deleted")
    }

    /// Ends a resource for `reason` (its event stream's last `ended` says it) and
    /// frees everything it held: its session leaves the data plane.
    pub(super) fn end_resource(&mut self, id: &str, reason: &'static str) -> Result<(), ApiError> {
        let resource = self
            .resources
            .remove(id)
            .ok_or_else(|| ApiError::unknown_resource(id))?;
        let session = resource.session();
        if let Resource::Publication(p) = &resource {
            self.close_relays_of(&p.relays);
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
        self.local_sources.remove(&session);
        if let Some(mut s) = self.sessions.remove(&session) {
            s.shutdown();
            self.drain_session_transmits(&mut s);
            self.forget_session(&s);
        }
        self.out
            .push_back(SfuOutput::Command(Command::RemoveSession { id: session }));
        self.ended(id, reason);
        tracing::info!(resource = log_id(id), reason, "resource ended");
        Ok(())
    }

    pub(super) fn forget_session(&mut self, s: &PeerSession) {
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

    /// Reports that resource `id`, now gone, ended.
    pub(super) fn ended(&mut self, id: &str, reason: &'static str) {
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
                Some(remote) if remote.upstream_lost => {
                    (ResourceState::Reconnecting, "upstream_unreachable")
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
                let mut upstream = false;
                for src in &sources {
                    if let Some(Resource::Publication(p)) = self.resources.get(*src) {
                        present += 1;
                        lost |= p.remote.as_ref().is_some_and(|r| r.lost_since.is_some());
                        upstream |= p.remote.as_ref().is_some_and(|r| r.upstream_lost);
                    }
                }
                if !sources.is_empty() && present == 0 {
                    (ResourceState::Ended, "source_ended")
                } else if lost {
                    (ResourceState::Reconnecting, "origin_unreachable")
                } else if upstream {
                    (ResourceState::Reconnecting, "upstream_unreachable")
                } else {
                    (ResourceState::Live, "connected")
                }
            }
        }
    }

    /// Reports every resource whose state changed since it was last reported.
    pub(super) fn report_states(&mut self) {
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
}

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
pub(super) fn track_ssrcs(tracks: &[PublishedTrack]) -> Vec<Ssrc> {
    let mut v = Vec::new();
    for t in tracks {
        let layers = t
            .layers
            .iter()
            .flat_map(|l| l.ssrc.into_iter().chain(l.rtx_ssrc));
        for s in std::iter::once(t.ssrc)
            .chain(t.rtx_ssrc)
            .chain(layers)
            .map(Ssrc)
        {
            if s.0 != 0 && !v.contains(&s) {
                v.push(s);
            }
        }
    }
    v
}

pub(super) fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// What logs show of a resource id: its first 8 hex digits (32 of its 128 bits). The
/// whole id is a bearer capability (`GET`/events need nothing else), so it never goes
/// to a log.
pub(super) fn log_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// What logs show of a resource URL (this server's or another's): the URL with its id
/// cut to [`log_id`]'s prefix.
pub(super) fn log_url(url: &str) -> String {
    const PATH: &str = "/rtc/v1/resources/";
    match url.find(PATH) {
        Some(at) => {
            let (base, id) = url.split_at(at + PATH.len());
            format!("{base}{}…", log_id(id))
        }
        None => url.to_owned(),
    }
}

pub(super) fn new_resource_id(rng: &mut StdRng) -> ResourceId {
    let bytes: [u8; 16] = rng.random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_show_a_prefix_of_resource_ids() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(log_id(id), "01234567");
        assert_eq!(log_id("abc"), "abc");
        assert_eq!(
            log_url(&format!("https://m1.example:8443/rtc/v1/resources/{id}")),
            "https://m1.example:8443/rtc/v1/resources/01234567…"
        );
        assert_eq!(
            log_url("https://m1.example/other"),
            "https://m1.example/other"
        );
    }
}
