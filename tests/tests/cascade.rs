//! Cascading between media servers on loopback: a subscriber on an edge asks for a
//! resource URL of another server, the edge opens one relay from the origin (however
//! many subscribers it has), keyframe requests flow back to the publisher, relays
//! chain (M1 → M2 → M3) and close after their last subscriber leaves.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cascade_dataplane::rtcp::{self, RtcpKind};
use cascade_peer::PeerRole;
use cascade_tests::cascade::cluster_args;
use cascade_tests::media::{UdpPeer, connect, connect_late, rtp_packet};
use cascade_tests::{ServerProcess, cascade_bin, http_client, metric, random_room, require};
use serde_json::Value;

const SECRET: &str = "cascade-test-users";
const CLUSTER: &str = "cascade-test-cluster";

fn servers(n: usize) -> Option<Vec<ServerProcess>> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let args = cluster_args(SECRET, CLUSTER);
    Some(
        (0..n)
            .map(|_| ServerProcess::start(&args).expect("server starts"))
            .collect(),
    )
}

/// The SSRC the subscriber's answer announces for its video.
fn video_ssrc(answer: &str) -> u32 {
    let sdp = cascade_core::sdp::parse(answer).unwrap();
    sdp.media
        .iter()
        .find(|m| m.media_type == cascade_core::sdp::MediaType::Video)
        .and_then(|m| m.sender_ssrcs().first().copied())
        .expect("video SSRC in the answer")
        .0
}

/// Receives for up to `wait`, returning the video sequence numbers decrypted.
fn receive_video(peer: &mut UdpPeer, want: usize, wait: Duration) -> BTreeSet<u16> {
    let ssrc = video_ssrc(&peer.answer);
    let mut got = BTreeSet::new();
    let mut buf = [0u8; 2048];
    peer.socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let deadline = Instant::now() + wait;
    while got.len() < want && Instant::now() < deadline {
        let Ok((n, _)) = peer.socket.recv_from(&mut buf) else {
            continue;
        };
        if !(128..192).contains(&buf[0]) || (192..224).contains(&buf[1]) {
            continue;
        }
        if let Ok(len) = peer.rx.unprotect_rtp(&mut buf[..n])
            && let Ok(h) = cascade_dataplane::rtp::parse(&buf[..len])
            && h.ssrc == ssrc
        {
            got.insert(h.sequence);
        }
    }
    got
}

async fn subscribe(server: &ServerProcess, room: &str, token: &str, resource: &str) -> UdpPeer {
    connect(
        server,
        &format!("/rtc/v1/rooms/{room}/subscribe?resource={resource}"),
        token,
        PeerRole::Subscriber,
    )
    .await
    .expect("subscriber connects")
}

