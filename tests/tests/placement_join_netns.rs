//! A data centre in network namespaces (see `cascade_tests::dc`) whose SRV records
//! live 8 s, so a server learns the member list late:
//!
//! 1. m4 runs but is not in the zone: it finds itself among no members, says so
//!    (`cascade_placement_self_member 0`) and sends every publish to the room's
//!    owner among the three members instead of serving it.
//! 2. m4 is appended to the zone and publishers are sent straight to it at once,
//!    before its own next SRV lookup.
//! 3. Once every server places rooms over four members, each room's publications
//!    are on one server only, a room-wide subscriber through any server lands on
//!    the room's owner, finds the room's publication and gets its media.
//! 4. `kill -9` of `cascade dns`: media keeps flowing, the servers keep their last
//!    members and place new rooms as before, and a client's SRV query fails with a
//!    clear error rather than a wrong answer.

use std::time::{Duration, Instant};

use cascade_core::placement::{Member, rank};
use cascade_core::token::{Claims, Grant, TokenSecret};
use cascade_dns::membership::{MemberScheme, resolve_srv};
use cascade_peer::PeerRole;
use cascade_tests::dc::{self, DataCentre};
use cascade_tests::media::LivePeer;
use cascade_tests::{cascade_bin, http_client, metric, netns, random_room, require};
use rand::Rng;
use serde_json::Value;

const SECRET: &str = "placement-join-users";
const CLUSTER: &str = "placement-join-cluster";
/// Seconds the SRV records live: how long a server may wait for its next lookup.
const TTL: u32 = 8;
/// Rooms published through m4 before it is listed, and right after.
const ROOMS_BEFORE: usize = 4;
const ROOMS_AT_JOIN: usize = 6;
const VIDEO_SSRC: u32 = 0x0c0d_0002;
const PUBLISHER: PeerRole = PeerRole::Publisher {
    audio_ssrc: 0x0c0d_0001,
    video_ssrc: VIDEO_SSRC,
};
const SELF_MEMBER: &str = "cascade_placement_self_member";

#[test]
fn rooms_stay_whole_while_a_server_joins_and_the_dns_dies() {
    if !netns::require() || !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let mut dc = DataCentre::start_with_ttl(
        4,
        3,
        TTL,
        &[
            "--token-secret",
            SECRET,
            "--cluster-secret",
            CLUSTER,
            "--cluster-insecure-http",
        ],
    )
    .expect("the data centre starts");
    let (rooms, watcher) = dc.client.enter(|| join(&dc));
    dc.dns.kill().expect("kill -9 cascade dns");
    dc.client.enter(|| without_dns(&dc, rooms, watcher));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

fn token(room: &str) -> String {
    let now = cascade::unix_now();
    let claims = Claims {
        sub: "u".into(),
        room: room.into(),
        grants: vec![Grant::Publish, Grant::Subscribe],
        exp: now + 600,
        iat: now,
    };
    cascade_core::token::mint(&TokenSecret::parse(SECRET), &claims).expect("minting a token")
}

fn members(n: usize) -> Vec<Member> {
    let mut m: Vec<Member> = (0..n)
        .map(|i| Member::new(format!("m{}.{}:80", i + 1, dc::ZONE), dc::member_url(i)))
        .collect();
    m.sort();
    m
}

fn owner_of(dc: &DataCentre, room: &str, members: &[Member]) -> usize {
    dc.server_of(&rank(room, members)[0].url)
        .expect("the owner is a server")
}

/// Polls until `done` holds (every 200 ms, `timeout` at most); returns the time taken.
async fn wait_until<F: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    start.elapsed()
}

/// A room whose publisher stays connected.
struct Room {
    name: String,
    publisher: LivePeer,
    /// The server it was sent to.
    via: usize,
}

fn publish(via: usize, room: &str) -> LivePeer {
    runtime()
        .block_on(LivePeer::connect_from(
            &dc::member_url(via),
            (dc::client_ip(), 0).into(),
            &format!("/rtc/v1/rooms/{room}/publish"),
            &token(room),
            PUBLISHER,
            Some(VIDEO_SSRC),
        ))
        .unwrap_or_else(|e| panic!("publish {room} via m{}: {e:#}", via + 1))
}

