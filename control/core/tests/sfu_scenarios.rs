//! Scenarios of the SFU core without sockets, one per path of a concern: deleting a
//! publication under a subscription, requests naming resources that do not exist or
//! are of the wrong kind, subscribing to an empty room, trickle and ICE restart,
//! room info through a room's life, an origin opening and closing relays, an edge
//! refusing bad relay answers and releasing unused relays, the kernel's part of a
//! cascade fan-out (asked, taken, refused and asked again), and timers never due in the
//! past. Client peers come from `cascade-peer`; datagrams are passed by hand.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cascade_command::command::{Command, SessionId};
use cascade_command::ids::Ssrc;
use cascade_core::error::{ApiError, ErrorKind};
use cascade_core::sfu::{
    KERNEL_RETRY, KernelOutcome, Patched, RELAY_GRACE, RelayAnswer, ResourceEvent, ResourceState,
    RoomEventKind, Sfu, SfuOutput, SubscriptionPreferences,
};
use cascade_peer::{ClientPeer, PeerRole};

use common::{server, start};

const ORIGIN_MEDIA: &str = "127.0.0.1:8443";
const EDGE_MEDIA: &str = "10.9.0.2:8443";

fn origin(now: Instant) -> Sfu {
    server(ORIGIN_MEDIA, "http://127.0.0.1:8080", now, 7)
}

fn edge(now: Instant) -> Sfu {
    server(EDGE_MEDIA, "http://10.9.0.2:8080", now, 8)
}

fn publisher() -> ClientPeer {
    ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 1111,
            video_ssrc: 2222,
        },
        &[],
    )
    .unwrap()
}

fn subscriber() -> ClientPeer {
    ClientPeer::new(PeerRole::Subscriber, &[]).unwrap()
}

/// Everything the SFU has queued.
fn drain(sfu: &mut Sfu) -> Vec<SfuOutput> {
    std::iter::from_fn(|| sfu.poll_output()).collect()
}

