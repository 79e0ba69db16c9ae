//! This server as a cascade origin: relaying a local publication, packets unchanged,
//! to an edge (`open_relay`, `close_relay`), the feedback session per edge that reads
//! the edge's RTCP, the data plane's set of cascade peers per publication
//! (`emit_cascade`), answers to the edges' relay probes (saying when the publication is
//! itself a relayed one whose origin is lost, so the state travels down a chain), and
//! closing relays whose edge stopped probing them (a dead edge). An origin knows the
//! relays it was asked for and nothing of the edges' subscriptions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::{Command, MediaKind, SessionId};
use cascade_command::ids::Ssrc;
use cascade_command::keys::SrtpKeyingMaterial;

use super::dto::{RelayAnswer, RelayKeys, RelayLayer, RelayTrack};
use super::relay_link::{ATTR_UPSTREAM_LOST, RELAY_PROBE_USERNAME, probe_key, random_keys};
use super::resource::{Resource, ResourceId, kind_name, new_resource_id, track_ssrcs};
use super::{Sfu, SfuOutput};
use crate::error::ApiError;
use crate::stun::{self, StunClass};

/// What an origin knows of one relay it runs: a publication's packets, unchanged, to
/// the edge at `peer` (the edge's own record of it is a [`RemoteSource`]).
///
/// [`RemoteSource`]: super::edge::RemoteSource
#[derive(Debug, Clone)]
pub(super) struct RelayToEdge {
    pub(super) publication: ResourceId,
    pub(super) peer: SocketAddr,
    /// When the edge last probed this relay (or the relay opened).
    pub(super) last_probe: Instant,
}

impl RelayToEdge {
    /// When the relay closes if no probe comes.
    fn expires(&self) -> Instant {
        self.last_probe + RELAY_EDGE_TIMEOUT
    }
}

/// A relay whose edge has sent no valid probe for this long is closed: the edge is
/// dead or no longer wants it (edges probe every [`RELAY_PROBE_INTERVAL`]).
///
/// [`RELAY_PROBE_INTERVAL`]: super::RELAY_PROBE_INTERVAL
pub const RELAY_EDGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The session that reads an edge's RTCP (keyframe requests, NACKs).
#[derive(Debug, Clone, Copy)]
pub(super) struct EdgeFeedback {
    pub(super) session: SessionId,
    pub(super) keys: SrtpKeyingMaterial,
    pub(super) relays: usize,
}

impl Sfu {
    /// Publication `id` exists and its publisher has not connected yet (no keys).
    pub fn publication_connecting(&self, id: &str) -> bool {
        matches!(self.resources.get(id), Some(Resource::Publication(p)) if p.keys.is_none())
    }

