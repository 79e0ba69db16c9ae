//! `cascade signal` on its cluster engine, a real Redis server (Debian's
//! `redis-server`, started by the test):
//! - the store contract holds on Redis with two nodes sharing it (sequences,
//!   idempotent retries, acknowledgements, rooms, retention, and a node learning that
//!   an inbox grew from another node's append);
//! - two `cascade signal` processes behind one Redis: alice on node A streams
//!   messages to bob on node B, presence crosses nodes, node A is killed with
//!   SIGKILL mid-stream, alice moves to node B and retries what was not
//!   acknowledged: bob gets every accepted message once, in order, and the room
//!   learns that a user of the dead node went offline.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use cascade_signal::store::{
    AppendRequest, Destination, Store, StoreError, StoreLocation, unix_ms,
};
use cascade_tests::redis::RedisServer;
use cascade_tests::signal::{
    Inbox, SignalProcess, Streamer, WAIT, Ws, accepted_until_killed, connect, dm, index_of,
    next_frame, token,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Most sends alice makes before the kill.
const MAX_SENDS: usize = 5_000;
/// Node A is killed once alice has this many `accepted` answers.
const KILL_AFTER_ACCEPTED: usize = 300;
/// Sends fed to the socket between flushes.
const BATCH: usize = 50;
/// Retries sent before their answers are read.
const RETRY_CHUNK: usize = 200;
/// Longest the whole kill scenario may take.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

fn req(sender: &str, id: &str, to: Destination) -> AppendRequest {
    AppendRequest {
        sender: sender.into(),
        client_id: id.into(),
        to,
        body: json!({"text": id}),
        sender_must_be_member: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_engine_keeps_the_store_contract() {
    let redis = RedisServer::start().unwrap();
    let location = StoreLocation::Redis(redis.url.clone());
    // Two nodes on one Redis.
    let (a, _a_done) = Store::open(&location, 60_000).await.unwrap();
    let (b, _b_done) = Store::open(&location, 60_000).await.unwrap();
    assert_eq!(a.engine(), "redis");
    let bob = || Destination::User("bob".into());
    let mut bob_on_b = b.subscribe("bob");

    let first = a.append(req("alice", "m1", bob())).await.unwrap();
    assert_eq!(first.deliveries, vec![("bob".to_owned(), 1)]);
    assert!(!first.duplicate);
    let second = b.append(req("alice", "m2", bob())).await.unwrap();
    assert_eq!(second.deliveries, vec![("bob".to_owned(), 2)]);
    let again = b.append(req("alice", "m1", bob())).await.unwrap();
    assert_eq!(again.deliveries, vec![("bob".to_owned(), 1)]);
    assert!(
        again.duplicate,
        "a retry through another node is a duplicate"
    );
    let carol = a.append(req("carol", "m1", bob())).await.unwrap();
    assert_eq!(carol.deliveries, vec![("bob".to_owned(), 3)]);

    // B learns of A's appends.
    tokio::time::timeout(WAIT, bob_on_b.wait_for(|seq| *seq >= 3))
        .await
        .expect("node B never heard that bob's inbox grew to 3")
        .unwrap();
    let all = b.read_after("bob", 0, 10).await.unwrap();
    assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(all[2].from, "carol");
    assert_eq!(all[0].body, json!({"text": "m1"}));
    assert_eq!(b.read_after("bob", 1, 1).await.unwrap()[0].id, "m2");

    assert_eq!(b.ack("bob", 2).await.unwrap(), 2);
    assert_eq!(a.ack("bob", 1).await.unwrap(), 2, "acks never move back");
    assert_eq!(a.ack("bob", 99).await.unwrap(), 3, "nor past the last seq");
    assert_eq!(b.last_acked("bob").await.unwrap(), 3);
    assert!(
        a.read_after("bob", 0, 10).await.unwrap().is_empty(),
        "acknowledged entries are removed"
    );
    let fourth = a.append(req("alice", "m3", bob())).await.unwrap();
    assert_eq!(fourth.deliveries, vec![("bob".to_owned(), 4)]);

    let room = || Destination::Room("r".into());
    assert!(matches!(
        a.append(req("alice", "x", room())).await,
        Err(StoreError::UnknownRoom(_))
    ));
    a.join("r", "alice").await.unwrap();
    b.join("r", "bob").await.unwrap();
    a.join("r", "carol").await.unwrap();
    assert_eq!(b.members("r").await.unwrap(), vec!["alice", "bob", "carol"]);
    assert_eq!(a.rooms_of("bob").await.unwrap(), vec!["r"]);
    let fanout = b.append(req("alice", "x", room())).await.unwrap();
    assert_eq!(
        fanout.deliveries,
        vec![("bob".to_owned(), 5), ("carol".to_owned(), 1)]
    );
    assert_eq!(
        a.read_after("carol", 0, 10).await.unwrap()[0]
            .room
            .as_deref(),
        Some("r")
    );
    assert!(matches!(
        a.append(req("dave", "y", room())).await,
        Err(StoreError::UnknownRoom(_))
    ));
    b.leave("r", "bob").await.unwrap();
    assert_eq!(a.members("r").await.unwrap(), vec!["alice", "carol"]);
    assert!(a.rooms_of("bob").await.unwrap().is_empty());

    // Past the retention, what is left (bob's 4 and 5, carol's 1) goes.
    let expired = a.trim(unix_ms() + 120_000).await.unwrap();
    assert_eq!(expired.messages, 3);
    assert!(b.read_after("bob", 0, 10).await.unwrap().is_empty());
    let sixth = b.append(req("alice", "m4", bob())).await.unwrap();
    assert_eq!(
        sixth.deliveries,
        vec![("bob".to_owned(), 6)],
        "sequences go on after a trim"
    );
}

/// Reads frames until one satisfies `want`; other frames are returned in order.
async fn wait_frame(ws: &mut Ws, want: impl Fn(&Value) -> bool) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + WAIT;
    let mut others = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = next_frame(ws, left)
            .await?
            .context("the connection ended")?;
        if want(&frame) {
            return Ok(others);
        }
        others.push(frame);
    }
}

async fn send_frame(ws: &mut Ws, frame: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(frame.to_string().into())).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing() {
    tokio::time::timeout(SCENARIO_LIMIT, run())
        .await
        .expect("the scenario did not finish in time")
        .unwrap();
}

async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let redis = RedisServer::start()?;
    let secret = format!("{:032x}", rand::random::<u128>());
    let mut node_a = SignalProcess::start(&redis.url, &secret)?;
    let node_b = SignalProcess::start(&redis.url, &secret)?;

    // Presence crosses nodes: carol (B) and dave (A) share a room.
    let (mut carol, _) = connect(node_b.addr, &token(&secret, "carol"), "carol", None).await?;
    send_frame(&mut carol, json!({"type": "join", "room": "r"})).await?;
    wait_frame(&mut carol, |f| f["type"] == "joined").await?;
    let (mut dave, _) = connect(node_a.addr, &token(&secret, "dave"), "dave", None).await?;
    send_frame(&mut dave, json!({"type": "join", "room": "r"})).await?;
    wait_frame(&mut dave, |f| f["type"] == "joined").await?;
    wait_frame(&mut carol, |f| {
        f["type"] == "presence" && f["user"] == "dave" && f["online"] == true
    })
    .await
    .context("carol on node B never saw dave on node A come online")?;

    // Bob on B; alice on A streams direct messages to him.
    let (mut bob, early) = connect(node_b.addr, &token(&secret, "bob"), "bob", None).await?;
    let mut inbox = Inbox::default();
    for frame in &early {
        inbox.take(frame)?;
    }
    let alice_token = token(&secret, "alice");
    let (alice, _) = connect(node_a.addr, &alice_token, "alice", None).await?;
    let (sink, mut stream) = alice.split();
    let sender = Streamer::start(sink, MAX_SENDS, BATCH);
    let (accepted, killed) = accepted_until_killed(&mut stream, KILL_AFTER_ACCEPTED, || {
        node_a.kill9()?;
        sender.stop();
        Ok(())
    })
    .await?;
    ensure!(
        killed.is_some(),
        "alice's connection ended after {} accepted, before the kill",
        accepted.len()
    );
    let sent = sender.finish().await?;
    let accepted_at_kill = accepted.len();
    // Bob, on the surviving node, already has what A accepted before it died.
    inbox
        .read(&mut bob, |inbox| accepted.iter().all(|id| inbox.has(id)))
        .await
        .context("bob on node B did not get what node A accepted")?;
    inbox.check()?;
    let before_retry = inbox.by_seq.len();

    // Alice moves to B and retries everything she was not told was accepted,
    // plus some that were.
    let accepted_set: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let retries: Vec<String> = (0..sent)
        .map(|i| format!("m{i}"))
        .filter(|id| !accepted_set.contains(id.as_str()))
        .chain(accepted.iter().step_by(10).cloned())
        .collect();
    let (mut alice, _) = connect(node_b.addr, &alice_token, "alice", None).await?;
    let mut fresh = 0;
    // In chunks, reading the answers between them, so that neither side's buffers fill.
    for chunk in retries.chunks(RETRY_CHUNK) {
        for id in chunk {
            alice.feed(dm(index_of(id))).await?;
        }
        alice.flush().await?;
        for id in chunk {
            let frame = next_frame(&mut alice, WAIT)
                .await?
                .context("alice's connection to node B ended")?;
            ensure!(
                frame["type"] == "accepted" && frame["id"] == id.as_str(),
                "retry of {id} answered {frame}"
            );
            let duplicate = frame["duplicate"].as_bool().context("no duplicate flag")?;
            if accepted_set.contains(id.as_str()) {
                ensure!(duplicate, "retry of accepted {id} not answered duplicate");
            }
            fresh += usize::from(!duplicate);
        }
    }
    inbox
        .read(&mut bob, |inbox| retries.iter().all(|id| inbox.has(id)))
        .await?;
    inbox.check()?;
    ensure!(
        inbox.by_seq.len() == before_retry + fresh,
        "bob has {} messages, expected {before_retry} + {fresh} newly stored",
        inbox.by_seq.len()
    );
    ensure!(
        inbox.by_seq.len() == sent,
        "bob has {} of the {sent} messages alice sent",
        inbox.by_seq.len()
    );

    // Node B sweeps the dead node: carol hears that dave went offline.
    let swept = Instant::now();
    let deadline = WAIT + Duration::from_secs(10);
    tokio::time::timeout(
        deadline,
        wait_frame(&mut carol, |f| {
            f["type"] == "presence" && f["user"] == "dave" && f["online"] == false
        }),
    )
    .await
    .context("carol never heard that dave (on the killed node) went offline")??;
    drop(dave);

    println!(
        "signal cluster: {sent} sent, {accepted_at_kill} accepted when node A was killed, \
         {before_retry} at bob before the retries, {} retries ({fresh} stored anew), \
         bob has all {sent} once in order; dave offline {:.1} s after the retries; {:.1} s in all",
        retries.len(),
        swept.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