fn commands(outputs: &[SfuOutput]) -> Vec<Command> {
    outputs
        .iter()
        .filter_map(|o| match o {
            SfuOutput::Command(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn events(outputs: &[SfuOutput]) -> Vec<ResourceEvent> {
    outputs
        .iter()
        .filter_map(|o| match o {
            SfuOutput::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Runs the exchange between `peer` (at `addr`) and the SFU until the SFU installed
/// the peer's session; returns that session's id.
fn connect(sfu: &mut Sfu, peer: &mut ClientPeer, addr: SocketAddr, now: &mut Instant) -> SessionId {
    let end = *now + Duration::from_secs(10);
    while *now < end {
        while let Some((_, data)) = peer.poll_transmit(*now) {
            sfu.handle_datagram(*now, addr, &data);
        }
        while let Some(o) = sfu.poll_output() {
            match o {
                SfuOutput::Transmit { dest, data } if dest == addr => {
                    peer.handle_receive(*now, &data).unwrap();
                }
                SfuOutput::Command(Command::InstallSession { id, peer: at, .. }) if at == addr => {
                    return id;
                }
                _ => {}
            }
        }
        *now += Duration::from_millis(10);
        sfu.handle_timeout(*now);
    }
    panic!("{addr} did not connect");
}

/// Publishes from a new client peer at `addr` and connects it: (resource id, session).
fn publish_connected(
    sfu: &mut Sfu,
    room: &str,
    user: &str,
    addr: &str,
    now: &mut Instant,
) -> (String, SessionId) {
    let mut peer = publisher();
    let created = sfu.publish(*now, room, user, &peer.offer()).unwrap();
    peer.accept_answer(&created.answer, *now).unwrap();
    let session = connect(sfu, &mut peer, addr.parse().unwrap(), now);
    (created.resource, session)
}

/// Subscribes from a new client peer at `addr` to `resources` (the whole room when
/// empty) and connects it: (resource id, session).
fn subscribe_connected(
    sfu: &mut Sfu,
    room: &str,
    resources: &[String],
    addr: &str,
    now: &mut Instant,
) -> (String, SessionId) {
    let mut peer = subscriber();
    let created = sfu.subscribe(*now, room, resources, &peer.offer()).unwrap();
    peer.accept_answer(&created.answer, *now).unwrap();
    let session = connect(sfu, &mut peer, addr.parse().unwrap(), now);
    (created.resource, session)
}

fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> (ErrorKind, &'static str) {
    let e = r.unwrap_err();
    (e.kind, e.code)
}

fn prefs(json: &str) -> SubscriptionPreferences {
    serde_json::from_str(json).unwrap()
}

/// Deleting a publication removes its session (and with it, in the data plane, every
/// route from it), says so to the room, and ends the subscription that had it as its
/// only source; the subscriber's own session stays.
#[test]
fn deleting_a_publication_ends_the_subscription_that_only_had_it() {
    let mut now = start();
    let mut sfu = origin(now);
    let (publication, pub_session) =
        publish_connected(&mut sfu, "room", "alice", "10.0.0.1:5000", &mut now);
    let (subscription, sub_session) =
        subscribe_connected(&mut sfu, "room", &[], "10.0.0.2:6000", &mut now);
    drain(&mut sfu);
    assert_eq!(
        sfu.resource_info(&subscription).map(|i| i.state),
        Some(ResourceState::Live)
    );

    sfu.delete(&publication).unwrap();
    let out = drain(&mut sfu);
    let cmds = commands(&out);
    let removed: Vec<SessionId> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::RemoveSession { id } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(
        removed,
        vec![pub_session],
        "only the publisher's session goes"
    );
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::Route(_))),
        "no route is installed for a deleted publication: {cmds:?}"
    );
    assert!(out.iter().any(|o| matches!(o,
        SfuOutput::Room(e) if matches!(&e.kind, RoomEventKind::PublicationRemoved { user, .. } if user == "alice"))));
    let events = events(&out);
    assert!(events.iter().any(|e| e.resource == publication
        && e.state == ResourceState::Ended
        && e.reason == "deleted"));
    assert!(
        events.iter().any(|e| e.resource == subscription
            && e.state == ResourceState::Ended
            && e.reason == "source_ended"),
        "{events:?}"
    );
    assert_eq!(
        sfu.resource_info(&subscription).map(|i| i.state),
        Some(ResourceState::Ended)
    );
    assert_eq!(
        sfu.session_count(),
        1,
        "the subscriber's session {sub_session} stays"
    );
    assert_eq!(sfu.publication_count(), 0);
    assert_eq!(sfu.subscription_count(), 1);
}

/// Every request naming a resource this server does not have is refused as
/// `unknown_resource` (404) and changes nothing.
#[test]
fn requests_for_unknown_resources_are_not_found() {
    let now = start();
    let mut sfu = origin(now);
    let not_found = (ErrorKind::NotFound, "unknown_resource");
    assert_eq!(code(sfu.delete("nope")), not_found);
    assert_eq!(
        code(sfu.patch(now, "nope", "a=ice-ufrag:abcd\r\n")),
        not_found
    );
    assert_eq!(
        code(sfu.set_preferences(now, "nope", &prefs("{}"))),
        not_found
    );
    assert_eq!(
        code(sfu.open_relay(now, "nope", EDGE_MEDIA.parse().unwrap())),
        not_found
    );
    assert_eq!(code(sfu.close_relay("nope")), not_found);
    assert_eq!(
        code(sfu.subscribe(now, "room", &["nope".to_owned()], &subscriber().offer())),
        not_found
    );
    assert!(sfu.resource_info("nope").is_none());
    assert!(drain(&mut sfu).is_empty(), "nothing to do for the outside");
    assert_eq!(sfu.session_count(), 0);
}

/// Requests that name a resource of the wrong kind or room are refused with their own
/// codes: preferences apply to subscriptions, relays to connected publications only,
/// a subscription names publications of its own room.
#[test]
fn requests_for_the_wrong_kind_of_resource_are_refused() {
    let mut now = start();
    let mut sfu = origin(now);
    let mut waiting = publisher();
    let unconnected = sfu.publish(now, "room", "bob", &waiting.offer()).unwrap();
    waiting.accept_answer(&unconnected.answer, now).unwrap();
    let (publication, _) = publish_connected(&mut sfu, "room", "alice", "10.0.0.1:5000", &mut now);
    let (subscription, _) = subscribe_connected(
        &mut sfu,
        "room",
        std::slice::from_ref(&publication),
        "10.0.0.2:6000",
        &mut now,
    );
    drain(&mut sfu);
    let edge_media: SocketAddr = EDGE_MEDIA.parse().unwrap();

    assert_eq!(
        code(sfu.set_preferences(now, &publication, &prefs("{}"))),
        (ErrorKind::BadRequest, "not_a_subscription")
    );
    assert_eq!(
        code(sfu.open_relay(now, &subscription, edge_media)),
        (ErrorKind::NotFound, "unknown_resource"),
        "a subscription cannot be relayed"
    );
    assert_eq!(
        code(sfu.open_relay(now, &unconnected.resource, edge_media)),
        (ErrorKind::Conflict, "not_connected")
    );
    assert_eq!(
        code(sfu.subscribe(
            now,
            "other",
            std::slice::from_ref(&publication),
            &subscriber().offer()
        )),
        (ErrorKind::Forbidden, "resource_wrong_room")
    );
    assert_eq!(
        code(sfu.set_preferences(now, &subscription, &prefs(r#"{"mid":"7"}"#))),
        (ErrorKind::BadRequest, "unknown_mid")
    );
    assert_eq!(sfu.relay_count(), 0);
    assert!(
        commands(&drain(&mut sfu)).is_empty(),
        "refusals emit no command"
    );
}

/// A subscriber to an empty room gets an answer with every m-line inactive and a
/// subscription with no source, which stays live (nothing of it ended).
#[test]
fn subscribing_to_an_empty_room_sends_nothing() {
    let mut now = start();
    let mut sfu = origin(now);
    let mut peer = subscriber();
    let created = sfu.subscribe(now, "empty", &[], &peer.offer()).unwrap();
    assert!(!created.answer.contains("a=sendonly"), "{}", created.answer);
    assert!(!created.answer.contains("a=ssrc:"), "{}", created.answer);
    assert!(created.answer.contains("a=inactive"), "{}", created.answer);
    peer.accept_answer(&created.answer, now).unwrap();
    let cmds = {
        connect(
            &mut sfu,
            &mut peer,
            "10.0.0.2:6000".parse().unwrap(),
            &mut now,
        );
        commands(&drain(&mut sfu))
    };
    assert!(!cmds.iter().any(|c| matches!(c, Command::Route(_))));
    let info = sfu.resource_info(&created.resource).unwrap();
    assert_eq!(info.kind, "subscription");
    assert_eq!(info.room, "empty");
    assert!(info.sources.is_empty());
    assert_eq!(info.state, ResourceState::Live);
    assert_eq!(sfu.track_count(), 0);
    assert!(sfu.room_info("empty").publications.is_empty());
}

/// A publisher that publishes later is not added to an existing subscription, and
/// preferences on a track without simulcast layers are accepted and select nothing.
#[test]
fn preferences_without_simulcast_select_no_layer() {
    let mut now = start();
    let mut sfu = origin(now);
    let (publication, _) = publish_connected(&mut sfu, "room", "alice", "10.0.0.1:5000", &mut now);
    let (subscription, _) = subscribe_connected(&mut sfu, "room", &[], "10.0.0.2:6000", &mut now);
    drain(&mut sfu);
    sfu.set_preferences(now, &subscription, &prefs(r#"{"max_layer":0}"#))
        .unwrap();
    sfu.set_preferences(now, &subscription, &prefs(r#"{"paused":true}"#))
        .unwrap();
    let cmds = commands(&drain(&mut sfu));
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::SelectLayer { .. })),
        "one stream per track: nothing to select: {cmds:?}"
    );
    publish_connected(&mut sfu, "room", "bob", "10.0.0.3:5000", &mut now);
    let info = sfu.resource_info(&subscription).unwrap();
    assert_eq!(
        info.sources,
        vec![sfu.resource_url(&publication)],
        "a subscription keeps the sources it was created with"
    );
}

/// A publisher that signals its simulcast SSRCs (`a=ssrc-group:SIM`) has its layers
/// known at once; a subscriber without a bandwidth estimate gets the highest layer
/// its preferences allow, nothing when paused, and the highest again when they are
/// cleared.
#[test]
fn preferences_pick_among_signalled_simulcast_layers() {
    const LAYERS: [u32; 3] = [3000, 3100, 3200];
    let mut now = start();
    let mut sfu = origin(now);
    let mut peer = publisher().simulcast(LAYERS);
    let created = sfu.publish(now, "room", "alice", &peer.offer()).unwrap();
    assert!(
        !sfu.layers_pending(&created.resource, now),
        "SSRCs signalled"
    );
    peer.accept_answer(&created.answer, now).unwrap();
    connect(
        &mut sfu,
        &mut peer,
        "10.0.0.1:5000".parse().unwrap(),
        &mut now,
    );
    let (subscription, _) = subscribe_connected(&mut sfu, "room", &[], "10.0.0.2:6000", &mut now);
    let selected = |sfu: &mut Sfu| -> Vec<Option<u32>> {
        commands(&drain(sfu))
            .iter()
            .filter_map(|c| match c {
                Command::SelectLayer { layer, .. } => Some(layer.map(u32::from)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        selected(&mut sfu).last(),
        Some(&Some(3200)),
        "no estimate: the top"
    );
    for (json, layer) in [
        (r#"{"max_layer":1}"#, Some(3100)),
        (r#"{"mid":"1","max_layer":0}"#, Some(3000)),
        (r#"{"paused":true}"#, None),
        ("{}", Some(3200)),
    ] {
        sfu.set_preferences(now, &subscription, &prefs(json))
            .unwrap();
        assert_eq!(selected(&mut sfu), vec![layer], "{json}");
    }
    sfu.set_preferences(now, &subscription, &prefs("{}"))
        .unwrap();
    assert!(selected(&mut sfu).is_empty(), "no change, nothing said");
}

/// A trickle PATCH repeating the current credentials is noted (no content); new
/// credentials restart ICE with new server credentials.
#[test]
fn trickle_is_noted_and_new_credentials_restart_ice() {
    let mut now = start();
    let mut sfu = origin(now);
    let mut peer = publisher();
    let offer = peer.offer();
    let created = sfu.publish(now, "room", "alice", &offer).unwrap();
    peer.accept_answer(&created.answer, now).unwrap();
    connect(
        &mut sfu,
        &mut peer,
        "10.0.0.1:5000".parse().unwrap(),
        &mut now,
    );
    let attribute = |sdp: &str, name: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .to_owned()
    };
    let ufrag = attribute(&offer, "a=ice-ufrag:");
    let pwd = attribute(&offer, "a=ice-pwd:");
    let trickle = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=mid:0\r\n\
         a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n"
    );
    assert_eq!(
        sfu.patch(now, &created.resource, &trickle).unwrap(),
        Patched::NoContent
    );

    let restart = "a=ice-ufrag:fresh1\r\na=ice-pwd:abcdefghijklmnopqrstuvwxyz\r\na=mid:0\r\n";
    let Patched::Restarted(frag) = sfu.patch(now, &created.resource, restart).unwrap() else {
        panic!("new credentials restart ICE");
    };
    let old_ufrag = attribute(&created.answer, "a=ice-ufrag:");
    let new_ufrag = attribute(&frag, "a=ice-ufrag:");
    assert_ne!(new_ufrag, old_ufrag, "the server draws new credentials");
    assert!(frag.contains("a=ice-lite\r\n"), "{frag}");
    assert!(frag.contains("a=mid:0\r\n"), "{frag}");
    assert!(
        frag.contains(&format!("{} 8443 typ host", "127.0.0.1")),
        "{frag}"
    );
    assert_eq!(
        code(sfu.patch(now, &created.resource, "a=ice-ufrag:x\r\n")),
        (ErrorKind::BadRequest, "bad_sdp"),
        "a ufrag shorter than 4 characters"
    );
}

/// `GET /rtc/v1/rooms/{room}` lists the room's publications in publish order with
/// their tracks, never subscriptions or other rooms' publications, and forgets a
/// deleted one.
#[test]
fn room_info_follows_publications_coming_and_going() {
    let mut now = start();
    let mut sfu = origin(now);
    let (alice, _) = publish_connected(&mut sfu, "room", "alice", "10.0.0.1:5000", &mut now);
    let (bob, _) = publish_connected(&mut sfu, "room", "bob", "10.0.0.3:5000", &mut now);
    let (carol, _) = publish_connected(&mut sfu, "other", "carol", "10.0.0.4:5000", &mut now);
    subscribe_connected(&mut sfu, "room", &[], "10.0.0.2:6000", &mut now);

    let info = sfu.room_info("room");
    assert_eq!(info.room, "room");
    let listed: Vec<(&str, &str)> = info
        .publications
        .iter()
        .map(|p| (p.resource.as_str(), p.user.as_str()))
        .collect();
    let (alice_url, bob_url) = (sfu.resource_url(&alice), sfu.resource_url(&bob));
    assert_eq!(
        listed,
        vec![(alice_url.as_str(), "alice"), (bob_url.as_str(), "bob")]
    );
    let tracks: Vec<(&str, &str)> = info.publications[0]
        .tracks
        .iter()
        .map(|t| (t.kind, t.mid.as_str()))
        .collect();
    assert_eq!(tracks, vec![("audio", "0"), ("video", "1")]);
    assert!(info.publications.iter().all(|p| p.relayed_from.is_none()));
    assert_eq!((sfu.publication_count(), sfu.subscription_count()), (3, 1));
    assert_eq!(
        sfu.track_count(),
        3 * 2 + 2,
        "three publications; alice's two tracks fill the subscriber's two m-lines"
    );

    sfu.delete(&alice).unwrap();
    let info = sfu.room_info("room");
    assert_eq!(info.publications.len(), 1);
    assert_eq!(info.publications[0].user, "bob");
    assert_eq!(sfu.room_info("other").publications[0].user, "carol");
    sfu.delete(&bob).unwrap();
    sfu.delete(&carol).unwrap();
    assert!(sfu.room_info("room").publications.is_empty());
    assert_eq!(sfu.resource_room(&bob), None);
}

/// An origin relaying a publication to an edge: one feedback session per edge, the
/// data plane told the publication's cascade peers on open and on close, the feedback
/// session removed with the last relay to that edge, and a second close refused.
#[test]
fn an_origin_opens_and_closes_relays_to_an_edge() {
    let mut now = start();
    let mut sfu = origin(now);
    let (publication, pub_session) =
        publish_connected(&mut sfu, "room", "alice", "10.0.0.1:5000", &mut now);
    drain(&mut sfu);
    let edge_media: SocketAddr = EDGE_MEDIA.parse().unwrap();

    let first = sfu.open_relay(now, &publication, edge_media).unwrap();
    let cmds = commands(&drain(&mut sfu));
    let feedback = cmds
        .iter()
        .find_map(|c| match c {
            Command::PeerValidated { id, peer } if *peer == edge_media => Some(*id),
            _ => None,
        })
        .expect("a feedback session for the edge");
    assert!(cmds.iter().any(
        |c| matches!(c, Command::InstallSession { id, peer, .. } if *id == feedback && *peer == edge_media)
    ));
    assert!(cmds.iter().any(|c| matches!(c,
        Command::CascadeOut { publisher, peers } if *publisher == pub_session && *peers == [edge_media])));
    assert!(cmds.iter().any(|c| matches!(c,
        Command::RelayFeedback { relay, publisher, .. } if *relay == feedback && *publisher == pub_session)));
    assert_eq!(first.room, "room");
    assert_eq!(
        first.origin_media,
        ORIGIN_MEDIA.parse::<SocketAddr>().unwrap()
    );
    assert_eq!(first.tracks.len(), 2);
    assert!(
        first
            .relay
            .starts_with("http://127.0.0.1:8080/rtc/v1/relays/")
    );

    // A second relay to the same edge shares its feedback session.
    let second = sfu.open_relay(now, &publication, edge_media).unwrap();
    let cmds = commands(&drain(&mut sfu));
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::PeerValidated { .. }))
    );
    assert_eq!(
        second.feedback_srtp.key, first.feedback_srtp.key,
        "one feedback context per edge"
    );
    assert_eq!(sfu.relay_count(), 2);

    let relay_id = |a: &RelayAnswer| a.relay.rsplit('/').next().unwrap().to_owned();
    sfu.close_relay(&relay_id(&first)).unwrap();
    let cmds = commands(&drain(&mut sfu));
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::RemoveSession { .. }))
    );
    // The edge is still a cascade peer (once: two relays to one edge copy each
    // packet once).
    assert!(!cmds.iter().any(|c| matches!(c,
        Command::CascadeOut { peers, .. } if peers.is_empty())));
    sfu.close_relay(&relay_id(&second)).unwrap();
    let cmds = commands(&drain(&mut sfu));
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::RemoveSession { id } if *id == feedback))
    );
    assert!(
        cmds.iter().any(|c| matches!(c,
        Command::CascadeOut { publisher, peers } if *publisher == pub_session && peers.is_empty()))
    );
    assert_eq!(sfu.relay_count(), 0);
    assert_eq!(
        code(sfu.close_relay(&relay_id(&second))),
        (ErrorKind::NotFound, "unknown_resource")
    );
}

/// An origin with a connected publication and the relay answer it gave the edge.
fn relay_answer(now: &mut Instant) -> (Sfu, String, RelayAnswer) {
    let mut sfu = origin(*now);
    let (publication, _) = publish_connected(&mut sfu, "room", "alice", "10.0.0.1:5000", now);
    let answer = sfu
        .open_relay(*now, &publication, EDGE_MEDIA.parse().unwrap())
        .unwrap();
    drain(&mut sfu);
    let url = sfu.resource_url(&publication);
    (sfu, url, answer)
}

fn edited(answer: &RelayAnswer, edit: impl FnOnce(&mut serde_json::Value)) -> RelayAnswer {
    let mut v = serde_json::to_value(answer).unwrap();
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

/// An edge refuses relay answers it cannot use (bad keys, unknown track kind) as a bad
/// gateway and keeps nothing of them; a second answer for a publication already
/// relayed here is handed back to be closed.
#[test]
fn an_edge_refuses_bad_relay_answers_and_returns_duplicates() {
    let mut now = start();
    let (_origin, url, answer) = relay_answer(&mut now);
    let mut sfu = edge(now);
    let bad_gateway = (ErrorKind::BadGateway, "bad_relay_answer");
    let bad_keys = edited(&answer, |v| v["srtp"]["profile"] = "ROT13".into());
    assert_eq!(
        code(sfu.add_remote_publication(now, &url, bad_keys)),
        bad_gateway
    );
    let bad_feedback = edited(&answer, |v| v["feedback_srtp"]["key"] = "zz".into());
    assert_eq!(
        code(sfu.add_remote_publication(now, &url, bad_feedback)),
        bad_gateway
    );
    let bad_kind = edited(&answer, |v| v["tracks"][0]["kind"] = "text".into());
    assert_eq!(
        code(sfu.add_remote_publication(now, &url, bad_kind)),
        bad_gateway
    );
    assert_eq!(sfu.remote_publication(&url), None);

    let duplicate = edited(&answer, |v| {
        v["relay"] = "http://127.0.0.1:8080/rtc/v1/relays/2".into()
    });
    let (id, race) = sfu.add_remote_publication(now, &url, answer).unwrap();
    assert_eq!(race, None);
    assert_eq!(sfu.remote_publication(&url), Some(id.clone()));
    let (again, race) = sfu.add_remote_publication(now, &url, duplicate).unwrap();
    assert_eq!(again, id, "the same local publication");
    assert_eq!(
        race.as_deref(),
        Some("http://127.0.0.1:8080/rtc/v1/relays/2"),
        "the losing relay is to be closed"
    );
    let info = sfu.resource_info(&id).unwrap();
    assert_eq!(info.relayed_from.as_deref(), Some(url.as_str()));
    assert_eq!(
        sfu.room_info("room").publications[0]
            .relayed_from
            .as_deref(),
        Some(url.as_str()),
        "a relayed publication is listed in its room"
    );
    assert_eq!(sfu.publication_count(), 0, "it was not published here");
}

/// A relayed publication nobody here subscribes to is released after the grace: the
/// data plane forgets its sources and the origin link, and the shell is asked to close
/// the relay on the origin. A re-open answer for a URL no longer relayed is closed.
#[test]
fn an_edge_releases_an_unused_relay_after_the_grace() {
    let mut now = start();
    let (mut origin_sfu, url, answer) = relay_answer(&mut now);
    let relay = answer.relay.clone();
    let mut sfu = edge(now);
    sfu.add_remote_publication(now, &url, answer).unwrap();
    let cmds = commands(&drain(&mut sfu));
    let link = cmds
        .iter()
        .find_map(|c| match c {
            Command::AddRelayedSource { session, .. } => Some(*session),
            _ => None,
        })
        .expect("the relayed sources are added");

    sfu.handle_timeout(now + RELAY_GRACE - Duration::from_millis(100));
    let out = drain(&mut sfu);
    assert!(
        !out.iter()
            .any(|o| matches!(o, SfuOutput::CloseRelay { .. }))
    );
    assert!(sfu.remote_publication(&url).is_some());

    sfu.handle_timeout(now + RELAY_GRACE);
    let out = drain(&mut sfu);
    let closed: Vec<&str> = out
        .iter()
        .filter_map(|o| match o {
            SfuOutput::CloseRelay { relay } => Some(relay.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(closed, vec![relay.as_str()]);
    let cmds = commands(&out);
    assert!(cmds.iter().any(|c| matches!(c,
        Command::RemoveRelayedSource { session, ssrcs } if *session == link && ssrcs.contains(&Ssrc(1111)))));
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::RemoveSession { id } if *id == link))
    );
    assert_eq!(sfu.remote_publication(&url), None);
    assert!(sfu.room_info("room").publications.is_empty());

    // The answer to a re-open that raced the release is not kept.
    let publication = origin_sfu.resource_id_of(&url).unwrap();
    let late = origin_sfu
        .open_relay(now, &publication, EDGE_MEDIA.parse().unwrap())
        .unwrap();
    let late_relay = late.relay.clone();
    sfu.relay_reopened(now + RELAY_GRACE, &url, Ok(late));
    let out = drain(&mut sfu);
    assert!(
        out.iter()
            .any(|o| matches!(o, SfuOutput::CloseRelay { relay } if *relay == late_relay))
    );
    assert!(commands(&out).is_empty());
}

/// After `handle_timeout(now)`, the next timeout is never at or before `now`, on an
/// origin with a connected publication relayed to an edge, and on that edge with a
/// connected subscriber while its origin answers no probe (lost, re-open asked).
#[test]
fn timeouts_are_never_due_in_the_past() {
    let mut now = start();
    let (mut origin_sfu, url, answer) = relay_answer(&mut now);
    let mut sfu = edge(now);
    let (remote, _) = sfu.add_remote_publication(now, &url, answer).unwrap();
    subscribe_connected(
        &mut sfu,
        "room",
        std::slice::from_ref(&remote),
        "10.0.0.3:7000",
        &mut now,
    );
    let mut reopen = 0;
    let end = now + Duration::from_secs(8);
    while now < end {
        now += Duration::from_millis(50);
        for s in [&mut origin_sfu, &mut sfu] {
            s.handle_timeout(now);
            for o in drain(s) {
                reopen += usize::from(matches!(o, SfuOutput::ReopenRelay { .. }));
            }
            let next = s.poll_timeout().expect("sessions and relays have timers");
            assert!(next > now, "next timeout {:?} before now", now - next);
        }
    }
    assert!(reopen >= 1, "the lost origin was asked for its relay again");
    assert_eq!(
        sfu.resource_info(&remote).map(|i| i.state),
        Some(ResourceState::Reconnecting)
    );
    assert_eq!(
        origin(now).poll_timeout(),
        None,
        "an empty server has no timer"
    );
}

/// An origin with a kernel fast path whose publisher (at 10.0.0.1:5000) just got a
/// relay to the edge: the server, the publisher's session, its resource, and the
/// commands the relay brought, with the kernel request among them.
fn kernel_relay(now: &mut Instant) -> (Sfu, SessionId, String, Vec<Command>, Command) {
    let mut sfu = origin(*now);
    sfu.enable_kernel_fanout();
    let (publication, pub_session) =
        publish_connected(&mut sfu, "room", "alice", "10.0.0.1:5000", now);
    drain(&mut sfu);
    sfu.open_relay(*now, &publication, EDGE_MEDIA.parse().unwrap())
        .unwrap();
    let cmds = commands(&drain(&mut sfu));
    let request = cmds
        .iter()
        .find(|c| matches!(c, Command::KernelFanout { publisher, .. } if *publisher == pub_session))
        .cloned()
        .expect("the kernel is asked to fan the publisher out");
    (sfu, pub_session, publication, cmds, request)
}

#[test]
fn with_a_kernel_the_workers_copy_until_it_takes_the_fan_out() {
    let mut now = start();
    let publisher_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let edge_media: SocketAddr = EDGE_MEDIA.parse().unwrap();
    let (mut sfu, pub_session, publication, cmds, request) = kernel_relay(&mut now);
    assert!(
        matches!(&request, Command::KernelFanout { source, peers, .. }
            if *source == publisher_addr && *peers == [edge_media]),
        "{request:?}"
    );
    assert!(
        cmds.iter().any(|c| matches!(c,
            Command::CascadeOut { publisher, peers } if *publisher == pub_session && *peers == [edge_media])),
        "the workers copy until the kernel took it: {cmds:?}"
    );

    sfu.handle_kernel_outcome(now, &request, KernelOutcome::Taken);
    assert_eq!(
        commands(&drain(&mut sfu)),
        [Command::CascadeOut {
            publisher: pub_session,
            peers: vec![]
        }]
    );

    // The publisher leaves: the kernel stops cloning and the guard forgets it.
    sfu.delete(&publication).unwrap();
    let cmds = commands(&drain(&mut sfu));
    assert!(cmds.iter().any(|c| matches!(c,
        Command::KernelFanout { publisher, source, peers, .. }
            if *publisher == pub_session && *source == publisher_addr && peers.is_empty())));
    assert!(cmds.iter().any(|c| matches!(c,
        Command::PeerRevoked { id, peer } if *id == pub_session && *peer == publisher_addr)));
}

#[test]
fn a_kernel_refusal_leaves_the_copying_to_the_workers_and_is_asked_again() {
    let mut now = start();
    let (mut sfu, _, _, _, request) = kernel_relay(&mut now);
    sfu.handle_kernel_outcome(now, &request, KernelOutcome::Refused { retry: true });
    // The workers were copying already and go on; nothing was in the kernel.
    assert!(commands(&drain(&mut sfu)).is_empty());
    assert!(sfu.poll_timeout().is_some_and(|t| t <= now + KERNEL_RETRY));
    now += KERNEL_RETRY;
    sfu.handle_timeout(now);
    let cmds = commands(&drain(&mut sfu));
    assert!(
        cmds.contains(&request),
        "asked again after {KERNEL_RETRY:?}: {cmds:?}"
    );
}
