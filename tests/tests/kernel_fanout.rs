//! The cascade fan-out across real links: an origin server and a publisher and two
//! cascade peers, each in its own network namespace, on one bridged segment. The
//! peers open relays on the publisher; every SRTP/SRTCP packet the publisher sends
//! must reach both of them, byte for byte, readable with the keys of the relay
//! answer. With `--ebpf on` the TC program clones the packets in the kernel (the
//! userspace relay counter stays 0); with `--ebpf off` userspace copies them. A
//! third case has the kernel refuse the
//! second peer's fan-out, whose next hop it cannot resolve yet: userspace then
//! carries both peers, each packet exactly once.
//!
//! Needs root and iproute2 (skipped without, failed in CI); the eBPF case also
//! needs a kernel and build that can load the programs.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use cascade::unix_now;
use cascade_core::token::{TokenSecret, mint_cluster};
use cascade_dataplane::srtp::SrtpContext;
use cascade_peer::PeerRole;
use cascade_tests::media::{UdpPeer, connect_from, relay_keys, rtp_packet};
use cascade_tests::netns::{self, Bridge, Netns, grow_receive_buffer};
use cascade_tests::{ServerProcess, cascade_bin, http_client, random_room, require};
use serde_json::{Value, json};

const CLUSTER: &str = "kernel-fanout-cluster-key";
const ORIGIN_IP: &str = "10.77.0.1";
const PUBLISHER_IP: &str = "10.77.0.2";
const PEER_IPS: [&str; 2] = ["10.77.0.3", "10.77.0.4"];
/// A second address of peer B that nothing is sent from before its relay opens,
/// so the origin has no neighbour entry for it.
const UNHEARD_IP: &str = "10.77.0.5";
/// The origin's interface on the segment, where the eBPF programs attach.
const ORIGIN_IF: &str = "eth0";

const VIDEO_SSRC: u32 = 0x5eed_0052;
const AUDIO_SSRC: u32 = 0x5eed_0051;
const RTP_PACKETS: u16 = 1000;
const RTCP_PACKETS: u32 = 20;
/// How long the peers wait for the last packet.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The namespaces: a switch (bridge) and four hosts plugged into it. Dropped
/// after the server (declared before it), which deletes everything.
struct Lan {
    origin: Netns,
    publisher: Netns,
    peers: [Netns; 2],
    _switch: Netns,
}

impl Lan {
    fn new() -> Self {
        let switch = Netns::new("switch").expect("switch namespace");
        let origin = Netns::new("origin").expect("origin namespace");
        let publisher = Netns::new("pub").expect("publisher namespace");
        let peers = [
            Netns::new("peerA").expect("peer A namespace"),
            Netns::new("peerB").expect("peer B namespace"),
        ];
        let mut bridge: Bridge<'_> = switch.bridge("br0").expect("bridge");
        bridge
            .connect(&origin, ORIGIN_IF, &format!("{ORIGIN_IP}/24"))
            .expect("origin link");
        bridge
            .connect(&publisher, "eth0", &format!("{PUBLISHER_IP}/24"))
            .expect("publisher link");
        for (ns, ip) in peers.iter().zip(PEER_IPS) {
            bridge
                .connect(ns, "eth0", &format!("{ip}/24"))
                .expect("peer link");
        }
        drop(bridge);
        Lan {
            origin,
            publisher,
            peers,
            _switch: switch,
        }
    }
}

fn cluster_token() -> String {
    mint_cluster(&TokenSecret::parse(CLUSTER), "edge", unix_now(), 60).expect("cluster token")
}

/// A cascade peer: its socket, in its namespace, and the relay it opened.
struct Edge {
    socket: UdpSocket,
    relay: String,
    keys: SrtpContext,
    rtcp_keys: SrtpContext,
}

