//! Dead peers between media servers, each in its own network namespace joined by
//! the test harness's link emulator; peers keep their ICE consent fresh
//! ([`LivePeer`]) so only what the test kills dies.
//!
//! - `kill -9` of an edge: the origin notices the edge stopped probing its relay,
//!   closes the relay and stops copying packets to the dead port.
//! - `kill -9` of the origin of a chain M1 → M2 → M3: M3's subscription says
//!   `reconnecting` while M2 does, and `ended` once M2 gives up on M1, whose
//!   onward relay M2 then closes.
//! - An edge cut off from the network for longer than the origin waits: the origin
//!   closes the relay, the edge's subscription says `reconnecting`, and once the
//!   link is back the edge opens a relay again and its subscriber gets media.
//!
//! The times from each death to what follows are printed. Needs root, iproute2 and
//! `/dev/net/tun` (skipped without them on a developer's machine, failed in CI).

use std::time::{Duration, Instant};

use cascade_core::sfu::{RELAY_EDGE_TIMEOUT, RELAY_GIVE_UP};
use cascade_peer::PeerRole;
use cascade_tests::cascade::Cluster;
use cascade_tests::media::LivePeer;
use cascade_tests::{cascade_bin, http_client, linkemu, random_room, require};
use serde_json::Value;

const SECRET: &str = "liveness-netns-users";
const CLUSTER: &str = "liveness-netns-cluster";
const ONE_WAY_DELAY: Duration = Duration::from_millis(5);
const VIDEO_SSRC: u32 = 0x0b0d_0002;
const PUBLISHER: PeerRole = PeerRole::Publisher {
    audio_ssrc: 0x0b0d_0001,
    video_ssrc: VIDEO_SSRC,
};

fn cluster(n: usize) -> Option<Cluster> {
    if !linkemu::require() || !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let labels = &["lv1", "lv2", "lv3"][..n];
    Some(Cluster::start(labels, ONE_WAY_DELAY, SECRET, CLUSTER, &[]).expect("cluster starts"))
}

/// A [`LivePeer`] on server `i`, from its namespace; a publisher sends video.
fn live_peer(c: &Cluster, i: usize, path: &str, token: &str, role: PeerRole) -> LivePeer {
    let base = c.servers[i].http_base.clone();
    let bind = std::net::SocketAddr::from((c.ip(i), 0));
    let video = matches!(role, PeerRole::Publisher { .. }).then_some(VIDEO_SSRC);
    c.hosts[i]
        .block_on(
            || async move { LivePeer::connect_from(&base, bind, path, token, role, video).await },
        )
        .unwrap_or_else(|e| panic!("{path} on server {}: {e:#}", i + 1))
}

fn subscribe_path(room: &str, resource: &str) -> String {
    format!("/rtc/v1/rooms/{room}/subscribe?resource={resource}")
}

/// Waits until `peer` decrypted `n` packets (5 s at most).
fn wait_for_media(peer: &LivePeer, n: u64, what: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    while peer.received() < n && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(peer.received() >= n, "{what}: {} packets", peer.received());
}

/// Polls `probe` every 100 ms until it gives `Some`, for `timeout` at most.
fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<(T, Instant)> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some((v, Instant::now()));
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The state of a resource (`GET`), from server `i`'s namespace; `"gone"` for 404.
fn state(c: &Cluster, i: usize, resource: &str) -> String {
    c.hosts[i].block_on(|| async {
        let Ok(resp) = http_client().get(resource).send().await else {
            return "unreachable".to_owned();
        };
        if resp.status() == 404 {
            return "gone".to_owned();
        }
        let v: Value = resp.json().await.unwrap_or_default();
        v["state"].as_str().unwrap_or("?").to_owned()
    })
}

