//! Caps of a real `cascade serve` with placement off (no `--members`): sessions and
//! tracks on the server (503 `server_full`), sessions per token subject and per
//! client address (429), open event streams in total (503) and per address (429),
//! `resource=` parameters per subscribe, and the longest token lifetime. Refusals
//! for load carry `Retry-After`. Clients take distinct loopback addresses
//! (127.0.0.2, 127.0.0.3, ...) to stand for distinct hosts.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use cascade_peer::{ClientPeer, PeerRole};
use cascade_tests::{ServerProcess, cascade_bin, metric, mint_token, random_room, require};
use serde_json::Value;

fn server(args: &[&str]) -> Option<ServerProcess> {
    if !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    Some(ServerProcess::start(args).expect("server starts"))
}

/// A client whose connections leave from `from` (a loopback address).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn publisher_offer() -> String {
    ClientPeer::new(
        PeerRole::Publisher {
            audio_ssrc: 21,
            video_ssrc: 22,
        },
        &[],
    )
    .unwrap()
    .offer()
}

/// What a request got: status, JSON `code` (empty on success), `Retry-After`, and
/// the `Location` of a created resource.
#[derive(Debug)]
struct Outcome {
    status: u16,
    code: String,
    retry_after: Option<String>,
    location: Option<String>,
}

async fn outcome(resp: reqwest::Response) -> Outcome {
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, location) = (header("retry-after"), header("location"));
    let body = resp.text().await.unwrap_or_default();
    let code = if status >= 400 {
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{status}: error body is not JSON ({e}): {body}"));
        v["code"].as_str().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    Outcome {
        status,
        code,
        retry_after,
        location,
    }
}

async fn publish(
    client: &reqwest::Client,
    server: &ServerProcess,
    room: &str,
    token: &str,
) -> Outcome {
    let resp = client
        .post(server.url(&format!("/rtc/v1/rooms/{room}/publish")))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(publisher_offer())
        .send()
        .await
        .expect("publish");
    outcome(resp).await
}