    /// Relays publication `id` to the cascade peer at `peer` (an edge's media
    /// address): every packet the publisher sends goes there unchanged, and the answer
    /// carries what the edge needs to read them. The relay lives while the edge probes
    /// it ([`RELAY_EDGE_TIMEOUT`]), counted from `now`.
    pub fn open_relay(
        &mut self,
        now: Instant,
        id: &str,
        peer: SocketAddr,
    ) -> Result<RelayAnswer, ApiError> {
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
        let user = p.user.clone();
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
            RelayToEdge {
                publication: id.to_owned(),
                peer,
                last_probe: now,
            },
        );
        self.emit_cascade(session);
        // The edge's RTCP comes back from `peer`: one feedback session per edge (the
        // link's session, which it shares when this server is also the edge's edge).
        let feedback = match self.edges.get_mut(&peer) {
            Some(e) => {
                e.relays += 1;
                let (keys, edge) = (e.keys, e.session);
                if let Some(cmd) = self.relay_feedback_command(edge, id) {
                    self.out.push_back(SfuOutput::Command(cmd));
                }
                keys
            }
            None => {
                let keys = random_keys(&mut self.rng);
                let edge = self.peer_link_id(peer);
                self.edges.insert(
                    peer,
                    EdgeFeedback {
                        session: edge,
                        keys,
                        relays: 1,
                    },
                );
                // Installs the session and the feedback routes of every relay to
                // `peer`, this one included.
                self.install_peer_link(now, peer, edge);
                keys
            }
        };
        tracing::info!(resource = super::resource::log_id(id), %peer, relay = %relay_id, "relay opened");
        Ok(RelayAnswer {
            relay: format!("{}/rtc/v1/relays/{relay_id}", self.public_url),
            origin_media: self.candidate,
            room,
            user,
            feedback_srtp: RelayKeys::from(&feedback),
            srtp: RelayKeys::from(&keys),
            tracks,
        })
    }

    /// The data plane's feedback routes of a relay of `publication` read on session
    /// `relay` (the edge's RTCP about the publication's SSRCs goes to its publisher),
    /// and the video SSRCs whose packets the publisher's session keeps for NACKs.
    pub(super) fn relay_feedback_command(
        &self,
        relay: SessionId,
        publication: &str,
    ) -> Option<Command> {
        let Some(Resource::Publication(p)) = self.resources.get(publication) else {
            return None;
        };
        let cached: Vec<Ssrc> = p
            .tracks
            .iter()
            .filter(|t| t.kind == MediaKind::Video)
            .flat_map(|t| std::iter::once(t.ssrc).chain(t.layers.iter().filter_map(|l| l.ssrc)))
            .map(Ssrc)
            .fold(Vec::new(), |mut v, s| {
                if s.0 != 0 && !v.contains(&s) {
                    v.push(s);
                }
                v
            });
        Some(Command::RelayFeedback {
            relay,
            publisher: p.session,
            ssrcs: track_ssrcs(&p.tracks),
            cached,
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
            self.emit_cascade(session);
        }
        tracing::info!(relay = %relay_id, "relay closed");
        Ok(())
    }

    /// Closes every relay whose edge has not probed it for [`RELAY_EDGE_TIMEOUT`]
    /// (counted from its opening until the first probe: an edge probes after a
    /// second).
    pub(super) fn expire_silent_edges(&mut self, now: Instant) {
        let silent: Vec<String> = self
            .relays
            .iter()
            .filter(|(_, r)| now >= r.expires())
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            if let Some(r) = self.relays.get(&id) {
                tracing::warn!(relay = %id, edge = %r.peer, "the edge stopped probing its relay: closing it");
            }
            let _ = self.close_relay(&id);
        }
    }

    /// When the next relay falls silent for good, if no probe comes.
    pub(super) fn next_edge_expiry(&self) -> Option<Instant> {
        self.relays.values().map(RelayToEdge::expires).min()
    }

    /// Closes the relays of a publication that is going away (the publication and
    /// its cascade peers are the caller's to remove).
    pub(super) fn close_relays_of(&mut self, relays: &[String]) {
        for r in relays {
            if let Some(relay) = self.relays.remove(r) {
                self.release_edge(relay.peer);
                tracing::info!(relay = %r, "relay closed with its publication");
            }
        }
    }

    /// One relay fewer to `peer`; the feedback session goes with the last one.
    pub(super) fn release_edge(&mut self, peer: SocketAddr) {
        if let Some(e) = self.edges.get_mut(&peer) {
            e.relays = e.relays.saturating_sub(1);
            if e.relays == 0 {
                let id = e.session;
                self.edges.remove(&peer);
                self.release_peer_link(peer, id);
            }
        }
    }

    /// An origin answers an edge's relay probe: signed success while it relays
    /// `relay` to that edge, an error when it does not (so the edge re-opens at once).
    /// The success carries [`ATTR_UPSTREAM_LOST`] while the publication is itself
    /// relayed from an origin this server lost (so the edge reports `reconnecting`
    /// too). A valid probe keeps the relay alive.
    pub(super) fn answer_relay_probe(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &stun::StunMessage<'_>,
    ) {
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
                    if let Some(r) = self.relays.get_mut(relay) {
                        r.last_probe = now;
                    }
                    let upstream_lost = self
                        .relays
                        .get(relay)
                        .and_then(|r| self.resources.get(&r.publication))
                        .is_some_and(|res| match res {
                            Resource::Publication(p) => {
                                p.remote.as_ref().is_some_and(|x| x.is_reconnecting())
                            }
                            Resource::Subscription(_) => false,
                        });
                    let mut w = stun::StunWriter::new(
                        StunClass::SuccessResponse,
                        stun::METHOD_BINDING,
                        msg.transaction_id,
                    )
                    .xor_mapped_address(from);
                    if upstream_lost {
                        w = w.attribute(ATTR_UPSTREAM_LOST, &[0, 0, 0, 1]);
                    }
                    w.finish(Some(&key), true)
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

    /// Tells the data plane the full set of cascade peers of the packets `publisher`
    /// sends: the edges of every publication it carries (one for a local publisher;
    /// every publication relayed here over the same origin link for a link session).
    pub(super) fn emit_cascade(&mut self, publisher: SessionId) {
        let mut peers: Vec<SocketAddr> = Vec::new();
        for r in self.resources.values() {
            let Resource::Publication(p) = r else {
                continue;
            };
            if p.session != publisher {
                continue;
            }
            for peer in p
                .relays
                .iter()
                .filter_map(|r| self.relays.get(r).map(|r| r.peer))
            {
                if !peers.contains(&peer) {
                    peers.push(peer);
                }
            }
        }
        // The same set in the same order whatever the order publications are met in.
        peers.sort();
        let mut cmds = VecDeque::new();
        self.fanout.set_peers(publisher, peers, &mut cmds);
        self.out.extend(cmds.into_iter().map(SfuOutput::Command));
    }
}
