//! Room placement in a data centre of network namespaces: media servers on one
//! bridge, each with its HTTP API on port 80 of its own address, learn their
//! members from the SRV records `cascade dns` serves for its zone (TTL 1 s, health
//! probes on every server's `/healthz`), and place rooms by rendezvous hashing over
//! them, handing requests over by redirect (the default).
//!
//! One scenario, in steps that build on each other:
//! 1. Three members: every publish and subscribe of 100 rooms, sent to random
//!    servers, lands on the room's rendezvous owner over the SRV member list, and
//!    media flows with no server-to-server request and no relayed packet at all.
//! 2. A fourth server, running all along, is appended to the zone file: within
//!    seconds every server places new rooms over four members (the newcomer takes
//!    its share), sessions opened before keep flowing, and rooms that stayed with
//!    their owner take new subscribers as before.
//! 3. Capacity (`--max-sessions 11`): a publisher and ten subscribers fill a
//!    room's owner; the next subscriber lands on the next member in rank, which
//!    cascades the room from the owner.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cascade_core::placement::{Member, rank};
use cascade_core::token::{Claims, Grant, TokenSecret};
use cascade_dns::membership::{MemberScheme, resolve_srv};
use cascade_peer::PeerRole;
use cascade_tests::dc::{self, DataCentre};
use cascade_tests::media::{UdpPeer, connect_via, rtp_packet};
use cascade_tests::{
    cascade_bin, http_client, metric_in, metrics_text, netns, random_room, require,
};
use rand::Rng;

const SECRET: &str = "placement-netns-users";
const CLUSTER: &str = "placement-netns-cluster";

/// Sessions a server takes before it is full.
const MAX_SESSIONS: usize = 11;
/// Rooms placed over three members, and then over four.
const ROOMS: usize = 100;
const NEW_ROOMS: usize = 60;
/// Rooms in flight at once. Each holds two sessions at most, so that with the
/// long-lived rooms of step 2 (two sessions on a server at most) no server
/// reaches [`MAX_SESSIONS`] before step 3 means it to.
const PARALLEL_ROOMS: usize = 4;

const AUDIO_SSRC: u32 = 0x1111;
const VIDEO_SSRC: u32 = 0x2222;
const PUBLISHER: PeerRole = PeerRole::Publisher {
    audio_ssrc: AUDIO_SSRC,
    video_ssrc: VIDEO_SSRC,
};

#[test]
fn rooms_follow_the_srv_members_and_spill_at_capacity() {
    if !netns::require() || !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let started = Instant::now();
    let max = MAX_SESSIONS.to_string();
    let dc = DataCentre::start(
        4,
        3,
        &[
            "--token-secret",
            SECRET,
            "--cluster-secret",
            CLUSTER,
            "--cluster-insecure-http",
            "--max-sessions",
            &max,
        ],
    )
    .expect("the data centre starts");
    // Every peer and HTTP call of the test lives in the client namespace.
    dc.client.enter(|| scenario(&dc));
    eprintln!("wall time {:.1?}", started.elapsed());
}

