//! Liveness on loopback, with real `cascade serve` processes:
//!
//! - A subscriber that dies (it stops sending ICE consent checks, its socket closed,
//!   no `DELETE`) leaves the data plane when its consent expires (RFC 7675): its
//!   session goes, no more media is sent to it, and its event stream ends with
//!   `ended`, reason `consent_expired`. The publisher, kept alive, is not touched.
//! - Concurrent first subscribers of another server's publication, arriving at an
//!   edge at once, make it open one relay.
//!
//! The time from the subscriber's death to its session leaving is printed.

use std::time::{Duration, Instant};

use cascade_core::ice::CONSENT_TIMEOUT;
use cascade_peer::{ClientPeer, PeerRole};
use cascade_tests::cascade::ResourceEvents;
use cascade_tests::media::LivePeer;
use cascade_tests::{ServerProcess, cascade_bin, http_client, metric, random_room, require};

const SECRET: &str = "liveness-test-users";
const CLUSTER: &str = "liveness-test-cluster";
const VIDEO_SSRC: u32 = 0x2222;
const PUBLISHER: PeerRole = PeerRole::Publisher {
    audio_ssrc: 0x1111,
    video_ssrc: VIDEO_SSRC,
};

fn servers(n: usize) -> Option<Vec<ServerProcess>> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let mut args: Vec<String> = [
        "--token-secret",
        SECRET,
        "--cluster-secret",
        CLUSTER,
        "--cluster-insecure-http",
    ]
    .map(String::from)
    .to_vec();
    if let Ok(d) = std::env::var("CASCADE_DATAPLANE")
        && !d.is_empty()
    {
        args.extend(["--dataplane".into(), d]);
    }
    Some(
        (0..n)
            .map(|_| ServerProcess::start(&args).expect("server starts"))
            .collect(),
    )
}

/// Polls `name` on `base` every 100 ms until `done` holds or `timeout` passes;
/// returns the last value and when `done` first held.
async fn poll_metric(
    base: &str,
    name: &str,
    timeout: Duration,
    done: impl Fn(f64) -> bool,
) -> (Option<f64>, Option<Instant>) {
    let end = Instant::now() + timeout;
    loop {
        let v = metric(base, name).await;
        if v.is_some_and(&done) {
            return (v, Some(Instant::now()));
        }
        if Instant::now() >= end {
            return (v, None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_subscriber_leaves_the_data_plane_when_its_consent_expires() {
    let Some(s) = servers(1) else { return };
    let m = &s[0];
    let room = random_room("consent");
    let token = m.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let publisher = LivePeer::connect_from(
        &m.http_base,
        local,
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PUBLISHER,
        Some(VIDEO_SSRC),
    )
    .await
    .expect("publisher connects");
    let mut subscriber = LivePeer::connect_from(
        &m.http_base,
        local,
        &format!("/rtc/v1/rooms/{room}/subscribe"),
        &token,
        PeerRole::Subscriber,
        None,
    )
    .await
    .expect("subscriber connects");
    let mut events = ResourceEvents::open(&subscriber.resource)
        .await
        .expect("the subscription's event stream");
    let first = events.next(Duration::from_secs(5)).await.unwrap().unwrap();
    assert_eq!(first.data["state"], "live", "{first:?}");

    // Media flows to the subscriber while it is alive.
    let start = Instant::now();
    while subscriber.received() < 50 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(subscriber.received() >= 50, "{}", subscriber.received());
    assert_eq!(metric(&m.http_base, "cascade_sessions").await, Some(2.0));

    // The subscriber dies.
    subscriber.kill();
    let died = Instant::now();
    let (sessions, left) = poll_metric(
        &m.http_base,
        "cascade_sessions",
        CONSENT_TIMEOUT + Duration::from_secs(10),
        |v| v < 2.0,
    )
    .await;
    let left = left.unwrap_or_else(|| {
        panic!(
            "the dead subscriber's session is still there {:?} after its death ({sessions:?} sessions)",
            died.elapsed()
        )
    });
    eprintln!(
        "subscriber death → session removed: {:.1?} (consent timeout {CONSENT_TIMEOUT:?}, \
         consent checks every 5 s)",
        left - died
    );
    assert_eq!(sessions, Some(1.0), "the publisher's session stays");
    assert!(
        left - died <= CONSENT_TIMEOUT + Duration::from_secs(2),
        "removed {:?} after death",
        left - died
    );
    // Its resource ended, saying why.
    let ended = loop {
        match events.next(Duration::from_secs(5)).await {
            Ok(Some(e)) if e.data["state"] == "ended" => break e,
            Ok(Some(_)) => continue,
            other => panic!("no ended event on the dead subscription: {other:?}"),
        }
    };
    assert_eq!(ended.data["reason"], "consent_expired", "{ended:?}");
    let resp = http_client()
        .get(&subscriber.resource)
        .send()
        .await
        .expect("GET the resource");
    assert_eq!(resp.status(), 404, "the ended subscription is gone");
    // Nothing is sent to the dead port any more while the publisher goes on: a
    // socket bound there now hears nothing.
    let dead_port = std::net::UdpSocket::bind(subscriber.local_addr).expect("rebinding the port");
    dead_port
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let heard = dead_port.recv_from(&mut buf);
    assert!(
        heard.is_err(),
        "the server still sends to the dead subscriber's port: {heard:?}"
    );
    assert_eq!(metric(&m.http_base, "cascade_sessions").await, Some(1.0));
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_subscribers_share_one_relay_open() {
    const SUBSCRIBERS: usize = 8;
    let Some(s) = servers(2) else { return };
    let (origin, edge) = (&s[0], &s[1]);
    let room = random_room("herd");
    let token = origin
        .token(&room, "alice", &["publish", "subscribe"])
        .unwrap();
    let publisher = LivePeer::connect_from(
        &origin.http_base,
        "127.0.0.1:0".parse().unwrap(),
        &format!("/rtc/v1/rooms/{room}/publish"),
        &token,
        PUBLISHER,
        Some(VIDEO_SSRC),
    )
    .await
    .expect("publisher connects");
    let opens = r#"cascade_cluster_requests_total{kind="relay_open"}"#;
    let opened_before = metric(&edge.http_base, opens)
        .await
        .expect("relay_open counter");

    // The subscribe requests reach the edge at once (their peers need not connect:
    // the relay is opened while the request is served).
    let url = edge.url(&format!(
        "/rtc/v1/rooms/{room}/subscribe?resource={}",
        publisher.resource
    ));
    let requests = (0..SUBSCRIBERS).map(|_| {
        let offer = ClientPeer::new(PeerRole::Subscriber, &[]).unwrap().offer();
        http_client()
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
    });
    for resp in futures_util::future::join_all(requests).await {
        let resp = resp.expect("subscribe");
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    }
    let opened = metric(&edge.http_base, opens).await.expect("relay_open") - opened_before;
    eprintln!("{SUBSCRIBERS} concurrent first subscribers: {opened} relay opens");
    assert_eq!(opened, 1.0, "relays opened for one publication");
    assert_eq!(metric(&origin.http_base, "cascade_relays").await, Some(1.0));
}
