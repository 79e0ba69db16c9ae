//! The SFU core driven end to end without sockets: client peers (controlling ICE, DTLS
//! client) publish and subscribe through `Sfu`, datagrams are passed by hand, and the
//! data-plane commands it emits are checked.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::{Command, MediaKind, SessionId};
use cascade_command::ids::{Pt, Ssrc};
use cascade_command::keys::SrtpProfile;
use cascade_core::error::ErrorKind;
use cascade_core::sfu::{ResourceEvent, ResourceState, Sfu, SfuOutput};
use cascade_peer::{ClientPeer, PeerRole};

use common::{server, start};

const SERVER: &str = "127.0.0.1:8443";

fn sfu(now: Instant) -> Sfu {
    server(SERVER, "http://127.0.0.1:8080", now, 1)
}

/// Runs the exchange between `peer` (at `addr`) and the SFU until the peer has keys
/// or `limit` simulated time passes; returns every command the SFU emitted.
fn connect(
    sfu: &mut Sfu,
    peer: &mut ClientPeer,
    addr: SocketAddr,
    now: &mut Instant,
) -> Vec<Command> {
    let mut commands = Vec::new();
    let end = *now + Duration::from_secs(10);
    while *now < end {
        while let Some((_, data)) = peer.poll_transmit(*now) {
            sfu.handle_datagram(*now, addr, &data);
        }
        while let Some(o) = sfu.poll_output() {
            match o {
                SfuOutput::Transmit { dest, data } => {
                    assert_eq!(dest, addr, "the server only answers the peer's address");
                    peer.handle_receive(*now, &data).unwrap();
                }
                SfuOutput::Command(c) => commands.push(c),
                SfuOutput::Event(_) | SfuOutput::Room(_) => {}
                SfuOutput::CloseRelay { .. } | SfuOutput::ReopenRelay { .. } => {
                    panic!("no relay while connecting")
                }
            }
        }
        if peer.keys().is_some()
            && commands
                .iter()
                .any(|c| matches!(c, Command::InstallSession { .. }))
        {
            break;
        }
        *now += Duration::from_millis(10);
        sfu.handle_timeout(*now);
    }
    commands
}

#[test]
fn publish_subscribe_route_and_delete() {
    let mut now = start();
    let mut sfu = sfu(now);
    let pub_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let sub_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();

    let mut publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 1111,
            video_ssrc: 2222,
        },
        &[],
    )
    .unwrap();
    let created = sfu
        .publish(now, "room", "alice", &publisher.offer())
        .unwrap();
    assert!(created.answer.contains("a=ice-lite"));
    assert!(created.answer.contains("a=setup:passive"));
    publisher.accept_answer(&created.answer, now).unwrap();
    let cmds = connect(&mut sfu, &mut publisher, pub_addr, &mut now);
    let keys = publisher.keys().expect("publisher connected");
    let install = cmds
        .iter()
        .find_map(|c| match c {
            Command::InstallSession { peer, rx, tx, .. } => Some((*peer, *rx, *tx)),
            _ => None,
        })
        .expect("InstallSession");
    assert_eq!(install.0, pub_addr, "media goes to the address ICE checked");
    assert_eq!(
        install.1, keys.tx,
        "server unprotects with the publisher's send keys"
    );
    assert_eq!(install.2, keys.rx);
    assert_eq!(keys.tx.profile, SrtpProfile::AeadAes128Gcm, "GCM preferred");

    let info = sfu.room_info("room");
    assert_eq!(info.publications.len(), 1);
    assert_eq!(info.publications[0].tracks.len(), 2);

    let mut subscriber = ClientPeer::new(PeerRole::Subscriber, &[]).unwrap();
    let sub = sfu
        .subscribe(now, "room", &[], &subscriber.offer())
        .unwrap();
    assert!(sub.answer.contains("a=sendonly"));
    assert!(sub.answer.contains("a=ssrc:"));
    subscriber.accept_answer(&sub.answer, now).unwrap();
    let cmds = connect(&mut sfu, &mut subscriber, sub_addr, &mut now);
    assert!(subscriber.keys().is_some());
    let routes: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Route(r) => Some(*r),
            _ => None,
        })
        .collect();
    let audio = routes
        .iter()
        .find(|r| r.publisher_ssrc == Ssrc(1111))
        .expect("audio route");
    assert_eq!(audio.kind, MediaKind::Audio);
    assert_eq!(audio.map_pt(Pt(111)), Some(Pt(111)));
    let video = routes
        .iter()
        .find(|r| r.publisher_ssrc == Ssrc(2222))
        .expect("video route");
    assert_eq!(
        video.publisher_rtx,
        Some((Ssrc(2223), Pt(97))),
        "publisher RTX unwrapped"
    );
    assert_eq!(
        video.subscriber_rtx.map(|(_, pt)| pt),
        Some(Pt(97)),
        "subscriber gets RTX"
    );
    assert_eq!(routes.len(), 2, "one route per track");
    assert!(
        cmds.iter().any(|c| matches!(
            c,
            Command::RequestKeyframe {
                media_ssrc: Ssrc(2222),
                ..
            }
        )),
        "a new subscriber asks for a keyframe"
    );
    assert_eq!(sfu.session_count(), 2);

    sfu.delete(&created.resource).unwrap();
    sfu.delete(&sub.resource).unwrap();
    let removed = std::iter::from_fn(|| sfu.poll_output())
        .filter(|o| matches!(o, SfuOutput::Command(Command::RemoveSession { .. })))
        .count();
    assert_eq!(removed, 2);
    assert_eq!(sfu.session_count(), 0);
    assert!(sfu.room_info("room").publications.is_empty());
    assert!(
        sfu.delete(&created.resource).is_err(),
        "second DELETE is 404"
    );
}