/// Sends `count` video packets from `seq` on, paced, while `receivers` read.
async fn send_video(publisher: &mut UdpPeer, from: u16, count: u16) {
    for seq in from..from + count {
        publisher
            .send_rtp(&rtp_packet(0x2222, seq, u32::from(seq) * 3000, 96, 1000))
            .unwrap();
        if seq % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_relays_once_and_chains() {
    let Some(s) = servers(3) else { return };
    let (m1, m2, m3) = (&s[0], &s[1], &s[2]);
    let room = random_room("cascade");
    let token = m1.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let mut publisher = connect(
        m1,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
    )
    .await
    .expect("publisher connects");
    let resource = publisher.resource.clone();

    // Ten subscribers on the edge M2, all for the M1 resource.
    let mut subs = Vec::new();
    for _ in 0..10 {
        subs.push(subscribe(m2, &room, &token, &resource).await);
    }
    assert_eq!(
        metric(&m1.http_base, "cascade_relays").await,
        Some(1.0),
        "one relay"
    );
    let relayed_before = metric(&m1.http_base, "cascade_relayed_total")
        .await
        .unwrap_or(0.0);

    let readers: Vec<_> = subs
        .drain(..)
        .map(|mut p| {
            std::thread::spawn(move || {
                let got = receive_video(&mut p, 300, Duration::from_secs(8));
                (p, got)
            })
        })
        .collect();
    send_video(&mut publisher, 0, 300).await;
    for r in readers {
        let (p, got) = r.join().unwrap();
        assert_eq!(got.len(), 300, "every packet reached every edge subscriber");
        subs.push(p);
    }
    let relayed = metric(&m1.http_base, "cascade_relayed_total")
        .await
        .unwrap_or(0.0)
        - relayed_before;
    assert!(
        (300.0..=310.0).contains(&relayed),
        "one copy per packet on the M1→M2 link, not ten: {relayed}"
    );

    // A keyframe request from an edge subscriber reaches the publisher. Past the
    // keyframe-request interval, and with whatever reached the publisher before
    // drained, so only this request can be seen.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut buf = [0u8; 2048];
    publisher
        .socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    while publisher.socket.recv_from(&mut buf).is_ok() {}
    let sub_ssrc = video_ssrc(&subs[0].answer);
    let mut pli = [0u8; 64];
    let n = rtcp::write_pli(&mut pli, 0x7, sub_ssrc).unwrap();
    let mut wire = vec![0u8; 128];
    wire[..n].copy_from_slice(&pli[..n]);
    let m = subs[0].tx.protect_rtcp(&mut wire, n).unwrap();
    subs[0].socket.send_to(&wire[..m], subs[0].server).unwrap();
    let mut saw_pli = false;
    publisher
        .socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !saw_pli && Instant::now() < deadline {
        let Ok((n, _)) = publisher.socket.recv_from(&mut buf) else {
            continue;
        };
        if !(192..224).contains(&buf[1]) {
            continue;
        }
        if let Ok(len) = publisher.rx.unprotect_rtcp(&mut buf[..n]) {
            saw_pli = rtcp::packets(&buf[..len])
                .flatten()
                .any(|p| matches!(p.kind(), Ok(RtcpKind::Pli(pli)) if pli.media_ssrc == 0x2222));
        }
    }
    assert!(saw_pli, "the edge subscriber's PLI reached the publisher");

    // Chain: M3 subscribes to M2's copy, listed in M2's room.
    let listing: Value = http_client()
        .get(m2.url(&format!("/rtc/v1/rooms/{room}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let on_m2 = listing["publications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["relayed_from"] == resource.as_str())
        .expect("M2 lists the relayed publication")["resource"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut far = subscribe(m3, &room, &token, &on_m2).await;
    assert_eq!(metric(&m2.http_base, "cascade_relays").await, Some(1.0));
    let reader = std::thread::spawn(move || receive_video(&mut far, 200, Duration::from_secs(8)));
    send_video(&mut publisher, 300, 200).await;
    assert_eq!(reader.join().unwrap().len(), 200, "M1 → M2 → M3 delivers");

    // The last subscriber leaving closes the relay after the grace period.
    for p in &subs {
        let st = http_client()
            .delete(&p.resource)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(st, 200);
    }
    // M2's copy still feeds M3, so M1 keeps its one relay.
    tokio::time::sleep(cascade_core::sfu::RELAY_GRACE + Duration::from_secs(1)).await;
    assert_eq!(metric(&m1.http_base, "cascade_relays").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_closes_after_the_last_subscriber() {
    let Some(s) = servers(2) else { return };
    let (m1, m2) = (&s[0], &s[1]);
    let room = random_room("grace");
    let token = m1.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let publisher = connect(
        m1,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 1,
            video_ssrc: 2,
        },
    )
    .await
    .expect("publisher connects");
    let sub = subscribe(m2, &room, &token, &publisher.resource).await;
    assert_eq!(metric(&m1.http_base, "cascade_relays").await, Some(1.0));
    http_client()
        .delete(&sub.resource)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + cascade_core::sfu::RELAY_GRACE + Duration::from_secs(4);
    loop {
        if metric(&m1.http_base, "cascade_relays").await == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay closed after the grace period"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A token for another room cannot pull the publication through an edge.
    let other = m2.token("elsewhere", "eve", &["subscribe"]).unwrap();
    let offer = cascade_peer::ClientPeer::new(PeerRole::Subscriber, &[])
        .unwrap()
        .offer();
    let resp = http_client()
        .post(m2.url(&format!(
            "/rtc/v1/rooms/elsewhere/subscribe?resource={}",
            publisher.resource
        )))
        .bearer_auth(other)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// Starts a server with `extra` on top of the cluster settings (no plain-HTTP flag).
fn tls_server(extra: Vec<String>) -> ServerProcess {
    let mut args: Vec<String> = ["--token-secret", SECRET, "--cluster-secret", CLUSTER]
        .map(String::from)
        .to_vec();
    args.extend(extra);
    ServerProcess::start(&args).expect("server starts")
}

/// POSTs a subscribe for `resource` to `server`; returns status and body.
async fn try_subscribe(
    server: &ServerProcess,
    room: &str,
    token: &str,
    resource: &str,
) -> (u16, String) {
    let offer = cascade_peer::ClientPeer::new(PeerRole::Subscriber, &[])
        .unwrap()
        .offer();
    let resp = http_client()
        .post(server.url(&format!(
            "/rtc/v1/rooms/{room}/subscribe?resource={resource}"
        )))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_go_over_https_to_servers_the_cluster_trusts() {
    use cascade_tests::tls::{CertDir, TestCa, tls_args};
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    let dir = CertDir::new("cluster").unwrap();
    let ca = TestCa::new(&dir, "cluster-ca").unwrap();
    let rogue = TestCa::new(&dir, "rogue-ca").unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let m1_cert = ca.issue(&dir, "m1", ip).unwrap();
    let ca_arg = ca.pem.to_string_lossy().into_owned();
    // The origin serves HTTPS; edges trust the cluster CA, a pin, or a foreign CA.
    let m1 = tls_server(tls_args(&m1_cert));
    let by_ca = tls_server(
        [
            tls_args(&ca.issue(&dir, "m2", ip).unwrap()),
            vec!["--cluster-ca".into(), ca_arg.clone()],
        ]
        .concat(),
    );
    let by_pin = tls_server(vec!["--cluster-pin".into(), m1_cert.pin.clone()]);
    let foreign = tls_server(vec![
        "--cluster-ca".into(),
        rogue.pem.to_string_lossy().into_owned(),
    ]);
    assert!(m1.http_base.starts_with("https://"), "{}", m1.http_base);

    let room = random_room("tls");
    let token = m1.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let mut publisher = connect(
        &m1,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
    )
    .await
    .expect("publisher connects over HTTPS");
    assert!(publisher.resource.starts_with("https://"));

    // A server whose certificate chains to no CA it trusts gets no keys.
    let (status, body) = try_subscribe(&foreign, &room, &token, &publisher.resource).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("origin_unreachable"), "{body}");
    assert!(body.contains("certificate"), "the refusal says why: {body}");
    assert_eq!(metric(&m1.http_base, "cascade_relays").await, Some(0.0));

    // Trusted by CA and by pin: both relay, media flows through each.
    let mut subs = vec![
        subscribe(&by_ca, &room, &token, &publisher.resource).await,
        subscribe(&by_pin, &room, &token, &publisher.resource).await,
    ];
    assert_eq!(metric(&m1.http_base, "cascade_relays").await, Some(2.0));
    let readers: Vec<_> = subs
        .drain(..)
        .map(|mut p| {
            std::thread::spawn(move || receive_video(&mut p, 200, Duration::from_secs(8)).len())
        })
        .collect();
    send_video(&mut publisher, 1, 300).await;
    for r in readers {
        let got = r.join().unwrap();
        assert!(
            got >= 200,
            "{got} of 300 video packets through an HTTPS relay"
        );
    }

    // The origin refuses to hand keys over plain HTTP without the development flag.
    let plain = tls_server(Vec::new());
    let plain_pub = connect(
        &plain,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x3333,
            video_ssrc: 0x4444,
        },
    )
    .await
    .expect("publisher connects over HTTP");
    let (status, body) = try_subscribe(&by_ca, &room, &token, &plain_pub.resource).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("scheme"),
        "HTTPS only between servers: {body}"
    );
}

/// An edge asking for a publication whose publisher is still connecting (a callee
/// accepting a call the moment the invitation arrives) gets its relay once the
/// publisher connects, instead of a 409 `not_connected` passed on as 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_waits_for_a_publisher_that_is_still_connecting() {
    let Some(servers) = servers(2) else { return };
    let (origin, edge) = (&servers[0], &servers[1]);
    let room = random_room("late");
    let token = origin.token(&room, "u", &["publish", "subscribe"]).unwrap();
    let (created_tx, created_rx) = tokio::sync::oneshot::channel::<String>();
    let publish_path = format!("/rtc/v1/rooms/{room}/publish");
    let publish = connect_late(
        origin,
        &publish_path,
        &token,
        PeerRole::Publisher {
            audio_ssrc: 0x1111,
            video_ssrc: 0x2222,
        },
        Duration::from_millis(1500),
        move |resource| {
            let _ = created_tx.send(resource.to_owned());
        },
    );
    let subscribe = async {
        let resource = created_rx.await.expect("the publication is created");
        connect(
            edge,
            &format!("/rtc/v1/rooms/{room}/subscribe?resource={resource}"),
            &token,
            PeerRole::Subscriber,
        )
        .await
    };
    let (publisher, subscriber) = tokio::join!(publish, subscribe);
    let mut publisher = publisher.expect("the publisher connects late");
    let mut subscriber =
        subscriber.expect("the edge subscribes to a publication whose publisher connects late");
    let receiving = tokio::task::spawn_blocking(move || {
        let got = receive_video(&mut subscriber, 50, Duration::from_secs(10));
        (subscriber, got)
    });
    for round in 0..20u16 {
        send_video(&mut publisher, round * 10, 10).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_subscriber, got) = receiving.await.unwrap();
    assert!(
        got.len() >= 50,
        "the edge's subscriber got {} packets",
        got.len()
    );
}

/// Two servers that are each other's origin (a 1:1 call across them: each side
/// subscribes on its own server to the other's publication) relay both ways over the
/// one pair of media addresses: neither relay stops the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_relay_to_each_other_at_once() {
    let Some(servers) = servers(2) else { return };
    let room = random_room("both-ways");
    let token = servers[0]
        .token(&room, "u", &["publish", "subscribe"])
        .unwrap();
    // One publisher on each server, with distinct SSRCs (as browsers have).
    let mut publishers = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let video_ssrc = 0x2222 + i as u32 * 0x1000;
        let p = connect(
            server,
            &format!("/rtc/v1/rooms/{room}/publish"),
            &token,
            PeerRole::Publisher {
                audio_ssrc: video_ssrc - 1,
                video_ssrc,
            },
        )
        .await
        .expect("publisher connects");
        publishers.push((p, video_ssrc));
    }
    // Each server's subscriber takes the other server's publication: two relays, in
    // opposite directions.
    let mut subscribers = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let other = &publishers[1 - i].0.resource;
        subscribers.push(subscribe(server, &room, &token, other).await);
    }
    let receiving: Vec<_> = subscribers
        .into_iter()
        .map(|mut s| {
            tokio::task::spawn_blocking(move || {
                receive_video(&mut s, 150, Duration::from_secs(10)).len()
            })
        })
        .collect();
    for seq in 0..300u16 {
        for (p, ssrc) in &mut publishers {
            p.send_rtp(&rtp_packet(*ssrc, seq, u32::from(seq) * 3000, 96, 600))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (i, r) in receiving.into_iter().enumerate() {
        let got = r.await.unwrap();
        assert!(
            got >= 150,
            "the subscriber on server {i} got {got} of the other server's packets"
        );
    }
}
