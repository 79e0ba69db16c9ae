//! Local sources: streams this server produces itself (an MCU's mixed audio, its
//! composed video) and feeds to the data plane as a local publisher would, from a UDP
//! socket of its own, under SRTP keys drawn here instead of negotiated by DTLS. A
//! local source is a publication that belongs to no room listing: room-wide
//! subscribes, room events and speaker detection never see it; a subscription names
//! it by id. It has no ICE or DTLS session, so it is connected from the start, and it
//! ends only when its owner removes it. What the MCU reads of the room's publications
//! (their users, tracks and layers) and of its subscriptions (their estimates) is
//! answered here too.

use std::net::SocketAddr;
use std::time::Instant;

use cascade_command::command::{Command, ExtensionIds, MediaKind, SessionId};
use cascade_command::ids::Ssrc;
use cascade_command::keys::SrtpKeyingMaterial;
use rand::Rng;

use super::relay_link::random_keys;
use super::resource::{Publication, PublishedTrack, Resource, ResourceId, new_resource_id};
use super::{Sfu, SfuOutput};
use crate::sdp::Codec;

/// What the producer of a local source needs to feed the data plane.
#[derive(Debug, Clone)]
pub struct LocalSource {
    /// The publication's id (subscriptions name it).
    pub resource: ResourceId,
    pub session: SessionId,
    /// Keys the producer protects its RTP and RTCP with (the data plane reads with them).
    pub rx: SrtpKeyingMaterial,
    /// Keys the data plane protects its feedback to the producer with (PLI, NACK,
    /// receiver reports).
    pub tx: SrtpKeyingMaterial,
}

/// One track of a local source.
#[derive(Debug, Clone)]
pub struct LocalTrack {
    pub kind: MediaKind,
    pub codec: Codec,
    pub ssrc: u32,
}

impl Sfu {
    /// A local source in `room` whose packets come from `peer` (the producer's
    /// socket), with these tracks. The data plane installs its session at once.
    pub fn add_local_source(
        &mut self,
        now: Instant,
        room: &str,
        peer: SocketAddr,
        tracks: &[LocalTrack],
    ) -> LocalSource {
        let session = self.next_session;
        self.next_session.0 += 1;
        let rx = random_keys(&mut self.rng);
        let tx = random_keys(&mut self.rng);
        let resource = new_resource_id(&mut self.rng);
        let tracks = tracks
            .iter()
            .enumerate()
            .map(|(i, t)| PublishedTrack {
                mid: i.to_string(),
                kind: t.kind,
                codec: t.codec.clone(),
                rtx_pt: None,
                ssrc: t.ssrc,
                rtx_ssrc: None,
                layers: Vec::new(),
            })
            .collect();
        self.resources.insert(
            resource.clone(),
            Resource::Publication(Publication {
                room: room.to_owned(),
                user: String::new(),
                session,
                tracks,
                keys: Some(rx),
                relays: Vec::new(),
                remote: None,
                since: now,
            }),
        );
        self.session_resource.insert(session, resource.clone());
        self.local_sources.insert(session);
        self.out
            .push_back(SfuOutput::Command(Command::PeerValidated {
                id: session,
                peer,
            }));
        self.out
            .push_back(SfuOutput::Command(Command::InstallSession {
                id: session,
                peer,
                rx,
                tx,
                rtcp_ssrc: Ssrc(self.rng.random::<u32>() & !0xff),
                extensions: ExtensionIds::default(),
            }));
        LocalSource {
            resource,
            session,
            rx,
            tx,
        }
    }

    /// `peer` is a socket of this host that reads publications relayed to it (an
    /// MCU's input): the data-plane workers copy to it, never the kernel, whose
    /// clones leave by an interface.
    pub fn add_local_relay_peer(&mut self, peer: SocketAddr) {
        self.fanout.add_local_peer(peer);
    }

    /// Ends local source `id` (its subscriptions stay, with nothing routed to them).
    pub fn remove_local_source(&mut self, id: &str) {
        let _ = self.end_resource(id, "deleted");
    }

    /// Session `s` is a local source's (connected from the start).
    pub(super) fn is_local_source(&self, s: SessionId) -> bool {
        self.local_sources.contains(&s)
    }

    /// The user (token subject) who published publication `id`, and its tracks.
    pub fn publication_tracks(&self, id: &str) -> Option<(&str, &[PublishedTrack])> {
        match self.resources.get(id) {
            Some(Resource::Publication(p)) => Some((&p.user, &p.tracks)),
            _ => None,
        }
    }

    /// The publications of `room` published here and those relayed here, in
    /// publication order, local sources excluded.
    pub fn room_publications(&self, room: &str) -> Vec<ResourceId> {
        let mut ids: Vec<(Instant, ResourceId)> = self
            .resources
            .iter()
            .filter_map(|(id, r)| match r {
                Resource::Publication(p)
                    if p.room == room && !self.local_sources.contains(&p.session) =>
                {
                    Some((p.since, id.clone()))
                }
                _ => None,
            })
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// Subscription `id` exists; with its bandwidth estimate, when it has one.
    pub fn subscription_estimate(&self, id: &str) -> Option<Option<u64>> {
        match self.resources.get(id) {
            Some(Resource::Subscription(s)) => Some(s.estimate),
            _ => None,
        }
    }
}