#[test]
fn passive_offer_makes_the_server_the_dtls_client() {
    let mut now = start();
    let mut sfu = sfu(now);
    let mut publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 5,
            video_ssrc: 7,
        },
        &[],
    )
    .unwrap()
    .passive();
    let offer = publisher.offer();
    assert!(offer.contains("a=setup:passive"));
    let created = sfu.publish(now, "r", "u", &offer).unwrap();
    assert!(
        created.answer.contains("a=setup:active"),
        "{}",
        created.answer
    );
    publisher.accept_answer(&created.answer, now).unwrap();
    let cmds = connect(
        &mut sfu,
        &mut publisher,
        "10.0.0.7:7".parse().unwrap(),
        &mut now,
    );
    assert!(
        publisher.keys().is_some(),
        "handshake with the server as client"
    );
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::InstallSession { .. }))
    );
}

#[test]
fn cm_profile_when_peer_offers_only_cm() {
    let mut now = start();
    let mut sfu = sfu(now);
    let mut publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 5,
            video_ssrc: 7,
        },
        &[SrtpProfile::Aes128CmHmacSha1_80],
    )
    .unwrap();
    let created = sfu.publish(now, "r", "u", &publisher.offer()).unwrap();
    publisher.accept_answer(&created.answer, now).unwrap();
    connect(
        &mut sfu,
        &mut publisher,
        "10.0.0.9:1".parse().unwrap(),
        &mut now,
    );
    assert_eq!(
        publisher.keys().expect("connected").tx.profile,
        SrtpProfile::Aes128CmHmacSha1_80
    );
}

#[test]
fn unchecked_address_gets_no_dtls_and_no_media() {
    let now = start();
    let mut sfu = sfu(now);
    let mut publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 5,
            video_ssrc: 7,
        },
        &[],
    )
    .unwrap();
    let created = sfu.publish(now, "r", "u", &publisher.offer()).unwrap();
    publisher.accept_answer(&created.answer, now).unwrap();
    // The room hears of the publication.
    assert!(matches!(sfu.poll_output(), Some(SfuOutput::Room(_))));
    // A ClientHello-looking record from an address that never passed a check.
    let mut hello = vec![22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4];
    hello.extend_from_slice(&[1, 0, 0, 0]);
    sfu.handle_datagram(now, "10.9.9.9:9".parse().unwrap(), &hello);
    assert!(
        sfu.poll_output().is_none(),
        "nothing answered, nothing installed"
    );
}

#[test]
fn never_connected_session_is_freed() {
    let now = start();
    let mut sfu = sfu(now);
    let publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 5,
            video_ssrc: 7,
        },
        &[],
    )
    .unwrap();
    sfu.publish(now, "r", "u", &publisher.offer()).unwrap();
    assert_eq!(sfu.session_count(), 1);
    sfu.handle_timeout(now + Duration::from_secs(31));
    assert_eq!(sfu.session_count(), 0);
    assert_eq!(sfu.publication_count(), 0);
}

