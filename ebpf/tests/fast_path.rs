//! The eBPF fast path against a real kernel: the XDP guard on crafted frames
//! (`BPF_PROG_TEST_RUN`), the TC fan-out and the guard between network
//! namespaces, and reuseport steering.
//!
//! Needs root (BPF and namespaces). Where BPF is unusable a test says why and
//! returns, unless `CI` is set, where it fails. The tests share kernel state, so
//! they take a global lock; run them with `--test-threads=1` to keep the output
//! in order:
//!
//! ```text
//! cargo test -p cascade-ebpf -- --test-threads=1
//! ```
//!
//! Namespaces are named `cascade-t<pid>-*`, use 10.77.0.0/16 addresses only, and
//! are deleted when a test ends, also when it fails.

mod common;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use cascade_ebpf::{
    Counter, EbpfError, EbpfFastPath, EbpfMode, FanoutPeer, GuardConfig, GuardVerdict, XdpMode,
};
use common::*;

const MEDIA_PORT: u16 = 5004;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Runs the guard on `frame` and checks the verdict and the one counter that moved.
fn expect(
    fast_path: &EbpfFastPath,
    case: &str,
    frame: &[u8],
    verdict: GuardVerdict,
    counter: Counter,
) {
    let before = snapshot(fast_path);
    let got = fast_path
        .judge(frame)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let after = snapshot(fast_path);
    assert_eq!(got, verdict, "{case}: verdict");
    assert_eq!(
        moved(&before, &after),
        vec![(counter, 1)],
        "{case}: counters"
    );
    assert_eq!(
        verdict == GuardVerdict::Drop,
        counter.is_guard_drop(),
        "{case}: a drop counter counts drops"
    );
}

