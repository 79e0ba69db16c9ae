//! The one data-plane session per other server's media address. A server is an edge
//! of another (it reads the publications relayed from it, and sends it feedback: an
//! [`OriginLink`]) and that server's origin (it relays publications to it, and reads
//! its feedback: an [`EdgeFeedback`]) over the same pair of addresses, as in a 1:1
//! call across two servers; the data plane knows a peer address by one session, so
//! both roles share it: it reads feedback with the keys this server gave the peer as
//! its origin, sends feedback with the keys the peer gave it as its origin, and reads
//! each relayed publication with that publication's keys. Installing the session
//! again (a new role, new keys) wipes what the data plane held for it, so this gives
//! it back: the relayed sources and their routes, and the relays' feedback routes.
//!
//! [`OriginLink`]: super::edge::OriginLink
//! [`EdgeFeedback`]: super::origin::EdgeFeedback

use std::net::SocketAddr;
use std::time::Instant;

use cascade_command::command::{Command, ExtensionIds, SessionId};
use cascade_command::ids::Ssrc;
use cascade_command::keys::SrtpKeyingMaterial;
use rand::Rng;

use super::relay_link::random_keys;
use super::resource::{Resource, track_ssrcs};
use super::{Sfu, SfuOutput};

impl Sfu {
    /// The session of the link with `peer`, in either role, if there is one.
    pub(super) fn peer_link_session(&self, peer: SocketAddr) -> Option<SessionId> {
        self.origins
            .get(&peer)
            .map(|l| l.session)
            .or_else(|| self.edges.get(&peer).map(|e| e.session))
    }

    /// A session id for a new link with `peer`: the other role's, or a fresh one.
    pub(super) fn peer_link_id(&mut self, peer: SocketAddr) -> SessionId {
        self.peer_link_session(peer).unwrap_or_else(|| {
            let id = self.next_session;
            self.next_session.0 += 1;
            id
        })
    }

    /// (Re)installs session `id` of the link with `peer` with the keys of the roles
    /// this server has towards it, and gives the session back its relayed sources,
    /// their routes, and the feedback routes of the relays to `peer`.
    pub(super) fn install_peer_link(&mut self, now: Instant, peer: SocketAddr, id: SessionId) {
        let rx = match self.edges.get(&peer) {
            Some(e) => e.keys,
            None => random_keys(&mut self.rng),
        };
        let tx = match self.origins.get(&peer) {
            Some(l) => l.keys,
            None => random_keys(&mut self.rng),
        };
        self.out
            .push_back(SfuOutput::Command(Command::PeerValidated { id, peer }));
        self.out
            .push_back(SfuOutput::Command(Command::InstallSession {
                id,
                peer,
                rx,
                tx,
                rtcp_ssrc: Ssrc(self.rng.random::<u32>() & !0xff),
                extensions: ExtensionIds::default(),
            }));
        let relayed: Vec<(Vec<Ssrc>, SrtpKeyingMaterial)> = self
            .resources
            .values()
            .filter_map(|r| match r {
                Resource::Publication(p) if p.session == id && p.remote.is_some() => {
                    Some((track_ssrcs(&p.tracks), p.keys?))
                }
                _ => None,
            })
            .collect();
        let had_sources = !relayed.is_empty();
        for (ssrcs, rx) in relayed {
            self.out
                .push_back(SfuOutput::Command(Command::AddRelayedSource {
                    session: id,
                    ssrcs,
                    rx,
                }));
        }
        if had_sources {
            self.install_routes_for(now, id);
        }
        let publications: Vec<String> = self
            .relays
            .values()
            .filter(|r| r.peer == peer)
            .map(|r| r.publication.clone())
            .collect();
        for publication in publications {
            if let Some(cmd) = self.relay_feedback_command(id, &publication) {
                self.out.push_back(SfuOutput::Command(cmd));
            }
        }
    }

    /// Removes the link's session once neither role uses it any more.
    pub(super) fn release_peer_link(&mut self, peer: SocketAddr, id: SessionId) {
        if self.peer_link_session(peer).is_none() {
            self.out
                .push_back(SfuOutput::Command(Command::RemoveSession { id }));
        }
    }
}