#[test]
fn offers_the_server_must_refuse() {
    let now = start();
    let mut sfu = sfu(now);
    let good = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 5,
            video_ssrc: 7,
        },
        &[],
    )
    .unwrap()
    .offer();
    let cases = [
        ("", "bad_sdp"),
        ("hello world", "bad_sdp"),
        (&good.replace("a=rtcp-mux\r\n", "") as &str, "bad_sdp"),
        (
            &good.replace("a=fingerprint", "a=x-fingerprint") as &str,
            "bad_sdp",
        ),
        (
            &good
                .replace("opus/48000/2", "PCMU/8000")
                .replace("VP8/90000", "H263/90000") as &str,
            "no_common_codec",
        ),
    ];
    for (offer, code) in cases {
        let err = sfu.publish(now, "r", "u", offer).unwrap_err();
        assert_eq!(err.code, code, "{offer:?}: {err}");
        assert_eq!(err.kind, ErrorKind::BadRequest);
    }
    assert_eq!(
        sfu.session_count(),
        0,
        "refused offers leave nothing behind"
    );
}

/// What an edge emitted while [`relay_exchange`] ran.
#[derive(Default)]
struct EdgeSaw {
    events: Vec<(Duration, ResourceEvent)>,
    reopen: Vec<String>,
}

/// Runs origin and edge for `span` of simulated time in 50 ms steps, passing the
/// relay probes between them while `origin_up`.
fn relay_exchange(
    origin: &mut Sfu,
    edge: &mut Sfu,
    now: &mut Instant,
    span: Duration,
    origin_up: bool,
    saw: &mut EdgeSaw,
    start: Instant,
) {
    let origin_addr: SocketAddr = SERVER.parse().unwrap();
    let edge_addr: SocketAddr = EDGE_MEDIA.parse().unwrap();
    let end = *now + span;
    while *now < end {
        *now += Duration::from_millis(50);
        edge.handle_timeout(*now);
        origin.handle_timeout(*now);
        let mut to_origin = Vec::new();
        while let Some(o) = edge.poll_output() {
            match o {
                SfuOutput::Transmit { dest, data } if dest == origin_addr => to_origin.push(data),
                SfuOutput::Event(e) => saw.events.push((*now - start, e)),
                SfuOutput::ReopenRelay { url } => saw.reopen.push(url),
                _ => {}
            }
        }
        if !origin_up {
            continue;
        }
        for data in to_origin {
            origin.handle_datagram(*now, edge_addr, &data);
        }
        while let Some(o) = origin.poll_output() {
            if let SfuOutput::Transmit { dest, data } = o
                && dest == edge_addr
            {
                edge.handle_datagram(*now, origin_addr, &data);
            }
        }
    }
}

const EDGE_MEDIA: &str = "10.9.0.2:8443";

