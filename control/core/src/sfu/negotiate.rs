//! WHIP/WHEP negotiation: parsing an offer, choosing each m-line's codec, header
//! extensions and simulcast rids, writing the answer, and creating the publication or
//! subscription with its peer session; trickle and ICE restart (`PATCH` with an
//! sdpfrag). It only creates resources: routes wait for DTLS (`routes`) and layers for
//! rates (`layers`).

use std::time::Instant;

use cascade_command::command::{ExtensionIds, MediaKind, SessionId, TRANSPORT_CC_URI};
use rand::Rng;

use super::dto::{Created, Patched, RoomEvent, RoomEventKind, TrackPreferences};
use super::layers::{PROBE_BACKOFF_MIN, SimulcastLayer};
use super::resource::{
    DeliveredTrack, Publication, PublishedTrack, Resource, ResourceId, Subscription, log_id,
    new_resource_id,
};
use super::{Sfu, SfuOutput};
use crate::cert::Fingerprint;
use crate::error::ApiError;
use crate::ice::IceCredentials;
use crate::sdp::{self, Codec, Direction, MediaAnswer, MediaType, SendStream, SessionAnswer};
use crate::session::PeerSession;
use crate::speaker;

/// `a=extmap` URIs of the RTP stream id extensions (RFC 8852) and mid (RFC 8843).
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

impl Sfu {
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
        tracing::info!(room, user, resource = log_id(&id), "publication created");
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
        tracing::info!(
            room,
            resource = log_id(&id),
            tracks = total,
            "subscription created"
        );
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
        self.next_session.0 += 1;
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

    /// The entity-tag of resource `id`'s current ICE session (RFC 9725 §4.3.1), a
    /// strong tag made of this server's ICE username fragment: new after each ICE
    /// restart. `None` for a resource without a peer session here.
    pub fn ice_etag(&self, id: &str) -> Option<String> {
        let session = self.resources.get(id).map(Resource::session)?;
        self.sessions
            .get(&session)
            .map(|s| format!("\"{}\"", s.local_ice().ufrag))
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
