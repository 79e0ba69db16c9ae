//! Cascading between media servers on separate hosts: each server runs in its own
//! network namespace, and the namespaces reach each other only through the test
//! harness's link emulator (`cascade_tests::linkemu`), which delays every packet by
//! 20 ms each way, so 40 ms round trip between any two servers. Clients run in the
//! namespace of the server they use.
//!
//! - Chromium publishes its fake camera and microphone on M1; a second Chromium,
//!   on M2, subscribes there to M1's resource URL and decodes the video.
//! - A chain M1 → M2 → M3 delivers to a subscriber on M3.
//! - Fifty subscribers on M2 for one M1 publication cost one relay: the M1 → M2
//!   link carries one copy of each packet.
//! - With 5 % random loss (nftables) on the relay link, a subscriber on M2 that
//!   NACKs gets at least 99 % of the video back.
//! - Killing M1 moves M2's subscription to `reconnecting` within 5 s (its event
//!   stream says so), and M2 keeps serving its other rooms.
//!
//! Honours `CASCADE_DATAPLANE`. Needs root, iproute2 and `/dev/net/tun`; nftables
//! for the loss case; Chromium, Node.js and `tests/browser/node_modules` for the
//! browser case (skipped without them on a developer's machine, failed in CI).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cascade_peer::PeerRole;
use cascade_tests::cascade::{
    Arrival, Cluster, NackPolicy, ResourceEvent, ResourceEvents, VideoReceiver, numbered_video,
};
use cascade_tests::media::{UdpPeer, rtp_packet};
use cascade_tests::{
    browser_dir, browser_node_modules_available, cascade_bin, chromium_available, chromium_path,
    command_available, http_client, linkemu, random_room, require,
};
use serde_json::Value;

const SECRET: &str = "cascade-netns-users";
const CLUSTER: &str = "cascade-netns-cluster";
/// Each way, between any two servers: 40 ms round trip.
const ONE_WAY_DELAY: Duration = Duration::from_millis(20);

const AUDIO_SSRC: u32 = 0x0a0d_0001;
const VIDEO_SSRC: u32 = 0x0a0d_0002;
const PUBLISHER: PeerRole = PeerRole::Publisher {
    audio_ssrc: AUDIO_SSRC,
    video_ssrc: VIDEO_SSRC,
};

/// M1 and M2 (and M3), or `None` when this machine cannot make them (a skip
/// outside CI).
fn cluster(n: usize) -> Option<Cluster> {
    if !linkemu::require() || !require(cascade_bin().is_file(), "the cascade binary") {
        return None;
    }
    let labels = &["m1", "m2", "m3"][..n];
    Some(Cluster::start(labels, ONE_WAY_DELAY, SECRET, CLUSTER, &[]).expect("cluster starts"))
}

fn publish_path(room: &str) -> String {
    format!("/rtc/v1/rooms/{room}/publish")
}

fn subscribe_path(room: &str, resource: &str) -> String {
    format!("/rtc/v1/rooms/{room}/subscribe?resource={resource}")
}