#[test]
fn guard_judges_crafted_packets() {
    let _serial = serial();
    if !bpf_usable("guard_judges_crafted_packets") {
        return;
    }
    let config = GuardConfig {
        stun_per_second: 1,
        stun_burst: 3,
        fanout: false,
        ..GuardConfig::default()
    };
    let mut fp = EbpfFastPath::load(MEDIA_PORT, config).expect("load the programs");
    let local = "10.0.0.1:5004";
    fp.allow(addr("10.0.0.2:6000"), addr(local)).unwrap();
    fp.allow(addr("[fd00::2]:6000"), addr("[fd00::1]:5004"))
        .unwrap();
    // Any local address, media port (port 0): a server bound to 0.0.0.0.
    fp.allow(addr("10.0.0.3:6000"), addr("0.0.0.0:0")).unwrap();
    // A dual-stack socket reports IPv4 peers as mapped IPv6.
    fp.allow(addr("[::ffff:10.0.0.4]:6000"), addr("[::]:5004"))
        .unwrap();

    use Counter::*;
    use GuardVerdict::{Drop, Pass};
    let rtp = rtp_payload(1, 1);
    let rtcp = {
        let mut p = vec![0x81, 200, 0, 6];
        p.extend_from_slice(&[0; 24]);
        p
    };

    // Media and DTLS: only from allowed 5-tuples.
    let cases: Vec<(&str, Vec<u8>, GuardVerdict, Counter)> = vec![
        (
            "RTP, allowed",
            udp_frame("10.0.0.2:6000", local, &rtp),
            Pass,
            GuardMediaAllowed,
        ),
        (
            "RTCP, allowed",
            udp_frame("10.0.0.2:6000", local, &rtcp),
            Pass,
            GuardMediaAllowed,
        ),
        (
            "RTP, unknown source port",
            udp_frame("10.0.0.2:6001", local, &rtp),
            Drop,
            GuardMediaUnknownSource,
        ),
        (
            "RTP, unknown source address",
            udp_frame("10.0.0.99:6000", local, &rtp),
            Drop,
            GuardMediaUnknownSource,
        ),
        (
            "RTP, allowed peer to another local address",
            udp_frame("10.0.0.2:6000", "10.0.0.50:5004", &rtp),
            Drop,
            GuardMediaUnknownSource,
        ),
        (
            "RTP, peer allowed on any local address",
            udp_frame("10.0.0.3:6000", "10.0.0.50:5004", &rtp),
            Pass,
            GuardMediaAllowed,
        ),
        (
            "RTP, peer allowed through a mapped address",
            udp_frame("10.0.0.4:6000", local, &rtp),
            Pass,
            GuardMediaAllowed,
        ),
        (
            "DTLS, allowed",
            udp_frame("10.0.0.2:6000", local, &dtls_payload()),
            Pass,
            GuardDtlsAllowed,
        ),
        (
            "DTLS, unknown source",
            udp_frame("10.0.0.7:6000", local, &dtls_payload()),
            Drop,
            GuardDtlsUnknownSource,
        ),
        (
            "IPv6 RTP, allowed",
            udp_frame("[fd00::2]:6000", "[fd00::1]:5004", &rtp),
            Pass,
            GuardMediaAllowed,
        ),
        (
            "IPv6 RTP, unknown source",
            udp_frame("[fd00::3]:6000", "[fd00::1]:5004", &rtp),
            Drop,
            GuardMediaUnknownSource,
        ),
        (
            "IPv6 DTLS, unknown source",
            udp_frame("[fd00::3]:6000", "[fd00::1]:5004", &dtls_payload()),
            Drop,
            GuardDtlsUnknownSource,
        ),
        (
            "garbage first byte (TURN channel range)",
            udp_frame("10.0.0.2:6000", local, &[0x40; 40]),
            Drop,
            GuardGarbage,
        ),
        (
            "garbage first byte (0xff)",
            udp_frame("10.0.0.2:6000", local, &[0xff; 40]),
            Drop,
            GuardGarbage,
        ),
        (
            "STUN without the magic cookie",
            udp_frame("10.0.0.2:6000", local, &[0x00; 40]),
            Drop,
            GuardGarbage,
        ),
        (
            "STUN shorter than its header",
            udp_frame("10.0.0.2:6000", local, &stun_payload()[..12]),
            Drop,
            GuardGarbage,
        ),
        (
            "empty datagram to the media port",
            udp_frame("10.0.0.2:6000", local, &[]),
            Drop,
            GuardTruncated,
        ),
        (
            "RTP to another port",
            udp_frame("10.0.0.99:6000", "10.0.0.1:5005", &rtp),
            Pass,
            GuardPassOtherPort,
        ),
        (
            "garbage to another port",
            udp_frame("10.0.0.99:6000", "10.0.0.1:53", &[0xff; 10]),
            Pass,
            GuardPassOtherPort,
        ),
    ];
    for (case, frame, verdict, counter) in &cases {
        expect(&fp, case, frame, *verdict, *counter);
    }

    // STUN: a budget per source address (burst 3, 1/s), separate per source;
    // consent checks from allowed 5-tuples do not spend it.
    let stun = stun_payload();
    for i in 0..3 {
        expect(
            &fp,
            &format!("STUN {i} within budget"),
            &udp_frame("10.0.0.9:40000", local, &stun),
            Pass,
            GuardStunPass,
        );
    }
    expect(
        &fp,
        "STUN over budget",
        &udp_frame("10.0.0.9:40001", local, &stun),
        Drop,
        GuardStunOverBudget,
    );
    expect(
        &fp,
        "STUN from another source",
        &udp_frame("10.0.0.10:40000", local, &stun),
        Pass,
        GuardStunPass,
    );
    expect(
        &fp,
        "IPv6 STUN within budget",
        &udp_frame("[fd00::9]:40000", "[fd00::1]:5004", &stun),
        Pass,
        GuardStunPass,
    );
    for i in 0..5 {
        expect(
            &fp,
            &format!("STUN consent check {i} from an allowed 5-tuple"),
            &udp_frame("10.0.0.2:6000", local, &stun),
            Pass,
            GuardStunPass,
        );
    }

    // Truncated frames: passed while the destination port is unknown, dropped
    // once it is known to be ours.
    let full = udp_frame("10.0.0.2:6000", local, &rtp);
    expect(&fp, "Ethernet only", &full[..14], Pass, GuardPassUnparsed);
    expect(
        &fp,
        "IPv4 header cut",
        &full[..14 + 10],
        Pass,
        GuardPassUnparsed,
    );
    expect(
        &fp,
        "UDP header cut before the destination port",
        &full[..14 + 20 + 3],
        Pass,
        GuardPassUnparsed,
    );
    expect(
        &fp,
        "UDP header cut after the destination port",
        &full[..14 + 20 + 6],
        Drop,
        GuardTruncated,
    );
    let v6 = udp_frame("[fd00::2]:6000", "[fd00::1]:5004", &rtp);
    expect(
        &fp,
        "IPv6 header cut",
        &v6[..14 + 30],
        Pass,
        GuardPassUnparsed,
    );
    expect(
        &fp,
        "IPv6 UDP header cut after the destination port",
        &v6[..14 + 40 + 5],
        Drop,
        GuardTruncated,
    );

    // Not UDP, or not judged.
    let arp = ethernet(DST_MAC, SRC_MAC, 0x0806, &[0; 28]);
    expect(&fp, "ARP", &arp, Pass, GuardPassNotUdp);
    let tcp = {
        let src = addr("10.0.0.99:6000");
        let dst = addr(local);
        let mut ip = ip_header(src.ip(), dst.ip(), 6, 20);
        ip.extend_from_slice(&[0x17, 0x70, 0x13, 0x8c]);
        ip.extend_from_slice(&[0; 16]);
        ethernet(DST_MAC, SRC_MAC, 0x0800, &ip)
    };
    expect(&fp, "TCP to the media port", &tcp, Pass, GuardPassNotUdp);
    let fragment = {
        let mut f = udp_frame("10.0.0.99:6000", local, &rtp);
        f[14 + 6] = 0x20; // more fragments
        f
    };
    expect(&fp, "IPv4 first fragment", &fragment, Pass, GuardPassNotUdp);

    // VLAN tags and IPv6 extension headers are walked.
    let tagged = {
        let inner = udp_frame("10.0.0.2:6000", local, &rtp);
        let mut f = inner[..12].to_vec();
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        f.extend_from_slice(&inner[12..]);
        f
    };
    expect(
        &fp,
        "802.1Q-tagged RTP, allowed",
        &tagged,
        Pass,
        GuardMediaAllowed,
    );
    let with_dest_options = {
        let src = addr("[fd00::3]:6000");
        let dst = addr("[fd00::1]:5004");
        let udp = udp_datagram(src, dst, &rtp);
        let mut ip = ip_header(src.ip(), dst.ip(), 60, 8 + udp.len());
        ip.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // next: UDP; PadN
        ip.extend_from_slice(&udp);
        ethernet(DST_MAC, SRC_MAC, 0x86dd, &ip)
    };
    expect(
        &fp,
        "IPv6 RTP behind a destination-options header, unknown source",
        &with_dest_options,
        Drop,
        GuardMediaUnknownSource,
    );

    // Revoking closes the door again; revoking twice is fine.
    fp.revoke(addr("10.0.0.2:6000"), addr(local)).unwrap();
    fp.revoke(addr("10.0.0.2:6000"), addr(local)).unwrap();
    expect(
        &fp,
        "RTP after revoke",
        &udp_frame("10.0.0.2:6000", local, &rtp),
        Drop,
        GuardMediaUnknownSource,
    );

    // Every counter has a stable label.
    let labels: Vec<_> = fp.counters().unwrap().into_iter().map(|(l, _)| l).collect();
    assert!(labels.contains(&"guard_media_unknown_source"));
    assert_eq!(labels.len(), Counter::ALL.len());
}