/// Publications of `room` that live on server `i` (not relayed there).
async fn local_publications(i: usize, room: &str) -> usize {
    let listing: Value = http_client()
        .get(format!("{}/rtc/v1/rooms/{room}", dc::member_url(i)))
        .bearer_auth(token(room))
        .send()
        .await
        .expect("room listing")
        .json()
        .await
        .expect("room listing JSON");
    listing["publications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["relayed_from"].is_null())
        .count()
}

/// Steps 1 to 3; returns the rooms and a room-wide subscriber of the first one.
fn join(dc: &DataCentre) -> (Vec<Room>, LivePeer) {
    let rt = runtime();
    let three = members(3);
    let four = members(4);

    // 1. m4 is no member: it serves no room, and says so.
    let took = rt.block_on(wait_until(
        "m1..m3 place over three members",
        Duration::from_secs(20),
        || places_over(dc, 0..3, &three),
    ));
    eprintln!("step 1: three members agreed after {took:.1?}");
    let mut rooms: Vec<Room> = Vec::new();
    for _ in 0..ROOMS_BEFORE {
        let name = random_room("join");
        let publisher = publish(3, &name);
        let on = dc.server_of(&publisher.resource).expect("a server");
        assert_eq!(
            on,
            owner_of(dc, &name, &three),
            "m4, no member, must send {name} to its owner among three"
        );
        rooms.push(Room {
            name,
            publisher,
            via: 3,
        });
    }
    let handed = rt.block_on(metric(
        &dc::member_url(3),
        r#"cascade_handovers_total{reason="not_member"}"#,
    ));
    assert_eq!(handed, Some(ROOMS_BEFORE as f64));
    for (i, want) in [1.0, 1.0, 1.0, 0.0].into_iter().enumerate() {
        assert_eq!(
            rt.block_on(metric(&dc::member_url(i), SELF_MEMBER)),
            Some(want),
            "m{} {SELF_MEMBER}",
            i + 1
        );
    }

    // 2. m4 joins the zone; publishers go straight to it at once.
    dc.list(3).expect("appending m4 to the zone");
    let joined = Instant::now();
    let took = rt.block_on(wait_until(
        "the DNS lists m4",
        Duration::from_secs(10),
        || async {
            resolve_srv(dc::SRV_NAME, dc.dns.dns, MemberScheme::Http)
                .await
                .is_ok_and(|a| a.members.len() == 4)
        },
    ));
    let m4_listed = rt.block_on(metric(&dc::member_url(3), SELF_MEMBER));
    eprintln!(
        "step 2: the DNS lists m4 {took:.1?} after its record was appended; m4's {SELF_MEMBER} is {m4_listed:?}"
    );
    for k in 0..ROOMS_AT_JOIN {
        let name = random_room("join");
        // Every other one through another server, as clients spread.
        let via = if k % 2 == 0 {
            3
        } else {
            rand::rng().random_range(0..3)
        };
        let publisher = publish(via, &name);
        rooms.push(Room {
            name,
            publisher,
            via,
        });
    }
    eprintln!(
        "step 2: {ROOMS_AT_JOIN} rooms published {:.1?} after m4's record was appended; m4's {SELF_MEMBER} is now {:?}",
        joined.elapsed(),
        rt.block_on(metric(&dc::member_url(3), SELF_MEMBER))
    );

    // 3. Every server places over four members.
    let took = rt.block_on(wait_until(
        "every server places over four members",
        Duration::from_secs(u64::from(TTL) * 3 + 5),
        || async {
            let Ok(srv) = resolve_srv(dc::SRV_NAME, dc.dns.dns, MemberScheme::Http).await else {
                return false;
            };
            let mut listed = srv.members;
            listed.sort();
            let mut flags = Vec::new();
            for i in 0..4 {
                flags.push(metric(&dc::member_url(i), SELF_MEMBER).await);
            }
            listed == four
                && flags.iter().all(|f| *f == Some(1.0))
                && places_over(dc, 0..4, &four).await
        },
    ));
    eprintln!("step 3: four members agreed {took:.1?} later");
    for r in &rooms {
        let homes: Vec<usize> = rt.block_on(async {
            let mut v = Vec::new();
            for i in 0..4 {
                v.push(local_publications(i, &r.name).await);
            }
            v
        });
        assert_eq!(
            homes.iter().sum::<usize>(),
            1,
            "room {} (published via m{}) has publications on {homes:?}",
            r.name,
            r.via + 1
        );
        let home = dc.server_of(&r.publisher.resource).expect("a server");
        assert_eq!(homes[home], 1, "room {}: {homes:?}", r.name);
        let via = rand::rng().random_range(0..4);
        let sub = rt
            .block_on(LivePeer::connect_from(
                &dc::member_url(via),
                (dc::client_ip(), 0).into(),
                &format!("/rtc/v1/rooms/{}/subscribe", r.name),
                &token(&r.name),
                PeerRole::Subscriber,
                None,
            ))
            .unwrap_or_else(|e| panic!("subscribe to {} via m{}: {e:#}", r.name, via + 1));
        assert_eq!(
            dc.server_of(&sub.resource),
            Some(owner_of(dc, &r.name, &four)),
            "the subscriber of {} lands on its owner",
            r.name
        );
        let info: Value = rt.block_on(async {
            let resp = http_client().get(&sub.resource).send().await.expect("GET");
            resp.json().await.expect("JSON")
        });
        assert_eq!(
            info["sources"].as_array().map(Vec::len),
            Some(1),
            "a room-wide subscriber of {} finds its publication: {info}",
            r.name
        );
        rt.block_on(wait_until(
            &format!("media of {} reaches its subscriber", r.name),
            Duration::from_secs(5),
            || async { sub.received() >= 20 },
        ));
    }
    eprintln!(
        "step 3: {} rooms, each on one server, each subscriber got media",
        rooms.len()
    );

    let watcher = rt
        .block_on(LivePeer::connect_from(
            &dc::member_url(0),
            (dc::client_ip(), 0).into(),
            &format!("/rtc/v1/rooms/{}/subscribe", rooms[0].name),
            &token(&rooms[0].name),
            PeerRole::Subscriber,
            None,
        ))
        .expect("a subscriber that stays");
    // Media is flowing to it before the DNS is killed, so step 4 measures only
    // whether it keeps flowing.
    let start = Instant::now();
    while watcher.received() < 20 {
        if start.elapsed() > Duration::from_secs(10) {
            let info: Value = rt.block_on(async {
                let resp = http_client()
                    .get(&watcher.resource)
                    .send()
                    .await
                    .expect("GET");
                resp.json().await.expect("JSON")
            });
            panic!(
                "the watcher of {} (on m{:?}, publisher on m{:?}) got {} packets in 10 s: {info}",
                rooms[0].name,
                dc.server_of(&watcher.resource).map(|i| i + 1),
                dc.server_of(&rooms[0].publisher.resource).map(|i| i + 1),
                watcher.received()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (rooms, watcher)
}

/// Step 4, once the DNS was killed: media flows on, the servers place rooms over
/// the members they had, and a client's SRV query fails clearly.
fn without_dns(dc: &DataCentre, rooms: Vec<Room>, watcher: LivePeer) {
    let rt = runtime();
    let four = members(4);
    let err = rt
        .block_on(resolve_srv(dc::SRV_NAME, dc.dns.dns, MemberScheme::Http))
        .expect_err("an SRV answer from a dead DNS server");
    eprintln!("step 4: a client's SRV query after the DNS died: {err:#}");
    // Through more than a TTL (every server tries to resolve again and fails),
    // media flows every second.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(u64::from(TTL) + 2) {
        let before = watcher.received();
        rt.block_on(wait_until(
            &format!("media {:.1?} after the DNS died", start.elapsed()),
            Duration::from_secs(2),
            || async { watcher.received() >= before + 20 },
        ));
    }
    assert!(
        rt.block_on(places_over(dc, 0..4, &four)),
        "placement after the DNS died"
    );
    for i in 0..4 {
        assert_eq!(
            rt.block_on(metric(&dc::member_url(i), SELF_MEMBER)),
            Some(1.0),
            "m{} forgot it is a member",
            i + 1
        );
    }
    let name = random_room("after-dns");
    let late = publish(rand::rng().random_range(0..4), &name);
    assert_eq!(
        dc.server_of(&late.resource),
        Some(owner_of(dc, &name, &four)),
        "a new room after the DNS died"
    );
    eprintln!("step 4: media and placement went on for {TTL} s past the DNS's death");
    drop(rooms);
}

/// Whether servers `vias` send a publish of a few probe rooms to the probe's owner
/// among `members` (a bad offer: served here is a 400, elsewhere a 307).
async fn places_over(dc: &DataCentre, vias: std::ops::Range<usize>, members: &[Member]) -> bool {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .expect("an HTTP client");
    for k in 0..8 {
        let room = format!("probe-{k}");
        let owner = owner_of(dc, &room, members);
        for via in vias.clone() {
            let Ok(resp) = client
                .post(format!(
                    "{}/rtc/v1/rooms/{room}/publish",
                    dc::member_url(via)
                ))
                .bearer_auth(token(&room))
                .header("content-type", "application/sdp")
                .body("not an offer")
                .send()
                .await
            else {
                return false;
            };
            let to = match resp.status().as_u16() {
                400 => Some(via),
                307 => resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| dc.server_of(l)),
                _ => None,
            };
            if to != Some(owner) {
                return false;
            }
        }
    }
    true
}