/// Sends numbered video packets `from..to`, `per_ms` packets each millisecond on
/// average (paced in bursts of ten), each `audio_every`-th followed by an audio packet.
fn send_video(publisher: &mut UdpPeer, from: u32, to: u32, per_ms: f64, audio_every: u32) {
    let start = Instant::now();
    for index in from..to {
        publisher
            .send_rtp(&numbered_video(VIDEO_SSRC, index))
            .expect("send video");
        if audio_every > 0 && index % audio_every == 0 {
            let seq = (index / audio_every) as u16;
            publisher
                .send_rtp(&rtp_packet(AUDIO_SSRC, seq, u32::from(seq) * 960, 111, 80))
                .expect("send audio");
        }
        if index % 10 == 9 {
            let due = start + Duration::from_secs_f64(f64::from(index - from + 1) / per_ms / 1e3);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
}

/// Receives on `peer` until `count` numbered packets (from 0) are in, or
/// `wait` passes; no NACKs.
fn receive_all(mut peer: UdpPeer, count: u32, wait: Duration) -> (UdpPeer, usize) {
    let mut rx = VideoReceiver::new(&peer, None).expect("video SSRC in the answer");
    let got = rx
        .run(&mut peer, Instant::now() + wait, wait, |r| {
            r.received_below(count) == count as usize
        })
        .expect("receive");
    (peer, got.received_below(count))
}

/// The room listing of server `i`, read from its namespace.
fn room_listing(c: &Cluster, i: usize, room: &str, token: &str) -> Value {
    let url = c.servers[i].url(&format!("/rtc/v1/rooms/{room}"));
    c.hosts[i].block_on(|| async {
        http_client()
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .expect("room listing")
            .json()
            .await
            .expect("room listing is JSON")
    })
}

#[test]
fn chain_m1_m2_m3_delivers() {
    let Some(c) = cluster(3) else { return };
    let room = random_room("chain");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let mut publisher = c
        .connect(0, &publish_path(&room), &token, PUBLISHER)
        .expect("publisher connects to M1");
    let on_m2 = c
        .connect(
            1,
            &subscribe_path(&room, &publisher.resource),
            &token,
            PeerRole::Subscriber,
        )
        .expect("subscriber on M2 for M1's resource");
    // M3 subscribes to M2's copy, which M2 lists with where it comes from.
    let listing = room_listing(&c, 1, &room, &token);
    let relayed = listing["publications"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["relayed_from"] == publisher.resource.as_str())
        .unwrap_or_else(|| panic!("M2 lists the relayed publication: {listing}"))["resource"]
        .as_str()
        .expect("resource URL")
        .to_owned();
    assert!(relayed.starts_with(&c.servers[1].http_base), "{relayed}");
    let on_m3 = c
        .connect(
            2,
            &subscribe_path(&room, &relayed),
            &token,
            PeerRole::Subscriber,
        )
        .expect("subscriber on M3 for M2's copy");
    assert_eq!(c.metric(0, "cascade_relays"), Some(1.0), "M1 → M2");
    assert_eq!(c.metric(1, "cascade_relays"), Some(1.0), "M2 → M3");

    let (m1, m2, m3) = (c.ip(0), c.ip(1), c.ip(2));
    let before = [
        c.links.stats(m1, m2),
        c.links.stats(m2, m3),
        c.links.stats(m1, m3),
    ];
    const COUNT: u32 = 300;
    let readers = [on_m2, on_m3]
        .map(|peer| std::thread::spawn(move || receive_all(peer, COUNT, Duration::from_secs(10))));
    send_video(&mut publisher, 0, COUNT, 1.0, 0);
    let got: Vec<usize> = readers.map(|r| r.join().unwrap().1).into();
    let [m1m2, m2m3, m1m3] = [
        c.links.stats(m1, m2) - before[0],
        c.links.stats(m2, m3) - before[1],
        c.links.stats(m1, m3) - before[2],
    ];
    eprintln!(
        "chain: M2 got {}/{COUNT}, M3 got {}/{COUNT}; UDP packets M1→M2 {}, M2→M3 {}, M1→M3 {}",
        got[0], got[1], m1m2.udp_packets, m2m3.udp_packets, m1m3.udp_packets
    );
    assert_eq!(
        got[0], COUNT as usize,
        "the subscriber on M2 got every packet"
    );
    assert_eq!(got[1], COUNT as usize, "M1 → M2 → M3 delivers every packet");
    assert!(m2m3.udp_packets >= u64::from(COUNT), "{m2m3:?}");
    assert_eq!(m1m3.packets, 0, "M3 gets nothing from M1 directly");
}

#[test]
fn fifty_subscribers_on_the_edge_cost_one_relay() {
    const SUBSCRIBERS: usize = 50;
    const VIDEO: u32 = 300;
    const AUDIO_EVERY: u32 = 3;
    let Some(c) = cluster(2) else { return };
    let room = random_room("fifty");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let mut publisher = c
        .connect(0, &publish_path(&room), &token, PUBLISHER)
        .expect("publisher connects to M1");
    let path = subscribe_path(&room, &publisher.resource);
    // Five at a time, so the edge also meets subscribers that arrive together.
    let subscribers: Vec<UdpPeer> = std::thread::scope(|s| {
        let batches: Vec<_> = (0..5)
            .map(|_| {
                s.spawn(|| {
                    (0..SUBSCRIBERS / 5)
                        .map(|_| {
                            c.connect(1, &path, &token, PeerRole::Subscriber)
                                .expect("subscriber on M2 for M1's resource")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        batches
            .into_iter()
            .flat_map(|b| b.join().unwrap())
            .collect()
    });
    assert_eq!(subscribers.len(), SUBSCRIBERS);
    assert_eq!(
        c.metric(0, "cascade_relays"),
        Some(1.0),
        "one relay from M1 for {SUBSCRIBERS} subscribers on M2"
    );

    let (m1, m2) = (c.ip(0), c.ip(1));
    let before = c.links.stats(m1, m2);
    let relayed_before = c.metric(0, "cascade_relayed_total").unwrap_or(0.0);
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|p| std::thread::spawn(move || receive_all(p, VIDEO, Duration::from_secs(15))))
        .collect();
    send_video(&mut publisher, 0, VIDEO, 1.0, AUDIO_EVERY);
    let got: Vec<usize> = readers.into_iter().map(|r| r.join().unwrap().1).collect();
    let link = c.links.stats(m1, m2) - before;
    let relayed = c.metric(0, "cascade_relayed_total").unwrap_or(0.0) - relayed_before;
    let sent = u64::from(VIDEO + VIDEO.div_ceil(AUDIO_EVERY));
    eprintln!(
        "fan-out: {sent} packets published; M1→M2 link carried {} UDP packets ({} bytes), \
         {} IP packets in all; M1 relayed {relayed} in userspace; \
         {SUBSCRIBERS} subscribers got between {} and {} of {VIDEO} video packets; \
         M2 reports {:?} subscriptions and {:?} publications",
        link.udp_packets,
        link.udp_bytes,
        link.packets,
        got.iter().min().unwrap(),
        got.iter().max().unwrap(),
        c.metric(1, "cascade_subscriptions"),
        c.metric(1, "cascade_publications"),
    );
    assert!(
        got.iter().all(|&n| n == VIDEO as usize),
        "every subscriber got every video packet: {got:?}"
    );
    // One copy of each published packet, plus a little RTCP: not fifty copies.
    assert!(
        link.udp_packets >= sent && link.udp_packets <= sent + sent / 20 + 20,
        "the M1 → M2 link carried {} UDP packets for {sent} published",
        link.udp_packets
    );
    assert_eq!(c.metric(0, "cascade_relays"), Some(1.0));
}

#[test]
fn nacks_recover_loss_on_the_relay_link() {
    const VIDEO: u32 = 3000;
    /// Packets after the counted ones, so a loss at the very end shows as a gap.
    const TRAILER: u32 = 300;
    const LOSS_PERCENT: u8 = 5;
    if !require(command_available("nft"), "nft (nftables)") {
        return;
    }
    let Some(c) = cluster(2) else { return };
    let room = random_room("loss");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let mut publisher = c
        .connect(0, &publish_path(&room), &token, PUBLISHER)
        .expect("publisher connects to M1");
    let mut subscriber = c
        .connect(
            1,
            &subscribe_path(&room, &publisher.resource),
            &token,
            PeerRole::Subscriber,
        )
        .expect("subscriber on M2 for M1's resource");
    // Loss on the relay link only, as it enters M2: the subscriber is local.
    c.hosts[1]
        .add_ingress_loss(c.link_device(), LOSS_PERCENT)
        .expect("nftables loss");
    let (m1, m2) = (c.ip(0), c.ip(1));
    let before = c.links.stats(m1, m2);
    let retransmitted_before = [
        c.metric(0, "cascade_retransmitted_total").unwrap_or(0.0),
        c.metric(1, "cascade_retransmitted_total").unwrap_or(0.0),
    ];
    let done = AtomicBool::new(false);
    let reception = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut rx = VideoReceiver::new(&subscriber, Some(NackPolicy::default()))
                .expect("video SSRC in the answer");
            // Until everything counted is in, or 3 s after the publisher stops.
            let mut stop_at = None::<Instant>;
            loop {
                let deadline = match stop_at {
                    Some(t) => t,
                    None => Instant::now() + Duration::from_millis(100),
                };
                let r = rx
                    .run(&mut subscriber, deadline, Duration::from_secs(30), |r| {
                        r.received_below(VIDEO) == VIDEO as usize
                    })
                    .expect("receive");
                if r.received_below(VIDEO) == VIDEO as usize || stop_at.is_some() {
                    return r;
                }
                if done.load(Ordering::Relaxed) {
                    stop_at = Some(Instant::now() + Duration::from_secs(3));
                }
            }
        });
        // 1,000 packets/s (about 7 Mbit/s).
        send_video(&mut publisher, 0, VIDEO + TRAILER, 1.0, 0);
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    let link = c.links.stats(m1, m2) - before;
    let got = reception.received_below(VIDEO);
    let recovered = reception.recovered_below(VIDEO);
    let rtx = reception
        .packets
        .range(..VIDEO)
        .filter(|(_, a)| **a == Arrival::Rtx)
        .count();
    let share = got as f64 * 100.0 / f64::from(VIDEO);
    let retransmitted = [
        c.metric(0, "cascade_retransmitted_total").unwrap_or(0.0) - retransmitted_before[0],
        c.metric(1, "cascade_retransmitted_total").unwrap_or(0.0) - retransmitted_before[1],
    ];
    eprintln!(
        "loss: {got}/{VIDEO} video packets ({share:.2} %) reached the subscriber on M2 with \
         {LOSS_PERCENT} % loss on the relay link; {recovered} of them after a NACK ({rtx} as RTX), \
         {} first time; {} sequence numbers NACKed in {} NACKs; {} duplicates; \
         the link delivered {} UDP packets to M2's device; retransmitted: M1 {}, M2 {}",
        got - recovered,
        reception.nacked,
        reception.nack_packets,
        reception.duplicates,
        link.udp_packets,
        retransmitted[0],
        retransmitted[1],
    );
    assert!(
        got * 100 >= VIDEO as usize * 99,
        "{got} of {VIDEO} video packets ({share:.2} %) reached the subscriber; wanted ≥ 99 %"
    );
}

#[test]
fn origin_failure_reaches_edge_subscribers() {
    /// From the origin's death to the edge's `reconnecting` event, at most.
    const DETECTION: Duration = Duration::from_secs(5);
    let Some(mut c) = cluster(2) else { return };
    let room = random_room("origin");
    let local_room = random_room("local");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let local_token = c
        .token(&local_room, "carol", &["publish", "subscribe"])
        .unwrap();
    let mut publisher = c
        .connect(0, &publish_path(&room), &token, PUBLISHER)
        .expect("publisher connects to M1");
    let mut edge_sub = c
        .connect(
            1,
            &subscribe_path(&room, &publisher.resource),
            &token,
            PeerRole::Subscriber,
        )
        .expect("subscriber on M2 for M1's resource");
    // Another room, all on M2.
    let mut local_pub = c
        .connect(1, &publish_path(&local_room), &local_token, PUBLISHER)
        .expect("local publisher on M2");
    let local_sub = c
        .connect(
            1,
            &format!("/rtc/v1/rooms/{local_room}/subscribe"),
            &local_token,
            PeerRole::Subscriber,
        )
        .expect("local subscriber on M2");
    let edge_resource = edge_sub.resource.clone();

    let stop_media = AtomicBool::new(false);
    let (events_tx, events_rx) = mpsc::channel::<anyhow::Result<ResourceEvent>>();
    std::thread::scope(|s| {
        // The origin's publisher sends until the end, as a live source would.
        s.spawn(|| {
            let mut index = 0;
            while !stop_media.load(Ordering::Relaxed) {
                let _ = publisher.send_rtp(&numbered_video(VIDEO_SSRC, index));
                index += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // The edge subscription's event stream, read from M2's namespace.
        let m2 = &c.hosts[1];
        let url = edge_resource.clone();
        let stop = &stop_media;
        s.spawn(move || {
            m2.block_on(|| async move {
                let mut events = match ResourceEvents::open(&url).await {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = events_tx.send(Err(e));
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    match events.next(Duration::from_millis(200)).await {
                        Ok(Some(event)) => {
                            if events_tx.send(Ok(event)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = events_tx.send(Err(e));
                            return;
                        }
                    }
                }
            })
        });
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Media flows through the relay before anything breaks.
            let mut rx = VideoReceiver::new(&edge_sub, None).unwrap();
            let first = rx
                .run(
                    &mut edge_sub,
                    Instant::now() + Duration::from_secs(5),
                    Duration::from_secs(5),
                    |r| r.packets.len() >= 20,
                )
                .unwrap();
            assert!(first.packets.len() >= 20, "media through the relay first");
            let first_event = events_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("a first event within 5 s of opening the stream")
                .expect("GET {resource}/events");
            assert_eq!(first_event.event, "state", "{first_event:?}");
            assert_eq!(first_event.data["state"], "live", "{first_event:?}");

            c.servers[0].child.kill().expect("kill M1");
            let killed = Instant::now();
            let _ = c.servers[0].child.wait();
            let change = loop {
                let left = (killed + DETECTION * 2).saturating_duration_since(Instant::now());
                match events_rx.recv_timeout(left) {
                    Ok(Ok(e)) if e.data["state"] == "live" => continue,
                    Ok(Ok(e)) => break Some(e),
                    Ok(Err(e)) => panic!("the event stream failed: {e:#}"),
                    Err(_) => break None,
                }
            };
            let change = change.unwrap_or_else(|| {
                panic!(
                    "no state change on M2's subscription within {:?} of M1's death",
                    DETECTION * 2
                )
            });
            let after = change.at.saturating_duration_since(killed);
            eprintln!(
                "origin failure: M2's subscription said {} {after:?} after M1 was killed: {}",
                change.event, change.data
            );
            assert_eq!(change.event, "state", "{change:?}");
            assert_eq!(change.data["state"], "reconnecting", "{change:?}");
            assert!(after <= DETECTION, "detected after {after:?}");

            // The resource says so too.
            let state: Value = c.hosts[1].block_on(|| async {
                let resp = http_client()
                    .get(&edge_resource)
                    .send()
                    .await
                    .expect("GET the resource");
                assert_eq!(resp.status(), 200, "GET {edge_resource}");
                resp.json().await.expect("resource JSON")
            });
            assert_eq!(state["kind"], "subscription", "{state}");
            assert_eq!(state["room"], room.as_str(), "{state}");
            assert!(
                state["state"] == "reconnecting" || state["state"] == "ended",
                "{state}"
            );
        }));
        stop_media.store(true, Ordering::Relaxed);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });

    // M2 still serves its own room.
    const COUNT: u32 = 200;
    let reader = std::thread::spawn(move || receive_all(local_sub, COUNT, Duration::from_secs(8)));
    send_video(&mut local_pub, 0, COUNT, 1.0, 0);
    let (_, got) = reader.join().unwrap();
    assert_eq!(got, COUNT as usize, "M2's local room after M1's death");
    assert!(c.servers[1].is_running(), "M2 is still running");
}

/// A Node.js browser driver (`tests/browser/cascade.mjs`) in a namespace, stopped
/// (SIGTERM, then SIGKILL) when dropped.
struct BrowserScript {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl BrowserScript {
    fn start(c: &Cluster, host: usize, args: &[String]) -> anyhow::Result<Self> {
        let script = browser_dir().join("cascade.mjs");
        let mut cmd = c.hosts[host].command("node");
        cmd.arg(&script)
            .args(args)
            .current_dir(browser_dir())
            .env("CHROMIUM_PATH", chromium_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // `ip netns exec` execs node in place: should this process die, so does node
        // (and Playwright then closes Chromium).
        // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("node {}", script.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("stdout")?;
        let stderr_pipe = child.stderr.take().context("stderr")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Ok(BrowserScript {
            child,
            stdin,
            lines,
            stderr,
        })
    }

    /// The next JSON line whose `event` is `event`, within `timeout`.
    fn wait_for(&self, event: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).with_context(|| {
                format!(
                    "no {event:?} line from the browser script within {timeout:?}; stderr:\n{}",
                    self.stderr()
                )
            })?;
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["event"] == event
            {
                return Ok(v);
            }
        }
    }

    /// Closes stdin: the publisher's signal to stop.
    fn close_stdin(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for BrowserScript {
    fn drop(&mut self) {
        self.close_stdin();
        if matches!(self.child.try_wait(), Ok(None))
            && let Ok(pid) = libc::pid_t::try_from(self.child.id())
        {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn chromium_on_m1_plays_on_m2() {
    /// The subscriber's goal: more than this many frames decoded...
    const MIN_FRAMES: u64 = 30;
    /// ...within this long of subscribing.
    const DEADLINE: Duration = Duration::from_secs(15);
    if !require(
        chromium_available(),
        &format!("Chromium at {}", chromium_path().display()),
    ) || !require(command_available("node"), "node (Node.js)")
        || !require(
            browser_node_modules_available(),
            "tests/browser/node_modules (run `npm ci` in tests/browser)",
        )
    {
        return;
    }
    let Some(c) = cluster(2) else { return };
    let room = random_room("browser");
    let token = c.token(&room, "alice", &["publish", "subscribe"]).unwrap();
    let common = |base: &str| {
        vec![
            "--base".to_owned(),
            base.to_owned(),
            "--room".into(),
            room.clone(),
            "--token".into(),
            token.clone(),
            "--timeout-ms".into(),
            "60000".into(),
        ]
    };
    let mut args = common(&c.servers[0].http_base);
    args.extend(["--role".into(), "publish".into()]);
    let mut publisher = BrowserScript::start(&c, 0, &args).expect("publisher script starts");
    let published = publisher
        .wait_for("published", Duration::from_secs(40))
        .expect("Chromium publishes on M1");
    let resource = published["resource"].as_str().expect("resource").to_owned();
    assert!(resource.starts_with(&c.servers[0].http_base), "{resource}");

    let (m1, m2) = (c.ip(0), c.ip(1));
    let before = c.links.stats(m1, m2);
    let mut args = common(&c.servers[1].http_base);
    args.extend([
        "--role".into(),
        "subscribe".into(),
        "--resource".into(),
        resource.clone(),
        "--min-frames".into(),
        MIN_FRAMES.to_string(),
        "--deadline-ms".into(),
        DEADLINE.as_millis().to_string(),
    ]);
    let subscriber = BrowserScript::start(&c, 1, &args).expect("subscriber script starts");
    let report = subscriber
        .wait_for("report", Duration::from_secs(70))
        .expect("the subscriber's report");
    let relays = c.metric(0, "cascade_relays");
    let link = c.links.stats(m1, m2) - before;
    publisher.close_stdin();
    let pub_report = publisher
        .wait_for("report", Duration::from_secs(20))
        .unwrap_or_else(|e| Value::String(format!("{e:#}")));
    let context = format!(
        "subscriber on M2: {}\nstderr:\n{}\npublisher on M1: {pub_report}\nstderr:\n{}",
        serde_json::to_string_pretty(&report).unwrap_or_default(),
        subscriber.stderr(),
        publisher.stderr()
    );
    let goal = report["goal_reached_ms"].as_u64();
    let stats = &report["final_stats"]["video"];
    eprintln!(
        "browser: M2's subscriber decoded {} frames ({}x{}) {goal:?} ms after subscribing \
         (first frame at {} ms); M1→M2 link carried {} UDP packets ({} bytes)",
        stats["framesDecoded"],
        stats["frameWidth"],
        stats["frameHeight"],
        report["time_to_first_frame_ms"],
        link.udp_packets,
        link.udp_bytes
    );
    assert_eq!(report["ok"], true, "{context}");
    let goal = goal.unwrap_or_else(|| panic!("never more than {MIN_FRAMES} frames\n{context}"));
    assert!(
        Duration::from_millis(goal) <= DEADLINE,
        "{MIN_FRAMES} frames only after {goal} ms\n{context}"
    );
    assert!(
        stats["framesDecoded"].as_u64().unwrap_or(0) > MIN_FRAMES,
        "{context}"
    );
    assert_eq!(relays, Some(1.0), "one relay M1 → M2\n{context}");
    assert_eq!(
        pub_report["ok"], true,
        "the publisher stopped cleanly\n{context}"
    );
    assert!(
        link.udp_packets > MIN_FRAMES,
        "media crossed the link: {link:?}"
    );
}