fn scenario(dc: &DataCentre) {
    let rt = runtime();
    let (three, took) = rt.block_on(wait_for_members(dc, 3, Duration::from_secs(20)));
    eprintln!("three members agreed {took:.1?} after the servers started");

    // 1. Three members, 100 rooms, nothing between servers.
    let before = rt.block_on(traffic(dc));
    let placed = in_parallel(ROOMS, |rt| rt.block_on(place_room(dc, &three, 3)));
    let after = rt.block_on(traffic(dc));
    assert_no_cluster_traffic(&before, &after, "100 rooms over three members");
    let per_server = owners(&placed);
    let redirected: usize = placed.iter().map(|p| p.redirected).sum();
    eprintln!(
        "step 1: rooms per server {per_server:?}, {redirected} of {} requests redirected to the owner",
        2 * ROOMS
    );
    for i in 0..3 {
        assert!(
            per_server.get(&i).is_some_and(|&n| n > 0),
            "m{} owns no room",
            i + 1
        );
    }

    // 2. A fourth member joins through the zone file.
    let mut live = rt.block_on(open_live_rooms(dc, &three));
    dc.list(3).expect("appending m4 to the zone");
    let (four, took) = rt.block_on(wait_for_members(dc, 4, Duration::from_secs(15)));
    eprintln!("m4 placed rooms {took:.1?} after its record was appended");
    for r in &mut live {
        r.new_owner = owner_of(dc, &r.room, &four);
        let got = flow(
            &mut r.publisher,
            &mut r.seq,
            std::slice::from_mut(&mut r.subscriber),
            20,
        );
        assert!(
            got[0] >= 20,
            "the subscriber of {} (on m{}) got {} packets after m4 joined",
            r.room,
            r.owner + 1,
            got[0]
        );
    }
    rt.block_on(new_subscribers_of_live_rooms(dc, &mut live));
    // The relay of a taken-over room closes a grace period after its subscriber left.
    for i in 0..dc.servers.len() {
        let relays = rt.block_on(cascade_tests::wait_for_metric(
            &dc::member_url(i),
            "cascade_relays",
            cascade_core::sfu::RELAY_GRACE + Duration::from_secs(3),
            |v| v == 0.0,
        ));
        assert_eq!(relays, Ok(0.0), "relays left open on m{}", i + 1);
    }
    let before = rt.block_on(traffic(dc));
    let placed = in_parallel(NEW_ROOMS, |rt| rt.block_on(place_room(dc, &four, 4)));
    let after = rt.block_on(traffic(dc));
    assert_no_cluster_traffic(&before, &after, "60 new rooms over four members");
    let per_server = owners(&placed);
    eprintln!("step 2: new rooms per server {per_server:?}");
    assert!(
        per_server.get(&3).is_some_and(|&n| n > 0),
        "m4 owns none of {NEW_ROOMS} new rooms: {per_server:?}"
    );
    for r in &mut live {
        let got = flow(
            &mut r.publisher,
            &mut r.seq,
            std::slice::from_mut(&mut r.subscriber),
            20,
        );
        assert!(
            got[0] >= 20,
            "the subscriber of {} got {} packets after the new rooms",
            r.room,
            got[0]
        );
        rt.block_on(delete(&r.subscriber, &r.token));
        rt.block_on(delete(&r.publisher, &r.token));
    }

    // 3. A full owner spills the next subscriber to the next member in rank.
    rt.block_on(spill_over(dc, &four));
}