/// Packets server `i` copies to cascade peers, in userspace or in the kernel.
fn copied(c: &Cluster, i: usize) -> f64 {
    c.metric(i, "cascade_relayed_total")
        .expect("cascade_relayed_total")
        + c.metric(i, r#"cascade_ebpf_packets{counter="fanout_clones"}"#)
            .unwrap_or(0.0)
}

#[test]
fn an_origin_closes_the_relay_of_a_killed_edge() {
    let Some(mut c) = cluster(2) else { return };
    let room = random_room("edge-dies");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let publisher = live_peer(
        &c,
        0,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PUBLISHER,
    );
    let subscriber = live_peer(
        &c,
        1,
        &subscribe_path(&room, &publisher.resource),
        &token,
        PeerRole::Subscriber,
    );
    // Long enough for the edge to have probed its relay a few times.
    wait_for_media(&subscriber, 250, "the edge's subscriber before the kill");
    assert_eq!(c.metric(0, "cascade_relays"), Some(1.0));

    c.servers[1].child.kill().expect("kill -9 the edge");
    let died = Instant::now();
    let _ = c.servers[1].child.wait();
    let closed = poll(RELAY_EDGE_TIMEOUT * 4, || {
        (c.metric(0, "cascade_relays") == Some(0.0)).then_some(())
    });
    let Some((_, at)) = closed else {
        panic!(
            "the origin still has {:?} relays {:?} after the edge's death",
            c.metric(0, "cascade_relays"),
            died.elapsed()
        );
    };
    eprintln!(
        "edge death (kill -9) → origin relay closed: {:.1?}",
        at - died
    );
    // It copies nothing more to the dead edge while its publisher goes on.
    let before = copied(&c, 0);
    let still = poll(Duration::from_secs(1), || {
        (copied(&c, 0) > before).then_some(())
    });
    assert!(
        still.is_none(),
        "the origin still copies packets to the dead edge"
    );
    assert!(c.servers[0].is_running(), "the origin runs on");
}

#[test]
fn a_chain_goes_reconnecting_then_ended_down_to_its_last_edge() {
    let Some(mut c) = cluster(3) else { return };
    let room = random_room("chain-dies");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let publisher = live_peer(
        &c,
        0,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PUBLISHER,
    );
    let on_m2 = live_peer(
        &c,
        1,
        &subscribe_path(&room, &publisher.resource),
        &token,
        PeerRole::Subscriber,
    );
    // M3 subscribes to M2's copy, which M2 lists with where it comes from.
    let listing: Value = {
        let url = c.servers[1].url(&format!("/rtc/v1/rooms/{room}"));
        c.hosts[1].block_on(|| async {
            let resp = http_client().get(&url).bearer_auth(&token).send().await;
            resp.expect("room listing").json().await.expect("JSON")
        })
    };
    let copy = listing["publications"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["relayed_from"] == publisher.resource.as_str())
        .unwrap_or_else(|| panic!("M2 lists the relayed publication: {listing}"))["resource"]
        .as_str()
        .expect("resource URL")
        .to_owned();
    let on_m3 = live_peer(
        &c,
        2,
        &subscribe_path(&room, &copy),
        &token,
        PeerRole::Subscriber,
    );
    wait_for_media(&on_m3, 50, "M3's subscriber before the kill");
    assert_eq!(state(&c, 2, &on_m3.resource), "live");
    assert_eq!(c.metric(1, "cascade_relays"), Some(1.0), "M2 → M3");

    c.servers[0].child.kill().expect("kill -9 the origin");
    let died = Instant::now();
    let _ = c.servers[0].child.wait();
    // M2 loses M1 (3 s without probe answers); M3 hears it from M2's next answer.
    let reconnecting = poll(Duration::from_secs(10), || {
        (state(&c, 2, &on_m3.resource) == "reconnecting").then_some(())
    });
    let Some((_, at)) = reconnecting else {
        panic!(
            "M3's subscription says {} {:?} after M1's death (M2's says {})",
            state(&c, 2, &on_m3.resource),
            died.elapsed(),
            state(&c, 1, &on_m2.resource)
        );
    };
    eprintln!("origin death → M3 reconnecting: {:.1?}", at - died);
    assert_eq!(state(&c, 1, &on_m2.resource), "reconnecting");

    // M2 gives up on M1: its copy ends, its relay to M3 closes, M3's subscription ends.
    let ended = poll(RELAY_GIVE_UP + Duration::from_secs(10), || {
        (state(&c, 2, &on_m3.resource) == "ended").then_some(())
    });
    let Some((_, at)) = ended else {
        panic!(
            "M3's subscription still says {} {:?} after M1's death",
            state(&c, 2, &on_m3.resource),
            died.elapsed()
        );
    };
    eprintln!("origin death → M3 ended: {:.1?}", at - died);
    assert_eq!(state(&c, 1, &copy), "gone", "M2's copy");
    assert_eq!(state(&c, 1, &on_m2.resource), "ended");
    let relays = poll(Duration::from_secs(2), || {
        (c.metric(1, "cascade_relays") == Some(0.0)).then_some(())
    });
    assert!(relays.is_some(), "M2's relay to M3 is still open");
    assert!(c.servers[1].is_running() && c.servers[2].is_running());
}

#[test]
fn an_edge_cut_off_comes_back_live_after_its_origin_closed_the_relay() {
    let Some(c) = cluster(2) else { return };
    let room = random_room("edge-cut");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let publisher = live_peer(
        &c,
        0,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PUBLISHER,
    );
    let subscriber = live_peer(
        &c,
        1,
        &subscribe_path(&room, &publisher.resource),
        &token,
        PeerRole::Subscriber,
    );
    wait_for_media(&subscriber, 250, "the edge's subscriber before the cut");

    // Everything between the edge and the other servers is lost, both ways (its
    // subscriber, on the same host, still reaches it).
    let edge = &c.hosts[1];
    edge.add_loss(c.link_device(), 100)
        .expect("cutting the edge off");
    edge.add_ingress_loss(c.link_device(), 100)
        .expect("cutting the edge off");
    let cut = Instant::now();
    let closed = poll(RELAY_EDGE_TIMEOUT * 3, || {
        (c.metric(0, "cascade_relays") == Some(0.0)).then_some(())
    });
    assert!(
        closed.is_some(),
        "the origin kept the relay of the cut-off edge"
    );
    assert_eq!(state(&c, 1, &subscriber.resource), "reconnecting");
    eprintln!(
        "edge cut off → origin closed the relay after {:.1?}",
        closed.map(|(_, at)| at - cut).unwrap_or_default()
    );

    edge.clear_loss().expect("restoring the link");
    let healed = Instant::now();
    let live = poll(Duration::from_secs(10), || {
        (state(&c, 1, &subscriber.resource) == "live").then_some(())
    });
    let Some((_, at)) = live else {
        panic!(
            "the edge's subscription says {} 10 s after the link came back",
            state(&c, 1, &subscriber.resource)
        );
    };
    eprintln!("link back → edge subscription live: {:.1?}", at - healed);
    assert_eq!(c.metric(0, "cascade_relays"), Some(1.0));
    let before = subscriber.received();
    wait_for_media(
        &subscriber,
        before + 50,
        "the edge's subscriber after the cut",
    );
}