fn assert_refused(o: &Outcome, status: u16, code: &str) {
    assert_eq!((o.status, o.code.as_str()), (status, code), "{o:?}");
    let secs: u64 = o
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("{status} without Retry-After: {o:?}"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(secs > 0, "{o:?}");
}

#[tokio::test]
async fn max_sessions_holds_without_placement() {
    let Some(server) = server(&["--max-sessions", "3"]) else {
        return;
    };
    let room = random_room("cap");
    let token = server.token(&room, "u", &["publish"]).unwrap();
    let client = client_from("127.0.0.1");
    let mut created = Vec::new();
    for i in 0..3 {
        let o = publish(&client, &server, &room, &token).await;
        assert_eq!(o.status, 201, "session {i}: {o:?}");
        created.push(o.location.unwrap());
    }
    let o = publish(&client, &server, &room, &token).await;
    assert_refused(&o, 503, "server_full");
    // Ending one makes room for one.
    let status = client
        .delete(&created[0])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    assert_eq!(publish(&client, &server, &room, &token).await.status, 201);
    assert_refused(
        &publish(&client, &server, &room, &token).await,
        503,
        "server_full",
    );
    let refused = metric(
        &server.http_base,
        "cascade_refused_total{reason=\"server_full\"}",
    )
    .await
    .expect("the refusal counter is exported");
    assert_eq!(refused, 2.0);
}

#[tokio::test]
async fn max_tracks_holds_without_placement() {
    // A publisher sends two tracks (audio, video).
    let Some(server) = server(&["--max-tracks", "3"]) else {
        return;
    };
    let room = random_room("tracks");
    let token = server.token(&room, "u", &["publish"]).unwrap();
    let client = client_from("127.0.0.1");
    assert_eq!(publish(&client, &server, &room, &token).await.status, 201);
    assert_eq!(publish(&client, &server, &room, &token).await.status, 201);
    assert_refused(
        &publish(&client, &server, &room, &token).await,
        503,
        "server_full",
    );
}

#[tokio::test]
async fn sessions_per_subject_and_per_address() {
    let Some(server) = server(&[
        "--max-sessions-per-subject",
        "2",
        "--max-sessions-per-ip",
        "3",
    ]) else {
        return;
    };
    let room = random_room("share");
    let alice = server
        .token(&room, "alice", &["publish", "subscribe"])
        .unwrap();
    let bob = server.token(&room, "bob", &["publish"]).unwrap();
    let carol = server.token(&room, "carol", &["publish"]).unwrap();
    let host_a = client_from("127.0.0.2");
    let host_b = client_from("127.0.0.3");

    // Per subject, whatever the address.
    assert_eq!(publish(&host_a, &server, &room, &alice).await.status, 201);
    assert_eq!(publish(&host_b, &server, &room, &alice).await.status, 201);
    assert_refused(
        &publish(&host_b, &server, &room, &alice).await,
        429,
        "too_many_sessions_for_subject",
    );
    // A subscription counts too.
    let resp = host_b
        .post(server.url(&format!("/rtc/v1/rooms/{room}/subscribe")))
        .bearer_auth(&alice)
        .header("content-type", "application/sdp")
        .body(ClientPeer::new(PeerRole::Subscriber, &[]).unwrap().offer())
        .send()
        .await
        .unwrap();
    assert_refused(&outcome(resp).await, 429, "too_many_sessions_for_subject");

    // Per address, whatever the subject: 127.0.0.2 holds alice's one, then two more.
    assert_eq!(publish(&host_a, &server, &room, &bob).await.status, 201);
    assert_eq!(publish(&host_a, &server, &room, &carol).await.status, 201);
    assert_refused(
        &publish(&host_a, &server, &room, &carol).await,
        429,
        "too_many_sessions_from_address",
    );
    // Another address is not held back.
    assert_eq!(publish(&host_b, &server, &room, &carol).await.status, 201);
}

/// Opens `GET url` and returns the response once its headers are in (the stream
/// stays open while the response lives).
async fn open_stream(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client.get(url).send().await.expect("events request")
}

#[tokio::test]
async fn event_streams_are_capped_in_total_and_per_address() {
    let Some(server) = server(&[
        "--max-event-streams",
        "3",
        "--max-event-streams-per-ip",
        "2",
    ]) else {
        return;
    };
    let room = random_room("sse");
    let token = server.token(&room, "u", &["publish"]).unwrap();
    let o = publish(&client_from("127.0.0.1"), &server, &room, &token).await;
    assert_eq!(o.status, 201);
    let events = format!("{}/events", o.location.unwrap());

    let host_a = client_from("127.0.0.2");
    let a1 = open_stream(&host_a, &events).await;
    let a2 = open_stream(&host_a, &events).await;
    assert_eq!((a1.status().as_u16(), a2.status().as_u16()), (200, 200));
    let refused = outcome(open_stream(&host_a, &events).await).await;
    assert_refused(&refused, 429, "too_many_event_streams_from_address");

    let b1 = open_stream(&client_from("127.0.0.3"), &events).await;
    assert_eq!(b1.status(), 200);
    let refused = outcome(open_stream(&client_from("127.0.0.4"), &events).await).await;
    assert_refused(&refused, 503, "too_many_event_streams");

    // Closing a stream frees its place (once the server sees the connection close).
    drop(a1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = open_stream(&client_from("127.0.0.4"), &events).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place never freed: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((a2, b1));
}

#[tokio::test]
async fn resource_parameters_per_subscribe_are_capped() {
    let Some(server) = server(&["--max-subscribe-resources", "2"]) else {
        return;
    };
    let room = random_room("res");
    let token = server.token(&room, "u", &["subscribe"]).unwrap();
    let client = client_from("127.0.0.1");
    let subscribe = async |n: usize| {
        let query: Vec<String> = (0..n)
            .map(|i| format!("resource=http://192.0.2.1/rtc/v1/resources/r{i}"))
            .collect();
        let resp = client
            .post(server.url(&format!(
                "/rtc/v1/rooms/{room}/subscribe?{}",
                query.join("&")
            )))
            .bearer_auth(&token)
            .header("content-type", "application/sdp")
            .body(ClientPeer::new(PeerRole::Subscriber, &[]).unwrap().offer())
            .send()
            .await
            .unwrap();
        outcome(resp).await
    };
    let o = subscribe(3).await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (400, "too_many_resources"),
        "{o:?}"
    );
    // Two pass the cap (and fail further on: this server has no cluster secret).
    let o = subscribe(2).await;
    assert_ne!(o.code, "too_many_resources", "{o:?}");
}

#[tokio::test]
async fn token_lifetime_is_bounded() {
    let Some(server) = server(&["--token-max-lifetime", "600"]) else {
        return;
    };
    let room = random_room("life");
    let client = client_from("127.0.0.1");
    let token = |ttl: u64| mint_token(&server.secret, &room, "u", &["publish"], Some(ttl)).unwrap();
    for ttl in [601, 10 * 365 * 86_400] {
        let o = publish(&client, &server, &room, &token(ttl)).await;
        assert_eq!(
            (o.status, o.code.as_str()),
            (401, "token_lifetime_too_long"),
            "ttl {ttl}"
        );
    }
    assert_eq!(
        publish(&client, &server, &room, &token(600)).await.status,
        201
    );

    // The default maximum is a day.
    let Some(default) = server_default() else {
        return;
    };
    let long = mint_token(&default.secret, &room, "u", &["publish"], Some(86_401)).unwrap();
    let o = publish(&client, &default, &room, &long).await;
    assert_eq!(
        (o.status, o.code.as_str()),
        (401, "token_lifetime_too_long")
    );
    let day = mint_token(&default.secret, &room, "u", &["publish"], Some(86_400)).unwrap();
    assert_eq!(publish(&client, &default, &room, &day).await.status, 201);
}

fn server_default() -> Option<ServerProcess> {
    server(&[])
}

/// A STUN Binding request with no attributes: what a flood of unknown sources sends.
fn stun_binding(n: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[1] = 0x01;
    b[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    b[8..12].copy_from_slice(&n.to_be_bytes());
    b
}

/// Sends `count` STUN requests to the server's media port from each of `sources`
/// (loopback addresses), then waits until the server counts at least `at_least`
/// datagrams dropped for the upcall budget; returns the count.
async fn budget_drops(
    server: &ServerProcess,
    sources: &[&str],
    count: u32,
    at_least: f64,
) -> Result<f64, Option<f64>> {
    for (s, from) in sources.iter().enumerate() {
        let socket = std::net::UdpSocket::bind((from.parse::<IpAddr>().unwrap(), 0)).unwrap();
        for i in 0..count {
            socket
                .send_to(&stun_binding(s as u32 * 1000 + i), server.media_addr)
                .unwrap();
        }
    }
    cascade_tests::wait_for_metric(
        &server.http_base,
        "cascade_drops_total{reason=\"upcall_budget\"}",
        Duration::from_secs(10),
        |v| v >= at_least,
    )
    .await
}

#[tokio::test]
async fn upcall_budgets_are_configurable() {
    // One source over its own rate: 2 per second after a burst of 4.
    let Some(one) = server(&[
        "--ebpf",
        "off",
        "--workers",
        "1",
        "--upcall-budget-per-source",
        "2",
    ]) else {
        return;
    };
    let drops = budget_drops(&one, &["127.0.0.1"], 30, 20.0).await;
    assert!(drops.is_ok(), "30 from one source: {drops:?} dropped");

    // Ten sources within their own rate, over the total of 5 per second.
    let Some(total) = server(&[
        "--ebpf",
        "off",
        "--workers",
        "1",
        "--upcall-budget-total",
        "5",
    ]) else {
        return;
    };
    let sources: Vec<String> = (2..12).map(|i| format!("127.0.0.{i}")).collect();
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    let drops = budget_drops(&total, &sources, 3, 20.0).await;
    assert!(
        drops.is_ok(),
        "3 from each of 10 sources: {drops:?} dropped"
    );
}
