//! Bad tokens, bad frames, oversized frames, rate and hello limits: each ends at
//! most the connection that misbehaved.

use std::time::Duration;

use serde_json::json;

use crate::common::{Client, Ended, SECRET, limits, start, start_with, temp_store, token_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let server = start("tokens").await;
    assert_eq!(
        Client::open(server.addr, &token_with("another-secret", "alice"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        Client::open(server.addr, "not-a-jwt").await.err(),
        Some(401)
    );
    let (status, body) = crate::common::http(server.addr, "GET", "/v1/connect", None, "").await;
    assert!(status >= 400, "{status} {body}");
    // The token may come as ?access_token= (browsers).
    let url = format!(
        "ws://{}/v1/connect?access_token={}",
        server.addr,
        token_with(SECRET, "alice")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"hello"}"#.into(),
    ))
    .await
    .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains(r#""type":"welcome""#));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_errors_and_leaves_other_clients_alone() {
    let server = start("garbage").await;
    let addr = server.addr;
    let (mut bob, _) = Client::connect(addr, "bob", 0).await;
    let (mut mallory, _) = Client::connect(addr, "mallory", 0).await;

    for (frame, id) in [
        ("not json at all", None),
        (r#"{"type":"teleport"}"#, None),
        (r#"{"type":"send","id":"m1"}"#, None),
        (
            r#"{"type":"send","id":"","to":{"user":"bob"},"body":1}"#,
            Some(""),
        ),
        (r#"{"type":"ack","seq":-1}"#, None),
        (r#"{"type":"hello","resume_after":0}"#, None),
    ] {
        mallory.send_text(frame).await;
        let e = mallory.next_of("error").await;
        assert_eq!(e["code"], "bad_frame", "{frame}");
        assert_eq!(e["id"].as_str(), id, "{frame}");
    }
    // Still connected and served.
    mallory.round_trip().await;
    mallory
        .send(json!({"type": "send", "id": "ok", "to": {"user": "bob"}, "body": "still here"}))
        .await;
    assert_eq!(mallory.next_of("accepted").await["id"], "ok");
    assert_eq!(bob.next_of("message").await["body"], "still here");

    // A frame over --max-message-bytes ends mallory's connection with 1009 ...
    let big = "x".repeat(64 * 1024 + 1);
    mallory
        .send(json!({"type": "send", "id": "big", "to": {"user": "bob"}, "body": big}))
        .await;
    assert_eq!(mallory.ended().await, Ended::Closed(1009));
    // ... and nobody else's.
    bob.round_trip().await;
    let (mut alice, _) = Client::connect(addr, "alice", 0).await;
    alice
        .send(json!({"type": "send", "id": "a", "to": {"user": "bob"}, "body": 2}))
        .await;
    assert_eq!(bob.next_of("message").await["seq"], 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_is_required_in_time() {
    let mut strict = limits();
    strict.hello_timeout = Duration::from_millis(300);
    let server = start_with(temp_store("hello"), strict).await;
    let mut silent = Client::open(server.addr, &token_with(SECRET, "alice"))
        .await
        .unwrap();
    assert_eq!(silent.ended().await, Ended::Closed(4000));
    let mut rude = Client::open(server.addr, &token_with(SECRET, "alice"))
        .await
        .unwrap();
    rude.send(json!({"type": "ping"})).await;
    assert_eq!(rude.ended().await, Ended::Closed(4002));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_dropped_then_closed_with_4008() {
    let mut slow = limits();
    // Five at once, then next to nothing: no token comes back during the test.
    slow.rate = 0.001;
    slow.burst = 5.0;
    let server = start_with(temp_store("rate"), slow).await;
    let (mut bob, _) = Client::connect(server.addr, "bob", 0).await;
    let (mut flooder, _) = Client::connect(server.addr, "flood", 0).await;
    for i in 0..50 {
        flooder
            .feed(json!({"type": "send", "id": format!("f{i}"), "to": {"user": "bob"}, "body": i}))
            .await;
    }
    flooder.flush().await;
    assert_eq!(flooder.ended().await, Ended::Closed(4008));
    let limited = flooder.unclaimed("error");
    assert!(!limited.is_empty() && limited.iter().all(|e| e["code"] == "rate_limited"));
    assert_eq!(limited[0]["id"], "f5", "the first five fit in the burst");
    assert_eq!(flooder.unclaimed("accepted").len(), 5);
    // Bob got the five that fitted and is unaffected.
    for seq in 1..=5u64 {
        assert_eq!(bob.next_of("message").await["seq"], seq);
    }
    bob.round_trip().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_answering_ones_kept() {
    let mut quick = limits();
    quick.ping_interval = Duration::from_millis(200);
    quick.idle_timeout = Duration::from_millis(800);
    let server = start_with(temp_store("idle"), quick).await;
    let (mut silent, _) = Client::connect(server.addr, "alice", 0).await;
    let (mut awake, _) = Client::connect(server.addr, "bob", 0).await;
    // The awake client reads all along, so its WebSocket answers every ping.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2000);
    let keep_reading = async {
        while tokio::time::Instant::now() < deadline {
            awake.round_trip().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // The silent one neither reads nor answers pings for that long.
    keep_reading.await;
    assert_eq!(silent.ended().await, Ended::Closed(4001));
    awake.round_trip().await;
    server.shutdown().await;
}
