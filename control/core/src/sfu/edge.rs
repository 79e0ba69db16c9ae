//! This server as a cascade edge: publications of other servers relayed here (remote
//! publications), the link session per origin that carries them, probing each origin
//! over the relay link (consent freshness), re-opening a relay when its origin is lost
//! and ending the publication when it stays lost (with the relays this server runs
//! further down a chain), following the state an origin reports of its own origin,
//! and releasing relays nobody here uses any more. The HTTP calls to an origin are the shell's: this module asks for them
//! ([`SfuOutput::ReopenRelay`], [`SfuOutput::CloseRelay`]) and reads their outcome.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::{Command, MediaKind, SessionId};
use cascade_command::keys::SrtpKeyingMaterial;

use super::dto::RelayAnswer;
use super::layers::SimulcastLayer;
use super::relay_link::{ATTR_UPSTREAM_LOST, has_attribute, probe_key, relay_probe};
use super::resource::{
    Publication, PublishedTrack, Resource, ResourceId, new_resource_id, track_ssrcs,
};
use super::{Sfu, SfuOutput};
use crate::error::ApiError;
use crate::sdp::Codec;
use crate::stun::{self, StunClass};

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

/// Probes in flight an answer may match.
const RELAY_PROBES_KEPT: usize = 4;

/// A publication of another server, relayed to this one: this edge's side of a relay
/// (the origin's side is a [`RelayToEdge`]).
///
/// [`RelayToEdge`]: super::origin::RelayToEdge
#[derive(Debug, Clone)]
pub(super) struct RemoteSource {
    /// Its resource URL on the origin.
    pub(super) url: String,
    /// The URL of the relay resource on the origin, closed when nobody here needs it.
    pub(super) relay_url: String,
    pub(super) origin: SocketAddr,
    /// Since when no subscription here uses it.
    pub(super) idle_since: Option<Instant>,
    /// When the origin last answered a probe of this relay (or the relay opened).
    pub(super) last_answer: Instant,
    pub(super) next_probe: Instant,
    /// Transaction ids of the last probes sent.
    pub(super) probes: [[u8; 12]; RELAY_PROBES_KEPT],
    pub(super) probes_sent: usize,
    /// Since when the origin is lost for this publication (no answer to probes, or a
    /// relay it no longer knows); cleared when the relay is re-opened.
    pub(super) lost_since: Option<Instant>,
    /// When to ask the origin for the relay again, while lost.
    pub(super) next_reopen: Instant,
    /// A re-open request is under way.
    pub(super) reopening: bool,
    /// The origin relays a publication it relays itself from an origin it lost (its
    /// last probe answer said so): reconnecting here too, further down the chain.
    pub(super) upstream_lost: bool,
}

impl RemoteSource {
    /// The origin, or an origin further up the chain, is lost for now.
    pub(super) fn is_reconnecting(&self) -> bool {
        self.lost_since.is_some() || self.upstream_lost
    }
}

/// The link from one origin server: one pseudo-session whose peer is the origin's
/// media address, carrying every publication relayed from it.
#[derive(Debug, Clone, Copy)]
pub(super) struct OriginLink {
    pub(super) session: SessionId,
    pub(super) publications: usize,
    /// The keys this edge protects its RTCP to the origin with; also the key of
    /// the relay probes.
    pub(super) keys: SrtpKeyingMaterial,
}

