//! Forwarding routes: which publisher stream reaches which subscriber stream, written
//! as data-plane [`Route`]s (payload type and RTX mapping; layered routes for simulcast)
//! once both ends are connected, with the keyframe request a new route needs. It
//! chooses no layer (`layers` does) and removes no route: the data plane forgets a
//! session's routes with the session (`Command::RemoveSession`).

use std::time::Instant;

use cascade_command::command::{Command, KeyframeFormat, MAX_PT_MAP, MediaKind, Route, SessionId};
use cascade_command::ids::{Pt, Ssrc};

use super::resource::{Resource, ResourceId};
use super::{Sfu, SfuOutput};
use crate::sdp::Codec;

impl Sfu {
    /// Installs every route that involves `session` and whose other end is connected.
    pub(super) fn install_routes_for(&mut self, now: Instant, session: SessionId) {
        let connected = |sfu: &Sfu, s: SessionId| {
            sfu.sessions.get(&s).is_some_and(|x| x.is_connected())
                || sfu.origins.values().any(|o| o.session == s)
                || sfu.is_local_source(s)
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
                            media_ssrc: Ssrc(t.ssrc),
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
                        media_ssrc: Ssrc(ssrc),
                    });
                }
                if let Some(selected) = d.selected {
                    // Re-routing keeps the stream's layer; say it again all the same.
                    commands.push(Command::SelectLayer {
                        subscriber: sub.session,
                        subscriber_ssrc: Ssrc(d.ssrc),
                        layer: Some(Ssrc(selected)),
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
}

fn route(
    (publisher, publisher_ssrc): (SessionId, u32),
    (subscriber, subscriber_ssrc): (SessionId, u32),
    kind: MediaKind,
    pt: (u8, u8),
    publisher_rtx: Option<(u32, u8)>,
    subscriber_rtx: Option<(u32, u8)>,
) -> Route {
    let mut pt_map = [(Pt(0), Pt(0)); MAX_PT_MAP];
    pt_map[0] = (Pt(pt.0), Pt(pt.1));
    Route {
        publisher,
        publisher_ssrc: Ssrc(publisher_ssrc),
        subscriber,
        subscriber_ssrc: Ssrc(subscriber_ssrc),
        kind,
        pt_map,
        pt_map_len: 1,
        publisher_rtx: publisher_rtx.map(|(s, p)| (Ssrc(s), Pt(p))),
        subscriber_rtx: subscriber_rtx.map(|(s, p)| (Ssrc(s), Pt(p))),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(name: &str) -> Codec {
        Codec {
            payload_type: 96,
            name: name.into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: None,
            rtcp_fb: Vec::new(),
        }
    }

    /// The data plane is told each video codec's keyframe format whatever the case of
    /// its name; a codec it cannot parse takes any packet as a switch point.
    #[test]
    fn keyframe_format_by_codec_name() {
        for (name, format) in [
            ("VP8", KeyframeFormat::Vp8),
            ("vp8", KeyframeFormat::Vp8),
            ("H264", KeyframeFormat::H264),
            ("VP9", KeyframeFormat::Vp9),
            ("av1", KeyframeFormat::Av1),
            ("opus", KeyframeFormat::Any),
        ] {
            assert_eq!(keyframe_format(&codec(name)), format, "{name}");
        }
    }

    /// A route maps one payload type and carries the RTX pairs it was given.
    #[test]
    fn route_maps_one_payload_type() {
        let r = route(
            (SessionId(1), 1111),
            (SessionId(2), 9999),
            MediaKind::Video,
            (96, 100),
            Some((1112, 97)),
            None,
        );
        assert_eq!((r.publisher, r.subscriber), (SessionId(1), SessionId(2)));
        assert_eq!(
            (r.publisher_ssrc, r.subscriber_ssrc),
            (Ssrc(1111), Ssrc(9999))
        );
        assert_eq!(r.map_pt(Pt(96)), Some(Pt(100)));
        assert_eq!(r.map_pt(Pt(97)), None);
        assert_eq!(r.publisher_rtx, Some((Ssrc(1112), Pt(97))));
        assert_eq!(r.subscriber_rtx, None);
        assert_eq!(r.layered, None);
    }
}
