//! Ordering, exactly-once-visible delivery, offline delivery, resume, restart and
//! the backend interface.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::common::{Client, http, limits, metric, service_token, start, start_with, temp_store};

const MESSAGES: usize = 10_000;

fn dm(id: &str, to: &str, body: Value) -> Value {
    json!({"type": "send", "id": id, "to": {"user": to}, "body": body})
}

/// Sends `n` messages alice → bob and waits until each is accepted.
async fn send_and_confirm(alice: &mut Client, n: usize, prefix: &str) {
    for i in 0..n {
        alice
            .feed(dm(&format!("{prefix}{i}"), "bob", json!({"n": i})))
            .await;
    }
    alice.flush().await;
    for i in 0..n {
        let a = alice.next_of("accepted").await;
        assert_eq!(a["id"], format!("{prefix}{i}"));
        assert_eq!(a["duplicate"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_arrive_in_order_once_with_retries() {
    let server = start("order").await;
    let addr = server.addr;
    let (mut bob, _) = Client::connect(addr, "bob", 0).await;
    let (alice, _) = Client::connect(addr, "alice", 0).await;

    // Alice sends every id once and, for one in ten, sends it again: half the
    // retries right behind the first send, half a few messages later.
    let mut plan = Vec::new();
    for i in 0..MESSAGES {
        plan.push(i);
        if i % 10 == 0 {
            plan.push(i);
        }
        if i % 10 == 7 {
            plan.push(i - 2);
        }
    }
    let retried: HashSet<usize> = (0..MESSAGES)
        .filter(|i| i % 10 == 0 || i % 10 == 5)
        .collect();
    let sends = plan.len();
    let sender = tokio::spawn(async move {
        let mut alice = alice;
        for chunk in plan.chunks(500) {
            for &i in chunk {
                alice
                    .feed(dm(&format!("m{i}"), "bob", json!({"n": i})))
                    .await;
            }
            alice.flush().await;
        }
        let mut accepted: HashMap<String, Vec<bool>> = HashMap::new();
        for _ in 0..sends {
            let a = alice.next_of("accepted").await;
            accepted
                .entry(a["id"].as_str().unwrap().to_owned())
                .or_default()
                .push(a["duplicate"].as_bool().unwrap());
        }
        (alice, accepted)
    });

    let mut last_seq = 0;
    let mut seen = HashSet::new();
    while seen.len() < MESSAGES {
        let m = bob.next_of("message").await;
        let seq = m["seq"].as_u64().unwrap();
        assert_eq!(seq, last_seq + 1, "bob's sequence has a gap or goes back");
        last_seq = seq;
        assert_eq!(m["from"], "alice");
        assert!(m["room"].is_null());
        let id = m["id"].as_str().unwrap().to_owned();
        assert_eq!(m["body"]["n"].as_u64().unwrap().to_string(), id[1..]);
        assert!(seen.insert(id.clone()), "{id} delivered twice");
        if seq % 1000 == 0 {
            bob.send(json!({"type": "ack", "seq": seq})).await;
        }
    }
    assert_eq!(last_seq, MESSAGES as u64);

    let (mut alice, accepted) = sender.await.unwrap();
    assert_eq!(accepted.len(), MESSAGES);
    for (id, flags) in &accepted {
        let i: usize = id[1..].parse().unwrap();
        let expected = if retried.contains(&i) {
            vec![false, true]
        } else {
            vec![false]
        };
        assert_eq!(flags, &expected, "accepted frames for {id}");
    }
    // Nothing more for bob: the store holds exactly the 10,000.
    bob.round_trip().await;
    alice.round_trip().await;
    assert!(bob.unclaimed("message").is_empty());
    assert_eq!(
        metric(addr, "signal_messages_accepted_total").await,
        MESSAGES as f64
    );
    assert_eq!(
        metric(addr, "signal_messages_duplicate_total").await,
        retried.len() as f64
    );
    let commits = metric(addr, "signal_store_commit_batches_total").await;
    assert!(
        commits < (MESSAGES + retried.len()) as f64,
        "sends were committed in batches"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipient_gets_everything_on_connect() {
    let server = start("offline").await;
    let (mut alice, _) = Client::connect(server.addr, "alice", 0).await;
    send_and_confirm(&mut alice, 50, "o").await;

    let (mut bob, welcome) = Client::connect(server.addr, "bob", 0).await;
    assert_eq!(welcome["last_acked"], 0);
    for i in 0..50u64 {
        let m = bob.next_of("message").await;
        assert_eq!(m["seq"], i + 1);
        assert_eq!(m["id"], format!("o{i}"));
        assert!(m["sent_at"].as_u64().unwrap() > 1_600_000_000_000);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_resumes_after_the_last_ack() {
    let server = start("resume").await;
    let (mut alice, _) = Client::connect(server.addr, "alice", 0).await;
    send_and_confirm(&mut alice, 20, "r").await;

    let (mut bob, _) = Client::connect(server.addr, "bob", 0).await;
    for seq in 1..=20u64 {
        assert_eq!(bob.next_of("message").await["seq"], seq);
    }
    bob.send(json!({"type": "ack", "seq": 10})).await;
    bob.round_trip().await; // the ack is stored before the pong
    bob.close().await;

    let (mut bob, welcome) = Client::connect(server.addr, "bob", 10).await;
    assert_eq!(welcome["last_acked"], 10);
    for seq in 11..=20u64 {
        let m = bob.next_of("message").await;
        assert_eq!(m["seq"], seq);
        assert_eq!(m["id"], format!("r{}", seq - 1));
    }
    bob.round_trip().await;
    assert!(bob.unclaimed("message").is_empty(), "nothing but the rest");
    bob.close().await;

    // Without resume_after the server resumes after the last ack itself.
    let mut bob = Client::open(
        server.addr,
        &crate::common::token_with(crate::common::SECRET, "bob"),
    )
    .await
    .unwrap();
    bob.send(json!({"type": "hello"})).await;
    bob.next_of("welcome").await;
    assert_eq!(bob.next_of("message").await["seq"], 11);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_accepted_before_a_restart_are_delivered_after() {
    let store = temp_store("restart");
    let server = start_with(store.clone(), limits()).await;
    let (mut alice, _) = Client::connect(server.addr, "alice", 0).await;
    send_and_confirm(&mut alice, 30, "s").await;
    server.shutdown().await;

    let server = start_with(store, limits()).await;
    let (mut bob, _) = Client::connect(server.addr, "bob", 0).await;
    for i in 0..30u64 {
        let m = bob.next_of("message").await;
        assert_eq!(m["seq"], i + 1);
        assert_eq!(m["id"], format!("s{i}"));
    }
    // The idempotency keys survived too.
    let (mut alice, _) = Client::connect(server.addr, "alice", 0).await;
    alice.send(dm("s3", "bob", json!(null))).await;
    assert_eq!(alice.next_of("accepted").await["duplicate"], true);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_post_messages_with_a_service_token() {
    let server = start("backend").await;
    let (mut bob, _) = Client::connect(server.addr, "bob", 0).await;
    let body = r#"{"from":"billing","to":{"user":"bob"},"id":"invoice-1","body":{"due":42}}"#;
    let token = service_token();
    let (status, resp) = http(server.addr, "POST", "/v1/messages", Some(&token), body).await;
    assert_eq!(status, 202, "{resp}");
    let resp: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(resp, json!({"accepted": "invoice-1", "duplicate": false}));
    let (status, resp) = http(server.addr, "POST", "/v1/messages", Some(&token), body).await;
    assert_eq!(status, 202);
    assert_eq!(
        serde_json::from_str::<Value>(&resp).unwrap()["duplicate"],
        true
    );

    let m = bob.next_of("message").await;
    assert_eq!(
        (m["seq"].clone(), m["from"].clone()),
        (json!(1), json!("billing"))
    );
    assert_eq!(m["body"], json!({"due": 42}));

    // A user token is no service token.
    let user = crate::common::token_with(crate::common::SECRET, "bob");
    let (status, resp) = http(server.addr, "POST", "/v1/messages", Some(&user), body).await;
    assert_eq!(status, 401, "{resp}");
    let (status, _) = http(server.addr, "POST", "/v1/messages", None, body).await;
    assert_eq!(status, 401);
    let bad = r#"{"from":"billing","to":{"room":"nobody-here"},"id":"x","body":1}"#;
    let (status, resp) = http(server.addr, "POST", "/v1/messages", Some(&token), bad).await;
    assert_eq!(status, 404, "{resp}");
    assert!(resp.contains("unknown_room"));
    assert_eq!(http(server.addr, "GET", "/health", None, "").await.0, 200);
    server.shutdown().await;
}