impl Sfu {
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
                user: answer.user,
                session,
                tracks,
                keys: Some(keys),
                relays: Vec::new(),
                since: now,
                remote: Some(Box::new(RemoteSource {
                    url: url.to_owned(),
                    relay_url: answer.relay,
                    origin,
                    idle_since: Some(now),
                    last_answer: now,
                    next_probe: now + RELAY_PROBE_INTERVAL,
                    probes: [[0; 12]; RELAY_PROBES_KEPT],
                    probes_sent: 0,
                    lost_since: None,
                    next_reopen: now,
                    reopening: false,
                    upstream_lost: false,
                })),
            }),
        );
        self.remote.insert(url.to_owned(), id.clone());
        tracing::info!(
            url = super::resource::log_url(url),
            local = super::resource::log_id(&id),
            "remote publication relayed here"
        );
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
            // (which gives it back its relayed sources and routes).
            link.keys = feedback;
            let id = link.session;
            self.install_peer_link(now, origin, id);
            return id;
        }
        // This server may already be that server's origin: one session for both.
        let id = self.peer_link_id(origin);
        self.origins.insert(
            origin,
            OriginLink {
                session: id,
                publications: 1,
                keys: feedback,
            },
        );
        self.install_peer_link(now, origin, id);
        id
    }

    /// Marks remote publications used or idle, and closes those idle past the grace.
    pub(super) fn sweep_remote(&mut self, now: Instant) {
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
        if !p.relays.is_empty() {
            // Further down a chain: those edges learn it from their next probe.
            self.close_relays_of(&p.relays);
            self.emit_cascade(p.session);
        }
        let ssrcs = track_ssrcs(&p.tracks);
        self.out
            .push_back(SfuOutput::Command(Command::RemoveRelayedSource {
                session: p.session,
                ssrcs,
            }));
        self.leave_link(remote.origin);
        self.out.push_back(SfuOutput::CloseRelay {
            relay: remote.relay_url,
        });
        tracing::info!(
            url = super::resource::log_url(&remote.url),
            "remote publication released"
        );
    }

    /// An edge reads an origin's answer to one of its relay probes.
    pub(super) fn relay_probe_answered(
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
                    let upstream_lost = has_attribute(msg.raw(), ATTR_UPSTREAM_LOST);
                    if upstream_lost != remote.upstream_lost {
                        tracing::info!(url = %remote.url, upstream_lost, "the origin's own origin changed state");
                        remote.upstream_lost = upstream_lost;
                        self.states_dirty = true;
                    }
                }
                // The origin no longer relays this publication here (it restarted, or
                // the publication is gone): re-open now rather than after the timeout.
                StunClass::ErrorResponse if remote.lost_since.is_none() => {
                    tracing::warn!(
                        url = super::resource::log_url(&remote.url),
                        "origin refused a relay probe: re-opening"
                    );
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
    pub(super) fn check_origins(&mut self, now: Instant) {
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
                let relay_id = remote.relay_url.rsplit('/').next().unwrap_or_default();
                let probe = relay_probe(relay_id, &link.keys, tid);
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
                tracing::warn!(
                    url = super::resource::log_url(&remote.url),
                    "origin stopped answering: re-opening the relay"
                );
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
            tracing::warn!(
                resource = super::resource::log_id(&id),
                "origin lost for good: the relayed publication ends"
            );
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
                tracing::info!(
                    url = super::resource::log_url(url),
                    "the origin no longer has the publication"
                );
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
            remote.relay_url = answer.relay.clone();
            remote.origin = answer.origin_media;
            remote.last_answer = now;
            remote.next_probe = now + RELAY_PROBE_INTERVAL;
            remote.lost_since = None;
            remote.reopening = false;
        }
        if session != old_session {
            self.install_routes_for(now, session);
            // Relays further down a chain now copy the new link's packets.
            self.emit_cascade(old_session);
            self.emit_cascade(session);
        }
        if old.relay_url != answer.relay {
            // The origin may still hold the old relay (it was only unreachable).
            self.out.push_back(SfuOutput::CloseRelay {
                relay: old.relay_url,
            });
        }
        self.states_dirty = true;
        tracing::info!(url = super::resource::log_url(url), "relay re-opened");
    }

    /// One relayed publication fewer on the link from `origin`; the link goes with
    /// the last one.
    fn leave_link(&mut self, origin: SocketAddr) {
        if let Some(link) = self.origins.get_mut(&origin) {
            link.publications = link.publications.saturating_sub(1);
            if link.publications == 0 {
                let session = link.session;
                self.origins.remove(&origin);
                self.release_peer_link(origin, session);
            }
        }
    }

    /// Ends a relayed publication here: its subscriptions see their source end.
    fn end_remote(&mut self, id: &str, reason: &'static str) {
        self.drop_remote(id);
        self.ended(id, reason);
    }
}
