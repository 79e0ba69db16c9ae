//! The SFU core driven end to end without sockets: client peers (controlling ICE, DTLS
//! client) publish and subscribe through `Sfu`, datagrams are passed by hand, and the
//! data-plane commands it emits are checked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade::cert::DtlsCertificate;
use cascade::peer::{ClientPeer, PeerRole};
use cascade::sfu::{Sfu, SfuOutput};
use cascade_dataplane::command::{Command, MediaKind};
use cascade_dataplane::srtp::SrtpProfile;

const SERVER: &str = "127.0.0.1:8443";

fn sfu() -> Sfu {
    Sfu::new(
        DtlsCertificate::generate().unwrap(),
        SERVER.parse().unwrap(),
        "http://127.0.0.1:8080".into(),
    )
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
        while let Some((dest, data)) = peer.poll_transmit(*now) {
            assert_eq!(dest, SERVER.parse().unwrap());
            sfu.handle_datagram(*now, addr, &data);
        }
        while let Some(o) = sfu.poll_output() {
            match o {
                SfuOutput::Transmit { dest, data } => {
                    assert_eq!(dest, addr, "the server only answers the peer's address");
                    peer.handle_receive(*now, &data).unwrap();
                }
                SfuOutput::Command(c) => commands.push(c),
                SfuOutput::CloseRelay { .. } => panic!("no relay in these tests"),
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
    let mut sfu = sfu();
    let mut now = Instant::now();
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
        .find(|r| r.publisher_ssrc == 1111)
        .expect("audio route");
    assert_eq!(audio.kind, MediaKind::Audio);
    assert_eq!(audio.map_pt(111), Some(111));
    let video = routes
        .iter()
        .find(|r| r.publisher_ssrc == 2222)
        .expect("video route");
    assert_eq!(
        video.publisher_rtx,
        Some((2223, 97)),
        "publisher RTX unwrapped"
    );
    assert_eq!(
        video.subscriber_rtx.map(|(_, pt)| pt),
        Some(97),
        "subscriber gets RTX"
    );
    assert_eq!(routes.len(), 2, "one route per track");
    assert!(
        cmds.iter().any(|c| matches!(
            c,
            Command::RequestKeyframe {
                media_ssrc: 2222,
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
    let mut sfu = sfu();
    let mut now = Instant::now();
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
    let mut sfu = sfu();
    let mut now = Instant::now();
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
    let mut sfu = sfu();
    let now = Instant::now();
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
    let mut sfu = sfu();
    let now = Instant::now();
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
    let mut sfu = sfu();
    let now = Instant::now();
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
        assert_eq!(err.status, 400);
    }
    assert_eq!(
        sfu.session_count(),
        0,
        "refused offers leave nothing behind"
    );
}