/// A current-thread runtime for HTTP calls from the calling thread (and so from
/// its network namespace).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Runs `job` `count` times on [`PARALLEL_ROOMS`] threads (started here, so in this
/// thread's namespace), each with its own runtime; a panic stops the others from
/// taking more jobs and is passed on.
fn in_parallel<T: Send>(
    count: usize,
    job: impl Fn(&tokio::runtime::Runtime) -> T + Sync,
) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    struct StopOnPanic<'a>(&'a AtomicBool);
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.store(true, Ordering::Relaxed);
            }
        }
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_ROOMS)
            .map(|_| {
                scope.spawn(|| {
                    let _stop = StopOnPanic(&failed);
                    let rt = runtime();
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed)
                        && next.fetch_add(1, Ordering::Relaxed) < count
                    {
                        out.push(job(&rt));
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        let mut panic = None;
        for w in workers {
            match w.join() {
                Ok(out) => all.extend(out),
                Err(p) => panic = panic.or(Some(p)),
            }
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        all
    })
}

/// A token for `room` with both grants.
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

/// The members server `0..n` of the data centre should have, as SRV gives them.
fn expected_members(n: usize) -> Vec<Member> {
    let mut members: Vec<Member> = (0..n)
        .map(|i| Member::new(format!("m{}.{}:80", i + 1, dc::ZONE), dc::member_url(i)))
        .collect();
    members.sort();
    members
}

/// The server that owns `room` among `members`.
fn owner_of(dc: &DataCentre, room: &str, members: &[Member]) -> usize {
    let owner = &rank(room, members)[0].url;
    dc.server_of(owner)
        .unwrap_or_else(|| panic!("owner {owner} is none of the servers"))
}

/// Waits until the DNS lists servers `0..n` in SRV and each of them places rooms
/// over exactly those members; returns the members (from SRV) and how long it took.
async fn wait_for_members(dc: &DataCentre, n: usize, timeout: Duration) -> (Vec<Member>, Duration) {
    let start = Instant::now();
    let want = expected_members(n);
    // Rooms that every member owns some of, so a server with another list shows.
    let mut probes: Vec<String> = Vec::new();
    let mut owned = vec![0usize; n];
    for k in 0.. {
        if owned.iter().all(|&c| c >= 2) {
            break;
        }
        let room = format!("probe-{k}");
        owned[owner_of(dc, &room, &want)] += 1;
        probes.push(room);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .expect("building an HTTP client");
    loop {
        let last = match members_agree(dc, &client, &want, &probes).await {
            Ok(members) => return (members, start.elapsed()),
            Err(e) => e,
        };
        if start.elapsed() > timeout {
            panic!("servers 1..{n} did not agree on {n} members within {timeout:?}: {last:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The SRV members when they are `want` and every one of them places each of
/// `probes` on its owner among them.
async fn members_agree(
    dc: &DataCentre,
    client: &reqwest::Client,
    want: &[Member],
    probes: &[String],
) -> anyhow::Result<Vec<Member>> {
    let mut members = resolve_srv(dc::SRV_NAME, dc.dns.dns, MemberScheme::Http)
        .await?
        .members;
    members.sort();
    if members != want {
        bail!("SRV lists {members:?}");
    }
    for via in 0..want.len() {
        for room in probes {
            let owner = owner_of(dc, room, &members);
            let to = placed_by(dc, client, via, room).await?;
            if to != owner {
                bail!(
                    "m{} places {room} on m{}, not on m{}",
                    via + 1,
                    to + 1,
                    owner + 1
                );
            }
        }
    }
    Ok(members)
}

/// Where server `via` places a publish for `room`: itself (it then reads the offer
/// and refuses it, 400) or the member its `307` names. No session is made.
async fn placed_by(
    dc: &DataCentre,
    client: &reqwest::Client,
    via: usize,
    room: &str,
) -> anyhow::Result<usize> {
    let resp = client
        .post(format!(
            "{}/rtc/v1/rooms/{room}/publish",
            dc::member_url(via)
        ))
        .bearer_auth(token(room))
        .header("content-type", "application/sdp")
        .body("not an offer")
        .send()
        .await?;
    match resp.status().as_u16() {
        400 => Ok(via),
        307 => {
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .context("307 without Location")?;
            dc.server_of(location)
                .with_context(|| format!("m{} redirects to {location}", via + 1))
        }
        status => bail!(
            "m{} answered {status}: {}",
            via + 1,
            resp.text().await.unwrap_or_default()
        ),
    }
}

/// Publishes or subscribes (by `role`) to `room` through server `via`, following
/// redirects, from a socket in the client namespace.
async fn join(via: usize, room: &str, token: &str, role: PeerRole) -> UdpPeer {
    let kind = match role {
        PeerRole::Publisher { .. } => "publish",
        PeerRole::Subscriber => "subscribe",
    };
    let socket = UdpSocket::bind((dc::client_ip(), 0)).expect("binding a peer socket");
    connect_via(
        &dc::member_url(via),
        socket,
        &format!("/rtc/v1/rooms/{room}/{kind}"),
        token,
        role,
    )
    .await
    .unwrap_or_else(|e| panic!("{kind} to {room} via m{}: {e:#}", via + 1))
}

/// The server a peer's resource lives on.
fn served_by(dc: &DataCentre, peer: &UdpPeer) -> usize {
    dc.server_of(&peer.resource)
        .unwrap_or_else(|| panic!("{} is on none of the servers", peer.resource))
}

async fn delete(peer: &UdpPeer, token: &str) {
    let resp = http_client()
        .delete(&peer.resource)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {}: {e}", peer.resource));
    assert!(
        resp.status().is_success(),
        "DELETE {}: {}",
        peer.resource,
        resp.status()
    );
}

/// Sends video from `publisher` (numbering on from `seq`), paced in bursts of five
/// packets, until each of `subscribers` decrypted `want` RTP packets or 5 s passed;
/// returns what each got.
fn flow(
    publisher: &mut UdpPeer,
    seq: &mut u16,
    subscribers: &mut [UdpPeer],
    want: usize,
) -> Vec<usize> {
    flow_for(publisher, seq, subscribers, want, Duration::from_secs(5))
}

fn flow_for(
    publisher: &mut UdpPeer,
    seq: &mut u16,
    subscribers: &mut [UdpPeer],
    want: usize,
    wait: Duration,
) -> Vec<usize> {
    for s in subscribers.iter() {
        s.socket
            .set_nonblocking(true)
            .expect("a non-blocking socket");
    }
    let mut got = vec![0; subscribers.len()];
    let deadline = Instant::now() + wait;
    while got.iter().any(|&g| g < want) && Instant::now() < deadline {
        for k in 0..5 {
            *seq = seq.wrapping_add(1);
            let packet = video_packet(*seq, k == 0);
            publisher.send_rtp(&packet).expect("sending RTP");
        }
        std::thread::sleep(Duration::from_millis(5));
        for (s, g) in subscribers.iter_mut().zip(&mut got) {
            *g += decrypted_rtp(s);
        }
    }
    got
}

/// A plaintext VP8 packet (PT 96) of the publisher's video, one frame each: a
/// keyframe (RFC 7741 descriptor with S set, keyframe header with the start code,
/// 640x480) when `keyframe`, else an interframe. A subscriber's stream starts at a
/// keyframe, so every burst [`flow_for`] sends starts with one.
fn video_packet(seq: u16, keyframe: bool) -> Vec<u8> {
    const KEYFRAME: [u8; 11] = [
        0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01,
    ];
    const INTERFRAME: [u8; 4] = [0x10, 0x01, 0x00, 0x00];
    let mut p = rtp_packet(VIDEO_SSRC, seq, u32::from(seq) * 3000, 96, 200);
    let head: &[u8] = if keyframe { &KEYFRAME } else { &INTERFRAME };
    p[12..12 + head.len()].copy_from_slice(head);
    p
}

/// RTP packets waiting on `peer`'s socket that decrypt under its keys.
fn decrypted_rtp(peer: &mut UdpPeer) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while let Ok((len, _)) = peer.socket.recv_from(&mut buf) {
        let rtp = (128..192).contains(&buf[0]) && !(192..224).contains(&buf[1]);
        if rtp && peer.rx.unprotect_rtp(&mut buf[..len]).is_ok() {
            n += 1;
        }
    }
    n
}

/// Where one room's publish and subscribe went.
struct Placed {
    owner: usize,
    /// Requests sent to a server other than the owner.
    redirected: usize,
}

/// A fresh room: publish through one random server of `0..listed`, subscribe
/// through another; both must land on the room's owner among `members`, and media
/// must flow. Both sessions are deleted after.
async fn place_room(dc: &DataCentre, members: &[Member], listed: usize) -> Placed {
    let room = random_room("dc");
    let token = token(&room);
    let owner = owner_of(dc, &room, members);
    let (via_pub, via_sub) = {
        let mut rng = rand::rng();
        let a = rng.random_range(0..listed);
        (a, (a + rng.random_range(1..listed)) % listed)
    };
    let mut publisher = join(via_pub, &room, &token, PUBLISHER).await;
    assert_eq!(
        served_by(dc, &publisher),
        owner,
        "publish of {room} via m{}",
        via_pub + 1
    );
    let mut subscriber = join(via_sub, &room, &token, PeerRole::Subscriber).await;
    assert_eq!(
        served_by(dc, &subscriber),
        owner,
        "subscribe to {room} via m{}",
        via_sub + 1
    );
    let mut seq = 0;
    let got = flow(
        &mut publisher,
        &mut seq,
        std::slice::from_mut(&mut subscriber),
        10,
    );
    assert!(
        got[0] >= 10,
        "the subscriber of {room} got {} packets",
        got[0]
    );
    delete(&subscriber, &token).await;
    delete(&publisher, &token).await;
    Placed {
        owner,
        redirected: usize::from(via_pub != owner) + usize::from(via_sub != owner),
    }
}

/// Rooms per owner.
fn owners(placed: &[Placed]) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for p in placed {
        *counts.entry(p.owner).or_insert(0) += 1;
    }
    counts
}

/// A room with a publisher and a subscriber that stay connected while m4 joins.
struct LiveRoom {
    room: String,
    token: String,
    /// Its owner among three members, where its sessions are.
    owner: usize,
    /// Its owner among four members.
    new_owner: usize,
    publisher: UdpPeer,
    seq: u16,
    subscriber: UdpPeer,
}

/// Three rooms on three different owners among `three`: the first one m4 will
/// own once it joins, the others it will not.
async fn open_live_rooms(dc: &DataCentre, three: &[Member]) -> Vec<LiveRoom> {
    let four = expected_members(4);
    let mut chosen: Vec<(String, usize)> = Vec::new();
    while chosen.len() < 3 {
        let room = random_room("live");
        let owner = owner_of(dc, &room, three);
        let moves = owner_of(dc, &room, &four) == 3;
        if moves == chosen.is_empty() && chosen.iter().all(|(_, o)| *o != owner) {
            chosen.push((room, owner));
        }
    }
    let mut live = Vec::new();
    for (room, owner) in chosen {
        let token = token(&room);
        let via = rand::rng().random_range(0..3);
        let mut publisher = join(via, &room, &token, PUBLISHER).await;
        let mut subscriber = join((via + 1) % 3, &room, &token, PeerRole::Subscriber).await;
        assert_eq!(served_by(dc, &publisher), owner, "publish of {room}");
        assert_eq!(served_by(dc, &subscriber), owner, "subscribe to {room}");
        let mut seq = 0;
        let got = flow(
            &mut publisher,
            &mut seq,
            std::slice::from_mut(&mut subscriber),
            20,
        );
        assert!(
            got[0] >= 20,
            "the subscriber of {room} got {} packets",
            got[0]
        );
        live.push(LiveRoom {
            room,
            token,
            owner,
            new_owner: owner,
            publisher,
            seq,
            subscriber,
        });
    }
    live
}

/// A new subscriber of each live room, through a random server: it lands on the
/// room's owner among four members and gets the media, also where m4 took the room
/// over (m4 cascades the publication from the room's previous owner).
async fn new_subscribers_of_live_rooms(dc: &DataCentre, live: &mut [LiveRoom]) {
    for r in live {
        let via = rand::rng().random_range(0..4);
        let mut sub = join(via, &r.room, &r.token, PeerRole::Subscriber).await;
        assert_eq!(
            served_by(dc, &sub),
            r.new_owner,
            "new subscriber of {} via m{}",
            r.room,
            via + 1
        );
        // Where m4 took the room over, it finds the publication on the owner the room
        // had before m4 joined and cascades it.
        let got = flow(
            &mut r.publisher,
            &mut r.seq,
            std::slice::from_mut(&mut sub),
            20,
        );
        assert!(
            got[0] >= 20,
            "a new subscriber of {} (published on m{}, now owned by m{}) got {} packets",
            r.room,
            r.owner + 1,
            r.new_owner + 1,
            got[0]
        );
        if r.new_owner != r.owner {
            eprintln!(
                "owner moved: room {} published on m{} is now owned by m{}; a new subscriber \
                 there got {} packets through a relay from m{}",
                r.room,
                r.owner + 1,
                r.new_owner + 1,
                got[0],
                r.owner + 1
            );
        }
        delete(&sub, &r.token).await;
    }
}

/// Server-to-server traffic of one server: cluster requests of every kind, packets
/// relayed, open relays.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Traffic {
    requests: f64,
    relayed: f64,
    relays: f64,
}

async fn traffic(dc: &DataCentre) -> Vec<Traffic> {
    let mut all = Vec::new();
    for i in 0..dc.servers.len() {
        let text = metrics_text(&dc::member_url(i))
            .await
            .unwrap_or_else(|e| panic!("metrics of m{}: {e:#}", i + 1));
        let get = |name: &str| {
            metric_in(&text, name).unwrap_or_else(|| panic!("m{} has no {name}", i + 1))
        };
        all.push(Traffic {
            requests: get("cascade_cluster_requests_total"),
            relayed: get("cascade_relayed_total"),
            relays: get("cascade_relays"),
        });
    }
    all
}

fn assert_no_cluster_traffic(before: &[Traffic], after: &[Traffic], what: &str) {
    for (i, (b, a)) in before.iter().zip(after).enumerate() {
        assert_eq!(
            a.requests - b.requests,
            0.0,
            "{what}: server-to-server requests from m{}",
            i + 1
        );
        assert_eq!(
            a.relayed - b.relayed,
            0.0,
            "{what}: packets relayed by m{}",
            i + 1
        );
        assert_eq!(a.relays, 0.0, "{what}: relays open on m{}", i + 1);
    }
}

/// A publisher and ten subscribers fill a room's owner; the eleventh subscriber
/// lands on the next member in rank and gets the media through a relay from the
/// owner.
async fn spill_over(dc: &DataCentre, four: &[Member]) {
    for i in 0..dc.servers.len() {
        let sessions = cascade_tests::wait_for_metric(
            &dc::member_url(i),
            "cascade_sessions",
            Duration::from_secs(5),
            |v| v == 0.0,
        )
        .await;
        assert_eq!(sessions, Ok(0.0), "sessions left on m{}", i + 1);
    }
    let room = random_room("full");
    let token = token(&room);
    let ranking: Vec<usize> = rank(&room, four)
        .into_iter()
        .map(|m| dc.server_of(&m.url).expect("a member is a server"))
        .collect();
    let (owner, next) = (ranking[0], ranking[1]);
    let opened = |text: &str| {
        metric_in(text, "cascade_cluster_requests_total{kind=\"relay_open\"}").unwrap_or(0.0)
    };
    let opened_before = opened(
        &metrics_text(&dc::member_url(next))
            .await
            .expect("spill metrics"),
    );
    let via = || rand::rng().random_range(0..4);
    let mut publisher = join(via(), &room, &token, PUBLISHER).await;
    assert_eq!(served_by(dc, &publisher), owner, "publish of {room}");
    let mut subscribers = Vec::new();
    for k in 0..MAX_SESSIONS {
        let v = via();
        let sub = join(v, &room, &token, PeerRole::Subscriber).await;
        let want = if k + 1 < MAX_SESSIONS { owner } else { next };
        assert_eq!(
            served_by(dc, &sub),
            want,
            "subscriber {} of {room} via m{}",
            k + 1,
            v + 1
        );
        subscribers.push(sub);
    }
    let mut seq = 0;
    let got = flow(&mut publisher, &mut seq, &mut subscribers, 100);
    eprintln!(
        "step 3: room {room} owned by m{}, spilled to m{}: packets decrypted per subscriber {got:?}",
        owner + 1,
        next + 1
    );
    for (k, g) in got.iter().enumerate() {
        assert!(*g >= 100, "subscriber {} of {room} got {g} packets", k + 1);
    }
    let owner_text = metrics_text(&dc::member_url(owner))
        .await
        .expect("owner metrics");
    let next_text = metrics_text(&dc::member_url(next))
        .await
        .expect("spill metrics");
    let get = |text: &str, name: &str| metric_in(text, name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(
        get(&owner_text, "cascade_relays"),
        1.0,
        "one relay from the owner"
    );
    assert!(
        get(&owner_text, "cascade_relayed_total") >= 100.0,
        "the owner relays the room"
    );
    assert!(
        get(&owner_text, "cascade_handovers_total{reason=\"capacity\"}") >= 1.0,
        "the owner sent the subscriber on"
    );
    assert_eq!(
        opened(&next_text) - opened_before,
        1.0,
        "the spill member opened one relay"
    );
    for sub in &subscribers {
        delete(sub, &token).await;
    }
    delete(&publisher, &token).await;
}