#[test]
fn start_follows_the_mode() {
    let _serial = serial();
    // Off never touches the kernel.
    let off = cascade_ebpf::start(EbpfMode::Off, "lo", MEDIA_PORT, GuardConfig::default());
    assert!(matches!(off, Ok(None)));
    if !bpf_usable("start_follows_the_mode") {
        return;
    }
    // A missing interface is an error in both other modes, with the reason.
    for mode in [EbpfMode::Auto, EbpfMode::On] {
        let err = cascade_ebpf::start(mode, "cascade-none0", MEDIA_PORT, GuardConfig::default())
            .expect_err("no such interface");
        assert!(
            matches!(err, EbpfError::Attach { .. }),
            "{mode}: unexpected error {err}"
        );
    }
    // A fast path without the fan-out refuses fan-out entries.
    let mut fp = EbpfFastPath::load(MEDIA_PORT, GuardConfig::default()).unwrap();
    let err = fp
        .set_fanout(addr("10.0.0.2:6000"), &[], false)
        .expect_err("fan-out not attached");
    assert!(matches!(err, EbpfError::NotAttached { .. }), "{err}");
}

/// One address family's addresses in the fan-out topology.
struct FanoutAddresses {
    family: &'static str,
    /// The publisher's socket: the cascade source.
    source: &'static str,
    /// The origin's media address on `vpub`.
    origin: &'static str,
    /// Cascade peers A and B, and the origin's addresses facing them.
    peer_a: &'static str,
    local_a: &'static str,
    peer_b: &'static str,
    local_b: &'static str,
    /// How the fan-out entry names our side: unspecified (route's source, media
    /// port) for A, explicit for B.
    local_for_a: &'static str,
    local_for_b: &'static str,
}