#[test]
fn an_edge_notices_a_lost_origin_reopens_and_ends_with_the_source() {
    let start = start();
    let mut now = start;
    let mut origin = sfu(now);
    let mut edge = server(EDGE_MEDIA, "http://10.9.0.2:8080", now, 2);
    let mut publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 1111,
            video_ssrc: 2222,
        },
        &[],
    )
    .unwrap();
    let created = origin
        .publish(now, "room", "alice", &publisher.offer())
        .unwrap();
    publisher.accept_answer(&created.answer, now).unwrap();
    connect(
        &mut origin,
        &mut publisher,
        "10.0.0.1:5000".parse().unwrap(),
        &mut now,
    );
    let url = origin.resource_url(&created.resource);
    let answer = origin
        .open_relay(now, &created.resource, EDGE_MEDIA.parse().unwrap())
        .unwrap();
    while origin.poll_output().is_some() {}
    let (remote, dup) = edge.add_remote_publication(now, &url, answer).unwrap();
    assert!(dup.is_none());
    let mut subscriber = ClientPeer::new(PeerRole::Subscriber, &[]).unwrap();
    let sub = edge
        .subscribe(
            now,
            "room",
            std::slice::from_ref(&remote),
            &subscriber.offer(),
        )
        .unwrap();
    subscriber.accept_answer(&sub.answer, now).unwrap();
    connect(
        &mut edge,
        &mut subscriber,
        "10.0.0.3:7000".parse().unwrap(),
        &mut now,
    );
    let state = |edge: &Sfu, id: &str| edge.resource_info(id).map(|i| i.state);
    let mut saw = EdgeSaw::default();

    // A live origin answers every probe: nothing changes for 5 s.
    relay_exchange(
        &mut origin,
        &mut edge,
        &mut now,
        Duration::from_secs(5),
        true,
        &mut saw,
        start,
    );
    assert_eq!(state(&edge, &sub.resource), Some(ResourceState::Live));
    assert!(saw.reopen.is_empty());
    let info = edge.resource_info(&sub.resource).unwrap();
    assert_eq!(
        info.sources,
        vec![url.clone()],
        "the source is named by its origin URL"
    );

    // The origin stops answering: the subscription learns it within 5 s and the edge
    // asks for the relay again.
    let lost_at = now - start;
    saw.events.clear();
    relay_exchange(
        &mut origin,
        &mut edge,
        &mut now,
        Duration::from_secs(5),
        false,
        &mut saw,
        start,
    );
    let (at, _) = saw
        .events
        .iter()
        .find(|(_, e)| e.resource == sub.resource && e.state == ResourceState::Reconnecting)
        .expect("the subscription goes to reconnecting");
    assert!(
        *at - lost_at <= Duration::from_secs(5),
        "noticed after {:?}",
        *at - lost_at
    );
    assert_eq!(state(&edge, &remote), Some(ResourceState::Reconnecting));
    assert!(saw.reopen.iter().all(|u| *u == url));
    assert_eq!(saw.reopen.len(), 1, "one request at a time");
    // Unreachable: tried again every 2 s.
    edge.relay_reopened(
        now,
        &url,
        Err(cascade_core::error::ApiError::new(
            ErrorKind::BadGateway,
            "origin_unreachable",
            "connection refused",
        )),
    );
    saw.reopen.clear();
    relay_exchange(
        &mut origin,
        &mut edge,
        &mut now,
        Duration::from_millis(2100),
        false,
        &mut saw,
        start,
    );
    assert_eq!(saw.reopen, vec![url.clone()]);

    // The origin is back and relays again: live, probes answered.
    let answer = origin
        .open_relay(now, &created.resource, EDGE_MEDIA.parse().unwrap())
        .unwrap();
    saw.events.clear();
    edge.relay_reopened(now, &url, Ok(answer));
    relay_exchange(
        &mut origin,
        &mut edge,
        &mut now,
        Duration::from_secs(5),
        true,
        &mut saw,
        start,
    );
    assert_eq!(state(&edge, &sub.resource), Some(ResourceState::Live));
    assert!(
        saw.events
            .iter()
            .any(|(_, e)| e.resource == sub.resource && e.state == ResourceState::Live)
    );
    assert!(
        !saw.events
            .iter()
            .any(|(_, e)| e.state == ResourceState::Reconnecting),
        "stays live while the origin answers"
    );

    // The publisher leaves: the origin refuses the next probe, the edge asks again,
    // the origin no longer has it, and the subscription ends with its source.
    origin.delete(&created.resource).unwrap();
    saw.reopen.clear();
    relay_exchange(
        &mut origin,
        &mut edge,
        &mut now,
        Duration::from_millis(1200),
        true,
        &mut saw,
        start,
    );
    assert_eq!(
        saw.reopen,
        vec![url.clone()],
        "re-opened at once after the refusal"
    );
    saw.events.clear();
    edge.relay_reopened(
        now,
        &url,
        Err(cascade_core::error::ApiError::unknown_resource(&url)),
    );
    relay_exchange(
        &mut origin,
        &mut edge,
        &mut now,
        Duration::from_millis(100),
        true,
        &mut saw,
        start,
    );
    assert!(
        saw.events
            .iter()
            .any(|(_, e)| e.resource == sub.resource && e.state == ResourceState::Ended),
        "{:?}",
        saw.events.iter().map(|(_, e)| e).collect::<Vec<_>>()
    );
    assert_eq!(state(&edge, &sub.resource), Some(ResourceState::Ended));
    assert_eq!(
        state(&edge, &remote),
        None,
        "the relayed publication is gone"
    );
}