/// `POST {resource}/relay` from inside `ns`, for `socket`'s address.
fn open_relay(ns: &Netns, resource: &str, socket: UdpSocket) -> Edge {
    let relay_addr = socket.local_addr().unwrap();
    let url = format!("{resource}/relay");
    let (status, body) = ns.block_on(|| async {
        let resp = http_client()
            .post(&url)
            .bearer_auth(cluster_token())
            .json(&json!({ "relay_addr": relay_addr }))
            .send()
            .await
            .expect("relay request");
        let status = resp.status();
        (status, resp.text().await.expect("relay answer"))
    });
    assert_eq!(status, 201, "relay for {relay_addr}: {body}");
    let answer: Value = serde_json::from_str(&body).expect("relay answer is JSON");
    let keys = relay_keys(&answer).expect("relay keys");
    let tracks = answer["tracks"].as_array().expect("tracks");
    assert!(
        tracks.iter().any(|t| t["ssrc"] == VIDEO_SSRC),
        "the video track is relayed: {answer}"
    );
    Edge {
        socket,
        relay: answer["relay"].as_str().expect("relay URL").to_owned(),
        keys: SrtpContext::new(&keys).unwrap(),
        rtcp_keys: SrtpContext::new(&keys).unwrap(),
    }
}

/// What the publisher sent, protected, by kind and sequence number.
#[derive(Default)]
struct Sent {
    rtp: Vec<Vec<u8>>,
    rtcp: Vec<Vec<u8>>,
}

/// A sender report of `ssrc`, `n` for the timestamps.
fn sender_report(ssrc: u32, n: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&(0x1000_0000 + n).to_be_bytes()); // NTP seconds
    p.extend_from_slice(&0u32.to_be_bytes()); // NTP fraction
    p.extend_from_slice(&(n * 3000).to_be_bytes()); // RTP timestamp
    p.extend_from_slice(&(n * 50).to_be_bytes()); // packet count
    p.extend_from_slice(&(n * 50 * 900).to_be_bytes()); // octet count
    p
}