/// Origin, publisher and two cascade peers, each in its namespace, IPv4 and IPv6:
///
/// ```text
///   publisher eth0 .1.2 ── vpub .1.1  origin  va .2.1 ── eth0 .2.2 peer A
///                          (guard + fan-out    vb .3.1 ── eth0 .3.2 peer B
///                           on vpub, port 5004)
/// ```
///
/// (10.77.x.0/24 and fd77:x::/64.) The publisher sends SRTP-looking datagrams
/// to the origin, through its UDP stack (checksum completed by the device:
/// `CHECKSUM_PARTIAL` on veth) and as crafted frames with full checksums; both
/// peers must receive every one, rewritten, with correct checksums.
#[test]
fn fanout_clones_to_cascade_peers() {
    let _serial = serial();
    if !netns_usable("fanout_clones_to_cascade_peers") {
        return;
    }
    let origin = Netns::new("origin");
    let publisher = Netns::new("pub");
    let peer_a = Netns::new("peera");
    let peer_b = Netns::new("peerb");
    let (o_pub_mac, pub_mac) = ("02:77:01:00:00:01", "02:77:01:00:00:02");
    let (o_a_mac, a_mac) = ("02:77:02:00:00:01", "02:77:02:00:00:02");
    let (o_b_mac, b_mac) = ("02:77:03:00:00:01", "02:77:03:00:00:02");
    veth(
        (&origin, "vpub", o_pub_mac, "10.77.1.1/24"),
        (&publisher, "eth0", pub_mac, "10.77.1.2/24"),
    );
    veth(
        (&origin, "va", o_a_mac, "10.77.2.1/24"),
        (&peer_a, "eth0", a_mac, "10.77.2.2/24"),
    );
    veth(
        (&origin, "vb", o_b_mac, "10.77.3.1/24"),
        (&peer_b, "eth0", b_mac, "10.77.3.2/24"),
    );
    for (ns, dev, address) in [
        (&origin, "vpub", "fd77:1::1/64"),
        (&publisher, "eth0", "fd77:1::2/64"),
        (&origin, "va", "fd77:2::1/64"),
        (&peer_a, "eth0", "fd77:2::2/64"),
        (&origin, "vb", "fd77:3::1/64"),
        (&peer_b, "eth0", "fd77:3::2/64"),
    ] {
        ns.ip(&["addr", "add", address, "dev", dev, "nodad"]);
    }
    for to in ["10.77.1.1", "fd77:1::1"] {
        publisher.ip(&[
            "neigh",
            "replace",
            to,
            "lladdr",
            o_pub_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
    }

    let config = GuardConfig {
        fanout: true,
        ..GuardConfig::default()
    };
    let mut fp = origin.run(|| EbpfFastPath::attach("vpub", MEDIA_PORT, config).expect("attach"));
    eprintln!("guard attached in {:?} mode", fp.xdp_mode());
    let capture_a = peer_a.run(|| PacketSocket::open("eth0"));
    let capture_b = peer_b.run(|| PacketSocket::open("eth0"));
    let raw_sender = publisher.run(|| PacketSocket::open("eth0"));

    let families = [
        FanoutAddresses {
            family: "IPv4",
            source: "10.77.1.2:6000",
            origin: "10.77.1.1:5004",
            peer_a: "10.77.2.2:7000",
            local_a: "10.77.2.1:5004",
            peer_b: "10.77.3.2:7002",
            local_b: "10.77.3.1:5004",
            local_for_a: "0.0.0.0:0",
            local_for_b: "10.77.3.1:5004",
        },
        FanoutAddresses {
            family: "IPv6",
            source: "[fd77:1::2]:6000",
            origin: "[fd77:1::1]:5004",
            peer_a: "[fd77:2::2]:7000",
            local_a: "[fd77:2::1]:5004",
            peer_b: "[fd77:3::2]:7002",
            local_b: "[fd77:3::1]:5004",
            local_for_a: "[::]:0",
            local_for_b: "[fd77:3::1]:5004",
        },
    ];
    for net in &families {
        let family = net.family;
        let source = addr(net.source);
        let peers = [
            FanoutPeer {
                peer: addr(net.peer_a),
                local: addr(net.local_for_a),
            },
            FanoutPeer {
                peer: addr(net.peer_b),
                local: addr(net.local_for_b),
            },
        ];
        fp.allow(source, addr(net.origin)).unwrap();

        // No packet has reached the peers yet: their MACs are unknown.
        let err = fp
            .set_fanout(source, &peers, false)
            .expect_err("neighbours unresolved");
        assert!(
            matches!(err, EbpfError::NeighbourUnresolved { .. }),
            "{family}: {err}"
        );
        for (peer, mac, dev) in [(&peers[0], a_mac, "va"), (&peers[1], b_mac, "vb")] {
            origin.ip(&[
                "neigh",
                "replace",
                &peer.peer.ip().to_string(),
                "lladdr",
                mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ]);
        }
        fp.set_fanout(source, &peers, false)
            .unwrap_or_else(|e| panic!("{family}: set the fan-out: {e}"));

        let media = origin.run(|| udp_socket(net.origin));
        let recv_a = peer_a.run(|| udp_socket(net.peer_a));
        let recv_b = peer_b.run(|| udp_socket(net.peer_b));
        let sender = publisher.run(|| udp_socket(net.source));

        const N: u16 = 20;
        let before = snapshot(&fp);
        for seq in 0..N {
            sender.send_to(&rtp_payload(b'S', seq), net.origin).unwrap();
            raw_sender.send(&udp_frame_between(
                parse_mac(o_pub_mac),
                parse_mac(pub_mac),
                source,
                addr(net.origin),
                &rtp_payload(b'F', seq),
            ));
        }
        let got_a = drain(&recv_a);
        let got_b = drain(&recv_b);
        let got_origin = drain(&media);
        let frames_a = capture_a.drain_incoming();
        let frames_b = capture_b.drain_incoming();
        let after = snapshot(&fp);

        for (name, got, frames, peer, local, mac, origin_mac) in [
            (
                "A",
                &got_a,
                &frames_a,
                net.peer_a,
                net.local_a,
                a_mac,
                o_a_mac,
            ),
            (
                "B",
                &got_b,
                &frames_b,
                net.peer_b,
                net.local_b,
                b_mac,
                o_b_mac,
            ),
        ] {
            let (peer, local) = (addr(peer), addr(local));
            assert_eq!(
                got.len(),
                2 * N as usize,
                "{family}: peer {name} receives every packet"
            );
            for (payload, from) in got.iter() {
                assert_eq!(*from, local, "{family}: peer {name}: source rewritten");
                assert_eq!(payload[0], 0x80, "{family}: peer {name}: payload unchanged");
            }
            for tag in [b'S', b'F'] {
                let mut seqs: Vec<u16> = got
                    .iter()
                    .filter(|(p, _)| p[12] == tag)
                    .map(|(p, _)| u16::from_be_bytes([p[2], p[3]]))
                    .collect();
                seqs.sort_unstable();
                assert_eq!(
                    seqs,
                    (0..N).collect::<Vec<_>>(),
                    "{family}: peer {name}: {}",
                    tag as char
                );
            }
            let udp: Vec<_> = frames
                .iter()
                .filter_map(|f| parse_udp(f))
                .filter(|u| u.dst == peer)
                .collect();
            assert_eq!(
                udp.len(),
                2 * N as usize,
                "{family}: peer {name}: captured frames"
            );
            for u in &udp {
                assert_eq!(u.src, local);
                assert_eq!(
                    u.dst_mac,
                    parse_mac(mac),
                    "{family}: peer {name}: destination MAC"
                );
                assert_eq!(
                    u.src_mac,
                    parse_mac(origin_mac),
                    "{family}: peer {name}: source MAC"
                );
                assert!(
                    u.ip_checksum_ok,
                    "{family}: peer {name}: IPv4 header checksum"
                );
                if u.payload[12] == b'F' {
                    assert!(
                        u.udp_checksum_full,
                        "{family}: peer {name}: UDP checksum of {u:?}"
                    );
                } else {
                    assert!(
                        u.udp_checksum_full || u.udp_checksum_partial,
                        "{family}: peer {name}: UDP checksum (seed) of {u:?}"
                    );
                }
            }
        }
        assert!(
            got_origin.is_empty(),
            "{family}: no local subscribers: the origin's socket gets nothing, got {}",
            got_origin.len()
        );
        let moved = moved(&before, &after);
        for expected in [
            (Counter::FanoutClones, 4 * u64::from(N)),
            (Counter::FanoutConsumed, 2 * u64::from(N)),
            (Counter::GuardMediaAllowed, 2 * u64::from(N)),
        ] {
            assert!(moved.contains(&expected), "{family}: {moved:?}");
        }

        // With local subscribers the original, untouched, also goes up.
        fp.set_fanout(source, &peers, true).unwrap();
        for seq in 0..5 {
            sender.send_to(&rtp_payload(b'L', seq), net.origin).unwrap();
        }
        assert_eq!(drain(&recv_a).len(), 5, "{family}");
        assert_eq!(drain(&recv_b).len(), 5, "{family}");
        let up = drain(&media);
        assert_eq!(up.len(), 5, "{family}: local subscribers get the originals");
        assert!(up.iter().all(|(p, from)| *from == source && p[12] == b'L'));

        // Without an entry everything goes up, nothing is cloned.
        fp.clear_fanout(source).unwrap();
        fp.clear_fanout(source).unwrap();
        for seq in 0..5 {
            sender.send_to(&rtp_payload(b'C', seq), net.origin).unwrap();
        }
        assert_eq!(drain(&media).len(), 5, "{family}");
        assert!(drain(&recv_a).is_empty(), "{family}");
        assert!(drain(&recv_b).is_empty(), "{family}");
        capture_a.drain_incoming();
        capture_b.drain_incoming();
    }

    drop(fp);
    // Detached: the origin receives from anyone again (no guard, no fan-out).
    let media = origin.run(|| udp_socket("10.77.1.1:5004"));
    let stranger = publisher.run(|| udp_socket("10.77.1.2:6999"));
    stranger
        .send_to(&rtp_payload(b'D', 0), "10.77.1.1:5004")
        .unwrap();
    assert_eq!(drain(&media).len(), 1);
}

/// A sender floods the receiver's media port from one allowed 5-tuple and one
/// unknown one; the guard on the receiving veth lets exactly the allowed ones up.
#[test]
fn guard_drops_a_flood_from_unknown_sources() {
    let _serial = serial();
    if !netns_usable("guard_drops_a_flood_from_unknown_sources") {
        return;
    }
    for mode in [XdpMode::Native, XdpMode::Generic] {
        let receiver = Netns::new("recv");
        let sender = Netns::new("send");
        let (r_mac, s_mac) = ("02:77:05:00:00:01", "02:77:05:00:00:02");
        veth(
            (&receiver, "eth0", r_mac, "10.77.5.1/24"),
            (&sender, "eth0", s_mac, "10.77.5.2/24"),
        );
        sender.ip(&[
            "neigh",
            "replace",
            "10.77.5.1",
            "lladdr",
            r_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        let config = GuardConfig {
            fanout: false,
            xdp_mode: mode,
            ..GuardConfig::default()
        };
        let (mut fp, media) = receiver.run(|| {
            let fp = EbpfFastPath::attach("eth0", MEDIA_PORT, config).expect("attach");
            let media = udp_socket("10.77.5.1:5004");
            // Room for every allowed packet: the socket must not be what drops.
            set_int_option(
                std::os::fd::AsRawFd::as_raw_fd(&media),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                8 << 20,
            );
            (fp, media)
        });
        assert_eq!(fp.xdp_mode(), Some(mode));
        fp.allow(addr("10.77.5.2:6000"), addr("10.77.5.1:5004"))
            .unwrap();
        let (allowed, unknown) =
            sender.run(|| (udp_socket("10.77.5.2:6000"), udp_socket("10.77.5.2:6001")));

        const ALLOWED: usize = 1_000;
        const UNKNOWN_PER_ALLOWED: usize = 20;
        let before = snapshot(&fp);
        let mut sent = 0usize;
        for seq in 0..ALLOWED {
            allowed
                .send_to(&rtp_payload(b'A', seq as u16), "10.77.5.1:5004")
                .unwrap();
            for _ in 0..UNKNOWN_PER_ALLOWED {
                unknown
                    .send_to(&rtp_payload(b'X', 0), "10.77.5.1:5004")
                    .unwrap();
            }
            sent += 1 + UNKNOWN_PER_ALLOWED;
            // Paced, so that no queue between the two sockets overflows.
            if sent.is_multiple_of(210) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let got = drain(&media);
        let after = snapshot(&fp);

        assert_eq!(got.len(), ALLOWED, "{mode:?}: exactly the allowed packets");
        assert!(
            got.iter()
                .all(|(p, from)| p[12] == b'A' && from.port() == 6000)
        );
        let moved = moved(&before, &after);
        assert!(
            moved.contains(&(
                Counter::GuardMediaUnknownSource,
                (ALLOWED * UNKNOWN_PER_ALLOWED) as u64
            )),
            "{mode:?}: {moved:?}"
        );
        assert!(
            moved.contains(&(Counter::GuardMediaAllowed, ALLOWED as u64)),
            "{mode:?}: {moved:?}"
        );
        drop(fp);
    }
}

/// Two sockets in one `SO_REUSEPORT` group; steered peers land on their worker.
#[test]
fn reuseport_steers_peers_to_their_worker() {
    let _serial = serial();
    if !netns_usable("reuseport_steers_peers_to_their_worker") {
        return;
    }
    let ns = Netns::new("steer");
    for (group, clients) in [
        (
            "127.0.0.1:5004",
            ["127.0.0.1:40001", "127.0.0.1:40002", "127.0.0.1:40003"],
        ),
        ("[::1]:5004", ["[::1]:40001", "[::1]:40002", "[::1]:40003"]),
    ] {
        let (mut fp, workers, clients) = ns.run(|| {
            let fp = EbpfFastPath::load(MEDIA_PORT, GuardConfig::default()).expect("load");
            let workers = [reuseport_socket(addr(group)), reuseport_socket(addr(group))];
            let clients = clients.map(udp_socket);
            (fp, workers, clients)
        });
        fp.attach_reuseport(&[workers[0].as_fd(), workers[1].as_fd()])
            .expect("attach to the group");
        let steered_1 = clients[0].local_addr().unwrap();
        let steered_0 = clients[1].local_addr().unwrap();
        fp.steer(steered_1, 1).unwrap();
        fp.steer(steered_0, 0).unwrap();

        let before = snapshot(&fp);
        for seq in 0..50u16 {
            for client in &clients {
                client.send_to(&rtp_payload(b'R', seq), group).unwrap();
            }
        }
        let on_0 = drain(&workers[0]);
        let on_1 = drain(&workers[1]);
        let after = snapshot(&fp);
        let from = |got: &[(Vec<u8>, SocketAddr)], who: SocketAddr| {
            got.iter().filter(|(_, f)| *f == who).count()
        };
        assert_eq!(from(&on_1, steered_1), 50, "{group}: steered to worker 1");
        assert_eq!(
            from(&on_0, steered_1),
            0,
            "{group}: nothing of it on worker 0"
        );
        assert_eq!(from(&on_0, steered_0), 50, "{group}: steered to worker 0");
        assert_eq!(
            from(&on_1, steered_0),
            0,
            "{group}: nothing of it on worker 1"
        );
        let unsteered = clients[2].local_addr().unwrap();
        assert_eq!(
            from(&on_0, unsteered) + from(&on_1, unsteered),
            50,
            "{group}: an unsteered peer is hashed to one of them"
        );
        let moved = moved(&before, &after);
        assert!(moved.contains(&(Counter::SteerSelected, 100)), "{moved:?}");
        assert!(moved.contains(&(Counter::SteerHashed, 50)), "{moved:?}");

        // Unsteering hands the peer back to the hash: all its packets still
        // arrive, on one socket.
        fp.unsteer(steered_1).unwrap();
        for seq in 0..10u16 {
            clients[0].send_to(&rtp_payload(b'U', seq), group).unwrap();
        }
        let total = drain(&workers[0]).len() + drain(&workers[1]).len();
        assert_eq!(total, 10);
        drop(fp);
    }
}