/// Commands and room events the SFU has queued.
fn drain(sfu: &mut Sfu) -> (Vec<Command>, Vec<cascade_core::sfu::RoomEvent>) {
    let mut commands = Vec::new();
    let mut rooms = Vec::new();
    while let Some(o) = sfu.poll_output() {
        match o {
            SfuOutput::Command(c) => commands.push(c),
            SfuOutput::Room(e) => rooms.push(e),
            _ => {}
        }
    }
    (commands, rooms)
}

fn selections(cmds: &[Command]) -> Vec<Option<u32>> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SelectLayer { layer, .. } => Some(layer.map(u32::from)),
            _ => None,
        })
        .collect()
}

/// A simulcast publisher (rids q and h, SSRCs learnt from the stream ids) and a
/// subscriber with transport-wide congestion control: both layers are routed onto one
/// subscriber SSRC through the layer switch; the layer follows the estimate and the
/// subscriber's preferences, video pauses when the estimate collapses, probes start
/// when a better layer may fit; audio levels elect the active speaker; the room hears
/// of publications coming and going.
#[test]
fn simulcast_layers_estimates_preferences_and_speaker() {
    use cascade_command::command::{KeyframeFormat, MediaEvent, ShortId};
    use cascade_core::sfu::{RoomEventKind, SubscriptionPreferences};

    const TWCC: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    let mut now = start();
    let mut sfu = sfu(now);
    let pub_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let sub_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut publisher = ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 1111,
            video_ssrc: 2222,
        },
        &[],
    )
    .unwrap();
    // The video m-line sends two rid layers and declares no SSRC.
    let offer: String = publisher
        .offer()
        .split("\r\n")
        .filter(|l| {
            !l.starts_with("a=ssrc-group")
                && !l.starts_with("a=ssrc:2222")
                && !l.starts_with("a=ssrc:2223")
        })
        .map(|l| match l {
            "a=rtpmap:111 opus/48000/2" => format!(
                "{l}\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:3 {TWCC}"
            ),
            "a=fmtp:97 apt=96" => format!(
                "{l}\r\na=extmap:3 {TWCC}\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
                 a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
                 a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
                 a=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h"
            ),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let created = sfu.publish(now, "room", "alice", &offer).unwrap();
    for line in [
        "a=rid:q recv",
        "a=rid:h recv",
        "a=simulcast:recv q;h",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    ] {
        assert!(
            created.answer.contains(line),
            "answer has {line}:\n{}",
            created.answer
        );
    }
    let (_, rooms) = drain(&mut sfu);
    assert!(matches!(
        &rooms[..],
        [e] if matches!(&e.kind, RoomEventKind::PublicationAdded { user, .. } if user == "alice")
    ));
    publisher.accept_answer(&created.answer, now).unwrap();
    let cmds = connect(&mut sfu, &mut publisher, pub_addr, &mut now);
    let ext = cmds
        .iter()
        .find_map(|c| match c {
            Command::InstallSession { extensions, .. } => Some(*extensions),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (ext.transport_cc, ext.audio_level, ext.rid, ext.repaired_rid),
        (3, 1, 10, 11)
    );

    let mut subscriber = ClientPeer::new(PeerRole::Subscriber, &[]).unwrap();
    let offer = subscriber.offer().replace(
        "a=rtcp-rsize\r\n",
        &format!("a=rtcp-rsize\r\na=extmap:3 {TWCC}\r\n"),
    );
    let sub = sfu.subscribe(now, "room", &[], &offer).unwrap();
    assert!(sub.answer.contains(&format!("a=extmap:3 {TWCC}")));
    subscriber.accept_answer(&sub.answer, now).unwrap();
    let cmds = connect(&mut sfu, &mut subscriber, sub_addr, &mut now);
    let sub_session = cmds
        .iter()
        .find_map(|c| match c {
            Command::InstallSession { id, extensions, .. } => {
                assert_eq!(extensions.transport_cc, 3);
                Some(*id)
            }
            _ => None,
        })
        .unwrap();
    let pub_session = SessionId(sub_session.0 - 1);

    // The layers name themselves (until then, a relay would not carry them).
    assert!(sfu.layers_pending(&created.resource, now));
    assert!(
        !sfu.layers_pending(&created.resource, now + Duration::from_secs(6)),
        "a layer missing that long is not waited for"
    );
    let id = |s: &str| ShortId::new(s.as_bytes()).unwrap();
    for (ssrc, rid, repaired) in [(5000, "q", false), (6000, "h", false), (5001, "q", true)] {
        sfu.handle_media_event(
            now,
            MediaEvent::StreamIdentified {
                session: pub_session,
                ssrc: Ssrc(ssrc),
                mid: Some(id("1")),
                rid: id(rid),
                repaired,
            },
        );
    }
    assert!(!sfu.layers_pending(&created.resource, now));
    let (cmds, _) = drain(&mut sfu);
    assert_eq!(
        selections(&cmds).last(),
        Some(&Some(5000)),
        "before layer rates are known, the first layer"
    );
    let layered: Vec<_> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Route(r) if r.layered.is_some() => Some(*r),
            _ => None,
        })
        .collect();
    assert!(
        layered
            .iter()
            .all(|r| r.layered == Some(KeyframeFormat::Vp8))
    );
    assert!(
        layered.iter().any(
            |r| r.publisher_ssrc == Ssrc(5000) && r.publisher_rtx == Some((Ssrc(5001), Pt(97)))
        )
    );
    assert!(layered.iter().any(|r| r.publisher_ssrc == Ssrc(6000)));
    assert!(
        layered
            .windows(2)
            .all(|w| w[0].subscriber_ssrc == w[1].subscriber_ssrc),
        "both layers feed one subscriber stream"
    );

    // Layer rates (reported every second): q 150 kbit/s, h 600 kbit/s. The estimate
    // starts at 300 kbit/s.
    let rates = |sfu: &mut Sfu, now: Instant| {
        for (ssrc, bps, w) in [(5000, 150_000, 320), (6000, 600_000, 640)] {
            sfu.handle_media_event(
                now,
                MediaEvent::StreamRate {
                    session: pub_session,
                    ssrc: Ssrc(ssrc),
                    bps,
                    width: w,
                    height: w * 9 / 16,
                },
            );
        }
    };
    rates(&mut sfu, now);
    let (cmds, _) = drain(&mut sfu);
    assert!(
        selections(&cmds).iter().all(|l| *l == Some(5000)),
        "q fits 300 kbit/s, h does not: {cmds:?}"
    );
    // Later, the probe for h starts.
    now += Duration::from_secs(2);
    rates(&mut sfu, now);
    sfu.handle_media_event(
        now,
        MediaEvent::Estimate {
            session: sub_session,
            bps: 320_000,
        },
    );
    let (cmds, _) = drain(&mut sfu);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Probe { bps, .. } if *bps > 600_000)),
        "probe toward h: {cmds:?}"
    );
    now += Duration::from_secs(1);
    rates(&mut sfu, now);
    sfu.handle_timeout(now);
    let (cmds, _) = drain(&mut sfu);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Probe { bps: 0, .. })),
        "probe ends"
    );
    // A dip of h's rate does not make it fit: a layer is taken by its recent peak.
    sfu.handle_media_event(
        now,
        MediaEvent::Estimate {
            session: sub_session,
            bps: 450_000,
        },
    );
    sfu.handle_media_event(
        now,
        MediaEvent::StreamRate {
            session: pub_session,
            ssrc: Ssrc(6000),
            bps: 250_000,
            width: 640,
            height: 360,
        },
    );
    let (cmds, _) = drain(&mut sfu);
    assert!(
        selections(&cmds).iter().all(|l| *l != Some(6000)),
        "h at 250 kbit/s for a second, 600 before: not taken at 450 kbit/s: {cmds:?}"
    );
    // The estimate grows: h.
    sfu.handle_media_event(
        now,
        MediaEvent::Estimate {
            session: sub_session,
            bps: 2_000_000,
        },
    );
    let (cmds, _) = drain(&mut sfu);
    assert_eq!(selections(&cmds), vec![Some(6000)]);
    // Preferences: the lowest layer only, then paused, then free again.
    let sub_id = sub.resource.clone();
    let prefs = |json: &str| serde_json::from_str::<SubscriptionPreferences>(json).unwrap();
    sfu.set_preferences(now, &sub_id, &prefs(r#"{"max_layer":0}"#))
        .unwrap();
    assert_eq!(selections(&drain(&mut sfu).0), vec![Some(5000)]);
    sfu.set_preferences(now, &sub_id, &prefs(r#"{"mid":"1","paused":true}"#))
        .unwrap();
    assert_eq!(selections(&drain(&mut sfu).0), vec![None]);
    sfu.set_preferences(now, &sub_id, &prefs(r#"{"max_width":320}"#))
        .unwrap();
    assert_eq!(selections(&drain(&mut sfu).0), vec![Some(5000)]);
    assert!(
        sfu.set_preferences(now, &sub_id, &prefs(r#"{"mid":"9"}"#))
            .is_err()
    );
    sfu.set_preferences(now, &sub_id, &prefs("{}")).unwrap();
    drain(&mut sfu);
    // The estimate collapses: video pauses.
    sfu.handle_media_event(
        now,
        MediaEvent::Estimate {
            session: sub_session,
            bps: 60_000,
        },
    );
    assert_eq!(selections(&drain(&mut sfu).0), vec![None]);

    // Audio levels: the publisher speaks.
    let mut speaker = None;
    for i in 0..40 {
        sfu.handle_media_event(
            now + Duration::from_millis(20 * i),
            MediaEvent::AudioLevel {
                session: pub_session,
                ssrc: Ssrc(1111),
                level: 10,
                period_ms: 20,
            },
        );
        for e in drain(&mut sfu).1 {
            if let RoomEventKind::ActiveSpeaker { resource, .. } = e.kind {
                speaker = Some(resource);
            }
        }
    }
    assert_eq!(speaker, Some(sfu.resource_url(&created.resource)));
    sfu.delete(&created.resource).unwrap();
    let (_, rooms) = drain(&mut sfu);
    assert!(rooms.iter().any(
        |e| matches!(&e.kind, RoomEventKind::PublicationRemoved { user, .. } if user == "alice")
    ));
}

/// A local source (an MCU's mix) is installed at once with the keys it was given,
/// stays out of the room's listing and events, is routed to a subscription that names
/// it once the subscriber connects, and leaves the data plane when removed.
#[test]
fn a_local_source_is_routed_to_the_subscription_that_names_it() {
    use cascade_core::sdp::Codec;
    use cascade_core::sfu::LocalTrack;

    let mut now = start();
    let mut sfu = sfu(now);
    let producer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let codec = |pt: u8, name: &str, clock_rate: u32, channels: Option<u16>| Codec {
        payload_type: pt,
        name: name.into(),
        clock_rate,
        channels,
        fmtp: None,
        rtcp_fb: Vec::new(),
    };
    let src = sfu.add_local_source(
        now,
        "room",
        producer,
        &[
            LocalTrack {
                kind: MediaKind::Audio,
                codec: codec(111, "opus", 48_000, Some(2)),
                ssrc: 0x5000,
            },
            LocalTrack {
                kind: MediaKind::Video,
                codec: codec(96, "VP8", 90_000, None),
                ssrc: 0x6000,
            },
        ],
    );
    let (cmds, rooms) = drain(&mut sfu);
    assert!(cmds.iter().any(|c| matches!(c,
        Command::InstallSession { id, peer, rx, tx, .. }
            if *id == src.session && *peer == producer && *rx == src.rx && *tx == src.tx)));
    assert!(cmds.iter().any(|c| matches!(c,
        Command::PeerValidated { id, peer } if *id == src.session && *peer == producer)));
    assert!(rooms.is_empty(), "no room event for a local source");
    assert!(sfu.room_info("room").publications.is_empty());
    assert!(sfu.room_publications("room").is_empty());

    let sub_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut subscriber = ClientPeer::new(PeerRole::Subscriber, &[]).unwrap();
    let sub = sfu
        .subscribe(
            now,
            "room",
            std::slice::from_ref(&src.resource),
            &subscriber.offer(),
        )
        .unwrap();
    subscriber.accept_answer(&sub.answer, now).unwrap();
    let cmds = connect(&mut sfu, &mut subscriber, sub_addr, &mut now);
    let routed: Vec<(u32, MediaKind)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::Route(r) if r.publisher == src.session => {
                Some((r.publisher_ssrc.into(), r.kind))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        routed,
        [(0x5000, MediaKind::Audio), (0x6000, MediaKind::Video)]
    );
    assert_eq!(sfu.subscription_estimate(&sub.resource), Some(None));

    sfu.remove_local_source(&src.resource);
    let (cmds, _) = drain(&mut sfu);
    assert!(cmds.contains(&Command::RemoveSession { id: src.session }));
    assert!(cmds.contains(&Command::PeerRevoked {
        id: src.session,
        peer: producer
    }));
    assert!(sfu.publication_tracks(&src.resource).is_none());
}