/// Sends the video and a few sender reports, paced like a few Mbit/s of video.
fn publish(publisher: &mut UdpPeer) -> Sent {
    let mut sent = Sent::default();
    let mut buf = vec![0u8; 2048];
    let every = u32::from(RTP_PACKETS) / RTCP_PACKETS;
    for seq in 0..RTP_PACKETS {
        let plain = rtp_packet(VIDEO_SSRC, seq, u32::from(seq) * 3000, 96, 900);
        buf[..plain.len()].copy_from_slice(&plain);
        let n = publisher.tx.protect_rtp(&mut buf, plain.len()).unwrap();
        publisher
            .socket
            .send_to(&buf[..n], publisher.server)
            .unwrap();
        sent.rtp.push(buf[..n].to_vec());
        if u32::from(seq) % every == every - 1 {
            let plain = sender_report(VIDEO_SSRC, u32::from(seq) / every);
            buf[..plain.len()].copy_from_slice(&plain);
            let n = publisher.tx.protect_rtcp(&mut buf, plain.len()).unwrap();
            publisher
                .socket
                .send_to(&buf[..n], publisher.server)
                .unwrap();
            sent.rtcp.push(buf[..n].to_vec());
        }
        if seq % 20 == 19 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    sent
}

/// What one peer received: each datagram as it arrived, and where from.
struct Received {
    rtp: HashMap<u16, Vec<Vec<u8>>>,
    rtcp: Vec<Vec<u8>>,
    from: Vec<SocketAddr>,
}

/// Reads `socket` until every expected packet is in or [`RECEIVE_TIMEOUT`].
fn receive(socket: &UdpSocket) -> Received {
    let mut got = Received {
        rtp: HashMap::new(),
        rtcp: Vec::new(),
        from: Vec::new(),
    };
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + RECEIVE_TIMEOUT;
    // Stop once everything is in and a short while brings no duplicate.
    let mut complete_at: Option<Instant> = None;
    while Instant::now() < deadline {
        if complete_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) {
            break;
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let pkt = buf[..n].to_vec();
        if !got.from.contains(&from) {
            got.from.push(from);
        }
        // RFC 5761: RTCP packet types 192-223 sit where RTP's marker and PT are.
        if n >= 2 && (192..=223).contains(&pkt[1]) {
            got.rtcp.push(pkt);
        } else if n >= 12 {
            let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
            got.rtp.entry(seq).or_default().push(pkt);
        }
        if complete_at.is_none()
            && got.rtp.len() == usize::from(RTP_PACKETS)
            && got.rtcp.len() >= RTCP_PACKETS as usize
        {
            complete_at = Some(Instant::now());
        }
    }
    got
}

/// Every packet exactly once, unchanged, from the origin's media port, and
/// readable with the relay's keys.
fn check(name: &str, edge: &mut Edge, got: &Received, sent: &Sent, origin_media: SocketAddr) {
    assert_eq!(
        got.from,
        vec![origin_media],
        "{name}: relayed from the origin's media port only"
    );
    let missing: Vec<u16> = (0..RTP_PACKETS)
        .filter(|s| !got.rtp.contains_key(s))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: {} of {RTP_PACKETS} RTP packets missing (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let dups = got.rtp.values().filter(|v| v.len() > 1).count();
    assert_eq!(dups, 0, "{name}: {dups} RTP packets arrived more than once");
    for seq in 0..RTP_PACKETS {
        let pkt = &got.rtp[&seq][0];
        assert_eq!(
            pkt,
            &sent.rtp[usize::from(seq)],
            "{name}: RTP {seq} differs from what the publisher sent"
        );
        let mut plain = pkt.clone();
        let len = edge
            .keys
            .unprotect_rtp(&mut plain)
            .unwrap_or_else(|e| panic!("{name}: RTP {seq} unreadable with the relay keys: {e}"));
        let h = cascade_dataplane::rtp::parse(&plain[..len]).unwrap();
        assert_eq!((h.ssrc, h.sequence), (VIDEO_SSRC, seq), "{name}");
        assert_eq!(
            &plain[..len],
            &rtp_packet(VIDEO_SSRC, seq, u32::from(seq) * 3000, 96, 900)[..],
            "{name}: RTP {seq} payload"
        );
    }
    assert_eq!(
        got.rtcp, sent.rtcp,
        "{name}: the sender reports, each once, unchanged and in order"
    );
    for (i, pkt) in got.rtcp.iter().enumerate() {
        let mut plain = pkt.clone();
        let len = edge
            .rtcp_keys
            .unprotect_rtcp(&mut plain)
            .unwrap_or_else(|e| panic!("{name}: SRTCP {i} unreadable with the relay keys: {e}"));
        assert_eq!(&plain[..len], &sender_report(VIDEO_SSRC, i as u32)[..]);
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Case {
    /// `--ebpf on`: the kernel clones to both peers.
    Kernel,
    /// `--ebpf off`: userspace copies to both peers.
    Userspace,
    /// `--ebpf on`, and peer B relays to an address the origin has never heard
    /// from: the kernel cannot resolve its next hop when the relay opens. Whatever
    /// path carries them, each peer must still get every packet exactly once.
    KernelUnresolvedPeer,
}

fn fan_out(case: Case) {
    if !netns::require() || !require(cascade_bin().is_file(), "the cascade binary") {
        return;
    }
    if case != Case::Userspace {
        // The programs use no CO-RE: `--ebpf on` runs without BTF.
        let usable = cascade_ebpf::probe();
        if !require(
            matches!(usable, Ok(()) | Err(cascade_ebpf::Unavailable::NoBtf)),
            &format!("a usable eBPF fast path ({usable:?})"),
        ) {
            return;
        }
    }
    let lan = Lan::new();
    let media = format!("{ORIGIN_IP}:0");
    let ebpf = match case {
        Case::Kernel | Case::KernelUnresolvedPeer => "on",
        Case::Userspace => "off",
    };
    let server: ServerProcess = lan
        .origin
        .spawn_server(&[
            "--http-listen",
            &media,
            "--media-listen",
            &media,
            "--public-ip",
            ORIGIN_IP,
            "--cluster-secret",
            CLUSTER,
            "--cluster-insecure-http",
            "--ebpf",
            ebpf,
            "--media-interface",
            ORIGIN_IF,
        ])
        .expect("origin server starts");
    let base = server.http_base.clone();
    let room = random_room("fanout");
    let token = server.token(&room, "alice", &["publish"]).unwrap();

    let publish_path = format!("/rtc/v1/rooms/{room}/publish");
    let mut publisher = lan
        .publisher
        .block_on(|| {
            connect_from(
                &base,
                format!("{PUBLISHER_IP}:0").parse().unwrap(),
                &publish_path,
                &token,
                PeerRole::Publisher {
                    audio_ssrc: AUDIO_SSRC,
                    video_ssrc: VIDEO_SSRC,
                },
            )
        })
        .expect("publisher connects over the segment");

    // Each peer opens its relay from its own namespace; the HTTP exchange also
    // teaches the origin the peer's link-layer address, which the kernel
    // fan-out needs when it is installed.
    let mut edges: Vec<Edge> = lan
        .peers
        .iter()
        .zip(PEER_IPS)
        .map(|(ns, mut ip)| {
            if case == Case::KernelUnresolvedPeer && ip == PEER_IPS[1] {
                ns.ip(["addr", "add", &format!("{UNHEARD_IP}/24"), "dev", "eth0"])
                    .expect("second address");
                ip = UNHEARD_IP;
            }
            let socket = ns
                .udp_socket(format!("{ip}:0").parse().unwrap())
                .expect("peer socket");
            grow_receive_buffer(&socket, 8 << 20).unwrap();
            open_relay(ns, &publisher.resource, socket)
        })
        .collect();
    assert_eq!(lan.origin.metric(&base, "cascade_relays"), Some(2.0));
    let map_failures = || {
        lan.origin.metric(
            &base,
            "cascade_ebpf_packets{counter=\"map_update_failures\"}",
        )
    };
    if case == Case::Kernel {
        assert_eq!(
            map_failures(),
            Some(0.0),
            "the fan-out was installed in the kernel; stderr:\n{}",
            server.stderr_tail()
        );
    }
    if case == Case::KernelUnresolvedPeer {
        let failures = map_failures().expect("the map_update_failures counter");
        assert!(
            failures >= 1.0,
            "the kernel fan-out to {UNHEARD_IP} was refused ({failures} map update failures)"
        );
    }
    // The relay reaches the data-plane workers through their command queues.
    std::thread::sleep(Duration::from_millis(200));

    let (sent, got) = std::thread::scope(|scope| {
        let receivers: Vec<_> = edges
            .iter()
            .map(|edge| {
                let socket = &edge.socket;
                scope.spawn(move || receive(socket))
            })
            .collect();
        let sent = publish(&mut publisher);
        let got: Vec<Received> = receivers
            .into_iter()
            .map(|r| r.join().expect("receiver"))
            .collect();
        (sent, got)
    });
    for ((edge, got), name) in edges.iter_mut().zip(&got).zip(["peer A", "peer B"]) {
        check(name, edge, got, &sent, server.media_addr);
    }

    let metrics = lan.origin.metrics_text(&base).expect("metrics");
    for line in metrics.lines().filter(|l| {
        l.starts_with("cascade_relayed_total")
            || l.starts_with("cascade_ebpf_packets{counter=\"fanout")
            || l.starts_with("cascade_ebpf_packets{counter=\"map_update")
    }) {
        eprintln!("{line}");
    }
    let metric = |name: &str| cascade_tests::metric_in(&metrics, name);
    let required = |name: &str| cascade_tests::metric_required(&metrics, name);
    let relayed = required("cascade_relayed_total");
    let copies = 2.0 * f64::from(u32::from(RTP_PACKETS) + RTCP_PACKETS);
    match case {
        Case::Kernel => {
            assert_eq!(relayed, 0.0, "userspace copied packets the kernel cloned");
            let clones = required("cascade_ebpf_packets{counter=\"fanout_clones\"}");
            assert!(clones >= copies, "fanout_clones {clones} < {copies}");
            assert_eq!(
                metric("cascade_ebpf_packets{counter=\"fanout_clone_errors\"}"),
                Some(0.0)
            );
            // No local subscriber and no feedback negotiated: the originals stop in
            // the kernel; userspace never sees them.
            let sent = f64::from(u32::from(RTP_PACKETS) + RTCP_PACKETS);
            let consumed = required("cascade_ebpf_packets{counter=\"fanout_consumed\"}");
            assert!(consumed >= sent, "fanout_consumed {consumed} < {sent}");
            assert_eq!(
                metric("cascade_ebpf_packets{counter=\"fanout_to_userspace\"}"),
                Some(0.0)
            );
        }
        Case::Userspace => {
            assert!(
                relayed >= copies,
                "cascade_relayed_total {relayed} < {copies}"
            );
            assert_eq!(
                metric("cascade_ebpf_packets{counter=\"fanout_clones\"}"),
                None,
                "no eBPF program with --ebpf off"
            );
        }
        Case::KernelUnresolvedPeer => {
            let clones = required("cascade_ebpf_packets{counter=\"fanout_clones\"}");
            assert!(
                clones + relayed >= copies,
                "fanout_clones {clones} + cascade_relayed_total {relayed} < {copies}"
            );
        }
    }

    if case == Case::KernelUnresolvedPeer {
        // Userspace's copies made the kernel resolve the peer: within a retry the
        // kernel takes its fan-out over, and userspace stops copying.
        std::thread::sleep(Duration::from_millis(1500));
        let counts = || {
            let text = lan.origin.metrics_text(&base).expect("metrics");
            let m = |name: &str| cascade_tests::metric_required(&text, name);
            (
                m("cascade_relayed_total"),
                m("cascade_ebpf_packets{counter=\"fanout_clones\"}"),
            )
        };
        let (relayed0, clones0) = counts();
        let mut buf = vec![0u8; 2048];
        for seq in RTP_PACKETS + 1000..RTP_PACKETS + 1050 {
            let plain = rtp_packet(VIDEO_SSRC, seq, u32::from(seq) * 3000, 96, 900);
            buf[..plain.len()].copy_from_slice(&plain);
            let n = publisher.tx.protect_rtp(&mut buf, plain.len()).unwrap();
            publisher
                .socket
                .send_to(&buf[..n], publisher.server)
                .unwrap();
        }
        // Wait until the kernel counted its clones of the 50 packets, then check
        // userspace copied none of them.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (relayed1, clones1) = loop {
            let (relayed1, clones1) = counts();
            if clones1 - clones0 >= 100.0 || Instant::now() > deadline {
                break (relayed1, clones1);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(relayed1, relayed0, "userspace stopped copying");
        assert!(
            clones1 - clones0 >= 100.0,
            "the kernel clones to both peers: {} clones for 50 packets",
            clones1 - clones0
        );
        for edge in &edges {
            let mut got = 0;
            edge.socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            while edge.socket.recv_from(&mut buf).is_ok() {
                got += 1;
            }
            assert_eq!(got, 50, "each peer got each packet once");
        }
    }

    // Closing both relays stops the copies, in the kernel too.
    for (edge, ns) in edges.iter().zip(&lan.peers) {
        let status = ns.block_on(|| async {
            http_client()
                .delete(&edge.relay)
                .bearer_auth(cluster_token())
                .send()
                .await
                .expect("relay DELETE")
                .status()
        });
        assert_eq!(status, 204);
    }
    assert_eq!(lan.origin.metric(&base, "cascade_relays"), Some(0.0));
    std::thread::sleep(Duration::from_millis(200));
    for seq in RTP_PACKETS..RTP_PACKETS + 10 {
        publisher
            .send_rtp(&rtp_packet(VIDEO_SSRC, seq, 0, 96, 100))
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    for (edge, name) in edges.iter().zip(["peer A", "peer B"]) {
        edge.socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(
            edge.socket.recv_from(&mut buf).is_err(),
            "{name}: nothing after the relay closed"
        );
    }
    drop(server);
}

#[test]
fn kernel_clones_the_publishers_packets_to_every_cascade_peer() {
    fan_out(Case::Kernel);
}

#[test]
fn userspace_relays_the_publishers_packets_to_every_cascade_peer() {
    fan_out(Case::Userspace);
}

/// When a second relay's fan-out cannot be installed in the kernel, userspace
/// copies to every peer while the kernel still clones to the first one: peer A
/// gets each packet twice.
#[test]
fn a_peer_the_kernel_cannot_reach_yet_does_not_double_the_others() {
    fan_out(Case::KernelUnresolvedPeer);
}
